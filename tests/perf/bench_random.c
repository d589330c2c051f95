/*
 * bench_random - random 4 KiB page accesses on a file 4x the memory budget:
 * umapd against the kernel's own mmap of the same file, held to the same
 * memory by a memory cgroup (v1), measured in the same invocation.
 *
 * For each access mix (read-only; read-write, 80% reads / 20% writes by
 * default) and each system, in turn:
 *   - the file's pages are dropped from the page cache (posix_fadvise
 *     DONTNEED, or with --drop-caches a global `echo 3 > drop_caches`),
 *   - a child process is created and moved into a fresh memory cgroup
 *     /sys/fs/cgroup/memory/umapd-bench-<pid>-<n> whose limit is
 *     budget + slack (the slack holds the process itself and, for umapd,
 *     the page cache its reads go through),
 *   - the child maps the file (umapd_map with UMAPD_BUFSIZE = budget, or
 *     mmap MAP_SHARED), gives the same advice to both (umapd_advise RANDOM /
 *     madvise MADV_RANDOM, unless --no-advice), runs T threads that each pick
 *     a random page and read all of it (sum of its words, first and last
 *     checked against the pattern) or write all of it (the same pattern, so
 *     the file stays checkable), for a warm-up and then a measured period,
 *   - then writes back and unmaps (umapd_unmap / msync + munmap), timed
 *     separately, and reports to the parent through a pipe;
 *   - the cgroup is removed.
 * The parent prints ops/s, latency percentiles (1 op in 8 timed), misses,
 * the cgroup's peak usage, and the ratio umapd/mmap per mix.
 *
 * Needs root (cgroup and page-cache control) and the memory cgroup v1 at
 * /sys/fs/cgroup/memory; --no-cgroup runs without it (then the kernel's mmap
 * is not held to the budget and the comparison means little).
 */
#define _GNU_SOURCE
#include <umapd.h>

#include "perf_util.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define OPSZ 4096u           /* bytes per operation */
#define SALT 0x6a09e667f3bcc908ull
#define CGROOT "/sys/fs/cgroup/memory"

static struct {
	uint64_t budget;
	uint64_t size;       /* 0: ratio * budget */
	double ratio;
	uint64_t slack;
	unsigned threads;
	double warmup, seconds;
	unsigned write_pct;
	bool run_read, run_rw;
	bool run_umapd, run_mmap;
	bool advice;
	bool cgroup;
	bool drop_caches;
	size_t page_size;    /* umapd region page size, 0: default */
	const char *dir;
	unsigned timeout;
} opt = {
	.budget = 256 * MIB,
	.ratio = 4,
	.slack = 64 * MIB,
	.threads = 2,
	.warmup = 3,
	.seconds = 10,
	.write_pct = 20,
	.run_read = true,
	.run_rw = true,
	.run_umapd = true,
	.run_mmap = true,
	.advice = true,
	.cgroup = true,
	.timeout = 300,
};

enum sys { SYS_UMAPD, SYS_MMAP };
static const char *sys_name[] = { "umapd", "mmap" };

/* What a child reports. */
struct result {
	int ok;
	char error[200];
	uint64_t ops;            /* during the measured period */
	double secs;
	uint64_t warm_ops;
	double teardown_secs;    /* umapd_unmap or msync + munmap */
	uint64_t mismatches;     /* reads that saw data other than the pattern */
	struct hist lat;         /* sampled op latency, measured period */
	struct umapd_stats st;   /* umapd: stats at the end of the measured period */
	struct umapd_stats st0;  /* umapd: at its start */
	long majflt, minflt;     /* getrusage, measured period */
	double utime, stime;     /* measured period */
	long nvcsw, nivcsw;
};

/* ---- the child: one system, one mix --------------------------------------------------- */

static char *map;
static uint64_t npages;
static unsigned cur_write_pct;
static atomic_bool stop;
static atomic_bool measuring;

