/* shortcut.bpf.c - sock_ops + sk_msg: local TCP sockets paired by the daemon send straight into each other's receive queue, past TCP and past the proxy. */

/*
 * Where it runs:
 *   pandit_shortcut_ops  sock_ops, attached to a cgroup v2 directory: every
 *                        IPv4/IPv6 TCP socket of a process in that cgroup
 *                        that becomes established (active or passive) enters
 *                        shortcut_socks under its 4-tuple, with its TCP
 *                        sequence numbers at that moment kept in
 *                        shortcut_sk and shortcut_where; at TCP_CLOSE its
 *                        shortcut_where entry goes.
 *   pandit_shortcut_msg  sk_msg verdict, attached to shortcut_socks: runs for
 *                        every send on those sockets, under the sender's
 *                        socket lock, before the bytes reach TCP.
 *
 * Maps (key -> value):
 *   shortcut_socks  SOCKHASH  struct pandit_shortcut_key -> socket
 *                   local established sockets; the redirect target.
 *   shortcut_sk     SK_STORAGE socket -> struct pandit_shortcut_sk
 *                   the socket's key, cookie and sequence numbers at
 *                   establishment (freed with the socket): the sender's
 *                   side of the gate.
 *   shortcut_where  HASH  struct pandit_shortcut_key -> struct pandit_shortcut_where
 *                   the socket's kernel address, cookie and receive base:
 *                   the receiver's side of the gate. An sk_msg program may
 *                   not release a socket reference, so it cannot look the
 *                   peer up in shortcut_socks; it reads the peer's fields
 *                   with bpf_probe_read_kernel instead (TCP sockets are
 *                   SLAB_TYPESAFE_BY_RCU; the cookie is checked).
 *   shortcut_pairs  HASH  struct pandit_shortcut_key -> struct pandit_shortcut_pair
 *                   written by the daemon: client socket C -> backend
 *                   socket B and B -> C, for a connection it proxies
 *                   between two local sockets; the program keeps the byte
 *                   counters in it.
 *   shortcut_stats  PERCPU_ARRAY __u32 enum pandit_shortcut_stat -> __u64
 *
 * Ordering (the reason for the gate): a message redirected with
 * BPF_F_INGRESS is queued on the peer's psock (ingress_msg) inside the
 * sender's sendmsg, and the peer's recvmsg (tcp_bpf_recvmsg) reads that
 * queue before its TCP receive queue whenever it is not empty. So a
 * redirected byte would overtake every byte the sender sent earlier over
 * TCP that the peer has not read yet (in flight to the proxy, in the
 * proxy, in flight to the peer, or in the peer's receive queue). The
 * program therefore redirects only when the peer has read every byte this
 * socket ever sent over TCP, in sequence space (32 bits, from the sequence
 * numbers at establishment):
 *   sent = own write_seq - base      exact: we hold our own socket lock,
 *                                    so no TCP write can happen meanwhile
 *   read = peer's copied_seq - base  one monotonic field, which the kernel
 *                                    advances only after the bytes were
 *                                    copied out to the reader
 * and redirects iff read == sent. (rcv_nxt, bytes_received or the queue
 * length would not do: the kernel advances rcv_nxt before it queues the
 * skb, and the three are not read atomically.) The proxy relays bytes
 * unchanged (L4), so the peer's TCP stream is exactly this socket's TCP
 * stream, and nothing of it is left anywhere once the peer has read it
 * all (a wrap of 4 GiB would need 4 GiB unread in flight). Otherwise the
 * message goes to TCP as usual (SK_PASS, counted as pending) and the gate is
 * checked again at the next send: it opens by itself once the proxy has
 * relayed and the peer has read the backlog, and never needs a flush
 * handshake with the daemon. Bytes passed after bytes were redirected are
 * fine: the peer reads its psock queue first, which holds the older ones.
 * A FIN needs nothing either: it goes over TCP behind every byte
 * this socket sent over TCP, and every redirected byte was already in the
 * peer's ingress queue when sendmsg returned, which the peer reads before
 * the FIN.
 *
 * Backpressure: the peer's psock queue has no bound and pushes nothing
 * back; past backlog_max unread bytes there, sends take TCP (see below).
 * So do they once TCP's memory is tight (tcp_mem.bpf.h), where the peer
 * may not be charged for a redirect and the send would fail with ENOMEM.
 *
 * Fail policy: to TCP, never drop. No entry, a stale entry (cookie
 * mismatch: a tuple reused), a peer gone from the map, a gate closed, a
 * backlog over the cap, TCP memory tight, or a redirect refused: SK_PASS,
 * normal TCP through the proxy, counted per reason.
 */
