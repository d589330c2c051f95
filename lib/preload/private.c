/*
 * The private data of a MAP_PRIVATE mapping: an overlay store.
 *
 * A private mapping reads the file until the program writes a page; from
 * then on that page is the process's own, and it must never reach the
 * file.  The engine only knows stores, so each region of a private mapping
 * gets a store of its own (a store backs one region), and all the stores
 * of one mapping share one struct pre_priv:
 *
 *   - written: one bit per system page of the file, from base on.  A page
 *     whose bit is set has been written back by the engine at least once
 *     (evicted or flushed dirty): its data is in the swap file.  Clear: the
 *     page reads the file.
 *   - swap_fd: an unlinked temporary file (O_TMPFILE) in UMAPD_HEAP_DIR
 *     (else $TMPDIR, else /var/tmp); file offset off is at off - base in
 *     it, so it is as sparse as the writes.  It is made by the program's
 *     thread when the mapping is or becomes writable (never in a service
 *     thread), and goes with the last reference, with the process at the
 *     latest: nothing is left on disk.
 *
 * A page is dirty in memory before it is ever in swap, and the engine
 * never reads a page it holds, so the bit is set when the write is
 * announced (extent, or write before it starts): a read of that page can
 * only come after the write-back finished.  A failed write keeps the page
 * resident and dirty (DESIGN.md invariant 3), so a bit set for it is never
 * read before a later write succeeds.
 *
 * Locking: bits_lock (rwlock) protects the written pointer and nbits: the
 * store callbacks (the engine's threads, several at once) hold it for
 * reading and test or set bits atomically; pre_priv_reserve (the program's
 * thread, under the files lock) holds it for writing to grow the bitmap.
 * swap_lock serialises making the swap file; swap_fd is read lock-free
 * (acquire) by the callbacks.  refs is atomic: the mapping (pf_file) and
 * each store hold one, and the engine drops a store's from its own threads
 * at unmap.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preload/preload.h"
#include "umapd_store.h"

#define PV_SHIFT 12 /* bitmap granularity: the smallest page the engine uses */
#define PV_PAGE ((uint64_t)1 << PV_SHIFT)

struct pre_priv {
	_Atomic unsigned refs;
	int file_fd;              /* our duplicate of the program's descriptor */
	uint64_t base;            /* file offset of bit 0 */
	char dir[PRE_PATH_MAX];   /* where the swap file goes */
	pthread_mutex_t swap_lock;
	_Atomic int swap_fd;      /* -1 until made */
	pthread_rwlock_t bits_lock;
	_Atomic uint64_t *written;
	uint64_t nbits;
};

/* One region's store: its face for the engine. */
struct pv_store {
	struct umapd_store pub;
	struct pre_priv *pv;
};

_Atomic uint64_t pre_priv_swap_bytes;
_Atomic unsigned pre_priv_mappings;

static atomic_int fail_once_logged; /* the "no swap file" line is logged once */

/* --- the bitmap ------------------------------------------------------------------- */

/*
 * Memory the engine's threads read (the bitmap, this structure) must not
 * come from the umapd heap in heap mode: a thread serving faults must never
 * touch paged memory (DESIGN.md invariant 1).  So it comes from the C
 * library's allocator, called directly: wrapping calloc() in pre_enter()
 * does not work, because the compiler knows calloc reads no program
 * memory and drops the pre_enter()/pre_leave() pair around it.  free()
 * routes it back by address.
 */
static void *pv_calloc(size_t n)
{
	pre_resolve();
	return pre_real.calloc ? pre_real.calloc(1, n) : NULL;
}

/* Under bits_lock (either mode). */
static bool pv_test(struct pre_priv *pv, uint64_t page)
{
	if (page >= pv->nbits)
		return false;
	return (atomic_load_explicit(&pv->written[page / 64], memory_order_acquire) >> (page % 64)) & 1;
}

static void pv_set(struct pre_priv *pv, uint64_t page)
{
	if (page < pv->nbits)
		atomic_fetch_or_explicit(&pv->written[page / 64], (uint64_t)1 << (page % 64), memory_order_release);
}

static void pv_clear(struct pre_priv *pv, uint64_t page)
{
	if (page < pv->nbits)
		atomic_fetch_and_explicit(&pv->written[page / 64], ~((uint64_t)1 << (page % 64)),
					  memory_order_release);
}

