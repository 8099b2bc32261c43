/* foo.c - incremental framer and parser of the Foo line protocol: a byte-driven state machine with an ASCII fast path for Data. */
#include "proto/foo.h"

#include <string.h>

#include "../../bpf/pandit_abi.h"

enum {
	ST_START = PANDIT_FOO_ST_START,	/* at a line start */
	ST_TYPE = PANDIT_FOO_ST_TYPE,	/* inside Type, type_pos bytes matched */
	ST_TYPE_WS = PANDIT_FOO_ST_TYPE_WS,	/* Type complete, whitespace required */
	ST_WS1 = PANDIT_FOO_ST_WS1,		/* whitespace between Type and Seq */
	ST_SEQ = PANDIT_FOO_ST_SEQ,		/* inside Seq */
	ST_SEQ_CR = PANDIT_FOO_ST_SEQ_CR,	/* CR right after Seq: LF required */
	ST_WS2 = PANDIT_FOO_ST_WS2,		/* whitespace after Seq, before Data */
	ST_DATA = PANDIT_FOO_ST_DATA,	/* inside Data */
	ST_ERR = PANDIT_FOO_ST_ERR,		/* failed for good */
};

static const char type_names[4][4] = { "?", "REQ", "ACK", "NAK" };

/* the kernel framer uses the same numbers (bpf/pandit_abi.h) */
_Static_assert((int)FOO_ERR_TYPE == (int)PANDIT_FOO_ERR_TYPE && (int)FOO_ERR_HTTP == (int)PANDIT_FOO_ERR_HTTP &&
		       (int)FOO_ERR_SEQ == (int)PANDIT_FOO_ERR_SEQ && (int)FOO_ERR_EMPTY == (int)PANDIT_FOO_ERR_EMPTY &&
		       (int)FOO_ERR_LINE_TOO_LONG == (int)PANDIT_FOO_ERR_LINE_TOO_LONG &&
		       (int)FOO_ERR_UTF8 == (int)PANDIT_FOO_ERR_UTF8 && (int)FOO_ERR_NUL == (int)PANDIT_FOO_ERR_NUL,
	       "violation reasons match the kernel framer's");
_Static_assert(FOO_SEQ_MAX_DIGITS == 20, "the kernel framer allows 20 Seq digits");

void foo_parser_init(struct foo_parser *p, uint32_t max_line)
{
	memset(p, 0, sizeof(*p));
	p->max_line = max_line ? max_line : FOO_MAX_LINE_DEFAULT;
	p->state = ST_START;
}

bool foo_parser_idle(const struct foo_parser *p)
{
	return p->state == ST_START;
}

const char *foo_type_str(enum foo_type t)
{
	return (t >= FOO_REQ && t <= FOO_NAK) ? type_names[t] : type_names[0];
}

const char *foo_err_str(enum foo_err e)
{
	switch (e) {
	case FOO_OK: return "ok";
	case FOO_ERR_TYPE: return "not a Foo message type";
	case FOO_ERR_HTTP: return "HTTP request";
	case FOO_ERR_SEQ: return "missing or invalid Seq";
	case FOO_ERR_EMPTY: return "empty line";
	case FOO_ERR_LINE_TOO_LONG: return "line too long";
	case FOO_ERR_UTF8: return "invalid UTF-8";
	case FOO_ERR_NUL: return "NUL byte";
	case FOO_ERR_TRUNCATED: return "message cut by end of stream";
	}
	return "?";
}

static void line_reset(struct foo_parser *p)
{
	p->state = ST_START;
	p->line_len = p->data_len = 0;
	p->type = p->type_pos = p->seq_digits = 0;
	p->utf8_need = 0;
	p->last_cr = false;
	p->seq = 0;
}

/* Best effort, for the diagnostic only: does the rest of this buffer
 * start like an HTTP/1 request line (or the HTTP/2 preface)? */
static bool looks_like_http(const char *s, size_t n)
{
	static const char *const methods[] = {
		"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "CONNECT ", "OPTIONS ", "TRACE ",
		"PATCH ", "PRI * HTTP/2",
	};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		size_t m = strlen(methods[i]);
		if (n >= m && memcmp(s, methods[i], m) == 0)
			return true;
	}
	return false;
}

static int fail(struct foo_parser *p, enum foo_err e, uint64_t at)
{
	p->state = ST_ERR;
	p->err = e;
	p->err_offset = at;
	return -1;
}

