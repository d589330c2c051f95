/*
 * lib/client/client.c - the client side of daemon mode.
 *
 * One connection and one userfaultfd per process.  Requests are made by
 * the calling thread, one at a time (C.rpc); the daemon never sends
 * anything unasked, so the monitor thread polls the socket only for its
 * end (POLLRDHUP) and never reads it.
 *
 * Takeover: when the socket ends, the monitor thread wakes every thread
 * blocked on a fault in our regions (UFFDIO_WAKE over each region: a fault
 * message the daemon had read but not resolved is lost, and the woken
 * thread raises it again), then serves our userfaultfd itself: missing
 * pages from the file (UFFDIO_COPY; EEXIST: another process filled the
 * memfd, UFFDIO_CONTINUE), minor faults by UFFDIO_CONTINUE, write-protect
 * faults by unprotecting.  It no longer knows which pages are dirty, so a
 * flush or unmap writes back every page present in the memfd
 * (SEEK_DATA/SEEK_HOLE) with pread from the memfd and pwrite to the file.
 */
#include "client/client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/config.h"
#include "proto/proto.h"
#include "uffd/uffd.h"
#include "umapd.h"
#include "util/log.h"

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

struct cl_region {
	uintptr_t addr;
	size_t len;   /* mapped: the requested length rounded up to psize */
	uint64_t off; /* file offset of addr */
	uint64_t psize;
	bool writable;
	int fd;    /* our dup of the backing file (takeover reads and write-back) */
	int memfd; /* the daemon's memfd (read-only for a read-only region) */
	uint64_t id;
	struct cl_region *next;
};

/*
 * C.lock protects regions, sock, takeover and the monitor's start; C.rpc
 * serialises requests (taken before C.lock when both are held).
 */
static struct {
	pthread_mutex_t lock, rpc;
	int sock;
	pid_t pid; /* the process that connected; a forked child is not connected */
	struct uffd uffd;
	uint16_t version;
	uint64_t seq;
	atomic_bool takeover;
	atomic_bool lazy_failed;
	pthread_t thr;
	bool thr_started;
	struct cl_region *regions;
	unsigned char *buf; /* takeover fill buffer (monitor thread only) */
	size_t buflen;
} C = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, -1, 0, { -1, 0, false }, 0, 0, false, false, 0,
	false, NULL, NULL, 0 };

static bool connected_locked(void)
{
	return C.sock >= 0 && C.pid == getpid() && !atomic_load_explicit(&C.takeover, memory_order_acquire);
}

static struct cl_region *find_locked(uintptr_t a)
{
	for (struct cl_region *r = C.regions; r; r = r->next)
		if (a >= r->addr && a - r->addr < r->len)
			return r;
	return NULL;
}

/* ---------------------------------------------------------------- takeover */

static int tk_continue(uintptr_t a, uint64_t len)
{
	struct uffdio_continue c = { .range = { a, len }, .mode = 0 };

	return ioctl(C.uffd.fd, UFFDIO_CONTINUE, &c) == 0 ? 0 : -errno;
}

/* Wake the threads waiting on [a, a + len) so they fault again.  The range
 * gone (-ENOENT, -EINVAL) or the process exiting (-ESRCH) needs nothing;
 * anything else is logged (a thread may then stay blocked). */
static void tk_wake(uintptr_t a, uint64_t len)
{
	int ret = uffd_wake(&C.uffd, a, len);

	if (ret < 0 && !uffd_gone(ret))
		ulog_error("daemon gone; UFFDIO_WAKE at %#lx (%llu bytes): %s", (unsigned long)a,
			   (unsigned long long)len, ulog_errname(-ret));
}

