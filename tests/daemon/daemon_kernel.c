/*
 * daemon.kernel - what the daemon relies on the kernel for, on shmem with
 * userfaultfd (docs/daemon-protocol.md section 2), checked on the running
 * kernel with two mappings A and B of one memfd, each registered with its
 * own userfaultfd (MISSING | WP | MINOR), as two clients would be:
 *
 *  1. a read in A of an absent page raises MISSING; UFFDIO_COPY with
 *     MODE_WP fills the memfd;
 *  2. a read in B of that page raises MINOR; UFFDIO_CONTINUE with MODE_WP
 *     maps it, with A's bytes;
 *  3. a write in A, then in B, raises a WP fault in each;
 *  4. after write-protecting both and punching the page out of the memfd,
 *     a read in A raises MISSING again (the uffd-wp markers change nothing);
 *  5. UFFDIO_CONTINUE at a page absent from the memfd fails with EFAULT;
 *  6. UFFDIO_COPY onto a page present in the memfd fails with EEXIST;
 *  7. pread of the memfd at a hole returns zeros and allocates nothing;
 *  8. registering a MAP_SHARED mapping of a read-only descriptor of the
 *     memfd fails with EPERM (why every client gets a writable one).
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "umapd_test.h"

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif

#define PS 4096
#define NP 8

enum kind { K_MISSING = 1, K_MINOR, K_WP };

static int ua, ub, mfd;
static char *A, *B;
static _Atomic int last_kind[2], nfaults;
static _Atomic bool stop;

static int mk_uffd(void)
{
	int u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM };

	if (u < 0)
		t_skip("no userfaultfd: %s", strerror(errno));
	if (ioctl(u, UFFDIO_API, &api) < 0)
		t_skip("this kernel lacks minor faults or write protection on shmem (UFFDIO_API: %s)", strerror(errno));
	return u;
}

static int reg(int u, char *p)
{
	struct uffdio_register r = { .range = { (unsigned long)p, NP * PS },
				     .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP |
					     UFFDIO_REGISTER_MODE_MINOR };

	return ioctl(u, UFFDIO_REGISTER, &r) == 0 ? 0 : -errno;
}

/* The daemon's rules, minus the bookkeeping. */
static void *server(void *arg)
{
	static char page[PS];

	(void)arg;
	memset(page, 'X', sizeof(page));
	while (!atomic_load(&stop)) {
		struct pollfd p[2] = { { ua, POLLIN, 0 }, { ub, POLLIN, 0 } };

		if (poll(p, 2, 50) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			struct uffd_msg m;

			if (!(p[i].revents & POLLIN) || read(p[i].fd, &m, sizeof(m)) != sizeof(m) ||
			    m.event != UFFD_EVENT_PAGEFAULT)
				continue;
			unsigned long long f = m.arg.pagefault.flags;
			unsigned long a = (unsigned long)m.arg.pagefault.address & ~(PS - 1ul);
			int ret;

			if (f & UFFD_PAGEFAULT_FLAG_WP) {
				struct uffdio_writeprotect w = { .range = { a, PS }, .mode = 0 };

				last_kind[i] = K_WP;
				ret = ioctl(p[i].fd, UFFDIO_WRITEPROTECT, &w);
			} else if (f & UFFD_PAGEFAULT_FLAG_MINOR) {
				struct uffdio_continue c = { .range = { a, PS },
							     .mode = (f & UFFD_PAGEFAULT_FLAG_WRITE) ? 0 : UFFDIO_CONTINUE_MODE_WP };

				last_kind[i] = K_MINOR;
				ret = ioctl(p[i].fd, UFFDIO_CONTINUE, &c);
			} else {
				struct uffdio_copy c = { .dst = a, .src = (unsigned long)page, .len = PS,
							 .mode = (f & UFFD_PAGEFAULT_FLAG_WRITE) ? 0 : UFFDIO_COPY_MODE_WP };

				last_kind[i] = K_MISSING;
				ret = ioctl(p[i].fd, UFFDIO_COPY, &c);
			}
			if (ret < 0) {
				struct uffdio_range r = { a, PS };

				ioctl(p[i].fd, UFFDIO_WAKE, &r);
			}
			atomic_fetch_add(&nfaults, 1);
		}
	}
	return NULL;
}

static const char *kname(int k)
{
	return k == K_MISSING ? "MISSING" : k == K_MINOR ? "MINOR" : k == K_WP ? "WP" : "none";
}

#define EXPECT_FAULT(side, want, what)                                                                  \
	do {                                                                                             \
		int k_ = atomic_exchange(&last_kind[side], 0);                                           \
		if (k_ != (want))                                                                        \
			t_fail("%s: %s fault in %c, want %s", what, kname(k_), (side) ? 'B' : 'A', kname(want)); \
	} while (0)

