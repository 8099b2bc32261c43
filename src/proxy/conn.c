/* conn.c - one proxied TCP connection: upstream connect with failover, then a bounded relay with half-close. */
#include "proxy/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "kpath/foo_kern.h"
#include "kpath/splice.h"
#include "proto/proto.h"
#include "proxy/worker.h"
#include "stats/stats.h"

#define CONN_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

enum pump_result { PUMP_OK, PUMP_DONE, PUMP_ABORT };

static void conn_connect_next(struct conn *c);
static void conn_free(struct conn *c, bool reset);
static bool splice_drained(struct conn *c, int d);
static int splice_watch_verdict(struct conn *c);
static bool splice_wanted(const struct conn *c);
static bool splice_eof_real(struct conn *c, int d);
static void splice_maybe_resume(struct conn *c, int d);
static void conn_maybe_splice(struct conn *c);
static void conn_maybe_shortcut(struct conn *c, bool last);

static void set_sock_opts(int fd, const struct cfg_app *cfg)
{
	int one = 1;
	/* a proxy must not add Nagle delays on top of its peers' own choices */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (cfg->keepalive.enabled) {
		int idle = (int)cfg->keepalive.idle_s, intvl = (int)cfg->keepalive.interval_s,
		    cnt = (int)cfg->keepalive.count;
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	}
}

/* Makes close() send RST instead of FIN: used to pass a reset on. */
static void set_reset_on_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static struct rt_app_target *conn_target(struct conn *c)
{
	return c->ti >= 0 ? &c->app->targets[c->ti] : NULL;
}

/* --- relay ------------------------------------------------------------------ */

static bool io_would_block(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK;
}

/* Shows bytes read in direction dir (PROTO_DIR_*; len 0: EOF) to the
 * protocol watcher, before they are forwarded. Returns -1 when the
 * connection must be closed, else 0. */
static int conn_watch_verdict(struct conn *c, enum proto_verdict v)
{
	switch (v) {
	case PROTO_CONTINUE:
		return 0;
	case PROTO_UNWATCH:
		c->proto->watch_free(c->watch, c->app);
		c->watch = NULL;
		c->sp.kwatch = false;
		return 0;
	case PROTO_CLOSE:
	default:
		return -1;
	}
}

static int conn_watch(struct conn *c, int dir, const char *data, size_t len)
{
	if (!c->watch)
		return 0;
	const struct proto_handler *h = c->proto;
	if (c->sp.kwatch) {
		/* the program framed these bytes; an EOF needs the
		 * direction's state back first (a last line without LF),
		 * after a violation the program found, if any (its event may
		 * still be on the way) */
		struct pandit_splice_val v;
		if (len)
			return 0;
		if (splice_watch_verdict(c) < 0)
			return -1;
		if (!c->watch)
			return 0;
		if (kpath_read(&c->sp.pair, dir, &v) < 0)
			return 0;
		if (conn_watch_verdict(c, h->kern_back(c->watch, c->app, dir, &v.foo)) < 0)
			return -1;
		if (!c->watch)
			return 0;
	}
	return conn_watch_verdict(c, h->watch(c->watch, c->app, dir, data, len, c->w->loop.now));
}

/* Copy path: recv() into the buffer, send() from it, until neither side
 * can make progress. Returns 0, or -1 on a socket error (reset, EPIPE...). */
static int move_copy(struct conn *c, int dir, struct conn_side *from, struct conn_side *to,
		     struct conn_buf *buf, uint64_t *moved)
{
	struct buf_pool *pool = &c->w->pool;
	for (;;) {
		bool progress = false;
		if (buf->tail > buf->head && to->writable) {
			size_t want = buf->tail - buf->head;
			ssize_t n = send(to->io.fd, buf->data + buf->head, want, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0) {
				/* a short write means the socket buffer is full: EPOLLOUT
				 * comes when there is room again */
				if ((size_t)n < want)
					to->writable = false;
				buf->head += (uint32_t)n;
				*moved += (uint64_t)n;
				progress = true;
				if (buf->head == buf->tail)
					buf->head = buf->tail = 0;
			} else if (n < 0 && io_would_block(errno)) {
				to->writable = false;
			} else if (n < 0 && errno != EINTR) {
				return -1;
			}
		}
		if (!from->eof && from->readable) {
			if (!buf->data && !(buf->data = buf_pool_get(pool))) {
				log_warn("out of memory for a connection buffer");
				return -1;
			}
			if (buf->tail == pool->size && buf->head > 0) {
				memmove(buf->data, buf->data + buf->head, buf->tail - buf->head);
				buf->tail -= buf->head;
				buf->head = 0;
			}
			if (buf->tail < pool->size) {
				size_t room = pool->size - buf->tail;
				ssize_t n = recv(from->io.fd, buf->data + buf->tail, room, MSG_DONTWAIT);
				from->partial = n > 0 && (size_t)n == room;
				if (n == 0 && c->sp.on && !splice_eof_real(c, dir)) {
					from->readable = false;	/* the rest comes with EPOLLIN */
					continue;
				}
				if (n > 0) {
					if (c->sp.on) {
						c->sp.rd[dir] += (uint64_t)n;
						c->sp.last_rd_ns[dir] = c->w->loop.now;
					}
					/* A short read took everything queued: what arrives
					 * later raises a new edge, so skip the recv that would
					 * only say EAGAIN. Not once the peer's FIN was
					 * reported: that edge is spent, read on to the EOF. */
					if ((size_t)n < room && !from->rdhup)
						from->readable = false;
					if (conn_watch(c, dir, buf->data + buf->tail, (size_t)n) < 0) {
						errno = EPROTO;
						return -1;
					}
					buf->tail += (uint32_t)n;
					progress = true;
				} else if (n == 0) {
					if (conn_watch(c, dir, NULL, 0) < 0) {
						errno = EPROTO;
						return -1;
					}
					from->eof = true;
					progress = true;
				} else if (io_would_block(errno)) {
					from->readable = false;
				} else if (errno != EINTR) {
					return -1;
				}
			}
		}
		if (!progress)
			return 0;
	}
}

