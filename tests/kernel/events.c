/*
 * events - the application changes a region's address space behind umapd's
 * back (seed 004: mmap_changing, non-cooperative userfaultfd events).
 *
 * The contract these parts check (the engine side of non-cooperative events):
 *
 *  a_basic  MADV_DONTNEED by the application on part of a region holding
 *           clean, dirty, flushed, flushed-then-dirty and missing pages:
 *           afterwards the range reads the FILE's contents, as with a private
 *           file mapping (unflushed dirty data is discarded, flushed data is
 *           there); outside the range nothing changes; reads, writes, flush
 *           and unmap keep working and land in the file.
 *  a_race   the same many times under a tiny budget (the evictor's own
 *           MADV_DONTNEED raises the same REMOVE event) while two threads
 *           fault and verify their own parts of the region: after each
 *           MADV_DONTNEED the range reads what the file holds, each page
 *           either its dirty data (if an eviction wrote it back first) or
 *           the older file data, never zeros or a mix.
 *  b_tail   the tail of a region unmapped without umapd_unmap (by an
 *           application mapping placed over it with MAP_FIXED, which unmaps
 *           it in the same call); the rest stays usable (reads, writes,
 *           umapd_flush); what the application maps at the tail survives
 *           umapd_unmap of the region, which succeeds, and its bytes never
 *           reach the file.
 *  b_whole  munmap of a whole region without umapd_unmap: a later
 *           umapd_unmap returns 0 or -1/EINVAL and does not crash; the same
 *           with a new application mapping at the freed address, which must
 *           survive; new regions keep working.
 *  c        mremap of a whole region (MREMAP_MAYMOVE|MREMAP_FIXED) to a
 *           reserved spot, several times over: missing, clean, dirty and flushed pages are served
 *           at the new address with the file's (or the dirty) data; writes
 *           there reach the file with umapd_flush(new) and umapd_unmap(new).
 *  d        mprotect(PROT_READ) and back to PROT_READ|PROT_WRITE on a region
 *           with clean, dirty, flushed and missing pages: reads, flush and
 *           evict work while read-only, and writes afterwards reach the file.
 *  e        UFFDIO_* EAGAIN (mmap_changing): threads fault heavily in one part
 *           of a region while another thread does MADV_DONTNEED on a
 *           different part in a loop, for some seconds: no hang, every page
 *           verified in the mapping and, after umapd_unmap, in the file.
 *
 * Each part runs in its own process (this binary re-executed with the
 * part's name), so that one failing or hanging part does not hide the
 * others; the summary lists every part with its result.
 */
#include "umapd_test.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static size_t ps;

/* ---- helpers ---- */

/* The step, also kept here so that a fatal signal can name it. */
static char g_step[400];

static void step(const char *fmt, ...) T_PRINTF(1, 2);
static void step(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_step, sizeof(g_step), fmt, ap);
	va_end(ap);
	t_step("%s", g_step);
}

/* A SIGBUS or SIGSEGV in a part (umapd raising SIGBUS for an address it
 * lost, say) fails the part with the step it was at. */
static void fatal_signal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	char buf[600];
	int n = snprintf(buf, sizeof(buf), "FAIL %s: signal %d (%s) at address %p, at step: %s\n", t_name(), sig,
			 sig == SIGBUS ? "SIGBUS" : "SIGSEGV", si->si_addr, g_step);
	if (write(2, buf, (size_t)n) < 0) {
	}
	_exit(1);
}

static void catch_fatal_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fatal_signal;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
}

static uint8_t *xmalloc(size_t n)
{
	uint8_t *p = malloc(n);
	if (p == NULL)
		t_fail("out of memory (%zu bytes)", n);
	return p;
}

/* Is [a, a+len) mapped at all?  (mincore says ENOMEM where it is not.) */
static int mapped(void *a, size_t len)
{
	size_t n = (len + ps - 1) / ps;
	unsigned char *v = xmalloc(n);
	int rc = mincore(a, len, v);
	int e = errno;
	free(v);
	if (rc == 0)
		return 1;
	if (e == ENOMEM)
		return 0;
	t_fail("mincore(%p, %zu): %s", a, len, t_errname(e));
}

static void check_file(const char *what, int fd, const uint8_t *model, size_t off, size_t len)
{
	uint8_t *b = xmalloc(len);
	t_pread_all(fd, b, len, (off_t)off);
	t_check_bytes(what, b, model + off, len, off);
	free(b);
}

/* Fill whole pages [p0, p1) through the mapping and the model. */
static void write_pages(uint8_t *base, uint8_t *model, size_t p0, size_t p1, uint32_t seed)
{
	t_fill_pat(base + p0 * ps, (p1 - p0) * ps, p0 * ps, seed);
	t_fill_pat(model + p0 * ps, (p1 - p0) * ps, p0 * ps, seed);
}

/* Read every page of [p0, p1) (so it is resident and clean). */
static void touch_pages(uint8_t *base, size_t p0, size_t p1)
{
	for (size_t p = p0; p < p1; p++)
		(void)*(volatile uint8_t *)(base + p * ps + 7);
}

/* ---- workers that fault in their own pages and verify them ---- */

