/*
 * Fills in flight: how one fault thread keeps many reads going at once.
 *
 * A fault thread reserves a fill as before (pages FILLING, counted against
 * the budget), then, instead of reading it itself, hands its reads to the
 * thread's I/O context (lib/io: io_uring by default) and goes back to
 * reading faults.  When all of a fill's reads have finished, the thread
 * installs it with UFFDIO_COPY and wakes the faulting thread, exactly as
 * a synchronous fill would.  Nothing here is shared: each fault thread
 * owns its struct fill_async.
 *
 * Each fill reads into a run of 128 KiB slots of the thread's 8 MiB arena,
 * engine-owned memory registered with io_uring as its one fixed buffer
 * (never region memory: DESIGN.md invariant 1 and lib/io/io.h).  A fill
 * larger than the arena (a page size above 8 MiB) is filled synchronously
 * by the caller.  A store without extents (memory, fault injection,
 * plugins without the op) is read synchronously into the slot, and its
 * fill completes at once; holes read as zeros without any I/O.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>

#include "engine/engine.h"
#include "util/log.h"

/* 8 MiB: a scan's read-ahead keeps up to one and a half windows of 8 MiB in
 * flight (readahead.c), and with a 4 MiB arena an O_DIRECT scan read at
 * 290-430 MiB/s where it reads at 710-800 MiB/s with 8 (docs/performance.md). */
#define FA_SLOT ((size_t)128 << 10)
#define FA_SLOTS 64              /* one mask word */
#define FA_FILLS 64              /* fills in flight at most */
#define FA_PIECES 8              /* reads per fill; the rest is read synchronously */
#define FA_DEPTH 256             /* requests per I/O context */

struct fa_fill {
	struct fill_req q;
	struct fa_fault fault;
	bool has_fault, used;
	char *buf;
	unsigned slot0, nslots;
	unsigned pending;        /* pieces not finished */
	unsigned tries;          /* failed reads retried so far */
	int err;                 /* first read error, negative */
	size_t err_at;           /* byte of the fill where it starts */
	size_t valid;            /* bytes of the fill inside the data when it began */
	struct io_req pieces[FA_PIECES];
};

struct fill_async {
	char *arena;
	uint64_t free_mask;           /* bit i set: slot i free */
	struct fa_fill fills[FA_FILLS];
	unsigned nactive;
	struct io_ctx *ctx[4];        /* by enum io_kind, opened when first needed */
	bool ctx_failed[4];
	int ep;                       /* the thread's epoll, for the contexts' event fds */
};

static struct io_ctx *ctx_open(struct fill_async *fa, enum io_kind k);

/* Every fault thread's state, also reachable from here: a child forked by
 * the application has none of our threads, and without this the leak
 * checker of a sanitizer build reports their memory at the child's exit. */
#define FA_MAX_THREADS 256
static struct fill_async *_Atomic fa_all[FA_MAX_THREADS];
static _Atomic unsigned fa_count;

/*
 * The arena, in transparent huge pages where the kernel can give them.  A
 * read is one request to the device only as far as its buffer has few
 * physically contiguous pieces: in 4 KiB pages a virtio disk that takes 254
 * segments cuts a read at 1 MiB (and merging stops there too), while the
 * page cache's large folios let the kernel's own read-ahead send requests
 * of several MiB.  On the test VM the device reads larger requests faster.
 */
#define FA_ALIGN ((size_t)2 << 20)

