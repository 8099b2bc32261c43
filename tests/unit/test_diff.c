/* test_diff.c - config diffing by app name: added, removed, changed, unchanged, renames, reorders and size. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "config/config.h"
#include "config/diff.h"
#include "core/sbuf.h"
#include "runtime/runtime.h"
#include "steer/steer.h"

static struct cfg *load(const char *text)
{
	struct cfg *cfg = NULL;
	struct cfg_errors errs = { 0 };
	int r = cfg_load_buffer("d.yaml", text, strlen(text), &cfg, &errs);
	for (size_t i = 0; i < errs.n; i++)
		print_message("  error: %s\n", errs.msgs[i]);
	cfg_errors_free(&errs);
	assert_int_equal(r, 0);
	return cfg;
}

#define APP(name, port, target) \
	"  - {name: " name ", ports: [" port "], targets: [\"" target "\"]}\n"

static const char *name_new(const struct cfg *c, size_t i)
{
	return c->apps[i].name;
}

static void test_old_null(void **state)
{
	(void)state;
	struct cfg *n = load("apps:\n" APP("a", "1", "h:1") APP("b", "2", "h:2"));
	struct cfg_diff d;
	assert_int_equal(cfg_diff(NULL, n, &d), 0);
	assert_int_equal(d.n_added, 2);
	assert_int_equal(d.added[0], 0);
	assert_int_equal(d.added[1], 1);
	assert_int_equal(d.n_removed + d.n_changed + d.n_unchanged, 0);
	cfg_diff_free(&d);
	cfg_diff_free(&d);	/* idempotent */
	cfg_free(n);
}

static void test_add_remove_change_unchanged(void **state)
{
	(void)state;
	struct cfg *o = load("apps:\n" APP("keep", "1", "h:1") APP("gone", "2", "h:2")
				     APP("tweak", "3", "h:3") APP("port", "4", "h:4"));
	struct cfg *n = load("apps:\n" APP("keep", "1", "h:1") APP("tweak", "3", "h:33")
				     APP("port", "5", "h:4") APP("fresh", "6", "h:6"));
	struct cfg_diff d;
	assert_int_equal(cfg_diff(o, n, &d), 0);
	assert_int_equal(d.n_added, 1);
	assert_string_equal(name_new(n, d.added[0]), "fresh");
	assert_int_equal(d.n_removed, 1);
	assert_string_equal(o->apps[d.removed[0]].name, "gone");
	assert_int_equal(d.n_unchanged, 1);
	assert_int_equal(d.unchanged[0].old_i, 0);
	assert_int_equal(d.unchanged[0].new_i, 0);
	assert_int_equal(d.n_changed, 2);
	assert_string_equal(o->apps[d.changed[0].old_i].name, "tweak");
	assert_string_equal(n->apps[d.changed[0].new_i].name, "tweak");
	assert_int_equal(d.changed[0].old_i, 2);
	assert_int_equal(d.changed[0].new_i, 1);
	assert_string_equal(n->apps[d.changed[1].new_i].name, "port");
	cfg_diff_free(&d);
	cfg_free(o);
	cfg_free(n);
}

static void test_rename_is_remove_and_add(void **state)
{
	(void)state;
	struct cfg *o = load("apps:\n" APP("old_name", "1", "h:1"));
	struct cfg *n = load("apps:\n" APP("new_name", "1", "h:1"));
	struct cfg_diff d;
	assert_int_equal(cfg_diff(o, n, &d), 0);
	assert_int_equal(d.n_added, 1);
	assert_int_equal(d.n_removed, 1);
	assert_int_equal(d.n_changed, 0);
	assert_int_equal(d.n_unchanged, 0);
	cfg_diff_free(&d);
	cfg_free(o);
	cfg_free(n);
}

