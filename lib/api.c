/*
 * The public API: argument checks, and the one place where the engine's
 * negative errno values become -1/NULL plus errno.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client/client.h"
#include "engine/engine.h"
#include "umapd.h"
#include "umapd_store.h"
#include "util/log.h"

#define API __attribute__((visibility("default")))

static struct eng_region *zombies_collect(uintptr_t take);
static void zombies_free(struct eng_region *z);

static int fail(int neg)
{
	errno = -neg;
	return -1;
}

API int umapd_init(void)
{
	int ret = eng_start();

	return ret < 0 ? fail(ret) : 0;
}

API int umapd_config_set(const char *name, const char *value)
{
	if (!name || !value)
		return fail(-EFAULT);
	int ret = eng_config_set(name, value);

	return ret < 0 ? fail(ret) : 0;
}

API int umapd_config_get(const char *name, char *buf, size_t buflen)
{
	if (!name || !buf)
		return fail(-EFAULT);
	int ret = eng_config_get(name, buf, buflen);

	return ret < 0 ? fail(ret) : ret;
}

API int umapd_set_bufsize(size_t bytes)
{
	char v[32];

	snprintf(v, sizeof(v), "%zu", bytes);
	return umapd_config_set("UMAPD_BUFSIZE", v);
}

API size_t umapd_get_bufsize(void)
{
	char v[32];

	if (eng_config_get("UMAPD_BUFSIZE", v, sizeof(v)) < 0)
		return 0;
	return (size_t)strtoull(v, NULL, 10);
}

/* Fill in a region's layout from the arguments; negative errno if invalid. */
static int region_layout(struct eng_region *r, size_t length, int prot, int flags, off_t offset,
			 const struct umapd_region_opts *opts)
{
	size_t sys = (size_t)sysconf(_SC_PAGESIZE), psize;
	char v[32];
	long ra;

	if (length == 0 || !(prot & PROT_READ) || (prot & ~(PROT_READ | PROT_WRITE)) ||
	    (flags & ~(UMAPD_FIXED | UMAPD_GROWABLE)))
		return -EINVAL;
	if ((flags & UMAPD_GROWABLE) && !(prot & PROT_WRITE))
		return -EINVAL;
	if (eng_config_get("UMAPD_PAGESIZE", v, sizeof(v)) < 0)
		return -EINVAL;
	psize = (size_t)strtoull(v, NULL, 10);
	if (eng_config_get("UMAPD_READ_AHEAD", v, sizeof(v)) < 0)
		return -EINVAL;
	ra = strtol(v, NULL, 10);
	if (eng_config_get("UMAPD_DIRECT_IO", v, sizeof(v)) < 0)
		return -EINVAL;
	r->direct = v[0] == '1';
	if (opts) {
		for (size_t i = 0; i < sizeof(opts->reserved) / sizeof(opts->reserved[0]); i++)
			if (opts->reserved[i])
				return -EINVAL;
		if (opts->page_size) {
			psize = opts->page_size;
			if (psize < sys || (psize & (psize - 1)) || psize > ((size_t)1 << 30))
				return -EINVAL;
		}
		if (opts->read_ahead < -1 || opts->read_ahead > 4096)
			return -EINVAL;
		if (opts->read_ahead)
			ra = opts->read_ahead < 0 ? 0 : opts->read_ahead;
		if (opts->io_engine < UMAPD_IOENG_DEFAULT || opts->io_engine > UMAPD_IOENG_PSYNC ||
		    opts->direct < 0 || opts->direct > 1)
			return -EINVAL;
		r->io_kind = opts->io_engine;
		if (opts->direct)
			r->direct = true;
	}
	if (offset < 0 || (uint64_t)offset % psize)
		return -EINVAL;
	if ((uint64_t)offset > UINT64_MAX - length || length > SIZE_MAX - sys ||
	    (uint64_t)offset + length > (uint64_t)INT64_MAX)
		return -EOVERFLOW;
	r->psize = psize;
	r->pshift = (unsigned)__builtin_ctzll(psize);
	r->len = (length + sys - 1) & ~(sys - 1);
	r->npages = (r->len + psize - 1) >> r->pshift;
	r->offset = (uint64_t)offset;
	r->writable = prot & PROT_WRITE;
	r->growable = flags & UMAPD_GROWABLE;
	r->ra_max = ra;
	r->advice = UMAPD_ADV_NORMAL;
	return 0;
}

