/*
 * Fault service.  Each filler thread reads a batch of messages from the
 * process's userfaultfd, drops duplicates, and serves each one itself:
 * on this class of machine a hand-off to another thread costs more than
 * the whole fault, so the thread that reads a fault fills it.
 *
 * A filler never waits for the evictors (DESIGN.md invariant 5): a fault
 * that finds no budget is deferred, the evictors are kicked, and the
 * filler goes on reading; deferred faults are retried when an evictor
 * reports progress.  The faulting thread simply stays blocked meanwhile.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/engine.h"
#include "util/log.h"

#define MSG_BATCH 64
#define BOUNCE_BYTES (2u << 20)
#define PREFETCH_STEP 64 /* pages of a prefetch served between fault batches */

struct filler {
	void *bounce;                /* synchronous fills: refills, very large pages */
	int ep;
	struct fill_async *fa;       /* fills in flight */
};

#define MAX_WAITERS 1024

/*
 * Remember a fault that waits (under eng.lock); the table is bounded and a
 * full one simply stops recording.  `fresh`: nobody waited on this page
 * until now, so an entry left from an earlier wait (the watchdog drops
 * entries only twice a second) starts its clock again; else a page that
 * was waited on briefly long ago would look stuck the next time it is.
 */
static void waiter_note(uintptr_t addr, bool fresh)
{
	addr &= ~(uintptr_t)(eng.sys_psize - 1);
	for (size_t i = 0; i < eng.nwaiters; i++) {
		if (eng.waiters[i].addr == addr) {
			if (fresh) {
				eng.waiters[i].since = lat_now_ns();
				eng.waiters[i].logged = false;
			}
			return;
		}
	}
	if (!eng.waiters) {
		eng.waiters = calloc(MAX_WAITERS, sizeof(*eng.waiters));
		if (!eng.waiters)
			return;
	}
	if (eng.nwaiters < MAX_WAITERS)
		eng.waiters[eng.nwaiters++] = (struct eng_waiter){ .addr = addr, .since = lat_now_ns() };
}

static const char *state_name(int s)
{
	static const char *const names[] = { "absent", "filling", "clean", "dirty", "unprotecting",
					     "writeback", "evicting" };

	return s >= 0 && s <= PG_EVICTING ? names[s] : "?";
}

void fault_watchdog(void)
{
	uint64_t limit = (uint64_t)atomic_load_explicit(&eng.fault_timeout_ms, memory_order_relaxed) * 1000000u;
	uint64_t now = lat_now_ns();

	for (size_t i = 0;; i++) {
		struct eng_waiter w;
		struct eng_region *r;
		struct eng_page *p;
		bool waiting = false;
		int state = 0;

		pthread_mutex_lock(&eng.lock);
		if (i >= eng.nwaiters) {
			pthread_mutex_unlock(&eng.lock);
			return;
		}
		w = eng.waiters[i];
		pthread_mutex_unlock(&eng.lock);
		if (w.since > now)
			w.since = now; /* noted after this scan began */

		/* Still waiting: on a busy page that someone waits for (a busy
		 * page alone is no stuck fault: an unmap's write-back may hold a
		 * page long after the fault noted here was served), or in the
		 * deferred list. */
		r = rg_get(w.addr);
		pthread_mutex_lock(&eng.lock);
		p = r ? pg_lookup(r, (w.addr - r->base) >> r->pshift) : NULL;
		if (p && pg_busy(p->state) && p->wake_needed) {
			waiting = true;
			state = p->state;
		}
		for (size_t d = 0; !waiting && d < eng.ndeferred; d++)
			waiting = (eng.deferred[d].addr & ~(uintptr_t)(eng.sys_psize - 1)) == w.addr;
		if (!waiting) {
			eng.waiters[i] = eng.waiters[--eng.nwaiters];
			i--;
		} else if (limit && now - w.since > limit && !eng.waiters[i].logged) {
			eng.waiters[i].logged = true;
			pthread_mutex_unlock(&eng.lock);
			if (r)
				atomic_fetch_add_explicit(&r->c.stuck_faults, 1, memory_order_relaxed);
			ulog_error("fault at %p outstanding for %llu ms: region %p, page %llu, %s%s",
				   (void *)w.addr, (unsigned long long)((now - w.since) / 1000000),
				   r ? (void *)r->base : NULL,
				   r ? (unsigned long long)((w.addr - r->base) >> r->pshift) : 0ull,
				   p ? "page " : "", p ? state_name(state) : "deferred (waiting for memory or events)");
			if (r)
				rg_put(r);
			continue;
		}
		pthread_mutex_unlock(&eng.lock);
		if (r)
			rg_put(r);
	}
}

