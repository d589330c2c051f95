/*
 * soak - a long mixed workload with injected store errors; nothing written
 * may be lost (issue 5).  Usage:
 *
 *   test_soak [--seconds N] [--threads N] [--budget BYTES] [--seed N]
 *
 * defaults 600 s, 16 threads, 8 MiB (scaled by UMAPD_TEST_SCALE).
 *
 * A file 16 times the budget is mapped as 16 sub-regions, each a region of
 * its own: the even ones through a fault-injection store whose writes and
 * syncs fail now and then (transient: a retried write-back goes through),
 * the odd ones as plain file regions on the process's I/O engine; page
 * sizes alternate between 4 and 16 system pages.  The region is an array
 * of 64-byte self-checking records (slot, version, payload, checksum);
 * slot s belongs to thread s % threads, which alone writes it and keeps
 * the version it wrote last in the model.  Each thread loops over:
 *   write   a new version of one of its records                 (40%)
 *   read    one of its records, which must be exactly the model (30%)
 *   touch   a record of any thread (a fault somewhere else)     (18%)
 *   flush   a random range of a sub-region (errors are counted)  (5%)
 *   evict   a random range of a sub-region                       (5%)
 *   remap   umapd_unmap a whole sub-region (retried until its
 *           write-backs get through) and map it again; every
 *           record of it must then read exactly the model        (2%)
 * The evictors run all along (the region is 16 budgets), so eviction
 * races the flushes, evicts and unmaps.  At the end every record is
 * checked in memory, everything is unmapped, and every record is checked
 * in the file.  A record that does not hold its model version (or does not
 * check) is a lost write.  Prints operations, evictions, injected faults
 * and lost writes; exits non-zero on any loss.
 */
#include "umapd_test.h"

#include <umapd_store.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define NSUB 16
#define REC 64
#define INJECT_SPEC "write_error=EIO:0.02,sync_error=EIO:0.05"

struct rec {
	uint64_t slot, version, payload[5], check;
};

struct sub {
	pthread_rwlock_t lock;     /* read: touching the region; write: unmapping it */
	uint8_t *base;             /* under lock */
	struct umapd_store *store; /* injection store, or NULL; under lock */
	uint64_t off;              /* file offset of the sub-region */
	size_t page_size;
	unsigned maps;             /* times mapped; under lock (write) */
};

static size_t ps, sublen, nslots, nthreads = 16;
static int fd;
static struct sub subs[NSUB];
static _Atomic uint64_t *model;
static _Atomic int stop;
static _Atomic uint64_t n_ops, n_writes, n_reads, n_flush, n_flush_err, n_evict, n_evict_err, n_remap,
	n_unmap_retry, n_injected;
static uint64_t seed = 1;

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ull;
	x ^= x >> 27;
	x *= 0x81dadef4bc2dd44dull;
	return x ^ (x >> 33);
}

static void rec_make(struct rec *r, uint64_t slot, uint64_t version)
{
	r->slot = slot;
	r->version = version;
	for (int i = 0; i < 5; i++)
		r->payload[i] = mix(slot * 31 + version * 7 + (uint64_t)i + seed);
	r->check = t_hash64(r, offsetof(struct rec, check), 0x50a4);
}

/* 0: the record is (slot, version); else a description of what is wrong. */
static const char *rec_bad(const struct rec *r, uint64_t slot, uint64_t version)
{
	static const struct rec zero;

	if (version == 0 && memcmp(r, &zero, sizeof(zero)) == 0)
		return NULL;
	if (r->check != t_hash64(r, offsetof(struct rec, check), 0x50a4))
		return "checksum";
	if (r->slot != slot)
		return "slot";
	if (r->version != version)
		return r->version < version ? "older version (lost write)" : "newer version";
	for (int i = 0; i < 5; i++)
		if (r->payload[i] != mix(slot * 31 + version * 7 + (uint64_t)i + seed))
			return "payload";
	return NULL;
}

