/*
 * e2e_systemd - the umapd daemon started the way systemd starts it, with
 * this test playing systemd's part:
 *  - socket activation: the test binds and listens on the socket itself and
 *    execs the daemon with it at descriptor 3, LISTEN_FDS=1 and LISTEN_PID
 *    set (between fork and exec, as systemd does: exec keeps the pid);
 *  - NOTIFY_SOCKET: a datagram socket with SO_PASSCRED, so every
 *    notification's sender pid is checked (the unit says NotifyAccess=main);
 *  - WATCHDOG_USEC / WATCHDOG_PID.
 * It checks READY=1 arrives, STATUS= lines, WATCHDOG=1 pings at the interval
 * systemd would enforce, a client and an admin session served through the
 * passed socket (HELLO, STATUS), that the daemon did not bind a socket of
 * its own, that its stderr lines carry syslog priority prefixes when stderr
 * is "the journal" (JOURNAL_STREAM), STOPPING=1 and a clean exit on SIGTERM.
 * Then the refusals: malformed LISTEN_FDS and a bad option stop it before
 * READY=1 with an error.  With root, once more as an unprivileged user
 * (nobody), which is what DynamicUser= gives the daemon in umapd.service.
 *
 *   test_dops_e2e_systemd PATH-TO-umapd
 */
#include "umapd_test.h"
#include "proto/proto.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *daemon_path;
static char dir[] = "/tmp/umapd-e2e-XXXXXX";
static int nchecks;
static pid_t daemon_pid = -1;

static void kill_daemon(void)
{
	if (daemon_pid > 0) {
		kill(daemon_pid, SIGKILL);
		waitpid(daemon_pid, NULL, 0);
		daemon_pid = -1;
	}
}

static int unix_socket(int type, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	T_CHECK(s >= 0, "socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	T_CHECK(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind %s: %s", path, strerror(errno));
	return s;
}

/* One notification datagram, within ms; returns its length or -1 on timeout. */
static int recv_notify(int ns, char *buf, size_t len, int ms, pid_t *sender)
{
	struct pollfd p = { .fd = ns, .events = POLLIN };
	if (poll(&p, 1, ms) <= 0)
		return -1;
	union {
		struct cmsghdr align;
		char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 8)];
	} cm;
	struct iovec iov = { buf, len - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b) };
	ssize_t n = recvmsg(ns, &mh, MSG_CMSG_CLOEXEC);
	T_CHECK(n >= 0, "recvmsg on the notify socket: %s", strerror(errno));
	buf[n] = '\0';
	*sender = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred uc;
			memcpy(&uc, CMSG_DATA(c), sizeof(uc));
			*sender = uc.pid;
		}
		T_CHECK(c->cmsg_type != SCM_RIGHTS, "a notification carried descriptors: \"%s\"", buf);
	}
	T_CHECK(!(mh.msg_flags & MSG_TRUNC), "a notification longer than %zu bytes", len);
	return (int)n;
}

struct run {
	bool as_nobody;
	bool bad_listen_fds;
	const char *extra_arg; /* one more option, e.g. a bad one */
	int lsock, nsock, errfd;
	int keep_lsock; /* >= 0: systemd's socket from an earlier run, kept */
	char sock_path[256], notify_path[256], own_path[256], err_path[256];
};

