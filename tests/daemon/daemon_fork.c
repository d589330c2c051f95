/*
 * daemon.fork - a connected client forks.  The child does not inherit the
 * session (the daemon still counts one client after the fork, two once the
 * child connects itself) nor the daemon region (MADV_DONTFORK); it
 * connects on its own, maps the same file and reads what the parent wrote
 * and flushed, after the parent unmapped its region.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dtest.h"
#include "umapd_test.h"

int main(void)
{
	struct dt_daemon d;
	char path[256];
	size_t len = 4 << 20;
	uint8_t *p;
	int fd, go[2], done[2], st;
	pid_t pid;

	t_init("daemon.fork", 60);
#ifdef DAEMON_FORK_SKIP
	t_skip("%s", DAEMON_FORK_SKIP);
#endif
	dt_daemon_start(&d, "2M", NULL);
	dt_tmpfile(path, len, 1);
	fd = open(path, O_RDWR);
	if (umapd_connect(d.sock) != 0)
		t_fail("umapd_connect: %s", t_errname(errno));
	p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	t_fill_pat(p, len / 2, 0, 2);
	T_OK(umapd_flush(p, len));
	T_CHECK(dt_clients(&d, NULL, 0) == 1, "%d clients before the fork", dt_clients(&d, NULL, 0));
	if (pipe(go) < 0 || pipe(done) < 0)
		t_fail("pipe");
	t_step("fork");
	pid = fork();
	if (pid < 0)
		t_fail("fork");
	if (pid == 0) {
		char c;
		uint8_t *q;

		alarm(30);
		close(go[1]); /* the parent's end: its close is our EOF */
		/* Wait until the parent counted the clients and left. */
		if (read(go[0], &c, 1) != 1)
			_exit(10);
		if (umapd_connect(d.sock) != 0)
			_exit(11);
		q = umapd_map(NULL, len, PROT_READ, 0, fd, 0, NULL);
		if (!q)
			_exit(12);
		for (size_t i = 0; i < len; i++)
			if (q[i] != t_pat(i, i < len / 2 ? 2 : 1))
				_exit(13);
		if (write(done[1], "d", 1) != 1 || read(go[0], &c, 1) < 0)
			_exit(14);
		_exit(umapd_unmap(q) == 0 ? 0 : 15);
	}
	T_CHECK(dt_clients(&d, NULL, 0) == 1, "%d clients after the fork: the child holds the parent's session", dt_clients(&d, NULL, 0));
	t_step("the parent leaves its session (unmap; the child still lives)");
	t_unmap(p);
	T_CHECK(write(go[1], "g", 1) == 1, "write");
	{
		char c;

		T_CHECK(read(done[0], &c, 1) == 1, "the child failed before reading (see its exit status)");
	}
	T_CHECK(dt_clients(&d, NULL, 0) == 2, "%d clients with the child connected", dt_clients(&d, NULL, 0));
	t_step("let the child unmap and exit");
	close(go[1]);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		t_fail("child: %s", t_wait_str(st));
	dt_daemon_cleanup(&d);
	t_pass("a forked child did not inherit the session or the region; it connected and read the parent's "
	       "flushed writes");
}
