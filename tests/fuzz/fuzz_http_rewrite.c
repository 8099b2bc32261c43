/* fuzz_http_rewrite.c - libFuzzer harness for the head rewriter: every head h1_parse accepts comes out re-parseable, same framing, no hop-by-hop fields. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/sbuf.h"
#include "proto/http1.h"
#include "proto/http_rewrite.h"

/*
 * Input: byte 0 holds flags, the rest is one head.
 * bit 4 clear: a request. bit 0 forwarded, bit 1 upgrade, bit 2 http10
 * (always set for an HTTP/1.0 request, as the proxy does; never for a
 * chunked one, which HTTP/1.0 cannot carry), bit 3 IPv6 client, bit 5 a
 * default_host, bits 6-7 which client address.
 * bit 4 set: a response. bit 0 via, bit 1 close, bit 2 HTTP/1.0 client,
 * bit 3 answer to HEAD (else GET).
 * The head is parsed with default limits; when accepted it is rewritten
 * and the output parsed again by a fresh parser (limits a little wider:
 * pandit adds up to four fields), which must accept exactly the output,
 * with the same method / status, framing and target in origin-form; the
 * fields are the received ones minus hop-by-hop ones, in order, then
 * exactly the fields pandit adds, checked piece by piece here with code
 * independent of the rewriter's.
 */

#include "fuzz_check.h"

#define CAP 128

static const char *const v4_ips[4] = { "192.0.2.1", "10.0.0.255", "127.0.0.1", "203.0.113.77" };
static const char *const v6_ips[4] = { "2001:db8::1", "::1", "fe80::aa:bbff:fe00:1",
				       "::ffff:192.0.2.1" };

static bool slice_is(const char *b, struct h1_slice s, const char *lit, size_t n)
{
	return s.len == n && memcmp(b + s.off, lit, n) == 0;
}

static bool slices_eq(const char *a, struct h1_slice sa, const char *b, struct h1_slice sb)
{
	return sa.len == sb.len && memcmp(a + sa.off, b + sb.off, sa.len) == 0;
}

static bool tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Whether field name nm (in buffer b) appears as an element of any
 * Connection field of m: elements split on ',' with OWS trimmed. */
static bool conn_names(const char *b, const struct h1_msg *m, const char *nm, size_t nlen)
{
	for (uint32_t i = 0; i < m->n_hdr; i++) {
		if (m->hdr[i].id != H1_H_CONNECTION)
			continue;
		const char *v = b + m->hdr[i].value.off;
		size_t n = m->hdr[i].value.len, s = 0;
		while (s <= n) {
			size_t e = s;
			while (e < n && v[e] != ',')
				e++;
			size_t a = s, z = e;
			while (a < z && (v[a] == ' ' || v[a] == '\t'))
				a++;
			while (z > a && (v[z - 1] == ' ' || v[z - 1] == '\t'))
				z--;
			if (z - a == nlen && nlen && strncasecmp(v + a, nm, nlen) == 0)
				return true;
			s = e + 1;
		}
	}
	return false;
}

/* Whether the received field h of m may not travel to the next hop. */
static bool is_hop(const char *b, const struct h1_msg *m, const struct h1_header *h)
{
	if (h->id == H1_H_CONNECTION || h->id == H1_H_KEEP_ALIVE ||
	    h->id == H1_H_PROXY_CONNECTION || h->id == H1_H_TE || h->id == H1_H_UPGRADE)
		return true;
	if (h->id == H1_H_CONTENT_LENGTH || h->id == H1_H_TRANSFER_ENCODING || h->id == H1_H_HOST)
		return false;
	return conn_names(b, m, b + h->name.off, h->name.len);
}

/* Parses o[0..n) as a head; the parser and header array are the caller's. */
static enum h1_res reparse(struct h1_parser *p, struct h1_header *hdr, bool response,
			   enum h1_method req, const char *o, size_t n)
{
	static const struct h1_limits wide = { .max_head = H1_DEFAULT_MAX_HEAD + 4096,
					       .max_headers = H1_DEFAULT_MAX_HEADERS + 8 };
	if (response)
		h1_response_init(p, &wide, hdr, CAP, req);
	else
		h1_request_init(p, &wide, hdr, CAP);
	/* an exact-size copy: a read past the end trips ASan */
	char *c = malloc(n ? n : 1);
	memcpy(c, o, n);
	enum h1_res r = h1_parse(p, c, n);
	free(c);
	return r;
}

static uint32_t count_id(const struct h1_msg *m, enum h1_hdr_id id)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < m->n_hdr; i++)
		n += m->hdr[i].id == id;
	return n;
}

