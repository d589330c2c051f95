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
	void *bounce;
	int ep;
};

/* Defer a fault (under eng.lock).  Returns false if even that failed. */
static bool fault_defer(uintptr_t addr, uint64_t flags)
{
	if (eng.ndeferred == eng.cap_deferred) {
		size_t cap = eng.cap_deferred ? eng.cap_deferred * 2 : 64;
		struct eng_deferred *n = realloc(eng.deferred, cap * sizeof(*n));

		if (!n)
			return false;
		eng.deferred = n;
		eng.cap_deferred = cap;
	}
	eng.deferred[eng.ndeferred++] = (struct eng_deferred){ .addr = addr, .flags = flags };
	eng_kick_evictors();
	return true;
}

/* Is the system page at addr present in the page tables? */
static bool page_present(uintptr_t addr)
{
	unsigned char vec = 0;

	return mincore((void *)(addr & ~(uintptr_t)(eng.sys_psize - 1)), eng.sys_psize, &vec) == 0 &&
	       (vec & 1);
}

/*
 * Serve one fault.  Returns false if it was deferred (no budget yet).
 */
static bool fault_serve(struct filler *f, uintptr_t addr, uint64_t flags, bool retry)
{
	struct eng_region *r = rg_get(addr);
	struct eng_page *p;
	uint64_t t0 = lat_now_ns(), idx;
	bool wp = flags & UFFD_PAGEFAULT_FLAG_WP, write = flags & UFFD_PAGEFAULT_FLAG_WRITE;

	if (!r) {
		/* Not ours any more (unmapped meanwhile): let it retry and find out. */
		uffd_wake(&eng.uffd, addr & ~(uintptr_t)(eng.sys_psize - 1), eng.sys_psize);
		return true;
	}
	idx = (addr - r->base) >> r->pshift;
	if (!retry) {
		atomic_fetch_add_explicit(&r->c.faults, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(wp ? &r->c.wp_faults : write ? &r->c.write_faults : &r->c.read_faults,
					  1, memory_order_relaxed);
	}

	pthread_mutex_lock(&eng.lock);
	p = pg_lookup(r, idx);
	if (r->frozen) {
		/* Unmap in progress: unregistering wakes the thread (or a failed
		 * unmap wakes the whole region). */
		pthread_mutex_unlock(&eng.lock);
		rg_put(r);
		return true;
	}
	if (!p && wp) {
		/* Evicted since the fault was raised: retry to fault it in. */
		pthread_mutex_unlock(&eng.lock);
		uffd_wake(&eng.uffd, pg_addr(r, idx), pg_len(r, idx));
		rg_put(r);
		return true;
	}
	if (!p) {
		struct fill_req q = { .r = r, .first = idx, .write = write };
		uint64_t budget = atomic_load_explicit(&eng.budget, memory_order_relaxed);
		long w;

		if (eng.resident_bytes + r->psize > budget) {
			bool ok = fault_defer(addr, flags);

			if (!retry)
				atomic_fetch_add_explicit(&r->c.fault_wait_budget, 1, memory_order_relaxed);
			pthread_mutex_unlock(&eng.lock);
			rg_put(r);
			if (!ok)
				ulog_error("cannot defer a fault at %p: out of memory", (void *)addr);
			return false;
		}
		w = fill_window(r, idx);
		q.n = fill_reserve(r, idx, (uint64_t)w + 1, budget);
		if (eng.resident_bytes > eng_high_mark())
			eng_kick_evictors();
		pthread_mutex_unlock(&eng.lock);
		if (q.n == 0) {
			/* No descriptor memory: wait for eviction as for budget. */
			pthread_mutex_lock(&eng.lock);
			fault_defer(addr, flags);
			pthread_mutex_unlock(&eng.lock);
			rg_put(r);
			return false;
		}
		fill_run(&q, f->bounce, BOUNCE_BYTES);
	} else if (pg_busy(p->state)) {
		/* Its owner wakes the waiters when it is done. */
		p->wake_needed = 1;
		pthread_mutex_unlock(&eng.lock);
	} else if (wp && p->state == PG_CLEAN) {
		/* First write to a clean page: unprotect without waking, mark it
		 * dirty, then wake the writer, so that when the writer runs the
		 * page is already DIRTY for any flush it calls next.
		 * UNPROTECTING keeps the evictor off it meanwhile. */
		int ret;

		p->referenced = 1;
		p->was_dirty = 0;
		pg_set_state(p, PG_UNPROTECTING);
		pthread_mutex_unlock(&eng.lock);
		ret = uffd_writeprotect(&eng.uffd, pg_addr(r, idx), pg_len(r, idx), false, true);
		pthread_mutex_lock(&eng.lock);
		pg_set_state(p, ret == 0 ? PG_DIRTY : PG_CLEAN);
		p->wake_needed = 0;
		pthread_cond_broadcast(&eng.page_cv);
		pthread_mutex_unlock(&eng.lock);
		if (ret < 0 && ret != -ENOENT)
			ulog_error("region %p: unprotecting %p: %s", (void *)r->base, (void *)pg_addr(r, idx),
				   ulog_errname(-ret));
		uffd_wake(&eng.uffd, pg_addr(r, idx), pg_len(r, idx));
	} else if (wp) {
		/* Already dirty (a duplicate): make sure it is writable, which wakes. */
		pthread_mutex_unlock(&eng.lock);
		uffd_writeprotect(&eng.uffd, pg_addr(r, idx), pg_len(r, idx), false, false);
	} else {
		/* A missing fault on a page we hold: a duplicate of a fault already
		 * served, or the page was zapped under us (MADV_DONTNEED by the
		 * application).  The page tables tell which. */
		p->referenced = 1;
		if (page_present(addr)) {
			pthread_mutex_unlock(&eng.lock);
			uffd_wake(&eng.uffd, addr & ~(uintptr_t)(eng.sys_psize - 1), eng.sys_psize);
		} else {
			struct fill_req q = { .r = r, .first = idx, .n = 1, .write = write };

			/* Refill from the store: what MADV_DONTNEED on a file
			 * mapping gives back. */
			p->was_dirty = 0;
			pg_set_state(p, PG_FILLING);
			pthread_mutex_unlock(&eng.lock);
			fill_run(&q, f->bounce, BOUNCE_BYTES);
		}
	}
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

/* Serve a batch: sort by address so duplicates are adjacent, then serve
 * each system page once, with the union of its flags. */
static void serve_batch(struct filler *f, struct uffd_msg *m, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++) {
		if (m[i].event != UFFD_EVENT_PAGEFAULT) {
			ulog_debug("ignoring userfaultfd event %u", m[i].event);
			continue;
		}
		m[i].arg.pagefault.address &= ~(uint64_t)(eng.sys_psize - 1);
		m[k++] = m[i];
	}
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
		fault_serve(f, (uintptr_t)a, flags, false);
		i = j;
	}
}

