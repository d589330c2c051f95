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
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "util/log.h"

#define RA_MAX_BYTES (4u << 20) /* never read more than this ahead of a fault */

/*
 * Read-ahead.  Each region follows up to RA_STREAMS sequential streams,
 * each going up or down the region (a quicksort partition's cursors walk
 * down, a scan walks up).  A miss continues a stream if it is the page
 * next to the stream's last miss, or falls in or just past the stream's
 * last read-ahead: the pages the application went past count as hits.  A
 * continuing stream doubles its window up to the region's maximum; a miss
 * that continues nothing takes the least recently used stream's slot and
 * reads nothing ahead, so random access costs no wasted reads.  Windows are
 * also held to a sixteenth of the budget, so that read-ahead cannot push
 * out the pages in use.  UMAPD_ADV_SEQUENTIAL always reads the full
 * window, UMAPD_ADV_RANDOM never reads ahead.
 */
/* Count the pages a stream went past as hits; returns how many of the
 * resident ones it left dirty, in *dirty, out of *seen. */
static void ra_count_hits(struct eng_region *r, uint64_t from, uint64_t to, unsigned *dirty, unsigned *seen)
{
	uint64_t hits = 0;

	if (to <= from)
		return;
	if (to - from > (uint64_t)r->ra_max + 1)
		from = to - (uint64_t)r->ra_max - 1;
	for (uint64_t i = from; i < to; i++) {
		struct eng_page *p = pg_lookup(r, i);

		if (!p)
			continue;
		if (p->readahead) {
			p->readahead = 0;
			hits++;
		}
		(*seen)++;
		if (p->state == PG_DIRTY)
			(*dirty)++;
	}
	if (hits)
		atomic_fetch_add_explicit(&r->c.readahead_hits, hits, memory_order_relaxed);
}

void ra_touch(struct eng_page *p)
{
	if (p->readahead) {
		p->readahead = 0;
		atomic_fetch_add_explicit(&p->region->c.readahead_hits, 1, memory_order_relaxed);
	}
}

/* +1 or -1 if a miss at index continues stream t that way, else 0. */
static int ra_continues(const struct eng_stream *t, uint64_t index)
{
	bool has_ra = t->hi > t->lo;

	if (!t->used)
		return 0;
	if (t->dir >= 0 && (index == t->last + 1 || (has_ra && t->dir > 0 && index >= t->lo && index <= t->hi)))
		return 1;
	if (t->dir <= 0 && (index + 1 == t->last || (has_ra && t->dir < 0 && index + 1 >= t->lo && index < t->hi)))
		return -1;
	return 0;
}

