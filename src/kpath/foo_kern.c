/* foo_kern.c - Foo framed in the kernel: slots of the splice program's per-app Foo counters, and their merge into the Foo statistics. */
#include "kpath/foo_kern.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "kpath/splice.h"
#include "proto/foo_stats.h"

/* The program's rings are the userspace windows, slot for slot. */
_Static_assert(PANDIT_FOO_WIN_SLOTS == STATS_WIN_NBUCKETS &&
		       PANDIT_FOO_WIN_BUCKET_NS == STATS_WIN_BUCKET_NS &&
		       sizeof(((struct pandit_foo_counts *)0)->req_win) == sizeof(struct stats_win),
	       "kernel Foo windows have the layout of struct stats_win");
_Static_assert(PANDIT_FOO_LAT_NBOUNDS == STATS_HIST_NBOUNDS,
	       "kernel Foo latencies use the userspace histogram's buckets (bounds: unit test)");

/* Slots 1..PANDIT_FOO_MAX_SLOTS - 1 (0 means none): the ones never used
 * yet from next on, freed ones on a stack. */
static struct {
	pthread_mutex_t lock;
	uint32_t next;
	uint32_t *free;
	uint32_t n_free;
} S = { .lock = PTHREAD_MUTEX_INITIALIZER, .next = 1 };

static int slot_alloc(uint32_t *slot)
{
	if (S.n_free) {
		*slot = S.free[--S.n_free];
		return 0;
	}
	if (S.next >= PANDIT_FOO_MAX_SLOTS)
		return -ENOSPC;
	if (!S.free && !(S.free = calloc(PANDIT_FOO_MAX_SLOTS, sizeof(*S.free))))
		return -ENOMEM;
	*slot = S.next++;
	return 0;
}

int kfoo_claim(struct foo_app_stats *s, uint32_t *slot)
{
	uint32_t have = atomic_load_explicit(&s->kslot, memory_order_acquire);
	if (have) {
		*slot = have;
		return 0;
	}
	int fd = kpath_foo_counts_fd(), ncpus = kpath_ncpus();
	if (fd < 0 || ncpus <= 0)
		return -EOPNOTSUPP;
	struct pandit_foo_counts *zero = calloc((size_t)ncpus, sizeof(*zero));
	if (!zero)
		return -ENOMEM;
	int err = 0;
	pthread_mutex_lock(&S.lock);
	have = atomic_load_explicit(&s->kslot, memory_order_relaxed);
	if (have) {
		*slot = have;
	} else if ((err = slot_alloc(slot)) == 0) {
		if (bpf_map_update_elem(fd, slot, zero, BPF_ANY) < 0) {
			err = -errno;
			S.free[S.n_free++] = *slot;
		} else {
			atomic_store_explicit(&s->kslot, *slot, memory_order_release);
		}
	}
	pthread_mutex_unlock(&S.lock);
	free(zero);
	return err;
}

void kfoo_release(uint32_t slot)
{
	if (!slot)
		return;
	int fd = kpath_foo_counts_fd();
	pthread_mutex_lock(&S.lock);
	if (fd >= 0)
		bpf_map_delete_elem(fd, &slot);
	if (S.free && S.n_free < PANDIT_FOO_MAX_SLOTS)
		S.free[S.n_free++] = slot;
	pthread_mutex_unlock(&S.lock);
}

/* Merges one CPU's ring into a window (a copy: the map value is plain memory). */
static void merge_ring(struct stats_win *dst, const __u64 *ring, uint64_t now_ns)
{
	struct stats_win w;
	for (unsigned i = 0; i < STATS_WIN_NBUCKETS; i++)
		atomic_init(&w.slot[i], ring[i]);
	stats_win_merge(dst, &w, now_ns);
}

void kfoo_accumulate(struct foo_app_stats *dst, const struct foo_app_stats *s, uint64_t now_ns)
{
	uint32_t slot = atomic_load_explicit(&s->kslot, memory_order_acquire);
	int fd = kpath_foo_counts_fd(), ncpus = kpath_ncpus();
	if (!slot || fd < 0 || ncpus <= 0)
		return;
	struct pandit_foo_counts *v = malloc((size_t)ncpus * sizeof(*v));
	if (!v)
		return;
	if (bpf_map_lookup_elem(fd, &slot, v) == 0) {
		uint64_t req = 0, ack = 0, nak = 0, wrong = 0;
		for (int c = 0; c < ncpus; c++) {
			const struct pandit_foo_counts *k = &v[c];
			req += k->req;
			ack += k->ack;
			nak += k->nak;
			wrong += k->wrong_dir;
			merge_ring(&dst->req_win, k->req_win, now_ns);
			merge_ring(&dst->resp_win, k->resp_win, now_ns);
			stats_add(&dst->replies_unmatched, k->replies_unmatched);
			stats_add(&dst->requests_untracked, k->requests_untracked);
			stats_add(&dst->requests_duplicate, k->requests_duplicate);
			for (unsigned b = 0; b <= STATS_HIST_NBOUNDS; b++)
				stats_add(&dst->latency.buckets[b], k->lat_bucket[b]);
			stats_add(&dst->latency.count, k->lat_count);
			stats_add(&dst->latency.sum_us, k->lat_sum_us);
		}
		stats_add(&dst->msg_total, req + ack + nak);
		stats_add(&dst->msg_req, req);
		stats_add(&dst->msg_ack, ack);
		stats_add(&dst->msg_nak, nak);
		stats_add(&dst->msg_wrong_direction, wrong);
	}
	free(v);
}

