/* steer.bpf.c - sk_lookup dispatcher: hands TCP connections for configured address:port pairs to pandit's listeners. */

/*
 * Where it runs: attached to pandit's network namespace (bpf_link,
 * BPF_SK_LOOKUP), the kernel calls it when a packet needs a listening or
 * unconnected socket, i.e. for every TCP SYN (and UDP datagram) that no
 * established socket claims, before the normal bind() table is consulted.
 *
 * Maps (key -> value):
 *   steer_rules  LPM trie  struct pandit_steer_key -> struct pandit_steer_val
 *                The compared data is the destination port (network order)
 *                followed by the destination address as IPv6 (IPv4 as
 *                ::ffff:a.b.c.d). prefixlen 16 = the port on any address,
 *                16 + 96 + n = the port on an IPv4 /n, 16 + n = the port on an
 *                IPv6 /n. Value: the app's numeric ID (for userspace) and
 *                the slot of the listener in steer_socks.
 *   steer_socks  SOCKMAP   __u32 slot (enum pandit_sock_slot) -> listener
 *                PANDIT_SOCK_TCP holds the first socket of the workers'
 *                SO_REUSEPORT group; after bpf_sk_assign the kernel still
 *                runs reuseport selection inside that group, so connections
 *                spread over the workers. Userspace writes the fd; a socket
 *                that closes leaves the map by itself.
 *   steer_stats  PERCPU_ARRAY __u32 enum pandit_steer_stat -> __u64 count
 *                one counter per outcome, summed by userspace.
 *
 * Precedence: only TCP is steered. For a TCP lookup the longest matching
 * prefix wins: the port is always the first 16 bits, so a rule for
 * port P never matches another port, and among the rules for P the most
 * specific address prefix (exact address, then smaller subnets, then
 * "any address" at prefixlen 16) decides. IPv4 and IPv6 share one trie
 * through the mapped form, so a prefixlen-16 rule covers both families.
 *
 * Fail policy:
 *   - nothing matched (not TCP, unknown family, no rule for the port and
 *     address): SK_PASS without a socket, i.e. fail open: the normal stack
 *     handles the connection as if pandit were not there.
 *   - a rule matched but its socket slot is empty (listener gone, not yet
 *     created, unknown slot) or bpf_sk_assign refused the socket: SK_DROP,
 *     i.e. fail closed: the client is refused (RST) rather than leaking to
 *     whatever other socket happens to be bound to that port.
 * Every outcome is counted in steer_stats.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "pandit_abi.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* (port, address prefix) -> (app id, listener slot): which connections are pandit's. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, PANDIT_STEER_MAX_ENTRIES);
	__type(key, struct pandit_steer_key);
	__type(value, struct pandit_steer_val);
} steer_rules SEC(".maps");

/* listener slot -> listening socket (head of the workers' SO_REUSEPORT group): where they go. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, PANDIT_SOCK_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} steer_socks SEC(".maps");

/* outcome (enum pandit_steer_stat) -> per-CPU count: what the dispatcher did, without contention. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PANDIT_STEER_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} steer_stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *c = bpf_map_lookup_elem(&steer_stats, &stat);

	if (c)
		*c += 1;	/* per-CPU slot: no atomic needed */
}

SEC("sk_lookup")
int pandit_steer(struct bpf_sk_lookup *ctx)
{
	struct pandit_steer_key key = {};
	struct pandit_steer_val *val;
	struct bpf_sock *sk;
	__u32 slot;
	long err;

	if (ctx->protocol != IPPROTO_TCP) {
		count(PANDIT_STEER_PASS_NOT_TCP);
		return SK_PASS;
	}

	key.prefixlen = PANDIT_STEER_PREFIX_MAX;
	/* local_port is host order in the context, the trie wants network order */
	key.port_be = bpf_htons((__u16)ctx->local_port);
	if (ctx->family == AF_INET) {
		__u32 ip4 = ctx->local_ip4;	/* network order already */

		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ip4, 4);
	} else if (ctx->family == AF_INET6) {
		__u32 w0 = ctx->local_ip6[0], w1 = ctx->local_ip6[1];
		__u32 w2 = ctx->local_ip6[2], w3 = ctx->local_ip6[3];

		__builtin_memcpy(&key.addr[0], &w0, 4);
		__builtin_memcpy(&key.addr[4], &w1, 4);
		__builtin_memcpy(&key.addr[8], &w2, 4);
		__builtin_memcpy(&key.addr[12], &w3, 4);
	} else {
		count(PANDIT_STEER_PASS_NOT_TCP);
		return SK_PASS;
	}

	val = bpf_map_lookup_elem(&steer_rules, &key);
	if (!val) {
		count(PANDIT_STEER_PASS_UNMATCHED);
		return SK_PASS;
	}

	slot = val->sock_idx;
	sk = bpf_map_lookup_elem(&steer_socks, &slot);
	if (!sk) {
		count(PANDIT_STEER_DROP_NO_SOCKET);
		return SK_DROP;
	}

	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(PANDIT_STEER_DROP_ASSIGN);
		return SK_DROP;
	}
	count(PANDIT_STEER_ASSIGNED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
