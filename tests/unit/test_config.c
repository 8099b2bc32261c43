/* test_config.c - config loading and validation: the schema, defaults, the Fly.io format, quick mode and every refusal. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/internal.h"
#include "core/sbuf.h"

static struct cfg_errors errs;

static void dump_errors(void)
{
	for (size_t i = 0; i < errs.n; i++)
		print_message("  error: %s\n", errs.msgs[i]);
}

/* Loads text as "t.yaml"; returns the config or NULL (errors in errs). */
static struct cfg *load(const char *text)
{
	struct cfg *cfg = (struct cfg *)1;
	cfg_errors_free(&errs);
	int r = cfg_load_buffer("t.yaml", text, strlen(text), &cfg, &errs);
	if (r == 0) {
		assert_non_null(cfg);
		assert_int_equal(errs.n, 0);
	} else {
		assert_null(cfg);
		assert_true(r == -EINVAL);
		assert_true(errs.n > 0);
	}
	return cfg;
}

static struct cfg *load_ok(const char *text)
{
	struct cfg *cfg = load(text);
	if (!cfg)
		dump_errors();
	assert_non_null(cfg);
	return cfg;
}

/* True when one message starts with "t.yaml:<pos>: " (pos NULL: any) and
 * contains every word given. */
static bool find_error(const char *pos, const char *w1, const char *w2, const char *w3)
{
	char prefix[64];
	if (pos)
		snprintf(prefix, sizeof(prefix), "t.yaml:%s: ", pos);
	for (size_t i = 0; i < errs.n; i++) {
		const char *m = errs.msgs[i];
		if (pos && strncmp(m, prefix, strlen(prefix)) != 0)
			continue;
		if ((w1 && !strstr(m, w1)) || (w2 && !strstr(m, w2)) || (w3 && !strstr(m, w3)))
			continue;
		return true;
	}
	return false;
}

/* The text must be refused with a message at pos containing the words. */
static void expect_error(const char *text, const char *pos, const char *w1, const char *w2,
			 const char *w3)
{
	struct cfg *cfg = load(text);
	if (cfg) {
		cfg_free(cfg);
		fail_msg("config was accepted, expected an error at %s: %s", pos, w1);
	}
	if (!find_error(pos, w1, w2, w3)) {
		dump_errors();
		fail_msg("no error at %s with '%s' '%s' '%s'", pos, w1, w2 ? w2 : "", w3 ? w3 : "");
	}
}

#define APP_TAIL "    targets: [\"h:1\"]\n"

static void test_fly_json(void **state)
{
	(void)state;
	const char *fly =
		"{\"Apps\":[{\"Name\":\"one\",\"Ports\":[8001,8002],\"Targets\":[\"127.0.0.1:9001\",\"127.0.0.1:9002\"]},\n"
		"{\"Name\":\"two\",\"Ports\":[8100],\"Targets\":[\"localhost:9100\",\"[::1]:9101\"]}]}\n";
	struct cfg *cfg = load_ok(fly);
	assert_int_equal(cfg->n_apps, 2);
	const struct cfg_app *a = &cfg->apps[0], *b = &cfg->apps[1];
	assert_string_equal(a->name, "one");
	/* 8001 and 8002 are adjacent: merged into one range */
	assert_int_equal(a->n_ports, 1);
	assert_int_equal(a->ports[0].lo, 8001);
	assert_int_equal(a->ports[0].hi, 8002);
	assert_int_equal(a->n_targets, 2);
	assert_string_equal(a->targets[1].host, "127.0.0.1");
	assert_int_equal(a->targets[1].port, 9002);
	assert_int_equal(a->targets[0].mark.line, 1);
	assert_string_equal(b->name, "two");
	assert_int_equal(b->mark.line, 2);
	assert_string_equal(b->targets[0].host, "localhost");
	assert_string_equal(b->targets[1].host, "::1");
	assert_int_equal(b->targets[1].port, 9101);
	assert_int_equal(b->n_prefixes, 0);
	assert_int_equal(b->policy, LB_ROUND_ROBIN);
	assert_int_equal(b->connect_timeout_ms, CFG_DEFAULT_CONNECT_TIMEOUT_MS);
	cfg_free(cfg);
}

/* The example shipped in the repository must load (with its local targets). */
static void test_fly_example_file(void **state)
{
	(void)state;
	static const char *const paths[] = { "examples/flyio.json", "../examples/flyio.json",
					     "../../examples/flyio.json" };
	for (size_t i = 0; i < 3; i++) {
		if (access(paths[i], R_OK))
			continue;
		struct cfg *cfg = NULL;
		cfg_errors_free(&errs);
		int r = cfg_load_file(paths[i], &cfg, &errs);
		if (r)
			dump_errors();
		assert_int_equal(r, 0);
		assert_true(cfg->n_apps > 0);
		cfg_free(cfg);
		return;
	}
	skip();
}

static void test_defaults(void **state)
{
	(void)state;
	struct cfg *cfg = load_ok("apps:\n  - name: a\n    ports: 80\n    targets: h:1\n");
	const struct sockaddr_in *ad = (const struct sockaddr_in *)&cfg->admin;
	assert_int_equal(cfg->admin_len, sizeof(struct sockaddr_in));
	assert_int_equal(ad->sin_family, AF_INET);
	assert_int_equal(ntohs(ad->sin_port), 9900);
	assert_int_equal(ntohl(ad->sin_addr.s_addr), 0x7f000001);
	assert_string_equal(cfg->user, CFG_DEFAULT_USER);
	assert_int_equal(cfg->workers, 0);
	assert_int_equal(cfg->buffer_size, CFG_DEFAULT_BUFFER_SIZE);
	assert_int_equal(cfg->resolve_interval_ms, CFG_DEFAULT_RESOLVE_INTERVAL_MS);
	assert_int_equal(cfg->log_level, LOG_INFO);
	assert_int_equal(cfg->health.interval_ms, CFG_DEFAULT_HC_INTERVAL_MS);
	assert_int_equal(cfg->health.timeout_ms, CFG_DEFAULT_HC_TIMEOUT_MS);
	assert_int_equal(cfg->health.rise, CFG_DEFAULT_HC_RISE);
	assert_int_equal(cfg->health.fall, CFG_DEFAULT_HC_FALL);
	assert_int_equal(cfg->health.backoff_min_ms, CFG_DEFAULT_BACKOFF_MIN_MS);
	assert_int_equal(cfg->health.backoff_max_ms, CFG_DEFAULT_BACKOFF_MAX_MS);
	const struct cfg_app *a = &cfg->apps[0];
	assert_int_equal(a->n_ports, 1);
	assert_int_equal(a->ports[0].lo, 80);
	assert_int_equal(a->ports[0].hi, 80);
	assert_int_equal(a->policy, LB_ROUND_ROBIN);
	assert_int_equal(a->connect_timeout_ms, CFG_DEFAULT_CONNECT_TIMEOUT_MS);
	assert_int_equal(a->idle_timeout_ms, CFG_DEFAULT_IDLE_TIMEOUT_MS);
	assert_int_equal(a->connect_attempts, CFG_DEFAULT_CONNECT_ATTEMPTS);
	assert_int_equal(a->max_connections, 0);
	assert_true(a->keepalive.enabled);
	assert_int_equal(a->keepalive.idle_s, CFG_DEFAULT_KA_IDLE_S);
	assert_int_equal(a->keepalive.interval_s, CFG_DEFAULT_KA_INTERVAL_S);
	assert_int_equal(a->keepalive.count, CFG_DEFAULT_KA_COUNT);
	assert_true(a->health_check);
	assert_int_equal(a->mark.line, 2);
	assert_int_equal(a->mark.col, 5);
	cfg_free(cfg);
}

static void test_full_yaml(void **state)
{
	(void)state;
	struct cfg *cfg = load_ok(
		"# every key\n"
		"admin: \"[::1]:9999\"\n"
		"user: \"\"\n"
		"workers: 4\n"
		"buffer_size: 16k\n"
		"log_level: debug\n"
		"resolve_interval: 1m30s\n"
		"health_check: {interval: 2s, timeout: 500ms, rise: 1, fall: 5, backoff_min: 100, backoff_max: 1h}\n"
		"apps:\n"
		"  - name: web\n"
		"    ports: [8080, \"9000-9099\"]\n"
		"    addresses: [\"127.0.0.0/8\", \"::1/128\", \"10.1.2.3\"]\n"
		"    targets: [\"127.0.0.1:19001\", \"backend.example:80\", \"[::1]:19002\"]\n"
		"    balance: least_conn\n"
		"    connect_timeout: 250ms\n"
		"    idle_timeout: 0\n"
		"    connect_attempts: 5\n"
		"    max_connections: 1000\n"
		"    keepalive: {idle: 30s, interval: 5s, count: 3}\n"
		"    health_check: false\n"
		"  - name: other\n"
		"    ports: 7000\n"
		"    targets: o:1\n"
		"    balance: random\n"
		"    keepalive: off\n");
	const struct sockaddr_in6 *ad = (const struct sockaddr_in6 *)&cfg->admin;
	assert_int_equal(cfg->admin_len, sizeof(struct sockaddr_in6));
	assert_int_equal(ad->sin6_family, AF_INET6);
	assert_int_equal(ntohs(ad->sin6_port), 9999);
	assert_true(IN6_IS_ADDR_LOOPBACK(&ad->sin6_addr));
	assert_null(cfg->user);
	assert_int_equal(cfg->workers, 4);
	assert_int_equal(cfg->buffer_size, 16384);
	assert_int_equal(cfg->log_level, LOG_DEBUG);
	assert_int_equal(cfg->resolve_interval_ms, 90000);
	assert_int_equal(cfg->health.interval_ms, 2000);
	assert_int_equal(cfg->health.timeout_ms, 500);
	assert_int_equal(cfg->health.rise, 1);
	assert_int_equal(cfg->health.fall, 5);
	assert_int_equal(cfg->health.backoff_min_ms, 100);
	assert_int_equal(cfg->health.backoff_max_ms, 3600000);
	assert_int_equal(cfg->n_apps, 2);
	const struct cfg_app *a = &cfg->apps[0];
	assert_int_equal(a->n_ports, 2);
	assert_int_equal(a->ports[1].lo, 9000);
	assert_int_equal(a->ports[1].hi, 9099);
	assert_int_equal(a->ports[1].mark.line, 11);
	assert_int_equal(a->ports[1].mark.col, 19);
	assert_int_equal(a->n_prefixes, 3);
	assert_int_equal(a->n_targets, 3);
	assert_string_equal(a->targets[1].host, "backend.example");
	assert_int_equal(a->targets[1].port, 80);
	assert_string_equal(a->targets[2].host, "::1");
	assert_int_equal(a->policy, LB_LEAST_CONN);
	assert_int_equal(a->connect_timeout_ms, 250);
	assert_int_equal(a->idle_timeout_ms, 0);
	assert_int_equal(a->connect_attempts, 5);
	assert_int_equal(a->max_connections, 1000);
	assert_true(a->keepalive.enabled);
	assert_int_equal(a->keepalive.idle_s, 30);
	assert_int_equal(a->keepalive.interval_s, 5);
	assert_int_equal(a->keepalive.count, 3);
	assert_false(a->health_check);
	assert_int_equal(cfg->apps[1].policy, LB_RANDOM);
	assert_false(cfg->apps[1].keepalive.enabled);
	cfg_free(cfg);
}

static void test_admin_forms(void **state)
{
	(void)state;
	struct cfg *cfg = load_ok("admin: off\napps: []\n");
	assert_int_equal(cfg->admin_len, 0);
	cfg_free(cfg);
	cfg = load_ok("admin: localhost:9000\napps:\n");
	assert_int_equal(cfg->admin_len, sizeof(struct sockaddr_in));
	cfg_free(cfg);
	cfg = load_ok("admin: 0.0.0.0:80\nuser: null\napps: []\n");
	assert_int_equal(ntohs(((struct sockaddr_in *)&cfg->admin)->sin_port), 80);
	assert_null(cfg->user);
	cfg_free(cfg);
	expect_error("admin: example.com:9900\napps: []\n", "1:8", "admin", "literal IP", NULL);
	expect_error("admin: 127.0.0.1\napps: []\n", "1:8", "admin", "missing port", NULL);
	expect_error("admin: [::1:99\napps: []\n", NULL, NULL, NULL, NULL);
}

