/*
 * probe - umapd_kernel_probe() against the kernel as the test sees it.
 *
 * The test asks the kernel itself (a raw UFFDIO_API on a userfaultfd of its
 * own, the sysctls, uname) and compares: every feature flag must match the
 * raw bits, every "works" flag the test's own attempt.  Every write-out
 * path must have a result; on a kernel past the gup rework (5.10 and
 * later) none may hang or fail, and the buffered pwrite path (the file
 * store's) must be SAFE, with the page seen write-protected.  The second
 * call must return the identical, cached result quickly; the first call
 * must leave no descriptor and no child process behind.  With "threads" as
 * argument (a fresh process, so nothing cached yet), several threads make
 * the first call at once and must all get the same result.
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "umapd_test.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* Feature bits by their kernel values (Debian 12's header lacks the newer). */
#define F_WP (1ull << 0)
#define F_EVENT_FORK (1ull << 1)
#define F_EVENT_REMAP (1ull << 2)
#define F_EVENT_REMOVE (1ull << 3)
#define F_EVENT_UNMAP (1ull << 6)
#define F_MINOR_SHMEM (1ull << 10)
#define F_EXACT_ADDRESS (1ull << 11)
#define F_WP_HUGETLBFS_SHMEM (1ull << 12)
#define F_WP_UNPOPULATED (1ull << 13)
#define F_POISON (1ull << 14)
#define F_MOVE (1ull << 16)

static int open_dev(int flags)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -errno;
	int fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
	int e = errno;
	close(dev);
	return fd >= 0 ? fd : -e;
}

static int open_sys(int flags)
{
	int fd = (int)syscall(SYS_userfaultfd, flags);
	return fd >= 0 ? fd : -errno;
}

