/* http_proxy.c - the HTTP/1.1 reverse proxy handler: owns client sockets, routes each request, pools upstream connections. */
#include "proto/http_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sbuf.h"
#include "lb/balance.h"
#include "lb/target.h"
#include "proto/http1.h"
#include "proto/http_log.h"
#include "proto/http_rewrite.h"
#include "proto/http_stats.h"
#include "proxy/worker.h"
#include "stats/stats.h"

/*
 * One client connection carries one request at a time (pipelined requests
 * wait in its buffer until the response before them is complete). For each
 * request: parse the head (h1_parse, bounded by max_header_bytes and the
 * header timeout), route it to a cluster, pick a target, take an idle
 * upstream connection from the worker's pool or connect a new one, send the
 * rewritten head, stream the body (validated, never buffered whole), parse
 * the response head, send its rewritten head and stream its body back.
 * When both messages are complete the upstream connection goes back to the
 * pool when it can carry another request, and the client's next request is
 * parsed. A 101 answer to an Upgrade request turns the pair into a tunnel.
 *
 * Everything is edge-triggered: readable/writable flags remember an edge
 * until EAGAIN, and hc_run() loops until nothing more can move.
 */

/* EPOLLOUT is asked for only while a send came up short (or a connect is
 * under way): otherwise every ACK from the peer would wake the loop. */
#define HC_EVENTS_IN (EPOLLIN | EPOLLRDHUP | EPOLLET)
#define HC_EVENTS (HC_EVENTS_IN | EPOLLOUT)
#define POOL_BUCKETS 256	/* idle upstream connections hashed by target */
#define LINGER_MS 2000		/* after a closing response: wait this long for the client's FIN */
#define HEAD_BUF 2048u		/* first buffer of a request head; grows to max_header_bytes */
#define SMALL_KEEP 64		/* free HEAD_BUF buffers kept per worker */
#define RESP_MAX_HEAD 65536u	/* response heads (upstream), bytes */
#define RESP_MAX_HEADERS 128u

struct http_worker;
struct hcli;

/* A byte buffer: data[head, tail) holds bytes not yet used. */
struct hbuf {
	char *data;
	uint32_t cap, head, tail;
	bool pooled;	/* from the worker's buffer pool (else malloc'd) */
};

/* An upstream connection: bound to one client while it carries a request,
 * otherwise idle in the worker's pool. */
struct hup {
	struct ev_io io;
	struct http_worker *hw;
	struct target *t;		/* referenced */
	struct hcli *cli;		/* bound client, NULL when idle */
	struct hup *pnext, *pprev;	/* pool bucket, while idle */
	struct hup *dnext;		/* dead list */
	struct ev_timer timer;		/* connect timeout; idle timeout in the pool */
	struct hbuf in;
	uint64_t connect_start;
	bool connecting, readable, writable, eof, rdhup, shut, dead;
	bool out_armed;			/* EPOLLOUT is registered */
	uint64_t idle_since;		/* pooled since (CLOCK_MONOTONIC ns) */
	uint32_t idle_ms;		/* closed after this long pooled */
	bool reused;			/* taken from the pool for the current request */
	bool got_bytes;			/* a response byte arrived for the current request */
	struct h1_parser p;
	struct h1_header hdr[RESP_MAX_HEADERS];
};

enum hc_phase {
	HC_HEAD,	/* reading a request head (or waiting for one) */
	HC_EXCHANGE,	/* a request is being forwarded and answered */
	HC_TUNNEL,	/* after 101: raw bytes both ways */
	HC_LINGER,	/* closing: response sent, FIN sent, draining until the client's FIN */
};

struct hcli {
	struct ev_io io;
	struct worker *w;
	struct http_worker *hw;
	struct hcli *prev, *next, *dnext;
	struct rt_app *app;		/* referenced */
	char ip[INET6_ADDRSTRLEN];
	bool v6;
	struct sockaddr_storage peer;
	struct sockaddr_storage local_addr;	/* the address:port the client connected to */
	uint64_t generation;		/* of the snapshot c->app was last looked up in */
	struct hbuf in;
	bool readable, writable, eof, rdhup, shut, dead;
	bool out_armed;			/* EPOLLOUT is registered */
	enum hc_phase phase;
	struct ev_timer timer;
	uint64_t last_active;
	uint64_t linger_until;
	uint64_t head_start;		/* first byte of the head being read; 0: none yet */

	/* the request */
	struct h1_parser rp;
	struct h1_header *rhdr;
	uint32_t rhdr_cap;
	struct h1_body rbody;
	uint32_t parsed;		/* in.data[in.head, parsed) is validated body, to send */
	bool req_done;			/* the body's end was seen */
	bool req_sent;			/* ... and every byte of it sent */
	bool has_body;
	bool keep_alive, http10, upgrade, idempotent, expect;
	bool sent_100;
	enum h1_method method;
	uint32_t route;			/* index, n_routes when none matched */
	uint32_t cluster;
	int ti;				/* target index in the app, -1 */
	struct lb_tried tried;
	uint32_t attempts;
	uint64_t t_start, t_start_real;
	struct sbuf up_out;		/* rewritten request head */
	uint32_t up_out_off;
	struct hup *up;

	/* the response */
	struct sbuf cli_out;		/* interim/final response head, or a local response */
	uint32_t cli_out_off;
	bool resp_head;			/* the final head was parsed */
	bool resp_done;			/* the body's end was seen */
	bool local;			/* pandit answered itself */
	bool close_after;		/* the client connection ends after this response */
	struct h1_body sbody;
	uint32_t uparsed;		/* up->in.data[up->in.head, uparsed) is validated, to send */
	uint16_t status;
	uint64_t bytes_sent;

	/* what the access log needs of the request head, copied */
	struct sbuf logf;
	uint32_t lg_method, lg_target, lg_host, lg_referer, lg_agent, lg_end[5];
};

struct http_worker {
	struct worker *w;
	struct hcli *clients;
	struct hcli *dead_clients;
	struct hup *dead_ups;
	struct hup *pool[POOL_BUCKETS];
	uint32_t pool_count[POOL_BUCKETS];	/* idle connections in the bucket */
	struct http_log_buf *log;
	char *small[SMALL_KEEP];		/* free HEAD_BUF buffers */
	uint32_t n_small;
};

static void hc_run(struct hcli *c);
static uint64_t ms_ns(uint32_t ms);
static void hc_close(struct hcli *c, bool reset);
static void hup_close(struct hup *u, bool reset);
static void hc_connect(struct hcli *c);
static void hc_upstream_failed(struct hcli *c, int err);

static bool would_block(int e)
{
	return e == EAGAIN || e == EWOULDBLOCK;
}

/* Remembers the edges epoll reported for a socket until EAGAIN clears
 * them: a FIN or an error makes it readable to the end. */
static void mark_events(uint32_t events, bool *rdhup, bool *readable, bool *writable)
{
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		*rdhup = true;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		*readable = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		*writable = true;
}

/* --- buffers --------------------------------------------------------------- */

static int hbuf_ensure(struct worker *w, struct hbuf *b, uint32_t cap)
{
	if (b->data)
		return 0;
	struct http_worker *hw = w->http;
	if (cap == w->pool.size) {
		b->data = buf_pool_get(&w->pool);
		b->cap = w->pool.size;
		b->pooled = true;
	} else if (cap == HEAD_BUF && hw && hw->n_small) {
		b->data = hw->small[--hw->n_small];
		b->cap = cap;
		b->pooled = false;
	} else {
		b->data = malloc(cap);
		b->cap = cap;
		b->pooled = false;
	}
	b->head = b->tail = 0;
	return b->data ? 0 : -ENOMEM;
}

static void hbuf_drop(struct worker *w, struct hbuf *b)
{
	if (!b->data)
		return;
	struct http_worker *hw = w->http;
	if (b->pooled)
		buf_pool_put(&w->pool, b->data);
	else if (b->cap == HEAD_BUF && hw && hw->n_small < SMALL_KEEP)
		hw->small[hw->n_small++] = b->data;
	else
		free(b->data);
	b->data = NULL;
	b->head = b->tail = 0;
}

