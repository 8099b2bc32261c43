/* fuzz_http1.c - libFuzzer harness for the HTTP/1.1 parser: whole vs split feeds agree, limits hold, results match naive re-reads. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http1.h"

/*
 * Input: byte 0 chooses the parser (bit 0 response, bits 1-3 the request
 * method a response answers, bit 4 small limits, bit 5 a small header
 * array), byte 1 seeds the split points, the rest is the stream.
 * Checks, for heads and then for the body that follows a parsed head, and
 * for the chunked decoder run on the stream directly:
 * - one whole feed, random splits (each piece from a fresh exact-size copy:
 *   the buffer moves, reads past the end trip ASan) and byte-by-byte feeds
 *   give the same result, offsets, slices and data;
 * - limits hold (head_len <= max_head, fields <= cap, start line <= max_line);
 * - an accepted head re-read naively agrees: it ends at the first CRLF CRLF,
 *   has as many field lines as reported, no bare CR or LF, no CTL; values
 *   are trimmed; framing fields are consistent with the body kind;
 * - an accepted chunked body re-read naively (hex size, skip to CRLF, data,
 *   CRLF, ..., trailers to the empty line) ends at the same byte with the
 *   same data.
 */

#include "fuzz_check.h"

#define CAP 128

struct hres {
	enum h1_res res;
	enum h1_err err;
	uint32_t err_off;
	uint16_t status;
	struct h1_msg msg;
	struct h1_header hdr[CAP];
};

struct cfg {
	bool response;
	enum h1_method req;
	struct h1_limits lim;
	uint32_t cap;
};

static uint32_t rng;
static uint32_t next_rand(void)
{
	rng = rng * 1103515245u + 12345u;
	return rng >> 8;
}

static void hinit(struct h1_parser *p, struct h1_header *hdr, const struct cfg *c)
{
	if (c->response)
		h1_response_init(p, &c->lim, hdr, c->cap, c->req);
	else
		h1_request_init(p, &c->lim, hdr, c->cap);
}

