/*
 * private_map FILE MODE: writable MAP_PRIVATE mappings of FILE, checked
 * against a model kept in ordinary memory.  The same program runs with
 * and without libumapd-preload.so (private_map.sh); both runs must print
 * the same lines, and FILE must never change through the mapping.
 *
 * Modes:
 *   random    map the file PROT_READ|PROT_WRITE, write a pattern over random
 *             pages (whole pages and parts), read it all back, msync (must
 *             not write the file), unmap; the file must be byte-identical.
 *   dontneed  written pages (evicted ones and resident ones), then
 *             MADV_DONTNEED on part of them: that part reads the file again
 *             (the kernel's semantics for private file mappings), the rest
 *             keeps the private data; writes after it are private again.
 *   mremap    grow the mapping with MREMAP_MAYMOVE where it cannot grow in
 *             place: the private data moves along; shrink drops the tail,
 *             and growing in place again shows the file there, not old data.
 *   mprotect  a read-only private mapping made writable with mprotect.
 *   pwrite    the program writes the file with pwrite while it has a
 *             private mapping: pages it never wrote through the map show
 *             the new bytes, pages it did keep its own.
 *   truncate  pages written all over, then the file truncated to a little
 *             more than half: whole pages past the end raise SIGBUS, private
 *             copies included; below the end, and in the page holding it,
 *             the copies stay.  (The file changes here, by ftruncate; both
 *             runs change it alike.)
 *   threads   four threads write and read back their own pages (every
 *             fourth page each, so neighbours belong to other threads) at
 *             the same time, twice over; then the whole map is checked.
 *   exit      every page written, then exit() with the mapping still there:
 *             nothing of it may reach the file (private_map.sh also checks
 *             that the private pages were dropped, not written to swap).
 *   fork      a child that does not touch the mapping (the preload library
 *             does not give children its mappings: docs/preload.md) runs and
 *             exits; the parent's private data and the file are intact.
 *
 * Every line printed is a fact both runs must agree on; the first
 * difference from the model fails the program with a FAIL line.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096

static const char *file;
static int fd;
static size_t size, npages;
static unsigned char *model;

static void die(const char *what)
{
	printf("FAIL %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static uint64_t fnv(const unsigned char *p, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Hash of the file as read(2) sees it. */
static uint64_t file_hash(void)
{
	static unsigned char buf[1 << 16];
	uint64_t h = 0xcbf29ce484222325ull;
	off_t off = 0;
	ssize_t n;

	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		h = fnv(buf, (size_t)n, h);
		off += n;
	}
	if (n < 0)
		die("pread");
	return h;
}

/* The model starts as the file's bytes. */
static void model_load(void)
{
	model = malloc(size);
	if (!model)
		die("malloc");
	for (size_t off = 0; off < size;) {
		ssize_t n = pread(fd, model + off, size - off, (off_t)off);

		if (n <= 0)
			die("pread model");
		off += (size_t)n;
	}
}

static unsigned char *map(int prot)
{
	unsigned char *m = mmap(NULL, size, prot, MAP_PRIVATE, fd, 0);

	if (m == MAP_FAILED)
		die("mmap");
	return m;
}

/* Write a pattern at a random place of page pg, in the map and the model. */
static void scribble(unsigned char *m, size_t pg)
{
	uint64_t r = rng();
	size_t off = (r & 1) ? 0 : (size_t)(r >> 8) % PG;
	size_t len = (r & 1) ? PG : 1 + (size_t)(r >> 24) % (PG - off);
	unsigned char v = (unsigned char)(r >> 40);

	for (size_t i = 0; i < len; i++) {
		unsigned char b = (unsigned char)(v + i * 7);

		m[pg * PG + off + i] = b;
		model[pg * PG + off + i] = b;
	}
}

/* Compare map and model over [from, to) pages; the first difference fails. */
static void check(const char *when, const unsigned char *m, size_t from, size_t to)
{
	for (size_t pg = from; pg < to; pg++) {
		if (memcmp(m + pg * PG, model + pg * PG, PG) == 0)
			continue;
		for (size_t i = pg * PG;; i++)
			if (m[i] != model[i]) {
				printf("FAIL %s: byte %zu (page %zu) is %#x, the model says %#x\n", when, i, pg, m[i],
				       model[i]);
				exit(1);
			}
	}
}

