/* foo_handler.c - the Foo protocol as a watcher of the L4 relay: frames, counts, applies the strict/lenient policy. */
#include "proto/foo_stats.h"

#include <stdlib.h>
#include <string.h>
#include "proto/proto.h"

#include "../../bpf/pandit_abi.h"
#include "core/log.h"
#include "kpath/foo_kern.h"
#include "runtime/runtime.h"

_Static_assert(FOO_DIR_C2S == PROTO_DIR_C2S && FOO_DIR_S2C == PROTO_DIR_S2C,
	       "Foo and the core agree on directions");

static void *foo_watch_new(struct rt_app *app)
{
	const struct cfg_foo *f = &app->cfg->foo;
	struct foo_conn *c = foo_conn_new(f->max_line, f->strict, app->foo);
	if (!c)
		log_warn("app %s: out of memory for the Foo parser: connection not counted",
			 app->cfg->name);
	return c;
}

static enum proto_verdict foo_watch(void *st, struct rt_app *app, int dir, const char *data,
				    size_t len, uint64_t now)
{
	struct foo_conn *c = st;
	int r = len ? foo_conn_data(c, app->foo, dir, data, len, now)
		    : foo_conn_eof(c, app->foo, dir, now);
	if (r == 0)
		return PROTO_CONTINUE;
	int side;
	enum foo_err e = foo_conn_error(c, &side);
	const char *who = side == FOO_DIR_C2S ? "client" : "server";
	if (!app->cfg->foo.strict) {
		log_debug("app %s: the %s broke the Foo protocol (%s): relayed on, no longer counted",
			  app->cfg->name, who, foo_err_name(e));
		return PROTO_UNWATCH;
	}
	log_info("app %s: the %s broke the Foo protocol (%s): closing the connection (strict policy)",
		 app->cfg->name, who, foo_err_name(e));
	/* at EOF there is nothing left to stop */
	return len ? PROTO_CLOSE : PROTO_UNWATCH;
}

static void foo_watch_free(void *st, struct rt_app *app)
{
	foo_conn_free(st, app->foo);
}

/* --- the kernel path: the splice program frames and counts (bpf/foo_frame.bpf.h) --- */

static bool foo_kern_enter(void *st, struct rt_app *app, struct kfoo_start *ks)
{
	struct foo_conn *c = st;
	uint32_t slot;
	if (foo_conn_failed(c) || kfoo_claim(app->foo, &slot) < 0)
		return false;
	memset(ks, 0, sizeof(*ks));
	for (int d = 0; d < 2; d++) {
		foo_parser_export(foo_conn_parser(c, d), &ks->dir[d]);
		ks->dir[d].slot = slot;
		ks->dir[d].mode = app->cfg->foo.strict ? PANDIT_FOO_STRICT : PANDIT_FOO_LENIENT;
	}
	/* the requests pending a reply go with it (usually none or a few) */
	uint64_t pending = foo_conn_pending(c);
	if (pending) {
		size_t max = pending < PANDIT_FOO_TRACK_MAX ? (size_t)pending : PANDIT_FOO_TRACK_MAX;
		if (!(ks->pend = calloc(max, sizeof(*ks->pend)))) {
			log_warn("app %s: out of memory: a Foo connection stays in userspace",
				 app->cfg->name);
			return false;
		}
		uint64_t in_pend, untracked;
		ks->track.used = foo_conn_export_pending(c, ks->pend, max, &in_pend, &untracked);
		ks->track.pending = in_pend;
		ks->track.untracked = untracked;
	}
	return true;
}

static void foo_kern_entered(void *st, struct rt_app *app, uint64_t client_cookie)
{
	(void)app;
	foo_conn_kernel_tracks(st, client_cookie);	/* the kernel's maps have them now */
}

static bool foo_kern_done(void *st, struct rt_app *app, const struct pandit_foo_track *t)
{
	(void)app;
	return foo_conn_kernel_done(st, t);
}

static enum proto_verdict foo_kern_back(void *st, struct rt_app *app, int dir,
					const struct pandit_foo_parse *k)
{
	struct foo_conn *c = st;
	if (foo_conn_failed(c))
		return PROTO_UNWATCH;
	foo_parser_import(foo_conn_parser(c, dir), k);
	if (k->state != PANDIT_FOO_ST_ERR) {
		if (!k->stop)
			return PROTO_CONTINUE;
		/* the program could not read an skb and stopped framing (it
		 * never should): the bytes flow on, uncounted */
		log_warn("app %s: the kernel stopped framing a Foo connection: no longer counted",
			 app->cfg->name);
		return PROTO_UNWATCH;
	}
	/* the program found a violation in the bytes (never at EOF): counted
	 * as the userspace parser counts one; strict, it drops the bytes
	 * until the connection is closed */
	bool strict = k->mode == PANDIT_FOO_STRICT;
	foo_conn_turn_noncompliant(c, app->foo, dir, strict);
	const char *who = dir == FOO_DIR_C2S ? "client" : "server";
	if (!strict) {
		log_debug("app %s: the %s broke the Foo protocol (%s): relayed on, no longer counted",
			  app->cfg->name, who, foo_err_name((enum foo_err)k->err));
		return PROTO_UNWATCH;
	}
	log_info("app %s: the %s broke the Foo protocol (%s): closing the connection (strict policy)",
		 app->cfg->name, who, foo_err_name((enum foo_err)k->err));
	return PROTO_CLOSE;
}

const struct proto_handler proto_foo = {
	.name = "foo",
	.watch_new = foo_watch_new,
	.watch = foo_watch,
	.watch_free = foo_watch_free,
	.kern_enter = foo_kern_enter,
	.kern_entered = foo_kern_entered,
	.kern_back = foo_kern_back,
	.kern_done = foo_kern_done,
};
