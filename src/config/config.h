/* config.h - the configuration model: what a parsed and validated config file holds. */
#ifndef PANDIT_CONFIG_H
#define PANDIT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/log.h"

/* Position of a node in the source file, 1-based; 0 means "no position". */
struct cfg_mark {
	uint32_t line;
	uint32_t col;
};

/* The model's enums are packed (one byte each), and struct cfg_app has
 * what a reload compares for every app in its first 96 bytes and the http
 * settings last (176 bytes in all): a reload of 10,000 apps writes the new
 * apps array and reads both arrays whole. */

/* LB_LEAST_CONN: fewest open connections; for http apps, fewest requests
 * in flight (written least_request in configs, least_conn accepted too). */
enum __attribute__((packed)) lb_policy { LB_ROUND_ROBIN = 0, LB_RANDOM, LB_LEAST_CONN };

/* What an app's connections carry: plain bytes, or a protocol pandit parses. */
enum __attribute__((packed)) app_protocol { PROTO_TCP = 0, PROTO_FOO, PROTO_HTTP };

/* The Foo line protocol (REQ/ACK/NAK): how a connection that breaks it is
 * treated. strict: closed and counted; lenient: relayed on, no longer
 * counted, counted as non-compliant. */
struct cfg_foo {
	bool strict;
	uint32_t max_line;	/* bytes before '\n'; a longer line breaks the protocol */
};

/* HTTP/1.1 reverse proxy (protocol http). */

/* A named group of targets requests are balanced over. Its targets are the
 * app's targets[target_first .. target_first + n_targets): an http app's
 * targets array is the concatenation of its clusters' targets, cluster 0
 * being "default", the app-level `targets` list (possibly empty). */
struct cfg_http_cluster {
	char *name;
	uint32_t target_first, n_targets;
	enum lb_policy policy;
	struct cfg_mark mark;
};

/* A route: requests whose host matches and whose path starts with path go
 * to cluster. Routes are tried in the order written; the first match wins. */
struct cfg_http_route {
	char *host;		/* NULL: any host. Lower case, no port. "*.example.com"
				 * matches any name ending in ".example.com" */
	char *path;		/* path prefix, starts with '/'; "/" matches everything */
	uint32_t cluster;	/* index into cfg_http.clusters */
	struct cfg_mark mark;
};

enum __attribute__((packed)) http_log_format { HTTP_LOG_NONE = 0, HTTP_LOG_JSON, HTTP_LOG_COMBINED };

struct cfg_http {
	struct cfg_http_cluster *clusters;	/* [0] is "default"; n_clusters >= 1 in http
						 * apps (and cfg_quick's app); none in other
						 * apps loaded from a file */
	struct cfg_http_route *routes;		/* none: every request to cluster 0 */
	char *access_log;		/* file path, "-" for stdout; NULL with HTTP_LOG_NONE */
	uint32_t n_clusters;
	uint32_t n_routes;
	uint32_t header_timeout_ms;	/* whole request head must arrive within (408) */
	uint32_t response_timeout_ms;	/* upstream response head within, after the request (504) */
	uint32_t client_idle_ms;	/* idle keep-alive client connection closed after */
	uint32_t upstream_idle_ms;	/* pooled idle upstream connection closed after */
	uint32_t max_idle_upstream;	/* pooled idle connections per target per worker */
	uint32_t max_header_bytes;	/* request head bytes (431) */
	uint32_t max_headers;		/* request header fields (431) */
	bool forwarded;			/* add Forwarded, X-Forwarded-For, Via */
	enum http_log_format log_format;
};

/* An inclusive port range; a single port has lo == hi. */
struct cfg_port_range {
	uint16_t lo, hi;
	struct cfg_mark mark;
};

/* A local address prefix an app is restricted to. IPv4 is stored as an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) with plen counted over the
 * 128-bit form (so 10.0.0.0/8 has plen 104). */
struct cfg_prefix {
	uint8_t addr[16];
	uint8_t plen;	/* 0..128 over the mapped form */
	struct cfg_mark mark;
};

/* A target as written: "host:port", "1.2.3.4:80" or "[::1]:80". */
struct cfg_target {
	char *host;	/* without brackets */
	uint16_t port;
	struct cfg_mark mark;
};