/* Page index of file offset off (off >= base). */
static uint64_t pv_page(const struct pre_priv *pv, uint64_t off)
{
	return (off - pv->base) >> PV_SHIFT;
}

int pre_priv_reserve(struct pre_priv *pv, uint64_t end)
{
	uint64_t need, words;
	_Atomic uint64_t *v;

	if (end <= pv->base)
		return 0;
	need = (end - pv->base + PV_PAGE - 1) >> PV_SHIFT;
	if (need <= pv->nbits)
		return 0;
	/* Room for doubling, so that a mapping grown step by step (mremap,
	 * file growth) does not copy its bitmap at every step. */
	if (need < 2 * pv->nbits)
		need = 2 * pv->nbits;
	words = (need + 63) / 64;
	v = pv_calloc(words * sizeof(*v));
	if (!v)
		return -ENOMEM;
	pthread_rwlock_wrlock(&pv->bits_lock);
	for (uint64_t i = 0; i < (pv->nbits + 63) / 64; i++)
		atomic_store_explicit(&v[i], atomic_load_explicit(&pv->written[i], memory_order_relaxed),
				      memory_order_relaxed);
	free(pv->written);
	pv->written = v;
	pv->nbits = words * 64;
	pthread_rwlock_unlock(&pv->bits_lock);
	return 0;
}

/* --- life ------------------------------------------------------------------------------- */

int pre_priv_new(int fd, uint64_t base, uint64_t len, struct pre_priv **out)
{
	struct pre_priv *pv = pv_calloc(sizeof(*pv));
	const char *dir = getenv("UMAPD_HEAP_DIR");

	if (!pv)
		return -ENOMEM;
	if (!dir || !*dir)
		dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/var/tmp";
	snprintf(pv->dir, sizeof(pv->dir), "%s", dir);
	pv->file_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (pv->file_fd < 0) {
		int e = errno;

		free(pv);
		return -e;
	}
	pv->base = base;
	atomic_init(&pv->swap_fd, -1);
	atomic_init(&pv->refs, 1);
	pthread_mutex_init(&pv->swap_lock, NULL);
	pthread_rwlock_init(&pv->bits_lock, NULL);
	if (pre_priv_reserve(pv, base + len) < 0) {
		pre_priv_put(pv);
		return -ENOMEM;
	}
	atomic_fetch_add(&pre_priv_mappings, 1);
	*out = pv;
	return 0;
}

void pre_priv_get(struct pre_priv *pv)
{
	atomic_fetch_add_explicit(&pv->refs, 1, memory_order_relaxed);
}

