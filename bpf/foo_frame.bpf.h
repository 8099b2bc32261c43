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

/* The step and the fast line, inlined into their global functions. */
#define FOO_STEP_FN static __always_inline
#define FOO_STEP_INLINE static __always_inline
#include "foo_frame_step.h"


/* counters slot -> per-CPU message counters and windows of one Foo app */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, PANDIT_FOO_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct pandit_foo_counts);
} foo_counts SEC(".maps");

/* slot 0: where the messages of an app without counters entry go (never read) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pandit_foo_counts);
} foo_uncounted SEC(".maps");

/* client socket cookie -> the connection's pending-request totals */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, PANDIT_SPLICE_MAX_SOCKS / 2);
	__type(key, __u64);
	__type(value, struct pandit_foo_track);
} foo_track SEC(".maps");

/* (client socket cookie, Seq) -> a request pending its reply */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, PANDIT_FOO_PENDING_MAX);
	__type(key, struct pandit_foo_pkey);
	__type(value, struct pandit_foo_pval);
} foo_pending SEC(".maps");

struct foo_buf {
	__u8 b[FOO_FAST_BUF + FOO_FAST_PAD];
} __attribute__((aligned(8)));

/* What one skb's messages add to the app's per-CPU counters and to the
 * connection's totals, added once at the end of the skb (foo_tally_flush)
 * instead of an atomic operation per message: the counters are the same,
 * and the totals the other direction reads are in place before this skb's
 * bytes leave, so before any reply to its requests can be framed. */
struct foo_tally {
	__u32 req, ack, nak, wrong_dir;
	__u32 duplicate, untracked, unmatched;
	__u32 lat_count;
	__u64 lat_sum_us;
	__s32 tr_used, tr_pending;	/* foo_track's used and pending */
	__u32 tr_untracked;
};

/* Per CPU: the tallies and buffers of the skbs being framed on this CPU,
 * in levels claimed atomically (busy) for the length of one run. More than
 * one run can be under way on a CPU: a run in process context (a socket's
 * backlog drained with softirqs on, by a thread or the psock work item)
 * can be interrupted by a softirq run for another socket, and, in a kernel
 * preemptible everywhere, preempted by another task's run, which need not
 * finish first. Runs for one socket never overlap (they hold its lock).
 * All FOO_NEST levels taken at once stops the connection's framing as an
 * unreadable skb does (counted as foo_no_scratch). In map memory, not on
 * the stack: the stack is 512 bytes, and the verifier would track a tally
 * there value by value, walking the callback once per combination of
 * counters touched so far. */
#define FOO_NEST 16u	/* a power of two */
struct foo_level {
	struct foo_tally t;
	struct foo_buf buf;		/* bytes of the skb being framed */
};

struct foo_scratch {
	__u32 busy[FOO_NEST];
	struct foo_level lv[FOO_NEST];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct foo_scratch);
} foo_scratch SEC(".maps");

struct foo_ctx {
	struct __sk_buff *skb;
	struct pandit_splice_val *v;
	struct pandit_foo_counts *cnt;
	struct pandit_foo_track *track;	/* NULL: Seqs not matched */
	__u64 client;			/* the client socket's cookie */
	__u64 now;
	__u32 len;
	__u32 err;			/* the violation, or FOO_FRAME_LOAD_ERR */
	__u32 err_at;			/* its offset in the skb */
	__u32 pos;			/* the next byte to frame */
	__u32 boff, blen;		/* buf holds the skb's bytes [boff, boff + blen) */
	__u32 pad;
	struct foo_tally *t;		/* this skb's tally and buffer, in foo_scratch */
	struct foo_buf *buf;
};

#define FOO_FRAME_LOAD_ERR 255u

/* Adds n events at now to a window ring (src/stats/window.c's rules: the
 * stamp and the count change together; a count saturates; a stale slot is
 * recycled by CAS; a slot stamped ahead of now is left alone). */
