/* admin.c - the admin HTTP endpoint: one thread, one edge-triggered loop, bounded clients and buffers. */
#include "admin/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin/http_req.h"
#include "core/ev.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "stats/stats.h"
#include "steer/steer.h"

/* Body bytes rendered per step: what one client holds in memory beyond its
 * request buffer, however many apps there are. */
#define ADMIN_CHUNK		(64u * 1024)
/* Bytes read and thrown away while lingering before close. */
#define ADMIN_LINGER_MAX	(64u * 1024)
#define ADMIN_BACKLOG		128
#define ADMIN_ACCEPT_RETRY_MS	100u

enum client_state {
	CLIENT_READ,		/* reading the request head */
	CLIENT_WRITE,		/* sending the response */
	CLIENT_LINGER,		/* response sent, write side shut: draining until EOF */
};

struct admin_client {
	struct ev_io io;
	struct ev_timer timer;		/* READ: header deadline; WRITE: stall; LINGER: end */
	struct admin *adm;
	struct admin_client *prev, *next;
	enum client_state state;
	uint64_t write_deadline;	/* CLOCK_MONOTONIC ns: the whole response by then */

	char in[HTTP_REQ_MAX_HEAD];
	size_t in_len;

	struct sbuf out;		/* bytes to send */
	size_t out_off;
	struct sbuf body;		/* one rendered step, before chunk framing */

	/* a response too long for one step streams from here */
	bool streaming, chunked, json;
	struct stats_render render;
	struct rt_snapshot *snap;
	struct steer_counters steer;
	size_t lingered;
};

struct admin {
	struct ev_loop loop;
	struct ev_io listen_io;
	struct ev_timer accept_retry;	/* after EMFILE and friends */
	struct admin_source src;
	struct admin_opts opts;
	struct admin_client *clients;
	uint32_t n_clients;
	uint64_t last_accept_warn_ns;
	pthread_t thread;
	bool thread_started;
};

/* --- listener ---------------------------------------------------------------- */

static void format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "(family %d)", sa->sa_family);
	}
}

int admin_listen(const struct sockaddr *addr, socklen_t len)
{
	char name[INET6_ADDRSTRLEN + 16];
	format_addr(addr, name, sizeof(name));
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int err = -errno;
		log_err("admin: socket() for %s failed: %s", name, strerror(errno));
		return err;
	}
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		log_warn("admin: setsockopt(SO_REUSEADDR) on %s failed: %s", name, strerror(errno));
	if (bind(fd, addr, len) < 0) {
		int err = -errno;
		log_err("admin: bind() to %s failed: %s", name, strerror(errno));
		close(fd);
		return err;
	}
	if (listen(fd, ADMIN_BACKLOG) < 0) {
		int err = -errno;
		log_err("admin: listen() on %s failed: %s", name, strerror(errno));
		close(fd);
		return err;
	}
	return fd;
}

/* --- clients -------------------------------------------------------------------- */

static void client_release_render(struct admin_client *c)
{
	if (c->snap) {
		c->adm->src.snapshot_put(c->snap);
		c->snap = NULL;
	}
	c->streaming = false;
}

static void client_close(struct admin_client *c)
{
	struct admin *a = c->adm;
	ev_timer_stop(&a->loop, &c->timer);
	ev_del(&a->loop, &c->io);
	close(c->io.fd);
	client_release_render(c);
	sbuf_free(&c->out);
	sbuf_free(&c->body);
	if (c->prev)
		c->prev->next = c->next;
	else
		a->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	a->n_clients--;
	free(c);
}

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

/* Status line and the headers every response has. The caller adds the
 * framing header (Content-Length or Transfer-Encoding) and the blank line. */
