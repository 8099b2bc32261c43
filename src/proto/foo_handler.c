/* foo_handler.c - the Foo protocol as a watcher of the L4 relay: frames, counts, applies the strict/lenient policy. */
#include "proto/foo_stats.h"
#include "proto/proto.h"

#include "core/log.h"
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

const struct proto_handler proto_foo = {
	.name = "foo",
	.watch_new = foo_watch_new,
	.watch = foo_watch,
	.watch_free = foo_watch_free,
};
