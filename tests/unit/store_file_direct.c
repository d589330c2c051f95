/*
 * store_file_direct - lib/store file store extents and O_DIRECT: a buffered
 * store describes its ranges with alignment 0; an O_DIRECT store reads and
 * writes unaligned lengths, offsets and buffers byte-exact through its
 * bounce buffer, leaves the file exactly as long as what was written (no
 * aligned-up tail), refuses extents it cannot serve (-EOPNOTSUPP), and two
 * threads extending the file at once (aligned pages and unaligned tails)
 * lose nothing.  Skips if the file system of $TMPDIR refuses O_DIRECT.
 */
#include "umapd_test.h"
#include "store/store.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int nchecks;

static void check_size(int fd, off_t want, const char *what)
{
	off_t got = t_file_size(fd);
	T_CHECK(got == want, "%s: file size %lld, want %lld", what, (long long)got, (long long)want);
	nchecks++;
}

/* Mirror of the file kept in memory: the expected bytes. */
static uint8_t *model;
static size_t model_len;

static void model_write(const void *buf, size_t len, uint64_t off)
{
	if (off + len > model_len) {
		model = realloc(model, off + len);
		memset(model + model_len, 0, off + len - model_len);
		model_len = off + len;
	}
	memcpy(model + off, buf, len);
}

static void check_model(int fd, const char *what)
{
	check_size(fd, (off_t)model_len, what);
	uint8_t *got = malloc(model_len);
	t_pread_all(fd, got, model_len, 0);
	t_check_bytes(what, got, model, model_len, 0);
	free(got);
	nchecks++;
}

static void store_put(struct store *s, const uint8_t *buf, size_t len, uint64_t off)
{
	int rc = store_write(s, buf, len, off);
	if (rc != 0)
		t_fail("store_write(len %zu, off %llu) = %d", len, (unsigned long long)off, rc);
	model_write(buf, len, off);
}

struct racer {
	struct store *s;
	int odd;
};

#define RACE_SLOTS 64
#define RACE_TAIL 1000

/* Even slots: whole aligned 4 KiB pages; odd slots: 1000-byte tails, both
 * past the end of the file, in increasing order, at the same time. */
static void *race(void *arg)
{
	struct racer *r = arg;
	uint8_t *buf;
	if (posix_memalign((void **)&buf, 4096, 4096) != 0)
		return (void *)1;
	for (int i = r->odd; i < RACE_SLOTS; i += 2) {
		uint64_t off = (uint64_t)i * 4096;
		size_t len = r->odd ? RACE_TAIL : 4096;
		t_fill_pat(buf, len, off, 77);
		if (store_write(r->s, buf, len, off) != 0) {
			free(buf);
			return (void *)1;
		}
	}
	free(buf);
	return NULL;
}

