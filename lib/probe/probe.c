/*
 * The kernel probe: userfaultfd features and settings, and, per write-out
 * path, whether writing a present, write-protected page registered with
 * userfaultfd completes on this kernel (see include/umapd.h).
 *
 * Each write-out check runs in a forked child so that a hang costs a kill,
 * not the process.  The child closes every descriptor it inherited (it must
 * not hold the engine's userfaultfd or the application's files), opens a
 * userfaultfd of its own, installs one page write-protected with no thread
 * to serve its faults, writes it out through the path under test, reads
 * the file back, and sends a struct probe_msg through a pipe.  The parent
 * waits on all the pipes with one deadline and kills the children that
 * have not answered.  The child uses no locks and no malloc (it may be the
 * child of a multi-threaded process), only system calls, liburing and
 * libaio, and leaves with _exit().
 */
#include "probe/probe.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libaio.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uffd/uffd.h"
#include "util/log.h"

#define API __attribute__((visibility("default")))

/* The public structures are ABI: growing them means using reserved[]. */
_Static_assert(sizeof(struct umapd_io_probe) == 24, "struct umapd_io_probe changed size");
_Static_assert(sizeof(struct umapd_kernel_info) == 768, "struct umapd_kernel_info changed size");

#define PM_UFFD_WP (1ull << 57) /* /proc/<pid>/pagemap: pte is uffd-wp protected */
#define REAP_WAIT_MS 2000      /* how long a killed child is given to go away */

static const char *const path_names[UMAPD_IO_PATHS] = {
	[UMAPD_IO_PWRITE] = "pwrite",
	[UMAPD_IO_PWRITE_DIRECT] = "pwrite+O_DIRECT",
	[UMAPD_IO_URING] = "io_uring",
	[UMAPD_IO_URING_DIRECT] = "io_uring+O_DIRECT",
	[UMAPD_IO_AIO_DIRECT] = "libaio+O_DIRECT",
};

/* ulog_errname() knows the engine's errors; the probe reports a few more. */
static const char *errname(int err)
{
	const char *n = strerrorname_np(err);

	return n ? n : "E?";
}

const char *probe_path_name(int io_path)
{
	return io_path >= 0 && io_path < UMAPD_IO_PATHS ? path_names[io_path] : "?";
}

const char *probe_result_name(int result)
{
	switch (result) {
	case UMAPD_PROBE_SAFE: return "safe";
	case UMAPD_PROBE_HANGS: return "hangs";
	case UMAPD_PROBE_ERROR: return "error";
	case UMAPD_PROBE_UNAVAILABLE: return "unavailable";
	default: return "not probed";
	}
}

static bool path_direct(int path)
{
	return path == UMAPD_IO_PWRITE_DIRECT || path == UMAPD_IO_URING_DIRECT ||
	       path == UMAPD_IO_AIO_DIRECT;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --- userfaultfd creation (parent and child) ------------------------------ */

/* A userfaultfd through /dev/userfaultfd: fd or -errno. */
static int new_uffd_dev(int flags)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	int fd, err;

	if (dev < 0)
		return -errno;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
	err = errno;
	close(dev);
	return fd >= 0 ? fd : -err;
}

/* A userfaultfd through the system call: fd or -errno. */
static int new_uffd_sys(int flags)
{
	int fd = (int)syscall(SYS_userfaultfd, flags);

	return fd >= 0 ? fd : -errno;
}

/* --- the parent's part: features and settings ------------------------------ */

