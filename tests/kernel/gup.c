/*
 * gup - the kernel reaching into umapd-managed memory (seeds 001, 002, 003).
 *
 * A PROT_READ|PROT_WRITE region over a file with a known pattern.  Chunks of
 * it are put in one state at a time:
 *
 *   missing    never touched (or evicted)
 *   clean      read
 *   dirty      written
 *   writeback  dirty, with umapd_flush of the chunk running in a loop in
 *              another thread while the kernel reaches in
 *   evicting   dirty, with umapd_evict of the chunk running in a loop
 *   budget     dirty, budget of one chunk, so the evictor runs all the time
 *
 * and the kernel reaches into the chunk:
 *
 *   into the region (a write gup or copy_to_user):  read(2) from a pipe,
 *     read(2) from a file, O_DIRECT pread, process_vm_writev from another
 *     process (remote gup, seed 002), io_uring READ (buffered and O_DIRECT),
 *     libaio PREAD (O_DIRECT);
 *   out of the region (a read gup or copy_from_user):  write(2) to a pipe,
 *     write(2) to a file, O_DIRECT pwrite, process_vm_readv from another
 *     process, io_uring WRITE (buffered and O_DIRECT), libaio PWRITE.
 *
 * Every transfer must complete with the right bytes and never hang (the
 * watchdog names the state, the method and the chunk).  After each one the
 * whole chunk is compared with a shadow copy (a partial-page transfer must
 * keep the file's bytes around it), and at the end the whole region through
 * the mapping and, after umapd_unmap, the file through pread.
 *
 * A wrong result does not stop the test: every (state, method) pair runs,
 * and the failures are listed together at the end.  The fault counters
 * around each transfer in the missing, clean and dirty states are printed as
 * a table: which kernel paths reached umapd through userfaultfd.
 *
 * O_DIRECT transfers use a scratch file in /var/tmp; if that filesystem
 * refuses O_DIRECT, those methods are skipped with a message, as are the
 * io_uring ones when io_uring is disabled and libaio ones when it is not
 * built in.  UMAPD_TEST_GUP_STATE=<state>[,<state>...] runs only those states.
 */
#include "umapd_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef UMAPD_HAVE_LIBURING
#include <liburing.h>
#endif
#ifdef UMAPD_HAVE_LIBAIO
#include <libaio.h>
#endif

enum { ST_MISSING, ST_CLEAN, ST_DIRTY, ST_WRITEBACK, ST_EVICTING, ST_BUDGET, NSTATES };
static const char *const state_name[NSTATES] = { "missing", "clean", "dirty", "writeback", "evicting", "budget" };

#define CHUNK_PAGES 16
#define NCHUNKS 32

static size_t ps, chunk, rlen;
static uint8_t *base;  /* the region */
static uint8_t *shadow; /* what the region must hold */
static uint8_t *src;    /* aligned scratch: data going in */
static uint8_t *out;    /* aligned scratch: data that came out */
static int fd;          /* the region's file */
static int buf_fd = -1; /* scratch file, buffered, /var/tmp */
static int dio_fd = -1; /* scratch file, O_DIRECT, /var/tmp */
static const char *dio_why = "not tried";
static uint32_t seed_next = 100;
static size_t iters;

/* ---- failures that do not stop the test ---- */

#define MAX_FAILS 64
static char fails[MAX_FAILS][512];
static int nfails, nfails_total;
static int cur_st = -1, cur_m = -1, cur_failed;
static unsigned pair_fail[NSTATES][16]; /* transfers with a failed check, per state and method */

/* Record a failed check and go on.  Only the first failure of each (state,
 * method) pair is printed and kept; the others are counted. */
static void soft_fail(const char *fmt, ...) T_PRINTF(1, 2);
static void soft_fail(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	nfails_total++;
	int first = 1;
	if (cur_st >= 0) {
		if (!cur_failed)
			pair_fail[cur_st][cur_m]++;
		first = pair_fail[cur_st][cur_m] == 1 && !cur_failed;
		cur_failed = 1;
	}
	if (!first)
		return;
	fprintf(stderr, "  FAILED: %s\n", buf);
	if (nfails < MAX_FAILS)
		memcpy(fails[nfails++], buf, sizeof(buf));
}

static long first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return (long)i;
	return -1;
}

/* ---- the helper process for process_vm_readv/writev ---- */

struct vm_cmd {
	int op; /* 1: write pattern into the parent; 2: read from the parent; 0: quit */
	uint64_t addr, len, off;
	uint32_t seed;
};
struct vm_reply {
	int64_t rc;
	int err;
};
static int vm_cmd_w = -1, vm_rep_r = -1;
static pid_t vm_child;

