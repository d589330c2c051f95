/*
 * Start-up, fork, exit, and the engine's threads.
 *
 * Nothing is paged before our constructor has run: until then every
 * wrapper passes straight through (the dynamic linker and other
 * libraries' constructors allocate and map before we are configured).
 * The constructor reads the settings; a bad one costs one log line and
 * the program runs unpaged.  The engine itself starts at the first paged
 * mapping or heap allocation.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "heap/heap.h"
#include "preload/preload.h"
#include "umapd.h"

#define EXPORT __attribute__((visibility("default")))

struct pre_state pre;

/* --- the engine's threads ----------------------------------------------------------- */

struct tramp {
	void *(*fn)(void *);
	void *arg;
};

static void *service_main(void *p)
{
	struct tramp t = *(struct tramp *)p;

	pre_real.free(p);
	pre_self.service = true;
	return t.fn(t.arg);
}

/* Is fn inside this library (the statically linked engine, or us)? */
static bool ours(void *fn)
{
	static void *base;
	Dl_info self, it;

	if (!base && dladdr((void *)&pre_start, &self))
		base = self.dli_fbase;
	return base && dladdr(fn, &it) && it.dli_fbase == base;
}

/*
 * Threads the engine starts must never be served from the paged heap nor
 * have their mmap/munmap/madvise looked at: they are the ones serving the
 * faults (DESIGN.md invariant 1).  They are the threads created from
 * inside a umapd call we make, or whose start routine is ours.
 */
EXPORT int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	struct tramp *x;
	int ret;

	pre_resolve();
	if (!(pre_bypass() || ours((void *)fn)))
		return pre_real.pthread_create(t, attr, fn, arg);
	x = pre_real.malloc(sizeof(*x));
	if (!x)
		return EAGAIN;
	*x = (struct tramp){ fn, arg };
	ret = pre_real.pthread_create(t, attr, service_main, x);
	if (ret)
		pre_real.free(x);
	return ret;
}

/* --- statistics at exit ----------------------------------------------------------------- */

static _Atomic uint64_t resident_peak;
static _Atomic bool sampler_stop;
static pthread_t sampler;
static bool sampler_running;

/* Resident memory at its highest: sampled, since the engine keeps no peak. */
static void *sampler_main(void *arg)
{
	struct timespec ts = { 0, 5 * 1000 * 1000 };

	(void)arg;
	pre_enter();
	while (!atomic_load(&sampler_stop)) {
		struct umapd_stats s;

		if (umapd_stats(&s) == 0 && s.resident_bytes > atomic_load(&resident_peak))
			atomic_store(&resident_peak, s.resident_bytes);
		nanosleep(&ts, NULL);
	}
	pre_leave();
	return NULL;
}

static uint64_t rss_peak(void)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t n;
	char *p;

	if (fd < 0)
		return 0;
	n = pre_real.read ? pre_real.read(fd, buf, sizeof(buf) - 1) : -1;
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strstr(buf, "VmHWM:");
	return p ? strtoull(p + 6, NULL, 10) * 1024 : 0;
}

