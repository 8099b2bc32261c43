/* test_foo_fast_line.c - the kernel Foo framer's fast line (bpf/foo_frame_step.h), compiled for userspace: nasty lines, buffer edges and stale bytes, each held to the byte-by-byte step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../bpf/pandit_abi.h"

#define FOO_STEP_FN static
#define FOO_STEP_INLINE static inline
#include "../../bpf/foo_frame_step.h"

/*
 * The fast line may decline any line (the byte step then frames it), but a
 * line it takes must be one the byte step ends with a message of the same
 * Type and Seq at the same LF, with no violation before. Each case checks
 * that against the step, and pins whether the fast line takes it: the lines
 * it exists for must not fall to the slow path unnoticed.
 */

struct ref {
	int msg;		/* the step delivered a message */
	unsigned type;
	uint64_t seq;
	size_t len;		/* bytes up to and with its LF */
};

/* The byte step from a line start over b[0..n). */
static struct ref step_line(const uint8_t *b, size_t n, uint32_t max_line)
{
	struct pandit_foo_parse p;
	memset(&p, 0, sizeof(p));
	p.max_line = max_line;
	for (size_t i = 0; i < n; i++) {
		uint32_t r = foo_step(&p, b[i]);
		if (r == FOO_STEP_MSG)
			return (struct ref){ 1, p.type, p.seq, i + 1 };
		if (r)
			break;
	}
	return (struct ref){ 0, 0, 0, 0 };
}

/* The fast line on b[0..have) placed at base in a buffer whose other bytes
 * are fill: its result, checked against the step. */
static uint32_t fast_checked(const uint8_t *b, size_t have, uint32_t base, uint8_t fill,
			     uint32_t max_line)
{
	static uint8_t buf[FOO_FAST_BUF + FOO_FAST_PAD] __attribute__((aligned(8)));
	assert_true(base + have <= FOO_FAST_BUF);
	memset(buf, fill, sizeof(buf));
	memcpy(buf + base, b, have);
	struct pandit_foo_parse p;
	memset(&p, 0, sizeof(p));
	p.max_line = max_line;
	uint32_t took = foo_fast_line(&p, buf, base, (uint32_t)have);
	if (took) {
		struct ref r = step_line(b, have, max_line);
		if (!r.msg || r.len != took || r.type != p.type || r.seq != p.seq)
			fail_msg("fast line took %u (type %u seq %llu) of \"%.*s\"; the step: msg %d len %zu "
				 "type %u seq %llu", took, p.type, (unsigned long long)p.seq, (int)have,
				 (const char *)b, r.msg, r.len, r.type, (unsigned long long)r.seq);
	}
	return took;
}

static uint32_t fast(const char *s, uint32_t max_line)
{
	uint32_t a = fast_checked((const uint8_t *)s, strlen(s), 0, '\n', max_line);
	/* the same at an odd offset, between other bytes: same result */
	uint32_t b = fast_checked((const uint8_t *)s, strlen(s), 13, 'R', max_line);
	assert_int_equal(a, b);
	return a;
}

