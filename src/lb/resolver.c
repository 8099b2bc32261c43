/* resolver.c - resolver threads: getaddrinfo() for named targets, off the event loops, with retry backoff. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/ev.h"
#include "core/log.h"
#include "lb/target_int.h"

/* getaddrinfo() blocks, possibly for seconds on a dead DNS server, so a
 * couple of threads share the queue: one slow name does not hold up the
 * others for long. */
#define RESOLVER_THREADS	2
#define RESOLVE_BATCH		32	/* targets taken per scan of the registry */
#define RESOLVE_RETRY_MIN_MS	1000u	/* first retry of a failing name */
#define RESOLVE_RETRY_MAX_MS	30000u
#define RESOLVE_IDLE_MS		60000u	/* sleep when no name is due at all */
#define RESOLVER_JOIN_WAIT_MS	2000u

/* Threads run while their epoch is current; stopping bumps it (under the
 * registry lock), so a thread stuck in getaddrinfo() that we gave up
 * waiting for just exits when it returns, even if new threads started. */
static uint64_t resolver_epoch;
static pthread_t resolver_threads[RESOLVER_THREADS];
static int resolver_n;

/* RFC 6761 6.4: names under .invalid never resolve, and resolver
 * libraries should say so without asking the network. */
static bool name_is_invalid(const char *host)
{
	size_t n = strlen(host);
	if (n && host[n - 1] == '.')
		n--;
	if (n == 7)
		return strncasecmp(host, "invalid", 7) == 0;
	return n > 8 && strncasecmp(host + n - 8, ".invalid", 8) == 0;
}

/* Resolves t->host; returns true when it gave at least one address. */
static bool resolve_one(struct target *t)
{
	uint64_t now = ev_now_ns();
	if (name_is_invalid(t->host)) {
		target_set_resolve_failed(t, EAI_NONAME, 0, true, now);
		return false;
	}

	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_protocol = IPPROTO_TCP,
	};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(t->host, NULL, &hints, &res);
	int sys_errno = errno;
	now = ev_now_ns();
	if (rc != 0) {
		/* Only an answer that the name does not exist drops the known
		 * addresses; a DNS outage keeps them. */
		bool drop = rc == EAI_NONAME || rc == EAI_NODATA || rc == EAI_ADDRFAMILY;
		target_set_resolve_failed(t, rc, sys_errno, drop, now);
		return false;
	}

	struct sockaddr_storage addrs[TARGET_MAX_ADDRS];
	socklen_t lens[TARGET_MAX_ADDRS];
	uint32_t n = 0;
	for (struct addrinfo *ai = res; ai && n < TARGET_MAX_ADDRS; ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(struct sockaddr_storage))
			continue;
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		if (ss.ss_family == AF_INET)
			((struct sockaddr_in *)&ss)->sin_port = htons(t->port);
		else
			((struct sockaddr_in6 *)&ss)->sin6_port = htons(t->port);
		/* /etc/hosts may list an address twice */
		bool dup = false;
		for (uint32_t i = 0; i < n && !dup; i++)
			dup = lens[i] == ai->ai_addrlen && memcmp(&addrs[i], &ss, ai->ai_addrlen) == 0;
		if (dup)
			continue;
		addrs[n] = ss;
		lens[n] = (socklen_t)ai->ai_addrlen;
		n++;
	}
	freeaddrinfo(res);
	if (!n) {
		target_set_resolve_failed(t, EAI_NODATA, 0, true, now);
		return false;
	}
	target_set_resolved(t, addrs, lens, n, now);
	return true;
}

static void *resolver_main(void *arg)
{
	uint64_t epoch = (uint64_t)(uintptr_t)arg;
	struct target *batch[RESOLVE_BATCH];
	bool ok[RESOLVE_BATCH];

	log_set_thread_name("resolver");
	pthread_mutex_lock(&target_reg.lock);
	while (resolver_epoch == epoch) {
		uint64_t now = ev_now_ns();
		uint64_t next_due = now + (uint64_t)RESOLVE_IDLE_MS * 1000000ull;
		size_t n = 0;
		for (size_t b = 0; b < target_reg.n_buckets; b++) {
			for (struct target *t = target_reg.buckets[b]; t; t = t->next) {
				if (t->literal || t->resolving)
					continue;
				if (t->resolve_due_ns > now || n == RESOLVE_BATCH) {
					if (t->resolve_due_ns < next_due)
						next_due = t->resolve_due_ns;
					continue;
				}
				t->resolving = true;
				target_ref_locked(t);
				batch[n++] = t;
			}
		}
		if (!n) {
			struct timespec ts = {
				.tv_sec = (time_t)(next_due / 1000000000ull),
				.tv_nsec = (long)(next_due % 1000000000ull),
			};
			pthread_cond_timedwait(&target_reg.cond, &target_reg.lock, &ts);
			continue;
		}
		pthread_mutex_unlock(&target_reg.lock);

		for (size_t i = 0; i < n; i++)
			ok[i] = resolve_one(batch[i]);

		pthread_mutex_lock(&target_reg.lock);
		now = ev_now_ns();
		uint32_t ival = target_setting(&target_set.resolve_interval_ms);
		uint32_t rmax = ival < RESOLVE_RETRY_MAX_MS ? ival : RESOLVE_RETRY_MAX_MS;
		for (size_t i = 0; i < n; i++) {
			struct target *t = batch[i];
			uint32_t delay;
			if (ok[i]) {
				t->resolve_retry_ms = 0;
				delay = ival;
			} else {
				/* retry a failing name sooner, backing off */
				uint32_t r = t->resolve_retry_ms;
				r = r ? (r > rmax / 2 ? rmax : r * 2) : RESOLVE_RETRY_MIN_MS;
				if (r > rmax)
					r = rmax;
				t->resolve_retry_ms = r;
				delay = r;
			}
			t->resolve_due_ns = now + (uint64_t)delay * 1000000ull;
			t->resolving = false;
		}
		pthread_mutex_unlock(&target_reg.lock);
		/* target_put takes the registry lock itself */
		for (size_t i = 0; i < n; i++)
			target_put(batch[i]);
		pthread_mutex_lock(&target_reg.lock);
	}
	pthread_mutex_unlock(&target_reg.lock);
	return NULL;
}

int target_resolver_start(void)
{
	target_registry_ensure();
	if (resolver_n)
		return 0;
	pthread_mutex_lock(&target_reg.lock);
	uint64_t epoch = ++resolver_epoch;
	pthread_mutex_unlock(&target_reg.lock);
	for (int i = 0; i < RESOLVER_THREADS; i++) {
		int rc = pthread_create(&resolver_threads[i], NULL, resolver_main,
					(void *)(uintptr_t)epoch);
		if (rc) {
			log_err("pthread_create(resolver) failed: %s", strerror(rc));
			target_resolver_stop();
			return -rc;
		}
		resolver_n++;
	}
	return 0;
}

void target_resolver_stop(void)
{
	target_registry_ensure();
	pthread_mutex_lock(&target_reg.lock);
	resolver_epoch++;
	pthread_cond_broadcast(&target_reg.cond);
	pthread_mutex_unlock(&target_reg.lock);

	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += RESOLVER_JOIN_WAIT_MS / 1000;
	for (int i = 0; i < resolver_n; i++) {
		int rc = pthread_timedjoin_np(resolver_threads[i], NULL, &dl);
		if (rc == ETIMEDOUT) {
			/* stuck in getaddrinfo(); it exits by itself when that returns */
			log_warn("resolver thread busy in getaddrinfo(), not waiting for it");
			pthread_detach(resolver_threads[i]);
		}
	}
	resolver_n = 0;
}
