/*
 * UMap's environment variables, mapped onto umapd's settings.
 *
 * UMap reads its variables when its runtime starts; umapd's compat layer
 * does the same at the first umap*() call, by translating each UMAP_* value
 * into the UMAPD_* setting with the same meaning and handing it to
 * umapd_config_set().  A UMAPD_* variable present in the environment was
 * set on purpose for umapd, so it wins and its UMAP_* twin is left alone.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "umap/compat.h"
#include "umapd.h"
#include "util/log.h"

#define DEFAULT_MAX_FAULT_EVENTS 256

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static int env_result;
static uint64_t max_fault_events = DEFAULT_MAX_FAULT_EVENTS;

/* A decimal integer in [lo, hi] with nothing after it; -EINVAL otherwise. */
static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	unsigned long long v;

	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	while (isspace((unsigned char)*end))
		end++;
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int bad(const char *name, const char *value, const char *form)
{
	ulog_error("%s=\"%s\" is invalid: expected %s", name, value, form);
	return -EINVAL;
}

/* The UMAP_* value to apply, or NULL when unset or overridden by UMAPD_*. */
static const char *umap_var(const char *name, const char *umapd_name)
{
	const char *v = getenv(name);

	if (!v)
		return NULL;
	if (umapd_name && getenv(umapd_name)) {
		ulog_info("%s ignored: %s is set and wins", name, umapd_name);
		return NULL;
	}
	return v;
}

/* umapd_config_set; a thread count after start is kept as it is. */
static int set(const char *umap_name, const char *umapd_name, const char *value)
{
	if (umapd_config_set(umapd_name, value) == 0)
		return 0;
	if (errno == EBUSY) {
		ulog_warn("%s ignored: the engine has already started, %s cannot change now",
			  umap_name, umapd_name);
		return 0;
	}
	ulog_error("%s: umapd cannot use \"%s\" as %s", umap_name, value, umapd_name);
	return -EINVAL;
}

static int apply_log_level(void)
{
	static const char *const names[][2] = {
		{ "ERROR", "error" }, { "WARNING", "warn" }, { "WARN", "warn" },
		{ "INFO", "info" },   { "DEBUG", "debug" },
	};
	const char *v = umap_var("UMAP_LOG_LEVEL", "UMAPD_LOG_LEVEL");

	if (!v)
		return 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcasecmp(v, names[i][0]))
			return set("UMAP_LOG_LEVEL", "UMAPD_LOG_LEVEL", names[i][1]);
	if (v[0] >= '0' && v[0] <= '3' && !v[1])
		return set("UMAP_LOG_LEVEL", "UMAPD_LOG_LEVEL", v);
	return bad("UMAP_LOG_LEVEL", v, "ERROR, WARNING, INFO or DEBUG");
}

static int apply_page_size(void)
{
	const char *v = umap_var("UMAP_PAGESIZE", "UMAPD_PAGESIZE");
	uint64_t n;

	if (!v)
		return 0;
	if (parse_u64(v, 1, UINT64_MAX, &n) < 0)
		return bad("UMAP_PAGESIZE", v, "a page size in bytes");
	return set("UMAP_PAGESIZE", "UMAPD_PAGESIZE", v);
}

/* UMAP_BUFSIZE counts UMap pages; umapd's budget is in bytes. */
static int apply_bufsize(void)
{
	const char *v = umap_var("UMAP_BUFSIZE", "UMAPD_BUFSIZE");
	char buf[32];
	uint64_t pages, psize;

	if (!v)
		return 0;
	if (parse_u64(v, 1, UINT64_MAX, &pages) < 0)
		return bad("UMAP_BUFSIZE", v, "a number of pages, at least 1");
	if (umapd_config_get("UMAPD_PAGESIZE", buf, sizeof(buf)) < 0)
		return -EINVAL;
	psize = strtoull(buf, NULL, 10);
	if (psize == 0 || pages > UINT64_MAX / psize)
		return bad("UMAP_BUFSIZE", v, "a number of pages whose bytes fit in 64 bits");
	snprintf(buf, sizeof(buf), "%" PRIu64, pages * psize);
	return set("UMAP_BUFSIZE", "UMAPD_BUFSIZE", buf);
}

/* Thread counts: UMap takes any positive number; umapd's limits clamp it. */
static int apply_threads(const char *name, const char *umapd_name, uint64_t max)
{
	const char *v = umap_var(name, umapd_name);
	char buf[24];
	uint64_t n;

	if (!v)
		return 0;
	if (parse_u64(v, 1, UINT64_MAX, &n) < 0)
		return bad(name, v, "a positive number of threads");
	if (n > max) {
		ulog_info("%s=%" PRIu64 ": umapd uses at most %" PRIu64, name, n, max);
		n = max;
	}
	snprintf(buf, sizeof(buf), "%" PRIu64, n);
	return set(name, umapd_name, buf);
}

