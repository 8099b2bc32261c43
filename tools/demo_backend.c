/* demo_backend.c - a small TCP test server (echo, banner or HTTP) for pandit's quickstart, tests and benchmarks. */

/*
 * One thread, one epoll loop, non-blocking sockets, edge-triggered on
 * connections (level-triggered on listeners so an accept that fails for lack
 * of file descriptors is retried). Every connection owns two fixed buffers,
 * so memory is bounded by --max-conns; when the peer does not read, we stop
 * reading from it (backpressure) instead of growing anything.
 *
 * Modes:
 *   echo    writes back every byte received; after the client's FIN it
 *           finishes echoing, then sends its own FIN (half-close aware).
 *   banner  writes "NAME\n" first, then behaves as echo. Lets a test see
 *           which backend a proxied connection reached.
 *   http    answers every HTTP/1.x request with "200 OK" and the body
 *           "NAME\n" (header X-Backend: NAME); keep-alive and pipelining
 *           supported, request bodies with Content-Length are skipped.
 *
 * Only libc: the tool must build even when the daemon's library does not.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_LISTEN	64
#define MAX_NAME	64
#define OUT_BUF		(32 * 1024)	/* bytes queued for the peer, per connection */
#define IN_BUF		(8 * 1024)	/* http: largest request head accepted */
#define RESP_MAX	512		/* room one HTTP response needs in OUT_BUF */
#define MAX_EVENTS	256
#define ACCEPT_BATCH	64		/* accepts per listener event, for fairness */

enum mode { MODE_ECHO, MODE_BANNER, MODE_HTTP };
enum kind { K_LISTENER, K_CONN, K_SIGNAL };

/* Everything registered with epoll starts with its kind, so the event
 * pointer tells what it is. */
struct item {
	enum kind kind;
	int fd;
};

struct conn {
	struct item it;			/* must stay first */
	struct conn *prev, *next;	/* list of open connections, for shutdown */
	bool rd_eof;			/* peer sent FIN: recv() returned 0 */
	bool wr_shut;			/* we sent FIN */
	bool close_after;		/* http: FIN once queued responses are out */
	size_t out_off, out_len;	/* out[out_off, out_len) waits to be sent */
	size_t in_len;			/* http: unparsed request bytes in in[] */
	uint64_t body_left;		/* http: request body bytes still to skip */
	char out[OUT_BUF];
	char in[IN_BUF];
};

static struct {
	const char *name;
	size_t name_len;
	enum mode mode;
	unsigned max_conns;
	int epfd;
	int spare_fd;			/* closed to accept-and-drop when out of fds */
	struct item listeners[MAX_LISTEN];
	unsigned n_listeners;
	struct conn *conns;
	unsigned n_conns;
	uint64_t accepted, refused, bytes_in, bytes_out, requests;
	bool warned_full;
} g = { .name = "backend", .mode = MODE_ECHO, .max_conns = 16384, .epfd = -1, .spare_fd = -1 };

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "demo_backend %s: ", g.name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static const char *mode_name(enum mode m)
{
	return m == MODE_HTTP ? "http" : m == MODE_BANNER ? "banner" : "echo";
}

/* Parses "a.b.c.d:port", "[v6]:port", "localhost:port" or a bare "port"
 * (which means 127.0.0.1: this tool never listens beyond loopback unless
 * told so). Port 0 picks a free port, printed once listening. */
static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *port_s;
	char *end;
	unsigned long port;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, rb - s - 1);
		host[rb - s - 1] = '\0';
		port_s = rb + 2;
	} else if ((colon = strrchr(s, ':'))) {
		if ((size_t)(colon - s) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, colon - s);
		host[colon - s] = '\0';
		port_s = colon + 1;
	} else {
		strcpy(host, "127.0.0.1");
		port_s = s;
	}
	errno = 0;
	port = strtoul(port_s, &end, 10);
	if (errno || end == port_s || *end || port > 65535)
		return -EINVAL;
	if (!strcmp(host, "localhost") || !host[0])
		strcpy(host, "127.0.0.1");

	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
	} else {
		return -EINVAL;
	}
	return 0;
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const void *)ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(a->sin_port));
	}
}

