/* http1.c - HTTP/1.x request and response head parser: a resumable byte state machine, then the framing semantics. */
#include "proto/http1.h"

#include <string.h>

/* --- character classes -------------------------------------------------------- */

#define H1C_TCHAR	0x01	/* token */
#define H1C_VCHAR	0x02	/* VCHAR or obs-text: field-vchar */
#define H1C_WS		0x04	/* SP, HTAB */
#define H1C_TGT		0x08	/* request-target byte */
#define H1C_HEX		0x10
#define H1C_REG		0x20	/* reg-name byte (unreserved, sub-delims, '%') */
#define H1C_QD		0x40	/* qdtext */
#define H1C_FIELD	0x80	/* field-vchar, SP or HTAB: a byte inside a field value */

#define IS_ALPHA(c)	(((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_DIGIT(c)	((c) >= '0' && (c) <= '9')
#define IS_HEX(c)	(IS_DIGIT(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))
#define IS_TCHAR(c)	(IS_ALPHA(c) || IS_DIGIT(c) || (c) == '!' || (c) == '#' || (c) == '$' || \
			 (c) == '%' || (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || \
			 (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' || (c) == '`' || \
			 (c) == '|' || (c) == '~')
#define IS_VCHAR_OBS(c)	(((c) >= 0x21 && (c) <= 0x7e) || (c) >= 0x80)
#define IS_UNRESERVED(c) (IS_ALPHA(c) || IS_DIGIT(c) || (c) == '-' || (c) == '.' || (c) == '_' || \
			  (c) == '~')
#define IS_SUBDELIM(c)	((c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || \
			 (c) == ')' || (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=')
/* request-target bytes: RFC 3986 (no '#') plus what browsers leave unencoded */
#define IS_TGT(c)	(IS_UNRESERVED(c) || IS_SUBDELIM(c) || (c) == ':' || (c) == '@' || \
			 (c) == '/' || (c) == '?' || (c) == '%' || (c) == '[' || (c) == ']' || \
			 (c) == '|' || (c) == '^' || (c) == '{' || (c) == '}' || (c) == '`')
/* qdtext of a quoted-string */
#define IS_QD(c)	((c) == '\t' || (c) == ' ' || (c) == 0x21 || ((c) >= 0x23 && (c) <= 0x5b) || \
			 ((c) >= 0x5d && (c) <= 0x7e) || (c) >= 0x80)

#define CLS(c) ((IS_TCHAR(c) ? H1C_TCHAR : 0) | (IS_VCHAR_OBS(c) ? H1C_VCHAR : 0) | \
		(((c) == ' ' || (c) == '\t') ? H1C_WS : 0) | (IS_TGT(c) ? H1C_TGT : 0) | \
		(IS_HEX(c) ? H1C_HEX : 0) | \
		((IS_UNRESERVED(c) || IS_SUBDELIM(c) || (c) == '%') ? H1C_REG : 0) | \
		(IS_QD(c) ? H1C_QD : 0) | \
		((IS_VCHAR_OBS(c) || (c) == ' ' || (c) == '\t') ? H1C_FIELD : 0))
#define R4(n)	CLS(n), CLS((n) + 1), CLS((n) + 2), CLS((n) + 3)
#define R16(n)	R4(n), R4((n) + 4), R4((n) + 8), R4((n) + 12)
#define R64(n)	R16(n), R16((n) + 16), R16((n) + 32), R16((n) + 48)

static const uint8_t h1_cls[256] = { R64(0), R64(64), R64(128), R64(192) };

/* The reason for an unexpected byte: LF and control characters have their
 * own, anything else is the structural error of the place. */
static enum h1_err h1_bad_byte(unsigned char c, enum h1_err dflt)
{
	if (c == '\n')
		return H1_E_BARE_LF;
	if ((c < 0x20 && c != '\r' && c != '\t') || c == 0x7f)
		return H1_E_CTL;
	return dflt;
}

/* --- small helpers ------------------------------------------------------------- */

#define SWAR_ONES	0x0101010101010101ull
#define SWAR_HIGHS	0x8080808080808080ull

/* Whether any byte of x is below 0x20 or is 0x7f (exact: "Bit Twiddling
 * Hacks" hasless() and haszero(), which never miss and never err on the
 * question "is there such a byte"). */
static inline bool swar_has_ctl(uint64_t x)
{
	uint64_t lt = (x - SWAR_ONES * 0x20) & ~x & SWAR_HIGHS;
	uint64_t d = x ^ (SWAR_ONES * 0x7f);
	uint64_t del = (d - SWAR_ONES) & ~d & SWAR_HIGHS;
	return (lt | del) != 0;
}

static bool eq_ci(const unsigned char *s, size_t n, const char *lit)
{
	size_t i = 0;
	for (; i < n; i++) {
		unsigned char a = s[i], b = (unsigned char)lit[i];
		if (!b)
			return false;
		if (a >= 'A' && a <= 'Z')
			a |= 0x20;
		if (b >= 'A' && b <= 'Z')
			b |= 0x20;
		if (a != b)
			return false;
	}
	return lit[i] == 0;
}

bool h1_slice_eq(const char *buf, struct h1_slice s, const char *lit)
{
	return eq_ci((const unsigned char *)buf + s.off, s.len, lit);
}

/* Names compared only when the length and first letter match. */
#define HDR_IS(lit) ((s[0] | 0x20) == (lit)[0] && eq_ci(s, n, lit))

