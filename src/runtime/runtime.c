/* runtime.c - builds snapshots of the config: apps shared across reloads, IDs, counters and the port table. */
#include "runtime/runtime.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/ref.h"
#include "core/log.h"
#include "proto/foo_stats.h"
#include "proto/http_log.h"
#include "proto/http_stats.h"
#include "steer/steer.h"

/* --- app IDs -----------------------------------------------------------------
 * Small numbers handed to the BPF side. An ID belongs to an app name: a
 * changed app keeps the ID of its previous version, and the ID is freed only
 * when the last object using it dies (its last connection closed), so
 * counters keyed by ID never mix two apps. Freed from any thread, hence the
 * lock. id_refs[i] counts the app objects using ID i; 0 is "no app". */

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t *id_refs;
static uint32_t id_cap;
static uint32_t id_hint = 1;

static int rt_id_alloc(uint32_t *out)
{
	int err = 0;
	pthread_mutex_lock(&id_lock);
	for (;;) {
		for (uint32_t n = 0; n < id_cap; n++) {
			uint32_t i = (id_hint + n) % id_cap;
			if (i != 0 && id_refs[i] == 0) {
				id_refs[i] = 1;
				id_hint = i + 1;
				*out = i;
				goto out;
			}
		}
		uint32_t cap = id_cap ? id_cap * 2 : 4096;
		uint32_t *r = realloc(id_refs, cap * sizeof(*r));
		if (!r) {
			err = -ENOMEM;
			goto out;
		}
		memset(r + id_cap, 0, (cap - id_cap) * sizeof(*r));
		id_hint = id_cap ? id_cap : 1;
		id_refs = r;
		id_cap = cap;
	}
out:
	pthread_mutex_unlock(&id_lock);
	return err;
}

static void rt_id_ref(uint32_t id)
{
	pthread_mutex_lock(&id_lock);
	id_refs[id]++;
	pthread_mutex_unlock(&id_lock);
}

static void rt_id_put(uint32_t id)
{
	pthread_mutex_lock(&id_lock);
	if (id < id_cap && id_refs[id])
		id_refs[id]--;
	pthread_mutex_unlock(&id_lock);
}

/* --- apps ----------------------------------------------------------------- */

struct rt_app *rt_app_get(struct rt_app *a)
{
	ref_get(&a->refcnt);
	return a;
}

static void rt_app_free(struct rt_app *a)
{
	for (uint32_t i = 0; i < a->n_targets; i++) {
		struct rt_app_target *at = &a->targets[i];
		if (at->t) {
			if (a->cfg->health_check)
				target_hc_ref(at->t, -1);
			target_put(at->t);
		}
		if (at->stats)
			conn_stats_put(at->stats);
	}
	free(a->targets);
	if (a->stats)
		conn_stats_put(a->stats);
	foo_app_stats_put(a->foo);
	http_stats_put(a->http);
	http_log_put(a->http_log);
	free(a->cluster_rr);
	if (a->id)
		rt_id_put(a->id);
	cfg_app_free(a->cfg);
	free(a);
}

void rt_app_put(struct rt_app *a)
{
	if (a && ref_put(&a->refcnt))
		rt_app_free(a);
}

/* Finds the counters of target `name` in the previous version of the app. */
static struct conn_stats *prev_target_stats(const struct rt_app *prev, const struct target *t)
{
	if (!prev)
		return NULL;
	for (uint32_t i = 0; i < prev->n_targets; i++)
		if (prev->targets[i].t == t)
			return prev->targets[i].stats;
	return NULL;
}

