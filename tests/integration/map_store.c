/*
 * map_store - umapd_map_store end to end on every built-in store and on a
 * user's own store, each larger than the budget (UMAPD_BUFSIZE in the
 * test's environment): random page writes, umapd_flush, umapd_unmap, then
 * the store opened again (file, O_DIRECT file, sparse directory) or its
 * pages evicted and faulted back (memory, user store), and every byte
 * checked.  Also: argument errors, a failed map leaves the store the
 * caller's, a read-only store refuses PROT_WRITE, a built-in store cannot
 * back two regions, and the region closes its store exactly once.
 */
#include "umapd_test.h"

#include <umapd_store.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define DATA ((size_t)16 << 20)
#define WRITES 3000

static size_t ps;
static uint64_t t0;
static size_t npages;
static uint8_t *ver; /* per page: 0 = the store's initial bytes, else the pattern seed of the last write */
static int nchecks;

/* --- a user's store: bytes in a malloc'd array, kept after close --- */
struct tstore {
	struct umapd_store base;
	uint8_t *data;
	size_t size;
	atomic_int closed;
	atomic_ulong reads, writes;
};

static int ts_read(struct umapd_store *s, void *buf, size_t len, uint64_t off)
{
	struct tstore *t = (struct tstore *)s;
	size_t n = off < t->size ? (t->size - off < len ? t->size - off : len) : 0;
	memcpy(buf, t->data + off, n);
	memset((char *)buf + n, 0, len - n);
	atomic_fetch_add(&t->reads, 1);
	return 0;
}

static int ts_write(struct umapd_store *s, const void *buf, size_t len, uint64_t off)
{
	struct tstore *t = (struct tstore *)s;
	if (off + len > t->size)
		return -ENOSPC;
	memcpy(t->data + off, buf, len);
	atomic_fetch_add(&t->writes, 1);
	return 0;
}

static int ts_sync(struct umapd_store *s)
{
	(void)s;
	return 0;
}

static int64_t ts_size(struct umapd_store *s)
{
	return (int64_t)((struct tstore *)s)->size;
}

static void ts_close(struct umapd_store *s)
{
	atomic_fetch_add(&((struct tstore *)s)->closed, 1);
}

static const struct umapd_store_ops ts_ops = {
	.abi = UMAPD_STORE_ABI,
	.name = "test",
	.read = ts_read,
	.write = ts_write,
	.sync = ts_sync,
	.size = ts_size,
	.close = ts_close,
};

/* --- the workload --- */

static void expect_page(uint8_t *buf, size_t i, uint32_t base_seed)
{
	if (ver[i])
		t_fill_pat(buf, ps, i * ps, 100u + ver[i]);
	else if (base_seed)
		t_fill_pat(buf, ps, i * ps, base_seed);
	else
		memset(buf, 0, ps);
}

static void check_all(const char *what, const uint8_t *p, uint32_t base_seed)
{
	uint8_t *want = malloc(ps);
	for (size_t i = 0; i < npages; i++) {
		expect_page(want, i, base_seed);
		t_check_bytes(what, p + i * ps, want, ps, i * ps);
	}
	free(want);
	nchecks++;
}

static void random_writes(uint8_t *p, unsigned seed)
{
	srand(seed);
	for (int k = 0; k < WRITES; k++) {
		size_t i = (size_t)rand() % npages;
		ver[i] = (uint8_t)(1 + rand() % 250);
		t_fill_pat(p + i * ps, ps, i * ps, 100u + ver[i]);
	}
}

static void *map_store(struct umapd_store *s, int prot)
{
	errno = 0;
	void *p = umapd_map_store(NULL, DATA, prot, 0, s, 0, NULL);
	if (!p)
		t_fail("umapd_map_store(%s) failed: %s", s->ops->name, t_errname(errno));
	return p;
}

/* Write randomly, flush, check the budget held, unmap. */
static void write_phase(const char *kind, struct umapd_store *s, uint32_t base_seed)
{
	t_step("%s: map, %d random page writes through a budget of %zu", kind, WRITES, umapd_get_bufsize());
	memset(ver, 0, npages);
	uint8_t *p = map_store(s, PROT_READ | PROT_WRITE);
	check_all("initial bytes", p, base_seed);
	random_writes(p, 7);
	t_step("%s: flush", kind);
	T_OK(umapd_flush(p, DATA));
	struct umapd_stats st;
	t_region_stats(p, &st);
	T_CHECK(st.evictions > 0, "%s: nothing was evicted (budget %zu, data %zu)", kind, umapd_get_bufsize(), DATA);
	T_CHECK(st.dirty_bytes == 0, "%s: dirty bytes after flush %llu", kind, (unsigned long long)st.dirty_bytes);
	check_all("after flush", p, base_seed);
	t_step("%s: unmap", kind);
	t_unmap(p);
	nchecks += 2;
	printf("%s: written, flushed and unmapped at %.1f s\n", kind, (double)(t_now_ns() - t0) / 1e9);
}