/* Splice path: the bytes go socket -> pipe -> socket inside the kernel,
 * never copied to userspace. Same contract as move_copy. */
static int move_splice(struct conn *c, struct conn_side *from, struct conn_side *to,
		       struct conn_buf *buf, uint64_t *moved)
{
	struct pipe_pool *pipes = &c->w->pipes;
	const unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
	for (;;) {
		bool progress = false;
		if (buf->pipe_len && to->writable) {
			ssize_t n = splice(buf->pipe[0], NULL, to->io.fd, NULL, buf->pipe_len, flags);
			if (n > 0) {
				if ((uint32_t)n < buf->pipe_len)
					to->writable = false;	/* socket buffer full */
				buf->pipe_len -= (uint32_t)n;
				*moved += (uint64_t)n;
				progress = true;
			} else if (n < 0 && io_would_block(errno)) {
				to->writable = false;
			} else if (n < 0 && errno != EINTR) {
				return -1;
			}
		}
		if (!from->eof && from->readable && buf->pipe_len < pipes->size) {
			if (buf->pipe[0] < 0 && pipe_pool_get(pipes, buf->pipe) < 0) {
				log_warn("pipe2() failed: %s", strerror(errno));
				return -1;
			}
			ssize_t n = splice(from->io.fd, NULL, buf->pipe[1], NULL,
					   pipes->size - buf->pipe_len, flags);
			/* a short splice may mean the pipe ran out of slots: only
			 * EAGAIN with an empty pipe (or EOF) says the queue is drained */
			if (n > 0)
				from->partial = true;
			else if (n == 0 || !buf->pipe_len)
				from->partial = false;
			if (n > 0) {
				buf->pipe_len += (uint32_t)n;
				progress = true;
			} else if (n == 0) {
				from->eof = true;
				progress = true;
			} else if (io_would_block(errno)) {
				/* With bytes in the pipe, EAGAIN may mean the pipe ran out
				 * of slots rather than the socket of data: keep the side
				 * readable and try again once the pipe drained. */
				if (!buf->pipe_len)
					from->readable = false;
			} else if (errno != EINTR) {
				return -1;
			}
		}
		if (!progress)
			return 0;
	}
}

static bool conn_buf_empty(const struct conn_buf *b)
{
	return b->tail == b->head && b->pipe_len == 0;
}

/* Gives an empty buffer or pipe back to the worker's pools. */
static void conn_buf_release(struct worker *w, struct conn_buf *b)
{
	if (b->data && b->tail == b->head) {
		buf_pool_put(&w->pool, b->data);
		b->data = NULL;
		b->head = b->tail = 0;
	}
	if (b->pipe[0] >= 0 && b->pipe_len == 0)
		pipe_pool_put(&w->pipes, b->pipe);
}

/* Moves what can be moved from `from` to `to` through buf and, once the
 * connection is up, passes a FIN on after the last byte before it. While
 * connecting, `to` is not writable: this only reads ahead (bounded). */
static enum pump_result pump(struct conn *c, struct conn_side *from, struct conn_side *to,
			     struct conn_buf *buf, _Atomic uint64_t *app_bytes,
			     _Atomic uint64_t *target_bytes)
{
	uint64_t moved = 0;
	int dir = from == &c->cli ? PROTO_DIR_C2S : PROTO_DIR_S2C;
	/* spliced in the kernel: nothing for userspace to move */
	if (c->sp.on && c->sp.kern[dir])
		return PUMP_OK;
	/* Bytes of this direction the kernel redirected may still wait in the
	 * peer's backlog: nothing from userspace (bytes or FIN) may overtake
	 * them, so only read ahead until they reached the socket. */
	bool gated = c->sp.on && !c->sp.drained[dir] && !splice_drained(c, dir);
	bool to_writable = to->writable;
	if (gated)
		to->writable = false;
	/* a parsed protocol needs the bytes in userspace; bytes read ahead by
	 * copy stay on the copy path until written; a socket that was spliced
	 * is read with recv(), which sees the data the program left it
	 * (splice(2) would read past it) */
	bool use_splice = c->w->splice && !c->proto->watch_new && !buf->data && !c->sp.on;
	bool was_eof = from->eof;
	int r = use_splice ? move_splice(c, from, to, buf, &moved)
			   : move_copy(c, dir, from, to, buf, &moved);
	if (gated)
		to->writable = to_writable;
	if (moved) {
		stats_add(app_bytes, moved);
		stats_add(target_bytes, moved);
		c->last_active = c->w->loop.now;
		if (c->sp.on)
			c->sp.uw[dir] += moved;
	}
	if (r < 0) {
		log_debug("app %s: connection aborted: %s", c->app->cfg->name, strerror(errno));
		return PUMP_ABORT;
	}
	conn_buf_release(c->w, buf);
	if (c->state != CONN_RELAY || gated)
		return PUMP_OK;
	/* a FIN read here may follow bytes the kernel moved after a resume
	 * this worker has not heard of yet: check the backlog once more */
	if (c->sp.on && from->eof && !was_eof)
		c->sp.drained[dir] = false;
	if (c->sp.on && !c->sp.drained[dir] && !splice_drained(c, dir))
		return PUMP_OK;
	if (from->eof && conn_buf_empty(buf) && !to->shut) {
		if (shutdown(to->io.fd, SHUT_WR) < 0 && errno != ENOTCONN)
			return PUMP_ABORT;
		to->shut = true;
	}
	if (c->sp.on)
		splice_maybe_resume(c, dir);
	return (from->eof && to->shut) ? PUMP_DONE : PUMP_OK;
}

/* Runs both directions; frees the connection when it is over. While a
 * splice is still to be decided, only writes what the buffers hold: the
 * sooner they are empty, the sooner the kernel takes over (what waits in
 * the sockets' queues meanwhile goes through the program, in order). */
