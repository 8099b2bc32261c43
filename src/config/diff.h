/* diff.h - the difference between two configs, app by app, keyed by name. */
#ifndef PANDIT_CONFIG_DIFF_H
#define PANDIT_CONFIG_DIFF_H

#include "config/config.h"

struct cfg_pair {
	size_t old_i, new_i;
};

struct cfg_diff {
	size_t *added;		/* indices into new->apps */
	size_t n_added;
	size_t *removed;	/* indices into old->apps */
	size_t n_removed;
	struct cfg_pair *changed;	/* same name, different content */
	size_t n_changed;
	struct cfg_pair *unchanged;
	size_t n_unchanged;
};

/* Computes the diff; old may be NULL (everything added). Returns 0 or -ENOMEM. */
int cfg_diff(const struct cfg *old, const struct cfg *new, struct cfg_diff *out);
void cfg_diff_free(struct cfg_diff *d);

#endif
