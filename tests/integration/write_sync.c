/*
 * write_sync - a write followed at once by umapd_flush (or umapd_evict) of
 * the same page: when the call returns, pread of the file shows the write.
 * umapd_flush is msync(MS_SYNC); the page just written may be fresh from a
 * write miss or a first write to a clean page (a WP fault) that umapd served
 * a moment ago.  Repeated many times with read-ahead off and on.
 */
#include "umapd_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 16

static const char *const how[4] = { "write miss then flush", "first write to a clean page then flush",
				    "write miss then evict", "first write to a clean page then evict" };

int main(void)
{
	t_init("write_sync", 60);
	t_umapd_start();
	const size_t ps = t_sys_page();
	t_set_bufsize(64u << 20);
	int fd = t_tmpfile(NULL);
	t_ftruncate(fd, NPAGES * (off_t)ps);
	size_t n = t_scaled(4000, 400);
	for (int ra = 0; ra < 2; ra++) {
		uint8_t *base = t_map(NPAGES * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, ra ? 8 : -1);
		for (size_t r = 0; r < n; r++) {
			size_t k = r % NPAGES;
			int mode = (int)((r / NPAGES) % 4);
			size_t off = k * ps + 8 * (r % 64);
			volatile uint64_t *w = (volatile uint64_t *)(base + off);
			uint64_t v = 0xC0DE000000000000ull | ((uint64_t)ra << 40) | r;
			t_step("read-ahead %s, round %zu: %s, page %zu", ra ? "8" : "off", r, how[mode], k);
			T_OK(umapd_evict(base + k * ps, ps)); /* make it absent */
			if (mode & 1)
				(void)*w; /* clean */
			*w = v;
			errno = 0;
			int rc = mode < 2 ? umapd_flush(base + k * ps, ps) : umapd_evict(base + k * ps, ps);
			if (rc != 0)
				t_fail("%s, round %zu: %s", how[mode], r, t_errname(errno));
			uint64_t f;
			t_pread_all(fd, &f, sizeof(f), (off_t)off);
			if (f != v)
				t_fail("read-ahead %s, round %zu, %s (page %zu): pread at offset %zu right after the "
				       "%s returned 0: expected 0x%llx, got 0x%llx", ra ? "8" : "off", r, how[mode], k,
				       off, mode < 2 ? "flush" : "evict", (unsigned long long)v,
				       (unsigned long long)f);
			if (*w != v)
				t_fail("%s, round %zu: the mapping reads 0x%llx, want 0x%llx", how[mode], r,
				       (unsigned long long)*w, (unsigned long long)v);
		}
		t_unmap(base);
	}
	close(fd);
	t_pass("%zu writes (write misses and first writes) each followed at once by umapd_flush or "
	       "umapd_evict: pread showed every one", 2 * n);
}