static void tk_fill(struct cl_region *r, uintptr_t a)
{
	uint64_t off = r->off + (a - r->addr), done = 0;
	int ret;

	if (C.buflen < r->psize) {
		unsigned char *b = realloc(C.buf, r->psize);

		if (!b) {
			tk_wake(a, r->psize); /* try again later */
			return;
		}
		C.buf = b;
		C.buflen = r->psize;
	}
	while (done < r->psize) {
		ssize_t n = pread(r->fd, C.buf + done, r->psize - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ulog_error("daemon gone; reading offset %llu of region %p failed: %s; the page is poisoned",
				   (unsigned long long)off, (void *)r->addr, ulog_errname(errno));
			if (uffd_poison(&C.uffd, a, r->psize) < 0)
				tk_wake(a, r->psize);
			return;
		}
		if (n == 0)
			break;
		done += (uint64_t)n;
	}
	memset(C.buf + done, 0, r->psize - done);
	ret = uffd_copy(&C.uffd, a, C.buf, r->psize, false, false, NULL);
	if (ret == -EEXIST) /* the memfd has it (another process filled it) */
		ret = tk_continue(a, r->psize);
	if (ret < 0 && ret != -ESRCH && ret != -ENOENT)
		tk_wake(a, r->psize); /* -EEXIST, -EAGAIN: it faults again if it must */
}

static void tk_serve(void)
{
	struct uffd_msg msgs[32];
	int n = uffd_read_msgs(&C.uffd, msgs, 32);

	for (int i = 0; i < n; i++) {
		uintptr_t fa = (uintptr_t)msgs[i].arg.pagefault.address, a;
		uint64_t fl = msgs[i].arg.pagefault.flags;
		struct cl_region *r;
		int ret;

		if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
			continue;
		pthread_mutex_lock(&C.lock);
		r = find_locked(fa);
		if (!r) {
			pthread_mutex_unlock(&C.lock);
			tk_wake(fa & ~(uintptr_t)4095, 4096);
			continue;
		}
		a = r->addr + ((fa - r->addr) & ~(uintptr_t)(r->psize - 1));
		if (fl & UFFD_PAGEFAULT_FLAG_WP) {
			ret = uffd_writeprotect(&C.uffd, a, r->psize, false, false);
			if (ret < 0)
				tk_wake(a, r->psize);
		} else if (fl & UFFD_PAGEFAULT_FLAG_MINOR) {
			ret = tk_continue(a, r->psize);
			if (ret == -EFAULT)
				tk_fill(r, a); /* punched since the fault was raised */
			else if (ret < 0)
				tk_wake(a, r->psize);
		} else {
			tk_fill(r, a);
		}
		pthread_mutex_unlock(&C.lock);
	}
}

/* Write back every page present in the memfd over the region (takeover:
 * we cannot know which are dirty). */
static int tk_writeback(struct cl_region *r, uint64_t from, uint64_t to)
{
	unsigned char *b;
	struct stat st;
	int first = 0;

	if (!r->writable)
		return 0;
	/*
	 * Processes in takeover write back the same memfd pages on their own.
	 * Without an order, one could pread a page, another write it and write
	 * it back, and the first then pwrite the old bytes over the new.  An
	 * exclusive lock on the range makes write-backs one at a time: the
	 * last one after a write reads what that write left.
	 */
	struct flock lk = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)from,
			    .l_len = (off_t)(to - from) };

	while (fcntl(r->fd, F_OFD_SETLKW, &lk) < 0)
		if (errno != EINTR)
			break; /* no lock support here: write back unordered */
	b = malloc(1 << 20);
	if (!b || fstat(r->fd, &st) < 0) {
		int e = b ? errno : ENOMEM;

		free(b);
		lk.l_type = F_UNLCK;
		fcntl(r->fd, F_OFD_SETLK, &lk);
		return -e;
	}
	for (off_t at = (off_t)from; at < (off_t)to;) {
		off_t d = lseek(r->memfd, at, SEEK_DATA), h;

		if (d < 0 || d >= (off_t)to)
			break; /* ENXIO: no data after at */
		h = lseek(r->memfd, d, SEEK_HOLE);
		if (h < 0 || h > (off_t)to)
			h = (off_t)to;
		if (h > st.st_size)
			h = st.st_size; /* the file never grows */
		for (off_t o = d; o < h;) {
			size_t n = (size_t)(h - o) < ((size_t)1 << 20) ? (size_t)(h - o) : ((size_t)1 << 20);
			ssize_t got = pread(r->memfd, b, n, o);

			if (got <= 0 || pwrite(r->fd, b, (size_t)got, o) != got) {
				int e = got < 0 || errno ? errno : EIO;

				if (!first)
					first = -(e ? e : EIO);
				break;
			}
			o += got;
		}
		at = h > d ? h : d + 1;
		if (h >= st.st_size)
			break;
	}
	free(b);
	lk.l_type = F_UNLCK;
	fcntl(r->fd, F_OFD_SETLK, &lk);
	return first;
}