static void check_file(const char *when, uint64_t h0)
{
	uint64_t h = file_hash();

	if (h != h0) {
		printf("FAIL %s: the file changed (hash %016llx, was %016llx)\n", when, (unsigned long long)h,
		       (unsigned long long)h0);
		exit(1);
	}
}

static void mode_random(void)
{
	uint64_t h0 = file_hash();
	unsigned char *m = map(PROT_READ | PROT_WRITE);
	size_t writes = 2 * npages;

	for (size_t k = 0; k < writes; k++)
		scribble(m, (size_t)(rng() % npages));
	check("after the writes", m, 0, npages);
	/* A second round over pages that have been evicted meanwhile. */
	for (size_t k = 0; k < writes / 2; k++) {
		size_t pg = (size_t)(rng() % npages);

		if (m[pg * PG] != model[pg * PG]) {
			check("re-reading", m, pg, pg + 1);
		}
		scribble(m, pg);
	}
	check("after the second round", m, 0, npages);
	if (msync(m, size, MS_SYNC) < 0)
		die("msync");
	check_file("after msync", h0);
	check("after msync", m, 0, npages);
	if (munmap(m, size) < 0)
		die("munmap");
	check_file("after munmap", h0);
	printf("random: %zu pages, %zu writes; map = model %016llx; file unchanged %016llx\n", npages,
	       writes + writes / 2, (unsigned long long)fnv(model, size, 0xcbf29ce484222325ull),
	       (unsigned long long)h0);
}

static void mode_dontneed(void)
{
	uint64_t h0 = file_hash();
	unsigned char *m = map(PROT_READ | PROT_WRITE);
	size_t half = npages / 2, q = npages / 4;

	/* Every page of the first half written: under a small budget most
	 * are evicted to the swap file, the last ones still resident. */
	for (size_t pg = 0; pg < half; pg++)
		scribble(m, pg);
	check("written", m, 0, npages);
	/* Drop the middle of the written half (evicted and resident pages
	 * alike) and a range reaching into pages never written. */
	if (madvise(m + q * PG, (half - q + q / 2) * PG, MADV_DONTNEED) < 0)
		die("madvise");
	if (pread(fd, model + q * PG, (half - q + q / 2) * PG, (off_t)(q * PG)) < 0)
		die("pread");
	check("after MADV_DONTNEED", m, 0, npages);
	/* Written again after the drop: private again. */
	for (size_t pg = q; pg < half; pg += 3)
		scribble(m, pg);
	check("written after MADV_DONTNEED", m, 0, npages);
	if (msync(m, size, MS_SYNC) < 0)
		die("msync");
	if (munmap(m, size) < 0)
		die("munmap");
	check_file("after munmap", h0);
	printf("dontneed: %zu pages dropped; map = model %016llx; file unchanged\n", half - q + q / 2,
	       (unsigned long long)fnv(model, size, 0xcbf29ce484222325ull));
}

static void mode_mremap(void)
{
	uint64_t h0 = file_hash();
	size_t half = npages / 2;
	unsigned char *m, *block, *n;

	/* Map the first half only, with a page held right after it so that
	 * growing must move. */
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED)
		die("mmap");
	if (munmap(m + half * PG, size - half * PG) < 0)
		die("munmap tail");
	block = mmap(m + half * PG, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (block != m + half * PG)
		die("mmap blocker");
	for (size_t k = 0; k < 2 * half; k++)
		scribble(m, (size_t)(rng() % half));
	check("before mremap", m, 0, half);
	n = mremap(m, half * PG, size, MREMAP_MAYMOVE);
	if (n == MAP_FAILED)
		die("mremap grow");
	printf("mremap: grown %s\n", n == m ? "in place (unexpected)" : "by moving");
	check("after the move", n, 0, npages);
	for (size_t pg = 0; pg < npages; pg += 5)
		scribble(n, pg);
	check("written after the move", n, 0, npages);
	/* Shrink to a quarter: the private data of the tail dies; growing
	 * in place again shows the file there. */
	if (mremap(n, size, (npages / 4) * PG, 0) != n)
		die("mremap shrink");
	if (pread(fd, model + (npages / 4) * PG, size - (npages / 4) * PG, (off_t)((npages / 4) * PG)) < 0)
		die("pread");
	if (mremap(n, (npages / 4) * PG, size, 0) != n)
		die("mremap grow in place");
	check("shrunk and grown again", n, 0, npages);
	if (munmap(n, size) < 0 || munmap(block, PG) < 0)
		die("munmap");
	check_file("after munmap", h0);
	printf("mremap: map = model %016llx; file unchanged\n",
	       (unsigned long long)fnv(model, size, 0xcbf29ce484222325ull));
}