static void sub_map(struct sub *s, unsigned k)
{
	struct umapd_region_opts o;
	memset(&o, 0, sizeof(o));
	o.page_size = s->page_size;
	if (k % 2 == 0) {
		struct umapd_store *f = NULL, *in = NULL;
		char spec[128];
		snprintf(spec, sizeof(spec), INJECT_SPEC ",seed=%llu", (unsigned long long)(seed * 131 + k * 17 + s->maps));
		T_OK(umapd_store_file(fd, 0, &f));
		T_OK(umapd_store_inject(f, spec, &in));
		s->base = umapd_map_store(NULL, sublen, PROT_READ | PROT_WRITE, 0, in, s->off, &o);
		T_CHECK(s->base != NULL, "umapd_map_store(sub %u): %s", k, t_errname(errno));
		s->store = in;
	} else {
		s->base = umapd_map(NULL, sublen, PROT_READ | PROT_WRITE, 0, fd, (off_t)s->off, &o);
		T_CHECK(s->base != NULL, "umapd_map(sub %u): %s", k, t_errname(errno));
		s->store = NULL;
	}
	s->maps++;
}

/* Unmap, retrying while injected write errors make it fail (they are
 * transient); the injection store's counters are taken first. */
static void sub_unmap(struct sub *s, unsigned k)
{
	uint64_t injected = 0;
	for (unsigned tries = 0;; tries++) {
		if (s->store) {
			struct umapd_inject_counters n;
			T_OK(umapd_store_inject_counters(s->store, &n));
			injected = n.write_errors + n.sync_errors + n.read_errors;
		}
		if (umapd_unmap(s->base) == 0)
			break;
		T_CHECK(errno == EIO, "umapd_unmap(sub %u): %s", k, t_errname(errno));
		T_CHECK(tries < 100000, "umapd_unmap(sub %u) still fails after %u tries", k, tries);
		atomic_fetch_add(&n_unmap_retry, 1);
	}
	atomic_fetch_add(&n_injected, injected);
	s->base = NULL;
	s->store = NULL;
}

static unsigned slot_sub(uint64_t slot)
{
	return (unsigned)(slot * REC / sublen);
}

/* Under subs[k].lock. */
static struct rec *slot_addr(uint64_t slot, unsigned *k)
{
	uint64_t byte = slot * REC;
	*k = (unsigned)(byte / sublen);
	return (struct rec *)(subs[*k].base + byte % sublen);
}

static void range_of(uint64_t *x, size_t *start, size_t *len)
{
	*x = mix(*x + 1);
	size_t pages = sublen / ps;
	size_t a = (size_t)(*x % pages), n = 1 + (size_t)((*x >> 20) % (pages / 8 + 1));
	if (a + n > pages)
		n = pages - a;
	*start = a * ps;
	*len = n * ps;
}