/* Defer a fault (under eng.lock).  Returns false if even that failed. */
static bool fault_defer(uintptr_t addr, uint64_t flags, unsigned tries)
{
	if (eng.ndeferred == eng.cap_deferred) {
		size_t cap = eng.cap_deferred ? eng.cap_deferred * 2 : 64;
		struct eng_deferred *n = realloc(eng.deferred, cap * sizeof(*n));

		if (!n)
			return false;
		eng.deferred = n;
		eng.cap_deferred = cap;
	}
	eng.deferred[eng.ndeferred++] = (struct eng_deferred){ .addr = addr, .flags = flags, .tries = tries };
	waiter_note(addr, tries <= 1); /* tries 1: deferred for the first time */
	eng_kick_evictors();
	return true;
}

static void fault_defer_unlocked(uintptr_t addr, uint64_t flags, unsigned tries)
{
	bool ok;

	pthread_mutex_lock(&eng.lock);
	ok = fault_defer(addr, flags, tries);
	pthread_mutex_unlock(&eng.lock);
	if (!ok)
		ulog_error("cannot defer a fault at %p: out of memory", (void *)addr);
}

void fault_retry_later(uintptr_t addr, uint64_t flags, unsigned tries)
{
	fault_defer_unlocked(addr, flags, tries);
}

/*
 * A fault at an address no live region claims.  A first time, it may be a
 * region moved by an mremap whose event is not read yet: defer it until
 * the events are drained.  A second time, it is registered memory we do
 * not serve (part of a region moved or grown by mremap): fail the access
 * with SIGBUS rather than hand out zeros.  If the range is not registered
 * any more (unmapped meanwhile) the thread is simply woken to retry.
 */
static bool fault_unclaimed(uintptr_t addr, uint64_t flags, unsigned tries)
{
	uintptr_t page = addr & ~(uintptr_t)(eng.sys_psize - 1);
	int ret;

	if (tries == 0) {
		fault_defer_unlocked(addr, flags, 1);
		return false;
	}
	/* With ev_lock no event read so far is still being handled (the
	 * REMAP that would explain this address): look once more. */
	pthread_mutex_lock(&eng.ev_lock);
	struct eng_region *r = rg_get(addr);
	bool live = false;

	if (r) {
		pthread_mutex_lock(&eng.lock);
		live = rg_live(r, addr);
		pthread_mutex_unlock(&eng.lock);
		rg_put(r);
	}
	if (live) {
		pthread_mutex_unlock(&eng.ev_lock);
		fault_defer_unlocked(addr, flags, 1);
		return false;
	}
	if (stage_contains(page)) {
		/* A stale fault of a region unmapped long ago, whose address a
		 * staging area now uses: no thread of the application can be
		 * waiting there, and a poisoned slot would refuse the next move. */
		pthread_mutex_unlock(&eng.ev_lock);
		return true;
	}
	ret = uffd_poison(&eng.uffd, page, eng.sys_psize);
	if (ret == -EOPNOTSUPP) {
		ulog_error("fault at %p outside any region; this kernel cannot poison it, so it reads zeros",
			   (void *)addr);
		ret = uffd_zeropage(&eng.uffd, page, eng.sys_psize);
	}
	pthread_mutex_unlock(&eng.ev_lock);
	if (ret == 0)
		ulog_error("fault at %p outside any region (moved or grown by mremap?): SIGBUS", (void *)addr);
	else
		uffd_wake(&eng.uffd, page, eng.sys_psize);
	return true;
}

