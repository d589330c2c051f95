/*
 * lib/uffd - the kernel boundary: everything umapd asks of userfaultfd.
 *
 * Each call returns 0 (or a count) on success and a negative errno on
 * failure, after normalising the kernel's answers:
 *   -EAGAIN  the mm is changing (fork, mremap, munmap, MADV_DONTNEED in
 *            flight with events enabled): retry after events are read
 *   -EEXIST  a page in the range is already present: wake the waiter
 *   -ENOENT  the range is no longer registered (unmapped)
 *   -ESRCH   the process owning the mm is gone
 * Nothing here logs except uffd_open(), which explains permission errors.
 */
#ifndef UMAPD_UFFD_H
#define UMAPD_UFFD_H

#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Feature bits newer than Debian 12's kernel headers. */
#ifndef UFFD_FEATURE_EXACT_ADDRESS
#define UFFD_FEATURE_EXACT_ADDRESS (1 << 11)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
/* UFFDIO_MOVE (Linux 6.8), for headers older than the running kernel. */
#ifndef UFFDIO_MOVE
struct uffdio_move {
	uint64_t dst;
	uint64_t src;
	uint64_t len;
	uint64_t mode;
	int64_t move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct uffdio_move)
#define UFFDIO_MOVE_MODE_DONTWAKE ((uint64_t)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((uint64_t)1 << 1)
#endif

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

struct uffd {
	int fd;
	uint64_t features; /* negotiated with UFFDIO_API */
	bool can_wp;       /* PAGEFAULT_FLAG_WP present: dirty tracking possible */
};

/*
 * Open a userfaultfd (through /dev/userfaultfd, else the syscall), in
 * non-blocking close-on-exec mode, and negotiate the features in `want`
 * that the kernel has.  user_mode_only: ask only for faults raised in user
 * mode (allowed to unprivileged users even when vm.unprivileged_userfaultfd
 * is 0).  On EPERM logs why and how to allow it.
 */
int uffd_open(struct uffd *u, uint64_t want, bool user_mode_only);
void uffd_close(struct uffd *u);

/* The UFFDIO_API handshake on a raw userfaultfd: ask for `features`, learn
 * in *got what the kernel enabled (all it offers when features is 0). */
int uffd_api(int fd, uint64_t features, uint64_t *got);

/* Register [start, start+len) for missing faults, and write-protect faults if wp. */
int uffd_register(struct uffd *u, uintptr_t start, size_t len, bool wp);
int uffd_unregister(struct uffd *u, uintptr_t start, size_t len);

/*
 * Install len bytes from src at dst.  wp: install write-protected.
 * dontwake: do not wake threads waiting on the range.  On a partial copy,
 * *copied (if not NULL) says how many bytes were installed before the error.
 */
int uffd_copy(struct uffd *u, uintptr_t dst, const void *src, size_t len, bool wp, bool dontwake,
	      size_t *copied);

/*
 * Move the pages of [src, src+len) to dst (UFFDIO_MOVE, Linux 6.8+; dst in
 * a registered range, empty).  allow_holes: holes in src count as moved,
 * else they stop the move with -ENOENT.  -EBUSY: a
 * page is pinned (DMA or gup in flight) or shared; *moved says how many
 * bytes were moved before the error.  -EOPNOTSUPP without the feature.
 */
int uffd_move(struct uffd *u, uintptr_t dst, uintptr_t src, size_t len, bool allow_holes, size_t *moved);

/* Install zero pages over a range (wakes waiters). */
int uffd_zeropage(struct uffd *u, uintptr_t start, size_t len);

/* Write-protect (wp) or unprotect (!wp, which also wakes unless dontwake) a range. */
int uffd_writeprotect(struct uffd *u, uintptr_t start, size_t len, bool wp, bool dontwake);

/*
 * Mark a range poisoned (UFFD_FEATURE_POISON, Linux 6.6+): touching it
 * raises SIGBUS, as a failing read of an mmap'd file does.  -EOPNOTSUPP
 * when the kernel lacks it.
 */
int uffd_poison(struct uffd *u, uintptr_t start, size_t len);

/* Wake threads blocked on faults in the range. */
int uffd_wake(struct uffd *u, uintptr_t start, size_t len);

/* An answer that means there is nothing left to do: the range is not
 * registered (any more, or not yet: -ENOENT, -EINVAL) or the process that
 * owns the mm is gone (-ESRCH). */
static inline bool uffd_gone(int ret)
{
	return ret == -ENOENT || ret == -EINVAL || ret == -ESRCH;
}

/*
 * Read up to max messages without blocking.  Returns the number read (0 if
 * none are pending) or a negative errno.
 */
int uffd_read_msgs(struct uffd *u, struct uffd_msg *msgs, int max);

#endif /* UMAPD_UFFD_H */
