/*
 * cfg_parse - lib/engine/config: the size parser, every setting's accepted
 * and rejected forms, cross-field water-mark checks, formatting, and the
 * environment reader (in this process: cfg_from_env reads getenv each call).
 */
#include "umapd_test.h"
#include "engine/config.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int nchecks;

static void size_ok(const char *s, bool pct, uint64_t want)
{
	uint64_t v = 0;
	int rc = cfg_parse_size(s, pct, &v);
	if (rc != 0 || (want != UINT64_MAX && v != want))
		t_fail("cfg_parse_size(\"%s\", %d) = %d, %llu; want 0, %llu", s, pct, rc,
		       (unsigned long long)v, (unsigned long long)want);
	nchecks++;
}

static void size_bad(const char *s, bool pct)
{
	uint64_t v = 12345;
	int rc = cfg_parse_size(s, pct, &v);
	if (rc != -EINVAL)
		t_fail("cfg_parse_size(\"%s\", %d) = %d (value %llu), want -EINVAL", s ? s : "NULL", pct, rc,
		       (unsigned long long)v);
	nchecks++;
}

static void set_ok(struct eng_config *c, const char *name, const char *v, const char *want)
{
	char why[256] = "", buf[64];
	int rc = cfg_set(c, name, v, why, sizeof(why));
	if (rc != 0)
		t_fail("cfg_set(%s, \"%s\") = %d (%s), want 0", name, v, rc, why);
	rc = cfg_get(c, name, buf, sizeof(buf));
	if (rc < 0 || strcmp(buf, want) != 0 || (size_t)rc != strlen(want))
		t_fail("after cfg_set(%s, \"%s\"): cfg_get = %d \"%s\", want \"%s\"", name, v, rc,
		       rc >= 0 ? buf : "", want);
	nchecks++;
}

static void set_bad(struct eng_config *c, const char *name, const char *v)
{
	char why[256] = "";
	struct eng_config before = *c;
	int rc = cfg_set(c, name, v, why, sizeof(why));
	if (rc != -EINVAL)
		t_fail("cfg_set(%s, \"%s\") = %d, want -EINVAL", name, v, rc);
	if (strstr(why, name) == NULL)
		t_fail("cfg_set(%s, \"%s\"): the explanation does not name the variable: \"%s\"", name, v, why);
	if (memcmp(&before, c, sizeof(before)) != 0)
		t_fail("rejected cfg_set(%s, \"%s\") changed the configuration", name, v);
	nchecks++;
}

static void env_case(const char *const *env, int want_rc, const char *field, uint64_t want)
{
	static const char *const all[] = { "UMAPD_BUFSIZE", "UMAPD_PAGESIZE", "UMAPD_HIGH_WATER",
					   "UMAPD_LOW_WATER", "UMAPD_FILLERS", "UMAPD_EVICTORS",
					   "UMAPD_READ_AHEAD", "UMAPD_LOG_LEVEL" };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		unsetenv(all[i]);
	char desc[256] = "";
	for (int i = 0; env[i] != NULL; i++) {
		char tmp[128];
		snprintf(tmp, sizeof(tmp), "%s", env[i]);
		char *eq = strchr(tmp, '=');
		*eq = '\0';
		setenv(tmp, eq + 1, 1);
		strncat(desc, env[i], sizeof(desc) - strlen(desc) - 2);
		strcat(desc, " ");
	}
	t_step("cfg_from_env with %s", desc);
	struct eng_config c;
	cfg_defaults(&c);
	int old_level = ulog_get_level();
	ulog_set_level(ULOG_ERROR); /* the expected failures log one line each */
	int rc = cfg_from_env(&c);
	ulog_set_level(old_level);
	if (rc != want_rc)
		t_fail("cfg_from_env with %s= %d, want %d", desc, rc, want_rc);
	if (rc == 0 && field != NULL) {
		char buf[64], w[64];
		cfg_get(&c, field, buf, sizeof(buf));
		snprintf(w, sizeof(w), "%llu", (unsigned long long)want);
		if (strcmp(buf, w) != 0)
			t_fail("cfg_from_env with %s: %s = %s, want %s", desc, field, buf, w);
	}
	nchecks++;
}

