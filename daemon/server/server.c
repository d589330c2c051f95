/*
 * daemon/server/server.c - the daemon's event loop, sessions, shared files,
 * fault service, write-back and eviction.
 *
 * Model (docs/daemon-protocol.md):
 *  - A srv_file is one memfd per (device, inode, page size) of a backing
 *    file; its page p holds file bytes [p * psize, (p + 1) * psize).  The
 *    memfd offset of a byte is its file offset.
 *  - A srv_region is one client mapping of part of a srv_file: the client
 *    mapped the memfd MAP_SHARED at addr and registered that range with
 *    its own userfaultfd (MISSING | WP | MINOR) before sending MAP.
 *  - Page states live in the file (PG_* bits): absent, present clean,
 *    present dirty.  The daemon is the only writer of page contents it
 *    does not get from a client, and a state changes only on this thread.
 *  - Every present page is charged to one client (its owner slot) and sits
 *    in that client's CLOCK queue; eviction takes from the client most over
 *    its fair share, so one client cannot push the others out.
 *
 * The daemon never maps a memfd: it reads pages with pread (which does not
 * allocate at holes) and writes fills through the faulting client's
 * userfaultfd (UFFDIO_COPY), so it never touches registered memory.
 */
#include "srv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dconf.h"
#include "proto/proto.h"
#include "uffd/uffd.h"
#include "util/log.h"

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

#define PG_PRESENT 1u
#define PG_DIRTY 2u
#define PG_REF 4u /* touched again since the CLOCK hand last passed */
#define PG_VICTIM 8u /* chosen by the eviction in progress */

#define SRV_MAX_REGIONS_PER_CLIENT 4096
#define SRV_ORPHAN 0 /* client slot of pages no client maps any more */
#define SRV_EAGAIN_TRIES 64

enum hkind { H_LISTEN, H_SIGNAL, H_CLIENT, H_UFFD };
struct handle {
	enum hkind kind;
};

struct qent {
	uint32_t fslot, fgen;
	uint64_t pg;
};

struct srv_file;
struct srv_client;

struct srv_region {
	struct handle h; /* H_UFFD; epoll data points here */
	uint64_t id;
	struct srv_client *c;
	struct srv_file *f;
	uintptr_t addr;
	uint64_t len, off; /* file offset of addr */
	bool writable, dead;
	uint64_t next_pg; /* read-ahead: the page a sequential stream touches next */
	unsigned win;     /* and its current window, in pages */
	struct uffd uffd;
	struct srv_region *next;  /* the client's regions */
	struct srv_region *fnext; /* the file's regions */
	struct srv_region *znext; /* freed after the current epoll batch */
};

struct srv_file {
	uint32_t slot, gen;
	dev_t dev;
	ino_t ino;
	uint64_t psize;
	unsigned pshift;
	int memfd, fd;
	bool fd_writable;
	uint64_t fsize;  /* backing file size as last seen */
	uint64_t npages; /* memfd size / psize */
	uint8_t *st;     /* PG_* per page (an anonymous mapping: see arr_grow) */
	uint32_t *owner; /* client slot charged for each present page */
	size_t st_bytes, ow_bytes; /* their mapped sizes */
	uint64_t resident, dirty; /* pages */
	struct srv_region *regions;
	int wb_err; /* first write-back error not yet reported to a flush */
};

struct srv_client {
	struct handle h; /* H_CLIENT */
	uint32_t slot, id;
	int sock;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	bool dead;
	struct proto_session sess;
	struct proto_rx rx;
	uint64_t rx_since; /* when the unfinished frame in rx began (0: none) */
	struct srv_region *regions;
	unsigned nregions;
	struct qent *q; /* CLOCK queue, a ring */
	size_t qcap, qhead, qn;
	uint64_t resident; /* bytes charged */
	struct proto_stats st;
	struct srv_client *znext;
};

static struct {
	struct srv_config cfg;
	int ep, lfd, sfd;
	struct handle hl, hs;
	struct srv_client **cl; /* by slot; [SRV_ORPHAN] is the orphan pseudo-client */
	uint32_t ncl;
	uint32_t next_client_id;
	unsigned nclients;
	struct srv_file **files; /* by slot */
	uint32_t nfiles;
	uint64_t next_region_id;
	uint64_t resident, dirty; /* bytes */
	unsigned char *buf; /* fill / write-back bounce buffer */
	size_t buflen;
	struct proto_stats total;
	struct srv_client *zc;
	struct srv_region *zr;
	uint64_t start_ns;
	bool stop;
	bool no_cfr; /* fill through a buffer and UFFDIO_COPY (the default; see srv_run) */
} S;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int notify(const char *what)
{
	return S.cfg.notify ? S.cfg.notify("%s", what) : 0;
}

static unsigned char *bounce(size_t len)
{
	if (len > S.buflen) {
		unsigned char *b = realloc(S.buf, len);

		if (!b)
			return NULL;
		S.buf = b;
		S.buflen = len;
	}
	return S.buf;
}

/* ---------------------------------------------------------------- queues */

static struct srv_file *q_file(const struct qent *e);

/* Whether a queue entry still names a present page charged to c. */
static bool q_live(const struct srv_client *c, const struct qent *e)
{
	struct srv_file *f = q_file(e);

	return f && e->pg < f->npages && (f->st[e->pg] & PG_PRESENT) && f->owner[e->pg] == c->slot;
}

/* Drop the entries of pages evicted, unmapped or charged to someone else
 * since they were queued (unmapping does not walk the queues).  Returns
 * how many were dropped. */
static size_t q_compact(struct srv_client *c)
{
	size_t kept = 0, n = c->qn;

	for (size_t i = 0; i < n; i++) {
		struct qent e = c->q[(c->qhead + i) % c->qcap];

		if (q_live(c, &e))
			c->q[(c->qhead + kept++) % c->qcap] = e;
	}
	c->qn = kept;
	return n - kept;
}

static bool q_push(struct srv_client *c, struct qent e)
{
	if (c->qn == c->qcap) {
		/* Full: first throw out what is stale, and grow only if more than
		 * half is live (so compactions stay rare: each frees at least
		 * half the ring). */
		if (c->qcap)
			q_compact(c);
		if (!c->qcap || c->qn > c->qcap / 2) {
			size_t ncap = c->qcap ? c->qcap * 2 : 256;
			struct qent *n = malloc(ncap * sizeof(*n));

			if (!n)
				return false;
			for (size_t i = 0; i < c->qn; i++)
				n[i] = c->q[(c->qhead + i) % c->qcap];
			free(c->q);
			c->q = n;
			c->qcap = ncap;
			c->qhead = 0;
		}
	}
	c->q[(c->qhead + c->qn) % c->qcap] = e;
	c->qn++;
	return true;
}

static bool q_pop(struct srv_client *c, struct qent *e)
{
	if (!c->qn)
		return false;
	*e = c->q[c->qhead];
	c->qhead = (c->qhead + 1) % c->qcap;
	c->qn--;
	return true;
}

static struct srv_file *q_file(const struct qent *e)
{
	struct srv_file *f = e->fslot < S.nfiles ? S.files[e->fslot] : NULL;

	return f && f->gen == e->fgen ? f : NULL;
}

/* Charge a present page to client c (its resident bytes, its queue). */
static void charge(struct srv_file *f, uint64_t pg, struct srv_client *c)
{
	f->owner[pg] = c->slot;
	c->resident += f->psize;
	if (!q_push(c, (struct qent){ f->slot, f->gen, pg }))
		ulog_warn("no memory for an eviction queue entry: page %llu of file %llu stays resident",
			  (unsigned long long)pg, (unsigned long long)f->ino);
}

static void uncharge(struct srv_file *f, uint64_t pg)
{
	struct srv_client *o = f->owner[pg] < S.ncl ? S.cl[f->owner[pg]] : NULL;

	if (o)
		o->resident -= f->psize;
}

/* ---------------------------------------------------------------- files */

static void region_page(const struct srv_region *r, uint64_t pg, uintptr_t *addr)
{
	*addr = r->addr + (pg * r->f->psize - r->off);
}

static bool region_covers(const struct srv_region *r, uint64_t pg)
{
	uint64_t o = pg * r->f->psize;

	return !r->dead && o >= r->off && o < r->off + r->len;
}

/* Write-protect (or unprotect) a page in every client that maps it.  A
 * client gone (-ESRCH), a range not registered yet or any more (-ENOENT,
 * -EINVAL) needs nothing; -EAGAIN (its mm is changing) is retried. */
static int protect_run(struct srv_file *f, uint64_t pg, uint64_t n, bool wp)
{
	for (struct srv_region *r = f->regions; r; r = r->fnext) {
		uint64_t rf = r->off >> f->pshift, re = (r->off + r->len) >> f->pshift;
		uint64_t s = pg > rf ? pg : rf, e = pg + n < re ? pg + n : re;
		uintptr_t a;
		int ret, tries = 0;

		if (r->dead || s >= e)
			continue;
		region_page(r, s, &a);
		do
			ret = uffd_writeprotect(&r->uffd, a, (e - s) << f->pshift, wp, false);
		while (ret == -EAGAIN && ++tries < SRV_EAGAIN_TRIES);
		if (ret == -EAGAIN)
			return ret;
		if (ret < 0 && !uffd_gone(ret))
			ulog_warn("client %u region %llu: UFFDIO_WRITEPROTECT at %#lx: %s", r->c->id,
				  (unsigned long long)r->id, (unsigned long)a, ulog_errname(-ret));
	}
	return 0;
}