static void test_reorder_and_cosmetic(void **state)
{
	(void)state;
	/* apps reordered, ports written differently (same set), comments and
	 * layout changed: nothing to do */
	struct cfg *o = load("apps:\n" APP("a", "1, 2, 3", "h:1") APP("b", "10", "h:2") APP("c", "20", "h:3"));
	struct cfg *n = load("# moved around\napps:\n"
			     "  - name: c\n    ports: 20\n    targets: h:3\n"
			     "  - name: a\n    ports: [\"1-3\"]\n    targets: [\"h:1\"]\n"
			     "    connect_timeout: 2s\n"
			     "  - {name: b, ports: [10, 10], targets: [\"h:2\"]}\n");
	struct cfg_diff d;
	assert_int_equal(cfg_diff(o, n, &d), 0);
	assert_int_equal(d.n_unchanged, 3);
	assert_int_equal(d.n_added + d.n_removed + d.n_changed, 0);
	for (size_t i = 0; i < d.n_unchanged; i++)
		assert_string_equal(o->apps[d.unchanged[i].old_i].name,
				    n->apps[d.unchanged[i].new_i].name);
	cfg_diff_free(&d);
	cfg_free(o);
	cfg_free(n);
}

static void test_every_field_is_a_change(void **state)
{
	(void)state;
	static const char *const variants[] = {
		"    balance: random\n",	   "    connect_timeout: 3s\n",
		"    idle_timeout: 0\n",	   "    connect_attempts: 1\n",
		"    max_connections: 5\n",	   "    keepalive: off\n",
		"    keepalive: {count: 2}\n",	   "    health_check: false\n",
		"    addresses: [\"::1\"]\n",
	};
	struct cfg *o = load("apps:\n  - name: a\n    ports: 1\n    targets: [\"h:1\"]\n");
	for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
		char text[256];
		snprintf(text, sizeof(text), "apps:\n  - name: a\n    ports: 1\n    targets: [\"h:1\"]\n%s",
			 variants[v]);
		struct cfg *n = load(text);
		struct cfg_diff d;
		assert_int_equal(cfg_diff(o, n, &d), 0);
		if (d.n_changed != 1)
			fail_msg("variant %s not seen as a change", variants[v]);
		cfg_diff_free(&d);
		cfg_free(n);
	}
	/* the order of targets matters (round robin starts at the first) */
	struct cfg *a = load("apps:\n" APP("a", "1", "h:1\", \"h:2"));
	struct cfg *b = load("apps:\n" APP("a", "1", "h:2\", \"h:1"));
	struct cfg_diff d;
	assert_int_equal(cfg_diff(a, b, &d), 0);
	assert_int_equal(d.n_changed, 1);
	cfg_diff_free(&d);
	cfg_free(a);
	cfg_free(b);
	cfg_free(o);
}

/* Every http setting of an http app counts: a change of any of them makes
 * the app "changed"; the same settings written differently do not. */
