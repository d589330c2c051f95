/*
 * concurrent - thread safety of the whole API at once: lifecycle threads
 * each map their own file (page sizes 4K/16K/64K, random offsets and
 * lengths), check it against a private shadow copy, write, flush, evict,
 * advise, prefetch and unmap it, over and over; fault threads meanwhile
 * read and write records in one long-lived shared region under a budget
 * it exceeds; a statistics thread reads process and region statistics and
 * moves the budget up and down.  Every byte is checked against its shadow.
 */
#include "umapd_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define NLIFE 4
#define NFAULT 3
#define FILE_LEN (1u << 20)
#define SHARED_LEN (8u << 20)

static size_t ps;
static size_t iters;
static atomic_int stop;
static _Atomic uint64_t life_done[NLIFE], fault_ops[NFAULT], stat_ops;
static uint8_t *shared;
static uint64_t *shared_expect; /* per 64-byte slot, written by its owner only */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static void progress(void)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "  lifecycle iterations:");
	for (int i = 0; i < NLIFE; i++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, " %llu", (unsigned long long)atomic_load(&life_done[i]));
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, "; fault ops:");
	for (int i = 0; i < NFAULT; i++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, " %llu", (unsigned long long)atomic_load(&fault_ops[i]));
	snprintf(buf + n, sizeof(buf) - (size_t)n, "; stats calls %llu\n", (unsigned long long)atomic_load(&stat_ops));
	if (write(2, buf, strlen(buf)) < 0) {
	}
}

static void *lifecycle(void *arg)
{
	int id = (int)(intptr_t)arg;
	uint64_t rng = 0x1234567ull * (uint64_t)(id + 7);
	uint8_t *shadow = malloc(FILE_LEN);
	T_CHECK(shadow != NULL, "malloc");
	t_fill_pat(shadow, FILE_LEN, 0, 50 + (uint32_t)id);
	int fd = t_tmpfile(NULL);
	t_pwrite_all(fd, shadow, FILE_LEN, 0);
	static const size_t pages[3] = { 4096, 16384, 65536 };
	for (size_t it = 0; it < iters; it++) {
		size_t pg = pages[rng_next(&rng) % 3];
		if (pg < ps)
			pg = ps;
		size_t nslots = FILE_LEN / pg;
		size_t off = (size_t)(rng_next(&rng) % nslots) * pg;
		size_t len = 1 + (size_t)(rng_next(&rng) % (FILE_LEN - off));
		int rw = (rng_next(&rng) & 3) != 0;
		struct umapd_region_opts o;
		memset(&o, 0, sizeof(o));
		o.page_size = pg;
		o.read_ahead = (long)(rng_next(&rng) % 3) - 1;
		errno = 0;
		uint8_t *p = umapd_map(NULL, len, rw ? PROT_READ | PROT_WRITE : PROT_READ, 0, fd, (off_t)off, &o);
		if (p == NULL)
			t_fail("lifecycle %d, iteration %zu: umapd_map(len %zu, off %zu, page %zu): %s", id, it, len, off,
			       pg, t_errname(errno));
		char what[128];
		snprintf(what, sizeof(what), "lifecycle %d iteration %zu (page %zu, off %zu, len %zu) first read", id,
			 it, pg, off, len);
		/* spot-check a few ranges, then everything at the end of the iteration */
		for (int c = 0; c < 4; c++) {
			size_t a = (size_t)(rng_next(&rng) % len), n = len - a < 512 ? len - a : 512;
			t_check_bytes(what, p + a, shadow + off + a, n, off + a);
		}
		if (rw) {
			int nw = 1 + (int)(rng_next(&rng) % 16);
			for (int w = 0; w < nw; w++) {
				size_t a = (size_t)(rng_next(&rng) % len), n = 1 + (size_t)(rng_next(&rng) % 3000);
				if (n > len - a)
					n = len - a;
				uint8_t v = (uint8_t)rng_next(&rng);
				for (size_t i = 0; i < n; i++) {
					p[a + i] = (uint8_t)(v + i);
					shadow[off + a + i] = (uint8_t)(v + i);
				}
			}
		}
		switch (rng_next(&rng) % 5) {
		case 0: T_OK(umapd_flush(p, len)); break;
		case 1: T_OK(umapd_evict(p, len)); break;
		case 2: T_OK(umapd_prefetch(p, len)); break;
		case 3: T_OK(umapd_advise(p, len, (int)(rng_next(&rng) % 5))); break;
		default: break;
		}
		snprintf(what, sizeof(what), "lifecycle %d iteration %zu (page %zu, off %zu, len %zu) read-back", id, it,
			 pg, off, len);
		t_check_bytes(what, p, shadow + off, len, off);
		if (umapd_region_page_size(p + len - 1) != pg)
			t_fail("lifecycle %d: umapd_region_page_size = %zu, want %zu", id,
			       umapd_region_page_size(p + len - 1), pg);
		errno = 0;
		if (umapd_unmap(p) != 0)
			t_fail("lifecycle %d, iteration %zu: umapd_unmap: %s", id, it, t_errname(errno));
		if (it % 8 == 7 || it + 1 == iters) {
			uint8_t *buf = malloc(FILE_LEN);
			T_CHECK(buf != NULL, "malloc");
			t_pread_all(fd, buf, FILE_LEN, 0);
			snprintf(what, sizeof(what), "lifecycle %d iteration %zu: file after unmap", id, it);
			t_check_bytes(what, buf, shadow, FILE_LEN, 0);
			free(buf);
		}
		atomic_store(&life_done[id], it + 1);
	}
	T_CHECK(t_file_size(fd) == FILE_LEN, "lifecycle %d: file size changed to %lld", id, (long long)t_file_size(fd));
	close(fd);
	free(shadow);
	return NULL;
}

