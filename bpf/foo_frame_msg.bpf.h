/* foo_frame_msg.bpf.h - the short-circuit's Foo framer: frames the plain messages a paired Foo socket sends before they go straight into the peer. */
#ifndef PANDIT_FOO_FRAME_MSG_BPF_H
#define PANDIT_FOO_FRAME_MSG_BPF_H

/*
 * Included by shortcut.bpf.c after its maps. A paired socket of a Foo
 * connection (pair entry with frame set) sends bytes that, over TCP,
 * would reach pandit's socket `frame` and be framed there by the splice
 * program in that socket's splice entry. The short-circuit frames them in
 * the same entry, with the same counters, before they skip TCP: a
 * direction has one framing state whichever way each send travels.
 *
 * Only what the fast line takes is framed here: a send that starts at a
 * line start and is made of complete plain valid messages only
 * (foo_fast_line, up to FOO_FAST_MAX bytes each; at most FOO_MSG_LINES of
 * them). A send with any line the fast line declines (a violation, UTF-8,
 * a long line, a line the send does not finish) goes to TCP whole, and
 * the splice program frames it exactly (foo_step), reports a violation as
 * on the spliced path, and applies the policy. Nothing the short-circuit
 * frames can violate. (Not the head of such a send only: the kernel keeps
 * a run's redirect and apply_bytes in the message for the runs on its
 * rest, so a send cannot be split between the two ways.)
 *
 * One state, one framer at a time: the short-circuit only runs once the
 * peer has read every byte this socket sent over TCP (the ordering gate),
 * so every earlier byte has been through the splice program (or the
 * daemon's parser, before the splice) and nothing is being framed there
 * for this direction. A send is counted only once its redirect is set
 * (bpf_msg_redirect_hash): a send left to TCP is never counted here.
 */
#include "foo_frame_common.bpf.h"

/* Reads the send from pos on into buf, as much as fits: the bytes read,
 * or 0 when they cannot be read. bpf_msg_pull_data() makes the range
 * linear (it copies only when the range spans two of the send's
 * scatterlist elements) and points msg->data at pos. */
__noinline __u32 foo_msg_read(struct sk_msg_md *msg, struct foo_buf *buf, __u32 pos)
{
	if (!msg || !buf)
		return 0;
	__u32 size = msg->size;
	if (pos >= size)
		return 0;
	__u32 n = size - pos;
	if (n > FOO_FAST_BUF)
		n = FOO_FAST_BUF;
	n = ((n - 1) & (FOO_FAST_BUF - 1)) + 1;	/* 1..FOO_FAST_BUF, as the verifier sees it too */
	if (bpf_msg_pull_data(msg, pos, pos + n, 0) < 0)
		return 0;
	void *d = (void *)(long)msg->data;
	void *e = (void *)(long)msg->data_end;
	if (d + n > e)
		return 0;
	if (bpf_probe_read_kernel(buf->b, n, d) < 0)
		return 0;
	return n;
}

/* The fast line at x->pos, the buffer filled first when it holds less
 * of the line than the fast line may look at: its bytes with the LF, or
 * 0 (declined, or unreadable). */
static __always_inline __u32 foo_msg_line(struct foo_ctx *x)
{
	__u32 pos = x->pos;
	if (pos >= x->len)
		return 0;
	__u32 have = x->boff + x->blen - pos;
	__u32 want = x->len - pos;
	if (want > FOO_FAST_MAX)
		want = FOO_FAST_MAX;
	if (have < want) {
		__u32 n = foo_msg_read(x->msg, x->buf, pos);
		if (!n)
			return 0;
		x->boff = pos;
		x->blen = n;
		have = n;
	}
	__u32 took = foo_fast_line_at(&x->v->foo, x->buf, pos - x->boff, have);
	return took > 1 ? took : 0;
}

/* The Type and Seq of the messages of one send, recorded by the scan
 * for the delivery (per CPU, one level per foo_scratch level). */
#define FOO_MSG_LINES 128u	/* a power of two; a send with more goes to TCP */
struct foo_msg_lines {
	__u64 seq[FOO_MSG_LINES];
	__u8 type[FOO_MSG_LINES];
};

struct foo_msg_scratch {
	struct foo_msg_lines lv[FOO_NEST];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct foo_msg_scratch);
} foo_msg_scratch SEC(".maps");

struct foo_msg_ctx {
	struct foo_ctx x;
	struct foo_msg_lines *lines;
	__u32 n;			/* messages recorded */
	__u32 pad;
};

