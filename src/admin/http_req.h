/* http_req.h - a small strict parser of HTTP/1.x request heads, for the admin endpoint (a pure function). */
#ifndef PANDIT_HTTP_REQ_H
#define PANDIT_HTTP_REQ_H

#include <stdbool.h>
#include <stddef.h>

/* Longest request head accepted (request line, headers and the final CRLF). */
#define HTTP_REQ_MAX_HEAD	8192u
/* Most header fields accepted. */
#define HTTP_REQ_MAX_HEADERS	64u
/* Longest method token accepted. */
#define HTTP_REQ_MAX_METHOD	16u

enum http_method {
	HTTP_METHOD_OTHER = 0,	/* a well-formed token that is not GET or HEAD */
	HTTP_METHOD_GET,
	HTTP_METHOD_HEAD,
};

/* A parsed request head. Pointers point into the caller's buffer. */
struct http_req {
	enum http_method method;
	const char *method_str;
	size_t method_len;
	const char *target;	/* request-target as sent */
	size_t target_len;
	const char *path;	/* target without scheme, authority and query ("/" at least) */
	size_t path_len;
	int version_minor;	/* HTTP/1.<minor>: 0 or 1 */
	size_t n_headers;
	bool has_host;
	size_t head_len;	/* bytes of the head, final CRLF CRLF included */
};

/* Parses the request head at the start of buf[0..len). Returns
 *   0        a complete, valid head: *req filled, req->head_len bytes used;
 *   -EAGAIN  valid so far but incomplete: read more and call again with
 *            the whole buffer (at most HTTP_REQ_MAX_HEAD bytes are examined);
 *   > 0      the HTTP status to answer with: 400 malformed (bare CR or LF,
 *            control characters, bad tokens, whitespace before a colon,
 *            folded lines, missing or repeated Host in HTTP/1.1), 414 the
 *            request line alone exceeds the limit, 431 the head exceeds
 *            HTTP_REQ_MAX_HEAD or has too many fields, 505 an HTTP version
 *            other than 1.0 and 1.1.
 * buf need not be NUL-terminated and may hold any bytes. */
int http_req_parse(const char *buf, size_t len, struct http_req *req);

#endif
