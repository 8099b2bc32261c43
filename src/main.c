/* main.c - pandit's entry point: command line, start-up, privilege drop, then the control loop. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "config/config.h"
#include "control/control.h"
#include "core/log.h"
#include "kpath/shortcut.h"
#include "kpath/splice.h"
#include "lb/target.h"
#include "proxy/listener.h"
#include "proxy/worker.h"
#include "runtime/runtime.h"
#include "stats/stats.h"
#include "steer/steer.h"
#include "sys/privdrop.h"

#ifndef PANDIT_VERSION
#define PANDIT_VERSION "0.1.0"
#endif

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: pandit -c FILE [options]\n"
		"       pandit --check -c FILE\n"
		"       pandit --listen [ADDR]:PORT --forward HOST:PORT [options]\n"
		"\n"
		"pandit is a per-host TCP proxy: a BPF sk_lookup program steers every\n"
		"configured address:port to its listeners, which balance connections over\n"
		"the targets of each app. See docs/CONFIG.md for the config file.\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE     config file (YAML or JSON); reloaded on SIGHUP and\n"
		"                        when the file changes\n"
		"      --check           validate the config, print every error as\n"
		"                        file:line:col: message, exit 0 if valid, 1 if not\n"
		"      --listen ADDR     quick mode: proxy one port without a config file\n"
		"                        (\":8002\", \"127.0.0.1:8002\", \"[::1]:8002\"; also -listen=)\n"
		"      --forward TARGET  quick mode: the target, host:port (also -forward=)\n"
		"      --protocol P      quick mode: tcp (default), foo (the Foo line protocol,\n"
		"                        parsed and counted) or http (HTTP/1.1 reverse proxy);\n"
		"                        also -protocol=\n"
		"  -w, --workers N       worker threads (overrides the config; 0 = one per CPU)\n"
		"      --busy-poll USEC  after handling events, a worker keeps polling for USEC\n"
		"                        microseconds before it sleeps: lower latency for more\n"
		"                        CPU (default 0: off; worth it only with a CPU per worker)\n"
		"  -u, --user NAME       user to switch to after start-up (overrides the\n"
		"                        config; \"\" keeps root, for debugging only)\n"
		"  -l, --log-level LVL   error, warn, info (default) or debug (overrides the config)\n"
		"  -V, --version         print the version and exit\n"
		"  -h, --help            print this help and exit\n"
		"\n"
		"Signals: SIGHUP reloads the config, SIGUSR1 prints statistics as one JSON\n"
		"line on stdout, SIGTERM/SIGINT stop.\n"
		"Needs root (CAP_BPF, CAP_NET_ADMIN) to start; runs unprivileged afterwards.\n");
}

struct options {
	const char *config;
	const char *listen, *forward;
	const char *user;
	bool user_set;
	bool check;
	long workers;	/* -1: from the config */
	const char *log_level;
	long busy_poll_us;
	enum app_protocol protocol;	/* quick mode */
	bool protocol_set;
};