static void write_stats(void)
{
	struct umapd_stats s;
	char out[2048];
	int n = 0, fd;

	memset(&s, 0, sizeof(s));
	umapd_stats(&s);
	/* Helpers that paged nothing (a shell, timeout, env) must not
	 * overwrite the statistics of the program that did. */
	if (s.faults == 0 && heap_reserved_bytes() == 0 && atomic_load(&pre_files_paged) == 0)
		return;
	if (s.resident_bytes > atomic_load(&resident_peak))
		atomic_store(&resident_peak, s.resident_bytes);
#define KV(name) n += snprintf(out + n, sizeof(out) - (size_t)n, #name "=%" PRIu64 "\n", (uint64_t)s.name)
	KV(faults);
	KV(read_faults);
	KV(write_faults);
	KV(wp_faults);
	KV(fills);
	KV(evictions);
	KV(dirty_evictions);
	KV(flushed_pages);
	KV(bytes_read);
	KV(bytes_written);
	KV(resident_bytes);
	KV(dirty_bytes);
	KV(io_errors);
	KV(regions);
	KV(budget_bytes);
#undef KV
	n += snprintf(out + n, sizeof(out) - (size_t)n,
		      "resident_peak_bytes=%" PRIu64 "\nrss_peak_bytes=%" PRIu64 "\n"
		      "preload_files=%d\npreload_heap=%d\npreload_paged_mappings=%u\n"
		      "preload_heap_reserved_bytes=%" PRIu64 "\n"
		      "preload_private_mappings=%u\npreload_private_swap_bytes=%" PRIu64 "\n",
		      atomic_load(&resident_peak), rss_peak(), pre.files_on, pre.heap_on,
		      atomic_load(&pre_files_paged), heap_reserved_bytes(), atomic_load(&pre_priv_mappings),
		      atomic_load(&pre_priv_swap_bytes));
	fd = open(pre.cfg.stats_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || pre_real.write(fd, out, (size_t)n) != n)
		pre_log("cannot write UMAPD_STATS_FILE %s: %s", pre.cfg.stats_file, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* --- fork --------------------------------------------------------------------------------- */

/* A fork from inside a umapd call (the engine's kernel probe) happens
 * with the files lock already held by this thread: leave it alone. */
static __thread bool fork_locked __attribute__((tls_model("initial-exec")));

static void atfork_prepare(void)
{
	fork_locked = !pre_bypass();
	if (fork_locked)
		pre_files_atfork_prepare();
}

static void atfork_parent(void)
{
	if (fork_locked)
		pre_files_atfork_parent();
	fork_locked = false;
}

/* The child has none of the regions (they are MADV_DONTFORK) and no
 * engine threads: it runs unpaged; a child that execs starts afresh. */
static void atfork_child(void)
{
	pre.child = true;
	pre.files_on = false;
	pre.heap_on = false;
	pre_files_forget();
}

/* --- start and exit ---------------------------------------------------------------------- */

static const char *env(const char *name)
{
	return getenv(name);
}

void pre_start(void)
{
	char why[256];
	int expect = 0;

	if (!atomic_compare_exchange_strong(&pre.ready, &expect, 1)) {
		while (atomic_load(&pre.ready) != 2 && !pre_self.in_umapd)
			sched_yield();
		return;
	}
	pre_resolve();
	pre_enter();
	if (pre_config_parse(&pre.cfg, env, why, sizeof(why)) < 0)
		pre_log("%s; running unpaged", why);
	pre.files_on = pre.cfg.npatterns > 0;
	if (pre.cfg.heap)
		pre.heap_on = pre_heap_start();
	if (pre.files_on || pre.heap_on)
		pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	if (pre.cfg.stats_file[0] && pre_real.pthread_create(&sampler, NULL, sampler_main, NULL) == 0)
		sampler_running = true;
	if (pre.cfg.log)
		pre_log("started: file mode %s (%zu patterns, min %" PRIu64 " bytes), heap mode %s", pre.files_on ? "on" : "off",
			pre.cfg.npatterns, pre.cfg.min_size, pre.heap_on ? "on" : "off");
	pre_leave();
	atomic_store(&pre.ready, 2);
}

__attribute__((constructor)) static void pre_init(void)
{
	pre_start();
}

/* Dirty shared pages are written back by the library's own exit handler
 * (umapd_flush_at_exit); swap files were unlinked when made. */
__attribute__((destructor)) static void pre_fini(void)
{
	if (atomic_load(&pre.ready) != 2 || pre.child)
		return;
	if (sampler_running) {
		atomic_store(&sampler_stop, true);
		pthread_join(sampler, NULL);
		sampler_running = false;
	}
	pre_enter();
	if (pre.cfg.stats_file[0])
		write_stats();
	pre_leave();
}
