/*
 * ra_budget - a scan that never misses still gets its read-ahead: the
 * pages its markers reserve wake the evictors once they pass the high mark.
 *
 * A scan whose read-ahead keeps ahead of it faults only on markers
 * (lib/engine/readahead.c), and only a miss used to wake the evictors.
 * Each marker's window raised the resident bytes past the high mark to
 * the budget, where the next markers found no room: their windows were
 * cut short or not read, until the evictors' 20 ms timer or a miss.
 * bench_io's O_DIRECT scan hit the budget once per eviction cycle that
 * way, and lost a window each time.
 *
 * Budget 4 MiB (1024 pages), high mark 80%, low 40%; a memory store of
 * 16384 pages; windows of 64 pages.  One pass up the region reads a byte
 * of every page and checks it, pausing 125 us every 8 pages (some 50,000
 * pages a second: from the low mark to the budget takes about 12 ms, under
 * the evictors' 20 ms timer, and the 20% above the high mark leaves the
 * woken evictors about 4 ms).  The engine counts the windows the budget
 * cut or refused (ra_budget_cut).  With the evictors woken at the high
 * mark it stays at 0 (also with the rest of the suite running beside it;
 * 2 once in the ThreadSanitizer build so loaded), and at most 6 pass;
 * without, 14-17 of the scan's ~25 eviction cycles cut one.
 */
#include "ra_test.h"

#include <stdio.h>
#include <time.h>

#define NP 16384
#define WINDOW 64
#define SEED 23

int main(void)
{
	size_t ps = t_sys_page();
	struct timespec pause = { 0, 125 * 1000 };

	t_init("ra_budget", 60);
	T_OK(umapd_config_set("UMAPD_BUFSIZE", "4M"));
	T_OK(umapd_config_set("UMAPD_LOW_WATER", "40"));
	T_OK(umapd_config_set("UMAPD_HIGH_WATER", "80"));
	t_umapd_start();

	t_step("fill a memory store of %d pages through a region", NP);
	uint8_t *m = ra_test_map_pattern(NP, WINDOW, 3, SEED);

	t_step("a paced scan, 8 times the budget");
	struct eng_region *r = ra_test_region(m);
	uint64_t cut0 = atomic_load(&r->c.ra_budget_cut), marks0 = atomic_load(&r->c.ra_marks);
	struct umapd_stats a, b;

	T_OK(umapd_region_stats(m, &a));
	for (size_t i = 0; i < NP; i++) {
		uint8_t got = ((volatile uint8_t *)m)[i * ps + 3];

		T_CHECK(got == t_pat(i * ps + 3, SEED), "page %zu: %#x, expected %#x", i, got, t_pat(i * ps + 3, SEED));
		if (i % 8 == 7)
			nanosleep(&pause, NULL);
	}
	T_OK(umapd_region_stats(m, &b));
	uint64_t cut = atomic_load(&r->c.ra_budget_cut) - cut0, marks = atomic_load(&r->c.ra_marks) - marks0;
	uint64_t evicted = b.evictions - a.evictions;

	printf("scan of %d pages, budget 1024 pages: %llu marker faults, %llu pages evicted, %llu read-ahead "
	       "windows cut by the budget\n",
	       NP, (unsigned long long)marks, (unsigned long long)evicted, (unsigned long long)cut);
	T_CHECK(evicted >= NP / 2, "only %llu pages evicted in a scan of %d pages over a budget of 1024",
		(unsigned long long)evicted, NP);
	T_CHECK(marks >= NP / WINDOW / 2, "only %llu marker faults for %d windows: the scan did not run on markers",
		(unsigned long long)marks, NP / WINDOW);
	T_CHECK(cut <= 6, "%llu read-ahead windows found the budget full: the evictors were not woken at the high mark",
		(unsigned long long)cut);
	t_unmap(m);
	t_pass("%llu marker faults, %llu windows cut by the budget", (unsigned long long)marks,
	       (unsigned long long)cut);
}