/* Map the (reopened) store read-only and check every byte. */
static void verify_store(const char *kind, struct umapd_store *s, uint32_t base_seed)
{
	t_step("%s: reopened, verify every byte", kind);
	uint8_t *p = map_store(s, PROT_READ);
	check_all("reopened store", p, base_seed);
	t_unmap(p);
	printf("%s: verified at %.1f s\n", kind, (double)(t_now_ns() - t0) / 1e9);
}

/* Memory-like stores cannot be reopened: evict everything and fault back. */
static void write_evict_verify(const char *kind, struct umapd_store *s)
{
	memset(ver, 0, npages);
	t_step("%s: map, random writes, flush, evict, verify", kind);
	uint8_t *p = map_store(s, PROT_READ | PROT_WRITE);
	random_writes(p, 11);
	T_OK(umapd_flush(p, DATA));
	T_OK(umapd_evict(p, DATA));
	struct umapd_stats st;
	t_region_stats(p, &st);
	T_CHECK(st.resident_bytes == 0, "%s: resident after evict %llu", kind, (unsigned long long)st.resident_bytes);
	check_all("after evict, from the store", p, 0);
	t_unmap(p);
	nchecks++;
}

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[1024];
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static char sparse_dir[512];
static void cleanup(void)
{
	rm_dir(sparse_dir);
}

static void errors(void)
{
	struct umapd_store *m = NULL;

	t_step("argument errors");
	T_OK(umapd_store_memory(DATA, 0, &m));
	T_ERR_NULL(umapd_map_store(NULL, DATA, PROT_READ, 0, NULL, 0, NULL), EFAULT);
	struct umapd_store_ops bad = ts_ops;
	bad.abi = 99;
	struct tstore t = { .base = { &bad } };
	T_ERR_NULL(umapd_map_store(NULL, DATA, PROT_READ, 0, &t.base, 0, NULL), EINVAL);
	bad.abi = UMAPD_STORE_ABI;
	bad.size = NULL;
	T_ERR_NULL(umapd_map_store(NULL, DATA, PROT_READ, 0, &t.base, 0, NULL), EINVAL);
	struct umapd_store nops = { NULL };
	T_ERR_NULL(umapd_map_store(NULL, DATA, PROT_READ, 0, &nops, 0, NULL), EINVAL);
	T_ERR_NULL(umapd_map_store(NULL, 0, PROT_READ, 0, m, 0, NULL), EINVAL);
	T_ERR_NULL(umapd_map_store(NULL, DATA, PROT_READ, 0, m, 100, NULL), EINVAL);
	T_ERR_NULL(umapd_map_store(NULL, DATA, PROT_READ, 0, m, (uint64_t)1 << 63, NULL), EOVERFLOW);
	T_ERR(umapd_store_memory(10, 5, &m), EINVAL);
	T_ERR(umapd_store_file(-1, 0, &m), EBADF);
	T_ERR(umapd_store_file(0, 0x100, &m), EINVAL);
	T_ERR(umapd_store_sparse(NULL, 0, 0, 0, &m), EFAULT);
	T_ERR(umapd_store_sparse("/nonexistent/umapd", 0, 0, 0, &m), ENOENT);
	T_ERR(umapd_store_inject(NULL, "", &m), EFAULT);
	nchecks += 13;

	t_step("the store stays the caller's after a failed map, and backs one region at a time");
	struct umapd_store *mem = NULL;
	T_OK(umapd_store_memory(DATA, 0, &mem));
	T_ERR_NULL(umapd_map_store(NULL, DATA, PROT_READ, 0x40, mem, 0, NULL), EINVAL);
	uint8_t *p = map_store(mem, PROT_READ | PROT_WRITE);
	T_ERR_NULL(umapd_map_store(NULL, DATA, PROT_READ, 0, mem, 0, NULL), EINVAL);
	p[5] = 42;
	t_unmap(p);
	umapd_store_close(m);
	umapd_store_close(NULL);

	t_step("a read-only store refuses PROT_WRITE");
	char path[256];
	int fd = t_tmpfile(path);
	t_write_file_pat(fd, 0, 4 * ps, 3);
	int ro = t_reopen(path, O_RDONLY);
	struct umapd_store *f = NULL;
	T_ERR(umapd_store_file(ro, 0, &f), EACCES);
	T_OK(umapd_store_file(ro, UMAPD_STORE_RDONLY, &f));
	close(ro);
	T_ERR_NULL(umapd_map_store(NULL, 4 * ps, PROT_READ | PROT_WRITE, 0, f, 0, NULL), EACCES);
	p = umapd_map_store(NULL, 4 * ps, PROT_READ, 0, f, 0, NULL);
	T_CHECK(p != NULL, "map of a read-only store: %s", t_errname(errno));
	t_check_pat("read-only store", p, 4 * ps, 0, 3);
	t_unmap(p);
	close(fd);
	nchecks += 5;
}

