/* test_foo_frame.c - differential test of the kernel Foo framer (bpf/foo_frame.bpf.h) against the userspace parser (src/proto/foo.c) over real spliced loopback pairs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "sockets.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "kpath/foo_kern.h"
#include "kpath/splice.h"
#include "proto/foo.h"
#include "proto/foo_stats.h"
#include "stats/stats.h"
#include "stats/window.h"

#define APP_ID 9u
#define N_STREAMS_PER_DIR 250
#define N_HANDOVER 60

/* --- helpers ---------------------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nodelay(int fd)
{
	int one = 1;
	assert_int_equal(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
}

/* A connected loopback pair: *out is the connecting end, *in the accepted one. */
static void tcp_pair(int *out, int *in)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 4), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
	*out = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(*out, (struct sockaddr *)&a, sizeof(a)), 0);
	*in = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*in >= 0);
	close(l);
	nodelay(*out);
	nodelay(*in);
}

/* client <-> cli (pandit's client socket), up (pandit's upstream socket) <-> server */
struct world {
	int client, cli, up, server;
	struct kpath_pair pair;
	struct foo_app_stats *app;	/* owns the counters slot */
	uint32_t slot;
	bool unspliced;
};

/* Splices the world's pair framed as Foo, each direction starting from
 * start[dir] (NULL: a fresh parser with max_line), under mode. */
static void world_splice(struct world *w, uint32_t max_line, uint8_t mode,
			 const struct foo_parser *start[2], const struct pandit_foo_track *track,
			 struct foo_pending_seq *pend)
{
	memset(&w->pair, 0, sizeof(w->pair));
	w->unspliced = false;
	w->app = foo_app_stats_new();
	assert_non_null(w->app);
	assert_int_equal(kfoo_claim(w->app, &w->slot), 0);
	assert_true(w->slot != 0);
	struct kfoo_start ks;
	memset(&ks, 0, sizeof(ks));
	for (int d = 0; d < 2; d++) {
		struct foo_parser p;
		foo_parser_init(&p, max_line);
		foo_parser_export(start && start[d] ? start[d] : &p, &ks.dir[d]);
		ks.dir[d].slot = w->slot;
		ks.dir[d].mode = mode;
	}
	if (track)
		ks.track = *track;
	ks.pend = pend;
	enum kpath_fallback why;
	assert_int_equal(kpath_splice(&w->pair, w->cli, w->up, APP_ID, 0, &ks, &why), 0);
}

static void world_open(struct world *w, uint32_t max_line, uint8_t mode,
		       const struct foo_parser *start[2], const struct pandit_foo_track *track,
		       struct foo_pending_seq *pend)
{
	tcp_pair(&w->client, &w->cli);
	tcp_pair(&w->up, &w->server);
	world_splice(w, max_line, mode, start, track, pend);
}

static void world_close(struct world *w)
{
	if (!w->unspliced)
		kpath_unsplice(&w->pair, NULL, NULL);
	kfoo_forget(w->pair.cookie[0]);
	while (kfoo_sweep())
		;
	close(w->client);
	close(w->cli);
	close(w->up);
	close(w->server);
	foo_app_stats_put(w->app);	/* releases the slot */
}

/* The kernel's counts for the world's app, summed over CPUs. */
static void world_counts(struct world *w, struct foo_app_stats *out)
{
	foo_app_stats_init(out);
	kfoo_accumulate(out, w->app, now_ns());
}

/* Takes what is readable on fd now into buf (at most cap - *got). */
static void drain(int fd, char *buf, size_t cap, size_t *got)
{
	while (*got < cap) {
		ssize_t r = recv(fd, buf + *got, cap - *got, MSG_DONTWAIT);
		if (r <= 0)
			break;
		*got += (size_t)r;
	}
}

/* Reads until n bytes are in buf (5 s without progress: stop). */
static void read_upto(int fd, char *buf, size_t n, size_t *got)
{
	while (*got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 5000) != 1)
			return;
		ssize_t r = recv(fd, buf + *got, n - *got, MSG_DONTWAIT);
		if (r <= 0)
			return;
		*got += (size_t)r;
	}
}

/* --- deterministic PRNG (xorshift64*) ---------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

static uint32_t rng_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)((rng_next(s) >> 32) % n);
}

/* --- streams ------------------------------------------------------------------ */

struct stream {
	char *b;
	size_t len, cap;
	/* offsets where a write must start and the next 12 bytes stay in it:
	 * HTTP request lines (the reason HTTP looks ahead in the buffer on one
	 * side and in the skb on the other, both best effort) */
	size_t sticky[64];
	unsigned n_sticky;
};

static void put(struct stream *s, const void *p, size_t n)
{
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2 + 256;
		s->b = realloc(s->b, s->cap);
		assert_non_null(s->b);
	}
	memcpy(s->b + s->len, p, n);
	s->len += n;
}

static void puts_(struct stream *s, const char *str)
{
	put(s, str, strlen(str));
}

static void put_ws(struct stream *s, uint64_t *r)
{
	unsigned n = 1 + rng_below(r, 3);
	for (unsigned i = 0; i < n; i++)
		puts_(s, rng_below(r, 3) ? " " : "\t");
}

static void put_seq(struct stream *s, uint64_t *r)
{
	char buf[48];
	uint64_t v;
	switch (rng_below(r, 6)) {
	case 0: v = rng_below(r, 10); break;
	case 1: v = rng_below(r, 1000); break;
	case 2: v = UINT64_MAX; break;
	default: v = rng_next(r) >> rng_below(r, 64); break;
	}
	int n = snprintf(buf, sizeof(buf), "%" PRIu64, v);
	if (rng_below(r, 5) == 0) {	/* leading zeros, at most 20 digits */
		int pad = (int)rng_below(r, (unsigned)(20 - n) + 1);
		char z[48];
		memset(z, '0', (size_t)pad);
		memcpy(z + pad, buf, (size_t)n + 1);
		memcpy(buf, z, (size_t)(pad + n) + 1);
	}
	puts_(s, buf);
}

