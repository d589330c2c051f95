#include "uffd/uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/log.h"

/* Create a raw userfaultfd: /dev/userfaultfd first, the syscall second. */
static int uffd_create(int flags, int *dev_errno)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

	if (dev >= 0) {
		int fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
		int err = errno;

		close(dev);
		if (fd >= 0)
			return fd;
		*dev_errno = err;
	} else {
		*dev_errno = errno;
	}
	int fd = (int)syscall(SYS_userfaultfd, flags);
	return fd >= 0 ? fd : -errno;
}

int uffd_api(int fd, uint64_t features, uint64_t *got)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };

	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	*got = api.features;
	return 0;
}

static void uffd_explain_eperm(int dev_errno)
{
	ulog_error("userfaultfd is not permitted for this process (/dev/userfaultfd: %s; "
		   "userfaultfd(2): EPERM). Fix one of: run as root or with CAP_SYS_PTRACE; "
		   "`sysctl -w vm.unprivileged_userfaultfd=1`; give this user read-write access "
		   "to /dev/userfaultfd (e.g. a group or ACL: setfacl -m u:$USER:rw /dev/userfaultfd); "
		   "or set UMAPD_USER_MODE_ONLY=1 to accept user-mode-only faults (then read(2)/write(2) "
		   "into not-yet-resident region memory fail with EFAULT)",
		   ulog_errname(dev_errno));
}

int uffd_open(struct uffd *u, uint64_t want, bool user_mode_only)
{
	int flags = O_CLOEXEC | O_NONBLOCK;
	int dev_errno = 0;
	uint64_t avail = 0;
	int fd, ret;

	if (user_mode_only)
		flags |= UFFD_USER_MODE_ONLY;

	/* A first descriptor learns what the kernel offers: UFFDIO_API with no
	 * features returns the full set, and may be called once per fd. */
	fd = uffd_create(flags, &dev_errno);
	if (fd < 0) {
		if (fd == -EPERM)
			uffd_explain_eperm(dev_errno);
		else
			ulog_error("cannot create a userfaultfd: %s", ulog_errname(-fd));
		return fd;
	}
	ret = uffd_api(fd, 0, &avail);
	close(fd);
	if (ret < 0) {
		ulog_error("UFFDIO_API handshake failed: %s", ulog_errname(-ret));
		return ret;
	}

	fd = uffd_create(flags, &dev_errno);
	if (fd < 0)
		return fd;
	ret = uffd_api(fd, want & avail, &u->features);
	if (ret < 0) {
		close(fd);
		ulog_error("UFFDIO_API with features %#llx failed: %s", (unsigned long long)(want & avail),
			   ulog_errname(-ret));
		return ret;
	}
	u->fd = fd;
	u->can_wp = (u->features & UFFD_FEATURE_PAGEFAULT_FLAG_WP) != 0;
	return 0;
}

void uffd_close(struct uffd *u)
{
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
}

int uffd_register(struct uffd *u, uintptr_t start, size_t len, bool wp)
{
	struct uffdio_register reg = {
		.range = { .start = start, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING | (wp ? UFFDIO_REGISTER_MODE_WP : 0),
	};

	return ioctl(u->fd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

int uffd_unregister(struct uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_range range = { .start = start, .len = len };

	return ioctl(u->fd, UFFDIO_UNREGISTER, &range) < 0 ? -errno : 0;
}

int uffd_copy(struct uffd *u, uintptr_t dst, const void *src, size_t len, bool wp, bool dontwake,
	      size_t *copied)
{
	struct uffdio_copy c = {
		.dst = dst,
		.src = (uintptr_t)src,
		.len = len,
		.mode = (wp ? UFFDIO_COPY_MODE_WP : 0) | (dontwake ? UFFDIO_COPY_MODE_DONTWAKE : 0),
	};
	int ret = ioctl(u->fd, UFFDIO_COPY, &c) < 0 ? -errno : 0;

	/* c.copy holds bytes copied, or a negative errno when nothing was. */
	if (copied)
		*copied = c.copy > 0 ? (size_t)c.copy : 0;
	if (ret == 0 && c.copy >= 0 && (size_t)c.copy < len)
		ret = -EAGAIN; /* partial copy without an error: ask to retry the rest */
	return ret;
}

int uffd_move(struct uffd *u, uintptr_t dst, uintptr_t src, size_t len, bool allow_holes, size_t *moved)
{
	struct uffdio_move m = {
		.dst = dst,
		.src = src,
		.len = len,
		.mode = UFFDIO_MOVE_MODE_DONTWAKE | (allow_holes ? UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES : 0),
	};
	int ret;

	if (!(u->features & UFFD_FEATURE_MOVE))
		return -EOPNOTSUPP;
	ret = ioctl(u->fd, UFFDIO_MOVE, &m) < 0 ? -errno : 0;
	*moved = m.move > 0 ? (size_t)m.move : 0;
	if (ret == 0 && *moved < len)
		ret = -EAGAIN;
	return ret;
}

int uffd_zeropage(struct uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_zeropage z = { .range = { .start = start, .len = len } };

	return ioctl(u->fd, UFFDIO_ZEROPAGE, &z) < 0 ? -errno : 0;
}

int uffd_writeprotect(struct uffd *u, uintptr_t start, size_t len, bool wp, bool dontwake)
{
	struct uffdio_writeprotect w = {
		.range = { .start = start, .len = len },
		.mode = (wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
			(dontwake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0),
	};

	return ioctl(u->fd, UFFDIO_WRITEPROTECT, &w) < 0 ? -errno : 0;
}

#ifndef UFFDIO_POISON
struct uffdio_poison {
	struct uffdio_range range;
	uint64_t mode;
	int64_t updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, 0x08, struct uffdio_poison)
#endif

int uffd_poison(struct uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_poison p = { .range = { .start = start, .len = len } };

	if (!(u->features & UFFD_FEATURE_POISON))
		return -EOPNOTSUPP;
	return ioctl(u->fd, UFFDIO_POISON, &p) < 0 ? -errno : 0;
}

int uffd_wake(struct uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_range range = { .start = start, .len = len };

	return ioctl(u->fd, UFFDIO_WAKE, &range) < 0 ? -errno : 0;
}

int uffd_read_msgs(struct uffd *u, struct uffd_msg *msgs, int max)
{
	for (;;) {
		ssize_t n = read(u->fd, msgs, sizeof(*msgs) * (size_t)max);

		if (n >= 0)
			return (int)(n / (ssize_t)sizeof(*msgs));
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return 0;
		return -errno;
	}
}