static void test_ports_and_ranges(void **state)
{
	(void)state;
	struct cfg *cfg = load_ok("apps:\n"
				  "  - name: a\n"
				  "    ports: [\"9000-9099\", 9050, \"9090-9200\", 80, 81, \"1-1\", 65535, \" 100 - 200 \"]\n" APP_TAIL
				  "  - name: single\n"
				  "    ports: \"5000-5001\"\n" APP_TAIL);
	const struct cfg_app *a = &cfg->apps[0];
	/* sorted, overlapping and adjacent ranges merged */
	assert_int_equal(a->n_ports, 5);
	assert_int_equal(a->ports[0].lo, 1);
	assert_int_equal(a->ports[0].hi, 1);
	assert_int_equal(a->ports[1].lo, 80);
	assert_int_equal(a->ports[1].hi, 81);
	assert_int_equal(a->ports[2].lo, 100);
	assert_int_equal(a->ports[2].hi, 200);
	assert_int_equal(a->ports[3].lo, 9000);
	assert_int_equal(a->ports[3].hi, 9200);
	assert_int_equal(a->ports[4].lo, 65535);
	assert_int_equal(cfg->apps[1].ports[0].lo, 5000);
	assert_int_equal(cfg->apps[1].ports[0].hi, 5001);
	cfg_free(cfg);
}

static void test_prefixes(void **state)
{
	(void)state;
	struct cfg *cfg = load_ok("apps:\n  - name: a\n    ports: 1\n"
				  "    addresses: [\"10.0.0.0/8\", \"::1\", \"192.168.1.7\", \"2001:db8::/32\", \"10.0.0.0/8\", \"0.0.0.0/0\"]\n" APP_TAIL);
	const struct cfg_app *a = &cfg->apps[0];
	static const uint8_t v4_10[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 0 };
	static const uint8_t v4_any[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0 };
	static const uint8_t v4_host[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 7 };
	/* duplicates removed; sorted by address */
	assert_int_equal(a->n_prefixes, 5);
	bool seen[4] = { false };
	for (size_t i = 0; i < a->n_prefixes; i++) {
		const struct cfg_prefix *p = &a->prefixes[i];
		if (!memcmp(p->addr, v4_10, 16) && p->plen == 104)
			seen[0] = true;
		if (!memcmp(p->addr, v4_host, 16) && p->plen == 128)
			seen[1] = true;
		if (!memcmp(p->addr, v4_any, 16) && p->plen == 96)
			seen[2] = true;
		if (!memcmp(p->addr, &in6addr_loopback, 16) && p->plen == 128)
			seen[3] = true;
	}
	assert_true(seen[0] && seen[1] && seen[2] && seen[3]);
	cfg_free(cfg);

	uint8_t addr[16], plen;
	const char *why;
	assert_int_equal(cfg_parse_prefix("::/0", addr, &plen, &why), 0);
	assert_int_equal(plen, 0);
	assert_int_equal(cfg_parse_prefix("10.1.2.3/8", addr, &plen, &why), -EINVAL);
	assert_non_null(strstr(why, "bits set"));
	assert_int_equal(cfg_parse_prefix("1.2.3.4/33", addr, &plen, &why), -EINVAL);
	assert_int_equal(cfg_parse_prefix("::1/129", addr, &plen, &why), -EINVAL);
	assert_int_equal(cfg_parse_prefix("1.2.3/24", addr, &plen, &why), -EINVAL);
	assert_int_equal(cfg_parse_prefix("/8", addr, &plen, &why), -EINVAL);
	assert_int_equal(cfg_parse_prefix("1.2.3.4/", addr, &plen, &why), -EINVAL);
	assert_int_equal(cfg_parse_prefix("1.2.3.4/-1", addr, &plen, &why), -EINVAL);
	assert_int_equal(cfg_parse_prefix("fe80::g", addr, &plen, &why), -EINVAL);
}

static void test_durations(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int r;
		uint32_t ms;
	} cases[] = {
		{ "250ms", 0, 250 },	     { "2s", 0, 2000 },	       { "1m", 0, 60000 },
		{ "1h", 0, 3600000 },	     { "1500", 0, 1500 },      { "0", 0, 0 },
		{ "1m30s", 0, 90000 },	     { "1h1ms", 0, 3600001 },  { "4294967295", 0, 4294967295u },
		{ "4294967296", -EINVAL, 0 }, { "1193h", 0, 4294800000u }, { "1194h", -EINVAL, 0 },
		{ "99999999999999999999s", -EINVAL, 0 }, { "", -EINVAL, 0 }, { "-1s", -EINVAL, 0 },
		{ "1.5s", -EINVAL, 0 },	     { "s", -EINVAL, 0 },      { "5x", -EINVAL, 0 },
		{ "5 s", -EINVAL, 0 },	     { "1d", -EINVAL, 0 },     { "ms", -EINVAL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t ms = 12345;
		const char *why = NULL;
		int r = cfg_parse_duration(cases[i].s, &ms, &why);
		if (r != cases[i].r)
			fail_msg("duration '%s': got %d, want %d", cases[i].s, r, cases[i].r);
		if (r == 0)
			assert_int_equal(ms, cases[i].ms);
		else
			assert_non_null(why);
	}
	expect_error("resolve_interval: forever\napps: []\n", "1:19", "resolve_interval", "malformed duration", NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    connect_timeout: 99999999h\n",
		     "5:22", "connect_timeout", "too long", NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    connect_timeout: 0\n",
		     "5:22", "connect_timeout", "at least", NULL);
}

static void test_sizes(void **state)
{
	(void)state;
	uint32_t b;
	const char *why;
	assert_int_equal(cfg_parse_size("65536", &b, &why), 0);
	assert_int_equal(b, 65536);
	assert_int_equal(cfg_parse_size("64k", &b, &why), 0);
	assert_int_equal(b, 65536);
	assert_int_equal(cfg_parse_size("1M", &b, &why), 0);
	assert_int_equal(b, 1 << 20);
	assert_int_equal(cfg_parse_size("2KiB", &b, &why), 0);
	assert_int_equal(b, 2048);
	assert_int_equal(cfg_parse_size("64q", &b, &why), -EINVAL);
	assert_int_equal(cfg_parse_size("k", &b, &why), -EINVAL);
	assert_int_equal(cfg_parse_size("99999999m", &b, &why), -EINVAL);
	expect_error("buffer_size: 10\napps: []\n", "1:14", "buffer_size", "1k", NULL);
	expect_error("buffer_size: lots\napps: []\n", "1:14", "buffer_size", NULL, NULL);
}