struct cfg_keepalive {
	bool enabled;
	uint32_t idle_s, interval_s, count;
};

/* Health checking of targets (global: a target shared by several apps is
 * checked once). Passive checks (failed connects) are always on; active
 * TCP connect checks run for targets of apps with health_check enabled. */
struct cfg_health {
	uint32_t interval_ms, timeout_ms;
	uint32_t rise;	/* consecutive successes to mark a down target up */
	uint32_t fall;	/* consecutive failures (active or passive) to mark down */
	uint32_t backoff_min_ms, backoff_max_ms;	/* passive: retry a down target after */
};

/* kernel_splice: may the kernel move a tcp app's established connections
 * (bpf/splice.bpf.c)? auto: yes where the kernel accepts them, otherwise
 * the userspace relay; on: a refusal closes the connection; off: never. */
enum __attribute__((packed)) cfg_kernel_mode { CFG_KERNEL_AUTO = 0, CFG_KERNEL_ON, CFG_KERNEL_OFF };

/* local_shortcut: may a tcp app's connection whose client and target are
 * both local sockets of the shortcut_cgroup be short-circuited
 * (bpf/shortcut.bpf.c)? auto: yes where both ends are registered; off:
 * never. Without shortcut_cgroup the setting has no effect. */
enum __attribute__((packed)) cfg_shortcut_mode { CFG_SHORTCUT_AUTO = 0, CFG_SHORTCUT_OFF };

struct cfg_app {
	char *name;
	struct cfg_port_range *ports;	/* sorted by lo; the loader merges overlapping and adjacent ranges */
	size_t n_ports;
	struct cfg_prefix *prefixes;	/* empty: every local address; sorted, no duplicates */
	size_t n_prefixes;
	struct cfg_target *targets;
	size_t n_targets;
	uint32_t connect_timeout_ms;
	uint32_t idle_timeout_ms;	/* 0: never */
	uint32_t connect_attempts;	/* targets tried per connection, >= 1 */
	uint32_t max_connections;	/* 0: unlimited */
	struct cfg_keepalive keepalive;
	enum lb_policy policy;
	enum app_protocol protocol;
	enum cfg_kernel_mode kernel_splice;	/* default auto; only tcp apps splice */
	enum cfg_shortcut_mode local_shortcut;	/* default auto; only tcp apps pair */
	bool health_check;		/* active checks of this app's targets, default true */
	struct cfg_foo foo;		/* protocol foo */
	struct cfg_mark mark;
	struct cfg_http http;		/* protocol http; other apps: the defaults, no clusters */
};

struct cfg {
	char *path;			/* file name used in messages */
	/* global settings: read at start, a change needs a restart */
	struct sockaddr_storage admin;	/* admin HTTP listener */
	socklen_t admin_len;		/* 0: admin endpoint disabled */
	char *user;			/* unprivileged user to switch to; NULL: do not switch */
	uint32_t workers;		/* 0: one per CPU */
	uint32_t buffer_size;		/* bytes per direction per connection */
	bool splice;			/* relay with splice(2) through pipes (default) or by copy */
	uint32_t resolve_interval_ms;	/* how often target names are resolved again */
	char *shortcut_cgroup;		/* cgroup v2 directory of the local short-circuit; NULL: off */
	uint32_t shortcut_backlog;	/* unread short-circuited bytes a peer may hold */
	struct cfg_health health;
	/* reloadable settings */
	enum log_level log_level;
	struct cfg_app *apps;
	size_t n_apps;
	/* When set (configs read from a file), the apps' names, port, prefix
	 * and target arrays and target hosts live in this pool, allocated in
	 * a few big chunks and freed with the cfg at once; apps copied out
	 * with cfg_app_dup own their memory as usual. */
	struct cfg_pool *pool;
	/* Set by the loader and cfg_quick: app names are known to be unique
	 * (cfg_diff may then pair apps by position before hashing). */
	bool names_unique;
};

