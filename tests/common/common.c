/*
 * common.c - reporting, watchdog, temporary files, patterns and child
 * processes for the umapd tests.  See umapd_test.h.
 */
#include "umapd_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define T_MAX_TMPFILES 64
#define T_STEP_LEN 512

/* t_lock protects t_step_buf, t_tmp[] and t_ntmp. */
static pthread_mutex_t t_lock = PTHREAD_MUTEX_INITIALIZER;
static char t_step_buf[T_STEP_LEN] = "start";
static char t_tmp[T_MAX_TMPFILES][256];
static int t_ntmp;
static pid_t t_tmp_owner;

static const char *t_test_name = "test";
static atomic_int t_failing;
static void (*_Atomic t_hook)(void);

/* Watchdog: t_wd_lock protects t_wd_deadline; the thread sleeps on t_wd_cond. */
static pthread_mutex_t t_wd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t t_wd_cond;
static struct timespec t_wd_deadline;
static unsigned t_wd_seconds;
static int t_wd_started;

const char *t_name(void)
{
	return t_test_name;
}

static double env_double(const char *name, double def)
{
	const char *s = getenv(name);
	if (s == NULL || *s == '\0')
		return def;
	char *end;
	double v = strtod(s, &end);
	if (*end != '\0' || !(v > 0)) {
		fprintf(stderr, "%s: ignoring invalid %s=%s\n", t_test_name, name, s);
		return def;
	}
	return v;
}

#if defined(__SANITIZE_THREAD__)
#define T_DEF_SCALE 0.25
#define T_DEF_TIME_SCALE 4.0
#elif defined(__SANITIZE_ADDRESS__)
#define T_DEF_SCALE 0.5
#define T_DEF_TIME_SCALE 2.0
#else
#define T_DEF_SCALE 1.0
#define T_DEF_TIME_SCALE 1.0
#endif

double t_scale(void)
{
	return env_double("UMAPD_TEST_SCALE", T_DEF_SCALE);
}

double t_time_scale(void)
{
	return env_double("UMAPD_TEST_TIME_SCALE", T_DEF_TIME_SCALE);
}

size_t t_scaled(size_t n, size_t min)
{
	double v = (double)n * t_scale();
	size_t r = v < 1 ? 1 : (size_t)v;
	return r < min ? min : r;
}

uint64_t t_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

size_t t_sys_page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

const char *t_errname(int e)
{
	switch (e) {
#define N(x) case x: return #x
	N(EPERM); N(ENOENT); N(ESRCH); N(EINTR); N(EIO); N(ENXIO); N(E2BIG);
	N(EBADF); N(EAGAIN); N(ENOMEM); N(EACCES); N(EFAULT); N(EBUSY);
	N(EEXIST); N(ENODEV); N(ENOTDIR); N(EISDIR); N(EINVAL); N(ENFILE);
	N(EMFILE); N(EFBIG); N(ENOSPC); N(ESPIPE); N(EROFS); N(ERANGE);
	N(ENOSYS); N(EOVERFLOW); N(EDQUOT); N(ENOTSUP); N(ETIMEDOUT);
#undef N
	case 0: return "0";
	default: {
		static __thread char buf[32];
		snprintf(buf, sizeof(buf), "errno %d", e);
		return buf;
	}
	}
}

/* Write a whole string to fd 2 without stdio (usable from the watchdog). */
static void raw_err(const char *s)
{
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = write(2, s, n);
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

void t_remove_tmpfiles(void)
{
	if (getpid() != t_tmp_owner)
		return;
	/* No lock: called on the way out, possibly with the lock held by a
	 * thread that is stuck; the array only grows, entries are complete
	 * before t_ntmp counts them. */
	int n = __atomic_load_n(&t_ntmp, __ATOMIC_ACQUIRE);
	for (int i = 0; i < n; i++)
		if (t_tmp[i][0] != '\0')
			unlink(t_tmp[i]);
}

static void copy_step(char *out, size_t n)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 1;
	if (pthread_mutex_timedlock(&t_lock, &ts) == 0) {
		snprintf(out, n, "%s", t_step_buf);
		pthread_mutex_unlock(&t_lock);
	} else {
		snprintf(out, n, "(step unavailable: its lock is held)");
	}
}

