/* worker.c - worker threads: accept steered connections, find their app, run them on the thread's own loop. */
#include "proxy/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "core/log.h"
#include "kpath/foo_kern.h"
#include "kpath/splice.h"
#include "proto/http_proxy.h"
#include "proto/proto.h"
#include "proxy/conn.h"
#include "stats/stats.h"

#define BUF_POOL_KEEP 256	/* free buffers kept per worker */

char *buf_pool_get(struct buf_pool *p)
{
	if (p->n)
		return p->free[--p->n];
	return malloc(p->size);
}

void buf_pool_put(struct buf_pool *p, char *buf)
{
	if (p->n < p->cap) {
		p->free[p->n++] = buf;
		return;
	}
	free(buf);
}

int pipe_pool_get(struct pipe_pool *p, int fds[2])
{
	if (p->n) {
		p->n--;
		fds[0] = p->free[p->n][0];
		fds[1] = p->free[p->n][1];
		return 0;
	}
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	/* a bigger pipe moves more per splice() call; best effort */
	if (p->size)
		fcntl(fds[0], F_SETPIPE_SZ, (int)p->size);
	return 0;
}

void pipe_pool_put(struct pipe_pool *p, int fds[2])
{
	if (p->n < p->cap) {
		p->free[p->n][0] = fds[0];
		p->free[p->n][1] = fds[1];
		p->n++;
	} else {
		close(fds[0]);
		close(fds[1]);
	}
	fds[0] = fds[1] = -1;
}

static void pipe_pool_destroy(struct pipe_pool *p)
{
	while (p->n) {
		p->n--;
		close(p->free[p->n][0]);
		close(p->free[p->n][1]);
	}
	free(p->free);
	p->free = NULL;
}

static void buf_pool_destroy(struct buf_pool *p)
{
	while (p->n)
		free(p->free[--p->n]);
	free(p->free);
	p->free = NULL;
}

/* Looks the connection's original destination up in the current snapshot,
 * then in the previous one. Returns a referenced app or NULL. */
static struct rt_app *worker_find_app(struct worker *w, int fd)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	if (getsockname(fd, (struct sockaddr *)&local, &len) < 0) {
		log_warn("getsockname() failed: %s", strerror(errno));
		return NULL;
	}
	struct rt_app *app = rt_lookup(w->snap, &local);
	if (!app && w->prev_snap)
		app = rt_lookup(w->prev_snap, &local);
	return app ? rt_app_get(app) : NULL;
}

static void worker_accept(struct worker *w)
{
	for (;;) {
		int fd = accept4(w->listen_io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* the queue keeps the client; try again shortly */
				log_warn("accept4() failed: %s; retrying in 100 ms", strerror(errno));
				ev_timer_start(&w->loop, &w->accept_retry, 100);
				return;
			}
			log_err("accept4() failed: %s", strerror(errno));
			return;
		}
		struct rt_app *app = worker_find_app(w, fd);
		if (!app) {
			/* only possible when a reload removed the port in between */
			stats_add(&stats_global.no_app, 1);
			close(fd);
			continue;
		}
		uint32_t max = app->cfg->max_connections;
		if (max && atomic_fetch_add_explicit(&app->active, 1, memory_order_relaxed) >= max) {
			atomic_fetch_sub_explicit(&app->active, 1, memory_order_relaxed);
			log_info("app %s: connection limit %u reached, closing a client", app->cfg->name, max);
			stats_add(&app->stats->accepted, 1);
			stats_add(&app->stats->failed, 1);
			close(fd);
			rt_app_put(app);
			continue;
		}
		const struct proto_handler *h = proto_handler(app->cfg->protocol);
		if (h->accept)
			h->accept(w, fd, app);
		else
			conn_accept(w, fd, app);
	}
}

static void worker_listen_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	(void)events;
	worker_accept(container_of(io, struct worker, listen_io));
	(void)loop;
}

/* Closed Foo connections of the kernel path left requests pending: their
 * entries go in one pass over the map for all of them. */
static void worker_foo_sweep_cb(struct ev_loop *loop, struct ev_timer *t)
{
	struct worker *w = container_of(t, struct worker, foo_sweep);
	if (kfoo_sweep())
		ev_timer_start(loop, &w->foo_sweep, WORKER_FOO_SWEEP_MS);
}

void worker_foo_sweep_soon(struct worker *w)
{
	if (!ev_timer_armed(&w->foo_sweep))
		ev_timer_start(&w->loop, &w->foo_sweep, WORKER_FOO_SWEEP_MS);
}

static void worker_accept_retry_cb(struct ev_loop *loop, struct ev_timer *t)
{
	(void)loop;
	worker_accept(container_of(t, struct worker, accept_retry));
}

/* One event of the splice program: a socket of ours the kernel stopped
 * moving (hold: its connection reads it from now on), or moves again
 * (resume), or a Foo connection the kernel stopped framing (violation). */
static int worker_ring_event(void *ctx, void *data, size_t size)
{
	struct worker *w = ctx;
	const struct pandit_splice_event *ev = data;
	if (size < sizeof(*ev))
		return 0;
	if (ev->kind == PANDIT_SPLICE_EV_RESUME)
		conn_splice_resumed(w, ev->cookie);
	else if (ev->kind == PANDIT_SPLICE_EV_FOO)
		conn_splice_foo(w, ev->cookie);
	else
		conn_splice_held(w, ev->cookie);
	return 0;
}

static void worker_ring_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	(void)loop;
	(void)events;
	struct worker *w = container_of(io, struct worker, ring_io);
	if (ring_buffer__consume(w->ring) < 0)
		log_warn("reading the splice ring failed: %s", strerror(errno));
	/* a full ring loses events: then look at every spliced connection */
	uint64_t misses = kpath_ring_misses();
	if (misses != w->ring_misses) {
		w->ring_misses = misses;
		conn_splice_rescan(w);
	}
}

