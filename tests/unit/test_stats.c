/* test_stats.c - unit tests of histograms, counters and the JSON / Prometheus renderings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "python_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lb/target.h"
#include "proto/http_log.h"
#include "proto/http_stats.h"
#include "runtime/runtime.h"
#include "stats/stats.h"
#include "steer/steer.h"

/* --- a hand-built snapshot (no runtime, no config loader) ---------------- */

struct fixture {
	struct rt_snapshot *snap;
	struct rt_app *apps;
	struct cfg_app *cfgs;
	struct rt_app_target *ats;
	struct target *targets;
	struct conn_stats **stats;	/* every conn_stats made, to free */
	size_t n_stats;
	char **names;
	size_t n_names;
};

static char *fx_str(struct fixture *f, const char *s)
{
	char *d = strdup(s);
	assert_non_null(d);
	f->names[f->n_names++] = d;
	return d;
}

static struct conn_stats *fx_stats(struct fixture *f)
{
	struct conn_stats *s = conn_stats_new();
	assert_non_null(s);
	f->stats[f->n_stats++] = s;
	return s;
}

/* n apps, app i named name_fmt % i (or names[i] when given) with
 * n_targets targets each, target j of app i named "10.0.<i>.<j>:80". */
static struct fixture *fx_make(size_t n, size_t n_targets, const char *const *names)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->snap = calloc(1, sizeof(*f->snap));
	f->apps = calloc(n ? n : 1, sizeof(*f->apps));
	f->cfgs = calloc(n ? n : 1, sizeof(*f->cfgs));
	f->ats = calloc(n * n_targets + 1, sizeof(*f->ats));
	f->targets = calloc(n * n_targets + 1, sizeof(*f->targets));
	f->stats = calloc(n * (n_targets + 1) + 1, sizeof(*f->stats));
	f->names = calloc(n * (n_targets + 1) + 1, sizeof(*f->names));
	assert_true(f->snap && f->apps && f->cfgs && f->ats && f->targets && f->stats && f->names);
	f->snap->apps = calloc(n ? n : 1, sizeof(*f->snap->apps));
	assert_non_null(f->snap->apps);
	f->snap->n_apps = n;
	f->snap->generation = 3;
	atomic_init(&f->snap->refcnt, 1);
	for (size_t i = 0; i < n; i++) {
		char buf[64];
		struct rt_app *a = &f->apps[i];
		if (names) {
			f->cfgs[i].name = fx_str(f, names[i]);
		} else {
			snprintf(buf, sizeof(buf), "app%zu", i);
			f->cfgs[i].name = fx_str(f, buf);
		}
		a->cfg = &f->cfgs[i];
		a->id = (uint32_t)(i + 1);
		a->stats = fx_stats(f);
		a->targets = &f->ats[i * n_targets];
		a->n_targets = (uint32_t)n_targets;
		for (size_t j = 0; j < n_targets; j++) {
			struct target *t = &f->targets[i * n_targets + j];
			snprintf(buf, sizeof(buf), "10.0.%zu.%zu:80", i, j);
			t->name = fx_str(f, buf);
			atomic_store(&t->up, j == 0);
			a->targets[j].t = t;
			a->targets[j].stats = fx_stats(f);
		}
		f->snap->apps[i] = a;
	}
	return f;
}

static void fx_free(struct fixture *f)
{
	for (size_t i = 0; i < f->n_stats; i++)
		conn_stats_put(f->stats[i]);
	for (size_t i = 0; i < f->n_names; i++)
		free(f->names[i]);
	free(f->snap->apps);
	free(f->snap);
	free(f->apps);
	free(f->cfgs);
	free(f->ats);
	free(f->targets);
	free(f->stats);
	free(f->names);
	free(f);
}

static void reset_global(void)
{
	memset(&stats_global, 0, sizeof(stats_global));	/* started_ns 0: uptime reads 0 */
}

/* --- histograms ----------------------------------------------------------- */

