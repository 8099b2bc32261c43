/* stats.c - counters, latency histograms and their JSON and Prometheus renderings. */
#include "stats/stats.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ref.h"
#include "core/ev.h"
#include "kpath/shortcut.h"
#include "kpath/splice.h"
#include "lb/target.h"
#include "proto/foo_stats.h"
#include "kpath/foo_kern.h"
#include "proto/http_log.h"
#include "proto/http_stats.h"
#include "runtime/runtime.h"
#include "steer/steer.h"

struct stats_global stats_global;

static const uint64_t hist_bounds[STATS_HIST_NBOUNDS] = STATS_HIST_BOUNDS_US;

/* --- histograms -------------------------------------------------------------- */

void stats_hist_observe(struct stats_hist *h, uint64_t us)
{
	/* 16 bounds: a linear scan is as fast as a binary search here */
	unsigned i = 0;
	while (i < STATS_HIST_NBOUNDS && us > hist_bounds[i])
		i++;
	stats_add(&h->buckets[i], 1);
	stats_add(&h->sum_us, us);
	stats_add(&h->count, 1);
}

/* A consistent-enough copy of a histogram: the count is the sum of the
 * buckets read, so the +Inf bucket always equals _count even while workers
 * keep observing. */
struct hist_copy {
	uint64_t b[STATS_HIST_NBOUNDS + 1];
	uint64_t count, sum_us;
};

static void hist_read(const struct stats_hist *h, struct hist_copy *c)
{
	c->count = 0;
	for (unsigned i = 0; i <= STATS_HIST_NBOUNDS; i++) {
		c->b[i] = stats_get(&h->buckets[i]);
		c->count += c->b[i];
	}
	c->sum_us = stats_get(&h->sum_us);
}

static double hist_copy_quantile(const struct hist_copy *c, double q)
{
	if (c->count == 0)
		return 0.0;
	if (!(q >= 0.0))	/* NaN too */
		q = 0.0;
	if (q > 1.0)
		q = 1.0;
	double rank = q * (double)c->count;
	uint64_t below = 0;
	for (unsigned i = 0; i <= STATS_HIST_NBOUNDS; i++) {
		if (c->b[i] == 0)
			continue;
		if ((double)(below + c->b[i]) >= rank) {
			/* like Prometheus' histogram_quantile(): the +Inf bucket has no
			 * upper bound to interpolate to, so answer the last finite one */
			if (i == STATS_HIST_NBOUNDS)
				return (double)hist_bounds[STATS_HIST_NBOUNDS - 1];
			double lo = i ? (double)hist_bounds[i - 1] : 0.0;
			double hi = (double)hist_bounds[i];
			double frac = (rank - (double)below) / (double)c->b[i];
			if (frac < 0.0)
				frac = 0.0;
			return lo + (hi - lo) * frac;
		}
		below += c->b[i];
	}
	return (double)hist_bounds[STATS_HIST_NBOUNDS - 1];	/* not reached */
}

double stats_hist_quantile(const struct stats_hist *h, double q)
{
	struct hist_copy c;
	hist_read(h, &c);
	return hist_copy_quantile(&c, q);
}

/* --- per app / per target counters ------------------------------------------ */

struct conn_stats *conn_stats_new(void)
{
	struct conn_stats *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	atomic_init(&s->refcnt, 1);
	return s;
}

struct conn_stats *conn_stats_get(struct conn_stats *s)
{
	if (s)
		ref_get(&s->refcnt);
	return s;
}

void conn_stats_put(struct conn_stats *s)
{
	if (s && ref_put(&s->refcnt))
		free(s);
}

/* --- shared formatting helpers ------------------------------------------------ */

static void put_u64(struct sbuf *out, uint64_t v)
{
	char buf[24];
	char *p = buf + sizeof(buf);
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sbuf_append(out, p, (size_t)(buf + sizeof(buf) - p));
}

/* Microseconds as decimal seconds, exact and without exponent ("0.00005",
 * "2.5", "1"): Prometheus parses either form, people read this one. buf
 * holds at least 32 bytes; returns the length written (NUL not counted). */
static size_t fmt_us_as_s(char *buf, uint64_t us)
{
	char tmp[24];
	char *p = tmp + sizeof(tmp);
	uint64_t whole = us / 1000000, frac = us % 1000000;
	do {
		*--p = (char)('0' + whole % 10);
		whole /= 10;
	} while (whole);
	size_t n = (size_t)(tmp + sizeof(tmp) - p);
	memcpy(buf, p, n);
	if (frac) {
		buf[n] = '.';
		for (int i = 6; i >= 1; i--) {
			buf[n + (size_t)i] = (char)('0' + frac % 10);
			frac /= 10;
		}
		n += 7;
		while (buf[n - 1] == '0')
			n--;
	}
	buf[n] = '\0';
	return n;
}