/* Reserve address space for a region, aligned to its page size (up to 2 MiB). */
static void *region_mmap(void *addr, size_t len, size_t psize, int prot, int flags)
{
	int mf = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	size_t align = psize < ((size_t)2 << 20) ? psize : ((size_t)2 << 20);
	char *p, *a;

	if (flags & UMAPD_FIXED)
		return mmap(addr, len, prot, mf | MAP_FIXED, -1, 0);
	if (align <= (size_t)sysconf(_SC_PAGESIZE))
		return mmap(NULL, len, prot, mf, -1, 0);
	p = mmap(NULL, len + align, prot, mf, -1, 0);
	if (p == MAP_FAILED)
		return p;
	a = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (a + len < p + len + align)
		munmap(a + len, (size_t)(p + len + align - (a + len)));
	return a;
}

/*
 * UMAPD_FAULT_INJECT: wrap the region's store in a fault-injection store.
 * *wrapped tells the caller to unwrap it again if the map fails later.
 */
static int inject_wrap(struct eng_region *r, bool *wrapped)
{
	char spec[INJECT_SPEC_MAX + 1];
	struct store *w;
	int ret;

	*wrapped = false;
	ret = eng_config_get("UMAPD_FAULT_INJECT", spec, sizeof(spec));
	if (ret <= 0)
		return ret; /* unset (0) or unreadable */
	ret = store_inject_open(r->store, spec, &w);
	if (ret < 0)
		return ret;
	ulog_info("UMAPD_FAULT_INJECT=%s: faults injected into the %s store", spec, r->store->ops->name);
	r->store = w;
	*wrapped = true;
	return 0;
}

/*
 * Map the region laid out in r over its open store r->store: the one path
 * of umapd_map and umapd_map_store.  On success the region owns the store;
 * on failure (NULL, *err set) r->store is the caller's as it came in.
 */
