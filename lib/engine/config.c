#include "engine/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "probe/probe.h"
#include "store/store.h"
#include "util/log.h"

/* Every setting: its name and the sentence that says what it accepts. */
static const struct {
	const char *name;
	const char *form;
} settings[] = {
	{ "UMAPD_BUFSIZE", "bytes with an optional K/M/G/T suffix (e.g. 512M) or a percentage of memory (e.g. 50%), at least one page" },
	{ "UMAPD_PAGESIZE", "a power-of-two multiple of the system page size, in bytes with an optional K/M/G suffix, at most 1G" },
	{ "UMAPD_HIGH_WATER", "an integer percentage 1..100, greater than UMAPD_LOW_WATER" },
	{ "UMAPD_LOW_WATER", "an integer percentage 0..99, less than UMAPD_HIGH_WATER" },
	{ "UMAPD_FILLERS", "an integer 1..256" },
	{ "UMAPD_EVICTORS", "an integer 1..64" },
	{ "UMAPD_READ_AHEAD", "an integer number of pages 0.." CFG_STR(CFG_READ_AHEAD_MAX) },
	{ "UMAPD_LOG_LEVEL", "error, warn, info or debug (or 0..3)" },
	{ "UMAPD_EVICT_COPY", "auto, direct or bounce" },
	{ "UMAPD_FAULT_TIMEOUT", "an integer number of milliseconds 0..86400000 (0: off)" },
	{ "UMAPD_IO", "auto, io_uring, aio or psync" },
	{ "UMAPD_DIRECT_IO", "0 or 1" },
	{ "UMAPD_FAULT_INJECT", "a fault-injection spec such as write_error=EIO:0.01,enospc_after=1M (docs/stores.md), or empty" },
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

void cfg_defaults(struct eng_config *c)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	long psz = sysconf(_SC_PAGESIZE);

	c->bufsize = pages > 0 ? (uint64_t)pages * (uint64_t)psz / 2 : (uint64_t)1 << 30;
	c->page_size = (uint64_t)psz;
	c->high_water = 95;
	c->low_water = 85;
	c->fillers = 4;
	c->evictors = 1;
	c->read_ahead = CFG_READ_AHEAD_DEFAULT;
	c->log_level = ULOG_WARN;
	c->evict_copy = 0;
	c->fault_timeout_ms = 10000;
	c->io_engine = 0;
	c->direct_io = 0;
	c->fault_inject[0] = '\0';
}

static const char *const io_names[] = { "auto", "io_uring", "aio", "psync" };

static int find_setting(const char *name)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (strcmp(settings[i].name, name) == 0)
			return (int)i;
	return -1;
}

bool cfg_known(const char *name)
{
	return find_setting(name) >= 0;
}

/* Parse a whole decimal integer; no sign, no trailing junk. */
static int parse_uint(const char *s, uint64_t *out, const char **end)
{
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	*end = s;
	return 0;
}

int cfg_parse_size(const char *s, bool allow_percent, uint64_t *out)
{
	const char *end;
	uint64_t v, mult = 1;

	if (!s || parse_uint(s, &v, &end) < 0)
		return -EINVAL;
	if (*end == '%') {
		long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

		if (!allow_percent || end[1] != '\0' || v == 0 || v > 100 || pages <= 0)
			return -EINVAL;
		*out = (uint64_t)pages / 100 * v * (uint64_t)psz;
		return 0;
	}
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': mult = (uint64_t)1 << 10; end++; break;
	case 'm': case 'M': mult = (uint64_t)1 << 20; end++; break;
	case 'g': case 'G': mult = (uint64_t)1 << 30; end++; break;
	case 't': case 'T': mult = (uint64_t)1 << 40; end++; break;
	default: return -EINVAL;
	}
	if (mult > 1 && (strcmp(end, "B") == 0 || strcmp(end, "iB") == 0))
		end += strlen(end);
	if (*end != '\0' || v > UINT64_MAX / mult)
		return -EINVAL;
	*out = v * mult;
	return 0;
}

static int parse_range(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	const char *end;

	if (parse_uint(s, out, &end) < 0 || *end != '\0' || *out < lo || *out > hi)
		return -EINVAL;
	return 0;
}

static int parse_level(const char *s, int *out)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	uint64_t v;

	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	if (strcasecmp(s, "warning") == 0) {
		*out = ULOG_WARN;
		return 0;
	}
	if (parse_range(s, 0, 3, &v) < 0)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int set_one(struct eng_config *c, int which, const char *v)
{
	long sys = sysconf(_SC_PAGESIZE);
	uint64_t x;

	switch (which) {
	case 0:
		if (cfg_parse_size(v, true, &x) < 0 || x < (uint64_t)sys)
			return -EINVAL;
		c->bufsize = x;
		return 0;
	case 1:
		if (cfg_parse_size(v, false, &x) < 0 || x < (uint64_t)sys || x > ((uint64_t)1 << 30) ||
		    (x & (x - 1)) != 0)
			return -EINVAL;
		c->page_size = x;
		return 0;
	case 2:
		if (parse_range(v, 1, 100, &x) < 0 || x <= c->low_water)
			return -EINVAL;
		c->high_water = (unsigned)x;
		return 0;
	case 3:
		if (parse_range(v, 0, 99, &x) < 0 || x >= c->high_water)
			return -EINVAL;
		c->low_water = (unsigned)x;
		return 0;
	case 4:
		if (parse_range(v, 1, 256, &x) < 0)
			return -EINVAL;
		c->fillers = (unsigned)x;
		return 0;
	case 5:
		if (parse_range(v, 1, 64, &x) < 0)
			return -EINVAL;
		c->evictors = (unsigned)x;
		return 0;
	case 6:
		if (parse_range(v, 0, CFG_READ_AHEAD_MAX, &x) < 0)
			return -EINVAL;
		c->read_ahead = (long)x;
		return 0;
	case 7:
		return parse_level(v, &c->log_level);
	case 8: {
		int m = probe_evict_copy_parse(v, NULL, 0); /* "" and "auto" are auto, as there */

		if (m < 0)
			return -EINVAL;
		c->evict_copy = m;
		return 0;
	}
	case 9:
		if (parse_range(v, 0, 86400000, &x) < 0)
			return -EINVAL;
		c->fault_timeout_ms = (unsigned)x;
		return 0;
	case 10:
		for (int i = 0; i < 4; i++)
			if (strcasecmp(v, io_names[i]) == 0) {
				c->io_engine = i;
				return 0;
			}
		return -EINVAL;
	case 11:
		if (parse_range(v, 0, 1, &x) < 0)
			return -EINVAL;
		c->direct_io = (int)x;
		return 0;
	case 12: {
		struct inject_cfg ic;

		if (inject_parse(v, &ic, NULL, 0) < 0)
			return -EINVAL;
		snprintf(c->fault_inject, sizeof(c->fault_inject), "%s", v);
		return 0;
	}
	}
	return -EINVAL;
}