/* Valid UTF-8: every length, with the edges of each range. */
static void put_utf8(struct stream *s, uint64_t *r)
{
	static const char *const edges[] = {
		"\xc2\x80", "\xdf\xbf", "\xc3\xa9", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80",
		"\xef\xbf\xbf", "\xe2\x82\xac", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
		"\xf0\x9f\x98\x80", "\xf3\xbf\xbf\xbf",
	};
	uint32_t cp;
	char b[4];
	switch (rng_below(r, 5)) {
	case 0:
		puts_(s, edges[rng_below(r, sizeof(edges) / sizeof(edges[0]))]);
		return;
	case 1:
		cp = 0x80 + rng_below(r, 0x800 - 0x80);
		b[0] = (char)(0xc0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3f));
		put(s, b, 2);
		return;
	case 2:
		do
			cp = 0x800 + rng_below(r, 0x10000 - 0x800);
		while (cp >= 0xd800 && cp <= 0xdfff);
		b[0] = (char)(0xe0 | cp >> 12);
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		put(s, b, 3);
		return;
	case 3:
		cp = 0x10000 + rng_below(r, 0x110000 - 0x10000);
		b[0] = (char)(0xf0 | cp >> 18);
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		put(s, b, 4);
		return;
	default: {
		/* ASCII but LF and NUL: controls, tabs, CR inside Data */
		char c = (char)(1 + rng_below(r, 127));
		if (c == '\n')
			c = '\r';
		put(s, &c, 1);
		return;
	}
	}
}

static void put_data(struct stream *s, uint64_t *r, unsigned maxlen)
{
	unsigned n = rng_below(r, maxlen + 1);
	for (unsigned i = 0; i < n; i++) {
		if (rng_below(r, 4))
			put(s, &"abcdefghijklmnopqrstuvwxyz0123456789 .,:;-_"[rng_below(r, 43)], 1);
		else
			put_utf8(s, r);
	}
}

/* A valid message, the type mostly the direction's own, that fits in
 * max_line. */
static void put_valid(struct stream *s, uint64_t *r, int dir, uint32_t max_line)
{
	static const char *const own[2][2] = { { "REQ", "REQ" }, { "ACK", "NAK" } };
	static const char *const all[3] = { "REQ", "ACK", "NAK" };
	for (int tries = 0;; tries++) {
		size_t start = s->len;
		puts_(s, rng_below(r, 6) ? own[dir][rng_below(r, 2)] : all[rng_below(r, 3)]);
		put_ws(s, r);
		if (tries < 4)
			put_seq(s, r);
		else
			puts_(s, "1");
		switch (tries < 8 ? rng_below(r, 4) : 0) {
		case 0:
			break;
		case 1:
			put_ws(s, r);	/* empty Data */
			break;
		default:
			put_ws(s, r);
			put_data(s, r, max_line > 64 ? 40 : max_line / 3);
			break;
		}
		int crlf = rng_below(r, 3) == 0;
		if (s->len - start + (crlf ? 1 : 0) <= max_line) {
			puts_(s, crlf ? "\r\n" : "\n");
			return;
		}
		s->len = start;	/* too long: again, shorter in the end */
	}
}

/* Something that breaks the grammar (or sits right at its edges). */
static void put_odd(struct stream *s, uint64_t *r, uint32_t max_line)
{
	static const char *const bad_utf8[] = {
		"\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf",
		"\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf",
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80", "\xfe", "\xff",
		"\xe2\x82", "\xf0\x9f\x98", "\xc3", "\xe2\x82" "A", "\xc3\r", "\xf0\x9f" "\xc3\xa9",
	};
#define L(x) { x, sizeof(x) - 1 }
	static const struct {
		const char *b;
		size_t len;
	} lines[] = {
		L("\n"), L("\r\n"), L("REQX 1\n"), L("REQ\n"), L("REQ \n"), L("RE\n"), L("REQ +1\n"),
		L("REQ -1\n"), L("REQ 1x\n"), L("REQ 12\rX\n"), L("ACKNOWLEDGE 1\n"), L("ack 1\n"),
		L("NAK\t\n"), L("NAQ 1\n"), L("REQ 000000000000000000001\n"),
		L("REQ 100000000000000000000\n"), L("REQ 18446744073709551616\n"),
		L("ACK 99999999999999999999\n"), L("NAK 18446744073709551615\n"),
		L("REQ 00000000000000000001 x\n"), L("REQ 1\r\r\n"), L("REQ 1 a\r\rb\r\n"),
		L("REQ 1 \t \r\n"), L("\tREQ 1\n"), L(" REQ 1\n"), L("XYZ\n"),
		L("REQ 1 nul\0here\n"), L("\0"), L("REQ 1\0\n"), L("R\0"), L("REQ\t\0"),
	};
#undef L
	static const char *const http[] = {
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "POST /a HTTP/1.0\r\n", "HEAD / HTTP/1.1\r\n",
		"PUT /x HTTP/1.1\r\n", "DELETE /y HTTP/1.1\r\n", "CONNECT a:1 HTTP/1.1\r\n",
		"OPTIONS * HTTP/1.1\r\n", "TRACE / HTTP/1.1\r\n", "PATCH /p HTTP/1.1\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "GETX\n", "PRI * HTTP/1\n",
	};
	switch (rng_below(r, 5)) {
	case 0:
		puts_(s, rng_below(r, 2) ? "REQ 7 ok" : "ACK 7\t");
		puts_(s, bad_utf8[rng_below(r, sizeof(bad_utf8) / sizeof(bad_utf8[0]))]);
		puts_(s, rng_below(r, 2) ? "\n" : "tail\n");
		return;
	case 1: {
		unsigned i = rng_below(r, sizeof(lines) / sizeof(lines[0]));
		put(s, lines[i].b, lines[i].len);
		return;
	}
	case 2: {
		unsigned i = rng_below(r, sizeof(http) / sizeof(http[0]));
		if (s->n_sticky < sizeof(s->sticky) / sizeof(s->sticky[0]))
			s->sticky[s->n_sticky++] = s->len;
		puts_(s, http[i]);
		return;
	}
	case 3: {
		/* around max_line: a line of exactly max_line bytes before LF
		 * (valid), or one more (too long), CR included */
		unsigned extra = rng_below(r, 3);	/* 0: exact, 1: one over, 2: far over */
		size_t start = s->len;
		puts_(s, rng_below(r, 2) ? "REQ 1 " : "NAK 2 ");
		size_t want = max_line + (extra == 0 ? 0 : extra == 1 ? 1 : 100);
		int crlf = rng_below(r, 2);
		while (s->len - start < want - (crlf ? 1 : 0))
			puts_(s, "x");
		puts_(s, crlf ? "\r\n" : "\n");
		return;
	}
	default: {
		/* a valid line cut in two by an odd byte in Seq or Type */
		static const char *const pieces[] = { "REQ 1", "AC", "NAK  0000", "REQ\t" };
		puts_(s, pieces[rng_below(r, 4)]);
		puts_(s, rng_below(r, 2) ? "\r" : "?");
		puts_(s, "\n");
		return;
	}
	}
}

