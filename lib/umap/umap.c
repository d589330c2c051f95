/*
 * The LLNL UMap C interface (include/umap.h) over umapd's native API.
 *
 * UMap's calls act on "all regions" (umap_flush) or take bare page
 * addresses (umap_prefetch), so this file keeps the list of regions mapped
 * through umap(); everything else is a direct translation to umapd_*()
 * with UMap's return conventions (UMAP_FAILED, void functions) and errno.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "umap.h"
#include "umap/compat.h"
#include "umapd.h"

#define API __attribute__((visibility("default")))

/* Regions mapped with umap(), for umap_flush().  regions_lock protects
 * regions, nregions and cap_regions; it is never held across a umapd_*()
 * call, so a flush that waits for I/O blocks no other umap() caller. */
struct span {
	char *base;
	size_t len;
};
static pthread_mutex_t regions_lock = PTHREAD_MUTEX_INITIALIZER;
static struct span *regions;
static size_t nregions, cap_regions;

static int regions_add(char *base, size_t len)
{
	int ret = 0;

	pthread_mutex_lock(&regions_lock);
	if (nregions == cap_regions) {
		size_t cap = cap_regions ? 2 * cap_regions : 16;
		struct span *n = realloc(regions, cap * sizeof(*n));

		if (!n)
			ret = -ENOMEM;
		else {
			regions = n;
			cap_regions = cap;
		}
	}
	if (ret == 0)
		regions[nregions++] = (struct span){ base, len };
	pthread_mutex_unlock(&regions_lock);
	return ret;
}

/* The length of the region at base (0 if not ours); removed with take. */
static size_t regions_find(char *base, int take)
{
	size_t len = 0;

	pthread_mutex_lock(&regions_lock);
	for (size_t i = 0; i < nregions; i++) {
		if (regions[i].base != base)
			continue;
		len = regions[i].len;
		if (take)
			regions[i] = regions[--nregions];
		break;
	}
	pthread_mutex_unlock(&regions_lock);
	return len;
}

static void *map_region(void *addr, size_t length, int prot, int flags, int fd, off_t offset,
			size_t page_size)
{
	struct umapd_region_opts o;
	int err = compat_env_init();
	char *p;

	if (err < 0) {
		errno = -err;
		return UMAP_FAILED;
	}
	/* UMap's regions are private mappings of a file; write implies read. */
	if (!(flags & UMAP_PRIVATE) || (flags & ~(UMAP_PRIVATE | UMAP_FIXED)) ||
	    !(prot & (PROT_READ | PROT_WRITE)) || (prot & ~(PROT_READ | PROT_WRITE))) {
		errno = EINVAL;
		return UMAP_FAILED;
	}
	memset(&o, 0, sizeof(o));
	o.page_size = page_size;
	p = umapd_map((flags & UMAP_FIXED) ? addr : NULL, length, prot | PROT_READ,
		      (flags & UMAP_FIXED) ? UMAPD_FIXED : 0, fd, offset, &o);
	if (!p)
		return UMAP_FAILED;
	err = regions_add(p, length);
	if (err < 0) {
		umapd_unmap(p);
		errno = -err;
		return UMAP_FAILED;
	}
	return p;
}

API void *umap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
	return map_region(addr, length, prot, flags, fd, offset, 0);
}

API void *umap_variable(void *addr, size_t length, int prot, int flags, int fd, off_t offset,
			size_t page_size)
{
	return map_region(addr, length, prot, flags, fd, offset, page_size);
}

API int uunmap(void *addr, size_t length)
{
	size_t sys = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = regions_find(addr, 0);

	/* length only has to make sense: UMap ignores it, callers pass what
	 * they mapped, possibly rounded up to whole pages. */
	if (len) {
		size_t psize = umapd_region_page_size(addr);
		size_t round = psize > sys ? psize : sys;

		if (length > ((len + round - 1) & ~(round - 1))) {
			errno = EINVAL;
			return -1;
		}
	}
	if (umapd_unmap(addr) != 0)
		return -1;
	regions_find(addr, 1);
	return 0;
}

