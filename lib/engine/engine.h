/*
 * lib/engine - regions, page states, the budget, fault service, fill,
 * eviction and write-back.  This header is the engine's whole internal
 * interface; api.c is its only user outside lib/engine.
 *
 * Locking (see docs/design.md):
 *   eng.regions_lock (rwlock)  the sorted region table
 *   eng.lock (mutex)           every page descriptor, every region's page
 *                              hash and read-ahead state, the CLOCK ring,
 *                              the resident/dirty counters, the deferred
 *                              fault list and the prefetch queue
 *   eng.cfg_lock (mutex)       eng.cfg
 * Order: ev_lock (fault.c: a read of the uffd and its events) before
 * regions_lock before lock.  No I/O and no ioctl is done while
 * holding eng.lock: a page in a busy state (FILLING, UNPROTECTING,
 * WRITEBACK, EVICTING) belongs to the one thread that set that state, which
 * does its I/O unlocked and then takes the lock again to leave the state.
 * Anyone else who meets a busy page sets wake_needed and walks away; the
 * owner wakes the page's waiters when it leaves the busy state.
 */
#ifndef UMAPD_ENGINE_H
#define UMAPD_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/config.h"
#include "engine/latency.h"
#include "io/io.h"
#include "store/store.h"
#include "uffd/uffd.h"
#include "umapd.h"

enum pg_state {
	PG_FILLING = 1,   /* being read from the store and installed */
	PG_CLEAN,         /* present, write-protected, same as the store */
	PG_DIRTY,         /* present, writable, newer than the store */
	PG_UNPROTECTING,  /* clean -> dirty: write protection being removed */
	PG_WRITEBACK,     /* dirty, protected, being written; stays resident */
	PG_EVICTING,      /* being written (if dirty) and dropped */
};

static inline bool pg_busy(uint8_t s)
{
	return s == PG_FILLING || s == PG_UNPROTECTING || s == PG_WRITEBACK || s == PG_EVICTING;
}

struct eng_region;

/* One resident page.  48 bytes; all fields under eng.lock. */
struct eng_page {
	struct eng_page *hnext;          /* region hash chain; slab free list */
	struct eng_page *cprev, *cnext;  /* CLOCK ring of resident pages */
	struct eng_region *region;
	uint64_t index;                  /* page number within the region */
	uint8_t state;                   /* enum pg_state */
	uint8_t referenced;              /* CLOCK bit: touched since the hand passed */
	uint8_t wake_needed;             /* someone faulted while it was busy */
	uint8_t was_dirty;               /* EVICTING/WRITEBACK: dirty when taken */
	uint8_t dropping;                /* busy: its slot may be empty for a while (drop, move) */
	uint8_t pinned;                  /* write-back found it pinned: keep it dirty */
	uint8_t readahead;               /* brought in ahead of use, not yet proved useful */
	/* One byte for these two, both only ever touched under eng.lock (the
	 * struct stays 48 bytes: integration.meta_bytes holds the engine to
	 * 64 bytes of memory per resident page). */
	uint8_t rmw_probe : 1;           /* installed clean by a read miss, not written yet (rmw.c) */
	uint8_t marker : 1;              /* read ahead, held back unmapped: its fault tells where a
					  * stream is (readahead.c; its bytes are in region->marks) */
};
_Static_assert(sizeof(struct eng_page) <= 48, "struct eng_page grew past 48 bytes");

/* Per-region counters; relaxed atomics, summed for process stats. */
struct eng_counters {
	_Atomic uint64_t faults, read_faults, write_faults, wp_faults;
	_Atomic uint64_t fills, evictions, dirty_evictions, flushed_pages;
	_Atomic uint64_t bytes_read, bytes_written, readahead_pages, io_errors;
	_Atomic uint64_t fault_wait_budget;
	_Atomic uint64_t pinned_pages, stuck_faults;
	_Atomic uint64_t readahead_hits, readahead_wasted;
	_Atomic uint64_t rmw_installs;
	_Atomic uint64_t ra_marks;       /* faults on read-ahead markers (not exported) */
	_Atomic uint64_t ra_budget_cut;  /* read-ahead windows the budget cut short or
					  * refused (not exported) */
};