struct thr {
	pthread_t t;
	unsigned id;
	_Alignas(64) atomic_uint_fast64_t ops;
	uint64_t mismatches;
	uint64_t sink;
	struct hist lat;
	uint64_t wbuf[OPSZ / 8];
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	uint64_t s = mix64(0x1234567 + t->id) | 1;
	uint64_t n = 0;
	char name[16];
	snprintf(name, sizeof name, "bench/%u", t->id);
	pthread_setname_np(pthread_self(), name);

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t r = rnd(&s);
		uint64_t page = r % npages;
		bool write = (r >> 40) % 100 < cur_write_pct;
		bool timed = (n & 7) == 0 && atomic_load_explicit(&measuring, memory_order_relaxed);
		uint64_t t0 = timed ? now_ns() : 0;
		uint64_t *p = (uint64_t *)(map + page * OPSZ);
		uint64_t base = page * OPSZ;
		if (write) {
			/* Rewrite the page with its own pattern: every byte stored, file stays checkable. */
			for (unsigned i = 0; i < OPSZ / 8; i++)
				t->wbuf[i] = (base + i * 8) ^ SALT;
			memcpy(p, t->wbuf, OPSZ);
		} else {
			uint64_t sum = 0;
			for (unsigned i = 0; i < OPSZ / 8; i++)
				sum += p[i];
			t->sink += sum;
			if (p[0] != (base ^ SALT) || p[OPSZ / 8 - 1] != ((base + OPSZ - 8) ^ SALT))
				t->mismatches++;
		}
		if (timed)
			hist_add(&t->lat, now_ns() - t0);
		n++;
		atomic_store_explicit(&t->ops, n, memory_order_relaxed);
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

static uint64_t total_ops(struct thr *t)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < opt.threads; i++)
		n += atomic_load(&t[i].ops);
	return n;
}

static void child_fail(struct result *r, const char *what)
{
	snprintf(r->error, sizeof r->error, "%s: %s", what, strerror(errno));
	r->ok = 0;
}

static void child_run(enum sys sys, int fd, uint64_t size, bool rw, struct result *r)
{
	memset(r, 0, sizeof *r);
	npages = size / OPSZ;
	cur_write_pct = rw ? opt.write_pct : 0;
	int prot = rw ? PROT_READ | PROT_WRITE : PROT_READ;

	if (sys == SYS_UMAPD) {
		if (umapd_set_bufsize(opt.budget))
			return child_fail(r, "umapd_set_bufsize");
		struct umapd_region_opts ro;
		memset(&ro, 0, sizeof ro);
		ro.page_size = opt.page_size;
		map = umapd_map(NULL, size, prot, 0, fd, 0, &ro);
		if (!map)
			return child_fail(r, "umapd_map");
		if (opt.advice && umapd_advise(map, size, UMAPD_ADV_RANDOM))
			return child_fail(r, "umapd_advise");
	} else {
		map = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED)
			return child_fail(r, "mmap");
		if (opt.advice && madvise(map, size, MADV_RANDOM))
			return child_fail(r, "madvise");
	}

	struct thr *t = aligned_alloc(64, sizeof *t * opt.threads);
	if (!t)
		return child_fail(r, "aligned_alloc");
	memset(t, 0, sizeof *t * opt.threads);
	for (unsigned i = 0; i < opt.threads; i++) {
		t[i].id = i;
		errno = pthread_create(&t[i].t, NULL, thr_main, &t[i]);
		if (errno)
			return child_fail(r, "pthread_create");
	}

	sleep_secs(opt.warmup);

	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	if (sys == SYS_UMAPD)
		umapd_stats(&r->st0);
	uint64_t c0 = total_ops(t), t0 = now_ns();
	atomic_store(&measuring, true);
	sleep_secs(opt.seconds);
	uint64_t c1 = total_ops(t), t1 = now_ns();
	atomic_store(&measuring, false);
	getrusage(RUSAGE_SELF, &ru1);
	if (sys == SYS_UMAPD)
		umapd_stats(&r->st);

	atomic_store(&stop, true);
	for (unsigned i = 0; i < opt.threads; i++) {
		pthread_join(t[i].t, NULL);
		hist_merge(&r->lat, &t[i].lat);
		r->mismatches += t[i].mismatches;
	}
	r->warm_ops = c0;
	r->ops = c1 - c0;
	r->secs = (double)(t1 - t0) * 1e-9;
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
		if (rw && msync(map, size, MS_SYNC))
			return child_fail(r, "msync");
		munmap(map, size);
	}
	r->teardown_secs = (double)(now_ns() - d0) * 1e-9;
	free(t);
	r->ok = 1;
}