static bool str_same(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* True when the two versions of an http app have the same routes (host,
 * path and cluster name, in order): the new version then shares the
 * previous one's counters, and requests still running on the previous
 * version go on counting into them. */
static bool same_routes(const struct cfg_app *a, const struct cfg_app *b)
{
	if (a->http.n_routes != b->http.n_routes)
		return false;
	for (uint32_t i = 0; i < a->http.n_routes; i++) {
		const struct cfg_http_route *x = &a->http.routes[i], *y = &b->http.routes[i];
		const char *cx = x->cluster < a->http.n_clusters ? a->http.clusters[x->cluster].name : NULL;
		const char *cy = y->cluster < b->http.n_clusters ? b->http.clusters[y->cluster].name : NULL;
		if (!str_same(x->host, y->host) || !str_same(x->path, y->path) || !str_same(cx, cy))
			return false;
	}
	return true;
}

/* The http parts of a new app object: route counters (shared with the
 * previous version when its routes are the same, copied route by route
 * otherwise), the access log (opened again, so a reload after a log
 * rotation writes to the new file; a failed open is a warning, the app
 * runs without its log) and the per-cluster cursors. */
static int rt_app_http(struct rt_app *a, const struct rt_app *prev)
{
	const struct cfg_app *ca = a->cfg;
	const struct http_app_stats *ps = prev ? prev->http : NULL;
	if (ps && prev->cfg->protocol == PROTO_HTTP && ps->n_routes == ca->http.n_routes &&
	    same_routes(ca, prev->cfg))
		a->http = http_stats_get(prev->http);
	else
		a->http = http_stats_new(ca, ps, ps ? prev->cfg : NULL);
	if (!a->http)
		return -ENOMEM;
	a->cluster_rr = calloc(ca->http.n_clusters ? ca->http.n_clusters : 1, sizeof(*a->cluster_rr));
	if (!a->cluster_rr)
		return -ENOMEM;
	if (ca->http.log_format != HTTP_LOG_NONE && ca->http.access_log) {
		a->http_log = http_log_open(ca->http.access_log, ca->http.log_format);
		struct http_log_sink *old = prev ? prev->http_log : NULL;
		if (!a->http_log && old && old->fmt == ca->http.log_format &&
		    str_same(old->path, ca->http.access_log)) {
			/* e.g. no longer allowed to create it after the privilege
			 * drop: the file already open is better than none */
			log_warn("app %s: access log open(%s) failed: %s; writing on to the file open before",
				 ca->name, ca->http.access_log, strerror(errno));
			a->http_log = http_log_get(old);
		} else if (!a->http_log) {
			log_warn("app %s: access log open(%s) failed: %s; running without it",
				 ca->name, ca->http.access_log, strerror(errno));
		}
	}
	return 0;
}

/* Makes the app object for cfg app `ca`; prev is the app of the same name in
 * the previous snapshot (different content), or NULL. */
static struct rt_app *rt_app_new(const struct cfg_app *ca, const struct rt_app *prev)
{
	struct rt_app *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	atomic_init(&a->refcnt, 1);
	a->cfg = cfg_app_dup(ca);
	a->targets = calloc(ca->n_targets ? ca->n_targets : 1, sizeof(*a->targets));
	if (!a->cfg || !a->targets)
		goto fail;
	if (prev) {
		/* a changed app goes on counting under its name and ID */
		a->stats = conn_stats_get(prev->stats);
		rt_id_ref(prev->id);
		a->id = prev->id;
	} else {
		a->stats = conn_stats_new();
		if (a->stats && rt_id_alloc(&a->id) < 0)
			goto fail;
	}
	if (!a->stats)
		goto fail;
	if (ca->protocol == PROTO_FOO) {
		a->foo = prev && prev->foo ? foo_app_stats_get(prev->foo) : foo_app_stats_new();
		if (!a->foo)
			goto fail;
	}
	if (ca->protocol == PROTO_HTTP && rt_app_http(a, prev) < 0)
		goto fail;
	for (size_t i = 0; i < ca->n_targets; i++) {
		struct rt_app_target *at = &a->targets[i];
		at->t = target_get(ca->targets[i].host, ca->targets[i].port);
		if (!at->t)
			goto fail;
		a->n_targets++;
		if (ca->health_check)
			target_hc_ref(at->t, 1);
		struct conn_stats *ps = prev_target_stats(prev, at->t);
		at->stats = ps ? conn_stats_get(ps) : conn_stats_new();
		if (!at->stats)
			goto fail;
	}
	return a;
fail:
	if (!a->cfg) {
		free(a->targets);
		free(a);
		return NULL;
	}
	rt_app_free(a);
	return NULL;
}

/* --- snapshots -------------------------------------------------------------- */

struct rt_snapshot *rt_snapshot_get(struct rt_snapshot *s)
{
	ref_get(&s->refcnt);
	return s;
}

/* --- port arenas ------------------------------------------------------------
 * The rt_port objects of a snapshot live in arenas. A full build lays every
 * port out in one; a reload that changes a few apps copies the previous
 * table and lays out only the ports those apps touch in a small new arena
 * that references the previous one, since the untouched ports still point
 * there. Chains are cut at ARENA_MAX_DEPTH by a full build. */
struct rt_arena {
	_Atomic uint32_t refcnt;
	uint32_t depth;			/* arenas below this one */
	struct rt_arena *parent;	/* referenced; NULL for a full build */
	_Alignas(16) unsigned char data[];
};

#define ARENA_MAX_DEPTH		16u
/* Above these a reload rebuilds the whole table (as fast, then). */
#define DELTA_MAX_APPS		64u
#define DELTA_MAX_PORTS		16384u

static struct rt_arena *arena_new(size_t bytes, struct rt_arena *parent)
{
	struct rt_arena *a = malloc(sizeof(*a) + (bytes ? bytes : 1));
	if (!a)
		return NULL;
	atomic_init(&a->refcnt, 1);
	a->parent = parent;
	a->depth = parent ? parent->depth + 1 : 0;
	if (parent)
		ref_get(&parent->refcnt);
	return a;
}

static void arena_put(struct rt_arena *a)
{
	while (a && ref_put(&a->refcnt)) {
		struct rt_arena *parent = a->parent;
		free(a);
		a = parent;
	}
}

static void rt_snapshot_free(struct rt_snapshot *s)
{
	for (size_t i = 0; i < s->n_apps; i++)
		rt_app_put(s->apps[i]);
	free(s->apps);
	arena_put(s->port_arena);
	cfg_free(s->cfg);
	free(s);
}

void rt_snapshot_put(struct rt_snapshot *s)
{
	if (s && ref_put(&s->refcnt))
		rt_snapshot_free(s);
}

static void rule_fill(struct rt_port_rule *r, const struct cfg_prefix *p, struct rt_app *app)
{
	memset(r, 0, sizeof(*r));
	if (p) {
		memcpy(r->addr, p->addr, 16);
		r->plen = p->plen;
	}
	r->app = app;
}

static int cmp_rule_plen_desc(const void *a, const void *b)
{
	const struct rt_port_rule *x = a, *y = b;
	return (int)y->plen - (int)x->plen;
}

/* Lays out every port's rules in one arena: counts first, then fills. */
static int build_ports(struct rt_snapshot *s)
{
	uint32_t *count = calloc(65536, sizeof(*count));
	if (!count)
		return -ENOMEM;
	size_t total_rules = 0, n_ports = 0;
	for (size_t i = 0; i < s->n_apps; i++) {
		const struct cfg_app *ca = s->apps[i]->cfg;
		size_t per = ca->n_prefixes ? ca->n_prefixes : 1;
		for (size_t r = 0; r < ca->n_ports; r++)
			for (uint32_t p = ca->ports[r].lo; p <= ca->ports[r].hi; p++) {
				/* ranges of one app may overlap: count a port once per app */
				count[p] += (uint32_t)per;
				total_rules += per;
			}
	}
	for (uint32_t p = 0; p < 65536; p++)
		if (count[p])
			n_ports++;
	size_t bytes = n_ports * sizeof(struct rt_port) + total_rules * sizeof(struct rt_port_rule);
	struct rt_arena *arena = arena_new(bytes, NULL);
	if (!arena) {
		free(count);
		return -ENOMEM;
	}
	char *cur = (char *)arena->data;
	for (uint32_t p = 0; p < 65536; p++) {
		if (!count[p])
			continue;
		struct rt_port *rp = (struct rt_port *)cur;
		rp->n = 0;
		s->ports[p] = rp;
		cur += sizeof(struct rt_port) + count[p] * sizeof(struct rt_port_rule);
	}
	for (size_t i = 0; i < s->n_apps; i++) {
		struct rt_app *app = s->apps[i];
		const struct cfg_app *ca = app->cfg;
		for (size_t r = 0; r < ca->n_ports; r++)
			for (uint32_t p = ca->ports[r].lo; p <= ca->ports[r].hi; p++) {
				struct rt_port *rp = s->ports[p];
				/* skip a port already added for this app by an overlapping range */
				if (rp->n && rp->rules[rp->n - 1].app == app)
					continue;
				if (!ca->n_prefixes)
					rule_fill(&rp->rules[rp->n++], NULL, app);
				for (size_t x = 0; x < ca->n_prefixes; x++)
					rule_fill(&rp->rules[rp->n++], &ca->prefixes[x], app);
			}
	}
	size_t entries = 0;
	for (uint32_t p = 0; p < 65536; p++) {
		struct rt_port *rp = s->ports[p];
		if (!rp)
			continue;
		if (rp->n > 1)
			qsort(rp->rules, rp->n, sizeof(rp->rules[0]), cmp_rule_plen_desc);
		entries += rp->n;
	}
	s->n_ports = entries;
	s->port_arena = arena;
	free(count);
	return 0;
}

static bool app_in(const struct rt_app *a, struct rt_app *const *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] == a)
			return true;
	return false;
}

