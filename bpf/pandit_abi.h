/* pandit_abi.h - map keys and values shared by the BPF programs and the daemon (fixed-width types only). */
#ifndef PANDIT_ABI_H
#define PANDIT_ABI_H

#include <linux/bpf.h>
#include <linux/types.h>

/* Key of the steering LPM trie. The data compared bit by bit is the
 * destination port (network byte order) followed by the destination address
 * as IPv6 (IPv4 as ::ffff:a.b.c.d). prefixlen counts bits from the start of
 * port_be: 16 matches the port on any address, 16 + 128 one exact address. */
struct pandit_steer_key {
	__u32 prefixlen;
	__be16 port_be;
	__u8 addr[16];
	__u8 pad[2];	/* always zero */
};

#define PANDIT_STEER_PREFIX_PORT_BITS 16u
#define PANDIT_STEER_PREFIX_MAX (PANDIT_STEER_PREFIX_PORT_BITS + 128u)

/* Value of the steering LPM trie. */
struct pandit_steer_val {
	__u32 app_id;	/* small numeric ID; names live in userspace */
	__u32 sock_idx;	/* slot of the listener in the sockets map */
};

/* Slots of the sockets map. */
enum pandit_sock_slot {
	PANDIT_SOCK_TCP = 0,	/* the TCP listeners of the workers (one SO_REUSEPORT group) */
	PANDIT_SOCK_SLOTS,
};

/* Per-CPU counters of the steering program, indexed by reason. */
enum pandit_steer_stat {
	PANDIT_STEER_ASSIGNED = 0,	/* connection handed to a pandit listener */
	PANDIT_STEER_PASS_UNMATCHED,	/* no app on this address:port: left alone */
	PANDIT_STEER_DROP_NO_SOCKET,	/* app configured but no live listener: refused */
	PANDIT_STEER_DROP_ASSIGN,	/* bpf_sk_assign failed: refused */
	PANDIT_STEER_PASS_NOT_TCP,	/* not a TCP lookup (UDP, ...): left alone */
	PANDIT_STEER_STAT_MAX,
};

#define PANDIT_STEER_MAX_ENTRIES 262144u

/* --- kernel splicing (bpf/splice.bpf.c) ----------------------------------- */

/* --- Foo framed in the kernel (bpf/foo_frame.bpf.h, part of the splice
 * program) ------------------------------------------------------------------ */

/* States of the Foo framer: the same numbers as the userspace parser's
 * (enum foo_state in src/proto/foo.h, checked there), so a direction's
 * state moves between the two at a splice and at EOF. */
enum pandit_foo_state {
	PANDIT_FOO_ST_START = 0,	/* at a line start */
	PANDIT_FOO_ST_TYPE,		/* inside Type */
	PANDIT_FOO_ST_TYPE_WS,		/* Type complete, whitespace required */
	PANDIT_FOO_ST_WS1,		/* whitespace between Type and Seq */
	PANDIT_FOO_ST_SEQ,		/* inside Seq */
	PANDIT_FOO_ST_SEQ_CR,		/* CR right after Seq: LF required */
	PANDIT_FOO_ST_WS2,		/* whitespace after Seq, before Data */
	PANDIT_FOO_ST_DATA,		/* inside Data */
	PANDIT_FOO_ST_ERR,		/* failed for good */
};

/* Violations, the same numbers as the userspace parser's enum foo_err
 * (checked in src/proto/foo.c). */
enum pandit_foo_err {
	PANDIT_FOO_ERR_NONE = 0,
	PANDIT_FOO_ERR_TYPE,
	PANDIT_FOO_ERR_HTTP,
	PANDIT_FOO_ERR_SEQ,
	PANDIT_FOO_ERR_EMPTY,
	PANDIT_FOO_ERR_LINE_TOO_LONG,
	PANDIT_FOO_ERR_UTF8,
	PANDIT_FOO_ERR_NUL,
};

