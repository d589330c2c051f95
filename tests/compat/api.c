/*
 * compat.api - the LLNL UMap interface (umap.h) end to end.
 *
 * In this process: umap/uunmap/umap_flush/umap_prefetch/umap_fetch_and_pin
 * with data checked byte for byte against the file, file offsets honoured,
 * zeros past the end of the file (and the file not grown), uunmap really
 * unmapping, per-region page sizes with umap_variable, UMAP_FIXED, and the
 * errno of every bad argument.  In re-executed children (fresh
 * environment): the UMAP_* variables mapped onto umapd's settings, UMAPD_*
 * winning over UMAP_*, malformed values failing with EINVAL, and a budget
 * of one page (which crashes UMap) serving two threads correctly.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <umap.h>

#include "umapd_test.h"

#define SEED 0x5eed

static int make_file(size_t size, uint32_t seed)
{
	int fd = t_tmpfile(NULL);

	t_write_file_pat(fd, 0, size, seed);
	return fd;
}

/* 1 if [p, p + len) is mapped at all (mincore fails with ENOMEM if not). */
static int is_mapped(void *p, size_t len)
{
	unsigned char vec[64];

	return mincore(p, len < 64 * t_sys_page() ? len : 64 * t_sys_page(), vec) == 0;
}

static void test_readback(void)
{
	size_t ps = umapcfg_get_umap_page_size(), size = 64 * ps;
	int fd = make_file(size, SEED);

	t_step("umap a file read-only at offset 8 pages, read it back");
	char *p = umap(NULL, size - 8 * ps, PROT_READ, UMAP_PRIVATE, fd, (off_t)(8 * ps));
	T_CHECK(p != UMAP_FAILED, "umap: %s", t_errname(errno));
	t_check_pat("read at offset", p, size - 8 * ps, 8 * ps, SEED);
	T_OK(uunmap(p, size - 8 * ps));
	T_CHECK(!is_mapped(p, ps), "uunmap left the range mapped");
	close(fd);
}

static void test_write_flush(void)
{
	size_t ps = umapcfg_get_umap_page_size(), size = 32 * ps;
	int fd = make_file(size, SEED);

	t_step("umap read-write, write half, umap_flush, pread");
	char *p = umap(NULL, size, PROT_READ | PROT_WRITE, UMAP_PRIVATE, fd, 0);
	T_CHECK(p != UMAP_FAILED, "umap rw: %s", t_errname(errno));
	t_fill_pat(p, size / 2, 0, SEED + 1);
	T_OK(umap_flush());
	t_check_file_pat("file after umap_flush", fd, 0, size / 2, SEED + 1);
	t_check_file_pat("untouched half", fd, (off_t)(size / 2), size / 2, SEED);
	t_check_pat("still resident after flush", p, size / 2, 0, SEED + 1);

	t_step("write the other half, uunmap writes it back");
	t_fill_pat(p + size / 2, size / 2, size / 2, SEED + 1);
	T_OK(uunmap(p, 0));
	t_check_file_pat("file after uunmap", fd, 0, size, SEED + 1);
	close(fd);
}

static void test_tail(void)
{
	size_t ps = umapcfg_get_umap_page_size(), size = 3 * ps + 100;
	int fd = make_file(size, SEED);

	t_step("map past the end of the file: zeros there, file not grown");
	char *p = umap(NULL, 4 * ps, PROT_READ | PROT_WRITE, UMAP_PRIVATE, fd, 0);
	T_CHECK(p != UMAP_FAILED, "umap tail: %s", t_errname(errno));
	t_check_pat("data before EOF", p, size, 0, SEED);
	t_check_zero("bytes past EOF", p + size, 4 * ps - size, size);
	p[size + 10] = 1; /* past EOF: kept in memory, never written back */
	p[0] ^= 0xff;
	T_OK(uunmap(p, 4 * ps));
	T_CHECK(t_file_size(fd) == (off_t)size, "file grew to %lld", (long long)t_file_size(fd));
	uint8_t b, want = (uint8_t)(t_pat(0, SEED) ^ 0xffu);
	t_pread_all(fd, &b, 1, 0);
	T_CHECK(b == want, "write before EOF lost: byte 0 is %#x, expected %#x", b, want);
	close(fd);
}

