/*
 * watchdog - the pager watchdog reports a fault that cannot be served.
 *
 * The scenario runs in a re-executed child (UMAPD_FAULT_TIMEOUT=300, its
 * stderr captured in a file the child can read back):
 *   - budget 2 pages, a region of 8 pages with read_ahead -1;
 *   - pages 0 and 1 dirtied, then pinned as io_uring fixed buffers
 *     (io_uring_register_buffers), and written again by the CPU;
 *   - a thread writes page 5: the budget is full of pinned dirty pages that
 *     write-back cannot drop, so the fault waits.  Within a few seconds
 *     stuck_faults >= 1, pinned_pages > 0, the thread is still blocked, and
 *     stderr holds one line "fault at <page 5> outstanding for N ms: region
 *     <base>, page 5, deferred ..." with N >= 300;
 *   - io_uring_unregister_buffers: the thread's write completes within a few
 *     seconds (a timed join), and after umapd_unmap the file holds pages 0,
 *     1 and 5 as written and the others as they were.
 * The parent checks the child's exit status and, again, that its stderr
 * holds exactly one such line.
 */
#include "umapd_test.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifdef UMAPD_HAVE_LIBURING
#include <liburing.h>
#endif

#define NPAGES 8
#define SEED_FILE 51
#define SEED_DIRTY 52
#define SEED_AGAIN 53
#define SEED_P5 54
#define TIMEOUT_MS 300

static size_t ps;
static uint8_t *base;
static atomic_int touched; /* 1: the thread is about to write page 5; 2: done */

/* Count the lines of s holding "outstanding for"; *first gets the first. */
static int stuck_lines(const char *s, char *first, size_t len)
{
	int n = 0;
	first[0] = '\0';
	for (const char *l = s; l && *l;) {
		const char *e = strchr(l, '\n');
		size_t ll = e ? (size_t)(e - l) : strlen(l);
		char line[512];
		snprintf(line, sizeof(line), "%.*s", (int)(ll < sizeof(line) - 1 ? ll : sizeof(line) - 1), l);
		if (strstr(line, "outstanding for")) {
			if (n++ == 0)
				snprintf(first, len, "%s", line);
		}
		l = e ? e + 1 : NULL;
	}
	return n;
}

/* Parse the watchdog's line; returns NULL or what is wrong with it. */
static const char *parse_line(const char *line, uintptr_t *addr, unsigned long long *ms, uintptr_t *region,
			      unsigned long long *page)
{
	const char *p = strstr(line, "fault at ");
	if (!p)
		return "no \"fault at \"";
	char rest[256];
	if (sscanf(p, "fault at %" SCNxPTR " outstanding for %llu ms: region %" SCNxPTR ", page %llu, %255[^\n]", addr, ms,
		   region, page, rest) != 5)
		return "not of the form \"fault at 0x... outstanding for N ms: region 0x..., page P, STATE\"";
	if (strncmp(rest, "deferred", 8) != 0)
		return "the state is not \"deferred ...\"";
	return NULL;
}

#ifdef UMAPD_HAVE_LIBURING
static void *toucher(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "touch-page5");
	atomic_store(&touched, 1);
	t_fill_pat(base + 5 * ps, ps, 5 * ps, SEED_P5);
	atomic_store(&touched, 2);
	return NULL;
}

