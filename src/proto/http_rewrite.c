/* http_rewrite.c - rewrites parsed HTTP/1.1 heads for the next hop: hop-by-hop fields out, Forwarded/X-Forwarded-For/Via in. */
#include "proto/http_rewrite.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define VIA_TOKEN "1.1 pandit"

static void put_slice(struct sbuf *out, const char *buf, struct h1_slice s)
{
	sbuf_append(out, buf + s.off, s.len);
}

static void put_field(struct sbuf *out, const char *buf, const struct h1_header *h)
{
	put_slice(out, buf, h->name);
	sbuf_append(out, ": ", 2);
	put_slice(out, buf, h->value);
	sbuf_append(out, "\r\n", 2);
}

/* The next non-empty element of a comma-separated token list [*v, end):
 * *t, *n; false at the end. */
static bool next_token(const char **v, const char *end, const char **t, size_t *n)
{
	const char *p = *v;
	for (;;) {
		while (p < end && (*p == ',' || *p == ' ' || *p == '\t'))
			p++;
		if (p == end) {
			*v = p;
			return false;
		}
		*t = p;
		while (p < end && *p != ',' && *p != ' ' && *p != '\t')
			p++;
		*n = (size_t)(p - *t);
		*v = p;
		return true;
	}
}

/* True when field name n (a slice of buf) is one of the tokens listed in
 * the Connection fields of m: a sender marks further hop-by-hop fields so. */
static bool named_by_connection(const char *buf, const struct h1_msg *m, struct h1_slice n)
{
	for (uint32_t i = 0; i < m->n_hdr; i++) {
		const struct h1_header *h = &m->hdr[i];
		if (h->id != H1_H_CONNECTION)
			continue;
		const char *v = buf + h->value.off, *end = v + h->value.len, *t;
		size_t tn;
		while (next_token(&v, end, &t, &tn))
			if (tn == n.len && strncasecmp(t, buf + n.off, n.len) == 0)
				return true;
	}
	return false;
}

/* True when the Connection fields of m name a token other than
 * keep-alive and upgrade (fields that are hop-by-hop anyway): only then
 * must every field name be looked up in them. Once per message. */
static bool conn_names_fields(const char *buf, const struct h1_msg *m)
{
	for (uint32_t i = 0; i < m->n_hdr; i++) {
		const struct h1_header *h = &m->hdr[i];
		if (h->id != H1_H_CONNECTION)
			continue;
		const char *v = buf + h->value.off, *end = v + h->value.len, *t;
		size_t n;
		while (next_token(&v, end, &t, &n)) {
			if ((n == 10 && strncasecmp(t, "keep-alive", 10) == 0) ||
			    (n == 7 && strncasecmp(t, "upgrade", 7) == 0))
				continue;
			return true;
		}
	}
	return false;
}

/* Fields never forwarded as received (pandit writes its own when needed).
 * named: conn_names_fields() of the message. */
static bool hop_by_hop(const char *buf, const struct h1_msg *m, const struct h1_header *h,
		       bool named)
{
	switch (h->id) {
	case H1_H_CONNECTION:
	case H1_H_KEEP_ALIVE:
	case H1_H_PROXY_CONNECTION:
	case H1_H_TE:
	case H1_H_UPGRADE:
		return true;
	default:
		break;
	}
	/* a field listed in Connection is hop-by-hop, but not the framing:
	 * "Connection: content-length" must not unframe a message */
	if (!named || h->id == H1_H_CONTENT_LENGTH || h->id == H1_H_TRANSFER_ENCODING ||
	    h->id == H1_H_HOST)
		return false;
	return named_by_connection(buf, m, h->name);
}

/* Writes "Name: v1, v2, <extra>" joining every field with id, in order;
 * a field the sender named in Connection was meant for pandit alone and
 * is left out, as it would be without the joining. */
static void put_joined(struct sbuf *out, const char *buf, const struct h1_msg *m,
		       enum h1_hdr_id id, const char *name, const char *extra, bool named)
{
	sbuf_puts(out, name);
	sbuf_append(out, ": ", 2);
	for (uint32_t i = 0; i < m->n_hdr; i++) {
		const struct h1_header *h = &m->hdr[i];
		if (h->id != id || !h->value.len || hop_by_hop(buf, m, h, named))
			continue;
		put_slice(out, buf, h->value);
		sbuf_append(out, ", ", 2);
	}
	sbuf_puts(out, extra);
	sbuf_append(out, "\r\n", 2);
}

static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A Forwarded host value: a token when it is one, else a quoted string.
 * A reg-name may hold sub-delims (';' ',' '=' '(' ')') and a port or an
 * IP-literal ':' '[' ']', none of them token characters: unquoted, a Host
 * of "x;for=192.0.2.9" would add a parameter to pandit's element. Inside
 * quotes nothing needs escaping: '"' and '\' are not authority bytes (the
 * parser refused them). */
static void put_fwd_value(struct sbuf *out, const char *s, size_t n)
{
	bool quote = false;
	for (size_t i = 0; i < n && !quote; i++)
		quote = !is_tchar((unsigned char)s[i]);
	if (quote)
		sbuf_append(out, "\"", 1);
	sbuf_append(out, s, n);
	if (quote)
		sbuf_append(out, "\"", 1);
}

