/*
 * uffd_roundtrip - what one user-space page fault costs on this machine, and
 * what umapd adds to it.
 *
 * 1. bare:  the least a userfaultfd fault can cost.  A private anonymous
 *           area is registered for MISSING faults; one handler thread does a
 *           blocking read() of the userfaultfd and a UFFDIO_COPY from a static
 *           page; the application thread touches (reads) each page once and
 *           times each touch.
 * 2. umapd: the same touches on a umapd region of a file that is in the page
 *           cache, with the budget larger than the file (no eviction), no
 *           read-ahead (opts.read_ahead = -1) and one filler thread
 *           (UMAPD_FILLERS=1), each first touch timed from the application.
 *
 * Both run with the same thread placement: "same" pins the application and
 * the service thread(s) to CPU 0; "split" puts the application on CPU 0 and
 * the service thread(s) on CPU 1; "none" leaves placement to the scheduler.
 * For context it also times kernel faults with no userfaultfd involved.
 *
 * The floor: umapd's median within 2x of the bare round trip.
 * --check makes the exit status 1 when that is not met.
 */
#define _GNU_SOURCE
#include <umapd.h>

#include "perf_util.h"

#include <getopt.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>

static size_t npages = 50000;  /* timed touches per run */
static size_t nwarm = 1000;    /* untimed touches first */
static unsigned reps = 3;
static bool check;
static unsigned timeout_s = 120;
static size_t ps;              /* system page size */

struct placement {
	const char *name;
	int app_cpu, svc_cpu; /* -1: any */
};
static const struct placement placements[] = {
	{ "same", 0, 0 },
	{ "split", 0, 1 },
	{ "none", -1, -1 },
};
static bool want_placement[3] = { true, true, false };

static volatile sig_atomic_t stage; /* for the watchdog message */
static const char *stage_names[] = { "setup", "bare uffd", "umapd", "kernel faults" };

static void on_alarm(int sig)
{
	(void)sig;
	char msg[128];
	int n = snprintf(msg, sizeof msg, "uffd_roundtrip: watchdog: no result after %u s in stage '%s'\n",
			 timeout_s, stage_names[stage]);
	if (write(2, msg, (size_t)n) < 0) {
		/* nothing more to do */
	}
	_exit(2);
}

static void fail(const char *what)
{
	fprintf(stderr, "uffd_roundtrip: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* ---- the bare round trip -------------------------------------------------------------- */

static int open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd < 0) {
		/* Not permitted as a syscall: /dev/userfaultfd (5.11+) may be. */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev < 0)
			fail("userfaultfd");
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
		close(dev);
		if (fd < 0)
			fail("USERFAULTFD_IOC_NEW");
	}
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	if (ioctl(fd, UFFDIO_API, &api))
		fail("UFFDIO_API");
	return fd;
}

static char src_page[65536] __attribute__((aligned(65536)));

struct bare {
	int uffd;
	int cpu;
	size_t faults;
	const char *error;
};

static void *bare_handler(void *arg)
{
	struct bare *b = arg;
	pthread_setname_np(pthread_self(), "bare-handler");
	if (pin_tid(0, b->cpu))
		fail("sched_setaffinity (handler)");
	while (b->faults < npages + nwarm) {
		struct uffd_msg msg;
		ssize_t n = read(b->uffd, &msg, sizeof msg);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n != (ssize_t)sizeof msg) {
			b->error = "read of the userfaultfd";
			return NULL;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		struct uffdio_copy copy = {
			.dst = msg.arg.pagefault.address & ~(uint64_t)(ps - 1),
			.src = (uintptr_t)src_page,
			.len = ps,
			.mode = 0,
		};
		if (ioctl(b->uffd, UFFDIO_COPY, &copy) && errno != EEXIST) {
			b->error = "UFFDIO_COPY";
			return NULL;
		}
		b->faults++;
	}
	return NULL;
}

static uint64_t sink;