/* The table of s from prev's, when the diff names few apps: prev's ports
 * are taken as they are, and only the ports of removed, changed and added
 * apps are laid out again (prev's rules of apps that stay, plus the rules
 * of the new versions) in a new arena on top of prev's. Returns 1 when the
 * change is too big for this (the caller builds everything), 0 or -ENOMEM. */
static int build_ports_delta(struct rt_snapshot *s, const struct rt_snapshot *prev,
			     const struct cfg_diff *diff)
{
	size_t n_gone = diff->n_removed + diff->n_changed;
	size_t n_fresh = diff->n_added + diff->n_changed;
	if (!prev->port_arena || prev->port_arena->depth + 1 >= ARENA_MAX_DEPTH ||
	    n_gone + n_fresh > DELTA_MAX_APPS)
		return 1;
	struct rt_app *gone[DELTA_MAX_APPS], *fresh[DELTA_MAX_APPS];
	size_t ng = 0, nf = 0;
	for (size_t i = 0; i < diff->n_removed; i++)
		gone[ng++] = prev->apps[diff->removed[i]];
	for (size_t i = 0; i < diff->n_changed; i++) {
		gone[ng++] = prev->apps[diff->changed[i].old_i];
		fresh[nf++] = s->apps[diff->changed[i].new_i];
	}
	for (size_t i = 0; i < diff->n_added; i++)
		fresh[nf++] = s->apps[diff->added[i]];

	/* the ports touched, each once */
	size_t n_touch = 0;
	for (size_t g = 0; g < ng + nf; g++) {
		const struct cfg_app *ca = g < ng ? gone[g]->cfg : fresh[g - ng]->cfg;
		for (size_t r = 0; r < ca->n_ports; r++)
			n_touch += (size_t)ca->ports[r].hi - ca->ports[r].lo + 1u;
	}
	if (n_touch > DELTA_MAX_PORTS)
		return 1;
	uint64_t *seen = calloc(65536 / 64, sizeof(*seen));
	uint16_t *touch = malloc((n_touch ? n_touch : 1) * sizeof(*touch));
	uint16_t *pos = malloc(65536 * sizeof(*pos));	/* read only where seen */
	uint32_t *cnt = calloc(n_touch ? n_touch : 1, sizeof(*cnt));
	int ret = -ENOMEM;
	if (!seen || !touch || !pos || !cnt)
		goto out;
	n_touch = 0;
	for (size_t g = 0; g < ng + nf; g++) {
		const struct cfg_app *ca = g < ng ? gone[g]->cfg : fresh[g - ng]->cfg;
		for (size_t r = 0; r < ca->n_ports; r++)
			for (uint32_t p = ca->ports[r].lo; p <= ca->ports[r].hi; p++) {
				if (seen[p / 64] & (1ull << (p % 64)))
					continue;
				seen[p / 64] |= 1ull << (p % 64);
				pos[p] = (uint16_t)n_touch;
				touch[n_touch++] = (uint16_t)p;
			}
	}
	/* count: prev's rules of apps that stay, then the new versions' */
	size_t old_rules = 0, rules = 0, blocks = 0;
	for (size_t i = 0; i < n_touch; i++) {
		const struct rt_port *rp = prev->ports[touch[i]];
		if (!rp)
			continue;
		old_rules += rp->n;
		for (uint32_t k = 0; k < rp->n; k++)
			if (!app_in(rp->rules[k].app, gone, ng))
				cnt[i]++;
	}
	for (size_t f = 0; f < nf; f++) {
		const struct cfg_app *ca = fresh[f]->cfg;
		uint32_t per = ca->n_prefixes ? (uint32_t)ca->n_prefixes : 1;
		for (size_t r = 0; r < ca->n_ports; r++)
			for (uint32_t p = ca->ports[r].lo; p <= ca->ports[r].hi; p++)
				cnt[pos[p]] += per;	/* overlapping ranges: counted twice, filled once */
	}
	for (size_t i = 0; i < n_touch; i++)
		if (cnt[i]) {
			blocks++;
			rules += cnt[i];
		}
	struct rt_arena *arena = arena_new(blocks * sizeof(struct rt_port) +
					   rules * sizeof(struct rt_port_rule), prev->port_arena);
	if (!arena)
		goto out;
	char *cur = (char *)arena->data;
	for (size_t i = 0; i < n_touch; i++) {
		uint16_t p = touch[i];
		if (!cnt[i]) {
			s->ports[p] = NULL;
			continue;
		}
		struct rt_port *rp = (struct rt_port *)cur, *op = prev->ports[p];
		cur += sizeof(struct rt_port) + cnt[i] * sizeof(struct rt_port_rule);
		rp->n = 0;
		for (uint32_t k = 0; op && k < op->n; k++)
			if (!app_in(op->rules[k].app, gone, ng))
				rp->rules[rp->n++] = op->rules[k];
		s->ports[p] = rp;
	}
	for (size_t f = 0; f < nf; f++) {
		struct rt_app *app = fresh[f];
		const struct cfg_app *ca = app->cfg;
		for (size_t r = 0; r < ca->n_ports; r++)
			for (uint32_t p = ca->ports[r].lo; p <= ca->ports[r].hi; p++) {
				struct rt_port *rp = s->ports[p];
				if (rp->n && rp->rules[rp->n - 1].app == app)
					continue;
				if (!ca->n_prefixes)
					rule_fill(&rp->rules[rp->n++], NULL, app);
				for (size_t x = 0; x < ca->n_prefixes; x++)
					rule_fill(&rp->rules[rp->n++], &ca->prefixes[x], app);
			}
	}
	size_t new_rules = 0;
	for (size_t i = 0; i < n_touch; i++) {
		struct rt_port *rp = s->ports[touch[i]];
		if (!rp)
			continue;
		if (rp->n > 1)
			qsort(rp->rules, rp->n, sizeof(rp->rules[0]), cmp_rule_plen_desc);
		new_rules += rp->n;
	}
	s->n_ports = prev->n_ports - old_rules + new_rules;
	s->port_arena = arena;
	ret = 0;
out:
	free(seen);
	free(touch);
	free(pos);
	free(cnt);
	return ret;
}

