/* foo_stats.c - Foo accounting: counting parsed messages per app, matching replies to requests by Seq per connection, JSON and Prometheus output. */
#include "core/ref.h"
#include "proto/foo_stats.h"
#include "kpath/foo_kern.h"	/* releases the kernel's counters slot */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define WIN_1S 1000000000ull
#define WIN_10S 10000000000ull
#define TAB_MIN 16u
#define TAB_MAX (2 * FOO_CONN_MAX_OUTSTANDING)	/* load factor <= 1/2 */

/* One pending Seq. n == 0: the slot is empty. */
struct seq_slot {
	uint64_t seq;
	uint64_t t_ns;		/* time of the first pending send */
	uint32_t n;		/* sends pending a reply */
};

struct foo_conn {
	struct foo_parser p[2];
	struct seq_slot *tab;
	uint32_t cap;		/* slots, a power of two, 0 before the first REQ */
	uint32_t used;		/* distinct Seqs pending */
	uint64_t key;		/* hash key */
	uint64_t pending;	/* sends pending in the table */
	uint64_t untracked;	/* sends pending beyond the cap */
	bool strict;
	bool failed;
	uint8_t failed_dir;
	/* context of the foo_feed() in progress */
	struct foo_app_stats *s;
	uint64_t now;
	int dir;
	uint64_t n_req, n_ack, n_nak, n_wrong;
	/* On the kernel path (kcookie: the client socket's cookie), requests
	 * pending a reply live in the program's maps; a message completed at
	 * EOF is matched there, and the changes to the program's totals are
	 * kept here (wrapping: the program may take them back). */
	uint64_t kcookie;
	uint64_t k_used, k_pending, k_untracked, k_overflow;
};

/* --- app stats ---------------------------------------------------------------------- */

void foo_app_stats_init(struct foo_app_stats *s)
{
	memset(s, 0, sizeof(*s));
	stats_win_init(&s->req_win);
	stats_win_init(&s->resp_win);
}

struct foo_app_stats *foo_app_stats_new(void)
{
	struct foo_app_stats *s = malloc(sizeof(*s));
	if (!s)
		return NULL;
	foo_app_stats_init(s);
	atomic_init(&s->refcnt, 1);
	return s;
}

struct foo_app_stats *foo_app_stats_get(struct foo_app_stats *s)
{
	if (s)
		ref_get(&s->refcnt);
	return s;
}

void foo_app_stats_put(struct foo_app_stats *s)
{
	if (s && ref_put(&s->refcnt)) {
		kfoo_release(atomic_load_explicit(&s->kslot, memory_order_acquire));
		free(s);
	}
}

static void acc(_Atomic uint64_t *dst, const _Atomic uint64_t *src)
{
	stats_add(dst, stats_get(src));
}

void foo_app_stats_accumulate(struct foo_app_stats *dst, const struct foo_app_stats *src,
			      uint64_t now_ns)
{
	acc(&dst->msg_total, &src->msg_total);
	acc(&dst->msg_req, &src->msg_req);
	acc(&dst->msg_ack, &src->msg_ack);
	acc(&dst->msg_nak, &src->msg_nak);
	stats_win_merge(&dst->req_win, &src->req_win, now_ns);
	stats_win_merge(&dst->resp_win, &src->resp_win, now_ns);
	for (unsigned i = 0; i <= STATS_HIST_NBOUNDS; i++)
		acc(&dst->latency.buckets[i], &src->latency.buckets[i]);
	acc(&dst->latency.count, &src->latency.count);
	acc(&dst->latency.sum_us, &src->latency.sum_us);
	acc(&dst->replies_unmatched, &src->replies_unmatched);
	acc(&dst->requests_unanswered, &src->requests_unanswered);
	acc(&dst->requests_untracked, &src->requests_untracked);
	acc(&dst->requests_duplicate, &src->requests_duplicate);
	acc(&dst->msg_wrong_direction, &src->msg_wrong_direction);
	acc(&dst->conns, &src->conns);
	acc(&dst->noncompliant_client, &src->noncompliant_client);
	acc(&dst->noncompliant_server, &src->noncompliant_server);
	acc(&dst->conns_closed_strict, &src->conns_closed_strict);
	for (unsigned i = 0; i < FOO_N_ERR; i++)
		acc(&dst->violations[i], &src->violations[i]);
}