#include <linux/bpf.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "pandit_abi.h"
#include "tcp_mem.bpf.h"

#define AF_INET 2
#define AF_INET6 10

/* The fields of the kernel's socket structures the program reads,
 * relocated against the running kernel's BTF (CO-RE). struct tcp_sock
 * starts with struct sock. */
struct sock_common {
	struct proto *skc_prot;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	void *sk_user_data;	/* the psock, with flag bits in the low bits */
	struct mem_cgroup *sk_memcg;	/* the cgroup its buffers are charged to */
} __attribute__((preserve_access_index));

struct sk_psock {
	__u32 msg_tot_len;	/* bytes in ingress_msg not read yet */
} __attribute__((preserve_access_index));

/* Flag bits the kernel keeps in the low bits of sk_user_data. */
#define PSOCK_PTR_MASK (~7ull)

struct tcp_sock {
	__u32 write_seq;
	__u32 copied_seq;
} __attribute__((preserve_access_index));

/* Bytes redirected into a peer and not read by it yet beyond which sends
 * take TCP again (set by the daemon before load). The kernel puts no bound
 * on a psock's ingress queue (it is not charged to the receive buffer, so
 * nothing pushes back on the sender): without this cap a client could pin
 * any amount of kernel memory behind a backend that does not read. Passed
 * bytes go to the proxy, whose path has TCP flow control; the gate then
 * keeps the sends on TCP until the peer has read them. */
const volatile __u32 backlog_max = 4u << 20;

/* Set only by the probe's negative control (tools/shortcut_probe
 * --ungated): redirect without the ordering gate, to show that the
 * checks catch the reorder the gate prevents. Never set by pandit. */
const volatile __u32 ungated = 0;

/* 4-tuple (+ netns) -> socket: every local established TCP socket in the cgroup. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, PANDIT_SHORTCUT_MAX_SOCKS);
	__type(key, struct pandit_shortcut_key);
	__type(value, __u64);
} shortcut_socks SEC(".maps");

/* socket -> its key, cookie and TCP counters at establishment (freed with the socket). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pandit_shortcut_sk);
} shortcut_sk SEC(".maps");

/* 4-tuple -> the peer whose ingress gets this socket's sends (daemon), and counters (program). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, PANDIT_SHORTCUT_MAX_PAIRS);
	__type(key, struct pandit_shortcut_key);
	__type(value, struct pandit_shortcut_pair);
} shortcut_pairs SEC(".maps");

/* 4-tuple -> where the socket lives and its receive counter base (sock_ops; deleted at TCP_CLOSE). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, PANDIT_SHORTCUT_MAX_SOCKS);
	__type(key, struct pandit_shortcut_key);
	__type(value, struct pandit_shortcut_where);
} shortcut_where SEC(".maps");

/* outcome (enum pandit_shortcut_stat) -> per-CPU count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PANDIT_SHORTCUT_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} shortcut_stats SEC(".maps");

static __always_inline void count(__u32 what)
{
	__u64 *n = bpf_map_lookup_elem(&shortcut_stats, &what);
	if (n)
		*n += 1;
}

/* The ctx's remote_port holds the port in network order, in the upper or
 * the lower half of the word depending on the kernel: take whichever is set
 * (port 0 is never an established peer). */
static __always_inline __u16 remote_port(__u32 raw)
{
	if (raw > 0xffff)
		raw >>= 16;
	return bpf_ntohs((__u16)raw);
}

