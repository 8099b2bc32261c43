/* http_log.h - the HTTP access log: one line per request, JSON or combined format, buffered per worker. */
#ifndef PANDIT_PROTO_HTTP_LOG_H
#define PANDIT_PROTO_HTTP_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"

struct sbuf;

/* What one line says. Strings are (pointer, length), not NUL-terminated;
 * NULL/0 means absent ("-" in the combined format, null in JSON). Every
 * string is escaped on output (JSON: '"', '\\', \n, \r, \t and every other
 * byte outside 0x20..0x7e as \u00XX, its byte value, so a line is ASCII and
 * valid JSON whatever the bytes; in the combined format '"', '\\' and bytes
 * outside 0x20..0x7e as \xHH, and in the request line spaces too), so
 * hostile request bytes can never forge a line. */
struct http_log_entry {
	const struct sockaddr_storage *client;	/* peer address */
	uint64_t time_ns;			/* CLOCK_REALTIME when the request head arrived */
	const char *method; size_t method_len;
	const char *target; size_t target_len;	/* request-target as sent */
	uint8_t version_minor;			/* HTTP/1.<minor> */
	const char *host; size_t host_len;
	const char *referer; size_t referer_len;
	const char *user_agent; size_t user_agent_len;
	uint16_t status;			/* 0: no response sent */
	uint64_t bytes_sent;			/* response bytes to the client, head included */
	uint64_t duration_us;
	const char *app; size_t app_len;
	const char *route; size_t route_len;	/* "host/path" of the route, or absent */
	const char *upstream; size_t upstream_len;	/* target "host:port", or absent */
};

/* Appends one line (with its '\n') to out. JSON: one object with the keys
 * time (RFC 3339 UTC with ms), client, method, target, protocol, host,
 * status, bytes, duration_us, referer, user_agent, app, route, upstream
 * (absent: null; status 0: null; protocol null when method is absent).
 * Combined: the Apache/NGINX "combined" format
 *   client - - [10/Oct/2026:13:55:36 +0000] "GET /x HTTP/1.1" 200 2326 "referer" "agent"
 * with the request time in UTC, "- - -" as the request line when method is
 * absent, status 0 written 000 (as NGINX does), client an address without
 * port (IPv4-mapped IPv6 shown as IPv4). */
void http_log_format(struct sbuf *out, enum http_log_format fmt, const struct http_log_entry *e);

/* An open access log file, shared by the workers and refcounted: the
 * runtime opens one per http app that logs (reopened on reload, so a
 * rotated file is picked up by SIGHUP). */
struct http_log_sink {
	_Atomic uint32_t refcnt;
	int fd;			/* O_WRONLY|O_APPEND|O_CREAT (0644), or 1 for "-" */
	enum http_log_format fmt;
	bool own_fd;		/* closed with the last reference (not stdout) */
	bool regular;		/* a regular file: a whole buffer per write(2); otherwise
				 * (pipe, terminal) whole lines up to PIPE_BUF per write */
	_Atomic bool warned;	/* a write error was logged already */
	char *path;		/* for messages */
};

/* Opens path ("-": stdout). Returns NULL with errno set on failure. */
struct http_log_sink *http_log_open(const char *path, enum http_log_format fmt);
struct http_log_sink *http_log_get(struct http_log_sink *s);
/* Opens the sink's path again and puts the new file under the same
 * descriptor (log rotation: SIGHUP). stdout is left alone. Returns 0 or a
 * negative errno (the old file stays in use). */
int http_log_reopen(struct http_log_sink *s);
void http_log_put(struct http_log_sink *s);

/* Per-worker buffering: lines for one sink accumulate and are written with
 * one write(2) when the buffer passes a threshold or at http_log_flush()
 * (the worker calls it before it sleeps). Bounded: past 1 MiB of unwritten
 * lines (a stuck disk) new lines are dropped and counted. Each write(2)
 * holds whole lines only, so workers sharing a file never interleave
 * inside a line. */
struct http_log_buf;
struct http_log_buf *http_log_buf_new(void);
void http_log_buf_free(struct http_log_buf *b);	/* flushes first */
/* Formats e into the buffer for sink s. */
void http_log_write(struct http_log_buf *b, struct http_log_sink *s, const struct http_log_entry *e);
void http_log_flush(struct http_log_buf *b);
uint64_t http_log_dropped(void);	/* lines dropped, process-wide */

#endif
