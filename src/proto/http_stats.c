/* http_stats.c - per-route HTTP counters and latency histograms of an http app, carried across reloads. */
#include "proto/http_stats.h"

#include <stdlib.h>
#include <string.h>

#include "core/ref.h"
#include "core/sbuf.h"

static size_t stats_size(uint32_t n_routes)
{
	return sizeof(struct http_app_stats) + ((size_t)n_routes + 1) * sizeof(struct http_route_stats);
}

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* The name of the cluster route r goes to, or NULL when it names none. */
static const char *route_cluster(const struct cfg_app *a, const struct cfg_http_route *r)
{
	if (r->cluster >= a->http.n_clusters || !a->http.clusters)
		return NULL;
	return a->http.clusters[r->cluster].name;
}

static void u64_copy(_Atomic uint64_t *dst, const _Atomic uint64_t *src)
{
	atomic_store_explicit(dst, stats_get(src), memory_order_relaxed);
}

static void route_copy(struct http_route_stats *d, const struct http_route_stats *s)
{
	u64_copy(&d->requests, &s->requests);
	for (unsigned i = 0; i < 6; i++)
		u64_copy(&d->responses[i], &s->responses[i]);
	for (unsigned i = 0; i <= STATS_HIST_NBOUNDS; i++)
		u64_copy(&d->latency.buckets[i], &s->latency.buckets[i]);
	u64_copy(&d->latency.count, &s->latency.count);
	u64_copy(&d->latency.sum_us, &s->latency.sum_us);
}

struct http_app_stats *http_stats_new(const struct cfg_app *a, const struct http_app_stats *prev,
				      const struct cfg_app *prev_cfg)
{
	uint32_t n = a->http.routes ? a->http.n_routes : 0;
	struct http_app_stats *s = calloc(1, stats_size(n));
	if (!s)
		return NULL;
	atomic_init(&s->refcnt, 1);
	s->n_routes = n;
	if (!prev)
		return s;
	u64_copy(&s->requests, &prev->requests);
	u64_copy(&s->bad_requests, &prev->bad_requests);
	u64_copy(&s->header_timeouts, &prev->header_timeouts);
	u64_copy(&s->upstream_errors, &prev->upstream_errors);
	u64_copy(&s->no_target, &prev->no_target);
	u64_copy(&s->upstream_timeouts, &prev->upstream_timeouts);
	u64_copy(&s->retries, &prev->retries);
	u64_copy(&s->upgrades, &prev->upgrades);
	u64_copy(&s->upstream_reused, &prev->upstream_reused);
	u64_copy(&s->upstream_new, &prev->upstream_new);
	route_copy(&s->routes[n], &prev->routes[prev->n_routes]);
	if (!prev_cfg || !prev_cfg->http.routes)
		return s;
	uint32_t pn = prev_cfg->http.n_routes < prev->n_routes ? prev_cfg->http.n_routes : prev->n_routes;
	/* a previous route's counts go to one new route only (the first
	 * identical one: a duplicate route never matches anyway) */
	bool *taken = calloc(pn ? pn : 1, sizeof(*taken));
	if (!taken) {
		free(s);
		return NULL;
	}
	/* quadratic, but on reload only and over at most 4096 routes; the
	 * common case (routes kept in order) matches at j == i at once */
	for (uint32_t i = 0; i < n; i++) {
		const struct cfg_http_route *r = &a->http.routes[i];
		const char *cl = route_cluster(a, r);
		for (uint32_t k = 0; k < pn; k++) {
			uint32_t j = (i + k) % pn;
			const struct cfg_http_route *o = &prev_cfg->http.routes[j];
			if (taken[j] || !str_eq(r->host, o->host) || !str_eq(r->path, o->path) ||
			    !str_eq(cl, route_cluster(prev_cfg, o)))
				continue;
			taken[j] = true;
			route_copy(&s->routes[i], &prev->routes[j]);
			break;
		}
	}
	free(taken);
	return s;
}

struct http_app_stats *http_stats_get(struct http_app_stats *s)
{
	if (s)
		ref_get(&s->refcnt);
	return s;
}

void http_stats_put(struct http_app_stats *s)
{
	if (s && ref_put(&s->refcnt))
		free(s);
}

