/*
 * lib/store - where a region's data lives.
 *
 * A store is a small vtable so that new kinds (sparse files, memory, fault
 * injection, remote) plug in without the engine knowing.  Offsets and
 * lengths are in bytes; the engine only asks for page-aligned ranges, and
 * for buffers it owns (bounce buffers) or region pages that are present and
 * write-protected (write-back straight from the region).
 *
 * Every operation returns 0 or a negative errno.  read() fills the whole
 * buffer: bytes past the end of the data read as zeros.  write() writes the
 * whole buffer or fails; the engine clamps writes to the store size itself
 * when the region may not grow.
 */
#ifndef UMAPD_STORE_H
#define UMAPD_STORE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct store;

/*
 * Where a byte range of a store lives, for I/O engines that submit reads
 * and writes themselves (io_uring, libaio) instead of calling read/write.
 *
 * Contract: a descriptor returned by extent() stays open and valid until
 * the store is closed, because the I/O may complete long after the call.
 * A read through an extent may come up short at the end of the
 * descriptor's file (a chunk or file not written that far): the missing
 * bytes read as zeros.  The store does no locking on the caller's behalf
 * for I/O it did not do itself, so extent(write=1) returns -EOPNOTSUPP
 * where the store needs to take a lock around the write (see each store).
 */
struct store_extent {
	int fd;          /* descriptor to read or write; -1 on a read: a hole, reads as zeros */
	uint64_t off;    /* offset in fd */
	size_t len;      /* bytes from the asked offset that lie contiguously there (> 0) */
	unsigned align;  /* 0, or the O_DIRECT alignment: buffer, offset and length must
			  * be multiples of it (a read may round its length up) */
};

struct store_ops {
	const char *name;
	int (*read)(struct store *s, void *buf, size_t len, uint64_t off);
	int (*write)(struct store *s, const void *buf, size_t len, uint64_t off);
	int (*sync)(struct store *s);
	/* Current size of the data in bytes (>= 0), or a negative errno. */
	int64_t (*size)(struct store *s);
	void (*close)(struct store *s);
	/* Optional (NULL: always use read/write).  Describe [off, off+len)
	 * for an asynchronous engine; write != 0: the range is about to be
	 * written (create what backs it).  -EOPNOTSUPP: use read()/write()
	 * for this range.  Other negative errno: the I/O fails with it. */
	int (*extent)(struct store *s, uint64_t off, size_t len, int write, struct store_extent *x);
};

struct store {
	const struct store_ops *ops;
};

static inline int store_read(struct store *s, void *buf, size_t len, uint64_t off)
{
	return s->ops->read(s, buf, len, off);
}

static inline int store_write(struct store *s, const void *buf, size_t len, uint64_t off)
{
	return s->ops->write(s, buf, len, off);
}

static inline int store_sync(struct store *s)
{
	return s->ops->sync(s);
}

static inline int64_t store_size(struct store *s)
{
	return s->ops->size(s);
}

static inline int store_extent(struct store *s, uint64_t off, size_t len, int write, struct store_extent *x)
{
	return s->ops->extent ? s->ops->extent(s, off, len, write, x) : -EOPNOTSUPP;
}

static inline void store_close(struct store *s)
{
	s->ops->close(s);
}

/*
 * A store over an open file descriptor, which it duplicates (the caller
 * keeps its own).  writable: the caller will write.  direct: open the
 * file again with O_DIRECT (a descriptor opened O_DIRECT is used that way
 * anyway).  Errors: -EBADF, -EACCES (descriptor not open for the access
 * asked), -ENODEV (not a regular file or block device), -EINVAL (the file
 * system refuses O_DIRECT), -ENOMEM.
 */
int store_file_open(int fd, int writable, int direct, struct store **out);

/*
 * A sparse store over the directory dir (store_sparse.c says its layout).
 * flags: STORE_SPARSE_CREATE makes the directory (its last component) and
 * the metadata file if missing; STORE_SPARSE_RDONLY opens for reading only
 * (writes fail with -EROFS).  chunk_size: a multiple of 4096 up to 1 TiB,
 * or 0: the recorded one, or 64 MiB for a new store.  size: the logical
 * size of a new store; for an existing one a larger value grows it, 0 or a
 * smaller one keeps the recorded size.
 * Errors: -EFAULT (NULL), -EINVAL (bad flags or chunk size, CREATE with
 * RDONLY, a metadata file that is corrupt, of another version or of
 * another chunk size; a larger size with RDONLY), -ENOENT (no directory or
 * no metadata file, without CREATE), -ENOTDIR, -EACCES/-EROFS (the
 * directory cannot be read, or written when not RDONLY), -ENOMEM.
 */
