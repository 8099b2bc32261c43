/* foo_client.c - a Foo protocol test client and load generator: C connections pipelining REQs, every reply checked (type, Seq, order), JSON summary. */

/*
 * Each connection sends REQ first_seq, first_seq + 1, ... with at most
 * --depth requests awaiting replies, and checks each reply as it arrives:
 * it must be ACK or NAK (a valid Foo line), with the Seq of the oldest
 * request waiting (Foo servers answer in order). Anything else is an error:
 * a wrong type or Seq, a reply nobody asked for, a line that is not Foo, a
 * connection refused or closed with replies still owed, and at the end every
 * reply still missing. After its last reply a connection sends FIN and waits
 * for the server's; bytes after the last reply are errors too.
 *
 * Bounded: -n requests per connection (0: no limit, then --duration is
 * needed), --duration seconds of sending (then the replies owed are
 * awaited), and --timeout seconds for the whole run (default 60), after
 * which whatever is missing counts as errors.
 *
 * Closed loop by default (as fast as the depth allows). --rate R makes it
 * open loop: R requests a second in total, evenly spread over the
 * connections, each request's latency measured from its scheduled time so
 * a stalled server is not hidden (no coordinated omission); the depth still
 * bounds what is in flight.
 *
 * --threads T spreads the connections over T threads, each its own epoll
 * loop (edge-triggered). Output: one JSON line on stdout,
 *   {"sent","acks","naks","errors","msgs_per_s","p50_us","p99_us", then
 *    "p999_us","max_us","conns","elapsed_s" and "first_error" when any}
 * msgs_per_s is replies received per second of the run (first send to last
 * reply). Exit status 0 only when there was no error, every request sent
 * got its reply and, with -n and no --duration, all were sent.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "proto/foo.h"

#define MAX_EVENTS 256
#define RBUF (64 * 1024)
#define HIST_SUB 64		/* sub-buckets per power of two: < 1.6 % error */
#define HIST_N (64 * HIST_SUB)

enum cstate { C_CONNECTING, C_RUNNING, C_DRAINING, C_DONE };

struct runner;

struct cconn {
	int fd;
	bool is_timer;		/* epoll data: distinguishes the runner's timerfd */
	struct runner *r;
	unsigned id;
	enum cstate state;
	uint64_t first_seq;
	uint64_t sent, recv;
	uint64_t *times;	/* ring of depth send (or scheduled) times */
	uint64_t next_sched;	/* --rate: when the next request is due */
	struct foo_parser parser;
	char *out;
	uint32_t out_head, out_tail, out_cap;
	bool readable, writable, failed;
	uint64_t now;		/* during a feed */
};

struct runner {
	pthread_t th;
	int ep, tfd;
	struct cconn *conns;
	unsigned n;
	unsigned done;
	uint64_t sent, acks, naks, errors;
	uint64_t last_reply_ns;
	uint64_t hist[HIST_N];
	uint64_t max_ns;
	char first_error[200];
	struct cconn timer_item;
};

static struct {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	unsigned conns, threads;
	uint64_t n;		/* per connection, 0: unlimited */
	uint32_t depth;
	const char *data;
	size_t data_len, line_max;
	double duration_s, timeout_s, rate;
	uint64_t seq_start;
	uint64_t start_ns, stop_send_ns, deadline_ns;
	uint64_t interval_ns;	/* --rate: between two requests of one connection */
} O;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --- latency histogram (log-linear, nanoseconds) --------------------------------- */

static unsigned hist_index(uint64_t v)
{
	if (v < HIST_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);	/* >= 6 */
	return (e - 5) * HIST_SUB + (unsigned)((v >> (e - 6)) & (HIST_SUB - 1));
}

/* Middle of bucket i. */
static double hist_value(unsigned i)
{
	if (i < HIST_SUB)
		return (double)i;
	unsigned e = i / HIST_SUB + 5, sub = i % HIST_SUB;
	double lo = (double)((uint64_t)(HIST_SUB + sub) << (e - 6));
	return lo + (double)(1ull << (e - 6)) / 2.0;
}