long ra_decide(struct eng_region *r, uint64_t index, bool write, uint64_t *first, bool *dirty)
{
	long cap = (long)(RA_MAX_BYTES >> r->pshift), max = r->ra_max < cap ? r->ra_max : cap;
	long budget_cap = (long)(atomic_load_explicit(&eng.budget, memory_order_relaxed) / 16 >> r->pshift);
	struct eng_stream *s = NULL, *lru = &r->streams[0];
	uint64_t lo = 0, hi = 0, end;
	unsigned ndirty = 0, nseen = 0;
	bool writes = false;
	int dir = 0;
	long w;

	r->ra_clock++;
	*first = index + 1;
	*dirty = false;
	if (max <= 0 || r->advice == UMAPD_ADV_RANDOM)
		return 0;
	for (int i = 0; i < RA_STREAMS && !s; i++) {
		struct eng_stream *t = &r->streams[i];

		dir = ra_continues(t, index);
		if (dir)
			s = t;
		else if (t->used < lru->used)
			lru = t;
	}
	if (s) {
		lo = s->lo;
		hi = s->hi;
		if (dir > 0)
			ra_count_hits(r, lo, index < hi ? index : hi, &ndirty, &nseen);
		else
			ra_count_hits(r, index + 1 > lo ? index + 1 : lo, hi, &ndirty, &nseen);
		/* A stream whose misses are reads and which dirtied at least 3/4
		 * of what it went past is a read-modify-write pass (a sort's
		 * partition, an update scan): its next pages are installed
		 * writable and dirty, which spares a write-protect fault per page
		 * at the cost of writing back any it then leaves unmodified (at
		 * most one window, where the pass ends).  A stream that writes
		 * fresh pages (its misses are writes) is not: it usually ends
		 * where its writes end, and reads ahead clean. */
		writes = !write && (nseen >= 4 ? ndirty * 4 >= nseen * 3 : s->writes);
		w = s->window ? s->window * 2 : 4;
	} else {
		/* A new stream reads nothing ahead until its next miss says
		 * which way it goes: a resident neighbour is no evidence (under
		 * random access half the neighbours are resident). */
		s = lru;
		w = 0;
	}
	if (r->advice == UMAPD_ADV_SEQUENTIAL) {
		w = max;
		if (!dir)
			dir = 1;
	}
	if (w > max)
		w = max;
	if (w > budget_cap)
		w = budget_cap;
	/* What remains of the last read-ahead, past the fault the way the
	 * stream goes (empty for a new stream). */
	if (dir > 0 && hi > index + 1) {
		lo = index + 1;
	} else if (dir < 0 && hi > lo && lo < index) {
		hi = index;
	} else {
		lo = 0;
		hi = 0;
	}
	*s = (struct eng_stream){ .last = index, .window = w, .dir = dir, .used = r->ra_clock, .lo = lo, .hi = hi,
				  .writes = writes };
	*dirty = writes && r->writable && eng.uffd.can_wp;
	if (w <= 0)
		return 0;
	if (dir > 0) {
		/* Keep one window ahead of the fault; what the last read-ahead
		 * brought in need not be read again. */
		if (s->hi > *first)
			*first = s->hi;
		w -= (long)(*first - (index + 1));
		return w > 0 ? w : 0;
	}
	/* Down: the absent pages just below the fault (or below what the last
	 * read-ahead brought in), at most a window from the fault. */
	end = s->hi > s->lo && s->lo < index ? s->lo : index;
	*first = end;
	while (*first > 0 && index - (*first - 1) <= (uint64_t)w && !pg_lookup(r, *first - 1))
		(*first)--;
	return (long)(end - *first);
}

uint64_t ra_extend(struct eng_region *r, uint64_t index, uint64_t budget, struct fill_req *ra)
{
	long cap = (long)(RA_MAX_BYTES >> r->pshift), max = r->ra_max < cap ? r->ra_max : cap;
	long budget_cap = (long)(budget / 16 >> r->pshift);

	ra->n = 0;
	if (max > budget_cap)
		max = budget_cap;
	if (max <= 0 || r->advice == UMAPD_ADV_RANDOM || eng.resident_bytes + r->psize > budget)
		return 0;
	for (int i = 0; i < RA_STREAMS; i++) {
		struct eng_stream *t = &r->streams[i];
		long w;

		if (!t->used || !t->dir || t->hi <= t->lo || index < t->lo || index >= t->hi)
			continue;
		/* Only from the second half of what is in flight, once per
		 * window: the end it extends moves with it. */
		if (t->dir > 0 ? (t->hi - index) * 2 > t->hi - t->lo : (index - t->lo + 1) * 2 > t->hi - t->lo)
			return 0;
		w = t->window * 2 < max ? t->window * 2 : max;
		if (w <= 0)
			return 0;
		t->window = w;
		ra->keep_dirty = t->writes && r->writable && eng.uffd.can_wp;
		if (t->dir > 0) {
			ra->first = t->hi;
			ra->n = fill_reserve(r, ra->first, (uint64_t)w, budget);
			t->hi += ra->n;
		} else {
			uint64_t end = t->lo;

			ra->first = end;
			while (ra->first > 0 && end - (ra->first - 1) <= (uint64_t)w && !pg_lookup(r, ra->first - 1))
				ra->first--;
			ra->n = end > ra->first ? fill_reserve(r, ra->first, end - ra->first, budget) : 0;
			if (ra->n)
				t->lo = ra->first;
		}
		return ra->n;
	}
	return 0;
}

