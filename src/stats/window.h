/* window.h - event rates over moving windows (1 s, 10 s) from a ring of 100 ms buckets, lock-free for many writers. */
#ifndef PANDIT_STATS_WINDOW_H
#define PANDIT_STATS_WINDOW_H

#include <stdatomic.h>
#include <stdint.h>

/*
 * Time is split into ticks of STATS_WIN_BUCKET_NS (CLOCK_MONOTONIC ns passed
 * in by the caller, so tests choose it). Tick t is counted in slot t % N of a
 * ring; each slot is one 64-bit word holding the low 32 bits of its tick (the
 * epoch stamp) above a 32-bit count. Nothing ever resets the ring: a slot
 * whose stamp is older than the tick being counted is stale and is recycled
 * by whichever writer touches it first.
 *
 * Writers (any number of threads, relaxed atomics):
 * - stamp == tick: fetch_add on the word (the count sits in the low bits).
 * - stamp older: compare-and-swap the word from its stale value to
 *   (tick, n). The stamp and the count change together in one CAS, so the
 *   race between two writers recycling the same slot, or one recycling while
 *   another adds, loses nothing: the loser's CAS fails, it re-reads the
 *   word, sees the fresh stamp and adds. (With the stamp and the count in
 *   two words, an add landing between "set stamp" and "zero count" would
 *   be wiped; one word is what buys exactness.) The cost: counts are 32-bit
 *   per 100 ms bucket (saturating, 43 billion events a second) and a
 *   recycle is a CAS that may retry under contention, once per slot per
 *   tick.
 * - stamp newer than the writer's tick: the writer's clock lags the slot by
 *   a whole ring (12.8 s). Its events fall outside every window kept, so they
 *   are dropped; they still count in the caller's own totals.
 *
 * Readers (any thread) load each word once and use a slot only when its stamp
 * is the tick they expect; a stale slot reads as zero. Stamps compare with
 * 32-bit wraparound (ticks 6.8 years apart would alias).
 *
 * rate(now, W) with W = k buckets counts the window [now - W, now]:
 *   the current partial bucket, whole (its events all lie in the window),
 *   + the k - 1 complete buckets before it,
 *   + the oldest bucket (tick - k) weighted by the part of it still inside the
 *     window: 1 - (elapsed fraction of the current bucket),
 * divided by W in seconds. This is exact for a steady rate and otherwise off
 * by at most the share of one bucket's events; it moves smoothly instead of
 * jumping every 100 ms. It needs k + 1 slots: STATS_WIN_NBUCKETS bounds W to
 * 12.7 s. Events from a worker whose cached clock is slightly ahead of the
 * reader's land in a future tick that this read does not see yet.
 */

#define STATS_WIN_BUCKET_NS 100000000ull	/* 100 ms */
#define STATS_WIN_NBUCKETS 128			/* >= 10 s / 100 ms + 1, a power of two */
#define STATS_WIN_MAX_NS (STATS_WIN_BUCKET_NS * (STATS_WIN_NBUCKETS - 1))

struct stats_win {
	_Atomic uint64_t slot[STATS_WIN_NBUCKETS];	/* stamp << 32 | count */
};

/* A zeroed struct is ready to use too. */
void stats_win_init(struct stats_win *w);

/* Counts n events at now_ns. */
void stats_win_add(struct stats_win *w, uint64_t now_ns, uint64_t n);

/* Events in [now - window, now] as defined above (a real number because of
 * the weighted oldest bucket). window_ns is rounded down to whole buckets,
 * at least one, at most STATS_WIN_MAX_NS. */
double stats_win_count(const struct stats_win *w, uint64_t now_ns, uint64_t window_ns);

/* Events per second over the window: stats_win_count() / window seconds. */
double stats_win_rate(const struct stats_win *w, uint64_t now_ns, uint64_t window_ns);

/* Adds src's live buckets (the ring's span up to now) into dst: summing
 * the windows of several apps gives the window of their sum. */
void stats_win_merge(struct stats_win *dst, const struct stats_win *src, uint64_t now_ns);

#endif