/* An integer sysctl from /proc/sys, or -1. */
static int read_sysctl(const char *path)
{
	char buf[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *end;
	long v = strtol(buf, &end, 10);

	return end == buf ? -1 : (int)v;
}

static void probe_features(struct umapd_kernel_info *ki)
{
	int flags = O_CLOEXEC | O_NONBLOCK;
	int fd, query = -1;

	fd = new_uffd_dev(flags);
	ki->dev_userfaultfd = fd >= 0;
	ki->dev_userfaultfd_error = fd >= 0 ? 0 : -fd;
	if (fd >= 0)
		query = fd;

	fd = new_uffd_sys(flags);
	ki->syscall_userfaultfd = fd >= 0;
	ki->syscall_userfaultfd_error = fd >= 0 ? 0 : -fd;
	if (fd >= 0 && query < 0)
		query = fd;
	else if (fd >= 0)
		close(fd);

	fd = new_uffd_sys(flags | UFFD_USER_MODE_ONLY);
	ki->user_mode_only = fd >= 0;
	ki->user_mode_only_error = fd >= 0 ? 0 : -fd;
	if (fd >= 0 && query < 0)
		query = fd;
	else if (fd >= 0)
		close(fd);

	if (query < 0) {
		/* Why none: ENOSYS wins (no userfaultfd here), else the answer of
		 * the system call in full mode (EPERM, usually). */
		if (ki->syscall_userfaultfd_error == ENOSYS || ki->user_mode_only_error == ENOSYS)
			ki->uffd_error = ENOSYS;
		else
			ki->uffd_error = ki->syscall_userfaultfd_error;
		return;
	}
	/* UFFDIO_API with no features asked answers with all it offers. */
	int ret = uffd_api(query, 0, &ki->uffd_features);

	close(query);
	if (ret < 0) {
		ki->uffd_error = -ret;
		return;
	}
	uint64_t f = ki->uffd_features;

	ki->feat_wp = (f & UFFD_FEATURE_PAGEFAULT_FLAG_WP) != 0;
	ki->feat_wp_unpopulated = (f & UFFD_FEATURE_WP_UNPOPULATED) != 0;
	ki->feat_event_fork = (f & UFFD_FEATURE_EVENT_FORK) != 0;
	ki->feat_event_remap = (f & UFFD_FEATURE_EVENT_REMAP) != 0;
	ki->feat_event_remove = (f & UFFD_FEATURE_EVENT_REMOVE) != 0;
	ki->feat_event_unmap = (f & UFFD_FEATURE_EVENT_UNMAP) != 0;
	ki->feat_poison = (f & UFFD_FEATURE_POISON) != 0;
	ki->feat_move = (f & UFFD_FEATURE_MOVE) != 0;
	ki->feat_wp_hugetlbfs_shmem = (f & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) != 0;
	ki->feat_minor_shmem = (f & UFFD_FEATURE_MINOR_SHMEM) != 0;
	ki->feat_exact_address = (f & UFFD_FEATURE_EXACT_ADDRESS) != 0;
}

static void fs_name(long magic, char *out, size_t len)
{
	static const struct {
		unsigned long magic;
		const char *name;
	} fs[] = {
		{ 0xEF53, "ext4" },       { 0x58465342, "xfs" },      { 0x9123683E, "btrfs" },
		{ 0x01021994, "tmpfs" },  { 0x6969, "nfs" },          { 0x794c7630, "overlayfs" },
		{ 0x2fc12fc1, "zfs" },    { 0xF2F52010, "f2fs" },     { 0x65735546, "fuse" },
		{ 0x00c36400, "ceph" },   { 0x0BD00BD0, "lustre" },   { 0x47504653, "gpfs" },
		{ 0x01021997, "9p" },     { 0xFF534D42, "cifs" },     { 0x73717368, "squashfs" },
		{ 0x858458f6, "ramfs" },  { 0x5346544e, "ntfs" },     { 0x4d44, "vfat" },
	};

	for (size_t i = 0; i < sizeof(fs) / sizeof(fs[0]); i++)
		if ((unsigned long)magic == fs[i].magic || ((unsigned long)magic & 0xffffffffu) == fs[i].magic) {
			snprintf(out, len, "%s", fs[i].name);
			return;
		}
	snprintf(out, len, "0x%lx", (unsigned long)magic & 0xffffffffu);
}

/* The mkostemp() template for a temporary file in dir. */
static int tmp_template(const char *dir, char *out, size_t len)
{
	return (size_t)snprintf(out, len, "%s/umapd-probe.XXXXXX", dir) < len ? 0 : -ENAMETOOLONG;
}

/*
 * A temporary file in dir, already unlinked: O_TMPFILE, else mkostemp on a
 * copy of tmpl (from tmp_template(); "" if that failed).  extra: O_DIRECT or 0.  Returns the
 * descriptor or -errno (the second attempt's, which is the one that says
 * why).  Safe in the child: system calls only.
 */
static int open_tmp(const char *dir, const char *tmpl, int extra)
{
	char name[PATH_MAX];
	size_t len = strlen(tmpl);
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC | extra, 0600);

	if (fd >= 0)
		return fd;
	if (len == 0 || len >= sizeof(name))
		return -ENAMETOOLONG;
	memcpy(name, tmpl, len + 1);
	fd = mkostemp(name, O_CLOEXEC | extra);
	if (fd < 0)
		return -errno;
	unlink(name);
	return fd;
}

