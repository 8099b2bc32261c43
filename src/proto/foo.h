/* foo.h - incremental framer and parser of the Foo line protocol (REQ / ACK / NAK), no allocation, no copy of Data. */
#ifndef PANDIT_PROTO_FOO_H
#define PANDIT_PROTO_FOO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Grammar (seed 004), and the decisions this parser takes where it is loose:
 *
 *   Msg  := Type WS Seq [WS Data] LF
 *   Type := "REQ" | "ACK" | "NAK"           case-sensitive, first byte of the line
 *   WS   := one or more SP or HTAB
 *   Seq  := 1 to 20 decimal digits whose value fits in a u64 (leading zeros
 *           allowed, they count towards the 20); no sign: "+1", "-1" are invalid
 *   Data := what follows the whitespace after Seq, up to the LF; may be empty
 *           ("REQ 1 \n" has Data ""); leading whitespace belongs to the
 *           separator, inner and trailing whitespace to Data
 *
 * - Data must be valid UTF-8 (the stricter reading of "UTF-8 encoded
 *   strings": no overlong forms, no surrogates, nothing above U+10FFFF, no
 *   sequence cut by the end of the line) and must not contain NUL. Other
 *   control characters are accepted.
 * - CR: a single CR right before the LF (CRLF, as telnet sends) is stripped:
 *   it is neither Data nor an error. "REQ 1\r\n" is Seq 1 without Data.
 *   A CR anywhere else in Data is Data; a CR after Seq that is not followed
 *   by LF is a violation.
 * - Line length: the bytes of a line before its LF (CR included) may number
 *   at most max_line; the byte that makes the line longer is a violation,
 *   seen at once (the parser never waits for an LF that may never come).
 * - An empty line is a violation, the grammar has no empty message: LF
 *   alone is FOO_ERR_EMPTY, CRLF alone FOO_ERR_TYPE (CR cannot start Type).
 * - A NUL byte anywhere is FOO_ERR_NUL.
 * - At EOF (foo_finish) a last line without LF is a message if it is one up
 *   to that point (at least one Seq digit; a trailing CR is stripped) and a
 *   violation if it stops inside Type or before Seq.
 * - The first violation is final: the parser stays failed, every later call
 *   returns -1. Violations are found at the first byte that cannot start or
 *   continue a message, so binary data and HTTP fail on their first byte
 *   (no HTTP method starts with R, A or N).
 *
 * Memory: the parser keeps only the few bytes of state below; it never
 * copies Data. A message's Data is handed over as a pointer into the buffer
 * being fed when it lies there whole, else as a length only.
 */

#define FOO_MAX_LINE_DEFAULT 4096u
#define FOO_SEQ_MAX_DIGITS 20

enum foo_type { FOO_REQ = 1, FOO_ACK = 2, FOO_NAK = 3 };

enum foo_err {
	FOO_OK = 0,
	FOO_ERR_TYPE,		/* the line does not start with REQ, ACK or NAK + whitespace */
	FOO_ERR_HTTP,		/* same, and the line looks like an HTTP request line */
	FOO_ERR_SEQ,		/* Seq missing, not decimal digits, too long or above u64 */
	FOO_ERR_EMPTY,		/* empty line */
	FOO_ERR_LINE_TOO_LONG,	/* more than max_line bytes before the LF */
	FOO_ERR_UTF8,		/* Data is not valid UTF-8 */
	FOO_ERR_NUL,		/* a NUL byte */
	FOO_ERR_TRUNCATED,	/* EOF inside Type or before Seq */
};

struct foo_msg {
	enum foo_type type;
	uint64_t seq;
	/* Data without the stripped CR. Points into the buffer of the current
	 * foo_feed() call when all of Data lies there (for data_len 0 it is
	 * non-NULL too), NULL when Data began in an earlier call. */
	const char *data;
	uint32_t data_len;
	uint32_t line_len;	/* bytes of the line before the LF, CR included */
};

struct foo_parser {
	uint32_t max_line;
	uint32_t line_len;	/* bytes of the current line so far (LF not counted) */
	uint32_t data_len;	/* bytes of Data so far */
	uint8_t state;
	uint8_t type;		/* enum foo_type matched or being matched */
	uint8_t type_pos;	/* bytes of Type matched */
	uint8_t seq_digits;
	uint8_t utf8_need;	/* continuation bytes still expected */
	uint8_t utf8_lo, utf8_hi;	/* range of the next continuation byte */
	bool last_cr;		/* the last byte of Data seen was CR */
	uint64_t seq;
	uint64_t offset;	/* bytes consumed since init */
	uint64_t msgs;		/* messages delivered */
	enum foo_err err;	/* first violation, FOO_OK while none */
	uint64_t err_offset;	/* stream offset of the byte that violated (EOF: offset) */
};

typedef void (*foo_msg_cb)(void *arg, const struct foo_msg *m);

/* max_line 0 means FOO_MAX_LINE_DEFAULT. */
void foo_parser_init(struct foo_parser *p, uint32_t max_line);

/* Parses len more bytes of the stream, calling on_msg (may be NULL) for
 * each complete message, in order. Returns 0, or -1 at the first violation
 * (p->err, p->err_offset tell which and where; messages before it were
 * delivered) and on every call after one. */
int foo_feed(struct foo_parser *p, const char *buf, size_t len, foo_msg_cb on_msg, void *arg);

/* End of the stream: delivers a last line without LF, if it is a message.
 * Returns 0, or -1 on a violation (now or before). The parser is done
 * afterwards; foo_parser_init() starts a new stream. */
int foo_finish(struct foo_parser *p, foo_msg_cb on_msg, void *arg);

/* True when no partial line is pending (a message boundary). */
bool foo_parser_idle(const struct foo_parser *p);

/* The parser's state as the kernel framer keeps it (bpf/foo_frame.bpf.h):
 * a stream moves between the two at a message boundary or inside a line.
 * export fills every field of k but slot and mode (the caller's); import
 * restores what export saved and the kernel advanced (a failed state keeps
 * its violation and offset). */
struct pandit_foo_parse;
void foo_parser_export(const struct foo_parser *p, struct pandit_foo_parse *k);
void foo_parser_import(struct foo_parser *p, const struct pandit_foo_parse *k);

const char *foo_err_str(enum foo_err e);
const char *foo_type_str(enum foo_type t);	/* "REQ", "ACK", "NAK", "?" */

#endif
