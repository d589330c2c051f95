/*
 * The engine singleton: start-up (settings, userfaultfd, threads), the
 * budget and its water marks, settings at run time, statistics.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine/engine.h"
#include "probe/probe.h"
#include "util/log.h"

void (*eng_test_map_hook)(uintptr_t base, size_t len);

struct engine eng = {
	.init_lock = PTHREAD_MUTEX_INITIALIZER,
	.cfg_lock = PTHREAD_MUTEX_INITIALIZER,
	.regions_lock = PTHREAD_RWLOCK_INITIALIZER,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.page_cv = PTHREAD_COND_INITIALIZER,
	.evict_cv = PTHREAD_COND_INITIALIZER,
	.retired_lock = PTHREAD_MUTEX_INITIALIZER,
	.ev_lock = PTHREAD_MUTEX_INITIALIZER,
	.uffd = { .fd = -1 },
	.kick_fd = -1,
};

static bool cfg_loaded; /* under cfg_lock: environment applied to eng.cfg */

/* Apply the environment once, before the first setting is read or set. */
static int cfg_load_locked(void)
{
	int ret;

	if (cfg_loaded)
		return 0;
	cfg_defaults(&eng.cfg);
	ret = cfg_from_env(&eng.cfg);
	if (ret < 0) {
		cfg_defaults(&eng.cfg);
		return ret; /* not marked loaded: every start-up reports it again */
	}
	cfg_loaded = true;
	ulog_set_level((enum ulog_level)eng.cfg.log_level);
	atomic_store(&eng.budget, eng.cfg.bufsize);
	atomic_store(&eng.high_pct, eng.cfg.high_water);
	atomic_store(&eng.low_pct, eng.cfg.low_water);
	atomic_store(&eng.fault_timeout_ms, eng.cfg.fault_timeout_ms);
	return 0;
}

uint64_t eng_high_mark(void)
{
	return atomic_load_explicit(&eng.budget, memory_order_relaxed) / 100 *
	       atomic_load_explicit(&eng.high_pct, memory_order_relaxed);
}

uint64_t eng_low_mark(void)
{
	return atomic_load_explicit(&eng.budget, memory_order_relaxed) / 100 *
	       atomic_load_explicit(&eng.low_pct, memory_order_relaxed);
}

void eng_kick_evictors(void)
{
	pthread_cond_signal(&eng.evict_cv);
}