static void mode_mprotect(void)
{
	uint64_t h0 = file_hash();
	unsigned char *m = map(PROT_READ);

	check("read-only", m, 0, npages);
	if (mprotect(m, size, PROT_READ | PROT_WRITE) < 0)
		die("mprotect");
	for (size_t k = 0; k < npages; k++)
		scribble(m, (size_t)(rng() % npages));
	check("after mprotect and writes", m, 0, npages);
	if (mprotect(m, size, PROT_READ) < 0)
		die("mprotect back");
	check("read-only again", m, 0, npages);
	if (munmap(m, size) < 0)
		die("munmap");
	check_file("after munmap", h0);
	printf("mprotect: map = model %016llx; file unchanged\n",
	       (unsigned long long)fnv(model, size, 0xcbf29ce484222325ull));
}

static void mode_pwrite(void)
{
	unsigned char *m = map(PROT_READ | PROT_WRITE);
	unsigned char buf[PG];
	size_t written = 0, rewritten = 0;

	/* Private writes to every 4th page, read the rest. */
	for (size_t pg = 0; pg < npages; pg += 4)
		scribble(m, pg);
	check("before pwrite", m, 0, npages);
	/* The file changes under the mapping: pages the program wrote keep
	 * its bytes, the others show the file's new ones. */
	for (size_t pg = 0; pg < npages; pg += 3) {
		memset(buf, (int)(pg & 0xff), sizeof(buf));
		if (pwrite(fd, buf, sizeof(buf), (off_t)(pg * PG)) != (ssize_t)sizeof(buf))
			die("pwrite");
		if (pg % 4 != 0)
			memcpy(model + pg * PG, buf, PG);
		else
			rewritten++;
		written++;
	}
	check("after pwrite", m, 0, npages);
	if (munmap(m, size) < 0)
		die("munmap");
	printf("pwrite: %zu pages written to the file, %zu of them private in the map; map = model %016llx\n",
	       written, rewritten, (unsigned long long)fnv(model, size, 0xcbf29ce484222325ull));
}

static void mode_fork(void)
{
	uint64_t h0 = file_hash();
	unsigned char *m = map(PROT_READ | PROT_WRITE);
	int status;
	pid_t pid;

	for (size_t k = 0; k < npages; k++)
		scribble(m, (size_t)(rng() % npages));
	check("before fork", m, 0, npages);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		/* The child reads the file, not the mapping, and exits. */
		_exit(file_hash() == h0 ? 0 : 3);
	}
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("FAIL the child: status %#x\n", status);
		exit(1);
	}
	for (size_t k = 0; k < npages / 2; k++)
		scribble(m, (size_t)(rng() % npages));
	check("after the child exited", m, 0, npages);
	if (munmap(m, size) < 0)
		die("munmap");
	check_file("after munmap", h0);
	printf("fork: child ran; map = model %016llx; file unchanged\n",
	       (unsigned long long)fnv(model, size, 0xcbf29ce484222325ull));
}

struct worker {
	pthread_t t;
	unsigned char *m;
	size_t k;          /* this thread's pages are k, k + 4, k + 8, ... */
	uint64_t rng;      /* its own generator: the writes do not depend on timing */
	int bad;           /* first page that read back wrong + 1, or 0 */
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (int round = 0; round < 2; round++) {
		for (size_t pg = w->k; pg < npages; pg += 4) {
			uint64_t x = w->rng;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			w->rng = x;
			for (size_t i = 0; i < PG; i += 64) {
				w->m[pg * PG + i] = (unsigned char)(x >> (i % 56));
				model[pg * PG + i] = (unsigned char)(x >> (i % 56));
			}
		}
		for (size_t pg = w->k; pg < npages && !w->bad; pg += 4)
			if (memcmp(w->m + pg * PG, model + pg * PG, PG))
				w->bad = (int)pg + 1;
	}
	return NULL;
}