static int add_listener(const char *spec)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char pretty[INET6_ADDRSTRLEN + 16];
	int fd, one = 1;

	if (g.n_listeners == MAX_LISTEN) {
		logf_("at most %d --listen options", MAX_LISTEN);
		return -E2BIG;
	}
	if (parse_addr(spec, &ss, &len) < 0) {
		logf_("bad --listen address '%s' (want ADDR:PORT, [V6]:PORT or PORT)", spec);
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		logf_("socket() failed: %s", strerror(errno));
		return -errno;
	}
	/* SO_REUSEADDR: tests restart backends on the same port at once.
	 * IPV6_V6ONLY: [::]:p and 0.0.0.0:p can then be separate listeners. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		int err = errno;

		logf_("bind(%s) failed: %s", spec, strerror(err));
		close(fd);
		return -err;
	}
	if (listen(fd, SOMAXCONN) < 0) {
		int err = errno;

		logf_("listen(%s) failed: %s", spec, strerror(err));
		close(fd);
		return -err;
	}
	len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	format_addr(&ss, pretty, sizeof(pretty));

	struct item *it = &g.listeners[g.n_listeners++];
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = it };

	it->kind = K_LISTENER;
	it->fd = fd;
	if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		logf_("epoll_ctl(ADD listener) failed: %s", strerror(errno));
		return -errno;
	}
	/* stdout, flushed: a script or test waits for these lines (and reads
	 * the port chosen for port 0 from them). */
	printf("demo_backend %s: listening on %s (%s)\n", g.name, pretty, mode_name(g.mode));
	fflush(stdout);
	return 0;
}