static char *arena_map(void)
{
	size_t len = FA_SLOT * FA_SLOTS;
	char *m = mmap(NULL, len + FA_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t at;

	if (m == MAP_FAILED)
		return NULL;
	at = ((uintptr_t)m + FA_ALIGN - 1) & ~(uintptr_t)(FA_ALIGN - 1);
	if (at > (uintptr_t)m)
		munmap(m, at - (uintptr_t)m);
	munmap((char *)at + len, (uintptr_t)m + FA_ALIGN - at);
	madvise((void *)at, len, MADV_HUGEPAGE); /* a hint: 4 KiB pages work too */
	return (char *)at;
}

int fa_open(struct fill_async **out, int ep)
{
	struct fill_async *fa = calloc(1, sizeof(*fa));

	if (!fa)
		return -ENOMEM;
	fa->arena = arena_map();
	if (!fa->arena) {
		free(fa);
		return -ENOMEM;
	}
	fa->free_mask = ~(uint64_t)0;
	fa->ep = ep;
	*out = fa;
	unsigned slot = atomic_fetch_add(&fa_count, 1);

	if (slot < FA_MAX_THREADS)
		atomic_store(&fa_all[slot], fa);
	/* The process's context now, at start-up: opening one maps its rings,
	 * which in the middle of the application's life could land in a hole
	 * it has just unmapped and means to map again. */
	ctx_open(fa, (enum io_kind)eng.io_kind);
	return 0;
}

void fa_close(struct fill_async *fa)
{
	if (!fa)
		return;
	for (int k = 0; k < 4; k++)
		io_close(fa->ctx[k]);
	munmap(fa->arena, FA_SLOT * FA_SLOTS);
	free(fa);
}

static struct io_ctx *ctx_open(struct fill_async *fa, enum io_kind k)
{
	int ret, efd;

	if (fa->ctx[k] || fa->ctx_failed[k])
		return fa->ctx[k];
	ret = io_open(k, FA_DEPTH, &fa->ctx[k]);
	if (ret < 0) {
		fa->ctx_failed[k] = true;
		ulog_warn("fault thread: cannot open an %s context: %s", io_kind_name(k), ulog_errname(-ret));
		return NULL;
	}
	if (eng.io_inject)
		io_set_inject(fa->ctx[k], eng.io_inject);
	/* Registering the arena saves pinning it again for every read. */
	ret = io_register_buffer(fa->ctx[k], fa->arena, FA_SLOT * FA_SLOTS);
	if (ret < 0)
		ulog_debug("fault thread: no fixed buffer for %s: %s", io_kind_name(k), ulog_errname(-ret));
	efd = io_event_fd(fa->ctx[k]);
	if (efd >= 0 && fa->ep >= 0) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 2 };

		if (epoll_ctl(fa->ep, EPOLL_CTL_ADD, efd, &ev) < 0)
			ulog_error("fault thread: epoll_ctl on the I/O context: %s", ulog_errname(errno));
	}
	return fa->ctx[k];
}

/* The context a region's reads go to: its own choice, else the process's. */
static struct io_ctx *ctx_for(struct fill_async *fa, struct eng_region *r)
{
	struct io_ctx *c = NULL;

	if (r->io_kind)
		c = ctx_open(fa, (enum io_kind)r->io_kind);
	if (!c)
		c = ctx_open(fa, (enum io_kind)eng.io_kind);
	if (!c)
		c = ctx_open(fa, IO_PSYNC);
	return c;
}

/* A mask of n slots from slot 0. */
static uint64_t slot_bits(unsigned n)
{
	return n >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1);
}

/* n contiguous free slots: the first index, or -1. */
static int slots_find(uint64_t mask, unsigned n)
{
	uint64_t want = slot_bits(n);

	for (unsigned i = 0; i + n <= FA_SLOTS; i++)
		if (((mask >> i) & want) == want)
			return (int)i;
	return -1;
}

bool fa_has_room(const struct fill_async *fa)
{
	return fa->nactive < FA_FILLS / 2 && __builtin_popcountll(fa->free_mask) >= FA_SLOTS / 2;
}

unsigned fa_active(const struct fill_async *fa)
{
	return fa->nactive;
}

bool fa_needs_poll(const struct fill_async *fa)
{
	for (int k = 1; k < 4; k++)
		if (fa->ctx[k] && io_needs_poll(fa->ctx[k]))
			return true;
	return false;
}

int fa_event_fd(struct fill_async *fa)
{
	return fa->ctx[eng.io_kind] ? io_event_fd(fa->ctx[eng.io_kind]) : -1;
}

