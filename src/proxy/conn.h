/* conn.h - one proxied TCP connection: client socket, upstream socket, the relay between them. */
#ifndef PANDIT_CONN_H
#define PANDIT_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/ev.h"
#include "kpath/shortcut.h"
#include "kpath/splice.h"
#include "lb/balance.h"
#include "runtime/runtime.h"

struct worker;
struct proto_handler;

/* Bytes read from one side not yet written to the other: data[head, tail)
 * on the copy path, or pipe_len bytes in a pipe on the splice path. */
struct conn_buf {
	char *data;	/* from the worker's pool; NULL while empty */
	uint32_t head, tail;
	int pipe[2];	/* splice path: from the worker's pool; -1 while empty */
	uint32_t pipe_len;
};

struct conn_side {
	struct ev_io io;
	bool readable;	/* edge seen, EAGAIN not yet met */
	bool writable;
	bool eof;	/* read returned 0: the peer sent FIN */
	bool rdhup;	/* epoll reported the peer's FIN or an error: read to the end */
	bool shut;	/* we sent FIN (shutdown(SHUT_WR)) */
	bool partial;	/* the last read may have stopped inside an skb (it filled
			 * the buffer, or spliced into a pipe): the kernel would
			 * hand that skb to the splice program whole, its read part
			 * again, so no splice before a read that drained the queue */
};

enum conn_state { CONN_CONNECTING, CONN_RELAY };

/* Kernel splicing of the connection (docs/ARCHITECTURE.md, "Kernel
 * splicing"). Directions: 0 = client -> upstream, 1 = upstream -> client;
 * direction d is read from socket d (0 client, 1 upstream). */
struct conn_splice {
	struct kpath_pair pair;	/* cookies and write bases of both sockets */
	uint64_t folded[2];	/* kernel bytes of each direction added to the target's counters */
	uint64_t seen[2];	/* kernel bytes at the last idle check */
	uint64_t rd[2];		/* bytes userspace read from socket d since the splice */
	uint64_t uw[2];		/* bytes userspace wrote for direction d since the splice */
	uint64_t resume_sent[2];	/* rd[d] of the last resume request, UINT64_MAX: none */
	uint64_t last_rd_ns[2];	/* when userspace last read bytes from socket d (loop time) */
	uint32_t holds[2];	/* times direction d was held (the kernel fell behind its sender) */
	bool on;		/* both sockets are in the splice maps */
	bool tried;		/* splicing was decided (done or refused): not again */
	bool kern[2];		/* the kernel moves direction d */
	bool drained[2];	/* nothing of direction d left in the kernel's backlog */
	bool kwatch;		/* the program does the watcher's work (Foo framed in the
				 * kernel): watch() sees only the EOFs */
	bool framed;		/* spliced with the Foo framer (its maps hold entries for
				 * the connection, even once the watcher is gone) */
	uint32_t poll_ms;	/* backoff of the drain poll */
};

/* The local short-circuit of the connection (docs/ARCHITECTURE.md, "Short-
 * circuit for local peers"): the client's and the backend's own sockets
 * paired, each one's sends going into the other's receive queue. Side 0 is
 * the client's socket (its bytes go to the target), 1 the backend's. */
struct conn_shortcut {
	struct shortcut_pair pair;
	uint64_t folded[2];	/* redirected bytes of each side added to the counters */
	uint64_t retry_at;	/* loop time of the first try, when retry is set */
	bool on;		/* both pair entries are in the map */
	bool retry;		/* only the backend's end was not found: try once more at
				 * a later event (its socket may not be registered yet) */
};

struct conn {
	struct worker *w;
	struct conn *prev, *next;
	struct conn_side cli, up;
	struct conn_buf c2u, u2c;
	enum conn_state state;
	struct rt_app *app;		/* referenced */
	int ti;				/* index of the target in use, -1 before */
	uint32_t attempts;
	struct lb_tried tried;
	struct ev_timer timer;		/* connect timeout, then idle timeout */
	struct ev_timer poll;		/* spliced: polls a direction's kernel backlog until drained */
	struct conn_splice sp;
	struct conn_shortcut sc;
	uint64_t connect_start;
	uint64_t last_active;
	bool dead;			/* closed; freed after the current batch of events */
	const struct proto_handler *proto;	/* the app's protocol */
	void *watch;			/* its watcher's state (Foo parsers); NULL: not watched */
};

/* Takes a freshly accepted client fd for app (reference passed in) and
 * starts connecting upstream. Closes fd on failure. */
void conn_accept(struct worker *w, int fd, struct rt_app *app);
/* Closes the connection at once (worker shutdown). */
void conn_close(struct conn *c);
/* Frees the connections closed during the last batch of events: an event
 * for one socket of a connection may still be queued in the batch after a
 * callback for its other socket closed it. */
void conn_reap(struct worker *w);
/* A hold event from the splice program for socket cookie (worker's ring):
 * the connection owning it reads that socket from now on. */
void conn_splice_held(struct worker *w, uint64_t cookie);
/* A resume event: the kernel moves that socket's bytes again. */
void conn_splice_resumed(struct worker *w, uint64_t cookie);
/* Events were lost (a ring was full): checks every spliced connection of
 * the worker for a hold or resume it was not told about. */
void conn_splice_rescan(struct worker *w);
/* The program stopped framing the Foo connection of socket cookie (a
 * violation): counts it, and closes the connection under the strict policy. */
void conn_splice_foo(struct worker *w, uint64_t cookie);

#endif
