/* test_balance.c - balancing policies: spread, skipping tried and down targets, trials, exhaustion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/ev.h"
#include "core/log.h"
#include "lb/balance.h"
#include "lb/target.h"

#define MAX_T 8

struct fixture {
	struct cfg_app cfg;
	struct rt_app app;
	struct rt_app_target targets[MAX_T];
	struct conn_stats stats[MAX_T];
};

static const struct cfg_health health = {
	.interval_ms = 1000, .timeout_ms = 500, .rise = 2, .fall = 1,
	.backoff_min_ms = 1000, .backoff_max_ms = 8000,
};

/* An app built by hand (no runtime.c): n literal targets 127.0.0.1:9100+i. */
static struct fixture *fixture_new(enum lb_policy policy, uint32_t n)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->cfg.policy = policy;
	f->app.cfg = &f->cfg;
	f->app.targets = f->targets;
	f->app.n_targets = n;
	for (uint32_t i = 0; i < n; i++) {
		f->targets[i].t = target_get("127.0.0.1", (uint16_t)(9100 + i));
		assert_non_null(f->targets[i].t);
		assert_true(f->targets[i].t->up);
		f->targets[i].stats = &f->stats[i];
	}
	return f;
}

static void fixture_free(struct fixture *f)
{
	for (uint32_t i = 0; i < f->app.n_targets; i++)
		target_put(f->targets[i].t);
	free(f);
	assert_int_equal(target_registry_count(), 0);
}

static int group_setup(void **state)
{
	(void)state;
	log_threshold = LOG_ERROR;
	return target_registry_init(&health, 30000);
}

