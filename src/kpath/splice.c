/* splice.c - the kernel splice path: loads bpf/splice.bpf.c, puts connection pairs in its maps, reads its counters. */
#include "kpath/splice.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "kpath/foo_kern.h"
#include "runtime/runtime.h"
#include "stats/stats.h"

#include "splice.skel.h"

struct kpath_stats kpath_stats;

/* The loaded program and maps: one per process, opened at start by main
 * (as root), used by every worker and by the admin thread. */
static struct {
	struct splice_bpf *skel;
	int socks_fd, peers_fd, ctl_fd, app_fd, stats_fd;
	int *rings;			/* per worker ring fds */
	uint32_t n_rings;
	int ncpus;
	char reason[160];		/* why the path is unavailable */
	_Atomic uint8_t *claimed;	/* app ID has its splice_app_bytes entry */
	pthread_mutex_t lock;		/* claims and folds */
	struct pandit_splice_bytes *last;	/* per app ID: totals already folded */
	struct pandit_splice_bytes *pcpu;	/* lookup buffer, ncpus values */
} K = { .socks_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER, .reason = "not loaded" };

int kpath_open(uint32_t n_workers, uint64_t backlog_max)
{
	int err;
	if (n_workers == 0 || n_workers > PANDIT_SPLICE_MAX_WORKERS) {
		snprintf(K.reason, sizeof(K.reason), "%u workers, at most %u supported", n_workers,
			 PANDIT_SPLICE_MAX_WORKERS);
		return -EINVAL;
	}
	K.ncpus = libbpf_num_possible_cpus();
	if (K.ncpus <= 0) {
		snprintf(K.reason, sizeof(K.reason), "cannot count the CPUs: %s", strerror(-K.ncpus));
		return K.ncpus ? K.ncpus : -EINVAL;
	}
	K.claimed = calloc(PANDIT_SPLICE_MAX_APPS, sizeof(*K.claimed));
	K.last = calloc(PANDIT_SPLICE_MAX_APPS, sizeof(*K.last));
	K.pcpu = calloc((size_t)K.ncpus, sizeof(*K.pcpu));
	K.rings = calloc(n_workers, sizeof(*K.rings));
	if (!K.claimed || !K.last || !K.pcpu || !K.rings) {
		snprintf(K.reason, sizeof(K.reason), "out of memory");
		err = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < n_workers; i++)
		K.rings[i] = -1;
	K.skel = splice_bpf__open();
	if (!K.skel) {
		err = -errno;
		snprintf(K.reason, sizeof(K.reason), "opening the splice program: %s", strerror(-err));
		goto fail;
	}
	K.skel->rodata->backlog_max = backlog_max;
	err = splice_bpf__load(K.skel);
	if (err) {
		snprintf(K.reason, sizeof(K.reason), "loading the splice program: %s", strerror(-err));
		goto fail;
	}
	K.socks_fd = bpf_map__fd(K.skel->maps.splice_socks);
	K.peers_fd = bpf_map__fd(K.skel->maps.splice_peers);
	K.ctl_fd = bpf_map__fd(K.skel->maps.splice_ctl);
	K.app_fd = bpf_map__fd(K.skel->maps.splice_app_bytes);
	K.stats_fd = bpf_map__fd(K.skel->maps.splice_stats);
	int rings_fd = bpf_map__fd(K.skel->maps.splice_rings);
	for (uint32_t i = 0; i < n_workers; i++) {
		K.rings[i] = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "splice_ring", 0, 0,
					    PANDIT_SPLICE_RING_BYTES, NULL);
		if (K.rings[i] < 0) {
			err = -errno;
			snprintf(K.reason, sizeof(K.reason), "creating a ring: %s", strerror(-err));
			goto fail;
		}
		K.n_rings = i + 1;
		if (bpf_map_update_elem(rings_fd, &i, &K.rings[i], BPF_ANY) < 0) {
			err = -errno;
			snprintf(K.reason, sizeof(K.reason), "filling splice_rings: %s", strerror(-err));
			goto fail;
		}
	}
	err = bpf_prog_attach(bpf_program__fd(K.skel->progs.pandit_splice), K.socks_fd,
			      BPF_SK_SKB_STREAM_VERDICT, 0);
	if (err) {
		err = -errno;
		snprintf(K.reason, sizeof(K.reason), "attaching the stream verdict: %s", strerror(-err));
		goto fail;
	}
	K.reason[0] = '\0';
	return 0;