static void put_us_as_s(struct sbuf *out, uint64_t us)
{
	char buf[32];
	sbuf_append(out, buf, fmt_us_as_s(buf, us));
}

#define LIT(out, s) sbuf_append((out), (s), sizeof(s) - 1)

static uint64_t uptime_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	uint64_t start = stats_global.started_ns;
	if (!start || start > now)
		return 0;
	return (now - start) / 1000;
}

static uint64_t generation(const struct stats_render *r)
{
	return r->snap ? r->snap->generation : stats_get(&stats_global.generation);
}

/* Counters of apps or targets not wired yet read as zero rather than crash. */
static const struct conn_stats zero_stats;

static const struct conn_stats *app_stats(const struct rt_app *a)
{
	return a->stats ? a->stats : &zero_stats;
}

static const struct conn_stats *tgt_stats(const struct rt_app_target *t)
{
	return t->stats ? t->stats : &zero_stats;
}

static const char *app_name(const struct rt_app *a)
{
	return a->cfg && a->cfg->name ? a->cfg->name : "";
}

static const char *tgt_name(const struct rt_app_target *t)
{
	return t->t && t->t->name ? t->t->name : "";
}

static bool tgt_up(const struct rt_app_target *t)
{
	return t->t && atomic_load_explicit(&t->t->up, memory_order_relaxed);
}

static size_t n_apps(const struct stats_render *r)
{
	return r->snap ? r->snap->n_apps : 0;
}

/* --- JSON ------------------------------------------------------------------------ */

enum { JSON_HEAD = 0, JSON_APPS, JSON_TAIL, JSON_END };

static void json_kv(struct sbuf *out, const char *key_lit_with_comma, uint64_t v)
{
	sbuf_puts(out, key_lit_with_comma);
	put_u64(out, v);
}

static void json_latency(struct sbuf *out, const struct stats_hist *h)
{
	struct hist_copy c;
	hist_read(h, &c);
	json_kv(out, "\"connect_latency_us\":{\"count\":", c.count);
	json_kv(out, ",\"p50\":", (uint64_t)(hist_copy_quantile(&c, 0.50) + 0.5));
	json_kv(out, ",\"p99\":", (uint64_t)(hist_copy_quantile(&c, 0.99) + 0.5));
	LIT(out, "}");
}

/* The app's Foo counters as readers see them: what the userspace parser
 * counted plus what the kernel framer counted (src/kpath/foo_kern.h), in
 * *tmp (heap: windows are a few KiB) when the kernel counted for the app,
 * else a->foo itself. NULL when out of memory. */
static const struct foo_app_stats *foo_view(const struct rt_app *a, struct foo_app_stats **tmp,
					    uint64_t now)
{
	*tmp = NULL;
	if (!atomic_load_explicit(&a->foo->kslot, memory_order_acquire))
		return a->foo;
	if (!(*tmp = malloc(sizeof(**tmp))))
		return NULL;
	foo_app_stats_init(*tmp);
	foo_app_stats_accumulate(*tmp, a->foo, now);
	kfoo_accumulate(*tmp, a->foo, now);
	return *tmp;
}

/* The Foo message counters of every foo app together: the fields the Foo
 * proxy's statistics line has always had (msg_total ... response_rate_10s)
 * open the object, whatever else follows. */
static void json_foo_totals(struct stats_render *r, struct sbuf *out)
{
	struct foo_app_stats *sum = malloc(sizeof(*sum));
	if (!sum) {
		out->oom = true;
		return;
	}
	foo_app_stats_init(sum);
	uint64_t now = ev_now_ns();
	for (size_t i = 0; i < n_apps(r); i++) {
		if (r->snap->apps[i]->foo) {
			foo_app_stats_accumulate(sum, r->snap->apps[i]->foo, now);
			kfoo_accumulate(sum, r->snap->apps[i]->foo, now);
		}
	}
	/* only the classic fields here: the rest of the Foo counters are per
	 * app ("foo" in each app), where their names cannot clash */
	json_kv(out, "\"msg_total\":", stats_get(&sum->msg_total));
	json_kv(out, ",\"msg_req\":", stats_get(&sum->msg_req));
	json_kv(out, ",\"msg_ack\":", stats_get(&sum->msg_ack));
	json_kv(out, ",\"msg_nak\":", stats_get(&sum->msg_nak));
	sbuf_printf(out, ",\"request_rate_1s\":%.3f,\"request_rate_10s\":%.3f"
			 ",\"response_rate_1s\":%.3f,\"response_rate_10s\":%.3f",
		    stats_win_rate(&sum->req_win, now, 1000000000ull),
		    stats_win_rate(&sum->req_win, now, 10000000000ull),
		    stats_win_rate(&sum->resp_win, now, 1000000000ull),
		    stats_win_rate(&sum->resp_win, now, 10000000000ull));
	free(sum);
}

