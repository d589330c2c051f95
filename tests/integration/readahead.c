/*
 * readahead - read-ahead follows streams and stays away from random access.
 *
 * Each case maps a fresh file (4 KiB pages, read-ahead up to 32 pages,
 * budget far above the data unless said) and checks every byte read:
 *   up        a scan upward: at most a quarter of the pages fault, and
 *             read-ahead pages are counted as hits
 *   down      a scan downward (quicksort's cursors): the same
 *   two       two cursors, in the two halves, moving up in turn: both
 *             streams are followed (one stream slot each)
 *   random    random pages: read-ahead brings (almost) nothing
 *   wasted    a short scan, then (once the read-ahead is installed)
 *             umapd_evict: the pages read ahead and never touched are
 *             counted as wasted
 *   rmw       a scan that reads and then rewrites every page: once the stream
 *             shows it dirties what it reads, read-ahead installs pages
 *             writable, so at most a quarter of the pages take a
 *             write-protect fault; the file holds every new byte after unmap
 *   checker   every other page resident (read with UMAPD_ADV_RANDOM), then
 *             a scan: the pages in between are read ahead, a few faults
 *             for 1024 absent pages (windows used to end at the first
 *             resident page, and the scan faulted on every absent one)
 *   loop      four laps over data 4x the budget: each lap after the
 *             first faults as little as it did
 *   tight     UMAPD_ADV_SEQUENTIAL over three regions at once with a budget
 *             of 64 pages of 64 KiB (windows of 32 pages each): read-ahead must
 *             not push out the pages in use; examples/stream stalled like this
 *             when a fault and its read-ahead were one fill (this case guards
 *             it; it does not reproduce the old stall by itself)
 */
#include "umapd_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define NP 2048

static struct umapd_stats region_stats(void *p)
{
	struct umapd_stats s;
	T_OK(umapd_region_stats(p, &s));
	return s;
}

static uint8_t *map_file(int fd, size_t len, size_t page, long ra)
{
	struct umapd_region_opts o = { .page_size = page, .read_ahead = ra };
	uint8_t *p = umapd_map(NULL, len, PROT_READ, 0, fd, 0, &o);
	T_CHECK(p != NULL, "umapd_map: %s", t_errname(errno));
	return p;
}

/* Wait until n pages of p are in its page tables (all of them in the first
 * 64, as the pages filled so far are). */
static void wait_installed(uint8_t *p, size_t ps, size_t n)
{
	unsigned char vec[64];

	T_CHECK(n <= sizeof vec, "wait_installed: %zu pages", n);
	for (int tries = 0;; tries++) {
		size_t in = 0;

		T_CHECK(mincore(p, sizeof vec * ps, vec) == 0, "mincore: %s", t_errname(errno));
		for (size_t i = 0; i < sizeof vec; i++)
			in += vec[i] & 1;
		if (in == n)
			return;
		T_CHECK(tries < 5000, "read-ahead: %zu of %zu pages installed after 5 s", in, n);
		usleep(1000);
	}
}

static void read_page(const uint8_t *p, size_t i, size_t ps, uint32_t seed)
{
	t_check_pat("page read", p + i * ps, ps, i * ps, seed);
}

