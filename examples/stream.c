/*
 * stream - a STREAM-like bandwidth kernel over arrays paged from a file.
 *
 *   stream [--size 48M] [--budget 8M] [--threads 2] [--page-size 64K]
 *          [--ops 2] [--file PATH] [--mmap]
 *
 * The file holds three arrays of doubles a, b, c (--size bytes in all),
 * mapped with umapd under a budget smaller than one array.  Each of --ops
 * passes runs STREAM's four kernels, every one split across the threads:
 *   copy  c = a          scale  b = 3 c
 *   add   c = a + b      triad  a = b + 3 c
 * The values stay small integers, so the expected content is known exactly;
 * after the last pass the region is unmapped (writing everything back) and
 * the file is compared bit for bit with pread.  Bandwidth counts the bytes
 * the kernels read and write, as STREAM does; with data 6x the budget it is
 * the bandwidth of paging, the sequential workload.
 * Exit status: 0 the file is exact, 1 a wrong value, 2 a setup error.
 */
#define _GNU_SOURCE
#include <umapd.h>

#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#include "example_util.h"

static double *A, *B, *C;
static uint64_t n;
static unsigned nthreads, kernel;
static pthread_barrier_t start, done;

static void *worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t lo = n * id / nthreads, hi = n * (id + 1) / nthreads;

	for (;;) {
		pthread_barrier_wait(&start);
		switch (kernel) {
		case 0: for (uint64_t i = lo; i < hi; i++) C[i] = A[i]; break;
		case 1: for (uint64_t i = lo; i < hi; i++) B[i] = 3.0 * C[i]; break;
		case 2: for (uint64_t i = lo; i < hi; i++) C[i] = A[i] + B[i]; break;
		case 3: for (uint64_t i = lo; i < hi; i++) A[i] = B[i] + 3.0 * C[i]; break;
		default: return NULL;
		}
		pthread_barrier_wait(&done);
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Compare one array in the file with its expected value. */
static int check(int fd, uint64_t which, double want)
{
	double buf[8192];

	for (uint64_t i = 0; i < n; i += 8192) {
		size_t m = n - i < 8192 ? (size_t)(n - i) : 8192;
		off_t off = (off_t)((which * n + i) * sizeof(double));

		if (pread(fd, buf, m * sizeof(double), off) != (ssize_t)(m * sizeof(double)))
			return -1;
		for (size_t j = 0; j < m; j++)
			if (memcmp(&buf[j], &want, sizeof(want)) != 0) {
				fprintf(stderr, "stream: %c[%llu] is %g, expected %g\n", (int)('a' + which),
					(unsigned long long)(i + j), buf[j], want);
				return -1;
			}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct ex_opts o = { .size = 48 << 20, .budget = 8 << 20, .threads = 2,
			     .page_size = 64 << 10, .ops = 2 };
	static const char *const names[] = { "copy", "scale", "add", "triad" };
	static const unsigned arrays[] = { 2, 2, 3, 3 }; /* arrays each kernel touches */
	double best[4] = { 0 }, a = 1, b = 2, c = 0, buf[8192];
	char path[4096];

	if (ex_parse(argc, argv, &o, "stream") != 0)
		return 2;
	n = o.size / 3 / sizeof(double);
	nthreads = o.threads;
	int fd = ex_open_file(&o, path, sizeof(path));
	if (fd < 0)
		return 2;

	ex_phase = "writing the arrays";
	for (uint64_t which = 0; which < 3; which++) {
		double v = which == 0 ? a : which == 1 ? b : c;

		for (size_t j = 0; j < 8192; j++)
			buf[j] = v;
		for (uint64_t i = 0; i < n; i += 8192) {
			size_t m = n - i < 8192 ? (size_t)(n - i) : 8192;

			if (pwrite(fd, buf, m * 8, (off_t)((which * n + i) * 8)) != (ssize_t)(m * 8))
				return ex_die(&o, path, "pwrite");
		}
	}
	if (fsync(fd) != 0)
		return ex_die(&o, path, "fsync");
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);

	ex_phase = "mapping";
	size_t len = 3 * n * sizeof(double);
	double *base;
	if (o.use_mmap) {
		base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (base == MAP_FAILED)
			return ex_die(&o, path, "mmap");
	} else {
		struct umapd_region_opts ro = { .page_size = o.page_size };

		if (umapd_set_bufsize(o.budget) != 0)
			return ex_die(&o, path, "umapd_set_bufsize");
		/* umapd's default adaptive read-ahead finds the sequential streams
		 * by itself; each stream's window is bounded by read_ahead. */
		base = umapd_map(NULL, len, PROT_READ | PROT_WRITE, 0, fd, 0, &ro);
		if (!base)
			return ex_die(&o, path, "umapd_map");
	}
	A = base;
	B = base + n;
	C = base + 2 * n;

	ex_phase = "kernels";
	pthread_t t[1024];
	pthread_barrier_init(&start, NULL, nthreads + 1);
	pthread_barrier_init(&done, NULL, nthreads + 1);
	for (unsigned i = 0; i < nthreads; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) != 0)
			return ex_die(&o, path, "pthread_create");
	double t_all = now();
	for (uint64_t pass = 0; pass < o.ops; pass++) {
		for (unsigned k = 0; k < 4; k++) {
			double t0 = now();

			kernel = k;
			pthread_barrier_wait(&start);
			pthread_barrier_wait(&done);
			double mbs = (double)(arrays[k] * n * 8) / (now() - t0) / 1e6;
			if (mbs > best[k])
				best[k] = mbs;
		}
		/* The same four kernels on scalars give the expected values. */
		c = a;
		b = 3 * c;
		c = a + b;
		a = b + 3 * c;
	}
	kernel = 4; /* workers return */
	pthread_barrier_wait(&start);
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);

	ex_phase = "unmapping";
	if (o.use_mmap ? (msync(base, len, MS_SYNC) || munmap(base, len)) : umapd_unmap(base))
		return ex_die(&o, path, "unmap");
	double secs = now() - t_all;

	ex_phase = "checking";
	int bad = check(fd, 0, a) || check(fd, 1, b) || check(fd, 2, c);
	printf("stream: 3 x %llu doubles (%s), budget %s, page %s, %u threads, %s, %llu passes "
	       "in %.3f s;", (unsigned long long)n, ex_size(len), ex_size(o.budget),
	       ex_size(o.page_size), nthreads, o.use_mmap ? "kernel mmap" : "umapd",
	       (unsigned long long)o.ops, secs);
	for (unsigned k = 0; k < 4; k++)
		printf(" %s %.0f MB/s", names[k], best[k]);
	printf("; check %s\n", bad ? "FAILED" : "ok");
	/* Bytes moved by all passes (10 array sweeps per pass) over the whole time. */
	printf("RESULT seq api=%s threads=%u page=%llu size=%llu budget=%llu seconds=%.3f "
	       "mb_per_sec=%.0f ok=%d\n", o.use_mmap ? "mmap" : "umapd", nthreads,
	       (unsigned long long)o.page_size, (unsigned long long)len,
	       (unsigned long long)o.budget, secs, (double)(10 * n * 8 * o.ops) / secs / 1e6, !bad);
	ex_close_file(&o, fd, path);
	return bad ? 1 : 0;
}
