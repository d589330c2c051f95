/*
 * The preload library's pure parts: the glob matcher that picks files and
 * the parser of the UMAPD_PRELOAD_* settings (lib/preload/config.c).
 */
#include <stdio.h>
#include <string.h>

#include "preload/preload.h"
#include "umapd_test.h"

static const char *const *env_table;

static const char *get(const char *name)
{
	size_t n = strlen(name);

	for (const char *const *e = env_table; e && *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

static void parse(const char *const *env, struct pre_config *c, int want, const char *why_has)
{
	char why[256];
	int ret;

	env_table = env;
	ret = pre_config_parse(c, get, why, sizeof(why));
	if (ret != want)
		t_fail("parse of %s: got %d, want %d (%s)", env[0] ? env[0] : "(empty)", ret, want, why);
	if (why_has && !strstr(why, why_has))
		t_fail("parse of %s: message \"%s\" does not name \"%s\"", env[0], why, why_has);
}

int main(void)
{
	static const struct {
		const char *pat, *path;
		bool match;
	} g[] = {
		{ "/data/*.db", "/data/a.db", true },
		{ "/data/*.db", "/data/.db", true },
		{ "/data/*.db", "/data/sub/a.db", false },   /* '*' stops at '/' */
		{ "/data/*.db", "/data/a.dbx", false },
		{ "/data/**", "/data/sub/deep/a.db", true },
		{ "/data/**/*.db", "/data/x/y/z.db", true },
		{ "/data/**/*.db", "/data/x/y/z.dbm", false },
		{ "/d/?.mdb", "/d/a.mdb", true },
		{ "/d/?.mdb", "/d/ab.mdb", false },
		{ "/d/?", "/d//", false },                   /* '?' is not '/' */
		{ "/d/[a-c]x", "/d/bx", true },
		{ "/d/[a-c]x", "/d/dx", false },
		{ "/d/[!a-c]x", "/d/dx", true },
		{ "/d/[^a-c]x", "/d/ax", false },
		{ "/d/[]]x", "/d/]x", true },
		{ "/d/[x", "/d/[x", true },                  /* unterminated class: literal */
		{ "/d/\\*", "/d/*", true },
		{ "/d/\\*", "/d/a", false },
		{ "/d/*a*b*c", "/d/xaybzc", true },
		{ "/d/*a*b*c", "/d/xaybz", false },
		{ "*", "/d", false },
		{ "**", "/any/thing", true },
		{ "/exact", "/exact", true },
		{ "/exact", "/exactly", false },
		{ "", "", true },
	};
	struct pre_config c;

	t_init("preload_config", 30);
	t_step("glob");
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
		if (pre_glob_match(g[i].pat, g[i].path) != g[i].match)
			t_fail("glob \"%s\" against \"%s\": got %d, want %d", g[i].pat, g[i].path, !g[i].match,
			       g[i].match);

	t_step("defaults");
	parse((const char *const[]){ NULL }, &c, 0, NULL);
	T_CHECK(c.npatterns == 0 && !c.heap && !c.log && c.stats_file[0] == '\0', "defaults: modes on");
	T_CHECK(c.min_size == PRE_DEFAULT_MIN && c.grow_step == PRE_DEFAULT_GROW &&
		c.heap_threshold == PRE_DEFAULT_HEAP_THRESHOLD, "defaults: sizes");

	t_step("full settings");
	parse((const char *const[]){ "UMAPD_PRELOAD_FILES=/data/*.db::/scratch/**:", "UMAPD_PRELOAD_MIN=64K",
				     "UMAPD_PRELOAD_GROW=2M", "UMAPD_PRELOAD_HEAP=1", "UMAPD_HEAP_THRESHOLD=4M",
				     "UMAPD_PRELOAD_LOG=1", "UMAPD_STATS_FILE=/tmp/s", NULL },
	      &c, 0, NULL);
	T_CHECK(c.npatterns == 2 && strcmp(c.patterns[0], "/data/*.db") == 0 &&
		strcmp(c.patterns[1], "/scratch/**") == 0, "patterns: got %zu", c.npatterns);
	T_CHECK(c.min_size == 64 << 10 && c.grow_step == 2 << 20 && c.heap_threshold == 4 << 20,
		"sizes: %llu %llu %llu", (unsigned long long)c.min_size, (unsigned long long)c.grow_step,
		(unsigned long long)c.heap_threshold);
	T_CHECK(c.heap && c.log && strcmp(c.stats_file, "/tmp/s") == 0, "flags");
	T_CHECK(pre_config_matches(&c, "/scratch/a/b") && pre_config_matches(&c, "/data/x.db") &&
		!pre_config_matches(&c, "/data/x.mdb"), "matches");

	t_step("errors: each names its variable; modes go off");
	parse((const char *const[]){ "UMAPD_PRELOAD_FILES=data/*.db", NULL }, &c, -EINVAL, "UMAPD_PRELOAD_FILES");
	parse((const char *const[]){ "UMAPD_PRELOAD_MIN=12Q", NULL }, &c, -EINVAL, "UMAPD_PRELOAD_MIN");
	parse((const char *const[]){ "UMAPD_PRELOAD_GROW=0", NULL }, &c, -EINVAL, "UMAPD_PRELOAD_GROW");
	parse((const char *const[]){ "UMAPD_PRELOAD_HEAP=yes", NULL }, &c, -EINVAL, "UMAPD_PRELOAD_HEAP");
	parse((const char *const[]){ "UMAPD_HEAP_THRESHOLD=-1", NULL }, &c, -EINVAL, "UMAPD_HEAP_THRESHOLD");
	parse((const char *const[]){ "UMAPD_PRELOAD_LOG=2", NULL }, &c, -EINVAL, "UMAPD_PRELOAD_LOG");
	parse((const char *const[]){ "UMAPD_PRELOAD_FILES=/a/*", "UMAPD_PRELOAD_HEAP=1",
				     "UMAPD_PRELOAD_MIN=x", NULL },
	      &c, -EINVAL, "UMAPD_PRELOAD_MIN");
	T_CHECK(c.npatterns == 0 && !c.heap, "after an error file and heap mode must be off");
	t_pass("%zu glob cases, defaults, every setting, 7 invalid settings named", sizeof(g) / sizeof(g[0]));
}
