/*
 * Fill: bring pages in from the store.
 *
 * A fill is reserved under eng.lock (the pages become FILLING and count
 * against the budget at once), then read into the calling thread's bounce
 * buffer and installed with UFFDIO_COPY without the lock.  The thread never
 * touches region memory itself (DESIGN.md invariant 1).  Read faults are
 * installed write-protected (clean), a write fault's page writable (dirty),
 * read-ahead pages write-protected.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "util/log.h"

uint64_t fill_reserve(struct eng_region *r, uint64_t first, uint64_t want, uint64_t limit)
{
	uint64_t n = 0;

	while (n < want && first + n < r->npages) {
		uintptr_t a = pg_addr(r, first + n);

		if (eng.resident_bytes + r->psize > limit && n > 0)
			break;
		if (!rg_live(r, a) || !rg_live(r, a + pg_len(r, first + n) - 1))
			break;
		if (pg_lookup(r, first + n))
			break;
		if (!pg_insert(r, first + n))
			break;
		n++;
	}
	return n;
}

/* Read [off, off+len) of the region's data, zeros past data_end. */
int fill_read(struct eng_region *r, void *buf, size_t len, uint64_t off, uint64_t data_end, uint64_t *got)
{
	size_t valid = 0;
	int ret = 0;

	if (data_end > off)
		valid = data_end - off < len ? (size_t)(data_end - off) : len;
	for (int tries = 0; valid > 0 && tries < FILL_READ_TRIES; tries++) {
		ret = store_read(r->store, buf, valid, off);
		if (ret == 0)
			break;
	}
	if (ret < 0)
		return ret;
	memset((char *)buf + valid, 0, len - valid);
	*got = valid;
	return 0;
}

void (*eng_test_fill_hook)(uintptr_t addr, bool keep_dirty);
int (*eng_test_copy_hook)(uintptr_t dst, size_t *len);

/*
 * Install len bytes at dst; *installed grows by the bytes now present.  A
 * page already present (-EEXIST) counts as installed: the thread that
 * faulted on it will be woken.  -EAGAIN (the mm is changing) is retried
 * with a growing pause.  On an error the bytes before *installed are in
 * the page tables all the same: UFFDIO_COPY reports a partial copy (then
 * -ENOMEM, say, in a memory cgroup at its limit) by its count.
 */
static int fill_copy(uintptr_t dst, const char *src, size_t len, bool wp, bool dontwake, size_t *installed)
{
	unsigned tries = 0;

	while (len > 0) {
		size_t copied = 0, n = len;
		int ret = eng_test_copy_hook ? eng_test_copy_hook(dst, &n) : 0;

		if (ret == 0) {
			ret = uffd_copy(&eng.uffd, dst, src, n, wp, dontwake, &copied);
			if (ret == 0 && n < len)
				ret = -EAGAIN; /* cut short by the hook, as the kernel reports it */
		}
		dst += copied;
		src += copied;
		len -= copied;
		*installed += copied;
		if (ret == 0)
			return 0;
		if (ret == -EEXIST) {
			/* Skip the present system page and go on with the rest. */
			size_t step = eng.sys_psize < len ? eng.sys_psize : len;

			if (wp)
				uffd_writeprotect(&eng.uffd, dst, step, true, false);
			if (!dontwake)
				uffd_wake(&eng.uffd, dst, step);
			dst += step;
			src += step;
			len -= step;
			*installed += step;
			continue;
		}
		/* The mm is changing: an event (REMOVE, UNMAP, REMAP) is pending
		 * and the thread that raised it waits for someone to read it.
		 * Read the pending messages ourselves (events handled, faults
		 * deferred), then retry (DESIGN.md invariant 4). */
		if (ret == -EAGAIN && ++tries < 100000) {
			fault_drain();
			if (tries > 16)
				sched_yield();
			continue;
		}
		return ret;
	}
	return 0;
}

/*
 * The faulting page of q is installed writable: a write fault's, or a read
 * miss installed dirty (keep_dirty: rmw.c, or the refill of a dirty page).
 * Its thread is then woken only once the page is DIRTY: woken earlier, it
 * could write the page and call umapd_flush, which passes over a FILLING
 * page, and the flush would return before that write reached the store
 * (kernel.gup's clean state caught this once read misses could be
 * installed dirty; kernel.fill_wake holds the window open).
 */
static bool fill_wakes_late(const struct fill_req *q)
{
	return (q->write || q->keep_dirty) && !q->prefetch && q->r->writable;
}

/*
 * Pages [0, upto) of a fill are installed: leave FILLING.  Without write
 * protection (read-only region or a kernel without WP) a writable page can
 * change unseen: call it dirty.
 */
