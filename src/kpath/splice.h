/* splice.h - the kernel splice path: loads bpf/splice.bpf.c, puts connection pairs in its maps, reads its counters. */
#ifndef PANDIT_KPATH_SPLICE_H
#define PANDIT_KPATH_SPLICE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../../bpf/pandit_abi.h"
#include "core/sbuf.h"

struct rt_app;

/* Why a connection stayed on (or went back to) the userspace relay. */
enum kpath_fallback {
	KPATH_FB_UNAVAILABLE = 0,	/* program not loaded (kernel refused it at start) */
	KPATH_FB_HALF_CLOSED,		/* a side had sent FIN before the splice */
	KPATH_FB_APP_ID,		/* app ID beyond the counters map */
	KPATH_FB_MAP,			/* the kernel refused a map update (full, socket state...) */
	KPATH_FB_FOO,			/* Foo: no counters slot for the app (PANDIT_FOO_MAX_SLOTS) */
	KPATH_FB_MAX,
};

/* Process-wide counters of the kernel path (relaxed atomics). */
struct kpath_stats {
	_Atomic uint64_t spliced;		/* connections spliced since start */
	_Atomic uint64_t spliced_active;	/* spliced connections open now */
	_Atomic uint64_t entries;		/* sockets in the maps now (two per spliced connection) */
	_Atomic uint64_t held;			/* directions handed back to userspace by a hold */
	_Atomic uint64_t resumed;		/* held directions given back to the kernel */
	_Atomic uint64_t bulk_to_userspace;	/* holds under auto: the direction stays in userspace
						 * until quiet for its backoff */
	_Atomic uint64_t queued_at_splice;	/* bytes waiting in the sockets' receive queues when
						 * they entered the map (at least: read just before) */
	_Atomic uint64_t fallback[KPATH_FB_MAX];
	_Atomic uint64_t foo_framed;		/* Foo connections framed by the program since start */
};

extern struct kpath_stats kpath_stats;

/* One spliced pair as the daemon knows it. */
struct kpath_pair {
	uint64_t cookie[2];	/* client socket, upstream socket */
	uint64_t base[2];	/* bytes written into each before the splice */
};

/* Loads the program and creates its maps, with one hold ring per worker
 * (n_workers <= PANDIT_SPLICE_MAX_WORKERS) and backlog_max bytes of
 * redirect backlog per direction. Needs CAP_BPF (root); call before
 * privileges drop. Returns 0 or a negative errno, with the reason kept for
 * kpath_unavailable_reason(). */
int kpath_open(uint32_t n_workers, uint64_t backlog_max);
void kpath_close(void);
bool kpath_available(void);
/* Why kpath_open() failed (or "not loaded"), for logs and errors. */
const char *kpath_unavailable_reason(void);

/* fd of worker i's ring of hold events (struct pandit_splice_event), or -1. */
int kpath_ring_fd(uint32_t worker);

/* Splices the connection: both sockets (fds, established, their queues of
 * userspace bytes flushed) go into the maps for app_id, owned by worker;
 * foo, when not NULL, is how the Foo framer starts (both directions'
 * state and the requests pending, src/kpath/foo_kern.h).
 * Returns 0, or a negative errno with nothing left in the maps and
 * *reason set. */
struct kfoo_start;
int kpath_splice(struct kpath_pair *p, int cli_fd, int up_fd, uint32_t app_id, uint32_t worker,
		 const struct kfoo_start *foo, enum kpath_fallback *reason);
/* Takes both sockets out of the maps (before they are closed); with final
 * non-NULL, first fills it with both entries as they stand once the program
 * no longer runs for the sockets (zeroed where unreadable); track, for a
 * connection spliced with the Foo framer (else NULL), gets its pending
 * requests (zeroed: none) and its foo_track entry goes too. The kernel
 * drops what is still queued for them: only for pairs done or reset. */
void kpath_unsplice(const struct kpath_pair *p, struct pandit_splice_val final[2],
		    struct pandit_foo_track *track);
/* Asks the program to give held socket side back to the kernel once it has
 * passed exactly resume_at bytes to userspace (the bytes read so far, all
 * written to the peer: user_written of them for this direction since the
 * splice). Returns 0 or -errno. */
int kpath_resume(const struct kpath_pair *p, int side, uint64_t resume_at, uint64_t user_written);
/* Reads socket side's (0 client, 1 upstream) entry. Returns 0 or -errno. */
int kpath_read(const struct kpath_pair *p, int side, struct pandit_splice_val *out);

/* Bytes the kernel has taken into fd's write queue since it opened (TCP
 * bytes acked + bytes not yet acked). Returns 0 or -errno. */
int kpath_written(int fd, uint64_t *out);

/* Adds the kernel's byte counts of app (per-CPU map) to its conn_stats
 * bytes_in/bytes_out since the last call: called before rendering an app's
 * counters and when a spliced connection closes. Cheap when the app never
 * spliced. Thread-safe. */
void kpath_fold_app(const struct rt_app *app);

/* Appends ,"kernel_path":{... (JSON) for /stats: connections per path,
 * fallbacks per reason, map entries, program outcomes, and leaves the
 * object open for the short-circuit's part: the caller appends the closing
 * brace. active is the number of connections open now (all paths). */
void kpath_render_json(struct sbuf *out, uint64_t active);
/* Appends the same as Prometheus families (nothing when the program is
 * not loaded). */
void kpath_render_prometheus(struct sbuf *out, uint64_t active);

/* fds of the program and of the sockets and peers maps (-1 when not
 * loaded), for tests and diagnostics. */
void kpath_fds(int *prog, int *socks, int *peers);

/* fd of the program's Foo counters map (foo_counts), -1 when not loaded;
 * the number of possible CPUs (per-CPU values), for src/kpath/foo_kern.c. */
int kpath_foo_counts_fd(void);
int kpath_foo_track_fd(void);
int kpath_foo_pending_fd(void);
int kpath_ncpus(void);

/* The program's count of events it could not put in a ring (all workers). */
uint64_t kpath_ring_misses(void);

/* Reads the program's per-outcome counters (summed over CPUs); 0 or -errno. */
int kpath_read_outcomes(uint64_t out[PANDIT_SPLICE_STAT_MAX]);

#endif
