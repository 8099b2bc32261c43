/* parse.c - turns a YAML or JSON config file into a small node tree with line:col marks (libyaml, plus a fast exact JSON reader). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/internal.h"

void ytree_free(struct ytree *t)
{
	free(t->nodes);
	free(t->strs);
	memset(t, 0, sizeof(*t));
}

/* Appends a node; returns its index or -ENOMEM. */
static long node_new(struct ytree *t, uint8_t type, uint32_t line, uint32_t col)
{
	if (t->n >= CFG_MAX_NODES)
		return -E2BIG;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		if (cap > UINT32_MAX)
			return -ENOMEM;
		struct ynode *n = realloc(t->nodes, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		t->nodes = n;
		t->cap = cap;
	}
	t->nodes[t->n] = (struct ynode){ .type = type, .line = line, .col = col };
	return (long)t->n++;
}

/* Copies a scalar into the string area; returns its offset or -ENOMEM. */
static long str_add(struct ytree *t, const char *s, size_t len)
{
	if (t->slen + len + 1 > t->scap) {
		size_t cap = t->scap ? t->scap : 4096;
		while (cap < t->slen + len + 1)
			cap *= 2;
		if (cap > UINT32_MAX)
			return -ENOMEM;
		char *p = realloc(t->strs, cap);
		if (!p)
			return -ENOMEM;
		t->strs = p;
		t->scap = cap;
	}
	long off = (long)t->slen;
	if (len)
		memcpy(t->strs + t->slen, s, len);
	t->strs[t->slen + len] = '\0';
	t->slen += len + 1;
	return off;
}

/* Links child under the container on top of the stack (or makes it the root). */
static void attach(struct ytree *t, const uint32_t *stack, size_t depth, uint32_t child)
{
	if (!depth)
		return;	/* the root is node 0 */
	struct ynode *p = &t->nodes[stack[depth - 1]];
	if (p->len == 0)
		p->first = child;
	else
		t->nodes[p->last].next = child;
	p->last = child;
	p->len++;
}

/* Appends a scalar node (text s, len bytes) under the container on top of
 * the stack: the hot path of both fast readers. With room on both sides
 * (s + 16 within the input, which ends at src_end), a short scalar is
 * copied as 16 bytes, a fixed-size copy instead of a call; the bytes past
 * its end land in free space that the next scalar overwrites. Returns 0,
 * -ENOMEM or -E2BIG. */
static inline int scalar_add(struct ytree *t, const uint32_t *stack, size_t depth, const char *s,
			     size_t len, bool plain, uint32_t line, uint32_t col, const char *src_end)
{
	if (t->n < t->cap && t->n < CFG_MAX_NODES && t->slen + len + 16 <= t->scap) {
		uint32_t idx = (uint32_t)t->n++;
		char *d = t->strs + t->slen;
		if (len < 16 && (size_t)(src_end - s) >= 16)
			memcpy(d, s, 16);
		else
			memcpy(d, s, len);
		d[len] = '\0';
		t->nodes[idx] = (struct ynode){ .type = Y_SCALAR, .plain = plain, .line = line, .col = col,
						.len = (uint32_t)len, .first = (uint32_t)t->slen };
		t->slen += len + 1;
		attach(t, stack, depth, idx);
		return 0;
	}
	long idx = node_new(t, Y_SCALAR, line, col);
	if (idx < 0)
		return (int)idx;	/* -ENOMEM or -E2BIG */
	long off = str_add(t, s, len);
	if (off < 0)
		return -ENOMEM;
	struct ynode *n = &t->nodes[idx];
	n->first = (uint32_t)off;
	n->len = (uint32_t)len;
	n->plain = plain;
	attach(t, stack, depth, (uint32_t)idx);
	return 0;
}

/* --- libyaml reader -------------------------------------------------------- */

/* Line and column (1-based) of a byte offset, for libyaml reader errors
 * which only carry an offset. */
static struct cfg_mark mark_of_offset(const char *buf, size_t len, size_t off)
{
	struct cfg_mark m = { 1, 1 };
	if (off > len)
		off = len;
	for (size_t i = 0; i < off; i++) {
		if (buf[i] == '\n') {
			m.line++;
			m.col = 1;
		} else if (((unsigned char)buf[i] & 0xc0) != 0x80) {
			m.col++;
		}
	}
	return m;
}