/* --- pending requests ---------------------------------------------------------------- */

/* Cookies of stopped connections whose entries are still in foo_pending. */
static struct {
	pthread_mutex_t lock;
	uint64_t *cookie;
	size_t n, cap;
} D = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void pend_delete(int fd, uint64_t cookie, const struct foo_pending_seq *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct pandit_foo_pkey key = { .cookie = cookie, .seq = p[i].seq };
		bpf_map_delete_elem(fd, &key);
	}
}

int kfoo_start_track(uint64_t client_cookie, const struct kfoo_start *ks)
{
	int track_fd = kpath_foo_track_fd(), pend_fd = kpath_foo_pending_fd();
	if (track_fd < 0 || pend_fd < 0)
		return -EOPNOTSUPP;
	/* each pending Seq in its slot, or an entry when the slot is taken */
	struct pandit_foo_track *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->used = ks->track.used;
	t->pending = ks->track.pending;
	t->untracked = ks->track.untracked;
	size_t n = (size_t)ks->track.used;
	int err = 0;
	for (size_t i = 0; i < n && !err; i++) {
		const struct foo_pending_seq *q = &ks->pend[i];
		struct pandit_foo_slot *sl = &t->slot[q->seq & (PANDIT_FOO_TRACK_SLOTS - 1)];
		struct pandit_foo_pval v = { .t_ns = q->t_ns, .n = q->n };
		if (!sl->v.n) {
			sl->seq = q->seq;
			sl->v = v;
			continue;
		}
		struct pandit_foo_pkey key = { .cookie = client_cookie, .seq = q->seq };
		if (bpf_map_update_elem(pend_fd, &key, &v, BPF_NOEXIST) < 0)
			err = -errno;
		else
			t->overflow++;
	}
	if (!err && bpf_map_update_elem(track_fd, &client_cookie, t, BPF_ANY) < 0)
		err = -errno;
	if (err)
		pend_delete(pend_fd, client_cookie, ks->pend, n);
	free(t);
	return err;
}

void kfoo_undo_track(uint64_t client_cookie, const struct kfoo_start *ks)
{
	int track_fd = kpath_foo_track_fd(), pend_fd = kpath_foo_pending_fd();
	if (track_fd >= 0)
		bpf_map_delete_elem(track_fd, &client_cookie);
	if (pend_fd >= 0)
		pend_delete(pend_fd, client_cookie, ks->pend, (size_t)ks->track.used);
}

void kfoo_user_totals(uint64_t client_cookie, struct pandit_foo_track *out)
{
	int fd = kpath_foo_track_fd();
	if (fd < 0 || bpf_map_lookup_elem(fd, &client_cookie, out) < 0)
		memset(out, 0, sizeof(*out));
}

void kfoo_stop_track(uint64_t client_cookie, struct pandit_foo_track *out)
{
	int fd = kpath_foo_track_fd();
	kfoo_user_totals(client_cookie, out);
	if (fd >= 0)
		bpf_map_delete_elem(fd, &client_cookie);
}

