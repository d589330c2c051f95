/*
 * The file store: pread/pwrite on a duplicate of the caller's descriptor,
 * optionally opened O_DIRECT.
 *
 * O_DIRECT wants buffer, offset and length aligned, but the engine's last
 * page of a file is often cut short at the end of the data, and a user's
 * buffer need not be aligned at all.  Such ranges go through an aligned
 * bounce buffer: reads read the aligned span around them; writes read the
 * partial blocks at either edge, overlay the new bytes, write whole blocks
 * and, if that put the end of the file past what was written, truncate it
 * back, so the file's size is what a buffered write would have left.
 *
 * That truncation must never cut a write that another thread made at the
 * same time, so: every direct write that is unaligned, or that ends past
 * known_end (a lower bound on the file's size), is made under f->lock, and
 * the truncation never goes below known_end.  Aligned writes inside
 * known_end need no lock.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

/* Largest bounce buffer one direct read or write allocates. */
#define BOUNCE_MAX ((size_t)1 << 20)

struct store_file {
	struct store base;
	int fd;
	bool is_blockdev;
	bool direct;               /* fd is O_DIRECT */
	unsigned align;            /* direct: alignment of buffer, offset and length */
	pthread_mutex_t lock;      /* direct: serialises unaligned and extending writes */
	_Atomic uint64_t known_end; /* direct: the file is at least this long; raised under lock */
};

static inline bool is_aligned(uint64_t v, unsigned a)
{
	return (v & (a - 1)) == 0;
}