/* --- the child's part: one write-out check ------------------------------ */

struct probe_msg {
	int result;
	int error;
	int wp_seen;
	int pad;
	uint64_t ns;
};

struct child_args {
	int path;
	bool hang;           /* self-test: store to the page first */
	bool user_mode_only; /* open the userfaultfd with UFFD_USER_MODE_ONLY */
	bool use_dev;        /* through /dev/userfaultfd */
	const char *dir;
	const char *tmpl;    /* tmp_template(dir), made before the fork */
	size_t psize;
	pid_t parent;
};

static __attribute__((noreturn)) void child_reply(int wfd, struct probe_msg *m, int result, int error)
{
	m->result = result;
	m->error = error;
	if (write(wfd, m, sizeof(*m)) < 0) {
		/* The parent has gone or given up: nothing to tell. */
	}
	_exit(0);
}

static int pagemap_wp(uintptr_t addr, size_t psize)
{
	uint64_t e;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = pread(fd, &e, sizeof(e), (off_t)(addr / psize * sizeof(e)));
	close(fd);
	if (n != (ssize_t)sizeof(e))
		return -1;
	return (e & PM_UFFD_WP) != 0;
}

static __attribute__((noreturn)) void child_main(int wfd, const struct child_args *a)
{
	struct probe_msg m = { .wp_seen = -1 };
	size_t ps = a->psize;
	struct io_uring ring;
	io_context_t aio = 0;
	int fd, ufd, ret;
	bool direct = path_direct(a->path);

	/* The raw system call: a sanitizer's prctl() takes a lock that another
	 * thread of the parent may have held at the fork. */
	syscall(SYS_prctl, PR_SET_NAME, "umapd-probe", 0, 0, 0);
	/* A hung check dies with the parent (thread) that waits for it. */
	syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != a->parent)
		_exit(0);
	/* Hold nothing of the parent's: its userfaultfd, files, sockets. */
	if (wfd > 3)
		close_range(3, (unsigned)wfd - 1, 0);
	close_range((unsigned)wfd + 1, ~0u, 0);

	/* The path's machinery first: an unavailable path is not an error. */
	fd = open_tmp(a->dir, a->tmpl, direct ? O_DIRECT : 0);
	if (fd < 0)
		child_reply(wfd, &m, direct ? UMAPD_PROBE_UNAVAILABLE : UMAPD_PROBE_ERROR, -fd);
	if (a->path == UMAPD_IO_URING || a->path == UMAPD_IO_URING_DIRECT) {
		ret = io_uring_queue_init(2, &ring, 0);
		if (ret < 0)
			child_reply(wfd, &m, UMAPD_PROBE_UNAVAILABLE, -ret);
	} else if (a->path == UMAPD_IO_AIO_DIRECT) {
		ret = io_setup(1, &aio);
		if (ret < 0)
			child_reply(wfd, &m, UMAPD_PROBE_UNAVAILABLE, -ret);
	}

	/* A fresh userfaultfd with write-protect faults, and nobody reading it. */
	int uflags = O_CLOEXEC | (a->user_mode_only ? UFFD_USER_MODE_ONLY : 0);

	ufd = a->use_dev ? new_uffd_dev(uflags) : new_uffd_sys(uflags);
	if (ufd < 0)
		child_reply(wfd, &m, UMAPD_PROBE_UNAVAILABLE, -ufd);
	uint64_t got = 0;

	ret = uffd_api(ufd, UFFD_FEATURE_PAGEFAULT_FLAG_WP, &got);
	if (ret < 0)
		child_reply(wfd, &m, ret == -EINVAL ? UMAPD_PROBE_UNAVAILABLE : UMAPD_PROBE_ERROR,
			    ret == -EINVAL ? EOPNOTSUPP : -ret);
	if (!(got & UFFD_FEATURE_PAGEFAULT_FLAG_WP))
		child_reply(wfd, &m, UMAPD_PROBE_UNAVAILABLE, EOPNOTSUPP);

	/* The page: private anonymous, registered MISSING | WP, installed
	 * write-protected from a source holding a pattern. */
	unsigned char *page = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *src = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *back = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (page == MAP_FAILED || src == MAP_FAILED || back == MAP_FAILED)
		child_reply(wfd, &m, UMAPD_PROBE_ERROR, errno);
	for (size_t i = 0; i < ps; i++)
		src[i] = (unsigned char)(i * 31u + 7u + (unsigned)a->path);
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)page, .len = ps },
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	};

	if (ioctl(ufd, UFFDIO_REGISTER, &reg) < 0)
		child_reply(wfd, &m, UMAPD_PROBE_ERROR, errno);
	struct uffdio_copy cp = {
		.dst = (uintptr_t)page,
		.src = (uintptr_t)src,
		.len = ps,
		.mode = UFFDIO_COPY_MODE_WP,
	};

	if (ioctl(ufd, UFFDIO_COPY, &cp) < 0)
		child_reply(wfd, &m, UMAPD_PROBE_ERROR, errno);
	if (cp.copy != (int64_t)ps)
		child_reply(wfd, &m, UMAPD_PROBE_ERROR, cp.copy < 0 ? (int)-cp.copy : EIO);
	m.wp_seen = pagemap_wp((uintptr_t)page, ps);

	if (a->hang)
		*(volatile unsigned char *)page = 1; /* write-protect fault, never served */

	/* The write-out under test. */
	uint64_t t0 = now_ns();
	ssize_t n = -1;
	int err = 0;

	switch (a->path) {
	case UMAPD_IO_PWRITE:
	case UMAPD_IO_PWRITE_DIRECT:
		n = pwrite(fd, page, ps, 0);
		err = n < 0 ? errno : 0;
		break;
	case UMAPD_IO_URING:
	case UMAPD_IO_URING_DIRECT: {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		struct io_uring_cqe *cqe;

		io_uring_prep_write(sqe, fd, page, (unsigned)ps, 0);
		ret = io_uring_submit(&ring);
		if (ret == 1)
			ret = io_uring_wait_cqe(&ring, &cqe);
		else if (ret >= 0)
			ret = -EIO;
		if (ret < 0) {
			err = -ret;
		} else {
			n = cqe->res;
			err = n < 0 ? (int)-n : 0;
			io_uring_cqe_seen(&ring, cqe);
		}
		break;
	}
	case UMAPD_IO_AIO_DIRECT: {
		struct iocb cb, *cbs[1] = { &cb };
		struct io_event ev;

		io_prep_pwrite(&cb, fd, page, ps, 0);
		ret = io_submit(aio, 1, cbs);
		if (ret == 1)
			ret = io_getevents(aio, 1, 1, &ev, NULL);
		else if (ret >= 0)
			ret = -EIO;
		if (ret < 0) {
			err = -ret;
		} else if (ret != 1) {
			err = EIO;
		} else {
			n = (ssize_t)ev.res;
			err = n < 0 ? (int)-n : 0;
		}
		break;
	}
	}
	m.ns = now_ns() - t0;
	if (err != 0)
		child_reply(wfd, &m, UMAPD_PROBE_ERROR, err);
	if (n != (ssize_t)ps)
		child_reply(wfd, &m, UMAPD_PROBE_ERROR, EIO);

	/* The file must hold the page's bytes. */
	n = pread(fd, back, ps, 0);
	if (n < 0)
		child_reply(wfd, &m, UMAPD_PROBE_ERROR, errno);
	if (n != (ssize_t)ps || memcmp(back, src, ps) != 0)
		child_reply(wfd, &m, UMAPD_PROBE_ERROR, EBADMSG);
	child_reply(wfd, &m, UMAPD_PROBE_SAFE, 0);
}

