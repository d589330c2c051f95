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
 * With the generated umapd.service as a second argument, a third run puts
 * the daemon in the unit's confinement (see "the unit's confinement" below)
 * and has a client page a file through it.
 *
 *   test_dops_e2e_systemd PATH-TO-umapd [umapd.service]
 */
#include "umapd_test.h"
#include "proto/proto.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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

/* ---- the unit's confinement, rebuilt for a test ----
 *
 * umapd.service runs the daemon with DynamicUser=, NoNewPrivileges=,
 * ProtectSystem=strict, PrivateNetwork=, PrivateIPC=,
 * MemoryDenyWriteExecute= and a SystemCallFilter=.  Without systemd as
 * PID 1 the unit cannot be started here, so the sandboxed run builds the
 * same confinement by hand: new mount, network and IPC namespaces with the
 * whole tree read-only, no_new_privs, uid nobody, PR_SET_MDWE, and a seccomp
 * filter made from the unit's own SystemCallFilter= lines (groups expanded
 * by `systemd-analyze syscall-filter`, refused calls failing with the
 * unit's SystemCallErrorNumber=) -- then a client pages a file through it.
 * The filter is compiled in the parent (libseccomp, loaded with dlopen so
 * the build needs no new dependency) and only installed in the child.
 */
static struct sock_filter *sb_insns;
static unsigned short sb_len;

#define SB_MAX_NAMES 2048
struct sb_group {
	char name[64];
	char *items[600];
	int n;
};
static struct sb_group *sb_groups;
static int sb_ngroups;

static int sb_load_groups(void)
{
	FILE *f = popen("systemd-analyze syscall-filter 2>/dev/null", "r");
	char line[256];
	struct sb_group *g = NULL;
	if (!f)
		return -1;
	sb_groups = calloc(64, sizeof(*sb_groups));
	if (!sb_groups) {
		pclose(f);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '@' && sb_ngroups < 64) {
			g = &sb_groups[sb_ngroups++];
			snprintf(g->name, sizeof(g->name), "%.63s", line);
		} else if (g && strncmp(line, "    ", 4) == 0 && line[4] != '#' && line[4] && g->n < 600) {
			g->items[g->n++] = strdup(line + 4);
		}
	}
	return pclose(f) == 0 && sb_ngroups > 0 ? 0 : -1;
}

/* Add (sign 1) or remove (sign -1) a name or @group, recursively. */
static void sb_apply(const char *name, int sign, char **set, int *n, int depth)
{
	if (depth > 8)
		return;
	if (name[0] == '@') {
		for (int i = 0; i < sb_ngroups; i++)
			if (strcmp(sb_groups[i].name, name) == 0)
				for (int j = 0; j < sb_groups[i].n; j++)
					sb_apply(sb_groups[i].items[j], sign, set, n, depth + 1);
		return;
	}
	for (int i = 0; i < *n; i++) {
		if (strcmp(set[i], name) == 0) {
			if (sign < 0)
				set[i] = set[--*n];
			return;
		}
	}
	if (sign > 0 && *n < SB_MAX_NAMES)
		set[(*n)++] = (char *)name;
}

