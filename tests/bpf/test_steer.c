/* test_steer.c - sk_lookup steering: BPF_PROG_TEST_RUN fixture table, real sockets in fresh netns, batched sync, sync without privileges. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "sockets.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <grp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "steer/steer.h"

/* --- helpers ---------------------------------------------------------------- */

/* A TCP listener. family AF_INET6 binds [::] with IPV6_V6ONLY off, the one
 * kind of socket bpf_sk_assign accepts for both IPv4 and IPv6 connections
 * (binding [::1] makes the kernel set ipv6only); AF_INET binds 127.0.0.1.
 * port 0: any. */
static int tcp_listener(int family, uint16_t port, bool reuseport)
{
	int one = 1, zero = 0;
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
	if (reuseport)
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
	if (family == AF_INET6) {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port),
					  .sin6_addr = in6addr_any };
		assert_int_equal(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)), 0);
		assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	} else {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	}
	assert_int_equal(listen(fd, 1024), 0);
	return fd;
}

static uint16_t local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static uint64_t sock_cookie(int fd)
{
	uint64_t c = 0;
	socklen_t len = sizeof(c);

	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len), 0);
	return c;
}

/* Blocking connect to ip:port; returns the fd or -errno. */
static int tcp_connect(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, family;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
		family = AF_INET6;
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
		family = AF_INET;
		len = sizeof(*a);
	}
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* Accepts one connection from whichever of lfds[0..n) has it (waits at
 * most 5 s); *which tells the listener. Returns the fd. */
static int accept_any(const int *lfds, int n, int *which)
{
	struct pollfd p[4];

	assert_true(n <= 4);
	for (int i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = lfds[i], .events = POLLIN };
	assert_true(poll(p, (nfds_t)n, 5000) > 0);
	for (int i = 0; i < n; i++) {
		if (p[i].revents & POLLIN) {
			int fd = accept4(lfds[i], NULL, NULL, SOCK_CLOEXEC);
			assert_true(fd >= 0);
			*which = i;
			return fd;
		}
	}
	fail_msg("poll() said ready but no listener was");
	return -1;
}

static struct steer_entry entry_any(uint16_t port, uint32_t app, uint32_t slot)
{
	struct steer_entry e;

	steer_key_init(&e.key, port, NULL, 0);
	e.val = (struct pandit_steer_val){ .app_id = app, .sock_idx = slot };
	return e;
}

static struct steer_entry entry_pfx(uint16_t port, const char *ip, uint8_t plen, uint32_t app,
				    uint32_t slot)
{
	struct steer_entry e;

	if (strchr(ip, ':')) {
		uint8_t a[16];
		assert_int_equal(inet_pton(AF_INET6, ip, a), 1);
		steer_key_init(&e.key, port, a, plen);
	} else {
		struct in_addr a;
		assert_int_equal(inet_pton(AF_INET, ip, &a), 1);
		steer_key_init_v4(&e.key, port, a.s_addr, plen);
	}
	e.val = (struct pandit_steer_val){ .app_id = app, .sock_idx = slot };
	return e;
}

static uint64_t total(const struct steer_counters *c)
{
	uint64_t t = 0;

	for (int i = 0; i < PANDIT_STEER_STAT_MAX; i++)
		t += c->v[i];
	return t;
}

/* Number of entries in the kernel's rules map, by walking it. */
static size_t kernel_count(struct steer *s)
{
	struct pandit_steer_key k, next;
	size_t n = 0;
	int fd = steer_rules_fd(s);

	if (bpf_map_get_next_key(fd, NULL, &next))
		return 0;
	do {
		n++;
		k = next;
	} while (bpf_map_get_next_key(fd, &k, &next) == 0);
	return n;
}

/* Exact-key read of the kernel's value for e's key; false when absent. */
static bool kernel_has(struct steer *s, const struct steer_entry *e)
{
	/* a lookup in an LPM trie answers with the longest covering prefix,
	 * not necessarily this key: find the key itself by walking the map */
	struct pandit_steer_key k, next;
	struct pandit_steer_val v;
	int fd = steer_rules_fd(s);

	if (bpf_map_get_next_key(fd, NULL, &next))
		return false;
	do {
		k = next;
		if (k.prefixlen == e->key.prefixlen && memcmp(&k, &e->key, sizeof(k)) == 0) {
			assert_int_equal(bpf_map_lookup_elem(fd, &k, &v), 0);
			return memcmp(&v, &e->val, sizeof(v)) == 0;
		}
	} while (bpf_map_get_next_key(fd, &k, &next) == 0);
	return false;
}

/* --- BPF_PROG_TEST_RUN fixture table ---------------------------------------------- */

struct fixture {
	const char *desc;
	int family, protocol;
	const char *local_ip;
	uint16_t local_port;
	int verdict;		/* SK_PASS or SK_DROP */
	int stat;		/* the counter that must go up by one */
	bool assigned;		/* a socket must be selected (cookie of the listener) */
};

/* Runs the program once on the given lookup; returns the verdict, *cookie
 * the selected socket's cookie (0: none). */
static int run_lookup(int prog_fd, const struct fixture *f, uint64_t *cookie)
{
	struct bpf_sk_lookup in, out;

	memset(&in, 0, sizeof(in));
	memset(&out, 0, sizeof(out));
	in.family = (uint32_t)f->family;
	in.protocol = (uint32_t)f->protocol;
	in.local_port = f->local_port;		/* host order */
	in.remote_port = htons(40000);		/* network order */
	if (f->family == AF_INET) {
		assert_int_equal(inet_pton(AF_INET, f->local_ip, &in.local_ip4), 1);
		assert_int_equal(inet_pton(AF_INET, "127.0.0.2", &in.remote_ip4), 1);
	} else {
		assert_int_equal(inet_pton(AF_INET6, f->local_ip, in.local_ip6), 1);
		assert_int_equal(inet_pton(AF_INET6, "2001:db8:ffff::2", in.remote_ip6), 1);
	}
	LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = &in, .ctx_size_in = sizeof(in),
		    .ctx_out = &out, .ctx_size_out = sizeof(out));
	int err = bpf_prog_test_run_opts(prog_fd, &o);
	if (err)
		fail_msg("%s: bpf_prog_test_run_opts() failed: %s", f->desc, strerror(-err));
	*cookie = out.cookie;
	return (int)o.retval;
}