/* Read len bytes at off; past the end of the file (a short read) zeros. */
static int read_full(int fd, char *p, size_t len, uint64_t off, bool direct)
{
	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* An O_DIRECT read comes up short only at the end of the file,
		 * and a further read at the unaligned offset would fail. */
		if (n == 0 || (direct && (size_t)n < len)) {
			memset(p + n, 0, len - (size_t)n);
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int write_full(int fd, const char *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* no progress and no error: do not spin */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static void *bounce_alloc(unsigned align, size_t len)
{
	void *b = NULL;

	return posix_memalign(&b, align < 4096 ? 4096 : align, len) == 0 ? b : NULL;
}

/* Largest span a bounce buffer covers: BOUNCE_MAX, or one block if bigger. */
static size_t bounce_span(unsigned a)
{
	return BOUNCE_MAX > a ? BOUNCE_MAX : a;
}

static int direct_read(struct store_file *f, char *p, size_t len, uint64_t off)
{
	unsigned a = f->align;
	size_t cap = bounce_span(a);
	char *b;
	int ret = 0;

	if (is_aligned((uintptr_t)p, a) && is_aligned(len, a) && is_aligned(off, a))
		return read_full(f->fd, p, len, off, true);
	b = bounce_alloc(a, cap);
	if (!b)
		return -ENOMEM;
	while (len > 0 && ret == 0) {
		size_t head = (size_t)(off & (a - 1));
		size_t n = len < cap - head ? len : cap - head;
		size_t span = (head + n + a - 1) & ~(size_t)(a - 1);

		ret = read_full(f->fd, b, span, off - head, true);
		if (ret == 0) {
			memcpy(p, b + head, n);
			p += n;
			len -= n;
			off += n;
		}
	}
	free(b);
	return ret;
}

/* Under f->lock: write [off, off+len) through the bounce buffer if needed,
 * then cut the file back to what was written if whole blocks overshot. */
static int direct_write_locked(struct store_file *f, const char *p, size_t len, uint64_t off)
{
	unsigned a = f->align;
	size_t cap = bounce_span(a);
	uint64_t end = off + len, size = 0, want;
	bool overshot = false;
	struct stat st;
	char *b = NULL;
	int ret = 0;

	if (!f->is_blockdev) {
		if (fstat(f->fd, &st) < 0)
			return -errno;
		size = (uint64_t)st.st_size;
	}
	if (is_aligned((uintptr_t)p, a) && is_aligned(len, a) && is_aligned(off, a)) {
		ret = write_full(f->fd, p, len, off);
	} else {
		b = bounce_alloc(a, cap);
		if (!b)
			return -ENOMEM;
		while (len > 0 && ret == 0) {
			size_t head = (size_t)(off & (a - 1));
			size_t n = len < cap - head ? len : cap - head;
			size_t span = (head + n + a - 1) & ~(size_t)(a - 1);

			/* Partial blocks at the edges keep the bytes around ours. */
			if (head != 0 || span != head + n)
				ret = read_full(f->fd, b, span, off - head, true);
			if (ret == 0) {
				memcpy(b + head, p, n);
				ret = write_full(f->fd, b, span, off - head);
			}
			if (off - head + span > end)
				overshot = true;
			p += n;
			len -= n;
			off += n;
		}
		free(b);
	}
	if (f->is_blockdev)
		return ret;
	/* Even after a failure: whole blocks may have gone out past the end. */
	want = size > end ? size : end;
	if (ret < 0)
		want = size;
	if (want < atomic_load_explicit(&f->known_end, memory_order_relaxed))
		want = atomic_load_explicit(&f->known_end, memory_order_relaxed);
	if (overshot && ftruncate(f->fd, (off_t)want) < 0 && ret == 0)
		ret = -errno;
	if (ret == 0)
		atomic_store_explicit(&f->known_end, want, memory_order_release);
	return ret;
}

static int direct_write(struct store_file *f, const char *p, size_t len, uint64_t off)
{
	unsigned a = f->align;
	int ret;

	if (is_aligned((uintptr_t)p, a) && is_aligned(len, a) && is_aligned(off, a) &&
	    off + len <= atomic_load_explicit(&f->known_end, memory_order_acquire))
		return write_full(f->fd, p, len, off);
	pthread_mutex_lock(&f->lock);
	ret = direct_write_locked(f, p, len, off);
	pthread_mutex_unlock(&f->lock);
	return ret;
}

static int file_read(struct store *s, void *buf, size_t len, uint64_t off)
{
	struct store_file *f = (struct store_file *)s;

	if (f->direct)
		return direct_read(f, buf, len, off);
	return read_full(f->fd, buf, len, off, false);
}

static int file_write(struct store *s, const void *buf, size_t len, uint64_t off)
{
	struct store_file *f = (struct store_file *)s;

	if (f->direct)
		return direct_write(f, buf, len, off);
	return write_full(f->fd, buf, len, off);
}

static int file_sync(struct store *s)
{
	struct store_file *f = (struct store_file *)s;

	return fdatasync(f->fd) < 0 ? -errno : 0;
}

static int64_t file_size(struct store *s)
{
	struct store_file *f = (struct store_file *)s;
	struct stat st;

	if (f->is_blockdev) {
		uint64_t bytes;

		if (ioctl(f->fd, BLKGETSIZE64, &bytes) < 0)
			return -errno;
		return (int64_t)bytes;
	}
	if (fstat(f->fd, &st) < 0)
		return -errno;
	return st.st_size;
}

/*
 * The whole range lives in our one descriptor.  With O_DIRECT, an unaligned
 * offset, and a write that is unaligned or extends the file, need the
 * bounce buffer or the lock of file_write: use that.
 */
static int file_extent(struct store *s, uint64_t off, size_t len, int write, struct store_extent *x)
{
	struct store_file *f = (struct store_file *)s;

	if (len == 0)
		return -EINVAL;
	if (f->direct) {
		if (!is_aligned(off, f->align))
			return -EOPNOTSUPP;
		if (write && (!is_aligned(len, f->align) ||
			      off + len > atomic_load_explicit(&f->known_end, memory_order_acquire)))
			return -EOPNOTSUPP;
	}
	x->fd = f->fd;
	x->off = off;
	x->len = len;
	x->align = f->direct ? f->align : 0;
	return 0;
}

static void file_close(struct store *s)
{
	struct store_file *f = (struct store_file *)s;

	close(f->fd);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static const struct store_ops file_ops = {
	.name = "file",
	.read = file_read,
	.write = file_write,
	.sync = file_sync,
	.size = file_size,
	.close = file_close,
	.extent = file_extent,
};

/*
 * The O_DIRECT alignment of fd: what statx reports where the kernel and
 * file system say (STATX_DIOALIGN), else the logical block size of a block
 * device, else 4096, which every file system we know accepts.
 */
static unsigned dio_align(int fd, bool is_blockdev)
{
	struct statx stx;
	unsigned a = 0;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN) &&
	    stx.stx_dio_offset_align != 0)
		a = stx.stx_dio_offset_align > stx.stx_dio_mem_align ? stx.stx_dio_offset_align
								      : stx.stx_dio_mem_align;
	if (a == 0 && is_blockdev) {
		int bs = 0;

		if (ioctl(fd, BLKSSZGET, &bs) == 0 && bs > 0)
			a = (unsigned)bs;
	}
	if (a == 0 || (a & (a - 1)) != 0)
		a = 4096;
	return a;
}

int store_file_open(int fd, int writable, int direct, struct store **out)
{
	struct store_file *f;
	struct stat st;
	int fl;

	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -EBADF;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return -ENODEV;
	/* As mmap(2): reading needs read access, writing needs O_RDWR, and an
	 * O_APPEND descriptor cannot be written at an offset. */
	if ((fl & O_ACCMODE) == O_WRONLY || (writable && (fl & O_ACCMODE) != O_RDWR))
		return -EACCES;
	if (writable && (fl & O_APPEND))
		return -EACCES;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	if (direct && !(fl & O_DIRECT)) {
		/* A new open file description: O_DIRECT on a dup would change
		 * the caller's descriptor too. */
		char path[64];

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		f->fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_DIRECT | O_CLOEXEC);
	} else {
		f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	}
	if (f->fd < 0) {
		int err = -errno;

		free(f);
		return err;
	}
	f->base.ops = &file_ops;
	f->is_blockdev = S_ISBLK(st.st_mode);
	f->direct = direct || (fl & O_DIRECT);
	if (f->direct) {
		f->align = dio_align(f->fd, f->is_blockdev);
		if (f->is_blockdev) {
			uint64_t bytes = 0;

			if (ioctl(f->fd, BLKGETSIZE64, &bytes) == 0)
				atomic_init(&f->known_end, bytes);
		} else {
			atomic_init(&f->known_end, (uint64_t)st.st_size);
		}
	}
	pthread_mutex_init(&f->lock, NULL);
	*out = &f->base;
	return 0;
}