static void *map_region(struct eng_region *r, void *addr, int prot, int flags, int *err)
{
	bool wp, wrapped = false;
	void *base = MAP_FAILED;
	int64_t size;
	int ret;

	ret = eng_start();
	if (ret == 0)
		ret = inject_wrap(r, &wrapped);
	if (ret < 0)
		goto fail;
	if (r->psize > atomic_load_explicit(&eng.budget, memory_order_relaxed)) {
		/* Not one of its pages could ever be resident: its first fault
		 * would wait for memory forever. */
		ulog_error("a region page of %zu bytes is larger than the whole budget (UMAPD_BUFSIZE=%llu)",
			   r->psize, (unsigned long long)atomic_load(&eng.budget));
		ret = -EINVAL;
		goto fail;
	}
	wp = r->writable && eng.uffd.can_wp;
	if (r->writable && !eng.uffd.can_wp) {
		ulog_error("this kernel's userfaultfd has no write-protect support: writable regions "
			   "cannot track dirty pages");
		ret = -ENOTSUP;
		goto fail;
	}
	size = store_size(r->store);
	if (size < 0) {
		ret = (int)size;
		goto fail;
	}
	r->data_end = (uint64_t)size;

	if ((flags & UMAPD_FIXED) && rg_overlaps((uintptr_t)addr, (uintptr_t)addr + r->len)) {
		ret = -EEXIST; /* inside the span of a region that still owns it */
		goto fail;
	}
	base = region_mmap(addr, r->len, r->psize, prot | PROT_READ, flags);
	if (base == MAP_FAILED) {
		ret = -errno;
		goto fail;
	}
	/* The kernel may reuse a hole the application punched in another
	 * region, which that region's span still covers: go elsewhere. */
	for (int tries = 0; !(flags & UMAPD_FIXED) && tries < 8 &&
			    rg_overlaps((uintptr_t)base, (uintptr_t)base + r->len); tries++) {
		void *other = region_mmap(NULL, r->len, r->psize, prot | PROT_READ, flags);

		munmap(base, r->len);
		base = other;
		if (base == MAP_FAILED) {
			ret = -errno;
			goto fail;
		}
	}
	r->base = (uintptr_t)base;
	/* Not inherited by fork: a child would see zeros where pages are not
	 * resident (docs/kernel-interactions.md).  No THP collapse behind our
	 * back: resident pages are exactly the ones we installed. */
	if (madvise(base, r->len, MADV_DONTFORK) < 0 || madvise(base, r->len, MADV_NOHUGEPAGE) < 0) {
		ret = -errno;
		goto fail;
	}
	/* Registered and in the table as one step for fault_unclaimed(),
	 * which decides under ev_lock that a fault belongs to no region and
	 * poisons its page: a stale fault left over from an unmapped region
	 * at this address must not find the range registered but not yet
	 * ours, or the new region's page would raise SIGBUS. */
	pthread_mutex_lock(&eng.ev_lock);
	ret = uffd_register(&eng.uffd, r->base, r->len, wp);
	if (ret < 0) {
		pthread_mutex_unlock(&eng.ev_lock);
		ulog_error("cannot register %zu bytes at %p with userfaultfd: %s", r->len, base,
			   ulog_errname(-ret));
		goto fail;
	}
	if (eng_test_map_hook)
		eng_test_map_hook(r->base, r->len);
	ret = rg_insert(r);
	if (ret < 0)
		uffd_unregister(&eng.uffd, r->base, r->len);
	pthread_mutex_unlock(&eng.ev_lock);
	if (ret < 0)
		goto fail;
	return base;

fail:
	if (base != MAP_FAILED)
		munmap(base, r->len);
	if (wrapped)
		r->store = store_inject_detach(r->store);
	*err = ret;
	return NULL;
}

API void *umapd_map(void *addr, size_t length, int prot, int flags, int fd, off_t offset,
		    const struct umapd_region_opts *opts)
{
	int want = cl_wanted(); /* daemon mode (lib/client) */

	if (want < 0) {
		errno = -want;
		return NULL;
	}
	if (want) {
		int err;
		void *p = cl_map(addr, length, prot, flags, fd, offset, opts, &err);

		if (p || err != -ENOTCONN)
			return p ? p : (errno = -err, NULL);
	}
	if (eng.started)
		zombies_free(zombies_collect(0));

	struct eng_region *r = calloc(1, sizeof(*r));
	size_t sys = (size_t)sysconf(_SC_PAGESIZE);
	void *base = NULL;
	int ret;

	if (!r) {
		errno = ENOMEM;
		return NULL;
	}
	ret = region_layout(r, length, prot, flags, offset, opts);
	if (ret == 0 && (flags & UMAPD_FIXED) && (!addr || (uintptr_t)addr % sys))
		ret = -EINVAL;
	if (ret == 0)
		ret = store_file_open(fd, r->writable, r->direct, &r->store);
	if (ret == 0)
		base = map_region(r, addr, prot, flags, &ret);
	if (base)
		return base;
	if (r->store)
		store_close(r->store);
	free(r);
	errno = -ret;
	return NULL;
}