/* A stream for direction dir: valid messages, perhaps an odd line or two,
 * perhaps ending inside a line. */
static void make_stream(struct stream *s, uint64_t seed, int dir, uint32_t max_line,
			size_t max_len)
{
	uint64_t r = seed * 0x9e3779b97f4a7c15ull + 1;
	memset(s, 0, sizeof(*s));
	unsigned n = 1 + rng_below(&r, 200);
	unsigned odd_at = rng_below(&r, 2) ? rng_below(&r, n + 1) : ~0u;
	unsigned odd2_at = rng_below(&r, 6) == 0 ? rng_below(&r, n + 1) : ~0u;
	for (unsigned i = 0; i < n && s->len < max_len; i++) {
		if (i == odd_at || i == odd2_at)
			put_odd(s, &r, max_line);
		put_valid(s, &r, dir, max_line);
	}
	if (rng_below(&r, 4) == 0) {
		/* ends inside a line: Type, Seq, Data, a UTF-8 sequence or a CR */
		static const char *const tails[] = { "R", "NA", "ACK", "REQ ", "REQ 12", "REQ 12\r",
						     "REQ 1 ", "ACK 5 da", "REQ 5 \xe2\x82", "NAK 5 x\r" };
		puts_(s, tails[rng_below(&r, sizeof(tails) / sizeof(tails[0]))]);
	}
	if (!s->len)
		puts_(s, "REQ 1\n");
}

/* --- the userspace side --------------------------------------------------------- */

struct ucount {
	uint64_t req, ack, nak, wrong;
	int dir;
};

static void ucount_msg(void *arg, const struct foo_msg *m)
{
	struct ucount *u = arg;
	if ((u->dir == PANDIT_SPLICE_C2S) != (m->type == FOO_REQ))
		u->wrong++;
	else if (m->type == FOO_REQ)
		u->req++;
	else if (m->type == FOO_ACK)
		u->ack++;
	else
		u->nak++;
}

/* --- comparing ------------------------------------------------------------------- */

static void hexdump(const char *what, const char *b, size_t n, size_t around)
{
	size_t from = around > 48 ? around - 48 : 0, to = around + 48 < n ? around + 48 : n;
	printf("  %s [%zu..%zu) of %zu:", what, from, to, n);
	for (size_t i = from; i < to; i++)
		printf("%s%02x", i == around ? " >" : " ", (unsigned char)b[i]);
	printf("\n");
}

static void print_parse(const char *who, const struct pandit_foo_parse *k)
{
	printf("  %s: state %u err %u err_offset %" PRIu64 " offset %" PRIu64
	       " line_len %u data_len %u type %u type_pos %u seq %" PRIu64
	       " seq_digits %u utf8 need %u lo %02x hi %02x last_cr %u\n",
	       who, k->state, k->err, (uint64_t)k->err_offset, (uint64_t)k->offset, k->line_len,
	       k->data_len, k->type, k->type_pos, (uint64_t)k->seq, k->seq_digits, k->utf8_need, k->utf8_lo, k->utf8_hi,
	       k->last_cr);
}

/* Does the kernel's final state say what the userspace parser says? */
static bool same_parse(const struct pandit_foo_parse *kern, const struct pandit_foo_parse *user)
{
	if (kern->state != user->state || kern->err != user->err)
		return false;
	if (user->state == PANDIT_FOO_ST_ERR)
		return kern->err_offset == user->err_offset;
	return kern->offset == user->offset && kern->line_len == user->line_len &&
	       kern->data_len == user->data_len && kern->type == user->type &&
	       kern->type_pos == user->type_pos && kern->seq == user->seq &&
	       kern->seq_digits == user->seq_digits && kern->utf8_need == user->utf8_need &&
	       kern->utf8_lo == user->utf8_lo && kern->utf8_hi == user->utf8_hi &&
	       kern->last_cr == user->last_cr && kern->max_line == user->max_line;
}

/* Sends s[from..) from the sending socket in random-sized writes (1 byte to
 * 4 KiB by the seed's mode), reading the other end as it goes; returns the
 * bytes received into got (at most len - from). */
static size_t pump(struct world *w, int dir, const struct stream *s, size_t from, uint64_t seed,
		   char *got)
{
	int tx = dir == PANDIT_SPLICE_C2S ? w->client : w->server;
	int rx = dir == PANDIT_SPLICE_C2S ? w->server : w->client;
	uint64_t r = seed ^ 0x5bd1e995u;
	uint32_t mode = rng_below(&r, 4);
	size_t pos = from, n_got = 0, want = s->len - from;
	unsigned st = 0;
	while (st < s->n_sticky && s->sticky[st] < from)
		st++;
	while (pos < s->len) {
		size_t n;
		switch (mode) {
		case 0: n = 1 + rng_below(&r, 8); break;
		case 1: n = 1 + rng_below(&r, 64); break;
		case 2: n = 1 + rng_below(&r, 4096); break;
		default: n = 1 + rng_below(&r, rng_below(&r, 2) ? 16 : 4096); break;
		}
		while (st < s->n_sticky && s->sticky[st] < pos)
			st++;
		if (st < s->n_sticky) {
			size_t at = s->sticky[st];
			if (at == pos && n < 12)
				n = 12;	/* an HTTP line's first 12 bytes in one write */
			else if (at > pos && at < pos + n)
				n = at - pos;	/* and it starts a write */
		}
		if (n > s->len - pos)
			n = s->len - pos;
		send_all(tx, s->b + pos, n);
		pos += n;
		drain(rx, got, want, &n_got);
	}
	read_upto(rx, got, want, &n_got);
	return n_got;
}

/* One stream through the kernel (lenient) and through foo_feed; returns
 * false (and prints a reproduction) on a disagreement. handover: the
 * userspace parser frames a prefix first and hands its state to the kernel
 * at the splice, as the daemon does. */
