/*
 * flush - umapd_flush writes dirty pages back and keeps them resident:
 * pread sees the data at once, region stats show resident_bytes > 0 and
 * dirty_bytes == 0, reading the flushed pages faults no more, a new write
 * makes a page dirty again, sub-ranges flush only themselves, and a range
 * spanning two adjacent regions (and gaps outside any) flushes both.
 */
#include "umapd_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 64
#define NDIRTY 32

int main(void)
{
	t_init("flush", 60);
	t_umapd_start();
	const size_t ps = t_sys_page(), len = NPAGES * ps;
	t_set_bufsize(256u << 20);
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, len, 1);

	t_step("map and dirty %d of %d pages", NDIRTY, NPAGES);
	uint8_t *p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	t_fill_pat(p, NDIRTY * ps, 0, 2);
	struct umapd_stats s;

	t_step("umapd_flush the region");
	T_OK(umapd_flush(p, len));
	t_check_file_pat("file after flush (dirtied pages)", fd, 0, NDIRTY * ps, 2);
	t_check_file_pat("file after flush (untouched pages)", fd, NDIRTY * ps, len - NDIRTY * ps, 1);
	T_CHECK(t_file_size(fd) == (off_t)len, "file size changed by flush: %lld", (long long)t_file_size(fd));
	t_region_stats(p, &s);
	T_CHECK(s.resident_bytes >= NDIRTY * ps, "after flush: resident_bytes %llu, want >= %zu (flush keeps pages)",
		(unsigned long long)s.resident_bytes, NDIRTY * ps);
	T_CHECK(s.dirty_bytes == 0, "after flush: dirty_bytes %llu, want 0", (unsigned long long)s.dirty_bytes);
	T_CHECK(s.flushed_pages >= NDIRTY, "after flush: flushed_pages %llu, want >= %d",
		(unsigned long long)s.flushed_pages, NDIRTY);
	T_CHECK(s.bytes_written >= NDIRTY * ps, "after flush: bytes_written %llu, want >= %zu",
		(unsigned long long)s.bytes_written, NDIRTY * ps);
	T_CHECK(s.evictions == 0, "flush evicted %llu pages", (unsigned long long)s.evictions);

	t_step("flushed pages stay resident: reading them does not fault");
	uint64_t faults = s.faults;
	t_check_pat("mapping after flush", p, NDIRTY * ps, 0, 2);
	t_region_stats(p, &s);
	T_CHECK(s.faults == faults, "reading %d flushed pages faulted %llu times", NDIRTY,
		(unsigned long long)(s.faults - faults));

	t_step("a write after flush dirties the page again");
	uint64_t wp = s.wp_faults;
	t_fill_pat(p + 5 * ps, ps, 5 * ps, 3);
	t_region_stats(p, &s);
	T_CHECK(s.dirty_bytes == ps, "after rewriting page 5: dirty_bytes %llu, want %zu",
		(unsigned long long)s.dirty_bytes, ps);
	T_CHECK(s.wp_faults == wp + 1, "rewriting a flushed page: wp_faults moved by %llu, want 1",
		(unsigned long long)(s.wp_faults - wp));
	t_step("flush a sub-range that does not hold the dirty page");
	T_OK(umapd_flush(p, 5 * ps));
	t_region_stats(p, &s);
	T_CHECK(s.dirty_bytes == ps, "flushing pages 0..4 cleaned page 5: dirty_bytes %llu",
		(unsigned long long)s.dirty_bytes);
	t_step("flush one byte inside the dirty page");
	T_OK(umapd_flush(p + 5 * ps + 100, 1));
	t_region_stats(p, &s);
	T_CHECK(s.dirty_bytes == 0, "after flushing page 5: dirty_bytes %llu", (unsigned long long)s.dirty_bytes);
	t_check_file_pat("file page 5 after its flush", fd, 5 * ps, ps, 3);
	t_unmap(p);

	t_step("one flush over two adjacent regions and the gaps around them");
	int fd2 = t_tmpfile(NULL);
	t_write_file_pat(fd2, 0, len, 4);
	/* reserve [gap | region A | region B | gap] and place both with UMAPD_FIXED */
	uint8_t *area = mmap(NULL, 2 * len + 2 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_CHECK(area != MAP_FAILED, "mmap: %s", strerror(errno));
	munmap(area, ps);
	munmap(area + ps + 2 * len, ps);
	struct umapd_region_opts o;
	memset(&o, 0, sizeof(o));
	uint8_t *a = umapd_map(area + ps, len, PROT_READ | PROT_WRITE, UMAPD_FIXED, fd, 0, &o);
	uint8_t *b = umapd_map(area + ps + len, len, PROT_READ | PROT_WRITE, UMAPD_FIXED, fd2, 0, &o);
	T_CHECK(a == area + ps && b == area + ps + len, "UMAPD_FIXED maps at %p and %p returned %p and %p",
		(void *)(area + ps), (void *)(area + ps + len), (void *)a, (void *)b);
	t_fill_pat(a + len - 3 * ps, 3 * ps, len - 3 * ps, 5);
	t_fill_pat(b, 3 * ps, 0, 6);
	T_OK(umapd_flush(area, 2 * len + 2 * ps));
	t_check_file_pat("first region's file after the spanning flush", fd, len - 3 * ps, 3 * ps, 5);
	t_check_file_pat("second region's file after the spanning flush", fd2, 0, 3 * ps, 6);
	struct umapd_stats sa, sb;
	t_region_stats(a, &sa);
	t_region_stats(b, &sb);
	T_CHECK(sa.dirty_bytes == 0 && sb.dirty_bytes == 0 && sa.resident_bytes > 0 && sb.resident_bytes > 0,
		"after the spanning flush: dirty %llu/%llu resident %llu/%llu",
		(unsigned long long)sa.dirty_bytes, (unsigned long long)sb.dirty_bytes,
		(unsigned long long)sa.resident_bytes, (unsigned long long)sb.resident_bytes);
	t_unmap(a);
	t_unmap(b);
	close(fd);
	close(fd2);
	t_pass("flush made %d dirty pages visible to pread, kept them resident (dirty 0), a rewrite "
	       "re-dirtied one page, sub-range and two-region flushes", NDIRTY);
}
