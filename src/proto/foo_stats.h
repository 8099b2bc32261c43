/* foo_stats.h - Foo protocol accounting: per-app message counters, rates, REQ->reply latency, and the per-connection state that feeds them. */
#ifndef PANDIT_PROTO_FOO_STATS_H
#define PANDIT_PROTO_FOO_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/sbuf.h"
#include "proto/foo.h"
#include "stats/stats.h"
#include "stats/window.h"

/*
 * What counts (seed 004): only valid messages in the right direction, REQ
 * from the client, ACK and NAK from the server. A valid message in the wrong
 * direction counts in msg_wrong_direction only and is not a violation.
 *
 * Latency is matched by Seq within one connection: a REQ's time is the
 * now_ns of the foo_conn_data() call that completed it, the reply's likewise.
 * Decisions:
 * - Up to FOO_CONN_MAX_OUTSTANDING distinct Seqs wait per connection (open
 *   addressing, grown on demand to at most 2 x that many slots, 24 bytes
 *   each: 192 KiB at worst, nothing before the first REQ). Beyond the cap a
 *   REQ is counted in requests_untracked and the connection remembers only
 *   how many such requests wait: a reply matching no tracked Seq then
 *   consumes one of them instead of counting as unmatched, and no latency is
 *   observed for it.
 * - The same Seq sent again before its reply counts in requests_duplicate
 *   and raises the Seq's pending count instead of taking a slot; each reply
 *   with that Seq consumes one, and its latency is measured from the first
 *   of the pending sends (an upper bound for the later ones: replies come in
 *   order, so the first reply answers the first send).
 * - A reply whose Seq is not pending (and no untracked request waits)
 *   counts in replies_unmatched.
 * - Requests still pending when the connection is freed count in
 *   requests_unanswered (tracked and untracked alike). A connection that
 *   turned non-compliant is no longer watched: its pending requests are
 *   dropped, not counted as unanswered.
 * - The Seq hash is keyed per connection with a process-wide random value,
 *   so a client cannot pick Seqs that all collide.
 *
 * Violations (either direction; the first one decides) make the connection
 * non-compliant: noncompliant_client or noncompliant_server + 1, the reason
 * in violations[enum foo_err]; under the strict policy also
 * conns_closed_strict + 1, on the understanding that the caller closes the
 * connection when foo_conn_data() returns -1.
 */

#define FOO_CONN_MAX_OUTSTANDING 4096u
#define FOO_N_ERR (FOO_ERR_TRUNCATED + 1)

/* Counters of one app. All fields are updated with relaxed atomics from any
 * worker and read from any thread. Refcounted like conn_stats so a reload can
 * carry them over; a zeroed struct on the stack (see foo_app_stats_init) is
 * fine as the target of foo_app_stats_accumulate(). */
struct foo_app_stats {
	_Atomic uint32_t refcnt;
	_Atomic uint64_t msg_total;		/* msg_req + msg_ack + msg_nak */
	_Atomic uint64_t msg_req;
	_Atomic uint64_t msg_ack;
	_Atomic uint64_t msg_nak;
	struct stats_win req_win;		/* REQ */
	struct stats_win resp_win;		/* ACK + NAK */
	struct stats_hist latency;		/* REQ -> ACK/NAK by Seq, microseconds */
	_Atomic uint64_t replies_unmatched;
	_Atomic uint64_t requests_unanswered;
	_Atomic uint64_t requests_untracked;
	_Atomic uint64_t requests_duplicate;
	_Atomic uint64_t msg_wrong_direction;	/* REQ from the server, ACK/NAK from the client */
	_Atomic uint64_t conns;			/* connections watched (foo_conn_new) */
	_Atomic uint64_t noncompliant_client;	/* connections whose client broke the protocol first */
	_Atomic uint64_t noncompliant_server;	/* ... whose server did */
	_Atomic uint64_t conns_closed_strict;	/* non-compliant under the strict policy */
	_Atomic uint64_t violations[FOO_N_ERR];	/* by reason; [FOO_OK] unused */
	/* The kernel framer's counters for these (src/kpath/foo_kern.h): a
	 * slot of its per-CPU map, 0 until a connection first takes the
	 * kernel path; released when the struct is freed. Readers add the
	 * kernel's counts with kfoo_accumulate(). */
	_Atomic uint32_t kslot;
};

struct foo_app_stats *foo_app_stats_new(void);	/* refcnt 1, zeroed; NULL on ENOMEM */
struct foo_app_stats *foo_app_stats_get(struct foo_app_stats *s);	/* NULL-safe */
void foo_app_stats_put(struct foo_app_stats *s);			/* NULL-safe */
/* Zeroes s for use without refcounting (an accumulator). */
void foo_app_stats_init(struct foo_app_stats *s);
/* Adds src's counters, histogram and windows (as of now_ns) into dst: the
 * process-wide totals are the sum of the apps accumulated into one zeroed
 * struct. dst must not be updated concurrently by others. */
void foo_app_stats_accumulate(struct foo_app_stats *dst, const struct foo_app_stats *src,
			      uint64_t now_ns);

/* --- per connection ------------------------------------------------------------------ */

struct foo_conn;
struct pandit_foo_track;

enum { FOO_DIR_C2S = 0, FOO_DIR_S2C = 1 };

/* max_line 0: FOO_MAX_LINE_DEFAULT. strict: the caller closes the connection
 * on a violation (changes only what is counted). Counts the connection in
 * s->conns when s is not NULL. NULL on ENOMEM. */
