/*
 * Read-ahead: which pages to read before they fault, decided under eng.lock.
 *
 * Each region follows up to RA_STREAMS sequential streams, each going up
 * or down the region (a quicksort partition's cursors walk down, a scan
 * walks up).  A miss continues a stream if it is the page next to the
 * stream's last miss, falls in or just past the stream's read-ahead, or is
 * reached from the stream's end over pages that are all resident (the
 * application went past them without a fault).  A continuing stream
 * doubles its window up to the region's maximum; a miss that continues
 * nothing takes the least recently used stream's slot and reads nothing
 * ahead, so random access costs no wasted reads.  Windows are also held to
 * a sixteenth of the budget, so that read-ahead cannot push out the pages
 * in use.  UMAPD_ADV_SEQUENTIAL always reads the full window,
 * UMAPD_ADV_RANDOM never reads ahead.
 *
 * A window is a range of pages, not a count of reads: the pages in it that
 * are resident already are skipped, and the absent ones are read in up to
 * RA_RUNS runs.  A window used to end at the first resident page, and a
 * scan that loops over data larger than the budget then lost its
 * read-ahead for good: the CLOCK evicts read-ahead pages (never faulted,
 * never referenced) before the faulted ones, the faulted ones that survive
 * a lap cut the next lap's windows short, and each short window restarted
 * its stream from nothing (bench_io's O_DIRECT seqscan fell from 770 to
 * 34 MiB/s in such runs).
 */
#include "engine/engine.h"

#include <stdlib.h>

/* Never read more than this ahead of a fault: the kernel's read_ahead_kb
 * on the test machine's disk, and what a fault thread's arena holds. */
#define RA_MAX_BYTES (8u << 20)
#define RA_GAP_MAX 64           /* resident pages a miss may be past a stream's end */
#define RA_MARK_MIN 64          /* a window this many pages or more gets a marker */

/* The largest window of r, in pages. */
static long ra_cap(const struct eng_region *r, uint64_t budget)
{
	long cap = (long)(RA_MAX_BYTES >> r->pshift), max = r->ra_max < cap ? r->ra_max : cap;
	long budget_cap = (long)(budget / 16 >> r->pshift);

	return max < budget_cap ? max : budget_cap;
}

/* Room under limit for one more page of r?  A read-ahead the budget cuts
 * short or refuses is counted (ra_budget_cut): kernel.ra_budget watches
 * that the evictors keep the room there. */
static bool ra_room(struct eng_region *r, uint64_t limit)
{
	if (eng.resident_bytes + r->psize <= limit)
		return true;
	atomic_fetch_add_explicit(&r->c.ra_budget_cut, 1, memory_order_relaxed);
	return false;
}

/* Count the pages a stream went past, [from, to), as hits; of the resident
 * ones, add how many it left dirty to *dirty and how many there are to
 * *seen. */
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

/* Every page of [from, to) is resident (or being filled), and there are
 * few enough of them to have been gone past in order. */
static bool ra_resident(struct eng_region *r, uint64_t from, uint64_t to)
{
	if (to <= from || to - from > RA_GAP_MAX)
		return false;
	for (uint64_t i = from; i < to; i++)
		if (!pg_lookup(r, i))
			return false;
	return true;
}

/* +1 or -1 if a miss at index continues stream t that way, else 0. */
static int ra_continues(struct eng_region *r, const struct eng_stream *t, uint64_t index)
{
	bool has_ra = t->hi > t->lo;

	if (!t->used)
		return 0;
	if (t->dir >= 0 && index > t->last) {
		bool ra_up = has_ra && t->dir > 0;
		uint64_t end = ra_up && t->hi > t->last + 1 ? t->hi : t->last + 1;

		if (index == t->last + 1 || (ra_up && index >= t->lo && index <= t->hi))
			return 1;
		if (ra_resident(r, end, index))
			return 1;
	}
	if (t->dir <= 0 && index < t->last) {
		bool ra_down = has_ra && t->dir < 0;
		uint64_t end = ra_down && t->lo < t->last ? t->lo : t->last;

		if (index + 1 == t->last || (ra_down && index + 1 >= t->lo && index < t->hi))
			return -1;
		if (ra_resident(r, index + 1, end))
			return -1;
	}
	return 0;
}

