/* shortcut_probe.c - stands in for pandit around the local short-circuit: a relay that pairs its connections (kpath/shortcut.h), a sequence-checked stress over many connections, and a 1-byte ping-pong latency measurement. */

/*
 * shortcut_probe stress   --cgroup DIR [--conns N] [--bytes B] [--seed S] [--reset] [--ungated]
 * shortcut_probe pingpong --cgroup DIR --mode direct|relay|paired [--iters N] [--plain]
 * shortcut_probe bulk     --cgroup DIR --mode direct|relay|paired [--bytes B] [--plain]
 * (every command: --backlog BYTES sets the program's backlog_max)
 *
 * Run as root in a network namespace of its own: it moves itself into the
 * cgroup v2 directory DIR (so every socket it makes is registered by the
 * sock_ops program), loads and attaches the programs, then builds, on
 * loopback, client C -> relay (P_c, P_b) -> backend B for each connection.
 *
 * stress: C and B each send a stream whose byte at offset i is a hash of
 * (connection, direction, i), in random-size writes with random pauses, and
 * check every byte they read against it (a reordered, lost or duplicated
 * byte is a mismatch at its offset); each half-closes after its last byte
 * and reads to EOF. The relay copies bytes in userspace and pairs the
 * connection at a random point (before the first byte, after some bytes
 * relayed, or never), while both directions are flowing. With --reset, a
 * third of the backends and a third of the clients (a client vanishing)
 * close with RST midway; their peers must then read a correct prefix
 * followed by an error or EOF. Prints one JSON line; exits
 * 1 on any mismatch. --ungated loads the program without its ordering gate
 * (negative control: the same run must then find reordered bytes).
 *
 * pingpong: one connection, 1-byte messages echoed by B, round-trip time
 * per message; prints p50/p99/p999 in ns as JSON. --plain (direct and
 * relay only) stays outside the cgroup and loads nothing, so no sk_msg
 * program runs on the sends: the baseline without the short-circuit.
 *
 * bulk: one connection, B bytes one way in 64 KiB writes, the reader
 * discarding them; prints the rate.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kpath/shortcut.h"

static void die(const char *what)
{
	fprintf(stderr, "shortcut_probe: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* Byte i of the stream of connection conn, direction dir. */
static inline uint8_t pat(uint32_t conn, uint32_t dir, uint64_t i)
{
	uint64_t x = i * 0x9E3779B97F4A7C15ull + ((uint64_t)conn << 1 | dir) * 0xBF58476D1CE4E5B9ull;
	x ^= x >> 29;
	x *= 0x94D049BB133111EBull;
	x ^= x >> 32;
	return (uint8_t)x;
}

static uint32_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s >> 11);
}

static int listener(struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)a, sizeof(*a)) < 0 || listen(l, 1024) < 0 ||
	    getsockname(l, (struct sockaddr *)a, &len) < 0)
		die("listener");
	return l;
}

