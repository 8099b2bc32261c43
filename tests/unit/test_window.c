/* test_window.c - moving-window rates with synthetic time: 1 s / 10 s, partial bucket, idle gaps, ring wraparound, concurrent adders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>

#include "stats/window.h"

#define MS 1000000ull
#define SEC 1000000000ull
#define W1 (1 * SEC)
#define W10 (10 * SEC)
/* an arbitrary monotonic origin, not a multiple of anything */
#define T0 (123456 * SEC + 7 * MS)

static void assert_near(double got, double want)
{
	if (fabs(got - want) > 1e-6 * (fabs(want) + 1.0))
		fail_msg("got %.9f, want %.9f", got, want);
}

static struct stats_win *win_new(void)
{
	struct stats_win *w = malloc(sizeof(*w));
	assert_non_null(w);
	stats_win_init(w);
	return w;
}

static void test_empty(void **state)
{
	(void)state;
	struct stats_win *w = win_new();
	assert_near(stats_win_rate(w, T0, W1), 0.0);
	assert_near(stats_win_rate(w, T0, W10), 0.0);
	assert_near(stats_win_rate(w, 0, W10), 0.0);	/* time zero: no underflow */
	stats_win_add(w, 0, 5);
	assert_near(stats_win_count(w, 0, W10), 5.0);
	free(w);
}

/* A steady 100 events a second (one every 10 ms) reads 100/s over both
 * windows once they are full, at any phase inside a bucket. */
static void test_steady_rate(void **state)
{
	(void)state;
	struct stats_win *w = win_new();
	uint64_t t = T0 - T0 % (100 * MS);	/* bucket aligned start */
	for (int i = 0; i < 2000; i++)		/* 20 s */
		stats_win_add(w, t + (uint64_t)i * 10 * MS + 5 * MS, 1);
	uint64_t end = t + 20 * SEC;
	for (uint64_t phase = 0; phase < 100 * MS; phase += 10 * MS) {
		/* the last event is at end - 5 ms; reading at end - 5 ms + phase
		 * sees every event exactly once within the window, give or take
		 * the weighted oldest bucket: 100/s either way */
		uint64_t now = end - 100 * MS + phase;
		double r1 = stats_win_rate(w, now, W1), r10 = stats_win_rate(w, now, W10);
		if (fabs(r1 - 100.0) > 10.0 || fabs(r10 - 100.0) > 1.5)
			fail_msg("phase %llu ms: r1 %.3f r10 %.3f", (unsigned long long)(phase / MS), r1,
				 r10);
	}
	/* right after the last bucket, at a boundary: the window is exactly
	 * the 10 (100) whole buckets before it */
	assert_near(stats_win_count(w, end, W1), 100.0);
	assert_near(stats_win_count(w, end, W10), 1000.0);
	free(w);
}

/* The partial bucket counts whole, the oldest is weighted by what is left
 * of it inside the window. */
static void test_partial_bucket(void **state)
{
	(void)state;
	struct stats_win *w = win_new();
	uint64_t b = (T0 / (100 * MS)) * 100 * MS;	/* start of a bucket */
	stats_win_add(w, b + 10 * MS, 40);		/* tick k0 */
	stats_win_add(w, b + 500 * MS, 7);		/* tick k0 + 5 */
	stats_win_add(w, b + 1000 * MS + 1, 3);		/* tick k0 + 10 */
	/* at b + 1000 ms + 25 ms: window [b + 25 ms, b + 1025 ms]; tick k0 is
	 * the oldest, 75 % of it still inside */
	uint64_t now = b + 1025 * MS;
	assert_near(stats_win_count(w, now, W1), 3 + 7 + 40 * 0.75);
	assert_near(stats_win_rate(w, now, W1), 3 + 7 + 40 * 0.75);
	assert_near(stats_win_count(w, now, W10), 50.0);
	assert_near(stats_win_rate(w, now, W10), 5.0);
	/* right at the boundary the oldest counts fully, then it fades out */
	assert_near(stats_win_count(w, b + 1000 * MS, W1), 3 + 7 + 40);
	assert_near(stats_win_count(w, b + 1099 * MS, W1), 3 + 7 + 40 * 0.01);
	assert_near(stats_win_count(w, b + 1100 * MS, W1), 3 + 7);
	/* events of a future tick are not seen yet, then are */
	stats_win_add(w, b + 1200 * MS, 100);
	assert_near(stats_win_count(w, b + 1150 * MS, W1), 3 + 7);
	assert_near(stats_win_count(w, b + 1200 * MS, W1), 100 + 3 + 7);
	free(w);
}

/* After an idle period the old buckets read as zero though nobody reset
 * them, and are recycled when traffic comes back. */
