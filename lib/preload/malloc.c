/*
 * Heap mode: the malloc family.  Allocations of UMAPD_HEAP_THRESHOLD bytes
 * or more go to the umapd heap (lib/heap), smaller ones to the allocator
 * that was there before us (the C library's, found with RTLD_NEXT).
 *
 * Every pointer has one owner, told by its address: the heap's
 * reservation, our start-up pool (blocks handed out while dlsym ran; never
 * freed), or else the previous allocator, which also owns everything
 * allocated before heap mode started.  realloc moves a block between
 * owners when its size crosses the threshold.  Threads of the engine, and
 * our own code inside umapd calls, never get heap memory: a fault-service
 * thread must not touch memory it serves (DESIGN.md invariant 1).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heap/heap.h"
#include "preload/preload.h"

#define EXPORT __attribute__((visibility("default")))

static inline bool to_heap(size_t n)
{
	return n >= pre.cfg.heap_threshold && pre.heap_on && !pre_bypass() &&
	       atomic_load_explicit(&pre.ready, memory_order_acquire) == 2;
}

static inline bool have_real(void)
{
	if (!pre_real.malloc)
		pre_resolve();
	return pre_real.malloc != NULL;
}

bool pre_heap_start(void)
{
	int ret;

	/* Dead heap data is dropped with MADV_DONTNEED.  The engine forgets
	 * such pages at once only with UMAPD_EVENT_REMOVE=1, else when it next
	 * meets them; we leave that setting alone: measured with sort under a
	 * small budget, remove events cost more (a round trip per eviction)
	 * than the late forgetting does (docs/preload.md). */
	ret = heap_start();
	if (ret < 0) {
		pre_log("heap mode off: the umapd heap cannot start (%s); allocations stay where they were",
			strerror(-ret));
		return false;
	}
	if (pre.cfg.log)
		pre_log("heap mode: allocations of %llu bytes or more go to the umapd heap",
			(unsigned long long)pre.cfg.heap_threshold);
	return true;
}

EXPORT void *malloc(size_t n)
{
	void *p;

	if (!have_real())
		return pre_boot_alloc(n, 16);
	if (to_heap(n) && (p = heap_alloc(n, 0, false)))
		return p;
	return pre_real.malloc(n);
}

EXPORT void free(void *p)
{
	if (!p || pre_boot_owns(p))
		return;
	if (heap_owns(p)) {
		heap_free(p);
		return;
	}
	if (have_real())
		pre_real.free(p);
}

EXPORT void *calloc(size_t n, size_t size)
{
	void *p;

	if (size && n > SIZE_MAX / size) {
		errno = ENOMEM;
		return NULL;
	}
	if (!have_real())
		return pre_boot_alloc(n * size, 16); /* static: zero */
	if (to_heap(n * size) && (p = heap_alloc(n * size, 0, true)))
		return p;
	return pre_real.calloc(n, size);
}

/* Move p (of old usable bytes) into a new block of n bytes from malloc. */
static void *move(void *p, size_t old, size_t n)
{
	void *q = malloc(n);

	if (q) {
		memcpy(q, p, old < n ? old : n);
		free(p);
	}
	return q;
}

EXPORT void *realloc(void *p, size_t n)
{
	if (!p)
		return malloc(n);
	if (pre_boot_owns(p))
		return move(p, pre_boot_size(p), n);
	if (heap_owns(p)) {
		if (n == 0) {
			heap_free(p);
			return NULL;
		}
		if (to_heap(n))
			return heap_realloc(p, n);
		return move(p, heap_usable(p), n);
	}
	if (!have_real())
		return NULL;
	if (to_heap(n)) {
		void *q = heap_alloc(n, 0, false);

		if (q) {
			size_t old = pre_real.malloc_usable_size(p);

			memcpy(q, p, old < n ? old : n);
			pre_real.free(p);
			return q;
		}
	}
	return pre_real.realloc(p, n);
}

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, n * size);
}

static bool bad_align(size_t align)
{
	return align == 0 || (align & (align - 1));
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	void *p;

	if (bad_align(align) || align % sizeof(void *))
		return EINVAL;
	if (!have_real()) {
		p = pre_boot_alloc(n, align);
		if (!p)
			return ENOMEM;
		*out = p;
		return 0;
	}
	if (to_heap(n) && (p = heap_alloc(n, align, false))) {
		*out = p;
		return 0;
	}
	return pre_real.posix_memalign(out, align, n);
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
	void *p;

	if (bad_align(align)) {
		errno = EINVAL;
		return NULL;
	}
	if (!have_real())
		return pre_boot_alloc(n, align);
	if (to_heap(n) && (p = heap_alloc(n, align, false)))
		return p;
	return pre_real.aligned_alloc(align, n);
}

EXPORT void *memalign(size_t align, size_t n)
{
	void *p;

	if (!have_real())
		return pre_boot_alloc(n, align);
	if (!bad_align(align) && to_heap(n) && (p = heap_alloc(n, align, false)))
		return p;
	return pre_real.memalign(align, n);
}

EXPORT void *valloc(size_t n)
{
	return memalign((size_t)sysconf(_SC_PAGESIZE), n);
}

EXPORT void *pvalloc(size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	if (n > SIZE_MAX - page) {
		errno = ENOMEM;
		return NULL;
	}
	return memalign(page, n ? (n + page - 1) & ~(page - 1) : page);
}

EXPORT size_t malloc_usable_size(void *p)
{
	if (!p)
		return 0;
	if (pre_boot_owns(p))
		return pre_boot_size(p);
	if (heap_owns(p))
		return heap_usable(p);
	return have_real() ? pre_real.malloc_usable_size(p) : 0;
}