static void *watchdog_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&t_wd_lock);
	for (;;) {
		int rc = pthread_cond_timedwait(&t_wd_cond, &t_wd_lock, &t_wd_deadline);
		if (rc != ETIMEDOUT)
			continue;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec < t_wd_deadline.tv_sec ||
		    (now.tv_sec == t_wd_deadline.tv_sec && now.tv_nsec < t_wd_deadline.tv_nsec))
			continue;
		break;
	}
	unsigned secs = t_wd_seconds;
	pthread_mutex_unlock(&t_wd_lock);
	atomic_store(&t_failing, 1);
	char step[T_STEP_LEN], line[T_STEP_LEN + 256];
	copy_step(step, sizeof(step));
	snprintf(line, sizeof(line), "FAIL %s: watchdog fired after %u s, stuck at step: %s\n",
		 t_test_name, secs, step);
	raw_err(line);
	void (*hook)(void) = atomic_load(&t_hook);
	if (hook != NULL)
		hook();
	fflush(stdout);
	fflush(stderr);
	t_remove_tmpfiles();
	_exit(1);
	return NULL;
}

void t_watchdog_rearm(unsigned seconds)
{
	unsigned s = (unsigned)(seconds * t_time_scale() + 0.5);
	if (s == 0)
		s = 1;
	pthread_mutex_lock(&t_wd_lock);
	clock_gettime(CLOCK_MONOTONIC, &t_wd_deadline);
	t_wd_deadline.tv_sec += s;
	t_wd_seconds = s;
	pthread_cond_signal(&t_wd_cond);
	pthread_mutex_unlock(&t_wd_lock);
}

void t_watchdog_hook(void (*hook)(void))
{
	atomic_store(&t_hook, hook);
}

void t_init(const char *name, unsigned watchdog_seconds)
{
	t_test_name = name;
	t_tmp_owner = getpid();
	setvbuf(stdout, NULL, _IOLBF, 0);
	atexit(t_remove_tmpfiles);
	if (!t_wd_started) {
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&t_wd_cond, &ca);
		pthread_condattr_destroy(&ca);
		t_watchdog_rearm(watchdog_seconds);
		pthread_t th;
		/* The watchdog must not be blocked by signals the test plays with. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		int rc = pthread_create(&th, NULL, watchdog_main, NULL);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (rc != 0) {
			fprintf(stderr, "FAIL %s: cannot start the watchdog: %s\n", name, strerror(rc));
			_exit(1);
		}
		pthread_detach(th);
		t_wd_started = 1;
	} else {
		t_watchdog_rearm(watchdog_seconds);
	}
}

bool t_phase_wait(struct t_phases *ph, int want)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	while (ph->at < want)
		if (pthread_cond_timedwait(&ph->cv, &ph->lock, &ts) == ETIMEDOUT)
			return false;
	return true;
}

void t_phase_set(struct t_phases *ph, int at)
{
	ph->at = at;
	pthread_cond_broadcast(&ph->cv);
}

void t_step(const char *fmt, ...)
{
	char buf[T_STEP_LEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&t_lock);
	memcpy(t_step_buf, buf, sizeof(buf));
	pthread_mutex_unlock(&t_lock);
}

void t_fail(const char *fmt, ...)
{
	if (atomic_exchange(&t_failing, 1)) {
		/* Another thread is already reporting; let it finish. */
		for (;;)
			pause();
	}
	char step[T_STEP_LEN], msg[2048];
	copy_step(step, sizeof(step));
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fflush(stdout);
	fprintf(stderr, "FAIL %s [at: %s]: %s\n", t_test_name, step, msg);
	fflush(stderr);
	t_remove_tmpfiles();
	_exit(1);
}

void t_skip(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("SKIP %s: ", t_test_name);
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	t_remove_tmpfiles();
	_exit(T_SKIP);
}

void t_pass(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("PASS %s: ", t_test_name);
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	t_remove_tmpfiles();
	exit(0);
}

/* ---- files ---- */