/* Compile the unit's filter; NULL or why the sandboxed run is skipped. */
static const char *sandbox_prepare(const char *unit)
{
	static char why[256];
	static char *set[SB_MAX_NAMES];
	int n = 0, err = EPERM;
	/* The unit's filter lines, tokenised in place and kept: set[] points into them. */
	static char lines[16][2048];
	int nlines = 0;
	char line[2048];

	if (sb_load_groups() != 0)
		return "systemd-analyze syscall-filter is not available";
	FILE *u = fopen(unit, "r");
	if (!u) {
		snprintf(why, sizeof(why), "cannot read %s", unit);
		return why;
	}
	bool any = false;
	while (fgets(line, sizeof(line), u)) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "SystemCallErrorNumber=", 22) == 0)
			err = strcmp(line + 22, "EPERM") == 0 ? EPERM : EACCES;
		if (strncmp(line, "SystemCallFilter=", 17) != 0)
			continue;
		if (nlines == 16)
			break;
		char *v = strcpy(lines[nlines++], line + 17);
		int sign = 1;
		if (*v == '~') {
			sign = -1;
			v++;
		}
		for (char *tok = strtok(v, " "); tok; tok = strtok(NULL, " "))
			sb_apply(tok, sign, set, &n, 0);
		any = true;
	}
	fclose(u);
	if (!any || n == 0)
		return "the unit has no SystemCallFilter=";

	void *lib = dlopen("libseccomp.so.2", RTLD_NOW);
	if (!lib)
		return "libseccomp.so.2 is not installed";
	void *(*s_init)(uint32_t) = (void *(*)(uint32_t))dlsym(lib, "seccomp_init");
	int (*s_rule)(void *, uint32_t, int, unsigned, ...) = (int (*)(void *, uint32_t, int, unsigned, ...))dlsym(lib, "seccomp_rule_add");
	int (*s_resolve)(const char *) = (int (*)(const char *))dlsym(lib, "seccomp_syscall_resolve_name");
	int (*s_export)(void *, int) = (int (*)(void *, int))dlsym(lib, "seccomp_export_bpf");
	void (*s_release)(void *) = (void (*)(void *))dlsym(lib, "seccomp_release");
	if (!s_init || !s_rule || !s_resolve || !s_export || !s_release)
		return "libseccomp lacks a function this test needs";
	void *ctx = s_init(0x00050000u | (uint32_t)err); /* SCMP_ACT_ERRNO(err) */
	T_CHECK(ctx != NULL, "seccomp_init failed");
	int allowed = 0;
	for (int i = 0; i < n; i++) {
		int nr = s_resolve(set[i]);
		if (nr >= 0 && s_rule(ctx, 0x7fff0000u /* SCMP_ACT_ALLOW */, nr, 0) == 0)
			allowed++;
	}
	int mfd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
	T_CHECK(mfd >= 0, "memfd_create: %s", strerror(errno));
	T_CHECK(s_export(ctx, mfd) == 0, "seccomp_export_bpf failed");
	off_t sz = lseek(mfd, 0, SEEK_END);
	T_CHECK(sz > 0 && sz % (off_t)sizeof(struct sock_filter) == 0 && sz / (off_t)sizeof(struct sock_filter) < 65536,
		"exported filter of %lld bytes", (long long)sz);
	sb_insns = malloc((size_t)sz);
	T_CHECK(sb_insns && pread(mfd, sb_insns, (size_t)sz, 0) == sz, "read the filter back");
	sb_len = (unsigned short)(sz / (off_t)sizeof(struct sock_filter));
	close(mfd);
	s_release(ctx);
	printf("sandbox: %d system calls allowed by umapd.service's filter, others fail with %s\n", allowed,
	       t_errname(err));
	return NULL;
}

/* In the child, as root: namespaces and a read-only tree.  Only system
 * calls, nothing that allocates (we are a fork of a threaded process). */
static int sandbox_enter(void)
{
	if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC) != 0)
		return -1;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return -1;
	struct mount_attr a = { .attr_set = MOUNT_ATTR_RDONLY };
	if (syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &a, sizeof(a)) != 0)
		return -1;
	return 0;
}

