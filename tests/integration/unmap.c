/*
 * unmap - after umapd_unmap the range is really gone: touching it raises
 * SIGSEGV (in a forked child), mincore fails with ENOMEM, /proc/self/maps no
 * longer lists it, the region's statistics are gone and the process's
 * resident bytes drop; the same holds for a UMAPD_FIXED region, and the
 * address can be mapped again.
 */
#include "umapd_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NPAGES 16

static volatile uint8_t *touch_addr;
static int touch_write;

static void on_signal(int sig)
{
	_exit(sig == SIGSEGV ? 42 : 43);
}

static int toucher(void *arg)
{
	(void)arg;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	if (touch_write)
		touch_addr[0] = 1;
	else
		(void)touch_addr[0];
	return 0; /* the touch worked: the range is still mapped */
}

static void check_gone(const char *what, uint8_t *p, size_t len)
{
	/* First hold the range with a PROT_NONE mapping of our own: that it
	 * can be placed there proves the range was unmapped, and it keeps
	 * anyone else's allocation (a sanitizer's allocator maps large blocks
	 * anywhere) out of it while the children touch it. */
	t_step("%s: the range is free (MAP_FIXED_NOREPLACE)", what);
	void *hold = mmap(p, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	T_CHECK(hold == p, "%s: the range [%p, +%zu) is still mapped after umapd_unmap (%s)", what, (void *)p, len,
		hold == MAP_FAILED ? t_errname(errno) : "placed elsewhere");
	for (int w = 0; w < 2; w++) {
		for (size_t at = 0; at < len; at += len / 2) {
			t_step("%s: %s at +%zu in a child", what, w ? "write" : "read", at);
			touch_addr = p + at;
			touch_write = w;
			int st = t_fork_run(toucher, NULL, 10, NULL);
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 42)
				t_fail("%s: %s at %p after umapd_unmap: child %s, want SIGSEGV (%s)", what,
				       w ? "write" : "read", (void *)(p + at), t_wait_str(st),
				       WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "the range is still mapped" :
				       WIFEXITED(st) && WEXITSTATUS(st) == 43 ? "SIGBUS" : "unexpected");
		}
	}
	T_OK(munmap(hold, len));
	t_step("%s: mincore", what);
	unsigned char vec[NPAGES + 1];
	errno = 0;
	int rc = mincore(p, len, vec);
	T_CHECK(rc == -1 && errno == ENOMEM, "%s: mincore on the unmapped range = %d %s, want -1 ENOMEM", what,
		rc, t_errname(errno));
	t_step("%s: /proc/self/maps", what);
	FILE *f = fopen("/proc/self/maps", "r");
	T_CHECK(f != NULL, "open /proc/self/maps");
	char line[512];
	uintptr_t s = (uintptr_t)p, e = s + len;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo < e && hi > s)
			t_fail("%s: /proc/self/maps still lists the range [%p, %p): %s", what, (void *)s,
			       (void *)e, line);
	}
	fclose(f);
	struct umapd_stats st;
	T_ERR(umapd_region_stats(p, &st), EINVAL);
	errno = 0;
	T_CHECK(umapd_region_page_size(p) == 0 && errno == EINVAL, "%s: umapd_region_page_size still knows it",
		what);
}

int main(void)
{
	t_init("unmap", 60);
	t_umapd_start();
	const size_t ps = t_sys_page(), len = NPAGES * ps;
	t_set_bufsize(64u << 20);
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, len, 1);
	struct umapd_stats s0, s1, s2;
	t_stats(&s0);

	t_step("map, dirty every page");
	uint8_t *p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	t_fill_pat(p, len, 0, 2);
	t_stats(&s1);
	T_CHECK(s1.resident_bytes >= s0.resident_bytes + len, "resident_bytes %llu after touching %zu bytes",
		(unsigned long long)s1.resident_bytes, len);
	T_CHECK(s1.regions == s0.regions + 1, "regions %llu, want %llu", (unsigned long long)s1.regions,
		(unsigned long long)s0.regions + 1);
	t_unmap(p);
	t_check_file_pat("file after unmap", fd, 0, len, 2);
	t_stats(&s2);
	T_CHECK(s2.resident_bytes == s0.resident_bytes, "resident_bytes %llu after unmap, want %llu (memory returned)",
		(unsigned long long)s2.resident_bytes, (unsigned long long)s0.resident_bytes);
	T_CHECK(s2.dirty_bytes == s0.dirty_bytes, "dirty_bytes %llu after unmap", (unsigned long long)s2.dirty_bytes);
	T_CHECK(s2.regions == s0.regions, "regions %llu after unmap, want %llu", (unsigned long long)s2.regions,
		(unsigned long long)s0.regions);
	check_gone("region", p, len);

	t_step("UMAPD_FIXED region over a reserved range");
	uint8_t *area = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_CHECK(area != MAP_FAILED, "mmap: %s", strerror(errno));
	uint8_t *q = umapd_map(area, len, PROT_READ | PROT_WRITE, UMAPD_FIXED, fd, 0, NULL);
	T_CHECK(q == area, "UMAPD_FIXED map at %p returned %p (%s)", (void *)area, (void *)q, t_errname(errno));
	t_check_pat("UMAPD_FIXED region", q, len, 0, 2);
	t_fill_pat(q, ps, 0, 3);
	t_unmap(q);
	t_check_file_pat("file after the fixed region's unmap", fd, 0, ps, 3);
	check_gone("UMAPD_FIXED region", q, len);

	t_step("map again at the same address");
	q = umapd_map(area, len, PROT_READ, UMAPD_FIXED, fd, 0, NULL);
	T_CHECK(q == area, "second UMAPD_FIXED map at %p returned %p (%s)", (void *)area, (void *)q,
		t_errname(errno));
	t_check_pat("remapped region", q, ps, 0, 3);
	t_check_pat("remapped region", q + ps, len - ps, ps, 2);
	t_unmap(q);
	check_gone("remapped region", q, len);
	close(fd);
	t_pass("after umapd_unmap reads and writes raise SIGSEGV, mincore says ENOMEM, /proc/self/maps "
	       "drops the range, resident bytes return (plain and UMAPD_FIXED regions)");
}