static void mode_threads(void)
{
	uint64_t h0 = file_hash();
	unsigned char *m = map(PROT_READ | PROT_WRITE);
	struct worker w[4];

	for (size_t k = 0; k < 4; k++) {
		w[k] = (struct worker){ .m = m, .k = k, .rng = 0x9e3779b97f4a7c15ull * (k + 1) };
		if (pthread_create(&w[k].t, NULL, worker_main, &w[k]))
			die("pthread_create");
	}
	for (size_t k = 0; k < 4; k++) {
		pthread_join(w[k].t, NULL);
		if (w[k].bad) {
			printf("FAIL thread %zu: page %d read back wrong\n", k, w[k].bad - 1);
			exit(1);
		}
	}
	check("after the threads", m, 0, npages);
	if (munmap(m, size) < 0)
		die("munmap");
	check_file("after munmap", h0);
	printf("threads: 4 threads, %zu pages; map = model %016llx; file unchanged\n", npages,
	       (unsigned long long)fnv(model, size, 0xcbf29ce484222325ull));
}

static sigjmp_buf bus_jump;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(bus_jump, 1);
}

/* Read one byte of page pg, or -1 if that raises SIGBUS.  Not inlined:
 * the caller's variables must not live in the frame siglongjmp returns to. */
static __attribute__((noinline)) int probe(volatile unsigned char *m, size_t pg)
{
	if (sigsetjmp(bus_jump, 1))
		return -1;
	return m[pg * PG];
}

static void mode_truncate(void)
{
	unsigned char *m = map(PROT_READ | PROT_WRITE);
	size_t end = (npages / 2) * PG + 100, bus = 0, first = npages / 2 + 1;
	struct sigaction sa;

	for (size_t pg = 0; pg < npages; pg++)
		scribble(m, pg);
	check("written", m, 0, npages);
	if (ftruncate(fd, (off_t)end) < 0)
		die("ftruncate");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	if (sigaction(SIGBUS, &sa, NULL) < 0)
		die("sigaction");
	for (size_t pg = first; pg < npages; pg++)
		bus += probe(m, pg) < 0;
	/* A SIGBUS from now on is a failure, never a jump into a dead frame. */
	sa.sa_handler = SIG_DFL;
	if (sigaction(SIGBUS, &sa, NULL) < 0)
		die("sigaction");
	/* Below the end, including the page holding it, the copies stay. */
	check("below the new end", m, 0, first);
	if (munmap(m, size) < 0)
		die("munmap");
	printf("truncate: %zu of %zu pages past the end raised SIGBUS; below it map = model %016llx\n", bus,
	       npages - first, (unsigned long long)fnv(model, first * PG, 0xcbf29ce484222325ull));
}

static void mode_exit(void)
{
	unsigned char *m = map(PROT_READ | PROT_WRITE);

	for (size_t pg = 0; pg < npages; pg++)
		scribble(m, pg);
	check("written", m, 0, npages);
	printf("exit: map = model %016llx; exiting with the mapping in place\n",
	       (unsigned long long)fnv(model, size, 0xcbf29ce484222325ull));
	exit(0);
}

int main(int argc, char **argv)
{
	struct stat st;

	if (argc != 3) {
		fprintf(stderr, "usage: %s FILE random|dontneed|mremap|mprotect|pwrite|fork|exit|truncate|threads\n", argv[0]);
		return 2;
	}
	file = argv[1];
	fd = open(file, O_RDWR);
	if (fd < 0 || fstat(fd, &st) < 0)
		die(file);
	size = (size_t)st.st_size & ~(size_t)(PG - 1);
	npages = size / PG;
	if (npages < 16) {
		printf("FAIL %s: needs at least 16 pages\n", file);
		return 1;
	}
	model_load();
	if (!strcmp(argv[2], "random"))
		mode_random();
	else if (!strcmp(argv[2], "dontneed"))
		mode_dontneed();
	else if (!strcmp(argv[2], "mremap"))
		mode_mremap();
	else if (!strcmp(argv[2], "mprotect"))
		mode_mprotect();
	else if (!strcmp(argv[2], "pwrite"))
		mode_pwrite();
	else if (!strcmp(argv[2], "fork"))
		mode_fork();
	else if (!strcmp(argv[2], "exit"))
		mode_exit();
	else if (!strcmp(argv[2], "truncate"))
		mode_truncate();
	else if (!strcmp(argv[2], "threads"))
		mode_threads();
	else
		return 2;
	return 0;
}