static enum h1_hdr_id hdr_id(const unsigned char *s, size_t n)
{
	switch (n) {
	case 2:
		return HDR_IS("te") ? H1_H_TE : H1_H_OTHER;
	case 3:
		return HDR_IS("via") ? H1_H_VIA : H1_H_OTHER;
	case 4:
		return HDR_IS("host") ? H1_H_HOST : H1_H_OTHER;
	case 6:
		return HDR_IS("expect") ? H1_H_EXPECT : H1_H_OTHER;
	case 7:
		if (HDR_IS("upgrade"))
			return H1_H_UPGRADE;
		return HDR_IS("trailer") ? H1_H_TRAILER : H1_H_OTHER;
	case 9:
		return HDR_IS("forwarded") ? H1_H_FORWARDED : H1_H_OTHER;
	case 10:
		if (HDR_IS("connection"))
			return H1_H_CONNECTION;
		return HDR_IS("keep-alive") ? H1_H_KEEP_ALIVE : H1_H_OTHER;
	case 14:
		return HDR_IS("content-length") ? H1_H_CONTENT_LENGTH : H1_H_OTHER;
	case 15:
		return HDR_IS("x-forwarded-for") ? H1_H_X_FORWARDED_FOR : H1_H_OTHER;
	case 16:
		return HDR_IS("proxy-connection") ? H1_H_PROXY_CONNECTION : H1_H_OTHER;
	case 17:
		return HDR_IS("transfer-encoding") ? H1_H_TRANSFER_ENCODING : H1_H_OTHER;
	}
	return H1_H_OTHER;
}

static const char *const method_names[] = {
	[H1_M_OTHER] = "OTHER", [H1_M_GET] = "GET", [H1_M_HEAD] = "HEAD", [H1_M_POST] = "POST",
	[H1_M_PUT] = "PUT", [H1_M_DELETE] = "DELETE", [H1_M_CONNECT] = "CONNECT",
	[H1_M_OPTIONS] = "OPTIONS", [H1_M_TRACE] = "TRACE", [H1_M_PATCH] = "PATCH",
};

const char *h1_method_str(enum h1_method m)
{
	if ((unsigned)m >= sizeof(method_names) / sizeof(method_names[0]))
		return "?";
	return method_names[m];
}

/* Methods are case-sensitive (RFC 9110 9.1). */
static enum h1_method method_id(const unsigned char *s, size_t n)
{
	for (unsigned m = H1_M_GET; m <= H1_M_PATCH; m++) {
		const char *name = method_names[m];
		if (strlen(name) == n && memcmp(s, name, n) == 0)
			return (enum h1_method)m;
	}
	return H1_M_OTHER;
}

static void h1_limits_fix(struct h1_limits *out, const struct h1_limits *in)
{
	static const struct h1_limits def = {
		H1_DEFAULT_MAX_LINE, H1_DEFAULT_MAX_HEAD, H1_DEFAULT_MAX_HEADERS,
		H1_DEFAULT_MAX_CHUNK_LINE, H1_DEFAULT_MAX_TRAILER,
	};
	*out = in ? *in : def;
	uint32_t *f[] = { &out->max_line, &out->max_head, &out->max_headers,
			  &out->max_chunk_line, &out->max_trailer };
	const uint32_t *d[] = { &def.max_line, &def.max_head, &def.max_headers,
				&def.max_chunk_line, &def.max_trailer };
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (*f[i] == 0)
			*f[i] = *d[i];
		if (*f[i] > H1_LIMIT_CAP)
			*f[i] = H1_LIMIT_CAP;
	}
}

/* --- errors -------------------------------------------------------------------- */

static const char *const err_names[H1_E__COUNT] = {
	[H1_E_NONE] = "none",
	[H1_E_LINE_TOO_LONG] = "start line too long",
	[H1_E_HEAD_TOO_LARGE] = "head too large",
	[H1_E_TOO_MANY_HEADERS] = "too many header fields",
	[H1_E_BARE_LF] = "bare LF",
	[H1_E_BARE_CR] = "bare CR",
	[H1_E_CTL] = "control character",
	[H1_E_METHOD] = "bad method",
	[H1_E_TARGET] = "bad request-target",
	[H1_E_VERSION] = "bad HTTP version",
	[H1_E_VERSION_UNSUPPORTED] = "unsupported HTTP version",
	[H1_E_STATUS] = "bad status line",
	[H1_E_OBS_FOLD] = "obs-fold",
	[H1_E_NAME] = "bad field name",
	[H1_E_NAME_WS] = "whitespace before colon",
	[H1_E_HOST_MISSING] = "no Host",
	[H1_E_HOST_DUP] = "duplicate Host",
	[H1_E_HOST_INVALID] = "bad Host",
	[H1_E_CL_INVALID] = "bad Content-Length",
	[H1_E_CL_DUP] = "duplicate Content-Length",
	[H1_E_CL_TE] = "Content-Length with Transfer-Encoding",
	[H1_E_TE_INVALID] = "bad Transfer-Encoding",
	[H1_E_TE_UNSUPPORTED] = "unsupported transfer coding",
	[H1_E_TE_HTTP10] = "Transfer-Encoding in HTTP/1.0",
	[H1_E_CONNECT_BODY] = "CONNECT with a body",
	[H1_E_CONNECTION] = "bad Connection",
	[H1_E_UPGRADE_DUP] = "duplicate Upgrade",
	[H1_E_EXPECT] = "unsupported expectation",
	[H1_E_CHUNK_SIZE] = "bad chunk size",
	[H1_E_CHUNK_EXT] = "bad chunk extension",
	[H1_E_CHUNK_CRLF] = "missing CRLF in chunked body",
	[H1_E_TRAILER_TOO_LARGE] = "trailer section too large",
};

const char *h1_err_str(enum h1_err e)
{
	if ((unsigned)e >= H1_E__COUNT)
		return "?";
	return err_names[e];
}

