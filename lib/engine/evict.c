/*
 * Eviction and write-back.
 *
 * Evictors run when the resident bytes pass the high water mark and stop
 * below the low one.  A CLOCK hand picks victims: a page touched since the
 * hand last passed (its fault, its first write) gets a second chance.
 *
 * Writing a dirty page back follows DESIGN.md section 5: write-protect it
 * (writers now block in a WP fault), write() it to the store straight from
 * the region (the page is present, so the kernel only reads it), then, to
 * evict, MADV_DONTNEED it.  A page is dropped only after its write
 * succeeded; a failed write unprotects it and leaves it DIRTY, and the
 * error is kept for the next flush (like fsync).
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <time.h>

#include "engine/engine.h"
#include "util/log.h"
#include "util/sanitizer.h"

#define EVICT_BATCH 64

void (*eng_test_wb_hook)(uintptr_t addr, size_t len, bool evict);
int (*eng_test_move_hook)(int ret, size_t *moved);

/* Take p as a victim, under eng.lock.  A reference per victim keeps the
 * region alive until its eviction is finished, after the page itself is
 * gone. */
static void clock_take(struct eng_page *p)
{
	atomic_fetch_add_explicit(&p->region->refs, 1, memory_order_acquire);
	p->was_dirty = p->state == PG_DIRTY;
	pg_set_state(p, PG_EVICTING);
}

/*
 * The dirty neighbours of a dirty victim p that the hand would take too
 * (not touched since it last passed them), up to EVICT_CLUSTER each way
 * and room in all, go with it: their write-backs merge into one write.
 * Under random read-modify-write the CLOCK's victims are scattered, each a
 * 4 KiB write of its own, and the device, not the CPU, is the limit (the
 * kernel's write-back of a file mapping merges neighbours the same way);
 * and a page the hand would take anyway on this lap is as good a victim
 * now.  Returns how many were added to v.
 */
#define EVICT_CLUSTER 8

static size_t clock_cluster(struct eng_page *p, struct eng_page **v, size_t room)
{
	size_t n = 0;

	for (int dir = -1; dir <= 1; dir += 2) {
		for (uint64_t k = 1; k <= EVICT_CLUSTER && n < room; k++) {
			struct eng_page *q;

			if (dir < 0 && k > p->index)
				break;
			q = pg_lookup(p->region, dir < 0 ? p->index - k : p->index + k);
			if (!q || q->state != PG_DIRTY || q->referenced)
				break;
			clock_take(q);
			v[n++] = q;
		}
	}
	return n;
}

/* Pick up to max victims under eng.lock: state EVICTING, was_dirty set. */
static size_t clock_select(struct eng_page **v, size_t max)
{
	struct eng_page *p = eng.hand;
	uint64_t budget_scan, scanned = 0;
	size_t n = 0;

	if (!p)
		return 0;
	/* Two laps at most: the first may only clear referenced bits. */
	budget_scan = 2 * (eng.resident_bytes / eng.sys_psize) + 2;
	while (n < max && scanned++ < budget_scan) {
		struct eng_page *next = p->cnext;

		if (!pg_busy(p->state) && !p->region->frozen) {
			if (p->referenced) {
				p->referenced = 0;
			} else {
				clock_take(p);
				v[n++] = p;
				if (p->was_dirty)
					n += clock_cluster(p, v + n, max - n);
			}
		}
		p = next;
	}
	eng.hand = p;
	return n;
}

