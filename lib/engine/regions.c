/*
 * The region table: an array sorted by base address under a rwlock.  A
 * lookup is a binary search (14 steps for 10,000 regions) and takes a
 * reference, so a region found by a fault stays alive until it is put,
 * whatever unmap does meanwhile.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"

/* Index of the first region whose end is above addr. */
static size_t rg_search(uintptr_t addr)
{
	size_t lo = 0, hi = eng.nregions;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct eng_region *r = eng.regions[mid];

		if (r->base + r->len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Take r out of the array (under the write lock).  -EINVAL if absent. */
static int rg_unlink_locked(struct eng_region *r)
{
	size_t i = rg_search(r->base);

	if (i >= eng.nregions || eng.regions[i] != r)
		return -EINVAL;
	memmove(&eng.regions[i], &eng.regions[i + 1], (eng.nregions - i - 1) * sizeof(*eng.regions));
	eng.nregions--;
	return 0;
}

/* Put r into the array at its place (under the write lock; room known). */
static void rg_link_locked(struct eng_region *r)
{
	size_t i = rg_search(r->base);

	memmove(&eng.regions[i + 1], &eng.regions[i], (eng.nregions - i) * sizeof(*eng.regions));
	eng.regions[i] = r;
	eng.nregions++;
}

int rg_insert(struct eng_region *r)
{
	size_t i;

	pthread_rwlock_wrlock(&eng.regions_lock);
	if (eng.nregions == eng.cap_regions) {
		size_t cap = eng.cap_regions ? eng.cap_regions * 2 : 64;
		struct eng_region **n = realloc(eng.regions, cap * sizeof(*n));

		if (!n) {
			pthread_rwlock_unlock(&eng.regions_lock);
			return -ENOMEM;
		}
		eng.regions = n;
		eng.cap_regions = cap;
	}
	i = rg_search(r->base);
	if (i < eng.nregions && eng.regions[i]->base < r->base + r->len) {
		/* Inside the span of a region the application partly unmapped. */
		pthread_rwlock_unlock(&eng.regions_lock);
		return -EEXIST;
	}
	rg_link_locked(r);
	atomic_store_explicit(&r->refs, 1, memory_order_relaxed);
	pthread_rwlock_unlock(&eng.regions_lock);
	return 0;
}

bool rg_overlaps(uintptr_t start, uintptr_t end)
{
	bool hit;

	pthread_rwlock_rdlock(&eng.regions_lock);
	size_t i = rg_search(start);

	hit = i < eng.nregions && eng.regions[i]->base < end;
	pthread_rwlock_unlock(&eng.regions_lock);
	return hit;
}

struct eng_region *rg_get(uintptr_t addr)
{
	struct eng_region *r = NULL;
	size_t i;

	pthread_rwlock_rdlock(&eng.regions_lock);
	i = rg_search(addr);
	if (i < eng.nregions && eng.regions[i]->base <= addr) {
		r = eng.regions[i];
		atomic_fetch_add_explicit(&r->refs, 1, memory_order_acquire);
	}
	pthread_rwlock_unlock(&eng.regions_lock);
	return r;
}

struct eng_region *rg_get_exact(uintptr_t base)
{
	struct eng_region *r = rg_get(base);

	if (r && r->base != base) {
		rg_put(r);
		return NULL;
	}
	return r;
}

void rg_put(struct eng_region *r)
{
	atomic_fetch_sub_explicit(&r->refs, 1, memory_order_release);
}

int rg_get_range(uintptr_t start, uintptr_t end, struct eng_region ***out, size_t *n)
{
	struct eng_region **v = NULL;
	size_t cnt = 0, cap = 0;

	pthread_rwlock_rdlock(&eng.regions_lock);
	for (size_t i = rg_search(start); i < eng.nregions && eng.regions[i]->base < end; i++) {
		if (cnt == cap) {
			size_t c = cap ? cap * 2 : 4;
			struct eng_region **nv = realloc(v, c * sizeof(*nv));

			if (!nv) {
				for (size_t j = 0; j < cnt; j++)
					rg_put(v[j]);
				free(v);
				pthread_rwlock_unlock(&eng.regions_lock);
				return -ENOMEM;
			}
			v = nv;
			cap = c;
		}
		v[cnt] = eng.regions[i];
		atomic_fetch_add_explicit(&v[cnt]->refs, 1, memory_order_acquire);
		cnt++;
	}
	pthread_rwlock_unlock(&eng.regions_lock);
	*out = v;
	*n = cnt;
	return 0;
}

int rg_detach(struct eng_region *r)
{
	int ret;

	pthread_rwlock_wrlock(&eng.regions_lock);
	ret = rg_unlink_locked(r);
	pthread_rwlock_unlock(&eng.regions_lock);
	if (ret == 0)
		rg_put(r); /* the table's reference */
	return ret;
}

void rg_wait_unused(struct eng_region *r)
{
	/* Users hold references only for the length of one fault, fill or
	 * write-back, none of which waits on the caller, so this ends. */
	for (unsigned spins = 0; atomic_load_explicit(&r->refs, memory_order_acquire) > 1; spins++) {
		if (spins < 100)
			sched_yield();
		else
			usleep(100);
	}
}

int rg_remove(struct eng_region *r)
{
	int ret = rg_detach(r);

	if (ret == 0)
		rg_wait_unused(r);
	return ret;
}

int rg_rebase(struct eng_region *r, uintptr_t base)
{
	size_t j;

	pthread_rwlock_wrlock(&eng.regions_lock);
	if (rg_unlink_locked(r) < 0) {
		pthread_rwlock_unlock(&eng.regions_lock);
		return -EINVAL;
	}
	j = rg_search(base);
	if (j < eng.nregions && eng.regions[j]->base < base + r->len) {
		/* Something we track is there already: put it back unmoved. */
		rg_link_locked(r);
		pthread_rwlock_unlock(&eng.regions_lock);
		return -EEXIST;
	}
	pthread_mutex_lock(&eng.lock);
	r->base = base;
	pthread_mutex_unlock(&eng.lock);
	rg_link_locked(r);
	pthread_rwlock_unlock(&eng.regions_lock);
	return 0;
}

void rg_page_span(const struct eng_region *r, uintptr_t start, uintptr_t end, uint64_t *first, uint64_t *last)
{
	uintptr_t a = start > r->base ? start : r->base;
	uintptr_t b = end < r->base + r->len ? end : r->base + r->len;

	*first = (a - r->base) >> r->pshift;
	*last = (b - r->base + r->psize - 1) >> r->pshift;
}