fail:
	log_warn("kernel splicing unavailable: %s", K.reason);
	char keep[sizeof(K.reason)];
	memcpy(keep, K.reason, sizeof(keep));
	kpath_close();
	memcpy(K.reason, keep, sizeof(keep));
	return err;
}

void kpath_close(void)
{
	for (uint32_t i = 0; i < K.n_rings; i++)
		if (K.rings[i] >= 0)
			close(K.rings[i]);
	free(K.rings);
	K.rings = NULL;
	K.n_rings = 0;
	if (K.skel)
		splice_bpf__destroy(K.skel);	/* the attachment goes with the map */
	K.skel = NULL;
	K.socks_fd = -1;
	free((void *)K.claimed);
	K.claimed = NULL;
	free(K.last);
	K.last = NULL;
	free(K.pcpu);
	K.pcpu = NULL;
	snprintf(K.reason, sizeof(K.reason), "not loaded");
}

bool kpath_available(void)
{
	return K.skel != NULL;
}

const char *kpath_unavailable_reason(void)
{
	return K.reason;
}

int kpath_ring_fd(uint32_t worker)
{
	return worker < K.n_rings ? K.rings[worker] : -1;
}

int kpath_written(int fd, uint64_t *out)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int outq = 0;
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -errno;
	if (len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
		return -EOPNOTSUPP;
	if (ioctl(fd, SIOCOUTQ, &outq) < 0)
		return -errno;
	*out = ti.tcpi_bytes_acked + (uint64_t)(outq > 0 ? outq : 0);
	return 0;
}

/* Creates app_id's per-CPU counters entry once; 0 or -errno. */
static int claim_app(uint32_t app_id)
{
	if (atomic_load_explicit(&K.claimed[app_id], memory_order_acquire))
		return 0;
	int err = 0;
	pthread_mutex_lock(&K.lock);
	if (!K.claimed[app_id]) {
		memset(K.pcpu, 0, (size_t)K.ncpus * sizeof(*K.pcpu));
		if (bpf_map_update_elem(K.app_fd, &app_id, K.pcpu, BPF_NOEXIST) < 0 && errno != EEXIST)
			err = -errno;
		else
			atomic_store_explicit(&K.claimed[app_id], 1, memory_order_release);
	}
	pthread_mutex_unlock(&K.lock);
	return err;
}

static int sock_cookie(int fd, uint64_t *out)
{
	socklen_t len = sizeof(*out);
	return getsockopt(fd, SOL_SOCKET, SO_COOKIE, out, &len) < 0 ? -errno : 0;
}