/* Moves data[head, tail) into a buffer of cap bytes (>= tail - head);
 * *extra (an offset into the buffer) follows. */
static int hbuf_resize(struct worker *w, struct hbuf *b, uint32_t cap, uint32_t *extra)
{
	struct hbuf nb = { 0 };
	if (hbuf_ensure(w, &nb, cap) < 0)
		return -ENOMEM;
	uint32_t n = b->tail - b->head;
	memcpy(nb.data, b->data + b->head, n);
	if (extra)
		*extra -= b->head;
	nb.tail = n;
	hbuf_drop(w, b);
	*b = nb;
	return 0;
}

/* Gives an empty buffer back, so idle connections hold none. */
static void hbuf_release_empty(struct worker *w, struct hbuf *b)
{
	if (b->data && b->head == b->tail)
		hbuf_drop(w, b);
}

/* Moves data[head, tail) to the front; *extra offsets follow. */
static void hbuf_compact(struct hbuf *b, uint32_t *extra)
{
	if (!b->head)
		return;
	memmove(b->data, b->data + b->head, b->tail - b->head);
	if (extra)
		*extra -= b->head;
	b->tail -= b->head;
	b->head = 0;
}

/* recv() into b; returns bytes read, 0 at EOF, -1 with errno. */
static ssize_t hbuf_recv(int fd, struct hbuf *b)
{
	ssize_t n;
	do
		n = recv(fd, b->data + b->tail, b->cap - b->tail, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		b->tail += (uint32_t)n;
	return n;
}

/* send() of data[0, len); returns bytes sent (0 on EAGAIN) or -1. */
static ssize_t send_some(int fd, const char *data, size_t len, bool *writable)
{
	ssize_t n;
	do
		n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (would_block(errno)) {
			*writable = false;
			return 0;
		}
		return -1;
	}
	if ((size_t)n < len)
		*writable = false;
	return n;
}

/* One sendmsg() of a then b (either may be empty): a response head and the
 * body bytes after it leave in one segment. Same results as send_some(). */
static ssize_t send2(int fd, const char *a, size_t alen, const char *b, size_t blen, bool *writable)
{
	struct iovec iov[2];
	int n_iov = 0;
	if (alen)
		iov[n_iov++] = (struct iovec){ .iov_base = (void *)a, .iov_len = alen };
	if (blen)
		iov[n_iov++] = (struct iovec){ .iov_base = (void *)b, .iov_len = blen };
	if (n_iov == 1)
		return send_some(fd, iov[0].iov_base, iov[0].iov_len, writable);
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n_iov };
	ssize_t n;
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (would_block(errno)) {
			*writable = false;
			return 0;
		}
		return -1;
	}
	if ((size_t)n < alen + blen)
		*writable = false;
	return n;
}

/* Registers EPOLLOUT for io when a send found no room, drops it when the
 * socket has been writable through a whole exchange. */
static void want_out(struct ev_loop *loop, struct ev_io *io, bool *armed, bool on)
{
	if (*armed == on || io->fd < 0)
		return;
	if (ev_mod(loop, io, on ? HC_EVENTS : HC_EVENTS_IN) == 0)
		*armed = on;
}

/* --- the worker's http state ---------------------------------------------- */

static struct http_worker *hw_get(struct worker *w)
{
	if (w->http)
		return w->http;
	struct http_worker *hw = calloc(1, sizeof(*hw));
	if (!hw)
		return NULL;
	hw->w = w;
	hw->log = http_log_buf_new();
	w->http = hw;
	return hw;
}

static uint32_t pool_bucket(const struct target *t)
{
	uintptr_t x = (uintptr_t)t;
	x ^= x >> 17;
	x *= 0x9e3779b97f4a7c15ull;
	return (uint32_t)(x >> 40) % POOL_BUCKETS;
}

static void pool_unlink(struct hup *u)
{
	struct http_worker *hw = u->hw;
	uint32_t b = pool_bucket(u->t);
	if (u->pprev)
		u->pprev->pnext = u->pnext;
	else
		hw->pool[b] = u->pnext;
	if (u->pnext)
		u->pnext->pprev = u->pprev;
	u->pnext = u->pprev = NULL;
	hw->pool_count[b]--;
}

/* An idle connection to t, or NULL. */
static struct hup *pool_take(struct http_worker *hw, struct target *t)
{
	uint32_t b = pool_bucket(t);
	for (struct hup *u = hw->pool[b]; u; u = u->pnext) {
		if (u->t != t)
			continue;
		/* A server that closed it meanwhile has been seen by epoll
		 * (hup_cb) unless the close is in the batch being handled: a
		 * request failing so is sent again (hc_upstream_failed). */
		pool_unlink(u);
		return u;	/* its idle timer may stay armed: it checks when it fires */
	}
	return NULL;
}


/* Keeps u for another request to the same target, or closes it. */
static void pool_put(struct hup *u, const struct cfg_http *cfg)
{
	struct http_worker *hw = u->hw;
	uint32_t b = pool_bucket(u->t);
	u->cli = NULL;
	u->readable = false;
	want_out(&hw->w->loop, &u->io, &u->out_armed, false);
	hbuf_release_empty(hw->w, &u->in);
	if (!cfg->max_idle_upstream || u->in.data || u->eof || u->rdhup) {
		hup_close(u, false);
		return;
	}
	if (hw->pool_count[b] >= cfg->max_idle_upstream) {
		/* the bucket may hold other targets' connections too: count */
		uint32_t same = 0;
		for (struct hup *v = hw->pool[b]; v; v = v->pnext)
			same += v->t == u->t;
		if (same >= cfg->max_idle_upstream) {
			hup_close(u, false);
			return;
		}
	}
	u->pnext = hw->pool[b];
	u->pprev = NULL;
	if (u->pnext)
		u->pnext->pprev = u;
	hw->pool[b] = u;
	hw->pool_count[b]++;
	u->idle_since = hw->w->loop.now;
	u->idle_ms = cfg->upstream_idle_ms;
	if (!ev_timer_armed(&u->timer))
		ev_timer_start(&hw->w->loop, &u->timer, u->idle_ms);
}

/* --- upstream connections ---------------------------------------------------- */

static void hup_close(struct hup *u, bool reset)
{
	if (u->dead)
		return;
	struct http_worker *hw = u->hw;
	ev_timer_stop(&hw->w->loop, &u->timer);
	if (u->io.fd >= 0) {
		ev_del(&hw->w->loop, &u->io);
		if (reset) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };
			setsockopt(u->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(u->io.fd);
		u->io.fd = -1;
	}
	hbuf_drop(hw->w, &u->in);
	if (u->cli && u->cli->up == u)
		u->cli->up = NULL;
	u->cli = NULL;
	u->dead = true;
	u->dnext = hw->dead_ups;
	hw->dead_ups = u;
}

static void hup_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	(void)loop;
	struct hup *u = container_of(io, struct hup, io);
	if (u->dead)
		return;
	mark_events(events, &u->rdhup, &u->readable, &u->writable);
	if (!u->cli) {
		/* idle in the pool: the server closed it or talks out of turn */
		if (u->readable) {
			pool_unlink(u);
			hup_close(u, false);
		}
		return;
	}
	hc_run(u->cli);
}

/* One timer per upstream connection: the connect timeout while
 * connecting, the idle timeout while pooled (armed lazily: when it fires
 * early it is armed again for the real deadline), nothing while busy. */
static void hup_timer_cb(struct ev_loop *loop, struct ev_timer *t)
{
	struct hup *u = container_of(t, struct hup, timer);
	struct hcli *c = u->cli;
	if (!c) {
		uint64_t d = u->idle_since + (uint64_t)u->idle_ms * 1000000ull;
		if (loop->now < d) {
			ev_timer_start_at(loop, t, d);
			return;
		}
		pool_unlink(u);
		hup_close(u, false);
		return;
	}
	if (!u->connecting)
		return;
	hc_upstream_failed(c, ETIMEDOUT);
	if (!c->dead)
		hc_run(c);
}