void pre_priv_put(struct pre_priv *pv)
{
	int sfd;

	if (!pv || atomic_fetch_sub_explicit(&pv->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* The swap file was never linked: closing it frees its blocks. */
	sfd = atomic_load(&pv->swap_fd);
	if (sfd >= 0)
		close(sfd);
	close(pv->file_fd);
	pthread_rwlock_destroy(&pv->bits_lock);
	pthread_mutex_destroy(&pv->swap_lock);
	free(pv->written);
	free(pv);
}

int pre_priv_swap(struct pre_priv *pv)
{
	char path[PRE_PATH_MAX + 32];
	int fd, ret = 0;

	if (atomic_load_explicit(&pv->swap_fd, memory_order_acquire) >= 0)
		return 0;
	pthread_mutex_lock(&pv->swap_lock);
	if (atomic_load(&pv->swap_fd) >= 0)
		goto out;
	fd = open(pv->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && errno != ENOENT && errno != ENOTDIR && errno != EACCES && errno != EROFS) {
		/* A file system without O_TMPFILE: a named file, gone at once. */
		if (snprintf(path, sizeof(path), "%s/umapd-private.XXXXXX", pv->dir) < (int)sizeof(path)) {
			fd = mkostemp(path, O_CLOEXEC);
			if (fd >= 0)
				unlink(path);
		}
	}
	if (fd < 0)
		ret = -errno;
	else
		atomic_store_explicit(&pv->swap_fd, fd, memory_order_release);
out:
	pthread_mutex_unlock(&pv->swap_lock);
	return ret;
}

const char *pre_priv_dir(const struct pre_priv *pv)
{
	return pv->dir;
}

/* --- the store ---------------------------------------------------------------------------- */

static struct pre_priv *pv_of(struct umapd_store *s)
{
	return ((struct pv_store *)s)->pv;
}

static int64_t s_size(struct umapd_store *s);

/* Length of the run of pages from off, at most len bytes, that all read
 * from the same place; *swap: that place is the swap file. */
static size_t pv_run(struct pre_priv *pv, uint64_t off, size_t len, bool *swap)
{
	uint64_t first = pv_page(pv, off), end = off + len, at;

	*swap = pv_test(pv, first);
	at = pv->base + ((first + 1) << PV_SHIFT);
	while (at < end && pv_test(pv, pv_page(pv, at)) == *swap)
		at += PV_PAGE;
	return at >= end ? len : (size_t)(at - off);
}

/* Read len bytes at off of fd; past its end, zeros (and *eof set, if
 * eof is not NULL). */
static int read_full(int fd, char *p, size_t len, uint64_t off, bool *eof)
{
	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			memset(p, 0, len);
			if (eof)
				*eof = true;
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/*
 * The engine's synchronous fill reads through here and takes zeros past
 * the end of the file as data; only its asynchronous one (extents) asks
 * size() after a short read.  So a read whose first page lies wholly past
 * the end of the file -- the file was truncated under the mapping, and the
 * first page is the one faulted on -- fails with ENXIO, which the engine
 * turns into the SIGBUS the kernel gives (tests/preload private_truncate).
 */
static int s_read(struct umapd_store *s, void *buf, size_t len, uint64_t off)
{
	struct pre_priv *pv = pv_of(s);
	uint64_t first = off;
	char *p = buf;
	int ret = 0;

	if (off < pv->base)
		return -EINVAL;
	pthread_rwlock_rdlock(&pv->bits_lock);
	while (len > 0 && ret == 0) {
		bool swap, eof = false;
		size_t n = pv_run(pv, off, len, &swap);
		int sfd = atomic_load_explicit(&pv->swap_fd, memory_order_acquire);

		if (swap && sfd >= 0)
			ret = read_full(sfd, p, n, off - pv->base, NULL);
		else if (swap)
			ret = -EIO; /* cannot happen: a written page had a swap file */
		else
			ret = read_full(pv->file_fd, p, n, off, &eof);
		if (ret == 0 && eof && off == first && s_size(s) <= (int64_t)first)
			ret = -ENXIO;
		p += n;
		off += n;
		len -= n;
	}
	pthread_rwlock_unlock(&pv->bits_lock);
	return ret;
}

/* Mark [off, off + len) written (it is about to be in swap).  Under bits_lock. */
static void pv_mark(struct pre_priv *pv, uint64_t off, size_t len)
{
	for (uint64_t pg = pv_page(pv, off), last = pv_page(pv, off + len - 1); pg <= last; pg++)
		pv_set(pv, pg);
}

static int swap_fd_for_write(struct pre_priv *pv)
{
	int sfd = atomic_load_explicit(&pv->swap_fd, memory_order_acquire);

	/* Only a mapping that can be written has dirty pages, and the swap
	 * file was made before it became writable (pre_priv_swap). */
	if (sfd < 0 && !atomic_exchange(&fail_once_logged, 1))
		pre_log("private mapping: a dirty page but no swap file; it stays in memory");
	return sfd;
}

static int s_write(struct umapd_store *s, const void *buf, size_t len, uint64_t off)
{
	struct pre_priv *pv = pv_of(s);
	const char *p = buf;
	int sfd = swap_fd_for_write(pv);
	uint64_t at;

	if (sfd < 0)
		return -EROFS;
	if (off < pv->base || len == 0)
		return len == 0 ? 0 : -EINVAL;
	pthread_rwlock_rdlock(&pv->bits_lock);
	pv_mark(pv, off, len);
	pthread_rwlock_unlock(&pv->bits_lock);
	for (at = off - pv->base; len > 0;) {
		ssize_t n = pwrite(sfd, p, len, (off_t)at);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		atomic_fetch_add_explicit(&pre_priv_swap_bytes, (uint64_t)n, memory_order_relaxed);
		p += n;
		len -= (size_t)n;
		at += (uint64_t)n;
	}
	return 0;
}

/* Nothing to make durable: private data dies with the process. */
static int s_sync(struct umapd_store *s)
{
	(void)s;
	return 0;
}

/* The file's size: the kernel's private mapping also stops at the end of
 * the file (SIGBUS past it, written pages included, after a truncation). */
static int64_t s_size(struct umapd_store *s)
{
	struct stat st;

	if (fstat(pv_of(s)->file_fd, &st) < 0)
		return -errno;
	return st.st_size;
}

static void s_close(struct umapd_store *s)
{
	pre_priv_put(pv_of(s));
	free(s);
}

static int s_extent(struct umapd_store *s, uint64_t off, size_t len, int write, struct umapd_store_extent *x)
{
	struct pre_priv *pv = pv_of(s);
	bool swap = true;

	if (off < pv->base || len == 0)
		return -EINVAL;
	pthread_rwlock_rdlock(&pv->bits_lock);
	if (write) {
		x->fd = swap_fd_for_write(pv);
		if (x->fd >= 0) {
			pv_mark(pv, off, len);
			atomic_fetch_add_explicit(&pre_priv_swap_bytes, len, memory_order_relaxed);
		}
		x->len = len;
	} else {
		x->len = pv_run(pv, off, len, &swap);
		x->fd = swap ? atomic_load_explicit(&pv->swap_fd, memory_order_acquire) : pv->file_fd;
	}
	pthread_rwlock_unlock(&pv->bits_lock);
	if (swap && x->fd < 0)
		return write ? -EROFS : -EIO;
	x->off = swap ? off - pv->base : off;
	x->align = 0;
	return 0;
}

static const struct umapd_store_ops pv_ops = {
	.abi = UMAPD_STORE_ABI,
	.name = "private",
	.read = s_read,
	.write = s_write,
	.sync = s_sync,
	.size = s_size,
	.close = s_close,
	.extent = s_extent,
};

int pre_priv_store(struct pre_priv *pv, uint64_t off, uint64_t len, struct umapd_store **out)
{
	struct pv_store *s;

	if (off < pv->base)
		return -EINVAL;
	if (pre_priv_reserve(pv, off + len) < 0)
		return -ENOMEM;
	s = pv_calloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->pub.ops = &pv_ops;
	s->pv = pv;
	pre_priv_get(pv);
	*out = &s->pub;
	return 0;
}

/* --- dropping and moving private data ----------------------------------------------------- */

void pre_priv_drop(struct pre_priv *pv, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;
	int sfd;

	if (off < pv->base)
		off = pv->base;
	if (end <= off)
		return;
	pthread_rwlock_rdlock(&pv->bits_lock);
	for (uint64_t pg = pv_page(pv, off), last = pv_page(pv, end - 1); pg <= last; pg++)
		pv_clear(pv, pg);
	pthread_rwlock_unlock(&pv->bits_lock);
	/* Give the blocks back; the bits alone already make the data dead. */
	sfd = atomic_load(&pv->swap_fd);
	pre_enter(); /* our own fallocate, not the program's: no coherence (and its lock) */
	if (sfd >= 0)
		(void)fallocate(sfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(off - pv->base),
				(off_t)(end - off));
	pre_leave();
}

/* Called by the program's thread with pre_enter() in force: its pread and
 * pwrite of the swap files must not go through the coherence wrappers. */
int pre_priv_copy(struct pre_priv *from, struct pre_priv *to, uint64_t off, uint64_t len)
{
	const size_t cap = (size_t)1 << 20;
	uint64_t end = off + len;
	char *buf = NULL;
	int ret = 0, sfd = atomic_load(&from->swap_fd);

	if (sfd < 0 || off < from->base || off < to->base)
		return 0; /* nothing was ever written back */
	if (pre_priv_reserve(to, end) < 0)
		return -ENOMEM;
	pthread_rwlock_rdlock(&from->bits_lock);
	for (uint64_t at = off; at < end && ret == 0;) {
		bool swap;
		size_t n = pv_run(from, at, (size_t)(end - at < cap ? end - at : cap), &swap);

		if (swap) {
			ssize_t w;

			ret = pre_priv_swap(to);
			if (ret == 0 && !buf && !(buf = pv_calloc(cap)))
				ret = -ENOMEM;
			if (ret == 0)
				ret = read_full(sfd, buf, n, at - from->base, NULL);
			if (ret == 0) {
				w = pwrite(atomic_load(&to->swap_fd), buf, n, (off_t)(at - to->base));
				if (w != (ssize_t)n)
					ret = w < 0 ? -errno : -EIO;
			}
			if (ret == 0) {
				pthread_rwlock_rdlock(&to->bits_lock);
				pv_mark(to, at, n);
				pthread_rwlock_unlock(&to->bits_lock);
			}
		}
		at += n;
	}
	pthread_rwlock_unlock(&from->bits_lock);
	free(buf);
	return ret;
}
