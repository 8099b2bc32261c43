/* diff.c - compares two configs app by app (keyed by name) in linear time: by position while names line up, else with a hash table. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/diff.h"

static uint64_t hash_name(const char *s)
{
	uint64_t h = 1469598103934665603ull;	/* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

void cfg_diff_free(struct cfg_diff *d)
{
	if (!d)
		return;
	free(d->added);
	free(d->removed);
	free(d->changed);
	free(d->unchanged);
	memset(d, 0, sizeof(*d));
}

/* The hash table of old's names: slot[h] = old app index + 1, 0 = empty;
 * the first of duplicate names wins. */
static int hash_old(const struct cfg *old, size_t n_old, size_t cap, uint32_t **out)
{
	uint32_t *slot = calloc(cap, sizeof(*slot));
	if (!slot)
		return -ENOMEM;
	for (size_t i = 0; i < n_old; i++) {
		const char *name = old->apps[i].name ? old->apps[i].name : "";
		for (size_t h = hash_name(name) & (cap - 1);; h = (h + 1) & (cap - 1)) {
			if (!slot[h]) {
				slot[h] = (uint32_t)i + 1;
				break;
			}
			const char *o = old->apps[slot[h] - 1].name;
			if (strcmp(o ? o : "", name) == 0)
				break;
		}
	}
	*out = slot;
	return 0;
}

/* Finds new app j among old's by name and files it. */
static void pair_by_name(const struct cfg *old, const struct cfg *new, size_t j, const uint32_t *slot,
			 size_t cap, bool *matched, struct cfg_diff *out)
{
	const char *name = new->apps[j].name ? new->apps[j].name : "";
	size_t found = SIZE_MAX;
	for (size_t h = hash_name(name) & (cap - 1); slot[h]; h = (h + 1) & (cap - 1)) {
		const char *o = old->apps[slot[h] - 1].name;
		if (strcmp(o ? o : "", name) == 0) {
			found = slot[h] - 1;
			break;
		}
	}
	if (found == SIZE_MAX || matched[found]) {
		out->added[out->n_added++] = j;
		return;
	}
	matched[found] = true;
	struct cfg_pair p = { found, j };
	if (cfg_app_equal(&old->apps[found], &new->apps[j]))
		out->unchanged[out->n_unchanged++] = p;
	else
		out->changed[out->n_changed++] = p;
}

int cfg_diff(const struct cfg *old, const struct cfg *new, struct cfg_diff *out)
{
	size_t n_old = old ? old->n_apps : 0, n_new = new ? new->n_apps : 0;
	size_t cap = 16;
	uint32_t *slot = NULL;	/* old app index + 1, 0 = empty */
	bool *matched = NULL;

	memset(out, 0, sizeof(*out));
	while (cap < n_old * 2)
		cap *= 2;
	matched = calloc(n_old ? n_old : 1, sizeof(*matched));
	out->added = malloc((n_new ? n_new : 1) * sizeof(*out->added));
	out->removed = malloc((n_old ? n_old : 1) * sizeof(*out->removed));
	out->changed = malloc((n_new ? n_new : 1) * sizeof(*out->changed));
	out->unchanged = malloc((n_new ? n_new : 1) * sizeof(*out->unchanged));
	if (!matched || !out->added || !out->removed || !out->changed || !out->unchanged)
		goto nomem;

	/* With unique names on both sides (validated configs) an app found at
	 * the same position under the same name is its own match: a reload
	 * usually keeps the order, and pairing by position skips the hash
	 * table (whose random probes are most of the cost). The table is
	 * built at the first app that is not where it was. */
	bool positional = old && new && old->names_unique && new->names_unique;

	/* names are unique within a validated config; should a duplicate slip
	 * in, the first one wins and the other counts as removed/added */
	for (size_t j = 0; j < n_new; j++) {
		if (positional && j < n_old && old->apps[j].name && new->apps[j].name &&
		    strcmp(old->apps[j].name, new->apps[j].name) == 0) {
			matched[j] = true;
			struct cfg_pair p = { j, j };
			if (cfg_app_equal(&old->apps[j], &new->apps[j]))
				out->unchanged[out->n_unchanged++] = p;
			else
				out->changed[out->n_changed++] = p;
			continue;
		}
		if (!slot && hash_old(old, n_old, cap, &slot) < 0)
			goto nomem;
		pair_by_name(old, new, j, slot, cap, matched, out);
	}
	for (size_t i = 0; i < n_old; i++)
		if (!matched[i])
			out->removed[out->n_removed++] = i;
	free(slot);
	free(matched);
	return 0;
nomem:
	free(slot);
	free(matched);
	cfg_diff_free(out);
	return -ENOMEM;
}