static void test_hist_buckets(void **state)
{
	(void)state;
	struct stats_hist h;
	memset(&h, 0, sizeof(h));
	const uint64_t bounds[] = STATS_HIST_BOUNDS_US;
	assert_int_equal(sizeof(bounds) / sizeof(bounds[0]), STATS_HIST_NBOUNDS);

	stats_hist_observe(&h, 0);
	stats_hist_observe(&h, 50);	/* upper bounds are inclusive (le) */
	stats_hist_observe(&h, 51);
	stats_hist_observe(&h, 5000000);
	stats_hist_observe(&h, 5000001);
	stats_hist_observe(&h, UINT64_MAX / 4);
	assert_int_equal(h.buckets[0], 2);
	assert_int_equal(h.buckets[1], 1);
	assert_int_equal(h.buckets[STATS_HIST_NBOUNDS - 1], 1);
	assert_int_equal(h.buckets[STATS_HIST_NBOUNDS], 2);
	assert_int_equal(h.count, 6);
	assert_int_equal(h.sum_us, 0 + 50 + 51 + 5000000 + 5000001 + UINT64_MAX / 4);
}

static void test_hist_quantile(void **state)
{
	(void)state;
	struct stats_hist h;
	memset(&h, 0, sizeof(h));
	assert_true(stats_hist_quantile(&h, 0.5) == 0.0);	/* empty */

	/* 100 in (50, 100]: linear inside the bucket */
	for (int i = 0; i < 100; i++)
		stats_hist_observe(&h, 75);
	assert_true(fabs(stats_hist_quantile(&h, 0.5) - 75.0) < 1e-9);
	assert_true(fabs(stats_hist_quantile(&h, 0.99) - 99.5) < 1e-9);
	assert_true(fabs(stats_hist_quantile(&h, 1.0) - 100.0) < 1e-9);
	assert_true(fabs(stats_hist_quantile(&h, 7.0) - 100.0) < 1e-9);	/* clamped */
	assert_true(fabs(stats_hist_quantile(&h, -1.0) - 50.0) < 1e-9);
	assert_true(fabs(stats_hist_quantile(&h, NAN) - 50.0) < 1e-9);

	/* 50 in [0, 50] and 50 in (100, 250]: the empty bucket between is skipped */
	memset(&h, 0, sizeof(h));
	for (int i = 0; i < 50; i++) {
		stats_hist_observe(&h, 10);
		stats_hist_observe(&h, 200);
	}
	assert_true(fabs(stats_hist_quantile(&h, 0.5) - 50.0) < 1e-9);
	assert_true(fabs(stats_hist_quantile(&h, 0.75) - 175.0) < 1e-9);
	assert_true(fabs(stats_hist_quantile(&h, 0.25) - 25.0) < 1e-9);

	/* everything above the last bound: the last finite bound */
	memset(&h, 0, sizeof(h));
	stats_hist_observe(&h, 60000000);
	assert_true(fabs(stats_hist_quantile(&h, 0.5) - 5000000.0) < 1e-9);
	assert_true(fabs(stats_hist_quantile(&h, 0.99) - 5000000.0) < 1e-9);
}

static void test_conn_stats_refcount(void **state)
{
	(void)state;
	struct conn_stats *s = conn_stats_new();
	assert_non_null(s);
	assert_int_equal(s->refcnt, 1);
	assert_int_equal(s->accepted, 0);
	assert_ptr_equal(conn_stats_get(s), s);
	assert_int_equal(s->refcnt, 2);
	stats_add(&s->accepted, 5);
	conn_stats_put(s);
	assert_int_equal(stats_get(&s->accepted), 5);	/* still alive */
	conn_stats_put(s);	/* freed: ASan reports a leak or double free otherwise */
	conn_stats_put(NULL);
	assert_null(conn_stats_get(NULL));
}

/* --- JSON ----------------------------------------------------------------------- */

static void fill_counters(struct fixture *f)
{
	struct rt_app *a0 = f->snap->apps[0];
	stats_add(&a0->stats->accepted, 7);
	stats_add(&a0->stats->active, 2);
	stats_add(&a0->stats->failed, 1);
	stats_add(&a0->stats->bytes_in, 100);
	stats_add(&a0->stats->bytes_out, 12345678901ull);
	for (int i = 0; i < 100; i++)
		stats_hist_observe(&a0->stats->connect_latency, 75);
	stats_add(&a0->targets[1].stats->accepted, 4);
	stats_add(&a0->targets[1].stats->failed, 3);
	stats_add(&a0->targets[1].stats->bytes_in, 40);
	stats_hist_observe(&a0->targets[1].stats->connect_latency, 300);
	stats_hist_observe(&a0->targets[1].stats->connect_latency, 2000);
	stats_add(&a0->targets[1].t->hc_ok, 9);
	stats_add(&a0->targets[1].t->hc_failed, 2);
	stats_add(&stats_global.accepted, 8);
	stats_add(&stats_global.active, 2);
	stats_add(&stats_global.no_app, 1);
	stats_add(&stats_global.reloads_ok, 2);
	stats_add(&stats_global.reloads_failed, 1);
	stats_add(&stats_global.last_reload_us, 1500);
}