void ra_reserved(struct eng_region *r, uint64_t index, uint64_t first, uint64_t n)
{
	for (int i = 0; i < RA_STREAMS; i++) {
		struct eng_stream *t = &r->streams[i];

		if (t->used != r->ra_clock || t->last != index || n == 0)
			continue;
		if (t->dir > 0) {
			if (t->hi <= t->lo)
				t->lo = first;
			t->hi = first + n;
		} else {
			if (t->hi <= t->lo)
				t->hi = first + n;
			t->lo = first;
		}
		return;
	}
}

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

/*
 * Install len bytes at dst.  A page already present (-EEXIST) counts as
 * installed: the thread that faulted on it will be woken.  -EAGAIN (the mm
 * is changing) is retried with a growing pause.
 */
static int fill_copy(uintptr_t dst, const char *src, size_t len, bool wp, bool dontwake)
{
	unsigned tries = 0;

	while (len > 0) {
		size_t copied = 0;
		int ret = uffd_copy(&eng.uffd, dst, src, len, wp, dontwake, &copied);

		dst += copied;
		src += copied;
		len -= copied;
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
 * Pages [0, upto) of a fill are installed: leave FILLING.  Without write
 * protection (read-only region or a kernel without WP) a writable page can
 * change unseen: call it dirty.
 */
static void fill_finish(struct fill_req *q, uint64_t upto)
{
	struct eng_region *r = q->r;
	bool can_wp = eng.uffd.can_wp && r->writable;
	bool writable_fault = q->write && !q->prefetch && r->writable;
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
		if (r->writable && (!can_wp || q->keep_dirty || (fault_page && q->write)))
			pg_set_state(p, PG_DIRTY);
		else
			pg_set_state(p, PG_CLEAN);
		p->referenced = fault_page;
		p->readahead = q->readahead;
		if (p->wake_needed || (fault_page && writable_fault)) {
			p->wake_needed = 0;
			if (wake_first == UINT64_MAX)
				wake_first = i;
			wake_last = i;
		}
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

int fill_install(struct fill_req *q, const char *buf, size_t done, size_t len)
{
	struct eng_region *r = q->r;
	bool can_wp = eng.uffd.can_wp && r->writable;
	bool writable_fault = q->write && !q->prefetch && r->writable;
	size_t first_len = pg_len(r, q->first);
	uintptr_t dst = pg_addr(r, q->first) + done;
	int ret;

	/* The faulting page goes first so its thread wakes soonest.  A write
	 * fault's page is installed writable, and then not woken until it is
	 * marked DIRTY: the writer must never run while its page still looks
	 * FILLING to a flush. */
	if (done < first_len) {
		size_t a = first_len - done < len ? first_len - done : len;

		ret = fill_copy(dst, buf, a, can_wp && !writable_fault && !q->keep_dirty, writable_fault);
		if (ret == 0 && a < len)
			ret = fill_copy(dst + a, buf + a, len - a, can_wp && !q->keep_dirty, false);
	} else {
		ret = fill_copy(dst, buf, len, can_wp && !q->keep_dirty, false);
	}
	if (ret < 0) {
		if (ret != -ENOENT && ret != -ESRCH && ret != -EAGAIN)
			ulog_error("region %p: UFFDIO_COPY at %p failed: %s", (void *)r->base,
				   (void *)dst, ulog_errname(-ret));
		/* What was installed before stays; the rest is given up. */
		fill_finish(q, done >> r->pshift);
		fill_abandon(q, done >> r->pshift);
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