/* Read one byte of each page of area, timing the touches after the warm-up ones. */
static void touch_pages(char *area, struct hist *h)
{
	for (size_t i = 0; i < nwarm; i++)
		sink += *(volatile char *)(area + i * ps);
	for (size_t i = nwarm; i < nwarm + npages; i++) {
		uint64_t t0 = now_ns();
		sink += *(volatile char *)(area + i * ps);
		hist_add(h, now_ns() - t0);
	}
}

static void run_bare(const struct placement *pl, struct hist *h)
{
	stage = 1;
	size_t len = (npages + nwarm) * ps;
	char *area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		fail("mmap");
	struct bare b = { .uffd = open_uffd(), .cpu = pl->svc_cpu };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)area, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(b.uffd, UFFDIO_REGISTER, &reg))
		fail("UFFDIO_REGISTER");
	if (pin_tid(0, pl->app_cpu))
		fail("sched_setaffinity");
	pthread_t t;
	errno = pthread_create(&t, NULL, bare_handler, &b);
	if (errno)
		fail("pthread_create");
	/* Let the handler reach its CPU and block in read(). */
	usleep(20000);
	touch_pages(area, h);
	pthread_join(t, NULL);
	if (b.error) {
		fprintf(stderr, "uffd_roundtrip: bare handler: %s failed\n", b.error);
		exit(2);
	}
	close(b.uffd);
	munmap(area, len);
}

/* ---- umapd ---------------------------------------------------------------------------- */

static int data_fd = -1;
static char tmpdir[4096], data_path[4200];

static void cleanup(void)
{
	if (data_path[0])
		unlink(data_path);
	if (tmpdir[0])
		rmdir(tmpdir);
}