/* Policy of a framed direction (pandit_foo_parse.mode). */
enum pandit_foo_mode {
	PANDIT_FOO_OFF = 0,		/* not a Foo connection: bytes only */
	PANDIT_FOO_LENIENT,		/* a violation stops the framing; bytes flow on */
	PANDIT_FOO_STRICT,		/* a violation drops the connection's bytes until the
					 * daemon closes it */
};

/* The framer's state for one direction (part of pandit_splice_val): the
 * userspace parser's fields (struct foo_parser), written by the daemon at
 * the splice and then by the program only. */
struct pandit_foo_parse {
	__u64 seq;		/* Seq so far */
	__u64 offset;		/* bytes of the stream framed (userspace's count included) */
	__u64 err_offset;	/* stream offset of the byte that violated */
	__u32 max_line;		/* longest line in bytes before its LF */
	__u32 line_len;		/* bytes of the current line so far */
	__u32 data_len;		/* bytes of Data so far */
	__u32 slot;		/* key of foo_counts: the app's counters */
	__u8 state;		/* enum pandit_foo_state */
	__u8 type;		/* 1 REQ, 2 ACK, 3 NAK: matched or being matched */
	__u8 type_pos;		/* bytes of Type matched */
	__u8 seq_digits;
	__u8 utf8_need;		/* UTF-8 continuation bytes still expected */
	__u8 utf8_lo, utf8_hi;	/* range of the next continuation byte */
	__u8 last_cr;		/* the last byte of Data was CR */
	__u8 err;		/* the violation (enum foo_err), 0 while none */
	__u8 mode;		/* enum pandit_foo_mode */
	__u8 stop;		/* the other direction failed first: framing over
				 * (lenient: bytes flow on; strict: dropped) */
	__u8 pad[5];
};

/* Per-CPU counters of one Foo app (value of foo_counts, keyed by a slot the
 * daemon gives the app's counters). The rings have the layout of the
 * userspace moving windows (src/stats/window.h, checked there): slot
 * tick % PANDIT_FOO_WIN_SLOTS holds (tick & 0xffffffff) << 32 | count, with
 * tick = CLOCK_MONOTONIC ns / PANDIT_FOO_WIN_BUCKET_NS. */
#define PANDIT_FOO_LAT_NBOUNDS 16
#define PANDIT_FOO_LAT_BOUNDS_US \
	{ 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, \
	  250000, 500000, 1000000, 2500000, 5000000 }
#define PANDIT_FOO_WIN_SLOTS 128
#define PANDIT_FOO_WIN_BUCKET_NS 100000000ull
struct pandit_foo_counts {
	__u64 req;		/* REQ from the client */
	__u64 ack;		/* ACK from the server */
	__u64 nak;		/* NAK from the server */
	__u64 wrong_dir;	/* a valid message from the wrong side */
	__u64 replies_unmatched;	/* a reply whose Seq was not pending */
	__u64 requests_untracked;	/* a REQ beyond the connection's table */
	__u64 requests_duplicate;	/* a REQ whose Seq was pending already */
	__u64 lat_count;		/* REQ -> reply latencies observed */
	__u64 lat_sum_us;
	__u64 lat_bucket[PANDIT_FOO_LAT_NBOUNDS + 1];	/* by PANDIT_FOO_LAT_BOUNDS_US, + Inf */
	__u64 req_win[PANDIT_FOO_WIN_SLOTS];	/* REQ */
	__u64 resp_win[PANDIT_FOO_WIN_SLOTS];	/* ACK + NAK */
};

/* Requests pending a reply on one Foo connection, matched by Seq as
 * src/proto/foo_stats.h says, at most PANDIT_FOO_TRACK_MAX distinct Seqs
 * (beyond: untracked). foo_track (key: the client socket's cookie) holds
 * the connection's totals and PANDIT_FOO_TRACK_SLOTS slots, slot
 * Seq % PANDIT_FOO_TRACK_SLOTS: sequential Seqs in flight take no map
 * operation at all. A Seq whose slot holds another goes to foo_pending
 * (key: the client socket's cookie and the Seq). Written by the daemon at
 * the splice (what the userspace parser had pending), then by the program
 * with atomic operations: a REQ from the client adds, a reply from the
 * server takes away. */
