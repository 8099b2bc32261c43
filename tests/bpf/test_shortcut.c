/* test_shortcut.c - the local short-circuit programs: BPF_PROG_TEST_RUN support check, then fixtures with real loopback sockets in a fresh netns and cgroup, the test playing the proxy by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "sockets.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "kpath/shortcut.h"

#include "shortcut.skel.h"

#define BACKLOG_MAX (256u << 10)	/* small, so that the backpressure fixture is quick */

static char cgroup_dir[256];

/* --- helpers ---------------------------------------------------------------- */

/* A connected loopback pair over family (AF_INET, AF_INET6, or 0 for an
 * IPv6 client reaching a dual-stack listener through ::ffff:127.0.0.1):
 * *out is the connecting end, *in the accepted one. */
static void tcp_pair(int family, int *out, int *in)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int l;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		if (family == 0)
			a->sin6_addr = in6addr_any;
		len = sizeof(*a);
	}
	l = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(l >= 0);
	int zero = 0;
	if (family == 0)
		setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	assert_int_equal(bind(l, (struct sockaddr *)&ss, len), 0);
	assert_int_equal(listen(l, 4), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&ss, &len), 0);
	if (family == 0)
		inet_pton(AF_INET6, "::ffff:127.0.0.1", &((struct sockaddr_in6 *)&ss)->sin6_addr);
	*out = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(*out, (struct sockaddr *)&ss, len), 0);
	*in = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*in >= 0);
	int one = 1;
	setsockopt(*out, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*in, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(l);
}

/* client <-> pc (the proxy's accepted socket), pb (the proxy's upstream
 * socket) <-> backend; the test moves the bytes between pc and pb itself. */
struct world {
	int client, pc, pb, backend;
	struct shortcut_pair sp;
	bool paired;
};

static void world_open(struct world *w, int family)
{
	memset(w, 0, sizeof(*w));
	tcp_pair(family, &w->client, &w->pc);
	tcp_pair(family, &w->pb, &w->backend);
}

static void world_close(struct world *w)
{
	if (w->paired)
		shortcut_unpair(&w->sp, NULL);
	close(w->client);
	close(w->pc);
	close(w->pb);
	close(w->backend);
}

static void pair_world(struct world *w)
{
	enum shortcut_refusal why = SHORTCUT_REF_MAX;
	assert_int_equal(shortcut_pair(&w->sp, w->pc, w->pb, &why), 0);
	w->paired = true;
}

/* fd reads EOF within 5 s (nothing before it). */
static void read_eof(int fd)
{
	char c;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(recv(fd, &c, 1, MSG_DONTWAIT), 0);
}

/* The proxy's part: moves n bytes from one of its sockets to the other. */
static void relay(int from, int to, size_t n)
{
	char buf[4096];
	assert_true(n <= sizeof(buf));
	read_exactly(from, buf, n);
	send_all(to, buf, n);
}

static uint64_t outcome(int which)
{
	uint64_t o[PANDIT_SHORTCUT_STAT_MAX];
	assert_int_equal(shortcut_read_outcomes(o), 0);
	return o[which];
}

/* --- BPF_PROG_TEST_RUN -------------------------------------------------------- */

/* Neither sock_ops nor sk_msg programs have test_run in the kernel; if a
 * kernel grows one, this says so (and the fixtures below stay the test). */
static void test_prog_test_run(void **state)
{
	(void)state;
	struct shortcut_bpf *skel = shortcut_bpf__open_and_load();
	assert_non_null(skel);
	int progs[2] = { bpf_program__fd(skel->progs.pandit_shortcut_ops),
			 bpf_program__fd(skel->progs.pandit_shortcut_msg) };
	const char *names[2] = { "sock_ops", "sk_msg" };
	for (int i = 0; i < 2; i++) {
		char ctx[256] = { 0 };
		LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = ctx, .ctx_size_in = sizeof(ctx),
			    .repeat = 1);
		int r = bpf_prog_test_run_opts(progs[i], &opts);
		printf("test_shortcut: BPF_PROG_TEST_RUN on %s: %s (%d)%s\n", names[i],
		       r < 0 ? strerror(-r) : "supported", r,
		       r < 0 ? ": the fixtures below use real sockets" : "");
		if (r < 0)
			assert_true(r == -524 || r == -EOPNOTSUPP || r == -EINVAL);
	}
	shortcut_bpf__destroy(skel);
}

