/*
 * daemon.nonroot - the daemon's access rules with a client that is not
 * root (uid nobody, UMAPD_USER_MODE_ONLY=1 where unprivileged
 * userfaultfd is off):
 *
 *  - a read-only map of a root-owned file nobody may only read is refused
 *    by the daemon (sharing the cache would hand it a writable memfd) and
 *    libumapd pages it in-process: the data is right, the daemon holds no
 *    region of it;
 *  - read-only and writable maps of nobody's own file go to the daemon;
 *    the write reaches the file;
 *  - an admin session (umapctl set-budget) is refused;
 *  - with allow_users=root the daemon refuses the connection: EACCES.
 */
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dtest.h"
#include "umapd_test.h"

#define LEN (1u << 20)

/* As nobody: argv = role, socket, root's file, own file. */
static int child(const char *role, const char *sock, const char *rootfile, const char *ownfile)
{
	t_init("daemon.nonroot-child", 60);
	if (!strcmp(role, "refused")) {
		if (umapd_connect(sock) == 0)
			t_fail("connected although allow_users=root");
		if (errno != EACCES)
			t_fail("umapd_connect: %s, want EACCES", t_errname(errno));
		return 0;
	}
	if (umapd_connect(sock) != 0) {
		if (errno == EPERM)
			return 77; /* no userfaultfd for this user at all */
		t_fail("umapd_connect as nobody: %s", t_errname(errno));
	}
	int rfd = open(rootfile, O_RDONLY), ofd = open(ownfile, O_RDWR);

	if (rfd < 0 || ofd < 0)
		t_fail("open as nobody");
	uint8_t *a = t_map(LEN, PROT_READ, 0, rfd, 0, 0, 0);

	t_check_pat("root's file, in-process", a, LEN, 0, 1);
	uint8_t *b = t_map(LEN, PROT_READ, 0, ofd, 0, 0, 0);

	t_check_pat("own file, read-only, daemon", b, LEN, 0, 2);
	uint8_t *c = t_map(LEN, PROT_READ | PROT_WRITE, 0, ofd, 0, 0, 0);

	memset(c, 0x77, 4096);
	/* Tell the parent where we stand, then wait for its checks. */
	if (write(3, "m", 1) != 1)
		t_fail("write to the parent");
	char x;

	while (read(4, &x, 1) > 0)
		;
	t_unmap(c);
	t_unmap(b);
	t_unmap(a);
	return 0;
}

static pid_t spawn_as_nobody(const char *role, const char *sock, const char *rootfile, const char *ownfile,
			     int up_w, int down_r, const struct passwd *pw)
{
	pid_t pid = fork();

	if (pid == 0) {
		char env[] = "UMAPD_USER_MODE_ONLY=1";

		if (dup2(up_w, 3) < 0 || dup2(down_r, 4) < 0)
			_exit(120);
		if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
			_exit(121);
		if (access("/proc/sys/vm/unprivileged_userfaultfd", R_OK) == 0) {
			FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
			int v = 1;

			if (f && fscanf(f, "%d", &v) == 1 && v == 0)
				putenv(env);
			if (f)
				fclose(f);
		}
		execl("/proc/self/exe", "/proc/self/exe", role, sock, rootfile, ownfile, (char *)NULL);
		_exit(122);
	}
	return pid;
}

static int ctl_as_nobody(const char *args, const struct passwd *pw)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		int nul = open("/dev/null", O_WRONLY);

		dup2(nul, 2);
		dup2(nul, 1);
		if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
			_exit(121);
		execl("/bin/sh", "sh", "-c", args, (char *)NULL);
		_exit(122);
	}
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int main(int argc, char **argv)
{
	struct dt_daemon d;
	struct proto_status st;
	struct passwd *pw;
	char rootfile[256], ownfile[256], cmd[512];
	int up[2], down[2], status, fd;
	pid_t pid;

	if (argc == 5)
		return child(argv[1], argv[2], argv[3], argv[4]);
	t_init("daemon.nonroot", 60);
	if (geteuid() != 0)
		t_skip("needs root to run a client as another user");
	pw = getpwnam("nobody");
	if (!pw)
		t_skip("no user nobody");
	dt_daemon_start(&d, "8M", NULL);
	chmod(d.dir, 0755); /* the socket's directory: reachable by nobody */
	dt_tmpfile(rootfile, LEN, 1);
	dt_tmpfile(ownfile, LEN, 2);
	chmod(rootfile, 0644);
	if (chown(ownfile, pw->pw_uid, pw->pw_gid) < 0)
		t_fail("chown: %s", strerror(errno));
	chmod(ownfile, 0644);

	t_step("a client as nobody");
	/* The child keeps only its ends (3 and 4): our close is its EOF. */
	if (pipe2(up, O_CLOEXEC) < 0 || pipe2(down, O_CLOEXEC) < 0)
		t_fail("pipe");
	pid = spawn_as_nobody("maps", d.sock, rootfile, ownfile, up[1], down[0], pw);
	close(up[1]);
	close(down[0]);
	{
		char x;

		if (read(up[0], &x, 1) != 1) {
			waitpid(pid, &status, 0);
			if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
				t_skip("no userfaultfd for an unprivileged user here");
			t_fail("the client as nobody failed: %s", t_wait_str(status));
		}
	}
	dt_status(&d, &st);
	T_CHECK(st.regions == 2, "the daemon holds %llu regions; want 2 (nobody's own file, read-only and "
		"writable; root's file paged in-process)", (unsigned long long)st.regions);
	t_step("umapctl as nobody");
	snprintf(cmd, sizeof(cmd), "%s --socket %s set-budget 1M", UMAPD_UMAPCTL_PATH, d.sock);
	T_CHECK(ctl_as_nobody(cmd, pw) == 1, "umapctl set-budget as nobody must be refused (exit 1)");
	dt_status(&d, &st);
	T_CHECK(st.budget == 8 << 20, "the budget changed to %llu", (unsigned long long)st.budget);
	close(down[1]);
	waitpid(pid, &status, 0);
	T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the client as nobody: %s", t_wait_str(status));
	fd = open(ownfile, O_RDONLY);
	{
		uint8_t b[4096];

		t_pread_all(fd, b, sizeof(b), 0);
		for (size_t i = 0; i < sizeof(b); i++)
			T_CHECK(b[i] == 0x77, "nobody's write did not reach its file: offset %zu is %#x", i, b[i]);
	}
	close(fd);
	dt_daemon_cleanup(&d);

	t_step("allow_users=root refuses nobody");
	dt_daemon_start(&d, "8M", (const char *const[]){ "--allow-users=root", NULL });
	chmod(d.dir, 0755);
	if (pipe2(up, O_CLOEXEC) < 0 || pipe2(down, O_CLOEXEC) < 0)
		t_fail("pipe");
	pid = spawn_as_nobody("refused", d.sock, rootfile, ownfile, up[1], down[0], pw);
	close(up[1]);
	close(down[0]);
	close(down[1]);
	waitpid(pid, &status, 0);
	close(up[0]);
	T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the refused client: %s", t_wait_str(status));
	dt_daemon_cleanup(&d);
	t_pass("as nobody: root's read-only file refused by the daemon and paged in-process, own file through the "
	       "daemon (read-only and writable, write in the file), admin refused; allow_users=root: EACCES");
}