static void json_head(struct stats_render *r, struct sbuf *out)
{
	LIT(out, "{");
	json_foo_totals(r, out);
	json_kv(out, ",\"uptime_s\":", uptime_us() / 1000000);
	json_kv(out, ",\"generation\":", generation(r));
	json_kv(out, ",\"connections\":{\"accepted\":", stats_get(&stats_global.accepted));
	json_kv(out, ",\"active\":", stats_get(&stats_global.active));
	json_kv(out, ",\"no_app\":", stats_get(&stats_global.no_app));
	json_kv(out, "},\"reloads\":{\"ok\":", stats_get(&stats_global.reloads_ok));
	json_kv(out, ",\"failed\":", stats_get(&stats_global.reloads_failed));
	json_kv(out, ",\"last_apply_us\":", stats_get(&stats_global.last_reload_us));
	LIT(out, "}");
	if (r->steer) {
		json_kv(out, ",\"steering\":{\"assigned\":", r->steer->v[PANDIT_STEER_ASSIGNED]);
		json_kv(out, ",\"unmatched\":", r->steer->v[PANDIT_STEER_PASS_UNMATCHED]);
		json_kv(out, ",\"refused_no_socket\":", r->steer->v[PANDIT_STEER_DROP_NO_SOCKET]);
		json_kv(out, ",\"refused_assign\":", r->steer->v[PANDIT_STEER_DROP_ASSIGN]);
		LIT(out, "}");
	}
	kpath_render_json(out, stats_get(&stats_global.active));
	shortcut_render_json(out);	/* inside kernel_path, which ends here */
	LIT(out, "}");
	LIT(out, ",\"apps\":[");
}

static void json_target(struct sbuf *out, const struct rt_app_target *t)
{
	const struct conn_stats *s = tgt_stats(t);
	LIT(out, "{\"target\":");
	sbuf_json_str(out, tgt_name(t));
	if (tgt_up(t))
		LIT(out, ",\"up\":true");
	else
		LIT(out, ",\"up\":false");
	json_kv(out, ",\"connections\":", stats_get(&s->accepted));
	json_kv(out, ",\"active\":", stats_get(&s->active));
	json_kv(out, ",\"failed\":", stats_get(&s->failed));
	json_kv(out, ",\"bytes_in\":", stats_get(&s->bytes_in));
	json_kv(out, ",\"bytes_out\":", stats_get(&s->bytes_out));
	LIT(out, ",");
	json_latency(out, &s->connect_latency);
	if (t->t) {
		json_kv(out, ",\"health_checks\":{\"ok\":", stats_get(&t->t->hc_ok));
		json_kv(out, ",\"failed\":", stats_get(&t->t->hc_failed));
		LIT(out, "}");
	}
	LIT(out, "}");
}

static void json_app(struct sbuf *out, const struct rt_app *a, bool first)
{
	kpath_fold_app(a);	/* bytes the kernel moved for spliced connections */
	const struct conn_stats *s = app_stats(a);
	if (!first)
		LIT(out, ",");
	LIT(out, "{\"name\":");
	sbuf_json_str(out, app_name(a));
	json_kv(out, ",\"id\":", a->id);
	json_kv(out, ",\"accepted\":", stats_get(&s->accepted));
	json_kv(out, ",\"active\":", stats_get(&s->active));
	json_kv(out, ",\"failed\":", stats_get(&s->failed));
	json_kv(out, ",\"bytes_in\":", stats_get(&s->bytes_in));
	json_kv(out, ",\"bytes_out\":", stats_get(&s->bytes_out));
	LIT(out, ",");
	json_latency(out, &s->connect_latency);
	LIT(out, ",\"protocol\":");
	sbuf_json_str(out, cfg_protocol_name(a->cfg ? a->cfg->protocol : PROTO_TCP));
	if (a->foo) {
		uint64_t now = ev_now_ns();
		struct foo_app_stats *tmp;
		const struct foo_app_stats *f = foo_view(a, &tmp, now);
		LIT(out, ",\"foo\":{");
		if (f)
			foo_stats_render_json_fields(out, f, now);
		else
			out->oom = true;
		LIT(out, "}");
		free(tmp);
	}
	if (a->http) {
		LIT(out, ",");
		http_stats_json(out, a->cfg, a->http);
	}
	LIT(out, ",\"targets\":[");
	for (uint32_t i = 0; i < a->n_targets; i++) {
		if (i)
			LIT(out, ",");
		json_target(out, &a->targets[i]);
	}
	LIT(out, "]}");
}