static void test_prefetch(void)
{
	size_t ps = umapcfg_get_umap_page_size(), n = 16, size = n * ps;
	int fd = make_file(size, SEED);
	struct umap_prefetch_item items[16];
	struct umapd_stats st;

	t_step("umap_prefetch of every other page, then umap_fetch_and_pin of all");
	char *p = umap(NULL, size, PROT_READ, UMAP_PRIVATE, fd, 0);
	T_CHECK(p != UMAP_FAILED, "umap: %s", t_errname(errno));
	T_OK(umapd_advise(p, size, UMAPD_ADV_RANDOM));
	for (size_t i = 0; i < n / 2; i++)
		items[i].page_base_addr = p + 2 * i * ps + 7; /* any address inside the page */
	umap_prefetch((int)(n / 2), items);
	umap_fetch_and_pin(p, size);
	t_region_stats(p, &st);
	T_CHECK(st.resident_bytes == size, "fetch_and_pin: %llu of %zu bytes resident",
		(unsigned long long)st.resident_bytes, size);
	T_CHECK(st.fills >= n, "fills %llu < %zu", (unsigned long long)st.fills, n);
	t_check_pat("after fetch", p, size, 0, SEED);
	errno = 0;
	umap_prefetch(-1, items);
	T_CHECK(errno == EINVAL, "umap_prefetch(-1): errno %s", t_errname(errno));
	errno = 0;
	umap_prefetch(1, NULL);
	T_CHECK(errno == EINVAL, "umap_prefetch(1, NULL): errno %s", t_errname(errno));
	T_OK(uunmap(p, size));
	close(fd);
}

static void test_variable_and_fixed(void)
{
	size_t ps = umapcfg_get_umap_page_size(), big = 16 * ps, size = 4 * big;
	int fd = make_file(size, SEED);

	t_step("two regions, two page sizes (UMap has one for all)");
	char *a = umap(NULL, size, PROT_READ, UMAP_PRIVATE, fd, 0);
	char *b = umap_variable(NULL, size, PROT_READ, UMAP_PRIVATE, fd, (off_t)big, big);
	T_CHECK(a != UMAP_FAILED && b != UMAP_FAILED, "umap/umap_variable: %s", t_errname(errno));
	T_CHECK(umapd_region_page_size(a) == ps && umapd_region_page_size(b) == big,
		"page sizes %zu and %zu, expected %zu and %zu", umapd_region_page_size(a),
		umapd_region_page_size(b), ps, big);
	t_check_pat("region a", a, size, 0, SEED);
	t_check_pat("region b (offset honoured)", b, size - big, big, SEED);
	t_check_zero("region b past EOF", b + size - big, big, size);
	T_OK(uunmap(a, size));
	T_OK(uunmap(b, size));

	t_step("UMAP_FIXED at a reserved address");
	char *hole = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_CHECK(hole != MAP_FAILED, "mmap: %s", t_errname(errno));
	char *f = umap(hole, size, PROT_READ, UMAP_PRIVATE | UMAP_FIXED, fd, 0);
	T_CHECK(f == hole, "UMAP_FIXED placed the region at %p, not %p (%s)", (void *)f,
		(void *)hole, t_errname(errno));
	t_check_pat("fixed region", f, size, 0, SEED);
	T_OK(uunmap(f, size));
	close(fd);
}

