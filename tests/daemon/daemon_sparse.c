/*
 * daemon.sparse - a client maps 1 TiB of a sparse file through the daemon (64 GiB under TSan)
 * and touches a few scattered pages: the pages read back right (zeros in
 * the holes, data where written), writes reach the file, and the daemon's
 * own memory stays small (its page-state arrays cost only what is used).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dtest.h"
#include "umapd_test.h"

static uint64_t rss_kb(pid_t pid)
{
	char path[64], line[256];
	uint64_t kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %llu kB", (unsigned long long *)&kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

#if defined(__SANITIZE_THREAD__)
/* TSan's shadow leaves room for a 1 TiB mapping only where address-space
 * randomisation happens to (ENOMEM in 2 of 6 runs): 64 GiB, a page every
 * 2.3 GiB, the same 28 pages. */
#define SPARSE_LEN (1ull << 36)
#define SPARSE_STEP (37ull << 26)
#else
#define SPARSE_LEN (1ull << 40)  /* 1 TiB */
#define SPARSE_STEP (37ull << 30) /* a page every 37 GiB */
#endif

int main(void)
{
	const uint64_t len = SPARSE_LEN, step = SPARSE_STEP;
	struct dt_daemon d;
	char path[256];
	uint8_t *p, page[4096];
	uint64_t before, after;
	int fd, n = 0;

	t_init("daemon.sparse", 60);
	dt_daemon_start(&d, "16M", NULL);
	fd = t_tmpfile(path);
	if (ftruncate(fd, (off_t)len) < 0)
		t_skip("cannot make a %llu GiB sparse file here: %s", (unsigned long long)(len >> 30), strerror(errno));
	t_write_file_pat(fd, (off_t)(3 * step), 4096, 5);
	before = rss_kb(d.pid);
	if (umapd_connect(d.sock) != 0)
		t_fail("umapd_connect: %s", t_errname(errno));
	p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	for (uint64_t off = 0; off < len; off += step, n++) {
		t_step("page at %llu GiB", (unsigned long long)(off >> 30));
		if (off == 3 * step)
			t_check_pat("written page", p + off, 4096, off, 5);
		else
			t_check_zero("hole", p + off, 4096, off);
		p[off + 1] = 0x5a;
	}
	after = rss_kb(d.pid);
	t_unmap(p);
	for (uint64_t off = 0; off < len; off += step) {
		t_pread_all(fd, page, sizeof(page), (off_t)off);
		T_CHECK(page[1] == 0x5a, "file offset %llu: %#x after unmap", (unsigned long long)(off + 1), page[1]);
	}
	T_CHECK(after < before + 32 * 1024, "the daemon grew from %llu to %llu KiB for %d pages of a %llu GiB region",
		(unsigned long long)before, (unsigned long long)after, n, (unsigned long long)(len >> 30));
	dt_daemon_cleanup(&d);
	t_pass("%llu GiB sparse region, %d scattered pages read and written through the daemon; its RSS %llu -> %llu KiB",
	       (unsigned long long)(len >> 30), n, (unsigned long long)before, (unsigned long long)after);
}
