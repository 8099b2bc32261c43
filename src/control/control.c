/* control.c - the control thread: signals, config file watching, reloads applied as diffs. */
#include "control/control.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "config/diff.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "lb/target.h"
#include "stats/stats.h"

static sigset_t control_sigset(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	return set;
}

int control_block_signals(void)
{
	/* a write to a closed socket must come back as EPIPE, not kill us */
	signal(SIGPIPE, SIG_IGN);
	sigset_t set = control_sigset();
	int err = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (err) {
		log_err("pthread_sigmask() failed: %s", strerror(err));
		return -err;
	}
	return 0;
}

struct rt_snapshot *control_snapshot(struct control *c)
{
	pthread_mutex_lock(&c->snap_lock);
	struct rt_snapshot *s = c->snap ? rt_snapshot_get(c->snap) : NULL;
	pthread_mutex_unlock(&c->snap_lock);
	return s;
}

void control_print_stats(struct control *c)
{
	struct rt_snapshot *snap = control_snapshot(c);
	struct steer_counters sc;
	bool have_sc = c->steer && steer_read_counters(c->steer, &sc) == 0;
	struct sbuf b;
	sbuf_init(&b);
	stats_render_json(&b, snap, have_sc ? &sc : NULL);
	sbuf_append(&b, "\n", 1);
	if (b.oom)
		log_err("out of memory rendering statistics");
	else {
		fwrite(b.data, 1, b.len, stdout);
		fflush(stdout);
	}
	sbuf_free(&b);
	rt_snapshot_put(snap);
}

/* Settings read only at start: say so when a reload changes them. */
static void warn_static_changes(const struct cfg *old, const struct cfg *new)
{
	if (old->admin_len != new->admin_len || memcmp(&old->admin, &new->admin, old->admin_len))
		log_warn("reload: a change of \"admin\" needs a restart; ignored");
	if ((old->user == NULL) != (new->user == NULL) ||
	    (old->user && strcmp(old->user, new->user)))
		log_warn("reload: a change of \"user\" needs a restart; ignored");
	if (old->workers != new->workers)
		log_warn("reload: a change of \"workers\" needs a restart; ignored");
	if (old->buffer_size != new->buffer_size)
		log_warn("reload: a change of \"buffer_size\" needs a restart; ignored");
	if (old->splice != new->splice)
		log_warn("reload: a change of \"splice\" needs a restart; ignored");
	if ((old->shortcut_cgroup == NULL) != (new->shortcut_cgroup == NULL) ||
	    (old->shortcut_cgroup && strcmp(old->shortcut_cgroup, new->shortcut_cgroup)))
		log_warn("reload: a change of \"shortcut_cgroup\" needs a restart; ignored");
	if (old->shortcut_backlog != new->shortcut_backlog)
		log_warn("reload: a change of \"shortcut_backlog\" needs a restart; ignored");
}

static int control_sync_kernel(struct control *c, struct rt_snapshot *snap,
			       struct steer_sync_stats *st)
{
	struct steer_entry *entries;
	size_t n;
	int err = rt_steer_entries(snap, &entries, &n);
	if (err)
		return err;
	err = steer_sync(c->steer, entries, n, st);
	free(entries);
	return err;
}

/* Brings the kernel from old's entries to snap's. When the steering maps
 * hold exactly old's entries (the last sync succeeded), only the entries
 * of the apps the diff names are written and deleted; else, or if that
 * fails or leaves another number of entries than snap has, everything is
 * synced. */
static int control_sync_delta(struct control *c, const struct rt_snapshot *old,
			      struct rt_snapshot *snap, const struct cfg_diff *diff,
			      struct steer_sync_stats *st)
{
	if (steer_in_sync(c->steer)) {
		struct steer_entry *add;
		struct pandit_steer_key *del;
		size_t na, nd;
		int err = rt_steer_delta(old, snap, diff, &add, &na, &del, &nd);
		if (err)
			return err;
		err = steer_apply(c->steer, add, na, del, nd, st);
		free(add);
		free(del);
		if (!err && steer_count(c->steer) == snap->n_ports)
			return 0;
		if (!err)
			log_warn("reload: %zu steering entries after a partial update, %zu wanted; syncing all",
				 steer_count(c->steer), snap->n_ports);
	}
	return control_sync_kernel(c, snap, st);
}

