/* splice.bpf.c - sk_skb stream verdict: moves an established proxied connection's bytes from one socket to the other inside the kernel. */

/*
 * Where it runs: attached to the splice_socks SOCKHASH
 * (BPF_SK_SKB_STREAM_VERDICT). The daemon puts both sockets of a proxied
 * TCP connection (client side and upstream side) in that map once the
 * upstream is up; from then on the kernel calls this program for every skb
 * either socket receives, in order, under the socket's lock.
 *
 * Maps (key -> value):
 *   splice_socks      SOCKHASH  __u64 socket cookie -> socket
 *                     both sockets of every spliced connection; the
 *                     program is attached here and redirects into it.
 *   splice_peers      HASH      __u64 socket cookie -> struct pandit_splice_val
 *                     the other socket of the pair, the app ID, the
 *                     direction and the per-socket counters. Written by
 *                     the daemon before the socket enters splice_socks and
 *                     deleted after it left.
 *   splice_ctl        HASH      __u64 socket cookie -> struct pandit_splice_ctl
 *                     the daemon's request to give a held socket back to
 *                     the kernel; written by the daemon only.
 *   splice_app_bytes  PERCPU_HASH __u32 app ID -> struct pandit_splice_bytes
 *                     bytes moved per app and direction, merged by the
 *                     daemon into the app's byte counters. Entries are
 *                     created by the daemon (an app's first splice).
 *   splice_rings      ARRAY_OF_MAPS __u32 worker index -> RINGBUF
 *                     one ring per worker: a hold is signalled there (the
 *                     socket's cookie), since a held socket's data wakes
 *                     nobody (the daemon does not poll spliced sockets for
 *                     input, so that payload never wakes it).
 *   splice_stats      PERCPU_ARRAY __u32 enum pandit_splice_stat -> __u64
 *                     one counter per outcome.
 *   foo_counts        PERCPU_HASH __u32 counters slot -> struct pandit_foo_counts
 *                     Foo apps: messages and moving windows, counted by the
 *                     framer (foo_frame.bpf.h) for entries with foo.mode set.
 *
 * Backpressure: an skb redirected to the peer's egress waits in the peer's
 * psock backlog until the peer's send buffer takes it; the kernel puts no
 * bound on that backlog (the skb no longer counts against the receiving
 * socket's buffer, so its window stays open). The program therefore
 * computes the peer's backlog (bytes redirected minus bytes that reached the
 * peer's write queue since the splice) and, above backlog_max, holds the
 * socket: SK_PASS keeps the data in this socket's own queue, charged to its
 * receive buffer, so TCP flow control stops the sender. A hold is
 * signalled on the owning worker's ring; the worker reads the held socket
 * and writes to the peer once the backlog has drained. When it has written
 * everything and the socket is quiet, it asks for a resume through
 * splice_ctl (resume_at = the bytes it has read): the program resumes on the
 * next skb only if it passed exactly that many, i.e. nothing the daemon has
 * not read can be overtaken. passed also lets the daemon tell a complete
 * read from one that met the FIN early. It also holds when the peer's send
 * buffer would not take the skb whole behind the backlog, and whenever
 * TCP's memory is tight (tcp_mem.bpf.h): the work item resends a partly
 * sent skb from its start, so a redirect must never be sent short.
 *
 * Fail policy: fail to userspace, never drop a byte (only the empty skb of
 * a FIN, see below). A socket without a peers entry, or whose peer is gone,
 * or whose redirect is refused, gets SK_PASS (held where it has an entry):
 * the bytes stay readable by the daemon, which keeps ownership of both
 * sockets. Every outcome is counted in splice_stats.
 */
#include <linux/bpf.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "pandit_abi.h"
#include "tcp_mem.bpf.h"

/* The few fields of the kernel's struct tcp_sock the program reads,
 * relocated against the running kernel's BTF (CO-RE). */
struct tcp_sock {
	__u32 write_seq;
	__u32 snd_una;
	__u64 bytes_acked;
} __attribute__((preserve_access_index));