int rt_snapshot_build(struct cfg *cfg, const struct rt_snapshot *prev, const struct cfg_diff *diff,
		      struct rt_snapshot **out)
{
	struct rt_snapshot *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	atomic_init(&s->refcnt, 1);
	s->generation = prev ? prev->generation + 1 : 1;
	size_t n = cfg->n_apps ? cfg->n_apps : 1;
	s->apps = calloc(n, sizeof(*s->apps));
	/* per new app: the previous object to share (unchanged) or to take the
	 * ID and counters of (changed) */
	struct rt_app **same = calloc(n, sizeof(*same));
	struct rt_app **older = calloc(n, sizeof(*older));
	if (!s->apps || !same || !older)
		goto fail;
	if (prev && diff) {
		for (size_t i = 0; i < diff->n_unchanged; i++)
			same[diff->unchanged[i].new_i] = prev->apps[diff->unchanged[i].old_i];
		for (size_t i = 0; i < diff->n_changed; i++)
			older[diff->changed[i].new_i] = prev->apps[diff->changed[i].old_i];
	}
	for (size_t i = 0; i < cfg->n_apps; i++) {
		struct rt_app *a = same[i] ? rt_app_get(same[i]) : rt_app_new(&cfg->apps[i], older[i]);
		if (!a)
			goto fail;
		s->apps[s->n_apps++] = a;
	}
	int r = 1;
	if (prev && diff) {
		memcpy(s->ports, prev->ports, sizeof(s->ports));
		r = build_ports_delta(s, prev, diff);
		if (r == 1)
			memset(s->ports, 0, sizeof(s->ports));
	}
	if (r == 1)
		r = build_ports(s);
	if (r < 0)
		goto fail;
	free(same);
	free(older);
	s->cfg = cfg;
	*out = s;
	return 0;
fail:
	free(same);
	free(older);
	for (size_t i = 0; i < s->n_apps; i++)
		rt_app_put(s->apps[i]);
	free(s->apps);
	free(s);
	return -ENOMEM;
}

