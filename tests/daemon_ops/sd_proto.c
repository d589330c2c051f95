/*
 * sd_proto - daemon/common/sd_proto through the real protocols:
 *  - sd_notify: a datagram socket bound where NOTIFY_SOCKET points (a path,
 *    and an abstract "@name"); the exact bytes of each datagram, long
 *    messages, descriptors passed with FDSTORE=1, and every refusal;
 *  - socket activation: descriptors at 3.. handed to a re-executed child
 *    with LISTEN_PID set to the child's pid (set between fork and exec, as
 *    systemd does), which must get them with FD_CLOEXEC and a clean
 *    environment; a LISTEN_PID of another process is ignored; malformed
 *    values are refused;
 *  - the watchdog variables.
 */
#include "umapd_test.h"
#include "sd_proto.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int nchecks;
static char self[4096];

/* A datagram socket bound at path (or abstract when path starts with '@'). */
static int dgram_bind(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t l = strlen(path);
	socklen_t len;
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	T_CHECK(s >= 0, "socket: %s", strerror(errno));
	memcpy(sa.sun_path, path, l);
	if (path[0] == '@') {
		sa.sun_path[0] = '\0';
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l);
	} else {
		unlink(path);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l + 1);
	}
	T_CHECK(bind(s, (struct sockaddr *)&sa, len) == 0, "bind %s: %s", path, strerror(errno));
	return s;
}

/* Receive one datagram (without waiting) and compare it byte for byte. */
static void expect_dgram(int s, const char *want, int *fds_out, unsigned want_fds)
{
	char buf[8192];
	union {
		struct cmsghdr align;
		char b[CMSG_SPACE(sizeof(int) * 16)];
	} cm;
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b) };
	ssize_t n = recvmsg(s, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	T_CHECK(n >= 0, "no datagram arrived (want \"%.60s\"): %s", want, strerror(errno));
	T_CHECK((size_t)n == strlen(want) && memcmp(buf, want, (size_t)n) == 0,
		"datagram is \"%.*s\" (%zd bytes), want \"%.60s\" (%zu bytes)", (int)(n > 80 ? 80 : n), buf, n, want,
		strlen(want));
	T_CHECK(!(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)), "datagram truncated (flags %#x)", mh.msg_flags);
	unsigned got = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (unsigned i = 0; i < k && got < 16; i++)
				memcpy(&fds_out[got++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		}
	}
	T_CHECK(got == want_fds, "datagram carried %u descriptors, want %u", got, want_fds);
	nchecks++;
}

static void expect_none(int s)
{
	char b[16];
	ssize_t n = recv(s, b, sizeof(b), MSG_DONTWAIT);
	T_CHECK(n < 0 && errno == EAGAIN, "an unexpected datagram arrived (%zd bytes)", n);
}

static void notify_on(const char *where)
{
	int s = dgram_bind(where);
	setenv("NOTIFY_SOCKET", where, 1);

	t_step("notify to %s: READY=1", where);
	int rc = sdp_notify("READY=1");
	T_CHECK(rc == 1, "sdp_notify(READY=1) to %s = %d, want 1", where, rc);
	expect_dgram(s, "READY=1", NULL, 0);

	t_step("notify to %s: several lines, printf format", where);
	rc = sdp_notify("STATUS=serving %d clients, budget %s\nWATCHDOG=1", 3, "2G");
	T_CHECK(rc == 1, "sdp_notify(STATUS...) = %d", rc);
	expect_dgram(s, "STATUS=serving 3 clients, budget 2G\nWATCHDOG=1", NULL, 0);

	/* Longer than the function's stack buffer: the heap path. */
	t_step("notify to %s: a 3000-byte STATUS", where);
	char big[3000 + 8];
	memcpy(big, "STATUS=", 7);
	for (int i = 7; i < 3007; i++)
		big[i] = (char)('a' + i % 26);
	big[3007] = '\0';
	rc = sdp_notify("%s", big);
	T_CHECK(rc == 1, "sdp_notify(3000 bytes) = %d", rc);
	expect_dgram(s, big, NULL, 0);

	t_step("notify to %s: FDSTORE with two descriptors", where);
	int p[2], got[16];
	T_CHECK(pipe(p) == 0, "pipe: %s", strerror(errno));
	rc = sdp_notify_fds(p, 2, "FDSTORE=1\nFDNAME=%s", "client-7");
	T_CHECK(rc == 1, "sdp_notify_fds = %d", rc);
	expect_dgram(s, "FDSTORE=1\nFDNAME=client-7", got, 2);
	/* The received descriptors are the same pipe: write through one end. */
	T_CHECK(write(got[1], "x", 1) == 1, "write through the passed pipe end: %s", strerror(errno));
	char ch = 0;
	T_CHECK(read(p[0], &ch, 1) == 1 && ch == 'x', "the passed descriptor is not the pipe");
	close(got[0]);
	close(got[1]);
	close(p[0]);
	close(p[1]);
	expect_none(s);
	close(s);
	if (where[0] == '/')
		unlink(where);
}