void fa_submit(struct fill_async *fa)
{
	for (int k = 1; k < 4; k++) {
		if (!fa->ctx[k] || io_inflight(fa->ctx[k]) == 0)
			continue;
		int ret = io_flush(fa->ctx[k]);

		if (ret < 0)
			ulog_error("fault thread: submitting reads: %s", ulog_errname(-ret));
	}
}

/* All reads of f are done: install it, wake its fault, free its room. */
static void fa_complete(struct fill_async *fa, struct fa_fill *f)
{
	struct fill_req *q = &f->q;
	struct eng_region *r = q->r;
	int ret;

	if (f->err) {
		size_t ok = (f->err_at >> r->pshift) << r->pshift;

		ret = ok ? fill_install(q, f->buf, 0, ok) : 0;
		if (ret == 0)
			fill_fail(q, r->offset + (q->first << r->pshift) + f->err_at, ok, f->err);
	} else {
		ret = fill_install(q, f->buf, 0, q->total);
		if (ret == 0)
			fill_done(q);
		else if (ret == -EAGAIN && f->has_fault)
			fault_retry_later(f->fault.addr, f->fault.flags, f->fault.tries + 1);
	}
	if (f->has_fault)
		lat_record(&r->lat, lat_now_ns() - f->fault.t0);
	fa->free_mask |= slot_bits(f->nslots) << f->slot0;
	f->used = false;
	fa->nactive--;
	rg_put(r);
}

/* One read of a fill finished. */
static void fa_piece_done(struct fill_async *fa, struct io_ctx *c, struct io_req *p)
{
	struct fa_fill *f = p->owner;
	struct eng_region *r = f->q.r;

	if (p->res < 0 && f->tries + 1 < FILL_READ_TRIES) {
		/* Read again what is missing; a transient error should not cost
		 * the application a SIGBUS. */
		f->tries++;
		p->buf += p->done;
		p->off += p->done;
		p->len -= p->done;
		if (io_enqueue(c, p) == 0)
			return;
	}
	if (p->res < 0) {
		size_t at = (size_t)(p->buf - f->buf);

		if (!f->err || at < f->err_at) {
			f->err = p->res;
			f->err_at = at;
		}
	} else if (p->done < p->len) {
		/* The end of the file.  Inside the data the region was mapped
		 * with, the file was truncated under the mapping: pages wholly
		 * past the new end fail like a shared mmap's (SIGBUS); the page
		 * holding the end reads the file's bytes, then zeros. */
		uint64_t base = r->offset + (f->q.first << r->pshift);
		int64_t now = store_size(r->store);
		size_t cut = SIZE_MAX;

		/* A short file is not a truncated one in every store (a sparse
		 * store's chunk files end where their last write did): ask the
		 * store for its size now. */
		if (now >= 0 && (uint64_t)now < base + f->valid)
			cut = (uint64_t)now <= base ? 0 : (((uint64_t)now - base) + r->psize - 1) & ~(r->psize - 1);
		memset(p->buf + p->done, 0, p->len - p->done);
		if (cut < f->valid && (!f->err || cut < f->err_at)) {
			f->err = -ENXIO;
			f->err_at = cut;
		}
	}
	atomic_fetch_add_explicit(&r->c.bytes_read, p->done, memory_order_relaxed);
	if (--f->pending == 0)
		fa_complete(fa, f);
}

int fa_reap(struct fill_async *fa, bool wait)
{
	struct io_req *got[64];
	unsigned before = fa->nactive;

	for (int k = 1; k < 4; k++) {
		struct io_ctx *c = fa->ctx[k];

		while (c && io_inflight(c) > 0) {
			int n = io_reap(c, got, 64, wait);

			if (n < 0) {
				ulog_error("fault thread: reaping reads: %s", ulog_errname(-n));
				break;
			}
			for (int i = 0; i < n; i++)
				fa_piece_done(fa, c, got[i]);
			if (n == 0)
				break;
			wait = false; /* one finished: the caller has progress */
		}
	}
	return (int)(before - fa->nactive);
}

/* Read [pos, end) of the fill synchronously into its buffer (fill_read
 * retries a failed read as the synchronous fill does). */
