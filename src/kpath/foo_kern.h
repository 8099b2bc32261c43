/* foo_kern.h - Foo framed in the kernel: slots of the splice program's per-app Foo counters, and their merge into the Foo statistics. */
#ifndef PANDIT_KPATH_FOO_KERN_H
#define PANDIT_KPATH_FOO_KERN_H

#include <stdbool.h>
#include <stdint.h>

#include "../../bpf/pandit_abi.h"

struct foo_app_stats;

struct foo_pending_seq;

/* What the program starts a Foo connection with: both directions' framer
 * state (client socket's first) and the requests pending a reply (track
 * totals; pend: track.used distinct Seqs, owned by the caller). */
struct kfoo_start {
	struct pandit_foo_parse dir[2];
	struct pandit_foo_track track;
	struct foo_pending_seq *pend;
};

/* Puts a connection's pending requests in the program's maps (client
 * socket cookie); 0 or -errno with nothing left. Undone by kfoo_stop(). */
int kfoo_start_track(uint64_t client_cookie, const struct kfoo_start *ks);
/* Undoes kfoo_start_track() for a splice that failed. */
void kfoo_undo_track(uint64_t client_cookie, const struct kfoo_start *ks);
/* Takes them out (the sockets have left the map): *out gets the totals as
 * the program left them (zeroed when none). Entries of Seqs still pending
 * stay until kfoo_forget(). */
void kfoo_stop_track(uint64_t client_cookie, struct pandit_foo_track *out);
/* The stopped connection's pending entries are to go: they are deleted in
 * one pass over the map for many connections (kfoo_sweep). */
void kfoo_forget(uint64_t client_cookie);

/* A message completed at EOF, which the program never sees (the last line
 * without LF), matched by the daemon against the program's entries while
 * the other direction's program may still run: the entry operations are
 * the program's; the connection's totals are not touched (the caller keeps
 * its changes to them). The direction whose EOF this is has no program
 * running any more. */
enum kfoo_req_result {
	KFOO_REQ_NEW,			/* a new entry: a Seq not pending */
	KFOO_REQ_DUPLICATE,		/* one more send on the Seq's entry */
	KFOO_REQ_DUPLICATE_ENTRY,	/* a Seq pending in its slot: an entry for this send */
	KFOO_REQ_UNTRACKED,
};
/* A REQ: see enum kfoo_req_result (at most PANDIT_FOO_TRACK_MAX distinct
 * Seqs for the connection: used is the caller's count of them). Slots are
 * only read, entries made in foo_pending. */
enum kfoo_req_result kfoo_user_request(uint64_t client_cookie, uint64_t seq, uint64_t now_ns,
				       uint64_t used);
/* A reply: 1 when Seq was pending (*t_ns its first send, *emptied when
 * that was its last pending send, *entry when it was an entry, which is
 * then updated or gone; a slot is left as it is: the caller counts the send
 * as taken away), else 0. */
int kfoo_user_reply(uint64_t client_cookie, uint64_t seq, uint64_t *t_ns, bool *emptied,
		    bool *entry);
/* The connection's totals as the program has them now (zeroed: none). */
void kfoo_user_totals(uint64_t client_cookie, struct pandit_foo_track *out);
/* Deletes the pending entries of connections stopped since the last
 * sweep; true while more remain (call again). Cheap when none. */
bool kfoo_sweep(void);

/* Gives s's counters a slot in the program's foo_counts map once (a zeroed
 * entry) and sets *slot. 0, or -errno (-EOPNOTSUPP: the program is not
 * loaded, -ENOSPC: PANDIT_FOO_MAX_SLOTS in use). Thread-safe. */
int kfoo_claim(struct foo_app_stats *s, uint32_t *slot);

/* Deletes slot's entry and frees the slot (0: nothing): when the counters
 * it belongs to are freed. Thread-safe. */
void kfoo_release(uint32_t slot);

/* Adds what the kernel counted for s (nothing when it never had a slot)
 * into dst: messages by type, wrong-direction messages and the moving
 * windows as of now_ns. dst must not be updated concurrently by others. */
void kfoo_accumulate(struct foo_app_stats *dst, const struct foo_app_stats *s, uint64_t now_ns);

#endif
