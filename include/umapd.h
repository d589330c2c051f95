/*
 * umapd.h - user-space paging on userfaultfd: the native API.
 *
 * A region is a range of this process's address space whose pages umapd
 * serves from a file: a page is read from the file the first time it is
 * touched, written back when it is dirty and umapd needs the memory, and
 * dropped when it is cold.  At most a budget of bytes (UMAPD_BUFSIZE) is
 * resident across all regions of the process.
 *
 * Every function is thread-safe.  Functions that can fail return -1 (or
 * NULL) and set errno; the errno values each one can set are listed with it.
 * Nothing in the library calls abort() or exit() on bad input.
 */
#ifndef UMAPD_H
#define UMAPD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UMAPD_VERSION_MAJOR 0
#define UMAPD_VERSION_MINOR 1
#define UMAPD_VERSION_PATCH 0

/* Flags for umapd_map(). */
#define UMAPD_FIXED    0x1 /* place the region exactly at addr (replacing what is there) */
#define UMAPD_GROWABLE 0x2 /* writes past the end of the file extend the file */

/* Advice for umapd_advise(). */
#define UMAPD_ADV_NORMAL     0 /* adaptive read-ahead (the default) */
#define UMAPD_ADV_SEQUENTIAL 1 /* always read ahead the full window */
#define UMAPD_ADV_RANDOM     2 /* no read-ahead */
#define UMAPD_ADV_WILLNEED   3 /* start bringing the range in (as umapd_prefetch) */
#define UMAPD_ADV_DONTNEED   4 /* write back and drop the range (as umapd_evict) */

/*
 * Per-region options.  Zero-initialise the whole structure and set what you
 * need: a zero field means "the global default".  reserved[] must stay zero
 * so that later versions can add fields without breaking callers.
 */
struct umapd_region_opts {
	size_t page_size;  /* power-of-two multiple of the system page size; 0: UMAPD_PAGESIZE */
	long read_ahead;   /* max read-ahead window in pages; 0: UMAPD_READ_AHEAD; -1: none */
	int io_engine;     /* UMAPD_IOENG_*: how this region's store is read and written;
			    * 0 (UMAPD_IOENG_DEFAULT): the process setting UMAPD_IO */
	int direct;        /* 1: read and write the file with O_DIRECT (bypass the page
			    * cache); 0: as the descriptor was opened (UMAPD_DIRECT_IO) */
	uint64_t reserved[7];
};

/* I/O engines (struct umapd_region_opts.io_engine, UMAPD_IO, stats.io_engine). */
#define UMAPD_IOENG_DEFAULT  0 /* opts: the process setting */
#define UMAPD_IOENG_IO_URING 1 /* io_uring through liburing: many reads in flight per thread */
#define UMAPD_IOENG_AIO      2 /* Linux AIO through libaio (asynchronous only with O_DIRECT) */
#define UMAPD_IOENG_PSYNC    3 /* pread/pwrite, one at a time per thread */

/* Statistics.  Counters are totals since the region (or process) started. */
struct umapd_stats {
	uint64_t faults;          /* fault messages served (read + write + wp) */
	uint64_t read_faults;     /* missing-page faults by a read */
	uint64_t write_faults;    /* missing-page faults by a write */
	uint64_t wp_faults;       /* first writes to clean resident pages */
	uint64_t fills;           /* pages brought in from the store (incl. read-ahead) */
	uint64_t evictions;       /* pages dropped */
	uint64_t dirty_evictions; /* of those, pages written back first */
	uint64_t flushed_pages;   /* pages written back and kept (umapd_flush) */
	uint64_t bytes_read;      /* bytes read from stores */
	uint64_t bytes_written;   /* bytes written to stores */
	uint64_t resident_bytes;  /* bytes resident now */
	uint64_t dirty_bytes;     /* bytes resident and dirty now */
	uint64_t readahead_pages; /* pages brought in ahead of a fault */
	uint64_t io_errors;       /* failed store reads and writes */
	uint64_t fault_wait_budget; /* faults that waited for memory to be freed */
	uint64_t meta_bytes;      /* engine memory used for page bookkeeping now */
	uint64_t latency_p50_ns;  /* fault-service latency, median */
	uint64_t latency_p99_ns;  /* fault-service latency, 99th percentile */
	uint64_t latency_max_ns;  /* fault-service latency, worst seen */
	uint64_t regions;         /* regions mapped now (process stats only) */
	uint64_t budget_bytes;    /* the budget in force (process stats only) */
	uint64_t pinned_pages;    /* write-backs that found the page pinned by a DMA or
				   * gup in flight: written, but kept resident and dirty */
	uint64_t stuck_faults;    /* faults outstanding longer than UMAPD_FAULT_TIMEOUT
				   * (each logged once with its region, page and state) */
	uint64_t evict_mode;      /* process stats only: UMAPD_EVICT_DIRECT or
				   * UMAPD_EVICT_BOUNCE, how pages that cannot be moved
				   * out are written back (UMAPD_EVICT_COPY); 0 before start */
	uint64_t readahead_hits;  /* read-ahead pages that a later access proved useful */
	uint64_t readahead_wasted; /* read-ahead pages evicted before any access proved them */
	uint64_t io_engine;       /* process stats only: UMAPD_IOENG_* the fault threads use */
	uint64_t rmw_installs;    /* read misses installed writable and dirty because the
				   * region's reads were being followed by writes */
	uint64_t reserved[1];
};