static void refresh_fsize(struct srv_file *f)
{
	struct stat st;

	if (fstat(f->fd, &st) == 0)
		f->fsize = (uint64_t)st.st_size;
}

/* Pages written back with one pread and one pwrite: up to 1 MiB (at least
 * one page, whatever its size). */
static uint64_t wb_run_max(const struct srv_file *f)
{
	uint64_t n = ((uint64_t)1 << 20) >> f->pshift;

	return n ? n : 1;
}

/*
 * Write back the n dirty pages [pg, pg + n) of f (each present and dirty):
 * write-protect them in every client that maps them first (one ioctl per
 * region), so that no write slips in between the read and the clean mark;
 * pread them from the memfd, pwrite them to the file (never past its end:
 * the file does not grow), mark them clean.  A failure leaves them dirty
 * (and protected: a writer faults and finds them dirty) and is kept for
 * the next flush of the file.
 */
static int wb_run(struct srv_file *f, uint64_t pg, uint64_t n, bool evicting, struct srv_client *who)
{
	uint64_t off = pg << f->pshift, len = n << f->pshift;
	unsigned char *b = bounce(len);
	int ret;

	if (!b)
		return -ENOMEM;
	ret = protect_run(f, pg, n, true);
	if (ret < 0)
		return ret;
	if (off + len > f->fsize)
		refresh_fsize(f);
	if (off >= f->fsize)
		len = 0;
	else if (f->fsize - off < len)
		len = f->fsize - off;
	for (uint64_t done = 0; done < len;) {
		ssize_t k = pread(f->memfd, b + done, len - done, (off_t)(off + done));

		if (k <= 0) {
			ret = k < 0 ? -errno : -EIO;
			goto fail;
		}
		done += (uint64_t)k;
	}
	for (uint64_t done = 0; done < len;) {
		ssize_t k = f->fd_writable ? pwrite(f->fd, b + done, len - done, (off_t)(off + done)) : (errno = EBADF, -1);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			ret = k < 0 ? -errno : -EIO;
			goto fail;
		}
		done += (uint64_t)k;
	}
	for (uint64_t i = 0; i < n; i++)
		f->st[pg + i] &= (uint8_t)~PG_DIRTY;
	f->dirty -= n;
	S.dirty -= n << f->pshift;
	S.total.bytes_written += len;
	if (who)
		who->st.bytes_written += len;
	if (evicting)
		S.total.dirty_evictions += n;
	else
		S.total.flushed_pages += n;
	return 0;

fail:
	S.total.io_errors++;
	if (!f->wb_err)
		f->wb_err = ret;
	ulog_error("file %llu offset %llu, %llu pages: write-back failed: %s; the pages stay dirty",
		   (unsigned long long)f->ino, (unsigned long long)off, (unsigned long long)n, ulog_errname(-ret));
	return ret;
}

/* Punch the n present, clean pages [pg, pg + n) out of the memfd (which
 * unmaps them from every client) and forget them. */
static int drop_run(struct srv_file *f, uint64_t pg, uint64_t n, struct srv_client *who)
{
	if (fallocate(f->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(pg << f->pshift),
		      (off_t)(n << f->pshift)) < 0) {
		int e = errno;

		ulog_error("file %llu pages %llu..%llu: punching them out of the memfd failed: %s",
			   (unsigned long long)f->ino, (unsigned long long)pg, (unsigned long long)(pg + n - 1),
			   ulog_errname(e));
		return -e;
	}
	for (uint64_t i = 0; i < n; i++) {
		uncharge(f, pg + i);
		f->st[pg + i] = 0;
	}
	f->resident -= n;
	S.resident -= n << f->pshift;
	S.total.evictions += n;
	if (who)
		who->st.evictions += n;
	return 0;
}

/* Write page pg back if it is dirty, and drop it if evict. */
static int wb_page(struct srv_file *f, uint64_t pg, bool evict, struct srv_client *who)
{
	int ret;

	if (!(f->st[pg] & PG_PRESENT))
		return 0;
	if ((f->st[pg] & PG_DIRTY) && (ret = wb_run(f, pg, 1, evict, who)) < 0)
		return ret;
	return evict ? drop_run(f, pg, 1, who) : 0;
}

static void file_free(struct srv_file *f)
{
	S.files[f->slot] = NULL;
	if (f->memfd >= 0)
		close(f->memfd);
	if (f->fd >= 0)
		close(f->fd);
	if (f->st)
		munmap(f->st, f->st_bytes);
	if (f->owner)
		munmap(f->owner, f->ow_bytes);
	free(f);
}

static int write_back_range(struct srv_file *f, uint64_t first, uint64_t end, bool evict, struct srv_client *who);

/* A file nobody maps any more: write back and drop what it holds, and free
 * it once nothing is left (pages whose write fails keep it alive). */
static void file_drain(struct srv_file *f)
{
	if (f->regions)
		return;
	if (f->resident)
		(void)write_back_range(f, 0, f->npages, true, NULL);
	if (f->resident == 0)
		file_free(f);
}

static struct srv_file *file_get(const struct stat *st, uint64_t psize)
{
	for (uint32_t i = 0; i < S.nfiles; i++) {
		struct srv_file *f = S.files[i];

		if (f && f->dev == st->st_dev && f->ino == st->st_ino && f->psize == psize)
			return f;
	}
	return NULL;
}