static void *worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg, k;
	uint64_t x = mix(seed * 1000003 + id), mine = nslots / nthreads;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		x = mix(x);
		unsigned op = (unsigned)(x % 100);
		uint64_t slot = (x >> 8) % mine * nthreads + id;
		struct rec r;

		if (op < 40) { /* write */
			uint64_t v = atomic_load_explicit(&model[slot], memory_order_relaxed) + 1;
			rec_make(&r, slot, v);
			k = slot_sub(slot);
			pthread_rwlock_rdlock(&subs[k].lock);
			struct rec *a = slot_addr(slot, &k);
			memcpy(a, &r, sizeof(r));
			atomic_store_explicit(&model[slot], v, memory_order_relaxed);
			pthread_rwlock_unlock(&subs[k].lock);
			atomic_fetch_add_explicit(&n_writes, 1, memory_order_relaxed);
		} else if (op < 70) { /* read own */
			k = slot_sub(slot);
			pthread_rwlock_rdlock(&subs[k].lock);
			memcpy(&r, slot_addr(slot, &k), sizeof(r));
			uint64_t v = atomic_load_explicit(&model[slot], memory_order_relaxed);
			pthread_rwlock_unlock(&subs[k].lock);
			const char *bad = rec_bad(&r, slot, v);
			if (bad)
				t_fail("thread %u: record %llu (sub %u): %s: holds slot %llu version %llu, model %llu", id,
				       (unsigned long long)slot, k, bad, (unsigned long long)r.slot,
				       (unsigned long long)r.version, (unsigned long long)v);
			atomic_fetch_add_explicit(&n_reads, 1, memory_order_relaxed);
		} else if (op < 88) { /* touch anyone's */
			uint64_t any = (x >> 12) % nslots;
			k = slot_sub(any);
			pthread_rwlock_rdlock(&subs[k].lock);
			volatile uint64_t sink = ((volatile struct rec *)slot_addr(any, &k))->version;
			(void)sink;
			pthread_rwlock_unlock(&subs[k].lock);
		} else if (op < 98) { /* flush or evict a range */
			size_t start, len;
			k = (unsigned)((x >> 16) % NSUB);
			range_of(&x, &start, &len);
			pthread_rwlock_rdlock(&subs[k].lock);
			int ret = op < 93 ? umapd_flush(subs[k].base + start, len) : umapd_evict(subs[k].base + start, len);
			int e = errno;
			pthread_rwlock_unlock(&subs[k].lock);
			if (ret != 0)
				T_CHECK(e == EIO, "%s(sub %u, %zu+%zu): %s", op < 93 ? "umapd_flush" : "umapd_evict", k,
					start, len, t_errname(e));
			atomic_fetch_add_explicit(op < 93 ? &n_flush : &n_evict, 1, memory_order_relaxed);
			if (ret != 0)
				atomic_fetch_add_explicit(op < 93 ? &n_flush_err : &n_evict_err, 1, memory_order_relaxed);
		} else { /* unmap a sub-region and map it again */
			k = (unsigned)((x >> 16) % NSUB);
			struct sub *s = &subs[k];
			pthread_rwlock_wrlock(&s->lock);
			sub_unmap(s, k);
			sub_map(s, k);
			uint64_t first = s->off / REC, end = (s->off + sublen) / REC;
			for (uint64_t q = first; q < end; q++) {
				const struct rec *a = (const struct rec *)(s->base + (q - first) * REC);
				uint64_t v = atomic_load_explicit(&model[q], memory_order_relaxed);
				const char *bad = rec_bad(a, q, v);
				if (bad)
					t_fail("after remapping sub %u: record %llu: %s: holds version %llu, model %llu", k,
					       (unsigned long long)q, bad, (unsigned long long)a->version,
					       (unsigned long long)v);
			}
			pthread_rwlock_unlock(&s->lock);
			atomic_fetch_add_explicit(&n_remap, 1, memory_order_relaxed);
		}
		atomic_fetch_add_explicit(&n_ops, 1, memory_order_relaxed);
	}
	return NULL;
}

static void progress(FILE *f, const char *what)
{
	struct umapd_stats st;
	memset(&st, 0, sizeof(st));
	umapd_stats(&st);
	fprintf(f,
		"%s: %llu ops (%llu writes, %llu reads, %llu flushes %llu failed, %llu evicts %llu failed, %llu remaps, "
		"%llu unmap retries), %llu faults, %llu evictions, %llu io_errors, %llu stuck\n",
		what, (unsigned long long)n_ops, (unsigned long long)n_writes, (unsigned long long)n_reads,
		(unsigned long long)n_flush, (unsigned long long)n_flush_err, (unsigned long long)n_evict,
		(unsigned long long)n_evict_err, (unsigned long long)n_remap, (unsigned long long)n_unmap_retry,
		(unsigned long long)st.faults, (unsigned long long)st.evictions, (unsigned long long)st.io_errors,
		(unsigned long long)st.stuck_faults);
	fflush(f);
}

static void hook(void)
{
	progress(stderr, "  soak progress");
}