/* ... and of struct sock, which struct tcp_sock starts with. */
struct sock_common {
	struct proto *skc_prot;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	int sk_sndbuf;
	int sk_wmem_queued;
	struct mem_cgroup *sk_memcg;	/* the cgroup its buffers are charged to */
} __attribute__((preserve_access_index));

/* Bytes the peer's backlog may hold before a socket is held (set by the
 * daemon before load). */
const volatile __u64 backlog_max = 4u << 20;

/* socket cookie -> socket: both sockets of every spliced connection. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, PANDIT_SPLICE_MAX_SOCKS);
	__type(key, __u64);
	__type(value, __u64);
} splice_socks SEC(".maps");

/* splice_peers (socket cookie -> its peer, app, direction and counters)
 * is defined in foo_frame_common.bpf.h, which the short-circuit program
 * includes too: it shares the map. */
#include "foo_frame_common.bpf.h"

/* socket cookie -> the daemon's resume request for it (the daemon writes, the program reads). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, PANDIT_SPLICE_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct pandit_splice_ctl);
} splice_ctl SEC(".maps");

/* app ID -> per-CPU bytes per direction: the apps' byte counters for spliced traffic. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, PANDIT_SPLICE_MAX_APPS);
	__type(key, __u32);
	__type(value, struct pandit_splice_bytes);
} splice_app_bytes SEC(".maps");

struct splice_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PANDIT_SPLICE_RING_BYTES);
};

/* worker index -> that worker's ring of hold events. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, PANDIT_SPLICE_MAX_WORKERS);
	__type(key, __u32);
	__array(values, struct splice_ring);
} splice_rings SEC(".maps");

/* outcome (enum pandit_splice_stat) -> per-CPU count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PANDIT_SPLICE_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} splice_stats SEC(".maps");

static __always_inline void count(__u32 what)
{
	__u64 *n = bpf_map_lookup_elem(&splice_stats, &what);
	if (n)
		*n += 1;
}

/* Tells the socket's worker about a hold or a resume. */
static __always_inline void notify(struct pandit_splice_val *v, __u64 cookie, __u32 kind)
{
	__u32 w = v->worker;
	void *ring = bpf_map_lookup_elem(&splice_rings, &w);
	struct pandit_splice_event ev = { .cookie = cookie, .kind = kind };
	if (!ring || bpf_ringbuf_output(ring, &ev, sizeof(ev), 0) < 0)
		count(PANDIT_SPLICE_RING_FULL);
}

/* Bytes the socket's send buffer takes now without waiting: sk_sndbuf less
 * what is queued; 0 when TCP memory or the socket's memory cgroup is tight
 * (tcp_mem.bpf.h: a send may then stop short however much room the buffer
 * shows) or when unreadable. */
static __always_inline __s64 peer_room(struct sock *sk)
{
	int sndbuf = 0, queued = 0;
	struct proto *prot = NULL;
	struct mem_cgroup *memcg = NULL;
	if (bpf_core_field_exists(sk->sk_memcg) &&
	    bpf_core_read(&memcg, sizeof(memcg), &sk->sk_memcg) < 0)
		return 0;
	if (bpf_core_read(&sndbuf, sizeof(sndbuf), &sk->sk_sndbuf) < 0 ||
	    bpf_core_read(&queued, sizeof(queued), &sk->sk_wmem_queued) < 0 ||
	    bpf_core_read(&prot, sizeof(prot), &sk->__sk_common.skc_prot) < 0 ||
	    tcp_mem_tight(prot) || memcg_tight(memcg))
		return 0;
	return (__s64)sndbuf - (__s64)queued;
}

/* Holds the socket and tells its worker, which reads it from then on. */
static __always_inline int hold(struct pandit_splice_val *v, __u64 cookie, __u32 why, __u32 len)
{
	v->held = 1;
	__sync_fetch_and_add(&v->passed, len);
	count(why);
	notify(v, cookie, PANDIT_SPLICE_EV_HOLD);
	return SK_PASS;
}

