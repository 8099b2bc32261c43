/* http1.h - strict, incremental, zero-copy HTTP/1.1 message parser (request/response heads, bodies, chunked coding); no I/O. */
#ifndef PANDIT_PROTO_HTTP1_H
#define PANDIT_PROTO_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * CONTRACT
 *
 * Heads (h1_parse). The caller keeps the bytes of a message head in one
 * contiguous buffer that starts at the first byte of the message, appends
 * what it reads, and calls h1_parse() with the whole buffer so far
 * (buf[0..len), len never shrinking, bytes already passed never changed).
 * The buffer may move between calls (realloc, compaction of what precedes
 * the message): the parser keeps offsets, never pointers, and resumes where
 * it stopped, so every byte is examined once whatever the chunking.
 * h1_parse() returns
 *   H1_NEED_MORE  valid so far, the head is not complete: read, call again;
 *   H1_DONE       p->msg is filled; the head is buf[0..p->msg.head_len)
 *                 (final CRLF CRLF included). Bytes after it belong to the
 *                 body or to the next (pipelined) message: the parser never
 *                 looks past the head's end;
 *   H1_ERROR      p->err names the violation, p->err_off the offset of the
 *                 byte (or header) found at fault, p->status the status to
 *                 answer: 400, 414, 417, 431, 501, 505 for requests, 502 for
 *                 every bad response. The connection must be closed after
 *                 the answer: the framing of what follows is unknown.
 * Results are final: later calls return the same result. A new message
 * needs h1_request_init()/h1_response_init() again.
 * Every slice (struct h1_slice) is an offset and a length into that buffer:
 * the caller must keep buf[0..head_len) alive and unchanged for as long as
 * it uses the slices (h1_str() turns one into a pointer). Header fields go
 * into the array the caller passes at init: no allocation, ever.
 * Error detection does not depend on how the input was split: a chunked
 * feed and a single whole feed give the same result, offsets and slices.
 * The parser never reads past buf[len-1] and has no global state.
 * Responses: the response parser is told the request's method (HEAD and
 * CONNECT change the body rules). After an interim 1xx head (not 101) the
 * final response's head starts at head_len: parse it with a fresh
 * h1_response_init().
 * The path is not normalised (no dot-segment removal, no percent-decoding):
 * a router that matches path prefixes must do that itself.
 *
 * Bodies (h1_body_*, h1_chunked_*) are streaming: feed whatever bytes
 * follow the head, in pieces of any size; nothing is buffered. Each call
 * reports how much of the piece it used and, when asked, where the body
 * data in it lies (for chunked, the data without the framing). In
 * validate-only mode the framing is checked and the end of the body found
 * without stopping at every data span: for a proxy that forwards the
 * chunked framing unchanged. A body error has no status of its own:
 * h1_err_status(err, response) gives 400 or 502, though a proxy that has
 * already forwarded part of the message can only close both sides.
 *
 * CHOICES (RFC 9110 / 9112, stricter where the RFC lets a recipient be lax,
 * because a proxy that reads a message one way while the next hop reads it
 * another way is how request smuggling works):
 * - Line endings: CRLF only. A bare LF (which the RFC lets a recipient
 *   accept) and a bare CR are refused (400), as is NUL or any other control
 *   character but HTAB in a field value, anywhere.
 * - Any number of empty lines (CRLF) before a request line is
 *   skipped (RFC 9112 2.2, for old clients that add CRLF after a body);
 *   they count towards max_head. Not so before a status line.
 * - Request line: method SP request-target SP HTTP-version, single SP, no
 *   other whitespace. Method: a token, case-sensitive, any token accepted
 *   (unknown ones are H1_M_OTHER). Version: exactly "HTTP/1.0" or
 *   "HTTP/1.1"; another well-formed HTTP/x.y is 505, anything else 400.
 *   Longer than max_line bytes (CRLF excluded) is 414.
 * - request-target: CONNECT takes authority-form only (host:port, port
 *   required); "*" only with OPTIONS; other methods origin-form ("/...") or
 *   absolute-form with scheme http or https (case-insensitive), a non-empty
 *   host and no userinfo. Characters: those of RFC 3986 plus the few that
 *   browsers send unencoded ('|' '^' '{' '}' '`', '[' ']'); '%' must start
 *   a valid %HH; '#', '"', '<', '>', '\', SP, CTL and non-ASCII are 400.
 * - Host: exactly one Host field in HTTP/1.1 (none or two: 400), at most one
 *   in HTTP/1.0, a valid uri-host [":" port] (empty allowed). For
 *   absolute-form the target's authority wins over Host (RFC 9112 3.2.2);
 *   msg.authority is the authority that applies, msg.host_idx the field.
 * - Field lines: token name, ':' right after it (whitespace before the
 *   colon: 400), OWS, value of VCHAR / obs-text / SP / HTAB, trailing OWS
 *   trimmed from the value slice. obs-fold (a line starting with SP or
 *   HTAB, including right after the start line) is 400. More than
 *   max_headers fields or a head over max_head bytes: 431.
 * - Content-Length: 1*DIGIT (leading zeros allowed, as in the grammar), at
 *   most 2^63-1. Signs, spaces inside, lists ("5, 5"), empty values: 400.
 *   Two Content-Length fields are 400 even when their values are equal:
 *   the RFC lets a recipient collapse them, but a proxy forwards the head
 *   and cannot know the next hop does the same.
 * - Transfer-Encoding in a request: the only accepted value is the single
 *   coding "chunked" (case-insensitive, with no parameters; several TE
 *   fields are one list). A list whose final coding is not chunked
 *   ("chunked, identity", "xchunked", "gzip"), chunked twice, parameters
 *   ("chunked;"), empty elements, bad tokens: 400. A well-formed list that
 *   ends in chunked after other codings ("gzip, chunked"): 501, a coding
 *   pandit does not implement. Transfer-Encoding in HTTP/1.0: 400. Both
 *   Transfer-Encoding and Content-Length: 400 (never "TE wins").
 * - CONNECT with Content-Length or Transfer-Encoding: 400 (it has no body).
 * - Connection: a list of tokens (empty elements ignored, bad tokens 400);
 *   close, keep-alive and upgrade are reported as bits. Upgrade: at most one
 *   field (two: 400); msg.upgrade is set for HTTP/1.1 requests that carry
 *   both Upgrade and Connection: upgrade.
 * - Expect: exactly "100-continue" (case-insensitive) sets
 *   expect_continue (ignored in HTTP/1.0, as RFC 9110 10.1.1 says); any
 *   other expectation is 417.
 * - Responses: HTTP-version SP 3DIGIT (100-599) SP reason; the SP before an
 *   empty reason may be missing ("HTTP/1.1 200\r\n"). The same field rules.
 *   Body: none for 1xx, 204, 304 and any response to HEAD (framing fields
 *   still validated); 101 and a 2xx answer to CONNECT are a tunnel; then
 *   chunked if the final coding is chunked (other codings before it pass),
 *   close-delimited if Transfer-Encoding has another final coding, else
 *   Content-Length, else close-delimited. Both TE and CL, two CL, TE in
 *   HTTP/1.0, chunked not final: error (502).
 * - Chunked coding: chunk-size of 1 to 16 hex digits (leading zeros count),
 *   value at most 2^62; chunk extensions parsed to the grammar (BWS ';' BWS
 *   token [BWS '=' BWS (token | quoted-string)]) and skipped (whitespace
 *   after the size not followed by ';', as in "5 \r\n", is an error); the size line
 *   bounded by max_chunk_line; CRLF after the data enforced; trailer fields
 *   checked with the head's field rules, bounded by max_trailer bytes and
 *   max_headers fields, then the final CRLF. Trailers are not reported
 *   (they are forwarded with the body bytes).
 *
 * USAGE (a sketch of the proxy side)
 *   struct h1_header hdr[H1_DEFAULT_MAX_HEADERS];
 *   h1_request_init(&p, &lim, hdr, H1_DEFAULT_MAX_HEADERS);
 *   after each read appended to in[0..in_len):
 *     switch (h1_parse(&p, in, in_len)) {
 *     H1_NEED_MORE: read on (the head timeout keeps running);
 *     H1_ERROR:     answer p.status, close;
 *     H1_DONE:      route on p.msg (h1_str(in, p.msg.path), p.msg.authority),
 *                   send the (rewritten) head upstream, then
 *                   h1_body_init(&body, &p.msg, &lim, false) and pass
 *                   in[head_len..in_len) and every later read to
 *                   h1_body_feed(), forwarding the bytes it used, until
 *                   H1_DONE; what it did not use starts the next request.
 */

enum h1_res {
	H1_ERROR = -1,
	H1_NEED_MORE = 0,
	H1_DONE = 1,
	H1_DATA = 2,		/* body feeds only: a span of body data */
};

enum h1_err {
	H1_E_NONE = 0,
	H1_E_LINE_TOO_LONG,	/* request line (414) / status line over max_line */
	H1_E_HEAD_TOO_LARGE,	/* head over max_head (431) */
	H1_E_TOO_MANY_HEADERS,	/* over max_headers fields (431) */
	H1_E_BARE_LF,		/* LF not preceded by CR */
	H1_E_BARE_CR,		/* CR not followed by LF */
	H1_E_CTL,		/* NUL or another control character, DEL */
	H1_E_METHOD,		/* method not a token, or not followed by one SP */
	H1_E_TARGET,		/* bad request-target, or the wrong form for the method */
	H1_E_VERSION,		/* malformed HTTP-version */
	H1_E_VERSION_UNSUPPORTED, /* well-formed but not HTTP/1.0 or 1.1 (505) */
	H1_E_STATUS,		/* malformed status line or code */
	H1_E_OBS_FOLD,		/* field line starting with SP or HTAB */
	H1_E_NAME,		/* bad field name: empty, not a token, no colon */
	H1_E_NAME_WS,		/* whitespace between field name and colon */
	H1_E_HOST_MISSING,
	H1_E_HOST_DUP,
	H1_E_HOST_INVALID,
	H1_E_CL_INVALID,	/* Content-Length not 1*DIGIT or too large */
	H1_E_CL_DUP,		/* more than one Content-Length field */
	H1_E_CL_TE,		/* both Content-Length and Transfer-Encoding */
	H1_E_TE_INVALID,	/* malformed TE, final coding not chunked, chunked twice */
	H1_E_TE_UNSUPPORTED,	/* codings other than chunked in a request (501) */
	H1_E_TE_HTTP10,		/* Transfer-Encoding in an HTTP/1.0 message */
	H1_E_CONNECT_BODY,	/* CONNECT with Content-Length or Transfer-Encoding */
	H1_E_CONNECTION,	/* bad token in Connection */
	H1_E_UPGRADE_DUP,	/* more than one Upgrade field */
	H1_E_EXPECT,		/* expectation other than 100-continue (417) */
	H1_E_CHUNK_SIZE,	/* chunk-size missing, not hex, > 16 digits or > 2^62 */
	H1_E_CHUNK_EXT,		/* bad chunk extension, or size line over max_chunk_line */
	H1_E_CHUNK_CRLF,	/* no CRLF after chunk data / size line */
	H1_E_TRAILER_TOO_LARGE,	/* trailer section over max_trailer or max_headers */
	H1_E__COUNT
};

/* Limits; a zero field (or a NULL pointer to the struct) takes the default. */
struct h1_limits {
	uint32_t max_line;	/* request / status line, CRLF excluded (8192) */
	uint32_t max_head;	/* whole head, final CRLF CRLF included (32768) */
	uint32_t max_headers;	/* field lines in a head or a trailer (100) */
	uint32_t max_chunk_line; /* chunk-size line with extensions, CRLF excluded (4096) */
	uint32_t max_trailer;	/* bytes of trailer field lines, CRLFs included (8192) */
};

#define H1_DEFAULT_MAX_LINE		8192u
#define H1_DEFAULT_MAX_HEAD		32768u
#define H1_DEFAULT_MAX_HEADERS		100u
#define H1_DEFAULT_MAX_CHUNK_LINE	4096u
#define H1_DEFAULT_MAX_TRAILER		8192u
#define H1_LIMIT_CAP			(16u << 20)	/* any limit above is clamped */

#define H1_MAX_CHUNK_SIZE	(1ull << 62)
#define H1_MAX_CONTENT_LENGTH	INT64_MAX

/* Bytes [off, off+len) of the caller's buffer. */
struct h1_slice {
	uint32_t off, len;
};

/* Well-known field names, recognised case-insensitively (hop-by-hop ones
 * included, for the proxy to strip or rewrite). */
enum h1_hdr_id {
	H1_H_OTHER = 0,
	H1_H_HOST,
	H1_H_CONTENT_LENGTH,
	H1_H_TRANSFER_ENCODING,
	H1_H_CONNECTION,
	H1_H_UPGRADE,
	H1_H_EXPECT,
	H1_H_KEEP_ALIVE,
	H1_H_PROXY_CONNECTION,
	H1_H_TE,
	H1_H_TRAILER,
	H1_H_FORWARDED,
	H1_H_X_FORWARDED_FOR,
	H1_H_VIA,
};

struct h1_header {
	struct h1_slice name;
	struct h1_slice value;	/* OWS trimmed both sides; may be empty */
	enum h1_hdr_id id;
};

enum h1_method {
	H1_M_OTHER = 0,		/* a valid token not listed here */
	H1_M_GET, H1_M_HEAD, H1_M_POST, H1_M_PUT, H1_M_DELETE,
	H1_M_CONNECT, H1_M_OPTIONS, H1_M_TRACE, H1_M_PATCH,
};

enum h1_form {
	H1_FORM_ORIGIN = 1,	/* "/path?query" */
	H1_FORM_ABSOLUTE,	/* "http://authority/path?query" */
	H1_FORM_AUTHORITY,	/* CONNECT "host:port" */
	H1_FORM_ASTERISK,	/* OPTIONS "*" */
};

enum h1_body_kind {
	H1_BODY_NONE = 0,	/* no body: the next message starts after the head */
	H1_BODY_LENGTH,		/* content_length bytes (may be 0) */
	H1_BODY_CHUNKED,
	H1_BODY_CLOSE,		/* response only: until the server closes */
	H1_BODY_TUNNEL,		/* response 101, or 2xx to CONNECT: raw bytes both ways */
};

#define H1_CONN_CLOSE		0x1u
#define H1_CONN_KEEP_ALIVE	0x2u
#define H1_CONN_UPGRADE		0x4u

/* A parsed head. Slices are into the caller's buffer (see CONTRACT). */
struct h1_msg {
	/* request line (requests) */
	enum h1_method method;
	struct h1_slice method_s;
	struct h1_slice target;		/* as sent */
	enum h1_form form;
	struct h1_slice path;		/* origin-form part "/p?q" of the target; in
					 * absolute-form it may be empty or start with
					 * '?' (the path is then "/"); empty for
					 * authority- and asterisk-form */
	struct h1_slice authority;	/* target's authority when absolute- or
					 * authority-form, else the Host value; empty
					 * when neither (HTTP/1.0 without Host) */
	/* status line (responses) */
	uint16_t status;
	struct h1_slice reason;

	uint8_t version_minor;		/* HTTP/1.<minor>, 0 or 1 */
	uint32_t head_len;		/* bytes of the head, final CRLF CRLF included */
	const struct h1_header *hdr;	/* the caller's array */
	uint32_t n_hdr;

	enum h1_body_kind body;
	uint64_t content_length;	/* when body == H1_BODY_LENGTH */
	unsigned conn;			/* H1_CONN_* tokens seen in Connection */
	bool keep_alive;		/* the connection may carry another message after
					 * this one (version, Connection, body framing) */
	bool expect_continue;		/* request: Expect: 100-continue (HTTP/1.1) */
	bool upgrade;			/* request: asks for Upgrade; response: 101 */
	int32_t host_idx;		/* index of the Host field, -1 if none */
	int32_t upgrade_idx;		/* index of the Upgrade field, -1 if none */
};

struct h1_parser {
	struct h1_limits lim;
	struct h1_header *hdr;
	uint32_t hdr_cap;
	uint8_t state;
	bool response;
	enum h1_method req_method;	/* response parser: the request's method */
	uint32_t pos;			/* bytes of the buffer examined */
	uint32_t line_start;		/* offset of the current line */
	uint32_t tok_start;		/* offset of the current element */
	uint32_t name_end;		/* end of the current field name */
	uint32_t val_end;		/* end of the value's last non-OWS byte */
	enum h1_res res;
	enum h1_err err;
	uint32_t err_off;
	uint16_t status;		/* on H1_ERROR: the status to answer */
	struct h1_msg msg;
};

/* Starts a request head. hdr[0..hdr_cap) receives the fields (at most
 * min(hdr_cap, max_headers) of them; more is 431). lim may be NULL. */
void h1_request_init(struct h1_parser *p, const struct h1_limits *lim,
		     struct h1_header *hdr, uint32_t hdr_cap);

/* Starts a response head, for a request whose method was req_method (HEAD
 * and CONNECT change the body rules). */
void h1_response_init(struct h1_parser *p, const struct h1_limits *lim,
		      struct h1_header *hdr, uint32_t hdr_cap, enum h1_method req_method);

/* Parses the head in buf[0..len) (see CONTRACT). */
enum h1_res h1_parse(struct h1_parser *p, const char *buf, size_t len);

/* Chunked transfer coding, streaming. */
struct h1_chunked {
	struct h1_limits lim;
	uint8_t state;
	bool want_data;
	uint8_t digits;			/* hex digits of the size so far */
	uint64_t size;			/* chunk being read: its size, then bytes left */
	uint32_t line_len;		/* size line or trailer line bytes so far */
	uint32_t trailer_bytes;
	uint32_t trailer_fields;
	uint64_t offset;		/* bytes consumed since init */
	uint64_t data_bytes;		/* chunk data bytes seen */
	enum h1_res res;
	enum h1_err err;
	uint64_t err_off;		/* stream offset of the faulty byte */
};

/* want_data: report each data span (H1_DATA); false: validate only. */
void h1_chunked_init(struct h1_chunked *c, const struct h1_limits *lim, bool want_data);

/* Consumes from buf[0..len). Sets *used to the bytes consumed and returns
 *   H1_NEED_MORE  all of buf used, the body goes on;
 *   H1_DATA       *data (offsets into this buf) is chunk data, and
 *                 *used == data->off + data->len: call again with the rest;
 *   H1_DONE       the body ended at buf[*used] (trailers and final CRLF
 *                 included); the rest of buf is the next message;
 *   H1_ERROR      c->err, c->err_off; *used is how far the bytes were good.
 * After H1_DONE or H1_ERROR it keeps returning the same with *used = 0.
 * data may be NULL in validate-only mode. */
enum h1_res h1_chunked_feed(struct h1_chunked *c, const char *buf, size_t len,
			    size_t *used, struct h1_slice *data);

/* Any body, by the kind a parsed head gave. */
struct h1_body {
	enum h1_body_kind kind;
	bool want_data;
	uint64_t left;			/* H1_BODY_LENGTH: bytes to go */
	struct h1_chunked ch;
};

/* m is the head just parsed; lim as for the head (may be NULL). */
void h1_body_init(struct h1_body *b, const struct h1_msg *m, const struct h1_limits *lim,
		  bool want_data);

/* As h1_chunked_feed() for every kind: NONE is H1_DONE at once with
 * *used 0; LENGTH reports (or, validating, skips) the next bytes until
 * content_length are used; CLOSE and TUNNEL never end (H1_DATA or
 * H1_NEED_MORE with everything used; the end is the peer's close). */
enum h1_res h1_body_feed(struct h1_body *b, const char *buf, size_t len,
			 size_t *used, struct h1_slice *data);

/* The status a proxy answers for an error found in a request
 * (response == false) or in a response (always 502). */
uint16_t h1_err_status(enum h1_err e, bool response);
const char *h1_err_str(enum h1_err e);
const char *h1_method_str(enum h1_method m);	/* "GET", ..., "OTHER" */

static inline const char *h1_str(const char *buf, struct h1_slice s)
{
	return buf + s.off;
}

/* Case-insensitive comparison of a slice with a NUL-terminated string. */
bool h1_slice_eq(const char *buf, struct h1_slice s, const char *lit);

#endif
