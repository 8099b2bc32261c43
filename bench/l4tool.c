/* l4tool.c - benchmark helper: an epoll echo backend, a port waiter, and the reload probe (time to answer + hammer failures). */
/*
 * Built by bench/run.sh (not by the Makefile: it is a benchmark tool, not part
 * of pandit). Subcommands:
 *
 *   l4tool echo PORT...
 *       echo server on 127.0.0.1:PORT for every PORT; runs until killed.
 *
 *   l4tool wait PORT TIMEOUT_MS
 *       retries one echo round trip to 127.0.0.1:PORT until it works; prints
 *       the milliseconds it took; exit 1 on timeout.
 *
 *   l4tool reload --port P --hammer H --rename SRC DST [--signal PID]
 *                 [--timeout-ms T] [--warmup-ms W] [--after-ms A] [--interval-us I]
 *       starts a hammer thread doing one echo round trip on the untouched port
 *       H every I microseconds (paced, so the probe keeps the CPU), waits W ms,
 *       then rename(SRC, DST) (and kill(PID, SIGUSR2) if --signal: HAProxy's
 *       master-worker reload), then polls round trips on P in a tight loop
 *       until one works (at most T ms), keeps hammering A ms more, and prints
 *       one JSON object: time from the rename to the first answer on P, and the
 *       hammer's successes and failures by kind.
 *
 * A "round trip" is connect, send one byte, receive it back, close: a port
 * answers only when the whole path (steering, proxy, backend) works.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int parse_port(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 1 || v > 65535) {
		fprintf(stderr, "l4tool: bad port '%s'\n", s);
		exit(2);
	}
	return (int)v;
}

static long parse_num(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 0) {
		fprintf(stderr, "l4tool: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

/* ---- echo server ------------------------------------------------------ */

static int cmd_echo(int argc, char **argv)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	char buf[65536];

	if (ep < 0) {
		fprintf(stderr, "l4tool: epoll_create1() failed: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < argc; i++) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(parse_port(argv[i])) };
		int one = 1;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
			fprintf(stderr, "l4tool: bind/listen(%s) failed: %s\n", argv[i], strerror(errno));
			return 1;
		}
		/* listeners carry their index with the high bit set in the event data */
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (1ull << 63) | (uint64_t)fd };
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	}
	for (;;) {
		struct epoll_event evs[256];
		int n = epoll_wait(ep, evs, 256, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "l4tool: epoll_wait() failed: %s\n", strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			int fd = (int)(evs[i].data.u64 & 0xffffffffu);

			if (evs[i].data.u64 >> 63) {
				for (;;) {
					int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

					if (c < 0)
						break;
					struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = (uint64_t)c };
					int one = 1;

					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			/* level-triggered: read what is there, write it back (the
			 * probes send one byte, so a short write never happens in
			 * practice; if it does, the connection is dropped) */
			ssize_t r = read(fd, buf, sizeof(buf));

			if (r > 0 && write(fd, buf, (size_t)r) == r)
				continue;
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			close(fd);
		}
	}
}

/* ---- one round trip --------------------------------------------------- */

enum rt_result { RT_OK = 0, RT_REFUSED, RT_CONN_ERR, RT_CONN_TIMEOUT, RT_RESET, RT_EOF, RT_TIMEOUT, RT_OTHER, RT_N };
static const char *rt_names[RT_N] = { "ok", "refused", "connect_error", "connect_timeout", "reset", "eof", "timeout", "other" };

/* One echo round trip to 127.0.0.1:port, each step bounded by timeout_ms. */
static enum rt_result round_trip(int port, int timeout_ms)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	enum rt_result res = RT_OK;
	char c = 'x';
	ssize_t r;
	int fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return RT_OTHER;
	/* SO_SNDTIMEO bounds a blocking connect() too */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		res = errno == ECONNREFUSED ? RT_REFUSED :
		      (errno == EINPROGRESS || errno == EAGAIN || errno == ETIMEDOUT) ? RT_CONN_TIMEOUT : RT_CONN_ERR;
		goto out;
	}
	if (send(fd, &c, 1, MSG_NOSIGNAL) != 1) {
		res = errno == ECONNRESET || errno == EPIPE ? RT_RESET : RT_OTHER;
		goto out;
	}
	r = recv(fd, &c, 1, 0);
	if (r == 1)
		res = RT_OK;
	else if (r == 0)
		res = RT_EOF;
	else if (errno == EAGAIN || errno == EWOULDBLOCK)
		res = RT_TIMEOUT;
	else if (errno == ECONNRESET)
		res = RT_RESET;
	else
		res = RT_OTHER;
out:
	close(fd);
	return res;
}

static int cmd_wait(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: l4tool wait PORT TIMEOUT_MS\n");
		return 2;
	}
	int port = parse_port(argv[0]);
	uint64_t limit = (uint64_t)parse_num(argv[1]) * 1000000ull;
	uint64_t t0 = now_ns();

	while (now_ns() - t0 < limit) {
		if (round_trip(port, 1000) == RT_OK) {
			printf("%.3f\n", (double)(now_ns() - t0) / 1e6);
			return 0;
		}
		usleep(1000);
	}
	fprintf(stderr, "l4tool: port %d did not answer within %s ms\n", port, argv[1]);
	return 1;
}

/* ---- reload probe ----------------------------------------------------- */

struct hammer {
	int port;
	long interval_us;
	atomic_bool stop;
	uint64_t counts[RT_N];
	uint64_t first_fail_ns, last_fail_ns;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	uint64_t next = now_ns();

