/*
 * consumer.c - a program built against an installed umapd, the way a user
 * builds one: only <umapd.h> and -lumapd.  It checks that the library
 * loads, answers and keeps its errno contract, without starting the engine
 * (no userfaultfd needed).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <umapd.h>

#ifndef CONSUMER_KIND
#define CONSUMER_KIND "unknown"
#endif

int main(void)
{
	char buf[64];
	char version[32];
	size_t bufsize = umapd_get_bufsize();
	int n = umapd_config_get("UMAPD_PAGESIZE", buf, sizeof buf);

	if (n < 0) {
		fprintf(stderr, "FAIL %s: umapd_config_get(UMAPD_PAGESIZE): %s\n", CONSUMER_KIND,
			strerror(errno));
		return 1;
	}
	if (n == 0 || (size_t)n >= sizeof buf || strlen(buf) != (size_t)n) {
		fprintf(stderr, "FAIL %s: umapd_config_get returned %d for \"%s\"\n", CONSUMER_KIND,
			n, buf);
		return 1;
	}
	errno = 0;
	if (umapd_config_get("UMAPD_NO_SUCH_SETTING", buf, sizeof buf) != -1 || errno != EINVAL) {
		fprintf(stderr, "FAIL %s: unknown setting: expected -1/EINVAL, got errno %d\n",
			CONSUMER_KIND, errno);
		return 1;
	}
	snprintf(version, sizeof version, "%d.%d.%d", UMAPD_VERSION_MAJOR, UMAPD_VERSION_MINOR,
		 UMAPD_VERSION_PATCH);
#ifdef EXPECT_VERSION
	if (strcmp(version, EXPECT_VERSION) != 0) {
		fprintf(stderr, "FAIL %s: header says %s, package says %s\n", CONSUMER_KIND,
			version, EXPECT_VERSION);
		return 1;
	}
#endif
	n = umapd_config_get("UMAPD_PAGESIZE", buf, sizeof buf);
	printf("ok %s: umapd %s, bufsize %zu, UMAPD_PAGESIZE=%s, unknown setting -> EINVAL\n",
	       CONSUMER_KIND, version, bufsize, n > 0 ? buf : "?");
	return 0;
}