static void test_hostport(void **state)
{
	(void)state;
	static const struct {
		const char *s, *host;
		uint16_t port;
		const char *why;	/* part of the message when refused */
	} cases[] = {
		{ "127.0.0.1:9001", "127.0.0.1", 9001, NULL },
		{ "backend.example:80", "backend.example", 80, NULL },
		{ "backend.example.:80", "backend.example.", 80, NULL },
		{ "[::1]:9002", "::1", 9002, NULL },
		{ "[fe80::1%eth0]:22", "fe80::1%eth0", 22, NULL },
		{ "my_svc-1:65535", "my_svc-1", 65535, NULL },
		{ "h", NULL, 0, "missing port" },
		{ "h:", NULL, 0, "missing port" },
		{ ":80", NULL, 0, "empty host" },
		{ "h:0", NULL, 0, "out of range" },
		{ "h:65536", NULL, 0, "out of range" },
		{ "h:http", NULL, 0, "port" },
		{ "h:-1", NULL, 0, "port" },
		{ "::1:80", NULL, 0, "brackets" },
		{ "[::1:80", NULL, 0, "']'" },
		{ "::1]:80", NULL, 0, "brackets" },
		{ "[::1]80", NULL, 0, "after ']'" },
		{ "[::1]", NULL, 0, "missing port" },
		{ "[]:80", NULL, 0, "empty host" },
		{ "[1.2.3.4]:80", NULL, 0, "IPv6" },
		{ "[zz]:80", NULL, 0, "IPv6" },
		{ "1.2.3.256:80", NULL, 0, "IPv4" },
		{ "1.2.3:80", NULL, 0, "IPv4" },
		/* the IPv4 grammar of inet_pton: four octets, no leading zeros */
		{ "01.2.3.4:80", NULL, 0, "IPv4" },
		{ "1.2.3.00:80", NULL, 0, "IPv4" },
		{ "1.2.3.4.5:80", NULL, 0, "IPv4" },
		{ "1.2.3.4.:80", NULL, 0, "IPv4" },
		{ ".1.2.3:80", NULL, 0, "IPv4" },
		{ "1..2.3:80", NULL, 0, "IPv4" },
		{ "1.2.3.1000:80", NULL, 0, "IPv4" },
		{ "0.0.0.0:80", "0.0.0.0", 80, NULL },
		{ "255.255.255.255:1", "255.255.255.255", 1, NULL },
		{ "10.0.250.9:65535", "10.0.250.9", 65535, NULL },
		{ "a..b:80", NULL, 0, "host name" },
		{ ".a:80", NULL, 0, "host name" },
		{ "a b:80", NULL, 0, "host name" },
		{ "", NULL, 0, "empty" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *host = NULL;
		uint16_t port = 0;
		const char *why = NULL;
		int r = cfg_parse_hostport(cases[i].s, &host, &port, &why);
		if (cases[i].host) {
			if (r)
				fail_msg("'%s' refused: %s", cases[i].s, why);
			assert_string_equal(host, cases[i].host);
			assert_int_equal(port, cases[i].port);
			free(host);
		} else {
			if (r != -EINVAL)
				fail_msg("'%s' accepted", cases[i].s);
			if (!strstr(why, cases[i].why))
				fail_msg("'%s': '%s' does not say '%s'", cases[i].s, why, cases[i].why);
		}
	}
}

static void test_target_format(void **state)
{
	(void)state;
	char buf[80];
	struct cfg_target t = { .host = "::1", .port = 80 };
	cfg_target_format(&t, buf, sizeof(buf));
	assert_string_equal(buf, "[::1]:80");
	t.host = "example.com";
	t.port = 8080;
	cfg_target_format(&t, buf, sizeof(buf));
	assert_string_equal(buf, "example.com:8080");
	cfg_target_format(&t, buf, 5);
	assert_string_equal(buf, "exam");
}

/* --- refusals ------------------------------------------------------------------ */

static void test_err_syntax(void **state)
{
	(void)state;
	expect_error("apps: [1\n", "2:1", "YAML syntax error", "flow sequence", NULL);
	expect_error("apps:\n  - name: a\n   ports: 1\n", "3:4", "YAML syntax error", NULL, NULL);
	expect_error("{\"Apps\": [}\n", "1:11", "YAML syntax error", NULL, NULL);
	expect_error("a: \"unterminated\n", NULL, "YAML syntax error", NULL, NULL);
	expect_error("apps: []\nbad\xff\xfe: 1\n", NULL, "invalid", NULL, NULL);
	/* a JSON file with an error is parsed by libyaml, which says where */
	expect_error("{\"Apps\":[{\"Name\":\"a\",\"Ports\":[1] \"Targets\":[\"h:1\"]}]}",
		     "1:34", "YAML syntax error", NULL, NULL);
	/* a trailing comma is valid YAML flow syntax, so such JSON loads */
	cfg_free(load_ok("{\"Apps\":[{\"Name\":\"a\",\"Ports\":[1,],\"Targets\":[\"h:1\"]},]}"));
}

static void test_err_empty_and_top(void **state)
{
	(void)state;
	expect_error("", "1:1", "empty config", NULL, NULL);
	expect_error("# only a comment\n\n", "1:1", "empty config", NULL, NULL);
	expect_error("---\n", "2:1", "top level must be a mapping", NULL, NULL);
	expect_error("- a\n- b\n", "1:1", "top level must be a mapping", "list", NULL);
	expect_error("just text\n", "1:1", "top level must be a mapping", NULL, NULL);
	expect_error("[1, 2]", "1:1", "top level must be a mapping", NULL, NULL);
	expect_error("workers: 1\n", "1:1", "no 'apps'", NULL, NULL);
	expect_error("apps: 5\n", "1:7", "apps must be a list", NULL, NULL);
	expect_error("apps: {a: 1}\n", "1:7", "apps must be a list", "mapping", NULL);
	expect_error("apps: [5]\n", "1:8", "app #1 must be a mapping", NULL, NULL);
}

static void test_err_unknown_and_duplicate_keys(void **state)
{
	(void)state;
	expect_error("apps: []\nworkerz: 1\n", "2:1", "unknown key 'workerz'", "top level", "workers");
	expect_error("apps:\n  - name: a\n    prots: 1\n    ports: 1\n" APP_TAIL, "3:5",
		     "unknown key 'prots'", "app", "ports");
	expect_error("apps: []\nhealth_check: {intervall: 1s}\n", "2:16", "unknown key 'intervall'",
		     "health_check", NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    keepalive: {idle: 1s, cnt: 1}\n",
		     "5:27", "unknown key 'cnt'", "keepalive", NULL);
	expect_error("apps: []\nworkers: 1\nworkers: 2\n", "3:1", "duplicate key 'workers'",
		     "line 2 column 1", NULL);
	/* a Fly.io alias and its lower-case key name the same thing */
	expect_error("apps: []\nApps: []\n", "2:1", "duplicate key 'Apps'", NULL, NULL);
	expect_error("apps:\n  - name: a\n    Name: b\n    ports: 1\n" APP_TAIL, "3:5",
		     "duplicate key 'Name'", NULL, NULL);
	expect_error("apps: []\n[a]: 1\n", "2:1", "keys", "plain strings", NULL);
	/* keys are case sensitive apart from the Fly.io aliases */
	expect_error("APPS: []\n", "1:1", "unknown key 'APPS'", NULL, NULL);
}

static void test_err_types(void **state)
{
	(void)state;
	expect_error("workers: lots\napps: []\n", "1:10", "workers", "whole number", NULL);
	expect_error("workers: [1]\napps: []\n", "1:10", "workers", "list", NULL);
	expect_error("workers: 2000\napps: []\n", "1:10", "workers", "from 0 to 1024", NULL);
	expect_error("log_level: loud\napps: []\n", "1:12", "log_level", "debug", NULL);
	expect_error("health_check: yes\napps: []\n", "1:15", "health_check must be a mapping", NULL, NULL);
	expect_error("health_check: {rise: 0}\napps: []\n", "1:22", "rise", "from 1", NULL);
	expect_error("health_check: {backoff_min: 10s, backoff_max: 1s}\napps: []\n", "1:29",
		     "backoff_min", "greater than backoff_max", NULL);
	expect_error("apps:\n  - name: [a]\n    ports: 1\n" APP_TAIL, "2:11", "name must be a string", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: {x: 1}\n" APP_TAIL, "3:12", "ports must be a list", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: [[1]]\n" APP_TAIL, "3:13", "port must be a number or a range", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n    targets: {a: 1}\n", "4:14", "targets must be a list", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n    targets: [80]\n", "4:15", "target '80'", "missing port", NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    balance: fastest\n", "5:14",
		     "balance 'fastest'", "round_robin", NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    health_check: maybe\n", "5:19",
		     "health_check", "true or false", NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    keepalive: [1]\n", "5:16",
		     "keepalive must be a mapping", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    keepalive: {idle: 1500ms}\n", "5:23",
		     "keepalive idle", "whole number of seconds", NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    keepalive: {count: 200}\n", "5:24",
		     "keepalive count", "127", NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    connect_attempts: 0\n", "5:23",
		     "connect_attempts", "from 1", NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    max_connections: -5\n", "5:22",
		     "max_connections", "whole number", NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    max_connections: 1.5\n", "5:22",
		     "max_connections", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    idle_timeout: {}\n", "5:19",
		     "idle_timeout", "mapping", NULL);
}

static void test_err_ports(void **state)
{
	(void)state;
	expect_error("apps:\n  - name: a\n    ports: 0\n" APP_TAIL, "3:12", "port '0'", "out of range", NULL);
	expect_error("apps:\n  - name: a\n    ports: [65536]\n" APP_TAIL, "3:13", "port '65536'", "out of range", NULL);
	expect_error("apps:\n  - name: a\n    ports: [\"100-50\"]\n" APP_TAIL, "3:13", "port '100-50'",
		     "greater than its end", NULL);
	expect_error("apps:\n  - name: a\n    ports: [\"1-70000\"]\n" APP_TAIL, "3:13", "out of range", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: [\"80-\"]\n" APP_TAIL, "3:13", "LO-HI", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: [-80]\n" APP_TAIL, "3:13", "port '-80'", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: [http]\n" APP_TAIL, "3:13", "port 'http'", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: [99999999999999999999999]\n" APP_TAIL, "3:13", "out of range", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: [8e3]\n" APP_TAIL, "3:13", "port '8e3'", NULL, NULL);
}

static void test_err_no_ports_no_targets(void **state)
{
	(void)state;
	expect_error("apps:\n  - name: a\n" APP_TAIL, "2:5", "app 'a' has no ports", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: []\n" APP_TAIL, "3:12", "app 'a' has no ports", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports:\n" APP_TAIL, "3:11", "app 'a' has no ports", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n", "2:5", "app 'a' has no targets", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: 1\n    targets: []\n", "4:14", "app 'a' has no targets", NULL, NULL);
	expect_error("{\"Apps\":[{\"Name\":\"x\",\"Ports\":[],\"Targets\":[]}]}", "1:30", "app 'x' has no ports", NULL, NULL);
	assert_true(find_error("1:43", "app 'x' has no targets", NULL, NULL));
	expect_error("apps:\n  - ports: 1\n" APP_TAIL, "2:5", "app #1 has no name", NULL, NULL);
}

static void test_err_targets(void **state)
{
	(void)state;
	expect_error("apps:\n  - name: a\n    ports: 1\n    targets: [\"h\", \":80\", \"h:99999\", \"[::1:80\", \"::1:80\", \"h:x\"]\n",
		     "4:15", "target 'h'", "missing port", NULL);
	assert_true(find_error("4:20", "target ':80'", "empty host", NULL));
	assert_true(find_error("4:27", "target 'h:99999'", "out of range", NULL));
	assert_true(find_error("4:38", "target '[::1:80'", "']'", NULL));
	assert_true(find_error("4:49", "target '::1:80'", "brackets", NULL));
	assert_true(find_error("4:59", "target 'h:x'", "port", NULL));
	expect_error("apps:\n  - name: a\n    ports: 1\n    targets: [\"h\\n:1\"]\n", "4:15",
		     "control characters", NULL, NULL);

	/* too many targets */
	struct sbuf b;
	sbuf_init(&b);
	sbuf_puts(&b, "apps:\n  - name: big\n    ports: 1\n    targets:\n");
	for (unsigned i = 0; i <= CFG_MAX_TARGETS_PER_APP; i++)
		sbuf_printf(&b, "      - h%u:1\n", i);
	sbuf_append(&b, "", 1);
	expect_error(b.data, "5:7", "app 'big' has 1025 targets", "at most 1024", NULL);
	sbuf_free(&b);
}

static void test_err_addresses(void **state)
{
	(void)state;
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL
		     "    addresses: [\"10.1.2.3/8\", \"1.2.3.4/33\", \"zz\", \"fe80::zz/64\", \"::1/200\", [1], \"\"]\n",
		     "5:17", "address '10.1.2.3/8'", "bits set", NULL);
	assert_true(find_error("5:31", "address '1.2.3.4/33'", "0 to 32", NULL));
	assert_true(find_error("5:45", "address 'zz'", "malformed IPv4", NULL));
	assert_true(find_error("5:51", "address 'fe80::zz/64'", "malformed IPv6", NULL));
	assert_true(find_error("5:66", "address '::1/200'", "0 to 128", NULL));
	assert_true(find_error("5:77", "address must be a string", NULL, NULL));
	assert_true(find_error("5:82", "address ''", "empty", NULL));
	expect_error("apps:\n  - name: a\n    ports: 1\n" APP_TAIL "    addresses: {a: 1}\n", "5:16",
		     "addresses must be a list", NULL, NULL);
}

static void test_err_names(void **state)
{
	(void)state;
	char long_name[CFG_MAX_NAME_LEN + 2], text[512];
	memset(long_name, 'x', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	snprintf(text, sizeof(text), "apps:\n  - name: %s\n    ports: 1\n" APP_TAIL, long_name);
	expect_error(text, "2:11", "longer than 128", NULL, NULL);
	/* exactly the limit is fine */
	long_name[CFG_MAX_NAME_LEN] = '\0';
	snprintf(text, sizeof(text), "apps:\n  - name: %s\n    ports: 1\n" APP_TAIL, long_name);
	cfg_free(load_ok(text));
	expect_error("apps:\n  - name: \"\"\n    ports: 1\n" APP_TAIL, "2:11", "app #1: empty name", NULL, NULL);
	expect_error("apps:\n  - name: \"a\\tb\"\n    ports: 1\n" APP_TAIL, "2:11", "control characters", NULL, NULL);
	expect_error("apps:\n  - name: \"a\\0b\"\n    ports: 1\n" APP_TAIL, "2:11", "control characters", NULL, NULL);
	/* the check reads 8 bytes at a time: control bytes and DEL anywhere in
	 * a word or in the tail, high bytes (UTF-8) allowed */
	expect_error("apps:\n  - name: \"abcdefghijk\\tmnop\"\n    ports: 1\n" APP_TAIL, "2:11", "control characters", NULL, NULL);
	expect_error("apps:\n  - name: \"abcdefgh\\x1f\"\n    ports: 1\n" APP_TAIL, "2:11", "control characters", NULL, NULL);
	expect_error("apps:\n  - name: \"abcdefg\\x7fijklmnopq\"\n    ports: 1\n" APP_TAIL, "2:11", "control characters", NULL, NULL);
	expect_error("apps:\n  - name: abc\n    ports: 1\n    targets: [\"host-name-12345\\x01.example:80\"]\n",
		     "4:15", "control characters", NULL, NULL);
	cfg_free(load_ok("apps:\n  - name: \"caf\u00e9-\u00fcn\u00efcode-\u00e4pp-\u00f1ame\"\n    ports: 1\n" APP_TAIL));
	cfg_free(load_ok("apps:\n  - name: \"abcdefgh ~!@#$%^&*()_+{}|:<>?abcdefgh\"\n    ports: 1\n" APP_TAIL));
	expect_error("apps:\n  - name: web\n    ports: 1\n" APP_TAIL "  - name: web\n    ports: 2\n" APP_TAIL,
		     "5:11", "duplicate app name 'web'", "line 2 column 5", NULL);
	/* names are compared exactly */
	cfg_free(load_ok("apps:\n  - name: web\n    ports: 1\n" APP_TAIL "  - name: Web\n    ports: 2\n" APP_TAIL));
}

static void test_port_conflicts(void **state)
{
	(void)state;
	/* plain sharing: both apps and the port named */
	expect_error("apps:\n  - name: a\n    ports: [\"8000-8099\"]\n" APP_TAIL
		     "  - name: b\n    ports: [1, 8050]\n" APP_TAIL,
		     "6:16", "port 8050", "app 'b'", "app 'a'");
	/* overlapping ranges inside one app are fine */
	cfg_free(load_ok("apps:\n  - name: a\n    ports: [\"1-100\", \"50-60\", 60]\n" APP_TAIL));
	/* with non-overlapping prefixes two apps share a port */
	struct cfg *cfg = load_ok("apps:\n"
				  "  - name: a\n    ports: 80\n    addresses: [\"10.0.0.0/8\", \"::1\"]\n" APP_TAIL
				  "  - name: b\n    ports: [\"70-90\"]\n    addresses: [\"11.0.0.0/8\", \"::2\"]\n" APP_TAIL
				  "  - name: c\n    ports: 80\n    addresses: [\"127.0.0.1\"]\n" APP_TAIL);
	assert_int_equal(cfg->n_apps, 3);
	cfg_free(cfg);
	/* overlapping prefixes: refused, naming the prefixes */
	expect_error("apps:\n"
		     "  - name: a\n    ports: 80\n    addresses: [\"10.0.0.0/8\"]\n" APP_TAIL
		     "  - name: b\n    ports: 80\n    addresses: [\"192.168.0.0/16\", \"10.1.0.0/16\"]\n" APP_TAIL,
		     "8:35", "port 80", "10.1.0.0/16 of app 'b'", "10.0.0.0/8 of app 'a'");
	/* one app with prefixes, one without: refused */
	expect_error("apps:\n"
		     "  - name: a\n    ports: 80\n    addresses: [\"10.0.0.0/8\"]\n" APP_TAIL
		     "  - name: b\n    ports: 80\n" APP_TAIL,
		     "7:12", "port 80 of app 'b'", "app 'a'", "non-overlapping");
	/* ::/0 overlaps every IPv4 (mapped) prefix */
	expect_error("apps:\n"
		     "  - name: a\n    ports: 80\n    addresses: [\"10.0.0.0/8\"]\n" APP_TAIL
		     "  - name: b\n    ports: 80\n    addresses: [\"::/0\"]\n" APP_TAIL,
		     NULL, "port 80", "app 'b'", "app 'a'");
	/* the conflict is found at its first port, once per pair */
	expect_error("apps:\n  - name: a\n    ports: [\"100-200\"]\n" APP_TAIL
		     "  - name: b\n    ports: [\"150-300\"]\n" APP_TAIL
		     "  - name: c\n    ports: [300]\n" APP_TAIL,
		     NULL, "port 150", "app 'b'", "app 'a'");
	assert_true(find_error(NULL, "port 300", "app 'c'", "app 'b'"));
	assert_int_equal(errs.n, 2);
	/* a range covering a single port of an app defined later */
	expect_error("apps:\n  - name: wide\n    ports: [\"1-65535\"]\n" APP_TAIL
		     "  - name: narrow\n    ports: 65535\n" APP_TAIL,
		     "6:12", "port 65535", "app 'narrow'", "app 'wide'");
}

/* A loopback target on a steered port would send pandit's own upstream
 * connection back into pandit; remote addresses and names are fine. */
static void test_err_target_loops(void **state)
{
	(void)state;
	expect_error("apps:\n  - name: a\n    ports: [7000]\n    targets: [\"127.0.0.1:7000\"]\n",
		     "4:15", "'127.0.0.1:7000'", "app 'a'", "loop");
	expect_error("apps:\n  - name: a\n    ports: [7000]\n    targets: [\"10.0.0.1:1\", \"localhost:7001\"]\n"
		     "  - name: b\n    ports: \"7001-7002\"\n    targets: [\"10.0.0.2:1\"]\n",
		     "4:29", "'localhost:7001'", "by app 'b'", "loop");
	expect_error("apps:\n  - name: a\n    ports: [7000]\n    targets: [\"[::1]:7000\"]\n",
		     "4:15", "'[::1]:7000'", "app 'a'", "loop");
	/* only the addresses an app is restricted to are steered */
	expect_error("apps:\n  - name: a\n    ports: [8000]\n    addresses: [\"127.0.0.2\"]\n"
		     "    targets: [\"10.0.0.1:1\"]\n"
		     "  - name: b\n    ports: [9000]\n    targets: [\"127.0.0.2:8000\"]\n",
		     "8:15", "'127.0.0.2:8000'", "by app 'a'", "loop");
	struct cfg *cfg = load_ok("apps:\n  - name: a\n    ports: [8000]\n    addresses: [\"127.0.0.2\"]\n"
				  "    targets: [\"127.0.0.3:8000\", \"10.0.0.1:8000\", \"backend:8000\"]\n");
	cfg_free(cfg);
}

static void test_anchors_aliases_tags(void **state)
{
	(void)state;
	expect_error("apps:\n  - &a\n    name: x\n", "2:5", "anchors", NULL, NULL);
	expect_error("x: 1\napps: [*a]\n", NULL, NULL, NULL, NULL);
	expect_error("apps:\n  - name: !!str x\n", "2:11", "tags", NULL, NULL);
	expect_error("apps: !!seq []\n", "1:7", "tags", NULL, NULL);
	/* billion laughs: refused at the first anchor, no expansion */
	expect_error("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
		     "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
		     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
		     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
		     "1:4", "anchors", NULL, NULL);
	expect_error("apps: []\n---\napps: []\n", "2:1", "only one YAML document", NULL, NULL);
}

static void test_deep_nesting(void **state)
{
	(void)state;
	char text[4096];
	size_t n = 0;
	n += (size_t)snprintf(text, sizeof(text), "apps: ");
	for (int i = 0; i < 1000; i++)
		text[n++] = '[';
	text[n] = '\0';
	expect_error(text, NULL, "nesting deeper", NULL, NULL);
	n = 0;
	n += (size_t)snprintf(text, sizeof(text), "{\"apps\": ");
	for (int i = 0; i < 100; i++)
		text[n++] = '[';
	for (int i = 0; i < 100; i++)
		text[n++] = ']';
	text[n++] = '}';
	text[n] = '\0';
	expect_error(text, NULL, "nesting deeper", NULL, NULL);
}

static void test_every_error_collected(void **state)
{
	(void)state;
	expect_error("workers: x\n"
		     "bogus: 1\n"
		     "apps:\n"
		     "  - name: a\n    ports: 0\n    targets: [h]\n"
		     "  - name: a\n    ports: 1\n    targets: [\"h:1\"]\n    balance: x\n",
		     "1:10", "workers", NULL, NULL);
	assert_int_equal(errs.n, 6);
	/* in file order */
	assert_non_null(strstr(errs.msgs[0], "t.yaml:1:10:"));
	assert_non_null(strstr(errs.msgs[1], "t.yaml:2:1:"));
	assert_non_null(strstr(errs.msgs[2], "t.yaml:5:12:"));
	assert_non_null(strstr(errs.msgs[3], "t.yaml:6:15:"));
	assert_non_null(strstr(errs.msgs[4], "t.yaml:7:11:"));
	assert_non_null(strstr(errs.msgs[5], "t.yaml:10:14:"));
}

static void test_error_cap(void **state)
{
	(void)state;
	struct sbuf b;
	sbuf_init(&b);
	sbuf_puts(&b, "apps:\n  - name: a\n    targets: [\"h:1\"]\n    ports:\n");
	for (int i = 0; i < 1000; i++)
		sbuf_puts(&b, "      - 0\n");
	sbuf_append(&b, "", 1);
	expect_error(b.data, "5:9", "port '0'", NULL, NULL);
	assert_int_equal(errs.n, CFG_MAX_ERRORS + 1);
	assert_non_null(strstr(errs.msgs[errs.n - 1], "too many errors"));
	sbuf_free(&b);
}

static void test_size_limit(void **state)
{
	(void)state;
	struct cfg *cfg = NULL;
	static const char small[] = "apps: []\n";
	cfg_errors_free(&errs);
	/* refused on its length alone, before any byte is read */
	assert_int_equal(cfg_load_buffer("t.yaml", small, (size_t)CFG_MAX_FILE_SIZE + 1, &cfg, &errs),
			 -EINVAL);
	assert_null(cfg);
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.msgs[0], "limit is 64 MiB"));
}

