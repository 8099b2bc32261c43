/* reload_timer.c - times the phases of a config reload (read, parse, validate, diff, build, steering, free) like control_reload does them; writes the bench reload configs. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "config/diff.h"
#include "config/internal.h"
#include "lb/target.h"
#include "runtime/runtime.h"
#include "steer/steer.h"

enum { P_READ, P_PARSE, P_VALIDATE, P_DIFF, P_BUILD, P_ENTRIES, P_SYNC, P_FREE, P_TOTAL, P_N };
static const char *phase_name[P_N] = { "read", "parse", "validate", "diff", "build",
				       "entries", "sync", "free", "total" };

static clockid_t clock_id = CLOCK_MONOTONIC;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(clock_id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int read_file(const char *path, char **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*buf = malloc((size_t)st.st_size + 1);
	size_t n = 0;
	while (*buf && n < (size_t)st.st_size) {
		ssize_t r = read(fd, *buf + n, (size_t)st.st_size - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	*len = n;
	return *buf ? 0 : -1;
}

/* read + parse + validate, each timed; like cfg_load_file. */
static struct cfg *load(const char *path, uint64_t *t)
{
	uint64_t a = now_ns();
	char *buf = NULL;
	size_t len = 0;
	if (read_file(path, &buf, &len) < 0)
		return NULL;
	uint64_t b = now_ns();
	struct cfg_errors errs = { 0 };
	struct ytree tree;
	struct cfg *cfg = calloc(1, sizeof(*cfg));
	cfg->path = strdup(path);
	int r = ytree_parse(&tree, path, buf, len, &errs);
	uint64_t c = now_ns();
	if (r == 0) {
		r = cfg_from_tree(&tree, path, cfg, &errs);
		ytree_free(&tree);
	}
	uint64_t d = now_ns();
	free(buf);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	cfg_errors_free(&errs);
	if (r) {
		cfg_free(cfg);
		return NULL;
	}
	t[P_READ] = b - a;
	t[P_PARSE] = c - b;
	t[P_VALIDATE] = d - c;
	return cfg;
}

/* Writes the benchmark's reload configs (bench/l4bench.py reload_apps and
 * pandit_yaml): n apps of 4 consecutive ports from 10000, two loopback
 * targets each among 127.0.0.1:5001-5004, no health checks; the app n/3
 * gets `extra` more ports from 50000. YAML as the bench writes it, and the
 * same as indented JSON. */
