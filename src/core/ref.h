/* ref.h - atomic reference counts shared by every refcounted object (snapshots, apps, counters). */
#ifndef PANDIT_REF_H
#define PANDIT_REF_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

static inline void ref_get(_Atomic uint32_t *r)
{
	atomic_fetch_add_explicit(r, 1, memory_order_relaxed);
}

/* Drops one reference; true when it was the last: the caller frees. The
 * acq_rel order makes every write made before the last put visible to the
 * thread that frees. */
static inline bool ref_put(_Atomic uint32_t *r)
{
	return atomic_fetch_sub_explicit(r, 1, memory_order_acq_rel) == 1;
}

#endif
