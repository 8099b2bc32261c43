/* test_http1.c - HTTP/1.1 parser: tables of valid and hostile heads, smuggling vectors, limits, every split, chunked bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/http1.h"

#define MAX_HDR 128

/* A string literal with its length, NULs included. */
#define S(lit) lit, sizeof(lit) - 1

struct result {
	enum h1_res res;
	enum h1_err err;
	uint32_t err_off;
	uint16_t status;
	struct h1_msg msg;
	struct h1_header hdr[MAX_HDR];
};

struct ctx {
	bool response;
	enum h1_method req_method;
	const struct h1_limits *lim;
	uint32_t hdr_cap;
};

static const struct ctx REQ = { false, H1_M_GET, NULL, MAX_HDR };

static void init(struct h1_parser *p, struct h1_header *hdr, const struct ctx *c)
{
	uint32_t cap = c->hdr_cap ? c->hdr_cap : MAX_HDR;
	if (c->response)
		h1_response_init(p, c->lim, hdr, cap, c->req_method);
	else
		h1_request_init(p, c->lim, hdr, cap);
}

static void save(struct result *r, const struct h1_parser *p, enum h1_res res,
		 const struct h1_header *hdr)
{
	memset(r, 0, sizeof(*r));
	r->res = res;
	r->err = p->err;
	r->err_off = p->err_off;
	r->status = p->status;
	if (res == H1_DONE) {
		r->msg = p->msg;
		r->msg.hdr = NULL;
		memcpy(r->hdr, hdr, p->msg.n_hdr * sizeof(*hdr));
	}
}

static void parse_whole(const char *in, size_t len, const struct ctx *c, struct result *r)
{
	struct h1_parser p;
	struct h1_header hdr[MAX_HDR];
	init(&p, hdr, c);
	/* an exact-size heap copy: ASan catches a read past len */
	char *buf = malloc(len ? len : 1);
	memcpy(buf, in, len);
	enum h1_res res = h1_parse(&p, buf, len);
	save(r, &p, res, hdr);
	/* the result is final */
	assert_int_equal(h1_parse(&p, buf, len), res);
	free(buf);
}

static void assert_same(const struct result *a, const struct result *b, const char *what,
			size_t k)
{
	if (a->res != b->res || a->err != b->err || a->err_off != b->err_off ||
	    a->status != b->status || memcmp(&a->msg, &b->msg, sizeof(a->msg)) != 0 ||
	    memcmp(a->hdr, b->hdr, sizeof(a->hdr)) != 0) {
		print_error("%s split at %zu differs: res %d/%d err %s/%s off %u/%u\n", what, k,
			    a->res, b->res, h1_err_str(a->err), h1_err_str(b->err), a->err_off,
			    b->err_off);
		fail();
	}
}

/* The whole input at once, then every split into two pieces (the first
 * from another buffer: the parser keeps offsets, the buffer may move), then
 * byte by byte: all give the same result. */
static void parse_all_ways(const char *in, size_t len, const struct ctx *c, struct result *r)
{
	parse_whole(in, len, c, r);
	struct result s;
	struct h1_header hdr[MAX_HDR];
	struct h1_parser p;
	for (size_t k = 1; k < len; k++) {
		init(&p, hdr, c);
		char *a = malloc(k);
		memcpy(a, in, k);
		enum h1_res res = h1_parse(&p, a, k);
		free(a);
		if (res == H1_NEED_MORE) {
			char *bb = malloc(len);
			memcpy(bb, in, len);
			res = h1_parse(&p, bb, len);
			free(bb);
		}
		save(&s, &p, res, hdr);
		assert_same(r, &s, "two pieces", k);
	}
	init(&p, hdr, c);
	enum h1_res res = H1_NEED_MORE;
	size_t k;
	for (k = 0; k <= len && res == H1_NEED_MORE; k++)
		res = h1_parse(&p, in, k);
	save(&s, &p, res, hdr);
	assert_same(r, &s, "byte by byte", k);
}

struct tcase {
	const char *name;
	const char *in;
	size_t len;
	enum h1_res res;
	enum h1_err err;
	uint16_t status;
};

static void run_table(const struct tcase *t, size_t n, const struct ctx *c)
{
	for (size_t i = 0; i < n; i++) {
		struct result r;
		parse_all_ways(t[i].in, t[i].len, c, &r);
		if (r.res != t[i].res || r.err != t[i].err ||
		    (t[i].status && r.status != t[i].status)) {
			print_error("case '%s': res %d err '%s' status %u, expected res %d err '%s' "
				    "status %u\n", t[i].name, r.res, h1_err_str(r.err), r.status,
				    t[i].res, h1_err_str(t[i].err), t[i].status);
			fail();
		}
		if (r.res == H1_DONE) {
			/* no case has bytes after its head, except where named */
			assert_true(r.msg.head_len <= t[i].len);
			for (uint32_t h = 0; h < r.msg.n_hdr; h++) {
				assert_true(r.hdr[h].name.off + r.hdr[h].name.len <= r.msg.head_len);
				assert_true(r.hdr[h].value.off + r.hdr[h].value.len <= r.msg.head_len);
			}
		}
	}
}

#define OK(name, lit)		{ name, S(lit), H1_DONE, H1_E_NONE, 0 }
#define BAD(name, lit, e, st)	{ name, S(lit), H1_ERROR, e, st }
#define MORE(name, lit)		{ name, S(lit), H1_NEED_MORE, H1_E_NONE, 0 }

/* --- requests: valid ------------------------------------------------------------- */