static void deliver(struct foo_parser *p, const char *data, foo_msg_cb on_msg, void *arg)
{
	struct foo_msg m = {
		.type = (enum foo_type)p->type,
		.seq = p->seq,
		.data = data,
		.data_len = p->data_len - (p->last_cr ? 1u : 0u),
		.line_len = p->line_len,
	};
	p->msgs++;
	if (on_msg)
		on_msg(arg, &m);
	line_reset(p);
}

/* Length of the run of plain bytes (0x01..0x7f except LF) at s, at most n:
 * Data bytes that need nothing but counting. Eight at a time where it can. */
static size_t plain_run(const char *s, size_t n)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	const uint64_t lfs = 0x0a0a0a0a0a0a0a0aull;
	size_t i = 0;
	while (i + 8 <= n) {
		uint64_t v, x;
		memcpy(&v, s + i, 8);
		x = v ^ lfs;
		/* any byte with the high bit, any zero byte, any LF byte */
		if ((v & highs) | ((v - ones) & ~v & highs) | ((x - ones) & ~x & highs))
			break;
		i += 8;
	}
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0 || c == '\n' || c >= 0x80)
			break;
		i++;
	}
	return i;
}

/* One byte of Data that is not plain, or plain while a UTF-8 sequence is
 * open. Returns 0 or a violation. */
static enum foo_err data_byte(struct foo_parser *p, unsigned char c)
{
	if (p->utf8_need) {
		if (c < p->utf8_lo || c > p->utf8_hi)
			return FOO_ERR_UTF8;
		p->utf8_need--;
		p->utf8_lo = 0x80;
		p->utf8_hi = 0xbf;
	} else if (c >= 0x80) {
		/* lead bytes per RFC 3629 table: the second byte's range excludes
		 * overlong forms (E0, F0), surrogates (ED) and > U+10FFFF (F4) */
		p->utf8_lo = 0x80;
		p->utf8_hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf) {
			p->utf8_need = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			p->utf8_need = 2;
			if (c == 0xe0)
				p->utf8_lo = 0xa0;
			else if (c == 0xed)
				p->utf8_hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			p->utf8_need = 3;
			if (c == 0xf0)
				p->utf8_lo = 0x90;
			else if (c == 0xf4)
				p->utf8_hi = 0x8f;
		} else {
			return FOO_ERR_UTF8;
		}
	}
	p->data_len++;
	p->last_cr = c == '\r';
	return FOO_OK;
}

int foo_feed(struct foo_parser *p, const char *buf, size_t len, foo_msg_cb on_msg, void *arg)
{
	if (p->state == ST_ERR)
		return -1;
	/* start of Data when it began in this buffer */
	const char *dstart = NULL;
	size_t i = 0;
	while (i < len) {
		if (p->state == ST_DATA && !p->utf8_need) {
			uint32_t room = p->max_line - p->line_len;
			size_t lim = len - i < room ? len - i : room;
			size_t n = plain_run(buf + i, lim);
			if (n) {
				p->line_len += (uint32_t)n;
				p->data_len += (uint32_t)n;
				p->last_cr = buf[i + n - 1] == '\r';
				i += n;
				if (i == len)
					break;
			}
		}
		unsigned char c = (unsigned char)buf[i];
		uint64_t at = p->offset + i;
		if (c == '\n') {
			switch (p->state) {
			case ST_START:
				return fail(p, FOO_ERR_EMPTY, at);
			case ST_TYPE:
				return fail(p, FOO_ERR_TYPE, at);
			case ST_TYPE_WS:
			case ST_WS1:
				return fail(p, FOO_ERR_SEQ, at);
			case ST_DATA:
				if (p->utf8_need)
					return fail(p, FOO_ERR_UTF8, at);
				deliver(p, dstart, on_msg, arg);
				break;
			default:	/* ST_SEQ, ST_SEQ_CR, ST_WS2: no Data */
				p->data_len = 0;
				p->last_cr = false;
				deliver(p, buf + i, on_msg, arg);
				break;
			}
			dstart = NULL;
			i++;
			continue;
		}
		if (p->line_len >= p->max_line)
			return fail(p, FOO_ERR_LINE_TOO_LONG, at);
		if (c == 0)
			return fail(p, FOO_ERR_NUL, at);
		p->line_len++;
		switch (p->state) {
		case ST_START:
			if (c == 'R')
				p->type = FOO_REQ;
			else if (c == 'A')
				p->type = FOO_ACK;
			else if (c == 'N')
				p->type = FOO_NAK;
			else
				return fail(p, looks_like_http(buf + i, len - i) ? FOO_ERR_HTTP : FOO_ERR_TYPE,
					    at);
			p->type_pos = 1;
			p->state = ST_TYPE;
			break;
		case ST_TYPE:
			if (c != (unsigned char)type_names[p->type][p->type_pos])
				return fail(p, FOO_ERR_TYPE, at);
			if (++p->type_pos == 3)
				p->state = ST_TYPE_WS;
			break;
		case ST_TYPE_WS:
			if (c != ' ' && c != '\t')
				return fail(p, FOO_ERR_TYPE, at);	/* "REQX", "ACKNOWLEDGE" */
			p->state = ST_WS1;
			break;
		case ST_WS1:
			if (c == ' ' || c == '\t')
				break;
			if (c < '0' || c > '9')
				return fail(p, FOO_ERR_SEQ, at);
			p->state = ST_SEQ;
			/* fall through */
		case ST_SEQ:
			if (c >= '0' && c <= '9') {
				uint64_t d = c - '0';
				/* under 19 digits the value is below 10^18: no overflow */
				if (p->seq_digits == FOO_SEQ_MAX_DIGITS ||
				    (p->seq_digits == FOO_SEQ_MAX_DIGITS - 1 && p->seq > (UINT64_MAX - d) / 10))
					return fail(p, FOO_ERR_SEQ, at);
				p->seq = p->seq * 10 + d;
				p->seq_digits++;
			} else if (c == ' ' || c == '\t') {
				p->state = ST_WS2;
			} else if (c == '\r') {
				p->state = ST_SEQ_CR;
			} else {
				return fail(p, FOO_ERR_SEQ, at);
			}
			break;
		case ST_SEQ_CR:
			return fail(p, FOO_ERR_SEQ, at);	/* CR not followed by LF */
		case ST_WS2:
			if (c == ' ' || c == '\t')
				break;
			p->state = ST_DATA;
			dstart = buf + i;
			/* fall through */
		case ST_DATA: {
			enum foo_err e = data_byte(p, c);
			if (e)
				return fail(p, e, at);
			break;
		}
		}
		i++;
	}
	p->offset += len;
	return 0;
}