static void put_head(struct sbuf *out, int status, const char *ctype)
{
	char date[64];
	struct tm tm;
	time_t now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	sbuf_printf(out, "HTTP/1.1 %d %s\r\nServer: pandit\r\nDate: %s\r\nContent-Type: %s\r\n"
		    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
		    status, status_text(status), date, ctype);
	if (status == 405)
		sbuf_puts(out, "Allow: GET, HEAD\r\n");
}

static void client_flush(struct admin_client *c);
static void client_timer_cb(struct ev_loop *loop, struct ev_timer *t);

/* A complete response held in memory (errors, the index, small pages). */
static void client_respond(struct admin_client *c, int status, const char *ctype,
			   const char *body, size_t body_len, bool head_only)
{
	sbuf_reset(&c->out);
	put_head(&c->out, status, ctype);
	sbuf_printf(&c->out, "Content-Length: %zu\r\n\r\n", body_len);
	if (!head_only)
		sbuf_append(&c->out, body, body_len);
}

static void client_error(struct admin_client *c, int status, bool head_only)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%d %s\n", status, status_text(status));
	client_respond(c, status, "text/plain; charset=utf-8", body, (size_t)n, head_only);
}

/* Frames c->body as one chunk of a chunked body into c->out. */
static void frame_chunk(struct admin_client *c)
{
	if (!c->body.len)
		return;	/* a zero-length chunk would end the body */
	sbuf_printf(&c->out, "%zx\r\n", c->body.len);
	sbuf_append(&c->out, c->body.data, c->body.len);
	sbuf_puts(&c->out, "\r\n");
}

/* Renders the next step of a streamed body straight into c->out, behind a
 * fixed-width chunk-size line patched afterwards (leading zeros are valid
 * chunk-size digits), so a client holds one buffer. Returns false on
 * allocation failure. */
static bool client_refill(struct admin_client *c)
{
	static const char placeholder[] = "00000000\r\n";
	const size_t ph = sizeof(placeholder) - 1;
	sbuf_reset(&c->out);
	c->out_off = 0;
	if (c->chunked)
		sbuf_append(&c->out, placeholder, ph);
	size_t start = c->out.len;
	bool done = stats_render_step(&c->render, &c->out, start + ADMIN_CHUNK);
	if (done && c->json)
		sbuf_puts(&c->out, "\n");
	if (c->out.oom)
		return false;
	if (c->chunked) {
		size_t n = c->out.len - start;
		if (n) {
			if (n >> 32)
				return false;	/* cannot happen: a step is far below 4 GiB */
			for (size_t i = ph - 2; i-- > 0; n >>= 4)
				c->out.data[i] = "0123456789abcdef"[n & 15];
			sbuf_puts(&c->out, "\r\n");
		} else {
			c->out.len = 0;
		}
		if (done)
			sbuf_puts(&c->out, "0\r\n\r\n");
	}
	if (done)
		client_release_render(c);
	return !c->out.oom;
}

/* /metrics and /stats: the first step decides between a Content-Length
 * (the whole page fit) and streaming (chunked for HTTP/1.1, delimited by
 * the close for HTTP/1.0). */