static void conn_relay(struct conn *c)
{
	struct rt_app_target *at = conn_target(c);
	bool flush_only = !c->sp.tried && c->state == CONN_RELAY && splice_wanted(c) &&
			  kpath_available();
	bool rd_cli = c->cli.readable, rd_up = c->up.readable;
	if (c->sc.retry && c->w->loop.now != c->sc.retry_at)
		conn_maybe_shortcut(c, true);
	if (flush_only) {
		/* a side whose last read stopped inside its queue reads on
		 * until a read drains it (see conn_side.partial) */
		if (!c->cli.partial)
			c->cli.readable = false;
		if (!c->up.partial)
			c->up.readable = false;
	}
	enum pump_result a = pump(c, &c->cli, &c->up, &c->c2u, &c->app->stats->bytes_in,
				  &at->stats->bytes_in);
	if (a == PUMP_ABORT) {
		conn_free(c, true);
		return;
	}
	enum pump_result b = pump(c, &c->up, &c->cli, &c->u2c, &c->app->stats->bytes_out,
				  &at->stats->bytes_out);
	if (b == PUMP_ABORT) {
		conn_free(c, true);
		return;
	}
	if (flush_only) {
		if (!c->cli.readable)
			c->cli.readable = rd_cli && !c->cli.partial;
		if (!c->up.readable)
			c->up.readable = rd_up && !c->up.partial;
	}
	if (a == PUMP_DONE && b == PUMP_DONE) {
		conn_free(c, false);
		return;
	}
	if (!c->sp.tried && c->state == CONN_RELAY) {
		conn_maybe_splice(c);
		/* refused or not wanted after all: relay what waits (its edges are spent) */
		if (flush_only && !c->dead && c->sp.tried && !c->sp.on)
			conn_relay(c);
	}
}

/* --- kernel splicing ---------------------------------------------------------
 * Once the upstream is up and every byte userspace read has been written,
 * both sockets go into the splice maps and the kernel moves the bytes
 * (bpf/splice.bpf.c). The daemon keeps the fds: it is woken only by a FIN,
 * an error, a timer or a hold event, never by payload. Direction d is read
 * from socket d (0 client, 1 upstream) and written to the other. When the
 * kernel stops moving a direction (its source sent FIN, or the program held
 * the source because the peer's backlog passed the cap), the direction goes
 * back to the userspace relay, which writes nothing (bytes or FIN) to the
 * peer until what the kernel redirected has reached the peer's socket
 * (splice_drained). See docs/ARCHITECTURE.md for why this keeps the order. */

enum { SPLICE_OFF = 0, SPLICE_AUTO, SPLICE_ON };

/* The app's kernel_splice setting (a reload that changes it makes a new app
 * object: connections keep the setting they started with). */
static int splice_mode(const struct rt_app *app)
{
	switch (app->cfg->kernel_splice) {
	case CFG_KERNEL_OFF:
		return SPLICE_OFF;
	case CFG_KERNEL_ON:
		return SPLICE_ON;
	case CFG_KERNEL_AUTO:
	default:
		return SPLICE_AUTO;
	}
}

/* Whether the connection is one to splice (its app's setting and protocol;
 * the kernel may still refuse). */
static bool splice_wanted(const struct conn *c)
{
	if (splice_mode(c->app) == SPLICE_OFF)
		return false;
	switch (c->app->cfg->protocol) {
	case PROTO_TCP:
		return !c->watch;
	case PROTO_FOO:	/* framed by the program, or no longer watched */
		return !c->watch || c->proto->kern_enter;
	default:
		return false;
	}
}

static struct conn_side *conn_sock(struct conn *c, int i)
{
	return i ? &c->up : &c->cli;
}

/* Epoll events of spliced socket i: input only when userspace reads it,
 * output only when userspace writes to it; a FIN or an error always. */
static uint32_t splice_events(const struct conn *c, int i)
{
	uint32_t ev = EPOLLRDHUP | EPOLLET;
	if (!c->sp.kern[i])
		ev |= EPOLLIN;
	if (!c->sp.kern[i ^ 1])
		ev |= EPOLLOUT;
	return ev;
}

static void splice_rearm(struct conn *c, int i)
{
	struct conn_side *s = conn_sock(c, i);
	if (ev_mod(&c->w->loop, &s->io, splice_events(c, i)) < 0)
		log_warn("epoll_ctl(MOD) of a spliced socket failed: %s", strerror(errno));
}

/* Direction d leaves the kernel: its source sent FIN or was held. */
static void splice_to_user(struct conn *c, int d, bool held)
{
	if (!c->sp.kern[d])
		return;
	log_debug("app %s: spliced direction %d back to userspace (%s)", c->app->cfg->name, d,
		  held ? "held" : "FIN");
	c->sp.kern[d] = false;
	c->sp.drained[d] = false;
	c->sp.poll_ms = 0;
	conn_sock(c, d)->readable = true;	/* what the program left there */
	conn_sock(c, d ^ 1)->writable = true;	/* EAGAIN tells otherwise */
	if (held) {
		stats_add(&kpath_stats.held, 1);
		c->sp.holds[d]++;
		c->sp.last_rd_ns[d] = c->w->loop.now;
		if (splice_mode(c->app) == SPLICE_AUTO)
			stats_add(&kpath_stats.bulk_to_userspace, 1);
	}
	splice_rearm(c, d);
	splice_rearm(c, d ^ 1);
}

/* Held direction d was resumed by the program: the kernel moves it again. */
static void splice_to_kernel(struct conn *c, int d)
{
	if (c->sp.kern[d] || conn_sock(c, d)->eof)
		return;	/* a FIN read first: the userspace path finishes it */
	log_debug("app %s: direction %d back in the kernel", c->app->cfg->name, d);
	c->sp.kern[d] = true;
	conn_sock(c, d)->readable = false;
	stats_add(&kpath_stats.resumed, 1);
	splice_rearm(c, d);
	splice_rearm(c, d ^ 1);
}

