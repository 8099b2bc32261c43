/* test_http_stats.c - unit tests of the HTTP route counters, their JSON and the runtime wiring of http apps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "python_check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/sbuf.h"
#include "proto/http_log.h"
#include "proto/http_stats.h"
#include "runtime/runtime.h"

/* --- hand-built http apps ----------------------------------------------------- */

struct route_spec {
	const char *host, *path;
	uint32_t cluster;
};

/* Fills a's http part (heap strings, freed by http_clear) with the named
 * clusters and the routes. */
static void http_fill(struct cfg_app *a, const char *const *clusters, uint32_t n_clusters,
		      const struct route_spec *routes, uint32_t n_routes)
{
	a->protocol = PROTO_HTTP;
	a->http.clusters = calloc(n_clusters, sizeof(*a->http.clusters));
	assert_non_null(a->http.clusters);
	for (uint32_t i = 0; i < n_clusters; i++) {
		a->http.clusters[i].name = strdup(clusters[i]);
		assert_non_null(a->http.clusters[i].name);
	}
	a->http.n_clusters = n_clusters;
	a->http.routes = calloc(n_routes ? n_routes : 1, sizeof(*a->http.routes));
	assert_non_null(a->http.routes);
	for (uint32_t i = 0; i < n_routes; i++) {
		a->http.routes[i].host = routes[i].host ? strdup(routes[i].host) : NULL;
		a->http.routes[i].path = strdup(routes[i].path);
		a->http.routes[i].cluster = routes[i].cluster;
	}
	a->http.n_routes = n_routes;
}

static void http_clear(struct cfg_http *h)
{
	for (uint32_t i = 0; i < h->n_clusters; i++)
		free(h->clusters[i].name);
	free(h->clusters);
	for (uint32_t i = 0; i < h->n_routes; i++) {
		free(h->routes[i].host);
		free(h->routes[i].path);
	}
	free(h->routes);
	free(h->access_log);
	memset(h, 0, sizeof(*h));
}

static const char *const two_clusters[] = { "default", "static" };
static const struct route_spec v1_routes[] = {
	{ "api.example.com", "/v1/", 0 },
	{ NULL, "/", 1 },
};

/* --- counting ------------------------------------------------------------------- */

static void test_counting_and_classes(void **state)
{
	(void)state;
	struct cfg_app a = { .name = "web" };
	http_fill(&a, two_clusters, 2, v1_routes, 2);
	struct http_app_stats *s = http_stats_new(&a, NULL, NULL);
	assert_non_null(s);
	assert_int_equal(s->n_routes, 2);
	assert_int_equal(s->refcnt, 1);

	http_stats_done(s, 0, 200, 75);
	http_stats_done(s, 0, 204, 75);
	http_stats_done(s, 0, 101, 300);
	http_stats_done(s, 0, 0, 10);		/* no response */
	http_stats_done(s, 1, 301, 40);
	http_stats_done(s, 1, 404, 40);
	http_stats_done(s, 1, 503, 6000000);
	http_stats_done(s, 1, 599, 1);
	http_stats_done(s, 1, 600, 1);		/* outside 1xx..5xx: none */
	http_stats_done(s, 1, 99, 1);
	http_stats_done(s, 2, 404, 1);		/* unrouted */
	http_stats_done(s, 77, 400, 1);		/* out of range: unrouted */

	const struct http_route_stats *r0 = &s->routes[0], *r1 = &s->routes[1], *u = &s->routes[2];
	assert_int_equal(r0->requests, 4);
	assert_int_equal(r0->responses[0], 1);
	assert_int_equal(r0->responses[1], 1);
	assert_int_equal(r0->responses[2], 2);
	assert_int_equal(r0->responses[3] + r0->responses[4] + r0->responses[5], 0);
	assert_int_equal(r0->latency.count, 4);
	assert_int_equal(r0->latency.sum_us, 75 + 75 + 300 + 10);
	assert_int_equal(r0->latency.buckets[0], 1);	/* 10 <= 50 */
	assert_int_equal(r0->latency.buckets[1], 2);	/* 75 in (50, 100] */
	assert_int_equal(r0->latency.buckets[3], 1);	/* 300 in (250, 500] */
	assert_int_equal(r1->requests, 6);
	assert_int_equal(r1->responses[3], 1);
	assert_int_equal(r1->responses[4], 1);
	assert_int_equal(r1->responses[5], 2);
	assert_int_equal(r1->responses[0], 2);
	assert_int_equal(r1->latency.buckets[STATS_HIST_NBOUNDS], 1);	/* 6 s: +Inf */
	assert_int_equal(u->requests, 2);
	assert_int_equal(u->responses[4], 2);
	/* the app-wide counters are the caller's */
	assert_int_equal(s->requests, 0);

	/* NULL-safe */
	http_stats_done(NULL, 0, 200, 1);
	assert_ptr_equal(http_stats_get(s), s);
	assert_int_equal(s->refcnt, 2);
	http_stats_put(s);
	assert_int_equal(s->refcnt, 1);
	http_stats_put(s);
	http_stats_put(NULL);
	assert_null(http_stats_get(NULL));
	http_clear(&a.http);
}

