/*
 * daemon.ignored - keys the daemon accepts but does not act on are named
 * at start, once each, and only when set away from their defaults:
 *   set       fillers, evictors, page_size and io changed: one warning each
 *   water     high_water changed: the water-mark warning alone
 *   defaults  nothing changed: no warning at all
 * In every case the daemon starts and serves (the keys are not errors:
 * one configuration file may serve the library and the daemon).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtest.h"
#include "umapd_test.h"

/* The daemon's log so far, NUL-terminated, in buf. */
static void read_log(const struct dt_daemon *d, char *buf, size_t len)
{
	int fd = open(d->log, O_RDONLY);
	ssize_t n;

	T_CHECK(fd >= 0, "open %s: %s", d->log, t_errname(errno));
	n = read(fd, buf, len - 1);
	T_CHECK(n >= 0, "read %s: %s", d->log, t_errname(errno));
	buf[n] = 0;
	close(fd);
}

static unsigned count(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Start a daemon with extra options, check that it serves, and return its
 * log in buf. */
static void run(const char *const *extra, char *buf, size_t len)
{
	struct dt_daemon d;
	struct proto_status st;

	dt_daemon_start(&d, "16M", extra);
	dt_status(&d, &st);
	dt_daemon_alive(&d, "after a status request");
	read_log(&d, buf, len);
	dt_daemon_cleanup(&d);
}

int main(void)
{
	static char log[1 << 16];
	static const char *const set[] = { "--fillers=8", "--evictors=3", "--page-size=65536", "--io=aio", NULL };
	static const char *const water[] = { "--high-water=90", NULL };
	static const struct {
		const char *what;
		const char *line;
	} warn[] = {
		{ "fillers", "fillers = 8 has no effect" },
		{ "evictors", "evictors = 3 has no effect" },
		{ "page_size", "page_size has no effect" },
		{ "io", "io has no effect" },
	};

	t_init("daemon.ignored", 60);

	t_step("set: four keys away from their defaults");
	run(set, log, sizeof(log));
	for (size_t i = 0; i < sizeof(warn) / sizeof(warn[0]); i++)
		T_CHECK(count(log, warn[i].line) == 1, "%s: warned %u times, want once; log:\n%s", warn[i].what,
			count(log, warn[i].line), log);
	T_CHECK(count(log, "high_water/low_water") == 0, "set: water marks not changed but warned; log:\n%s", log);

	t_step("water: high_water changed");
	run(water, log, sizeof(log));
	T_CHECK(count(log, "high_water/low_water have no effect") == 1, "water: no warning; log:\n%s", log);
	T_CHECK(count(log, "no effect") == 1, "water: other warnings too; log:\n%s", log);

	t_step("defaults: nothing changed");
	run(NULL, log, sizeof(log));
	T_CHECK(count(log, "no effect") == 0, "defaults: warned; log:\n%s", log);

	t_pass("each ignored key set is named once at start, none with the defaults, and the daemon serves");
}