/* --- client side ------------------------------------------------------------- */

static const struct cfg_http *hc_cfg(const struct hcli *c)
{
	return &c->app->cfg->http;
}

static void hc_touch(struct hcli *c)
{
	c->last_active = c->w->loop.now;
}

/* Body and tunnel bytes moved, for the app's and the target's counters
 * (in: client to target). */
static void hc_count_bytes(struct hcli *c, uint64_t n, bool in)
{
	if (!n)
		return;
	struct conn_stats *as = c->app->stats;
	struct conn_stats *ts = c->ti >= 0 ? c->app->targets[c->ti].stats : NULL;
	stats_add(in ? &as->bytes_in : &as->bytes_out, n);
	if (ts)
		stats_add(in ? &ts->bytes_in : &ts->bytes_out, n);
}

/* Keeps what the access log needs of the request head. */
static void hc_log_keep(struct hcli *c, const char *base, const struct h1_msg *m)
{
	sbuf_reset(&c->logf);
	struct h1_slice none = { 0, 0 };
	struct h1_slice referer = none, agent = none;
	for (uint32_t i = 0; i < m->n_hdr; i++) {
		if (h1_slice_eq(base, m->hdr[i].name, "referer"))
			referer = m->hdr[i].value;
		else if (h1_slice_eq(base, m->hdr[i].name, "user-agent"))
			agent = m->hdr[i].value;
	}
	struct h1_slice parts[5] = { m->method_s, m->target, m->authority, referer, agent };
	uint32_t *starts[5] = { &c->lg_method, &c->lg_target, &c->lg_host, &c->lg_referer,
				&c->lg_agent };
	for (int i = 0; i < 5; i++) {
		*starts[i] = (uint32_t)c->logf.len;
		sbuf_append(&c->logf, base + parts[i].off, parts[i].len);
		c->lg_end[i] = (uint32_t)c->logf.len;
	}
}

/* Counts the finished request and writes its access log line. */
static void hc_account(struct hcli *c)
{
	struct rt_app *app = c->app;
	uint64_t now = c->w->loop.now;
	uint64_t us = now > c->t_start ? (now - c->t_start) / 1000 : 0;
	if (app->http)
		http_stats_done(app->http, c->route, c->status, us);
	if (!app->http_log)
		return;
	struct http_worker *hw = c->hw;
	if (!hw->log)
		return;
	struct sbuf route;
	sbuf_init(&route);
	if (app->cfg->http.n_routes && c->route < app->cfg->http.n_routes)
		http_route_label(&route, app->cfg, c->route);
	char upstream[300] = "";
	if (c->ti >= 0)
		snprintf(upstream, sizeof(upstream), "%s", app->targets[c->ti].t->name);
	const char *lf = c->logf.data ? c->logf.data : "";
	uint32_t *starts[5] = { &c->lg_method, &c->lg_target, &c->lg_host, &c->lg_referer,
				&c->lg_agent };
	const char *p[5];
	size_t n[5];
	for (int i = 0; i < 5; i++) {
		p[i] = lf + *starts[i];
		n[i] = c->lg_end[i] - *starts[i];
		if (!n[i])
			p[i] = NULL;
	}
	struct http_log_entry e = {
		.client = &c->peer,
		.time_ns = c->t_start_real,
		.method = p[0], .method_len = n[0],
		.target = p[1], .target_len = n[1],
		.version_minor = c->http10 ? 0 : 1,
		.host = p[2], .host_len = n[2],
		.referer = p[3], .referer_len = n[3],
		.user_agent = p[4], .user_agent_len = n[4],
		.status = c->status,
		.bytes_sent = c->bytes_sent,
		.duration_us = us,
		.app = app->cfg->name, .app_len = strlen(app->cfg->name),
		.route = route.len ? route.data : NULL, .route_len = route.len,
		.upstream = upstream[0] ? upstream : NULL, .upstream_len = strlen(upstream),
	};
	http_log_write(hw->log, app->http_log, &e);
	sbuf_free(&route);
}

/* Ends the client connection. reset: RST instead of FIN. */
static void hc_close(struct hcli *c, bool reset)
{
	if (c->dead)
		return;
	struct worker *w = c->w;
	struct http_worker *hw = c->hw;
	if ((c->phase == HC_EXCHANGE || c->phase == HC_TUNNEL) && c->t_start) {
		/* a request in flight that will not complete */
		if (!c->resp_done || c->cli_out_off < c->cli_out.len)
			c->status = c->local ? c->status : 0;
		hc_account(c);
	}
	if (c->up) {
		if (c->ti >= 0)
			stats_sub(&c->app->targets[c->ti].stats->active, 1);
		hup_close(c->up, reset);
		c->up = NULL;
	}
	ev_timer_stop(&w->loop, &c->timer);
	ev_del(&w->loop, &c->io);
	if (reset) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->io.fd);
	c->io.fd = -1;
	hbuf_drop(w, &c->in);
	sbuf_free(&c->up_out);
	sbuf_free(&c->cli_out);
	sbuf_free(&c->logf);
	free(c->rhdr);
	c->rhdr = NULL;
	struct rt_app *app = c->app;
	stats_sub(&app->stats->active, 1);
	stats_sub(&stats_global.active, 1);
	if (app->cfg->max_connections)
		atomic_fetch_sub_explicit(&app->active, 1, memory_order_relaxed);
	rt_app_put(app);
	c->app = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		hw->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_conns--;
	c->dead = true;
	c->dnext = hw->dead_clients;
	hw->dead_clients = c;
}

/* Between requests: after a reload, the next request follows the app's
 * new settings (routes, clusters, limits), not those the connection was
 * accepted under. A request under way keeps the app it started with. */
static void hc_refresh_app(struct hcli *c)
{
	struct worker *w = c->w;
	if (!w->snap || !c->local_addr.ss_family || c->generation == w->snap->generation)
		return;
	c->generation = w->snap->generation;
	struct rt_app *cur = rt_lookup(w->snap, &c->local_addr);
	struct rt_app *old = c->app;
	if (!cur || cur == old || cur->cfg->protocol != PROTO_HTTP)
		return;	/* removed, unchanged, or no longer http: keep serving as accepted */
	uint32_t cap = cur->cfg->http.max_headers ? cur->cfg->http.max_headers
						  : H1_DEFAULT_MAX_HEADERS;
	if (cap != c->rhdr_cap) {
		struct h1_header *hdr = calloc(cap, sizeof(*hdr));
		if (!hdr)
			return;	/* keep the old settings rather than fail */
		free(c->rhdr);
		c->rhdr = hdr;
		c->rhdr_cap = cap;
	}
	/* the connection moves its counts to the new version */
	if (cur->stats != old->stats) {
		stats_sub(&old->stats->active, 1);
		stats_add(&cur->stats->active, 1);
	}
	if (old->cfg->max_connections)
		atomic_fetch_sub_explicit(&old->active, 1, memory_order_relaxed);
	if (cur->cfg->max_connections)
		atomic_fetch_add_explicit(&cur->active, 1, memory_order_relaxed);
	c->app = rt_app_get(cur);
	rt_app_put(old);
}