struct worker {
	uint8_t *base;
	size_t lo, hi; /* pages owned */
	uint32_t seed; /* the file's pattern */
	uint64_t *stamp; /* per page (indexed from 0 of the region): u64 at offset 0 */
	int id;
	_Atomic uint64_t ops;
	pthread_t th;
};
static atomic_int wstop;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(w->id + 1), n = 0;
	while (!atomic_load_explicit(&wstop, memory_order_relaxed)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t p = w->lo + (size_t)(x % (w->hi - w->lo));
		volatile uint64_t *q = (volatile uint64_t *)(w->base + p * ps);
		uint64_t got = *q;
		if (got != w->stamp[p])
			t_fail("worker %d: page %zu holds %#llx, want %#llx (the last value written)", w->id, p,
			       (unsigned long long)got, (unsigned long long)w->stamp[p]);
		size_t mo = 8 + (size_t)(x >> 40) % (ps - 8);
		uint8_t mid = w->base[p * ps + mo];
		if (mid != t_pat(p * ps + mo, w->seed))
			t_fail("worker %d: page %zu byte %zu holds 0x%02x, want the file's 0x%02x", w->id, p, mo, mid,
			       t_pat(p * ps + mo, w->seed));
		if (x & 1) {
			uint64_t v = ((uint64_t)(w->id + 1) << 56) | ++n;
			*q = v;
			w->stamp[p] = v;
		}
		atomic_fetch_add_explicit(&w->ops, 1, memory_order_relaxed);
	}
	return NULL;
}

static uint64_t *stamps_init(size_t np, uint32_t seed)
{
	uint64_t *s = malloc(np * sizeof(*s));
	if (s == NULL)
		t_fail("out of memory");
	for (size_t p = 0; p < np; p++) {
		uint8_t tmp[8];
		t_fill_pat(tmp, 8, p * ps, seed);
		memcpy(&s[p], tmp, 8);
	}
	return s;
}

static void workers_start(struct worker *w, int n)
{
	atomic_store(&wstop, 0);
	for (int i = 0; i < n; i++)
		T_CHECK(pthread_create(&w[i].th, NULL, worker_main, &w[i]) == 0, "pthread_create");
}

static uint64_t workers_stop(struct worker *w, int n)
{
	uint64_t ops = 0;
	atomic_store(&wstop, 1);
	for (int i = 0; i < n; i++) {
		pthread_join(w[i].th, NULL);
		ops += atomic_load(&w[i].ops);
	}
	return ops;
}

/* The worker pages, in the mapping (before unmap) or the file (after). */
static void workers_verify(const char *what, const struct worker *w, int n, int fd, const uint8_t *base)
{
	uint8_t *pg = xmalloc(ps);
	for (int i = 0; i < n; i++)
		for (size_t p = w[i].lo; p < w[i].hi; p++) {
			if (base != NULL)
				memcpy(pg, base + p * ps, ps);
			else
				t_pread_all(fd, pg, ps, (off_t)(p * ps));
			uint64_t got;
			memcpy(&got, pg, 8);
			if (got != w[i].stamp[p])
				t_fail("%s: page %zu holds %#llx, want %#llx (last written by worker %d)", what, p,
				       (unsigned long long)got, (unsigned long long)w[i].stamp[p], i);
			t_check_pat(what, pg + 8, ps - 8, p * ps + 8, w[i].seed);
		}
	free(pg);
}

static struct worker *g_workers;
static int g_nworkers;
static _Atomic uint64_t g_loops;

static void progress(void)
{
	char buf[256];
	int k = snprintf(buf, sizeof(buf), "  main loop %llu;", (unsigned long long)atomic_load(&g_loops));
	for (int i = 0; i < g_nworkers && k < 200; i++)
		k += snprintf(buf + k, sizeof(buf) - (size_t)k, " worker %d: %llu accesses;", i,
			      (unsigned long long)atomic_load(&g_workers[i].ops));
	snprintf(buf + k, sizeof(buf) - (size_t)k, "\n");
	if (write(2, buf, strlen(buf)) < 0) {
	}
}

/* ---- a: MADV_DONTNEED by the application ---- */

