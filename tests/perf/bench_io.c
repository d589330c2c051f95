/*
 * bench_io - the issue-4 benchmarks: umapd, fio and the kernel's mmap on the
 * same file, in one invocation, each held to the same memory budget, with
 * the ratios against the floors.
 *
 * Workloads (--only randread,seqscan,rmw; all by default):
 *
 *   randread  T threads (default 32) each read a random 4 KiB page of a file
 *             4x the budget (two words of it, checked against the file's
 *             pattern).  umapd: O_DIRECT store (opts.direct = 1), read-ahead
 *             off (opts.read_ahead = -1).  Against fio --ioengine=io_uring
 *             --rw=randread --bs=4k --iodepth=T --direct=1 on the same file
 *             for the same time: floor umapd pages/s >= 0.8x fio IOPS.  The
 *             kernel's mmap (MADV_RANDOM, T threads) for reference.
 *   seqscan   a sequential scan of the whole file, one thread, and two
 *             threads over halves (--seq-threads), looping for the measured
 *             time; one word of each page read and checked.  umapd with an
 *             O_DIRECT and with a buffered store, each against fio --rw=read
 *             --bs=1M in the same mode (one job per thread, each over its
 *             slice): floor >= 0.8x; and against the kernel's mmap: floor
 *             >= 1.0x.
 *   rmw       T threads (default 2 and 32) each pick a random page, read a
 *             word of it, add one and store it back.  Page p belongs to
 *             thread p % T, which knows how often the page was incremented
 *             (a shared counter array), so every read is checked, and after
 *             every run the whole file is read back and compared: the word
 *             at index k(p) must be its initial value plus the page's count,
 *             every other word its initial value.  Against the kernel's mmap
 *             (MADV_RANDOM): floor umapd >= 1.5x.
 *
 * Memory: every run is a child process in its own memory cgroup v1
 * (/sys/fs/cgroup/memory/umapd-bio-<pid>-<n>, removed afterwards), which
 * page cache counts against:
 *   mmap and fio   limit = budget;
 *   umapd          UMAPD_BUFSIZE = budget, and a cgroup limit of budget +
 *                  slack (default 64 MiB) for its own memory (metadata,
 *                  bounce buffers, thread stacks and, with a buffered store,
 *                  the page cache its preads go through), so that the
 *                  kernel's cache cannot hold the file for it.
 * Before every run the file's pages are dropped from the page cache
 * (fdatasync + POSIX_FADV_DONTNEED); before every run through the page cache
 * (mmap, buffered umapd, buffered fio) also `sync; echo 3 >
 * /proc/sys/vm/drop_caches` (--drop-caches never|buffered|always).
 *
 * Warm-up: --warmup seconds, and for randread and rmw also until the memory
 * in use reaches 80% of the budget (umapd resident bytes, or the mmap
 * child's cgroup usage), at most --warmup-max seconds, so that both are
 * measured in their steady state.  fio gets --ramp_time = --warmup.
 *
 * Each measurement is repeated --reps times (default 3), interleaved
 * (umapd, fio, mmap, umapd, ...); the table gives the median and the
 * spread, the ratios are ratios of medians (with the range of the per-rep
 * ratios).  One line per workload and configuration is machine-readable:
 *   RESULT workload=randread threads=32 mode=direct engine=... umapd=...
 *          fio=... mmap=... ratio_fio=... ratio_mmap=... floor=... pass=yes|no
 *
 * --engine io_uring|aio|psync|auto sets UMAPD_IO in the umapd children.
 * Any other UMAPD_* variable in the environment applies to them too.
 *
 * Exit status: 0 when every run completed and every check of the data
 * passed (whatever the ratios), 1 on a failed run or wrong data, 2 on a
 * usage or setup error; with --strict, 3 when all ran but a floor was missed.
 * Needs root (cgroups, drop_caches) and fio (run-io-bench.sh installs it).
 */
#define _GNU_SOURCE
#include <umapd.h>

#include "perf_util.h"

#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PG 4096u                    /* bytes per page, all systems */
#define WPP (PG / 8)                /* words per page */
#define SALT 0x3c6ef372fe94f82bull
#define CGROOT "/sys/fs/cgroup/memory"
#define MAXREPS 15
#define MAXT 8                      /* thread-count lists */

enum wl { WL_RANDREAD, WL_SEQSCAN, WL_RMW, WL_N };
static const char *wl_name[] = { "randread", "seqscan", "rmw" };
enum sys { SYS_UMAPD, SYS_FIO, SYS_MMAP, SYS_N };
static const char *sys_name[] = { "umapd", "fio", "mmap" };

static struct {
	uint64_t budget, size, slack;
	double ratio;
	unsigned rr_threads;
	unsigned seq_threads[MAXT], n_seq;
	unsigned rmw_threads[MAXT], n_rmw;
	double warmup, warmup_max, seconds;
	unsigned reps;
	bool wl[WL_N];
	bool sys[SYS_N];
	bool seq_mode[2];            /* [0] buffered, [1] direct */
	int rr_direct, rmw_direct;
	long seq_ra;                 /* umapd read-ahead for seqscan; 0: UMAPD_READ_AHEAD */
	bool seq_advice;
	unsigned fio_seq_depth;
	const char *engine;
	const char *dir;
	const char *fio;
	int drop;                    /* 0 never, 1 before runs through the page cache, 2 always */
	bool umapd_cgroup;
	unsigned timeout;
	unsigned run_timeout;
	bool strict;
	bool keep;
	bool plant;                  /* --self-test */
} opt = {
	.budget = 256 * MIB,
	.ratio = 4,
	.slack = 64 * MIB,
	.rr_threads = 32,
	.seq_threads = { 1, 2 },
	.n_seq = 2,
	.rmw_threads = { 2, 32 },
	.n_rmw = 2,
	.warmup = 2,
	.warmup_max = 15,
	.seconds = 5,
	.reps = 3,
	.wl = { true, true, true },
	.sys = { true, true, true },
	.seq_mode = { true, true },
	.rr_direct = 1,
	.rmw_direct = 1,
	.fio_seq_depth = 1,
	.fio = "fio",
	.drop = 1,
	.umapd_cgroup = true,
	.timeout = 3600,
	.run_timeout = 180,
};

static uint64_t fsize, npages;

/* The file's initial content: word i of page p. */
static inline uint64_t pat(uint64_t p, unsigned i)
{
	return (p * PG + (uint64_t)i * 8) ^ SALT;
}

/* The word of page p that rmw increments: never the first or the last. */
static inline unsigned kidx(uint64_t p)
{
	return 1 + (unsigned)(mix64(p ^ 0x9e3779b97f4a7c15ull) % (WPP - 2));
}

/* ---- results ------------------------------------------------------------------------------ */

struct result {
	int ok;
	char error[240];
	char note[240];             /* the first data mismatch, if any */
	uint64_t ops;               /* pages during the measured period */
	double secs;
	double rate;                /* pages/s (randread, rmw) or bytes/s (seqscan) */
	double warm_secs;           /* warm-up actually used */
	double teardown_secs;
	uint64_t mismatches;
	struct hist lat;            /* sampled op latency */
	struct umapd_stats st0, st; /* umapd: process stats at the start and end of the period */
	struct umapd_stats st_end;  /* umapd: after umapd_unmap (the whole run, teardown included) */
	long majflt, minflt, nvcsw, nivcsw;
	double utime, stime;
	/* filled in by the parent */
	uint64_t cg_limit, cg_peak, cg_failcnt;
	uint64_t fio_p50_ns, fio_p99_ns;
	int status;                 /* wait status of the child */
};

/* ---- the child: one system, one workload ------------------------------------------------ */

static char *map;
static enum wl cur_wl;
static unsigned cur_threads;
static _Atomic uint32_t *counts;    /* rmw: increments per page, shared with the parent */
static atomic_bool stop, measuring;