/* Adds the kernel's bytes of each direction to the target's counters
 * (the app's come from the per-CPU map, kpath_fold_app) and notes
 * activity for the idle timer; from final when given (the entries as
 * they were taken out), else read now. */
static void splice_fold(struct conn *c, bool check_held, const struct pandit_splice_val *final)
{
	struct rt_app_target *at = conn_target(c);
	for (int d = 0; d < 2; d++) {
		struct pandit_splice_val v;
		if (final)
			v = final[d];
		else if (kpath_read(&c->sp.pair, d, &v) < 0)
			continue;
		if (v.bytes > c->sp.folded[d]) {
			stats_add(d ? &at->stats->bytes_out : &at->stats->bytes_in,
				  v.bytes - c->sp.folded[d]);
			c->sp.folded[d] = v.bytes;
		}
		if (v.bytes != c->sp.seen[d]) {
			c->sp.seen[d] = v.bytes;
			c->last_active = c->w->loop.now;
		}
		/* a hold or a resume whose event was lost (ring full) */
		if (check_held && v.held && c->sp.kern[d])
			splice_to_user(c, d, true);
		else if (check_held && !v.held && !c->sp.kern[d] && !conn_sock(c, d)->eof &&
			 c->sp.resume_sent[d] == c->sp.rd[d])
			splice_to_kernel(c, d);
	}
}

/* True once every byte the kernel redirected in direction d has reached
 * the destination socket's write queue (which then holds the kernel's and
 * userspace's bytes of d since the splice); until then, polls with a
 * backoff. */
static bool splice_drained(struct conn *c, int d)
{
	struct pandit_splice_val v;
	uint64_t written;
	int to = d ^ 1;
	if (kpath_read(&c->sp.pair, d, &v) < 0 ||
	    kpath_written(conn_sock(c, to)->io.fd, &written) < 0) {
		/* cannot tell (entry or socket gone): nothing more will come */
		c->sp.drained[d] = true;
		return true;
	}
	if (written - c->sp.pair.base[to] >= v.bytes + c->sp.uw[d]) {
		log_debug("app %s: direction %d drained (%llu bytes by the kernel)", c->app->cfg->name, d,
			  (unsigned long long)v.bytes);
		c->sp.drained[d] = true;
		c->sp.poll_ms = 0;
		return true;
	}
	if (!ev_timer_armed(&c->poll)) {
		c->sp.poll_ms = c->sp.poll_ms ? c->sp.poll_ms * 2 : 1;
		if (c->sp.poll_ms > 64)
			c->sp.poll_ms = 64;
		ev_timer_start(&c->w->loop, &c->poll, c->sp.poll_ms);
	}
	return false;
}

/* Under auto, how long a held direction must have read nothing before it
 * goes back to the kernel: SPLICE_QUIET_MS after its first hold, doubling
 * with each later one up to SPLICE_QUIET_MAX_MS. A hold means the sender
 * outran the kernel's redirect (which moves bulk data more slowly than the
 * userspace relay), so a bulk flow stays in userspace while it flows
 * instead of switching back and forth; a flow that pauses (a response
 * sent, the client thinking) goes back to the kernel. */
#define SPLICE_QUIET_MS 20
#define SPLICE_QUIET_MAX_MS 2560

static uint64_t splice_quiet_ns(uint32_t holds)
{
	uint32_t shift = holds > 1 ? holds - 1 : 0;
	uint64_t ms = shift < 16 ? (uint64_t)SPLICE_QUIET_MS << shift : SPLICE_QUIET_MAX_MS;
	return (ms < SPLICE_QUIET_MAX_MS ? ms : SPLICE_QUIET_MAX_MS) * 1000000u;
}

/* Held direction d is quiet: everything read has been written, the last
 * read found nothing, the kernel's backlog is gone, and (auto) nothing was
 * read for its backoff. Asks the program to take the direction back (it
 * does so at the next skb if it has passed exactly what was read, see
 * bpf/splice.bpf.c). */
static void splice_maybe_resume(struct conn *c, int d)
{
	struct conn_side *from = conn_sock(c, d), *to = conn_sock(c, d ^ 1);
	const struct conn_buf *buf = d ? &c->u2c : &c->c2u;
	if (c->sp.kern[d] || !c->sp.drained[d] || from->readable || from->eof || to->shut ||
	    !conn_buf_empty(buf) || c->sp.rd[d] != c->sp.uw[d] || c->sp.resume_sent[d] == c->sp.rd[d])
		return;
	if (splice_mode(c->app) == SPLICE_AUTO && c->sp.holds[d]) {
		uint64_t at = c->sp.last_rd_ns[d] + splice_quiet_ns(c->sp.holds[d]);
		if (c->w->loop.now < at) {
			/* ask again then (the poll timer re-runs the relay) */
			if (!ev_timer_armed(&c->poll) || c->poll.when > at)
				ev_timer_start_at(&c->w->loop, &c->poll, at);
			return;
		}
	}
	if (kpath_resume(&c->sp.pair, d, c->sp.rd[d], c->sp.uw[d]) == 0)
		c->sp.resume_sent[d] = c->sp.rd[d];
}

/* A read of socket d said EOF. True when it is: every byte the program
 * left to userspace on that socket has been read. After a hold the kernel
 * moves such bytes to the socket's queue from a work item, and the read
 * reports the FIN while the queue is momentarily empty; then false, and a
 * poll is armed in case no EPOLLIN follows. */
static bool splice_eof_real(struct conn *c, int d)
{
	struct pandit_splice_val v;
	if (kpath_read(&c->sp.pair, d, &v) < 0 || v.passed <= c->sp.rd[d])
		return true;
	if (!ev_timer_armed(&c->poll))
		ev_timer_start(&c->w->loop, &c->poll, 1);
	return false;
}

static void conn_poll_cb(struct ev_loop *loop, struct ev_timer *t)
{
	(void)loop;
	struct conn *c = container_of(t, struct conn, poll);
	/* directions userspace reads: try again (an early EOF, see above) */
	for (int d = 0; d < 2; d++)
		if (!c->sp.kern[d] && !conn_sock(c, d)->eof)
			conn_sock(c, d)->readable = true;
	conn_relay(c);
}