API int umap_flush(void)
{
	struct span *snap = NULL;
	size_t n;
	int first = 0;

	pthread_mutex_lock(&regions_lock);
	n = nregions;
	if (n) {
		snap = malloc(n * sizeof(*snap));
		if (snap)
			memcpy(snap, regions, n * sizeof(*snap));
	}
	pthread_mutex_unlock(&regions_lock);
	if (n && !snap) {
		errno = ENOMEM;
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		/* ENOMEM: unmapped by another thread since the snapshot. */
		if (umapd_flush(snap[i].base, snap[i].len) != 0 && errno != ENOMEM && !first)
			first = errno;
	}
	free(snap);
	if (first) {
		errno = first;
		return -1;
	}
	return 0;
}

API void umap_prefetch(int npages, struct umap_prefetch_item *page_array)
{
	char *run = NULL;
	size_t run_len = 0;
	int saved = errno;

	if (npages < 0 || (npages > 0 && !page_array)) {
		errno = EINVAL;
		return;
	}
	/* Consecutive pages become one umapd_prefetch() call. */
	for (int i = 0; i <= npages; i++) {
		char *page = NULL;
		size_t psize = 0;

		if (i < npages) {
			psize = umapd_region_page_size(page_array[i].page_base_addr);
			if (!psize)
				continue; /* not in a region: UMap would crash; skip it */
			page = (char *)((uintptr_t)page_array[i].page_base_addr & ~(uintptr_t)(psize - 1));
			if (run && page == run + run_len) {
				run_len += psize;
				continue;
			}
		}
		if (run)
			umapd_prefetch(run, run_len);
		run = page;
		run_len = psize;
	}
	errno = saved;
}

API void umap_fetch_and_pin(char *paddr, uint64_t size)
{
	size_t psize = umapd_region_page_size(paddr);
	int saved = errno;

	if (!psize || size == 0) {
		errno = EINVAL;
		return;
	}
	/* Ask for the whole range at once (the fillers work in parallel), then
	 * wait for each page by reading one byte of it. */
	umapd_prefetch(paddr, size);
	for (uint64_t off = 0; off < size; off += psize) {
		if (!umapd_region_page_size(paddr + off))
			break;
		(void)*(volatile char *)(paddr + off);
	}
	errno = saved;
}

API int umap_has_write_support(void)
{
	struct umapd_kernel_info k;

	if (umapd_kernel_probe(&k) != 0)
		return 0;
	return k.uffd_error == 0 && k.feat_wp;
}

/* A numeric setting; 0 if it cannot be read. */
static uint64_t setting(const char *name)
{
	char buf[32];

	compat_env_init();
	if (umapd_config_get(name, buf, sizeof(buf)) < 0)
		return 0;
	return strtoull(buf, NULL, 10);
}

API long umapcfg_get_system_page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}

API uint64_t umapcfg_get_umap_page_size(void)
{
	return setting("UMAPD_PAGESIZE");
}

API uint64_t umapcfg_get_max_fault_events(void)
{
	return compat_max_fault_events();
}

API uint64_t umapcfg_get_num_fillers(void)
{
	return setting("UMAPD_FILLERS");
}

API uint64_t umapcfg_get_num_evictors(void)
{
	return setting("UMAPD_EVICTORS");
}

API uint64_t umapcfg_get_max_pages_in_buffer(void)
{
	uint64_t psize = setting("UMAPD_PAGESIZE");

	return psize ? setting("UMAPD_BUFSIZE") / psize : 0;
}

API uint64_t umapcfg_get_read_ahead(void)
{
	return setting("UMAPD_READ_AHEAD");
}

API int umapcfg_get_evict_low_water_threshold(void)
{
	return (int)setting("UMAPD_LOW_WATER");
}

API int umapcfg_get_evict_high_water_threshold(void)
{
	return (int)setting("UMAPD_HIGH_WATER");
}
