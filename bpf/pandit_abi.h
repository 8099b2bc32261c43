/* pandit_abi.h - map keys and values shared by the BPF programs and the daemon (fixed-width types only). */
#ifndef PANDIT_ABI_H
#define PANDIT_ABI_H

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

#endif