static void check_fixture(struct steer *s, const struct fixture *f, uint64_t want_cookie)
{
	struct steer_counters before, after;
	uint64_t cookie;

	assert_int_equal(steer_read_counters(s, &before), 0);
	int verdict = run_lookup(steer_prog_fd(s), f, &cookie);
	assert_int_equal(steer_read_counters(s, &after), 0);

	if (verdict != f->verdict)
		fail_msg("%s: verdict %d, want %d", f->desc, verdict, f->verdict);
	if (after.v[f->stat] != before.v[f->stat] + 1 || total(&after) != total(&before) + 1)
		fail_msg("%s: counter %d went %llu -> %llu (total +%llu), want +1", f->desc, f->stat,
			 (unsigned long long)before.v[f->stat], (unsigned long long)after.v[f->stat],
			 (unsigned long long)(total(&after) - total(&before)));
	if (f->assigned && cookie != want_cookie)
		fail_msg("%s: selected socket cookie %llu, want the listener's %llu", f->desc,
			 (unsigned long long)cookie, (unsigned long long)want_cookie);
	if (!f->assigned && cookie != 0)
		fail_msg("%s: a socket (cookie %llu) was selected, want none", f->desc,
			 (unsigned long long)cookie);
	printf("  ok: %s\n", f->desc);
}

/* Rules shared by the fixture tests. Slot 7 does not exist, so a rule
 * pointing there is a "configured but no live listener" rule: it shows
 * which rule won without a second socket. */
static size_t fixture_rules(struct steer_entry *e)
{
	size_t n = 0;

	e[n++] = entry_any(8080, 1, PANDIT_SOCK_TCP);
	e[n++] = entry_pfx(9000, "10.1.2.0", 24, 2, PANDIT_SOCK_TCP);
	e[n++] = entry_pfx(9000, "10.1.2.128", 25, 3, 7);
	e[n++] = entry_any(7000, 4, 7);
	e[n++] = entry_pfx(7000, "192.0.2.0", 24, 5, PANDIT_SOCK_TCP);
	e[n++] = entry_pfx(9443, "2001:db8::", 32, 6, PANDIT_SOCK_TCP);
	e[n++] = entry_pfx(9443, "0.0.0.0", 0, 7, 7);	/* any IPv4 address, not IPv6 */
	e[n++] = entry_pfx(9443, "2001:db8::5", 128, 8, 7);
	return n;
}

static const struct fixture fixtures[] = {
	{ "port rule (any address) matches IPv4", AF_INET, IPPROTO_TCP, "127.0.0.1", 8080,
	  SK_PASS, PANDIT_STEER_ASSIGNED, true },
	{ "port rule (any address) matches IPv6", AF_INET6, IPPROTO_TCP, "::1", 8080, SK_PASS,
	  PANDIT_STEER_ASSIGNED, true },
	{ "port rule matches any IPv4 address", AF_INET, IPPROTO_TCP, "203.0.113.77", 8080, SK_PASS,
	  PANDIT_STEER_ASSIGNED, true },
	{ "unmatched port is left alone", AF_INET, IPPROTO_TCP, "127.0.0.1", 8081, SK_PASS,
	  PANDIT_STEER_PASS_UNMATCHED, false },
	{ "neighbour port below is left alone", AF_INET6, IPPROTO_TCP, "::1", 8079, SK_PASS,
	  PANDIT_STEER_PASS_UNMATCHED, false },
	{ "UDP on a steered port is left alone", AF_INET, IPPROTO_UDP, "127.0.0.1", 8080, SK_PASS,
	  PANDIT_STEER_PASS_NOT_TCP, false },
	{ "UDP over IPv6 is left alone", AF_INET6, IPPROTO_UDP, "::1", 8080, SK_PASS,
	  PANDIT_STEER_PASS_NOT_TCP, false },
	{ "IPv4 /24 rule: address inside matches", AF_INET, IPPROTO_TCP, "10.1.2.5", 9000, SK_PASS,
	  PANDIT_STEER_ASSIGNED, true },
	{ "IPv4 /24 rule: address outside misses", AF_INET, IPPROTO_TCP, "10.1.3.5", 9000, SK_PASS,
	  PANDIT_STEER_PASS_UNMATCHED, false },
	{ "IPv4 /24 rule does not match the IPv6 twin", AF_INET6, IPPROTO_TCP, "::a01:205", 9000,
	  SK_PASS, PANDIT_STEER_PASS_UNMATCHED, false },
	{ "longest prefix wins: /25 (empty slot) over /24 -> refused", AF_INET, IPPROTO_TCP,
	  "10.1.2.200", 9000, SK_DROP, PANDIT_STEER_DROP_NO_SOCKET, false },
	{ "longest prefix wins: /24 over any address -> assigned", AF_INET, IPPROTO_TCP, "192.0.2.9",
	  7000, SK_PASS, PANDIT_STEER_ASSIGNED, true },
	{ "any-address rule (empty slot) outside the /24 -> refused", AF_INET, IPPROTO_TCP,
	  "198.51.100.1", 7000, SK_DROP, PANDIT_STEER_DROP_NO_SOCKET, false },
	{ "any-address rule covers IPv6 too -> refused", AF_INET6, IPPROTO_TCP, "2001:db8::1", 7000,
	  SK_DROP, PANDIT_STEER_DROP_NO_SOCKET, false },
	{ "IPv6 /32 rule: address inside matches", AF_INET6, IPPROTO_TCP, "2001:db8:1::1", 9443,
	  SK_PASS, PANDIT_STEER_ASSIGNED, true },
	{ "IPv6 /32 rule: address outside misses", AF_INET6, IPPROTO_TCP, "2001:db9::1", 9443,
	  SK_PASS, PANDIT_STEER_PASS_UNMATCHED, false },
	{ "IPv6 /128 wins over /32 -> refused", AF_INET6, IPPROTO_TCP, "2001:db8::5", 9443, SK_DROP,
	  PANDIT_STEER_DROP_NO_SOCKET, false },
	{ "any-IPv4 rule (::ffff:0:0/96) matches IPv4 only", AF_INET, IPPROTO_TCP, "10.9.9.9", 9443,
	  SK_DROP, PANDIT_STEER_DROP_NO_SOCKET, false },
	{ "port 0 is unmatched", AF_INET, IPPROTO_TCP, "127.0.0.1", 0, SK_PASS,
	  PANDIT_STEER_PASS_UNMATCHED, false },
	{ "port 65535 is unmatched", AF_INET, IPPROTO_TCP, "127.0.0.1", 65535, SK_PASS,
	  PANDIT_STEER_PASS_UNMATCHED, false },
};

static void test_prog_fixtures(void **state)
{
	(void)state;
	struct steer_entry rules[16];
	struct steer *s;

	fresh_netns();
	/* BPF_PROG_TEST_RUN refuses to report a SO_REUSEPORT socket, so the
	 * fixture listener is a plain dual-stack one */
	int l6 = tcp_listener(AF_INET6, 0, false);
	assert_int_equal(steer_open_flags(l6, STEER_NO_ATTACH, &s), 0);
	size_t n = fixture_rules(rules);
	assert_int_equal(steer_sync(s, rules, n, NULL), 0);

	uint64_t cookie = sock_cookie(l6);
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
		check_fixture(s, &fixtures[i], cookie);

	steer_close(s);
	close(l6);
}