static void test_node_limit(void **state)
{
	(void)state;
	/* a small file can hold millions of values; the tree is bounded */
	size_t n = CFG_MAX_NODES + 10, len = 4 + 2 * n + 2;
	char *text = malloc(len + 1);
	assert_non_null(text);
	memcpy(text, "a: [", 4);
	for (size_t i = 0; i < n; i++)
		memcpy(text + 4 + 2 * i, "1,", 2);
	memcpy(text + 4 + 2 * n - 1, "]\n", 3);
	text[len] = '\0';
	expect_error(text, NULL, "too many values", NULL, NULL);
	free(text);
}

static void test_load_file(void **state)
{
	(void)state;
	char path[] = "/tmp/pandit-test-config-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	static const char text[] = "apps:\n  - name: f\n    ports: 1\n    targets: [\"h:1\"]\n";
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
	close(fd);
	struct cfg *cfg = NULL;
	cfg_errors_free(&errs);
	assert_int_equal(cfg_load_file(path, &cfg, &errs), 0);
	assert_string_equal(cfg->path, path);
	assert_string_equal(cfg->apps[0].name, "f");
	cfg_free(cfg);

	/* errors name the file */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "apps: [\n", 8), 8);
	close(fd);
	assert_int_equal(cfg_load_file(path, &cfg, &errs), -EINVAL);
	assert_null(cfg);
	assert_true(errs.n >= 1);
	assert_int_equal(strncmp(errs.msgs[0], path, strlen(path)), 0);
	assert_int_equal(errs.msgs[0][strlen(path)], ':');
	unlink(path);

	cfg_errors_free(&errs);
	assert_int_equal(cfg_load_file(path, &cfg, &errs), -ENOENT);
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.msgs[0], "cannot open"));
	cfg_errors_free(&errs);
	assert_true(cfg_load_file("/tmp", &cfg, &errs) < 0);
	assert_null(cfg);
}

static void test_quick(void **state)
{
	(void)state;
	struct cfg *cfg = NULL;
	cfg_errors_free(&errs);
	assert_int_equal(cfg_quick(":8002", "127.0.0.1:9000", &cfg, &errs), 0);
	assert_int_equal(cfg->n_apps, 1);
	assert_string_equal(cfg->apps[0].name, "quick");
	assert_int_equal(cfg->apps[0].ports[0].lo, 8002);
	assert_int_equal(cfg->apps[0].ports[0].hi, 8002);
	assert_int_equal(cfg->apps[0].n_prefixes, 0);
	assert_string_equal(cfg->apps[0].targets[0].host, "127.0.0.1");
	assert_int_equal(cfg->apps[0].targets[0].port, 9000);
	assert_int_equal(cfg->buffer_size, CFG_DEFAULT_BUFFER_SIZE);
	cfg_free(cfg);

	assert_int_equal(cfg_quick("127.0.0.1:8002", "backend:80", &cfg, &errs), 0);
	assert_int_equal(cfg->apps[0].n_prefixes, 1);
	assert_int_equal(cfg->apps[0].prefixes[0].plen, 128);
	assert_int_equal(cfg->apps[0].prefixes[0].addr[10], 0xff);
	assert_int_equal(cfg->apps[0].prefixes[0].addr[12], 127);
	cfg_free(cfg);

	assert_int_equal(cfg_quick("[::1]:8002", "[::1]:9", &cfg, &errs), 0);
	assert_int_equal(cfg->apps[0].prefixes[0].plen, 128);
	assert_memory_equal(cfg->apps[0].prefixes[0].addr, &in6addr_loopback, 16);
	assert_string_equal(cfg->apps[0].targets[0].host, "::1");
	cfg_free(cfg);

	assert_int_equal(cfg_quick("[::]:8002", "h:9", &cfg, &errs), 0);
	assert_int_equal(cfg->apps[0].n_prefixes, 0);
	cfg_free(cfg);
	assert_int_equal(cfg_quick("0.0.0.0:8002", "h:9", &cfg, &errs), 0);
	assert_int_equal(cfg->apps[0].prefixes[0].plen, 96);
	cfg_free(cfg);
	assert_int_equal(errs.n, 0);

	assert_int_equal(cfg_quick("8002", "h:9", &cfg, &errs), -EINVAL);
	assert_null(cfg);
	assert_non_null(strstr(errs.msgs[0], "--listen"));
	cfg_errors_free(&errs);
	assert_int_equal(cfg_quick(":0", "h:9", &cfg, &errs), -EINVAL);
	assert_int_equal(cfg_quick(":80-90", "h:9", &cfg, &errs), -EINVAL);
	assert_int_equal(cfg_quick("localhost:80", "h:9", &cfg, &errs), -EINVAL);
	cfg_errors_free(&errs);
	assert_int_equal(cfg_quick(":8002", "h", &cfg, &errs), -EINVAL);
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.msgs[0], "--forward"));
	assert_non_null(strstr(errs.msgs[0], "missing port"));
	cfg_errors_free(&errs);
	/* both wrong: both reported */
	assert_int_equal(cfg_quick("", NULL, &cfg, &errs), -EINVAL);
	assert_int_equal(errs.n, 2);
}

static void test_app_dup_equal(void **state)
{
	(void)state;
	struct cfg *cfg = load_ok("apps:\n"
				  "  - name: a\n    ports: [1, \"5-9\"]\n    addresses: [\"10.0.0.0/8\"]\n"
				  "    targets: [\"h:1\", \"[::1]:2\"]\n    keepalive: {idle: 5s}\n"
				  "  - name: b\n    ports: [1, \"5-9\"]\n    addresses: [\"11.0.0.0/8\"]\n"
				  "    targets: [\"h:1\", \"[::1]:2\"]\n    keepalive: {idle: 5s}\n");
	struct cfg_app *d = cfg_app_dup(&cfg->apps[0]);
	assert_non_null(d);
	assert_true(cfg_app_equal(d, &cfg->apps[0]));
	assert_ptr_not_equal(d->targets[0].host, cfg->apps[0].targets[0].host);
	assert_false(cfg_app_equal(&cfg->apps[0], &cfg->apps[1]));
	/* marks are ignored */
	d->mark.line = 99;
	d->ports[0].mark.line = 99;
	assert_true(cfg_app_equal(d, &cfg->apps[0]));
	/* every behavioural field counts */
	d->connect_timeout_ms++;
	assert_false(cfg_app_equal(d, &cfg->apps[0]));
	d->connect_timeout_ms--;
	d->targets[1].port++;
	assert_false(cfg_app_equal(d, &cfg->apps[0]));
	d->targets[1].port--;
	d->prefixes[0].plen++;
	assert_false(cfg_app_equal(d, &cfg->apps[0]));
	d->prefixes[0].plen--;
	d->ports[1].hi++;
	assert_false(cfg_app_equal(d, &cfg->apps[0]));
	d->ports[1].hi--;
	d->keepalive.idle_s++;
	assert_false(cfg_app_equal(d, &cfg->apps[0]));
	d->keepalive.idle_s--;
	d->health_check = !d->health_check;
	assert_false(cfg_app_equal(d, &cfg->apps[0]));
	d->health_check = !d->health_check;
	assert_true(cfg_app_equal(d, &cfg->apps[0]));
	cfg_app_free(d);
	cfg_app_free(NULL);
	cfg_free(cfg);
	cfg_free(NULL);
}

