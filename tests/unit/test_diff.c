/* test_diff.c - config diffing by app name: added, removed, changed, unchanged, renames, reorders and size. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/diff.h"
#include "core/sbuf.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_old_null),
		cmocka_unit_test(test_add_remove_change_unchanged),
		cmocka_unit_test(test_rename_is_remove_and_add),
		cmocka_unit_test(test_reorder_and_cosmetic),
		cmocka_unit_test(test_every_field_is_a_change),
		cmocka_unit_test(test_empty_configs),
		cmocka_unit_test(test_big_diff),
	};
	return cmocka_run_group_tests_name("diff", tests, NULL, NULL);
}
