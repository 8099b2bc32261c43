/* fuzz_admin_http.c - libFuzzer harness for the admin endpoint's request-head parser (http_req_parse). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/http_req.h"

#include "fuzz_check.h"

static int inside(const char *p, size_t n, const char *buf, size_t len)
{
	return p >= buf && p + n <= buf + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct http_req req;
	int r = http_req_parse(buf, size, &req);

	switch (r) {
	case 0:
		break;
	case -EAGAIN:
		/* incomplete is only possible below the limit */
		check(size < HTTP_REQ_MAX_HEAD);
		return 0;
	case 414:
		check(size >= HTTP_REQ_MAX_HEAD);
		return 0;
	case 431:	/* too long, or too many fields */
		check(size >= HTTP_REQ_MAX_HEAD || req.n_headers > HTTP_REQ_MAX_HEADERS);
		return 0;
	case 400:
	case 505:
		return 0;
	default:
		abort();
	}

	/* a complete head: everything points into it and is well formed */
	check(req.head_len >= 16 && req.head_len <= size && req.head_len <= HTTP_REQ_MAX_HEAD);
	check(memcmp(buf + req.head_len - 4, "\r\n\r\n", 4) == 0);
	check(memmem(buf, req.head_len - 2, "\r\n\r\n", 4) == NULL);	/* the first blank line */
	check(req.method_len >= 1 && req.method_len <= HTTP_REQ_MAX_METHOD);
	check(inside(req.method_str, req.method_len, buf, req.head_len));
	check(inside(req.target, req.target_len, buf, req.head_len) && req.target_len >= 1);
	check(req.path_len >= 1);
	check(inside(req.path, req.path_len, buf, req.head_len) ||
	      (req.path_len == 1 && req.path[0] == '/'));
	check(req.path[0] == '/' || (req.path[0] == '*' && req.path_len == 1));
	check(memchr(req.path, '?', req.path_len) == NULL);
	check(req.version_minor == 0 || req.version_minor == 1);
	check(req.version_minor == 0 || req.has_host);
	check(req.n_headers <= HTTP_REQ_MAX_HEADERS);
	for (size_t i = 0; i < req.head_len; i++) {
		unsigned char c = (unsigned char)buf[i];
		check(c != 0 && c != 0x7f);
		if (c == '\r')
			check(buf[i + 1] == '\n');
		if (c == '\n')
			check(i > 0 && buf[i - 1] == '\r');
	}

	/* the same head alone parses the same; any shorter prefix is incomplete */
	struct http_req again;
	check(http_req_parse(buf, req.head_len, &again) == 0);
	check(again.head_len == req.head_len && again.method == req.method &&
	      again.path_len == req.path_len && again.n_headers == req.n_headers);
	check(http_req_parse(buf, req.head_len - 1, &again) == -EAGAIN);
	check(http_req_parse(buf, req.head_len / 2, &again) == -EAGAIN);
	return 0;
}
