/* http_log.c - the HTTP access log: line formatting (JSON, combined), shared file sinks and per-worker buffers. */
#include "proto/http_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/ref.h"
#include "core/sbuf.h"

#define LIT(out, s) sbuf_append((out), (s), sizeof(s) - 1)

/* --- formatting ------------------------------------------------------------------ */

static const char hex[] = "0123456789abcdef";

static void put_u64(struct sbuf *out, uint64_t v)
{
	char buf[24];
	char *p = buf + sizeof(buf);
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sbuf_append(out, p, (size_t)(buf + sizeof(buf) - p));
}

/* Appends n decimal digits of v, zero padded. */
static void put_digits(char *p, unsigned v, unsigned n)
{
	while (n--) {
		p[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* JSON string contents: '"', '\\' and control characters escaped, and
 * every byte outside 0x20..0x7e as \u00XX (its byte value), so the line is
 * plain ASCII and valid JSON whatever the request held (invalid UTF-8, NUL
 * included); a reader gets the bytes back by encoding the string as Latin-1. */
static void json_chars(struct sbuf *out, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
	for (; p < end; p++) {
		unsigned char c = *p;
		if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\')
			continue;
		sbuf_append(out, run, (size_t)(p - run));
		run = p + 1;
		char e[6] = { '\\', 0, 0, 0, 0, 0 };
		switch (c) {
		case '"': e[1] = '"'; sbuf_append(out, e, 2); continue;
		case '\\': e[1] = '\\'; sbuf_append(out, e, 2); continue;
		case '\n': e[1] = 'n'; sbuf_append(out, e, 2); continue;
		case '\r': e[1] = 'r'; sbuf_append(out, e, 2); continue;
		case '\t': e[1] = 't'; sbuf_append(out, e, 2); continue;
		default:
			e[1] = 'u';
			e[2] = '0';
			e[3] = '0';
			e[4] = hex[c >> 4];
			e[5] = hex[c & 15];
			sbuf_append(out, e, 6);
		}
	}
	sbuf_append(out, run, (size_t)(p - run));
}

static void json_str(struct sbuf *out, const char *s, size_t len)
{
	if (!s) {
		LIT(out, "null");
		return;
	}
	LIT(out, "\"");
	json_chars(out, s, len);
	LIT(out, "\"");
}

/* Combined format text: '"', '\\' and bytes outside 0x20..0x7e as \xHH
 * (as NGINX does), and with space too a space (fields of the request line,
 * which a log reader splits on spaces). */
static void clf_chars(struct sbuf *out, const char *s, size_t len, bool space)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
	for (; p < end; p++) {
		unsigned char c = *p;
		if (c > 0x20 && c <= 0x7e && c != '"' && c != '\\')
			continue;
		if (c == ' ' && !space)
			continue;
		sbuf_append(out, run, (size_t)(p - run));
		run = p + 1;
		char e[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
		sbuf_append(out, e, 4);
	}
	sbuf_append(out, run, (size_t)(p - run));
}

/* "text" or "-" (Apache writes an absent referer or agent as "-"). */
static void clf_quoted(struct sbuf *out, const char *s, size_t len)
{
	LIT(out, "\"");
	if (s)
		clf_chars(out, s, len, false);
	else
		LIT(out, "-");
	LIT(out, "\"");
}

/* The client address without port, IPv4-mapped IPv6 shown as IPv4; false
 * when there is none. */
static bool client_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	if (!ss)
		return false;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		return inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)len) != NULL;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			return inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buf, (socklen_t)len) != NULL;
		return inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)len) != NULL;
	}
	return false;
}

/* gmtime_r once per second per thread: a busy worker logs many lines a second. */
static void utc_tm(time_t sec, struct tm *tm)
{
	static __thread time_t cached_sec = (time_t)-1;
	static __thread struct tm cached;
	if (sec != cached_sec) {
		if (!gmtime_r(&sec, &cached))
			memset(&cached, 0, sizeof(cached));
		cached_sec = sec;
	}
	*tm = cached;
}

/* 2026-10-10T13:55:36.123Z */
static void put_time_rfc3339(struct sbuf *out, uint64_t time_ns)
{
	struct tm tm;
	utc_tm((time_t)(time_ns / 1000000000ull), &tm);
	char b[24];
	unsigned year = (unsigned)(tm.tm_year + 1900);
	if (year > 9999)
		year = 9999;
	put_digits(b, year, 4);
	b[4] = '-';
	put_digits(b + 5, (unsigned)tm.tm_mon + 1, 2);
	b[7] = '-';
	put_digits(b + 8, (unsigned)tm.tm_mday, 2);
	b[10] = 'T';
	put_digits(b + 11, (unsigned)tm.tm_hour, 2);
	b[13] = ':';
	put_digits(b + 14, (unsigned)tm.tm_min, 2);
	b[16] = ':';
	put_digits(b + 17, (unsigned)tm.tm_sec, 2);
	b[19] = '.';
	put_digits(b + 20, (unsigned)(time_ns / 1000000ull % 1000), 3);
	b[23] = 'Z';
	sbuf_append(out, b, 24);
}

