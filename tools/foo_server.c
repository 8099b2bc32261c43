/* foo_server.c - a Foo protocol test server: answers every REQ n with ACK n (or NAK n for a set fraction), pipelining-safe, optional delay. */

/*
 * One thread, one edge-triggered epoll loop, non-blocking sockets. Requests
 * are parsed with pandit's own Foo parser (src/proto/foo.c). Each connection
 * has a queue of replies owed (Seq, NAK or not, due time) and an output
 * buffer, both fixed in size: when either is full the server stops reading
 * from that client (backpressure) instead of growing anything, and reads
 * only as many bytes as could produce replies that fit (a REQ takes at
 * least 6 bytes). Replies go out in request order, so pipelined clients can
 * check order.
 *
 * NAKs: with --nak F, a running sum decides (sum += F; NAK when it reaches 1),
 * so exactly a fraction F of the requests, spread evenly, get NAK.
 * --delay-us D holds every reply D microseconds after its request arrived.
 * A client that breaks the protocol is closed (counted as a violation).
 * ACK/NAK from a client are ignored (counted). After the client's FIN the
 * server sends what it owes, then closes ("only clients may terminate").
 *
 * SIGUSR1 prints the counters as one JSON line on stdout; SIGINT/SIGTERM
 * print them and exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "proto/foo.h"

#define OUT_CAP		(64 * 1024)	/* reply bytes queued for one client */
#define QUEUE_CAP	4096		/* replies owed to one client */
#define READ_CAP	(16 * 1024)
#define MIN_REQ		6		/* "REQ 1\n" */
#define MAX_EVENTS	256
#define MAX_DATA	1024

enum kind { K_LISTENER, K_CONN, K_SIGNAL, K_TIMER };

struct item {
	enum kind kind;
	int fd;
};

struct owed {
	uint64_t seq;
	uint64_t due_ns;
	bool nak;
};

struct fconn {
	struct item it;
	struct fconn *prev, *next;	/* all connections */
	struct foo_parser parser;
	uint32_t q_head, q_len;
	uint32_t out_head, out_tail;
	bool readable, writable, eof, dead;
	/* the big arrays last: accept zeroes only what comes before them */
	struct owed q[QUEUE_CAP];	/* ring */
	char out[OUT_CAP];
};

static struct {
	const char *ack_data, *nak_data;
	size_t ack_len, nak_len, max_reply;
	double nak_frac, nak_acc;
	uint64_t delay_ns;
	uint32_t max_line;
	uint32_t max_conns;
	bool quiet;
	int ep;
	struct fconn *conns;
	uint32_t n_conns;
	/* counters */
	uint64_t accepted, reqs, acks, naks, ignored, violations, eof_cut;
} S;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void print_counters(void)
{
	printf("{\"accepted\":%" PRIu64 ",\"open\":%u,\"reqs\":%" PRIu64 ",\"acks\":%" PRIu64
	       ",\"naks\":%" PRIu64 ",\"ignored\":%" PRIu64 ",\"violations\":%" PRIu64 "}\n",
	       S.accepted, S.n_conns, S.reqs, S.acks, S.naks, S.ignored, S.violations);
	fflush(stdout);
}