static bool json_step(struct stats_render *r, struct sbuf *out, size_t limit)
{
	while (r->stage != JSON_END && out->len < limit) {
		switch (r->stage) {
		case JSON_HEAD:
			json_head(r, out);
			r->stage = JSON_APPS;
			break;
		case JSON_APPS:
			if (r->app >= n_apps(r)) {
				r->stage = JSON_TAIL;
				break;
			}
			json_app(out, r->snap->apps[r->app], r->app == 0);
			r->app++;
			break;
		case JSON_TAIL:
			LIT(out, "]}");
			r->stage = JSON_END;
			break;
		}
	}
	return r->stage == JSON_END;
}

/* --- Prometheus ------------------------------------------------------------------ */

/* Label value escaping of the text exposition format: backslash, double
 * quote and line feed. */
static void prom_label_value(struct sbuf *out, const char *s)
{
	const char *run = s;
	for (; *s; s++) {
		const char *esc = NULL;
		switch (*s) {
		case '\\': esc = "\\\\"; break;
		case '"': esc = "\\\""; break;
		case '\n': esc = "\\n"; break;
		default: continue;
		}
		sbuf_append(out, run, (size_t)(s - run));
		sbuf_append(out, esc, 2);
		run = s + 1;
	}
	sbuf_append(out, run, (size_t)(s - run));
}

/* {app="..",<k2>="..",<extra>}, each part optional (nothing at all when
 * all are NULL); k2 is the second label's name (target, route), extra a
 * pre-escaped `key="value"` pair. */
static void prom_labels_k(struct sbuf *out, const char *app, const char *k2, const char *v2,
			  const char *extra)
{
	if (!app && !v2 && !extra)
		return;
	char sep = '{';
	if (app) {
		sbuf_append(out, &sep, 1);
		LIT(out, "app=\"");
		prom_label_value(out, app);
		LIT(out, "\"");
		sep = ',';
	}
	if (v2) {
		sbuf_append(out, &sep, 1);
		sbuf_puts(out, k2);
		LIT(out, "=\"");
		prom_label_value(out, v2);
		LIT(out, "\"");
		sep = ',';
	}
	if (extra) {
		sbuf_append(out, &sep, 1);
		sbuf_puts(out, extra);
	}
	LIT(out, "}");
}

/* One sample line with an integer value. */
static void prom_sample_k(struct sbuf *out, const char *name, const char *suffix, const char *app,
			  const char *k2, const char *v2, const char *extra, uint64_t v)
{
	sbuf_puts(out, name);
	if (suffix)
		sbuf_puts(out, suffix);
	prom_labels_k(out, app, k2, v2, extra);
	LIT(out, " ");
	put_u64(out, v);
	LIT(out, "\n");
}

static void prom_sample(struct sbuf *out, const char *name, const char *suffix,
			const char *app, const char *target, const char *extra, uint64_t v)
{
	prom_sample_k(out, name, suffix, app, "target", target, extra, v);
}

static void prom_hist_k(struct sbuf *out, const char *name, const char *app, const char *k2,
			const char *v2, const struct stats_hist *h)
{
	struct hist_copy c;
	hist_read(h, &c);
	uint64_t cum = 0;
	char le[48];
	for (unsigned i = 0; i <= STATS_HIST_NBOUNDS; i++) {
		cum += c.b[i];
		if (i < STATS_HIST_NBOUNDS) {
			memcpy(le, "le=\"", 4);
			size_t n = 4 + fmt_us_as_s(le + 4, hist_bounds[i]);
			le[n] = '"';
			le[n + 1] = '\0';
			prom_sample_k(out, name, "_bucket", app, k2, v2, le, cum);
		} else {
			prom_sample_k(out, name, "_bucket", app, k2, v2, "le=\"+Inf\"", cum);
		}
	}
	sbuf_puts(out, name);
	LIT(out, "_sum");
	prom_labels_k(out, app, k2, v2, NULL);
	LIT(out, " ");
	put_us_as_s(out, c.sum_us);
	LIT(out, "\n");
	prom_sample_k(out, name, "_count", app, k2, v2, NULL, c.count);
}