static int file_new(const struct stat *st, uint64_t psize, int fd, bool writable, struct srv_file **out)
{
	static uint32_t gen;
	struct srv_file *f = calloc(1, sizeof(*f));
	uint32_t slot;
	char name[64];

	if (!f)
		return -ENOMEM;
	for (slot = 0; slot < S.nfiles && S.files[slot]; slot++)
		;
	if (slot == S.nfiles) {
		struct srv_file **n = realloc(S.files, (S.nfiles + 16) * sizeof(*n));

		if (!n) {
			free(f);
			return -ENOMEM;
		}
		memset(n + S.nfiles, 0, 16 * sizeof(*n));
		S.files = n;
		S.nfiles += 16;
	}
	snprintf(name, sizeof(name), "umapd:%llx:%llu", (unsigned long long)st->st_dev,
		 (unsigned long long)st->st_ino);
	f->memfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (f->memfd < 0) {
		int e = errno;

		free(f);
		return -e;
	}
	/* Clients hold writable descriptors of the memfd; none may shrink it
	 * under another client's mapping (which would SIGBUS that client). */
	if (fcntl(f->memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
		ulog_warn("memfd of file %llu: F_SEAL_SHRINK: %s", (unsigned long long)st->st_ino,
			  ulog_errname(errno));
	f->slot = slot;
	f->gen = ++gen;
	f->dev = st->st_dev;
	f->ino = st->st_ino;
	f->psize = psize;
	f->pshift = (unsigned)__builtin_ctzll(psize);
	f->fd = fd;
	f->fd_writable = writable;
	f->fsize = (uint64_t)st->st_size;
	S.files[slot] = f;
	*out = f;
	return 0;
}

/*
 * Page-state arrays are anonymous mappings without reserve: entries never
 * touched cost no memory, so a client mapping a huge sparse file makes the
 * daemon pay only for the pages it actually serves.  Grown with mremap
 * (the new part reads as zeros).
 */
static size_t arr_bytes(uint64_t n, size_t each)
{
	return (size_t)((n * each + 4095) & ~(uint64_t)4095);
}

static void *arr_grow(void *old, size_t oldb, size_t newb)
{
	void *p;

	if (newb <= oldb)
		return old;
	p = old ? mremap(old, oldb, newb, MREMAP_MAYMOVE)
		: mmap(NULL, newb, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static int file_grow(struct srv_file *f, uint64_t end)
{
	uint64_t np = (end + f->psize - 1) >> f->pshift;
	size_t stb = arr_bytes(np, 1), owb = arr_bytes(np, sizeof(*f->owner));
	void *p;

	if (np <= f->npages)
		return 0;
	if (np > ((uint64_t)1 << 40))
		return -EOVERFLOW;
	p = arr_grow(f->st, f->st_bytes, stb);
	if (!p)
		return -ENOMEM;
	f->st = p;
	f->st_bytes = stb > f->st_bytes ? stb : f->st_bytes;
	p = arr_grow(f->owner, f->ow_bytes, owb);
	if (!p)
		return -ENOMEM; /* st stays larger than needed: harmless */
	f->owner = p;
	f->ow_bytes = owb > f->ow_bytes ? owb : f->ow_bytes;
	if (ftruncate(f->memfd, (off_t)(np << f->pshift)) < 0)
		return -errno;
	f->npages = np;
	return 0;
}

/* ---------------------------------------------------------------- budget */

static unsigned active_clients(void)
{
	unsigned n = 0;

	for (uint32_t i = 1; i < S.ncl; i++)
		if (S.cl[i] && S.cl[i]->nregions)
			n++;
	return n ? n : 1;
}

static uint64_t client_limit(void)
{
	uint64_t l = S.cfg.budget;

	if (S.cfg.client_limit && S.cfg.client_limit < l)
		l = S.cfg.client_limit;
	return l;
}

static uint64_t uid_resident(uid_t uid)
{
	uint64_t sum = 0;

	for (uint32_t i = 1; i < S.ncl; i++)
		if (S.cl[i] && S.cl[i]->uid == uid)
			sum += S.cl[i]->resident;
	return sum;
}

struct victim_pg {
	struct srv_file *f;
	uint64_t pg;
};

static int victim_cmp(const void *a, const void *b)
{
	const struct victim_pg *x = a, *y = b;

	if (x->f != y->f)
		return x->f->slot < y->f->slot ? -1 : 1;
	return x->pg < y->pg ? -1 : x->pg > y->pg;
}

/*
 * Evict at least want bytes charged to c (fewer if it has no more), CLOCK
 * order: a page touched since the hand last passed gets a second chance.
 * Dirty victims are written back first (a failure keeps the page).  The
 * victims are then punched out of their memfds in runs of neighbours: one
 * fallocate, and one unmapping in every client, per run rather than per
 * page.  Returns the bytes freed.
 */
static uint64_t evict_from(struct srv_client *c, struct srv_client *who, uint64_t want)
{
	size_t tries = c->qn * 2 + 1; /* each entry at most twice: once for its second chance */
	struct victim_pg *v = NULL;
	size_t nv = 0, cap = 0;
	uint64_t picked = 0, freed = 0;
	struct qent e;

	while (picked < want && tries-- && q_pop(c, &e)) {
		struct srv_file *f = q_file(&e);

		if (!f || e.pg >= f->npages || !(f->st[e.pg] & PG_PRESENT) || f->owner[e.pg] != c->slot ||
		    (f->st[e.pg] & PG_VICTIM))
			continue; /* stale: evicted or charged to someone else since */
		if (f->st[e.pg] & PG_REF) {
			f->st[e.pg] &= (uint8_t)~PG_REF;
			q_push(c, e);
			continue;
		}
		if (nv == cap) {
			struct victim_pg *n = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof(*v));

			if (!n) {
				q_push(c, e);
				break;
			}
			v = n;
		}
		v[nv++] = (struct victim_pg){ f, e.pg };
		f->st[e.pg] |= PG_VICTIM;
		picked += f->psize;
	}
	if (nv > 1)
		qsort(v, nv, sizeof(*v), victim_cmp);
	for (size_t i = 0; i < nv;) {
		struct srv_file *f = v[i].f;
		size_t j = i + 1, k;

		while (j < nv && v[j].f == f && v[j].pg == v[j - 1].pg + 1)
			j++;
		/* Dirty victims are written back in runs; a run whose write
		 * fails is kept (dirty, back in the queue). */
		for (k = i; k < j;) {
			size_t m = k;

			while (m < j && m - k < wb_run_max(f) && (f->st[v[m].pg] & PG_DIRTY))
				m++;
			if (m == k) {
				k++;
				continue;
			}
			if (wb_run(f, v[k].pg, m - k, true, who) < 0)
				for (size_t x = k; x < m; x++) {
					f->st[v[x].pg] &= (uint8_t)~PG_VICTIM;
					q_push(c, (struct qent){ f->slot, f->gen, v[x].pg });
				}
			k = m;
		}
		/* Written back and write-protected everywhere; nothing can have
		 * dirtied them since (this thread serves every write fault).
		 * Punch the victims still standing, in runs. */
		for (k = i; k < j;) {
			size_t m = k;

			while (m < j && (f->st[v[m].pg] & PG_VICTIM) && (m == k || v[m].pg == v[m - 1].pg + 1))
				m++;
			if (m == k) {
				k++;
				continue;
			}
			if (drop_run(f, v[k].pg, m - k, who) == 0) {
				freed += (m - k) << f->pshift;
			} else {
				for (size_t x = k; x < m; x++) {
					f->st[v[x].pg] &= (uint8_t)~PG_VICTIM;
					q_push(c, (struct qent){ f->slot, f->gen, v[x].pg });
				}
			}
			k = m;
		}
		i = j;
	}
	/* Files nobody maps whose last page just went. */
	for (size_t i = 0; i < nv; i++)
		if ((i + 1 == nv || v[i + 1].f != v[i].f) && S.files[v[i].f->slot] == v[i].f && !v[i].f->regions &&
		    v[i].f->resident == 0)
			file_free(v[i].f);
	free(v);
	return freed;
}

/* Choose whom to take a page from when the node budget is full: orphaned
 * pages first, then the client furthest over its fair share. */
static struct srv_client *victim(struct srv_client *c, uint64_t need)
{
	uint64_t share = S.cfg.budget / active_clients();
	struct srv_client *best = NULL;
	int64_t over = INT64_MIN;

	if (S.cl[SRV_ORPHAN]->resident)
		return S.cl[SRV_ORPHAN];
	if (c && c->resident && c->resident + need > share)
		return c; /* over its share with this fill: its own pages go first */
	for (uint32_t i = 1; i < S.ncl; i++) {
		struct srv_client *o = S.cl[i];

		if (o && o->resident && (int64_t)(o->resident - share) > over) {
			over = (int64_t)(o->resident - share);
			best = o;
		}
	}
	return best;
}

/* Make room for need bytes charged to c (NULL: just get under the budget).
 * A client evicting its own pages frees a little more than it needs (a
 * batch: fewer, larger punches); pages taken from another client are only
 * what is needed, so nobody goes below its share by more than that. */
static void make_room(struct srv_client *c, uint64_t need)
{
	uint64_t slack = S.cfg.budget / 64 < (1u << 20) ? S.cfg.budget / 64 : (1u << 20);

	if (c) {
		uint64_t lim = client_limit();

		if (c->resident && c->resident + need > lim)
			evict_from(c, c, c->resident + need - lim + (slack < lim / 4 ? slack : 0));
		if (S.cfg.uid_limit) {
			while (uid_resident(c->uid) + need > S.cfg.uid_limit) {
				struct srv_client *big = NULL;

				for (uint32_t i = 1; i < S.ncl; i++)
					if (S.cl[i] && S.cl[i]->uid == c->uid && S.cl[i]->resident &&
					    (!big || S.cl[i]->resident > big->resident))
						big = S.cl[i];
				if (!big || !evict_from(big, c, uid_resident(c->uid) + need - S.cfg.uid_limit))
					break;
			}
		}
	}
	while (S.resident + need > S.cfg.budget) {
		struct srv_client *v = victim(c, need);
		uint64_t over = S.resident + need - S.cfg.budget;
		bool done = v && evict_from(v, c, over + (v == c || v == S.cl[SRV_ORPHAN] ? slack : 0)) > 0;

		for (uint32_t i = 0; !done && i < S.ncl; i++)
			if (S.cl[i] && S.cl[i] != v && S.cl[i]->resident)
				done = evict_from(S.cl[i], c, over) > 0;
		if (!done)
			break; /* nothing evictable: go over rather than hang a fault */
	}
}

/* ---------------------------------------------------------------- faults */

/* Read page pg of f from its backing file into the bounce buffer (zeros
 * past the end of the file). */
/* Read n pages from pg of f from its backing file into the bounce buffer
 * (zeros past the end of the file). */
static int read_pages(struct srv_file *f, uint64_t pg, uint64_t n, unsigned char **out)
{
	uint64_t len = n << f->pshift, off = pg << f->pshift, done = 0;
	unsigned char *b = bounce(len);

	if (!b)
		return -ENOMEM;
	while (done < len) {
		ssize_t k = pread(f->fd, b + done, len - done, (off_t)(off + done));

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		done += (uint64_t)k;
	}
	memset(b + done, 0, len - done);
	S.total.bytes_read += done;
	*out = b;
	return 0;
}

static int read_page(struct srv_file *f, uint64_t pg, unsigned char **out)
{
	return read_pages(f, pg, 1, out);
}

/*
 * Read-ahead window for a fault at pg: doubles while the region's faults
 * follow each other (a scan), back to one page otherwise; at most
 * read_ahead pages and an eighth of the budget.
 */
static uint64_t window(struct srv_region *r, uint64_t pg)
{
	uint64_t max = S.cfg.read_ahead, cap = (S.cfg.budget >> r->f->pshift) / 8;

	if (pg == r->next_pg && max > 1)
		r->win = r->win ? (r->win * 2 > max ? (unsigned)max : r->win * 2) : 4;
	else
		r->win = 1;
	if (cap < 1)
		cap = 1;
	return r->win < cap ? r->win : cap;
}

/* Map n present pages at a in r's client; *mapped (if not NULL) gets the
 * bytes mapped before an error. */
static int do_continue_n(struct srv_region *r, uintptr_t a, uint64_t n, bool wp, uint64_t *mapped)
{
	struct uffdio_continue c = { .range = { a, n << r->f->pshift }, .mode = wp ? UFFDIO_CONTINUE_MODE_WP : 0 };
	int ret = ioctl(r->uffd.fd, UFFDIO_CONTINUE, &c) == 0 ? 0 : -errno;

	if (mapped)
		*mapped = ret == 0 ? c.range.len : c.mapped > 0 ? (uint64_t)c.mapped : 0;
	return ret;
}

static int do_continue(struct srv_region *r, uintptr_t a, bool wp)
{
	return do_continue_n(r, a, 1, wp, NULL);
}

/* After a resolution failed in a way the faulting thread cannot recover
 * from by itself: wake it so it faults again (and we see a fresh message). */
static void wake(struct srv_region *r, uintptr_t a)
{
	int ret = uffd_wake(&r->uffd, a, r->f->psize);

	if (ret < 0 && !uffd_gone(ret))
		ulog_warn("client %u: UFFDIO_WAKE at %#lx: %s", r->c->id, (unsigned long)a, ulog_errname(-ret));
}

/* The memfd holds a page we did not put there (a client touched the memfd
 * through a mapping it did not register): replace its contents with the
 * file's and map it. */
static int repair_page(struct srv_region *r, uint64_t pg, uintptr_t a, bool wp)
{
	struct srv_file *f = r->f;
	unsigned char *b;
	int ret = read_page(f, pg, &b);

	if (ret < 0)
		return ret;
	for (uint64_t done = 0; done < f->psize;) {
		ssize_t n = pwrite(f->memfd, b + done, f->psize - done, (off_t)((pg << f->pshift) + done));

		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (uint64_t)n;
	}
	ret = do_continue(r, a, wp);
	return ret == -EEXIST ? 0 : ret;
}

/* The pipe fills splice through (created on first use; -1 after an error
 * that may have left bytes in it). */
static int fill_pipe[2] = { -1, -1 };

static void fill_pipe_close(void)
{
	for (int i = 0; i < 2; i++)
		if (fill_pipe[i] >= 0)
			close(fill_pipe[i]);
	fill_pipe[0] = fill_pipe[1] = -1;
}

/*
 * Fill n absent pages from pg straight from the backing file into the
 * memfd: splice file -> pipe (page references, no copy) -> memfd (one
 * copy), instead of pread into a buffer and UFFDIO_COPY out of it (two
 * copies: they were most of a scan's cost).  copy_file_range would do it
 * in one call but refuses between file systems (EXDEV, ext4 to tmpfs).
 * Pages past the end of the file are allocated as zeros.  The caller then
 * maps them with UFFDIO_CONTINUE.  -EINVAL/-ENOSYS/-EOPNOTSUPP: splice
 * cannot be used with this file (fall back); other errors are the file's.
 */
static int fill_memfd(struct srv_file *f, uint64_t pg, uint64_t n)
{
	loff_t in = (loff_t)(pg << f->pshift), out = in;
	uint64_t len = n << f->pshift, done = 0;

	if (fill_pipe[0] < 0) {
		if (pipe2(fill_pipe, O_CLOEXEC) < 0)
			return -EOPNOTSUPP;
		(void)fcntl(fill_pipe[1], F_SETPIPE_SZ, 1 << 20); /* fewer round trips; 64 KiB works too */
	}
	while (done < len) {
		ssize_t k = splice(f->fd, &in, fill_pipe[1], NULL, len - done, SPLICE_F_MOVE);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = errno;

			fill_pipe_close();
			return -e;
		}
		if (k == 0)
			break; /* end of file */
		for (ssize_t left = k; left > 0;) {
			ssize_t w = splice(fill_pipe[0], NULL, f->memfd, &out, (size_t)left, SPLICE_F_MOVE);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				int e = w < 0 ? errno : EIO;

				fill_pipe_close(); /* it may hold what did not go out */
				return -(e == EINVAL ? EIO : e);
			}
			left -= w;
		}
		done += (uint64_t)k;
	}
	S.total.bytes_read += done;
	if (done < len) {
		/* Whole pages past the end of the file: zeros, allocated (a
		 * CONTINUE needs a page in the memfd), nothing left of before. */
		uint64_t from = ((pg << f->pshift) + done + 4095) & ~(uint64_t)4095, end = (pg + n) << f->pshift;

		if (from < end &&
		    (fallocate(f->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(end - from)) < 0 ||
		     fallocate(f->memfd, 0, (off_t)from, (off_t)(end - from)) < 0))
			return -errno;
	}
	return 0;
}

static void serve_fault(struct srv_region *r, const struct uffd_msg *m)
{
	struct srv_file *f = r->f;
	struct srv_client *c = r->c;
	uint64_t flags = m->arg.pagefault.flags;
	uintptr_t fa = (uintptr_t)m->arg.pagefault.address, a;
	uint64_t pg = (r->off + (fa - r->addr)) >> f->pshift;
	bool write = (flags & UFFD_PAGEFAULT_FLAG_WRITE) && r->writable;
	int ret = 0; /* set on every path below; gcc -O1 cannot tell */

	region_page(r, pg, &a);
	c->st.faults++;
	S.total.faults++;
	if (flags & UFFD_PAGEFAULT_FLAG_WP) {
		c->st.wp_faults++;
		S.total.wp_faults++;
		/* First write to a clean page (or one protected for write-back,
		 * which has finished by now: this thread does both). */
		if ((f->st[pg] & PG_PRESENT) && r->writable) {
			if (!(f->st[pg] & PG_DIRTY)) {
				f->st[pg] |= PG_DIRTY;
				f->dirty++;
				S.dirty += f->psize;
			}
			ret = uffd_writeprotect(&r->uffd, a, f->psize, false, false);
			if (ret < 0)
				wake(r, a);
		} else {
			wake(r, a); /* evicted meanwhile: it faults again as missing */
		}
		return;
	}
	if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
		c->st.minor_faults++;
		S.total.minor_faults++;
	} else {
		c->st.missing_faults++;
		S.total.missing_faults++;
	}
	uint64_t rend = (r->off + r->len) >> f->pshift; /* first page past the region */

	if (f->st[pg] & PG_PRESENT) {
		/* In the memfd already (filled for another client, or for this one
		 * through another region): map it, protected unless this is a
		 * write; a read maps the present pages after it too (a scan). */
		uint64_t n = 1, mapped = 0;

		if (!write) {
			uint64_t w = window(r, pg);

			while (n < w && pg + n < rend && (f->st[pg + n] & PG_PRESENT))
				n++;
		}
		ret = do_continue_n(r, a, n, !write, &mapped);
		if (ret < 0 && mapped >= f->psize)
			ret = 0; /* stopped at a later page (mapped already, or missing): the faulting one is in */
		r->next_pg = pg + (mapped >> f->pshift > 0 ? mapped >> f->pshift : 1);
		if (ret == -EFAULT) /* the faulting page is not in the memfd after all: someone punched it */
			ret = repair_page(r, pg, a, !write);
		if (ret == -EEXIST)
			wake(r, a);
		else if (ret == -EAGAIN)
			wake(r, a);
		else if (ret < 0 && ret != -ESRCH && ret != -ENOENT)
			ulog_warn("client %u: UFFDIO_CONTINUE at %#lx: %s", c->id, (unsigned long)a, ulog_errname(-ret));
		f->st[pg] |= PG_REF;
		if (write && ret == 0 && !(f->st[pg] & PG_DIRTY)) {
			f->st[pg] |= PG_DIRTY;
			f->dirty++;
			S.dirty += f->psize;
		}
		return;
	}
	/* Absent: bring it in through the faulting client's userfaultfd, with
	 * the absent pages after it when the region is being scanned. */
	uint64_t n = 1, done;

	if (!write) {
		uint64_t w = window(r, pg);

		while (n < w && pg + n < rend && !(f->st[pg + n] & PG_PRESENT))
			n++;
	} else {
		r->win = 1;
	}
	make_room(c, n << f->pshift);
	if (!S.no_cfr) {
		uint64_t mapped = 0;

		ret = fill_memfd(f, pg, n);
		if (ret == -EINVAL || ret == -EOPNOTSUPP || ret == -ENOSYS) {
			S.no_cfr = true; /* splice refused with this file: fall back for good */
			ulog_info("splice into the memfd: %s; filling through a buffer and UFFDIO_COPY",
				  ulog_errname(-ret));
		} else if (ret == 0) {
			/* In the memfd now, whatever the client does next. */
			for (uint64_t i = 0; i < n; i++) {
				f->st[pg + i] = PG_PRESENT;
				f->resident++;
				S.resident += f->psize;
				charge(f, pg + i, c);
			}
			c->st.fills += n;
			S.total.fills += n;
			c->st.bytes_read += n << f->pshift;
			ret = do_continue_n(r, a, n, !write, &mapped);
			if (ret < 0 && mapped >= f->psize)
				ret = 0;
			r->next_pg = pg + (mapped >> f->pshift ? mapped >> f->pshift : 1);
			if (ret == 0 && write) {
				f->st[pg] |= PG_DIRTY;
				f->dirty++;
				S.dirty += f->psize;
			} else if (ret < 0 && ret != -ESRCH && ret != -ENOENT) {
				wake(r, a); /* -EEXIST, -EAGAIN: it faults again if it must */
			}
			return;
		}
		/* else: the file's read error, reported below */
	}
	unsigned char *b;

	ret = S.no_cfr ? read_pages(f, pg, n, &b) : ret;
	if (ret < 0 && n > 1) {
		n = 1; /* an error further on is not this fault's: try its page alone */
		ret = read_page(f, pg, &b);
	}
	if (ret < 0) {
		S.total.io_errors++;
		ulog_error("client %u file %llu offset %llu: read failed: %s; the page is poisoned (SIGBUS)",
			   c->id, (unsigned long long)f->ino, (unsigned long long)(pg << f->pshift),
			   ulog_errname(-ret));
		if (uffd_poison(&r->uffd, a, f->psize) < 0)
			wake(r, a);
		return;
	}
	size_t copied = 0;

	ret = uffd_copy(&r->uffd, a, b, n << f->pshift, !write, false, &copied);
	done = copied >> f->pshift;
	if (ret == -EEXIST && done == 0) {
		/* Something is in the memfd that we never filled: replace it. */
		ret = repair_page(r, pg, a, !write);
		done = ret == 0 ? 1 : 0;
	} else if (ret < 0 && done > 0) {
		ret = 0; /* the faulting page and some after it are in; the rest stay absent */
	}
	if (ret < 0 || (copied & (f->psize - 1))) {
		/* Part of a page in the memfd: take it out again so the page is
		 * absent as our state says. */
		if (fallocate(f->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)((pg + done) << f->pshift),
			      (off_t)f->psize) < 0)
			ulog_warn("file %llu: punch after a failed fill: %s", (unsigned long long)f->ino,
				  ulog_errname(errno));
	}
	if (ret < 0) {
		if (ret != -ESRCH && ret != -ENOENT)
			wake(r, a); /* -EAGAIN and the rest: the thread faults again */
		return;
	}
	for (uint64_t i = 0; i < done; i++) {
		f->st[pg + i] = PG_PRESENT | (write && i == 0 ? PG_DIRTY : 0);
		f->resident++;
		S.resident += f->psize;
		charge(f, pg + i, c);
	}
	if (write) {
		f->dirty++;
		S.dirty += f->psize;
	}
	r->next_pg = pg + done;
	c->st.fills += done;
	S.total.fills += done;
	c->st.bytes_read += done << f->pshift;
}

