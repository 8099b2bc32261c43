/* stats.h - counters and latency histograms kept per app and per target, and their renderings. */
#ifndef PANDIT_STATS_H
#define PANDIT_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"

/* Upper bounds (microseconds) of the latency histogram buckets; one more
 * bucket counts everything above the last bound (+Inf). */
#define STATS_HIST_BOUNDS_US \
	{ 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, \
	  250000, 500000, 1000000, 2500000, 5000000 }
#define STATS_HIST_NBOUNDS 16

struct stats_hist {
	_Atomic uint64_t buckets[STATS_HIST_NBOUNDS + 1];	/* not cumulative */
	_Atomic uint64_t count;
	_Atomic uint64_t sum_us;
};

/* Counters of one app or of one target of one app. Updated with relaxed
 * atomics from every worker; refcounted so that an app changed by a reload
 * keeps counting where it left off. */
struct conn_stats {
	_Atomic uint32_t refcnt;
	_Atomic uint64_t accepted;	/* app: client connections accepted; target: connections established to it */
	_Atomic uint64_t active;	/* open now */
	_Atomic uint64_t failed;	/* app: clients closed without any target; target: failed connects */
	_Atomic uint64_t bytes_in;	/* client -> target */
	_Atomic uint64_t bytes_out;	/* target -> client */
	struct stats_hist connect_latency;
};

/* Process-wide counters. */
struct stats_global {
	uint64_t started_ns;		/* CLOCK_REALTIME at start */
	_Atomic uint64_t accepted;
	_Atomic uint64_t active;
	_Atomic uint64_t no_app;	/* accepted connections whose address:port matched no app (raced a reload) */
	_Atomic uint64_t reloads_ok;
	_Atomic uint64_t reloads_failed;
	_Atomic uint64_t last_reload_us;	/* time to apply the last good reload */
	_Atomic uint64_t generation;		/* config generation in force */
};

extern struct stats_global stats_global;

static inline void stats_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static inline void stats_sub(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_sub_explicit(c, v, memory_order_relaxed);
}

static inline uint64_t stats_get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

void stats_hist_observe(struct stats_hist *h, uint64_t us);
/* Estimates quantile q (0..1) in microseconds from the buckets. */
double stats_hist_quantile(const struct stats_hist *h, double q);

struct conn_stats *conn_stats_new(void);	/* refcnt 1, zeroed; NULL on ENOMEM */
struct conn_stats *conn_stats_get(struct conn_stats *s);
void conn_stats_put(struct conn_stats *s);

struct rt_snapshot;
struct steer_counters;

/* One JSON object on one line (no trailing newline): global counters,
 * steering counters (may be NULL) and every app of the snapshot with its
 * targets. */
void stats_render_json(struct sbuf *out, const struct rt_snapshot *snap,
		       const struct steer_counters *steer);

/* Prometheus text exposition format (version 0.0.4). */
void stats_render_prometheus(struct sbuf *out, const struct rt_snapshot *snap,
			     const struct steer_counters *steer);

/* Incremental rendering, for writers that keep their buffers bounded (the
 * admin endpoint streaming the metrics of 10,000 apps to a slow client):
 * stats_render_begin(), then stats_render_step() until it returns true.
 * snap (may be NULL) and steer (may be NULL) must stay valid until then.
 * The two functions above are begin + one unbounded step. */
enum stats_format { STATS_FMT_JSON = 0, STATS_FMT_PROMETHEUS };

struct stats_render {
	enum stats_format fmt;
	const struct rt_snapshot *snap;
	const struct steer_counters *steer;
	unsigned stage;			/* section (JSON) or metric family (Prometheus) */
	bool header_done;		/* Prometheus: # HELP / # TYPE of the family written */
	size_t app, target;		/* position inside the section */
	bool done;
};

void stats_render_begin(struct stats_render *r, enum stats_format fmt,
			const struct rt_snapshot *snap, const struct steer_counters *steer);
/* Appends to out until out->len reaches limit (it may overshoot by one
 * app's or one target's lines) or the end. Returns true at the end.
 * Check out->oom afterwards: on allocation failure the text is cut. */
bool stats_render_step(struct stats_render *r, struct sbuf *out, size_t limit);

#endif