static void connect_to(int l, const struct sockaddr_in *a, int *out, int *in)
{
	*out = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*out < 0 || connect(*out, (const struct sockaddr *)a, sizeof(*a)) < 0)
		die("connect");
	*in = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (*in < 0)
		die("accept");
	int one = 1;
	setsockopt(*out, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*in, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void rst_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* --- the relay (pandit's part) ------------------------------------------------ */

struct relay {
	int pc, pb;		/* the relay's client-side and backend-side sockets */
	int64_t pair_after;	/* pair once this many bytes were relayed (-1: never) */
	bool paired;
	int pair_err;
	struct shortcut_pair sp;
	struct pandit_shortcut_pair final[2];
	uint64_t relayed[2];	/* bytes the relay copied c->b, b->c */
};

static void relay_try_pair(struct relay *r)
{
	if (r->paired || r->pair_after < 0 || (int64_t)(r->relayed[0] + r->relayed[1]) < r->pair_after)
		return;
	enum shortcut_refusal why;
	r->pair_err = shortcut_pair(&r->sp, r->pc, r->pb, &why);
	r->paired = r->pair_err == 0;
	r->pair_after = -1;
	if (r->pair_err)
		fprintf(stderr, "pair refused: %s (%s)\n", shortcut_refusal_name(why),
			strerror(-r->pair_err));
}

/* Copies bytes both ways like the daemon's relay: a FIN is passed on once
 * everything before it was written; an error closes both with RST. */
static void *relay_main(void *arg)
{
	struct relay *r = arg;
	int fd[2] = { r->pc, r->pb };
	char buf[2][65536];
	size_t len[2] = { 0, 0 }, off[2] = { 0, 0 };
	bool eof[2] = { false, false }, shut[2] = { false, false }, dead = false;
	set_nonblock(r->pc);
	set_nonblock(r->pb);
	relay_try_pair(r);
	while (!dead && !(shut[0] && shut[1])) {
		struct pollfd p[2];
		for (int i = 0; i < 2; i++) {
			p[i].fd = fd[i];
			p[i].events = 0;
			if (!eof[i] && len[i] == 0)
				p[i].events |= POLLIN;
			if (len[!i] > off[!i])
				p[i].events |= POLLOUT;
		}
		if (poll(p, 2, 1000) < 0 && errno != EINTR)
			die("poll");
		for (int i = 0; i < 2 && !dead; i++) {	/* i: the side read from */
			if (!eof[i] && len[i] == 0) {
				ssize_t n = recv(fd[i], buf[i], sizeof(buf[i]), 0);
				if (n > 0) {
					len[i] = (size_t)n;
					off[i] = 0;
				} else if (n == 0) {
					eof[i] = true;
				} else if (errno != EAGAIN && errno != EINTR) {
					dead = true;
				}
			}
			while (!dead && off[i] < len[i]) {
				ssize_t n = send(fd[!i], buf[i] + off[i], len[i] - off[i], MSG_NOSIGNAL);
				if (n > 0) {
					off[i] += (size_t)n;
					r->relayed[i] += (uint64_t)n;
				} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
					dead = true;
				} else {
					break;
				}
			}
			if (off[i] == len[i])
				len[i] = off[i] = 0;
			if (eof[i] && len[i] == 0 && !shut[i]) {
				shutdown(fd[!i], SHUT_WR);
				shut[i] = true;
			}
		}
		relay_try_pair(r);
	}
	if (r->paired)
		shortcut_unpair(&r->sp, r->final);
	if (dead) {
		rst_close(r->pc);
		rst_close(r->pb);
	} else {
		close(r->pc);
		close(r->pb);
	}
	return NULL;
}

/* --- the endpoints (client C and backend B) ---------------------------------- */

struct endpoint {
	int fd;
	uint32_t conn, dir;	/* dir: the stream this endpoint sends */
	uint64_t to_send, sent, got;
	uint64_t expect;	/* bytes it should read before EOF */
	int64_t reset_after;	/* close with RST after reading this many (-1: never) */
	uint64_t seed;
	bool mismatch, eof, reset_seen, did_reset;
	uint64_t mismatch_at;
	int err;
};

static void *endpoint_main(void *arg)
{
	struct endpoint *e = arg;
	static const uint32_t sizes[] = { 1, 7, 100, 1500, 16384, 65536 };
	uint8_t out[65536], in[65536];
	set_nonblock(e->fd);
	bool shut = false;
	while ((!e->eof || e->sent < e->to_send || !shut) && !e->mismatch) {
		if (e->sent < e->to_send) {
			uint32_t n = 1 + rnd(&e->seed) % sizes[rnd(&e->seed) % 6];
			if (n > e->to_send - e->sent)
				n = (uint32_t)(e->to_send - e->sent);
			for (uint32_t k = 0; k < n; k++)
				out[k] = pat(e->conn, e->dir, e->sent + k);
			ssize_t w = send(e->fd, out, n, MSG_NOSIGNAL);
			if (w > 0)
				e->sent += (uint64_t)w;
			else if (w < 0 && errno != EAGAIN) {
				e->err = errno;
				e->sent = e->to_send;	/* stop sending, keep reading */
			}
		} else if (!shut) {
			shutdown(e->fd, SHUT_WR);
			shut = true;
		}
		if (rnd(&e->seed) % 16 == 0)
			usleep(rnd(&e->seed) % 300);	/* let the pipeline drain now and then */
		struct pollfd p = { .fd = e->fd, .events = e->eof ? 0 : POLLIN };
		if (e->sent < e->to_send)
			p.events |= POLLOUT;
		if (p.events)
			poll(&p, 1, 1000);
		while (!e->eof) {
			ssize_t n = recv(e->fd, in, sizeof(in), 0);
			if (n == 0) {
				e->eof = true;
				break;
			}
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				e->reset_seen = true;
				e->err = errno;
				e->eof = true;
				break;
			}
			for (ssize_t k = 0; k < n; k++)
				if (in[k] != pat(e->conn, !e->dir, e->got + (uint64_t)k)) {
					e->mismatch = true;
					e->mismatch_at = e->got + (uint64_t)k;
					break;
				}
			e->got += (uint64_t)n;
			if (e->mismatch)
				break;
			if (e->reset_after >= 0 && e->got >= (uint64_t)e->reset_after) {
				rst_close(e->fd);
				e->fd = -1;
				e->did_reset = true;
				return NULL;
			}
		}
	}
	close(e->fd);
	e->fd = -1;
	return NULL;
}