static char *read_own_stderr(void)
{
	static char buf[65536];
	ssize_t n = pread(2, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static int child(void)
{
	t_init("watchdog(child)", 60);
	ps = t_sys_page();
	off_t fsize;
	T_CHECK((fsize = lseek(2, 0, SEEK_END)) >= 0, "the child's stderr is not a file: %s", t_errname(errno));

	struct io_uring ring;
	int rc = io_uring_queue_init(4, &ring, 0);
	if (rc < 0)
		t_skip("io_uring not available: io_uring_queue_init: %s", t_errname(-rc));

	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, NPAGES * ps, SEED_FILE);
	t_umapd_start();
	char v[64];
	T_CHECK(umapd_config_get("UMAPD_FAULT_TIMEOUT", v, sizeof(v)) > 0 && strcmp(v, "300") == 0,
		"UMAPD_FAULT_TIMEOUT reads \"%s\", want \"300\"", v);
	t_set_bufsize(2 * ps);
	base = t_map(NPAGES * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);

	t_step("dirty pages 0 and 1, pin them (io_uring_register_buffers)");
	t_fill_pat(base, 2 * ps, 0, SEED_DIRTY);
	struct iovec iov[2] = { { base, ps }, { base + ps, ps } };
	rc = io_uring_register_buffers(&ring, iov, 2);
	if (rc == -ENOMEM || rc == -EPERM)
		t_skip("io_uring_register_buffers: %s (RLIMIT_MEMLOCK?)", t_errname(-rc));
	T_CHECK(rc == 0, "io_uring_register_buffers(pages 0, 1): %s", t_errname(-rc));
	t_step("write pages 0 and 1 again while pinned");
	t_fill_pat(base + 100, ps, 100, SEED_AGAIN);

	t_step("a thread writes page 5 (budget full of pinned dirty pages)");
	pthread_t th;
	uint64_t t0 = t_now_ns();
	T_CHECK(pthread_create(&th, NULL, toucher, NULL) == 0, "pthread_create");
	uint64_t limit = t0 + (uint64_t)(5e9 * t_time_scale());
	struct umapd_stats st;
	char line[512];
	int nlines = 0;
	for (;;) {
		t_stats(&st);
		nlines = stuck_lines(read_own_stderr(), line, sizeof(line));
		if (st.stuck_faults >= 1 && nlines >= 1)
			break;
		if (t_now_ns() > limit)
			t_fail("%.1f s after page 5 was touched: stuck_faults %llu, %d watchdog lines on stderr, "
			       "pinned_pages %llu, the access %s",
			       (t_now_ns() - t0) / 1e9, (unsigned long long)st.stuck_faults, nlines,
			       (unsigned long long)st.pinned_pages,
			       atomic_load(&touched) == 2 ? "completed (served despite the pins?)" : "still blocked");
		usleep(20000);
	}
	uint64_t seen_ms = (t_now_ns() - t0) / 1000000;
	usleep(700000); /* another watchdog round: the fault must not be logged twice */
	t_stats(&st);
	nlines = stuck_lines(read_own_stderr(), line, sizeof(line));
	T_CHECK(nlines == 1, "%d watchdog lines on stderr for one stuck fault, want 1; first: %s", nlines, line);
	T_CHECK(st.stuck_faults == 1, "stuck_faults %llu for one stuck fault, want 1", (unsigned long long)st.stuck_faults);
	T_CHECK(st.pinned_pages > 0, "pinned_pages %llu with pages 0 and 1 pinned and the budget full, want > 0",
		(unsigned long long)st.pinned_pages);
	T_CHECK(atomic_load(&touched) == 1, "the write to page 5 completed while the budget was full of pinned pages");
	uintptr_t addr, region;
	unsigned long long ms, page;
	const char *bad = parse_line(line, &addr, &ms, &region, &page);
	T_CHECK(bad == NULL, "watchdog line \"%s\": %s", line, bad);
	T_CHECK(addr == (uintptr_t)(base + 5 * ps) && region == (uintptr_t)base && page == 5 && ms >= TIMEOUT_MS,
		"watchdog line \"%s\": want fault at %p, region %p, page 5, >= %d ms", line, (void *)(base + 5 * ps),
		(void *)base, TIMEOUT_MS);

	t_step("io_uring_unregister_buffers: the write to page 5 must complete");
	rc = io_uring_unregister_buffers(&ring);
	T_CHECK(rc == 0, "io_uring_unregister_buffers: %s", t_errname(-rc));
	uint64_t t1 = t_now_ns();
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += (time_t)(5 * t_time_scale());
	rc = pthread_timedjoin_np(th, NULL, &dl);
	if (rc != 0) {
		t_stats(&st);
		t_fail("the write to page 5 did not complete within %.0f s of unregistering the buffers (%s); "
		       "resident %llu of budget %llu, dirty %llu, pinned_pages %llu",
		       5 * t_time_scale(), t_errname(rc), (unsigned long long)st.resident_bytes,
		       (unsigned long long)st.budget_bytes, (unsigned long long)st.dirty_bytes,
		       (unsigned long long)st.pinned_pages);
	}
	uint64_t done_ms = (t_now_ns() - t1) / 1000000;

	t_step("data: mapping, then the file after umapd_unmap");
	uint8_t *exp = malloc(NPAGES * ps), *got = malloc(NPAGES * ps);
	T_CHECK(exp && got, "out of memory");
	t_fill_pat(exp, NPAGES * ps, 0, SEED_FILE);
	t_fill_pat(exp, 2 * ps, 0, SEED_DIRTY);
	t_fill_pat(exp + 100, ps, 100, SEED_AGAIN);
	t_fill_pat(exp + 5 * ps, ps, 5 * ps, SEED_P5);
	t_check_bytes("region", base, exp, NPAGES * ps, 0);
	t_unmap(base);
	t_pread_all(fd, got, NPAGES * ps, 0);
	t_check_bytes("file after umapd_unmap", got, exp, NPAGES * ps, 0);
	io_uring_queue_exit(&ring);
	close(fd);
	free(exp);
	free(got);
	fprintf(stderr, "child-summary: stuck fault reported after %llu ms (stuck_faults %llu, pinned_pages %llu), "
			"served %llu ms after unregistering\n",
		(unsigned long long)seen_ms, (unsigned long long)st.stuck_faults, (unsigned long long)st.pinned_pages,
		(unsigned long long)done_ms);
	return 0;
}
#endif

int main(int argc, char **argv)
{
#ifdef UMAPD_HAVE_LIBURING
	if (argc > 1 && strcmp(argv[1], "child") == 0)
		return child();
#else
	(void)argc;
	(void)argv;
#endif
	t_init("watchdog", 90);
#ifndef UMAPD_HAVE_LIBURING
	t_skip("built without liburing: no io_uring fixed buffers to pin pages with");
#else
	static const char *const env[] = { "UMAPD_FAULT_TIMEOUT=300", NULL };
	char *err = NULL;
	t_step("the scenario in a child with UMAPD_FAULT_TIMEOUT=300");
	int st = t_reexec("child", env, 60, &err);
	if (WIFEXITED(st) && WEXITSTATUS(st) == T_SKIP)
		t_skip("the child skipped (see above)");
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child ended with %s; its stderr:\n%s", t_wait_str(st),
		err ? err : "");
	char line[512];
	int n = stuck_lines(err, line, sizeof(line));
	T_CHECK(n == 1, "the child's stderr has %d watchdog lines, want 1:\n%s", n, err);
	uintptr_t addr, region;
	unsigned long long ms, page;
	const char *bad = parse_line(line, &addr, &ms, &region, &page);
	T_CHECK(bad == NULL && page == 5 && ms >= TIMEOUT_MS, "watchdog line \"%s\": %s", line,
		bad ? bad : "want page 5, >= 300 ms");
	const char *sum = strstr(err, "child-summary: ");
	char s[256] = "";
	if (sum)
		snprintf(s, sizeof(s), "%.*s", (int)strcspn(sum + 15, "\n"), sum + 15);
	free(err);
	t_pass("one line \"%s\"; %s; pages 0, 1, 5 in the file", strstr(line, "fault at"), s);
#endif
}
