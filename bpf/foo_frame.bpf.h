/* foo_frame.bpf.h - the Foo framer of the splice program: frames a spliced Foo connection's lines, checks them as the userspace parser does, counts messages per app. */
#ifndef PANDIT_FOO_FRAME_BPF_H
#define PANDIT_FOO_FRAME_BPF_H

/*
 * Included by splice.bpf.c, which calls foo_frame() for every skb of a
 * socket whose entry has foo.mode set, before it decides where the bytes go
 * (redirected, or left to the daemon by a hold): every byte of a spliced
 * Foo connection is framed exactly once, here, whichever way it travels.
 *
 * The framer is the userspace parser (src/proto/foo.c) byte for byte: the
 * same states (enum pandit_foo_state), the same checks in the same order,
 * so a violation has the same reason and offset on either path, and the
 * daemon can hand a direction's state over at the splice (bytes it read
 * before) and take it back at EOF (a last line without LF, which only the
 * end of the stream completes).
 *
 * Counting: a message completed by its LF counts in the skb's tally; at
 * the skb's end the tally is added to the app's per-CPU counters
 * (foo_counts, keyed by the slot the daemon gave the app's counters) and
 * to the matching moving-window ring, whose layout is the userspace
 * window's (src/stats/window.h), with one atomic operation per counter. A
 * valid message from the wrong side counts in wrong_dir only, as in
 * userspace.
 *
 * A violation ends the framing of both directions (the peer's entry gets
 * stop): under the lenient policy the bytes flow on, uncounted; under the
 * strict one this skb and every later one of the connection are dropped
 * until the daemon, told through the worker's ring, resets both sockets.
 * Messages completed earlier in the skb that held the violation are
 * counted and (strict) not delivered, as in userspace.
 *
 * Seq matching: a REQ takes its Seq's slot in the connection's foo_track
 * entry (or, when another Seq holds it, an entry of foo_pending), a reply
 * takes it away and observes the latency, with the userspace rules and cap
 * (src/proto/foo_stats.h); foo_track also holds the connection's totals
 * for the daemon (unanswered at close, entries left to sweep).
 *
 * Speed and the verifier: bpf_loop() calls foo_frame_next() until the skb
 * is framed. At a line start it first tries the fast line
 * (foo_fast_line() in foo_frame_step.h: a plain valid message of up to
 * FOO_FAST_MAX bytes recognised a word at a time, without a branch per
 * byte); a line it declines, and a line already begun when the skb
 * starts, go one byte per call through foo_step(), which is exact for
 * everything. The skb is read into a FOO_FAST_BUF-byte buffer with
 * bpf_skb_load_bytes() (the skb is rarely linear). The buffer and the
 * tally are in foo_scratch (map memory: the stack is 512 bytes, and the
 * verifier would track a tally there value by value). foo_frame(), the
 * step, the fast line and the flush are global functions, each checked
 * once; the callback is checked once whatever the skb's length.
 */
#include "foo_frame_common.bpf.h"

/* slot 0: where the messages of an app without counters entry go (never read) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pandit_foo_counts);
} foo_uncounted SEC(".maps");

/* Does the skb from off on start like an HTTP/1 request line or the HTTP/2
 * preface (the reason of a bad line start only)? A global function. */
__noinline int foo_looks_like_http(struct __sk_buff *skb, __u32 off)
{
	char b[FOO_HTTP_LOOKAHEAD] = {};
	__u32 have = skb->len > off ? skb->len - off : 0;
	if (have > FOO_HTTP_LOOKAHEAD)
		have = FOO_HTTP_LOOKAHEAD;
	if (have < 4 || bpf_skb_load_bytes(skb, off, b, have & 15) < 0)
		return 0;
	return foo_http_start(b, have);
}


/* The byte buf[idx], at skb offset at, of the direction framed in p:
 * foo_step(), with the look-ahead for the reason of a bad line start. A
 * global function, checked once: it runs for the lines the fast line
 * declines only, so its call costs little. */
__noinline __u32 foo_byte(struct __sk_buff *skb, struct pandit_foo_parse *p,
			  const struct foo_buf *buf, __u32 idx, __u32 at)
{
	if (!buf)
		return FOO_FRAME_LOAD_ERR;
	__u32 r = foo_step(p, buf->b[idx & (FOO_FAST_BUF - 1)]);
	if (r == FOO_STEP_BAD_START)
		r = foo_looks_like_http(skb, at) ? PANDIT_FOO_ERR_HTTP : PANDIT_FOO_ERR_TYPE;
	else if (r == FOO_STEP_NO_STATE)
		r = FOO_FRAME_LOAD_ERR;
	return r;
}
/* Reads the skb from pos on into buf, as much as fits: the bytes read, or
 * 0 when the skb cannot be read. A global function: the size it computes
 * from pos must be exact for the verifier, which would otherwise track
 * the callback's positions value by value. */
__noinline __u32 foo_read(struct __sk_buff *skb, struct foo_buf *buf, __u32 pos)
{
	if (!skb || !buf || pos >= skb->len)
		return 0;
	__u32 n = skb->len - pos;
	if (n > FOO_FAST_BUF)
		n = FOO_FAST_BUF;
	n = ((n - 1) & (FOO_FAST_BUF - 1)) + 1;	/* 1..FOO_FAST_BUF, as the verifier sees it too */
	if (bpf_skb_load_bytes(skb, pos, buf->b, n) < 0)
		return 0;
	return n;
}