static struct srv_region *find_region(struct srv_client *c, uintptr_t a)
{
	for (struct srv_region *r = c->regions; r; r = r->next)
		if (!r->dead && a >= r->addr && a - r->addr < r->len)
			return r;
	return NULL;
}

static void on_uffd(struct srv_region *r)
{
	struct uffd_msg msgs[64];

	for (int round = 0; round < 16 && !r->dead; round++) {
		int n = uffd_read_msgs(&r->uffd, msgs, 64);

		if (n <= 0) {
			if (n < 0 && n != -EAGAIN)
				ulog_debug("client %u: reading its userfaultfd: %s", r->c->id, ulog_errname(-n));
			return;
		}
		for (int i = 0; i < n; i++) {
			struct srv_region *t;

			if (msgs[i].event == UFFD_EVENT_FORK) {
				/* A client that enabled fork events would hand us a new
				 * userfaultfd per fork: not ours to keep. */
				close((int)msgs[i].arg.fork.ufd);
				continue;
			}
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue; /* libumapd asks for no events; another client may have */
			/* The same userfaultfd may serve several regions of the client. */
			t = find_region(r->c, (uintptr_t)msgs[i].arg.pagefault.address);
			if (t) {
				serve_fault(t, &msgs[i]);
			} else {
				/* Outside the client's regions (unmapped meanwhile): let it
				 * fault again; a range gone answers -ENOENT. */
				int ret = uffd_wake(&r->uffd, (uintptr_t)msgs[i].arg.pagefault.address & ~(uintptr_t)4095, 4096);

				if (ret < 0 && !uffd_gone(ret))
					ulog_warn("client %u: UFFDIO_WAKE outside its regions: %s", r->c->id, ulog_errname(-ret));
			}
		}
		if (n < 64)
			return;
	}
}