const char *foo_err_name(enum foo_err e)
{
	switch (e) {
	case FOO_OK: return "ok";
	case FOO_ERR_TYPE: return "type";
	case FOO_ERR_HTTP: return "http";
	case FOO_ERR_SEQ: return "seq";
	case FOO_ERR_EMPTY: return "empty";
	case FOO_ERR_LINE_TOO_LONG: return "line_too_long";
	case FOO_ERR_UTF8: return "utf8";
	case FOO_ERR_NUL: return "nul";
	case FOO_ERR_TRUNCATED: return "truncated";
	}
	return "unknown";
}

/* --- pending Seq table (open addressing, linear probing) ---------------------------- */

static _Atomic uint64_t hash_secret;

static uint64_t mix64(uint64_t x)
{
	/* splitmix64 finalizer */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static uint64_t process_secret(void)
{
	uint64_t s = atomic_load_explicit(&hash_secret, memory_order_relaxed);
	if (s)
		return s;
	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		s = mix64((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32);
	}
	s |= 1;
	/* racing first callers may each install theirs: any one is fine */
	atomic_store_explicit(&hash_secret, s, memory_order_relaxed);
	return s;
}

static inline uint32_t tab_home(const struct foo_conn *c, uint64_t seq)
{
	return (uint32_t)mix64(seq ^ c->key) & (c->cap - 1);
}

static struct seq_slot *tab_find(const struct foo_conn *c, uint64_t seq)
{
	if (!c->cap)
		return NULL;
	uint32_t mask = c->cap - 1;
	for (uint32_t i = tab_home(c, seq);; i = (i + 1) & mask) {
		struct seq_slot *e = &c->tab[i];
		if (!e->n)
			return NULL;
		if (e->seq == seq)
			return e;
	}
}

/* Places an entry known to be absent; there is room. */
static void tab_place(struct foo_conn *c, const struct seq_slot *src)
{
	uint32_t mask = c->cap - 1;
	uint32_t i = tab_home(c, src->seq);
	while (c->tab[i].n)
		i = (i + 1) & mask;
	c->tab[i] = *src;
}

static int tab_grow(struct foo_conn *c)
{
	uint32_t ncap = c->cap ? c->cap * 2 : TAB_MIN;
	if (ncap > TAB_MAX)
		return -1;
	struct seq_slot *ntab = calloc(ncap, sizeof(*ntab));
	if (!ntab)
		return -1;
	struct seq_slot *old = c->tab;
	uint32_t ocap = c->cap;
	c->tab = ntab;
	c->cap = ncap;
	for (uint32_t i = 0; i < ocap; i++)
		if (old[i].n)
			tab_place(c, &old[i]);
	free(old);
	return 0;
}

/* Removes the entry at e, shifting later entries of its probe run back so
 * no tombstones are needed. */
static void tab_remove(struct foo_conn *c, struct seq_slot *e)
{
	uint32_t mask = c->cap - 1;
	uint32_t hole = (uint32_t)(e - c->tab);
	for (uint32_t j = (hole + 1) & mask; c->tab[j].n; j = (j + 1) & mask) {
		uint32_t home = tab_home(c, c->tab[j].seq);
		/* the entry at j may fill the hole when its home is not in the
		 * cyclic range (hole, j] */
		bool in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
		if (!in_range) {
			c->tab[hole] = c->tab[j];
			hole = j;
		}
	}
	c->tab[hole].n = 0;
	c->used--;
}

/* track_request and match_reply against the kernel's entries (kcookie). */
static void ktrack_request(struct foo_conn *c, struct foo_app_stats *s, uint64_t seq)
{
	struct pandit_foo_track t;
	kfoo_user_totals(c->kcookie, &t);
	switch (kfoo_user_request(c->kcookie, seq, c->now, t.used + c->k_used)) {
	case KFOO_REQ_NEW:
		c->k_used++;
		c->k_overflow++;
		c->k_pending++;
		break;
	case KFOO_REQ_DUPLICATE_ENTRY:
		c->k_overflow++;
		/* fall through */
	case KFOO_REQ_DUPLICATE:
		stats_add(&s->requests_duplicate, 1);
		c->k_pending++;
		break;
	case KFOO_REQ_UNTRACKED:
	default:
		stats_add(&s->requests_untracked, 1);
		c->k_untracked++;
		break;
	}
}

static void kmatch_reply(struct foo_conn *c, struct foo_app_stats *s, uint64_t seq)
{
	uint64_t t0;
	bool emptied, entry;
	if (kfoo_user_reply(c->kcookie, seq, &t0, &emptied, &entry)) {
		stats_hist_observe(&s->latency, (c->now > t0 ? c->now - t0 : 0) / 1000);
		c->k_pending--;
		if (emptied)
			c->k_used--;
		if (emptied && entry)
			c->k_overflow--;
		return;
	}
	struct pandit_foo_track t;
	kfoo_user_totals(c->kcookie, &t);
	if (t.untracked + c->k_untracked)
		c->k_untracked--;
	else
		stats_add(&s->replies_unmatched, 1);
}

static void track_request(struct foo_conn *c, struct foo_app_stats *s, uint64_t seq)
{
	if (c->kcookie) {
		ktrack_request(c, s, seq);
		return;
	}
	struct seq_slot *e = tab_find(c, seq);
	if (e) {
		stats_add(&s->requests_duplicate, 1);
		if (e->n < UINT32_MAX) {
			e->n++;
			c->pending++;
			return;
		}
	} else if (c->used < FOO_CONN_MAX_OUTSTANDING &&
		   ((c->used + 1) * 2 <= c->cap || tab_grow(c) == 0)) {
		struct seq_slot n = { .seq = seq, .t_ns = c->now, .n = 1 };
		tab_place(c, &n);
		c->used++;
		c->pending++;
		return;
	}
	stats_add(&s->requests_untracked, 1);
	c->untracked++;
}

static void match_reply(struct foo_conn *c, struct foo_app_stats *s, uint64_t seq)
{
	if (c->kcookie) {
		kmatch_reply(c, s, seq);
		return;
	}
	struct seq_slot *e = tab_find(c, seq);
	if (!e) {
		if (c->untracked)
			c->untracked--;
		else
			stats_add(&s->replies_unmatched, 1);
		return;
	}
	uint64_t dt = c->now > e->t_ns ? c->now - e->t_ns : 0;
	stats_hist_observe(&s->latency, dt / 1000);
	c->pending--;
	if (--e->n == 0)
		tab_remove(c, e);
}

/* --- per connection ----------------------------------------------------------------- */

struct foo_conn *foo_conn_new(uint32_t max_line, bool strict, struct foo_app_stats *s)
{
	struct foo_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	foo_parser_init(&c->p[0], max_line);
	foo_parser_init(&c->p[1], max_line);
	c->strict = strict;
	c->key = mix64(process_secret() ^ (uint64_t)(uintptr_t)c);
	if (s)
		stats_add(&s->conns, 1);
	return c;
}

void foo_conn_free(struct foo_conn *c, struct foo_app_stats *s)
{
	if (!c)
		return;
	if (s && !c->failed && c->pending + c->untracked)
		stats_add(&s->requests_unanswered, c->pending + c->untracked);
	free(c->tab);
	free(c);
}

bool foo_conn_failed(const struct foo_conn *c)
{
	return c->failed;
}

enum foo_err foo_conn_error(const struct foo_conn *c, int *dir)
{
	if (!c->failed)
		return FOO_OK;
	if (dir)
		*dir = c->failed_dir;
	return c->p[c->failed_dir].err;
}

uint64_t foo_conn_pending(const struct foo_conn *c)
{
	return c->pending + c->untracked;
}

static void on_msg(void *arg, const struct foo_msg *m)
{
	struct foo_conn *c = arg;
	if (c->dir == FOO_DIR_C2S) {
		if (m->type != FOO_REQ) {
			c->n_wrong++;
			return;
		}
		c->n_req++;
		if (c->s)
			track_request(c, c->s, m->seq);
		return;
	}
	if (m->type == FOO_REQ) {
		c->n_wrong++;
		return;
	}
	if (m->type == FOO_ACK)
		c->n_ack++;
	else
		c->n_nak++;
	if (c->s)
		match_reply(c, c->s, m->seq);
}

/* Publishes the counts gathered during one call: one atomic add per counter
 * per call rather than per message. */
static void flush_counts(struct foo_conn *c, struct foo_app_stats *s)
{
	if (s) {
		uint64_t resp = c->n_ack + c->n_nak;
		if (c->n_req + resp) {
			stats_add(&s->msg_total, c->n_req + resp);
			if (c->n_req) {
				stats_add(&s->msg_req, c->n_req);
				stats_win_add(&s->req_win, c->now, c->n_req);
			}
			if (c->n_ack)
				stats_add(&s->msg_ack, c->n_ack);
			if (c->n_nak)
				stats_add(&s->msg_nak, c->n_nak);
			if (resp)
				stats_win_add(&s->resp_win, c->now, resp);
		}
		if (c->n_wrong)
			stats_add(&s->msg_wrong_direction, c->n_wrong);
	}
	c->n_req = c->n_ack = c->n_nak = c->n_wrong = 0;
	c->s = NULL;
}

/* closing: the caller closes the connection for it (strict policy, violation
 * in data; at EOF there is nothing left to close). */
static int turn_noncompliant(struct foo_conn *c, struct foo_app_stats *s, int dir, bool closing)
{
	c->failed = true;
	c->failed_dir = (uint8_t)dir;
	if (s) {
		stats_add(dir == FOO_DIR_C2S ? &s->noncompliant_client : &s->noncompliant_server, 1);
		enum foo_err e = c->p[dir].err;
		if (e > FOO_OK && e < FOO_N_ERR)
			stats_add(&s->violations[e], 1);
		if (c->strict && closing)
			stats_add(&s->conns_closed_strict, 1);
	}
	/* no longer watched: free the table now, pending requests are dropped */
	foo_conn_drop_pending(c);
	return -1;
}

struct foo_parser *foo_conn_parser(struct foo_conn *c, int dir)
{
	return &c->p[dir ? FOO_DIR_S2C : FOO_DIR_C2S];
}

size_t foo_conn_export_pending(const struct foo_conn *c, struct foo_pending_seq *out, size_t max,
			       uint64_t *pending, uint64_t *untracked)
{
	size_t k = 0;
	*pending = 0;
	*untracked = c->untracked;
	for (uint32_t i = 0; i < c->cap; i++) {
		const struct seq_slot *e = &c->tab[i];
		if (!e->n)
			continue;
		if (k < max) {
			out[k].seq = e->seq;
			out[k].t_ns = e->t_ns;
			out[k].n = e->n;
			k++;
			*pending += e->n;
		} else {
			*untracked += e->n;
		}
	}
	return k;
}

void foo_conn_kernel_tracks(struct foo_conn *c, uint64_t client_cookie)
{
	foo_conn_drop_pending(c);
	c->kcookie = client_cookie;
	c->k_used = c->k_pending = c->k_untracked = c->k_overflow = 0;
}

bool foo_conn_kernel_done(struct foo_conn *c, const struct pandit_foo_track *t)
{
	bool left = t->overflow + c->k_overflow != 0;
	if (!c->failed)
		c->untracked = t->pending + t->untracked + c->k_pending + c->k_untracked;
	c->kcookie = 0;
	c->k_used = c->k_pending = c->k_untracked = c->k_overflow = 0;
	return left;
}

void foo_conn_drop_pending(struct foo_conn *c)
{
	free(c->tab);
	c->tab = NULL;
	c->cap = c->used = 0;
	c->pending = c->untracked = 0;
}

int foo_conn_turn_noncompliant(struct foo_conn *c, struct foo_app_stats *s, int dir, bool closing)
{
	if (c->failed)
		return -1;
	return turn_noncompliant(c, s, dir ? FOO_DIR_S2C : FOO_DIR_C2S, closing);
}

int foo_conn_data(struct foo_conn *c, struct foo_app_stats *s, int dir, const char *buf,
		  size_t len, uint64_t now_ns)
{
	if (c->failed)
		return -1;
	dir = dir ? FOO_DIR_S2C : FOO_DIR_C2S;
	c->s = s;
	c->now = now_ns;
	c->dir = dir;
	int r = foo_feed(&c->p[dir], buf, len, on_msg, c);
	flush_counts(c, s);
	return r < 0 ? turn_noncompliant(c, s, dir, true) : 0;
}

int foo_conn_eof(struct foo_conn *c, struct foo_app_stats *s, int dir, uint64_t now_ns)
{
	if (c->failed)
		return -1;
	dir = dir ? FOO_DIR_S2C : FOO_DIR_C2S;
	c->s = s;
	c->now = now_ns;
	c->dir = dir;
	int r = foo_finish(&c->p[dir], on_msg, c);
	flush_counts(c, s);
	return r < 0 ? turn_noncompliant(c, s, dir, false) : 0;
}

/* --- rendering ---------------------------------------------------------------------- */

#define LIT(out, s) sbuf_append((out), (s), sizeof(s) - 1)

static const uint64_t hist_bounds[STATS_HIST_NBOUNDS] = STATS_HIST_BOUNDS_US;

static void put_u64(struct sbuf *out, uint64_t v)
{
	char buf[24];
	char *p = buf + sizeof(buf);
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sbuf_append(out, p, (size_t)(buf + sizeof(buf) - p));
}

/* A rate as a JSON / Prometheus number that always has a decimal point. */
static void put_rate(struct sbuf *out, double v)
{
	if (!(v >= 0.0) || v > 1e15)	/* NaN cannot happen; keep the output valid anyway */
		v = 0.0;
	sbuf_printf(out, "%.3f", v);
}

/* Microseconds as exact decimal seconds ("0.00005", "2.5", "1"). */
static void put_us_as_s(struct sbuf *out, uint64_t us)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
	while (n > 0 && buf[n - 1] == '0')
		n--;
	if (n > 0 && buf[n - 1] == '.')
		n--;
	sbuf_append(out, buf, (size_t)n);
}