/* --- the parent's part: children under a watchdog -------------------------- */

struct child {
	pid_t pid;
	int rfd;  /* read end of its pipe, -1 once answered */
	int path;
};

/*
 * Reap a child, waiting at most until the deadline; false if it is still
 * there.  A pidfd says when it has exited (Linux 5.3+); without one, poll
 * waitpid with growing sleeps.
 */
static bool reap(pid_t pid, uint64_t deadline)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	long nap_us = 20;
	bool gone = false;

	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);

		/* ECHILD: SIGCHLD is ignored, or someone else reaped it. */
		if (r == pid || (r < 0 && errno != EINTR)) {
			gone = true;
			break;
		}
		uint64_t now = now_ns();

		if (now >= deadline)
			break;
		if (pfd >= 0) {
			struct pollfd p = { .fd = pfd, .events = POLLIN };

			poll(&p, 1, (int)((deadline - now + 999999) / 1000000));
		} else {
			struct timespec ts = { 0, nap_us * 1000 };

			nanosleep(&ts, NULL);
			nap_us = nap_us < 5000 ? nap_us * 2 : 5000;
		}
	}
	if (pfd >= 0)
		close(pfd);
	return gone;
}

static void run_checks(struct umapd_kernel_info *ki, struct child *ch, int nch, int timeout_ms)
{
	uint64_t start = now_ns(), deadline = start + (uint64_t)timeout_ms * 1000000ull;
	int pending = nch;

	while (pending > 0) {
		struct pollfd pfd[UMAPD_IO_PATHS];
		int map[UMAPD_IO_PATHS], np = 0;
		uint64_t now = now_ns();

		if (now >= deadline)
			break;
		for (int i = 0; i < nch; i++)
			if (ch[i].rfd >= 0) {
				pfd[np] = (struct pollfd){ .fd = ch[i].rfd, .events = POLLIN };
				map[np++] = i;
			}
		int r = poll(pfd, (nfds_t)np, (int)((deadline - now + 999999) / 1000000));

		if (r < 0 && errno != EINTR) {
			ulog_warn("kernel probe: poll: %s", errname(errno));
			break;
		}
		for (int j = 0; r > 0 && j < np; j++) {
			if (!pfd[j].revents)
				continue;
			struct child *c = &ch[map[j]];
			struct umapd_io_probe *io = &ki->io[c->path];
			struct probe_msg m;
			ssize_t n;

			do
				n = read(c->rfd, &m, sizeof(m));
			while (n < 0 && errno == EINTR);
			if (n == (ssize_t)sizeof(m)) {
				io->result = m.result;
				io->error = m.error;
				io->wp_seen = m.wp_seen;
				io->elapsed_ns = m.ns;
			} else {
				/* Closed without an answer: the child died. */
				io->result = UMAPD_PROBE_ERROR;
				io->error = ECHILD;
				io->wp_seen = -1;
				io->elapsed_ns = now_ns() - start;
			}
			close(c->rfd);
			c->rfd = -1;
			pending--;
		}
	}
	/* Whoever has not answered hangs. */
	for (int i = 0; i < nch; i++) {
		if (ch[i].rfd < 0)
			continue;
		struct umapd_io_probe *io = &ki->io[ch[i].path];

		kill(ch[i].pid, SIGKILL);
		close(ch[i].rfd);
		ch[i].rfd = -1;
		io->result = UMAPD_PROBE_HANGS;
		io->error = 0;
		io->wp_seen = -1;
		io->elapsed_ns = (uint64_t)timeout_ms * 1000000ull;
	}
	uint64_t reap_deadline = now_ns() + REAP_WAIT_MS * 1000000ull;

	for (int i = 0; i < nch; i++)
		if (!reap(ch[i].pid, reap_deadline))
			ulog_warn("kernel probe: check %s (pid %d) does not die after SIGKILL; left behind",
				  probe_path_name(ch[i].path), (int)ch[i].pid);
}