/* An app without routes (every request to cluster 0) has only the unrouted slot. */
static void test_no_routes(void **state)
{
	(void)state;
	struct cfg_app a = { .name = "plain" };
	http_fill(&a, two_clusters, 1, NULL, 0);
	struct http_app_stats *s = http_stats_new(&a, NULL, NULL);
	assert_non_null(s);
	assert_int_equal(s->n_routes, 0);
	http_stats_done(s, 0, 200, 5);
	assert_int_equal(s->routes[0].requests, 1);
	struct sbuf b;
	sbuf_init(&b);
	http_route_label(&b, &a, 0);
	assert_string_equal(b.data, "unrouted");
	sbuf_free(&b);
	http_stats_put(s);
	http_clear(&a.http);
}

static void test_route_label(void **state)
{
	(void)state;
	struct cfg_app a = { .name = "web" };
	http_fill(&a, two_clusters, 2, v1_routes, 2);
	struct sbuf b;
	sbuf_init(&b);
	http_route_label(&b, &a, 0);
	assert_string_equal(b.data, "api.example.com/v1/");
	sbuf_reset(&b);
	http_route_label(&b, &a, 1);
	assert_string_equal(b.data, "*/");
	sbuf_reset(&b);
	http_route_label(&b, &a, 2);
	assert_string_equal(b.data, "unrouted");
	sbuf_reset(&b);
	http_route_label(&b, &a, 1000);
	assert_string_equal(b.data, "unrouted");
	sbuf_free(&b);
	http_clear(&a.http);
}

/* --- carry-over across a reload ---------------------------------------------------- */

static void fill_app_wide(struct http_app_stats *s)
{
	stats_add(&s->requests, 100);
	stats_add(&s->bad_requests, 1);
	stats_add(&s->header_timeouts, 2);
	stats_add(&s->upstream_errors, 3);
	stats_add(&s->no_target, 4);
	stats_add(&s->upstream_timeouts, 5);
	stats_add(&s->retries, 6);
	stats_add(&s->upgrades, 7);
	stats_add(&s->upstream_reused, 8);
	stats_add(&s->upstream_new, 9);
}