/* --- lookups ------------------------------------------------------------------- */

static bool prefix_match(const uint8_t *addr, const uint8_t *prefix, uint8_t plen)
{
	uint8_t full = plen / 8, rest = plen % 8;
	if (memcmp(addr, prefix, full) != 0)
		return false;
	if (!rest)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (addr[full] & mask) == (prefix[full] & mask);
}

/* The local address as 16 bytes, IPv4 mapped; returns the port. */
static uint16_t sockaddr_to_key(const struct sockaddr_storage *ss, uint8_t addr[16])
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		memset(addr, 0, 10);
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &in->sin_addr, 4);
		return ntohs(in->sin_port);
	}
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
	memcpy(addr, &in6->sin6_addr, 16);
	return ntohs(in6->sin6_port);
}

struct rt_app *rt_lookup(const struct rt_snapshot *s, const struct sockaddr_storage *local)
{
	uint8_t addr[16];
	uint16_t port = sockaddr_to_key(local, addr);
	const struct rt_port *rp = s->ports[port];
	if (!rp)
		return NULL;
	for (uint32_t i = 0; i < rp->n; i++)
		if (prefix_match(addr, rp->rules[i].addr, rp->rules[i].plen))
			return rp->rules[i].app;
	return NULL;
}

int rt_steer_entries(const struct rt_snapshot *s, struct steer_entry **out, size_t *n)
{
	struct steer_entry *e = malloc((s->n_ports ? s->n_ports : 1) * sizeof(*e));
	if (!e)
		return -ENOMEM;
	size_t k = 0;
	for (uint32_t p = 0; p < 65536; p++) {
		const struct rt_port *rp = s->ports[p];
		if (!rp)
			continue;
		for (uint32_t i = 0; i < rp->n; i++) {
			steer_key_init(&e[k].key, (uint16_t)p, rp->rules[i].plen ? rp->rules[i].addr : NULL,
				       rp->rules[i].plen);
			e[k].val.app_id = rp->rules[i].app->id;
			e[k].val.sock_idx = PANDIT_SOCK_TCP;
			k++;
		}
	}
	*out = e;
	*n = k;
	return 0;
}