/* A sequential stream seen in a region's faults (read-ahead), going up or
 * down the region. */
#define RA_STREAMS 4
#define RA_MARKS 16     /* read-ahead markers outstanding per region, at most */
struct eng_stream {
	uint64_t last;          /* page of its last miss */
	uint64_t lo, hi;        /* its read-ahead not yet gone past: pages [lo, hi) */
	long window;            /* current read-ahead window, pages (0: none yet) */
	int dir;                /* +1 up, -1 down, 0 not known yet */
	bool writes;            /* it dirties what it reads: read ahead dirty */
	uint64_t used;          /* eng_region.ra_clock when last continued */
};

struct eng_region {
	/* Set at map time, then read-only. */
	uintptr_t base;
	size_t len;             /* mapped bytes (a multiple of the system page) */
	size_t psize;           /* region page size */
	unsigned pshift;        /* log2(psize) */
	uint64_t npages;        /* pages covering len (the last may be partial) */
	uint64_t offset;        /* store offset of base */
	bool writable, growable;
	int io_kind;            /* UMAPD_IOENG_* asked for this region; 0: the process's */
	bool direct;            /* store opened O_DIRECT */
	struct store *store;

	/* Under eng.lock. */
	uint64_t data_end;      /* store offset past which bytes read as zeros */
	struct eng_page **buckets;
	uint64_t nbuckets;      /* power of two, or 0 */
	uint64_t nresident, ndirty;
	long ra_max;            /* max read-ahead window, pages */
	int advice;             /* UMAPD_ADV_NORMAL/SEQUENTIAL/RANDOM */
	struct eng_stream streams[RA_STREAMS];
	uint64_t ra_clock;      /* ticks once per miss, for the streams' LRU */
	struct eng_mark {       /* read-ahead markers (readahead.c): buf NULL if the slot is free */
		uint64_t index;
		void *buf;
	} marks[RA_MARKS];
	int rmw_score;          /* rmw.c: probes written minus probes evicted clean */
	unsigned rmw_tick;      /* rmw.c: read misses installed while above RMW_ON */
	bool frozen;            /* unmap in progress: no new state changes */
	bool gone;              /* wholly unmapped by the application (munmap) */
	struct eng_hole *holes; /* ranges the application unmapped, sorted */
	size_t nholes;
	struct eng_region *zlink; /* on eng.zombies once gone */
	bool walking;           /* pg_for_range in progress: do not shrink buckets */
	int wb_err;             /* first write-back error not yet reported (negative) */

	_Atomic int refs;       /* table's reference + one per user */
	struct eng_counters c;
	struct lat_hist lat;
};

/* A part of a region the application unmapped behind our back. */
struct eng_hole {
	uintptr_t start, end;
};

/* A fault not served at once (waiting on a busy page or deferred), kept so
 * the watchdog can report one that waits too long.  Under eng.lock. */
struct eng_waiter {
	uintptr_t addr;         /* system page */
	uint64_t since;         /* lat_now_ns() when first seen */
	bool logged;
};

/* A fault the fillers could not serve yet (no budget, EAGAIN, or an
 * address no region claims until pending events are read). */
struct eng_deferred {
	uintptr_t addr;
	uint64_t flags;
	unsigned tries;
};

/* An asynchronous prefetch of pages [next, end) of a region. */
struct eng_prefetch {
	struct eng_region *r;   /* holds a reference */
	uint64_t next, end;
	struct eng_prefetch *link;
};

struct engine {
	pthread_mutex_t init_lock;
	_Atomic bool started;

	pthread_mutex_t cfg_lock;
	struct eng_config cfg;

	struct uffd uffd;
	size_t sys_psize;
	pid_t pid;                     /* the process that started the engine */

