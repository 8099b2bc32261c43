/* ev.c - an edge-triggered epoll event loop with a timer heap and cross-thread calls. */
#include "core/ev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define EV_MAX_EVENTS 256

uint64_t ev_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void ev_run_calls(struct ev_loop *loop)
{
	pthread_mutex_lock(&loop->calls_lock);
	struct ev_call *c = loop->calls;
	loop->calls = loop->calls_tail = NULL;
	pthread_mutex_unlock(&loop->calls_lock);
	while (c) {
		struct ev_call *next = c->next;
		c->fn(loop, c->arg);
		free(c);
		c = next;
	}
}

static void ev_wake_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	(void)events;
	uint64_t v;
	while (read(io->fd, &v, sizeof(v)) == sizeof(v))
		;
	ev_run_calls(loop);
}

int ev_init(struct ev_loop *loop)
{
	memset(loop, 0, sizeof(*loop));
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		int err = -errno;
		log_err("epoll_create1() failed: %s", strerror(errno));
		return err;
	}
	loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->wakefd < 0) {
		int err = -errno;
		log_err("eventfd() failed: %s", strerror(errno));
		close(loop->epfd);
		return err;
	}
	pthread_mutex_init(&loop->calls_lock, NULL);
	loop->wake_io.fd = loop->wakefd;
	loop->wake_io.cb = ev_wake_cb;
	loop->now = ev_now_ns();
	int err = ev_add(loop, &loop->wake_io, EPOLLIN | EPOLLET);
	if (err) {
		close(loop->wakefd);
		close(loop->epfd);
	}
	return err;
}

void ev_destroy(struct ev_loop *loop)
{
	ev_run_calls(loop);
	close(loop->wakefd);
	close(loop->epfd);
	free(loop->heap);
	pthread_mutex_destroy(&loop->calls_lock);
	loop->heap = NULL;
}

int ev_add(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0) {
		int err = -errno;
		log_err("epoll_ctl(ADD, fd %d) failed: %s", io->fd, strerror(errno));
		return err;
	}
	return 0;
}

int ev_mod(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0) {
		int err = -errno;
		log_err("epoll_ctl(MOD, fd %d) failed: %s", io->fd, strerror(errno));
		return err;
	}
	return 0;
}

void ev_del(struct ev_loop *loop, struct ev_io *io)
{
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

/* --- timer heap ----------------------------------------------------------- */

static void heap_swap(struct ev_loop *l, size_t a, size_t b)
{
	struct ev_timer *t = l->heap[a];
	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->idx = a;
	l->heap[b]->idx = b;
}

static void heap_up(struct ev_loop *l, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (l->heap[p]->when <= l->heap[i]->when)
			break;
		heap_swap(l, p, i);
		i = p;
	}
}

static void heap_down(struct ev_loop *l, size_t i)
{
	for (;;) {
		size_t c = 2 * i + 1, m = i;
		if (c < l->heap_len && l->heap[c]->when < l->heap[m]->when)
			m = c;
		if (c + 1 < l->heap_len && l->heap[c + 1]->when < l->heap[m]->when)
			m = c + 1;
		if (m == i)
			break;
		heap_swap(l, i, m);
		i = m;
	}
}

void ev_timer_init(struct ev_timer *t, void (*cb)(struct ev_loop *, struct ev_timer *))
{
	t->when = 0;
	t->idx = (size_t)-1;
	t->cb = cb;
}

void ev_timer_stop(struct ev_loop *l, struct ev_timer *t)
{
	size_t i = t->idx;
	if (i == (size_t)-1)
		return;
	t->idx = (size_t)-1;
	l->heap_len--;
	if (i == l->heap_len)
		return;
	l->heap[i] = l->heap[l->heap_len];
	l->heap[i]->idx = i;
	heap_up(l, i);
	heap_down(l, l->heap[i]->idx);
}

int ev_timer_start_at(struct ev_loop *l, struct ev_timer *t, uint64_t when)
{
	if (ev_timer_armed(t)) {
		uint64_t old = t->when;
		t->when = when;
		if (when < old)
			heap_up(l, t->idx);
		else
			heap_down(l, t->idx);
		return 0;
	}
	if (l->heap_len == l->heap_cap) {
		size_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
		struct ev_timer **h = realloc(l->heap, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		l->heap = h;
		l->heap_cap = cap;
	}
	t->when = when;
	t->idx = l->heap_len;
	l->heap[l->heap_len++] = t;
	heap_up(l, t->idx);
	return 0;
}

int ev_timer_start(struct ev_loop *l, struct ev_timer *t, uint64_t delay_ms)
{
	return ev_timer_start_at(l, t, l->now + delay_ms * 1000000ull);
}

/* --- cross-thread calls ------------------------------------------------------ */

int ev_post(struct ev_loop *loop, void (*fn)(struct ev_loop *, void *), void *arg)
{
	struct ev_call *c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fn = fn;
	c->arg = arg;
	c->next = NULL;
	pthread_mutex_lock(&loop->calls_lock);
	if (loop->calls_tail)
		loop->calls_tail->next = c;
	else
		loop->calls = c;
	loop->calls_tail = c;
	pthread_mutex_unlock(&loop->calls_lock);
	uint64_t one = 1;
	ssize_t n = write(loop->wakefd, &one, sizeof(one));
	(void)n;	/* EAGAIN means the counter is already non-zero: the loop will wake */
	return 0;
}

static void ev_stop_call(struct ev_loop *loop, void *arg)
{
	(void)arg;
	loop->stop = true;
}

void ev_stop(struct ev_loop *loop)
{
	if (ev_post(loop, ev_stop_call, NULL) < 0)
		loop->stop = true;
}

/* --- the loop ----------------------------------------------------------------- */

int ev_run(struct ev_loop *loop)
{
	struct epoll_event events[EV_MAX_EVENTS];
	uint64_t spin_until = 0;
	loop->stop = false;
	while (!loop->stop) {
		if (loop->before_sleep)
			loop->before_sleep(loop);
		int timeout = -1;
		loop->now = ev_now_ns();
		if (loop->heap_len) {
			uint64_t when = loop->heap[0]->when;
			if (when <= loop->now)
				timeout = 0;
			else
				timeout = (int)((when - loop->now + 999999) / 1000000);
		}
		if (loop->now < spin_until)
			timeout = 0;
		int n = epoll_wait(loop->epfd, events, EV_MAX_EVENTS, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int err = -errno;
			log_err("epoll_wait() failed: %s", strerror(errno));
			return err;
		}
		loop->now = ev_now_ns();
		if (n > 0 && loop->busy_poll_ns)
			spin_until = loop->now + loop->busy_poll_ns;
		for (int i = 0; i < n; i++) {
			struct ev_io *io = events[i].data.ptr;
			io->cb(loop, io, events[i].events);
		}
		while (loop->heap_len && loop->heap[0]->when <= loop->now) {
			struct ev_timer *t = loop->heap[0];
			ev_timer_stop(loop, t);
			t->cb(loop, t);
		}
	}
	return 0;
}
