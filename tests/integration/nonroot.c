/*
 * nonroot - an unprivileged process (uid/gid 65534, no groups, no
 * capabilities) on a system with vm.unprivileged_userfaultfd=0 gets EPERM
 * from umapd_map, and the log line on stderr names the fix
 * (vm.unprivileged_userfaultfd).  Skipped when the unprivileged process would
 * have userfaultfd anyway (sysctl 1, or /dev/userfaultfd opened to it), or
 * when this test does not run as root and so cannot drop privileges.
 */
#include "umapd_test.h"

#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#define NOBODY 65534
#define CHILD_SKIP 77
#define CHILD_SETUP 3

static int map_fd;

static int child(void *arg)
{
	(void)arg;
	if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
	    setresuid(NOBODY, NOBODY, NOBODY) != 0) {
		fprintf(stderr, "child: cannot drop to uid %d: %s\n", NOBODY, strerror(errno));
		return CHILD_SETUP;
	}
	if (geteuid() != NOBODY || getegid() != NOBODY) {
		fprintf(stderr, "child: still uid %d gid %d\n", (int)geteuid(), (int)getegid());
		return CHILD_SETUP;
	}
	/* Would an unprivileged process get a full userfaultfd here anyway? */
	int u = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (u >= 0) {
		close(u);
		fprintf(stderr, "child: /dev/userfaultfd is open to uid %d\n", NOBODY);
		return CHILD_SKIP;
	}
	long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0) {
		close((int)fd);
		fprintf(stderr, "child: userfaultfd(2) is permitted to uid %d\n", NOBODY);
		return CHILD_SKIP;
	}
	errno = 0;
	void *p = umapd_map(NULL, 4096, PROT_READ | PROT_WRITE, 0, map_fd, 0, NULL);
	int e = errno;
	if (p != NULL) {
		fprintf(stderr, "child: umapd_map succeeded (%p) without permission for userfaultfd\n", p);
		return 1;
	}
	if (e != EPERM) {
		fprintf(stderr, "child: umapd_map failed with %s, want EPERM\n", t_errname(e));
		return 1;
	}
	errno = 0;
	int rc = umapd_init();
	if (rc != -1 || errno != EPERM) {
		fprintf(stderr, "child: umapd_init after the failed map returned %d %s, want -1 EPERM\n", rc,
			t_errname(errno));
		return 1;
	}
	return 0;
}

int main(void)
{
	t_init("nonroot", 30);
	if (geteuid() != 0)
		t_skip("not running as root: cannot drop to an unprivileged uid (run as root to check EPERM)");
	FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
	int sysctl = -1;
	if (f != NULL) {
		if (fscanf(f, "%d", &sysctl) != 1)
			sysctl = -1;
		fclose(f);
	}
	if (sysctl == 1)
		t_skip("vm.unprivileged_userfaultfd=1: unprivileged processes may use userfaultfd here");

	t_step("prepare a file, open before dropping privileges");
	map_fd = t_tmpfile(NULL);
	t_write_file_pat(map_fd, 0, 8192, 5);

	t_step("fork a child that drops to uid %d and maps", NOBODY);
	char *err = NULL;
	int st = t_fork_run(child, NULL, 20, &err);
	if (WIFEXITED(st) && WEXITSTATUS(st) == CHILD_SKIP)
		t_skip("an unprivileged process has userfaultfd here (%s)", err);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		t_fail("unprivileged child: %s; its stderr: %s", t_wait_str(st), err);
	if (strstr(err, "vm.unprivileged_userfaultfd") == NULL)
		t_fail("umapd_map failed with EPERM but stderr does not mention vm.unprivileged_userfaultfd; "
		       "stderr: \"%s\"", err);
	/* one line for the whole explanation: print it so the log shows it */
	char *nl = strchr(err, '\n');
	if (nl)
		*nl = '\0';
	t_pass("uid %d: umapd_map and umapd_init fail with EPERM, log says: %s", NOBODY, err);
}