/* Reads once from spliced socket d (direction d still in the kernel) after
 * it reported a FIN, an error or a hold: 0 bytes is the FIN, bytes are what
 * a hold left there. Returns -1 on a socket error. */
static int splice_probe(struct conn *c, int d)
{
	struct conn_side *from = conn_sock(c, d);
	struct conn_buf *buf = d ? &c->u2c : &c->c2u;
	struct buf_pool *pool = &c->w->pool;
	if (!buf->data && !(buf->data = buf_pool_get(pool))) {
		log_warn("out of memory for a connection buffer");
		return -1;
	}
	if (buf->tail >= pool->size) {
		splice_to_user(c, d, false);
		return 0;
	}
	ssize_t n = recv(from->io.fd, buf->data + buf->tail, pool->size - buf->tail, MSG_DONTWAIT);
	if (n > 0) {
		buf->tail += (uint32_t)n;
		c->sp.rd[d] += (uint64_t)n;
		splice_to_user(c, d, true);
		c->sp.last_rd_ns[d] = c->w->loop.now;
	} else if (n == 0 && !splice_eof_real(c, d)) {
		splice_to_user(c, d, true);	/* held: what it left is on its way */
		from->readable = false;
	} else if (n == 0) {
		if (conn_watch(c, d, NULL, 0) < 0)
			return -1;
		from->eof = true;
		splice_to_user(c, d, false);
	} else if (io_would_block(errno) || errno == EINTR) {
		from->readable = false;
	} else {
		log_debug("app %s: spliced connection aborted: %s", c->app->cfg->name, strerror(errno));
		return -1;
	}
	conn_buf_release(c->w, buf);
	return 0;
}

/* Rate-limited log of a refused splice. */
static void splice_log_refusal(const struct conn *c, enum kpath_fallback why, int err)
{
	static _Atomic uint64_t last_ns;
	uint64_t now = c->w->loop.now, prev = atomic_load_explicit(&last_ns, memory_order_relaxed);
	if (now - prev < 1000000000ull ||
	    !atomic_compare_exchange_strong_explicit(&last_ns, &prev, now, memory_order_relaxed,
						     memory_order_relaxed))
		return;
	log_info("app %s: kernel splice refused (%s), relaying in userspace (further refusals "
		 "within 1 s not logged; counted in /stats)",
		 c->app->cfg->name,
		 why == KPATH_FB_UNAVAILABLE ? kpath_unavailable_reason() : strerror(-err));
}

/* Splices the connection if its app wants it and nothing is left in the
 * userspace buffers; otherwise tries again after the next pump. */
static void conn_maybe_splice(struct conn *c)
{
	int mode = splice_mode(c->app);
	if (!splice_wanted(c)) {
		c->sp.tried = true;
		return;
	}
	if (!conn_buf_empty(&c->c2u) || !conn_buf_empty(&c->u2c) || c->cli.partial || c->up.partial)
		return;
	c->sp.tried = true;
	enum kpath_fallback why;
	int err;
	if (c->cli.eof || c->up.eof || c->cli.rdhup || c->up.rdhup || c->cli.shut || c->up.shut) {
		/* closing already: the kernel refuses such sockets, and the
		 * rest is short; not an error even with kernel_splice: on */
		stats_add(&kpath_stats.fallback[KPATH_FB_HALF_CLOSED], 1);
		return;
	}
	/* a watched connection: the program takes the watcher's state over */
	struct kfoo_start ks = { .pend = NULL };
	bool kwatch = c->watch && kpath_available();
	if (kwatch && !c->proto->kern_enter(c->watch, c->app, &ks)) {
		why = KPATH_FB_FOO;
		err = -ENOSPC;
	} else {
		err = kpath_splice(&c->sp.pair, c->cli.io.fd, c->up.io.fd, c->app->id, c->w->id,
				   kwatch ? &ks : NULL, &why);
		free(ks.pend);
	}
	if (err) {
		stats_add(&kpath_stats.fallback[why], 1);
		if (mode == SPLICE_ON) {
			log_warn("app %s: kernel splice refused (%s) and kernel_splice is on: closing the connection",
				 c->app->cfg->name,
				 why == KPATH_FB_UNAVAILABLE ? kpath_unavailable_reason() : strerror(-err));
			conn_free(c, true);
			return;
		}
		splice_log_refusal(c, why, err);
		return;
	}
	c->sp.on = true;
	if (c->watch) {
		c->sp.kwatch = c->sp.framed = true;
		c->proto->kern_entered(c->watch, c->app, c->sp.pair.cookie[0]);
		stats_add(&kpath_stats.foo_framed, 1);
	}
	c->sp.resume_sent[0] = c->sp.resume_sent[1] = UINT64_MAX;
	c->sp.kern[0] = c->sp.kern[1] = true;
	c->sp.drained[0] = c->sp.drained[1] = true;
	stats_add(&kpath_stats.spliced, 1);
	stats_add(&kpath_stats.spliced_active, 1);
	splice_rearm(c, 0);
	splice_rearm(c, 1);
	/* Bytes that reached a socket before it entered the map wait in its
	 * receive queue; a read makes the kernel run them through the program
	 * (before anything that arrives later): redirected in order, or left
	 * for us by a hold, or a FIN. */
	for (int d = 0; d < 2; d++) {
		if (splice_probe(c, d) < 0) {
			conn_free(c, true);
			return;
		}
	}
	if (!c->sp.kern[0] || !c->sp.kern[1])
		conn_relay(c);
}

/* Events on a spliced connection's socket: only FIN, errors and, for a
 * direction back in userspace, readiness. */