/*
 * A missing fault on a page being written back or evicted, which is not
 * present and not being dropped by us: the application zapped it
 * (MADV_DONTNEED), and the writer's own write() may be waiting on this
 * very fault.  Put the store's contents back, write-protected, without
 * touching the page's state: the writer then writes the store's own data
 * back, which is what the application's MADV_DONTNEED asked for.
 *
 * The install is made under eng.lock, after checking again that the page
 * is still busy, not present and not being dropped: the evictor marks a
 * page `dropping` under the lock before its MADV_DONTNEED, so this cannot
 * put a page back behind a drop (which would leave it present and
 * untracked).  UFFDIO_COPY does not wait on any thread of ours.
 */
static int fault_refill_busy(struct filler *f, struct eng_region *r, uint64_t idx, uintptr_t addr)
{
	uintptr_t a = pg_addr(r, idx);
	size_t len = pg_len(r, idx);
	uint64_t data_end, got, off = r->offset + (idx << r->pshift);
	struct eng_page *p;
	int ret;

	if (len > BOUNCE_BYTES)
		return 0; /* pages larger than the bounce buffer: not supported here */
	pthread_mutex_lock(&eng.lock);
	data_end = r->data_end;
	pthread_mutex_unlock(&eng.lock);
	ret = fill_read(r, f->bounce, len, off, data_end, &got);
	if (ret < 0) {
		ulog_error("region %p: re-reading store offset %llu for a zapped page: %s", (void *)r->base,
			   (unsigned long long)off, ulog_errname(-ret));
		memset(f->bounce, 0, len); /* the writer must not hang; the store keeps its data */
	}
	pthread_mutex_lock(&eng.lock);
	p = pg_lookup(r, idx);
	if (p && (p->state == PG_WRITEBACK || p->state == PG_EVICTING) && !p->dropping && !pg_present(addr, addr + 1))
		ret = uffd_copy(&eng.uffd, a, f->bounce, len, eng.uffd.can_wp, false, NULL);
	pthread_mutex_unlock(&eng.lock);
	if (ret < 0 && ret != -EEXIST && ret != -ENOENT && ret != -EAGAIN)
		ulog_warn("region %p: refilling zapped page %p: %s", (void *)r->base, (void *)a,
			  ulog_errname(-ret));
	return ret == -EAGAIN ? ret : 0; /* EAGAIN: retry once events are read */
}

/*
 * Start a read-ahead in fills of RA_CHUNK bytes, all submitted together:
 * the application goes on as soon as the first is in, while the rest are
 * still being read (one big fill would keep it waiting for the whole
 * window, and the device at a queue depth of one).
 */
#define RA_CHUNK ((size_t)128 << 10)

static void ra_start(struct filler *f, struct eng_region *r, const struct ra_plan *pl)
{
	uint64_t per = RA_CHUNK >> r->pshift;

	if (per == 0)
		per = 1;
	for (unsigned k = 0; k < pl->nruns; k++) {
		for (uint64_t done = 0; done < pl->n[k];) {
			struct fill_req c = { .r = r, .prefetch = true, .readahead = true,
					      .keep_dirty = pl->keep_dirty };

			c.first = pl->first[k] + done;
			c.n = pl->n[k] - done < per ? pl->n[k] - done : per;
			if (pl->mark_plus1 > c.first && pl->mark_plus1 <= c.first + c.n)
				c.mark_plus1 = pl->mark_plus1;
			if (fa_start(f->fa, &c, NULL) < 0)
				fill_run(&c, f->bounce, BOUNCE_BYTES);
			done += c.n;
		}
	}
}

