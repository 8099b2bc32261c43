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
/* 8 bytes as one little-endian word, the first in the lowest byte */
#define FOO_W8(a, b, c, d, e, f, g, h)                                                   \
	((__u64)(__u8)(a) | (__u64)(__u8)(b) << 8 | (__u64)(__u8)(c) << 16 |              \
	 (__u64)(__u8)(d) << 24 | (__u64)(__u8)(e) << 32 | (__u64)(__u8)(f) << 40 |        \
	 (__u64)(__u8)(g) << 48 | (__u64)(__u8)(h) << 56)
#define FOO_MASK(n) ((n) >= 8 ? ~0ull : (1ull << (8 * (n))) - 1)

FOO_STEP_INLINE int foo_http_start(const char *b, __u32 have)
{
	/* each start as its first 8 bytes and the 4 after them (masked to
	 * its length): a compare or two per start, not one per byte (the
	 * verifier walks every branch) */
	static const struct {
		__u64 lo;
		__u32 hi, len;
	} m[10] = {
		{ FOO_W8('G', 'E', 'T', ' ', 0, 0, 0, 0), 0, 4 },
		{ FOO_W8('H', 'E', 'A', 'D', ' ', 0, 0, 0), 0, 5 },
		{ FOO_W8('P', 'O', 'S', 'T', ' ', 0, 0, 0), 0, 5 },
		{ FOO_W8('P', 'U', 'T', ' ', 0, 0, 0, 0), 0, 4 },
		{ FOO_W8('D', 'E', 'L', 'E', 'T', 'E', ' ', 0), 0, 7 },
		{ FOO_W8('C', 'O', 'N', 'N', 'E', 'C', 'T', ' '), 0, 8 },
		{ FOO_W8('O', 'P', 'T', 'I', 'O', 'N', 'S', ' '), 0, 8 },
		{ FOO_W8('T', 'R', 'A', 'C', 'E', ' ', 0, 0), 0, 6 },
		{ FOO_W8('P', 'A', 'T', 'C', 'H', ' ', 0, 0), 0, 6 },
		{ FOO_W8('P', 'R', 'I', ' ', '*', ' ', 'H', 'T'), (__u32)FOO_W8('T', 'P', '/', '2', 0, 0, 0, 0), 12 },
	};
	__u64 lo = 0;
	__u32 hi = 0;
	__builtin_memcpy(&lo, b, sizeof(lo));
	__builtin_memcpy(&hi, b + sizeof(lo), sizeof(hi));	/* b holds FOO_HTTP_LOOKAHEAD bytes */
	for (int i = 0; i < 10; i++) {
		__u32 n = m[i].len;
		if (n > have || (lo & FOO_MASK(n)) != m[i].lo)
			continue;
		if (n <= 8 || hi == m[i].hi)
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

/*
 * The fast line: a whole line that is a plain valid message, recognised a
 * word (8 bytes) at a time instead of one foo_step() per byte (the step
 * per byte is what the framer spends its time on).
 *
 * It takes only lines every step of which foo_step() would accept without
 * a violation and that end with a message: Type, blanks, 1 to 19 digits of
 * Seq, then the LF, CR LF, or blanks and ASCII Data (bytes 0x01-0x7f) up to
 * the LF, the line at most max_line bytes before its LF and at most
 * FOO_FAST_MAX bytes with it. Anything else (UTF-8 Data, a 20-digit Seq, a
 * long line, a line not complete in the bytes given, any violation) is
 * declined, and the caller steps that line byte by byte with foo_step(),
 * which gives the exact outcome. So the fast line never changes a result:
 * it ends where foo_step() would have delivered the same Type and Seq,
 * with the line state it resets (tests/fuzz/fuzz_foo_frame.c holds both
 * ways of framing to the userspace parser).
 *
 * How: SWAR tests on 8 bytes at a time find the LF and bytes never valid
 * (NUL, 0x80-0xff) word by word; the blanks after Type and the digits of
 * Seq are read off per-byte bit masks of the words where they lie (a run
 * is the count of trailing ones from its start), and Seq's value is
 * computed from its digits eight at a time. No branch per byte, so the
 * verifier walks it once per word.
 */
#define FOO_FAST_MAX 64u	/* a line of up to 63 bytes and its LF */
#define FOO_FAST_BUF 256u	/* bytes of the caller's buffer the line may lie in */
#define FOO_FAST_PAD 8u		/* readable bytes after them (the last word's second load) */

#define FOO_ONES 0x0101010101010101ull
#define FOO_HIGH (FOO_ONES * 0x80)
#define FOO_LOW7 (FOO_ONES * 0x7f)

/* The 8 bytes at buf[off] (off < FOO_FAST_BUF) from two aligned loads
 * (the program's stack takes aligned loads only); buf is 8-byte aligned
 * with FOO_FAST_PAD readable bytes after FOO_FAST_BUF. Little-endian. */
FOO_STEP_INLINE __u64 foo_word(const __u8 *buf, __u32 off)
{
	__u32 k = (off >> 3) & (FOO_FAST_BUF / 8 - 1);
	__u32 sh = (off & 7) * 8;
	__u64 lo, hi;
#ifdef __bpf__
	lo = ((const __u64 *)buf)[k];
	hi = ((const __u64 *)buf)[k + 1];
#else
	__builtin_memcpy(&lo, buf + k * 8, sizeof(lo));
	__builtin_memcpy(&hi, buf + k * 8 + 8, sizeof(hi));
#endif
	return (lo >> sh) | ((hi << 1) << (63 - sh));
}

/* Trailing zero bits of the 8-bit x; 8 for 0 (popcount of the bits below
 * the lowest set one). */
FOO_STEP_INLINE __u32 foo_ctz8(__u32 x)
{
	x = ((x & -x) - 1) & 0xff;
	x = x - ((x >> 1) & 0x55);
	x = (x & 0x33) + ((x >> 2) & 0x33);
	return (x + (x >> 4)) & 0x0f;
}

/* The high bit of each byte of m (the other bits clear) as bits 0-7. */
FOO_STEP_INLINE __u64 foo_movemask(__u64 m)
{
	return ((m >> 7) * 0x0102040810204080ull) >> 56;
}

/* 0x80 in each byte of x equal to byte c (exact: no carry between bytes). */
FOO_STEP_INLINE __u64 foo_eq_bytes(__u64 x, __u64 c)
{
	__u64 y = x ^ (FOO_ONES * c);
	return ~(((y & FOO_LOW7) + FOO_LOW7) | y) & FOO_HIGH;
}

/* 0x80 in each digit byte of x ('0'-'9'; exact). */
FOO_STEP_INLINE __u64 foo_digit_bytes(__u64 x)
{
	__u64 low = x & FOO_LOW7;
	return (low + FOO_ONES * 0x50) & ~(low + FOO_ONES * 0x46) & ~x & FOO_HIGH;
}

/* The value of n (1..8) ASCII digits, the first in the lowest byte of w:
 * padded with leading '0's to 8, then the 8 digits combined in pairs,
 * fours and eights by three multiplications. */
FOO_STEP_INLINE __u64 foo_digits8(__u64 w, __u32 n)
{
	__u32 pad = (8 - n) * 8;	/* 0..56 */
	__u64 v = (w << pad) | ((0x3030303030303030ull >> 1) >> (63 - pad));
	v = ((v & 0x0f0f0f0f0f0f0f0full) * 2561) >> 8;
	v = ((v & 0x00ff00ff00ff00ffull) * 6553601) >> 16;
	return ((v & 0x0000ffff0000ffffull) * 42949672960001ull) >> 32;
}

/* A line starting at buf[base] (a line start: p->state is START), of
 * which have bytes are the stream's (base + have <= FOO_FAST_BUF; the
 * bytes after them are stale; buf as foo_word() reads it): the bytes of
 * the line with its LF when it is a plain valid message, its Type and Seq
 * then in p for the caller to deliver; 0 when declined. Declined too
 * (the byte step takes them): blanks after Type reaching past byte 7, and
 * a stale byte never valid in the word of the LF or before it. */
FOO_STEP_INLINE __u32 foo_fast_line(struct pandit_foo_parse *p, const __u8 *buf, __u32 base,
				    __u32 have)
{
	__u64 first = 0;
	__u32 nl = 64;				/* the line's length before its LF */
	for (__u32 j = 0; j < FOO_FAST_MAX / 8; j++) {
		__u32 at = j * 8;
		if (at >= have)
			return 0;		/* no LF among the stream's bytes */
		__u64 x = foo_word(buf, base + at);
		__u64 lf = foo_eq_bytes(x, '\n');
		__u64 bad = (~(((x & FOO_LOW7) + FOO_LOW7) | x) | x) & FOO_HIGH; /* NUL, 0x80-0xff */
		if (!j)
			first = x;
		if (lf) {
			__u32 k = foo_ctz8((__u32)foo_movemask(lf));
			if (foo_movemask(bad) & ((1u << k) - 1))
				return 0;
			nl = at + k;
			break;
		}
		if (bad)
			return 0;
	}
	/* no LF in FOO_FAST_MAX bytes; an LF among the stale bytes is none */
	if (nl >= FOO_FAST_MAX || nl >= have || nl < 5 || nl > p->max_line)
		return 0;
	__u32 type = (__u32)first & 0xffffff;
	if (type == ('R' | 'E' << 8 | 'Q' << 16))
		type = 1;
	else if (type == ('A' | 'C' << 8 | 'K' << 16))
		type = 2;
	else if (type == ('N' | 'A' << 8 | 'K' << 16))
		type = 3;
	else
		return 0;
	__u32 blank = (__u32)foo_movemask(foo_eq_bytes(first, ' ') | foo_eq_bytes(first, '\t'));
	__u32 s = 3 + foo_ctz8(~(blank >> 3) & 0x1f);	/* Seq's first digit */
	if (s == 3 || s >= 8 || s >= nl)
		return 0;
	/* Seq's digits, up to 8 from the word at s, then up to 19 */
	__u64 w = foo_word(buf, base + s);
	__u32 digits = foo_ctz8(~(__u32)foo_movemask(foo_digit_bytes(w)) & 0xff);
	for (__u32 more = 8; digits == more && more < 24; more += 8)
		digits = more + foo_ctz8(~(__u32)foo_movemask(foo_digit_bytes(
					foo_word(buf, base + s + more))) & 0xff);
	__u32 e = s + digits;			/* the byte after Seq */
	if (!digits || digits > 19 || e > nl)
		return 0;
	if (e < nl) {
		__u8 c = buf[(base + e) & (FOO_FAST_BUF - 1)];
		if (c != ' ' && c != '\t' && !(c == '\r' && e + 1 == nl))
			return 0;
	}
	__u64 seq = 0;
	if (digits <= 8) {
		seq = foo_digits8(w, digits);
	} else {
		for (__u32 k = 0; k < 19; k++) {
			if (k >= digits)
				break;
			seq = seq * 10 + (buf[(base + s + k) & (FOO_FAST_BUF - 1)] - '0');
		}
	}
	p->type = (__u8)type;
	p->seq = seq;
	return nl + 1;
}

#endif