/* Fork and exec the daemon as systemd would. */
static void start(struct run *r, uint64_t watchdog_usec)
{
	snprintf(r->sock_path, sizeof(r->sock_path), "%s/umapd.sock", dir);
	snprintf(r->notify_path, sizeof(r->notify_path), "%s/notify", dir);
	snprintf(r->own_path, sizeof(r->own_path), "%s/not-used.sock", dir);
	snprintf(r->err_path, sizeof(r->err_path), "%s/stderr", dir);
	unlink(r->own_path);
	if (r->keep_lsock >= 0) {
		r->lsock = r->keep_lsock;
	} else {
		r->lsock = unix_socket(SOCK_STREAM, r->sock_path);
		T_CHECK(listen(r->lsock, 16) == 0, "listen: %s", strerror(errno));
		chmod(r->sock_path, 0666);
	}
	r->nsock = unix_socket(SOCK_DGRAM, r->notify_path);
	int one = 1;
	T_CHECK(setsockopt(r->nsock, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) == 0, "SO_PASSCRED: %s",
		strerror(errno));
	/* The daemon may run as nobody: it must reach the notify socket. */
	chmod(r->notify_path, 0666);
	r->errfd = open(r->err_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	T_CHECK(r->errfd >= 0, "open %s: %s", r->err_path, strerror(errno));
	struct stat est;
	T_CHECK(fstat(r->errfd, &est) == 0, "fstat");

	pid_t pid = fork();
	T_CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		char v[64];
		/* systemd's part: the listening socket at 3, inheritable. */
		int l = fcntl(r->lsock, F_DUPFD_CLOEXEC, 10);
		if (l < 0 || dup2(l, 3) != 3)
			_exit(120);
		dup2(r->errfd, STDERR_FILENO);
		dup2(r->errfd, STDOUT_FILENO);
		clearenv();
		setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
		snprintf(v, sizeof(v), "%ld", (long)getpid());
		setenv("LISTEN_PID", v, 1);
		setenv("LISTEN_FDS", r->bad_listen_fds ? "1x" : "1", 1);
		setenv("LISTEN_FDNAMES", "umapd.socket", 1);
		setenv("NOTIFY_SOCKET", r->notify_path, 1);
		if (watchdog_usec) {
			snprintf(v, sizeof(v), "%llu", (unsigned long long)watchdog_usec);
			setenv("WATCHDOG_USEC", v, 1);
			snprintf(v, sizeof(v), "%ld", (long)getpid());
			setenv("WATCHDOG_PID", v, 1);
		}
		/* stderr is "the journal" (systemd.exec(5): JOURNAL_STREAM=dev:ino). */
		snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)est.st_dev, (unsigned long long)est.st_ino);
		setenv("JOURNAL_STREAM", v, 1);
		if (r->as_nobody) {
			/* What DynamicUser= amounts to: no privileges at all. */
			if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
				_exit(121);
		}
		execl(daemon_path, "umapd", "--config", "/dev/null", "--socket", r->own_path, "--budget", "64M",
		      "--log-level", "debug", r->extra_arg, (char *)NULL);
		_exit(122);
	}
	daemon_pid = pid;
}

static void finish(struct run *r)
{
	close(r->lsock);
	close(r->nsock);
	close(r->errfd);
	unlink(r->sock_path);
	unlink(r->notify_path);
	unlink(r->err_path);
}

