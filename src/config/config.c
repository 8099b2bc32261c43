/* config.c - loading configs from files and memory, quick mode, copying, comparing and freeing them. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/internal.h"

/* --- errors -------------------------------------------------------------------- */

void cfg_errors_add(struct cfg_errors *errs, const char *file, struct cfg_mark mark,
		    const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n;
	if (!errs)
		return;
	if (!file)
		file = "config";
	if (mark.line)
		n = snprintf(msg, sizeof(msg), "%s:%u:%u: ", file, mark.line, mark.col);
	else
		n = snprintf(msg, sizeof(msg), "%s: ", file);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	/* dropped silently on ENOMEM: the caller's return code already says why */
	char **m = realloc(errs->msgs, (errs->n + 1) * sizeof(*m));
	if (!m)
		return;
	errs->msgs = m;
	if ((m[errs->n] = strdup(msg)))
		errs->n++;
}

void cfg_errors_free(struct cfg_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->n; i++)
		free(errs->msgs[i]);
	free(errs->msgs);
	errs->msgs = NULL;
	errs->n = 0;
}

/* --- defaults ------------------------------------------------------------------ */

void cfg_app_defaults(struct cfg_app *a)
{
	memset(a, 0, sizeof(*a));
	a->policy = LB_ROUND_ROBIN;
	a->connect_timeout_ms = CFG_DEFAULT_CONNECT_TIMEOUT_MS;
	a->idle_timeout_ms = CFG_DEFAULT_IDLE_TIMEOUT_MS;
	a->connect_attempts = CFG_DEFAULT_CONNECT_ATTEMPTS;
	a->max_connections = 0;
	a->keepalive.enabled = true;
	a->keepalive.idle_s = CFG_DEFAULT_KA_IDLE_S;
	a->keepalive.interval_s = CFG_DEFAULT_KA_INTERVAL_S;
	a->keepalive.count = CFG_DEFAULT_KA_COUNT;
	a->health_check = true;
	a->protocol = PROTO_TCP;
	a->kernel_splice = CFG_KERNEL_AUTO;
	a->local_shortcut = CFG_SHORTCUT_AUTO;
	a->foo.strict = false;
	a->foo.max_line = CFG_DEFAULT_FOO_MAX_LINE;
	cfg_http_defaults(&a->http);
}

void cfg_http_defaults(struct cfg_http *h)
{
	memset(h, 0, sizeof(*h));
	h->header_timeout_ms = CFG_DEFAULT_HTTP_HEADER_TIMEOUT_MS;
	h->response_timeout_ms = CFG_DEFAULT_HTTP_RESPONSE_TIMEOUT_MS;
	h->client_idle_ms = CFG_DEFAULT_HTTP_CLIENT_IDLE_MS;
	h->upstream_idle_ms = CFG_DEFAULT_HTTP_UPSTREAM_IDLE_MS;
	h->max_idle_upstream = CFG_DEFAULT_HTTP_MAX_IDLE_UPSTREAM;
	h->max_header_bytes = CFG_DEFAULT_HTTP_MAX_HEADER_BYTES;
	h->max_headers = CFG_DEFAULT_HTTP_MAX_HEADERS;
	h->forwarded = true;
	h->log_format = HTTP_LOG_NONE;
	h->access_log = NULL;
}

const char *cfg_protocol_name(enum app_protocol p)
{
	switch (p) {
	case PROTO_FOO:
		return "foo";
	case PROTO_HTTP:
		return "http";
	default:
		return "tcp";
	}
}

int cfg_protocol_parse(const char *s, enum app_protocol *out)
{
	if (strcmp(s, "tcp") == 0)
		*out = PROTO_TCP;
	else if (strcmp(s, "foo") == 0)
		*out = PROTO_FOO;
	else if (strcmp(s, "http") == 0)
		*out = PROTO_HTTP;
	else
		return -EINVAL;
	return 0;
}