static int cmp_page(const void *a, const void *b)
{
	const struct eng_page *x = *(struct eng_page *const *)a, *y = *(struct eng_page *const *)b;

	if (x->region != y->region)
		return x->region < y->region ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Length of the run of pages v[0..] with consecutive indexes and the same
 * dirtiness. */
static size_t run_len(struct eng_page **v, size_t n, bool by_dirty)
{
	size_t k = 1;

	while (k < n && v[k]->index == v[0]->index + k && (!by_dirty || v[k]->was_dirty == v[0]->was_dirty))
		k++;
	return k;
}

/* Write a run of dirty, write-protected pages now (write_io.c clamps it to
 * the end of a file that may not grow). */
static int wb_write_run(struct eng_region *r, uint64_t first, size_t npages, uintptr_t src, uint64_t *written)
{
	struct wr_write w;

	wr_prep(r, first, npages, src, &w);
	wr_run(&w, 1);
	*written = w.len;
	return w.res;
}

/* A run of pages with consecutive indexes and the same dirtiness. */
struct wb_run {
	size_t at, k;     /* v[at .. at+k) */
	uintptr_t addr;
	size_t bytes;
	bool dirty;       /* its pages were dirty when taken */
	bool evict;       /* EVICTING (drop), else WRITEBACK (keep) */
	bool wake;        /* someone waits on one of its pages */
	bool parked;      /* dirty, written by moving it out first (wb_park) */
	uintptr_t sbase;  /* parked: where in the staging area */
	size_t dropped;   /* pages removed at completion */
	size_t npinned;   /* pages found pinned, kept dirty */
	int ret;          /* 0, a store error, or -EAGAIN: not done, try again later */
	bool written;     /* its dirty data reached the store */
};

/*
 * Drop the runs that are ready, all at once: process_madvise() on our own
 * pidfd takes a vector and (Linux 6.16+) flushes the TLB once for all of
 * it, where one madvise() per run would interrupt the other CPU per run.
 * Falls back to madvise() where process_madvise() refuses MADV_DONTNEED.
 */
static void wb_drop(struct eng_region *r, struct wb_run *runs, size_t nruns, struct eng_page **v)
{
	static _Atomic int pidfd = -2; /* -2 unknown, -1 unusable */
	struct iovec iov[UIO_MAXIOV];
	size_t idx[UIO_MAXIOV], niov = 0, done = 0;
	int fd = atomic_load_explicit(&pidfd, memory_order_relaxed);

	if (fd == -2) {
		int nfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
		int expect = -2;

		if (nfd < 0)
			nfd = -1;
		if (!atomic_compare_exchange_strong(&pidfd, &expect, nfd) && nfd >= 0)
			close(nfd);
		fd = atomic_load(&pidfd);
	}
	/* Never zap a range the application unmapped meanwhile: it may have
	 * mapped something of its own there since (its munmap raised UNMAP,
	 * which marked the pages dead).  The window between that munmap and
	 * the event's handling remains: docs/failure-semantics.md. */
	pthread_mutex_lock(&eng.lock);
	for (size_t i = 0; i < nruns; i++)
		for (size_t j = 0; runs[i].ret == 0 && runs[i].evict && j < runs[i].k; j++)
			if (pg_dead(v[runs[i].at + j]))
				runs[i].ret = -EAGAIN;
	pthread_mutex_unlock(&eng.lock);
	for (size_t i = 0; i < nruns && niov < UIO_MAXIOV; i++) {
		if (runs[i].ret < 0 || !runs[i].evict || runs[i].parked)
			continue;
		iov[niov] = (struct iovec){ .iov_base = (void *)runs[i].addr, .iov_len = runs[i].bytes };
		idx[niov++] = i;
	}
	if (fd >= 0 && niov > 1) {
		ssize_t got = syscall(SYS_process_madvise, fd, iov, niov, MADV_DONTNEED, 0);

		if (got < 0 && (errno == EINVAL || errno == EPERM || errno == ENOSYS))
			atomic_store(&pidfd, -1); /* this kernel refuses: use madvise from now on */
		/* Whole runs covered by the bytes advised are done. */
		for (size_t b = got > 0 ? (size_t)got : 0; done < niov && iov[done].iov_len <= b; done++)
			b -= iov[done].iov_len;
	}
	for (size_t j = done; j < niov; j++) {
		struct wb_run *u = &runs[idx[j]];

		if (madvise((void *)u->addr, u->bytes, MADV_DONTNEED) < 0) {
			/* ENOMEM: unmapped meanwhile; anything else is logged.  Not
			 * dropped either way: the pages stay, clean or dirty. */
			if (errno != ENOMEM)
				ulog_error("region %p: MADV_DONTNEED at %p: %s", (void *)r->base,
					   (void *)u->addr, ulog_errname(errno));
			u->ret = -EAGAIN;
		}
	}
	for (size_t i = 0; i < nruns; i++) /* past the vector's capacity: not dropped */
		if (runs[i].ret == 0 && runs[i].evict && !runs[i].parked && (niov == 0 || i > idx[niov - 1]))
			runs[i].ret = -EAGAIN;
}

/*
 * Write pages [first, first+k) of r (at addr) from a CPU copy, a bounce
 * buffer at a time: for kernels where write()/pwrite() straight out of a
 * write-protected page can hang (the gup read-COW bug of seed 001,
 * UMAPD_EVICT_COPY=bounce).  The pages are present and write-protected,
 * so reading them cannot fault; a page the application zapped faults,
 * and a filler puts the store's data back (fault_refill_busy).
 */
#define BOUNCE_CHUNK ((size_t)1 << 20)

static int wb_write_bounced(struct eng_region *r, uint64_t first, size_t k, uintptr_t addr, uint64_t *written)
{
	size_t cap = r->psize > BOUNCE_CHUNK ? r->psize : BOUNCE_CHUNK;
	void *buf = NULL;
	int ret = 0;

	*written = 0;
	if (posix_memalign(&buf, eng.sys_psize, cap) != 0)
		return -ENOMEM;
	for (size_t j = 0; j < k && ret == 0;) {
		size_t n = 0, bytes = 0;
		uint64_t w = 0;

		while (j + n < k && (n == 0 || bytes + pg_len(r, first + j + n) <= cap))
			bytes += pg_len(r, first + j + n), n++;
		SAN_IGNORE_READS_BEGIN();
		memcpy(buf, (const void *)(addr + (j << r->pshift)), bytes);
		SAN_IGNORE_READS_END();
		ret = wb_write_run(r, first + j, n, (uintptr_t)buf, &w);
		*written += w;
		j += n;
	}
	free(buf);
	return ret;
}

/*
 * Protect pages [first, first+k) of r, at addr (bytes long), and write
 * them to the store straight from the region.  Returns 0, a store error,
 * or -EAGAIN when the address space moved under us (the mm is changing,
 * or the range was unmapped or moved): not the store's fault, so it is
 * retried later and never reported as a write error.
 */
static int wb_write_direct(struct eng_region *r, uint64_t first, size_t k, uintptr_t addr, size_t bytes)
{
	uint64_t written = 0;
	int ret = uffd_writeprotect(&eng.uffd, addr, bytes, true, false);
	bool ours = ret < 0; /* the failure is the ioctl's, not the store's */

	if (ret == 0)
		ret = eng.evict_bounce ? wb_write_bounced(r, first, k, addr, &written)
				       : wb_write_run(r, first, k, addr, &written);
	if (ret == 0) {
		atomic_fetch_add_explicit(&r->c.bytes_written, written, memory_order_relaxed);
		return 0;
	}
	/* Keep the data: unprotect (which wakes blocked writers) and leave the
	 * pages dirty for a later try. */
	int uret = uffd_writeprotect(&eng.uffd, addr, bytes, false, false);

	if (ours || ret == -EFAULT) {
		if (ret != -EAGAIN && ret != -ENOENT && ret != -EFAULT)
			ulog_error("region %p: write-protecting %p: %s", (void *)r->base, (void *)addr,
				   ulog_errname(-ret));
		return -EAGAIN;
	}
	if (uret < 0 && uret != -ENOENT && uret != -EAGAIN)
		ulog_error("region %p: unprotect after failed write: %s", (void *)r->base, ulog_errname(-uret));
	ulog_error("region %p: write-back of %zu bytes at store offset %llu failed: %s", (void *)r->base, bytes,
		   (unsigned long long)(r->offset + (first << r->pshift)), ulog_errname(-ret));
	atomic_fetch_add_explicit(&r->c.io_errors, 1, memory_order_relaxed);
	return ret;
}

/*
 * Write runs of dirty pages back by moving them out first.
 *
 * A page can change without a fault: a DMA into it (an O_DIRECT or
 * io_uring/libaio read, process_vm_writev) writes through a page pin, which
 * write protection does not see.  Writing such a page and then dropping
 * it, or calling it clean, loses whatever the DMA writes after our write.
 * UFFDIO_MOVE takes a page out of the region atomically and refuses a
 * pinned one (EBUSY).  So each page is first moved to a staging area: once
 * there it is not pinned and nothing can reach it, and it is written from
 * there.  To evict, it then simply stays in staging until the area is
 * cleared (its slot in the region is empty, as after MADV_DONTNEED); to
 * keep it (flush), a write-protected copy is installed back with
 * UFFDIO_COPY (moving it back would map it writable until a separate
 * protect, and a write in between would be lost).  A page that does not
 * move (pinned, partly zapped, or the mm is changing) is written straight
 * from the region as before and stays DIRTY (`pinned`), so what a DMA
 * brings is written later.  Pages are marked `dropping` by the caller, so
 * a fault on an empty slot waits instead of refilling it.
 *
 * wb_park() moves one run to u->sbase; wb_write_parked() then writes the
 * parked runs of a staging area's worth all at once (write_io.c).
 */
static void wb_park(struct eng_region *r, struct wb_run *u, struct eng_page **v)
{
	size_t j = 0, off = 0;

	/* The run is contiguous in the region and packed in staging, so one
	 * UFFDIO_MOVE takes as much of it as moves (and kernels that batch
	 * the TLB flush of a move, as 6.18 here does, then interrupt the
	 * other CPU once per run, not once per page: 22 us for a 64-page run
	 * against 17 us per page moved alone).  Where it stops, that page
	 * stays (pinned, zapped, or the mm is changing) and the rest is
	 * retried. */
	while (j < u->k) {
		struct eng_page *p = v[u->at + j];
		size_t moved = 0, back = 0, len;
		int mret = uffd_move(&eng.uffd, u->sbase + off, pg_addr(r, p->index), u->bytes - off, false, &moved);

		if (eng_test_move_hook)
			mret = eng_test_move_hook(mret, &moved);
		if (mret < 0) {
			/* How far did it get?  The page tables say, not the
			 * count: Linux 6.18 can fail a move with EEXIST after
			 * moving the page, when the page was being migrated
			 * (compaction), or with EAGAIN and a count short of
			 * the pages it moved.  Taken at its word, the moved page -
			 * the only copy of its dirty data - was left in staging
			 * to be cleared, and the page "kept" in its empty slot
			 * was written from a refill of the store's stale bytes
			 * (the lost stores of stress.rmw_threads; see
			 * docs/kernel-interactions.md).  Staging is empty from
			 * off on before the move, so a page there now, and gone
			 * from its slot, moved. */
			size_t there = stage_filled(u->sbase + off, pg_addr(r, p->index), u->bytes - off);

			if (there > moved) {
				static atomic_flag warned = ATOMIC_FLAG_INIT;

				if (!atomic_flag_test_and_set_explicit(&warned, memory_order_relaxed))
					ulog_warn("UFFDIO_MOVE failed with %s after moving %zu bytes it reported as %zu "
						  "(a kernel bug, seen while pages are migrated); going by the page "
						  "tables (logged once)", ulog_errname(-mret), there, moved);
				moved = there;
			}
		}
		while (j < u->k && moved >= (len = pg_len(r, v[u->at + j]->index))) {
			moved -= len;
			off += len;
			j++;
		}
		if (mret == 0 || j == u->k)
			break;
		/* Page j did not move (or moved in part: a large page is moved
		 * one base page at a time): put back what went, keep it. */
		p = v[u->at + j];
		len = pg_len(r, p->index);
		if (mret == -EBUSY)
			atomic_fetch_add_explicit(&r->c.pinned_pages, 1, memory_order_relaxed);
		if (moved > 0 && uffd_move(&eng.uffd, pg_addr(r, p->index), u->sbase + off, moved, true, &back) < 0)
			ulog_error("region %p: cannot move page %p back from staging", (void *)r->base,
				   (void *)pg_addr(r, p->index));
		p->pinned = 1;
		off += len;
		j++;
	}
	/* A page that stayed is written from the region, and may have been
	 * zapped by the application (ENOENT above): its slot is no longer
	 * ours to keep empty, so a fault there (our own write's) refills it. */
	pthread_mutex_lock(&eng.lock);
	for (size_t t = 0; t < u->k; t++)
		if (v[u->at + t]->pinned)
			v[u->at + t]->dropping = 0;
	pthread_mutex_unlock(&eng.lock);
}

/* A stretch of a parked run being written: pages [j, j+k) of run u, at
 * byte off of it. */
struct wb_stretch {
	struct wb_run *u;
	size_t j, k, off, bytes;
};

#define WB_BATCH 64

/* The writes of a batch of moved stretches are done: count them, put back
 * what is kept or failed, and note errors. */
static void wb_parked_done(struct eng_region *r, struct wb_stretch *s, struct wr_write *w, size_t n,
			   struct eng_page **v)
{
	for (size_t i = 0; i < n; i++) {
		struct wb_run *u = s[i].u;
		struct eng_page *p = v[u->at + s[i].j];
		int ret = w[i].res;

		if (ret == 0)
			atomic_fetch_add_explicit(&r->c.bytes_written, w[i].len, memory_order_relaxed);
		else
			atomic_fetch_add_explicit(&r->c.io_errors, 1, memory_order_relaxed);
		/* Kept, or not written: put a protected copy back. */
		if (!u->evict || ret < 0) {
			int cret;

			/* EAGAIN: an event is pending; read it (and defer any
			 * faults) so the mm settles, then try again. */
			for (int tries = 0;; tries++) {
				cret = uffd_copy(&eng.uffd, pg_addr(r, p->index), (const void *)(u->sbase + s[i].off),
						 s[i].bytes, eng.uffd.can_wp, true, NULL);
				if (cret != -EAGAIN || tries >= 10000)
					break;
				fault_drain();
				sched_yield();
			}
			if (cret < 0 && cret != -ENOENT) /* ENOENT: unmapped meanwhile */
				ulog_error("region %p: reinstalling %zu bytes at %p after write-back: %s",
					   (void *)r->base, s[i].bytes, (void *)pg_addr(r, p->index), ulog_errname(-cret));
			for (size_t t = 0; ret < 0 && t < s[i].k; t++)
				v[u->at + s[i].j + t]->pinned = 1; /* dirty still */
		}
		if (ret < 0) {
			ulog_error("region %p: write-back of %zu bytes at store offset %llu failed: %s",
				   (void *)r->base, s[i].bytes,
				   (unsigned long long)(r->offset + (p->index << r->pshift)), ulog_errname(-ret));
			if (!u->ret)
				u->ret = ret;
		}
	}
}

/* Write the parked runs u[0..n): moved stretches together, pages that
 * stayed in the region (pinned) straight from it. */
static void wb_write_parked(struct eng_region *r, struct wb_run *runs, size_t n, struct eng_page **v)
{
	struct wb_stretch s[WB_BATCH];
	struct wr_write w[WB_BATCH];
	size_t ns = 0;

	for (size_t ri = 0; ri < n; ri++) {
		struct wb_run *u = &runs[ri];
		size_t off = 0;

		if (!u->parked)
			continue;
		for (size_t j = 0; j < u->k;) {
			struct eng_page *p = v[u->at + j];
			bool pinned = p->pinned;
			size_t k = 1, bytes = pg_len(r, p->index);

			while (j + k < u->k && v[u->at + j + k]->pinned == pinned)
				bytes += pg_len(r, v[u->at + j + k]->index), k++;
			if (pinned) {
				int ret = wb_write_direct(r, p->index, k, pg_addr(r, p->index), bytes);

				if (ret < 0 && !u->ret)
					u->ret = ret;
			} else {
				s[ns] = (struct wb_stretch){ .u = u, .j = j, .k = k, .off = off, .bytes = bytes };
				wr_prep(r, p->index, k, u->sbase + off, &w[ns]);
				if (++ns == WB_BATCH) {
					wr_run(w, ns);
					wb_parked_done(r, s, w, ns, v);
					ns = 0;
				}
			}
			off += bytes;
			j += k;
		}
	}
	if (ns > 0) {
		wr_run(w, ns);
		wb_parked_done(r, s, w, ns, v);
	}
}

/*
 * Finish the pages v[0..n) of one region, all in WRITEBACK or EVICTING and
 * sorted by index: protect and write the dirty ones, then drop the
 * EVICTING ones whose data is safe.  Returns 0, the first store error, or
 * -EAGAIN if some pages could not be done now and are back as they were.
 */
static int wb_pages(struct eng_region *r, struct eng_page **v, size_t n, uint64_t *freed)
{
	struct wb_run *runs = malloc(n * sizeof(*runs));
	size_t nruns = 0, ndrop = 0, nmark = 0, used = 0;
	bool can_move = (eng.uffd.features & UFFD_FEATURE_MOVE) && r->psize <= STAGE_BYTES;
	struct stage *st = NULL;
	bool again = false, unmapping;
	int first_err = 0;

	if (!runs) {
		/* Give the pages back untouched (waking anyone who faulted on them
		 * meanwhile); the caller tries again later. */
		pthread_mutex_lock(&eng.lock);
		for (size_t i = 0; i < n; i++) {
			pg_set_state(v[i], v[i]->was_dirty ? PG_DIRTY : PG_CLEAN);
			v[i]->was_dirty = 0;
			if (v[i]->wake_needed) {
				v[i]->wake_needed = 0;
				uffd_wake(&eng.uffd, pg_addr(r, v[i]->index), pg_len(r, v[i]->index));
			}
		}
		pthread_cond_broadcast(&eng.page_cv);
		pthread_mutex_unlock(&eng.lock);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; nruns++) {
		struct wb_run *u = &runs[nruns];

		u->at = i;
		u->k = run_len(v + i, n - i, true);
		u->addr = pg_addr(r, v[i]->index);
		u->bytes = 0;
		for (size_t j = 0; j < u->k; j++) {
			if (can_move && j > 0 && u->bytes + pg_len(r, v[i]->index + j) > STAGE_BYTES) {
				u->k = j; /* a run must fit in one staging area */
				break;
			}
			u->bytes += pg_len(r, v[i]->index + j);
		}
		u->dirty = v[i]->was_dirty;
		u->evict = v[i]->state == PG_EVICTING;
		u->parked = u->dirty && can_move;
		u->wake = false;
		u->dropped = 0;
		u->npinned = 0;
		u->ret = 0;
		if (u->parked)
			nmark++;
		i += u->k;
	}
	if (nmark > 0) {
		/* From here a missing fault on these pages is our own move, not
		 * the application zapping them: see fault_refill_busy. */
		pthread_mutex_lock(&eng.lock);
		for (size_t ri = 0; ri < nruns; ri++)
			for (size_t j = 0; runs[ri].parked && j < runs[ri].k; j++)
				v[runs[ri].at + j]->dropping = 1;
		pthread_mutex_unlock(&eng.lock);
	}
	if (can_move && stage_get(&st) < 0) {
		/* No staging area: protect, write straight from the region and
		 * drop, as on kernels without UFFDIO_MOVE.  Keeping the pages
		 * dirty instead would free nothing, and with the budget full of
		 * dirty pages no fault could ever be served.  What is lost is the
		 * check for a DMA writing through a pin (see wb_park). */
		static atomic_flag warned = ATOMIC_FLAG_INIT;

		if (!atomic_flag_test_and_set_explicit(&warned, memory_order_relaxed))
			ulog_warn("no staging area for write-back: writing dirty pages straight from the region, "
				  "without seeing pages pinned by a DMA (logged once)");
		for (size_t ri = 0; ri < nruns; ri++)
			runs[ri].parked = false;
		pthread_mutex_lock(&eng.lock);
		for (size_t ri = 0; ri < nruns; ri++)
			for (size_t j = 0; j < runs[ri].k; j++)
				v[runs[ri].at + j]->dropping = 0;
		pthread_mutex_unlock(&eng.lock);
	}
	/* A staging area's worth of runs at a time: park them, write them
	 * all, then reuse the area (clearing it drops the evicted ones). */
	for (size_t ri = 0; ri < nruns;) {
		size_t g = ri;

		if (st && used > 0) {
			stage_clear(st, used);
			used = 0;
		}
		for (; ri < nruns; ri++) {
			struct wb_run *u = &runs[ri];

			if (u->parked) {
				if (used + u->bytes > STAGE_BYTES)
					break;
				u->sbase = st->base + used;
				used += u->bytes;
				wb_park(r, u, v);
			} else if (u->dirty) {
				u->ret = wb_write_direct(r, v[u->at]->index, u->k, u->addr, u->bytes);
			}
		}
		wb_write_parked(r, runs + g, ri - g, v);
	}
	for (size_t ri = 0; ri < nruns; ri++) {
		struct wb_run *u = &runs[ri];

		u->written = u->dirty && u->ret == 0;
		if (u->ret < 0 && u->ret != -EAGAIN && !first_err)
			first_err = u->ret;
		if (u->ret == 0 && u->evict && !u->parked)
			ndrop++;
	}
	if (ndrop > 0) {
		/* The same for the drop, now that the writes are done (a write
		 * from a zapped page needs its refill). */
		pthread_mutex_lock(&eng.lock);
		for (size_t ri = 0; ri < nruns; ri++)
			for (size_t j = 0; runs[ri].ret == 0 && runs[ri].evict && !runs[ri].parked && j < runs[ri].k; j++)
				v[runs[ri].at + j]->dropping = 1;
		pthread_mutex_unlock(&eng.lock);
		wb_drop(r, runs, nruns, v);
	}
	if (st) {
		stage_clear(st, used);
		stage_put(st);
	}
	for (size_t ri = 0; eng_test_wb_hook && ri < nruns; ri++)
		if (runs[ri].dirty)
			eng_test_wb_hook(runs[ri].addr, runs[ri].bytes, runs[ri].evict);

	pthread_mutex_lock(&eng.lock);
	for (size_t ri = 0; ri < nruns; ri++) {
		struct wb_run *u = &runs[ri];
		bool failed = u->ret < 0 && u->ret != -EAGAIN;

		if (failed && !r->wb_err)
			r->wb_err = u->ret;
		for (size_t j = 0; j < u->k; j++) {
			struct eng_page *p = v[u->at + j];

			u->wake |= p->wake_needed;
			p->wake_needed = 0;
			/* Unmapped by the application meanwhile, or dropped: a parked
			 * page that moved out is gone from the region whatever its
			 * run's outcome (a failed write put it back `pinned`). */
			if (pg_dead(p) || (u->evict && !p->pinned && (u->parked || u->ret == 0))) {
				if (p->readahead)
					atomic_fetch_add_explicit(&r->c.readahead_wasted, 1, memory_order_relaxed);
				if (!u->dirty)
					rmw_note(p, false);
				pg_remove(p);
				u->dropped++;
				continue;
			}
			/* Kept: clean if its data is in the store and nothing can be
			 * writing it behind our back, else dirty still. */
			pg_set_state(p, p->pinned || (u->dirty && !u->parked && !u->written) ? PG_DIRTY : PG_CLEAN);
			if (p->pinned) {
				p->referenced = 1; /* pinned: try others first next time */
				u->npinned++;
			}
			p->pinned = 0;
			p->was_dirty = 0;
			p->dropping = 0;
		}
	}
	/* An unmap's write-back (wb_unmap) drops what it writes: flushed
	 * pages in the statistics, not evictions. */
	unmapping = r->frozen;
	pthread_cond_broadcast(&eng.page_cv);
	pthread_mutex_unlock(&eng.lock);

	for (size_t ri = 0; ri < nruns; ri++) {
		struct wb_run *u = &runs[ri];

		again |= u->ret == -EAGAIN;
		if (u->wake)
			uffd_wake(&eng.uffd, u->addr, u->bytes);
		if (u->dropped && freed)
			*freed += (uint64_t)u->dropped << r->pshift;
		if (u->dropped && !unmapping) {
			atomic_fetch_add_explicit(&r->c.evictions, u->dropped, memory_order_relaxed);
			if (u->dirty)
				atomic_fetch_add_explicit(&r->c.dirty_evictions, u->dropped, memory_order_relaxed);
		}
		if (u->written && (!u->evict || unmapping))
			atomic_fetch_add_explicit(&r->c.flushed_pages, u->k, memory_order_relaxed);
	}
	free(runs);
	return first_err ? first_err : again ? -EAGAIN : 0;
}

/* Evict a batch picked by the CLOCK: group by region, then write and drop.
 * Returns how many resident bytes it freed. */
static uint64_t evict_batch(struct eng_page **v, size_t n)
{
	uint64_t freed = 0;

	qsort(v, n, sizeof(*v), cmp_page);
	for (size_t i = 0; i < n;) {
		struct eng_region *r = v[i]->region;
		size_t k = 1;

		while (i + k < n && v[i + k]->region == r)
			k++;
		wb_pages(r, v + i, k, &freed);
		for (size_t j = 0; j < k; j++)
			rg_put(r);
		i += k;
	}
	return freed;
}

void *evictor_main(void *arg)
{
	struct eng_page *v[EVICT_BATCH];
	uint64_t last_watch = 0;
	unsigned id = (unsigned)(uintptr_t)arg;

	wr_thread_start();
	eng_thread_ready();
	pthread_mutex_lock(&eng.lock);
	while (!eng.stopping) {
		/* The first evictor also runs the pager watchdog, twice a second. */
		if (id == 0 && eng.nwaiters > 0 && lat_now_ns() - last_watch > 500000000u) {
			last_watch = lat_now_ns();
			pthread_mutex_unlock(&eng.lock);
			fault_watchdog();
			pthread_mutex_lock(&eng.lock);
		}
		uint64_t budget = atomic_load(&eng.budget);

		if (eng.resident_bytes > eng_high_mark() ||
		    (eng.ndeferred > 0 && eng.resident_bytes + eng.sys_psize > budget)) {
			uint64_t target = eng_low_mark();
			bool progress = false;

			while (!eng.stopping && eng.resident_bytes > target) {
				size_t n = clock_select(v, EVICT_BATCH);

				if (n == 0)
					break;
				pthread_mutex_unlock(&eng.lock);
				uint64_t freed = evict_batch(v, n);
				pthread_mutex_lock(&eng.lock);
				/* Nothing freed (pinned pages, failing writes): pause
				 * rather than spin on them. */
				if (freed == 0)
					break;
				progress = true;
			}
			if (eng.ndeferred > 0)
				eng_kick_fillers();
			if (progress)
				continue;
		}
		/* Wake on demand; a timed wait also retries pages that were busy. */
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&eng.evict_cv, &eng.lock, &ts);
	}
	pthread_mutex_unlock(&eng.lock);
	return NULL;
}

