/* validate.c - checks a parsed config tree against the schema and builds struct cfg, collecting every error with its line:col. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/internal.h"

/* --- value parsers ---------------------------------------------------------- */

/* Decimal digits only (no sign, no spaces); false on overflow past max. */
static bool parse_dec(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (!len)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

static bool all_digits(const char *s, size_t len)
{
	if (!len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* Digits with optional spaces around them, 1-65535; one pass (hot: every port). */
static int parse_port(const char *s, size_t len, uint16_t *port, const char **why)
{
	size_t i = 0, digits = 0;
	uint32_t v = 0;
	bool big = false;
	while (i < len && s[i] == ' ')
		i++;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
		v = v * 10 + (uint32_t)(s[i] - '0');
		if (v > 65535) {
			big = true;
			v = 65536;
		}
	}
	while (i < len && s[i] == ' ')
		i++;
	if (!digits || i != len) {
		*why = "a port must be a number from 1 to 65535";
		return -EINVAL;
	}
	if (big || v == 0) {
		*why = "port out of range (1-65535)";
		return -EINVAL;
	}
	*port = (uint16_t)v;
	return 0;
}

int cfg_parse_port_range(const char *s, size_t len, uint16_t *lo, uint16_t *hi, const char **why)
{
	/* the everyday case, a plain port of up to 5 digits: one short loop */
	if (len && len <= 5) {
		uint32_t v = 0;
		size_t i = 0;
		for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
			v = v * 10 + (uint32_t)(s[i] - '0');
		if (i == len && v && v <= 65535) {
			*lo = *hi = (uint16_t)v;
			return 0;
		}
	}
	const char *dash = memchr(s, '-', len);
	if (!dash) {
		if (parse_port(s, len, lo, why))
			return -EINVAL;
		*hi = *lo;
		return 0;
	}
	if (dash == s) {
		*why = "a port must be a number from 1 to 65535 (negative?)";
		return -EINVAL;
	}
	if (parse_port(s, (size_t)(dash - s), lo, why) ||
	    parse_port(dash + 1, len - (size_t)(dash - s) - 1, hi, why)) {
		if (*why && strncmp(*why, "a port must", 11) == 0)
			*why = "a port range must be written LO-HI, like 8000-8099";
		return -EINVAL;
	}
	if (*lo > *hi) {
		*why = "port range start is greater than its end";
		return -EINVAL;
	}
	return 0;
}

int cfg_parse_prefix(const char *s, uint8_t addr[16], uint8_t *plen, const char **why)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	if (alen == 0) {
		*why = "empty address";
		return -EINVAL;
	}
	if (alen >= sizeof(buf)) {
		*why = "malformed address";
		return -EINVAL;
	}
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	bool v4;
	struct in_addr a4;
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		v4 = true;
		memset(addr, 0, 10);
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &a4, 4);
	} else if (inet_pton(AF_INET6, buf, addr) == 1) {
		v4 = false;
	} else {
		*why = strchr(buf, ':') ? "malformed IPv6 address" : "malformed IPv4 address";
		return -EINVAL;
	}
	uint64_t n = v4 ? 32 : 128;
	if (slash) {
		uint64_t max = n;
		if (!parse_dec(slash + 1, strlen(slash + 1), max, &n)) {
			*why = v4 ? "prefix length must be a number from 0 to 32"
				  : "prefix length must be a number from 0 to 128";
			return -EINVAL;
		}
	}
	unsigned bits = (unsigned)n + (v4 ? 96u : 0u);
	/* bits outside the prefix are almost always a typo (10.1.2.3/8), refuse */
	for (unsigned b = bits; b < 128; b++) {
		if (addr[b / 8] & (0x80u >> (b % 8))) {
			*why = "address has bits set after the prefix length";
			return -EINVAL;
		}
	}
	*plen = (uint8_t)bits;
	return 0;
}

/* Dotted-quad IPv4 exactly as inet_pton(AF_INET) reads it (four decimal
 * octets of at most 255, no leading zeros), without the copy to a
 * NUL-terminated buffer and the library call: every target goes through. */
static bool ipv4_parse(const char *s, size_t len, uint8_t out[4])
{
	uint8_t tmp[4];
	size_t i = 0;
	for (int o = 0; o < 4; o++) {
		if (o && (i >= len || s[i++] != '.'))
			return false;
		if (i >= len || s[i] < '0' || s[i] > '9')
			return false;
		unsigned v = (unsigned)(s[i++] - '0');
		if (v == 0 && i < len && s[i] >= '0' && s[i] <= '9')
			return false;	/* a leading zero */
		for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
			if ((v = v * 10 + (unsigned)(s[i] - '0')) > 255)
				return false;
		tmp[o] = (uint8_t)v;
	}
	if (i != len)
		return false;
	memcpy(out, tmp, 4);
	return true;
}

/* Host names as DNS writes them: letters, digits, '-', '_', dots between labels. */
static bool hostname_ok(const char *h, size_t len)
{
	if (len == 0 || len > 253)
		return false;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		char c = h[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

/* Checks "host:port" / "[v6]:port"; the host is s[*hoff, *hoff + *hlen). */
static int split_hostport(const char *s, size_t *hoff, size_t *hlen_out, uint16_t *port,
			  const char **why)
{
	const char *h, *ps;
	size_t hlen;
	size_t len = strlen(s);
	if (len == 0) {
		*why = "empty target (expected host:port)";
		return -EINVAL;
	}
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb) {
			*why = "missing ']' after the IPv6 address";
			return -EINVAL;
		}
		h = s + 1;
		hlen = (size_t)(rb - h);
		if (rb[1] != ':') {
			*why = rb[1] ? "expected ':' and a port after ']'" : "missing port (expected [addr]:port)";
			return -EINVAL;
		}
		ps = rb + 2;
		char buf[INET6_ADDRSTRLEN + 1];
		unsigned char tmp[16];
		const char *pct = memchr(h, '%', hlen);
		size_t alen = pct ? (size_t)(pct - h) : hlen;
		if (alen == 0) {
			*why = "empty host";
			return -EINVAL;
		}
		if (alen >= sizeof(buf)) {
			*why = "malformed IPv6 address in brackets";
			return -EINVAL;
		}
		memcpy(buf, h, alen);
		buf[alen] = '\0';
		if (inet_pton(AF_INET6, buf, tmp) != 1) {
			*why = "malformed IPv6 address in brackets";
			return -EINVAL;
		}
		/* a zone (fe80::1%eth0) names an interface */
		if (pct && !hostname_ok(pct + 1, hlen - alen - 1)) {
			*why = "malformed IPv6 zone after '%'";
			return -EINVAL;
		}
	} else {
		const char *colon = memrchr(s, ':', len);
		if (!colon) {
			*why = "missing port (expected host:port)";
			return -EINVAL;
		}
		h = s;
		hlen = (size_t)(colon - s);
		ps = colon + 1;
		/* a well-formed IPv4 address (digits and dots only) needs no
		 * more checks; everything else gets one pass over the host */
		uint8_t a4[4];
		bool numeric = true, other_colon = false, bracket = false;
		if (hlen && ipv4_parse(h, hlen, a4))
			goto port;
		for (size_t i = 0; i < hlen; i++) {
			char ch = h[i];
			if ((ch >= '0' && ch <= '9') || ch == '.')
				continue;
			numeric = false;
			if (ch == ':')
				other_colon = true;
			else if (ch == ']')
				bracket = true;
		}
		if (other_colon) {
			*why = "an IPv6 address must be written in brackets, like [::1]:80";
			return -EINVAL;
		}
		if (bracket) {
			*why = "missing '[' before the IPv6 address";
			return -EINVAL;
		}
		if (hlen == 0) {
			*why = "empty host (expected host:port)";
			return -EINVAL;
		}
		if (numeric) {
			uint8_t a[4];
			if (!ipv4_parse(h, hlen, a)) {
				*why = "malformed IPv4 address";
				return -EINVAL;
			}
		} else if (!hostname_ok(h, hlen)) {
			*why = "malformed host name";
			return -EINVAL;
		}
	}
port:
	if (!*ps) {
		*why = "missing port (expected host:port)";
		return -EINVAL;
	}
	if (parse_port(ps, len - (size_t)(ps - s), port, why))
		return -EINVAL;
	*hoff = (size_t)(h - s);
	*hlen_out = hlen;
	return 0;
}

int cfg_parse_hostport(const char *s, char **host, uint16_t *port, const char **why)
{
	size_t hoff, hlen;
	int r = split_hostport(s, &hoff, &hlen, port, why);
	if (r)
		return r;
	*host = malloc(hlen + 1);
	if (*host) {
		memcpy(*host, s + hoff, hlen);
		(*host)[hlen] = '\0';
	} else {
		*why = "out of memory";
		return -ENOMEM;
	}
	return 0;
}

int cfg_parse_duration(const char *s, uint32_t *ms, const char **why)
{
	size_t len = strlen(s);
	uint64_t total = 0, v;
	if (len == 0) {
		*why = "empty duration";
		return -EINVAL;
	}
	if (s[0] == '-') {
		*why = "a duration cannot be negative";
		return -EINVAL;
	}
	if (all_digits(s, len)) {
		if (!parse_dec(s, len, UINT32_MAX, &v)) {
			*why = "duration too long (at most 4294967295 ms, about 49 days)";
			return -EINVAL;
		}
		*ms = (uint32_t)v;
		return 0;
	}
	const char *p = s;
	while (*p) {
		const char *d = p;
		while (*p >= '0' && *p <= '9')
			p++;
		if (p == d) {
			*why = "malformed duration (use e.g. 250ms, 2s, 1m, 1h or milliseconds)";
			return -EINVAL;
		}
		if (!parse_dec(d, (size_t)(p - d), UINT32_MAX, &v)) {
			*why = "duration too long (at most 4294967295 ms, about 49 days)";
			return -EINVAL;
		}
		uint64_t mul;
		if (p[0] == 'm' && p[1] == 's') {
			mul = 1;
			p += 2;
		} else if (p[0] == 's') {
			mul = 1000;
			p++;
		} else if (p[0] == 'm') {
			mul = 60000;
			p++;
		} else if (p[0] == 'h') {
			mul = 3600000;
			p++;
		} else {
			*why = "malformed duration (use e.g. 250ms, 2s, 1m, 1h or milliseconds)";
			return -EINVAL;
		}
		total += v * mul;
		if (total > UINT32_MAX) {
			*why = "duration too long (at most 4294967295 ms, about 49 days)";
			return -EINVAL;
		}
	}
	*ms = (uint32_t)total;
	return 0;
}

int cfg_parse_size(const char *s, uint32_t *bytes, const char **why)
{
	size_t len = strlen(s), d = 0;
	uint64_t v, mul = 1;
	while (d < len && s[d] >= '0' && s[d] <= '9')
		d++;
	const char *suf = s + d;
	if (d == 0) {
		*why = "a size must be a number of bytes, optionally with k or m (64k)";
		return -EINVAL;
	}
	if (*suf) {
		if (*suf == 'k' || *suf == 'K')
			mul = 1024;
		else if (*suf == 'm' || *suf == 'M')
			mul = 1024 * 1024;
		else
			goto bad;
		suf++;
		if (strcmp(suf, "") && strcmp(suf, "b") && strcmp(suf, "B") && strcmp(suf, "iB"))
			goto bad;
	}
	if (!parse_dec(s, d, UINT32_MAX, &v) || v * mul > UINT32_MAX) {
		*why = "size too large";
		return -EINVAL;
	}
	*bytes = (uint32_t)(v * mul);
	return 0;
bad:
	*why = "a size must be a number of bytes, optionally with k or m (64k)";
	return -EINVAL;
}

