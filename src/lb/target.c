/* target.c - the shared target registry, address selection and passive/active health state. */
#include "lb/target.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ev.h"
#include "core/log.h"
#include "lb/target_int.h"

#define REG_MIN_BUCKETS 256
#define HOST_MAX_LEN 255	/* DNS names are at most 253 characters */

struct target_registry target_reg = { .lock = PTHREAD_MUTEX_INITIALIZER };
struct target_settings target_set;

static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void settings_store(const struct cfg_health *h, uint32_t resolve_interval_ms)
{
	uint32_t rise = h->rise ? h->rise : 1;
	uint32_t fall = h->fall ? h->fall : 1;
	uint32_t bmin = h->backoff_min_ms ? h->backoff_min_ms : 1;
	uint32_t bmax = h->backoff_max_ms < bmin ? bmin : h->backoff_max_ms;
	/* a zero interval would make the health thread spin */
	uint32_t ival = h->interval_ms < 10 ? 10 : h->interval_ms;
	uint32_t tmo = h->timeout_ms ? h->timeout_ms : 1;
	uint32_t rival = resolve_interval_ms < 100 ? 100 : resolve_interval_ms;

	atomic_store_explicit(&target_set.hc_interval_ms, ival, memory_order_relaxed);
	atomic_store_explicit(&target_set.hc_timeout_ms, tmo, memory_order_relaxed);
	atomic_store_explicit(&target_set.rise, rise, memory_order_relaxed);
	atomic_store_explicit(&target_set.fall, fall, memory_order_relaxed);
	atomic_store_explicit(&target_set.backoff_min_ms, bmin, memory_order_relaxed);
	atomic_store_explicit(&target_set.backoff_max_ms, bmax, memory_order_relaxed);
	atomic_store_explicit(&target_set.resolve_interval_ms, rival, memory_order_relaxed);
}

static void reg_once_init(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&target_reg.cond, &ca);
	pthread_condattr_destroy(&ca);

	struct cfg_health h = {
		.interval_ms = CFG_DEFAULT_HC_INTERVAL_MS,
		.timeout_ms = CFG_DEFAULT_HC_TIMEOUT_MS,
		.rise = CFG_DEFAULT_HC_RISE,
		.fall = CFG_DEFAULT_HC_FALL,
		.backoff_min_ms = CFG_DEFAULT_BACKOFF_MIN_MS,
		.backoff_max_ms = CFG_DEFAULT_BACKOFF_MAX_MS,
	};
	settings_store(&h, CFG_DEFAULT_RESOLVE_INTERVAL_MS);
}

void target_registry_ensure(void)
{
	pthread_once(&reg_once, reg_once_init);
}

int target_registry_init(const struct cfg_health *h, uint32_t resolve_interval_ms)
{
	target_registry_ensure();
	target_registry_configure(h, resolve_interval_ms);
	return 0;
}

void target_registry_configure(const struct cfg_health *h, uint32_t resolve_interval_ms)
{
	target_registry_ensure();
	if (h)
		settings_store(h, resolve_interval_ms);
}

size_t target_registry_count(void)
{
	target_registry_ensure();
	pthread_mutex_lock(&target_reg.lock);
	size_t n = target_reg.n_targets;
	pthread_mutex_unlock(&target_reg.lock);
	return n;
}

/* --- registry ---------------------------------------------------------------- */

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;	/* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

/* Doubles the table; on ENOMEM keeps the old one (chains just get longer). */
static void reg_grow(void)
{
	size_t n = target_reg.n_buckets ? target_reg.n_buckets * 2 : REG_MIN_BUCKETS;
	struct target **b = calloc(n, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i < target_reg.n_buckets; i++) {
		struct target *t = target_reg.buckets[i];
		while (t) {
			struct target *next = t->next;
			size_t j = name_hash(t->name) & (n - 1);
			t->next = b[j];
			b[j] = t;
			t = next;
		}
	}
	free(target_reg.buckets);
	target_reg.buckets = b;
	target_reg.n_buckets = n;
}

static void target_free(struct target *t)
{
	pthread_mutex_destroy(&t->lock);
	free(t->name);
	free(t->host);
	free(t);
}