/* State of a wb_range pass, passed to the page visitor. */
struct wb_collect {
	struct eng_page **v;
	size_t n, cap;
	bool probe;        /* only look: set busy, take nothing */
	bool evict;        /* take clean pages too, to drop them */
	bool all;          /* unmapping: every busy state counts, not just writes */
	bool fills;        /* evicting: wait for fills in flight too, then drop them */
	bool discard;      /* evicting dead data: drop dirty pages unwritten */
	bool unmap;        /* unmapping: dirty pages are written and dropped, clean ones left */
	bool busy;         /* pages in the range are busy in a way that matters */
	bool nomem;
};

static void wb_visit(struct eng_page *p, void *arg)
{
	struct wb_collect *c = arg;

	if (pg_busy(p->state)) {
		/* A flush waits for writes others started in its range, whose
		 * outcome it reports; an unmap waits for everything. */
		if (c->all || p->state == PG_WRITEBACK || p->state == PG_EVICTING ||
		    (c->fills && p->state == PG_FILLING))
			c->busy = true;
		return;
	}
	if (c->probe || (p->state != PG_DIRTY && !(c->evict && p->state == PG_CLEAN)))
		return;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct eng_page **nv = realloc(c->v, cap * sizeof(*nv));

		if (!nv) {
			c->nomem = true;
			return;
		}
		c->v = nv;
		c->cap = cap;
	}
	/* Discarded pages go as clean ones: dropped, never written. */
	p->was_dirty = p->state == PG_DIRTY && !c->discard;
	pg_set_state(p, c->evict || c->unmap ? PG_EVICTING : PG_WRITEBACK);
	c->v[c->n++] = p;
}

