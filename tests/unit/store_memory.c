/*
 * store_memory - lib/store memory store: zeros until written, byte-exact
 * writes, size grows with writes past it, the limit refuses writes with
 * ENOSPC, growth keeps what was written (the mapping may move) also while
 * other threads write, and there is no extent op.
 */
#include "umapd_test.h"
#include "store/store.h"

#include <pthread.h>
#include <stdlib.h>

static int nchecks;

#define THREADS 4
#define PER_THREAD 256

static struct store *shared;

/* Each thread writes its own interleaved 4 KiB slots, growing the store. */
static void *writer(void *arg)
{
	int id = (int)(intptr_t)arg;
	uint8_t buf[4096];
	for (int i = 0; i < PER_THREAD; i++) {
		uint64_t off = ((uint64_t)i * THREADS + (uint64_t)id) * 4096;
		t_fill_pat(buf, sizeof(buf), off, 9);
		if (store_write(shared, buf, sizeof(buf), off) != 0)
			return (void *)1;
	}
	return NULL;
}

int main(void)
{
	t_init("store_memory", 60);
	struct store *s = NULL;
	T_CHECK(store_memory_open(10, 5, &s) == -EINVAL, "size above limit");

	t_step("fixed budget");
	T_OK(store_memory_open(10000, 1 << 20, &s));
	T_CHECK(store_size(s) == 10000, "size %lld", (long long)store_size(s));
	uint8_t *buf = malloc(1 << 20);
	memset(buf, 0xAA, 65536);
	T_OK(store_read(s, buf, 65536, 0));
	t_check_zero("a new memory store", buf, 65536, 0);
	t_fill_pat(buf, 5000, 3000, 1);
	T_OK(store_write(s, buf, 5000, 3000));
	T_CHECK(store_size(s) == 10000, "a write inside the size changed it: %lld", (long long)store_size(s));
	t_fill_pat(buf, 4096, 100000, 2);
	T_OK(store_write(s, buf, 4096, 100000));
	T_CHECK(store_size(s) == 104096, "size after a write past it %lld", (long long)store_size(s));
	memset(buf, 0, 200000);
	T_OK(store_read(s, buf, 200000, 0));
	t_check_zero("before the first write", buf, 3000, 0);
	t_check_pat("first write", buf + 3000, 5000, 3000, 1);
	t_check_zero("between", buf + 8000, 100000 - 8000, 8000);
	t_check_pat("second write", buf + 100000, 4096, 100000, 2);
	t_check_zero("past the size", buf + 104096, 200000 - 104096, 104096);
	T_CHECK(store_write(s, buf, 4096, (1 << 20) - 4095) == -ENOSPC, "a write past the limit");
	T_OK(store_write(s, buf, 4096, (1 << 20) - 4096));
	T_OK(store_sync(s));
	struct store_extent x;
	T_CHECK(store_extent(s, 0, 4096, 0, &x) == -EOPNOTSUPP, "memory store extent");
	store_close(s);
	nchecks += 12;

	t_step("unlimited, grown by %d threads at once", THREADS);
	T_OK(store_memory_open(0, 0, &shared));
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++)
		T_CHECK(pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i) == 0, "pthread_create");
	for (int i = 0; i < THREADS; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		T_CHECK(ret == NULL, "writer %d failed", i);
	}
	size_t total = (size_t)THREADS * PER_THREAD * 4096;
	T_CHECK(store_size(shared) == (int64_t)total, "size %lld, want %zu", (long long)store_size(shared), total);
	uint8_t *all = malloc(total);
	T_OK(store_read(shared, all, total, 0));
	t_check_pat("everything the threads wrote", all, total, 0, 9);
	store_close(shared);
	nchecks += 3;
	free(all);
	free(buf);
	t_pass("%d checks: zeros, byte-exact writes, size growth, limit (ENOSPC), concurrent growth, no extent",
	       nchecks);
}
