/*
 * evict_cluster - the evictor writes a dirty victim's dirty neighbours with
 * it, one write for the run, not one per page.
 *
 * A user store counts its writes.  The first DIRTY pages of the region are
 * written in a random order (so the CLOCK meets them in no address order),
 * then pages elsewhere are read until the budget has been filled three
 * times over, which evicts every dirty page.  Without clustering each
 * victim was a write of its own (the victims of a batch are scattered over
 * the dirty range); with it the store sees at most a quarter as many
 * writes as pages written.  Every byte is checked afterwards, in the store
 * and through the region.
 */
#include "umapd_test.h"

#include <umapd_store.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define NP 4096         /* pages in the region */
#define BUDGET 512      /* pages */
#define DIRTY 384       /* pages written, below the high water mark */
#define SEED 21

static size_t ps;

struct cstore {
	struct umapd_store base;
	uint8_t *data;
	size_t size;
	atomic_ulong writes, pages_written;
};

static int cs_read(struct umapd_store *s, void *buf, size_t len, uint64_t off)
{
	struct cstore *c = (struct cstore *)s;
	size_t n = off < c->size ? (c->size - off < len ? c->size - off : len) : 0;

	memcpy(buf, c->data + off, n);
	memset((char *)buf + n, 0, len - n);
	return 0;
}

static int cs_write(struct umapd_store *s, const void *buf, size_t len, uint64_t off)
{
	struct cstore *c = (struct cstore *)s;

	if (off + len > c->size)
		return -ENOSPC;
	memcpy(c->data + off, buf, len);
	atomic_fetch_add(&c->writes, 1);
	atomic_fetch_add(&c->pages_written, len / ps);
	return 0;
}

static int cs_sync(struct umapd_store *s)
{
	(void)s;
	return 0;
}

static int64_t cs_size(struct umapd_store *s)
{
	return (int64_t)((struct cstore *)s)->size;
}

static void cs_close(struct umapd_store *s)
{
	(void)s;
}

static const struct umapd_store_ops cs_ops = {
	.abi = UMAPD_STORE_ABI,
	.name = "counting",
	.read = cs_read,
	.write = cs_write,
	.sync = cs_sync,
	.size = cs_size,
	.close = cs_close,
};

int main(void)
{
	static struct cstore cs = { .base = { .ops = &cs_ops } };
	char budget[32];
	size_t order[DIRTY];

	t_init("evict_cluster", 60);
	ps = t_sys_page();
	cs.size = NP * ps;
	cs.data = malloc(cs.size);
	T_CHECK(cs.data != NULL, "out of memory");
	t_fill_pat(cs.data, cs.size, 0, SEED);
	snprintf(budget, sizeof budget, "%zu", BUDGET * ps);
	T_OK(umapd_config_set("UMAPD_BUFSIZE", budget));
	t_umapd_start();

	struct umapd_region_opts o = { .page_size = ps, .read_ahead = -1 };
	uint8_t *m = umapd_map_store(NULL, NP * ps, PROT_READ | PROT_WRITE, 0, &cs.base, 0, &o);
	T_CHECK(m != NULL, "umapd_map_store: %s", t_errname(errno));

	t_step("dirty %d pages in a random order", DIRTY);
	for (size_t i = 0; i < DIRTY; i++)
		order[i] = i;
	srand(7);
	for (size_t i = DIRTY - 1; i > 0; i--) {
		size_t j = (size_t)rand() % (i + 1), x = order[i];
		order[i] = order[j];
		order[j] = x;
	}
	for (size_t i = 0; i < DIRTY; i++)
		t_fill_pat(m + order[i] * ps, ps, order[i] * ps, SEED + 1);

	t_step("read other pages until every dirty page is evicted");
	for (int lap = 0; lap < 3; lap++)
		for (size_t i = 1024; i < NP; i++)
			t_check_pat("reading other pages", m + i * ps, ps, i * ps, SEED);
	struct umapd_stats s;
	T_OK(umapd_region_stats(m, &s));
	unsigned long writes = atomic_load(&cs.writes), pages = atomic_load(&cs.pages_written);

	printf("%lu pages written in %lu writes; %llu dirty evictions\n", pages, writes,
	       (unsigned long long)s.dirty_evictions);
	T_CHECK(s.dirty_evictions >= DIRTY, "only %llu dirty evictions of %d dirty pages",
		(unsigned long long)s.dirty_evictions, DIRTY);
	T_CHECK(pages >= DIRTY, "the store got %lu pages written of %d dirty", pages, DIRTY);
	T_CHECK(writes * 4 <= pages, "%lu writes for %lu pages: neighbours were not written together", writes,
		pages);

	t_step("check");
	uint8_t *want = malloc(ps);
	T_CHECK(want != NULL, "out of memory");
	for (size_t i = 0; i < NP; i++) {
		t_fill_pat(want, ps, i * ps, i < DIRTY ? SEED + 1 : SEED);
		t_check_bytes("store", cs.data + i * ps, want, ps, i * ps);
	}
	for (size_t i = 0; i < NP; i++)
		t_check_pat("region", m + i * ps, ps, i * ps, i < DIRTY ? SEED + 1 : SEED);
	t_unmap(m);
	free(want);
	t_pass("%lu pages written back in %lu writes", pages, writes);
}
