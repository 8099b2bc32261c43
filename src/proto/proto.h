/* proto.h - the small interface between the connection core and the protocol handlers (tcp, foo, http). */
#ifndef PANDIT_PROTO_PROTO_H
#define PANDIT_PROTO_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct worker;
struct rt_app;
struct pandit_foo_parse;
struct kfoo_start;
struct pandit_foo_track;

/*
 * A protocol plugs into the core in one of two ways:
 *
 * - A watcher rides on the L4 relay (src/proxy/conn.c): the core connects
 *   upstream and moves the bytes; before bytes are forwarded it shows them
 *   to the watcher, which parses and counts (Foo). The watcher can ask to be
 *   switched off (lenient policy) or to close the connection (strict).
 * - An owner takes the client socket over from accept() on (HTTP): it
 *   chooses targets per request, keeps its own upstream connections and
 *   answers errors itself. It uses the worker's loop, pools and timers.
 *
 * tcp is the relay with no watcher.
 */

enum proto_verdict {
	PROTO_CONTINUE = 0,	/* forward and keep watching */
	PROTO_UNWATCH,		/* forward, stop watching this connection */
	PROTO_CLOSE,		/* close the connection (reset both sides) */
};

struct proto_handler {
	const char *name;
	/* owner: takes fd (accepted, non-blocking) and the app reference */
	void (*accept)(struct worker *w, int fd, struct rt_app *app);
	/* watcher: per-connection state; NULL from watch_new means "not
	 * watched" (out of memory: logged by the handler) */
	void *(*watch_new)(struct rt_app *app);
	/* bytes read in direction dir (PROTO_DIR_*), before they are
	 * forwarded; len 0 means EOF in that direction */
	enum proto_verdict (*watch)(void *st, struct rt_app *app, int dir, const char *data,
				    size_t len, uint64_t now_ns);
	void (*watch_free)(void *st, struct rt_app *app);
	/* Optional, a watcher whose work the kernel splice program can do
	 * (bpf/foo_frame.bpf.h); the core calls these on a connection it
	 * splices, and then shows watch() no more bytes, only the EOFs.
	 * kern_enter: fills ks from what watch() has seen so far; false keeps
	 * the connection in userspace. kern_entered: the kernel has it now.
	 * kern_back: direction dir's framer state as the program left it,
	 * before an EOF or when the program stopped framing (a violation):
	 * returns the verdict, as watch() would have. kern_done: the
	 * connection leaves the kernel for good (it closes), t is the state
	 * the program left (Foo: requests pending); true when the caller must
	 * clean up after it (kfoo_forget). */
	bool (*kern_enter)(void *st, struct rt_app *app, struct kfoo_start *ks);
	void (*kern_entered)(void *st, struct rt_app *app, uint64_t client_cookie);
	enum proto_verdict (*kern_back)(void *st, struct rt_app *app, int dir,
					const struct pandit_foo_parse *k);
	bool (*kern_done)(void *st, struct rt_app *app, const struct pandit_foo_track *t);
};

#define PROTO_DIR_C2S 0		/* client to server */
#define PROTO_DIR_S2C 1		/* server to client */

/* The handler of protocol p (never NULL). */
const struct proto_handler *proto_handler(enum app_protocol p);

/* The handlers, one file each. */
extern const struct proto_handler proto_tcp, proto_foo, proto_http;

#endif