struct thr {
	pthread_t t;
	unsigned id;
	_Alignas(64) atomic_uint_fast64_t ops;
	uint64_t lo, hi;            /* seqscan: pages [lo, hi) */
	uint64_t mismatches;
	char note[200];
	struct hist lat;
};

static void mismatch(struct thr *t, uint64_t p, unsigned i, uint64_t want, uint64_t got)
{
	if (t->mismatches++ == 0)
		snprintf(t->note, sizeof t->note,
			 "page %" PRIu64 " word %u: read 0x%016" PRIx64 ", expected 0x%016" PRIx64, p, i, got,
			 want);
}

static void *thr_randread(void *arg)
{
	struct thr *t = arg;
	uint64_t s = mix64(0xabcdef + t->id) | 1, n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t p = rnd(&s) % npages;
		bool timed = (n & 7) == 0 && atomic_load_explicit(&measuring, memory_order_relaxed);
		uint64_t t0 = timed ? now_ns() : 0;
		const uint64_t *w = (const uint64_t *)(map + p * PG);
		uint64_t a = w[0], b = w[WPP - 1];
		if (timed)
			hist_add(&t->lat, now_ns() - t0);
		if (a != pat(p, 0))
			mismatch(t, p, 0, pat(p, 0), a);
		else if (b != pat(p, WPP - 1))
			mismatch(t, p, WPP - 1, pat(p, WPP - 1), b);
		atomic_store_explicit(&t->ops, ++n, memory_order_relaxed);
	}
	return NULL;
}

static void *thr_seqscan(void *arg)
{
	struct thr *t = arg;
	uint64_t n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (uint64_t p = t->lo; p < t->hi; p++) {
			uint64_t a = *(const uint64_t *)(map + p * PG);
			if (a != pat(p, 0))
				mismatch(t, p, 0, pat(p, 0), a);
			atomic_store_explicit(&t->ops, ++n, memory_order_relaxed);
			if ((p & 255) == 0 && atomic_load_explicit(&stop, memory_order_relaxed))
				break;
		}
	}
	return NULL;
}

static void *thr_rmw(void *arg)
{
	struct thr *t = arg;
	uint64_t s = mix64(0x13579b + t->id) | 1, n = 0, T = cur_threads;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		/* A random page among the ones this thread owns (p % T == id). */
		uint64_t p = rnd(&s) % npages;
		p = p - p % T + t->id;
		if (p >= npages)
			p -= T;
		unsigned k = kidx(p);
		uint32_t c = atomic_load_explicit(&counts[p], memory_order_relaxed);
		uint64_t want = pat(p, k) + c;
		bool timed = (n & 7) == 0 && atomic_load_explicit(&measuring, memory_order_relaxed);
		uint64_t t0 = timed ? now_ns() : 0;
		uint64_t *w = (uint64_t *)(map + p * PG);
		uint64_t v = w[k];
		w[k] = v + 1 + (n == 0 && t->id == 0 && opt.plant); /* --self-test: one increment too many */
		if (timed)
			hist_add(&t->lat, now_ns() - t0);
		if (v != want)
			mismatch(t, p, k, want, v);
		atomic_store_explicit(&counts[p], c + 1, memory_order_relaxed);
		atomic_store_explicit(&t->ops, ++n, memory_order_relaxed);
	}
	return NULL;
}

static double tv_secs(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

static void sleep_secs(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static uint64_t total_ops(struct thr *t, unsigned n)
{
	uint64_t sum = 0;
	for (unsigned i = 0; i < n; i++)
		sum += atomic_load_explicit(&t[i].ops, memory_order_relaxed);
	return sum;
}

static char cg_path[256];

static uint64_t read_u64(const char *dir, const char *name)
{
	char path[512], buf[64] = "";
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof buf, f))
		buf[0] = 0;
	fclose(f);
	return strtoull(buf, NULL, 10);
}

/* Memory the child's data occupies now, for the warm-up. */
static uint64_t mem_in_use(enum sys sys)
{
	if (sys == SYS_UMAPD) {
		struct umapd_stats st;
		return umapd_stats(&st) ? 0 : st.resident_bytes;
	}
	return cg_path[0] ? read_u64(cg_path, "memory.usage_in_bytes") : UINT64_MAX;
}

static void child_fail(struct result *r, const char *what)
{
	snprintf(r->error, sizeof r->error, "%s: %s", what, strerror(errno));
	r->ok = 0;
}

static void child_run(enum sys sys, enum wl wl, unsigned threads, bool direct, int fd, struct result *r)
{
	memset(r, 0, sizeof *r);
	cur_wl = wl;
	cur_threads = threads;
	int prot = wl == WL_RMW ? PROT_READ | PROT_WRITE : PROT_READ;

	if (sys == SYS_UMAPD) {
		char v[32];
		if (opt.engine && setenv("UMAPD_IO", opt.engine, 1))
			return child_fail(r, "setenv UMAPD_IO");
		snprintf(v, sizeof v, "%" PRIu64, opt.budget);
		if (umapd_config_set("UMAPD_BUFSIZE", v))
			return child_fail(r, "umapd_config_set UMAPD_BUFSIZE");
		struct umapd_region_opts ro;
		memset(&ro, 0, sizeof ro);
		ro.page_size = PG;
		ro.read_ahead = wl == WL_SEQSCAN ? opt.seq_ra : -1;
		ro.direct = direct;
		map = umapd_map(NULL, fsize, prot, 0, fd, 0, &ro);
		if (!map)
			return child_fail(r, "umapd_map");
		if (wl == WL_SEQSCAN && opt.seq_advice && umapd_advise(map, fsize, UMAPD_ADV_SEQUENTIAL))
			return child_fail(r, "umapd_advise SEQUENTIAL");
	} else {
		map = mmap(NULL, fsize, prot, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED)
			return child_fail(r, "mmap");
		int adv = wl == WL_SEQSCAN ? (opt.seq_advice ? MADV_SEQUENTIAL : MADV_NORMAL) : MADV_RANDOM;
		if (madvise(map, fsize, adv))
			return child_fail(r, "madvise");
	}

	struct thr *t = aligned_alloc(64, sizeof *t * threads);
	if (!t)
		return child_fail(r, "aligned_alloc");
	memset(t, 0, sizeof *t * threads);
	void *(*fn)(void *) = wl == WL_RANDREAD ? thr_randread : wl == WL_SEQSCAN ? thr_seqscan : thr_rmw;
	for (unsigned i = 0; i < threads; i++) {
		t[i].id = i;
		t[i].lo = npages * i / threads;
		t[i].hi = npages * (i + 1) / threads;
		errno = pthread_create(&t[i].t, NULL, fn, &t[i]);
		if (errno)
			return child_fail(r, "pthread_create");
	}

	uint64_t w0 = now_ns();
	sleep_secs(opt.warmup);
	if (wl != WL_SEQSCAN)
		while ((double)(now_ns() - w0) * 1e-9 < opt.warmup_max &&
		       mem_in_use(sys) < opt.budget / 10 * 8)
			sleep_secs(0.1);
	r->warm_secs = (double)(now_ns() - w0) * 1e-9;

	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	if (sys == SYS_UMAPD)
		umapd_stats(&r->st0);
	uint64_t c0 = total_ops(t, threads), t0 = now_ns();
	atomic_store(&measuring, true);
	sleep_secs(opt.seconds);
	uint64_t c1 = total_ops(t, threads), t1 = now_ns();
	atomic_store(&measuring, false);
	getrusage(RUSAGE_SELF, &ru1);
	if (sys == SYS_UMAPD)
		umapd_stats(&r->st);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(t[i].t, NULL);
		hist_merge(&r->lat, &t[i].lat);
		if (t[i].mismatches && !r->mismatches)
			snprintf(r->note, sizeof r->note, "%s", t[i].note);
		r->mismatches += t[i].mismatches;
	}
	r->ops = c1 - c0;
	r->secs = (double)(t1 - t0) * 1e-9;
	r->rate = (double)r->ops / r->secs * (wl == WL_SEQSCAN ? PG : 1);
	r->majflt = ru1.ru_majflt - ru0.ru_majflt;
	r->minflt = ru1.ru_minflt - ru0.ru_minflt;
	r->utime = tv_secs(ru1.ru_utime) - tv_secs(ru0.ru_utime);
	r->stime = tv_secs(ru1.ru_stime) - tv_secs(ru0.ru_stime);
	r->nvcsw = ru1.ru_nvcsw - ru0.ru_nvcsw;
	r->nivcsw = ru1.ru_nivcsw - ru0.ru_nivcsw;

	uint64_t d0 = now_ns();
	if (sys == SYS_UMAPD) {
		if (umapd_unmap(map))
			return child_fail(r, "umapd_unmap");
	} else {
		if (wl == WL_RMW && msync(map, fsize, MS_SYNC))
			return child_fail(r, "msync");
		munmap(map, fsize);
	}
	r->teardown_secs = (double)(now_ns() - d0) * 1e-9;
	if (sys == SYS_UMAPD)
		umapd_stats(&r->st_end);
	free(t);
	r->ok = 1;
}