static double hist_quantile(const uint64_t *h, uint64_t count, double q)
{
	if (!count)
		return 0.0;
	uint64_t rank = (uint64_t)ceil(q * (double)count);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_N; i++) {
		seen += h[i];
		if (seen >= rank)
			return hist_value(i);
	}
	return hist_value(HIST_N - 1);
}

/* --- errors ------------------------------------------------------------------------- */

static void error_at(struct cconn *c, uint64_t n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void error_at(struct cconn *c, uint64_t n, const char *fmt, ...)
{
	struct runner *r = c->r;
	if (!r->errors) {
		int k = snprintf(r->first_error, sizeof(r->first_error), "conn %u: ", c->id);
		va_list ap;
		va_start(ap, fmt);
		if (k > 0 && (size_t)k < sizeof(r->first_error))
			vsnprintf(r->first_error + k, sizeof(r->first_error) - (size_t)k, fmt, ap);
		va_end(ap);
	}
	r->errors += n;
}

static void conn_finish(struct cconn *c)
{
	if (c->state == C_DONE)
		return;
	if (c->fd >= 0) {
		epoll_ctl(c->r->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	c->state = C_DONE;
	c->r->done++;
}

/* Fails the connection: the replies it still owes count as errors too. */
static void conn_fail(struct cconn *c)
{
	c->failed = true;
	uint64_t owed = c->sent - c->recv;
	if (owed)
		error_at(c, owed, "%" PRIu64 " replies missing", owed);
	conn_finish(c);
}

/* --- replies ------------------------------------------------------------------------- */

static void on_reply(void *arg, const struct foo_msg *m)
{
	struct cconn *c = arg;
	if (c->failed)
		return;
	if (m->type == FOO_REQ) {
		error_at(c, 1, "REQ %" PRIu64 " from the server", m->seq);
		c->failed = true;
		return;
	}
	if (c->recv >= c->sent) {
		error_at(c, 1, "%s %" PRIu64 " with no request waiting", foo_type_str(m->type), m->seq);
		c->failed = true;
		return;
	}
	uint64_t want = c->first_seq + c->recv;
	if (m->seq != want) {
		error_at(c, 1, "expected Seq %" PRIu64 ", got %s %" PRIu64, want, foo_type_str(m->type),
			 m->seq);
		c->failed = true;
		return;
	}
	struct runner *r = c->r;
	if (m->type == FOO_ACK)
		r->acks++;
	else
		r->naks++;
	uint64_t t0 = c->times[c->recv % O.depth];
	uint64_t dt = c->now > t0 ? c->now - t0 : 0;
	r->hist[hist_index(dt)]++;
	if (dt > r->max_ns)
		r->max_ns = dt;
	r->last_reply_ns = c->now;
	c->recv++;
}

/* --- sending ------------------------------------------------------------------------- */

static bool may_send(const struct cconn *c, uint64_t now)
{
	if (c->state != C_RUNNING)
		return false;
	if (O.n && c->sent >= O.n)
		return false;
	if (now >= O.stop_send_ns)
		return false;
	if (c->sent - c->recv >= O.depth)
		return false;
	if (O.rate > 0 && now < c->next_sched)
		return false;
	return true;
}

static size_t put_req(char *p, uint64_t seq)
{
	char digits[24];
	int nd = 0;
	do {
		digits[nd++] = (char)('0' + seq % 10);
		seq /= 10;
	} while (seq);
	memcpy(p, "REQ ", 4);
	size_t n = 4;
	while (nd)
		p[n++] = digits[--nd];
	if (O.data_len) {
		p[n++] = ' ';
		memcpy(p + n, O.data, O.data_len);
		n += O.data_len;
	}
	p[n++] = '\n';
	return n;
}

static void fill(struct cconn *c, uint64_t now)
{
	while (may_send(c, now)) {
		if (c->out_tail + O.line_max > c->out_cap) {
			if (c->out_head == 0)
				break;
			memmove(c->out, c->out + c->out_head, c->out_tail - c->out_head);
			c->out_tail -= c->out_head;
			c->out_head = 0;
			if (c->out_tail + O.line_max > c->out_cap)
				break;
		}
		c->out_tail += (uint32_t)put_req(c->out + c->out_tail, c->first_seq + c->sent);
		/* open loop: latency from the schedule, not from when we got to it */
		c->times[c->sent % O.depth] = O.rate > 0 ? c->next_sched : now;
		c->sent++;
		c->r->sent++;
		if (O.rate > 0)
			c->next_sched += O.interval_ns;
	}
}

/* True when the connection has nothing more to send (ever). */
static bool send_over(const struct cconn *c, uint64_t now)
{
	return (O.n && c->sent >= O.n) || now >= O.stop_send_ns;
}

static void conn_service(struct cconn *c)
{
	static __thread char rbuf[RBUF];
	struct runner *r = c->r;
	for (;;) {
		if (c->state == C_DONE)
			return;
		bool progress = false;
		uint64_t now = now_ns();
		fill(c, now);
		if (c->out_tail > c->out_head && c->writable) {
			ssize_t n = send(c->fd, c->out + c->out_head, c->out_tail - c->out_head,
					 MSG_NOSIGNAL);
			if (n > 0) {
				c->out_head += (uint32_t)n;
				if (c->out_head == c->out_tail)
					c->out_head = c->out_tail = 0;
				progress = true;
			} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				c->writable = false;
			} else if (n < 0 && errno != EINTR) {
				error_at(c, 1, "send() failed: %s", strerror(errno));
				conn_fail(c);
				return;
			}
		}
		if (c->readable) {
			ssize_t n = recv(c->fd, rbuf, sizeof(rbuf), 0);
			if (n > 0) {
				progress = true;
				c->now = now_ns();
				int pr = foo_feed(&c->parser, rbuf, (size_t)n, on_reply, c);
				if (pr < 0) {
					error_at(c, 1, "reply not Foo: %s at byte %" PRIu64,
						 foo_err_str(c->parser.err), c->parser.err_offset);
					conn_fail(c);
					return;
				}
				if (c->failed) {
					conn_fail(c);
					return;
				}
			} else if (n == 0) {
				c->now = now_ns();
				if (foo_finish(&c->parser, on_reply, c) < 0)
					error_at(c, 1, "last reply cut: %s", foo_err_str(c->parser.err));
				if (c->state != C_DRAINING || c->sent != c->recv) {
					error_at(c, 1, "server closed the connection early");
					conn_fail(c);
					return;
				}
				conn_finish(c);
				return;
			} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->readable = false;
			} else if (errno != EINTR) {
				error_at(c, 1, "recv() failed: %s", strerror(errno));
				conn_fail(c);
				return;
			}
		}
		/* all sent and answered: FIN, then wait for the server's */
		if (c->state == C_RUNNING && send_over(c, now) && c->recv == c->sent &&
		    c->out_tail == c->out_head) {
			shutdown(c->fd, SHUT_WR);
			c->state = C_DRAINING;
			progress = true;
		}
		if (!progress)
			break;
	}
	(void)r;
}

/* --- connections ---------------------------------------------------------------------- */

static void conn_start(struct cconn *c)
{
	c->fd = socket(O.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		error_at(c, 1, "socket() failed: %s", strerror(errno));
		conn_finish(c);
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&O.addr, O.addr_len) < 0 && errno != EINPROGRESS) {
		error_at(c, 1, "connect() failed: %s", strerror(errno));
		conn_finish(c);
		return;
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
	if (epoll_ctl(c->r->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		error_at(c, 1, "epoll_ctl() failed: %s", strerror(errno));
		conn_finish(c);
		return;
	}
	c->state = C_CONNECTING;
}

static void conn_event(struct cconn *c, uint32_t events)
{
	if (c->state == C_DONE)
		return;
	if (c->state == C_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (!err && (events & (EPOLLERR | EPOLLHUP)))
			err = ECONNREFUSED;
		if (err) {
			error_at(c, 1, "connect() failed: %s", strerror(err));
			conn_finish(c);
			return;
		}
		if (!(events & EPOLLOUT))
			return;
		c->state = C_RUNNING;
		c->next_sched = now_ns();
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->readable = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->writable = true;
	conn_service(c);
}

/* --rate: wakes the runner at the earliest scheduled send. */
static void arm_timer(struct runner *r)
{
	uint64_t next = UINT64_MAX;
	for (unsigned i = 0; i < r->n; i++) {
		struct cconn *c = &r->conns[i];
		if (c->state == C_RUNNING && !send_over(c, 0) && c->sent - c->recv < O.depth &&
		    c->next_sched < next)
			next = c->next_sched;
	}
	if (next > O.stop_send_ns)
		next = O.stop_send_ns;
	if (next > O.deadline_ns)
		next = O.deadline_ns;
	struct itimerspec its = { .it_value = { .tv_sec = (time_t)(next / 1000000000ull),
						.tv_nsec = (long)(next % 1000000000ull) } };
	if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
		its.it_value.tv_nsec = 1;
	timerfd_settime(r->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void *runner_main(void *arg)
{
	struct runner *r = arg;
	for (unsigned i = 0; i < r->n; i++)
		conn_start(&r->conns[i]);
	struct epoll_event evs[MAX_EVENTS];
	bool stop_seen = false;
	while (r->done < r->n) {
		uint64_t now = now_ns();
		if (now >= O.deadline_ns)
			break;
		if (!stop_seen && now >= O.stop_send_ns) {
			/* sending is over: let the connections with nothing owed close */
			stop_seen = true;
			for (unsigned i = 0; i < r->n; i++)
				if (r->conns[i].state == C_RUNNING)
					conn_service(&r->conns[i]);
			continue;
		}
		uint64_t until = O.deadline_ns;
		if (!stop_seen && O.stop_send_ns < until)
			until = O.stop_send_ns;
		int timeout = (int)((until - now + 999999) / 1000000);
		if (O.rate > 0)
			arm_timer(r);
		int n = epoll_wait(r->ep, evs, MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR) {
			snprintf(r->first_error, sizeof(r->first_error), "epoll_wait() failed: %s",
				 strerror(errno));
			r->errors++;
			break;
		}
		for (int i = 0; i < n; i++) {
			struct cconn *c = evs[i].data.ptr;
			if (c->is_timer) {
				uint64_t x;
				if (read(r->tfd, &x, sizeof(x)) < 0) {
					/* nothing: EAGAIN on a spurious wakeup */
				}
				uint64_t t = now_ns();
				for (unsigned k = 0; k < r->n; k++)
					if (may_send(&r->conns[k], t))
						conn_service(&r->conns[k]);
				continue;
			}
			conn_event(c, evs[i].events);
		}
	}
	/* time is up: whatever is still owed is missing */
	for (unsigned i = 0; i < r->n; i++) {
		struct cconn *c = &r->conns[i];
		if (c->state == C_DONE)
			continue;
		uint64_t owed = c->sent - c->recv;
		if (owed)
			error_at(c, owed, "timed out with %" PRIu64 " replies missing", owed);
		else if (O.n && !O.duration_s && c->sent < O.n)
			error_at(c, 1, "timed out after %" PRIu64 " of %" PRIu64 " requests", c->sent, O.n);
		else if (c->state == C_DRAINING)
			error_at(c, 1, "server never closed the connection");
		else
			error_at(c, 1, "timed out");
		conn_finish(c);
	}
	return NULL;
}

/* --- setup ---------------------------------------------------------------------------- */

static int resolve(const char *spec)
{
	char host[256] = "127.0.0.1";
	const char *port = spec;
	const char *colon = strrchr(spec, ':');
	if (colon) {
		size_t hl = (size_t)(colon - spec);
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, spec, hl);
		host[hl] = '\0';
		if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
			memmove(host, host + 1, hl - 2);
			host[hl - 2] = '\0';
		}
		if (!host[0])
			strcpy(host, "127.0.0.1");
		port = colon + 1;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res;
	int e = getaddrinfo(host, port, &hints, &res);
	if (e) {
		fprintf(stderr, "foo_client: %s: %s\n", spec, gai_strerror(e));
		return -1;
	}
	memcpy(&O.addr, res->ai_addr, res->ai_addrlen);
	O.addr_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: foo_client [-a HOST:PORT] [-c CONNS] [-n REQS] [-d DEPTH] [--data TEXT]\n"
		"                  [--duration S] [--timeout S] [--rate R] [--threads T] [--seq-start N]\n"
		"  -a, --connect   where to connect (default 127.0.0.1:8002)\n"
		"  -c, --conns     connections (default 1)\n"
		"  -n, --requests  requests per connection (default 1000; 0: until --duration)\n"
		"  -d, --depth     requests in flight per connection (default 1)\n"
		"  --data TEXT     Data of each REQ (default \"hello\"; empty for none)\n"
		"  --duration S    stop sending after S seconds\n"
		"  --timeout S     end of the whole run, missing replies are errors (default 60)\n"
		"  --rate R        open loop: R requests per second in total\n"
		"  --threads T     threads sharing the connections (default 1)\n"
		"  --seq-start N   first Seq of every connection (default 1)\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "connect", required_argument, NULL, 'a' },
		{ "conns", required_argument, NULL, 'c' },
		{ "requests", required_argument, NULL, 'n' },
		{ "depth", required_argument, NULL, 'd' },
		{ "data", required_argument, NULL, 'D' },
		{ "duration", required_argument, NULL, 'U' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "rate", required_argument, NULL, 'R' },
		{ "threads", required_argument, NULL, 'H' },
		{ "seq-start", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *target = "127.0.0.1:8002";
	O.conns = 1;
	O.threads = 1;
	O.n = 1000;
	O.depth = 1;
	O.data = "hello";
	O.timeout_s = 60;
	O.seq_start = 1;
	int o;
	while ((o = getopt_long(argc, argv, "a:c:n:d:h", opts, NULL)) != -1) {
		char *end = NULL;
		switch (o) {
		case 'a': target = optarg; break;
		case 'c': O.conns = (unsigned)strtoul(optarg, &end, 10); break;
		case 'n': O.n = strtoull(optarg, &end, 10); break;
		case 'd': O.depth = (uint32_t)strtoul(optarg, &end, 10); break;
		case 'D': O.data = optarg; break;
		case 'U': O.duration_s = strtod(optarg, &end); break;
		case 'T': O.timeout_s = strtod(optarg, &end); break;
		case 'R': O.rate = strtod(optarg, &end); break;
		case 'H': O.threads = (unsigned)strtoul(optarg, &end, 10); break;
		case 'S': O.seq_start = strtoull(optarg, &end, 10); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
		if (end && *end) {
			fprintf(stderr, "foo_client: bad number: %s\n", optarg);
			return 2;
		}
	}
	O.data_len = strlen(O.data);
	if (!O.conns || O.conns > 100000 || !O.depth || O.depth > 1000000 || !O.threads ||
	    O.threads > 64 || O.data_len > 4000 || memchr(O.data, '\n', O.data_len) ||
	    !(O.timeout_s > 0) || O.duration_s < 0 || O.rate < 0 || (!O.n && !(O.duration_s > 0))) {
		fprintf(stderr, "foo_client: bad arguments (need conns, depth, threads >= 1; -n 0 needs --duration)\n");
		usage(stderr);
		return 2;
	}
	if (O.threads > O.conns)
		O.threads = O.conns;
	if (resolve(target) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	O.line_max = 4 + 20 + 1 + O.data_len + 1;
	if (O.rate > 0)
		O.interval_ns = (uint64_t)(1e9 * O.conns / O.rate);
	size_t out_cap = (O.depth < 256 ? O.depth : 256) * O.line_max + O.line_max;
	if (out_cap < 4096)
		out_cap = 4096;

	struct runner *rs = calloc(O.threads, sizeof(*rs));
	struct cconn *cs = calloc(O.conns, sizeof(*cs));
	if (!rs || !cs) {
		fprintf(stderr, "foo_client: out of memory\n");
		return 1;
	}
	for (unsigned t = 0; t < O.threads; t++) {
		struct runner *r = &rs[t];
		r->ep = epoll_create1(EPOLL_CLOEXEC);
		r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		r->timer_item.is_timer = true;
		r->timer_item.r = r;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &r->timer_item };
		if (r->ep < 0 || r->tfd < 0 || epoll_ctl(r->ep, EPOLL_CTL_ADD, r->tfd, &ev) < 0) {
			fprintf(stderr, "foo_client: epoll/timerfd setup failed: %s\n", strerror(errno));
			return 1;
		}
		/* connections t, t + T, ... are this thread's: a contiguous slice */
		r->conns = cs + (size_t)t * (O.conns / O.threads) + (t < O.conns % O.threads ? t : O.conns % O.threads);
		r->n = O.conns / O.threads + (t < O.conns % O.threads);
	}
	for (unsigned i = 0; i < O.conns; i++) {
		struct cconn *c = &cs[i];
		c->id = i;
		c->fd = -1;
		c->first_seq = O.seq_start;
		c->times = calloc(O.depth, sizeof(uint64_t));
		c->out = malloc(out_cap);
		c->out_cap = (uint32_t)out_cap;
		foo_parser_init(&c->parser, 0);
		if (!c->times || !c->out) {
			fprintf(stderr, "foo_client: out of memory\n");
			return 1;
		}
	}
	for (unsigned t = 0; t < O.threads; t++)
		for (unsigned i = 0; i < rs[t].n; i++)
			rs[t].conns[i].r = &rs[t];

	O.start_ns = now_ns();
	O.stop_send_ns = O.duration_s > 0 ? O.start_ns + (uint64_t)(O.duration_s * 1e9) : UINT64_MAX;
	O.deadline_ns = O.start_ns + (uint64_t)(O.timeout_s * 1e9);
	if (O.duration_s > 0 && O.stop_send_ns > O.deadline_ns)
		O.deadline_ns = O.stop_send_ns + 10ull * 1000000000ull;	/* grace for the replies owed */
	for (unsigned t = 1; t < O.threads; t++)
		if (pthread_create(&rs[t].th, NULL, runner_main, &rs[t]) != 0) {
			fprintf(stderr, "foo_client: pthread_create() failed\n");
			return 1;
		}
	runner_main(&rs[0]);
	for (unsigned t = 1; t < O.threads; t++)
		pthread_join(rs[t].th, NULL);

	uint64_t sent = 0, acks = 0, naks = 0, errors = 0, last = O.start_ns, max_ns = 0;
	static uint64_t hist[HIST_N];
	const char *first_error = NULL;
	for (unsigned t = 0; t < O.threads; t++) {
		struct runner *r = &rs[t];
		sent += r->sent;
		acks += r->acks;
		naks += r->naks;
		errors += r->errors;
		if (r->last_reply_ns > last)
			last = r->last_reply_ns;
		if (r->max_ns > max_ns)
			max_ns = r->max_ns;
		for (unsigned i = 0; i < HIST_N; i++)
			hist[i] += r->hist[i];
		if (r->errors && !first_error)
			first_error = r->first_error;
	}
	uint64_t replies = acks + naks;
	double elapsed = (double)(last - O.start_ns) / 1e9;
	double mps = elapsed > 0 ? (double)replies / elapsed : 0.0;
	printf("{\"sent\":%" PRIu64 ",\"acks\":%" PRIu64 ",\"naks\":%" PRIu64 ",\"errors\":%" PRIu64
	       ",\"msgs_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f"
	       ",\"conns\":%u,\"elapsed_s\":%.3f",
	       sent, acks, naks, errors, mps, hist_quantile(hist, replies, 0.50) / 1e3,
	       hist_quantile(hist, replies, 0.99) / 1e3, hist_quantile(hist, replies, 0.999) / 1e3,
	       (double)max_ns / 1e3, O.conns, elapsed);
	if (first_error) {
		printf(",\"first_error\":\"");
		for (const char *p = first_error; *p; p++) {
			if (*p == '"' || *p == '\\')
				putchar('\\');
			putchar((unsigned char)*p >= 0x20 ? *p : '?');
		}
		putchar('"');
	}
	printf("}\n");
	fflush(stdout);
	bool complete = !O.n || O.duration_s > 0 || sent == (uint64_t)O.conns * O.n;
	for (unsigned i = 0; i < O.conns; i++) {
		free(cs[i].times);
		free(cs[i].out);
	}
	free(cs);
	free(rs);
	return errors == 0 && replies == sent && complete ? 0 : 1;
}
