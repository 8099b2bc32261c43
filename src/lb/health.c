/* health.c - the active health check thread: non-blocking TCP connects to targets on its own event loop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/ev.h"
#include "core/log.h"
#include "lb/target_int.h"

#define HC_MAX_INFLIGHT	256	/* checks in flight at once */
#define HC_TICK_MIN_MS	10	/* how often the registry may be scanned at most */
#define HC_TICK_MAX_MS	200	/* ... and at least (new targets are seen this fast) */

struct hc_check {
	struct ev_io io;
	struct ev_timer timer;
	struct target *t;	/* referenced while the check runs */
	bool busy;
};

static struct ev_loop hc_loop;
static pthread_t hc_thread;
static bool hc_running;
static struct ev_timer hc_tick;
static struct hc_check hc_checks[HC_MAX_INFLIGHT];
static uint32_t hc_inflight;
static size_t hc_scan_pos;	/* bucket the next scan starts at */
static uint64_t hc_rng;

static uint64_t hc_rand(void)
{
	/* xorshift64; only spreads the checks out */
	uint64_t x = hc_rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return hc_rng = x;
}

/* Next check of a target: the interval, jittered by +-10% so that targets
 * added together do not stay in lockstep. */
static uint64_t hc_next_due(uint64_t now)
{
	uint64_t ival = (uint64_t)target_setting(&target_set.hc_interval_ms) * 1000000ull;
	uint64_t span = ival / 5;
	return now + ival - span / 2 + (span ? hc_rand() % span : 0);
}

static void hc_finish(struct hc_check *c, bool ok, int err)
{
	struct target *t = c->t;
	uint64_t now = ev_now_ns();
	if (c->io.fd >= 0) {
		ev_del(&hc_loop, &c->io);
		close(c->io.fd);
		c->io.fd = -1;
	}
	ev_timer_stop(&hc_loop, &c->timer);
	c->busy = false;
	c->t = NULL;
	hc_inflight--;

	log_debug("target %s: health check %s%s%s", t->name, ok ? "passed" : "failed",
		  ok ? "" : ": ", ok ? "" : strerror(err));
	target_hc_result(t, ok, err, now);
	t->hc_due_ns = hc_next_due(now);
	t->hc_busy = false;
	target_put(t);
}

static void hc_io_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	(void)loop;
	(void)events;
	struct hc_check *c = container_of(io, struct hc_check, io);
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (!err && !(events & EPOLLOUT))
		return;	/* spurious: the connect has not finished */
	hc_finish(c, err == 0, err);
}

static void hc_timeout_cb(struct ev_loop *loop, struct ev_timer *timer)
{
	(void)loop;
	hc_finish(container_of(timer, struct hc_check, timer), false, ETIMEDOUT);
}

/* Starts one check of t (referenced) in slot c. */
static void hc_start(struct hc_check *c, struct target *t)
{
	c->t = t;
	c->busy = true;
	c->io.fd = -1;
	hc_inflight++;

	struct sockaddr_storage ss;
	socklen_t len;
	if (target_addr(t, &ss, &len) < 0) {
		hc_finish(c, false, EHOSTUNREACH);
		return;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		/* our problem (fd limit), not the target's: count nothing */
		log_warn("health check of %s: socket() failed: %s", t->name, strerror(errno));
		c->busy = false;
		c->t = NULL;
		hc_inflight--;
		t->hc_due_ns = hc_next_due(ev_now_ns());
		t->hc_busy = false;
		target_put(t);
		return;
	}
	if (connect(fd, (struct sockaddr *)&ss, len) == 0) {
		close(fd);
		hc_finish(c, true, 0);
		return;
	}
	if (errno != EINPROGRESS) {
		int err = errno;
		close(fd);
		hc_finish(c, false, err);
		return;
	}
	c->io.fd = fd;
	c->io.cb = hc_io_cb;
	if (ev_add(&hc_loop, &c->io, EPOLLOUT | EPOLLET) < 0) {
		close(fd);
		c->io.fd = -1;
		c->busy = false;
		c->t = NULL;
		hc_inflight--;
		t->hc_due_ns = hc_next_due(ev_now_ns());
		t->hc_busy = false;
		target_put(t);
		return;
	}
	ev_timer_start(&hc_loop, &c->timer, target_setting(&target_set.hc_timeout_ms));
}