int main(void)
{
	t_init("store_file_direct", 60);
	char path[256];
	int fd = t_tmpfile(path);
	const size_t len = 3 * 4096 + 7;
	uint8_t *pat = malloc(len);
	t_fill_pat(pat, len, 0, 1);
	t_pwrite_all(fd, pat, len, 0);
	model_write(pat, len, 0);

	t_step("buffered store extents");
	struct store *b = NULL;
	T_OK(store_file_open(fd, 1, 0, &b));
	struct store_extent x;
	memset(&x, 0xff, sizeof(x));
	T_OK(store_extent(b, 4096, 8192, 0, &x));
	T_CHECK(x.fd >= 0 && x.off == 4096 && x.len == 8192 && x.align == 0,
		"buffered extent: fd %d off %llu len %zu align %u", x.fd, (unsigned long long)x.off, x.len, x.align);
	T_OK(store_extent(b, 100, 10, 1, &x));
	T_CHECK(x.off == 100 && x.len == 10 && x.align == 0, "buffered write extent at 100");
	uint8_t page[4096];
	t_pread_all(x.fd, page, 4096, 0);
	t_check_pat("read through the extent's descriptor", page, 4096, 0, 1);
	store_close(b);
	nchecks += 3;

	t_step("open O_DIRECT");
	struct store *s = NULL;
	int rc = store_file_open(fd, 1, 1, &s);
	if (rc == -EINVAL)
		t_skip("the file system of $TMPDIR refuses O_DIRECT (use TMPDIR=/var/tmp on ext4/xfs)");
	T_CHECK(rc == 0, "store_file_open(direct) = %d", rc);
	T_OK(store_extent(s, 0, len, 0, &x));
	unsigned a = x.align;
	T_CHECK(a >= 512 && (a & (a - 1)) == 0 && a <= 65536, "direct extent align %u", a);
	T_CHECK(x.fd >= 0 && x.len == len, "direct read extent fd %d len %zu", x.fd, x.len);
	int dflags = fcntl(x.fd, F_GETFL);
	T_CHECK(dflags >= 0 && (dflags & O_DIRECT), "the extent's descriptor is not O_DIRECT");
	T_CHECK(store_size(s) == (int64_t)len, "direct store size %lld", (long long)store_size(s));
	nchecks += 4;

	t_step("direct reads: aligned, unaligned length, offset and buffer");
	uint8_t *abuf;
	T_CHECK(posix_memalign((void **)&abuf, 4096, 8 * 4096) == 0, "posix_memalign");
	memset(abuf, 0xAA, 4 * 4096);
	T_OK(store_read(s, abuf, 4 * 4096, 0));
	t_check_pat("aligned direct read", abuf, len, 0, 1);
	t_check_zero("aligned direct read past the end", abuf + len, 4 * 4096 - len, len);
	memset(abuf, 0xAA, 8192);
	T_OK(store_read(s, abuf + 1, 5000, 100));
	t_check_pat("unaligned direct read", abuf + 1, 5000, 100, 1);
	T_OK(store_read(s, abuf + 3, 4096 + 100, 8192));
	t_check_pat("direct read over the tail", abuf + 3, len - 8192, 8192, 1);
	t_check_zero("direct read over the tail, past the end", abuf + 3 + (len - 8192), 4096 + 100 - (len - 8192),
		     len);
	nchecks += 4;

	t_step("direct writes: an unaligned tail keeps the file's size exact");
	uint8_t *w = malloc(3 * 4096);
	t_fill_pat(w, 4096 + 7, 8192, 2);
	store_put(s, w, 4096 + 7, 8192);
	check_model(fd, "rewrite of the last page and the 7-byte tail");
	t_fill_pat(w, 100, len + 50, 3);
	store_put(s, w, 100, len + 50);
	check_model(fd, "unaligned write 50 bytes past the end");
	t_fill_pat(w, 10, 5000, 4);
	store_put(s, w, 10, 5000);
	check_model(fd, "10 bytes in the middle of a block");
	t_fill_pat(abuf + 5, 4096, 4096, 5);
	store_put(s, abuf + 5, 4096, 4096);
	check_model(fd, "aligned offset and length from an unaligned buffer");
	t_fill_pat(abuf, 8192, 0, 6);
	store_put(s, abuf, 8192, 0);
	check_model(fd, "aligned write");
	size_t big = 3 * ((size_t)1 << 20) + 12345;
	uint8_t *bb = malloc(big);
	t_fill_pat(bb, big, 1000, 7);
	store_put(s, bb, big, 1000);
	check_model(fd, "3 MiB unaligned write (several bounce rounds), extending the file");
	memset(bb, 0, big);
	T_OK(store_read(s, bb + 1, big - 1, 1001));
	t_check_bytes("3 MiB unaligned read back", bb + 1, model + 1001, big - 1, 1001);
	free(bb);
	T_CHECK(store_size(s) == (int64_t)model_len, "store size %lld, want %zu", (long long)store_size(s),
		model_len);
	T_OK(store_sync(s));
	nchecks += 3;

	t_step("direct extents");
	T_CHECK(store_extent(s, 0, 4096 + 7, 1, &x) == -EOPNOTSUPP, "write extent of an unaligned length");
	T_CHECK(store_extent(s, 512 + 1, 4096, 0, &x) == -EOPNOTSUPP, "read extent at an unaligned offset");
	T_CHECK(store_extent(s, (uint64_t)model_len + 8 * 4096, 4096, 1, &x) == -EOPNOTSUPP,
		"write extent past the end of the file");
	T_OK(store_extent(s, 4096, 8192, 1, &x));
	T_CHECK(x.fd >= 0 && x.off == 4096 && x.len == 8192 && x.align == a, "aligned write extent inside the file");
	t_fill_pat(abuf, 8192, 4096, 8);
	T_CHECK(pwrite(x.fd, abuf, 8192, 4096) == 8192, "pwrite through the extent: %s", strerror(errno));
	model_write(abuf, 8192, 4096);
	check_model(fd, "write through the extent's descriptor");
	nchecks += 4;
	store_close(s);

	t_step("two threads extend the file: aligned pages and unaligned tails");
	t_ftruncate(fd, 0);
	T_OK(store_file_open(fd, 1, 1, &s));
	pthread_t th[2];
	struct racer rr[2] = { { s, 0 }, { s, 1 } };
	for (int i = 0; i < 2; i++)
		T_CHECK(pthread_create(&th[i], NULL, race, &rr[i]) == 0, "pthread_create");
	for (int i = 0; i < 2; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		T_CHECK(ret == NULL, "racer %d: a write failed", i);
	}
	off_t want = (off_t)(RACE_SLOTS - 1) * 4096 + RACE_TAIL;
	check_size(fd, want, "after the race");
	uint8_t *got = malloc((size_t)want);
	t_pread_all(fd, got, (size_t)want, 0);
	for (int i = 0; i < RACE_SLOTS; i++) {
		uint64_t off = (uint64_t)i * 4096;
		size_t n = (i & 1) ? RACE_TAIL : 4096;
		t_check_pat("slot written during the race", got + off, n, off, 77);
		if (i & 1 && i + 1 < RACE_SLOTS)
			t_check_zero("gap after a tail", got + off + n, 4096 - n, off + n);
	}
	free(got);
	store_close(s);
	nchecks += 2;

	free(w);
	free(abuf);
	free(pat);
	free(model);
	t_pass("%d checks: buffered extents; O_DIRECT (align %u) reads/writes of unaligned tails, offsets, buffers, "
	       "exact file size, extents, concurrent extension", nchecks, a);
}
