/*
 * umap-sort - umapd-sort written against the LLNL UMap interface (umap.h):
 * the classic UMap demonstration of sorting a file of 64-bit keys larger
 * than memory, in place, with N threads.
 *
 *   umap-sort [--size 16M] [--budget 8M] [--threads 2] [--page-size 64K]
 *             [--file PATH] [--seed N]
 *
 * It uses only UMap's own calls (umap, uunmap, umapcfg_get_*), so the same
 * source builds against LLNL UMap (-lumap) and against umapd (-lumapd);
 * tests/perf/compare.sh does both when UMAP_ROOT names a UMap install.
 * UMap is configured through its environment: --page-size and --budget
 * become UMAP_PAGESIZE and UMAP_BUFSIZE (which counts pages) unless those
 * are set already.  The keys are checked with pread after uunmap().
 * Exit status: 0 sorted and checked, 1 the check failed, 2 a setup error.
 */
#define _GNU_SOURCE
#include <umap.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "example_util.h"
#include "sort_core.h"

int main(int argc, char **argv)
{
	struct ex_opts o = { .size = 16 << 20, .budget = 8 << 20, .threads = 2,
			     .page_size = 64 << 10, .seed = 1 };
	struct sort_sum sum;
	char path[4096], v[32];
	int fd;

	if (ex_parse(argc, argv, &o, "umap-sort") != 0)
		return 2;
	if (o.use_mmap) {
		fprintf(stderr, "umap-sort: --mmap is umapd-sort's; this one always uses umap()\n");
		return 2;
	}
	/* Before the first umap*() call, which is when UMap reads them. */
	snprintf(v, sizeof(v), "%llu", (unsigned long long)o.page_size);
	setenv("UMAP_PAGESIZE", v, 0);
	snprintf(v, sizeof(v), "%llu", (unsigned long long)(o.budget / o.page_size));
	setenv("UMAP_BUFSIZE", v, 0);

	uint64_t psize = umapcfg_get_umap_page_size();
	/* UMap maps whole pages; keep the key count a multiple of a page. */
	uint64_t n = o.size / psize * psize / 8;
	if (n == 0) {
		fprintf(stderr, "umap-sort: --size is less than one page\n");
		return 2;
	}
	fd = ex_open_file(&o, path, sizeof(path));
	if (fd < 0)
		return 2;
	printf("umap-sort: %llu keys, UMap page %llu bytes, %llu pages in buffer, %u threads\n",
	       (unsigned long long)n, (unsigned long long)psize,
	       (unsigned long long)umapcfg_get_max_pages_in_buffer(), o.threads);
	if (sort_make_file(fd, n, o.seed, &sum) != 0)
		return ex_die(&o, path, "making the key file");

	double t0 = sort_now();
	uint64_t *keys = umap(NULL, n * 8, PROT_READ | PROT_WRITE, UMAP_PRIVATE, fd, 0);
	if (keys == UMAP_FAILED)
		return ex_die(&o, path, "umap");
	double t1 = sort_now();
	if (sort_parallel(keys, n, o.threads) != 0)
		return ex_die(&o, path, "sort_parallel");
	double t2 = sort_now();
	/* With umapd, uunmap writes the dirty pages back and unmaps.  (LLNL
	 * UMap writes them back but leaves the range mapped.) */
	if (uunmap(keys, n * 8) != 0)
		return ex_die(&o, path, "uunmap");
	double t3 = sort_now();

	int bad = sort_check_file(fd, n, &sum);
	printf("umap-sort: map %.3f s, sort %.3f s, uunmap %.3f s, total %.3f s; check %s\n",
	       t1 - t0, t2 - t1, t3 - t2, t3 - t0, bad ? "FAILED" : "ok: sorted, same keys");
	printf("RESULT sort api=umap threads=%u page=%llu size=%llu budget=%llu seconds=%.3f ok=%d\n",
	       o.threads, (unsigned long long)psize, (unsigned long long)(n * 8),
	       (unsigned long long)(umapcfg_get_max_pages_in_buffer() * psize), t3 - t0, !bad);
	ex_close_file(&o, fd, path);
	return bad ? 1 : 0;
}