static struct cfg_mark ymark(yaml_mark_t m)
{
	struct cfg_mark r = { (uint32_t)m.line + 1, (uint32_t)m.column + 1 };
	return r;
}

static void yaml_error(const yaml_parser_t *p, const char *file, const char *buf, size_t len,
		       struct cfg_errors *errs)
{
	const char *problem = p->problem ? p->problem : "unknown error";
	switch (p->error) {
	case YAML_MEMORY_ERROR:
		cfg_errors_add(errs, file, (struct cfg_mark){ 0, 0 }, "out of memory while parsing");
		break;
	case YAML_READER_ERROR:
		cfg_errors_add(errs, file, mark_of_offset(buf, len, p->problem_offset),
			       "cannot read the file: %s", problem);
		break;
	default:
		if (p->context)
			cfg_errors_add(errs, file, ymark(p->problem_mark),
				       "YAML syntax error: %s (%s at line %zu column %zu)", problem,
				       p->context, p->context_mark.line + 1, p->context_mark.column + 1);
		else
			cfg_errors_add(errs, file, ymark(p->problem_mark), "YAML syntax error: %s",
				       problem);
		break;
	}
}

/* Refuses what the config never needs and what makes YAML dangerous:
 * anchors and aliases (exponential expansion, "billion laughs") and tags. */
static int check_props(const yaml_char_t *anchor, const yaml_char_t *tag, const char *file,
		       yaml_mark_t m, struct cfg_errors *errs)
{
	if (anchor) {
		cfg_errors_add(errs, file, ymark(m), "YAML anchors (&%s) are not supported",
			       (const char *)anchor);
		return -EINVAL;
	}
	if (tag) {
		cfg_errors_add(errs, file, ymark(m), "YAML tags (%s) are not supported",
			       (const char *)tag);
		return -EINVAL;
	}
	return 0;
}

/* -E2BIG from node_new: a config error, not an allocation failure. */
static int too_big(long err, const char *file, yaml_mark_t m, struct cfg_errors *errs)
{
	if (err != -E2BIG)
		return -ENOMEM;
	cfg_errors_add(errs, file, ymark(m), "too many values in one file (more than %u)",
		       CFG_MAX_NODES);
	return -EINVAL;
}

int ytree_parse_yaml(struct ytree *t, const char *file, const char *buf, size_t len,
		     struct cfg_errors *errs)
{
	yaml_parser_t p;
	uint32_t stack[CFG_MAX_DEPTH];
	size_t depth = 0;
	int docs = 0, ret = 0;
	bool done = false;

	if (!yaml_parser_initialize(&p))
		return -ENOMEM;
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	while (!done) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&p, &ev)) {
			yaml_error(&p, file, buf, len, errs);
			ret = p.error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
			break;
		}
		long idx = -1;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1) {
				cfg_errors_add(errs, file, ymark(ev.start_mark),
					       "only one YAML document is allowed in a config file");
				ret = -EINVAL;
			}
			break;
		case YAML_ALIAS_EVENT:
			cfg_errors_add(errs, file, ymark(ev.start_mark),
				       "YAML aliases (*%s) are not supported",
				       (const char *)ev.data.alias.anchor);
			ret = -EINVAL;
			break;
		case YAML_SCALAR_EVENT:
			ret = check_props(ev.data.scalar.anchor, ev.data.scalar.tag, file,
					  ev.start_mark, errs);
			if (ret)
				break;
			idx = node_new(t, Y_SCALAR, (uint32_t)ev.start_mark.line + 1,
				       (uint32_t)ev.start_mark.column + 1);
			if (idx >= 0) {
				long off = str_add(t, (const char *)ev.data.scalar.value,
						   ev.data.scalar.length);
				if (off < 0) {
					idx = off;
				} else {
					t->nodes[idx].first = (uint32_t)off;
					t->nodes[idx].len = (uint32_t)ev.data.scalar.length;
					t->nodes[idx].plain =
						ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
				}
			}
			if (idx < 0)
				ret = too_big(idx, file, ev.start_mark, errs);
			else
				attach(t, stack, depth, (uint32_t)idx);
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT: {
			bool seq = ev.type == YAML_SEQUENCE_START_EVENT;
			ret = seq ? check_props(ev.data.sequence_start.anchor,
						ev.data.sequence_start.tag, file, ev.start_mark, errs)
				  : check_props(ev.data.mapping_start.anchor,
						ev.data.mapping_start.tag, file, ev.start_mark, errs);
			if (ret)
				break;
			if (depth == CFG_MAX_DEPTH) {
				cfg_errors_add(errs, file, ymark(ev.start_mark),
					       "nesting deeper than %u levels", CFG_MAX_DEPTH);
				ret = -EINVAL;
				break;
			}
			idx = node_new(t, seq ? Y_SEQ : Y_MAP, (uint32_t)ev.start_mark.line + 1,
				       (uint32_t)ev.start_mark.column + 1);
			if (idx < 0) {
				ret = too_big(idx, file, ev.start_mark, errs);
				break;
			}
			attach(t, stack, depth, (uint32_t)idx);
			stack[depth++] = (uint32_t)idx;
			break;
		}
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			if (depth)
				depth--;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
		if (ret)
			break;
	}
	yaml_parser_delete(&p);
	if (ret)
		ytree_free(t);
	return ret;
}