static int read_int(const char *path)
{
	FILE *f = fopen(path, "r");
	int v = -1;
	if (f == NULL)
		return -1;
	if (fscanf(f, "%d", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

static int count_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 4096; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

static int kernel_at_least(const char *rel, int maj, int min)
{
	int a = 0, b = 0;
	if (sscanf(rel, "%d.%d", &a, &b) != 2)
		return 0;
	return a > maj || (a == maj && b >= min);
}

static const char *res_name(int r)
{
	switch (r) {
	case UMAPD_PROBE_SAFE: return "SAFE";
	case UMAPD_PROBE_HANGS: return "HANGS";
	case UMAPD_PROBE_ERROR: return "ERROR";
	case UMAPD_PROBE_UNAVAILABLE: return "UNAVAILABLE";
	default: return "?";
	}
}

#define NTHREADS 4
static struct umapd_kernel_info th_info[NTHREADS];
static int th_ret[NTHREADS];

static void *th_main(void *arg)
{
	int i = (int)(intptr_t)arg;
	th_ret[i] = umapd_kernel_probe(&th_info[i]) == 0 ? 0 : errno;
	return NULL;
}

static int threads_mode(void)
{
	pthread_t t[NTHREADS];
	t_init("probe/threads", 60);
	t_step("%d threads call umapd_kernel_probe at once", NTHREADS);
	for (int i = 0; i < NTHREADS; i++)
		if (pthread_create(&t[i], NULL, th_main, (void *)(intptr_t)i) != 0)
			t_fail("pthread_create failed");
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < NTHREADS; i++) {
		T_CHECK(th_ret[i] == 0, "thread %d: umapd_kernel_probe failed: %s", i, t_errname(th_ret[i]));
		if (memcmp(&th_info[i], &th_info[0], sizeof(th_info[0])) != 0)
			t_fail("thread %d got a different result than thread 0", i);
	}
	t_pass("%d concurrent first calls got the same result", NTHREADS);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "threads") == 0)
		return threads_mode();

	t_init("probe", 60);

	/* What the kernel says to us directly. */
	t_step("raw userfaultfd queries");
	int flags = O_CLOEXEC | O_NONBLOCK;
	int dfd = open_dev(flags), sfd = open_sys(flags), ufd = open_sys(flags | UFFD_USER_MODE_ONLY);
	int qfd = dfd >= 0 ? dfd : sfd >= 0 ? sfd : ufd;
	uint64_t raw = 0;
	if (qfd >= 0) {
		struct uffdio_api api = { .api = UFFD_API, .features = 0 };
		if (ioctl(qfd, UFFDIO_API, &api) != 0)
			t_fail("raw UFFDIO_API failed: %s", t_errname(errno));
		raw = api.features;
	}
	struct utsname un;
	T_OK(uname(&un));

	t_step("first umapd_kernel_probe");
	int fds_before = count_fds();
	struct umapd_kernel_info a, b;
	memset(&a, 0xa5, sizeof(a));
	uint64_t t0 = t_now_ns();
	T_OK(umapd_kernel_probe(&a));
	uint64_t first_ns = t_now_ns() - t0;
	int fds_after = count_fds();
	T_CHECK(fds_after == fds_before, "the probe leaked descriptors: %d open before, %d after",
		fds_before, fds_after);
	errno = 0;
	T_CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD,
		"the probe left a child process behind (waitpid: %s)", t_errname(errno));

	t_step("kernel, settings and features");
	T_CHECK(strcmp(a.release, un.release) == 0, "release \"%s\", uname says \"%s\"", a.release, un.release);
	T_CHECK(a.dev_userfaultfd == (dfd >= 0), "dev_userfaultfd %d, but opening it here %s",
		a.dev_userfaultfd, dfd >= 0 ? "worked" : t_errname(-dfd));
	T_CHECK(a.dev_userfaultfd || a.dev_userfaultfd_error == -dfd, "dev_userfaultfd_error %s, here %s",
		t_errname(a.dev_userfaultfd_error), t_errname(-dfd));
	T_CHECK(a.syscall_userfaultfd == (sfd >= 0), "syscall_userfaultfd %d, here %s",
		a.syscall_userfaultfd, sfd >= 0 ? "worked" : t_errname(-sfd));
	T_CHECK(a.user_mode_only == (ufd >= 0), "user_mode_only %d, here %s", a.user_mode_only,
		ufd >= 0 ? "worked" : t_errname(-ufd));
	T_CHECK((a.uffd_error == 0) == (qfd >= 0), "uffd_error %s, but here a userfaultfd %s",
		t_errname(a.uffd_error), qfd >= 0 ? "could be made" : "could not be made");
	T_CHECK(a.uffd_features == raw, "uffd_features %#llx, raw UFFDIO_API says %#llx",
		(unsigned long long)a.uffd_features, (unsigned long long)raw);
	const struct {
		const char *name;
		int got;
		uint64_t bit;
	} feats[] = {
		{ "feat_wp", a.feat_wp, F_WP },
		{ "feat_wp_unpopulated", a.feat_wp_unpopulated, F_WP_UNPOPULATED },
		{ "feat_event_fork", a.feat_event_fork, F_EVENT_FORK },
		{ "feat_event_remap", a.feat_event_remap, F_EVENT_REMAP },
		{ "feat_event_remove", a.feat_event_remove, F_EVENT_REMOVE },
		{ "feat_event_unmap", a.feat_event_unmap, F_EVENT_UNMAP },
		{ "feat_poison", a.feat_poison, F_POISON },
		{ "feat_move", a.feat_move, F_MOVE },
		{ "feat_wp_hugetlbfs_shmem", a.feat_wp_hugetlbfs_shmem, F_WP_HUGETLBFS_SHMEM },
		{ "feat_minor_shmem", a.feat_minor_shmem, F_MINOR_SHMEM },
		{ "feat_exact_address", a.feat_exact_address, F_EXACT_ADDRESS },
	};
	for (size_t i = 0; i < sizeof(feats) / sizeof(feats[0]); i++)
		T_CHECK(feats[i].got == ((raw & feats[i].bit) != 0), "%s is %d, raw bit %#llx is %s",
			feats[i].name, feats[i].got, (unsigned long long)feats[i].bit,
			(raw & feats[i].bit) ? "set" : "clear");
	int uu = read_int("/proc/sys/vm/unprivileged_userfaultfd");
	int iud = read_int("/proc/sys/kernel/io_uring_disabled");
	T_CHECK(a.unprivileged_userfaultfd == uu, "unprivileged_userfaultfd %d, /proc says %d",
		a.unprivileged_userfaultfd, uu);
	T_CHECK(a.io_uring_disabled == iud, "io_uring_disabled %d, /proc says %d", a.io_uring_disabled, iud);
	T_CHECK(a.timeout_ms > 0, "timeout_ms %d", a.timeout_ms);
	T_CHECK(a.tmp_dir[0] == '/', "tmp_dir \"%s\"", a.tmp_dir);
	for (size_t i = 0; i < sizeof(a.reserved) / sizeof(a.reserved[0]); i++)
		T_CHECK(a.reserved[i] == 0, "reserved[%zu] is not zero", i);

	t_step("write-out paths");
	char summary[512];
	size_t sl = 0;
	for (int p = 0; p < 8; p++) {
		const struct umapd_io_probe *io = &a.io[p];
		if (p >= UMAPD_IO_PATHS) {
			T_CHECK(io->result == 0 && io->error == 0, "io[%d] past UMAPD_IO_PATHS is not zero", p);
			continue;
		}
		T_CHECK(io->result >= UMAPD_PROBE_SAFE && io->result <= UMAPD_PROBE_UNAVAILABLE,
			"io[%d].result %d is not a result", p, io->result);
		T_CHECK((io->result == UMAPD_PROBE_SAFE || io->result == UMAPD_PROBE_HANGS) == (io->error == 0),
			"io[%d] is %s with error %s", p, res_name(io->result), t_errname(io->error));
		if (a.uffd_error != 0)
			T_CHECK(io->result == UMAPD_PROBE_UNAVAILABLE && io->error == a.uffd_error,
				"no userfaultfd (%s), yet io[%d] is %s", t_errname(a.uffd_error), p,
				res_name(io->result));
		sl += (size_t)snprintf(summary + sl, sizeof(summary) - sl, "%s%d:%s", p ? " " : "", p,
				       res_name(io->result));
	}
	if (a.uffd_error != 0 || !a.feat_wp)
		t_skip("no userfaultfd with write-protect faults here (%s): the write-out checks could not run",
		       t_errname(a.uffd_error ? a.uffd_error : EOPNOTSUPP));
	const struct umapd_io_probe *pw = &a.io[UMAPD_IO_PWRITE];
	T_CHECK(pw->result == UMAPD_PROBE_SAFE, "buffered pwrite of a write-protected page: %s %s on kernel %s",
		res_name(pw->result), t_errname(pw->error), a.release);
	T_CHECK(a.evict_auto == UMAPD_EVICT_DIRECT, "evict_auto %d although pwrite is SAFE", a.evict_auto);
	if (kernel_at_least(a.release, 5, 14))
		T_CHECK(pw->wp_seen == 1, "pagemap did not show the probe page write-protected (wp_seen %d)",
			pw->wp_seen);
	if (kernel_at_least(a.release, 5, 10))
		for (int p = 0; p < UMAPD_IO_PATHS; p++)
			T_CHECK(a.io[p].result == UMAPD_PROBE_SAFE || a.io[p].result == UMAPD_PROBE_UNAVAILABLE,
				"path %d: %s %s on kernel %s, past the gup rework (seed 001)", p,
				res_name(a.io[p].result), t_errname(a.io[p].error), a.release);

	t_step("second (cached) call");
	memset(&b, 0x5a, sizeof(b));
	t0 = t_now_ns();
	T_OK(umapd_kernel_probe(&b));
	uint64_t second_ns = t_now_ns() - t0;
	T_CHECK(memcmp(&a, &b, sizeof(a)) == 0, "the second call returned a different result");
	T_CHECK(second_ns < 5000000ull * t_time_scale(), "the second call took %.3f ms (first %.3f ms): not cached?",
		second_ns / 1e6, first_ns / 1e6);
	T_ERR(umapd_kernel_probe(NULL), EFAULT);

	t_step("concurrent first calls in a fresh process");
	char *err = NULL;
	int st = t_reexec("threads", NULL, 60, &err);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		t_fail("threads mode: %s\n%s", t_wait_str(st), err ? err : "");
	free(err);

	t_pass("kernel %s: features %#llx match UFFDIO_API, paths [%s], pwrite SAFE, first call %.1f ms, "
	       "cached %.1f us",
	       a.release, (unsigned long long)raw, summary, first_ns / 1e6, second_ns / 1e3);
}
