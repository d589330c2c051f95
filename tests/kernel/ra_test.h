/*
 * ra_test.h - set-up shared by the read-ahead tests (kernel.ra_marker,
 * kernel.ra_budget), which look into the engine (built INTERNAL).
 */
#ifndef UMAPD_RA_TEST_H
#define UMAPD_RA_TEST_H

#include "umapd_test.h"

#include "engine/engine.h"

#include <umapd_store.h>

#include <sys/mman.h>

/* The engine's region at p (its counters outlive the reference). */
static inline struct eng_region *ra_test_region(void *p)
{
	struct eng_region *r = rg_get((uintptr_t)p);

	T_CHECK(r != NULL, "no region at %p", p);
	rg_put(r);
	return r;
}

/*
 * A region of np pages over a new memory store, read-ahead windows of
 * window pages, whose byte `at` of every page holds t_pat(its offset,
 * seed), written through the region, flushed and evicted: nothing of it is
 * resident, the store holds the pattern.
 */
static inline uint8_t *ra_test_map_pattern(size_t np, long window, size_t at, uint32_t seed)
{
	size_t ps = t_sys_page();
	struct umapd_store *st;
	struct umapd_region_opts o = { .page_size = ps, .read_ahead = window };
	uint8_t *m;

	T_OK(umapd_store_memory((uint64_t)np * ps, (uint64_t)np * ps, &st));
	m = umapd_map_store(NULL, np * ps, PROT_READ | PROT_WRITE, 0, st, 0, &o);
	T_CHECK(m != NULL, "umapd_map_store: %s", t_errname(errno));
	for (size_t i = 0; i < np; i++)
		m[i * ps + at] = t_pat(i * ps + at, seed);
	T_OK(umapd_flush(m, np * ps));
	T_OK(umapd_evict(m, np * ps));
	return m;
}

#endif