/* Starts reading the next request head. */
static void hc_next_request(struct hcli *c)
{
	hc_refresh_app(c);
	const struct cfg_http *cfg = hc_cfg(c);
	struct h1_limits lim = { .max_head = cfg->max_header_bytes, .max_headers = cfg->max_headers };
	if (lim.max_line > lim.max_head)
		lim.max_line = lim.max_head;
	h1_request_init(&c->rp, &lim, c->rhdr, c->rhdr_cap);
	c->phase = HC_HEAD;
	c->head_start = 0;
	c->parsed = 0;
	c->req_done = c->req_sent = c->has_body = false;
	c->keep_alive = c->http10 = c->upgrade = c->idempotent = c->expect = false;
	c->sent_100 = false;
	c->route = 0;
	c->cluster = 0;
	c->ti = -1;
	memset(&c->tried, 0, sizeof(c->tried));
	c->attempts = 0;
	c->t_start = c->t_start_real = 0;
	sbuf_reset(&c->up_out);
	c->up_out_off = 0;
	sbuf_reset(&c->cli_out);
	c->cli_out_off = 0;
	c->resp_head = c->resp_done = c->local = c->close_after = false;
	c->uparsed = 0;
	c->status = 0;
	c->bytes_sent = 0;
	want_out(&c->w->loop, &c->io, &c->out_armed, false);
	if (c->in.data && c->in.head == c->in.tail)
		hbuf_drop(c->w, &c->in);
	else if (c->in.data)
		hbuf_compact(&c->in, NULL);
}

/* Answers the current request from pandit itself. The connection closes
 * afterwards when close is set or the request's body was not read. */
static void hc_local(struct hcli *c, uint16_t status, bool close)
{
	if (c->up) {
		if (c->ti >= 0)
			stats_sub(&c->app->targets[c->ti].stats->active, 1);
		hup_close(c->up, true);
		c->up = NULL;
	}
	if (c->has_body && !c->req_done)
		close = true;
	if (!c->keep_alive)
		close = true;
	sbuf_reset(&c->cli_out);
	c->cli_out_off = 0;
	http_local_response(&c->cli_out, status, close, c->method == H1_M_HEAD);
	c->status = status;
	c->local = true;
	c->resp_head = c->resp_done = true;
	c->close_after = close;
	c->req_done = c->req_sent = true;	/* nothing more goes upstream */
	c->phase = HC_EXCHANGE;
	struct http_app_stats *hs = c->app->http;
	if (hs) {
		if (status == 502)
			stats_add(&hs->upstream_errors, 1);
		else if (status == 503)
			stats_add(&hs->no_target, 1);
		else if (status == 504)
			stats_add(&hs->upstream_timeouts, 1);
		else if (status == 408)
			stats_add(&hs->header_timeouts, 1);
	}
}

/* Does host (the request's authority, maybe with a port) match pattern? */
static bool host_match(const char *pat, const char *h, size_t n)
{
	/* drop the port; an IPv6 literal keeps its brackets */
	const char *colon = NULL;
	if (n && h[0] == '[') {
		const char *rb = memchr(h, ']', n);
		if (rb)
			n = (size_t)(rb - h) + 1;
	} else if ((colon = memchr(h, ':', n))) {
		n = (size_t)(colon - h);
	}
	if (n && h[n - 1] == '.')
		n--;	/* "example.com." is "example.com" */
	if (pat[0] == '*' && pat[1] == '.') {
		size_t sl = strlen(pat + 1);	/* ".example.com" */
		return n > sl && strncasecmp(h + n - sl, pat + 1, sl) == 0;
	}
	return strlen(pat) == n && strncasecmp(h, pat, n) == 0;
}

static uint32_t hc_route(struct hcli *c, const char *base, const struct h1_msg *m)
{
	const struct cfg_http *cfg = hc_cfg(c);
	const char *path = base + m->path.off;
	size_t plen = m->path.len;
	if (!plen || path[0] == '?') {
		path = "/";
		plen = 1;
	}
	const char *host = base + m->authority.off;
	for (uint32_t i = 0; i < cfg->n_routes; i++) {
		const struct cfg_http_route *r = &cfg->routes[i];
		if (r->host && !host_match(r->host, host, m->authority.len))
			continue;
		size_t pl = strlen(r->path);
		if (plen < pl || memcmp(path, r->path, pl) != 0)
			continue;
		return i;
	}
	return cfg->n_routes;
}

/* "addr:port" ("[v6]:port") of the address the client connected to: the
 * authority a request without Host was sent to. */