int t_tmpfile(char *path)
{
	const char *dir = getenv("TMPDIR");
	if (dir == NULL || *dir == '\0')
		dir = "/tmp";
	char tmpl[256];
	snprintf(tmpl, sizeof(tmpl), "%s/umapd-%s-XXXXXX", dir, t_test_name);
	int fd = mkstemp(tmpl);
	if (fd < 0)
		t_fail("mkstemp(%s): %s", tmpl, strerror(errno));
	if (path == NULL) {
		/* Nobody needs the name: unlink at once, so that nothing is left
		 * behind even when the test is killed (ctest TIMEOUT, SIGKILL). */
		unlink(tmpl);
		return fd;
	}
	pthread_mutex_lock(&t_lock);
	if (t_ntmp < T_MAX_TMPFILES) {
		memcpy(t_tmp[t_ntmp], tmpl, sizeof(tmpl));
		__atomic_store_n(&t_ntmp, t_ntmp + 1, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&t_lock);
	} else {
		pthread_mutex_unlock(&t_lock);
		unlink(tmpl); /* too many to track: unnamed from now on */
		tmpl[0] = '\0';
	}
	if (path != NULL)
		snprintf(path, 256, "%s", tmpl);
	return fd;
}

int t_reopen(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		t_fail("open(%s, 0x%x): %s", path, flags, strerror(errno));
	return fd;
}

void t_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t w = pwrite(fd, p, len, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			t_fail("pwrite(fd %d, %zu bytes at %lld): %s", fd, len, (long long)off,
			       w < 0 ? strerror(errno) : "wrote 0");
		p += w;
		len -= (size_t)w;
		off += w;
	}
}

void t_pread_all(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;
	while (len > 0) {
		ssize_t r = pread(fd, p, len, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			t_fail("pread(fd %d, %zu bytes at %lld): %s", fd, len, (long long)off,
			       strerror(errno));
		if (r == 0)
			t_fail("pread(fd %d, at %lld): end of file, %zu bytes short", fd,
			       (long long)off, len);
		p += r;
		len -= (size_t)r;
		off += r;
	}
}

off_t t_file_size(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		t_fail("fstat(%d): %s", fd, strerror(errno));
	return st.st_size;
}

void t_ftruncate(int fd, off_t size)
{
	if (ftruncate(fd, size) != 0)
		t_fail("ftruncate(%d, %lld): %s", fd, (long long)size, strerror(errno));
}

/* ---- patterns ---- */

void t_fill_pat(void *buf, size_t len, uint64_t off, uint32_t seed)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i++)
		p[i] = t_pat(off + i, seed);
}

void t_check_pat(const char *what, const void *buf, size_t len, uint64_t off, uint32_t seed)
{
	const volatile uint8_t *p = buf;
	for (size_t i = 0; i < len; i++) {
		uint8_t got = p[i], exp = t_pat(off + i, seed);
		if (got != exp)
			t_fail("%s: first difference at offset %llu (byte %zu of %zu): expected 0x%02x, got 0x%02x",
			       what, (unsigned long long)(off + i), i, len, exp, got);
	}
}

void t_check_bytes(const char *what, const void *got, const void *exp, size_t len, uint64_t base)
{
	const volatile uint8_t *g = got;
	const uint8_t *e = exp;
	for (size_t i = 0; i < len; i++)
		if (g[i] != e[i])
			t_fail("%s: first difference at offset %llu: expected 0x%02x, got 0x%02x", what,
			       (unsigned long long)(base + i), e[i], g[i]);
}

void t_check_zero(const char *what, const void *got, size_t len, uint64_t base)
{
	const volatile uint8_t *g = got;
	for (size_t i = 0; i < len; i++)
		if (g[i] != 0)
			t_fail("%s: first difference at offset %llu: expected 0x00, got 0x%02x", what,
			       (unsigned long long)(base + i), g[i]);
}

void t_check_file_pat(const char *what, int fd, off_t off, size_t len, uint32_t seed)
{
	size_t chunk = 1 << 20;
	uint8_t *buf = malloc(chunk);
	if (buf == NULL)
		t_fail("out of memory");
	for (size_t done = 0; done < len;) {
		size_t n = len - done < chunk ? len - done : chunk;
		t_pread_all(fd, buf, n, off + (off_t)done);
		t_check_pat(what, buf, n, (uint64_t)off + done, seed);
		done += n;
	}
	free(buf);
}

