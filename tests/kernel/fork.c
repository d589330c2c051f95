/*
 * fork - fork semantics of umapd regions.
 *
 *  A. Not inherited: regions are MADV_DONTFORK, so a child that touches a
 *     region address (a clean, a dirty and a missing page, reading and
 *     writing) dies of SIGSEGV; it never reads zeros or stale data
 *     silently.  The parent's data is intact afterwards, in the mapping and
 *     in the file after a flush.
 *  B. system("true"), popen("echo hi", "r") and a bare fork()+_exit() from
 *     an application thread, many times, while other threads fault heavily
 *     in a region (small budget, so the evictor runs too): everything
 *     completes, no hang, and every page holds what was last written, in
 *     the mapping and in the file after umapd_unmap.
 *  C. A child that calls exit() (atexit handlers and library destructors
 *     run, among them umapd's write-back at exit, which must only act in
 *     the process that started the engine) writes nothing to the parent's
 *     file: content and mtime unchanged while the parent's dirty pages are
 *     unflushed.  The parent's later writes still land.
 */
#include "umapd_test.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static size_t ps;

/* ---- A: the child gets SIGSEGV ---- */

struct touch {
	volatile uint8_t *addr;
	int write;
};

static int child_touch(void *arg)
{
	struct touch *t = arg;
	/* default action, whatever a sanitizer installed */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	uint8_t v;
	if (t->write) {
		*t->addr = 0xA5;
		v = *t->addr;
	} else {
		v = *t->addr;
	}
	fprintf(stderr, "child %s %p and survived: read 0x%02x", t->write ? "wrote" : "read", (void *)t->addr, v);
	return 0;
}

static void part_a(void)
{
	const size_t np = 48;
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, np * ps, 3);
	uint8_t *shadow = malloc(np * ps);
	T_CHECK(shadow != NULL, "out of memory");
	t_fill_pat(shadow, np * ps, 0, 3);
	uint8_t *b = t_map(np * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);

	t_step("A: pages 0-15 clean, 16-31 dirty, 32-47 missing");
	for (size_t i = 0; i < 16; i++)
		(void)*(volatile uint8_t *)(b + i * ps + 5);
	for (size_t i = 16; i < 32; i++)
		for (size_t o = 0; o < ps; o += 512) {
			uint8_t v = t_pat(i * ps + o, 4);
			b[i * ps + o] = v;
			shadow[i * ps + o] = v;
		}

	static const struct {
		size_t page;
		int write;
		const char *what;
	} cases[] = {
		{ 3, 0, "read a clean page" },   { 20, 0, "read a dirty page" }, { 40, 0, "read a missing page" },
		{ 5, 1, "write a clean page" },  { 21, 1, "write a dirty page" }, { 41, 1, "write a missing page" },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct touch t = { b + cases[k].page * ps + 123, cases[k].write };
		char *err = NULL;
		t_step("A: child forked to %s (page %zu)", cases[k].what, cases[k].page);
		int st = t_fork_run(child_touch, &t, 20, &err);
		if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSEGV)
			t_fail("A: a child that tried to %s of the parent's region ended with %s, want signal %d "
			       "(SIGSEGV); child said: %s",
			       cases[k].what, t_wait_str(st), SIGSEGV, err && *err ? err : "(nothing)");
		free(err);
	}

	t_step("A: the parent's data after the children");
	t_check_bytes("A: region after the children exited", b, shadow, np * ps, 0);
	T_OK(umapd_flush(b, np * ps));
	t_step("A: the file after umapd_flush");
	uint8_t *f = malloc(np * ps);
	T_CHECK(f != NULL, "out of memory");
	t_pread_all(fd, f, np * ps, 0);
	t_check_bytes("A: file after the children exited and umapd_flush", f, shadow, np * ps, 0);
	t_unmap(b);
	t_pread_all(fd, f, np * ps, 0);
	t_check_bytes("A: file after umapd_unmap", f, shadow, np * ps, 0);
	free(f);
	free(shadow);
	close(fd);
}

/* ---- B: system/popen/fork while other threads fault ---- */

#define NWORKERS 3
static uint8_t *bb;
static size_t bnp;
static uint64_t *bstamp; /* per page: the u64 at offset 0 */
static atomic_int bstop;
static _Atomic uint64_t bops[NWORKERS];
static atomic_int bspawn_i;

static void b_progress(void)
{
	char buf[200];
	snprintf(buf, sizeof(buf), "  spawn iteration %d; worker accesses %llu %llu %llu\n", atomic_load(&bspawn_i),
		 (unsigned long long)atomic_load(&bops[0]), (unsigned long long)atomic_load(&bops[1]),
		 (unsigned long long)atomic_load(&bops[2]));
	if (write(2, buf, strlen(buf)) < 0) {
	}
}