int main(void)
{
	t_init("cfg_parse", 30);
	const uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);

	t_step("cfg_parse_size");
	size_ok("0", false, 0);
	size_ok("4096", false, 4096);
	size_ok("1K", false, 1024);
	size_ok("1k", false, 1024);
	size_ok("64M", false, 64ull << 20);
	size_ok("3G", false, 3ull << 30);
	size_ok("2T", false, 2ull << 40);
	size_ok("16KB", false, 16384);
	size_ok("16KiB", false, 16384);
	size_ok("50%", true, UINT64_MAX);
	size_ok("100%", true, UINT64_MAX);
	size_ok("18446744073709551615", false, UINT64_MAX);
	size_bad(NULL, true);
	size_bad("", true);
	size_bad("12Q", true);
	size_bad("-1", true);
	size_bad("+1", true);
	size_bad(" 1", true);
	size_bad("1 ", true);
	size_bad("1.5M", true);
	size_bad("M", true);
	size_bad("1MM", true);
	size_bad("1B", true); /* "B" only after a multiplier */
	size_bad("50%", false);
	size_bad("0%", true);
	size_bad("101%", true);
	size_bad("50%x", true);
	size_bad("18446744073709551616", false);
	size_bad("16777216T", false);
	uint64_t half = 0, full = 0;
	cfg_parse_size("50%", true, &half);
	cfg_parse_size("100%", true, &full);
	T_CHECK(half > 0 && full >= half && full - 2 * half < 2 * ps * 100,
		"50%% = %llu and 100%% = %llu of memory are not consistent", (unsigned long long)half,
		(unsigned long long)full);

	t_step("cfg_set / cfg_get");
	struct eng_config c;
	cfg_defaults(&c);
	char buf[64], pss[32];
	snprintf(pss, sizeof(pss), "%llu", (unsigned long long)ps);
	/* defaults as documented in umapd.h */
	T_CHECK(c.page_size == ps && c.high_water == 95 && c.low_water == 85 && c.fillers == 4 &&
			c.evictors == 1 && c.read_ahead == 2048 && c.log_level == ULOG_WARN && c.bufsize > 0,
		"defaults differ from umapd.h: page %llu high %u low %u fillers %u evictors %u ra %ld level %d",
		(unsigned long long)c.page_size, c.high_water, c.low_water, c.fillers, c.evictors,
		c.read_ahead, c.log_level);
	set_ok(&c, "UMAPD_BUFSIZE", "64M", "67108864");
	set_ok(&c, "UMAPD_BUFSIZE", pss, pss);
	set_bad(&c, "UMAPD_BUFSIZE", "1");
	set_bad(&c, "UMAPD_BUFSIZE", "12Q");
	set_ok(&c, "UMAPD_PAGESIZE", "2M", "2097152");
	set_ok(&c, "UMAPD_PAGESIZE", "1G", "1073741824");
	set_bad(&c, "UMAPD_PAGESIZE", "2G");
	set_bad(&c, "UMAPD_PAGESIZE", "12K");
	set_bad(&c, "UMAPD_PAGESIZE", "50%");
	set_ok(&c, "UMAPD_HIGH_WATER", "100", "100");
	set_ok(&c, "UMAPD_LOW_WATER", "0", "0");
	set_ok(&c, "UMAPD_LOW_WATER", "99", "99");
	set_bad(&c, "UMAPD_HIGH_WATER", "99");
	set_bad(&c, "UMAPD_HIGH_WATER", "0");
	set_bad(&c, "UMAPD_LOW_WATER", "100");
	set_ok(&c, "UMAPD_LOW_WATER", "10", "10");
	set_ok(&c, "UMAPD_HIGH_WATER", "11", "11");
	set_bad(&c, "UMAPD_LOW_WATER", "11");
	set_ok(&c, "UMAPD_FILLERS", "1", "1");
	set_ok(&c, "UMAPD_FILLERS", "256", "256");
	set_bad(&c, "UMAPD_FILLERS", "0");
	set_bad(&c, "UMAPD_FILLERS", "257");
	set_ok(&c, "UMAPD_EVICTORS", "64", "64");
	set_bad(&c, "UMAPD_EVICTORS", "65");
	set_bad(&c, "UMAPD_EVICTORS", "0");
	set_ok(&c, "UMAPD_READ_AHEAD", "0", "0");
	set_ok(&c, "UMAPD_READ_AHEAD", "4096", "4096");
	set_bad(&c, "UMAPD_READ_AHEAD", "4097");
	set_bad(&c, "UMAPD_READ_AHEAD", "-1");
	set_ok(&c, "UMAPD_LOG_LEVEL", "DEBUG", "debug");
	set_ok(&c, "UMAPD_LOG_LEVEL", "0", "error");
	set_ok(&c, "UMAPD_LOG_LEVEL", "info", "info");
	set_bad(&c, "UMAPD_LOG_LEVEL", "4");
	set_bad(&c, "UMAPD_LOG_LEVEL", "loud");
	set_bad(&c, "UMAPD_NOPE", "1");
	T_CHECK(!cfg_known("UMAPD_NOPE") && cfg_known("UMAPD_BUFSIZE") && !cfg_known("umapd_bufsize"),
		"cfg_known is wrong");
	T_CHECK(cfg_get(&c, "UMAPD_NOPE", buf, sizeof(buf)) == -EINVAL, "cfg_get of an unknown name");
	int n = cfg_get(&c, "UMAPD_FILLERS", buf, sizeof(buf));
	T_CHECK(n == 3, "cfg_get(UMAPD_FILLERS) = %d \"%s\", want 3 \"256\"", n, buf);
	T_CHECK(cfg_get(&c, "UMAPD_FILLERS", buf, 3) == -ERANGE, "cfg_get with no room for the NUL");
	T_CHECK(cfg_get(&c, "UMAPD_FILLERS", buf, 0) == -ERANGE, "cfg_get with buflen 0");
	T_CHECK(cfg_get(&c, "UMAPD_FILLERS", buf, 4) == 3 && strcmp(buf, "256") == 0,
		"cfg_get with exactly enough room");
	nchecks += 6;

	t_step("cfg_from_env");
	env_case((const char *const[]){ NULL }, 0, "UMAPD_HIGH_WATER", 95);
	env_case((const char *const[]){ "UMAPD_BUFSIZE=12Q", NULL }, -EINVAL, NULL, 0);
	env_case((const char *const[]){ "UMAPD_BUFSIZE=8M", NULL }, 0, "UMAPD_BUFSIZE", 8 << 20);
	/* a valid pair is accepted whatever the order relative to the defaults */
	env_case((const char *const[]){ "UMAPD_HIGH_WATER=50", "UMAPD_LOW_WATER=40", NULL }, 0,
		 "UMAPD_HIGH_WATER", 50);
	env_case((const char *const[]){ "UMAPD_HIGH_WATER=50", "UMAPD_LOW_WATER=40", NULL }, 0,
		 "UMAPD_LOW_WATER", 40);
	env_case((const char *const[]){ "UMAPD_LOW_WATER=95", "UMAPD_HIGH_WATER=99", NULL }, 0,
		 "UMAPD_LOW_WATER", 95);
	env_case((const char *const[]){ "UMAPD_HIGH_WATER=50", NULL }, -EINVAL, NULL, 0);
	env_case((const char *const[]){ "UMAPD_LOW_WATER=96", NULL }, -EINVAL, NULL, 0);
	env_case((const char *const[]){ "UMAPD_HIGH_WATER=60", "UMAPD_LOW_WATER=60", NULL }, -EINVAL, NULL, 0);
	env_case((const char *const[]){ "UMAPD_FILLERS=300", NULL }, -EINVAL, NULL, 0);
	env_case((const char *const[]){ "UMAPD_PAGESIZE=64K", NULL }, 0, "UMAPD_PAGESIZE", 65536);

	t_pass("%d checks of the size parser, each setting's forms, water-mark pairs and the environment",
	       nchecks);
}
