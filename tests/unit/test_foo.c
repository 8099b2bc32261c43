/* test_foo.c - Foo parser: tables of valid and hostile lines, every chunking, pipelining, EOF, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>

#include "proto/foo.h"
#include "proto/foo_stats.h"

/* --- collecting messages ------------------------------------------------------ */

#define MAX_MSGS 4096

struct rec {
	enum foo_type type;
	uint64_t seq;
	uint32_t data_len, line_len;
	bool has_data;		/* the data pointer was given */
	char data[64];		/* its first bytes */
};

struct sink {
	struct rec r[MAX_MSGS];
	size_t n;
};

static void on_msg(void *arg, const struct foo_msg *m)
{
	struct sink *s = arg;
	assert_true(s->n < MAX_MSGS);
	struct rec *r = &s->r[s->n++];
	memset(r, 0, sizeof(*r));
	r->type = m->type;
	r->seq = m->seq;
	r->data_len = m->data_len;
	r->line_len = m->line_len;
	if (m->data) {
		r->has_data = true;
		memcpy(r->data, m->data, m->data_len < sizeof(r->data) - 1 ? m->data_len
									   : sizeof(r->data) - 1);
	}
}

/* Feeds s whole then finishes; returns the last result. */
static int parse_all(const char *s, size_t len, uint32_t max_line, struct sink *out,
		     struct foo_parser *pp)
{
	struct foo_parser p;
	foo_parser_init(&p, max_line);
	out->n = 0;
	int r = foo_feed(&p, s, len, on_msg, out);
	if (r == 0)
		r = foo_finish(&p, on_msg, out);
	if (pp)
		*pp = p;
	return r;
}

/* Feeds s in pieces cut at the given offsets (ascending), then finishes. */
static int parse_cut(const char *s, size_t len, const size_t *cuts, size_t n_cuts,
		     uint32_t max_line, struct sink *out, struct foo_parser *pp)
{
	struct foo_parser p;
	foo_parser_init(&p, max_line);
	out->n = 0;
	size_t at = 0;
	int r = 0;
	for (size_t i = 0; i <= n_cuts && r == 0; i++) {
		size_t end = i < n_cuts ? cuts[i] : len;
		r = foo_feed(&p, s + at, end - at, on_msg, out);
		at = end;
	}
	if (r == 0)
		r = foo_finish(&p, on_msg, out);
	if (pp)
		*pp = p;
	return r;
}

static void assert_same_msgs(const struct sink *a, const struct sink *b)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		assert_int_equal(a->r[i].type, b->r[i].type);
		assert_true(a->r[i].seq == b->r[i].seq);
		assert_int_equal(a->r[i].data_len, b->r[i].data_len);
		assert_int_equal(a->r[i].line_len, b->r[i].line_len);
		if (a->r[i].has_data && b->r[i].has_data)
			assert_memory_equal(a->r[i].data, b->r[i].data, sizeof(a->r[i].data));
	}
}

/* --- valid lines ---------------------------------------------------------------- */

struct valid_case {
	const char *in;
	enum foo_type type;
	uint64_t seq;
	const char *data;	/* expected Data */
};

static const struct valid_case valid[] = {
	{ "REQ 1 Hey\n", FOO_REQ, 1, "Hey" },
	{ "ACK 1 Hello\n", FOO_ACK, 1, "Hello" },
	{ "REQ 2 Hey there\n", FOO_REQ, 2, "Hey there" },
	{ "ACK 2\n", FOO_ACK, 2, "" },
	{ "NAK 5 Stop it\n", FOO_NAK, 5, "Stop it" },
	{ "NAK 6 Stop doing that\n", FOO_NAK, 6, "Stop doing that" },
	{ "REQ 0\n", FOO_REQ, 0, "" },
	{ "REQ\t7\tx\n", FOO_REQ, 7, "x" },
	{ "REQ  \t 8 \t  spaced  out \n", FOO_REQ, 8, "spaced  out " },
	{ "REQ 9 \n", FOO_REQ, 9, "" },			/* whitespace, empty Data */
	{ "REQ 10\r\n", FOO_REQ, 10, "" },		/* CRLF */
	{ "REQ 11 telnet\r\n", FOO_REQ, 11, "telnet" },
	{ "REQ 12 a\rb\n", FOO_REQ, 12, "a\rb" },	/* inner CR is Data */
	{ "REQ 13 x\r\r\n", FOO_REQ, 13, "x\r" },	/* only the last CR goes */
	{ "REQ 14 \r\n", FOO_REQ, 14, "" },
	{ "REQ 007 bond\n", FOO_REQ, 7, "bond" },	/* leading zeros */
	{ "REQ 18446744073709551615 max\n", FOO_REQ, UINT64_MAX, "max" },
	{ "REQ 00000000000000000001\n", FOO_REQ, 1, "" },	/* 20 digits */
	{ "REQ 15 h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\n", FOO_REQ, 15,
	  "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80" },
	{ "REQ 16 \xed\x9f\xbf \xef\xbf\xbf \xf4\x8f\xbf\xbf\n", FOO_REQ, 16,
	  "\xed\x9f\xbf \xef\xbf\xbf \xf4\x8f\xbf\xbf" },	/* U+D7FF, U+FFFF, U+10FFFF */
	{ "REQ 17 tab\tand \x01 control\n", FOO_REQ, 17, "tab\tand \x01 control" },
	{ "ACK 18 REQ 19 not a message\n", FOO_ACK, 18, "REQ 19 not a message" },
	/* without LF: only through foo_finish */
	{ "REQ 20 last", FOO_REQ, 20, "last" },
	{ "ACK 21", FOO_ACK, 21, "" },
	{ "NAK 22 ", FOO_NAK, 22, "" },
	{ "REQ 23\r", FOO_REQ, 23, "" },
	{ "REQ 24 cr\r", FOO_REQ, 24, "cr" },
};