API void *umapd_map_store(void *addr, size_t length, int prot, int flags, struct umapd_store *store,
			  uint64_t offset, const struct umapd_region_opts *opts)
{
	if (eng.started)
		zombies_free(zombies_collect(0));

	struct eng_region *r;
	size_t sys = (size_t)sysconf(_SC_PAGESIZE);
	void *base = NULL;
	int ret;

	if (!store) {
		errno = EFAULT;
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		errno = ENOMEM;
		return NULL;
	}
	ret = offset > (uint64_t)INT64_MAX ? -EOVERFLOW : region_layout(r, length, prot, flags, (off_t)offset, opts);
	/* The store does its own I/O; its extents carry any alignment it needs. */
	r->direct = false;
	if (ret == 0 && (flags & UMAPD_FIXED) && (!addr || (uintptr_t)addr % sys))
		ret = -EINVAL;
	if (ret == 0)
		ret = store_plugin_wrap(store, r->writable, &r->store);
	if (ret == 0)
		base = map_region(r, addr, prot, flags, &ret);
	if (base)
		return base;
	if (r->store)
		store_plugin_unwrap(r->store); /* the store stays the caller's */
	free(r);
	errno = -ret;
	return NULL;
}

/* Free a region nobody uses any more and whose pages are all gone. */
static void region_free(struct eng_region *r)
{
	eng_retire(r);
	store_close(r->store);
	pthread_mutex_lock(&eng.lock);
	pg_forget_region(r);
	ra_mark_free_all(r);
	pthread_mutex_unlock(&eng.lock);
	free(r->holes);
	free(r);
}

/*
 * Regions the application unmapped wholly wait on eng.zombies until no
 * thread uses them (their last fill or eviction has finished); API calls
 * free them.  take: only the one at base, waiting for it if needed.
 */
static struct eng_region *zombies_collect(uintptr_t take)
{
	struct eng_region *done = NULL, **pp;

	pthread_mutex_lock(&eng.lock);
	for (pp = &eng.zombies; *pp;) {
		struct eng_region *z = *pp;
		bool idle = atomic_load_explicit(&z->refs, memory_order_acquire) == 0 && z->nresident == 0;

		if (take ? z->base == take : idle) {
			*pp = z->zlink;
			z->zlink = done;
			done = z;
		} else {
			pp = &z->zlink;
		}
	}
	pthread_mutex_unlock(&eng.lock);
	return done;
}

static void zombies_free(struct eng_region *z)
{
	while (z) {
		struct eng_region *next = z->zlink;

		/* Users finish their one operation without waiting on us. */
		while (atomic_load_explicit(&z->refs, memory_order_acquire) > 0)
			sched_yield();
		region_free(z);
		z = next;
	}
}

static void drop_page(struct eng_page *p, void *arg)
{
	(void)arg;
	pg_remove(p);
}

/* Unregister and unmap what is still ours of r: its span less the holes. */
static void region_release(struct eng_region *r)
{
	uintptr_t at = r->base, end = r->base + r->len;
	size_t h = 0;

	while (at < end) {
		uintptr_t stop = h < r->nholes ? r->holes[h].start : end;

		if (stop > at) {
			int ret = uffd_unregister(&eng.uffd, at, stop - at);

			if (ret < 0 && ret != -ENOENT && ret != -EINVAL)
				ulog_warn("region %p: UFFDIO_UNREGISTER: %s", (void *)r->base, ulog_errname(-ret));
			if (munmap((void *)at, stop - at) < 0)
				ulog_warn("region %p: munmap: %s", (void *)r->base, ulog_errname(errno));
		}
		if (h >= r->nholes)
			break;
		if (r->holes[h].end > at)
			at = r->holes[h].end;
		h++;
	}
}