enum kfoo_req_result kfoo_user_request(uint64_t client_cookie, uint64_t seq, uint64_t now_ns,
				       uint64_t used)
{
	int fd = kpath_foo_pending_fd();
	struct pandit_foo_pkey key = { .cookie = client_cookie, .seq = seq };
	struct pandit_foo_pval v;
	struct pandit_foo_track t;
	if (fd < 0)
		return KFOO_REQ_UNTRACKED;
	/* the program's slots are only read: they change under it */
	kfoo_user_totals(client_cookie, &t);
	const struct pandit_foo_slot *sl = &t.slot[seq & (PANDIT_FOO_TRACK_SLOTS - 1)];
	bool in_slot = sl->v.n && sl->seq == seq;
	if (bpf_map_lookup_elem(fd, &key, &v) == 0) {
		if (v.n == UINT32_MAX)
			return KFOO_REQ_UNTRACKED;
		v.n++;
		return bpf_map_update_elem(fd, &key, &v, BPF_EXIST) == 0 ? KFOO_REQ_DUPLICATE
									  : KFOO_REQ_UNTRACKED;
	}
	if (in_slot) {
		/* one more send of a Seq pending in its slot: an entry of its own */
		v = (struct pandit_foo_pval){ .t_ns = sl->v.t_ns, .n = 1 };
		return bpf_map_update_elem(fd, &key, &v, BPF_NOEXIST) == 0 ? KFOO_REQ_DUPLICATE_ENTRY
									    : KFOO_REQ_UNTRACKED;
	}
	if (used >= PANDIT_FOO_TRACK_MAX)
		return KFOO_REQ_UNTRACKED;
	v = (struct pandit_foo_pval){ .t_ns = now_ns, .n = 1 };
	return bpf_map_update_elem(fd, &key, &v, BPF_NOEXIST) == 0 ? KFOO_REQ_NEW
								    : KFOO_REQ_UNTRACKED;
}

int kfoo_user_reply(uint64_t client_cookie, uint64_t seq, uint64_t *t_ns, bool *emptied,
		    bool *entry)
{
	int fd = kpath_foo_pending_fd();
	struct pandit_foo_pkey key = { .cookie = client_cookie, .seq = seq };
	struct pandit_foo_pval v;
	struct pandit_foo_track t;
	if (fd < 0)
		return 0;
	kfoo_user_totals(client_cookie, &t);
	const struct pandit_foo_slot *sl = &t.slot[seq & (PANDIT_FOO_TRACK_SLOTS - 1)];
	if (sl->v.n && sl->seq == seq) {
		/* the slot is only read (it changes under the program): the
		 * caller keeps the send it takes away (this is the last message
		 * of the server's side, nothing will match the slot again) */
		*t_ns = sl->v.t_ns;
		*emptied = sl->v.n == 1;
		*entry = false;
		return 1;
	}
	if (bpf_map_lookup_elem(fd, &key, &v) < 0 || v.n == 0)
		return 0;
	*t_ns = v.t_ns;
	*emptied = v.n == 1;
	*entry = true;
	if (*emptied) {
		bpf_map_delete_elem(fd, &key);
	} else {
		v.n--;
		bpf_map_update_elem(fd, &key, &v, BPF_EXIST);
	}
	return 1;
}

void kfoo_forget(uint64_t client_cookie)
{
	pthread_mutex_lock(&D.lock);
	if (D.n == D.cap) {
		size_t cap = D.cap ? 2 * D.cap : 64;
		uint64_t *c = realloc(D.cookie, cap * sizeof(*c));
		if (c) {
			D.cookie = c;
			D.cap = cap;
		}
	}
	if (D.n < D.cap)
		D.cookie[D.n++] = client_cookie;
	else
		log_warn("out of memory: the pending Foo requests of a closed connection stay in the "
			 "kernel's map");
	pthread_mutex_unlock(&D.lock);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

#define SWEEP_BATCH 256u

bool kfoo_sweep(void)
{
	int fd = kpath_foo_pending_fd();
	pthread_mutex_lock(&D.lock);
	size_t n = D.n;
	uint64_t *set = D.cookie;
	D.cookie = NULL;
	D.n = D.cap = 0;
	pthread_mutex_unlock(&D.lock);
	if (!n)
		return false;
	if (fd >= 0) {
		qsort(set, n, sizeof(*set), cmp_u64);
		/* one pass: collect the keys of stopped connections, then delete
		 * them (deleting while walking would restart the walk) */
		struct pandit_foo_pkey key, next, *del = NULL;
		size_t n_del = 0, cap_del = 0;
		void *prev = NULL;
		while (bpf_map_get_next_key(fd, prev, &next) == 0) {
			key = next;
			prev = &key;
			if (!bsearch(&key.cookie, set, n, sizeof(*set), cmp_u64))
				continue;
			if (n_del == cap_del) {
				size_t cap = cap_del ? 2 * cap_del : SWEEP_BATCH;
				struct pandit_foo_pkey *d = realloc(del, cap * sizeof(*d));
				if (!d)
					break;
				del = d;
				cap_del = cap;
			}
			del[n_del++] = key;
		}
		for (size_t i = 0; i < n_del; i++)
			bpf_map_delete_elem(fd, &del[i]);
		free(del);
	}
	free(set);
	pthread_mutex_lock(&D.lock);
	bool more = D.n > 0;
	pthread_mutex_unlock(&D.lock);
	return more;
}
