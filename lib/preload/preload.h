/*
 * lib/preload - libumapd-preload.so, the LD_PRELOAD interposer: the whole
 * interface between its files (docs/preload.md says what it does).
 *
 *   config.c    the UMAPD_PRELOAD_* settings and the glob matcher (pure)
 *   real.c      the next definitions of what we interpose (dlsym RTLD_NEXT),
 *               the start-up allocator, the per-thread guards, the log
 *   files.c     file mode: the table of paged mappings and what mmap, munmap,
 *               msync, mremap, madvise, mprotect do to it
 *   private.c   MAP_PRIVATE: the overlay store (the file until a page is
 *               written, then a private swap file)
 *   wrap_mm.c   the exported mmap family, passing through what is not ours
 *   coherent.c  read/write/ftruncate/fallocate on files with paged mappings
 *   malloc.c    heap mode: the malloc family (the heap itself is lib/heap)
 *   preload.c   start-up, fork, exit (stats file), pthread_create
 */
#ifndef UMAPD_PRELOAD_H
#define UMAPD_PRELOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* --- config.c --------------------------------------------------------------- */

#define PRE_MAX_PATTERNS 32
#define PRE_PATH_MAX 4096

struct pre_config {
	/* UMAPD_PRELOAD_FILES: ':'-separated globs; npatterns 0 = file mode off. */
	char patterns_buf[PRE_PATH_MAX];
	const char *patterns[PRE_MAX_PATTERNS];
	size_t npatterns;
	uint64_t min_size;       /* UMAPD_PRELOAD_MIN: smaller mappings pass through */
	uint64_t grow_step;      /* UMAPD_PRELOAD_GROW: file growth paged in steps of this */
	bool heap;               /* UMAPD_PRELOAD_HEAP=1 */
	uint64_t heap_threshold; /* UMAPD_HEAP_THRESHOLD: smaller allocations stay put */
	bool log;                /* UMAPD_PRELOAD_LOG=1 */
	char stats_file[PRE_PATH_MAX]; /* UMAPD_STATS_FILE; "" = none */
};

#define PRE_DEFAULT_MIN ((uint64_t)1 << 20)
#define PRE_DEFAULT_GROW ((uint64_t)8 << 20)
#define PRE_DEFAULT_HEAP_THRESHOLD ((uint64_t)1 << 20)

/*
 * Fill c from the variables that get(name) returns (getenv in the library,
 * a table in the unit test).  On -EINVAL, why holds one sentence naming the
 * variable and the accepted form, and c is left with file and heap mode
 * off (the program then runs unpaged).
 */
int pre_config_parse(struct pre_config *c, const char *(*get)(const char *name), char *why,
		     size_t whylen);

/*
 * Shell-style match of a whole path: '*' any run of characters but '/',
 * '?' one character but '/', "[abc]", "[a-z]", "[!x]" (or "[^x]") one
 * character of a set, '\' quotes the next character, and "**" any run
 * including '/'.  Returns true on a match.
 */
bool pre_glob_match(const char *pattern, const char *path);

/* Does path match any pattern of c? */
bool pre_config_matches(const struct pre_config *c, const char *path);

/* --- real.c ------------------------------------------------------------------- */

/* The definitions our symbols hide, found with dlsym(RTLD_NEXT).  A NULL
 * entry (not resolved yet, or resolving now) makes the wrappers use the
 * raw system call or the start-up allocator instead. */
struct pre_real {
	void *(*mmap)(void *, size_t, int, int, int, off_t);
	int (*munmap)(void *, size_t);
	int (*msync)(void *, size_t, int);
	void *(*mremap)(void *, size_t, size_t, int, ...);
	int (*madvise)(void *, size_t, int);
	int (*mprotect)(void *, size_t, int);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*pwrite)(int, const void *, size_t, off_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
	ssize_t (*pwritev2)(int, const struct iovec *, int, off_t, int);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*pread)(int, void *, size_t, off_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*preadv)(int, const struct iovec *, int, off_t);
	ssize_t (*preadv2)(int, const struct iovec *, int, off_t, int);
	int (*ftruncate)(int, off_t);
	int (*fallocate)(int, int, off_t, off_t);
	void *(*malloc)(size_t);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	void (*free)(void *);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*memalign)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	size_t (*malloc_usable_size)(void *);
	int (*pthread_create)(void *, const void *, void *(*)(void *), void *);
};

extern struct pre_real pre_real;

/* Resolve pre_real once (thread-safe, reentrant from malloc during dlsym). */
void pre_resolve(void);

/* The start-up allocator: serves the allocations made while dlsym runs. */
void *pre_boot_alloc(size_t size, size_t align);
bool pre_boot_owns(const void *p);
size_t pre_boot_size(const void *p);

/*
 * Per-thread state.  in_umapd: this thread is inside a umapd call made by
 * us (or our own bookkeeping): our wrappers pass everything straight
 * through, so the engine's own mmap/munmap/madvise/malloc are never
 * intercepted.  service: a thread the engine started; it must never get
 * memory from the paged heap (DESIGN.md invariant 1) nor be intercepted.
 */