static void test_valid_lines(void **state)
{
	(void)state;
	struct sink *s = calloc(2, sizeof(*s));
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		const struct valid_case *c = &valid[i];
		size_t len = strlen(c->in);
		bool has_lf = c->in[len - 1] == '\n';
		struct foo_parser p;
		foo_parser_init(&p, 0);
		s[0].n = 0;
		assert_int_equal(foo_feed(&p, c->in, len, on_msg, &s[0]), 0);
		assert_int_equal(s[0].n, has_lf ? 1 : 0);
		assert_int_equal(foo_parser_idle(&p), has_lf);
		assert_int_equal(foo_finish(&p, on_msg, &s[0]), 0);
		assert_int_equal(s[0].n, 1);
		const struct rec *r = &s[0].r[0];
		if (r->type != c->type || r->seq != c->seq || r->data_len != strlen(c->data))
			fail_msg("case %zu (%s): type %d seq %llu data_len %u", i, c->in, r->type,
				 (unsigned long long)r->seq, r->data_len);
		assert_int_equal(r->line_len, len - has_lf);
		/* whole in one buffer (or empty): Data is given and right */
		if (has_lf || r->data_len == 0) {
			assert_true(r->has_data);
			assert_memory_equal(r->data, c->data, strlen(c->data));
		}
		/* every cut in two gives the same message */
		for (size_t cut = 0; cut <= len; cut++) {
			assert_int_equal(parse_cut(c->in, len, &cut, 1, 0, &s[1], NULL), 0);
			assert_same_msgs(&s[0], &s[1]);
		}
	}
	free(s);
}

/* --- hostile lines -------------------------------------------------------------- */

struct bad_case {
	const char *in;
	size_t len;		/* 0: strlen */
	enum foo_err err;
	uint64_t at;		/* offset of the byte blamed */
	size_t msgs;		/* messages before the violation */
};