static char *read_stderr(struct run *r)
{
	static char buf[65536];
	ssize_t n = pread(r->errfd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void send_all(int s, const void *buf, size_t len)
{
	T_CHECK(send(s, buf, len, MSG_NOSIGNAL) == (ssize_t)len, "send: %s", strerror(errno));
}

static void recv_all(int s, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		T_CHECK(poll(&p, 1, (int)(10000 * t_time_scale())) == 1, "no reply from the daemon within 10 s");
		ssize_t n = recv(s, (char *)buf + got, len - got, 0);
		T_CHECK(n > 0, "the daemon closed the connection (%s)", n < 0 ? strerror(errno) : "EOF");
		got += (size_t)n;
	}
}

/* Connect and send HELLO with role, without waiting for the answer. */
static int hello_send(struct run *r, uint32_t role)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	T_CHECK(s >= 0, "socket: %s", strerror(errno));
	T_CHECK(strlen(r->sock_path) < sizeof(sa.sun_path), "socket path too long");
	memcpy(sa.sun_path, r->sock_path, strlen(r->sock_path) + 1);
	T_CHECK(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s", r->sock_path, strerror(errno));
	struct {
		struct proto_hdr h;
		struct proto_hello b;
	} req;
	memset(&req, 0, sizeof(req));
	req.h = (struct proto_hdr){ .magic = PROTO_MAGIC, .version = PROTO_VERSION, .type = PT_HELLO,
				    .len = sizeof(req.b), .seq = 41 };
	req.b = (struct proto_hello){ .min_version = PROTO_VERSION_MIN, .max_version = PROTO_VERSION, .role = role };
	send_all(s, &req, sizeof(req));
	return s;
}

static void hello_recv(int s, struct proto_hello_reply *rep)
{
	struct proto_hdr h;
	recv_all(s, &h, sizeof(h));
	T_CHECK(h.magic == PROTO_MAGIC && h.type == (PT_HELLO | PT_REPLY) && h.seq == 41 && h.len == sizeof(*rep),
		"HELLO answered with type %#x seq %llu len %u", h.type, (unsigned long long)h.seq, h.len);
	recv_all(s, rep, sizeof(*rep));
}

/* HELLO with role; returns the connected socket. */
static int hello(struct run *r, uint32_t role, struct proto_hello_reply *rep)
{
	int s = hello_send(r, role);
	hello_recv(s, rep);
	return s;
}

/* Wait for READY=1 from the daemon, checking every sender; true if a
 * STATUS= line came with or before it. */
static bool wait_ready(struct run *r, int wait_ms)
{
	char buf[4096];
	pid_t sender;
	bool ready = false, status = false;
	while (!ready) {
		int n = recv_notify(r->nsock, buf, sizeof(buf), wait_ms, &sender);
		if (n < 0) {
			int st;
			if (waitpid(daemon_pid, &st, WNOHANG) == daemon_pid) {
				daemon_pid = -1;
				t_fail("the daemon exited (%s) before READY=1; its stderr: %s", t_wait_str(st), read_stderr(r));
			}
			t_fail("no READY=1 within %d ms; stderr: %s", wait_ms, read_stderr(r));
		}
		T_CHECK(sender == daemon_pid, "notification \"%s\" from pid %d, not the main pid %d (NotifyAccess=main)",
			buf, (int)sender, (int)daemon_pid);
		ready |= strstr(buf, "READY=1") != NULL;
		status |= strncmp(buf, "STATUS=", 7) == 0 || strstr(buf, "\nSTATUS=") != NULL;
		T_CHECK(!strstr(buf, "STOPPING=1"), "STOPPING=1 before READY=1: \"%s\"", buf);
	}
	return status;
}

/* SIGTERM: STOPPING=1, then exit 0. */
static void stop(struct run *r, int wait_ms)
{
	char buf[4096];
	pid_t sender;
	T_CHECK(kill(daemon_pid, SIGTERM) == 0, "kill: %s", strerror(errno));
	bool stopping = false;
	while (!stopping) {
		int n = recv_notify(r->nsock, buf, sizeof(buf), wait_ms, &sender);
		T_CHECK(n >= 0, "no STOPPING=1 within %d ms of SIGTERM; stderr: %s", wait_ms, read_stderr(r));
		stopping = strstr(buf, "STOPPING=1") != NULL;
	}
	int wst;
	t_step("wait for the daemon to exit after STOPPING=1");
	T_CHECK(waitpid(daemon_pid, &wst, 0) == daemon_pid, "waitpid: %s", strerror(errno));
	daemon_pid = -1;
	T_CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "the daemon ended with %s after SIGTERM; stderr: %s",
		t_wait_str(wst), read_stderr(r));
}