	/* Hot settings mirrored from cfg for lock-free reads. */
	_Atomic uint64_t budget;
	_Atomic unsigned high_pct, low_pct;
	_Atomic unsigned fault_timeout_ms;
	bool evict_bounce;             /* set at start: write unmovable pages from a CPU copy */
	int io_kind;                   /* enum io_kind chosen at start (UMAPD_IO) */
	struct io_inject *io_inject;   /* UMAPD_IO_INJECT for tests, or NULL */

	pthread_rwlock_t regions_lock;
	struct eng_region **regions;   /* sorted by base */
	size_t nregions, cap_regions;

	pthread_mutex_t lock;
	pthread_cond_t page_cv;        /* a busy page left its busy state */
	pthread_cond_t evict_cv;       /* evictors: memory wanted */
	struct eng_page *hand;         /* CLOCK hand; NULL when nothing resident */
	uint64_t resident_bytes, dirty_bytes;
	_Atomic uint64_t resident_now, dirty_now, meta_now; /* copies for stats */
	uint64_t slab_bytes, bucket_bytes;
	struct eng_deferred *deferred;
	size_t ndeferred, cap_deferred;
	struct eng_prefetch *prefetch_head, *prefetch_tail;
	struct eng_region *zombies;    /* gone regions waiting to be freed */
	struct eng_waiter *waiters;    /* faults not served at once, for the watchdog */
	size_t nwaiters;
	_Atomic bool stopping;

	int kick_fd;                   /* eventfd: fillers have work besides faults */
	pthread_mutex_t ev_lock;       /* held from a read() of the uffd to the end of
					* handling the events it returned: events are
					* handled one batch at a time, in the order read */
	pthread_t *fillers, *evictors;

	/* Statistics of regions already unmapped. */
	pthread_mutex_t retired_lock;
	struct umapd_stats retired;
	uint64_t retired_lat[LAT_BUCKETS];
	uint64_t retired_lat_max;
};

extern struct engine eng;

/* engine.c */
int eng_start(void);                     /* idempotent; negative errno */
uint64_t eng_high_mark(void);            /* bytes: evictors start above */
uint64_t eng_low_mark(void);             /* bytes: evictors stop below */
void eng_kick_evictors(void);            /* under eng.lock */
void eng_kick_fillers(void);
/* An engine thread has made every mapping it needs (engine.c: start-up barrier). */
void eng_thread_ready(void);
int eng_config_set(const char *name, const char *value);
int eng_config_get(const char *name, char *buf, size_t len);
void eng_stats(struct umapd_stats *out);
void eng_region_stats(struct eng_region *r, struct umapd_stats *out);
void eng_retire(struct eng_region *r);   /* fold a dying region's counters into the process totals */

/* pages.c: descriptors, the per-region hash and the CLOCK ring; all under eng.lock */
struct eng_page *pg_lookup(struct eng_region *r, uint64_t index);
struct eng_page *pg_insert(struct eng_region *r, uint64_t index); /* FILLING; NULL on ENOMEM */
void pg_remove(struct eng_page *p);     /* unlink, uncount and free */
void pg_set_state(struct eng_page *p, uint8_t state); /* keeps dirty counters right */
/* Call fn on every resident page of r in [first, end). */
void pg_for_range(struct eng_region *r, uint64_t first, uint64_t end,
		  void (*fn)(struct eng_page *p, void *arg), void *arg);
size_t pg_len(const struct eng_region *r, uint64_t index);
void pg_forget_region(struct eng_region *r); /* free the (empty) region's buckets */
/* Is any system page touching [a, b) present in the page tables (mincore)?
 * Unmapped memory counts as not present. */
bool pg_present(uintptr_t a, uintptr_t b); /* bytes of the page inside the region */
static inline uintptr_t pg_addr(const struct eng_region *r, uint64_t index)
{
	return r->base + (index << r->pshift);
}

