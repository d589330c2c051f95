/*
 * daemon.preload - UMAPD_SOCKET through the preload library: an unmodified
 * program (preload_app) under LD_PRELOAD=libumapd-preload.so with its file
 * matching UMAPD_PRELOAD_FILES has its mapping served by the daemon (the
 * daemon's fill count covers the file), reads the file exactly through a
 * budget of an eighth of it, and its writes reach the file.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dtest.h"
#include "umapd_test.h"

int main(void)
{
	struct dt_daemon d;
	struct proto_status st;
	char path[256], budget[32], pattern[300], sock[200];
	size_t len = t_scaled(8 << 20, 1 << 20);
	pid_t pid;
	int status, fd;

	t_init("daemon.preload", 60);
#ifdef DAEMON_PRELOAD_SKIP
	t_skip("%s", DAEMON_PRELOAD_SKIP);
#endif
	snprintf(budget, sizeof(budget), "%zu", len / 8);
	dt_daemon_start(&d, budget, NULL);
	dt_tmpfile(path, len, 1);
	snprintf(pattern, sizeof(pattern), "UMAPD_PRELOAD_FILES=%s", path);
	snprintf(sock, sizeof(sock), "UMAPD_SOCKET=%s", d.sock);
	t_step("run preload_app under the preload library");
	pid = fork();
	if (pid < 0)
		t_fail("fork");
	if (pid == 0) {
		putenv(pattern);
		putenv(sock);
		putenv("LD_PRELOAD=" UMAPD_PRELOAD_LIB);
		putenv("UMAPD_PRELOAD_MIN=4096");
		execl(UMAPD_PRELOAD_APP, UMAPD_PRELOAD_APP, path, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		t_fail("preload_app: %s", t_wait_str(status));
	dt_status(&d, &st);
	T_CHECK(st.total.fills >= len / 4096, "the daemon filled %llu pages of %zu: the mapping was not its",
		(unsigned long long)st.total.fills, len / 4096);
	T_CHECK(st.total.evictions > 0, "no evictions with a budget of an eighth of the file");
	fd = open(path, O_RDONLY);
	t_check_file_pat("file after the program", fd, 0, len / 2, 2);
	t_check_file_pat("file after the program, second half", fd, (off_t)(len / 2), len - len / 2, 1);
	close(fd);
	dt_daemon_cleanup(&d);
	t_pass("an unmodified program under LD_PRELOAD with UMAPD_SOCKET: served by the daemon (%llu fills, %llu "
	       "evictions), read exact, writes in the file",
	       (unsigned long long)st.total.fills, (unsigned long long)st.total.evictions);
}