static void e2e(bool as_nobody)
{
	struct run r = { .as_nobody = as_nobody, .keep_lsock = -1 };
	const uint64_t wd_usec = 600000; /* pings due every 300 ms */
	char buf[4096];
	pid_t sender;
	int n;

	t_step("start the daemon%s, socket-activated", as_nobody ? " as nobody" : "");
	start(&r, wd_usec);
	int wait_ms = (int)(15000 * t_time_scale());

	/* READY=1 first (STATUS= may ride along or follow). */
	bool status = wait_ready(&r, wait_ms);
	nchecks++;

	t_step("a client and an admin session through the passed socket");
	struct proto_hello_reply rep;
	int cs = hello(&r, PROTO_ROLE_CLIENT, &rep);
	T_CHECK(rep.version == PROTO_VERSION && rep.budget == 64ull << 20, "client HELLO: version %u budget %llu",
		rep.version, (unsigned long long)rep.budget);
	struct proto_hello_reply arep;
	int as = hello(&r, PROTO_ROLE_ADMIN, &arep);
	struct proto_hdr h = { .magic = PROTO_MAGIC, .version = arep.version, .type = PT_STATUS, .len = 0, .seq = 42 };
	send_all(as, &h, sizeof(h));
	recv_all(as, &h, sizeof(h));
	T_CHECK(h.type == (PT_STATUS | PT_REPLY) && h.seq == 42 && h.len == sizeof(struct proto_status),
		"STATUS answered with type %#x len %u", h.type, h.len);
	struct proto_status st;
	recv_all(as, &st, sizeof(st));
	T_CHECK(st.pid == (uint64_t)daemon_pid && st.budget == 64ull << 20 && st.clients >= 1,
		"STATUS: pid %llu (want %d), budget %llu, clients %llu", (unsigned long long)st.pid, (int)daemon_pid,
		(unsigned long long)st.budget, (unsigned long long)st.clients);
	close(cs);
	close(as);
	struct stat sst;
	T_CHECK(stat(r.own_path, &sst) != 0 && errno == ENOENT,
		"the daemon created its own socket %s although systemd passed one", r.own_path);
	nchecks += 3;

	t_step("watchdog pings");
	/* Over 2 s, pings must arrive and never be further apart than
	 * WATCHDOG_USEC (systemd would kill the service then).  Scheduling noise
	 * on a loaded machine is allowed for by the scale factor, not by
	 * loosening the rule. */
	uint64_t t0 = t_now_ns(), last = t0, worst = 0;
	int pings = 0;
	while (t_now_ns() - t0 < 2000000000ull) {
		n = recv_notify(r.nsock, buf, sizeof(buf), 50, &sender);
		if (n < 0)
			continue;
		T_CHECK(sender == daemon_pid, "\"%s\" from pid %d, not %d", buf, (int)sender, (int)daemon_pid);
		status |= strncmp(buf, "STATUS=", 7) == 0 || strstr(buf, "\nSTATUS=") != NULL;
		if (strstr(buf, "WATCHDOG=1")) {
			uint64_t now = t_now_ns();
			if (now - last > worst)
				worst = now - last;
			last = now;
			pings++;
		}
	}
	T_CHECK(pings >= 3, "%d WATCHDOG=1 pings in 2 s with WATCHDOG_USEC=%llu", pings, (unsigned long long)wd_usec);
	T_CHECK(worst <= (uint64_t)(wd_usec * 1000 * t_time_scale()),
		"%.0f ms between two WATCHDOG=1 pings, over WATCHDOG_USEC (%llu ms)", worst / 1e6,
		(unsigned long long)wd_usec / 1000);
	T_CHECK(status, "no STATUS= line among the notifications");
	nchecks += 3;

	t_step("SIGTERM: STOPPING=1 and a clean exit");
	stop(&r, wait_ms);
	nchecks += 2;

	/* The socket is systemd's: the daemon must leave it in place and
	 * listening, so that clients arriving while it restarts wait in the
	 * backlog and are served by the next instance. */
	t_step("restart on the same socket: a client queued meanwhile is served");
	struct stat sst2;
	T_CHECK(stat(r.sock_path, &sst2) == 0 && S_ISSOCK(sst2.st_mode),
		"the daemon removed systemd's socket %s when it stopped", r.sock_path);
	int queued = hello_send(&r, PROTO_ROLE_CLIENT);
	if (!as_nobody) {
		struct run r2 = { .keep_lsock = r.lsock };
		close(r.nsock);
		close(r.errfd);
		start(&r2, 0);
		wait_ready(&r2, wait_ms);
		hello_recv(queued, &rep);
		T_CHECK(rep.budget == 64ull << 20, "queued client's HELLO answered with budget %llu",
			(unsigned long long)rep.budget);
		close(queued);
		stop(&r2, wait_ms);
		/* Check the first run's log below; the second's is checked the same way. */
		r.nsock = r2.nsock;
		r.errfd = r2.errfd;
		nchecks += 2;
	} else {
		close(queued);
	}

	/* Every line on stderr is prefixed for journald: JOURNAL_STREAM named it. */
	t_step("syslog priority prefixes on stderr");
	char *err = read_stderr(&r);
	T_CHECK(err[0] != '\0', "the daemon logged nothing at log_level debug");
	for (char *line = err; *line;) {
		char *nl = strchr(line, '\n');
		T_CHECK(line[0] == '<' && line[1] >= '0' && line[1] <= '7' && line[2] == '>',
			"stderr line without a syslog priority prefix although stderr is the journal: \"%.*s\" "
			"(main.c needs ulog_set_syslog_prefix(dconf_want_syslog_prefix(&dc)))",
			(int)(nl ? nl - line : (long)strlen(line)), line);
		if (!nl)
			break;
		line = nl + 1;
	}
	nchecks++;
	finish(&r);
}