static bool differ_one(int dir, uint64_t seed, bool handover, unsigned n_viol[FOO_N_ERR])
{
	uint64_t r = seed * 31 + 7;
	static const uint32_t lines[] = { 32, 32, 64, 4096 };
	uint32_t max_line = lines[rng_below(&r, 4)];
	struct stream s;
	make_stream(&s, seed, dir, max_line, 24000);

	/* userspace: the whole stream at once */
	struct foo_parser up;
	struct ucount uc = { .dir = dir };
	foo_parser_init(&up, max_line);
	foo_feed(&up, s.b, s.len, ucount_msg, &uc);
	struct pandit_foo_parse uk;
	foo_parser_export(&up, &uk);
	if (up.err)
		n_viol[up.err]++;
	else
		n_viol[0]++;

	/* the prefix framed in userspace before the splice (never a violation:
	 * the daemon would not splice then), its messages counted there */
	size_t from = 0;
	struct foo_parser pre;
	struct ucount pre_c = { .dir = dir };
	foo_parser_init(&pre, max_line);
	if (handover) {
		from = rng_below(&r, (uint32_t)s.len);
		if (up.err && from > up.err_offset)
			from = (size_t)up.err_offset;
		foo_feed(&pre, s.b, from, ucount_msg, &pre_c);
		assert_int_equal(pre.err, FOO_OK);
	}
	const struct foo_parser *start[2] = { NULL, NULL };
	start[dir] = &pre;

	struct world w;
	world_open(&w, max_line, PANDIT_FOO_LENIENT, start, NULL, NULL);
	char *got = malloc(s.len + 1);
	assert_non_null(got);
	size_t n_got = pump(&w, dir, &s, from, seed, got);
	/* lenient: every byte arrives, unchanged */
	assert_int_equal(n_got, s.len - from);
	assert_memory_equal(got, s.b + from, n_got);

	if (seed & 1) {
		/* the sender's FIN (an empty skb, dropped) changes nothing: wait
		 * until the daemon's socket reads EOF */
		int tx = dir ? w.server : w.client, mine = dir ? w.up : w.cli;
		char c;
		assert_int_equal(shutdown(tx, SHUT_WR), 0);
		struct pollfd pf = { .fd = mine, .events = POLLIN };
		assert_int_equal(poll(&pf, 1, 5000), 1);
		assert_int_equal(recv(mine, &c, 1, MSG_DONTWAIT), 0);
	}
	struct pandit_splice_val v, other;
	assert_int_equal(kpath_read(&w.pair, dir, &v), 0);
	assert_int_equal(kpath_read(&w.pair, !dir, &other), 0);
	struct foo_app_stats kc;
	world_counts(&w, &kc);
	bool ok = same_parse(&v.foo, &uk);
	/* a violation stops the other direction's framing too */
	bool stop_ok = !up.err || other.foo.stop == 1;
	/* at EOF the daemon takes the state back to finish the last line:
	 * the same ending as the userspace parser's */
	struct foo_parser back;
	struct ucount bc = { .dir = dir }, ec = { .dir = dir };
	foo_parser_init(&back, max_line);
	foo_parser_import(&back, &v.foo);
	int r_back = foo_finish(&back, ucount_msg, &bc), r_user = foo_finish(&up, ucount_msg, &ec);
	if (r_back != r_user || back.err != up.err || back.err_offset != up.err_offset ||
	    memcmp(&bc, &ec, sizeof(bc)) != 0) {
		printf("DISAGREEMENT at EOF: finish %d/%d err %d/%d at %" PRIu64 "/%" PRIu64 "\n",
		       r_back, r_user, back.err, up.err, back.err_offset, up.err_offset);
		ok = false;
	}
	uint64_t kreq = stats_get(&kc.msg_req), kack = stats_get(&kc.msg_ack),
		 knak = stats_get(&kc.msg_nak), kwrong = stats_get(&kc.msg_wrong_direction);
	bool counts_ok = kreq + pre_c.req == uc.req && kack + pre_c.ack == uc.ack &&
			 knak + pre_c.nak == uc.nak && kwrong + pre_c.wrong == uc.wrong;
	/* the kernel's moving windows hold the same messages (all sent within
	 * the last 10 s, in whole buckets) */
	uint64_t t = now_ns();
	double wreq = stats_win_count(&kc.req_win, t, 10 * 1000000000ull),
	       wresp = stats_win_count(&kc.resp_win, t, 10 * 1000000000ull);
	if ((uint64_t)(wreq + 0.5) != kreq || (uint64_t)(wresp + 0.5) != kack + knak) {
		printf("DISAGREEMENT windows: req %.2f of %" PRIu64 ", resp %.2f of %" PRIu64 "\n",
		       wreq, kreq, wresp, kack + knak);
		counts_ok = false;
	}
	if (!ok || !counts_ok || !stop_ok) {
		printf("DISAGREEMENT dir %s seed %" PRIu64 " max_line %u handover at %zu len %zu\n",
		       dir ? "s2c" : "c2s", seed, max_line, from, s.len);
		print_parse("kernel", &v.foo);
		print_parse("user  ", &uk);
		printf("  counts kernel(+prefix) req %" PRIu64 " ack %" PRIu64 " nak %" PRIu64
		       " wrong %" PRIu64 "; user req %" PRIu64 " ack %" PRIu64 " nak %" PRIu64
		       " wrong %" PRIu64 "; other.stop %u\n",
		       kreq + pre_c.req, kack + pre_c.ack, knak + pre_c.nak, kwrong + pre_c.wrong,
		       uc.req, uc.ack, uc.nak, uc.wrong, other.foo.stop);
		size_t at = up.err ? (size_t)up.err_offset : (v.foo.err ? (size_t)v.foo.err_offset
									   : s.len - 1);
		if (at >= s.len)
			at = s.len - 1;
		hexdump("stream", s.b, s.len, at);
	}
	free(got);
	free(s.b);
	world_close(&w);
	return ok && counts_ok && stop_ok;
}

static void run_dir(int dir, unsigned n, bool handover)
{
	unsigned bad = 0, viol = 0, by[FOO_N_ERR] = { 0 };
	for (unsigned i = 0; i < n; i++) {
		uint64_t seed = (uint64_t)(dir + 1) * 100003u + i + (handover ? 50000u : 0u);
		if (!differ_one(dir, seed, handover, by))
			bad++;
	}
	viol = n - by[0];
	printf("test_foo_frame: %s%s: %u streams, %u with a violation (", dir ? "s2c" : "c2s",
	       handover ? " (handover)" : "", n, viol);
	for (unsigned e = 1; e < FOO_N_ERR; e++)
		if (by[e])
			printf(" %s %u", foo_err_name((enum foo_err)e), by[e]);
	printf(" ), %u disagreements\n", bad);
	assert_int_equal(bad, 0);
	/* the generator reaches both outcomes */
	assert_true(viol > 0 && viol < n);
}

static void test_c2s(void **state)
{
	(void)state;
	run_dir(PANDIT_SPLICE_C2S, N_STREAMS_PER_DIR, false);
}

static void test_s2c(void **state)
{
	(void)state;
	run_dir(PANDIT_SPLICE_S2C, N_STREAMS_PER_DIR, false);
}