int cfg_set_defaults(struct cfg *cfg)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)&cfg->admin;
	const char *admin = CFG_DEFAULT_ADMIN;
	char host[INET_ADDRSTRLEN];
	const char *colon = strrchr(admin, ':');
	memset(&cfg->admin, 0, sizeof(cfg->admin));
	snprintf(host, sizeof(host), "%.*s", (int)(colon - admin), admin);
	a4->sin_family = AF_INET;
	a4->sin_port = htons((uint16_t)atoi(colon + 1));
	inet_pton(AF_INET, host, &a4->sin_addr);
	cfg->admin_len = sizeof(*a4);
	free(cfg->user);
	cfg->user = strdup(CFG_DEFAULT_USER);
	if (!cfg->user)
		return -ENOMEM;
	cfg->workers = 0;
	cfg->buffer_size = CFG_DEFAULT_BUFFER_SIZE;
	cfg->splice = true;
	cfg->resolve_interval_ms = CFG_DEFAULT_RESOLVE_INTERVAL_MS;
	free(cfg->shortcut_cgroup);
	cfg->shortcut_cgroup = NULL;
	cfg->shortcut_backlog = CFG_DEFAULT_SHORTCUT_BACKLOG;
	cfg->health.interval_ms = CFG_DEFAULT_HC_INTERVAL_MS;
	cfg->health.timeout_ms = CFG_DEFAULT_HC_TIMEOUT_MS;
	cfg->health.rise = CFG_DEFAULT_HC_RISE;
	cfg->health.fall = CFG_DEFAULT_HC_FALL;
	cfg->health.backoff_min_ms = CFG_DEFAULT_BACKOFF_MIN_MS;
	cfg->health.backoff_max_ms = CFG_DEFAULT_BACKOFF_MAX_MS;
	cfg->log_level = LOG_INFO;
	return 0;
}

/* --- normalizing, copying, comparing, freeing -------------------------------------- */

static int cmp_range(const void *x, const void *y)
{
	const struct cfg_port_range *a = x, *b = y;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	return (a->hi > b->hi) - (a->hi < b->hi);
}

static int cmp_prefix(const void *x, const void *y)
{
	const struct cfg_prefix *a = x, *b = y;
	int c = memcmp(a->addr, b->addr, 16);
	if (c)
		return c;
	return (int)a->plen - (int)b->plen;
}

void cfg_app_normalize(struct cfg_app *a)
{
	if (a->n_ports > 1) {
		/* usually a handful of ranges, often in order: insertion sort */
		if (a->n_ports <= 16) {
			for (size_t i = 1; i < a->n_ports; i++) {
				struct cfg_port_range r = a->ports[i];
				size_t j = i;
				for (; j > 0 && cmp_range(&a->ports[j - 1], &r) > 0; j--)
					a->ports[j] = a->ports[j - 1];
				a->ports[j] = r;
			}
		} else {
			qsort(a->ports, a->n_ports, sizeof(*a->ports), cmp_range);
		}
		size_t o = 0;
		for (size_t i = 1; i < a->n_ports; i++) {
			struct cfg_port_range *cur = &a->ports[o];
			/* overlapping or adjacent: one range (keeps the first mark) */
			if ((uint32_t)a->ports[i].lo <= (uint32_t)cur->hi + 1) {
				if (a->ports[i].hi > cur->hi)
					cur->hi = a->ports[i].hi;
			} else {
				a->ports[++o] = a->ports[i];
			}
		}
		a->n_ports = o + 1;
	}
	if (a->n_prefixes > 1) {
		qsort(a->prefixes, a->n_prefixes, sizeof(*a->prefixes), cmp_prefix);
		size_t o = 0;
		for (size_t i = 1; i < a->n_prefixes; i++)
			if (cmp_prefix(&a->prefixes[o], &a->prefixes[i]))
				a->prefixes[++o] = a->prefixes[i];
		a->n_prefixes = o + 1;
	}
}