/* bpf_loop() callback of the scan: records the line at x->pos when the
 * fast line takes it, else stops. Nothing is counted yet. */
static long foo_msg_scan(__u32 i, void *arg)
{
	struct foo_msg_ctx *m = arg;
	struct foo_ctx *x = &m->x;
	struct pandit_foo_parse *p = &x->v->foo;
	(void)i;
	if (m->n >= FOO_MSG_LINES)
		return 1;
	__u32 took = foo_msg_line(x);
	if (!took)
		return 1;
	__u32 k = m->n & (FOO_MSG_LINES - 1);
	m->lines->seq[k] = p->seq;
	m->lines->type[k] = p->type;
	p->type = 0;
	p->seq = 0;
	m->n++;
	x->pos += took;
	return 0;
}

/* bpf_loop() callback of the delivery: message i as it was recorded. */
static long foo_msg_deliver(__u32 i, void *arg)
{
	struct foo_msg_ctx *m = arg;
	struct pandit_foo_parse *p = &m->x.v->foo;
	__u32 k = i & (FOO_MSG_LINES - 1);
	p->type = m->lines->type[k];
	p->seq = m->lines->seq[k];
	foo_deliver(&m->x);
	return 0;
}

/* Frames a paired socket's send (pair entry v) when it is made of plain
 * messages only, and then sets its redirect into the peer's ingress: the
 * bytes framed (the whole send), 0 when it is not framed (it goes to TCP,
 * no redirect set), -1 when the redirect was refused (nothing counted).
 * All or nothing: a send cannot be split between the redirect and TCP,
 * since the kernel keeps the first run's redirect (and apply_bytes) in
 * the message for the runs on its rest. So the send is scanned first,
 * each message's Type and Seq recorded, and delivered (counted, matched)
 * only once the redirect is set. A global function, checked once. */
__noinline int foo_msg_frame(struct sk_msg_md *msg, struct pandit_shortcut_pair *v)
{
	if (!msg || !v)
		return 0;
	__u64 frame = v->frame;
	struct pandit_splice_val *sv = bpf_map_lookup_elem(&splice_peers, &frame);
	if (!sv)
		return 0;	/* not spliced (yet, or any more): the daemon's parser frames */
	struct pandit_foo_parse *p = &sv->foo;
	if (!p->mode || p->stop || p->state != PANDIT_FOO_ST_START)
		return 0;
	struct foo_msg_ctx m = {
		.x = {
			.msg = msg,
			.v = sv,
			.now = bpf_ktime_get_ns(),
			.len = msg->size,
		},
	};
	struct foo_ctx *x = &m.x;
	if (!x->len)
		return 0;
	x->client = sv->dir == PANDIT_SPLICE_C2S ? frame : sv->peer;
	__u32 slot = p->slot;
	x->cnt = bpf_map_lookup_elem(&foo_counts, &slot);
	if (!x->cnt)
		return 0;	/* the splice program counts it as foo_no_counters */
	x->track = bpf_map_lookup_elem(&foo_track, &x->client);
	__u32 zero = 0;
	struct foo_scratch *sc = bpf_map_lookup_elem(&foo_scratch, &zero);
	struct foo_msg_scratch *ms = bpf_map_lookup_elem(&foo_msg_scratch, &zero);
	if (!ms)
		return 0;
	__u32 level = foo_claim(sc);
	if (!sc || level >= FOO_NEST)
		return 0;
	level &= FOO_NEST - 1;
	x->t = &sc->lv[level].t;
	x->buf = &sc->lv[level].buf;
	m.lines = &ms->lv[level];
	int ret = 0;
	bpf_loop(FOO_MSG_LINES, foo_msg_scan, &m, 0);
	if (x->pos != x->len || !m.n)
		goto out;	/* a line the fast line declines, or too many */
	struct pandit_shortcut_key peer = v->peer;
	if (bpf_msg_redirect_hash(msg, &shortcut_socks, &peer, BPF_F_INGRESS) != SK_PASS) {
		ret = -1;
		goto out;
	}
	__builtin_memset(x->t, 0, sizeof(*x->t));
	bpf_loop(m.n, foo_msg_deliver, &m, 0);
	foo_tally_flush(x->cnt, x->track, x->t, x->now);
	p->offset += x->len;
	ret = (int)x->len;
out:
	__sync_fetch_and_and(&sc->busy[level], 0);
	return ret;
}

#endif