#define PANDIT_FOO_TRACK_MAX 4096u
#define PANDIT_FOO_TRACK_SLOTS 64u	/* a power of two */
#define PANDIT_FOO_PENDING_MAX (1u << 20)	/* entries of foo_pending, all connections */
struct pandit_foo_pkey {
	__u64 cookie;		/* the client socket's */
	__u64 seq;
};
struct pandit_foo_pval {
	__u64 t_ns;		/* CLOCK_MONOTONIC of the first pending send */
	__u32 n;		/* sends pending a reply (in a slot: 0 when free) */
	__u32 pad;
};
struct pandit_foo_slot {
	__u64 seq;
	struct pandit_foo_pval v;
};
struct pandit_foo_track {
	__u64 used;		/* distinct Seqs pending (slots and foo_pending) */
	__u64 pending;		/* sends pending in them */
	__u64 untracked;	/* sends pending beyond them */
	__u64 overflow;		/* of used, entries in foo_pending */
	struct pandit_foo_slot slot[PANDIT_FOO_TRACK_SLOTS];
};

#define PANDIT_FOO_MAX_SLOTS 65536u	/* Foo apps counted by the kernel at once */

/* Value of the splice peers map, one per spliced socket, keyed by that
 * socket's cookie (SO_COOKIE). The daemon writes it once before the socket
 * enters the sockets map and never again (so it cannot overwrite the
 * program's counters); the program updates bytes and held in place. */
struct pandit_splice_val {
	__u64 peer;		/* cookie of the other socket of the pair */
	__u64 bytes;		/* program: bytes of this socket redirected to the peer */
	__u64 peer_base;	/* daemon: bytes written into the peer before splicing
				 * (tcp bytes_acked + unacked), the origin of the
				 * backlog computation */
	__u64 passed;		/* program: bytes of this socket left to the daemon (SK_PASS);
				 * a read that says EOF before the daemon has read that
				 * many is early (the kernel may still be queueing them) */
	__u64 user_written;	/* program, from splice_ctl at a resume: bytes the daemon
				 * wrote into the peer for this direction while it was held */
	__u32 app_id;		/* small numeric app ID: key of splice_app_bytes */
	__u32 dir;		/* enum pandit_splice_dir of the bytes this socket receives */
	__u32 held;		/* program: set when the peer's backlog passes the cap: this
				 * socket's bytes stay in its receive queue for the daemon;
				 * cleared when the daemon asks to resume (splice_ctl) and
				 * has read every byte passed to it */
	__u32 worker;		/* index of the owning worker's ring in splice_rings */
	struct pandit_foo_parse foo;	/* Foo apps: this socket's direction framed by the
					 * program (mode 0: not framed) */
};

/* Written by the daemon only (the program reads it), one per spliced
 * socket: the handshake that gives a held direction back to the kernel. */
struct pandit_splice_ctl {
	__u64 resume_at;	/* resume once passed reaches exactly this (~0: never) */
	__u64 user_written;	/* bytes the daemon wrote into the peer for this direction */
};

/* Record the program writes to the owning worker's ring when it holds a
 * socket (the worker then reads that socket itself) or resumes it. */
struct pandit_splice_event {
	__u64 cookie;		/* the socket */
	__u32 kind;		/* enum pandit_splice_event_kind */
	__u32 pad;
};

enum pandit_splice_event_kind {
	PANDIT_SPLICE_EV_HOLD = 0,
	PANDIT_SPLICE_EV_RESUME = 1,
	PANDIT_SPLICE_EV_FOO = 2,	/* the framer found a Foo violation on the socket */
};

