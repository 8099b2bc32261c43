/* http_req.c - a small strict parser of HTTP/1.x request heads (RFC 9112 grammar, no leniency). */
#include "admin/http_req.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* tchar of RFC 9110: the characters of a method or a field name. */
static bool is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Characters allowed anywhere in a line other than its CRLF: the request
 * line takes visible ASCII and SP; a header line also takes HTAB and
 * obs-text (0x80-0xff) in its value. Everything else (NUL, CTLs, DEL) is
 * refused, since such bytes are how request smuggling and log injection
 * start. */
static bool line_char_ok(unsigned char c, bool header)
{
	if (c >= 0x21 && c <= 0x7e)
		return true;
	if (c == ' ')
		return true;
	if (header && (c == '\t' || c >= 0x80))
		return true;
	return false;
}

/* Finds the CRLF ending the line that starts at buf[pos], looking no
 * further than lim. Returns 0 with *cr at the CR, -EAGAIN when the line is
 * not complete yet, or 400 for a bare CR, a bare LF or a forbidden byte. */
static int find_line(const char *buf, size_t pos, size_t lim, bool header, size_t *cr)
{
	for (size_t i = pos; i < lim; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c == '\r') {
			if (i + 1 >= lim)
				return -EAGAIN;
			if (buf[i + 1] != '\n')
				return 400;
			*cr = i;
			return 0;
		}
		if (!line_char_ok(c, header))
			return 400;	/* bare LF included */
	}
	return -EAGAIN;
}

/* Splits the request-target into the path routed on: origin-form "/p?q",
 * absolute-form "http://authority/p?q" and asterisk-form "*". */
static int parse_target(struct http_req *req)
{
	const char *t = req->target;
	size_t n = req->target_len;

	if (memchr(t, '#', n))
		return 400;	/* a fragment is never sent in a request */
	if (n == 1 && t[0] == '*') {
		req->path = t;
		req->path_len = 1;
		return 0;
	}
	size_t skip = 0;
	if (t[0] != '/') {
		size_t scheme;
		if (n > 7 && strncasecmp(t, "http://", 7) == 0)
			scheme = 7;
		else if (n > 8 && strncasecmp(t, "https://", 8) == 0)
			scheme = 8;
		else
			return 400;
		skip = scheme;
		while (skip < n && t[skip] != '/' && t[skip] != '?')
			skip++;
		if (skip == scheme)
			return 400;	/* empty authority */
	}
	const char *p = t + skip;
	size_t pl = n - skip;
	const char *q = memchr(p, '?', pl);
	if (q)
		pl = (size_t)(q - p);
	if (pl == 0 || p[0] != '/') {
		/* absolute-form without a path means "/" */
		static const char slash[] = "/";
		if (skip == 0)
			return 400;
		req->path = slash;
		req->path_len = 1;
		return 0;
	}
	req->path = p;
	req->path_len = pl;
	return 0;
}

/* method SP request-target SP HTTP/1.x, in buf[0..end). */
static int parse_request_line(const char *buf, size_t end, struct http_req *req)
{
	size_t i = 0;
	while (i < end && is_tchar((unsigned char)buf[i]))
		i++;
	if (i == 0 || i > HTTP_REQ_MAX_METHOD || i >= end || buf[i] != ' ')
		return 400;
	req->method_str = buf;
	req->method_len = i;
	if (i == 3 && memcmp(buf, "GET", 3) == 0)
		req->method = HTTP_METHOD_GET;
	else if (i == 4 && memcmp(buf, "HEAD", 4) == 0)
		req->method = HTTP_METHOD_HEAD;
	else
		req->method = HTTP_METHOD_OTHER;

	size_t ts = ++i;
	while (i < end && buf[i] != ' ')
		i++;
	if (i == ts || i >= end)
		return 400;	/* empty target, or no version (HTTP/0.9) */
	req->target = buf + ts;
	req->target_len = i - ts;

	const char *v = buf + i + 1;
	size_t vl = end - i - 1;
	if (vl != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' ||
	    v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
		return 400;
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return 505;
	req->version_minor = v[7] - '0';
	return parse_target(req);
}

/* field-name ":" OWS field-value OWS, in buf[start..end). */
static int parse_header(const char *buf, size_t start, size_t end, struct http_req *req)
{
	size_t i = start;
	while (i < end && is_tchar((unsigned char)buf[i]))
		i++;
	if (i == start || i >= end || buf[i] != ':')
		return 400;	/* empty name, or whitespace or junk before the colon */
	if (i - start == 4 && strncasecmp(buf + start, "host", 4) == 0) {
		if (req->has_host)
			return 400;	/* RFC 9112 3.2: more than one Host */
		req->has_host = true;
	}
	return 0;
}

int http_req_parse(const char *buf, size_t len, struct http_req *req)
{
	memset(req, 0, sizeof(*req));
	size_t lim = len < HTTP_REQ_MAX_HEAD ? len : HTTP_REQ_MAX_HEAD;
	size_t cr;

	int r = find_line(buf, 0, lim, false, &cr);
	if (r == -EAGAIN)
		return len >= HTTP_REQ_MAX_HEAD ? 414 : -EAGAIN;
	if (r)
		return r;
	r = parse_request_line(buf, cr, req);
	if (r)
		return r;

	size_t pos = cr + 2;
	for (;;) {
		if (pos + 2 <= lim && buf[pos] == '\r' && buf[pos + 1] == '\n') {
			if (req->version_minor == 1 && !req->has_host)
				return 400;
			req->head_len = pos + 2;
			return 0;
		}
		if (pos < lim && (buf[pos] == ' ' || buf[pos] == '\t'))
			return 400;	/* obs-fold, or whitespace before the first field */
		r = find_line(buf, pos, lim, true, &cr);
		if (r == -EAGAIN)
			return len >= HTTP_REQ_MAX_HEAD ? 431 : -EAGAIN;
		if (r)
			return r;
		if (++req->n_headers > HTTP_REQ_MAX_HEADERS)
			return 431;
		r = parse_header(buf, pos, cr, req);
		if (r)
			return r;
		pos = cr + 2;
	}
}
