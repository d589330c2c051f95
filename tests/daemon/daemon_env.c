/*
 * daemon.env - the client side of daemon mode reads UMAPD_USER_MODE_ONLY
 * with the engine's parser: a value the engine refuses (anything but 0 or
 * 1) is refused by umapd_connect() too, with EINVAL and a log line naming
 * the variable, before anything is sent to the daemon; and a map that
 * connects lazily (UMAPD_SOCKET) fails with EINVAL and that one line rather
 * than being served with the value taken for 0.  The client used to compare the value with
 * "1" itself, so UMAPD_USER_MODE_ONLY=yes connected with user-mode-only
 * faults off.  A valid value (0) connects, so the refusals are the
 * variable's doing.
 *
 * Each case is this binary re-executed (the variable is read once per
 * connect, and a connected process stays connected) with its stderr kept.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dtest.h"
#include "umapd_test.h"

#define WANT_MSG "UMAPD_USER_MODE_ONLY=\"yes\" is invalid: expected 0 or 1"

/* umapd_connect() to $UMAPD_SOCKET; exit 0 if it returned what argv asks. */
static int child_connect(bool want_ok)
{
	errno = 0;
	int rc = umapd_connect(NULL), e = errno;

	if (want_ok) {
		if (rc == 0)
			return 0;
		if (e == ENOTSUP || e == EPERM)
			return T_SKIP;
		fprintf(stderr, "child: umapd_connect with a valid UMAPD_USER_MODE_ONLY: %s\n", t_errname(e));
		return 1;
	}
	if (rc == -1 && e == EINVAL)
		return 0;
	fprintf(stderr, "child: umapd_connect returned %d errno %s, want -1 EINVAL\n", rc, t_errname(e));
	return 1;
}

/* umapd_map() of a file with UMAPD_SOCKET set (the lazy connect): must fail
 * with EINVAL. */
static int child_lazy(void)
{
	int fd = t_tmpfile(NULL);

	t_write_file_pat(fd, 0, 4096, 1);
	errno = 0;
	void *p = umapd_map(NULL, 4096, PROT_READ, 0, fd, 0, NULL);
	int e = errno;

	if (p == NULL && e == EINVAL)
		return 0;
	fprintf(stderr, "child: umapd_map returned %p errno %s, want NULL EINVAL\n", p, t_errname(e));
	return 1;
}

/* Run one child case; fail unless it exits 0 (skip on T_SKIP); returns its stderr. */
static char *run(const char *role, const char *sock_env, const char *umo_env)
{
	const char *env[] = { sock_env, umo_env, NULL };
	char *err = NULL;
	int st = t_reexec(role, env, 30, &err);

	if (WIFEXITED(st) && WEXITSTATUS(st) == T_SKIP)
		t_skip("userfaultfd lacks shmem minor faults or write protection here");
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s with %s: child %s; its stderr: %s", role, umo_env,
		t_wait_str(st), err ? err : "");
	return err;
}

int main(int argc, char **argv)
{
	struct dt_daemon d;
	struct proto_status st;
	char sock_env[200];
	char *err;

	if (argc > 1 && strcmp(argv[1], "connect-ok") == 0)
		return child_connect(true);
	if (argc > 1 && strcmp(argv[1], "connect-bad") == 0)
		return child_connect(false);
	if (argc > 1 && strcmp(argv[1], "lazy") == 0)
		return child_lazy();
	t_init("daemon.env", 60);
	t_step("start the daemon");
	dt_daemon_start(&d, "16M", NULL);
	snprintf(sock_env, sizeof(sock_env), "UMAPD_SOCKET=%s", d.sock);

	t_step("umapd_connect with UMAPD_USER_MODE_ONLY=0");
	free(run("connect-ok", sock_env, "UMAPD_USER_MODE_ONLY=0"));

	t_step("umapd_connect with UMAPD_USER_MODE_ONLY=yes");
	err = run("connect-bad", sock_env, "UMAPD_USER_MODE_ONLY=yes");
	T_CHECK(err && strstr(err, WANT_MSG), "umapd_connect refused the value but did not say why; stderr: \"%s\"",
		err ? err : "");
	free(err);

	t_step("umapd_map with UMAPD_SOCKET and UMAPD_USER_MODE_ONLY=yes");
	err = run("lazy", sock_env, "UMAPD_USER_MODE_ONLY=yes");
	T_CHECK(err && strstr(err, WANT_MSG), "umapd_map refused the value but did not say why; stderr: \"%s\"",
		err ? err : "");
	/* Said once, as the user's error: not as a daemon it could not use. */
	T_CHECK(!strstr(strstr(err, WANT_MSG) + 1, WANT_MSG) && !strstr(err, "paging in-process"),
		"umapd_map's refusal was not one clear line; stderr: \"%s\"", err);
	free(err);

	dt_status(&d, &st);
	T_CHECK(st.regions == 0, "the daemon holds %llu regions after the refused maps",
		(unsigned long long)st.regions);
	dt_daemon_alive(&d, "after the refused clients");
	dt_daemon_cleanup(&d);
	t_pass("UMAPD_USER_MODE_ONLY=yes: umapd_connect and a lazily connecting umapd_map fail with EINVAL and "
	       "\"%s\"; =0 connects", WANT_MSG);
}
