/*
 * The memory store: a region's data in anonymous memory of its own, for
 * tests and for a RAM-backed region with an explicit budget (limit).
 *
 * The data lives in one anonymous mapping that grows with mremap when a
 * write goes past it.  Pages of it never written cost nothing (the kernel
 * allocates anonymous memory on first touch), and reads of them are zeros.
 * No extent op: there is no descriptor to give an asynchronous engine.
 */
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct store_memory {
	struct store base;
	uint64_t limit;          /* most bytes the data may grow to; set at open */
	/* lock: read/write hold it shared while copying, so that growth
	 * (which may move the mapping) holds it exclusive. */
	pthread_rwlock_t lock;
	char *mem;               /* under lock */
	size_t cap;              /* bytes mapped at mem; under lock */
	uint64_t size;           /* logical size; under lock (raised with atomics under the shared lock) */
};

static size_t page_round(uint64_t n)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);

	return (size_t)((n + ps - 1) & ~(uint64_t)(ps - 1));
}

static int mem_read(struct store *s, void *buf, size_t len, uint64_t off)
{
	struct store_memory *m = (struct store_memory *)s;
	size_t n = 0;

	pthread_rwlock_rdlock(&m->lock);
	if (off < m->cap)
		n = m->cap - off < len ? (size_t)(m->cap - off) : len;
	if (n)
		memcpy(buf, m->mem + off, n);
	pthread_rwlock_unlock(&m->lock);
	memset((char *)buf + n, 0, len - n);
	return 0;
}

/* Exclusive: make the mapping at least need bytes long (doubling). */
static int mem_grow(struct store_memory *m, uint64_t need)
{
	uint64_t want = m->cap ? m->cap : need;
	char *p;

	while (want < need)
		want = want > UINT64_MAX / 2 ? need : want * 2;
	if (want > m->limit)
		want = m->limit;
	if (want > SIZE_MAX / 2)
		return -ENOMEM;
	want = page_round(want);
	if (m->cap == 0)
		p = mmap(NULL, (size_t)want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			 -1, 0);
	else
		p = mremap(m->mem, m->cap, (size_t)want, MREMAP_MAYMOVE);
	if (p == MAP_FAILED)
		return -ENOMEM;
	m->mem = p;
	m->cap = (size_t)want;
	return 0;
}

static int mem_write(struct store *s, const void *buf, size_t len, uint64_t off)
{
	struct store_memory *m = (struct store_memory *)s;
	uint64_t end = off + len;
	int ret = 0;

	if (end < off || end > m->limit)
		return -ENOSPC; /* the budget the store was opened with */
	pthread_rwlock_rdlock(&m->lock);
	while (end > m->cap) {
		pthread_rwlock_unlock(&m->lock);
		pthread_rwlock_wrlock(&m->lock);
		if (end > m->cap)
			ret = mem_grow(m, end);
		pthread_rwlock_unlock(&m->lock);
		if (ret < 0)
			return ret;
		pthread_rwlock_rdlock(&m->lock);
	}
	memcpy(m->mem + off, buf, len);
	/* Concurrent writers hold the lock shared: raise size atomically. */
	uint64_t cur = __atomic_load_n(&m->size, __ATOMIC_RELAXED);

	while (cur < end && !__atomic_compare_exchange_n(&m->size, &cur, end, true, __ATOMIC_RELAXED,
							 __ATOMIC_RELAXED))
		;
	pthread_rwlock_unlock(&m->lock);
	return 0;
}

static int mem_sync(struct store *s)
{
	(void)s;
	return 0;
}

static int64_t mem_size(struct store *s)
{
	struct store_memory *m = (struct store_memory *)s;

	return (int64_t)__atomic_load_n(&m->size, __ATOMIC_RELAXED);
}

static void mem_close(struct store *s)
{
	struct store_memory *m = (struct store_memory *)s;

	if (m->cap)
		munmap(m->mem, m->cap);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

static const struct store_ops memory_ops = {
	.name = "memory",
	.read = mem_read,
	.write = mem_write,
	.sync = mem_sync,
	.size = mem_size,
	.close = mem_close,
};

int store_memory_open(uint64_t size, uint64_t limit, struct store **out)
{
	struct store_memory *m;

	if (limit == 0)
		limit = INT64_MAX;
	if (size > limit || limit > INT64_MAX)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->base.ops = &memory_ops;
	m->limit = limit;
	m->size = size;
	pthread_rwlock_init(&m->lock, NULL);
	*out = &m->base;
	return 0;
}