static void enter_takeover(void)
{
	if (atomic_exchange_explicit(&C.takeover, true, memory_order_acq_rel))
		return;
	pthread_mutex_lock(&C.lock);
	ulog_warn("the umapd daemon went away: serving this process's %s faults in-process from now on",
		  C.regions ? "daemon regions'" : "(no regions)");
	for (struct cl_region *r = C.regions; r; r = r->next)
		tk_wake(r->addr, r->len);
	pthread_mutex_unlock(&C.lock);
}

static void *monitor(void *arg)
{
	(void)arg;
	for (;;) {
		bool tk = atomic_load_explicit(&C.takeover, memory_order_acquire);
		struct pollfd p[2] = { { C.sock, tk ? 0 : POLLRDHUP, 0 }, { C.uffd.fd, tk ? POLLIN : 0, 0 } };

		if (tk)
			p[0].fd = -1;
		if (poll(p, 2, -1) < 0)
			continue;
		if (!tk && (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			enter_takeover();
		if (p[1].revents & POLLIN)
			tk_serve();
	}
	return NULL;
}

/* ---------------------------------------------------------------- requests */

/* One request and its reply.  The reply's descriptors go to *fd_out (or are
 * closed); list replies are not used by the client. */
static int rpc(uint16_t type, const void *p, uint32_t len, const int *fds, int nfds, struct proto_msg *out,
	       int *fd_out)
{
	struct proto_rx rx;
	struct proto_hdr h;
	int ret;

	if (fd_out)
		*fd_out = -1;
	pthread_mutex_lock(&C.rpc);
	if (C.sock < 0 || atomic_load_explicit(&C.takeover, memory_order_acquire)) {
		pthread_mutex_unlock(&C.rpc);
		return -ENOTCONN;
	}
	proto_rx_init(&rx);
	ret = proto_send(C.sock, type, C.version ? C.version : PROTO_VERSION, ++C.seq, p, len, fds, nfds, false);
	/* Even if the send failed, a refusal the daemon sent before closing
	 * (allow_users, max_clients) may be waiting to be read. */
	if (ret == 0 || ret == -EPIPE || ret == -ECONNRESET) {
		int r2 = proto_rx_frame(C.sock, &rx);

		ret = r2 == 1 || ret == 0 ? r2 : ret;
	}
	if (ret == 1) {
		memcpy(&h, rx.hdr, sizeof(h));
		ret = proto_decode(&h, rx.payload, rx.fds, rx.nfds, out);
		if (ret == 0 && h.type == (PT_HELLO | PT_REPLY))
			C.version = out->u.hello_reply.version; /* under C.rpc, as every use */
		/* seq 0: refused before any request was read (allow_users, max_clients). */
		if (ret == 0 && h.seq != C.seq && !(h.type == PT_ERROR && h.seq == 0))
			ret = -EPROTO;
		if (ret == 0 && h.type == PT_ERROR)
			ret = -out->u.error.err;
		else if (ret == 0 && h.type != (type | PT_REPLY))
			ret = -EPROTO;
		if (ret == 0 && fd_out && rx.nfds == 1) {
			*fd_out = rx.fds[0];
			rx.nfds = 0;
		}
	}
	proto_rx_free(&rx);
	pthread_mutex_unlock(&C.rpc);
	if (ret == -EPIPE || ret == -ECONNRESET || ret == -ENOTCONN) {
		/* A session that never got going (HELLO) has nothing to take over. */
		if (type != PT_HELLO)
			enter_takeover();
		ret = type == PT_HELLO ? -ECONNREFUSED : -ENOTCONN;
	}
	return ret;
}

static const char *socket_path(const char *path)
{
	const char *e = getenv("UMAPD_SOCKET");

	if (path && *path)
		return path;
	return e && *e ? e : PROTO_DEFAULT_SOCKET;
}

static int cl_connect_locked(const char *path);

/* One connect at a time: two threads racing to connect would make two
 * sessions and keep one. */
int cl_connect(const char *path)
{
	static pthread_mutex_t connect_lock = PTHREAD_MUTEX_INITIALIZER;
	int ret;

	pthread_mutex_lock(&connect_lock);
	ret = cl_connect_locked(path);
	pthread_mutex_unlock(&connect_lock);
	return ret;
}

static int cl_connect_locked(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct proto_hello hello = { 1, PROTO_VERSION, PROTO_ROLE_CLIENT, 0 };
	struct proto_msg m;
	int s, ret, umo;

	path = socket_path(path);
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	pthread_mutex_lock(&C.lock);
	if (connected_locked()) {
		pthread_mutex_unlock(&C.lock);
		return 0;
	}
	if (atomic_load(&C.takeover) && C.pid == getpid()) {
		/* This process's regions are served in-process now; mixing them
		 * with a new daemon's would split the cache. */
		pthread_mutex_unlock(&C.lock);
		return -ENOTCONN;
	}
	/* UMAPD_USER_MODE_ONLY=1, as for in-process paging: faults raised in
	 * user mode only, which an unprivileged process may have when
	 * vm.unprivileged_userfaultfd is 0 (read(2) into a region page not
	 * yet resident then fails with EFAULT).  Read by the engine's parser,
	 * before connecting, so that a value the engine refuses is refused
	 * here too rather than taken for 0. */
	umo = cfg_env_switch("UMAPD_USER_MODE_ONLY");
	if (umo < 0) {
		pthread_mutex_unlock(&C.lock);
		return umo;
	}
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		if (s >= 0)
			close(s);
		pthread_mutex_unlock(&C.lock);
		return ret;
	}
	C.sock = s;
	C.pid = getpid();
	pthread_mutex_unlock(&C.lock);
	pthread_mutex_lock(&C.rpc);
	C.version = 0;
	pthread_mutex_unlock(&C.rpc);
	ret = rpc(PT_HELLO, &hello, sizeof(hello), NULL, 0, &m, NULL);
	pthread_mutex_lock(&C.lock);
	if (ret == 0 && C.uffd.fd < 0)
		ret = uffd_open(&C.uffd,
				UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_MINOR_SHMEM |
					UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_POISON,
				umo);
	if (ret == 0 && (!(C.uffd.features & UFFD_FEATURE_MINOR_SHMEM) ||
			 !(C.uffd.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)))
		ret = -ENOTSUP;
	if (ret == 0 && !C.thr_started) {
		sigset_t all, old;

		/* The monitor takes no signals: they belong to the application. */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		ret = -pthread_create(&C.thr, NULL, monitor, NULL);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (ret == 0) {
			pthread_detach(C.thr);
			pthread_setname_np(C.thr, "umapd-client");
			C.thr_started = true;
		}
	}
	if (ret < 0) {
		close(C.sock);
		C.sock = -1;
	}
	pthread_mutex_unlock(&C.lock);
	return ret;
}

int cl_wanted(void)
{
	const char *e;
	bool want;
	int ret;

	pthread_mutex_lock(&C.lock);
	want = connected_locked();
	pthread_mutex_unlock(&C.lock);
	if (want)
		return 1;
	e = getenv("UMAPD_SOCKET");
	if (!e || !*e || atomic_load(&C.lazy_failed) || (atomic_load(&C.takeover) && C.pid == getpid()))
		return 0;
	/* Checked here as well as in cl_connect so that an invalid value is
	 * reported as such (one line, EINVAL), not as a daemon that cannot
	 * be used followed by the engine refusing the same value. */
	if (cfg_env_switch("UMAPD_USER_MODE_ONLY") < 0)
		return -EINVAL;
	ret = cl_connect(NULL);
	if (ret < 0) {
		atomic_store(&C.lazy_failed, true);
		ulog_warn("UMAPD_SOCKET=%s: cannot use the daemon (%s); paging in-process instead", e,
			  ulog_errname(-ret));
		return 0;
	}
	return 1;
}

void *cl_map(void *addr, size_t length, int prot, int flags, int fd, off_t offset,
	     const struct umapd_region_opts *opts, int *err)
{
	size_t sys = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t psize = sys;
	struct proto_map mp;
	struct proto_msg m;
	struct cl_region *r;
	struct stat st;
	void *base = MAP_FAILED;
	int acc, ret, memfd = -1, fds[2];
	char v[32];

	if (umapd_config_get("UMAPD_PAGESIZE", v, sizeof(v)) > 0)
		psize = strtoull(v, NULL, 10);
	if (opts && opts->page_size)
		psize = opts->page_size;
	if (length == 0 || !(prot & PROT_READ) || (prot & ~(PROT_READ | PROT_WRITE)) ||
	    (flags & ~UMAPD_FIXED) || psize < sys || (psize & (psize - 1)) || psize > ((uint64_t)1 << 30) ||
	    offset < 0 || (uint64_t)offset % psize || ((flags & UMAPD_FIXED) && (!addr || (uintptr_t)addr % sys))) {
		*err = (flags & UMAPD_GROWABLE) ? -ENOTSUP : -EINVAL;
		return NULL;
	}
	if (opts) {
		for (size_t i = 0; i < sizeof(opts->reserved) / sizeof(opts->reserved[0]); i++)
			if (opts->reserved[i]) {
				*err = -EINVAL;
				return NULL;
			}
	}
	if (fstat(fd, &st) < 0) {
		*err = -EBADF;
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		*err = -ENODEV;
		return NULL;
	}
	acc = fcntl(fd, F_GETFL);
	if (acc < 0) {
		*err = -EBADF;
		return NULL;
	}
	if ((acc & (O_APPEND | O_DIRECT)) || (opts && opts->direct)) {
		/* The daemon writes back with pwrite into its own buffers: an
		 * O_APPEND or O_DIRECT file is paged in-process instead. */
		*err = -ENOTCONN;
		return NULL;
	}
	acc &= O_ACCMODE;
	if (acc == O_WRONLY || ((prot & PROT_WRITE) && acc != O_RDWR)) {
		*err = -EACCES;
		return NULL;
	}
	if (length > SIZE_MAX - psize || (uint64_t)offset > (uint64_t)INT64_MAX - length) {
		*err = -EOVERFLOW;
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		*err = -ENOMEM;
		return NULL;
	}
	r->len = (length + psize - 1) & ~(size_t)(psize - 1);
	r->psize = psize;
	r->off = (uint64_t)offset;
	r->writable = prot & PROT_WRITE;
	r->memfd = -1;
	r->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (r->fd < 0) {
		ret = -errno;
		goto fail;
	}
	/* Reserve the address range first: the daemon needs it in MAP. */
	base = mmap(addr, r->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | ((flags & UMAPD_FIXED) ? MAP_FIXED : 0),
		    -1, 0);
	if (base == MAP_FAILED) {
		ret = -errno;
		goto fail;
	}
	r->addr = (uintptr_t)base;
	memset(&mp, 0, sizeof(mp));
	mp.addr = r->addr;
	mp.len = r->len;
	mp.offset = r->off;
	mp.page_size = psize;
	mp.flags = r->writable ? PROTO_MAP_WRITABLE : 0;
	fds[0] = fd;
	fds[1] = C.uffd.fd;
	ret = rpc(PT_MAP, &mp, sizeof(mp), fds, 2, &m, &memfd);
	if (ret == -EACCES && !r->writable) {
		/* The daemon shares its cache only with clients that could write
		 * the file (docs/daemon-protocol.md): page this one in-process. */
		ulog_info("the daemon does not share this read-only file with us; paging it in-process");
		ret = -ENOTCONN;
	}
	if (ret < 0)
		goto fail;
	r->id = m.u.map_reply.region_id;
	if (memfd < 0) {
		ret = -EPROTO;
		goto fail_daemon;
	}
	r->memfd = memfd;
	if (mmap(base, r->len, prot, MAP_SHARED | MAP_FIXED, memfd, offset) == MAP_FAILED) {
		ret = -errno;
		goto fail_daemon;
	}
	/* Not inherited by fork: the child has no daemon behind these pages. */
	if (madvise(base, r->len, MADV_DONTFORK) < 0) {
		ret = -errno;
		goto fail_daemon;
	}
	struct uffdio_register reg = { .range = { r->addr, r->len },
				       .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP |
					       UFFDIO_REGISTER_MODE_MINOR };

	if (ioctl(C.uffd.fd, UFFDIO_REGISTER, &reg) < 0) {
		ret = -errno;
		ulog_error("cannot register %zu bytes at %p (daemon region) with userfaultfd: %s", r->len, base,
			   ulog_errname(-ret));
		goto fail_daemon;
	}
	pthread_mutex_lock(&C.lock);
	r->next = C.regions;
	C.regions = r;
	pthread_mutex_unlock(&C.lock);
	return base;

fail_daemon: {
	struct proto_region_ref ref = { r->id };
	struct proto_msg um;

	(void)rpc(PT_UNMAP, &ref, sizeof(ref), NULL, 0, &um, NULL);
}
fail:
	if (base != MAP_FAILED)
		munmap(base, r->len);
	if (r->fd >= 0)
		close(r->fd);
	if (memfd >= 0)
		close(memfd);
	free(r);
	*err = ret == -ENOTCONN ? -ENOTCONN : ret;
	return NULL;
}

size_t cl_page_size(const void *addr)
{
	struct cl_region *r;
	size_t ps = 0;

	pthread_mutex_lock(&C.lock);
	r = C.pid == getpid() ? find_locked((uintptr_t)addr) : NULL;
	if (r)
		ps = (size_t)r->psize;
	pthread_mutex_unlock(&C.lock);
	return ps;
}

bool cl_owns(const void *addr)
{
	bool own;

	pthread_mutex_lock(&C.lock);
	own = C.pid == getpid() && find_locked((uintptr_t)addr) != NULL;
	pthread_mutex_unlock(&C.lock);
	return own;
}

/* Write back [from, to) (bytes from the region start) of r, through the
 * daemon or, once it is gone, ourselves. */
static int region_sync(struct cl_region *r, uint64_t from, uint64_t to, bool evict)
{
	struct proto_flush fl = { r->id, from, to - from, evict ? 1u : 0u, 0 };
	struct proto_msg m;
	int ret = rpc(PT_FLUSH, &fl, sizeof(fl), NULL, 0, &m, NULL);

	if (ret == -ENOTCONN)
		ret = tk_writeback(r, r->off + from, r->off + to);
	return ret;
}

int cl_unmap(void *addr)
{
	struct cl_region *r, **pp;
	struct proto_region_ref ref;
	struct proto_msg m;
	int ret;

	pthread_mutex_lock(&C.lock);
	r = C.pid == getpid() ? find_locked((uintptr_t)addr) : NULL;
	pthread_mutex_unlock(&C.lock);
	if (!r)
		return -ENOENT;
	if (r->addr != (uintptr_t)addr)
		return -EINVAL;
	ref.region_id = r->id;
	ret = rpc(PT_UNMAP, &ref, sizeof(ref), NULL, 0, &m, NULL);
	if (ret == -ENOTCONN)
		ret = tk_writeback(r, r->off, r->off + r->len);
	if (ret < 0)
		return ret; /* the region stays usable; nothing is lost */
	pthread_mutex_lock(&C.lock);
	for (pp = &C.regions; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	struct uffdio_range rg = { r->addr, r->len };

	if (ioctl(C.uffd.fd, UFFDIO_UNREGISTER, &rg) < 0 && errno != EINVAL && errno != ENOENT)
		ulog_warn("daemon region %p: UFFDIO_UNREGISTER: %s", addr, ulog_errname(errno));
	pthread_mutex_unlock(&C.lock);
	munmap(addr, r->len);
	close(r->fd);
	close(r->memfd);
	free(r);
	return 0;
}

int cl_range(void *addr, size_t length, bool evict)
{
	uintptr_t s = (uintptr_t)addr, e;
	struct cl_region **hit = NULL;
	int n = 0, cap = 0, first = 0;

	if (!addr || length == 0 || s > UINTPTR_MAX - length)
		return 0; /* the engine's checks report it */
	e = s + length;
	pthread_mutex_lock(&C.lock);
	for (struct cl_region *r = C.pid == getpid() ? C.regions : NULL; r; r = r->next) {
		if (!(s < r->addr + r->len && r->addr < e))
			continue;
		if (n == cap) {
			struct cl_region **h = realloc(hit, (size_t)(cap = cap ? cap * 2 : 8) * sizeof(*h));

			if (!h) {
				pthread_mutex_unlock(&C.lock);
				free(hit);
				return -ENOMEM;
			}
			hit = h;
		}
		hit[n++] = r;
	}
	pthread_mutex_unlock(&C.lock);
	/* Regions are freed only by cl_unmap; an application that unmaps a
	 * region while flushing it gets what munmap-while-msync gets. */
	for (int i = 0; i < n; i++) {
		struct cl_region *r = hit[i];
		uint64_t from = s > r->addr ? s - r->addr : 0;
		uint64_t to = e - r->addr < r->len ? e - r->addr : r->len;
		int ret = region_sync(r, from, to, evict);

		if (ret < 0 && !first)
			first = ret;
	}
	free(hit);
	return first < 0 ? first : n;
}

/*
 * fork: the child starts unconnected.  It must not hold the parent's
 * connection open (the daemon would not see the parent go while the child
 * lives), it has none of the parent's daemon regions (MADV_DONTFORK) and
 * none of its threads.  The locks are made afresh: one may have been held
 * at the fork by a thread the child does not have.  (Taking them around the
 * fork instead could deadlock against an allocator's fork handlers: the
 * monitor allocates while holding C.lock.)
 */
static void cl_atfork_child(void)
{
	if (C.sock >= 0)
		close(C.sock);
	C.sock = -1;
	if (C.uffd.fd >= 0)
		close(C.uffd.fd);
	C.uffd.fd = -1;
	C.regions = NULL; /* the parent's; not mapped here */
	C.thr_started = false;
	atomic_store(&C.takeover, false);
	atomic_store(&C.lazy_failed, false);
	C.pid = 0;
	pthread_mutex_init(&C.lock, NULL);
	pthread_mutex_init(&C.rpc, NULL);
}

__attribute__((constructor)) static void cl_init(void)
{
	pthread_atfork(NULL, NULL, cl_atfork_child);
}

/* At exit, as for in-process regions: the data reaches the file. */
__attribute__((destructor)) static void cl_flush_at_exit(void)
{
	struct cl_region **v = NULL;
	int n = 0, cap = 0;

	pthread_mutex_lock(&C.lock);
	if (C.pid == getpid())
		for (struct cl_region *r = C.regions; r; r = r->next) {
			if (n == cap) {
				struct cl_region **nv = realloc(v, (size_t)(cap = cap ? cap * 2 : 16) * sizeof(*nv));

				if (!nv)
					break; /* flush what we have room to name */
				v = nv;
			}
			v[n++] = r;
		}
	pthread_mutex_unlock(&C.lock);
	/* Regions are freed only by cl_unmap, which nobody calls during exit. */
	for (int i = 0; i < n; i++) {
		int ret = region_sync(v[i], 0, v[i]->len, false);

		if (ret < 0)
			ulog_error("daemon region %p: write-back at exit failed: %s", (void *)v[i]->addr,
				   ulog_errname(-ret));
	}
	free(v);
}

/* ---------------------------------------------------------------- public */

__attribute__((visibility("default"))) int umapd_connect(const char *socket_path_arg)
{
	int ret = cl_connect(socket_path_arg);

	if (ret < 0) {
		errno = -ret;
		return -1;
	}
	return 0;
}