static void hsave(struct hres *r, const struct h1_parser *p, enum h1_res res,
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

static enum h1_res feed_copy(struct h1_parser *p, const uint8_t *d, size_t n)
{
	char *b = malloc(n ? n : 1);
	memcpy(b, d, n);
	enum h1_res r = h1_parse(p, b, n);
	free(b);
	return r;
}

static bool in_head(struct h1_slice s, uint32_t head_len)
{
	return (uint64_t)s.off + s.len <= head_len;
}

static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_head(const struct hres *r, const uint8_t *d, size_t len, const struct cfg *c)
{
	const struct h1_msg *m = &r->msg;
	uint32_t max_hdr = c->cap < c->lim.max_headers ? c->cap : c->lim.max_headers;

	if (r->res == H1_NEED_MORE) {
		check(len <= c->lim.max_head);
		return;
	}
	if (r->res == H1_ERROR) {
		check(r->err != H1_E_NONE && r->err < H1_E__COUNT);
		check(r->err_off <= len);
		if (c->response)
			check(r->status == 502);
		else
			check(r->status == 400 || r->status == 414 || r->status == 417 ||
			      r->status == 431 || r->status == 501 || r->status == 505);
		return;
	}
	check(r->res == H1_DONE);
	check(m->head_len <= len && m->head_len <= c->lim.max_head);
	check(m->n_hdr <= max_hdr);

	/* naive re-read: skip leading CRLFs (requests), then the first CRLF CRLF */
	size_t s = 0;
	if (!c->response)
		while (s + 1 < len && d[s] == '\r' && d[s + 1] == '\n')
			s += 2;
	size_t e = s;
	while (e + 3 < len && memcmp(d + e, "\r\n\r\n", 4) != 0)
		e++;
	check(e + 4 == m->head_len);
	uint32_t lines = 0;
	for (size_t i = s; i < m->head_len; i++) {
		unsigned char ch = d[i];
		if (ch == '\r')
			check(i + 1 < m->head_len && d[i + 1] == '\n');
		if (ch == '\n') {
			check(i > 0 && d[i - 1] == '\r');
			lines++;
		}
		check(ch >= 0x20 || ch == '\t' || ch == '\r' || ch == '\n');
		check(ch != 0x7f);
	}
	check(lines == m->n_hdr + 2);	/* start line, fields, empty line */

	/* start line within max_line */
	if (c->response) {
		check(m->status >= 100 && m->status <= 599);
		check(in_head(m->reason, m->head_len));
		check(m->reason.off + m->reason.len <= c->lim.max_line);
	} else {
		check(m->method_s.len > 0 && m->target.len > 0);
		check(m->method_s.off == s);
		check(m->target.off + m->target.len + 9 - m->method_s.off <= c->lim.max_line);
		check(in_head(m->path, m->head_len) && in_head(m->authority, m->head_len));
		check(memcmp(d + m->target.off + m->target.len, " HTTP/1.", 8) == 0);
	}
	check(m->version_minor <= 1);

	uint32_t n_cl = 0, n_te = 0, n_host = 0;
	for (uint32_t i = 0; i < m->n_hdr; i++) {
		const struct h1_header *h = &r->hdr[i];
		check(h->name.len > 0 && in_head(h->name, m->head_len) && in_head(h->value, m->head_len));
		for (uint32_t k = 0; k < h->name.len; k++)
			check(is_tchar(d[h->name.off + k]));
		check(d[h->name.off + h->name.len] == ':');
		if (h->value.len) {
			unsigned char f = d[h->value.off], l = d[h->value.off + h->value.len - 1];
			check(f != ' ' && f != '\t' && l != ' ' && l != '\t');
		}
		check(d[h->value.off + h->value.len] == '\r' || d[h->value.off + h->value.len] == ' ' ||
		      d[h->value.off + h->value.len] == '\t');
		n_cl += h->id == H1_H_CONTENT_LENGTH;
		n_te += h->id == H1_H_TRANSFER_ENCODING;
		n_host += h->id == H1_H_HOST;
	}
	check(n_cl <= 1);
	check(!(n_cl && n_te));
	if (!c->response) {
		check(n_host <= 1);
		if (m->version_minor == 1)
			check(n_host == 1);
		check(m->body == H1_BODY_NONE || m->body == H1_BODY_LENGTH || m->body == H1_BODY_CHUNKED);
		check((m->body == H1_BODY_CHUNKED) == (n_te > 0));
		check((m->body == H1_BODY_LENGTH) == (n_cl > 0));
		if (n_te)
			check(m->version_minor == 1);
	} else if (m->body == H1_BODY_LENGTH) {
		check(n_cl == 1);
	}
	if (m->body != H1_BODY_LENGTH)
		check(m->content_length == 0);
	check(m->content_length <= (uint64_t)INT64_MAX);
}

static void same_head(const struct hres *a, const struct hres *b)
{
	check(a->res == b->res);
	check(a->err == b->err);
	check(a->err_off == b->err_off);
	check(a->status == b->status);
	check(memcmp(&a->msg, &b->msg, sizeof(a->msg)) == 0);
	check(memcmp(a->hdr, b->hdr, sizeof(a->hdr)) == 0);
}

/* --- bodies ------------------------------------------------------------------------- */

struct bres {
	enum h1_res res;
	enum h1_err err;
	size_t used;
	uint64_t data_len;
	uint64_t hash;
};

static uint64_t fnv(uint64_t h, const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ull;
	return h;
}

/* Feeds d[0..len) cut at n_cuts random points; chunked == NULL runs an
 * h1_body for m, else the bare chunked decoder. */
static void body_run(const struct h1_msg *m, const struct h1_limits *lim, bool want_data,
		     const uint8_t *d, size_t len, unsigned n_cuts, struct bres *o)
{
	struct h1_body b;
	h1_body_init(&b, m, lim, want_data);
	memset(o, 0, sizeof(*o));
	o->hash = 1469598103934665603ull;
	size_t start = 0;
	for (unsigned k = 0; k <= n_cuts; k++) {
		size_t end = k < n_cuts ? start + next_rand() % (len - start + 1) : len;
		uint8_t *piece = malloc(end - start + 1);
		memcpy(piece, d + start, end - start);
		size_t off = 0;
		enum h1_res r;
		for (;;) {
			size_t used;
			struct h1_slice s = { 0, 0 };
			r = h1_body_feed(&b, (const char *)piece + off, end - start - off, &used, &s);
			check(used <= end - start - off);
			if (r == H1_DATA) {
				check(want_data && s.len > 0 && s.off + s.len == used);
				o->hash = fnv(o->hash, piece + off + s.off, s.len);
				o->data_len += s.len;
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
		check(off == end - start);
		start = end;
	}
	o->err = b.ch.err;
}

/* Naive chunked re-read of an accepted body; checks end and data. */
static void chunk_reference(const uint8_t *d, size_t used, const struct bres *o)
{
	size_t i = 0;
	uint64_t total = 0, h = 1469598103934665603ull;
	for (;;) {
		uint64_t size = 0;
		size_t digits = 0;
		while (i < used) {
			unsigned char c = d[i];
			int v = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ?
				(c | 0x20) - 'a' + 10 : -1;
			if (v < 0)
				break;
			size = size * 16 + (unsigned)v;
			digits++;
			i++;
		}
		check(digits >= 1 && digits <= 16 && size <= (1ull << 62));
		while (i < used && d[i] != '\r')
			i++;
		check(i + 1 < used && d[i + 1] == '\n');
		i += 2;
		if (!size)
			break;
		check(i + size + 2 <= used);
		h = fnv(h, d + i, size);
		total += size;
		i += size;
		check(d[i] == '\r' && d[i + 1] == '\n');
		i += 2;
	}
	/* trailers: lines up to the empty one */
	while (!(d[i] == '\r' && d[i + 1] == '\n')) {
		while (d[i] != '\r')
			i++;
		check(d[i + 1] == '\n');
		i += 2;
	}
	check(i + 2 == used);
	check(total == o->data_len && h == o->hash);
}

static void check_body(const struct h1_msg *m, const struct h1_limits *lim, const uint8_t *d,
		       size_t len)
{
	struct bres whole, split, val;
	body_run(m, lim, true, d, len, 0, &whole);
	body_run(m, lim, true, d, len, 1 + next_rand() % 8, &split);
	body_run(m, lim, false, d, len, next_rand() % 8, &val);
	check(whole.res == split.res && whole.err == split.err && whole.used == split.used);
	check(whole.data_len == split.data_len && whole.hash == split.hash);
	check(whole.res == val.res && whole.err == val.err && whole.used == val.used);
	check(val.data_len == 0);
	check(whole.used <= len);
	switch (m->body) {
	case H1_BODY_NONE:
		check(whole.res == H1_DONE && whole.used == 0);
		break;
	case H1_BODY_LENGTH:
		check(whole.used == (m->content_length < len ? m->content_length : len));
		check(whole.data_len == whole.used);
		break;
	case H1_BODY_CHUNKED:
		if (whole.res == H1_DONE)
			chunk_reference(d, whole.used, &whole);
		if (whole.res == H1_NEED_MORE)
			check(whole.used == len);
		check(whole.data_len <= whole.used);
		break;
	default:
		check(whole.res == H1_NEED_MORE && whole.used == len && whole.data_len == len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct cfg c;
	memset(&c, 0, sizeof(c));
	c.response = data[0] & 1;
	static const enum h1_method reqs[8] = { H1_M_GET, H1_M_HEAD, H1_M_CONNECT, H1_M_POST,
						H1_M_GET, H1_M_PUT, H1_M_OPTIONS, H1_M_OTHER };
	c.req = reqs[(data[0] >> 1) & 7];
	if (data[0] & 0x10) {
		c.lim = (struct h1_limits){ .max_line = 40, .max_head = 200, .max_headers = 6,
					    .max_chunk_line = 12, .max_trailer = 30 };
	} else {
		c.lim = (struct h1_limits){ H1_DEFAULT_MAX_LINE, H1_DEFAULT_MAX_HEAD,
					    H1_DEFAULT_MAX_HEADERS, H1_DEFAULT_MAX_CHUNK_LINE,
					    H1_DEFAULT_MAX_TRAILER };
	}
	c.cap = data[0] & 0x20 ? 3 : CAP;
	rng = data[1] * 2654435761u + (uint32_t)size;
	const uint8_t *d = data + 2;
	size_t len = size - 2;

	/* heads: whole, random splits, byte by byte */
	struct h1_parser p;
	struct h1_header hdr[CAP];
	struct hres whole, other;
	hinit(&p, hdr, &c);
	hsave(&whole, &p, feed_copy(&p, d, len), hdr);
	check_head(&whole, d, len, &c);

	hinit(&p, hdr, &c);
	enum h1_res r = H1_NEED_MORE;
	size_t at = 0;
	unsigned cuts = 1 + next_rand() % 8;
	for (unsigned k = 0; k < cuts && r == H1_NEED_MORE; k++) {
		at += next_rand() % (len - at + 1);
		r = feed_copy(&p, d, at);
	}
	if (r == H1_NEED_MORE)
		r = feed_copy(&p, d, len);
	hsave(&other, &p, r, hdr);
	same_head(&whole, &other);

	hinit(&p, hdr, &c);
	r = H1_NEED_MORE;
	for (size_t k = 0; k <= len && r == H1_NEED_MORE; k++)
		r = h1_parse(&p, (const char *)d, k);
	hsave(&other, &p, r, hdr);
	same_head(&whole, &other);

	/* the body after an accepted head */
	if (whole.res == H1_DONE)
		check_body(&whole.msg, &c.lim, d + whole.msg.head_len, len - whole.msg.head_len);

	/* the chunked decoder on the raw stream */
	struct h1_msg cm;
	memset(&cm, 0, sizeof(cm));
	cm.body = H1_BODY_CHUNKED;
	check_body(&cm, &c.lim, d, len);
	return 0;
}
