/*
 * daemon.clients, daemon.kill_client, daemon.kill_daemon - many client
 * processes on one daemon, random reads and writes, byte-exact checks.
 *
 * Files: A shared by 8 workers, B by 4, and one file each for 4 more (16
 * workers).  Worker k of a file shared by n writes only the pages p with
 * p % n == its index there (whole pages, pattern seed 100 + k); it reads
 * anywhere and checks each byte is the file's original or the pattern of
 * the worker that owns the page.  Which pages a worker writes follows from
 * its seed, so the parent replays it and checks the files byte for byte
 * once all have unmapped.  While they run the parent samples the daemon's
 * resident bytes (its own count, and the memfds' allocated blocks seen
 * through /proc/<daemon>/fd) against the budget.
 *
 *  clients:     all 16 to completion
 *  kill_client: a 17th worker writing A is SIGKILLed in the middle of its
 *               faults; everyone else finishes; its pages hold, byte by
 *               byte, the original or its pattern
 *  kill_daemon: the daemon is SIGKILLed while they run and restarted; the
 *               workers take their faults over, finish and write back; a
 *               new client of the new daemon reads the final files exactly
 */
#include <dirent.h>
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

#define PG 4096
#define NFILES 6
#define NWORKERS 16
#define ORIG_SEED(f) (1 + (f))
#define W_SEED(k) (100 + (k))

static const size_t file_mb[NFILES] = { 8, 4, 2, 2, 2, 2 };
static bool g_victim; /* kill_client: a 17th worker shares file A */

/* Worker k: its file, its index among the file's sharers and their number. */
static void layout(int k, int *file, int *idx, int *nshare)
{
	if (k < 8) {
		*file = 0, *idx = k, *nshare = g_victim ? 9 : 8;
	} else if (k < 12) {
		*file = 1, *idx = k - 8, *nshare = 4;
	} else if (k < 16) {
		*file = 2 + (k - 12), *idx = 0, *nshare = 1;
	} else { /* the victim of kill_client: the ninth slot of file A */
		*file = 0, *idx = 8, *nshare = 9;
	}
}

/* The worker that owns page p of file f (-1: none writes it). */
static int page_owner(int f, uint64_t p)
{
	if (f == 0) {
		unsigned n = g_victim ? 9 : 8;
		unsigned i = (unsigned)(p % n);

		return i == 8 ? 16 : (int)i;
	}
	if (f == 1)
		return 8 + (int)(p % 4);
	return 12 + (f - 2);
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static size_t nops(void)
{
	return t_scaled(4000, 200);
}

/* One op of worker k on a file of npages: the page and whether it writes. */
static void op(uint64_t *s, uint64_t npages, int idx, int nshare, uint64_t *page, bool *write)
{
	uint64_t p = rng_next(s) % npages;

	*write = rng_next(s) % 3 == 0;
	if (*write)
		p = p - p % (uint64_t)nshare + (uint64_t)idx; /* one of its own pages */
	if (p >= npages) {
		p = (uint64_t)idx;
		*write = p < npages;
	}
	*page = p;
}

static void check_page(const char *what, int f, const uint8_t *b, uint64_t p)
{
	int o = page_owner(f, p);
	uint64_t off = p * PG;

	for (size_t i = 0; i < PG; i++) {
		uint8_t v = b[i];

		if (v != t_pat(off + i, ORIG_SEED(f)) && v != t_pat(off + i, W_SEED(o)))
			t_fail("%s: file %d offset %llu: %#x is neither the original %#x nor worker %d's %#x", what, f,
			       (unsigned long long)(off + i), v, t_pat(off + i, ORIG_SEED(f)), o, t_pat(off + i, W_SEED(o)));
	}
}

static int worker(int k, const char *path, bool victim)
{
	int f, idx, nshare, fd;
	uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1), npages;
	size_t len, n = victim ? SIZE_MAX : nops();
	uint8_t *m;
	char name[32];

	snprintf(name, sizeof(name), "worker%d", k);
	t_init(name, 120);
	layout(k, &f, &idx, &nshare);
	len = file_mb[f] << 20;
	npages = len / PG;
	if (umapd_connect(NULL) != 0)
		t_fail("umapd_connect: %s", t_errname(errno));
	fd = open(path, O_RDWR);
	if (fd < 0)
		t_fail("open %s", path);
	m = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	for (size_t i = 0; i < n; i++) {
		uint64_t p;
		bool w;

		op(&s, npages, idx, nshare, &p, &w);
		t_step("op %zu page %llu %s", i, (unsigned long long)p, w ? "write" : "read");
		if (w)
			t_fill_pat(m + p * PG, PG, p * PG, W_SEED(k));
		else
			check_page(name, f, m + p * PG, p);
	}
	t_step("unmap");
	if (umapd_unmap(m) != 0)
		t_fail("umapd_unmap: %s", t_errname(errno));
	close(fd);
	return 0;
}