/*
 * Under eng.lock, after read-ahead reserved pages: wake the evictors if
 * that took the resident bytes past the high mark.  A miss does this
 * anyway; a marker or a fault on a page being filled did not, and a scan
 * whose read-ahead keeps ahead of it takes no misses.  Nothing then woke
 * the evictors before their 20 ms timer: the next markers found the budget
 * full and their windows were cut or not read at all (bench_io's O_DIRECT
 * scan reached the budget in each eviction cycle, kernel.ra_budget).
 */
static void ra_kick_evictors(void)
{
	if (eng.resident_bytes > eng_high_mark())
		eng_kick_evictors();
}

/*
 * A fault on a read-ahead marker (readahead.c), under eng.lock, which it
 * drops: install the page from the bytes kept aside, no I/O, and read the
 * stream's next window.  The install goes through fill_install like any
 * fill (so a write fault gets the page DIRTY before its thread runs).
 */
static void fault_marker(struct filler *f, struct eng_region *r, struct eng_page *p, bool write, uint64_t budget)
{
	struct fill_req q = { .r = r, .first = p->index, .n = 1, .write = write };
	struct ra_plan ra = { 0 };
	void *buf = ra_mark_take(r, p->index);

	p->marker = 0;
	atomic_fetch_add_explicit(&r->c.ra_marks, 1, memory_order_relaxed);
	pg_set_state(p, PG_FILLING);
	ra_extend(r, p->index, budget, &ra, true);
	ra_kick_evictors();
	q.data_end = r->data_end;
	q.total = pg_len(r, p->index);
	pthread_mutex_unlock(&eng.lock);
	/* The page first: the faulting thread need not wait while the next
	 * window is submitted (which waits when the arena is full). */
	if (!buf) {
		/* Cannot happen (the flag and the slot go together); read it. */
		fill_run(&q, f->bounce, BOUNCE_BYTES);
	} else {
		if (fill_install(&q, buf, 0, q.total) == 0)
			fill_done(&q);
		free(buf);
	}
	ra_start(f, r, &ra);
}

/*
 * Serve one fault.  Returns false if it was deferred (no budget yet, or
 * the mm is changing and pending events must be read first).
 */