/* [10/Oct/2026:13:55:36 +0000] */
static void put_time_clf(struct sbuf *out, uint64_t time_ns)
{
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	utc_tm((time_t)(time_ns / 1000000000ull), &tm);
	char b[28];
	unsigned year = (unsigned)(tm.tm_year + 1900);
	if (year > 9999)
		year = 9999;
	b[0] = '[';
	put_digits(b + 1, (unsigned)tm.tm_mday, 2);
	b[3] = '/';
	memcpy(b + 4, months[tm.tm_mon >= 0 && tm.tm_mon < 12 ? tm.tm_mon : 0], 3);
	b[7] = '/';
	put_digits(b + 8, year, 4);
	b[12] = ':';
	put_digits(b + 13, (unsigned)tm.tm_hour, 2);
	b[15] = ':';
	put_digits(b + 16, (unsigned)tm.tm_min, 2);
	b[18] = ':';
	put_digits(b + 19, (unsigned)tm.tm_sec, 2);
	memcpy(b + 21, " +0000]", 7);
	sbuf_append(out, b, 28);
}

static void format_json(struct sbuf *out, const struct http_log_entry *e)
{
	char client[INET6_ADDRSTRLEN];
	LIT(out, "{\"time\":\"");
	put_time_rfc3339(out, e->time_ns);
	LIT(out, "\",\"client\":");
	if (client_text(e->client, client, sizeof(client)))
		json_str(out, client, strlen(client));
	else
		LIT(out, "null");
	LIT(out, ",\"method\":");
	json_str(out, e->method, e->method_len);
	LIT(out, ",\"target\":");
	json_str(out, e->target, e->target_len);
	if (e->method) {
		LIT(out, ",\"protocol\":\"HTTP/1.");
		put_u64(out, e->version_minor);
		LIT(out, "\"");
	} else {
		LIT(out, ",\"protocol\":null");
	}
	LIT(out, ",\"host\":");
	json_str(out, e->host, e->host_len);
	LIT(out, ",\"status\":");
	if (e->status)
		put_u64(out, e->status);
	else
		LIT(out, "null");
	LIT(out, ",\"bytes\":");
	put_u64(out, e->bytes_sent);
	LIT(out, ",\"duration_us\":");
	put_u64(out, e->duration_us);
	LIT(out, ",\"referer\":");
	json_str(out, e->referer, e->referer_len);
	LIT(out, ",\"user_agent\":");
	json_str(out, e->user_agent, e->user_agent_len);
	LIT(out, ",\"app\":");
	json_str(out, e->app, e->app_len);
	LIT(out, ",\"route\":");
	json_str(out, e->route, e->route_len);
	LIT(out, ",\"upstream\":");
	json_str(out, e->upstream, e->upstream_len);
	LIT(out, "}\n");
}

static void format_combined(struct sbuf *out, const struct http_log_entry *e)
{
	char client[INET6_ADDRSTRLEN];
	if (client_text(e->client, client, sizeof(client)))
		sbuf_puts(out, client);
	else
		LIT(out, "-");
	LIT(out, " - - ");
	put_time_clf(out, e->time_ns);
	/* the request line as three space-free fields; a request refused
	 * before its method was read is "- - -" */
	LIT(out, " \"");
	if (e->method) {
		clf_chars(out, e->method, e->method_len, true);
		LIT(out, " ");
		if (e->target && e->target_len)
			clf_chars(out, e->target, e->target_len, true);
		else
			LIT(out, "-");
		LIT(out, " HTTP/1.");
		put_u64(out, e->version_minor);
	} else {
		LIT(out, "- - -");
	}
	/* no response: 000, as NGINX logs it, so the field stays three digits */
	LIT(out, "\" ");
	if (e->status >= 100 && e->status <= 999) {
		char st[3];
		put_digits(st, e->status, 3);
		sbuf_append(out, st, 3);
	} else {
		LIT(out, "000");
	}
	LIT(out, " ");
	put_u64(out, e->bytes_sent);
	LIT(out, " ");
	clf_quoted(out, e->referer, e->referer_len);
	LIT(out, " ");
	clf_quoted(out, e->user_agent, e->user_agent_len);
	LIT(out, "\n");
}