static void local_authority(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	out[0] = 0;
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, sizeof(ip));
			snprintf(out, len, "%s:%u", ip, ntohs(s6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
			snprintf(out, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
		}
	} else if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(out, len, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

static bool method_idempotent(enum h1_method m)
{
	switch (m) {
	case H1_M_GET: case H1_M_HEAD: case H1_M_OPTIONS: case H1_M_TRACE:
	case H1_M_PUT: case H1_M_DELETE:
		return true;
	default:
		return false;
	}
}

/* The request head is complete: route it and start the upstream side. */
static void hc_start_request(struct hcli *c)
{
	struct rt_app *app = c->app;
	const struct cfg_http *cfg = hc_cfg(c);
	const char *base = c->in.data + c->in.head;
	const struct h1_msg *m = &c->rp.msg;
	c->t_start = c->w->loop.now;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	c->t_start_real = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	c->method = m->method;
	c->http10 = m->version_minor == 0;
	c->keep_alive = m->keep_alive;
	c->upgrade = m->upgrade;
	c->idempotent = method_idempotent(m->method);
	c->has_body = m->body == H1_BODY_CHUNKED ||
		      (m->body == H1_BODY_LENGTH && m->content_length > 0);
	c->expect = m->expect_continue && c->has_body;
	if (app->http)
		stats_add(&app->http->requests, 1);
	if (app->http_log)
		hc_log_keep(c, base, m);
	c->route = hc_route(c, base, m);
	if (m->method == H1_M_CONNECT) {
		c->phase = HC_EXCHANGE;
		c->in.head += m->head_len;
		hc_local(c, 405, true);
		return;
	}
	if (cfg->n_routes && c->route == cfg->n_routes) {
		c->phase = HC_EXCHANGE;
		c->in.head += m->head_len;
		hc_local(c, 404, false);
		return;
	}
	c->cluster = cfg->n_routes ? cfg->routes[c->route].cluster : 0;
	char local[INET6_ADDRSTRLEN + 16] = "";
	if (!m->authority.len)
		local_authority(&c->local_addr, local, sizeof(local));
	struct http_req_rewrite rw = {
		.default_host = local[0] ? local : NULL,
		.client_ip = c->ip,
		.client_v6 = c->v6,
		.forwarded = cfg->forwarded,
		.upgrade = c->upgrade,
		.http10 = c->http10,
	};
	sbuf_reset(&c->up_out);
	http_rewrite_request(&c->up_out, base, m, &rw);
	c->up_out_off = 0;
	/* the head's bytes are used: the body (or the next request) follows */
	h1_body_init(&c->rbody, m, NULL, false);
	c->in.head += m->head_len;
	c->parsed = c->in.head;
	c->req_done = !c->has_body;
	c->phase = HC_EXCHANGE;
	if (c->up_out.oom) {
		hc_local(c, 500, true);
		return;
	}
	hc_connect(c);
}

/* Makes u carry c's request: a fresh response parser, the counters. */
static void hup_bind(struct hup *u, struct hcli *c, bool reused)
{
	uint32_t size = c->w->pool.size;
	struct h1_limits lim = { .max_head = RESP_MAX_HEAD < size ? RESP_MAX_HEAD : size };
	lim.max_line = lim.max_head < H1_DEFAULT_MAX_LINE ? lim.max_head : H1_DEFAULT_MAX_LINE;
	lim.max_headers = RESP_MAX_HEADERS;
	h1_response_init(&u->p, &lim, u->hdr, RESP_MAX_HEADERS, c->method);
	u->cli = c;
	u->reused = reused;
	u->got_bytes = false;
	if (reused)
		u->writable = true;	/* idle: its send buffer drained long ago */
	c->up = u;
}

static void hc_connected(struct hcli *c, struct hup *u)
{
	struct rt_app_target *at = &c->app->targets[c->ti];
	uint64_t now = c->w->loop.now;
	uint64_t us = (now - u->connect_start) / 1000;
	stats_hist_observe(&c->app->stats->connect_latency, us);
	stats_hist_observe(&at->stats->connect_latency, us);
	stats_add(&at->stats->accepted, 1);
	target_report(at->t, true, now);
	u->connecting = false;
	ev_timer_stop(&c->w->loop, &u->timer);
}

/* Picks a target of the request's cluster and gets a connection to it:
 * from the pool, or a new one. Answers 503 (nothing usable) or 502. */
static void hc_connect(struct hcli *c)
{
	struct rt_app *app = c->app;
	const struct cfg_app *cfg = app->cfg;
	const struct cfg_http_cluster *cl = &cfg->http.clusters[c->cluster];
	struct http_app_stats *hs = app->http;
	struct http_worker *hw = c->hw;
	uint64_t now = c->w->loop.now;
	while (c->attempts < cfg->connect_attempts) {
		if (c->attempts && !c->idempotent)
			break;	/* only idempotent requests go to a second target */
		int i = lb_pick_range(app, cl->target_first, cl->n_targets, cl->policy,
				      app->cluster_rr ? &app->cluster_rr[c->cluster] : NULL, &c->tried,
				      now);
		if (i < 0) {
			if (!c->attempts) {
				log_info("app %s: no usable target in cluster %s", cfg->name, cl->name);
				hc_local(c, 503, false);
				return;
			}
			break;
		}
		lb_tried_set(&c->tried, (uint32_t)i);
		if (c->attempts && hs)
			stats_add(&hs->retries, 1);
		c->attempts++;
		c->ti = i;
		struct rt_app_target *at = &app->targets[i];
		struct hup *u = pool_take(hw, at->t);
		if (u) {
			hup_bind(u, c, true);
			stats_add(&at->stats->active, 1);
			if (hs)
				stats_add(&hs->upstream_reused, 1);
			return;
		}
		struct sockaddr_storage ss;
		socklen_t len;
		if (target_addr(at->t, &ss, &len) < 0) {
			stats_add(&at->stats->failed, 1);
			continue;
		}
		int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			log_warn("app %s: socket() failed: %s", cfg->name, strerror(errno));
			break;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
			log_info("app %s: connect to %s failed: %s", cfg->name, at->t->name, strerror(errno));
			close(fd);
			stats_add(&at->stats->failed, 1);
			target_report(at->t, false, now);
			continue;
		}
		u = calloc(1, sizeof(*u));
		if (!u) {
			close(fd);
			break;
		}
		u->hw = hw;
		u->t = target_ref(at->t);
		u->io.fd = fd;
		u->io.cb = hup_cb;
		u->connecting = true;
		u->connect_start = ev_now_ns();
		ev_timer_init(&u->timer, hup_timer_cb);
		hup_bind(u, c, false);
		u->out_armed = true;	/* the connect's completion */
		if (ev_add(&c->w->loop, &u->io, HC_EVENTS) < 0) {
			close(fd);
			u->io.fd = -1;
			target_put(u->t);
			free(u);
			break;
		}
		ev_timer_start(&c->w->loop, &u->timer, cfg->connect_timeout_ms);
		stats_add(&at->stats->active, 1);
		if (hs)
			stats_add(&hs->upstream_new, 1);
		return;
	}
	log_info("app %s: no target of cluster %s reachable for a request", cfg->name, cl->name);
	hc_local(c, 502, false);
}

/* The upstream connection failed before the response began: connect error,
 * or a pooled connection the server had closed. Retries when allowed. */
static void hc_upstream_failed(struct hcli *c, int err)
{
	struct hup *u = c->up;
	struct rt_app_target *at = &c->app->targets[c->ti];
	bool was_connecting = u->connecting, reused = u->reused;
	stats_sub(&at->stats->active, 1);
	if (was_connecting) {
		log_info("app %s: connect to %s failed: %s", c->app->cfg->name, at->t->name,
			 strerror(err));
		stats_add(&at->stats->failed, 1);
		target_report(at->t, false, c->w->loop.now);
	} else {
		log_info("app %s: %s connection to %s ended before any answer: %s", c->app->cfg->name,
			 reused ? "pooled" : "new", at->t->name, strerror(err));
	}
	hup_close(u, true);
	c->up = NULL;
	/* nothing of the request was delivered when connecting failed; a
	 * pooled connection closed under us took at most the head and the
	 * first body bytes: safe to resend when idempotent and still whole */
	bool resend = was_connecting ||
		      (reused && c->idempotent && c->parsed == c->in.head && !c->has_body);
	if (resend) {
		c->up_out_off = 0;
		if (reused && !was_connecting) {
			/* the same target again, on a fresh connection */
			c->tried.w[c->ti / 64] &= ~(1ull << (c->ti % 64));
			c->attempts--;
		}
		hc_connect(c);
		return;
	}
	hc_local(c, 502, true);
}

/* The final response head is in: decide what the client hears. */
static int hc_response_head(struct hcli *c)
{
	struct hup *u = c->up;
	const char *base = u->in.data + u->in.head;
	const struct h1_msg *m = &u->p.msg;
	const struct cfg_http *cfg = hc_cfg(c);
	if (m->status >= 100 && m->status < 200 && m->status != 101) {
		/* interim: forwarded, except to HTTP/1.0 clients and a 100 the
		 * client already had from pandit */
		if (!c->http10 && !(m->status == 100 && c->sent_100)) {
			struct http_resp_rewrite rw = { .via = cfg->forwarded };
			http_rewrite_response(&c->cli_out, base, m, &rw);
		}
		u->in.head += m->head_len;
		hup_bind(u, c, u->reused);
		u->got_bytes = true;
		return 0;
	}
	if (m->status == 101 && !c->upgrade) {
		log_info("app %s: %s answered 101 to a request without Upgrade", c->app->cfg->name,
			 u->t->name);
		return -1;
	}
	c->status = m->status;
	c->resp_head = true;
	/* An answer that comes before the request's body was all sent (an
	 * early 413, 401...) ends the connection: the rest of the body would
	 * have to be read and thrown away first. */
	if (m->body == H1_BODY_CLOSE || !c->keep_alive || c->eof || !c->req_sent)
		c->close_after = true;
	if (m->status == 101) {
		c->close_after = false;
		if (c->app->http)
			stats_add(&c->app->http->upgrades, 1);
	}
	struct http_resp_rewrite rw = { .via = cfg->forwarded, .close = c->close_after,
					.client_http10 = c->http10 };
	http_rewrite_response(&c->cli_out, base, m, &rw);
	h1_body_init(&c->sbody, m, NULL, false);
	u->in.head += m->head_len;
	c->uparsed = u->in.head;
	if (m->body == H1_BODY_NONE)
		c->resp_done = true;
	if (m->status == 101)
		c->resp_done = true;	/* the tunnel begins once the head is out */
	return 0;
}

/* After the exchange: account, free or pool the upstream, go on or close. */
static void hc_finish(struct hcli *c)
{
	struct hup *u = c->up;
	hc_account(c);
	c->t_start = 0;
	if (u) {
		struct rt_app_target *at = &c->app->targets[c->ti];
		stats_sub(&at->stats->active, 1);
		c->up = NULL;
		bool reuse = !c->local && c->req_sent && u->p.msg.keep_alive && !c->http10 &&
			     !c->upgrade && u->in.head == u->in.tail && !u->eof;
		if (reuse)
			pool_put(u, hc_cfg(c));
		else
			hup_close(u, false);
	}
	if (c->close_after || c->eof) {
		/* FIN after the response; read until the client's FIN so that
		 * unread bytes (a pipelined request) do not turn close into RST */
		shutdown(c->io.fd, SHUT_WR);
		c->shut = true;
		c->phase = HC_LINGER;
		hbuf_drop(c->w, &c->in);
		c->linger_until = c->w->loop.now + ms_ns(LINGER_MS);
		ev_timer_start_at(&c->w->loop, &c->timer, c->linger_until);
		return;
	}
	hc_next_request(c);
}

/* --- the tunnel (after 101) ------------------------------------------------ */

/* Moves bytes from one socket's buffer to the other socket. Returns -1 on
 * error, else whether anything moved. */
static int tunnel_move(struct hcli *c, int from_fd, struct hbuf *b, bool *from_readable,
		       bool *from_eof, bool from_rdhup, int to_fd, bool *to_writable, bool *to_shut)
{
	int moved = 0;
	for (;;) {
		bool progress = false;
		if (b->tail > b->head && *to_writable) {
			ssize_t n = send_some(to_fd, b->data + b->head, b->tail - b->head, to_writable);
			if (n < 0)
				return -1;
			if (n) {
				b->head += (uint32_t)n;
				progress = true;
				if (to_fd == c->io.fd)
					c->bytes_sent += (uint64_t)n;
				hc_count_bytes(c, (uint64_t)n, to_fd != c->io.fd);
			}
		}
		if (b->head == b->tail)
			b->head = b->tail = 0;
		if (!*from_eof && *from_readable) {
			if (hbuf_ensure(c->w, b, c->w->pool.size) < 0)
				return -1;
			if (b->tail == b->cap)
				hbuf_compact(b, NULL);
			if (b->tail < b->cap) {
				uint32_t room = b->cap - b->tail;
				ssize_t n = hbuf_recv(from_fd, b);
				if (n > 0) {
					if ((uint32_t)n < room && !from_rdhup)
						*from_readable = false;
					progress = true;
				} else if (n == 0) {
					*from_eof = true;
					progress = true;
				} else if (would_block(errno)) {
					*from_readable = false;
				} else {
					return -1;
				}
			}
		}
		if (*from_eof && b->head == b->tail && !*to_shut) {
			shutdown(to_fd, SHUT_WR);
			*to_shut = true;
		}
		if (!progress)
			return moved;
		moved = 1;
	}
}

static void hc_tunnel(struct hcli *c)
{
	struct hup *u = c->up;
	int a = tunnel_move(c, c->io.fd, &c->in, &c->readable, &c->eof, c->rdhup, u->io.fd,
			    &u->writable, &u->shut);
	if (a < 0) {
		hc_close(c, true);
		return;
	}
	int b = tunnel_move(c, u->io.fd, &u->in, &u->readable, &u->eof, u->rdhup, c->io.fd,
			    &c->writable, &c->shut);
	if (b < 0) {
		hc_close(c, true);
		return;
	}
	if (a || b)
		hc_touch(c);
	if (c->eof && u->eof && c->shut && u->shut) {
		hc_account(c);
		c->t_start = 0;
		hc_close(c, false);
		return;
	}
	hbuf_release_empty(c->w, &c->in);
	hbuf_release_empty(c->w, &u->in);
}

/* --- the state machine ---------------------------------------------------- */

/* Reads what the client sent, while the current phase wants it. Returns 1
 * when bytes came, 0 when nothing, -1 when the connection must go. */
static int hc_read_client(struct hcli *c)
{
	if (c->eof || !c->readable)
		return 0;
	bool want;
	if (c->phase == HC_HEAD)
		want = true;
	else if (c->phase == HC_EXCHANGE)
		want = !c->req_done;
	else
		want = c->phase == HC_LINGER;
	if (!want)
		return 0;
	/* A head starts in a small buffer that grows only as far as
	 * max_header_bytes needs (so a slow client holds little while its
	 * head trickles in); a body moves through a full-size pool buffer. */
	struct worker *w = c->w;
	uint32_t head_cap = hc_cfg(c)->max_header_bytes + 1;
	if (!c->in.data && hbuf_ensure(w, &c->in, c->phase == HC_EXCHANGE ? w->pool.size
									   : HEAD_BUF) < 0)
		return -1;
	if (c->phase == HC_LINGER)
		c->in.head = c->in.tail = 0;	/* discarded */
	if (c->in.tail == c->in.cap && c->in.head)
		hbuf_compact(&c->in, &c->parsed);
	if (c->in.tail == c->in.cap) {
		uint32_t want_cap = c->phase == HC_HEAD ? (c->in.cap * 2 < head_cap ? c->in.cap * 2
										 : head_cap)
							: w->pool.size;
		if (want_cap <= c->in.cap)
			return 0;	/* full: the other side must drain it first */
		if (hbuf_resize(w, &c->in, want_cap, &c->parsed) < 0)
			return -1;
	}
	uint32_t room = c->in.cap - c->in.tail;
	ssize_t n = hbuf_recv(c->io.fd, &c->in);
	if (n > 0) {
		if ((uint32_t)n < room && !c->rdhup)
			c->readable = false;
		if (c->phase == HC_HEAD && !c->head_start)
			c->head_start = c->w->loop.now;
		hc_touch(c);
		return 1;
	}
	if (n == 0) {
		c->eof = true;
		return 1;
	}
	if (would_block(errno)) {
		c->readable = false;
		return 0;
	}
	return -1;
}

/* Parses the request head when one is being read. */
static void hc_parse_head(struct hcli *c)
{
	if (c->phase != HC_HEAD || !c->in.data || c->in.tail == c->in.head)
		return;
	if (!c->head_start)
		c->head_start = c->w->loop.now;
	enum h1_res r = h1_parse(&c->rp, c->in.data + c->in.head, c->in.tail - c->in.head);
	if (r == H1_NEED_MORE)
		return;
	if (r == H1_ERROR) {
		struct http_app_stats *hs = c->app->http;
		if (hs) {
			stats_add(&hs->requests, 1);
			stats_add(&hs->bad_requests, 1);
		}
		log_debug("app %s: bad request from %s: %s", c->app->cfg->name, c->ip,
			  h1_err_str(c->rp.err));
		c->t_start = c->w->loop.now;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		c->t_start_real = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		c->route = hc_cfg(c)->n_routes;
		c->method = H1_M_OTHER;
		c->keep_alive = false;
		sbuf_reset(&c->logf);
		c->lg_method = c->lg_target = c->lg_host = c->lg_referer = c->lg_agent = 0;
		memset(c->lg_end, 0, sizeof(c->lg_end));
		c->phase = HC_EXCHANGE;
		hc_local(c, c->rp.status, true);
		return;
	}
	hc_start_request(c);
}

/* Sends the request head and validated body bytes upstream. Returns 1 on
 * progress, 0, -1 on a socket error, -2 when the body is malformed. */
static int hc_send_upstream(struct hcli *c)
{
	struct hup *u = c->up;
	if (!u || u->connecting || !u->writable || c->req_sent)
		return 0;
	/* validate what arrived of the body; what passed is sent */
	if (!c->req_done && c->parsed < c->in.tail) {
		size_t used = 0;
		enum h1_res r = h1_body_feed(&c->rbody, c->in.data + c->parsed, c->in.tail - c->parsed,
					     &used, NULL);
		c->parsed += (uint32_t)used;
		if (r == H1_DONE) {
			c->req_done = true;
		} else if (r == H1_ERROR) {
			log_info("app %s: bad request body from %s: %s", c->app->cfg->name, c->ip,
				 h1_err_str(c->rbody.ch.err));
			if (c->app->http)
				stats_add(&c->app->http->bad_requests, 1);
			return -2;
		}
	}
	uint32_t head_left = (uint32_t)c->up_out.len - c->up_out_off;
	uint32_t body_left = c->in.data ? c->parsed - c->in.head : 0;
	if (!head_left && !body_left) {
		c->req_sent = c->req_done;
		return 0;
	}
	ssize_t n = send2(u->io.fd, c->up_out.data + c->up_out_off, head_left,
			  body_left ? c->in.data + c->in.head : NULL, body_left, &u->writable);
	if (n < 0)
		return -1;
	uint32_t h = (uint32_t)n < head_left ? (uint32_t)n : head_left;
	c->up_out_off += h;
	c->in.head += (uint32_t)n - h;
	hc_count_bytes(c, (uint64_t)n - h, true);
	if (c->req_done && c->in.head == c->parsed && c->up_out_off == c->up_out.len)
		c->req_sent = true;
	return n > 0;
}

/* Reads and parses the response. Returns 1 on progress, 0, or -1 when the
 * exchange failed (already handled: the client was answered or closed). */
static int hc_read_upstream(struct hcli *c)
{
	struct hup *u = c->up;
	if (!u || u->connecting || u->eof || !u->readable)
		return 0;
	if (c->resp_done)
		return 0;	/* more would be the server talking out of turn */
	if (hbuf_ensure(c->w, &u->in, c->w->pool.size) < 0)
		return -1;
	if (u->in.tail == u->in.cap) {
		if (!u->in.head)
			return 0;
		hbuf_compact(&u->in, &c->uparsed);
	}
	uint32_t room = u->in.cap - u->in.tail;
	ssize_t n = hbuf_recv(u->io.fd, &u->in);
	if (n > 0) {
		if ((uint32_t)n < room && !u->rdhup)
			u->readable = false;
		u->got_bytes = true;
		hc_touch(c);
		return 1;
	}
	if (n == 0) {
		u->eof = true;
		return 1;
	}
	if (would_block(errno)) {
		u->readable = false;
		return 0;
	}
	int err = errno;
	if (!u->got_bytes && !c->resp_head) {
		hc_upstream_failed(c, err);
		return -1;
	}
	log_info("app %s: %s failed mid-response: %s", c->app->cfg->name, u->t->name, strerror(err));
	hc_close(c, true);
	return -1;
}

/* Parses what arrived of the response. Returns -1 when the exchange ended
 * badly (handled), else 0. */
static int hc_parse_response(struct hcli *c)
{
	struct hup *u = c->up;
	if (!u || c->local)
		return 0;
	while (!c->resp_head && u->in.data && u->in.tail > u->in.head) {
		enum h1_res r = h1_parse(&u->p, u->in.data + u->in.head, u->in.tail - u->in.head);
		if (r == H1_NEED_MORE)
			break;
		if (r == H1_ERROR || hc_response_head(c) < 0) {
			log_info("app %s: bad response from %s: %s", c->app->cfg->name, u->t->name,
				 r == H1_ERROR ? h1_err_str(u->p.err) : "unexpected 101");
			if (c->cli_out_off || c->bytes_sent) {
				hc_close(c, true);
				return -1;
			}
			hc_local(c, 502, true);
			return 0;
		}
	}
	if (!c->resp_head && u->eof) {
		if (!u->got_bytes) {
			hc_upstream_failed(c, ECONNRESET);
			return c->dead ? -1 : 0;
		}
		log_info("app %s: %s closed before a complete response head", c->app->cfg->name,
			 u->t->name);
		if (c->cli_out_off || c->bytes_sent) {
			hc_close(c, true);
			return -1;
		}
		hc_local(c, 502, true);
		return 0;
	}
	if (c->resp_head && !c->resp_done && c->uparsed < u->in.tail) {
		size_t used = 0;
		enum h1_res r = h1_body_feed(&c->sbody, u->in.data + c->uparsed, u->in.tail - c->uparsed,
					     &used, NULL);
		c->uparsed += (uint32_t)used;
		if (r == H1_DONE) {
			c->resp_done = true;
		} else if (r == H1_ERROR) {
			log_info("app %s: bad response body from %s", c->app->cfg->name, u->t->name);
			hc_close(c, true);
			return -1;
		}
	}
	if (c->resp_head && !c->resp_done && u->eof && c->uparsed == u->in.tail) {
		if (c->sbody.kind == H1_BODY_CLOSE) {
			c->resp_done = true;
		} else {
			log_info("app %s: %s closed mid-response", c->app->cfg->name, u->t->name);
			hc_close(c, true);
			return -1;
		}
	}
	return 0;
}

/* Writes the pending response head and body bytes to the client. */
static int hc_write_client(struct hcli *c)
{
	if (!c->writable)
		return 0;
	struct hup *u = c->up;
	uint32_t head_left = (uint32_t)c->cli_out.len - c->cli_out_off;
	uint32_t body_left = u && c->resp_head && u->in.data ? c->uparsed - u->in.head : 0;
	if (!head_left && !body_left)
		return 0;
	ssize_t n = send2(c->io.fd, c->cli_out.data + c->cli_out_off, head_left,
			  body_left ? u->in.data + u->in.head : NULL, body_left, &c->writable);
	if (n < 0)
		return -1;
	uint32_t h = (uint32_t)n < head_left ? (uint32_t)n : head_left;
	c->cli_out_off += h;
	c->bytes_sent += (uint64_t)n;
	if (body_left) {
		u->in.head += (uint32_t)n - h;
		hc_count_bytes(c, (uint64_t)n - h, false);
	}
	if (!c->resp_head && c->cli_out_off == c->cli_out.len) {
		/* interim responses written: room for the final one */
		sbuf_reset(&c->cli_out);
		c->cli_out_off = 0;
	}
	return n > 0;
}

static bool hc_exchange_done(const struct hcli *c)
{
	if (!c->resp_done || c->cli_out_off < c->cli_out.len)
		return false;
	if (c->local)
		return true;
	const struct hup *u = c->up;
	return u && u->in.head == c->uparsed;
}

/* Sending upstream failed: the request body broke its framing (bad_body),
 * or the upstream socket failed. */
static void hc_send_failed(struct hcli *c, bool bad_body)
{
	bool answered = c->resp_head || c->cli_out_off || c->bytes_sent;
	if (bad_body) {
		/* the upstream has a partial request: it goes, the client hears 400 */
		if (answered)
			hc_close(c, true);
		else
			hc_local(c, 400, true);
		return;
	}
	if (!answered && c->up && !c->up->got_bytes) {
		hc_upstream_failed(c, errno);
		return;
	}
	hc_close(c, true);
}

static uint64_t ms_ns(uint32_t ms)
{
	return (uint64_t)ms * 1000000ull;
}

/* When the state c is in times out (CLOCK_MONOTONIC ns), 0 for never. */
static uint64_t hc_deadline(const struct hcli *c)
{
	const struct cfg_http *cfg = hc_cfg(c);
	uint32_t ms;
	switch (c->phase) {
	case HC_LINGER:
		return c->linger_until;
	case HC_HEAD:
		if (c->head_start)
			return c->head_start + ms_ns(cfg->header_timeout_ms);
		ms = cfg->client_idle_ms;
		break;
	case HC_TUNNEL:
		ms = c->app->cfg->idle_timeout_ms;
		break;
	case HC_EXCHANGE:
	default:
		ms = cfg->response_timeout_ms;
		break;
	}
	return ms ? c->last_active + ms_ns(ms) : 0;
}

static void hc_run_inner(struct hcli *c);

static void hc_run(struct hcli *c)
{
	hc_run_inner(c);
	if (c->dead)
		return;
	struct ev_loop *loop = &c->w->loop;
	if (!c->writable)
		want_out(loop, &c->io, &c->out_armed, true);
	struct hup *u = c->up;
	if (u && !u->writable)
		want_out(loop, &u->io, &u->out_armed, true);
}

static void hc_run_inner(struct hcli *c)
{
	while (!c->dead) {
		int progress = 0;
		if (c->phase == HC_TUNNEL) {
			hc_tunnel(c);
			return;
		}
		int r = hc_read_client(c);
		if (r < 0) {
			hc_close(c, true);
			return;
		}
		progress |= r;
		if (c->phase == HC_LINGER) {
			if (c->eof) {
				hc_close(c, false);
				return;
			}
			if (!progress)
				return;
			continue;
		}
		if (c->phase == HC_HEAD) {
			hc_parse_head(c);
			if (c->dead)
				return;
			if (c->phase == HC_HEAD) {
				if (c->eof) {
					/* gone between requests, or mid-head */
					hc_close(c, false);
					return;
				}
				if (!progress)
					break;
				continue;
			}
		}
		/* HC_EXCHANGE */
		struct hup *u = c->up;
		if (u && u->connecting && (u->writable || u->rdhup)) {
			int err = 0;
			socklen_t len = sizeof(err);
			if (getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
				err = errno;
			if (!err && !u->writable)
				err = ECONNREFUSED;
			if (err) {
				hc_upstream_failed(c, err);
				continue;
			}
			hc_connected(c, u);
			progress = 1;
		}
		if (u && !u->connecting && c->expect && !c->sent_100 && !c->local && !c->http10) {
			/* the body is welcome now: pandit says so itself (the
			 * Expect field is not forwarded) */
			sbuf_puts(&c->cli_out, "HTTP/1.1 100 Continue\r\n\r\n");
			c->sent_100 = true;
		}
		if (!c->local) {
			r = hc_send_upstream(c);
			if (r < 0) {
				hc_send_failed(c, r == -2);
				continue;
			}
			progress |= r;
			r = hc_read_upstream(c);
			if (c->dead)
				return;
			if (r > 0)
				progress = 1;
			if (r >= 0 && hc_parse_response(c) < 0)
				return;
			if (c->dead)
				return;
		}
		r = hc_write_client(c);
		if (r < 0) {
			hc_close(c, true);
			return;
		}
		progress |= r;
		if (c->eof && !c->req_done) {
			/* the client left before its request was complete */
			hc_close(c, false);
			return;
		}
		if (hc_exchange_done(c)) {
			if (!c->local && c->status == 101) {
				c->phase = HC_TUNNEL;
				ev_timer_stop(&c->w->loop, &c->timer);
				hc_touch(c);
				continue;
			}
			hc_finish(c);
			progress = 1;
			if (c->dead)
				return;
			continue;
		}
		if (!progress)
			break;
		hc_touch(c);
	}
	if (c->dead)
		return;
	/* The timer may stay armed for an earlier time than the state's
	 * deadline (it checks again when it fires): a busy connection then
	 * does not move it in the heap on every event. */
	uint64_t d = hc_deadline(c);
	if (!d)
		ev_timer_stop(&c->w->loop, &c->timer);
	else if (!ev_timer_armed(&c->timer) || c->timer.when > d)
		ev_timer_start_at(&c->w->loop, &c->timer, d);
}

static void hc_timer_cb(struct ev_loop *loop, struct ev_timer *t)
{
	struct hcli *c = container_of(t, struct hcli, timer);
	const struct cfg_http *cfg = hc_cfg(c);
	uint64_t d = hc_deadline(c);
	if (!d)
		return;
	if (loop->now < d) {
		ev_timer_start_at(loop, t, d);
		return;
	}
	switch (c->phase) {
	case HC_LINGER:
		hc_close(c, false);
		return;
	case HC_HEAD:
		if (!c->head_start) {
			hc_close(c, false);	/* idle keep-alive connection */
			return;
		}
		log_debug("app %s: request head from %s not complete after %u ms", c->app->cfg->name,
			  c->ip, cfg->header_timeout_ms);
		c->t_start = loop->now;
		c->t_start_real = 0;
		c->route = cfg->n_routes;
		c->method = H1_M_OTHER;
		if (c->app->http)
			stats_add(&c->app->http->requests, 1);
		sbuf_reset(&c->logf);
		c->lg_method = c->lg_target = c->lg_host = c->lg_referer = c->lg_agent = 0;
		memset(c->lg_end, 0, sizeof(c->lg_end));
		c->phase = HC_EXCHANGE;
		hc_local(c, 408, true);
		hc_run(c);
		return;
	case HC_TUNNEL:
		hc_close(c, false);
		return;
	case HC_EXCHANGE:
	default:
		if (!c->resp_head && !c->local && c->cli_out_off == 0) {
			log_info("app %s: no response from %s within %u ms", c->app->cfg->name,
				 c->ti >= 0 ? c->app->targets[c->ti].t->name : "upstream",
				 cfg->response_timeout_ms);
			hc_local(c, 504, true);
			hc_run(c);
			return;
		}
		log_info("app %s: exchange stalled for %u ms, closing", c->app->cfg->name,
			 cfg->response_timeout_ms);
		hc_close(c, true);
		return;
	}
}

static void hc_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	(void)loop;
	struct hcli *c = container_of(io, struct hcli, io);
	if (c->dead)
		return;
	mark_events(events, &c->rdhup, &c->readable, &c->writable);
	hc_run(c);
}

static void http_accept(struct worker *w, int fd, struct rt_app *app)
{
	struct http_worker *hw = hw_get(w);
	struct hcli *c = hw ? calloc(1, sizeof(*c)) : NULL;
	uint32_t cap = app->cfg->http.max_headers ? app->cfg->http.max_headers : H1_DEFAULT_MAX_HEADERS;
	struct h1_header *hdr = c ? calloc(cap, sizeof(*hdr)) : NULL;
	stats_add(&app->stats->accepted, 1);
	stats_add(&stats_global.accepted, 1);
	if (!hdr) {
		log_warn("out of memory for an http client");
		free(c);
		close(fd);
		stats_add(&app->stats->failed, 1);
		if (app->cfg->max_connections)
			atomic_fetch_sub_explicit(&app->active, 1, memory_order_relaxed);
		rt_app_put(app);
		return;
	}
	stats_add(&app->stats->active, 1);
	stats_add(&stats_global.active, 1);
	c->w = w;
	c->hw = hw;
	c->app = app;
	c->io.fd = fd;
	c->io.cb = hc_cb;
	c->readable = c->writable = true;
	c->rhdr = hdr;
	c->rhdr_cap = cap;
	c->ti = -1;
	ev_timer_init(&c->timer, hc_timer_cb);
	c->generation = w->snap ? w->snap->generation : 0;
	socklen_t llen = sizeof(c->local_addr);
	if (getsockname(fd, (struct sockaddr *)&c->local_addr, &llen) < 0)
		c->local_addr.ss_family = 0;	/* unknown: never looked up again */
	socklen_t len = sizeof(c->peer);
	if (getpeername(fd, (struct sockaddr *)&c->peer, &len) == 0) {
		if (c->peer.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&c->peer;
			if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
				inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], c->ip, sizeof(c->ip));
			} else {
				inet_ntop(AF_INET6, &s6->sin6_addr, c->ip, sizeof(c->ip));
				c->v6 = true;
			}
		} else if (c->peer.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&c->peer)->sin_addr, c->ip,
				  sizeof(c->ip));
		}
	}
	if (!c->ip[0])
		strcpy(c->ip, "unknown");
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sbuf_init(&c->up_out);
	sbuf_init(&c->cli_out);
	sbuf_init(&c->logf);
	c->next = hw->clients;
	if (hw->clients)
		hw->clients->prev = c;
	hw->clients = c;
	w->n_conns++;
	hc_next_request(c);
	hc_touch(c);
	if (ev_add(&w->loop, &c->io, HC_EVENTS_IN) < 0) {
		hc_close(c, true);
		return;
	}
	hc_run(c);
}