struct hist_copy {
	uint64_t b[STATS_HIST_NBOUNDS + 1];
	uint64_t count, sum_us;
};

/* The count is the sum of the buckets read, so +Inf equals _count even while
 * workers keep observing. */
static void hist_read(const struct stats_hist *h, struct hist_copy *c)
{
	c->count = 0;
	for (unsigned i = 0; i <= STATS_HIST_NBOUNDS; i++) {
		c->b[i] = stats_get(&h->buckets[i]);
		c->count += c->b[i];
	}
	c->sum_us = stats_get(&h->sum_us);
}

static void json_u64(struct sbuf *out, const char *key_with_punct, uint64_t v)
{
	sbuf_puts(out, key_with_punct);
	put_u64(out, v);
}

static void json_rate(struct sbuf *out, const char *key_with_punct, double v)
{
	sbuf_puts(out, key_with_punct);
	put_rate(out, v);
}

void foo_stats_render_json_fields(struct sbuf *out, const struct foo_app_stats *s, uint64_t now_ns)
{
	json_u64(out, "\"msg_total\":", stats_get(&s->msg_total));
	json_u64(out, ",\"msg_req\":", stats_get(&s->msg_req));
	json_u64(out, ",\"msg_ack\":", stats_get(&s->msg_ack));
	json_u64(out, ",\"msg_nak\":", stats_get(&s->msg_nak));
	json_rate(out, ",\"request_rate_1s\":", stats_win_rate(&s->req_win, now_ns, WIN_1S));
	json_rate(out, ",\"request_rate_10s\":", stats_win_rate(&s->req_win, now_ns, WIN_10S));
	json_rate(out, ",\"response_rate_1s\":", stats_win_rate(&s->resp_win, now_ns, WIN_1S));
	json_rate(out, ",\"response_rate_10s\":", stats_win_rate(&s->resp_win, now_ns, WIN_10S));
	json_u64(out, ",\"latency_us\":{\"count\":", stats_get(&s->latency.count));
	json_u64(out, ",\"p50\":", (uint64_t)(stats_hist_quantile(&s->latency, 0.50) + 0.5));
	json_u64(out, ",\"p99\":", (uint64_t)(stats_hist_quantile(&s->latency, 0.99) + 0.5));
	json_u64(out, "},\"replies_unmatched\":", stats_get(&s->replies_unmatched));
	json_u64(out, ",\"requests_unanswered\":", stats_get(&s->requests_unanswered));
	json_u64(out, ",\"requests_untracked\":", stats_get(&s->requests_untracked));
	json_u64(out, ",\"requests_duplicate\":", stats_get(&s->requests_duplicate));
	json_u64(out, ",\"msg_wrong_direction\":", stats_get(&s->msg_wrong_direction));
	json_u64(out, ",\"connections\":{\"watched\":", stats_get(&s->conns));
	json_u64(out, ",\"noncompliant_client\":", stats_get(&s->noncompliant_client));
	json_u64(out, ",\"noncompliant_server\":", stats_get(&s->noncompliant_server));
	json_u64(out, ",\"closed_strict\":", stats_get(&s->conns_closed_strict));
	LIT(out, ",\"reasons\":{");
	bool first = true;
	for (unsigned i = FOO_OK + 1; i < FOO_N_ERR; i++) {
		uint64_t v = stats_get(&s->violations[i]);
		if (!v)
			continue;
		if (!first)
			LIT(out, ",");
		first = false;
		LIT(out, "\"");
		sbuf_puts(out, foo_err_name((enum foo_err)i));
		LIT(out, "\":");
		put_u64(out, v);
	}
	LIT(out, "}}");
}