static void make_data_file(void)
{
	if (make_tmpdir(tmpdir, sizeof tmpdir, "uffd_roundtrip"))
		fail("mkdtemp");
	snprintf(data_path, sizeof data_path, "%s/data", tmpdir);
	atexit(cleanup);
	data_fd = open(data_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (data_fd < 0)
		fail(data_path);
	if (write_pattern_file(data_fd, (npages + nwarm) * ps, 0x5a5a5a5a5a5a5a5aull))
		fail("writing the data file");
	/* Read it once so that every page is in the page cache, clean. */
	char *buf = malloc(MIB);
	for (off_t off = 0; pread(data_fd, buf, MIB, off) > 0; off += (off_t)MIB)
		;
	free(buf);
}

struct umapd_run {
	struct umapd_stats st;
	int pinned;
};

static void run_umapd(const struct placement *pl, struct hist *h, struct umapd_run *r)
{
	stage = 2;
	size_t len = (npages + nwarm) * ps;
	struct umapd_region_opts ro;
	memset(&ro, 0, sizeof ro);
	ro.read_ahead = -1;
	if (pin_tid(0, pl->app_cpu))
		fail("sched_setaffinity");
	char *area = umapd_map(NULL, len, PROT_READ, 0, data_fd, 0, &ro);
	if (!area)
		fail("umapd_map");
	/* The service threads are pinned by name; they exist once the engine started. */
	r->pinned = pin_threads_named("umapd", pl->svc_cpu);
	usleep(20000);
	touch_pages(area, h);
	if (umapd_region_stats(area, &r->st))
		fail("umapd_region_stats");
	/* Check a few words: the pattern is offset ^ salt. */
	for (size_t i = 0; i < npages + nwarm; i += 997) {
		uint64_t w;
		memcpy(&w, area + i * ps + 8, 8);
		if (w != ((uint64_t)(i * ps + 8) ^ 0x5a5a5a5a5a5a5a5aull)) {
			fprintf(stderr, "uffd_roundtrip: umapd returned wrong data at offset %zu: 0x%" PRIx64 "\n",
				i * ps + 8, w);
			exit(2);
		}
	}
	if (umapd_unmap(area))
		fail("umapd_unmap");
}

/* ---- kernel faults, for context ------------------------------------------------------- */

static void run_kernel(struct hist *anon, struct hist *file)
{
	stage = 3;
	size_t len = (npages + nwarm) * ps;
	if (pin_tid(0, 0))
		fail("sched_setaffinity");
	char *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		fail("mmap");
	madvise(a, len, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < nwarm; i++)
		a[i * ps] = 1;
	for (size_t i = nwarm; i < nwarm + npages; i++) {
		uint64_t t0 = now_ns();
		*(volatile char *)(a + i * ps) = 1;
		hist_add(anon, now_ns() - t0);
	}
	munmap(a, len);

	char *f = mmap(NULL, len, PROT_READ, MAP_SHARED, data_fd, 0);
	if (f == MAP_FAILED)
		fail("mmap");
	madvise(f, len, MADV_RANDOM);
	touch_pages(f, file);
	munmap(f, len);
}

/* ---- main ----------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: uffd_roundtrip [options]\n"
		"  -n, --pages N         timed first touches per run (default 50000)\n"
		"  -w, --warmup N        untimed touches before them (default 1000)\n"
		"  -r, --reps N          runs of each kind, interleaved and pooled (default 3)\n"
		"  -p, --placement LIST  same,split,none or all (default same,split)\n"
		"  -c, --check           exit 1 unless umapd p50 <= 2x bare p50 for every placement\n"
		"  -T, --timeout SEC     watchdog (default 120)\n"
		"  -h, --help\n");
}

static void print_row(const char *name, const struct hist *h)
{
	char a[32], b[32], c[32], d[32], e[32];
	printf("  %-34s %9s %9s %9s %9s %9s %8" PRIu64 "\n", name, fmt_ns(a, sizeof a, hist_pct(h, 50)),
	       fmt_ns(b, sizeof b, hist_pct(h, 99)),
	       fmt_ns(c, sizeof c, h->count ? h->sum / h->count : 0), fmt_ns(d, sizeof d, h->min),
	       fmt_ns(e, sizeof e, h->max), h->count);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pages", required_argument, NULL, 'n' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "reps", required_argument, NULL, 'r' },
		{ "placement", required_argument, NULL, 'p' },
		{ "check", no_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	uint64_t v;
	while ((c = getopt_long(argc, argv, "n:w:r:p:cT:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (parse_size(optarg, &v) || v == 0 || v > (1u << 24))
				goto bad;
			npages = v;
			break;
		case 'w':
			if (parse_size(optarg, &v) || v > (1u << 24))
				goto bad;
			nwarm = v;
			break;
		case 'r':
			if (parse_size(optarg, &v) || v == 0 || v > 100)
				goto bad;
			reps = (unsigned)v;
			break;
		case 'p': {
			memset(want_placement, 0, sizeof want_placement);
			char *s = strdup(optarg), *save = NULL;
			for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				bool ok = false;
				for (int i = 0; i < 3; i++)
					if (!strcmp(t, placements[i].name) || !strcmp(t, "all"))
						want_placement[i] = ok = true;
				if (!ok) {
					free(s);
					goto bad;
				}
			}
			free(s);
			break;
		}
		case 'c':
			check = true;
			break;
		case 'T':
			if (parse_size(optarg, &v) || v > 86400)
				goto bad;
			timeout_s = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
		bad:
			usage(stderr);
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	ps = (size_t)sysconf(_SC_PAGESIZE);
	if (ps > sizeof src_page) {
		fprintf(stderr, "uffd_roundtrip: page size %zu not supported\n", ps);
		return 2;
	}
	memset(src_page, 0xa5, sizeof src_page);
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2 && (want_placement[1])) {
		fprintf(stderr, "uffd_roundtrip: one CPU online: no 'split' placement\n");
		want_placement[1] = false;
	}
	signal(SIGALRM, on_alarm);
	alarm(timeout_s);

	make_data_file();

	/* One service thread, no read-ahead, a budget well above the data. */
	char budget[32];
	snprintf(budget, sizeof budget, "%" PRIu64, (uint64_t)(2 * (npages + nwarm) * ps) + 64 * MIB);
	if (umapd_config_set("UMAPD_FILLERS", "1"))
		fail("umapd_config_set UMAPD_FILLERS");
	if (umapd_config_set("UMAPD_BUFSIZE", budget))
		fail("umapd_config_set UMAPD_BUFSIZE");
	if (umapd_init())
		fail("umapd_init");

	struct hist bare[3], um[3], kanon, kfile;
	struct umapd_run ur[3];
	memset(bare, 0, sizeof bare);
	memset(um, 0, sizeof um);
	memset(ur, 0, sizeof ur);
	memset(&kanon, 0, sizeof kanon);
	memset(&kfile, 0, sizeof kfile);

	for (unsigned r = 0; r < reps; r++) {
		for (int p = 0; p < 3; p++) {
			if (!want_placement[p])
				continue;
			run_bare(&placements[p], &bare[p]);
			struct umapd_run one;
			run_umapd(&placements[p], &um[p], &one);
			ur[p].pinned = one.pinned;
			ur[p].st.faults += one.st.faults;
			ur[p].st.fills += one.st.fills;
			ur[p].st.readahead_pages += one.st.readahead_pages;
			ur[p].st.evictions += one.st.evictions;
			ur[p].st.latency_p50_ns = one.st.latency_p50_ns; /* last run's */
			ur[p].st.latency_p99_ns = one.st.latency_p99_ns;
		}
		run_kernel(&kanon, &kfile);
	}
	alarm(0);

	char a[32];
	printf("uffd_roundtrip: %zu timed first touches per run (after %zu untimed), %u runs pooled, "
	       "%zu-byte pages\n",
	       npages, nwarm, reps, ps);
	printf("  %-34s %9s %9s %9s %9s %9s %8s\n", "per first touch", "p50", "p99", "mean", "min", "max",
	       "n");
	bool met = true;
	for (int p = 0; p < 3; p++) {
		if (!want_placement[p])
			continue;
		const struct placement *pl = &placements[p];
		char title[80], name[64];
		if (pl->app_cpu < 0)
			snprintf(title, sizeof title, "placement none (scheduler's choice)");
		else
			snprintf(title, sizeof title, "placement %s: app on CPU %d, service on CPU %d", pl->name,
				 pl->app_cpu, pl->svc_cpu);
		printf("%s\n", title);
		snprintf(name, sizeof name, "bare uffd (read+UFFDIO_COPY)");
		print_row(name, &bare[p]);
		snprintf(name, sizeof name, "umapd, page cache, no read-ahead");
		print_row(name, &um[p]);
		double ratio = (double)hist_pct(&um[p], 50) / (double)hist_pct(&bare[p], 50);
		bool ok = ratio <= 2.0;
		met = met && ok;
		printf("  ratio umapd/bare p50 %.2fx, mean %.2fx  (floor p50 <= 2x: %s)\n", ratio,
		       (double)(um[p].sum / um[p].count) / (double)(bare[p].sum / bare[p].count),
		       ok ? "met" : "NOT met");
		printf("  umapd saw %" PRIu64 " faults, %" PRIu64 " fills, %" PRIu64 " read-ahead pages, %" PRIu64
		       " evictions; its own service latency p50 %s",
		       ur[p].st.faults, ur[p].st.fills, ur[p].st.readahead_pages, ur[p].st.evictions,
		       fmt_ns(a, sizeof a, ur[p].st.latency_p50_ns));
		printf(", p99 %s; %d umapd threads pinned\n", fmt_ns(a, sizeof a, ur[p].st.latency_p99_ns),
		       ur[p].pinned);
		if (ur[p].pinned == 0)
			printf("  warning: no thread named umapd* found: the service threads were not placed\n");
	}
	printf("kernel faults for context (app on CPU 0, no userfaultfd)\n");
	print_row("anonymous write fault (zeroed page)", &kanon);
	print_row("file mmap read, page cache (*)", &kfile);
	printf("  (*) per page touched: fault-around maps several pages per fault\n");
	return check && !met ? 1 : 0;
}