static void test_handover(void **state)
{
	(void)state;
	run_dir(PANDIT_SPLICE_C2S, N_HANDOVER, true);
	run_dir(PANDIT_SPLICE_S2C, N_HANDOVER, true);
}

/* Hand-picked streams, every reason, each checked the same way as the
 * random ones (one write each, then byte by byte). */
static void test_fixed(void **state)
{
	(void)state;
	static const struct {
		const char *b;
		size_t len;
		uint8_t err;
	} cases[] = {
#define C(s, e) { s, sizeof(s) - 1, e }
		C("REQ 1\nREQ 2 hello\r\nREQ\t3\t \tdata with\ttabs\n", 0),
		C("REQ 18446744073709551615\n", 0),
		C("REQ 00000000000000000042 x\n", 0),
		C("REQ 000000000000000000042\n", PANDIT_FOO_ERR_SEQ),
		C("REQ 18446744073709551616\n", PANDIT_FOO_ERR_SEQ),
		C("REQ 1 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\n", 0),
		C("REQ 1 \xed\xa0\x80\n", PANDIT_FOO_ERR_UTF8),
		C("REQ 1 \xe0\x80\xaf\n", PANDIT_FOO_ERR_UTF8),
		C("REQ 1 \xc0\xaf\n", PANDIT_FOO_ERR_UTF8),
		C("REQ 1 \xf4\x90\x80\x80\n", PANDIT_FOO_ERR_UTF8),
		C("REQ 1 \xe2\x82\n", PANDIT_FOO_ERR_UTF8),
		C("REQ 1 a\0b\n", PANDIT_FOO_ERR_NUL),
		C("REQ 1\n\n", PANDIT_FOO_ERR_EMPTY),
		C("REQ 1\n\r\n", PANDIT_FOO_ERR_TYPE),
		C("GET / HTTP/1.1\r\nHost: a\r\n\r\n", PANDIT_FOO_ERR_HTTP),
		C("REQ 1\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", PANDIT_FOO_ERR_HTTP),
		C("REQ 1 012345678901234567890123456789\n", PANDIT_FOO_ERR_LINE_TOO_LONG),
		C("REQ 1 0123456789012345678901234\r\n", 0),	/* 32 bytes with the CR */
		C("REQ 1 01234567890123456789012345\r\n", PANDIT_FOO_ERR_LINE_TOO_LONG),
		C("REQ 12\rX\n", PANDIT_FOO_ERR_SEQ),
		C("REQX 1\n", PANDIT_FOO_ERR_TYPE),
		C("REQ 1\nREQ 2 partial da", 0),
		C("REQ 1\nREQ 2 \xf0\x9f", 0),
#undef C
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int bytewise = 0; bytewise < 2; bytewise++) {
			struct foo_parser up;
			struct ucount uc = { .dir = PANDIT_SPLICE_C2S };
			foo_parser_init(&up, 32);
			foo_feed(&up, cases[i].b, cases[i].len, ucount_msg, &uc);
			assert_int_equal(up.err, cases[i].err);	/* the case says what it tests */
			/* HTTP is told from the rest of the buffer (userspace) or
			 * of the skb (kernel), best effort: not byte by byte */
			if (bytewise && cases[i].err == PANDIT_FOO_ERR_HTTP)
				continue;
			struct pandit_foo_parse uk;
			foo_parser_export(&up, &uk);
			struct world w;
			world_open(&w, 32, PANDIT_FOO_LENIENT, NULL, NULL, NULL);
			char got[128];
			size_t n_got = 0;
			if (bytewise) {
				for (size_t j = 0; j < cases[i].len; j++) {
					send_all(w.client, cases[i].b + j, 1);
					drain(w.server, got, cases[i].len, &n_got);
				}
			} else {
				send_all(w.client, cases[i].b, cases[i].len);
			}
			read_upto(w.server, got, cases[i].len, &n_got);
			assert_int_equal(n_got, cases[i].len);
			assert_memory_equal(got, cases[i].b, n_got);
			struct pandit_splice_val v;
			assert_int_equal(kpath_read(&w.pair, 0, &v), 0);
			struct foo_app_stats kc;
			world_counts(&w, &kc);
			if (!same_parse(&v.foo, &uk) || stats_get(&kc.msg_req) != uc.req ||
			    stats_get(&kc.msg_wrong_direction) != uc.wrong) {
				printf("DISAGREEMENT fixed case %u (bytewise %d)\n", i, bytewise);
				print_parse("kernel", &v.foo);
				print_parse("user  ", &uk);
				fail();
			}
			world_close(&w);
		}
	}
}

/* Bytes in the client socket's receive queue at the splice (the daemon had
 * not read them) are framed by the program like the later ones: with a
 * read right after the splice, or carried along by the next arrival. */
static void test_queued_at_splice(void **state)
{
	(void)state;
	static const struct {
		const char *pre, *post;
	} cases[] = {
		{ "REQ 1 early\nREQ 2 pa", "rt\nREQ 3\n" },
		{ "REQ 1 early\nREQ 2 \xe2\x82", "\xac\nACK 3\nREQ 4 x" },
		{ "REQ 1 early\nREQ 2 pa", "rt\nREQ 3 \xed\xa0\x80\nREQ 5\n" },
		{ "REQ 1 early\n\n", "REQ 3\n" },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int with_read = 0; with_read < 2; with_read++) {
			const char *pre = cases[i].pre, *post = cases[i].post;
			size_t lpre = strlen(pre), lpost = strlen(post);
			char all[128], got[128], c;
			memcpy(all, pre, lpre);
			memcpy(all + lpre, post, lpost);
			struct world w;
			tcp_pair(&w.client, &w.cli);
			tcp_pair(&w.up, &w.server);
			send_all(w.client, pre, lpre);
			usleep(20000);	/* in cli's receive queue before the splice */
			world_splice(&w, 64, PANDIT_FOO_LENIENT, NULL, NULL, NULL);
			if (with_read)
				assert_int_equal(recv(w.cli, &c, 1, MSG_DONTWAIT), -1);
			send_all(w.client, post, lpost);
			size_t n = 0;
			read_upto(w.server, got, lpre + lpost, &n);
			assert_int_equal(n, lpre + lpost);
			assert_memory_equal(got, all, n);
			struct foo_parser up;
			struct ucount uc = { .dir = PANDIT_SPLICE_C2S };
			foo_parser_init(&up, 64);
			foo_feed(&up, all, lpre + lpost, ucount_msg, &uc);
			struct pandit_foo_parse uk;
			foo_parser_export(&up, &uk);
			struct pandit_splice_val v;
			assert_int_equal(kpath_read(&w.pair, 0, &v), 0);
			struct foo_app_stats kc;
			world_counts(&w, &kc);
			if (!same_parse(&v.foo, &uk) || stats_get(&kc.msg_req) != uc.req ||
			    stats_get(&kc.msg_wrong_direction) != uc.wrong) {
				printf("DISAGREEMENT queued case %u (read %d): req %" PRIu64 "/%" PRIu64 "\n",
				       i, with_read, stats_get(&kc.msg_req), uc.req);
				print_parse("kernel", &v.foo);
				print_parse("user  ", &uk);
				fail();
			}
			world_close(&w);
		}
	}
}

