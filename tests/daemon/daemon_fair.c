/*
 * daemon.fair - one client cannot push another out beyond its share.
 *
 *  1. budget 4 MiB: client A reads a 3 MiB file and idles; client B then
 *     streams a 16 MiB file twice.  Fair share is 2 MiB each, so A keeps
 *     2 MiB (a global LRU would leave it nothing) and B gets the rest.
 *  2. --client-limit=1M: B streaming alone holds at most 1 MiB.
 *  3. --uid-limit=1536K: A and B (one uid) hold at most 1.5 MiB together.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dtest.h"
#include "umapd_test.h"

#define MB (1u << 20)

static int holder(const char *path, int passes, int wfd, int rfd)
{
	uint8_t *p, c = 'R';
	size_t len;
	int fd;

	t_init("daemon.fair-client", 120);
	if (umapd_connect(NULL) != 0)
		t_fail("umapd_connect: %s", t_errname(errno));
	fd = open(path, O_RDONLY);
	len = (size_t)t_file_size(fd);
	p = t_map(len, PROT_READ, 0, fd, 0, 0, 0);
	for (int i = 0; i < passes; i++)
		t_check_pat("holder", p, len, 0, 1);
	if (write(wfd, &c, 1) != 1)
		t_fail("write to the parent");
	while (read(rfd, &c, 1) > 0)
		;
	umapd_unmap(p);
	return 0;
}

struct run {
	int up[2], down[2];
	char w[16], r[16];
};

static void run_open(struct run *r)
{
	if (pipe(r->up) < 0 || pipe(r->down) < 0)
		t_fail("pipe");
	fcntl(r->up[0], F_SETFD, FD_CLOEXEC);
	fcntl(r->down[1], F_SETFD, FD_CLOEXEC);
	snprintf(r->w, sizeof(r->w), "%d", r->up[1]);
	snprintf(r->r, sizeof(r->r), "%d", r->down[0]);
}

static pid_t start(const struct dt_daemon *d, struct run *r, const char *path, const char *passes)
{
	pid_t pid = dt_spawn(d, (const char *const[]){ "hold", path, passes, r->w, r->r, NULL });
	char c;

	if (read(r->up[0], &c, 1) != 1)
		t_fail("a client died before reading its file");
	return pid;
}

static void finish(struct run *r, pid_t *pids, int n)
{
	close(r->down[1]);
	for (int i = 0; i < n; i++)
		dt_wait(pids[i], "client", 0);
	close(r->up[0]);
	close(r->up[1]);
	close(r->down[0]);
}

int main(int argc, char **argv)
{
	struct dt_daemon d;
	struct run r;
	char small[256], big[256];
	uint64_t res[4];
	pid_t pids[2];
	uint64_t a_fair, b_fair, b_limited, ab_uid;

	if (argc == 6 && strcmp(argv[1], "hold") == 0)
		return holder(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	t_init("daemon.fair", 120);
	dt_tmpfile(small, 3 * MB, 1);
	dt_tmpfile(big, 16 * MB, 1);

	t_step("fair share");
	dt_daemon_start(&d, "4M", NULL);
	run_open(&r);
	pids[0] = start(&d, &r, small, "1");
	pids[1] = start(&d, &r, big, "2");
	T_CHECK(dt_clients(&d, res, 4) == 2, "want 2 clients");
	a_fair = res[0];
	b_fair = res[1];
	T_CHECK(a_fair + b_fair <= 4 * MB, "together %llu bytes, budget 4 MiB", (unsigned long long)(a_fair + b_fair));
	T_CHECK(a_fair >= 2 * MB - 4 * 4096, "the idle client kept %llu bytes: pushed below its fair share (2 MiB)",
		(unsigned long long)a_fair);
	T_CHECK(b_fair >= MB, "the streaming client holds only %llu bytes", (unsigned long long)b_fair);
	finish(&r, pids, 2);
	dt_daemon_cleanup(&d);

	t_step("client_limit");
	dt_daemon_start(&d, "8M", (const char *const[]){ "--client-limit=1M", NULL });
	run_open(&r);
	pids[0] = start(&d, &r, big, "1");
	T_CHECK(dt_clients(&d, res, 4) == 1, "want 1 client");
	b_limited = res[0];
	T_CHECK(b_limited <= MB && b_limited >= MB / 2, "with client_limit 1 MiB the client holds %llu bytes",
		(unsigned long long)b_limited);
	finish(&r, pids, 1);
	dt_daemon_cleanup(&d);

	t_step("uid_limit");
	dt_daemon_start(&d, "8M", (const char *const[]){ "--uid-limit=1536K", NULL });
	run_open(&r);
	pids[0] = start(&d, &r, small, "1");
	pids[1] = start(&d, &r, big, "1");
	T_CHECK(dt_clients(&d, res, 4) == 2, "want 2 clients");
	ab_uid = res[0] + res[1];
	T_CHECK(ab_uid <= 1536 * 1024, "with uid_limit 1.5 MiB one uid's clients hold %llu bytes",
		(unsigned long long)ab_uid);
	finish(&r, pids, 2);
	dt_daemon_cleanup(&d);
	t_pass("fair share: idle client kept %llu of 4 MiB against a streaming one (%llu); client_limit 1 MiB: %llu; "
	       "uid_limit 1.5 MiB: %llu",
	       (unsigned long long)a_fair, (unsigned long long)b_fair, (unsigned long long)b_limited,
	       (unsigned long long)ab_uid);
}