/* Parses an IP literal into ss; false when host is not one. */
static bool parse_literal(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return true;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return true;
	}
	return false;
}

struct target *target_get(const char *host, uint16_t port)
{
	target_registry_ensure();
	if (!host || !*host || strlen(host) > HOST_MAX_LEN)
		return NULL;

	char name[HOST_MAX_LEN + 16];
	if (strchr(host, ':'))
		snprintf(name, sizeof(name), "[%s]:%u", host, (unsigned)port);
	else
		snprintf(name, sizeof(name), "%s:%u", host, (unsigned)port);
	uint64_t h = name_hash(name);

	pthread_mutex_lock(&target_reg.lock);
	if (target_reg.n_buckets) {
		for (struct target *t = target_reg.buckets[h & (target_reg.n_buckets - 1)]; t; t = t->next) {
			if (strcmp(t->name, name) == 0) {
				target_ref_locked(t);
				pthread_mutex_unlock(&target_reg.lock);
				return t;
			}
		}
	}

	struct target *t = calloc(1, sizeof(*t));
	if (!t)
		goto nomem;
	t->name = strdup(name);
	t->host = strdup(host);
	if (!t->name || !t->host) {
		free(t->name);
		free(t->host);
		free(t);
		goto nomem;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->port = port;
	atomic_init(&t->refcnt, 1);
	if (parse_literal(host, port, &t->addrs[0], &t->addr_lens[0])) {
		t->literal = true;
		t->n_addrs = 1;
		t->resolved_ns = ev_now_ns();
		atomic_init(&t->has_addrs, true);
		atomic_init(&t->up, true);
	} else {
		/* down until the resolver finds an address */
		t->resolve_due_ns = 0;
		atomic_init(&t->has_addrs, false);
		atomic_init(&t->up, false);
	}

	if (target_reg.n_targets >= target_reg.n_buckets)
		reg_grow();
	if (!target_reg.n_buckets) {
		pthread_mutex_unlock(&target_reg.lock);
		target_free(t);
		return NULL;
	}
	size_t b = h & (target_reg.n_buckets - 1);
	t->next = target_reg.buckets[b];
	target_reg.buckets[b] = t;
	target_reg.n_targets++;
	if (!t->literal)
		pthread_cond_broadcast(&target_reg.cond);
	pthread_mutex_unlock(&target_reg.lock);
	log_debug("target %s added%s", t->name, t->literal ? "" : ", resolving");
	return t;
nomem:
	pthread_mutex_unlock(&target_reg.lock);
	log_err("target %s: out of memory", name);
	return NULL;
}

/* refcnt changes to and from zero only under the registry lock, so a
 * lookup can never revive a target that is being freed. */
void target_put(struct target *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&target_reg.lock);
	if (atomic_fetch_sub_explicit(&t->refcnt, 1, memory_order_acq_rel) != 1) {
		pthread_mutex_unlock(&target_reg.lock);
		return;
	}
	struct target **pp = &target_reg.buckets[name_hash(t->name) & (target_reg.n_buckets - 1)];
	while (*pp && *pp != t)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = t->next;
		target_reg.n_targets--;
	}
	pthread_mutex_unlock(&target_reg.lock);
	log_debug("target %s removed", t->name);
	target_free(t);
}