static void prom_hist(struct sbuf *out, const char *name, const char *app, const char *target,
		      const struct stats_hist *h)
{
	prom_hist_k(out, name, app, "target", target, h);
}

enum prom_scope { SCOPE_GLOBAL, SCOPE_STEER, SCOPE_APP, SCOPE_TARGET };

struct prom_family {
	const char *name;
	const char *type;
	const char *help;
	enum prom_scope scope;
	/* a is NULL for global families, t for app families */
	void (*emit)(struct sbuf *out, const struct stats_render *r, const struct prom_family *f,
		     const struct rt_app *a, const struct rt_app_target *t);
};

#define EMIT(fn) static void fn(struct sbuf *out, const struct stats_render *r, \
				const struct prom_family *f, const struct rt_app *a, \
				const struct rt_app_target *t)

EMIT(emit_uptime)
{
	(void)r; (void)a; (void)t;
	sbuf_puts(out, f->name);
	LIT(out, " ");
	put_us_as_s(out, uptime_us());
	LIT(out, "\n");
}

EMIT(emit_generation)
{
	(void)a; (void)t;
	prom_sample(out, f->name, NULL, NULL, NULL, NULL, generation(r));
}

EMIT(emit_reloads)
{
	(void)r; (void)a; (void)t;
	prom_sample(out, f->name, NULL, NULL, NULL, "result=\"ok\"", stats_get(&stats_global.reloads_ok));
	prom_sample(out, f->name, NULL, NULL, NULL, "result=\"failed\"",
		    stats_get(&stats_global.reloads_failed));
}

EMIT(emit_reload_last)
{
	(void)r; (void)a; (void)t;
	sbuf_puts(out, f->name);
	LIT(out, " ");
	put_us_as_s(out, stats_get(&stats_global.last_reload_us));
	LIT(out, "\n");
}

EMIT(emit_g_accepted)
{
	(void)r; (void)a; (void)t;
	prom_sample(out, f->name, NULL, NULL, NULL, NULL, stats_get(&stats_global.accepted));
}

EMIT(emit_g_active)
{
	(void)r; (void)a; (void)t;
	prom_sample(out, f->name, NULL, NULL, NULL, NULL, stats_get(&stats_global.active));
	kpath_render_prometheus(out, stats_get(&stats_global.active));	/* its own families */
	shortcut_render_prometheus(out);
}

EMIT(emit_g_no_app)
{
	(void)r; (void)a; (void)t;
	prom_sample(out, f->name, NULL, NULL, NULL, NULL, stats_get(&stats_global.no_app));
}

EMIT(emit_steer)
{
	(void)a; (void)t;
	static const char *const outcome[PANDIT_STEER_STAT_MAX] = {
		[PANDIT_STEER_ASSIGNED] = "outcome=\"assigned\"",
		[PANDIT_STEER_PASS_UNMATCHED] = "outcome=\"unmatched\"",
		[PANDIT_STEER_DROP_NO_SOCKET] = "outcome=\"refused_no_socket\"",
		[PANDIT_STEER_DROP_ASSIGN] = "outcome=\"refused_assign\"",
	};
	for (unsigned i = 0; i < PANDIT_STEER_STAT_MAX; i++)
		if (outcome[i])
			prom_sample(out, f->name, NULL, NULL, NULL, outcome[i], r->steer->v[i]);
}

/* The per app and per target families read the same counters. */
static const struct conn_stats *scope_stats(const struct rt_app *a, const struct rt_app_target *t)
{
	return t ? tgt_stats(t) : app_stats(a);
}

static const char *scope_target(const struct rt_app_target *t)
{
	return t ? tgt_name(t) : NULL;
}

EMIT(emit_accepted)
{
	(void)r;
	prom_sample(out, f->name, NULL, app_name(a), scope_target(t), NULL,
		    stats_get(&scope_stats(a, t)->accepted));
}

EMIT(emit_active)
{
	(void)r;
	prom_sample(out, f->name, NULL, app_name(a), scope_target(t), NULL,
		    stats_get(&scope_stats(a, t)->active));
}

EMIT(emit_failed)
{
	(void)r;
	prom_sample(out, f->name, NULL, app_name(a), scope_target(t), NULL,
		    stats_get(&scope_stats(a, t)->failed));
}