static const char *const odd_names[] = { "web", "we\"ird\\name\nwith\ttab", "\xc3\xa9t\xc3\xa9" };

static void test_json_render(void **state)
{
	(void)state;
	reset_global();
	struct fixture *f = fx_make(3, 2, odd_names);
	fill_counters(f);
	struct steer_counters sc = { .v = { 11, 22, 33, 44 } };
	struct sbuf b;
	sbuf_init(&b);
	stats_render_json(&b, f->snap, &sc);
	assert_false(b.oom);
	assert_true(b.len > 0);
	assert_null(memchr(b.data, '\n', b.len));	/* one line, no newline at the end */
	assert_int_equal(b.data[0], '{');
	assert_int_equal(b.data[b.len - 1], '}');

	static const char script[] =
		"import json, sys\n"
		"d = json.load(open(sys.argv[1], encoding='utf-8'))\n"
		"assert d['uptime_s'] == 0 and d['generation'] == 3, d\n"
		"assert d['connections'] == {'accepted': 8, 'active': 2, 'no_app': 1}, d['connections']\n"
		"assert d['reloads'] == {'ok': 2, 'failed': 1, 'last_apply_us': 1500}, d['reloads']\n"
		"assert d['steering'] == {'assigned': 11, 'unmatched': 22, 'refused_no_socket': 33,"
		" 'refused_assign': 44}, d['steering']\n"
		"a = d['apps']\n"
		"assert [x['name'] for x in a] == ['web', 'we\"ird\\\\name\\nwith\\ttab', '\\u00e9t\\u00e9'], a\n"
		"assert [x['id'] for x in a] == [1, 2, 3]\n"
		"w = a[0]\n"
		"assert (w['accepted'], w['active'], w['failed'], w['bytes_in'], w['bytes_out']) =="
		" (7, 2, 1, 100, 12345678901), w\n"
		"assert w['connect_latency_us'] == {'count': 100, 'p50': 75, 'p99': 100}, w\n"
		"t = w['targets']\n"
		"assert [x['target'] for x in t] == ['10.0.0.0:80', '10.0.0.1:80'] and t[0]['up'] is True"
		" and t[1]['up'] is False, t\n"
		"assert (t[1]['connections'], t[1]['active'], t[1]['failed'], t[1]['bytes_in'],"
		" t[1]['bytes_out']) == (4, 0, 3, 40, 0), t[1]\n"
		"assert t[1]['connect_latency_us']['count'] == 2, t[1]\n"
		"assert 250 < t[1]['connect_latency_us']['p50'] <= 500, t[1]\n"
		"assert 1000 < t[1]['connect_latency_us']['p99'] <= 2500, t[1]\n"
		"assert t[1]['health_checks'] == {'ok': 9, 'failed': 2}, t[1]\n"
		"assert a[2]['accepted'] == 0 and len(a[2]['targets']) == 2\n";
	int rc = python_check(script, b.data, b.len);
	if (rc == -1) {
		sbuf_free(&b);
		fx_free(f);
		skip();
	}
	if (rc != 0)
		fprintf(stderr, "JSON was: %s\n", b.data);
	assert_int_equal(rc, 0);

	/* without a snapshot and without steering counters */
	sbuf_reset(&b);
	stats_render_json(&b, NULL, NULL);
	assert_non_null(strstr(b.data, "\"apps\":[]}"));
	assert_null(strstr(b.data, "steering"));
	rc = python_check("import json, sys\n"
			  "d = json.load(open(sys.argv[1]))\n"
			  "assert d['apps'] == [] and 'steering' not in d and d['generation'] == 0\n",
			  b.data, b.len);
	assert_int_equal(rc, 0);
	sbuf_free(&b);
	fx_free(f);
}

/* --- Prometheus ---------------------------------------------------------------------- */

/* Checks the text against the exposition format as far as pandit uses it:
 * every line a comment or `name[{labels}] value`; # HELP then # TYPE once
 * per family, before its samples; a family's samples contiguous; label
 * values properly escaped; histogram buckets cumulative with +Inf equal to
 * _count. Returns the number of sample lines. */