int main(void)
{
	t_init("map_store", 120);
	t0 = t_now_ns();
	t_umapd_start();
	ps = t_sys_page();
	npages = DATA / ps;
	ver = calloc(npages, 1);
	T_CHECK(umapd_get_bufsize() < DATA / 2, "the budget %zu is not below the data (set UMAPD_BUFSIZE)",
		umapd_get_bufsize());
	errors();

	/* file */
	char path[256];
	int fd = t_tmpfile(path);
	t_write_file_pat(fd, 0, DATA, 1);
	struct umapd_store *s = NULL;
	T_OK(umapd_store_file(fd, 0, &s));
	write_phase("file", s, 1);
	uint8_t *want = malloc(ps), *got = malloc(ps);
	for (size_t i = 0; i < npages; i++) {
		expect_page(want, i, 1);
		t_pread_all(fd, got, ps, (off_t)(i * ps));
		t_check_bytes("file after unmap (pread)", got, want, ps, i * ps);
	}
	T_OK(umapd_store_file(fd, UMAPD_STORE_RDONLY, &s));
	verify_store("file", s, 1);

	/* file, O_DIRECT */
	t_write_file_pat(fd, 0, DATA, 2);
	if (umapd_store_file(fd, UMAPD_STORE_DIRECT, &s) == 0) {
		write_phase("file O_DIRECT", s, 2);
		T_OK(umapd_store_file(fd, UMAPD_STORE_DIRECT | UMAPD_STORE_RDONLY, &s));
		verify_store("file O_DIRECT", s, 2);
		T_CHECK(t_file_size(fd) == (off_t)DATA, "O_DIRECT file size %lld", (long long)t_file_size(fd));
	} else {
		T_CHECK(errno == EINVAL, "umapd_store_file(DIRECT): %s", t_errname(errno));
		printf("O_DIRECT not supported in $TMPDIR: that part skipped\n");
	}
	close(fd);

	/* sparse */
	const char *tmp = getenv("TMPDIR");
	snprintf(sparse_dir, sizeof(sparse_dir), "%s/umapd-map_store-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
	rm_dir(sparse_dir);
	atexit(cleanup);
	T_OK(umapd_store_sparse(sparse_dir, 1 << 20, DATA, UMAPD_STORE_CREATE, &s));
	write_phase("sparse", s, 0);
	T_OK(umapd_store_sparse(sparse_dir, 0, 0, UMAPD_STORE_RDONLY, &s));
	verify_store("sparse", s, 0);

	/* memory */
	T_OK(umapd_store_memory(DATA, DATA, &s));
	write_evict_verify("memory", s);

	/* a user's store */
	struct tstore t = { .base = { &ts_ops }, .size = DATA };
	t.data = calloc(1, DATA);
	write_evict_verify("user store", &t.base);
	T_CHECK(atomic_load(&t.closed) == 1, "the user store was closed %d times, want 1", atomic_load(&t.closed));
	T_CHECK(atomic_load(&t.writes) > 0 && atomic_load(&t.reads) > 0, "the user store saw no I/O");
	for (size_t i = 0; i < npages; i++) {
		expect_page(want, i, 0);
		t_check_bytes("user store's bytes after unmap", t.data + i * ps, want, ps, i * ps);
	}
	nchecks += 3;
	free(t.data);
	free(want);
	free(got);
	free(ver);
	t_pass("%d checks: file, O_DIRECT file, sparse, memory and a user store, each %zu MiB through a %zu MiB budget: "
	       "random writes, flush, unmap, reopen/evict, every byte; argument errors, ownership, read-only",
	       nchecks, DATA >> 20, umapd_get_bufsize() >> 20);
}