/* Scans the registry for targets due a check and starts as many as there
 * are free slots; re-arms itself for the next due check. */
static void hc_tick_cb(struct ev_loop *loop, struct ev_timer *timer)
{
	(void)timer;
	struct target *start[HC_MAX_INFLIGHT];
	size_t n = 0, room = HC_MAX_INFLIGHT - hc_inflight;
	uint64_t now = ev_now_ns();
	uint64_t next = now + HC_TICK_MAX_MS * 1000000ull;
	bool starved = false;

	pthread_mutex_lock(&target_reg.lock);
	size_t nb = target_reg.n_buckets;
	if (hc_scan_pos >= nb)
		hc_scan_pos = 0;
	for (size_t k = 0; k < nb; k++) {
		size_t b = hc_scan_pos + k < nb ? hc_scan_pos + k : hc_scan_pos + k - nb;
		for (struct target *t = target_reg.buckets[b]; t; t = t->next) {
			if (t->hc_busy || !atomic_load_explicit(&t->hc_refs, memory_order_relaxed) ||
			    !atomic_load_explicit(&t->has_addrs, memory_order_relaxed))
				continue;	/* no address: down, nothing to check */
			if (t->hc_due_ns > now) {
				if (t->hc_due_ns < next)
					next = t->hc_due_ns;
				continue;
			}
			if (n == room) {
				/* next scan starts here, so that targets late in
				 * the table are not starved by early ones */
				if (!starved)
					hc_scan_pos = b;
				starved = true;
				continue;
			}
			t->hc_busy = true;
			target_ref_locked(t);
			start[n++] = t;
		}
	}
	pthread_mutex_unlock(&target_reg.lock);

	for (size_t i = 0, slot = 0; i < n; i++) {
		while (hc_checks[slot].busy)
			slot++;
		hc_start(&hc_checks[slot], start[i]);
	}

	uint64_t min_next = now + HC_TICK_MIN_MS * 1000000ull;
	if (starved || next < min_next)
		next = min_next;
	ev_timer_start_at(loop, &hc_tick, next);
}

static void *hc_main(void *arg)
{
	(void)arg;
	log_set_thread_name("health");
	ev_run(&hc_loop);
	for (size_t i = 0; i < HC_MAX_INFLIGHT; i++) {
		struct hc_check *c = &hc_checks[i];
		if (!c->busy)
			continue;
		if (c->io.fd >= 0) {
			ev_del(&hc_loop, &c->io);
			close(c->io.fd);
			c->io.fd = -1;
		}
		ev_timer_stop(&hc_loop, &c->timer);
		c->t->hc_busy = false;
		target_put(c->t);
		c->t = NULL;
		c->busy = false;
	}
	hc_inflight = 0;
	ev_timer_stop(&hc_loop, &hc_tick);
	return NULL;
}

int target_health_start(void)
{
	if (hc_running)
		return 0;
	int err = ev_init(&hc_loop);
	if (err)
		return err;
	hc_rng = ev_now_ns() | 1;
	hc_inflight = 0;
	for (size_t i = 0; i < HC_MAX_INFLIGHT; i++) {
		hc_checks[i].busy = false;
		hc_checks[i].t = NULL;
		hc_checks[i].io.fd = -1;
		ev_timer_init(&hc_checks[i].timer, hc_timeout_cb);
	}
	ev_timer_init(&hc_tick, hc_tick_cb);
	ev_timer_start(&hc_loop, &hc_tick, 0);
	int rc = pthread_create(&hc_thread, NULL, hc_main, NULL);
	if (rc) {
		log_err("pthread_create(health) failed: %s", strerror(rc));
		ev_destroy(&hc_loop);
		return -rc;
	}
	hc_running = true;
	return 0;
}

void target_health_stop(void)
{
	if (!hc_running)
		return;
	ev_stop(&hc_loop);
	pthread_join(hc_thread, NULL);
	ev_destroy(&hc_loop);
	hc_running = false;
}