/* Makes the buffer hold the skb from pos on: 0, or -1 when the skb cannot
 * be read. */
static __always_inline int foo_fill(struct foo_ctx *x, __u32 pos)
{
	__u32 n = foo_read(x->skb, x->buf, pos);
	if (!n)
		return -1;
	x->boff = pos;
	x->blen = n;
	return 0;
}

/* bpf_loop() callback: frames the line starting at x->pos at once when it
 * is a plain valid message (foo_fast_line), else the byte at x->pos. Each
 * call takes at least one byte, so the skb's length is enough calls. */
static long foo_frame_next(__u32 i, void *arg)
{
	struct foo_ctx *x = arg;
	struct pandit_foo_parse *p = &x->v->foo;
	__u32 pos = x->pos;
	__u32 r, took = 1;
	(void)i;
	if (pos >= x->len)
		return 1;
	if (p->state == PANDIT_FOO_ST_START) {
		/* the buffer must hold as much of the line as the fast
		 * line may look at: FOO_FAST_MAX bytes, or the skb's rest */
		__u32 have = x->boff + x->blen - pos;
		__u32 want = x->len - pos;
		if (want > FOO_FAST_MAX)
			want = FOO_FAST_MAX;
		if (have < want) {
			if (foo_fill(x, pos) < 0)
				goto load_err;
			have = x->blen;
		}
		took = foo_fast_line_at(p, x->buf, pos - x->boff, have);
	}
	if (took > 1) {
		r = FOO_STEP_MSG;
	} else {
		took = 1;
		if (pos - x->boff >= x->blen && foo_fill(x, pos) < 0)
			goto load_err;
		r = foo_byte(x->skb, p, x->buf, pos - x->boff, pos);
	}
	if (r == FOO_STEP_MSG) {
		foo_deliver(x);
	} else if (r) {
		x->err = r;
		x->err_at = pos;
		return 1;
	}
	x->pos = pos + took;
	return 0;
load_err:
	x->err = FOO_FRAME_LOAD_ERR;
	x->err_at = pos;
	return 1;
}

/* Frames the skb of socket cookie (entry v). Returns 1 when the skb must
 * be dropped (strict policy, the connection non-compliant), else 0. */
__noinline int foo_frame(struct __sk_buff *skb, struct pandit_splice_val *v, __u64 cookie)
{
	if (!v)
		return 0;
	struct pandit_foo_parse *p = &v->foo;
	if (p->state == PANDIT_FOO_ST_ERR || p->stop)
		return p->mode == PANDIT_FOO_STRICT;
	struct foo_ctx x = {
		.skb = skb,
		.v = v,
		.now = bpf_ktime_get_ns(),
		.len = skb->len,
	};
	x.client = v->dir == PANDIT_SPLICE_C2S ? cookie : v->peer;
	x.track = bpf_map_lookup_elem(&foo_track, &x.client);
	__u32 slot = p->slot;
	x.cnt = bpf_map_lookup_elem(&foo_counts, &slot);
	if (!x.cnt) {
		__u32 first = 0;
		count(PANDIT_SPLICE_FOO_NO_COUNTERS);
		x.cnt = bpf_map_lookup_elem(&foo_uncounted, &first);
		if (!x.cnt)
			return 0;
	}
	__u32 zero = 0;
	struct foo_scratch *sc = bpf_map_lookup_elem(&foo_scratch, &zero);
	__u32 level = foo_claim(sc);
	if (sc && level < FOO_NEST) {
		level &= FOO_NEST - 1;
		x.t = &sc->lv[level].t;
		x.buf = &sc->lv[level].buf;
		__builtin_memset(x.t, 0, sizeof(*x.t));
		bpf_loop(x.len, foo_frame_next, &x, 0);
		foo_tally_flush(x.cnt, x.track, x.t, x.now);
		__sync_fetch_and_and(&sc->busy[level], 0);	/* released after every use */
	} else {
		count(PANDIT_SPLICE_FOO_NO_SCRATCH);
		x.err = FOO_FRAME_LOAD_ERR;
	}
	if (!x.err) {
		p->offset += x.len;
		return 0;
	}
	struct pandit_splice_val *pv = bpf_map_lookup_elem(&splice_peers, &v->peer);
	if (x.err == FOO_FRAME_LOAD_ERR) {
		/* cannot happen with a well-formed skb (nor, in practice,
		 * without a scratch level); the stream can no longer be
		 * framed: both directions stop, and the bytes flow
		 * whatever the policy (the daemon logs it) */
		p->stop = 1;
		p->mode = PANDIT_FOO_LENIENT;
		if (pv)
			pv->foo.mode = PANDIT_FOO_LENIENT;
	} else {
		p->state = PANDIT_FOO_ST_ERR;
		p->err = (__u8)x.err;
		p->err_offset = p->offset + x.err_at;
	}
	if (pv)
		pv->foo.stop = 1;
	count(PANDIT_SPLICE_FOO_VIOLATION);
	notify(v, cookie, PANDIT_SPLICE_EV_FOO);
	return p->mode == PANDIT_FOO_STRICT;
}

#endif