EMIT(emit_bytes)
{
	(void)r;
	if (!t)
		kpath_fold_app(a);	/* bytes the kernel moved for spliced connections */
	const struct conn_stats *s = scope_stats(a, t);
	prom_sample(out, f->name, NULL, app_name(a), scope_target(t), "direction=\"in\"",
		    stats_get(&s->bytes_in));
	prom_sample(out, f->name, NULL, app_name(a), scope_target(t), "direction=\"out\"",
		    stats_get(&s->bytes_out));
}

EMIT(emit_latency)
{
	(void)r;
	prom_hist(out, f->name, app_name(a), scope_target(t), &scope_stats(a, t)->connect_latency);
}

EMIT(emit_up)
{
	(void)r;
	prom_sample(out, f->name, NULL, app_name(a), tgt_name(t), NULL, tgt_up(t));
}

static const struct prom_family prom_families[] = {
	{ "pandit_uptime_seconds", "gauge", "Seconds since pandit started.",
	  SCOPE_GLOBAL, emit_uptime },
	{ "pandit_config_generation", "gauge", "Generation of the configuration in force (1 for the first).",
	  SCOPE_GLOBAL, emit_generation },
	{ "pandit_reloads_total", "counter", "Configuration reloads by result.",
	  SCOPE_GLOBAL, emit_reloads },
	{ "pandit_reload_last_apply_seconds", "gauge", "Time taken to apply the last good reload.",
	  SCOPE_GLOBAL, emit_reload_last },
	{ "pandit_process_connections_accepted_total", "counter",
	  "Client connections accepted, all apps together.", SCOPE_GLOBAL, emit_g_accepted },
	{ "pandit_process_connections_active", "gauge",
	  "Client connections open now, all apps together.", SCOPE_GLOBAL, emit_g_active },
	{ "pandit_connections_no_app_total", "counter",
	  "Accepted connections whose address and port matched no app (closed).",
	  SCOPE_GLOBAL, emit_g_no_app },
	{ "pandit_steer_total", "counter", "Connections seen by the sk_lookup program, by outcome.",
	  SCOPE_STEER, emit_steer },
	{ "pandit_connections_accepted_total", "counter", "Client connections accepted by the app.",
	  SCOPE_APP, emit_accepted },
	{ "pandit_connections_active", "gauge", "Client connections of the app open now.",
	  SCOPE_APP, emit_active },
	{ "pandit_connections_failed_total", "counter",
	  "Client connections of the app closed because no target could be reached.",
	  SCOPE_APP, emit_failed },
	{ "pandit_bytes_total", "counter",
	  "Bytes proxied by the app; in: client to target, out: target to client.",
	  SCOPE_APP, emit_bytes },
	{ "pandit_connect_latency_seconds", "histogram",
	  "Time from accepting a client to the connection to its target being established.",
	  SCOPE_APP, emit_latency },
	{ "pandit_target_up", "gauge", "1 when the target is considered healthy.",
	  SCOPE_TARGET, emit_up },
	{ "pandit_target_connections_accepted_total", "counter",
	  "Connections established to the target for the app.", SCOPE_TARGET, emit_accepted },
	{ "pandit_target_connections_active", "gauge",
	  "Connections of the app to the target open now.", SCOPE_TARGET, emit_active },
	{ "pandit_target_connections_failed_total", "counter",
	  "Failed connection attempts of the app to the target.", SCOPE_TARGET, emit_failed },
	{ "pandit_target_bytes_total", "counter",
	  "Bytes proxied by the app through the target; in: client to target, out: target to client.",
	  SCOPE_TARGET, emit_bytes },
	{ "pandit_target_connect_latency_seconds", "histogram",
	  "Time to establish a connection of the app to the target.", SCOPE_TARGET, emit_latency },
};

#define PROM_N_FAMILIES (sizeof(prom_families) / sizeof(prom_families[0]))

static void prom_next_family(struct stats_render *r)
{
	r->stage++;
	r->header_done = false;
	r->app = r->target = 0;
}

/* The Foo families follow the table: a header each, then every foo app. */
static void prom_foo_step(struct stats_render *r, struct sbuf *out)
{
	unsigned fam = r->stage - (unsigned)PROM_N_FAMILIES;
	if (!r->header_done) {
		foo_stats_prom_header(out, fam);
		r->header_done = true;
		return;
	}
	while (r->app < n_apps(r) && !r->snap->apps[r->app]->foo)
		r->app++;
	if (r->app >= n_apps(r)) {
		prom_next_family(r);
		return;
	}
	const struct rt_app *a = r->snap->apps[r->app++];
	struct sbuf label;
	sbuf_init(&label);
	prom_label_value(&label, app_name(a));
	uint64_t now = ev_now_ns();
	struct foo_app_stats *tmp;
	const struct foo_app_stats *f = foo_view(a, &tmp, now);
	if (label.oom || !f)
		out->oom = true;
	else
		foo_stats_prom_samples(out, fam, label.data ? label.data : "", f, now);
	free(tmp);
	sbuf_free(&label);
}