static int apply_read_ahead(void)
{
	const char *v = umap_var("UMAP_READ_AHEAD", "UMAPD_READ_AHEAD");
	uint64_t n;

	if (!v)
		return 0;
	if (parse_u64(v, 0, 4096, &n) < 0)
		return bad("UMAP_READ_AHEAD", v, "a number of pages 0..4096");
	return set("UMAP_READ_AHEAD", "UMAPD_READ_AHEAD", v);
}

/*
 * Water marks: umapd checks high > low on every change, so the pair is set
 * through a state that is always valid (low to 0 first).
 */
static int apply_water_marks(void)
{
	const char *hv = umap_var("UMAP_EVICT_HIGH_WATER_THRESHOLD", "UMAPD_HIGH_WATER");
	const char *lv = umap_var("UMAP_EVICT_LOW_WATER_THRESHOLD", "UMAPD_LOW_WATER");
	char buf[24];
	uint64_t hi, lo;

	if (!hv && !lv)
		return 0;
	if (umapd_config_get("UMAPD_HIGH_WATER", buf, sizeof(buf)) < 0)
		return -EINVAL;
	hi = strtoull(buf, NULL, 10);
	if (umapd_config_get("UMAPD_LOW_WATER", buf, sizeof(buf)) < 0)
		return -EINVAL;
	lo = strtoull(buf, NULL, 10);
	if (hv && parse_u64(hv, 1, 100, &hi) < 0)
		return bad("UMAP_EVICT_HIGH_WATER_THRESHOLD", hv, "a percentage 1..100");
	if (lv && parse_u64(lv, 0, 99, &lo) < 0)
		return bad("UMAP_EVICT_LOW_WATER_THRESHOLD", lv, "a percentage 0..99");
	if (hi <= lo) {
		ulog_error("UMAP_EVICT_HIGH_WATER_THRESHOLD (%" PRIu64 ") must be greater than "
			   "UMAP_EVICT_LOW_WATER_THRESHOLD (%" PRIu64 ")", hi, lo);
		return -EINVAL;
	}
	if (set("UMAP_EVICT_LOW_WATER_THRESHOLD", "UMAPD_LOW_WATER", "0") < 0)
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%" PRIu64, hi);
	if (set("UMAP_EVICT_HIGH_WATER_THRESHOLD", "UMAPD_HIGH_WATER", buf) < 0)
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%" PRIu64, lo);
	return set("UMAP_EVICT_LOW_WATER_THRESHOLD", "UMAPD_LOW_WATER", buf);
}

/* Accepted for UMap's sake; umapd has no use for the value itself. */
static int apply_unused(void)
{
	const char *v = getenv("UMAP_MAX_FAULT_EVENTS");
	uint64_t n;

	if (v) {
		if (parse_u64(v, 1, UINT32_MAX, &n) < 0)
			return bad("UMAP_MAX_FAULT_EVENTS", v, "a positive number of events");
		max_fault_events = n;
	}
	v = getenv("UMAP_MONITOR_FREQ");
	if (v && parse_u64(v, 0, UINT32_MAX, &n) < 0)
		return bad("UMAP_MONITOR_FREQ", v, "a number of seconds (0: off)");
	if (v && n > 0)
		ulog_info("UMAP_MONITOR_FREQ=%s ignored: umapd has no monitor thread; "
			  "use umapd_stats()", v);
	return 0;
}

static void env_apply(void)
{
	/* The log level first, so what follows logs at the level asked for;
	 * the page size before the budget, which is counted in pages. */
	int (*const steps[])(void) = { apply_log_level, apply_page_size, apply_bufsize,
				       apply_read_ahead, apply_water_marks, apply_unused };

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		env_result = steps[i]();
		if (env_result < 0)
			return;
	}
	env_result = apply_threads("UMAP_PAGE_FILLERS", "UMAPD_FILLERS", 256);
	if (env_result == 0)
		env_result = apply_threads("UMAP_PAGE_EVICTORS", "UMAPD_EVICTORS", 64);
}

int compat_env_init(void)
{
	pthread_once(&env_once, env_apply);
	return env_result;
}

uint64_t compat_max_fault_events(void)
{
	compat_env_init();
	return max_fault_events;
}
