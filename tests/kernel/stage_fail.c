/*
 * stage_fail - eviction of dirty pages when no staging area can be had.
 *
 * With UFFDIO_MOVE, write-back moves each dirty page to a staging area
 * first, so that a page pinned by a DMA is seen (the move refuses it).
 * When stage_get() fails (mmap or registering an area failed), write-back
 * used to mark every dirty page `pinned` ("stay dirty and resident"), write
 * it straight from the region, and still zap it with MADV_DONTNEED: the
 * table kept it DIRTY and resident though the page tables no longer held
 * it, so eviction freed nothing, and with the budget full of dirty pages
 * every fault waited for budget for ever.  Without staging, write-back must
 * do what it does on kernels without UFFDIO_MOVE: write-protect, write
 * straight from the region, drop.  It says so once in the log.
 *
 * The child (re-executed, stderr captured) forces stage_get() to fail with
 * eng_test_stage_fail, maps a file 4x the budget and writes every page with
 * a new pattern under its watchdog (a hang fails the test), then checks the
 * counters, umapd_flush, the file byte for byte, the region, umapd_unmap and
 * the file again.  The parent checks the child passed and that the fallback
 * was logged exactly once, not once per batch.
 */
#include "umapd_test.h"

#include "engine/engine.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEED_FILE 61
#define SEED_NEW 62
/* The one warning of the fallback (evict.c, wb_pages). */
#define WARN_TEXT "no staging area for write-back"

static atomic_size_t pages_done;
static size_t npages;

static void progress(void)
{
	char line[128];

	snprintf(line, sizeof(line), "  progress: %zu of %zu pages written\n", atomic_load(&pages_done), npages);
	if (write(2, line, strlen(line)) < 0) {
		/* nothing to do */
	}
}

static int child(void)
{
	size_t ps = t_sys_page(), budget_pages = t_scaled(512, 64), len;
	struct umapd_stats s;
	uint8_t *base;
	int fd;

	t_init("stage_fail_child", 60);
	t_watchdog_hook(progress);
	t_umapd_start();
	if (!(eng.uffd.features & UFFD_FEATURE_MOVE))
		t_skip("no UFFDIO_MOVE on this kernel: write-back never uses a staging area");
	atomic_store(&eng_test_stage_fail, true);
	npages = 4 * budget_pages;
	len = npages * ps;
	t_set_bufsize(budget_pages * ps);
	fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, len, SEED_FILE);
	base = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, ps, -1);

	t_step("write all %zu pages (4x the budget of %zu) with staging unavailable", npages, budget_pages);
	for (size_t i = 0; i < npages; i++) {
		t_fill_pat(base + i * ps, ps, i * ps, SEED_NEW);
		atomic_store(&pages_done, i + 1);
	}
	t_region_stats(base, &s);
	/* Dirty pages leave only by a dirty eviction here (no flush yet), and
	 * at most the budget's worth is resident. */
	T_CHECK(s.resident_bytes <= budget_pages * ps, "resident %llu bytes after writing, budget %zu",
		(unsigned long long)s.resident_bytes, budget_pages * ps);
	T_CHECK(s.dirty_evictions >= npages - budget_pages,
		"%llu dirty evictions writing %zu pages through a budget of %zu (want >= %zu)",
		(unsigned long long)s.dirty_evictions, npages, budget_pages, npages - budget_pages);
	T_CHECK(s.io_errors == 0, "%llu I/O errors", (unsigned long long)s.io_errors);

	t_step("umapd_flush, then the file");
	T_OK(umapd_flush(base, len));
	t_check_file_pat("the file after umapd_flush", fd, 0, len, SEED_NEW);
	t_step("read the region back");
	t_check_pat("the region after umapd_flush", base, len, 0, SEED_NEW);
	t_step("umapd_unmap, then the file");
	t_unmap(base);
	t_check_file_pat("the file after umapd_unmap", fd, 0, len, SEED_NEW);
	close(fd);
	printf("  child: %zu pages through a budget of %zu with staging unavailable: %llu dirty evictions, "
	       "%llu resident bytes at most; file and region byte for byte\n",
	       npages, budget_pages, (unsigned long long)s.dirty_evictions, (unsigned long long)s.resident_bytes);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	const char *env[] = { "UMAPD_LOG_LEVEL=warn", NULL };
	char *err = NULL;
	int status, nwarn = 0;

	if (argc > 1 && strcmp(argv[1], "child") == 0)
		return child();
	t_init("stage_fail", 120);
	t_step("the child: write 4x the budget with stage_get() failing");
	status = t_reexec("child", env, 90, &err);
	if (WIFEXITED(status) && WEXITSTATUS(status) == T_SKIP)
		t_skip("%s", err ? err : "the child skipped");
	T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child: %s\n%s", t_wait_str(status),
		err ? err : "");
	for (const char *p = err; p && (p = strstr(p, WARN_TEXT)) != NULL; p++)
		nwarn++;
	T_CHECK(nwarn == 1, "the fallback without staging was logged %d times, want once:\n%s", nwarn,
		err ? err : "");
	free(err);
	t_pass("with no staging area, dirty pages were written from the region and dropped (faults never waited "
	       "for ever), the file matched byte for byte, and the fallback was logged once");
}
