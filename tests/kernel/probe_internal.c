/*
 * probe_internal - the probe's watchdog and the UMAPD_EVICT_COPY decision
 * (lib/probe, linked internally).
 *
 * A hang is simulated the way the kernel bug hung umapsort: the pwrite
 * check's child stores to its write-protected page with the CPU before
 * writing, which blocks for good on a fault nobody serves.  With a short
 * timeout, that path must come back HANGS within about the timeout, the
 * child must be killed and reaped, the other paths must be unaffected, and
 * auto must choose bounce.  Then the setting: auto/direct/bounce in any
 * case, an invalid value failing with -EINVAL and exactly one log line
 * naming the variable and the accepted forms.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "probe/probe.h"
#include "umapd_test.h"

/*
 * The probe SIGKILLs a check that hangs and waits up to 2 s for it to go.
 * A check killed inside an O_DIRECT libaio or io_uring transfer cannot exit
 * before the device completes it, which on a loaded disk can take longer:
 * the probe then logs it as left behind.  What must hold is that every
 * check was killed, so each is gone soon; reap what the probe left.
 */
#define LEFT_BEHIND_S 30

static bool children_gone(void)
{
	uint64_t deadline = t_now_ns() + (uint64_t)(LEFT_BEHIND_S * t_time_scale()) * 1000000000ull;

	for (;;) {
		errno = 0;
		pid_t r = waitpid(-1, NULL, WNOHANG);

		if (r < 0 && errno == ECHILD)
			return true;
		if (r > 0)
			continue; /* one left behind, now gone */
		if (t_now_ns() > deadline)
			return false;
		usleep(10000);
	}
}

static int mode_child(void)
{
	/* Run by the parent with UMAPD_EVICT_COPY set: print what it decides. */
	int m = probe_evict_mode();
	printf("mode=%d\n", m);
	fflush(stdout);
	return 0;
}