/* --- validation context ------------------------------------------------------- */

struct vctx {
	const struct ytree *t;
	const char *file;
	struct cfg_errors *errs;
	struct cfg *cfg;
	const char *app;	/* label of the app being read, for messages; NULL: globals */
	char *default_name;	/* "default" in the pool, shared by every app's clusters[0] */
	size_t n_err;
	bool full;	/* CFG_MAX_ERRORS reached: stop looking */
	bool oom;
};

__attribute__((format(printf, 3, 4)))
static void verr(struct vctx *c, struct cfg_mark m, const char *fmt, ...)
{
	if (c->full)
		return;
	if (++c->n_err > CFG_MAX_ERRORS) {
		c->full = true;	/* said once, at the end (sort_errors) */
		return;
	}
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cfg_errors_add(c->errs, c->file, m, "%s", msg);
}

static const struct ynode *N(const struct vctx *c, uint32_t i)
{
	return &c->t->nodes[i];
}

static struct cfg_mark nmark(const struct vctx *c, uint32_t i)
{
	struct cfg_mark m = { N(c, i)->line, N(c, i)->col };
	return m;
}

static const char *S(const struct vctx *c, uint32_t i)
{
	return ytree_str(c->t, N(c, i));
}

/* what, prefixed with the app being read ("app 'web': connect_timeout");
 * built only when a message needs it. */
static const char *W(const struct vctx *c, const char *what, char *buf, size_t len)
{
	if (!c->app)
		return what;
	snprintf(buf, len, "app '%s': %s", c->app, what);
	return buf;
}

static bool is_null(const struct vctx *c, uint32_t i)
{
	const struct ynode *n = N(c, i);
	if (n->type != Y_SCALAR || !n->plain)
		return false;
	const char *s = S(c, i);
	if (n->len == 0)
		return true;
	if (n->len == 1)
		return s[0] == '~';
	return n->len == 4 && (strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
			       strcmp(s, "NULL") == 0);
}

static const char *type_name(const struct vctx *c, uint32_t i)
{
	switch (N(c, i)->type) {
	case Y_MAP:
		return "a mapping";
	case Y_SEQ:
		return "a list";
	default:
		return is_null(c, i) ? "empty" : "a scalar";
	}
}

/* A printable copy of a scalar for messages: at most 60 bytes, control
 * characters replaced, so a hostile file cannot inject lines into logs. */
static const char *show(const struct vctx *c, uint32_t i, char *buf, size_t len)
{
	const struct ynode *n = N(c, i);
	if (n->type != Y_SCALAR)
		return type_name(c, i);
	const char *s = S(c, i);
	size_t o = 0, max = len - 4;
	for (size_t k = 0; k < n->len && o < max; k++)
		buf[o++] = ((unsigned char)s[k] < 0x20 || s[k] == 0x7f) ? '?' : s[k];
	if (n->len > max)
		buf[o++] = '.', buf[o++] = '.', buf[o++] = '.';
	buf[o] = '\0';
	return buf;
}

/* The scalar text of node i, or NULL (with an error) when it is not a scalar. */
static const char *want_scalar(struct vctx *c, uint32_t i, const char *what)
{
	char wb[96 + CFG_MAX_NAME_LEN];
	if (N(c, i)->type != Y_SCALAR || is_null(c, i)) {
		verr(c, nmark(c, i), "%s must be a value, not %s", W(c, what, wb, sizeof(wb)), type_name(c, i));
		return NULL;
	}
	return S(c, i);
}

static int get_bool(struct vctx *c, uint32_t i, const char *what, bool *out)
{
	char wb[96 + CFG_MAX_NAME_LEN];
	const char *s = want_scalar(c, i, what);
	if (!s)
		return -EINVAL;
	static const char *const yes[] = { "true", "yes", "on" }, *const no[] = { "false", "no", "off" };
	/* the usual spelling first, exactly */
	if (s[0] == 'f' && strcmp(s, "false") == 0) {
		*out = false;
		return 0;
	}
	if (s[0] == 't' && strcmp(s, "true") == 0) {
		*out = true;
		return 0;
	}
	for (int k = 0; k < 3; k++) {
		if (strcasecmp(s, yes[k]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[k]) == 0) {
			*out = false;
			return 0;
		}
	}
	char b[64];
	verr(c, nmark(c, i), "%s must be true or false, not '%s'", W(c, what, wb, sizeof(wb)), show(c, i, b, sizeof(b)));
	return -EINVAL;
}