/* --- fixtures with real sockets ----------------------------------------------- */

struct fixture {
	const char *desc;
	int family;
	void (*run)(struct world *w);
};

/* Every established socket of the cgroup is registered under its own
 * 4-tuple with its own cookie, whatever the address family. */
static void fx_registered(struct world *w)
{
	int socks, pairs;
	shortcut_fds(&socks, &pairs);
	int fds[4] = { w->pc, w->backend, w->client, w->pb };
	for (int i = 0; i < 4; i++) {
		struct pandit_shortcut_key k;
		/* the key of the socket at the far end of fds[i] */
		assert_int_equal(shortcut_peer_key(fds[i], &k), 0);
		uint64_t cookie = 0, want = 0;
		socklen_t len = sizeof(want);
		assert_int_equal(bpf_map_lookup_elem(socks, &k, &cookie), 0);
		assert_int_equal(getsockopt(fds[i ^ 2], SOL_SOCKET, SO_COOKIE, &want, &len), 0);
		assert_int_equal(cookie, want);
	}
}

static void fx_unpaired_is_tcp(struct world *w)
{
	char buf[8];
	uint64_t before = outcome(PANDIT_SHORTCUT_PASS_UNPAIRED);
	send_all(w->client, "plain", 5);
	relay(w->pc, w->pb, 5);
	read_exactly(w->backend, buf, 5);
	assert_memory_equal(buf, "plain", 5);
	assert_true(outcome(PANDIT_SHORTCUT_PASS_UNPAIRED) >= before + 2);
}

/* Paired before any byte: both ways go straight to the peer, the proxy sees nothing. */
static void fx_paired_both_ways(struct world *w)
{
	char buf[8];
	pair_world(w);
	send_all(w->client, "request", 7);
	read_exactly(w->backend, buf, 7);
	assert_memory_equal(buf, "request", 7);
	send_all(w->backend, "reply", 5);
	read_exactly(w->client, buf, 5);
	assert_memory_equal(buf, "reply", 5);
	nothing_within(w->pc, 20);
	nothing_within(w->pb, 20);
	struct pandit_shortcut_pair v;
	assert_int_equal(shortcut_read(&w->sp, 0, &v), 0);
	assert_int_equal(v.redirected, 7);
	assert_int_equal(v.msgs, 1);
	assert_int_equal(v.passed, 0);
	assert_int_equal(shortcut_read(&w->sp, 1, &v), 0);
	assert_int_equal(v.redirected, 5);
}

/* Bytes sent before the pairing wait unread in the backend's receive queue:
 * the gate keeps later sends on TCP until the backend has read them. */
static void fx_unread_in_backend(struct world *w)
{
	char buf[32];
	send_all(w->client, "early;", 6);
	relay(w->pc, w->pb, 6);
	usleep(20000);	/* in the backend's receive queue, unread */
	pair_world(w);
	read_exactly(w->backend, buf, 3);	/* read in part: still not all */
	uint64_t pending = outcome(PANDIT_SHORTCUT_PASS_PENDING);
	send_all(w->client, "late;", 5);
	assert_int_equal(outcome(PANDIT_SHORTCUT_PASS_PENDING), pending + 1);
	relay(w->pc, w->pb, 5);	/* it went to the proxy */
	read_exactly(w->backend, buf, 8);
	assert_memory_equal(buf, "ly;late;", 8);
	/* everything sent over TCP has been read: the gate opens */
	send_all(w->client, "direct;", 7);
	read_exactly(w->backend, buf, 7);
	assert_memory_equal(buf, "direct;", 7);
	/* reading redirected bytes does not move the TCP counters: still open */
	send_all(w->client, "again;", 6);
	read_exactly(w->backend, buf, 6);
	assert_memory_equal(buf, "again;", 6);
	nothing_within(w->pc, 20);
	struct pandit_shortcut_pair v;
	assert_int_equal(shortcut_read(&w->sp, 0, &v), 0);
	assert_int_equal(v.redirected, 13);
	assert_int_equal(v.passed, 5);
}

/* Bytes the proxy has read but not yet written (or still in flight to it). */
static void fx_held_by_proxy(struct world *w)
{
	char buf[32];
	send_all(w->client, "early;", 6);
	read_exactly(w->pc, buf, 6);	/* the proxy holds them */
	pair_world(w);
	send_all(w->client, "late;", 5);	/* gate closed: to TCP */
	send_all(w->pb, buf, 6);
	relay(w->pc, w->pb, 5);
	read_exactly(w->backend, buf, 11);
	assert_memory_equal(buf, "early;late;", 11);
}

