/*
 * read() and write() on a file that has paged mappings.
 *
 * The kernel keeps a file's mappings and its read()/write() coherent
 * through the page cache; a umapd region holds private copies of pages.
 * Programs such as SQLite and LMDB read through a mapping and write with
 * pwrite(), so for files we page: before a read or write, dirty pages of a
 * writable shared mapping covering the range are written back; after a
 * write, pages covering the range are dropped (the next access reads the
 * file again), and parts of a mapping the file has grown into are paged.
 * All of it under the files lock, so one such I/O at a time per process.
 *
 * Not seen: I/O the C library does internally (stdio's buffered writes go
 * through its own write, not ours), sendfile/splice/copy_file_range, and
 * other processes writing the file.  docs/preload.md lists this.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload/preload.h"

#define EXPORT __attribute__((visibility("default")))

enum io_kind { IO_WRITE, IO_PWRITE, IO_WRITEV, IO_PWRITEV, IO_PWRITEV2, IO_READ, IO_PREAD, IO_READV,
	       IO_PREADV, IO_PREADV2, IO_FTRUNCATE, IO_FALLOCATE };

struct io_call {
	enum io_kind kind;
	int fd;
	void *buf;
	size_t n;
	const struct iovec *iov;
	int iovcnt;
	off_t off;
	off_t len;  /* fallocate */
	int flags;  /* *v2, fallocate mode */
};

static ssize_t run(struct io_call *c)
{
	struct pre_real *r = &pre_real;

	switch (c->kind) {
	case IO_WRITE:
		return r->write ? r->write(c->fd, c->buf, c->n) : syscall(SYS_write, c->fd, c->buf, c->n);
	case IO_PWRITE:
		return r->pwrite ? r->pwrite(c->fd, c->buf, c->n, c->off)
				 : syscall(SYS_pwrite64, c->fd, c->buf, c->n, c->off);
	case IO_WRITEV:
		return r->writev ? r->writev(c->fd, c->iov, c->iovcnt) : syscall(SYS_writev, c->fd, c->iov, c->iovcnt);
	case IO_PWRITEV:
		return r->pwritev ? r->pwritev(c->fd, c->iov, c->iovcnt, c->off)
				  : syscall(SYS_pwritev, c->fd, c->iov, c->iovcnt, c->off, 0);
	case IO_PWRITEV2:
		return r->pwritev2 ? r->pwritev2(c->fd, c->iov, c->iovcnt, c->off, c->flags)
				   : syscall(SYS_pwritev2, c->fd, c->iov, c->iovcnt, c->off, 0, c->flags);
	case IO_READ:
		return r->read ? r->read(c->fd, c->buf, c->n) : syscall(SYS_read, c->fd, c->buf, c->n);
	case IO_PREAD:
		return r->pread ? r->pread(c->fd, c->buf, c->n, c->off)
				: syscall(SYS_pread64, c->fd, c->buf, c->n, c->off);
	case IO_READV:
		return r->readv ? r->readv(c->fd, c->iov, c->iovcnt) : syscall(SYS_readv, c->fd, c->iov, c->iovcnt);
	case IO_PREADV:
		return r->preadv ? r->preadv(c->fd, c->iov, c->iovcnt, c->off)
				 : syscall(SYS_preadv, c->fd, c->iov, c->iovcnt, c->off, 0);
	case IO_PREADV2:
		return r->preadv2 ? r->preadv2(c->fd, c->iov, c->iovcnt, c->off, c->flags)
				  : syscall(SYS_preadv2, c->fd, c->iov, c->iovcnt, c->off, 0, c->flags);
	case IO_FTRUNCATE:
		return r->ftruncate ? r->ftruncate(c->fd, c->off) : syscall(SYS_ftruncate, c->fd, c->off);
	case IO_FALLOCATE:
		return r->fallocate ? r->fallocate(c->fd, c->flags, c->off, c->len)
				    : syscall(SYS_fallocate, c->fd, c->flags, c->off, c->len);
	}
	errno = EINVAL;
	return -1;
}

static size_t iov_len(const struct iovec *iov, int n)
{
	size_t t = 0;

	for (int i = 0; iov && i < n; i++)
		t += iov[i].iov_len;
	return t;
}