void target_hc_ref(struct target *t, int delta)
{
	if (!t || !delta)
		return;
	if (delta > 0) {
		atomic_fetch_add_explicit(&t->hc_refs, (uint32_t)delta, memory_order_relaxed);
		return;
	}
	/* never below zero, whatever the caller does */
	uint32_t cur = atomic_load_explicit(&t->hc_refs, memory_order_relaxed);
	uint32_t d = (uint32_t)-delta;
	while (!atomic_compare_exchange_weak_explicit(&t->hc_refs, &cur, cur > d ? cur - d : 0,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

/* --- addresses ----------------------------------------------------------------- */

int target_addr(struct target *t, struct sockaddr_storage *ss, socklen_t *len)
{
	pthread_mutex_lock(&t->lock);
	uint32_t n = t->n_addrs;
	if (!n) {
		pthread_mutex_unlock(&t->lock);
		return -EHOSTUNREACH;
	}
	uint32_t i = atomic_fetch_add_explicit(&t->next_addr, 1, memory_order_relaxed) % n;
	memcpy(ss, &t->addrs[i], sizeof(*ss));
	*len = t->addr_lens[i];
	pthread_mutex_unlock(&t->lock);
	return 0;
}

void target_format_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(sin6->sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
}

/* --- health state ---------------------------------------------------------------- */

/* Takes an up target down; only the caller that flips `up` logs and arms
 * the first backoff. */
static void mark_down(struct target *t, uint64_t now_ns, const char *why, int err, uint32_t fails)
{
	if (!atomic_load(&t->up))
		return;
	/* arm the backoff before `up` flips, so that no worker sees the
	 * target down with a stale retry time and slips a trial through */
	uint32_t b = target_setting(&target_set.backoff_min_ms);
	atomic_store(&t->backoff_ms, b);
	atomic_store(&t->trial, false);
	atomic_store(&t->oks, 0);
	atomic_store(&t->retry_ns, now_ns + (uint64_t)b * 1000000ull);
	bool expect = true;
	if (!atomic_compare_exchange_strong(&t->up, &expect, false))
		return;
	if (err)
		log_warn("target %s down: %s (%s), %u consecutive failures; retry in %u ms",
			 t->name, why, strerror(err), fails, b);
	else
		log_warn("target %s down: %s, %u consecutive failures; retry in %u ms",
			 t->name, why, fails, b);
}

static void mark_up(struct target *t, const char *why)
{
	bool expect = false;
	atomic_store(&t->fails, 0);
	atomic_store(&t->oks, 0);
	atomic_store(&t->trial, false);
	if (!atomic_compare_exchange_strong(&t->up, &expect, true))
		return;
	atomic_store(&t->backoff_ms, 0);
	log_info("target %s up: %s", t->name, why);
}

bool target_usable(struct target *t, uint64_t now_ns)
{
	if (!atomic_load_explicit(&t->has_addrs, memory_order_acquire))
		return false;
	if (atomic_load_explicit(&t->up, memory_order_relaxed))
		return true;
	uint64_t r = atomic_load(&t->retry_ns);
	if (now_ns < r)
		return false;
	/* Push the retry time forward before letting the trial through: of
	 * all the workers racing here, only the one whose CAS wins gets it. */
	uint32_t b = atomic_load(&t->backoff_ms);
	if (!b)
		b = target_setting(&target_set.backoff_min_ms);
	if (!atomic_compare_exchange_strong(&t->retry_ns, &r, now_ns + (uint64_t)b * 1000000ull))
		return false;
	atomic_store(&t->trial, true);
	log_debug("target %s: trial connection after %u ms backoff", t->name, b);
	return true;
}

void target_report(struct target *t, bool ok, uint64_t now_ns)
{
	if (ok) {
		/* cheap in the common case: no store when already up and clean */
		if (atomic_load_explicit(&t->fails, memory_order_relaxed))
			atomic_store_explicit(&t->fails, 0, memory_order_relaxed);
		if (!atomic_load_explicit(&t->up, memory_order_relaxed) &&
		    atomic_load_explicit(&t->has_addrs, memory_order_relaxed))
			mark_up(t, "connection succeeded");
		return;
	}
	uint32_t f = atomic_fetch_add(&t->fails, 1) + 1;
	if (atomic_load(&t->up)) {
		if (f >= target_setting(&target_set.fall))
			mark_down(t, now_ns, "connect failed", 0, f);
		return;
	}
	/* Down already: only the failure of a trial connection lengthens the
	 * backoff; stragglers started before the target went down do not. */
	if (!atomic_exchange(&t->trial, false))
		return;
	uint32_t b = atomic_load(&t->backoff_ms);
	uint32_t bmax = target_setting(&target_set.backoff_max_ms);
	b = b ? (b > bmax / 2 ? bmax : b * 2) : target_setting(&target_set.backoff_min_ms);
	atomic_store(&t->backoff_ms, b);
	atomic_store(&t->retry_ns, now_ns + (uint64_t)b * 1000000ull);
	log_debug("target %s: trial connection failed, next retry in %u ms", t->name, b);
}

void target_hc_result(struct target *t, bool ok, int err, uint64_t now_ns)
{
	if (ok) {
		atomic_fetch_add_explicit(&t->hc_ok, 1, memory_order_relaxed);
		if (atomic_load(&t->up)) {
			if (atomic_load_explicit(&t->fails, memory_order_relaxed))
				atomic_store(&t->fails, 0);
			return;
		}
		if (!atomic_load(&t->has_addrs))
			return;
		uint32_t rise = target_setting(&target_set.rise);
		uint32_t o = atomic_fetch_add(&t->oks, 1) + 1;
		if (o >= rise) {
			char why[64];
			snprintf(why, sizeof(why), "%u consecutive health checks passed", o);
			mark_up(t, why);
		}
		return;
	}
	atomic_fetch_add_explicit(&t->hc_failed, 1, memory_order_relaxed);
	atomic_store(&t->oks, 0);
	uint32_t f = atomic_fetch_add(&t->fails, 1) + 1;
	if (atomic_load(&t->up) && f >= target_setting(&target_set.fall))
		mark_down(t, now_ns, "health check failed", err, f);
}

/* --- resolution results -------------------------------------------------------- */

void target_set_resolved(struct target *t, const struct sockaddr_storage *addrs,
			 const socklen_t *lens, uint32_t n, uint64_t now_ns)
{
	if (n > TARGET_MAX_ADDRS)
		n = TARGET_MAX_ADDRS;
	pthread_mutex_lock(&t->lock);
	bool changed = n != t->n_addrs || t->resolve_err != 0;
	for (uint32_t i = 0; i < n && !changed; i++)
		changed = lens[i] != t->addr_lens[i] || memcmp(&addrs[i], &t->addrs[i], lens[i]) != 0;
	for (uint32_t i = 0; i < n; i++) {
		t->addrs[i] = addrs[i];
		t->addr_lens[i] = lens[i];
	}
	t->n_addrs = n;
	t->resolve_err = 0;
	t->resolved_ns = now_ns;
	pthread_mutex_unlock(&t->lock);

	if (changed) {
		char first[INET6_ADDRSTRLEN + 8];
		target_format_addr(&addrs[0], first, sizeof(first));
		if (n > 1)
			log_info("target %s resolved to %s and %u more", t->name, first, n - 1);
		else
			log_info("target %s resolved to %s", t->name, first);
	}
	if (!atomic_exchange(&t->has_addrs, true)) {
		/* from no address to some: the target can take connections now;
		 * passive and active checks take it down again if it fails */
		atomic_store(&t->retry_ns, 0);
		mark_up(t, "name resolved");
	}
}

void target_set_resolve_failed(struct target *t, int gai_err, int sys_errno, bool drop,
			       uint64_t now_ns)
{
	(void)now_ns;
	pthread_mutex_lock(&t->lock);
	bool changed = t->resolve_err != gai_err;
	t->resolve_err = gai_err;
	uint32_t kept = drop ? 0 : t->n_addrs;
	if (drop)
		t->n_addrs = 0;
	pthread_mutex_unlock(&t->lock);

	if (changed) {
		const char *msg = gai_err == EAI_SYSTEM ? strerror(sys_errno) : gai_strerror(gai_err);
		if (kept)
			log_warn("target %s: cannot resolve %s: %s; keeping %u known address%s",
				 t->name, t->host, msg, kept, kept > 1 ? "es" : "");
		else
			log_warn("target %s: cannot resolve %s: %s", t->name, t->host, msg);
	}
	if (!kept && atomic_exchange(&t->has_addrs, false)) {
		atomic_store(&t->trial, false);
		bool was_up = atomic_exchange(&t->up, false);
		if (was_up)
			log_warn("target %s down: name does not resolve", t->name);
	}
}

/* --- threads --------------------------------------------------------------------- */

int target_threads_start(void)
{
	target_registry_ensure();
	int err = target_resolver_start();
	if (err)
		return err;
	err = target_health_start();
	if (err) {
		target_resolver_stop();
		return err;
	}
	return 0;
}

void target_threads_stop(void)
{
	target_health_stop();
	target_resolver_stop();
}