int probe_run(struct umapd_kernel_info *ki, const struct probe_opts *o)
{
	struct probe_opts none = { 0 };
	struct child ch[UMAPD_IO_PATHS];
	struct utsname un;
	struct statfs sf;
	int nch = 0, ret = 0;

	if (!o)
		o = &none;
	memset(ki, 0, sizeof(*ki));
	ki->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : PROBE_TIMEOUT_MS;
	if (uname(&un) == 0)
		snprintf(ki->release, sizeof(ki->release), "%s", un.release);
	ki->unprivileged_userfaultfd = read_sysctl("/proc/sys/vm/unprivileged_userfaultfd");
	ki->io_uring_disabled = read_sysctl("/proc/sys/kernel/io_uring_disabled");
	probe_features(ki);

	/* The file goes to the first directory that takes one: the one asked
	 * for, else $TMPDIR, /var/tmp, /tmp.  (A broken TMPDIR must not pass
	 * for a kernel that cannot write out protected pages.) */
	const char *cand[4] = { o->tmp_dir, getenv("TMPDIR"), "/var/tmp", "/tmp" };
	const char *dir = NULL;
	char tmpl[PATH_MAX];
	int dfd = -ENOENT;

	for (int i = 0; i < 4 && dfd < 0; i++) {
		if (!cand[i] || !*cand[i])
			continue;
		if (!dir)
			dir = cand[i]; /* reported if none works */
		if (tmp_template(cand[i], tmpl, sizeof(tmpl)) < 0)
			continue;
		dfd = open_tmp(cand[i], tmpl, 0);
		if (dfd >= 0) {
			close(dfd);
			dir = cand[i];
		}
	}
	if (dfd < 0 && tmp_template(dir, tmpl, sizeof(tmpl)) < 0)
		tmpl[0] = '\0'; /* open_tmp() then says ENAMETOOLONG if O_TMPFILE fails */
	snprintf(ki->tmp_dir, sizeof(ki->tmp_dir), "%s", dir);
	if (statfs(dir, &sf) == 0)
		fs_name((long)sf.f_type, ki->fs_type, sizeof(ki->fs_type));
	else
		snprintf(ki->fs_type, sizeof(ki->fs_type), "?");
	dfd = open_tmp(dir, tmpl, O_DIRECT);
	ki->direct_io_error = dfd < 0 ? -dfd : 0;
	if (dfd >= 0)
		close(dfd);

	/* The checks use a userfaultfd the way the engine would get one: with
	 * kernel-mode faults when permitted, user-mode-only otherwise. */
	struct child_args a = {
		.use_dev = ki->dev_userfaultfd,
		.user_mode_only = !ki->dev_userfaultfd && !ki->syscall_userfaultfd,
		.dir = dir,
		.tmpl = tmpl,
		.psize = (size_t)sysconf(_SC_PAGESIZE),
		.parent = getpid(),
	};

	ki->io_user_mode_only = ki->uffd_error == 0 && a.user_mode_only;
	for (int p = 0; p < UMAPD_IO_PATHS; p++) {
		struct umapd_io_probe *io = &ki->io[p];
		int fds[2];

		io->wp_seen = -1;
		if (ki->uffd_error != 0 || !ki->feat_wp) {
			io->result = UMAPD_PROBE_UNAVAILABLE;
			io->error = ki->uffd_error != 0 ? ki->uffd_error : EOPNOTSUPP;
			continue;
		}
		if (path_direct(p) && ki->direct_io_error != 0) {
			io->result = UMAPD_PROBE_UNAVAILABLE;
			io->error = ki->direct_io_error;
			continue;
		}
		if (pipe2(fds, O_CLOEXEC) < 0) {
			ret = -errno;
			break;
		}
		a.path = p;
		a.hang = (o->hang_mask >> p) & 1u;
		pid_t pid = fork();

		if (pid == 0) {
			close(fds[0]);
			child_main(fds[1], &a);
		}
		int err = errno;

		close(fds[1]);
		if (pid < 0) {
			close(fds[0]);
			ret = -err;
			break;
		}
		ch[nch++] = (struct child){ .pid = pid, .rfd = fds[0], .path = p };
	}
	if (ret < 0) {
		/* Could not start every check: stop those that did start. */
		for (int i = 0; i < nch; i++) {
			kill(ch[i].pid, SIGKILL);
			close(ch[i].rfd);
			reap(ch[i].pid, now_ns() + REAP_WAIT_MS * 1000000ull);
		}
		ulog_warn("kernel probe: cannot start its checks: %s", errname(-ret));
		return ret == -ENOMEM ? -ENOMEM : -EAGAIN;
	}
	run_checks(ki, ch, nch, ki->timeout_ms);
	ki->evict_auto = ki->io[UMAPD_IO_PWRITE].result == UMAPD_PROBE_SAFE ? UMAPD_EVICT_DIRECT
									     : UMAPD_EVICT_BOUNCE;
	for (int p = 0; p < UMAPD_IO_PATHS; p++)
		ulog_debug("kernel probe: %s: %s%s%s", path_names[p], probe_result_name(ki->io[p].result),
			   ki->io[p].error ? " " : "", ki->io[p].error ? errname(ki->io[p].error) : "");
	return 0;
}