static void test_http_change(void **state)
{
	(void)state;
	static const char *const base =
		"apps:\n  - name: w\n    ports: 1\n    protocol: http\n    targets: [\"h:1\"]\n"
		"    http:\n"
		"      clusters:\n        - {name: api, targets: [\"h:2\", \"h:3\"]}\n"
		"      routes:\n        - {host: a.org, path: /v1/, cluster: api}\n        - {path: /}\n";
	static const char *const variants[] = {
		"      header_timeout_ms: 1\n",	"      response_timeout_ms: 1\n",
		"      client_idle_timeout_ms: 1\n",	"      upstream_idle_timeout_ms: 1\n",
		"      max_idle_upstream: 1\n",	"      max_header_bytes: 2k\n",
		"      max_headers: 9\n",		"      forwarded: false\n",
		"      access_log: \"-\"\n",
	};
	struct cfg *o = load(base);
	for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
		char text[1024];
		snprintf(text, sizeof(text), "%s%s", base, variants[v]);
		struct cfg *n = load(text);
		struct cfg_diff d;
		assert_int_equal(cfg_diff(o, n, &d), 0);
		if (d.n_changed != 1)
			fail_msg("variant %s not seen as a change", variants[v]);
		cfg_diff_free(&d);
		cfg_free(n);
	}
	/* rewritten bodies of the http section */
	static const char *const bodies[] = {
		/* a route's host, path or cluster */
		"      clusters:\n        - {name: api, targets: [\"h:2\", \"h:3\"]}\n"
		"      routes:\n        - {host: b.org, path: /v1/, cluster: api}\n        - {path: /}\n",
		"      clusters:\n        - {name: api, targets: [\"h:2\", \"h:3\"]}\n"
		"      routes:\n        - {host: a.org, path: /v2/, cluster: api}\n        - {path: /}\n",
		"      clusters:\n        - {name: api, targets: [\"h:2\", \"h:3\"]}\n"
		"      routes:\n        - {host: a.org, path: /v1/}\n        - {path: /}\n",
		/* route order */
		"      clusters:\n        - {name: api, targets: [\"h:2\", \"h:3\"]}\n"
		"      routes:\n        - {path: /}\n        - {host: a.org, path: /v1/, cluster: api}\n",
		/* a cluster's name, targets or policy */
		"      clusters:\n        - {name: apx, targets: [\"h:2\", \"h:3\"]}\n"
		"      routes:\n        - {host: a.org, path: /v1/, cluster: apx}\n        - {path: /}\n",
		"      clusters:\n        - {name: api, targets: [\"h:2\"]}\n"
		"      routes:\n        - {host: a.org, path: /v1/, cluster: api}\n        - {path: /}\n",
		"      clusters:\n        - {name: api, targets: [\"h:2\", \"h:3\"], balance: random}\n"
		"      routes:\n        - {host: a.org, path: /v1/, cluster: api}\n        - {path: /}\n",
		/* one more cluster, unused */
		"      clusters:\n        - {name: api, targets: [\"h:2\", \"h:3\"]}\n        - {name: x, targets: [\"h:4\"]}\n"
		"      routes:\n        - {host: a.org, path: /v1/, cluster: api}\n        - {path: /}\n",
	};
	for (size_t v = 0; v < sizeof(bodies) / sizeof(bodies[0]); v++) {
		char text[1024];
		snprintf(text, sizeof(text),
			 "apps:\n  - name: w\n    ports: 1\n    protocol: http\n    targets: [\"h:1\"]\n    http:\n%s",
			 bodies[v]);
		struct cfg *n = load(text);
		struct cfg_diff d;
		assert_int_equal(cfg_diff(o, n, &d), 0);
		if (d.n_changed != 1)
			fail_msg("http body %zu not seen as a change", v);
		cfg_diff_free(&d);
		cfg_free(n);
	}
	/* the access log format alone, and the same settings in another form */
	struct cfg *l1 = load("apps:\n  - {name: w, ports: 1, protocol: http, targets: [\"h:1\"], http: {access_log: /l}}\n");
	struct cfg *l2 = load("apps:\n  - {name: w, ports: 1, protocol: http, targets: [\"h:1\"],"
			      " http: {access_log: /l, access_log_format: json}}\n");
	struct cfg *l3 = load("{\"apps\": [{\"name\": \"w\", \"ports\": [1], \"protocol\": \"http\", \"targets\": [\"h:1\"],"
			      " \"http\": {\"access_log\": \"/l\", \"access_log_format\": \"combined\", \"max_headers\": 100}}]}");
	struct cfg_diff d;
	assert_int_equal(cfg_diff(l1, l2, &d), 0);
	assert_int_equal(d.n_changed, 1);
	cfg_diff_free(&d);
	assert_int_equal(cfg_diff(l1, l3, &d), 0);
	assert_int_equal(d.n_unchanged, 1);
	cfg_diff_free(&d);
	/* protocol tcp -> http with the same targets: changed */
	struct cfg *t = load("apps:\n  - {name: w, ports: 1, targets: [\"h:1\"]}\n");
	struct cfg *h = load("apps:\n  - {name: w, ports: 1, targets: [\"h:1\"], protocol: http}\n");
	assert_int_equal(cfg_diff(t, h, &d), 0);
	assert_int_equal(d.n_changed, 1);
	cfg_diff_free(&d);
	cfg_free(t);
	cfg_free(h);
	cfg_free(l1);
	cfg_free(l2);
	cfg_free(l3);
	cfg_free(o);
}

