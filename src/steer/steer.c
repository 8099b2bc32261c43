/* steer.c - loads the sk_lookup dispatcher, attaches it to the netns and keeps its rules map equal to the wanted set. */
#include "steer/steer.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "steer.skel.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524	/* kernel-internal "operation not supported", leaks out of bpf() */
#endif

#define NEED_ROOT "BPF sk_lookup needs root (CAP_BPF + CAP_NET_ADMIN)"

/*
 * The mirror: what steer_rules holds in the kernel, kept in userspace so a
 * sync costs one pass over the wanted set plus syscalls for the difference
 * only (never a walk of the kernel map). Entries live in a dense array; an
 * open-addressing table of indices finds them by key. Entries are never
 * removed from the middle during a sync: they are marked DEAD and the array
 * is compacted (and the index rebuilt) once at the end, so indices stay
 * stable while batches and their rollback run.
 */
enum mstate { M_LIVE, M_PENDING, M_DEAD };

struct mentry {
	struct steer_entry e;
	uint32_t gen;	/* sync generation that last saw this key in `want` */
	uint32_t state;	/* enum mstate */
};

/* One applied kernel operation, enough to undo it. */
struct jentry {
	struct pandit_steer_key key;
	struct pandit_steer_val old;
	bool had;	/* key was in the kernel before (undo = write old), else undo = delete */
};

struct steer {
	struct steer_bpf *skel;
	struct bpf_link *link;
	int rules_fd, socks_fd, stats_fd;
	int ncpu;	/* possible CPUs: the per-CPU map's value count */
	bool no_batch_upd, no_batch_del;	/* kernel refused batch ops: per-element fallback */

	struct mentry *m;
	size_t m_n, m_cap, live;
	uint32_t *idx;	/* index+1 into m, 0 = empty; h_cap is a power of two */
	size_t h_cap;
	uint32_t gen;

	/* scratch, grown on demand and kept between syncs */
	struct pandit_steer_key *uk, *dk;
	struct pandit_steer_val *uv;
	uint32_t *ui, *di;
	size_t u_cap, d_cap;
	struct jentry *jr;
	size_t jr_n, jr_cap;
	uint32_t *wi;	/* mirror index of want[w], for reordering */
	size_t wi_cap;
	bool reordered;	/* the last sync reordered the mirror */
	bool exact;	/* the last steer_sync/steer_apply succeeded */
};

/* --- keys ----------------------------------------------------------------- */

/* Copies addr into k->addr keeping only the first plen bits; the rest stays
 * zero. The kernel keys the trie on (prefixlen, data) but stores and returns
 * the bits past prefixlen as given, so a canonical form is what makes the
 * mirror's keys equal to the kernel's. */
static void copy_masked(uint8_t dst[16], const uint8_t *src, unsigned plen)
{
	unsigned full = plen / 8, rest = plen % 8;

	memset(dst, 0, 16);
	if (!src)
		return;
	memcpy(dst, src, full);
	if (rest)
		dst[full] = (uint8_t)(src[full] & (0xffu << (8 - rest)));
}

void steer_key_init(struct pandit_steer_key *k, uint16_t port, const uint8_t *addr, uint8_t plen)
{
	memset(k, 0, sizeof(*k));	/* pad must be zero: it is part of the key bytes */
	if (!addr || plen > 128)
		plen = addr ? 128 : 0;
	k->prefixlen = PANDIT_STEER_PREFIX_PORT_BITS + plen;
	k->port_be = htons(port);
	copy_masked(k->addr, addr, plen);
}

void steer_key_init_v4(struct pandit_steer_key *k, uint16_t port, uint32_t addr_be, uint8_t plen)
{
	uint8_t a[16] = { [10] = 0xff, [11] = 0xff };

	memcpy(&a[12], &addr_be, 4);
	steer_key_init(k, port, a, (uint8_t)(96 + (plen > 32 ? 32 : plen)));
}

/* Returns 0 and the canonical form of *in, or -EINVAL for a prefixlen that
 * does not cover the port (< 16) or runs past the address (> 144). */