static void conn_splice_event(struct conn *c, struct conn_side *side, uint32_t events)
{
	if (events & EPOLLERR) {
		/* also errors the kernel's redirect backlog reported on the socket */
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(side->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
		log_debug("app %s: spliced connection aborted: %s", c->app->cfg->name,
			  strerror(err ? err : EIO));
		conn_free(c, true);
		return;
	}
	for (int d = 0; d < 2; d++) {
		if (c->sp.kern[d] && conn_sock(c, d)->readable && splice_probe(c, d) < 0) {
			conn_free(c, true);
			return;
		}
	}
	conn_relay(c);
}

/* The spliced connection of this worker owning socket cookie, with *d set
 * to the socket's index; NULL when it is gone. Hold and resume events are
 * rare: a walk of the worker's connections is enough. */
static struct conn *splice_find(struct worker *w, uint64_t cookie, int *d)
{
	for (struct conn *c = w->conns; c; c = c->next) {
		if (!c->sp.on)
			continue;
		for (int i = 0; i < 2; i++) {
			if (c->sp.pair.cookie[i] == cookie) {
				*d = i;
				return c;
			}
		}
	}
	return NULL;
}

/* When the program has stopped framing the connection (a violation, see
 * bpf/foo_frame.bpf.h), the watcher counts it and says what follows.
 * Returns -1 when the connection must be closed (the caller closes it). */
static int splice_watch_verdict(struct conn *c)
{
	if (!c->sp.kwatch || !c->watch)
		return 0;
	struct pandit_splice_val v[2];
	for (int d = 0; d < 2; d++)
		if (kpath_read(&c->sp.pair, d, &v[d]) < 0)
			return 0;
	int d = -1;
	for (int i = 1; i >= 0; i--)
		if (v[i].foo.state == PANDIT_FOO_ST_ERR || (d < 0 && v[i].foo.stop))
			d = i;
	if (d < 0)
		return 0;
	return conn_watch_verdict(c, c->proto->kern_back(c->watch, c->app, d, &v[d].foo));
}

/* splice_watch_verdict(), closing the connection when it says so. Returns
 * false when the connection was closed. */
static bool splice_watch_check(struct conn *c)
{
	if (splice_watch_verdict(c) < 0) {
		conn_free(c, true);
		return false;
	}
	return true;
}

void conn_splice_held(struct worker *w, uint64_t cookie)
{
	int d;
	struct conn *c = splice_find(w, cookie, &d);
	if (c) {
		splice_to_user(c, d, true);
		conn_relay(c);
	}
}

void conn_splice_rescan(struct worker *w)
{
	struct conn *next;
	for (struct conn *c = w->conns; c; c = next) {
		next = c->next;	/* conn_relay may free c (it stays readable until reaped) */
		if (!c->sp.on)
			continue;
		bool k0 = c->sp.kern[0], k1 = c->sp.kern[1];
		if (!splice_watch_check(c))
			continue;	/* a Foo violation event lost: closed */
		splice_fold(c, true, NULL);
		if (k0 != c->sp.kern[0] || k1 != c->sp.kern[1])
			conn_relay(c);
	}
}

void conn_splice_foo(struct worker *w, uint64_t cookie)
{
	int d;
	struct conn *c = splice_find(w, cookie, &d);
	if (c)
		splice_watch_check(c);
}

void conn_splice_resumed(struct worker *w, uint64_t cookie)
{
	int d;
	struct conn *c = splice_find(w, cookie, &d);
	if (c)
		splice_to_kernel(c, d);
}

/* --- local short-circuit -----------------------------------------------------
 * When the client's and the chosen backend's own sockets are both local
 * sockets of the configured cgroup, they are paired once the upstream is
 * up (bpf/shortcut.bpf.c): each one's sends go straight into the other's
 * receive queue as soon as every byte it sent over TCP has been read on
 * the other side, which the program checks itself. Nothing else changes
 * here: the connection keeps its path (spliced or userspace) for the TCP
 * bytes that still come, and its FIN, half-close and reset handling (a FIN
 * always follows the redirected bytes; see docs/ARCHITECTURE.md). tcp
 * and foo apps qualify: the program counts on this relay writing each side
 * exactly the bytes it read from the other. A foo connection is paired
 * framed (each end's sends framed in the splice entry of the socket here
 * they would reach), so only when its Foo goes to the kernel framer;
 * until it is spliced, its sends take TCP. */

static bool shortcut_wanted(const struct conn *c)
{
	if (c->app->cfg->local_shortcut != CFG_SHORTCUT_AUTO || !shortcut_available())
		return false;
	switch (c->app->cfg->protocol) {
	case PROTO_TCP:
		return !c->watch;
	case PROTO_FOO:
		return c->watch && c->proto->kern_enter && splice_wanted(c) && kpath_available() &&
		       shortcut_frames_foo();
	default:
		return false;
	}
}

/* Pairs the connection's two far ends. last: no retry after this one. */
static void conn_maybe_shortcut(struct conn *c, bool last)
{
	enum shortcut_refusal why;
	c->sc.retry = false;
	int err = c->app->cfg->protocol == PROTO_FOO
			  ? shortcut_pair_framed(&c->sc.pair, c->cli.io.fd, c->up.io.fd, &why)
			  : shortcut_pair(&c->sc.pair, c->cli.io.fd, c->up.io.fd, &why);
	if (err) {
		if (!last && why == SHORTCUT_REF_NOT_LOCAL && shortcut_pair_client_found(&c->sc.pair)) {
			c->sc.retry = true;
			c->sc.retry_at = c->w->loop.now;
			return;
		}
		stats_add(&shortcut_stats.refused[why], 1);
		log_debug("app %s: not short-circuited (%s: %s)", c->app->cfg->name,
			  shortcut_refusal_name(why), strerror(-err));
		return;
	}
	c->sc.on = true;
	stats_add(&shortcut_stats.paired, 1);
	stats_add(&shortcut_stats.paired_active, 1);
	log_debug("app %s: connection short-circuited", c->app->cfg->name);
}

/* Adds the bytes each side sent straight to the other since the last fold
 * to the app's and the target's counters (side 0 in, side 1 out), and
 * counts their growth as activity for the idle timer; from final when
 * given (the entries as they were taken out), else read now. */
static void shortcut_fold(struct conn *c, const struct pandit_shortcut_pair *final)
{
	struct rt_app_target *at = conn_target(c);
	for (int side = 0; side < 2; side++) {
		struct pandit_shortcut_pair v;
		if (final)
			v = final[side];
		else if (shortcut_read(&c->sc.pair, side, &v) < 0)
			continue;
		if (v.redirected <= c->sc.folded[side])
			continue;
		uint64_t delta = v.redirected - c->sc.folded[side];
		c->sc.folded[side] = v.redirected;
		stats_add(side ? &c->app->stats->bytes_out : &c->app->stats->bytes_in, delta);
		if (at)
			stats_add(side ? &at->stats->bytes_out : &at->stats->bytes_in, delta);
		stats_add(&shortcut_stats.redirected_bytes, delta);
		c->last_active = c->w->loop.now;
	}
}

/* --- timers ----------------------------------------------------------------- */

static void conn_timer_cb(struct ev_loop *loop, struct ev_timer *t)
{
	struct conn *c = container_of(t, struct conn, timer);
	if (c->state == CONN_CONNECTING) {
		struct rt_app_target *at = conn_target(c);
		log_info("app %s: connect to %s timed out after %u ms", c->app->cfg->name, at->t->name,
			 c->app->cfg->connect_timeout_ms);
		stats_add(&at->stats->failed, 1);
		target_report(at->t, false, loop->now);
		ev_del(loop, &c->up.io);
		close(c->up.io.fd);
		c->up.io.fd = -1;
		conn_connect_next(c);
		return;
	}
	uint64_t idle_ns = (uint64_t)c->app->cfg->idle_timeout_ms * 1000000ull;
	if (c->sp.on) {
		bool k0 = c->sp.kern[0], k1 = c->sp.kern[1];
		if (!splice_watch_check(c))
			return;	/* a Foo violation whose event was lost: closed */
		splice_fold(c, true, NULL);	/* kernel traffic counts as activity */
		if (k0 != c->sp.kern[0] || k1 != c->sp.kern[1]) {
			conn_relay(c);
			if (c->dead)
				return;
		}
	}
	if (c->sc.on)
		shortcut_fold(c, NULL);	/* short-circuited traffic counts as activity */
	if (loop->now - c->last_active >= idle_ns) {
		log_debug("app %s: idle timeout", c->app->cfg->name);
		conn_free(c, false);
		return;
	}
	ev_timer_start_at(loop, &c->timer, c->last_active + idle_ns);
}

/* --- events ----------------------------------------------------------------- */

static void side_mark(struct conn_side *s, uint32_t events)
{
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->rdhup = true;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->readable = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		s->writable = true;
}

static void conn_established(struct conn *c)
{
	struct ev_loop *loop = &c->w->loop;
	struct rt_app_target *at = conn_target(c);
	uint64_t us = (loop->now - c->connect_start) / 1000;
	stats_hist_observe(&c->app->stats->connect_latency, us);
	stats_hist_observe(&at->stats->connect_latency, us);
	stats_add(&at->stats->accepted, 1);
	stats_add(&at->stats->active, 1);
	target_report(at->t, true, loop->now);
	c->state = CONN_RELAY;
	c->last_active = loop->now;
	ev_timer_stop(loop, &c->timer);
	if (c->app->cfg->idle_timeout_ms)
		ev_timer_start(loop, &c->timer, c->app->cfg->idle_timeout_ms);
	if (shortcut_wanted(c))
		conn_maybe_shortcut(c, false);
}

static void conn_up_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	struct conn *c = container_of(io, struct conn, up.io);
	if (c->dead)
		return;
	if (c->state == CONN_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (!err && (events & (EPOLLERR | EPOLLHUP)))
			err = ECONNREFUSED;
		if (err) {
			struct rt_app_target *at = conn_target(c);
			log_info("app %s: connect to %s failed: %s", c->app->cfg->name, at->t->name,
				 strerror(err));
			stats_add(&at->stats->failed, 1);
			target_report(at->t, false, loop->now);
			ev_del(loop, io);
			close(io->fd);
			io->fd = -1;
			conn_connect_next(c);
			return;
		}
		if (!(events & EPOLLOUT))
			return;
		conn_established(c);
	}
	side_mark(&c->up, events);
	if (c->sp.on)
		conn_splice_event(c, &c->up, events);
	else
		conn_relay(c);
}