static bool fault_serve(struct filler *f, uintptr_t addr, uint64_t flags, unsigned tries)
{
	struct eng_region *r = rg_get(addr);
	struct eng_page *p;
	uint64_t t0 = lat_now_ns(), idx;
	bool wp = flags & UFFD_PAGEFAULT_FLAG_WP, write = flags & UFFD_PAGEFAULT_FLAG_WRITE;
	uint64_t budget = atomic_load_explicit(&eng.budget, memory_order_relaxed);
	bool async = false; /* its latency is recorded when the fill completes */

	if (!r)
		return fault_unclaimed(addr, flags, tries);
	idx = (addr - r->base) >> r->pshift;
	if (tries == 0) {
		atomic_fetch_add_explicit(&r->c.faults, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(wp ? &r->c.wp_faults : write ? &r->c.write_faults : &r->c.read_faults,
					  1, memory_order_relaxed);
	}

	pthread_mutex_lock(&eng.lock);
	if (!rg_live(r, addr)) {
		pthread_mutex_unlock(&eng.lock);
		rg_put(r);
		return fault_unclaimed(addr, flags, tries);
	}
	p = pg_lookup(r, idx);
	if (r->frozen) {
		/* Unmap in progress: unregistering wakes the thread (or a failed
		 * unmap wakes the whole region). */
		pthread_mutex_unlock(&eng.lock);
		rg_put(r);
		return true;
	}
	if (!p && wp && pg_present(addr, addr + 1)) {
		/* A present page we do not track: only a bug elsewhere makes one,
		 * and waking the writer would fault it again forever.  Adopt it
		 * as dirty (it came from us and may hold unwritten data). */
		ulog_warn("region %p: adopting untracked page %p", (void *)r->base, (void *)pg_addr(r, idx));
		p = pg_insert(r, idx);
		if (p) {
			p->was_dirty = 1;
			pg_set_state(p, PG_UNPROTECTING);
		}
		pthread_mutex_unlock(&eng.lock);
		uffd_writeprotect(&eng.uffd, pg_addr(r, idx), pg_len(r, idx), false, true);
		pthread_mutex_lock(&eng.lock);
		if (p)
			pg_set_state(p, PG_DIRTY);
		pthread_cond_broadcast(&eng.page_cv);
		pthread_mutex_unlock(&eng.lock);
		uffd_wake(&eng.uffd, pg_addr(r, idx), pg_len(r, idx));
	} else if (!p && wp) {
		/* Evicted since the fault was raised: retry to fault it in. */
		pthread_mutex_unlock(&eng.lock);
		uffd_wake(&eng.uffd, pg_addr(r, idx), pg_len(r, idx));
	} else if (!p) {
		struct fill_req q = { .r = r, .first = idx, .write = write };
		struct ra_plan ra = { 0 };
		struct fa_fault ff = { .addr = addr, .flags = flags, .tries = tries, .t0 = t0 };

		if (eng.resident_bytes + r->psize > budget) {
			bool ok = fault_defer(addr, flags, tries + 1);

			if (tries == 0)
				atomic_fetch_add_explicit(&r->c.fault_wait_budget, 1, memory_order_relaxed);
			pthread_mutex_unlock(&eng.lock);
			rg_put(r);
			if (!ok)
				ulog_error("cannot defer a fault at %p: out of memory", (void *)addr);
			return false;
		}
		q.n = fill_reserve(r, idx, 1, budget);
		/* Read-ahead is a fill of its own, so the faulting thread wakes
		 * as soon as its page is in, not when the whole window is. */
		if (q.n) {
			ra_miss(r, idx, write, budget, &ra);
			q.keep_dirty = !write && rmw_install_dirty(r);
		}
		ra_kick_evictors();
		if (q.n == 0) {
			/* No descriptor memory: wait for eviction as for budget. */
			fault_defer(addr, flags, tries + 1);
			pthread_mutex_unlock(&eng.lock);
			rg_put(r);
			return false;
		}
		pthread_mutex_unlock(&eng.lock);
		if (fa_start(f->fa, &q, &ff) == 0) {
			async = true;
		} else if (fill_run(&q, f->bounce, BOUNCE_BYTES) == -EAGAIN) {
			ra_start(f, r, &ra);
			fault_defer_unlocked(addr, flags, tries + 1);
			rg_put(r);
			return false;
		}
		ra_start(f, r, &ra);
	} else if (pg_busy(p->state)) {
		bool zapped = !wp && (p->state == PG_WRITEBACK || p->state == PG_EVICTING) &&
			      !p->dropping && !pg_present(addr, addr + 1);
		struct ra_plan ra = { 0 };

		/* Its owner wakes the waiters when it is done. */
		waiter_note(addr, !p->wake_needed);
		p->wake_needed = 1;
		if (p->state == PG_FILLING) {
			ra_extend(r, idx, budget, &ra, false);
			ra_kick_evictors();
		}
		pthread_mutex_unlock(&eng.lock);
		ra_start(f, r, &ra);
		if (zapped && fault_refill_busy(f, r, idx, addr) == -EAGAIN) {
			fault_defer_unlocked(addr, flags, tries + 1);
			rg_put(r);
			return false;
		}
	} else if (wp && p->state == PG_CLEAN) {
		/* First write to a clean page: unprotect without waking, mark it
		 * dirty, then wake the writer, so that when the writer runs the
		 * page is already DIRTY for any flush it calls next.
		 * UNPROTECTING keeps the evictor off it meanwhile. */
		int ret;

		p->referenced = 1;
		ra_touch(p);
		rmw_note(p, true);
		p->was_dirty = 0;
		pg_set_state(p, PG_UNPROTECTING);
		pthread_mutex_unlock(&eng.lock);
		ret = uffd_writeprotect(&eng.uffd, pg_addr(r, idx), pg_len(r, idx), false, true);
		pthread_mutex_lock(&eng.lock);
		if (pg_dead(p))
			pg_remove(p);
		else
			pg_set_state(p, ret == 0 ? PG_DIRTY : PG_CLEAN);
		p = NULL;
		pthread_cond_broadcast(&eng.page_cv);
		pthread_mutex_unlock(&eng.lock);
		if (ret == -EAGAIN) {
			fault_defer_unlocked(addr, flags, tries + 1);
			rg_put(r);
			return false;
		}
		if (ret < 0 && ret != -ENOENT)
			ulog_error("region %p: unprotecting %p: %s", (void *)r->base, (void *)pg_addr(r, idx),
				   ulog_errname(-ret));
		uffd_wake(&eng.uffd, pg_addr(r, idx), pg_len(r, idx));
	} else if (wp) {
		/* Dirty but protected: a duplicate, or a page whose write-back
		 * kept it dirty while protected (its write failed, or it was
		 * pinned).  Unprotect, which wakes; if the mm is changing, try
		 * again after the events, never leave the writer asleep. */
		int ret;

		pthread_mutex_unlock(&eng.lock);
		ret = uffd_writeprotect(&eng.uffd, pg_addr(r, idx), pg_len(r, idx), false, false);
		if (ret == -EAGAIN) {
			fault_defer_unlocked(addr, flags, tries + 1);
			rg_put(r);
			return false;
		}
		if (ret < 0)
			uffd_wake(&eng.uffd, pg_addr(r, idx), pg_len(r, idx));
	} else {
		/* A missing fault on a page we hold: a duplicate of a fault already
		 * served, or the page was zapped under us (MADV_DONTNEED by the
		 * application).  The page tables tell which. */
		p->referenced = 1;
		ra_touch(p);
		if (p->marker) {
			fault_marker(f, r, p, write, budget);
		} else if (pg_present(addr, addr + 1)) {
			pthread_mutex_unlock(&eng.lock);
			uffd_wake(&eng.uffd, addr & ~(uintptr_t)(eng.sys_psize - 1), eng.sys_psize);
		} else {
			/* Refill from the store: what MADV_DONTNEED on a file mapping
			 * gives back.  A dirty page stays dirty: if only part of it
			 * was zapped, the rest still holds unwritten data. */
			struct fill_req q = { .r = r, .first = idx, .n = 1, .write = write,
					      .keep_dirty = p->state == PG_DIRTY };

			p->was_dirty = q.keep_dirty;
			pg_set_state(p, PG_FILLING);
			pthread_mutex_unlock(&eng.lock);
			if (fill_run(&q, f->bounce, BOUNCE_BYTES) == -EAGAIN) {
				fault_defer_unlocked(addr, flags, tries + 1);
				rg_put(r);
				return false;
			}
		}
	}
	if (!async)
		lat_record(&r->lat, lat_now_ns() - t0);
	rg_put(r);
	return true;
}

static int cmp_msg(const void *a, const void *b)
{
	const struct uffd_msg *x = a, *y = b;
	uint64_t ax = x->arg.pagefault.address, ay = y->arg.pagefault.address;

	return ax < ay ? -1 : ax > ay;
}

/*
 * Serve a batch.  Events first, in the order read: read() returns pending
 * faults before events, so a fault in the batch may postdate an event
 * (a fault at a region's new address after its mremap).  Then the faults,
 * sorted by address so duplicates are adjacent: each system page is
 * served once, with the union of its flags.
 */
static void serve_batch(struct filler *f, struct uffd_msg *m, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++) {
		if (m[i].event != UFFD_EVENT_PAGEFAULT) {
			ev_handle(&m[i]);
			continue;
		}
		m[i].arg.pagefault.address &= ~(uint64_t)(eng.sys_psize - 1);
		m[k++] = m[i];
	}
	pthread_mutex_unlock(&eng.ev_lock); /* taken before the read() */
	if (k > 1)
		qsort(m, (size_t)k, sizeof(*m), cmp_msg);
	for (int i = 0; i < k;) {
		uint64_t a = m[i].arg.pagefault.address, flags = m[i].arg.pagefault.flags;
		int j = i + 1;

		for (; j < k && m[j].arg.pagefault.address == a; j++)
			flags |= m[j].arg.pagefault.flags;
		/* A write fault and a WP fault on one page: serving the missing
		 * fault as a write installs it writable, which covers both. */
		if ((flags & UFFD_PAGEFAULT_FLAG_WP) && j - i > 1) {
			bool any_missing = false;

			for (int t = i; t < j; t++)
				any_missing |= !(m[t].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP);
			if (any_missing)
				flags &= ~(uint64_t)UFFD_PAGEFAULT_FLAG_WP;
		}
		fault_serve(f, (uintptr_t)a, flags, 0);
		i = j;
	}
}