static int get_uint(struct vctx *c, uint32_t i, const char *what, uint32_t min, uint32_t max,
		    uint32_t *out)
{
	char wb[96 + CFG_MAX_NAME_LEN];
	const char *s = want_scalar(c, i, what);
	uint64_t v;
	if (!s)
		return -EINVAL;
	if (!all_digits(s, N(c, i)->len)) {
		char b[64];
		verr(c, nmark(c, i), "%s must be a whole number, not '%s'", W(c, what, wb, sizeof(wb)),
		     show(c, i, b, sizeof(b)));
		return -EINVAL;
	}
	if (!parse_dec(s, N(c, i)->len, max, &v) || v < min) {
		verr(c, nmark(c, i), "%s must be from %u to %u", W(c, what, wb, sizeof(wb)), min, max);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

static int get_duration(struct vctx *c, uint32_t i, const char *what, uint32_t min_ms,
			uint32_t *out)
{
	char wb[96 + CFG_MAX_NAME_LEN];
	const char *s = want_scalar(c, i, what), *why = NULL;
	uint32_t v;
	if (!s)
		return -EINVAL;
	if (cfg_parse_duration(s, &v, &why)) {
		char b[64];
		verr(c, nmark(c, i), "%s: '%s': %s", W(c, what, wb, sizeof(wb)), show(c, i, b, sizeof(b)), why);
		return -EINVAL;
	}
	if (v < min_ms) {
		verr(c, nmark(c, i), "%s must be at least %u ms", W(c, what, wb, sizeof(wb)), min_ms);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* A duration in whole seconds within [min, max] (TCP keepalive knobs). */
static int get_seconds(struct vctx *c, uint32_t i, const char *what, uint32_t min, uint32_t max,
		       uint32_t *out)
{
	char wb[96 + CFG_MAX_NAME_LEN];
	uint32_t ms;
	if (get_duration(c, i, what, 0, &ms))
		return -EINVAL;
	if (ms % 1000 || ms / 1000 < min || ms / 1000 > max) {
		verr(c, nmark(c, i), "%s must be a whole number of seconds from %us to %us", W(c, what, wb, sizeof(wb)),
		     min, max);
		return -EINVAL;
	}
	*out = ms / 1000;
	return 0;
}

/* --- mappings with known keys ---------------------------------------------------- */

struct keydef {
	const char *name;
	const char *alias;	/* the Fly.io challenge's capitalised spelling */
	size_t len;		/* of name */
};
#define KEY(n, a) { n, a, sizeof(n) - 1 }

/* The kl bytes of ks are exactly name (ks may hold a NUL byte; name is
 * read no further than its end). */
static bool key_is(const char *ks, size_t kl, const char *name)
{
	size_t j = 0;
	while (j < kl && name[j] && name[j] == ks[j])
		j++;
	return j == kl && name[j] == '\0';
}

/* Walks mapping m: reports non-scalar, unknown and duplicate keys and
 * stores the value node of each known key in vals[k] (0 = absent). */
static void map_fields(struct vctx *c, uint32_t m, const struct keydef *keys, size_t n_keys,
		       uint32_t *vals, const char *where)
{
	uint32_t key_at[32] = { 0 };
	memset(vals, 0, n_keys * sizeof(*vals));
	for (uint32_t k = N(c, m)->first, n = 0; n < N(c, m)->len && !c->full; n += 2) {
		uint32_t v = N(c, k)->next;
		if (N(c, k)->type != Y_SCALAR) {
			verr(c, nmark(c, k), "keys %s must be plain strings, not %s", where,
			     type_name(c, k));
		} else {
			const char *ks = S(c, k);
			size_t idx, kl = N(c, k)->len;
			/* the key's first byte decides cheaply before comparing */
			for (idx = 0; idx < n_keys; idx++)
				if ((kl == keys[idx].len && ks[0] == keys[idx].name[0] &&
				     memcmp(ks, keys[idx].name, kl) == 0) ||
				    (keys[idx].alias && ks[0] == keys[idx].alias[0] &&
				     key_is(ks, kl, keys[idx].alias)))
					break;
			if (idx == n_keys) {
				char known[400], b[64];
				size_t o = 0;
				for (size_t x = 0; x < n_keys && o < sizeof(known); x++)
					o += (size_t)snprintf(known + o, sizeof(known) - o, "%s%s",
							      x ? ", " : "", keys[x].name);
				verr(c, nmark(c, k), "unknown key '%s' %s (known keys: %s)",
				     show(c, k, b, sizeof(b)), where, known);
			} else if (key_at[idx]) {
				verr(c, nmark(c, k), "duplicate key '%s' %s (first at line %u column %u)",
				     ks, where, N(c, key_at[idx])->line, N(c, key_at[idx])->col);
			} else {
				key_at[idx] = k;
				vals[idx] = v;
			}
		}
		k = N(c, v)->next;
	}
}

/* --- globals ------------------------------------------------------------------- */

static int parse_admin(struct vctx *c, uint32_t i)
{
	struct cfg *cfg = c->cfg;
	if (is_null(c, i)) {
		cfg->admin_len = 0;
		return 0;
	}
	const char *s = want_scalar(c, i, "admin");
	if (!s)
		return -EINVAL;
	if (strcmp(s, "off") == 0 || strcmp(s, "false") == 0 || strcmp(s, "no") == 0) {
		cfg->admin_len = 0;
		return 0;
	}
	char *host = NULL, b[64];
	const char *why = NULL;
	uint16_t port;
	int r = cfg_parse_hostport(s, &host, &port, &why);
	if (r == -ENOMEM) {
		c->oom = true;
		return r;
	}
	if (r) {
		verr(c, nmark(c, i), "admin: '%s': %s", show(c, i, b, sizeof(b)), why);
		return r;
	}
	memset(&cfg->admin, 0, sizeof(cfg->admin));
	struct sockaddr_in *a4 = (struct sockaddr_in *)&cfg->admin;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&cfg->admin;
	/* no name resolution in the config: literal addresses (and localhost) only */
	const char *lit = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
	if (inet_pton(AF_INET, lit, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		cfg->admin_len = sizeof(*a4);
	} else if (inet_pton(AF_INET6, lit, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		cfg->admin_len = sizeof(*a6);
	} else {
		verr(c, nmark(c, i), "admin: '%s': must be a literal IP address and port, like 127.0.0.1:9900",
		     show(c, i, b, sizeof(b)));
		r = -EINVAL;
	}
	free(host);
	return r;
}

static bool has_ctl(const char *s, size_t len)
{
	/* 8 bytes at a time: some byte < 0x20, or equal to 0x7f (exact tests:
	 * a byte >= 0x80 never counts as below 0x20) */
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	size_t i = 0;
	uint64_t x, d;
	for (; i + 8 <= len; i += 8) {
		memcpy(&x, s + i, 8);
		d = x ^ (0x7f * ones);
		if ((((x - 0x20 * ones) & ~x) | ((d - ones) & ~d)) & highs)
			return true;
	}
	if (i < len && len >= 8) {
		/* the tail as the last 8 bytes (overlapping what was checked) */
		memcpy(&x, s + len - 8, 8);
		d = x ^ (0x7f * ones);
		return ((((x - 0x20 * ones) & ~x) | ((d - ones) & ~d)) & highs) != 0;
	}
	for (; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return true;
	return false;
}

static void parse_user(struct vctx *c, uint32_t i)
{
	struct cfg *cfg = c->cfg;
	free(cfg->user);
	cfg->user = NULL;
	if (is_null(c, i))
		return;
	const char *s = want_scalar(c, i, "user");
	if (!s)
		return;
	if (!*s)
		return;
	if (N(c, i)->len > 64 || has_ctl(s, N(c, i)->len)) {
		verr(c, nmark(c, i), "user: not a valid user name");
		return;
	}
	cfg->user = strdup(s);
	if (!cfg->user)
		c->oom = true;
}

/* shortcut_cgroup: the absolute path of a cgroup v2 directory (checked
 * when pandit starts, not here); null or empty: the short-circuit is off. */
static void parse_shortcut_cgroup(struct vctx *c, uint32_t i)
{
	struct cfg *cfg = c->cfg;
	free(cfg->shortcut_cgroup);
	cfg->shortcut_cgroup = NULL;
	if (is_null(c, i))
		return;
	const char *s = want_scalar(c, i, "shortcut_cgroup");
	if (!s || !*s)
		return;
	if (*s != '/' || N(c, i)->len >= 4096 || has_ctl(s, N(c, i)->len)) {
		char b[64];
		verr(c, nmark(c, i), "shortcut_cgroup '%s': must be the absolute path of a cgroup v2 directory",
		     show(c, i, b, sizeof(b)));
		return;
	}
	cfg->shortcut_cgroup = strdup(s);
	if (!cfg->shortcut_cgroup)
		c->oom = true;
}

enum { HC_INTERVAL, HC_TIMEOUT, HC_RISE, HC_FALL, HC_BMIN, HC_BMAX, HC_N };
static const struct keydef hc_keys[HC_N] = {
	[HC_INTERVAL] = KEY("interval", NULL), [HC_TIMEOUT] = KEY("timeout", NULL),
	[HC_RISE] = KEY("rise", NULL),	      [HC_FALL] = KEY("fall", NULL),
	[HC_BMIN] = KEY("backoff_min", NULL),  [HC_BMAX] = KEY("backoff_max", NULL),
};

static void parse_health(struct vctx *c, uint32_t i)
{
	struct cfg_health *h = &c->cfg->health;
	uint32_t v[HC_N];
	if (is_null(c, i))
		return;
	if (N(c, i)->type != Y_MAP) {
		verr(c, nmark(c, i), "health_check must be a mapping (interval, timeout, rise, fall, backoff_min, backoff_max), not %s",
		     type_name(c, i));
		return;
	}
	map_fields(c, i, hc_keys, HC_N, v, "in health_check");
	if (v[HC_INTERVAL])
		get_duration(c, v[HC_INTERVAL], "health_check interval", 1, &h->interval_ms);
	if (v[HC_TIMEOUT])
		get_duration(c, v[HC_TIMEOUT], "health_check timeout", 1, &h->timeout_ms);
	if (v[HC_RISE])
		get_uint(c, v[HC_RISE], "health_check rise", 1, 1000, &h->rise);
	if (v[HC_FALL])
		get_uint(c, v[HC_FALL], "health_check fall", 1, 1000, &h->fall);
	if (v[HC_BMIN])
		get_duration(c, v[HC_BMIN], "health_check backoff_min", 1, &h->backoff_min_ms);
	if (v[HC_BMAX])
		get_duration(c, v[HC_BMAX], "health_check backoff_max", 1, &h->backoff_max_ms);
	if (h->backoff_min_ms > h->backoff_max_ms)
		verr(c, nmark(c, v[HC_BMIN] ? v[HC_BMIN] : v[HC_BMAX] ? v[HC_BMAX] : i),
		     "health_check backoff_min (%u ms) is greater than backoff_max (%u ms)",
		     h->backoff_min_ms, h->backoff_max_ms);
}

/* --- apps ---------------------------------------------------------------------- */

enum {
	A_NAME, A_PORTS, A_ADDRS, A_TARGETS, A_BALANCE, A_CTIMEOUT, A_ITIMEOUT, A_ATTEMPTS,
	A_MAXCONN, A_KEEPALIVE, A_HEALTH, A_PROTO, A_FOO, A_HTTP, A_KSPLICE, A_LSHORT, A_N
};
static const struct keydef app_keys[A_N] = {
	[A_NAME] = KEY("name", "Name"),
	[A_PORTS] = KEY("ports", "Ports"),
	[A_ADDRS] = KEY("addresses", NULL),
	[A_TARGETS] = KEY("targets", "Targets"),
	[A_BALANCE] = KEY("balance", NULL),
	[A_CTIMEOUT] = KEY("connect_timeout", NULL),
	[A_ITIMEOUT] = KEY("idle_timeout", NULL),
	[A_ATTEMPTS] = KEY("connect_attempts", NULL),
	[A_MAXCONN] = KEY("max_connections", NULL),
	[A_KEEPALIVE] = KEY("keepalive", NULL),
	[A_HEALTH] = KEY("health_check", NULL),
	[A_PROTO] = KEY("protocol", NULL),
	[A_FOO] = KEY("foo", NULL),
	[A_HTTP] = KEY("http", NULL),
	[A_KSPLICE] = KEY("kernel_splice", NULL),
	[A_LSHORT] = KEY("local_shortcut", NULL),
};

enum { K_IDLE, K_INTERVAL, K_COUNT, K_N };
static const struct keydef ka_keys[K_N] = {
	[K_IDLE] = KEY("idle", NULL), [K_INTERVAL] = KEY("interval", NULL), [K_COUNT] = KEY("count", NULL),
};

/* kernel_splice: auto, on or off (true and false also read as on and off);
 * on needs protocol tcp, the only protocol the kernel path moves. */
static void parse_kernel_splice(struct vctx *c, uint32_t i, struct cfg_app *a, const char *an)
{
	char b[64];
	const char *s = want_scalar(c, i, "kernel_splice");
	if (!s)
		return;
	if (strcmp(s, "auto") == 0) {
		a->kernel_splice = CFG_KERNEL_AUTO;
	} else if (strcmp(s, "on") == 0 || strcmp(s, "true") == 0) {
		a->kernel_splice = CFG_KERNEL_ON;
	} else if (strcmp(s, "off") == 0 || strcmp(s, "false") == 0) {
		a->kernel_splice = CFG_KERNEL_OFF;
	} else {
		verr(c, nmark(c, i), "app '%s': kernel_splice '%s' is not one of auto, on, off", an,
		     show(c, i, b, sizeof(b)));
		return;
	}
	if (a->kernel_splice == CFG_KERNEL_ON && a->protocol == PROTO_HTTP)
		verr(c, nmark(c, i), "app '%s': kernel_splice: on needs protocol tcp or foo (http apps are proxied in userspace)",
		     an);
}

/* local_shortcut: auto or off (false also reads as off); auto needs
 * protocol tcp or foo: the short-circuit counts on the daemon writing each
 * side exactly the bytes it read from the other (http apps rewrite). */
static void parse_local_shortcut(struct vctx *c, uint32_t i, struct cfg_app *a, const char *an)
{
	char b[64];
	const char *s = want_scalar(c, i, "local_shortcut");
	if (!s)
		return;
	if (strcmp(s, "auto") == 0) {
		a->local_shortcut = CFG_SHORTCUT_AUTO;
	} else if (strcmp(s, "off") == 0 || strcmp(s, "false") == 0) {
		a->local_shortcut = CFG_SHORTCUT_OFF;
	} else {
		verr(c, nmark(c, i), "app '%s': local_shortcut '%s' is not one of auto, off", an,
		     show(c, i, b, sizeof(b)));
		return;
	}
	if (a->local_shortcut == CFG_SHORTCUT_AUTO && a->protocol == PROTO_HTTP)
		verr(c, nmark(c, i), "app '%s': local_shortcut: auto needs protocol tcp or foo (http apps are proxied in userspace)",
		     an);
}

/* Calls fn for each item of a list, or once for a lone scalar. */
#define FOR_ITEMS(c, i, it, ...)                                                       \
	do {                                                                           \
		if (N(c, i)->type == Y_SEQ) {                                          \
			uint32_t it = N(c, i)->first;                                  \
			for (uint32_t _n = 0; _n < N(c, i)->len && !(c)->full;         \
			     _n++, it = N(c, it)->next) {                              \
				__VA_ARGS__;                                           \
			}                                                              \
		} else {                                                               \
			uint32_t it = i;                                               \
			__VA_ARGS__;                                                   \
		}                                                                      \
	} while (0)

static size_t n_items(const struct vctx *c, uint32_t i)
{
	if (N(c, i)->type == Y_SEQ)
		return N(c, i)->len;
	return is_null(c, i) ? 0 : 1;
}

static void parse_ports(struct vctx *c, uint32_t i, struct cfg_app *a, const char *an)
{
	size_t n = n_items(c, i);
	if (N(c, i)->type == Y_MAP) {
		verr(c, nmark(c, i), "app '%s': ports must be a list of ports and ranges, not a mapping", an);
		return;
	}
	if (!n)
		return;
	a->ports = cfg_pool_alloc(c->cfg, n * sizeof(*a->ports));
	if (!a->ports) {
		c->oom = true;
		return;
	}
	memset(a->ports, 0, n * sizeof(*a->ports));
	FOR_ITEMS(c, i, it, {
		const char *why = NULL;
		char b[64];
		struct cfg_port_range *r = &a->ports[a->n_ports];
		if (N(c, it)->type != Y_SCALAR || is_null(c, it)) {
			verr(c, nmark(c, it), "app '%s': a port must be a number or a range, not %s", an,
			     type_name(c, it));
		} else if (cfg_parse_port_range(S(c, it), N(c, it)->len, &r->lo, &r->hi, &why)) {
			verr(c, nmark(c, it), "app '%s': port '%s': %s", an, show(c, it, b, sizeof(b)),
			     why);
		} else {
			r->mark = nmark(c, it);
			a->n_ports++;
		}
	});
}

static void parse_addrs(struct vctx *c, uint32_t i, struct cfg_app *a, const char *an)
{
	size_t n = n_items(c, i);
	if (N(c, i)->type == Y_MAP) {
		verr(c, nmark(c, i), "app '%s': addresses must be a list of address prefixes, not a mapping", an);
		return;
	}
	if (!n)
		return;
	a->prefixes = cfg_pool_alloc(c->cfg, n * sizeof(*a->prefixes));
	if (!a->prefixes) {
		c->oom = true;
		return;
	}
	memset(a->prefixes, 0, n * sizeof(*a->prefixes));
	FOR_ITEMS(c, i, it, {
		const char *why = NULL;
		char b[64];
		struct cfg_prefix *p = &a->prefixes[a->n_prefixes];
		if (N(c, it)->type != Y_SCALAR || is_null(c, it)) {
			verr(c, nmark(c, it), "app '%s': an address must be a string like 10.0.0.0/8, not %s",
			     an, type_name(c, it));
		} else if (cfg_parse_prefix(S(c, it), p->addr, &p->plen, &why)) {
			verr(c, nmark(c, it), "app '%s': address '%s': %s", an, show(c, it, b, sizeof(b)),
			     why);
		} else {
			p->mark = nmark(c, it);
			a->n_prefixes++;
		}
	});
}

/* Appends the targets of list (or lone scalar) i to a->targets, whose room
 * was reserved by parse_app. */
static void add_targets(struct vctx *c, uint32_t i, struct cfg_app *a, const char *an)
{
	FOR_ITEMS(c, i, it, {
		const char *why = NULL;
		char b[64];
		struct cfg_target *t = &a->targets[a->n_targets];
		size_t hoff, hlen;
		int r;
		if (N(c, it)->type != Y_SCALAR || is_null(c, it)) {
			verr(c, nmark(c, it), "app '%s': a target must be a string host:port, not %s", an,
			     type_name(c, it));
		} else if (has_ctl(S(c, it), N(c, it)->len)) {
			verr(c, nmark(c, it), "app '%s': target '%s': control characters are not allowed",
			     an, show(c, it, b, sizeof(b)));
		} else if ((r = split_hostport(S(c, it), &hoff, &hlen, &t->port, &why))) {
			verr(c, nmark(c, it), "app '%s': target '%s': %s", an,
			     show(c, it, b, sizeof(b)), why);
		} else if (!(t->host = cfg_pool_strndup(c->cfg, S(c, it) + hoff, hlen))) {
			c->oom = true;
		} else {
			t->mark = nmark(c, it);
			a->n_targets++;
		}
	});
}

/* The first value of key name in mapping m, 0 when absent (as map_fields
 * would find it: the first of duplicate keys). */
static uint32_t find_key(const struct vctx *c, uint32_t m, const char *name)
{
	size_t nl = strlen(name);
	if (N(c, m)->type != Y_MAP)
		return 0;
	for (uint32_t k = N(c, m)->first, n = 0; n < N(c, m)->len; n += 2) {
		uint32_t v = N(c, k)->next;
		if (N(c, k)->type == Y_SCALAR && N(c, k)->len == nl && memcmp(S(c, k), name, nl) == 0)
			return v;
		k = N(c, v)->next;
	}
	return 0;
}

/* How many targets the clusters of http section h list, so that the app's
 * targets array (its own, then each cluster's) is allocated once. Lists
 * that will be refused count as empty. */
static size_t http_count_targets(const struct vctx *c, uint32_t h)
{
	uint32_t cl = find_key(c, h, "clusters");
	size_t n = 0;
	if (!cl || N(c, cl)->type != Y_SEQ || N(c, cl)->len >= CFG_MAX_HTTP_CLUSTERS)
		return 0;
	uint32_t it = N(c, cl)->first;
	for (uint32_t k = 0; k < N(c, cl)->len; k++, it = N(c, it)->next) {
		uint32_t t = find_key(c, it, "targets");
		if (t && N(c, t)->type != Y_MAP && n_items(c, t) <= CFG_MAX_TARGETS_PER_APP)
			n += n_items(c, t);
	}
	return n;
}

/* balance: round_robin, random, least_conn or least_request (the same
 * policy: fewest connections, or for http apps fewest requests in flight). */
static void parse_balance(struct vctx *c, uint32_t i, const char *what, const char *an,
			  enum lb_policy *out)
{
	char b[64];
	const char *s = want_scalar(c, i, what);
	if (!s)
		return;
	if (strcmp(s, "round_robin") == 0)
		*out = LB_ROUND_ROBIN;
	else if (strcmp(s, "random") == 0)
		*out = LB_RANDOM;
	else if (strcmp(s, "least_conn") == 0 || strcmp(s, "least_request") == 0)
		*out = LB_LEAST_CONN;
	else
		verr(c, nmark(c, i),
		     "app '%s': unknown %s '%s' (use round_robin, random, least_conn or least_request)",
		     an, what, show(c, i, b, sizeof(b)));
}

static void parse_keepalive(struct vctx *c, uint32_t i, struct cfg_app *a, const char *an)
{
	char what[64 + CFG_MAX_NAME_LEN];
	if (N(c, i)->type == Y_SCALAR) {
		get_bool(c, i, "keepalive", &a->keepalive.enabled);
		return;
	}
	if (N(c, i)->type != Y_MAP) {
		verr(c, nmark(c, i), "app '%s': keepalive must be a mapping (idle, interval, count) or true/false, not %s",
		     an, type_name(c, i));
		return;
	}
	uint32_t v[K_N];
	snprintf(what, sizeof(what), "in keepalive of app '%s'", an);
	map_fields(c, i, ka_keys, K_N, v, what);
	a->keepalive.enabled = true;
	/* Linux limits: TCP_KEEPIDLE/TCP_KEEPINTVL <= 32767 s, TCP_KEEPCNT <= 127 */
	if (v[K_IDLE])
		get_seconds(c, v[K_IDLE], "keepalive idle", 1, 32767, &a->keepalive.idle_s);
	if (v[K_INTERVAL])
		get_seconds(c, v[K_INTERVAL], "keepalive interval", 1, 32767, &a->keepalive.interval_s);
	if (v[K_COUNT])
		get_uint(c, v[K_COUNT], "keepalive count", 1, 127, &a->keepalive.count);
}

enum { F_POLICY, F_MAXLINE, F_N };
static const struct keydef foo_keys[F_N] = {
	[F_POLICY] = KEY("policy", NULL), [F_MAXLINE] = KEY("max_line", NULL),
};

static void parse_foo(struct vctx *c, uint32_t i, struct cfg_app *a, const char *an)
{
	char what[64 + CFG_MAX_NAME_LEN];
	if (N(c, i)->type != Y_MAP) {
		verr(c, nmark(c, i), "app '%s': foo must be a mapping (policy, max_line), not %s", an,
		     type_name(c, i));
		return;
	}
	uint32_t v[F_N];
	snprintf(what, sizeof(what), "in foo of app '%s'", an);
	map_fields(c, i, foo_keys, F_N, v, what);
	if (v[F_POLICY]) {
		const char *s = want_scalar(c, v[F_POLICY], "foo policy");
		if (s && strcmp(s, "strict") == 0) {
			a->foo.strict = true;
		} else if (s && strcmp(s, "lenient") == 0) {
			a->foo.strict = false;
		} else if (s) {
			char b[64];
			verr(c, nmark(c, v[F_POLICY]), "app '%s': foo policy '%s' is not one of strict, lenient",
			     an, show(c, v[F_POLICY], b, sizeof(b)));
		}
	}
	if (v[F_MAXLINE])
		get_uint(c, v[F_MAXLINE], "foo max_line", 16, CFG_MAX_FOO_MAX_LINE, &a->foo.max_line);
}

/* --- protocol http ---------------------------------------------------------------- */

enum {
	H_CLUSTERS, H_ROUTES, H_HDR_TO, H_RESP_TO, H_CIDLE, H_UIDLE, H_MAXIDLE, H_MAXHB, H_MAXH,
	H_FWD, H_LOG, H_LOGFMT, H_N
};
static const struct keydef http_keys[H_N] = {
	[H_CLUSTERS] = KEY("clusters", NULL),
	[H_ROUTES] = KEY("routes", NULL),
	[H_HDR_TO] = KEY("header_timeout_ms", NULL),
	[H_RESP_TO] = KEY("response_timeout_ms", NULL),
	[H_CIDLE] = KEY("client_idle_timeout_ms", NULL),
	[H_UIDLE] = KEY("upstream_idle_timeout_ms", NULL),
	[H_MAXIDLE] = KEY("max_idle_upstream", NULL),
	[H_MAXHB] = KEY("max_header_bytes", NULL),
	[H_MAXH] = KEY("max_headers", NULL),
	[H_FWD] = KEY("forwarded", NULL),
	[H_LOG] = KEY("access_log", NULL),
	[H_LOGFMT] = KEY("access_log_format", NULL),
};

enum { HCL_NAME, HCL_TARGETS, HCL_BALANCE, HCL_N };
static const struct keydef cluster_keys[HCL_N] = {
	[HCL_NAME] = KEY("name", NULL),
	[HCL_TARGETS] = KEY("targets", NULL),
	[HCL_BALANCE] = KEY("balance", NULL),
};

enum { HR_HOST, HR_PATH, HR_CLUSTER, HR_N };
static const struct keydef route_keys[HR_N] = {
	[HR_HOST] = KEY("host", NULL),
	[HR_PATH] = KEY("path", NULL),
	[HR_CLUSTER] = KEY("cluster", NULL),
};

/* At most this many idle upstream connections pooled per target and worker. */
#define HTTP_MAX_IDLE_UPSTREAM	65536u

/* Gives app a its clusters array with room for 1 + extra clusters and
 * fills clusters[0], "default": the app-level targets (all the targets
 * parsed so far) under the app's policy. Returns false on ENOMEM. */
static bool set_default_cluster(struct vctx *c, struct cfg_app *a, uint32_t extra,
				struct cfg_mark mark)
{
	if (!c->default_name && !(c->default_name = cfg_pool_strndup(c->cfg, "default", 7)))
		goto oom;
	a->http.clusters = cfg_pool_alloc(c->cfg, (1 + (size_t)extra) * sizeof(*a->http.clusters));
	if (!a->http.clusters)
		goto oom;
	a->http.clusters[0] = (struct cfg_http_cluster){
		.name = c->default_name,
		.target_first = 0,
		.n_targets = (uint32_t)a->n_targets,
		.policy = a->policy,
		.mark = mark,
	};
	a->http.n_clusters = 1;
	return true;
oom:
	c->oom = true;
	return false;
}

/* A route's host: a host name, or "*." before one; NULL when fine, else why not. */
static const char *host_pattern_why(const char *s, size_t len)
{
	const char *h = s;
	size_t hl = len;
	if (len >= 2 && s[0] == '*' && s[1] == '.') {
		h += 2;
		hl -= 2;
	}
	if (memchr(h, '*', hl))
		return "the only wildcard is a leading \"*.\", like *.example.com";
	if (memchr(h, ':', hl) || memchr(h, '[', hl))
		return "a host is a name without a port (the port of the Host header is ignored; IPv6 literals are not supported)";
	if (hl && h[hl - 1] == '.')
		return "a host must not end with '.'";
	if (!hostname_ok(h, hl))
		return "malformed host name (letters, digits, '-', '_' and dots between labels)";
	return NULL;
}

/* A route's path prefix; NULL when fine, else why not. */
static const char *path_why(const char *s, size_t len)
{
	if (!len || s[0] != '/')
		return "a path must start with '/'";
	for (size_t k = 0; k < len; k++) {
		unsigned char ch = (unsigned char)s[k];
		if (ch <= 0x20 || ch >= 0x7f)
			return "a path must not contain spaces, control characters or non-ASCII bytes (percent-encode them as requests do)";
		if (ch == '?' || ch == '#')
			return "a path must not contain '?' or '#' (routes match the path, not the query)";
	}
	return NULL;
}

/* The cluster name at node i (a scalar); false, with an error, when refused. */
static bool cluster_name_ok(struct vctx *c, uint32_t i, const struct cfg_app *a, const char *an)
{
	char b[64];
	const char *s = S(c, i);
	size_t len = N(c, i)->len;
	if (len == 0) {
		verr(c, nmark(c, i), "app '%s': empty cluster name", an);
		return false;
	}
	if (len > CFG_MAX_NAME_LEN) {
		verr(c, nmark(c, i), "app '%s': cluster name '%s' is longer than %u bytes", an,
		     show(c, i, b, sizeof(b)), CFG_MAX_NAME_LEN);
		return false;
	}
	if (has_ctl(s, len)) {
		verr(c, nmark(c, i), "app '%s': cluster name '%s' contains control characters", an,
		     show(c, i, b, sizeof(b)));
		return false;
	}
	if (strcmp(s, "default") == 0) {
		verr(c, nmark(c, i),
		     "app '%s': the cluster name 'default' is reserved for the app's own targets", an);
		return false;
	}
	for (uint32_t k = 1; k < a->http.n_clusters; k++)
		if (strcmp(a->http.clusters[k].name, s) == 0) {
			verr(c, nmark(c, i),
			     "app '%s': duplicate cluster name '%s' (first defined at line %u column %u)",
			     an, show(c, i, b, sizeof(b)), a->http.clusters[k].mark.line,
			     a->http.clusters[k].mark.col);
			return false;
		}
	return true;
}

/* One item of http.clusters (room for it was made by parse_http). */
static void parse_cluster(struct vctx *c, uint32_t i, struct cfg_app *a, const char *an, bool room)
{
	char what[64 + CFG_MAX_NAME_LEN];
	uint32_t v[HCL_N];
	if (N(c, i)->type != Y_MAP) {
		verr(c, nmark(c, i), "app '%s': a cluster must be a mapping (name, targets, balance), not %s",
		     an, type_name(c, i));
		return;
	}
	snprintf(what, sizeof(what), "in a cluster of app '%s'", an);
	map_fields(c, i, cluster_keys, HCL_N, v, what);
	struct cfg_http_cluster cl = { .policy = a->policy, .mark = nmark(c, i) };
	bool ok = true;
	if (!v[HCL_NAME]) {
		verr(c, nmark(c, i), "app '%s': a cluster has no name", an);
		ok = false;
	} else if (!want_scalar(c, v[HCL_NAME], "cluster name")) {
		ok = false;
	} else if (!cluster_name_ok(c, v[HCL_NAME], a, an)) {
		ok = false;
	} else if (!(cl.name = cfg_pool_strndup(c->cfg, S(c, v[HCL_NAME]), N(c, v[HCL_NAME])->len))) {
		c->oom = true;
		return;
	}
	char nb[64];
	const char *cn = cl.name ? cl.name
		       : v[HCL_NAME] && N(c, v[HCL_NAME])->type == Y_SCALAR ? show(c, v[HCL_NAME], nb, sizeof(nb))
									: "?";
	if (v[HCL_BALANCE])
		parse_balance(c, v[HCL_BALANCE], "cluster balance", an, &cl.policy);
	uint32_t t = v[HCL_TARGETS];
	if (!t) {
		verr(c, nmark(c, i), "app '%s': cluster '%s' has no targets", an, cn);
	} else if (N(c, t)->type == Y_MAP) {
		verr(c, nmark(c, t), "app '%s': targets of cluster '%s' must be a list of host:port, not a mapping",
		     an, cn);
	} else if (n_items(c, t) == 0) {
		verr(c, nmark(c, t), "app '%s': cluster '%s' has no targets", an, cn);
	} else if (n_items(c, t) > CFG_MAX_TARGETS_PER_APP) {
		verr(c, nmark(c, t), "app '%s': cluster '%s' has %zu targets; at most %u are allowed", an,
		     cn, n_items(c, t), CFG_MAX_TARGETS_PER_APP);
	} else if (room) {
		cl.target_first = (uint32_t)a->n_targets;
		add_targets(c, t, a, an);
		cl.n_targets = (uint32_t)a->n_targets - cl.target_first;
	}
	if (ok)
		a->http.clusters[a->http.n_clusters++] = cl;
}

/* Duplicate routes: an open-addressing table of route index + 1 by host and path. */
static uint64_t route_hash(const struct cfg_http_route *r)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *s = r->host ? r->host : ""; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	h = (h ^ (r->host ? 1u : 2u)) * 1099511628211ull;
	for (const char *s = r->path; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* One item of http.routes: resolved into a->http.routes[a->http.n_routes]. */
static void parse_route(struct vctx *c, uint32_t i, struct cfg_app *a, const char *an,
			bool default_empty)
{
	char what[64 + CFG_MAX_NAME_LEN], b[64];
	uint32_t v[HR_N];
	if (N(c, i)->type != Y_MAP) {
		verr(c, nmark(c, i), "app '%s': a route must be a mapping (host, path, cluster), not %s", an,
		     type_name(c, i));
		return;
	}
	snprintf(what, sizeof(what), "in a route of app '%s'", an);
	map_fields(c, i, route_keys, HR_N, v, what);
	struct cfg_http_route r = { .mark = nmark(c, i) };
	bool known = true;	/* the route's cluster */
	const char *s, *why;
	if (v[HR_HOST] && !is_null(c, v[HR_HOST])) {
		if (!(s = want_scalar(c, v[HR_HOST], "route host"))) {
			/* reported */
		} else if ((why = host_pattern_why(s, N(c, v[HR_HOST])->len))) {
			verr(c, nmark(c, v[HR_HOST]), "app '%s': route host '%s': %s", an,
			     show(c, v[HR_HOST], b, sizeof(b)), why);
		} else if (!(r.host = cfg_pool_strndup(c->cfg, s, N(c, v[HR_HOST])->len))) {
			c->oom = true;
			return;
		} else {
			/* Host names compare without case: stored lower case */
			for (char *p = r.host; *p; p++)
				if (*p >= 'A' && *p <= 'Z')
					*p = (char)(*p - 'A' + 'a');
		}
	}
	if (v[HR_PATH]) {
		if (!(s = want_scalar(c, v[HR_PATH], "route path"))) {
			/* reported */
		} else if ((why = path_why(s, N(c, v[HR_PATH])->len))) {
			verr(c, nmark(c, v[HR_PATH]), "app '%s': route path '%s': %s", an,
			     show(c, v[HR_PATH], b, sizeof(b)), why);
		} else if (!(r.path = cfg_pool_strndup(c->cfg, s, N(c, v[HR_PATH])->len))) {
			c->oom = true;
			return;
		}
	} else if (!(r.path = cfg_pool_strndup(c->cfg, "/", 1))) {
		c->oom = true;
		return;
	}
	r.cluster = 0;
	if (v[HR_CLUSTER]) {
		if (!(s = want_scalar(c, v[HR_CLUSTER], "route cluster"))) {
			known = false;
		} else if (!key_is(s, N(c, v[HR_CLUSTER])->len, "default")) {
			uint32_t k = 1, len = N(c, v[HR_CLUSTER])->len;
			while (k < a->http.n_clusters && !key_is(s, len, a->http.clusters[k].name))
				k++;
			if (k == a->http.n_clusters) {
				verr(c, nmark(c, v[HR_CLUSTER]), "app '%s': route to unknown cluster '%s'", an,
				     show(c, v[HR_CLUSTER], b, sizeof(b)));
				known = false;
			}
			r.cluster = k;
		}
	}
	if (known && r.cluster == 0 && default_empty)
		verr(c, v[HR_CLUSTER] ? nmark(c, v[HR_CLUSTER]) : r.mark,
		     "app '%s': this route sends requests to the cluster 'default', the app's own 'targets', but the app has none",
		     an);
	/* kept when its match is valid, so duplicates are found whatever else is wrong */
	if (r.path && (r.host || !v[HR_HOST] || is_null(c, v[HR_HOST])))
		a->http.routes[a->http.n_routes++] = r;
}

/* Reports routes with the same host and path as an earlier one (the later
 * could never match). */
static void check_dup_routes(struct vctx *c, const struct cfg_app *a, const char *an)
{
	uint32_t n = a->http.n_routes;
	size_t cap = 16;
	if (n < 2)
		return;
	while (cap < (size_t)n * 2)
		cap *= 2;
	uint32_t *slot = calloc(cap, sizeof(*slot));
	if (!slot) {
		c->oom = true;
		return;
	}
	for (uint32_t k = 0; k < n && !c->full; k++) {
		const struct cfg_http_route *r = &a->http.routes[k];
		for (size_t h = (size_t)route_hash(r) & (cap - 1);; h = (h + 1) & (cap - 1)) {
			if (!slot[h]) {
				slot[h] = k + 1;
				break;
			}
			const struct cfg_http_route *o = &a->http.routes[slot[h] - 1];
			bool same_host = (!o->host && !r->host) ||
					 (o->host && r->host && strcmp(o->host, r->host) == 0);
			if (same_host && strcmp(o->path, r->path) == 0) {
				verr(c, r->mark,
				     "app '%s': duplicate route (host %s, path %s; first at line %u column %u): it could never match",
				     an, r->host ? r->host : "any", r->path, o->mark.line, o->mark.col);
				break;
			}
		}
	}
	free(slot);
}

/* The http section i of app a (protocol http). default_empty: the app has
 * no targets of its own (cluster "default" is empty); room: the clusters'
 * targets fit in a->targets. clusters[0] is set already; a->http.clusters
 * has room for every item of the clusters list. */
static void parse_http(struct vctx *c, uint32_t i, struct cfg_app *a, const char *an,
		       bool default_empty, bool room)
{
	char what[64 + CFG_MAX_NAME_LEN], b[64];
	uint32_t v[H_N];
	struct cfg_http *h = &a->http;
	if (N(c, i)->type != Y_MAP) {
		verr(c, nmark(c, i),
		     "app '%s': http must be a mapping (clusters, routes, timeouts, access_log, ...), not %s",
		     an, type_name(c, i));
		return;
	}
	snprintf(what, sizeof(what), "in http of app '%s'", an);
	map_fields(c, i, http_keys, H_N, v, what);

	uint32_t l = v[H_CLUSTERS];
	if (l && !is_null(c, l)) {
		if (N(c, l)->type != Y_SEQ) {
			verr(c, nmark(c, l), "app '%s': http clusters must be a list of mappings (name, targets, balance), not %s",
			     an, type_name(c, l));
		} else if (N(c, l)->len >= CFG_MAX_HTTP_CLUSTERS) {
			verr(c, nmark(c, l), "app '%s' has %u http clusters; at most %u are allowed (with 'default')",
			     an, N(c, l)->len, CFG_MAX_HTTP_CLUSTERS - 1);
		} else {
			uint32_t it = N(c, l)->first;
			for (uint32_t k = 0; k < N(c, l)->len && !c->full && !c->oom; k++, it = N(c, it)->next)
				parse_cluster(c, it, a, an, room);
		}
	}

	l = v[H_ROUTES];
	bool routes_written = false;
	if (l && !is_null(c, l)) {
		if (N(c, l)->type != Y_SEQ) {
			verr(c, nmark(c, l), "app '%s': http routes must be a list of mappings (host, path, cluster), not %s",
			     an, type_name(c, l));
			routes_written = true;
		} else if (N(c, l)->len > CFG_MAX_HTTP_ROUTES) {
			verr(c, nmark(c, l), "app '%s' has %u http routes; at most %u are allowed", an,
			     N(c, l)->len, CFG_MAX_HTTP_ROUTES);
			routes_written = true;
		} else if (N(c, l)->len) {
			routes_written = true;
			h->routes = cfg_pool_alloc(c->cfg, N(c, l)->len * sizeof(*h->routes));
			if (!h->routes) {
				c->oom = true;
				return;
			}
			uint32_t it = N(c, l)->first;
			for (uint32_t k = 0; k < N(c, l)->len && !c->full && !c->oom; k++, it = N(c, it)->next)
				parse_route(c, it, a, an, default_empty);
			check_dup_routes(c, a, an);
		}
	}
	if (!routes_written && default_empty && a->protocol == PROTO_HTTP)
		verr(c, nmark(c, l ? l : i),
		     "app '%s': without http routes every request goes to the app's own 'targets', but it has none (add routes to its clusters, or targets)",
		     an);

	if (v[H_HDR_TO])
		get_duration(c, v[H_HDR_TO], "http header_timeout_ms", 1, &h->header_timeout_ms);
	if (v[H_RESP_TO])
		get_duration(c, v[H_RESP_TO], "http response_timeout_ms", 1, &h->response_timeout_ms);
	if (v[H_CIDLE])
		get_duration(c, v[H_CIDLE], "http client_idle_timeout_ms", 1, &h->client_idle_ms);
	if (v[H_UIDLE])
		get_duration(c, v[H_UIDLE], "http upstream_idle_timeout_ms", 1, &h->upstream_idle_ms);
	if (v[H_MAXIDLE])
		get_uint(c, v[H_MAXIDLE], "http max_idle_upstream", 0, HTTP_MAX_IDLE_UPSTREAM,
			 &h->max_idle_upstream);
	if (v[H_MAXHB]) {
		const char *s = want_scalar(c, v[H_MAXHB], "http max_header_bytes"), *why = NULL;
		uint32_t sz = 0;
		if (s && cfg_parse_size(s, &sz, &why) == 0 &&
		    (sz < 1024 || sz > CFG_MAX_HTTP_HEADER_BYTES))
			why = "must be from 1024 (1k) to 1048576 (1m)";
		if (s && why)
			verr(c, nmark(c, v[H_MAXHB]), "app '%s': http max_header_bytes '%s': %s", an,
			     show(c, v[H_MAXHB], b, sizeof(b)), why);
		else if (s)
			h->max_header_bytes = sz;
	}
	if (v[H_MAXH])
		get_uint(c, v[H_MAXH], "http max_headers", 8, CFG_MAX_HTTP_HEADERS, &h->max_headers);
	if (v[H_FWD])
		get_bool(c, v[H_FWD], "http forwarded", &h->forwarded);

	bool log = false;
	if (v[H_LOG] && !is_null(c, v[H_LOG])) {
		const char *s = want_scalar(c, v[H_LOG], "http access_log");
		size_t len = s ? N(c, v[H_LOG])->len : 0;
		if (!s) {
			/* reported */
		} else if (has_ctl(s, len) || len == 0 || len > 4096 ||
			   (s[0] != '/' && strcmp(s, "-") != 0)) {
			verr(c, nmark(c, v[H_LOG]),
			     "app '%s': http access_log '%s' must be an absolute file path or \"-\" (standard output)",
			     an, show(c, v[H_LOG], b, sizeof(b)));
		} else if (!(h->access_log = cfg_pool_strndup(c->cfg, s, len))) {
			c->oom = true;
			return;
		} else {
			log = true;
			h->log_format = HTTP_LOG_COMBINED;
		}
	}
	if (v[H_LOGFMT]) {
		const char *s = want_scalar(c, v[H_LOGFMT], "http access_log_format");
		enum http_log_format f = HTTP_LOG_NONE;
		if (s && strcmp(s, "combined") == 0)
			f = HTTP_LOG_COMBINED;
		else if (s && strcmp(s, "json") == 0)
			f = HTTP_LOG_JSON;
		else if (s)
			verr(c, nmark(c, v[H_LOGFMT]),
			     "app '%s': http access_log_format '%s' is not one of combined, json", an,
			     show(c, v[H_LOGFMT], b, sizeof(b)));
		if (!v[H_LOG] || is_null(c, v[H_LOG]))
			verr(c, nmark(c, v[H_LOGFMT]),
			     "app '%s': http access_log_format needs an access_log (a file path or \"-\")", an);
		else if (log && f != HTTP_LOG_NONE)
			h->log_format = f;
	}
}

/* Name hash table for duplicate detection: open addressing over app indices. */
struct name_tab {
	uint32_t *slot;	/* app index + 1, 0 = empty */
	size_t mask;
};

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void parse_app(struct vctx *c, uint32_t i, struct cfg_app *a, size_t idx, size_t pos,
		      struct name_tab *names)
{
	uint32_t v[A_N];
	char an[CFG_MAX_NAME_LEN + 8], b[64];

	cfg_app_defaults(a);
	a->mark = nmark(c, i);
	/* "#pos" until the name is known (by hand: snprintf is slow in this loop) */
	{
		char digits[24];
		size_t nd = 0, o = 0;
		for (size_t p = pos; p || !nd; p /= 10)
			digits[nd++] = (char)('0' + p % 10);
		an[o++] = '#';
		while (nd)
			an[o++] = digits[--nd];
		an[o] = '\0';
	}
	map_fields(c, i, app_keys, A_N, v, "in an app");

	if (!v[A_NAME]) {
		verr(c, nmark(c, i), "app #%zu has no name", pos);
	} else if (N(c, v[A_NAME])->type != Y_SCALAR || is_null(c, v[A_NAME])) {
		verr(c, nmark(c, v[A_NAME]), "app #%zu: name must be a string, not %s", pos,
		     type_name(c, v[A_NAME]));
	} else {
		const char *s = S(c, v[A_NAME]);
		size_t len = N(c, v[A_NAME])->len;
		if (len == 0) {
			verr(c, nmark(c, v[A_NAME]), "app #%zu: empty name", pos);
		} else if (len > CFG_MAX_NAME_LEN) {
			verr(c, nmark(c, v[A_NAME]), "app name '%s' is longer than %u bytes",
			     show(c, v[A_NAME], b, sizeof(b)), CFG_MAX_NAME_LEN);
		} else if (has_ctl(s, len)) {
			verr(c, nmark(c, v[A_NAME]), "app name '%s' contains control characters",
			     show(c, v[A_NAME], b, sizeof(b)));
		} else if (!(a->name = cfg_pool_strndup(c->cfg, s, len))) {
			c->oom = true;
			return;
		} else {
			memcpy(an, s, len + 1);
			size_t h = (size_t)name_hash(s) & names->mask;
			for (;; h = (h + 1) & names->mask) {
				uint32_t o = names->slot[h];
				if (!o) {
					names->slot[h] = (uint32_t)idx + 1;
					break;
				}
				const struct cfg_app *prev = &c->cfg->apps[o - 1];
				if (strcmp(prev->name, s) == 0) {
					verr(c, nmark(c, v[A_NAME]),
					     "duplicate app name '%s' (first defined at line %u column %u)",
					     s, prev->mark.line, prev->mark.col);
					break;
				}
			}
		}
	}

	c->app = an;	/* for messages of the value helpers */
	if (!v[A_PORTS]) {
		verr(c, nmark(c, i), "app '%s' has no ports", an);
	} else {
		parse_ports(c, v[A_PORTS], a, an);
		if (n_items(c, v[A_PORTS]) == 0 && N(c, v[A_PORTS])->type != Y_MAP)
			verr(c, nmark(c, v[A_PORTS]), "app '%s' has no ports", an);
	}
	if (v[A_ADDRS])
		parse_addrs(c, v[A_ADDRS], a, an);
	if (v[A_PROTO]) {
		const char *s = want_scalar(c, v[A_PROTO], "protocol");
		if (s && cfg_protocol_parse(s, &a->protocol) < 0) {
			verr(c, nmark(c, v[A_PROTO]), "app '%s': protocol '%s' is not one of tcp, foo, http",
			     an, show(c, v[A_PROTO], b, sizeof(b)));
		}
	}
	bool http = a->protocol == PROTO_HTTP;

	/* The targets array holds the app's own targets, then those of each
	 * http cluster: sized once for all of them. */
	uint32_t t = v[A_TARGETS];
	size_t n_own = 0, n_cl = 0;
	bool own = false, room = true;
	if (t && N(c, t)->type == Y_MAP) {
		verr(c, nmark(c, t), "app '%s': targets must be a list of host:port, not a mapping", an);
	} else if (t && (n_own = n_items(c, t)) > CFG_MAX_TARGETS_PER_APP) {
		verr(c, nmark(c, t), "app '%s' has %zu targets; at most %u are allowed", an, n_own,
		     CFG_MAX_TARGETS_PER_APP);
		n_own = 0;
	} else if (t) {
		own = n_own > 0;
	}
	if (v[A_HTTP] && (n_cl = http_count_targets(c, v[A_HTTP])) &&
	    n_own + n_cl > CFG_MAX_TARGETS_PER_APP) {
		verr(c, nmark(c, v[A_HTTP]),
		     "app '%s' has %zu targets with those of its http clusters; at most %u are allowed",
		     an, n_own + n_cl, CFG_MAX_TARGETS_PER_APP);
		n_cl = 0;
		room = false;
	}
	if (n_own + n_cl) {
		a->targets = cfg_pool_alloc(c->cfg, (n_own + n_cl) * sizeof(*a->targets));
		if (!a->targets) {
			c->oom = true;
			return;
		}
		memset(a->targets, 0, (n_own + n_cl) * sizeof(*a->targets));
	}
	if (own)
		add_targets(c, t, a, an);
	if (http) {
		/* the app's own targets are optional when clusters have some */
		if (!n_own && !n_cl && room && (!t || N(c, t)->type != Y_MAP))
			verr(c, t ? nmark(c, t) : nmark(c, i),
			     "app '%s' has no targets (neither 'targets' nor http clusters with targets)",
			     an);
	} else if (!t) {
		verr(c, nmark(c, i), "app '%s' has no targets", an);
	} else if (n_items(c, t) == 0 && N(c, t)->type != Y_MAP) {
		verr(c, nmark(c, t), "app '%s' has no targets", an);
	}

	if (v[A_BALANCE])
		parse_balance(c, v[A_BALANCE], "balance", an, &a->policy);

	/* an http app has cluster "default" (its own targets) and may add
	 * more; other apps carry no clusters (an http section there is an
	 * error, still read through for its messages) */
	if (http || v[A_HTTP]) {
		uint32_t cl = v[A_HTTP] ? find_key(c, v[A_HTTP], "clusters") : 0;
		uint32_t extra = cl && N(c, cl)->type == Y_SEQ && N(c, cl)->len < CFG_MAX_HTTP_CLUSTERS
					 ? N(c, cl)->len : 0;
		if (!set_default_cluster(c, a, extra, t ? nmark(c, t) : nmark(c, i)))
			return;
	}
	if (v[A_HTTP]) {
		if (!http)
			verr(c, nmark(c, v[A_HTTP]), "app '%s': http settings need 'protocol: http'", an);
		/* an app without any target is reported once, above */
		if (!is_null(c, v[A_HTTP]))
			parse_http(c, v[A_HTTP], a, an, !own && (n_cl || !room), room);
	}
	if (v[A_CTIMEOUT]) {
		get_duration(c, v[A_CTIMEOUT], "connect_timeout", 1, &a->connect_timeout_ms);
	}
	if (v[A_ITIMEOUT]) {
		get_duration(c, v[A_ITIMEOUT], "idle_timeout", 0, &a->idle_timeout_ms);
	}
	if (v[A_ATTEMPTS]) {
		get_uint(c, v[A_ATTEMPTS], "connect_attempts", 1, 100, &a->connect_attempts);
	}
	if (v[A_MAXCONN]) {
		get_uint(c, v[A_MAXCONN], "max_connections", 0, UINT32_MAX, &a->max_connections);
	}
	if (v[A_KEEPALIVE])
		parse_keepalive(c, v[A_KEEPALIVE], a, an);
	if (v[A_FOO]) {
		parse_foo(c, v[A_FOO], a, an);
		if (a->protocol != PROTO_FOO)
			verr(c, nmark(c, v[A_FOO]), "app '%s': foo settings need 'protocol: foo'", an);
	}
	if (v[A_HEALTH]) {
		get_bool(c, v[A_HEALTH], "health_check", &a->health_check);
	}
	if (v[A_KSPLICE])
		parse_kernel_splice(c, v[A_KSPLICE], a, an);
	if (v[A_LSHORT])
		parse_local_shortcut(c, v[A_LSHORT], a, an);
	c->app = NULL;
	cfg_app_normalize(a);
}

/* --- port conflicts -------------------------------------------------------------- */

/* Two apps may share a port only when both are restricted to address
 * prefixes and no prefix of one overlaps a prefix of the other. The check
 * sweeps the port space once: every range adds its app to the active set
 * at lo and removes it after hi, and only where apps are added is the
 * active set examined. Configs without sharing cost O(ranges + 65536). */

typedef unsigned __int128 u128;

struct ivl {
	u128 lo, hi;
	uint32_t app, pfx;
};

static u128 addr_u128(const uint8_t a[16])
{
	u128 v = 0;
	for (int k = 0; k < 16; k++)
		v = (v << 8) | a[k];
	return v;
}

static int cmp_ivl(const void *x, const void *y)
{
	const struct ivl *a = x, *b = y;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	return a->hi > b->hi ? -1 : a->hi < b->hi;
}

struct sweep {
	struct vctx *c;
	const struct cfg *cfg;
	uint64_t *reported;	/* app pairs already reported */
	size_t n_reported;
	struct ivl *iv;
	size_t iv_cap;
};

static const struct cfg_port_range *range_of(const struct cfg_app *a, uint32_t port)
{
	for (size_t r = 0; r < a->n_ports; r++)
		if (a->ports[r].lo <= port && port <= a->ports[r].hi)
			return &a->ports[r];
	return &a->ports[0];
}

static void fmt_prefix(const struct cfg_prefix *p, char *buf, size_t len)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	char a[INET6_ADDRSTRLEN];
	if (memcmp(p->addr, mapped, 12) == 0 && p->plen >= 96) {
		inet_ntop(AF_INET, p->addr + 12, a, sizeof(a));
		snprintf(buf, len, "%s/%u", a, p->plen - 96u);
	} else {
		inet_ntop(AF_INET6, p->addr, a, sizeof(a));
		snprintf(buf, len, "%s/%u", a, p->plen);
	}
}

/* "'web'" or, for an app whose name was refused, "at line 12". */
static void app_label(const struct cfg_app *a, char *buf, size_t len)
{
	if (a->name)
		snprintf(buf, len, "'%s'", a->name);
	else
		snprintf(buf, len, "at line %u", a->mark.line);
}

/* Reports apps x and y sharing port (once per pair); pfx indices or UINT32_MAX. */
static void conflict(struct sweep *sw, uint32_t x, uint32_t y, uint32_t port, uint32_t px,
		     uint32_t py)
{
	if (x > y) {
		uint32_t t = x;
		x = y;
		y = t;
		t = px;
		px = py;
		py = t;
	}
	uint64_t key = ((uint64_t)x << 32) | y;
	for (size_t k = 0; k < sw->n_reported; k++)
		if (sw->reported[k] == key)
			return;
	if (sw->n_reported < CFG_MAX_ERRORS + 1)
		sw->reported[sw->n_reported++] = key;
	const struct cfg_app *a = &sw->cfg->apps[x], *b = &sw->cfg->apps[y];
	char an[CFG_MAX_NAME_LEN + 32], bn[CFG_MAX_NAME_LEN + 32];
	app_label(a, an, sizeof(an));
	app_label(b, bn, sizeof(bn));
	if (px == UINT32_MAX) {
		struct cfg_mark m = range_of(b, port)->mark;
		verr(sw->c, m,
		     "port %u of app %s is also used by app %s (line %u column %u); two apps can share a port only when both have non-overlapping address prefixes",
		     port, bn, an, a->mark.line, a->mark.col);
	} else {
		char pa[64], pb[64];
		fmt_prefix(&a->prefixes[px], pa, sizeof(pa));
		fmt_prefix(&b->prefixes[py], pb, sizeof(pb));
		verr(sw->c, b->prefixes[py].mark,
		     "port %u: address %s of app %s overlaps address %s of app %s (line %u column %u)",
		     port, pb, bn, pa, an, a->mark.line, a->mark.col);
	}
}

/* Examines the active set after apps in added[] joined it at port. */
static int check_active(struct sweep *sw, const uint32_t *active, size_t n_active,
			const uint32_t *added, size_t n_added, uint32_t port)
{
	const struct cfg *cfg = sw->cfg;
	bool any_plain = false;
	for (size_t k = 0; k < n_active; k++)
		if (!cfg->apps[active[k]].n_prefixes)
			any_plain = true;
	if (any_plain) {
		for (size_t a = 0; a < n_added && !sw->c->full; a++) {
			uint32_t x = added[a];
			for (size_t k = 0; k < n_active && !sw->c->full; k++) {
				uint32_t y = active[k];
				if (y != x && (!cfg->apps[x].n_prefixes || !cfg->apps[y].n_prefixes))
					conflict(sw, x, y, port, UINT32_MAX, UINT32_MAX);
			}
		}
	}
	/* prefixed apps among themselves: sort intervals, sweep keeping the two
	 * furthest-reaching intervals of distinct apps */
	size_t n = 0, new_pfx = 0;
	for (size_t a = 0; a < n_added; a++)
		if (cfg->apps[added[a]].n_prefixes)
			new_pfx++;
	if (!new_pfx)
		return 0;
	for (size_t k = 0; k < n_active; k++)
		n += cfg->apps[active[k]].n_prefixes;
	if (n > sw->iv_cap) {
		struct ivl *iv = realloc(sw->iv, n * sizeof(*iv));
		if (!iv)
			return -ENOMEM;
		sw->iv = iv;
		sw->iv_cap = n;
	}
	n = 0;
	for (size_t k = 0; k < n_active; k++) {
		const struct cfg_app *a = &cfg->apps[active[k]];
		for (size_t p = 0; p < a->n_prefixes; p++) {
			u128 lo = addr_u128(a->prefixes[p].addr);
			u128 span = a->prefixes[p].plen ? ((u128)1 << (128 - a->prefixes[p].plen)) - 1
							: ~(u128)0;
			sw->iv[n++] = (struct ivl){ lo, lo | span, active[k], (uint32_t)p };
		}
	}
	qsort(sw->iv, n, sizeof(*sw->iv), cmp_ivl);
	const struct ivl *top1 = NULL, *top2 = NULL;	/* top2: best of another app */
	for (size_t k = 0; k < n && !sw->c->full; k++) {
		const struct ivl *v = &sw->iv[k];
		if (top1 && v->app != top1->app && v->lo <= top1->hi)
			conflict(sw, top1->app, v->app, port, top1->pfx, v->pfx);
		else if (top2 && v->app == top1->app && v->lo <= top2->hi)
			conflict(sw, top2->app, v->app, port, top2->pfx, v->pfx);
		if (!top1 || v->hi > top1->hi) {
			if (top1 && top1->app != v->app)
				top2 = top1;
			top1 = v;
		} else if (v->app != top1->app && (!top2 || v->hi > top2->hi)) {
			top2 = v;
		}
	}
	return 0;
}

static int check_ports(struct vctx *c, const struct cfg *cfg)
{
	/* events bucketed by port (counting sort): adds at lo, removes at hi+1 */
	uint32_t *start = calloc(65538, sizeof(*start));
	uint32_t *pos = malloc((cfg->n_apps ? cfg->n_apps : 1) * sizeof(*pos));
	uint32_t *active = malloc((cfg->n_apps ? cfg->n_apps : 1) * sizeof(*active));
	uint32_t *added = malloc((cfg->n_apps ? cfg->n_apps : 1) * sizeof(*added));
	uint32_t *ev = NULL;
	struct sweep sw = { .c = c, .cfg = cfg };
	sw.reported = malloc((CFG_MAX_ERRORS + 1) * sizeof(*sw.reported));
	size_t n_ev = 0, n_active = 0;
	int ret = -ENOMEM;
	if (!start || !pos || !active || !added || !sw.reported)
		goto out;
	for (size_t i = 0; i < cfg->n_apps; i++)
		for (size_t r = 0; r < cfg->apps[i].n_ports; r++) {
			start[cfg->apps[i].ports[r].lo + 1]++;
			start[cfg->apps[i].ports[r].hi + 2]++;
			n_ev += 2;
		}
	for (size_t p = 1; p < 65538; p++)
		start[p] += start[p - 1];
	ev = malloc((n_ev ? n_ev : 1) * sizeof(*ev));
	if (!ev)
		goto out;
	/* fill: an event is app index << 1 | is_add */
	{
		uint32_t *fill = calloc(65537, sizeof(*fill));
		if (!fill)
			goto out;
		for (size_t i = 0; i < cfg->n_apps; i++)
			for (size_t r = 0; r < cfg->apps[i].n_ports; r++) {
				uint32_t lo = cfg->apps[i].ports[r].lo, end = cfg->apps[i].ports[r].hi + 1u;
				ev[start[lo] + fill[lo]++] = (uint32_t)i << 1 | 1;
				ev[start[end] + fill[end]++] = (uint32_t)i << 1;
			}
		free(fill);
	}
	ret = 0;
	for (uint32_t p = 1; p < 65536 && !c->full; p++) {
		uint32_t b = start[p], e = start[p + 1];
		if (b == e)
			continue;
		size_t n_added = 0;
		/* ranges of one app are merged and disjoint, so an app is in the
		 * active set at most once; removals first (a range ending at p-1) */
		for (uint32_t k = b; k < e; k++) {
			if (ev[k] & 1)
				continue;
			uint32_t app = ev[k] >> 1, at = pos[app];
			active[at] = active[--n_active];
			pos[active[at]] = at;
		}
		for (uint32_t k = b; k < e; k++) {
			if (!(ev[k] & 1))
				continue;
			uint32_t app = ev[k] >> 1;
			pos[app] = (uint32_t)n_active;
			active[n_active++] = app;
			added[n_added++] = app;
		}
		if (n_added && n_active > 1 &&
		    (ret = check_active(&sw, active, n_active, added, n_added, p)))
			break;
	}
out:
	if (ret == -ENOMEM)
		c->oom = true;
	free(start);
	free(pos);
	free(active);
	free(added);
	free(ev);
	free(sw.reported);
	free(sw.iv);
	return ret;
}

/* --- targets steered back into pandit ----------------------------------------- */

/* The local addresses a target stands for, as far as can be told without
 * DNS or looking at this machine's interfaces: loopback literals (127/8,
 * ::1), the unspecified address (connects locally) and localhost. Returns
 * how many were written to out; 0 for anything else. */
static int target_local_addrs(const char *host, uint8_t out[2][16])
{
	static const uint8_t lo4[16] = { [10] = 0xff, [11] = 0xff, [12] = 127, [15] = 1 };
	uint8_t a4[4];
	struct in6_addr a6;
	if (strcmp(host, "localhost") == 0) {
		memcpy(out[0], lo4, 16);
		memcpy(out[1], &in6addr_loopback, 16);
		return 2;
	}
	if (ipv4_parse(host, strlen(host), a4)) {
		if (a4[0] != 127 && (a4[0] | a4[1] | a4[2] | a4[3]) != 0)
			return 0;
		memcpy(out[0], lo4, 12);
		memcpy(out[0] + 12, a4, 4);
		return 1;
	}
	if (inet_pton(AF_INET6, host, &a6) == 1 &&
	    (IN6_IS_ADDR_LOOPBACK(&a6) || IN6_IS_ADDR_UNSPECIFIED(&a6))) {
		memcpy(out[0], &a6, 16);
		return 1;
	}
	return 0;
}

static bool prefix_has(const struct cfg_prefix *p, const uint8_t addr[16])
{
	uint8_t full = p->plen / 8, rest = p->plen % 8;
	if (memcmp(addr, p->addr, full) != 0)
		return false;
	return !rest || ((addr[full] ^ p->addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static bool app_has_port(const struct cfg_app *a, uint16_t port)
{
	for (size_t r = 0; r < a->n_ports; r++)
		if (port >= a->ports[r].lo && port <= a->ports[r].hi)
			return true;
	return false;
}

/* A target that is itself a steered address:port would hand pandit's own
 * upstream connection back to pandit, again and again: refuse it. sk_lookup
 * runs only for connections to this host, so only local targets can loop;
 * of those, loopback ones are known here (an interface address is not). */
static int check_loops(struct vctx *c, const struct cfg *cfg)
{
	uint32_t *any = calloc(65536, sizeof(*any));	/* app index + 1 steering the port everywhere */
	size_t *pre = malloc((cfg->n_apps ? cfg->n_apps : 1) * sizeof(*pre));
	uint8_t *pre_port = calloc(65536 / 8, 1);	/* ports of apps in pre */
	size_t n_pre = 0;
	if (!any || !pre || !pre_port) {
		free(any);
		free(pre);
		free(pre_port);
		c->oom = true;
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_apps; i++) {
		const struct cfg_app *a = &cfg->apps[i];
		if (a->n_prefixes) {
			pre[n_pre++] = i;
			for (size_t r = 0; r < a->n_ports; r++)
				for (uint32_t p = a->ports[r].lo; p <= a->ports[r].hi; p++)
					pre_port[p / 8] |= (uint8_t)(1u << (p % 8));
			continue;
		}
		for (size_t r = 0; r < a->n_ports; r++)
			for (uint32_t p = a->ports[r].lo; p <= a->ports[r].hi; p++)
				any[p] = (uint32_t)i + 1;
	}
	for (size_t i = 0; i < cfg->n_apps && !c->full; i++) {
		const struct cfg_app *a = &cfg->apps[i];
		for (size_t t = 0; t < a->n_targets; t++) {
			uint8_t addrs[2][16];
			uint16_t port = a->targets[t].port;
			/* a port nothing steers cannot loop: skip reading the host */
			if (!any[port] && !(pre_port[port / 8] & (1u << (port % 8))))
				continue;
			int na = target_local_addrs(a->targets[t].host, addrs);
			const struct cfg_app *owner = na && any[port] ? &cfg->apps[any[port] - 1] : NULL;
			for (size_t k = 0; na && !owner && k < n_pre; k++) {
				const struct cfg_app *b = &cfg->apps[pre[k]];
				if (!app_has_port(b, port))
					continue;
				for (size_t x = 0; x < b->n_prefixes && !owner; x++)
					for (int y = 0; y < na && !owner; y++)
						if (prefix_has(&b->prefixes[x], addrs[y]))
							owner = b;
			}
			if (owner) {
				char tb[300];
				cfg_target_format(&a->targets[t], tb, sizeof(tb));
				verr(c, a->targets[t].mark,
				     "target '%s' of app '%s' is itself steered to pandit by app '%s': its connections would loop back into pandit",
				     tb, a->name, owner->name);
			}
		}
	}
	free(any);
	free(pre);
	free(pre_port);
	return 0;
}

/* --- top level --------------------------------------------------------------- */

enum {
	G_ADMIN, G_USER, G_WORKERS, G_BUFSIZE, G_SPLICE, G_LOGLEVEL, G_RESOLVE, G_HEALTH, G_SCGROUP, G_SBACKLOG,
	G_APPS, G_N
};
static const struct keydef top_keys[G_N] = {
	[G_ADMIN] = KEY("admin", NULL),
	[G_USER] = KEY("user", NULL),
	[G_WORKERS] = KEY("workers", NULL),
	[G_BUFSIZE] = KEY("buffer_size", NULL),
	[G_SPLICE] = KEY("splice", NULL),
	[G_LOGLEVEL] = KEY("log_level", NULL),
	[G_RESOLVE] = KEY("resolve_interval", NULL),
	[G_HEALTH] = KEY("health_check", NULL),
	[G_SCGROUP] = KEY("shortcut_cgroup", NULL),
	[G_SBACKLOG] = KEY("shortcut_backlog", NULL),
	[G_APPS] = KEY("apps", "Apps"),
};

struct err_pos {
	unsigned long line, col;
	size_t idx;
	char *msg;
};

static int cmp_err(const void *x, const void *y)
{
	const struct err_pos *a = x, *b = y;
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	if (a->col != b->col)
		return a->col < b->col ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Puts the messages added since first in file order (they are found in
 * processing order: globals, apps, then port conflicts). */
static void sort_errors(struct vctx *c, size_t first)
{
	struct cfg_errors *e = c->errs;
	size_t n = e->n - first, skip = strlen(c->file) + 1;
	struct err_pos *ep = n > 1 ? malloc(n * sizeof(*ep)) : NULL;
	if (ep) {
		for (size_t k = 0; k < n; k++) {
			char *m = e->msgs[first + k], *end;
			ep[k] = (struct err_pos){ 0, 0, k, m };
			if (strlen(m) > skip) {
				ep[k].line = strtoul(m + skip, &end, 10);
				if (*end == ':')
					ep[k].col = strtoul(end + 1, NULL, 10);
			}
		}
		qsort(ep, n, sizeof(*ep), cmp_err);
		for (size_t k = 0; k < n; k++)
			e->msgs[first + k] = ep[k].msg;
		free(ep);
	}
	if (c->full)
		cfg_errors_add(e, c->file, (struct cfg_mark){ 0, 0 },
			       "too many errors (more than %u), stopped looking", CFG_MAX_ERRORS);
}

static int from_tree(struct vctx *c);

int cfg_from_tree(const struct ytree *t, const char *file, struct cfg *cfg, struct cfg_errors *errs)
{
	struct vctx c = { .t = t, .file = file, .errs = errs, .cfg = cfg };
	size_t first = errs->n;
	int r = from_tree(&c);
	sort_errors(&c, first);
	return r;
}

static int from_tree(struct vctx *c)
{
	const struct ytree *t = c->t;
	struct cfg *cfg = c->cfg;
	uint32_t v[G_N];

	if (cfg_set_defaults(cfg))
		return -ENOMEM;
	if (t->n == 0) {
		verr(c, (struct cfg_mark){ 1, 1 },
		     "empty config: expected a mapping with an 'apps' list");
		return -EINVAL;
	}
	if (N(c, 0)->type != Y_MAP) {
		verr(c, nmark(c, 0), "the top level must be a mapping with an 'apps' list, not %s",
		     type_name(c, 0));
		return -EINVAL;
	}
	map_fields(c, 0, top_keys, G_N, v, "at the top level");

	if (v[G_ADMIN])
		parse_admin(c, v[G_ADMIN]);
	if (v[G_USER])
		parse_user(c, v[G_USER]);
	if (v[G_WORKERS])
		get_uint(c, v[G_WORKERS], "workers", 0, 1024, &cfg->workers);
	if (v[G_BUFSIZE]) {
		const char *s = want_scalar(c, v[G_BUFSIZE], "buffer_size"), *why = NULL;
		uint32_t sz;
		if (s && cfg_parse_size(s, &sz, &why) == 0 && (sz < 1024 || sz > (64u << 20)))
			why = "buffer_size must be from 1k to 64m";
		if (s && why) {
			char b[64];
			verr(c, nmark(c, v[G_BUFSIZE]), "buffer_size '%s': %s",
			     show(c, v[G_BUFSIZE], b, sizeof(b)), why);
		} else if (s) {
			cfg->buffer_size = sz;
		}
	}
	if (v[G_SPLICE])
		get_bool(c, v[G_SPLICE], "splice", &cfg->splice);
	if (v[G_LOGLEVEL]) {
		const char *s = want_scalar(c, v[G_LOGLEVEL], "log_level");
		if (s && log_level_parse(s, &cfg->log_level)) {
			char b[64];
			verr(c, nmark(c, v[G_LOGLEVEL]),
			     "log_level '%s' is not one of error, warn, info, debug",
			     show(c, v[G_LOGLEVEL], b, sizeof(b)));
		}
	}
	if (v[G_RESOLVE])
		get_duration(c, v[G_RESOLVE], "resolve_interval", 1, &cfg->resolve_interval_ms);
	if (v[G_HEALTH])
		parse_health(c, v[G_HEALTH]);
	if (v[G_SCGROUP])
		parse_shortcut_cgroup(c, v[G_SCGROUP]);
	if (v[G_SBACKLOG]) {
		const char *s = want_scalar(c, v[G_SBACKLOG], "shortcut_backlog"), *why = NULL;
		uint32_t sz;
		if (s && cfg_parse_size(s, &sz, &why) == 0 && (sz < 64 * 1024 || sz > (1u << 30)))
			why = "shortcut_backlog must be from 64k to 1024m";
		if (s && why) {
			char b[64];
			verr(c, nmark(c, v[G_SBACKLOG]), "shortcut_backlog '%s': %s",
			     show(c, v[G_SBACKLOG], b, sizeof(b)), why);
		} else if (s) {
			cfg->shortcut_backlog = sz;
		}
	}

	if (!v[G_APPS]) {
		verr(c, nmark(c, 0), "no 'apps' list in the config");
	} else if (is_null(c, v[G_APPS])) {
		/* "apps:" with nothing: a config that proxies nothing */
	} else if (N(c, v[G_APPS])->type != Y_SEQ) {
		verr(c, nmark(c, v[G_APPS]), "apps must be a list, not %s", type_name(c, v[G_APPS]));
	} else if (N(c, v[G_APPS])->len > CFG_MAX_APPS) {
		verr(c, nmark(c, v[G_APPS]), "%u apps; at most %u are allowed",
		     N(c, v[G_APPS])->len, CFG_MAX_APPS);
	} else if (N(c, v[G_APPS])->len) {
		size_t n = N(c, v[G_APPS])->len, cap = 16;
		while (cap < n * 2)
			cap *= 2;
		struct name_tab names = { calloc(cap, sizeof(uint32_t)), cap - 1 };
		/* each app is initialised by parse_app (cfg_app_defaults) */
		cfg->apps = malloc(n * sizeof(*cfg->apps));
		if (!cfg->apps || !names.slot) {
			free(names.slot);
			return -ENOMEM;
		}
		uint32_t it = N(c, v[G_APPS])->first;
		for (size_t k = 0; k < n && !c->full && !c->oom; k++, it = N(c, it)->next) {
			if (N(c, it)->type != Y_MAP) {
				verr(c, nmark(c, it),
				     "app #%zu must be a mapping (name, ports, targets, ...), not %s", k + 1,
				     type_name(c, it));
				continue;
			}
			parse_app(c, it, &cfg->apps[cfg->n_apps], cfg->n_apps, k + 1, &names);
			cfg->n_apps++;
		}
		free(names.slot);
		if (!c->oom && !c->full)
			check_ports(c, cfg);
		if (!c->oom && !c->full)
			check_loops(c, cfg);
	}
	if (c->oom)
		return -ENOMEM;
	if (c->n_err)
		return -EINVAL;
	cfg->names_unique = true;	/* duplicates are errors */
	return 0;
}