/* Same content written in YAML and in JSON (fast path) gives equal configs. */
static void test_json_yaml_same(void **state)
{
	(void)state;
	struct cfg *y = load_ok("apps:\n  - name: \"q\\\"t/\\\\\"\n    ports: [1, \"2-3\"]\n    targets: [\"h:1\"]\n"
				"    connect_timeout: 100\n    health_check: false\n");
	struct cfg *j = load_ok("{\"apps\": [{\"name\": \"q\\\"t\\/\\\\\", \"ports\": [1, \"2-3\"],"
				" \"targets\": [\"h:1\"], \"connect_timeout\": 100, \"health_check\": false}]}");
	assert_true(cfg_app_equal(&y->apps[0], &j->apps[0]));
	assert_string_equal(j->apps[0].name, "q\"t/\\");
	cfg_free(y);
	cfg_free(j);

	/* JSON the fast reader leaves to libyaml: \u escapes and UTF-8 */
	j = load_ok("{\"apps\": [{\"name\": \"caf\\u00e9 \xc3\xa9\", \"ports\": 1, \"targets\": \"h:1\"}]}");
	assert_string_equal(j->apps[0].name, "caf\xc3\xa9 \xc3\xa9");
	cfg_free(j);

	/* tabs and CRLF are fine in JSON */
	j = load_ok("{\r\n\t\"Apps\": [\r\n\t\t{\"Name\": \"t\", \"Ports\": [7], \"Targets\": [\"h:1\"]}\r\n\t]\r\n}\r\n");
	assert_int_equal(j->apps[0].mark.line, 3);
	assert_int_equal(j->apps[0].mark.col, 3);
	cfg_free(j);
}

/* The fast JSON (or block YAML) reader must build exactly the tree libyaml builds. */
static void tree_equal_by(const char *text, bool block)
{
	struct ytree a = { 0 }, b = { 0 };
	struct cfg_errors e = { 0 };
	int ra = block ? ytree_parse_block(&a, text, strlen(text)) : ytree_parse_json(&a, text, strlen(text));
	if (ra)
		fail_msg("fast reader gave up on: %s", text);
	int r = ytree_parse_yaml(&b, "t", text, strlen(text), &e);
	if (r)
		fail_msg("libyaml refused %s: %s", text, e.n ? e.msgs[0] : "?");
	assert_int_equal(a.n, b.n);
	for (size_t i = 0; i < a.n; i++) {
		const struct ynode *x = &a.nodes[i], *y = &b.nodes[i];
		assert_int_equal(x->type, y->type);
		assert_int_equal(x->line, y->line);
		assert_int_equal(x->col, y->col);
		assert_int_equal(x->len, y->len);
		assert_int_equal(x->next, y->next);
		if (x->type == Y_SCALAR) {
			assert_int_equal(x->plain, y->plain);
			assert_memory_equal(ytree_str(&a, x), ytree_str(&b, y), x->len);
		} else {
			assert_int_equal(x->first, y->first);
		}
	}
	ytree_free(&a);
	ytree_free(&b);
	cfg_errors_free(&e);
}

static void tree_equal(const char *text)
{
	tree_equal_by(text, false);
}

#define HTTP_FULL                                                            \
	"apps:\n"                                                            \
	"  - name: web\n"                                                    \
	"    ports: [8080]\n"                                                \
	"    protocol: http\n"                                               \
	"    targets: [\"127.0.0.1:9001\"]\n"                                \
	"    balance: least_request\n"                                       \
	"    http:\n"                                                        \
	"      clusters:\n"                                                  \
	"        - name: api\n"                                              \
	"          targets: [\"127.0.0.1:9101\", \"127.0.0.1:9102\"]\n"      \
	"          balance: round_robin\n"                                   \
	"        - name: static\n"                                           \
	"          targets: [\"[::1]:9201\"]\n"                              \
	"      routes:\n"                                                    \
	"        - host: API.Example.com\n"                                  \
	"          path: /v1/\n"                                             \
	"          cluster: api\n"                                           \
	"        - host: \"*.example.com\"\n"                                \
	"          cluster: static\n"                                        \
	"        - path: /static/\n"                                         \
	"          cluster: static\n"                                        \
	"        - path: /\n"                                                \
	"      header_timeout_ms: 5000\n"                                    \
	"      response_timeout_ms: 2s\n"                                    \
	"      client_idle_timeout_ms: 1000\n"                               \
	"      upstream_idle_timeout_ms: 2000\n"                             \
	"      max_idle_upstream: 0\n"                                       \
	"      max_header_bytes: 16k\n"                                      \
	"      max_headers: 50\n"                                            \
	"      forwarded: false\n"                                           \
	"      access_log: /var/log/pandit/access.log\n"                     \
	"      access_log_format: json\n"

static void test_block_tree_matches_libyaml(void **state)
{
	(void)state;
	static const char *const docs[] = {
		"a: 1\n",
		"apps:\n  - name: web\n    ports: [8080, \"9000-9099\"]\n    targets: [\"127.0.0.1:9001\", \"[::1]:9002\"]\n",
		"# comment\n\nadmin: 127.0.0.1:9900   # trailing\nuser: ''\nworkers: 0\nbuffer_size: 64k\n",
		"apps:\n- name: a\n  ports:\n  - 1\n  - \"2-3\"\n  targets:\n    - h:1\n- name: b\n  ports: 5\n  targets: h:2\n",
		"health_check: {interval: 5s, timeout: 1s, rise: 2}\nk: {}\nl: []\nm: [[1, 2], {a: b}, 'x y', \"q\\\"\\n\"]\n",
		"apps:\n  -   name: spaced\n      ports: 1\n\n\n  - name: x\n    keepalive: off\n    idle_timeout: 0\n",
		"a:\n  b:\n    c: -1\n    d: ~\n    e: 10.0.0.0/8\n  f: .5\nz: +1\n",
		"Apps:\n  - Name: a\n    Ports: [1,2]\n    Targets: [\"h:1\"]\n",
		"a: 'it is # not a comment'\nb: \"also # not\"\nc: x # but this is\n",
		"a: [ 1 , 2 ]\nb: { x: 1 , y: [ 2 ] }\n",
		"x: user@host\ny: a-b_c.d/e~f+g\n",
		"targets: [127.0.0.1:9001, h:2, a.b:c:d]\n",
		HTTP_FULL,
		"apps:\n- name: w\n  http:\n    clusters:\n    - name: a\n      targets:\n      - h:1\n    routes:\n    - {host: a.org, path: /x/, cluster: a}\n    - path: /\n  ports: 1\n",
	};
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
		tree_equal_by(docs[i], true);
	/* outside the subset: left to libyaml */
	static const char *const other[] = {
		"a: |\n  text\n",	"a: >\n  text\n",	   "a: &x 1\n",	  "a: !!str 1\n",
		"a:\n",		"a: b\n  c\n",	   "- a\n",		  "---\na: 1\n",
		"a: [1,\n 2]\n",	"a: \"\\u0041\"\n",   "a:\tb\n",	  "a: 1\r\n",
		"'a': 1\n",		"a: b: c\n",		   "a: x#y\n",	  "a: 'it''s'\n",
		"a: [1, 2,]\n",	"a: {b:1}\n",		   "a: [h:]\n",	  " a: 1\n",
		"a: 1\n b: 2\n",	"a: caf\xc3\xa9\n",	   "a: -\n",		  "a: [1] x\n",
		"a: 1\n...\n",	"a:\n- 1\nb\n",	   "a: \"x\ny\"\n",	  "",
	};
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		struct ytree t = { 0 };
		if (ytree_parse_block(&t, other[i], strlen(other[i])) != 1)
			fail_msg("block reader took: %s", other[i]);
		assert_int_equal(t.n, 0);
	}
}

static void test_json_tree_matches_libyaml(void **state)
{
	(void)state;
	tree_equal("{\"Apps\":[{\"Name\":\"a\",\"Ports\":[1],\"Targets\":[\"h:1\"]}]}");
	tree_equal("{ \"a\" : [ 1 , -2.5e+3 , true , false , null , \"\" , { } , [ ] ] ,\n \"b\\n\\t\\\"\" : {\"c\": 0}}");
	tree_equal("\n\n   {\"x\": [\n  [1,\n 2], {\"y\": \"z\"}]}\n\n");
	tree_equal("{\"k\": \"a\\/b\\\\c\\r\\f\\b\"}");
	tree_equal("{\"apps\": [{\"name\": \"w\", \"protocol\": \"http\", \"http\": {\"clusters\": [{\"name\": \"a\",\n"
		   "  \"targets\": [\"h:1\"]}], \"routes\": [{\"host\": \"*.a.org\", \"path\": \"/v1/\", \"cluster\": \"a\"}],\n"
		   "  \"max_headers\": 20, \"forwarded\": false, \"access_log\": \"-\"}}]}");
	/* not handled by the fast reader */
	struct ytree t = { 0 };
	assert_int_equal(ytree_parse_json(&t, "apps: []", 8), 1);
	assert_int_equal(ytree_parse_json(&t, "{\"a\": 01}", 9), 1);
	assert_int_equal(ytree_parse_json(&t, "{\"a\": 1} x", 10), 1);
	assert_int_equal(ytree_parse_json(&t, "{\"a\": tru}", 10), 1);
	assert_int_equal(ytree_parse_json(&t, "{\"a\": \"\\u0041\"}", 15), 1);
	assert_int_equal(ytree_parse_json(&t, "{\"a\": 1,}", 9), 1);
	assert_int_equal(ytree_parse_json(&t, "{\"a\" 1}", 7), 1);
	assert_int_equal(ytree_parse_json(&t, "{\"a\": 1", 7), 1);
	assert_int_equal(t.n, 0);
}

/* 10,000 apps with 40,000 ports load (YAML and JSON) with equal results. */
/* A loaded config keeps its apps' memory in one pool: big arrays get chunks
 * of their own between small ones, and copies made with cfg_app_dup stay
 * valid after the config is freed. */
static void test_pool_apps(void **state)
{
	(void)state;
	struct sbuf y;
	sbuf_init(&y);
	sbuf_puts(&y, "apps:\n  - name: a\n    ports: [1");
	for (unsigned p = 3; p < 60000; p += 2)
		sbuf_printf(&y, ", %u", p);
	sbuf_puts(&y, "]\n    targets: [\"h1:1\"]\n");
	for (unsigned i = 0; i < 3000; i++)
		sbuf_printf(&y, "  - name: b%u\n    ports: %u\n    addresses: [\"10.0.0.%u/32\", \"::%x/128\"]\n"
				"    targets: [\"host%u.example:%u\", \"[2001:db8::1]:%u\"]\n",
			    i, 60000 + i % 5000, i % 256, i + 1, i, 1 + i, 2 + i);
	sbuf_puts(&y, "  - name: c\n    ports: [2");
	for (unsigned p = 4; p < 60000; p += 2)
		sbuf_printf(&y, ", %u", p);
	sbuf_puts(&y, "]\n    targets: [\"h2:2\"]\n");
	sbuf_append(&y, "", 1);
	assert_false(y.oom);
	struct cfg *cfg = load_ok(y.data);
	sbuf_free(&y);
	assert_int_equal(cfg->n_apps, 3002);
	assert_non_null(cfg->pool);
	assert_int_equal(cfg->apps[0].n_ports, 30000);
	assert_int_equal(cfg->apps[3001].n_ports, 29999);
	assert_int_equal(cfg->apps[0].ports[29999].lo, 59999);
	assert_int_equal(cfg->apps[3001].ports[29998].hi, 59998);
	struct cfg_app *d[3];
	size_t pick[3] = { 0, 1234, 3001 };
	for (int k = 0; k < 3; k++) {
		d[k] = cfg_app_dup(&cfg->apps[pick[k]]);
		assert_non_null(d[k]);
		assert_true(cfg_app_equal(d[k], &cfg->apps[pick[k]]));
	}
	const struct cfg_app *m = &cfg->apps[1234];
	assert_string_equal(m->name, "b1233");
	assert_int_equal(m->n_prefixes, 2);
	assert_int_equal(m->n_targets, 2);
	assert_string_equal(m->targets[0].host, "host1233.example");
	assert_int_equal(m->targets[0].port, 1234);
	assert_string_equal(m->targets[1].host, "2001:db8::1");
	cfg_free(cfg);
	assert_string_equal(d[1]->name, "b1233");
	assert_string_equal(d[1]->targets[0].host, "host1233.example");
	assert_int_equal(d[1]->targets[1].port, 1235);
	assert_int_equal(d[0]->ports[0].lo, 1);
	assert_int_equal(d[2]->ports[29998].lo, 59998);
	for (int k = 0; k < 3; k++)
		cfg_app_free(d[k]);
}