static void refusal(const char *what, bool bad_listen_fds, const char *extra, const char *want_err)
{
	struct run r = { .bad_listen_fds = bad_listen_fds, .extra_arg = extra, .keep_lsock = -1 };
	char buf[1024];
	pid_t sender;
	int st;

	t_step("refusal: %s", what);
	start(&r, 0);
	T_CHECK(waitpid(daemon_pid, &st, 0) == daemon_pid, "waitpid: %s", strerror(errno));
	daemon_pid = -1;
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0, "%s: the daemon ended with %s, want a non-zero exit", what,
		t_wait_str(st));
	while (recv_notify(r.nsock, buf, sizeof(buf), 0, &sender) >= 0)
		T_CHECK(!strstr(buf, "READY=1"), "%s: READY=1 sent anyway", what);
	const char *err = read_stderr(&r);
	T_CHECK(strstr(err, want_err), "%s: stderr \"%s\" does not say \"%s\"", what, err, want_err);
	nchecks++;
	finish(&r);
}

int main(int argc, char **argv)
{
	t_init("e2e_systemd", 120);
	atexit(kill_daemon);
	T_CHECK(argc == 2, "usage: %s PATH-TO-umapd", argv[0]);
	daemon_path = argv[1];
	T_CHECK(access(daemon_path, X_OK) == 0, "%s: %s", daemon_path, strerror(errno));
	T_CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	chmod(dir, 0755); /* the unprivileged run must reach its sockets */

	e2e(false);
	refusal("LISTEN_FDS=1x", true, NULL, "EINVAL");
	refusal("--fillers=0", false, "--fillers=0", "--fillers: expected an integer 1..256");
	const char *how = "as root only (not root: no unprivileged run)";
	if (geteuid() == 0) {
		e2e(true);
		how = "as root and as nobody";
	}
	rmdir(dir);
	t_pass("%d checks %s: READY=1, STATUS=, WATCHDOG=1 within WATCHDOG_USEC, all from the main pid; HELLO and "
	       "STATUS through the passed socket; syslog prefixes; STOPPING=1 and exit 0 on SIGTERM; "
	       "bad LISTEN_FDS and bad options refused before READY=1",
	       nchecks, how);
}