static void test_empty_configs(void **state)
{
	(void)state;
	struct cfg *e = load("apps: []\n");
	struct cfg *n = load("apps:\n" APP("a", "1", "h:1"));
	struct cfg_diff d;
	assert_int_equal(cfg_diff(e, e, &d), 0);
	assert_int_equal(d.n_added + d.n_removed + d.n_changed + d.n_unchanged, 0);
	cfg_diff_free(&d);
	assert_int_equal(cfg_diff(n, e, &d), 0);
	assert_int_equal(d.n_removed, 1);
	assert_int_equal(d.removed[0], 0);
	cfg_diff_free(&d);
	cfg_free(e);
	cfg_free(n);
}

/* 10,000 apps, one changed, one added, one removed. */
static void test_big_diff(void **state)
{
	(void)state;
	struct sbuf a, b;
	sbuf_init(&a);
	sbuf_init(&b);
	sbuf_puts(&a, "{\"apps\":[");
	sbuf_puts(&b, "{\"apps\":[");
	for (unsigned i = 0; i < 10000; i++) {
		unsigned p = 10000 + i * 4;
		sbuf_printf(&a, "%s{\"name\":\"app%u\",\"ports\":[%u,\"%u-%u\"],\"targets\":[\"127.0.0.1:%u\"]}",
			    i ? "," : "", i, p, p + 1, p + 3, 50000 + i % 1000);
	}
	/* the new file lists the apps in reverse order, without app17, with
	 * app4242 pointing elsewhere and one more app at the end */
	for (unsigned k = 0; k < 10000; k++) {
		unsigned i = 9999 - k, p = 10000 + i * 4;
		if (i == 17)
			continue;
		sbuf_printf(&b, "%s{\"name\":\"app%u\",\"ports\":[%u,\"%u-%u\"],\"targets\":[\"127.0.0.1:%u\"]}",
			    k ? "," : "", i, p, p + 1, p + 3, i == 4242 ? 1 : 50000 + i % 1000);
	}
	sbuf_puts(&b, ",{\"name\":\"newcomer\",\"ports\":[9000],\"targets\":[\"h:1\"]}");
	sbuf_puts(&a, "]}");
	sbuf_puts(&b, "]}");
	sbuf_append(&a, "", 1);
	sbuf_append(&b, "", 1);
	struct cfg *o = load(a.data), *n = load(b.data);
	struct cfg_diff d;
	assert_int_equal(cfg_diff(o, n, &d), 0);
	assert_int_equal(d.n_added, 1);
	assert_string_equal(n->apps[d.added[0]].name, "newcomer");
	assert_int_equal(d.n_removed, 1);
	assert_string_equal(o->apps[d.removed[0]].name, "app17");
	assert_int_equal(d.n_changed, 1);
	assert_string_equal(o->apps[d.changed[0].old_i].name, "app4242");
	assert_string_equal(n->apps[d.changed[0].new_i].name, "app4242");
	assert_int_equal(d.n_unchanged, 9998);
	for (size_t i = 0; i < d.n_unchanged; i++)
		assert_string_equal(o->apps[d.unchanged[i].old_i].name,
				    n->apps[d.unchanged[i].new_i].name);
	cfg_diff_free(&d);
	cfg_free(o);
	cfg_free(n);
	sbuf_free(&a);
	sbuf_free(&b);
}

/* Pairing by position (validated configs, unique names) gives the same diff
 * as by name alone: inserted, removed, moved and swapped apps. */