/* regions.c */
int rg_insert(struct eng_region *r);                 /* into the table; -ENOMEM, -EEXIST */
bool rg_overlaps(uintptr_t start, uintptr_t end);    /* any region spans part of it */
struct eng_region *rg_get(uintptr_t addr);           /* containing addr, with a ref, or NULL */
struct eng_region *rg_get_exact(uintptr_t base);     /* starting at base, with a ref */
void rg_put(struct eng_region *r);
/* Regions overlapping [start, end), each with a ref; caller frees the array. */
int rg_get_range(uintptr_t start, uintptr_t end, struct eng_region ***out, size_t *n);
int rg_remove(struct eng_region *r);                 /* from the table; waits for users */
int rg_detach(struct eng_region *r);                 /* from the table, no waiting */
void rg_wait_unused(struct eng_region *r);           /* until only the caller's ref is left */
int rg_rebase(struct eng_region *r, uintptr_t base); /* move in the table; -EEXIST on overlap */
/* The pages [*first, *last) of r touching [start, end). */
void rg_page_span(const struct eng_region *r, uintptr_t start, uintptr_t end, uint64_t *first, uint64_t *last);

/* fill.c: bring pages in.  Reserve under the lock, then fill unlocked. */
struct fill_req {
	struct eng_region *r;
	uint64_t first;      /* first page */
	uint64_t n;          /* pages reserved (FILLING) from first */
	bool write;          /* the fault on `first` was a write: install it dirty */
	bool prefetch;       /* no fault is waiting: all pages are read-ahead */
	bool readahead;      /* prefetch by the read-ahead (pages marked for the hit count) */
	bool keep_dirty;     /* install writable and DIRTY: the refill of a dirty page, or
			      * read-ahead of a stream that writes what it reads */
	uint64_t mark_plus1; /* read-ahead: hold page mark_plus1 - 1 back as a marker (0: none) */
	void *mark_buf;      /* set by fill_install: the marker's bytes, held back */
	/* Set by fill_begin(). */
	uint64_t data_end;   /* the region's data_end when the fill began */
	size_t total;        /* bytes of the n pages */
};
#define FILL_READ_TRIES 3 /* a failed store read is tried this many times in all */
/* Reserve `first` and up to want-1 following absent pages within budget. */
uint64_t fill_reserve(struct eng_region *r, uint64_t first, uint64_t want, uint64_t limit);
/* Count the fill and note its size; returns q->total. */
size_t fill_begin(struct fill_req *q);
/* Install bytes [done, done+len) of the fill from buf.  On an error the
 * fill is ended (what was installed before done kept, the rest given up)
 * and the error returned: -EAGAIN means retry the fault later. */
int fill_install(struct fill_req *q, const char *buf, size_t done, size_t len);
/* All q->total bytes are installed: leave FILLING. */
void fill_done(struct fill_req *q);
/* Reading store offset off failed for good after `done` bytes were installed. */
void fill_fail(struct fill_req *q, uint64_t off, size_t done, int err);
/* readahead.c: the pages to read ahead, chosen under eng.lock. */
#define RA_RUNS 16
struct ra_plan {                /* absent pages reserved (FILLING) for read-ahead */
	unsigned nruns;
	uint64_t first[RA_RUNS], n[RA_RUNS];
	bool keep_dirty;        /* install writable and DIRTY (see fill_req) */
	uint64_t mark_plus1;    /* the page to hold back as the marker, plus one (0: none) */
};
/*
 * A miss at index, whose own page is reserved: follow or start a stream
 * and reserve its read-ahead in *pl (no runs for none).  Streams are
 * detected per region (RA_STREAMS at once); a continuing stream doubles
 * its window up to the region's maximum and counts the read-ahead it went
 * past as hits.  keep_dirty: the stream reads, then writes, what it goes
 * through (write: the miss is a write).
 */