/* --- fast JSON reader ------------------------------------------------------ */

/* libyaml reads about 20 MB/s, too slow for a 10,000-app config to reload
 * in a few milliseconds. JSON is a subset of YAML 1.2 with a tiny grammar,
 * so plain JSON is read here directly, producing exactly the tree libyaml
 * would (strings quoted, numbers/true/false/null plain, same marks). It
 * gives up (returns 1) on anything unusual: non-ASCII bytes, \u escapes,
 * syntax errors. libyaml then parses the file and reports the errors, so
 * every message comes from one place. */
/* Bytes that end a run inside quotes: quotes, backslash, controls
 * (newline included) and anything outside printable ASCII. */
static const uint8_t q_stop[256] = {
	[0 ... 0x1f] = 1, ['"'] = 1, ['\''] = 1, ['\\'] = 1, [0x7f ... 0xff] = 1,
};

struct jrd {
	struct ytree *t;
	const char *start, *p, *end;
	uint32_t line;
	const char *line_start;
	uint32_t stack[CFG_MAX_DEPTH];
	size_t depth;
	char *tmp;	/* unescaped string being built */
	size_t tmp_cap;
};

#define J_GIVE_UP 1

static void j_ws(struct jrd *j)
{
	while (j->p < j->end) {
		char c = *j->p;
		if (c == ' ' || c == '\t') {
			j->p++;
		} else if (c == '\n') {
			j->p++;
			j->line++;
			j->line_start = j->p;
		} else if (c == '\r') {
			j->p++;
			if (j->p < j->end && *j->p == '\n')
				j->p++;
			j->line++;
			j->line_start = j->p;
		} else {
			break;
		}
	}
}

static uint32_t j_col(const struct jrd *j)
{
	return (uint32_t)(j->p - j->line_start) + 1;
}

static int j_scalar(struct jrd *j, const char *s, size_t len, bool plain, uint32_t line,
		    uint32_t col)
{
	/* s is in the input or in the unescaping buffer */
	const char *src_end = s >= j->start && s < j->end ? j->end : s + len;
	return scalar_add(j->t, j->stack, j->depth, s, len, plain, line, col, src_end);
}