/* The HTTP families follow the Foo ones. Route families have one series
 * (or one histogram) per route of every http app, the unrouted slot last;
 * app families one per http app; the global one a single sample. */
enum http_scope { HSCOPE_ROUTE, HSCOPE_APP, HSCOPE_GLOBAL };

struct http_family {
	const char *name, *type, *help;
	enum http_scope scope;
	size_t off;	/* HSCOPE_APP: offset of the counter in struct http_app_stats */
};

#define HTTP_APP_FAMILY(name, field, help) \
	{ name, "counter", help, HSCOPE_APP, offsetof(struct http_app_stats, field) }

static const struct http_family http_families[] = {
	{ "pandit_http_requests_total", "counter",
	  "HTTP requests finished on the route (route unrouted: no route matched, or refused before routing).",
	  HSCOPE_ROUTE, 0 },
	{ "pandit_http_responses_total", "counter",
	  "HTTP responses sent to clients by status class (pandit's own answers included); none: no response.",
	  HSCOPE_ROUTE, 0 },
	{ "pandit_http_request_duration_seconds", "histogram",
	  "Time from a request head received to its response complete.", HSCOPE_ROUTE, 0 },
	HTTP_APP_FAMILY("pandit_http_bad_requests_total", bad_requests,
			"HTTP requests refused by the parser (400, 414, 417, 431, 501, 505)."),
	HTTP_APP_FAMILY("pandit_http_header_timeouts_total", header_timeouts,
			"HTTP requests whose head did not arrive in time (408)."),
	HTTP_APP_FAMILY("pandit_http_upstream_errors_total", upstream_errors,
			"HTTP requests answered 502 (upstream failed or sent a bad response)."),
	HTTP_APP_FAMILY("pandit_http_no_target_total", no_target,
			"HTTP requests answered 503 (no target available)."),
	HTTP_APP_FAMILY("pandit_http_upstream_timeouts_total", upstream_timeouts,
			"HTTP requests answered 504 (no response head from upstream in time)."),
	HTTP_APP_FAMILY("pandit_http_retries_total", retries,
			"HTTP requests sent again to another target."),
	HTTP_APP_FAMILY("pandit_http_upgrades_total", upgrades,
			"HTTP connections turned into tunnels (101 Switching Protocols)."),
	HTTP_APP_FAMILY("pandit_http_upstream_reused_total", upstream_reused,
			"HTTP requests sent on a pooled upstream connection."),
	HTTP_APP_FAMILY("pandit_http_upstream_new_total", upstream_new,
			"HTTP requests that needed a new upstream connection."),
	{ "pandit_http_access_log_dropped_total", "counter",
	  "Access log lines dropped (log file not keeping up, or failing), all apps together.",
	  HSCOPE_GLOBAL, 0 },
};

#define HTTP_N_FAMILIES (sizeof(http_families) / sizeof(http_families[0]))
#define PROM_HTTP_FIRST (PROM_N_FAMILIES + FOO_PROM_N_FAMILIES)
#define PROM_END (PROM_HTTP_FIRST + HTTP_N_FAMILIES)

static void http_route_samples(struct sbuf *out, const struct http_family *f, const struct rt_app *a,
			       uint32_t route)
{
	struct sbuf label;
	sbuf_init(&label);
	http_route_label(&label, a->cfg, route);
	if (label.oom) {
		out->oom = true;
		sbuf_free(&label);
		return;
	}
	const char *rl = label.data ? label.data : "";
	const struct http_route_stats *rs = &a->http->routes[route];
	switch (f - http_families) {
	case 0:
		prom_sample_k(out, f->name, NULL, app_name(a), "route", rl, NULL, stats_get(&rs->requests));
		break;
	case 1: {
		static const char *const cls[6] = {
			"class=\"none\"", "class=\"1xx\"", "class=\"2xx\"",
			"class=\"3xx\"", "class=\"4xx\"", "class=\"5xx\"",
		};
		for (unsigned i = 1; i <= 6; i++)
			prom_sample_k(out, f->name, NULL, app_name(a), "route", rl, cls[i % 6],
				      stats_get(&rs->responses[i % 6]));
		break;
	}
	default:
		prom_hist_k(out, f->name, app_name(a), "route", rl, &rs->latency);
		break;
	}
	sbuf_free(&label);
}