int kpath_splice(struct kpath_pair *p, int cli_fd, int up_fd, uint32_t app_id, uint32_t worker,
		 const struct kfoo_start *foo, enum kpath_fallback *reason)
{
	if (!K.skel) {
		*reason = KPATH_FB_UNAVAILABLE;
		return -EOPNOTSUPP;
	}
	if (app_id >= PANDIT_SPLICE_MAX_APPS) {
		*reason = KPATH_FB_APP_ID;
		return -ERANGE;
	}
	*reason = KPATH_FB_MAP;
	int err = claim_app(app_id);
	if (err)
		return err;
	int fds[2] = { cli_fd, up_fd };
	int inq[2] = { 0, 0 };
	for (int i = 0; i < 2; i++) {
		if ((err = sock_cookie(fds[i], &p->cookie[i])) < 0 ||
		    (err = kpath_written(fds[i], &p->base[i])) < 0)
			return err;
		ioctl(fds[i], SIOCINQ, &inq[i]);	/* for the statistics only */
	}
	/* Each entry names its peer and where the peer's written bytes stood:
	 * the program measures the peer's backlog from there. */
	struct pandit_splice_val v[2] = {
		{ .peer = p->cookie[1], .peer_base = p->base[1], .app_id = app_id,
		  .dir = PANDIT_SPLICE_C2S, .worker = worker },
		{ .peer = p->cookie[0], .peer_base = p->base[0], .app_id = app_id,
		  .dir = PANDIT_SPLICE_S2C, .worker = worker },
	};
	if (foo) {
		v[0].foo = foo->dir[0];
		v[1].foo = foo->dir[1];
		if ((err = kfoo_start_track(p->cookie[0], foo)) < 0)
			return err;
	}
	const struct pandit_splice_ctl ctl = { .resume_at = UINT64_MAX };
	int done = 0;
	for (; done < 2; done++) {
		if (bpf_map_update_elem(K.ctl_fd, &p->cookie[done], &ctl, BPF_ANY) < 0)
			goto undo_peers;
		if (bpf_map_update_elem(K.peers_fd, &p->cookie[done], &v[done], BPF_NOEXIST) < 0) {
			bpf_map_delete_elem(K.ctl_fd, &p->cookie[done]);
			goto undo_peers;
		}
	}
	/* the peer entries exist before either socket can run the program */
	uint64_t fd64[2] = { (uint64_t)cli_fd, (uint64_t)up_fd };
	int in = 0;
	for (; in < 2; in++)
		if (bpf_map_update_elem(K.socks_fd, &p->cookie[in], &fd64[in], BPF_NOEXIST) < 0)
			goto undo_socks;
	stats_add(&kpath_stats.entries, 2);
	stats_add(&kpath_stats.queued_at_splice, (uint64_t)(inq[0] > 0 ? inq[0] : 0) +
						 (uint64_t)(inq[1] > 0 ? inq[1] : 0));
	return 0;
undo_socks:
	err = -errno;
	while (in-- > 0)
		bpf_map_delete_elem(K.socks_fd, &p->cookie[in]);
	goto undo;
undo_peers:
	err = -errno;
undo:
	while (done-- > 0) {
		bpf_map_delete_elem(K.peers_fd, &p->cookie[done]);
		bpf_map_delete_elem(K.ctl_fd, &p->cookie[done]);
	}
	if (foo)
		kfoo_undo_track(p->cookie[0], foo);
	return err;
}

int kpath_resume(const struct kpath_pair *p, int side, uint64_t resume_at, uint64_t user_written)
{
	if (!K.skel)
		return -EOPNOTSUPP;
	struct pandit_splice_ctl ctl = { .resume_at = resume_at, .user_written = user_written };
	return bpf_map_update_elem(K.ctl_fd, &p->cookie[side & 1], &ctl, BPF_EXIST) < 0 ? -errno : 0;
}

void kpath_unsplice(const struct kpath_pair *p, struct pandit_splice_val final[2],
		    struct pandit_foo_track *track)
{
	if (!K.skel)
		return;
	for (int i = 0; i < 2; i++)
		if (bpf_map_delete_elem(K.socks_fd, &p->cookie[i]) < 0 && errno != ENOENT)
			log_warn("splice: deleting socket %llu from the map failed: %s",
				 (unsigned long long)p->cookie[i], strerror(errno));
	for (int i = 0; i < 2; i++) {
		if (final && bpf_map_lookup_elem(K.peers_fd, &p->cookie[i], &final[i]) < 0)
			memset(&final[i], 0, sizeof(final[i]));
		bpf_map_delete_elem(K.peers_fd, &p->cookie[i]);
		bpf_map_delete_elem(K.ctl_fd, &p->cookie[i]);
	}
	stats_sub(&kpath_stats.entries, 2);
	if (track)
		kfoo_stop_track(p->cookie[0], track);
}

int kpath_read(const struct kpath_pair *p, int side, struct pandit_splice_val *out)
{
	if (!K.skel)
		return -EOPNOTSUPP;
	return bpf_map_lookup_elem(K.peers_fd, &p->cookie[side & 1], out) < 0 ? -errno : 0;
}

void kpath_fold_app(const struct rt_app *app)
{
	uint32_t id = app->id;
	if (!K.skel || id >= PANDIT_SPLICE_MAX_APPS ||
	    !atomic_load_explicit(&K.claimed[id], memory_order_acquire))
		return;
	uint64_t d[2] = { 0, 0 };
	pthread_mutex_lock(&K.lock);
	if (bpf_map_lookup_elem(K.app_fd, &id, K.pcpu) == 0) {
		uint64_t sum[2] = { 0, 0 };
		for (int c = 0; c < K.ncpus; c++)
			for (int i = 0; i < 2; i++)
				sum[i] += K.pcpu[c].bytes[i];
		for (int i = 0; i < 2; i++) {
			d[i] = sum[i] - K.last[id].bytes[i];
			K.last[id].bytes[i] = sum[i];
		}
	}
	pthread_mutex_unlock(&K.lock);
	if (d[PANDIT_SPLICE_C2S])
		stats_add(&app->stats->bytes_in, d[PANDIT_SPLICE_C2S]);
	if (d[PANDIT_SPLICE_S2C])
		stats_add(&app->stats->bytes_out, d[PANDIT_SPLICE_S2C]);
}