static void test_errors(void)
{
	size_t ps = umapcfg_get_umap_page_size();
	int fd = make_file(4 * ps, SEED), rdonly;
	char path[300];

	t_step("bad arguments get UMAP_FAILED/-1 and errno, never a crash");
#define T_FAILED(expr, want)                                                              \
	do {                                                                              \
		errno = 0;                                                                \
		void *r_ = (expr);                                                        \
		T_CHECK(r_ == UMAP_FAILED && errno == (want), "%s: got %p errno %s, want %s", \
			#expr, r_, t_errname(errno), t_errname(want));                   \
	} while (0)
	T_FAILED(umap(NULL, ps, PROT_READ, 0, fd, 0), EINVAL);
	T_FAILED(umap(NULL, ps, PROT_READ, MAP_SHARED, fd, 0), EINVAL);
	T_FAILED(umap(NULL, ps, PROT_READ, UMAP_PRIVATE | MAP_ANONYMOUS, fd, 0), EINVAL);
	T_FAILED(umap(NULL, ps, PROT_NONE, UMAP_PRIVATE, fd, 0), EINVAL);
	T_FAILED(umap(NULL, ps, PROT_READ | PROT_EXEC, UMAP_PRIVATE, fd, 0), EINVAL);
	T_FAILED(umap(NULL, 0, PROT_READ, UMAP_PRIVATE, fd, 0), EINVAL);
	T_FAILED(umap(NULL, ps, PROT_READ, UMAP_PRIVATE, fd, 100), EINVAL);
	T_FAILED(umap(NULL, ps, PROT_READ, UMAP_PRIVATE, -1, 0), EBADF);
	T_FAILED(umap((void *)(uintptr_t)123, ps, PROT_READ, UMAP_PRIVATE | UMAP_FIXED, fd, 0), EINVAL);
	T_FAILED(umap_variable(NULL, ps, PROT_READ, UMAP_PRIVATE, fd, 0, 3 * ps), EINVAL);
	int tf = t_tmpfile(path);
	close(tf);
	rdonly = t_reopen(path, O_RDONLY);
	T_FAILED(umap(NULL, ps, PROT_READ | PROT_WRITE, UMAP_PRIVATE, rdonly, 0), EACCES);
	close(rdonly);

	char *p = umap(NULL, 4 * ps, PROT_READ, UMAP_PRIVATE, fd, 0);
	T_CHECK(p != UMAP_FAILED, "umap: %s", t_errname(errno));
	T_ERR(uunmap(p + ps, ps), EINVAL);
	T_ERR(uunmap(p, 5 * ps), EINVAL);
	T_ERR(uunmap(NULL, 0), EINVAL);
	t_check_pat("region intact after bad uunmaps", p, 4 * ps, 0, SEED);
	T_OK(uunmap(p, 4 * ps));
	T_ERR(uunmap(p, 4 * ps), EINVAL);
	close(fd);
}

/* ---- children with a UMAP_* environment ----------------------------------------- */

static void expect_u64(const char *what, uint64_t got, uint64_t want)
{
	T_CHECK(got == want, "%s = %llu, expected %llu", what, (unsigned long long)got,
		(unsigned long long)want);
}

static int child_env(void)
{
	char buf[32];

	t_step("UMAP_* settings read back through umapcfg_get_* and umapd_config_get");
	expect_u64("umap_page_size", umapcfg_get_umap_page_size(), 16384);
	expect_u64("max_pages_in_buffer", umapcfg_get_max_pages_in_buffer(), 8);
	expect_u64("UMAPD_BUFSIZE", umapd_get_bufsize(), 8 * 16384);
	expect_u64("num_fillers", umapcfg_get_num_fillers(), 3);
	expect_u64("num_evictors", umapcfg_get_num_evictors(), 2);
	expect_u64("read_ahead", umapcfg_get_read_ahead(), 4);
	expect_u64("max_fault_events", umapcfg_get_max_fault_events(), 64);
	expect_u64("high water", (uint64_t)umapcfg_get_evict_high_water_threshold(), 80);
	expect_u64("low water", (uint64_t)umapcfg_get_evict_low_water_threshold(), 60);
	expect_u64("system page size", (uint64_t)umapcfg_get_system_page_size(), t_sys_page());
	T_CHECK(umapd_config_get("UMAPD_LOG_LEVEL", buf, sizeof(buf)) > 0 && !strcmp(buf, "error"),
		"UMAP_LOG_LEVEL=ERROR gave UMAPD_LOG_LEVEL=%s", buf);
	int fd = make_file(64 * 16384, SEED);
	char *p = umap(NULL, 64 * 16384, PROT_READ, UMAP_PRIVATE, fd, 0);
	T_CHECK(p != UMAP_FAILED, "umap: %s", t_errname(errno));
	expect_u64("region page size", umapd_region_page_size(p), 16384);
	t_check_pat("8-page budget, 64 pages read", p, 64 * 16384, 0, SEED);
	T_OK(uunmap(p, 64 * 16384));
	return 0;
}

static int child_override(void)
{
	t_step("UMAPD_* set explicitly wins over UMAP_*");
	expect_u64("umap_page_size", umapcfg_get_umap_page_size(), 4096);
	expect_u64("UMAPD_BUFSIZE", umapd_get_bufsize(), 1 << 20);
	expect_u64("max_pages_in_buffer", umapcfg_get_max_pages_in_buffer(), 256);
	expect_u64("num_fillers (UMAP_PAGE_FILLERS=1000 clamped)", umapcfg_get_num_fillers(), 256);
	return 0;
}

static int child_bad(void)
{
	int fd = make_file(4096, SEED);

	t_step("a malformed UMAP_* variable: umap fails with EINVAL");
	errno = 0;
	void *p = umap(NULL, 4096, PROT_READ, UMAP_PRIVATE, fd, 0);
	T_CHECK(p == UMAP_FAILED && errno == EINVAL, "umap: %p errno %s", p, t_errname(errno));
	return 0;
}

struct small_arg {
	char *map;
	size_t npages, ps;
	unsigned id;
};

/* Each thread owns the pages i with i % 2 == id: it writes a pattern of its
 * own into them in a scattered order, then reads every page of the region. */
static void *small_thread(void *arg)
{
	struct small_arg *a = arg;

	for (size_t k = 0; k < a->npages; k++) {
		size_t i = (k * 7919) % a->npages;

		if (i % 2 == a->id)
			t_fill_pat(a->map + i * a->ps, a->ps, i * a->ps, SEED + 2);
	}
	return NULL;
}

static int child_small(void)
{
	size_t ps = umapcfg_get_umap_page_size(), n = 256, size = n * ps;
	int fd = make_file(size, SEED);
	pthread_t t[2];
	struct small_arg a[2];

	t_step("budget of %llu page(s) of %zu bytes, two writers over %zu pages",
	       (unsigned long long)umapcfg_get_max_pages_in_buffer(), ps, n);
	char *p = umap(NULL, size, PROT_READ | PROT_WRITE, UMAP_PRIVATE, fd, 0);
	T_CHECK(p != UMAP_FAILED, "umap: %s", t_errname(errno));
	for (unsigned i = 0; i < 2; i++) {
		a[i] = (struct small_arg){ p, n, ps, i };
		T_CHECK(pthread_create(&t[i], NULL, small_thread, &a[i]) == 0, "pthread_create");
	}
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	t_check_pat("read back through a tiny budget", p, size, 0, SEED + 2);
	struct umapd_stats st;
	t_stats(&st);
	T_CHECK(st.resident_bytes <= umapd_get_bufsize() + 2 * ps,
		"resident %llu over a budget of %zu", (unsigned long long)st.resident_bytes,
		umapd_get_bufsize());
	T_OK(uunmap(p, size));
	t_check_file_pat("file after uunmap", fd, 0, size, SEED + 2);
	return 0;
}

static void run_child(const char *mode, const char *const *env)
{
	char *err = NULL;
	int st = t_reexec(mode, env, 60, &err);

	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		if (WIFEXITED(st) && WEXITSTATUS(st) == T_SKIP)
			t_skip("child %s: %s", mode, err ? err : "");
		t_fail("child %s: %s\n%s", mode, t_wait_str(st), err ? err : "");
	}
	free(err);
}

