/*
 * fuzz_io_inject - UMAPD_IO_INJECT, parsed by umapd_init()
 * (io_inject_from_env in lib/engine/engine.c).  The parser is reachable
 * only through the environment at start-up, and a value it accepts starts
 * the engine, after which it is never read again.  So each input is set in
 * the environment of a forked child, which calls umapd_init() and reports
 * the result in its exit status; a child killed by a signal is a crash.
 * A value the child saw refused (EINVAL) is then tried in this process
 * too: refused, it starts nothing, so it can be repeated, and a coverage-
 * guided fuzzer sees the parser's paths.  Properties: umapd_init returns 0
 * or -1/EINVAL, and refuses every value that is not a comma-separated list
 * of short:P, eintr:P, eagain:P (P 0..100) and seed:N.
 */
#include <umapd.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A strict reading of the documented form, to compare with. */
static int valid(const char *v)
{
	const char *p = v;
	if (*p == '\0')
		return 1; /* unset or empty: no injection */
	for (;;) {
		const char *colon = strchr(p, ':'), *comma = strchr(p, ',');
		if (!comma)
			comma = p + strlen(p);
		if (comma == p) { /* an empty item: tolerated */
			if (*comma == '\0')
				return 1;
			p = comma + 1;
			continue;
		}
		if (!colon || colon > comma)
			return 0;
		size_t klen = (size_t)(colon - p);
		const char *d = colon + 1;
		if (d == comma)
			return 0;
		unsigned long long x = 0;
		int over = 0;
		for (const char *q = d; q < comma; q++) {
			if (*q < '0' || *q > '9')
				return -1; /* signs, spaces: strtoull's leniency; not judged */
			unsigned dig = (unsigned)(*q - '0');
			if (x > (UINT64_MAX - dig) / 10)
				over = 1;
			x = x * 10 + dig;
		}
		if (over)
			return 0;
		if (klen == 4 && !strncmp(p, "seed", 4))
			;
		else if ((klen == 5 && !strncmp(p, "short", 5)) || (klen == 5 && !strncmp(p, "eintr", 5)) ||
			 (klen == 6 && !strncmp(p, "eagain", 6))) {
			if (x > 100)
				return 0;
		} else
			return 0;
		if (*comma == '\0')
			return 1;
		p = comma + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *v = malloc(size + 1);
	if (!v)
		return 0;
	memcpy(v, data, size);
	v[size] = '\0';
	if (strlen(v) != size || size > 4000) { /* the environment holds no NUL */
		free(v);
		return 0;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		free(v);
		return 0;
	}
	if (pid == 0) {
		/* Nothing but the parser under test: no kernel probe, few threads, quiet. */
		setenv("UMAPD_IO_INJECT", v, 1);
		setenv("UMAPD_EVICT_COPY", "bounce", 1);
		setenv("UMAPD_FILLERS", "1", 1);
		setenv("UMAPD_LOG_LEVEL", "error", 1);
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0)
			dup2(fd, 2);
		int r = umapd_init();
		_exit(r == 0 ? 0 : errno == EINVAL ? 1 : errno == EPERM || errno == ENOSYS ? 3 : 2);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "umapd_init with UMAPD_IO_INJECT=\"%s\" died of signal %d\n", v, WTERMSIG(status));
		abort();
	}
	int code = WEXITSTATUS(status);
	if (code == 2) {
		fprintf(stderr, "umapd_init with UMAPD_IO_INJECT=\"%s\": an errno other than EINVAL\n", v);
		abort();
	}
	int want = valid(v);
	if (code != 3 && want >= 0 && (code == 0) != (want == 1)) {
		fprintf(stderr, "UMAPD_IO_INJECT=\"%s\" was %s, the documented form says %s\n", v,
			code == 0 ? "accepted" : "refused", want ? "valid" : "invalid");
		abort();
	}
	if (code == 1) {
		/* Refused: safe to repeat here, where coverage is seen. */
		setenv("UMAPD_IO_INJECT", v, 1);
		setenv("UMAPD_LOG_LEVEL", "error", 1);
		int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0) /* the refusal is logged every time; keep the output readable */
			dup2(devnull, 2);
		errno = 0;
		int r = umapd_init(), e = errno;
		if (saved >= 0) {
			dup2(saved, 2);
			close(saved);
		}
		if (devnull >= 0)
			close(devnull);
		if (r == 0 || e != EINVAL)
			abort();
		unsetenv("UMAPD_IO_INJECT");
	}
	free(v);
	return 0;
}