/* ---------------------------------------------------------------- regions */

/* Take a region out of service: its pages go to another client that maps
 * them, or (nobody does) are written back and dropped. */
static void region_release(struct srv_region *r)
{
	struct srv_file *f = r->f;
	struct srv_client *c = r->c;

	r->dead = true;
	for (struct srv_region **pp = &c->regions; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	c->nregions--;
	for (struct srv_region **pp = &f->regions; *pp; pp = &(*pp)->fnext)
		if (*pp == r) {
			*pp = r->fnext;
			break;
		}
	epoll_ctl(S.ep, EPOLL_CTL_DEL, r->uffd.fd, NULL);
	close(r->uffd.fd);
	r->uffd.fd = -1;
	S.total.regions--;

	uint64_t first = r->off >> f->pshift, end = (r->off + r->len) >> f->pshift;

	for (uint64_t pg = first; pg < end && pg < f->npages; pg++) {
		struct srv_region *o, *same = NULL, *other = NULL;

		if (!(f->st[pg] & PG_PRESENT) || f->owner[pg] != c->slot)
			continue;
		for (o = f->regions; o; o = o->fnext)
			if (region_covers(o, pg)) {
				if (o->c == c)
					same = o;
				else if (!other)
					other = o;
			}
		if (same)
			continue; /* still ours through another region */
		if (other) {
			uncharge(f, pg);
			charge(f, pg, other->c);
		} else if (wb_page(f, pg, true, c) < 0) { /* (which uncharges what it drops) */
			uncharge(f, pg);
			charge(f, pg, S.cl[SRV_ORPHAN]); /* write failed: keep it, retried later */
		}
	}
	if (!f->regions)
		file_drain(f);
	r->znext = S.zr;
	S.zr = r;
}

static int write_back_range(struct srv_file *f, uint64_t first, uint64_t end, bool evict, struct srv_client *who)
{
	int first_err = 0, ret;

	if (end > f->npages)
		end = f->npages;
	/* Dirty pages first, in runs of neighbours. */
	for (uint64_t pg = first; pg < end;) {
		uint64_t n = 0;

		while (pg + n < end && n < wb_run_max(f) && (f->st[pg + n] & (PG_PRESENT | PG_DIRTY)) == (PG_PRESENT | PG_DIRTY))
			n++;
		if (!n) {
			pg++;
			continue;
		}
		ret = wb_run(f, pg, n, evict, who);
		if (ret < 0 && !first_err)
			first_err = ret;
		pg += n;
	}
	/* Then, to evict, the clean present pages, in runs too (pages whose
	 * write failed are dirty still and stay). */
	for (uint64_t pg = first; evict && pg < end;) {
		uint64_t n = 0;

		while (pg + n < end && (f->st[pg + n] & (PG_PRESENT | PG_DIRTY | PG_VICTIM)) == PG_PRESENT)
			n++;
		if (!n) {
			pg++;
			continue;
		}
		ret = drop_run(f, pg, n, who);
		if (ret < 0 && !first_err)
			first_err = ret;
		pg += n;
	}
	if (!first_err && f->wb_err) {
		first_err = f->wb_err; /* an earlier background write-back failed */
		f->wb_err = 0;
	}
	return first_err;
}

/* ---------------------------------------------------------------- clients */

static void client_close(struct srv_client *c, const char *why)
{
	if (c->dead)
		return;
	ulog_info("client %u (pid %d uid %u) leaves: %s", c->id, (int)c->pid, (unsigned)c->uid, why);
	c->dead = true;
	while (c->regions)
		region_release(c->regions);
	epoll_ctl(S.ep, EPOLL_CTL_DEL, c->sock, NULL);
	close(c->sock);
	c->sock = -1;
	proto_rx_free(&c->rx);
	/* Pages still charged to the slot (write-back failures) become orphans. */
	struct qent e;

	while (q_pop(c, &e)) {
		struct srv_file *f = q_file(&e);

		if (f && e.pg < f->npages && (f->st[e.pg] & PG_PRESENT) && f->owner[e.pg] == c->slot) {
			uncharge(f, e.pg);
			charge(f, e.pg, S.cl[SRV_ORPHAN]);
		}
	}
	S.cl[c->slot] = NULL;
	S.nclients--;
	c->znext = S.zc;
	S.zc = c;
}

static int reply(struct srv_client *c, uint16_t type, const void *p, uint32_t len, const int *fds, int nfds)
{
	struct proto_hdr h;
	int ret;

	memcpy(&h, c->rx.hdr, sizeof(h));
	ret = proto_send(c->sock, type | PT_REPLY, c->sess.version ? c->sess.version : PROTO_VERSION, h.seq, p,
			 len, fds, nfds, true);

	if (ret < 0)
		client_close(c, "cannot send a reply (not reading?)");
	return ret;
}

static void reply_err(struct srv_client *c, int err, const char *msg)
{
	struct proto_hdr h;

	memcpy(&h, c->rx.hdr, sizeof(h));
	if (proto_send_error(c->sock, c->sess.version ? c->sess.version : PROTO_VERSION, h.seq, err, msg, true) < 0)
		client_close(c, "cannot send an error reply");
}

static bool is_uffd(int fd)
{
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return false;
	link[n] = 0;
	return strcmp(link, "anon_inode:[userfaultfd]") == 0;
}

/*
 * Could client c write the file open on fd?  Its uid (root: yes unless the
 * file system is read-only), the owner's or the group's write bit for its
 * uid and primary gid (SO_PEERCRED has no supplementary groups, so this can
 * only say no where the kernel would say yes), or the others' bit.
 */
static bool may_write(const struct srv_client *c, int fd, const struct stat *st)
{
	struct statvfs vfs;

	if (fstatvfs(fd, &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
		return false;
	if (c->uid == 0)
		return true;
	if (st->st_uid == c->uid)
		return st->st_mode & S_IWUSR;
	if (st->st_gid == c->gid)
		return st->st_mode & S_IWGRP;
	return st->st_mode & S_IWOTH;
}

static void do_map(struct srv_client *c, struct proto_msg *m)
{
	const struct proto_map *mp = &m->u.map;
	int bfd = m->fds[0], ufd = m->fds[1], acc, ret;
	bool writable = mp->flags & PROTO_MAP_WRITABLE;
	struct srv_file *f;
	struct srv_region *r;
	struct stat st;

	if (fstat(bfd, &st) < 0 || !S_ISREG(st.st_mode)) {
		reply_err(c, ENODEV, "the backing descriptor is not a regular file");
		return;
	}
	acc = fcntl(bfd, F_GETFL);
	if (acc >= 0 && (acc & (O_PATH | O_APPEND | O_DIRECT))) {
		/* O_PATH cannot be read; pwrite on O_APPEND appends wherever we
		 * aim it; O_DIRECT needs aligned buffers and offsets. */
		reply_err(c, EINVAL, "the backing descriptor is O_PATH, O_APPEND or O_DIRECT");
		return;
	}
	if (acc < 0 || (acc & O_ACCMODE) == O_WRONLY || (writable && (acc & O_ACCMODE) != O_RDWR)) {
		reply_err(c, EACCES, "the backing descriptor is not open for reading (and writing, for a writable region)");
		return;
	}
	/* The kernel registers only mappings that may be written (VM_MAYWRITE),
	 * so every client gets a writable descriptor of the shared memfd, and
	 * could write the shared cache with it.  Only clients that could write
	 * the file itself get one. */
	if (!writable && !may_write(c, bfd, &st)) {
		reply_err(c, EACCES, "a read-only client shares the cache only of a file it could write; page it in-process");
		return;
	}
	if (!is_uffd(ufd)) {
		reply_err(c, EBADF, "the second descriptor is not a userfaultfd");
		return;
	}
	if (c->nregions >= SRV_MAX_REGIONS_PER_CLIENT) {
		reply_err(c, EMFILE, "too many regions for one client");
		return;
	}
	for (r = c->regions; r; r = r->next)
		if (mp->addr < r->addr + r->len && r->addr < mp->addr + mp->len) {
			reply_err(c, EEXIST, "the range overlaps a region of this client");
			return;
		}
	if (mp->page_size > client_limit() || mp->page_size > S.cfg.budget) {
		reply_err(c, EINVAL, "a page of this size is larger than the budget or the client limit");
		return;
	}
	/* Faults are read without blocking, by this one thread. */
	acc = fcntl(ufd, F_GETFL);
	if (acc < 0 || (!(acc & O_NONBLOCK) && fcntl(ufd, F_SETFL, acc | O_NONBLOCK) < 0)) {
		reply_err(c, EBADF, "cannot make the userfaultfd non-blocking");
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		reply_err(c, ENOMEM, "out of memory");
		return;
	}
	f = file_get(&st, mp->page_size);
	if (!f) {
		ret = file_new(&st, mp->page_size, bfd, writable, &f);
		if (ret < 0) {
			free(r);
			reply_err(c, -ret, "cannot create the memfd");
			return;
		}
		m->fds[0] = -1; /* the file keeps it */
	} else if (writable && !f->fd_writable) {
		/* Write back through a descriptor a writer passed. */
		close(f->fd);
		f->fd = bfd;
		f->fd_writable = true;
		m->fds[0] = -1;
	}
	ret = file_grow(f, mp->offset + mp->len);
	if (ret < 0) {
		free(r);
		if (!f->regions && !f->resident)
			file_free(f);
		reply_err(c, -ret, "cannot size the memfd");
		return;
	}
	r->h.kind = H_UFFD;
	r->id = ++S.next_region_id;
	r->c = c;
	r->f = f;
	r->addr = (uintptr_t)mp->addr;
	r->len = mp->len;
	r->off = mp->offset;
	r->writable = writable;
	r->uffd.fd = ufd;
	r->uffd.can_wp = true;
	m->fds[1] = -1;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &r->h };

	if (epoll_ctl(S.ep, EPOLL_CTL_ADD, ufd, &ev) < 0) {
		ret = -errno;
		close(ufd);
		free(r);
		if (!f->regions && !f->resident)
			file_free(f);
		reply_err(c, -ret, "cannot watch the userfaultfd");
		return;
	}
	r->next = c->regions;
	c->regions = r;
	c->nregions++;
	r->fnext = f->regions;
	f->regions = r;
	S.total.regions++;

	struct proto_map_reply mr = { r->id, f->npages << f->pshift };
	reply(c, PT_MAP, &mr, sizeof(mr), &f->memfd, 1);
	ulog_info("client %u: region %llu at %#lx, %llu bytes at offset %llu of file %llx:%llu, page %llu%s",
		  c->id, (unsigned long long)r->id, (unsigned long)r->addr, (unsigned long long)r->len,
		  (unsigned long long)r->off, (unsigned long long)f->dev, (unsigned long long)f->ino,
		  (unsigned long long)f->psize, writable ? ", writable" : "");
}

static struct srv_region *region_by_id(struct srv_client *c, uint64_t id)
{
	for (struct srv_region *r = c->regions; r; r = r->next)
		if (r->id == id && !r->dead)
			return r;
	return NULL;
}

static void do_unmap(struct srv_client *c, const struct proto_msg *m)
{
	struct srv_region *r = region_by_id(c, m->u.ref.region_id);
	int ret;

	if (!r) {
		reply_err(c, EINVAL, "no such region");
		return;
	}
	ret = write_back_range(r->f, r->off >> r->f->pshift, (r->off + r->len) >> r->f->pshift, false, c);
	if (ret < 0) {
		reply_err(c, -ret, "write-back failed; the region stays mapped");
		return;
	}
	region_release(r);
	reply(c, PT_UNMAP, NULL, 0, NULL, 0);
}

static void do_flush(struct srv_client *c, const struct proto_msg *m)
{
	const struct proto_flush *fl = &m->u.flush;
	struct srv_region *r = region_by_id(c, fl->region_id);
	uint64_t s, e;
	int ret;

	if (!r) {
		reply_err(c, EINVAL, "no such region");
		return;
	}
	if (fl->offset >= r->len) {
		reply(c, PT_FLUSH, NULL, 0, NULL, 0);
		return;
	}
	s = (r->off + fl->offset) >> r->f->pshift;
	e = fl->len > r->len - fl->offset ? r->off + r->len : r->off + fl->offset + fl->len;
	e = (e + r->f->psize - 1) >> r->f->pshift;
	ret = write_back_range(r->f, s, e, fl->evict, c);
	if (ret < 0)
		reply_err(c, -ret, "write-back failed");
	else
		reply(c, PT_FLUSH, NULL, 0, NULL, 0);
}

static void client_stats(const struct srv_client *c, struct proto_stats *st)
{
	*st = c->st;
	st->resident_bytes = c->resident;
	st->regions = c->nregions;
	st->budget_bytes = S.cfg.budget;
	st->limit_bytes = client_limit();
	st->dirty_bytes = 0;
	st->io_errors = S.total.io_errors;
}

static void do_status(struct srv_client *c)
{
	struct proto_status s;

	memset(&s, 0, sizeof(s));
	s.pid = (uint64_t)getpid();
	s.uptime_ms = (now_ns() - S.start_ns) / 1000000;
	s.budget = S.cfg.budget;
	s.client_limit = client_limit();
	s.uid_limit = S.cfg.uid_limit;
	s.resident = S.resident;
	s.dirty = S.dirty;
	s.clients = S.nclients;
	s.regions = S.total.regions;
	for (uint32_t i = 0; i < S.nfiles; i++)
		if (S.files[i])
			s.files++;
	s.max_clients = S.cfg.max_clients;
	s.page_size_default = (uint64_t)sysconf(_SC_PAGESIZE);
	s.total = S.total;
	s.total.resident_bytes = S.resident;
	s.total.dirty_bytes = S.dirty;
	s.total.budget_bytes = S.cfg.budget;
	reply(c, PT_STATUS, &s, sizeof(s), NULL, 0);
}

static void do_list(struct srv_client *c, bool regions)
{
	unsigned char *buf = malloc(PROTO_MAX_PAYLOAD);
	struct proto_list l = { 0, 0 };
	size_t at = sizeof(l);

	if (!buf) {
		reply_err(c, ENOMEM, "out of memory");
		return;
	}
	for (uint32_t i = 1; i < S.ncl; i++) {
		struct srv_client *o = S.cl[i];

		if (!o)
			continue;
		if (!regions) {
			struct proto_client_info ci = { o->id, (uint32_t)o->pid, o->uid, o->sess.role,
							o->nregions, o->resident, client_limit(), o->st.faults,
							o->st.fills, o->st.evictions, o->st.bytes_written };

			if (l.count >= PROTO_LIST_MAX(ci))
				break;
			memcpy(buf + at, &ci, sizeof(ci));
			at += sizeof(ci);
			l.count++;
			continue;
		}
		for (struct srv_region *r = o->regions; r; r = r->next) {
			struct proto_region_info ri = { r->id, o->id, r->writable ? PROTO_MAP_WRITABLE : 0,
							r->addr, r->len, r->off, r->f->psize, r->f->dev, r->f->ino,
							r->f->resident << r->f->pshift, r->f->dirty << r->f->pshift };

			if (l.count >= PROTO_LIST_MAX(ri))
				break;
			memcpy(buf + at, &ri, sizeof(ri));
			at += sizeof(ri);
			l.count++;
		}
	}
	memcpy(buf, &l, sizeof(l));
	reply(c, regions ? PT_REGIONS : PT_CLIENTS, buf, (uint32_t)at, NULL, 0);
	free(buf);
}

static struct srv_client *client_by_id(uint32_t id)
{
	for (uint32_t i = 1; i < S.ncl; i++)
		if (S.cl[i] && S.cl[i]->id == id)
			return S.cl[i];
	return NULL;
}

/* Write back (and with evict drop) every page of the files client id maps
 * (0: of every file). */
static int flush_target(uint32_t id, bool evict)
{
	struct srv_client *t = id ? client_by_id(id) : NULL;
	int first = 0;

	if (id && !t)
		return -ESRCH;
	for (uint32_t i = 0; i < S.nfiles; i++) {
		struct srv_file *f = S.files[i];

		if (!f)
			continue;
		if (t) {
			bool mapped = false;

			for (struct srv_region *r = f->regions; r; r = r->fnext)
				mapped |= r->c == t;
			if (!mapped)
				continue;
		}
		int ret = write_back_range(f, 0, f->npages, evict, NULL);

		if (ret < 0 && !first)
			first = ret;
		if (S.files[i] == f && !f->regions && !f->resident)
			file_free(f);
	}
	return first;
}

static void do_admin(struct srv_client *c, const struct proto_msg *m)
{
	uint16_t t = m->hdr.type;
	int ret = 0;

	switch (t) {
	case PT_STATUS:
		do_status(c);
		return;
	case PT_CLIENTS:
		do_list(c, false);
		return;
	case PT_REGIONS:
		do_list(c, true);
		return;
	case PT_SET_BUDGET:
		S.cfg.budget = m->u.budget.bytes;
		ulog_info("budget set to %llu bytes by client %u", (unsigned long long)S.cfg.budget, c->id);
		make_room(NULL, 0);
		if (S.cfg.notify)
			S.cfg.notify("STATUS=budget %llu bytes, %llu resident", (unsigned long long)S.cfg.budget,
				     (unsigned long long)S.resident);
		break;
	case PT_ADMIN_FLUSH:
	case PT_EVICT:
		ret = flush_target(m->u.target.client_id, t == PT_EVICT);
		break;
	case PT_DISCONNECT: {
		struct srv_client *v = client_by_id(m->u.target.client_id);

		if (!v) {
			ret = -ESRCH;
			break;
		}
		if (v == c) {
			ret = -EINVAL;
			break;
		}
		client_close(v, "disconnected by umapctl");
		break;
	}
	default:
		ret = -ENOMSG;
	}
	if (ret < 0)
		reply_err(c, -ret, t == PT_DISCONNECT || ret == -ESRCH ? "no such client" : "write-back failed");
	else
		reply(c, t, NULL, 0, NULL, 0);
}

static bool is_admin(uid_t uid)
{
	const struct dconf *dc = S.cfg.dc;

	if (uid == 0 || uid == geteuid())
		return true;
	for (unsigned i = 0; dc && i < dc->n_admin_uids; i++)
		if (dc->admin_uids[i] == uid)
			return true;
	return false;
}

/* allow_users / allow_groups: empty lists let in anyone who can open the socket. */
static bool is_allowed(const struct ucred *cr)
{
	const struct dconf *dc = S.cfg.dc;

	if (!dc || (!dc->n_allow_uids && !dc->n_allow_gids) || cr->uid == 0 || is_admin(cr->uid))
		return true;
	for (unsigned i = 0; i < dc->n_allow_uids; i++)
		if (dc->allow_uids[i] == cr->uid)
			return true;
	for (unsigned i = 0; i < dc->n_allow_gids; i++)
		if (dc->allow_gids[i] == cr->gid)
			return true;
	return false;
}

static void do_hello(struct srv_client *c, const struct proto_msg *m)
{
	const struct proto_hello *h = &m->u.hello;
	uint16_t lo = h->min_version > PROTO_VERSION_MIN ? h->min_version : PROTO_VERSION_MIN;
	uint16_t hi = h->max_version < PROTO_VERSION ? h->max_version : PROTO_VERSION;

	if (lo > hi) {
		reply_err(c, EPROTONOSUPPORT, "no protocol version in common");
		return;
	}
	/* Administration is for root and the daemon's own user. */
	if (h->role == PROTO_ROLE_ADMIN && !is_admin(c->uid)) {
		reply_err(c, EPERM, "admin sessions are for root, the daemon's user and admin_users");
		return;
	}
	c->sess.hello_done = true;
	c->sess.version = hi;
	c->sess.role = h->role;

	struct proto_hello_reply hr = { hi, 0, c->id, S.cfg.budget, PROTO_FEAT_SHARED_CACHE };

	reply(c, PT_HELLO, &hr, sizeof(hr), NULL, 0);
}

static void on_frame(struct srv_client *c)
{
	struct proto_hdr h;
	struct proto_msg m;
	int ret;

	memcpy(&h, c->rx.hdr, sizeof(h));
	ret = proto_session_check(&c->sess, h.type);
	if (ret == 0)
		ret = proto_decode(&h, c->rx.payload, c->rx.fds, c->rx.nfds, &m);
	if (ret < 0) {
		ulog_info("client %u: %s message refused: %s", c->id, proto_type_name(h.type), ulog_errname(-ret));
		reply_err(c, -ret, ret == -EPROTO ? "message out of order" : ret == -EPERM ? "not permitted in this session"
					 : ret == -ENOMSG ? "unknown message type" : "malformed message");
		return; /* proto_rx_reset closes the descriptors */
	}
	/* The message owns the descriptors now; rx must not close them twice. */
	c->rx.nfds = 0;
	switch (h.type) {
	case PT_HELLO:
		do_hello(c, &m);
		break;
	case PT_MAP:
		do_map(c, &m);
		break;
	case PT_UNMAP:
		do_unmap(c, &m);
		break;
	case PT_FLUSH:
		do_flush(c, &m);
		break;
	case PT_STATS: {
		struct proto_stats st;

		client_stats(c, &st);
		reply(c, PT_STATS, &st, sizeof(st), NULL, 0);
		break;
	}
	default:
		do_admin(c, &m);
	}
	proto_close_fds(m.fds, m.nfds); /* those the handler did not take */
}

static void on_client(struct srv_client *c, uint32_t events)
{
	for (int frames = 0; frames < 64 && !c->dead; frames++) {
		int ret = proto_rx_step(c->sock, &c->rx);

		if (ret == 0)
			break;
		if (ret < 0) {
			if (ret == -EPROTO || ret == -EMSGSIZE || ret == -EPROTONOSUPPORT || ret == -EINVAL ||
			    ret == -EBADMSG) {
				/* Cannot find the next frame after a bad header: answer, then drop. */
				reply_err(c, -ret, "bad frame header; disconnecting");
			}
			client_close(c, ret == -EPIPE ? "closed" : ret == -ECONNRESET ? "closed inside a frame" : ulog_errname(-ret));
			return;
		}
		on_frame(c);
		if (!c->dead)
			proto_rx_reset(&c->rx);
		c->rx_since = 0;
	}
	/* A frame begun and not finished starts the request timeout. */
	if (!c->dead && (c->rx.hgot || c->rx.pgot) && !c->rx_since)
		c->rx_since = now_ns();
	if (!c->dead && (events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN))
		client_close(c, "hung up");
}

static void on_accept(void)
{
	for (;;) {
		int s = accept4(S.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct ucred cr;
		socklen_t crl = sizeof(cr);
		struct srv_client *c;
		uint32_t slot;

		if (s < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				ulog_warn("accept: %s", ulog_errname(errno));
			return;
		}
		if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0) {
			close(s);
			continue;
		}
		if (!is_allowed(&cr)) {
			ulog_info("refusing pid %d uid %u: not in allow_users/allow_groups", (int)cr.pid, (unsigned)cr.uid);
			proto_send_error(s, PROTO_VERSION, 0, EACCES, "not allowed to use this daemon", true);
			close(s);
			continue;
		}
		if (S.nclients >= S.cfg.max_clients) {
			proto_send_error(s, PROTO_VERSION, 0, EUSERS, "too many clients", true);
			close(s);
			continue;
		}
		for (slot = 1; slot < S.ncl && S.cl[slot]; slot++)
			;
		if (slot == S.ncl) {
			struct srv_client **n = realloc(S.cl, (S.ncl + 16) * sizeof(*n));

			if (!n) {
				close(s);
				continue;
			}
			memset(n + S.ncl, 0, 16 * sizeof(*n));
			S.cl = n;
			S.ncl += 16;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(s);
			continue;
		}
		c->h.kind = H_CLIENT;
		c->slot = slot;
		c->id = ++S.next_client_id;
		c->sock = s;
		c->pid = cr.pid;
		c->uid = cr.uid;
		c->gid = cr.gid;
		proto_rx_init(&c->rx);
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = &c->h };

		if (epoll_ctl(S.ep, EPOLL_CTL_ADD, s, &ev) < 0) {
			close(s);
			free(c);
			continue;
		}
		S.cl[slot] = c;
		S.nclients++;
		ulog_info("client %u connected: pid %d uid %u", c->id, (int)cr.pid, (unsigned)cr.uid);
	}
}

static void free_zombies(void)
{
	while (S.zr) {
		struct srv_region *r = S.zr;

		S.zr = r->znext;
		free(r);
	}
	while (S.zc) {
		struct srv_client *c = S.zc;

		S.zc = c->znext;
		free(c->q);
		free(c);
	}
}

/* ---------------------------------------------------------------- setup */

static int listen_socket(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)];
	int s;

	if (S.cfg.listen_fd >= 0) {
		int fl = fcntl(S.cfg.listen_fd, F_GETFL);

		if (fl < 0 || fcntl(S.cfg.listen_fd, F_SETFL, fl | O_NONBLOCK) < 0)
			return -errno;
		return S.cfg.listen_fd;
	}
	if (strlen(S.cfg.socket_path) >= sizeof(sa.sun_path) || !S.cfg.socket_path[0])
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, S.cfg.socket_path);
	strcpy(dir, S.cfg.socket_path);
	char *slash = strrchr(dir, '/');

	if (slash && slash != dir) {
		*slash = 0;
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			ulog_warn("mkdir %s: %s", dir, ulog_errname(errno));
	}
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int t;

		if (errno != EADDRINUSE)
			goto fail;
		/* A socket left by a daemon that died: take it over if nobody answers. */
		t = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (t >= 0 && connect(t, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(t);
			close(s);
			ulog_error("%s: another umapd is listening there", S.cfg.socket_path);
			return -EADDRINUSE;
		}
		if (t >= 0)
			close(t);
		unlink(S.cfg.socket_path);
		if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			goto fail;
	}
	/* By default any local user may be a client; limits apply per uid. */
	if (chmod(S.cfg.socket_path, S.cfg.dc ? S.cfg.dc->socket_mode : 0666) < 0)
		ulog_warn("chmod %s: %s", S.cfg.socket_path, ulog_errname(errno));
	if (S.cfg.dc && S.cfg.dc->socket_gid >= 0 && chown(S.cfg.socket_path, (uid_t)-1, (gid_t)S.cfg.dc->socket_gid) < 0)
		ulog_warn("chown %s: %s", S.cfg.socket_path, ulog_errname(errno));
	if (listen(s, 128) < 0)
		goto fail;
	return s;