static size_t prom_validate(const char *text, size_t len)
{
	char families[64][96];
	size_t n_fam = 0, samples = 0;
	char cur[96] = "", cur_type[16] = "";
	uint64_t last_bucket = 0, inf_bucket = 0;
	bool in_hist_series = false;
	const char *p = text, *end = text + len;
	assert_true(len > 0 && text[len - 1] == '\n');
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		assert_non_null(nl);
		char line[4096];
		size_t ll = (size_t)(nl - p);
		assert_true(ll < sizeof(line));
		memcpy(line, p, ll);
		line[ll] = '\0';
		p = nl + 1;
		if (strncmp(line, "# HELP ", 7) == 0) {
			char name[96];
			assert_int_equal(sscanf(line + 7, "%95s", name), 1);
			for (size_t i = 0; i < n_fam; i++)
				assert_string_not_equal(families[i], name);	/* once per family */
			assert_true(n_fam < 64);
			strcpy(families[n_fam++], name);
			strcpy(cur, name);
			cur_type[0] = '\0';
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			char name[96], type[16];
			assert_int_equal(sscanf(line + 7, "%95s %15s", name, type), 2);
			assert_string_equal(name, cur);
			assert_true(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
				    !strcmp(type, "histogram"));
			strcpy(cur_type, type);
			continue;
		}
		assert_true(line[0] != '#');
		assert_true(cur_type[0] != '\0');	/* samples only after # TYPE */
		/* metric name */
		size_t i = 0;
		while (line[i] && (line[i] == '_' || line[i] == ':' || (line[i] >= 'a' && line[i] <= 'z') ||
				   (line[i] >= 'A' && line[i] <= 'Z') || (i && line[i] >= '0' && line[i] <= '9')))
			i++;
		assert_true(i > 0);
		char name[128];
		memcpy(name, line, i);
		name[i] = '\0';
		const char *suffix = name + strlen(cur);
		assert_memory_equal(name, cur, strlen(cur));	/* contiguous family */
		bool bucket = false, count = false;
		if (!strcmp(cur_type, "histogram")) {
			bucket = !strcmp(suffix, "_bucket");
			count = !strcmp(suffix, "_count");
			assert_true(bucket || count || !strcmp(suffix, "_sum"));
		} else {
			assert_string_equal(suffix, "");
		}
		/* labels */
		char le[32] = "";
		if (line[i] == '{') {
			i++;
			for (;;) {
				size_t k = i;
				while ((line[i] >= 'a' && line[i] <= 'z') || line[i] == '_')
					i++;
				assert_true(i > k);
				bool is_le = i - k == 2 && !memcmp(line + k, "le", 2);
				assert_int_equal(line[i++], '=');
				assert_int_equal(line[i++], '"');
				size_t v = 0;
				while (line[i] != '"') {
					assert_true(line[i] != '\0');
					if (line[i] == '\\') {
						i++;
						assert_true(line[i] == '\\' || line[i] == '"' || line[i] == 'n');
					}
					if (is_le && v < sizeof(le) - 1)
						le[v++] = line[i];
					i++;
				}
				i++;
				if (line[i] == ',') {
					i++;
					continue;
				}
				assert_int_equal(line[i++], '}');
				break;
			}
		}
		assert_int_equal(line[i++], ' ');
		char *vend;
		double val = strtod(line + i, &vend);
		assert_true(vend > line + i && *vend == '\0');
		assert_true(val >= 0);
		if (bucket) {
			uint64_t v = (uint64_t)val;
			if (!in_hist_series)
				last_bucket = 0;
			assert_true(v >= last_bucket);	/* cumulative */
			last_bucket = v;
			in_hist_series = true;
			if (!strcmp(le, "+Inf")) {
				inf_bucket = v;
				in_hist_series = false;
			}
		}
		if (count)
			assert_int_equal((uint64_t)val, inf_bucket);
		samples++;
	}
	return samples;
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static void test_prometheus_render(void **state)
{
	(void)state;
	reset_global();
	struct fixture *f = fx_make(3, 2, odd_names);
	fill_counters(f);
	struct steer_counters sc = { .v = { 11, 22, 33, 44 } };
	struct sbuf b;
	sbuf_init(&b);
	stats_render_prometheus(&b, f->snap, &sc);
	assert_false(b.oom);
	size_t samples = prom_validate(b.data, b.len);
	/* per app: 3 + 2 (bytes) + 19 (histogram); per target: 1 (up) + 3 + 2 + 19;
	 * 1: the access log drops (the other http families have no app here) */
	size_t want = 1 + 1 + 2 + 1 + 3 + 4 + 3 * (3 + 2 + 19) + 6 * (1 + 3 + 2 + 19) + 1;
	assert_int_equal(samples, want);

	static const char *const lines[] = {
		"# TYPE pandit_connections_accepted_total counter",
		"# TYPE pandit_connect_latency_seconds histogram",
		"pandit_uptime_seconds 0",
		"pandit_config_generation 3",
		"pandit_reloads_total{result=\"ok\"} 2",
		"pandit_reloads_total{result=\"failed\"} 1",
		"pandit_reload_last_apply_seconds 0.0015",
		"pandit_steer_total{outcome=\"assigned\"} 11",
		"pandit_steer_total{outcome=\"refused_assign\"} 44",
		"pandit_connections_accepted_total{app=\"web\"} 7",
		"pandit_connections_active{app=\"web\"} 2",
		"pandit_connections_failed_total{app=\"web\"} 1",
		"pandit_bytes_total{app=\"web\",direction=\"in\"} 100",
		"pandit_bytes_total{app=\"web\",direction=\"out\"} 12345678901",
		"pandit_connect_latency_seconds_bucket{app=\"web\",le=\"0.00005\"} 0",
		"pandit_connect_latency_seconds_bucket{app=\"web\",le=\"0.0001\"} 100",
		"pandit_connect_latency_seconds_bucket{app=\"web\",le=\"2.5\"} 100",
		"pandit_connect_latency_seconds_bucket{app=\"web\",le=\"+Inf\"} 100",
		"pandit_connect_latency_seconds_sum{app=\"web\"} 0.0075",
		"pandit_connect_latency_seconds_count{app=\"web\"} 100",
		"pandit_connections_accepted_total{app=\"we\\\"ird\\\\name\\nwith\ttab\"} 0",
		"pandit_connections_accepted_total{app=\"\xc3\xa9t\xc3\xa9\"} 0",
		"pandit_target_up{app=\"web\",target=\"10.0.0.0:80\"} 1",
		"pandit_target_up{app=\"web\",target=\"10.0.0.1:80\"} 0",
		"pandit_target_connections_accepted_total{app=\"web\",target=\"10.0.0.1:80\"} 4",
		"pandit_target_connections_failed_total{app=\"web\",target=\"10.0.0.1:80\"} 3",
		"pandit_target_bytes_total{app=\"web\",target=\"10.0.0.1:80\",direction=\"in\"} 40",
		"pandit_target_connect_latency_seconds_bucket{app=\"web\",target=\"10.0.0.1:80\",le=\"0.00025\"} 0",
		"pandit_target_connect_latency_seconds_bucket{app=\"web\",target=\"10.0.0.1:80\",le=\"0.0005\"} 1",
		"pandit_target_connect_latency_seconds_bucket{app=\"web\",target=\"10.0.0.1:80\",le=\"0.0025\"} 2",
		"pandit_target_connect_latency_seconds_sum{app=\"web\",target=\"10.0.0.1:80\"} 0.0023",
		"pandit_target_connect_latency_seconds_count{app=\"web\",target=\"10.0.0.1:80\"} 2",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (!has_line(b.data, lines[i]))
			fail_msg("missing line: %s", lines[i]);
	}

	/* no steering counters, no snapshot: the families are still well formed */
	sbuf_reset(&b);
	stats_render_prometheus(&b, NULL, NULL);
	prom_validate(b.data, b.len);
	assert_null(strstr(b.data, "pandit_steer_total"));
	assert_true(has_line(b.data, "# TYPE pandit_connections_active gauge"));
	assert_true(has_line(b.data, "pandit_config_generation 0"));
	sbuf_free(&b);
	fx_free(f);
}