/* "# HELP name help" and "# TYPE name type" lines of a family. */
static void prom_header(struct sbuf *out, const char *name, const char *help, const char *type)
{
	LIT(out, "# HELP ");
	sbuf_puts(out, name);
	LIT(out, " ");
	sbuf_puts(out, help);
	LIT(out, "\n# TYPE ");
	sbuf_puts(out, name);
	LIT(out, " ");
	sbuf_puts(out, type);
	LIT(out, "\n");
}

/* One step of the HTTP families: the header, then one route (route
 * families) or one app (app families) per call. */
static void prom_http_step(struct stats_render *r, struct sbuf *out)
{
	const struct http_family *f = &http_families[r->stage - PROM_HTTP_FIRST];
	if (!r->header_done) {
		prom_header(out, f->name, f->help, f->type);
		r->header_done = true;
		return;
	}
	if (f->scope == HSCOPE_GLOBAL) {
		prom_sample_k(out, f->name, NULL, NULL, NULL, NULL, NULL, http_log_dropped());
		prom_next_family(r);
		return;
	}
	while (r->app < n_apps(r) && !r->snap->apps[r->app]->http)
		r->app++;
	if (r->app >= n_apps(r)) {
		prom_next_family(r);
		return;
	}
	const struct rt_app *a = r->snap->apps[r->app];
	if (f->scope == HSCOPE_APP) {
		const _Atomic uint64_t *c = (const _Atomic uint64_t *)((const char *)a->http + f->off);
		prom_sample_k(out, f->name, NULL, app_name(a), NULL, NULL, NULL, stats_get(c));
		r->app++;
		return;
	}
	http_route_samples(out, f, a, (uint32_t)r->target);
	if (r->target++ >= a->http->n_routes) {
		r->app++;
		r->target = 0;
	}
}

static bool prom_step(struct stats_render *r, struct sbuf *out, size_t limit)
{
	while (r->stage < PROM_N_FAMILIES && out->len < limit) {
		const struct prom_family *f = &prom_families[r->stage];
		if (f->scope == SCOPE_STEER && !r->steer) {
			prom_next_family(r);
			continue;
		}
		if (!r->header_done) {
			prom_header(out, f->name, f->help, f->type);
			r->header_done = true;
			continue;
		}
		switch (f->scope) {
		case SCOPE_GLOBAL:
		case SCOPE_STEER:
			f->emit(out, r, f, NULL, NULL);
			prom_next_family(r);
			break;
		case SCOPE_APP:
			if (r->app >= n_apps(r)) {
				prom_next_family(r);
				break;
			}
			f->emit(out, r, f, r->snap->apps[r->app], NULL);
			r->app++;
			break;
		case SCOPE_TARGET: {
			if (r->app >= n_apps(r)) {
				prom_next_family(r);
				break;
			}
			const struct rt_app *a = r->snap->apps[r->app];
			if (r->target >= a->n_targets) {
				r->app++;
				r->target = 0;
				break;
			}
			f->emit(out, r, f, a, &a->targets[r->target]);
			r->target++;
			break;
		}
		}
	}
	while (r->stage >= PROM_N_FAMILIES && r->stage < PROM_HTTP_FIRST && out->len < limit)
		prom_foo_step(r, out);
	while (r->stage >= PROM_HTTP_FIRST && r->stage < PROM_END && out->len < limit)
		prom_http_step(r, out);
	return r->stage >= PROM_END;
}

/* --- entry points -------------------------------------------------------------- */

void stats_render_begin(struct stats_render *r, enum stats_format fmt,
			const struct rt_snapshot *snap, const struct steer_counters *steer)
{
	memset(r, 0, sizeof(*r));
	r->fmt = fmt;
	r->snap = snap;
	r->steer = steer;
}

bool stats_render_step(struct stats_render *r, struct sbuf *out, size_t limit)
{
	if (!r->done)
		r->done = r->fmt == STATS_FMT_JSON ? json_step(r, out, limit) : prom_step(r, out, limit);
	return r->done;
}

void stats_render_json(struct sbuf *out, const struct rt_snapshot *snap,
		       const struct steer_counters *steer)
{
	struct stats_render r;
	stats_render_begin(&r, STATS_FMT_JSON, snap, steer);
	stats_render_step(&r, out, SIZE_MAX);
}

void stats_render_prometheus(struct sbuf *out, const struct rt_snapshot *snap,
			     const struct steer_counters *steer)
{
	struct stats_render r;
	stats_render_begin(&r, STATS_FMT_PROMETHEUS, snap, steer);
	stats_render_step(&r, out, SIZE_MAX);
}