/* Frees what an app owns, not the app itself. */
static void app_clear(struct cfg_app *a)
{
	free(a->name);
	free(a->ports);
	free(a->prefixes);
	for (size_t i = 0; i < a->n_targets; i++)
		free(a->targets[i].host);
	free(a->targets);
	for (uint32_t i = 0; i < a->http.n_clusters; i++)
		free(a->http.clusters[i].name);
	free(a->http.clusters);
	for (uint32_t i = 0; i < a->http.n_routes; i++) {
		free(a->http.routes[i].host);
		free(a->http.routes[i].path);
	}
	free(a->http.routes);
	free(a->http.access_log);
}

void cfg_app_free(struct cfg_app *a)
{
	if (!a)
		return;
	app_clear(a);
	free(a);
}

static void *dup_mem(const void *p, size_t n, size_t size)
{
	if (!n)
		return NULL;
	void *q = malloc(n * size);
	if (q)
		memcpy(q, p, n * size);
	return q;
}

struct cfg_app *cfg_app_dup(const struct cfg_app *a)
{
	struct cfg_app *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	*d = *a;
	d->name = NULL;
	d->ports = NULL;
	d->prefixes = NULL;
	d->targets = NULL;
	d->n_targets = 0;
	d->http.clusters = NULL;
	d->http.n_clusters = 0;
	d->http.routes = NULL;
	d->http.n_routes = 0;
	d->http.access_log = NULL;
	if (a->name && !(d->name = strdup(a->name)))
		goto fail;
	if (a->n_ports && !(d->ports = dup_mem(a->ports, a->n_ports, sizeof(*a->ports))))
		goto fail;
	if (a->n_prefixes &&
	    !(d->prefixes = dup_mem(a->prefixes, a->n_prefixes, sizeof(*a->prefixes))))
		goto fail;
	if (a->n_targets) {
		d->targets = calloc(a->n_targets, sizeof(*d->targets));
		if (!d->targets)
			goto fail;
		for (size_t i = 0; i < a->n_targets; i++) {
			d->targets[i] = a->targets[i];
			if (!(d->targets[i].host = strdup(a->targets[i].host)))
				goto fail;
			d->n_targets++;
		}
	}
	if (a->http.n_clusters) {
		d->http.clusters = calloc(a->http.n_clusters, sizeof(*d->http.clusters));
		if (!d->http.clusters)
			goto fail;
		for (uint32_t i = 0; i < a->http.n_clusters; i++) {
			d->http.clusters[i] = a->http.clusters[i];
			if (!(d->http.clusters[i].name = strdup(a->http.clusters[i].name)))
				goto fail;
			d->http.n_clusters++;
		}
	}
	if (a->http.n_routes) {
		d->http.routes = calloc(a->http.n_routes, sizeof(*d->http.routes));
		if (!d->http.routes)
			goto fail;
		for (uint32_t i = 0; i < a->http.n_routes; i++) {
			const struct cfg_http_route *r = &a->http.routes[i];
			struct cfg_http_route *o = &d->http.routes[i];
			*o = *r;
			o->host = NULL;
			o->path = NULL;
			d->http.n_routes++;
			if ((r->host && !(o->host = strdup(r->host))) ||
			    (r->path && !(o->path = strdup(r->path))))
				goto fail;
		}
	}
	if (a->http.access_log && !(d->http.access_log = strdup(a->http.access_log)))
		goto fail;
	return d;
fail:
	cfg_app_free(d);
	return NULL;
}

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Every field of the http settings (of http apps: other apps' are not
 * used). */
