/* target_int.h - what target.c shares with the resolver and health threads (not for other modules). */
#ifndef PANDIT_TARGET_INT_H
#define PANDIT_TARGET_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lb/target.h"

/* The registry: a chained hash table of every target, keyed by name. The
 * lock also guards each target's refcnt transitions and resolver fields;
 * `cond` wakes the resolver threads (new name, stop). */
struct target_registry {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* CLOCK_MONOTONIC */
	struct target **buckets;
	size_t n_buckets;
	size_t n_targets;
};

extern struct target_registry target_reg;

/* Settings, read with relaxed loads from any thread. */
struct target_settings {
	_Atomic uint32_t hc_interval_ms, hc_timeout_ms;
	_Atomic uint32_t rise, fall;
	_Atomic uint32_t backoff_min_ms, backoff_max_ms;
	_Atomic uint32_t resolve_interval_ms;
};

extern struct target_settings target_set;

static inline uint32_t target_setting(const _Atomic uint32_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* Makes sure the registry lock, cond and default settings exist. */
void target_registry_ensure(void);

/* Takes one more reference; the registry lock must be held. */
static inline void target_ref_locked(struct target *t)
{
	atomic_fetch_add_explicit(&t->refcnt, 1, memory_order_relaxed);
}

/* Result of an active check (health thread). err is an errno when !ok. */
void target_hc_result(struct target *t, bool ok, int err, uint64_t now_ns);

/* Installs the addresses of a successful resolution (n > 0), or records a
 * failed one (gai_err != 0; drop says whether the name is known not to
 * exist, in which case the old addresses are dropped too). */
void target_set_resolved(struct target *t, const struct sockaddr_storage *addrs,
			 const socklen_t *lens, uint32_t n, uint64_t now_ns);
void target_set_resolve_failed(struct target *t, int gai_err, int sys_errno, bool drop,
			       uint64_t now_ns);

/* "1.2.3.4:80" or "[::1]:80" into buf. */
void target_format_addr(const struct sockaddr_storage *ss, char *buf, size_t len);

int target_resolver_start(void);
void target_resolver_stop(void);
int target_health_start(void);
void target_health_stop(void);

#endif