void t_write_file_pat(int fd, off_t off, size_t len, uint32_t seed)
{
	size_t chunk = 1 << 20;
	uint8_t *buf = malloc(chunk);
	if (buf == NULL)
		t_fail("out of memory");
	for (size_t done = 0; done < len;) {
		size_t n = len - done < chunk ? len - done : chunk;
		t_fill_pat(buf, n, (uint64_t)off + done, seed);
		t_pwrite_all(fd, buf, n, off + (off_t)done);
		done += n;
	}
	free(buf);
}

uint64_t t_hash64(const void *buf, size_t len, uint64_t seed)
{
	const uint8_t *p = buf;
	uint64_t h = 0xcbf29ce484222325ull ^ seed;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

/* ---- child processes ---- */

static char *slurp_fd(int fd)
{
	size_t cap = 4096, len = 0;
	char *s = malloc(cap);
	if (s == NULL)
		t_fail("out of memory");
	lseek(fd, 0, SEEK_SET);
	for (;;) {
		if (len + 1 >= cap) {
			cap *= 2;
			s = realloc(s, cap);
			if (s == NULL)
				t_fail("out of memory");
		}
		ssize_t r = read(fd, s + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	s[len] = '\0';
	return s;
}

static int capture_file(void)
{
	int fd = t_tmpfile(NULL);
	return fd;
}

static int wait_child(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			t_fail("waitpid(%d): %s", (int)pid, strerror(errno));
	}
	return st;
}

int t_fork_run(int (*fn)(void *), void *arg, unsigned seconds, char **err_out)
{
	int efd = err_out != NULL ? capture_file() : -1;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		t_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		/* Child: SIGALRM's default action ends it if it hangs. */
		signal(SIGALRM, SIG_DFL);
		alarm((unsigned)(seconds * t_time_scale() + 0.5) + 1);
		if (efd >= 0)
			dup2(efd, 2);
		int rc = fn(arg);
		fflush(stdout);
		fflush(stderr);
		_exit(rc);
	}
	int st = wait_child(pid);
	if (efd >= 0) {
		*err_out = slurp_fd(efd);
		close(efd);
	}
	return st;
}

int t_reexec(const char *arg1, const char *const *extra_env, unsigned seconds, char **err_out)
{
	int efd = err_out != NULL ? capture_file() : -1;
	/* Environment: ours without UMAPD_* (but keep the test scale knobs). */
	size_t n = 0, m = 0;
	while (environ[n] != NULL)
		n++;
	while (extra_env != NULL && extra_env[m] != NULL)
		m++;
	char **env = calloc(n + m + 1, sizeof(*env));
	if (env == NULL)
		t_fail("out of memory");
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "UMAPD_", 6) != 0 || strncmp(environ[i], "UMAPD_TEST_", 11) == 0)
			env[k++] = environ[i];
	for (size_t i = 0; i < m; i++)
		env[k++] = (char *)extra_env[i];
	env[k] = NULL;
	char self[4096];
	ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (l <= 0)
		t_fail("readlink /proc/self/exe: %s", strerror(errno));
	self[l] = '\0';
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		t_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGALRM, SIG_DFL);
		alarm((unsigned)(seconds * t_time_scale() + 0.5) + 1);
		if (efd >= 0)
			dup2(efd, 2);
		char *argv[] = {self, (char *)arg1, NULL};
		execve(self, argv, env);
		fprintf(stderr, "execve(%s): %s\n", self, strerror(errno));
		_exit(127);
	}
	free(env);
	int st = wait_child(pid);
	if (efd >= 0) {
		*err_out = slurp_fd(efd);
		close(efd);
	}
	return st;
}

const char *t_wait_str(int st)
{
	static __thread char buf[96];
	if (WIFEXITED(st))
		snprintf(buf, sizeof(buf), "exit %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, sizeof(buf), "signal %d (%s)%s", WTERMSIG(st), strsignal(WTERMSIG(st)),
			 WTERMSIG(st) == SIGALRM ? ", the child's watchdog" : "");
	else
		snprintf(buf, sizeof(buf), "status 0x%x", st);
	return buf;
}
