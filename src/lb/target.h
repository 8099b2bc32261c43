/* target.h - targets shared by all apps: name resolution off the event loops, passive and active health. */
#ifndef PANDIT_TARGET_H
#define PANDIT_TARGET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"

#define TARGET_MAX_ADDRS 8

/* One "host:port" upstream. Found or created through target_get() and
 * shared by every app naming it, so a backend is resolved and health
 * checked once however many apps use it. */
struct target {
	char *name;			/* "host:port" as written ("[v6]:port" for v6 literals) */
	char *host;
	uint16_t port;
	bool literal;			/* host is an IP literal: resolved once, never again */
	_Atomic uint32_t refcnt;

	pthread_mutex_t lock;		/* guards the resolved addresses */
	struct sockaddr_storage addrs[TARGET_MAX_ADDRS];
	socklen_t addr_lens[TARGET_MAX_ADDRS];
	uint32_t n_addrs;		/* 0: unresolved (the target is down) */
	int resolve_err;		/* last getaddrinfo() result, 0 when fine */
	uint64_t resolved_ns;		/* CLOCK_MONOTONIC of the last resolution */
	_Atomic uint32_t next_addr;	/* round robin over addrs */

	/* health: written by workers (passive) and the health thread (active) */
	_Atomic bool up;
	_Atomic uint32_t fails;		/* consecutive failures */
	_Atomic uint32_t oks;		/* consecutive active-check successes while down */
	_Atomic uint64_t retry_ns;	/* while down: passive retry allowed after this */
	_Atomic uint32_t backoff_ms;
	_Atomic uint32_t hc_refs;	/* apps using this target with health_check on */
	_Atomic uint64_t hc_ok, hc_failed;	/* active check results */

	_Atomic bool has_addrs;		/* n_addrs > 0, readable without the lock */
	_Atomic bool trial;		/* down: a trial connection was let through */

	/* resolver bookkeeping, under the registry lock */
	uint64_t resolve_due_ns;	/* next resolution (CLOCK_MONOTONIC) */
	uint32_t resolve_retry_ms;	/* delay after a failed resolution, doubles */
	bool resolving;			/* a resolver thread is on it */

	/* active check bookkeeping, touched by the health thread only */
	uint64_t hc_due_ns;
	bool hc_busy;

	struct target *next;		/* registry chain */
};

/* Starts the registry with the health settings; call once. */
int target_registry_init(const struct cfg_health *h, uint32_t resolve_interval_ms);
/* Applies new health settings after a reload. */
void target_registry_configure(const struct cfg_health *h, uint32_t resolve_interval_ms);
/* Number of targets in the registry (tests, stats). */
size_t target_registry_count(void);
/* Finds or creates the target for host:port and takes a reference. An IP
 * literal is resolved at once; a name is queued for the resolver thread and
 * the target is down until it resolves. NULL on ENOMEM or when host is
 * NULL, empty or longer than 255 bytes. Thread-safe. target_put() frees the
 * target with its last reference, from any thread. */
struct target *target_get(const char *host, uint16_t port);
void target_put(struct target *t);
/* Takes one more reference on t, of which the caller already holds one. */
static inline struct target *target_ref(struct target *t)
{
	atomic_fetch_add_explicit(&t->refcnt, 1, memory_order_relaxed);
	return t;
}
/* Counts an app with health_check on that uses t (+1) or stops using it (-1). */
void target_hc_ref(struct target *t, int delta);

/* Copies one resolved address of t, rotating over all of them. Returns 0,
 * or -EHOSTUNREACH when the target has no address. Never blocks on I/O. */
int target_addr(struct target *t, struct sockaddr_storage *ss, socklen_t *len);
/* True when t may be given a new connection at now_ns (CLOCK_MONOTONIC):
 * up, or down with its backoff elapsed (one trial connection: the call that
 * returns true claims it, so call it only for a target you will use, and
 * report the result). Never true for a target without an address. */
bool target_usable(struct target *t, uint64_t now_ns);
/* Passive health: the result of a connect attempt made by a worker. fall
 * consecutive failures take the target down for backoff_min_ms; each failed
 * trial doubles the backoff up to backoff_max_ms; a success brings it up. */
void target_report(struct target *t, bool ok, uint64_t now_ns);

/* Starts the resolver threads (getaddrinfo of named targets, again every
 * resolve_interval_ms, sooner with backoff while a name fails; names under
 * .invalid fail without a lookup) and the health-check thread (TCP connect
 * checks of targets with hc_refs > 0). Stop joins them; a resolver thread
 * stuck in getaddrinfo() is left to exit on its own after 2 s. */
int target_threads_start(void);
void target_threads_stop(void);

#endif
