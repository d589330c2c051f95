/*
 * uffd_install_cost - what a scan pays per page to put data into a
 * userfaultfd region and take it out again, by the two ways the kernel
 * offers, and whether the zero-copy way keeps writes tracked.
 *
 * 1. copy: what umapd does.  UFFDIO_COPY a run of pages from a buffer
 *          (write-protected, as a clean fill is installed), and
 *          MADV_DONTNEED the run installed a lag behind (a clean eviction).
 *          The kernel allocates, charges, copies and frees every page.
 * 2. move: the zero-copy alternative.  UFFDIO_MOVE a run of pages from a
 *          pool of populated pages into the region, UFFDIO_WRITEPROTECT it
 *          (a moved page arrives writable, see 3), and UFFDIO_MOVE the run
 *          a lag behind back into the pool.  No page is allocated, copied or
 *          freed; each of the three calls flushes the TLB of every CPU that
 *          runs the process.
 *
 * Both sweep a region (--pages, default 64 Ki pages) twice per run size
 * (--runs, default 32 and 256 pages; umapd's fills are 32 pages, 128 KiB).
 * With --app (the default both ways) a thread of the process spins on the
 * other CPU, as the application does during a scan: then every TLB flush
 * interrupts it, which on a VM costs tens of microseconds.  Printed: the
 * cost per page of each, and move/copy.
 *
 * 3. The safety check: a page moved into a range registered for
 *    write-protect faults carries no uffd-wp bit (pagemap bit 57) and a
 *    write to it raises no fault.  A pager that filled by moving would
 *    not see a write made between its move and its UFFDIO_WRITEPROTECT,
 *    and would later drop that page as clean: the write lost.  This is
 *    why umapd fills with UFFDIO_COPY (docs/kernel-interactions.md).
 *
 * Exit status: 0 measured, 1 a kernel call failed, 2 usage or setup, 77
 * this kernel has no UFFDIO_MOVE.  Needs CAP_SYS_PTRACE or
 * vm.unprivileged_userfaultfd=1 (root is fine).
 */
#define _GNU_SOURCE
#include "perf_util.h"
#include "uffd/uffd.h"

#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define LAG_PAGES 1024      /* what a sweep keeps installed behind it */
#define SRC_BYTES (64 * MIB) /* larger than the last-level cache: a fill's source is cold */
#define MAX_RUNS 8

static size_t ps;
static uint64_t npages = 64 * 1024;
static unsigned timeout_s = 300;
static unsigned long runs[MAX_RUNS] = { 32, 256 };
static unsigned nruns = 2;
static int app_modes[2] = { 0, 1 }, napp_modes = 2;

static void on_alarm(int sig)
{
	static const char msg[] = "uffd_install_cost: watchdog: no result in time\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do */
	}
	_exit(2);
}

static void fail(const char *what, int status)
{
	fprintf(stderr, "uffd_install_cost: %s: %s\n", what, strerror(errno));
	exit(status);
}

static int uffd_open_move(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_MOVE };

	if (fd < 0) {
		if (errno == EPERM)
			fprintf(stderr, "uffd_install_cost: userfaultfd: not permitted; run as root or set "
					"sysctl vm.unprivileged_userfaultfd=1\n");
		else
			fprintf(stderr, "uffd_install_cost: userfaultfd: %s\n", strerror(errno));
		exit(2);
	}
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		if (errno == EINVAL) {
			fprintf(stderr, "uffd_install_cost: this kernel has no UFFDIO_MOVE (Linux 6.8+): skipped\n");
			exit(77);
		}
		fail("UFFDIO_API", 2);
	}
	return fd;
}

static void reg_range(int fd, void *at, size_t len, uint64_t mode)
{
	struct uffdio_register rg = { .range = { (uintptr_t)at, len }, .mode = mode };

	if (ioctl(fd, UFFDIO_REGISTER, &rg) < 0)
		fail("UFFDIO_REGISTER", 2);
}

static void *map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		fail("mmap", 2);
	/* Base pages only: UFFDIO_MOVE splits a huge page or refuses it. */
	if (madvise(p, len, MADV_NOHUGEPAGE) < 0)
		fail("madvise(MADV_NOHUGEPAGE)", 2);
	return p;
}

/* ---- the application thread on the other CPU ---------------------------------------- */

static atomic_bool app_stop;

static void *app_spin(void *arg)
{
	volatile const char *p = arg;

	pin_tid(0, 1);
	while (!atomic_load_explicit(&app_stop, memory_order_relaxed))
		(void)p[0];
	return NULL;
}

/* ---- the two ways ---------------------------------------------------------------------- */

/* The run a lag behind run i (the sweep wraps around the region). */
static uint64_t lag_of(uint64_t i)
{
	return (i + npages - LAG_PAGES) % npages;
}