static void test_positional_same_as_hashed(void **state)
{
	(void)state;
	static const char *cfgs[] = {
		"apps:\n" APP("a", "1", "h:1") APP("b", "2", "h:2") APP("c", "3", "h:3") APP("d", "4", "h:4"),
		"apps:\n" APP("a", "1", "h:1") APP("x", "9", "h:9") APP("b", "2", "h:2") APP("c", "3", "h:3") APP("d", "4", "h:4"),
		"apps:\n" APP("a", "1", "h:1") APP("c", "3", "h:3") APP("d", "4", "h:5"),
		"apps:\n" APP("b", "2", "h:2") APP("a", "1", "h:1") APP("c", "3", "h:3") APP("d", "4", "h:4"),
		"apps:\n" APP("d", "4", "h:4") APP("c", "30", "h:3") APP("b", "2", "h:2") APP("a", "1", "h:1") APP("e", "5", "h:5"),
		"apps:\n" APP("a", "1", "h:1"),
	};
	size_t n = sizeof(cfgs) / sizeof(cfgs[0]);
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < n; k++) {
			struct cfg *o = load(cfgs[i]), *nw = load(cfgs[k]);
			struct cfg_diff d1, d2;
			assert_true(o->names_unique && nw->names_unique);
			assert_int_equal(cfg_diff(o, nw, &d1), 0);
			o->names_unique = nw->names_unique = false;
			assert_int_equal(cfg_diff(o, nw, &d2), 0);
			assert_int_equal(d1.n_added, d2.n_added);
			assert_int_equal(d1.n_removed, d2.n_removed);
			assert_int_equal(d1.n_changed, d2.n_changed);
			assert_int_equal(d1.n_unchanged, d2.n_unchanged);
			assert_int_equal(d1.n_added + d1.n_changed + d1.n_unchanged, nw->n_apps);
			assert_int_equal(d1.n_removed + d1.n_changed + d1.n_unchanged, o->n_apps);
			if (d1.n_added)
				assert_memory_equal(d1.added, d2.added, d1.n_added * sizeof(*d1.added));
			if (d1.n_removed)
				assert_memory_equal(d1.removed, d2.removed, d1.n_removed * sizeof(*d1.removed));
			if (d1.n_changed)
				assert_memory_equal(d1.changed, d2.changed, d1.n_changed * sizeof(*d1.changed));
			if (d1.n_unchanged)
				assert_memory_equal(d1.unchanged, d2.unchanged,
						    d1.n_unchanged * sizeof(*d1.unchanged));
			cfg_diff_free(&d1);
			cfg_diff_free(&d2);
			cfg_free(o);
			cfg_free(nw);
		}
	/* the second config against the first: x added, the rest paired */
	struct cfg *o = load(cfgs[0]), *nw = load(cfgs[1]);
	struct cfg_diff d;
	assert_int_equal(cfg_diff(o, nw, &d), 0);
	assert_int_equal(d.n_added, 1);
	assert_int_equal(d.added[0], 1);
	assert_int_equal(d.n_unchanged, 4);
	assert_int_equal(d.unchanged[1].old_i, 1);
	assert_int_equal(d.unchanged[1].new_i, 2);
	cfg_diff_free(&d);
	cfg_free(o);
	cfg_free(nw);
}

/* --- steering deltas (rt_steer_delta) ------------------------------------------ */

static int cmp_entry(const void *x, const void *y)
{
	return memcmp(x, y, sizeof(struct steer_entry));
}

/* Applies rt_steer_delta(prev -> next) to prev's entries the way
 * steer_apply does (deletions of keys not written, then the writes) and
 * checks the result is exactly next's entries. */
static void check_delta(const struct rt_snapshot *prev, const struct rt_snapshot *next,
			const struct cfg_diff *d, size_t want_add, size_t want_del)
{
	struct steer_entry *pe, *ne, *add;
	struct pandit_steer_key *del;
	size_t np, nn, na, nd;
	assert_int_equal(rt_steer_entries(prev, &pe, &np), 0);
	assert_int_equal(rt_steer_entries(next, &ne, &nn), 0);
	assert_int_equal(rt_steer_delta(prev, next, d, &add, &na, &del, &nd), 0);
	assert_int_equal(na, want_add);
	assert_int_equal(nd, want_del);
	struct steer_entry *m = calloc(np + na + 1, sizeof(*m));
	assert_non_null(m);
	size_t n = 0;
	for (size_t i = 0; i < np; i++) {
		bool gone = false;
		for (size_t k = 0; k < nd && !gone; k++)
			gone = memcmp(&pe[i].key, &del[k], sizeof(del[k])) == 0;
		for (size_t k = 0; k < na; k++)
			if (memcmp(&pe[i].key, &add[k].key, sizeof(add[k].key)) == 0)
				gone = true;	/* written below */
		if (!gone)
			m[n++] = pe[i];
	}
	for (size_t k = 0; k < na; k++)
		m[n++] = add[k];
	assert_int_equal(n, nn);
	qsort(m, n, sizeof(*m), cmp_entry);
	qsort(ne, nn, sizeof(*ne), cmp_entry);
	assert_memory_equal(m, ne, n * sizeof(*m));
	free(m);
	free(pe);
	free(ne);
	free(add);
	free(del);
}