static int read_full(int f, void *buf, size_t n)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = read(f, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int write_full(int f, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(f, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Three remote pieces per transfer, so that one call crosses several
 * iovecs as well as several pages. */
static void vm_child_main(int cmd_r, int rep_w, pid_t parent)
{
	uint8_t *buf = NULL;
	size_t bufcap = 0;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	for (;;) {
		struct vm_cmd c;
		if (read_full(cmd_r, &c, sizeof(c)) != 0 || c.op == 0)
			_exit(0);
		if (c.len > bufcap) {
			free(buf);
			buf = malloc(c.len);
			bufcap = c.len;
			if (buf == NULL)
				_exit(3);
		}
		if (c.op == 1)
			t_fill_pat(buf, c.len, c.off, c.seed);
		struct vm_reply rep = { 0, 0 };
		size_t done = 0;
		while (done < c.len) {
			size_t left = c.len - done, a = left / 3, b = left / 3;
			struct iovec loc = { buf + done, left };
			struct iovec rem[3] = {
				{ (void *)(uintptr_t)(c.addr + done), a },
				{ (void *)(uintptr_t)(c.addr + done + a), b },
				{ (void *)(uintptr_t)(c.addr + done + a + b), left - a - b },
			};
			ssize_t n = c.op == 1 ? process_vm_writev(parent, &loc, 1, rem, 3, 0)
					      : process_vm_readv(parent, &loc, 1, rem, 3, 0);
			if (n <= 0) {
				rep.rc = -1;
				rep.err = n < 0 ? errno : EIO;
				break;
			}
			done += (size_t)n;
		}
		if (rep.rc == 0)
			rep.rc = (int64_t)done;
		if (write_full(rep_w, &rep, sizeof(rep)) != 0)
			_exit(4);
		if (c.op == 2 && rep.rc >= 0 && write_full(rep_w, buf, c.len) != 0)
			_exit(4);
	}
}

static void vm_child_start(void)
{
	int c[2], r[2];
	if (pipe(c) != 0 || pipe(r) != 0)
		t_fail("pipe: %s", strerror(errno));
	pid_t parent = getpid();
	fflush(stdout);
	fflush(stderr);
	vm_child = fork();
	if (vm_child < 0)
		t_fail("fork: %s", strerror(errno));
	if (vm_child == 0) {
		close(c[1]);
		close(r[0]);
		vm_child_main(c[0], r[1], parent);
		_exit(0);
	}
	close(c[0]);
	close(r[1]);
	vm_cmd_w = c[1];
	vm_rep_r = r[0];
#ifdef PR_SET_PTRACER
	prctl(PR_SET_PTRACER, vm_child, 0, 0, 0); /* Yama, where it is on */
#endif
}

static void vm_child_stop(void)
{
	struct vm_cmd c = { 0, 0, 0, 0, 0 };
	int st;
	write_full(vm_cmd_w, &c, sizeof(c));
	close(vm_cmd_w);
	close(vm_rep_r);
	while (waitpid(vm_child, &st, 0) < 0 && errno == EINTR) {
	}
}

/* ---- the transfers ---- */

static char op_err[256];

static int set_err(const char *what, int e)
{
	snprintf(op_err, sizeof(op_err), "%s: %s", what, t_errname(e));
	return -1;
}

/* Put src[0, len) into the scratch file at 0. */
static void scratch_fill(int f, size_t len)
{
	t_pwrite_all(f, src, len, 0);
}

static int op_pipe_in(uint8_t *a, size_t len)
{
	int p[2];
	if (pipe(p) != 0)
		return set_err("pipe", errno);
	if (fcntl(p[1], F_SETPIPE_SZ, (int)(2 * chunk)) < 0) {
		close(p[0]);
		close(p[1]);
		return set_err("F_SETPIPE_SZ", errno);
	}
	if (write_full(p[1], src, len) != 0) {
		close(p[0]);
		close(p[1]);
		return set_err("write into the pipe", errno);
	}
	close(p[1]);
	size_t done = 0;
	while (done < len) {
		ssize_t r = read(p[0], a + done, len - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? errno : EIO;
			close(p[0]);
			return set_err("read(2) from the pipe into the region", e);
		}
		done += (size_t)r;
	}
	close(p[0]);
	return 0;
}

static int op_pipe_out(uint8_t *a, size_t len)
{
	int p[2];
	if (pipe(p) != 0)
		return set_err("pipe", errno);
	if (fcntl(p[1], F_SETPIPE_SZ, (int)(2 * chunk)) < 0) {
		close(p[0]);
		close(p[1]);
		return set_err("F_SETPIPE_SZ", errno);
	}
	int rc = write_full(p[1], a, len);
	int e = errno;
	close(p[1]);
	if (rc != 0) {
		close(p[0]);
		return set_err("write(2) from the region into the pipe", e);
	}
	rc = read_full(p[0], out, len);
	close(p[0]);
	return rc != 0 ? set_err("read from the pipe", EIO) : 0;
}

static int op_read_in(uint8_t *a, size_t len)
{
	scratch_fill(buf_fd, len);
	if (lseek(buf_fd, 0, SEEK_SET) != 0)
		return set_err("lseek", errno);
	size_t done = 0;
	while (done < len) {
		ssize_t r = read(buf_fd, a + done, len - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return set_err("read(2) from a file into the region", r < 0 ? errno : EIO);
		done += (size_t)r;
	}
	return 0;
}

static int op_write_out(uint8_t *a, size_t len)
{
	if (lseek(buf_fd, 0, SEEK_SET) != 0)
		return set_err("lseek", errno);
	size_t done = 0;
	while (done < len) {
		ssize_t w = write(buf_fd, a + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return set_err("write(2) from the region to a file", w < 0 ? errno : EIO);
		done += (size_t)w;
	}
	t_pread_all(buf_fd, out, len, 0);
	return 0;
}

static int op_dio_in(uint8_t *a, size_t len)
{
	scratch_fill(dio_fd, len);
	size_t done = 0;
	while (done < len) {
		ssize_t r = pread(dio_fd, a + done, len - done, (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return set_err("O_DIRECT pread into the region", r < 0 ? errno : EIO);
		done += (size_t)r;
	}
	return 0;
}

static int op_dio_out(uint8_t *a, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t w = pwrite(dio_fd, a + done, len - done, (off_t)done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return set_err("O_DIRECT pwrite out of the region", w < 0 ? errno : EIO);
		done += (size_t)w;
	}
	t_pread_all(dio_fd, out, len, 0);
	return 0;
}

static int vm_op(int op, uint8_t *a, size_t len, uint64_t roff, uint32_t seed)
{
	struct vm_cmd c = { op, (uint64_t)(uintptr_t)a, len, roff, seed };
	struct vm_reply rep;
	if (write_full(vm_cmd_w, &c, sizeof(c)) != 0)
		return set_err("command to the helper process", errno);
	if (read_full(vm_rep_r, &rep, sizeof(rep)) != 0)
		return set_err("reply of the helper process (did it die?)", EIO);
	if (rep.rc < 0)
		return set_err(op == 1 ? "process_vm_writev by the helper process into the region"
				       : "process_vm_readv by the helper process out of the region",
			       rep.err);
	if (op == 2 && read_full(vm_rep_r, out, len) != 0)
		return set_err("data from the helper process", EIO);
	return 0;
}

static int op_vm_in(uint8_t *a, size_t len, uint64_t roff, uint32_t seed)
{
	return vm_op(1, a, len, roff, seed);
}

static int op_vm_out(uint8_t *a, size_t len)
{
	return vm_op(2, a, len, 0, 0);
}

#ifdef UMAPD_HAVE_LIBURING
static struct io_uring ring;
static int ring_ok;
static const char *ring_why = "";

static int uring_rw(int f, uint8_t *a, size_t len, int write)
{
	size_t done = 0;
	while (done < len) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		if (sqe == NULL)
			return set_err("io_uring_get_sqe", EBUSY);
		if (write)
			io_uring_prep_write(sqe, f, a + done, (unsigned)(len - done), done);
		else
			io_uring_prep_read(sqe, f, a + done, (unsigned)(len - done), done);
		int rc = io_uring_submit(&ring);
		if (rc != 1)
			return set_err("io_uring_submit", rc < 0 ? -rc : EIO);
		struct io_uring_cqe *cqe;
		do
			rc = io_uring_wait_cqe(&ring, &cqe);
		while (rc == -EINTR);
		if (rc < 0)
			return set_err("io_uring_wait_cqe", -rc);
		int res = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
		if (res <= 0)
			return set_err(write ? "io_uring WRITE out of the region" : "io_uring READ into the region",
				       res < 0 ? -res : EIO);
		done += (size_t)res;
	}
	return 0;
}

static int op_uring_in(uint8_t *a, size_t len)
{
	scratch_fill(buf_fd, len);
	return uring_rw(buf_fd, a, len, 0);
}

static int op_uring_out(uint8_t *a, size_t len)
{
	if (uring_rw(buf_fd, a, len, 1) != 0)
		return -1;
	t_pread_all(buf_fd, out, len, 0);
	return 0;
}

static int op_uring_dio_in(uint8_t *a, size_t len)
{
	scratch_fill(dio_fd, len);
	return uring_rw(dio_fd, a, len, 0);
}

static int op_uring_dio_out(uint8_t *a, size_t len)
{
	if (uring_rw(dio_fd, a, len, 1) != 0)
		return -1;
	t_pread_all(dio_fd, out, len, 0);
	return 0;
}
#endif

#ifdef UMAPD_HAVE_LIBAIO
static io_context_t aio_ctx;
static int aio_ok;
static const char *aio_why = "";

static int aio_rw(uint8_t *a, size_t len, int write)
{
	size_t done = 0;
	while (done < len) {
		struct iocb cb, *cbs[1] = { &cb };
		struct io_event ev;
		if (write)
			io_prep_pwrite(&cb, dio_fd, a + done, len - done, (long long)done);
		else
			io_prep_pread(&cb, dio_fd, a + done, len - done, (long long)done);
		int rc = io_submit(aio_ctx, 1, cbs);
		if (rc != 1)
			return set_err("io_submit", rc < 0 ? -rc : EIO);
		do
			rc = io_getevents(aio_ctx, 1, 1, &ev, NULL);
		while (rc == -EINTR);
		if (rc != 1)
			return set_err("io_getevents", rc < 0 ? -rc : EIO);
		long res = (long)ev.res;
		if (res <= 0)
			return set_err(write ? "libaio PWRITE out of the region" : "libaio PREAD into the region",
				       res < 0 ? (int)-res : EIO);
		done += (size_t)res;
	}
	return 0;
}

static int op_aio_in(uint8_t *a, size_t len)
{
	scratch_fill(dio_fd, len);
	return aio_rw(a, len, 0);
}

static int op_aio_out(uint8_t *a, size_t len)
{
	if (aio_rw(a, len, 1) != 0)
		return -1;
	t_pread_all(dio_fd, out, len, 0);
	return 0;
}
#endif

enum { M_PIPE_IN, M_READ_IN, M_DIO_IN, M_VM_IN, M_URING_IN, M_URING_DIO_IN, M_AIO_IN,
       M_PIPE_OUT, M_WRITE_OUT, M_DIO_OUT, M_VM_OUT, M_URING_OUT, M_URING_DIO_OUT, M_AIO_OUT, NMETHODS };
_Static_assert(NMETHODS <= 16, "pair_fail is too small");

struct method {
	const char *name;
	int in;     /* the kernel writes into the region */
	int direct; /* aligned, whole pages only */
	int avail;
	const char *why; /* when not available */
};
static struct method meth[NMETHODS] = {
	[M_PIPE_IN] = { "read(2) pipe->region", 1, 0, 1, NULL },
	[M_READ_IN] = { "read(2) file->region", 1, 0, 1, NULL },
	[M_DIO_IN] = { "O_DIRECT pread ->region", 1, 1, 0, NULL },
	[M_VM_IN] = { "process_vm_writev ->region", 1, 0, 1, NULL },
	[M_URING_IN] = { "io_uring READ ->region", 1, 0, 0, NULL },
	[M_URING_DIO_IN] = { "io_uring READ O_DIRECT ->region", 1, 1, 0, NULL },
	[M_AIO_IN] = { "libaio PREAD O_DIRECT ->region", 1, 1, 0, NULL },
	[M_PIPE_OUT] = { "write(2) region->pipe", 0, 0, 1, NULL },
	[M_WRITE_OUT] = { "write(2) region->file", 0, 0, 1, NULL },
	[M_DIO_OUT] = { "O_DIRECT pwrite region->", 0, 1, 0, NULL },
	[M_VM_OUT] = { "process_vm_readv region->", 0, 0, 1, NULL },
	[M_URING_OUT] = { "io_uring WRITE region->", 0, 0, 0, NULL },
	[M_URING_DIO_OUT] = { "io_uring WRITE O_DIRECT region->", 0, 1, 0, NULL },
	[M_AIO_OUT] = { "libaio PWRITE O_DIRECT region->", 0, 1, 0, NULL },
};

static int run_method(int m, uint8_t *a, size_t len, uint64_t roff, uint32_t seed)
{
	switch (m) {
	case M_PIPE_IN: return op_pipe_in(a, len);
	case M_READ_IN: return op_read_in(a, len);
	case M_DIO_IN: return op_dio_in(a, len);
	case M_VM_IN: return op_vm_in(a, len, roff, seed);
	case M_PIPE_OUT: return op_pipe_out(a, len);
	case M_WRITE_OUT: return op_write_out(a, len);
	case M_DIO_OUT: return op_dio_out(a, len);
	case M_VM_OUT: return op_vm_out(a, len);
#ifdef UMAPD_HAVE_LIBURING
	case M_URING_IN: return op_uring_in(a, len);
	case M_URING_OUT: return op_uring_out(a, len);
	case M_URING_DIO_IN: return op_uring_dio_in(a, len);
	case M_URING_DIO_OUT: return op_uring_dio_out(a, len);
#endif
#ifdef UMAPD_HAVE_LIBAIO
	case M_AIO_IN: return op_aio_in(a, len);
	case M_AIO_OUT: return op_aio_out(a, len);
#endif
	default: return set_err("method not built", ENOSYS);
	}
}

/* ---- background flush / evict loops ---- */

static atomic_int bg_stop, bg_mode;
static _Atomic uint64_t bg_iters;
static uint8_t *_Atomic bg_addr;
static char bg_err[256];
static atomic_int bg_failed;

static void *bg_main(void *arg)
{
	(void)arg;
	uint8_t *a = atomic_load(&bg_addr);
	while (!atomic_load_explicit(&bg_stop, memory_order_relaxed)) {
		int rc = atomic_load(&bg_mode) == ST_WRITEBACK ? umapd_flush(a, chunk) : umapd_evict(a, chunk);
		if (rc != 0 && !atomic_load(&bg_failed)) {
			snprintf(bg_err, sizeof(bg_err), "%s of the chunk failed: %s",
				 atomic_load(&bg_mode) == ST_WRITEBACK ? "umapd_flush" : "umapd_evict",
				 t_errname(errno));
			atomic_store(&bg_failed, 1);
		}
		atomic_fetch_add(&bg_iters, 1);
	}
	return NULL;
}

static void progress(void)
{
	char buf[160];
	snprintf(buf, sizeof(buf), "  background %s loop: %llu iterations so far\n",
		 atomic_load(&bg_mode) == ST_WRITEBACK ? "flush" : "evict",
		 (unsigned long long)atomic_load(&bg_iters));
	if (write(2, buf, strlen(buf)) < 0) {
	}
}

/* ---- one transfer ---- */

struct counts {
	uint64_t r, w, wp, n;
};
static struct counts table[NSTATES][NMETHODS];
static uint64_t bg_total[NSTATES];

static void prepare(int st, uint8_t *c, size_t coff)
{
	if (umapd_evict(c, chunk) != 0)
		t_fail("umapd_evict of chunk at %zu to set it up: %s", coff, t_errname(errno));
	if (st == ST_MISSING)
		return;
	if (st == ST_CLEAN) {
		for (size_t i = 0; i < chunk; i += ps)
			(void)*(volatile uint8_t *)(c + i);
		return;
	}
	uint32_t s = seed_next++;
	for (size_t i = 0; i < chunk; i += ps) {
		size_t o = i + (t_pat(coff + i, s) % ps);
		uint8_t v = t_pat(coff + o, s ^ 0x5a5a);
		c[o] = v;
		shadow[coff + o] = v;
	}
}

static void transfer(int st, int m, size_t it)
{
	size_t ci = (size_t)(st * NMETHODS + m) * 7 + it;
	size_t coff = (ci % NCHUNKS) * chunk;
	uint8_t *c = base + coff;
	size_t skip = 0, len = chunk;
	if (!meth[m].direct && (it & 1)) {
		/* partial first and last page: the rest must stay the file's */
		skip = 100 + (it % 7) * 3;
		len = chunk - skip - 211;
	}
	uint64_t roff = coff + skip;
	uint32_t seed = seed_next++;
	cur_st = st;
	cur_m = m;
	cur_failed = 0;

	t_step("state %s, %s, chunk at %zu (+%zu, %zu bytes), iteration %zu: preparing", state_name[st],
	       meth[m].name, coff, skip, len, it);
	prepare(st, c, coff);
	if (meth[m].in)
		t_fill_pat(src, len, roff, seed);

	pthread_t th;
	int bg = st == ST_WRITEBACK || st == ST_EVICTING;
	if (bg) {
		atomic_store(&bg_stop, 0);
		atomic_store(&bg_mode, st);
		atomic_store(&bg_addr, c);
		uint64_t i0 = atomic_load(&bg_iters);
		T_CHECK(pthread_create(&th, NULL, bg_main, NULL) == 0, "pthread_create");
		while (atomic_load(&bg_iters) == i0) /* it is running */
			sched_yield();
	}
	struct umapd_stats s0, s1;
	t_region_stats(base, &s0);
	t_step("state %s, %s, chunk at %zu (+%zu, %zu bytes), iteration %zu: transfer%s", state_name[st],
	       meth[m].name, coff, skip, len, it,
	       bg ? (st == ST_WRITEBACK ? " with umapd_flush looping" : " with umapd_evict looping") : "");
	uint64_t bi0 = atomic_load(&bg_iters);
	int rc = run_method(m, c + skip, len, roff, seed);
	t_region_stats(base, &s1);
	if (bg) {
		atomic_store(&bg_stop, 1);
		pthread_join(th, NULL);
		bg_total[st] += atomic_load(&bg_iters) - bi0;
		if (atomic_exchange(&bg_failed, 0))
			soft_fail("state %s, %s: %s", state_name[st], meth[m].name, bg_err);
	}
	struct counts *k = &table[st][m];
	k->r += s1.read_faults - s0.read_faults;
	k->w += s1.write_faults - s0.write_faults;
	k->wp += s1.wp_faults - s0.wp_faults;
	k->n++;

	t_step("state %s, %s, chunk at %zu, iteration %zu: checking", state_name[st], meth[m].name, coff, it);
	if (rc != 0) {
		soft_fail("state %s, %s, chunk at %zu (+%zu, %zu bytes): %s", state_name[st], meth[m].name, coff,
			  skip, len, op_err);
		/* whatever landed: take the region's word for it */
		if (meth[m].in)
			memcpy(shadow + coff, c, chunk);
		return;
	}
	if (meth[m].in) {
		long d = first_diff(c + skip, src, len);
		if (d >= 0)
			soft_fail("state %s, %s, chunk at %zu: the region holds 0x%02x at offset %zu after the "
				  "transfer, expected 0x%02x (data written by the kernel lost)",
				  state_name[st], meth[m].name, coff, c[skip + (size_t)d], (size_t)(roff + (uint64_t)d),
				  src[d]);
		memcpy(shadow + roff, src, len);
		if (d >= 0)
			memcpy(c + skip, src, len); /* repair, so later checks stand alone */
	} else {
		long d = first_diff(out, shadow + roff, len);
		if (d >= 0)
			soft_fail("state %s, %s, chunk at %zu: the kernel read 0x%02x at offset %zu out of the "
				  "region, expected 0x%02x",
				  state_name[st], meth[m].name, coff, out[d], (size_t)(roff + (uint64_t)d),
				  shadow[roff + (size_t)d]);
	}
	long d = first_diff(c, shadow + coff, chunk);
	if (d >= 0) {
		soft_fail("state %s, %s, chunk at %zu: afterwards the region holds 0x%02x at offset %zu, expected "
			  "0x%02x%s",
			  state_name[st], meth[m].name, coff, c[d], coff + (size_t)d, shadow[coff + (size_t)d],
			  (size_t)d < skip || (size_t)d >= skip + len ? " (outside the transferred bytes)" : "");
		memcpy(shadow + coff, c, chunk);
	}

	/* What the region holds must reach the file. */
	t_step("state %s, %s, chunk at %zu, iteration %zu: umapd_flush and pread", state_name[st], meth[m].name,
	       coff, it);
	if (umapd_flush(c, chunk) != 0) {
		soft_fail("state %s, %s, chunk at %zu: umapd_flush after the transfer: %s", state_name[st],
			  meth[m].name, coff, t_errname(errno));
		return;
	}
	t_pread_all(fd, out, chunk, (off_t)coff);
	d = first_diff(out, shadow + coff, chunk);
	if (d >= 0)
		soft_fail("state %s, %s, chunk at %zu: after umapd_flush the file holds 0x%02x at offset %zu, "
			  "expected 0x%02x (the region holds 0x%02x)",
			  state_name[st], meth[m].name, coff, out[d], coff + (size_t)d, shadow[coff + (size_t)d],
			  c[d]);
	if (d >= 0) {
		/* repair: write every byte again (first writes make the pages
		 * dirty) and flush, so that later checks stand alone */
		memcpy(c, shadow + coff, chunk);
		if (umapd_flush(c, chunk) != 0)
			t_fail("umapd_flush to repair chunk at %zu: %s", coff, t_errname(errno));
	}
}

/* ---- set-up ---- */

static int scratch_open(int flags, char *path)
{
	snprintf(path, 256, "/var/tmp/umapd-gup-XXXXXX");
	int f = mkstemp(path);
	if (f < 0)
		t_fail("mkstemp(/var/tmp/umapd-gup-XXXXXX): %s", strerror(errno));
	if (flags == 0)
		return f;
	int g = open(path, O_RDWR | flags);
	int e = errno;
	close(f);
	if (g < 0) {
		errno = e;
		return -1;
	}
	return g;
}

static void setup_scratch(void)
{
	char path[256], dpath[256];
	buf_fd = scratch_open(0, path);
	unlink(path);
	t_ftruncate(buf_fd, (off_t)chunk);

	dio_fd = scratch_open(O_DIRECT, dpath);
	if (dio_fd < 0) {
		static char why[300];
		snprintf(why, sizeof(why), "open(/var/tmp/..., O_DIRECT): %s", t_errname(errno));
		dio_why = why;
	} else {
		ssize_t w = pwrite(dio_fd, src, chunk, 0);
		if (w != (ssize_t)chunk) {
			static char why[300];
			snprintf(why, sizeof(why), "O_DIRECT pwrite on /var/tmp: %s",
				 w < 0 ? t_errname(errno) : "short write");
			dio_why = why;
			close(dio_fd);
			dio_fd = -1;
		}
	}
	unlink(dpath);
	if (dio_fd >= 0) {
		meth[M_DIO_IN].avail = meth[M_DIO_OUT].avail = 1;
	} else {
		meth[M_DIO_IN].why = meth[M_DIO_OUT].why = dio_why;
		printf("SKIP part: the filesystem refuses O_DIRECT (%s): O_DIRECT methods not run\n", dio_why);
	}

#ifdef UMAPD_HAVE_LIBURING
	int rc = io_uring_queue_init(8, &ring, 0);
	if (rc == 0) {
		ring_ok = 1;
		meth[M_URING_IN].avail = meth[M_URING_OUT].avail = 1;
		meth[M_URING_DIO_IN].avail = meth[M_URING_DIO_OUT].avail = dio_fd >= 0;
		if (dio_fd < 0)
			meth[M_URING_DIO_IN].why = meth[M_URING_DIO_OUT].why = dio_why;
	} else {
		static char why[128];
		snprintf(why, sizeof(why), "io_uring_queue_init: %s", t_errname(-rc));
		ring_why = why;
		meth[M_URING_IN].why = meth[M_URING_OUT].why = ring_why;
		meth[M_URING_DIO_IN].why = meth[M_URING_DIO_OUT].why = ring_why;
		printf("SKIP part: io_uring not available (%s)\n", ring_why);
	}
#else
	meth[M_URING_IN].why = meth[M_URING_OUT].why = "built without liburing";
	meth[M_URING_DIO_IN].why = meth[M_URING_DIO_OUT].why = "built without liburing";
	printf("SKIP part: built without liburing\n");
#endif
#ifdef UMAPD_HAVE_LIBAIO
	if (dio_fd < 0) {
		meth[M_AIO_IN].why = meth[M_AIO_OUT].why = dio_why;
	} else {
		int arc = io_setup(8, &aio_ctx);
		if (arc == 0) {
			aio_ok = 1;
			meth[M_AIO_IN].avail = meth[M_AIO_OUT].avail = 1;
		} else {
			static char why[128];
			snprintf(why, sizeof(why), "io_setup: %s", t_errname(-arc));
			aio_why = why;
			meth[M_AIO_IN].why = meth[M_AIO_OUT].why = aio_why;
			printf("SKIP part: libaio not available (%s)\n", aio_why);
		}
	}
#else
	meth[M_AIO_IN].why = meth[M_AIO_OUT].why = "built without libaio";
	printf("SKIP part: built without libaio\n");
#endif
}

static void print_table(void)
{
	printf("fault messages umapd served during each transfer (read/write/wp, summed over iterations):\n");
	printf("  %-34s %-16s %-16s %-16s\n", "method", "missing", "clean", "dirty");
	for (int m = 0; m < NMETHODS; m++) {
		if (!meth[m].avail) {
			printf("  %-34s not run: %s\n", meth[m].name, meth[m].why ? meth[m].why : "unavailable");
			continue;
		}
		char cell[3][32];
		for (int st = ST_MISSING; st <= ST_DIRTY; st++) {
			struct counts *k = &table[st][m];
			snprintf(cell[st], sizeof(cell[st]), "%llu/%llu/%llu", (unsigned long long)k->r,
				 (unsigned long long)k->w, (unsigned long long)k->wp);
		}
		printf("  %-34s %-16s %-16s %-16s\n", meth[m].name, cell[0], cell[1], cell[2]);
	}
	printf("background loop iterations during transfers: writeback %llu, evicting %llu\n",
	       (unsigned long long)bg_total[ST_WRITEBACK], (unsigned long long)bg_total[ST_EVICTING]);
}

int main(void)
{
	t_init("gup", 150);
	t_watchdog_hook(progress);
	ps = t_sys_page();
	chunk = CHUNK_PAGES * ps;
	rlen = NCHUNKS * chunk;

	/* The helper that reaches in from outside: forked before the engine
	 * has threads or regions; it gets addresses through a pipe. */
	t_step("fork the process_vm helper");
	vm_child_start();

	t_umapd_start();
	if (posix_memalign((void **)&src, 4096, chunk) != 0 || posix_memalign((void **)&out, 4096, chunk) != 0)
		t_fail("out of memory");
	shadow = malloc(rlen);
	T_CHECK(shadow != NULL, "out of memory");
	memset(src, 0x11, chunk);
	setup_scratch();

	fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, rlen, 7);
	t_fill_pat(shadow, rlen, 0, 7);
	base = t_map(rlen, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	size_t budget0 = umapd_get_bufsize();

	iters = t_scaled(12, 2);
	size_t n = 0;
	int nst = 0; /* states run: all, or those UMAPD_TEST_GUP_STATE lists */
	char st_names[64] = "";
	/* UMAPD_TEST_GUP_STATE: a comma-separated list of states to run (all if unset) */
	const char *only = getenv("UMAPD_TEST_GUP_STATE");
	for (int st = 0; st < NSTATES; st++) {
		if (only != NULL && *only != '\0') {
			size_t nl = strlen(state_name[st]);
			const char *at = only;
			bool listed = false;

			for (; *at; at = strchr(at, ',') ? strchr(at, ',') + 1 : at + strlen(at))
				if (strncmp(at, state_name[st], nl) == 0 && (at[nl] == ',' || at[nl] == '\0'))
					listed = true;
			if (!listed)
				continue;
		}
		nst++;
		snprintf(st_names + strlen(st_names), sizeof(st_names) - strlen(st_names), "%s%s",
			 st_names[0] ? "," : "", state_name[st]);
		if (st == ST_BUDGET)
			t_set_bufsize(chunk); /* one chunk: every transfer makes the evictor run */
		for (int m = 0; m < NMETHODS; m++) {
			if (!meth[m].avail)
				continue;
			for (size_t it = 0; it < iters; it++) {
				transfer(st, m, it);
				n++;
			}
		}
		if (st == ST_BUDGET)
			t_set_bufsize(budget0);
	}
	if (nst == 0)
		t_fail("UMAPD_TEST_GUP_STATE=\"%s\" names none of the states (missing, clean, dirty, writeback, "
		       "evicting, budget): nothing was tested", only);

	cur_st = cur_m = -1;
	t_step("whole region through the mapping");
	long d = first_diff(base, shadow, rlen);
	if (d >= 0)
		soft_fail("final check: the region holds 0x%02x at offset %ld, expected 0x%02x", base[d], d, shadow[d]);
	t_step("umapd_unmap");
	t_unmap(base);
	t_step("whole file through pread after umapd_unmap");
	uint8_t *file = malloc(rlen);
	T_CHECK(file != NULL, "out of memory");
	t_pread_all(fd, file, rlen, 0);
	d = first_diff(file, shadow, rlen);
	if (d >= 0)
		soft_fail("final check: after umapd_unmap the file holds 0x%02x at offset %ld, expected 0x%02x",
			  file[d], d, shadow[d]);
	free(file);
	T_CHECK(t_file_size(fd) == (off_t)rlen, "the file is %lld bytes, want %zu", (long long)t_file_size(fd), rlen);

	vm_child_stop();
	print_table();
	if (nfails_total > 0) {
		unsigned nbad = 0;
		fprintf(stderr, "transfers with a failed check, per state and method (of %zu each):\n", iters);
		for (int st = 0; st < NSTATES; st++)
			for (int m = 0; m < NMETHODS; m++)
				if (pair_fail[st][m] > 0) {
					fprintf(stderr, "  %-10s %-34s %u\n", state_name[st], meth[m].name,
						pair_fail[st][m]);
					nbad += pair_fail[st][m];
				}
		fprintf(stderr, "first failure of each:\n");
		for (int i = 0; i < nfails; i++)
			fprintf(stderr, "  %s\n", fails[i]);
		t_fail("%u of %zu transfers went wrong, %d failed checks in all (listed above)", nbad, n,
		       nfails_total);
	}
	int nm = 0;
	for (int m = 0; m < NMETHODS; m++)
		nm += meth[m].avail;
	t_pass("%zu transfers (%d methods x %d page states (%s) x %zu), kernel reads and writes of the region "
	       "complete with the right bytes; mapping and file verified after umapd_unmap",
	       n, nm, nst, nst == NSTATES ? "all" : st_names, iters);
}