static void test_carry_over(void **state)
{
	(void)state;
	static const char *const three_clusters[] = { "default", "static", "images" };
	static const struct route_spec old_routes[] = {
		{ "api.example.com", "/v1/", 0 },	/* kept, moves to index 2 */
		{ NULL, "/", 1 },			/* kept, moves to index 0 */
		{ "img.example.com", "/", 2 },		/* same host and path, other cluster: not kept */
		{ "gone.example.com", "/", 0 },		/* removed */
	};
	static const struct route_spec new_routes[] = {
		{ NULL, "/", 1 },
		{ "new.example.com", "/", 0 },		/* new: zero */
		{ "api.example.com", "/v1/", 0 },
		{ "img.example.com", "/", 1 },
	};
	struct cfg_app old = { .name = "web" }, nw = { .name = "web" };
	http_fill(&old, three_clusters, 3, old_routes, 4);
	/* clusters renumbered: the route keeps its counts by cluster name */
	static const char *const renumbered[] = { "default", "images", "static" };
	http_fill(&nw, renumbered, 3, new_routes, 4);
	nw.http.routes[0].cluster = 2;		/* "static" */
	nw.http.routes[3].cluster = 2;		/* img -> "static", was "images" */

	struct http_app_stats *ps = http_stats_new(&old, NULL, NULL);
	assert_non_null(ps);
	fill_app_wide(ps);
	for (int i = 0; i < 3; i++)
		http_stats_done(ps, 0, 200, 75);	/* api */
	for (int i = 0; i < 5; i++)
		http_stats_done(ps, 1, 304, 300);	/* * / */
	http_stats_done(ps, 2, 200, 1);			/* img */
	http_stats_done(ps, 3, 502, 1);			/* gone */
	http_stats_done(ps, 4, 404, 1);			/* unrouted */
	http_stats_done(ps, 4, 400, 1);

	struct http_app_stats *s = http_stats_new(&nw, ps, &old);
	assert_non_null(s);
	assert_int_equal(s->n_routes, 4);
	assert_int_equal(s->refcnt, 1);
	assert_int_equal(s->requests, 100);
	assert_int_equal(s->bad_requests, 1);
	assert_int_equal(s->header_timeouts, 2);
	assert_int_equal(s->upstream_errors, 3);
	assert_int_equal(s->no_target, 4);
	assert_int_equal(s->upstream_timeouts, 5);
	assert_int_equal(s->retries, 6);
	assert_int_equal(s->upgrades, 7);
	assert_int_equal(s->upstream_reused, 8);
	assert_int_equal(s->upstream_new, 9);
	assert_int_equal(s->routes[0].requests, 5);
	assert_int_equal(s->routes[0].responses[3], 5);
	assert_int_equal(s->routes[0].latency.count, 5);
	assert_int_equal(s->routes[0].latency.sum_us, 1500);
	assert_int_equal(s->routes[0].latency.buckets[3], 5);
	assert_int_equal(s->routes[1].requests, 0);
	assert_int_equal(s->routes[1].latency.count, 0);
	assert_int_equal(s->routes[2].requests, 3);
	assert_int_equal(s->routes[2].responses[2], 3);
	assert_int_equal(s->routes[3].requests, 0);	/* cluster changed */
	assert_int_equal(s->routes[4].requests, 2);	/* unrouted */
	assert_int_equal(s->routes[4].responses[4], 2);

	/* copies: counting on goes to the new object only */
	http_stats_done(s, 0, 200, 1);
	assert_int_equal(ps->routes[1].requests, 5);
	assert_int_equal(s->routes[0].requests, 6);

	/* without the previous config only the app-wide counts and the
	 * unrouted slot are carried */
	struct http_app_stats *s2 = http_stats_new(&nw, ps, NULL);
	assert_non_null(s2);
	assert_int_equal(s2->retries, 6);
	assert_int_equal(s2->routes[4].requests, 2);
	for (int i = 0; i < 4; i++)
		assert_int_equal(s2->routes[i].requests, 0);

	http_stats_put(s2);
	http_stats_put(s);
	http_stats_put(ps);
	http_clear(&old.http);
	http_clear(&nw.http);
}

/* Duplicate routes: a previous route's counts go to one new route only. */
static void test_carry_over_duplicates(void **state)
{
	(void)state;
	static const struct route_spec one[] = { { NULL, "/", 0 } };
	static const struct route_spec dup[] = { { NULL, "/", 0 }, { NULL, "/", 0 } };
	struct cfg_app old = { .name = "w" }, nw = { .name = "w" };
	http_fill(&old, two_clusters, 1, one, 1);
	http_fill(&nw, two_clusters, 1, dup, 2);
	struct http_app_stats *ps = http_stats_new(&old, NULL, NULL);
	assert_non_null(ps);
	http_stats_done(ps, 0, 200, 1);
	struct http_app_stats *s = http_stats_new(&nw, ps, &old);
	assert_non_null(s);
	assert_int_equal(s->routes[0].requests + s->routes[1].requests, 1);
	http_stats_put(s);
	http_stats_put(ps);
	http_clear(&old.http);
	http_clear(&nw.http);
}