static int j_string(struct jrd *j)
{
	uint32_t line = j->line, col = j_col(j);
	j->p++;
	/* fast path: no escapes, the string is copied straight from the input */
	const char *s = j->p;
	for (;;) {
		while (j->p < j->end && !q_stop[(unsigned char)*j->p])
			j->p++;
		if (j->p < j->end && *j->p == '\'')
			j->p++;	/* an ordinary byte in JSON */
		else
			break;
	}
	if (j->p >= j->end)
		return J_GIVE_UP;
	if (*j->p == '"') {
		j->p++;
		return j_scalar(j, s, (size_t)(j->p - 1 - s), false, line, col);
	}
	j->p = s;
	size_t n = 0;
	while (j->p < j->end) {
		unsigned char c = (unsigned char)*j->p;
		if (c == '"')
			break;
		if (c < 0x20 || c >= 0x80)
			return J_GIVE_UP;
		if (n + 2 > j->tmp_cap) {
			size_t cap = j->tmp_cap ? j->tmp_cap * 2 : 256;
			char *p = realloc(j->tmp, cap);
			if (!p)
				return -ENOMEM;
			j->tmp = p;
			j->tmp_cap = cap;
		}
		if (c != '\\') {
			j->tmp[n++] = (char)c;
			j->p++;
			continue;
		}
		if (j->p + 1 >= j->end)
			return J_GIVE_UP;
		switch (j->p[1]) {
		case '"': j->tmp[n++] = '"'; break;
		case '\\': j->tmp[n++] = '\\'; break;
		case '/': j->tmp[n++] = '/'; break;
		case 'b': j->tmp[n++] = '\b'; break;
		case 'f': j->tmp[n++] = '\f'; break;
		case 'n': j->tmp[n++] = '\n'; break;
		case 'r': j->tmp[n++] = '\r'; break;
		case 't': j->tmp[n++] = '\t'; break;
		default: return J_GIVE_UP;	/* \uXXXX and invalid escapes: libyaml */
		}
		j->p += 2;
	}
	if (j->p >= j->end)
		return J_GIVE_UP;
	j->p++;	/* closing quote */
	return j_scalar(j, j->tmp ? j->tmp : "", n, false, line, col);
}

static bool j_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A JSON number, true, false or null: a plain scalar with the same text. */
static int j_bare(struct jrd *j)
{
	uint32_t line = j->line, col = j_col(j);
	const char *s = j->p;
	if (*s == '-' || j_digit(*s)) {
		const char *p = s;
		if (*p == '-')
			p++;
		if (p >= j->end || !j_digit(*p))
			return J_GIVE_UP;
		if (*p == '0')
			p++;
		else
			while (p < j->end && j_digit(*p))
				p++;
		if (p < j->end && *p == '.') {
			p++;
			if (p >= j->end || !j_digit(*p))
				return J_GIVE_UP;
			while (p < j->end && j_digit(*p))
				p++;
		}
		if (p < j->end && (*p == 'e' || *p == 'E')) {
			p++;
			if (p < j->end && (*p == '+' || *p == '-'))
				p++;
			if (p >= j->end || !j_digit(*p))
				return J_GIVE_UP;
			while (p < j->end && j_digit(*p))
				p++;
		}
		j->p = p;
	} else {
		static const char *const words[] = { "true", "false", "null" };
		size_t i;
		for (i = 0; i < 3; i++) {
			size_t wl = strlen(words[i]);
			if ((size_t)(j->end - s) >= wl && memcmp(s, words[i], wl) == 0) {
				j->p = s + wl;
				break;
			}
		}
		if (i == 3)
			return J_GIVE_UP;
	}
	/* the token must end here, as YAML would end the plain scalar */
	if (j->p < j->end) {
		char c = *j->p;
		if (c != ',' && c != ']' && c != '}' && c != ' ' && c != '\t' && c != '\n' &&
		    c != '\r')
			return J_GIVE_UP;
	}
	return j_scalar(j, s, (size_t)(j->p - s), true, line, col);
}

static int j_value(struct jrd *j);

/* An object or array: iterative over members, recursive (depth-bounded) into values. */
static int j_container(struct jrd *j, bool obj)
{
	if (j->depth == CFG_MAX_DEPTH)
		return J_GIVE_UP;
	long idx = node_new(j->t, obj ? Y_MAP : Y_SEQ, j->line, j_col(j));
	if (idx < 0)
		return (int)idx;	/* -ENOMEM or -E2BIG */
	attach(j->t, j->stack, j->depth, (uint32_t)idx);
	j->stack[j->depth++] = (uint32_t)idx;
	j->p++;
	j_ws(j);
	char close = obj ? '}' : ']';
	if (j->p < j->end && *j->p == close) {
		j->p++;
		j->depth--;
		return 0;
	}
	for (;;) {
		int r;
		if (obj) {
			if (j->p >= j->end || *j->p != '"')
				return J_GIVE_UP;
			if ((r = j_string(j)))
				return r;
			j_ws(j);
			if (j->p >= j->end || *j->p != ':')
				return J_GIVE_UP;
			j->p++;
			j_ws(j);
		}
		if ((r = j_value(j)))
			return r;
		j_ws(j);
		if (j->p >= j->end)
			return J_GIVE_UP;
		if (*j->p == ',') {
			j->p++;
			j_ws(j);
			continue;
		}
		if (*j->p != close)
			return J_GIVE_UP;
		j->p++;
		j->depth--;
		return 0;
	}
}

