/* foo_frame_common.bpf.h - what both Foo framers in the kernel share (splice: per skb; short-circuit: per send): maps, the per-run tally, Seq matching, counting. */
#ifndef PANDIT_FOO_FRAME_COMMON_BPF_H
#define PANDIT_FOO_FRAME_COMMON_BPF_H

/*
 * Included by foo_frame.bpf.h (the splice program's framer, one skb at a
 * time) and foo_frame_msg.bpf.h (the short-circuit's, one send at a time).
 * Both frame a direction whose state is the splice entry of the pandit
 * socket those bytes would reach over TCP (struct pandit_splice_val, in
 * splice_peers): the short-circuit program shares that map and the
 * counters' maps with the splice program (the daemon hands it their file
 * descriptors before load), so a direction is framed in one state and
 * counted in one place whichever way each of its bytes travels.
 */
/* The step and the fast line, inlined into their global functions. */
#define FOO_STEP_FN static __always_inline
#define FOO_STEP_INLINE static __always_inline
#include "foo_frame_step.h"


/* socket cookie -> the splice entry of one of pandit's spliced sockets
 * (its peer, app, direction, counters, and its direction's Foo state).
 * The splice program's map; the short-circuit program takes it over before
 * load (bpf_map__reuse_fd), so it is defined here, once, for both. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);	/* memory for open connections only */
	__uint(max_entries, PANDIT_SPLICE_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct pandit_splice_val);
} splice_peers SEC(".maps");

/* counters slot -> per-CPU message counters and windows of one Foo app */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, PANDIT_FOO_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct pandit_foo_counts);
} foo_counts SEC(".maps");

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
	union {				/* what is framed: */
		struct __sk_buff *skb;	/* the splice program's skb */
		struct sk_msg_md *msg;	/* the short-circuit's send */
	};
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


/* foo_fast_line() as a global function: checked once, on its own. */
__noinline __u32 foo_fast_line_at(struct pandit_foo_parse *p, const struct foo_buf *buf, __u32 base,
				  __u32 have)
{
	if (!p || !buf)
		return 0;
	return foo_fast_line(p, buf->b, base, have);
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

#endif