void http_log_format(struct sbuf *out, enum http_log_format fmt, const struct http_log_entry *e)
{
	if (fmt == HTTP_LOG_COMBINED)
		format_combined(out, e);
	else if (fmt == HTTP_LOG_JSON)
		format_json(out, e);
}

/* --- sinks ------------------------------------------------------------------------ */

struct http_log_sink *http_log_open(const char *path, enum http_log_format fmt)
{
	if (!path || !*path) {
		errno = EINVAL;
		return NULL;
	}
	struct http_log_sink *s = calloc(1, sizeof(*s));
	if (!s) {
		errno = ENOMEM;
		return NULL;
	}
	s->path = strdup(path);
	if (!s->path) {
		free(s);
		errno = ENOMEM;
		return NULL;
	}
	if (strcmp(path, "-") == 0) {
		s->fd = 1;
		s->own_fd = false;
	} else {
		s->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (s->fd < 0) {
			int err = errno;
			free(s->path);
			free(s);
			errno = err;
			return NULL;
		}
		s->own_fd = true;
	}
	struct stat st;
	s->regular = fstat(s->fd, &st) == 0 && S_ISREG(st.st_mode);
	s->fmt = fmt;
	atomic_init(&s->refcnt, 1);
	atomic_init(&s->warned, false);
	return s;
}

int http_log_reopen(struct http_log_sink *s)
{
	if (!s || !s->own_fd)
		return 0;
	int fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	/* dup2 swaps the file under the same descriptor at once: a worker's
	 * write goes wholly to the old file or wholly to the new one */
	int r = dup3(fd, s->fd, O_CLOEXEC) < 0 ? -errno : 0;
	close(fd);
	return r;
}

struct http_log_sink *http_log_get(struct http_log_sink *s)
{
	if (s)
		ref_get(&s->refcnt);
	return s;
}

void http_log_put(struct http_log_sink *s)
{
	if (!s || !ref_put(&s->refcnt))
		return;
	if (s->own_fd)
		close(s->fd);
	free(s->path);
	free(s);
}

/* --- per-worker buffers -------------------------------------------------------------- */

#define LOG_WRITE_AT	(64u * 1024)	/* pending bytes that trigger a write */
#define LOG_MAX_PENDING	(1u << 20)	/* per sink; beyond, lines are dropped */
#define LOG_KEEP_FREE	4u		/* idle slots (with their buffers) kept for reuse */
#define LOG_KEEP_CAP	(256u * 1024)	/* a bigger idle buffer is freed */

static _Atomic uint64_t log_dropped;

/* Lines waiting for one sink. A slot with s == NULL is idle (its buffer
 * kept for the next sink). The slot holds a reference on its sink while
 * lines wait, so a sink replaced by a reload stays open until they are out. */
struct log_slot {
	struct http_log_sink *s;
	char *data;
	size_t len, cap;
};

struct http_log_buf {
	struct log_slot *slots;
	uint32_t n, cap;
	uint32_t last;		/* slot written last: most lines go where the previous went */
	struct sbuf line;	/* one formatted line */
};

uint64_t http_log_dropped(void)
{
	return atomic_load_explicit(&log_dropped, memory_order_relaxed);
}

static void count_dropped(uint64_t n)
{
	if (n)
		atomic_fetch_add_explicit(&log_dropped, n, memory_order_relaxed);
}

static uint64_t count_lines(const char *p, size_t len)
{
	uint64_t n = 0;
	const char *end = p + len;
	while (p < end && (p = memchr(p, '\n', (size_t)(end - p)))) {
		n++;
		p++;
	}
	return n;
}

struct http_log_buf *http_log_buf_new(void)
{
	struct http_log_buf *b = calloc(1, sizeof(*b));
	if (b)
		sbuf_init(&b->line);
	return b;
}

/* The number of bytes from p to write in one call: everything for a
 * regular file (an O_APPEND write lands whole), otherwise whole lines up to
 * PIPE_BUF bytes together (a pipe takes those atomically, all or nothing),
 * or one longer line alone. The buffer always ends with a whole line. */
static size_t chunk_len(const struct http_log_sink *s, const char *p, size_t len)
{
	if (s->regular || len <= PIPE_BUF)
		return len;
	const char *nl = memrchr(p, '\n', PIPE_BUF);
	if (nl)
		return (size_t)(nl - p) + 1;
	nl = memchr(p, '\n', len);
	return nl ? (size_t)(nl - p) + 1 : len;
}

