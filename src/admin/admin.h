/* admin.h - the admin HTTP endpoint (GET /metrics, GET /stats), served by its own thread and event loop. */
#ifndef PANDIT_ADMIN_H
#define PANDIT_ADMIN_H

#include <stdint.h>
#include <sys/socket.h>

struct rt_snapshot;
struct steer_counters;
struct admin;

/* Where the admin thread gets what it renders. Every callback runs on the
 * admin thread, once per request, so it must be thread-safe. */
struct admin_source {
	/* The snapshot in force with a reference taken, or NULL when there is
	 * none yet (the page then lists no apps). */
	struct rt_snapshot *(*snapshot_get)(void *ctx);
	/* Releases what snapshot_get returned: rt_snapshot_put. A callback
	 * rather than a direct call keeps admin free of the runtime. */
	void (*snapshot_put)(struct rt_snapshot *snap);
	/* Fills the steering counters and returns 0, or returns < 0 to leave
	 * them out. May be NULL. */
	int (*steer_counters)(void *ctx, struct steer_counters *out);
	void *ctx;
};

/* Limits; a field left 0 takes the default shown. */
struct admin_opts {
	uint32_t max_clients;		/* 256: a client accepted over it is closed at once */
	uint32_t header_timeout_ms;	/* 5000: whole request head within, else 408 */
	uint32_t write_stall_ms;	/* 10000: a response making no progress this long is cut */
	uint32_t response_timeout_ms;	/* 60000: a response taking longer is cut */
	uint32_t linger_ms;		/* 2000: reading what the client still sends before close */
};

#define ADMIN_DEFAULT_MAX_CLIENTS	256u
#define ADMIN_DEFAULT_HEADER_TIMEOUT_MS	5000u
#define ADMIN_DEFAULT_WRITE_STALL_MS	10000u
#define ADMIN_DEFAULT_RESPONSE_TIMEOUT_MS 60000u
#define ADMIN_DEFAULT_LINGER_MS		2000u

/* Creates the non-blocking TCP listener on addr (SO_REUSEADDR, CLOEXEC).
 * Binding a low port needs privileges, so call it before dropping them.
 * Returns the fd or a negative errno, logging the cause. */
int admin_listen(const struct sockaddr *addr, socklen_t len);

/* Serves listen_fd (from admin_listen; ownership passes to admin, also on
 * failure) on a new thread with its own event loop. src is copied; opts
 * may be NULL. Returns 0 with *out, or a negative errno. */
int admin_start(int listen_fd, const struct admin_source *src, const struct admin_opts *opts,
		struct admin **out);

/* Stops the thread, closes the listener and every client, frees a. */
void admin_stop(struct admin *a);

#endif
