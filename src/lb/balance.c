/* balance.c - picks a target of an app for a new connection: round robin, random or least connections. */
#include "lb/balance.h"

#include <pthread.h>

#include "core/ev.h"
#include "lb/target.h"

#define RANDOM_PROBES 4	/* random draws before falling back to a scan */

/* Per-thread xorshift64*, seeded from the clock and the thread: cheap,
 * no shared cache line, good enough to spread connections. */
static __thread uint64_t lb_rng;

static uint64_t lb_rand(void)
{
	uint64_t x = lb_rng;
	if (!x) {
		/* splitmix64 of time and thread identity */
		x = ev_now_ns() ^ ((uint64_t)(uintptr_t)&lb_rng << 16) ^ (uint64_t)pthread_self();
		x += 0x9e3779b97f4a7c15ull;
		x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
		x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
		x ^= x >> 31;
		if (!x)
			x = 1;
	}
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	lb_rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

static inline bool untried(const struct lb_tried *tried, uint32_t i)
{
	return !tried || !lb_tried_has(tried, i);
}

/* The first usable untried target from start on, wrapping; -1 if none. */
static int scan_from(struct rt_app *app, uint32_t n, uint32_t start, const struct lb_tried *tried,
		     uint64_t now_ns)
{
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = start + k;
		if (i >= n)
			i -= n;
		if (untried(tried, i) && target_usable(app->targets[i].t, now_ns))
			return (int)i;
	}
	return -1;
}

static int pick_random(struct rt_app *app, uint32_t n, const struct lb_tried *tried, uint64_t now_ns)
{
	/* a few uniform draws first, so a down target does not double the
	 * share of its neighbour as a plain scan would */
	for (int p = 0; p < RANDOM_PROBES; p++) {
		uint32_t i = (uint32_t)((lb_rand() >> 32) % n);
		if (untried(tried, i) && target_usable(app->targets[i].t, now_ns))
			return (int)i;
	}
	return scan_from(app, n, (uint32_t)((lb_rand() >> 32) % n), tried, now_ns);
}

/* Fewest open connections among the up targets, ties broken round robin
 * by where the scan starts. A down target whose backoff has passed gets
 * its one trial connection right away, otherwise it could never come
 * back while the others take all the traffic. */
static int pick_least_conn(struct rt_app *app, uint32_t n, const struct lb_tried *tried, uint64_t now_ns)
{
	uint32_t start = atomic_fetch_add_explicit(&app->rr_next, 1, memory_order_relaxed) % n;
	int best = -1;
	uint64_t best_active = UINT64_MAX;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = start + k;
		if (i >= n)
			i -= n;
		if (!untried(tried, i))
			continue;
		struct target *t = app->targets[i].t;
		if (!atomic_load_explicit(&t->up, memory_order_relaxed) ||
		    !atomic_load_explicit(&t->has_addrs, memory_order_relaxed)) {
			/* target_usable() claims the trial, so only ask when
			 * the answer would be used */
			if (target_usable(t, now_ns))
				return (int)i;
			continue;
		}
		const struct conn_stats *s = app->targets[i].stats;
		uint64_t a = s ? stats_get(&s->active) : 0;
		if (a < best_active) {
			best_active = a;
			best = (int)i;
			if (a == 0)
				break;	/* cannot do better */
		}
	}
	return best;
}

int lb_pick(struct rt_app *app, const struct lb_tried *tried, uint64_t now_ns)
{
	if (!app || !app->targets)
		return -1;
	uint32_t n = app->n_targets;
	if (n > LB_TRIED_WORDS * 64)
		n = LB_TRIED_WORDS * 64;	/* the tried bitmap could not track more */
	if (!n)
		return -1;
	enum lb_policy policy = app->cfg ? app->cfg->policy : LB_ROUND_ROBIN;
	switch (policy) {
	case LB_RANDOM:
		return pick_random(app, n, tried, now_ns);
	case LB_LEAST_CONN:
		return pick_least_conn(app, n, tried, now_ns);
	case LB_ROUND_ROBIN:
	default:
		return scan_from(app, n,
				 atomic_fetch_add_explicit(&app->rr_next, 1, memory_order_relaxed) % n,
				 tried, now_ns);
	}
}