int control_reload(struct control *c, const char *why)
{
	if (!c->config_path) {
		log_info("reload (%s): no config file in quick mode", why);
		return 0;
	}
	uint64_t t0 = ev_now_ns();
	struct cfg *cfg = NULL;
	struct cfg_errors errs = { 0 };
	int err = cfg_load_file(c->config_path, &cfg, &errs);
	if (err) {
		log_err("reload (%s): %s refused, the running config stays in force:", why,
			c->config_path);
		for (size_t i = 0; i < errs.n; i++)
			log_err("  %s", errs.msgs[i]);
		if (!errs.n)
			log_err("  %s", strerror(-err));
		cfg_errors_free(&errs);
		stats_add(&stats_global.reloads_failed, 1);
		return err;
	}
	cfg_errors_free(&errs);
	struct rt_snapshot *old = c->snap;
	warn_static_changes(old->cfg, cfg);
	struct cfg_diff diff;
	if ((err = cfg_diff(old->cfg, cfg, &diff)) < 0) {
		cfg_free(cfg);
		goto oom;
	}
	log_threshold = cfg->log_level;
	target_registry_configure(&cfg->health, cfg->resolve_interval_ms);
	struct rt_snapshot *snap;
	if ((err = rt_snapshot_build(cfg, old, &diff, &snap)) < 0) {
		cfg_free(cfg);
		cfg_diff_free(&diff);
		goto oom;
	}
	uint64_t t_built = ev_now_ns();
	/* Workers first: a port the kernel starts steering must already be
	 * known to every worker. A port being removed is still served from the
	 * previous snapshot the workers keep. */
	workers_publish(c->workers, c->n_workers, snap);
	struct steer_sync_stats st = { 0 };
	err = control_sync_delta(c, old, snap, &diff, &st);
	if (err) {
		log_err("reload (%s): updating the steering maps failed (%s); going back to the running config",
			why, strerror(-err));
		workers_publish(c->workers, c->n_workers, old);
		if (control_sync_kernel(c, old, &st) < 0)
			log_err("restoring the steering maps failed: some ports may not be steered");
		rt_snapshot_put(snap);
		cfg_diff_free(&diff);
		stats_add(&stats_global.reloads_failed, 1);
		return err;
	}
	pthread_mutex_lock(&c->snap_lock);
	c->snap = snap;
	pthread_mutex_unlock(&c->snap_lock);
	rt_snapshot_put(old);
	uint64_t t1 = ev_now_ns();
	stats_add(&stats_global.reloads_ok, 1);
	atomic_store(&stats_global.last_reload_us, (t1 - t0) / 1000);
	atomic_store(&stats_global.generation, snap->generation);
	log_info("reload (%s): generation %llu: %zu added, %zu removed, %zu changed, %zu unchanged apps; "
		 "steering %zu deleted, %zu written, %zu kept; parse+build %.2f ms, apply %.2f ms",
		 why, (unsigned long long)snap->generation, diff.n_added, diff.n_removed,
		 diff.n_changed, diff.n_unchanged, st.deleted, st.updated, st.unchanged,
		 (double)(t_built - t0) / 1e6, (double)(t1 - t_built) / 1e6);
	cfg_diff_free(&diff);
	return 0;
oom:
	log_err("reload (%s): out of memory; the running config stays in force", why);
	stats_add(&stats_global.reloads_failed, 1);
	return -ENOMEM;
}

static void control_signal_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	(void)events;
	struct control *c = container_of(io, struct control, sig_io);
	struct signalfd_siginfo si;
	while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			control_reload(c, "SIGHUP");
			/* a rotated access log is picked up by every app, changed or not */
			rt_reopen_logs(c->snap);
			break;
		case SIGUSR1:
			control_print_stats(c);
			break;
		case SIGTERM:
		case SIGINT:
			log_info("%s: shutting down", strsignal((int)si.ssi_signo));
			loop->stop = true;
			break;
		}
	}
}

static void control_inotify_cb(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	(void)loop;
	(void)events;
	struct control *c = container_of(io, struct control, ino_io);
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool hit = false;
	for (;;) {
		ssize_t n = read(io->fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			if (ev->mask & IN_Q_OVERFLOW)
				hit = true;
			else if (ev->len && strcmp(ev->name, c->watch_name) == 0)
				hit = true;
			p += sizeof(*ev) + ev->len;
		}
	}
	/* one reload for a burst of events (write + rename, several writes) */
	if (hit)
		control_reload(c, "file changed");
}

int control_init(struct control *c, const char *config_path, struct rt_snapshot *snap,
		 struct steer *steer, struct worker *workers, uint32_t n_workers)
{
	memset(c, 0, sizeof(*c));
	c->config_path = config_path;
	c->snap = snap;
	c->steer = steer;
	c->workers = workers;
	c->n_workers = n_workers;
	c->sig_io.fd = c->ino_io.fd = -1;
	pthread_mutex_init(&c->snap_lock, NULL);
	int err = ev_init(&c->loop);
	if (err)
		return err;
	c->loop.data = c;
	sigset_t set = control_sigset();
	c->sig_io.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (c->sig_io.fd < 0) {
		err = -errno;
		log_err("signalfd() failed: %s", strerror(errno));
		return err;
	}
	c->sig_io.cb = control_signal_cb;
	if ((err = ev_add(&c->loop, &c->sig_io, EPOLLIN | EPOLLET)) < 0)
		return err;
	if (!config_path)
		return 0;
	/* Watch the directory, not the file: editors that save by writing a
	 * new file and renaming it over the old one replace the inode. */
	char *p1 = strdup(config_path), *p2 = strdup(config_path);
	if (!p1 || !p2) {
		free(p1);
		free(p2);
		return -ENOMEM;
	}
	c->watch_name = strdup(basename(p1));
	const char *dir = dirname(p2);
	c->ino_io.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (c->ino_io.fd < 0 || !c->watch_name) {
		err = c->watch_name ? -errno : -ENOMEM;
		log_err("inotify_init1() failed: %s", strerror(-err));
		goto out;
	}
	if (inotify_add_watch(c->ino_io.fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
		err = -errno;
		log_err("inotify_add_watch(%s) failed: %s", dir, strerror(errno));
		goto out;
	}
	c->ino_io.cb = control_inotify_cb;
	err = ev_add(&c->loop, &c->ino_io, EPOLLIN | EPOLLET);
out:
	free(p1);
	free(p2);
	return err;
}

int control_run(struct control *c)
{
	log_set_thread_name("ctl");
	return ev_run(&c->loop);
}

void control_destroy(struct control *c)
{
	if (c->sig_io.fd >= 0)
		close(c->sig_io.fd);
	if (c->ino_io.fd >= 0)
		close(c->ino_io.fd);
	free(c->watch_name);
	ev_destroy(&c->loop);
	rt_snapshot_put(c->snap);
	pthread_mutex_destroy(&c->snap_lock);
}