/* Watches this worker's ring of the splice program, when it is loaded. */
static void worker_ring_init(struct worker *w)
{
	int fd = kpath_ring_fd(w->id);
	if (fd < 0)
		return;
	w->ring = ring_buffer__new(fd, worker_ring_event, w, NULL);
	if (!w->ring) {
		log_warn("worker %u: ring_buffer__new() failed: %s; splice holds are found by the idle timer only",
			 w->id, strerror(errno));
		return;
	}
	w->ring_misses = kpath_ring_misses();
	w->ring_io.fd = ring_buffer__epoll_fd(w->ring);
	w->ring_io.cb = worker_ring_cb;
	if (ev_add(&w->loop, &w->ring_io, EPOLLIN | EPOLLET) < 0) {
		ring_buffer__free(w->ring);
		w->ring = NULL;
	}
}

static void worker_before_sleep(struct ev_loop *loop)
{
	struct worker *w = loop->data;
	conn_reap(w);
	if (w->http)
		http_worker_before_sleep(w);
}

int worker_init(struct worker *w, uint32_t id, int listen_fd, uint32_t buffer_size, bool splice,
		struct rt_snapshot *snap)
{
	memset(w, 0, sizeof(*w));
	w->id = id;
	int err = ev_init(&w->loop);
	if (err)
		return err;
	w->loop.data = w;
	w->loop.before_sleep = worker_before_sleep;
	w->pool.size = buffer_size;
	w->pool.cap = BUF_POOL_KEEP;
	w->pool.free = calloc(BUF_POOL_KEEP, sizeof(char *));
	w->splice = splice;
	w->pipes.size = buffer_size;
	w->pipes.cap = BUF_POOL_KEEP;
	w->pipes.free = calloc(BUF_POOL_KEEP, sizeof(*w->pipes.free));
	if (!w->pool.free || !w->pipes.free) {
		free(w->pool.free);
		free(w->pipes.free);
		ev_destroy(&w->loop);
		return -ENOMEM;
	}
	ev_timer_init(&w->accept_retry, worker_accept_retry_cb);
	ev_timer_init(&w->foo_sweep, worker_foo_sweep_cb);
	w->listen_io.fd = listen_fd;
	w->listen_io.cb = worker_listen_cb;
	err = ev_add(&w->loop, &w->listen_io, EPOLLIN | EPOLLET);
	if (err) {
		free(w->pool.free);
		free(w->pipes.free);
		ev_destroy(&w->loop);
		return err;
	}
	w->snap = rt_snapshot_get(snap);
	worker_ring_init(w);
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];
	snprintf(name, sizeof(name), "w%u", w->id);
	log_set_thread_name(name);
	/* connections already queued when the thread starts */
	worker_accept(w);
	ev_run(&w->loop);
	return NULL;
}

int worker_start(struct worker *w)
{
	int err = pthread_create(&w->thread, NULL, worker_main, w);
	if (err) {
		log_err("pthread_create() failed: %s", strerror(err));
		return -err;
	}
	char name[16];
	snprintf(name, sizeof(name), "pandit-w%u", w->id);
	pthread_setname_np(w->thread, name);
	return 0;
}

/* --- snapshot publication ------------------------------------------------------ */

struct publish {
	struct rt_snapshot *snap;
	pthread_mutex_t lock;
	pthread_cond_t done;
	uint32_t pending;
};

static void worker_take_snapshot(struct ev_loop *loop, void *arg)
{
	struct worker *w = loop->data;
	struct publish *p = arg;
	if (w->prev_snap)
		rt_snapshot_put(w->prev_snap);
	w->prev_snap = w->snap;
	w->snap = rt_snapshot_get(p->snap);
	pthread_mutex_lock(&p->lock);
	if (--p->pending == 0)
		pthread_cond_signal(&p->done);
	pthread_mutex_unlock(&p->lock);
}

void workers_publish(struct worker *ws, uint32_t n, struct rt_snapshot *snap)
{
	struct publish p = { .snap = snap, .pending = 0 };
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.done, NULL);
	pthread_mutex_lock(&p.lock);
	for (uint32_t i = 0; i < n; i++) {
		if (ev_post(&ws[i].loop, worker_take_snapshot, &p) == 0)
			p.pending++;
		else
			log_err("worker %u did not get the new config (out of memory)", i);
	}
	/* a worker's loop never blocks for long: this wait is one loop iteration */
	while (p.pending)
		pthread_cond_wait(&p.done, &p.lock);
	pthread_mutex_unlock(&p.lock);
	pthread_cond_destroy(&p.done);
	pthread_mutex_destroy(&p.lock);
}

void worker_stop(struct worker *w)
{
	ev_stop(&w->loop);
	pthread_join(w->thread, NULL);
	while (w->conns)
		conn_close(w->conns);
	conn_reap(w);
	http_worker_stop(w);
	ev_del(&w->loop, &w->listen_io);
	ev_timer_stop(&w->loop, &w->accept_retry);
	ev_timer_stop(&w->loop, &w->foo_sweep);
	kfoo_sweep();
	if (w->ring) {
		ev_del(&w->loop, &w->ring_io);
		ring_buffer__free(w->ring);
		w->ring = NULL;
	}
	if (w->prev_snap)
		rt_snapshot_put(w->prev_snap);
	rt_snapshot_put(w->snap);
	buf_pool_destroy(&w->pool);
	pipe_pool_destroy(&w->pipes);
	ev_destroy(&w->loop);
}
