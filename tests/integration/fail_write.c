/*
 * fail_write - write-back errors keep the data (docs/failure-semantics.md,
 * "Write-back errors"); every check compares bytes with what was written.
 *   a. write_error=EIO: umapd_flush fails with EIO, the pages stay resident
 *      and dirty with their bytes, the file is untouched; the error is
 *      reported once: cleared, the next flush writes and returns 0;
 *   b. EDQUOT (fail_writes_after, write_error=EDQUOT): the flush returns EDQUOT;
 *      sync_error=EIO: the flush returns EIO though the data was written;
 *   c. background eviction against a failing store: dirty pages stay, the
 *      evictor drops clean ones so reads go on; the background error is
 *      returned once by the next flush, which also writes the data;
 *   d. a store that disappears (a user store whose every op then fails
 *      with ENODEV): flush and unmap fail, the region stays mapped with its
 *      bytes; when it comes back, unmap succeeds and the store holds them;
 *   e. (in a re-executed child, for its log) ENOSPC with every resident
 *      page dirty: a writer's faults wait for memory, counted in
 *      fault_wait_budget and stuck_faults and logged; raising enospc_after
 *      lets it finish by itself; the flush reports ENOSPC once; the file
 *      holds every byte.
 */
#include "umapd_test.h"

#include <umapd_store.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static size_t ps;
static int nchecks;

static void inj_counters(struct umapd_store *s, struct umapd_inject_counters *n)
{
	memset(n, 0, sizeof(*n));
	T_OK(umapd_store_inject_counters(s, n));
}

/* Read-ahead of the next map_inject (0: the default). */
static long next_ra;

/* Map len bytes of a fresh file holding pattern `seed` through an injection store. */
static uint8_t *map_inject(size_t len, uint32_t seed, int *fd_out, struct umapd_store **s_out)
{
	struct umapd_region_opts o;
	memset(&o, 0, sizeof(o));
	o.read_ahead = next_ra;
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, len, seed);
	struct umapd_store *f = NULL, *s = NULL;
	T_OK(umapd_store_file(fd, 0, &f));
	T_OK(umapd_store_inject(f, "", &s));
	uint8_t *p = umapd_map_store(NULL, len, PROT_READ | PROT_WRITE, 0, s, 0, &o);
	T_CHECK(p != NULL, "umapd_map_store: %s", t_errname(errno));
	*fd_out = fd;
	*s_out = s;
	return p;
}

/* --- d. a store that disappears --- */
struct gone_store {
	struct umapd_store base;
	uint8_t *data;
	size_t size;
	_Atomic int gone;
};

static int gone_read(struct umapd_store *s, void *buf, size_t len, uint64_t off)
{
	struct gone_store *g = (struct gone_store *)s;

	if (atomic_load(&g->gone))
		return -ENODEV;
	memset(buf, 0, len);
	if (off < g->size)
		memcpy(buf, g->data + off, len < g->size - off ? len : g->size - off);
	return 0;
}

static int gone_write(struct umapd_store *s, const void *buf, size_t len, uint64_t off)
{
	struct gone_store *g = (struct gone_store *)s;

	if (atomic_load(&g->gone))
		return -ENODEV;
	if (off > g->size || len > g->size - off)
		return -ENOSPC;
	memcpy(g->data + off, buf, len);
	return 0;
}

static int gone_sync(struct umapd_store *s)
{
	return atomic_load(&((struct gone_store *)s)->gone) ? -ENODEV : 0;
}

static int64_t gone_size(struct umapd_store *s)
{
	return (int64_t)((struct gone_store *)s)->size;
}

/* The test keeps the data to check it after the unmap. */
static uint8_t *gone_data;

static void gone_close(struct umapd_store *s)
{
	gone_data = ((struct gone_store *)s)->data;
	free(s);
}

static const struct umapd_store_ops gone_ops = {
	.abi = UMAPD_STORE_ABI, .name = "test-gone", .read = gone_read, .write = gone_write,
	.sync = gone_sync, .size = gone_size, .close = gone_close,
};

/* --- e. the budget full of dirty pages, in a child --- */
#define E_PAGES 128
#define E_BUDGET 32
static uint8_t *e_p;
static _Atomic size_t e_done;

static void *e_writer(void *arg)
{
	(void)arg;
	for (size_t i = 0; i < E_PAGES; i++) {
		t_fill_pat(e_p + i * ps, ps, i * ps, 52);
		atomic_store(&e_done, i + 1);
	}
	return NULL;
}

static void e_hook(void)
{
	fprintf(stderr, "  writer progress: %zu of %d pages\n", atomic_load(&e_done), E_PAGES);
}