static void test_takes_plain_messages(void **state)
{
	(void)state;
	static const char *const ok[] = {
		"REQ 1\n", "ACK 1\n", "NAK 1\n", "REQ 123 hello\n", "ACK 99 ok\r\n", "REQ 7\r\n",
		"REQ\t\t00000001 \n", "REQ 1 \r\n", "NAK 5 a\rb\r\n", "REQ 1844674407370955161 x\n",
		"REQ 12345678\n", "REQ 123456789\n", "ACK 1 \t data with\ttabs and REQ 2\n",
		"REQ    9\n",	/* blanks up to byte 6 */
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (fast(ok[i], 4096) != strlen(ok[i]))
			fail_msg("declined \"%s\"", ok[i]);
}

static void test_declines_the_rest(void **state)
{
	(void)state;
	static const char *const no[] = {
		/* violations */
		"\n", "\r\n", "REQX 1\n", "REQ\n", "REQ \n", "REQ1\n", "RE\n", "REQ +1\n", "REQ 1x\n",
		"REQ 12\rX\n", "REQ 1\r\r\n", "ack 1\n", "NAQ 1\n", " REQ 1\n", "GET / HTTP/1.1\r\n",
		"REQ 18446744073709551616\n",
		/* valid, but left to the step */
		"REQ 18446744073709551615\n", "REQ 00000000000000000001\n", "REQ 1 caf\xc3\xa9\n",
		"REQ     1\n",		/* blanks reach byte 7 */
		"REQ 1",		/* no LF */
	};
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (fast(no[i], 4096))
			fail_msg("took \"%s\"", no[i]);
}

static void test_nul_and_high_bytes(void **state)
{
	(void)state;
	static const uint8_t nul[] = "REQ 1 a\0b\n";
	assert_int_equal(fast_checked(nul, sizeof(nul) - 1, 0, '\n', 4096), 0);
	static const uint8_t nul_seq[] = "REQ 1\0\n";
	assert_int_equal(fast_checked(nul_seq, sizeof(nul_seq) - 1, 0, '\n', 4096), 0);
	/* a NUL or high byte right after the LF is the next line's business */
	static const uint8_t after[] = "REQ 1\n\0\xff";
	assert_int_equal(fast_checked(after, sizeof(after) - 1, 0, '\n', 4096), 6);
}

/* 63 bytes and the LF is the longest line taken; max_line bounds it too. */
static void test_length_limits(void **state)
{
	(void)state;
	char line[80];
	for (size_t len = 5; len < 70; len++) {
		memcpy(line, "REQ 1 ", 6);
		memset(line + 6, 'x', sizeof(line) - 6);
		if (len < 6)
			line[len - 1] = '1';
		line[len] = '\n';
		line[len + 1] = '\0';
		uint32_t took = fast(line, 4096);
		assert_int_equal(took, len < FOO_FAST_MAX ? len + 1 : 0);
		/* max_line: the line's bytes before its LF */
		assert_int_equal(fast(line, (uint32_t)len), len < FOO_FAST_MAX ? len + 1 : 0);
		assert_int_equal(fast(line, (uint32_t)len - 1), 0);
	}
}

/* Every Seq length from 1 to 20 digits, at every blank run the first word
 * allows, against the step. */
static void test_seq_lengths(void **state)
{
	(void)state;
	char line[64];
	for (int blanks = 1; blanks <= 5; blanks++) {
		for (int digits = 1; digits <= 20; digits++) {
			int n = snprintf(line, sizeof(line), "ACK%*s", blanks, "");
			for (int d = 0; d < digits; d++)
				line[n++] = (char)('1' + d % 9);
			line[n++] = '\n';
			line[n] = '\0';
			uint32_t took = fast(line, 4096);
			int want = blanks <= 4 && digits <= 19;
			if (want != (took != 0))
				fail_msg("\"%s\": took %u", line, took);
		}
	}
}

/* An LF among the stale bytes after the stream's is no LF, and a line is
 * taken only when its LF is one of the stream's bytes. */
static void test_stale_bytes(void **state)
{
	(void)state;
	const uint8_t *s = (const uint8_t *)"REQ 42 data\nREQ 43\n";
	for (size_t have = 1; have <= 19; have++) {
		uint32_t took = fast_checked(s, have, 0, '\n', 4096);
		assert_int_equal(took, have >= 12 ? 12 : 0);
		took = fast_checked(s, have, FOO_FAST_BUF - have, '\n', 4096);
		assert_int_equal(took, have >= 12 ? 12 : 0);
	}
	/* a line whose LF lies beyond 64 bytes is declined however much the
	 * buffer holds */
	uint8_t longl[100];
	memcpy(longl, "REQ 1 ", 6);
	memset(longl + 6, 'y', sizeof(longl) - 6);
	longl[80] = '\n';
	assert_int_equal(fast_checked(longl, sizeof(longl), 0, '\n', 4096), 0);
}

/* Every byte value at every position of a template line: whatever the
 * fast line takes, the step agrees with (fast_checked fails otherwise). */
static void test_every_byte_everywhere(void **state)
{
	(void)state;
	static const char tmpl[] = "NAK\t 0123456789 z\r\n";
	uint8_t line[sizeof(tmpl)];
	size_t n = sizeof(tmpl) - 1, taken = 0;
	for (size_t at = 0; at < n; at++) {
		for (unsigned c = 0; c < 256; c++) {
			memcpy(line, tmpl, n);
			line[at] = (uint8_t)c;
			for (uint32_t base = 0; base < 16; base += 5)
				taken += fast_checked(line, n, base, (uint8_t)c, 4096) != 0;
		}
	}
	assert_true(taken > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_takes_plain_messages),
		cmocka_unit_test(test_declines_the_rest),
		cmocka_unit_test(test_nul_and_high_bytes),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_seq_lengths),
		cmocka_unit_test(test_stale_bytes),
		cmocka_unit_test(test_every_byte_everywhere),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