/* --- strict: the violating skb and every later one are dropped ------------------- */

static void strict_case(const char *good, const char *bad, size_t bad_len, uint8_t reason,
			int dir)
{
	struct world w;
	world_open(&w, 64, PANDIT_FOO_STRICT, NULL, NULL, NULL);
	int tx = dir ? w.server : w.client, rx = dir ? w.client : w.server;
	int back_tx = dir ? w.client : w.server, back_rx = dir ? w.server : w.client;
	size_t glen = strlen(good), n_got = 0;
	char got[256];
	send_all(tx, good, glen);
	read_upto(rx, got, glen, &n_got);
	assert_int_equal(n_got, glen);
	assert_memory_equal(got, good, glen);
	/* the violating skb: whatever it holds before the violation is lost */
	send_all(tx, bad, bad_len);
	/* the state says so once the program has run; wait for it */
	struct pandit_splice_val v, other;
	for (int i = 0; i < 500; i++) {
		assert_int_equal(kpath_read(&w.pair, dir, &v), 0);
		if (v.foo.state == PANDIT_FOO_ST_ERR)
			break;
		usleep(1000);
	}
	send_all(tx, "REQ 99 after\n", 13);
	send_all(back_tx, "ACK 1\n", 6);	/* the other direction is over too */
	nothing_within(rx, 100);
	nothing_within(back_rx, 20);

	/* userspace says the same */
	struct foo_parser up;
	struct ucount uc = { .dir = dir };
	foo_parser_init(&up, 64);
	foo_feed(&up, good, glen, ucount_msg, &uc);
	assert_int_equal(foo_feed(&up, bad, bad_len, ucount_msg, &uc), -1);
	assert_int_equal(kpath_read(&w.pair, dir, &v), 0);
	assert_int_equal(kpath_read(&w.pair, !dir, &other), 0);
	assert_int_equal(up.err, reason);
	assert_int_equal(v.foo.state, PANDIT_FOO_ST_ERR);
	assert_int_equal(v.foo.err, reason);
	assert_int_equal(v.foo.err_offset, up.err_offset);
	assert_int_equal(other.foo.stop, 1);
	/* messages completed in the violating skb count, as in userspace */
	struct foo_app_stats kc;
	world_counts(&w, &kc);
	assert_int_equal(stats_get(&kc.msg_req), uc.req);
	assert_int_equal(stats_get(&kc.msg_ack) + stats_get(&kc.msg_nak), uc.ack + uc.nak);
	assert_int_equal(stats_get(&kc.msg_wrong_direction), uc.wrong);
	world_close(&w);
}

static void test_strict(void **state)
{
	(void)state;
	uint64_t o0[PANDIT_SPLICE_STAT_MAX], o1[PANDIT_SPLICE_STAT_MAX];
	assert_int_equal(kpath_read_outcomes(o0), 0);
#define S(g, b, e, d) strict_case(g, b, sizeof(b) - 1, e, d)
	S("REQ 1 a\nREQ 2 b\n", "REQ 3 ok\nGARBAGE\n", PANDIT_FOO_ERR_TYPE, 0);
	S("REQ 1 a\n", "REQ 3 ok\nREQ 4 \xed\xa0\x80\n", PANDIT_FOO_ERR_UTF8, 0);
	S("REQ 1 a\n", "REQ 5 x\0y\n", PANDIT_FOO_ERR_NUL, 0);
	S("REQ 1 a\n", "REQ 5 x\nGET / HTTP/1.1\r\n\r\n", PANDIT_FOO_ERR_HTTP, 0);
	S("REQ 1 a\n", "\n", PANDIT_FOO_ERR_EMPTY, 0);
	S("REQ 1 a\n", "REQ 1 0123456789012345678901234567890123456789012345678901234567890123\n",
	  PANDIT_FOO_ERR_LINE_TOO_LONG, 0);
	S("ACK 1\nNAK 2 no\n", "ACK 3\nACK 123456789012345678901\n", PANDIT_FOO_ERR_SEQ, 1);
	S("ACK 1\n", "REQ 1\nNAK x\n", PANDIT_FOO_ERR_SEQ, 1);
#undef S
	assert_int_equal(kpath_read_outcomes(o1), 0);
	assert_true(o1[PANDIT_SPLICE_FOO_VIOLATION] - o0[PANDIT_SPLICE_FOO_VIOLATION] >= 8);
	assert_true(o1[PANDIT_SPLICE_FOO_DROPPED] - o0[PANDIT_SPLICE_FOO_DROPPED] >= 16);
	assert_int_equal(o1[PANDIT_SPLICE_FOO_NO_COUNTERS], o0[PANDIT_SPLICE_FOO_NO_COUNTERS]);
}

/* --- Seq matching ------------------------------------------------------------------- */

/* Rounds of REQs from the client, then replies from the server, each round
 * delivered before the next; the userspace foo_conn fed the same bytes in
 * the same order is the reference. */
