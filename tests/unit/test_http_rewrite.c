/* test_http_rewrite.c - head rewriting for the next hop: tables of request and response heads in, exact heads out, each re-parsed; local answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/sbuf.h"
#include "proto/http1.h"
#include "proto/http_rewrite.h"

#define MAX_HDR 128

/* Parses in (a request, or a response to req) into p/hdr; fails the test
 * unless the head is complete and valid. */
static void parse_ok(const char *what, const char *in, size_t len, bool response,
		     enum h1_method req, struct h1_parser *p, struct h1_header *hdr)
{
	if (response)
		h1_response_init(p, NULL, hdr, MAX_HDR, req);
	else
		h1_request_init(p, NULL, hdr, MAX_HDR);
	enum h1_res r = h1_parse(p, in, len);
	if (r != H1_DONE) {
		print_error("%s: %s does not parse (res %d, %s at %u):\n%.*s\n", what,
			    response ? "response" : "request", r, h1_err_str(p->err), p->err_off,
			    (int)len, in);
		fail();
	}
}

/* The output must be one whole head: parsed again, it ends exactly at its
 * end, with the same method / status and the same framing as the input. */
static void reparse_same(const char *what, const struct sbuf *out, bool response,
			 enum h1_method req, const struct h1_msg *orig)
{
	struct h1_parser q;
	struct h1_header hdr[MAX_HDR];
	assert_false(out->oom);
	parse_ok(what, out->data, out->len, response, req, &q, hdr);
	assert_int_equal(q.msg.head_len, out->len);
	if (response) {
		assert_int_equal(q.msg.status, orig->status);
	} else {
		assert_int_equal(q.msg.method, orig->method);
	}
	assert_int_equal(q.msg.body, orig->body);
	assert_int_equal(q.msg.content_length, orig->content_length);
}

static void assert_text(const char *what, const struct sbuf *out, const char *want)
{
	if (out->len != strlen(want) || memcmp(out->data, want, out->len) != 0) {
		print_error("%s:\n--- got ---\n%.*s--- want ---\n%s-----------\n", what,
			    (int)out->len, out->data, want);
		fail();
	}
}

/* --- requests -------------------------------------------------------------------- */

enum { F_FWD = 1, F_UPG = 2, F_HTTP10 = 4, F_V6 = 8 };

struct req_case {
	const char *name;
	const char *in;
	unsigned flags;
	const char *default_host;
	const char *want;
};

