/*
 * Non-cooperative events: what the application does to region memory
 * behind umapd's back (seed 004).  The fillers read them with the faults
 * and handle them here, without waiting for anyone: the thread that raised
 * an event (madvise, munmap, mremap) is blocked until it is read, and
 * mmap_changing makes our own fills and protects fail with EAGAIN
 * meanwhile, so a filler that waited on anything here could deadlock.
 *
 *   REMOVE (MADV_DONTNEED/MADV_REMOVE): raised before the zap, and the
 *       thread that raised it goes on with the zap as soon as a filler has
 *       read the event, before we handle it.  So by then a page may be
 *       zapped, about to be, or already zapped and filled again: only
 *       pages wholly inside that are neither busy nor present in the page
 *       tables are forgotten.  The rest is caught lazily: a missing fault
 *       on a page we hold refills it from the store (as a private file
 *       mapping gives back after MADV_DONTNEED), and a write-back that
 *       meets a zapped page refills it first.  Our own evictions raise the
 *       event too, for EVICTING pages, which are the evictor's.
 *   UNMAP (munmap): raised after the unmap.  A wholly unmapped region is
 *       taken out of the table and freed later by an API call; a partly
 *       unmapped one remembers the hole, so that umapd_unmap() does not
 *       unmap what the application may have mapped there since.  Dirty
 *       data in unmapped memory is gone, as with munmap of MAP_PRIVATE.
 *   REMAP (mremap): raised after the move.  A whole region moved without
 *       resizing is moved in the table.  Anything else (part of a region,
 *       or a size change) is not supported: the old range becomes a hole,
 *       and faults at the new place end in SIGBUS, never in silent zeros.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "engine/engine.h"
#include "util/log.h"

bool rg_live(struct eng_region *r, uintptr_t addr)
{
	if (r->gone)
		return false;
	for (size_t i = 0; i < r->nholes; i++)
		if (addr >= r->holes[i].start && addr < r->holes[i].end)
			return false;
	return true;
}

bool pg_dead(const struct eng_page *p)
{
	struct eng_region *r = p->region;
	uintptr_t a = pg_addr(r, p->index), e = a + pg_len(r, p->index);

	if (r->gone)
		return true;
	/* A page that is even partly unmapped cannot be filled, protected or
	 * written as a whole any more: it is dead. */
	for (size_t i = 0; i < r->nholes; i++)
		if (a < r->holes[i].end && e > r->holes[i].start)
			return true;
	return false;
}

struct ev_range {
	uintptr_t start, end;
	bool removed;       /* REMOVE: only pages wholly inside and not present */
};

static void ev_forget(struct eng_page *p, void *arg)
{
	struct ev_range *e = arg;
	struct eng_region *r = p->region;
	uintptr_t a = pg_addr(r, p->index), b = a + pg_len(r, p->index);

	if (pg_busy(p->state))
		return; /* its owner sees the change (pg_dead) or does the drop itself */
	if (e->removed ? (a >= e->start && b <= e->end && !pg_present(a, b))
		       : (a < e->end && b > e->start))
		pg_remove(p);
}

static void ev_remove(uintptr_t start, uintptr_t end)
{
	struct eng_region **v;
	size_t n;

	if (rg_get_range(start, end, &v, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct ev_range e = { .start = start, .end = end, .removed = true };
		uint64_t first, last;

		rg_page_span(v[i], start, end, &first, &last);
		pthread_mutex_lock(&eng.lock);
		pg_for_range(v[i], first, last, ev_forget, &e);
		pthread_mutex_unlock(&eng.lock);
		rg_put(v[i]);
	}
	free(v);
}

/* Record [start, end) as unmapped in r (under eng.lock). */
static int ev_add_hole(struct eng_region *r, uintptr_t start, uintptr_t end)
{
	struct eng_hole *h = realloc(r->holes, (r->nholes + 1) * sizeof(*h));
	size_t i;

	if (!h)
		return -ENOMEM;
	r->holes = h;
	for (i = r->nholes; i > 0 && h[i - 1].start > start; i--)
		h[i] = h[i - 1];
	h[i] = (struct eng_hole){ .start = start, .end = end };
	r->nholes++;
	return 0;
}

/* Is all of r unmapped once [start, end) is (under eng.lock)? */
static bool ev_all_gone(struct eng_region *r)
{
	uintptr_t covered = r->base;

	for (size_t i = 0; i < r->nholes; i++) {
		if (r->holes[i].start > covered)
			return false;
		if (r->holes[i].end > covered)
			covered = r->holes[i].end;
	}
	return covered >= r->base + r->len;
}

static void ev_unmap(uintptr_t start, uintptr_t end)
{
	struct eng_region **v;
	size_t n;

	if (rg_get_range(start, end, &v, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct eng_region *r = v[i];
		struct ev_range e = { .start = start, .end = end };
		uintptr_t a = start > r->base ? start : r->base;
		uintptr_t b = end < r->base + r->len ? end : r->base + r->len;
		uint64_t first, last;
		bool gone;

		rg_page_span(r, start, end, &first, &last);
		pthread_mutex_lock(&eng.lock);
		if (ev_add_hole(r, a, b) < 0)
			ulog_error("region %p: out of memory recording an unmapped range", (void *)r->base);
		gone = ev_all_gone(r);
		if (gone)
			r->gone = true;
		pg_for_range(r, first, last, ev_forget, &e);
		pthread_cond_broadcast(&eng.page_cv);
		pthread_mutex_unlock(&eng.lock);
		ulog_info("region %p: the application unmapped %p..%p%s", (void *)r->base, (void *)a,
			  (void *)b, gone ? ", all of it" : "");
		/* Whoever takes a gone region out of the table frees it: here, a
		 * later API call (the zombie list); in umapd_unmap, that call. */
		if (gone && rg_detach(r) == 0) {
			pthread_mutex_lock(&eng.lock);
			r->zlink = eng.zombies;
			eng.zombies = r;
			pthread_mutex_unlock(&eng.lock);
		}
		rg_put(r);
	}
	free(v);
}

static void ev_remap(uintptr_t from, uintptr_t to, size_t len)
{
	struct eng_region *r = rg_get_exact(from);
	bool whole = false;

	if (r) {
		pthread_mutex_lock(&eng.lock);
		whole = r->len == len && !r->frozen && !r->gone && r->nholes == 0;
		pthread_mutex_unlock(&eng.lock);
	}
	if (whole && rg_rebase(r, to) == 0) {
		ulog_info("region moved by mremap from %p to %p", (void *)from, (void *)to);
		rg_put(r);
		return;
	}
	if (r)
		rg_put(r);
	ulog_error("mremap of %zu bytes from %p to %p moves part of a region, or resizes it: not "
		   "supported; the old range is dropped and the new one raises SIGBUS",
		   len, (void *)from, (void *)to);
	ev_unmap(from, from + len);
}

void ev_handle(const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_REMOVE:
		ev_remove((uintptr_t)m->arg.remove.start, (uintptr_t)m->arg.remove.end);
		break;
	case UFFD_EVENT_UNMAP:
		ev_unmap((uintptr_t)m->arg.remove.start, (uintptr_t)m->arg.remove.end);
		break;
	case UFFD_EVENT_REMAP:
		ev_remap((uintptr_t)m->arg.remap.from, (uintptr_t)m->arg.remap.to,
			 (size_t)m->arg.remap.len);
		break;
	default:
		ulog_warn("ignoring userfaultfd event %u", m->event);
	}
}