/* ---- the parent --------------------------------------------------------------------------- */

static pid_t child_pid;
static char tmpdir[4096], data_path[4200], log_path[4200];
static int data_fd = -1;

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, s, strlen(s));
	int e = errno;
	close(fd);
	errno = e;
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

static void cg_remove(void)
{
	if (!cg_path[0])
		return;
	for (int i = 0; i < 100 && rmdir(cg_path) && errno == EBUSY; i++)
		usleep(20000);
	cg_path[0] = 0;
}

static void cleanup(void)
{
	if (child_pid > 0) {
		kill(child_pid, SIGKILL);
		waitpid(child_pid, NULL, 0);
		child_pid = 0;
	}
	cg_remove();
	if (!opt.keep) {
		if (data_path[0])
			unlink(data_path);
		if (log_path[0])
			unlink(log_path);
		if (tmpdir[0])
			rmdir(tmpdir);
	}
	data_path[0] = tmpdir[0] = log_path[0] = 0;
}

static void on_signal(int sig)
{
	(void)sig;
	static const char msg[] = "bench_io: interrupted or timed out; cleaning up\n";
	if (write(2, msg, sizeof msg - 1) < 0) {
		/* nothing to do */
	}
	cleanup();
	_exit(2);
}

static void fail(const char *what)
{
	fprintf(stderr, "bench_io: %s: %s\n", what, strerror(errno));
	cleanup();
	exit(2);
}

static void drop_file_cache(bool global)
{
	if (fdatasync(data_fd))
		fail("fdatasync");
	if (global) {
		sync();
		if (write_file("/proc/sys/vm/drop_caches", "3"))
			fail("echo 3 > /proc/sys/vm/drop_caches");
	}
	errno = posix_fadvise(data_fd, 0, 0, POSIX_FADV_DONTNEED);
	if (errno)
		fail("posix_fadvise DONTNEED");
}

static void cg_create(int n, uint64_t limit)
{
	snprintf(cg_path, sizeof cg_path, CGROOT "/umapd-bio-%d-%d", (int)getpid(), n);
	if (mkdir(cg_path, 0755))
		fail(cg_path);
	char v[64], p[512];
	snprintf(v, sizeof v, "%" PRIu64, limit);
	snprintf(p, sizeof p, "%s/memory.limit_in_bytes", cg_path);
	if (write_file(p, v))
		fail("memory.limit_in_bytes");
}

static void cg_enter(pid_t pid)
{
	char v[32], p[512];
	snprintf(v, sizeof v, "%d", (int)pid);
	snprintf(p, sizeof p, "%s/cgroup.procs", cg_path);
	if (write_file(p, v))
		fail("cgroup.procs");
}

/* Where a hung child stands: each thread's name, wait channel and kernel stack. */
static void dump_child(pid_t pid)
{
	char path[128];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p[300], comm[64] = "", wchan[128] = "", stack[512] = "";
		FILE *f;
		snprintf(p, sizeof p, "/proc/%d/task/%s/comm", (int)pid, de->d_name);
		if ((f = fopen(p, "r"))) {
			if (!fgets(comm, sizeof comm, f))
				comm[0] = 0;
			fclose(f);
			comm[strcspn(comm, "\n")] = 0;
		}
		snprintf(p, sizeof p, "/proc/%d/task/%s/wchan", (int)pid, de->d_name);
		if ((f = fopen(p, "r"))) {
			if (!fgets(wchan, sizeof wchan, f))
				wchan[0] = 0;
			fclose(f);
		}
		snprintf(p, sizeof p, "/proc/%d/task/%s/stack", (int)pid, de->d_name);
		if ((f = fopen(p, "r"))) {
			size_t n = fread(stack, 1, sizeof stack - 1, f);
			stack[n] = 0;
			fclose(f);
			for (char *c = stack; *c; c++)
				if (*c == '\n')
					*c = '|';
		}
		fprintf(stderr, "  tid %s %-16s wchan %-24s %s\n", de->d_name, comm, wchan, stack);
	}
	closedir(d);
}

/*
 * Read exactly len bytes from fd into buf within timeout_ms (or to EOF when
 * eof_ok).  Returns bytes read, or -1 on timeout.
 */