/* The received fields that must come out unchanged: out[from..) starts
 * with exactly them, in order; returns how many. */
static uint32_t check_kept(const char *b, const struct h1_msg *m, const char *o,
			   const struct h1_msg *om, uint32_t from, bool (*keep)(const char *,
			   const struct h1_msg *, const struct h1_header *, const void *),
			   const void *arg)
{
	uint32_t k = from;
	for (uint32_t i = 0; i < m->n_hdr; i++) {
		const struct h1_header *h = &m->hdr[i];
		if (!keep(b, m, h, arg))
			continue;
		check(k < om->n_hdr);
		const struct h1_header *g = &om->hdr[k++];
		check(g->id == h->id);
		check(slices_eq(b, h->name, o, g->name));
		check(slices_eq(b, h->value, o, g->value));
	}
	return k - from;
}

/* --- requests -------------------------------------------------------------------- */

static bool req_keep(const char *b, const struct h1_msg *m, const struct h1_header *h,
		     const void *arg)
{
	const struct http_req_rewrite *rw = arg;
	if (h->id == H1_H_HOST || h->id == H1_H_EXPECT || is_hop(b, m, h))
		return false;
	if (rw->forwarded && (h->id == H1_H_X_FORWARDED_FOR || h->id == H1_H_VIA))
		return false;
	return true;
}

/* Checks that the value v[0..n) of a Forwarded field is one element whose
 * parameters are exactly for=<client>, proto=http and, when host is
 * non-NULL, host=<host>: a value the sender could shape (the host) must
 * not add parameters or elements. */
static void check_forwarded(const char *v, size_t n, const struct http_req_rewrite *rw,
			    const char *host, size_t hlen)
{
	bool seen_for = false, seen_proto = false, seen_host = false;
	size_t i = 0;
	for (;;) {
		size_t ns = i;
		while (i < n && tchar((unsigned char)v[i]))
			i++;
		check(i > ns && i < n && v[i] == '=');
		const char *name = v + ns;
		size_t nlen = i - ns;
		i++;
		const char *val;
		size_t vlen;
		if (i < n && v[i] == '"') {
			val = v + ++i;
			while (i < n && v[i] != '"') {
				check(v[i] != '\\');
				i++;
			}
			check(i < n);
			vlen = (size_t)(v + i - val);
			i++;
		} else {
			val = v + i;
			while (i < n && tchar((unsigned char)v[i]))
				i++;
			vlen = (size_t)(v + i - val);
		}
		if (nlen == 3 && strncasecmp(name, "for", 3) == 0) {
			check(!seen_for);
			seen_for = true;
			const char *ip = rw->client_ip;
			size_t il = strlen(ip);
			if (rw->client_v6)
				check(vlen == il + 2 && val[0] == '[' && memcmp(val + 1, ip, il) == 0 &&
				      val[il + 1] == ']' && val[-1] == '"');
			else
				check(vlen == il && memcmp(val, ip, il) == 0);
		} else if (nlen == 5 && strncasecmp(name, "proto", 5) == 0) {
			check(!seen_proto);
			seen_proto = true;
			check(vlen == 4 && memcmp(val, "http", 4) == 0);
		} else if (nlen == 4 && strncasecmp(name, "host", 4) == 0) {
			check(!seen_host && host);
			seen_host = true;
			check(vlen == hlen && memcmp(val, host, hlen) == 0);
		} else {
			check(!"unexpected Forwarded parameter");
		}
		if (i == n)
			break;
		check(v[i] == ';');	/* never ',': a second element */
		i++;
	}
	check(seen_for && seen_proto && seen_host == (host != NULL));
}