void kpath_fds(int *prog, int *socks, int *peers)
{
	*prog = K.skel ? bpf_program__fd(K.skel->progs.pandit_splice) : -1;
	*socks = K.skel ? K.socks_fd : -1;
	*peers = K.skel ? K.peers_fd : -1;
}

int kpath_foo_counts_fd(void)
{
	return K.skel ? bpf_map__fd(K.skel->maps.foo_counts) : -1;
}

int kpath_foo_track_fd(void)
{
	return K.skel ? bpf_map__fd(K.skel->maps.foo_track) : -1;
}

int kpath_foo_pending_fd(void)
{
	return K.skel ? bpf_map__fd(K.skel->maps.foo_pending) : -1;
}

int kpath_ncpus(void)
{
	return K.ncpus;
}

uint64_t kpath_ring_misses(void)
{
	uint64_t sum = 0;
	uint32_t k = PANDIT_SPLICE_RING_FULL;
	uint64_t *v = K.skel ? calloc((size_t)K.ncpus, sizeof(*v)) : NULL;
	if (v && bpf_map_lookup_elem(K.stats_fd, &k, v) == 0)
		for (int c = 0; c < K.ncpus; c++)
			sum += v[c];
	free(v);
	return sum;
}

int kpath_read_outcomes(uint64_t out[PANDIT_SPLICE_STAT_MAX])
{
	memset(out, 0, PANDIT_SPLICE_STAT_MAX * sizeof(*out));
	if (!K.skel)
		return -EOPNOTSUPP;
	uint64_t *v = calloc((size_t)K.ncpus, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint32_t k = 0; k < PANDIT_SPLICE_STAT_MAX; k++) {
		if (bpf_map_lookup_elem(K.stats_fd, &k, v) < 0)
			continue;
		for (int c = 0; c < K.ncpus; c++)
			out[k] += v[c];
	}
	free(v);
	return 0;
}

static const char *const fb_names[KPATH_FB_MAX] = {
	[KPATH_FB_UNAVAILABLE] = "unavailable",
	[KPATH_FB_HALF_CLOSED] = "half_closed",
	[KPATH_FB_APP_ID] = "app_id",
	[KPATH_FB_MAP] = "map_refused",
	[KPATH_FB_FOO] = "foo_counters",
};

static const char *const outcome_names[PANDIT_SPLICE_STAT_MAX] = {
	[PANDIT_SPLICE_REDIRECTED] = "redirected",
	[PANDIT_SPLICE_PASS_UNKNOWN] = "pass_unknown",
	[PANDIT_SPLICE_PASS_HELD] = "pass_held",
	[PANDIT_SPLICE_HOLD_NO_PEER] = "hold_no_peer",
	[PANDIT_SPLICE_HOLD_BACKLOG] = "hold_backlog",
	[PANDIT_SPLICE_HOLD_REDIRECT] = "hold_redirect",
	[PANDIT_SPLICE_RING_FULL] = "ring_full",
	[PANDIT_SPLICE_DROP_EMPTY] = "drop_empty",
	[PANDIT_SPLICE_RESUMED] = "resumed",
	[PANDIT_SPLICE_FOO_VIOLATION] = "foo_violation",
	[PANDIT_SPLICE_FOO_DROPPED] = "foo_dropped",
	[PANDIT_SPLICE_FOO_NO_COUNTERS] = "foo_no_counters",
	[PANDIT_SPLICE_HOLD_ROOM] = "hold_room",
	[PANDIT_SPLICE_FOO_NO_SCRATCH] = "foo_no_scratch",
};

static uint64_t userspace_active(uint64_t active)
{
	uint64_t s = stats_get(&kpath_stats.spliced_active);
	return active > s ? active - s : 0;
}