static int j_value(struct jrd *j)
{
	if (j->p >= j->end)
		return J_GIVE_UP;
	switch (*j->p) {
	case '{':
		return j_container(j, true);
	case '[':
		return j_container(j, false);
	case '"':
		return j_string(j);
	default:
		return j_bare(j);
	}
}

/* Sizes the arrays once from the input length (every scalar is shorter
 * than its text plus a delimiter; a node takes at least two bytes of
 * text), so big files are read without reallocating. */
static int reserve(struct ytree *t, size_t len)
{
	size_t nodes = len / 8 + 16, strs = len + 16;
	if (nodes > CFG_MAX_NODES)
		nodes = CFG_MAX_NODES;
	if (nodes > UINT32_MAX || strs > UINT32_MAX)
		return -ENOMEM;
	t->nodes = malloc(nodes * sizeof(*t->nodes));
	t->strs = malloc(strs);
	if (!t->nodes || !t->strs) {
		ytree_free(t);
		return -ENOMEM;
	}
	t->cap = nodes;
	t->scap = strs;
	return 0;
}

int ytree_parse_json(struct ytree *t, const char *buf, size_t len)
{
	struct jrd j = { .t = t, .start = buf, .p = buf, .end = buf + len, .line = 1, .line_start = buf };
	j_ws(&j);
	int r = J_GIVE_UP;
	if (j.p < j.end && *j.p == '{') {
		if (reserve(t, len))
			return -ENOMEM;
		r = j_container(&j, true);
		if (r == 0) {
			j_ws(&j);
			if (j.p != j.end)
				r = J_GIVE_UP;
		}
	}
	free(j.tmp);
	if (r)
		ytree_free(t);
	return r;
}

/* --- fast block-YAML reader ------------------------------------------------ */

/* The same idea for the everyday block style of config files: a strict
 * subset (ASCII only, no tabs or CR, keys are plain words, values are
 * plain words, quoted strings without fancy escapes, or one-line flow
 * lists/maps; no multi-line scalars, no null values, no anchors, tags or
 * directives) is read directly. Anything outside the subset, valid YAML
 * or not, goes to libyaml, which then decides and reports. The fuzzer
 * checks that whatever this reader accepts libyaml accepts too, with the
 * identical tree. */
struct brd {
	struct ytree *t;
	const char *buf, *end;
	const char *p;		/* cursor */
	const char *ls;		/* start of the current line */
	uint32_t line;
	uint32_t indent;	/* of the current line */
	bool eof;
	bool bad;		/* a byte outside the subset was skipped in a comment */
	uint32_t stack[CFG_MAX_DEPTH];
	size_t depth;
};

static uint32_t b_col(const struct brd *b)
{
	return (uint32_t)(b->p - b->ls) + 1;
}

static bool b_eol(const struct brd *b)
{
	return b->p >= b->end || *b->p == '\n';
}

static void b_spaces(struct brd *b)
{
	while (b->p < b->end && *b->p == ' ')
		b->p++;
}

/* Moves to the first non-space byte of the next line with content,
 * skipping blank and comment-only lines. Sets eof at the end. */
/* Skips to the end of the line (a comment), noting bytes outside the subset. */
static void b_skip_comment(struct brd *b)
{
	while (b->p < b->end && *b->p != '\n') {
		unsigned char c = (unsigned char)*b->p++;
		if (c < 0x20 || c > 0x7e)
			b->bad = true;
	}
}

static void b_next_line(struct brd *b)
{
	b_skip_comment(b);
	for (;;) {
		if (b->p >= b->end) {
			b->eof = true;
			return;
		}
		b->p++;	/* the newline */
		b->line++;
		b->ls = b->p;
		b_spaces(b);
		if (b->p >= b->end) {
			b->eof = true;
			return;
		}
		if (*b->p != '\n' && *b->p != '#')
			break;
		b_skip_comment(b);
	}
	b->indent = (uint32_t)(b->p - b->ls);
}

