/* shortcut.c - the local short-circuit: loads bpf/shortcut.bpf.c, attaches it to a cgroup, pairs a proxied connection's two local end sockets. */
#include "kpath/shortcut.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "kpath/splice.h"
#include "stats/stats.h"

#include "shortcut.skel.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

struct shortcut_stats shortcut_stats;

/* The loaded programs and maps: one per process, opened at start (as root). */
static struct {
	struct shortcut_bpf *skel;
	struct bpf_link *ops_link;
	int socks_fd, pairs_fd, stats_fd;
	bool frames_foo;	/* the splice program's Foo maps are shared: foo pairs framed */
	int ncpus;
	char reason[200];
} S = { .socks_fd = -1, .pairs_fd = -1, .stats_fd = -1, .reason = "not loaded" };

/* A Foo pair's sends are framed in the splice program's entries and
 * counted in its maps (bpf/foo_frame_msg.bpf.h): the short-circuit takes
 * those maps over before load when the splice program is loaded. True
 * when it has them all; else Foo connections are not paired. */
static bool share_splice_maps(void)
{
	int prog, socks, peers;
	if (!kpath_available())
		return false;
	kpath_fds(&prog, &socks, &peers);
	const struct {
		struct bpf_map *map;
		int fd;
	} share[] = {
		{ S.skel->maps.splice_peers, peers },
		{ S.skel->maps.foo_counts, kpath_foo_counts_fd() },
		{ S.skel->maps.foo_track, kpath_foo_track_fd() },
		{ S.skel->maps.foo_pending, kpath_foo_pending_fd() },
	};
	for (size_t i = 0; i < sizeof(share) / sizeof(share[0]); i++) {
		int err = share[i].fd < 0 ? -EBADF : bpf_map__reuse_fd(share[i].map, share[i].fd);
		if (err) {
			log_warn("local short-circuit: foo apps not paired: the splice program's map %s "
				 "cannot be shared: %s", bpf_map__name(share[i].map), strerror(-err));
			return false;
		}
	}
	return true;
}

int shortcut_open(const char *cgroup_path, uint32_t backlog_max)
{
	return shortcut_open_opts(cgroup_path, backlog_max, false);
}

int shortcut_open_opts(const char *cgroup_path, uint32_t backlog_max, bool ungated)
{
	int err, cg = -1;
	if (S.skel)
		return -EALREADY;
	S.ncpus = libbpf_num_possible_cpus();
	if (S.ncpus <= 0) {
		snprintf(S.reason, sizeof(S.reason), "cannot count the CPUs");
		return -EINVAL;
	}
	S.skel = shortcut_bpf__open();
	if (!S.skel) {
		err = -errno;
		snprintf(S.reason, sizeof(S.reason), "opening the short-circuit programs: %s",
			 strerror(-err));
		goto fail;
	}
	S.skel->rodata->ungated = ungated;
	if (backlog_max)
		S.skel->rodata->backlog_max = backlog_max;
	S.frames_foo = share_splice_maps();
	err = shortcut_bpf__load(S.skel);
	if (err) {
		snprintf(S.reason, sizeof(S.reason), "loading the short-circuit programs: %s",
			 strerror(-err));
		goto fail;
	}
	S.socks_fd = bpf_map__fd(S.skel->maps.shortcut_socks);
	S.pairs_fd = bpf_map__fd(S.skel->maps.shortcut_pairs);
	S.stats_fd = bpf_map__fd(S.skel->maps.shortcut_stats);
	if (bpf_prog_attach(bpf_program__fd(S.skel->progs.pandit_shortcut_msg), S.socks_fd,
			    BPF_SK_MSG_VERDICT, 0) < 0) {
		err = -errno;
		snprintf(S.reason, sizeof(S.reason), "attaching the sk_msg verdict: %s", strerror(-err));
		goto fail;
	}
	cg = open(cgroup_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg < 0) {
		err = -errno;
		snprintf(S.reason, sizeof(S.reason), "open(%s): %s", cgroup_path, strerror(-err));
		goto fail;
	}
	S.ops_link = bpf_program__attach_cgroup(S.skel->progs.pandit_shortcut_ops, cg);
	if (!S.ops_link) {
		err = -errno;
		snprintf(S.reason, sizeof(S.reason), "attaching sock_ops to %s: %s", cgroup_path,
			 strerror(-err));
		goto fail;
	}
	close(cg);
	S.reason[0] = '\0';
	return 0;
fail:
	if (cg >= 0)
		close(cg);
	log_warn("local short-circuit unavailable: %s", S.reason);
	char keep[sizeof(S.reason)];
	memcpy(keep, S.reason, sizeof(keep));
	shortcut_close();
	memcpy(S.reason, keep, sizeof(keep));
	return err;
}