/*
 * Global settings.  Read from the environment when the library starts
 * (umapd_init() or the first umapd_map()), changeable with umapd_config_set().
 *
 *   UMAPD_BUFSIZE     budget: bytes with optional K/M/G/T suffix, or N% of RAM  (default 50%)
 *   UMAPD_PAGESIZE    default region page size, bytes with optional suffix     (default 4K)
 *   UMAPD_HIGH_WATER  eviction starts above this percentage of the budget     (default 95)
 *   UMAPD_LOW_WATER   eviction stops below this percentage of the budget      (default 85)
 *   UMAPD_FILLERS     fault-service threads, 1..256                           (default 4)
 *   UMAPD_EVICTORS    eviction threads, 1..64                                 (default 1)
 *   UMAPD_READ_AHEAD  default max read-ahead window in pages, 0..4096        (default 2048)
 *   UMAPD_LOG_LEVEL   error|warn|info|debug, or 0..3                          (default warn)
 *   UMAPD_EVICT_COPY  auto|direct|bounce: how a dirty page that cannot be moved
 *                     out of the region is written back: straight from its
 *                     write-protected mapping, or from a CPU copy; auto asks the
 *                     kernel probe (umapd_kernel_probe); before start only (default auto)
 *   UMAPD_FAULT_TIMEOUT  milliseconds after which an outstanding fault is logged
 *                     and counted in stuck_faults; 0 turns the watchdog off  (default 10000)
 *   UMAPD_EVENT_REMOVE  1: also ask for UFFD_FEATURE_EVENT_REMOVE (off by default:
 *                     zapped pages are caught when next touched; the event costs
 *                     every eviction a round trip); environment only   (default 0)
 *   UMAPD_USER_MODE_ONLY  1: ask the kernel for user-mode-only faults, which an
 *                     unprivileged process may have even when
 *                     vm.unprivileged_userfaultfd is 0; read(2)/write(2) into
 *                     region pages not yet resident then fail with EFAULT (default 0)
 *   UMAPD_FAULT_INJECT  a fault-injection spec (<umapd_store.h>, docs/stores.md),
 *                     e.g. write_error=EIO:0.01,enospc_after=1G: the store of every
 *                     region mapped afterwards fails or delays its I/O as it
 *                     says, for testing; empty: off                     (default "")
 *
 * An invalid value makes umapd_init() (and so umapd_map()) fail with EINVAL
 * after one log line naming the variable and the accepted form.
 */

/*
 * Start the engine now instead of at the first umapd_map().  Idempotent.
 * Errors: EINVAL (an environment variable is invalid), EPERM (userfaultfd
 * is not permitted; the log says how to allow it), ENOMEM, EMFILE/ENFILE,
 * ENOSYS (no userfaultfd in this kernel).
 */
int umapd_init(void);

/*
 * Set one setting by its environment-variable name and string value, with
 * the same syntax as the environment.  UMAPD_BUFSIZE, the water marks,
 * UMAPD_READ_AHEAD, UMAPD_PAGESIZE and UMAPD_LOG_LEVEL may change at any
 * time (a smaller budget makes the evictors catch up); UMAPD_FILLERS and
 * UMAPD_EVICTORS only before the engine starts.
 * Errors: EINVAL (unknown name, malformed value, high water <= low water),
 * EBUSY (thread counts or UMAPD_EVICT_COPY after start), EFAULT (NULL name
 * or value).
 */