static void fill_finish(struct fill_req *q, uint64_t upto)
{
	struct eng_region *r = q->r;
	bool can_wp = eng.uffd.can_wp && r->writable;
	bool wake_late = fill_wakes_late(q);
	uint64_t wake_first = UINT64_MAX, wake_last = 0;

	pthread_mutex_lock(&eng.lock);
	for (uint64_t i = 0; i < upto; i++) {
		struct eng_page *p = pg_lookup(r, q->first + i);
		bool fault_page = i == 0 && !q->prefetch;

		if (!p || p->state != PG_FILLING)
			continue;
		if (pg_dead(p)) { /* unmapped while it was being filled */
			pg_remove(p);
			continue;
		}
		if (p->wake_needed || (fault_page && wake_late)) {
			p->wake_needed = 0;
			if (wake_first == UINT64_MAX)
				wake_first = i;
			wake_last = i;
		}
		if (q->mark_buf && q->first + i == q->mark_plus1 - 1) {
			/* The marker (always a read-ahead page): resident, clean,
			 * and not mapped until its fault.  With no slot free,
			 * forget the page instead (its fault reads it again).
			 * Either way a thread that faulted on it meanwhile is
			 * woken above, to fault again. */
			bool kept = ra_mark_add(r, q->first + i, q->mark_buf);

			if (!kept)
				free(q->mark_buf);
			q->mark_buf = NULL;
			if (!kept) {
				pg_remove(p);
				continue;
			}
			p->marker = 1;
		}
		if (!p->marker && r->writable && (!can_wp || q->keep_dirty || (fault_page && q->write))) {
			pg_set_state(p, PG_DIRTY);
		} else {
			pg_set_state(p, PG_CLEAN);
			/* A read miss installed clean: its fate tells rmw.c whether
			 * this region writes what it reads. */
			p->rmw_probe = fault_page && can_wp;
		}
		p->referenced = fault_page;
		p->readahead = q->readahead;
	}
	pthread_cond_broadcast(&eng.page_cv);
	pthread_mutex_unlock(&eng.lock);
	if (wake_first != UINT64_MAX)
		uffd_wake(&eng.uffd, pg_addr(r, q->first + wake_first),
			  (wake_last - wake_first + 1) << r->pshift);
}

/* Give up on pages [from, q->n) of a fill: forget them, wake their waiters. */
static void fill_abandon(struct fill_req *q, uint64_t from)
{
	struct eng_region *r = q->r;

	pthread_mutex_lock(&eng.lock);
	for (uint64_t i = from; i < q->n; i++) {
		struct eng_page *p = pg_lookup(r, q->first + i);

		if (p && p->state == PG_FILLING)
			pg_remove(p);
	}
	atomic_fetch_sub_explicit(&r->c.fills, q->n - from, memory_order_relaxed);
	pthread_cond_broadcast(&eng.page_cv);
	pthread_mutex_unlock(&eng.lock);
	if (from < q->n)
		uffd_wake(&eng.uffd, pg_addr(r, q->first + from), (q->n - from) << r->pshift);
}

/*
 * A read at store offset off failed for good, after `done` bytes of the
 * fill were installed.  Pages wholly installed are kept; the rest are
 * given up.  If the faulting page itself is not complete, the access must
 * fail like a failing mmap'd file (SIGBUS) instead of handing out zeros:
 * what of it is not installed yet is poisoned.
 */
void fill_fail(struct fill_req *q, uint64_t off, size_t done, int err)
{
	struct eng_region *r = q->r;
	uint64_t complete = done >> r->pshift;
	size_t first_len = pg_len(r, q->first);

	if (err == -ENXIO) {
		/* Truncated under the mapping (fill_async.c): not a store error;
		 * reported when an access meets it, not for a read-ahead. */
		if (!q->prefetch)
			ulog_error("region %p: store offset %llu lies past the end of the file, which was "
				   "truncated under the mapping: SIGBUS", (void *)r->base, (unsigned long long)off);
	} else {
		atomic_fetch_add_explicit(&r->c.io_errors, 1, memory_order_relaxed);
		ulog_error("region %p: read of store offset %llu failed: %s", (void *)r->base,
			   (unsigned long long)off, ulog_errname(-err));
	}
	if (!q->prefetch && complete == 0) {
		int ret = uffd_poison(&eng.uffd, pg_addr(r, q->first) + done, first_len - done);

		if (ret == -EOPNOTSUPP)
			ulog_error("region %p: this kernel lacks UFFDIO_POISON: the access at %p is retried "
				   "instead of failing with SIGBUS", (void *)r->base, (void *)pg_addr(r, q->first));
		else if (ret < 0)
			ulog_error("region %p: poisoning %p: %s", (void *)r->base, (void *)pg_addr(r, q->first),
				   ulog_errname(-ret));
	}
	fill_finish(q, complete);
	fill_abandon(q, complete);
}

size_t fill_begin(struct fill_req *q)
{
	struct eng_region *r = q->r;

	pthread_mutex_lock(&eng.lock);
	q->data_end = r->data_end;
	pthread_mutex_unlock(&eng.lock);
	q->total = 0;
	for (uint64_t i = 0; i < q->n; i++)
		q->total += pg_len(r, q->first + i);
	/* Counted before the install wakes the faulting thread, so that what
	 * it reads in the statistics next already includes its own fault. */
	atomic_fetch_add_explicit(&r->c.fills, q->n, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->c.readahead_pages, q->prefetch ? q->n : q->n - 1,
				  memory_order_relaxed);
	return q->total;
}