static void test_big_config(void **state)
{
	(void)state;
	struct sbuf y, j;
	sbuf_init(&y);
	sbuf_init(&j);
	sbuf_puts(&y, "apps:\n");
	sbuf_puts(&j, "{\"Apps\":[");
	for (unsigned i = 0; i < 10000; i++) {
		unsigned p = 10000 + i * 5;
		sbuf_printf(&y, "  - name: app%u\n    ports: [%u, %u, \"%u-%u\"]\n"
				"    targets: [\"127.0.0.1:%u\", \"backend%u.example:80\"]\n",
			    i, p, p + 2, p + 3, p + 4, 60000 + i % 1000, i);
		sbuf_printf(&j, "%s{\"Name\":\"app%u\",\"Ports\":[%u,%u,\"%u-%u\"],"
				"\"Targets\":[\"127.0.0.1:%u\",\"backend%u.example:80\"]}",
			    i ? "," : "", i, p, p + 2, p + 3, p + 4, 60000 + i % 1000, i);
	}
	sbuf_puts(&j, "]}");
	sbuf_append(&y, "", 1);
	sbuf_append(&j, "", 1);
	assert_false(y.oom || j.oom);
	struct cfg *cy = load_ok(y.data), *cj = load_ok(j.data);
	assert_int_equal(cy->n_apps, 10000);
	assert_int_equal(cj->n_apps, 10000);
	size_t ports = 0;
	for (size_t i = 0; i < cy->n_apps; i++) {
		assert_true(cfg_app_equal(&cy->apps[i], &cj->apps[i]));
		for (size_t r = 0; r < cy->apps[i].n_ports; r++)
			ports += cy->apps[i].ports[r].hi - cy->apps[i].ports[r].lo + 1u;
	}
	assert_int_equal(ports, 40000);
	assert_string_equal(cy->apps[9999].name, "app9999");
	cfg_free(cy);
	cfg_free(cj);

	/* many apps on one port, each with its own address: valid */
	sbuf_reset(&y);
	sbuf_puts(&y, "apps:\n");
	for (unsigned i = 0; i < 5000; i++)
		sbuf_printf(&y, "  - {name: s%u, ports: 80, addresses: [\"10.%u.%u.0/24\"], targets: [\"h:1\"]}\n",
			    i, i / 256, i % 256);
	sbuf_append(&y, "", 1);
	cy = load_ok(y.data);
	assert_int_equal(cy->n_apps, 5000);
	cfg_free(cy);
	sbuf_free(&y);
	sbuf_free(&j);
}


/* --- protocol http ------------------------------------------------------------ */

static void test_http_full(void **state)
{
	(void)state;
	struct cfg *cfg = load_ok(HTTP_FULL);
	const struct cfg_app *a = &cfg->apps[0];
	const struct cfg_http *h = &a->http;
	assert_int_equal(a->protocol, PROTO_HTTP);
	assert_int_equal(a->policy, LB_LEAST_CONN);
	/* targets: default ++ api ++ static */
	assert_int_equal(a->n_targets, 4);
	assert_string_equal(a->targets[0].host, "127.0.0.1");
	assert_int_equal(a->targets[0].port, 9001);
	assert_int_equal(a->targets[1].port, 9101);
	assert_int_equal(a->targets[2].port, 9102);
	assert_string_equal(a->targets[3].host, "::1");
	assert_int_equal(a->targets[3].port, 9201);
	assert_int_equal(h->n_clusters, 3);
	assert_string_equal(h->clusters[0].name, "default");
	assert_int_equal(h->clusters[0].target_first, 0);
	assert_int_equal(h->clusters[0].n_targets, 1);
	assert_int_equal(h->clusters[0].policy, LB_LEAST_CONN);
	assert_string_equal(h->clusters[1].name, "api");
	assert_int_equal(h->clusters[1].target_first, 1);
	assert_int_equal(h->clusters[1].n_targets, 2);
	assert_int_equal(h->clusters[1].policy, LB_ROUND_ROBIN);
	assert_int_equal(h->clusters[1].mark.line, 9);
	assert_string_equal(h->clusters[2].name, "static");
	assert_int_equal(h->clusters[2].target_first, 3);
	assert_int_equal(h->clusters[2].n_targets, 1);
	assert_int_equal(h->clusters[2].policy, LB_LEAST_CONN);	/* the app's */
	assert_int_equal(h->n_routes, 4);
	assert_string_equal(h->routes[0].host, "api.example.com");	/* lower case */
	assert_string_equal(h->routes[0].path, "/v1/");
	assert_int_equal(h->routes[0].cluster, 1);
	assert_int_equal(h->routes[0].mark.line, 15);
	assert_string_equal(h->routes[1].host, "*.example.com");
	assert_string_equal(h->routes[1].path, "/");
	assert_int_equal(h->routes[1].cluster, 2);
	assert_null(h->routes[2].host);
	assert_string_equal(h->routes[2].path, "/static/");
	assert_int_equal(h->routes[2].cluster, 2);
	assert_null(h->routes[3].host);
	assert_int_equal(h->routes[3].cluster, 0);
	assert_int_equal(h->header_timeout_ms, 5000);
	assert_int_equal(h->response_timeout_ms, 2000);
	assert_int_equal(h->client_idle_ms, 1000);
	assert_int_equal(h->upstream_idle_ms, 2000);
	assert_int_equal(h->max_idle_upstream, 0);
	assert_int_equal(h->max_header_bytes, 16384);
	assert_int_equal(h->max_headers, 50);
	assert_false(h->forwarded);
	assert_string_equal(h->access_log, "/var/log/pandit/access.log");
	assert_int_equal(h->log_format, HTTP_LOG_JSON);

	/* a copy is equal, owns its memory, and every http field counts */
	struct cfg_app *d = cfg_app_dup(a);
	assert_non_null(d);
	assert_true(cfg_app_equal(d, a));
	assert_ptr_not_equal(d->http.clusters[1].name, h->clusters[1].name);
	assert_ptr_not_equal(d->http.routes[0].host, h->routes[0].host);
	assert_ptr_not_equal(d->http.access_log, h->access_log);
	uint32_t *fields[] = {
		&d->http.header_timeout_ms, &d->http.response_timeout_ms, &d->http.client_idle_ms,
		&d->http.upstream_idle_ms, &d->http.max_idle_upstream, &d->http.max_header_bytes,
		&d->http.max_headers, &d->http.clusters[1].target_first, &d->http.clusters[2].n_targets,
		&d->http.routes[2].cluster,
	};
	for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
		(*fields[k])++;
		assert_false(cfg_app_equal(d, a));
		(*fields[k])--;
		assert_true(cfg_app_equal(d, a));
	}
	d->http.forwarded = true;
	assert_false(cfg_app_equal(d, a));
	d->http.forwarded = false;
	d->http.log_format = HTTP_LOG_COMBINED;
	assert_false(cfg_app_equal(d, a));
	d->http.log_format = HTTP_LOG_JSON;
	d->http.clusters[1].policy = LB_RANDOM;
	assert_false(cfg_app_equal(d, a));
	d->http.clusters[1].policy = LB_ROUND_ROBIN;
	d->http.clusters[2].name[0] = 'S';
	assert_false(cfg_app_equal(d, a));
	d->http.clusters[2].name[0] = 's';
	d->http.routes[0].path[1] = 'w';
	assert_false(cfg_app_equal(d, a));
	d->http.routes[0].path[1] = 'v';
	d->http.routes[1].host[0] = 'x';
	assert_false(cfg_app_equal(d, a));
	d->http.routes[1].host[0] = '*';
	d->http.access_log[1] = 'x';
	assert_false(cfg_app_equal(d, a));
	d->http.access_log[1] = 'v';
	d->http.n_routes--;
	assert_false(cfg_app_equal(d, a));
	d->http.n_routes++;
	d->http.n_clusters--;
	assert_false(cfg_app_equal(d, a));
	d->http.n_clusters++;
	assert_true(cfg_app_equal(d, a));
	cfg_app_free(d);
	cfg_free(cfg);

	/* a tcp app: its (default, unused) http settings are not compared; a
	 * change of protocol is a change */
	cfg = load_ok("apps:\n  - {name: t, ports: 1, targets: \"h:1\"}\n");
	a = &cfg->apps[0];
	assert_int_equal(a->http.n_clusters, 0);
	d = cfg_app_dup(a);
	assert_non_null(d);
	assert_true(cfg_app_equal(d, a));
	d->http.max_headers++;
	d->http.forwarded = false;
	assert_true(cfg_app_equal(d, a));
	d->protocol = PROTO_HTTP;
	assert_false(cfg_app_equal(d, a));
	cfg_app_free(d);
	cfg_free(cfg);
}

/* The shipped HTTP example loads, every app an http app with its clusters. */
static void test_http_example_file(void **state)
{
	(void)state;
	static const char *const paths[] = { "examples/http.yaml", "../examples/http.yaml",
					     "../../examples/http.yaml" };
	for (size_t i = 0; i < 3; i++) {
		if (access(paths[i], R_OK))
			continue;
		struct cfg *cfg = NULL;
		cfg_errors_free(&errs);
		int r = cfg_load_file(paths[i], &cfg, &errs);
		if (r)
			dump_errors();
		assert_int_equal(r, 0);
		assert_int_equal(cfg->apps[0].protocol, PROTO_HTTP);
		assert_int_equal(cfg->apps[0].http.n_clusters, 3);
		assert_true(cfg->apps[0].http.n_routes > 0);
		cfg_free(cfg);
		return;
	}
	skip();
}

/* An http app has cluster "default" (its targets), with or without an http
 * section, and gets every default; other apps carry the http defaults but
 * no clusters (nothing of theirs reads them, and a reload of many apps
 * neither builds nor compares them). */
static void test_http_defaults(void **state)
{
	(void)state;
	struct cfg *cfg = load_ok("apps:\n"
				  "  - name: t\n    ports: 1\n    targets: [\"h:1\", \"h:2\"]\n    balance: random\n"
				  "  - name: w\n    ports: 2\n    protocol: http\n    targets: [\"h:3\"]\n"
				  "  - name: e\n    ports: 3\n    protocol: http\n    targets: [\"h:4\"]\n    http:\n"
				  "  - name: l\n    ports: 4\n    protocol: http\n    targets: [\"h:4\"]\n"
				  "    http: {access_log: \"-\"}\n");
	for (size_t i = 0; i < cfg->n_apps; i++) {
		const struct cfg_app *a = &cfg->apps[i];
		const struct cfg_http *h = &a->http;
		if (i == 0) {
			assert_int_equal(h->n_clusters, 0);
			assert_null(h->clusters);
		} else {
			assert_int_equal(h->n_clusters, 1);
			assert_string_equal(h->clusters[0].name, "default");
			assert_int_equal(h->clusters[0].target_first, 0);
			assert_int_equal(h->clusters[0].n_targets, a->n_targets);
			assert_int_equal(h->clusters[0].policy, a->policy);
		}
		assert_int_equal(h->n_routes, 0);
		assert_int_equal(h->header_timeout_ms, CFG_DEFAULT_HTTP_HEADER_TIMEOUT_MS);
		assert_int_equal(h->response_timeout_ms, CFG_DEFAULT_HTTP_RESPONSE_TIMEOUT_MS);
		assert_int_equal(h->client_idle_ms, CFG_DEFAULT_HTTP_CLIENT_IDLE_MS);
		assert_int_equal(h->upstream_idle_ms, CFG_DEFAULT_HTTP_UPSTREAM_IDLE_MS);
		assert_int_equal(h->max_idle_upstream, CFG_DEFAULT_HTTP_MAX_IDLE_UPSTREAM);
		assert_int_equal(h->max_header_bytes, CFG_DEFAULT_HTTP_MAX_HEADER_BYTES);
		assert_int_equal(h->max_headers, CFG_DEFAULT_HTTP_MAX_HEADERS);
		assert_true(h->forwarded);
		if (i < 3) {
			assert_null(h->access_log);
			assert_int_equal(h->log_format, HTTP_LOG_NONE);
		}
	}
	assert_int_equal(cfg->apps[0].protocol, PROTO_TCP);
	assert_int_equal(cfg->apps[0].n_targets, 2);
	assert_int_equal(cfg->apps[0].policy, LB_RANDOM);
	assert_int_equal(cfg->apps[1].protocol, PROTO_HTTP);
	assert_string_equal(cfg->apps[3].http.access_log, "-");
	assert_int_equal(cfg->apps[3].http.log_format, HTTP_LOG_COMBINED);
	/* least_conn is still the same policy */
	cfg_free(cfg);
	cfg = load_ok("apps:\n  - {name: a, ports: 1, targets: h:1, balance: least_conn}\n");
	assert_int_equal(cfg->apps[0].policy, LB_LEAST_CONN);
	cfg_free(cfg);

	/* quick mode: the caller sets the protocol afterwards; the model is whole */
	assert_int_equal(cfg_quick(":8002", "127.0.0.1:9000", &cfg, &errs), 0);
	const struct cfg_http *h = &cfg->apps[0].http;
	assert_int_equal(h->n_clusters, 1);
	assert_string_equal(h->clusters[0].name, "default");
	assert_int_equal(h->clusters[0].n_targets, 1);
	assert_int_equal(h->max_headers, CFG_DEFAULT_HTTP_MAX_HEADERS);
	assert_true(h->forwarded);
	cfg->apps[0].protocol = PROTO_HTTP;
	struct cfg_app *d = cfg_app_dup(&cfg->apps[0]);
	assert_true(cfg_app_equal(d, &cfg->apps[0]));
	cfg_app_free(d);
	cfg_free(cfg);

	assert_string_equal(cfg_protocol_name(PROTO_HTTP), "http");
	enum app_protocol p = PROTO_TCP;
	assert_int_equal(cfg_protocol_parse("http", &p), 0);
	assert_int_equal(p, PROTO_HTTP);
}