/* After a value: only spaces, then end of line or a comment. */
static int b_rest(struct brd *b)
{
	const char *s = b->p;
	b_spaces(b);
	if (b_eol(b))
		return 0;
	if (*b->p == '#' && b->p > s)
		return 0;
	return J_GIVE_UP;
}

static int b_push(struct brd *b, uint8_t type)
{
	if (b->depth == CFG_MAX_DEPTH)
		return J_GIVE_UP;
	long idx = node_new(b->t, type, b->line, b_col(b));
	if (idx < 0)
		return (int)idx;	/* -ENOMEM or -E2BIG */
	attach(b->t, b->stack, b->depth, (uint32_t)idx);
	b->stack[b->depth++] = (uint32_t)idx;
	return 0;
}

static int b_scalar(struct brd *b, const char *s, size_t len, bool plain, uint32_t col)
{
	return scalar_add(b->t, b->stack, b->depth, s, len, plain, b->line, col, b->end);
}

/* Byte classes of the subset, one table lookup per byte (hot loops). */
enum { C_WORD = 1, C_PLAIN = 2, C_PLAIN_BLOCK = 4 };
#define W_ (C_WORD | C_PLAIN | C_PLAIN_BLOCK)
#define P_ (C_PLAIN | C_PLAIN_BLOCK)
static const uint8_t b_cls[256] = {
	['a' ... 'z'] = W_, ['A' ... 'Z'] = W_, ['0' ... '9'] = W_, ['_'] = W_,
	['.'] = P_, ['/'] = P_, ['-'] = P_, ['+'] = P_, ['~'] = P_, ['@'] = P_,
	[':'] = C_PLAIN_BLOCK,
};
#undef W_
#undef P_

static bool b_word(char c)
{
	return b_cls[(unsigned char)c] & C_WORD;
}

/* Bytes of a plain scalar in this subset; ':' only in block context
 * (where "h:1" is one scalar) and never last. */
static bool b_plain_char(char c, bool flow)
{
	return b_cls[(unsigned char)c] & (flow ? C_PLAIN : C_PLAIN_BLOCK);
}

/* A key: a word, then ':' and a space or the end of the line. */
static size_t b_key_len(const struct brd *b)
{
	const char *q = b->p;
	if (q >= b->end || !b_word(*q))
		return 0;
	while (q < b->end && (b_word(*q) || *q == '-'))
		q++;
	if (q >= b->end || *q != ':')
		return 0;
	if (q + 1 < b->end && q[1] != ' ' && q[1] != '\n')
		return 0;
	return (size_t)(q - b->p);
}

static int b_plain(struct brd *b, bool flow)
{
	const char *s = b->p;
	uint32_t col = b_col(b);
	char c = *s;
	/* indicators cannot start a plain scalar; '-' only before a word byte */
	if (!(b_word(c) || c == '.' || c == '/' || c == '+' || c == '~' ||
	      (c == '-' && s + 1 < b->end && b_plain_char(s[1], flow))))
		return J_GIVE_UP;
	/* in a flow list ':' is kept only before a word byte ("[h:1]"), where
	 * YAML reads it as part of the scalar too */
	uint8_t want = flow ? C_PLAIN : C_PLAIN_BLOCK;
	for (;;) {
		while (b->p < b->end && (b_cls[(unsigned char)*b->p] & want))
			b->p++;
		if (flow && b->p + 1 < b->end && *b->p == ':' && b_word(b->p[1]))
			b->p++;
		else
			break;
	}
	if (b->p[-1] == ':')
		return J_GIVE_UP;
	return b_scalar(b, s, (size_t)(b->p - s), true, col);
}