static void *b_worker(void *arg)
{
	int w = (int)(intptr_t)arg;
	size_t lo = bnp * (size_t)w / NWORKERS, hi = bnp * (size_t)(w + 1) / NWORKERS;
	uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(w + 1), n = 0;
	while (!atomic_load_explicit(&bstop, memory_order_relaxed)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t p = lo + (size_t)(x % (hi - lo));
		volatile uint64_t *q = (volatile uint64_t *)(bb + p * ps);
		uint64_t got = *q;
		if (got != bstamp[p])
			t_fail("B: worker %d: page %zu holds %#llx, want %#llx (last written) while the main thread "
			       "runs system/popen/fork",
			       w, p, (unsigned long long)got, (unsigned long long)bstamp[p]);
		uint8_t mid = bb[p * ps + ps / 2];
		if (mid != t_pat(p * ps + ps / 2, 9))
			t_fail("B: worker %d: page %zu byte %zu holds 0x%02x, want the file's 0x%02x", w, p, ps / 2,
			       mid, t_pat(p * ps + ps / 2, 9));
		if (x & 1) {
			uint64_t v = ((uint64_t)(w + 1) << 56) | ++n;
			*q = v;
			bstamp[p] = v;
		}
		atomic_fetch_add_explicit(&bops[w], 1, memory_order_relaxed);
	}
	return NULL;
}

static void part_b(void)
{
	bnp = t_scaled(4096, 512);
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, bnp * ps, 9);
	bstamp = malloc(bnp * sizeof(*bstamp));
	T_CHECK(bstamp != NULL, "out of memory");
	for (size_t p = 0; p < bnp; p++) {
		uint8_t tmp[8];
		t_fill_pat(tmp, 8, p * ps, 9);
		memcpy(&bstamp[p], tmp, 8);
	}
	size_t budget0 = umapd_get_bufsize();
	t_set_bufsize(bnp / 8 * ps); /* an eighth of the region: the evictor works all along */
	bb = t_map(bnp * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	t_watchdog_hook(b_progress);

	pthread_t th[NWORKERS];
	for (int w = 0; w < NWORKERS; w++)
		T_CHECK(pthread_create(&th[w], NULL, b_worker, (void *)(intptr_t)w) == 0, "pthread_create");

	size_t n = t_scaled(150, 20);
	uint64_t t0 = t_now_ns();
	for (size_t i = 0; i < n; i++) {
		atomic_store(&bspawn_i, (int)i);
		t_step("B: iteration %zu: system(\"true\")", i);
		int rc = system("true");
		if (rc != 0)
			t_fail("B: system(\"true\") returned %d (%s)", rc, rc < 0 ? t_errname(errno) : t_wait_str(rc));
		t_step("B: iteration %zu: popen(\"echo hi\")", i);
		FILE *p = popen("echo hi", "r");
		if (p == NULL)
			t_fail("B: popen: %s", t_errname(errno));
		char line[64] = "";
		if (fgets(line, sizeof(line), p) == NULL)
			line[0] = '\0';
		rc = pclose(p);
		if (strcmp(line, "hi\n") != 0 || rc != 0)
			t_fail("B: popen(\"echo hi\") read \"%s\", pclose %d", line, rc);
		t_step("B: iteration %zu: fork()+_exit()", i);
		fflush(stdout);
		fflush(stderr);
		pid_t c = fork();
		if (c < 0)
			t_fail("B: fork: %s", t_errname(errno));
		if (c == 0)
			_exit(7);
		int st;
		while (waitpid(c, &st, 0) < 0)
			if (errno != EINTR)
				t_fail("B: waitpid: %s", t_errname(errno));
		T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "B: forked child: %s, want exit 7", t_wait_str(st));
	}
	double secs = (double)(t_now_ns() - t0) / 1e9;
	t_step("B: stop the workers");
	atomic_store(&bstop, 1);
	uint64_t acc = 0;
	for (int w = 0; w < NWORKERS; w++) {
		pthread_join(th[w], NULL);
		acc += atomic_load(&bops[w]);
	}
	t_watchdog_hook(NULL);
	T_CHECK(acc > 0, "B: the workers made no access at all");

	t_step("B: every page through the mapping");
	for (size_t p = 0; p < bnp; p++) {
		uint64_t got = *(volatile uint64_t *)(bb + p * ps);
		if (got != bstamp[p])
			t_fail("B: page %zu holds %#llx after the run, want %#llx", p, (unsigned long long)got,
			       (unsigned long long)bstamp[p]);
		t_check_pat("B: rest of the page", bb + p * ps + 8, ps - 8, p * ps + 8, 9);
	}
	struct umapd_stats s;
	t_region_stats(bb, &s);
	t_step("B: umapd_unmap and the file");
	t_unmap(bb);
	t_set_bufsize(budget0);
	uint8_t *pg = malloc(ps);
	T_CHECK(pg != NULL, "out of memory");
	for (size_t p = 0; p < bnp; p++) {
		uint64_t got;
		t_pread_all(fd, pg, ps, (off_t)(p * ps));
		memcpy(&got, pg, 8);
		if (got != bstamp[p])
			t_fail("B: after umapd_unmap the file holds %#llx in page %zu, want %#llx", (unsigned long long)got,
			       p, (unsigned long long)bstamp[p]);
		t_check_pat("B: file after umapd_unmap, rest of the page", pg + 8, ps - 8, p * ps + 8, 9);
	}
	free(pg);
	close(fd);
	free(bstamp);
	printf("B: %zu x system+popen+fork in %.1f s while %d threads made %llu accesses (%llu faults, %llu "
	       "evictions)\n",
	       n, secs, NWORKERS, (unsigned long long)acc, (unsigned long long)s.faults,
	       (unsigned long long)s.evictions);
}