/* --- Prometheus --------------------------------------------------------------------- */

static const struct {
	const char *name, *type, *help;
} prom_families[FOO_PROM_N_FAMILIES] = {
	{ "pandit_foo_messages_total", "counter",
	  "Valid Foo messages in the right direction: REQ from clients, ACK and NAK from servers." },
	{ "pandit_foo_message_rate", "gauge",
	  "Foo messages per second over a moving window; request: REQ, response: ACK + NAK." },
	{ "pandit_foo_reply_latency_seconds", "histogram",
	  "Time from a REQ to the ACK or NAK with the same Seq on the same connection." },
	{ "pandit_foo_replies_unmatched_total", "counter",
	  "ACK or NAK whose Seq had no request pending on the connection." },
	{ "pandit_foo_requests_unanswered_total", "counter",
	  "REQ still without a reply when their connection closed." },
	{ "pandit_foo_requests_untracked_total", "counter",
	  "REQ not matched for latency because their connection had too many pending." },
	{ "pandit_foo_requests_duplicate_total", "counter",
	  "REQ whose Seq was already pending on the connection." },
	{ "pandit_foo_messages_wrong_direction_total", "counter",
	  "Valid Foo messages sent the wrong way (REQ from a server, ACK or NAK from a client), not counted as messages." },
	{ "pandit_foo_connections_noncompliant_total", "counter",
	  "Connections that stopped speaking Foo, by the side that broke the protocol first." },
	{ "pandit_foo_connections_closed_strict_total", "counter",
	  "Non-compliant connections closed by the strict policy." },
	{ "pandit_foo_violations_total", "counter",
	  "Non-compliant connections by the reason of their first violation (reasons seen only)." },
};

