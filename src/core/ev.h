/* ev.h - an edge-triggered epoll event loop with timers and cross-thread calls, one per thread. */
#ifndef PANDIT_EV_H
#define PANDIT_EV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

struct ev_loop;

/* Embedded in whatever owns an fd; the loop calls cb with the epoll events. */
struct ev_io {
	int fd;
	void (*cb)(struct ev_loop *loop, struct ev_io *io, uint32_t events);
};

/* Embedded one-shot timer; cb runs once at or after `when` (CLOCK_MONOTONIC ns). */
struct ev_timer {
	uint64_t when;
	size_t idx;	/* position in the heap, (size_t)-1 when not armed */
	void (*cb)(struct ev_loop *loop, struct ev_timer *t);
};

struct ev_call {
	void (*fn)(struct ev_loop *loop, void *arg);
	void *arg;
	struct ev_call *next;
};

struct ev_loop {
	int epfd;
	int wakefd;			/* eventfd: ev_post() wakes the loop */
	struct ev_io wake_io;
	bool stop;
	uint64_t now;			/* cached CLOCK_MONOTONIC ns, refreshed each iteration */
	struct ev_timer **heap;		/* min-heap on when */
	size_t heap_len, heap_cap;
	pthread_mutex_t calls_lock;
	struct ev_call *calls;		/* posted from other threads, run in order */
	struct ev_call *calls_tail;
	void (*before_sleep)(struct ev_loop *loop);
	/* Busy polling: after a wait that returned events, keep polling without
	 * sleeping for this long (0: off). Costs CPU while traffic flows, saves
	 * the wake-up of a sleeping thread on the next event. */
	uint64_t busy_poll_ns;
	void *data;			/* owner's context */
};

/* Returns 0 or a negative errno. */
int ev_init(struct ev_loop *loop);
void ev_destroy(struct ev_loop *loop);

/* Registers io->fd for events (EPOLLET is added by the caller when wanted). */
int ev_add(struct ev_loop *loop, struct ev_io *io, uint32_t events);
int ev_mod(struct ev_loop *loop, struct ev_io *io, uint32_t events);
void ev_del(struct ev_loop *loop, struct ev_io *io);

void ev_timer_init(struct ev_timer *t, void (*cb)(struct ev_loop *, struct ev_timer *));
/* Arms (or re-arms) t to fire after delay_ms. Returns 0 or -ENOMEM. */
int ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t delay_ms);
int ev_timer_start_at(struct ev_loop *loop, struct ev_timer *t, uint64_t when_ns);
void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t);
static inline bool ev_timer_armed(const struct ev_timer *t) { return t->idx != (size_t)-1; }

/* Runs fn(loop, arg) on the loop's own thread soon; callable from any
 * thread. Returns 0 or -ENOMEM. */
int ev_post(struct ev_loop *loop, void (*fn)(struct ev_loop *, void *), void *arg);

/* Runs until ev_stop(); returns 0 or a negative errno from epoll_wait. */
int ev_run(struct ev_loop *loop);
/* Makes ev_run() return after the current iteration; any thread (through ev_post). */
void ev_stop(struct ev_loop *loop);

uint64_t ev_now_ns(void);	/* CLOCK_MONOTONIC */

#endif