/* ---- the parent: cgroups, page cache, children ---------------------------------------- */

static char cg_path[256];
static pid_t child_pid;
static char tmpdir[4096], data_path[4200];

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

/* A field of the cgroup's memory.stat. */
static uint64_t read_stat(const char *dir, const char *key)
{
	char path[512], line[256];
	snprintf(path, sizeof path, "%s/memory.stat", dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	uint64_t v = 0;
	size_t kl = strlen(key);
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, key, kl) && line[kl] == ' ') {
			v = strtoull(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static void cg_remove(void)
{
	if (!cg_path[0])
		return;
	/* The child has exited; its page cache charges move to the parent group. */
	for (int i = 0; i < 50 && rmdir(cg_path) && errno == EBUSY; i++)
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
	if (data_path[0])
		unlink(data_path);
	if (tmpdir[0])
		rmdir(tmpdir);
	data_path[0] = tmpdir[0] = 0;
}

static void on_signal(int sig)
{
	(void)sig;
	static const char msg[] = "bench_random: interrupted or timed out; cleaning up\n";
	if (write(2, msg, sizeof msg - 1) < 0) {
		/* nothing */
	}
	cleanup();
	_exit(2);
}

static void fail(const char *what)
{
	fprintf(stderr, "bench_random: %s: %s\n", what, strerror(errno));
	cleanup();
	exit(2);
}

static void drop_file_cache(int fd)
{
	if (fdatasync(fd))
		fail("fdatasync");
	if (opt.drop_caches) {
		sync();
		if (write_file("/proc/sys/vm/drop_caches", "3"))
			fail("echo 3 > /proc/sys/vm/drop_caches");
	}
	errno = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	if (errno)
		fail("posix_fadvise DONTNEED");
}

/* The cgroup figures read after the child finished. */
struct cg_figures {
	uint64_t limit, max_usage, failcnt, pgmajfault;
};

static int run_one(enum sys sys, bool rw, int fd, uint64_t size, int n, struct result *res,
		   struct cg_figures *cg)
{
	memset(cg, 0, sizeof *cg);
	drop_file_cache(fd);

	if (opt.cgroup) {
		snprintf(cg_path, sizeof cg_path, CGROOT "/umapd-bench-%d-%d", (int)getpid(), n);
		if (mkdir(cg_path, 0755))
			fail(cg_path);
		char v[64], p[512];
		cg->limit = opt.budget + opt.slack;
		snprintf(v, sizeof v, "%" PRIu64, cg->limit);
		snprintf(p, sizeof p, "%s/memory.limit_in_bytes", cg_path);
		if (write_file(p, v))
			fail("memory.limit_in_bytes");
	}

	int go[2], out[2];
	if (pipe2(go, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		fail("pipe");
	child_pid = fork();
	if (child_pid < 0)
		fail("fork");
	if (child_pid == 0) {
		/* The parent's clean-up is not the child's to do. */
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGALRM, SIG_DFL);
		cg_path[0] = tmpdir[0] = data_path[0] = 0;
		/* Wait until the parent has moved this process into the cgroup. */
		char c;
		close(go[1]);
		close(out[0]);
		if (read(go[0], &c, 1) != 1)
			_exit(3);
		struct result *r = calloc(1, sizeof *r);
		if (!r)
			_exit(3);
		child_run(sys, fd, size, rw, r);
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
	if (opt.cgroup) {
		char v[32], p[512];
		snprintf(v, sizeof v, "%d", (int)child_pid);
		snprintf(p, sizeof p, "%s/cgroup.procs", cg_path);
		if (write_file(p, v))
			fail("cgroup.procs");
	}
	if (write(go[1], "g", 1) != 1)
		fail("write to child");
	close(go[1]);

	size_t off = 0;
	while (off < sizeof *res) {
		ssize_t r = read(out[0], (char *)res + off, sizeof *res - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		off += (size_t)r;
	}
	close(out[0]);
	int status;
	waitpid(child_pid, &status, 0);
	child_pid = 0;
	if (opt.cgroup) {
		cg->max_usage = read_u64(cg_path, "memory.max_usage_in_bytes");
		cg->failcnt = read_u64(cg_path, "memory.failcnt");
		cg->pgmajfault = read_stat(cg_path, "total_pgmajfault");
		cg_remove();
	}
	if (off != sizeof *res) {
		snprintf(res->error, sizeof res->error, "child exited without a result (%s %d)",
			 WIFSIGNALED(status) ? "signal" : "status",
			 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		res->ok = 0;
	}
	return res->ok ? 0 : -1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_random [options]\n"
		"  -b, --budget SIZE     memory budget (default 256M)\n"
		"  -x, --ratio R         file size as a multiple of the budget (default 4)\n"
		"  -s, --size SIZE       file size (overrides --ratio)\n"
		"  -S, --slack SIZE      cgroup limit = budget + slack, for both (default 64M)\n"
		"  -t, --threads N       application threads (default 2)\n"
		"  -w, --warmup SEC      unmeasured seconds first (default 3)\n"
		"  -d, --seconds SEC     measured seconds (default 10)\n"
		"  -m, --mix LIST        read,rw (default both)\n"
		"  -W, --write-pct P     writes in the rw mix, percent (default 20)\n"
		"  -y, --systems LIST    umapd,mmap (default both)\n"
		"  -p, --page-size SIZE  umapd region page size (default: UMAPD_PAGESIZE)\n"
		"      --no-advice       no umapd_advise/madvise RANDOM\n"
		"      --no-cgroup       do not use a memory cgroup (mmap is then not held to the budget)\n"
		"      --drop-caches     also `echo 3 > /proc/sys/vm/drop_caches` before each run\n"
		"      --dir DIR         where the data file goes (default $TMPDIR or /var/tmp)\n"
		"  -T, --timeout SEC     whole-run watchdog (default 300)\n"
		"  -h, --help\n");
}

static bool parse_secs(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || v < 0 || v > 3600)
		return false;
	*out = v;
	return true;
}

static void parse_args(int argc, char **argv)
{
	enum { O_NOADV = 256, O_NOCG, O_DROP, O_DIR };
	static const struct option lo[] = {
		{ "budget", required_argument, NULL, 'b' },
		{ "ratio", required_argument, NULL, 'x' },
		{ "size", required_argument, NULL, 's' },
		{ "slack", required_argument, NULL, 'S' },
		{ "threads", required_argument, NULL, 't' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "seconds", required_argument, NULL, 'd' },
		{ "mix", required_argument, NULL, 'm' },
		{ "write-pct", required_argument, NULL, 'W' },
		{ "systems", required_argument, NULL, 'y' },
		{ "page-size", required_argument, NULL, 'p' },
		{ "no-advice", no_argument, NULL, O_NOADV },
		{ "no-cgroup", no_argument, NULL, O_NOCG },
		{ "drop-caches", no_argument, NULL, O_DROP },
		{ "dir", required_argument, NULL, O_DIR },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	uint64_t v;
	double d;
	while ((c = getopt_long(argc, argv, "b:x:s:S:t:w:d:m:W:y:p:T:h", lo, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (parse_size(optarg, &opt.budget) || opt.budget < MIB)
				goto bad;
			break;
		case 'x':
			if (!parse_secs(optarg, &opt.ratio) || opt.ratio <= 0)
				goto bad;
			break;
		case 's':
			if (parse_size(optarg, &opt.size) || opt.size < OPSZ)
				goto bad;
			break;
		case 'S':
			if (parse_size(optarg, &opt.slack))
				goto bad;
			break;
		case 't':
			if (parse_size(optarg, &v) || v == 0 || v > 256)
				goto bad;
			opt.threads = (unsigned)v;
			break;
		case 'w':
			if (!parse_secs(optarg, &opt.warmup))
				goto bad;
			break;
		case 'd':
			if (!parse_secs(optarg, &d) || d <= 0)
				goto bad;
			opt.seconds = d;
			break;
		case 'm':
			opt.run_read = strstr(optarg, "read") != NULL;
			opt.run_rw = strstr(optarg, "rw") != NULL;
			if (!opt.run_read && !opt.run_rw)
				goto bad;
			break;
		case 'W':
			if (parse_size(optarg, &v) || v > 100)
				goto bad;
			opt.write_pct = (unsigned)v;
			break;
		case 'y':
			opt.run_umapd = strstr(optarg, "umapd") != NULL;
			opt.run_mmap = strstr(optarg, "mmap") != NULL;
			if (!opt.run_umapd && !opt.run_mmap)
				goto bad;
			break;
		case 'p':
			if (parse_size(optarg, &v) || v == 0)
				goto bad;
			opt.page_size = (size_t)v;
			break;
		case O_NOADV: opt.advice = false; break;
		case O_NOCG: opt.cgroup = false; break;
		case O_DROP: opt.drop_caches = true; break;
		case O_DIR: opt.dir = optarg; break;
		case 'T':
			if (parse_size(optarg, &v) || v > 86400)
				goto bad;
			opt.timeout = (unsigned)v;
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

static void print_result(const char *mix, enum sys sys, const struct result *r, const struct cg_figures *cg)
{
	char a[32], b[32], c[32], m[32];
	double ops = (double)r->ops / r->secs;
	/* Misses per op: umapd's faults, the kernel's major faults (pages read from disk). */
	double misses = sys == SYS_UMAPD ? (double)(r->st.faults - r->st0.faults)
					 : (double)r->majflt;
	printf("%-10s %-6s %10.0f %9s %9s %9s %8.3f %7.2f %7.2f %10s %8.2f\n", mix, sys_name[sys], ops,
	       fmt_ns(a, sizeof a, hist_pct(&r->lat, 50)), fmt_ns(b, sizeof b, hist_pct(&r->lat, 99)),
	       fmt_ns(c, sizeof c, r->lat.count ? r->lat.sum / r->lat.count : 0),
	       r->ops ? misses / (double)r->ops : 0.0, r->utime / r->secs, r->stime / r->secs,
	       cg->max_usage ? fmt_mib(m, sizeof m, cg->max_usage) : "-", r->teardown_secs);
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	uint64_t size = opt.size ? opt.size : (uint64_t)((double)opt.budget * opt.ratio);
	size -= size % OPSZ;

	if (opt.cgroup && access(CGROOT "/memory.limit_in_bytes", W_OK)) {
		fprintf(stderr, "bench_random: no writable memory cgroup v1 at " CGROOT
				" (need root); --no-cgroup runs without it\n");
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGALRM, on_signal);
	alarm(opt.timeout);

	if (opt.dir) {
		snprintf(tmpdir, sizeof tmpdir, "%s/bench_random.XXXXXX", opt.dir);
		if (!mkdtemp(tmpdir))
			fail("mkdtemp");
	} else if (make_tmpdir(tmpdir, sizeof tmpdir, "bench_random")) {
		fail("mkdtemp");
	}
	snprintf(data_path, sizeof data_path, "%s/data", tmpdir);
	int fd = open(data_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		fail(data_path);
	uint64_t t0 = now_ns();
	if (write_pattern_file(fd, size, SALT))
		fail("writing the data file");
	double wsecs = (double)(now_ns() - t0) * 1e-9;

	char a[32], b[32], c[32];
	printf("bench_random: file %s (%.1fx the budget %s), %u thread%s, %u-byte ops, %.0f s warm-up + "
	       "%.0f s measured, advice %s\n",
	       fmt_mib(a, sizeof a, size), (double)size / (double)opt.budget, fmt_mib(b, sizeof b, opt.budget),
	       opt.threads, opt.threads == 1 ? "" : "s", OPSZ, opt.warmup, opt.seconds,
	       opt.advice ? "RANDOM" : "none");
	if (opt.cgroup)
		printf("  each run in its own memory cgroup v1, limit %s (budget + %s slack); umapd budget %s; "
		       "page cache of the file dropped before each run%s\n",
		       fmt_mib(a, sizeof a, opt.budget + opt.slack), fmt_mib(b, sizeof b, opt.slack),
		       fmt_mib(c, sizeof c, opt.budget), opt.drop_caches ? " (and drop_caches=3)" : "");
	else
		printf("  NO cgroup: the kernel's mmap may use all memory\n");
	printf("  data file written in %.1f s: %s\n\n", wsecs, data_path);
	printf("%-10s %-6s %10s %9s %9s %9s %8s %7s %7s %10s %8s\n", "mix", "system", "ops/s", "p50", "p99",
	       "mean", "miss/op", "usr/s", "sys/s", "cg peak", "unmap s");

	int n = 0, rc = 0;
	for (int m = 0; m < 2; m++) {
		bool rw = m == 1;
		if ((rw && !opt.run_rw) || (!rw && !opt.run_read))
			continue;
		char mix[32];
		if (rw)
			snprintf(mix, sizeof mix, "rw %u/%u", 100 - opt.write_pct, opt.write_pct);
		else
			snprintf(mix, sizeof mix, "read");
		struct result res[2];
		struct cg_figures cg[2];
		bool have[2] = { false, false };
		for (int s = 0; s < 2; s++) {
			enum sys sys = (enum sys)s;
			if ((sys == SYS_UMAPD && !opt.run_umapd) || (sys == SYS_MMAP && !opt.run_mmap))
				continue;
			if (run_one(sys, rw, fd, size, n++, &res[s], &cg[s])) {
				printf("%-10s %-6s FAILED: %s\n", mix, sys_name[s], res[s].error);
				rc = 1;
				continue;
			}
			print_result(mix, sys, &res[s], &cg[s]);
			if (res[s].mismatches) {
				printf("%-10s %-6s DATA MISMATCH: %" PRIu64 " reads saw data other than the file's\n",
				       mix, sys_name[s], res[s].mismatches);
				rc = 1;
			}
			have[s] = true;
		}
		for (int s = 0; s < 2; s++) {
			if (!have[s])
				continue;
			const struct result *r = &res[s];
			if (s == SYS_UMAPD)
				printf("  umapd: %" PRIu64 " faults (%" PRIu64 " wp), %" PRIu64 " fills, %" PRIu64
				       " evictions (%" PRIu64 " dirty), %" PRIu64 " waited for room, fault p50 %s p99 %s, "
				       "resident %s",
				       r->st.faults - r->st0.faults, r->st.wp_faults - r->st0.wp_faults,
				       r->st.fills - r->st0.fills, r->st.evictions - r->st0.evictions,
				       r->st.dirty_evictions - r->st0.dirty_evictions,
				       r->st.fault_wait_budget - r->st0.fault_wait_budget,
				       fmt_ns(a, sizeof a, r->st.latency_p50_ns), fmt_ns(b, sizeof b, r->st.latency_p99_ns),
				       fmt_mib(c, sizeof c, r->st.resident_bytes));
			else
				printf("  mmap: %ld major + %ld minor faults", r->majflt, r->minflt);
			printf("; %ld voluntary / %ld involuntary context switches", r->nvcsw, r->nivcsw);
			if (cg[s].limit)
				printf("; cgroup failcnt %" PRIu64 ", pgmajfault %" PRIu64, cg[s].failcnt,
				       cg[s].pgmajfault);
			printf("\n");
		}
		if (have[0] && have[1])
			printf("  ratio umapd/mmap (%s): %.2f\n\n", mix,
			       ((double)res[0].ops / res[0].secs) / ((double)res[1].ops / res[1].secs));
	}
	alarm(0);
	close(fd);
	cleanup();
	return rc;
}