uint16_t h1_err_status(enum h1_err e, bool response)
{
	if (e == H1_E_NONE)
		return 0;
	if (response)
		return 502;
	switch (e) {
	case H1_E_LINE_TOO_LONG:
		return 414;
	case H1_E_HEAD_TOO_LARGE:
	case H1_E_TOO_MANY_HEADERS:
		return 431;
	case H1_E_VERSION_UNSUPPORTED:
		return 505;
	case H1_E_TE_UNSUPPORTED:
		return 501;
	case H1_E_EXPECT:
		return 417;
	default:
		return 400;
	}
}

/* --- head parser --------------------------------------------------------------- */

enum {
	S_RL_START, S_RL_EMPTY_LF, S_METHOD, S_TARGET_START, S_TARGET, S_VERSION, S_RL_LF,
	S_SL_VERSION, S_SL_CODE, S_SL_REASON, S_SL_LF,
	S_H_START, S_H_NAME, S_H_OWS, S_H_VALUE, S_H_VAL_LF, S_H_END_LF,
	S_DONE, S_ERROR,
};

static void init_common(struct h1_parser *p, const struct h1_limits *lim, struct h1_header *hdr,
			uint32_t hdr_cap)
{
	memset(p, 0, sizeof(*p));
	h1_limits_fix(&p->lim, lim);
	p->hdr = hdr;
	p->hdr_cap = hdr ? hdr_cap : 0;
	p->res = H1_NEED_MORE;
	p->msg.hdr = hdr;
	p->msg.host_idx = -1;
	p->msg.upgrade_idx = -1;
}

void h1_request_init(struct h1_parser *p, const struct h1_limits *lim, struct h1_header *hdr,
		     uint32_t hdr_cap)
{
	init_common(p, lim, hdr, hdr_cap);
	p->state = S_RL_START;
}

void h1_response_init(struct h1_parser *p, const struct h1_limits *lim, struct h1_header *hdr,
		      uint32_t hdr_cap, enum h1_method req_method)
{
	init_common(p, lim, hdr, hdr_cap);
	p->response = true;
	p->req_method = req_method;
	p->state = S_SL_VERSION;
}

static enum h1_res fail(struct h1_parser *p, enum h1_err e, size_t off)
{
	p->state = S_ERROR;
	p->res = H1_ERROR;
	p->err = e;
	p->err_off = (uint32_t)off;
	p->status = h1_err_status(e, p->response);
	return H1_ERROR;
}

static struct h1_slice sl(size_t off, size_t len)
{
	return (struct h1_slice){ (uint32_t)off, (uint32_t)len };
}

/* "HTTP/" DIGIT "." DIGIT: returns the minor version (0, 1), -1 for a
 * well-formed other version, -2 for a malformed one. */
static int version(const unsigned char *s, size_t n)
{
	if (n != 8 || memcmp(s, "HTTP/", 5) != 0 || !IS_DIGIT(s[5]) || s[6] != '.' ||
	    !IS_DIGIT(s[7]))
		return -2;
	if (s[5] != '1' || (s[7] != '0' && s[7] != '1'))
		return -1;
	return s[7] - '0';
}

/* '%' must introduce two hex digits; the bytes themselves were checked
 * against H1C_TGT while scanning. */
static bool pct_ok(const unsigned char *s, size_t n)
{
	const unsigned char *e = s + n, *q = s;
	while ((q = memchr(q, '%', (size_t)(e - q))) != NULL) {
		if (e - q < 3 || !IS_HEX(q[1]) || !IS_HEX(q[2]))
			return false;
		q += 3;
	}
	return true;
}

static bool h1_authority_ok(const unsigned char *s, size_t n, bool need_port, bool allow_empty)
{
	if (n == 0)
		return allow_empty && !need_port;
	size_t i = 0;
	if (s[0] == '[') {
		/* IP-literal: IPv6address or IPvFuture, checked loosely by bytes */
		i = 1;
		while (i < n && s[i] != ']') {
			unsigned char c = s[i];
			if (!(IS_HEX(c) || c == ':' || c == '.' || c == 'v' || c == 'V'))
				return false;
			i++;
		}
		if (i >= n || i == 1)
			return false;
		i++;	/* ']' */
	} else {
		while (i < n && s[i] != ':') {
			if (!(h1_cls[s[i]] & H1C_REG))
				return false;
			i++;
		}
		if (i == 0)
			return false;	/* ":80": a port without a host */
		if (!pct_ok(s, i))
			return false;
	}
	if (i == n)
		return !need_port;
	if (s[i] != ':')
		return false;
	size_t digits = n - i - 1;
	if (digits == 0 || digits > 5)
		return false;
	for (i++; i < n; i++)
		if (!IS_DIGIT(s[i]))
			return false;
	return true;
}

/* Splits and checks the request-target once it is complete. */
static bool check_target(struct h1_parser *p, const unsigned char *b)
{
	struct h1_msg *m = &p->msg;
	const unsigned char *t = b + m->target.off;
	size_t n = m->target.len;

	if (p->msg.method == H1_M_CONNECT) {
		m->form = H1_FORM_AUTHORITY;
		m->authority = m->target;
		m->path = sl(m->target.off + n, 0);
		return h1_authority_ok(t, n, true, false);
	}
	if (n == 1 && t[0] == '*') {
		m->form = H1_FORM_ASTERISK;
		m->path = sl(m->target.off + n, 0);
		return m->method == H1_M_OPTIONS;
	}
	if (t[0] == '/') {
		m->form = H1_FORM_ORIGIN;
		m->path = m->target;
		return pct_ok(t, n);
	}
	/* absolute-form: only http and https make sense to a reverse proxy */
	size_t s;
	if (n >= 7 && eq_ci(t, 7, "http://"))
		s = 7;
	else if (n >= 8 && eq_ci(t, 8, "https://"))
		s = 8;
	else
		return false;
	size_t a = s;
	while (a < n && t[a] != '/' && t[a] != '?')
		a++;
	m->form = H1_FORM_ABSOLUTE;
	m->authority = sl(m->target.off + s, a - s);
	m->path = sl(m->target.off + a, n - a);
	/* RFC 9110 4.2.1/4.2.4: empty host and userinfo are errors ('@' is not
	 * a reg-name byte) */
	return h1_authority_ok(t + s, a - s, false, false) && pct_ok(t + a, n - a);
}