/*
 * Reserve the absent pages of [first, end) within limit, in runs, nearest
 * the fault first (upward from first if dir > 0, downward from end
 * otherwise).  Returns the bound the plan covers: every page between it
 * and the start is resident or reserved (the end reached going up, the
 * lowest page reached going down).
 */
static uint64_t ra_reserve(struct eng_region *r, struct ra_plan *pl, int dir, uint64_t first, uint64_t end,
			   uint64_t limit)
{
	uint64_t i;

	if (end > r->npages)
		end = r->npages;
	i = dir > 0 ? first : end;
	while (dir > 0 ? i < end : i > first) {
		uint64_t at = dir > 0 ? i : i - 1;
		uintptr_t a = pg_addr(r, at);
		unsigned k = pl->nruns;

		if (pg_lookup(r, at)) {
			i = dir > 0 ? i + 1 : i - 1;
			continue;
		}
		if (!ra_room(r, limit) || !rg_live(r, a) || !rg_live(r, a + pg_len(r, at) - 1))
			break;
		/* Joins the last run if next to it, else starts a run. */
		if (k > 0 && (dir > 0 ? pl->first[k - 1] + pl->n[k - 1] == at : pl->first[k - 1] == at + 1)) {
			k--;
		} else if (k == RA_RUNS) {
			break;
		} else {
			pl->first[k] = at;
			pl->n[k] = 0;
		}
		if (!pg_insert(r, at))
			break;
		if (dir < 0)
			pl->first[k] = at;
		pl->n[k]++;
		pl->nruns = k + 1;
		i = dir > 0 ? i + 1 : i - 1;
	}
	return i;
}

/*
 * The marker: the middle page of what a plan reads, held back unmapped
 * when its fill completes (fill.c), with its bytes kept aside.  Pages the
 * read-ahead installs take no faults, so without it the engine learns
 * where a scan is only when the scan reaches the end of the read-ahead
 * (a miss, and the device idle until then) or catches up with a fill
 * still in flight.  A scan reading faster than the device does the
 * latter; one the device outruns did the former once a window: bench_io's
 * O_DIRECT scan missed at the end of 2,120 windows of 2,765 and left the
 * disk idle 45% of the time.  The marker's fault is served from its kept
 * bytes, without I/O, and starts the next window while half of this one
 * is still ahead (the kernel's PG_readahead does the same for the page
 * cache).
 */
static void ra_pick_mark(struct ra_plan *pl)
{
	uint64_t total = 0, k;

	pl->mark_plus1 = 0;
	for (unsigned i = 0; i < pl->nruns; i++)
		total += pl->n[i];
	if (total < RA_MARK_MIN)
		return;
	k = total / 2;
	for (unsigned i = 0; i < pl->nruns; i++) {
		if (k < pl->n[i]) {
			pl->mark_plus1 = pl->first[i] + k + 1;
			return;
		}
		k -= pl->n[i];
	}
}

bool ra_mark_add(struct eng_region *r, uint64_t index, void *buf)
{
	for (int i = 0; i < RA_MARKS; i++) {
		if (!r->marks[i].buf) {
			r->marks[i] = (struct eng_mark){ .index = index, .buf = buf };
			return true;
		}
	}
	return false;
}

void *ra_mark_take(struct eng_region *r, uint64_t index)
{
	for (int i = 0; i < RA_MARKS; i++) {
		if (r->marks[i].buf && r->marks[i].index == index) {
			void *buf = r->marks[i].buf;

			r->marks[i].buf = NULL;
			return buf;
		}
	}
	return NULL;
}

void ra_mark_free_all(struct eng_region *r)
{
	for (int i = 0; i < RA_MARKS; i++) {
		free(r->marks[i].buf);
		r->marks[i].buf = NULL;
	}
}