struct pre_thread {
	int in_umapd;
	bool service;
	bool resolving;
};
extern __thread struct pre_thread pre_self __attribute__((tls_model("initial-exec")));

static inline bool pre_bypass(void)
{
	return pre_self.in_umapd || pre_self.service;
}

static inline void pre_enter(void)
{
	pre_self.in_umapd++;
}

static inline void pre_leave(void)
{
	pre_self.in_umapd--;
}

/* "umapd-preload: ..." on stderr, one line, no allocation. */
void pre_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- preload.c ------------------------------------------------------------------ */

struct pre_state {
	struct pre_config cfg;
	bool files_on;      /* file mode usable now */
	bool heap_on;       /* heap mode usable now */
	bool child;         /* a forked child: everything passes through */
	_Atomic int ready;  /* 0 not yet, 1 starting, 2 done */
};
extern struct pre_state pre;

/* Read the configuration and start what it asks for; idempotent, cheap
 * once done.  Called by the constructor and by the first wrapper that
 * needs it, whichever comes first. */
void pre_start(void);

/* --- files.c ----------------------------------------------------------------------- */

void *pre_files_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
/* The others return 1 when [addr, addr+len) touches no paged mapping (the
 * caller passes the call through), else 0 with *ret set. */
int pre_files_munmap(void *addr, size_t len, int *ret);
int pre_files_msync(void *addr, size_t len, int flags, int *ret);
int pre_files_madvise(void *addr, size_t len, int advice, int *ret);
int pre_files_mprotect(void *addr, size_t len, int prot, int *ret);
int pre_files_mremap(void *old, size_t old_len, size_t new_len, int flags, void **ret);

/* Number of tracked mapped files: wrappers of read/write skip the fstat
 * when it is 0. */
extern _Atomic unsigned pre_files_count;
/* umapd regions made for mappings so far (statistics). */
extern _Atomic unsigned pre_files_paged;

/* coherent.c hooks into files.c, all under the files lock (see files.c). */
struct pre_io {
	dev_t dev;
	ino_t ino;
	uint64_t off, len;   /* file range being read or written */
	bool write;
	bool truncate;       /* ftruncate to off, below the old size */
	bool found;          /* the file has tracked mappings */
};
void pre_files_lock(void);
void pre_files_unlock(void);
/* Before a read or write of a range of a file: write back dirty pages of its
 * writable mappings that cover the range. */
void pre_files_before_io(struct pre_io *io);
/* After a write that changed [off, off+len) (and maybe the size): drop the
 * pages that cover it so they are read again, and page newly grown parts. */
void pre_files_after_write(struct pre_io *io);
/* At fork in the child: forget everything, without touching umapd. */
void pre_files_forget(void);
void pre_files_atfork_prepare(void);
void pre_files_atfork_parent(void);

/* --- private.c ------------------------------------------------------------------------ */

/*
 * The private data of one MAP_PRIVATE mapping (private.c): which pages the
 * program has written (and the engine has written back since), and the
 * unlinked swap file that holds them.  Shared by the mapping and the
 * stores of its regions; reference counted.  Offsets are the file's.
 */
struct pre_priv;
struct umapd_store;

/* New, for file offsets from base on (room made for len bytes); fd is
 * duplicated.  The swap file's directory is read now: UMAPD_HEAP_DIR,
 * else $TMPDIR, else /var/tmp.  -ENOMEM, or the errno of the dup. */
int pre_priv_new(int fd, uint64_t base, uint64_t len, struct pre_priv **out);
void pre_priv_get(struct pre_priv *pv);
void pre_priv_put(struct pre_priv *pv);
/* Make the swap file if there is none yet (the program's thread only: the
 * mapping is, or is about to become, writable).  0 or a negative errno. */
int pre_priv_swap(struct pre_priv *pv);
const char *pre_priv_dir(const struct pre_priv *pv);
/* Make room for file offsets up to end.  0 or -ENOMEM. */
int pre_priv_reserve(struct pre_priv *pv, uint64_t end);
/* A store for the region over file range [off, off + len): reads the
 * file, or the swap file where the page was written back.  It holds a
 * reference to pv.  0, -EINVAL, -ENOMEM. */
int pre_priv_store(struct pre_priv *pv, uint64_t off, uint64_t len, struct umapd_store **out);
/* The program's copies of [off, off + len) are dead: the range reads the
 * file again.  Callers drop the resident pages first (umapd_discard). */
void pre_priv_drop(struct pre_priv *pv, uint64_t off, uint64_t len);
/* Copy what was written back of [off, off + len) from one to the other
 * (mremap moving a private mapping).  0 or a negative errno. */
int pre_priv_copy(struct pre_priv *from, struct pre_priv *to, uint64_t off, uint64_t len);
/* Statistics: bytes written to private swap files, private mappings made. */
extern _Atomic uint64_t pre_priv_swap_bytes;
extern _Atomic unsigned pre_priv_mappings;

/* --- malloc.c ------------------------------------------------------------------------- */

/* Start heap mode (the umapd heap); false and one log line if it cannot. */
bool pre_heap_start(void);

#endif