static const struct tcase valid_requests[] = {
	OK("simple GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
	OK("HTTP/1.0 without Host", "GET /x HTTP/1.0\r\n\r\n"),
	OK("POST CL", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
	OK("POST chunked", "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
	OK("TE case-insensitive", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n"),
	OK("TE with HTAB OWS", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\t\r\n\r\n"),
	OK("absolute-form", "GET http://example.com:8080/a?b HTTP/1.1\r\nHost: other\r\n\r\n"),
	OK("absolute-form https no path", "GET HTTPS://example.com HTTP/1.1\r\nHost: x\r\n\r\n"),
	OK("CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
	OK("CONNECT IPv6", "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"),
	OK("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
	OK("leading empty lines", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
	OK("unknown method", "PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n"),
	OK("lowercase method is another token", "get / HTTP/1.1\r\nHost: a\r\n\r\n"),
	OK("obs-text in value", "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\xff\r\n\r\n"),
	OK("empty value", "GET / HTTP/1.1\r\nHost: a\r\nX:\r\nY:   \r\n\r\n"),
	OK("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n"),
	OK("Host IPv6 and port", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n"),
	OK("Host pct", "GET / HTTP/1.1\r\nHost: a%41b.c\r\n\r\n"),
	OK("query with browser bytes", "GET /a|b?x={1}&y=^`[] HTTP/1.1\r\nHost: a\r\n\r\n"),
	OK("pct-encoded path", "GET /%41%2f%e2%82%ac HTTP/1.1\r\nHost: a\r\n\r\n"),
	OK("Transfer_Encoding is another field", "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: x\r\n\r\n"),
	OK("CL leading zeros", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n"),
	OK("CL max", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n"),
	OK("CL OWS trimmed", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  5 \t\r\n\r\n"),
	OK("Connection list", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, , Upgrade,x-foo\r\nUpgrade: websocket\r\n\r\n"),
	OK("Expect", "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"),
	OK("names with all tchar", "GET / HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~09az: v\r\n\r\n"),
	OK("value with inner spaces", "GET / HTTP/1.1\r\nHost: a\r\nX: a  b\tc\r\n\r\n"),
	OK("path starting //", "GET //evil/x HTTP/1.1\r\nHost: a\r\n\r\n"),
	MORE("incomplete", "GET / HTTP/1.1\r\nHost: a\r\n"),
	MORE("incomplete final CR", "GET / HTTP/1.1\r\nHost: a\r\n\r"),
	MORE("just CRLF", "\r\n"),
	MORE("empty", ""),
};

static void test_valid_requests(void **state)
{
	(void)state;
	run_table(valid_requests, sizeof(valid_requests) / sizeof(valid_requests[0]), &REQ);
}

/* --- requests: hostile (smuggling vectors first) --------------------------------- */

static const struct tcase hostile_requests[] = {
	/* CL.TE: a front end using CL sends "0\r\n\r\nG" as body, a back end
	 * using TE sees the chunked body end and "G" start the next request */
	BAD("CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
	    H1_E_CL_TE, 400),
	/* TE.CL: the reverse, the smuggled request inside the chunk */
	BAD("TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
	    H1_E_CL_TE, 400),
	/* TE.TE: one side is made to ignore an obfuscated TE */
	BAD("TE.TE second bogus TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
	    H1_E_TE_INVALID, 400),
	BAD("TE.TE space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
	    H1_E_NAME_WS, 400),
	BAD("TE.TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
	    H1_E_TE_INVALID, 400),
	BAD("TE.TE leading space line", "POST / HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n",
	    H1_E_OBS_FOLD, 400),
	BAD("TE.TE folded value", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
	    H1_E_OBS_FOLD, 400),
	BAD("TE.TE quoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
	    H1_E_TE_INVALID, 400),
	BAD("TE.TE vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n",
	    H1_E_CTL, 400),
	BAD("TE.TE NUL in name", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\0: chunked\r\n\r\n",
	    H1_E_CTL, 400),
	BAD("TE.TE bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\nContent-Length: 3\r\n\r\n",
	    H1_E_BARE_LF, 400),
	BAD("TE.TE bare CR", "POST / HTTP/1.1\r\nHost: a\r\nX: y\rTransfer-Encoding: chunked\r\n\r\n",
	    H1_E_BARE_CR, 400),
	BAD("TE chunked, identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
	    H1_E_TE_INVALID, 400),
	BAD("TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
	    H1_E_TE_INVALID, 400),
	BAD("TE chunked twice in two fields", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
	    H1_E_TE_INVALID, 400),
	BAD("TE chunked;", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;\r\n\r\n",
	    H1_E_TE_INVALID, 400),
	BAD("TE parameter", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
	    H1_E_TE_INVALID, 400),
	BAD("TE empty element", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n",
	    H1_E_TE_INVALID, 400),
	BAD("TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
	    H1_E_TE_INVALID, 400),
	BAD("TE gzip only", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
	    H1_E_TE_INVALID, 400),
	BAD("TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	    H1_E_TE_UNSUPPORTED, 501),
	BAD("TE identity, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n",
	    H1_E_TE_UNSUPPORTED, 501),
	BAD("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
	    H1_E_TE_HTTP10, 400),
	BAD("TE in HTTP/1.0 with CL", "POST / HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
	    H1_E_TE_HTTP10, 400),
	BAD("CL.CL equal", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
	    H1_E_CL_DUP, 400),
	BAD("CL.CL different", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 50\r\n\r\n",
	    H1_E_CL_DUP, 400),
	BAD("CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", H1_E_CL_INVALID, 400),
	BAD("CL plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", H1_E_CL_INVALID, 400),
	BAD("CL minus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", H1_E_CL_INVALID, 400),
	BAD("CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", H1_E_CL_INVALID, 400),
	BAD("CL inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", H1_E_CL_INVALID, 400),
	BAD("CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", H1_E_CL_INVALID, 400),
	BAD("CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n",
	    H1_E_CL_INVALID, 400),
	BAD("CL huge", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
	    H1_E_CL_INVALID, 400),
	BAD("CL decimal point", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\n", H1_E_CL_INVALID, 400),
	BAD("CL form feed", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \x0c" "5\r\n\r\n", H1_E_CTL, 400),
	BAD("CONNECT with CL", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 0\r\n\r\n",
	    H1_E_CONNECT_BODY, 400),
	BAD("CONNECT with TE", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nTransfer-Encoding: chunked\r\n\r\n",
	    H1_E_CONNECT_BODY, 400),
	/* the request line */
	BAD("double SP", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("HTAB separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_METHOD, 400),
	BAD("trailing SP", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", H1_E_VERSION, 400),
	BAD("HTTP/0.9", "GET /\r\n\r\n", H1_E_VERSION, 400),
	BAD("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", H1_E_VERSION_UNSUPPORTED, 505),
	BAD("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", H1_E_VERSION_UNSUPPORTED, 505),
	BAD("HTTP/0.9 version", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", H1_E_VERSION_UNSUPPORTED, 505),
	BAD("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", H1_E_VERSION, 400),
	BAD("HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", H1_E_VERSION, 400),
	BAD("HTTP/11", "GET / HTTP/11\r\nHost: a\r\n\r\n", H1_E_VERSION, 400),
	BAD("method not a token", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_METHOD, 400),
	BAD("method only", "GET\r\n\r\n", H1_E_METHOD, 400),
	BAD("request line bare LF", "GET / HTTP/1.1\nHost: a\r\n\r\n", H1_E_BARE_LF, 400),
	BAD("request line bare CR", "GET / HTTP/1.1\rHost: a\r\n\r\n", H1_E_BARE_CR, 400),
	BAD("leading bare LF", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_BARE_LF, 400),
	BAD("leading bare CR", "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_BARE_CR, 400),
	BAD("NUL in target", "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_CTL, 400),
	BAD("NUL first", "\0GET / HTTP/1.1\r\n\r\n", H1_E_CTL, 400),
	BAD("fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("backslash", "GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("quote", "GET /\"x\" HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("angle", "GET /<x> HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("non-ASCII target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("SP in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_VERSION, 400),
	BAD("bad pct", "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("short pct", "GET /a%4 HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("pct at end", "GET /a% HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("CONNECT origin-form", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("CONNECT without port", "CONNECT a.b HTTP/1.1\r\nHost: a.b\r\n\r\n", H1_E_TARGET, 400),
	BAD("CONNECT empty port", "CONNECT a.b: HTTP/1.1\r\nHost: a.b\r\n\r\n", H1_E_TARGET, 400),
	BAD("CONNECT userinfo", "CONNECT u@a.b:443 HTTP/1.1\r\nHost: a.b\r\n\r\n", H1_E_TARGET, 400),
	BAD("authority-form with GET", "GET a.b:443 HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("ftp scheme", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("userinfo", "GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	BAD("port too long", "GET http://a:123456/ HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_TARGET, 400),
	/* field lines */
	BAD("whitespace before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", H1_E_OBS_FOLD, 400),
	BAD("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", H1_E_OBS_FOLD, 400),
	BAD("Host space colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", H1_E_NAME_WS, 400),
	BAD("empty name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", H1_E_NAME, 400),
	BAD("bad name byte", "GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n", H1_E_NAME, 400),
	BAD("no colon", "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", H1_E_NAME, 400),
	BAD("DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f" "b\r\n\r\n", H1_E_CTL, 400),
	BAD("NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", H1_E_CTL, 400),
	BAD("ESC in value", "GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n", H1_E_CTL, 400),
	BAD("bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", H1_E_BARE_CR, 400),
	BAD("bare LF in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n", H1_E_BARE_LF, 400),
	BAD("bare LF end", "GET / HTTP/1.1\r\nHost: a\r\n\n", H1_E_BARE_LF, 400),
	BAD("all bare LF", "GET / HTTP/1.1\nHost: a\n\n", H1_E_BARE_LF, 400),
	BAD("final bare CR", "GET / HTTP/1.1\r\nHost: a\r\n\rX", H1_E_BARE_CR, 400),
	BAD("no Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", H1_E_HOST_MISSING, 400),
	BAD("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", H1_E_HOST_DUP, 400),
	BAD("two Hosts HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", H1_E_HOST_DUP, 400),
	BAD("two Hosts absolute-form", "GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", H1_E_HOST_DUP, 400),
	BAD("no Host absolute-form", "GET http://a/ HTTP/1.1\r\n\r\n", H1_E_HOST_MISSING, 400),
	BAD("Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", H1_E_HOST_INVALID, 400),
	BAD("Host userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", H1_E_HOST_INVALID, 400),
	BAD("Host bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", H1_E_HOST_INVALID, 400),
	BAD("Host port only", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", H1_E_HOST_INVALID, 400),
	BAD("Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", H1_E_HOST_INVALID, 400),
	BAD("Host slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", H1_E_HOST_INVALID, 400),
	BAD("Host bad IPv6", "GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", H1_E_HOST_INVALID, 400),
	BAD("Connection bad token", "GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n", H1_E_CONNECTION, 400),
	BAD("two Upgrades", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n", H1_E_UPGRADE_DUP, 400),
	BAD("Expect other", "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", H1_E_EXPECT, 417),
	BAD("Expect list", "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n", H1_E_EXPECT, 417),
};

static void test_hostile_requests(void **state)
{
	(void)state;
	run_table(hostile_requests, sizeof(hostile_requests) / sizeof(hostile_requests[0]), &REQ);
}

/* --- requests: semantics ---------------------------------------------------------- */

static bool slice_is(const char *buf, struct h1_slice s, const char *lit)
{
	return s.len == strlen(lit) && memcmp(buf + s.off, lit, s.len) == 0;
}

static void test_request_semantics(void **state)
{
	(void)state;
	struct result r;

	const char *a = "POST /up?x=1 HTTP/1.1\r\nHost: api.example:81 \r\nContent-Length: 12\r\n"
			"Connection: close\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n";
	parse_all_ways(a, strlen(a), &REQ, &r);
	assert_int_equal(r.res, H1_DONE);
	assert_int_equal(r.msg.head_len, strlen(a));
	assert_int_equal(r.msg.method, H1_M_POST);
	assert_true(slice_is(a, r.msg.method_s, "POST"));
	assert_true(slice_is(a, r.msg.target, "/up?x=1"));
	assert_true(slice_is(a, r.msg.path, "/up?x=1"));
	assert_int_equal(r.msg.form, H1_FORM_ORIGIN);
	assert_true(slice_is(a, r.msg.authority, "api.example:81"));
	assert_int_equal(r.msg.version_minor, 1);
	assert_int_equal(r.msg.body, H1_BODY_LENGTH);
	assert_int_equal(r.msg.content_length, 12);
	assert_int_equal(r.msg.conn, H1_CONN_CLOSE);
	assert_false(r.msg.keep_alive);
	assert_int_equal(r.msg.n_hdr, 4);
	assert_int_equal(r.msg.host_idx, 0);
	assert_int_equal(r.hdr[0].id, H1_H_HOST);
	assert_true(slice_is(a, r.hdr[0].name, "Host"));
	assert_true(slice_is(a, r.hdr[0].value, "api.example:81"));
	assert_int_equal(r.hdr[1].id, H1_H_CONTENT_LENGTH);
	assert_int_equal(r.hdr[2].id, H1_H_CONNECTION);
	assert_int_equal(r.hdr[3].id, H1_H_X_FORWARDED_FOR);
	assert_true(slice_is(a, r.hdr[3].value, "1.2.3.4"));
	assert_true(h1_slice_eq(a, r.hdr[3].name, "x-forwarded-for"));
	assert_false(r.msg.expect_continue);
	assert_false(r.msg.upgrade);

	/* absolute-form: the target's authority wins over Host */
	const char *b = "GET http://Target.example:8080?q HTTP/1.1\r\nHost: host.example\r\n\r\n";
	parse_all_ways(b, strlen(b), &REQ, &r);
	assert_int_equal(r.res, H1_DONE);
	assert_int_equal(r.msg.form, H1_FORM_ABSOLUTE);
	assert_true(slice_is(b, r.msg.authority, "Target.example:8080"));
	assert_true(slice_is(b, r.msg.path, "?q"));
	assert_true(slice_is(b, r.hdr[r.msg.host_idx].value, "host.example"));
	assert_int_equal(r.msg.body, H1_BODY_NONE);
	assert_true(r.msg.keep_alive);

	const char *c = "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
			"Connection: keep-alive, Upgrade\r\n\r\n";
	parse_all_ways(c, strlen(c), &REQ, &r);
	assert_int_equal(r.res, H1_DONE);
	assert_true(r.msg.upgrade);
	assert_int_equal(r.msg.upgrade_idx, 1);
	assert_int_equal(r.msg.conn, H1_CONN_KEEP_ALIVE | H1_CONN_UPGRADE);

	/* Upgrade without Connection: upgrade is not an upgrade */
	const char *c2 = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
	parse_all_ways(c2, strlen(c2), &REQ, &r);
	assert_false(r.msg.upgrade);

	const char *d = "PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
			"Transfer-Encoding: chunked\r\n\r\n";
	parse_all_ways(d, strlen(d), &REQ, &r);
	assert_int_equal(r.res, H1_DONE);
	assert_true(r.msg.expect_continue);
	assert_int_equal(r.msg.body, H1_BODY_CHUNKED);
	assert_int_equal(r.msg.content_length, 0);

	/* HTTP/1.0: keep-alive only when asked; Expect ignored */
	const char *e = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nExpect: 100-continue\r\n\r\n";
	parse_all_ways(e, strlen(e), &REQ, &r);
	assert_int_equal(r.res, H1_DONE);
	assert_int_equal(r.msg.version_minor, 0);
	assert_true(r.msg.keep_alive);
	assert_false(r.msg.expect_continue);
	assert_int_equal(r.msg.host_idx, -1);
	assert_int_equal(r.msg.authority.len, 0);
	const char *e2 = "GET / HTTP/1.0\r\n\r\n";
	parse_all_ways(e2, strlen(e2), &REQ, &r);
	assert_false(r.msg.keep_alive);

	const char *f = "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n";
	parse_all_ways(f, strlen(f), &REQ, &r);
	assert_int_equal(r.res, H1_DONE);
	assert_int_equal(r.msg.method, H1_M_CONNECT);
	assert_int_equal(r.msg.form, H1_FORM_AUTHORITY);
	assert_true(slice_is(f, r.msg.authority, "db.internal:5432"));
	assert_int_equal(r.msg.path.len, 0);

	const char *g = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
	parse_all_ways(g, strlen(g), &REQ, &r);
	assert_int_equal(r.msg.form, H1_FORM_ASTERISK);
	assert_int_equal(r.msg.method, H1_M_OPTIONS);

	/* leading CRLFs: the method starts after them, they count in head_len */
	const char *h = "\r\n\r\nDELETE /x HTTP/1.1\r\nHost: a\r\n\r\n";
	parse_all_ways(h, strlen(h), &REQ, &r);
	assert_int_equal(r.msg.method, H1_M_DELETE);
	assert_int_equal(r.msg.method_s.off, 4);
	assert_int_equal(r.msg.head_len, strlen(h));

	/* value trimming */
	const char *i = "GET / HTTP/1.1\r\nHost: a\r\nX: \t a  b \t \r\nY:\r\n\r\n";
	parse_all_ways(i, strlen(i), &REQ, &r);
	assert_true(slice_is(i, r.hdr[1].value, "a  b"));
	assert_int_equal(r.hdr[2].value.len, 0);

	/* error offsets name the faulty byte or field */
	const char *j = "GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n";
	parse_all_ways(j, strlen(j), &REQ, &r);
	assert_int_equal(r.err, H1_E_BARE_LF);
	assert_int_equal(r.err_off, strstr(j, "a\nb") - j + 1);
	const char *k = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
	parse_all_ways(k, strlen(k), &REQ, &r);
	assert_int_equal(r.err, H1_E_CL_DUP);
	assert_int_equal(r.err_off, strstr(k, "Content-Length: 1\r\nC") - k + 19);
	const char *l = "GET /a b HTTP/1.1\r\n";
	parse_all_ways(l, strlen(l), &REQ, &r);
	assert_int_equal(r.err, H1_E_VERSION);
	assert_int_equal(r.err_off, 8);	/* the SP after "b" */

	assert_string_equal(h1_method_str(H1_M_PATCH), "PATCH");
	assert_string_equal(h1_err_str(H1_E_CL_TE), "Content-Length with Transfer-Encoding");
}

/* Two requests in one buffer: the parser stops at the end of the first
 * head; the body walker finds the end of its body; the second head is
 * parsed from there. */
static void test_pipelining(void **state)
{
	(void)state;
	const char *in = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
			 "GET /b HTTP/1.1\r\nHost: b\r\n\r\n"
			 "POST /c HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "3\r\nGET\r\n0\r\n\r\n"
			 "GET /d HTTP/1.1\r\nHost: d\r\n\r\nGET /e";
	size_t len = strlen(in), off = 0;
	const char *paths[] = { "/a", "/b", "/c", "/d" };
	struct h1_header hdr[16];
	for (int n = 0; n < 4; n++) {
		struct h1_parser p;
		h1_request_init(&p, NULL, hdr, 16);
		assert_int_equal(h1_parse(&p, in + off, len - off), H1_DONE);
		assert_true(slice_is(in + off, p.msg.path, paths[n]));
		off += p.msg.head_len;
		struct h1_body b;
		h1_body_init(&b, &p.msg, NULL, false);
		size_t used;
		assert_int_equal(h1_body_feed(&b, in + off, len - off, &used, NULL), H1_DONE);
		off += used;
	}
	struct h1_parser p;
	h1_request_init(&p, NULL, hdr, 16);
	assert_int_equal(h1_parse(&p, in + off, len - off), H1_NEED_MORE);
	assert_int_equal(len - off, strlen("GET /e"));
}

/* --- limits ------------------------------------------------------------------------ */

static char *repeat(char *dst, char c, size_t n)
{
	memset(dst, c, n);
	return dst + n;
}

static void test_limits(void **state)
{
	(void)state;
	static char buf[80000];
	struct result r;
	char *e;

	/* request line of exactly max_line bytes passes, one more is 414 */
	for (int extra = 0; extra <= 1; extra++) {
		e = buf;
		e += sprintf(e, "GET /");
		size_t fill = H1_DEFAULT_MAX_LINE - strlen("GET / HTTP/1.1") + extra;
		e = repeat(e, 'a', fill);
		e += sprintf(e, " HTTP/1.1\r\nHost: a\r\n\r\n");
		parse_whole(buf, (size_t)(e - buf), &REQ, &r);
		if (!extra) {
			assert_int_equal(r.res, H1_DONE);
		} else {
			assert_int_equal(r.err, H1_E_LINE_TOO_LONG);
			assert_int_equal(r.status, 414);
			assert_int_equal(r.err_off, H1_DEFAULT_MAX_LINE);
		}
	}
	/* a request line that never ends is refused at the limit, not later */
	e = repeat(buf, 'a', 9000);
	buf[0] = 'G';
	buf[3] = ' ';
	buf[4] = '/';
	parse_whole(buf, (size_t)(e - buf), &REQ, &r);
	assert_int_equal(r.err, H1_E_LINE_TOO_LONG);
	assert_int_equal(r.err_off, H1_DEFAULT_MAX_LINE);

	/* head of exactly max_head bytes passes, one more is 431 */
	for (int extra = 0; extra <= 1; extra++) {
		e = buf + sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
		size_t fill = H1_DEFAULT_MAX_HEAD - (size_t)(e - buf) - 4 + extra;
		e = repeat(e, 'v', fill);
		e += sprintf(e, "\r\n\r\n");
		parse_whole(buf, (size_t)(e - buf), &REQ, &r);
		if (!extra) {
			assert_int_equal(r.res, H1_DONE);
			assert_int_equal(r.msg.head_len, H1_DEFAULT_MAX_HEAD);
		} else {
			assert_int_equal(r.err, H1_E_HEAD_TOO_LARGE);
			assert_int_equal(r.status, 431);
			assert_int_equal(r.err_off, H1_DEFAULT_MAX_HEAD);
		}
	}
	/* a head that never ends: 431 as soon as max_head bytes are in, while a
	 * shorter prefix is only incomplete */
	struct h1_limits many = { .max_headers = MAX_HDR };
	struct ctx cm = { false, H1_M_GET, &many, MAX_HDR };
	e = buf + sprintf(buf, "GET / HTTP/1.1\r\n");
	while (e - buf < 40000) {
		e += sprintf(e, "X-Pad: ");
		e = repeat(e, 'p', 400);
		e += sprintf(e, "\r\n");
	}
	parse_whole(buf, H1_DEFAULT_MAX_HEAD, &cm, &r);
	assert_int_equal(r.res, H1_NEED_MORE);
	parse_whole(buf, H1_DEFAULT_MAX_HEAD + 1, &cm, &r);
	assert_int_equal(r.err, H1_E_HEAD_TOO_LARGE);
	assert_int_equal(r.status, 431);

	/* 100 fields pass, 101 are 431 */
	for (int extra = 0; extra <= 1; extra++) {
		e = buf + sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
		for (unsigned i = 1; i < H1_DEFAULT_MAX_HEADERS + (unsigned)extra; i++)
			e += sprintf(e, "X%u: %u\r\n", i, i);
		e += sprintf(e, "\r\n");
		parse_whole(buf, (size_t)(e - buf), &REQ, &r);
		if (!extra) {
			assert_int_equal(r.res, H1_DONE);
			assert_int_equal(r.msg.n_hdr, H1_DEFAULT_MAX_HEADERS);
		} else {
			assert_int_equal(r.err, H1_E_TOO_MANY_HEADERS);
			assert_int_equal(r.status, 431);
		}
	}
	/* a caller array smaller than the limit is the limit */
	struct ctx small = { false, H1_M_GET, NULL, 2 };
	const char *three = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
	parse_all_ways(three, strlen(three), &small, &r);
	assert_int_equal(r.err, H1_E_TOO_MANY_HEADERS);

	/* configured limits, every split */
	struct h1_limits lim = { .max_line = 24, .max_head = 40, .max_headers = 2 };
	struct ctx c = { false, H1_M_GET, &lim, MAX_HDR };
	const struct tcase t[] = {
		OK("fits", "GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\n"),
		BAD("line", "GET /01234567890 HTTP/1.1\r\nHost: a\r\n\r\n", H1_E_LINE_TOO_LONG, 414),
		BAD("head", "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\r\n\r\n",
		    H1_E_HEAD_TOO_LARGE, 431),
		BAD("count", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n",
		    H1_E_TOO_MANY_HEADERS, 431),
		BAD("long method", "ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n\r\n",
		    H1_E_LINE_TOO_LONG, 414),
	};
	run_table(t, sizeof(t) / sizeof(t[0]), &c);
}

/* --- responses --------------------------------------------------------------------- */

struct rcase {
	const char *name;
	const char *in;
	size_t len;
	enum h1_method req;
	enum h1_res res;
	enum h1_err err;
	enum h1_body_kind body;
	uint64_t cl;
	bool keep_alive;
};

#define R_OK(name, lit, req, body, cl, ka)	{ name, S(lit), req, H1_DONE, H1_E_NONE, body, cl, ka }
#define R_BAD(name, lit, e)			{ name, S(lit), H1_M_GET, H1_ERROR, e, 0, 0, false }

static const struct rcase responses[] = {
	R_OK("200 CL", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", H1_M_GET, H1_BODY_LENGTH, 5, true),
	R_OK("200 CL 0", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", H1_M_GET, H1_BODY_LENGTH, 0, true),
	R_OK("200 chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", H1_M_GET, H1_BODY_CHUNKED, 0, true),
	R_OK("gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", H1_M_GET, H1_BODY_CHUNKED, 0, true),
	R_OK("gzip only: until close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", H1_M_GET, H1_BODY_CLOSE, 0, false),
	R_OK("no framing: until close", "HTTP/1.1 200 OK\r\n\r\n", H1_M_GET, H1_BODY_CLOSE, 0, false),
	R_OK("204", "HTTP/1.1 204 No Content\r\n\r\n", H1_M_GET, H1_BODY_NONE, 0, true),
	R_OK("204 with CL", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", H1_M_GET, H1_BODY_NONE, 0, true),
	R_OK("304 with CL", "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", H1_M_GET, H1_BODY_NONE, 0, true),
	R_OK("HEAD with CL", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", H1_M_HEAD, H1_BODY_NONE, 0, true),
	R_OK("HEAD with chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", H1_M_HEAD, H1_BODY_NONE, 0, true),
	R_OK("100 continue", "HTTP/1.1 100 Continue\r\n\r\n", H1_M_PUT, H1_BODY_NONE, 0, true),
	R_OK("101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", H1_M_GET, H1_BODY_TUNNEL, 0, false),
	R_OK("CONNECT 200", "HTTP/1.1 200 Connection established\r\n\r\n", H1_M_CONNECT, H1_BODY_TUNNEL, 0, false),
	R_OK("CONNECT 407", "HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n", H1_M_CONNECT, H1_BODY_LENGTH, 2, true),
	R_OK("close", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", H1_M_GET, H1_BODY_LENGTH, 1, false),
	R_OK("1.0 default close", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", H1_M_GET, H1_BODY_LENGTH, 1, false),
	R_OK("1.0 keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n", H1_M_GET, H1_BODY_LENGTH, 1, true),
	R_OK("no reason", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", H1_M_GET, H1_BODY_LENGTH, 0, true),
	R_OK("no reason no SP", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", H1_M_GET, H1_BODY_LENGTH, 0, true),
	R_OK("reason obs-text", "HTTP/1.1 404 Nicht gefunden \xe2\x9c\x97\t\r\nContent-Length: 0\r\n\r\n", H1_M_GET, H1_BODY_LENGTH, 0, true),
	R_OK("599", "HTTP/1.1 599 x\r\nContent-Length: 0\r\n\r\n", H1_M_GET, H1_BODY_LENGTH, 0, true),
	R_BAD("CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", H1_E_CL_TE),
	R_BAD("CL dup", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", H1_E_CL_DUP),
	R_BAD("CL bad", "HTTP/1.1 200 OK\r\nContent-Length: 5a\r\n\r\n", H1_E_CL_INVALID),
	R_BAD("TE in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", H1_E_TE_HTTP10),
	R_BAD("chunked not final", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", H1_E_TE_INVALID),
	R_BAD("TE bad token", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;\r\n\r\n", H1_E_TE_INVALID),
	R_BAD("status 2 digits", "HTTP/1.1 20 OK\r\n\r\n", H1_E_STATUS),
	R_BAD("status 4 digits", "HTTP/1.1 2000 OK\r\n\r\n", H1_E_STATUS),
	R_BAD("status 600", "HTTP/1.1 600 OK\r\n\r\n", H1_E_STATUS),
	R_BAD("status 099", "HTTP/1.1 099 OK\r\n\r\n", H1_E_STATUS),
	R_BAD("status letters", "HTTP/1.1 2xx OK\r\n\r\n", H1_E_STATUS),
	R_BAD("HTTP/2", "HTTP/2 200 OK\r\n\r\n", H1_E_VERSION),
	R_BAD("HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", H1_E_VERSION_UNSUPPORTED),
	R_BAD("no version", "200 OK\r\n\r\n", H1_E_VERSION),
	R_BAD("leading CRLF", "\r\nHTTP/1.1 200 OK\r\n\r\n", H1_E_VERSION),
	R_BAD("control in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", H1_E_CTL),
	R_BAD("bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", H1_E_BARE_LF),
	R_BAD("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", H1_E_OBS_FOLD),
	R_BAD("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", H1_E_NAME_WS),
	R_BAD("NUL in value", "HTTP/1.1 200 OK\r\nX: \0\r\n\r\n", H1_E_CTL),
};

static void test_responses(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(responses) / sizeof(responses[0]); i++) {
		const struct rcase *t = &responses[i];
		struct ctx c = { true, t->req, NULL, MAX_HDR };
		struct result r;
		parse_all_ways(t->in, t->len, &c, &r);
		if (r.res != t->res || r.err != t->err ||
		    (r.res == H1_DONE && (r.msg.body != t->body || r.msg.content_length != t->cl ||
					  r.msg.keep_alive != t->keep_alive))) {
			print_error("response '%s': res %d err '%s' body %d cl %llu ka %d\n", t->name,
				    r.res, h1_err_str(r.err), r.msg.body,
				    (unsigned long long)r.msg.content_length, r.msg.keep_alive);
			fail();
		}
		if (r.res == H1_ERROR)
			assert_int_equal(r.status, 502);
	}
	struct result r;
	struct ctx c = { true, H1_M_GET, NULL, MAX_HDR };
	const char *a = "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc";
	parse_all_ways(a, strlen(a), &c, &r);
	assert_int_equal(r.msg.status, 404);
	assert_true(slice_is(a, r.msg.reason, "Not Found"));
	assert_int_equal(r.msg.head_len, strlen(a) - 3);
	const char *u = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
	parse_all_ways(u, strlen(u), &c, &r);
	assert_true(r.msg.upgrade);
	assert_int_equal(r.msg.upgrade_idx, 0);

	/* status line limit */
	struct h1_limits lim = { .max_line = 20 };
	struct ctx cl = { true, H1_M_GET, &lim, MAX_HDR };
	const char *l = "HTTP/1.1 200 0123456789\r\n\r\n";
	parse_all_ways(l, strlen(l), &cl, &r);
	assert_int_equal(r.err, H1_E_LINE_TOO_LONG);
	assert_int_equal(r.status, 502);
}

/* --- chunked bodies ------------------------------------------------------------------ */

struct chunk_out {
	enum h1_res res;
	enum h1_err err;
	uint64_t err_off;
	size_t used;		/* bytes consumed in total */
	char data[256];
	size_t data_len;
};

/* Feeds in[0..len) in pieces cut at the given points (sorted, ascending),
 * collecting data spans; stops at DONE or ERROR. */
static void chunk_feed(const char *in, size_t len, const size_t *cuts, size_t n_cuts,
		       bool want_data, const struct h1_limits *lim, struct chunk_out *o)
{
	struct h1_chunked c;
	h1_chunked_init(&c, lim, want_data);
	memset(o, 0, sizeof(*o));
	size_t start = 0;
	for (size_t k = 0; k <= n_cuts; k++) {
		size_t end = k < n_cuts ? cuts[k] : len;
		/* a piece of its own, to let ASan see reads past it */
		char *piece = malloc(end - start + 1);
		memcpy(piece, in + start, end - start);
		size_t off = 0;
		enum h1_res r;
		for (;;) {
			size_t used;
			struct h1_slice d = { 0, 0 };
			r = h1_chunked_feed(&c, piece + off, end - start - off, &used, &d);
			assert_true(used <= end - start - off);
			if (r == H1_DATA) {
				assert_true(want_data);
				assert_true(d.len > 0);
				assert_int_equal(d.off + d.len, used);
				assert_true(o->data_len + d.len <= sizeof(o->data));
				memcpy(o->data + o->data_len, piece + off + d.off, d.len);
				o->data_len += d.len;
			}
			off += used;
			o->used += used;
			if (r != H1_DATA)
				break;
		}
		free(piece);
		o->res = r;
		if (r == H1_DONE || r == H1_ERROR)
			break;
		assert_int_equal(off, end - start);
		start = end;
	}
	o->err = c.err;
	o->err_off = c.err_off;
	if (o->res == H1_DONE)
		assert_int_equal(c.offset, o->used);
}

static void chunk_same(const struct chunk_out *a, const struct chunk_out *b, bool cmp_data)
{
	assert_int_equal(a->res, b->res);
	assert_int_equal(a->err, b->err);
	assert_int_equal(a->err_off, b->err_off);
	assert_int_equal(a->used, b->used);
	if (cmp_data) {
		assert_int_equal(a->data_len, b->data_len);
		assert_memory_equal(a->data, b->data, a->data_len);
	}
}

struct ccase {
	const char *name;
	const char *in;
	size_t len;
	enum h1_res res;
	enum h1_err err;
	const char *data;	/* decoded data */
	size_t data_len;
	size_t used;		/* bytes consumed when DONE (0: all) */
};

#define C_OK(name, lit, data)		{ name, S(lit), H1_DONE, H1_E_NONE, S(data), 0 }
#define C_OKU(name, lit, data, used)	{ name, S(lit), H1_DONE, H1_E_NONE, S(data), used }
#define C_BAD(name, lit, e)		{ name, S(lit), H1_ERROR, e, NULL, 0, 0 }
#define C_MORE(name, lit, data)		{ name, S(lit), H1_NEED_MORE, H1_E_NONE, S(data), 0 }

static const struct ccase chunk_cases[] = {
	C_OK("simple", "5\r\nhello\r\n0\r\n\r\n", "hello"),
	C_OK("two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"),
	C_OK("empty body", "0\r\n\r\n", ""),
	C_OK("uppercase hex", "A\r\n0123456789\r\nB\r\nabcdefghijk\r\n0\r\n\r\n", "0123456789abcdefghijk"),
	C_OK("lowercase hex", "a\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
	C_OK("leading zeros", "0005\r\nhello\r\n0000\r\n\r\n", "hello"),
	C_OK("16 digits", "0000000000000005\r\nhello\r\n0\r\n\r\n", "hello"),
	C_OK("zero-size with extensions", "0;a=b;c\r\n\r\n", ""),
	C_OK("extensions", "5;name=value;flag\r\nhello\r\n0;last\r\n\r\n", "hello"),
	C_OK("quoted extension", "5;q=\"a \\\"b\\\" ;c\"\r\nhello\r\n0\r\n\r\n", "hello"),
	C_OK("BWS in extensions", "5 ; a = b\t;c\r\nhello\r\n0\r\n\r\n", "hello"),
	C_OK("trailers", "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nY:\r\n\r\n", "hello"),
	C_OK("binary data", "4\r\n\r\n\0\n\r\n0\r\n\r\n", "\r\n\0\n"),
	C_OKU("next message after", "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "abc", 13),
	C_MORE("incomplete data", "5\r\nhel", "hel"),
	C_MORE("incomplete trailer", "0\r\nX: 1\r\n", ""),
	C_MORE("max size accepted", "4000000000000000\r\nabc", "abc"),
	C_BAD("missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", H1_E_CHUNK_CRLF),
	C_BAD("data longer than size", "3\r\nhello\r\n0\r\n\r\n", H1_E_CHUNK_CRLF),
	C_BAD("LF only after data", "5\r\nhello\n0\r\n\r\n", H1_E_CHUNK_CRLF),
	C_BAD("bare LF after size", "5\nhello\r\n0\r\n\r\n", H1_E_BARE_LF),
	C_BAD("bare CR after size", "5\rhello\r\n0\r\n\r\n", H1_E_BARE_CR),
	C_BAD("empty size", "\r\nhello\r\n", H1_E_CHUNK_SIZE),
	C_BAD("negative", "-5\r\nhello\r\n", H1_E_CHUNK_SIZE),
	C_BAD("0x prefix", "0x5\r\nhello\r\n", H1_E_CHUNK_SIZE),
	C_BAD("size over 2^62", "4000000000000001\r\n", H1_E_CHUNK_SIZE),
	C_BAD("size 2^64-1", "FFFFFFFFFFFFFFFF\r\n", H1_E_CHUNK_SIZE),
	C_BAD("17 digits", "00000000000000005\r\nhello\r\n", H1_E_CHUNK_SIZE),
	C_BAD("overflow wrap", "10000000000000005\r\nhello\r\n", H1_E_CHUNK_SIZE),
	C_BAD("space after size", "5 \r\nhello\r\n0\r\n\r\n", H1_E_CHUNK_EXT),
	C_BAD("leading space", " 5\r\nhello\r\n", H1_E_CHUNK_SIZE),
	C_BAD("empty extension", "5;\r\nhello\r\n", H1_E_CHUNK_EXT),
	C_BAD("empty ext value", "5;a=\r\nhello\r\n", H1_E_CHUNK_EXT),
	C_BAD("unterminated quote", "5;a=\"x\r\nhello\r\n", H1_E_CHUNK_EXT),
	C_BAD("NUL in extension", "5;a\0\r\nhello\r\n", H1_E_CTL),
	C_BAD("bad ext byte", "5;a@b\r\nhello\r\n", H1_E_CHUNK_EXT),
	C_MORE("trailer or final CRLF?", "5\r\nhello\r\n0\r\nX", "hello"),
	C_BAD("trailer without colon", "5\r\nhello\r\n0\r\nX\r\n\r\n", H1_E_NAME),
	C_BAD("last-chunk then data", "0\r\nhello\r\n\r\n", H1_E_NAME),
	C_BAD("trailer obs-fold", "0\r\nX: 1\r\n y\r\n\r\n", H1_E_OBS_FOLD),
	C_BAD("trailer space before colon", "0\r\nX : 1\r\n\r\n", H1_E_NAME_WS),
	C_BAD("trailer control", "0\r\nX: \x01\r\n\r\n", H1_E_CTL),
	C_BAD("trailer bare LF", "0\r\nX: 1\n\r\n", H1_E_BARE_LF),
	C_BAD("final bare CR", "0\r\n\rX", H1_E_BARE_CR),
};

static void test_chunked(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(chunk_cases) / sizeof(chunk_cases[0]); i++) {
		const struct ccase *t = &chunk_cases[i];
		struct chunk_out whole, o;
		chunk_feed(t->in, t->len, NULL, 0, true, NULL, &whole);
		if (whole.res != t->res || whole.err != t->err) {
			print_error("chunk case '%s': res %d err '%s'\n", t->name, whole.res,
				    h1_err_str(whole.err));
			fail();
		}
		if (t->data) {
			assert_int_equal(whole.data_len, t->data_len);
			assert_memory_equal(whole.data, t->data, whole.data_len);
		}
		if (t->res == H1_DONE)
			assert_int_equal(whole.used, t->used ? t->used : t->len);
		/* validate-only: the same end, no data spans */
		chunk_feed(t->in, t->len, NULL, 0, false, NULL, &o);
		chunk_same(&whole, &o, false);
		assert_int_equal(o.data_len, 0);
		/* every split in two, and byte by byte, both modes */
		for (size_t k = 1; k < t->len; k++) {
			chunk_feed(t->in, t->len, &k, 1, true, NULL, &o);
			chunk_same(&whole, &o, true);
			chunk_feed(t->in, t->len, &k, 1, false, NULL, &o);
			chunk_same(&whole, &o, false);
		}
		size_t cuts[256];
		for (size_t k = 1; k < t->len && k < 256; k++)
			cuts[k - 1] = k;
		chunk_feed(t->in, t->len, cuts, t->len ? t->len - 1 : 0, true, NULL, &o);
		chunk_same(&whole, &o, true);
	}

	/* the TE.CL payload parsed as chunked ends after "0\r\n\r\n": the rest is
	 * the next message (and then the next head parser's business) */
	const char *s = "8\r\nSMUGGLED\r\n0\r\n\r\n0\r\n";
	struct chunk_out o;
	chunk_feed(s, strlen(s), NULL, 0, true, NULL, &o);
	assert_int_equal(o.res, H1_DONE);
	assert_int_equal(o.used, strlen(s) - 3);

	/* limits: size line and trailer section */
	struct h1_limits lim = { .max_chunk_line = 8, .max_trailer = 12, .max_headers = 2 };
	struct h1_limits tiny = { .max_trailer = 1 };
	struct chunk_out t0;
	chunk_feed("0\r\n\r\n", 5, NULL, 0, false, &tiny, &t0);
	assert_int_equal(t0.res, H1_DONE);
	const struct ccase lc[] = {
		C_OK("line fits", "5;abcdef\r\nhello\r\n0\r\n\r\n", "hello"),
		C_BAD("line too long", "5;abcdefg\r\nhello\r\n0\r\n\r\n", H1_E_CHUNK_EXT),
		C_OK("trailer fits", "0\r\nA: 1234567\r\n\r\n", ""),
		C_BAD("trailer too large", "0\r\nA: 12345678\r\n\r\n", H1_E_TRAILER_TOO_LARGE),
		C_OK("no trailer", "0\r\n\r\n", ""),
		C_BAD("trailer too many", "0\r\nA:\r\nB:\r\nC:\r\n\r\n", H1_E_TRAILER_TOO_LARGE),
	};
	for (size_t i = 0; i < sizeof(lc) / sizeof(lc[0]); i++) {
		struct chunk_out whole;
		chunk_feed(lc[i].in, lc[i].len, NULL, 0, true, &lim, &whole);
		if (whole.res != lc[i].res || whole.err != lc[i].err) {
			print_error("limit case '%s': res %d err '%s'\n", lc[i].name, whole.res,
				    h1_err_str(whole.err));
			fail();
		}
		for (size_t k = 1; k < lc[i].len; k++) {
			chunk_feed(lc[i].in, lc[i].len, &k, 1, true, &lim, &o);
			chunk_same(&whole, &o, true);
		}
	}

	/* a large chunk streams through in pieces, nothing buffered */
	struct h1_chunked c;
	h1_chunked_init(&c, NULL, true);
	size_t used;
	struct h1_slice d;
	assert_int_equal(h1_chunked_feed(&c, "100000\r\n", 8, &used, &d), H1_NEED_MORE);
	static char big[4096];
	memset(big, 'x', sizeof(big));
	uint64_t total = 0;
	for (int i = 0; i < 256; i++) {
		assert_int_equal(h1_chunked_feed(&c, big, sizeof(big), &used, &d), H1_DATA);
		assert_int_equal(used, sizeof(big));
		total += d.len;
	}
	assert_int_equal(total, 0x100000);
	assert_int_equal(h1_chunked_feed(&c, "\r\n0\r\n\r\n", 7, &used, &d), H1_DONE);
	assert_int_equal(used, 7);
	assert_int_equal(c.data_bytes, 0x100000);
	/* final: the same answer, nothing used */
	assert_int_equal(h1_chunked_feed(&c, "x", 1, &used, &d), H1_DONE);
	assert_int_equal(used, 0);
}

/* --- body walker ---------------------------------------------------------------------- */

static void test_body(void **state)
{
	(void)state;
	struct h1_msg m = { 0 };
	struct h1_body b;
	size_t used;
	struct h1_slice d;

	m.body = H1_BODY_LENGTH;
	m.content_length = 10;
	h1_body_init(&b, &m, NULL, true);
	assert_int_equal(h1_body_feed(&b, "0123", 4, &used, &d), H1_DATA);
	assert_int_equal(used, 4);
	assert_int_equal(d.off, 0);
	assert_int_equal(d.len, 4);
	assert_int_equal(h1_body_feed(&b, "456789GET", 9, &used, &d), H1_DATA);
	assert_int_equal(used, 6);
	assert_int_equal(h1_body_feed(&b, "GET", 3, &used, &d), H1_DONE);
	assert_int_equal(used, 0);

	h1_body_init(&b, &m, NULL, false);
	assert_int_equal(h1_body_feed(&b, "0123", 4, &used, NULL), H1_NEED_MORE);
	assert_int_equal(h1_body_feed(&b, "456789GET", 9, &used, NULL), H1_DONE);
	assert_int_equal(used, 6);

	m.content_length = 0;
	h1_body_init(&b, &m, NULL, true);
	assert_int_equal(h1_body_feed(&b, "GET", 3, &used, &d), H1_DONE);
	assert_int_equal(used, 0);

	m.body = H1_BODY_NONE;
	h1_body_init(&b, &m, NULL, true);
	assert_int_equal(h1_body_feed(&b, "GET", 3, &used, &d), H1_DONE);
	assert_int_equal(used, 0);

	m.body = H1_BODY_CLOSE;
	h1_body_init(&b, &m, NULL, false);
	assert_int_equal(h1_body_feed(&b, "abc", 3, &used, &d), H1_NEED_MORE);
	assert_int_equal(used, 3);

	m.body = H1_BODY_CHUNKED;
	h1_body_init(&b, &m, NULL, false);
	assert_int_equal(h1_body_feed(&b, "1\r\na\r\n0\r\n\r\nX", 12, &used, &d), H1_DONE);
	assert_int_equal(used, 11);
	h1_body_init(&b, &m, NULL, false);
	assert_int_equal(h1_body_feed(&b, "1\r\naX", 5, &used, &d), H1_ERROR);
	assert_int_equal(b.ch.err, H1_E_CHUNK_CRLF);
	assert_int_equal(h1_err_status(b.ch.err, false), 400);
	assert_int_equal(h1_err_status(b.ch.err, true), 502);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_requests),
		cmocka_unit_test(test_hostile_requests),
		cmocka_unit_test(test_request_semantics),
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_responses),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_body),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