static void seq_scenario(uint64_t seed, unsigned rounds, unsigned big_round)
{
	uint64_t r = seed;
	struct world w;
	world_open(&w, 0, PANDIT_FOO_LENIENT, NULL, NULL, NULL);
	struct foo_app_stats *us = foo_app_stats_new();
	assert_non_null(us);
	struct foo_conn *uc = foo_conn_new(0, false, us);
	assert_non_null(uc);
	size_t cap = 1 << 20;
	char *buf = malloc(cap), *got = malloc(cap);
	assert_non_null(buf);
	assert_non_null(got);
	uint64_t reqs = 0, replies = 0;
	for (unsigned round = 0; round < rounds; round++) {
		for (int dir = 0; dir < 2; dir++) {
			size_t len = 0;
			unsigned n = round == big_round && dir == 0 ? PANDIT_FOO_TRACK_MAX + 50
								      : 1 + rng_below(&r, 40);
			for (unsigned i = 0; i < n; i++) {
				/* small Seq range: duplicates and unmatched replies happen */
				uint64_t seq = round == big_round && dir == 0 ? 1000 + i
									      : rng_below(&r, 60);
				if (dir == 1 && rng_below(&r, 8) == 0)
					seq = 1000 + rng_below(&r, PANDIT_FOO_TRACK_MAX + 100);
				const char *t = dir == 0 ? "REQ" : rng_below(&r, 2) ? "ACK" : "NAK";
				if (rng_below(&r, 50) == 0)	/* wrong direction now and then */
					t = dir == 0 ? "ACK" : "REQ";
				len += (size_t)snprintf(buf + len, cap - len, "%s %" PRIu64 " d\n", t,
							seq);
				if (dir == 0 && t[0] == 'R')
					reqs++;
				else if (dir == 1 && t[0] != 'R')
					replies++;
			}
			int tx = dir ? w.server : w.client, rx = dir ? w.client : w.server;
			size_t pos = 0, n_got = 0;
			while (pos < len) {
				size_t k = 1 + rng_below(&r, 4096);
				if (k > len - pos)
					k = len - pos;
				send_all(tx, buf + pos, k);
				pos += k;
				drain(rx, got, len, &n_got);
			}
			read_upto(rx, got, len, &n_got);
			assert_int_equal(n_got, len);
			assert_int_equal(foo_conn_data(uc, us, dir, buf, len, now_ns()), 0);
		}
	}
	struct foo_app_stats kc;
	world_counts(&w, &kc);
	struct pandit_foo_track t;
	kfoo_user_totals(w.pair.cookie[0], &t);
	static struct foo_pending_seq pend[2 * PANDIT_FOO_TRACK_MAX];
	uint64_t u_pending, u_untracked;
	size_t u_used = foo_conn_export_pending(uc, pend, sizeof(pend) / sizeof(pend[0]), &u_pending,
						&u_untracked);
	printf("test_foo_frame: seq seed %" PRIu64 ": %" PRIu64 " REQ, %" PRIu64
	       " replies; kernel lat %" PRIu64 " dup %" PRIu64 " unmatched %" PRIu64
	       " untracked %" PRIu64 " track used %llu pending %llu untracked %llu; user lat %"
	       PRIu64 " dup %" PRIu64 " unmatched %" PRIu64 " untracked %" PRIu64
	       " used %zu pending %" PRIu64 " untracked %" PRIu64 "\n",
	       seed, reqs, replies, stats_get(&kc.latency.count), stats_get(&kc.requests_duplicate),
	       stats_get(&kc.replies_unmatched), stats_get(&kc.requests_untracked),
	       (unsigned long long)t.used, (unsigned long long)t.pending,
	       (unsigned long long)t.untracked, stats_get(&us->latency.count),
	       stats_get(&us->requests_duplicate), stats_get(&us->replies_unmatched),
	       stats_get(&us->requests_untracked), u_used, u_pending, u_untracked);
	assert_int_equal(stats_get(&kc.msg_req), stats_get(&us->msg_req));
	assert_int_equal(stats_get(&kc.msg_ack), stats_get(&us->msg_ack));
	assert_int_equal(stats_get(&kc.msg_nak), stats_get(&us->msg_nak));
	assert_int_equal(stats_get(&kc.msg_wrong_direction), stats_get(&us->msg_wrong_direction));
	assert_int_equal(stats_get(&kc.latency.count), stats_get(&us->latency.count));
	uint64_t in_buckets = 0;
	for (unsigned b = 0; b <= STATS_HIST_NBOUNDS; b++)
		in_buckets += stats_get(&kc.latency.buckets[b]);
	assert_int_equal(in_buckets, stats_get(&kc.latency.count));
	assert_int_equal(stats_get(&kc.requests_duplicate), stats_get(&us->requests_duplicate));
	assert_int_equal(stats_get(&kc.replies_unmatched), stats_get(&us->replies_unmatched));
	assert_int_equal(stats_get(&kc.requests_untracked), stats_get(&us->requests_untracked));
	assert_int_equal(t.used, u_used);
	assert_int_equal(t.pending, u_pending);
	assert_int_equal(t.untracked, u_untracked);
	/* the scenario reaches every rule */
	assert_true(stats_get(&kc.latency.count) > 0);
	assert_true(stats_get(&kc.requests_duplicate) > 0);
	assert_true(stats_get(&kc.replies_unmatched) > 0);
	if (big_round < rounds)
		assert_true(stats_get(&kc.requests_untracked) > 0);
	/* what the connection leaves pending at the close: the same as userspace */
	struct pandit_foo_track fin;
	kpath_unsplice(&w.pair, NULL, &fin);
	w.unspliced = true;
	assert_int_equal(fin.used, u_used);
	assert_int_equal(fin.pending + fin.untracked, foo_conn_pending(uc));
	foo_conn_free(uc, us);
	foo_app_stats_put(us);
	free(buf);
	free(got);
	world_close(&w);
}

static void test_seq_matching(void **state)
{
	(void)state;
	seq_scenario(11, 12, ~0u);
	seq_scenario(12, 6, 2);	/* one round over the per-connection table */
}

/* Seq matching starting from what the daemon hands over: pending requests
 * taken out of a userspace foo_conn at the splice (kfoo_start.track/pend). */