enum pandit_splice_dir {
	PANDIT_SPLICE_C2S = 0,	/* received on the client socket: client -> target */
	PANDIT_SPLICE_S2C = 1,	/* received on the upstream socket: target -> client */
};

/* Per-CPU byte counters of one app (value of splice_app_bytes). */
struct pandit_splice_bytes {
	__u64 bytes[2];		/* indexed by enum pandit_splice_dir */
};

/* Per-CPU counters of the splice program, indexed by outcome. */
enum pandit_splice_stat {
	PANDIT_SPLICE_REDIRECTED = 0,	/* an skb redirected to the peer's egress */
	PANDIT_SPLICE_PASS_UNKNOWN,	/* socket without a peers entry: left to userspace */
	PANDIT_SPLICE_PASS_HELD,	/* socket already held: left to userspace */
	PANDIT_SPLICE_HOLD_NO_PEER,	/* peer not in the sockets map: held */
	PANDIT_SPLICE_HOLD_BACKLOG,	/* peer's backlog over the cap: held */
	PANDIT_SPLICE_HOLD_REDIRECT,	/* bpf_sk_redirect_hash refused: held */
	PANDIT_SPLICE_RING_FULL,	/* a hold not signalled: the worker's ring was full or missing */
	PANDIT_SPLICE_DROP_EMPTY,	/* an skb without data (a FIN): dropped, the socket reads EOF anyway */
	PANDIT_SPLICE_RESUMED,		/* a held socket given back to the kernel */
	PANDIT_SPLICE_FOO_VIOLATION,	/* Foo: a violation found (the connection turned non-compliant) */
	PANDIT_SPLICE_FOO_DROPPED,	/* Foo, strict: an skb of a non-compliant connection dropped */
	PANDIT_SPLICE_FOO_NO_COUNTERS,	/* Foo: the app's counters entry missing: messages not counted */
	PANDIT_SPLICE_HOLD_ROOM,	/* the peer's send buffer would not take the skb whole: held */
	PANDIT_SPLICE_FOO_NO_SCRATCH,	/* Foo: every scratch level of the CPU taken: framing stopped */
	PANDIT_SPLICE_STAT_MAX,
};

#define PANDIT_SPLICE_MAX_SOCKS 262144u	/* two per spliced connection */
#define PANDIT_SPLICE_MAX_APPS 262144u
#define PANDIT_SPLICE_MAX_WORKERS 1024u	/* slots of splice_rings */
#define PANDIT_SPLICE_RING_BYTES 65536u	/* each worker's ring */

/* --- local short-circuit (bpf/shortcut.bpf.c) ------------------------------
 * Appended section: owned by the short-circuit module (src/kpath/shortcut.*). */

/* A local TCP socket as seen from itself: key of shortcut_socks and
 * shortcut_pairs. Addresses are IPv6 (IPv4 as ::ffff:a.b.c.d, so an IPv4
 * socket and a dual-stack IPv6 socket talking to it agree); ports in host
 * byte order; netns is the network namespace's cookie (SO_NETNS_COOKIE), so
 * equal tuples in two namespaces never meet. */
struct pandit_shortcut_key {
	__u64 netns;
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;
	__u16 remote_port;
	__u32 pad;		/* always zero */
};

/* Value of shortcut_pairs, one per paired socket (client and backend):
 * where its sends go. Written by the daemon (peer, cookies), the counters
 * by the program only. */
struct pandit_shortcut_pair {
	struct pandit_shortcut_key peer;	/* the socket whose ingress gets this one's sends */
	__u64 cookie;		/* SO_COOKIE of this socket: a stale entry left for a
				 * reused tuple never matches a new socket */
	__u64 peer_cookie;	/* SO_COOKIE of the peer, checked the same way */
	__u64 redirected;	/* program: bytes sent straight into the peer */
	__u64 passed;		/* program: bytes of a paired socket left to TCP because
				 * the peer had not read every byte sent over TCP yet */
	__u64 msgs;		/* program: messages redirected */
	__u64 frame;		/* foo apps: cookie of pandit's socket whose splice entry
				 * (splice_peers) frames this socket's sends, the one they
				 * reach over TCP; 0: not framed (tcp apps) */
	__u64 framed;		/* program: bytes framed and short-circuited (foo apps) */
};