int umapd_config_set(const char *name, const char *value);

/*
 * Write the current value of a setting, in its environment syntax (sizes in
 * plain bytes), into buf, which needs room for the terminating NUL too.
 * Returns the length written, not counting the NUL.
 * Errors: EINVAL (unknown name), ERANGE (buf too small), EFAULT (NULL).
 */
int umapd_config_get(const char *name, char *buf, size_t buflen);

/* Budget in bytes; the same as UMAPD_BUFSIZE.  Errors: EINVAL (0 or too small for one page). */
int umapd_set_bufsize(size_t bytes);
size_t umapd_get_bufsize(void);

/*
 * Map [offset, offset + length) of the file open on fd, paged by umapd.
 * addr: NULL lets umapd choose; with UMAPD_FIXED it must be page aligned and
 * the range is placed there.  prot: PROT_READ, optionally | PROT_WRITE
 * (writes are written back to the file; fd must then be open O_RDWR).
 * flags: 0, UMAPD_FIXED, UMAPD_GROWABLE (needs PROT_WRITE).  offset: a multiple of the region's
 * page size.  length: any size > 0; bytes past the end of the file read as
 * zeros and are not written back (so the file never grows) unless the region
 * is UMAPD_GROWABLE.  fd may be closed after the call (umapd keeps a dup).
 * Returns the region's address, or NULL with errno:
 *   EINVAL  length 0, bad prot/flags, offset not aligned, bad opts (page
 *           size not a power-of-two multiple of the system page size, bad
 *           read_ahead, non-zero reserved), unaligned addr with UMAPD_FIXED,
 *           or an invalid environment setting
 *   EBADF   fd is not an open descriptor
 *   EACCES  fd is not open for reading, or not for writing with PROT_WRITE
 *   ENODEV  fd is not a regular file or block device
 *   EOVERFLOW offset + length overflows
 *   EPERM   userfaultfd is not permitted for this process (see the log)
 *   ENOMEM  no address space or memory
 *   ENOTSUP PROT_WRITE, but the kernel's userfaultfd has no write protection
 *   EEXIST  UMAPD_FIXED at an address that an existing region still spans
 *           (a hole the application munmap()ed inside a region)
 */
void *umapd_map(void *addr, size_t length, int prot, int flags, int fd, off_t offset,
		const struct umapd_region_opts *opts);

/*
 * Write dirty pages back, wait for the writes, unregister the range and
 * unmap it: afterwards touching it raises SIGSEGV and its memory is
 * returned.  If a write fails, nothing is unmapped, the region stays usable
 * and the error is returned (so no data is lost).
 * Errors: EINVAL (addr is not the start of a region), the store's write
 * error (EIO, ENOSPC, EDQUOT, ...).
 */
int umapd_unmap(void *addr);

/*
 * Write the dirty pages in [addr, addr + length) back and keep them resident,
 * like msync(MS_SYNC).  The range may span several regions; parts outside
 * any region are ignored.  Returns -1 with the first write error (including
 * one from a background eviction since the last flush) in errno.
 * Errors: EINVAL (addr NULL or overflowing range), ENOMEM (range not inside
 * any region), the store's write error.
 */
int umapd_flush(void *addr, size_t length);

/*
 * Write back and drop the resident pages in [addr, addr + length).  Pages
 * being read in when it is called are waited for and dropped too, so after
 * a write to the file (pwrite) umapd_evict guarantees the next access reads
 * what the file holds now.
 * Errors: as umapd_flush.  Pages whose write fails stay resident and dirty.
 */
int umapd_evict(void *addr, size_t length);

/*
 * Declare the data of [addr, addr + length) dead: its resident pages are
 * dropped without being written back, after any write-back or read of
 * them in flight has finished.  The next access reads what the store holds
 * (the data last written back, or zeros where it never was); a caller that
 * wants zeros punches the file afterwards, which no write of ours can then
 * undo.  Only region pages wholly inside the range are dropped.  For
 * memory whose contents no longer matter, such as a freed heap block.
 * Errors: EINVAL (addr NULL or overflowing range), ENOMEM (not inside any
 * region, or no memory to collect the pages).
 */
