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

/* The targets a pick chooses from: app->targets[first, first + n). */
struct lb_range {
	struct rt_app *app;
	uint32_t first, n;
	_Atomic uint32_t *cursor;
};

static inline struct rt_app_target *at(const struct lb_range *r, uint32_t k)
{
	return &r->app->targets[r->first + k];
}

/* The first usable untried target from start on, wrapping; -1 if none. */
static int scan_from(const struct lb_range *r, uint32_t start, const struct lb_tried *tried,
		     uint64_t now_ns)
{
	for (uint32_t k = 0; k < r->n; k++) {
		uint32_t i = start + k;
		if (i >= r->n)
			i -= r->n;
		if (untried(tried, r->first + i) && target_usable(at(r, i)->t, now_ns))
			return (int)(r->first + i);
	}
	return -1;
}

static int pick_random(const struct lb_range *r, const struct lb_tried *tried, uint64_t now_ns)
{
	/* a few uniform draws first, so a down target does not double the
	 * share of its neighbour as a plain scan would */
	for (int p = 0; p < RANDOM_PROBES; p++) {
		uint32_t i = (uint32_t)((lb_rand() >> 32) % r->n);
		if (untried(tried, r->first + i) && target_usable(at(r, i)->t, now_ns))
			return (int)(r->first + i);
	}
	return scan_from(r, (uint32_t)((lb_rand() >> 32) % r->n), tried, now_ns);
}

/* Fewest open connections (http apps: requests in flight) among the up
 * targets, ties broken round robin by where the scan starts. A down target
 * whose backoff has passed gets its one trial connection right away,
 * otherwise it could never come back while the others take all the
 * traffic. */
static int pick_least_conn(const struct lb_range *r, const struct lb_tried *tried, uint64_t now_ns)
{
	uint32_t start = atomic_fetch_add_explicit(r->cursor, 1, memory_order_relaxed) % r->n;
	int best = -1;
	uint64_t best_active = UINT64_MAX;
	for (uint32_t k = 0; k < r->n; k++) {
		uint32_t i = start + k;
		if (i >= r->n)
			i -= r->n;
		if (!untried(tried, r->first + i))
			continue;
		struct target *t = at(r, i)->t;
		if (!atomic_load_explicit(&t->up, memory_order_relaxed) ||
		    !atomic_load_explicit(&t->has_addrs, memory_order_relaxed)) {
			/* target_usable() claims the trial, so only ask when
			 * the answer would be used */
			if (target_usable(t, now_ns))
				return (int)(r->first + i);
			continue;
		}
		const struct conn_stats *s = at(r, i)->stats;
		uint64_t a = s ? stats_get(&s->active) : 0;
		if (a < best_active) {
			best_active = a;
			best = (int)(r->first + i);
			if (a == 0)
				break;	/* cannot do better */
		}
	}
	return best;
}

int lb_pick_range(struct rt_app *app, uint32_t first, uint32_t n, enum lb_policy policy,
		  _Atomic uint32_t *cursor, const struct lb_tried *tried, uint64_t now_ns)
{
	if (!app || !app->targets || first >= app->n_targets)
		return -1;
	if (n > app->n_targets - first)
		n = app->n_targets - first;
	if (first + n > LB_TRIED_WORDS * 64)	/* the tried bitmap could not track more */
		n = first < LB_TRIED_WORDS * 64 ? LB_TRIED_WORDS * 64 - first : 0;
	if (!n)
		return -1;
	struct lb_range r = { .app = app, .first = first, .n = n,
			      .cursor = cursor ? cursor : &app->rr_next };
	switch (policy) {
	case LB_RANDOM:
		return pick_random(&r, tried, now_ns);
	case LB_LEAST_CONN:
		return pick_least_conn(&r, tried, now_ns);
	case LB_ROUND_ROBIN:
	default:
		return scan_from(&r, atomic_fetch_add_explicit(r.cursor, 1, memory_order_relaxed) % n,
				 tried, now_ns);
	}
}

int lb_pick(struct rt_app *app, const struct lb_tried *tried, uint64_t now_ns)
{
	if (!app)
		return -1;
	return lb_pick_range(app, 0, app->n_targets, app->cfg ? app->cfg->policy : LB_ROUND_ROBIN,
			     &app->rr_next, tried, now_ns);
}