/* Whether TCP memory or the socket's memory cgroup is tight
 * (tcp_mem.bpf.h); 1 when it cannot be read. There the peer's receive
 * memory may not be charged for a redirect, which then fails the send
 * with ENOMEM, where TCP makes the sender wait. */
static __always_inline int socket_memory_tight(struct sock *sk)
{
	struct proto *prot = NULL;
	struct mem_cgroup *memcg = NULL;
	if (bpf_core_field_exists(sk->sk_memcg) &&
	    bpf_core_read(&memcg, sizeof(memcg), &sk->sk_memcg) < 0)
		return 1;
	if (bpf_core_read(&prot, sizeof(prot), &sk->__sk_common.skc_prot) < 0)
		return 1;
	return tcp_mem_tight(prot) || memcg_tight(memcg);
}

#include "foo_frame_msg.bpf.h"

static __always_inline void mapped4(__u8 out[16], __u32 addr_be)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &addr_be, 4);
}

SEC("sockops")
int pandit_shortcut_ops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	if (op == BPF_SOCK_OPS_STATE_CB) {
		if (skops->args[1] != BPF_TCP_CLOSE)
			return 1;
		struct pandit_shortcut_sk *st = bpf_sk_storage_get(&shortcut_sk, sk, 0, 0);
		if (st) {
			bpf_map_delete_elem(&shortcut_where, &st->self);
			count(PANDIT_SHORTCUT_SOCK_CLOSED);
		}
		return 1;
	}
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;

	struct pandit_shortcut_key key = {};
	__u32 family = skops->family;
	if (family == AF_INET) {
		mapped4(key.local_addr, skops->local_ip4);
		mapped4(key.remote_addr, skops->remote_ip4);
	} else if (family == AF_INET6) {
		/* one 4-byte load per word: the context allows no wider access */
		__u32 l[4], r[4];
#pragma unroll
		for (int i = 0; i < 4; i++) {
			l[i] = *(volatile __u32 *)&skops->local_ip6[i];
			r[i] = *(volatile __u32 *)&skops->remote_ip6[i];
		}
		__builtin_memcpy(key.local_addr, l, 16);
		__builtin_memcpy(key.remote_addr, r, 16);
	} else {
		count(PANDIT_SHORTCUT_SOCK_SKIPPED);
		return 1;
	}
	key.local_port = (__u16)skops->local_port;
	key.remote_port = remote_port(skops->remote_port);
	key.netns = bpf_get_netns_cookie(skops);

	struct pandit_shortcut_sk *st =
		bpf_sk_storage_get(&shortcut_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		count(PANDIT_SHORTCUT_SOCK_FAILED);
		return 1;
	}
	st->self = key;
	st->cookie = bpf_get_socket_cookie(skops);
	st->base_snd = skops->snd_nxt;
	st->base_rcv = skops->rcv_nxt;
	struct pandit_shortcut_where w = {
		.sk = (__u64)sk,
		.cookie = st->cookie,
		.base_rcv = st->base_rcv,
	};
	if (bpf_map_update_elem(&shortcut_where, &key, &w, BPF_ANY) < 0) {
		count(PANDIT_SHORTCUT_SOCK_FAILED);
		return 1;
	}
	/* to hear of TCP_CLOSE, which takes the shortcut_where entry out */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	if (bpf_sock_hash_update(skops, &shortcut_socks, &key, BPF_ANY) < 0) {
		bpf_map_delete_elem(&shortcut_where, &key);
		count(PANDIT_SHORTCUT_SOCK_FAILED);
		return 1;
	}
	count(PANDIT_SHORTCUT_SOCK_ADDED);
	return 1;
}

