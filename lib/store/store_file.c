/* The file store: pread/pwrite on a duplicate of the caller's descriptor. */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

struct store_file {
	struct store base;
	int fd;
	int is_blockdev;
};

static int file_read(struct store *s, void *buf, size_t len, uint64_t off)
{
	struct store_file *f = (struct store_file *)s;
	char *p = buf;

	while (len > 0) {
		ssize_t n = pread(f->fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) { /* end of file: the rest reads as zeros */
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int file_write(struct store *s, const void *buf, size_t len, uint64_t off)
{
	struct store_file *f = (struct store_file *)s;
	const char *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(f->fd, p, len, (off_t)off);

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

static void file_close(struct store *s)
{
	struct store_file *f = (struct store_file *)s;

	close(f->fd);
	free(f);
}

static const struct store_ops file_ops = {
	.name = "file",
	.read = file_read,
	.write = file_write,
	.sync = file_sync,
	.size = file_size,
	.close = file_close,
};

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
	*out = &f->base;
	return 0;
}