static void client_stats(struct admin_client *c, const struct http_req *req, bool json)
{
	struct admin *a = c->adm;
	const char *ctype = json ? "application/json" : "text/plain; version=0.0.4; charset=utf-8";
	bool head_only = req->method == HTTP_METHOD_HEAD;
	const struct steer_counters *steer = NULL;

	c->snap = a->src.snapshot_get ? a->src.snapshot_get(a->src.ctx) : NULL;
	if (a->src.steer_counters && a->src.steer_counters(a->src.ctx, &c->steer) == 0)
		steer = &c->steer;
	c->json = json;
	stats_render_begin(&c->render, json ? STATS_FMT_JSON : STATS_FMT_PROMETHEUS, c->snap, steer);
	sbuf_reset(&c->body);
	bool done = stats_render_step(&c->render, &c->body, ADMIN_CHUNK);
	if (done && json)
		sbuf_puts(&c->body, "\n");
	if (c->body.oom) {
		log_err("admin: out of memory rendering %s", json ? "/stats" : "/metrics");
		client_release_render(c);
		client_error(c, 500, head_only);
		return;
	}
	if (done || head_only) {
		client_release_render(c);
		if (done) {
			client_respond(c, 200, ctype, c->body.data, c->body.len, head_only);
			return;
		}
	}
	/* too long for one step: stream it */
	sbuf_reset(&c->out);
	put_head(&c->out, 200, ctype);
	c->chunked = req->version_minor >= 1;
	if (c->chunked)
		sbuf_puts(&c->out, "Transfer-Encoding: chunked\r\n");
	sbuf_puts(&c->out, "\r\n");
	if (head_only)
		return;
	c->streaming = true;
	if (c->chunked)
		frame_chunk(c);
	else
		sbuf_append(&c->out, c->body.data, c->body.len);
	sbuf_free(&c->body);	/* the next steps render into c->out */
}

static const char index_page[] =
	"pandit admin endpoint\n"
	"\n"
	"GET /metrics  Prometheus text exposition format\n"
	"GET /stats    the same statistics as one JSON object\n";

static void client_route(struct admin_client *c, const struct http_req *req)
{
	bool head_only = req->method == HTTP_METHOD_HEAD;
	int route;	/* 0: index, 1: metrics, 2: stats */
	if (req->path_len == 1 && req->path[0] == '/')
		route = 0;
	else if (req->path_len == 8 && memcmp(req->path, "/metrics", 8) == 0)
		route = 1;
	else if (req->path_len == 6 && memcmp(req->path, "/stats", 6) == 0)
		route = 2;
	else {
		client_error(c, 404, head_only);
		return;
	}
	if (req->method != HTTP_METHOD_GET && req->method != HTTP_METHOD_HEAD) {
		client_error(c, 405, false);
		return;
	}
	if (route == 0)
		client_respond(c, 200, "text/plain; charset=utf-8", index_page,
			       sizeof(index_page) - 1, head_only);
	else
		client_stats(c, req, route == 2);
}

static void client_arm(struct admin_client *c, uint64_t when_ns)
{
	if (ev_timer_start_at(&c->adm->loop, &c->timer, when_ns) < 0)
		log_err("admin: timer start failed: out of memory");
}

/* Switches to sending what client_route() or client_error() prepared. */
static void client_start_write(struct admin_client *c)
{
	struct admin *a = c->adm;
	if (c->out.oom) {
		log_err("admin: out of memory building a response");
		client_close(c);
		return;
	}
	c->state = CLIENT_WRITE;
	c->out_off = 0;
	c->write_deadline = a->loop.now + (uint64_t)a->opts.response_timeout_ms * 1000000ull;
	client_flush(c);
}