void eng_kick_fillers(void)
{
	uint64_t one = 1;

	if (eng.kick_fd >= 0 && write(eng.kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		ulog_debug("kick write: %s", ulog_errname(errno));
}

/*
 * Start-up barrier.  Each engine thread maps memory of its own when it
 * starts (a bounce buffer, a read arena, io_uring rings, its malloc arena).
 * If that happened after eng_start() returned, it could land in a hole the
 * application has just unmapped and is about to map again with MAP_FIXED
 * (or UMAPD_FIXED), which would then silently replace our rings or buffers.
 * So the engine counts as started only once every thread has done its
 * set-up, and threads map nothing lazily afterwards but for a region that
 * asks for another I/O engine (docs/design.md).
 */
static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cv = PTHREAD_COND_INITIALIZER;
static unsigned ready_count;

void eng_thread_ready(void)
{
	pthread_mutex_lock(&ready_lock);
	ready_count++;
	pthread_cond_broadcast(&ready_cv);
	pthread_mutex_unlock(&ready_lock);
}

static void wait_threads_ready(unsigned n)
{
	pthread_mutex_lock(&ready_lock);
	while (ready_count < n)
		pthread_cond_wait(&ready_cv, &ready_lock);
	pthread_mutex_unlock(&ready_lock);
}

/* Start up to n threads; *started says how many did. */
static int start_threads(pthread_t **out, unsigned n, void *(*fn)(void *), const char *name, unsigned *started)
{
	pthread_t *t = calloc(n, sizeof(*t));

	*started = 0;
	if (!t)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		char tname[16];
		int ret = pthread_create(&t[i], NULL, fn, (void *)(uintptr_t)i);

		if (ret != 0) {
			ulog_error("cannot start thread %s/%u: %s", name, i, ulog_errname(ret));
			/* Threads already started serve on; not having all is not fatal
			 * unless there are none. */
			if (i == 0) {
				free(t);
				return -ret;
			}
			break;
		}
		snprintf(tname, sizeof(tname), "%s/%u", name, i);
		pthread_setname_np(t[i], tname);
		(*started)++;
	}
	*out = t;
	return 0;
}

/*
 * UMAPD_IO_INJECT=short:P,eintr:P,eagain:P[,seed:N], a testing knob: the
 * engine's I/O contexts cut P% of their submissions short and turn P% of
 * their completions into EINTR or EAGAIN, which lib/io must absorb.
 */
static int io_inject_from_env(void)
{
	static struct io_inject inj;
	const char *v = getenv("UMAPD_IO_INJECT");
	char *copy, *save = NULL;
	int ret = 0;

	if (!v || !*v)
		return 0;
	copy = strdup(v);
	if (!copy)
		return -ENOMEM;
	memset(&inj, 0, sizeof(inj));
	for (char *tok = strtok_r(copy, ",", &save); tok && ret == 0; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':'), *end;
		unsigned long long x;

		if (!colon) {
			ret = -EINVAL;
			break;
		}
		*colon = '\0';
		errno = 0;
		x = strtoull(colon + 1, &end, 10);
		if (errno || end == colon + 1 || *end)
			ret = -EINVAL;
		else if (!strcmp(tok, "seed"))
			inj.seed = x;
		else if (x > 100)
			ret = -EINVAL;
		else if (!strcmp(tok, "short"))
			inj.short_pct = (unsigned)x;
		else if (!strcmp(tok, "eintr"))
			inj.eintr_pct = (unsigned)x;
		else if (!strcmp(tok, "eagain"))
			inj.eagain_pct = (unsigned)x;
		else
			ret = -EINVAL;
	}
	free(copy);
	if (ret < 0) {
		ulog_error("UMAPD_IO_INJECT=\"%s\" is invalid: expected comma-separated short:P, eintr:P, "
			   "eagain:P (percentages 0..100) and seed:N", v);
		return ret;
	}
	eng.io_inject = &inj;
	return 0;
}