void shortcut_close(void)
{
	if (S.ops_link)
		bpf_link__destroy(S.ops_link);
	S.ops_link = NULL;
	if (S.skel)
		shortcut_bpf__destroy(S.skel);	/* the sk_msg attachment goes with the map */
	S.skel = NULL;
	S.socks_fd = S.pairs_fd = S.stats_fd = -1;
	S.frames_foo = false;
	snprintf(S.reason, sizeof(S.reason), "not loaded");
}

bool shortcut_available(void)
{
	return S.skel != NULL;
}

const char *shortcut_unavailable_reason(void)
{
	return S.reason;
}

/* Writes a socket address as the key's form (IPv6, IPv4 mapped). */
static int key_addr(const struct sockaddr_storage *ss, uint8_t addr[16], uint16_t *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		memset(addr, 0, 10);
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &a->sin_addr, 4);
		*port = ntohs(a->sin_port);
		return 0;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		memcpy(addr, &a->sin6_addr, 16);
		*port = ntohs(a->sin6_port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

int shortcut_peer_key(int fd, struct pandit_shortcut_key *out)
{
	struct sockaddr_storage me, peer;
	socklen_t ml = sizeof(me), pl = sizeof(peer), cl = sizeof(out->netns);
	memset(out, 0, sizeof(*out));
	if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0 ||
	    getpeername(fd, (struct sockaddr *)&peer, &pl) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &out->netns, &cl) < 0)
		return -errno;
	int err = key_addr(&peer, out->local_addr, &out->local_port);
	if (!err)
		err = key_addr(&me, out->remote_addr, &out->remote_port);
	return err;
}

/* shortcut_pair(), and with frame the cookies of the daemon's own two
 * sockets in the entries (frame: each end's sends reach that one over
 * TCP, whose splice entry frames them). */
static int pair(struct shortcut_pair *p, int cli_fd, int up_fd, bool frame, enum shortcut_refusal *why)
{
	int err;
	memset(p, 0, sizeof(*p));
	if (!S.skel || (frame && !S.frames_foo)) {
		*why = SHORTCUT_REF_UNAVAILABLE;
		return -EOPNOTSUPP;
	}
	int fds[2] = { cli_fd, up_fd };
	uint64_t own[2] = { 0, 0 };
	for (int i = 0; frame && i < 2; i++) {
		socklen_t len = sizeof(own[i]);
		if (getsockopt(fds[i], SOL_SOCKET, SO_COOKIE, &own[i], &len) < 0) {
			*why = SHORTCUT_REF_ADDR;
			return -errno;
		}
	}
	for (int i = 0; i < 2; i++) {
		err = shortcut_peer_key(fds[i], &p->key[i]);
		if (err) {
			*why = SHORTCUT_REF_ADDR;
			return err;
		}
		/* a lookup of a sockets map from userspace gives the socket's cookie */
		if (bpf_map_lookup_elem(S.socks_fd, &p->key[i], &p->cookie[i]) < 0) {
			err = -errno;
			*why = SHORTCUT_REF_NOT_LOCAL;
			return err;
		}
	}
	struct pandit_shortcut_pair v[2];
	memset(v, 0, sizeof(v));
	for (int i = 0; i < 2; i++) {
		v[i].peer = p->key[!i];
		v[i].cookie = p->cookie[i];
		v[i].peer_cookie = p->cookie[!i];
		v[i].frame = own[i];
	}
	if (bpf_map_update_elem(S.pairs_fd, &p->key[0], &v[0], BPF_NOEXIST) < 0) {
		err = -errno;
		*why = SHORTCUT_REF_MAP;
		return err;
	}
	if (bpf_map_update_elem(S.pairs_fd, &p->key[1], &v[1], BPF_NOEXIST) < 0) {
		err = -errno;
		bpf_map_delete_elem(S.pairs_fd, &p->key[0]);
		*why = SHORTCUT_REF_MAP;
		return err;
	}
	return 0;
}

