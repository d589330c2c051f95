/*
 * tests/daemon/dtest.c - see dtest.h.
 */
#include "dtest.h"

#include <errno.h>
#include <fcntl.h>
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

#include "umapd_test.h"

extern char **environ;

/* fork + exec, the child dying with us (a failed test leaves nothing running). */
static pid_t spawn(const char *const *argv, char **env, const char *log)
{
	pid_t parent = getpid(), pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		t_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (log) {
			int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
			int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);

			if (fd >= 0)
				dup2(fd, 2);
			if (nul >= 0)
				dup2(nul, 1);
		}
		execve(argv[0], (char *const *)argv, env);
		_exit(127);
	}
	return pid;
}

static void launch(struct dt_daemon *d)
{
	const char *argv[16];
	int n = 0;

	argv[n++] = UMAPD_DAEMON_PATH;
	argv[n++] = "--config=/dev/null";
	static char sockopt[200], budopt[64];
	snprintf(sockopt, sizeof(sockopt), "--socket=%s", d->sock);
	snprintf(budopt, sizeof(budopt), "--budget=%s", d->budget);
	argv[n++] = sockopt;
	argv[n++] = budopt;
	argv[n++] = "--log-level=info";
	argv[n++] = "--log-prefix=plain";
	for (int i = 0; i < 4 && d->extra[i][0]; i++)
		argv[n++] = d->extra[i];
	argv[n] = NULL;
	d->pid = spawn(argv, environ, d->log);
	/* Ready when it accepts a connection. */
	for (int i = 0; i < 1000; i++) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		strcpy(sa.sun_path, d->sock);
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(s);
			return;
		}
		close(s);
		int st;
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			dt_daemon_dump_log(d);
			t_fail("umapd exited at start: %s", t_wait_str(st));
		}
		usleep(10000);
	}
	dt_daemon_dump_log(d);
	t_fail("umapd did not accept connections within 10 s");
}

void dt_daemon_start(struct dt_daemon *d, const char *budget, const char *const *extra)
{
	memset(d, 0, sizeof(*d));
	strcpy(d->dir, "/tmp/umapd-dtest-XXXXXX");
	if (!mkdtemp(d->dir))
		t_fail("mkdtemp: %s", strerror(errno));
	snprintf(d->sock, sizeof(d->sock), "%s/umapd.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/umapd.log", d->dir);
	snprintf(d->budget, sizeof(d->budget), "%s", budget);
	for (int i = 0; extra && extra[i] && i < 4; i++)
		snprintf(d->extra[i], sizeof(d->extra[i]), "%s", extra[i]);
	launch(d);
}

void dt_daemon_restart(struct dt_daemon *d)
{
	launch(d);
}

int dt_daemon_stop(struct dt_daemon *d, int sig)
{
	int st = 0;

	if (d->pid <= 0)
		return 0;
	kill(d->pid, sig);
	waitpid(d->pid, &st, 0);
	d->pid = 0;
	return st;
}

void dt_daemon_alive(struct dt_daemon *d, const char *when)
{
	int st;

	if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
		d->pid = 0;
		dt_daemon_dump_log(d);
		t_fail("umapd died %s: %s", when, t_wait_str(st));
	}
}

void dt_daemon_dump_log(const struct dt_daemon *d)
{
	char buf[16384];
	int fd = open(d->log, O_RDONLY);
	ssize_t n;
	off_t sz = fd >= 0 ? lseek(fd, 0, SEEK_END) : 0;

	if (fd < 0)
		return;
	lseek(fd, sz > (off_t)sizeof(buf) ? sz - (off_t)sizeof(buf) : 0, SEEK_SET);
	fprintf(stderr, "---- umapd log (tail) ----\n");
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stderr);
	fprintf(stderr, "---- end of umapd log ----\n");
	close(fd);
}

int dt_admin_open(const struct dt_daemon *d)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct proto_hello h = { 1, PROTO_VERSION, PROTO_ROLE_ADMIN, 0 };
	struct proto_msg m;
	struct proto_rx rx;
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ret;

	strcpy(sa.sun_path, d->sock);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		t_fail("connect %s: %s", d->sock, strerror(errno));
	proto_rx_init(&rx);
	ret = dt_request(s, PT_HELLO, &h, sizeof(h), &m, &rx);
	proto_rx_free(&rx);
	if (ret < 0)
		t_fail("admin HELLO: %s", t_errname(-ret));
	return s;
}