/* In the child, after dropping to nobody: MDWE, no_new_privs, the filter. */
static int sandbox_filter(void)
{
	(void)prctl(65 /* PR_SET_MDWE */, 1 /* PR_MDWE_REFUSE_EXEC_GAIN */, 0, 0, 0); /* Linux 6.3+ */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	struct sock_fprog prog = { .len = sb_len, .filter = sb_insns };
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

/* Can this machine build the namespaces at all (containers may refuse)? */
static bool sandbox_possible(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(sandbox_enter() == 0 ? 0 : 1);
	int st;
	return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

struct run {
	bool as_nobody;
	bool sandbox;            /* umapd.service's confinement, as far as a test can build it */
	uint64_t budget;         /* bytes; 0: 64M */
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
		/* systemd gives a service a clean environment; the sanitizer
		 * settings CI chose are kept so a report still stops the daemon. */
		static const char *const keep[] = { "ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS" };
		char kept[3][1024];
		for (int i = 0; i < 3; i++)
			snprintf(kept[i], sizeof(kept[i]), "%s", getenv(keep[i]) ? getenv(keep[i]) : "");
		clearenv();
		for (int i = 0; i < 3; i++)
			if (kept[i][0])
				setenv(keep[i], kept[i], 1);
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
		/* Sanitizer builds: LeakSanitizer's exit-time check traces the
		 * process (ptrace), which the unit's filter rightly refuses; the
		 * production daemon has no such check. */
		if (r->sandbox) {
			char ao[1100];
			snprintf(ao, sizeof(ao), "%s%sdetect_leaks=0", kept[0], kept[0][0] ? ":" : "");
			setenv("ASAN_OPTIONS", ao, 1);
		}
		if (r->sandbox && sandbox_enter() != 0)
			_exit(123);
		if (r->as_nobody) {
			/* What DynamicUser= amounts to: no privileges at all. */
			if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
				_exit(121);
		}
		if (r->sandbox && sandbox_filter() != 0)
			_exit(124);
		snprintf(v, sizeof(v), "%llu", (unsigned long long)(r->budget ? r->budget : 64ull << 20));
		execl(daemon_path, "umapd", "--config", "/dev/null", "--socket", r->own_path, "--budget", v,
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

static struct proto_status admin_status(struct run *r)
{
	struct proto_hello_reply arep;
	int as = hello(r, PROTO_ROLE_ADMIN, &arep);
	struct proto_hdr h = { .magic = PROTO_MAGIC, .version = arep.version, .type = PT_STATUS, .len = 0, .seq = 42 };
	send_all(as, &h, sizeof(h));
	recv_all(as, &h, sizeof(h));
	T_CHECK(h.type == (PT_STATUS | PT_REPLY) && h.seq == 42 && h.len == sizeof(struct proto_status),
		"STATUS answered with type %#x len %u", h.type, h.len);
	struct proto_status st;
	recv_all(as, &st, sizeof(st));
	close(as);
	return st;
}

/*
 * A client process paging a file 4x the budget through the daemon: read
 * every byte, write half, flush, evict, unmap; the file holds the writes.
 * This makes the daemon fill (UFFDIO_COPY), write-protect, write back and
 * punch pages out of its memfds -- under the sandbox, every system call
 * those need must get through the unit's filter.
 */
static const char *client_sock;
static size_t client_len;

static int paging_client(void)
{
	char path[300];
	t_init("e2e_systemd-client", (unsigned)(120 * t_time_scale()));
	client_sock = getenv("E2E_CLIENT_SOCKET");
	client_len = getenv("E2E_CLIENT_LEN") ? strtoull(getenv("E2E_CLIENT_LEN"), NULL, 10) : 0;
	T_CHECK(client_sock && client_len >= 65536, "E2E_CLIENT_SOCKET / E2E_CLIENT_LEN not set");
	t_step("client: connect");
	if (umapd_connect(client_sock) != 0) {
		if (errno == ENOTSUP || errno == EPERM)
			return T_SKIP;
		t_fail("umapd_connect(%s): %s", client_sock, t_errname(errno));
	}
	int fd = t_tmpfile(path);
	t_write_file_pat(fd, 0, client_len, 1);
	t_step("client: read %zu bytes", client_len);
	uint8_t *p = t_map(client_len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	t_check_pat("read through the daemon", p, client_len, 0, 1);
	t_step("client: write half, flush");
	t_fill_pat(p, client_len / 2, 0, 2);
	T_OK(umapd_flush(p, client_len));
	t_check_file_pat("file after flush", fd, 0, client_len / 2, 2);
	t_check_file_pat("file after flush, other half", fd, (off_t)(client_len / 2), client_len / 2, 1);
	t_step("client: write, evict, read back");
	memset(p + 8192, 0x5a, 4096);
	T_OK(umapd_evict(p, client_len));
	T_CHECK(p[8192] == 0x5a && p[12287] == 0x5a, "an evicted write was lost: %#x", p[8192]);
	t_unmap(p);
	uint8_t b[4096];
	t_pread_all(fd, b, sizeof(b), 8192);
	T_CHECK(b[0] == 0x5a && b[4095] == 0x5a, "the file lacks the evicted write: %#x", b[0]);
	close(fd);
	return 0;
}

/* mode 0: root; 1: as nobody; 2: as nobody in the unit's sandbox, paging a file. */
static void e2e(int mode)
{
	bool as_nobody = mode >= 1;
	uint64_t budget = mode == 2 ? 2ull << 20 : 64ull << 20;
	struct run r = { .as_nobody = as_nobody, .sandbox = mode == 2, .budget = budget, .keep_lsock = -1 };
	const uint64_t wd_usec = 600000; /* pings due every 300 ms */
	char buf[4096];
	pid_t sender;
	int n;

	t_step("start the daemon%s, socket-activated",
	       mode == 2 ? " in umapd.service's sandbox" : as_nobody ? " as nobody" : "");
	start(&r, wd_usec);
	int wait_ms = (int)(15000 * t_time_scale());

	/* READY=1 first (STATUS= may ride along or follow). */
	bool status = wait_ready(&r, wait_ms);
	nchecks++;

	t_step("a client and an admin session through the passed socket");
	struct proto_hello_reply rep;
	int cs = hello(&r, PROTO_ROLE_CLIENT, &rep);
	T_CHECK(rep.version == PROTO_VERSION && rep.budget == budget, "client HELLO: version %u budget %llu",
		rep.version, (unsigned long long)rep.budget);
	struct proto_status st = admin_status(&r);
	T_CHECK(st.pid == (uint64_t)daemon_pid && st.budget == budget && st.clients >= 1,
		"STATUS: pid %llu (want %d), budget %llu, clients %llu", (unsigned long long)st.pid, (int)daemon_pid,
		(unsigned long long)st.budget, (unsigned long long)st.clients);
	close(cs);
	if (mode == 2) {
		t_step("a client pages a file 4x the budget through the sandboxed daemon");
		client_sock = r.sock_path;
		client_len = (size_t)budget * 4;
		char *cerr = NULL, esock[300], elen[64];
		/* A fresh process (re-executed, not just forked): the client starts
		 * threads, which TSan refuses in a fork of a threaded process. */
		snprintf(esock, sizeof(esock), "E2E_CLIENT_SOCKET=%s", client_sock);
		snprintf(elen, sizeof(elen), "E2E_CLIENT_LEN=%zu", client_len);
		const char *cenv[] = { esock, elen, NULL };
		int cst = t_reexec("paging-client", cenv, (unsigned)(120 * t_time_scale()), &cerr);
		if (WIFEXITED(cst) && WEXITSTATUS(cst) == T_SKIP) {
			printf("sandbox: paging skipped, userfaultfd lacks shmem minor faults or write protection here\n");
		} else {
			T_CHECK(WIFEXITED(cst) && WEXITSTATUS(cst) == 0,
				"the paging client ended with %s: %s; the daemon's stderr: %s", t_wait_str(cst),
				cerr ? cerr : "", read_stderr(&r));
			st = admin_status(&r);
			T_CHECK(st.total.fills > 0 && st.total.evictions > 0 && st.total.bytes_written > 0 &&
					st.total.io_errors == 0,
				"daemon counters after paging: %llu fills, %llu evictions, %llu bytes written, %llu I/O errors",
				(unsigned long long)st.total.fills, (unsigned long long)st.total.evictions,
				(unsigned long long)st.total.bytes_written, (unsigned long long)st.total.io_errors);
			nchecks += 2;
		}
		free(cerr);
	}
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
	if (argc == 2 && strcmp(argv[1], "paging-client") == 0)
		return paging_client();
	t_init("e2e_systemd", 120);
	atexit(kill_daemon);
	T_CHECK(argc == 2 || argc == 3, "usage: %s PATH-TO-umapd [umapd.service]", argv[0]);
	daemon_path = argv[1];
	T_CHECK(access(daemon_path, X_OK) == 0, "%s: %s", daemon_path, strerror(errno));
	T_CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	chmod(dir, 0755); /* the unprivileged run must reach its sockets */

	e2e(0);
	refusal("LISTEN_FDS=1x", true, NULL, "EINVAL");
	refusal("--fillers=0", false, "--fillers=0", "--fillers: expected an integer 1..256");
	const char *how = "as root only (not root: no unprivileged or sandboxed run)";
	if (geteuid() == 0) {
		e2e(1);
		how = "as root and as nobody (no unit given: no sandboxed run)";
		if (argc == 3) {
			const char *skip = sandbox_prepare(argv[2]);
			if (!skip && !sandbox_possible())
				skip = "this machine refuses new mount/network/IPC namespaces";
			if (skip) {
				printf("sandbox: skipped: %s\n", skip);
				how = "as root and as nobody (sandboxed run skipped)";
			} else {
				e2e(2);
				how = "as root, as nobody, and as nobody in umapd.service's sandbox paging a file";
			}
		}
	}
	rmdir(dir);
	t_pass("%d checks %s: READY=1, STATUS=, WATCHDOG=1 within WATCHDOG_USEC, all from the main pid; HELLO and "
	       "STATUS through the passed socket; syslog prefixes; STOPPING=1 and exit 0 on SIGTERM; "
	       "bad LISTEN_FDS and bad options refused before READY=1",
	       nchecks, how);
}
