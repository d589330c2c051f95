/*
 * rmw_detect - random read-modify-write is recognised, and only it.
 *
 * A read miss is installed write-protected; if the application then writes
 * the page, that is a second fault and an unprotect (lib/engine/rmw.c).
 * Data 4x the budget, 4 KiB pages, random pages:
 *   rmw        read a byte of a random page, check it, add one: once the
 *              region has shown that it writes what it reads, read misses
 *              are installed dirty, so in the second half of the run at most
 *              a third of the read misses are followed by a write-protect
 *              fault (before rmw.c every one was); every byte checked on
 *              the way and in the file after unmap
 *   readonly   the same random reads on a fresh mapping, no writes: nothing
 *              is installed dirty, nothing written back
 *   change     the rmw mapping, then only reads: the region gives dirty
 *              installs up, so in the last of four laps almost no page is
 *              installed dirty or written back
 */
#include "umapd_test.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NP 2048            /* pages of data */
#define BUDGET_PAGES 512   /* the budget, in pages */
#define SEED 11

static size_t ps;
static uint8_t counts[NP]; /* increments of page p's byte, mod 256 */

static size_t byte_of(size_t p)
{
	return (p * 37 + 5) % ps;
}

static uint8_t expected(size_t p)
{
	return (uint8_t)(t_pat(p * ps + byte_of(p), SEED) + counts[p]);
}

static struct umapd_stats rstats(void *p)
{
	struct umapd_stats s;

	T_OK(umapd_region_stats(p, &s));
	return s;
}

static uint64_t rnd(uint64_t *x)
{
	*x = *x * 6364136223846793005ull + 1442695040888963407ull;
	return *x >> 33;
}

/* n random operations; with write, each adds one to its page's byte. */
static void run(uint8_t *m, size_t n, bool write, uint64_t *x)
{
	for (size_t k = 0; k < n; k++) {
		size_t p = (size_t)(rnd(x) % NP);
		volatile uint8_t *b = m + p * ps + byte_of(p);
		uint8_t got = *b;

		T_CHECK(got == expected(p), "page %zu byte %zu: %#x, expected %#x", p, byte_of(p), got, expected(p));
		if (write) {
			*b = (uint8_t)(got + 1);
			counts[p]++;
		}
	}
}

/* The file after unmap: each page's byte carries its increments, every
 * other byte is the pattern. */
static void check_file(int fd)
{
	uint8_t *buf = malloc(ps), *want = malloc(ps);

	T_CHECK(buf && want, "out of memory");
	for (size_t p = 0; p < NP; p++) {
		t_pread_all(fd, buf, ps, (off_t)(p * ps));
		t_fill_pat(want, ps, p * ps, SEED);
		want[byte_of(p)] = expected(p);
		t_check_bytes("file after unmap", buf, want, ps, p * ps);
	}
	free(buf);
	free(want);
}

int main(void)
{
	int fd = t_tmpfile(NULL), fd2 = t_tmpfile(NULL);
	uint64_t x = 42;
	char budget[32];

	t_init("rmw_detect", 120);
	ps = t_sys_page();
	t_write_file_pat(fd, 0, NP * ps, SEED);
	t_write_file_pat(fd2, 0, NP * ps, SEED);
	snprintf(budget, sizeof budget, "%zu", BUDGET_PAGES * ps);
	T_OK(umapd_config_set("UMAPD_BUFSIZE", budget));
	t_umapd_start();

	t_step("rmw");
	uint8_t *m = t_map(NP * ps, PROT_READ | PROT_WRITE, 0, fd, 0, ps, 0);
	run(m, 4 * NP, true, &x);
	struct umapd_stats a = rstats(m);
	run(m, 4 * NP, true, &x);
	struct umapd_stats b = rstats(m);
	uint64_t misses = b.read_faults - a.read_faults, wps = b.wp_faults - a.wp_faults;

	if (b.wp_faults == 0 && b.rmw_installs == 0)
		t_skip("no write-protect faults: this kernel or region has no userfaultfd write protection");
	T_CHECK(misses > NP, "rmw: only %llu read misses in the second half", (unsigned long long)misses);
	T_CHECK(wps * 3 <= misses, "rmw: %llu write-protect faults for %llu read misses (installed dirty: %llu)",
		(unsigned long long)wps, (unsigned long long)misses,
		(unsigned long long)(b.rmw_installs - a.rmw_installs));
	T_CHECK(b.rmw_installs > a.rmw_installs, "rmw: no read miss installed dirty");
	printf("rmw: second half: %llu read misses, %llu write-protect faults, %llu installed dirty\n",
	       (unsigned long long)misses, (unsigned long long)wps,
	       (unsigned long long)(b.rmw_installs - a.rmw_installs));

	t_step("readonly");
	uint8_t *r = t_map(NP * ps, PROT_READ | PROT_WRITE, 0, fd2, 0, ps, 0);
	uint8_t saved[NP];
	memcpy(saved, counts, sizeof saved);
	memset(counts, 0, sizeof counts);
	run(r, 8 * NP, false, &x);
	struct umapd_stats c = rstats(r);
	T_CHECK(c.read_faults > NP, "readonly: only %llu read misses", (unsigned long long)c.read_faults);
	T_CHECK(c.rmw_installs == 0 && c.dirty_evictions == 0 && c.bytes_written == 0,
		"readonly: %llu installed dirty, %llu dirty evictions, %llu bytes written",
		(unsigned long long)c.rmw_installs, (unsigned long long)c.dirty_evictions,
		(unsigned long long)c.bytes_written);
	t_unmap(r);
	memcpy(counts, saved, sizeof saved);

	t_step("change: reads only on the rmw mapping");
	struct umapd_stats d = rstats(m), e = d;
	for (int lap = 0; lap < 4; lap++) {
		d = e;
		run(m, 4 * NP, false, &x);
		e = rstats(m);
	}
	misses = e.read_faults - d.read_faults;
	T_CHECK((e.rmw_installs - d.rmw_installs) * 20 <= misses,
		"change: last lap installed %llu of %llu read misses dirty",
		(unsigned long long)(e.rmw_installs - d.rmw_installs), (unsigned long long)misses);
	T_CHECK((e.dirty_evictions - d.dirty_evictions) * 20 <= e.evictions - d.evictions,
		"change: last lap wrote back %llu of %llu evicted pages",
		(unsigned long long)(e.dirty_evictions - d.dirty_evictions),
		(unsigned long long)(e.evictions - d.evictions));

	t_unmap(m);
	check_file(fd);
	close(fd);
	close(fd2);
	t_pass("random read-modify-write installed dirty, read-only random access not");
}