/* Matched rule but nothing usable in the slot: refused, counted per reason. */
static void test_prog_fail_closed(void **state)
{
	(void)state;
	struct steer_entry rules[16];
	struct steer *s;
	const struct fixture v4 = { "slot empty: refused", AF_INET, IPPROTO_TCP, "127.0.0.1", 8080,
				    SK_DROP, PANDIT_STEER_DROP_NO_SOCKET, false };
	const struct fixture v6 = { "IPv4-only listener, IPv6 client: assign fails, refused",
				    AF_INET6, IPPROTO_TCP, "::1", 8080, SK_DROP,
				    PANDIT_STEER_DROP_ASSIGN, false };
	const struct fixture v4ok = { "IPv4-only listener, IPv4 client: assigned", AF_INET,
				      IPPROTO_TCP, "127.0.0.1", 8080, SK_PASS,
				      PANDIT_STEER_ASSIGNED, true };
	const struct fixture udp_sk = { "UDP socket in the slot, TCP client: assign fails, refused",
					AF_INET, IPPROTO_TCP, "127.0.0.1", 8080, SK_DROP,
					PANDIT_STEER_DROP_ASSIGN, false };

	fresh_netns();
	assert_int_equal(steer_open_flags(-1, STEER_NO_ATTACH, &s), 0);
	size_t n = fixture_rules(rules);
	assert_int_equal(steer_sync(s, rules, n, NULL), 0);
	check_fixture(s, &v4, 0);

	int l4 = tcp_listener(AF_INET, 0, false);
	assert_int_equal(steer_set_listener(s, l4), 0);
	check_fixture(s, &v6, 0);
	check_fixture(s, &v4ok, sock_cookie(l4));

	/* closing the listener takes it out of the sockmap: refused again */
	close(l4);
	check_fixture(s, &v4, 0);

	/* a bound UDP socket is accepted by the sockmap but not for TCP */
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(u, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(steer_set_listener(s, u), 0);
	check_fixture(s, &udp_sk, 0);
	close(u);

	/* a socket that is not listening is refused by the map itself */
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(steer_set_listener(s, c) < 0);
	close(c);
	steer_close(s);
}

/* --- real sockets ------------------------------------------------------------ */

#define REAL_BASE 20000
#define REAL_PORTS 128

static void test_real_sockets(void **state)
{
	(void)state;
	struct steer_entry *want = calloc(REAL_PORTS, sizeof(*want));
	struct steer_counters c0, c1;
	int acc[REAL_PORTS + 8], cli[REAL_PORTS + 8], nconn = 0, per[2] = { 0, 0 };
	struct steer *s;

	assert_non_null(want);
	fresh_netns();
	/* the workers' SO_REUSEPORT group: two dual-stack listeners, one port */
	int l[2];
	l[0] = tcp_listener(AF_INET6, 0, true);
	l[1] = tcp_listener(AF_INET6, local_port(l[0]), true);
	/* a stray socket bound normally on a port pandit also serves: steering
	 * must win over it, and must not fall back to it when pandit is gone */
	int stray = tcp_listener(AF_INET, REAL_BASE + 1, false);
	/* a normal listener on a port pandit does not serve: must keep working */
	int other = tcp_listener(AF_INET, 30001, false);

	assert_int_equal(steer_open(l[0], &s), 0);
	for (int i = 0; i < REAL_PORTS; i++)
		want[i] = entry_any((uint16_t)(REAL_BASE + i), (uint32_t)i + 1, PANDIT_SOCK_TCP);
	struct steer_sync_stats st;
	assert_int_equal(steer_sync(s, want, REAL_PORTS, &st), 0);
	assert_int_equal(st.updated, REAL_PORTS);
	assert_int_equal(steer_read_counters(s, &c0), 0);

	for (int i = 0; i < REAL_PORTS; i++) {
		uint16_t port = (uint16_t)(REAL_BASE + i);
		int which = 0;
		cli[nconn] = tcp_connect(i % 2 ? "::1" : "127.0.0.1", port);
		if (cli[nconn] < 0)
			fail_msg("connect to steered port %u: %s", port, strerror(-cli[nconn]));
		acc[nconn] = accept_any(l, 2, &which);
		per[which]++;
		/* the original destination survives on the accepted socket */
		assert_int_equal(local_port(acc[nconn]), port);
		nconn++;
	}
	printf("  %d steered connections: %d on listener 0, %d on listener 1\n", REAL_PORTS, per[0],
	       per[1]);
	/* reuseport selection ran after bpf_sk_assign: both got some */
	assert_true(per[0] > 0 && per[1] > 0);
	/* the stray listener on REAL_BASE + 1 got nothing */
	struct pollfd p = { .fd = stray, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 0), 0);

	/* not configured, nothing bound: the normal stack refuses */
	assert_int_equal(tcp_connect("127.0.0.1", 30000), -ECONNREFUSED);
	/* not configured, bound normally: the normal stack delivers */
	cli[nconn] = tcp_connect("127.0.0.1", 30001);
	assert_true(cli[nconn] >= 0);
	acc[nconn] = accept4(other, NULL, NULL, SOCK_CLOEXEC);
	assert_true(acc[nconn] >= 0);
	nconn++;

	assert_int_equal(steer_read_counters(s, &c1), 0);
	assert_int_equal(c1.v[PANDIT_STEER_ASSIGNED] - c0.v[PANDIT_STEER_ASSIGNED], REAL_PORTS);
	assert_int_equal(c1.v[PANDIT_STEER_PASS_UNMATCHED] - c0.v[PANDIT_STEER_PASS_UNMATCHED], 2);
	assert_int_equal(c1.v[PANDIT_STEER_DROP_NO_SOCKET] - c0.v[PANDIT_STEER_DROP_NO_SOCKET], 0);

	/* pandit's listeners gone (closing the head takes it out of the
	 * sockmap): configured ports are refused, not leaked to the stray */
	close(l[0]);
	close(l[1]);
	c0 = c1;
	assert_int_equal(tcp_connect("127.0.0.1", REAL_BASE), -ECONNREFUSED);
	assert_int_equal(tcp_connect("127.0.0.1", REAL_BASE + 1), -ECONNREFUSED);
	assert_int_equal(tcp_connect("::1", REAL_BASE + 2), -ECONNREFUSED);
	assert_int_equal(poll(&p, 1, 0), 0);
	assert_int_equal(steer_read_counters(s, &c1), 0);
	assert_int_equal(c1.v[PANDIT_STEER_DROP_NO_SOCKET] - c0.v[PANDIT_STEER_DROP_NO_SOCKET], 3);

	/* a new listener group takes over without touching the rules */
	int l2 = tcp_listener(AF_INET6, 0, true);
	assert_int_equal(steer_set_listener(s, l2), 0);
	cli[nconn] = tcp_connect("127.0.0.1", REAL_BASE + 5);
	assert_true(cli[nconn] >= 0);
	acc[nconn] = accept4(l2, NULL, NULL, SOCK_CLOEXEC);
	assert_true(acc[nconn] >= 0);
	assert_int_equal(local_port(acc[nconn]), REAL_BASE + 5);
	nconn++;

	/* removing the rules hands the ports back to the normal stack: the
	 * stray socket now gets REAL_BASE + 1 */
	assert_int_equal(steer_sync(s, NULL, 0, &st), 0);
	assert_int_equal(st.deleted, REAL_PORTS);
	cli[nconn] = tcp_connect("127.0.0.1", REAL_BASE + 1);
	assert_true(cli[nconn] >= 0);
	acc[nconn] = accept4(stray, NULL, NULL, SOCK_CLOEXEC);
	assert_true(acc[nconn] >= 0);
	nconn++;
	assert_int_equal(tcp_connect("127.0.0.1", REAL_BASE + 2), -ECONNREFUSED);

	/* after steer_close (link destroyed) nothing is steered any more */
	assert_int_equal(steer_sync(s, want, 4, NULL), 0);
	steer_close(s);
	assert_int_equal(tcp_connect("127.0.0.1", REAL_BASE + 3), -ECONNREFUSED);

	for (int i = 0; i < nconn; i++) {
		close(cli[i]);
		close(acc[i]);
	}
	close(l2);
	close(stray);
	close(other);
	free(want);
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

/* --- sync ------------------------------------------------------------------- */

static void expect_stats(const struct steer_sync_stats *st, size_t upd, size_t del, size_t same)
{
	if (st->updated != upd || st->deleted != del || st->unchanged != same)
		fail_msg("sync stats: updated %zu deleted %zu unchanged %zu, want %zu %zu %zu",
			 st->updated, st->deleted, st->unchanged, upd, del, same);
}

static void test_sync_diff(void **state)
{
	(void)state;
	struct steer_entry a[16], b[16];
	struct steer_sync_stats st;
	struct steer *s;

	assert_int_equal(steer_open_flags(-1, STEER_NO_ATTACH, &s), 0);
	for (int i = 0; i < 10; i++)
		a[i] = entry_any((uint16_t)(5000 + i), (uint32_t)i, PANDIT_SOCK_TCP);
	assert_int_equal(steer_sync(s, a, 10, &st), 0);
	expect_stats(&st, 10, 0, 0);
	assert_int_equal(kernel_count(s), 10);
	assert_int_equal(steer_count(s), 10);

	/* keep 6 (5000..5005, one of them changed), drop 4 (5006..5009), add 3 */
	for (int i = 0; i < 6; i++)
		b[i] = a[i];
	b[2].val.app_id = 99;
	b[6] = entry_pfx(5000, "10.0.0.0", 8, 100, PANDIT_SOCK_TCP);
	b[7] = entry_pfx(6000, "fd00::", 8, 101, PANDIT_SOCK_TCP);
	b[8] = entry_any(6001, 102, PANDIT_SOCK_TCP);
	/* order of want does not matter */
	struct steer_entry t = b[0];
	b[0] = b[8];
	b[8] = t;
	assert_int_equal(steer_sync(s, b, 9, &st), 0);
	expect_stats(&st, 4, 4, 5);
	assert_int_equal(kernel_count(s), 9);
	for (int i = 0; i < 9; i++)
		assert_true(kernel_has(s, &b[i]));
	assert_false(kernel_has(s, &a[7]));

	/* the same again: nothing to do */
	assert_int_equal(steer_sync(s, b, 9, &st), 0);
	expect_stats(&st, 0, 0, 9);

	/* a key with bits set past its prefix is the same key */
	struct steer_entry c[9];
	memcpy(c, b, sizeof(c));
	c[6].key.addr[15] = 0x42;	/* 10.0.0.0/8: byte 15 is past the prefix */
	assert_int_equal(steer_sync(s, c, 9, &st), 0);
	expect_stats(&st, 0, 0, 9);

	/* leave one out, then put it back */
	assert_int_equal(steer_sync(s, &b[1], 8, &st), 0);
	expect_stats(&st, 0, 1, 8);
	assert_false(kernel_has(s, &b[0]));
	assert_int_equal(steer_sync(s, b, 9, &st), 0);
	expect_stats(&st, 1, 0, 8);
	assert_true(kernel_has(s, &b[0]));

	/* duplicates and bad prefix lengths are refused, nothing changes */
	b[9] = b[3];
	b[9].val.app_id = 7;
	assert_int_equal(steer_sync(s, b, 10, &st), -EINVAL);
	b[9] = entry_any(7777, 1, 0);
	b[10] = entry_any(7777, 2, 0);	/* duplicate among new keys */
	assert_int_equal(steer_sync(s, b, 11, &st), -EINVAL);
	b[9].key.prefixlen = 8;
	assert_int_equal(steer_sync(s, b, 10, &st), -EINVAL);
	b[9].key.prefixlen = PANDIT_STEER_PREFIX_MAX + 1;
	assert_int_equal(steer_sync(s, b, 10, &st), -EINVAL);
	assert_int_equal(kernel_count(s), 9);
	assert_int_equal(steer_count(s), 9);
	assert_int_equal(steer_sync(s, b, 9, &st), 0);
	expect_stats(&st, 0, 0, 9);

	/* the empty set deletes everything */
	assert_int_equal(steer_sync(s, NULL, 0, &st), 0);
	expect_stats(&st, 0, 9, 0);
	assert_int_equal(kernel_count(s), 0);
	assert_int_equal(steer_count(s), 0);
	steer_close(s);
}

/* Random syncs over a universe of keys, checking the reported diff and the
 * kernel map against a model after each one: covers the mirror's
 * incremental removal, compaction and reordering paths. */
#define UNIV 3000

static struct steer_entry univ_entry(size_t id, uint32_t app)
{
	uint16_t port = (uint16_t)(1000 + id);

	switch (id % 3) {
	case 0:
		return entry_any(port, app, PANDIT_SOCK_TCP);
	case 1:
		return entry_pfx(port, "10.7.0.0", 16, app, PANDIT_SOCK_TCP);
	default:
		return entry_pfx(port, "fd00:7::", 64, app, PANDIT_SOCK_TCP);
	}
}

static void sync_random(bool no_batch, int rounds)
{
	static struct steer_entry want[UNIV];
	static int64_t model[UNIV];	/* app id in the kernel, -1 absent */
	static int64_t next[UNIV];
	struct steer_sync_stats st;
	struct steer *s;

	assert_int_equal(steer_open_flags(-1, STEER_NO_ATTACH, &s), 0);
	if (no_batch)
		steer_test_no_batch(s);
	for (size_t i = 0; i < UNIV; i++)
		model[i] = -1;
	srand(12345);
	for (int round = 0; round < rounds; round++) {
		/* keep-probability varies so rounds range from a few to most keys
		 * changing; every 4th round keeps the previous order */
		int keep = rand() % 100, change = rand() % 10;
		size_t n = 0, upd = 0, del = 0, same = 0;
		for (size_t i = 0; i < UNIV; i++) {
			next[i] = -1;
			if (rand() % 100 >= keep && !(model[i] >= 0 && round % 5 == 0))
				continue;
			uint32_t app = model[i] >= 0 && rand() % 10 >= change ? (uint32_t)model[i]
									     : (uint32_t)(rand() % 4);
			next[i] = app;
			want[n++] = univ_entry(i, app);
		}
		if (round % 4)
			for (size_t i = n; i > 1; i--) {
				size_t j = (size_t)rand() % i;
				struct steer_entry t = want[i - 1];
				want[i - 1] = want[j];
				want[j] = t;
			}
		for (size_t i = 0; i < UNIV; i++) {
			if (next[i] < 0 && model[i] >= 0)
				del++;
			else if (next[i] >= 0 && next[i] == model[i])
				same++;
			else if (next[i] >= 0)
				upd++;
		}
		assert_int_equal(steer_sync(s, want, n, &st), 0);
		expect_stats(&st, upd, del, same);
		assert_int_equal(steer_count(s), n);
		memcpy(model, next, sizeof(model));

		/* the kernel holds exactly the model */
		struct pandit_steer_key k, nk;
		struct pandit_steer_val v;
		size_t seen = 0;
		int fd = steer_rules_fd(s), r = bpf_map_get_next_key(fd, NULL, &nk);
		while (r == 0) {
			k = nk;
			size_t id = (size_t)ntohs(k.port_be) - 1000;
			assert_true(id < UNIV);
			assert_true(model[id] >= 0);
			struct steer_entry e = univ_entry(id, (uint32_t)model[id]);
			assert_memory_equal(&k, &e.key, sizeof(k));
			assert_int_equal(bpf_map_lookup_elem(fd, &k, &v), 0);
			assert_int_equal(v.app_id, (uint32_t)model[id]);
			seen++;
			r = bpf_map_get_next_key(fd, &k, &nk);
		}
		assert_int_equal(seen, n);
	}
	steer_close(s);
}

static void test_sync_random(void **state)
{
	(void)state;
	sync_random(false, 120);
}

/* the per-element path taken when the kernel refuses batch operations */
static void test_sync_random_no_batch(void **state)
{
	(void)state;
	sync_random(true, 30);
}

/* steer_apply: random deltas over the same universe, each checked against
 * a model: written keys (new, changed, unchanged), deleted keys, keys both
 * deleted and written (kept with the new value), deletions of absent keys
 * (ignored) and duplicate deletions. */
static void apply_random(bool no_batch, int rounds)
{
	static struct steer_entry add[UNIV];
	static struct pandit_steer_key del[2 * UNIV];
	static int64_t model[UNIV], next[UNIV];
	struct steer_sync_stats st;
	struct steer *s;

	assert_int_equal(steer_open_flags(-1, STEER_NO_ATTACH, &s), 0);
	if (no_batch)
		steer_test_no_batch(s);
	/* nothing synced yet: the map's content is not known to be the caller's */
	assert_false(steer_in_sync(s));
	assert_int_equal(steer_apply(s, NULL, 0, NULL, 0, &st), -ESTALE);
	assert_int_equal(steer_sync(s, NULL, 0, &st), 0);
	assert_true(steer_in_sync(s));
	for (size_t i = 0; i < UNIV; i++)
		model[i] = -1;
	srand(777);
	size_t live = 0;
	for (int round = 0; round < rounds; round++) {
		int touch = 1 + rand() % (round % 3 ? 5 : 60);	/* % of keys touched */
		size_t na = 0, nd = 0, upd = 0, dels = 0;
		for (size_t i = 0; i < UNIV; i++) {
			next[i] = model[i];
			if (rand() % 100 >= touch)
				continue;
			int what = rand() % 5;
			if (what == 0 || what == 1) {	/* write: new, changed or the same */
				next[i] = rand() % 2 && model[i] >= 0 ? model[i] : rand() % 4;
				add[na++] = univ_entry(i, (uint32_t)next[i]);
			} else if (what == 2) {	/* delete (absent: ignored) */
				next[i] = -1;
				del[nd++] = univ_entry(i, 0).key;
				if (rand() % 4 == 0)
					del[nd++] = univ_entry(i, 0).key;	/* twice */
			} else if (what == 3) {	/* delete and write again: written */
				next[i] = rand() % 4;
				del[nd++] = univ_entry(i, 0).key;
				add[na++] = univ_entry(i, (uint32_t)next[i]);
			}
			if (next[i] >= 0 && next[i] != model[i])
				upd++;
			if (next[i] < 0 && model[i] >= 0)
				dels++;
		}
		size_t n = 0;
		for (size_t i = 0; i < UNIV; i++)
			n += next[i] >= 0;
		assert_int_equal(steer_apply(s, add, na, del, nd, &st), 0);
		expect_stats(&st, upd, dels, n - upd);
		assert_int_equal(steer_count(s), n);
		assert_true(steer_in_sync(s));
		memcpy(model, next, sizeof(model));
		live = n;

		struct pandit_steer_key k, nk;
		struct pandit_steer_val v;
		size_t seen = 0;
		int fd = steer_rules_fd(s), r = bpf_map_get_next_key(fd, NULL, &nk);
		while (r == 0) {
			k = nk;
			size_t id = (size_t)ntohs(k.port_be) - 1000;
			assert_true(id < UNIV);
			assert_true(model[id] >= 0);
			struct steer_entry e = univ_entry(id, (uint32_t)model[id]);
			assert_memory_equal(&k, &e.key, sizeof(k));
			assert_int_equal(bpf_map_lookup_elem(fd, &k, &v), 0);
			assert_int_equal(v.app_id, (uint32_t)model[id]);
			seen++;
			r = bpf_map_get_next_key(fd, &k, &nk);
		}
		assert_int_equal(seen, n);
		/* now and then a full sync in between: apply continues from it */
		if (round % 7 == 6) {
			size_t w = 0;
			for (size_t i = 0; i < UNIV; i++)
				if (model[i] >= 0)
					add[w++] = univ_entry(i, (uint32_t)model[i]);
			assert_int_equal(steer_sync(s, add, w, &st), 0);
			expect_stats(&st, 0, 0, w);
		}
	}

	/* a duplicate among the writes or a bad key: refused, nothing changes */
	add[0] = univ_entry(0, 1);
	add[1] = univ_entry(0, 2);
	assert_int_equal(steer_apply(s, add, 2, NULL, 0, &st), -EINVAL);
	del[0] = univ_entry(1, 0).key;
	del[0].prefixlen = 3;
	assert_int_equal(steer_apply(s, NULL, 0, del, 1, &st), -EINVAL);
	assert_int_equal(steer_count(s), live);
	assert_int_equal(kernel_count(s), live);
	assert_true(steer_in_sync(s));
	steer_close(s);
}

static void test_apply_random(void **state)
{
	(void)state;
	apply_random(false, 60);
}

static void test_apply_random_no_batch(void **state)
{
	(void)state;
	apply_random(true, 15);
}

/* Value of the entry the kernel has for exactly e's key (-1: none). Valid
 * when no shorter prefix covers the key: an LPM lookup answers with the
 * longest prefix up to the key's own length. */
static int64_t kernel_app(struct steer *s, const struct steer_entry *e)
{
	struct pandit_steer_val v;

	if (bpf_map_lookup_elem(steer_rules_fd(s), &e->key, &v))
		return -1;
	return v.app_id;
}

/* A kernel write fails half way (the map is full because of entries that
 * someone else put there): what was applied is undone, the mirror still
 * matches, and the error comes back. */
static void test_sync_rollback(void **state)
{
	(void)state;
	struct steer_entry base[5], want[25];
	struct steer_sync_stats st;
	struct steer *s;
	const size_t room = 10;
	size_t nf = PANDIT_STEER_MAX_ENTRIES - 5 - room;

	assert_int_equal(steer_open_flags(-1, STEER_NO_ATTACH, &s), 0);
	for (int i = 0; i < 5; i++)
		base[i] = entry_any((uint16_t)(100 + i), 1, PANDIT_SOCK_TCP);
	assert_int_equal(steer_sync(s, base, 5, NULL), 0);

	/* foreign entries: exact IPv6 addresses on port 1 */
	struct pandit_steer_key *fk = calloc(nf, sizeof(*fk));
	struct pandit_steer_val *fv = calloc(nf, sizeof(*fv));
	assert_non_null(fk);
	assert_non_null(fv);
	for (size_t i = 0; i < nf; i++) {
		uint8_t a[16] = { 0xfd };
		uint32_t be = htonl((uint32_t)i);
		memcpy(&a[12], &be, 4);
		steer_key_init(&fk[i], 1, a, 128);
	}
	__u32 cnt = (__u32)nf;
	assert_int_equal(bpf_map_update_batch(steer_rules_fd(s), fk, fv, &cnt, NULL), 0);

	/* one change first, then 20 new keys of which only 10 fit */
	memcpy(want, base, sizeof(base));
	want[0].val.app_id = 9;
	for (int i = 0; i < 20; i++)
		want[5 + i] = entry_any((uint16_t)(200 + i), 2, PANDIT_SOCK_TCP);
	assert_int_equal(steer_sync(s, want, 25, &st), -ENOSPC);
	assert_int_equal(steer_count(s), 5);
	assert_int_equal(kernel_app(s, &base[0]), 1);	/* the change was undone */
	for (int i = 0; i < 20; i++)
		assert_int_equal(kernel_app(s, &want[5 + i]), -1);	/* the additions too */

	/* the same through the per-element path */
	steer_test_no_batch(s);
	assert_int_equal(steer_sync(s, want, 25, &st), -ENOSPC);
	assert_int_equal(steer_count(s), 5);
	assert_int_equal(kernel_app(s, &base[0]), 1);
	for (int i = 0; i < 20; i++)
		assert_int_equal(kernel_app(s, &want[5 + i]), -1);

	/* room again: the same sync goes through */
	cnt = (__u32)nf;
	assert_int_equal(bpf_map_delete_batch(steer_rules_fd(s), fk, &cnt, NULL), 0);
	assert_int_equal(steer_sync(s, want, 25, &st), 0);
	expect_stats(&st, 21, 0, 4);
	assert_int_equal(kernel_count(s), 25);
	assert_int_equal(kernel_app(s, &base[0]), 9);
	free(fk);
	free(fv);
	steer_close(s);
}

/* steer_apply failing half way (map full of foreign entries): undone like a
 * sync, and the next apply is refused (-ESTALE) until a sync succeeds. */
static void test_apply_rollback(void **state)
{
	(void)state;
	struct steer_entry base[5], add[20];
	struct pandit_steer_key del[1];
	struct steer_sync_stats st;
	struct steer *s;
	size_t nf = PANDIT_STEER_MAX_ENTRIES - 5 - 10;

	assert_int_equal(steer_open_flags(-1, STEER_NO_ATTACH, &s), 0);
	for (int i = 0; i < 5; i++)
		base[i] = entry_any((uint16_t)(100 + i), 1, PANDIT_SOCK_TCP);
	assert_int_equal(steer_sync(s, base, 5, NULL), 0);
	struct pandit_steer_key *fk = calloc(nf, sizeof(*fk));
	struct pandit_steer_val *fv = calloc(nf, sizeof(*fv));
	assert_non_null(fk);
	assert_non_null(fv);
	for (size_t i = 0; i < nf; i++) {
		uint8_t a[16] = { 0xfd };
		uint32_t be = htonl((uint32_t)i);
		memcpy(&a[12], &be, 4);
		steer_key_init(&fk[i], 1, a, 128);
	}
	__u32 cnt = (__u32)nf;
	assert_int_equal(bpf_map_update_batch(steer_rules_fd(s), fk, fv, &cnt, NULL), 0);

	add[0] = base[0];
	add[0].val.app_id = 9;
	for (int i = 1; i < 20; i++)
		add[i] = entry_any((uint16_t)(200 + i), 2, PANDIT_SOCK_TCP);
	del[0] = base[4].key;
	assert_int_equal(steer_apply(s, add, 20, del, 1, &st), -ENOSPC);
	assert_int_equal(steer_count(s), 5);
	assert_int_equal(kernel_app(s, &base[0]), 1);
	assert_int_equal(kernel_app(s, &base[4]), 1);
	for (int i = 1; i < 20; i++)
		assert_int_equal(kernel_app(s, &add[i]), -1);
	assert_false(steer_in_sync(s));
	assert_int_equal(steer_apply(s, add, 1, NULL, 0, &st), -ESTALE);
	assert_int_equal(kernel_app(s, &base[0]), 1);

	cnt = (__u32)nf;
	assert_int_equal(bpf_map_delete_batch(steer_rules_fd(s), fk, &cnt, NULL), 0);
	assert_int_equal(steer_sync(s, base, 5, &st), 0);
	assert_true(steer_in_sync(s));
	assert_int_equal(steer_apply(s, add, 20, del, 1, &st), 0);
	expect_stats(&st, 20, 1, 3);
	assert_int_equal(kernel_count(s), 23);
	assert_int_equal(kernel_app(s, &base[0]), 9);
	assert_int_equal(kernel_app(s, &base[4]), -1);
	free(fk);
	free(fv);
	steer_close(s);
}

/* A sync from a full map to another full map that shares half its keys
 * must delete before it writes, or the map would overflow in between. */
static void test_sync_full_map(void **state)
{
	(void)state;
	const size_t n = PANDIT_STEER_MAX_ENTRIES;
	struct steer_entry *e = calloc(n, sizeof(*e));
	struct steer_sync_stats st;
	struct steer *s;

	assert_non_null(e);
	assert_int_equal(steer_open_flags(-1, STEER_NO_ATTACH, &s), 0);
	for (size_t i = 0; i < n; i++) {
		uint8_t a[16] = { 0xfd, 0x01 };
		uint32_t be = htonl((uint32_t)i);
		memcpy(&a[12], &be, 4);
		steer_key_init(&e[i].key, 443, a, 128);
		e[i].val = (struct pandit_steer_val){ .app_id = 1, .sock_idx = PANDIT_SOCK_TCP };
	}
	assert_int_equal(steer_sync(s, e, n, &st), 0);
	printf("  sync %zu new entries (full map): %.3f ms\n", n, ms(st.elapsed_ns));
	for (size_t i = 0; i < n / 2; i++)
		e[i].key.addr[1] = 0x02;	/* half the keys replaced */
	assert_int_equal(steer_sync(s, e, n, &st), 0);
	expect_stats(&st, n / 2, n / 2, n / 2);
	printf("  sync replacing half of a full map: %.3f ms\n", ms(st.elapsed_ns));
	assert_int_equal(steer_count(s), n);
	assert_int_equal(kernel_app(s, &e[0]), 1);
	assert_int_equal(steer_sync(s, NULL, 0, &st), 0);
	free(e);
	steer_close(s);
}

static struct steer_entry *big_set(size_t n, uint16_t base, uint32_t app0)
{
	struct steer_entry *e = calloc(n, sizeof(*e));

	assert_non_null(e);
	for (size_t i = 0; i < n; i++)
		e[i] = entry_any((uint16_t)(base + i), app0 + (uint32_t)(i / 4), PANDIT_SOCK_TCP);
	return e;
}

static void test_sync_large(void **state)
{
	(void)state;
	struct steer_sync_stats st;
	struct steer *s;

	assert_int_equal(steer_open_flags(-1, STEER_NO_ATTACH, &s), 0);

	/* 40,000 ports (10,000 apps of 4 ports) from empty */
	struct steer_entry *e = big_set(40000, 20000, 1);
	assert_int_equal(steer_sync(s, e, 40000, &st), 0);
	expect_stats(&st, 40000, 0, 0);
	printf("  sync 40000 new entries: %.3f ms\n", ms(st.elapsed_ns));
	assert_int_equal(kernel_count(s), 40000);

	/* one app changes its 4 ports: 4 deleted, 4 added */
	for (int i = 0; i < 4; i++)
		e[100 + i] = entry_any((uint16_t)(2000 + i), 999999, PANDIT_SOCK_TCP);
	assert_int_equal(steer_sync(s, e, 40000, &st), 0);
	expect_stats(&st, 4, 4, 39996);
	printf("  sync one-app change (4 ports moved) in 40000: %.3f ms\n", ms(st.elapsed_ns));
	assert_true(kernel_has(s, &e[101]));

	/* one entry's value changes */
	e[5].val.app_id = 424242;
	assert_int_equal(steer_sync(s, e, 40000, &st), 0);
	expect_stats(&st, 1, 0, 39999);
	printf("  sync one changed entry in 40000: %.3f ms\n", ms(st.elapsed_ns));
	assert_true(kernel_has(s, &e[5]));

	/* nothing changes */
	assert_int_equal(steer_sync(s, e, 40000, &st), 0);
	expect_stats(&st, 0, 0, 40000);
	printf("  sync no change in 40000: %.3f ms\n", ms(st.elapsed_ns));

	/* the reload case, repeated: one app of 10,000 moves its 4 ports and
	 * back; want is built in config order, so shown as given and shuffled */
	for (int shuffled = 0; shuffled < 2; shuffled++) {
		uint64_t lo = UINT64_MAX, hi = 0, sum = 0;
		if (shuffled) {
			srand(7);
			for (size_t i = 40000 - 1; i > 0; i--) {
				size_t j = (size_t)rand() % (i + 1);
				struct steer_entry t = e[i];
				e[i] = e[j];
				e[j] = t;
			}
		}
		for (int r = 0; r < 20; r++) {
			struct steer_entry *x = &e[(size_t)(r * 1999) % 40000];
			x->key.port_be = htons((uint16_t)(60000 + r + 20 * shuffled));	/* unused ports */
			assert_int_equal(steer_sync(s, e, 40000, &st), 0);
			expect_stats(&st, 1, 1, 39999);
			lo = st.elapsed_ns < lo ? st.elapsed_ns : lo;
			hi = st.elapsed_ns > hi ? st.elapsed_ns : hi;
			sum += st.elapsed_ns;
		}
		printf("  sync one moved port in 40000 (%s want), 20 runs: min %.3f avg %.3f max %.3f ms\n",
		       shuffled ? "shuffled" : "same-order", ms(lo), ms(sum / 20), ms(hi));
	}
	free(e);

	/* every port 1..65535, three prefixes each (any, an IPv4 /24, an IPv6 /64) */
	size_t n = 65535 * 3;
	e = calloc(n, sizeof(*e));
	assert_non_null(e);
	for (size_t p = 1; p <= 65535; p++) {
		e[(p - 1) * 3] = entry_any((uint16_t)p, (uint32_t)p, PANDIT_SOCK_TCP);
		e[(p - 1) * 3 + 1] = entry_pfx((uint16_t)p, "10.20.30.0", 24, (uint32_t)p, PANDIT_SOCK_TCP);
		e[(p - 1) * 3 + 2] = entry_pfx((uint16_t)p, "fd00:1:2:3::", 64, (uint32_t)p, PANDIT_SOCK_TCP);
	}
	assert_int_equal(steer_sync(s, e, n, &st), 0);
	expect_stats(&st, n, 0, 0);	/* the 40000 old keys are all kept, with new values */
	printf("  sync to 65535 ports x 3 prefixes (%zu entries, 40000 of them changed): %.3f ms\n", n,
	       ms(st.elapsed_ns));
	assert_int_equal(steer_count(s), n);
	assert_int_equal(kernel_count(s), n);
	e[12345].val.app_id = 1;
	assert_int_equal(steer_sync(s, e, n, &st), 0);
	expect_stats(&st, 1, 0, n - 1);
	printf("  sync one changed entry in %zu (mirror reordered to want's order): %.3f ms\n", n,
	       ms(st.elapsed_ns));
	e[54321].val.app_id = 1;
	assert_int_equal(steer_sync(s, e, n, &st), 0);
	expect_stats(&st, 1, 0, n - 1);
	printf("  sync one changed entry in %zu (again): %.3f ms\n", n, ms(st.elapsed_ns));

	/* cost of one steering decision with the trie this full (printed only) */
	int l6 = tcp_listener(AF_INET6, 0, false);
	assert_int_equal(steer_set_listener(s, l6), 0);
	const struct fixture probes[] = {
		{ "IPv4, /24 rule", AF_INET, IPPROTO_TCP, "10.20.30.40", 44444, SK_PASS,
		  PANDIT_STEER_ASSIGNED, true },
		{ "IPv6, /64 rule", AF_INET6, IPPROTO_TCP, "fd00:1:2:3::9", 44444, SK_PASS,
		  PANDIT_STEER_ASSIGNED, true },
		{ "IPv4, any-address rule", AF_INET, IPPROTO_TCP, "127.0.0.1", 44444, SK_PASS,
		  PANDIT_STEER_ASSIGNED, true },
	};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		struct bpf_sk_lookup in;
		memset(&in, 0, sizeof(in));
		in.family = (uint32_t)probes[i].family;
		in.protocol = IPPROTO_TCP;
		in.local_port = probes[i].local_port;
		in.remote_port = htons(40000);
		if (in.family == AF_INET)
			inet_pton(AF_INET, probes[i].local_ip, &in.local_ip4);
		else
			inet_pton(AF_INET6, probes[i].local_ip, in.local_ip6);
		LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = &in, .ctx_size_in = sizeof(in),
			    .repeat = 100000);
		assert_int_equal(bpf_prog_test_run_opts(steer_prog_fd(s), &o), 0);
		assert_int_equal(o.retval, SK_PASS);
		printf("  one lookup in %zu entries (%s): %u ns\n", n, probes[i].desc, o.duration);
	}
	close(l6);

	/* more than the map holds is refused up front */
	struct steer_entry *huge = calloc(PANDIT_STEER_MAX_ENTRIES + 1, sizeof(*huge));
	assert_non_null(huge);
	assert_int_equal(steer_sync(s, huge, PANDIT_STEER_MAX_ENTRIES + 1, &st), -E2BIG);
	free(huge);

	assert_int_equal(steer_sync(s, NULL, 0, &st), 0);
	expect_stats(&st, 0, n, 0);
	printf("  sync to empty from %zu: %.3f ms\n", n, ms(st.elapsed_ns));
	free(e);
	steer_close(s);
}

