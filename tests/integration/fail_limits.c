/*
 * fail_limits - resource limits and degenerate sizes: each is a clear error
 * or a case that works, never a crash or a hang (docs/failure-semantics.md,
 * "Limits").  Each case runs in its own re-executed child, since limits are
 * per process:
 *   nofile    RLIMIT_NOFILE at the descriptors already open: umapd_init
 *             fails with EMFILE or works; with the engine up, umapd_map
 *             fails with EMFILE; raised again, both work and the data checks
 *   memlock   RLIMIT_MEMLOCK 0: the engine starts and pages (nothing umapd
 *             does needs locked memory on this kernel) or fails cleanly
 *   as        RLIMIT_AS 256 MiB above what the process uses: a region
 *             larger than what is left fails with ENOMEM, a small one works;
 *             a limit too small for the engine's threads: umapd_init fails
 *             with ENOMEM or EAGAIN
 *   bigbudget a budget of 1 TiB (far above RAM and no swap) is accepted and
 *             pages as usual
 *   onepage   a budget of one page: a region of 64 pages written and read
 *             through it, four threads at once, byte-exact
 *   bigpage   a region page larger than the region (and a region shorter
 *             than one system page): works, and the file does not grow;
 *             a region page larger than the whole budget: umapd_map fails
 *             with EINVAL or the access completes (see the known-issue test
 *             fail_budget_page: today it waits for memory forever)
 */
#include "umapd_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static size_t ps;

static void set_limit(int res, rlim_t soft)
{
	struct rlimit rl;
	T_CHECK(getrlimit(res, &rl) == 0, "getrlimit");
	rl.rlim_cur = soft;
	if (rl.rlim_max != RLIM_INFINITY && soft > rl.rlim_max)
		rl.rlim_cur = rl.rlim_max;
	T_CHECK(setrlimit(res, &rl) == 0, "setrlimit(%d, %llu): %s", res, (unsigned long long)soft, t_errname(errno));
}

/* Map len bytes of a fresh file (pattern seed), write seed+1 over it, read it, flush, check the file. */
static void page_through(const char *what, size_t len, size_t page_size, uint32_t seed)
{
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, len, seed);
	uint8_t *p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, page_size, 0);
	t_check_pat(what, p, len, 0, seed);
	t_fill_pat(p, len, 0, seed + 1);
	t_check_pat(what, p, len, 0, seed + 1);
	T_OK(umapd_flush(p, len));
	t_check_file_pat(what, fd, 0, len, seed + 1);
	t_unmap(p);
	T_CHECK(t_file_size(fd) == (off_t)len, "%s: the file grew to %lld", what, (long long)t_file_size(fd));
	close(fd);
}

static int highest_fd(void)
{
	int hi = 2;
	for (int i = 3; i < 4096; i++)
		if (fcntl(i, F_GETFD) >= 0)
			hi = i;
	return hi;
}

/* Lower RLIMIT_NOFILE a little above the highest descriptor and take every
 * free one below it, so the next open fails with EMFILE. */
static int *hog, nhog;

static void exhaust_fds(void)
{
	int lim = highest_fd() + 8;
	set_limit(RLIMIT_NOFILE, (rlim_t)lim);
	hog = realloc(hog, (size_t)lim * sizeof(*hog));
	T_CHECK(hog != NULL, "realloc");
	nhog = 0;
	while (nhog < lim) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			T_CHECK(errno == EMFILE, "open at the limit: %s", t_errname(errno));
			return;
		}
		hog[nhog++] = fd;
	}
	t_fail("%d descriptors opened under a limit of %d", nhog, lim);
}

static void release_fds(rlim_t limit)
{
	while (nhog > 0)
		close(hog[--nhog]);
	set_limit(RLIMIT_NOFILE, limit);
}