static void join_cgroup(const char *dir)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	FILE *f = fopen(path, "w");
	if (!f || fprintf(f, "%d\n", getpid()) < 0 || fclose(f) != 0)
		die("joining the cgroup");
}

static int stress(const char *cg, int conns, uint64_t bytes, uint64_t seed, bool reset)
{
	struct sockaddr_in ra, ba;
	int rl = listener(&ra), bl = listener(&ba);
	struct relay *r = calloc((size_t)conns, sizeof(*r));
	struct endpoint *c = calloc((size_t)conns, sizeof(*c)), *b = calloc((size_t)conns, sizeof(*b));
	pthread_t *t = calloc((size_t)conns * 3, sizeof(*t));
	if (!r || !c || !b || !t)
		die("calloc");
	(void)cg;
	for (int i = 0; i < conns; i++) {
		uint64_t s = seed * 1000003u + (uint64_t)i + 1;
		rnd(&s);
		connect_to(rl, &ra, &c[i].fd, &r[i].pc);
		connect_to(bl, &ba, &r[i].pb, &b[i].fd);
		uint32_t mode = rnd(&s) % 5;
		/* 0: never paired (control), 1: before any byte, 2-4: after some bytes */
		r[i].pair_after = mode == 0 ? -1 : mode == 1 ? 0 : (int64_t)(rnd(&s) % (bytes + 1));
		uint64_t up = bytes / 2 + rnd(&s) % (bytes + 1), down = bytes / 2 + rnd(&s) % (bytes + 1);
		c[i] = (struct endpoint){ .fd = c[i].fd, .conn = (uint32_t)i, .dir = 0, .to_send = up,
					  .expect = down, .reset_after = -1, .seed = s ^ 0x1111 };
		b[i] = (struct endpoint){ .fd = b[i].fd, .conn = (uint32_t)i, .dir = 1, .to_send = down,
					  .expect = up, .reset_after = -1, .seed = s ^ 0x2222 };
		if (reset && i % 3 == 2)
			b[i].reset_after = (int64_t)(rnd(&s) % (up + 1));
		if (reset && i % 3 == 1)	/* the client vanishing */
			c[i].reset_after = (int64_t)(rnd(&s) % (down + 1));
	}
	for (int i = 0; i < conns; i++) {
		pthread_create(&t[3 * i], NULL, relay_main, &r[i]);
		pthread_create(&t[3 * i + 1], NULL, endpoint_main, &c[i]);
		pthread_create(&t[3 * i + 2], NULL, endpoint_main, &b[i]);
	}
	for (int i = 0; i < 3 * conns; i++)
		pthread_join(t[i], NULL);

	int bad = 0, paired = 0, redirected_conns = 0, resets = 0;
	uint64_t redirected = 0, passed = 0, total = 0, relayed = 0;
	for (int i = 0; i < conns; i++) {
		bool was_reset = b[i].did_reset || c[i].did_reset;
		resets += was_reset;
		const char *why = NULL;
		if (c[i].mismatch || b[i].mismatch)
			why = "byte mismatch (reordered, lost or duplicated)";
		else if (!was_reset && (c[i].got != c[i].expect || b[i].got != b[i].expect))
			why = "wrong length at EOF";
		else if (!was_reset && (c[i].err || b[i].err))
			why = "socket error";
		else if (was_reset && (c[i].got > c[i].expect || b[i].got > b[i].expect))
			why = "read too much";
		if (why) {
			bad++;
			fprintf(stderr,
				"conn %d: %s: client got %" PRIu64 "/%" PRIu64 " (mismatch %d at %" PRIu64
				", err %s) backend got %" PRIu64 "/%" PRIu64 " (mismatch %d at %" PRIu64
				", err %s) paired %d reset %d\n",
				i, why, c[i].got, c[i].expect, c[i].mismatch, c[i].mismatch_at,
				strerror(c[i].err), b[i].got, b[i].expect, b[i].mismatch, b[i].mismatch_at,
				strerror(b[i].err), r[i].paired, was_reset);
		}
		paired += r[i].paired;
		uint64_t rd = r[i].final[0].redirected + r[i].final[1].redirected;
		redirected_conns += rd > 0;
		redirected += rd;
		passed += r[i].final[0].passed + r[i].final[1].passed;
		total += c[i].got + b[i].got;
		relayed += r[i].relayed[0] + r[i].relayed[1];
	}
	uint64_t o[PANDIT_SHORTCUT_STAT_MAX];
	shortcut_read_outcomes(o);
	int socks, pairs;
	shortcut_fds(&socks, &pairs);
	struct pandit_shortcut_key k, nk;
	int left = 0;
	for (int err = bpf_map_get_next_key(pairs, NULL, &k); !err; k = nk) {
		left++;
		err = bpf_map_get_next_key(pairs, &k, &nk);
	}
	printf("{\"conns\":%d,\"bad\":%d,\"paired\":%d,\"redirected_conns\":%d,\"resets\":%d,"
	       "\"bytes_read\":%" PRIu64 ",\"bytes_relayed\":%" PRIu64 ",\"bytes_redirected\":%" PRIu64
	       ",\"bytes_passed_pending\":%" PRIu64 ",\"pairs_left\":%d,\"outcomes\":{",
	       conns, bad, paired, redirected_conns, resets, total, relayed, redirected, passed, left);
	for (int i = 0; i < PANDIT_SHORTCUT_STAT_MAX; i++)
		printf("%s\"%s\":%" PRIu64, i ? "," : "", shortcut_outcome_name(i), o[i]);
	printf("}}\n");
	close(rl);
	close(bl);
	return bad ? 1 : 0;
}

