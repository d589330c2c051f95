/*
 * The umapd heap: jemalloc's allocator over umapd-paged memory.
 *
 * Debian's libjemalloc exports plain malloc/free; linked into a library,
 * it comes after the C library in symbol lookup and so does not replace
 * the program's malloc.  We use only its non-standard entry points
 * (mallocx, rallocx, dallocx, sallocx, mallctl) on an arena of our own,
 * so every pointer we hand out is jemalloc's and every other is not.
 *
 * Extent hooks: alloc hands out address space from the heap's region, from
 * the bottom up, never twice (jemalloc retains what it frees: dalloc opts
 * out).  Fresh space has never been written, so it reads as zeros.  The
 * arena's decay times are 0: a freed large allocation is purged at once.
 * purge_lazy is where data dies: MADV_DONTNEED drops its pages without
 * writing them back (the engine follows the application's MADV_DONTNEED,
 * docs/failure-semantics.md), and FALLOC_FL_PUNCH_HOLE frees its blocks
 * in the swap file, so a later fault reads a hole instead of the device.
 *
 * What the public API cannot give: a write-back already in flight when the
 * data dies still completes (a wasted write that un-punches the hole), so
 * the memory is not guaranteed to read as zeros; purge_forced therefore
 * says "not supported" and jemalloc zeroes what it must.  An engine-level
 * discard (drop without write-back, cancel in-flight write-backs, punch
 * the store) would close this; docs/preload.md records the request.
 */
#include "heap/heap.h"

#include <errno.h>
#include <fcntl.h>
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/config.h"
#include "umapd.h"
#include "util/log.h"

#define HEAP_DEFAULT_SIZE ((uint64_t)256 << 30)

static struct {
	pthread_once_t once;
	int err;                 /* heap_start's result */
	unsigned arena;
	int flags;               /* MALLOCX_ARENA | MALLOCX_TCACHE_NONE */
	int fd;                  /* the swap file (unlinked) */
	uintptr_t base, end;     /* the region; set before the arena exists */
	_Atomic uintptr_t next;  /* first address never handed out */
	size_t page;
} heap = { .once = PTHREAD_ONCE_INIT, .fd = -1 };

/* base and end are written once, before heap_start returns; readers that
 * hold a heap pointer got it after that, others read 0 and say no. */
static _Atomic uintptr_t owns_base, owns_end;

bool heap_owns(const void *p)
{
	uintptr_t a = (uintptr_t)p;

	return a >= atomic_load_explicit(&owns_base, memory_order_acquire) &&
	       a < atomic_load_explicit(&owns_end, memory_order_relaxed);
}

uint64_t heap_reserved_bytes(void)
{
	uintptr_t n = atomic_load_explicit(&heap.next, memory_order_relaxed);

	return n ? n - heap.base : 0;
}

/* --- extent hooks ---------------------------------------------------------------- */

static void *h_alloc(extent_hooks_t *h, void *new_addr, size_t size, size_t align, bool *zero,
		     bool *commit, unsigned ind)
{
	uintptr_t at = atomic_load(&heap.next), start, end;

	(void)h;
	(void)ind;
	if (align < heap.page)
		align = heap.page;
	do {
		start = new_addr ? (uintptr_t)new_addr : (at + align - 1) & ~(uintptr_t)(align - 1);
		if (new_addr && start != at)
			return NULL; /* only the frontier can grow in place */
		end = start + size;
		if (end < start || end > heap.end)
			return NULL;
	} while (!atomic_compare_exchange_weak(&heap.next, &at, end));
	*zero = true;
	*commit = true;
	return (void *)start;
}

static bool h_dalloc(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned ind)
{
	(void)h, (void)addr, (void)size, (void)committed, (void)ind;
	return true; /* keep it: jemalloc retains and reuses the range */
}

/* The data in [addr, addr + len) is dead: drop it unwritten (after any
 * write-back of it in flight, so that the punch below is final). */
static void discard(void *addr, size_t len)
{
	if (umapd_discard(addr, len) < 0 && madvise(addr, len, MADV_DONTNEED) < 0)
		ulog_warn("heap: discarding %zu bytes at %p: %s", len, addr, ulog_errname(errno));
	if (fallocate(heap.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)((uintptr_t)addr - heap.base),
		      (off_t)len) < 0 && errno != EOPNOTSUPP)
		ulog_warn("heap: punching %zu bytes of the swap file: %s", len, ulog_errname(errno));
}

static void h_destroy(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned ind)
{
	(void)h, (void)committed, (void)ind;
	discard(addr, size);
}

static bool h_commit(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len, unsigned ind)
{
	(void)h, (void)addr, (void)size, (void)off, (void)len, (void)ind;
	return false; /* always committed */
}

static bool h_decommit(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len, unsigned ind)
{
	(void)h, (void)addr, (void)size, (void)off, (void)len, (void)ind;
	return true; /* not supported: jemalloc purges instead */
}

static bool h_purge_lazy(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len, unsigned ind)
{
	(void)h, (void)size, (void)ind;
	discard((char *)addr + off, len);
	return false;
}

static bool h_purge_forced(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len, unsigned ind)
{
	(void)h, (void)addr, (void)size, (void)off, (void)len, (void)ind;
	return true; /* zeros are not guaranteed (see the top of this file) */
}

static bool h_split(extent_hooks_t *h, void *addr, size_t size, size_t a, size_t b, bool committed,
		    unsigned ind)
{
	(void)h, (void)addr, (void)size, (void)a, (void)b, (void)committed, (void)ind;
	return false; /* one region: any split is fine */
}

