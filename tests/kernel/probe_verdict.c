/*
 * probe_verdict - with UMAPD_EVICT_COPY unset (auto), the engine writes back
 * the way the kernel probe says is safe.
 *
 *   - umapd_config_get("UMAPD_EVICT_COPY") is "auto" before and after start;
 *   - after the first umapd_map, umapd_stats().evict_mode is
 *     UMAPD_EVICT_DIRECT if umapd_kernel_probe() found io[UMAPD_IO_PWRITE]
 *     SAFE, else UMAPD_EVICT_BOUNCE, and equals the probe's evict_auto;
 *   - evict_mode is 0 before start;
 *   - umapd_config_set("UMAPD_EVICT_COPY", "bounce") after start fails with
 *     EBUSY and changes nothing;
 *   - in re-executed children, umapd_config_set("UMAPD_EVICT_COPY", X) before
 *     start (X = direct, bounce) is what evict_mode reports after it.
 * The variable is removed from this process's environment first, so the
 * test is about auto whatever the caller's environment says.
 */
#include "umapd_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *mode_str(uint64_t m)
{
	return m == UMAPD_EVICT_DIRECT ? "direct" : m == UMAPD_EVICT_BOUNCE ? "bounce" : m == 0 ? "0 (not started)" : "?";
}

/* Child: set the mode before start, map, report it. */
static int child(const char *mode)
{
	t_init("probe_verdict(child)", 60);
	T_OK(umapd_config_set("UMAPD_EVICT_COPY", mode));
	char v[32];
	T_CHECK(umapd_config_get("UMAPD_EVICT_COPY", v, sizeof(v)) > 0 && strcmp(v, mode) == 0,
		"after umapd_config_set(UMAPD_EVICT_COPY, %s) before start it reads \"%s\"", mode, v);
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, 4 * t_sys_page(), 5);
	errno = 0;
	void *p = umapd_map(NULL, 4 * t_sys_page(), PROT_READ | PROT_WRITE, 0, fd, 0, NULL);
	if (p == NULL && (errno == EPERM || errno == ENOSYS))
		t_skip("userfaultfd not available");
	T_CHECK(p != NULL, "umapd_map: %s", t_errname(errno));
	struct umapd_stats st;
	t_stats(&st);
	uint64_t want = strcmp(mode, "direct") == 0 ? UMAPD_EVICT_DIRECT : UMAPD_EVICT_BOUNCE;
	T_CHECK(st.evict_mode == want, "UMAPD_EVICT_COPY=%s set before start: evict_mode %s, want %s", mode,
		mode_str(st.evict_mode), mode_str(want));
	t_check_pat("region", p, 4 * t_sys_page(), 0, 5);
	t_unmap(p);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		return child(argv[1]);
	t_init("probe_verdict", 60);
	unsetenv("UMAPD_EVICT_COPY");
	size_t ps = t_sys_page();
	char v[32];

	t_step("before start");
	T_CHECK(umapd_config_get("UMAPD_EVICT_COPY", v, sizeof(v)) > 0 && strcmp(v, "auto") == 0,
		"UMAPD_EVICT_COPY reads \"%s\" before start, want \"auto\"", v);
	struct umapd_stats st;
	t_stats(&st);
	T_CHECK(st.evict_mode == 0, "evict_mode %llu before start, want 0", (unsigned long long)st.evict_mode);

	t_step("first umapd_map");
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, 16 * ps, 7);
	errno = 0;
	uint8_t *p = umapd_map(NULL, 16 * ps, PROT_READ | PROT_WRITE, 0, fd, 0, NULL);
	if (p == NULL && (errno == EPERM || errno == ENOSYS))
		t_skip("userfaultfd not available (umapd_map: %s)", t_errname(errno));
	T_CHECK(p != NULL, "umapd_map: %s", t_errname(errno));
	t_stats(&st);

	t_step("umapd_kernel_probe");
	struct umapd_kernel_info ki;
	T_OK(umapd_kernel_probe(&ki));
	int res = ki.io[UMAPD_IO_PWRITE].result;
	uint64_t want = res == UMAPD_PROBE_SAFE ? UMAPD_EVICT_DIRECT : UMAPD_EVICT_BOUNCE;
	T_CHECK(st.evict_mode == want,
		"evict_mode is %s, but the probe's pwrite check gave result %d (error %s): want %s", mode_str(st.evict_mode),
		res, t_errname(ki.io[UMAPD_IO_PWRITE].error), mode_str(want));
	T_CHECK((uint64_t)ki.evict_auto == want, "umapd_kernel_info.evict_auto is %d, want %s (pwrite result %d)",
		ki.evict_auto, mode_str(want), res);
	T_CHECK(umapd_config_get("UMAPD_EVICT_COPY", v, sizeof(v)) > 0 && strcmp(v, "auto") == 0,
		"UMAPD_EVICT_COPY reads \"%s\" after start, want \"auto\"", v);

	t_step("umapd_config_set(UMAPD_EVICT_COPY) after start");
	T_ERR(umapd_config_set("UMAPD_EVICT_COPY", "bounce"), EBUSY);
	T_ERR(umapd_config_set("UMAPD_EVICT_COPY", "direct"), EBUSY);
	t_stats(&st);
	T_CHECK(st.evict_mode == want, "evict_mode changed to %s by a refused umapd_config_set", mode_str(st.evict_mode));
	T_CHECK(umapd_config_get("UMAPD_EVICT_COPY", v, sizeof(v)) > 0 && strcmp(v, "auto") == 0,
		"UMAPD_EVICT_COPY reads \"%s\" after a refused umapd_config_set, want \"auto\"", v);

	t_step("the region still works");
	t_fill_pat(p + 3 * ps, ps, 3 * ps, 8);
	T_OK(umapd_evict(p, 16 * ps));
	t_check_pat("region page 3 after umapd_evict", p + 3 * ps, ps, 3 * ps, 8);
	t_unmap(p);
	t_check_file_pat("file page 3", fd, 3 * ps, ps, 8);
	t_check_file_pat("file page 4..15", fd, 4 * ps, 12 * ps, 7);
	close(fd);

	for (int k = 0; k < 2; k++) {
		const char *m = k ? "bounce" : "direct";
		char *err = NULL;
		t_step("child with umapd_config_set(UMAPD_EVICT_COPY, %s) before start", m);
		int ws = t_reexec(m, NULL, 60, &err);
		if (WIFEXITED(ws) && WEXITSTATUS(ws) == T_SKIP)
			t_skip("child: userfaultfd not available");
		T_CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "child (%s) ended with %s:\n%s", m, t_wait_str(ws),
			err ? err : "");
		free(err);
	}
	t_pass("auto: probe pwrite result %d -> evict_mode %s (= evict_auto); config reads auto; set after start "
	       "-> EBUSY; set before start (direct, bounce) is honoured",
	       res, mode_str(want));
}
