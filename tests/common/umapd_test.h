/*
 * umapd_test.h - helpers shared by the unit, integration and stress tests.
 *
 * Conventions (STYLE.md, Tests): a test prints one line when it passes and the
 * first difference when it fails; every test runs under its own watchdog that
 * prints the step it stood at and _exit(1)s, so a hang inside the kernel fails
 * instead of hanging until ctest's TIMEOUT.
 *
 *   t_init("name", seconds)   start the test: name for messages, watchdog armed
 *   t_step("fmt", ...)        say what the test is doing now (the watchdog prints it)
 *   t_fail("fmt", ...)        print "FAIL name [step]: message", remove temp files, _exit(1)
 *   t_skip("fmt", ...)        print "SKIP ...", exit with T_SKIP (ctest SKIP_RETURN_CODE)
 *   t_pass("fmt", ...)        print "PASS name: ..." and exit(0)
 *
 * Sizes are scaled by UMAPD_TEST_SCALE (a positive number, default 1; the
 * sanitizer builds default lower, see t_scale()), watchdog times by
 * UMAPD_TEST_TIME_SCALE (default 1, sanitizer builds more).
 */
#ifndef UMAPD_TEST_H
#define UMAPD_TEST_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <umapd.h>

#define T_SKIP 77

#if defined(__GNUC__)
#define T_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define T_NORETURN __attribute__((noreturn))
#else
#define T_PRINTF(a, b)
#define T_NORETURN
#endif

/* --- reporting and watchdog (common.c) --- */
void t_init(const char *name, unsigned watchdog_seconds);
void t_step(const char *fmt, ...) T_PRINTF(1, 2);
void t_fail(const char *fmt, ...) T_PRINTF(1, 2) T_NORETURN;
void t_skip(const char *fmt, ...) T_PRINTF(1, 2) T_NORETURN;
void t_pass(const char *fmt, ...) T_PRINTF(1, 2) T_NORETURN;
/* Extra lines the watchdog prints after the step (e.g. progress counters).
 * The hook runs on the watchdog thread; it must only read atomics and print. */
void t_watchdog_hook(void (*hook)(void));
/* Re-arm the watchdog with a new deadline from now. */
void t_watchdog_rearm(unsigned seconds);
const char *t_name(void);

/* Scale factors (UMAPD_TEST_SCALE, UMAPD_TEST_TIME_SCALE). */
double t_scale(void);
double t_time_scale(void);
/* n scaled, at least min. */
size_t t_scaled(size_t n, size_t min);
/* Monotonic time. */
uint64_t t_now_ns(void);
size_t t_sys_page(void);

/* --- phases: threads of a test scripting an order (engine hooks) --- */
/* A step number threads wait for; every call with ph->lock held. */
struct t_phases {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int at;
};
#define T_PHASES_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 }
/* Wait until ph->at >= want, at most 10 s (a hook must never hang the
 * engine): false on timeout. */
bool t_phase_wait(struct t_phases *ph, int want);
/* ph->at = at, waking the waiters. */
void t_phase_set(struct t_phases *ph, int at);

/* --- files --- */
/* Create a temporary file (mkstemp in $TMPDIR or /tmp), open O_RDWR.  With
 * path NULL it is unlinked at once; else path gets the name (>= 256 B) and
 * the file is removed at exit, on failure and when the watchdog fires. */
int t_tmpfile(char *path);
/* Open the file registered under path again with the given flags. */
int t_reopen(const char *path, int flags);
void t_pwrite_all(int fd, const void *buf, size_t len, off_t off);
void t_pread_all(int fd, void *buf, size_t len, off_t off);
off_t t_file_size(int fd);
void t_ftruncate(int fd, off_t size);
void t_remove_tmpfiles(void);

/* --- data patterns --- */
/* A byte that depends on the file offset and a seed, so misplaced pages show. */
static inline uint8_t t_pat(uint64_t off, uint32_t seed)
{
	uint64_t x = off * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull + seed;
	x ^= x >> 29;
	x *= 0x94D049BB133111EBull;
	x ^= x >> 32;
	return (uint8_t)(x ^ (x >> 8));
}
void t_fill_pat(void *buf, size_t len, uint64_t off, uint32_t seed);
/* Fail with the first byte of buf that differs from the pattern (off is the
 * file offset of buf[0]; "what" names the check). */
void t_check_pat(const char *what, const void *buf, size_t len, uint64_t off, uint32_t seed);
/* Fail with the first byte of got differing from exp; base is the offset of got[0]. */
void t_check_bytes(const char *what, const void *got, const void *exp, size_t len, uint64_t base);
/* Fail with the first non-zero byte. */
void t_check_zero(const char *what, const void *got, size_t len, uint64_t base);
/* Read [off, off+len) of the file with pread and compare to the pattern. */
void t_check_file_pat(const char *what, int fd, off_t off, size_t len, uint32_t seed);
/* Write the pattern into [off, off+len) of the file with pwrite. */
void t_write_file_pat(int fd, off_t off, size_t len, uint32_t seed);

