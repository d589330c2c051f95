/*
 * daemon.shared - one file read by 8 client processes is resident once:
 * the daemon's count and its memfd's allocated blocks equal the file size,
 * and the clients' proportional shares of shared memory (Pss_Shmem in
 * /proc/PID/smaps_rollup) add up to one copy.  Then umapctl against the
 * running daemon: status, clients, regions, stats (table and --json),
 * set-budget (the daemon evicts down to it), flush, evict, disconnect (the
 * client carries on in-process), and its errors.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dtest.h"
#include "umapd_test.h"

#define NREADERS 8

static int reader(const char *path, int wfd, int rfd)
{
	size_t len;
	uint8_t *p, c = 'R';
	int fd;

	t_init("daemon.shared-reader", 120);
	if (umapd_connect(NULL) != 0)
		t_fail("umapd_connect: %s", t_errname(errno));
	fd = open(path, O_RDONLY);
	len = (size_t)t_file_size(fd);
	p = t_map(len, PROT_READ, 0, fd, 0, 0, 0);
	t_check_pat("reader", p, len, 0, 1);
	if (write(wfd, &c, 1) != 1)
		t_fail("write to the parent");
	/* Wait for the parent to finish its checks (it closes the pipe). */
	while (read(rfd, &c, 1) > 0)
		;
	t_step("read again after umapctl's evict and disconnect");
	t_check_pat("reader, second pass", p, len, 0, 1);
	if (umapd_unmap(p) != 0)
		t_fail("umapd_unmap: %s", t_errname(errno));
	return 0;
}