static void test_seq_handover(void **state)
{
	(void)state;
	/* the daemon's connection before the splice */
	struct foo_app_stats *us = foo_app_stats_new();
	struct foo_conn *uc = foo_conn_new(0, false, us);
	assert_non_null(uc);
	const char *before = "REQ 1\nREQ 2\nREQ 2\nREQ 3\n";
	assert_int_equal(foo_conn_data(uc, us, 0, before, strlen(before), now_ns()), 0);
	struct foo_pending_seq pend[8];
	struct pandit_foo_track tr = { 0 };
	uint64_t p_pending, p_untracked;
	tr.used = foo_conn_export_pending(uc, pend, 8, &p_pending, &p_untracked);
	tr.pending = p_pending;
	tr.untracked = p_untracked;
	assert_int_equal(tr.used, 3);
	assert_int_equal(tr.pending, 4);
	struct world w;
	world_open(&w, 0, PANDIT_FOO_LENIENT, NULL, &tr, pend);
	/* then in the kernel */
	const char *c2s = "REQ 4\nREQ 1\n", *s2c = "ACK 2\nACK 2\nNAK 1\nACK 9\nACK 4\nACK 2\n";
	char got[128];
	size_t n = 0;
	send_all(w.client, c2s, strlen(c2s));
	read_upto(w.server, got, strlen(c2s), &n);
	assert_int_equal(n, strlen(c2s));
	n = 0;
	send_all(w.server, s2c, strlen(s2c));
	read_upto(w.client, got, strlen(s2c), &n);
	assert_int_equal(n, strlen(s2c));
	/* reference: one userspace connection with the whole history */
	struct foo_app_stats *ref = foo_app_stats_new();
	struct foo_conn *rc = foo_conn_new(0, false, ref);
	assert_non_null(rc);
	assert_int_equal(foo_conn_data(rc, ref, 0, before, strlen(before), now_ns()), 0);
	assert_int_equal(foo_conn_data(rc, ref, 0, c2s, strlen(c2s), now_ns()), 0);
	assert_int_equal(foo_conn_data(rc, ref, 1, s2c, strlen(s2c), now_ns()), 0);
	struct foo_app_stats kc;
	world_counts(&w, &kc);
	/* kernel + what userspace counted before the splice = the reference */
	assert_int_equal(stats_get(&kc.latency.count) + stats_get(&us->latency.count),
			 stats_get(&ref->latency.count));
	assert_int_equal(stats_get(&kc.latency.count), 4);
	assert_int_equal(stats_get(&kc.requests_duplicate) + stats_get(&us->requests_duplicate),
			 stats_get(&ref->requests_duplicate));
	assert_int_equal(stats_get(&kc.replies_unmatched) + stats_get(&us->replies_unmatched),
			 stats_get(&ref->replies_unmatched));
	assert_int_equal(stats_get(&kc.replies_unmatched), 2);
	struct pandit_foo_track t;
	kfoo_user_totals(w.pair.cookie[0], &t);
	struct foo_pending_seq rp[8];
	uint64_t rpend, runtr;
	size_t rused = foo_conn_export_pending(rc, rp, 8, &rpend, &runtr);
	assert_int_equal(t.used, rused);
	assert_int_equal(t.pending, rpend);
	assert_int_equal(t.untracked, runtr);
	foo_conn_free(uc, NULL);
	foo_conn_free(rc, NULL);
	foo_app_stats_put(us);
	foo_app_stats_put(ref);
	world_close(&w);
}

/* --- units ---------------------------------------------------------------------------- */

static void test_lat_bounds(void **state)
{
	(void)state;
	static const uint64_t k[] = PANDIT_FOO_LAT_BOUNDS_US, u[] = STATS_HIST_BOUNDS_US;
	assert_int_equal(sizeof(k) / sizeof(k[0]), PANDIT_FOO_LAT_NBOUNDS);
	assert_int_equal(sizeof(u) / sizeof(u[0]), STATS_HIST_NBOUNDS);
	for (unsigned i = 0; i < PANDIT_FOO_LAT_NBOUNDS; i++)
		assert_int_equal(k[i], u[i]);
}

/* export then import gives the parser back, field by field, for states the
 * parser reaches (fed random prefixes) and for a failed one. */
static void test_export_import(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 300; seed++) {
		uint64_t r = seed;
		uint32_t max_line = rng_below(&r, 2) ? 32 : 4096;
		struct stream s;
		make_stream(&s, seed + 7000, (int)(seed & 1), max_line, 4000);
		struct foo_parser p, q;
		foo_parser_init(&p, max_line);
		foo_feed(&p, s.b, rng_below(&r, (uint32_t)s.len + 1), NULL, NULL);
		struct pandit_foo_parse k, k2;
		memset(&k, 0xa5, sizeof(k));
		foo_parser_export(&p, &k);
		foo_parser_init(&q, max_line);
		q.msgs = p.msgs;	/* not part of the kernel's state */
		foo_parser_import(&q, &k);
		assert_int_equal(q.max_line, p.max_line);
		assert_int_equal(q.line_len, p.line_len);
		assert_int_equal(q.data_len, p.data_len);
		assert_int_equal(q.state, p.state);
		assert_int_equal(q.type, p.type);
		assert_int_equal(q.type_pos, p.type_pos);
		assert_int_equal(q.seq_digits, p.seq_digits);
		assert_int_equal(q.utf8_need, p.utf8_need);
		assert_int_equal(q.utf8_lo, p.utf8_lo);
		assert_int_equal(q.utf8_hi, p.utf8_hi);
		assert_int_equal(q.last_cr, p.last_cr);
		assert_int_equal(q.seq, p.seq);
		assert_int_equal(q.offset, p.offset);
		assert_int_equal(q.err, p.err);
		assert_int_equal(q.err_offset, p.err_offset);
		assert_int_equal(k.stop, 0);
		for (unsigned i = 0; i < sizeof(k.pad); i++)
			assert_int_equal(k.pad[i], 0);
		/* and back: the same kernel state (slot, mode: the caller's) */
		memset(&k2, 0, sizeof(k2));
		foo_parser_export(&q, &k2);
		k2.slot = k.slot;
		k2.mode = k.mode;
		assert_memory_equal(&k, &k2, sizeof(k));
		/* the rest of the stream goes on the same from either */
		size_t off = (size_t)p.offset;
		struct ucount a = { 0 }, b = { 0 };
		foo_feed(&p, s.b + off, s.len - off, ucount_msg, &a);
		foo_feed(&q, s.b + off, s.len - off, ucount_msg, &b);
		assert_int_equal(p.err, q.err);
		assert_int_equal(p.err_offset, q.err_offset);
		assert_int_equal(p.state, q.state);
		assert_memory_equal(&a, &b, sizeof(a));
		free(s.b);
	}
}

static int setup(void **state)
{
	(void)state;
	fresh_netns();
	return kpath_open(1, 1u << 20) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	kpath_close();
	return 0;
}

int main(void)
{
	if (geteuid() != 0) {
		printf("test_foo_frame: skipped: needs root (BPF programs, network namespaces)\n");
		return 0;
	}
	log_threshold = LOG_WARN;
	log_hook_libbpf();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lat_bounds),
		cmocka_unit_test(test_export_import),
		cmocka_unit_test(test_fixed),
		cmocka_unit_test(test_c2s),
		cmocka_unit_test(test_s2c),
		cmocka_unit_test(test_handover),
		cmocka_unit_test(test_queued_at_splice),
		cmocka_unit_test(test_strict),
		cmocka_unit_test(test_seq_matching),
		cmocka_unit_test(test_seq_handover),
	};
	return cmocka_run_group_tests_name("foo_frame", tests, setup, teardown);
}