static int gen_one(const char *dir, unsigned n, unsigned extra, bool json)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/a%u.%s", dir, extra, json ? "json" : "yaml");
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	static const unsigned be[4] = { 5001, 5002, 5003, 5004 };
	if (json)
		fprintf(f, "{\n \"workers\": 1,\n \"user\": \"nobody\",\n \"admin\": \"127.0.0.1:9900\",\n \"apps\": [");
	else
		fprintf(f, "workers: 1\nuser: nobody\nadmin: \"127.0.0.1:9900\"\napps:\n");
	for (unsigned i = 0; i < n; i++) {
		unsigned p = 10000 + 4 * i, np = 4 + (i == n / 3 ? extra : 0);
		if (json)
			fprintf(f, "%s\n  {\"name\": \"app%u\", \"ports\": [", i ? "," : "", i);
		else
			fprintf(f, "  - name: app%u\n    ports: [", i);
		for (unsigned k = 0; k < np; k++)
			fprintf(f, "%s%u", k ? ", " : "", k < 4 ? p + k : 50000 + k - 4);
		if (json)
			fprintf(f, "], \"targets\": [\"127.0.0.1:%u\", \"127.0.0.1:%u\"], \"health_check\": false}",
				be[i % 4], be[(i + 1) % 4]);
		else
			fprintf(f, "]\n    targets: [\"127.0.0.1:%u\", \"127.0.0.1:%u\"]\n    health_check: false\n",
				be[i % 4], be[(i + 1) % 4]);
	}
	if (json)
		fprintf(f, "\n ]\n}\n");
	return fclose(f) == 0 ? 0 : -1;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return (a > b) - (a < b);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--gen") == 0) {
		unsigned n = argc > 3 ? (unsigned)atoi(argv[3]) : 10000;
		for (unsigned extra = 0; extra < 3; extra++)
			if (gen_one(argv[2], n, extra, false) < 0 || gen_one(argv[2], n, extra, true) < 0)
				return 1;
		printf("%s/a{0,1,2}.{yaml,json}: %u apps, app %u with 0, 1, 2 extra ports\n", argv[2], n,
		       n / 3);
		return 0;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: %s BASE.yaml OTHER.yaml [ROUNDS] [--no-steer] [--full-sync] [--gap-ms=N] [--cpu]\n"
				"       %s --gen DIR [APPS]   (writes the bench's reload configs, default 10000 apps)\n"
				"Loads BASE, then reloads OTHER and BASE in turn ROUNDS times (default 20),\n"
				"printing the median time of each phase in ms. Syncs real BPF maps\n"
				"(loaded, not attached) when run as root, unless --no-steer; with the\n"
				"changed apps' entries only (as pandit does) unless --full-sync.\n"
				"--gap-ms: pause between rounds (caches go cold as between real reloads).\n"
				"--cpu: the thread's CPU time instead of the wall clock (steadier on a busy machine).\n",
			argv[0], argv[0]);
		return 2;
	}
	int rounds = argc > 3 && argv[3][0] != '-' ? atoi(argv[3]) : 20;
	bool use_steer = true, full_sync = false;
	unsigned gap_ms = 0;
	for (int i = 3; i < argc; i++) {
		if (strcmp(argv[i], "--no-steer") == 0)
			use_steer = false;
		else if (strcmp(argv[i], "--full-sync") == 0)
			full_sync = true;
		else if (strcmp(argv[i], "--cpu") == 0)
			clock_id = CLOCK_THREAD_CPUTIME_ID;
		else if (strncmp(argv[i], "--gap-ms=", 9) == 0)
			gap_ms = (unsigned)atoi(argv[i] + 9);
	}
	if (rounds < 1)
		rounds = 1;
	log_threshold = LOG_WARN;

	uint64_t t[P_N];
	struct cfg *cfg = load(argv[1], t);
	if (!cfg)
		return 1;
	if (target_registry_init(&cfg->health, cfg->resolve_interval_ms) < 0)
		return 1;
	struct rt_snapshot *snap;
	if (rt_snapshot_build(cfg, NULL, NULL, &snap) < 0)
		return 1;
	struct steer *steer = NULL;
	if (use_steer && steer_open_flags(-1, STEER_NO_ATTACH, &steer) < 0) {
		fprintf(stderr, "no BPF maps (not root?): sync not timed\n");
		steer = NULL;
	}
	struct steer_entry *e;
	size_t n;
	if (steer) {
		if (rt_steer_entries(snap, &e, &n) < 0 || steer_sync(steer, e, n, NULL) < 0)
			return 1;
		free(e);
	}

	uint64_t *all = calloc((size_t)rounds * P_N, sizeof(*all));
	for (int r = 0; r < rounds; r++) {
		uint64_t *tt = all + (size_t)r * P_N;
		const char *path = argv[r % 2 ? 1 : 2];
		if (gap_ms)
			usleep(gap_ms * 1000u);
		uint64_t t0 = now_ns();
		struct cfg *nc = load(path, tt);
		if (!nc)
			return 1;
		uint64_t a = now_ns();
		struct cfg_diff diff;
		if (cfg_diff(snap->cfg, nc, &diff) < 0)
			return 1;
		uint64_t b = now_ns();
		struct rt_snapshot *ns;
		if (rt_snapshot_build(nc, snap, &diff, &ns) < 0)
			return 1;
		uint64_t c = now_ns();
		uint64_t d = c, f = c;
		if (steer) {
			/* as control_reload: the diff's entries when the maps are in
			 * sync with the previous snapshot, else everything */
			struct steer_sync_stats st;
			struct pandit_steer_key *dk;
			size_t nd;
			int err = -ESTALE;
			if (steer_in_sync(steer) && !full_sync) {
				if (rt_steer_delta(snap, ns, &diff, &e, &n, &dk, &nd) < 0)
					return 1;
				d = now_ns();
				err = steer_apply(steer, e, n, dk, nd, &st);
				free(e);
				free(dk);
				if (!err && steer_count(steer) != ns->n_ports)
					err = -EDOM;
			}
			if (err) {
				if (rt_steer_entries(ns, &e, &n) < 0)
					return 1;
				d = now_ns();
				if (steer_sync(steer, e, n, &st) < 0)
					return 1;
				free(e);
			}
			f = now_ns();
			if (r == 0)
				fprintf(stderr, "sync: %zu deleted, %zu written, %zu kept\n", st.deleted,
					st.updated, st.unchanged);
		}
		if (r == 0)
			fprintf(stderr, "diff: %zu added, %zu removed, %zu changed, %zu unchanged\n",
				diff.n_added, diff.n_removed, diff.n_changed, diff.n_unchanged);
		cfg_diff_free(&diff);
		rt_snapshot_put(snap);
		snap = ns;
		uint64_t g = now_ns();
		tt[P_DIFF] = b - a;
		tt[P_BUILD] = c - b;
		tt[P_ENTRIES] = d - c;
		tt[P_SYNC] = f - d;
		tt[P_FREE] = g - f;
		tt[P_TOTAL] = g - t0;
	}
	printf("phase      median ms   min ms   (%d rounds%s%s)\n", rounds, steer ? "" : ", no sync",
	       clock_id == CLOCK_MONOTONIC ? "" : ", CPU time");
	uint64_t *col = calloc((size_t)rounds, sizeof(*col));
	for (int p = 0; p < P_N; p++) {
		for (int r = 0; r < rounds; r++)
			col[r] = all[(size_t)r * P_N + p];
		qsort(col, (size_t)rounds, sizeof(*col), cmp_u64);
		printf("%-9s %9.3f %9.3f\n", phase_name[p], col[rounds / 2] / 1e6, col[0] / 1e6);
	}
	free(col);
	free(all);
	rt_snapshot_put(snap);
	if (steer)
		steer_close(steer);
	return 0;
}
