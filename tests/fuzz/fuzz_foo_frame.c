/* fuzz_foo_frame.c - libFuzzer harness holding the kernel Foo framer's step (bpf/foo_frame_step.h, compiled here for userspace) to the userspace parser, byte for byte. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../bpf/pandit_abi.h"
#include "proto/foo.h"

#define FOO_STEP_FN static
#define FOO_STEP_INLINE static inline
#include "../../bpf/foo_frame_step.h"

/*
 * Input: byte 0 picks max_line, byte 1 seeds the cut of the rest into
 * pieces (what the kernel sees as skbs and the worker as reads). The same
 * pieces go to foo_feed() and to the framer driven the way the splice
 * program drives it (bpf/foo_frame.bpf.h): at a line start the fast line
 * (foo_fast_line) from a buffer holding what the program's would (the
 * piece's bytes from the line on, at an offset the input seeds, stale bytes
 * after them), else foo_step() byte by byte. After every piece the two
 * must agree on every field of the state, the messages by type and their
 * Types and Seqs in order, and the first violation with its reason and
 * offset.
 */

#include "fuzz_check.h"

static uint64_t up_counts[4], k_counts[4];
static uint64_t up_hash, k_hash;	/* the messages' Types and Seqs, in order */
static uint32_t rng;

static uint64_t msg_hash(uint64_t h, unsigned type, uint64_t seq)
{
	return (h ^ (seq * 0x9e3779b97f4a7c15ull + type)) * 0x100000001b3ull;
}

static void on_msg(void *arg, const struct foo_msg *m)
{
	(void)arg;
	if (m->type >= FOO_REQ && m->type <= FOO_NAK) {
		up_counts[m->type]++;
		up_hash = msg_hash(up_hash, m->type, m->seq);
	}
}

/* The fast line on the piece's bytes from i on, as the program calls it:
 * from a buffer it filled at some earlier offset (base), holding at least
 * FOO_FAST_MAX bytes of the line or the rest of the piece, stale bytes
 * after them. */
static uint32_t fast_line(struct pandit_foo_parse *k, const uint8_t *b, size_t n, size_t i)
{
	static uint8_t buf[FOO_FAST_BUF + FOO_FAST_PAD] __attribute__((aligned(8)));
	rng = rng * 1103515245u + 12345u;
	uint32_t base = (rng >> 8) % FOO_FAST_BUF;
	uint32_t room = FOO_FAST_BUF - base;
	uint32_t want = n - i < FOO_FAST_MAX ? (uint32_t)(n - i) : FOO_FAST_MAX;
	if (room < want)
		base = 0, room = FOO_FAST_BUF;
	uint32_t have = n - i < room ? (uint32_t)(n - i) : room;
	have = want + (rng >> 20) % (have - want + 1);	/* want..have */
	/* stale bytes: a plausible line, so a stale LF or digit would show */
	for (size_t j = 0; j < sizeof(buf); j++)
		buf[j] = (uint8_t)"REQ 12\r\n"[(j + (rng >> 4)) % 8];
	memcpy(buf + base, b + i, have);
	return foo_fast_line(k, buf, base, have);
}

/* The program's loop over one skb (foo_frame_next + foo_byte): 0, or the
 * violation with *at its offset in the piece. */
static uint32_t kernel_piece(struct pandit_foo_parse *k, const uint8_t *b, size_t n, size_t *at)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t took = 0, r;
		if (k->state == PANDIT_FOO_ST_START)
			took = fast_line(k, b, n, i);
		r = took ? FOO_STEP_MSG : foo_step(k, b[i]);
		if (r == FOO_STEP_MSG) {
			k_counts[k->type & 3]++;
			k_hash = msg_hash(k_hash, k->type, k->seq);
			foo_line_reset(k);
			if (took)
				i += took - 1;
			continue;
		}
		if (r == FOO_STEP_BAD_START) {
			char look[FOO_HTTP_LOOKAHEAD] = { 0 };
			uint32_t have = n - i < FOO_HTTP_LOOKAHEAD ? (uint32_t)(n - i) : FOO_HTTP_LOOKAHEAD;
			memcpy(look, b + i, have);
			r = have >= 4 && foo_http_start(look, have) ? PANDIT_FOO_ERR_HTTP
								    : PANDIT_FOO_ERR_TYPE;
		}
		if (r) {
			*at = i;
			return r;
		}
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t lines[4] = { 16, 32, 64, 4096 };
	if (size < 2)
		return 0;
	uint32_t max_line = lines[data[0] & 3];
	rng = data[1] * 2654435761u + 1;
	data += 2;
	size -= 2;

	struct foo_parser up;
	foo_parser_init(&up, max_line);
	struct pandit_foo_parse k;
	memset(&k, 0, sizeof(k));
	foo_parser_export(&up, &k);
	memset(up_counts, 0, sizeof(up_counts));
	memset(k_counts, 0, sizeof(k_counts));
	up_hash = k_hash = 0;

	size_t off = 0;
	int failed = 0;
	while (off < size && !failed) {
		rng = rng * 1103515245u + 12345u;
		size_t n = 1 + (rng >> 16) % 300;
		if (n > size - off)
			n = size - off;
		int ur = foo_feed(&up, (const char *)data + off, n, on_msg, NULL);
		size_t at = 0;
		uint32_t kr = kernel_piece(&k, data + off, n, &at);
		check(memcmp(up_counts, k_counts, sizeof(up_counts)) == 0);
		check(up_hash == k_hash);
		if (ur < 0 || kr) {
			check(ur < 0 && kr);
			check((uint32_t)up.err == kr);
			check(up.err_offset == k.offset + at);
			failed = 1;
			break;
		}
		k.offset += n;
		struct pandit_foo_parse e;
		memset(&e, 0, sizeof(e));
		foo_parser_export(&up, &e);
		check(e.state == k.state && e.type == k.type && e.type_pos == k.type_pos);
		check(e.seq == k.seq && e.seq_digits == k.seq_digits);
		check(e.line_len == k.line_len && e.data_len == k.data_len && e.last_cr == k.last_cr);
		check(e.utf8_need == k.utf8_need);
		if (e.utf8_need)
			check(e.utf8_lo == k.utf8_lo && e.utf8_hi == k.utf8_hi);
		check(e.offset == k.offset);
		off += n;
	}
	/* the end of the stream: the kernel hands its state back (import) and
	 * the worker finishes it; the same as finishing the userspace parser */
	if (!failed) {
		struct foo_parser back;
		foo_parser_init(&back, max_line);
		foo_parser_import(&back, &k);
		uint64_t before[4];
		memcpy(before, up_counts, sizeof(before));
		int r1 = foo_finish(&up, on_msg, NULL);
		uint64_t after_up[4];
		memcpy(after_up, up_counts, sizeof(after_up));
		memcpy(up_counts, before, sizeof(before));
		int r2 = foo_finish(&back, on_msg, NULL);
		check(r1 == r2);
		check(memcmp(after_up, up_counts, sizeof(after_up)) == 0);
		if (r1 < 0)
			check(up.err == back.err && up.err_offset == back.err_offset);
	}
	return 0;
}