static ssize_t coherent(struct io_call *c)
{
	bool write = c->kind < IO_READ || c->kind >= IO_FTRUNCATE;
	bool positioned = c->kind == IO_PWRITE || c->kind == IO_PWRITEV || c->kind == IO_PREAD ||
			  c->kind == IO_PREADV || ((c->kind == IO_PWRITEV2 || c->kind == IO_PREADV2) && c->off != -1);
	struct pre_io io = { .write = write };
	struct stat st;
	ssize_t ret;
	int e;

	pre_resolve();
	if (pre_bypass() || pre.child || atomic_load_explicit(&pre_files_count, memory_order_acquire) == 0)
		return run(c);
	if (fstat(c->fd, &st) < 0 || !S_ISREG(st.st_mode))
		return run(c);
	io.dev = st.st_dev;
	io.ino = st.st_ino;
	switch (c->kind) {
	case IO_FTRUNCATE:
		/* Everything past the smaller of the two sizes changes. */
		io.off = (uint64_t)(c->off < st.st_size ? c->off : st.st_size);
		io.len = UINT64_MAX - io.off;
		io.truncate = c->off < st.st_size;
		break;
	case IO_FALLOCATE:
		io.off = (uint64_t)c->off;
		io.len = (uint64_t)c->len;
		break;
	default:
		io.len = c->buf ? c->n : iov_len(c->iov, c->iovcnt);
		if (positioned) {
			io.off = (uint64_t)c->off;
		} else {
			int fl = fcntl(c->fd, F_GETFL);
			off_t cur = (write && fl >= 0 && (fl & O_APPEND)) ? st.st_size : lseek(c->fd, 0, SEEK_CUR);

			if (cur < 0)
				return run(c);
			io.off = (uint64_t)cur;
		}
	}
	pre_files_lock();
	pre_files_before_io(&io);
	if (!io.found) {
		pre_files_unlock();
		return run(c);
	}
	ret = run(c);
	e = errno;
	if (write && ret >= 0) {
		if (c->kind != IO_FTRUNCATE && c->kind != IO_FALLOCATE)
			io.len = (uint64_t)ret;
		if (io.len > 0)
			pre_files_after_write(&io);
	}
	pre_files_unlock();
	errno = e;
	return ret;
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	struct io_call c = { .kind = IO_WRITE, .fd = fd, .buf = (void *)buf, .n = n };

	return coherent(&c);
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	struct io_call c = { .kind = IO_PWRITE, .fd = fd, .buf = (void *)buf, .n = n, .off = off };

	return coherent(&c);
}
EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) __attribute__((alias("pwrite")));

EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct io_call c = { .kind = IO_WRITEV, .fd = fd, .iov = iov, .iovcnt = iovcnt };

	return coherent(&c);
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	struct io_call c = { .kind = IO_PWRITEV, .fd = fd, .iov = iov, .iovcnt = iovcnt, .off = off };

	return coherent(&c);
}
EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off) __attribute__((alias("pwritev")));

EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags)
{
	struct io_call c = { .kind = IO_PWRITEV2, .fd = fd, .iov = iov, .iovcnt = iovcnt, .off = off, .flags = flags };

	return coherent(&c);
}
EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags)
	__attribute__((alias("pwritev2")));

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	struct io_call c = { .kind = IO_READ, .fd = fd, .buf = buf, .n = n };

	return coherent(&c);
}

EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	struct io_call c = { .kind = IO_PREAD, .fd = fd, .buf = buf, .n = n, .off = off };

	return coherent(&c);
}
EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off) __attribute__((alias("pread")));

EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	struct io_call c = { .kind = IO_READV, .fd = fd, .iov = iov, .iovcnt = iovcnt };

	return coherent(&c);
}

EXPORT ssize_t preadv(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	struct io_call c = { .kind = IO_PREADV, .fd = fd, .iov = iov, .iovcnt = iovcnt, .off = off };

	return coherent(&c);
}
EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int iovcnt, off_t off) __attribute__((alias("preadv")));

EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags)
{
	struct io_call c = { .kind = IO_PREADV2, .fd = fd, .iov = iov, .iovcnt = iovcnt, .off = off, .flags = flags };

	return coherent(&c);
}
EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags)
	__attribute__((alias("preadv2")));

EXPORT int ftruncate(int fd, off_t len)
{
	struct io_call c = { .kind = IO_FTRUNCATE, .fd = fd, .off = len };

	return (int)coherent(&c);
}
EXPORT int ftruncate64(int fd, off_t len) __attribute__((alias("ftruncate")));

EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
	struct io_call c = { .kind = IO_FALLOCATE, .fd = fd, .off = off, .len = len, .flags = mode };

	return (int)coherent(&c);
}
EXPORT int fallocate64(int fd, int mode, off_t off, off_t len) __attribute__((alias("fallocate")));