/*
 * fill_copy, except that the read-ahead marker of q, if it lies in
 * [dst, dst+len), is not installed: its bytes are kept in q->mark_buf
 * for fill_finish to hand to the region (readahead.c).  Without memory
 * for them the marker is installed like any page.  *progress grows by the
 * bytes from dst on that are installed or, the marker, kept aside.
 */
static int fill_copy_mark(struct fill_req *q, uintptr_t dst, const char *src, size_t len, bool wp, bool dontwake,
			  size_t *progress)
{
	struct eng_region *r = q->r;
	uintptr_t m;
	size_t ml;
	int ret;

	if (!q->mark_plus1 || q->mark_buf)
		return fill_copy(dst, src, len, wp, dontwake, progress);
	m = pg_addr(r, q->mark_plus1 - 1);
	ml = pg_len(r, q->mark_plus1 - 1);
	if (m < dst || m + ml > dst + len || !(q->mark_buf = malloc(ml)))
		return fill_copy(dst, src, len, wp, dontwake, progress);
	memcpy(q->mark_buf, src + (m - dst), ml);
	ret = fill_copy(dst, src, m - dst, wp, dontwake, progress);
	if (ret < 0)
		return ret;
	*progress += ml;
	return fill_copy(m + ml, src + (m - dst) + ml, dst + len - (m + ml), wp, dontwake, progress);
}

int fill_install(struct fill_req *q, const char *buf, size_t done, size_t len)
{
	struct eng_region *r = q->r;
	bool can_wp = eng.uffd.can_wp && r->writable;
	bool wake_late = fill_wakes_late(q);
	size_t first_len = pg_len(r, q->first), progress = 0;
	uintptr_t dst = pg_addr(r, q->first) + done;
	uint64_t upto;
	int ret;

	/* The faulting page goes first so its thread wakes soonest.  A write
	 * fault's page is installed writable, and then not woken until it is
	 * marked DIRTY: the writer must never run while its page still looks
	 * FILLING to a flush. */
	if (done < first_len) {
		size_t a = first_len - done < len ? first_len - done : len;

		ret = fill_copy_mark(q, dst, buf, a, can_wp && !wake_late && !q->keep_dirty, wake_late, &progress);
		if (ret == 0 && a < len)
			ret = fill_copy_mark(q, dst + a, buf + a, len - a, can_wp && !q->keep_dirty, false, &progress);
	} else {
		ret = fill_copy_mark(q, dst, buf, len, can_wp && !q->keep_dirty, false, &progress);
	}
	if (ret == 0 && eng_test_fill_hook && !q->prefetch)
		eng_test_fill_hook(pg_addr(r, q->first), q->keep_dirty);
	if (ret < 0) {
		if (ret != -ENOENT && ret != -ESRCH && ret != -EAGAIN)
			ulog_error("region %p: UFFDIO_COPY at %p failed: %s", (void *)r->base,
				   (void *)(dst + progress), ulog_errname(-ret));
		/*
		 * What is in the page tables stays, and stays tracked: a page
		 * given up while present would be one we no longer know about,
		 * writable (installed dirty) or not, never written back or
		 * dropped (a copy cut short by -ENOMEM in a memory cgroup at its
		 * limit did this; integration.fill_partial).  A page installed
		 * in part counts as installed: a fault on the rest of it reads
		 * the rest in.  The rest of the fill is given up (a marker taken
		 * aside in that part too).
		 */
		upto = (done + progress + r->psize - 1) >> r->pshift;
		if (q->mark_buf && q->mark_plus1 - 1 >= q->first + upto) {
			free(q->mark_buf);
			q->mark_buf = NULL;
		}
		fill_finish(q, upto);
		fill_abandon(q, upto);
	}
	return ret;
}

void fill_done(struct fill_req *q)
{
	fill_finish(q, q->n);
}

/* Read and install synchronously, a bounce buffer at a time. */
int fill_run(struct fill_req *q, void *bounce, size_t bounce_len)
{
	struct eng_region *r = q->r;
	size_t total = fill_begin(q), done = 0;
	int ret;

	while (done < total) {
		size_t len = total - done < bounce_len ? total - done : bounce_len;
		uint64_t off = r->offset + (q->first << r->pshift) + done, got = 0;

		ret = fill_read(r, bounce, len, off, q->data_end, &got);
		if (ret < 0) {
			fill_fail(q, off, done, ret);
			return ret;
		}
		atomic_fetch_add_explicit(&r->c.bytes_read, got, memory_order_relaxed);
		ret = fill_install(q, bounce, done, len);
		if (ret < 0)
			return ret;
		done += len;
	}
	fill_done(q);
	return 0;
}
