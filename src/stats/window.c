/* window.c - moving-window event rates from epoch-stamped 100 ms buckets (see window.h for the race and the partial bucket). */
#include "stats/window.h"

#include <string.h>

#define SLOT_MASK (STATS_WIN_NBUCKETS - 1)
/* an add takes the fetch_add path only with this much room left below the
 * stamp, so concurrent adders cannot carry into it */
#define FAST_ADD_MAX (1ull << 30)

_Static_assert((STATS_WIN_NBUCKETS & SLOT_MASK) == 0, "ring size must be a power of two");
_Static_assert(STATS_WIN_NBUCKETS >= 101, "ring must hold 10 s of buckets plus the current one");

static inline uint32_t w_stamp(uint64_t w)
{
	return (uint32_t)(w >> 32);
}

static inline uint32_t w_count(uint64_t w)
{
	return (uint32_t)w;
}

static inline uint64_t w_make(uint32_t stamp, uint64_t count)
{
	return (uint64_t)stamp << 32 | (count > UINT32_MAX ? UINT32_MAX : count);
}

void stats_win_init(struct stats_win *w)
{
	for (unsigned i = 0; i < STATS_WIN_NBUCKETS; i++)
		atomic_init(&w->slot[i], 0);
}

static void add_tick(struct stats_win *w, uint64_t tick, uint64_t n)
{
	_Atomic uint64_t *s = &w->slot[tick & SLOT_MASK];
	uint32_t stamp = (uint32_t)tick;
	uint64_t cur = atomic_load_explicit(s, memory_order_relaxed);
	for (;;) {
		uint32_t st = w_stamp(cur);
		uint64_t next;
		if (st == stamp) {
			if (w_count(cur) < FAST_ADD_MAX && n < FAST_ADD_MAX) {
				atomic_fetch_add_explicit(s, n, memory_order_relaxed);
				return;
			}
			next = w_make(stamp, (uint64_t)w_count(cur) + n);	/* saturates */
		} else if ((int32_t)(stamp - st) > 0) {
			next = w_make(stamp, n);	/* stale: recycle */
		} else {
			return;	/* the slot moved on a whole ring: outside every window */
		}
		if (atomic_compare_exchange_weak_explicit(s, &cur, next, memory_order_relaxed,
							  memory_order_relaxed))
			return;
	}
}

void stats_win_add(struct stats_win *w, uint64_t now_ns, uint64_t n)
{
	if (n)
		add_tick(w, now_ns / STATS_WIN_BUCKET_NS, n);
}

/* Count of tick t, or 0 when its slot holds another tick. */
static uint64_t read_tick(const struct stats_win *w, uint64_t t)
{
	uint64_t v = atomic_load_explicit(&w->slot[t & SLOT_MASK], memory_order_relaxed);
	return w_stamp(v) == (uint32_t)t ? w_count(v) : 0;
}

static uint64_t window_buckets(uint64_t window_ns)
{
	uint64_t k = window_ns / STATS_WIN_BUCKET_NS;
	if (k < 1)
		k = 1;
	if (k > STATS_WIN_NBUCKETS - 1)
		k = STATS_WIN_NBUCKETS - 1;
	return k;
}

double stats_win_count(const struct stats_win *w, uint64_t now_ns, uint64_t window_ns)
{
	uint64_t k = window_buckets(window_ns);
	uint64_t tick = now_ns / STATS_WIN_BUCKET_NS;
	double frac = (double)(now_ns % STATS_WIN_BUCKET_NS) / (double)STATS_WIN_BUCKET_NS;
	uint64_t whole = read_tick(w, tick);
	for (uint64_t j = 1; j < k && j <= tick; j++)
		whole += read_tick(w, tick - j);
	double sum = (double)whole;
	if (k <= tick)
		sum += (double)read_tick(w, tick - k) * (1.0 - frac);
	return sum;
}

double stats_win_rate(const struct stats_win *w, uint64_t now_ns, uint64_t window_ns)
{
	uint64_t k = window_buckets(window_ns);
	return stats_win_count(w, now_ns, window_ns) /
	       ((double)(k * STATS_WIN_BUCKET_NS) / 1e9);
}

void stats_win_merge(struct stats_win *dst, const struct stats_win *src, uint64_t now_ns)
{
	uint64_t tick = now_ns / STATS_WIN_BUCKET_NS;
	for (uint64_t j = 0; j < STATS_WIN_NBUCKETS && j <= tick; j++) {
		uint64_t c = read_tick(src, tick - j);
		if (c)
			add_tick(dst, tick - j, c);
	}
}
