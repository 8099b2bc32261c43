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
 * Counting: a message completed by its LF adds one to the app's per-CPU
 * counters (foo_counts, keyed by the slot the daemon gave the app's
 * counters) and to the matching moving-window ring, whose layout is the
 * userspace window's (src/stats/window.h). A valid message from the wrong
 * side counts in wrong_dir only, as in userspace.
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
 * Verifier: bpf_loop() calls foo_frame_byte() once per byte of the skb,
 * which reads the skb FOO_CHUNK bytes at a time with bpf_skb_load_bytes()
 * (the skb is rarely linear) and steps each byte with foo_step()
 * (foo_frame_step.h), inlined: the callback is checked once, whatever
 * the skb's length (a global step function cost 15-25% more per byte).
 */

#define FOO_CHUNK 64u

/* The step, inlined into the bpf_loop() callback. */
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
	__u32 pad;
	__u8 buf[FOO_CHUNK];		/* the chunk of the skb being framed */
};

#define FOO_FRAME_LOAD_ERR 255u

/* Adds one event at now to a window ring (src/stats/window.h's rules: the
 * stamp and the count change together; a stale slot is recycled by CAS; a
 * slot stamped ahead of now is left alone). */
static __always_inline void foo_win_add(__u64 *ring, __u64 now)
{
	__u64 tick = now / PANDIT_FOO_WIN_BUCKET_NS;
	__u64 *slot = &ring[tick & (PANDIT_FOO_WIN_SLOTS - 1)];
	__u32 stamp = (__u32)tick;
	for (int tries = 0; tries < 4; tries++) {
		__u64 w = *(volatile __u64 *)slot;
		__u32 ws = (__u32)(w >> 32);
		if (ws == stamp) {
			if ((__u32)w != 0xffffffffu)
				__sync_fetch_and_add(slot, 1);
			return;
		}
		if ((__s32)(ws - stamp) > 0)
			return;
		if (__sync_val_compare_and_swap(slot, w, (__u64)stamp << 32 | 1) == w)
			return;
	}
}


static const __u64 foo_lat_bounds[PANDIT_FOO_LAT_NBOUNDS] = PANDIT_FOO_LAT_BOUNDS_US;

/* A REQ from the client: pending until its reply (track_request in
 * src/proto/foo_stats.c). The client's socket runs this, one skb at a
 * time: it alone fills slots and creates entries; the server's socket only
 * takes sends away (atomically), so a free slot (n == 0) is the client's to
 * fill, and its Seq is written before n says it is in use. */
static __always_inline void foo_track_req(struct foo_ctx *x, __u64 seq)
{
	struct pandit_foo_track *tr = x->track;
	struct pandit_foo_counts *k = x->cnt;
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
		__sync_fetch_and_add(&k->requests_duplicate, 1);
		if (e->n < 0xffffffffu) {
			__sync_fetch_and_add(&e->n, 1);
			__sync_fetch_and_add(&tr->pending, 1);
			return;
		}
	} else if (tr->used < PANDIT_FOO_TRACK_MAX) {
		if (!sl->v.n) {
			sl->seq = seq;
			sl->v.t_ns = x->now;
			__sync_fetch_and_add(&sl->v.n, 1);
			__sync_fetch_and_add(&tr->used, 1);
			__sync_fetch_and_add(&tr->pending, 1);
			return;
		}
		struct pandit_foo_pkey key = { .cookie = x->client, .seq = seq };
		struct pandit_foo_pval nv = { .t_ns = x->now, .n = 1 };
		if (bpf_map_update_elem(&foo_pending, &key, &nv, BPF_NOEXIST) == 0) {
			__sync_fetch_and_add(&tr->overflow, 1);
			__sync_fetch_and_add(&tr->used, 1);
			__sync_fetch_and_add(&tr->pending, 1);
			return;
		}
	}
	__sync_fetch_and_add(&k->requests_untracked, 1);
	__sync_fetch_and_add(&tr->untracked, 1);
}

/* An ACK or NAK from the server: answers the pending REQ with its Seq
 * (match_reply in src/proto/foo_stats.c). A duplicate REQ racing the reply
 * that empties its slot or entry may be lost with it: it is then neither
 * answered nor counted as unanswered. */
