/*
 * records - 8 threads on 2 cores read and write 64-byte checksummed records
 * at random in a region 8x the budget until at least 100,000 pages have been
 * evicted (UMAPD_TEST_SCALE scales the count); every read checks the
 * record's index, sequence number and checksum; at the end every record is
 * verified in the mapping, in the file after umapd_unmap, and through a
 * fresh mapping.
 *
 * Each record has one writer (record i belongs to thread i % 8), so records
 * of all threads share every page: faults, write-protect faults and
 * evictions of one page race across threads.
 */
#include "umapd_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define NTHREADS 8
#define REC_SIZE 64

struct record {
	uint64_t idx;
	uint64_t seq;
	uint8_t payload[40];
	uint64_t sum;
};
_Static_assert(sizeof(struct record) == REC_SIZE, "record size");

static struct record *recs;
static uint32_t *expect_seq; /* written by the record's owner only */
static size_t nrec;
static atomic_int stop;
static _Atomic uint64_t ops[NTHREADS], writes_done[NTHREADS];

static void rec_make(struct record *r, uint64_t idx, uint64_t seq)
{
	r->idx = idx;
	r->seq = seq;
	for (int i = 0; i < 40; i++)
		r->payload[i] = (uint8_t)(idx * 31 + seq * 7 + (uint64_t)i);
	r->sum = t_hash64(r, offsetof(struct record, sum), 0x5eed);
}

/* Check a record (a copy taken from wherever it lives). */
static void rec_check(const char *where, const struct record *r, uint64_t idx, uint64_t seq)
{
	struct record want;
	rec_make(&want, idx, seq);
	if (memcmp(r, &want, sizeof(want)) != 0) {
		const uint8_t *g = (const uint8_t *)r, *e = (const uint8_t *)&want;
		size_t i = 0;
		while (g[i] == e[i])
			i++;
		t_fail("%s: record %llu (seq %llu expected, found idx %llu seq %llu, checksum %s): first "
		       "difference at byte %zu of the record (file offset %llu): expected 0x%02x, got 0x%02x",
		       where, (unsigned long long)idx, (unsigned long long)seq, (unsigned long long)r->idx,
		       (unsigned long long)r->seq,
		       r->sum == t_hash64(r, offsetof(struct record, sum), 0x5eed) ? "valid" : "invalid", i,
		       (unsigned long long)(idx * REC_SIZE + i), e[i], g[i]);
	}
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static void *worker(void *arg)
{
	int t = (int)(intptr_t)arg;
	uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1);
	size_t mine = nrec / NTHREADS;
	uint64_t n = 0, w = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t x = rng_next(&rng);
		size_t idx = (size_t)(x % mine) * NTHREADS + (size_t)t;
		struct record copy;
		memcpy(&copy, &recs[idx], sizeof(copy));
		rec_check("read through the mapping", &copy, idx, expect_seq[idx]);
		if ((x >> 60) & 1) { /* half the operations write */
			struct record r;
			rec_make(&r, idx, expect_seq[idx] + 1);
			memcpy(&recs[idx], &r, sizeof(r));
			expect_seq[idx]++;
			w++;
		}
		n++;
		if ((n & 255) == 0) {
			atomic_store_explicit(&ops[t], n, memory_order_relaxed);
			atomic_store_explicit(&writes_done[t], w, memory_order_relaxed);
		}
	}
	atomic_store_explicit(&ops[t], n, memory_order_relaxed);
	atomic_store_explicit(&writes_done[t], w, memory_order_relaxed);
	return NULL;
}

static void progress(void)
{
	char buf[128];
	for (int t = 0; t < NTHREADS; t++) {
		snprintf(buf, sizeof(buf), "  thread %d: %llu operations\n", t,
			 (unsigned long long)atomic_load_explicit(&ops[t], memory_order_relaxed));
		if (write(2, buf, strlen(buf)) < 0)
			return;
	}
}

