/* control.h - the control thread: signals, config file watching, reloads applied as diffs. */
#ifndef PANDIT_CONTROL_H
#define PANDIT_CONTROL_H

#include <pthread.h>
#include <stdint.h>

#include "core/ev.h"
#include "proxy/worker.h"
#include "runtime/runtime.h"
#include "steer/steer.h"

struct control {
	struct ev_loop loop;
	const char *config_path;	/* NULL in quick mode: nothing to reload */
	struct steer *steer;
	struct worker *workers;
	uint32_t n_workers;
	pthread_mutex_t snap_lock;	/* guards snap for other threads' readers */
	struct rt_snapshot *snap;	/* in force */
	struct ev_io sig_io;
	struct ev_io ino_io;		/* inotify on the config file's directory */
	char *watch_name;		/* the config file's name inside it */
	int exit_code;
};

/* Blocks the signals the control thread takes through a signalfd; call
 * before starting any thread so that every thread inherits the mask. */
int control_block_signals(void);

/* Sets up the loop, the signalfd and the inotify watch (before dropping
 * privileges). snap is taken over. Returns 0 or a negative errno. */
int control_init(struct control *c, const char *config_path, struct rt_snapshot *snap,
		 struct steer *steer, struct worker *workers, uint32_t n_workers);

/* Runs until SIGTERM or SIGINT. */
int control_run(struct control *c);
void control_destroy(struct control *c);

/* Loads the config file again and applies what changed. Returns 0 or a
 * negative errno (the old config stays in force). */
int control_reload(struct control *c, const char *why);

/* A referenced snapshot in force, for readers on other threads. */
struct rt_snapshot *control_snapshot(struct control *c);

/* Prints the statistics as one JSON line to stdout. */
void control_print_stats(struct control *c);

#endif