static uint64_t pss_shmem(pid_t pid)
{
	char path[64], line[256];
	uint64_t kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pss_Shmem: %llu kB", (unsigned long long *)&kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

/* Run umapctl with args; its stdout in out (NUL-terminated); exit status returned. */
static int ctl(const struct dt_daemon *d, const char *args, char *out, size_t outlen)
{
	char cmd[512];
	FILE *p;
	size_t n = 0;
	int st;

	snprintf(cmd, sizeof(cmd), "%s --socket %s %s", UMAPD_UMAPCTL_PATH, d->sock, args);
	p = popen(cmd, "r");
	if (!p)
		t_fail("popen %s", cmd);
	while (n + 1 < outlen) {
		size_t k = fread(out + n, 1, outlen - 1 - n, p);

		if (k == 0)
			break;
		n += k;
	}
	out[n] = 0;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int count(const char *s, const char *what)
{
	int n = 0;

	for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
		n++;
	return n;
}

int main(int argc, char **argv)
{
	struct dt_daemon d;
	struct proto_status st;
	char path[256], w[16], r[16], *out;
	size_t len = t_scaled(8 << 20, 1 << 20);
	int up[2], down[2];
	pid_t pids[NREADERS];
	uint64_t pss = 0;

	if (argc == 5 && strcmp(argv[1], "reader") == 0)
		return reader(argv[2], atoi(argv[3]), atoi(argv[4]));
	t_init("daemon.shared", 120);
	out = malloc(1 << 16);
	dt_daemon_start(&d, "64M", NULL);
	dt_tmpfile(path, len, 1);
	if (pipe(up) < 0 || pipe(down) < 0)
		t_fail("pipe");
	/* The readers inherit only their ends: the parent's close is their EOF. */
	fcntl(up[0], F_SETFD, FD_CLOEXEC);
	fcntl(down[1], F_SETFD, FD_CLOEXEC);
	snprintf(w, sizeof(w), "%d", up[1]);
	snprintf(r, sizeof(r), "%d", down[0]);
	t_step("start %d readers of one %zu-byte file", NREADERS, len);
	for (int i = 0; i < NREADERS; i++)
		pids[i] = dt_spawn(&d, (const char *const[]){ "reader", path, w, r, NULL });
	close(up[1]);
	close(down[0]);
	for (int i = 0; i < NREADERS; i++) {
		char c;

		if (read(up[0], &c, 1) != 1)
			t_fail("reader %d died before reading (see above)", i);
	}
	t_step("all read: is the file resident once?");
	dt_status(&d, &st);
	T_CHECK(st.resident == len, "daemon resident %llu bytes for one %zu-byte file read by %d clients",
		(unsigned long long)st.resident, len, NREADERS);
	T_CHECK(st.total.fills == len / 4096, "%llu fills for %zu pages: pages were read more than once",
		(unsigned long long)st.total.fills, len / 4096);
	/* The other readers found the pages in the memfd (minor faults, each
	 * mapping a run of present pages), never filling them again. */
	T_CHECK(st.total.minor_faults >= NREADERS - 1, "only %llu minor faults: the other readers did not map the shared pages",
		(unsigned long long)st.total.minor_faults);
	for (int i = 0; i < NREADERS; i++)
		pss += pss_shmem(pids[i]);
	T_CHECK(pss <= len + len / 8 && pss >= len - len / 8,
		"the readers' Pss_Shmem add up to %llu bytes, not one copy of %zu", (unsigned long long)pss, len);

	t_step("umapctl status / clients / regions / stats");
	T_CHECK(ctl(&d, "status", out, 1 << 16) == 0 && strstr(out, "resident"), "umapctl status: %s", out);
	T_CHECK(ctl(&d, "--json status", out, 1 << 16) == 0 && strstr(out, "\"resident\": "), "status --json: %s", out);
	{
		char want[64];

		snprintf(want, sizeof(want), "\"resident\": %zu", len);
		T_CHECK(strstr(out, want), "status --json does not say %s: %s", want, out);
	}
	T_CHECK(ctl(&d, "clients", out, 1 << 16) == 0 && count(out, " client ") == NREADERS,
		"umapctl clients lists %d clients, want %d:\n%s", count(out, " client "), NREADERS, out);
	T_CHECK(ctl(&d, "--json regions", out, 1 << 16) == 0 && count(out, "\"writable\": false") == NREADERS,
		"umapctl --json regions: want %d read-only regions:\n%s", NREADERS, out);
	T_CHECK(ctl(&d, "regions", out, 1 << 16) == 0 && count(out, "\n") == NREADERS + 1,
		"umapctl regions: want a header and %d rows:\n%s", NREADERS, out);
	T_CHECK(ctl(&d, "stats", out, 1 << 16) == 0 && strstr(out, "minor_faults"), "umapctl stats: %s", out);
	T_CHECK(ctl(&d, "--json stats", out, 1 << 16) == 0 && strstr(out, "\"fills\": "), "umapctl --json stats: %s", out);

	t_step("umapctl set-budget: the daemon evicts down to it");
	T_CHECK(ctl(&d, "set-budget 2M", out, 1 << 16) == 0, "set-budget 2M failed");
	dt_status(&d, &st);
	T_CHECK(st.budget == 2 << 20 && st.resident <= 2 << 20, "after set-budget 2M: budget %llu, resident %llu",
		(unsigned long long)st.budget, (unsigned long long)st.resident);
	T_CHECK(ctl(&d, "set-budget 64M", out, 1 << 16) == 0, "set-budget 64M failed");
	T_CHECK(ctl(&d, "flush", out, 1 << 16) == 0, "flush failed");
	T_CHECK(ctl(&d, "evict", out, 1 << 16) == 0, "evict failed");
	dt_status(&d, &st);
	T_CHECK(st.resident == 0, "after evict: %llu bytes resident", (unsigned long long)st.resident);

	t_step("umapctl errors");
	T_CHECK(ctl(&d, "bogus", out, 1 << 16) == 2, "an unknown command must exit 2");
	T_CHECK(ctl(&d, "set-budget lots", out, 1 << 16) == 2, "a bad size must exit 2");
	T_CHECK(ctl(&d, "disconnect 999999", out, 1 << 16) == 1, "disconnecting an unknown client must exit 1");
	{
		char cmd[64];

		snprintf(cmd, sizeof(cmd), "--socket /nonexistent/sock status");
		T_CHECK(ctl(&d, cmd, out, 1 << 16) == 1, "no daemon at the socket must exit 1");
	}
	t_step("umapctl disconnect: that reader carries on in-process");
	T_CHECK(ctl(&d, "--json clients", out, 1 << 16) == 0, "clients --json");
	{
		char *idp = strstr(out, "\"id\": "), cmd[64];
		unsigned id = idp ? (unsigned)strtoul(idp + 6, NULL, 10) : 0;

		T_CHECK(id > 0, "no client id in %s", out);
		snprintf(cmd, sizeof(cmd), "disconnect %u", id);
		T_CHECK(ctl(&d, cmd, out, 1 << 16) == 0, "disconnect %u failed", id);
	}
	close(down[1]); /* let the readers read again and unmap */
	for (int i = 0; i < NREADERS; i++)
		dt_wait(pids[i], "reader", 0);
	dt_status(&d, &st);
	T_CHECK(st.regions == 0 && st.resident == 0, "after the readers left: %llu regions, %llu bytes resident",
		(unsigned long long)st.regions, (unsigned long long)st.resident);
	dt_daemon_cleanup(&d);
	free(out);
	t_pass("%d readers of one %zu-byte file: resident once (daemon %zu, Pss_Shmem sum %llu); umapctl status, "
	       "clients, regions, stats, set-budget, flush, evict, disconnect and its errors",
	       NREADERS, len, len, (unsigned long long)pss);
}