	while (!atomic_load(&h->stop)) {
		enum rt_result r = round_trip(h->port, 2000);

		h->counts[r]++;
		if (r != RT_OK) {
			uint64_t t = now_ns();

			if (!h->first_fail_ns)
				h->first_fail_ns = t;
			h->last_fail_ns = t;
		}
		/* paced on an absolute schedule; if behind, do not burst */
		next += (uint64_t)h->interval_us * 1000ull;
		uint64_t t = now_ns();

		if (next > t) {
			struct timespec ts = { .tv_sec = (time_t)((next - t) / 1000000000ull),
					       .tv_nsec = (long)((next - t) % 1000000000ull) };
			nanosleep(&ts, NULL);
		} else {
			next = t;
		}
	}
	return NULL;
}

static int cmd_reload(int argc, char **argv)
{
	const char *src = NULL, *dst = NULL;
	int port = 0, hport = 0;
	pid_t sig_pid = 0;
	long timeout_ms = 10000, warmup_ms = 500, after_ms = 1000, interval_us = 500;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--rename") && i + 2 < argc) {
			src = argv[++i];
			dst = argv[++i];
		} else if (i + 1 >= argc) {
			fprintf(stderr, "l4tool: bad argument '%s'\n", a);
			return 2;
		} else if (!strcmp(a, "--port")) {
			port = parse_port(argv[++i]);
		} else if (!strcmp(a, "--hammer")) {
			hport = parse_port(argv[++i]);
		} else if (!strcmp(a, "--signal")) {
			sig_pid = (pid_t)parse_num(argv[++i]);
		} else if (!strcmp(a, "--timeout-ms")) {
			timeout_ms = parse_num(argv[++i]);
		} else if (!strcmp(a, "--warmup-ms")) {
			warmup_ms = parse_num(argv[++i]);
		} else if (!strcmp(a, "--after-ms")) {
			after_ms = parse_num(argv[++i]);
		} else if (!strcmp(a, "--interval-us")) {
			interval_us = parse_num(argv[++i]);
		} else {
			fprintf(stderr, "l4tool: unknown argument '%s'\n", a);
			return 2;
		}
	}
	if (!src || !port || !hport) {
		fprintf(stderr, "usage: l4tool reload --port P --hammer H --rename SRC DST [--signal PID] "
			"[--timeout-ms T] [--warmup-ms W] [--after-ms A] [--interval-us I]\n");
		return 2;
	}

	/* the new port must not answer yet, or the measurement means nothing */
	if (round_trip(port, 1000) == RT_OK) {
		fprintf(stderr, "l4tool: port %d answers before the reload\n", port);
		return 1;
	}

	struct hammer h = { .port = hport, .interval_us = interval_us };
	pthread_t th;

	if (pthread_create(&th, NULL, hammer_main, &h) != 0) {
		fprintf(stderr, "l4tool: pthread_create() failed\n");
		return 1;
	}
	usleep((useconds_t)warmup_ms * 1000);

	uint64_t t0 = now_ns(), t_answer = 0;
	uint64_t attempts = 0, probe_counts[RT_N] = { 0 };

	if (rename(src, dst) < 0) {
		fprintf(stderr, "l4tool: rename(%s, %s) failed: %s\n", src, dst, strerror(errno));
		atomic_store(&h.stop, true);
		pthread_join(th, NULL);
		return 1;
	}
	if (sig_pid > 0 && kill(sig_pid, SIGUSR2) < 0) {
		fprintf(stderr, "l4tool: kill(%d, SIGUSR2) failed: %s\n", (int)sig_pid, strerror(errno));
		atomic_store(&h.stop, true);
		pthread_join(th, NULL);
		return 1;
	}
	while (now_ns() - t0 < (uint64_t)timeout_ms * 1000000ull) {
		enum rt_result r = round_trip(port, 1000);

		attempts++;
		probe_counts[r]++;
		if (r == RT_OK) {
			t_answer = now_ns();
			break;
		}
	}
	usleep((useconds_t)after_ms * 1000);
	atomic_store(&h.stop, true);
	pthread_join(th, NULL);

	uint64_t ok = h.counts[RT_OK], fail = 0;

	for (int i = 1; i < RT_N; i++)
		fail += h.counts[i];
	printf("{\"answered\": %s, \"reload_ms\": %.3f, \"probe_attempts\": %llu, \"probe_refused\": %llu, "
	       "\"hammer_ok\": %llu, \"hammer_fail\": %llu, \"hammer_fail_kinds\": {",
	       t_answer ? "true" : "false", t_answer ? (double)(t_answer - t0) / 1e6 : -1.0,
	       (unsigned long long)attempts, (unsigned long long)probe_counts[RT_REFUSED],
	       (unsigned long long)ok, (unsigned long long)fail);
	bool first = true;

	for (int i = 1; i < RT_N; i++) {
		if (!h.counts[i])
			continue;
		printf("%s\"%s\": %llu", first ? "" : ", ", rt_names[i], (unsigned long long)h.counts[i]);
		first = false;
	}
	printf("}, \"hammer_fail_window_ms\": %.3f, \"hammer_seconds\": %.3f}\n",
	       fail ? (double)(h.last_fail_ns - h.first_fail_ns) / 1e6 : 0.0,
	       (double)(now_ns() - t0) / 1e9 + (double)warmup_ms / 1e3);
	return t_answer ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: l4tool echo PORT... | wait PORT TIMEOUT_MS | reload ...\n");
		return 2;
	}
	if (!strcmp(argv[1], "echo"))
		return cmd_echo(argc - 2, argv + 2);
	if (!strcmp(argv[1], "wait"))
		return cmd_wait(argc - 2, argv + 2);
	if (!strcmp(argv[1], "reload"))
		return cmd_reload(argc - 2, argv + 2);
	fprintf(stderr, "l4tool: unknown command '%s'\n", argv[1]);
	return 2;
}
