/*
 * umap.h - the LLNL UMap C interface, served by umapd.
 *
 * A program written for LLNL UMap (https://github.com/LLNL/umap) builds
 * against this header and links with -lumapd instead of -lumap, with no
 * source change.  It is also installed as <umap/umap.h>, the path UMap
 * installs its own header under.  C and C++ both work; only the C functions
 * are offered (UMap's C++-only Umap::umap_ex() with a custom Store is not).
 *
 * Behaviour follows UMap where UMap is correct, and differs where UMap
 * loses data, crashes or ignores an argument; docs/umap-compat.md lists
 * every difference.  In short: uunmap() writes back and unmaps; bytes past
 * the end of the file read as zeros; file offsets are honoured; any budget
 * of one page or more works; kernel answers such as EEXIST and EAGAIN are
 * handled, never fatal; errors come back as UMAP_FAILED or -1 with errno
 * instead of ending the process.
 *
 * UMap's environment variables are read when the first of these functions
 * runs and mapped onto umapd's settings (an explicitly set UMAPD_* variable
 * wins over its UMAP_* counterpart):
 *
 *   UMAP_PAGESIZE                    -> UMAPD_PAGESIZE (bytes)
 *   UMAP_BUFSIZE (in UMap pages)     -> UMAPD_BUFSIZE = pages x UMap page size
 *   UMAP_PAGE_FILLERS                -> UMAPD_FILLERS (clamped to 1..256)
 *   UMAP_PAGE_EVICTORS               -> UMAPD_EVICTORS (clamped to 1..64)
 *   UMAP_EVICT_HIGH_WATER_THRESHOLD  -> UMAPD_HIGH_WATER (percent)
 *   UMAP_EVICT_LOW_WATER_THRESHOLD   -> UMAPD_LOW_WATER (percent)
 *   UMAP_READ_AHEAD                  -> UMAPD_READ_AHEAD (pages)
 *   UMAP_LOG_LEVEL                   -> UMAPD_LOG_LEVEL (ERROR|WARNING|INFO|DEBUG)
 *   UMAP_MAX_FAULT_EVENTS            accepted and reported by
 *                                    umapcfg_get_max_fault_events(); umapd
 *                                    sizes its own fault reads
 *   UMAP_MONITOR_FREQ                accepted and ignored (use umapd_stats())
 *
 * A malformed UMAP_* value makes umap() fail with EINVAL after one log line
 * naming the variable.
 */
#ifndef UMAPD_UMAP_H
#define UMAPD_UMAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Flags for umap(): UMAP_PRIVATE is required, UMAP_FIXED optional, as in UMap. */
#define UMAP_PRIVATE MAP_PRIVATE
#define UMAP_FIXED   MAP_FIXED

/* What umap() returns on failure (errno says why). */
#define UMAP_FAILED ((void *)-1)

/*
 * Map [offset, offset + length) of the file open on fd, paged by umapd with
 * the current UMap page size (umapcfg_get_umap_page_size()).
 * prot: PROT_READ, optionally | PROT_WRITE (fd then open O_RDWR).
 * flags: UMAP_PRIVATE, optionally | UMAP_FIXED (addr must then be aligned
 * to the system page size; the range there is replaced).  Without UMAP_FIXED addr
 * is a hint that is ignored, as with mmap(2).  offset: a multiple of the
 * page size.  length: any size > 0 (UMap rounds it up to whole pages; so
 * does umapd, and bytes past the end of the file read as zeros and are
 * never written back).  fd may be closed afterwards.
 * Returns the address, or UMAP_FAILED with errno: EINVAL (bad prot, flags
 * without UMAP_PRIVATE or with others, unaligned offset or fixed address,
 * length 0, malformed UMAP_* variable), and every error of umapd_map()
 * (EBADF, EACCES, ENODEV, EOVERFLOW, EPERM, ENOMEM, ENOTSUP, EEXIST).
 */
void *umap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);

/*
 * umap() with this region's own page size (a power-of-two multiple of the
 * system page size), whatever UMAP_PAGESIZE says; UMap 2.x's name for it.
 */
void *umap_variable(void *addr, size_t length, int prot, int flags, int fd, off_t offset,
		    size_t page_size);

/*
 * Write the region's dirty pages back, then unregister and unmap it (UMap
 * leaves the range mapped and resident).  addr: the start of a region
 * returned by umap(); length is accepted for UMap's signature and may be 0
 * or any length up to the region's.  Returns 0, or -1 with errno: EINVAL
 * (addr is not the start of a region, or length is larger than it), or the
 * store's write error (EIO, ENOSPC, ...), in which case the region stays
 * mapped and nothing is lost.
 */
int uunmap(void *addr, size_t length);

/*
 * Write back every dirty page of every region mapped with umap() and keep
 * them resident.  Returns 0, or -1 with the first write error in errno.
 */
int umap_flush(void);

/* One page to bring in with umap_prefetch(): any address inside it will do. */
struct umap_prefetch_item {
	void *page_base_addr;
};

/*
 * Start bringing npages pages in, asynchronously.  Items outside every
 * region are skipped.  UMap returns nothing; errno is EINVAL when npages is
 * negative or page_array is NULL with npages > 0, else left alone.
 */
void umap_prefetch(int npages, struct umap_prefetch_item *page_array);

/*
 * Bring [paddr, paddr + size) in now: returns when every page has been
 * read.  UMap also pins the pages so they are never evicted; umapd has no
 * pinning, so pages beyond the budget are evicted as usual (see
 * docs/umap-compat.md).  errno EINVAL when the range is outside every region.
 */
void umap_fetch_and_pin(char *paddr, uint64_t size);

/* 1 if regions may be mapped PROT_WRITE here (the kernel has userfaultfd
 * write protection), else 0. */
int umap_has_write_support(void);

/* The settings in force, in UMap's units. */
long umapcfg_get_system_page_size(void);
uint64_t umapcfg_get_umap_page_size(void);       /* bytes */
uint64_t umapcfg_get_max_fault_events(void);     /* UMAP_MAX_FAULT_EVENTS, default 256 */
uint64_t umapcfg_get_num_fillers(void);
uint64_t umapcfg_get_num_evictors(void);
uint64_t umapcfg_get_max_pages_in_buffer(void);  /* budget / UMap page size */
uint64_t umapcfg_get_read_ahead(void);           /* pages */
int umapcfg_get_evict_low_water_threshold(void); /* percent */
int umapcfg_get_evict_high_water_threshold(void);

#ifdef __cplusplus
}
#endif

#endif /* UMAPD_UMAP_H */