/* 64-bit checksum of a buffer (FNV-1a variant, mixed). */
uint64_t t_hash64(const void *buf, size_t len, uint64_t seed);

/* --- child processes --- */
/* Run fn(arg) in a forked child; returns the wait status.  The child gets its
 * own watchdog of `seconds`.  stderr of the child goes to *err_out (malloc'd,
 * NUL-terminated) when err_out != NULL. */
int t_fork_run(int (*fn)(void *), void *arg, unsigned seconds, char **err_out);
/* Re-execute this test binary with argv {self, arg1} and the given extra
 * environment ("NAME=value", NULL-terminated; the current environment with
 * every UMAPD_* variable removed is the base).  Returns the wait status;
 * the child's stderr in *err_out when not NULL, stdout is passed through. */
int t_reexec(const char *arg1, const char *const *extra_env, unsigned seconds, char **err_out);
/* Describe a wait status ("exit 1", "signal 11 (Segmentation fault)"). */
const char *t_wait_str(int status);

/* --- checks --- */
#define T_CHECK(cond, ...)                                                     \
	do {                                                                   \
		if (!(cond))                                                   \
			t_fail(__VA_ARGS__);                                   \
	} while (0)

/* expr must return -1 and set errno to want. */
#define T_ERR(expr, want)                                                        \
	do {                                                                     \
		errno = 0;                                                       \
		long t_rc_ = (long)(expr);                                       \
		int t_e_ = errno;                                                \
		if (t_rc_ != -1 || t_e_ != (want))                               \
			t_fail("%s: expected -1 errno %s, got %ld errno %s", #expr, \
			       t_errname(want), t_rc_, t_errname(t_e_));         \
	} while (0)

/* expr must return NULL and set errno to want. */
#define T_ERR_NULL(expr, want)                                                        \
	do {                                                                          \
		errno = 0;                                                            \
		void *t_p_ = (void *)(expr);                                          \
		int t_e_ = errno;                                                     \
		if (t_p_ != NULL || t_e_ != (want)) {                                 \
			t_fail("%s: expected NULL errno %s, got %p errno %s", #expr,  \
			       t_errname(want), t_p_, t_errname(t_e_));               \
		}                                                                     \
	} while (0)

/* expr must return 0 (or >= 0 with T_OKV). */
#define T_OK(expr)                                                                 \
	do {                                                                       \
		errno = 0;                                                         \
		long t_rc_ = (long)(expr);                                         \
		if (t_rc_ != 0)                                                    \
			t_fail("%s: expected 0, got %ld errno %s", #expr, t_rc_,   \
			       t_errname(errno));                                  \
	} while (0)

/* Name of an errno value ("EINVAL"), or its number. */
const char *t_errname(int e);

/* --- umapd helpers (inline so that unit tests linking the static library
 *     and integration tests linking the shared one both can use them) --- */

/* Start the engine, or skip the test when userfaultfd is not available here. */
static inline void t_umapd_start(void)
{
	t_step("umapd_init");
	if (umapd_init() != 0) {
		int e = errno;
		if (e == EPERM || e == ENOSYS)
			t_skip("userfaultfd not available here (umapd_init: %s)", t_errname(e));
		t_fail("umapd_init failed: %s", t_errname(e));
	}
}

/* umapd_map that fails the test on error. */
static inline void *t_map(size_t length, int prot, int flags, int fd, off_t offset,
			  size_t page_size, long read_ahead)
{
	struct umapd_region_opts o;
	memset(&o, 0, sizeof(o));
	o.page_size = page_size;
	o.read_ahead = read_ahead;
	errno = 0;
	void *p = umapd_map(NULL, length, prot, flags, fd, offset, &o);
	if (p == NULL)
		t_fail("umapd_map(len %zu, prot %d, flags %d, off %lld, page %zu) failed: %s",
		       length, prot, flags, (long long)offset, page_size, t_errname(errno));
	return p;
}

static inline void t_unmap(void *p)
{
	errno = 0;
	if (umapd_unmap(p) != 0)
		t_fail("umapd_unmap(%p) failed: %s", p, t_errname(errno));
}

static inline void t_stats(struct umapd_stats *s)
{
	memset(s, 0, sizeof(*s));
	if (umapd_stats(s) != 0)
		t_fail("umapd_stats failed: %s", t_errname(errno));
}

static inline void t_region_stats(void *p, struct umapd_stats *s)
{
	memset(s, 0, sizeof(*s));
	if (umapd_region_stats(p, s) != 0)
		t_fail("umapd_region_stats(%p) failed: %s", p, t_errname(errno));
}

static inline void t_set_bufsize(size_t bytes)
{
	if (umapd_set_bufsize(bytes) != 0)
		t_fail("umapd_set_bufsize(%zu) failed: %s", bytes, t_errname(errno));
}

#endif /* UMAPD_TEST_H */
