/*
 * ra_marker - a scan that the store outruns still finds its next window
 * read before it gets there.
 *
 * Pages the read-ahead installs take no faults, so the engine used to
 * learn where a scan was only when the scan missed at the end of the
 * read-ahead, and the device sat idle until then.  Now the middle page of
 * each window is held back (a marker, lib/engine/readahead.c): its fault
 * is served from bytes kept aside and reads the next window.
 *
 * A memory store of 16384 pages (reads are a memcpy: the store always
 * outruns the scan), windows of 64 pages, a budget far above the data.
 * One pass up the region reads one byte of every page and checks it.
 * Without markers the scan missed at nearly every window's end (a few
 * hundred misses); with them the misses (faults that had to read their own
 * page) stay at most one per two windows, the marker faults are about one per window, and
 * every byte read is right.  Then a second region, written through while
 * its markers are outstanding and flushed, checks that a marker's first
 * access can be a write (DIRTY, in the store after umapd_flush).
 */
#include "ra_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NP 16384
#define WINDOW 64
#define SEED 17

int main(void)
{
	size_t ps = t_sys_page();
	struct umapd_store *st2;
	struct umapd_region_opts o = { .page_size = ps, .read_ahead = WINDOW };

	t_init("ra_marker", 60);
	T_OK(umapd_config_set("UMAPD_BUFSIZE", "512M"));
	t_umapd_start();

	t_step("a scan over a memory store");
	uint8_t *m = ra_test_map_pattern(NP, WINDOW, 1, SEED);
	struct eng_region *r = ra_test_region(m);
	struct umapd_stats a, b;
	uint64_t marks0 = atomic_load(&r->c.ra_marks);

	T_OK(umapd_region_stats(m, &a));
	for (size_t i = 0; i < NP; i++) {
		uint8_t got = ((volatile uint8_t *)m)[i * ps + 1];

		T_CHECK(got == t_pat(i * ps + 1, SEED), "page %zu: %#x, expected %#x", i, got, t_pat(i * ps + 1, SEED));
	}
	T_OK(umapd_region_stats(m, &b));
	/* A miss: a fault whose own page had to be read (a fill that is not
	 * read-ahead).  A fault on a page still being read ahead is not one. */
	uint64_t faults = b.read_faults - a.read_faults, marks = atomic_load(&r->c.ra_marks) - marks0;
	uint64_t misses = (b.fills - a.fills) - (b.readahead_pages - a.readahead_pages);

	printf("scan of %d pages, windows of %d: %llu read faults, %llu on markers, %llu misses\n", NP, WINDOW,
	       (unsigned long long)faults, (unsigned long long)marks, (unsigned long long)misses);
	/* Quiet: 5-6 misses (the windows below 64 pages, which get no
	 * marker); with both CPUs busy elsewhere up to 68 were seen. */
	T_CHECK(misses <= NP / WINDOW / 2, "%llu misses (faults that read their own page) in a scan of %d pages with windows of %d",
		(unsigned long long)misses, NP, WINDOW);
	T_CHECK(marks >= NP / WINDOW / 2, "only %llu marker faults for %d windows", (unsigned long long)marks,
		NP / WINDOW);
	(void)faults;
	t_unmap(m);

	t_step("a marker's first access is a write");
	T_OK(umapd_store_memory((uint64_t)NP * ps, (uint64_t)NP * ps, &st2));
	m = umapd_map_store(NULL, NP * ps, PROT_READ | PROT_WRITE, 0, st2, 0, &o);
	T_CHECK(m != NULL, "umapd_map_store: %s", t_errname(errno));
	/* Read the first byte of each page, write the second: a marker takes
	 * the read; so read every other page first and write the others,
	 * which leaves some markers to be met by a write. */
	for (size_t i = 0; i < NP; i++) {
		if (i % 2)
			m[i * ps + 2] = 0x5a;
		else
			T_CHECK(((volatile uint8_t *)m)[i * ps] == 0, "page %zu is not zero", i);
	}
	T_OK(umapd_flush(m, NP * ps));
	T_OK(umapd_evict(m, NP * ps));
	for (size_t i = 0; i < NP; i++)
		T_CHECK(((volatile uint8_t *)m)[i * ps + 2] == (i % 2 ? 0x5a : 0), "page %zu byte 2: %#x after flush and evict",
			i, m[i * ps + 2]);
	t_unmap(m);
	t_pass("%llu misses and %llu marker faults for %d pages in windows of %d", (unsigned long long)misses,
	       (unsigned long long)marks, NP, WINDOW);
}