/* Rendering in small steps gives the same text as in one go. */
static void test_incremental_equals_full(void **state)
{
	(void)state;
	reset_global();
	struct fixture *f = fx_make(50, 3, NULL);
	fill_counters(f);
	struct steer_counters sc = { .v = { 1, 2, 3, 4 } };
	for (int fmt = 0; fmt < 2; fmt++) {
		struct sbuf full, part, all;
		sbuf_init(&full);
		sbuf_init(&part);
		sbuf_init(&all);
		if (fmt == STATS_FMT_JSON)
			stats_render_json(&full, f->snap, &sc);
		else
			stats_render_prometheus(&full, f->snap, &sc);
		struct stats_render r;
		stats_render_begin(&r, (enum stats_format)fmt, f->snap, &sc);
		int steps = 0;
		bool done;
		do {
			sbuf_reset(&part);
			done = stats_render_step(&r, &part, 1000);
			sbuf_append(&all, part.data, part.len);
			steps++;
			assert_true(steps < 100000);
		} while (!done);
		assert_true(steps > 10);
		assert_true(stats_render_step(&r, &part, 1000));	/* stays done */
		assert_int_equal(all.len, full.len);
		assert_memory_equal(all.data, full.data, full.len);
		sbuf_free(&full);
		sbuf_free(&part);
		sbuf_free(&all);
	}
	fx_free(f);
}