/* One element of a comma-separated list, OWS trimmed; advances *i. */
static struct h1_slice list_next(const unsigned char *b, struct h1_slice v, uint32_t *i)
{
	uint32_t e = *i;
	while (e < v.len && b[v.off + e] != ',')
		e++;
	uint32_t s = *i, t = e;
	while (s < t && (h1_cls[b[v.off + s]] & H1C_WS))
		s++;
	while (t > s && (h1_cls[b[v.off + t - 1]] & H1C_WS))
		t--;
	*i = e + 1;
	return sl(v.off + s, t - s);
}

static bool all_tchar(const unsigned char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(h1_cls[s[i]] & H1C_TCHAR))
			return false;
	return true;
}

/* Connection tokens into m->conn; false on a bad token. Empty elements
 * are ignored (RFC 9110 5.6.1). */
static bool parse_connection(struct h1_msg *m, const unsigned char *b, struct h1_slice v)
{
	uint32_t i = 0;
	while (i <= v.len) {
		struct h1_slice e = list_next(b, v, &i);
		if (e.len == 0)
			continue;
		if (!all_tchar(b + e.off, e.len))
			return false;
		if (eq_ci(b + e.off, e.len, "close"))
			m->conn |= H1_CONN_CLOSE;
		else if (eq_ci(b + e.off, e.len, "keep-alive"))
			m->conn |= H1_CONN_KEEP_ALIVE;
		else if (eq_ci(b + e.off, e.len, "upgrade"))
			m->conn |= H1_CONN_UPGRADE;
	}
	return true;
}

