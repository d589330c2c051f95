/*
 * daemon.systemd - the daemon speaks the service manager's protocols as
 * systemd would see them, without systemd: readiness (READY=1), status
 * (STATUS=), the watchdog (WATCHDOG=1 at least twice per WATCHDOG_USEC)
 * and shutdown (STOPPING=1) arrive on a NOTIFY_SOCKET datagram socket;
 * with LISTEN_FDS=1 and LISTEN_PID set to its pid it serves the socket it
 * was handed on descriptor 3 and binds none of its own.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dtest.h"
#include "umapd_test.h"

static char dir[64] = "/tmp/umapd-dsystemd-XXXXXX";

static void cleanup(void)
{
	char p[128];

	snprintf(p, sizeof(p), "%s/notify", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/act.sock", dir);
	unlink(p);
	rmdir(dir);
}

static pid_t start(const char *const *env_extra, int fd3, const char *sock)
{
	pid_t parent = getpid(), pid;
	char sockopt[200];

	snprintf(sockopt, sizeof(sockopt), "--socket=%s", sock);
	pid = fork();
	if (pid < 0)
		t_fail("fork");
	if (pid == 0) {
		char lp[32];

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		for (int i = 0; env_extra && env_extra[i]; i++)
			putenv((char *)env_extra[i]);
		if (fd3 >= 0) {
			if (fd3 != 3 && dup2(fd3, 3) < 0)
				_exit(126);
			fcntl(3, F_SETFD, 0);
			snprintf(lp, sizeof(lp), "%d", (int)getpid());
			setenv("LISTEN_PID", lp, 1);
			setenv("LISTEN_FDS", "1", 1);
		}
		execl(UMAPD_DAEMON_PATH, UMAPD_DAEMON_PATH, "--config=/dev/null", sockopt, "--budget=8M",
		      "--log-level=info", "--log-prefix=plain", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Next datagram within ms; "" on timeout. */
static const char *recv_note(int s, int ms, char *buf, size_t len)
{
	struct pollfd p = { s, POLLIN, 0 };
	ssize_t n;

	buf[0] = 0;
	if (poll(&p, 1, ms) <= 0)
		return buf;
	n = recv(s, buf, len - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

int main(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[512], env_notify[200];
	int ns, ls, st, wd = 0;
	bool ready = false, status = false, stopping = false;
	pid_t pid;

	t_init("daemon.systemd", 60);
	if (!mkdtemp(dir))
		t_fail("mkdtemp");
	atexit(cleanup);

	t_step("NOTIFY_SOCKET and WATCHDOG_USEC");
	ns = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir);
	if (ns < 0 || bind(ns, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		t_fail("bind %s: %s", sa.sun_path, strerror(errno));
	snprintf(env_notify, sizeof(env_notify), "NOTIFY_SOCKET=%s", sa.sun_path);
	{
		char sock[128];

		snprintf(sock, sizeof(sock), "%s/own.sock", dir);
		pid = start((const char *const[]){ env_notify, "WATCHDOG_USEC=400000", NULL }, -1, sock);
		uint64_t t0 = t_now_ns();

		while (t_now_ns() - t0 < 1500000000ull) {
			recv_note(ns, 200, buf, sizeof(buf));
			ready |= strstr(buf, "READY=1") != NULL;
			status |= strstr(buf, "STATUS=") != NULL;
			wd += strstr(buf, "WATCHDOG=1") != NULL;
		}
		T_CHECK(ready, "no READY=1 within 1.5 s");
		T_CHECK(status, "no STATUS= within 1.5 s");
		T_CHECK(wd >= 3, "%d WATCHDOG=1 in 1.5 s with WATCHDOG_USEC=400000 (want one per 200 ms)", wd);
		kill(pid, SIGTERM);
		for (int i = 0; i < 20 && !stopping; i++)
			stopping = strstr(recv_note(ns, 100, buf, sizeof(buf)), "STOPPING=1") != NULL;
		T_CHECK(stopping, "no STOPPING=1 after SIGTERM");
		waitpid(pid, &st, 0);
		T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "umapd after SIGTERM: %s", t_wait_str(st));
		unlink(sock);
	}

	t_step("socket activation: LISTEN_FDS=1 on descriptor 3");
	ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/act.sock", dir);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 16) < 0)
		t_fail("listen %s: %s", sa.sun_path, strerror(errno));
	{
		char unused[128];
		struct dt_daemon d;
		struct proto_status ps;
		struct stat sst;

		snprintf(unused, sizeof(unused), "%s/unused.sock", dir);
		pid = start(NULL, ls, unused);
		close(ls);
		memset(&d, 0, sizeof(d));
		snprintf(d.sock, sizeof(d.sock), "%s", sa.sun_path);
		d.pid = pid;
		dt_status(&d, &ps); /* connects to the activation socket; fails the test if nobody answers */
		T_CHECK(ps.pid == (uint64_t)pid, "the socket is served by pid %llu, not the daemon %d",
			(unsigned long long)ps.pid, (int)pid);
		T_CHECK(stat(unused, &sst) != 0, "the daemon bound %s although it was handed a socket", unused);
		kill(pid, SIGTERM);
		waitpid(pid, &st, 0);
		T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "umapd after SIGTERM: %s", t_wait_str(st));
	}
	t_pass("READY=1, STATUS=, %d WATCHDOG=1 in 1.5 s, STOPPING=1 on NOTIFY_SOCKET; served the socket passed by "
	       "LISTEN_FDS and bound none",
	       wd);
}