/* Entries of one app: every port of its ranges times its prefixes (or any
 * address), keyed as rt_steer_entries keys them. With out NULL, counts. */
static size_t app_entries(const struct rt_app *app, struct steer_entry *out)
{
	const struct cfg_app *ca = app->cfg;
	size_t k = 0;
	/* loaded apps have merged ranges; overlapping ones (made by hand) would
	 * repeat a key, which steer_apply refuses and the caller then syncs */
	for (size_t r = 0; r < ca->n_ports; r++)
		for (uint32_t p = ca->ports[r].lo; p <= ca->ports[r].hi; p++) {
			size_t np = ca->n_prefixes ? ca->n_prefixes : 1;
			for (size_t x = 0; x < np; x++, k++) {
				if (!out)
					continue;
				const struct cfg_prefix *pf = ca->n_prefixes ? &ca->prefixes[x] : NULL;
				steer_key_init(&out[k].key, (uint16_t)p, pf && pf->plen ? pf->addr : NULL,
					       pf ? pf->plen : 0);
				out[k].val.app_id = app->id;
				out[k].val.sock_idx = PANDIT_SOCK_TCP;
			}
		}
	return k;
}

int rt_steer_delta(const struct rt_snapshot *prev, const struct rt_snapshot *s,
		   const struct cfg_diff *diff, struct steer_entry **add, size_t *n_add,
		   struct pandit_steer_key **del, size_t *n_del)
{
	size_t na = 0, nd = 0;
	for (size_t i = 0; i < diff->n_added; i++)
		na += app_entries(s->apps[diff->added[i]], NULL);
	for (size_t i = 0; i < diff->n_changed; i++) {
		na += app_entries(s->apps[diff->changed[i].new_i], NULL);
		nd += app_entries(prev->apps[diff->changed[i].old_i], NULL);
	}
	for (size_t i = 0; i < diff->n_removed; i++)
		nd += app_entries(prev->apps[diff->removed[i]], NULL);
	struct steer_entry *a = malloc((na ? na : 1) * sizeof(*a));
	struct steer_entry *d = malloc((nd ? nd : 1) * sizeof(*d));
	struct pandit_steer_key *dk = malloc((nd ? nd : 1) * sizeof(*dk));
	if (!a || !d || !dk) {
		free(a);
		free(d);
		free(dk);
		return -ENOMEM;
	}
	na = nd = 0;
	for (size_t i = 0; i < diff->n_added; i++)
		na += app_entries(s->apps[diff->added[i]], a + na);
	for (size_t i = 0; i < diff->n_changed; i++) {
		na += app_entries(s->apps[diff->changed[i].new_i], a + na);
		nd += app_entries(prev->apps[diff->changed[i].old_i], d + nd);
	}
	for (size_t i = 0; i < diff->n_removed; i++)
		nd += app_entries(prev->apps[diff->removed[i]], d + nd);
	for (size_t i = 0; i < nd; i++)
		dk[i] = d[i].key;
	free(d);
	*add = a;
	*n_add = na;
	*del = dk;
	*n_del = nd;
	return 0;
}

void rt_reopen_logs(const struct rt_snapshot *s)
{
	for (size_t i = 0; i < s->n_apps; i++) {
		struct rt_app *a = s->apps[i];
		if (!a->http_log)
			continue;
		int err = http_log_reopen(a->http_log);
		if (err)
			log_warn("app %s: reopening the access log %s failed: %s; still writing to the old file",
				 a->cfg->name, a->http_log->path, strerror(-err));
	}
}
