/*
 * umapd-sort - sort a file of 64-bit keys larger than memory, in place,
 * with N threads, through umapd's native API; then check the file.
 *
 *   umapd-sort [--size 16M] [--budget 8M] [--threads 2] [--page-size 64K]
 *              [--file PATH] [--seed N] [--mmap]
 *
 * The program makes a file of random keys (--size bytes, in a fresh
 * temporary file unless --file names one), maps it with umapd_map() under a
 * memory budget, sorts the keys where they lie with sort_parallel() (see
 * sort_core.h), and unmaps, which writes every dirty page back.  It then
 * reads the file with pread and checks that it is in order and holds the
 * same keys.  --mmap does the same with the kernel's mmap(MAP_SHARED), for
 * comparison (the budget is then whatever the kernel allows; run it in a
 * memory cgroup to hold it to one, as tests/perf/compare.sh does).
 *
 * Prints the phases' times and one line "RESULT sort ..." for scripts.
 * Exit status: 0 sorted and checked, 1 the check failed, 2 a setup error.
 */
#define _GNU_SOURCE
#include <umapd.h>

#include <getopt.h>
#include <sys/mman.h>

#include "example_util.h"
#include "sort_core.h"

int main(int argc, char **argv)
{
	struct ex_opts o = { .size = 16 << 20, .budget = 8 << 20, .threads = 2,
			     .page_size = 64 << 10, .seed = 1 };
	struct sort_sum sum;
	char path[4096];
	int fd;

	if (ex_parse(argc, argv, &o, "umapd-sort") != 0)
		return 2;
	uint64_t n = o.size / 8;
	fd = ex_open_file(&o, path, sizeof(path));
	if (fd < 0)
		return 2;
	printf("umapd-sort: %llu keys (%s), budget %s, page %s, %u threads, %s\n",
	       (unsigned long long)n, ex_size(o.size), ex_size(o.budget), ex_size(o.page_size),
	       o.threads, o.use_mmap ? "kernel mmap" : "umapd");
	if (sort_make_file(fd, n, o.seed, &sum) != 0)
		return ex_die(&o, path, "making the key file");

	double t0 = sort_now();
	uint64_t *keys;
	if (o.use_mmap) {
		keys = mmap(NULL, n * 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (keys == MAP_FAILED)
			return ex_die(&o, path, "mmap");
	} else {
		/* The budget is process-wide; the page size is this region's. */
		struct umapd_region_opts ro = { .page_size = o.page_size };

		if (umapd_set_bufsize(o.budget) != 0)
			return ex_die(&o, path, "umapd_set_bufsize");
		keys = umapd_map(NULL, n * 8, PROT_READ | PROT_WRITE, 0, fd, 0, &ro);
		if (!keys)
			return ex_die(&o, path, "umapd_map");
	}
	double t1 = sort_now();
	if (sort_parallel(keys, n, o.threads) != 0)
		return ex_die(&o, path, "sort_parallel");
	double t2 = sort_now();
	/* What the pager did during the sort (before the unmap's write-back). */
	struct umapd_stats st;
	if (!o.use_mmap && umapd_region_stats(keys, &st) == 0)
		printf("umapd-sort: %llu faults (%llu read, %llu write, %llu first writes), %llu pages read"
		       " (%llu ahead, %llu used), %llu evicted (%llu written back)\n",
		       (unsigned long long)st.faults, (unsigned long long)st.read_faults,
		       (unsigned long long)st.write_faults, (unsigned long long)st.wp_faults,
		       (unsigned long long)st.fills, (unsigned long long)st.readahead_pages,
		       (unsigned long long)st.readahead_hits, (unsigned long long)st.evictions,
		       (unsigned long long)st.dirty_evictions);
	/* Unmapping writes the dirty keys back: part of the sort's cost. */
	if (o.use_mmap) {
		if (msync(keys, n * 8, MS_SYNC) != 0 || munmap(keys, n * 8) != 0)
			return ex_die(&o, path, "msync/munmap");
	} else if (umapd_unmap(keys) != 0) {
		return ex_die(&o, path, "umapd_unmap");
	}
	double t3 = sort_now();

	int bad = sort_check_file(fd, n, &sum);
	printf("umapd-sort: map %.3f s, sort %.3f s, unmap %.3f s, total %.3f s; check %s\n",
	       t1 - t0, t2 - t1, t3 - t2, t3 - t0, bad ? "FAILED" : "ok: sorted, same keys");
	printf("RESULT sort api=%s threads=%u page=%llu size=%llu budget=%llu seconds=%.3f ok=%d\n",
	       o.use_mmap ? "mmap" : "umapd", o.threads, (unsigned long long)o.page_size,
	       (unsigned long long)o.size, (unsigned long long)o.budget, t3 - t0, !bad);
	ex_close_file(&o, fd, path);
	return bad ? 1 : 0;
}