static int eng_start_locked(void)
{
	/* Events: see lib/engine/events.c.  No EVENT_FORK: regions are
	 * MADV_DONTFORK, so a child never inherits them.  EVENT_REMOVE only on
	 * request (UMAPD_EVENT_REMOVE=1): every page it would tell us about is
	 * caught anyway when next touched or written back (a missing fault on
	 * a page we hold refills it; a write-back that meets a zapped page
	 * refills it first), while enabling it makes each of our own evictions'
	 * MADV_DONTNEED wait for a fault thread to read the event and makes
	 * concurrent fills and protects fail with EAGAIN meanwhile: a quarter
	 * more voluntary and two to three times the involuntary context
	 * switches per fault in bench_random (docs/performance.md), and once a
	 * fill starved in that EAGAIN churn under CI load. */
	uint64_t want = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_POISON | UFFD_FEATURE_EVENT_UNMAP |
			UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_MOVE;
	int ret;

	pthread_mutex_lock(&eng.cfg_lock);
	ret = cfg_load_locked();
	unsigned nf = eng.cfg.fillers, ne = eng.cfg.evictors;
	int evict_copy = eng.cfg.evict_copy, io_want = eng.cfg.io_engine;
	pthread_mutex_unlock(&eng.cfg_lock);
	if (ret < 0)
		return ret;

	ret = io_inject_from_env();
	if (ret < 0)
		return ret;
	{
		char why[160];

		eng.io_kind = io_choose((enum io_kind)io_want, why, sizeof(why));
		if (why[0])
			ulog_warn("I/O engine: %s; using %s", why, io_kind_name((enum io_kind)eng.io_kind));
		else
			ulog_info("I/O engine: %s", io_kind_name((enum io_kind)eng.io_kind));
	}

	wr_start();

	/* The kernel probe forks its checks from this (the caller's) thread,
	 * before our userfaultfd and threads exist (DESIGN.md invariant 1). */
	if (evict_copy == 0) {
		/* auto, from the environment or umapd_config_set(): the probe's
		 * verdict on the path the file store writes with. */
		struct umapd_kernel_info ki;

		/* The path write-back takes: io_uring's own write, or a
		 * pwrite (psync; aio on a buffered descriptor writes in
		 * io_submit, as pwrite would). */
		int path = eng.io_kind == IO_URING ? UMAPD_IO_URING : UMAPD_IO_PWRITE;

		evict_copy = UMAPD_EVICT_BOUNCE;
		if (probe_cached(&ki) == 0 && ki.io[path].result == UMAPD_PROBE_SAFE)
			evict_copy = UMAPD_EVICT_DIRECT;
		else
			ulog_warn("writing a page straight from its write-protected mapping is not known to be "
				  "safe on this kernel (umapd-probe says why): write-back copies such pages first");
	}
	eng.evict_bounce = evict_copy == UMAPD_EVICT_BOUNCE;

	eng.sys_psize = (size_t)sysconf(_SC_PAGESIZE);
	eng.pid = getpid();
	{
		int umo = cfg_env_switch("UMAPD_USER_MODE_ONLY");
		int rm = umo < 0 ? 0 : cfg_env_switch("UMAPD_EVENT_REMOVE");

		if (umo < 0 || rm < 0)
			return -EINVAL;
		if (rm)
			want |= UFFD_FEATURE_EVENT_REMOVE;
		ret = uffd_open(&eng.uffd, want, umo);
	}
	if (ret < 0)
		return ret;
	eng.kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (eng.kick_fd < 0) {
		ret = -errno;
		uffd_close(&eng.uffd);
		return ret;
	}
	/* Staging areas for write-back, registered now rather than under the
	 * event storms of heavy eviction (one per evictor, one for API calls). */
	if (eng.uffd.features & UFFD_FEATURE_MOVE) {
		struct stage *st[65];
		unsigned n = ne + 1 < 65 ? ne + 1 : 65, got = 0;

		while (got < n && stage_get(&st[got]) == 0)
			got++;
		while (got > 0)
			stage_put(st[--got]);
	}
	unsigned nf_up = 0, ne_up = 0;

	pthread_mutex_lock(&ready_lock);
	ready_count = 0;
	pthread_mutex_unlock(&ready_lock);
	ret = start_threads(&eng.fillers, nf, filler_main, "umapd-fault", &nf_up);
	if (ret == 0)
		ret = start_threads(&eng.evictors, ne, evictor_main, "umapd-evict", &ne_up);
	/* Every thread that did start reports in, even one whose set-up
	 * failed, so this cannot wait forever. */
	wait_threads_ready(nf_up + ne_up);
	if (ret < 0) {
		/* Threads that did start block in epoll on descriptors we keep open;
		 * the engine stays unstarted and the next call tries again. */
		ulog_error("cannot start the engine's threads: %s", ulog_errname(-ret));
		return ret;
	}
	ulog_info("started: budget %llu bytes, %u fault threads, %u evictors, features %#llx",
		  (unsigned long long)atomic_load(&eng.budget), nf, ne,
		  (unsigned long long)eng.uffd.features);
	return 0;
}

int eng_start(void)
{
	int ret = 0;

	pthread_mutex_lock(&eng.init_lock);
	if (!eng.started) {
		ret = eng_start_locked();
		if (ret == 0)
			eng.started = true;
	}
	pthread_mutex_unlock(&eng.init_lock);
	return ret;
}

int eng_config_set(const char *name, const char *value)
{
	char why[256];
	struct eng_config c;
	int ret;

	pthread_mutex_lock(&eng.init_lock); /* eng.started is stable while held */
	pthread_mutex_lock(&eng.cfg_lock);
	ret = cfg_load_locked();
	if (ret == 0 && eng.started && (!strcmp(name, "UMAPD_FILLERS") || !strcmp(name, "UMAPD_EVICTORS") ||
					!strcmp(name, "UMAPD_EVICT_COPY")))
		ret = -EBUSY;
	if (ret == 0) {
		c = eng.cfg;
		ret = cfg_set(&c, name, value, why, sizeof(why));
		if (ret < 0)
			ulog_warn("%s", why);
	}
	if (ret == 0) {
		eng.cfg = c;
		ulog_set_level((enum ulog_level)c.log_level);
		atomic_store(&eng.budget, c.bufsize);
		atomic_store(&eng.high_pct, c.high_water);
		atomic_store(&eng.low_pct, c.low_water);
		atomic_store(&eng.fault_timeout_ms, c.fault_timeout_ms);
	}
	pthread_mutex_unlock(&eng.cfg_lock);
	pthread_mutex_unlock(&eng.init_lock);
	if (ret == 0) {
		/* A smaller budget or lower marks: let the evictors catch up. */
		pthread_mutex_lock(&eng.lock);
		eng_kick_evictors();
		pthread_mutex_unlock(&eng.lock);
		eng_kick_fillers();
	}
	return ret;
}