int cfg_set(struct eng_config *c, const char *name, const char *value, char *why, size_t whylen)
{
	int which = find_setting(name);

	if (which < 0) {
		if (why)
			snprintf(why, whylen, "%s is not a umapd setting", name);
		return -EINVAL;
	}
	if (set_one(c, which, value) < 0) {
		if (why && which == 12) { /* the parser says precisely what is wrong */
			char reason[200];
			struct inject_cfg ic;

			inject_parse(value, &ic, reason, sizeof(reason));
			snprintf(why, whylen, "%s=\"%.100s\" is invalid: %s (docs/stores.md)", name, value, reason);
		} else if (why)
			snprintf(why, whylen, "%s=\"%s\" is invalid: expected %s", name, value,
				 settings[which].form);
		return -EINVAL;
	}
	return 0;
}

int cfg_get(const struct eng_config *c, const char *name, char *buf, size_t buflen)
{
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	char tmp[300]; /* room for UMAPD_FAULT_INJECT */
	int n;

	switch (find_setting(name)) {
	case 0: n = snprintf(tmp, sizeof(tmp), "%" PRIu64, c->bufsize); break;
	case 1: n = snprintf(tmp, sizeof(tmp), "%" PRIu64, c->page_size); break;
	case 2: n = snprintf(tmp, sizeof(tmp), "%u", c->high_water); break;
	case 3: n = snprintf(tmp, sizeof(tmp), "%u", c->low_water); break;
	case 4: n = snprintf(tmp, sizeof(tmp), "%u", c->fillers); break;
	case 5: n = snprintf(tmp, sizeof(tmp), "%u", c->evictors); break;
	case 6: n = snprintf(tmp, sizeof(tmp), "%ld", c->read_ahead); break;
	case 7: n = snprintf(tmp, sizeof(tmp), "%s", levels[c->log_level]); break;
	case 8: n = snprintf(tmp, sizeof(tmp), "%s", c->evict_copy == UMAPD_EVICT_DIRECT ? "direct" :
						    c->evict_copy == UMAPD_EVICT_BOUNCE ? "bounce" : "auto"); break;
	case 9: n = snprintf(tmp, sizeof(tmp), "%u", c->fault_timeout_ms); break;
	case 10: n = snprintf(tmp, sizeof(tmp), "%s", io_names[c->io_engine]); break;
	case 11: n = snprintf(tmp, sizeof(tmp), "%d", c->direct_io); break;
	case 12: n = snprintf(tmp, sizeof(tmp), "%s", c->fault_inject); break;
	default: return -EINVAL;
	}
	if ((size_t)n + 1 > buflen)
		return -ERANGE;
	memcpy(buf, tmp, (size_t)n + 1);
	return n;
}

int cfg_from_env(struct eng_config *c)
{
	/* Water marks are checked against each other, so set them in an order
	 * that cannot fail on a valid pair: widen first, then narrow. */
	static const int order[] = { 0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	const char *hi = getenv("UMAPD_HIGH_WATER"), *lo = getenv("UMAPD_LOW_WATER");
	char why[256];

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		const char *name = settings[order[i]].name, *v = getenv(name);

		if (v && cfg_set(c, name, v, why, sizeof(why)) < 0) {
			ulog_error("%s", why);
			return -EINVAL;
		}
	}
	if (hi || lo) {
		struct eng_config t = *c;

		t.high_water = 100;
		t.low_water = 0;
		if ((hi && cfg_set(&t, "UMAPD_HIGH_WATER", hi, why, sizeof(why)) < 0) ||
		    (lo && cfg_set(&t, "UMAPD_LOW_WATER", lo, why, sizeof(why)) < 0)) {
			ulog_error("%s", why);
			return -EINVAL;
		}
		if (!hi)
			t.high_water = c->high_water;
		if (!lo)
			t.low_water = c->low_water;
		if (t.high_water <= t.low_water) {
			ulog_error("UMAPD_HIGH_WATER (%u) must be greater than UMAPD_LOW_WATER (%u)",
				   t.high_water, t.low_water);
			return -EINVAL;
		}
		c->high_water = t.high_water;
		c->low_water = t.low_water;
	}
	return 0;
}

int cfg_env_switch(const char *name)
{
	const char *v = getenv(name);

	if (!v || strcmp(v, "0") == 0)
		return 0;
	if (strcmp(v, "1") == 0)
		return 1;
	ulog_error("%s=\"%s\" is invalid: expected 0 or 1", name, v);
	return -EINVAL;
}