static void part_a_basic(void)
{
	const size_t np = 64;
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, np * ps, 20);
	uint8_t *mem = xmalloc(np * ps), *file = xmalloc(np * ps);
	t_fill_pat(mem, np * ps, 0, 20);
	t_fill_pat(file, np * ps, 0, 20);
	uint8_t *b = t_map(np * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);

	step("a_basic: set up 0-15 dirty, 16-23 clean, 24-31 dirty, 32-39 flushed, 40-43 flushed+dirty, "
	       "44-47 missing, 48-63 clean");
	write_pages(b, mem, 0, 16, 24);
	touch_pages(b, 16, 24);
	write_pages(b, mem, 24, 32, 21);
	write_pages(b, mem, 32, 44, 22);
	T_OK(umapd_flush(b + 32 * ps, 12 * ps));
	memcpy(file + 32 * ps, mem + 32 * ps, 12 * ps);
	for (size_t p = 40; p < 44; p++) { /* part of each page dirty again */
		t_fill_pat(b + p * ps + 1000, 500, p * ps + 1000, 23);
		t_fill_pat(mem + p * ps + 1000, 500, p * ps + 1000, 23);
	}
	touch_pages(b, 48, 64);
	t_check_bytes("a_basic: region before MADV_DONTNEED", b, mem, np * ps, 0);

	step("a_basic: madvise(MADV_DONTNEED) on pages 16-47");
	T_OK(madvise(b + 16 * ps, 32 * ps, MADV_DONTNEED));
	memcpy(mem + 16 * ps, file + 16 * ps, 32 * ps); /* a private file mapping's semantics */
	step("a_basic: read pages 16-47 after MADV_DONTNEED");
	t_check_bytes("a_basic: pages 16-47 after MADV_DONTNEED must read the file's contents (unflushed dirty "
		      "data discarded, flushed data kept)",
		      b + 16 * ps, mem + 16 * ps, 32 * ps, 16 * ps);
	step("a_basic: pages outside the range after MADV_DONTNEED");
	t_check_bytes("a_basic: pages 0-15 (dirty, outside the range) after MADV_DONTNEED", b, mem, 16 * ps, 0);
	t_check_bytes("a_basic: pages 48-63 (clean, outside the range) after MADV_DONTNEED", b + 48 * ps,
		      mem + 48 * ps, 16 * ps, 48 * ps);

	step("a_basic: write pages 20, 28, 36, 42, 46 after MADV_DONTNEED, umapd_flush");
	static const size_t wp[] = { 20, 28, 36, 42, 46 };
	for (size_t i = 0; i < sizeof(wp) / sizeof(wp[0]); i++)
		write_pages(b, mem, wp[i], wp[i] + 1, 25);
	T_OK(umapd_flush(b, np * ps));
	check_file("a_basic: file after writes following MADV_DONTNEED and umapd_flush", fd, mem, 0, np * ps);

	step("a_basic: 20 rounds of dirty, flush half, MADV_DONTNEED, check");
	for (int r = 0; r < 20; r++) {
		memcpy(file, mem, np * ps); /* everything is flushed at this point */
		size_t p0 = 8 + (size_t)(r % 5) * 8;
		write_pages(b, mem, p0, p0 + 8, 100 + (uint32_t)r);
		T_OK(umapd_flush(b + p0 * ps, 4 * ps));
		memcpy(file + p0 * ps, mem + p0 * ps, 4 * ps);
		T_OK(madvise(b + p0 * ps, 8 * ps, MADV_DONTNEED));
		memcpy(mem + p0 * ps, file + p0 * ps, 8 * ps);
		t_check_bytes("a_basic: round after MADV_DONTNEED (first 4 pages flushed, last 4 dirty)", b + p0 * ps,
			      mem + p0 * ps, 8 * ps, p0 * ps);
		T_OK(umapd_flush(b, np * ps));
		check_file("a_basic: file after a round", fd, mem, 0, np * ps);
	}

	step("a_basic: write again, umapd_unmap");
	write_pages(b, mem, 16, 48, 26);
	t_unmap(b);
	check_file("a_basic: file after umapd_unmap", fd, mem, 0, np * ps);
	free(mem);
	free(file);
	close(fd);
	t_pass("MADV_DONTNEED on clean/dirty/flushed/missing pages reads the file's contents afterwards, outside "
	       "untouched, later writes/flush/unmap land in the file");
}

static void part_a_race(void)
{
	const size_t np = 512, own0 = 384; /* pages [own0, np) are the main thread's */
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, np * ps, 27);
	uint8_t *mem = xmalloc(np * ps), *before = xmalloc(32 * ps), *fb = xmalloc(32 * ps);
	t_fill_pat(mem, np * ps, 0, 27);
	t_set_bufsize(24 * ps); /* tiny: the evictor runs all the time */
	uint8_t *b = t_map(np * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	uint64_t *stamp = stamps_init(np, 27);
	struct worker w[2] = {
		{ .base = b, .lo = 0, .hi = 256, .seed = 27, .stamp = stamp, .id = 0 },
		{ .base = b, .lo = 256, .hi = own0, .seed = 27, .stamp = stamp, .id = 1 },
	};
	g_workers = w;
	g_nworkers = 2;
	t_watchdog_hook(progress);
	workers_start(w, 2);

	size_t rounds = t_scaled(400, 40);
	uint64_t either_dirty = 0, either_file = 0;
	for (size_t r = 0; r < rounds; r++) {
		atomic_store(&g_loops, r);
		size_t p0 = own0 + (r * 13) % (np - own0 - 32), n = 8 + r % 24;
		step("a_race: round %zu: dirty pages %zu-%zu, flush a third, MADV_DONTNEED", r, p0, p0 + n - 1);
		/* file content before: what the mapping holds now (all flushed or
		 * read from the file) */
		T_OK(umapd_flush(b + own0 * ps, (np - own0) * ps));
		unsigned char written[32] = { 0 };
		for (size_t p = p0; p < p0 + n; p += 1 + r % 2) {
			size_t o = (r * 97 + p * 31) % (ps - 64);
			written[p - p0] = 1;
			t_fill_pat(mem + p * ps + o, 64, p * ps + o + r, 200);
			memcpy(b + p * ps + o, mem + p * ps + o, 64);
		}
		T_OK(umapd_flush(b + p0 * ps, n / 3 * ps));
		memcpy(before, b + p0 * ps, n * ps); /* dirty content (reads do not change it) */
		T_OK(madvise(b + p0 * ps, n * ps, MADV_DONTNEED));
		step("a_race: round %zu: check pages %zu-%zu after MADV_DONTNEED", r, p0, p0 + n - 1);
		uint8_t *now = xmalloc(n * ps);
		memcpy(now, b + p0 * ps, n * ps);
		t_pread_all(fd, fb, n * ps, (off_t)(p0 * ps));
		for (size_t i = 0; i < n; i++) {
			const uint8_t *pn = now + i * ps, *pf = fb + i * ps, *pd = before + i * ps;
			if (memcmp(pn, pf, ps) != 0) {
				long d = 0;
				while (pn[d] == pf[d])
					d++;
				t_fail("a_race: round %zu: page %zu after MADV_DONTNEED reads 0x%02x at byte %ld, the "
				       "file holds 0x%02x: the range must read what the file holds",
				       r, p0 + i, pn[d], d, pf[d]);
			}
			if (i < n / 3 && memcmp(pn, pd, ps) != 0)
				t_fail("a_race: round %zu: page %zu was flushed before MADV_DONTNEED but reads other data "
				       "afterwards", r, p0 + i);
			if (i >= n / 3 && written[i]) { /* dirty, not flushed by the test */
				if (memcmp(pn, pd, ps) == 0)
					either_dirty++;
				else
					either_file++;
			}
		}
		memcpy(mem + p0 * ps, now, n * ps);
		free(now);
	}
	step("a_race: stop the workers");
	uint64_t ops = workers_stop(w, 2);
	t_watchdog_hook(NULL);
	step("a_race: verify everything in the mapping");
	workers_verify("a_race: worker pages in the mapping", w, 2, fd, b);
	t_check_bytes("a_race: main pages in the mapping", b + own0 * ps, mem + own0 * ps, (np - own0) * ps,
		      own0 * ps);
	struct umapd_stats s;
	t_region_stats(b, &s);
	step("a_race: umapd_unmap, verify the file");
	t_unmap(b);
	workers_verify("a_race: worker pages in the file after umapd_unmap", w, 2, fd, NULL);
	check_file("a_race: main pages in the file after umapd_unmap", fd, mem, own0 * ps, (np - own0) * ps);
	free(stamp);
	free(mem);
	free(before);
	free(fb);
	close(fd);
	t_pass("%zu rounds of MADV_DONTNEED racing 2 faulting threads and the evictor (%llu evictions): every "
	       "range read what the file held (of the unflushed dirty pages, %llu had been written back by "
	       "an eviction first, %llu went back to older file data), %llu worker accesses verified, file verified after unmap",
	       rounds, (unsigned long long)s.evictions, (unsigned long long)either_dirty,
	       (unsigned long long)either_file, (unsigned long long)ops);
}

