/*
 * sparse_1t - a 1 TiB sparse file maps at once under a small budget; pages
 * far apart are written and read back, survive eviction, reach the file, and
 * the file stays sparse and 1 TiB long.
 */
#include "umapd_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define TiB ((uint64_t)1 << 40)
#define GiB ((uint64_t)1 << 30)

int main(void)
{
	t_init("sparse_1t", 60);
	t_umapd_start();
	const size_t ps = t_sys_page();
	const size_t budget = 16u << 20;
	t_set_bufsize(budget);
	int fd = t_tmpfile(NULL);
	if (ftruncate(fd, (off_t)TiB) != 0)
		t_skip("this file system cannot hold a 1 TiB sparse file: %s", strerror(errno));
	const uint64_t spots[] = { 0, ps, 3 * GiB + 5 * ps, 100 * GiB, TiB / 2, TiB / 2 + ps,
				   777 * GiB + 123 * ps, TiB - 2 * ps, TiB - ps };
	const size_t nspots = sizeof(spots) / sizeof(spots[0]);

	t_step("map 1 TiB");
	uint64_t t0 = t_now_ns();
	errno = 0;
	uint8_t *p = umapd_map(NULL, TiB, PROT_READ | PROT_WRITE, 0, fd, 0, NULL);
	uint64_t map_ns = t_now_ns() - t0;
	if (p == NULL && errno == ENOMEM) {
		/* Under TSan most process layouts have no 1 TiB hole the sanitizer
		 * accepts; umapd cannot be blamed when a plain mmap fails too. */
		void *q = mmap(NULL, TiB + (2u << 20), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (q == MAP_FAILED)
			t_skip("no 1 TiB of address space in this process: a plain mmap fails too (%s)",
			       strerror(errno));
		munmap(q, TiB + (2u << 20));
		t_fail("umapd_map of 1 TiB failed with ENOMEM while a plain mmap of 1 TiB + 2 MiB works");
	}
	T_CHECK(p != NULL, "umapd_map of 1 TiB failed: %s", t_errname(errno));
	double limit_ms = 1000 * t_time_scale();
	T_CHECK(map_ns / 1e6 < limit_ms, "mapping 1 TiB took %.1f ms, want < %.0f ms", map_ns / 1e6, limit_ms);

	t_step("write and read back %zu pages far apart", nspots);
	for (size_t i = 0; i < nspots; i++) {
		uint8_t *q = p + spots[i];
		char what[96];
		snprintf(what, sizeof(what), "untouched page at %llu", (unsigned long long)spots[i]);
		t_check_zero(what, q, ps, spots[i]);
		t_fill_pat(q, ps, spots[i], 7);
	}
	for (size_t i = 0; i < nspots; i++) {
		char what[96];
		snprintf(what, sizeof(what), "page at %llu", (unsigned long long)spots[i]);
		t_check_pat(what, p + spots[i], ps, spots[i], 7);
	}
	struct umapd_stats s;
	t_stats(&s);
	T_CHECK(s.resident_bytes <= budget, "resident_bytes %llu over the %zu-byte budget",
		(unsigned long long)s.resident_bytes, budget);

	t_step("evict the pages, read them back");
	for (size_t i = 0; i < nspots; i++)
		T_OK(umapd_evict(p + spots[i], ps));
	for (size_t i = 0; i < nspots; i++) {
		char what[96];
		snprintf(what, sizeof(what), "page at %llu after eviction", (unsigned long long)spots[i]);
		t_check_pat(what, p + spots[i], ps, spots[i], 7);
		T_CHECK(p[spots[i] + ps / 2 + 1] == t_pat(spots[i] + ps / 2 + 1, 7), "byte mismatch");
	}

	t_step("unmap 1 TiB");
	t0 = t_now_ns();
	t_unmap(p);
	uint64_t unmap_ns = t_now_ns() - t0;
	T_CHECK(unmap_ns / 1e6 < 5 * limit_ms, "unmapping 1 TiB took %.1f ms", unmap_ns / 1e6);

	t_step("pread the file");
	T_CHECK(t_file_size(fd) == (off_t)TiB, "file size %lld, want 1 TiB", (long long)t_file_size(fd));
	for (size_t i = 0; i < nspots; i++) {
		char what[96];
		snprintf(what, sizeof(what), "file page at %llu", (unsigned long long)spots[i]);
		t_check_file_pat(what, fd, (off_t)spots[i], ps, 7);
	}
	uint8_t zero[4096];
	t_pread_all(fd, zero, sizeof(zero), (off_t)(TiB / 4));
	t_check_zero("an untouched part of the file", zero, sizeof(zero), TiB / 4);
	struct stat st;
	fstat(fd, &st);
	uint64_t alloc = (uint64_t)st.st_blocks * 512;
	T_CHECK(alloc <= 64u << 20, "the file holds %llu bytes of blocks: umapd wrote far more than the %zu "
		"touched pages", (unsigned long long)alloc, nspots);
	close(fd);
	t_pass("1 TiB sparse file mapped in %.2f ms, %zu far-apart pages written, evicted, read back and "
	       "in the file; %llu KiB allocated", map_ns / 1e6, nspots, (unsigned long long)alloc >> 10);
}