/* Writes what slot holds, as far as the file takes it: EAGAIN or a short
 * write keep the rest for later; another error drops it (counted), with a
 * warning once per sink. */
static void slot_flush(struct log_slot *sl)
{
	size_t off = 0;
	while (off < sl->len) {
		size_t n = chunk_len(sl->s, sl->data + off, sl->len - off);
		ssize_t w = write(sl->s->fd, sl->data + off, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			int err = errno;
			if (!atomic_exchange_explicit(&sl->s->warned, true, memory_order_relaxed))
				log_warn("access log write(%s) failed: %s; lines dropped",
					 sl->s->path, strerror(err));
			count_dropped(count_lines(sl->data + off, sl->len - off));
			off = sl->len;
			break;
		}
		off += (size_t)w;
		if ((size_t)w < n)
			break;
	}
	if (off == sl->len) {
		sl->len = 0;
	} else if (off) {
		memmove(sl->data, sl->data + off, sl->len - off);
		sl->len -= off;
	}
}

/* The slot of sink s, taking an idle one (or a new one) when s has none;
 * NULL on ENOMEM. */
static struct log_slot *slot_for(struct http_log_buf *b, struct http_log_sink *s)
{
	if (b->last < b->n && b->slots[b->last].s == s)
		return &b->slots[b->last];
	uint32_t idle = UINT32_MAX;
	for (uint32_t i = 0; i < b->n; i++) {
		if (b->slots[i].s == s) {
			b->last = i;
			return &b->slots[i];
		}
		if (!b->slots[i].s && idle == UINT32_MAX)
			idle = i;
	}
	if (idle == UINT32_MAX) {
		if (b->n == b->cap) {
			uint32_t cap = b->cap ? b->cap * 2 : 4;
			struct log_slot *ns = realloc(b->slots, cap * sizeof(*ns));
			if (!ns)
				return NULL;
			b->slots = ns;
			b->cap = cap;
		}
		idle = b->n++;
		memset(&b->slots[idle], 0, sizeof(b->slots[idle]));
	}
	b->slots[idle].s = http_log_get(s);
	b->slots[idle].len = 0;
	b->last = idle;
	return &b->slots[idle];
}

void http_log_write(struct http_log_buf *b, struct http_log_sink *s, const struct http_log_entry *e)
{
	if (!s || !e)
		return;
	if (!b) {
		count_dropped(1);
		return;
	}
	struct log_slot *sl = slot_for(b, s);
	if (!sl) {
		count_dropped(1);
		return;
	}
	sbuf_reset(&b->line);
	http_log_format(&b->line, s->fmt, e);
	size_t n = b->line.len;
	if (b->line.oom || !n || sl->len + n > LOG_MAX_PENDING) {
		count_dropped(1);
		goto out;
	}
	if (sl->len + n > sl->cap) {
		size_t cap = sl->cap ? sl->cap : 4096;
		while (cap < sl->len + n)
			cap *= 2;
		char *d = realloc(sl->data, cap);
		if (!d) {
			count_dropped(1);
			goto out;
		}
		sl->data = d;
		sl->cap = cap;
	}
	memcpy(sl->data + sl->len, b->line.data, n);
	sl->len += n;
	if (sl->len > LOG_WRITE_AT)
		slot_flush(sl);
out:
	if (b->line.cap > LOG_KEEP_CAP)
		sbuf_free(&b->line);
}

void http_log_flush(struct http_log_buf *b)
{
	if (!b)
		return;
	/* write, release the sinks with nothing left, and keep only a few
	 * idle slots */
	uint32_t o = 0, idle = 0;
	for (uint32_t i = 0; i < b->n; i++) {
		struct log_slot sl = b->slots[i];
		if (sl.s) {
			slot_flush(&sl);
			if (!sl.len) {
				http_log_put(sl.s);
				sl.s = NULL;
			}
		}
		if (!sl.s) {
			if (idle >= LOG_KEEP_FREE || sl.cap > LOG_KEEP_CAP) {
				free(sl.data);
				continue;
			}
			idle++;
		}
		b->slots[o++] = sl;
	}
	b->n = o;
	b->last = 0;
}

void http_log_buf_free(struct http_log_buf *b)
{
	if (!b)
		return;
	http_log_flush(b);
	for (uint32_t i = 0; i < b->n; i++) {
		/* lines a stuck file never took: lost with the worker */
		if (b->slots[i].s) {
			count_dropped(count_lines(b->slots[i].data, b->slots[i].len));
			http_log_put(b->slots[i].s);
		}
		free(b->slots[i].data);
	}
	free(b->slots);
	sbuf_free(&b->line);
	free(b);
}