static __always_inline void foo_win_add(__u64 *ring, __u64 now, __u32 n)
{
	__u64 tick = now / PANDIT_FOO_WIN_BUCKET_NS;
	__u64 *slot = &ring[tick & (PANDIT_FOO_WIN_SLOTS - 1)];
	__u32 stamp = (__u32)tick;
	if (!n)
		return;
	for (int tries = 0; tries < 4; tries++) {
		__u64 w = *(volatile __u64 *)slot;
		__u32 ws = (__u32)(w >> 32);
		__u64 count;
		if (ws == stamp) {
			if ((__u32)w < (1u << 30) && n < (1u << 30)) {	/* window.c's FAST_ADD_MAX */
				__sync_fetch_and_add(slot, n);
				return;
			}
			count = (__u64)(__u32)w + n;
		} else if ((__s32)(stamp - ws) > 0) {
			count = n;
		} else {
			return;
		}
		if (count > 0xffffffffull)
			count = 0xffffffffull;
		if (__sync_val_compare_and_swap(slot, w, (__u64)stamp << 32 | count) == w)
			return;
	}
}

static const __u64 foo_lat_bounds[PANDIT_FOO_LAT_NBOUNDS] = PANDIT_FOO_LAT_BOUNDS_US;

/* A REQ from the client: pending until its reply (track_request in
 * src/proto/foo_stats.c). The client's socket runs this, one skb at a
 * time: it alone fills slots and creates entries; the server's socket only
 * takes sends away (atomically), so a free slot (n == 0) is the client's to
 * fill, with plain stores: no reply to this Seq can be framed before the
 * skb has left, after this run. used and pending go up at the skb's end
 * (the tally); the cap is checked against them and this skb's own. */
static __always_inline void foo_track_req(struct foo_ctx *x, __u64 seq)
{
	struct pandit_foo_track *tr = x->track;
	struct foo_tally *t = x->t;
	if (!tr)
		return;
	struct pandit_foo_slot *sl = &tr->slot[seq & (PANDIT_FOO_TRACK_SLOTS - 1)];
	struct pandit_foo_pval *e = NULL;
	if (sl->v.n && sl->seq == seq) {
		e = &sl->v;
	} else if (tr->overflow) {
		struct pandit_foo_pkey key = { .cookie = x->client, .seq = seq };
		e = bpf_map_lookup_elem(&foo_pending, &key);
	}
	if (e) {
		t->duplicate++;
		if (e->n < 0xffffffffu) {
			__sync_fetch_and_add(&e->n, 1);	/* a reply may be taking one away */
			t->tr_pending++;
			return;
		}
	} else if (tr->used + t->tr_used < PANDIT_FOO_TRACK_MAX) {
		if (!sl->v.n) {
			sl->seq = seq;
			sl->v.t_ns = x->now;
			sl->v.n = 1;
			t->tr_used++;
			t->tr_pending++;
			return;
		}
		struct pandit_foo_pkey key = { .cookie = x->client, .seq = seq };
		struct pandit_foo_pval nv = { .t_ns = x->now, .n = 1 };
		if (bpf_map_update_elem(&foo_pending, &key, &nv, BPF_NOEXIST) == 0) {
			__sync_fetch_and_add(&tr->overflow, 1);
			t->tr_used++;
			t->tr_pending++;
			return;
		}
	}
	t->untracked++;
	t->tr_untracked++;
}

/* An ACK or NAK from the server: answers the pending REQ with its Seq
 * (match_reply in src/proto/foo_stats.c). A duplicate REQ racing the reply
 * that empties its slot or entry may be lost with it: it is then neither
 * answered nor counted as unanswered. */