static void notify_refusals(const char *dir)
{
	char path[300];
	int rc;

	t_step("notify refusals");
	unsetenv("NOTIFY_SOCKET");
	rc = sdp_notify("READY=1");
	T_CHECK(rc == 0, "without NOTIFY_SOCKET sdp_notify = %d, want 0", rc);
	nchecks++;

	setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
	rc = sdp_notify("READY=1");
	T_CHECK(rc == -EAFNOSUPPORT, "NOTIFY_SOCKET=vsock:...: %d, want -EAFNOSUPPORT", rc);
	setenv("NOTIFY_SOCKET", "relative/sock", 1);
	rc = sdp_notify("READY=1");
	T_CHECK(rc == -EAFNOSUPPORT, "NOTIFY_SOCKET=relative: %d, want -EAFNOSUPPORT", rc);
	setenv("NOTIFY_SOCKET", "", 1);
	rc = sdp_notify("READY=1");
	T_CHECK(rc == -EAFNOSUPPORT, "NOTIFY_SOCKET empty: %d, want -EAFNOSUPPORT", rc);
	setenv("NOTIFY_SOCKET", "@", 1);
	rc = sdp_notify("READY=1");
	T_CHECK(rc == -EINVAL, "NOTIFY_SOCKET=@: %d, want -EINVAL", rc);
	char lng[200];
	memset(lng, 'x', sizeof(lng));
	lng[0] = '/';
	lng[108] = '\0'; /* 108 bytes + NUL does not fit sun_path */
	setenv("NOTIFY_SOCKET", lng, 1);
	rc = sdp_notify("READY=1");
	T_CHECK(rc == -EINVAL, "NOTIFY_SOCKET of 108 bytes: %d, want -EINVAL", rc);
	snprintf(path, sizeof(path), "%s/no-such-socket", dir);
	setenv("NOTIFY_SOCKET", path, 1);
	rc = sdp_notify("READY=1");
	T_CHECK(rc == -ENOENT, "NOTIFY_SOCKET naming nothing: %d (%s), want -ENOENT", rc, t_errname(-rc));
	int one = 1;
	rc = sdp_notify_fds(&one, 254, "FDSTORE=1");
	T_CHECK(rc == -EINVAL, "254 descriptors: %d, want -EINVAL", rc);
	int neg = -1;
	rc = sdp_notify_fds(&neg, 1, "FDSTORE=1");
	T_CHECK(rc == -EINVAL, "a negative descriptor: %d, want -EINVAL", rc);
	unsetenv("NOTIFY_SOCKET");
	nchecks += 9;
}

/* ---- socket activation ---- */

/* Child side: report what sdp_listen_fds saw, as one line on stdout. */
static int listen_child(void)
{
	int fds[8];
	int n = sdp_listen_fds(fds, 8);
	printf("n=%d", n);
	for (int i = 0; i < n; i++) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		int fl = fcntl(fds[i], F_GETFD);
		memset(&sa, 0, sizeof(sa));
		if (getsockname(fds[i], (struct sockaddr *)&sa, &len) != 0)
			snprintf(sa.sun_path, sizeof(sa.sun_path), "?%s", strerror(errno));
		printf(" fd%d=%s%s", fds[i], sa.sun_path, fl >= 0 && (fl & FD_CLOEXEC) ? ",cloexec" : ",inherit");
	}
	printf(" env=%s,%s,%s\n", getenv("LISTEN_PID") ? "PID" : "-", getenv("LISTEN_FDS") ? "FDS" : "-",
	       getenv("LISTEN_FDNAMES") ? "NAMES" : "-");
	fflush(stdout);
	return 0;
}