static void conn_close(struct fconn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	epoll_ctl(S.ep, EPOLL_CTL_DEL, c->it.fd, NULL);
	close(c->it.fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		S.conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	S.n_conns--;
	free(c);
}

static void on_msg(void *arg, const struct foo_msg *m)
{
	struct fconn *c = arg;
	if (m->type != FOO_REQ) {
		S.ignored++;
		return;
	}
	/* the read size guarantees room; check anyway */
	if (c->q_len == QUEUE_CAP) {
		S.ignored++;
		return;
	}
	S.reqs++;
	struct owed *o = &c->q[(c->q_head + c->q_len++) % QUEUE_CAP];
	o->seq = m->seq;
	o->due_ns = S.delay_ns ? now_ns() + S.delay_ns : 0;
	S.nak_acc += S.nak_frac;
	o->nak = S.nak_acc >= 1.0;
	if (o->nak)
		S.nak_acc -= 1.0;
}

static size_t put_reply(char *p, const struct owed *o)
{
	char digits[24];
	int nd = 0;
	uint64_t v = o->seq;
	do {
		digits[nd++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	size_t n = 0;
	memcpy(p, o->nak ? "NAK " : "ACK ", 4);
	n = 4;
	while (nd)
		p[n++] = digits[--nd];
	const char *d = o->nak ? S.nak_data : S.ack_data;
	size_t dl = o->nak ? S.nak_len : S.ack_len;
	if (dl) {
		p[n++] = ' ';
		memcpy(p + n, d, dl);
		n += dl;
	}
	p[n++] = '\n';
	return n;
}

/* Moves due replies into the output buffer; returns true if any moved. */
static bool render_due(struct fconn *c, uint64_t now)
{
	bool moved = false;
	while (c->q_len) {
		struct owed *o = &c->q[c->q_head];
		if (o->due_ns > now)
			break;
		if (c->out_tail + S.max_reply > OUT_CAP) {
			if (c->out_head == 0)
				break;
			memmove(c->out, c->out + c->out_head, c->out_tail - c->out_head);
			c->out_tail -= c->out_head;
			c->out_head = 0;
			if (c->out_tail + S.max_reply > OUT_CAP)
				break;
		}
		c->out_tail += (uint32_t)put_reply(c->out + c->out_tail, o);
		if (o->nak)
			S.naks++;
		else
			S.acks++;
		c->q_head = (c->q_head + 1) % QUEUE_CAP;
		c->q_len--;
		moved = true;
	}
	return moved;
}

/* Does all it can for a connection; closes it when it is over. */
static void conn_service(struct fconn *c)
{
	static char rbuf[READ_CAP];
	for (;;) {
		bool progress = render_due(c, S.delay_ns ? now_ns() : 0);
		if (c->out_tail > c->out_head && c->writable) {
			ssize_t n = send(c->it.fd, c->out + c->out_head, c->out_tail - c->out_head,
					 MSG_NOSIGNAL);
			if (n > 0) {
				c->out_head += (uint32_t)n;
				if (c->out_head == c->out_tail)
					c->out_head = c->out_tail = 0;
				progress = true;
			} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				c->writable = false;
			} else if (n < 0 && errno != EINTR) {
				conn_close(c);	/* reset by the client */
				return;
			}
		}
		/* room for replies: queue slots, and output space for what
		 * render_due() cannot move yet */
		size_t slots = QUEUE_CAP - c->q_len;
		if (c->readable && !c->eof && slots > 1) {
			size_t want = (slots - 1) * MIN_REQ;
			if (want > READ_CAP)
				want = READ_CAP;
			ssize_t n = recv(c->it.fd, rbuf, want, 0);
			if (n > 0) {
				progress = true;
				if (foo_feed(&c->parser, rbuf, (size_t)n, on_msg, c) < 0) {
					S.violations++;
					if (!S.quiet)
						fprintf(stderr, "foo_server: closing a client: %s at byte %" PRIu64 "\n",
							foo_err_str(c->parser.err), c->parser.err_offset);
					conn_close(c);
					return;
				}
			} else if (n == 0) {
				c->eof = true;
				progress = true;
				if (foo_finish(&c->parser, on_msg, c) < 0)
					S.eof_cut++;
			} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->readable = false;
			} else if (errno != EINTR) {
				conn_close(c);
				return;
			}
		}
		if (!progress)
			break;
	}
	if (c->eof && c->q_len == 0 && c->out_tail == c->out_head) {
		shutdown(c->it.fd, SHUT_WR);
		conn_close(c);
	}
}

static void do_accept(struct item *l)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && !S.quiet)
				fprintf(stderr, "foo_server: accept4() failed: %s\n", strerror(errno));
			return;
		}
		if (S.n_conns >= S.max_conns) {
			close(fd);
			continue;
		}
		struct fconn *c = malloc(sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		memset(c, 0, offsetof(struct fconn, q));
		c->it = (struct item){ .kind = K_CONN, .fd = fd };
		c->readable = c->writable = true;
		foo_parser_init(&c->parser, S.max_line);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
					  .data.ptr = &c->it };
		if (epoll_ctl(S.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = S.conns;
		if (S.conns)
			S.conns->prev = c;
		S.conns = c;
		S.n_conns++;
		S.accepted++;
		conn_service(c);
	}
}