static void test_rr_exact(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(LB_ROUND_ROBIN, 4);
	struct lb_tried tried = { { 0 } };
	uint64_t now = ev_now_ns();
	unsigned count[4] = { 0 };
	int first = lb_pick(&f->app, &tried, now);
	assert_in_range(first, 0, 3);
	count[first]++;
	for (int k = 1; k < 400; k++) {
		int i = lb_pick(&f->app, &tried, now);
		assert_int_equal(i, (first + k) % 4);	/* strict rotation */
		count[i]++;
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(count[i], 100);
	fixture_free(f);
}

static void test_random_spread(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(LB_RANDOM, 4);
	uint64_t now = ev_now_ns();
	unsigned count[4] = { 0 };
	for (int k = 0; k < 40000; k++) {
		int i = lb_pick(&f->app, NULL, now);
		assert_in_range(i, 0, 3);
		count[i]++;
	}
	/* expected 10000 each, standard deviation ~87: +-1000 is > 11 sigma */
	for (int i = 0; i < 4; i++)
		assert_in_range(count[i], 9000, 11000);
	fixture_free(f);
}

static void test_least_conn(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(LB_LEAST_CONN, 4);
	uint64_t now = ev_now_ns();
	uint64_t active[4] = { 5, 2, 7, 2 };
	for (int i = 0; i < 4; i++)
		atomic_store(&f->stats[i].active, active[i]);

	/* 1 and 3 tie for least loaded: both used, evenly, nothing else */
	unsigned count[4] = { 0 };
	for (int k = 0; k < 100; k++) {
		int i = lb_pick(&f->app, NULL, now);
		assert_true(i == 1 || i == 3);
		count[i]++;
	}
	assert_int_equal(count[1], 50);
	assert_int_equal(count[3], 50);

	/* a single least loaded target takes every pick */
	atomic_store(&f->stats[2].active, 1);
	for (int k = 0; k < 20; k++)
		assert_int_equal(lb_pick(&f->app, NULL, now), 2);

	/* and follows the load as connections open */
	for (int k = 0; k < 50; k++) {
		int i = lb_pick(&f->app, NULL, now);
		uint64_t min = UINT64_MAX;
		for (int j = 0; j < 4; j++)
			if (atomic_load(&f->stats[j].active) < min)
				min = atomic_load(&f->stats[j].active);
		assert_int_equal(atomic_load(&f->stats[i].active), min);
		atomic_fetch_add(&f->stats[i].active, 1);
	}
	fixture_free(f);
}

static void test_skip_tried(void **state)
{
	(void)state;
	enum lb_policy pols[] = { LB_ROUND_ROBIN, LB_RANDOM, LB_LEAST_CONN };
	for (size_t p = 0; p < 3; p++) {
		struct fixture *f = fixture_new(pols[p], 4);
		uint64_t now = ev_now_ns();
		struct lb_tried tried = { { 0 } };
		lb_tried_set(&tried, 0);
		lb_tried_set(&tried, 2);
		atomic_store(&f->stats[0].active, 0);	/* least loaded, but tried */
		atomic_store(&f->stats[1].active, 3);
		atomic_store(&f->stats[2].active, 0);
		atomic_store(&f->stats[3].active, 3);
		unsigned count[4] = { 0 };
		for (int k = 0; k < 200; k++) {
			int i = lb_pick(&f->app, &tried, now);
			assert_true(i == 1 || i == 3);
			count[i]++;
		}
		assert_true(count[1] > 0 && count[3] > 0);

		/* a connection walking every target ends with -1 */
		struct lb_tried walk = { { 0 } };
		for (int k = 0; k < 4; k++) {
			int i = lb_pick(&f->app, &walk, now);
			assert_in_range(i, 0, 3);
			assert_false(lb_tried_has(&walk, (uint32_t)i));
			lb_tried_set(&walk, (uint32_t)i);
		}
		assert_int_equal(lb_pick(&f->app, &walk, now), -1);
		fixture_free(f);
	}
}

static void test_skip_down(void **state)
{
	(void)state;
	enum lb_policy pols[] = { LB_ROUND_ROBIN, LB_RANDOM, LB_LEAST_CONN };
	for (size_t p = 0; p < 3; p++) {
		struct fixture *f = fixture_new(pols[p], 4);
		uint64_t now = ev_now_ns();
		/* fall is 1: one failed connect takes target 1 down */
		target_report(f->targets[1].t, false, now);
		assert_false(f->targets[1].t->up);
		atomic_store(&f->stats[0].active, 4);
		atomic_store(&f->stats[2].active, 4);
		atomic_store(&f->stats[3].active, 4);	/* 1 is least loaded but down */
		unsigned count[4] = { 0 };
		for (int k = 0; k < 300; k++) {
			int i = lb_pick(&f->app, NULL, now);
			assert_true(i == 0 || i == 2 || i == 3);
			count[i]++;
		}
		assert_true(count[0] && count[2] && count[3]);

		/* down and tried together leave nothing */
		struct lb_tried tried = { { 0 } };
		lb_tried_set(&tried, 0);
		lb_tried_set(&tried, 2);
		lb_tried_set(&tried, 3);
		assert_int_equal(lb_pick(&f->app, &tried, now), -1);
		fixture_free(f);
	}
}

static void test_none_left(void **state)
{
	(void)state;
	enum lb_policy pols[] = { LB_ROUND_ROBIN, LB_RANDOM, LB_LEAST_CONN };
	for (size_t p = 0; p < 3; p++) {
		struct fixture *f = fixture_new(pols[p], 3);
		uint64_t now = ev_now_ns();
		for (int i = 0; i < 3; i++)
			target_report(f->targets[i].t, false, now);
		for (int k = 0; k < 10; k++)
			assert_int_equal(lb_pick(&f->app, NULL, now), -1);
		fixture_free(f);

		f = fixture_new(pols[p], 0);
		assert_int_equal(lb_pick(&f->app, NULL, now), -1);
		fixture_free(f);
	}
}

/* Once the backoff of a down target has passed, exactly one pick goes to
 * it, whatever the policy (least_conn included, though others are up). */
static void test_trial_after_backoff(void **state)
{
	(void)state;
	enum lb_policy pols[] = { LB_ROUND_ROBIN, LB_RANDOM, LB_LEAST_CONN };
	for (size_t p = 0; p < 3; p++) {
		struct fixture *f = fixture_new(pols[p], 4);
		uint64_t now = ev_now_ns();
		struct target *down = f->targets[2].t;
		target_report(down, false, now);
		assert_false(down->up);
		/* keep target 2 the least attractive for least_conn: the trial
		 * must still happen */
		atomic_store(&f->stats[2].active, 100);

		uint64_t later = now + (uint64_t)health.backoff_min_ms * 1000000ull;
		unsigned trials = 0;
		for (int k = 0; k < 400; k++)
			if (lb_pick(&f->app, NULL, later) == 2)
				trials++;
		assert_int_equal(trials, 1);

		/* the trial succeeded: back in rotation */
		target_report(down, true, later);
		assert_true(down->up);
		atomic_store(&f->stats[2].active, 0);
		trials = 0;
		for (int k = 0; k < 400; k++)
			if (lb_pick(&f->app, NULL, later) == 2)
				trials++;
		assert_true(trials > 1);
		fixture_free(f);
	}
}

/* A target that has no address (unresolved name) is never picked. */
static void test_unresolved_not_picked(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(LB_ROUND_ROBIN, 2);
	struct target *named = target_get("backend.invalid", 80);
	assert_non_null(named);
	f->targets[2].t = named;
	f->targets[2].stats = &f->stats[2];
	f->app.n_targets = 3;
	uint64_t now = ev_now_ns();
	for (int k = 0; k < 100; k++)
		assert_int_not_equal(lb_pick(&f->app, NULL, now + (uint64_t)k * 1000000000ull), 2);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rr_exact),
		cmocka_unit_test(test_random_spread),
		cmocka_unit_test(test_least_conn),
		cmocka_unit_test(test_skip_tried),
		cmocka_unit_test(test_skip_down),
		cmocka_unit_test(test_none_left),
		cmocka_unit_test(test_trial_after_backoff),
		cmocka_unit_test(test_unresolved_not_picked),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