int shortcut_pair(struct shortcut_pair *p, int cli_fd, int up_fd, enum shortcut_refusal *why)
{
	return pair(p, cli_fd, up_fd, false, why);
}

int shortcut_pair_framed(struct shortcut_pair *p, int cli_fd, int up_fd, enum shortcut_refusal *why)
{
	return pair(p, cli_fd, up_fd, true, why);
}

bool shortcut_frames_foo(void)
{
	return S.skel && S.frames_foo;
}

void shortcut_unpair(const struct shortcut_pair *p, struct pandit_shortcut_pair final[2])
{
	if (S.pairs_fd < 0)
		return;
	for (int i = 0; i < 2; i++) {
		if (final && bpf_map_lookup_elem(S.pairs_fd, &p->key[i], &final[i]) < 0)
			memset(&final[i], 0, sizeof(final[i]));
		bpf_map_delete_elem(S.pairs_fd, &p->key[i]);
	}
}

int shortcut_read(const struct shortcut_pair *p, int side, struct pandit_shortcut_pair *out)
{
	if (S.pairs_fd < 0)
		return -EOPNOTSUPP;
	if (bpf_map_lookup_elem(S.pairs_fd, &p->key[side & 1], out) < 0)
		return -errno;
	return 0;
}

int shortcut_read_outcomes(uint64_t out[PANDIT_SHORTCUT_STAT_MAX])
{
	memset(out, 0, PANDIT_SHORTCUT_STAT_MAX * sizeof(*out));
	if (!S.skel)
		return -EOPNOTSUPP;
	uint64_t *v = calloc((size_t)S.ncpus, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint32_t k = 0; k < PANDIT_SHORTCUT_STAT_MAX; k++) {
		if (bpf_map_lookup_elem(S.stats_fd, &k, v) < 0)
			continue;
		for (int c = 0; c < S.ncpus; c++)
			out[k] += v[c];
	}
	free(v);
	return 0;
}

static const char *const outcome_names[PANDIT_SHORTCUT_STAT_MAX] = {
	[PANDIT_SHORTCUT_SOCK_ADDED] = "sock_added",
	[PANDIT_SHORTCUT_SOCK_FAILED] = "sock_failed",
	[PANDIT_SHORTCUT_SOCK_SKIPPED] = "sock_skipped",
	[PANDIT_SHORTCUT_REDIRECTED] = "redirected",
	[PANDIT_SHORTCUT_PASS_UNPAIRED] = "pass_unpaired",
	[PANDIT_SHORTCUT_PASS_STALE] = "pass_stale",
	[PANDIT_SHORTCUT_PASS_NO_PEER] = "pass_no_peer",
	[PANDIT_SHORTCUT_PASS_PENDING] = "pass_pending",
	[PANDIT_SHORTCUT_PASS_REDIRECT] = "pass_redirect_refused",
	[PANDIT_SHORTCUT_SOCK_CLOSED] = "sock_closed",
	[PANDIT_SHORTCUT_PASS_BACKLOG] = "pass_backlog",
	[PANDIT_SHORTCUT_PASS_PRESSURE] = "pass_pressure",
	[PANDIT_SHORTCUT_PASS_FOO] = "pass_foo",
	[PANDIT_SHORTCUT_FOO_FRAMED] = "foo_framed",
};