static void client_linger_drain(struct admin_client *c)
{
	char buf[4096];
	for (;;) {
		ssize_t n = recv(c->io.fd, buf, sizeof(buf), 0);
		if (n > 0) {
			c->lingered += (size_t)n;
			if (c->lingered > ADMIN_LINGER_MAX) {
				client_close(c);
				return;
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		client_close(c);	/* EOF or error */
		return;
	}
}

/* The response is out: shut our side and read until the client closes, so
 * that unread request bytes do not turn the close into a reset that could
 * destroy the response before the client has read it. */
static void client_start_linger(struct admin_client *c)
{
	struct admin *a = c->adm;
	if (shutdown(c->io.fd, SHUT_WR) < 0) {
		client_close(c);
		return;
	}
	c->state = CLIENT_LINGER;
	sbuf_free(&c->out);
	sbuf_free(&c->body);
	client_arm(c, a->loop.now + (uint64_t)a->opts.linger_ms * 1000000ull);
	client_linger_drain(c);
}

static void client_flush(struct admin_client *c)
{
	struct admin *a = c->adm;
	bool progress = false;
	for (;;) {
		while (c->out_off < c->out.len) {
			ssize_t n = send(c->io.fd, c->out.data + c->out_off, c->out.len - c->out_off,
					 MSG_NOSIGNAL);
			if (n > 0) {
				c->out_off += (size_t)n;
				progress = true;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				/* wait for EPOLLOUT, but not forever */
				if (progress || !ev_timer_armed(&c->timer)) {
					uint64_t when = a->loop.now +
						(uint64_t)a->opts.write_stall_ms * 1000000ull;
					client_arm(c, when < c->write_deadline ? when : c->write_deadline);
				}
				return;
			}
			log_debug("admin: send() failed: %s", n < 0 ? strerror(errno) : "no progress");
			client_close(c);
			return;
		}
		if (c->streaming) {
			if (!client_refill(c)) {
				log_err("admin: out of memory streaming a response");
				client_close(c);	/* cut: the client sees no final chunk */
				return;
			}
			continue;
		}
		ev_timer_stop(&a->loop, &c->timer);
		client_start_linger(c);
		return;
	}
}

static void client_read(struct admin_client *c)
{
	bool eof = false;
	while (c->in_len < sizeof(c->in)) {	/* when full, the parser decides (414 or 431) */
		ssize_t n = recv(c->io.fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
		if (n > 0) {
			c->in_len += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			client_close(c);	/* reset: nobody to answer */
			return;
		}
		eof = true;	/* a client may send its request and shut its side */
		break;
	}
	struct http_req req;
	int r = http_req_parse(c->in, c->in_len, &req);
	if (r == -EAGAIN) {
		if (eof)
			client_close(c);	/* the head will never be complete */
		return;
	}
	ev_timer_stop(&c->adm->loop, &c->timer);
	if (r > 0)
		client_error(c, r, false);
	else
		client_route(c, &req);
	client_start_write(c);
}

static void client_io_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	(void)loop;
	struct admin_client *c = container_of(io, struct admin_client, io);
	switch (c->state) {
	case CLIENT_READ:
		if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			client_read(c);
		break;
	case CLIENT_WRITE:
		if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
			client_flush(c);
		break;
	case CLIENT_LINGER:
		client_linger_drain(c);
		break;
	}
}

static void client_timer_cb(struct ev_loop *loop, struct ev_timer *t)
{
	(void)loop;
	struct admin_client *c = container_of(t, struct admin_client, timer);
	switch (c->state) {
	case CLIENT_READ:
		/* slowloris: the head did not arrive in time */
		client_error(c, 408, false);
		client_start_write(c);
		break;
	case CLIENT_WRITE:
		log_debug("admin: client too slow reading its response, closing");
		client_close(c);
		break;
	case CLIENT_LINGER:
		client_close(c);
		break;
	}
}

static void admin_accept_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events);

static void admin_accept_retry_cb(struct ev_loop *loop, struct ev_timer *t)
{
	struct admin *a = container_of(t, struct admin, accept_retry);
	admin_accept_cb(loop, &a->listen_io, EPOLLIN);
}

static void admin_add_client(struct admin *a, int fd)
{
	if (a->n_clients >= a->opts.max_clients) {
		/* the newest over the limit goes; the ones being served stay */
		log_debug("admin: %u clients already, closing a new one", a->n_clients);
		close(fd);
		return;
	}
	struct admin_client *c = calloc(1, sizeof(*c));
	if (!c) {
		log_err("admin: out of memory accepting a client");
		close(fd);
		return;
	}
	c->adm = a;
	c->io.fd = fd;
	c->io.cb = client_io_cb;
	ev_timer_init(&c->timer, client_timer_cb);
	sbuf_init(&c->out);
	sbuf_init(&c->body);
	c->state = CLIENT_READ;
	if (ev_add(&a->loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
		close(fd);
		free(c);
		return;
	}
	c->next = a->clients;
	if (a->clients)
		a->clients->prev = c;
	a->clients = c;
	a->n_clients++;
	client_arm(c, a->loop.now + (uint64_t)a->opts.header_timeout_ms * 1000000ull);
}

static void admin_accept_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	(void)events;
	struct admin *a = container_of(io, struct admin, listen_io);
	for (;;) {
		int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			admin_add_client(a, fd);
			continue;
		}
		switch (errno) {
		case EAGAIN:
#if EAGAIN != EWOULDBLOCK
		case EWOULDBLOCK:
#endif
			return;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			/* the pending connections stay queued, and with edge
			 * triggering nothing would tell us again: retry soon */
			if (loop->now - a->last_accept_warn_ns > 1000000000ull) {
				log_warn("admin: accept4() failed: %s", strerror(errno));
				a->last_accept_warn_ns = loop->now;
			}
			if (!ev_timer_armed(&a->accept_retry))
				ev_timer_start(loop, &a->accept_retry, ADMIN_ACCEPT_RETRY_MS);
			return;
		default:
			log_err("admin: accept4() failed: %s", strerror(errno));
			return;
		}
	}
}