/* --- privileges ---------------------------------------------------------------- */

static int cap_eff_zero(void)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");
	int zero = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "CapEff:", 7) == 0)
			zero = strtoull(line + 7, NULL, 16) == 0;
	fclose(f);
	return zero;
}

/* The child drops to nobody with no capabilities, then syncs. Exit codes
 * tell the parent which step failed. */
static int unprivileged_child(struct steer *s, struct steer_entry *e, size_t n)
{
	struct steer_sync_stats st;
	struct steer_counters c;
	struct steer *s2;

	if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
		return 10;
	/* leaving uid 0 for good clears every capability set */
	if (cap_eff_zero() != 1)
		return 11;
	/* loading is what needs root */
	if (steer_open_flags(-1, STEER_NO_ATTACH, &s2) != -EPERM)
		return 12;
	e[n] = entry_any(4444, 4444, PANDIT_SOCK_TCP);	/* one addition */
	if (steer_sync(s, e + 1, n, &st))	/* e[0]'s port dropped, e[n] added */
		return 13;
	if (st.deleted != 1 || st.updated != 1 || st.unchanged != n - 1)
		return 14;
	if (steer_read_counters(s, &c))
		return 15;
	/* replacing the listener (say, a worker restarted) needs no privilege either */
	int l = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = in6addr_any };
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 16))
		return 16;
	if (steer_set_listener(s, l) || steer_set_listener(s, -1))
		return 17;
	close(l);
	return 0;
}

