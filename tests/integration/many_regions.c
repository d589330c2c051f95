/*
 * many_regions - 10,000 regions live at once, one page of a file each, every
 * one written and read back, then all unmapped; the file holds every page's
 * new contents, byte for byte.
 */
#include "umapd_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define NREGIONS 10000

static size_t done;

static void progress(void)
{
	char buf[96];
	snprintf(buf, sizeof(buf), "  regions handled in this step: %zu\n", __atomic_load_n(&done, __ATOMIC_RELAXED));
	if (write(2, buf, strlen(buf)) < 0) {
	}
}

int main(void)
{
	t_init("many_regions", 150);
	t_watchdog_hook(progress);
	/* umapd may keep a descriptor per region: make room for them. */
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < NREGIONS + 256) {
		if (rl.rlim_max < NREGIONS + 256)
			rl.rlim_max = NREGIONS + 256;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			fprintf(stderr, "note: cannot raise RLIMIT_NOFILE to %llu: %s\n",
				(unsigned long long)rl.rlim_cur, strerror(errno));
	}
	t_umapd_start();
	const size_t ps = t_sys_page();
	t_set_bufsize(256u << 20);
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, NREGIONS * ps, 1);
	uint8_t **r = calloc(NREGIONS, sizeof(*r));
	T_CHECK(r != NULL, "calloc");
	struct umapd_stats s0, s;
	t_stats(&s0);

	t_step("map %d regions, read and write each", NREGIONS);
	done = 0;
	for (size_t i = 0; i < NREGIONS; i++) {
		struct umapd_region_opts o;
		memset(&o, 0, sizeof(o));
		o.read_ahead = i % 3 == 0 ? -1 : 0;
		errno = 0;
		r[i] = umapd_map(NULL, ps, PROT_READ | PROT_WRITE, 0, fd, (off_t)(i * ps), &o);
		if (r[i] == NULL)
			t_fail("umapd_map of region %zu (offset %zu) failed: %s", i, i * ps, t_errname(errno));
		char what[64];
		snprintf(what, sizeof(what), "region %zu first read", i);
		t_check_pat(what, r[i], ps, i * ps, 1);
		t_fill_pat(r[i], ps, i * ps, 2);
		snprintf(what, sizeof(what), "region %zu read-back", i);
		t_check_pat(what, r[i], ps, i * ps, 2);
		__atomic_store_n(&done, i + 1, __ATOMIC_RELAXED);
	}
	t_stats(&s);
	T_CHECK(s.regions == s0.regions + NREGIONS, "umapd_stats: %llu regions, want %llu",
		(unsigned long long)s.regions, (unsigned long long)s0.regions + NREGIONS);

	t_step("close the descriptor, read all %d regions again", NREGIONS);
	int fd2 = dup(fd);
	close(fd); /* umapd keeps its own */
	done = 0;
	for (size_t i = 0; i < NREGIONS; i++) {
		char what[64];
		snprintf(what, sizeof(what), "region %zu with all regions live", i);
		t_check_pat(what, r[i], ps, i * ps, 2);
		__atomic_store_n(&done, i + 1, __ATOMIC_RELAXED);
	}

	t_step("unmap %d regions (odd ones first)", NREGIONS);
	done = 0;
	for (size_t pass = 0; pass < 2; pass++)
		for (size_t i = 1 - pass; i < NREGIONS; i += 2) {
			errno = 0;
			if (umapd_unmap(r[i]) != 0)
				t_fail("umapd_unmap of region %zu failed: %s", i, t_errname(errno));
			__atomic_add_fetch(&done, 1, __ATOMIC_RELAXED);
		}
	t_stats(&s);
	T_CHECK(s.regions == s0.regions, "umapd_stats after unmapping all: %llu regions, want %llu",
		(unsigned long long)s.regions, (unsigned long long)s0.regions);
	T_CHECK(s.resident_bytes == s0.resident_bytes, "resident_bytes %llu after unmapping all, want %llu",
		(unsigned long long)s.resident_bytes, (unsigned long long)s0.resident_bytes);

	t_step("pread the file");
	t_check_file_pat("file after all unmaps", fd2, 0, NREGIONS * ps, 2);
	free(r);
	close(fd2);
	t_pass("%d one-page regions mapped at once, each written and read back, unmapped; file byte-exact",
	       NREGIONS);
}