void fault_drain(void)
{
	struct uffd_msg m[16];
	int n;

	pthread_mutex_lock(&eng.ev_lock);
	n = uffd_read_msgs(&eng.uffd, m, 16);
	for (int i = 0; i < n; i++) {
		if (m[i].event != UFFD_EVENT_PAGEFAULT) {
			ev_handle(&m[i]);
			continue;
		}
		fault_defer_unlocked((uintptr_t)m[i].arg.pagefault.address, m[i].arg.pagefault.flags, 0);
	}
	pthread_mutex_unlock(&eng.ev_lock);
	if (n > 0)
		eng_kick_fillers();
}

/* Retry the faults deferred so far, once each, while the budget has room. */
static void serve_deferred(struct filler *f)
{
	size_t todo;

	pthread_mutex_lock(&eng.lock);
	todo = eng.ndeferred;
	pthread_mutex_unlock(&eng.lock);
	while (todo-- > 0) {
		struct eng_deferred d;
		uint64_t budget = atomic_load_explicit(&eng.budget, memory_order_relaxed);

		pthread_mutex_lock(&eng.lock);
		if (eng.ndeferred == 0 || eng.resident_bytes + eng.sys_psize > budget) {
			pthread_mutex_unlock(&eng.lock);
			return;
		}
		d = eng.deferred[0];
		memmove(eng.deferred, eng.deferred + 1, --eng.ndeferred * sizeof(*eng.deferred));
		pthread_mutex_unlock(&eng.lock);
		fault_serve(f, d.addr, d.flags, d.tries);
	}
}