/* --- JSON ------------------------------------------------------------------------- */

static void test_json(void **state)
{
	(void)state;
	static const struct route_spec odd[] = {
		{ "api.example.com", "/v1/", 0 },
		{ NULL, "/q\"\\\n\x01\xc3\xa9", 1 },
	};
	struct cfg_app a = { .name = "web" };
	http_fill(&a, two_clusters, 2, odd, 2);
	struct http_app_stats *s = http_stats_new(&a, NULL, NULL);
	assert_non_null(s);
	fill_app_wide(s);
	for (int i = 0; i < 100; i++)
		http_stats_done(s, 0, 200, 75);
	http_stats_done(s, 1, 0, 3000);
	http_stats_done(s, 2, 404, 10);

	struct sbuf b;
	sbuf_init(&b);
	sbuf_puts(&b, "{");
	http_stats_json(&b, &a, s);
	sbuf_puts(&b, "}");
	assert_false(b.oom);
	assert_null(memchr(b.data, '\n', b.len));
	static const char script[] =
		"import json, sys\n"
		"d = json.load(open(sys.argv[1], encoding='utf-8'))['http']\n"
		"want = {'requests': 100, 'bad_requests': 1, 'header_timeouts': 2, 'upstream_errors': 3,"
		" 'no_target': 4, 'upstream_timeouts': 5, 'retries': 6, 'upgrades': 7,"
		" 'upstream_reused': 8, 'upstream_new': 9}\n"
		"for k, v in want.items():\n"
		"    assert d[k] == v, (k, d)\n"
		"r = d['routes']\n"
		"assert len(r) == 3, r\n"
		"assert (r[0]['host'], r[0]['path'], r[0]['cluster']) == ('api.example.com', '/v1/', 'default'), r[0]\n"
		"assert r[0]['requests'] == 100\n"
		"assert r[0]['responses'] == {'1xx': 0, '2xx': 100, '3xx': 0, '4xx': 0, '5xx': 0, 'none': 0}, r[0]\n"
		"assert r[0]['latency_us'] == {'p50': 75, 'p90': 95, 'p99': 100, 'count': 100}, r[0]\n"
		"assert r[1]['host'] is None and r[1]['path'] == '/q\"\\\\\\n\\x01\\u00e9' and r[1]['cluster'] == 'static', r[1]\n"
		"assert r[1]['responses']['none'] == 1 and r[1]['latency_us']['count'] == 1, r[1]\n"
		"assert 2500 < r[1]['latency_us']['p50'] <= 5000, r[1]\n"
		"assert r[2]['host'] is None and r[2]['path'] is None and r[2]['cluster'] is None, r[2]\n"
		"assert r[2]['requests'] == 1 and r[2]['responses']['4xx'] == 1, r[2]\n";
	int rc = python_check(script, b.data, b.len);
	if (rc > 0)
		fprintf(stderr, "JSON was: %s\n", b.data);
	sbuf_free(&b);
	http_stats_put(s);
	http_clear(&a.http);
	if (rc == -1)
		skip();
	assert_int_equal(rc, 0);
}

/* --- runtime: http apps in snapshots -------------------------------------------------- */

static char tmpdir[64];

static char *tmp_path(const char *name)
{
	char *p = malloc(strlen(tmpdir) + strlen(name) + 2);
	assert_non_null(p);
	sprintf(p, "%s/%s", tmpdir, name);
	return p;
}

/* A config of one tcp app "t" (port 18001) and one http app "h" (port
 * 18002) with the given routes and access log; the http arrays are the
 * test's (see cfg_release). */
