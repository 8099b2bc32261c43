/* steer.h - loads the sk_lookup dispatcher and keeps its maps equal to the wanted port set. */
#ifndef PANDIT_STEER_H
#define PANDIT_STEER_H

#include <stddef.h>
#include <stdint.h>

#include "../../bpf/pandit_abi.h"

struct steer;

struct steer_entry {
	struct pandit_steer_key key;
	struct pandit_steer_val val;
};

struct steer_sync_stats {
	size_t deleted, updated, unchanged;
	uint64_t elapsed_ns;
};

struct steer_counters {
	uint64_t v[PANDIT_STEER_STAT_MAX];
};

/* Loads the BPF program and maps, puts listen_fd (a TCP listener, the head
 * of the workers' SO_REUSEPORT group) in the sockets map and attaches the
 * program to the calling thread's network namespace through a bpf_link.
 * Needs CAP_BPF, CAP_NET_ADMIN (root). Returns 0 or a negative errno,
 * logging the cause. */
int steer_open(int listen_fd, struct steer **out);

/* Makes the kernel's steering entries equal to want[0..n) (any order, keys
 * unique): deletes what is no longer wanted and writes what is new or
 * changed, each in batch operations. Works without privileges through the
 * map fds held. Returns 0 or a negative errno; on error the kernel state is
 * left as it was as far as possible and the mirror stays true. */
int steer_sync(struct steer *s, const struct steer_entry *want, size_t n,
	       struct steer_sync_stats *stats);

/* Sums the per-CPU counters of the steering program. */
int steer_read_counters(struct steer *s, struct steer_counters *out);

/* Detaches and frees everything. */
void steer_close(struct steer *s);

/* Fills an entry key for port + prefix (addr as 16-byte IPv6 or mapped IPv4,
 * plen over the 128-bit form; plen 0 and addr NULL: any address). */
void steer_key_init(struct pandit_steer_key *k, uint16_t port, const uint8_t *addr, uint8_t plen);

#endif