/* "..." with the escapes JSON has (bar \u), or '...' without ''. */
static int b_quoted(struct brd *b)
{
	uint32_t col = b_col(b);
	char q = *b->p++;
	const char *s = b->p;
	size_t n = 0;
	bool esc = false;
	for (;;) {
		/* runs of ordinary bytes in one tight loop */
		const char *r = b->p;
		while (b->p < b->end && !q_stop[(unsigned char)*b->p])
			b->p++;
		n += (size_t)(b->p - r);
		if (b->p >= b->end || *b->p == q)
			break;
		if (*b->p == '\\' && q == '"') {
			esc = true;
			b->p++;
			if (b->p >= b->end || !*b->p || !strchr("\"\\/bfnrt", *b->p))
				return J_GIVE_UP;
		} else if (*b->p != '"' && *b->p != '\'' && *b->p != '\\') {
			return J_GIVE_UP;	/* control, newline or non-ASCII byte */
		}
		b->p++;
		n++;
	}
	if (b->p >= b->end)
		return J_GIVE_UP;
	b->p++;
	if (b->p < b->end && *b->p == q)
		return J_GIVE_UP;	/* '' inside single quotes */
	if (!esc)
		return b_scalar(b, s, n, false, col);
	/* unescape into the string area directly */
	long idx = node_new(b->t, Y_SCALAR, b->line, col);
	if (idx < 0)
		return (int)idx;	/* -ENOMEM or -E2BIG */
	long off = str_add(b->t, s, n);	/* reserves n + 1 bytes */
	if (off < 0)
		return -ENOMEM;
	char *d = b->t->strs + off;
	for (const char *x = s; *x != '"'; x++) {
		if (*x != '\\') {
			*d++ = *x;
			continue;
		}
		switch (*++x) {
		case 'b': *d++ = '\b'; break;
		case 'f': *d++ = '\f'; break;
		case 'n': *d++ = '\n'; break;
		case 'r': *d++ = '\r'; break;
		case 't': *d++ = '\t'; break;
		default: *d++ = *x; break;
		}
	}
	*d = '\0';
	struct ynode *nd = &b->t->nodes[idx];
	nd->first = (uint32_t)off;
	nd->len = (uint32_t)(d - (b->t->strs + off));
	nd->plain = false;
	attach(b->t, b->stack, b->depth, (uint32_t)idx);
	return 0;
}

/* After a flow item: spaces, then ',' or the closing bracket. */
static bool b_flow_after(struct brd *b, char close)
{
	b_spaces(b);
	return b->p < b->end && (*b->p == ',' || *b->p == close);
}

static int b_flow(struct brd *b);

static int b_flow_item(struct brd *b, char close)
{
	int r;
	if (b->p >= b->end)
		return J_GIVE_UP;
	if (*b->p == '[' || *b->p == '{')
		r = b_flow(b);
	else if (*b->p == '"' || *b->p == '\'')
		r = b_quoted(b);
	else
		r = b_plain(b, true);
	if (r)
		return r;
	return b_flow_after(b, close) ? 0 : J_GIVE_UP;
}

/* A flow list or map that closes on the same line. */
static int b_flow(struct brd *b)
{
	bool map = *b->p == '{';
	char close = map ? '}' : ']';
	int r = b_push(b, map ? Y_MAP : Y_SEQ);
	if (r)
		return r;
	b->p++;
	b_spaces(b);
	if (b->p < b->end && *b->p == close) {
		b->p++;
		b->depth--;
		return 0;
	}
	for (;;) {
		if (map) {
			size_t kl = b_key_len(b);
			if (!kl || b->p + kl + 1 >= b->end || b->p[kl + 1] != ' ')
				return J_GIVE_UP;
			if ((r = b_scalar(b, b->p, kl, true, b_col(b))))
				return r;
			b->p += kl + 1;
			b_spaces(b);
		}
		if ((r = b_flow_item(b, close)))
			return r;
		if (*b->p == close)
			break;
		b->p++;	/* ',' */
		b_spaces(b);
		if (b->p < b->end && (*b->p == close || *b->p == ','))
			return J_GIVE_UP;	/* trailing or double comma */
	}
	b->p++;
	b->depth--;
	return 0;
}

/* A value on the same line as its key or dash. */
static int b_inline(struct brd *b)
{
	int r;
	if (*b->p == '[' || *b->p == '{')
		r = b_flow(b);
	else if (*b->p == '"' || *b->p == '\'')
		r = b_quoted(b);
	else
		r = b_plain(b, false);
	if (r)
		return r;
	if ((r = b_rest(b)))
		return r;
	b_next_line(b);
	return 0;
}

