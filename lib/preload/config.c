/*
 * The preload library's settings and its glob matcher.  Pure functions:
 * no allocation (they run inside mmap() and malloc() of the program), no
 * global state, so the unit test drives them with a table of variables.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/config.h"
#include "preload/preload.h"

/* One character class "[...]" at p (just past '['): does c belong?  *end
 * gets the character after ']', or NULL for a class without ']' (which
 * the caller then takes as a literal '['). */
static bool class_match(const char *p, char c, const char **end)
{
	bool neg = false, hit = false;
	const char *q = p;

	if (*q == '!' || *q == '^') {
		neg = true;
		q++;
	}
	/* A ']' first in the set is a member, not the end. */
	for (bool first = true; *q && (first || *q != ']'); first = false) {
		char lo, hi;

		if (*q == '\\' && q[1])
			q++;
		lo = hi = *q++;
		if (*q == '-' && q[1] && q[1] != ']') {
			if (q[1] == '\\' && q[2])
				q++;
			hi = q[1];
			q += 2;
		}
		if (c >= lo && c <= hi)
			hit = true;
	}
	if (*q != ']') {
		*end = NULL;
		return false;
	}
	*end = q + 1;
	return hit != neg;
}

bool pre_glob_match(const char *pat, const char *s)
{
	/* Iterative with two backtrack points, as shells do: on a mismatch
	 * the last single star swallows one more character (never a '/'),
	 * and when it cannot, the last "**" does (anything). */
	const char *star_p = NULL, *star_s = NULL, *dstar_p = NULL, *dstar_s = NULL;

	for (;;) {
		const char *next = pat + 1;
		bool ok;

		if (*pat == '*') {
			bool dbl = pat[1] == '*';

			while (*pat == '*')
				pat++;
			if (dbl) {
				dstar_p = pat;
				dstar_s = s;
				star_p = NULL;
			} else {
				star_p = pat;
				star_s = s;
			}
			continue;
		}
		if (*s == '\0') {
			if (*pat == '\0')
				return true;
			goto backtrack;
		}
		switch (*pat) {
		case '\0':
			goto backtrack;
		case '?':
			ok = *s != '/';
			break;
		case '[': {
			const char *end;
			bool hit = class_match(pat + 1, *s, &end);

			if (end) {
				ok = hit && *s != '/';
				next = end;
			} else {
				ok = *s == '[';
			}
			break;
		}
		case '\\':
			if (pat[1]) {
				ok = pat[1] == *s;
				next = pat + 2;
				break;
			}
			/* a trailing backslash is itself */
			/* fall through */
		default:
			ok = *pat == *s;
		}
		if (ok) {
			pat = next;
			s++;
			continue;
		}
backtrack:
		if (star_p && *star_s && *star_s != '/') {
			s = ++star_s;
			pat = star_p;
		} else if (dstar_p && *dstar_s) {
			s = ++dstar_s;
			pat = dstar_p;
			star_p = NULL;
		} else {
			return false;
		}
	}
}

bool pre_config_matches(const struct pre_config *c, const char *path)
{
	for (size_t i = 0; i < c->npatterns; i++)
		if (pre_glob_match(c->patterns[i], path))
			return true;
	return false;
}

static int bad(char *why, size_t whylen, const char *name, const char *value, const char *form)
{
	if (why)
		snprintf(why, whylen, "%s=\"%s\" is invalid: expected %s", name, value, form);
	return -EINVAL;
}

static int parse_bool(const char *v, bool *out)
{
	if (strcmp(v, "0") == 0 || strcmp(v, "") == 0) {
		*out = false;
		return 0;
	}
	if (strcmp(v, "1") == 0) {
		*out = true;
		return 0;
	}
	return -EINVAL;
}

static int parse_patterns(struct pre_config *c, const char *v, char *why, size_t whylen)
{
	const char *name = "UMAPD_PRELOAD_FILES";
	const char *form = "':'-separated absolute glob patterns, e.g. '/data/*.db:/scratch/**'";
	size_t len = strlen(v);
	char *p;

	if (len >= sizeof(c->patterns_buf))
		return bad(why, whylen, name, "...", "at most 4095 characters of patterns");
	memcpy(c->patterns_buf, v, len + 1);
	for (p = c->patterns_buf; *p;) {
		char *sep = strchr(p, ':');

		if (sep)
			*sep = '\0';
		if (*p) {
			if (*p != '/')
				return bad(why, whylen, name, v, form);
			if (c->npatterns == PRE_MAX_PATTERNS)
				return bad(why, whylen, name, v, "at most 32 patterns");
			c->patterns[c->npatterns++] = p;
		}
		if (!sep)
			break;
		p = sep + 1;
	}
	return 0;
}

int pre_config_parse(struct pre_config *c, const char *(*get)(const char *name), char *why,
		     size_t whylen)
{
	static const char size_form[] = "bytes with an optional K/M/G/T suffix (e.g. 1M)";
	const char *v;
	bool b;
	int ret = 0;

	memset(c, 0, sizeof(*c));
	c->min_size = PRE_DEFAULT_MIN;
	c->grow_step = PRE_DEFAULT_GROW;
	c->heap_threshold = PRE_DEFAULT_HEAP_THRESHOLD;
	if (why && whylen)
		why[0] = '\0';

	if ((v = get("UMAPD_PRELOAD_LOG")) && parse_bool(v, &c->log) < 0) {
		c->log = false;
		ret = bad(why, whylen, "UMAPD_PRELOAD_LOG", v, "0 or 1");
		goto fail;
	}
	if ((v = get("UMAPD_PRELOAD_FILES")) && (ret = parse_patterns(c, v, why, whylen)) < 0)
		goto fail;
	if ((v = get("UMAPD_PRELOAD_MIN")) && cfg_parse_size(v, false, &c->min_size) < 0) {
		ret = bad(why, whylen, "UMAPD_PRELOAD_MIN", v, size_form);
		goto fail;
	}
	if ((v = get("UMAPD_PRELOAD_GROW")) &&
	    (cfg_parse_size(v, false, &c->grow_step) < 0 || c->grow_step == 0)) {
		ret = bad(why, whylen, "UMAPD_PRELOAD_GROW", v, "a size above 0: bytes with an optional K/M/G/T suffix");
		goto fail;
	}
	if ((v = get("UMAPD_PRELOAD_HEAP"))) {
		if (parse_bool(v, &b) < 0) {
			ret = bad(why, whylen, "UMAPD_PRELOAD_HEAP", v, "0 or 1");
			goto fail;
		}
		c->heap = b;
	}
	if ((v = get("UMAPD_HEAP_THRESHOLD")) && cfg_parse_size(v, false, &c->heap_threshold) < 0) {
		ret = bad(why, whylen, "UMAPD_HEAP_THRESHOLD", v, size_form);
		goto fail;
	}
	if ((v = get("UMAPD_STATS_FILE"))) {
		if (strlen(v) >= sizeof(c->stats_file)) {
			ret = bad(why, whylen, "UMAPD_STATS_FILE", "...", "a path shorter than 4096 bytes");
			goto fail;
		}
		strcpy(c->stats_file, v);
	}
	return 0;

fail:
	/* Unpaged, but still logging and writing statistics if asked to. */
	c->npatterns = 0;
	c->heap = false;
	return ret;
}
