/* test_target.c - target registry, literal vs named targets, resolver, passive and active health. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/ev.h"
#include "core/log.h"
#include "lb/target.h"

#define MS 1000000ull
#define WAIT_MS 20000	/* generous bound for background threads; not a timing assertion */

static struct cfg_health health = {
	.interval_ms = 50, .timeout_ms = 1000, .rise = 2, .fall = 3,
	.backoff_min_ms = 1000, .backoff_max_ms = 4000,
};

static int test_setup(void **state)
{
	(void)state;
	return target_registry_init(&health, 30000);
}

static int test_teardown(void **state)
{
	(void)state;
	target_threads_stop();
	/* every test gives back what it took */
	return target_registry_count() == 0 ? 0 : -1;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* A non-blocking loopback listener; accept_all() keeps its queue empty so
 * that health checks keep completing. */
static int listen_loopback(uint16_t port, uint16_t *out_port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 128), 0);
	socklen_t len = sizeof(sin);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	if (out_port)
		*out_port = ntohs(sin.sin_port);
	return fd;
}

static void accept_all(int lfd)
{
	if (lfd < 0)
		return;
	int c;
	while ((c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
		close(c);
}

/* Polls cond until true or WAIT_MS passed, draining lfd meanwhile. */
#define WAIT_FOR(cond, lfd)                                                   \
	do {                                                                  \
		uint64_t _dl = ev_now_ns() + (uint64_t)WAIT_MS * MS;          \
		while (!(cond) && ev_now_ns() < _dl) {                        \
			accept_all(lfd);                                      \
			sleep_ms(5);                                          \
		}                                                             \
		assert_true(cond);                                            \
	} while (0)

static uint32_t n_addrs(struct target *t)
{
	pthread_mutex_lock(&t->lock);
	uint32_t n = t->n_addrs;
	pthread_mutex_unlock(&t->lock);
	return n;
}

static int resolve_err(struct target *t)
{
	pthread_mutex_lock(&t->lock);
	int e = t->resolve_err;
	pthread_mutex_unlock(&t->lock);
	return e;
}

/* --- registry and literals ---------------------------------------------------- */

static void test_literal_v4(void **state)
{
	(void)state;
	struct target *t = target_get("127.0.0.1", 8080);
	assert_non_null(t);
	assert_string_equal(t->name, "127.0.0.1:8080");
	assert_true(t->literal);
	assert_true(t->up);
	assert_int_equal(n_addrs(t), 1);
	assert_true(target_usable(t, ev_now_ns()));

	struct sockaddr_storage ss;
	socklen_t len;
	assert_int_equal(target_addr(t, &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	assert_int_equal(ntohs(sin->sin_port), 8080);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);

	/* shared: the same host:port is the same object */
	struct target *t2 = target_get("127.0.0.1", 8080);
	assert_ptr_equal(t, t2);
	assert_int_equal(t->refcnt, 2);
	struct target *t3 = target_get("127.0.0.1", 8081);
	assert_ptr_not_equal(t, t3);
	assert_int_equal(target_registry_count(), 2);
	target_put(t2);
	assert_int_equal(target_registry_count(), 2);
	target_put(t);
	target_put(t3);
	assert_int_equal(target_registry_count(), 0);
}

static void test_literal_v6(void **state)
{
	(void)state;
	struct target *t = target_get("::1", 443);
	assert_non_null(t);
	assert_string_equal(t->name, "[::1]:443");
	assert_true(t->literal);
	assert_true(t->up);
	struct sockaddr_storage ss;
	socklen_t len;
	assert_int_equal(target_addr(t, &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	assert_int_equal(ntohs(sin6->sin6_port), 443);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	target_put(t);
}

static void test_name_starts_down(void **state)
{
	(void)state;
	/* no threads running: nothing resolves it */
	struct target *t = target_get("localhost", 80);
	assert_non_null(t);
	assert_false(t->literal);
	assert_false(t->up);
	assert_int_equal(n_addrs(t), 0);
	assert_false(target_usable(t, ev_now_ns()));
	assert_false(target_usable(t, ev_now_ns() + 3600000 * MS));
	struct sockaddr_storage ss;
	socklen_t len;
	assert_int_equal(target_addr(t, &ss, &len), -EHOSTUNREACH);
	target_put(t);
}

static void test_bad_input(void **state)
{
	(void)state;
	assert_null(target_get(NULL, 80));
	assert_null(target_get("", 80));
	char big[300];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_null(target_get(big, 80));
	target_put(NULL);
	assert_int_equal(target_registry_count(), 0);
}

static void test_registry_many(void **state)
{
	(void)state;
	enum { N = 5000 };
	struct target **ts = calloc(N, sizeof(*ts));
	assert_non_null(ts);
	for (int i = 0; i < N; i++) {
		char host[32];
		snprintf(host, sizeof(host), "10.%d.%d.1", i / 256, i % 256);
		ts[i] = target_get(host, (uint16_t)(1000 + i % 7));
		assert_non_null(ts[i]);
	}
	assert_int_equal(target_registry_count(), N);
	for (int i = 0; i < N; i += 97) {
		char host[32];
		snprintf(host, sizeof(host), "10.%d.%d.1", i / 256, i % 256);
		struct target *t = target_get(host, (uint16_t)(1000 + i % 7));
		assert_ptr_equal(t, ts[i]);
		target_put(t);
	}
	for (int i = 0; i < N; i++)
		target_put(ts[i]);
	assert_int_equal(target_registry_count(), 0);
	free(ts);
}

/* --- passive health ------------------------------------------------------------ */

static void test_passive_fall_and_backoff(void **state)
{
	(void)state;
	struct target *t = target_get("127.0.0.1", 9001);
	uint64_t now = 1000000 * MS;

	target_report(t, false, now);
	target_report(t, false, now);
	assert_true(t->up);			/* 2 < fall */
	target_report(t, true, now);		/* a success resets the count */
	assert_int_equal(t->fails, 0);
	target_report(t, false, now);
	target_report(t, false, now);
	assert_true(t->up);
	target_report(t, false, now);		/* third in a row */
	assert_false(t->up);
	assert_int_equal(t->backoff_ms, 1000);

	assert_false(target_usable(t, now));
	assert_false(target_usable(t, now + 999 * MS));
	/* backoff passed: one trial, and only one */
	now += 1000 * MS;
	assert_true(target_usable(t, now));
	assert_false(target_usable(t, now));
	assert_false(target_usable(t, now + 999 * MS));

	/* trial fails: backoff doubles */
	target_report(t, false, now);
	assert_false(t->up);
	assert_int_equal(t->backoff_ms, 2000);
	assert_false(target_usable(t, now + 1999 * MS));
	now += 2000 * MS;
	assert_true(target_usable(t, now));
	target_report(t, false, now);
	assert_int_equal(t->backoff_ms, 4000);
	now += 4000 * MS;
	assert_true(target_usable(t, now));
	target_report(t, false, now);
	assert_int_equal(t->backoff_ms, 4000);	/* capped at backoff_max */

	/* a straggler failure (no trial out) does not lengthen it */
	target_report(t, false, now);
	assert_int_equal(t->backoff_ms, 4000);
	assert_false(target_usable(t, now + 3999 * MS));

	/* trial succeeds: up, counters reset */
	now += 4000 * MS;
	assert_true(target_usable(t, now));
	target_report(t, true, now);
	assert_true(t->up);
	assert_int_equal(t->fails, 0);
	assert_true(target_usable(t, now));

	/* going down again starts from backoff_min */
	for (int i = 0; i < 3; i++)
		target_report(t, false, now);
	assert_false(t->up);
	assert_int_equal(t->backoff_ms, 1000);
	target_put(t);
}

struct race {
	struct target *t;
	uint64_t now;
	pthread_barrier_t *bar;
	_Atomic int *wins;
};

static void *race_main(void *arg)
{
	struct race *r = arg;
	pthread_barrier_wait(r->bar);
	for (int i = 0; i < 1000; i++)
		if (target_usable(r->t, r->now))
			atomic_fetch_add(r->wins, 1);
	return NULL;
}

/* Workers racing on a down target whose backoff passed: one trial only. */
static void test_passive_trial_no_stampede(void **state)
{
	(void)state;
	enum { THREADS = 4 };
	struct target *t = target_get("127.0.0.1", 9002);
	uint64_t now = 5000000 * MS;
	for (int i = 0; i < 3; i++)
		target_report(t, false, now);
	assert_false(t->up);

	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, THREADS);
	_Atomic int wins = 0;
	pthread_t th[THREADS];
	struct race r = { t, now + 1000 * MS, &bar, &wins };
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, race_main, &r), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	assert_int_equal(wins, 1);
	target_put(t);
}

/* --- resolver ------------------------------------------------------------------ */

static void test_resolver_localhost(void **state)
{
	(void)state;
	struct target *t = target_get("localhost", 8088);
	assert_false(t->up);
	assert_int_equal(target_threads_start(), 0);
	WAIT_FOR(atomic_load(&t->has_addrs), -1);
	assert_true(t->up);
	assert_false(t->literal);
	assert_int_equal(resolve_err(t), 0);
	uint32_t n = n_addrs(t);
	assert_in_range(n, 1, TARGET_MAX_ADDRS);
	assert_true(target_usable(t, ev_now_ns()));
	/* every address is loopback with the target's port */
	for (uint32_t i = 0; i < n; i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		assert_int_equal(target_addr(t, &ss, &len), 0);
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			assert_int_equal(ntohs(sin->sin_port), 8088);
			assert_int_equal(ntohl(sin->sin_addr.s_addr) >> 24, 127);
		} else {
			assert_int_equal(ss.ss_family, AF_INET6);
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
			assert_int_equal(ntohs(sin6->sin6_port), 8088);
			assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
		}
	}
	target_threads_stop();
	target_put(t);
}

static void test_resolver_invalid(void **state)
{
	(void)state;
	/* RFC 6761: .invalid never resolves; answered without the network */
	struct target *bad = target_get("no-such-backend.invalid", 80);
	struct target *bad2 = target_get("ALSO.INVALID.", 81);
	struct target *good = target_get("localhost", 80);
	assert_int_equal(target_threads_start(), 0);
	WAIT_FOR(resolve_err(bad) != 0 && resolve_err(bad2) != 0 &&
		 atomic_load(&good->has_addrs), -1);
	assert_false(bad->up);
	assert_false(bad2->up);
	assert_int_equal(n_addrs(bad), 0);
	assert_false(target_usable(bad, ev_now_ns() + 3600000 * MS));
	struct sockaddr_storage ss;
	socklen_t len;
	assert_int_equal(target_addr(bad, &ss, &len), -EHOSTUNREACH);
	/* health reports cannot bring an address-less target up */
	target_report(bad, true, ev_now_ns());
	assert_false(bad->up);
	assert_true(good->up);
	target_threads_stop();
	target_put(bad);
	target_put(bad2);
	target_put(good);
}

/* A target queued while the threads run is resolved too (cond wake-up). */
static void test_resolver_late_target(void **state)
{
	(void)state;
	assert_int_equal(target_threads_start(), 0);
	sleep_ms(20);
	struct target *t = target_get("localhost", 7007);
	WAIT_FOR(atomic_load(&t->up), -1);
	target_threads_stop();
	target_put(t);
}

/* --- active health ------------------------------------------------------------- */

static void test_active_up_then_closed(void **state)
{
	(void)state;
	uint16_t port;
	int lfd = listen_loopback(0, &port);
	struct target *t = target_get("127.0.0.1", port);
	/* an unchecked target alongside: never probed */
	struct target *idle = target_get("127.0.0.1", 1);
	target_hc_ref(t, 1);
	assert_int_equal(target_threads_start(), 0);

	WAIT_FOR(atomic_load(&t->hc_ok) >= 3, lfd);
	assert_true(t->up);
	assert_int_equal(atomic_load(&idle->hc_ok) + atomic_load(&idle->hc_failed), 0);

	/* listener gone: connects refused, fall (3) failures take it down */
	close(lfd);
	WAIT_FOR(!atomic_load(&t->up), -1);
	assert_true(atomic_load(&t->hc_failed) >= 3);

	/* listener back on the same port: rise (2) successes bring it up */
	lfd = listen_loopback(port, NULL);
	uint64_t ok_before = atomic_load(&t->hc_ok);
	WAIT_FOR(atomic_load(&t->up), lfd);
	assert_true(atomic_load(&t->hc_ok) >= ok_before + 2);

	target_threads_stop();
	close(lfd);
	target_hc_ref(t, -1);
	target_put(t);
	target_put(idle);
}

/* Passive failures took it down; active checks see it healthy and bring it
 * back without waiting for a trial connection. */
static void test_active_recovers_passive_down(void **state)
{
	(void)state;
	uint16_t port;
	int lfd = listen_loopback(0, &port);
	struct target *t = target_get("127.0.0.1", port);
	uint64_t now = ev_now_ns();
	for (int i = 0; i < 3; i++)
		target_report(t, false, now);
	assert_false(t->up);
	target_hc_ref(t, 1);
	assert_int_equal(target_threads_start(), 0);
	WAIT_FOR(atomic_load(&t->up), lfd);
	assert_true(atomic_load(&t->hc_ok) >= 2);
	target_threads_stop();
	close(lfd);
	target_hc_ref(t, -1);
	target_put(t);
}

/* Many targets: every one gets checked, with at most 256 in flight. */
static void test_active_many(void **state)
{
	(void)state;
	enum { N = 2000 };
	uint16_t port;
	int lfd = listen_loopback(0, &port);
	struct target **ts = calloc(N, sizeof(*ts));
	assert_non_null(ts);
	/* one target at the listener, the others on loopback ports that are
	 * most likely closed: each check must complete either way */
	ts[0] = target_get("127.0.0.1", port);
	for (int i = 1; i < N; i++)
		ts[i] = target_get("127.0.0.1", (uint16_t)(20000 + i));
	for (int i = 0; i < N; i++) {
		assert_non_null(ts[i]);
		target_hc_ref(ts[i], 1);
	}
	log_threshold = LOG_ERROR;	/* 2000 "down" lines otherwise */
	assert_int_equal(target_threads_start(), 0);
	for (int i = 0; i < N; i++)
		WAIT_FOR(atomic_load(&ts[i]->hc_ok) + atomic_load(&ts[i]->hc_failed) >= 1, lfd);
	WAIT_FOR(atomic_load(&ts[0]->hc_ok) >= 1, lfd);
	target_threads_stop();
	log_threshold = LOG_WARN;
	close(lfd);
	for (int i = 0; i < N; i++) {
		target_hc_ref(ts[i], -1);
		target_put(ts[i]);
	}
	free(ts);
}

int main(void)
{
	log_threshold = LOG_WARN;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_literal_v4, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_literal_v6, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_name_starts_down, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_registry_many, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_passive_fall_and_backoff, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_passive_trial_no_stampede, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_resolver_localhost, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_resolver_invalid, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_resolver_late_target, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_active_up_then_closed, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_active_recovers_passive_down, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_active_many, test_setup, test_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