/* --- ping-pong ------------------------------------------------------------------ */

struct echo {
	int fd;
	long iters;
};

static void *echo_main(void *arg)
{
	struct echo *e = arg;
	char ch;
	for (long i = 0; i < e->iters; i++) {
		if (recv(e->fd, &ch, 1, MSG_WAITALL) != 1 || send(e->fd, &ch, 1, MSG_NOSIGNAL) != 1)
			break;
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int pingpong(const char *mode, long iters)
{
	struct sockaddr_in ra, ba;
	int rl = listener(&ra), bl = listener(&ba);
	int client, server;
	struct relay r = { .pair_after = -1 };
	pthread_t rt, et;
	bool relay = strcmp(mode, "direct") != 0;
	if (relay) {
		connect_to(rl, &ra, &client, &r.pc);
		connect_to(bl, &ba, &r.pb, &server);
		r.pair_after = strcmp(mode, "paired") == 0 ? 0 : -1;
		relay_try_pair(&r);	/* before the first byte */
		pthread_create(&rt, NULL, relay_main, &r);
	} else {
		connect_to(bl, &ba, &client, &server);
	}
	long warm = iters / 10;
	struct echo e = { .fd = server, .iters = iters + warm };
	pthread_create(&et, NULL, echo_main, &e);
	uint64_t *ns = calloc((size_t)iters, sizeof(*ns));
	char ch = 'x';
	for (long i = 0; i < iters + warm; i++) {
		struct timespec a, z;
		clock_gettime(CLOCK_MONOTONIC, &a);
		if (send(client, &ch, 1, MSG_NOSIGNAL) != 1 || recv(client, &ch, 1, MSG_WAITALL) != 1)
			die("ping-pong");
		clock_gettime(CLOCK_MONOTONIC, &z);
		if (i >= warm)
			ns[i - warm] = (uint64_t)(z.tv_sec - a.tv_sec) * 1000000000u +
				       (uint64_t)(z.tv_nsec - a.tv_nsec);
	}
	pthread_join(et, NULL);
	shutdown(client, SHUT_WR);
	char tmp[16];
	while (recv(server, tmp, sizeof(tmp), 0) > 0)
		;
	shutdown(server, SHUT_WR);
	while (recv(client, tmp, sizeof(tmp), 0) > 0)
		;
	if (relay)
		pthread_join(rt, NULL);
	qsort(ns, (size_t)iters, sizeof(*ns), cmp_u64);
	printf("{\"mode\":\"%s\",\"iters\":%ld,\"paired\":%d,\"redirected\":%" PRIu64
	       ",\"p50_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64 ",\"p999_ns\":%" PRIu64 "}\n",
	       mode, iters, r.paired, (uint64_t)(r.final[0].redirected + r.final[1].redirected),
	       ns[iters / 2], ns[iters * 99 / 100], ns[iters * 999 / 1000]);
	free(ns);
	close(client);
	close(server);
	return 0;
}

/* --- bulk ------------------------------------------------------------------------ */

struct sink {
	int fd;
	uint64_t got;
};

static void *sink_main(void *arg)
{
	struct sink *k = arg;
	static char buf[1 << 18];
	ssize_t n;
	while ((n = recv(k->fd, buf, sizeof(buf), 0)) > 0)
		k->got += (uint64_t)n;
	return NULL;
}

/* One direction, 64 KiB writes, the reader discarding; prints Gbit/s. */
static int bulk(const char *mode, uint64_t bytes)
{
	struct sockaddr_in ra, ba;
	int rl = listener(&ra), bl = listener(&ba);
	int client, server;
	struct relay r = { .pair_after = -1 };
	pthread_t rt, st;
	bool relay = strcmp(mode, "direct") != 0;
	if (relay) {
		connect_to(rl, &ra, &client, &r.pc);
		connect_to(bl, &ba, &r.pb, &server);
		r.pair_after = strcmp(mode, "paired") == 0 ? 0 : -1;
		relay_try_pair(&r);	/* before the first byte */
		pthread_create(&rt, NULL, relay_main, &r);
	} else {
		connect_to(bl, &ba, &client, &server);
	}
	struct sink k = { .fd = server };
	pthread_create(&st, NULL, sink_main, &k);
	static char buf[65536];
	memset(buf, 'b', sizeof(buf));
	struct timespec a, z;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (uint64_t sent = 0; sent < bytes;) {
		size_t want = bytes - sent < sizeof(buf) ? (size_t)(bytes - sent) : sizeof(buf);
		ssize_t n = send(client, buf, want, MSG_NOSIGNAL);
		if (n <= 0)
			die("bulk send");
		sent += (uint64_t)n;
	}
	shutdown(client, SHUT_WR);
	pthread_join(st, NULL);
	clock_gettime(CLOCK_MONOTONIC, &z);
	shutdown(server, SHUT_WR);
	char tmp[16];
	while (recv(client, tmp, sizeof(tmp), 0) > 0)
		;
	if (relay)
		pthread_join(rt, NULL);
	double secs = (double)(z.tv_sec - a.tv_sec) + (double)(z.tv_nsec - a.tv_nsec) / 1e9;
	printf("{\"mode\":\"%s\",\"bytes\":%" PRIu64 ",\"paired\":%d,\"redirected\":%" PRIu64
	       ",\"passed\":%" PRIu64 ",\"seconds\":%.3f,\"gbit_s\":%.2f}\n",
	       mode, k.got, r.paired, (uint64_t)r.final[0].redirected, (uint64_t)r.final[0].passed,
	       secs, (double)k.got * 8 / secs / 1e9);
	close(client);
	close(server);
	return k.got == bytes ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *cg = NULL, *mode = "paired";
	int conns = 50;
	uint64_t bytes = 200000, seed = 1;
	long iters = 20000;
	uint32_t backlog = 0;
	bool reset = false, ungated = false, plain = false;
	if (argc < 2) {
		fprintf(stderr, "usage: shortcut_probe stress|pingpong|bulk --cgroup DIR [options]\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--reset")) {
			reset = true;
			continue;
		}
		if (!strcmp(a, "--plain")) {
			plain = true;
			continue;
		}
		if (!strcmp(a, "--ungated")) {
			ungated = true;
			continue;
		}
		if (!v) {
			fprintf(stderr, "%s needs a value\n", a);
			return 2;
		}
		i++;
		if (!strcmp(a, "--cgroup"))
			cg = v;
		else if (!strcmp(a, "--conns"))
			conns = atoi(v);
		else if (!strcmp(a, "--bytes"))
			bytes = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--backlog"))
			backlog = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--mode"))
			mode = v;
		else if (!strcmp(a, "--iters"))
			iters = atol(v);
		else {
			fprintf(stderr, "unknown option %s\n", a);
			return 2;
		}
	}
	if (!cg || conns <= 0 || conns > 2000 || iters <= 0 || iters > 10000000) {
		fprintf(stderr, "--cgroup DIR is required; --conns 1..2000; --iters 1..10^7\n");
		return 2;
	}
	bool is_bulk = strcmp(argv[1], "bulk") == 0;
	if (plain && strcmp(argv[1], "stress") != 0 && strcmp(mode, "paired") != 0)
		/* outside the cgroup, no program on the path */
		return is_bulk ? bulk(mode, bytes) : pingpong(mode, iters);
	join_cgroup(cg);
	if (shortcut_open_opts(cg, backlog, ungated) < 0) {
		fprintf(stderr, "shortcut_open: %s\n", shortcut_unavailable_reason());
		return 3;
	}
	int rc = !strcmp(argv[1], "stress") ? stress(cg, conns, bytes, seed, reset)
		 : is_bulk			    ? bulk(mode, bytes)
						    : pingpong(mode, iters);
	shortcut_close();
	return rc;
}
