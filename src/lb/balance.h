/* balance.h - picks a target of an app for a new connection (round robin, random, least connections). */
#ifndef PANDIT_BALANCE_H
#define PANDIT_BALANCE_H

#include <stdint.h>

#include "runtime/runtime.h"

/* Bitmap of target indices already tried by one connection. */
#define LB_TRIED_WORDS (CFG_MAX_TARGETS_PER_APP / 64)
struct lb_tried {
	uint64_t w[LB_TRIED_WORDS];
};

/* Returns the index of the target to try next: usable at now_ns
 * (target_usable) and not yet in tried, chosen by the app's policy; or -1
 * when no target is left. Thread-safe; never blocks. */
int lb_pick(struct rt_app *app, const struct lb_tried *tried, uint64_t now_ns);

/* The same over app->targets[first, first + n) with the given policy and
 * round robin cursor (NULL: the app's): an http cluster. Returns an index
 * into app->targets, or -1. */
int lb_pick_range(struct rt_app *app, uint32_t first, uint32_t n, enum lb_policy policy,
		  _Atomic uint32_t *cursor, const struct lb_tried *tried, uint64_t now_ns);

static inline void lb_tried_set(struct lb_tried *t, uint32_t i)
{
	t->w[i / 64] |= 1ull << (i % 64);
}

static inline int lb_tried_has(const struct lb_tried *t, uint32_t i)
{
	return (t->w[i / 64] >> (i % 64)) & 1;
}

#endif