static bool http_equal(const struct cfg_http *a, const struct cfg_http *b)
{
	if (a->n_clusters != b->n_clusters || a->n_routes != b->n_routes ||
	    a->header_timeout_ms != b->header_timeout_ms ||
	    a->response_timeout_ms != b->response_timeout_ms ||
	    a->client_idle_ms != b->client_idle_ms || a->upstream_idle_ms != b->upstream_idle_ms ||
	    a->max_idle_upstream != b->max_idle_upstream ||
	    a->max_header_bytes != b->max_header_bytes || a->max_headers != b->max_headers ||
	    a->forwarded != b->forwarded || a->log_format != b->log_format ||
	    !str_eq(a->access_log, b->access_log))
		return false;
	for (uint32_t i = 0; i < a->n_clusters; i++) {
		const struct cfg_http_cluster *x = &a->clusters[i], *y = &b->clusters[i];
		if (x->target_first != y->target_first || x->n_targets != y->n_targets ||
		    x->policy != y->policy || !str_eq(x->name, y->name))
			return false;
	}
	for (uint32_t i = 0; i < a->n_routes; i++) {
		const struct cfg_http_route *x = &a->routes[i], *y = &b->routes[i];
		if (x->cluster != y->cluster || !str_eq(x->host, y->host) || !str_eq(x->path, y->path))
			return false;
	}
	return true;
}

bool cfg_app_equal(const struct cfg_app *a, const struct cfg_app *b)
{
	if (!str_eq(a->name, b->name) || a->n_ports != b->n_ports ||
	    a->n_prefixes != b->n_prefixes || a->n_targets != b->n_targets ||
	    a->policy != b->policy || a->connect_timeout_ms != b->connect_timeout_ms ||
	    a->idle_timeout_ms != b->idle_timeout_ms || a->connect_attempts != b->connect_attempts ||
	    a->max_connections != b->max_connections || a->health_check != b->health_check ||
	    a->keepalive.enabled != b->keepalive.enabled || a->protocol != b->protocol ||
	    a->kernel_splice != b->kernel_splice || a->local_shortcut != b->local_shortcut)
		return false;
	if (a->protocol == PROTO_FOO &&
	    (a->foo.strict != b->foo.strict || a->foo.max_line != b->foo.max_line))
		return false;
	if (a->keepalive.enabled &&
	    (a->keepalive.idle_s != b->keepalive.idle_s ||
	     a->keepalive.interval_s != b->keepalive.interval_s ||
	     a->keepalive.count != b->keepalive.count))
		return false;
	for (size_t i = 0; i < a->n_ports; i++)
		if (a->ports[i].lo != b->ports[i].lo || a->ports[i].hi != b->ports[i].hi)
			return false;
	for (size_t i = 0; i < a->n_prefixes; i++)
		if (a->prefixes[i].plen != b->prefixes[i].plen ||
		    memcmp(a->prefixes[i].addr, b->prefixes[i].addr, 16))
			return false;
	for (size_t i = 0; i < a->n_targets; i++)
		if (a->targets[i].port != b->targets[i].port ||
		    !str_eq(a->targets[i].host, b->targets[i].host))
			return false;
	return a->protocol != PROTO_HTTP || http_equal(&a->http, &b->http);
}

/* --- the app pool ------------------------------------------------------------- */

/* A chunk list: the head is the chunk being filled; a request too big for
 * a chunk gets one of its own, linked behind the head. */
struct cfg_pool {
	struct cfg_pool *next;
	size_t used, cap;
	_Alignas(8) unsigned char data[];
};

#define POOL_MIN_CHUNK	(64u << 10)
#define POOL_MAX_CHUNK	(4u << 20)

void *cfg_pool_alloc(struct cfg *cfg, size_t size)
{
	struct cfg_pool *p = cfg->pool;
	size = (size + 7) & ~(size_t)7;
	if (!size)
		size = 8;
	if (p && p->cap - p->used >= size) {
		void *r = p->data + p->used;
		p->used += size;
		return r;
	}
	size_t cap = p ? p->cap * 2 : POOL_MIN_CHUNK;
	if (cap > POOL_MAX_CHUNK)
		cap = POOL_MAX_CHUNK;
	bool own = size > cap / 4;	/* big: a chunk of its own, the head stays */
	if (own)
		cap = size;
	struct cfg_pool *c = malloc(sizeof(*c) + cap);
	if (!c)
		return NULL;
	c->cap = cap;
	c->used = size;
	if (own && p) {
		c->next = p->next;
		p->next = c;
	} else {
		c->next = p;
		cfg->pool = c;
	}
	return c->data;
}