void ra_miss(struct eng_region *r, uint64_t index, bool write, uint64_t budget, struct ra_plan *pl)
{
	long max = ra_cap(r, budget);
	struct eng_stream *s = NULL, *lru = &r->streams[0];
	uint64_t lo = 0, hi = 0, from, to, bound;
	unsigned ndirty = 0, nseen = 0;
	bool writes = false;
	int dir = 0;
	long w;

	pl->nruns = 0;
	pl->keep_dirty = false;
	pl->mark_plus1 = 0;
	r->ra_clock++;
	if (r->ra_max <= 0 || r->advice == UMAPD_ADV_RANDOM)
		return;
	for (int i = 0; i < RA_STREAMS && !s; i++) {
		struct eng_stream *t = &r->streams[i];

		dir = ra_continues(r, t, index);
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
	if (w <= 0 || !ra_room(r, budget))
		return;
	pl->keep_dirty = writes && r->writable && eng.uffd.can_wp;
	if (dir > 0) {
		/* Keep one window ahead of the fault; what the last read-ahead
		 * brought in need not be read again. */
		from = s->hi > index + 1 ? s->hi : index + 1;
		to = index + 1 + (uint64_t)w;
		if (from >= to)
			return;
		bound = ra_reserve(r, pl, 1, from, to, budget);
		if (bound > from) {
			if (s->hi <= s->lo)
				s->lo = from;
			s->hi = bound;
		}
	} else {
		/* Down: a window below the fault, less what the last read-ahead
		 * brought in. */
		to = s->hi > s->lo && s->lo < index ? s->lo : index;
		from = index + 1 > (uint64_t)w ? index + 1 - (uint64_t)w : 0;
		if (from >= to)
			return;
		bound = ra_reserve(r, pl, -1, from, to, budget);
		if (bound < to) {
			if (s->hi <= s->lo)
				s->hi = to;
			s->lo = bound;
		}
	}
	ra_pick_mark(pl);
}

void ra_extend(struct eng_region *r, uint64_t index, uint64_t budget, struct ra_plan *pl, bool marker)
{
	long max = ra_cap(r, budget);

	pl->nruns = 0;
	pl->keep_dirty = false;
	pl->mark_plus1 = 0;
	if (max <= 0 || r->advice == UMAPD_ADV_RANDOM)
		return;
	for (int i = 0; i < RA_STREAMS; i++) {
		struct eng_stream *t = &r->streams[i];
		unsigned ndirty = 0, nseen = 0;
		uint64_t bound;
		long w;

		if (!t->used || !t->dir || t->hi <= t->lo || index < t->lo || index >= t->hi)
			continue;
		/* The application is at index: what it went past was used, and
		 * only what lies beyond it is still ahead. */
		if (t->dir > 0) {
			ra_count_hits(r, t->lo, index, &ndirty, &nseen);
			t->lo = index;
		} else {
			ra_count_hits(r, index + 1, t->hi, &ndirty, &nseen);
			t->hi = index + 1;
		}
		if (nseen >= 4)
			t->writes = ndirty * 4 >= nseen * 3;
		/* Read the next window once less than half of one is ahead, so
		 * that between half a window and one and a half are in flight
		 * while the application catches up; or at once at the marker,
		 * which is half a window into the last one. */
		if (!marker && (t->hi - t->lo) * 2 > (uint64_t)t->window)
			return;
		w = t->window * 2 < max ? t->window * 2 : max;
		if (w <= 0 || !ra_room(r, budget))
			return;
		t->window = w;
		pl->keep_dirty = t->writes && r->writable && eng.uffd.can_wp;
		if (t->dir > 0) {
			bound = ra_reserve(r, pl, 1, t->hi, t->hi + (uint64_t)w, budget);
			t->hi = bound;
		} else {
			bound = ra_reserve(r, pl, -1, t->lo > (uint64_t)w ? t->lo - (uint64_t)w : 0, t->lo, budget);
			t->lo = bound;
		}
		ra_pick_mark(pl);
		return;
	}
}