static __always_inline void foo_track_reply(struct foo_ctx *x, __u64 seq)
{
	struct pandit_foo_track *tr = x->track;
	struct pandit_foo_counts *k = x->cnt;
	if (!tr)
		return;
	struct pandit_foo_slot *sl = &tr->slot[seq & (PANDIT_FOO_TRACK_SLOTS - 1)];
	__u64 t0;
	if (sl->v.n && sl->seq == seq) {
		t0 = sl->v.t_ns;
		if (__sync_fetch_and_add(&sl->v.n, -1) == 1)
			__sync_fetch_and_add(&tr->used, -1);
	} else {
		/* an entry (also one the daemon made at an EOF: looked for
		 * whatever overflow says) */
		struct pandit_foo_pkey key = { .cookie = x->client, .seq = seq };
		struct pandit_foo_pval *e = bpf_map_lookup_elem(&foo_pending, &key);
		if (!e) {
			for (int tries = 0; tries < 8; tries++) {
				__u64 u = *(volatile __u64 *)&tr->untracked;
				if (!u) {
					__sync_fetch_and_add(&k->replies_unmatched, 1);
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
			__sync_fetch_and_add(&tr->used, -1);
		}
	}
	__sync_fetch_and_add(&tr->pending, -1);
	__u64 us = (x->now > t0 ? x->now - t0 : 0) / 1000;
	__u32 b = PANDIT_FOO_LAT_NBOUNDS;
	for (__u32 i = 0; i < PANDIT_FOO_LAT_NBOUNDS; i++) {
		if (us <= foo_lat_bounds[i]) {
			b = i;
			break;
		}
	}
	__sync_fetch_and_add(&k->lat_bucket[b], 1);
	__sync_fetch_and_add(&k->lat_sum_us, us);
	__sync_fetch_and_add(&k->lat_count, 1);
}

/* A message ended by its LF: counted on the side it belongs to, matched by
 * Seq, and the line state reset. */
static __always_inline void foo_deliver(struct foo_ctx *x)
{
	struct pandit_foo_parse *p = &x->v->foo;
	struct pandit_foo_counts *k = x->cnt;
	__u8 t = p->type;
	__u64 seq = p->seq;
	foo_line_reset(p);
	if ((x->v->dir == PANDIT_SPLICE_C2S) != (t == 1)) {
		__sync_fetch_and_add(&k->wrong_dir, 1);
	} else if (t == 1) {
		__sync_fetch_and_add(&k->req, 1);
		foo_win_add(k->req_win, x->now);
		foo_track_req(x, seq);
	} else {
		__sync_fetch_and_add(t == 2 ? &k->ack : &k->nak, 1);
		foo_win_add(k->resp_win, x->now);
		foo_track_reply(x, seq);
	}
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


/* One byte c at skb offset at of the direction framed in v: foo_step(),
 * with the look-ahead for the reason of a bad line start. */
static __always_inline __u32 foo_byte(struct __sk_buff *skb, struct pandit_splice_val *v, __u32 c,
				      __u32 at)
{
	__u32 r = foo_step(&v->foo, c);
	if (r == FOO_STEP_BAD_START)
		r = foo_looks_like_http(skb, at) ? PANDIT_FOO_ERR_HTTP : PANDIT_FOO_ERR_TYPE;
	else if (r == FOO_STEP_NO_STATE)
		r = FOO_FRAME_LOAD_ERR;
	return r;
}

/* bpf_loop() callback: frames byte i of the skb, reading the skb a chunk
 * at a time. */
static long foo_frame_byte(__u32 i, void *arg)
{
	struct foo_ctx *x = arg;
	if (i >= x->len)
		return 1;
	if ((i & (FOO_CHUNK - 1)) == 0) {
		__u32 n = x->len - i;
		if (n > FOO_CHUNK)
			n = FOO_CHUNK;
		n = ((n - 1) & (FOO_CHUNK - 1)) + 1;	/* 1..FOO_CHUNK, as the verifier sees it too */
		if (bpf_skb_load_bytes(x->skb, i, x->buf, n) < 0) {
			x->err = FOO_FRAME_LOAD_ERR;
			x->err_at = i;
			return 1;
		}
	}
	__u32 r = foo_byte(x->skb, x->v, x->buf[i & (FOO_CHUNK - 1)], i);
	if (r == FOO_STEP_MSG) {
		foo_deliver(x);
	} else if (r) {
		x->err = r;
		x->err_at = i;
		return 1;
	}
	return 0;
}

/* Frames the skb of socket cookie (entry v). Returns 1 when the skb must
 * be dropped (strict policy, the connection non-compliant), else 0. */
static __always_inline int foo_frame(struct __sk_buff *skb, struct pandit_splice_val *v,
				     __u64 cookie)
{
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
		__u32 zero = 0;
		count(PANDIT_SPLICE_FOO_NO_COUNTERS);
		x.cnt = bpf_map_lookup_elem(&foo_uncounted, &zero);
		if (!x.cnt)
			return 0;
	}
	bpf_loop(x.len, foo_frame_byte, &x, 0);
	if (!x.err) {
		p->offset += x.len;
		return 0;
	}
	struct pandit_splice_val *pv = bpf_map_lookup_elem(&splice_peers, &v->peer);
	if (x.err == FOO_FRAME_LOAD_ERR) {
		/* cannot happen with a well-formed skb; the stream can no
		 * longer be framed: both directions stop, and the bytes flow
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
