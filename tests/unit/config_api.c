/*
 * config_api - the settings through the public API: umapd_config_set/get,
 * umapd_set/get_bufsize, thread counts fixed once the engine runs, and the
 * environment read at start-up (checked in re-executed children, because the
 * environment is read once per process).
 */
#include "umapd_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int nchecks;

/* ---- children ---- */

/* An invalid environment: umapd_init and umapd_map fail with EINVAL. */
static int child_env_bad(void)
{
	errno = 0;
	int rc = umapd_init();
	if (rc != -1 || errno != EINVAL) {
		fprintf(stderr, "child: umapd_init returned %d errno %s, want -1 EINVAL\n", rc,
			t_errname(errno));
		return 1;
	}
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, 4096, 1);
	errno = 0;
	void *p = umapd_map(NULL, 4096, PROT_READ, 0, fd, 0, NULL);
	if (p != NULL || errno != EINVAL) {
		fprintf(stderr, "child: umapd_map returned %p errno %s, want NULL EINVAL\n", p,
			t_errname(errno));
		return 1;
	}
	return 0;
}

static int expect_get(const char *name, const char *want)
{
	char buf[128];
	errno = 0;
	int n = umapd_config_get(name, buf, sizeof(buf));
	if (n < 0 || strcmp(buf, want) != 0 || (size_t)n != strlen(want)) {
		fprintf(stderr, "child: umapd_config_get(%s) = %d \"%s\" (%s), want \"%s\"\n", name, n,
			n >= 0 ? buf : "", t_errname(errno), want);
		return 1;
	}
	return 0;
}

/* A valid environment is applied. */
static int child_env_good(void)
{
	if (umapd_init() != 0) {
		fprintf(stderr, "child: umapd_init failed: %s\n", t_errname(errno));
		return errno == EPERM || errno == ENOSYS ? T_SKIP : 1;
	}
	int bad = 0;
	bad |= expect_get("UMAPD_BUFSIZE", "67108864");
	bad |= expect_get("UMAPD_PAGESIZE", "16384");
	bad |= expect_get("UMAPD_HIGH_WATER", "50");
	bad |= expect_get("UMAPD_LOW_WATER", "40");
	bad |= expect_get("UMAPD_FILLERS", "3");
	bad |= expect_get("UMAPD_EVICTORS", "2");
	bad |= expect_get("UMAPD_READ_AHEAD", "0");
	bad |= expect_get("UMAPD_LOG_LEVEL", "error");
	if (umapd_get_bufsize() != 64u << 20) {
		fprintf(stderr, "child: umapd_get_bufsize = %zu, want %u\n", umapd_get_bufsize(), 64u << 20);
		bad = 1;
	}
	/* The default page size applies to a region mapped without opts. */
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, 65536, 4);
	void *p = umapd_map(NULL, 65536, PROT_READ, 0, fd, 0, NULL);
	if (p == NULL) {
		fprintf(stderr, "child: umapd_map failed: %s\n", t_errname(errno));
		return 1;
	}
	if (umapd_region_page_size(p) != 16384) {
		fprintf(stderr, "child: region page size %zu, want UMAPD_PAGESIZE 16384\n",
			umapd_region_page_size(p));
		bad = 1;
	}
	const volatile uint8_t *b = p;
	for (size_t i = 0; i < 65536; i++)
		if (b[i] != t_pat(i, 4)) {
			fprintf(stderr, "child: byte %zu: expected 0x%02x, got 0x%02x\n", i, t_pat(i, 4), b[i]);
			return 1;
		}
	if (umapd_unmap(p) != 0) {
		fprintf(stderr, "child: umapd_unmap: %s\n", t_errname(errno));
		return 1;
	}
	return bad;
}

/* Thread counts can be set before the engine starts, not after. */
static int child_threads(void)
{
	if (umapd_config_set("UMAPD_FILLERS", "4") != 0 || umapd_config_set("UMAPD_EVICTORS", "2") != 0) {
		fprintf(stderr, "child: setting thread counts before start failed: %s\n", t_errname(errno));
		return 1;
	}
	if (umapd_init() != 0) {
		fprintf(stderr, "child: umapd_init failed: %s\n", t_errname(errno));
		return errno == EPERM || errno == ENOSYS ? T_SKIP : 1;
	}
	const char *names[] = { "UMAPD_FILLERS", "UMAPD_EVICTORS" };
	for (int i = 0; i < 2; i++) {
		errno = 0;
		int rc = umapd_config_set(names[i], "5");
		if (rc != -1 || errno != EBUSY) {
			fprintf(stderr, "child: umapd_config_set(%s, 5) after start: %d %s, want -1 EBUSY\n",
				names[i], rc, t_errname(errno));
			return 1;
		}
	}
	return expect_get("UMAPD_FILLERS", "4") | expect_get("UMAPD_EVICTORS", "2");
}

