/*
 * move_misreport - write-back must not believe a UFFDIO_MOVE that says it
 * moved nothing when it moved the page.
 *
 * Linux 6.18 fails UFFDIO_MOVE with EEXIST (move = -EEXIST) after moving
 * the page, when the page was being migrated by compaction: the kernel
 * retries its own finished move and finds the destination taken.  The
 * engine used to take the count at its word: the page it had moved to
 * staging (the only copy of its dirty data) was cleared with the area, and
 * the page it thought still in the region, an empty slot by then, was
 * written from a refill of the store's old bytes.  stress.rmw_threads,
 * with compaction beside it, loses increments that way; here the kernel's
 * answer is forced with a test hook (eng_test_move_hook): every successful
 * move into staging is reported as EEXIST with nothing moved.
 *
 *   - a region of NPAGES pages over a file of pattern SEED_FILE; every page
 *     written with SEED_FIRST, then umapd_flush (pages kept): the file must
 *     hold SEED_FIRST and so must the region;
 *   - every page written again with SEED_SECOND, then umapd_evict: the file
 *     must hold SEED_SECOND, nothing of the region may stay resident, and
 *     reading it back (faults) gives SEED_SECOND;
 *   - the hook must have been called, and lied, at least once per phase.
 */
#include "umapd_test.h"

#include "engine/engine.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 48
#define SEED_FILE 71
#define SEED_FIRST 72
#define SEED_SECOND 73

static atomic_int lies;

/* Report a move that went through as the kernel does on a bad day. */
static int lying_move(int ret, size_t *moved)
{
	if (ret == 0 && *moved > 0) {
		*moved = 0;
		atomic_fetch_add(&lies, 1);
		return -EEXIST;
	}
	return ret;
}

static void check_file(int fd, size_t ps, uint32_t seed, const char *what)
{
	uint8_t *buf = malloc(NPAGES * ps);

	T_CHECK(buf != NULL, "out of memory");
	t_pread_all(fd, buf, NPAGES * ps, 0);
	t_check_pat(what, buf, NPAGES * ps, 0, seed);
	free(buf);
}

int main(void)
{
	size_t ps;
	uint8_t *base;
	unsigned char vec[NPAGES];
	int fd, before;

	t_init("move_misreport", 60);
	ps = t_sys_page();
	t_umapd_start();
	if (!(eng.uffd.features & UFFD_FEATURE_MOVE))
		t_skip("no UFFDIO_MOVE on this kernel: write-back does not move pages");
	fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, NPAGES * ps, SEED_FILE);
	base = t_map(NPAGES * ps, PROT_READ | PROT_WRITE, 0, fd, 0, ps, -1);
	eng_test_move_hook = lying_move;

	t_step("write every page, umapd_flush with every move into staging reported as EEXIST");
	t_fill_pat(base, NPAGES * ps, 0, SEED_FIRST);
	T_OK(umapd_flush(base, NPAGES * ps));
	T_CHECK(atomic_load(&lies) > 0, "the flush moved no page to staging: the hook was never met");
	check_file(fd, ps, SEED_FIRST, "the file after umapd_flush (moves misreported)");
	t_check_pat("the region after umapd_flush", base, NPAGES * ps, 0, SEED_FIRST);

	t_step("write every page again, umapd_evict with the same misreports");
	before = atomic_load(&lies);
	t_fill_pat(base, NPAGES * ps, 0, SEED_SECOND);
	T_OK(umapd_evict(base, NPAGES * ps));
	T_CHECK(atomic_load(&lies) > before, "the eviction moved no page to staging: the hook was never met");
	check_file(fd, ps, SEED_SECOND, "the file after umapd_evict (moves misreported)");
	T_CHECK(mincore(base, NPAGES * ps, vec) == 0, "mincore: %s", t_errname(errno));
	for (int i = 0; i < NPAGES; i++)
		T_CHECK(!(vec[i] & 1), "page %d is still present after umapd_evict", i);
	eng_test_move_hook = NULL;
	t_check_pat("the region read back after umapd_evict", base, NPAGES * ps, 0, SEED_SECOND);

	t_unmap(base);
	check_file(fd, ps, SEED_SECOND, "the file after umapd_unmap");
	close(fd);
	t_pass("%d moves into staging reported as EEXIST with nothing moved: every write reached the file, "
	       "and the region reads it back", atomic_load(&lies));
}