static void verify_all(const char *where, const struct record *base)
{
	for (size_t i = 0; i < nrec; i++) {
		struct record copy;
		memcpy(&copy, &base[i], sizeof(copy));
		rec_check(where, &copy, i, expect_seq[i]);
	}
}

int main(void)
{
	t_init("records", 240);
	t_watchdog_hook(progress);
	t_umapd_start();
	const size_t budget = 4u << 20, len = 8 * budget;
	const uint64_t target = t_scaled(100000, 5000);
	nrec = len / REC_SIZE;
	expect_seq = calloc(nrec, sizeof(*expect_seq));
	T_CHECK(expect_seq != NULL, "calloc");

	t_step("write %zu records (%zu MiB) to the file", nrec, len >> 20);
	int fd = t_tmpfile(NULL);
	struct record *init = malloc(1u << 20);
	T_CHECK(init != NULL, "malloc");
	size_t per = (1u << 20) / REC_SIZE;
	for (size_t i = 0; i < nrec; i += per) {
		for (size_t j = 0; j < per; j++)
			rec_make(&init[j], i + j, 0);
		t_pwrite_all(fd, init, 1u << 20, (off_t)(i * REC_SIZE));
	}
	free(init);
	t_set_bufsize(budget);

	t_step("map %zu MiB with a %zu MiB budget", len >> 20, budget >> 20);
	recs = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	struct umapd_stats s0, s;
	t_stats(&s0);

	t_step("%d threads until %llu evictions", NTHREADS, (unsigned long long)target);
	pthread_t th[NTHREADS];
	for (int t = 0; t < NTHREADS; t++)
		T_CHECK(pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t) == 0, "pthread_create");
	uint64_t t0 = t_now_ns();
	for (;;) {
		usleep(20000);
		t_stats(&s);
		T_CHECK(s.resident_bytes <= budget + budget / 4,
			"resident_bytes %llu exceeds the %zu-byte budget by more than 25%%",
			(unsigned long long)s.resident_bytes, budget);
		T_CHECK(s.io_errors == s0.io_errors, "%llu I/O errors", (unsigned long long)(s.io_errors - s0.io_errors));
		uint64_t ev = s.evictions - s0.evictions;
		t_step("%d threads until %llu evictions: %llu so far", NTHREADS, (unsigned long long)target,
		       (unsigned long long)ev);
		if (ev >= target)
			break;
	}
	atomic_store(&stop, 1);
	for (int t = 0; t < NTHREADS; t++)
		pthread_join(th[t], NULL);
	double secs = (double)(t_now_ns() - t0) / 1e9;
	t_stats(&s);
	uint64_t total_ops = 0, total_w = 0;
	for (int t = 0; t < NTHREADS; t++) {
		total_ops += ops[t];
		total_w += writes_done[t];
	}
	T_CHECK(s.dirty_evictions > s0.dirty_evictions, "no dirty evictions in %llu writes",
		(unsigned long long)total_w);

	t_step("verify every record in the mapping");
	verify_all("final check through the mapping", recs);
	t_step("unmap");
	t_unmap(recs);
	t_step("verify every record in the file");
	struct record *buf = malloc(len);
	T_CHECK(buf != NULL, "malloc");
	t_pread_all(fd, buf, len, 0);
	verify_all("file after umapd_unmap", buf);
	free(buf);
	T_CHECK(t_file_size(fd) == (off_t)len, "file size %lld, want %zu", (long long)t_file_size(fd), len);
	t_step("verify every record through a fresh mapping");
	recs = t_map(len, PROT_READ, 0, fd, 0, 0, 0);
	verify_all("fresh mapping after remap", recs);
	t_unmap(recs);
	close(fd);
	t_pass("%d threads, %llu ops (%llu writes) in %.1f s, %llu evictions (%llu dirty) of a region 8x the "
	       "budget; %zu records verified in the mapping, the file and a fresh mapping",
	       NTHREADS, (unsigned long long)total_ops, (unsigned long long)total_w, secs,
	       (unsigned long long)(s.evictions - s0.evictions),
	       (unsigned long long)(s.dirty_evictions - s0.dirty_evictions), nrec);
}