static struct cfg *make_cfg(const struct route_spec *routes, uint32_t n_routes, const char *log,
			    uint32_t connect_timeout_ms)
{
	struct cfg *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->apps = calloc(2, sizeof(*c->apps));
	assert_non_null(c->apps);
	c->n_apps = 2;
	for (int i = 0; i < 2; i++) {
		struct cfg_app *a = &c->apps[i];
		a->name = strdup(i ? "h" : "t");
		a->ports = calloc(1, sizeof(*a->ports));
		assert_true(a->name && a->ports);
		a->ports[0].lo = a->ports[0].hi = (uint16_t)(18001 + i);
		a->n_ports = 1;
		a->connect_attempts = 1;
		a->connect_timeout_ms = connect_timeout_ms;
	}
	struct cfg_app *h = &c->apps[1];
	http_fill(h, two_clusters, 2, routes, n_routes);
	if (log) {
		h->http.log_format = HTTP_LOG_JSON;
		h->http.access_log = strdup(log);
	}
	return c;
}

/* Takes the http arrays back out of a snapshot's config before it is
 * freed (the test owns them; the runtime's own copies are its business). */
static struct cfg_http cfg_release(struct rt_snapshot *s)
{
	struct cfg_http h = s->cfg->apps[1].http;
	memset(&s->cfg->apps[1].http, 0, sizeof(h));
	return h;
}

static void test_runtime_http_apps(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pandit_http_rt_XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	char *log1 = tmp_path("access.log");

	/* first snapshot */
	struct cfg *c1 = make_cfg(v1_routes, 2, log1, 1000);
	struct rt_snapshot *s1 = NULL;
	assert_int_equal(rt_snapshot_build(c1, NULL, NULL, &s1), 0);
	struct rt_app *t1 = s1->apps[0], *h1 = s1->apps[1];
	assert_null(t1->http);
	assert_null(t1->http_log);
	assert_null(t1->cluster_rr);
	assert_non_null(h1->http);
	assert_int_equal(h1->http->n_routes, 2);
	assert_non_null(h1->cluster_rr);
	assert_int_equal(atomic_load(&h1->cluster_rr[0]), 0);
	assert_int_equal(atomic_load(&h1->cluster_rr[1]), 0);
	assert_non_null(h1->http_log);
	assert_int_equal(h1->http_log->fmt, HTTP_LOG_JSON);
	struct stat st;
	assert_int_equal(stat(log1, &st), 0);
	mode_t um = umask(022);
	umask(um);
	assert_int_equal(st.st_mode & 0777, 0644 & ~um);
	http_stats_done(h1->http, 0, 200, 10);
	http_stats_done(h1->http, 1, 404, 10);

	/* the log is rotated; the app changes (a timeout) but keeps its routes:
	 * same counters, the log opened anew */
	char *rotated = tmp_path("access.log.1");
	assert_int_equal(rename(log1, rotated), 0);
	struct cfg *c2 = make_cfg(v1_routes, 2, log1, 2000);
	c2->apps[0].connect_timeout_ms = 1000;	/* the tcp app stays the same */
	struct cfg_pair unchanged = { 0, 0 }, changed = { 1, 1 };
	struct cfg_diff d = { .changed = &changed, .n_changed = 1, .unchanged = &unchanged,
			      .n_unchanged = 1 };
	struct rt_snapshot *s2 = NULL;
	assert_int_equal(rt_snapshot_build(c2, s1, &d, &s2), 0);
	struct rt_app *h2 = s2->apps[1];
	assert_ptr_equal(s2->apps[0], t1);
	assert_ptr_not_equal(h2, h1);
	assert_ptr_equal(h2->http, h1->http);
	assert_non_null(h2->http_log);
	assert_ptr_not_equal(h2->http_log, h1->http_log);
	assert_int_equal(stat(log1, &st), 0);	/* created again */
	struct stat st_old, st_new;
	assert_int_equal(fstat(h1->http_log->fd, &st_old), 0);
	assert_int_equal(fstat(h2->http_log->fd, &st_new), 0);
	assert_true(st_old.st_ino != st_new.st_ino);
	assert_ptr_not_equal(h2->cluster_rr, h1->cluster_rr);

	/* routes change: counters copied route by route; the log cannot be
	 * opened: the reload goes through, the old file stays in use when the
	 * path is the same, and a new unopenable path means no log */
	static const struct route_spec v2_routes[] = {
		{ NULL, "/", 1 },
		{ "api.example.com", "/v2/", 0 },
	};
	char *bad = tmp_path("no/such/dir/x.log");
	struct cfg *c3 = make_cfg(v2_routes, 2, bad, 2000);
	c3->apps[0].connect_timeout_ms = 1000;
	struct rt_snapshot *s3 = NULL;
	assert_int_equal(rt_snapshot_build(c3, s2, &d, &s3), 0);
	struct rt_app *h3 = s3->apps[1];
	assert_non_null(h3->http);
	assert_ptr_not_equal(h3->http, h2->http);
	assert_int_equal(h3->http->routes[0].requests, 1);	/* "*" "/" kept */
	assert_int_equal(h3->http->routes[0].responses[4], 1);
	assert_int_equal(h3->http->routes[1].requests, 0);	/* /v2/ is new */
	assert_null(h3->http_log);

	/* the app turns into a tcp app: nothing http left */
	struct cfg *c4 = make_cfg(v2_routes, 2, NULL, 3000);
	c4->apps[0].connect_timeout_ms = 1000;
	c4->apps[1].protocol = PROTO_TCP;
	struct rt_snapshot *s4 = NULL;
	assert_int_equal(rt_snapshot_build(c4, s3, &d, &s4), 0);
	assert_null(s4->apps[1]->http);
	assert_null(s4->apps[1]->http_log);
	assert_null(s4->apps[1]->cluster_rr);

	struct cfg_http hs[4] = { cfg_release(s1), cfg_release(s2), cfg_release(s3), cfg_release(s4) };
	rt_snapshot_put(s1);
	rt_snapshot_put(s2);
	rt_snapshot_put(s3);
	rt_snapshot_put(s4);
	for (int i = 0; i < 4; i++)
		http_clear(&hs[i]);
	unlink(log1);
	unlink(rotated);
	assert_int_equal(rmdir(tmpdir), 0);
	free(log1);
	free(rotated);
	free(bad);
}