static const struct bad_case bad[] = {
	{ "\n", 0, FOO_ERR_EMPTY, 0, 0 },
	{ "\r\n", 0, FOO_ERR_TYPE, 0, 0 },
	{ "REQ 1\n\n", 0, FOO_ERR_EMPTY, 6, 1 },
	{ "req 1\n", 0, FOO_ERR_TYPE, 0, 0 },
	{ "RE 1\n", 0, FOO_ERR_TYPE, 2, 0 },
	{ "REQX 1\n", 0, FOO_ERR_TYPE, 3, 0 },
	{ "ACKNOWLEDGE 1\n", 0, FOO_ERR_TYPE, 3, 0 },
	{ "FOO 1\n", 0, FOO_ERR_TYPE, 0, 0 },
	{ " REQ 1\n", 0, FOO_ERR_TYPE, 0, 0 },
	{ "REQ1\n", 0, FOO_ERR_TYPE, 3, 0 },
	{ "REQ\n", 0, FOO_ERR_SEQ, 3, 0 },
	{ "REQ \n", 0, FOO_ERR_SEQ, 4, 0 },
	{ "REQ x\n", 0, FOO_ERR_SEQ, 4, 0 },
	{ "REQ -1\n", 0, FOO_ERR_SEQ, 4, 0 },
	{ "REQ +1\n", 0, FOO_ERR_SEQ, 4, 0 },
	{ "REQ 1x\n", 0, FOO_ERR_SEQ, 5, 0 },
	{ "REQ 1.5\n", 0, FOO_ERR_SEQ, 5, 0 },
	{ "REQ 0x10\n", 0, FOO_ERR_SEQ, 5, 0 },
	{ "REQ 18446744073709551616\n", 0, FOO_ERR_SEQ, 23, 0 },	/* 2^64 */
	{ "REQ 99999999999999999999\n", 0, FOO_ERR_SEQ, 23, 0 },
	{ "REQ 000000000000000000001\n", 0, FOO_ERR_SEQ, 24, 0 },	/* 21 digits */
	{ "REQ 1\rx\n", 0, FOO_ERR_SEQ, 6, 0 },
	{ "REQ 1 a\0b\n", 10, FOO_ERR_NUL, 7, 0 },
	{ "\0\0\0\0", 4, FOO_ERR_NUL, 0, 0 },
	{ "REQ\0 1\n", 7, FOO_ERR_NUL, 3, 0 },
	{ "REQ 1 \xff\n", 0, FOO_ERR_UTF8, 6, 0 },
	{ "REQ 1 \xc0\xaf\n", 0, FOO_ERR_UTF8, 6, 0 },		/* overlong '/' */
	{ "REQ 1 \xe0\x80\xaf\n", 0, FOO_ERR_UTF8, 7, 0 },	/* overlong */
	{ "REQ 1 \xed\xa0\x80\n", 0, FOO_ERR_UTF8, 7, 0 },	/* surrogate U+D800 */
	{ "REQ 1 \xf4\x90\x80\x80\n", 0, FOO_ERR_UTF8, 7, 0 },	/* > U+10FFFF */
	{ "REQ 1 \xf5\x80\x80\x80\n", 0, FOO_ERR_UTF8, 6, 0 },
	{ "REQ 1 \x80\n", 0, FOO_ERR_UTF8, 6, 0 },		/* lone continuation */
	{ "REQ 1 \xc3\n", 0, FOO_ERR_UTF8, 7, 0 },		/* cut by LF */
	{ "REQ 1 \xe2\x82x\n", 0, FOO_ERR_UTF8, 8, 0 },
	{ "REQ 1 \xc3", 0, FOO_ERR_UTF8, 7, 0 },		/* cut by EOF */
	{ "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, FOO_ERR_HTTP, 0, 0 },
	{ "POST /foo HTTP/1.1\r\n", 0, FOO_ERR_HTTP, 0, 0 },
	{ "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, FOO_ERR_HTTP, 0, 0 },
	{ "REQ 1 ok\nGET / HTTP/1.0\r\n\r\n", 0, FOO_ERR_HTTP, 9, 1 },
	{ "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, FOO_ERR_TYPE, 0, 0 },	/* TLS */
	{ "SSH-2.0-OpenSSH_9.2\r\n", 0, FOO_ERR_TYPE, 0, 0 },
	{ "REQ", 0, FOO_ERR_TRUNCATED, 3, 0 },
	{ "REQ 1\nAC", 0, FOO_ERR_TRUNCATED, 8, 1 },
	{ "NAK \t ", 0, FOO_ERR_TRUNCATED, 6, 0 },
};

static void test_hostile_lines(void **state)
{
	(void)state;
	struct sink *s = calloc(2, sizeof(*s));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const struct bad_case *c = &bad[i];
		size_t len = c->len ? c->len : strlen(c->in);
		struct foo_parser p;
		int r = parse_all(c->in, len, 0, &s[0], &p);
		if (r != -1 || p.err != c->err || p.err_offset != c->at || s[0].n != c->msgs)
			fail_msg("case %zu: r %d err %d (%s) at %llu msgs %zu", i, r, p.err,
				 foo_err_str(p.err), (unsigned long long)p.err_offset, s[0].n);
		/* sticky */
		assert_int_equal(foo_feed(&p, "REQ 1\n", 6, on_msg, &s[0]), -1);
		assert_int_equal(foo_finish(&p, on_msg, &s[0]), -1);
		assert_int_equal(s[0].n, c->msgs);
		/* the same byte is blamed however the input is cut (the HTTP
		 * diagnostic needs the method in one piece, so only the kind) */
		for (size_t cut = 0; cut <= len; cut++) {
			struct foo_parser q;
			assert_int_equal(parse_cut(c->in, len, &cut, 1, 0, &s[1], &q), -1);
			assert_int_equal(q.err_offset, c->at);
			assert_int_equal(s[1].n, c->msgs);
			if (c->err == FOO_ERR_HTTP)
				assert_true(q.err == FOO_ERR_HTTP || q.err == FOO_ERR_TYPE);
			else
				assert_int_equal(q.err, c->err);
		}
	}
	free(s);
}

/* --- streams ---------------------------------------------------------------------- */

static const char conversation[] =
	"REQ 1 Hey\nREQ 2 Hey there\r\nREQ 3 Hey\nREQ 4 \xe2\x82\xac\nREQ 5 Hey\n"
	"REQ\t6\tHey\nREQ 18446744073709551615 big\nREQ 7";

static void test_every_split(void **state)
{
	(void)state;
	struct sink *s = calloc(2, sizeof(*s));
	size_t len = sizeof(conversation) - 1;
	assert_int_equal(parse_all(conversation, len, 0, &s[0], NULL), 0);
	assert_int_equal(s[0].n, 8);
	assert_true(s[0].r[6].seq == UINT64_MAX);
	assert_int_equal(s[0].r[3].data_len, 3);
	assert_int_equal(s[0].r[7].seq, 7);
	/* two cuts at every pair of positions */
	for (size_t a = 0; a <= len; a++) {
		for (size_t b = a; b <= len; b++) {
			size_t cuts[2] = { a, b };
			assert_int_equal(parse_cut(conversation, len, cuts, 2, 0, &s[1], NULL), 0);
			assert_same_msgs(&s[0], &s[1]);
		}
	}
	/* one byte at a time */
	size_t cuts[sizeof(conversation)];
	for (size_t i = 0; i < len; i++)
		cuts[i] = i;
	assert_int_equal(parse_cut(conversation, len, cuts, len, 0, &s[1], NULL), 0);
	assert_same_msgs(&s[0], &s[1]);
	free(s);
}

static void test_pipelined(void **state)
{
	(void)state;
	struct sink *s = calloc(1, sizeof(*s));
	size_t cap = 1 << 17, len = 0;
	char *buf = malloc(cap);
	for (int i = 0; i < 3000; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s %d payload %d\n",
					i % 3 == 0 ? "REQ" : i % 3 == 1 ? "ACK" : "NAK", i, i * 7);
	struct foo_parser p;
	foo_parser_init(&p, 0);
	assert_int_equal(foo_feed(&p, buf, len, on_msg, s), 0);
	assert_int_equal(s->n, 3000);
	assert_int_equal(p.msgs, 3000);
	assert_true(p.offset == len);
	for (int i = 0; i < 3000; i++) {
		char want[32];
		snprintf(want, sizeof(want), "payload %d", i * 7);
		assert_int_equal(s->r[i].type, i % 3 + 1);
		assert_int_equal(s->r[i].seq, i);
		assert_true(s->r[i].has_data);
		assert_string_equal(s->r[i].data, want);
	}
	assert_true(foo_parser_idle(&p));
	assert_int_equal(foo_finish(&p, on_msg, s), 0);
	assert_int_equal(s->n, 3000);
	free(buf);
	free(s);
}

/* Data split across feeds is reported by length, with no pointer. */
static void test_data_pointer(void **state)
{
	(void)state;
	struct sink *s = calloc(1, sizeof(*s));
	struct foo_parser p;
	foo_parser_init(&p, 0);
	assert_int_equal(foo_feed(&p, "REQ 1 ab", 8, on_msg, s), 0);
	assert_int_equal(foo_feed(&p, "cd\nREQ 2 ef\n", 12, on_msg, s), 0);
	assert_int_equal(s->n, 2);
	assert_false(s->r[0].has_data);
	assert_int_equal(s->r[0].data_len, 4);
	assert_true(s->r[1].has_data);
	assert_string_equal(s->r[1].data, "ef");
	/* a message whose Data is whole in the buffer though its head was not */
	assert_int_equal(foo_feed(&p, "REQ 3", 5, on_msg, s), 0);
	assert_int_equal(foo_feed(&p, " gh\n", 4, on_msg, s), 0);
	assert_true(s->r[2].has_data);
	assert_string_equal(s->r[2].data, "gh");
	free(s);
}

static void test_line_limit(void **state)
{
	(void)state;
	struct sink *s = calloc(2, sizeof(*s));
	/* "REQ 1 " + 10 bytes = 16 bytes before the LF */
	const char *fits = "REQ 1 0123456789\nREQ 2 012345678\r";
	assert_int_equal(parse_all(fits, strlen(fits), 16, &s[0], NULL), 0);
	assert_int_equal(s[0].n, 2);
	assert_int_equal(s[0].r[0].line_len, 16);
	assert_int_equal(s[0].r[1].data_len, 9);	/* the CR at EOF counts, then is stripped */
	/* with CRLF the CR counts: 17 bytes */
	struct foo_parser p;
	const char *crlf = "REQ 1 0123456789\r\n";
	assert_int_equal(parse_all(crlf, strlen(crlf), 16, &s[0], &p), -1);
	assert_int_equal(p.err, FOO_ERR_LINE_TOO_LONG);
	assert_int_equal(p.err_offset, 16);
	/* one byte over, found at that byte, in every chunking */
	const char *over = "REQ 1 0123456789X and more that never ends";
	size_t len = strlen(over);
	for (size_t cut = 0; cut <= len; cut++) {
		assert_int_equal(parse_cut(over, len, &cut, 1, 16, &s[1], &p), -1);
		assert_int_equal(p.err, FOO_ERR_LINE_TOO_LONG);
		assert_int_equal(p.err_offset, 16);
	}
	/* long Data through the fast path: 5000 bytes against the default 4096 */
	char *big = malloc(6000);
	memcpy(big, "REQ 1 ", 6);
	memset(big + 6, 'a', 5000);
	big[5006] = '\n';
	assert_int_equal(parse_all(big, 5007, 0, &s[0], &p), -1);
	assert_int_equal(p.err, FOO_ERR_LINE_TOO_LONG);
	assert_int_equal(p.err_offset, 4096);
	/* and exactly 4096 passes */
	big[4096] = '\n';
	assert_int_equal(parse_all(big, 4097, 0, &s[0], &p), 0);
	assert_int_equal(s[0].n, 1);
	assert_int_equal(s[0].r[0].data_len, 4090);
	/* a bigger limit */
	big[4096] = 'a';
	assert_int_equal(parse_all(big, 5007, 8192, &s[0], &p), 0);
	assert_int_equal(s[0].r[0].data_len, 5000);
	free(big);
	free(s);
}

/* Random bytes (fixed seed) never crash and, when they fail, fail at the
 * same byte in one piece and in random pieces. */
static void test_random_chunks(void **state)
{
	(void)state;
	struct sink *s = calloc(2, sizeof(*s));
	static const char *const parts[] = { "REQ", "ACK", "NAK", " ", "\t", "1", "23", "\n", "\r",
					     "\r\n", "x", "\xc3\xa9", "\xe2\x82", "\xac", "\xff", "GET ",
					     "99999999999", "\0" };
	unsigned seed = 12345;
	char buf[512];
	for (int iter = 0; iter < 3000; iter++) {
		size_t len = 0;
		while (len < sizeof(buf) - 16) {
			seed = seed * 1103515245u + 12345u;
			unsigned k = (seed >> 16) % (sizeof(parts) / sizeof(parts[0]));
			size_t pl = k == 17 ? 1 : strlen(parts[k]);
			memcpy(buf + len, parts[k], pl);
			len += pl;
			if ((seed >> 8) % 13 == 0)
				break;
		}
		struct foo_parser p, q;
		int r0 = parse_all(buf, len, 64, &s[0], &p);
		size_t cuts[8];
		size_t n_cuts = 0, at = 0;
		while (n_cuts < 8) {
			seed = seed * 1103515245u + 12345u;
			at += (seed >> 16) % 40;
			if (at > len)
				break;
			cuts[n_cuts++] = at;
		}
		int r1 = parse_cut(buf, len, cuts, n_cuts, 64, &s[1], &q);
		assert_int_equal(r0, r1);
		assert_same_msgs(&s[0], &s[1]);
		if (r0) {
			assert_true(p.err_offset == q.err_offset);
			if (p.err != FOO_ERR_HTTP && q.err != FOO_ERR_HTTP)
				assert_int_equal(p.err, q.err);
		}
	}
	free(s);
}


/* --- per-connection accounting ------------------------------------------------------- */

#define US 1000ull
#define T0 (5000ull * 1000000000ull)

static int c2s(struct foo_conn *c, struct foo_app_stats *s, const char *text, uint64_t now)
{
	return foo_conn_data(c, s, FOO_DIR_C2S, text, strlen(text), now);
}

static int s2c(struct foo_conn *c, struct foo_app_stats *s, const char *text, uint64_t now)
{
	return foo_conn_data(c, s, FOO_DIR_S2C, text, strlen(text), now);
}

/* The example of seed 004, pipelined, with replies 300 us after requests. */
static void test_conn_seed_example(void **state)
{
	(void)state;
	struct foo_app_stats *s = foo_app_stats_new();
	assert_non_null(s);
	struct foo_conn *c = foo_conn_new(0, false, s);
	assert_non_null(c);
	uint64_t t = T0;
	assert_int_equal(c2s(c, s, "REQ 1 Hey\n", t), 0);
	assert_int_equal(s2c(c, s, "ACK 1 Hello\n", t + 300 * US), 0);
	assert_int_equal(c2s(c, s, "REQ 2 Hey there\n", t + 1000 * US), 0);
	assert_int_equal(s2c(c, s, "ACK 2\n", t + 1300 * US), 0);
	assert_int_equal(c2s(c, s, "REQ 3 Hey\nREQ 4 Hey\nREQ 5 He", t + 2000 * US), 0);
	assert_int_equal(c2s(c, s, "y\n", t + 2000 * US), 0);
	assert_int_equal(foo_conn_pending(c), 3);
	assert_int_equal(s2c(c, s, "ACK 3 What\nACK 4 What do you want\n", t + 2300 * US), 0);
	assert_int_equal(c2s(c, s, "REQ 6 Hey\n", t + 3000 * US), 0);
	assert_int_equal(s2c(c, s, "NAK 5 Stop it\nNAK 6 Stop doing that\n", t + 3300 * US), 0);
	assert_int_equal(foo_conn_pending(c), 0);
	assert_int_equal(stats_get(&s->msg_req), 6);
	assert_int_equal(stats_get(&s->msg_ack), 4);
	assert_int_equal(stats_get(&s->msg_nak), 2);
	assert_int_equal(stats_get(&s->msg_total), 12);
	assert_int_equal(stats_get(&s->latency.count), 6);
	/* every reply came 300 us after its request, REQ 6 too (NAK 5 and 6 in
	 * one read 300 us after REQ 6; REQ 5 waited 1300 us) */
	assert_int_equal(stats_get(&s->latency.buckets[3]), 5);	/* (250, 500] us */
	assert_int_equal(stats_get(&s->latency.buckets[5]), 1);	/* (1000, 2500] us */
	double p50 = stats_hist_quantile(&s->latency, 0.5);
	assert_true(p50 > 250 && p50 <= 500);
	assert_int_equal(stats_get(&s->replies_unmatched), 0);
	/* rates: 6 REQ within the last second */
	uint64_t now = t + 3300 * US;
	assert_true(fabs(stats_win_rate(&s->req_win, now, 1000000000ull) - 6.0) < 1e-9);
	assert_true(fabs(stats_win_rate(&s->resp_win, now, 10000000000ull) - 0.6) < 1e-9);
	assert_int_equal(foo_conn_eof(c, s, FOO_DIR_C2S, now), 0);
	assert_int_equal(foo_conn_eof(c, s, FOO_DIR_S2C, now), 0);
	foo_conn_free(c, s);
	assert_int_equal(stats_get(&s->requests_unanswered), 0);
	assert_int_equal(stats_get(&s->conns), 1);
	assert_int_equal(stats_get(&s->noncompliant_client) + stats_get(&s->noncompliant_server), 0);
	foo_app_stats_put(s);
}

static void test_conn_directions_and_leftovers(void **state)
{
	(void)state;
	struct foo_app_stats *s = foo_app_stats_new();
	struct foo_conn *c = foo_conn_new(0, false, s);
	/* wrong directions count apart and are not violations */
	assert_int_equal(c2s(c, s, "ACK 1\nNAK 2\n", T0), 0);
	assert_int_equal(s2c(c, s, "REQ 3\n", T0), 0);
	assert_int_equal(stats_get(&s->msg_wrong_direction), 3);
	assert_int_equal(stats_get(&s->msg_total), 0);
	/* a reply nobody asked for */
	assert_int_equal(s2c(c, s, "ACK 99\n", T0), 0);
	assert_int_equal(stats_get(&s->replies_unmatched), 1);
	assert_int_equal(stats_get(&s->msg_ack), 1);
	/* same Seq twice: two pending, both replies match, latency from the first */
	assert_int_equal(c2s(c, s, "REQ 7 a\n", T0), 0);
	assert_int_equal(c2s(c, s, "REQ 7 b\n", T0 + 100 * US), 0);
	assert_int_equal(stats_get(&s->requests_duplicate), 1);
	assert_int_equal(foo_conn_pending(c), 2);
	assert_int_equal(s2c(c, s, "ACK 7\nNAK 7\n", T0 + 400 * US), 0);
	assert_int_equal(stats_get(&s->latency.count), 2);
	assert_int_equal(stats_get(&s->latency.buckets[3]), 2);	/* both 400 us */
	assert_int_equal(s2c(c, s, "ACK 7\n", T0 + 500 * US), 0);
	assert_int_equal(stats_get(&s->replies_unmatched), 2);
	/* requests left without replies, one of them as the last line at EOF */
	assert_int_equal(c2s(c, s, "REQ 10\nREQ 11\nREQ 12 no newline", T0), 0);
	assert_int_equal(foo_conn_pending(c), 2);
	assert_int_equal(foo_conn_eof(c, s, FOO_DIR_C2S, T0), 0);
	assert_int_equal(foo_conn_pending(c), 3);
	assert_int_equal(stats_get(&s->msg_req), 5);
	foo_conn_free(c, s);
	assert_int_equal(stats_get(&s->requests_unanswered), 3);
	foo_app_stats_put(s);
}

/* More pending requests than the cap: the rest are untracked, and their
 * replies are neither unmatched nor timed. */
static void test_conn_cap(void **state)
{
	(void)state;
	struct foo_app_stats *s = foo_app_stats_new();
	struct foo_conn *c = foo_conn_new(0, false, s);
	const unsigned n = FOO_CONN_MAX_OUTSTANDING + 1000;
	char line[64];
	for (unsigned i = 0; i < n; i++) {
		snprintf(line, sizeof(line), "REQ %u\n", i);
		assert_int_equal(c2s(c, s, line, T0), 0);
	}
	assert_int_equal(stats_get(&s->requests_untracked), 1000);
	assert_int_equal(foo_conn_pending(c), n);
	for (unsigned i = 0; i < n; i++) {
		snprintf(line, sizeof(line), "ACK %u\n", i);
		assert_int_equal(s2c(c, s, line, T0 + 10 * US), 0);
	}
	assert_int_equal(stats_get(&s->latency.count), FOO_CONN_MAX_OUTSTANDING);
	assert_int_equal(stats_get(&s->replies_unmatched), 0);
	assert_int_equal(foo_conn_pending(c), 0);
	/* the table works again after draining: random interleaving against a
	 * reference of what is pending */
	static bool pend[20000];
	memset(pend, 0, sizeof(pend));
	unsigned seed = 7, pending = 0, matched = 0, unmatched = 0;
	for (int i = 0; i < 200000; i++) {
		seed = seed * 1103515245u + 12345u;
		unsigned seq = (seed >> 8) % 20000;
		bool req = ((seed >> 4) & 3) != 0 && pending < FOO_CONN_MAX_OUTSTANDING;
		if (req && !pend[seq]) {
			snprintf(line, sizeof(line), "REQ %u\n", seq);
			assert_int_equal(c2s(c, s, line, T0), 0);
			pend[seq] = true;
			pending++;
		} else if (!req) {
			snprintf(line, sizeof(line), "ACK %u\n", seq);
			assert_int_equal(s2c(c, s, line, T0), 0);
			if (pend[seq]) {
				pend[seq] = false;
				pending--;
				matched++;
			} else {
				unmatched++;
			}
		}
		assert_int_equal(foo_conn_pending(c), pending);
	}
	assert_int_equal(stats_get(&s->latency.count), FOO_CONN_MAX_OUTSTANDING + matched);
	assert_int_equal(stats_get(&s->replies_unmatched), unmatched);
	assert_int_equal(stats_get(&s->requests_untracked), 1000);
	foo_conn_free(c, s);
	assert_int_equal(stats_get(&s->requests_unanswered), pending);
	foo_app_stats_put(s);
}

static void test_conn_policies(void **state)
{
	(void)state;
	struct foo_app_stats *s = foo_app_stats_new();
	/* lenient: an HTTP client; counted, pending requests dropped */
	struct foo_conn *c = foo_conn_new(0, false, s);
	assert_int_equal(c2s(c, s, "REQ 1\n", T0), 0);
	assert_int_equal(c2s(c, s, "GET / HTTP/1.1\r\n", T0), -1);
	assert_true(foo_conn_failed(c));
	int dir = -1;
	assert_int_equal(foo_conn_error(c, &dir), FOO_ERR_HTTP);
	assert_int_equal(dir, FOO_DIR_C2S);
	assert_int_equal(s2c(c, s, "ACK 1\n", T0), -1);	/* no longer watched */
	assert_int_equal(foo_conn_eof(c, s, FOO_DIR_C2S, T0), -1);
	foo_conn_free(c, s);
	assert_int_equal(stats_get(&s->msg_req), 1);
	assert_int_equal(stats_get(&s->msg_ack), 0);
	assert_int_equal(stats_get(&s->noncompliant_client), 1);
	assert_int_equal(stats_get(&s->conns_closed_strict), 0);
	assert_int_equal(stats_get(&s->violations[FOO_ERR_HTTP]), 1);
	assert_int_equal(stats_get(&s->requests_unanswered), 0);
	/* strict: an overlong line (limit 32), found before any LF */
	c = foo_conn_new(32, true, s);
	assert_int_equal(c2s(c, s, "REQ 1 0123456789012345678901234567890123456789", T0), -1);
	foo_conn_free(c, s);
	assert_int_equal(stats_get(&s->noncompliant_client), 2);
	assert_int_equal(stats_get(&s->conns_closed_strict), 1);
	assert_int_equal(stats_get(&s->violations[FOO_ERR_LINE_TOO_LONG]), 1);
	/* a server speaking garbage, and a client cut inside Type at EOF */
	c = foo_conn_new(0, true, s);
	assert_int_equal(foo_conn_data(c, s, FOO_DIR_S2C, "\x00\x01\x02", 3, T0), -1);
	foo_conn_free(c, s);
	c = foo_conn_new(0, false, s);
	assert_int_equal(c2s(c, s, "REQ 1\nRE", T0), 0);
	assert_int_equal(foo_conn_eof(c, s, FOO_DIR_C2S, T0), -1);
	foo_conn_free(c, s);
	assert_int_equal(stats_get(&s->noncompliant_server), 1);
	assert_int_equal(stats_get(&s->noncompliant_client), 3);
	assert_int_equal(stats_get(&s->violations[FOO_ERR_NUL]), 1);
	assert_int_equal(stats_get(&s->violations[FOO_ERR_TRUNCATED]), 1);
	assert_int_equal(stats_get(&s->conns_closed_strict), 2);
	assert_int_equal(stats_get(&s->conns), 4);
	/* no stats at all: parse only */
	c = foo_conn_new(0, false, NULL);
	assert_int_equal(foo_conn_data(c, NULL, 0, "REQ 1\n", 6, T0), 0);
	assert_int_equal(foo_conn_data(c, NULL, 0, "x", 1, T0), -1);
	foo_conn_free(c, NULL);
	foo_conn_free(NULL, s);
	foo_app_stats_put(s);
}

static void test_render(void **state)
{
	(void)state;
	struct foo_app_stats *a = foo_app_stats_new(), *b = foo_app_stats_new();
	struct foo_conn *ca = foo_conn_new(0, false, a), *cb = foo_conn_new(0, true, b);
	uint64_t t = T0 + 123 * US;
	assert_int_equal(c2s(ca, a, "REQ 1\nREQ 2\nREQ 3\n", t), 0);
	assert_int_equal(s2c(ca, a, "ACK 1\nNAK 2\n", t + 200 * US), 0);
	assert_int_equal(c2s(cb, b, "REQ 1\n", t), 0);
	assert_int_equal(s2c(cb, b, "ACK 1\n", t + 2000 * US), 0);
	assert_int_equal(c2s(cb, b, "\x16\x03", t), -1);
	foo_conn_free(ca, a);
	foo_conn_free(cb, b);
	uint64_t now = t + 5000 * US;

	struct sbuf out;
	sbuf_init(&out);
	foo_stats_render_json_fields(&out, a, now);
	assert_false(out.oom);
	const char *want_a =
		"\"msg_total\":5,\"msg_req\":3,\"msg_ack\":1,\"msg_nak\":1,"
		"\"request_rate_1s\":3.000,\"request_rate_10s\":0.300,"
		"\"response_rate_1s\":2.000,\"response_rate_10s\":0.200,"
		"\"latency_us\":{\"count\":2,";
	if (out.len < strlen(want_a) || memcmp(out.data, want_a, strlen(want_a)) != 0)
		fail_msg("got %.*s", (int)out.len, out.data);
	assert_non_null(strstr(out.data, "\"requests_unanswered\":1,"));
	assert_non_null(strstr(out.data, "\"reasons\":{}}"));

	/* process-wide totals */
	struct foo_app_stats *sum = malloc(sizeof(*sum));
	foo_app_stats_init(sum);
	foo_app_stats_accumulate(sum, a, now);
	foo_app_stats_accumulate(sum, b, now);
	sbuf_reset(&out);
	foo_stats_render_json_fields(&out, sum, now);
	const char *want_sum =
		"\"msg_total\":7,\"msg_req\":4,\"msg_ack\":2,\"msg_nak\":1,"
		"\"request_rate_1s\":4.000,\"request_rate_10s\":0.400,"
		"\"response_rate_1s\":3.000,\"response_rate_10s\":0.300,"
		"\"latency_us\":{\"count\":3,";
	if (out.len < strlen(want_sum) || memcmp(out.data, want_sum, strlen(want_sum)) != 0)
		fail_msg("got %.*s", (int)out.len, out.data);
	assert_non_null(strstr(out.data, "\"closed_strict\":1,\"reasons\":{\"type\":1}}"));
	assert_non_null(strstr(out.data, "\"watched\":2,"));
	/* the whole thing is one JSON object once wrapped: balanced braces, no newline */
	int depth = 0;
	for (size_t i = 0; i < out.len; i++) {
		depth += out.data[i] == '{';
		depth -= out.data[i] == '}';
		assert_true(depth >= 0);
		assert_true(out.data[i] != '\n');
	}
	assert_int_equal(depth, 0);

	sbuf_reset(&out);
	foo_stats_render_prometheus(&out, "my \\\"app\\\"", sum, now);
	sbuf_append(&out, "", 1);
	assert_non_null(strstr(out.data, "# TYPE pandit_foo_messages_total counter\n"));
	assert_non_null(strstr(out.data, "pandit_foo_messages_total{app=\"my \\\"app\\\"\",type=\"req\"} 4\n"));
	assert_non_null(strstr(out.data,
			       "pandit_foo_message_rate{app=\"my \\\"app\\\"\",kind=\"request\",window=\"1s\"} 4.000\n"));
	assert_non_null(strstr(out.data,
			       "pandit_foo_reply_latency_seconds_bucket{app=\"my \\\"app\\\"\",le=\"0.00025\"} 2\n"));
	assert_non_null(strstr(out.data,
			       "pandit_foo_reply_latency_seconds_bucket{app=\"my \\\"app\\\"\",le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(out.data, "pandit_foo_reply_latency_seconds_sum{app=\"my \\\"app\\\"\"} 0.0024\n"));
	assert_non_null(strstr(out.data, "pandit_foo_reply_latency_seconds_count{app=\"my \\\"app\\\"\"} 3\n"));
	assert_non_null(strstr(out.data, "pandit_foo_violations_total{app=\"my \\\"app\\\"\",reason=\"type\"} 1\n"));
	assert_non_null(strstr(out.data,
			       "pandit_foo_connections_noncompliant_total{app=\"my \\\"app\\\"\",side=\"client\"} 1\n"));
	assert_non_null(strstr(out.data, "pandit_foo_requests_unanswered_total{app=\"my \\\"app\\\"\"} 1\n"));
	/* every family has its header once */
	size_t helps = 0;
	for (const char *p = out.data; (p = strstr(p, "# HELP ")); p++)
		helps++;
	assert_int_equal(helps, FOO_PROM_N_FAMILIES);
	sbuf_free(&out);
	free(sum);
	foo_app_stats_put(foo_app_stats_get(a));
	foo_app_stats_put(a);
	foo_app_stats_put(b);
}

/* Workers on several threads counting into one app while another reads. */
struct worker_arg {
	struct foo_app_stats *s;
	int id;
};

static void *foo_worker(void *arg)
{
	struct worker_arg *w = arg;
	char buf[32 * 12];
	for (int conn = 0; conn < 50; conn++) {
		struct foo_conn *c = foo_conn_new(0, false, w->s);
		for (int round = 0; round < 20; round++) {
			size_t len = 0;
			for (int i = 0; i < 10; i++)
				len += (size_t)snprintf(buf + len, sizeof(buf) - len, "REQ %d x\n",
							round * 10 + i);
			uint64_t now = T0 + (uint64_t)(conn * 20 + round) * 1000 * US;
			assert_int_equal(foo_conn_data(c, w->s, 0, buf, len, now), 0);
			for (size_t i = 0; i < len; i++)
				if (buf[i] == 'R')
					memcpy(buf + i, w->id & 1 ? "NAK" : "ACK", 3);
			assert_int_equal(foo_conn_data(c, w->s, 1, buf, len, now + 50 * US), 0);
		}
		foo_conn_free(c, w->s);
	}
	return NULL;
}

static void test_concurrent_workers(void **state)
{
	(void)state;
	struct foo_app_stats *s = foo_app_stats_new();
	pthread_t th[4];
	struct worker_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct worker_arg){ .s = s, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, foo_worker, &args[i]), 0);
	}
	struct sbuf out;
	sbuf_init(&out);
	for (int i = 0; i < 200; i++) {
		sbuf_reset(&out);
		foo_stats_render_json_fields(&out, s, T0 + 500000 * US);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	const uint64_t per = 50 * 20 * 10;
	assert_int_equal(stats_get(&s->msg_req), 4 * per);
	assert_int_equal(stats_get(&s->msg_ack), 2 * per);
	assert_int_equal(stats_get(&s->msg_nak), 2 * per);
	assert_int_equal(stats_get(&s->msg_total), 8 * per);
	assert_int_equal(stats_get(&s->latency.count), 4 * per);
	assert_int_equal(stats_get(&s->latency.buckets[0]), 4 * per);	/* all 50 us */
	assert_int_equal(stats_get(&s->replies_unmatched) + stats_get(&s->requests_unanswered), 0);
	/* the last second of the run: 10 rounds of 1 ms... every thread's last
	 * 1000 ms hold 4 x 1000 ms / 1 ms per round x 10 REQ */
	uint64_t end = T0 + 1000ull * 1000 * US;
	assert_true(fabs(stats_win_count(&s->req_win, end, 1000000000ull) - 4.0 * per) < 1e-6);
	sbuf_free(&out);
	foo_app_stats_put(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_lines),
		cmocka_unit_test(test_hostile_lines),
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_data_pointer),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_random_chunks),
		cmocka_unit_test(test_conn_seed_example),
		cmocka_unit_test(test_conn_directions_and_leftovers),
		cmocka_unit_test(test_conn_cap),
		cmocka_unit_test(test_conn_policies),
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_concurrent_workers),
	};
	return cmocka_run_group_tests_name("foo", tests, NULL, NULL);
}