/* ---- C: a child's exit() writes nothing ---- */

static int child_exit(void *arg)
{
	(void)arg;
	exit(0); /* atexit handlers and destructors run here */
}

static void part_c(void)
{
	const size_t np = 32;
	char path[256];
	int fd = t_tmpfile(path);
	t_write_file_pat(fd, 0, np * ps, 5);
	T_OK(fsync(fd));
	uint8_t *b = t_map(np * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	t_step("C: dirty every page, not flushed");
	t_fill_pat(b, np * ps, 0, 6);
	struct stat st0, st1;
	T_OK(fstat(fd, &st0));

	for (int k = 0; k < 5; k++) {
		char *err = NULL;
		t_step("C: child %d calls exit()", k);
		int st = t_fork_run(child_exit, NULL, 20, &err);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			t_fail("C: a child calling exit(0) ended with %s; its stderr: %s", t_wait_str(st),
			       err && *err ? err : "(nothing)");
		free(err);
		t_step("C: the file after child %d exited", k);
		t_check_file_pat("C: file after a forked child called exit() (must still hold the old data)", fd, 0,
				 np * ps, 5);
		T_OK(fstat(fd, &st1));
		T_CHECK(st1.st_size == st0.st_size && st1.st_mtim.tv_sec == st0.st_mtim.tv_sec &&
				st1.st_mtim.tv_nsec == st0.st_mtim.tv_nsec,
			"C: the file changed while only a forked child ran exit(): size %lld -> %lld, mtime "
			"%lld.%09ld -> %lld.%09ld",
			(long long)st0.st_size, (long long)st1.st_size, (long long)st0.st_mtim.tv_sec,
			st0.st_mtim.tv_nsec, (long long)st1.st_mtim.tv_sec, st1.st_mtim.tv_nsec);
	}
	t_step("C: the parent's data in the mapping");
	t_check_pat("C: region after the children exited", b, np * ps, 0, 6);
	t_step("C: the parent's later writes");
	t_fill_pat(b + 4 * ps, 8 * ps, 4 * ps, 8);
	T_OK(umapd_flush(b, np * ps));
	t_check_file_pat("C: file after the parent's umapd_flush, pages 0-3", fd, 0, 4 * ps, 6);
	t_check_file_pat("C: file after the parent's umapd_flush, pages 4-11", fd, 4 * (off_t)ps, 8 * ps, 8);
	t_check_file_pat("C: file after the parent's umapd_flush, pages 12-", fd, 12 * (off_t)ps, (np - 12) * ps, 6);
	t_fill_pat(b, ps, 0, 10);
	t_unmap(b);
	t_check_file_pat("C: file after umapd_unmap, page 0", fd, 0, ps, 10);
	t_check_file_pat("C: file after umapd_unmap, pages 1-3", fd, (off_t)ps, 3 * ps, 6);
	close(fd);
}

int main(void)
{
	t_init("fork", 120);
	t_umapd_start();
	ps = t_sys_page();
	part_a();
	part_b();
	part_c();
	t_pass("a child touching a region dies of SIGSEGV (clean/dirty/missing, read/write), parent data intact; "
	       "system/popen/fork under heavy faulting complete with data verified; a child's exit() leaves the "
	       "file untouched and the parent's later writes land");
}