int eng_config_get(const char *name, char *buf, size_t len)
{
	int ret;

	pthread_mutex_lock(&eng.cfg_lock);
	ret = cfg_load_locked();
	if (ret == 0)
		ret = cfg_get(&eng.cfg, name, buf, len);
	pthread_mutex_unlock(&eng.cfg_lock);
	return ret;
}

static void counters_add(struct umapd_stats *o, const struct eng_counters *c)
{
#define ADD(f) o->f += atomic_load_explicit(&c->f, memory_order_relaxed)
	ADD(faults);
	ADD(read_faults);
	ADD(write_faults);
	ADD(wp_faults);
	ADD(fills);
	ADD(evictions);
	ADD(dirty_evictions);
	ADD(flushed_pages);
	ADD(bytes_read);
	ADD(bytes_written);
	ADD(readahead_pages);
	ADD(readahead_hits);
	ADD(readahead_wasted);
	ADD(rmw_installs);
	ADD(io_errors);
	ADD(fault_wait_budget);
	ADD(pinned_pages);
	ADD(stuck_faults);
#undef ADD
}

static void stats_finish(struct umapd_stats *o, const uint64_t lat[LAT_BUCKETS], uint64_t max)
{
	o->latency_p50_ns = lat_percentile(lat, 50.0);
	o->latency_p99_ns = lat_percentile(lat, 99.0);
	o->latency_max_ns = max;
}

void eng_retire(struct eng_region *r)
{
	pthread_mutex_lock(&eng.retired_lock);
	counters_add(&eng.retired, &r->c);
	lat_merge(eng.retired_lat, &r->lat);
	uint64_t m = atomic_load_explicit(&r->lat.max_ns, memory_order_relaxed);

	if (m > eng.retired_lat_max)
		eng.retired_lat_max = m;
	pthread_mutex_unlock(&eng.retired_lock);
}

void eng_region_stats(struct eng_region *r, struct umapd_stats *out)
{
	uint64_t lat[LAT_BUCKETS] = { 0 };

	memset(out, 0, sizeof(*out));
	counters_add(out, &r->c);
	pthread_mutex_lock(&eng.lock);
	out->resident_bytes = r->nresident * r->psize;
	out->dirty_bytes = r->ndirty * r->psize;
	pthread_mutex_unlock(&eng.lock);
	lat_merge(lat, &r->lat);
	stats_finish(out, lat, atomic_load_explicit(&r->lat.max_ns, memory_order_relaxed));
}

void eng_stats(struct umapd_stats *out)
{
	uint64_t lat[LAT_BUCKETS], max;
	struct eng_region **v = NULL;
	size_t n = 0;

	pthread_mutex_lock(&eng.retired_lock);
	*out = eng.retired;
	memcpy(lat, eng.retired_lat, sizeof(lat));
	max = eng.retired_lat_max;
	pthread_mutex_unlock(&eng.retired_lock);

	if (rg_get_range(0, UINTPTR_MAX, &v, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			uint64_t m = atomic_load_explicit(&v[i]->lat.max_ns, memory_order_relaxed);

			counters_add(out, &v[i]->c);
			lat_merge(lat, &v[i]->lat);
			if (m > max)
				max = m;
			rg_put(v[i]);
		}
		free(v);
	}
	out->regions = n;
	out->resident_bytes = atomic_load_explicit(&eng.resident_now, memory_order_relaxed);
	out->dirty_bytes = atomic_load_explicit(&eng.dirty_now, memory_order_relaxed);
	out->meta_bytes = atomic_load_explicit(&eng.meta_now, memory_order_relaxed);
	out->budget_bytes = atomic_load_explicit(&eng.budget, memory_order_relaxed);
	if (eng.started) {
		out->evict_mode = eng.evict_bounce ? UMAPD_EVICT_BOUNCE : UMAPD_EVICT_DIRECT;
		out->io_engine = (uint64_t)eng.io_kind;
	}
	stats_finish(out, lat, max);
}