static void *faulter(void *arg)
{
	int id = (int)(intptr_t)arg;
	uint64_t rng = 0xABCDEFull * (uint64_t)(id + 3);
	size_t nslots = SHARED_LEN / 64, n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		size_t slot = (size_t)(rng_next(&rng) % (nslots / NFAULT)) * NFAULT + (size_t)id;
		uint64_t *rec = (uint64_t *)(shared + slot * 64);
		uint64_t want = shared_expect[slot];
		for (int i = 0; i < 8; i++) {
			uint64_t exp = want ? want * 8 + (uint64_t)i : 0;
			if (rec[i] != exp)
				t_fail("shared region, slot %zu word %d (offset %zu): expected %llu, got %llu", slot, i,
				       slot * 64 + (size_t)i * 8, (unsigned long long)exp, (unsigned long long)rec[i]);
		}
		if (rng_next(&rng) & 1) {
			want = (uint64_t)id << 40 | ++n;
			for (int i = 0; i < 8; i++)
				rec[i] = want * 8 + (uint64_t)i;
			shared_expect[slot] = want;
		}
		atomic_store_explicit(&fault_ops[id], ++n, memory_order_relaxed);
	}
	return NULL;
}

static void *statter(void *arg)
{
	(void)arg;
	uint64_t n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct umapd_stats s;
		T_OK(umapd_stats(&s));
		T_OK(umapd_region_stats(shared + (n % 64) * 4096, &s));
		if (n % 50 == 0)
			T_OK(umapd_set_bufsize(n % 100 == 0 ? 1u << 20 : 3u << 20));
		char buf[64];
		T_CHECK(umapd_config_get("UMAPD_BUFSIZE", buf, sizeof(buf)) > 0, "umapd_config_get: %s", t_errname(errno));
		atomic_store(&stat_ops, ++n);
		usleep(200);
	}
	return NULL;
}

int main(void)
{
	t_init("concurrent", 200);
	t_watchdog_hook(progress);
	t_umapd_start();
	ps = t_sys_page();
	iters = t_scaled(400, 40);
	t_set_bufsize(2u << 20);
	int sfd = t_tmpfile(NULL);
	t_ftruncate(sfd, SHARED_LEN);
	shared = t_map(SHARED_LEN, PROT_READ | PROT_WRITE, 0, sfd, 0, 0, 0);
	shared_expect = calloc(SHARED_LEN / 64, sizeof(*shared_expect));
	T_CHECK(shared_expect != NULL, "calloc");

	t_step("%d lifecycle threads x %zu iterations, %d fault threads, 1 stats thread", NLIFE, iters, NFAULT);
	pthread_t lt[NLIFE], ft[NFAULT], st;
	for (int i = 0; i < NFAULT; i++)
		T_CHECK(pthread_create(&ft[i], NULL, faulter, (void *)(intptr_t)i) == 0, "pthread_create");
	T_CHECK(pthread_create(&st, NULL, statter, NULL) == 0, "pthread_create");
	for (int i = 0; i < NLIFE; i++)
		T_CHECK(pthread_create(&lt[i], NULL, lifecycle, (void *)(intptr_t)i) == 0, "pthread_create");
	for (int i = 0; i < NLIFE; i++)
		pthread_join(lt[i], NULL);
	atomic_store(&stop, 1);
	for (int i = 0; i < NFAULT; i++)
		pthread_join(ft[i], NULL);
	pthread_join(st, NULL);

	t_step("verify the shared region, unmap, verify its file");
	uint64_t total = 0;
	for (int i = 0; i < NFAULT; i++)
		total += fault_ops[i];
	uint64_t *buf = malloc(SHARED_LEN);
	T_CHECK(buf != NULL, "malloc");
	for (int pass = 0; pass < 2; pass++) {
		const uint64_t *src = (const uint64_t *)shared;
		if (pass == 1) {
			t_unmap(shared);
			t_pread_all(sfd, buf, SHARED_LEN, 0);
			src = buf;
		}
		for (size_t slot = 0; slot < SHARED_LEN / 64; slot++)
			for (int i = 0; i < 8; i++) {
				uint64_t exp = shared_expect[slot] ? shared_expect[slot] * 8 + (uint64_t)i : 0;
				if (src[slot * 8 + (size_t)i] != exp)
					t_fail("shared region %s, offset %zu: expected %llu, got %llu",
					       pass ? "file after unmap" : "mapping at the end", slot * 64 + (size_t)i * 8,
					       (unsigned long long)exp, (unsigned long long)src[slot * 8 + (size_t)i]);
			}
	}
	free(buf);
	struct umapd_stats s;
	t_stats(&s);
	T_CHECK(s.regions == 0, "%llu regions left", (unsigned long long)s.regions);
	close(sfd);
	t_pass("%d threads mapped/used/unmapped %zu regions each while %d threads made %llu faulting accesses "
	       "and stats/budget calls ran %llu times; every byte matched", NLIFE, iters, NFAULT,
	       (unsigned long long)total, (unsigned long long)stat_ops);
}