/* --- worker hooks ---------------------------------------------------------- */

static void hw_reap(struct http_worker *hw)
{
	while (hw->dead_clients) {
		struct hcli *c = hw->dead_clients;
		hw->dead_clients = c->dnext;
		free(c);
	}
	while (hw->dead_ups) {
		struct hup *u = hw->dead_ups;
		hw->dead_ups = u->dnext;
		target_put(u->t);
		free(u);
	}
}

void http_worker_before_sleep(struct worker *w)
{
	struct http_worker *hw = w->http;
	hw_reap(hw);
	if (hw->log)
		http_log_flush(hw->log);
}

void http_worker_stop(struct worker *w)
{
	struct http_worker *hw = w->http;
	if (!hw)
		return;
	while (hw->clients)
		hc_close(hw->clients, true);
	for (uint32_t b = 0; b < POOL_BUCKETS; b++) {
		while (hw->pool[b]) {
			struct hup *u = hw->pool[b];
			pool_unlink(u);
			hup_close(u, false);
		}
	}
	hw_reap(hw);
	if (hw->log)
		http_log_buf_free(hw->log);
	while (hw->n_small)
		free(hw->small[--hw->n_small]);
	free(hw);
	w->http = NULL;
}

const struct proto_handler proto_http = {
	.name = "http",
	.accept = http_accept,
};