static void test_idle_and_wraparound(void **state)
{
	(void)state;
	struct stats_win *w = win_new();
	for (int i = 0; i < 128; i++)			/* fill every slot */
		stats_win_add(w, T0 + (uint64_t)i * 100 * MS, 10);
	uint64_t last = T0 + 127 * 100 * MS;
	double frac = (double)(last % (100 * MS)) / (100.0 * MS);
	assert_near(stats_win_count(w, last, W10), 10.0 * 100 + 10.0 * (1.0 - frac));
	/* 30 s idle: both windows empty */
	uint64_t later = last + 30 * SEC;
	assert_near(stats_win_rate(w, later, W1), 0.0);
	assert_near(stats_win_rate(w, later, W10), 0.0);
	/* exactly one ring later every slot holds a stamp 128 ticks old */
	uint64_t ring = STATS_WIN_NBUCKETS * STATS_WIN_BUCKET_NS;
	assert_near(stats_win_count(w, last + ring, W10), 0.0);
	/* traffic again: only the new events count */
	stats_win_add(w, later, 2);
	stats_win_add(w, later + 50 * MS, 3);
	assert_near(stats_win_count(w, later + 50 * MS, W10), 5.0);
	/* many wraps of the ring with a pattern per lap */
	for (int lap = 0; lap < 50; lap++) {
		uint64_t base = later + SEC + (uint64_t)lap * ring;
		for (int i = 0; i < 128; i++)
			stats_win_add(w, base + (uint64_t)i * 100 * MS, (uint64_t)lap + 1);
		uint64_t end = base + 127 * 100 * MS;
		end -= end % (100 * MS);	/* bucket boundary: whole buckets only */
		assert_near(stats_win_count(w, end, W1), 10.0 * (lap + 1) + (lap + 1));
		assert_near(stats_win_count(w, end, W10), 100.0 * (lap + 1) + (lap + 1));
	}
	/* a writer lagging a whole ring behind adds nothing */
	uint64_t now = later + SEC + 50 * ring;
	stats_win_add(w, now, 1);
	double before = stats_win_count(w, now, W10);
	stats_win_add(w, now - ring, 1000);
	assert_near(stats_win_count(w, now, W10), before);
	free(w);
}

static void test_merge(void **state)
{
	(void)state;
	struct stats_win *a = win_new(), *b = win_new(), *sum = win_new();
	for (int i = 0; i < 200; i++) {
		stats_win_add(a, T0 + (uint64_t)i * 50 * MS, 1);
		stats_win_add(b, T0 + (uint64_t)i * 70 * MS, 2);
	}
	uint64_t now = T0 + 14 * SEC + 33 * MS;
	stats_win_merge(sum, a, now);
	stats_win_merge(sum, b, now);
	assert_near(stats_win_count(sum, now, W1),
		    stats_win_count(a, now, W1) + stats_win_count(b, now, W1));
	assert_near(stats_win_count(sum, now, W10),
		    stats_win_count(a, now, W10) + stats_win_count(b, now, W10));
	free(a);
	free(b);
	free(sum);
}

/* --- concurrency ---------------------------------------------------------------- */

#define THREADS 4
#define ROUNDS 200
#define PER_ROUND 500

struct race {
	struct stats_win *w;
	pthread_barrier_t bar;
};

/* Every round all threads add to one tick whose slot holds a stale stamp
 * (the same slot, one ring later each round): they race to recycle it while
 * the others add. Nothing may be lost. */
static void *racer(void *arg)
{
	struct race *r = arg;
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t now = T0 + (uint64_t)round * STATS_WIN_NBUCKETS * STATS_WIN_BUCKET_NS;
		pthread_barrier_wait(&r->bar);
		for (int i = 0; i < PER_ROUND; i++)
			stats_win_add(r->w, now, 1);
		pthread_barrier_wait(&r->bar);	/* main checks */
		pthread_barrier_wait(&r->bar);
	}
	return NULL;
}

static void test_concurrent_adders(void **state)
{
	(void)state;
	struct race r = { .w = win_new() };
	pthread_barrier_init(&r.bar, NULL, THREADS + 1);
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, racer, &r), 0);
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t now = T0 + (uint64_t)round * STATS_WIN_NBUCKETS * STATS_WIN_BUCKET_NS;
		pthread_barrier_wait(&r.bar);
		/* a reader during the adds sees a count between 0 and the total */
		double mid = stats_win_count(r.w, now, W1);
		assert_true(mid >= 0.0 && mid <= THREADS * PER_ROUND);
		pthread_barrier_wait(&r.bar);
		assert_near(stats_win_count(r.w, now, W1), THREADS * PER_ROUND);
		pthread_barrier_wait(&r.bar);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&r.bar);
	free(r.w);
}

/* Threads each walking their own clock forward over 10 s, while another
 * reads: the final 10 s window holds every event. */
struct walker {
	struct stats_win *w;
	int id;
};

static void *walk(void *arg)
{
	struct walker *k = arg;
	for (int i = 0; i < 20000; i++)
		stats_win_add(k->w, T0 + (uint64_t)i * 490 * 1000 + (uint64_t)k->id, 1);	/* 9.8 s */
	return NULL;
}

static void test_concurrent_walkers(void **state)
{
	(void)state;
	struct stats_win *w = win_new();
	struct walker k[THREADS];
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++) {
		k[i] = (struct walker){ .w = w, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, walk, &k[i]), 0);
	}
	for (int i = 0; i < 1000; i++)
		(void)stats_win_rate(w, T0 + 5 * SEC, W10);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	/* read at a bucket boundary 10 s after a boundary at or before T0 */
	uint64_t start = T0 - T0 % STATS_WIN_BUCKET_NS;
	assert_near(stats_win_count(w, start + 10 * SEC, W10), (double)THREADS * 20000);
	free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_steady_rate),
		cmocka_unit_test(test_partial_bucket),
		cmocka_unit_test(test_idle_and_wraparound),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_concurrent_adders),
		cmocka_unit_test(test_concurrent_walkers),
	};
	return cmocka_run_group_tests_name("window", tests, NULL, NULL);
}