static const struct req_case req_cases[] = {
	/* Host placement and origin-form */
	{ "plain", "GET /a?b HTTP/1.1\r\nHost: h.example\r\nAccept: */*\r\n\r\n", 0, NULL,
	  "GET /a?b HTTP/1.1\r\nHost: h.example\r\nAccept: */*\r\n\r\n" },
	{ "host moved first", "GET / HTTP/1.1\r\nAccept: */*\r\nUser-Agent: t\r\nHost: h\r\n\r\n",
	  0, NULL, "GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n" },
	{ "leading empty lines dropped", "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 0, NULL,
	  "GET / HTTP/1.1\r\nHost: h\r\n\r\n" },
	{ "absolute-form path and query", "GET http://a.example/x?y HTTP/1.1\r\nHost: b.example\r\n\r\n",
	  0, NULL, "GET /x?y HTTP/1.1\r\nHost: a.example\r\n\r\n" },
	{ "absolute-form query only", "GET http://a.example?q HTTP/1.1\r\nHost: a.example\r\n\r\n",
	  0, NULL, "GET /?q HTTP/1.1\r\nHost: a.example\r\n\r\n" },
	{ "absolute-form no path", "GET http://a.example HTTP/1.1\r\nHost: x\r\n\r\n", 0, NULL,
	  "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n" },
	{ "absolute-form https with port", "POST https://s.example:8443/p HTTP/1.1\r\nHost: s\r\n"
	  "Content-Length: 0\r\n\r\n", 0, NULL,
	  "POST /p HTTP/1.1\r\nHost: s.example:8443\r\nContent-Length: 0\r\n\r\n" },
	{ "absolute-form OPTIONS no path is *", "OPTIONS http://a.example:81 HTTP/1.1\r\nHost: a\r\n\r\n",
	  0, NULL, "OPTIONS * HTTP/1.1\r\nHost: a.example:81\r\n\r\n" },
	{ "absolute-form OPTIONS with query", "OPTIONS http://a.example?x HTTP/1.1\r\nHost: a\r\n\r\n",
	  0, NULL, "OPTIONS /?x HTTP/1.1\r\nHost: a.example\r\n\r\n" },
	{ "asterisk-form kept", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0, NULL,
	  "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n" },
	{ "default host for HTTP/1.0", "GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", F_HTTP10,
	  "192.0.2.10:80", "GET / HTTP/1.0\r\nHost: 192.0.2.10:80\r\nAccept: */*\r\n"
	  "Connection: close\r\n\r\n" },
	{ "default host loses to a Host", "GET / HTTP/1.0\r\nHost: h\r\n\r\n", F_HTTP10, "192.0.2.10:80",
	  "GET / HTTP/1.0\r\nHost: h\r\nConnection: close\r\n\r\n" },
	{ "HTTP/1.0 without any host", "GET / HTTP/1.0\r\n\r\n", F_HTTP10, NULL,
	  "GET / HTTP/1.0\r\nHost: \r\nConnection: close\r\n\r\n" },
	{ "HTTP/1.0 keep-alive dropped", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n"
	  "Keep-Alive: timeout=5\r\nHost: h\r\n\r\n", F_HTTP10, NULL,
	  "GET / HTTP/1.0\r\nHost: h\r\nConnection: close\r\n\r\n" },

	/* hop-by-hop fields */
	{ "hop-by-hop removed", "POST /u HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n"
	  "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
	  "Upgrade: h2c\r\nExpect: 100-continue\r\nContent-Length: 3\r\nX-Keep: 1\r\n\r\n", 0, NULL,
	  "POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX-Keep: 1\r\n\r\n" },
	{ "fields named in Connection", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n"
	  "Connection: x-a, X-B\r\nX-B: 2\r\nX-C: 3\r\nConnection: ,x-d ,\r\nX-D: 4\r\n\r\n", 0, NULL,
	  "GET / HTTP/1.1\r\nHost: h\r\nX-C: 3\r\n\r\n" },
	{ "Connection never unframes: Content-Length", "POST / HTTP/1.1\r\nHost: h\r\n"
	  "Connection: Content-Length, Host\r\nContent-Length: 2\r\n\r\n", 0, NULL,
	  "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n" },
	{ "Connection never unframes: Transfer-Encoding", "POST / HTTP/1.1\r\nHost: h\r\n"
	  "Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n", 0, NULL,
	  "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" },

	/* upgrade */
	{ "upgrade kept when upgrading", "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
	  "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", F_UPG, NULL,
	  "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
	  "Connection: upgrade\r\n\r\n" },
	{ "upgrade dropped otherwise", "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
	  "Connection: Upgrade\r\n\r\n", 0, NULL, "GET /ws HTTP/1.1\r\nHost: h\r\n\r\n" },

	/* forwarded */
	{ "forwarded adds three fields", "GET / HTTP/1.1\r\nHost: h.example\r\n\r\n", F_FWD, NULL,
	  "GET / HTTP/1.1\r\nHost: h.example\r\nX-Forwarded-For: 192.0.2.1\r\n"
	  "Forwarded: for=192.0.2.1;proto=http;host=h.example\r\nVia: 1.1 pandit\r\n\r\n" },
	{ "XFF and Via joined, order kept", "GET / HTTP/1.1\r\nX-Forwarded-For: 198.51.100.1\r\n"
	  "Via: 1.0 a\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\nX-Other: o\r\n"
	  "Via: 1.1 b\r\nX-Forwarded-For:\r\n\r\n", F_FWD, NULL,
	  "GET / HTTP/1.1\r\nHost: h\r\nX-Other: o\r\n"
	  "X-Forwarded-For: 198.51.100.1, 10.0.0.1, 10.0.0.2, 192.0.2.1\r\n"
	  "Forwarded: for=192.0.2.1;proto=http;host=h\r\nVia: 1.0 a, 1.1 b, 1.1 pandit\r\n\r\n" },
	{ "received Forwarded kept, ours after", "GET / HTTP/1.1\r\nHost: h\r\n"
	  "Forwarded: for=198.51.100.1\r\n\r\n", F_FWD, NULL,
	  "GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=198.51.100.1\r\nX-Forwarded-For: 192.0.2.1\r\n"
	  "Forwarded: for=192.0.2.1;proto=http;host=h\r\nVia: 1.1 pandit\r\n\r\n" },
	{ "IPv6 client bracketed and quoted", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", F_FWD | F_V6, NULL,
	  "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 2001:db8::1\r\n"
	  "Forwarded: for=\"[2001:db8::1]\";proto=http;host=h\r\nVia: 1.1 pandit\r\n\r\n" },
	{ "host with port quoted", "GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", F_FWD, NULL,
	  "GET / HTTP/1.1\r\nHost: a.example:8080\r\nX-Forwarded-For: 192.0.2.1\r\n"
	  "Forwarded: for=192.0.2.1;proto=http;host=\"a.example:8080\"\r\nVia: 1.1 pandit\r\n\r\n" },
	{ "IP-literal host quoted", "GET / HTTP/1.1\r\nHost: [2001:db8::2]\r\n\r\n", F_FWD, NULL,
	  "GET / HTTP/1.1\r\nHost: [2001:db8::2]\r\nX-Forwarded-For: 192.0.2.1\r\n"
	  "Forwarded: for=192.0.2.1;proto=http;host=\"[2001:db8::2]\"\r\nVia: 1.1 pandit\r\n\r\n" },
	{ "sub-delims in host cannot add parameters", "GET / HTTP/1.1\r\nHost: x;for=6.6.6.6,by=y\r\n\r\n",
	  F_FWD, NULL, "GET / HTTP/1.1\r\nHost: x;for=6.6.6.6,by=y\r\nX-Forwarded-For: 192.0.2.1\r\n"
	  "Forwarded: for=192.0.2.1;proto=http;host=\"x;for=6.6.6.6,by=y\"\r\nVia: 1.1 pandit\r\n\r\n" },
	{ "absolute-form authority is the forwarded host", "GET http://a.example/ HTTP/1.1\r\n"
	  "Host: b.example\r\n\r\n", F_FWD, NULL,
	  "GET / HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 192.0.2.1\r\n"
	  "Forwarded: for=192.0.2.1;proto=http;host=a.example\r\nVia: 1.1 pandit\r\n\r\n" },
	{ "no host received: no host= (the default host is ours)", "GET / HTTP/1.0\r\n\r\n",
	  F_FWD | F_HTTP10, "192.0.2.10:80",
	  "GET / HTTP/1.0\r\nHost: 192.0.2.10:80\r\nConnection: close\r\nX-Forwarded-For: 192.0.2.1\r\n"
	  "Forwarded: for=192.0.2.1;proto=http\r\nVia: 1.1 pandit\r\n\r\n" },
	{ "XFF named in Connection is not joined", "GET / HTTP/1.1\r\nHost: h\r\n"
	  "Connection: X-Forwarded-For, via\r\nX-Forwarded-For: 6.6.6.6\r\nVia: 1.0 evil\r\n\r\n",
	  F_FWD, NULL, "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\n"
	  "Forwarded: for=192.0.2.1;proto=http;host=h\r\nVia: 1.1 pandit\r\n\r\n" },
	{ "forwarded off: untouched, nothing added", "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\n"
	  "Host: h\r\nVia: 1.0 a\r\nX-Forwarded-For: 2.2.2.2\r\nForwarded: for=1.1.1.1\r\n\r\n", 0, NULL,
	  "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nVia: 1.0 a\r\n"
	  "X-Forwarded-For: 2.2.2.2\r\nForwarded: for=1.1.1.1\r\n\r\n" },
	{ "upgrade and forwarded", "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n"
	  "Upgrade: websocket\r\n\r\n", F_FWD | F_UPG, NULL,
	  "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
	  "X-Forwarded-For: 192.0.2.1\r\nForwarded: for=192.0.2.1;proto=http;host=h\r\n"
	  "Via: 1.1 pandit\r\n\r\n" },
};

