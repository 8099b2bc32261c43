/* runtime.h - the live form of a config: apps with their targets and counters, and the port lookup table. */
#ifndef PANDIT_RUNTIME_H
#define PANDIT_RUNTIME_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "config/diff.h"
#include "lb/target.h"
#include "stats/stats.h"

struct steer_entry;
struct foo_app_stats;
struct http_app_stats;
struct http_log_sink;
struct rt_arena;

struct rt_app_target {
	struct target *t;		/* shared, referenced */
	struct conn_stats *stats;	/* per app and target, carried across reloads */
};

/* An app as it runs. Unchanged apps are carried from one snapshot to the
 * next as the same object; a changed app gets a new object that takes over
 * the counters. Connections hold a reference, so an app removed or changed
 * by a reload lives on until its last connection closes. */
struct rt_app {
	_Atomic uint32_t refcnt;
	uint32_t id;			/* small numeric ID, also in the BPF maps */
	struct cfg_app *cfg;		/* owned copy */
	struct rt_app_target *targets;
	uint32_t n_targets;
	_Atomic uint32_t rr_next;	/* round robin cursor */
	_Atomic uint32_t active;	/* open connections (max_connections) */
	struct conn_stats *stats;	/* per app, carried across reloads */
	struct foo_app_stats *foo;	/* protocol foo: message counters, carried across reloads */
	struct http_app_stats *http;	/* protocol http: route counters, carried across reloads */
	struct http_log_sink *http_log;	/* protocol http: the access log, NULL when off */
	_Atomic uint32_t *cluster_rr;	/* protocol http: a round robin cursor per cluster */
};

/* One rule of a port: an address prefix (plen over the 128-bit form, 0 for
 * any address) and its app. */
struct rt_port_rule {
	uint8_t addr[16];
	uint8_t plen;
	struct rt_app *app;
};

struct rt_port {
	uint32_t n;
	struct rt_port_rule rules[];	/* longest prefix first */
};

/* An immutable view of the config. Workers each hold a reference to the
 * one they use; the control thread swaps it on reload. */
struct rt_snapshot {
	_Atomic uint32_t refcnt;
	uint64_t generation;
	struct cfg *cfg;		/* owned */
	struct rt_app **apps;		/* apps[i] runs cfg->apps[i] */
	size_t n_apps;
	size_t n_ports;			/* steering entries */
	struct rt_arena *port_arena;	/* holds the struct rt_port objects below, with
					 * the older arenas it builds on */
	struct rt_port *ports[65536];
};

/* Builds a snapshot for cfg (ownership of cfg passes to the snapshot on
 * success). With prev and diff = cfg_diff(prev->cfg, cfg), unchanged apps
 * are the same objects as in prev and changed apps keep their ID and
 * counters; everything else is new. Returns 0 or -ENOMEM. */
int rt_snapshot_build(struct cfg *cfg, const struct rt_snapshot *prev, const struct cfg_diff *diff,
		      struct rt_snapshot **out);
struct rt_snapshot *rt_snapshot_get(struct rt_snapshot *s);
void rt_snapshot_put(struct rt_snapshot *s);

/* The app serving local address:port (from getsockname), or NULL. */
struct rt_app *rt_lookup(const struct rt_snapshot *s, const struct sockaddr_storage *local);

/* Reopens the access log file of every http app of s (after rotation);
 * failures are logged and the old file kept. */
void rt_reopen_logs(const struct rt_snapshot *s);

struct rt_app *rt_app_get(struct rt_app *a);
void rt_app_put(struct rt_app *a);

/* The steering entries wanted for s, in any order; *out freed by the caller. */
int rt_steer_entries(const struct rt_snapshot *s, struct steer_entry **out, size_t *n);

/* What changes in the steering entries from prev to s, given diff =
 * cfg_diff(prev->cfg, s->cfg) (rt_snapshot_build's): the entries of added
 * and changed apps to write, the keys of removed apps and of the previous
 * version of changed apps to delete (steer_apply keeps a key that is also
 * written). Both freed by the caller. */
struct pandit_steer_key;
int rt_steer_delta(const struct rt_snapshot *prev, const struct rt_snapshot *s,
		   const struct cfg_diff *diff, struct steer_entry **add, size_t *n_add,
		   struct pandit_steer_key **del, size_t *n_del);

#endif
