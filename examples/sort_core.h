/*
 * sort_core.h - the part of the out-of-core sort examples that does not
 * depend on how the keys are mapped: making the key file, sorting an array
 * of 64-bit keys in place with N threads, and checking the result.
 *
 * umapd-sort.c (native API) and umap-sort.c (LLNL UMap API) include it, so
 * the two differ only in the lines that map and unmap the file.
 *
 * The sort is a parallel quicksort: a thread partitions its range around a
 * median of three, keeps one side and, when the other is large, offers it to
 * idle threads through a shared stack.  It sorts in place (no buffer beside
 * the keys, so the memory budget is the only memory the keys get) and its
 * first passes stream through the whole file, which is what makes it an
 * out-of-core workload.
 */
#ifndef SORT_CORE_H
#define SORT_CORE_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The i-th key of the file for a seed: a well-mixed 64-bit value. */
static inline uint64_t sort_key(uint64_t seed, uint64_t i)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + i;

	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Order-independent fingerprint of a multiset of keys: sorting must keep it. */
struct sort_sum {
	uint64_t add, xor_mix;
};

static inline void sort_sum_add(struct sort_sum *s, uint64_t k)
{
	s->add += k;
	s->xor_mix ^= sort_key(k, 7);
}

static inline double sort_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Write n keys to fd (truncated to n * 8 bytes); their fingerprint in *sum. */
static int sort_make_file(int fd, uint64_t n, uint64_t seed, struct sort_sum *sum)
{
	enum { CHUNK = 1 << 17 }; /* keys per write */
	uint64_t *buf = malloc(CHUNK * sizeof(*buf));

	memset(sum, 0, sizeof(*sum));
	if (!buf || ftruncate(fd, (off_t)(n * 8)) != 0) {
		free(buf);
		return -1;
	}
	for (uint64_t i = 0; i < n; i += CHUNK) {
		size_t m = n - i < CHUNK ? (size_t)(n - i) : CHUNK;

		for (size_t j = 0; j < m; j++) {
			buf[j] = sort_key(seed, i + j);
			sort_sum_add(sum, buf[j]);
		}
		if (pwrite(fd, buf, m * 8, (off_t)(i * 8)) != (ssize_t)(m * 8)) {
			free(buf);
			return -1;
		}
	}
	free(buf);
	/* Start cold: the keys on disk, not in the page cache. */
	if (fsync(fd) != 0)
		return -1;
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	return 0;
}

/*
 * Read the file back with pread (not through the mapping, which is gone by
 * now): ascending order and the same fingerprint as when it was made.
 * Returns 0, or -1 after printing the first problem.
 */
static int sort_check_file(int fd, uint64_t n, const struct sort_sum *want)
{
	enum { CHUNK = 1 << 17 };
	uint64_t *buf = malloc(CHUNK * sizeof(*buf)), prev = 0;
	struct sort_sum got = { 0, 0 };

	if (!buf)
		return -1;
	for (uint64_t i = 0; i < n; i += CHUNK) {
		size_t m = n - i < CHUNK ? (size_t)(n - i) : CHUNK;

		if (pread(fd, buf, m * 8, (off_t)(i * 8)) != (ssize_t)(m * 8)) {
			fprintf(stderr, "check: short read at key %llu\n", (unsigned long long)i);
			free(buf);
			return -1;
		}
		for (size_t j = 0; j < m; j++) {
			if (i + j > 0 && buf[j] < prev) {
				fprintf(stderr, "check: key %llu (%#llx) is less than the one before (%#llx)\n",
					(unsigned long long)(i + j), (unsigned long long)buf[j],
					(unsigned long long)prev);
				free(buf);
				return -1;
			}
			prev = buf[j];
			sort_sum_add(&got, buf[j]);
		}
	}
	free(buf);
	if (got.add != want->add || got.xor_mix != want->xor_mix) {
		fprintf(stderr, "check: the file is sorted but does not hold the keys it was made with\n");
		return -1;
	}
	return 0;
}

/* ---- parallel in-place quicksort ------------------------------------------------ */

#define SORT_SMALL 32          /* insertion sort below this many keys */
#define SORT_SHARE (1u << 16)  /* ranges at least this large are offered to idle threads */

