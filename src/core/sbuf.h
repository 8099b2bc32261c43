/* sbuf.h - a growable string buffer for building replies, JSON and metrics text. */
#ifndef PANDIT_SBUF_H
#define PANDIT_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct sbuf {
	char *data;
	size_t len, cap;
	bool oom;	/* set once an allocation failed; further appends are dropped */
};

void sbuf_init(struct sbuf *b);
void sbuf_free(struct sbuf *b);
void sbuf_reset(struct sbuf *b);
void sbuf_append(struct sbuf *b, const void *data, size_t len);
void sbuf_puts(struct sbuf *b, const char *s);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
void sbuf_json_str(struct sbuf *b, const char *s);

#endif