char *cfg_pool_strndup(struct cfg *cfg, const char *s, size_t len)
{
	char *d = cfg_pool_alloc(cfg, len + 1);
	if (d) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

void cfg_free(struct cfg *cfg)
{
	if (!cfg)
		return;
	if (cfg->pool) {
		/* the apps' memory is all in the pool */
		for (struct cfg_pool *p = cfg->pool, *n; p; p = n) {
			n = p->next;
			free(p);
		}
	} else {
		for (size_t i = 0; i < cfg->n_apps; i++)
			app_clear(&cfg->apps[i]);
	}
	free(cfg->apps);
	free(cfg->user);
	free(cfg->shortcut_cgroup);
	free(cfg->path);
	free(cfg);
}

void cfg_target_format(const struct cfg_target *t, char *buf, size_t len)
{
	if (!len)
		return;
	if (t->host && strchr(t->host, ':'))
		snprintf(buf, len, "[%s]:%u", t->host, t->port);
	else
		snprintf(buf, len, "%s:%u", t->host ? t->host : "", t->port);
}

/* --- loading ------------------------------------------------------------------- */

int cfg_load_buffer(const char *name, const char *buf, size_t len, struct cfg **out,
		    struct cfg_errors *errs)
{
	struct ytree t;
	int r;
	*out = NULL;
	if (!name)
		name = "config";
	if (!buf) {
		buf = "";	/* libyaml asserts on a NULL input */
		len = 0;
	}
	if (len > CFG_MAX_FILE_SIZE) {
		cfg_errors_add(errs, name, (struct cfg_mark){ 0, 0 },
			       "config is %zu bytes; the limit is %u MiB", len, CFG_MAX_FILE_SIZE >> 20);
		return -EINVAL;
	}
	struct cfg *cfg = calloc(1, sizeof(*cfg));
	if (!cfg || !(cfg->path = strdup(name))) {
		free(cfg);
		return -ENOMEM;
	}
	r = ytree_parse(&t, name, buf, len, errs);
	if (r == 0) {
		r = cfg_from_tree(&t, name, cfg, errs);
		ytree_free(&t);
	}
	if (r) {
		cfg_free(cfg);
		return r;
	}
	*out = cfg;
	return 0;
}

int cfg_load_file(const char *path, struct cfg **out, struct cfg_errors *errs)
{
	struct cfg_mark none = { 0, 0 };
	struct stat st;
	char *buf = NULL;
	size_t len = 0, cap;
	int r, fd;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		cfg_errors_add(errs, path, none, "cannot open: %s", strerror(errno));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		cfg_errors_add(errs, path, none, "fstat() failed: %s", strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		r = -EISDIR;
		cfg_errors_add(errs, path, none, "is a directory");
		goto out;
	}
	if (st.st_size > (off_t)CFG_MAX_FILE_SIZE) {
		r = -EFBIG;
		cfg_errors_add(errs, path, none, "config is %lld bytes; the limit is %u MiB",
			       (long long)st.st_size, CFG_MAX_FILE_SIZE >> 20);
		goto out;
	}
	/* st_size is a hint (the file may change, or be a pipe): read to EOF, bounded */
	cap = (size_t)st.st_size + 1;
	buf = malloc(cap);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		if (len == cap) {
			if (cap > CFG_MAX_FILE_SIZE) {
				r = -EFBIG;
				cfg_errors_add(errs, path, none, "config is larger than %u MiB",
					       CFG_MAX_FILE_SIZE >> 20);
				goto out;
			}
			size_t ncap = cap * 2 > (size_t)CFG_MAX_FILE_SIZE + 1 ? (size_t)CFG_MAX_FILE_SIZE + 1
									  : cap * 2;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			cfg_errors_add(errs, path, none, "read() failed: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	r = cfg_load_buffer(path, buf, len, out, errs);
out:
	free(buf);
	close(fd);
	return r;
}

/* --- quick mode ---------------------------------------------------------------- */

int cfg_quick(const char *listen, const char *forward, struct cfg **out, struct cfg_errors *errs)
{
	struct cfg_mark none = { 0, 0 };
	const char *why = NULL;
	struct cfg *cfg;
	struct cfg_app *a;
	char *host = NULL;
	uint16_t port;
	int r;

	*out = NULL;
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg || !(cfg->path = strdup("quick")) || cfg_set_defaults(cfg) ||
	    !(cfg->apps = calloc(1, sizeof(*cfg->apps)))) {
		cfg_free(cfg);
		return -ENOMEM;
	}
	cfg->n_apps = 1;
	cfg->names_unique = true;
	a = &cfg->apps[0];
	cfg_app_defaults(a);
	if (!(a->name = strdup("quick")) || !(a->ports = calloc(1, sizeof(*a->ports))) ||
	    !(a->targets = calloc(1, sizeof(*a->targets)))) {
		r = -ENOMEM;
		goto fail;
	}

	r = -EINVAL;
	if (!listen || !*listen) {
		cfg_errors_add(errs, "--listen", none, "missing address (expected [addr]:port or :port)");
	} else if (listen[0] == ':') {
		if (cfg_parse_port_range(listen + 1, strlen(listen + 1), &a->ports[0].lo,
					 &a->ports[0].hi, &why) == 0 && a->ports[0].lo == a->ports[0].hi)
			r = 0;
		else
			cfg_errors_add(errs, "--listen", none, "'%s': %s", listen,
				       why ? why : "a single port is expected");
	} else if ((r = cfg_parse_hostport(listen, &host, &port, &why)) == -ENOMEM) {
		goto fail;
	} else if (r) {
		cfg_errors_add(errs, "--listen", none, "'%s': %s", listen, why);
	} else {
		a->ports[0].lo = a->ports[0].hi = port;
		if (strcmp(host, "::") == 0) {
			/* every address, both families: no prefix */
		} else if (strcmp(host, "0.0.0.0") == 0) {
			/* every IPv4 address: ::ffff:0:0/96 */
			a->prefixes = calloc(1, sizeof(*a->prefixes));
			if (!a->prefixes) {
				r = -ENOMEM;
				goto fail;
			}
			a->prefixes[0].addr[10] = a->prefixes[0].addr[11] = 0xff;
			a->prefixes[0].plen = 96;
			a->n_prefixes = 1;
		} else {
			a->prefixes = calloc(1, sizeof(*a->prefixes));
			if (!a->prefixes) {
				r = -ENOMEM;
				goto fail;
			}
			if (cfg_parse_prefix(host, a->prefixes[0].addr, &a->prefixes[0].plen, &why)) {
				cfg_errors_add(errs, "--listen", none,
					       "'%s': the address must be a literal IP address (%s)",
					       listen, why);
				r = -EINVAL;
			} else {
				a->n_prefixes = 1;
			}
		}
		free(host);
		host = NULL;
	}
	if (r == 0)
		a->n_ports = 1;

	int rf = -EINVAL;
	if (!forward || !*forward)
		cfg_errors_add(errs, "--forward", none, "missing target (expected host:port)");
	else if ((rf = cfg_parse_hostport(forward, &a->targets[0].host, &a->targets[0].port, &why)) ==
		 -ENOMEM)
		r = rf;
	else if (rf)
		cfg_errors_add(errs, "--forward", none, "'%s': %s", forward, why);
	else
		a->n_targets = 1;
	/* the "default" cluster: every target, so that a protocol set later
	 * (--protocol http) finds a complete model */
	if (!(a->http.clusters = calloc(1, sizeof(*a->http.clusters))) ||
	    !(a->http.clusters[0].name = strdup("default"))) {
		r = -ENOMEM;
		goto fail;
	}
	a->http.n_clusters = 1;
	a->http.clusters[0].target_first = 0;
	a->http.clusters[0].n_targets = (uint32_t)a->n_targets;
	a->http.clusters[0].policy = a->policy;
	if (r == 0 && rf)
		r = rf;
	if (r)
		goto fail;
	*out = cfg;
	return 0;
fail:
	free(host);
	cfg_free(cfg);
	return r;
}