struct sort_range {
	size_t lo, hi; /* [lo, hi) */
};

/* Shared by the sorting threads; lock protects every field but keys. */
struct sort_pool {
	uint64_t *keys;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct sort_range *stack;
	size_t depth, cap;
	unsigned busy; /* threads holding a range */
	int failed;    /* the stack could not grow: ranges are sorted locally instead */
};

static void sort_insertion(uint64_t *a, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		uint64_t v = a[i];
		size_t j = i;

		for (; j > 0 && a[j - 1] > v; j--)
			a[j] = a[j - 1];
		a[j] = v;
	}
}

/* Index of the median of a[i], a[j], a[k]. */
static inline size_t sort_median3(const uint64_t *a, size_t i, size_t j, size_t k)
{
	if (a[i] > a[j]) {
		size_t t = i;
		i = j;
		j = t;
	}
	return a[k] < a[i] ? i : a[k] > a[j] ? j : k;
}

/*
 * Hoare partition of a[0..n), n >= 2, around a median of three moved to
 * a[0]; with the pivot first, both sides come out non-empty.  Returns the
 * split s: a[0..s) <= pivot <= a[s..n).
 */
static size_t sort_partition(uint64_t *a, size_t n)
{
	size_t m = sort_median3(a, 0, n / 2, n - 1);
	uint64_t pivot = a[m];
	size_t i = 0, j = n;

	a[m] = a[0];
	a[0] = pivot;
	for (;;) {
		while (a[i] < pivot)
			i++;
		do
			j--;
		while (a[j] > pivot);
		if (i >= j)
			return j + 1;
		uint64_t t = a[i];
		a[i] = a[j];
		a[j] = t;
		i++;
	}
}

static int sort_offer(struct sort_pool *p, size_t lo, size_t hi)
{
	pthread_mutex_lock(&p->lock);
	if (p->depth == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 64;
		struct sort_range *s = realloc(p->stack, cap * sizeof(*s));

		if (!s) {
			p->failed = 1;
			pthread_mutex_unlock(&p->lock);
			return -1;
		}
		p->stack = s;
		p->cap = cap;
	}
	p->stack[p->depth++] = (struct sort_range){ lo, hi };
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* Sort [lo, hi): keep the larger side, offer or recurse into the smaller. */
static void sort_range(struct sort_pool *p, size_t lo, size_t hi)
{
	while (hi - lo > SORT_SMALL) {
		size_t mid = lo + sort_partition(p->keys + lo, hi - lo);
		size_t slo = lo, shi = mid; /* the smaller side */

		if (mid - lo > hi - mid) {
			slo = mid;
			shi = hi;
			hi = mid;
		} else {
			lo = mid;
		}
		if (shi - slo < SORT_SHARE || sort_offer(p, slo, shi) != 0)
			sort_range(p, slo, shi); /* depth stays O(log n): it is the smaller side */
	}
	sort_insertion(p->keys + lo, hi - lo);
}

static void *sort_worker(void *arg)
{
	struct sort_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->depth == 0 && p->busy > 0)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->depth == 0)
			break; /* nothing queued and nobody who could queue more */
		struct sort_range r = p->stack[--p->depth];
		p->busy++;
		pthread_mutex_unlock(&p->lock);
		sort_range(p, r.lo, r.hi);
		pthread_mutex_lock(&p->lock);
		if (--p->busy == 0 && p->depth == 0)
			pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Sort keys[0..n) ascending with the given number of threads.  0 or -1. */
static int sort_parallel(uint64_t *keys, size_t n, unsigned threads)
{
	struct sort_pool p = { .keys = keys };
	pthread_t *t = calloc(threads, sizeof(*t));
	unsigned started = 0;

	if (!t)
		return -1;
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.cond, NULL);
	if (sort_offer(&p, 0, n) != 0) {
		free(t);
		return -1;
	}
	for (; started < threads; started++)
		if (pthread_create(&t[started], NULL, sort_worker, &p) != 0)
			break;
	if (started == 0)
		sort_worker(&p);
	for (unsigned i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	free(p.stack);
	free(t);
	pthread_mutex_destroy(&p.lock);
	pthread_cond_destroy(&p.cond);
	return 0;
}

#endif /* SORT_CORE_H */