static bool h_merge(extent_hooks_t *h, void *a, size_t asize, void *b, size_t bsize, bool committed,
		    unsigned ind)
{
	(void)h, (void)a, (void)asize, (void)b, (void)bsize, (void)committed, (void)ind;
	return false;
}

/* jemalloc 5.3's arena_config_t (experimental.arenas_create_ext), which
 * its public header does not declare. */
struct arena_config {
	extent_hooks_t *extent_hooks;
	bool metadata_use_hooks;
};

static extent_hooks_t hooks = {
	.alloc = h_alloc,
	.dalloc = h_dalloc,
	.destroy = h_destroy,
	.commit = h_commit,
	.decommit = h_decommit,
	.purge_lazy = h_purge_lazy,
	.purge_forced = h_purge_forced,
	.split = h_split,
	.merge = h_merge,
};

/* --- start --------------------------------------------------------------------------- */

static int swap_file(const char *dir)
{
	char path[4096];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0)
		return fd;
	/* File systems without O_TMPFILE: a named file, removed at once. */
	if (snprintf(path, sizeof(path), "%s/umapd-heap.XXXXXX", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

static void start_once(void)
{
	const char *dir = getenv("UMAPD_HEAP_DIR"), *v = getenv("UMAPD_HEAP_SIZE");
	uint64_t size = HEAP_DEFAULT_SIZE;
	struct arena_config cfg = { .extent_hooks = &hooks, .metadata_use_hooks = false };
	size_t sz = sizeof(heap.arena);
	ssize_t zero_ms = 0;
	char name[64];
	void *p;
	int ret;

	heap.page = (size_t)sysconf(_SC_PAGESIZE);
	if (v && (cfg_parse_size(v, false, &size) < 0 || size < heap.page)) {
		ulog_error("UMAPD_HEAP_SIZE=\"%s\" is invalid: expected bytes with an optional K/M/G/T "
			   "suffix, at least one page", v);
		heap.err = -EINVAL;
		return;
	}
	size &= ~(uint64_t)(heap.page - 1);
	if (!dir || !*dir)
		dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/var/tmp";
	heap.fd = swap_file(dir);
	if (heap.fd < 0) {
		ulog_error("heap: cannot make a swap file in %s (UMAPD_HEAP_DIR): %s", dir, ulog_errname(-heap.fd));
		heap.err = heap.fd;
		heap.fd = -1;
		return;
	}
	p = umapd_map(NULL, size, PROT_READ | PROT_WRITE, UMAPD_GROWABLE, heap.fd, 0, NULL);
	if (!p) {
		heap.err = -errno;
		ulog_error("heap: cannot map %llu bytes of swap in %s: %s", (unsigned long long)size, dir,
			   ulog_errname(errno));
		goto fail;
	}
	heap.base = (uintptr_t)p;
	heap.end = heap.base + size;
	atomic_store(&heap.next, heap.base);
	atomic_store_explicit(&owns_end, heap.end, memory_order_relaxed);
	atomic_store_explicit(&owns_base, heap.base, memory_order_release);
	/* jemalloc's own bookkeeping for the arena must not live in the
	 * region: the region is not inherited by fork (MADV_DONTFORK), and
	 * jemalloc's fork handler touches that bookkeeping in the child.
	 * jemalloc 5.3 can keep it elsewhere (metadata_use_hooks = false);
	 * the plain arenas.create puts it in the region, so a forked child
	 * would crash: then heap mode stays off. */
	ret = mallctl("experimental.arenas_create_ext", &heap.arena, &sz, &cfg, sizeof(cfg));
	if (ret) {
		ulog_error("heap: jemalloc experimental.arenas_create_ext: %s (jemalloc 5.3 or later is "
			   "needed)", ulog_errname(ret));
		heap.err = -ret;
		goto fail_unmap;
	}
	/* Freed memory is purged at once: dead data must not linger dirty. */
	snprintf(name, sizeof(name), "arena.%u.dirty_decay_ms", heap.arena);
	mallctl(name, NULL, NULL, &zero_ms, sizeof(zero_ms));
	snprintf(name, sizeof(name), "arena.%u.muzzy_decay_ms", heap.arena);
	mallctl(name, NULL, NULL, &zero_ms, sizeof(zero_ms));
	heap.flags = MALLOCX_ARENA(heap.arena) | MALLOCX_TCACHE_NONE;
	ulog_info("heap: %llu bytes of address space at %p, swap in %s", (unsigned long long)size, p, dir);
	return;

fail_unmap:
	atomic_store(&owns_base, 0);
	atomic_store(&owns_end, 0);
	umapd_unmap(p);
fail:
	close(heap.fd);
	heap.fd = -1;
}

int heap_start(void)
{
	pthread_once(&heap.once, start_once);
	return heap.err;
}

/* --- allocation ----------------------------------------------------------------------- */

void *heap_alloc(size_t size, size_t align, bool zero)
{
	int flags;
	void *p;

	if (heap_start() < 0) {
		errno = -heap.err;
		return NULL;
	}
	flags = heap.flags;
	if (align > 1)
		flags |= MALLOCX_ALIGN(align);
	if (zero)
		flags |= MALLOCX_ZERO;
	p = mallocx(size ? size : 1, flags);
	if (!p)
		errno = ENOMEM;
	return p;
}

void heap_free(void *p)
{
	dallocx(p, heap.flags);
}

void *heap_realloc(void *p, size_t size)
{
	void *q = rallocx(p, size ? size : 1, heap.flags);

	if (!q)
		errno = ENOMEM;
	return q;
}

size_t heap_usable(const void *p)
{
	return sallocx(p, heap.flags);
}