/* Defaults, also documented in docs/CONFIG.md. */
#define CFG_DEFAULT_ADMIN		"127.0.0.1:9900"
#define CFG_DEFAULT_USER		"nobody"
#define CFG_DEFAULT_BUFFER_SIZE		(64u * 1024)
#define CFG_DEFAULT_CONNECT_TIMEOUT_MS	2000u
#define CFG_DEFAULT_IDLE_TIMEOUT_MS	(3600u * 1000)
#define CFG_DEFAULT_CONNECT_ATTEMPTS	3u
#define CFG_DEFAULT_KA_IDLE_S		60u
#define CFG_DEFAULT_KA_INTERVAL_S	10u
#define CFG_DEFAULT_KA_COUNT		6u
#define CFG_DEFAULT_HC_INTERVAL_MS	5000u
#define CFG_DEFAULT_HC_TIMEOUT_MS	1000u
#define CFG_DEFAULT_HC_RISE		2u
#define CFG_DEFAULT_HC_FALL		3u
#define CFG_DEFAULT_BACKOFF_MIN_MS	1000u
#define CFG_DEFAULT_BACKOFF_MAX_MS	30000u
#define CFG_DEFAULT_RESOLVE_INTERVAL_MS	30000u
#define CFG_DEFAULT_SHORTCUT_BACKLOG	(4u << 20)
#define CFG_DEFAULT_FOO_MAX_LINE	4096u
#define CFG_MAX_FOO_MAX_LINE		(1u << 20)
#define CFG_DEFAULT_HTTP_HEADER_TIMEOUT_MS	10000u
#define CFG_DEFAULT_HTTP_RESPONSE_TIMEOUT_MS	30000u
#define CFG_DEFAULT_HTTP_CLIENT_IDLE_MS		60000u
#define CFG_DEFAULT_HTTP_UPSTREAM_IDLE_MS	30000u
#define CFG_DEFAULT_HTTP_MAX_IDLE_UPSTREAM	64u
#define CFG_DEFAULT_HTTP_MAX_HEADER_BYTES	32768u
#define CFG_DEFAULT_HTTP_MAX_HEADERS		100u
#define CFG_MAX_HTTP_HEADER_BYTES		(1u << 20)
#define CFG_MAX_HTTP_HEADERS			1000u
#define CFG_MAX_HTTP_CLUSTERS			256u
#define CFG_MAX_HTTP_ROUTES			4096u
#define CFG_MAX_APPS			100000u
#define CFG_MAX_TARGETS_PER_APP		1024u
#define CFG_MAX_NAME_LEN		128u

/* Error messages, each "file:line:col: message". */
struct cfg_errors {
	char **msgs;
	size_t n;
};

/* Reads, parses and validates a YAML or JSON config file. On success
 * returns 0 and *out; on failure returns -EINVAL (or -errno when the file
 * cannot be read) with every problem found appended to errs. */
int cfg_load_file(const char *path, struct cfg **out, struct cfg_errors *errs);

/* Same from memory; name is used as the file name in messages. */
int cfg_load_buffer(const char *name, const char *buf, size_t len, struct cfg **out,
		    struct cfg_errors *errs);

void cfg_free(struct cfg *cfg);
void cfg_errors_free(struct cfg_errors *errs);
void cfg_errors_add(struct cfg_errors *errs, const char *file, struct cfg_mark mark,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* "tcp", "foo", "http"; and back (0 or -EINVAL). */
const char *cfg_protocol_name(enum app_protocol p);
int cfg_protocol_parse(const char *s, enum app_protocol *out);

/* Fills the http settings with their defaults: no clusters, no routes, no
 * access log (cfg_app_defaults calls it; the loader then adds clusters[0],
 * "default", to http apps, cfg_quick to its app whatever its protocol). */
void cfg_http_defaults(struct cfg_http *h);

/* Deep copy of one app (NULL on ENOMEM); freed with cfg_app_free. */
struct cfg_app *cfg_app_dup(const struct cfg_app *a);
void cfg_app_free(struct cfg_app *a);

/* True when two apps would behave identically (name included, marks ignored;
 * the foo and http settings count for apps of that protocol only). */
bool cfg_app_equal(const struct cfg_app *a, const struct cfg_app *b);

/* Formats a target as "host:port" ("[v6]:port" for IPv6 literals). */
void cfg_target_format(const struct cfg_target *t, char *buf, size_t len);

/* Builds a one-app config in memory for quick mode (--listen/--forward):
 * listen is "[addr]:port" or ":port", forward is "host:port". The app's
 * protocol is tcp; the caller may change it. */
int cfg_quick(const char *listen, const char *forward, struct cfg **out, struct cfg_errors *errs);

#endif
