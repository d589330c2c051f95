/*
 * Store writes for write-back, many at once.
 *
 * Write-back (evict.c) turns a batch of dirty pages into stretches of
 * contiguous pages, each written to the store with one request.  The
 * stretches of a batch are handed to the calling thread's I/O context
 * together and waited for once, so an eviction or a flush keeps the
 * device busy instead of writing one stretch after another.  Stores
 * without extents are written synchronously, one stretch at a time.
 *
 * An evictor opens its own context when it starts.  Application threads
 * (umapd_flush, umapd_evict, umapd_unmap, the exit flush) borrow one of a
 * few contexts opened when the engine starts, or, if all are lent, use a
 * psync context of their own for the call.  Nothing is opened lazily in
 * an application thread: an io_uring or aio context maps its rings into
 * the address space, and an application that has just unmapped part of a
 * region may mean to map something of its own exactly there.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "util/log.h"
#include "util/sanitizer.h"

#define WRITE_DEPTH 64
#define POOL 2

static __thread struct io_ctx *own_ctx;   /* an evictor's */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct io_ctx *pool[POOL];          /* set at start, then read-only */
static bool pool_lent[POOL];               /* under pool_lock */

static struct io_ctx *ctx_new(void)
{
	struct io_ctx *c;

	if (io_open((enum io_kind)eng.io_kind, WRITE_DEPTH, &c) < 0 && io_open(IO_PSYNC, WRITE_DEPTH, &c) < 0)
		return NULL;
	if (eng.io_inject)
		io_set_inject(c, eng.io_inject);
	return c;
}

/* Idempotent: a start that fails later (an invalid setting, no
 * userfaultfd) is tried again by the next call, which must not replace,
 * and leak, the contexts opened the first time. */
void wr_start(void)
{
	for (int i = 0; i < POOL; i++)
		if (!pool[i])
			pool[i] = ctx_new();
}

/* Evictors' contexts, also reachable from here (see fill_async.c: a
 * forked child has no evictor threads, and no thread-local storage of
 * theirs either). */
static struct io_ctx *_Atomic own_all[64];
static _Atomic unsigned own_count;
static __thread unsigned own_slot;

void wr_thread_start(void)
{
	own_ctx = ctx_new();
	own_slot = atomic_fetch_add(&own_count, 1);
	if (own_slot < 64)
		atomic_store(&own_all[own_slot], own_ctx);
}

/* A context for one wr_run(); *lent says how to give it back. */
static struct io_ctx *ctx_get(int *lent)
{
	struct io_ctx *c = NULL;

	*lent = -1;
	if (own_ctx)
		return own_ctx;
	pthread_mutex_lock(&pool_lock);
	for (int i = 0; i < POOL && !c; i++)
		if (pool[i] && !pool_lent[i]) {
			pool_lent[i] = true;
			c = pool[i];
			*lent = i;
		}
	pthread_mutex_unlock(&pool_lock);
	if (!c && io_open(IO_PSYNC, WRITE_DEPTH, &c) == 0)
		*lent = -2; /* ours for this call */
	return c;
}

/* Give c back.  One that broke with writes the kernel still holds
 * (io_dead) is closed and replaced: used again, it would collect their
 * completions into requests long gone. */
static void ctx_put(struct io_ctx *c, int lent)
{
	bool dead = io_dead(c);

	if (dead)
		ulog_error("a write context broke with writes still in the kernel; closing it and opening another");
	if (lent == -2) {
		io_close(c);
	} else if (lent >= 0) {
		pthread_mutex_lock(&pool_lock);
		if (dead) {
			io_close(pool[lent]);
			pool[lent] = ctx_new();
		}
		pool_lent[lent] = false;
		pthread_mutex_unlock(&pool_lock);
	} else if (dead) {
		io_close(own_ctx);
		own_ctx = ctx_new();
		if (own_slot < 64)
			atomic_store(&own_all[own_slot], own_ctx);
	}
}

void wr_prep(struct eng_region *r, uint64_t first, size_t npages, uintptr_t src, struct wr_write *w)
{
	uint64_t off = r->offset + (first << r->pshift), len = 0, data_end;

	for (size_t i = 0; i < npages; i++)
		len += pg_len(r, first + i);
	pthread_mutex_lock(&eng.lock);
	data_end = r->data_end;
	pthread_mutex_unlock(&eng.lock);
	/* Bytes past the end of a file that may not grow are not written
	 * (mmap(2) drops them too). */
	if (!r->growable) {
		if (off >= data_end)
			len = 0;
		else if (off + len > data_end)
			len = data_end - off;
	}
	w->r = r;
	w->off = off;
	w->len = len;
	w->src = (const char *)src;
	w->res = 0;
}

/* Synchronously, through the store's write(). */
static int write_sync(struct wr_write *w, size_t pos)
{
	int ret;

	/* From a protected page or its staging copy (lib/util/sanitizer.h). */
	SAN_IGNORE_READS_BEGIN();
	ret = store_write(w->r->store, w->src + pos, w->len - pos, w->off + pos);
	SAN_IGNORE_READS_END();
	return ret;
}

void wr_run(struct wr_write *w, size_t n)
{
	struct io_req req[WRITE_DEPTH];
	size_t owner[WRITE_DEPTH], nreq = 0;
	int lent;
	struct io_ctx *c = ctx_get(&lent);

	for (size_t i = 0; i <= n; i++) {
		/* Send what is gathered when full or at the end. */
		if (nreq > 0 && (i == n || nreq + 4 > WRITE_DEPTH)) {
			/* psync's pwrite reads protected pages or staging copies:
			 * ordered by the kernel, not a lock (lib/util/sanitizer.h). */
			SAN_IGNORE_READS_BEGIN();
			io_run(c, req, nreq);
			SAN_IGNORE_READS_END();
			for (size_t k = 0; k < nreq; k++)
				if (req[k].res < 0 && w[owner[k]].res == 0)
					w[owner[k]].res = req[k].res;
			nreq = 0;
		}
		if (i == n)
			break;
		for (size_t pos = 0; pos < w[i].len && w[i].res == 0;) {
			struct store_extent x;
			int ret = c ? store_extent(w[i].r->store, w[i].off + pos, w[i].len - pos, 1, &x) : -EOPNOTSUPP;

			if (ret == 0 && x.fd >= 0 && nreq < WRITE_DEPTH &&
			    (!x.align || (pos % x.align == 0 && x.off % x.align == 0 && x.len % x.align == 0))) {
				req[nreq] = (struct io_req){ .fd = x.fd, .write = true, .buf = (char *)w[i].src + pos,
							     .len = x.len, .off = x.off, .align = x.align };
				owner[nreq++] = i;
				pos += x.len;
				continue;
			}
			if (ret < 0 && ret != -EOPNOTSUPP) {
				w[i].res = ret;
				break;
			}
			w[i].res = write_sync(&w[i], pos);
			break;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct eng_region *r = w[i].r;

		if (w[i].res == 0 && w[i].len && r->growable) {
			pthread_mutex_lock(&eng.lock);
			if (w[i].off + w[i].len > r->data_end)
				r->data_end = w[i].off + w[i].len;
			pthread_mutex_unlock(&eng.lock);
		}
	}
	if (c)
		ctx_put(c, lent);
}
