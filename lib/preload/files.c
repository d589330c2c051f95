/*
 * File mode: the program's mmap() of a matching file becomes a umapd
 * region, as far as the file reaches.
 *
 * A tracked mapping is first made by the kernel, exactly as asked (so the
 * kernel checks flags, permissions, MAP_FIXED and placement for us); then
 * the part of it the file covers is replaced, in place, by a umapd region
 * (UMAPD_FIXED).  What lies past the end of the file stays the kernel's
 * mapping of the file: it reads and faults as the kernel says (SIGBUS past
 * the end), and it sees what the program writes to the file.  When the
 * file grows (a write, ftruncate, mremap) by at least UMAPD_PRELOAD_GROW,
 * the grown part is replaced by a further umapd region: that is how LMDB's
 * map, much larger than its file, and SQLite's growing map end up paged.
 *
 * The address space of a tracked mapping is a list of pieces, each either
 * a (part of a) umapd region or a kernel mapping of the file.  munmap,
 * mprotect and mremap cut pieces; a region whose pieces are all gone is
 * released with umapd_unmap().  A region cut in the middle keeps working
 * around the hole (the engine follows the application's munmap).
 *
 * Locking: files_lock protects the table, every pf_file and pf_region.
 * It is held across umapd calls (which may wait for I/O), never by the
 * engine's threads (they pass through our wrappers without looking), and
 * our own calls into umapd run with pre_enter() so that the engine's
 * mmap/munmap/madvise are not intercepted back into here.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preload/preload.h"
#include "umapd.h"
#include "umapd_store.h"

/* One mmap() call of a matching file: what its pieces share. */
struct pf_file {
	int fd;                 /* our duplicate (close-on-exec) */
	dev_t dev;
	ino_t ino;
	uintptr_t origin;       /* the address of file offset `offset` */
	uint64_t offset;
	int prot, flags;        /* as the program asked */
	bool shared;
	bool region_writable;   /* regions registered writable (MAP_SHARED and fd O_RDWR, or
				 * MAP_PRIVATE on a kernel with userfaultfd write protection) */
	bool no_readahead;      /* the program writes the file with write(), not the map */
	struct pre_priv *pv;    /* MAP_PRIVATE: where written pages live (private.c) */
	unsigned refs;          /* pieces pointing here */
	char path[160];         /* for the log, possibly cut short */
};

/* One umapd region: live is the sum of the lengths of the pieces on it. */
struct pf_region {
	uintptr_t base;
	size_t live;
};

struct pf_piece {
	uintptr_t start, end;
	struct pf_file *f;
	struct pf_region *rg;   /* NULL: the kernel's mapping of the file */
	bool no_grow;           /* kernel piece that must stay so (private, made writable) */
};

static pthread_mutex_t files_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pf_piece *pieces; /* sorted by start, non-overlapping */
static size_t npieces, cap_pieces;
_Atomic unsigned pre_files_count;
_Atomic unsigned pre_files_paged;
static _Atomic size_t npieces_any; /* lock-free "is anything tracked" */
static size_t sys_page, region_align;

void pre_files_lock(void)
{
	pthread_mutex_lock(&files_lock);
}

void pre_files_unlock(void)
{
	pthread_mutex_unlock(&files_lock);
}

void pre_files_atfork_prepare(void)
{
	pthread_mutex_lock(&files_lock);
}

void pre_files_atfork_parent(void)
{
	pthread_mutex_unlock(&files_lock);
}

/* In a child the regions are not there (MADV_DONTFORK) and the engine is
 * not ours: drop the table without touching anything. */
void pre_files_forget(void)
{
	pthread_mutex_init(&files_lock, NULL);
	pieces = NULL;
	npieces = cap_pieces = 0;
	atomic_store(&npieces_any, 0);
	atomic_store(&pre_files_count, 0);
}

static uint64_t file_off(const struct pf_file *f, uintptr_t addr)
{
	return f->offset + (addr - f->origin);
}

static uintptr_t round_up(uintptr_t x, size_t a)
{
	return (x + a - 1) & ~(uintptr_t)(a - 1);
}

/* --- the piece table (under files_lock) -------------------------------------------- */