static void conn_cli_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	(void)loop;
	struct conn *c = container_of(io, struct conn, cli.io);
	if (c->dead)
		return;
	side_mark(&c->cli, events);
	if (c->state == CONN_CONNECTING) {
		/* read ahead, bounded by the buffer, until the upstream is up */
		struct rt_app_target *at = conn_target(c);
		if (pump(c, &c->cli, &c->up, &c->c2u, &c->app->stats->bytes_in,
			 &at->stats->bytes_in) == PUMP_ABORT)
			conn_free(c, true);
		return;
	}
	if (c->sp.on)
		conn_splice_event(c, &c->cli, events);
	else
		conn_relay(c);
}

/* --- connect with failover ------------------------------------------------------ */

/* Tries targets until a connect is under way; gives up after
 * connect_attempts targets or when none is usable, closing the client. */
static void conn_connect_next(struct conn *c)
{
	struct ev_loop *loop = &c->w->loop;
	const struct cfg_app *cfg = c->app->cfg;
	while (c->attempts < cfg->connect_attempts) {
		int i = lb_pick(c->app, &c->tried, loop->now);
		if (i < 0)
			break;
		lb_tried_set(&c->tried, (uint32_t)i);
		c->attempts++;
		c->ti = i;
		struct rt_app_target *at = &c->app->targets[i];
		struct sockaddr_storage ss;
		socklen_t len;
		if (target_addr(at->t, &ss, &len) < 0) {
			stats_add(&at->stats->failed, 1);
			continue;	/* unresolved: down, nothing to report */
		}
		int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			log_warn("app %s: socket() failed: %s", cfg->name, strerror(errno));
			break;
		}
		set_sock_opts(fd, cfg);
		c->connect_start = ev_now_ns();
		if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
			log_info("app %s: connect to %s failed: %s", cfg->name, at->t->name,
				 strerror(errno));
			close(fd);
			stats_add(&at->stats->failed, 1);
			target_report(at->t, false, loop->now);
			continue;
		}
		c->up = (struct conn_side){ .io = { .fd = fd, .cb = conn_up_cb } };
		if (ev_add(loop, &c->up.io, CONN_EVENTS) < 0) {
			close(fd);
			c->up.io.fd = -1;
			break;
		}
		c->state = CONN_CONNECTING;
		ev_timer_start(loop, &c->timer, cfg->connect_timeout_ms);
		return;
	}
	log_info("app %s: no target reachable for a client, closing it", cfg->name);
	stats_add(&c->app->stats->failed, 1);
	c->ti = -1;
	conn_free(c, false);
}