API int umapd_unmap(void *addr)
{
	struct eng_region *r;
	int ret;

	ret = cl_unmap(addr); /* a daemon region? */
	if (ret != -ENOENT)
		return ret < 0 ? fail(ret) : 0;
	if (!addr || !eng.started)
		return fail(-EINVAL);
	/* If the application munmap()ed the region, its UNMAP event has been
	 * read (munmap waits for that) but may still be being handled: wait
	 * for the handling, so that we do not unmap what the application may
	 * have mapped there since. */
	pthread_mutex_lock(&eng.ev_lock);
	pthread_mutex_unlock(&eng.ev_lock);
	zombies_free(zombies_collect(0));
	r = rg_get_exact((uintptr_t)addr);
	if (!r) {
		/* Unmapped by the application already: just free what is left. */
		struct eng_region *z = zombies_collect((uintptr_t)addr);

		if (!z)
			return fail(-EINVAL);
		zombies_free(z);
		return 0;
	}
	pthread_mutex_lock(&eng.lock);
	if (r->frozen) { /* another thread is unmapping it */
		pthread_mutex_unlock(&eng.lock);
		rg_put(r);
		return fail(-EINVAL);
	}
	r->frozen = true;
	pthread_mutex_unlock(&eng.lock);

	ret = wb_unmap(r);
	if (ret < 0) {
		/* Keep everything: the region stays usable and the caller can retry. */
		pthread_mutex_lock(&eng.lock);
		r->frozen = false;
		pthread_mutex_unlock(&eng.lock);
		uffd_wake(&eng.uffd, r->base, r->len);
		rg_put(r);
		return fail(ret);
	}
	if (rg_detach(r) < 0) {
		/* The application unmapped all of it meanwhile; the event handler
		 * took it out of the table and the zombie list frees it. */
		rg_put(r);
		return 0;
	}
	rg_wait_unused(r);
	pthread_mutex_lock(&eng.lock);
	pg_for_range(r, 0, r->npages, drop_page, NULL);
	pthread_cond_broadcast(&eng.page_cv);
	pthread_mutex_unlock(&eng.lock);
	if (!r->gone)
		region_release(r);
	region_free(r);
	return 0;
}

/* Apply fn to the page range of every region overlapping [addr, addr+length). */
static int for_regions(void *addr, size_t length,
		       int (*fn)(struct eng_region *r, uint64_t first, uint64_t end, void *arg), void *arg)
{
	uintptr_t s = (uintptr_t)addr, e;
	struct eng_region **v;
	size_t n;
	int ret, first_err = 0;

	if (!addr || length == 0 || s > UINTPTR_MAX - length)
		return -EINVAL;
	if (!eng.started)
		return -ENOMEM;
	e = s + length;
	ret = rg_get_range(s, e, &v, &n);
	if (ret < 0)
		return ret;
	if (n == 0) {
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct eng_region *r = v[i];
		uint64_t first, end;

		rg_page_span(r, s, e, &first, &end);
		ret = fn(r, first, end, arg);
		if (ret < 0 && !first_err)
			first_err = ret;
		rg_put(r);
	}
	free(v);
	return first_err;
}

static int do_writeback(struct eng_region *r, uint64_t first, uint64_t end, void *arg)
{
	return wb_range(r, first, end, *(bool *)arg);
}

/* Only the pages wholly inside the range: a page partly outside holds data
 * the caller did not give up. */
static int do_discard(struct eng_region *r, uint64_t first, uint64_t end, void *arg)
{
	const uintptr_t *range = arg;
	uintptr_t s = range[0] > r->base ? range[0] : r->base;
	uintptr_t e = range[1] < r->base + r->len ? range[1] : r->base + r->len;

	(void)first;
	(void)end;
	first = (s - r->base + r->psize - 1) >> r->pshift;
	end = e == r->base + r->len ? r->npages : (e - r->base) >> r->pshift;
	return first < end ? wb_discard(r, first, end) : 0;
}

static int do_prefetch(struct eng_region *r, uint64_t first, uint64_t end, void *arg)
{
	(void)arg;
	return fault_prefetch(r, first, end);
}

static int do_advice(struct eng_region *r, uint64_t first, uint64_t end, void *arg)
{
	(void)first;
	(void)end;
	pthread_mutex_lock(&eng.lock);
	r->advice = *(int *)arg;
	memset(r->streams, 0, sizeof(r->streams));
	pthread_mutex_unlock(&eng.lock);
	return 0;
}