int umapd_discard(void *addr, size_t length);

/*
 * Start bringing [addr, addr + length) in, asynchronously; returns at once.
 * Pages are brought in while the budget has room below the high water mark.
 * Errors: EINVAL (addr NULL or overflow), ENOMEM (not inside any region).
 */
int umapd_prefetch(void *addr, size_t length);

/*
 * Advise umapd about the access pattern of [addr, addr + length).
 * NORMAL/SEQUENTIAL/RANDOM set the read-ahead mode of the regions touched;
 * WILLNEED is umapd_prefetch, DONTNEED is umapd_evict.
 * Errors: EINVAL (bad advice, addr NULL), ENOMEM (not inside any region),
 * and those of umapd_evict for DONTNEED.
 */
int umapd_advise(void *addr, size_t length, int advice);

/*
 * The umapd heap: memory that umapd pages to a swap file, so that a program
 * can allocate more than the memory it may use.  Its pages count against
 * the same budget as every region.  The heap is one region of
 * UMAPD_HEAP_SIZE bytes of address space (default 256G) backed by an
 * unlinked file in UMAPD_HEAP_DIR (default $TMPDIR, else /var/tmp), made at
 * the first call; jemalloc manages the blocks.  Freed memory is dropped
 * without being written back.  Heap memory is not inherited by fork():
 * a child touching it gets SIGSEGV.  These pointers belong to the umapd
 * heap only: never pass them to free() or realloc(), nor others to these.
 *
 * umapd_malloc: size bytes (0 gives a unique minimal block), uninitialised.
 * umapd_calloc: n * size bytes of zeros.
 * umapd_realloc: resize a block from this heap, keeping its contents up to
 *   the smaller size; NULL p allocates; size 0 frees p and returns NULL.
 * umapd_free: give a block back; NULL is ignored, as is (with a log line)
 *   a pointer that is not from this heap.
 * Errors (NULL returned): ENOMEM (no memory, or the heap's address space
 * is used up; realloc keeps p), EINVAL (umapd_realloc of a pointer not
 * from this heap; or UMAPD_HEAP_SIZE invalid), EPERM/ENOSYS (userfaultfd not
 * usable), or the errno of creating the swap file (ENOENT, EACCES, ...).
 * After a failed first call the later ones fail with the same errno.
 */
void *umapd_malloc(size_t size);
void *umapd_calloc(size_t n, size_t size);
void *umapd_realloc(void *p, size_t size);
void umapd_free(void *p);

/*
 * Daemon mode (docs/daemon-protocol.md): connect this process to the umapd
 * daemon at socket_path (NULL: $UMAPD_SOCKET, else /run/umapd/umapd.sock).
 * Afterwards umapd_map() of a file is served by the daemon: one budget and
 * one shared copy of each file for every process on the node; umapd_unmap,
 * umapd_flush and umapd_evict work on those regions as on in-process ones
 * (UMAPD_GROWABLE is not supported there: ENOTSUP).  Setting UMAPD_SOCKET in
 * the environment connects at the first umapd_map() of a file without this
 * call (if the daemon cannot be reached then, regions are paged in-process,
 * with a log line).  If the daemon dies, this process serves its daemon
 * regions' faults itself from then on, and its later maps are in-process.
 * Idempotent.
 * Errors: ENOENT/ECONNREFUSED (no daemon listening there), EACCES (the
 * socket's permissions, or the daemon's allow_users/allow_groups), EUSERS
 * (the daemon has max_clients already), ENAMETOOLONG, EPROTONOSUPPORT (no
 * common protocol version),
 * ENOTSUP (this kernel's userfaultfd lacks minor faults or write protection
 * on shared memory), EPERM (userfaultfd not permitted), EINVAL (UMAPD_USER_MODE_ONLY not 0 or 1), ENOMEM, EMFILE.
 */
int umapd_connect(const char *socket_path);

/* Process-wide statistics (live regions plus ones already unmapped). Errors: EFAULT. */
int umapd_stats(struct umapd_stats *out);

/* Statistics of the region containing addr.  Errors: EFAULT, EINVAL (not in a region). */
int umapd_region_stats(void *addr, struct umapd_stats *out);

/* The page size of the region containing addr, or 0 with errno EINVAL. */
size_t umapd_region_page_size(void *addr);