static int wb_collect_range(struct eng_region *r, uint64_t first, uint64_t end, bool evict, bool discard,
			    bool unmap);

int wb_range(struct eng_region *r, uint64_t first, uint64_t end, bool evict)
{
	return wb_collect_range(r, first, end, evict, false, false);
}

int wb_discard(struct eng_region *r, uint64_t first, uint64_t end)
{
	return wb_collect_range(r, first, end, true, true, false);
}

/*
 * An unmap's write-back: its dirty pages are written and dropped, not
 * written and kept (a flush puts each moved page back with UFFDIO_COPY,
 * only for the unmap to free it a moment later), and clean pages are left
 * alone for munmap.  If it fails, the pages not written are kept dirty as
 * in any eviction, and those dropped fault back in from the store.
 */
int wb_unmap(struct eng_region *r)
{
	return wb_collect_range(r, 0, r->npages, false, false, true);
}

static int wb_collect_range(struct eng_region *r, uint64_t first, uint64_t end, bool evict, bool discard,
			    bool unmap)
{
	/* An eviction also waits for fills in flight and drops what they
	 * bring: umapd_evict after a write to the file (the preload library
	 * keeps pwrite and a mapping coherent that way) must not leave a page
	 * read before that write to be installed after it. */
	struct wb_collect c = { .evict = evict, .fills = evict, .discard = discard, .unmap = unmap };
	bool wrote = false, collect = true, recheck = false;
	int err = 0;

	pthread_mutex_lock(&eng.lock);
	c.all = r->frozen;
	for (;;) {
		/* A flush writes what was dirty when it was called and does not
		 * chase later writes; an unmap (the region is frozen, so nothing
		 * can become dirty again) takes whatever busy pages turn into.
		 * But a page that was busy in another thread's write-back when
		 * we collected may come back dirty still: an eviction that found
		 * it pinned wrote what it held then, while a DMA was still
		 * writing it, and kept it dirty.  So once no page of the range is
		 * busy any more, a collect that met busy pages is followed by one
		 * more.  Whether we had to wait for them does not matter: they
		 * often finish while we write the pages we did take, and then the
		 * probe below finds nothing to wait for. */
		if (collect || c.all) {
			collect = false;
			c.n = 0;
			c.probe = false;
			c.nomem = false;
			c.busy = false;
			pg_for_range(r, first, end, wb_visit, &c);
			recheck |= c.busy;
			if (c.n > 0) {
				pthread_mutex_unlock(&eng.lock);
				qsort(c.v, c.n, sizeof(*c.v), cmp_page);
				err = wb_pages(r, c.v, c.n, NULL);
				wrote = true;
				if (err == -EAGAIN) {
					/* The mm was changing (an event is being read) or the
					 * batch was too large: take those pages again. */
					err = 0;
					sched_yield();
					pthread_mutex_lock(&eng.lock);
					collect = true;
					continue;
				}
				pthread_mutex_lock(&eng.lock);
				if (err < 0)
					break;
				continue;
			}
			if (c.nomem) {
				err = -ENOMEM;
				break;
			}
		}
		c.probe = true;
		c.busy = false;
		pg_for_range(r, first, end, wb_visit, &c);
		if (!c.busy) {
			/* Nothing busy, and we hold the lock: the collect this
			 * starts meets no busy page, so it is the last. */
			if (!recheck)
				break;
			recheck = false;
			collect = true;
			continue;
		}
		pthread_cond_wait(&eng.page_cv, &eng.lock);
	}
	if (!discard && !err && r->wb_err)
		err = r->wb_err;
	if (!discard && err == r->wb_err)
		r->wb_err = 0; /* reported once, like fsync (a discard writes nothing to report on) */
	pthread_mutex_unlock(&eng.lock);
	free(c.v);
	if (!err && wrote && !evict) {
		int s = store_sync(r->store);

		if (s < 0 && s != -EINVAL && s != -EROFS)
			err = s;
	}
	return err;
}
