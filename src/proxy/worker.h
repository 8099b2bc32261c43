/* worker.h - a worker thread: its own epoll loop, its listener of the reuseport group, its connections. */
#ifndef PANDIT_WORKER_H
#define PANDIT_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/ev.h"
#include "runtime/runtime.h"

struct conn;
struct ring_buffer;
struct http_worker;

/* Free buffers kept for reuse, so idle connections hold no buffer. */
struct buf_pool {
	char **free;
	uint32_t n, cap;
	uint32_t size;	/* bytes per buffer */
};

/* Free (empty) pipes kept for the splice path. */
struct pipe_pool {
	int (*free)[2];
	uint32_t n, cap;
	uint32_t size;	/* F_SETPIPE_SZ asked for */
};

struct worker {
	uint32_t id;
	pthread_t thread;
	struct ev_loop loop;
	struct ev_io listen_io;
	struct ev_timer accept_retry;	/* armed while accept() hits the fd limit */
	struct ev_timer foo_sweep;	/* armed while closed Foo connections left pending
					 * requests in the kernel's map (kfoo_sweep) */
	/* The snapshot new connections use, and the one before it: a connection
	 * queued before a reload for a port the reload removed is still served. */
	struct rt_snapshot *snap;
	struct rt_snapshot *prev_snap;
	struct buf_pool pool;
	struct pipe_pool pipes;
	bool splice;			/* relay with splice(2) through pipes, zero copy */
	struct ring_buffer *ring;	/* hold events of the splice program for this worker */
	struct ev_io ring_io;
	uint64_t ring_misses;		/* the program's lost events when last checked */
	struct conn *conns;		/* every open connection (doubly linked) */
	struct conn *dead;		/* closed in this batch, freed before the next wait */
	uint64_t n_conns;
	struct http_worker *http;	/* protocol http: clients, upstream pool, log buffer;
					 * made on the first http client */
};

/* Sets up w (loop, listener registration) with a reference to snap taken.
 * splice: relay through pipes with splice(2) instead of copying. */
int worker_init(struct worker *w, uint32_t id, int listen_fd, uint32_t buffer_size, bool splice,
		struct rt_snapshot *snap);
int worker_start(struct worker *w);
/* Makes every worker use snap for new connections; returns once all of them
 * switched (each takes its own reference). */
void workers_publish(struct worker *ws, uint32_t n, struct rt_snapshot *snap);
/* Stops the loop, closes every connection, joins the thread. */
void worker_stop(struct worker *w);

/* Buffer and pipe pools, used by connections. */
char *buf_pool_get(struct buf_pool *p);
void buf_pool_put(struct buf_pool *p, char *buf);
/* Fills fds with an empty non-blocking pipe; returns 0 or a negative errno. */
int pipe_pool_get(struct pipe_pool *p, int fds[2]);
/* Takes back an empty pipe (closes it when the pool is full). */
void pipe_pool_put(struct pipe_pool *p, int fds[2]);

/* Arms the sweep of the kernel's pending Foo requests of closed
 * connections (WORKER_FOO_SWEEP_MS from now, unless armed). */
#define WORKER_FOO_SWEEP_MS 100
void worker_foo_sweep_soon(struct worker *w);

#endif