void ra_miss(struct eng_region *r, uint64_t index, bool write, uint64_t budget, struct ra_plan *pl);
void ra_touch(struct eng_page *p); /* a fault proved a read-ahead page useful */
/*
 * A fault on a page still being read ahead: once less than half a window
 * of its stream's read-ahead is left ahead of it, reserve the next window
 * in *pl, so that the device is never idle while the application catches
 * up: the asynchronous half of read-ahead, as the kernel's PG_readahead
 * marker does it.
 */
void ra_extend(struct eng_region *r, uint64_t index, uint64_t budget, struct ra_plan *pl, bool marker);
/* Markers, under eng.lock.  Keep buf as the bytes of marker page index
 * (false: no free slot, the caller keeps buf); take them back (NULL if
 * none); free them all (the region is going). */
bool ra_mark_add(struct eng_region *r, uint64_t index, void *buf);
void *ra_mark_take(struct eng_region *r, uint64_t index);
void ra_mark_free_all(struct eng_region *r);
/* rmw.c, under eng.lock: install this read miss writable and dirty, since
 * the region's reads are usually followed by writes? */
bool rmw_install_dirty(struct eng_region *r);
/* A probe page (rmw_probe) was written, or is leaving clean and unwritten. */
void rmw_note(struct eng_page *p, bool written);
/* Read [off, off+len) of r's store into buf, zeros past data_end, retrying
 * a failed read a few times; *got = bytes that came from the store. */
int fill_read(struct eng_region *r, void *buf, size_t len, uint64_t off, uint64_t data_end, uint64_t *got);
/* Read and install; returns 0 or negative errno (-EAGAIN: retry later). */
int fill_run(struct fill_req *q, void *bounce, size_t bounce_len);

/* fill_async.c: a fault thread's fills in flight (one per thread, unlocked) */
struct fill_async;
struct fa_fault {               /* the fault a fill serves, if any */
	uintptr_t addr;
	uint64_t flags;
	unsigned tries;
	uint64_t t0;            /* lat_now_ns() when it was taken up */
};
int fa_open(struct fill_async **out, int ep); /* ep: the thread's epoll, for completions */
void fa_close(struct fill_async *fa);
/* Start reading the reserved fill q.  Takes a region reference of its
 * own.  fault: what to do when it is installed (NULL for a prefetch).
 * Returns 0 (started), or -E2BIG: too large for the thread's buffers (the
 * caller fills it synchronously).  Waits for earlier fills to free buffer
 * room if needed. */
int fa_start(struct fill_async *fa, struct fill_req *q, const struct fa_fault *fault);
/* Hand started fills to the kernel. */
void fa_submit(struct fill_async *fa);
/* Install what finished; wait: block for at least one.  Returns how many
 * fills ended. */
int fa_reap(struct fill_async *fa, bool wait);
unsigned fa_active(const struct fill_async *fa); /* fills in flight */
bool fa_needs_poll(const struct fill_async *fa); /* reap again before sleeping */
bool fa_has_room(const struct fill_async *fa);  /* half the buffers free */
int fa_event_fd(struct fill_async *fa);          /* -1: none (psync) */

/* write_io.c: store writes for write-back, many at once */
struct wr_write {
	struct eng_region *r;
	uint64_t off;           /* store offset */
	size_t len;             /* bytes to write (clamped to a fixed-size file's end) */
	const char *src;
	int res;                /* 0 or a negative errno, after wr_run */
};
/* Describe the write of pages [first, first+npages) of r from src. */
void wr_prep(struct eng_region *r, uint64_t first, size_t npages, uintptr_t src, struct wr_write *w);
/* Write them all, together, and wait; a growable region's data_end follows. */
void wr_run(struct wr_write *w, size_t n);
void wr_start(void);        /* at engine start: the contexts lent to application threads */
void wr_thread_start(void); /* an evictor's own context */

/* evict.c */
void *evictor_main(void *arg);
/* Write back dirty pages of r in [first, end); drop them too if evict.
 * Waits for busy pages in the range.  Returns 0 or the first error. */