static void fuzz_request(uint8_t flags, const char *b, size_t len)
{
	struct h1_parser p;
	struct h1_header hdr[H1_DEFAULT_MAX_HEADERS];
	h1_request_init(&p, NULL, hdr, H1_DEFAULT_MAX_HEADERS);
	if (h1_parse(&p, b, len) != H1_DONE)
		return;
	const struct h1_msg *m = &p.msg;

	bool v6 = flags & 8;
	struct http_req_rewrite rw = {
		.client_ip = (v6 ? v6_ips : v4_ips)[flags >> 6],
		.client_v6 = v6,
		.forwarded = flags & 1,
		.upgrade = flags & 2,
		.http10 = m->version_minor == 0 || ((flags & 4) && m->body != H1_BODY_CHUNKED),
		.default_host = flags & 0x20 ? (v6 ? "[::1]:8080" : "127.0.0.1:80") : NULL,
	};
	struct sbuf out;
	sbuf_init(&out);
	http_rewrite_request(&out, b, m, &rw);
	check(!out.oom);
	const char *o = out.data;

	struct h1_parser q;
	struct h1_header oh[CAP];
	enum h1_res r = reparse(&q, oh, false, H1_M_GET, o, out.len);
	if (r != H1_DONE)
		fprintf(stderr, "reparse: %s at %u\n%.*s", h1_err_str(q.err), q.err_off,
			(int)out.len, o);
	check(r == H1_DONE);
	const struct h1_msg *om = &q.msg;
	check(om->head_len == out.len);

	/* request line */
	check(om->method == m->method);
	check(slices_eq(b, m->method_s, o, om->method_s));
	check(om->version_minor == (rw.http10 ? 0 : 1));
	switch (m->form) {
	case H1_FORM_ABSOLUTE:
		if (m->method == H1_M_OPTIONS && !m->path.len) {
			check(om->form == H1_FORM_ASTERISK);
			break;
		}
		check(om->form == H1_FORM_ORIGIN);
		if (m->path.len && b[m->path.off] == '/') {
			check(slices_eq(b, m->path, o, om->target));
		} else {
			check(om->target.len == m->path.len + 1 && o[om->target.off] == '/');
			check(memcmp(o + om->target.off + 1, b + m->path.off, m->path.len) == 0);
		}
		break;
	default:
		check(om->form == m->form);
		check(slices_eq(b, m->target, o, om->target));
	}

	/* framing */
	check(om->body == m->body);
	check(om->content_length == m->content_length);
	check(count_id(om, H1_H_CONTENT_LENGTH) == count_id(m, H1_H_CONTENT_LENGTH));
	check(count_id(om, H1_H_TRANSFER_ENCODING) == count_id(m, H1_H_TRANSFER_ENCODING));

	/* Host: exactly one, first, the authority that applied */
	check(count_id(om, H1_H_HOST) == 1 && om->host_idx == 0);
	struct h1_slice host = om->hdr[0].value;
	if (m->authority.len)
		check(slices_eq(b, m->authority, o, host));
	else if (rw.default_host)
		check(slice_is(o, host, rw.default_host, strlen(rw.default_host)));
	else
		check(host.len == 0);

	/* what may never pass */
	check(count_id(om, H1_H_KEEP_ALIVE) == 0);
	check(count_id(om, H1_H_PROXY_CONNECTION) == 0);
	check(count_id(om, H1_H_TE) == 0);
	check(count_id(om, H1_H_EXPECT) == 0);

	/* the received fields, in order, then pandit's */
	uint32_t k = 1 + check_kept(b, m, o, om, 1, req_keep, &rw);
	bool upgrading = rw.upgrade && m->upgrade_idx >= 0;
	if (upgrading) {
		check(k + 1 < om->n_hdr);
		check(om->hdr[k].id == H1_H_UPGRADE);
		check(slices_eq(b, m->hdr[m->upgrade_idx].value, o, om->hdr[k].value));
		check(om->hdr[k + 1].id == H1_H_CONNECTION);
		check(slice_is(o, om->hdr[k + 1].value, "upgrade", 7));
		check(om->conn == H1_CONN_UPGRADE);
		k += 2;
	} else if (rw.http10) {
		check(k < om->n_hdr && om->hdr[k].id == H1_H_CONNECTION);
		check(slice_is(o, om->hdr[k].value, "close", 5));
		check(!om->keep_alive);
		k++;
	}
	check(count_id(om, H1_H_CONNECTION) == (upgrading || rw.http10 ? 1u : 0u));
	check(count_id(om, H1_H_UPGRADE) == (upgrading ? 1u : 0u));

	if (rw.forwarded) {
		check(k + 3 == om->n_hdr);
		/* X-Forwarded-For: one field, the received values joined, client last */
		check(count_id(om, H1_H_X_FORWARDED_FOR) == 1);
		const struct h1_header *x = &om->hdr[k];
		check(x->id == H1_H_X_FORWARDED_FOR);
		size_t il = strlen(rw.client_ip);
		check(x->value.len >= il);
		check(memcmp(o + x->value.off + x->value.len - il, rw.client_ip, il) == 0);
		size_t at = x->value.off;
		for (uint32_t i = 0; i < m->n_hdr; i++) {
			const struct h1_header *h = &m->hdr[i];
			if (h->id != H1_H_X_FORWARDED_FOR || !h->value.len ||
			    conn_names(b, m, b + h->name.off, h->name.len))
				continue;
			check(memcmp(o + at, b + h->value.off, h->value.len) == 0);
			at += h->value.len;
			check(memcmp(o + at, ", ", 2) == 0);
			at += 2;
		}
		check(at + il == x->value.off + x->value.len);

		/* Forwarded: pandit's element is the last field of that name;
		 * host= is the authority received (RFC 7239 5.3), none when the
		 * client sent none, even if pandit filled in Host */
		const struct h1_header *f = &om->hdr[k + 1];
		check(f->id == H1_H_FORWARDED);
		check_forwarded(o + f->value.off, f->value.len, &rw,
				m->authority.len ? b + m->authority.off : NULL, m->authority.len);

		/* Via: one field, ends with pandit */
		check(count_id(om, H1_H_VIA) == 1);
		const struct h1_header *v = &om->hdr[k + 2];
		check(v->id == H1_H_VIA && v->value.len >= 10);
		check(memcmp(o + v->value.off + v->value.len - 10, "1.1 pandit", 10) == 0);
	} else {
		check(k == om->n_hdr);
	}
	sbuf_free(&out);
}

