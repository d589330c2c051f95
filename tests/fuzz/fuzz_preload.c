/*
 * fuzz_preload - the preload library's settings and glob matcher
 * (lib/preload/config.c: pre_config_parse, pre_glob_match), which read
 * UMAPD_PRELOAD_* from the environment of any program run under
 * libumapd-preload.so.
 *
 * Input: lines "NAME=value" (the environment the parser sees) up to an
 * empty line, then a glob pattern line and a path line.  Properties,
 * besides not crashing or running away (libFuzzer -timeout catches
 * exponential matching):
 *  - a refused environment explains itself and leaves file and heap mode off;
 *  - an accepted one has at most PRE_MAX_PATTERNS patterns, each inside
 *    the configuration's own buffer;
 *  - a pattern without special characters matches exactly itself;
 *  - "**" matches every path, "*" every path without '/'.
 */
#include <preload/preload.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VARS 16
static char *var_name[MAX_VARS], *var_value[MAX_VARS];
static int nvars;

static const char *get(const char *name)
{
	for (int i = 0; i < nvars; i++)
		if (strcmp(var_name[i], name) == 0)
			return var_value[i];
	return NULL;
}

static int plain(const char *s)
{
	return strpbrk(s, "*?[\\") == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size + 1);
	if (!in)
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';

	/* The environment. */
	char *line = in, *next;
	nvars = 0;
	for (; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (line[0] == '\0')
			break;
		char *eq = strchr(line, '=');
		if (!eq || nvars == MAX_VARS)
			continue;
		*eq = '\0';
		var_name[nvars] = line;
		var_value[nvars++] = eq + 1;
	}
	static struct pre_config c;
	char why[256];
	why[0] = '\0';
	int ret = pre_config_parse(&c, get, why, sizeof(why));
	if (ret < 0) {
		if (why[0] == '\0' || c.npatterns != 0 || c.heap)
			abort();
	} else {
		if (c.npatterns > PRE_MAX_PATTERNS)
			abort();
		for (size_t i = 0; i < c.npatterns; i++)
			if (c.patterns[i] < c.patterns_buf || c.patterns[i] >= c.patterns_buf + sizeof(c.patterns_buf))
				abort();
	}

	/* A pattern and a path. */
	const char *pattern = next ? next : "", *path = "";
	if (next && (next = strchr(next, '\n')) != NULL) {
		*next++ = '\0';
		path = next;
		char *nl = strchr(next, '\n');
		if (nl)
			*nl = '\0';
	}
	int m = pre_glob_match(pattern, path);
	if (plain(pattern) && m != (strcmp(pattern, path) == 0)) {
		fprintf(stderr, "plain pattern \"%s\" against \"%s\": %d\n", pattern, path, m);
		abort();
	}
	if (plain(path) && !pre_glob_match(path, path))
		abort();
	if (!pre_glob_match("**", path))
		abort();
	if (pre_glob_match("*", path) != (strchr(path, '/') == NULL)) {
		fprintf(stderr, "\"*\" against \"%s\": %d\n", path, pre_glob_match("*", path));
		abort();
	}
	if (ret == 0)
		(void)pre_config_matches(&c, path);
	free(in);
	return 0;
}