/* 10,000 apps: both renderings complete, well formed and of the expected size. */
static void test_many_apps(void **state)
{
	(void)state;
	reset_global();
	const size_t n = 10000;
	struct fixture *f = fx_make(n, 2, NULL);
	stats_add(&f->snap->apps[n - 1]->stats->accepted, 42);
	struct sbuf b;
	sbuf_init(&b);
	stats_render_prometheus(&b, f->snap, NULL);
	assert_false(b.oom);
	size_t samples = prom_validate(b.data, b.len);
	assert_int_equal(samples, 1 + 1 + 2 + 1 + 3 + n * (3 + 2 + 19) + 2 * n * (1 + 3 + 2 + 19) + 1);
	assert_true(has_line(b.data, "pandit_connections_accepted_total{app=\"app9999\"} 42"));
	sbuf_reset(&b);
	stats_render_json(&b, f->snap, NULL);
	assert_false(b.oom);
	int rc = python_check("import json, sys\n"
			      "d = json.load(open(sys.argv[1]))\n"
			      "assert len(d['apps']) == 10000\n"
			      "assert d['apps'][9999]['name'] == 'app9999' and d['apps'][9999]['accepted'] == 42\n"
			      "assert all(len(a['targets']) == 2 for a in d['apps'])\n",
			      b.data, b.len);
	assert_true(rc == 0 || rc == -1);
	sbuf_free(&b);
	fx_free(f);
}

/* --- HTTP apps ------------------------------------------------------------------- */

/* Turns app i of f into an http app with the given routes (clusters
 * "default" and "static"); freed by http_unmake. */
static void http_make(struct fixture *f, size_t i, const char *const *hosts, const char *const *paths,
		      uint32_t n_routes)
{
	struct cfg_app *a = &f->cfgs[i];
	a->protocol = PROTO_HTTP;
	a->http.clusters = calloc(2, sizeof(*a->http.clusters));
	assert_non_null(a->http.clusters);
	a->http.clusters[0].name = "default";
	a->http.clusters[1].name = "static";
	a->http.n_clusters = 2;
	a->http.routes = calloc(n_routes ? n_routes : 1, sizeof(*a->http.routes));
	assert_non_null(a->http.routes);
	for (uint32_t r = 0; r < n_routes; r++) {
		a->http.routes[r].host = (char *)hosts[r];
		a->http.routes[r].path = (char *)paths[r];
		a->http.routes[r].cluster = r % 2;
	}
	a->http.n_routes = n_routes;
	f->apps[i].http = http_stats_new(a, NULL, NULL);
	assert_non_null(f->apps[i].http);
}

static void http_unmake(struct fixture *f, size_t i)
{
	free(f->cfgs[i].http.clusters);
	free(f->cfgs[i].http.routes);
	http_stats_put(f->apps[i].http);
	f->apps[i].http = NULL;
}

static const char *const web_hosts[] = { "api.example.com", NULL, "x" };
static const char *const web_paths[] = { "/v1/", "/", "/q\"uo\\te\nnl" };

/* Three apps: "web" http with three routes (the third with a path to
 * escape), the odd-named one http without routes, the third tcp. */
