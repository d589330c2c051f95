/*
 * compare_umap_shim.h - force-included (-include) when tests/perf builds
 * the kv-lookup and stream examples a second time as compare_kv_umap and
 * compare_stream_umap: their umapd_map()/umapd_unmap() calls become the
 * LLNL UMap calls umap()/uunmap(), so compare.sh measures the same
 * workload through umap.h.  The page size and read-ahead then come from
 * UMAP_PAGESIZE and UMAP_READ_AHEAD, which compare.sh sets, as a UMap
 * user would.
 */
#ifndef COMPARE_UMAP_SHIM_H
#define COMPARE_UMAP_SHIM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* as the examples define it, before any system header */
#endif

#include <umap.h>
#include <umapd.h>

static inline void *compare_umap_map(void *addr, size_t len, int prot, int flags, int fd,
				     off_t off, const struct umapd_region_opts *o)
{
	void *p;

	(void)o; /* page size and read-ahead: the UMAP_* environment */
	p = umap(addr, len, prot, UMAP_PRIVATE | ((flags & UMAPD_FIXED) ? UMAP_FIXED : 0), fd, off);
	return p == UMAP_FAILED ? NULL : p;
}

#define umapd_map compare_umap_map
#define umapd_unmap(p) uunmap((p), 0)

#endif /* COMPARE_UMAP_SHIM_H */