static void test_sync_without_privileges(void **state)
{
	(void)state;
	struct steer_entry e[33];
	struct steer *s;
	int status;

	assert_int_equal(steer_open_flags(-1, STEER_NO_ATTACH, &s), 0);
	for (int i = 0; i < 32; i++)
		e[i] = entry_any((uint16_t)(6000 + i), (uint32_t)i, PANDIT_SOCK_TCP);
	assert_int_equal(steer_sync(s, e, 32, NULL), 0);

	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(unprivileged_child(s, e, 32));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status))
		fail_msg("unprivileged child failed at step %d", WEXITSTATUS(status));

	/* the child's writes are in the kernel map the parent also holds */
	struct steer_entry added = entry_any(4444, 4444, PANDIT_SOCK_TCP);
	assert_true(kernel_has(s, &added));
	assert_false(kernel_has(s, &e[0]));
	assert_int_equal(kernel_count(s), 32);
	steer_close(s);
}

int main(void)
{
	if (geteuid() != 0) {
		printf("test_steer: skipped: needs root (BPF programs, BPF_PROG_TEST_RUN, network namespaces)\n");
		return 0;
	}
	log_threshold = LOG_WARN;
	log_hook_libbpf();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prog_fixtures),
		cmocka_unit_test(test_prog_fail_closed),
		cmocka_unit_test(test_real_sockets),
		cmocka_unit_test(test_sync_diff),
		cmocka_unit_test(test_sync_random),
		cmocka_unit_test(test_sync_random_no_batch),
		cmocka_unit_test(test_apply_random),
		cmocka_unit_test(test_apply_random_no_batch),
		cmocka_unit_test(test_sync_rollback),
		cmocka_unit_test(test_apply_rollback),
		cmocka_unit_test(test_sync_full_map),
		cmocka_unit_test(test_sync_large),
		cmocka_unit_test(test_sync_without_privileges),
	};
	return cmocka_run_group_tests_name("steer", tests, NULL, NULL);
}