/* ---- b: munmap without umapd_unmap ---- */

/* Each page of the file in [p0, p1) equals one of two candidates (or the
 * test fails naming the page): the munmapped pages' fate is open, but not
 * zeros, not the bytes of whatever was mapped there afterwards. */
static void check_file_either(const char *what, int fd, size_t p0, size_t p1, uint32_t s1, uint32_t s2)
{
	uint8_t *pg = xmalloc(ps), *e1 = xmalloc(ps), *e2 = xmalloc(ps);
	for (size_t p = p0; p < p1; p++) {
		t_pread_all(fd, pg, ps, (off_t)(p * ps));
		t_fill_pat(e1, ps, p * ps, s1);
		t_fill_pat(e2, ps, p * ps, s2);
		if (memcmp(pg, e1, ps) != 0 && memcmp(pg, e2, ps) != 0)
			t_fail("%s: file page %zu is neither its old data nor the data last written (first bytes "
			       "%02x %02x %02x %02x)",
			       what, p, pg[0], pg[1], pg[2], pg[3]);
	}
	free(pg);
	free(e1);
	free(e2);
}

static void part_b_tail(void)
{
	const size_t np = 64;
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, np * ps, 30);
	uint8_t *mem = xmalloc(np * ps);
	t_fill_pat(mem, np * ps, 0, 30);
	uint8_t *b = t_map(np * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	step("b_tail: dirty pages 0-7 and 56-63, clean 8-15 and 48-55");
	write_pages(b, mem, 0, 8, 31);
	write_pages(b, mem, 56, 64, 31);
	touch_pages(b, 8, 16);
	touch_pages(b, 48, 56);

	/* The tail is unmapped by mapping something of the application's own
	 * over it (MAP_FIXED: the kernel unmaps, raising UNMAP, and maps in one
	 * call).  A plain munmap leaves a hole in which any thread's allocation
	 * (a sanitizer's allocator, while munmap waits for the event to be
	 * read) may be placed before the test can map there. */
	step("b_tail: unmap pages 48-63 without umapd_unmap (MAP_FIXED over them)");
	T_CHECK(mmap(b + 48 * ps, 16 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == b + 48 * ps,
		"b_tail: mapping over the tail: %s", t_errname(errno));
	step("b_tail: use pages 0-47");
	t_check_bytes("b_tail: pages 0-47 after munmap of the tail", b, mem, 48 * ps, 0);
	write_pages(b, mem, 20, 24, 32);
	write_pages(b, mem, 44, 48, 32);
	step("b_tail: umapd_flush of pages 0-47");
	T_OK(umapd_flush(b, 48 * ps));

	/* Nothing of the test's own may allocate between the munmap and this
	 * mmap: a large malloc (check_file's buffer, with a sanitizer's redzones)
	 * can be placed in the freed tail itself. */
	step("b_tail: map the freed tail read-write (over the application's reservation)");
	uint8_t *tail = mmap(b + 48 * ps, 16 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			     -1, 0);
	if (tail == MAP_FAILED) {
		/* Say what took the place: a mapping made behind the test's back. */
		int e = errno;
		char line[512], want[32];
		FILE *maps = fopen("/proc/self/maps", "r");
		snprintf(want, sizeof(want), "%lx-", (unsigned long)(uintptr_t)(b + 48 * ps));
		while (maps && fgets(line, sizeof(line), maps)) {
			unsigned long lo, hi;
			if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo < (uintptr_t)(b + 64 * ps) &&
			    hi > (uintptr_t)(b + 48 * ps))
				fprintf(stderr, "  in the way: %s", line);
		}
		if (maps)
			fclose(maps);
		t_fail("b_tail: mmap(MAP_FIXED) at the munmapped tail %p: %s", (void *)(b + 48 * ps),
		       t_errname(e));
	}
	T_CHECK(tail == b + 48 * ps, "b_tail: mmap placed the new mapping at %p, not %p", (void *)tail,
		(void *)(b + 48 * ps));
	t_fill_pat(tail, 16 * ps, 48 * ps, 33);
	check_file("b_tail: file pages 0-47 after umapd_flush", fd, mem, 0, 48 * ps);
	write_pages(b, mem, 2, 3, 34); /* one more dirty page for the unmap to write */

	step("b_tail: umapd_unmap of the region");
	errno = 0;
	int rc = umapd_unmap(b);
	if (rc != 0)
		t_fail("b_tail: umapd_unmap(%p) after munmap of the tail returned %d errno %s, want 0", (void *)b, rc,
		       t_errname(errno));
	step("b_tail: the application's new mapping at the old tail");
	T_CHECK(mapped(tail, 16 * ps), "b_tail: umapd_unmap unmapped the application's mapping at %p (made after "
		"the munmap of the region's tail)", (void *)tail);
	t_check_pat("b_tail: the application's mapping at the old tail after umapd_unmap", tail, 16 * ps, 48 * ps, 33);
	T_CHECK(!mapped(b, 48 * ps), "b_tail: pages 0-47 are still mapped after umapd_unmap returned 0");
	check_file("b_tail: file pages 0-47 after umapd_unmap", fd, mem, 0, 48 * ps);
	check_file_either("b_tail: file pages 48-55 (clean, munmapped)", fd, 48, 56, 30, 30);
	check_file_either("b_tail: file pages 56-63 (dirty, munmapped)", fd, 56, 64, 30, 31);
	munmap(tail, 16 * ps);
	free(mem);
	close(fd);
	t_pass("munmap of a region's tail: the rest reads, writes, flushes; umapd_unmap returns 0 and leaves the "
	       "mapping the application made at the freed tail alone; no foreign bytes in the file");
}