API int umapd_flush(void *addr, size_t length)
{
	bool evict = false;
	int cr = cl_range(addr, length, evict); /* daemon regions in the range */
	int ret = for_regions(addr, length, do_writeback, &evict);

	ret = cr < 0 ? cr : cr > 0 && ret == -ENOMEM ? 0 : ret;
	return ret < 0 ? fail(ret) : 0;
}

API int umapd_evict(void *addr, size_t length)
{
	bool evict = true;
	int cr = cl_range(addr, length, evict);
	int ret = for_regions(addr, length, do_writeback, &evict);

	ret = cr < 0 ? cr : cr > 0 && ret == -ENOMEM ? 0 : ret;
	return ret < 0 ? fail(ret) : 0;
}

API int umapd_discard(void *addr, size_t length)
{
	uintptr_t range[2] = { (uintptr_t)addr, (uintptr_t)addr + length };
	int ret = for_regions(addr, length, do_discard, range);

	return ret < 0 ? fail(ret) : 0;
}

API int umapd_prefetch(void *addr, size_t length)
{
	if (cl_owns(addr))
		return 0; /* a daemon region: the daemon reads ahead by itself */
	int ret = for_regions(addr, length, do_prefetch, NULL);

	return ret < 0 ? fail(ret) : 0;
}

API int umapd_advise(void *addr, size_t length, int advice)
{
	int ret;

	switch (advice) {
	case UMAPD_ADV_NORMAL:
	case UMAPD_ADV_SEQUENTIAL:
	case UMAPD_ADV_RANDOM:
		if (cl_owns(addr))
			return 0; /* a daemon region: advice is the daemon's to infer */
		ret = for_regions(addr, length, do_advice, &advice);
		break;
	case UMAPD_ADV_WILLNEED:
		return umapd_prefetch(addr, length);
	case UMAPD_ADV_DONTNEED:
		return umapd_evict(addr, length);
	default:
		ret = -EINVAL;
	}
	return ret < 0 ? fail(ret) : 0;
}

API int umapd_stats(struct umapd_stats *out)
{
	if (!out)
		return fail(-EFAULT);
	eng_stats(out);
	return 0;
}

API int umapd_region_stats(void *addr, struct umapd_stats *out)
{
	struct eng_region *r;

	if (!out)
		return fail(-EFAULT);
	r = eng.started ? rg_get((uintptr_t)addr) : NULL;
	if (!r)
		return fail(-EINVAL);
	eng_region_stats(r, out);
	rg_put(r);
	return 0;
}

API size_t umapd_region_page_size(void *addr)
{
	size_t cps = cl_page_size(addr); /* a daemon region? */

	if (cps)
		return cps;
	struct eng_region *r = eng.started ? rg_get((uintptr_t)addr) : NULL;
	size_t ps;

	if (!r) {
		errno = EINVAL;
		return 0;
	}
	ps = r->psize;
	rg_put(r);
	return ps;
}

/*
 * At exit(), write back what is dirty, as the kernel does for a MAP_SHARED
 * mapping: a program that never calls umapd_unmap() still finds its data
 * in the file.  _exit() and crashes skip this (docs/failure-semantics.md).
 * A forked child shares our userfaultfd but not our regions: it must not
 * act on them, so only the process that started the engine flushes.
 */
__attribute__((destructor)) static void umapd_flush_at_exit(void)
{
	struct eng_region **v;
	size_t n;

	if (!eng.started || getpid() != eng.pid || rg_get_range(0, UINTPTR_MAX, &v, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		int ret = wb_range(v[i], 0, v[i]->npages, false);

		if (ret < 0)
			ulog_error("region %p: write-back at exit failed: %s; its dirty data is lost",
				   (void *)v[i]->base, ulog_errname(-ret));
		rg_put(v[i]);
	}
	free(v);
}
