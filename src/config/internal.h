/* internal.h - private interface of the config loader: the parsed document tree and shared value parsers. */
#ifndef PANDIT_CONFIG_INTERNAL_H
#define PANDIT_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Bigger files are refused before parsing so memory stays bounded. */
#define CFG_MAX_FILE_SIZE	(64u << 20)
/* Deeper nesting than any valid config needs is refused (the tree builder
 * and the validator walk it, and a bound keeps both cheap). */
#define CFG_MAX_DEPTH		32u
/* Values (scalars, lists, mappings) in one file: bounds the tree at
 * 128 MiB whatever the file holds (100,000 apps need about 2 million). */
#define CFG_MAX_NODES		(4u << 20)
/* After this many messages the loader stops collecting (one more says so). */
#define CFG_MAX_ERRORS		200u

enum ynode_type { Y_SCALAR = 1, Y_MAP, Y_SEQ };

/* One node of a parsed document. Nodes live in one array and refer to each
 * other by index; index 0 is the root, so 0 also means "none" for links.
 * A mapping's children alternate key, value, key, value. */
struct ynode {
	uint8_t type;		/* enum ynode_type */
	uint8_t plain;		/* scalar written without quotes (may be a number, bool, null) */
	uint32_t line, col;	/* 1-based */
	uint32_t len;		/* scalar: bytes; map/seq: number of children */
	uint32_t first;		/* scalar: offset into strs; map/seq: first child */
	uint32_t last;		/* map/seq: last child (while building) */
	uint32_t next;		/* next sibling */
};

struct ytree {
	struct ynode *nodes;
	size_t n, cap;
	char *strs;		/* every scalar, NUL-terminated */
	size_t slen, scap;
};

/* Parses buf (YAML, or JSON which YAML contains) into t. Plain JSON and
 * everyday block YAML go through fast exact readers; anything they are not
 * sure about is parsed by libyaml. Returns 0, or -EINVAL with errors added to errs, or
 * -ENOMEM. Anchors, aliases, tags and several documents are refused. */
int ytree_parse(struct ytree *t, const char *file, const char *buf, size_t len,
		struct cfg_errors *errs);
/* The readers, exposed for the fuzzer's differential check. The fast ones
 * return 1 when they do not handle the input, -E2BIG past CFG_MAX_NODES,
 * -ENOMEM (t is then empty). */
int ytree_parse_yaml(struct ytree *t, const char *file, const char *buf, size_t len,
		     struct cfg_errors *errs);
int ytree_parse_json(struct ytree *t, const char *buf, size_t len);
/* The fast reader for a strict subset of block YAML; 1 when it does not
 * handle the input. */
int ytree_parse_block(struct ytree *t, const char *buf, size_t len);
void ytree_free(struct ytree *t);

static inline const char *ytree_str(const struct ytree *t, const struct ynode *n)
{
	return t->strs + n->first;
}

/* Value parsers shared by the validator and quick mode. Each returns 0 or
 * -EINVAL with a static description of the problem in *why. */
int cfg_parse_port_range(const char *s, size_t len, uint16_t *lo, uint16_t *hi, const char **why);
int cfg_parse_prefix(const char *s, uint8_t addr[16], uint8_t *plen, const char **why);
/* "host:port" / "[v6]:port"; *host is malloc'ed (caller frees). */
int cfg_parse_hostport(const char *s, char **host, uint16_t *port, const char **why);
/* "250ms", "2s", "1m", "1h", "1m30s" or plain digits (milliseconds). */
int cfg_parse_duration(const char *s, uint32_t *ms, const char **why);
/* "65536", "64k", "1m" (powers of 1024). */
int cfg_parse_size(const char *s, uint32_t *bytes, const char **why);

/* Memory of a cfg's apps (see struct cfg): 8-byte aligned, uninitialised;
 * NULL on ENOMEM. Lives until cfg_free. */
void *cfg_pool_alloc(struct cfg *cfg, size_t size);
char *cfg_pool_strndup(struct cfg *cfg, const char *s, size_t len);

/* Validates a parsed tree into a config. Returns 0 or -EINVAL / -ENOMEM. */
int cfg_from_tree(const struct ytree *t, const char *file, struct cfg *cfg, struct cfg_errors *errs);

/* Sorts and merges an app's port ranges and sorts/dedups its prefixes. */
void cfg_app_normalize(struct cfg_app *a);

/* Fills every global with its default. */
int cfg_set_defaults(struct cfg *cfg);
void cfg_app_defaults(struct cfg_app *a);

#endif