/* ---- parent ---- */

struct env_case {
	const char *env[3];
	const char *named; /* the variable the log line must name */
};

static void check_env(void)
{
	static const struct env_case bad[] = {
		{ { "UMAPD_BUFSIZE=12Q" }, "UMAPD_BUFSIZE" },
		{ { "UMAPD_BUFSIZE=-5" }, "UMAPD_BUFSIZE" },
		{ { "UMAPD_BUFSIZE=0" }, "UMAPD_BUFSIZE" },
		{ { "UMAPD_BUFSIZE=1" }, "UMAPD_BUFSIZE" },
		{ { "UMAPD_BUFSIZE=101%" }, "UMAPD_BUFSIZE" },
		{ { "UMAPD_BUFSIZE=64 M" }, "UMAPD_BUFSIZE" },
		{ { "UMAPD_PAGESIZE=3000" }, "UMAPD_PAGESIZE" },
		{ { "UMAPD_PAGESIZE=12K" }, "UMAPD_PAGESIZE" },
		{ { "UMAPD_PAGESIZE=2K" }, "UMAPD_PAGESIZE" },
		{ { "UMAPD_HIGH_WATER=101" }, "UMAPD_HIGH_WATER" },
		{ { "UMAPD_HIGH_WATER=50" }, "UMAPD_HIGH_WATER" }, /* <= default low water 85 */
		{ { "UMAPD_HIGH_WATER=60", "UMAPD_LOW_WATER=60" }, "UMAPD_HIGH_WATER" },
		{ { "UMAPD_LOW_WATER=abc" }, "UMAPD_LOW_WATER" },
		{ { "UMAPD_FILLERS=0" }, "UMAPD_FILLERS" },
		{ { "UMAPD_FILLERS=257" }, "UMAPD_FILLERS" },
		{ { "UMAPD_EVICTORS=65" }, "UMAPD_EVICTORS" },
		{ { "UMAPD_READ_AHEAD=4097" }, "UMAPD_READ_AHEAD" },
		{ { "UMAPD_READ_AHEAD=-1" }, "UMAPD_READ_AHEAD" },
		{ { "UMAPD_LOG_LEVEL=verbose" }, "UMAPD_LOG_LEVEL" },
		{ { "UMAPD_LOG_LEVEL=4" }, "UMAPD_LOG_LEVEL" },
		/* Environment-only switches (cfg_env_switch, shared with the daemon client). */
		{ { "UMAPD_USER_MODE_ONLY=yes" }, "UMAPD_USER_MODE_ONLY" },
		{ { "UMAPD_USER_MODE_ONLY=" }, "UMAPD_USER_MODE_ONLY" },
		{ { "UMAPD_EVENT_REMOVE=2" }, "UMAPD_EVENT_REMOVE" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t_step("invalid environment %s %s", bad[i].env[0], bad[i].env[1] ? bad[i].env[1] : "");
		char *err = NULL;
		int st = t_reexec("env-bad", bad[i].env, 20, &err);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			t_fail("with %s %s: child %s; its stderr: %s", bad[i].env[0],
			       bad[i].env[1] ? bad[i].env[1] : "", t_wait_str(st), err);
		if (strstr(err, bad[i].named) == NULL)
			t_fail("with %s %s: umapd_init failed but stderr does not name %s; stderr: \"%s\"",
			       bad[i].env[0], bad[i].env[1] ? bad[i].env[1] : "", bad[i].named, err);
		free(err);
		nchecks++;
	}

	t_step("valid environment");
	static const char *const good[] = { "UMAPD_BUFSIZE=64M", "UMAPD_PAGESIZE=16K",
					    "UMAPD_LOW_WATER=40", "UMAPD_HIGH_WATER=50",
					    "UMAPD_FILLERS=3", "UMAPD_EVICTORS=2",
					    "UMAPD_READ_AHEAD=0", "UMAPD_LOG_LEVEL=error", NULL };
	char *err = NULL;
	int st = t_reexec("env-good", good, 30, &err);
	if (WIFEXITED(st) && WEXITSTATUS(st) == T_SKIP)
		t_skip("userfaultfd not available in the child");
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		t_fail("valid environment: child %s; its stderr: %s", t_wait_str(st), err);
	free(err);
	nchecks++;

	t_step("thread counts before and after start");
	st = t_reexec("threads", NULL, 30, &err);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		t_fail("thread counts: child %s; its stderr: %s", t_wait_str(st), err);
	free(err);
	nchecks++;
}

static void get_ok(const char *name, const char *want)
{
	char buf[128];
	errno = 0;
	int n = umapd_config_get(name, buf, sizeof(buf));
	if (n < 0)
		t_fail("umapd_config_get(%s) failed: %s", name, t_errname(errno));
	if ((size_t)n != strlen(buf))
		t_fail("umapd_config_get(%s) returned %d but wrote \"%s\" (%zu bytes)", name, n, buf, strlen(buf));
	if (want != NULL && strcmp(buf, want) != 0)
		t_fail("umapd_config_get(%s) = \"%s\", want \"%s\"", name, buf, want);
	nchecks++;
}

static void set_ok(const char *name, const char *value, const char *get_want)
{
	t_step("umapd_config_set(%s, \"%s\")", name, value);
	errno = 0;
	if (umapd_config_set(name, value) != 0)
		t_fail("umapd_config_set(%s, \"%s\") failed: %s", name, value, t_errname(errno));
	get_ok(name, get_want);
}

static void set_bad(const char *name, const char *value, int want)
{
	char before[128], after[128];
	int known = umapd_config_get(name, before, sizeof(before)) >= 0;
	t_step("umapd_config_set(%s, \"%s\") -> %s", name, value ? value : "NULL", t_errname(want));
	errno = 0;
	int rc = umapd_config_set(name, value);
	if (rc != -1 || errno != want)
		t_fail("umapd_config_set(%s, \"%s\"): expected -1 %s, got %d %s", name ? name : "NULL",
		       value ? value : "NULL", t_errname(want), rc, t_errname(errno));
	if (known) {
		umapd_config_get(name, after, sizeof(after));
		if (strcmp(before, after) != 0)
			t_fail("rejected umapd_config_set(%s, \"%s\") changed the value: \"%s\" -> \"%s\"",
			       name, value, before, after);
	}
	nchecks++;
}

static void check_config(void)
{
	const size_t ps = t_sys_page();
	char pss[32];
	snprintf(pss, sizeof(pss), "%zu", ps);

	/* names */
	set_bad(NULL, "1", EFAULT);
	set_bad("UMAPD_BUFSIZE", NULL, EFAULT);
	set_bad("UMAPD_NOPE", "1", EINVAL);
	set_bad("", "1", EINVAL);
	set_bad("umapd_bufsize", "64M", EINVAL);
	set_bad("BUFSIZE", "64M", EINVAL);
	set_bad("UMAPD_TEST_SCALE", "1", EINVAL);

	/* values */
	const char *bad_size[] = { "12Q", "", "-1", "0", "1", "64 M", "M", "1.5G", "101%", "0%", "%",
				   "99999999999999999999", "18446744073709551615T" };
	for (size_t i = 0; i < sizeof(bad_size) / sizeof(bad_size[0]); i++)
		set_bad("UMAPD_BUFSIZE", bad_size[i], EINVAL);
	const char *bad_page[] = { "3000", "12K", "2K", "0", "", "x", "50%", "-4096" };
	for (size_t i = 0; i < sizeof(bad_page) / sizeof(bad_page[0]); i++)
		set_bad("UMAPD_PAGESIZE", bad_page[i], EINVAL);
	const char *bad_pct[] = { "101", "-1", "", "abc", "50%", "1e2", "70.5" };
	for (size_t i = 0; i < sizeof(bad_pct) / sizeof(bad_pct[0]); i++) {
		set_bad("UMAPD_HIGH_WATER", bad_pct[i], EINVAL);
		set_bad("UMAPD_LOW_WATER", bad_pct[i], EINVAL);
	}
	const char *bad_ra[] = { "4097", "-1", "", "x", "10K" };
	for (size_t i = 0; i < sizeof(bad_ra) / sizeof(bad_ra[0]); i++)
		set_bad("UMAPD_READ_AHEAD", bad_ra[i], EINVAL);
	const char *bad_lvl[] = { "verbose", "4", "-1", "" };
	for (size_t i = 0; i < sizeof(bad_lvl) / sizeof(bad_lvl[0]); i++)
		set_bad("UMAPD_LOG_LEVEL", bad_lvl[i], EINVAL);

	/* good values read back in environment syntax, sizes in bytes */
	set_ok("UMAPD_BUFSIZE", "64M", "67108864");
	T_CHECK(umapd_get_bufsize() == 64u << 20, "umapd_get_bufsize = %zu after UMAPD_BUFSIZE=64M",
		umapd_get_bufsize());
	set_ok("UMAPD_BUFSIZE", "1G", "1073741824");
	set_ok("UMAPD_BUFSIZE", "512K", "524288");
	set_ok("UMAPD_BUFSIZE", "12345678", "12345678");
	set_ok("UMAPD_BUFSIZE", "10%", NULL);
	T_CHECK(umapd_get_bufsize() > 0, "UMAPD_BUFSIZE=10%% gave a budget of 0");
	set_ok("UMAPD_PAGESIZE", "16K", "16384");
	set_ok("UMAPD_PAGESIZE", "2M", "2097152");
	set_ok("UMAPD_PAGESIZE", pss, pss);
	set_ok("UMAPD_READ_AHEAD", "0", "0");
	set_ok("UMAPD_READ_AHEAD", "4096", "4096");
	set_ok("UMAPD_READ_AHEAD", "32", "32");
	set_ok("UMAPD_LOG_LEVEL", "debug", "debug");
	set_ok("UMAPD_LOG_LEVEL", "error", "error");
	set_ok("UMAPD_LOG_LEVEL", "warn", "warn");

	/* water marks are checked against each other */
	set_ok("UMAPD_HIGH_WATER", "90", "90");
	set_ok("UMAPD_LOW_WATER", "70", "70");
	set_bad("UMAPD_LOW_WATER", "90", EINVAL);
	set_bad("UMAPD_LOW_WATER", "95", EINVAL);
	set_bad("UMAPD_HIGH_WATER", "70", EINVAL);
	set_bad("UMAPD_HIGH_WATER", "50", EINVAL);
	set_ok("UMAPD_LOW_WATER", "20", "20");
	set_ok("UMAPD_HIGH_WATER", "30", "30");
	set_ok("UMAPD_HIGH_WATER", "90", "90");
	set_ok("UMAPD_LOW_WATER", "70", "70");

	/* umapd_set_bufsize and UMAPD_BUFSIZE are the same setting */
	t_step("umapd_set_bufsize");
	T_OK(umapd_set_bufsize(32u << 20));
	get_ok("UMAPD_BUFSIZE", "33554432");
	T_OK(umapd_set_bufsize(ps));
	T_CHECK(umapd_get_bufsize() == ps, "umapd_get_bufsize = %zu, want %zu", umapd_get_bufsize(), ps);
	T_OK(umapd_set_bufsize(64u << 20));

	/* thread counts after start (the engine runs: t_umapd_start) */
	set_bad("UMAPD_FILLERS", "3", EBUSY);
	set_bad("UMAPD_EVICTORS", "3", EBUSY);

	/* umapd_config_get errors */
	t_step("umapd_config_get errors");
	char buf[64];
	T_ERR(umapd_config_get(NULL, buf, sizeof(buf)), EFAULT);
	T_ERR(umapd_config_get("UMAPD_BUFSIZE", NULL, 64), EFAULT);
	T_ERR(umapd_config_get("UMAPD_NOPE", buf, sizeof(buf)), EINVAL);
	T_ERR(umapd_config_get("", buf, sizeof(buf)), EINVAL);
	nchecks += 4;
	const char *names[] = { "UMAPD_BUFSIZE", "UMAPD_PAGESIZE", "UMAPD_HIGH_WATER", "UMAPD_LOW_WATER",
				"UMAPD_FILLERS", "UMAPD_EVICTORS", "UMAPD_READ_AHEAD", "UMAPD_LOG_LEVEL" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		t_step("umapd_config_get(%s) buffer sizes", names[i]);
		int n = umapd_config_get(names[i], buf, sizeof(buf));
		T_CHECK(n > 0, "umapd_config_get(%s) = %d (%s)", names[i], n, t_errname(errno));
		char small[64];
		T_ERR(umapd_config_get(names[i], small, 0), ERANGE);
		T_ERR(umapd_config_get(names[i], small, 1), ERANGE);
		T_ERR(umapd_config_get(names[i], small, (size_t)n), ERANGE); /* no room for the NUL */
		memset(small, 0x55, sizeof(small));
		int m = umapd_config_get(names[i], small, (size_t)n + 1);
		T_CHECK(m == n && strcmp(small, buf) == 0,
			"umapd_config_get(%s, buflen %d) = %d \"%.*s\", want %d \"%s\"", names[i], n + 1, m,
			n + 1, small, n, buf);
		T_CHECK(small[n + 1] == 0x55, "umapd_config_get(%s, buflen %d) wrote past buflen", names[i],
			n + 1);
		nchecks += 4;
	}
}

int main(int argc, char **argv)
{
	if (argc > 1) {
		t_init("config_api-child", 30);
		if (strcmp(argv[1], "env-bad") == 0)
			return child_env_bad();
		if (strcmp(argv[1], "env-good") == 0)
			return child_env_good();
		if (strcmp(argv[1], "threads") == 0)
			return child_threads();
		return 2;
	}
	t_init("config_api", 90);
	check_env(); /* before this process starts umapd */
	t_umapd_start();
	check_config();
	t_pass("%d checks: invalid settings give EINVAL and a log line naming the variable, "
	       "valid ones read back, thread counts EBUSY after start, short buffers ERANGE", nchecks);
}