/* Copy a run in, drop the run a lag behind: ns per page. */
static double sweep_copy(int fd, char *region, const char *src, unsigned long run)
{
	uint64_t t0 = now_ns(), n = 0, nsrc = SRC_BYTES / (run * ps);

	for (int pass = 0; pass < 2; pass++) {
		for (uint64_t i = 0; i + run <= npages; i += run) {
			struct uffdio_copy c = { .dst = (uintptr_t)region + i * ps,
						 .src = (uintptr_t)src + (n / run % nsrc) * run * ps,
						 .len = run * ps,
						 .mode = UFFDIO_COPY_MODE_WP };

			if ((pass || i >= LAG_PAGES) && madvise(region + lag_of(i) * ps, run * ps, MADV_DONTNEED) < 0)
				fail("MADV_DONTNEED", 1);
			if (ioctl(fd, UFFDIO_COPY, &c) < 0)
				fail("UFFDIO_COPY", 1);
			n += run;
		}
	}
	if (madvise(region, npages * ps, MADV_DONTNEED) < 0)
		fail("MADV_DONTNEED", 1);
	return (double)(now_ns() - t0) / (double)n;
}

static void move_run(int fd, void *dst, void *src, size_t len, const char *what)
{
	struct uffdio_move m = { .dst = (uintptr_t)dst, .src = (uintptr_t)src, .len = len };

	if (ioctl(fd, UFFDIO_MOVE, &m) < 0) {
		fprintf(stderr, "uffd_install_cost: UFFDIO_MOVE (%s): %s, moved %lld of %zu bytes\n", what,
			strerror(errno), (long long)m.move, len);
		exit(1);
	}
}

/*
 * Move a run in from the pool and write-protect it, move the run a lag
 * behind back to the pool: ns per page.  The pool has one slot of a run
 * more than the lag holds; step s takes its run from slot s and puts the
 * run it moves out into slot s + 1, which step s + 1 - nslots emptied.
 */
static double sweep_move(int fd, char *region, char *pool, unsigned long run)
{
	uint64_t t0 = now_ns(), n = 0, nslots = LAG_PAGES / run + 1, s = 0;
	size_t len = run * ps;

	for (int pass = 0; pass < 2; pass++) {
		for (uint64_t i = 0; i + run <= npages; i += run, s++) {
			struct uffdio_writeprotect w = { .range = { (uintptr_t)region + i * ps, len },
							 .mode = UFFDIO_WRITEPROTECT_MODE_WP };

			if (pass || i >= LAG_PAGES)
				move_run(fd, pool + (s + 1) % nslots * len, region + lag_of(i) * ps, len, "out");
			move_run(fd, region + i * ps, pool + s % nslots * len, len, "in");
			if (ioctl(fd, UFFDIO_WRITEPROTECT, &w) < 0)
				fail("UFFDIO_WRITEPROTECT", 1);
			n += run;
		}
	}
	/* The runs still in the region go back, so the next run size starts
	 * with a full pool. */
	for (uint64_t i = npages - LAG_PAGES; i < npages; i += run, s++)
		move_run(fd, pool + (s + 1) % nslots * len, region + i * ps, len, "out");
	return (double)(now_ns() - t0) / (double)n;
}

/* ---- 3: does a moved page keep writes tracked? ----------------------------------------- */

static uint64_t pagemap_entry(const void *addr)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || pread(fd, &e, sizeof(e), (off_t)((uintptr_t)addr / ps * sizeof(e))) != sizeof(e))
		fail("/proc/self/pagemap", 2);
	close(fd);
	return e;
}

/* 1 if the moved page is untracked (writable, no uffd-wp, a write raises
 * nothing), 0 if the kernel keeps it protected. */
static int check_moved_write(void)
{
	int fd = uffd_open_move();
	char *region = map_anon(2 * ps), *pool = map_anon(2 * ps);
	struct uffdio_copy c = { .dst = (uintptr_t)region, .src = (uintptr_t)pool + ps, .len = ps,
				 .mode = UFFDIO_COPY_MODE_WP };
	struct uffd_msg msg;
	bool copy_wp, move_wp, raised;

	memset(pool, 0x5a, 2 * ps); /* populated before registering: touching it after would fault */
	reg_range(fd, region, 2 * ps, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	if (ioctl(fd, UFFDIO_COPY, &c) < 0)
		fail("UFFDIO_COPY", 1);
	move_run(fd, region + ps, pool, ps, "check");
	copy_wp = pagemap_entry(region) >> 57 & 1;
	move_wp = pagemap_entry(region + ps) >> 57 & 1;
	if (!move_wp)
		region[ps] = 1; /* would block in a write-protect fault if it were tracked */
	raised = read(fd, &msg, sizeof(msg)) == (ssize_t)sizeof(msg);
	printf("after UFFDIO_COPY(MODE_WP): uffd-wp %s; after UFFDIO_MOVE: uffd-wp %s, a write %s\n",
	       copy_wp ? "set" : "CLEAR", move_wp ? "set" : "clear",
	       move_wp ? "not tried" : raised ? "raised a fault" : "raised nothing (untracked)");
	munmap(region, 2 * ps);
	munmap(pool, 2 * ps);
	close(fd);
	return !move_wp && !raised;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: uffd_install_cost [options]\n"
		   "  -p, --pages N     region pages (default 65536)\n"
		   "  -r, --runs LIST   pages per call, comma-separated (default 32,256)\n"
		   "  -a, --app M       0: no application thread, 1: one spinning on CPU 1, both (default)\n"
		   "  -T, --timeout S   watchdog (default 300)\n");
}

