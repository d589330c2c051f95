/*
 * kv-lookup - random key-value lookups in a file larger than memory.
 *
 *   kv-lookup [--size 32M] [--budget 4M] [--threads 2] [--page-size 4K]
 *             [--ops 200000] [--file PATH] [--seed N] [--mmap]
 *
 * The file is a sorted table of 64-byte records: an 8-byte key (the odd
 * numbers 1, 3, 5, ...) and 56 bytes of value computed from the key.  It is
 * mapped with umapd (read-only, no read-ahead: every lookup lands somewhere
 * else), and N threads look up random keys, half of them absent, by binary
 * search over the mapping.  Each lookup is checked: a present key must be
 * found with exactly its value, an absent one must not be found.  The top
 * levels of the search stay resident; the last few levels are the random
 * page faults that make this the random-access workload.
 * Exit status: 0 every lookup right, 1 a wrong answer, 2 a setup error.
 */
#define _GNU_SOURCE
#include <umapd.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#include "example_util.h"

struct record {
	uint64_t key;
	uint8_t value[56];
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void make_record(struct record *r, uint64_t i, uint64_t seed)
{
	r->key = 2 * i + 1;
	for (int w = 0; w < 7; w++) {
		uint64_t v = mix(r->key * 8 + (uint64_t)w + seed);
		memcpy(r->value + 8 * w, &v, 8);
	}
}

static const struct record *table;
static uint64_t nrec, seed_g, ops_per_thread;
static atomic_uint_fast64_t hits, wrong;

/* The record with this key, or NULL: plain binary search over the mapping. */
static const struct record *lookup(uint64_t key)
{
	uint64_t lo = 0, hi = nrec;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		uint64_t k = table[mid].key;

		if (k == key)
			return &table[mid];
		if (k < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void *worker(void *arg)
{
	uint64_t s = mix((uintptr_t)arg + 12345) | 1, h = 0, bad = 0;
	struct record want;

	for (uint64_t i = 0; i < ops_per_thread; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		uint64_t key = s % (2 * nrec) + 1; /* odd: present, even: absent */
		const struct record *r = lookup(key);

		if (key & 1) {
			make_record(&want, (key - 1) / 2, seed_g);
			if (!r || memcmp(r, &want, sizeof(want)) != 0)
				bad++;
			else
				h++;
		} else if (r) {
			bad++;
		}
	}
	atomic_fetch_add(&hits, h);
	atomic_fetch_add(&wrong, bad);
	return NULL;
}

int main(int argc, char **argv)
{
	struct ex_opts o = { .size = 32 << 20, .budget = 4 << 20, .threads = 2,
			     .page_size = 4096, .ops = 200000, .seed = 1 };
	char path[4096];
	struct record buf[1024];

	if (ex_parse(argc, argv, &o, "kv-lookup") != 0)
		return 2;
	nrec = o.size / sizeof(struct record);
	seed_g = o.seed;
	ops_per_thread = (o.ops + o.threads - 1) / o.threads;
	int fd = ex_open_file(&o, path, sizeof(path));
	if (fd < 0)
		return 2;

	ex_phase = "writing the table";
	for (uint64_t i = 0; i < nrec; i += 1024) {
		size_t m = nrec - i < 1024 ? (size_t)(nrec - i) : 1024;

		for (size_t j = 0; j < m; j++)
			make_record(&buf[j], i + j, o.seed);
		if (pwrite(fd, buf, m * sizeof(buf[0]), (off_t)(i * sizeof(buf[0]))) !=
		    (ssize_t)(m * sizeof(buf[0])))
			return ex_die(&o, path, "pwrite");
	}
	if (fsync(fd) != 0)
		return ex_die(&o, path, "fsync");
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* start cold */

	ex_phase = "mapping";
	size_t len = nrec * sizeof(struct record);
	if (o.use_mmap) {
		table = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		if (table == MAP_FAILED || madvise((void *)table, len, MADV_RANDOM) != 0)
			return ex_die(&o, path, "mmap");
	} else {
		/* read_ahead -1: no read-ahead, lookups are random. */
		struct umapd_region_opts ro = { .page_size = o.page_size, .read_ahead = -1 };

		if (umapd_set_bufsize(o.budget) != 0)
			return ex_die(&o, path, "umapd_set_bufsize");
		table = umapd_map(NULL, len, PROT_READ, 0, fd, 0, &ro);
		if (!table)
			return ex_die(&o, path, "umapd_map");
	}

	ex_phase = "lookups";
	struct timespec t0, t1;
	pthread_t t[1024];
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < o.threads; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) != 0)
			return ex_die(&o, path, "pthread_create");
	for (unsigned i = 0; i < o.threads; i++)
		pthread_join(t[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;

	ex_phase = "unmapping";
	if (o.use_mmap ? munmap((void *)table, len) : umapd_unmap((void *)table))
		return ex_die(&o, path, "unmap");
	uint64_t total = ops_per_thread * o.threads, bad = atomic_load(&wrong);
	printf("kv-lookup: %llu records (%s), budget %s, page %s, %u threads, %s: "
	       "%llu lookups in %.3f s (%.0f/s), %llu found, %llu wrong\n",
	       (unsigned long long)nrec, ex_size(len), ex_size(o.budget), ex_size(o.page_size),
	       o.threads, o.use_mmap ? "kernel mmap" : "umapd", (unsigned long long)total, secs,
	       (double)total / secs, (unsigned long long)atomic_load(&hits),
	       (unsigned long long)bad);
	printf("RESULT random api=%s threads=%u page=%llu size=%llu budget=%llu seconds=%.3f "
	       "ops_per_sec=%.0f ok=%d\n", o.use_mmap ? "mmap" : "umapd", o.threads,
	       (unsigned long long)o.page_size, (unsigned long long)len,
	       (unsigned long long)o.budget, secs, (double)total / secs, bad == 0);
	ex_close_file(&o, fd, path);
	return bad ? 1 : 0;
}