static void test_steer_delta(void **state)
{
	(void)state;
	struct cfg *c1 = load("apps:\n"
			      APP("same", "100-103", "h:1")
			      APP("grows", "200, 202", "h:2")
			      "  - {name: pfx, ports: [300, 301], addresses: [10.0.0.0/8, \"fd00::/16\"], targets: [\"h:3\"]}\n"
			      APP("gone", "400-401", "h:4")
			      APP("moves", "500", "h:5"));
	struct cfg *c2 = load("apps:\n"
			      APP("newbie", "400", "h:6")	/* a port of a removed app */
			      APP("same", "100-103", "h:1")
			      APP("grows", "200-202, 9000", "h:2")
			      "  - {name: pfx, ports: [300, 302], addresses: [10.1.0.0/16], targets: [\"h:3\"]}\n"
			      APP("moves", "500", "h:7"));	/* other target: changed, same keys */
	struct rt_snapshot *s1, *s2;
	struct cfg_diff d;
	assert_int_equal(rt_snapshot_build(c1, NULL, NULL, &s1), 0);
	assert_int_equal(cfg_diff(s1->cfg, c2, &d), 0);
	assert_int_equal(d.n_added, 1);
	assert_int_equal(d.n_removed, 1);
	assert_int_equal(d.n_changed, 3);
	assert_int_equal(rt_snapshot_build(c2, s1, &d, &s2), 0);
	/* writes: newbie 1, grows 4, pfx 2, moves 1; deletions: gone 2, grows 2, pfx 4, moves 1 */
	check_delta(s1, s2, &d, 8, 9);
	cfg_diff_free(&d);

	/* and back; then to the same config: nothing */
	struct cfg *c3 = load("apps:\n" APP("same", "100-103", "h:1"));
	struct rt_snapshot *s3, *s4;
	assert_int_equal(cfg_diff(s2->cfg, c3, &d), 0);
	assert_int_equal(rt_snapshot_build(c3, s2, &d, &s3), 0);
	check_delta(s2, s3, &d, 0, 8);
	cfg_diff_free(&d);
	struct cfg *c4 = load("apps:\n" APP("same", "100-103", "h:1"));
	assert_int_equal(cfg_diff(s3->cfg, c4, &d), 0);
	assert_int_equal(rt_snapshot_build(c4, s3, &d, &s4), 0);
	check_delta(s3, s4, &d, 0, 0);
	cfg_diff_free(&d);
	rt_snapshot_put(s1);
	rt_snapshot_put(s2);
	rt_snapshot_put(s3);
	rt_snapshot_put(s4);
}

/* Renders a config from a model: app i (when present) has the ports
 * [lo[i], hi[i]] inside its own block, maybe port 80 too when restricted to
 * its own 10.i.0.0/16, and one of two targets. */
struct pt_model {
	bool present[40], pfx[40];
	uint16_t lo[40], hi[40];
	int tgt[40];
};

static struct cfg *pt_load(const struct pt_model *m)
{
	struct sbuf b;
	sbuf_init(&b);
	sbuf_puts(&b, "apps:\n");
	for (int i = 0; i < 40; i++) {
		if (!m->present[i])
			continue;
		sbuf_printf(&b, "  - {name: a%d, ports: [\"%u-%u\"%s], targets: [\"h%d:1\"]", i, m->lo[i],
			    m->hi[i], m->pfx[i] ? ", 80" : "", m->tgt[i]);
		if (m->pfx[i])
			sbuf_printf(&b, ", addresses: [\"10.%d.0.0/16\", \"fd00:%x::/32\"]", i, i + 1);
		sbuf_puts(&b, "}\n");
	}
	sbuf_append(&b, "", 1);
	assert_false(b.oom);
	struct cfg *c = load(b.data);
	sbuf_free(&b);
	return c;
}