const char *shortcut_outcome_name(int i)
{
	return i >= 0 && i < PANDIT_SHORTCUT_STAT_MAX ? outcome_names[i] : "?";
}

static const char *const refusal_names[SHORTCUT_REF_MAX] = {
	[SHORTCUT_REF_UNAVAILABLE] = "unavailable",
	[SHORTCUT_REF_NOT_LOCAL] = "not_local",
	[SHORTCUT_REF_ADDR] = "address",
	[SHORTCUT_REF_MAP] = "map_refused",
};

const char *shortcut_refusal_name(enum shortcut_refusal r)
{
	return r < SHORTCUT_REF_MAX ? refusal_names[r] : "?";
}

void shortcut_fds(int *socks, int *pairs)
{
	*socks = S.socks_fd;
	*pairs = S.pairs_fd;
}

void shortcut_render_json(struct sbuf *out)
{
	sbuf_printf(out, ",\"shortcut\":{\"available\":%s,\"frames_foo\":%s", S.skel ? "true" : "false",
		    shortcut_frames_foo() ? "true" : "false");
	if (!S.skel) {
		sbuf_puts(out, ",\"reason\":");
		sbuf_json_str(out, S.reason);
	}
	sbuf_printf(out,
		    ",\"paired_active\":%llu,\"paired_total\":%llu"
		    ",\"redirected_bytes\":%llu,\"refused\":{",
		    (unsigned long long)stats_get(&shortcut_stats.paired_active),
		    (unsigned long long)stats_get(&shortcut_stats.paired),
		    (unsigned long long)stats_get(&shortcut_stats.redirected_bytes));
	for (int i = 0; i < SHORTCUT_REF_MAX; i++)
		sbuf_printf(out, "%s\"%s\":%llu", i ? "," : "", refusal_names[i],
			    (unsigned long long)stats_get(&shortcut_stats.refused[i]));
	sbuf_puts(out, "},\"program\":{");
	uint64_t o[PANDIT_SHORTCUT_STAT_MAX];
	shortcut_read_outcomes(o);
	for (int i = 0; i < PANDIT_SHORTCUT_STAT_MAX; i++)
		sbuf_printf(out, "%s\"%s\":%llu", i ? "," : "", outcome_names[i],
			    (unsigned long long)o[i]);
	sbuf_puts(out, "}}");
}

void shortcut_render_prometheus(struct sbuf *out)
{
	if (!S.skel)
		return;	/* not configured or refused: nothing is short-circuited */
	sbuf_printf(out,
		    "# HELP pandit_shortcut_connections_active Connections whose local ends are paired now.\n"
		    "# TYPE pandit_shortcut_connections_active gauge\n"
		    "pandit_shortcut_connections_active %llu\n"
		    "# HELP pandit_shortcut_connections_total Connections paired since start.\n"
		    "# TYPE pandit_shortcut_connections_total counter\n"
		    "pandit_shortcut_connections_total %llu\n"
		    "# HELP pandit_shortcut_refused_total Connections not paired, by reason.\n"
		    "# TYPE pandit_shortcut_refused_total counter\n",
		    (unsigned long long)stats_get(&shortcut_stats.paired_active),
		    (unsigned long long)stats_get(&shortcut_stats.paired));
	for (int i = 0; i < SHORTCUT_REF_MAX; i++)
		sbuf_printf(out, "pandit_shortcut_refused_total{reason=\"%s\"} %llu\n", refusal_names[i],
			    (unsigned long long)stats_get(&shortcut_stats.refused[i]));
	uint64_t o[PANDIT_SHORTCUT_STAT_MAX];
	shortcut_read_outcomes(o);
	sbuf_puts(out, "# HELP pandit_shortcut_program_total Outcomes of the short-circuit programs.\n"
		       "# TYPE pandit_shortcut_program_total counter\n");
	for (int i = 0; i < PANDIT_SHORTCUT_STAT_MAX; i++)
		sbuf_printf(out, "pandit_shortcut_program_total{outcome=\"%s\"} %llu\n",
			    outcome_names[i], (unsigned long long)o[i]);
}