void conn_accept(struct worker *w, int fd, struct rt_app *app)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		log_warn("out of memory for a connection");
		close(fd);
		if (app->cfg->max_connections)
			atomic_fetch_sub_explicit(&app->active, 1, memory_order_relaxed);
		rt_app_put(app);
		return;
	}
	c->w = w;
	c->app = app;
	c->ti = -1;
	c->cli.io.fd = fd;
	c->cli.io.cb = conn_cli_cb;
	c->cli.readable = true;	/* bytes may have arrived before we registered */
	c->up.io.fd = -1;
	c->c2u.pipe[0] = c->c2u.pipe[1] = c->u2c.pipe[0] = c->u2c.pipe[1] = -1;
	ev_timer_init(&c->timer, conn_timer_cb);
	ev_timer_init(&c->poll, conn_poll_cb);
	set_sock_opts(fd, app->cfg);
	c->proto = proto_handler(app->cfg->protocol);
	if (c->proto->watch_new)
		c->watch = c->proto->watch_new(app);
	stats_add(&app->stats->accepted, 1);
	stats_add(&app->stats->active, 1);
	stats_add(&stats_global.accepted, 1);
	stats_add(&stats_global.active, 1);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->n_conns++;
	if (ev_add(&w->loop, &c->cli.io, CONN_EVENTS) < 0) {
		conn_free(c, true);
		return;
	}
	conn_connect_next(c);
}

static void conn_free(struct conn *c, bool reset)
{
	struct worker *w = c->w;
	struct ev_loop *loop = &w->loop;
	ev_timer_stop(loop, &c->timer);
	ev_timer_stop(loop, &c->poll);
	if (c->sp.on) {
		log_debug("app %s: spliced connection closed (%s)", c->app->cfg->name, reset ? "reset" : "done");
		/* out of the maps (the program stops counting), the final
		 * counters, then close */
		struct pandit_splice_val final[2];
		struct pandit_foo_track track = { .overflow = 0 };
		kpath_unsplice(&c->sp.pair, final, c->sp.framed ? &track : NULL);
		/* entries of foo_pending left; a watcher gone (a violation)
		 * took its count of the ones it made at an EOF with it */
		bool left = track.overflow != 0 || (c->sp.framed && !c->watch);
		if (c->sp.kwatch && c->watch)
			left = c->proto->kern_done(c->watch, c->app, &track);
		if (left) {
			kfoo_forget(c->sp.pair.cookie[0]);
			worker_foo_sweep_soon(w);
		}
		splice_fold(c, false, final);
		kpath_fold_app(c->app);
		c->sp.on = false;
		stats_sub(&kpath_stats.spliced_active, 1);
	}
	if (c->sc.on) {
		/* out of the map before the sockets close (the map is empty when
		 * idle), with the final counters */
		struct pandit_shortcut_pair final[2];
		shortcut_unpair(&c->sc.pair, final);
		shortcut_fold(c, final);
		c->sc.on = false;
		stats_sub(&shortcut_stats.paired_active, 1);
	} else if (c->sc.retry) {
		c->sc.retry = false;
		stats_add(&shortcut_stats.refused[SHORTCUT_REF_NOT_LOCAL], 1);
	}
	struct conn_side *sides[2] = { &c->cli, &c->up };
	for (int i = 0; i < 2; i++) {
		if (sides[i]->io.fd < 0)
			continue;
		ev_del(loop, &sides[i]->io);
		if (reset)
			set_reset_on_close(sides[i]->io.fd);
		close(sides[i]->io.fd);
	}
	struct conn_buf *bufs[2] = { &c->c2u, &c->u2c };
	for (int i = 0; i < 2; i++) {
		if (bufs[i]->data)
			buf_pool_put(&w->pool, bufs[i]->data);
		if (bufs[i]->pipe[0] >= 0 && bufs[i]->pipe_len == 0) {
			pipe_pool_put(&w->pipes, bufs[i]->pipe);
		} else if (bufs[i]->pipe[0] >= 0) {
			close(bufs[i]->pipe[0]);
			close(bufs[i]->pipe[1]);
		}
	}
	struct rt_app_target *at = conn_target(c);
	if (at && c->state == CONN_RELAY)
		stats_sub(&at->stats->active, 1);
	stats_sub(&c->app->stats->active, 1);
	stats_sub(&stats_global.active, 1);
	if (c->app->cfg->max_connections)
		atomic_fetch_sub_explicit(&c->app->active, 1, memory_order_relaxed);
	if (c->watch)
		c->proto->watch_free(c->watch, c->app);
	rt_app_put(c->app);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_conns--;
	c->dead = true;
	c->app = NULL;
	c->next = w->dead;
	w->dead = c;
}

void conn_reap(struct worker *w)
{
	while (w->dead) {
		struct conn *c = w->dead;
		w->dead = c->next;
		free(c);
	}
}

void conn_close(struct conn *c)
{
	conn_free(c, true);
}