/* Index of the first piece ending after addr, or npieces. */
static size_t find_after(uintptr_t addr)
{
	size_t lo = 0, hi = npieces;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (pieces[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int insert_piece(struct pf_piece p)
{
	size_t i;

	if (npieces == cap_pieces) {
		size_t cap = cap_pieces ? 2 * cap_pieces : 16;
		struct pf_piece *v = realloc(pieces, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		pieces = v;
		cap_pieces = cap;
	}
	i = find_after(p.start);
	memmove(&pieces[i + 1], &pieces[i], (npieces - i) * sizeof(*pieces));
	pieces[i] = p;
	npieces++;
	p.f->refs++;
	atomic_store(&npieces_any, npieces);
	return 0;
}

static void file_put(struct pf_file *f)
{
	if (--f->refs > 0)
		return;
	close(f->fd);
	pre_priv_put(f->pv); /* the last region's store may still hold it */
	free(f);
	atomic_fetch_sub(&pre_files_count, 1);
}

static void remove_piece(size_t i)
{
	struct pf_file *f = pieces[i].f;

	memmove(&pieces[i], &pieces[i + 1], (npieces - i - 1) * sizeof(*pieces));
	npieces--;
	atomic_store(&npieces_any, npieces);
	file_put(f);
}

/*
 * Make [a, b) its own piece (splitting the piece that holds it; a and b
 * must lie in one piece).  Returns its index, or -ENOMEM (nothing changed).
 */
static long isolate(uintptr_t a, uintptr_t b)
{
	size_t i = find_after(a);
	struct pf_piece p = pieces[i];

	if (a > p.start) {
		struct pf_piece head = p;

		head.end = a;
		pieces[i].start = a;
		if (insert_piece(head) < 0) {
			pieces[i].start = p.start;
			return -ENOMEM;
		}
		i++;
	}
	if (b < pieces[i].end) {
		struct pf_piece tail = pieces[i];

		tail.start = b;
		pieces[i].end = b;
		if (insert_piece(tail) < 0) {
			pieces[i].end = tail.end;
			return -ENOMEM;
		}
	}
	return (long)i;
}

/* --- umapd calls ----------------------------------------------------------------------- */

static void log_failure(const char *what, const struct pf_file *f, uintptr_t a, int err)
{
	pre_log("%s of %s at %p failed: %s", what, f->path, (void *)a, strerror(err));
}

/*
 * A region over the overlay store of private mapping f (private.c): pages
 * read the file until written, then live in the private swap file.  It is
 * registered writable even for a read-only mapping, so that mprotect can
 * make it writable later without handing it back to the kernel; a kernel
 * without userfaultfd write protection gets a read-only region instead
 * (*rprot says which).  Inside pre_enter().
 */
static void *map_private(struct pf_file *f, uintptr_t a, uintptr_t b, int *rprot,
			 const struct umapd_region_opts *opts)
{
	struct umapd_store *s;
	void *p = NULL;
	int ret;

	for (int tries = 0; tries < 2 && !p; tries++) {
		ret = pre_priv_store(f->pv, file_off(f, a), b - a, &s);
		if (ret < 0) {
			errno = -ret;
			return NULL;
		}
		p = umapd_map_store((void *)a, b - a, *rprot, UMAPD_FIXED, s, file_off(f, a), opts);
		if (p)
			break;
		umapd_store_close(s); /* a store umapd_map_store refused is still ours */
		if (errno != ENOTSUP || (f->prot & PROT_WRITE) || !(*rprot & PROT_WRITE))
			return NULL;
		f->region_writable = false;
		*rprot = PROT_READ;
	}
	return p;
}

/* Replace the kernel piece part [a, b) by a umapd region. */
static int promote(uintptr_t a, uintptr_t b)
{
	long i = isolate(a, b);
	struct pf_file *f;
	struct umapd_region_opts opts;
	struct pf_region *rg;
	int rprot;
	void *p;

	if (i < 0)
		return (int)i;
	f = pieces[i].f;
	rg = malloc(sizeof(*rg));
	if (!rg)
		return -ENOMEM;
	rprot = PROT_READ | (f->region_writable ? PROT_WRITE : 0);
	/* umapd_evict() does not wait for a fill in flight: a read-ahead that
	 * read the file just before the program's pwrite() would install the
	 * old bytes after our eviction.  A file the program maps read-only
	 * but opened for writing is one it writes with pwrite() (SQLite,
	 * LMDB): no read-ahead there, so no fill runs but the faulting
	 * thread's own.  docs/preload.md, Limits. */
	memset(&opts, 0, sizeof(opts));
	opts.read_ahead = f->no_readahead ? -1 : 0;
	pre_enter();
	if (f->pv)
		p = map_private(f, a, b, &rprot, &opts);
	else
		p = umapd_map((void *)a, b - a, rprot, UMAPD_FIXED, f->fd, (off_t)file_off(f, a), &opts);
	if (p && rprot != (f->prot & (PROT_READ | PROT_WRITE)) && mprotect(p, b - a, f->prot) < 0) {
		int e = errno;

		umapd_unmap(p);
		p = NULL;
		errno = e;
	}
	pre_leave();
	if (!p) {
		int e = errno;

		free(rg);
		/* umapd_map may fail after it has replaced the range (e.g. when
		 * registering it): put the kernel's mapping of the file back. */
		pre_enter();
		if (pre_real.mmap((void *)a, b - a, f->prot, (f->flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED, f->fd,
				  (off_t)file_off(f, a)) == MAP_FAILED)
			pre_log("cannot restore the mapping of %s at %p: %s", f->path, (void *)a, strerror(errno));
		pre_leave();
		log_failure("umapd_map", f, a, e);
		if (e == EPERM || e == ENOSYS || e == ENOTSUP) {
			pre_log("file mode off: userfaultfd is not usable here; mappings stay the kernel's");
			pre.files_on = false;
		}
		return -e;
	}
	*rg = (struct pf_region){ .base = a, .live = b - a };
	atomic_fetch_add(&pre_files_paged, 1);
	pieces[i].rg = rg;
	if (pre.cfg.log)
		pre_log("paging %s [%llu, %llu) at %p (%s, %s)", f->path,
			(unsigned long long)file_off(f, a), (unsigned long long)file_off(f, b),
			(void *)a, f->shared ? "shared" : "private",
			(f->prot & PROT_WRITE) ? "read-write" : "read-only");
	return 0;
}

/*
 * A private mapping's kernel pieces are paged only when they are made:
 * once the program could have written to one (the file's last partial
 * page, a part the file grew into), it may hold the program's private
 * copies, which a region put in its place would lose.  So they stay the
 * kernel's (docs/preload.md, Limits).
 */
static void freeze(struct pf_file *f)
{
	if (!f->pv)
		return;
	for (size_t i = 0; i < npieces; i++)
		if (pieces[i].f == f && !pieces[i].rg)
			pieces[i].no_grow = true;
}

/* Page whatever the file now covers of f's kernel pieces, in steps of at
 * least UMAPD_PRELOAD_GROW (or up to the end of a piece). */
static void grow(struct pf_file *f)
{
	struct stat st;

	if (!pre.files_on || fstat(f->fd, &st) < 0)
		return;
	for (size_t i = 0; i < npieces; i++) {
		struct pf_piece *p = &pieces[i];
		uint64_t fo, avail;

		if (p->f != f || p->rg || p->no_grow)
			continue;
		fo = file_off(f, p->start);
		if ((uint64_t)st.st_size <= fo)
			continue;
		avail = (uint64_t)st.st_size - fo;
		if (avail > p->end - p->start)
			avail = p->end - p->start;
		/* Whole region pages, and only pages wholly inside the file:
		 * the last partial page stays the kernel's, so later growth of
		 * the file shows in it. */
		avail &= ~(uint64_t)(region_align - 1);
		if (avail == 0 || (avail < pre.cfg.grow_step && avail < p->end - p->start))
			continue;
		if ((fo & (region_align - 1)) != 0)
			continue;
		if (promote(p->start, p->start + avail) < 0)
			break;
	}
	freeze(f);
}

/* --- mmap ---------------------------------------------------------------------------------------- */

static size_t page_size_setting(void)
{
	char v[32];
	size_t ps = 0;

	pre_enter();
	if (umapd_config_get("UMAPD_PAGESIZE", v, sizeof(v)) > 0)
		ps = (size_t)strtoull(v, NULL, 10);
	pre_leave();
	return ps > sys_page ? ps : sys_page;
}

static bool fd_path(int fd, char *buf, size_t len)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, len - 1);
	if (n <= 0 || (size_t)n >= len - 1)
		return false;
	buf[n] = '\0';
	return true;
}

/*
 * At exit() the engine writes every region's dirty pages back (as the
 * kernel does for MAP_SHARED); for a private mapping that would only fill
 * a swap file about to vanish.  So the private regions' pages are dropped
 * first, by an exit handler registered at the first private mapping: the
 * program's main has started by then, so the handler runs before the
 * libraries' destructors (the engine's among them).
 */
static void private_discard_all(void)
{
	if (pre.child)
		return;
	pthread_mutex_lock(&files_lock);
	pre_enter();
	for (size_t i = 0; i < npieces; i++)
		if (pieces[i].rg && pieces[i].f->pv)
			(void)umapd_discard((void *)pieces[i].start, pieces[i].end - pieces[i].start);
	pre_leave();
	pthread_mutex_unlock(&files_lock);
}

static void private_exit(void)
{
	static bool registered;

	if (!registered)
		registered = atexit(private_discard_all) == 0;
}

/*
 * Track a kernel mapping [p, p + len) of fd and page what the file covers.
 * Under files_lock.  Failures leave the kernel mapping as it is (for a
 * private mapping that is the kernel's copy-on-write: still never the
 * file).  Returns the new mapping, or NULL if it is not tracked.
 */
static struct pf_file *track(void *p, size_t len, int prot, int flags, int fd, off_t off, const struct stat *st,
			     const char *path)
{
	struct pf_file *f = calloc(1, sizeof(*f));
	uintptr_t a = (uintptr_t)p, e = round_up(a + len, sys_page);
	uint64_t avail = 0;
	int fl = fcntl(fd, F_GETFL), ret;

	if (!f)
		return NULL;
	f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (f->fd < 0) {
		free(f);
		return NULL;
	}
	if ((flags & MAP_TYPE) == MAP_PRIVATE) {
		/* Written pages go to a private swap file, made now if the
		 * mapping is writable so that a bad UMAPD_HEAP_DIR shows here,
		 * in one line, and the mapping stays the kernel's. */
		ret = pre_priv_new(fd, (uint64_t)off, e - a, &f->pv);
		if (ret == 0 && (prot & PROT_WRITE)) {
			ret = pre_priv_swap(f->pv);
			if (ret < 0)
				pre_log("mmap %s: cannot make a private swap file in %s (UMAPD_HEAP_DIR): %s; "
					"the mapping stays the kernel's", path, pre_priv_dir(f->pv), strerror(-ret));
		}
		if (ret < 0) {
			pre_priv_put(f->pv);
			close(f->fd);
			free(f);
			return NULL;
		}
		private_exit();
	}
	f->dev = st->st_dev;
	f->ino = st->st_ino;
	f->origin = a;
	f->offset = (uint64_t)off;
	f->prot = prot;
	f->flags = flags;
	f->shared = (flags & MAP_TYPE) == MAP_SHARED;
	/* A private mapping's writes go to its own swap file, whatever the
	 * descriptor allows. */
	f->region_writable = f->pv || (f->shared && fl >= 0 && (fl & O_ACCMODE) == O_RDWR);
	f->no_readahead = fl >= 0 && (fl & O_ACCMODE) != O_RDONLY && !(prot & PROT_WRITE);
	snprintf(f->path, sizeof(f->path), "%s", path);
	atomic_fetch_add(&pre_files_count, 1);
	if (insert_piece((struct pf_piece){ .start = a, .end = e, .f = f }) < 0) {
		f->refs = 1;
		file_put(f);
		return NULL;
	}
	if ((uint64_t)st->st_size > (uint64_t)off)
		avail = (uint64_t)st->st_size - (uint64_t)off;
	if (avail > e - a)
		avail = e - a;
	avail &= ~(uint64_t)(region_align - 1);
	if (pre.cfg.log && avail == 0)
		pre_log("tracking %s at %p: nothing of the file to page yet (size %lld)", path, p,
			(long long)st->st_size);
	if (avail > 0 && ((uint64_t)off & (region_align - 1)) == 0)
		promote(a, a + avail);
	freeze(f);
	return f;
}

void *pre_files_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	char path[PRE_PATH_MAX];
	int type = flags & MAP_TYPE;
	struct stat st;
	void *p;

	if (!sys_page) {
		sys_page = (size_t)sysconf(_SC_PAGESIZE);
		region_align = page_size_setting();
	}
	if ((type != MAP_SHARED && type != MAP_PRIVATE) ||
	    (flags & (MAP_ANONYMOUS | MAP_HUGETLB | MAP_GROWSDOWN)) || !(prot & PROT_READ) ||
	    (prot & ~(PROT_READ | PROT_WRITE)) || len < pre.cfg.min_size || off < 0 ||
	    (uint64_t)off % sys_page || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    !fd_path(fd, path, sizeof(path)) || !pre_config_matches(&pre.cfg, path))
		return pre_real.mmap(addr, len, prot, flags, fd, off);
	pre_files_lock();
	pre_enter();
	p = pre_real.mmap(addr, len, prot, flags, fd, off);
	pre_leave();
	if (p != MAP_FAILED)
		track(p, len, prot, flags, fd, off, &st, path);
	pre_files_unlock();
	return p;
}

/* --- cutting ranges out ---------------------------------------------------------------------------- */

/*
 * The program is taking [a, b) away (munmap, or a mapping replacing it):
 * write back what it wrote there through a shared mapping, release regions
 * left without pieces, and drop the pieces.  What it wrote through a
 * private mapping dies: dropped unwritten, its swap blocks freed (a caller
 * that moves the mapping has copied it first).  The caller then unmaps or
 * replaces the memory itself.  Returns 0 or the first write-back error.
 */
static int cut(uintptr_t a, uintptr_t b)
{
	int first_err = 0;

	for (size_t i = find_after(a); i < npieces && pieces[i].start < b;) {
		uintptr_t s = pieces[i].start > a ? pieces[i].start : a;
		uintptr_t e = pieces[i].end < b ? pieces[i].end : b;
		struct pf_region *rg = pieces[i].rg;
		struct pf_file *f = pieces[i].f;
		long k;

		if (rg) {
			int ret = 0;

			pre_enter();
			/* Private: drop unwritten, after any write-back in
			 * flight (so nothing lands in swap after the drop). */
			if (f->pv && umapd_discard((void *)s, e - s) < 0 && errno != ENOMEM)
				log_failure("discarding private pages", f, s, errno);
			if (rg->live == e - s) {
				/* The last of the region: write back and release it all. */
				ret = umapd_unmap((void *)rg->base);
				if (ret < 0 && errno == EINVAL)
					ret = 0; /* the engine has seen it all unmapped already */
			} else if (f->shared && f->region_writable) {
				ret = umapd_flush((void *)s, e - s);
			}
			pre_leave();
			if (ret < 0) {
				log_failure("write-back", f, s, errno);
				if (!first_err)
					first_err = errno;
			}
			rg->live -= e - s;
			if (rg->live == 0)
				free(rg);
			if (f->pv)
				pre_priv_drop(f->pv, file_off(f, s), e - s);
		}
		k = isolate(s, e);
		if (k < 0) {
			/* No memory to split: the whole piece goes (its region's
			 * other part keeps working, untracked). */
			k = (long)i;
		}
		remove_piece((size_t)k);
		i = find_after(e);
	}
	return first_err;
}

int pre_files_munmap(void *addr, size_t len, int *ret)
{
	uintptr_t a = (uintptr_t)addr, b;

	if (atomic_load(&npieces_any) == 0 || len == 0 || a % sys_page)
		return 1;
	b = round_up(a + len, sys_page);
	pre_files_lock();
	if (find_after(a) >= npieces || pieces[find_after(a)].start >= b) {
		pre_files_unlock();
		return 1;
	}
	if (pre.cfg.log)
		pre_log("munmap %p..%p of a paged mapping", addr, (void *)b);
	cut(a, b);
	pre_enter();
	*ret = pre_real.munmap(addr, len);
	pre_leave();
	pre_files_unlock();
	return 0;
}

/* --- walking a range piece by piece ------------------------------------------------------------------- */

/* Call fn on every part of [a, b): with the piece holding it, or NULL for
 * a part no piece holds.  fn may change the table.  Under files_lock. */
static int walk(uintptr_t a, uintptr_t b, int (*fn)(uintptr_t s, uintptr_t e, struct pf_piece *p, void *arg),
		void *arg)
{
	int first_err = 0;

	for (uintptr_t cur = a; cur < b;) {
		size_t i = find_after(cur);
		uintptr_t e;
		int ret;

		if (i >= npieces || pieces[i].start >= b) {
			e = b;
			ret = fn(cur, e, NULL, arg);
		} else if (pieces[i].start > cur) {
			e = pieces[i].start;
			ret = fn(cur, e, NULL, arg);
		} else {
			e = pieces[i].end < b ? pieces[i].end : b;
			ret = fn(cur, e, &pieces[i], arg);
		}
		if (ret && !first_err)
			first_err = ret;
		cur = e;
	}
	return first_err;
}

static bool touches_region(uintptr_t a, uintptr_t b)
{
	for (size_t i = find_after(a); i < npieces && pieces[i].start < b; i++)
		if (pieces[i].rg)
			return true;
	return false;
}

/* --- msync ----------------------------------------------------------------------------------------- */

static int msync_part(uintptr_t s, uintptr_t e, struct pf_piece *p, void *arg)
{
	(void)arg;
	if (!p || !p->rg || !p->f->shared || !p->f->region_writable)
		return 0;
	pre_enter();
	int ret = umapd_flush((void *)s, e - s) < 0 ? errno : 0;
	pre_leave();
	if (ret)
		log_failure("msync", p->f, s, ret);
	return ret;
}

int pre_files_msync(void *addr, size_t len, int flags, int *ret)
{
	uintptr_t a = (uintptr_t)addr, b;
	int err;

	if (atomic_load(&npieces_any) == 0 || a % sys_page || len == 0)
		return 1;
	b = round_up(a + len, sys_page);
	pre_files_lock();
	if (!touches_region(a, b)) {
		pre_files_unlock();
		return 1;
	}
	err = walk(a, b, msync_part, NULL);
	pre_files_unlock();
	/* The kernel's pieces, and its checks of flags and range. */
	pre_enter();
	*ret = pre_real.msync(addr, len, flags);
	pre_leave();
	if (*ret == 0 && err) {
		errno = EIO;
		*ret = -1;
	}
	return 0;
}

/* --- madvise -------------------------------------------------------------------------------------------- */

static int real_madvise(uintptr_t s, uintptr_t e, int advice)
{
	pre_enter();
	int ret = pre_real.madvise((void *)s, e - s, advice) < 0 ? errno : 0;
	pre_leave();
	return ret;
}

static int madvise_part(uintptr_t s, uintptr_t e, struct pf_piece *p, void *arg)
{
	int advice = *(int *)arg, ret = 0;
	void *a = (void *)s;
	size_t n = e - s;

	if (!p || !p->rg)
		return real_madvise(s, e, advice);
	pre_enter();
	switch (advice) {
	case MADV_DONTNEED:
		/* Shared: the data is the file's, the pages just go (after
		 * writing back).  Private: as the kernel does, the program's
		 * copies die and the range reads the file again: dropped
		 * unwritten (after any write-back in flight), then forgotten
		 * in the swap file. */
		if (p->f->shared) {
			ret = umapd_evict(a, n) < 0 ? errno : 0;
		} else {
			ret = umapd_discard(a, n) < 0 ? errno : 0;
			if (!ret && p->f->pv)
				pre_priv_drop(p->f->pv, file_off(p->f, s), n);
		}
		break;
	case MADV_COLD:
	case MADV_PAGEOUT:
		ret = umapd_evict(a, n) < 0 ? errno : 0;
		break;
	case MADV_WILLNEED:
	case MADV_POPULATE_READ:
	case MADV_POPULATE_WRITE:
		ret = umapd_prefetch(a, n) < 0 ? errno : 0;
		break;
	case MADV_NORMAL:
		ret = umapd_advise(a, n, UMAPD_ADV_NORMAL) < 0 ? errno : 0;
		break;
	case MADV_SEQUENTIAL:
		ret = umapd_advise(a, n, UMAPD_ADV_SEQUENTIAL) < 0 ? errno : 0;
		break;
	case MADV_RANDOM:
		ret = umapd_advise(a, n, UMAPD_ADV_RANDOM) < 0 ? errno : 0;
		break;
	case MADV_REMOVE:
		/* Free the file's blocks: write back nothing, read zeros after. */
		if (!p->f->shared) {
			ret = EINVAL;
		} else {
			ret = umapd_evict(a, n) < 0 ? errno : 0;
			if (!ret && fallocate(p->f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					      (off_t)file_off(p->f, s), (off_t)n) < 0)
				ret = errno;
		}
		break;
	case MADV_FREE:
		ret = EINVAL; /* the kernel refuses it on file mappings */
		break;
	case MADV_HUGEPAGE:
	case MADV_NOHUGEPAGE:
#ifdef MADV_COLLAPSE
	case MADV_COLLAPSE:
#endif
	case MADV_DOFORK:
	case MADV_DONTFORK:
	case MADV_MERGEABLE:
	case MADV_UNMERGEABLE:
	case MADV_WIPEONFORK:
	case MADV_KEEPONFORK:
		/* The region's own settings stay: no huge pages behind the
		 * engine's back, never inherited by a child. */
		break;
	default:
		ret = pre_real.madvise(a, n, advice) < 0 ? errno : 0;
	}
	pre_leave();
	return ret;
}

int pre_files_madvise(void *addr, size_t len, int advice, int *ret)
{
	uintptr_t a = (uintptr_t)addr, b;
	int err;

	if (atomic_load(&npieces_any) == 0 || a % sys_page || len == 0)
		return 1;
	b = round_up(a + len, sys_page);
	pre_files_lock();
	if (!touches_region(a, b)) {
		pre_files_unlock();
		return 1;
	}
	err = walk(a, b, madvise_part, &advice);
	pre_files_unlock();
	if (err) {
		errno = err;
		*ret = -1;
	} else {
		*ret = 0;
	}
	return 0;
}

/* --- mprotect --------------------------------------------------------------------------------------------- */

static int mprotect_part(uintptr_t s, uintptr_t e, struct pf_piece *p, void *arg)
{
	int prot = *(int *)arg, ret;

	if (p && p->rg && (prot & PROT_WRITE) && p->f->pv && p->f->region_writable &&
	    pre_priv_swap(p->f->pv) < 0) {
		/* A private region stays ours when made writable, its written
		 * pages going to the swap file; without one, the kernel's
		 * copy-on-write mapping takes over below. */
		pre_log("mprotect of %s: cannot make a private swap file in %s (UMAPD_HEAP_DIR)", p->f->path,
			pre_priv_dir(p->f->pv));
		p->f->region_writable = false;
	}
	if (p && p->rg && (prot & PROT_WRITE) && !p->f->region_writable) {
		struct pf_file *f = p->f;
		long k;
		void *m;

		if (f->shared)
			return EACCES; /* the file is not open for writing */
		/* Private, made writable: the kernel's copy-on-write mapping
		 * takes this part over (writes must never reach the file). */
		pre_enter();
		m = pre_real.mmap((void *)s, e - s, prot, (f->flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED, f->fd,
				  (off_t)file_off(f, s));
		pre_leave();
		if (m == MAP_FAILED)
			return errno;
		cut(s, e); /* the region no longer has these pages */
		k = insert_piece((struct pf_piece){ .start = s, .end = e, .f = f, .no_grow = true });
		(void)k;
		if (pre.cfg.log)
			pre_log("mprotect %p..%p of %s: private and now writable: left to the kernel",
				(void *)s, (void *)e, f->path);
		return 0;
	}
	pre_enter();
	ret = pre_real.mprotect((void *)s, e - s, prot) < 0 ? errno : 0;
	pre_leave();
	return ret;
}

int pre_files_mprotect(void *addr, size_t len, int prot, int *ret)
{
	uintptr_t a = (uintptr_t)addr, b;
	int err;

	if (atomic_load(&npieces_any) == 0 || a % sys_page || len == 0)
		return 1;
	b = round_up(a + len, sys_page);
	pre_files_lock();
	if (!touches_region(a, b)) {
		pre_files_unlock();
		return 1;
	}
	err = walk(a, b, mprotect_part, &prot);
	pre_files_unlock();
	if (err) {
		errno = err;
		*ret = -1;
	} else {
		*ret = 0;
	}
	return 0;
}

/* --- mremap ------------------------------------------------------------------------------------------------- */

static int flush_part(uintptr_t s, uintptr_t e, struct pf_piece *p, void *arg)
{
	(void)arg;
	if (!p || !p->rg)
		return 0;
	pre_enter();
	int ret = umapd_flush((void *)s, e - s) < 0 ? errno : 0;
	pre_leave();
	return ret;
}

/*
 * mremap moving [a, b) of private mapping f to the kernel's new mapping
 * [p, p + new_len): the kernel moves the program's private copies along,
 * so must we.  Pages of the old regions are flushed into the old swap
 * file, the new mapping is tracked with a swap file of its own, and the
 * written pages are copied there; kernel pieces (the last partial page of
 * the file) are moved by the kernel itself, copies and all.  On an error
 * the new mapping goes and the old one is untouched (0 or an errno).
 */
static int move_private(struct pf_file *f, uintptr_t a, uintptr_t b, void *p, size_t new_len)
{
	uintptr_t np = (uintptr_t)p, nend = round_up(np + new_len, sys_page);
	size_t keep = b - a < nend - np ? b - a : nend - np;
	struct pf_file *nf = NULL;
	struct stat st;
	int err;

	err = walk(a, a + keep, flush_part, NULL);
	if (!err && fstat(f->fd, &st) < 0)
		err = errno;
	if (!err) {
		nf = track(p, new_len, f->prot, f->flags, f->fd, (off_t)file_off(f, a), &st, f->path);
		if (!nf)
			err = ENOMEM;
	}
	if (!err) {
		pre_enter();
		err = -pre_priv_copy(f->pv, nf->pv, file_off(f, a), keep);
		if (!err && (f->prot & PROT_WRITE))
			err = -pre_priv_swap(nf->pv);
		pre_leave();
	}
	if (err) {
		log_failure("moving private data (mremap)", f, a, err);
		if (nf)
			cut(np, nend);
		pre_enter();
		pre_real.munmap(p, new_len);
		pre_leave();
		return err;
	}
	for (size_t i = find_after(a); i < npieces && pieces[i].start < a + keep; i++) {
		struct pf_piece *q = &pieces[i];
		uintptr_t s = q->start > a ? q->start : a, e = q->end < a + keep ? q->end : a + keep;
		uintptr_t t = np + (s - a);
		size_t k = find_after(t);

		if (q->f != f || q->rg || k >= npieces || pieces[k].f != nf || pieces[k].rg ||
		    pieces[k].start > t || pieces[k].end < t + (e - s))
			continue;
		pre_enter();
		if (pre_real.mremap((void *)s, e - s, e - s, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)t) == MAP_FAILED)
			pre_log("mremap of %s: moving %p..%p: %s; its private copies are lost", f->path, (void *)s,
				(void *)e, strerror(errno));
		pre_leave();
	}
	return 0;
}

int pre_files_mremap(void *old, size_t old_len, size_t new_len, int flags, void **ret)
{
	uintptr_t a = (uintptr_t)old, b, nb;
	struct pf_file *f;
	struct stat st;
	void *p;

	if (atomic_load(&npieces_any) == 0 || a % sys_page || old_len == 0)
		return 1;
	b = round_up(a + old_len, sys_page);
	nb = round_up(a + new_len, sys_page);
	pre_files_lock();
	size_t i = find_after(a);

	if (i >= npieces || pieces[i].start >= b) {
		pre_files_unlock();
		return 1;
	}
	/* One tracked mapping, wholly: anything else is several mappings,
	 * which the kernel refuses too. */
	f = pieces[i].f;
	for (uintptr_t cur = a; cur < b; i++) {
		if (i >= npieces || pieces[i].start != cur || pieces[i].f != f) {
			pre_files_unlock();
			errno = EFAULT;
			*ret = MAP_FAILED;
			return 0;
		}
		cur = pieces[i].end;
	}
	if ((flags & ~MREMAP_MAYMOVE) || new_len == 0) {
		pre_log("mremap of a paged mapping with flags %#x: not supported", flags);
		pre_files_unlock();
		errno = EINVAL;
		*ret = MAP_FAILED;
		return 0;
	}
	if (pre.cfg.log)
		pre_log("mremap %p from %zu to %zu bytes (%s)", old, old_len, new_len, f->path);
	if (nb <= b) {
		/* Shrink (or no change in pages): the tail goes. */
		if (nb < b) {
			cut(nb, b);
			pre_enter();
			pre_real.munmap((void *)nb, b - nb);
			pre_leave();
		}
		pre_files_unlock();
		*ret = old;
		return 0;
	}
	/* Grow in place: the kernel maps the file after the old end if the
	 * address space there is free; grow() pages it when the file reaches. */
	pre_enter();
	p = pre_real.mmap((void *)b, nb - b, f->prot, (f->flags & ~MAP_FIXED) | MAP_FIXED_NOREPLACE, f->fd,
			  (off_t)file_off(f, b));
	if (p != MAP_FAILED && p != (void *)b) {
		pre_real.munmap(p, nb - b); /* a kernel without MAP_FIXED_NOREPLACE */
		p = MAP_FAILED;
	}
	pre_leave();
	if (p != MAP_FAILED) {
		if (insert_piece((struct pf_piece){ .start = b, .end = nb, .f = f }) < 0) {
			pre_enter();
			pre_real.munmap(p, nb - b);
			pre_leave();
			pre_files_unlock();
			errno = ENOMEM;
			*ret = MAP_FAILED;
			return 0;
		}
		grow(f);
		pre_files_unlock();
		*ret = old;
		return 0;
	}
	if (!(flags & MREMAP_MAYMOVE)) {
		pre_files_unlock();
		errno = ENOMEM;
		*ret = MAP_FAILED;
		return 0;
	}
	/* Move: a new mapping of the same file range elsewhere, then the old
	 * one goes, written back first.  Nobody knows the new address before
	 * we return, so nobody reads it before the write-back is done. */
	pre_enter();
	p = pre_real.mmap(NULL, new_len, f->prot, f->flags & ~(MAP_FIXED | MAP_FIXED_NOREPLACE), f->fd,
			  (off_t)file_off(f, a));
	pre_leave();
	if (p == MAP_FAILED) {
		pre_files_unlock();
		*ret = MAP_FAILED;
		return 0;
	}
	f->refs++; /* keep it while the old pieces go */
	if (f->pv) {
		int err = move_private(f, a, b, p, new_len);

		if (err) {
			file_put(f);
			pre_files_unlock();
			errno = err;
			*ret = MAP_FAILED;
			return 0;
		}
	}
	cut(a, b);
	pre_enter();
	pre_real.munmap(old, b - a);
	pre_leave();
	if (!f->pv && fstat(f->fd, &st) == 0)
		track(p, new_len, f->prot, f->flags, f->fd, (off_t)file_off(f, a), &st, f->path);
	file_put(f);
	pre_files_unlock();
	*ret = p;
	return 0;
}

/* --- coherence with read() and write() on the file -------------------------------------------------------- */

/* The address range of piece p holding file range [off, off + len), if any. */
static bool piece_span(const struct pf_piece *p, uint64_t off, uint64_t len, uintptr_t *s, uintptr_t *e)
{
	uint64_t ps = file_off(p->f, p->start), pe = file_off(p->f, p->end);
	uint64_t end = len > UINT64_MAX - off ? UINT64_MAX : off + len;

	if (end <= ps || off >= pe)
		return false;
	*s = p->start + (off > ps ? off - ps : 0);
	*e = p->start + ((end < pe ? end : pe) - ps);
	*s &= ~(uintptr_t)(sys_page - 1);
	*e = round_up(*e, sys_page);
	return true;
}

void pre_files_before_io(struct pre_io *io)
{
	for (size_t i = 0; i < npieces; i++) {
		struct pf_piece *p = &pieces[i];
		uintptr_t s, e;

		if (p->f->dev != io->dev || p->f->ino != io->ino)
			continue;
		io->found = true;
		/* Only a mapping the program can write may hold newer data. */
		if (!p->rg || !p->f->shared || !(p->f->prot & PROT_WRITE) || !piece_span(p, io->off, io->len, &s, &e))
			continue;
		pre_enter();
		if (umapd_flush((void *)s, e - s) < 0)
			log_failure("write-back before file I/O", p->f, s, errno);
		pre_leave();
	}
}

/*
 * The file was truncated to size under private piece p, [s, e) being the
 * part of p from the page holding the new end on.  The kernel unmaps a
 * private mapping's copies of whole pages past the end too (so they raise
 * SIGBUS, and read the file again if it grows back); the page holding the
 * new end keeps them.  Same here: whole pages past the end are dropped
 * unwritten and forgotten in the swap file; the next fault reads the file
 * and the engine finds it short.
 */
static void truncate_private(struct pf_piece *p, uint64_t size, uintptr_t s, uintptr_t e)
{
	uint64_t ps = file_off(p->f, p->start), from = round_up(size, sys_page);
	uintptr_t cut_at = from > ps ? p->start + (from - ps) : p->start;

	if (cut_at > s)
		s = cut_at;
	if (s >= e)
		return;
	pre_enter();
	if (umapd_discard((void *)s, e - s) < 0)
		log_failure("dropping private pages past the end of the file", p->f, s, errno);
	pre_leave();
	pre_priv_drop(p->f->pv, file_off(p->f, s), e - s);
}

void pre_files_after_write(struct pre_io *io)
{
	struct pf_file *grown[8];
	size_t ngrown = 0;

	for (size_t i = 0; i < npieces; i++) {
		struct pf_piece *p = &pieces[i];
		uintptr_t s, e;
		bool seen = false;

		if (p->f->dev != io->dev || p->f->ino != io->ino)
			continue;
		for (size_t k = 0; k < ngrown; k++)
			seen |= grown[k] == p->f;
		if (!seen && ngrown < sizeof(grown) / sizeof(grown[0]))
			grown[ngrown++] = p->f;
		if (!p->rg || !piece_span(p, io->off, io->len, &s, &e))
			continue;
		if (p->f->pv && io->truncate) {
			truncate_private(p, io->off, s, e);
			continue;
		}
		/* The file changed under these pages: drop them so the next
		 * access reads it.  They are clean (before_io wrote them). */
		pre_enter();
		if (umapd_evict((void *)s, e - s) < 0)
			log_failure("dropping pages after a write to the file", p->f, s, errno);
		pre_leave();
	}
	for (size_t k = 0; k < ngrown; k++)
		grow(grown[k]);
}