static int b_seq(struct brd *b, uint32_t indent);

/* A block mapping whose keys sit at column indent (0-based); the cursor is
 * on its first key, possibly after a "- " on the same line. */
static int b_map(struct brd *b, uint32_t indent)
{
	int r = b_push(b, Y_MAP);
	if (r)
		return r;
	for (;;) {
		size_t kl = b_key_len(b);
		if (!kl)
			return J_GIVE_UP;
		if ((r = b_scalar(b, b->p, kl, true, b_col(b))))
			return r;
		b->p += kl + 1;
		if (b_rest(b) == 0) {
			/* the value is a block on the next lines */
			b_next_line(b);
			if (b->eof)
				return J_GIVE_UP;	/* null value */
			if (b->indent > indent) {
				uint32_t in = b->indent;
				if (*b->p == '-' && b->p + 1 < b->end && (b->p[1] == ' ' || b->p[1] == '\n'))
					r = b_seq(b, in);
				else
					r = b_map(b, in);
			} else if (b->indent == indent && *b->p == '-' && b->p + 1 < b->end &&
				   b->p[1] == ' ') {
				r = b_seq(b, indent);	/* "key:\n- item" */
			} else {
				return J_GIVE_UP;	/* null value */
			}
		} else {
			b_spaces(b);
			r = b_inline(b);
		}
		if (r)
			return r;
		if (b->eof || b->indent < indent)
			break;
		if (b->indent > indent || *b->p == '-')
			return J_GIVE_UP;
	}
	b->depth--;
	return 0;
}

static int b_seq(struct brd *b, uint32_t indent)
{
	int r = b_push(b, Y_SEQ);
	if (r)
		return r;
	for (;;) {
		if (*b->p != '-' || b->p + 1 >= b->end || b->p[1] != ' ')
			return J_GIVE_UP;
		b->p++;
		b_spaces(b);
		if (b_eol(b) || *b->p == '#' || *b->p == '-' || *b->p == '?' || *b->p == ':')
			return J_GIVE_UP;
		if (b_key_len(b))
			r = b_map(b, (uint32_t)(b->p - b->ls));
		else
			r = b_inline(b);
		if (r)
			return r;
		if (b->eof || b->indent < indent)
			break;
		if (b->indent > indent)
			return J_GIVE_UP;
		if (*b->p != '-')
			break;	/* the parent mapping's next key ("key:\n- item") */
	}
	b->depth--;
	return 0;
}

int ytree_parse_block(struct ytree *t, const char *buf, size_t len)
{
	/* the subset is printable ASCII, spaces and newlines: every reader
	 * below accepts only those, and comments are checked as skipped */
	struct brd b = { .t = t, .buf = buf, .end = buf + len, .p = buf, .ls = buf, .line = 1 };
	int r = J_GIVE_UP;
	/* find the first content line */
	b_spaces(&b);
	if (b.p < b.end && (*b.p == '\n' || *b.p == '#')) {
		b_next_line(&b);
	} else {
		b.indent = (uint32_t)(b.p - b.ls);
	}
	if (b.eof || b.indent != 0 || b.p >= b.end)
		goto out;
	/* directives, document markers and anything but a key: libyaml */
	if (!b_key_len(&b))
		goto out;
	if ((r = reserve(t, len)))
		return r;
	r = b_map(&b, 0);
	if (r == 0 && (!b.eof || b.bad))
		r = J_GIVE_UP;
out:
	if (r)
		ytree_free(t);
	return r;
}

int ytree_parse(struct ytree *t, const char *file, const char *buf, size_t len,
		struct cfg_errors *errs)
{
	memset(t, 0, sizeof(*t));
	int r = ytree_parse_json(t, buf, len);
	if (r == 1)
		r = ytree_parse_block(t, buf, len);
	if (r == 1)
		return ytree_parse_yaml(t, file, buf, len, errs);
	if (r == -E2BIG) {
		/* refused whatever else is wrong with it: say so without
		 * making libyaml build the same millions of nodes again */
		cfg_errors_add(errs, file, (struct cfg_mark){ 0, 0 },
			       "too many values in one file (more than %u)", CFG_MAX_NODES);
		r = -EINVAL;
	}
	return r;
}