int main(int argc, char **argv)
{
	unsigned seconds = 600;
	size_t budget = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			nthreads = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc)
			budget = strtoull(argv[++i], NULL, 0);
		else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else {
			fprintf(stderr, "usage: %s [--seconds N] [--threads N] [--budget BYTES] [--seed N]\n", argv[0]);
			return 2;
		}
	}
	if (nthreads < 1 || nthreads > 256) {
		fprintf(stderr, "soak: --threads 1..256\n");
		return 2;
	}
	/* Setup and the final checks get their own minutes on top. */
	t_init("soak", seconds + 300);
	t_watchdog_hook(hook);
	ps = t_sys_page();
	if (budget == 0)
		budget = t_scaled(8u << 20, 64 * ps);
	budget = (budget + 16 * ps - 1) / (16 * ps) * (16 * ps);
	sublen = budget; /* 16 sub-regions: the region is 16 budgets */
	nslots = NSUB * sublen / REC;
	t_umapd_start();
	t_set_bufsize(budget);
	model = calloc(nslots, sizeof(*model));
	T_CHECK(model != NULL, "calloc(model)");

	fd = t_tmpfile(NULL);
	t_ftruncate(fd, (off_t)(NSUB * sublen));
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	for (unsigned k = 0; k < NSUB; k++) {
		pthread_rwlock_init(&subs[k].lock, &ra);
		subs[k].off = (uint64_t)k * sublen;
		subs[k].page_size = (k / 2) % 2 ? 16 * ps : ps;
		sub_map(&subs[k], k);
	}
	printf("soak: %u s, %zu threads, budget %zu KiB, region %zu KiB in %d sub-regions (%zu records), "
	       "injection \"%s\" on the even ones, seed %llu\n",
	       seconds, nthreads, budget >> 10, NSUB * sublen >> 10, NSUB, nslots, INJECT_SPEC,
	       (unsigned long long)seed);
	fflush(stdout);

	pthread_t *th = calloc(nthreads, sizeof(*th));
	T_CHECK(th != NULL, "calloc");
	for (size_t i = 0; i < nthreads; i++)
		T_CHECK(pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i) == 0, "pthread_create");
	uint64_t end = t_now_ns() + (uint64_t)seconds * 1000000000ull, next = t_now_ns() + 60000000000ull;
	while (t_now_ns() < end) {
		usleep(100000);
		if (t_now_ns() >= next) {
			progress(stdout, "soak");
			next += 60000000000ull;
		}
	}
	atomic_store(&stop, 1);
	for (size_t i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	free(th);

	t_step("final check in memory");
	uint64_t lost = 0, first_lost = UINT64_MAX;
	for (uint64_t q = 0; q < nslots; q++) {
		unsigned k;
		const struct rec *a = slot_addr(q, &k);
		if (rec_bad(a, q, model[q])) {
			if (!lost)
				first_lost = q;
			lost++;
		}
	}
	struct umapd_stats st;
	t_stats(&st);
	t_step("final unmaps");
	for (unsigned k = 0; k < NSUB; k++)
		sub_unmap(&subs[k], k);
	t_step("final check in the file");
	uint64_t lost_file = 0, first_lost_file = UINT64_MAX;
	size_t chunk = 1 << 20;
	uint8_t *buf = malloc(chunk);
	T_CHECK(buf != NULL, "malloc");
	for (uint64_t off = 0; off < NSUB * sublen; off += chunk) {
		size_t n = NSUB * sublen - off < chunk ? NSUB * sublen - off : chunk;
		t_pread_all(fd, buf, n, (off_t)off);
		for (size_t i = 0; i < n; i += REC) {
			uint64_t q = (off + i) / REC;
			if (rec_bad((const struct rec *)(buf + i), q, model[q])) {
				if (!lost_file)
					first_lost_file = q;
				lost_file++;
			}
		}
	}
	free(buf);
	printf("soak: %llu ops (%llu writes, %llu reads, %llu flushes, %llu evicts, %llu remaps), %llu faults, "
	       "%llu evictions, %llu injected faults (%llu failed flushes, %llu failed evicts, %llu unmap retries), "
	       "%llu io_errors; lost writes: %llu in memory, %llu in the file\n",
	       (unsigned long long)n_ops, (unsigned long long)n_writes, (unsigned long long)n_reads,
	       (unsigned long long)n_flush, (unsigned long long)n_evict, (unsigned long long)n_remap,
	       (unsigned long long)st.faults, (unsigned long long)st.evictions, (unsigned long long)n_injected,
	       (unsigned long long)n_flush_err, (unsigned long long)n_evict_err, (unsigned long long)n_unmap_retry,
	       (unsigned long long)st.io_errors, (unsigned long long)lost, (unsigned long long)lost_file);
	fflush(stdout);
	T_CHECK(lost == 0, "%llu lost writes in memory, the first record %llu (model version %llu)",
		(unsigned long long)lost, (unsigned long long)first_lost,
		(unsigned long long)(lost ? model[first_lost] : 0));
	T_CHECK(lost_file == 0, "%llu lost writes in the file, the first record %llu (model version %llu)",
		(unsigned long long)lost_file, (unsigned long long)first_lost_file,
		(unsigned long long)(lost_file ? model[first_lost_file] : 0));
	T_CHECK(n_injected > 0, "no fault was injected: the soak tested nothing it promises");
	T_CHECK(st.evictions > 0, "nothing was evicted");
	close(fd);
	t_pass("%u s, %llu ops, %llu evictions, %llu injected faults, 0 lost writes", seconds,
	       (unsigned long long)n_ops, (unsigned long long)st.evictions, (unsigned long long)n_injected);
}