static void case_nofile(void)
{
	struct rlimit rl0;
	getrlimit(RLIMIT_NOFILE, &rl0);
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, 16 * ps, 1);
	exhaust_fds();
	errno = 0;
	int r = umapd_init(), e = errno;
	release_fds(rl0.rlim_cur);
	if (r != 0) {
		T_CHECK(e == EMFILE || e == ENFILE, "umapd_init with no descriptor left: %s, want EMFILE",
			t_errname(e));
		t_umapd_start();
		printf("nofile: umapd_init fails with %s, works once descriptors are free\n", t_errname(e));
	} else {
		t_fail("umapd_init worked without a free descriptor (it needs a userfaultfd)");
	}
	/* The engine is up: now take every descriptor away from umapd_map. */
	exhaust_fds();
	errno = 0;
	void *q = umapd_map(NULL, 16 * ps, PROT_READ | PROT_WRITE, 0, fd, 0, NULL);
	e = errno;
	release_fds(rl0.rlim_cur);
	T_CHECK(q == NULL && e == EMFILE, "umapd_map without a free descriptor: %p %s, want NULL EMFILE", q,
		t_errname(e));
	uint8_t *p = t_map(16 * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	t_check_pat("a region mapped once descriptors were free", p, 16 * ps, 0, 1);
	t_unmap(p);
	page_through("after RLIMIT_NOFILE", 32 * ps, 0, 2);
	printf("nofile: umapd_map fails with EMFILE at the limit, works after\n");
}

static void case_memlock(void)
{
	set_limit(RLIMIT_MEMLOCK, 0);
	errno = 0;
	if (umapd_init() != 0) {
		int e = errno;
		T_CHECK(e == ENOMEM || e == EPERM || e == EAGAIN, "umapd_init with RLIMIT_MEMLOCK 0: %s", t_errname(e));
		printf("memlock: umapd_init fails with %s\n", t_errname(e));
		return;
	}
	t_set_bufsize(16 * ps);
	page_through("RLIMIT_MEMLOCK 0", 256 * ps, 0, 3);
	struct umapd_stats st;
	t_stats(&st);
	printf("memlock: pages with RLIMIT_MEMLOCK 0 (I/O engine %llu, %llu evictions)\n",
	       (unsigned long long)st.io_engine, (unsigned long long)st.evictions);
}

static size_t vm_size(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t kb = 0;
	T_CHECK(f != NULL, "/proc/self/status");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

/* A sanitizer's runtime maps memory lazily (ASan's fake stacks, TSan's
 * shadow), and fails outright once RLIMIT_AS stops it: the address-space
 * cases are about umapd, so they do not run in sanitizer builds. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static void case_as(void)
{
	if (SANITIZED) {
		printf("as: not run in a sanitizer build\n");
		return;
	}
	t_umapd_start();
	/* A first region brings in what the engine sets up lazily (I/O
	 * contexts, staging), so the limit below is about regions. */
	page_through("before RLIMIT_AS", 256 * ps, 0, 3);
	int fd = t_tmpfile(NULL);
	t_ftruncate(fd, (off_t)4 << 30);
	set_limit(RLIMIT_AS, vm_size() + (256u << 20));
	T_ERR_NULL(umapd_map(NULL, (size_t)4 << 30, PROT_READ | PROT_WRITE, 0, fd, 0, NULL), ENOMEM);
	page_through("under RLIMIT_AS", 256 * ps, 0, 4);
	close(fd);
	printf("as: a 4 GiB region fails with ENOMEM 256 MiB under the limit; a small one pages\n");
}

static void case_as_init(void)
{
	if (SANITIZED) {
		printf("as_init: not run in a sanitizer build\n");
		return;
	}
	set_limit(RLIMIT_AS, vm_size() + (4u << 20));
	errno = 0;
	int r = umapd_init(), e = errno;
	if (r == 0) {
		printf("as_init: the engine starts in 4 MiB of address space\n");
		return;
	}
	T_CHECK(e == ENOMEM || e == EAGAIN, "umapd_init without address space: %s", t_errname(e));
	printf("as_init: umapd_init fails with %s without address space\n", t_errname(e));
}

static void case_bigbudget(void)
{
	t_umapd_start();
	errno = 0;
	if (umapd_set_bufsize((size_t)1 << 40) != 0) {
		T_CHECK(errno == EINVAL, "a 1 TiB budget: %s", t_errname(errno));
		printf("bigbudget: refused with EINVAL\n");
		return;
	}
	T_CHECK(umapd_get_bufsize() == (size_t)1 << 40, "budget reads back as %zu", umapd_get_bufsize());
	page_through("a 1 TiB budget", 4096 * ps, 0, 5);
	printf("bigbudget: 1 TiB accepted, pages as usual\n");
}

#define OP_THREADS 4
#define OP_PAGES 64
static uint8_t *op_p;