/* Serve one step of the oldest prefetch request. */
static bool serve_prefetch(struct filler *f)
{
	struct eng_prefetch *pf;
	struct fill_req q = { .prefetch = true };
	uint64_t budget = atomic_load_explicit(&eng.budget, memory_order_relaxed), limit;

	if (!fa_has_room(f->fa))
		return false; /* the fills in flight come first */
	pthread_mutex_lock(&eng.lock);
	pf = eng.prefetch_head;
	if (!pf) {
		pthread_mutex_unlock(&eng.lock);
		return false;
	}
	limit = budget / 100 * atomic_load(&eng.high_pct);
	/* Skip what is already resident; stop at the budget's high mark. */
	while (pf->next < pf->end && pg_lookup(pf->r, pf->next))
		pf->next++;
	if (pf->next < pf->end && !pf->r->frozen && eng.resident_bytes + pf->r->psize <= limit) {
		uint64_t want = pf->end - pf->next;

		q.r = pf->r;
		q.first = pf->next;
		q.n = fill_reserve(pf->r, pf->next, want < PREFETCH_STEP ? want : PREFETCH_STEP, limit);
		pf->next += q.n;
	}
	if (q.n == 0 || pf->next >= pf->end) {
		eng.prefetch_head = pf->link;
		if (!pf->link)
			eng.prefetch_tail = NULL;
	} else {
		pf = NULL; /* still queued; keep its region reference */
	}
	pthread_mutex_unlock(&eng.lock);
	if (q.n > 0 && fa_start(f->fa, &q, NULL) < 0)
		fill_run(&q, f->bounce, BOUNCE_BYTES);
	if (pf) {
		rg_put(pf->r);
		free(pf);
	}
	return true;
}