int foo_finish(struct foo_parser *p, foo_msg_cb on_msg, void *arg)
{
	switch (p->state) {
	case ST_ERR:
		return -1;
	case ST_START:
		return 0;
	case ST_TYPE:
	case ST_TYPE_WS:
	case ST_WS1:
		return fail(p, FOO_ERR_TRUNCATED, p->offset);
	case ST_DATA:
		if (p->utf8_need)
			return fail(p, FOO_ERR_UTF8, p->offset);
		deliver(p, p->data_len - (p->last_cr ? 1u : 0u) ? NULL : "", on_msg, arg);
		return 0;
	default:	/* ST_SEQ, ST_SEQ_CR, ST_WS2 */
		p->data_len = 0;
		p->last_cr = false;
		deliver(p, "", on_msg, arg);
		return 0;
	}
}

void foo_parser_export(const struct foo_parser *p, struct pandit_foo_parse *k)
{
	k->seq = p->seq;
	k->offset = p->offset;
	k->err_offset = p->err_offset;
	k->max_line = p->max_line;
	k->line_len = p->line_len;
	k->data_len = p->data_len;
	k->state = p->state;
	k->type = p->type;
	k->type_pos = p->type_pos;
	k->seq_digits = p->seq_digits;
	k->utf8_need = p->utf8_need;
	k->utf8_lo = p->utf8_lo;
	k->utf8_hi = p->utf8_hi;
	k->last_cr = p->last_cr;
	k->err = (uint8_t)p->err;
	k->stop = 0;
	memset(k->pad, 0, sizeof(k->pad));
}

void foo_parser_import(struct foo_parser *p, const struct pandit_foo_parse *k)
{
	p->seq = k->seq;
	p->offset = k->offset;
	p->err_offset = k->err_offset;
	p->line_len = k->line_len;
	p->data_len = k->data_len;
	p->state = k->state <= ST_ERR ? k->state : ST_ERR;
	p->type = k->type;
	p->type_pos = k->type_pos;
	p->seq_digits = k->seq_digits;
	p->utf8_need = k->utf8_need;
	p->utf8_lo = k->utf8_lo;
	p->utf8_hi = k->utf8_hi;
	p->last_cr = k->last_cr != 0;
	if (k->max_line)
		p->max_line = k->max_line;
	p->err = k->err <= FOO_ERR_TRUNCATED ? (enum foo_err)k->err : FOO_ERR_TYPE;
	if (p->state == ST_ERR && p->err == FOO_OK)
		p->err = FOO_ERR_TYPE;	/* a failed state always says why */
}