static int listen_on(const char *spec)
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
			strcpy(host, "0.0.0.0");
		port = colon + 1;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *res;
	int r = getaddrinfo(host, port, &hints, &res);
	if (r) {
		fprintf(stderr, "foo_server: %s: %s\n", spec, gai_strerror(r));
		return -1;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
		fprintf(stderr, "foo_server: listen on %s failed: %s\n", spec, strerror(errno));
		freeaddrinfo(res);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	freeaddrinfo(res);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char name[INET6_ADDRSTRLEN] = "?";
	uint16_t p = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &a->sin_addr, name, sizeof(name));
			p = ntohs(a->sin_port);
		} else {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &a->sin6_addr, name, sizeof(name));
			p = ntohs(a->sin6_port);
		}
	}
	/* tests started with port 0 read the port from this line */
	printf("foo_server: listening on %s:%u\n", name, p);
	fflush(stdout);
	return fd;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: foo_server [-p PORT | -l [ADDR:]PORT] [--nak FRACTION] [--delay-us N]\n"
		"                  [--ack-data TEXT] [--nak-data TEXT] [--max-line N] [--max-conns N] [-q]\n"
		"  -l, --listen      address and port (default 127.0.0.1:8001; port 0 picks one)\n"
		"  --nak F           answer this fraction of requests (0..1) with NAK (default 0)\n"
		"  --delay-us N      hold each reply N microseconds (default 0)\n"
		"  --ack-data TEXT   Data of ACK replies (default \"ok\"; empty for none)\n"
		"  --nak-data TEXT   Data of NAK replies (default \"no\")\n"
		"  --max-line N      longest request line accepted (default 4096)\n"
		"SIGUSR1 prints the counters as JSON; SIGINT/SIGTERM print them and exit.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "listen", required_argument, NULL, 'l' },
		{ "nak", required_argument, NULL, 'N' },
		{ "delay-us", required_argument, NULL, 'D' },
		{ "ack-data", required_argument, NULL, 'A' },
		{ "nak-data", required_argument, NULL, 'K' },
		{ "max-line", required_argument, NULL, 'M' },
		{ "max-conns", required_argument, NULL, 'C' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *listen_spec = "127.0.0.1:8001";
	char portbuf[64];
	S.ack_data = "ok";
	S.nak_data = "no";
	S.max_conns = 4096;
	int o;
	while ((o = getopt_long(argc, argv, "p:l:qh", opts, NULL)) != -1) {
		char *end = NULL;
		switch (o) {
		case 'p':
			snprintf(portbuf, sizeof(portbuf), "127.0.0.1:%s", optarg);
			listen_spec = portbuf;
			break;
		case 'l':
			listen_spec = optarg;
			break;
		case 'N':
			S.nak_frac = strtod(optarg, &end);
			if (*end || !(S.nak_frac >= 0.0 && S.nak_frac <= 1.0)) {
				fprintf(stderr, "foo_server: --nak wants a number in 0..1\n");
				return 2;
			}
			break;
		case 'D':
			S.delay_ns = strtoull(optarg, &end, 10) * 1000ull;
			if (*end) {
				fprintf(stderr, "foo_server: bad --delay-us\n");
				return 2;
			}
			break;
		case 'A':
			S.ack_data = optarg;
			break;
		case 'K':
			S.nak_data = optarg;
			break;
		case 'M':
			S.max_line = (uint32_t)strtoul(optarg, &end, 10);
			break;
		case 'C':
			S.max_conns = (uint32_t)strtoul(optarg, &end, 10);
			break;
		case 'q':
			S.quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	S.ack_len = strlen(S.ack_data);
	S.nak_len = strlen(S.nak_data);
	if (S.ack_len > MAX_DATA || S.nak_len > MAX_DATA || memchr(S.ack_data, '\n', S.ack_len) ||
	    memchr(S.nak_data, '\n', S.nak_len)) {
		fprintf(stderr, "foo_server: reply Data must be one line of at most %d bytes\n", MAX_DATA);
		return 2;
	}
	S.max_reply = 4 + 20 + 1 + (S.ack_len > S.nak_len ? S.ack_len : S.nak_len) + 1;

	int lfd = listen_on(listen_spec);
	if (lfd < 0)
		return 1;
	S.ep = epoll_create1(EPOLL_CLOEXEC);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	struct item litem = { K_LISTENER, lfd }, sitem = { K_SIGNAL, sfd };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &litem };
	if (S.ep < 0 || sfd < 0 || epoll_ctl(S.ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
		fprintf(stderr, "foo_server: epoll setup failed: %s\n", strerror(errno));
		return 1;
	}
	ev.data.ptr = &sitem;
	epoll_ctl(S.ep, EPOLL_CTL_ADD, sfd, &ev);

	/* --delay-us: a timerfd armed at the earliest reply due (microsecond
	 * precision, where an epoll_wait timeout would round to milliseconds) */
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct item titem = { K_TIMER, tfd };
	ev.data.ptr = &titem;
	if (tfd < 0 || epoll_ctl(S.ep, EPOLL_CTL_ADD, tfd, &ev) < 0) {
		fprintf(stderr, "foo_server: timerfd setup failed: %s\n", strerror(errno));
		return 1;
	}
	uint64_t armed = 0;

	struct epoll_event evs[MAX_EVENTS];
	for (;;) {
		int timeout = -1;
		if (S.delay_ns) {
			/* the earliest reply due; a scan is fine for a test tool */
			uint64_t next = UINT64_MAX;
			for (struct fconn *c = S.conns; c; c = c->next)
				if (c->q_len && c->q[c->q_head].due_ns < next)
					next = c->q[c->q_head].due_ns;
			if (next != UINT64_MAX && next != armed) {
				struct itimerspec its = {
					.it_value = { .tv_sec = (time_t)(next / 1000000000ull),
						      .tv_nsec = (long)(next % 1000000000ull) } };
				timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
				armed = next;
			}
		}
		int n = epoll_wait(S.ep, evs, MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "foo_server: epoll_wait() failed: %s\n", strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct item *it = evs[i].data.ptr;
			if (it->kind == K_LISTENER) {
				do_accept(it);
			} else if (it->kind == K_TIMER) {
				uint64_t x;
				if (read(tfd, &x, sizeof(x)) < 0) {
					/* EAGAIN: already read */
				}
				armed = 0;
			} else if (it->kind == K_SIGNAL) {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
					print_counters();
					if (si.ssi_signo != SIGUSR1)
						return 0;
				}
			} else {
				struct fconn *c = (struct fconn *)it;
				uint32_t e = evs[i].events;
				if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					c->readable = true;
				if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
					c->writable = true;
				conn_service(c);
			}
		}
		if (S.delay_ns) {
			uint64_t now = now_ns();
			for (struct fconn *c = S.conns, *next; c; c = next) {
				next = c->next;
				if (c->q_len && c->q[c->q_head].due_ns <= now)
					conn_service(c);
			}
		}
	}
}