/* Allocated bytes of the daemon's memfds (what is really resident). */
static uint64_t memfd_bytes(pid_t pid)
{
	char dpath[64], lpath[320], link[256];
	uint64_t sum = 0;
	DIR *d;
	struct dirent *e;

	snprintf(dpath, sizeof(dpath), "/proc/%d/fd", (int)pid);
	d = opendir(dpath);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		struct stat st;
		ssize_t n;

		snprintf(lpath, sizeof(lpath), "%s/%s", dpath, e->d_name);
		n = readlink(lpath, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		if (!strstr(link, "memfd:umapd:") || stat(lpath, &st) < 0)
			continue;
		sum += (uint64_t)st.st_blocks * 512;
	}
	closedir(d);
	return sum;
}

static void verify_files(char paths[][256], bool victim)
{
	uint8_t *exp = malloc(8 << 20), *got = malloc(8 << 20);

	for (int f = 0; f < NFILES; f++) {
		size_t len = file_mb[f] << 20;
		int fd = open(paths[f], O_RDONLY);

		t_step("verify file %d", f);
		t_fill_pat(exp, len, 0, ORIG_SEED(f));
		for (int k = 0; k < NWORKERS; k++) {
			int wf, idx, nshare;
			uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1);

			layout(k, &wf, &idx, &nshare);
			if (wf != f)
				continue;
			for (size_t i = 0; i < nops(); i++) {
				uint64_t p;
				bool w;

				op(&s, len / PG, idx, nshare, &p, &w);
				if (w)
					t_fill_pat(exp + p * PG, PG, p * PG, W_SEED(k));
			}
		}
		t_pread_all(fd, got, len, 0);
		for (uint64_t p = 0; p < len / PG; p++) {
			if (victim && f == 0 && page_owner(0, p) == 16) {
				check_page("victim's page after the run", 0, got + p * PG, p);
				continue;
			}
			t_check_bytes("file after all workers unmapped", got + p * PG, exp + p * PG, PG, p * PG);
		}
		close(fd);
	}
	free(exp);
	free(got);
}