static void prom_start(struct sbuf *out, unsigned f, const char *suffix, const char *app)
{
	sbuf_puts(out, prom_families[f].name);
	if (suffix)
		sbuf_puts(out, suffix);
	LIT(out, "{app=\"");
	sbuf_puts(out, app);
	LIT(out, "\"");
}

/* name{app="..",extra} v */
static void prom_u64(struct sbuf *out, unsigned f, const char *suffix, const char *app,
		     const char *extra, uint64_t v)
{
	prom_start(out, f, suffix, app);
	if (extra) {
		LIT(out, ",");
		sbuf_puts(out, extra);
	}
	LIT(out, "} ");
	put_u64(out, v);
	LIT(out, "\n");
}

static void prom_rate(struct sbuf *out, const char *app, const char *extra, double v)
{
	prom_start(out, 1, NULL, app);
	LIT(out, ",");
	sbuf_puts(out, extra);
	LIT(out, "} ");
	put_rate(out, v);
	LIT(out, "\n");
}

static void prom_hist(struct sbuf *out, unsigned f, const char *app, const struct stats_hist *h)
{
	struct hist_copy c;
	hist_read(h, &c);
	uint64_t cum = 0;
	for (unsigned i = 0; i <= STATS_HIST_NBOUNDS; i++) {
		cum += c.b[i];
		prom_start(out, f, "_bucket", app);
		LIT(out, ",le=\"");
		if (i < STATS_HIST_NBOUNDS)
			put_us_as_s(out, hist_bounds[i]);
		else
			LIT(out, "+Inf");
		LIT(out, "\"} ");
		put_u64(out, cum);
		LIT(out, "\n");
	}
	prom_start(out, f, "_sum", app);
	LIT(out, "} ");
	put_us_as_s(out, c.sum_us);
	LIT(out, "\n");
	prom_u64(out, f, "_count", app, NULL, c.count);
}