/* A FIN after redirected bytes reaches the backend after them: the proxy
 * passes it on as usual. */
static void fx_fin_after_redirected(struct world *w)
{
	char buf[8];
	pair_world(w);
	send_all(w->client, "abc", 3);
	shutdown(w->client, SHUT_WR);
	read_eof(w->pc);
	shutdown(w->pb, SHUT_WR);
	usleep(20000);	/* the FIN is in the backend's queue, behind the psock bytes */
	read_exactly(w->backend, buf, 3);
	assert_memory_equal(buf, "abc", 3);
	read_eof(w->backend);
	/* the other way still flows (half-close) */
	send_all(w->backend, "back", 4);
	read_exactly(w->client, buf, 4);
	assert_memory_equal(buf, "back", 4);
}

/* A stale pair entry (cookie of another socket) redirects nothing. */
static void fx_stale_entry(struct world *w)
{
	char buf[8];
	int socks, pairs;
	pair_world(w);
	shortcut_fds(&socks, &pairs);
	struct pandit_shortcut_pair v;
	assert_int_equal(shortcut_read(&w->sp, 0, &v), 0);
	v.cookie += 1000;
	assert_int_equal(bpf_map_update_elem(pairs, &w->sp.key[0], &v, BPF_EXIST), 0);
	uint64_t stale = outcome(PANDIT_SHORTCUT_PASS_STALE);
	send_all(w->client, "x", 1);
	relay(w->pc, w->pb, 1);
	read_exactly(w->backend, buf, 1);
	assert_int_equal(outcome(PANDIT_SHORTCUT_PASS_STALE), stale + 1);
}

/* A backend that is gone: sends take TCP (to the proxy), nothing lost silently. */
static void fx_backend_closed(struct world *w)
{
	char buf[8];
	pair_world(w);
	close(w->backend);
	w->backend = socket(AF_INET, SOCK_STREAM, 0);	/* for world_close */
	/* closed but not yet TCP_CLOSE (FIN_WAIT): its shortcut_where entry is
	 * still there, the redirect is refused; once closed: no peer */
	uint64_t gone = outcome(PANDIT_SHORTCUT_PASS_NO_PEER) + outcome(PANDIT_SHORTCUT_PASS_REDIRECT);
	send_all(w->client, "lost?", 5);
	read_exactly(w->pc, buf, 5);
	assert_memory_equal(buf, "lost?", 5);
	assert_int_equal(outcome(PANDIT_SHORTCUT_PASS_NO_PEER) + outcome(PANDIT_SHORTCUT_PASS_REDIRECT),
			 gone + 1);
}

/* A backend that does not read: past backlog_max unread redirected bytes,
 * sends take TCP again, so the proxy's path pushes back (here the proxy
 * does not relay at all: the client's send buffer fills and send() says
 * EAGAIN), and everything arrives in order once the backend reads. */
static void fx_backpressure(struct world *w)
{
	static char out[64 << 10], in[64 << 10];
	pair_world(w);
	fcntl(w->client, F_SETFL, fcntl(w->client, F_GETFL) | O_NONBLOCK);
	uint64_t sent = 0;
	for (int i = 0; i < 4096; i++) {	/* at most 256 MiB */
		for (size_t k = 0; k < sizeof(out); k++)
			out[k] = (char)((sent + k) * 7 / 3);
		ssize_t n = send(w->client, out, sizeof(out), MSG_NOSIGNAL);
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			break;
		}
		sent += (uint64_t)n;
	}
	/* bounded: the cap, plus the socket buffers on the TCP path */
	assert_true(sent < (64u << 20));
	struct pandit_shortcut_pair v;
	assert_int_equal(shortcut_read(&w->sp, 0, &v), 0);
	assert_true(v.redirected > BACKLOG_MAX);
	assert_true(v.redirected < BACKLOG_MAX + sizeof(out) + 1);
	assert_true(outcome(PANDIT_SHORTCUT_PASS_BACKLOG) >= 1);
	/* now relay and read everything: in order */
	uint64_t got = 0;
	fcntl(w->pc, F_SETFL, fcntl(w->pc, F_GETFL) | O_NONBLOCK);
	while (got < sent) {
		ssize_t n = recv(w->pc, in, sizeof(in), 0);
		if (n > 0)
			send_all(w->pb, in, (size_t)n);
		n = recv(w->backend, in, sizeof(in), MSG_DONTWAIT);
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			struct pollfd p[2] = { { .fd = w->pc, .events = POLLIN },
					       { .fd = w->backend, .events = POLLIN } };
			assert_true(poll(p, 2, 5000) > 0);
			continue;
		}
		assert_true(n > 0);
		for (ssize_t k = 0; k < n; k++)
			assert_int_equal((uint8_t)in[k], (uint8_t)((got + (uint64_t)k) * 7 / 3));
		got += (uint64_t)n;
	}
	assert_int_equal(got, sent);
}