static struct fixture *fx_http(void)
{
	struct fixture *f = fx_make(3, 2, odd_names);
	fill_counters(f);
	http_make(f, 0, web_hosts, web_paths, 3);
	http_make(f, 1, NULL, NULL, 0);
	struct http_app_stats *h = f->apps[0].http;
	for (int i = 0; i < 10; i++)
		http_stats_done(h, 0, 200, 75);
	http_stats_done(h, 0, 503, 300);
	http_stats_done(h, 0, 0, 7000000);
	http_stats_done(h, 1, 304, 2000);
	http_stats_done(h, 2, 101, 40);
	http_stats_done(h, 3, 404, 10);
	stats_add(&h->requests, 15);
	stats_add(&h->bad_requests, 1);
	stats_add(&h->header_timeouts, 2);
	stats_add(&h->upstream_errors, 3);
	stats_add(&h->no_target, 4);
	stats_add(&h->upstream_timeouts, 5);
	stats_add(&h->retries, 6);
	stats_add(&h->upgrades, 7);
	stats_add(&h->upstream_reused, 8);
	stats_add(&h->upstream_new, 9);
	http_stats_done(f->apps[1].http, 0, 400, 10);
	return f;
}

static void fx_http_free(struct fixture *f)
{
	http_unmake(f, 0);
	http_unmake(f, 1);
	fx_free(f);
}

static void test_prometheus_http(void **state)
{
	(void)state;
	reset_global();
	struct fixture *f = fx_http();
	struct sbuf b;
	sbuf_init(&b);
	stats_render_prometheus(&b, f->snap, NULL);
	assert_false(b.oom);
	size_t samples = prom_validate(b.data, b.len);
	/* base (as test_prometheus_render, no steering) + per route slot
	 * (4 of web, 1 of the other): 1 + 6 + 19; per http app: 9 */
	size_t want = 1 + 1 + 2 + 1 + 3 + 3 * (3 + 2 + 19) + 6 * (1 + 3 + 2 + 19) + 1 +
		      5 * (1 + 6 + 19) + 2 * 9;
	assert_int_equal(samples, want);
	char drops[96];
	snprintf(drops, sizeof(drops), "pandit_http_access_log_dropped_total %llu",
		 (unsigned long long)http_log_dropped());
	const char *const lines[] = {
		"# TYPE pandit_http_requests_total counter",
		"# TYPE pandit_http_responses_total counter",
		"# TYPE pandit_http_request_duration_seconds histogram",
		"# TYPE pandit_http_upstream_new_total counter",
		"# TYPE pandit_http_access_log_dropped_total counter",
		"pandit_http_requests_total{app=\"web\",route=\"api.example.com/v1/\"} 12",
		"pandit_http_requests_total{app=\"web\",route=\"*/\"} 1",
		"pandit_http_requests_total{app=\"web\",route=\"x/q\\\"uo\\\\te\\nnl\"} 1",
		"pandit_http_requests_total{app=\"web\",route=\"unrouted\"} 1",
		"pandit_http_requests_total{app=\"we\\\"ird\\\\name\\nwith\ttab\",route=\"unrouted\"} 1",
		"pandit_http_responses_total{app=\"web\",route=\"api.example.com/v1/\",class=\"1xx\"} 0",
		"pandit_http_responses_total{app=\"web\",route=\"api.example.com/v1/\",class=\"2xx\"} 10",
		"pandit_http_responses_total{app=\"web\",route=\"api.example.com/v1/\",class=\"5xx\"} 1",
		"pandit_http_responses_total{app=\"web\",route=\"api.example.com/v1/\",class=\"none\"} 1",
		"pandit_http_responses_total{app=\"web\",route=\"*/\",class=\"3xx\"} 1",
		"pandit_http_responses_total{app=\"web\",route=\"x/q\\\"uo\\\\te\\nnl\",class=\"1xx\"} 1",
		"pandit_http_responses_total{app=\"web\",route=\"unrouted\",class=\"4xx\"} 1",
		"pandit_http_request_duration_seconds_bucket{app=\"web\",route=\"api.example.com/v1/\",le=\"0.00005\"} 0",
		"pandit_http_request_duration_seconds_bucket{app=\"web\",route=\"api.example.com/v1/\",le=\"0.0001\"} 10",
		"pandit_http_request_duration_seconds_bucket{app=\"web\",route=\"api.example.com/v1/\",le=\"0.00025\"} 10",
		"pandit_http_request_duration_seconds_bucket{app=\"web\",route=\"api.example.com/v1/\",le=\"0.0005\"} 11",
		"pandit_http_request_duration_seconds_bucket{app=\"web\",route=\"api.example.com/v1/\",le=\"5\"} 11",
		"pandit_http_request_duration_seconds_bucket{app=\"web\",route=\"api.example.com/v1/\",le=\"+Inf\"} 12",
		"pandit_http_request_duration_seconds_sum{app=\"web\",route=\"api.example.com/v1/\"} 7.00105",
		"pandit_http_request_duration_seconds_count{app=\"web\",route=\"api.example.com/v1/\"} 12",
		"pandit_http_request_duration_seconds_count{app=\"web\",route=\"*/\"} 1",
		"pandit_http_bad_requests_total{app=\"web\"} 1",
		"pandit_http_header_timeouts_total{app=\"web\"} 2",
		"pandit_http_upstream_errors_total{app=\"web\"} 3",
		"pandit_http_no_target_total{app=\"web\"} 4",
		"pandit_http_upstream_timeouts_total{app=\"web\"} 5",
		"pandit_http_retries_total{app=\"web\"} 6",
		"pandit_http_upgrades_total{app=\"web\"} 7",
		"pandit_http_upstream_reused_total{app=\"web\"} 8",
		"pandit_http_upstream_new_total{app=\"web\"} 9",
		"pandit_http_upstream_new_total{app=\"we\\\"ird\\\\name\\nwith\ttab\"} 0",
		drops,
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (!has_line(b.data, lines[i]))
			fail_msg("missing line: %s", lines[i]);
	}
	/* the tcp app has no http series */
	assert_null(strstr(b.data, "pandit_http_requests_total{app=\"\xc3\xa9t\xc3\xa9\""));
	assert_null(strstr(b.data, "pandit_http_retries_total{app=\"\xc3\xa9t\xc3\xa9\""));

	/* in small steps: the same text */
	struct stats_render r;
	struct sbuf part, all;
	sbuf_init(&part);
	sbuf_init(&all);
	stats_render_begin(&r, STATS_FMT_PROMETHEUS, f->snap, NULL);
	size_t steps = 0, longest = 0;
	while (!stats_render_step(&r, &part, 1)) {
		/* a step of limit 1 is one header, one route or one app */
		if (part.len > longest)
			longest = part.len;
		sbuf_append(&all, part.data, part.len);
		sbuf_reset(&part);
		assert_true(++steps < 100000);
	}
	sbuf_append(&all, part.data, part.len);
	assert_int_equal(all.len, b.len);
	assert_memory_equal(all.data, b.data, b.len);
	assert_true(longest < 4096);
	sbuf_free(&part);
	sbuf_free(&all);
	sbuf_free(&b);
	fx_http_free(f);
}