static int child_enospc(void)
{
	t_init("fail_write_enospc", 60);
	t_watchdog_hook(e_hook);
	t_umapd_start();
	ps = t_sys_page();
	t_set_bufsize(E_BUDGET * ps);
	int fd;
	struct umapd_store *s;
	e_p = map_inject(E_PAGES * ps, 51, &fd, &s);
	struct umapd_inject_counters n;
	inj_counters(s, &n);
	char spec[80];
	snprintf(spec, sizeof(spec), "enospc_after=%llu", (unsigned long long)n.bytes_written);
	T_OK(umapd_store_inject_set(s, spec)); /* the disk is full from now on */

	t_step("e. a writer fills the budget with dirty pages");
	pthread_t th;
	T_CHECK(pthread_create(&th, NULL, e_writer, NULL) == 0, "pthread_create");
	size_t last = 0;
	uint64_t still_since = t_now_ns();
	while (t_now_ns() - still_since < 1500000000ull) { /* 1.5 s without progress */
		size_t d = atomic_load(&e_done);
		T_CHECK(d < E_PAGES, "the writer finished %d pages with a budget of %d and a full disk: "
			"where did the dirty pages go?", E_PAGES, E_BUDGET);
		if (d != last) {
			last = d;
			still_since = t_now_ns();
		}
		usleep(20000);
	}
	struct umapd_stats st;
	t_stats(&st);
	inj_counters(s, &n);
	T_CHECK(st.fault_wait_budget > 0, "the stalled writer's faults did not wait for budget");
	T_CHECK(st.stuck_faults > 0, "the stalled fault was not reported stuck (UMAPD_FAULT_TIMEOUT=300)");
	T_CHECK(n.enospc_errors > 0, "no write met ENOSPC");
	T_CHECK(st.dirty_bytes >= (last > E_BUDGET ? E_BUDGET - 2 : last - 1) * ps,
		"dirty bytes %llu with %zu pages written", (unsigned long long)st.dirty_bytes, last);
	t_check_pat("what the writer wrote, while it waits", e_p, last * ps, 0, 52);
	size_t stalled_at = last;

	t_step("e. space freed: the writer goes on by itself");
	T_OK(umapd_store_inject_set(s, ""));
	pthread_join(th, NULL);
	t_check_pat("the region after the stall", e_p, E_PAGES * ps, 0, 52);
	errno = 0;
	int r1 = umapd_flush(e_p, E_PAGES * ps), e1 = errno;
	T_CHECK(r1 == -1 && e1 == ENOSPC, "the first flush after the ENOSPC write-backs: %d %s, want -1 ENOSPC "
		"(the background error, reported once)", r1, t_errname(e1));
	T_OK(umapd_flush(e_p, E_PAGES * ps));
	t_check_file_pat("the file after the stall", fd, 0, E_PAGES * ps, 52);
	t_unmap(e_p);
	printf("fail_write_enospc: writer stalled at page %zu of %d (budget %d pages), %llu faults waited, "
	       "%llu stuck, %llu ENOSPC; resumed and every byte reached the file\n",
	       stalled_at, E_PAGES, E_BUDGET, (unsigned long long)st.fault_wait_budget,
	       (unsigned long long)st.stuck_faults, (unsigned long long)n.enospc_errors);
	fflush(stdout);
	close(fd);
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "enospc") == 0)
		return child_enospc();
	t_init("fail_write", 150);
	t_umapd_start();
	ps = t_sys_page();
	t_set_bufsize(64u << 20);
	struct umapd_stats st;
	struct umapd_inject_counters n;
	int fd;
	struct umapd_store *s;

	t_step("a. write_error=EIO, reported once");
	const size_t alen = 32 * ps;
	uint8_t *p = map_inject(alen, 1, &fd, &s);
	t_fill_pat(p, alen, 0, 2);
	T_OK(umapd_store_inject_set(s, "write_error=EIO"));
	T_ERR(umapd_flush(p, alen), EIO);
	t_region_stats(p, &st);
	T_CHECK(st.dirty_bytes == alen, "dirty bytes %llu after a failed flush, want %zu",
		(unsigned long long)st.dirty_bytes, alen);
	T_CHECK(st.resident_bytes >= alen, "resident bytes %llu < %zu", (unsigned long long)st.resident_bytes, alen);
	t_check_pat("the region after EIO", p, alen, 0, 2);
	t_check_file_pat("the file after EIO", fd, 0, alen, 1);
	T_OK(umapd_store_inject_set(s, ""));
	T_OK(umapd_flush(p, alen)); /* the EIO was returned already: not again */
	t_check_file_pat("the file after the retried flush", fd, 0, alen, 2);
	T_OK(umapd_flush(p, alen));
	nchecks += 6;

	t_step("b. EDQUOT, then a failing sync");
	t_fill_pat(p, alen, 0, 3);
	T_OK(umapd_store_inject_set(s, "fail_writes_after=0,write_error=EDQUOT"));
	T_ERR(umapd_flush(p, alen), EDQUOT);
	t_region_stats(p, &st);
	T_CHECK(st.dirty_bytes > 0, "dirty bytes %llu after EDQUOT",
		(unsigned long long)st.dirty_bytes);
	t_check_pat("the region after EDQUOT", p, alen, 0, 3);
	T_OK(umapd_store_inject_set(s, "sync_error=EIO"));
	T_ERR(umapd_flush(p, alen), EIO);
	t_check_file_pat("the file after a flush whose sync failed", fd, 0, alen, 3);
	T_OK(umapd_store_inject_set(s, ""));
	t_unmap(p);
	close(fd);
	nchecks += 4;

	t_step("c. background eviction against a failing store");
	t_set_bufsize(64 * ps);
	const size_t clen = 512 * ps, cdirty = 24;
	/* No read-ahead: a read stream right after a write stream may be read
	 * ahead writable and dirty (a read-modify-write pass), and such pages
	 * cannot be dropped while writes fail; this part is about pages the
	 * application only read. */
	next_ra = -1;
	p = map_inject(clen, 4, &fd, &s);
	next_ra = 0;
	t_fill_pat(p, cdirty * ps, 0, 5);
	T_OK(umapd_store_inject_set(s, "write_error=EIO"));
	for (int pass = 0; pass < 3; pass++)
		t_check_pat("clean pages read through a budget of 64 pages", p + cdirty * ps, clen - cdirty * ps,
			    cdirty * ps, 4);
	t_region_stats(p, &st);
	inj_counters(s, &n);
	T_CHECK(st.evictions > 0, "nothing evicted reading %zu pages with a budget of 64", clen / ps);
	T_CHECK(st.dirty_bytes == cdirty * ps, "dirty bytes %llu, want %zu", (unsigned long long)st.dirty_bytes,
		cdirty * ps);
	t_check_pat("dirty pages after the evictor met EIO", p, cdirty * ps, 0, 5);
	t_check_file_pat("the file's dirty part, untouched", fd, 0, cdirty * ps, 4);
	uint64_t bg_errors = n.write_errors;
	T_OK(umapd_store_inject_set(s, ""));
	errno = 0;
	int r = umapd_flush(p, clen), e = errno;
	if (bg_errors > 0)
		T_CHECK(r == -1 && e == EIO, "%llu background write-backs failed; the next flush returned %d %s, "
			"want -1 EIO", (unsigned long long)bg_errors, r, t_errname(e));
	else
		T_CHECK(r == 0, "flush: %s", t_errname(e));
	T_OK(umapd_flush(p, clen));
	t_check_file_pat("the file after the flush", fd, 0, cdirty * ps, 5);
	t_check_file_pat("the file's clean part", fd, cdirty * ps, clen - cdirty * ps, 4);
	t_unmap(p);
	close(fd);
	t_set_bufsize(64u << 20);
	nchecks += 6;

	t_step("d. a store that disappears and comes back");
	struct gone_store *g = calloc(1, sizeof(*g));
	T_CHECK(g != NULL, "calloc");
	g->base.ops = &gone_ops;
	g->size = 16 * ps;
	g->data = malloc(g->size);
	T_CHECK(g->data != NULL, "malloc");
	t_fill_pat(g->data, g->size, 0, 6);
	uint8_t *q = umapd_map_store(NULL, g->size, PROT_READ | PROT_WRITE, 0, &g->base, 0, NULL);
	T_CHECK(q != NULL, "umapd_map_store: %s", t_errname(errno));
	t_fill_pat(q, g->size, 0, 7);
	atomic_store(&g->gone, 1);
	T_ERR(umapd_flush(q, g->size), ENODEV);
	T_ERR(umapd_unmap(q), ENODEV);
	t_check_pat("the region after its store went away", q, g->size, 0, 7);
	t_fill_pat(q, ps, 0, 8); /* still usable */
	t_check_pat("the store's data, untouched", g->data, g->size, 0, 6);
	atomic_store(&g->gone, 0);
	size_t gsize = g->size; /* the unmap closes the store, which frees g */
	t_unmap(q);
	T_CHECK(gone_data != NULL, "the store was not closed by the unmap");
	t_check_pat("the store after it came back (page 0)", gone_data, ps, 0, 8);
	t_check_pat("the store after it came back", gone_data + ps, gsize - ps, ps, 7);
	free(gone_data);
	nchecks += 5;

	t_step("e. ENOSPC with the budget full of dirty pages (child)");
	char io[64] = "";
	const char *ev = getenv("UMAPD_IO");
	if (ev)
		snprintf(io, sizeof(io), "UMAPD_IO=%s", ev);
	const char *env[] = { "UMAPD_FAULT_TIMEOUT=300", "UMAPD_LOG_LEVEL=warn", io[0] ? io : NULL, NULL };
	char *err = NULL;
	int status = t_reexec("enospc", env, 60, &err);
	T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the ENOSPC child: %s\n%s", t_wait_str(status),
		err ? err : "");
	T_CHECK(err && strstr(err, "outstanding for"), "the waiting fault was not logged:\n%s", err ? err : "");
	T_CHECK(strstr(err, "failed: ENOSPC"), "the failed write-back was not logged:\n%s", err);
	free(err);
	nchecks += 3;
	t_pass("%d checks: EIO/EDQUOT/sync EIO/ENODEV keep pages dirty with their bytes, reported once; background "
	       "errors reported by the next flush; a vanished store's region stays mapped; a full disk stalls "
	       "faults (logged) and they resume by themselves once space is freed", nchecks);
}