void foo_stats_prom_header(struct sbuf *out, unsigned f)
{
	if (f >= FOO_PROM_N_FAMILIES)
		return;
	LIT(out, "# HELP ");
	sbuf_puts(out, prom_families[f].name);
	LIT(out, " ");
	sbuf_puts(out, prom_families[f].help);
	LIT(out, "\n# TYPE ");
	sbuf_puts(out, prom_families[f].name);
	LIT(out, " ");
	sbuf_puts(out, prom_families[f].type);
	LIT(out, "\n");
}

void foo_stats_prom_samples(struct sbuf *out, unsigned f, const char *app,
			    const struct foo_app_stats *s, uint64_t now_ns)
{
	switch (f) {
	case 0:
		prom_u64(out, f, NULL, app, "type=\"req\"", stats_get(&s->msg_req));
		prom_u64(out, f, NULL, app, "type=\"ack\"", stats_get(&s->msg_ack));
		prom_u64(out, f, NULL, app, "type=\"nak\"", stats_get(&s->msg_nak));
		break;
	case 1:
		prom_rate(out, app, "kind=\"request\",window=\"1s\"",
			  stats_win_rate(&s->req_win, now_ns, WIN_1S));
		prom_rate(out, app, "kind=\"request\",window=\"10s\"",
			  stats_win_rate(&s->req_win, now_ns, WIN_10S));
		prom_rate(out, app, "kind=\"response\",window=\"1s\"",
			  stats_win_rate(&s->resp_win, now_ns, WIN_1S));
		prom_rate(out, app, "kind=\"response\",window=\"10s\"",
			  stats_win_rate(&s->resp_win, now_ns, WIN_10S));
		break;
	case 2:
		prom_hist(out, f, app, &s->latency);
		break;
	case 3:
		prom_u64(out, f, NULL, app, NULL, stats_get(&s->replies_unmatched));
		break;
	case 4:
		prom_u64(out, f, NULL, app, NULL, stats_get(&s->requests_unanswered));
		break;
	case 5:
		prom_u64(out, f, NULL, app, NULL, stats_get(&s->requests_untracked));
		break;
	case 6:
		prom_u64(out, f, NULL, app, NULL, stats_get(&s->requests_duplicate));
		break;
	case 7:
		prom_u64(out, f, NULL, app, NULL, stats_get(&s->msg_wrong_direction));
		break;
	case 8:
		prom_u64(out, f, NULL, app, "side=\"client\"", stats_get(&s->noncompliant_client));
		prom_u64(out, f, NULL, app, "side=\"server\"", stats_get(&s->noncompliant_server));
		break;
	case 9:
		prom_u64(out, f, NULL, app, NULL, stats_get(&s->conns_closed_strict));
		break;
	case 10:
		/* only the reasons seen, to keep the series few */
		for (unsigned i = FOO_OK + 1; i < FOO_N_ERR; i++) {
			uint64_t v = stats_get(&s->violations[i]);
			if (!v)
				continue;
			char extra[48];
			snprintf(extra, sizeof(extra), "reason=\"%s\"", foo_err_name((enum foo_err)i));
			prom_u64(out, f, NULL, app, extra, v);
		}
		break;
	default:
		break;
	}
}

void foo_stats_render_prometheus(struct sbuf *out, const char *app, const struct foo_app_stats *s,
				 uint64_t now_ns)
{
	for (unsigned f = 0; f < FOO_PROM_N_FAMILIES; f++) {
		foo_stats_prom_header(out, f);
		foo_stats_prom_samples(out, f, app, s, now_ns);
	}
}