/* --- the cache ------------------------------------------------------------ */

/* cache_lock protects cache_valid and cache; cache never changes once valid. */
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static bool cache_valid;
static struct umapd_kernel_info cache;

int probe_cached(struct umapd_kernel_info *out)
{
	int ret = 0;

	pthread_mutex_lock(&cache_lock);
	if (!cache_valid) {
		ret = probe_run(&cache, NULL);
		cache_valid = ret == 0;
	}
	if (ret == 0)
		memcpy(out, &cache, sizeof(*out));
	pthread_mutex_unlock(&cache_lock);
	return ret;
}

/* --- the eviction mode ---------------------------------------------------- */

int probe_evict_copy_parse(const char *value, char *why, size_t whylen)
{
	if (!value || !*value || strcasecmp(value, "auto") == 0)
		return 0;
	if (strcasecmp(value, "direct") == 0)
		return PROBE_EVICT_DIRECT;
	if (strcasecmp(value, "bounce") == 0)
		return PROBE_EVICT_BOUNCE;
	if (why)
		snprintf(why, whylen, "UMAPD_EVICT_COPY=\"%s\" is invalid: expected auto, direct or bounce",
			 value);
	return -EINVAL;
}

int probe_evict_mode_for(int io_path)
{
	static atomic_flag told = ATOMIC_FLAG_INIT;
	struct umapd_kernel_info ki;
	char why[160];
	int mode, ret;

	if (io_path < 0 || io_path >= UMAPD_IO_PATHS)
		return -EINVAL;
	mode = probe_evict_copy_parse(getenv("UMAPD_EVICT_COPY"), why, sizeof(why));
	if (mode < 0) {
		ulog_error("%s", why);
		return mode;
	}
	if (mode != 0)
		return mode;
	ret = probe_cached(&ki);
	if (ret < 0) {
		if (!atomic_flag_test_and_set(&told))
			ulog_warn("the kernel probe could not run (%s): eviction copies dirty pages to a "
				  "bounce buffer before writing them (UMAPD_EVICT_COPY=auto)",
				  errname(-ret));
		return PROBE_EVICT_BOUNCE;
	}
	const struct umapd_io_probe *io = &ki.io[io_path];

	if (io->result == UMAPD_PROBE_SAFE)
		return PROBE_EVICT_DIRECT;
	if (!atomic_flag_test_and_set(&told)) {
		/* Without userfaultfd or write-protect faults this is no news;
		 * a hang or a failure is. */
		enum ulog_level lvl = io->result == UMAPD_PROBE_UNAVAILABLE ? ULOG_INFO : ULOG_WARN;

		ulog(lvl, "writing a dirty page straight from its write-protected mapping is not safe on "
			  "kernel %s (%s: %s%s%s): eviction copies it to a bounce buffer first "
			  "(UMAPD_EVICT_COPY=auto; umapd-probe shows the details)",
		     ki.release, probe_path_name(io_path), probe_result_name(io->result),
		     io->error ? " " : "", io->error ? errname(io->error) : "");
	}
	return PROBE_EVICT_BOUNCE;
}

int probe_evict_mode(void)
{
	return probe_evict_mode_for(UMAPD_IO_PWRITE);
}

/* --- public API ----------------------------------------------------------- */

/* Here rather than in api.c so that the probe stays one module; it follows
 * the same rule: negative errno in, -1 and errno out. */
API int umapd_kernel_probe(struct umapd_kernel_info *out)
{
	int ret;

	if (!out) {
		errno = EFAULT;
		return -1;
	}
	ret = probe_cached(out);
	if (ret < 0) {
		errno = -ret;
		return -1;
	}
	return 0;
}
