/* foo_frame_step.h - the Foo framer's step for one byte, shared by the splice program (bpf/foo_frame.bpf.h) and the fuzzer that holds it to src/proto/foo.c. */
#ifndef PANDIT_FOO_FRAME_STEP_H
#define PANDIT_FOO_FRAME_STEP_H

/*
 * Plain C on struct pandit_foo_parse (bpf/pandit_abi.h): no helper, no map,
 * so tests/fuzz/fuzz_foo_frame.c compiles this very code for userspace and
 * compares it with the userspace parser byte for byte. The includer
 * defines FOO_STEP_FN (how the step function is declared) and
 * FOO_STEP_INLINE (its helpers): both always inlined in the program.
 */

#define FOO_STEP_MSG 256u		/* the LF that completes a message */
#define FOO_STEP_BAD_START 257u		/* a line starts with a byte that cannot start Type:
					 * PANDIT_FOO_ERR_TYPE, or PANDIT_FOO_ERR_HTTP when the
					 * bytes from there look like an HTTP request line
					 * (the caller can look ahead, the step cannot) */
#define FOO_STEP_NO_STATE 258u		/* p is NULL */

FOO_STEP_INLINE void foo_line_reset(struct pandit_foo_parse *p)
{
	p->state = PANDIT_FOO_ST_START;
	p->line_len = p->data_len = 0;
	p->type = p->type_pos = p->seq_digits = 0;
	p->utf8_need = 0;
	p->last_cr = 0;
	p->seq = 0;
}

/* One UTF-8 or otherwise special byte of Data (foo.c's data_byte). */
FOO_STEP_INLINE __u32 foo_data_byte(struct pandit_foo_parse *p, __u8 c)
{
	if (p->utf8_need) {
		if (c < p->utf8_lo || c > p->utf8_hi)
			return PANDIT_FOO_ERR_UTF8;
		p->utf8_need--;
		p->utf8_lo = 0x80;
		p->utf8_hi = 0xbf;
	} else if (c >= 0x80) {
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
			return PANDIT_FOO_ERR_UTF8;
		}
	}
	p->data_len++;
	p->last_cr = c == '\r';
	return 0;
}

/* Whether the have (<= FOO_HTTP_LOOKAHEAD) bytes at b, a bad line start,
 * begin like an HTTP/1 request line or the HTTP/2 preface (foo.c's
 * looks_like_http, for the violation's reason only). */
#define FOO_HTTP_LOOKAHEAD 12u
FOO_STEP_INLINE int foo_http_start(const char *b, __u32 have)
{
	static const char m[10][13] = {
		"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "CONNECT ", "OPTIONS ", "TRACE ",
		"PATCH ", "PRI * HTTP/2",
	};
	static const __u8 mlen[10] = { 4, 5, 5, 4, 7, 8, 8, 6, 6, 12 };
	for (int i = 0; i < 10; i++) {
		if (mlen[i] > have)
			continue;
		int same = 1;
		for (__u32 j = 0; j < FOO_HTTP_LOOKAHEAD; j++)
			if (j < mlen[i] && b[j] != m[i][j])
				same = 0;
		if (same)
			return 1;
	}
	return 0;
}

/* One byte c of the direction framed in p (foo.c's foo_feed loop body).
 * Returns 0, FOO_STEP_MSG (the caller counts the message and resets the
 * line with foo_line_reset), FOO_STEP_BAD_START, FOO_STEP_NO_STATE, or the
 * violation (enum pandit_foo_err). */
FOO_STEP_FN __u32 foo_step(struct pandit_foo_parse *p, __u32 c)
{
	if (!p)
		return FOO_STEP_NO_STATE;
	if (c == '\n') {
		switch (p->state) {
		case PANDIT_FOO_ST_START:
			return PANDIT_FOO_ERR_EMPTY;
		case PANDIT_FOO_ST_TYPE:
			return PANDIT_FOO_ERR_TYPE;
		case PANDIT_FOO_ST_TYPE_WS:
		case PANDIT_FOO_ST_WS1:
			return PANDIT_FOO_ERR_SEQ;
		case PANDIT_FOO_ST_DATA:
			if (p->utf8_need)
				return PANDIT_FOO_ERR_UTF8;
			break;
		default:	/* SEQ, SEQ_CR, WS2: no Data */
			break;
		}
		return FOO_STEP_MSG;
	}
	if (p->line_len >= p->max_line)
		return PANDIT_FOO_ERR_LINE_TOO_LONG;
	if (c == 0)
		return PANDIT_FOO_ERR_NUL;
	p->line_len++;
	switch (p->state) {
	case PANDIT_FOO_ST_START:
		if (c == 'R')
			p->type = 1;
		else if (c == 'A')
			p->type = 2;
		else if (c == 'N')
			p->type = 3;
		else
			return FOO_STEP_BAD_START;	/* TYPE or HTTP: the caller looks ahead */
		p->type_pos = 1;
		p->state = PANDIT_FOO_ST_TYPE;
		return 0;
	case PANDIT_FOO_ST_TYPE: {
		/* "REQ", "ACK", "NAK": the byte expected at type_pos 1 or 2 */
		__u8 want;
		if (p->type == 1)
			want = p->type_pos == 1 ? 'E' : 'Q';
		else if (p->type == 2)
			want = p->type_pos == 1 ? 'C' : 'K';
		else
			want = p->type_pos == 1 ? 'A' : 'K';
		if (c != want)
			return PANDIT_FOO_ERR_TYPE;
		if (++p->type_pos == 3)
			p->state = PANDIT_FOO_ST_TYPE_WS;
		return 0;
	}
	case PANDIT_FOO_ST_TYPE_WS:
		if (c != ' ' && c != '\t')
			return PANDIT_FOO_ERR_TYPE;
		p->state = PANDIT_FOO_ST_WS1;
		return 0;
	case PANDIT_FOO_ST_WS1:
		if (c == ' ' || c == '\t')
			return 0;
		if (c < '0' || c > '9')
			return PANDIT_FOO_ERR_SEQ;
		p->state = PANDIT_FOO_ST_SEQ;
		/* fall through */
	case PANDIT_FOO_ST_SEQ:
		if (c >= '0' && c <= '9') {
			__u64 d = c - '0';
			/* below 19 digits the value is under 10^18: no overflow,
			 * no division (the 20th digit is where it can happen) */
			if (p->seq_digits >= 20 ||
			    (p->seq_digits == 19 && p->seq > (~0ull - d) / 10))
				return PANDIT_FOO_ERR_SEQ;
			p->seq = p->seq * 10 + d;
			p->seq_digits++;
		} else if (c == ' ' || c == '\t') {
			p->state = PANDIT_FOO_ST_WS2;
		} else if (c == '\r') {
			p->state = PANDIT_FOO_ST_SEQ_CR;
		} else {
			return PANDIT_FOO_ERR_SEQ;
		}
		return 0;
	case PANDIT_FOO_ST_SEQ_CR:
		return PANDIT_FOO_ERR_SEQ;	/* CR not followed by LF */
	case PANDIT_FOO_ST_WS2:
		if (c == ' ' || c == '\t')
			return 0;
		p->state = PANDIT_FOO_ST_DATA;
		/* fall through */
	default:	/* DATA */
		return foo_data_byte(p, c);
	}
}

#endif