/* Per-socket state kept by sock_ops at establishment (socket local storage):
 * its own key and its TCP sequence numbers at that moment, the origins of
 * the byte counts the ordering gate compares. */
struct pandit_shortcut_sk {
	struct pandit_shortcut_key self;	/* the socket's own key (its shortcut_socks entry) */
	__u64 cookie;		/* SO_COOKIE of the socket */
	__u32 base_snd;		/* snd_nxt (= write_seq) at establishment */
	__u32 base_rcv;		/* rcv_nxt (= copied_seq) at establishment */
};

/* Value of shortcut_where (key: the socket's own key), written by sock_ops
 * at establishment and deleted when the socket reaches TCP_CLOSE: how the
 * sk_msg program finds the receiving socket's TCP state (an sk_msg program
 * may not hold a socket reference, so it reads through this address with
 * bpf_probe_read_kernel; TCP sockets are SLAB_TYPESAFE_BY_RCU). */
struct pandit_shortcut_where {
	__u64 sk;		/* kernel address of the struct sock (root-only maps) */
	__u64 cookie;		/* SO_COOKIE of the socket */
	__u32 base_rcv;		/* rcv_nxt (= copied_seq) at establishment */
	__u32 pad;
};

/* Per-CPU counters of the short-circuit programs, indexed by outcome. */
enum pandit_shortcut_stat {
	PANDIT_SHORTCUT_SOCK_ADDED = 0,	/* sock_ops: established socket entered shortcut_socks */
	PANDIT_SHORTCUT_SOCK_FAILED,	/* sock_ops: the map update was refused (full, ...) */
	PANDIT_SHORTCUT_SOCK_SKIPPED,	/* sock_ops: not IPv4/IPv6 */
	PANDIT_SHORTCUT_REDIRECTED,	/* sk_msg: a message sent into the peer's ingress */
	PANDIT_SHORTCUT_PASS_UNPAIRED,	/* sk_msg: no pair entry: normal TCP */
	PANDIT_SHORTCUT_PASS_STALE,	/* sk_msg: pair entry for another socket (cookie): TCP */
	PANDIT_SHORTCUT_PASS_NO_PEER,	/* sk_msg: peer gone from shortcut_socks: TCP */
	PANDIT_SHORTCUT_PASS_PENDING,	/* sk_msg: the peer has not read every byte this socket
					 * sent over TCP: TCP (ordering) */
	PANDIT_SHORTCUT_PASS_REDIRECT,	/* sk_msg: bpf_msg_redirect_hash refused: TCP */
	PANDIT_SHORTCUT_SOCK_CLOSED,	/* sock_ops: a registered socket reached TCP_CLOSE */
	PANDIT_SHORTCUT_PASS_BACKLOG,	/* sk_msg: the peer has more than backlog_max redirected
					 * bytes unread: TCP (backpressure through the proxy) */
	PANDIT_SHORTCUT_PASS_PRESSURE,	/* sk_msg: TCP under memory pressure, where the peer could
					 * not be charged (ENOMEM): TCP, which makes the sender wait */
	PANDIT_SHORTCUT_PASS_FOO,	/* sk_msg, foo apps: a send the short-circuit does not frame
					 * (not spliced yet, a line begun, a line the fast line
					 * declines, framing over): TCP, where the splice program
					 * frames */
	PANDIT_SHORTCUT_FOO_FRAMED,	/* sk_msg, foo apps: a send framed and short-circuited */
	PANDIT_SHORTCUT_STAT_MAX,
};

#define PANDIT_SHORTCUT_MAX_SOCKS 262144u	/* local established sockets tracked */
#define PANDIT_SHORTCUT_MAX_PAIRS 262144u	/* two per paired connection */

#endif