/*
 * Kernel probe.
 *
 * umapd evicts a dirty page by write-protecting it (UFFDIO_WRITEPROTECT),
 * writing it to the store straight out of the region, and dropping it.  The
 * write reads a present, write-protected page, which must not fault; but
 * some kernels (5.8, until the gup rework) turned the read-only gup of an
 * O_DIRECT write into a write gup, which raised a write-protect fault that
 * only the blocked thread itself could have served: eviction hung.  Where
 * that is possible umapd copies the page to a bounce buffer first.
 *
 * umapd_kernel_probe() finds out which write-out paths complete on the
 * running kernel: for each path, a forked child registers one private
 * anonymous page with a fresh userfaultfd (MISSING | WP), installs it
 * write-protected (UFFDIO_COPY_MODE_WP), with no thread serving faults,
 * writes it to a temporary file and reads the file back.  The caller waits
 * at most a timeout (5 s) for each child and kills those that have not
 * finished: a hang is reported as UMAPD_PROBE_HANGS.  The children run at
 * the same time, so the probe takes about the time of the slowest check.
 * It also reports the userfaultfd features and settings of the kernel.
 *
 * The probe runs in the calling thread; it forks, and it opens userfaultfds
 * of its own (never the engine's).  The temporary file is made in the
 * first of $TMPDIR, /var/tmp, /tmp that takes one, and is removed at once.
 * The result is computed once per process and cached; later calls copy the
 * cached result.
 */

/* Write-out paths probed: indexes into umapd_kernel_info.io[]. */
enum umapd_io_path {
	UMAPD_IO_PWRITE = 0,        /* pwrite(2), buffered: what the file store does */
	UMAPD_IO_PWRITE_DIRECT = 1, /* pwrite(2) on an O_DIRECT descriptor */
	UMAPD_IO_URING = 2,         /* io_uring write (liburing), buffered */
	UMAPD_IO_URING_DIRECT = 3,  /* io_uring write, O_DIRECT */
	UMAPD_IO_AIO_DIRECT = 4,    /* libaio io_submit write, O_DIRECT */
	UMAPD_IO_PATHS = 5          /* paths probed by this version (io[] has room for 8) */
};

/* Outcome of one write-out path. */
enum umapd_probe_result {
	UMAPD_PROBE_SAFE = 1,        /* the write completed and the file holds the page's bytes */
	UMAPD_PROBE_HANGS = 2,       /* it did not complete within the timeout: eviction
				      * writing straight from the page would deadlock */
	UMAPD_PROBE_ERROR = 3,       /* it failed; error says how (see below) */
	UMAPD_PROBE_UNAVAILABLE = 4  /* the path cannot be used here; error says why */
};

/* How umapd writes a dirty page back (setting UMAPD_EVICT_COPY). */
#define UMAPD_EVICT_DIRECT 1 /* straight from the write-protected page */
#define UMAPD_EVICT_BOUNCE 2 /* from a copy in a bounce buffer */

struct umapd_io_probe {
	int result;          /* enum umapd_probe_result; 0 only in io[] slots past UMAPD_IO_PATHS */
	int error;           /* 0 for SAFE and HANGS; otherwise an errno:
			      *   UNAVAILABLE: EINVAL (O_DIRECT not supported on the file system of
			      *     tmp_dir), ENOSYS/EPERM (io_uring or aio not in this kernel, or
			      *     refused: kernel.io_uring_disabled, seccomp), EAGAIN (aio-max-nr
			      *     reached), EOPNOTSUPP (no write-protect faults: feat_wp is 0), or
			      *     uffd_error when no userfaultfd can be created at all
			      *   ERROR: the errno of the failing write, or EFAULT (the kernel
			      *     faulted on the page and the userfaultfd was user-mode-only: the
			      *     same kernel behaviour HANGS reports), EBADMSG (the file does not
			      *     hold the page's bytes), EIO (short write), ECHILD (the check's
			      *     child died, e.g. by a signal), or the errno of a setup step */
	int wp_seen;         /* 1: /proc/self/pagemap showed the page write-protected before the
			      * write (so the check tested what it means to); 0: not shown;
			      * -1: pagemap unreadable or the check did not get that far */
	int reserved0;
	uint64_t elapsed_ns; /* how long the write took (up to the timeout for HANGS) */
};