int dt_request(int s, uint16_t type, const void *p, uint32_t len, struct proto_msg *out, struct proto_rx *rx)
{
	static uint64_t seq;
	struct proto_hdr h;
	int ret;

	proto_rx_reset(rx);
	ret = proto_send(s, type, PROTO_VERSION, ++seq, p, len, NULL, 0, false);
	if (ret < 0)
		t_fail("send %s: %s", proto_type_name(type), t_errname(-ret));
	ret = proto_rx_frame(s, rx);
	if (ret != 1)
		t_fail("reply to %s: %s", proto_type_name(type), t_errname(-ret));
	memcpy(&h, rx->hdr, sizeof(h));
	ret = proto_decode(&h, rx->payload, rx->fds, rx->nfds, out);
	if (ret < 0)
		t_fail("reply to %s does not decode: %s", proto_type_name(type), t_errname(-ret));
	if (h.seq != seq)
		t_fail("reply to %s has seq %llu, sent %llu", proto_type_name(type), (unsigned long long)h.seq,
		       (unsigned long long)seq);
	if (h.type == PT_ERROR)
		return -out->u.error.err;
	if (h.type != (type | PT_REPLY))
		t_fail("reply to %s has type %#x", proto_type_name(type), h.type);
	return 0;
}

void dt_status(const struct dt_daemon *d, struct proto_status *st)
{
	int s = dt_admin_open(d);
	struct proto_msg m;
	struct proto_rx rx;

	proto_rx_init(&rx);
	if (dt_request(s, PT_STATUS, NULL, 0, &m, &rx) < 0)
		t_fail("STATUS refused");
	*st = m.u.status;
	proto_rx_free(&rx);
	close(s);
}

int dt_clients(const struct dt_daemon *d, uint64_t *resident, int max)
{
	int s = dt_admin_open(d), n = 0;
	struct proto_msg m;
	struct proto_rx rx;

	proto_rx_init(&rx);
	if (dt_request(s, PT_CLIENTS, NULL, 0, &m, &rx) < 0)
		t_fail("CLIENTS refused");
	for (uint32_t i = 0; i < m.count; i++) {
		struct proto_client_info ci;

		memcpy(&ci, (const char *)m.list + i * sizeof(ci), sizeof(ci));
		if (ci.role != PROTO_ROLE_CLIENT)
			continue;
		if (n < max)
			resident[n] = ci.resident;
		n++;
	}
	proto_rx_free(&rx);
	close(s);
	return n;
}

pid_t dt_spawn(const struct dt_daemon *d, const char *const *args)
{
	const char *argv[16];
	char env_sock[200];
	char **env;
	size_t n = 0, k = 0;
	pid_t pid;

	argv[k++] = "/proc/self/exe";
	for (size_t i = 0; args[i] && k < 15; i++)
		argv[k++] = args[i];
	argv[k] = NULL;
	while (environ[n])
		n++;
	env = calloc(n + 2, sizeof(*env));
	k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "UMAPD_SOCKET=", 13) != 0)
			env[k++] = environ[i];
	snprintf(env_sock, sizeof(env_sock), "UMAPD_SOCKET=%s", d->sock);
	env[k++] = env_sock;
	env[k] = NULL;
	pid = spawn(argv, env, NULL);
	free(env);
	return pid;
}

int dt_wait(pid_t pid, const char *what, int allow_signal)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		t_fail("waitpid %s: %s", what, strerror(errno));
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return st;
	if (allow_signal && WIFSIGNALED(st) && WTERMSIG(st) == allow_signal)
		return st;
	t_fail("%s: %s", what, t_wait_str(st));
}

void dt_tmpfile(char *path, size_t len, int fill_seed)
{
	int fd = t_tmpfile(path);

	if (len)
		t_write_file_pat(fd, 0, len, (uint32_t)fill_seed);
	close(fd);
}

void dt_daemon_cleanup(struct dt_daemon *d)
{
	int st = dt_daemon_stop(d, SIGTERM);

	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
		dt_daemon_dump_log(d);
		t_fail("umapd did not stop cleanly on SIGTERM: %s", t_wait_str(st));
	}
	if (getenv("DTEST_KEEP_LOG"))
		dt_daemon_dump_log(d);
	unlink(d->sock);
	unlink(d->log);
	rmdir(d->dir);
}