int main(int argc, char **argv)
{
	if (argc > 1) {
		t_init(argv[1], 50);
		/* As a UMap program: a umap*() call first, so that the UMAP_*
		 * thread counts apply before the engine starts. */
		(void)umapcfg_get_umap_page_size();
		t_umapd_start();
		if (!strcmp(argv[1], "env"))
			return child_env();
		if (!strcmp(argv[1], "override"))
			return child_override();
		if (!strcmp(argv[1], "bad"))
			return child_bad();
		if (!strcmp(argv[1], "small"))
			return child_small();
		t_fail("unknown mode %s", argv[1]);
	}
	/* This process runs with umapd's defaults, whatever UMAP_* the caller had. */
	for (char **e = environ; *e;) {
		if (!strncmp(*e, "UMAP_", 5)) {
			char name[64];
			size_t l = strcspn(*e, "=");

			snprintf(name, sizeof(name), "%.*s", (int)(l < 63 ? l : 63), *e);
			unsetenv(name);
		} else {
			e++;
		}
	}
	t_init("compat.api", 100);
	t_umapd_start();
	if (!umap_has_write_support())
		t_skip("no userfaultfd write protection here: umap.h write tests need it");
	test_readback();
	test_write_flush();
	test_tail();
	test_prefetch();
	test_variable_and_fixed();
	test_errors();

	static const char *const env[] = {
		"UMAP_PAGESIZE=16384", "UMAP_BUFSIZE=8", "UMAP_PAGE_FILLERS=3",
		"UMAP_PAGE_EVICTORS=2", "UMAP_EVICT_HIGH_WATER_THRESHOLD=80",
		"UMAP_EVICT_LOW_WATER_THRESHOLD=60", "UMAP_MAX_FAULT_EVENTS=64",
		"UMAP_LOG_LEVEL=ERROR", "UMAP_READ_AHEAD=4", "UMAP_MONITOR_FREQ=5", NULL
	};
	static const char *const over[] = { "UMAP_PAGESIZE=8192", "UMAPD_PAGESIZE=4096",
					     "UMAP_BUFSIZE=8", "UMAPD_BUFSIZE=1M",
					     "UMAP_PAGE_FILLERS=1000", NULL };
	static const char *const bad1[] = { "UMAP_BUFSIZE=12x", NULL };
	static const char *const bad2[] = { "UMAP_EVICT_HIGH_WATER_THRESHOLD=50",
					    "UMAP_EVICT_LOW_WATER_THRESHOLD=60", NULL };
	static const char *const bad3[] = { "UMAP_PAGESIZE=5000", NULL };
	static const char *const small1[] = { "UMAP_BUFSIZE=1", "UMAP_PAGESIZE=4096", NULL };
	static const char *const small2[] = { "UMAP_BUFSIZE=2", "UMAP_PAGESIZE=65536", NULL };

	run_child("env", env);
	run_child("override", over);
	run_child("bad", bad1);
	run_child("bad", bad2);
	run_child("bad", bad3);
	run_child("small", small1);
	run_child("small", small2);
	t_pass("umap/uunmap/flush/prefetch/fetch_and_pin data exact, offsets, zeros past EOF, "
	       "uunmap unmaps, per-region page sizes, UMAP_FIXED, errno of 14 bad calls; "
	       "UMAP_* env mapped, UMAPD_* wins, 3 malformed values -> EINVAL; 1-page budgets OK");
}