struct foo_conn *foo_conn_new(uint32_t max_line, bool strict, struct foo_app_stats *s);

/* Counts the requests still pending as unanswered (unless the connection
 * turned non-compliant) and frees it. s may be NULL (nothing counted);
 * c may be NULL. */
void foo_conn_free(struct foo_conn *c, struct foo_app_stats *s);

/* Bytes received from one side, in the order received: dir FOO_DIR_C2S
 * (client -> server) or FOO_DIR_S2C. Client bytes must be passed no later
 * than they are forwarded (so a REQ is seen before its reply can be).
 * now_ns: CLOCK_MONOTONIC. Returns 0, or -1 when the connection is (or just
 * turned) non-compliant: strict, the caller closes it; lenient, the caller
 * keeps relaying and stops calling. s may be NULL (parse only). */
int foo_conn_data(struct foo_conn *c, struct foo_app_stats *s, int dir, const char *buf,
		  size_t len, uint64_t now_ns);

/* EOF from one side: a last line without LF counts if it is a message, a
 * line cut inside Type or before Seq is a violation. Same return as
 * foo_conn_data(); the caller may ignore it (the connection ends anyway). */
int foo_conn_eof(struct foo_conn *c, struct foo_app_stats *s, int dir, uint64_t now_ns);

/* --- the kernel path (src/kpath/foo_kern.h, bpf/foo_frame.bpf.h) --------------------- */

/* Direction dir's parser: its state goes to the kernel framer at a splice
 * and comes back for the EOF (foo_parser_export/import). */
struct foo_parser *foo_conn_parser(struct foo_conn *c, int dir);
/* One distinct Seq pending a reply. */
struct foo_pending_seq {
	uint64_t seq;
	uint64_t t_ns;		/* time of its first pending send */
	uint32_t n;		/* sends pending */
};
/* The requests pending a reply, for the kernel framer: fills out with up
 * to max distinct Seqs and returns how many; *pending gets the sends
 * pending in those, *untracked the rest (beyond max, or untracked
 * already). */
size_t foo_conn_export_pending(const struct foo_conn *c, struct foo_pending_seq *out, size_t max,
			       uint64_t *pending, uint64_t *untracked);
/* Forgets the requests pending a reply (not counted as unanswered): they
 * moved to the kernel, or the connection turned non-compliant. */
void foo_conn_drop_pending(struct foo_conn *c);
/* The kernel's maps hold the connection's pending requests from now on
 * (those of the client socket client_cookie, put there from
 * foo_conn_export_pending); messages still completed here (at an EOF)
 * are matched there. */
void foo_conn_kernel_tracks(struct foo_conn *c, uint64_t client_cookie);
/* The kernel's totals at the close (t): what is pending counts as
 * unanswered when the connection is freed. Returns true when entries of
 * the connection are left in the kernel's foo_pending map (kfoo_forget
 * them). */
bool foo_conn_kernel_done(struct foo_conn *c, const struct pandit_foo_track *t);
/* The kernel framer found the violation now in parser dir (imported):
 * counts it as foo_conn_data() would have (closing: the caller closes
 * the connection, strict policy). Returns -1. */
int foo_conn_turn_noncompliant(struct foo_conn *c, struct foo_app_stats *s, int dir, bool closing);

bool foo_conn_failed(const struct foo_conn *c);		/* turned non-compliant */
enum foo_err foo_conn_error(const struct foo_conn *c, int *dir);	/* the violation, its side */
uint64_t foo_conn_pending(const struct foo_conn *c);	/* requests waiting for a reply */

/* --- rendering ----------------------------------------------------------------------- */

/* JSON members without braces, leading or trailing comma, in this order:
 * "msg_total","msg_req","msg_ack","msg_nak" (integers),
 * "request_rate_1s","request_rate_10s","response_rate_1s","response_rate_10s"
 * (numbers with a decimal point), then "latency_us":{"count","p50","p99"},
 * "replies_unmatched","requests_unanswered","requests_untracked",
 * "requests_duplicate","msg_wrong_direction",
 * "connections":{"watched","noncompliant_client","noncompliant_server",
 * "closed_strict","reasons":{<reason>: n, only reasons seen}}. */
void foo_stats_render_json_fields(struct sbuf *out, const struct foo_app_stats *s,
				  uint64_t now_ns);

/* Prometheus families, for a renderer that writes family by family across
 * apps (the text format wants each family's samples together):
 * for f in 0 .. FOO_PROM_N_FAMILIES - 1: foo_stats_prom_header(f), then
 * foo_stats_prom_samples(f, ...) for every Foo app. app_label_escaped is the
 * app name already escaped as a label value. */
#define FOO_PROM_N_FAMILIES 11
void foo_stats_prom_header(struct sbuf *out, unsigned family);
void foo_stats_prom_samples(struct sbuf *out, unsigned family, const char *app_label_escaped,
			    const struct foo_app_stats *s, uint64_t now_ns);
/* All families for one app, headers included (one app, or tests). */
void foo_stats_render_prometheus(struct sbuf *out, const char *app_label_escaped,
				 const struct foo_app_stats *s, uint64_t now_ns);

/* Short snake_case name of a violation reason ("type", "http", "seq", "empty",
 * "line_too_long", "utf8", "nul", "truncated"), used as JSON key and label. */
const char *foo_err_name(enum foo_err e);

#endif