static void part_b_whole(void)
{
	const size_t np = 32;
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, np * ps, 35);

	step("b_whole: map, dirty pages 0-7, munmap the whole region");
	uint8_t *b = t_map(np * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	t_fill_pat(b, 8 * ps, 0, 36);
	touch_pages(b, 8, 16);
	T_OK(munmap(b, np * ps));
	step("b_whole: umapd_unmap after munmap");
	errno = 0;
	int rc = umapd_unmap(b);
	int e = errno;
	if (!(rc == 0 || (rc == -1 && e == EINVAL)))
		t_fail("b_whole: umapd_unmap of a munmapped region returned %d errno %s, want 0 or -1/EINVAL", rc,
		       t_errname(e));
	int rc1 = rc;
	printf("b_whole: umapd_unmap after munmap of the whole region: %s\n", rc == 0 ? "0" : "-1/EINVAL");
	check_file_either("b_whole: file pages 0-7 (dirty, munmapped)", fd, 0, 8, 35, 36);
	t_check_file_pat("b_whole: file pages 8-31", fd, 8 * (off_t)ps, (np - 8) * ps, 35);

	step("b_whole: map, dirty, munmap, application maps the same range, umapd_unmap");
	b = t_map(np * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	t_fill_pat(b + 8 * ps, 8 * ps, 8 * ps, 37);
	T_OK(munmap(b, np * ps));
	uint8_t *app = mmap(b, np * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (app == MAP_FAILED)
		t_fail("b_whole: mmap(MAP_FIXED_NOREPLACE) at the munmapped region %p: %s", (void *)b, t_errname(errno));
	T_CHECK(app == b, "b_whole: mmap placed the new mapping at %p, not %p", (void *)app, (void *)b);
	t_fill_pat(app, np * ps, 0, 38);
	errno = 0;
	rc = umapd_unmap(b);
	e = errno;
	if (!(rc == 0 || (rc == -1 && e == EINVAL)))
		t_fail("b_whole: umapd_unmap of a munmapped region (address reused) returned %d errno %s, want 0 or "
		       "-1/EINVAL", rc, t_errname(e));
	T_CHECK(mapped(app, np * ps), "b_whole: umapd_unmap of the munmapped region unmapped the application's new "
		"mapping at the same address");
	t_check_pat("b_whole: the application's mapping at the old region's address after umapd_unmap", app,
		    np * ps, 0, 38);
	check_file_either("b_whole: file pages 0-7", fd, 0, 8, 35, 36);
	check_file_either("b_whole: file pages 8-15 (dirty, munmapped; never the new mapping's bytes)", fd, 8, 16,
			  35, 37);
	t_check_file_pat("b_whole: file pages 16-31", fd, 16 * (off_t)ps, (np - 16) * ps, 35);
	munmap(app, np * ps);

	step("b_whole: new regions keep working");
	int fd2 = t_tmpfile(NULL);
	t_write_file_pat(fd2, 0, np * ps, 39);
	for (int k = 0; k < 3; k++) {
		uint8_t *c = t_map(np * ps, PROT_READ | PROT_WRITE, 0, fd2, 0, 0, -1);
		t_check_pat("b_whole: a new region after the munmapped ones", c, np * ps, 0, (uint32_t)(39 + k));
		t_fill_pat(c, np * ps, 0, (uint32_t)(40 + k));
		t_unmap(c);
		t_check_file_pat("b_whole: the new region's file after umapd_unmap", fd2, 0, np * ps, (uint32_t)(40 + k));
	}
	close(fd2);
	close(fd);
	t_pass("munmap of a whole region: umapd_unmap returns 0 or EINVAL (here %s, and %s with the address "
	       "reused) without crashing, leaves a new mapping at that address alone, and new regions keep working",
	       rc1 == 0 ? "0" : "EINVAL", rc == 0 ? "0" : "EINVAL");
}

/* ---- c: mremap ---- */

static void part_c(void)
{
	const size_t np = 64;
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, np * ps, 40);
	uint8_t *mem = xmalloc(np * ps);
	t_fill_pat(mem, np * ps, 0, 40);
	uint8_t *b = t_map(np * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1), *first = b;
	size_t rounds = t_scaled(8, 3);
	for (size_t r = 0; r < rounds; r++) {
		uint32_t sd = 41 + 4 * (uint32_t)r;
		step("c: round %zu: 0-15 missing, 16-31 clean, 32-47 dirty, 48-63 flushed", r);
		T_OK(umapd_evict(b, np * ps));
		touch_pages(b, 16, 32);
		write_pages(b, mem, 32, 64, sd);
		T_OK(umapd_flush(b + 48 * ps, 16 * ps));

		step("c: round %zu: reserve a spot, mremap(MREMAP_MAYMOVE|MREMAP_FIXED) the whole region there", r);
		uint8_t *spot = mmap(NULL, np * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		T_CHECK(spot != MAP_FAILED, "c: mmap of the spot: %s", t_errname(errno));
		uint8_t *n = mremap(b, np * ps, np * ps, MREMAP_MAYMOVE | MREMAP_FIXED, spot);
		if (n == MAP_FAILED)
			t_fail("c: round %zu: mremap(%p -> %p): %s", r, (void *)b, (void *)spot, t_errname(errno));
		T_CHECK(n == spot, "c: mremap returned %p, want %p", (void *)n, (void *)spot);

		step("c: round %zu: read every page at the new address", r);
		t_check_bytes("c: pages 0-15 (missing before mremap) at the new address", n, mem, 16 * ps, 0);
		t_check_bytes("c: pages 16-31 (clean before mremap) at the new address", n + 16 * ps, mem + 16 * ps,
			      16 * ps, 16 * ps);
		t_check_bytes("c: pages 32-47 (dirty before mremap) at the new address", n + 32 * ps, mem + 32 * ps,
			      16 * ps, 32 * ps);
		t_check_bytes("c: pages 48-63 (flushed before mremap) at the new address", n + 48 * ps, mem + 48 * ps,
			      16 * ps, 48 * ps);

		step("c: round %zu: write at the new address, umapd_flush(new)", r);
		write_pages(n, mem, 0, 4, sd + 1);
		write_pages(n, mem, 20, 24, sd + 1);
		write_pages(n, mem, 36, 40, sd + 1);
		write_pages(n, mem, 50, 52, sd + 1);
		errno = 0;
		int rc = umapd_flush(n, np * ps);
		if (rc != 0)
			t_fail("c: round %zu: umapd_flush(new address) returned %d errno %s, want 0", r, rc,
			       t_errname(errno));
		check_file("c: file after umapd_flush at the new address", fd, mem, 0, np * ps);
		step("c: round %zu: evict at the new address and read back", r);
		T_OK(umapd_evict(n, np * ps));
		t_check_bytes("c: the region at the new address after umapd_evict", n, mem, np * ps, 0);
		write_pages(n, mem, 10, 14, sd + 2);
		write_pages(n, mem, 60, 64, sd + 2);
		b = n;
	}
	step("c: umapd_unmap(new address)");
	errno = 0;
	int rc = umapd_unmap(b);
	if (rc != 0)
		t_fail("c: umapd_unmap(new address) returned %d errno %s, want 0", rc, t_errname(errno));
	check_file("c: file after umapd_unmap at the new address", fd, mem, 0, np * ps);
	/* umapd must have forgotten it.  Whether the range is still mapped
	 * cannot be asserted here: another thread (an allocator, a sanitizer
	 * runtime) may map something over the freed range at once; the
	 * integration.unmap test checks the unmapping itself. */
	struct umapd_stats rs;
	T_CHECK(umapd_region_stats(b, &rs) == -1 && errno == EINVAL,
		"c: umapd still has a region at the new address after umapd_unmap returned 0");
	if (mapped(b, np * ps))
		printf("note: c: the range at %p is mapped again (something else reused it)\n", (void *)b);
	errno = 0;
	rc = umapd_unmap(first);
	printf("c: umapd_unmap(first address) afterwards: %d errno %s\n", rc, t_errname(errno));
	free(mem);
	close(fd);
	t_pass("%zu mremaps of a whole region: missing/clean/dirty/flushed pages served at the new address, writes "
	       "there reach the file with umapd_flush/umapd_evict/umapd_unmap of the new address", rounds);
}

/* ---- d: mprotect ---- */

static void part_d(void)
{
	const size_t np = 64;
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, np * ps, 50);
	uint8_t *mem = xmalloc(np * ps);
	t_fill_pat(mem, np * ps, 0, 50);
	uint8_t *b = t_map(np * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	step("d: 0-15 clean, 16-31 dirty, 32-47 missing, 48-63 flushed");
	touch_pages(b, 0, 16);
	write_pages(b, mem, 16, 32, 51);
	write_pages(b, mem, 48, 64, 51);
	T_OK(umapd_flush(b + 48 * ps, 16 * ps));

	step("d: mprotect(PROT_READ)");
	T_OK(mprotect(b, np * ps, PROT_READ));
	t_check_bytes("d: region while PROT_READ", b, mem, np * ps, 0);
	step("d: umapd_flush while PROT_READ");
	T_OK(umapd_flush(b, np * ps));
	check_file("d: file after umapd_flush while PROT_READ", fd, mem, 0, np * ps);
	step("d: umapd_evict of pages 8-11 and 20-23 while PROT_READ");
	T_OK(umapd_evict(b + 8 * ps, 4 * ps));
	T_OK(umapd_evict(b + 20 * ps, 4 * ps));
	t_check_bytes("d: region after evictions while PROT_READ", b, mem, np * ps, 0);

	step("d: mprotect(PROT_READ|PROT_WRITE), write a byte in every page");
	T_OK(mprotect(b, np * ps, PROT_READ | PROT_WRITE));
	for (size_t p = 0; p < np; p++) {
		size_t o = p * ps + (p * 131) % ps;
		mem[o] = t_pat(o, 52);
		b[o] = mem[o];
	}
	T_OK(umapd_flush(b, np * ps));
	check_file("d: file after writes following mprotect back to read-write and umapd_flush", fd, mem, 0, np * ps);
	step("d: write every page again, umapd_evict");
	write_pages(b, mem, 0, np, 53);
	T_OK(umapd_evict(b, np * ps));
	check_file("d: file after umapd_evict", fd, mem, 0, np * ps);
	t_check_bytes("d: region after umapd_evict", b, mem, np * ps, 0);

	step("d: mprotect round trip again with dirty pages, then umapd_unmap");
	write_pages(b, mem, 5, 9, 54);
	T_OK(mprotect(b, np * ps, PROT_READ));
	T_OK(mprotect(b, np * ps, PROT_READ | PROT_WRITE));
	write_pages(b, mem, 7, 12, 55);
	write_pages(b, mem, 40, 41, 55);
	t_unmap(b);
	check_file("d: file after umapd_unmap", fd, mem, 0, np * ps);
	free(mem);
	close(fd);
	t_pass("mprotect(PROT_READ) and back: reads, flush and evict while read-only, writes afterwards reach the "
	       "file (flush, evict, unmap)");
}

/* ---- e: EAGAIN from mmap_changing ---- */

static _Atomic uint64_t e_dontneeds;

struct dn {
	uint8_t *base;
	size_t lo, hi;
	uint32_t seed;
};

static void *dontneed_main(void *arg)
{
	struct dn *d = arg;
	uint64_t i = 0;
	while (!atomic_load_explicit(&wstop, memory_order_relaxed)) {
		size_t n = 1 + (size_t)(i * 7 % 64);
		size_t p = d->lo + (size_t)(i * 37) % (d->hi - d->lo - n);
		if (madvise(d->base + p * ps, n * ps, MADV_DONTNEED) != 0)
			t_fail("e: madvise(MADV_DONTNEED) of pages %zu-%zu: %s", p, p + n - 1, t_errname(errno));
		/* read some of it back: the file's bytes */
		size_t q = p + (size_t)(i % n);
		size_t o = (i * 61) % (ps - 8);
		for (size_t k = 0; k < 8; k++) {
			uint8_t v = d->base[q * ps + o + k];
			if (v != t_pat(q * ps + o + k, d->seed))
				t_fail("e: page %zu byte %zu reads 0x%02x after MADV_DONTNEED, want the file's 0x%02x", q,
				       o + k, v, t_pat(q * ps + o + k, d->seed));
		}
		atomic_fetch_add_explicit(&e_dontneeds, 1, memory_order_relaxed);
		i++;
	}
	return NULL;
}

static void e_progress(void)
{
	progress();
	char buf[96];
	snprintf(buf, sizeof(buf), "  MADV_DONTNEED calls: %llu\n", (unsigned long long)atomic_load(&e_dontneeds));
	if (write(2, buf, strlen(buf)) < 0) {
	}
}

static void part_e(void)
{
	size_t np = t_scaled(2048, 512);
	size_t split = np * 3 / 4;
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, np * ps, 60);
	t_set_bufsize(np / 8 * ps);
	uint8_t *b = t_map(np * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	uint64_t *stamp = stamps_init(np, 60);
	struct worker w[2] = {
		{ .base = b, .lo = 0, .hi = split / 2, .seed = 60, .stamp = stamp, .id = 0 },
		{ .base = b, .lo = split / 2, .hi = split, .seed = 60, .stamp = stamp, .id = 1 },
	};
	struct dn d = { b, split, np, 60 };
	g_workers = w;
	g_nworkers = 2;
	t_watchdog_hook(e_progress);
	double secs = 5.0 * t_scale();
	if (secs < 1)
		secs = 1;
	step("e: 2 threads fault in pages 0-%zu, 1 thread MADV_DONTNEEDs in %zu-%zu, for %.1f s", split - 1, split,
	       np - 1, secs);
	workers_start(w, 2);
	pthread_t th;
	T_CHECK(pthread_create(&th, NULL, dontneed_main, &d) == 0, "pthread_create");
	uint64_t t0 = t_now_ns();
	while ((double)(t_now_ns() - t0) / 1e9 < secs)
		usleep(50000);
	step("e: stop the threads");
	uint64_t ops = workers_stop(w, 2);
	pthread_join(th, NULL);
	t_watchdog_hook(NULL);
	uint64_t dn = atomic_load(&e_dontneeds);
	T_CHECK(dn > 0 && ops > 0, "e: no progress: %llu MADV_DONTNEEDs, %llu accesses", (unsigned long long)dn,
		(unsigned long long)ops);
	step("e: verify in the mapping");
	workers_verify("e: worker pages in the mapping", w, 2, fd, b);
	t_check_pat("e: MADV_DONTNEED pages in the mapping", b + split * ps, (np - split) * ps, split * ps, 60);
	struct umapd_stats s;
	t_region_stats(b, &s);
	step("e: umapd_unmap, verify the file");
	t_unmap(b);
	workers_verify("e: worker pages in the file after umapd_unmap", w, 2, fd, NULL);
	t_check_file_pat("e: MADV_DONTNEED pages in the file after umapd_unmap", fd, (off_t)(split * ps),
			 (np - split) * ps, 60);
	free(stamp);
	close(fd);
	t_pass("%.1f s: %llu MADV_DONTNEEDs on one part of a region while 2 threads made %llu accesses in another "
	       "(%llu faults, %llu evictions): no hang, all data verified in the mapping and the file",
	       secs, (unsigned long long)dn, (unsigned long long)ops, (unsigned long long)s.faults,
	       (unsigned long long)s.evictions);
}

/* ---- driver ---- */

static const struct part {
	const char *name;
	void (*fn)(void);
	unsigned secs; /* the part's own watchdog */
} parts[] = {
	{ "a_basic", part_a_basic, 20 }, { "a_race", part_a_race, 40 }, { "b_tail", part_b_tail, 20 },
	{ "b_whole", part_b_whole, 20 }, { "c", part_c, 20 },           { "d", part_d, 20 },
	{ "e", part_e, 30 },
};
#define NPARTS (sizeof(parts) / sizeof(parts[0]))

int main(int argc, char **argv)
{
	ps = t_sys_page();
	if (argc > 1) {
		for (size_t i = 0; i < NPARTS; i++)
			if (strcmp(argv[1], parts[i].name) == 0) {
				static char name[64];
				snprintf(name, sizeof(name), "events.%s", parts[i].name);
				t_init(name, parts[i].secs);
				catch_fatal_signals();
				t_umapd_start();
				parts[i].fn();
				t_fail("part returned without a verdict");
			}
		fprintf(stderr, "unknown part %s\n", argv[1]);
		return 2;
	}

	unsigned total = 0;
	for (size_t i = 0; i < NPARTS; i++)
		total += parts[i].secs + 5;
	t_init("events", total);
	int failed = 0, skipped = 0;
	char summary[NPARTS][600];
	for (size_t i = 0; i < NPARTS; i++) {
		char *err = NULL;
		step("part %s", parts[i].name);
		int st = t_reexec(parts[i].name, NULL, parts[i].secs + 5, &err);
		/* the part's stderr: its failure line, or its watchdog's report */
		if (err != NULL && *err != '\0')
			fputs(err, stderr);
		const char *res = "PASS";
		if (WIFEXITED(st) && WEXITSTATUS(st) == T_SKIP) {
			res = "SKIP";
			skipped++;
		} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			res = "FAIL";
			failed++;
		}
		char first[500] = "";
		if (strcmp(res, "FAIL") == 0) {
			const char *l = err && *err ? err : "(no message)";
			const char *f = strstr(l, "FAIL "); /* the verdict line, past any log lines */
			if (f != NULL)
				l = f;
			const char *nl = strchr(l, '\n');
			snprintf(first, sizeof(first), " (%s): %.*s", t_wait_str(st), (int)(nl ? nl - l : (long)strlen(l)), l);
		}
		snprintf(summary[i], sizeof(summary[i]), "  %-8s %s%s", parts[i].name, res, first);
		free(err);
	}
	printf("events parts:\n");
	for (size_t i = 0; i < NPARTS; i++)
		printf("%s\n", summary[i]);
	if (failed)
		t_fail("%d of %zu parts failed (see above)", failed, NPARTS);
	if (skipped == (int)NPARTS)
		t_skip("every part skipped");
	t_pass("%zu parts: MADV_DONTNEED (alone and racing faults and the evictor), munmap of a tail and of a whole "
	       "region, mremap, mprotect, EAGAIN under MADV_DONTNEED storms", NPARTS - (size_t)skipped);
}
