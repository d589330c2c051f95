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
};

/* Per-region counters; relaxed atomics, summed for process stats. */
struct eng_counters {
	_Atomic uint64_t faults, read_faults, write_faults, wp_faults;
	_Atomic uint64_t fills, evictions, dirty_evictions, flushed_pages;
	_Atomic uint64_t bytes_read, bytes_written, readahead_pages, io_errors;
	_Atomic uint64_t fault_wait_budget;
	_Atomic uint64_t pinned_pages, stuck_faults;
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
	uint64_t ra_next;       /* page a sequential stream would fault next */
	long ra_window;         /* current window, pages */
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
	bool keep_dirty;     /* refill of a dirty page: it stays dirty */
};
/* Reserve `first` and up to want-1 following absent pages within budget. */
uint64_t fill_reserve(struct eng_region *r, uint64_t first, uint64_t want, uint64_t limit);
/* Read [off, off+len) of r's store into buf, zeros past data_end, retrying
 * a failed read a few times; *got = bytes that came from the store. */
int fill_read(struct eng_region *r, void *buf, size_t len, uint64_t off, uint64_t data_end, uint64_t *got);
/* Read and install; returns 0 or negative errno (-EAGAIN: retry later). */
int fill_run(struct fill_req *q, void *bounce, size_t bounce_len);
long fill_window(struct eng_region *r, uint64_t index); /* read-ahead decision, under lock */

/* evict.c */
void *evictor_main(void *arg);
/* Write back dirty pages of r in [first, end); drop them too if evict.
 * Waits for busy pages in the range.  Returns 0 or the first error. */
int wb_range(struct eng_region *r, uint64_t first, uint64_t end, bool evict);

/* events.c: non-cooperative events, read by the fillers */
void ev_handle(const struct uffd_msg *m);
bool pg_dead(const struct eng_page *p);   /* under eng.lock: page lies in unmapped memory */
bool rg_live(struct eng_region *r, uintptr_t addr); /* under eng.lock: not in a hole */

/* staging.c: parking space for pages moved out during write-back */
#define STAGE_BYTES ((size_t)8 << 20)
struct stage {
	uintptr_t base;          /* STAGE_BYTES, registered with eng.uffd */
	struct stage *next;
};
int stage_get(struct stage **out);
void stage_clear(struct stage *s, size_t used); /* drop what was parked */
void stage_put(struct stage *s);

/* fault.c */
void *filler_main(void *arg);
/* Read pending messages now: handle events, defer faults.  For a thread
 * whose ioctl met EAGAIN (mm changing): the event must be read first. */
void fault_drain(void);
/* The pager watchdog: log and count faults outstanding too long.  Called
 * by an evictor every few hundred milliseconds; takes the locks itself. */
void fault_watchdog(void);
int fault_prefetch(struct eng_region *r, uint64_t first, uint64_t end);

#endif