/* Only clusters, no targets of the app's own: fine when every route names a cluster. */
static void test_http_clusters_only(void **state)
{
	(void)state;
	struct cfg *cfg = load_ok("apps:\n  - name: w\n    ports: 1\n    protocol: http\n    http:\n"
				  "      clusters:\n        - {name: a, targets: [\"h:1\"]}\n"
				  "        - {name: b, targets: h:2}\n"
				  "      routes:\n        - {path: /a, cluster: a}\n        - {cluster: b}\n");
	const struct cfg_app *a = &cfg->apps[0];
	assert_int_equal(a->n_targets, 2);
	assert_int_equal(a->http.n_clusters, 3);
	assert_int_equal(a->http.clusters[0].n_targets, 0);
	assert_int_equal(a->http.clusters[1].target_first, 0);
	assert_int_equal(a->http.clusters[2].target_first, 1);
	assert_int_equal(a->http.routes[1].cluster, 2);
	cfg_free(cfg);

	/* the same in JSON */
	cfg = load_ok("{\"apps\": [{\"name\": \"w\", \"ports\": [1], \"protocol\": \"http\", \"http\": {"
		      "\"clusters\": [{\"name\": \"a\", \"targets\": [\"h:1\"]}],"
		      "\"routes\": [{\"host\": \"X.org\", \"cluster\": \"a\"}]}}]}");
	assert_int_equal(cfg->apps[0].http.n_clusters, 2);
	assert_string_equal(cfg->apps[0].http.routes[0].host, "x.org");
	assert_int_equal(cfg->apps[0].http.routes[0].cluster, 1);
	cfg_free(cfg);
}

/* The loopback loop check covers the clusters' targets. */
static void test_http_target_loops(void **state)
{
	(void)state;
	expect_error("apps:\n  - name: w\n    ports: 80\n    protocol: http\n    targets: [\"h:1\"]\n"
		     "    http:\n      clusters:\n        - name: c\n          targets: [\"127.0.0.1:80\"]\n",
		     "9:21", "target '127.0.0.1:80' of app 'w'", "loop", NULL);
}

#define HTTP_APP "apps:\n  - name: w\n    ports: 1\n    protocol: http\n    targets: [\"h:1\"]\n"

static void test_http_errors(void **state)
{
	(void)state;
	expect_error("apps:\n  - name: w\n    ports: 1\n    targets: [\"h:1\"]\n    http: {forwarded: false}\n",
		     "5:11", "http settings need 'protocol: http'", NULL, NULL);
	expect_error(HTTP_APP "    http: {bogus: 1}\n", "6:12", "unknown key 'bogus' in http of app 'w'", NULL, NULL);
	expect_error(HTTP_APP "    http: [1]\n", "6:11", "http must be a mapping", NULL, NULL);
	expect_error("apps:\n  - {name: w, ports: 1, targets: h:1, protocol: gopher}\n", "2:49",
		     "protocol 'gopher' is not one of tcp, foo, http", NULL, NULL);
	expect_error(HTTP_APP "    balance: fastest\n", "6:14", "least_request", NULL, NULL);
	/* clusters */
	expect_error(HTTP_APP "    http:\n      clusters:\n        - {name: c, targets: [\"h:2\"], weight: 1}\n",
		     "8:39", "unknown key 'weight' in a cluster of app 'w'", NULL, NULL);
	expect_error(HTTP_APP "    http:\n      clusters:\n        - {name: default, targets: [\"h:2\"]}\n",
		     "8:18", "'default' is reserved", NULL, NULL);
	expect_error(HTTP_APP "    http:\n      clusters:\n        - {name: c, targets: [\"h:2\"]}\n"
		     "        - {name: c, targets: [\"h:3\"]}\n",
		     "9:18", "duplicate cluster name 'c'", "line 8 column 11", NULL);
	expect_error(HTTP_APP "    http:\n      clusters:\n        - {name: c}\n", "8:11", "cluster 'c' has no targets",
		     NULL, NULL);
	expect_error(HTTP_APP "    http:\n      clusters:\n        - {name: c, targets: []}\n", "8:30",
		     "cluster 'c' has no targets", NULL, NULL);
	expect_error(HTTP_APP "    http:\n      clusters:\n        - {targets: [h:2]}\n", "8:11", "a cluster has no name",
		     NULL, NULL);
	expect_error(HTTP_APP "    http:\n      clusters:\n        - {name: c, targets: [\"h\"]}\n", "8:31",
		     "target 'h'", "missing port", NULL);
	expect_error(HTTP_APP "    http:\n      clusters:\n        - {name: c, targets: [h:2], balance: x}\n",
		     "8:46", "unknown cluster balance 'x'", NULL, NULL);
	expect_error(HTTP_APP "    http:\n      clusters: {name: c}\n", "7:17", "clusters must be a list", NULL, NULL);
	expect_error(HTTP_APP "    http:\n      clusters: [1]\n", "7:18", "a cluster must be a mapping", NULL, NULL);
	/* routes */
	expect_error(HTTP_APP "    http:\n      routes:\n        - {cluster: nope}\n", "8:21",
		     "route to unknown cluster 'nope'", NULL, NULL);
	expect_error(HTTP_APP "    http:\n      routes:\n        - {path: /, colour: red}\n", "8:21",
		     "unknown key 'colour' in a route of app 'w'", NULL, NULL);
	expect_error(HTTP_APP "    http:\n      routes:\n        - {path: /a}\n        - {path: /b}\n        - {path: /a}\n",
		     "10:11", "duplicate route", "line 8 column 11", NULL);
	expect_error(HTTP_APP "    http:\n      routes:\n        - {host: a.org}\n        - {host: A.ORG, path: /}\n",
		     "9:11", "duplicate route", NULL, NULL);
	static const char *const bad_hosts[] = {
		"\"a.org:80\"", "\"*\"", "\"a.*.org\"", "\"**.org\"", "\"a..org\"", "a.org.", "\"[::1]\"", "\"a b\"", "\"\"",
		"\"*.\"", "\"a/b\"",
	};
	for (size_t k = 0; k < sizeof(bad_hosts) / sizeof(bad_hosts[0]); k++) {
		char doc[512];
		snprintf(doc, sizeof(doc), HTTP_APP "    http:\n      routes:\n        - host: %s\n", bad_hosts[k]);
		expect_error(doc, "8:17", "route host", NULL, NULL);
	}
	static const char *const bad_paths[] = {
		"v1", "\"\"", "\"/a b\"", "\"/a?x=1\"", "\"/a#x\"", "\"/a\\tb\"", "\"/caf\xc3\xa9\"",
	};
	for (size_t k = 0; k < sizeof(bad_paths) / sizeof(bad_paths[0]); k++) {
		char doc[512];
		snprintf(doc, sizeof(doc), HTTP_APP "    http:\n      routes:\n        - path: %s\n", bad_paths[k]);
		expect_error(doc, "8:17", "route path", NULL, NULL);
	}
	expect_error(HTTP_APP "    http:\n      routes: {path: /}\n", "7:15", "routes must be a list", NULL, NULL);
	/* requests to the default cluster of an app without targets of its own */
	const char *only_c = "apps:\n  - name: w\n    ports: 1\n    protocol: http\n    http:\n"
			     "      clusters: [{name: c, targets: [h:2]}]\n";
	char doc[1024];
	snprintf(doc, sizeof(doc), "%s      routes:\n        - {path: /c, cluster: c}\n        - {path: /}\n", only_c);
	expect_error(doc, "9:11", "cluster 'default'", "has none", NULL);
	snprintf(doc, sizeof(doc), "%s      routes:\n        - {path: /, cluster: default}\n", only_c);
	expect_error(doc, "8:30", "cluster 'default'", "has none", NULL);
	expect_error(only_c, "6:7", "without http routes", NULL, NULL);
	snprintf(doc, sizeof(doc), "%s    targets: []\n", only_c);
	expect_error(doc, "6:7", "without http routes", NULL, NULL);
	/* no targets at all */
	expect_error("apps:\n  - name: w\n    ports: 1\n    protocol: http\n", "2:5", "app 'w' has no targets", NULL, NULL);
	expect_error("apps:\n  - name: w\n    ports: 1\n    protocol: http\n    targets: []\n    http: {}\n", "5:14",
		     "app 'w' has no targets", NULL, NULL);
	/* numbers */
	expect_error(HTTP_APP "    http: {header_timeout_ms: 0}\n", "6:31", "header_timeout_ms must be at least 1 ms", NULL, NULL);
	expect_error(HTTP_APP "    http: {response_timeout_ms: x}\n", "6:33", "response_timeout_ms", "malformed duration", NULL);
	expect_error(HTTP_APP "    http: {client_idle_timeout_ms: -1}\n", "6:36", "client_idle_timeout_ms", NULL, NULL);
	expect_error(HTTP_APP "    http: {upstream_idle_timeout_ms: 0}\n", "6:38", "upstream_idle_timeout_ms", NULL, NULL);
	expect_error(HTTP_APP "    http: {max_idle_upstream: 70000}\n", "6:31", "max_idle_upstream must be from 0 to 65536", NULL, NULL);
	expect_error(HTTP_APP "    http: {max_header_bytes: 1000}\n", "6:30", "max_header_bytes '1000'", "from 1024", NULL);
	expect_error(HTTP_APP "    http: {max_header_bytes: 2m}\n", "6:30", "max_header_bytes '2m'", NULL, NULL);
	expect_error(HTTP_APP "    http: {max_headers: 7}\n", "6:25", "max_headers must be from 8 to 1000", NULL, NULL);
	expect_error(HTTP_APP "    http: {max_headers: 1001}\n", "6:25", "max_headers must be from 8 to 1000", NULL, NULL);
	expect_error(HTTP_APP "    http: {forwarded: maybe}\n", "6:23", "forwarded must be true or false", NULL, NULL);
	/* access log */
	expect_error(HTTP_APP "    http: {access_log_format: json}\n", "6:31", "access_log_format needs an access_log", NULL, NULL);
	expect_error(HTTP_APP "    http: {access_log: /x, access_log_format: xml}\n", "6:47", "not one of combined, json", NULL, NULL);
	expect_error(HTTP_APP "    http: {access_log: x.log}\n", "6:24", "absolute file path", NULL, NULL);
	expect_error(HTTP_APP "    http: {access_log: \"\"}\n", "6:24", "absolute file path", NULL, NULL);
	expect_error(HTTP_APP "    http: {access_log: \"/a\\nb\"}\n", "6:24", "absolute file path", NULL, NULL);
	/* every error is collected */
	struct cfg *cfg = load(HTTP_APP "    http:\n      clusters:\n        - {name: default, targets: [h:2]}\n"
				"      routes:\n        - {cluster: x}\n      max_headers: 1\n");
	assert_null(cfg);
	assert_int_equal(errs.n, 3);
	assert_true(find_error("8:18", "reserved", NULL, NULL));
	assert_true(find_error("10:21", "unknown cluster 'x'", NULL, NULL));
	assert_true(find_error("11:20", "max_headers", NULL, NULL));
}