static void expect_mode(const char *value, int want)
{
	char env[128];
	snprintf(env, sizeof(env), "UMAPD_EVICT_COPY=%s", value);
	const char *extra[] = { env, NULL };
	char *err = NULL;
	int fds[2];
	T_OK(pipe(fds));
	/* Capture the child's stdout through a pipe. */
	int saved = dup(1);
	dup2(fds[1], 1);
	close(fds[1]);
	int st = t_reexec("mode", extra, 30, &err);
	dup2(saved, 1);
	close(saved);
	char out[64] = "";
	ssize_t n = read(fds[0], out, sizeof(out) - 1);
	close(fds[0]);
	out[n > 0 ? n : 0] = '\0';
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "UMAPD_EVICT_COPY=%s: child %s", value, t_wait_str(st));
	int got = 0;
	T_CHECK(sscanf(out, "mode=%d", &got) == 1, "UMAPD_EVICT_COPY=%s: child printed \"%s\"", value, out);
	T_CHECK(got == want, "UMAPD_EVICT_COPY=%s: mode %d, want %d (stderr: %s)", value, got, want, err ? err : "");
	if (want == -EINVAL) {
		int lines = 0;
		for (const char *s = err; s && *s; s++)
			lines += *s == '\n';
		T_CHECK(err && strstr(err, "UMAPD_EVICT_COPY") && strstr(err, "auto, direct or bounce") && lines == 1,
			"UMAPD_EVICT_COPY=%s: want one log line naming the variable and the forms, got:\n%s", value,
			err ? err : "(nothing)");
	}
	free(err);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "mode") == 0)
		return mode_child();
	t_init("probe_internal", 60);

	t_step("parse");
	char why[160];
	T_CHECK(probe_evict_copy_parse(NULL, NULL, 0) == 0, "NULL is not auto");
	T_CHECK(probe_evict_copy_parse("", NULL, 0) == 0, "\"\" is not auto");
	T_CHECK(probe_evict_copy_parse("AUTO", NULL, 0) == 0, "AUTO is not auto");
	T_CHECK(probe_evict_copy_parse("Direct", NULL, 0) == PROBE_EVICT_DIRECT, "Direct is not direct");
	T_CHECK(probe_evict_copy_parse("bounce", NULL, 0) == PROBE_EVICT_BOUNCE, "bounce is not bounce");
	T_CHECK(probe_evict_copy_parse("copy", why, sizeof(why)) == -EINVAL, "copy accepted");
	T_CHECK(strstr(why, "UMAPD_EVICT_COPY") != NULL, "why does not name the variable: %s", why);
	T_CHECK(probe_evict_mode_for(UMAPD_IO_PATHS) == -EINVAL, "bad path accepted");

	t_step("simulated hang in the pwrite check");
	struct umapd_kernel_info ki;
	struct probe_opts o = { .timeout_ms = 300, .hang_mask = 1u << UMAPD_IO_PWRITE };
	uint64_t t0 = t_now_ns();
	T_OK(probe_run(&ki, &o));
	uint64_t took = t_now_ns() - t0;
	if (ki.uffd_error != 0 || !ki.feat_wp)
		t_skip("no userfaultfd with write-protect faults here (%s)",
		       t_errname(ki.uffd_error ? ki.uffd_error : EOPNOTSUPP));
	T_CHECK(ki.timeout_ms == 300, "timeout_ms %d", ki.timeout_ms);
	T_CHECK(ki.io[UMAPD_IO_PWRITE].result == UMAPD_PROBE_HANGS, "pwrite with a CPU store first: result %s, error %s",
		probe_result_name(ki.io[UMAPD_IO_PWRITE].result), t_errname(ki.io[UMAPD_IO_PWRITE].error));
	T_CHECK(ki.evict_auto == PROBE_EVICT_BOUNCE, "auto chose %d with pwrite hanging", ki.evict_auto);
	for (int p = 1; p < UMAPD_IO_PATHS; p++)
		T_CHECK(ki.io[p].result == UMAPD_PROBE_SAFE || ki.io[p].result == UMAPD_PROBE_UNAVAILABLE,
			"%s: %s %s beside a hanging check", probe_path_name(p), probe_result_name(ki.io[p].result),
			t_errname(ki.io[p].error));
	T_CHECK(took >= 300000000ull, "the hung check came back after %.1f ms, before its timeout", took / 1e6);
	T_CHECK(took < 3000000000ull * t_time_scale(), "the probe took %.1f ms with a 300 ms timeout", took / 1e6);
	T_CHECK(children_gone(), "the hung child was not reaped, nor gone %u s after SIGKILL", LEFT_BEHIND_S);

	t_step("simulated hang in every check at once");
	o.timeout_ms = 200;
	o.hang_mask = (1u << UMAPD_IO_PATHS) - 1;
	t0 = t_now_ns();
	T_OK(probe_run(&ki, &o));
	uint64_t took_all = t_now_ns() - t0;
	for (int p = 0; p < UMAPD_IO_PATHS; p++)
		T_CHECK(ki.io[p].result == UMAPD_PROBE_HANGS || ki.io[p].result == UMAPD_PROBE_UNAVAILABLE,
			"%s: %s %s, every check hanging", probe_path_name(p), probe_result_name(ki.io[p].result),
			t_errname(ki.io[p].error));
	T_CHECK(took_all < 3000000000ull * t_time_scale(), "five hung checks took %.1f ms with a 200 ms timeout: "
		"they are waited for one after the other?", took_all / 1e6);
	T_CHECK(children_gone(), "hung children were not reaped, nor gone %u s after SIGKILL", LEFT_BEHIND_S);

	t_step("UMAPD_EVICT_COPY");
	/* On this kernel auto must choose direct (pwrite is SAFE without the
	 * simulated hang); forced values win; invalid fails with one line. */
	expect_mode("auto", PROBE_EVICT_DIRECT);
	expect_mode("", PROBE_EVICT_DIRECT);
	expect_mode("DIRECT", PROBE_EVICT_DIRECT);
	expect_mode("bounce", PROBE_EVICT_BOUNCE);
	expect_mode("sometimes", -EINVAL);

	t_pass("simulated hang: HANGS after %.0f ms (timeout 300), child reaped, auto -> bounce; all five hung: "
	       "%.0f ms (timeout 200); UMAPD_EVICT_COPY auto/direct/bounce/invalid decided as documented",
	       took / 1e6, took_all / 1e6);
}
