/*
 * Page descriptors: a slab of 48-byte records, a per-region chained hash
 * keyed by page number, and the CLOCK ring through all resident pages.
 * Only resident pages have descriptors, so a region costs nothing per page
 * it does not hold.  Everything here runs under eng.lock.
 */
#include <errno.h>
#include <stdlib.h>

#include "engine/engine.h"

#define SLAB_PAGES 1024 /* descriptors per slab block */

static int slab_grow(void)
{
	struct eng_page *blk = calloc(SLAB_PAGES, sizeof(*blk));

	if (!blk)
		return -ENOMEM;
	for (size_t i = 0; i < SLAB_PAGES; i++) {
		blk[i].hnext = eng.free_pages;
		eng.free_pages = &blk[i];
	}
	eng.slab_bytes += SLAB_PAGES * sizeof(*blk);
	atomic_store_explicit(&eng.meta_now, eng.slab_bytes + eng.bucket_bytes, memory_order_relaxed);
	return 0;
}

static inline uint64_t hash_slot(const struct eng_region *r, uint64_t index)
{
	return (index * 0x9E3779B97F4A7C15ull) >> 7 & (r->nbuckets - 1);
}

/* Double the bucket array once the load passes one page per bucket. */
static int hash_grow(struct eng_region *r)
{
	uint64_t n = r->nbuckets ? r->nbuckets * 2 : 16;
	struct eng_page **nb = calloc(n, sizeof(*nb));
	uint64_t old = r->nbuckets;
	struct eng_page **ob = r->buckets;

	if (!nb)
		return -ENOMEM;
	r->buckets = nb;
	r->nbuckets = n;
	for (uint64_t i = 0; i < old; i++) {
		struct eng_page *p = ob[i], *next;

		for (; p; p = next) {
			uint64_t s = hash_slot(r, p->index);

			next = p->hnext;
			p->hnext = nb[s];
			nb[s] = p;
		}
	}
	free(ob);
	eng.bucket_bytes += (n - old) * sizeof(*nb);
	atomic_store_explicit(&eng.meta_now, eng.slab_bytes + eng.bucket_bytes, memory_order_relaxed);
	return 0;
}

struct eng_page *pg_lookup(struct eng_region *r, uint64_t index)
{
	struct eng_page *p;

	if (r->nbuckets == 0)
		return NULL;
	for (p = r->buckets[hash_slot(r, index)]; p; p = p->hnext)
		if (p->index == index)
			return p;
	return NULL;
}

struct eng_page *pg_insert(struct eng_region *r, uint64_t index)
{
	struct eng_page *p;
	uint64_t s;

	if (r->nresident + 1 > r->nbuckets && hash_grow(r) < 0 && r->nbuckets == 0)
		return NULL;
	if (!eng.free_pages && slab_grow() < 0)
		return NULL;
	p = eng.free_pages;
	eng.free_pages = p->hnext;
	*p = (struct eng_page){ .region = r, .index = index, .state = PG_FILLING, .referenced = 1 };
	s = hash_slot(r, index);
	p->hnext = r->buckets[s];
	r->buckets[s] = p;

	/* New pages go just behind the hand: the last place it will look. */
	if (!eng.hand) {
		p->cprev = p->cnext = p;
		eng.hand = p;
	} else {
		p->cnext = eng.hand;
		p->cprev = eng.hand->cprev;
		p->cprev->cnext = p;
		eng.hand->cprev = p;
	}
	r->nresident++;
	eng.resident_bytes += r->psize;
	atomic_store_explicit(&eng.resident_now, eng.resident_bytes, memory_order_relaxed);
	return p;
}

void pg_set_state(struct eng_page *p, uint8_t state)
{
	struct eng_region *r = p->region;
	bool was = p->state == PG_DIRTY, is = state == PG_DIRTY;

	/* dirty_bytes counts pages holding data newer than the store: DIRTY,
	 * and WRITEBACK/EVICTING of a dirty page until its write lands. */
	if (pg_busy(p->state) && p->was_dirty)
		was = true;
	if (pg_busy(state) && p->was_dirty)
		is = true;
	if (was != is) {
		if (is) {
			r->ndirty++;
			eng.dirty_bytes += r->psize;
		} else {
			r->ndirty--;
			eng.dirty_bytes -= r->psize;
		}
		atomic_store_explicit(&eng.dirty_now, eng.dirty_bytes, memory_order_relaxed);
	}
	p->state = state;
}

void pg_remove(struct eng_page *p)
{
	struct eng_region *r = p->region;
	struct eng_page **pp = &r->buckets[hash_slot(r, p->index)];

	pg_set_state(p, PG_CLEAN); /* settle the dirty count */
	while (*pp != p)
		pp = &(*pp)->hnext;
	*pp = p->hnext;

	if (p->cnext == p) {
		eng.hand = NULL;
	} else {
		p->cprev->cnext = p->cnext;
		p->cnext->cprev = p->cprev;
		if (eng.hand == p)
			eng.hand = p->cnext;
	}
	r->nresident--;
	eng.resident_bytes -= r->psize;
	atomic_store_explicit(&eng.resident_now, eng.resident_bytes, memory_order_relaxed);
	p->region = NULL;
	p->hnext = eng.free_pages;
	eng.free_pages = p;
}

void pg_for_range(struct eng_region *r, uint64_t first, uint64_t end,
		  void (*fn)(struct eng_page *p, void *arg), void *arg)
{
	if (end > r->npages)
		end = r->npages;
	if (first >= end || r->nresident == 0)
		return;
	/* Walk whichever is smaller: the range, or the region's resident pages.
	 * fn may remove the page it is given but no other. */
	if (end - first <= r->nresident) {
		for (uint64_t i = first; i < end; i++) {
			struct eng_page *p = pg_lookup(r, i);

			if (p)
				fn(p, arg);
		}
		return;
	}
	for (uint64_t b = 0; b < r->nbuckets; b++) {
		struct eng_page *p = r->buckets[b], *next;

		for (; p; p = next) {
			next = p->hnext;
			if (p->index >= first && p->index < end)
				fn(p, arg);
		}
	}
}

size_t pg_len(const struct eng_region *r, uint64_t index)
{
	uint64_t start = index << r->pshift;

	return r->len - start < r->psize ? r->len - start : r->psize;
}
