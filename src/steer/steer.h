/* steer.h - loads the sk_lookup dispatcher and keeps its maps equal to the wanted port set. */
#ifndef PANDIT_STEER_H
#define PANDIT_STEER_H

#include <stdbool.h>
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

/* Flags of steer_open_flags(). */
enum {
	STEER_NO_ATTACH = 1u << 0,	/* load only: for BPF_PROG_TEST_RUN, attach nothing */
};

/* steer_open() with flags. listen_fd may be -1: the slot stays empty and
 * matched connections are refused until steer_set_listener(). */
int steer_open_flags(int listen_fd, unsigned flags, struct steer **out);

/* Puts listen_fd in slot PANDIT_SOCK_TCP of the sockets map, replacing what
 * was there; -1 empties the slot. Returns 0 or a negative errno. */
int steer_set_listener(struct steer *s, int listen_fd);

/* Number of steering entries in the kernel (as mirrored). */
size_t steer_count(const struct steer *s);

/* fds of the program and of the rules map, for tests and diagnostics. */
int steer_prog_fd(const struct steer *s);
int steer_rules_fd(const struct steer *s);

/* For tests: write and delete one entry per syscall from now on, as when
 * the kernel refuses batch operations. */
void steer_test_no_batch(struct steer *s);

/* Makes the kernel's steering entries equal to want[0..n) (any order, keys
 * unique): deletes what is no longer wanted and writes what is new or
 * changed, each in batch operations. Works without privileges through the
 * map fds held. Returns 0 or a negative errno; on error the kernel state is
 * left as it was as far as possible and the mirror stays true. */
int steer_sync(struct steer *s, const struct steer_entry *want, size_t n,
	       struct steer_sync_stats *stats);

/* The same as a delta from the entries of the last successful sync (or
 * apply): deletes the keys del[0..nd) that are in the map and not among
 * add[0..na) (keys unique), and writes add, each in batch operations, with
 * the same guarantees as steer_sync. A caller that knows what changed
 * skips the walk over every entry. stats->unchanged counts the entries
 * left in place. Returns -ESTALE, touching nothing, when the last
 * sync or apply failed (the map may then hold something else than was
 * asked for: use steer_sync). */
int steer_apply(struct steer *s, const struct steer_entry *add, size_t na,
		const struct pandit_steer_key *del, size_t nd, struct steer_sync_stats *stats);

/* True when the last steer_sync() or steer_apply() succeeded. */
bool steer_in_sync(const struct steer *s);

/* Sums the per-CPU counters of the steering program. Safe to call from
 * another thread than the one calling steer_sync(); everything else here
 * belongs to one thread at a time. */
int steer_read_counters(struct steer *s, struct steer_counters *out);

/* Detaches and frees everything. */
void steer_close(struct steer *s);

/* Fills an entry key for port + prefix (addr as 16-byte IPv6 or mapped IPv4,
 * plen over the 128-bit form; plen 0 and addr NULL: any address). */
void steer_key_init(struct pandit_steer_key *k, uint16_t port, const uint8_t *addr, uint8_t plen);

/* The same for an IPv4 prefix: addr_be in network order, plen 0..32 (0: any
 * IPv4 address, which is ::ffff:0.0.0.0/96, not any address at all). */
void steer_key_init_v4(struct pandit_steer_key *k, uint16_t port, uint32_t addr_be, uint8_t plen);

#endif
