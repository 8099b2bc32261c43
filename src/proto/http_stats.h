/* http_stats.h - per-route HTTP counters and latency histograms of an http app, carried across reloads. */
#ifndef PANDIT_PROTO_HTTP_STATS_H
#define PANDIT_PROTO_HTTP_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "config/config.h"
#include "stats/stats.h"

struct sbuf;

/* Counters of one route. Updated with relaxed atomics by every worker. */
struct http_route_stats {
	_Atomic uint64_t requests;	/* request heads routed here */
	_Atomic uint64_t responses[6];	/* [1..5]: final responses by status class
					 * (those pandit answered itself included);
					 * [0]: requests that got no response (client or
					 * upstream vanished mid-way) */
	struct stats_hist latency;	/* request head received -> response complete, us */
};

/* Everything an http app counts. routes[0 .. n_routes) follow the config's
 * routes; routes[n_routes] counts requests no route matched (answered 404)
 * and those refused before routing (400, 408, 431...). */
struct http_app_stats {
	_Atomic uint32_t refcnt;
	uint32_t n_routes;
	_Atomic uint64_t requests;		/* every request head parsed or refused */
	_Atomic uint64_t bad_requests;		/* refused by the parser: 400, 414, 417, 431, 501, 505 */
	_Atomic uint64_t header_timeouts;	/* 408 */
	_Atomic uint64_t upstream_errors;	/* 502 answered */
	_Atomic uint64_t no_target;		/* 503 answered */
	_Atomic uint64_t upstream_timeouts;	/* 504 answered */
	_Atomic uint64_t retries;		/* requests sent again to another target */
	_Atomic uint64_t upgrades;		/* tunnels (101 Switching Protocols) */
	_Atomic uint64_t upstream_reused;	/* requests sent on a pooled connection */
	_Atomic uint64_t upstream_new;		/* requests that needed a new connection */
	struct http_route_stats routes[];	/* n_routes + 1 */
};

/* New zeroed counters for app a (refcnt 1), or NULL on ENOMEM. With prev
 * (the counters of the app's previous version, may be NULL), routes that
 * are still there (same host, path and cluster name) keep their counts, as
 * do the app-wide counters and the unrouted slot. */
struct http_app_stats *http_stats_new(const struct cfg_app *a, const struct http_app_stats *prev,
				      const struct cfg_app *prev_cfg);
struct http_app_stats *http_stats_get(struct http_app_stats *s);
void http_stats_put(struct http_app_stats *s);

/* Counts one finished request on route r (n_routes: unrouted; larger is
 * taken as unrouted): its route's requests, response class (status 0, or
 * one outside 100..599: "none", no response was sent) and latency. The
 * app-wide counters (requests included) are the caller's to add. */
void http_stats_done(struct http_app_stats *s, uint32_t r, uint16_t status, uint64_t latency_us);

/* Appends the name of route r of app a as the metrics and the access log
 * show it, unescaped: "host/path" ("api.example.com/v1/"), "*" for a route
 * without host ("*" then the path), "unrouted" for r >= n_routes. */
void http_route_label(struct sbuf *out, const struct cfg_app *a, uint32_t r);

/* JSON: appends `"http":{...}` (no leading comma) for app a: the app-wide
 * counters and "routes":[{"host":..,"path":..,"cluster":..,"requests":..,
 * "responses":{"1xx":..,..,"5xx":..,"none":..},"latency_us":{"p50":..,
 * "p90":..,"p99":..,"count":..}}, ...] with the unrouted slot last
 * ("host":null,"path":null,"cluster":null). */
void http_stats_json(struct sbuf *out, const struct cfg_app *a, const struct http_app_stats *s);

#endif
