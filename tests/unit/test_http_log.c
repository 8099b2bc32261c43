/* test_http_log.c - unit tests of the HTTP access log: both line formats, escaping, sinks and per-worker buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "python_check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/sbuf.h"
#include "proto/http_log.h"

/* 2026-10-10 13:55:36.123456789 UTC */
static uint64_t t_ref(void)
{
	struct tm tm = { .tm_year = 2026 - 1900, .tm_mon = 9, .tm_mday = 10, .tm_hour = 13,
			 .tm_min = 55, .tm_sec = 36 };
	return (uint64_t)timegm(&tm) * 1000000000ull + 123456789ull;
}

static struct sockaddr_storage v4(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage v6(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
	return ss;
}

#define S(x) x, sizeof(x) - 1

static struct http_log_entry plain_entry(const struct sockaddr_storage *client)
{
	struct http_log_entry e = {
		.client = client,
		.time_ns = t_ref(),
		.method = S("GET"),
		.target = S("/x?a=1"),
		.version_minor = 1,
		.host = S("api.example.com"),
		.referer = S("http://ref.example/"),
		.user_agent = S("curl/8.0 (x86_64)"),
		.status = 200,
		.bytes_sent = 2326,
		.duration_us = 1234,
		.app = S("web"),
		.route = S("api.example.com/v1/"),
		.upstream = S("10.0.0.1:8080"),
	};
	return e;
}

static char *fmt(enum http_log_format f, const struct http_log_entry *e)
{
	struct sbuf b;
	sbuf_init(&b);
	http_log_format(&b, f, e);
	assert_false(b.oom);
	assert_non_null(b.data);
	return b.data;	/* owned by the caller */
}

static void check_python(const char *script, const char *text)
{
	int rc = python_check(script, text, strlen(text));
	if (rc > 0)
		fprintf(stderr, "text was: %s\n", text);
	if (rc == -1)
		skip();
	assert_int_equal(rc, 0);
}

/* Every byte printable ASCII but the final '\n'. */
static void assert_one_ascii_line(const char *s)
{
	size_t n = strlen(s);
	assert_true(n > 1 && s[n - 1] == '\n');
	for (size_t i = 0; i + 1 < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			fail_msg("byte 0x%02x at %zu in %s", (unsigned char)s[i], i, s);
}

/* --- formats ---------------------------------------------------------------------- */

static void test_combined_plain(void **state)
{
	(void)state;
	struct sockaddr_storage c = v4("192.0.2.1", 40000);
	struct http_log_entry e = plain_entry(&c);
	char *l = fmt(HTTP_LOG_COMBINED, &e);
	assert_string_equal(l, "192.0.2.1 - - [10/Oct/2026:13:55:36 +0000] \"GET /x?a=1 HTTP/1.1\" 200 2326 "
			       "\"http://ref.example/\" \"curl/8.0 (x86_64)\"\n");
	free(l);
	/* HTTP/1.0, no response, nothing sent */
	e.version_minor = 0;
	e.status = 0;
	e.bytes_sent = 0;
	e.time_ns = 0;
	l = fmt(HTTP_LOG_COMBINED, &e);
	assert_string_equal(l, "192.0.2.1 - - [01/Jan/1970:00:00:00 +0000] \"GET /x?a=1 HTTP/1.0\" 000 0 "
			       "\"http://ref.example/\" \"curl/8.0 (x86_64)\"\n");
	free(l);
}

static void test_json_plain(void **state)
{
	(void)state;
	struct sockaddr_storage c = v4("192.0.2.1", 40000);
	struct http_log_entry e = plain_entry(&c);
	char *l = fmt(HTTP_LOG_JSON, &e);
	assert_one_ascii_line(l);
	check_python("import json, sys\n"
		     "t = open(sys.argv[1], encoding='ascii').read()\n"
		     "assert t.endswith('\\n') and t.count('\\n') == 1\n"
		     "d = json.loads(t)\n"
		     "want = {'time': '2026-10-10T13:55:36.123Z', 'client': '192.0.2.1', 'method': 'GET',"
		     " 'target': '/x?a=1', 'protocol': 'HTTP/1.1', 'host': 'api.example.com', 'status': 200,"
		     " 'bytes': 2326, 'duration_us': 1234, 'referer': 'http://ref.example/',"
		     " 'user_agent': 'curl/8.0 (x86_64)', 'app': 'web', 'route': 'api.example.com/v1/',"
		     " 'upstream': '10.0.0.1:8080'}\n"
		     "assert d == want, d\n"
		     "assert list(d) == list(want), list(d)\n",
		     l);
	free(l);
}

/* Everything absent: nulls in JSON, "-" in the combined format. */
static void test_absent_fields(void **state)
{
	(void)state;
	struct http_log_entry e = { .time_ns = t_ref() };
	char *l = fmt(HTTP_LOG_COMBINED, &e);
	assert_string_equal(l, "- - - [10/Oct/2026:13:55:36 +0000] \"- - -\" 000 0 \"-\" \"-\"\n");
	free(l);
	l = fmt(HTTP_LOG_JSON, &e);
	check_python("import json, sys\n"
		     "d = json.load(open(sys.argv[1]))\n"
		     "assert d['time'] == '2026-10-10T13:55:36.123Z', d\n"
		     "for k in ('client', 'method', 'target', 'protocol', 'host', 'status', 'referer',"
		     " 'user_agent', 'app', 'route', 'upstream'):\n"
		     "    assert d[k] is None, (k, d)\n"
		     "assert d['bytes'] == 0 and d['duration_us'] == 0, d\n",
		     l);
	free(l);
	/* a method without target (cannot come from the parser, still well formed) */
	e.method = "GET";
	e.method_len = 3;
	l = fmt(HTTP_LOG_COMBINED, &e);
	assert_non_null(strstr(l, "\"GET - HTTP/1.0\" 000 0"));
	free(l);
	/* HTTP_LOG_NONE appends nothing */
	struct sbuf b;
	sbuf_init(&b);
	http_log_format(&b, HTTP_LOG_NONE, &e);
	assert_int_equal(b.len, 0);
	sbuf_free(&b);
}

static void test_client_addresses(void **state)
{
	(void)state;
	static const struct {
		const char *ip;
		bool is6;
		const char *want;
	} cases[] = {
		{ "203.0.113.9", false, "203.0.113.9" },
		{ "2001:db8::1", true, "2001:db8::1" },
		{ "::ffff:192.0.2.7", true, "192.0.2.7" },
		{ "::1", true, "::1" },
		{ "fe80::1:2:3:4", true, "fe80::1:2:3:4" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage c = cases[i].is6 ? v6(cases[i].ip, 1) : v4(cases[i].ip, 1);
		struct http_log_entry e = plain_entry(&c);
		char *l = fmt(HTTP_LOG_COMBINED, &e);
		size_t n = strlen(cases[i].want);
		if (strncmp(l, cases[i].want, n) != 0 || l[n] != ' ')
			fail_msg("%s: %s", cases[i].ip, l);
		free(l);
		l = fmt(HTTP_LOG_JSON, &e);
		char want[96];
		snprintf(want, sizeof(want), "\"client\":\"%s\",", cases[i].want);
		if (!strstr(l, want))
			fail_msg("%s: %s", cases[i].ip, l);
		free(l);
	}
	/* an address family without an address text */
	struct sockaddr_storage un;
	memset(&un, 0, sizeof(un));
	un.ss_family = AF_UNIX;
	struct http_log_entry e = plain_entry(&un);
	char *l = fmt(HTTP_LOG_COMBINED, &e);
	assert_memory_equal(l, "- - - [", 7);
	free(l);
	l = fmt(HTTP_LOG_JSON, &e);
	assert_non_null(strstr(l, "\"client\":null,"));
	free(l);
}

/* Request bytes that try to forge fields or lines. */
static const char h_method[] = "G\"ET";
static const char h_target[] = "/a b\"c\\d\ne\r\x01\x7f\xc3\xa9\xff\0z";
static const char h_ua[] = "agent\" \"forged\n10.0.0.9 - - [x] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\\";
static const char h_ref[] = "\0\t\x1b[31m";
static const char h_host[] = "h\"\\\n";

static struct http_log_entry hostile_entry(const struct sockaddr_storage *c)
{
	struct http_log_entry e = plain_entry(c);
	e.method = h_method;
	e.method_len = sizeof(h_method) - 1;
	e.target = h_target;
	e.target_len = sizeof(h_target) - 1;	/* the NUL inside counts */
	e.user_agent = h_ua;
	e.user_agent_len = sizeof(h_ua) - 1;
	e.referer = h_ref;
	e.referer_len = sizeof(h_ref) - 1;
	e.host = h_host;
	e.host_len = sizeof(h_host) - 1;
	e.app = h_host;
	e.app_len = sizeof(h_host) - 1;
	return e;
}

static void test_combined_hostile(void **state)
{
	(void)state;
	struct sockaddr_storage c = v6("2001:db8::5", 1);
	struct http_log_entry e = hostile_entry(&c);
	char *l = fmt(HTTP_LOG_COMBINED, &e);
	assert_one_ascii_line(l);
	/* a standard combined-log regex reads the line, every field where it
	 * belongs, and undoing \xHH gives the bytes back */
	check_python("import re, sys\n"
		     "t = open(sys.argv[1], 'rb').read().decode('ascii')\n"
		     "assert t.count('\\n') == 1 and t.endswith('\\n')\n"
		     "rx = re.compile(r'^(?P<client>\\S+) (?P<ident>\\S+) (?P<user>\\S+) \\[(?P<time>[^\\]]+)\\] "
		     "\"(?P<method>\\S+) (?P<target>\\S+) (?P<proto>\\S+)\" (?P<status>\\d{3}) (?P<bytes>\\d+|-) "
		     "\"(?P<referer>[^\"]*)\" \"(?P<agent>[^\"]*)\"$')\n"
		     "m = rx.match(t[:-1])\n"
		     "assert m, t\n"
		     "def un(s):\n"
		     "    return re.sub(rb'\\\\x([0-9a-f]{2})', lambda x: bytes([int(x.group(1), 16)]), s.encode())\n"
		     "assert m['client'] == '2001:db8::5' and m['time'] == '10/Oct/2026:13:55:36 +0000', m.groups()\n"
		     "assert un(m['method']) == b'G\"ET', m['method']\n"
		     "assert un(m['target']) == b'/a b\"c\\\\d\\ne\\r\\x01\\x7f\\xc3\\xa9\\xff\\x00z', m['target']\n"
		     "assert m['proto'] == 'HTTP/1.1' and m['status'] == '200' and m['bytes'] == '2326'\n"
		     "assert un(m['referer']) == b'\\x00\\t\\x1b[31m', m['referer']\n"
		     "assert un(m['agent']) == b'agent\" \"forged\\n10.0.0.9 - - [x] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\\\\', m['agent']\n",
		     l);
	free(l);
}

static void test_json_hostile(void **state)
{
	(void)state;
	struct sockaddr_storage c = v4("192.0.2.1", 1);
	struct http_log_entry e = hostile_entry(&c);
	char *l = fmt(HTTP_LOG_JSON, &e);
	assert_one_ascii_line(l);
	/* the \u00XX escapes are the bytes: encoding as Latin-1 gives them back */
	check_python("import json, sys\n"
		     "t = open(sys.argv[1], 'rb').read().decode('ascii')\n"
		     "assert t.count('\\n') == 1 and t.endswith('\\n')\n"
		     "d = json.loads(t)\n"
		     "b = lambda k: d[k].encode('latin-1')\n"
		     "assert b('method') == b'G\"ET', d\n"
		     "assert b('target') == b'/a b\"c\\\\d\\ne\\r\\x01\\x7f\\xc3\\xa9\\xff\\x00z', d['target']\n"
		     "assert b('user_agent') == b'agent\" \"forged\\n10.0.0.9 - - [x] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\\\\', d\n"
		     "assert b('referer') == b'\\x00\\t\\x1b[31m', d\n"
		     "assert b('host') == b'h\"\\\\\\n' and b('app') == b'h\"\\\\\\n', d\n"
		     "assert d['route'] == 'api.example.com/v1/' and d['status'] == 200, d\n",
		     l);
	free(l);
}

/* --- sinks and buffers --------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	char *d = malloc((size_t)st.st_size + 1);
	assert_non_null(d);
	size_t n = 0;
	while (n < (size_t)st.st_size) {
		ssize_t r = read(fd, d + n, (size_t)st.st_size - n);
		assert_true(r > 0);
		n += (size_t)r;
	}
	d[n] = '\0';
	close(fd);
	*len = n;
	return d;
}

static void test_open_errors_and_stdout(void **state)
{
	(void)state;
	errno = 0;
	assert_null(http_log_open("/nonexistent-dir-pandit/x.log", HTTP_LOG_JSON));
	assert_int_equal(errno, ENOENT);
	assert_null(http_log_open("", HTTP_LOG_JSON));
	assert_int_equal(errno, EINVAL);
	struct http_log_sink *s = http_log_open("-", HTTP_LOG_COMBINED);
	assert_non_null(s);
	assert_int_equal(s->fd, 1);
	assert_int_equal(s->fmt, HTTP_LOG_COMBINED);
	assert_ptr_equal(http_log_get(s), s);
	http_log_put(s);
	http_log_put(s);
	assert_true(fcntl(1, F_GETFD) >= 0);	/* stdout is never closed */
	http_log_put(NULL);
	assert_null(http_log_get(NULL));
}

static void test_buffer_to_file(void **state)
{
	(void)state;
	char path[] = "/tmp/pandit_test_http_log_file_XXXXXX";
	int tfd = mkstemp(path);
	assert_true(tfd >= 0);
	close(tfd);
	struct http_log_sink *s = http_log_open(path, HTTP_LOG_COMBINED);
	assert_non_null(s);
	assert_true(s->regular);
	assert_true(fcntl(s->fd, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(s->fd, F_GETFL) & O_APPEND);
	struct http_log_buf *b = http_log_buf_new();
	assert_non_null(b);
	uint64_t dropped = http_log_dropped();

	struct sockaddr_storage c = v4("192.0.2.1", 1);
	struct http_log_entry e = plain_entry(&c);
	char *one = fmt(HTTP_LOG_COMBINED, &e);
	size_t ll = strlen(one);
	http_log_write(b, s, &e);
	http_log_write(b, s, &e);
	size_t len;
	char *d = read_file(path, &len);
	assert_int_equal(len, 0);	/* buffered */
	free(d);
	http_log_flush(b);
	d = read_file(path, &len);
	assert_int_equal(len, 2 * ll);
	assert_memory_equal(d, one, ll);
	assert_memory_equal(d + ll, one, ll);
	free(d);

	/* past 64 KiB pending the buffer is written without a flush, whole lines */
	size_t n = 65536 / ll + 2;
	for (size_t i = 0; i < n; i++)
		http_log_write(b, s, &e);
	d = read_file(path, &len);
	assert_true(len > 2 * ll);
	assert_int_equal(len % ll, 0);
	free(d);
	/* the sink outlives the runtime's reference while lines wait */
	http_log_write(b, s, &e);
	http_log_put(s);
	http_log_buf_free(b);	/* flushes */
	d = read_file(path, &len);
	assert_int_equal(len, (n + 3) * ll);
	for (size_t i = 0; i < n + 3; i++)
		assert_memory_equal(d + i * ll, one, ll);
	free(d);
	assert_int_equal(http_log_dropped(), dropped);
	free(one);
	unlink(path);
	http_log_flush(NULL);
	http_log_buf_free(NULL);
}

/* Lines for two sinks in one buffer go each to their own file. */
static void test_two_sinks(void **state)
{
	(void)state;
	char p1[] = "/tmp/pandit_test_http_log_a_XXXXXX", p2[] = "/tmp/pandit_test_http_log_b_XXXXXX";
	int f1 = mkstemp(p1), f2 = mkstemp(p2);
	assert_true(f1 >= 0 && f2 >= 0);
	close(f1);
	close(f2);
	struct http_log_sink *s1 = http_log_open(p1, HTTP_LOG_JSON);
	struct http_log_sink *s2 = http_log_open(p2, HTTP_LOG_COMBINED);
	assert_true(s1 && s2);
	struct http_log_buf *b = http_log_buf_new();
	assert_non_null(b);
	struct http_log_entry e = plain_entry(NULL);
	for (int i = 0; i < 10; i++) {
		http_log_write(b, s1, &e);
		http_log_write(b, i % 2 ? s2 : s1, &e);
	}
	http_log_flush(b);
	char *j = fmt(HTTP_LOG_JSON, &e), *cl = fmt(HTTP_LOG_COMBINED, &e);
	size_t len1, len2;
	char *d1 = read_file(p1, &len1), *d2 = read_file(p2, &len2);
	assert_int_equal(len1, 15 * strlen(j));
	assert_int_equal(len2, 5 * strlen(cl));
	assert_memory_equal(d1, j, strlen(j));
	assert_memory_equal(d2, cl, strlen(cl));
	/* after the flush the buffer holds no reference */
	assert_int_equal(s1->refcnt, 1);
	assert_int_equal(s2->refcnt, 1);
	free(d1);
	free(d2);
	free(j);
	free(cl);
	http_log_buf_free(b);
	http_log_put(s1);
	http_log_put(s2);
	unlink(p1);
	unlink(p2);
}

/* A stuck reader: a full non-blocking pipe. Lines wait up to 1 MiB, then
 * are dropped and counted; once the reader drains the pipe, the waiting
 * lines arrive whole and in order. */
static void test_full_pipe_drops(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	char junk[4096];
	memset(junk, 'j', sizeof(junk));
	size_t stuffed = 0;
	for (;;) {
		ssize_t w = write(p[1], junk, sizeof(junk));
		if (w < 0) {
			assert_true(errno == EAGAIN);
			break;
		}
		stuffed += (size_t)w;
	}
	/* a sink on the pipe, as http_log_open makes one for "-" piped somewhere */
	struct http_log_sink *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	atomic_init(&s->refcnt, 1);
	s->fd = p[1];
	s->own_fd = true;
	s->fmt = HTTP_LOG_JSON;
	s->path = strdup("pipe");
	assert_non_null(s->path);
	struct http_log_buf *b = http_log_buf_new();
	assert_non_null(b);

	/* lines of different sizes, some longer than PIPE_BUF */
	char ua[6000];
	memset(ua, 'u', sizeof(ua));
	struct http_log_entry e = plain_entry(NULL);
	uint64_t before = http_log_dropped();
	const unsigned n = 2000;
	for (unsigned i = 0; i < n; i++) {
		e.duration_us = i;	/* the sequence number */
		e.user_agent = ua;
		e.user_agent_len = i % 7 == 0 ? sizeof(ua) : (size_t)(i % 300);
		http_log_write(b, s, &e);
	}
	uint64_t dropped = http_log_dropped() - before;
	assert_true(dropped > 0);
	assert_true(dropped < n);

	/* drain: read everything, flush, until nothing more comes */
	struct sbuf got;
	sbuf_init(&got);
	char rb[65536];
	for (int rounds = 0; rounds < 10000; rounds++) {
		size_t got_now = 0;
		ssize_t r;
		while ((r = read(p[0], rb, sizeof(rb))) > 0) {
			sbuf_append(&got, rb, (size_t)r);
			got_now += (size_t)r;
		}
		http_log_flush(b);
		if (!got_now && rounds > 0) {
			while ((r = read(p[0], rb, sizeof(rb))) > 0)
				sbuf_append(&got, rb, (size_t)r);
			break;
		}
	}
	assert_false(got.oom);
	assert_true(got.len > stuffed);
	for (size_t i = 0; i < stuffed; i++)
		assert_int_equal(got.data[i], 'j');
	/* whole lines, in order, each exactly as formatted */
	const char *q = got.data + stuffed, *end = got.data + got.len;
	uint64_t lines = 0;
	int64_t last = -1;
	while (q < end) {
		const char *nl = memchr(q, '\n', (size_t)(end - q));
		assert_non_null(nl);
		const char *du = strstr(q, "\"duration_us\":");
		assert_true(du && du < nl);
		long seq = strtol(du + 14, NULL, 10);
		assert_true(seq > last);
		last = seq;
		e.duration_us = (uint64_t)seq;
		e.user_agent_len = seq % 7 == 0 ? sizeof(ua) : (size_t)(seq % 300);
		char *want = fmt(HTTP_LOG_JSON, &e);
		assert_int_equal((size_t)(nl + 1 - q), strlen(want));
		assert_memory_equal(q, want, strlen(want));
		free(want);
		lines++;
		q = nl + 1;
	}
	assert_int_equal(lines + dropped, n);
	sbuf_free(&got);
	http_log_buf_free(b);
	http_log_put(s);	/* closes p[1] */
	close(p[0]);
}

/* A write error (the reader is gone) drops the waiting lines, counted. */
static void test_write_error_drops(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	close(p[0]);
	struct http_log_sink *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	atomic_init(&s->refcnt, 1);
	s->fd = p[1];
	s->own_fd = true;
	s->fmt = HTTP_LOG_COMBINED;
	s->path = strdup("closed pipe");
	struct http_log_buf *b = http_log_buf_new();
	assert_true(s->path && b);
	struct http_log_entry e = plain_entry(NULL);
	uint64_t before = http_log_dropped();
	for (int i = 0; i < 5; i++)
		http_log_write(b, s, &e);
	http_log_flush(b);	/* EPIPE (SIGPIPE ignored by the test's main) */
	assert_int_equal(http_log_dropped() - before, 5);
	assert_int_equal(s->refcnt, 1);
	http_log_buf_free(b);
	http_log_put(s);
}

/* Two workers, each with its buffer, writing to one file: every line whole. */
struct writer_arg {
	struct http_log_sink *s;
	char tag;
	unsigned n;
};

static void *writer(void *p)
{
	struct writer_arg *a = p;
	struct http_log_buf *b = http_log_buf_new();
	if (!b)
		return (void *)1;
	char ua[3000];
	memset(ua, a->tag, sizeof(ua));
	struct http_log_entry e = plain_entry(NULL);
	for (unsigned i = 0; i < a->n; i++) {
		e.user_agent = ua;
		e.user_agent_len = 100 + i % 2900;
		http_log_write(b, a->s, &e);
		if (i % 50 == 0)
			http_log_flush(b);
	}
	http_log_buf_free(b);
	return NULL;
}

static void test_concurrent_writers(void **state)
{
	(void)state;
	char path[] = "/tmp/pandit_test_http_log_mt_XXXXXX";
	int tfd = mkstemp(path);
	assert_true(tfd >= 0);
	close(tfd);
	struct http_log_sink *s = http_log_open(path, HTTP_LOG_COMBINED);
	assert_non_null(s);
	struct writer_arg a1 = { s, 'a', 1500 }, a2 = { s, 'b', 1500 };
	pthread_t t1, t2;
	assert_int_equal(pthread_create(&t1, NULL, writer, &a1), 0);
	assert_int_equal(pthread_create(&t2, NULL, writer, &a2), 0);
	void *r1, *r2;
	pthread_join(t1, &r1);
	pthread_join(t2, &r2);
	assert_null(r1);
	assert_null(r2);
	http_log_put(s);
	size_t len;
	char *d = read_file(path, &len);
	unsigned lines = 0;
	for (const char *q = d, *end = d + len; q < end;) {
		const char *nl = memchr(q, '\n', (size_t)(end - q));
		assert_non_null(nl);
		/* the agent is the last field: one letter all along */
		const char *ag = nl - 2;
		assert_int_equal(*(nl - 1), '"');
		char tag = *ag;
		assert_true(tag == 'a' || tag == 'b');
		while (*ag == tag)
			ag--;
		assert_int_equal(*ag, '"');
		assert_true(nl - 1 - (ag + 1) >= 100);
		static const char head[] = "- - - [10/Oct/2026:13:55:36 +0000] \"GET /x?a=1 HTTP/1.1\" 200 2326 ";
		assert_memory_equal(q, head, sizeof(head) - 1);
		lines++;
		q = nl + 1;
	}
	assert_int_equal(lines, 3000);
	free(d);
	unlink(path);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_combined_plain),
		cmocka_unit_test(test_json_plain),
		cmocka_unit_test(test_absent_fields),
		cmocka_unit_test(test_client_addresses),
		cmocka_unit_test(test_combined_hostile),
		cmocka_unit_test(test_json_hostile),
		cmocka_unit_test(test_open_errors_and_stdout),
		cmocka_unit_test(test_buffer_to_file),
		cmocka_unit_test(test_two_sinks),
		cmocka_unit_test(test_full_pipe_drops),
		cmocka_unit_test(test_write_error_drops),
		cmocka_unit_test(test_concurrent_writers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