int wb_range(struct eng_region *r, uint64_t first, uint64_t end, bool evict);
/* Drop the pages of r in [first, end) without writing them back (their
 * data is dead), after waiting for any write-back or fill in flight there.
 * Returns 0 or -ENOMEM. */
int wb_discard(struct eng_region *r, uint64_t first, uint64_t end);
/* Write back and drop the dirty pages of r, frozen for an unmap; clean
 * pages stay for the unmap to free.  Returns 0 or the first error. */
int wb_unmap(struct eng_region *r);

/* events.c: non-cooperative events, read by the fillers */
void ev_handle(const struct uffd_msg *m);
bool pg_dead(const struct eng_page *p);   /* under eng.lock: page lies in unmapped memory */
bool rg_live(struct eng_region *r, uintptr_t addr); /* under eng.lock: not in a hole */

/* staging.c: parking space for pages moved out during write-back */
#define STAGE_BYTES ((size_t)8 << 20)
struct stage {
	uintptr_t base;          /* STAGE_BYTES, registered with eng.uffd */
	struct stage *next;      /* on the free list */
	struct stage *all_next;  /* every area ever made (they are never unmapped) */
};
int stage_get(struct stage **out);
void stage_clear(struct stage *s, size_t used); /* drop what was parked */
void stage_put(struct stage *s);
/* Is addr inside a staging area?  (Registered memory that is no region's.) */
bool stage_contains(uintptr_t addr);
/* How far a move of len bytes from `from` to `at` (in a staging area,
 * empty before it) got, by the page tables: the bytes from the start that
 * are now present at `at` and gone from `from`. */
size_t stage_filled(uintptr_t at, uintptr_t from, size_t len);

/* fault.c */
void *filler_main(void *arg);
/* Read pending messages now: handle events, defer faults.  For a thread
 * whose ioctl met EAGAIN (mm changing): the event must be read first. */
void fault_drain(void);
/* The pager watchdog: log and count faults outstanding too long.  Called
 * by an evictor every few hundred milliseconds; takes the locks itself. */
void fault_watchdog(void);
int fault_prefetch(struct eng_region *r, uint64_t first, uint64_t end);
/* Serve the fault again later (its install met EAGAIN: events pending). */
void fault_retry_later(uintptr_t addr, uint64_t flags, unsigned tries);

/* Tests only: called by umapd_map() between registering a new region with
 * userfaultfd and entering it in the region table (NULL otherwise). */
extern void (*eng_test_map_hook)(uintptr_t base, size_t len);
/* Tests only: called by write-back (wb_pages in evict.c) for each run of
 * dirty pages it wrote, [addr, addr + len), once the writes are done and
 * before the pages leave WRITEBACK (evict false) or EVICTING (evict true),
 * with no lock held (NULL otherwise). */
extern void (*eng_test_wb_hook)(uintptr_t addr, size_t len, bool evict);
/* Tests only: called when a fill's pages are installed, before they leave
 * FILLING (fill.c): addr of its first page, whether it was installed
 * writable and dirty for a read miss.  NULL in normal use. */
extern void (*eng_test_fill_hook)(uintptr_t addr, bool keep_dirty);
/* Tests only: called before each UFFDIO_COPY of a fill (fill.c) of *len
 * bytes at dst; may lower *len (the copy then stops there, as a partial
 * copy does), or return a negative errno to fail the copy with nothing
 * copied.  NULL in normal use. */
extern int (*eng_test_copy_hook)(uintptr_t dst, size_t *len);
extern _Atomic bool eng_test_stage_fail; /* Tests only: stage_get() fails (staging.c) */
/* Tests only: called after each UFFDIO_MOVE of write-back into staging
 * (wb_park in evict.c) with its result and the bytes it reported moved;
 * returns the result to act on and may change *moved, to make a move look
 * as the kernel reported it on a bad day.  NULL in normal use. */
extern int (*eng_test_move_hook)(int ret, size_t *moved);

#endif