int main(void)
{
	size_t ps = t_sys_page(), len = NP * ps;
	struct umapd_stats s;
	int fd = t_tmpfile(NULL);

	t_init("readahead", 60);
	t_write_file_pat(fd, 0, len, 3);
	T_OK(umapd_config_set("UMAPD_BUFSIZE", "256M"));

	t_step("up");
	uint8_t *p = map_file(fd, len, ps, 32);
	for (size_t i = 0; i < NP; i++)
		read_page(p, i, ps, 3);
	s = region_stats(p);
	T_CHECK(s.faults <= NP / 4, "up: %llu faults for %d pages", (unsigned long long)s.faults, NP);
	T_CHECK(s.readahead_hits >= NP / 2, "up: %llu read-ahead hits (read ahead %llu)",
		(unsigned long long)s.readahead_hits, (unsigned long long)s.readahead_pages);
	uint64_t up_faults = s.faults;
	t_unmap(p);

	t_step("down");
	p = map_file(fd, len, ps, 32);
	for (size_t i = NP; i-- > 0;)
		read_page(p, i, ps, 3);
	s = region_stats(p);
	T_CHECK(s.faults <= NP / 4, "down: %llu faults for %d pages", (unsigned long long)s.faults, NP);
	T_CHECK(s.readahead_hits >= NP / 2, "down: %llu read-ahead hits", (unsigned long long)s.readahead_hits);
	uint64_t down_faults = s.faults;
	t_unmap(p);

	t_step("two");
	p = map_file(fd, len, ps, 32);
	for (size_t i = 0; i < NP / 2; i++) {
		read_page(p, i, ps, 3);
		read_page(p, NP / 2 + i, ps, 3);
	}
	s = region_stats(p);
	T_CHECK(s.faults <= NP / 4, "two streams: %llu faults for %d pages", (unsigned long long)s.faults, NP);
	t_unmap(p);

	t_step("random");
	p = map_file(fd, len, ps, 32);
	uint64_t x = 12345;
	for (size_t k = 0; k < NP / 2; k++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		read_page(p, (size_t)(x >> 33) % NP, ps, 3);
	}
	s = region_stats(p);
	T_CHECK(s.readahead_pages * 10 <= s.faults, "random: %llu pages read ahead for %llu faults",
		(unsigned long long)s.readahead_pages, (unsigned long long)s.faults);
	t_unmap(p);

	t_step("wasted");
	p = map_file(fd, len, ps, 32);
	for (size_t i = 0; i < 3; i++)
		read_page(p, i, ps, 3);
	/* The read-ahead is asynchronous: let it land first, or the eviction
	 * passes over pages still being filled and finds nothing to waste. */
	wait_installed(p, ps, region_stats(p).fills);
	T_OK(umapd_evict(p, len));
	s = region_stats(p);
	T_CHECK(s.readahead_pages > 0 && s.readahead_wasted > 0 && s.readahead_wasted <= s.readahead_pages,
		"wasted: read ahead %llu, wasted %llu, hits %llu", (unsigned long long)s.readahead_pages,
		(unsigned long long)s.readahead_wasted, (unsigned long long)s.readahead_hits);
	t_unmap(p);

	t_step("rmw");
	{
		int wfd = t_tmpfile(NULL);
		t_write_file_pat(wfd, 0, len, 4);
		struct umapd_region_opts o = { .page_size = ps, .read_ahead = 32 };
		uint8_t *w = umapd_map(NULL, len, PROT_READ | PROT_WRITE, 0, wfd, 0, &o);
		T_CHECK(w != NULL, "umapd_map rw: %s", t_errname(errno));
		for (size_t i = 0; i < NP; i++) {
			t_check_pat("rmw read", w + i * ps, ps, i * ps, 4);
			t_fill_pat(w + i * ps, ps, i * ps, 5);
		}
		s = region_stats(w);
		T_CHECK(s.wp_faults <= NP / 4, "rmw: %llu write-protect faults for %d pages rewritten",
			(unsigned long long)s.wp_faults, NP);
		t_unmap(w);
		t_check_file_pat("rmw: file after unmap", wfd, 0, len, 5);
		close(wfd);
	}

	t_step("checker: every other page resident, then a scan");
	p = map_file(fd, len, ps, 32);
	T_OK(umapd_advise(p, len, UMAPD_ADV_RANDOM));
	for (size_t i = 0; i < NP; i += 2)
		read_page(p, i, ps, 3);
	T_OK(umapd_advise(p, len, UMAPD_ADV_NORMAL));
	uint64_t before = region_stats(p).faults;
	for (size_t i = 0; i < NP; i++)
		read_page(p, i, ps, 3);
	s = region_stats(p);
	/* NP/2 absent pages; a stream that stopped at every resident page
	 * faulted on each of them. */
	T_CHECK(s.faults - before <= NP / 8, "checker: %llu faults for %d absent pages",
		(unsigned long long)(s.faults - before), NP / 2);
	t_unmap(p);

	t_step("loop: four laps over data 4x the budget");
	T_OK(umapd_config_set("UMAPD_BUFSIZE", "2M")); /* 512 pages of 4K: windows of 32 */
	{
		size_t lp = 4 * 512, llen = lp * ps;
		int lfd = t_tmpfile(NULL);
		uint64_t lap_faults[4];

		t_write_file_pat(lfd, 0, llen, 6);
		p = map_file(lfd, llen, ps, 32);
		for (int lap = 0; lap < 4; lap++) {
			uint64_t f0 = region_stats(p).faults;

			for (size_t i = 0; i < lp; i++)
				t_check_pat("loop", p + i * ps, ps, i * ps, 6);
			lap_faults[lap] = region_stats(p).faults - f0;
		}
		/* Every lap reads ahead as the first did, though the evictor
		 * works all along and leaves faulted pages behind longer than
		 * read-ahead ones. */
		for (int lap = 1; lap < 4; lap++)
			T_CHECK(lap_faults[lap] <= lp / 8, "loop: lap %d took %llu faults for %zu pages (first lap %llu)",
				lap + 1, (unsigned long long)lap_faults[lap], lp, (unsigned long long)lap_faults[0]);
		t_unmap(p);
		close(lfd);
	}

	t_step("tight: three regions, ADV_SEQUENTIAL, budget of 64 pages of 64K");
	size_t big = 64 * 1024, rlen = 256 * big;
	int fds[3];
	uint8_t *r[3];
	T_OK(umapd_config_set("UMAPD_BUFSIZE", "4M"));
	for (int k = 0; k < 3; k++) {
		fds[k] = t_tmpfile(NULL);
		t_write_file_pat(fds[k], 0, rlen, 10 + (uint32_t)k);
		r[k] = map_file(fds[k], rlen, big, 0);
		T_OK(umapd_advise(r[k], rlen, UMAPD_ADV_SEQUENTIAL));
	}
	for (int pass = 0; pass < 2; pass++)
		for (size_t off = 0; off < rlen; off += ps)
			for (int k = 0; k < 3; k++)
				t_check_pat("tight", r[k] + off, ps, off, 10 + (uint32_t)k);
	for (int k = 0; k < 3; k++) {
		t_unmap(r[k]);
		close(fds[k]);
	}
	t_pass("up %llu and down %llu faults for %d pages, two streams followed, random reads nothing ahead, "
	       "unused read-ahead counted as wasted, a rewriting stream reads ahead writable, ADV_SEQUENTIAL under a tiny budget finishes",
	       (unsigned long long)up_faults, (unsigned long long)down_faults, NP);
}