static ssize_t read_timed(int fd, char *buf, size_t len, int timeout_ms, bool eof_ok)
{
	size_t off = 0;
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	while (off < len) {
		uint64_t now = now_ns();
		if (now >= end)
			return -1;
		struct pollfd pf = { fd, POLLIN, 0 };
		int r = poll(&pf, 1, (int)((end - now) / 1000000 + 1));
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return -1;
		ssize_t n = read(fd, buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	(void)eof_ok;
	return (ssize_t)off;
}

static int run_counter;

static void finish_child(struct result *res, const char *what, bool timed_out)
{
	if (timed_out) {
		fprintf(stderr, "bench_io: %s did not finish within its time; where it stood:\n", what);
		dump_child(child_pid);
		kill(child_pid, SIGKILL);
	}
	waitpid(child_pid, &res->status, 0);
	child_pid = 0;
	if (cg_path[0]) {
		res->cg_peak = read_u64(cg_path, "memory.max_usage_in_bytes");
		res->cg_failcnt = read_u64(cg_path, "memory.failcnt");
		cg_remove();
	}
	if (timed_out) {
		snprintf(res->error, sizeof res->error, "timed out (killed; threads dumped above)");
		res->ok = 0;
	}
}

/* What the child logged (umapd's warnings and errors): a count and a few lines. */
static void summarise_log(void)
{
	FILE *f = fopen(log_path, "r");
	if (!f)
		return;
	char line[512], last[512] = "";
	unsigned n = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		if (n < 3)
			printf("        log: %s\n", line);
		snprintf(last, sizeof last, "%s", line);
		n++;
	}
	fclose(f);
	if (n > 4)
		printf("        log: ... %u lines in all, the last:\n", n);
	if (n > 3)
		printf("        log: %s\n", last);
	if (!opt.keep)
		unlink(log_path);
}

/* A umapd or mmap run in a child process in its own cgroup. */
static int run_mapped(enum sys sys, enum wl wl, unsigned threads, bool direct, struct result *res)
{
	memset(res, 0, sizeof *res);
	snprintf(log_path, sizeof log_path, "%s/run-%d.log", tmpdir, run_counter);
	bool through_cache = sys == SYS_MMAP || !direct;
	drop_file_cache(opt.drop == 2 || (opt.drop == 1 && through_cache));
	uint64_t limit = sys == SYS_UMAPD ? opt.budget + opt.slack : opt.budget;
	bool cg = sys == SYS_MMAP || opt.umapd_cgroup;
	if (cg)
		cg_create(run_counter++, limit);

	int go[2], out[2];
	if (pipe2(go, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		fail("pipe");
	fflush(stdout);
	child_pid = fork();
	if (child_pid < 0)
		fail("fork");
	if (child_pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGALRM, SIG_DFL);
		alarm(0);
		/* The library's log goes to a file the parent summarises. */
		int lfd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (lfd >= 0 && dup2(lfd, 2) < 0)
			_exit(3);
		tmpdir[0] = data_path[0] = 0;
		char c;
		close(go[1]);
		close(out[0]);
		if (read(go[0], &c, 1) != 1)
			_exit(3);
		struct result *r = calloc(1, sizeof *r);
		if (!r)
			_exit(3);
		child_run(sys, wl, threads, direct, data_fd, r);
		size_t off = 0;
		while (off < sizeof *r) {
			ssize_t w = write(out[1], (char *)r + off, sizeof *r - off);
			if (w <= 0)
				_exit(3);
			off += (size_t)w;
		}
		_exit(0);
	}
	close(go[0]);
	close(out[1]);
	if (cg)
		cg_enter(child_pid);
	if (write(go[1], "g", 1) != 1)
		fail("write to child");
	close(go[1]);

	int tmo = (int)((opt.warmup_max + opt.warmup + opt.seconds + opt.run_timeout) * 1000);
	static struct result got;
	ssize_t n = read_timed(out[0], (char *)&got, sizeof got, tmo, false);
	close(out[0]);
	if (n == (ssize_t)sizeof got)
		*res = got;
	res->cg_limit = cg ? limit : 0;
	char what[64];
	snprintf(what, sizeof what, "%s %s", sys_name[sys], wl_name[wl]);
	finish_child(res, what, n < 0);
	if (n >= 0 && (size_t)n != sizeof got) {
		int st = res->status;
		char m[32];
		snprintf(res->error, sizeof res->error,
			 "child exited without a result (%s %d%s; cgroup peak %s, failcnt %" PRIu64 ")",
			 WIFSIGNALED(st) ? "signal" : "status", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
			 WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? ": memory cgroup OOM kill?" : "",
			 fmt_mib(m, sizeof m, res->cg_peak), res->cg_failcnt);
		res->ok = 0;
	}
	return res->ok ? 0 : -1;
}

/* ---- fio ------------------------------------------------------------------------------------ */

static void fio_args(enum wl wl, unsigned threads, bool direct, char **argv, char store[][96])
{
	int n = 0;
#define ARG(...) (snprintf(store[n], 96, __VA_ARGS__), argv[n] = store[n], n++)
	ARG("%s", opt.fio);
	ARG("--name=bench_io-%s", wl_name[wl]);
	ARG("--ioengine=io_uring");
	ARG("--direct=%d", direct ? 1 : 0);
	if (wl == WL_RANDREAD) {
		ARG("--rw=randread");
		ARG("--bs=4k");
		ARG("--iodepth=%u", threads);
		ARG("--size=%" PRIu64, fsize);
		ARG("--norandommap");
		ARG("--randrepeat=0");
	} else {
		uint64_t slice = fsize / threads / MIB * MIB;
		ARG("--rw=read");
		ARG("--bs=1M");
		ARG("--iodepth=%u", opt.fio_seq_depth);
		ARG("--numjobs=%u", threads);
		ARG("--size=%" PRIu64, slice);
		ARG("--offset_increment=%" PRIu64, slice);
	}
	ARG("--time_based");
	ARG("--runtime=%lums", (unsigned long)(opt.seconds * 1000));
	ARG("--ramp_time=%lums", (unsigned long)(opt.warmup * 1000));
	ARG("--group_reporting");
	ARG("--output-format=terse");
	ARG("--terse-version=3");
	argv[n] = NULL;
#undef ARG
}

/* The number after "P%=" in the first field that starts with P (fio terse: usec). */
static uint64_t terse_pct(char **f, int nf, const char *p)
{
	size_t l = strlen(p);
	for (int i = 17; i < nf && i < 37; i++)
		if (!strncmp(f[i], p, l) && f[i][l] == '=')
			return strtoull(f[i] + l + 1, NULL, 10) * 1000;
	return 0;
}

/* fio processes: one job for randread, one per slice for seqscan. */
static unsigned threads_of(enum wl wl, unsigned threads)
{
	return wl == WL_SEQSCAN ? threads : 1;
}

static int run_fio(enum wl wl, unsigned threads, bool direct, struct result *res, bool print_cmd)
{
	memset(res, 0, sizeof *res);
	drop_file_cache(opt.drop == 2 || (opt.drop == 1 && !direct));
	cg_create(run_counter++, opt.budget);
	res->cg_limit = opt.budget;

	char *argv[40], store[40][96];
	fio_args(wl, threads, direct, argv, store);
	if (print_cmd) {
		printf("  $");
		for (int i = 0; argv[i]; i++)
			printf(" %s", argv[i]);
		printf(" --filename=%s\n", data_path);
	}
	char fname[4300];
	snprintf(fname, sizeof fname, "--filename=%s", data_path);
	int ac = 0;
	while (argv[ac])
		ac++;
	argv[ac] = fname;
	argv[ac + 1] = NULL;

	int go[2], out[2];
	if (pipe2(go, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		fail("pipe");
	fflush(stdout);
	child_pid = fork();
	if (child_pid < 0)
		fail("fork");
	if (child_pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGALRM, SIG_DFL);
		alarm(0);
		char c;
		if (read(go[0], &c, 1) != 1)
			_exit(3);
		if (dup2(out[1], 1) < 0)
			_exit(3);
		execvp(argv[0], argv);
		fprintf(stderr, "bench_io: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(go[0]);
	close(out[1]);
	cg_enter(child_pid);
	if (write(go[1], "g", 1) != 1)
		fail("write to fio child");
	close(go[1]);

	static char buf[65536];
	int tmo = (int)((opt.warmup + opt.seconds + opt.run_timeout) * 1000);
	ssize_t n = read_timed(out[0], buf, sizeof buf - 1, tmo, true);
	close(out[0]);
	finish_child(res, "fio", n < 0);
	if (n < 0)
		return -1;
	buf[n] = 0;
	if (!WIFEXITED(res->status) || WEXITSTATUS(res->status)) {
		snprintf(res->error, sizeof res->error, "fio failed (%s %d)",
			 WIFSIGNALED(res->status) ? "signal" : "status",
			 WIFSIGNALED(res->status) ? WTERMSIG(res->status) : WEXITSTATUS(res->status));
		return -1;
	}
	/* The terse line: "3;fio-3.33;name;group;error;read_kb;read_bw_KiB/s;read_iops;runtime_ms;..." */
	char *line = strstr(buf, "3;fio-");
	if (!line || (line != buf && line[-1] != '\n')) {
		snprintf(res->error, sizeof res->error, "no terse line in fio's output");
		return -1;
	}
	line[strcspn(line, "\n")] = 0;
	char *f[200];
	int nf = 0;
	for (char *s = line, *tok; nf < 200 && (tok = strsep(&s, ";"));)
		f[nf++] = tok;
	if (nf < 40 || atoi(f[4]) != 0) {
		snprintf(res->error, sizeof res->error, "fio reported error %s", nf > 4 ? f[4] : "?");
		return -1;
	}
	double bw = strtod(f[6], NULL) * 1024.0, iops = strtod(f[7], NULL);
	res->secs = strtod(f[8], NULL) / 1000.0;
	res->rate = wl == WL_SEQSCAN ? bw : iops;
	res->ops = (uint64_t)(iops * res->secs);
	res->fio_p50_ns = terse_pct(f, nf, "50.000000%");
	res->fio_p99_ns = terse_pct(f, nf, "99.000000%");
	if (nf > 89) { /* cpu: usr%;sys%;ctx (per job, percent of one CPU) */
		res->utime = strtod(f[87], NULL) / 100.0 * threads_of(wl, threads) * res->secs;
		res->stime = strtod(f[88], NULL) / 100.0 * threads_of(wl, threads) * res->secs;
		res->nvcsw = strtol(f[89], NULL, 10);
	}
	res->ok = res->rate > 0;
	if (!res->ok)
		snprintf(res->error, sizeof res->error, "fio measured nothing");
	return res->ok ? 0 : -1;
}

/* ---- rmw: the whole file, read back ---------------------------------------------------------- */

static uint64_t verify_file(char *first, size_t flen)
{
	const size_t chunk = 4 * MIB;
	uint64_t *buf = malloc(chunk), bad = 0;
	if (!buf)
		fail("malloc");
	first[0] = 0;
	for (uint64_t off = 0; off < fsize; off += chunk) {
		size_t len = fsize - off < chunk ? (size_t)(fsize - off) : chunk;
		size_t got = 0;
		while (got < len) {
			ssize_t r = pread(data_fd, (char *)buf + got, len - got, (off_t)(off + got));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				fail("reading the data file back");
			got += (size_t)r;
		}
		for (uint64_t p = off / PG; p < (off + len) / PG; p++) {
			const uint64_t *w = buf + (p * PG - off) / 8;
			unsigned k = kidx(p);
			for (unsigned i = 0; i < WPP; i++) {
				uint64_t want = pat(p, i) + (i == k ? atomic_load(&counts[p]) : 0);
				if (w[i] != want) {
					if (!bad++)
						snprintf(first, flen,
							 "page %" PRIu64 " word %u: file holds 0x%016" PRIx64
							 ", expected 0x%016" PRIx64 " (%u increments)",
							 p, i, w[i], want, i == k ? atomic_load(&counts[p]) : 0);
					break;
				}
			}
		}
	}
	free(buf);
	errno = posix_fadvise(data_fd, 0, 0, POSIX_FADV_DONTNEED);
	return bad;
}

/* ---- options -------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_io [options]\n"
		"  -b, --budget SIZE        memory budget for every system (default 256M)\n"
		"  -x, --ratio R            file size as a multiple of the budget (default 4)\n"
		"  -s, --size SIZE          file size (overrides --ratio)\n"
		"  -S, --slack SIZE         umapd's cgroup limit = budget + SIZE (default 64M)\n"
		"      --only LIST          randread,seqscan,rmw (default all)\n"
		"      --systems LIST       umapd,fio,mmap (default all)\n"
		"  -t, --threads N          randread threads and fio iodepth (default 32)\n"
		"      --seq-threads LIST   seqscan thread counts (default 1,2)\n"
		"      --seq-modes LIST     direct,buffered (default both)\n"
		"      --rmw-threads LIST   rmw thread counts (default 2,32)\n"
		"      --rmw-mode M         direct|buffered umapd store for rmw (default direct)\n"
		"      --randread-mode M    direct|buffered umapd store for randread (default direct)\n"
		"      --seq-ra N           umapd read-ahead window for seqscan, pages (default: UMAPD_READ_AHEAD)\n"
		"      --seq-advice         SEQUENTIAL advice for umapd and mmap in seqscan (default none)\n"
		"      --fio-seq-depth N    fio iodepth of the sequential runs (default 1)\n"
		"  -e, --engine E           io_uring|aio|psync|auto: UMAPD_IO for umapd (default: environment)\n"
		"  -w, --warmup SEC         warm-up (and fio ramp_time) per run (default 2)\n"
		"      --warmup-max SEC     randread/rmw warm up until 80%% of the budget is in use, at most (default 15)\n"
		"  -d, --seconds SEC        measured seconds per run (default 5)\n"
		"  -r, --reps N             repetitions of each measurement, median reported (default 3)\n"
		"      --dir DIR            directory for the data file (default $TMPDIR or /var/tmp; not tmpfs)\n"
		"      --fio PATH           fio binary (default fio)\n"
		"      --drop-caches W      never|buffered|always: echo 3 > drop_caches before runs (default buffered)\n"
		"      --no-umapd-cgroup    run umapd outside a memory cgroup\n"
		"      --strict             exit 3 when a floor is missed\n"
		"      --keep               keep the data file\n"
		"      --self-test          rmw: plant one wrong increment per run; passes only if every run's\n"
		"                           check catches it (shows the check works)\n"
		"  -T, --timeout SEC        whole-run watchdog (default 3600)\n"
		"      --run-timeout SEC    per-run allowance beyond warm-up + measurement (default 180)\n"
		"  -h, --help\n");
}

static bool parse_secs(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || !(v >= 0) || v > 3600)
		return false;
	*out = v;
	return true;
}

static bool parse_list(const char *s, unsigned *out, unsigned *n)
{
	char buf[128], *save, *tok;
	snprintf(buf, sizeof buf, "%s", s);
	*n = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;
		if (*n >= MAXT || parse_size(tok, &v) || v == 0 || v > 256)
			return false;
		out[(*n)++] = (unsigned)v;
	}
	return *n > 0;
}

static bool has_word(const char *list, const char *w)
{
	size_t l = strlen(w);
	for (const char *p = list; (p = strstr(p, w)); p += l)
		if ((p == list || p[-1] == ',') && (p[l] == 0 || p[l] == ','))
			return true;
	return false;
}

static int parse_mode(const char *s)
{
	return !strcmp(s, "direct") ? 1 : !strcmp(s, "buffered") ? 0 : -1;
}

static void parse_args(int argc, char **argv)
{
	enum {
		O_ONLY = 256, O_SYS, O_SEQT, O_SEQM, O_RMWT, O_RMWM, O_RRM, O_SEQRA, O_SEQADV, O_FIOD,
		O_WMAX, O_DIR, O_FIO, O_DROP, O_NOCG, O_STRICT, O_KEEP, O_RTMO, O_SELF,
	};
	static const struct option lo[] = {
		{ "budget", required_argument, NULL, 'b' },
		{ "ratio", required_argument, NULL, 'x' },
		{ "size", required_argument, NULL, 's' },
		{ "slack", required_argument, NULL, 'S' },
		{ "only", required_argument, NULL, O_ONLY },
		{ "systems", required_argument, NULL, O_SYS },
		{ "threads", required_argument, NULL, 't' },
		{ "seq-threads", required_argument, NULL, O_SEQT },
		{ "seq-modes", required_argument, NULL, O_SEQM },
		{ "rmw-threads", required_argument, NULL, O_RMWT },
		{ "rmw-mode", required_argument, NULL, O_RMWM },
		{ "randread-mode", required_argument, NULL, O_RRM },
		{ "seq-ra", required_argument, NULL, O_SEQRA },
		{ "seq-advice", no_argument, NULL, O_SEQADV },
		{ "fio-seq-depth", required_argument, NULL, O_FIOD },
		{ "engine", required_argument, NULL, 'e' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "warmup-max", required_argument, NULL, O_WMAX },
		{ "seconds", required_argument, NULL, 'd' },
		{ "reps", required_argument, NULL, 'r' },
		{ "dir", required_argument, NULL, O_DIR },
		{ "fio", required_argument, NULL, O_FIO },
		{ "drop-caches", required_argument, NULL, O_DROP },
		{ "no-umapd-cgroup", no_argument, NULL, O_NOCG },
		{ "strict", no_argument, NULL, O_STRICT },
		{ "keep", no_argument, NULL, O_KEEP },
		{ "self-test", no_argument, NULL, O_SELF },
		{ "timeout", required_argument, NULL, 'T' },
		{ "run-timeout", required_argument, NULL, O_RTMO },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	uint64_t v;
	double d;
	unsigned one;
	while ((c = getopt_long(argc, argv, "b:x:s:S:t:e:w:d:r:T:h", lo, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (parse_size(optarg, &opt.budget) || opt.budget < 4 * MIB)
				goto bad;
			break;
		case 'x':
			if (!parse_secs(optarg, &opt.ratio) || opt.ratio <= 0)
				goto bad;
			break;
		case 's':
			if (parse_size(optarg, &opt.size) || opt.size < 4 * MIB)
				goto bad;
			break;
		case 'S':
			if (parse_size(optarg, &opt.slack))
				goto bad;
			break;
		case O_ONLY:
			for (int i = 0; i < WL_N; i++)
				opt.wl[i] = has_word(optarg, wl_name[i]);
			if (!opt.wl[0] && !opt.wl[1] && !opt.wl[2])
				goto bad;
			break;
		case O_SYS:
			for (int i = 0; i < SYS_N; i++)
				opt.sys[i] = has_word(optarg, sys_name[i]);
			if (!opt.sys[0] && !opt.sys[1] && !opt.sys[2])
				goto bad;
			break;
		case 't':
			if (!parse_list(optarg, &opt.rr_threads, &one) || one != 1)
				goto bad;
			break;
		case O_SEQT:
			if (!parse_list(optarg, opt.seq_threads, &opt.n_seq))
				goto bad;
			break;
		case O_SEQM:
			opt.seq_mode[1] = has_word(optarg, "direct");
			opt.seq_mode[0] = has_word(optarg, "buffered");
			if (!opt.seq_mode[0] && !opt.seq_mode[1])
				goto bad;
			break;
		case O_RMWT:
			if (!parse_list(optarg, opt.rmw_threads, &opt.n_rmw))
				goto bad;
			break;
		case O_RMWM:
			if ((opt.rmw_direct = parse_mode(optarg)) < 0)
				goto bad;
			break;
		case O_RRM:
			if ((opt.rr_direct = parse_mode(optarg)) < 0)
				goto bad;
			break;
		case O_SEQRA:
			if (parse_size(optarg, &v) || v > 4096)
				goto bad;
			opt.seq_ra = (long)v;
			break;
		case O_SEQADV: opt.seq_advice = true; break;
		case O_FIOD:
			if (parse_size(optarg, &v) || v == 0 || v > 1024)
				goto bad;
			opt.fio_seq_depth = (unsigned)v;
			break;
		case 'e':
			if (strcmp(optarg, "io_uring") && strcmp(optarg, "aio") && strcmp(optarg, "psync") &&
			    strcmp(optarg, "auto"))
				goto bad;
			opt.engine = optarg;
			break;
		case 'w':
			if (!parse_secs(optarg, &opt.warmup))
				goto bad;
			break;
		case O_WMAX:
			if (!parse_secs(optarg, &opt.warmup_max))
				goto bad;
			break;
		case 'd':
			if (!parse_secs(optarg, &d) || d < 0.5)
				goto bad;
			opt.seconds = d;
			break;
		case 'r':
			if (parse_size(optarg, &v) || v == 0 || v > MAXREPS)
				goto bad;
			opt.reps = (unsigned)v;
			break;
		case O_DIR: opt.dir = optarg; break;
		case O_FIO: opt.fio = optarg; break;
		case O_DROP:
			if (!strcmp(optarg, "never"))
				opt.drop = 0;
			else if (!strcmp(optarg, "buffered"))
				opt.drop = 1;
			else if (!strcmp(optarg, "always"))
				opt.drop = 2;
			else
				goto bad;
			break;
		case O_NOCG: opt.umapd_cgroup = false; break;
		case O_STRICT: opt.strict = true; break;
		case O_KEEP: opt.keep = true; break;
		case O_SELF: opt.plant = true; break;
		case 'T':
			if (parse_size(optarg, &v) || v > 86400)
				goto bad;
			opt.timeout = (unsigned)v;
			break;
		case O_RTMO:
			if (parse_size(optarg, &v) || v == 0 || v > 86400)
				goto bad;
			opt.run_timeout = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
		bad:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		goto bad;
}

/* ---- the measurement plan and the report ----------------------------------------------------- */

struct cell {
	enum wl wl;
	enum sys sys;
	unsigned threads;
	bool direct;
	unsigned n;
	struct result r[MAXREPS];
	double v[MAXREPS];
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median_of(const double *v, unsigned n)
{
	double s[MAXREPS];
	if (!n)
		return NAN;
	memcpy(s, v, n * sizeof *v);
	qsort(s, n, sizeof *s, cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double min_of(const double *v, unsigned n)
{
	double m = INFINITY;
	for (unsigned i = 0; i < n; i++)
		m = v[i] < m ? v[i] : m;
	return n ? m : NAN;
}

static double max_of(const double *v, unsigned n)
{
	double m = -INFINITY;
	for (unsigned i = 0; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return n ? m : NAN;
}

static const char *eng_name(uint64_t e)
{
	switch (e) {
	case UMAPD_IOENG_IO_URING: return "io_uring";
	case UMAPD_IOENG_AIO: return "aio";
	case UMAPD_IOENG_PSYNC: return "psync";
	default: return "?";
	}
}

/* Rates for printing: MiB/s for seqscan, pages/s otherwise. */
static double shown(enum wl wl, double v)
{
	return wl == WL_SEQSCAN ? v / MIB : v;
}

static const char *mode_name(bool direct)
{
	return direct ? "direct" : "buffered";
}

/* One line per run, as it finishes. */
static void print_run(const struct cell *c, unsigned rep, const struct result *r)
{
	char a[32], b[32], m[32];
	printf("  [%u/%u] %-5s %2u thr %-8s ", rep + 1, opt.reps, sys_name[c->sys], c->threads,
	       c->sys == SYS_MMAP ? "cache" : mode_name(c->direct));
	if (!r->ok) {
		printf("FAILED: %s\n", r->error);
		return;
	}
	printf("%10.0f %s", shown(c->wl, r->rate), c->wl == WL_SEQSCAN ? "MiB/s  " : "pages/s");
	if (c->sys == SYS_FIO) {
		printf("  clat p50 %s p99 %s usr %.2f sys %.2f cs/s %.0f", fmt_ns(a, sizeof a, r->fio_p50_ns),
		       fmt_ns(b, sizeof b, r->fio_p99_ns), r->utime / r->secs, r->stime / r->secs,
		       (double)r->nvcsw / r->secs);
	} else {
		if (c->wl != WL_SEQSCAN)
			printf("  p50 %s p99 %s warm %.1fs", fmt_ns(a, sizeof a, hist_pct(&r->lat, 50)),
			       fmt_ns(b, sizeof b, hist_pct(&r->lat, 99)), r->warm_secs);
		printf(" usr %.2f sys %.2f cs/s %.0f", r->utime / r->secs, r->stime / r->secs,
		       (double)(r->nvcsw + r->nivcsw) / r->secs);
	}
	if (r->cg_limit)
		printf(" cg peak %s", fmt_mib(m, sizeof m, r->cg_peak));
	if (c->sys != SYS_FIO && r->teardown_secs > 0.05)
		printf(" teardown %.2fs", r->teardown_secs);
	printf("\n");
	if (c->sys == SYS_UMAPD) {
		const struct umapd_stats *s0 = &r->st0, *s = &r->st;
		uint64_t faults = s->faults - s0->faults, fills = s->fills - s0->fills;
		printf("        umapd %s: %.2f faults/op, fills %.0f/s (read-ahead %" PRIu64 ", hits %" PRIu64
		       ", wasted %" PRIu64 "), evictions %" PRIu64 " (%" PRIu64 " dirty), waited for budget %" PRIu64
		       ", fault p50 %s p99 %s, %.2f vol + %.2f invol cs/fault, resident %s\n"
		       "        umapd: %.2f write-protect faults/op, %" PRIu64 " read misses installed dirty (rmw)\n",
		       eng_name(s->io_engine), r->ops ? (double)faults / (double)r->ops : 0.0,
		       (double)fills / r->secs, s->readahead_pages - s0->readahead_pages,
		       s->readahead_hits - s0->readahead_hits, s->readahead_wasted - s0->readahead_wasted,
		       s->evictions - s0->evictions, s->dirty_evictions - s0->dirty_evictions,
		       s->fault_wait_budget - s0->fault_wait_budget, fmt_ns(a, sizeof a, s->latency_p50_ns),
		       fmt_ns(b, sizeof b, s->latency_p99_ns), faults ? (double)r->nvcsw / (double)faults : 0.0,
		       faults ? (double)r->nivcsw / (double)faults : 0.0, fmt_mib(m, sizeof m, s->resident_bytes),
		       r->ops ? (double)(s->wp_faults - s0->wp_faults) / (double)r->ops : 0.0,
		       s->rmw_installs - s0->rmw_installs);
		const struct umapd_stats *e = &r->st_end;
		if (e->io_errors || e->stuck_faults)
			printf("        umapd, whole run with teardown: %" PRIu64 " I/O errors, %" PRIu64
			       " stuck faults (outstanding > UMAPD_FAULT_TIMEOUT)\n", e->io_errors, e->stuck_faults);
	} else if (c->sys == SYS_MMAP) {
		printf("        mmap: %.2f major + %.2f minor faults/op, cgroup failcnt %" PRIu64 "\n",
		       r->ops ? (double)r->majflt / (double)r->ops : 0.0,
		       r->ops ? (double)r->minflt / (double)r->ops : 0.0, r->cg_failcnt);
	}
	if (r->mismatches)
		printf("        DATA MISMATCH: %" PRIu64 " reads saw other data; first: %s\n", r->mismatches, r->note);
}

static struct cell cells[64];
static unsigned ncells;

static struct cell *add_cell(enum wl wl, enum sys sys, unsigned threads, bool direct)
{
	if (!opt.sys[sys] || ncells == sizeof cells / sizeof cells[0])
		return NULL;
	struct cell *c = &cells[ncells++];
	memset(c, 0, sizeof *c);
	c->wl = wl;
	c->sys = sys;
	c->threads = threads;
	c->direct = direct;
	return c;
}

static struct cell *find_cell(enum wl wl, enum sys sys, unsigned threads, int direct)
{
	for (unsigned i = 0; i < ncells; i++)
		if (cells[i].wl == wl && cells[i].sys == sys && cells[i].threads == threads &&
		    (direct < 0 || cells[i].direct == (direct == 1)))
			return &cells[i];
	return NULL;
}

static char used_engine[16] = "";
static int rc_fail, rc_floor;

/* Ratio of the medians of a and b, and the range of the per-rep ratios. */
static bool ratio(const struct cell *a, const struct cell *b, double *med, double *lo, double *hi)
{
	if (!a || !b || !a->n || !b->n || a->n != b->n)
		return false;
	double r[MAXREPS];
	for (unsigned i = 0; i < a->n; i++)
		r[i] = a->v[i] / b->v[i];
	*med = median_of(a->v, a->n) / median_of(b->v, b->n);
	*lo = min_of(r, a->n);
	*hi = max_of(r, a->n);
	return true;
}

static void fmt_rate(char *buf, size_t len, const struct cell *c)
{
	if (!c || !c->n)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.0f", shown(c->wl, median_of(c->v, c->n)));
}

static void report_row(enum wl wl, unsigned threads, int direct)
{
	struct cell *u = find_cell(wl, SYS_UMAPD, threads, direct);
	struct cell *f = wl == WL_RMW ? NULL : find_cell(wl, SYS_FIO, threads, direct);
	struct cell *m = find_cell(wl, SYS_MMAP, threads, -1);
	double floor_fio = wl == WL_RMW ? 0 : 0.8;
	double floor_mmap = wl == WL_SEQSCAN ? 1.0 : wl == WL_RMW ? 1.5 : 0;
	double rf = NAN, rflo = NAN, rfhi = NAN, rm = NAN, rmlo = NAN, rmhi = NAN;
	bool hf = ratio(u, f, &rf, &rflo, &rfhi), hm = ratio(u, m, &rm, &rmlo, &rmhi);
	const char *unit = wl == WL_SEQSCAN ? "MiB/s" : "pages/s";
	char su[32], sf[32], sm[32];
	fmt_rate(su, sizeof su, u);
	fmt_rate(sf, sizeof sf, f);
	fmt_rate(sm, sizeof sm, m);

	printf("  %-8s %2u thr %-8s", wl_name[wl], threads, mode_name(direct == 1));
	const struct cell *all[3] = { u, f, m };
	for (int i = 0; i < 3; i++) {
		const struct cell *c = all[i];
		if (!c || !c->n) {
			printf(" | %-5s %21s", sys_name[i], "-");
			continue;
		}
		printf(" | %-5s %7.0f [%6.0f..%6.0f]", sys_name[i], shown(wl, median_of(c->v, c->n)),
		       shown(wl, min_of(c->v, c->n)), shown(wl, max_of(c->v, c->n)));
	}
	printf("  %s\n", unit);

	bool pass = true, judged = false;
	char floors[64] = "", rfs[32] = "-", rms[32] = "-";
	if (floor_fio > 0) {
		snprintf(floors + strlen(floors), sizeof floors - strlen(floors), "%sfio:%.1f", floors[0] ? "," : "",
			 floor_fio);
		if (hf) {
			judged = true;
			pass &= rf >= floor_fio;
			snprintf(rfs, sizeof rfs, "%.2f", rf);
			printf("      umapd/fio  %.2f (per rep %.2f..%.2f), floor %.1f: %s\n", rf, rflo, rfhi, floor_fio,
			       rf >= floor_fio ? "met" : "MISSED");
		} else {
			pass = false;
		}
	}
	if (hm) {
		snprintf(rms, sizeof rms, "%.2f", rm);
		if (floor_mmap > 0) {
			judged = true;
			pass &= rm >= floor_mmap;
			printf("      umapd/mmap %.2f (per rep %.2f..%.2f), floor %.1f: %s\n", rm, rmlo, rmhi,
			       floor_mmap, rm >= floor_mmap ? "met" : "MISSED");
		} else {
			printf("      umapd/mmap %.2f (per rep %.2f..%.2f), for reference\n", rm, rmlo, rmhi);
		}
	} else if (floor_mmap > 0) {
		pass = false;
	}
	if (floor_mmap > 0)
		snprintf(floors + strlen(floors), sizeof floors - strlen(floors), "%smmap:%.1f",
			 floors[0] ? "," : "", floor_mmap);
	if (!judged)
		pass = false;
	if (!pass)
		rc_floor = 1;
	char us[64] = "-";
	if (u && u->n)
		snprintf(us, sizeof us, "%.0f..%.0f", shown(wl, min_of(u->v, u->n)), shown(wl, max_of(u->v, u->n)));
	printf("RESULT workload=%s threads=%u mode=%s engine=%s unit=%s umapd=%s fio=%s mmap=%s ratio_fio=%s "
	       "ratio_mmap=%s floor=%s pass=%s reps=%u umapd_range=%s\n",
	       wl_name[wl], threads, mode_name(direct == 1), used_engine[0] ? used_engine : "-",
	       wl == WL_SEQSCAN ? "MiB/s" : "pages/s", su, sf, sm, rfs, rms, floors, pass ? "yes" : "no",
	       u ? u->n : 0, us);
}

static void run_cell(struct cell *c, unsigned rep)
{
	struct result *r = &c->r[rep];
	int ret = c->sys == SYS_FIO ? run_fio(c->wl, c->threads, c->direct, r, rep == 0)
				    : run_mapped(c->sys, c->wl, c->threads, c->direct, r);
	if (ret == 0 && c->wl == WL_RMW) {
		char first[160];
		uint64_t bad = verify_file(first, sizeof first);
		if (bad) {
			r->mismatches += bad;
			snprintf(r->note, sizeof r->note, "after the run, %" PRIu64 " pages differ; first: %s", bad,
				 first);
		}
	}
	if (opt.plant && ret == 0 && c->wl == WL_RMW) {
		printf("  self-test: %s the planted error (%s)\n", r->mismatches ? "caught" : "DID NOT CATCH",
		       r->mismatches ? r->note : "no mismatch");
		if (!r->mismatches)
			rc_fail = 1;
		r->mismatches = 0;
	}
	print_run(c, rep, r);
	if (c->sys != SYS_FIO)
		summarise_log();
	if (ret || r->mismatches) {
		rc_fail = 1;
		return;
	}
	if (c->sys == SYS_UMAPD && !used_engine[0])
		snprintf(used_engine, sizeof used_engine, "%s", eng_name(r->st.io_engine));
	c->v[c->n++] = r->rate;
}

static void run_workload(enum wl wl)
{
	unsigned first = ncells;
	char a[32], b[32];
	if (wl == WL_RANDREAD) {
		add_cell(wl, SYS_UMAPD, opt.rr_threads, opt.rr_direct);
		add_cell(wl, SYS_FIO, opt.rr_threads, true);
		add_cell(wl, SYS_MMAP, opt.rr_threads, false);
		printf("\n== randread: %u threads, random 4 KiB pages, umapd %s store, read-ahead off; "
		       "fio io_uring randread 4k iodepth %u direct; mmap MADV_RANDOM\n",
		       opt.rr_threads, opt.rr_direct ? "O_DIRECT" : "buffered", opt.rr_threads);
	} else if (wl == WL_SEQSCAN) {
		for (unsigned i = 0; i < opt.n_seq; i++) {
			for (int d = 1; d >= 0; d--) {
				if (!opt.seq_mode[d])
					continue;
				add_cell(wl, SYS_UMAPD, opt.seq_threads[i], d);
				add_cell(wl, SYS_FIO, opt.seq_threads[i], d);
			}
			add_cell(wl, SYS_MMAP, opt.seq_threads[i], false);
		}
		printf("\n== seqscan: whole file, in slices per thread, looping; umapd read-ahead %s%s; "
		       "fio io_uring read 1M iodepth %u, one job per slice; mmap %s\n",
		       opt.seq_ra ? "window set" : "default", opt.seq_advice ? ", SEQUENTIAL advice" : "",
		       opt.fio_seq_depth, opt.seq_advice ? "MADV_SEQUENTIAL" : "no advice");
		if (opt.seq_ra)
			printf("   (umapd read-ahead window %ld pages)\n", opt.seq_ra);
	} else {
		for (unsigned i = 0; i < opt.n_rmw; i++) {
			add_cell(wl, SYS_UMAPD, opt.rmw_threads[i], opt.rmw_direct);
			add_cell(wl, SYS_MMAP, opt.rmw_threads[i], false);
		}
		printf("\n== rmw: random 4 KiB pages, read a word, add one, store it; umapd %s store, read-ahead "
		       "off; mmap MADV_RANDOM; the file is checked word by word after every run\n",
		       opt.rmw_direct ? "O_DIRECT" : "buffered");
	}
	printf("   budget %s, file %s; cgroup limits: umapd %s, mmap and fio %s\n",
	       fmt_mib(a, sizeof a, opt.budget), fmt_mib(b, sizeof b, fsize),
	       opt.umapd_cgroup ? fmt_mib((char[32]){ 0 }, 32, opt.budget + opt.slack) : "none",
	       fmt_mib((char[32]){ 0 }, 32, opt.budget));
	unsigned last = ncells;
	for (unsigned rep = 0; rep < opt.reps; rep++)
		for (unsigned i = first; i < last; i++)
			run_cell(&cells[i], rep);

	printf("\n  %-8s %-6s %-8s | %-5s %7s [%-14s] ... (median [min..max] of %u)\n", "workload", "thr",
	       "mode", "sys", "median", "spread", opt.reps);
	if (wl == WL_RANDREAD) {
		report_row(wl, opt.rr_threads, opt.rr_direct);
	} else if (wl == WL_SEQSCAN) {
		for (unsigned i = 0; i < opt.n_seq; i++)
			for (int d = 1; d >= 0; d--)
				if (opt.seq_mode[d])
					report_row(wl, opt.seq_threads[i], d);
	} else {
		for (unsigned i = 0; i < opt.n_rmw; i++)
			report_row(wl, opt.rmw_threads[i], opt.rmw_direct);
	}
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	fsize = opt.size ? opt.size : (uint64_t)((double)opt.budget * opt.ratio);
	fsize -= fsize % MIB;
	npages = fsize / PG;
	unsigned maxt = opt.rr_threads;
	for (unsigned i = 0; i < opt.n_rmw; i++)
		maxt = opt.rmw_threads[i] > maxt ? opt.rmw_threads[i] : maxt;
	if (npages < 64 * maxt) {
		fprintf(stderr, "bench_io: file too small for the thread counts\n");
		return 2;
	}
	if (access(CGROOT "/memory.limit_in_bytes", W_OK)) {
		fprintf(stderr, "bench_io: no writable memory cgroup v1 at " CGROOT " (need root)\n");
		return 2;
	}
	if (opt.sys[SYS_FIO] && (opt.wl[WL_RANDREAD] || opt.wl[WL_SEQSCAN])) {
		char cmd[512];
		snprintf(cmd, sizeof cmd, "'%s' --version >/dev/null 2>&1", opt.fio);
		if (system(cmd)) {
			fprintf(stderr, "bench_io: %s not found (apt-get install -y fio; run-io-bench.sh does it)\n",
				opt.fio);
			return 2;
		}
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGALRM, on_signal);
	alarm(opt.timeout);

	if (opt.dir) {
		snprintf(tmpdir, sizeof tmpdir, "%s/bench_io.XXXXXX", opt.dir);
		if (!mkdtemp(tmpdir))
			fail("mkdtemp");
	} else if (make_tmpdir(tmpdir, sizeof tmpdir, "bench_io")) {
		fail("mkdtemp");
	}
	snprintf(data_path, sizeof data_path, "%s/data", tmpdir);
	data_fd = open(data_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (data_fd < 0)
		fail(data_path);
	/* rmw's increments per page, in memory shared with the children (charged here). */
	counts = mmap(NULL, npages * sizeof *counts, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counts == MAP_FAILED)
		fail("mmap counts");
	memset((void *)counts, 0, npages * sizeof *counts);

	uint64_t t0 = now_ns();
	if (write_pattern_file(data_fd, fsize, SALT))
		fail("writing the data file");
	char a[32], b[32];
	printf("bench_io: file %s = %.1fx the budget %s, at %s (written in %.1f s); %.0f s warm-up + %.0f s "
	       "measured per run, %u rep%s, engine %s\n",
	       fmt_mib(a, sizeof a, fsize), (double)fsize / (double)opt.budget, fmt_mib(b, sizeof b, opt.budget),
	       data_path, (double)(now_ns() - t0) * 1e-9, opt.warmup, opt.seconds, opt.reps,
	       opt.reps == 1 ? "" : "s",
	       opt.engine ? opt.engine : getenv("UMAPD_IO") ? getenv("UMAPD_IO") : "default (UMAPD_IO unset)");

	for (int w = 0; w < WL_N; w++)
		if (opt.wl[w])
			run_workload((enum wl)w);

	alarm(0);
	close(data_fd);
	cleanup();
	if (rc_fail) {
		printf("bench_io: FAILED: a run failed or the data were wrong (see above)\n");
		return 1;
	}
	printf("bench_io: all runs completed, data verified; floors %s\n", rc_floor ? "MISSED (see RESULT lines)" : "met");
	return opt.strict && rc_floor ? 3 : 0;
}