/* --- thread ------------------------------------------------------------------------ */

static void *admin_thread(void *arg)
{
	struct admin *a = arg;
	log_set_thread_name("admin");
	int err = ev_run(&a->loop);
	if (err)
		log_err("admin: event loop stopped: %s", strerror(-err));
	return NULL;
}

int admin_start(int listen_fd, const struct admin_source *src, const struct admin_opts *opts,
		struct admin **out)
{
	if (!src || !src->snapshot_put) {
		close(listen_fd);
		return -EINVAL;
	}
	struct admin *a = calloc(1, sizeof(*a));
	if (!a) {
		close(listen_fd);
		return -ENOMEM;
	}
	a->src = *src;
	if (opts)
		a->opts = *opts;
	if (!a->opts.max_clients)
		a->opts.max_clients = ADMIN_DEFAULT_MAX_CLIENTS;
	if (!a->opts.header_timeout_ms)
		a->opts.header_timeout_ms = ADMIN_DEFAULT_HEADER_TIMEOUT_MS;
	if (!a->opts.write_stall_ms)
		a->opts.write_stall_ms = ADMIN_DEFAULT_WRITE_STALL_MS;
	if (!a->opts.response_timeout_ms)
		a->opts.response_timeout_ms = ADMIN_DEFAULT_RESPONSE_TIMEOUT_MS;
	if (!a->opts.linger_ms)
		a->opts.linger_ms = ADMIN_DEFAULT_LINGER_MS;

	int err = ev_init(&a->loop);
	if (err) {
		close(listen_fd);
		free(a);
		return err;
	}
	a->loop.data = a;
	ev_timer_init(&a->accept_retry, admin_accept_retry_cb);
	a->listen_io.fd = listen_fd;
	a->listen_io.cb = admin_accept_cb;
	err = ev_add(&a->loop, &a->listen_io, EPOLLIN | EPOLLET);
	if (err)
		goto fail;

	/* the thread takes no signals: they belong to the main thread */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = -pthread_create(&a->thread, NULL, admin_thread, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		log_err("admin: pthread_create() failed: %s", strerror(-err));
		goto fail;
	}
	a->thread_started = true;
	*out = a;
	return 0;
fail:
	close(listen_fd);
	ev_destroy(&a->loop);
	free(a);
	return err;
}

void admin_stop(struct admin *a)
{
	if (!a)
		return;
	if (a->thread_started) {
		ev_stop(&a->loop);
		pthread_join(a->thread, NULL);
	}
	while (a->clients)
		client_close(a->clients);
	ev_timer_stop(&a->loop, &a->accept_retry);
	ev_del(&a->loop, &a->listen_io);
	close(a->listen_io.fd);
	ev_destroy(&a->loop);
	free(a);
}
