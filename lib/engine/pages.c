/*
 * Page descriptors: a slab of 48-byte records, a per-region chained hash
 * keyed by page number, and the CLOCK ring through all resident pages.
 * Only resident pages have descriptors, so a region costs nothing per page
 * it does not hold.  Everything here runs under eng.lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "engine/engine.h"

/*
 * The slab: 16 KiB blocks aligned to their size, so a descriptor finds its
 * block by masking its address.  Blocks with free descriptors are on a
 * list; a block that becomes wholly free is returned to the allocator
 * unless it is the only one with room, so engine memory follows the number
 * of resident pages down as well as up.
 */
#define SLAB_BLOCK ((size_t)16 << 10)

struct slab_blk {
	struct slab_blk *prev, *next; /* blocks with free descriptors */
	struct eng_page *free;
	uint32_t nfree;
};

#define SLAB_FIRST ((sizeof(struct slab_blk) + 63) & ~(size_t)63)
#define SLAB_PER ((SLAB_BLOCK - SLAB_FIRST) / sizeof(struct eng_page))

static struct slab_blk *slab_partial; /* under eng.lock */

static void meta_update(void)
{
	atomic_store_explicit(&eng.meta_now, eng.slab_bytes + eng.bucket_bytes, memory_order_relaxed);
}

static void slab_link(struct slab_blk *b)
{
	b->prev = NULL;
	b->next = slab_partial;
	if (slab_partial)
		slab_partial->prev = b;
	slab_partial = b;
}

static void slab_unlink(struct slab_blk *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		slab_partial = b->next;
	if (b->next)
		b->next->prev = b->prev;
}

static struct eng_page *slab_alloc(void)
{
	struct slab_blk *b = slab_partial;
	struct eng_page *p;

	if (!b) {
		void *mem;

		if (posix_memalign(&mem, SLAB_BLOCK, SLAB_BLOCK) != 0)
			return NULL;
		b = mem;
		b->free = NULL;
		b->nfree = 0;
		for (size_t i = 0; i < SLAB_PER; i++) {
			p = (struct eng_page *)((char *)mem + SLAB_FIRST) + i;
			p->hnext = b->free;
			b->free = p;
			b->nfree++;
		}
		slab_link(b);
		eng.slab_bytes += SLAB_BLOCK;
		meta_update();
	}
	p = b->free;
	b->free = p->hnext;
	if (--b->nfree == 0)
		slab_unlink(b);
	return p;
}

static void slab_free(struct eng_page *p)
{
	struct slab_blk *b = (struct slab_blk *)((uintptr_t)p & ~(uintptr_t)(SLAB_BLOCK - 1));

	p->region = NULL;
	p->hnext = b->free;
	b->free = p;
	if (++b->nfree == 1)
		slab_link(b);
	if (b->nfree == SLAB_PER && (b->prev || b->next)) {
		slab_unlink(b);
		free(b);
		eng.slab_bytes -= SLAB_BLOCK;
		meta_update();
	}
}

static inline uint64_t hash_slot(const struct eng_region *r, uint64_t index)
{
	return (index * 0x9E3779B97F4A7C15ull) >> 7 & (r->nbuckets - 1);
}

/* Resize the bucket array to n buckets (a power of two). */
static int hash_resize(struct eng_region *r, uint64_t n)
{
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
	eng.bucket_bytes += n * sizeof(*nb);
	eng.bucket_bytes -= old * sizeof(*nb);
	meta_update();
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

	/* Grow past two pages per bucket (4-8 bytes of buckets per page, chains
	 * of one or two); a failed grow only lengthens chains. */
	if (r->nresident + 1 > 2 * r->nbuckets && hash_resize(r, r->nbuckets ? r->nbuckets * 2 : 16) < 0 &&
	    r->nbuckets == 0)
		return NULL;
	p = slab_alloc();
	if (!p)
		return NULL;
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
	if (p->marker)
		free(ra_mark_take(r, p->index)); /* a read-ahead marker's kept bytes */
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
	slab_free(p);
	/* Shrink at half a page per bucket, so a region that held many pages and
	 * now holds few does not keep their buckets. */
	if (!r->walking && r->nbuckets > 16 && r->nresident < r->nbuckets / 2)
		hash_resize(r, r->nbuckets / 2);
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
	r->walking = true; /* no shrinking under our feet */
	for (uint64_t b = 0; b < r->nbuckets; b++) {
		struct eng_page *p = r->buckets[b], *next;

		for (; p; p = next) {
			next = p->hnext;
			if (p->index >= first && p->index < end)
				fn(p, arg);
		}
	}
	r->walking = false;
	while (r->nbuckets > 16 && r->nresident < r->nbuckets / 2)
		if (hash_resize(r, r->nbuckets / 2) < 0)
			break;
}

size_t pg_len(const struct eng_region *r, uint64_t index)
{
	uint64_t start = index << r->pshift;

	return r->len - start < r->psize ? r->len - start : r->psize;
}

void pg_forget_region(struct eng_region *r)
{
	eng.bucket_bytes -= r->nbuckets * sizeof(*r->buckets);
	meta_update();
	free(r->buckets);
	r->buckets = NULL;
	r->nbuckets = 0;
}

bool pg_present(uintptr_t a, uintptr_t b)
{
	unsigned char vec[64];

	a &= ~(uintptr_t)(eng.sys_psize - 1);
	while (a < b) {
		size_t n = (b - a + eng.sys_psize - 1) / eng.sys_psize;

		if (n > sizeof(vec))
			n = sizeof(vec);
		if (mincore((void *)a, n * eng.sys_psize, vec) < 0)
			return false;
		for (size_t i = 0; i < n; i++)
			if (vec[i] & 1)
				return true;
		a += n * eng.sys_psize;
	}
	return false;
}
