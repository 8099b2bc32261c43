/* fuzz_config.c - libFuzzer harness for the config loader: any bytes must load or be refused cleanly, with no leak. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/diff.h"
#include "config/internal.h"

/* Differential check: when a fast reader accepts the input, libyaml must
 * build the same tree. The block-YAML reader must never accept what
 * libyaml refuses; the JSON reader may (JSON allows tabs and long keys
 * where YAML does not). */
static void check_reader(const char *buf, size_t len, bool block)
{
	struct ytree a = { 0 }, b = { 0 };
	struct cfg_errors e = { 0 };
	if ((block ? ytree_parse_block(&a, buf, len) : ytree_parse_json(&a, buf, len)) != 0)
		return;
	int r = ytree_parse_yaml(&b, "f", buf, len, &e);
	if (r == -EINVAL && block)
		abort();
	if (r == 0) {
		if (a.n != b.n)
			abort();
		for (size_t i = 0; i < a.n; i++) {
			const struct ynode *x = &a.nodes[i], *y = &b.nodes[i];
			if (x->type != y->type || x->line != y->line || x->col != y->col ||
			    x->len != y->len || x->next != y->next)
				abort();
			if (x->type == Y_SCALAR ? (x->plain != y->plain ||
						   memcmp(ytree_str(&a, x), ytree_str(&b, y), x->len))
						: x->first != y->first)
				abort();
		}
	}
	ytree_free(&a);
	ytree_free(&b);
	cfg_errors_free(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg *cfg = NULL;
	struct cfg_errors errs = { 0 };
	int r = cfg_load_buffer("fuzz.yaml", (const char *)data, size, &cfg, &errs);
	if (r == 0) {
		/* a valid config must round-trip through the helpers */
		if (!cfg || errs.n)
			abort();
		struct cfg_diff d;
		if (cfg_diff(NULL, cfg, &d) == 0) {
			if (d.n_added != cfg->n_apps)
				abort();
			cfg_diff_free(&d);
		}
		if (cfg_diff(cfg, cfg, &d) == 0) {
			if (d.n_unchanged != cfg->n_apps)
				abort();
			cfg_diff_free(&d);
		}
		for (size_t i = 0; i < cfg->n_apps; i++) {
			struct cfg_app *a = cfg_app_dup(&cfg->apps[i]);
			if (a && !cfg_app_equal(a, &cfg->apps[i]))
				abort();
			if (!cfg->apps[i].n_ports || !cfg->apps[i].n_targets || !cfg->apps[i].name)
				abort();
			char buf[600];
			for (size_t t = 0; t < cfg->apps[i].n_targets; t++)
				cfg_target_format(&cfg->apps[i].targets[t], buf, sizeof(buf));
			cfg_app_free(a);
		}
	} else {
		/* refused: never without a reason, every reason with a position or file */
		if (cfg || (r == -EINVAL && errs.n == 0))
			abort();
		for (size_t i = 0; i < errs.n; i++)
			if (strncmp(errs.msgs[i], "fuzz.yaml:", 10) != 0)
				abort();
	}
	cfg_free(cfg);
	cfg_errors_free(&errs);
	check_reader((const char *)data, size, false);
	check_reader((const char *)data, size, true);
	return 0;
}