void http_rewrite_request(struct sbuf *out, const char *buf, const struct h1_msg *m,
			  const struct http_req_rewrite *rw)
{
	bool named = conn_names_fields(buf, m);
	put_slice(out, buf, m->method_s);
	sbuf_append(out, " ", 1);
	if (m->form == H1_FORM_ABSOLUTE && m->method == H1_M_OPTIONS && !m->path.len) {
		/* RFC 9112 3.2.4: OPTIONS for the server as a whole, no path and
		 * no query, goes to the origin as "*" */
		sbuf_append(out, "*", 1);
	} else if (m->form == H1_FORM_ABSOLUTE) {
		if (!m->path.len || buf[m->path.off] == '?')
			sbuf_append(out, "/", 1);
		put_slice(out, buf, m->path);
	} else {
		put_slice(out, buf, m->target);
	}
	sbuf_puts(out, rw->http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");

	/* Host first, as RFC 9112 3.2 asks of a user agent */
	sbuf_puts(out, "Host: ");
	if (m->authority.len || !rw->default_host)
		put_slice(out, buf, m->authority);
	else
		sbuf_puts(out, rw->default_host);
	sbuf_append(out, "\r\n", 2);

	for (uint32_t i = 0; i < m->n_hdr; i++) {
		const struct h1_header *h = &m->hdr[i];
		if (h->id == H1_H_HOST || h->id == H1_H_EXPECT || hop_by_hop(buf, m, h, named))
			continue;
		/* joined into one field below */
		if (rw->forwarded && (h->id == H1_H_X_FORWARDED_FOR || h->id == H1_H_VIA))
			continue;
		put_field(out, buf, h);
	}
	if (rw->upgrade && m->upgrade_idx >= 0) {
		put_field(out, buf, &m->hdr[m->upgrade_idx]);
		sbuf_puts(out, "Connection: upgrade\r\n");
	} else if (rw->http10) {
		sbuf_puts(out, "Connection: close\r\n");
	}
	if (rw->forwarded) {
		put_joined(out, buf, m, H1_H_X_FORWARDED_FOR, "X-Forwarded-For", rw->client_ip, named);
		/* RFC 7239: an IPv6 address is quoted and bracketed */
		sbuf_puts(out, "Forwarded: for=");
		if (rw->client_v6) {
			sbuf_puts(out, "\"[");
			sbuf_puts(out, rw->client_ip);
			sbuf_puts(out, "]\"");
		} else {
			sbuf_puts(out, rw->client_ip);
		}
		sbuf_puts(out, ";proto=http");
		if (m->authority.len) {
			sbuf_puts(out, ";host=");
			put_fwd_value(out, buf + m->authority.off, m->authority.len);
		}
		sbuf_append(out, "\r\n", 2);
		put_joined(out, buf, m, H1_H_VIA, "Via", VIA_TOKEN, named);
	}
	sbuf_append(out, "\r\n", 2);
}

void http_rewrite_response(struct sbuf *out, const char *buf, const struct h1_msg *m,
			   const struct http_resp_rewrite *rw)
{
	bool named = conn_names_fields(buf, m);
	/* the parser keeps status within 100..599: three digits */
	char line[13] = "HTTP/1.1 000 ";
	line[9] = (char)('0' + m->status / 100 % 10);
	line[10] = (char)('0' + m->status / 10 % 10);
	line[11] = (char)('0' + m->status % 10);
	sbuf_append(out, line, sizeof(line));
	put_slice(out, buf, m->reason);
	sbuf_append(out, "\r\n", 2);
	bool switching = m->status == 101;
	for (uint32_t i = 0; i < m->n_hdr; i++) {
		const struct h1_header *h = &m->hdr[i];
		if (rw->via && h->id == H1_H_VIA)
			continue;
		if (hop_by_hop(buf, m, h, named) && !(switching && h->id == H1_H_UPGRADE))
			continue;
		put_field(out, buf, h);
	}
	if (switching)
		sbuf_puts(out, "Connection: upgrade\r\n");
	else if (rw->close)
		sbuf_puts(out, "Connection: close\r\n");
	else if (rw->client_http10)
		sbuf_puts(out, "Connection: keep-alive\r\n");
	if (rw->via)
		put_joined(out, buf, m, H1_H_VIA, "Via", VIA_TOKEN, named);
	sbuf_append(out, "\r\n", 2);
}

const char *http_status_reason(uint16_t status)
{
	switch (status) {
	case 100: return "Continue";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

void http_local_response(struct sbuf *out, uint16_t status, bool close, bool head)
{
	const char *reason = http_status_reason(status);
	char body[96];
	int n = snprintf(body, sizeof(body), "%u %s\n", status, reason);
	if (n < 0)
		n = 0;
	sbuf_printf(out,
		    "HTTP/1.1 %u %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
		    "Cache-Control: no-store\r\n%s\r\n%s",
		    status, reason, n, close ? "Connection: close\r\n" : "", head ? "" : body);
}