SEC("sk_msg")
int pandit_shortcut_msg(struct sk_msg_md *msg)
{
	struct bpf_sock *me = msg->sk;
	if (!me) {
		count(PANDIT_SHORTCUT_PASS_UNPAIRED);
		return SK_PASS;
	}
	struct pandit_shortcut_sk *st = bpf_sk_storage_get(&shortcut_sk, me, 0, 0);
	if (!st) {
		count(PANDIT_SHORTCUT_PASS_UNPAIRED);
		return SK_PASS;
	}
	struct pandit_shortcut_pair *v = bpf_map_lookup_elem(&shortcut_pairs, &st->self);
	if (!v) {
		count(PANDIT_SHORTCUT_PASS_UNPAIRED);
		return SK_PASS;
	}
	if (v->cookie != st->cookie) {
		count(PANDIT_SHORTCUT_PASS_STALE);
		return SK_PASS;
	}
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(me);
	if (!tp) {
		count(PANDIT_SHORTCUT_PASS_UNPAIRED);
		return SK_PASS;
	}
	/* every byte this socket handed to TCP since establishment (its lock is held) */
	__u32 sent = tp->write_seq - st->base_snd;

	struct pandit_shortcut_where *w = bpf_map_lookup_elem(&shortcut_where, &v->peer);
	if (!w) {
		count(PANDIT_SHORTCUT_PASS_NO_PEER);
		return SK_PASS;
	}
	if (w->cookie != v->peer_cookie) {
		count(PANDIT_SHORTCUT_PASS_STALE);
		return SK_PASS;
	}
	/* every byte of its TCP stream the peer has read (see the header); a
	 * failed read leaves the gate closed */
	struct tcp_sock *ptp = (struct tcp_sock *)w->sk;
	__u32 copied = 0;
	__u32 read = sent + 1;
	if (bpf_core_read(&copied, sizeof(copied), &ptp->copied_seq) == 0)
		read = copied - w->base_rcv;
	/* the peer's unread redirected bytes (0 when it has no psock yet) */
	__u64 psock = 0;
	__u32 backlog = ~0u;
	if (bpf_core_read(&psock, sizeof(psock), &((struct sock *)ptp)->sk_user_data) == 0) {
		psock &= PSOCK_PTR_MASK;
		if (!psock)
			backlog = 0;
		else if (bpf_core_read(&backlog, sizeof(backlog),
				       &((struct sk_psock *)psock)->msg_tot_len) < 0)
			backlog = ~0u;
	}
	if (!ungated && read != sent) {
		__sync_fetch_and_add(&v->passed, msg->size);
		count(PANDIT_SHORTCUT_PASS_PENDING);
		return SK_PASS;
	}
	if (backlog > backlog_max) {
		__sync_fetch_and_add(&v->passed, msg->size);
		count(PANDIT_SHORTCUT_PASS_BACKLOG);
		return SK_PASS;
	}
	if (socket_memory_tight((struct sock *)ptp)) {
		__sync_fetch_and_add(&v->passed, msg->size);
		count(PANDIT_SHORTCUT_PASS_PRESSURE);
		return SK_PASS;
	}
	if (v->frame) {
		/* a Foo connection: a send of plain messages is framed and
		 * redirected, any other goes to TCP (foo_frame_msg.bpf.h) */
		int framed = foo_msg_frame(msg, v);
		if (framed <= 0) {
			__sync_fetch_and_add(&v->passed, msg->size);
			count(framed < 0 ? PANDIT_SHORTCUT_PASS_REDIRECT : PANDIT_SHORTCUT_PASS_FOO);
			return SK_PASS;
		}
		__sync_fetch_and_add(&v->redirected, (__u32)framed);
		__sync_fetch_and_add(&v->framed, (__u32)framed);
		__sync_fetch_and_add(&v->msgs, 1);
		count(PANDIT_SHORTCUT_REDIRECTED);
		count(PANDIT_SHORTCUT_FOO_FRAMED);
		return SK_PASS;
	}
	if (bpf_msg_redirect_hash(msg, &shortcut_socks, &v->peer, BPF_F_INGRESS) != SK_PASS) {
		__sync_fetch_and_add(&v->passed, msg->size);
		count(PANDIT_SHORTCUT_PASS_REDIRECT);
		return SK_PASS;
	}
	__sync_fetch_and_add(&v->redirected, msg->size);
	__sync_fetch_and_add(&v->msgs, 1);
	count(PANDIT_SHORTCUT_REDIRECTED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