static void test_request_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++) {
		const struct req_case *t = &req_cases[i];
		struct h1_parser p;
		struct h1_header hdr[MAX_HDR];
		parse_ok(t->name, t->in, strlen(t->in), false, H1_M_GET, &p, hdr);
		struct http_req_rewrite rw = {
			.client_ip = t->flags & F_V6 ? "2001:db8::1" : "192.0.2.1",
			.client_v6 = t->flags & F_V6,
			.forwarded = t->flags & F_FWD,
			.upgrade = t->flags & F_UPG,
			.http10 = t->flags & F_HTTP10,
			.default_host = t->default_host,
		};
		struct sbuf out;
		sbuf_init(&out);
		http_rewrite_request(&out, t->in, &p.msg, &rw);
		assert_text(t->name, &out, t->want);
		reparse_same(t->name, &out, false, H1_M_GET, &p.msg);
		sbuf_free(&out);
	}
}

/* The rewritten head is only the head: a body or a pipelined request after
 * it in the buffer is left alone, and chunked framing is kept. */
static void test_request_body_untouched(void **state)
{
	(void)state;
	static const char in[] = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
				 "Expect: 100-continue\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
	struct h1_parser p;
	struct h1_header hdr[MAX_HDR];
	parse_ok("chunked", in, sizeof(in) - 1, false, H1_M_GET, &p, hdr);
	assert_int_equal(p.msg.body, H1_BODY_CHUNKED);
	struct http_req_rewrite rw = { .client_ip = "192.0.2.1", .forwarded = true };
	struct sbuf out;
	sbuf_init(&out);
	http_rewrite_request(&out, in, &p.msg, &rw);
	assert_text("chunked", &out, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
		    "X-Forwarded-For: 192.0.2.1\r\nForwarded: for=192.0.2.1;proto=http;host=h\r\n"
		    "Via: 1.1 pandit\r\n\r\n");
	reparse_same("chunked", &out, false, H1_M_GET, &p.msg);
	sbuf_free(&out);
}

