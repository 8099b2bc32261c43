/* fuzz_foo.c - libFuzzer harness for the Foo parser: one piece vs random chunkings must agree, messages must be well formed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/foo.h"
#include "proto/foo_stats.h"

/* Also drives a foo_conn with the same bytes dealt to both directions and
 * checks that the accounting adds up. */

#include "fuzz_check.h"

#define MAX_MSGS 8192

struct rec {
	enum foo_type type;
	uint64_t seq;
	uint32_t data_len, line_len;
	uint64_t data_hash;	/* of the Data bytes when given, else 0 */
	int has_data;
};

struct sink {
	struct rec r[MAX_MSGS];
	size_t n;
	const char *buf;	/* the buffer being fed, to check Data points inside */
	size_t len;
};

static struct sink whole, split;

/* An independent UTF-8 check by decoding: valid iff every sequence decodes
 * to a scalar value in its shortest form. */
static int utf8_ok(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i], need;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			need = 1; cp = c & 0x1f; min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2; cp = c & 0x0f; min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			need = 3; cp = c & 0x07; min = 0x10000;
		} else {
			return 0;
		}
		if (i + need >= n)
			return 0;
		for (unsigned k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

static uint64_t fnv(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h | 1;
}

static void on_msg(void *arg, const struct foo_msg *m)
{
	struct sink *s = arg;
	check(m->type >= FOO_REQ && m->type <= FOO_NAK);
	check(m->data_len <= m->line_len);
	if (s->n >= MAX_MSGS)
		return;
	struct rec *r = &s->r[s->n++];
	r->type = m->type;
	r->seq = m->seq;
	r->data_len = m->data_len;
	r->line_len = m->line_len;
	r->has_data = m->data != NULL;
	r->data_hash = 0;
	if (m->data && m->data_len) {
		check(m->data >= s->buf && m->data + m->data_len <= s->buf + s->len);
		check(memchr(m->data, '\n', m->data_len) == NULL);
		check(memchr(m->data, '\0', m->data_len) == NULL);
		check(utf8_ok((const unsigned char *)m->data, m->data_len));
		r->data_hash = fnv(m->data, m->data_len);
	}
}

/* The stream dealt line by line to one connection: lines starting with R
 * (REQ) to the client side, others to the server side, one in 16 the other
 * way round, each line in up to two pieces, at growing times. Every reply
 * must be matched or unmatched, every request answered or still pending. */
static void check_conn(const char *in, size_t len, uint32_t max_line, unsigned seed)
{
	static struct foo_app_stats s;
	foo_app_stats_init(&s);
	struct foo_conn *c = foo_conn_new(max_line, seed & 1, &s);
	check(c != NULL);
	uint64_t now = 1000000000ull * 1000;
	size_t at = 0;
	int r = 0, last_dir = 0;
	while (at < len && r == 0) {
		const char *lf = memchr(in + at, '\n', len - at);
		size_t n = lf ? (size_t)(lf - (in + at)) + 1 : len - at;
		seed = seed * 1103515245u + 12345u;
		int dir = (in[at] != 'R') ^ (((seed >> 16) & 15) == 0);
		size_t cut = n > 1 ? ((seed >> 20) % n) : 0;
		now += (seed >> 8) % 5000000;
		if (cut)
			r = foo_conn_data(c, &s, dir, in + at, cut, now);
		if (r == 0)
			r = foo_conn_data(c, &s, dir, in + at + cut, n - cut, now);
		last_dir = dir;
		at += n;
	}
	if (r == 0)
		r = foo_conn_eof(c, &s, last_dir, now);
	if (r == 0)
		r = foo_conn_eof(c, &s, !last_dir, now);
	check((r < 0) == foo_conn_failed(c));
	uint64_t req = stats_get(&s.msg_req), ack = stats_get(&s.msg_ack), nak = stats_get(&s.msg_nak);
	check(stats_get(&s.msg_total) == req + ack + nak);
	uint64_t timed = stats_get(&s.latency.count), unmatched = stats_get(&s.replies_unmatched);
	check(timed + unmatched <= ack + nak);
	check(timed <= req);
	uint64_t pending = foo_conn_pending(c);
	if (!foo_conn_failed(c) && stats_get(&s.requests_untracked) == 0) {
		check(req == pending + timed);
		check(ack + nak == timed + unmatched);
	}
	check(stats_get(&s.noncompliant_client) + stats_get(&s.noncompliant_server) == (r < 0));
	foo_conn_free(c, &s);
	check(stats_get(&s.requests_unanswered) == (r < 0 ? 0 : pending));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	/* first byte: the line limit (0: default), next two: the chunking */
	uint32_t max_line = data[0] ? data[0] : 0;
	unsigned seed = (unsigned)data[1] << 8 | data[2];
	const char *in = (const char *)data + 3;
	size_t len = size - 3;

	struct foo_parser a, b;
	foo_parser_init(&a, max_line);
	whole.n = 0;
	whole.buf = in;
	whole.len = len;
	int ra = foo_feed(&a, in, len, on_msg, &whole);
	size_t fed_msgs = whole.n;
	if (ra == 0) {
		check(a.offset == len);
		ra = foo_finish(&a, on_msg, &whole);
	}
	check(ra == 0 || ra == -1);
	check((ra == 0) == (a.err == FOO_OK));

	/* every LF before the failure (or in all the input) ended a message */
	size_t end = ra ? (size_t)a.err_offset : len;
	check(end <= len);
	size_t lfs = 0;
	for (size_t i = 0; i < end; i++)
		lfs += in[i] == '\n';
	if (whole.n < MAX_MSGS) {
		check(fed_msgs == lfs);
		check(whole.n == lfs || (ra == 0 && whole.n == lfs + 1));
	}

	/* the same stream in random pieces */
	foo_parser_init(&b, max_line);
	split.n = 0;
	int rb = 0;
	size_t at = 0;
	while (at < len && rb == 0) {
		seed = seed * 1103515245u + 12345u;
		size_t n = 1 + (seed >> 16) % 64;
		if (n > len - at)
			n = len - at;
		split.buf = in + at;
		split.len = n;
		rb = foo_feed(&b, in + at, n, on_msg, &split);
		at += n;
	}
	if (rb == 0)
		rb = foo_finish(&b, on_msg, &split);
	check(ra == rb);
	if (ra) {
		check(a.err_offset == b.err_offset);
		check(a.err == b.err || (a.err == FOO_ERR_HTTP && b.err == FOO_ERR_TYPE) ||
		      (a.err == FOO_ERR_TYPE && b.err == FOO_ERR_HTTP));
	}
	check(whole.n == split.n);
	for (size_t i = 0; i < whole.n && i < MAX_MSGS; i++) {
		const struct rec *x = &whole.r[i], *y = &split.r[i];
		check(x->type == y->type && x->seq == y->seq);
		check(x->data_len == y->data_len && x->line_len == y->line_len);
		if (x->has_data && y->has_data)
			check(x->data_hash == y->data_hash);
		check(x->line_len <= (max_line ? max_line : FOO_MAX_LINE_DEFAULT));
	}
	check_conn(in, len, max_line, (unsigned)data[1] << 8 | data[2]);
	return 0;
}