/* Retry deferred faults while the budget has room. */
static void serve_deferred(struct filler *f)
{
	for (;;) {
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
		if (!fault_serve(f, d.addr, d.flags, true))
			return;
	}
}

/* Serve one step of the oldest prefetch request. */
static bool serve_prefetch(struct filler *f)
{
	struct eng_prefetch *pf;
	struct fill_req q = { .prefetch = true };
	uint64_t budget = atomic_load_explicit(&eng.budget, memory_order_relaxed), limit;

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
	if (q.n > 0)
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
	if (f.bounce == MAP_FAILED || f.ep < 0) {
		ulog_error("fault thread %u cannot start: %s", id, ulog_errname(errno));
		goto out;
	}
	/* EPOLLEXCLUSIVE: one fault wakes one filler, not all of them. */
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLEXCLUSIVE, .data.u32 = 0 };
	if (epoll_ctl(f.ep, EPOLL_CTL_ADD, eng.uffd.fd, &ev) < 0) {
		ulog_error("fault thread %u: epoll_ctl: %s", id, ulog_errname(errno));
		goto out;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u32 = 1 };
	epoll_ctl(f.ep, EPOLL_CTL_ADD, eng.kick_fd, &ev);

	while (!atomic_load_explicit(&eng.stopping, memory_order_relaxed)) {
		int n = uffd_read_msgs(&eng.uffd, msgs, MSG_BATCH);
		bool more;

		if (n < 0) {
			ulog_error("reading the userfaultfd failed: %s", ulog_errname(-n));
			break;
		}
		if (n > 0) {
			serve_batch(&f, msgs, n);
			continue;
		}
		serve_deferred(&f);
		more = serve_prefetch(&f);
		if (more)
			continue;

		struct epoll_event got[2];
		size_t deferred;

		pthread_mutex_lock(&eng.lock);
		deferred = eng.ndeferred;
		pthread_mutex_unlock(&eng.lock);
		int k = epoll_wait(f.ep, got, 2, deferred ? 10 : -1);

		for (int i = 0; i < k; i++)
			if (got[i].data.u32 == 1) {
				uint64_t v;

				if (read(eng.kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					ulog_debug("kick read: %s", ulog_errname(errno));
			}
	}
out:
	if (f.ep >= 0)
		close(f.ep);
	if (f.bounce != MAP_FAILED && f.bounce)
		munmap(f.bounce, BOUNCE_BYTES);
	return NULL;
}
