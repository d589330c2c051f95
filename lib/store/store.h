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
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct store;

/*
 * Where a byte range of a store lives, for I/O engines that submit reads
 * and writes themselves (io_uring, libaio) instead of calling read/write.
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

#endif