static int key_canon(const struct pandit_steer_key *in, struct pandit_steer_key *out)
{
	if (in->prefixlen < PANDIT_STEER_PREFIX_PORT_BITS || in->prefixlen > PANDIT_STEER_PREFIX_MAX)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->prefixlen = in->prefixlen;
	out->port_be = in->port_be;
	copy_masked(out->addr, in->addr, in->prefixlen - PANDIT_STEER_PREFIX_PORT_BITS);
	return 0;
}

static inline uint64_t key_hash(const struct pandit_steer_key *k)
{
	uint64_t w[3];

	_Static_assert(sizeof(*k) == sizeof(w), "steer key is 24 bytes");
	memcpy(w, k, sizeof(w));
	uint64_t h = w[0] * 0x9e3779b97f4a7c15ull ^ w[1] * 0xc2b2ae3d27d4eb4full ^
		     w[2] * 0x165667b19e3779f9ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

static inline bool key_eq(const struct pandit_steer_key *a, const struct pandit_steer_key *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

/* --- mirror --------------------------------------------------------------- */

static long mirror_find(const struct steer *s, const struct pandit_steer_key *k)
{
	if (!s->h_cap)
		return -1;
	size_t mask = s->h_cap - 1;
	for (size_t h = key_hash(k) & mask;; h = (h + 1) & mask) {
		uint32_t v = s->idx[h];
		if (!v)
			return -1;
		if (key_eq(&s->m[v - 1].e.key, k))
			return (long)(v - 1);
	}
}

static void index_put(struct steer *s, size_t i)
{
	size_t mask = s->h_cap - 1;
	size_t h = key_hash(&s->m[i].e.key) & mask;

	while (s->idx[h])
		h = (h + 1) & mask;
	s->idx[h] = (uint32_t)(i + 1);
}

static void index_rebuild(struct steer *s)
{
	if (!s->h_cap)
		return;
	memset(s->idx, 0, s->h_cap * sizeof(*s->idx));
	for (size_t i = 0; i < s->m_n; i++)
		index_put(s, i);
}

/* Makes room for `need` entries in the array and keeps the index at most
 * half full. Returns 0 or -ENOMEM. */
static int mirror_reserve(struct steer *s, size_t need)
{
	if (need > s->m_cap) {
		size_t cap = s->m_cap ? s->m_cap : 1024;
		while (cap < need)
			cap *= 2;
		struct mentry *m = realloc(s->m, cap * sizeof(*m));
		if (!m) {
			log_err("steer: realloc() of the mirror (%zu entries) failed", cap);
			return -ENOMEM;
		}
		s->m = m;
		s->m_cap = cap;
	}
	if (need * 2 > s->h_cap) {
		size_t cap = s->h_cap ? s->h_cap : 2048;
		while (cap < need * 2)
			cap *= 2;
		uint32_t *idx = malloc(cap * sizeof(*idx));
		if (!idx) {
			log_err("steer: malloc() of the mirror index (%zu slots) failed", cap);
			return -ENOMEM;
		}
		free(s->idx);
		s->idx = idx;
		s->h_cap = cap;
		index_rebuild(s);
	}
	return 0;
}

/* Takes entry i out of the index (linear probing, backward-shift deletion:
 * no tombstones, so lookups never slow down with churn). */
static void index_del(struct steer *s, size_t i)
{
	size_t mask = s->h_cap - 1;
	size_t hole = key_hash(&s->m[i].e.key) & mask;

	while (s->idx[hole] != i + 1)
		hole = (hole + 1) & mask;
	for (size_t j = (hole + 1) & mask; s->idx[j]; j = (j + 1) & mask) {
		size_t home = key_hash(&s->m[s->idx[j] - 1].e.key) & mask;
		/* an entry may fill the hole only if its home is not between the
		 * hole (exclusive) and its slot (inclusive), cyclically */
		bool stays = hole < j ? (hole < home && home <= j) : (hole < home || home <= j);
		if (!stays) {
			s->idx[hole] = s->idx[j];
			hole = j;
		}
	}
	s->idx[hole] = 0;
}

/* Removes the entries at the ascending indices del[0..n) by moving the last
 * entry into each hole (highest index first, so no index still to remove
 * moves). O(n), for a handful of deletions in a large mirror. */
static void mirror_remove(struct steer *s, const uint32_t *del, size_t n)
{
	for (size_t k = n; k-- > 0;) {
		size_t i = del[k], last = s->m_n - 1;

		index_del(s, i);
		if (i != last) {
			size_t mask = s->h_cap - 1;
			size_t h = key_hash(&s->m[last].e.key) & mask;
			while (s->idx[h] != last + 1)
				h = (h + 1) & mask;
			s->idx[h] = (uint32_t)(i + 1);
			s->m[i] = s->m[last];
		}
		s->m_n--;
	}
}

/* Rebuilds the mirror in the order of want (s->wi[w] = mirror index of
 * want[w], all LIVE), dropping everything else, so that the next sync with
 * a want in the same order walks the mirror sequentially. Returns false
 * (nothing changed) if memory is short. */
static bool mirror_reorder(struct steer *s, size_t n)
{
	struct mentry *m = malloc(s->m_cap * sizeof(*m));

	if (!m)
		return false;
	for (size_t w = 0; w < n; w++)
		m[w] = s->m[s->wi[w]];
	free(s->m);
	s->m = m;
	s->m_n = n;
	s->live = n;
	index_rebuild(s);
	return true;
}

/* Drops DEAD entries (and PENDING ones, which a failed sync never wrote). */
static void mirror_compact(struct steer *s)
{
	size_t j = 0;

	for (size_t i = 0; i < s->m_n; i++) {
		if (s->m[i].state != M_LIVE)
			continue;
		if (i != j)
			s->m[j] = s->m[i];
		j++;
	}
	s->m_n = j;
	s->live = j;
	index_rebuild(s);
}

/* realloc() that leaves *p alone on failure; returns false then. */
static bool resize(void **p, size_t n, size_t elem)
{
	void *q = realloc(*p, n * elem);

	if (!q)
		return false;
	*p = q;
	return true;
}

static size_t next_cap(size_t cap, size_t need)
{
	size_t c = cap ? cap : 256;

	while (c < need)
		c *= 2;
	return c;
}

/* Room for nu writes, nd deletes and their journal. A failed realloc()
 * leaves a larger array behind at worst, never a smaller one. */
static int scratch_reserve(struct steer *s, size_t nu, size_t nd)
{
	if (nu > s->u_cap) {
		size_t c = next_cap(s->u_cap, nu);
		if (!resize((void **)&s->uk, c, sizeof(*s->uk)) ||
		    !resize((void **)&s->uv, c, sizeof(*s->uv)) ||
		    !resize((void **)&s->ui, c, sizeof(*s->ui)))
			goto nomem;
		s->u_cap = c;
	}
	if (nd > s->d_cap) {
		size_t c = next_cap(s->d_cap, nd);
		if (!resize((void **)&s->dk, c, sizeof(*s->dk)) ||
		    !resize((void **)&s->di, c, sizeof(*s->di)))
			goto nomem;
		s->d_cap = c;
	}
	if (nu > s->wi_cap) {
		size_t c = next_cap(s->wi_cap, nu);
		if (!resize((void **)&s->wi, c, sizeof(*s->wi)))
			goto nomem;
		s->wi_cap = c;
	}
	if (nu + nd > s->jr_cap) {
		size_t c = next_cap(s->jr_cap, nu + nd);
		if (!resize((void **)&s->jr, c, sizeof(*s->jr)))
			goto nomem;
		s->jr_cap = c;
	}
	return 0;
nomem:
	log_err("steer: realloc() of sync scratch space (%zu + %zu entries) failed", nu, nd);
	return -ENOMEM;
}

/* --- kernel operations ------------------------------------------------------ */

static bool batch_unsupported(int err)
{
	return err == -EINVAL || err == -ENOTSUPP || err == -EOPNOTSUPP;
}

/* Writes keys[0..n) -> vals[0..n) into steer_rules. *done tells how many
 * (a prefix of the arrays) are in the kernel when it returns. */
static int rules_update(struct steer *s, const struct pandit_steer_key *keys,
			const struct pandit_steer_val *vals, size_t n, size_t *done)
{
	*done = 0;
	if (!n)
		return 0;
	if (!s->no_batch_upd) {
		LIBBPF_OPTS(bpf_map_batch_opts, o, .elem_flags = BPF_ANY);
		__u32 cnt = (__u32)n;
		int err = bpf_map_update_batch(s->rules_fd, keys, vals, &cnt, &o);
		if (!err) {
			*done = n;
			return 0;
		}
		if (!(batch_unsupported(err) && cnt == 0)) {
			*done = cnt;
			log_err("bpf_map_update_batch(steer_rules) failed after %u of %zu entries: %s",
				cnt, n, strerror(-err));
			return err;
		}
		s->no_batch_upd = true;
		log_warn("bpf_map_update_batch(steer_rules) not supported here (%s): writing entries one by one",
			 strerror(-err));
	}
	for (size_t i = 0; i < n; i++) {
		int err = bpf_map_update_elem(s->rules_fd, &keys[i], &vals[i], BPF_ANY);
		if (err) {
			log_err("bpf_map_update_elem(steer_rules) failed after %zu of %zu entries: %s",
				i, n, strerror(-err));
			*done = i;
			return err;
		}
	}
	*done = n;
	return 0;
}

/* Deletes keys[0..n) from steer_rules; a key already absent counts as
 * deleted. *done tells how many (a prefix) are gone when it returns. */
static int rules_delete(struct steer *s, const struct pandit_steer_key *keys, size_t n, size_t *done)
{
	size_t off = 0;

	*done = 0;
	while (off < n && !s->no_batch_del) {
		LIBBPF_OPTS(bpf_map_batch_opts, o);
		__u32 cnt = (__u32)(n - off);
		int err = bpf_map_delete_batch(s->rules_fd, keys + off, &cnt, &o);
		if (!err) {
			*done = n;
			return 0;
		}
		if (err == -ENOENT) {
			/* nobody else writes the map, but be robust: absent is what we want */
			off += cnt + 1;
			*done = off;
			continue;
		}
		if (batch_unsupported(err) && cnt == 0 && off == 0) {
			s->no_batch_del = true;
			log_warn("bpf_map_delete_batch(steer_rules) not supported here (%s): deleting entries one by one",
				 strerror(-err));
			break;
		}
		*done = off + cnt;
		log_err("bpf_map_delete_batch(steer_rules) failed after %zu of %zu entries: %s",
			off + cnt, n, strerror(-err));
		return err;
	}
	for (size_t i = off; i < n; i++) {
		int err = bpf_map_delete_elem(s->rules_fd, &keys[i]);
		if (err && err != -ENOENT) {
			log_err("bpf_map_delete_elem(steer_rules) failed after %zu of %zu entries: %s",
				i, n, strerror(-err));
			*done = i;
			return err;
		}
	}
	*done = n;
	return 0;
}

/* Undoes the journal, newest first, one element at a time (error path
 * only). The mirror follows each undo that the kernel accepted, so it stays
 * true even when an undo fails. */
static void rollback(struct steer *s)
{
	size_t failed = 0;

	for (size_t j = s->jr_n; j-- > 0;) {
		struct jentry *J = &s->jr[j];
		long i = mirror_find(s, &J->key);
		int err;

		if (J->had) {
			err = bpf_map_update_elem(s->rules_fd, &J->key, &J->old, BPF_ANY);
			if (!err && i >= 0) {
				s->m[i].e.val = J->old;
				s->m[i].state = M_LIVE;
			}
		} else {
			err = bpf_map_delete_elem(s->rules_fd, &J->key);
			if (err == -ENOENT)
				err = 0;
			if (!err && i >= 0)
				s->m[i].state = M_DEAD;
		}
		if (err)
			failed++;
	}
	if (failed)
		log_err("steer: could not undo %zu of %zu steering changes; the kernel keeps them", failed,
			s->jr_n);
	s->jr_n = 0;
}

static int apply_updates(struct steer *s, size_t nu)
{
	size_t done;
	int err = rules_update(s, s->uk, s->uv, nu, &done);

	for (size_t k = 0; k < done; k++) {
		struct mentry *me = &s->m[s->ui[k]];
		struct jentry *J = &s->jr[s->jr_n++];

		J->key = me->e.key;
		J->had = me->state == M_LIVE;
		J->old = me->e.val;
		if (me->state != M_LIVE)
			s->live++;
		me->e.val = s->uv[k];
		me->state = M_LIVE;
	}
	return err;
}

static int apply_deletes(struct steer *s, size_t nd)
{
	size_t done;
	int err = rules_delete(s, s->dk, nd, &done);

	for (size_t k = 0; k < done; k++) {
		struct mentry *me = &s->m[s->di[k]];
		struct jentry *J = &s->jr[s->jr_n++];

		J->key = me->e.key;
		J->had = true;
		J->old = me->e.val;
		me->state = M_DEAD;
		s->live--;
	}
	return err;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int steer_sync(struct steer *s, const struct steer_entry *want, size_t n,
	       struct steer_sync_stats *stats)
{
	uint64_t t0 = now_ns();
	size_t nu = 0, nd = 0, unchanged = 0, fresh = 0, jumps = 0;
	int err;

	if (stats)
		memset(stats, 0, sizeof(*stats));
	if (n > PANDIT_STEER_MAX_ENTRIES) {
		log_err("steer: %zu steering entries wanted, the map holds at most %u", n,
			PANDIT_STEER_MAX_ENTRIES);
		return -E2BIG;
	}
	err = mirror_reserve(s, s->m_n + n);
	if (err)
		return err;
	err = scratch_reserve(s, n, s->m_n);
	if (err)
		return err;
	if (++s->gen == 0) {
		for (size_t i = 0; i < s->m_n; i++)
			s->m[i].gen = 0;
		s->gen = 1;
	}

	/* plan: one pass over want; new keys enter the mirror as PENDING so a
	 * duplicate among them is caught like any other. Callers tend to build
	 * want in the same order every time, and the mirror keeps that order,
	 * so try the entry after the last one found before hashing: a
	 * sequential walk instead of two cache misses per entry. */
	size_t cursor = 0;
	for (size_t w = 0; w < n; w++) {
		struct pandit_steer_key k;

		if (key_canon(&want[w].key, &k)) {
			log_err("steer: entry %zu has prefixlen %u, outside %u..%u", w,
				want[w].key.prefixlen, PANDIT_STEER_PREFIX_PORT_BITS, PANDIT_STEER_PREFIX_MAX);
			err = -EINVAL;
			goto abort_plan;
		}
		long i;
		if (cursor < s->m_n && key_eq(&s->m[cursor].e.key, &k)) {
			i = (long)cursor;
		} else {
			i = mirror_find(s, &k);
			jumps += i >= 0;
		}
		if (i >= 0)
			cursor = (size_t)i + 1;
		if (i >= 0 && s->m[i].gen == s->gen) {
			log_err("steer: duplicate steering key (port %u, prefixlen %u) in entry %zu",
				ntohs(k.port_be), k.prefixlen, w);
			err = -EINVAL;
			goto abort_plan;
		}
		if (i < 0) {
			i = (long)s->m_n++;	/* cursor stays: the next key may follow the last found */
			s->m[i].e.key = k;
			memset(&s->m[i].e.val, 0, sizeof(s->m[i].e.val));
			s->m[i].state = M_PENDING;
			index_put(s, (size_t)i);
			fresh++;
		}
		s->wi[w] = (uint32_t)i;
		if (s->m[i].state == M_LIVE &&
		    memcmp(&s->m[i].e.val, &want[w].val, sizeof(want[w].val)) == 0) {
			s->m[i].gen = s->gen;
			unchanged++;
			continue;
		}
		s->m[i].gen = s->gen;
		s->uk[nu] = k;
		s->uv[nu] = want[w].val;
		s->ui[nu] = (uint32_t)i;
		nu++;
	}
	for (size_t i = 0; i < s->m_n; i++) {
		if (s->m[i].state == M_LIVE && s->m[i].gen != s->gen) {
			s->dk[nd] = s->m[i].e.key;
			s->di[nd] = (uint32_t)i;
			nd++;
		}
	}

	/* apply: writes before deletes, so a key that moves (say from "any
	 * address" to a list of addresses) is never missing in between; but if
	 * that would overflow the map, make room first */
	s->jr_n = 0;
	if (s->live + fresh > PANDIT_STEER_MAX_ENTRIES) {
		err = apply_deletes(s, nd);
		if (!err)
			err = apply_updates(s, nu);
	} else {
		err = apply_updates(s, nu);
		if (!err)
			err = apply_deletes(s, nd);
	}
	if (err) {
		rollback(s);
		mirror_compact(s);
		s->exact = false;
		return err;
	}
	s->jr_n = 0;
	s->exact = true;
	/* keep the mirror in want's order when it drifted (once in a row at
	 * most, so a caller whose order changes every time pays no more than
	 * half the syncs); else drop what was deleted */
	if (jumps > n / 8 && n >= 1024 && !s->reordered && mirror_reorder(s, n)) {
		s->reordered = true;
	} else {
		s->reordered = false;
		if (nd * 8 > s->m_n)
			mirror_compact(s);	/* many: one pass and a fresh index */
		else if (nd)
			mirror_remove(s, s->di, nd);
	}
	if (stats) {
		stats->deleted = nd;
		stats->updated = nu;
		stats->unchanged = unchanged;
		stats->elapsed_ns = now_ns() - t0;
	}
	return 0;

abort_plan:
	if (fresh)
		mirror_compact(s);	/* drops the PENDING entries; the kernel was not touched */
	return err;
}

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;

	return (a > b) - (a < b);
}

int steer_apply(struct steer *s, const struct steer_entry *add, size_t na,
		const struct pandit_steer_key *del, size_t nd_in, struct steer_sync_stats *stats)
{
	uint64_t t0 = now_ns();
	size_t nu = 0, nd = 0, fresh = 0;
	int err;

	if (stats)
		memset(stats, 0, sizeof(*stats));
	if (!s->exact)
		return -ESTALE;
	if (na > PANDIT_STEER_MAX_ENTRIES) {
		log_err("steer: %zu steering entries to write, the map holds at most %u", na,
			PANDIT_STEER_MAX_ENTRIES);
		return -E2BIG;
	}
	err = mirror_reserve(s, s->m_n + na);
	if (!err)
		err = scratch_reserve(s, na, nd_in);
	if (err)
		return err;
	if (++s->gen == 0) {
		for (size_t i = 0; i < s->m_n; i++)
			s->m[i].gen = 0;
		s->gen = 1;
	}

	/* plan: the writes as in steer_sync, marked with this generation; then
	 * the deletions of live keys not marked (a key both deleted and written
	 * is written; one deleted twice is deleted once) */
	for (size_t w = 0; w < na; w++) {
		struct pandit_steer_key k;

		if (key_canon(&add[w].key, &k)) {
			log_err("steer: entry %zu has prefixlen %u, outside %u..%u", w,
				add[w].key.prefixlen, PANDIT_STEER_PREFIX_PORT_BITS, PANDIT_STEER_PREFIX_MAX);
			err = -EINVAL;
			goto abort_plan;
		}
		long i = mirror_find(s, &k);
		if (i >= 0 && s->m[i].gen == s->gen) {
			log_err("steer: duplicate steering key (port %u, prefixlen %u) in entry %zu",
				ntohs(k.port_be), k.prefixlen, w);
			err = -EINVAL;
			goto abort_plan;
		}
		if (i < 0) {
			i = (long)s->m_n++;
			s->m[i].e.key = k;
			memset(&s->m[i].e.val, 0, sizeof(s->m[i].e.val));
			s->m[i].state = M_PENDING;
			index_put(s, (size_t)i);
			fresh++;
		}
		s->m[i].gen = s->gen;
		if (s->m[i].state == M_LIVE &&
		    memcmp(&s->m[i].e.val, &add[w].val, sizeof(add[w].val)) == 0)
			continue;
		s->uk[nu] = k;
		s->uv[nu] = add[w].val;
		s->ui[nu] = (uint32_t)i;
		nu++;
	}
	for (size_t d = 0; d < nd_in; d++) {
		struct pandit_steer_key k;

		if (key_canon(&del[d], &k)) {
			log_err("steer: key %zu to delete has prefixlen %u, outside %u..%u", d,
				del[d].prefixlen, PANDIT_STEER_PREFIX_PORT_BITS, PANDIT_STEER_PREFIX_MAX);
			err = -EINVAL;
			goto abort_plan;
		}
		long i = mirror_find(s, &k);
		if (i < 0 || s->m[i].state != M_LIVE || s->m[i].gen == s->gen)
			continue;
		s->m[i].gen = s->gen;
		s->di[nd++] = (uint32_t)i;
	}
	/* mirror order for the deletions (and mirror_remove below) */
	if (nd)	/* s->di may still be NULL when nothing was ever deleted */
		qsort(s->di, nd, sizeof(*s->di), cmp_u32);
	for (size_t k = 0; k < nd; k++)
		s->dk[k] = s->m[s->di[k]].e.key;

	s->jr_n = 0;
	if (s->live + fresh > PANDIT_STEER_MAX_ENTRIES) {
		err = apply_deletes(s, nd);
		if (!err)
			err = apply_updates(s, nu);
	} else {
		err = apply_updates(s, nu);
		if (!err)
			err = apply_deletes(s, nd);
	}
	if (err) {
		rollback(s);
		mirror_compact(s);
		s->exact = false;
		return err;
	}
	s->jr_n = 0;
	if (nd * 8 > s->m_n)
		mirror_compact(s);
	else if (nd)
		mirror_remove(s, s->di, nd);
	if (stats) {
		stats->deleted = nd;
		stats->updated = nu;
		stats->unchanged = s->live - nu;
		stats->elapsed_ns = now_ns() - t0;
	}
	return 0;

abort_plan:
	if (fresh)
		mirror_compact(s);	/* drops the PENDING entries; the kernel was not touched */
	return err;
}

bool steer_in_sync(const struct steer *s)
{
	return s->exact;
}

/* --- lifecycle -------------------------------------------------------------- */

int steer_set_listener(struct steer *s, int listen_fd)
{
	__u32 key = PANDIT_SOCK_TCP;
	int err;

	if (listen_fd < 0) {
		err = bpf_map_delete_elem(s->socks_fd, &key);
		if (err && err != -ENOENT) {
			log_err("bpf_map_delete_elem(steer_socks) failed: %s", strerror(-err));
			return err;
		}
		return 0;
	}
	__u64 v = (__u64)listen_fd;
	err = bpf_map_update_elem(s->socks_fd, &key, &v, BPF_ANY);
	if (err) {
		if (err == -EOPNOTSUPP)
			log_err("bpf_map_update_elem(steer_socks, fd %d) failed: %s: it must be a listening TCP socket",
				listen_fd, strerror(-err));
		else
			log_err("bpf_map_update_elem(steer_socks, fd %d) failed: %s", listen_fd, strerror(-err));
		return err;
	}
	return 0;
}

int steer_open_flags(int listen_fd, unsigned flags, struct steer **out)
{
	struct steer *s;
	int err;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s) {
		log_err("steer: calloc() failed");
		return -ENOMEM;
	}
	s->skel = steer_bpf__open();
	if (!s->skel) {
		err = -errno;
		log_err("steer: opening the sk_lookup BPF object failed: %s", strerror(-err));
		goto fail;
	}
	err = steer_bpf__load(s->skel);
	if (err) {
		if (err == -EPERM || err == -EACCES)
			log_err("steer: loading the sk_lookup program failed: %s: " NEED_ROOT, strerror(-err));
		else
			log_err("steer: loading the sk_lookup program failed: %s", strerror(-err));
		goto fail;
	}
	s->rules_fd = bpf_map__fd(s->skel->maps.steer_rules);
	s->socks_fd = bpf_map__fd(s->skel->maps.steer_socks);
	s->stats_fd = bpf_map__fd(s->skel->maps.steer_stats);

	s->ncpu = libbpf_num_possible_cpus();
	if (s->ncpu <= 0) {
		err = s->ncpu < 0 ? s->ncpu : -EINVAL;
		log_err("steer: libbpf_num_possible_cpus() failed: %s", strerror(-err));
		goto fail;
	}

	if (listen_fd >= 0) {
		err = steer_set_listener(s, listen_fd);
		if (err)
			goto fail;
	}

	if (!(flags & STEER_NO_ATTACH)) {
		/* the thread's namespace, which is what the caller's sockets live in */
		int nsfd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (nsfd < 0) {
			err = -errno;
			log_err("steer: open(/proc/thread-self/ns/net) failed: %s", strerror(-err));
			goto fail;
		}
		s->link = bpf_program__attach_netns(s->skel->progs.pandit_steer, nsfd);
		err = s->link ? 0 : -errno;
		close(nsfd);
		if (err) {
			s->link = NULL;
			if (err == -EPERM || err == -EACCES)
				log_err("steer: bpf_program__attach_netns() failed: %s: " NEED_ROOT, strerror(-err));
			else
				log_err("steer: bpf_program__attach_netns() failed: %s", strerror(-err));
			goto fail;
		}
	}
	*out = s;
	return 0;

fail:
	steer_close(s);
	return err;
}

int steer_open(int listen_fd, struct steer **out)
{
	return steer_open_flags(listen_fd, 0, out);
}

/* Touches only the stats map fd, so it may run on another thread (admin)
 * while the control thread syncs. */
int steer_read_counters(struct steer *s, struct steer_counters *out)
{
	uint64_t *percpu = calloc((size_t)s->ncpu, sizeof(*percpu));
	int err = 0;

	memset(out, 0, sizeof(*out));
	if (!percpu) {
		log_err("steer: calloc() of %d per-CPU counters failed", s->ncpu);
		return -ENOMEM;
	}
	for (__u32 k = 0; k < PANDIT_STEER_STAT_MAX; k++) {
		err = bpf_map_lookup_elem(s->stats_fd, &k, percpu);
		if (err) {
			log_err("bpf_map_lookup_elem(steer_stats, %u) failed: %s", k, strerror(-err));
			break;
		}
		for (int c = 0; c < s->ncpu; c++)
			out->v[k] += percpu[c];
	}
	free(percpu);
	return err;
}

void steer_test_no_batch(struct steer *s)
{
	s->no_batch_upd = true;
	s->no_batch_del = true;
}

size_t steer_count(const struct steer *s)
{
	return s->live;
}

int steer_prog_fd(const struct steer *s)
{
	return bpf_program__fd(s->skel->progs.pandit_steer);
}

int steer_rules_fd(const struct steer *s)
{
	return s->rules_fd;
}

void steer_close(struct steer *s)
{
	if (!s)
		return;
	bpf_link__destroy(s->link);	/* detaches from the netns */
	steer_bpf__destroy(s->skel);
	free(s->m);
	free(s->idx);
	free(s->uk);
	free(s->uv);
	free(s->ui);
	free(s->dk);
	free(s->di);
	free(s->jr);
	free(s->wi);
	free(s);
}