static void conn_close(struct conn *c)
{
	/* close() also removes the fd from the epoll set */
	close(c->it.fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		g.conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	g.n_conns--;
	free(c);
}

/* Appends bytes to the output buffer; the caller checked the room. */
static void out_put(struct conn *c, const char *p, size_t n)
{
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
}

/* Queues one HTTP response. Body is the backend's name, so a client sees
 * which backend answered. */
static void http_respond(struct conn *c, int status, const char *reason, bool head, bool close)
{
	char hdr[RESP_MAX];
	char body[MAX_NAME + 64];
	int blen, hlen;

	if (status == 200)
		blen = snprintf(body, sizeof(body), "%s\n", g.name);
	else
		blen = snprintf(body, sizeof(body), "%d %s\n", status, reason);
	hlen = snprintf(hdr, sizeof(hdr),
			"HTTP/1.1 %d %s\r\n"
			"Content-Type: text/plain\r\n"
			"Content-Length: %d\r\n"
			"X-Backend: %s\r\n"
			"%s"
			"\r\n",
			status, reason, blen, g.name, close ? "Connection: close\r\n" : "");
	out_put(c, hdr, hlen);
	if (!head)
		out_put(c, body, blen);
	if (close)
		c->close_after = true;
	g.requests++;
}

/* Finds header `name` in the head [p, end) (case-insensitive); stores its
 * value, trimmed, in val. Returns true when found. */
static bool http_header(const char *p, const char *end, const char *name, char *val, size_t vlen)
{
	size_t nlen = strlen(name);

	while (p < end) {
		const char *eol = memchr(p, '\n', end - p);
		const char *line_end = eol ? eol : end;

		if ((size_t)(line_end - p) > nlen && !strncasecmp(p, name, nlen) && p[nlen] == ':') {
			const char *v = p + nlen + 1;
			const char *ve = line_end;

			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			size_t n = (size_t)(ve - v) < vlen - 1 ? (size_t)(ve - v) : vlen - 1;
			memcpy(val, v, n);
			val[n] = '\0';
			return true;
		}
		p = line_end + 1;
	}
	return false;
}

static void in_consume(struct conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
}

/* Answers every complete request in in[] while the output buffer has room
 * for a response (otherwise waits: backpressure on pipelining clients).
 * Returns true when it consumed or queued anything. */
static bool http_process(struct conn *c)
{
	bool progress = false;

	while (!c->close_after) {
		if (c->body_left) {
			size_t k = c->body_left < c->in_len ? c->body_left : c->in_len;

			if (!k)
				break;
			in_consume(c, k);
			c->body_left -= k;
			progress = true;
			continue;
		}
		if (OUT_BUF - c->out_len < RESP_MAX)
			break;

		const char *hend = memmem(c->in, c->in_len, "\r\n\r\n", 4);

		if (!hend) {
			if (c->in_len == IN_BUF) {	/* head larger than we accept */
				http_respond(c, 431, "Request Header Fields Too Large", false, true);
				progress = true;
			}
			break;
		}
		size_t head_len = hend + 4 - c->in;
		const char *eol = memchr(c->in, '\n', head_len);
		const char *sp1 = memchr(c->in, ' ', eol - c->in);
		bool head = sp1 && sp1 - c->in == 4 && !memcmp(c->in, "HEAD", 4);
		char val[64];

		/* the request line must end in " HTTP/1.x" */
		if (!sp1 || eol - c->in < 12 || eol[-1] != '\r' || memcmp(eol - 10, " HTTP/1.", 8)) {
			http_respond(c, 400, "Bad Request", false, true);
			return true;
		}
		bool http10 = eol[-2] == '0';
		bool close = http10;

		if (http_header(eol + 1, hend + 2, "Connection", val, sizeof(val)))
			close = !strcasecmp(val, "close") ? true :
				!strcasecmp(val, "keep-alive") ? false : close;
		if (http_header(eol + 1, hend + 2, "Transfer-Encoding", val, sizeof(val))) {
			/* chunked bodies are not needed by any test: refuse plainly */
			http_respond(c, 501, "Not Implemented", false, true);
			return true;
		}
		if (http_header(eol + 1, hend + 2, "Content-Length", val, sizeof(val))) {
			char *end;

			errno = 0;
			c->body_left = strtoull(val, &end, 10);
			if (errno || end == val || *end || val[0] == '-') {
				http_respond(c, 400, "Bad Request", false, true);
				return true;
			}
		}
		in_consume(c, head_len);
		http_respond(c, 200, "OK", head, close);
		progress = true;
	}
	return progress;
}

/* Sends what is queued. Returns 1 if bytes went out, 0 if nothing could be
 * sent (empty or EAGAIN), -1 if the peer is gone. */
static int conn_flush(struct conn *c)
{
	int progress = 0;

	while (c->out_off < c->out_len) {
		ssize_t n = send(c->it.fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n > 0) {
			c->out_off += n;
			g.bytes_out += n;
			progress = 1;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			break;
		} else {
			return -1;	/* EPIPE, ECONNRESET, ...: nobody to talk to */
		}
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	return progress;
}

/* Reads what fits. Returns 1 on bytes or EOF, 0 when nothing could be read
 * (EAGAIN or no room), -1 on error. */
static int conn_read(struct conn *c)
{
	char scratch[4096];
	char *dst;
	size_t room;
	ssize_t n;

	if (c->rd_eof)
		return 0;
	if (c->wr_shut) {			/* answered and closing: discard */
		dst = scratch;
		room = sizeof(scratch);
	} else if (g.mode == MODE_HTTP) {
		dst = c->in + c->in_len;
		room = IN_BUF - c->in_len;
	} else {
		if (c->out_off) {		/* compact so reads can use the tail */
			memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
			c->out_len -= c->out_off;
			c->out_off = 0;
		}
		dst = c->out + c->out_len;
		room = OUT_BUF - c->out_len;
	}
	if (!room)
		return 0;			/* full: wait until the peer reads */
	do
		n = recv(c->it.fd, dst, room, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	if (n == 0) {
		c->rd_eof = true;
		return 1;
	}
	g.bytes_in += n;
	if (c->wr_shut)
		;
	else if (g.mode == MODE_HTTP)
		c->in_len += n;
	else
		c->out_len += n;
	return 1;
}

/* Moves bytes until the socket would block both ways. Edge-triggered: we
 * stop only on EAGAIN (an edge will come) or on a full buffer whose send
 * hit EAGAIN (EPOLLOUT will come). Returns false when the connection is
 * finished and must be closed. */
static bool conn_pump(struct conn *c)
{
	for (;;) {
		int w = conn_flush(c);
		int r;

		if (w < 0)
			return false;
		/* http: answer complete requests while the answers go out; when
		 * this ends with nothing queued, no complete request is left */
		while (g.mode == MODE_HTTP && !c->wr_shut && http_process(c)) {
			w = 1;
			if (conn_flush(c) < 0)
				return false;
			if (c->out_len)
				break;
		}
		/* everything owed is sent and the exchange is over: send FIN
		 * (close_after is only ever set in http mode) */
		if (!c->wr_shut && c->out_len == 0 && (c->rd_eof || c->close_after)) {
			if (shutdown(c->it.fd, SHUT_WR) < 0 && errno != ENOTCONN)
				return false;
			c->wr_shut = true;
		}
		if (c->wr_shut && c->rd_eof)
			return false;		/* both directions done */
		r = conn_read(c);
		if (r < 0)
			return false;
		if (w == 0 && r == 0)
			return true;
	}
}

static void accept_ready(struct item *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				/* out of fds: accept with the spare one and drop the
				 * client, else the level-triggered listener spins */
				logf_("accept4() failed: %s; dropping a client", strerror(errno));
				close(g.spare_fd);
				fd = accept(l->fd, NULL, NULL);
				if (fd >= 0)
					close(fd);
				g.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				g.refused++;
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				logf_("accept4() failed: %s", strerror(errno));
			return;
		}
		if (g.n_conns >= g.max_conns) {
			if (!g.warned_full)
				logf_("%u connections open (--max-conns): refusing more", g.n_conns);
			g.warned_full = true;
			g.refused++;
			close(fd);
			continue;
		}
		struct conn *c = malloc(sizeof(*c));

		if (!c) {
			logf_("malloc() failed: out of memory; dropping a client");
			close(fd);
			continue;
		}
		memset(c, 0, offsetof(struct conn, out));
		c->it.kind = K_CONN;
		c->it.fd = fd;

		int one = 1;

		/* small replies must not wait for Nagle */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (g.mode == MODE_BANNER) {
			out_put(c, g.name, g.name_len);
			out_put(c, "\n", 1);
		}

		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };

		if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			logf_("epoll_ctl(ADD conn) failed: %s", strerror(errno));
			close(fd);
			free(c);
			continue;
		}
		c->next = g.conns;
		if (g.conns)
			g.conns->prev = c;
		g.conns = c;
		g.n_conns++;
		g.accepted++;
		if (!conn_pump(c))
			conn_close(c);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: demo_backend --listen ADDR:PORT [--listen ...] [--name NAME] [--mode MODE]\n"
		"\n"
		"A small TCP server for pandit's quickstart, tests and benchmarks.\n"
		"\n"
		"  -l, --listen ADDR:PORT  listen here (repeatable, up to %d); ADDR may be\n"
		"                          IPv4, [IPv6] or localhost; a bare PORT means\n"
		"                          127.0.0.1; port 0 picks a free port\n"
		"  -n, --name NAME         name shown by banner and http modes (default backend)\n"
		"  -m, --mode MODE         echo (default): echo bytes back, half-close aware\n"
		"                          banner: write \"NAME\\n\", then echo\n"
		"                          http: answer each HTTP/1.x request with 200 and\n"
		"                          body \"NAME\\n\" (keep-alive)\n"
		"  -c, --max-conns N       connections open at once (default %u); more are\n"
		"                          accepted and closed\n"
		"  -h, --help              this text\n"
		"\n"
		"Prints one \"listening on\" line per listener to stdout once ready.\n"
		"SIGTERM or SIGINT (unless ignored at start): closes everything, prints\n"
		"totals to stderr, exits 0.\n",
		MAX_LISTEN, g.max_conns);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "name", required_argument, NULL, 'n' },
		{ "mode", required_argument, NULL, 'm' },
		{ "max-conns", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_specs[MAX_LISTEN];
	unsigned n_specs = 0;
	int opt, sfd;

	while ((opt = getopt_long(argc, argv, "l:n:m:c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			if (n_specs == MAX_LISTEN) {
				logf_("at most %d --listen options", MAX_LISTEN);
				return 2;
			}
			listen_specs[n_specs++] = optarg;
			break;
		case 'n':
			g.name = optarg;
			break;
		case 'm':
			if (!strcmp(optarg, "echo"))
				g.mode = MODE_ECHO;
			else if (!strcmp(optarg, "banner"))
				g.mode = MODE_BANNER;
			else if (!strcmp(optarg, "http"))
				g.mode = MODE_HTTP;
			else {
				logf_("unknown --mode '%s' (echo, banner or http)", optarg);
				return 2;
			}
			break;
		case 'c': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (end == optarg || *end || v == 0 || v > 1000000) {
				logf_("bad --max-conns '%s'", optarg);
				return 2;
			}
			g.max_conns = v;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || n_specs == 0) {
		usage(stderr);
		return 2;
	}
	/* the name goes into HTTP headers: keep it short and printable */
	g.name_len = strlen(g.name);
	if (g.name_len == 0 || g.name_len > MAX_NAME) {
		logf_("--name must be 1 to %d characters", MAX_NAME);
		return 2;
	}
	for (size_t i = 0; i < g.name_len; i++) {
		if (g.name[i] <= ' ' || g.name[i] == 0x7f) {
			logf_("--name must be printable, without spaces");
			return 2;
		}
	}

	/* many connections in tests and benchmarks: take every fd allowed */
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);	/* send() uses MSG_NOSIGNAL; belt and braces */

	g.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (g.epfd < 0) {
		logf_("epoll_create1() failed: %s", strerror(errno));
		return 1;
	}
	g.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	/* SIGTERM/SIGINT arrive through the loop, so exit is orderly. A SIGINT
	 * ignored on entry (a script's background job) stays ignored: a blocked
	 * signal would be queued for the signalfd even though ignored. */
	sigset_t mask;
	struct item sig_item = { .kind = K_SIGNAL };
	struct sigaction old_int;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	if (sigaction(SIGINT, NULL, &old_int) < 0 || old_int.sa_handler != SIG_IGN)
		sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		logf_("signalfd() failed: %s", strerror(errno));
		return 1;
	}
	sig_item.fd = sfd;
	struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &sig_item };

	if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, sfd, &sev) < 0) {
		logf_("epoll_ctl(ADD signalfd) failed: %s", strerror(errno));
		return 1;
	}
	for (unsigned i = 0; i < n_specs; i++)
		if (add_listener(listen_specs[i]) < 0)
			return 1;

	struct epoll_event evs[MAX_EVENTS];
	bool running = true;

	while (running) {
		int n = epoll_wait(g.epfd, evs, MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			logf_("epoll_wait() failed: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct item *it = evs[i].data.ptr;

			if (it->kind == K_LISTENER) {
				accept_ready(it);
			} else if (it->kind == K_SIGNAL) {
				running = false;
			} else {
				struct conn *c = (struct conn *)it;

				if (!conn_pump(c))
					conn_close(c);
			}
		}
	}

	while (g.conns)
		conn_close(g.conns);
	for (unsigned i = 0; i < g.n_listeners; i++)
		close(g.listeners[i].fd);
	close(sfd);
	close(g.epfd);
	logf_("exiting: %" PRIu64 " connections accepted, %" PRIu64 " refused, %" PRIu64
	      " requests, %" PRIu64 " bytes in, %" PRIu64 " bytes out",
	      g.accepted, g.refused, g.requests, g.bytes_in, g.bytes_out);
	return 0;
}