static void test_json_http(void **state)
{
	(void)state;
	reset_global();
	struct fixture *f = fx_http();
	struct sbuf b;
	sbuf_init(&b);
	stats_render_json(&b, f->snap, NULL);
	assert_false(b.oom);
	assert_null(memchr(b.data, '\n', b.len));
	static const char script[] =
		"import json, sys\n"
		"d = json.load(open(sys.argv[1], encoding='utf-8'))\n"
		"a = d['apps']\n"
		"w, o, t = a\n"
		"assert w['protocol'] == 'http' and t['protocol'] == 'tcp' and 'http' not in t, a\n"
		"h = w['http']\n"
		"assert h['requests'] == 15 and h['retries'] == 6 and h['upstream_new'] == 9, h\n"
		"r = h['routes']\n"
		"assert [x['path'] for x in r] == ['/v1/', '/', '/q\"uo\\\\te\\nnl', None], r\n"
		"assert [x['cluster'] for x in r] == ['default', 'static', 'default', None], r\n"
		"assert r[0]['requests'] == 12 and r[0]['responses']['none'] == 1, r[0]\n"
		"assert r[0]['latency_us']['count'] == 12, r[0]\n"
		"assert len(o['http']['routes']) == 1 and o['http']['routes'][0]['requests'] == 1, o\n"
		"assert w['accepted'] == 7 and len(w['targets']) == 2, w\n";
	int rc = python_check(script, b.data, b.len);
	if (rc > 0)
		fprintf(stderr, "JSON was: %s\n", b.data);
	sbuf_free(&b);
	fx_http_free(f);
	if (rc == -1)
		skip();
	assert_int_equal(rc, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hist_buckets),
		cmocka_unit_test(test_hist_quantile),
		cmocka_unit_test(test_conn_stats_refcount),
		cmocka_unit_test(test_json_render),
		cmocka_unit_test(test_prometheus_render),
		cmocka_unit_test(test_incremental_equals_full),
		cmocka_unit_test(test_many_apps),
		cmocka_unit_test(test_prometheus_http),
		cmocka_unit_test(test_json_http),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