/* pandit resets the client's side: redirected bytes the client has not
 * read yet come first, then the error (as TCP does with its queue). */
static void fx_reset_after_redirected(struct world *w)
{
	char buf[8];
	pair_world(w);
	send_all(w->backend, "abc", 3);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(w->pc, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(w->pc);
	w->pc = socket(AF_INET, SOCK_STREAM, 0);	/* for world_close */
	usleep(20000);
	read_exactly(w->client, buf, 3);
	assert_memory_equal(buf, "abc", 3);
	assert_int_equal(recv(w->client, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, ECONNRESET);
}

/* A backend that closes with redirected bytes unread: its stack sends a
 * FIN, not the RST TCP sends for unread bytes in its own queue (the
 * documented difference): pandit reads EOF on its upstream socket. */
static void fx_backend_closes_unread(struct world *w)
{
	char buf[8];
	pair_world(w);
	send_all(w->client, "unread", 6);
	usleep(20000);
	close(w->backend);
	w->backend = socket(AF_INET, SOCK_STREAM, 0);	/* for world_close */
	struct pollfd p = { .fd = w->pb, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(recv(w->pb, buf, sizeof(buf), MSG_DONTWAIT), 0);
}

/* Pins a kernel limitation (ARCHITECTURE, open problems): a reader blocked
 * in recv(MSG_WAITALL) inside TCP's recvmsg when its direction switches
 * does not see the redirected bytes (TCP's recvmsg only waits on its own
 * queue): it gets the TCP bytes when its timeout ends, the rest at the next
 * call. If this fails, the kernel changed and the note can go. */
struct waitall {
	int fd;
	ssize_t n;
	char buf[16];
};

static void *waitall_reader(void *arg)
{
	struct waitall *r = arg;
	r->n = recv(r->fd, r->buf, 10, MSG_WAITALL);
	return NULL;
}

static void fx_waitall_straddling(struct world *w)
{
	struct waitall r = { .fd = w->backend };
	struct timeval tv = { .tv_sec = 0, .tv_usec = 300000 };
	pthread_t t;
	assert_int_equal(setsockopt(w->backend, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	send_all(w->client, "early", 5);
	relay(w->pc, w->pb, 5);
	pair_world(w);
	assert_int_equal(pthread_create(&t, NULL, waitall_reader, &r), 0);
	/* the reader takes the 5 TCP bytes and waits inside TCP for 5 more:
	 * once they have arrived (acked: nothing left in pb's send queue) and
	 * nothing is left unread, the gate is open (nothing unread alone may
	 * mean "not arrived yet" on a busy machine) */
	int unread = 5, unacked = 5;
	for (int i = 0; i < 5000 && (unread || unacked); i++) {
		usleep(1000);
		assert_int_equal(ioctl(w->pb, SIOCOUTQ, &unacked), 0);
		assert_int_equal(ioctl(w->backend, FIONREAD, &unread), 0);
	}
	assert_int_equal(unacked, 0);
	assert_int_equal(unread, 0);
	send_all(w->client, "later", 5);
	struct pandit_shortcut_pair v;
	assert_int_equal(shortcut_read(&w->sp, 0, &v), 0);
	if (v.redirected == 0) {
		/* Seen on a loaded machine (about 1 run in 20): the send still
		 * took TCP although the 5 bytes had been read; the reader then
		 * gets all 10 bytes from TCP and the limitation is not exercised
		 * this run. Checked, then said. */
		pthread_join(t, NULL);
		assert_int_equal(r.n, 10);
		assert_memory_equal(r.buf, "earlylater", 10);
		printf("  (the switch did not happen in this run: the limitation was not exercised)\n");
		return;
	}
	assert_int_equal(v.redirected, 5);
	pthread_join(t, NULL);
	assert_int_equal(r.n, 5);
	assert_memory_equal(r.buf, "early", 5);
	char buf[8];
	read_exactly(w->backend, buf, 5);
	assert_memory_equal(buf, "later", 5);
}

/* Not local: a socket outside the cgroup's registered set is refused. */
static void fx_refused_not_local(struct world *w)
{
	struct shortcut_pair sp;
	enum shortcut_refusal why = SHORTCUT_REF_MAX;
	int socks, pairs;
	shortcut_fds(&socks, &pairs);
	struct pandit_shortcut_key k;
	assert_int_equal(shortcut_peer_key(w->pb, &k), 0);
	assert_int_equal(bpf_map_delete_elem(socks, &k), 0);
	assert_true(shortcut_pair(&sp, w->pc, w->pb, &why) < 0);
	assert_int_equal(why, SHORTCUT_REF_NOT_LOCAL);
}

static const struct fixture fixtures[] = {
	{ "registered, IPv4", AF_INET, fx_registered },
	{ "registered, IPv6", AF_INET6, fx_registered },
	{ "registered, IPv4-mapped IPv6", 0, fx_registered },
	{ "unpaired sockets use TCP", AF_INET, fx_unpaired_is_tcp },
	{ "paired: both ways past the proxy", AF_INET, fx_paired_both_ways },
	{ "paired: both ways past the proxy, IPv6", AF_INET6, fx_paired_both_ways },
	{ "paired: both ways past the proxy, IPv4-mapped", 0, fx_paired_both_ways },
	{ "bytes unread in the backend keep the gate closed", AF_INET, fx_unread_in_backend },
	{ "bytes held by the proxy keep the gate closed", AF_INET, fx_held_by_proxy },
	{ "FIN after redirected bytes, then half-close", AF_INET, fx_fin_after_redirected },
	{ "stale pair entry redirects nothing", AF_INET, fx_stale_entry },
	{ "backend closed: sends take TCP", AF_INET, fx_backend_closed },
	{ "backend not reading: backlog cap, then TCP backpressure", AF_INET, fx_backpressure },
	{ "reset after redirected bytes: bytes first, then the error", AF_INET, fx_reset_after_redirected },
	{ "backend closing with redirected bytes unread sends FIN", AF_INET, fx_backend_closes_unread },
	{ "kernel limit: MSG_WAITALL reader straddling the switch", AF_INET, fx_waitall_straddling },
	{ "pair refused when a socket is not registered", AF_INET, fx_refused_not_local },
};

static void test_fixtures(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		struct world w;
		printf("  fixture: %s\n", fixtures[i].desc);
		fflush(stdout);
		world_open(&w, fixtures[i].family);
		fixtures[i].run(&w);
		world_close(&w);
	}
	int socks, pairs;
	shortcut_fds(&socks, &pairs);
	struct pandit_shortcut_key k;
	assert_int_equal(bpf_map_get_next_key(pairs, NULL, &k), -ENOENT);	/* nothing left paired */
}

static int setup(void **state)
{
	(void)state;
	fresh_netns();
	/* a cgroup of our own under the cgroup2 mount, with this process in it */
	const char *roots[] = { "/sys/fs/cgroup/unified", "/sys/fs/cgroup" };
	for (size_t i = 0; i < 2; i++) {
		snprintf(cgroup_dir, sizeof(cgroup_dir), "%s/pandit-test-shortcut-%d", roots[i], getpid());
		if (mkdir(cgroup_dir, 0755) == 0)
			break;
		cgroup_dir[0] = '\0';
	}
	if (!cgroup_dir[0])
		return -1;
	char procs[300];
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup_dir);
	FILE *f = fopen(procs, "w");
	if (!f)
		return -1;
	fprintf(f, "%d\n", getpid());
	if (fclose(f) != 0)
		return -1;
	return shortcut_open(cgroup_dir, BACKLOG_MAX) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	shortcut_close();
	/* back to the parent cgroup, then remove ours */
	char procs[300];
	snprintf(procs, sizeof(procs), "%s/../cgroup.procs", cgroup_dir);
	FILE *f = fopen(procs, "w");
	if (f) {
		fprintf(f, "%d\n", getpid());
		fclose(f);
	}
	rmdir(cgroup_dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prog_test_run),
		cmocka_unit_test(test_fixtures),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