int main(int argc, char **argv)
{
	const char *mode = getenv("DAEMON_CLIENTS_MODE");
	struct dt_daemon d;
	char paths[NFILES][256], kbuf[8];
	pid_t pids[NWORKERS + 1], victim = 0;
	uint64_t max_res = 0, max_memfd = 0, budget = 6 << 20;
	int samples = 0;
	bool kill_client, kill_daemon;

	g_victim = mode && strcmp(mode, "kill_client") == 0;
	if (argc == 4 && strcmp(argv[1], "worker") == 0)
		return worker(atoi(argv[2]), argv[3], false);
	if (argc == 4 && strcmp(argv[1], "victim") == 0)
		return worker(atoi(argv[2]), argv[3], true);
	mode = mode ? mode : "clients";
	kill_client = strcmp(mode, "kill_client") == 0;
	kill_daemon = strcmp(mode, "kill_daemon") == 0;
	{
		char name[64];

		snprintf(name, sizeof(name), "daemon.%s", mode);
		t_init(strdup(name), 150);
	}
	t_step("start the daemon");
	dt_daemon_start(&d, "6M", NULL);
	for (int f = 0; f < NFILES; f++)
		dt_tmpfile(paths[f], file_mb[f] << 20, ORIG_SEED(f));
	t_step("start %d workers", NWORKERS);
	for (int k = 0; k < NWORKERS; k++) {
		int f, idx, nshare;

		layout(k, &f, &idx, &nshare);
		snprintf(kbuf, sizeof(kbuf), "%d", k);
		pids[k] = dt_spawn(&d, (const char *const[]){ "worker", kbuf, paths[f], NULL });
		if (kill_client && k == 0)
			victim = dt_spawn(&d, (const char *const[]){ "victim", "16", paths[0], NULL });
	}
	/* Sample the budget while they run; kill what the mode says to. */
	uint64_t all_in = 0;
	int running_at_kill = 0;
	bool killed = false;
	int running = NWORKERS;

	while (running > 0) {
		for (int k = 0; k < NWORKERS; k++) {
			int st;

			if (pids[k] > 0 && waitpid(pids[k], &st, WNOHANG) == pids[k]) {
				pids[k] = 0;
				running--;
				if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
					t_fail("worker %d: %s", k, t_wait_str(st));
			}
		}
		/* Kill once every worker is in (mapped, or already done) and has
		 * had 200 ms of faults: a worker still connecting would only test
		 * a refused connection. */
		if (!killed && all_in && t_now_ns() - all_in > 200000000ull) {
			killed = true;
			if (kill_client) {
				t_step("SIGKILL the victim in the middle of its faults");
				kill(victim, SIGKILL);
				dt_wait(victim, "victim", SIGKILL);
			}
			if (kill_daemon) {
				running_at_kill = running;
				t_step("SIGKILL the daemon while %d workers run", running);
				dt_daemon_stop(&d, SIGKILL);
				usleep(100000);
				dt_daemon_restart(&d);
				t_step("daemon restarted; waiting for the workers");
			}
		}
		if (d.pid > 0 && !(kill_daemon && killed)) {
			struct proto_status st;
			uint64_t mb;

			dt_daemon_alive(&d, "while workers ran");
			/* The memfds are read one after the other: stop the daemon
			 * meanwhile, or a page evicted from one and filled into the
			 * next is counted twice. */
			kill(d.pid, SIGSTOP);
			mb = memfd_bytes(d.pid);
			kill(d.pid, SIGCONT);
			dt_status(&d, &st);
			if (!all_in && st.regions + (uint64_t)(NWORKERS - running) >= (uint64_t)(NWORKERS + (kill_client ? 1 : 0)))
				all_in = t_now_ns();
			max_res = st.resident > max_res ? st.resident : max_res;
			max_memfd = mb > max_memfd ? mb : max_memfd;
			samples++;
			if (st.resident > budget)
				t_fail("daemon resident %llu bytes over the budget %llu", (unsigned long long)st.resident,
				       (unsigned long long)budget);
			if (mb > budget)
				t_fail("the daemon's memfds hold %llu bytes, budget %llu", (unsigned long long)mb,
				       (unsigned long long)budget);
		}
		usleep(20000);
	}
	if (kill_daemon && running_at_kill == 0)
		t_fail("every worker finished before the daemon was killed: the kill tested nothing");
	if (kill_client && !killed) {
		kill(victim, SIGKILL);
		dt_wait(victim, "victim", SIGKILL);
	}
	t_step("all workers done");
	dt_daemon_alive(&d, "after the workers");
	{
		struct proto_status st;

		dt_status(&d, &st);
		if (!kill_daemon && st.total.evictions == 0)
			t_fail("no evictions: the files (20 MiB) should not fit the budget (6 MiB)");
		if (kill_daemon)
			t_step("after the restart the daemon served %llu faults", (unsigned long long)st.total.faults);
	}
	if (kill_daemon) {
		/* A client of the restarted daemon reads the files as the workers left them. */
		t_step("a new client reads file 0 through the restarted daemon");
		pid_t r = dt_spawn(&d, (const char *const[]){ "worker", "0", paths[0], NULL });

		(void)r;
		/* worker 0 writes again (same pages, same bytes) and checks reads */
		dt_wait(r, "reader after the restart", 0);
	}
	char kill_note[96] = "";

	if (kill_daemon)
		snprintf(kill_note, sizeof(kill_note), ", daemon SIGKILLed under %d running workers and restarted",
			 running_at_kill);
	dt_daemon_cleanup(&d); /* SIGTERM: writes back what the victim left dirty */
	verify_files(paths, kill_client);
	t_pass("%d workers%s%s on 6 files through a %llu-byte budget: files byte-exact; resident at most %llu "
	       "(daemon's count) / %llu (memfd blocks) in %d samples",
	       NWORKERS, kill_client ? " + 1 SIGKILLed" : "", kill_note,
	       (unsigned long long)budget, (unsigned long long)max_res, (unsigned long long)max_memfd, samples);
}