static void wp(int u, char *p, bool on)
{
	struct uffdio_writeprotect w = { .range = { (unsigned long)p, PS }, .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };

	if (ioctl(u, UFFDIO_WRITEPROTECT, &w) < 0)
		t_fail("UFFDIO_WRITEPROTECT: %s", strerror(errno));
}

int main(void)
{
	pthread_t th;
	volatile char c;
	char buf[PS], path[64];
	int ret, ro;

	t_init("daemon.kernel", 30);
	mfd = memfd_create("daemon-kernel", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, NP * PS) < 0)
		t_fail("memfd: %s", strerror(errno));
	A = mmap(NULL, NP * PS, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	B = mmap(NULL, NP * PS, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	T_CHECK(A != MAP_FAILED && B != MAP_FAILED, "mmap");
	ua = mk_uffd();
	ub = mk_uffd();
	if ((ret = reg(ua, A)) < 0 || (ret = reg(ub, B)) < 0)
		t_skip("cannot register shmem for MISSING | WP | MINOR: %s", t_errname(-ret));
	pthread_create(&th, NULL, server, NULL);

	t_step("1. read in A");
	c = A[0];
	EXPECT_FAULT(0, K_MISSING, "first read of a page");
	T_CHECK(c == 'X', "A[0] = %#x after UFFDIO_COPY", c);
	t_step("2. read in B");
	c = B[0];
	EXPECT_FAULT(1, K_MINOR, "read of a page in the memfd through the other mapping");
	T_CHECK(c == 'X', "B[0] = %#x after UFFDIO_CONTINUE", c);
	t_step("3. writes");
	A[0] = 'a';
	EXPECT_FAULT(0, K_WP, "first write in A");
	B[1] = 'b';
	EXPECT_FAULT(1, K_WP, "first write in B");
	T_CHECK(A[1] == 'b' && B[0] == 'a', "the mappings do not share the page");
	t_step("4. protect, punch, read again");
	wp(ua, A, true);
	wp(ub, B, true);
	T_OK(fallocate(mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PS));
	c = A[0];
	EXPECT_FAULT(0, K_MISSING, "read after write-protect and punch");
	T_CHECK(c == 'X', "A[0] = %#x after the refill", c);
	t_step("5. CONTINUE at an absent page");
	{
		struct uffdio_continue cc = { .range = { (unsigned long)A + 3 * PS, PS }, .mode = 0 };

		errno = 0;
		ret = ioctl(ua, UFFDIO_CONTINUE, &cc);
		T_CHECK(ret < 0 && errno == EFAULT, "UFFDIO_CONTINUE at an absent page: %d %s, want EFAULT", ret,
			t_errname(errno));
	}
	t_step("6. COPY onto a page in the memfd");
	memset(buf, 'P', sizeof(buf));
	T_CHECK(pwrite(mfd, buf, PS, 4 * PS) == PS, "pwrite");
	{
		struct uffdio_copy cp = { .dst = (unsigned long)A + 4 * PS, .src = (unsigned long)buf, .len = PS, .mode = 0 };

		errno = 0;
		ret = ioctl(ua, UFFDIO_COPY, &cp);
		T_CHECK(ret < 0 && errno == EEXIST, "UFFDIO_COPY onto a page in the memfd: %d %s, want EEXIST", ret,
			t_errname(errno));
	}
	c = A[4 * PS];
	EXPECT_FAULT(0, K_MINOR, "touch of a page written into the memfd");
	T_CHECK(c == 'P', "A[4 pages] = %#x", c);
	t_step("7. pread at a hole");
	memset(buf, 1, sizeof(buf));
	T_CHECK(pread(mfd, buf, PS, 6 * PS) == PS, "pread");
	t_check_zero("pread at a hole", buf, PS, 6 * PS);
	errno = 0;
	T_CHECK(lseek(mfd, 6 * PS, SEEK_DATA) < 0 && errno == ENXIO, "pread at a hole allocated a page");
	t_step("8. register a read-only shared mapping");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	{
		char *r = mmap(NULL, NP * PS, PROT_READ, MAP_SHARED, ro, 0);
		int u = mk_uffd();

		T_CHECK(r != MAP_FAILED, "mmap read-only");
		ret = reg(u, r);
		T_CHECK(ret == -EPERM, "UFFDIO_REGISTER of a read-only shared mapping: %s, want EPERM", t_errname(-ret));
		close(u);
		munmap(r, NP * PS);
	}
	atomic_store(&stop, true);
	pthread_join(th, NULL);
	t_pass("shmem + userfaultfd as the daemon needs it: MISSING then MINOR across mappings, WP per mapping, "
	       "MISSING after punch, CONTINUE EFAULT at a hole, COPY EEXIST on a present page, pread allocates "
	       "nothing, read-only mappings not registrable (%d faults)",
	       atomic_load(&nfaults));
}