static void parse_runs(const char *s)
{
	char *end;

	nruns = 0;
	do {
		unsigned long v = strtoul(s, &end, 10);

		if (end == s || v == 0 || v > LAG_PAGES || LAG_PAGES % v || nruns == MAX_RUNS) {
			fprintf(stderr, "uffd_install_cost: --runs: each run a divisor of %d, at most %d of them\n",
				LAG_PAGES, MAX_RUNS);
			exit(2);
		}
		runs[nruns++] = v;
		s = end + 1;
	} while (*end == ',');
	if (*end) {
		fprintf(stderr, "uffd_install_cost: --runs: not a list of numbers\n");
		exit(2);
	}
}

int main(int argc, char **argv)
{
	static const struct option lo[] = { { "pages", required_argument, NULL, 'p' },
					    { "runs", required_argument, NULL, 'r' },
					    { "app", required_argument, NULL, 'a' },
					    { "timeout", required_argument, NULL, 'T' },
					    { "help", no_argument, NULL, 'h' },
					    { NULL, 0, NULL, 0 } };
	char *region, *pool, *src, spin_target[64] = { 0 };
	int o, fd;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	while ((o = getopt_long(argc, argv, "p:r:a:T:h", lo, NULL)) != -1) {
		switch (o) {
		case 'p':
			npages = strtoull(optarg, NULL, 10);
			if (npages < 2 * LAG_PAGES || npages % LAG_PAGES) {
				fprintf(stderr, "uffd_install_cost: --pages: a multiple of %d, at least %d\n",
					LAG_PAGES, 2 * LAG_PAGES);
				return 2;
			}
			break;
		case 'r':
			parse_runs(optarg);
			break;
		case 'a':
			if (!strcmp(optarg, "both")) {
				napp_modes = 2;
			} else if (!strcmp(optarg, "0") || !strcmp(optarg, "1")) {
				app_modes[0] = optarg[0] - '0';
				napp_modes = 1;
			} else {
				usage(stderr);
				return 2;
			}
			break;
		case 'T':
			timeout_s = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	signal(SIGALRM, on_alarm);
	alarm(timeout_s);

	fd = uffd_open_move();
	region = map_anon(npages * ps);
	pool = map_anon((LAG_PAGES + 256) * ps);
	src = map_anon(SRC_BYTES);
	memset(src, 0xa5, SRC_BYTES);
	memset(pool, 0x3c, (LAG_PAGES + 256) * ps);
	reg_range(fd, region, npages * ps, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	reg_range(fd, pool, (LAG_PAGES + 256) * ps, UFFDIO_REGISTER_MODE_MISSING); /* a move's destination */
	pin_tid(0, 0);

	printf("uffd_install_cost: %llu pages swept twice per measurement, %d pages installed behind the sweep\n",
	       (unsigned long long)npages, LAG_PAGES);
	for (int a = 0; a < napp_modes; a++) {
		pthread_t app;

		atomic_store(&app_stop, false);
		if (app_modes[a] && pthread_create(&app, NULL, app_spin, spin_target))
			fail("pthread_create", 2);
		for (unsigned k = 0; k < nruns; k++) {
			double c = sweep_copy(fd, region, src, runs[k]), m = sweep_move(fd, region, pool, runs[k]);

			printf("app thread %-3s run %4lu pages: copy+dontneed %6.2f us/page   move+wp+move %6.2f us/page"
			       "   move/copy %.2f\n",
			       app_modes[a] ? "on" : "off", runs[k], c / 1000, m / 1000, m / c);
		}
		atomic_store(&app_stop, true);
		if (app_modes[a])
			pthread_join(app, NULL);
	}
	if (check_moved_write())
		printf("moved pages are untracked: a zero-copy fill would miss a write made before its "
		       "UFFDIO_WRITEPROTECT\n");
	return 0;
}