/* Limits: clusters, routes and the targets of an app with its clusters. */
static void test_http_limits(void **state)
{
	(void)state;
	struct sbuf y;
	sbuf_init(&y);
	sbuf_puts(&y, HTTP_APP "    http:\n      clusters:\n");
	for (unsigned k = 0; k < CFG_MAX_HTTP_CLUSTERS - 1; k++)
		sbuf_printf(&y, "        - {name: c%u, targets: [h:%u]}\n", k, k + 2);
	struct cfg *cfg = load_ok(y.data);
	assert_int_equal(cfg->apps[0].http.n_clusters, CFG_MAX_HTTP_CLUSTERS);
	assert_int_equal(cfg->apps[0].n_targets, CFG_MAX_HTTP_CLUSTERS);
	assert_int_equal(cfg->apps[0].http.clusters[CFG_MAX_HTTP_CLUSTERS - 1].target_first,
			 CFG_MAX_HTTP_CLUSTERS - 1);
	cfg_free(cfg);
	sbuf_puts(&y, "        - {name: one-too-many, targets: [h:1]}\n");
	expect_error(y.data, "8:9", "http clusters; at most 255", NULL, NULL);

	sbuf_reset(&y);
	sbuf_puts(&y, HTTP_APP "    http:\n      routes:\n");
	for (unsigned k = 0; k < CFG_MAX_HTTP_ROUTES; k++)
		sbuf_printf(&y, "        - {path: /p%u}\n", k);
	cfg = load_ok(y.data);
	assert_int_equal(cfg->apps[0].http.n_routes, CFG_MAX_HTTP_ROUTES);
	cfg_free(cfg);
	sbuf_puts(&y, "        - {path: /last}\n");
	expect_error(y.data, "8:9", "http routes; at most 4096", NULL, NULL);

	/* 1024 targets with the clusters' */
	sbuf_reset(&y);
	sbuf_puts(&y, "apps:\n  - name: w\n    ports: 1\n    protocol: http\n    targets: [h:1");
	for (unsigned k = 1; k < CFG_MAX_TARGETS_PER_APP - 2; k++)
		sbuf_printf(&y, ", h:%u", k + 1);
	sbuf_puts(&y, "]\n    http:\n      clusters:\n        - {name: c, targets: [a:1, a:2]}\n");
	cfg = load_ok(y.data);
	assert_int_equal(cfg->apps[0].n_targets, CFG_MAX_TARGETS_PER_APP);
	assert_int_equal(cfg->apps[0].http.clusters[1].target_first, CFG_MAX_TARGETS_PER_APP - 2);
	cfg_free(cfg);
	sbuf_puts(&y, "        - {name: d, targets: [a:3]}\n");
	expect_error(y.data, "7:7", "1025 targets with those of its http clusters", NULL, NULL);
	sbuf_free(&y);
}

/* kernel_splice: auto by default; auto, on, off (true, false); on only for
 * tcp and foo apps; part of an app's identity for reloads. */
static void test_kernel_splice(void **state)
{
	(void)state;
	struct cfg *cfg = load_ok("apps:\n"
				  "  - name: d\n    ports: 80\n    targets: h:1\n"
				  "  - name: a\n    ports: 81\n    targets: h:1\n    kernel_splice: auto\n"
				  "  - name: on\n    ports: 82\n    targets: h:1\n    kernel_splice: on\n"
				  "  - name: off\n    ports: 83\n    targets: h:1\n    kernel_splice: off\n"
				  "  - name: t\n    ports: 84\n    targets: h:1\n    kernel_splice: true\n"
				  "  - name: f\n    ports: 85\n    targets: h:1\n    kernel_splice: false\n"
				  "  - name: foo\n    ports: 86\n    targets: h:1\n    protocol: foo\n"
				  "    kernel_splice: off\n");
	assert_int_equal(cfg->apps[0].kernel_splice, CFG_KERNEL_AUTO);
	assert_int_equal(cfg->apps[1].kernel_splice, CFG_KERNEL_AUTO);
	assert_int_equal(cfg->apps[2].kernel_splice, CFG_KERNEL_ON);
	assert_int_equal(cfg->apps[3].kernel_splice, CFG_KERNEL_OFF);
	assert_int_equal(cfg->apps[4].kernel_splice, CFG_KERNEL_ON);
	assert_int_equal(cfg->apps[5].kernel_splice, CFG_KERNEL_OFF);
	assert_int_equal(cfg->apps[6].kernel_splice, CFG_KERNEL_OFF);
	/* a reload that changes only kernel_splice changes the app */
	struct cfg_app *d = cfg_app_dup(&cfg->apps[0]);
	assert_non_null(d);
	assert_true(cfg_app_equal(d, &cfg->apps[0]));
	d->kernel_splice = CFG_KERNEL_OFF;
	assert_false(cfg_app_equal(d, &cfg->apps[0]));
	cfg_app_free(d);
	cfg_free(cfg);
	/* JSON too */
	cfg_errors_free(&errs);
	const char *json = "{\"apps\":[{\"name\":\"j\",\"ports\":[80],\"targets\":[\"h:1\"],"
			   "\"kernel_splice\":\"off\"}]}";
	assert_int_equal(cfg_load_buffer("t.json", json, strlen(json), &cfg, &errs), 0);
	assert_int_equal(cfg->apps[0].kernel_splice, CFG_KERNEL_OFF);
	cfg_free(cfg);

	expect_error("apps:\n  - name: a\n    ports: 80\n    targets: h:1\n    kernel_splice: always\n",
		     "5:20", "kernel_splice", "always", "auto, on, off");
	expect_error("apps:\n  - name: a\n    ports: 80\n    targets: h:1\n    kernel_splice: [on]\n",
		     "5:20", "kernel_splice", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: 80\n    targets: h:1\n    protocol: http\n"
		     "    kernel_splice: on\n",
		     "6:20", "kernel_splice: on", "protocol tcp or foo", NULL);
	/* foo apps are framed in the kernel: on is theirs too */
	cfg = load_ok("apps:\n  - name: a\n    ports: 80\n    targets: h:1\n    protocol: foo\n"
		      "    kernel_splice: on\n");
	assert_int_equal(cfg->apps[0].kernel_splice, CFG_KERNEL_ON);
	cfg_free(cfg);
}

/* local_shortcut: auto by default; auto, off (false); auto for tcp and
 * foo apps, not http; part of an app's identity. shortcut_cgroup (absent: off) and
 * shortcut_backlog (default 4 MiB) at the top level. */
static void test_local_shortcut(void **state)
{
	(void)state;
	struct cfg *cfg = load_ok("apps:\n"
				  "  - name: d\n    ports: 80\n    targets: h:1\n"
				  "  - name: a\n    ports: 81\n    targets: h:1\n    local_shortcut: auto\n"
				  "  - name: off\n    ports: 82\n    targets: h:1\n    local_shortcut: off\n"
				  "  - name: f\n    ports: 83\n    targets: h:1\n    local_shortcut: false\n"
				  "  - name: foo\n    ports: 84\n    targets: h:1\n    protocol: foo\n"
				  "    local_shortcut: off\n"
				  "  - name: fa\n    ports: 85\n    targets: h:1\n    protocol: foo\n"
				  "    local_shortcut: auto\n");
	assert_null(cfg->shortcut_cgroup);
	assert_int_equal(cfg->shortcut_backlog, CFG_DEFAULT_SHORTCUT_BACKLOG);
	assert_int_equal(cfg->shortcut_backlog, 4u << 20);
	assert_int_equal(cfg->apps[0].local_shortcut, CFG_SHORTCUT_AUTO);
	assert_int_equal(cfg->apps[1].local_shortcut, CFG_SHORTCUT_AUTO);
	assert_int_equal(cfg->apps[2].local_shortcut, CFG_SHORTCUT_OFF);
	assert_int_equal(cfg->apps[3].local_shortcut, CFG_SHORTCUT_OFF);
	assert_int_equal(cfg->apps[4].local_shortcut, CFG_SHORTCUT_OFF);
	assert_int_equal(cfg->apps[5].local_shortcut, CFG_SHORTCUT_AUTO);
	/* a reload that changes only local_shortcut changes the app */
	struct cfg_app *d = cfg_app_dup(&cfg->apps[0]);
	assert_non_null(d);
	assert_true(cfg_app_equal(d, &cfg->apps[0]));
	d->local_shortcut = CFG_SHORTCUT_OFF;
	assert_false(cfg_app_equal(d, &cfg->apps[0]));
	cfg_app_free(d);
	cfg_free(cfg);

	cfg = load_ok("shortcut_cgroup: /sys/fs/cgroup/mesh\nshortcut_backlog: 16m\n"
		      "apps:\n  - name: d\n    ports: 80\n    targets: h:1\n");
	assert_string_equal(cfg->shortcut_cgroup, "/sys/fs/cgroup/mesh");
	assert_int_equal(cfg->shortcut_backlog, 16u << 20);
	cfg_free(cfg);
	cfg = load_ok("shortcut_cgroup: null\napps: []\n");
	assert_null(cfg->shortcut_cgroup);
	cfg_free(cfg);
	/* JSON too */
	cfg_errors_free(&errs);
	const char *json = "{\"shortcut_cgroup\":\"/sys/fs/cgroup/x\",\"apps\":[{\"name\":\"j\","
			   "\"ports\":[80],\"targets\":[\"h:1\"],\"local_shortcut\":\"off\"}]}";
	assert_int_equal(cfg_load_buffer("t.json", json, strlen(json), &cfg, &errs), 0);
	assert_string_equal(cfg->shortcut_cgroup, "/sys/fs/cgroup/x");
	assert_int_equal(cfg->apps[0].local_shortcut, CFG_SHORTCUT_OFF);
	cfg_free(cfg);

	expect_error("apps:\n  - name: a\n    ports: 80\n    targets: h:1\n    local_shortcut: on\n",
		     "5:21", "local_shortcut", "'on'", "auto, off");
	expect_error("apps:\n  - name: a\n    ports: 80\n    targets: h:1\n    local_shortcut: [off]\n",
		     "5:21", "local_shortcut", NULL, NULL);
	expect_error("apps:\n  - name: a\n    ports: 80\n    targets: h:1\n    protocol: http\n"
		     "    local_shortcut: auto\n",
		     "6:21", "local_shortcut: auto", "protocol tcp or foo", NULL);
	expect_error("shortcut_cgroup: sys/fs/cgroup/x\napps: []\n", "1:18", "shortcut_cgroup",
		     "absolute path", NULL);
	expect_error("shortcut_cgroup: [a]\napps: []\n", "1:18", "shortcut_cgroup", NULL, NULL);
	expect_error("shortcut_backlog: 1k\napps: []\n", "1:19", "shortcut_backlog", "64k", NULL);
	expect_error("shortcut_backlog: lots\napps: []\n", "1:19", "shortcut_backlog", NULL, NULL);
}

static int teardown(void **state)
{
	(void)state;
	cfg_errors_free(&errs);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_fly_json, teardown),
		cmocka_unit_test_teardown(test_fly_example_file, teardown),
		cmocka_unit_test_teardown(test_defaults, teardown),
		cmocka_unit_test_teardown(test_full_yaml, teardown),
		cmocka_unit_test_teardown(test_admin_forms, teardown),
		cmocka_unit_test_teardown(test_ports_and_ranges, teardown),
		cmocka_unit_test_teardown(test_prefixes, teardown),
		cmocka_unit_test_teardown(test_durations, teardown),
		cmocka_unit_test_teardown(test_sizes, teardown),
		cmocka_unit_test_teardown(test_hostport, teardown),
		cmocka_unit_test_teardown(test_target_format, teardown),
		cmocka_unit_test_teardown(test_err_syntax, teardown),
		cmocka_unit_test_teardown(test_err_empty_and_top, teardown),
		cmocka_unit_test_teardown(test_err_unknown_and_duplicate_keys, teardown),
		cmocka_unit_test_teardown(test_err_types, teardown),
		cmocka_unit_test_teardown(test_err_ports, teardown),
		cmocka_unit_test_teardown(test_err_no_ports_no_targets, teardown),
		cmocka_unit_test_teardown(test_err_targets, teardown),
		cmocka_unit_test_teardown(test_err_addresses, teardown),
		cmocka_unit_test_teardown(test_err_names, teardown),
		cmocka_unit_test_teardown(test_port_conflicts, teardown),
		cmocka_unit_test_teardown(test_err_target_loops, teardown),
		cmocka_unit_test_teardown(test_anchors_aliases_tags, teardown),
		cmocka_unit_test_teardown(test_deep_nesting, teardown),
		cmocka_unit_test_teardown(test_every_error_collected, teardown),
		cmocka_unit_test_teardown(test_error_cap, teardown),
		cmocka_unit_test_teardown(test_size_limit, teardown),
		cmocka_unit_test_teardown(test_node_limit, teardown),
		cmocka_unit_test_teardown(test_load_file, teardown),
		cmocka_unit_test_teardown(test_quick, teardown),
		cmocka_unit_test_teardown(test_app_dup_equal, teardown),
		cmocka_unit_test_teardown(test_json_yaml_same, teardown),
		cmocka_unit_test_teardown(test_json_tree_matches_libyaml, teardown),
		cmocka_unit_test_teardown(test_block_tree_matches_libyaml, teardown),
		cmocka_unit_test_teardown(test_big_config, teardown),
		cmocka_unit_test_teardown(test_pool_apps, teardown),
		cmocka_unit_test_teardown(test_http_full, teardown),
		cmocka_unit_test_teardown(test_http_defaults, teardown),
		cmocka_unit_test_teardown(test_http_example_file, teardown),
		cmocka_unit_test_teardown(test_http_clusters_only, teardown),
		cmocka_unit_test_teardown(test_http_target_loops, teardown),
		cmocka_unit_test_teardown(test_http_errors, teardown),
		cmocka_unit_test_teardown(test_http_limits, teardown),
		cmocka_unit_test_teardown(test_kernel_splice, teardown),
		cmocka_unit_test_teardown(test_local_shortcut, teardown),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
