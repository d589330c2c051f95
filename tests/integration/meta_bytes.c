/*
 * meta_bytes - engine bookkeeping per resident page is at most 64 bytes:
 * stats.meta_bytes / (resident_bytes / page_size) after filling many pages,
 * clean (read) and dirty (written), with 4K and 16K pages.
 */
#include "umapd_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define LIMIT 64

static double check(const char *what, size_t page, size_t want_resident)
{
	struct umapd_stats s;
	t_stats(&s);
	T_CHECK(s.resident_bytes >= want_resident * 9 / 10,
		"%s: resident_bytes %llu after touching %zu bytes under a larger budget",
		what, (unsigned long long)s.resident_bytes, want_resident);
	T_CHECK(s.meta_bytes > 0, "%s: meta_bytes is 0 with %llu bytes resident", what,
		(unsigned long long)s.resident_bytes);
	double per = (double)s.meta_bytes / ((double)s.resident_bytes / (double)page);
	T_CHECK(per <= LIMIT, "%s: %.1f bytes of engine memory per resident page (meta_bytes %llu, "
		"resident %llu bytes of %zu-byte pages), want <= %d", what, per,
		(unsigned long long)s.meta_bytes, (unsigned long long)s.resident_bytes, page, LIMIT);
	return per;
}

int main(void)
{
	t_init("meta_bytes", 120);
	t_umapd_start();
	const size_t ps = t_sys_page();
	size_t npages = t_scaled(32768, 4096);
	size_t len = npages * ps;
	t_set_bufsize(2 * len + (16u << 20));
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, len, 1);
	char line[512];

	/* 16K pages first, on a fresh engine (descriptors freed by an unmap
	 * may be kept for reuse and would count against fewer, larger pages). */
	t_step("16K pages");
	volatile uint8_t *p = t_map(len, PROT_READ, 0, fd, 0, 16384, 0);
	unsigned sum = 0;
	for (size_t i = 0; i < len; i += 16384)
		sum += p[i];
	double big = check("clean 16K pages", 16384, len);
	t_unmap((void *)p);

	t_step("fill %zu pages by reading", npages);
	p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	for (size_t i = 0; i < len; i += ps)
		sum += p[i];
	double clean = check("clean 4K pages", ps, len);

	t_step("dirty %zu pages", npages);
	for (size_t i = 0; i < len; i += ps)
		p[i + 1] = (uint8_t)(p[i] + 1);
	double dirty = check("dirty 4K pages", ps, len);
	t_unmap((void *)p);

	snprintf(line, sizeof(line), "%.1f B/page clean, %.1f dirty (4K, %zu pages), %.1f for 16K pages; limit %d "
		 "(checksum %u)", clean, dirty, npages, big, LIMIT, sum & 1);
	close(fd);
	t_pass("%s", line);
}