static int fa_read_sync(struct fa_fill *f, size_t pos, size_t end)
{
	struct eng_region *r = f->q.r;
	uint64_t off = r->offset + (f->q.first << r->pshift) + pos, got = 0;
	int ret = fill_read(r, f->buf + pos, end - pos, off, f->q.data_end, &got);

	if (ret == 0)
		atomic_fetch_add_explicit(&r->c.bytes_read, got, memory_order_relaxed);
	return ret;
}

int fa_start(struct fill_async *fa, struct fill_req *q, const struct fa_fault *fault)
{
	struct eng_region *r = q->r;
	size_t total = 0, valid = 0, pos = 0;
	unsigned need;
	struct fa_fill *f = NULL;
	struct io_ctx *c;
	uint64_t base;
	int s;

	for (uint64_t i = 0; i < q->n; i++)
		total += pg_len(r, q->first + i);
	need = (unsigned)((total + FA_SLOT - 1) / FA_SLOT);
	c = ctx_for(fa, r);
	if (need > FA_SLOTS || !c)
		return -E2BIG;
	/* Room: wait for earlier fills of this thread (the device, not
	 * another thread) until there is. */
	while ((s = slots_find(fa->free_mask, need)) < 0 || fa->nactive == FA_FILLS) {
		fa_submit(fa);
		if (fa_reap(fa, true) <= 0 && fa->nactive == 0)
			return -E2BIG; /* cannot happen: everything is free then */
	}
	for (unsigned i = 0; i < FA_FILLS && !f; i++)
		if (!fa->fills[i].used)
			f = &fa->fills[i];
	memset(f, 0, sizeof(*f));
	f->used = true;
	f->q = *q;
	f->has_fault = fault != NULL;
	if (fault)
		f->fault = *fault;
	f->slot0 = (unsigned)s;
	f->nslots = need;
	f->buf = fa->arena + (size_t)s * FA_SLOT;
	fa->free_mask &= ~(slot_bits(need) << s);
	fa->nactive++;
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_acquire); /* until fa_complete */
	fill_begin(&f->q);

	base = r->offset + (q->first << r->pshift);
	if (f->q.data_end > base)
		valid = f->q.data_end - base < total ? (size_t)(f->q.data_end - base) : total;
	memset(f->buf + valid, 0, total - valid); /* past the end of the data: zeros */
	f->valid = valid;
	f->pending = 1; /* held while pieces are queued */
	while (pos < valid) {
		struct store_extent x;
		int ret = store_extent(r->store, base + pos, valid - pos, 0, &x);

		if (ret == 0 && x.fd < 0) {
			memset(f->buf + pos, 0, x.len); /* a hole */
			pos += x.len;
			continue;
		}
		if (ret == 0 && f->pending - 1 < FA_PIECES) {
			size_t len = x.len;
			struct io_req *p = &f->pieces[f->pending - 1];

			/* O_DIRECT: whole blocks; the end of the file reads short. */
			if (x.align && len % x.align)
				len += x.align - len % x.align;
			if (pos + len <= total && (!x.align || (pos % x.align == 0 && x.off % x.align == 0))) {
				*p = (struct io_req){ .fd = x.fd, .buf = f->buf + pos, .len = len, .off = x.off,
						      .align = x.align, .owner = f };
				while (io_enqueue(c, p) == -EBUSY) {
					fa_submit(fa);
					fa_reap(fa, true);
				}
				f->pending++;
				pos += x.len;
				continue;
			}
		}
		if (ret < 0 && ret != -EOPNOTSUPP) {
			f->err = ret;
			f->err_at = pos;
			break;
		}
		/* No extent (or no room for another piece): the rest, now. */
		ret = fa_read_sync(f, pos, valid);
		if (ret < 0) {
			f->err = ret;
			f->err_at = pos;
		}
		break;
	}
	if (--f->pending == 0)
		fa_complete(fa, f);
	else if (io_kind_of(c) == IO_PSYNC && fault)
		fa_reap(fa, false); /* it ran already: wake the faulting thread now */
	return 0;
}