void kpath_render_json(struct sbuf *out, uint64_t active)
{
	sbuf_printf(out,
		    ",\"kernel_path\":{\"splice_available\":%s,\"connections\":{\"spliced_active\":%llu"
		    ",\"userspace_active\":%llu,\"spliced_total\":%llu,\"foo_framed_total\":%llu}"
		    ",\"held\":%llu,\"resumed\":%llu"
		    ",\"bulk_to_userspace\":%llu,\"queued_at_splice_bytes\":%llu,\"map_entries\":%llu"
		    ",\"fallback\":{",
		    K.skel ? "true" : "false",
		    (unsigned long long)stats_get(&kpath_stats.spliced_active),
		    (unsigned long long)userspace_active(active),
		    (unsigned long long)stats_get(&kpath_stats.spliced),
		    (unsigned long long)stats_get(&kpath_stats.foo_framed),
		    (unsigned long long)stats_get(&kpath_stats.held),
		    (unsigned long long)stats_get(&kpath_stats.resumed),
		    (unsigned long long)stats_get(&kpath_stats.bulk_to_userspace),
		    (unsigned long long)stats_get(&kpath_stats.queued_at_splice),
		    (unsigned long long)stats_get(&kpath_stats.entries));
	for (int i = 0; i < KPATH_FB_MAX; i++)
		sbuf_printf(out, "%s\"%s\":%llu", i ? "," : "", fb_names[i],
			    (unsigned long long)stats_get(&kpath_stats.fallback[i]));
	sbuf_puts(out, "},\"program\":{");
	uint64_t o[PANDIT_SPLICE_STAT_MAX];
	kpath_read_outcomes(o);
	for (int i = 0; i < PANDIT_SPLICE_STAT_MAX; i++)
		sbuf_printf(out, "%s\"%s\":%llu", i ? "," : "", outcome_names[i],
			    (unsigned long long)o[i]);
	sbuf_puts(out, "}");	/* kernel_path stays open: the caller closes it */
}

void kpath_render_prometheus(struct sbuf *out, uint64_t active)
{
	if (!K.skel)
		return;	/* nothing to say: every connection takes the userspace path */
	sbuf_printf(out,
		    "# HELP pandit_path_connections_active Connections open now, by the path their bytes take.\n"
		    "# TYPE pandit_path_connections_active gauge\n"
		    "pandit_path_connections_active{path=\"spliced\"} %llu\n"
		    "pandit_path_connections_active{path=\"userspace\"} %llu\n"
		    "# HELP pandit_spliced_connections_total Connections spliced in the kernel since start.\n"
		    "# TYPE pandit_spliced_connections_total counter\n"
		    "pandit_spliced_connections_total %llu\n"
		    "# HELP pandit_splice_held_total Spliced directions handed back to userspace (peer backlog over the cap).\n"
		    "# TYPE pandit_splice_held_total counter\n"
		    "pandit_splice_held_total %llu\n"
		    "# HELP pandit_splice_resumed_total Held directions given back to the kernel.\n"
		    "# TYPE pandit_splice_resumed_total counter\n"
		    "pandit_splice_resumed_total %llu\n"
		    "# HELP pandit_splice_bulk_to_userspace_total Holds under kernel_splice auto: the direction stays in userspace until quiet for its backoff.\n"
		    "# TYPE pandit_splice_bulk_to_userspace_total counter\n"
		    "pandit_splice_bulk_to_userspace_total %llu\n"
		    "# HELP pandit_splice_map_entries Sockets in the splice map now.\n"
		    "# TYPE pandit_splice_map_entries gauge\n"
		    "pandit_splice_map_entries %llu\n"
		    "# HELP pandit_splice_fallback_total Connections kept on the userspace relay, by reason.\n"
		    "# TYPE pandit_splice_fallback_total counter\n",
		    (unsigned long long)stats_get(&kpath_stats.spliced_active),
		    (unsigned long long)userspace_active(active),
		    (unsigned long long)stats_get(&kpath_stats.spliced),
		    (unsigned long long)stats_get(&kpath_stats.held),
		    (unsigned long long)stats_get(&kpath_stats.resumed),
		    (unsigned long long)stats_get(&kpath_stats.bulk_to_userspace),
		    (unsigned long long)stats_get(&kpath_stats.entries));
	for (int i = 0; i < KPATH_FB_MAX; i++)
		sbuf_printf(out, "pandit_splice_fallback_total{reason=\"%s\"} %llu\n", fb_names[i],
			    (unsigned long long)stats_get(&kpath_stats.fallback[i]));
}
