/*
 * evict_race - writes racing the eviction of the same page, thousands of
 * times, under a tiny budget.  No write may be lost.
 *
 *  A. rounds: a writer stores a round number into page k (at both ends)
 *     while another thread runs umapd_evict(page k); the page is absent
 *     (a write miss), clean (a first write, a WP fault) or already dirty at
 *     the start of the round.  After each round the mapping and then the
 *     file (after an evict) hold exactly the value written.
 *  B. counter: one thread increments a counter in a page, re-reading it
 *     before each increment, while another evicts and flushes that page in
 *     a loop; the counter never goes back, and the file ends with its last
 *     value.
 *
 * (A write followed at once by umapd_flush/umapd_evict of the same page and
 * a pread is tests/integration/write_sync.c.)
 */
#include "umapd_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 16

static size_t ps;
static uint8_t *base;
static int fd;
static pthread_barrier_t bar;
static size_t rounds;
static _Atomic uint64_t round_now, counter_now;
static atomic_int stop;
static uint64_t last_val[NPAGES];

static void progress(void)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "  round %llu, counter %llu\n",
		 (unsigned long long)atomic_load(&round_now), (unsigned long long)atomic_load(&counter_now));
	if (write(2, buf, strlen(buf)) < 0) {
	}
}

static uint64_t file_u64(off_t off)
{
	uint64_t v;
	t_pread_all(fd, &v, sizeof(v), off);
	return v;
}

static void *evictor_rounds(void *arg)
{
	(void)arg;
	for (size_t r = 0; r < rounds; r++) {
		size_t k = r % NPAGES;
		pthread_barrier_wait(&bar);
		int n = 1 + (int)(r % 3);
		for (int i = 0; i < n; i++)
			if (umapd_evict(base + k * ps, ps) != 0)
				t_fail("round %zu: umapd_evict(page %zu) failed: %s", r, k, t_errname(errno));
		pthread_barrier_wait(&bar);
	}
	return NULL;
}

static void phase_rounds(void)
{
	pthread_t th;
	T_CHECK(pthread_create(&th, NULL, evictor_rounds, NULL) == 0, "pthread_create");
	const char *mode_name[3] = { "absent (write miss)", "clean (first write)", "dirty" };
	for (size_t r = 0; r < rounds; r++) {
		size_t k = r % NPAGES;
		int mode = (int)((r / NPAGES) % 3);
		volatile uint64_t *head = (volatile uint64_t *)(base + k * ps);
		volatile uint64_t *tail = (volatile uint64_t *)(base + (k + 1) * ps - 8);
		uint64_t v = r + 1;
		atomic_store_explicit(&round_now, r, memory_order_relaxed);
		/* set the page up: absent, clean or dirty (its last write was
		 * NPAGES rounds ago) */
		if (umapd_evict(base + k * ps, ps) != 0)
			t_fail("round %zu: umapd_evict(page %zu) to set up failed: %s", r, k, t_errname(errno));
		if (mode == 1)
			(void)*head;
		else if (mode == 2)
			*tail = ~v;
		pthread_barrier_wait(&bar);
		*head = v;
		*tail = v;
		pthread_barrier_wait(&bar);
		uint64_t h = *head, t = *tail;
		if (h != v || t != v)
			t_fail("round %zu, page %zu %s: mapping holds %llu/%llu after writing %llu while it was "
			       "evicted: a lost write", r, k, mode_name[mode], (unsigned long long)h,
			       (unsigned long long)t, (unsigned long long)v);
		last_val[k] = v;
	}
	pthread_join(th, NULL);
}

static void *evictor_loop(void *arg)
{
	uint8_t *page = arg;
	uint64_t i = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		int rc = (i++ % 4 == 3) ? umapd_flush(page, ps) : umapd_evict(page, ps);
		if (rc != 0)
			t_fail("umapd_evict/flush of the counter page failed: %s", t_errname(errno));
	}
	return NULL;
}

static uint64_t phase_counter(size_t n)
{
	uint8_t *page = base + 3 * ps;
	volatile uint64_t *c = (volatile uint64_t *)(page + 64);
	*c = 0;
	pthread_t th;
	T_CHECK(pthread_create(&th, NULL, evictor_loop, page) == 0, "pthread_create");
	uint64_t last = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t v = *c;
		if (v != last) {
			atomic_store(&stop, 1);
			t_fail("counter: read %llu after writing %llu while the page was evicted and flushed in a "
			       "loop: a lost write", (unsigned long long)v, (unsigned long long)last);
		}
		*c = ++last;
		if ((i & 1023) == 0)
			atomic_store_explicit(&counter_now, last, memory_order_relaxed);
	}
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	T_CHECK(*c == last, "counter: %llu at the end, want %llu", (unsigned long long)*c, (unsigned long long)last);
	return last;
}

int main(void)
{
	t_init("evict_race", 150);
	t_watchdog_hook(progress);
	t_umapd_start();
	ps = t_sys_page();
	t_set_bufsize(4 * ps); /* tiny: background eviction runs all the time too */
	fd = t_tmpfile(NULL);
	t_ftruncate(fd, NPAGES * (off_t)ps);
	base = t_map(NPAGES * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	pthread_barrier_init(&bar, NULL, 2);
	struct umapd_stats s0, s;
	t_stats(&s0);

	rounds = t_scaled(20000, 1500);
	t_step("A: %zu rounds of a write racing umapd_evict", rounds);
	phase_rounds();
	t_step("A: unmap, check the file");
	t_unmap(base);
	for (size_t k = 0; k < NPAGES && k < rounds; k++) {
		uint64_t h = file_u64((off_t)(k * ps)), t = file_u64((off_t)((k + 1) * ps - 8));
		if (h != last_val[k] || t != last_val[k])
			t_fail("A: after unmap the file holds %llu/%llu in page %zu, want the last value written, %llu",
			       (unsigned long long)h, (unsigned long long)t, k, (unsigned long long)last_val[k]);
	}
	base = t_map(NPAGES * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);

	size_t n = t_scaled(300000, 20000);
	t_step("B: counter, %zu increments against an evict/flush loop", n);
	uint64_t last = phase_counter(n);
	t_step("B: unmap, check the file");
	t_unmap(base);
	uint64_t f = file_u64(3 * (off_t)ps + 64);
	T_CHECK(f == last, "counter: the file holds %llu after unmap, want the last value written, %llu",
		(unsigned long long)f, (unsigned long long)last);
	t_stats(&s);
	T_CHECK(s.io_errors == s0.io_errors, "%llu I/O errors", (unsigned long long)(s.io_errors - s0.io_errors));
	close(fd);
	t_pass("%zu write/evict rounds (write miss, first write, dirty), counter to %llu under an evict/flush "
	       "loop: no lost write in the mapping or the file; %llu evictions", rounds,
	       (unsigned long long)last, (unsigned long long)(s.evictions - s0.evictions));
}