int fault_prefetch(struct eng_region *r, uint64_t first, uint64_t end)
{
	struct eng_prefetch *pf = calloc(1, sizeof(*pf));

	if (!pf)
		return -ENOMEM;
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_acquire);
	pf->r = r;
	pf->next = first;
	pf->end = end < r->npages ? end : r->npages;
	pthread_mutex_lock(&eng.lock);
	if (eng.prefetch_tail)
		eng.prefetch_tail->link = pf;
	else
		eng.prefetch_head = pf;
	eng.prefetch_tail = pf;
	pthread_mutex_unlock(&eng.lock);
	eng_kick_fillers();
	return 0;
}

void *filler_main(void *arg)
{
	struct filler f = { .ep = -1 };
	struct uffd_msg msgs[MSG_BATCH];
	struct epoll_event ev;
	unsigned id = (unsigned)(uintptr_t)arg;

	f.bounce = mmap(NULL, BOUNCE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	f.ep = epoll_create1(EPOLL_CLOEXEC);
	if (f.bounce == MAP_FAILED || f.ep < 0 || fa_open(&f.fa, f.ep) < 0) {
		ulog_error("fault thread %u cannot start: %s", id, ulog_errname(errno));
		eng_thread_ready();
		goto out;
	}
	eng_thread_ready();
	/* EPOLLEXCLUSIVE: one fault wakes one filler, not all of them. */
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLEXCLUSIVE, .data.u32 = 0 };
	if (epoll_ctl(f.ep, EPOLL_CTL_ADD, eng.uffd.fd, &ev) < 0) {
		ulog_error("fault thread %u: epoll_ctl: %s", id, ulog_errname(errno));
		goto out;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u32 = 1 };
	epoll_ctl(f.ep, EPOLL_CTL_ADD, eng.kick_fd, &ev);

	while (!atomic_load_explicit(&eng.stopping, memory_order_relaxed)) {
		/* Read and handle events under ev_lock (serve_batch drops it
		 * before serving the faults). */
		pthread_mutex_lock(&eng.ev_lock);
		int n = uffd_read_msgs(&eng.uffd, msgs, MSG_BATCH);
		bool more;

		if (n <= 0)
			pthread_mutex_unlock(&eng.ev_lock);
		if (n < 0) {
			ulog_error("reading the userfaultfd failed: %s", ulog_errname(-n));
			break;
		}
		if (n > 0) {
			serve_batch(&f, msgs, n);
			/* One submission for the batch's reads, then install
			 * whatever is already done (cached data completes at once). */
			fa_submit(f.fa);
			fa_reap(f.fa, false);
			continue;
		}
		fa_reap(f.fa, false);
		serve_deferred(&f);
		more = serve_prefetch(&f);
		fa_submit(f.fa);
		/* What finished meanwhile, before sleeping: psync's reads have
		 * no descriptor to wake us, they are done already. */
		if (fa_reap(f.fa, false) > 0 || more || fa_needs_poll(f.fa))
			continue;

		struct epoll_event got[4];
		size_t deferred;

		pthread_mutex_lock(&eng.lock);
		deferred = eng.ndeferred;
		pthread_mutex_unlock(&eng.lock);
		int k = epoll_wait(f.ep, got, 4, deferred ? 10 : -1);

		for (int i = 0; i < k; i++)
			if (got[i].data.u32 == 1) {
				uint64_t v;

				if (read(eng.kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					ulog_debug("kick read: %s", ulog_errname(errno));
			}
	}
out:
	fa_close(f.fa);
	if (f.ep >= 0)
		close(f.ep);
	if (f.bounce != MAP_FAILED && f.bounce)
		munmap(f.bounce, BOUNCE_BYTES);
	return NULL;
}