/* Same path, open fails on reload (e.g. after the privilege drop): the
 * file already open is kept. */
static void test_runtime_log_kept_when_reopen_fails(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pandit_http_rt_XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	char *log1 = tmp_path("access.log");
	struct cfg *c1 = make_cfg(v1_routes, 2, log1, 1000);
	struct rt_snapshot *s1 = NULL;
	assert_int_equal(rt_snapshot_build(c1, NULL, NULL, &s1), 0);
	assert_non_null(s1->apps[1]->http_log);
	/* a directory in its place fails the open, root or not */
	assert_int_equal(unlink(log1), 0);
	assert_int_equal(mkdir(log1, 0755), 0);
	struct cfg *c2 = make_cfg(v1_routes, 2, log1, 2000);
	c2->apps[0].connect_timeout_ms = 1000;
	struct cfg_pair unchanged = { 0, 0 }, changed = { 1, 1 };
	struct cfg_diff d = { .changed = &changed, .n_changed = 1, .unchanged = &unchanged,
			      .n_unchanged = 1 };
	struct rt_snapshot *s2 = NULL;
	assert_int_equal(rt_snapshot_build(c2, s1, &d, &s2), 0);
	assert_ptr_equal(s2->apps[1]->http_log, s1->apps[1]->http_log);
	assert_int_equal(s2->apps[1]->http_log->refcnt, 2);
	struct cfg_http hs[2] = { cfg_release(s1), cfg_release(s2) };
	rt_snapshot_put(s1);
	rt_snapshot_put(s2);
	http_clear(&hs[0]);
	http_clear(&hs[1]);
	assert_int_equal(rmdir(log1), 0);
	assert_int_equal(rmdir(tmpdir), 0);
	free(log1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counting_and_classes),
		cmocka_unit_test(test_no_routes),
		cmocka_unit_test(test_route_label),
		cmocka_unit_test(test_carry_over),
		cmocka_unit_test(test_carry_over_duplicates),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_runtime_http_apps),
		cmocka_unit_test(test_runtime_log_kept_when_reopen_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