static void pt_randomize(struct pt_model *m, int i)
{
	uint16_t base = (uint16_t)(1000 + i * 20);
	m->present[i] = rand() % 8 != 0;
	m->lo[i] = (uint16_t)(base + rand() % 10);
	m->hi[i] = (uint16_t)(m->lo[i] + rand() % 10);
	m->pfx[i] = rand() % 3 == 0;
	m->tgt[i] = rand() % 2;
}

static const char *pt_lookup(const struct rt_snapshot *s, uint16_t port, const char *ip)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	inet_pton(AF_INET, ip, &in->sin_addr);
	const struct rt_app *a = rt_lookup(s, &ss);
	return a ? a->cfg->name : NULL;
}

/* A snapshot built on the previous one (its port table taken over and only
 * the ports of changed apps laid out again, arenas chained past the depth
 * limit) equals one built from scratch: same entries, same lookups. */
static void test_port_table_delta(void **state)
{
	(void)state;
	struct pt_model m;
	srand(4242);
	for (int i = 0; i < 40; i++)
		pt_randomize(&m, i);
	struct rt_snapshot *cur;
	assert_int_equal(rt_snapshot_build(pt_load(&m), NULL, NULL, &cur), 0);
	for (int round = 0; round < 60; round++) {
		int n = round % 10 == 9 ? 40 : 1 + rand() % 3;	/* now and then all at once */
		for (int k = 0; k < n; k++)
			pt_randomize(&m, rand() % 40);
		struct cfg *c = pt_load(&m);
		struct cfg_diff d;
		struct rt_snapshot *next, *full;
		assert_int_equal(cfg_diff(cur->cfg, c, &d), 0);
		assert_int_equal(rt_snapshot_build(c, cur, &d, &next), 0);
		cfg_diff_free(&d);
		assert_int_equal(rt_snapshot_build(pt_load(&m), NULL, NULL, &full), 0);
		struct steer_entry *e1, *e2;
		size_t n1, n2;
		assert_int_equal(rt_steer_entries(next, &e1, &n1), 0);
		assert_int_equal(rt_steer_entries(full, &e2, &n2), 0);
		assert_int_equal(n1, n2);
		assert_int_equal(next->n_ports, full->n_ports);
		/* app IDs differ between the two builds: compare keys, then names */
		for (size_t i = 0; i < n1; i++)
			e1[i].val.app_id = e2[i].val.app_id = 0;
		qsort(e1, n1, sizeof(*e1), cmp_entry);
		qsort(e2, n2, sizeof(*e2), cmp_entry);
		assert_memory_equal(e1, e2, n1 * sizeof(*e1));
		free(e1);
		free(e2);
		for (uint32_t p = 1; p < 65536; p++)
			assert_true((next->ports[p] == NULL) == (full->ports[p] == NULL));
		static const char *ips[] = { "127.0.0.1", "10.3.1.1", "10.17.0.9", "10.39.255.1" };
		for (uint16_t p = 1000; p < 1800; p++)
			for (int k = 0; k < 4; k++) {
				const char *x = pt_lookup(next, p, ips[k]), *y = pt_lookup(full, p, ips[k]);
				assert_true((x == NULL) == (y == NULL));
				if (x)
					assert_string_equal(x, y);
			}
		for (int k = 0; k < 4; k++) {
			const char *x = pt_lookup(next, 80, ips[k]), *y = pt_lookup(full, 80, ips[k]);
			assert_true((x == NULL) == (y == NULL));
			if (x)
				assert_string_equal(x, y);
		}
		rt_snapshot_put(full);
		rt_snapshot_put(cur);
		cur = next;
	}
	rt_snapshot_put(cur);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_old_null),
		cmocka_unit_test(test_add_remove_change_unchanged),
		cmocka_unit_test(test_rename_is_remove_and_add),
		cmocka_unit_test(test_reorder_and_cosmetic),
		cmocka_unit_test(test_every_field_is_a_change),
		cmocka_unit_test(test_http_change),
		cmocka_unit_test(test_empty_configs),
		cmocka_unit_test(test_big_diff),
		cmocka_unit_test(test_positional_same_as_hashed),
		cmocka_unit_test(test_steer_delta),
		cmocka_unit_test(test_port_table_delta),
	};
	return cmocka_run_group_tests_name("diff", tests, NULL, NULL);
}