/*
 * The kernel as umapd sees it.  Flags are 1 (yes) or 0 (no); where a flag is
 * 0 its *_error field holds the errno that said no.
 */
struct umapd_kernel_info {
	char release[68];            /* uname -r (at most 64 characters) */
	/* userfaultfd */
	int uffd_error;              /* 0, or why no userfaultfd could be created at all
				      * (EPERM: not permitted, see below; ENOSYS: not in this kernel) */
	uint64_t uffd_features;      /* UFFDIO_API feature bits the kernel offers (UFFD_FEATURE_* of
				      * <linux/userfaultfd.h>); 0 when uffd_error != 0 */
	int feat_wp;                 /* PAGEFAULT_FLAG_WP: write-protect faults on private anonymous
				      * memory; umapd needs it to track dirty pages */
	int feat_wp_unpopulated;     /* WP_UNPOPULATED: protecting a range marks absent pages too */
	int feat_event_fork;         /* EVENT_FORK */
	int feat_event_remap;        /* EVENT_REMAP (mremap) */
	int feat_event_remove;       /* EVENT_REMOVE (MADV_DONTNEED / MADV_REMOVE) */
	int feat_event_unmap;        /* EVENT_UNMAP (munmap) */
	int feat_poison;             /* POISON: UFFDIO_POISON */
	int feat_move;               /* MOVE: UFFDIO_MOVE */
	int feat_wp_hugetlbfs_shmem; /* WP_HUGETLBFS_SHMEM: write-protect on shmem and hugetlbfs */
	int feat_minor_shmem;        /* MINOR_SHMEM: minor faults on shmem */
	int feat_exact_address;      /* EXACT_ADDRESS: fault addresses not rounded to the page */
	int dev_userfaultfd;         /* /dev/userfaultfd opened and USERFAULTFD_IOC_NEW worked */
	int dev_userfaultfd_error;   /* ENOENT (no such device), EACCES (no access), ... */
	int syscall_userfaultfd;     /* userfaultfd(2) with kernel-mode faults worked */
	int syscall_userfaultfd_error; /* EPERM (vm.unprivileged_userfaultfd is 0 and no
				      * CAP_SYS_PTRACE), ENOSYS, ... */
	int user_mode_only;          /* userfaultfd(2) with UFFD_USER_MODE_ONLY worked */
	int user_mode_only_error;    /* EINVAL (kernel without the flag), EPERM, ENOSYS */
	int unprivileged_userfaultfd; /* sysctl vm.unprivileged_userfaultfd; -1 unreadable */
	int io_uring_disabled;       /* sysctl kernel.io_uring_disabled (0, 1, 2); -1 absent */
	/* the write-out checks */
	int io_user_mode_only;       /* 1: the checks had to use a user-mode-only userfaultfd
				      * (nothing else permitted); a fault in the kernel is then
				      * reported as ERROR/EFAULT instead of HANGS */
	int direct_io_error;         /* 0: O_DIRECT works in tmp_dir; else the errno of the open */
	int timeout_ms;              /* how long each check was given */
	char tmp_dir[256];           /* directory of the temporary file */
	char fs_type[16];            /* its file system ("ext4", "xfs", "tmpfs", ... or "0x<magic>") */
	struct umapd_io_probe io[8]; /* by enum umapd_io_path */
	int evict_auto;              /* what UMAPD_EVICT_COPY=auto (the default) chooses here:
				      * UMAPD_EVICT_DIRECT when io[UMAPD_IO_PWRITE] is SAFE,
				      * else UMAPD_EVICT_BOUNCE */
	int reserved1;
	uint64_t reserved[16];       /* zero */
};

/*
 * Probe the running kernel (see above) and fill *out.  The first call takes
 * some tens of milliseconds when every path completes (mostly process exit:
 * an aio context is torn down after an RCU grace period), up to the timeout
 * plus 2 s for killed checks to go when one hangs; concurrent first calls
 * wait for the one probe; later calls return the cached result at once.  A kernel without userfaultfd, or one
 * that refuses it, is not an error: the fields say so.
 * Errors: EFAULT (out is NULL); EAGAIN or ENOMEM (no process or pipe could
 * be created for the checks; nothing is cached and the next call tries
 * again).
 */
int umapd_kernel_probe(struct umapd_kernel_info *out);

#ifdef __cplusplus
}
#endif

#endif /* UMAPD_H */