static bool parse_cl(const unsigned char *s, size_t n, uint64_t *out)
{
	if (n == 0)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!IS_DIGIT(s[i]))
			return false;
		unsigned d = s[i] - '0';
		if (v > ((uint64_t)H1_MAX_CONTENT_LENGTH - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* The Transfer-Encoding fields, as one list. */
struct te_info {
	uint32_t elements;
	bool bad;		/* empty element, parameters, not a token */
	bool chunked_nonfinal;	/* chunked followed by another coding */
	bool last_chunked;
};

static void parse_te(struct te_info *te, const unsigned char *b, struct h1_slice v)
{
	uint32_t i = 0;
	while (i <= v.len) {
		struct h1_slice e = list_next(b, v, &i);
		if (!all_tchar(b + e.off, e.len)) {
			te->bad = true;
			return;
		}
		if (te->last_chunked)
			te->chunked_nonfinal = true;
		te->last_chunked = eq_ci(b + e.off, e.len, "chunked");
		te->elements++;
	}
}

static bool keep_alive(const struct h1_msg *m)
{
	if (m->conn & H1_CONN_CLOSE)
		return false;
	return m->version_minor == 1 || (m->conn & H1_CONN_KEEP_ALIVE);
}

/* Framing semantics of a complete head. Field-by-field checks come first,
 * in field order, then the combinations. */
static enum h1_res finish(struct h1_parser *p, const unsigned char *b)
{
	struct h1_msg *m = &p->msg;
	int32_t cl = -1, te_first = -1;
	bool expect = false;
	struct te_info te = { 0 };

	for (uint32_t i = 0; i < m->n_hdr; i++) {
		const struct h1_header *h = &p->hdr[i];
		const unsigned char *v = b + h->value.off;
		switch (h->id) {
		case H1_H_HOST:
			if (p->response)
				break;
			if (m->host_idx >= 0)
				return fail(p, H1_E_HOST_DUP, h->name.off);
			if (!h1_authority_ok(v, h->value.len, false, true))
				return fail(p, H1_E_HOST_INVALID, h->value.off);
			m->host_idx = (int32_t)i;
			break;
		case H1_H_CONTENT_LENGTH:
			if (cl >= 0)
				return fail(p, H1_E_CL_DUP, h->name.off);
			if (!parse_cl(v, h->value.len, &m->content_length))
				return fail(p, H1_E_CL_INVALID, h->value.off);
			cl = (int32_t)i;
			break;
		case H1_H_TRANSFER_ENCODING:
			if (te_first < 0)
				te_first = (int32_t)i;
			if (!te.bad)
				parse_te(&te, b, h->value);
			break;
		case H1_H_CONNECTION:
			if (!parse_connection(m, b, h->value))
				return fail(p, H1_E_CONNECTION, h->value.off);
			break;
		case H1_H_UPGRADE:
			if (m->upgrade_idx >= 0)
				return fail(p, H1_E_UPGRADE_DUP, h->name.off);
			m->upgrade_idx = (int32_t)i;
			break;
		case H1_H_EXPECT:
			if (p->response)
				break;
			if (!eq_ci(v, h->value.len, "100-continue"))
				return fail(p, H1_E_EXPECT, h->value.off);
			expect = true;
			break;
		default:
			break;
		}
	}

	if (te_first >= 0) {
		size_t at = p->hdr[te_first].name.off;
		if (!p->response && m->method == H1_M_CONNECT)
			return fail(p, H1_E_CONNECT_BODY, at);
		if (m->version_minor == 0)
			return fail(p, H1_E_TE_HTTP10, at);
		if (cl >= 0)
			return fail(p, H1_E_CL_TE, at);
		if (te.bad || te.chunked_nonfinal)
			return fail(p, H1_E_TE_INVALID, p->hdr[te_first].value.off);
		if (!p->response) {
			if (!te.last_chunked)
				return fail(p, H1_E_TE_INVALID, p->hdr[te_first].value.off);
			if (te.elements > 1)
				return fail(p, H1_E_TE_UNSUPPORTED, p->hdr[te_first].value.off);
		}
	}
	if (!p->response && cl >= 0 && m->method == H1_M_CONNECT)
		return fail(p, H1_E_CONNECT_BODY, p->hdr[cl].name.off);

	if (!p->response) {
		if (m->version_minor == 1 && m->host_idx < 0)
			return fail(p, H1_E_HOST_MISSING, m->head_len);
		if (m->form != H1_FORM_ABSOLUTE && m->form != H1_FORM_AUTHORITY)
			m->authority = m->host_idx >= 0 ? p->hdr[m->host_idx].value
							: sl(m->target.off, 0);
		if (te_first >= 0)
			m->body = H1_BODY_CHUNKED;
		else if (cl >= 0)
			m->body = H1_BODY_LENGTH;
		else
			m->body = H1_BODY_NONE;
		m->expect_continue = expect && m->version_minor == 1;
		m->upgrade = m->version_minor == 1 && (m->conn & H1_CONN_UPGRADE) &&
			     m->upgrade_idx >= 0;
		m->keep_alive = keep_alive(m);
	} else {
		unsigned st = m->status;
		if (st == 101) {
			m->body = H1_BODY_TUNNEL;
			m->upgrade = true;
		} else if (st < 200 || st == 204 || st == 304 || p->req_method == H1_M_HEAD) {
			m->body = H1_BODY_NONE;
		} else if (p->req_method == H1_M_CONNECT && st < 300) {
			m->body = H1_BODY_TUNNEL;
		} else if (te_first >= 0) {
			m->body = te.last_chunked ? H1_BODY_CHUNKED : H1_BODY_CLOSE;
		} else if (cl >= 0) {
			m->body = H1_BODY_LENGTH;
		} else {
			m->body = H1_BODY_CLOSE;
		}
		if (m->body != H1_BODY_LENGTH)
			m->content_length = 0;
		m->keep_alive = keep_alive(m) && m->body != H1_BODY_CLOSE &&
				m->body != H1_BODY_TUNNEL;
	}
	if (!p->response && m->body != H1_BODY_LENGTH)
		m->content_length = 0;
	p->state = S_DONE;
	p->res = H1_DONE;
	return H1_DONE;
}

enum h1_res h1_parse(struct h1_parser *p, const char *buf, size_t len)
{
	if (p->res != H1_NEED_MORE)
		return p->res;
	const unsigned char *b = (const unsigned char *)buf;
	struct h1_msg *m = &p->msg;
	size_t pos = p->pos;
	size_t stop = len < p->lim.max_head ? len : p->lim.max_head;
	size_t max_line = p->lim.max_line;
	uint32_t max_hdr = p->hdr_cap < p->lim.max_headers ? p->hdr_cap : p->lim.max_headers;

	uint8_t st = p->state;	/* kept in a register, stored on the way out */
	while (pos < stop) {
		unsigned char c = b[pos];

		/* the start line: any byte but its CR past max_line is too much */
		if (st >= S_METHOD && st <= S_SL_LF && st != S_RL_LF && st != S_SL_LF &&
		    pos - p->line_start >= max_line && c != '\r')
			return fail(p, H1_E_LINE_TOO_LONG, pos);

		switch (st) {
		case S_RL_START:
			if (c == '\r') {
				st = S_RL_EMPTY_LF;
			} else if (h1_cls[c] & H1C_TCHAR) {
				p->line_start = p->tok_start = (uint32_t)pos;
				st = S_METHOD;
			} else {
				return fail(p, h1_bad_byte(c, H1_E_METHOD), pos);
			}
			pos++;
			break;
		case S_RL_EMPTY_LF:
			if (c != '\n')
				return fail(p, H1_E_BARE_CR, pos - 1);
			st = S_RL_START;
			pos++;
			break;
		case S_METHOD:
			if (h1_cls[c] & H1C_TCHAR) {
				pos++;
				break;
			}
			if (c != ' ')
				return fail(p, h1_bad_byte(c, H1_E_METHOD), pos);
			m->method_s = sl(p->tok_start, pos - p->tok_start);
			m->method = method_id(b + p->tok_start, pos - p->tok_start);
			st = S_TARGET_START;
			pos++;
			break;
		case S_TARGET_START:
			if (!(h1_cls[c] & H1C_TGT))
				return fail(p, h1_bad_byte(c, H1_E_TARGET), pos);
			p->tok_start = (uint32_t)pos;
			st = S_TARGET;
			pos++;
			break;
		case S_TARGET: {
			size_t lstop = p->line_start + max_line;
			if (lstop > stop)
				lstop = stop;
			while (pos < lstop && (h1_cls[b[pos]] & H1C_TGT))
				pos++;
			if (pos == stop)
				break;
			c = b[pos];
			if (pos == lstop && c != '\r')
				break;	/* at the line limit: the loop top answers 414 */
			if (c != ' ')
				return fail(p, h1_bad_byte(c, c == '\r' ? H1_E_VERSION : H1_E_TARGET),
					    pos);
			m->target = sl(p->tok_start, pos - p->tok_start);
			if (!check_target(p, b))
				return fail(p, H1_E_TARGET, p->tok_start);
			p->tok_start = (uint32_t)pos + 1;
			st = S_VERSION;
			pos++;
			break;
		}
		case S_VERSION:
			if (c == '\r') {
				int v = version(b + p->tok_start, pos - p->tok_start);
				if (v == -2)
					return fail(p, H1_E_VERSION, p->tok_start);
				if (v == -1)
					return fail(p, H1_E_VERSION_UNSUPPORTED, p->tok_start);
				m->version_minor = (uint8_t)v;
				st = S_RL_LF;
			} else if (pos - p->tok_start >= 8 || !(h1_cls[c] & H1C_VCHAR) || c >= 0x80) {
				return fail(p, h1_bad_byte(c, H1_E_VERSION), pos);
			}
			pos++;
			break;
		case S_RL_LF:
		case S_SL_LF:
			if (c != '\n')
				return fail(p, H1_E_BARE_CR, pos - 1);
			pos++;
			p->line_start = (uint32_t)pos;
			st = S_H_START;
			break;
		case S_SL_VERSION:
			if (c == ' ') {
				int v = version(b, pos);
				if (v == -2)
					return fail(p, H1_E_VERSION, 0);
				if (v == -1)
					return fail(p, H1_E_VERSION_UNSUPPORTED, 0);
				m->version_minor = (uint8_t)v;
				p->tok_start = (uint32_t)pos + 1;
				st = S_SL_CODE;
			} else if (pos >= 8 || !(h1_cls[c] & H1C_VCHAR) || c >= 0x80) {
				return fail(p, h1_bad_byte(c, H1_E_VERSION), pos);
			}
			pos++;
			break;
		case S_SL_CODE:
			if (IS_DIGIT(c) && pos - p->tok_start < 3) {
				pos++;
				break;
			}
			if ((c != ' ' && c != '\r') || pos - p->tok_start != 3)
				return fail(p, h1_bad_byte(c, H1_E_STATUS), pos);
			m->status = (uint16_t)((b[pos - 3] - '0') * 100 + (b[pos - 2] - '0') * 10 +
					       (b[pos - 1] - '0'));
			if (m->status < 100 || m->status > 599)
				return fail(p, H1_E_STATUS, p->tok_start);
			if (c == '\r') {
				m->reason = sl(pos, 0);
				st = S_SL_LF;
			} else {
				p->tok_start = (uint32_t)pos + 1;
				st = S_SL_REASON;
			}
			pos++;
			break;
		case S_SL_REASON:
			if (h1_cls[c] & (H1C_VCHAR | H1C_WS)) {
				pos++;
				break;
			}
			if (c != '\r')
				return fail(p, h1_bad_byte(c, H1_E_STATUS), pos);
			m->reason = sl(p->tok_start, pos - p->tok_start);
			st = S_SL_LF;
			pos++;
			break;
		case S_H_START:
			if (c == '\r') {
				st = S_H_END_LF;
			} else if (h1_cls[c] & H1C_TCHAR) {
				if (m->n_hdr >= max_hdr)
					return fail(p, H1_E_TOO_MANY_HEADERS, pos);
				p->tok_start = (uint32_t)pos;
				st = S_H_NAME;
			} else if (c == ' ' || c == '\t') {
				return fail(p, H1_E_OBS_FOLD, pos);
			} else {
				return fail(p, h1_bad_byte(c, H1_E_NAME), pos);
			}
			pos++;
			break;
		case S_H_NAME:
			while (pos < stop && (h1_cls[b[pos]] & H1C_TCHAR))
				pos++;
			if (pos == stop)
				break;
			c = b[pos];
			if (c == ':') {
				struct h1_header *h = &p->hdr[m->n_hdr];
				h->name = sl(p->tok_start, pos - p->tok_start);
				h->id = hdr_id(b + p->tok_start, pos - p->tok_start);
				st = S_H_OWS;
			} else if (c == ' ' || c == '\t') {
				return fail(p, H1_E_NAME_WS, pos);
			} else {
				return fail(p, h1_bad_byte(c, H1_E_NAME), pos);
			}
			pos++;
			break;
		case S_H_OWS:
			if (c == ' ' || c == '\t') {
				pos++;
				break;
			}
			p->tok_start = p->val_end = (uint32_t)pos;
			if (c == '\r') {
				st = S_H_VAL_LF;
				pos++;
				break;
			}
			if (!(h1_cls[c] & H1C_VCHAR))
				return fail(p, h1_bad_byte(c, H1_E_CTL), pos);
			st = S_H_VALUE;
			break;
		case S_H_VALUE:
			/* the hottest loop: 8 bytes a round while none is a control
			 * character or DEL (HTAB, rare, takes the byte loop) */
			while (pos + 8 <= stop) {
				uint64_t x;
				memcpy(&x, b + pos, 8);
				if (swar_has_ctl(x))
					break;
				pos += 8;
			}
			while (pos < stop && (h1_cls[b[pos]] & H1C_FIELD))
				pos++;
			if (pos == stop)
				break;
			c = b[pos];
			if (c != '\r')
				return fail(p, h1_bad_byte(c, H1_E_CTL), pos);
			/* trailing OWS is not part of the value; the value starts
			 * with a VCHAR, so this stops inside it */
			p->val_end = (uint32_t)pos;
			while (h1_cls[b[p->val_end - 1]] & H1C_WS)
				p->val_end--;
			st = S_H_VAL_LF;
			pos++;
			break;
		case S_H_VAL_LF: {
			if (c != '\n')
				return fail(p, H1_E_BARE_CR, pos - 1);
			struct h1_header *h = &p->hdr[m->n_hdr++];
			h->value = sl(p->tok_start, p->val_end - p->tok_start);
			pos++;
			p->line_start = (uint32_t)pos;
			st = S_H_START;
			break;
		}
		case S_H_END_LF:
			if (c != '\n')
				return fail(p, H1_E_BARE_CR, pos - 1);
			pos++;
			p->pos = (uint32_t)pos;
			m->head_len = (uint32_t)pos;
			return finish(p, b);
		default:
			return p->res;
		}
	}
	p->pos = (uint32_t)pos;
	p->state = st;
	if (stop < len)
		return fail(p, H1_E_HEAD_TOO_LARGE, pos);
	return H1_NEED_MORE;
}

/* --- chunked transfer coding ---------------------------------------------------- */

enum {
	C_SIZE_START, C_SIZE,
	C_EXT_PRE_SEMI,		/* whitespace after size or value: only ';' may follow */
	C_EXT_NAME_START,	/* after ';' (BWS) */
	C_EXT_NAME,
	C_EXT_POST_NAME,	/* whitespace after a name: '=' or ';' */
	C_EXT_VAL_START,	/* after '=' (BWS) */
	C_EXT_VTOK, C_EXT_QS, C_EXT_QS_ESC, C_EXT_AFTER_QS,
	C_SIZE_LF,
	C_DATA, C_DATA_CR, C_DATA_LF,
	C_T_START, C_T_NAME, C_T_VALUE, C_T_VAL_LF, C_T_END_LF,
	C_DONE, C_ERROR,
};

void h1_chunked_init(struct h1_chunked *c, const struct h1_limits *lim, bool want_data)
{
	memset(c, 0, sizeof(*c));
	h1_limits_fix(&c->lim, lim);
	c->want_data = want_data;
	c->state = C_SIZE_START;
	c->res = H1_NEED_MORE;
}

static enum h1_res cfail(struct h1_chunked *c, enum h1_err e, size_t pos, size_t *used)
{
	c->state = C_ERROR;
	c->res = H1_ERROR;
	c->err = e;
	c->err_off = c->offset + pos;
	c->offset += pos;
	*used = pos;
	return H1_ERROR;
}

enum h1_res h1_chunked_feed(struct h1_chunked *c, const char *buf, size_t len, size_t *used,
			    struct h1_slice *data)
{
	const unsigned char *b = (const unsigned char *)buf;
	size_t pos = 0;

	*used = 0;
	if (c->res != H1_NEED_MORE)
		return c->res;
	while (pos < len) {
		unsigned char ch = b[pos];
		uint8_t st = c->state;

		/* the size line, extensions included, is bounded; its CR is not counted */
		if (st <= C_EXT_AFTER_QS && ch != '\r') {
			if (c->line_len >= c->lim.max_chunk_line)
				return cfail(c, st == C_SIZE ? H1_E_CHUNK_SIZE : H1_E_CHUNK_EXT, pos,
					     used);
			c->line_len++;
		}
		/* the trailer fields too (CRLFs included; not the final empty line,
		 * so that a small limit never refuses a body without trailers) */
		if (st >= C_T_START && st <= C_T_VAL_LF && !(st == C_T_START && ch == '\r')) {
			if (c->trailer_bytes >= c->lim.max_trailer)
				return cfail(c, H1_E_TRAILER_TOO_LARGE, pos, used);
			c->trailer_bytes++;
		}

		switch (st) {
		case C_SIZE_START:
			if (!(h1_cls[ch] & H1C_HEX))
				return cfail(c, h1_bad_byte(ch, H1_E_CHUNK_SIZE), pos, used);
			c->size = 0;
			c->digits = 0;
			c->state = C_SIZE;
			__attribute__((fallthrough));	/* C_SIZE takes the first digit */
		case C_SIZE:
			if (h1_cls[ch] & H1C_HEX) {
				/* at most 16 digits (leading zeros count) and 2^62 */
				unsigned d = IS_DIGIT(ch) ? ch - '0' : (ch | 0x20) - 'a' + 10;
				if (++c->digits > 16 || c->size > (H1_MAX_CHUNK_SIZE - d) / 16)
					return cfail(c, H1_E_CHUNK_SIZE, pos, used);
				c->size = c->size * 16 + d;
			} else if (ch == ';') {
				c->state = C_EXT_NAME_START;
			} else if (ch == ' ' || ch == '\t') {
				c->state = C_EXT_PRE_SEMI;
			} else if (ch == '\r') {
				c->state = C_SIZE_LF;
			} else {
				return cfail(c, h1_bad_byte(ch, H1_E_CHUNK_SIZE), pos, used);
			}
			break;
		case C_EXT_PRE_SEMI:
			if (ch == ';')
				c->state = C_EXT_NAME_START;
			else if (ch != ' ' && ch != '\t')
				return cfail(c, h1_bad_byte(ch, H1_E_CHUNK_EXT), pos, used);
			break;
		case C_EXT_NAME_START:
			if (h1_cls[ch] & H1C_TCHAR)
				c->state = C_EXT_NAME;
			else if (ch != ' ' && ch != '\t')
				return cfail(c, h1_bad_byte(ch, H1_E_CHUNK_EXT), pos, used);
			break;
		case C_EXT_NAME:
		case C_EXT_VTOK:
			if (h1_cls[ch] & H1C_TCHAR)
				break;
			if (ch == ';')
				c->state = C_EXT_NAME_START;
			else if (ch == '=' && st == C_EXT_NAME)
				c->state = C_EXT_VAL_START;
			else if (ch == ' ' || ch == '\t')
				c->state = st == C_EXT_NAME ? C_EXT_POST_NAME : C_EXT_PRE_SEMI;
			else if (ch == '\r')
				c->state = C_SIZE_LF;
			else
				return cfail(c, h1_bad_byte(ch, H1_E_CHUNK_EXT), pos, used);
			break;
		case C_EXT_POST_NAME:
			if (ch == '=')
				c->state = C_EXT_VAL_START;
			else if (ch == ';')
				c->state = C_EXT_NAME_START;
			else if (ch != ' ' && ch != '\t')
				return cfail(c, h1_bad_byte(ch, H1_E_CHUNK_EXT), pos, used);
			break;
		case C_EXT_VAL_START:
			if (h1_cls[ch] & H1C_TCHAR)
				c->state = C_EXT_VTOK;
			else if (ch == '"')
				c->state = C_EXT_QS;
			else if (ch != ' ' && ch != '\t')
				return cfail(c, h1_bad_byte(ch, H1_E_CHUNK_EXT), pos, used);
			break;
		case C_EXT_QS:
			if (ch == '"')
				c->state = C_EXT_AFTER_QS;
			else if (ch == '\\')
				c->state = C_EXT_QS_ESC;
			else if (!(h1_cls[ch] & H1C_QD))
				return cfail(c, h1_bad_byte(ch, H1_E_CHUNK_EXT), pos, used);
			break;
		case C_EXT_QS_ESC:
			if (!(h1_cls[ch] & (H1C_VCHAR | H1C_WS)))
				return cfail(c, h1_bad_byte(ch, H1_E_CHUNK_EXT), pos, used);
			c->state = C_EXT_QS;
			break;
		case C_EXT_AFTER_QS:
			if (ch == ';')
				c->state = C_EXT_NAME_START;
			else if (ch == ' ' || ch == '\t')
				c->state = C_EXT_PRE_SEMI;
			else if (ch == '\r')
				c->state = C_SIZE_LF;
			else
				return cfail(c, h1_bad_byte(ch, H1_E_CHUNK_EXT), pos, used);
			break;
		case C_SIZE_LF:
			if (ch != '\n')
				return cfail(c, H1_E_BARE_CR, pos, used);
			c->line_len = 0;
			c->state = c->size ? C_DATA : C_T_START;
			break;
		case C_DATA: {
			size_t n = len - pos;
			if (n > c->size)
				n = (size_t)c->size;
			c->size -= n;
			c->data_bytes += n;
			if (!c->size)
				c->state = C_DATA_CR;
			if (c->want_data) {
				if (data)
					*data = sl(pos, n);
				pos += n;
				c->offset += pos;
				*used = pos;
				return H1_DATA;
			}
			pos += n;
			continue;
		}
		case C_DATA_CR:
			if (ch != '\r')
				return cfail(c, H1_E_CHUNK_CRLF, pos, used);
			c->state = C_DATA_LF;
			break;
		case C_DATA_LF:
			if (ch != '\n')
				return cfail(c, H1_E_CHUNK_CRLF, pos, used);
			c->state = C_SIZE_START;
			break;
		case C_T_START:
			if (ch == '\r') {
				c->state = C_T_END_LF;
			} else if (h1_cls[ch] & H1C_TCHAR) {
				if (c->trailer_fields >= c->lim.max_headers)
					return cfail(c, H1_E_TRAILER_TOO_LARGE, pos, used);
				c->trailer_fields++;
				c->state = C_T_NAME;
			} else if (ch == ' ' || ch == '\t') {
				return cfail(c, H1_E_OBS_FOLD, pos, used);
			} else {
				return cfail(c, h1_bad_byte(ch, H1_E_NAME), pos, used);
			}
			break;
		case C_T_NAME:
			if (ch == ':')
				c->state = C_T_VALUE;
			else if (ch == ' ' || ch == '\t')
				return cfail(c, H1_E_NAME_WS, pos, used);
			else if (!(h1_cls[ch] & H1C_TCHAR))
				return cfail(c, h1_bad_byte(ch, H1_E_NAME), pos, used);
			break;
		case C_T_VALUE:
			if (ch == '\r')
				c->state = C_T_VAL_LF;
			else if (!(h1_cls[ch] & (H1C_VCHAR | H1C_WS)))
				return cfail(c, h1_bad_byte(ch, H1_E_CTL), pos, used);
			break;
		case C_T_VAL_LF:
			if (ch != '\n')
				return cfail(c, H1_E_BARE_CR, pos, used);
			c->state = C_T_START;
			break;
		case C_T_END_LF:
			if (ch != '\n')
				return cfail(c, H1_E_BARE_CR, pos, used);
			pos++;
			c->state = C_DONE;
			c->res = H1_DONE;
			c->offset += pos;
			*used = pos;
			return H1_DONE;
		default:
			return c->res;
		}
		pos++;
	}
	c->offset += pos;
	*used = pos;
	return H1_NEED_MORE;
}

/* --- bodies of any kind ---------------------------------------------------------- */

void h1_body_init(struct h1_body *b, const struct h1_msg *m, const struct h1_limits *lim,
		  bool want_data)
{
	memset(b, 0, sizeof(*b));
	b->kind = m->body;
	b->want_data = want_data;
	b->left = m->body == H1_BODY_LENGTH ? m->content_length : 0;
	h1_chunked_init(&b->ch, lim, want_data);
}

enum h1_res h1_body_feed(struct h1_body *b, const char *buf, size_t len, size_t *used,
			 struct h1_slice *data)
{
	*used = 0;
	switch (b->kind) {
	case H1_BODY_NONE:
		return H1_DONE;
	case H1_BODY_CHUNKED:
		return h1_chunked_feed(&b->ch, buf, len, used, data);
	case H1_BODY_LENGTH: {
		if (!b->left)
			return H1_DONE;
		size_t n = len;
		if (n > b->left)
			n = (size_t)b->left;
		b->left -= n;
		*used = n;
		if (b->want_data && n) {
			if (data)
				*data = sl(0, n);
			return H1_DATA;
		}
		return b->left ? H1_NEED_MORE : H1_DONE;
	}
	case H1_BODY_CLOSE:
	case H1_BODY_TUNNEL:
	default:
		*used = len;
		if (b->want_data && len) {
			if (data)
				*data = sl(0, len);
			return H1_DATA;
		}
		return H1_NEED_MORE;
	}
}