static int parse_args(int argc, char **argv, struct options *o)
{
	enum { OPT_CHECK = 256, OPT_LISTEN, OPT_FORWARD, OPT_PROTOCOL, OPT_BUSY_POLL };
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, OPT_CHECK },
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "forward", required_argument, NULL, OPT_FORWARD },
		{ "protocol", required_argument, NULL, OPT_PROTOCOL },
		{ "busy-poll", required_argument, NULL, OPT_BUSY_POLL },
		{ "workers", required_argument, NULL, 'w' },
		{ "user", required_argument, NULL, 'u' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	o->workers = -1;
	int ch;
	/* getopt_long_only also takes -listen=:8002 and -forward=host:port */
	while ((ch = getopt_long_only(argc, argv, "c:w:u:l:Vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case OPT_CHECK: o->check = true; break;
		case OPT_LISTEN: o->listen = optarg; break;
		case OPT_FORWARD: o->forward = optarg; break;
		case OPT_PROTOCOL:
			if (cfg_protocol_parse(optarg, &o->protocol) < 0) {
				fprintf(stderr, "pandit: --protocol wants tcp, foo or http, not \"%s\"\n",
					optarg);
				return 2;
			}
			o->protocol_set = true;
			break;
		case 'w': {
			char *end;
			errno = 0;
			o->workers = strtol(optarg, &end, 10);
			if (errno || *end || o->workers < 0 || o->workers > 1024) {
				fprintf(stderr, "pandit: --workers wants a number 0..1024, not \"%s\"\n", optarg);
				return 2;
			}
			break;
		}
		case OPT_BUSY_POLL: {
			char *end;
			errno = 0;
			o->busy_poll_us = strtol(optarg, &end, 10);
			if (errno || *end || o->busy_poll_us < 0 || o->busy_poll_us > 100000) {
				fprintf(stderr, "pandit: --busy-poll wants microseconds 0..100000, not \"%s\"\n", optarg);
				return 2;
			}
			break;
		}
		case 'u': o->user = optarg; o->user_set = true; break;
		case 'l': o->log_level = optarg; break;
		case 'V': printf("pandit %s\n", PANDIT_VERSION); exit(0);
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pandit: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (!o->config && !(o->listen && o->forward)) {
		fprintf(stderr, "pandit: give a config file (-c FILE) or --listen and --forward\n");
		usage(stderr);
		return 2;
	}
	if (o->config && (o->listen || o->forward)) {
		fprintf(stderr, "pandit: -c and --listen/--forward exclude each other\n");
		return 2;
	}
	if (o->protocol_set && o->config) {
		fprintf(stderr, "pandit: --protocol is for quick mode; in a config file, set 'protocol' per app\n");
		return 2;
	}
	if ((o->listen != NULL) != (o->forward != NULL)) {
		fprintf(stderr, "pandit: quick mode needs both --listen and --forward\n");
		return 2;
	}
	return 0;
}

/* admin_source callbacks: the admin thread reads what the control thread owns */
static struct rt_snapshot *admin_snapshot_get(void *ctx)
{
	return control_snapshot(ctx);
}

static int admin_steer_counters(void *ctx, struct steer_counters *out)
{
	struct control *c = ctx;
	return c->steer ? steer_read_counters(c->steer, out) : -ENOENT;
}

static int load_config(const struct options *o, struct cfg **cfg)
{
	struct cfg_errors errs = { 0 };
	int err = o->config ? cfg_load_file(o->config, cfg, &errs)
			    : cfg_quick(o->listen, o->forward, cfg, &errs);
	if (!err && !o->config)
		(*cfg)->apps[0].protocol = o->protocol;
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	if (err && !errs.n)
		fprintf(stderr, "%s: %s\n", o->config ? o->config : "quick mode", strerror(-err));
	cfg_errors_free(&errs);
	return err;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	int rc = parse_args(argc, argv, &o);
	if (rc)
		return rc;
	log_hook_libbpf();

	struct cfg *cfg = NULL;
	if (load_config(&o, &cfg) < 0)
		return 1;
	if (o.check) {
		size_t ports = 0;
		for (size_t i = 0; i < cfg->n_apps; i++)
			for (size_t r = 0; r < cfg->apps[i].n_ports; r++)
				ports += (size_t)cfg->apps[i].ports[r].hi - cfg->apps[i].ports[r].lo + 1;
		printf("%s: valid: %zu apps, %zu ports\n", o.config ? o.config : "quick mode",
		       cfg->n_apps, ports);
		cfg_free(cfg);
		return 0;
	}
	log_threshold = cfg->log_level;
	if (o.log_level && log_level_parse(o.log_level, &log_threshold) < 0) {
		fprintf(stderr, "pandit: unknown log level \"%s\"\n", o.log_level);
		cfg_free(cfg);
		return 2;
	}
	if (o.log_level)
		cfg->log_level = log_threshold;
	uint32_t n_workers = o.workers >= 0 ? (uint32_t)o.workers : cfg->workers;
	if (n_workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		n_workers = n > 0 ? (uint32_t)n : 1;
	}
	const char *user = o.user_set ? o.user : cfg->user;
	if (user && !*user)
		user = NULL;

	unsigned long nofile = priv_raise_nofile();
	if (control_block_signals() < 0)
		return 1;
	stats_global.started_ns = (uint64_t)time(NULL) * 1000000000ull;

	rc = 1;
	int *fds = calloc(n_workers, sizeof(int));
	struct worker *workers = calloc(n_workers, sizeof(*workers));
	struct steer *steer = NULL;
	struct rt_snapshot *snap = NULL;
	struct control ctl;
	bool ctl_ready = false;
	int admin_fd = -1;
	struct admin *admin = NULL;
	uint32_t started = 0, inited = 0;
	if (!fds || !workers)
		goto out;
	if (target_registry_init(&cfg->health, cfg->resolve_interval_ms) < 0)
		goto out;
	if (listener_group_open(n_workers, fds) < 0)
		goto out;
	if (rt_snapshot_build(cfg, NULL, NULL, &snap) < 0) {
		log_err("out of memory building the runtime config");
		cfg_free(cfg);
		goto out;
	}
	cfg = snap->cfg;
	if (steer_open(fds[0], &steer) < 0)
		goto out;
	struct steer_entry *entries;
	size_t n_entries;
	struct steer_sync_stats st;
	if (rt_steer_entries(snap, &entries, &n_entries) < 0)
		goto out;
	int err = steer_sync(steer, entries, n_entries, &st);
	free(entries);
	if (err < 0)
		goto out;
	/* The kernel splice path (bpf/splice.bpf.c) is loaded now, while root:
	 * afterwards only the map fds are used, which needs no capability.
	 * When the kernel refuses it, tcp apps relay in userspace. */
	uint64_t backlog_max = (uint64_t)cfg->buffer_size * 8;
	if (backlog_max < (4u << 20))
		backlog_max = 4u << 20;
	if (kpath_open(n_workers, backlog_max) < 0) {
		for (size_t i = 0; i < cfg->n_apps; i++) {
			if (cfg->apps[i].kernel_splice == CFG_KERNEL_ON) {
				log_err("app %s: kernel_splice is on, but the kernel refused the splice program: %s",
					cfg->apps[i].name, kpath_unavailable_reason());
				goto out;
			}
		}
	}
	/* The local short-circuit (bpf/shortcut.bpf.c) when a cgroup is
	 * configured: loaded and attached now, while root (also when no app
	 * uses it yet: a reload may add one, the cgroup needs a restart).
	 * When the kernel refuses it, connections take the splice or
	 * userspace path as without it. */
	if (cfg->shortcut_cgroup) {
		if (shortcut_open(cfg->shortcut_cgroup, cfg->shortcut_backlog) < 0)
			log_warn("local short-circuit off, connections take the splice or userspace path: %s",
				 shortcut_unavailable_reason());
		else
			log_info("local short-circuit attached to %s", cfg->shortcut_cgroup);
	}
	for (; inited < n_workers; inited++)
	{
		if (worker_init(&workers[inited], inited, fds[inited], cfg->buffer_size, cfg->splice, snap) < 0)
			goto out;
		workers[inited].loop.busy_poll_ns = (uint64_t)o.busy_poll_us * 1000;
	}
	if (control_init(&ctl, o.config, rt_snapshot_get(snap), steer, workers, n_workers) < 0)
		goto out;
	ctl_ready = true;
	atomic_store(&stats_global.generation, snap->generation);
	if (cfg->admin_len) {
		admin_fd = admin_listen((const struct sockaddr *)&cfg->admin, cfg->admin_len);
		if (admin_fd < 0)
			goto out;
	}

	if (user && priv_drop(user) < 0)
		goto out;
	if (!user)
		log_warn("not switching user: running with root privileges");

	if (target_threads_start() < 0)
		goto out;
	if (admin_fd >= 0) {
		struct admin_source src = {
			.snapshot_get = admin_snapshot_get,
			.snapshot_put = rt_snapshot_put,
			.steer_counters = admin_steer_counters,
			.ctx = &ctl,
		};
		int fd = admin_fd;
		admin_fd = -1;	/* admin_start owns it, also on failure */
		if (admin_start(fd, &src, NULL, &admin) < 0)
			goto out;
	}
	for (; started < n_workers; started++)
		if (worker_start(&workers[started]) < 0)
			goto out;
	log_info("pandit %s: %zu apps, %zu steering entries, %u workers, fd limit %lu", PANDIT_VERSION,
		 cfg->n_apps, snap->n_ports, n_workers, nofile);
	rt_snapshot_put(snap);
	snap = NULL;
	rc = control_run(&ctl) < 0 ? 1 : 0;
out:
	if (admin)
		admin_stop(admin);
	if (admin_fd >= 0)
		close(admin_fd);
	for (uint32_t i = 0; i < started; i++)
		worker_stop(&workers[i]);
	target_threads_stop();
	if (ctl_ready)
		control_destroy(&ctl);
	if (steer)
		steer_close(steer);
	kpath_close();
	shortcut_close();
	if (snap)
		rt_snapshot_put(snap);
	if (fds)
		listener_group_close(n_workers, fds);
	free(fds);
	free(workers);
	return rc;
}