static int listen_bind(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	T_CHECK(s >= 0, "socket: %s", strerror(errno));
	unlink(path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	T_CHECK(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(s, 4) == 0, "bind/listen %s: %s", path,
		strerror(errno));
	return s;
}

/*
 * Start this binary as the "listen-child" with socks[] at 3, 4, ... and
 * LISTEN_FDS=n.  pid_mode: 0 LISTEN_PID = the child's own pid (set after
 * fork, before exec: exec keeps the pid), 1 = the parent's pid (meant for
 * someone else).  Returns the child's stdout line.
 */
static void run_listen_child(const int *socks, int n, int pid_mode, char *out, size_t outlen)
{
	int pipefd[2];
	T_CHECK(pipe2(pipefd, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
	pid_t parent = getpid();
	pid_t pid = fork();
	T_CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		char v[32];
		/* Move the sockets out of the way first, so placing one at 3 cannot
		 * overwrite another that happens to be at 3 already. */
		int tmp[8];
		for (int i = 0; i < n; i++)
			tmp[i] = fcntl(socks[i], F_DUPFD_CLOEXEC, 100);
		for (int i = 0; i < n; i++)
			if (tmp[i] < 0 || dup2(tmp[i], SDP_LISTEN_FDS_START + i) < 0) /* dup2: no CLOEXEC */
				_exit(90);
		dup2(pipefd[1], STDOUT_FILENO);
		snprintf(v, sizeof(v), "%ld", (long)(pid_mode == 0 ? getpid() : parent));
		setenv("LISTEN_PID", v, 1);
		snprintf(v, sizeof(v), "%d", n);
		setenv("LISTEN_FDS", v, 1);
		setenv("LISTEN_FDNAMES", "a:b", 1);
		execl(self, self, "listen-child", (char *)NULL);
		_exit(91);
	}
	close(pipefd[1]);
	size_t got = 0;
	ssize_t r;
	while (got + 1 < outlen && (r = read(pipefd[0], out + got, outlen - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = '\0';
	close(pipefd[0]);
	int st;
	T_CHECK(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "listen child: %s (output \"%s\")", t_wait_str(st), out);
	char *nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
}

static void activation(const char *dir)
{
	char p1[300], p2[300], want[1024], out[1024];

	snprintf(p1, sizeof(p1), "%s/a.sock", dir);
	snprintf(p2, sizeof(p2), "%s/b.sock", dir);
	int socks[2] = { listen_bind(p1), listen_bind(p2) };

	t_step("socket activation: two sockets for the child itself");
	run_listen_child(socks, 2, 0, out, sizeof(out));
	snprintf(want, sizeof(want), "n=2 fd3=%s,cloexec fd4=%s,cloexec env=-,-,-", p1, p2);
	T_CHECK(strcmp(out, want) == 0, "child saw \"%s\", want \"%s\"", out, want);
	nchecks++;

	t_step("socket activation: LISTEN_PID of another process");
	run_listen_child(socks, 2, 1, out, sizeof(out));
	T_CHECK(strcmp(out, "n=0 env=-,-,-") == 0, "child saw \"%s\", want \"n=0 env=-,-,-\"", out);
	nchecks++;
	close(socks[0]);
	close(socks[1]);
	unlink(p1);
	unlink(p2);
}

static void listen_env(const char *pid, const char *fds, int want, int max)
{
	int got[4];
	if (pid)
		setenv("LISTEN_PID", pid, 1);
	else
		unsetenv("LISTEN_PID");
	if (fds)
		setenv("LISTEN_FDS", fds, 1);
	else
		unsetenv("LISTEN_FDS");
	setenv("LISTEN_FDNAMES", "x", 1);
	int rc = sdp_listen_fds(got, max);
	T_CHECK(rc == want, "LISTEN_PID=%s LISTEN_FDS=%s (max %d): %d, want %d", pid ? pid : "(unset)",
		fds ? fds : "(unset)", max, rc, want);
	T_CHECK(!getenv("LISTEN_PID") && !getenv("LISTEN_FDS") && !getenv("LISTEN_FDNAMES"),
		"LISTEN_PID=%s LISTEN_FDS=%s: the variables are still set afterwards", pid ? pid : "(unset)",
		fds ? fds : "(unset)");
	nchecks++;
}

static void activation_refusals(void)
{
	char me[32];
	snprintf(me, sizeof(me), "%ld", (long)getpid());

	t_step("socket activation: malformed and foreign values");
	listen_env(NULL, NULL, 0, 4);
	listen_env(me, NULL, 0, 4);   /* a lone variable means nothing */
	listen_env(NULL, "1", 0, 4);
	listen_env(me, "0", 0, 4);
	listen_env("1", "1", 0, 4);   /* pid 1 is not us */
	const char *badpids[] = { "", "0", "-5", "+5", " 5", "5 ", "12a", "0x10", "99999999999999999999" };
	for (size_t i = 0; i < sizeof(badpids) / sizeof(badpids[0]); i++)
		listen_env(badpids[i], "1", -EINVAL, 4);
	const char *badfds[] = { "", "-1", "+1", "1x", " 1", "2147483645", "99999999999999999999" };
	for (size_t i = 0; i < sizeof(badfds) / sizeof(badfds[0]); i++)
		listen_env(me, badfds[i], -EINVAL, 4);

	/* Descriptors announced but not open. */
	int probe = fcntl(0, F_DUPFD, 900);
	T_CHECK(probe >= 0, "dup: %s", strerror(errno));
	close(probe); /* fd 900 and above: free, so 3..900 includes a closed one */
	listen_env(me, "898", -EBADF, 4);

	/* More than the caller has room for: refused, but all marked
	 * close-on-exec.  Opening two descriptors fills the lowest free slots,
	 * so afterwards at least 3 and 4 are open: a run of n_open >= 2. */
	int a = open("/dev/null", O_RDONLY), b = open("/dev/null", O_RDONLY);
	T_CHECK(a >= 3 && b >= 3, "open /dev/null: %s", strerror(errno));
	char fdsn[16];
	int n_open = 0;
	for (int fd = 3; fd < 1024 && fcntl(fd, F_GETFD) >= 0; fd++)
		n_open++;
	T_CHECK(n_open >= 2, "fds 3 and 4 should be open (%d open from 3)", n_open);
	snprintf(fdsn, sizeof(fdsn), "%d", n_open);
	int keep[1024];
	for (int fd = 3; fd < 3 + n_open; fd++) {
		keep[fd] = fcntl(fd, F_GETFD);
		fcntl(fd, F_SETFD, 0);
	}
	listen_env(me, fdsn, -E2BIG, 1);
	for (int fd = 3; fd < 3 + n_open; fd++) {
		T_CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC, "fd %d lacks FD_CLOEXEC after an -E2BIG refusal", fd);
		fcntl(fd, F_SETFD, keep[fd]);
	}
	/* And with room for them all: the count and the numbers. */
	int all[1024];
	setenv("LISTEN_PID", me, 1);
	setenv("LISTEN_FDS", fdsn, 1);
	int rc = sdp_listen_fds(all, 1024);
	T_CHECK(rc == n_open, "LISTEN_FDS=%d: %d", n_open, rc);
	for (int i = 0; i < rc; i++)
		T_CHECK(all[i] == 3 + i, "fds[%d] = %d, want %d", i, all[i], 3 + i);
	for (int fd = 3; fd < 3 + n_open; fd++)
		fcntl(fd, F_SETFD, keep[fd]);
	close(a);
	close(b);
	nchecks++;
}

static void watchdog(void)
{
	char me[32], other[32];
	snprintf(me, sizeof(me), "%ld", (long)getpid());
	snprintf(other, sizeof(other), "%ld", (long)getpid() + 1);

	t_step("watchdog variables");
	struct {
		const char *usec, *pid;
		uint64_t want;
	} cases[] = {
		{ NULL, NULL, 0 },          { "30000000", NULL, 30000000 }, { "30000000", me, 30000000 },
		{ "30000000", other, 0 },   { "30000000", "x", 0 },         { "0", NULL, 0 },
		{ "", NULL, 0 },            { "12s", NULL, 0 },             { "-5", NULL, 0 },
		{ "18446744073709551615", NULL, UINT64_MAX },               { "18446744073709551616", NULL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].usec)
			setenv("WATCHDOG_USEC", cases[i].usec, 1);
		else
			unsetenv("WATCHDOG_USEC");
		if (cases[i].pid)
			setenv("WATCHDOG_PID", cases[i].pid, 1);
		else
			unsetenv("WATCHDOG_PID");
		uint64_t got = sdp_watchdog_usec();
		T_CHECK(got == cases[i].want, "WATCHDOG_USEC=%s WATCHDOG_PID=%s: %llu, want %llu",
			cases[i].usec ? cases[i].usec : "(unset)", cases[i].pid ? cases[i].pid : "(unset)",
			(unsigned long long)got, (unsigned long long)cases[i].want);
		nchecks++;
	}
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "listen-child") == 0)
		return listen_child();

	t_init("sd_proto", 60);
	ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
	T_CHECK(l > 0, "readlink /proc/self/exe: %s", strerror(errno));
	self[l] = '\0';

	char dir[] = "/tmp/umapd-sdp-XXXXXX";
	T_CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	char path[300], abs[64];
	snprintf(path, sizeof(path), "%s/notify.sock", dir);
	snprintf(abs, sizeof(abs), "@umapd-test-notify-%ld", (long)getpid());

	notify_on(path);
	notify_on(abs);
	notify_refusals(dir);
	activation(dir);
	activation_refusals();
	watchdog();
	rmdir(dir);
	t_pass("%d checks: notify datagrams (path and abstract, long, with descriptors), refusals, "
	       "socket activation in a re-executed child, malformed LISTEN_*, watchdog variables",
	       nchecks);
}
