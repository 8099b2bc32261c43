/* test_admin_http.c - the request-head parser on valid and hostile input, and the admin endpoint over loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "admin/http_req.h"
#include "core/log.h"
#include "lb/target.h"
#include "runtime/runtime.h"
#include "stats/stats.h"
#include "steer/steer.h"

/* --- http_req_parse: a table of cases ---------------------------------------- */

struct req_case {
	const char *name;
	const char *in;
	size_t len;		/* 0: strlen(in) */
	int want;		/* 0, -EAGAIN or a status */
	enum http_method method;
	const char *path;
	int minor;
	size_t head_len;	/* 0: the whole input */
};

#define OK(n, s, m, p, v) { n, s, 0, 0, m, p, v, 0 }
#define BAD(n, s, st) { n, s, 0, st, 0, NULL, 0, 0 }

static const struct req_case req_cases[] = {
	OK("minimal 1.1", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_METHOD_GET, "/", 1),
	OK("1.0 without Host", "GET /metrics?x=1&y HTTP/1.0\r\n\r\n", HTTP_METHOD_GET, "/metrics", 0),
	OK("curl-like HEAD", "HEAD /stats HTTP/1.1\r\nHost: 127.0.0.1:9900\r\nUser-Agent: curl/8.0\r\n"
	   "Accept: */*\r\n\r\n", HTTP_METHOD_HEAD, "/stats", 1),
	OK("prometheus-like", "GET /metrics HTTP/1.1\r\nHost: localhost:9900\r\nUser-Agent: Prometheus/2.4\r\n"
	   "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
	   "Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
	   HTTP_METHOD_GET, "/metrics", 1),
	OK("absolute-form", "GET http://localhost:9900/metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
	   HTTP_METHOD_GET, "/metrics", 1),
	OK("absolute-form no path", "GET HTTP://localhost HTTP/1.1\r\nHost: l\r\n\r\n", HTTP_METHOD_GET, "/", 1),
	OK("absolute-form query only", "GET https://h?q HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_METHOD_GET, "/", 1),
	OK("asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_METHOD_OTHER, "*", 1),
	OK("other method", "DELETE /stats HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_METHOD_OTHER, "/stats", 1),
	OK("lowercase get is another method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_METHOD_OTHER, "/", 1),
	OK("obs-text, tab and empty value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xc3\xa9\tb\r\nX-B:\r\n"
	   "X-C:   \r\n\r\n", HTTP_METHOD_GET, "/", 1),
	OK("host case-insensitive", "GET / HTTP/1.1\r\nhOsT: a\r\n\r\n", HTTP_METHOD_GET, "/", 1),
	{ "body not part of the head", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 0, 0,
	  HTTP_METHOD_OTHER, "/x", 1, 48 },
	{ "pipelined rest ignored", "GET / HTTP/1.0\r\n\r\nGET /x HTTP/1.0\r\n\r\n", 0, 0,
	  HTTP_METHOD_GET, "/", 0, 18 },

	BAD("empty", "", -EAGAIN),
	BAD("one byte", "G", -EAGAIN),
	BAD("no CRLF yet", "GET / HTTP/1.1", -EAGAIN),
	BAD("CR at the end", "GET / HTTP/1.1\r", -EAGAIN),
	BAD("headers not ended", "GET / HTTP/1.1\r\nHost: a\r\n", -EAGAIN),
	BAD("last CR", "GET / HTTP/1.1\r\nHost: a\r\n\r", -EAGAIN),
	BAD("half a header", "GET / HTTP/1.1\r\nHost: a\r\nUser-Ag", -EAGAIN),

	BAD("bare LF everywhere", "GET / HTTP/1.1\nHost: a\n\n", 400),
	BAD("bare LF in a header", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),
	BAD("bare LF ending", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
	BAD("bare CR", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400),
	BAD("bare CR in the request line", "GET /\rx HTTP/1.1\r\n\r\n", 400),
	BAD("bare CR then CR", "GET / HTTP/1.1\r\nHost: a\r\n\r\r", 400),
	BAD("double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
	BAD("tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("leading space", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("HTTP/0.9", "GET /\r\n\r\n", 400),
	BAD("no target", "GET HTTP/1.1\r\n\r\n", 400),
	BAD("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("long version", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
	BAD("junk version", "GET / HTTP/x.y\r\nHost: a\r\n\r\n", 400),
	BAD("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
	BAD("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
	BAD("HTTP/0.9 spelled", "GET / HTTP/0.9\r\n\r\n", 505),
	{ "NUL in the target, early", "GET /\0", 6, 400, 0, NULL, 0, 0 },
	BAD("control char in the target", "GET /\x01 HTTP/1.1\r\n\r\n", 400),
	BAD("DEL in the target", "GET /\x7f HTTP/1.1\r\n\r\n", 400),
	BAD("8-bit target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("relative target", "GET a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("query-only target", "GET ?a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("scheme only", "GET http:// HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("other scheme", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("bad method char", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("long method", "ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
	BAD("no method", " / HTTP/1.1\r\n\r\n", 400),
	BAD("missing Host", "GET / HTTP/1.1\r\n\r\n", 400),
	BAD("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHOST: b\r\n\r\n", 400),
	BAD("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
	BAD("tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400),
	BAD("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400),
	BAD("tab fold", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", 400),
	BAD("space before first header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
	BAD("empty name", "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 400),
	BAD("no colon", "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", 400),
	BAD("bad name char", "GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n", 400),
	BAD("control char in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n", 400),
	BAD("ESC in a value, early", "GET / HTTP/1.1\r\nX: \x1b[2J", 400),
	BAD("DEL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400),
	{ "NUL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35, 400, 0, NULL, 0, 0 },
};

static void test_req_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++) {
		const struct req_case *c = &req_cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		struct http_req req;
		int r = http_req_parse(c->in, len, &req);
		if (r != c->want)
			fail_msg("case '%s': got %d, want %d", c->name, r, c->want);
		if (c->want != 0)
			continue;
		if (req.method != c->method || req.version_minor != c->minor)
			fail_msg("case '%s': method %d minor %d", c->name, req.method, req.version_minor);
		if (req.path_len != strlen(c->path) || memcmp(req.path, c->path, req.path_len))
			fail_msg("case '%s': path '%.*s'", c->name, (int)req.path_len, req.path);
		if (req.head_len != (c->head_len ? c->head_len : len))
			fail_msg("case '%s': head_len %zu", c->name, req.head_len);
		/* every strict prefix of a valid head is incomplete, never an error */
		for (size_t k = 0; k < req.head_len; k++) {
			struct http_req p;
			if (http_req_parse(c->in, k, &p) != -EAGAIN)
				fail_msg("case '%s': prefix of %zu bytes not -EAGAIN", c->name, k);
		}
	}
}

/* Builds "GET / HTTP/1.1\r\nHost: a\r\n" + headers + "\r\n" of exactly
 * total bytes (total >= 64), padding one header's value. */
static char *head_of_size(size_t total)
{
	char *b = malloc(total + 1);
	assert_non_null(b);
	const char *start = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
	size_t sl = strlen(start);
	memcpy(b, start, sl);
	memset(b + sl, 'a', total - sl - 4);
	memcpy(b + total - 4, "\r\n\r\n", 4);
	b[total] = '\0';
	return b;
}

static void test_req_limits(void **state)
{
	(void)state;
	struct http_req req;

	/* a head of exactly the limit is fine, one byte more is not */
	char *b = head_of_size(HTTP_REQ_MAX_HEAD);
	assert_int_equal(http_req_parse(b, HTTP_REQ_MAX_HEAD, &req), 0);
	assert_int_equal(req.head_len, HTTP_REQ_MAX_HEAD);
	free(b);
	b = head_of_size(HTTP_REQ_MAX_HEAD + 1);
	assert_int_equal(http_req_parse(b, HTTP_REQ_MAX_HEAD + 1, &req), 431);
	/* and it is refused as soon as the limit is reached */
	assert_int_equal(http_req_parse(b, HTTP_REQ_MAX_HEAD, &req), 431);
	assert_int_equal(http_req_parse(b, HTTP_REQ_MAX_HEAD - 1, &req), -EAGAIN);
	free(b);

	/* a request line alone over the limit */
	size_t n = HTTP_REQ_MAX_HEAD + 100;
	b = malloc(n);
	assert_non_null(b);
	memcpy(b, "GET /", 5);
	memset(b + 5, 'a', n - 5);
	assert_int_equal(http_req_parse(b, n, &req), 414);
	free(b);

	/* too many fields */
	struct sbuf s;
	sbuf_init(&s);
	sbuf_puts(&s, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (unsigned i = 1; i < HTTP_REQ_MAX_HEADERS; i++)
		sbuf_printf(&s, "X-%u: v\r\n", i);
	sbuf_puts(&s, "\r\n");
	assert_int_equal(http_req_parse(s.data, s.len, &req), 0);
	assert_int_equal(req.n_headers, HTTP_REQ_MAX_HEADERS);
	s.len -= 2;
	sbuf_puts(&s, "X-last: v\r\n\r\n");
	assert_int_equal(http_req_parse(s.data, s.len, &req), 431);
	sbuf_free(&s);
}

/* --- the endpoint over loopback ----------------------------------------------------- */

/* A hand-built snapshot of n apps with one target each. */
struct world {
	struct rt_snapshot *snap;
	struct rt_app *apps;
	struct cfg_app *cfgs;
	struct rt_app_target *ats;
	struct target *targets;
	char *names;
	_Atomic int refs;	/* snapshot references handed to admin and not yet returned */
	_Atomic int gets;
	struct admin *adm;
	uint16_t port;
};

static struct world *world_global;	/* for snapshot_put, which has no ctx */

static struct world *world_make(size_t n)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	w->snap = calloc(1, sizeof(*w->snap));
	w->apps = calloc(n + 1, sizeof(*w->apps));
	w->cfgs = calloc(n + 1, sizeof(*w->cfgs));
	w->ats = calloc(n + 1, sizeof(*w->ats));
	w->targets = calloc(n + 1, sizeof(*w->targets));
	w->names = calloc(n + 1, 64);
	assert_true(w->snap && w->apps && w->cfgs && w->ats && w->targets && w->names);
	w->snap->apps = calloc(n + 1, sizeof(*w->snap->apps));
	assert_non_null(w->snap->apps);
	w->snap->n_apps = n;
	w->snap->generation = 5;
	for (size_t i = 0; i < n; i++) {
		char *an = w->names + i * 64;
		snprintf(an, 32, "app-%zu", i);
		snprintf(an + 32, 32, "192.0.2.%zu:%zu", i % 250, 1000 + i);
		w->cfgs[i].name = an;
		w->targets[i].name = an + 32;
		atomic_store(&w->targets[i].up, i % 2 == 0);
		w->ats[i].t = &w->targets[i];
		w->ats[i].stats = conn_stats_new();
		w->apps[i].id = (uint32_t)i + 1;
		w->apps[i].cfg = &w->cfgs[i];
		w->apps[i].stats = conn_stats_new();
		assert_true(w->ats[i].stats && w->apps[i].stats);
		stats_add(&w->apps[i].stats->accepted, i);
		stats_hist_observe(&w->apps[i].stats->connect_latency, i * 10);
		w->apps[i].targets = &w->ats[i];
		w->apps[i].n_targets = 1;
		w->snap->apps[i] = &w->apps[i];
	}
	return w;
}

static struct rt_snapshot *src_get(void *ctx)
{
	struct world *w = ctx;
	atomic_fetch_add(&w->refs, 1);
	atomic_fetch_add(&w->gets, 1);
	return w->snap;
}

static void src_put(struct rt_snapshot *s)
{
	if (s != world_global->snap)
		abort();	/* runs on the admin thread: no cmocka assertions there */
	atomic_fetch_sub(&world_global->refs, 1);
}

static int src_steer(void *ctx, struct steer_counters *out)
{
	(void)ctx;
	for (unsigned i = 0; i < PANDIT_STEER_STAT_MAX; i++)
		out->v[i] = 100 + i;
	return 0;
}

static void world_start(struct world *w, const struct admin_opts *opts)
{
	memset(&stats_global, 0, sizeof(stats_global));	/* uptime 0: output is reproducible */
	world_global = w;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = admin_listen((struct sockaddr *)&sin, sizeof(sin));
	assert_true(fd >= 0);
	socklen_t sl = sizeof(sin);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	w->port = ntohs(sin.sin_port);
	struct admin_source src = { .snapshot_get = src_get, .snapshot_put = src_put,
				    .steer_counters = src_steer, .ctx = w };
	assert_int_equal(admin_start(fd, &src, opts, &w->adm), 0);
}

static void world_free(struct world *w)
{
	admin_stop(w->adm);
	assert_int_equal(atomic_load(&w->refs), 0);	/* every snapshot reference returned */
	for (size_t i = 0; i < w->snap->n_apps; i++) {
		conn_stats_put(w->ats[i].stats);
		conn_stats_put(w->apps[i].stats);
	}
	free(w->snap->apps);
	free(w->snap);
	free(w->apps);
	free(w->cfgs);
	free(w->ats);
	free(w->targets);
	free(w->names);
	free(w);
	world_global = NULL;
}

static int dial(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	/* a bound on every wait, so a bug fails the test instead of hanging it */
	struct timeval tv = { .tv_sec = 30 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
		assert_true(n > 0);
		data += n;
		len -= (size_t)n;
	}
}

/* Reads until EOF (or a reset after some data) into out; returns 0 on EOF. */
static int read_all(int fd, struct sbuf *out, size_t piece)
{
	char buf[65536];
	if (piece > sizeof(buf))
		piece = sizeof(buf);
	for (;;) {
		ssize_t n = recv(fd, buf, piece, 0);
		if (n > 0) {
			sbuf_append(out, buf, (size_t)n);
			continue;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		return -errno;
	}
}

struct resp {
	int status;
	struct sbuf raw;
	const char *body;	/* decoded when chunked */
	size_t body_len;
	struct sbuf dechunked;
	char headers[4096];
	bool head;		/* answer to HEAD: no body whatever the headers say */
};

static const char *resp_header(const struct resp *r, const char *name)
{
	static char val[512];
	size_t nl = strlen(name);
	for (const char *p = strstr(r->headers, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
			const char *v = p + 2 + nl + 1;
			while (*v == ' ')
				v++;
			const char *e = strstr(v, "\r\n");
			size_t l = (size_t)(e - v) < sizeof(val) - 1 ? (size_t)(e - v) : sizeof(val) - 1;
			memcpy(val, v, l);
			val[l] = '\0';
			return val;
		}
	}
	return NULL;
}

static void resp_free(struct resp *r)
{
	sbuf_free(&r->raw);
	sbuf_free(&r->dechunked);
}

/* Parses a raw response; decodes a chunked body (and checks its framing). */
static void resp_parse(struct resp *r)
{
	assert_true(r->raw.len > 12);
	assert_int_equal(sscanf(r->raw.data, "HTTP/1.1 %d ", &r->status), 1);
	const char *end = strstr(r->raw.data, "\r\n\r\n");
	assert_non_null(end);
	size_t hl = (size_t)(end - r->raw.data) + 2;
	assert_true(hl < sizeof(r->headers));
	memcpy(r->headers, r->raw.data, hl);
	r->headers[hl] = '\0';
	r->body = end + 4;
	r->body_len = r->raw.len - (size_t)(r->body - r->raw.data);
	const char *te = resp_header(r, "Transfer-Encoding");
	if (r->head)
		assert_int_equal(r->body_len, 0);
	else if (te && !strcmp(te, "chunked")) {
		const char *p = r->body, *e = r->body + r->body_len;
		for (;;) {
			char *q;
			unsigned long n = strtoul(p, &q, 16);
			assert_true(q > p && q + 2 <= e && q[0] == '\r' && q[1] == '\n');
			p = q + 2;
			if (n == 0) {
				assert_true(p + 2 == e && p[0] == '\r' && p[1] == '\n');
				break;
			}
			assert_true(p + n + 2 <= e);
			sbuf_append(&r->dechunked, p, n);
			assert_true(p[n] == '\r' && p[n + 1] == '\n');
			p += n + 2;
		}
		r->body = r->dechunked.data ? r->dechunked.data : "";
		r->body_len = r->dechunked.len;
	}
}

static void exchange(uint16_t port, const char *req, size_t len, struct resp *r, size_t piece)
{
	memset(r, 0, sizeof(*r));
	sbuf_init(&r->raw);
	sbuf_init(&r->dechunked);
	r->head = strncmp(req, "HEAD ", 5) == 0;
	int fd = dial(port);
	send_all(fd, req, len ? len : strlen(req));
	assert_int_equal(read_all(fd, &r->raw, piece), 0);
	assert_false(r->raw.oom);
	close(fd);
	resp_parse(r);
}

static void test_admin_routes(void **state)
{
	(void)state;
	struct world *w = world_make(3);
	world_start(w, NULL);
	struct resp r;

	/* /metrics: the renderer's text, with its content type and length */
	exchange(w->port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 0, &r, 65536);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
	assert_string_equal(resp_header(&r, "Connection"), "close");
	struct sbuf want;
	sbuf_init(&want);
	struct steer_counters sc;
	src_steer(NULL, &sc);
	stats_render_prometheus(&want, w->snap, &sc);
	assert_int_equal(strtoul(resp_header(&r, "Content-Length"), NULL, 10), want.len);
	assert_int_equal(r.body_len, want.len);
	assert_memory_equal(r.body, want.data, want.len);
	assert_non_null(strstr(r.body, "pandit_steer_total{outcome=\"assigned\"} 100\n"));
	assert_non_null(strstr(r.body, "pandit_connections_accepted_total{app=\"app-2\"} 2\n"));
	resp_free(&r);

	/* /stats: the JSON line and a newline */
	exchange(w->port, "GET /stats HTTP/1.0\r\n\r\n", 0, &r, 65536);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "Content-Type"), "application/json");
	sbuf_reset(&want);
	stats_render_json(&want, w->snap, &sc);
	sbuf_puts(&want, "\n");
	assert_int_equal(r.body_len, want.len);
	assert_memory_equal(r.body, want.data, want.len);
	resp_free(&r);

	/* HEAD: the headers of GET, no body */
	exchange(w->port, "HEAD /stats HTTP/1.1\r\nHost: x\r\n\r\n", 0, &r, 65536);
	assert_int_equal(r.status, 200);
	assert_int_equal(strtoul(resp_header(&r, "Content-Length"), NULL, 10), want.len);
	assert_int_equal(r.body_len, 0);
	resp_free(&r);

	/* the index */
	exchange(w->port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, &r, 65536);
	assert_int_equal(r.status, 200);
	assert_non_null(memmem(r.body, r.body_len, "/metrics", 8));
	resp_free(&r);

	static const struct { const char *req; int status; } errs[] = {
		{ "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404 },
		{ "GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n", 404 },
		{ "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405 },
		{ "DELETE /stats HTTP/1.0\r\n\r\n", 405 },
		{ "GET /metrics\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\nHost: x\n\n", 400 },
		{ "GET / HTTP/1.1\r\n\r\n", 400 },
		{ "GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505 },
	};
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		exchange(w->port, errs[i].req, 0, &r, 65536);
		if (r.status != errs[i].status)
			fail_msg("'%s': status %d", errs[i].req, r.status);
		assert_string_equal(resp_header(&r, "Connection"), "close");
		if (r.status == 405)
			assert_string_equal(resp_header(&r, "Allow"), "GET, HEAD");
		resp_free(&r);
	}

	/* a client that shuts its side right after the request is still answered */
	{
		int fd = dial(w->port);
		send_all(fd, "GET / HTTP/1.0\r\n\r\n", 18);
		assert_int_equal(shutdown(fd, SHUT_WR), 0);
		memset(&r, 0, sizeof(r));
		assert_int_equal(read_all(fd, &r.raw, 65536), 0);
		close(fd);
		resp_parse(&r);
		assert_int_equal(r.status, 200);
		resp_free(&r);
	}

	/* a head over 8 KiB */
	char *big = head_of_size(HTTP_REQ_MAX_HEAD + 500);
	exchange(w->port, big, 0, &r, 65536);
	assert_int_equal(r.status, 431);
	resp_free(&r);
	free(big);

	sbuf_free(&want);
	assert_true(atomic_load(&w->gets) >= 3);
	world_free(w);
}

/* A client that never finishes its head gets 408, then the close. */
static void test_admin_slowloris(void **state)
{
	(void)state;
	struct world *w = world_make(1);
	struct admin_opts o = { .header_timeout_ms = 200 };
	world_start(w, &o);
	int fd = dial(w->port);
	send_all(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ", 40);
	struct resp r;
	memset(&r, 0, sizeof(r));
	assert_int_equal(read_all(fd, &r.raw, 65536), 0);
	close(fd);
	resp_parse(&r);
	assert_int_equal(r.status, 408);
	resp_free(&r);
	world_free(w);
}

/* Over max_clients the newest connection is closed; the others are served. */
static void test_admin_client_limit(void **state)
{
	(void)state;
	struct world *w = world_make(1);
	struct admin_opts o = { .max_clients = 3 };
	world_start(w, &o);
	int fds[3];
	for (int i = 0; i < 3; i++) {
		fds[i] = dial(w->port);
		send_all(fds[i], "GET /st", 7);	/* keep them in the middle of a request */
	}
	int extra = dial(w->port);
	char c;
	ssize_t n = recv(extra, &c, 1, 0);
	assert_true(n == 0 || (n < 0 && errno == ECONNRESET));	/* closed without an answer */
	close(extra);
	for (int i = 0; i < 3; i++) {
		send_all(fds[i], "ats HTTP/1.1\r\nHost: x\r\n\r\n", 26);
		struct resp r;
		memset(&r, 0, sizeof(r));
		assert_int_equal(read_all(fds[i], &r.raw, 65536), 0);
		close(fds[i]);
		resp_parse(&r);
		assert_int_equal(r.status, 200);
		resp_free(&r);
	}
	world_free(w);
}

/* 10,000 apps: the page streams in bounded steps to a slow reader, chunked
 * for HTTP/1.1 and delimited by the close for HTTP/1.0, identical to the
 * renderer's output. */
static void test_admin_large(void **state)
{
	(void)state;
	struct world *w = world_make(10000);
	world_start(w, NULL);
	struct steer_counters sc;
	src_steer(NULL, &sc);
	struct sbuf want;
	sbuf_init(&want);
	stats_render_prometheus(&want, w->snap, &sc);
	assert_true(want.len > 4 * 1024 * 1024);

	struct resp r;
	exchange(w->port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 0, &r, 1000);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "Transfer-Encoding"), "chunked");
	assert_null(resp_header(&r, "Content-Length"));
	assert_int_equal(r.body_len, want.len);
	assert_memory_equal(r.body, want.data, want.len);
	resp_free(&r);

	exchange(w->port, "GET /metrics HTTP/1.0\r\n\r\n", 0, &r, 65536);
	assert_int_equal(r.status, 200);
	assert_null(resp_header(&r, "Transfer-Encoding"));
	assert_null(resp_header(&r, "Content-Length"));
	assert_int_equal(r.body_len, want.len);
	assert_memory_equal(r.body, want.data, want.len);
	resp_free(&r);

	sbuf_reset(&want);
	stats_render_json(&want, w->snap, &sc);
	sbuf_puts(&want, "\n");
	exchange(w->port, "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n", 0, &r, 65536);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, want.len);
	assert_memory_equal(r.body, want.data, want.len);
	resp_free(&r);

	exchange(w->port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 0, &r, 65536);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 0);
	resp_free(&r);

	/* several at once, one of them never reading: the others still finish */
	int stuck = dial(w->port);
	send_all(stuck, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 35);
	int fds[4];
	for (int i = 0; i < 4; i++) {
		fds[i] = dial(w->port);
		send_all(fds[i], "GET /stats HTTP/1.0\r\n\r\n", 23);
	}
	for (int i = 0; i < 4; i++) {
		memset(&r, 0, sizeof(r));
		assert_int_equal(read_all(fds[i], &r.raw, 65536), 0);
		close(fds[i]);
		resp_parse(&r);
		assert_int_equal(r.status, 200);
		assert_int_equal(r.body_len, want.len);
		resp_free(&r);
	}
	close(stuck);
	sbuf_free(&want);
	world_free(w);
}

/* A client that asks for a large page and never reads is cut off after
 * the stall time, and its snapshot reference is returned. */
static void test_admin_write_stall(void **state)
{
	(void)state;
	struct world *w = world_make(10000);
	struct admin_opts o = { .write_stall_ms = 200 };
	world_start(w, &o);
	int fd = dial(w->port);
	send_all(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 35);
	/* wait (bounded) until admin took the snapshot and then gave it back */
	int i;
	for (i = 0; i < 2000 && atomic_load(&w->gets) == 0; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&w->gets), 1);
	for (i = 0; i < 2000 && atomic_load(&w->refs) != 0; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&w->refs), 0);
	/* what was sent before the cut, then the end: never the whole page */
	struct sbuf got;
	sbuf_init(&got);
	int rc = read_all(fd, &got, 65536);
	assert_true(rc == 0 || rc == -ECONNRESET);
	assert_true(got.len < 4 * 1024 * 1024);
	sbuf_free(&got);
	close(fd);
	world_free(w);
}

int main(void)
{
	if (getenv("ADMIN_TEST_DEBUG"))
		log_threshold = LOG_DEBUG;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_req_table),
		cmocka_unit_test(test_req_limits),
		cmocka_unit_test(test_admin_routes),
		cmocka_unit_test(test_admin_slowloris),
		cmocka_unit_test(test_admin_client_limit),
		cmocka_unit_test(test_admin_large),
		cmocka_unit_test(test_admin_write_stall),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
