/* shortcut.h - the local short-circuit: loads bpf/shortcut.bpf.c, attaches it to a cgroup, pairs a proxied connection's two local end sockets. */
#ifndef PANDIT_KPATH_SHORTCUT_H
#define PANDIT_KPATH_SHORTCUT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../../bpf/pandit_abi.h"
#include "core/sbuf.h"

/* Why a connection was not paired (it stays on the splice or userspace path). */
enum shortcut_refusal {
	SHORTCUT_REF_UNAVAILABLE = 0,	/* programs not loaded */
	SHORTCUT_REF_NOT_LOCAL,		/* an end socket is not a registered local socket
					 * (remote peer, outside the cgroup, or already closed) */
	SHORTCUT_REF_ADDR,		/* getsockname/getpeername/SO_NETNS_COOKIE failed, or not IP */
	SHORTCUT_REF_MAP,		/* the kernel refused the pair entries (full, exists) */
	SHORTCUT_REF_MAX,
};

/* Process-wide counters of the daemon's pairing (relaxed atomics). */
struct shortcut_stats {
	_Atomic uint64_t paired;		/* connections paired since start */
	_Atomic uint64_t paired_active;		/* paired connections open now */
	_Atomic uint64_t refused[SHORTCUT_REF_MAX];	/* pairings refused, by reason */
	_Atomic uint64_t redirected_bytes;	/* bytes short-circuited (both ways), as folded
						 * into the apps' counters (idle checks, close) */
};

extern struct shortcut_stats shortcut_stats;

/* One paired connection as the daemon knows it: index 0 is the client's own
 * socket C (peer of the daemon's accepted socket), 1 the backend's socket B
 * (peer of the daemon's upstream socket). */
struct shortcut_pair {
	struct pandit_shortcut_key key[2];
	uint64_t cookie[2];
};

/* Loads the programs and maps (backlog_max: unread redirected bytes a peer
 * may hold before sends take TCP again, 0 for the default 4 MiB), attaches
 * the sock_ops program to the cgroup v2 directory cgroup_path (a bpf_link owned by this process: it goes away
 * when the process exits) and the sk_msg verdict to the sockets map. Needs
 * CAP_BPF and CAP_NET_ADMIN: call before privileges drop; afterwards only
 * the map fds are used. Sockets established before the attach are never
 * registered. Returns 0 or a negative errno, the reason kept for
 * shortcut_unavailable_reason(). */
int shortcut_open(const char *cgroup_path, uint32_t backlog_max);
/* The same; ungated drops the ordering gate (redirect at every send of a
 * paired socket). Only for the probe's negative control, which shows that
 * the reorder the gate prevents is real and caught: never in pandit. */
int shortcut_open_opts(const char *cgroup_path, uint32_t backlog_max, bool ungated);
void shortcut_close(void);
bool shortcut_available(void);
const char *shortcut_unavailable_reason(void);

/* Key of the socket at the other end of fd's connection, as that socket
 * sees itself (local = fd's peer, remote = fd's local address). Returns 0
 * or -errno. */
int shortcut_peer_key(int fd, struct pandit_shortcut_key *out);

/* Pairs the connection the daemon proxies between its accepted socket
 * cli_fd and its upstream socket up_fd: when both far ends are registered
 * local sockets, each one's sends go into the other's receive queue from
 * the moment every byte it sent over TCP has been read by the other (the
 * program's gate; no flush or wait is needed before or after this call).
 * Only for byte-transparent relays: the daemon must write to each side
 * exactly the bytes it reads from the other. Returns 0 with *p filled, or a
 * negative errno with nothing in the maps and *why set. Needs no
 * capability. */
int shortcut_pair(struct shortcut_pair *p, int cli_fd, int up_fd, enum shortcut_refusal *why);
/* The same for a foo connection spliced with the kernel framer: each
 * end's sends are framed in the splice entry of the daemon's socket they
 * reach over TCP (cli_fd for the client's, up_fd for the backend's)
 * before they skip it; what the short-circuit does not frame goes over TCP
 * and is framed there. Refused (unavailable) unless shortcut_frames_foo(). */
int shortcut_pair_framed(struct shortcut_pair *p, int cli_fd, int up_fd, enum shortcut_refusal *why);
/* True when the short-circuit shares the splice program's Foo maps (both
 * loaded, the splice first): foo connections can then be paired. */
bool shortcut_frames_foo(void);
/* After a not_local refusal: true when the client's end was found and only
 * the backend's was not (it may not be registered yet: the backend's
 * socket becomes established when it gets the daemon's last handshake
 * ACK, which can come after the daemon saw its connect complete). */
static inline bool shortcut_pair_client_found(const struct shortcut_pair *p)
{
	return p->cookie[0] != 0;
}

/* Deletes both pair entries; with final non-NULL, first copies them (the
 * byte counters; zeroed where unreadable). Sends from then on take TCP,
 * which is correct at any moment (bytes already redirected are read
 * before them). Call before closing the daemon's sockets. */
void shortcut_unpair(const struct shortcut_pair *p, struct pandit_shortcut_pair final[2]);

/* Reads side's (0 client, 1 backend) entry. Returns 0 or -errno. */
int shortcut_read(const struct shortcut_pair *p, int side, struct pandit_shortcut_pair *out);

/* Reads the programs' per-outcome counters (summed over CPUs); 0 or -errno. */
int shortcut_read_outcomes(uint64_t out[PANDIT_SHORTCUT_STAT_MAX]);
/* Name of an outcome (for JSON and logs). */
const char *shortcut_outcome_name(int i);
/* Name of a refusal reason. */
const char *shortcut_refusal_name(enum shortcut_refusal r);

/* Appends ,"shortcut":{...} (JSON, for /stats' kernel_path): whether the
 * programs are loaded (and why not), connections paired now and since
 * start, bytes short-circuited, refusals per reason, program outcomes. */
void shortcut_render_json(struct sbuf *out);
/* Appends the same as Prometheus families (nothing when not loaded). */
void shortcut_render_prometheus(struct sbuf *out);

/* fds of the sockets and pairs maps (-1 when not loaded), for tests. */
void shortcut_fds(int *socks, int *pairs);

#endif