static void *op_worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	for (int round = 0; round < 3; round++)
		for (size_t i = id; i < OP_PAGES; i += OP_THREADS) {
			t_check_pat("one-page budget, read", op_p + i * ps, ps, i * ps, 6 + round);
			t_fill_pat(op_p + i * ps, ps, i * ps, 7 + round);
		}
	return NULL;
}

static void case_onepage(void)
{
	t_umapd_start();
	t_set_bufsize(ps);
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, OP_PAGES * ps, 6);
	op_p = t_map(OP_PAGES * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	pthread_t th[OP_THREADS];
	for (unsigned i = 0; i < OP_THREADS; i++)
		T_CHECK(pthread_create(&th[i], NULL, op_worker, (void *)(uintptr_t)i) == 0, "pthread_create");
	for (unsigned i = 0; i < OP_THREADS; i++)
		pthread_join(th[i], NULL);
	struct umapd_stats st;
	t_stats(&st);
	T_CHECK(st.resident_bytes <= 2 * ps, "resident %llu with a budget of one page",
		(unsigned long long)st.resident_bytes);
	t_check_pat("one-page budget, final", op_p, OP_PAGES * ps, 0, 9);
	T_OK(umapd_flush(op_p, OP_PAGES * ps));
	t_check_file_pat("one-page budget, file", fd, 0, OP_PAGES * ps, 9);
	t_unmap(op_p);
	close(fd);
	printf("onepage: %d threads through a one-page budget, %llu evictions, byte-exact\n", OP_THREADS,
	       (unsigned long long)st.evictions);
}

static void case_bigpage(void)
{
	t_umapd_start();
	t_set_bufsize(64u << 20);
	page_through("a 64 KiB region page over a one-page region", ps, 16 * ps, 8);
	page_through("a 64 KiB region page over a region of 1.5 system pages", ps + ps / 2, 16 * ps, 9);
	page_through("a region shorter than a system page", 100, 0, 10);
	printf("bigpage: region pages larger than the region work; the file does not grow\n");
}

static void case_budget_page(void)
{
	t_umapd_start();
	t_set_bufsize(4 * ps);
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, 64 * ps, 11);
	struct umapd_region_opts o;
	memset(&o, 0, sizeof(o));
	o.page_size = 16 * ps;
	errno = 0;
	uint8_t *p = umapd_map(NULL, 64 * ps, PROT_READ | PROT_WRITE, 0, fd, 0, &o);
	if (!p) {
		T_CHECK(errno == EINVAL, "a region page above the budget: %s, want EINVAL", t_errname(errno));
		printf("budget_page: a region page above the budget is refused with EINVAL\n");
		return;
	}
	t_step("touching a 16-page region page with a 4-page budget");
	t_check_pat("a region page above the budget", p, 64 * ps, 0, 11);
	t_unmap(p);
	printf("budget_page: a region page above the budget pages anyway\n");
}

static const struct {
	const char *name;
	void (*fn)(void);
} cases[] = {
	{ "nofile", case_nofile },   { "memlock", case_memlock },     { "as", case_as },
	{ "as_init", case_as_init }, { "bigbudget", case_bigbudget }, { "onepage", case_onepage },
	{ "bigpage", case_bigpage }, { "budget_page", case_budget_page },
};

int main(int argc, char **argv)
{
	ps = t_sys_page();
	if (argc > 1) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
			if (strcmp(argv[1], cases[i].name) == 0) {
				t_init(cases[i].name, 30);
				cases[i].fn();
				fflush(stdout);
				_exit(0);
			}
		fprintf(stderr, "unknown case %s\n", argv[1]);
		return 2;
	}
	t_init("fail_limits", 150);
	const char *only = getenv("FAIL_LIMITS_CASES"); /* the known-issue registration runs a subset */
	const char *env[] = { "UMAPD_LOG_LEVEL=error", NULL };
	int ran = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int wanted = only ? strstr(only, cases[i].name) != NULL : strcmp(cases[i].name, "budget_page") != 0;
		if (!wanted)
			continue;
		t_step("case %s", cases[i].name);
		char *err = NULL;
		int status = t_reexec(cases[i].name, env, 40, &err);
		if (WIFEXITED(status) && WEXITSTATUS(status) == T_SKIP)
			t_skip("%s: %s", cases[i].name, err ? err : "");
		T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "case %s: %s\n%s", cases[i].name,
			t_wait_str(status), err ? err : "");
		free(err);
		ran++;
	}
	t_pass("%d limit cases: each a clear error or a working degenerate case", ran);
}