#define STORE_SPARSE_CREATE 0x1
#define STORE_SPARSE_RDONLY 0x2
int store_sparse_open(const char *dir, uint64_t chunk_size, uint64_t size, int flags, struct store **out);

/*
 * A store in anonymous memory: data of logical size `size` (zeros), growing
 * with writes up to `limit` bytes (0: no limit but address space); a write
 * past the limit fails with -ENOSPC.  Errors: -EINVAL (size > limit, or
 * limit > INT64_MAX), -ENOMEM.
 */
int store_memory_open(uint64_t size, uint64_t limit, struct store **out);

/*
 * The fault-injection store (store_inject.c documents the spec syntax).
 * inject_parse is a pure function of its input: it never crashes, and on
 * -EINVAL writes a one-line reason into why (if why != NULL and whylen > 0).
 */
#define INJECT_SPEC_MAX 255 /* characters of a spec, without the NUL */

struct inject_fault {
	int err;       /* errno to fail with; 0: none */
	uint32_t ppb;  /* probability, parts per 10^9 */
};

struct inject_cfg {
	struct inject_fault read, write, sync;
	uint64_t enospc_after;      /* write budget in bytes; UINT64_MAX: none */
	uint64_t fail_reads_after;  /* reads allowed after the spec took effect; UINT64_MAX: all */
	uint64_t fail_writes_after; /* the same for writes */
	uint32_t latency_us;        /* sleep before each read, write and sync */
	uint64_t seed;              /* of the random choices */
};

/* What the store saw and did since it was opened. */
struct inject_counters {
	uint64_t reads, writes, syncs;             /* operations asked for */
	uint64_t read_errors, write_errors, sync_errors; /* injected errors (not ENOSPC budget) */
	uint64_t enospc_errors;                    /* writes refused by enospc_after */
	uint64_t bytes_written;                    /* written to the inner store */
	uint64_t delays;                           /* operations slowed by latency_us */
};

void inject_defaults(struct inject_cfg *c);
int inject_parse(const char *spec, struct inject_cfg *out, char *why, size_t whylen);

/* Wrap inner (owned from now on: closing the wrapper closes it).
 * Errors: -EFAULT (NULL), -EINVAL (bad spec), -ENOMEM; inner stays the caller's. */
int store_inject_open(struct store *inner, const char *spec, struct store **out);
/* Is s an injection store? */
bool store_is_inject(const struct store *s);
/* Replace the spec of a live injection store: the counts behind
 * fail_*_after start again; the bytes written (enospc_after) are kept, so
 * raising the budget lets writes succeed again.  -EINVAL: not an injection
 * store, or bad spec. */
int store_inject_set(struct store *s, const char *spec);
int store_inject_counters(struct store *s, struct inject_counters *out);
/* Free the wrapper without closing the inner store, and return it (NULL if
 * s is not an injection store). */
struct store *store_inject_detach(struct store *s);

/*
 * Public stores (include/umapd_store.h), store_plugin.c.
 *
 * store_plugin_wrap: an internal store over a public one, for a region or
 * an injection store.  The public store is not owned until the caller
 * keeps the result: on a later failure, store_plugin_unwrap frees the
 * wrapper and leaves the public store as it was; otherwise closing the
 * wrapper closes it.  writable: the store will be written.
 * Errors: -EFAULT (NULL), -EINVAL (bad ops or ABI; a built-in store
 * already taken), -EACCES (writable, on a built-in read-only store), -ENOMEM.
 */
struct umapd_store;
int store_plugin_wrap(struct umapd_store *pub, bool writable, struct store **out);
void store_plugin_unwrap(struct store *s);
/* A public store over s (owned from now on).  -ENOMEM. */
int store_plugin_expose(struct store *s, bool rdonly, struct umapd_store **out);
/* The internal store behind a public built-in store, or NULL if p is not one. */
struct store *store_plugin_builtin(struct umapd_store *p);
/* Was p made read-only (UMAPD_STORE_RDONLY)? */
bool store_plugin_rdonly(struct umapd_store *p);

#endif