fail: {
	int e = errno;

	close(s);
	return -e;
}
}

static void shutdown_all(void)
{
	notify("STOPPING=1");
	/* Write everything back; clients see the socket close and take over
	 * their own faults (docs/daemon-protocol.md). */
	int ret = flush_target(0, false);

	if (ret < 0)
		ulog_error("write-back at shutdown failed: %s", ulog_errname(-ret));
	for (uint32_t i = 1; i < S.ncl; i++)
		if (S.cl[i])
			client_close(S.cl[i], "daemon stopping");
	for (uint32_t i = 0; i < S.nfiles; i++)
		if (S.files[i])
			file_drain(S.files[i]);
	free_zombies();
}

int srv_run(const struct srv_config *cfg)
{
	sigset_t ss;
	int ret;

	S.cfg = *cfg;
	S.start_ns = now_ns();
	/*
	 * How fills reach the memfd.  Default: pread into a buffer and
	 * UFFDIO_COPY (allocates, copies and maps in one call).
	 * UMAPD_DAEMON_FILL=splice: splice the file into the memfd and map with
	 * UFFDIO_CONTINUE -- one copy fewer, but measured slower here (8 x 512
	 * MiB scan: 2.0-2.3 s of daemon system time against 1.3-1.5 s; the
	 * shmem write path costs more than the copy it saves).  Kept for
	 * comparisons and tested (daemon.clients@splice).
	 */
	{
		const char *fill = getenv("UMAPD_DAEMON_FILL");

		S.no_cfr = !(fill && strcmp(fill, "splice") == 0);
		if (!S.no_cfr)
			ulog_info("UMAPD_DAEMON_FILL=splice: filling by splice into the memfd and UFFDIO_CONTINUE");
	}
	S.lfd = S.sfd = S.ep = -1;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	S.sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
	S.ep = epoll_create1(EPOLL_CLOEXEC);
	S.cl = calloc(16, sizeof(*S.cl));
	S.ncl = 16;
	if (S.sfd < 0 || S.ep < 0 || !S.cl) {
		ulog_error("cannot set up the event loop: %s", ulog_errname(errno));
		return 1;
	}
	S.cl[SRV_ORPHAN] = calloc(1, sizeof(struct srv_client));
	if (!S.cl[SRV_ORPHAN])
		return 1;
	S.cl[SRV_ORPHAN]->slot = SRV_ORPHAN;
	S.cl[SRV_ORPHAN]->sock = -1;
	ret = listen_socket();
	if (ret < 0) {
		ulog_error("cannot listen on %s: %s", S.cfg.socket_path, ulog_errname(-ret));
		return 1;
	}
	S.lfd = ret;
	S.hl.kind = H_LISTEN;
	S.hs.kind = H_SIGNAL;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &S.hl };

	if (epoll_ctl(S.ep, EPOLL_CTL_ADD, S.lfd, &ev) < 0) {
		ulog_error("cannot watch the listening socket: %s", ulog_errname(errno));
		return 1;
	}
	ev.data.ptr = &S.hs;
	if (epoll_ctl(S.ep, EPOLL_CTL_ADD, S.sfd, &ev) < 0) {
		ulog_error("cannot watch for signals: %s", ulog_errname(errno));
		return 1;
	}

	ulog_info("listening on %s, budget %llu bytes", cfg->listen_fd >= 0 ? "a socket from systemd" : S.cfg.socket_path,
		  (unsigned long long)S.cfg.budget);
	notify("READY=1");
	if (S.cfg.notify)
		S.cfg.notify("STATUS=serving, budget %llu bytes", (unsigned long long)S.cfg.budget);

	/* Ping the watchdog at half its period; otherwise wake once a second
	 * to retry write-backs of orphaned pages. */
	int tick_ms = 1000;
	uint64_t last_tick = now_ns();

	if (S.cfg.request_timeout_ms && S.cfg.request_timeout_ms / 2 < (uint64_t)tick_ms)
		tick_ms = S.cfg.request_timeout_ms / 2 ? (int)(S.cfg.request_timeout_ms / 2) : 1;
	/* A third of the watchdog period: a ping late by a busy loop or a
	 * loaded CPU still arrives in time. */
	if (S.cfg.watchdog_usec && S.cfg.watchdog_usec / 3000 < (uint64_t)tick_ms)
		tick_ms = (int)(S.cfg.watchdog_usec / 3000) ? (int)(S.cfg.watchdog_usec / 3000) : 1;
	while (!S.stop) {
		struct epoll_event evs[64];
		/* Wait only until the next tick is due, not a whole tick from now. */
		uint64_t since = now_ns() - last_tick, period = (uint64_t)tick_ms * 1000000ull;
		int n = epoll_wait(S.ep, evs, 64, since >= period ? 0 : (int)((period - since) / 1000000) + 1);

		if (n < 0 && errno != EINTR) {
			ulog_error("epoll_wait: %s", ulog_errname(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct handle *h = evs[i].data.ptr;

			switch (h->kind) {
			case H_LISTEN:
				on_accept();
				break;
			case H_SIGNAL: {
				struct signalfd_siginfo si;

				while (read(S.sfd, &si, sizeof(si)) == sizeof(si))
					if (si.ssi_signo != SIGHUP)
						S.stop = true;
				break;
			}
			case H_CLIENT: {
				struct srv_client *c = (struct srv_client *)h;

				if (!c->dead)
					on_client(c, evs[i].events);
				break;
			}
			case H_UFFD: {
				struct srv_region *r = (struct srv_region *)h;

				if (!r->dead)
					on_uffd(r);
				break;
			}
			}
		}
		free_zombies();
		if (now_ns() - last_tick >= (uint64_t)tick_ms * 1000000ull) {
			last_tick = now_ns();
			if (S.cfg.watchdog_usec)
				notify("WATCHDOG=1");
			/* A client that began a message and went quiet holds a
			 * connection slot: request_timeout_ms ends it. */
			for (uint32_t i = 1; S.cfg.request_timeout_ms && i < S.ncl; i++) {
				struct srv_client *c = S.cl[i];

				if (c && c->rx_since && last_tick - c->rx_since > S.cfg.request_timeout_ms * 1000000ull)
					client_close(c, "did not finish a message within request_timeout_ms");
			}
			if (S.cl[SRV_ORPHAN]->resident)
				evict_from(S.cl[SRV_ORPHAN], NULL, UINT64_MAX);
		}
	}
	shutdown_all();
	fill_pipe_close();
	close(S.lfd);
	if (cfg->listen_fd < 0)
		unlink(S.cfg.socket_path);
	ulog_info("stopped");
	return 0;
}