static __always_inline void foo_track_reply(struct foo_ctx *x, __u64 seq)
{
	struct pandit_foo_track *tr = x->track;
	struct foo_tally *t = x->t;
	if (!tr)
		return;
	struct pandit_foo_slot *sl = &tr->slot[seq & (PANDIT_FOO_TRACK_SLOTS - 1)];
	__u64 t0;
	if (sl->v.n && sl->seq == seq) {
		t0 = sl->v.t_ns;
		if (__sync_fetch_and_add(&sl->v.n, -1) == 1)
			t->tr_used--;
	} else {
		/* an entry (also one the daemon made at an EOF: looked for
		 * whatever overflow says) */
		struct pandit_foo_pkey key = { .cookie = x->client, .seq = seq };
		struct pandit_foo_pval *e = bpf_map_lookup_elem(&foo_pending, &key);
		if (!e) {
			for (int tries = 0; tries < 8; tries++) {
				__u64 u = *(volatile __u64 *)&tr->untracked;
				if (!u) {
					t->unmatched++;
					return;
				}
				if (__sync_val_compare_and_swap(&tr->untracked, u, u - 1) == u)
					return;
			}
			return;
		}
		t0 = e->t_ns;
		if (__sync_fetch_and_add(&e->n, -1) == 1) {
			bpf_map_delete_elem(&foo_pending, &key);
			__sync_fetch_and_add(&tr->overflow, -1);
			t->tr_used--;
		}
	}
	t->tr_pending--;
	__u64 us = (x->now > t0 ? x->now - t0 : 0) / 1000;
	__u32 b = PANDIT_FOO_LAT_NBOUNDS;
	for (__u32 i = 0; i < PANDIT_FOO_LAT_NBOUNDS; i++) {
		if (us <= foo_lat_bounds[i]) {
			b = i;
			break;
		}
	}
	__sync_fetch_and_add(&x->cnt->lat_bucket[b], 1);	/* the bucket varies: not tallied */
	t->lat_sum_us += us;
	t->lat_count++;
}

/* A message ended by its LF: tallied on the side it belongs to, matched by
 * Seq, and the line state reset. */
static __always_inline void foo_deliver(struct foo_ctx *x)
{
	struct pandit_foo_parse *p = &x->v->foo;
	__u8 t = p->type;
	__u64 seq = p->seq;
	foo_line_reset(p);
	if ((x->v->dir == PANDIT_SPLICE_C2S) != (t == 1)) {
		x->t->wrong_dir++;
	} else if (t == 1) {
		x->t->req++;
		foo_track_req(x, seq);
	} else {
		if (t == 2)
			x->t->ack++;
		else
			x->t->nak++;
		foo_track_reply(x, seq);
	}
}

/* Adds n to a counter when there is something to add. */
static __always_inline void foo_add(__u64 *c, __u64 n)
{
	if (n)
		__sync_fetch_and_add(c, n);
}

/* Adds an skb's tally to the app's counters k and the connection's totals
 * tr (NULL: Seqs not matched). A global function, checked once. */
__noinline int foo_tally_flush(struct pandit_foo_counts *k, struct pandit_foo_track *tr,
			       const struct foo_tally *t, __u64 now)
{
	if (!k || !t)
		return 0;
	foo_add(&k->req, t->req);
	foo_add(&k->ack, t->ack);
	foo_add(&k->nak, t->nak);
	foo_add(&k->wrong_dir, t->wrong_dir);
	foo_add(&k->requests_duplicate, t->duplicate);
	foo_add(&k->requests_untracked, t->untracked);
	foo_add(&k->replies_unmatched, t->unmatched);
	foo_add(&k->lat_sum_us, t->lat_sum_us);
	foo_add(&k->lat_count, t->lat_count);
	foo_win_add(k->req_win, now, t->req);
	foo_win_add(k->resp_win, now, t->ack + t->nak);
	if (tr) {
		foo_add(&tr->used, (__u64)(__s64)t->tr_used);
		foo_add(&tr->pending, (__u64)(__s64)t->tr_pending);
		foo_add(&tr->untracked, t->tr_untracked);
	}
	return 0;
}

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

/* foo_fast_line() as a global function: checked once, on its own. */
__noinline __u32 foo_fast_line_at(struct pandit_foo_parse *p, const struct foo_buf *buf, __u32 base,
				  __u32 have)
{
	if (!p || !buf)
		return 0;
	return foo_fast_line(p, buf->b, base, have);
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

/* Claims a free level of this CPU's scratch: its index, or FOO_NEST when
 * every level is taken. A global function: its caller sees one index,
 * not one state per level. */
__noinline __u32 foo_claim(struct foo_scratch *sc)
{
	if (!sc)
		return FOO_NEST;
	for (__u32 d = 0; d < FOO_NEST; d++)
		if (__sync_val_compare_and_swap(&sc->busy[d], 0, 1) == 0)
			return d;
	return FOO_NEST;
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