#include "foo_frame.bpf.h"

SEC("sk_skb")
int pandit_splice(struct __sk_buff *skb)
{
	/* A FIN without data comes as an skb of length 0. TCP has already
	 * marked the socket done, so the daemon's read returns 0 (EOF) without
	 * it; kept, it would be a zero-length entry in a psock queue, which the
	 * kernel's backlog worker takes for a failed send (EPIPE on the
	 * socket): redirected, on the peer; passed, on this socket whenever its
	 * backlog is not empty. So it is dropped: it carries no byte. */
	if (skb->len == 0) {
		count(PANDIT_SPLICE_DROP_EMPTY);
		return SK_DROP;
	}
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct pandit_splice_val *v = bpf_map_lookup_elem(&splice_peers, &cookie);
	if (!v) {
		count(PANDIT_SPLICE_PASS_UNKNOWN);
		return SK_PASS;
	}
	/* a Foo connection's bytes are framed and counted whichever way they go */
	if (v->foo.mode && foo_frame(skb, v, cookie)) {
		count(PANDIT_SPLICE_FOO_DROPPED);
		return SK_DROP;
	}
	if (v->held) {
		/* Back to the kernel only when the daemon asked for it and has
		 * read every byte passed to it (and so written them to the
		 * peer): then this skb and the next ones go after them. */
		struct pandit_splice_ctl *ctl = bpf_map_lookup_elem(&splice_ctl, &cookie);
		if (!ctl || ctl->resume_at != v->passed) {
			__sync_fetch_and_add(&v->passed, skb->len);
			count(PANDIT_SPLICE_PASS_HELD);
			return SK_PASS;
		}
		v->user_written = ctl->user_written;
		v->held = 0;
		count(PANDIT_SPLICE_RESUMED);
		notify(v, cookie, PANDIT_SPLICE_EV_RESUME);
	}

	/* how much of what we redirected has not reached the peer's write queue */
	struct bpf_sock *peer = bpf_map_lookup_elem(&splice_socks, &v->peer);
	if (!peer)
		return hold(v, cookie, PANDIT_SPLICE_HOLD_NO_PEER, skb->len);
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(peer);
	__u64 written = 0;
	__s64 room = 0;
	if (tp) {
		written = tp->bytes_acked + (__u32)(tp->write_seq - tp->snd_una);
		room = peer_room((struct sock *)tp);
	}
	bpf_sk_release(peer);
	if (!tp)
		return hold(v, cookie, PANDIT_SPLICE_HOLD_NO_PEER, skb->len);
	__s64 backlog = (__s64)(v->bytes + v->user_written - (written - v->peer_base));
	if (backlog > (__s64)backlog_max)
		return hold(v, cookie, PANDIT_SPLICE_HOLD_BACKLOG, skb->len);
	/* The kernel's work item that writes the backlog into the peer
	 * resends a whole skb after a partial send that ran out of room
	 * (sk_psock_backlog restarts it at offset 0), so the peer would get
	 * the first part twice. Redirect only what the peer's send buffer
	 * takes whole, with what is queued before it: else hold, and the
	 * worker relays (it handles a short write). */
	if (backlog + (__s64)skb->len > room)
		return hold(v, cookie, PANDIT_SPLICE_HOLD_ROOM, skb->len);

	if (bpf_sk_redirect_hash(skb, &splice_socks, &v->peer, 0) != SK_PASS)
		return hold(v, cookie, PANDIT_SPLICE_HOLD_REDIRECT, skb->len);
	__sync_fetch_and_add(&v->bytes, skb->len);
	__u32 app = v->app_id;
	struct pandit_splice_bytes *b = bpf_map_lookup_elem(&splice_app_bytes, &app);
	if (b)
		__sync_fetch_and_add(&b->bytes[v->dir & 1], skb->len);
	count(PANDIT_SPLICE_REDIRECTED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