void http_stats_done(struct http_app_stats *s, uint32_t r, uint16_t status, uint64_t latency_us)
{
	if (!s)
		return;
	if (r > s->n_routes)
		r = s->n_routes;
	struct http_route_stats *rs = &s->routes[r];
	unsigned cls = status / 100u;
	if (cls < 1 || cls > 5)
		cls = 0;
	stats_add(&rs->requests, 1);
	stats_add(&rs->responses[cls], 1);
	stats_hist_observe(&rs->latency, latency_us);
}

void http_route_label(struct sbuf *out, const struct cfg_app *a, uint32_t r)
{
	if (!a || !a->http.routes || r >= a->http.n_routes) {
		sbuf_append(out, "unrouted", 8);
		return;
	}
	const struct cfg_http_route *rt = &a->http.routes[r];
	sbuf_puts(out, rt->host ? rt->host : "*");
	sbuf_puts(out, rt->path ? rt->path : "/");
}

/* --- JSON -------------------------------------------------------------------- */

#define LIT(out, s) sbuf_append((out), (s), sizeof(s) - 1)

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

static void kv(struct sbuf *out, const char *key_with_punct, uint64_t v)
{
	sbuf_puts(out, key_with_punct);
	put_u64(out, v);
}

static void json_str_or_null(struct sbuf *out, const char *s)
{
	if (s)
		sbuf_json_str(out, s);
	else
		LIT(out, "null");
}

static void json_route(struct sbuf *out, const struct http_route_stats *rs)
{
	kv(out, ",\"requests\":", stats_get(&rs->requests));
	kv(out, ",\"responses\":{\"1xx\":", stats_get(&rs->responses[1]));
	kv(out, ",\"2xx\":", stats_get(&rs->responses[2]));
	kv(out, ",\"3xx\":", stats_get(&rs->responses[3]));
	kv(out, ",\"4xx\":", stats_get(&rs->responses[4]));
	kv(out, ",\"5xx\":", stats_get(&rs->responses[5]));
	kv(out, ",\"none\":", stats_get(&rs->responses[0]));
	kv(out, "},\"latency_us\":{\"p50\":", (uint64_t)(stats_hist_quantile(&rs->latency, 0.50) + 0.5));
	kv(out, ",\"p90\":", (uint64_t)(stats_hist_quantile(&rs->latency, 0.90) + 0.5));
	kv(out, ",\"p99\":", (uint64_t)(stats_hist_quantile(&rs->latency, 0.99) + 0.5));
	kv(out, ",\"count\":", stats_get(&rs->latency.count));
	LIT(out, "}}");
}

void http_stats_json(struct sbuf *out, const struct cfg_app *a, const struct http_app_stats *s)
{
	kv(out, "\"http\":{\"requests\":", stats_get(&s->requests));
	kv(out, ",\"bad_requests\":", stats_get(&s->bad_requests));
	kv(out, ",\"header_timeouts\":", stats_get(&s->header_timeouts));
	kv(out, ",\"upstream_errors\":", stats_get(&s->upstream_errors));
	kv(out, ",\"no_target\":", stats_get(&s->no_target));
	kv(out, ",\"upstream_timeouts\":", stats_get(&s->upstream_timeouts));
	kv(out, ",\"retries\":", stats_get(&s->retries));
	kv(out, ",\"upgrades\":", stats_get(&s->upgrades));
	kv(out, ",\"upstream_reused\":", stats_get(&s->upstream_reused));
	kv(out, ",\"upstream_new\":", stats_get(&s->upstream_new));
	LIT(out, ",\"routes\":[");
	/* the routes are the config's; counters made for another version of
	 * the config (should not happen) show only the routes both know */
	uint32_t n = a && a->http.routes && a->http.n_routes < s->n_routes ? a->http.n_routes : s->n_routes;
	if (!a || !a->http.routes)
		n = 0;
	for (uint32_t i = 0; i < n; i++) {
		const struct cfg_http_route *r = &a->http.routes[i];
		LIT(out, "{\"host\":");
		json_str_or_null(out, r->host);
		LIT(out, ",\"path\":");
		json_str_or_null(out, r->path);
		LIT(out, ",\"cluster\":");
		json_str_or_null(out, route_cluster(a, r));
		json_route(out, &s->routes[i]);
		LIT(out, ",");
	}
	LIT(out, "{\"host\":null,\"path\":null,\"cluster\":null");
	json_route(out, &s->routes[s->n_routes]);
	LIT(out, "]}");
}