/* --- responses ------------------------------------------------------------------- */

enum { R_VIA = 1, R_CLOSE = 2, R_HTTP10 = 4, R_HEAD = 8 };

struct resp_case {
	const char *name;
	const char *in;
	unsigned flags;
	const char *want;
};

static const struct resp_case resp_cases[] = {
	{ "plain", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0,
	  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" },
	{ "empty reason, no SP", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 0,
	  "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n" },
	{ "empty reason with SP", "HTTP/1.1 204 \r\n\r\n", 0, "HTTP/1.1 204 \r\n\r\n" },
	{ "reason with spaces", "HTTP/1.1 404 Not  Found here\r\nContent-Length: 0\r\n\r\n", 0,
	  "HTTP/1.1 404 Not  Found here\r\nContent-Length: 0\r\n\r\n" },
	{ "HTTP/1.0 upstream", "HTTP/1.0 200 OK\r\nServer: old\r\n\r\n", R_CLOSE,
	  "HTTP/1.1 200 OK\r\nServer: old\r\nConnection: close\r\n\r\n" },
	{ "hop-by-hop removed", "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal, "
	  "content-length\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
	  "TE: trailers\r\nUpgrade: h2c\r\nX-Internal: secret\r\nContent-Length: 0\r\n"
	  "X-Public: 1\r\n\r\n", 0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Public: 1\r\n\r\n" },
	{ "chunked kept even when named", "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\n"
	  "Transfer-Encoding: chunked\r\n\r\n", 0,
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" },
	{ "close", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", R_CLOSE,
	  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" },
	{ "HTTP/1.0 client kept alive", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", R_HTTP10,
	  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n" },
	{ "HTTP/1.0 client closed", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	  R_HTTP10 | R_CLOSE, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" },
	{ "101 keeps Upgrade", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	  "Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n", R_CLOSE,
	  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n"
	  "Connection: upgrade\r\n\r\n" },
	{ "Upgrade dropped from a 426", "HTTP/1.1 426 Upgrade Required\r\nUpgrade: h2c\r\n"
	  "Content-Length: 0\r\n\r\n", 0, "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n" },
	{ "Via joined", "HTTP/1.1 200 OK\r\nVia: 1.0 a\r\nContent-Length: 0\r\nVia: 1.1 b\r\n\r\n",
	  R_VIA, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nVia: 1.0 a, 1.1 b, 1.1 pandit\r\n\r\n" },
	{ "Via added", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", R_VIA | R_CLOSE,
	  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\nVia: 1.1 pandit\r\n\r\n" },
	{ "Via untouched without via", "HTTP/1.1 200 OK\r\nVia: 1.0 a\r\nContent-Length: 0\r\n"
	  "Via: 1.1 b\r\n\r\n", 0, "HTTP/1.1 200 OK\r\nVia: 1.0 a\r\nContent-Length: 0\r\n"
	  "Via: 1.1 b\r\n\r\n" },
	{ "interim 100", "HTTP/1.1 100 Continue\r\n\r\n", R_VIA,
	  "HTTP/1.1 100 Continue\r\nVia: 1.1 pandit\r\n\r\n" },
	{ "304 keeps its Content-Length", "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n"
	  "Content-Length: 1234\r\n\r\n", 0,
	  "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 1234\r\n\r\n" },
	{ "answer to HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nKeep-Alive: max=3\r\n\r\n",
	  R_HEAD, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n" },
};

static void test_response_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(resp_cases) / sizeof(resp_cases[0]); i++) {
		const struct resp_case *t = &resp_cases[i];
		enum h1_method req = t->flags & R_HEAD ? H1_M_HEAD : H1_M_GET;
		struct h1_parser p;
		struct h1_header hdr[MAX_HDR];
		parse_ok(t->name, t->in, strlen(t->in), true, req, &p, hdr);
		struct http_resp_rewrite rw = { .via = t->flags & R_VIA, .close = t->flags & R_CLOSE,
						.client_http10 = t->flags & R_HTTP10 };
		struct sbuf out;
		sbuf_init(&out);
		http_rewrite_response(&out, t->in, &p.msg, &rw);
		assert_text(t->name, &out, t->want);
		reparse_same(t->name, &out, true, req, &p.msg);
		sbuf_free(&out);
	}
}

/* --- local answers --------------------------------------------------------------- */

static void test_local_response(void **state)
{
	(void)state;
	static const uint16_t statuses[] = { 400, 404, 405, 408, 413, 414, 417, 431,
					     500, 501, 502, 503, 504, 505, 418 };
	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		for (int close = 0; close < 2; close++) {
			uint16_t st = statuses[i];
			char body[128];
			snprintf(body, sizeof(body), "%u %s\n", st, http_status_reason(st));

			/* the full answer: head, then exactly Content-Length bytes */
			struct sbuf out;
			sbuf_init(&out);
			http_local_response(&out, st, close, false);
			assert_false(out.oom);
			struct h1_parser p;
			struct h1_header hdr[MAX_HDR];
			parse_ok("local", out.data, out.len, true, H1_M_GET, &p, hdr);
			assert_int_equal(p.msg.status, st);
			assert_true(h1_slice_eq(out.data, p.msg.reason, http_status_reason(st)));
			assert_int_equal(p.msg.version_minor, 1);
			assert_int_equal(p.msg.body, H1_BODY_LENGTH);
			assert_int_equal(p.msg.content_length, strlen(body));
			assert_int_equal(out.len, p.msg.head_len + strlen(body));
			assert_memory_equal(out.data + p.msg.head_len, body, strlen(body));
			assert_int_equal(!!(p.msg.conn & H1_CONN_CLOSE), close);
			assert_int_equal(p.msg.keep_alive, !close);
			uint32_t n_conn = 0;
			for (uint32_t k = 0; k < p.msg.n_hdr; k++)
				n_conn += hdr[k].id == H1_H_CONNECTION;
			assert_int_equal(n_conn, close ? 1 : 0);

			/* the answer to HEAD: the same head, no body */
			struct sbuf head;
			sbuf_init(&head);
			http_local_response(&head, st, close, true);
			assert_false(head.oom);
			struct h1_parser q;
			struct h1_header qh[MAX_HDR];
			parse_ok("local HEAD", head.data, head.len, true, H1_M_HEAD, &q, qh);
			assert_int_equal(q.msg.status, st);
			assert_int_equal(q.msg.head_len, head.len);
			assert_int_equal(q.msg.body, H1_BODY_NONE);
			assert_int_equal(head.len, p.msg.head_len);
			assert_memory_equal(head.data, out.data, head.len);
			sbuf_free(&out);
			sbuf_free(&head);
		}
	}
}

static void test_status_reason(void **state)
{
	(void)state;
	assert_string_equal(http_status_reason(400), "Bad Request");
	assert_string_equal(http_status_reason(404), "Not Found");
	assert_string_equal(http_status_reason(413), "Content Too Large");
	assert_string_equal(http_status_reason(431), "Request Header Fields Too Large");
	assert_string_equal(http_status_reason(502), "Bad Gateway");
	assert_string_equal(http_status_reason(504), "Gateway Timeout");
	assert_string_equal(http_status_reason(299), "Error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_table),
		cmocka_unit_test(test_request_body_untouched),
		cmocka_unit_test(test_response_table),
		cmocka_unit_test(test_local_response),
		cmocka_unit_test(test_status_reason),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