/* --- responses ------------------------------------------------------------------- */

static bool resp_keep(const char *b, const struct h1_msg *m, const struct h1_header *h,
		      const void *arg)
{
	const struct http_resp_rewrite *rw = arg;
	if (rw->via && h->id == H1_H_VIA)
		return false;
	if (m->status == 101 && h->id == H1_H_UPGRADE)
		return true;
	return !is_hop(b, m, h);
}

static void fuzz_response(uint8_t flags, const char *b, size_t len)
{
	enum h1_method req = flags & 8 ? H1_M_HEAD : H1_M_GET;
	struct h1_parser p;
	struct h1_header hdr[H1_DEFAULT_MAX_HEADERS];
	h1_response_init(&p, NULL, hdr, H1_DEFAULT_MAX_HEADERS, req);
	if (h1_parse(&p, b, len) != H1_DONE)
		return;
	const struct h1_msg *m = &p.msg;

	struct http_resp_rewrite rw = { .via = flags & 1, .close = flags & 2,
					.client_http10 = flags & 4 };
	struct sbuf out;
	sbuf_init(&out);
	http_rewrite_response(&out, b, m, &rw);
	check(!out.oom);
	const char *o = out.data;

	struct h1_parser q;
	struct h1_header oh[CAP];
	enum h1_res r = reparse(&q, oh, true, req, o, out.len);
	if (r != H1_DONE)
		fprintf(stderr, "reparse: %s at %u\n%.*s", h1_err_str(q.err), q.err_off,
			(int)out.len, o);
	check(r == H1_DONE);
	const struct h1_msg *om = &q.msg;
	check(om->head_len == out.len);
	check(memcmp(o, "HTTP/1.1 ", 9) == 0);
	check(om->status == m->status);
	check(slices_eq(b, m->reason, o, om->reason));
	check(om->body == m->body);
	check(om->content_length == m->content_length);

	check(count_id(om, H1_H_KEEP_ALIVE) == 0);
	check(count_id(om, H1_H_PROXY_CONNECTION) == 0);
	check(count_id(om, H1_H_TE) == 0);

	uint32_t k = check_kept(b, m, o, om, 0, resp_keep, &rw);
	const char *conn = m->status == 101 ? "upgrade" : rw.close ? "close" :
			   rw.client_http10 ? "keep-alive" : NULL;
	if (conn) {
		check(k < om->n_hdr && om->hdr[k].id == H1_H_CONNECTION);
		check(slice_is(o, om->hdr[k].value, conn, strlen(conn)));
		k++;
	}
	check(count_id(om, H1_H_CONNECTION) == (conn ? 1u : 0u));
	check(count_id(om, H1_H_UPGRADE) == (m->status == 101 ? count_id(m, H1_H_UPGRADE) : 0u));
	if (rw.via) {
		check(k + 1 == om->n_hdr);
		check(count_id(om, H1_H_VIA) == 1);
		const struct h1_header *v = &om->hdr[k];
		check(v->id == H1_H_VIA && v->value.len >= 10);
		check(memcmp(o + v->value.off + v->value.len - 10, "1.1 pandit", 10) == 0);
	} else {
		check(k == om->n_hdr);
	}
	sbuf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* an exact-size copy of the head: reads past it trip ASan */
	size_t len = size - 1;
	char *b = malloc(len ? len : 1);
	memcpy(b, data + 1, len);
	if (data[0] & 0x10)
		fuzz_response(data[0], b, len);
	else
		fuzz_request(data[0], b, len);
	free(b);
	return 0;
}
