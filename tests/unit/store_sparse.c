/*
 * store_sparse - lib/store sparse store: writes create only the chunks they
 * touch (counted in the directory, and st_blocks of the rest is nothing),
 * reads of missing chunks are zeros and create nothing, writes across chunk
 * boundaries land byte-exact, size grows with writes and is persisted, a
 * read-only reopen reads the same bytes and cannot write, extents give a
 * chunk's descriptor (and -1 for holes), and bad directories and metadata
 * files are refused with clear errors.
 */
#include "umapd_test.h"
#include "store/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static char dir[512];
static int nchecks;

static void rm_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[1024];

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

/* Chunk files in the directory, and their allocated bytes. */
static int count_chunks(uint64_t *blocks_bytes)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	T_CHECK(d != NULL, "opendir(%s): %s", dir, strerror(errno));
	*blocks_bytes = 0;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "chunk-", 6) != 0)
			continue;
		char p[1024];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		T_CHECK(stat(p, &st) == 0, "stat %s", p);
		*blocks_bytes += (uint64_t)st.st_blocks * 512;
		n++;
	}
	closedir(d);
	return n;
}

static void put_meta(const char *text)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/umapd-sparse.meta", dir);
	FILE *f = fopen(p, "w");
	T_CHECK(f != NULL, "fopen %s", p);
	fputs(text, f);
	fclose(f);
}

static void open_err(const char *what, const char *d, uint64_t cs, uint64_t size, int flags, int want)
{
	struct store *s = NULL;
	int rc = store_sparse_open(d, cs, size, flags, &s);
	if (rc != -want)
		t_fail("store_sparse_open(%s) = %d, want -%s", what, rc, t_errname(want));
	nchecks++;
}

int main(void)
{
	t_init("store_sparse", 60);
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/umapd-store_sparse-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
	rm_dir();
	atexit(rm_dir);

	t_step("argument and directory errors");
	open_err("no CREATE, no directory", dir, CHUNK, 0, 0, ENOENT);
	open_err("CREATE|RDONLY", dir, CHUNK, 0, STORE_SPARSE_CREATE | STORE_SPARSE_RDONLY, EINVAL);
	open_err("chunk size not a multiple of 4096", dir, 1000, 0, STORE_SPARSE_CREATE, EINVAL);
	open_err("unknown flag", dir, CHUNK, 0, 0x100, EINVAL);
	open_err("a regular file", "/etc/hostname", CHUNK, 0, 0, ENOTDIR);
	open_err("NULL", NULL, CHUNK, 0, 0, EFAULT);

	t_step("create, and nothing but the metadata file");
	struct store *s = NULL;
	const uint64_t size = 100 * CHUNK + 123;
	T_OK(store_sparse_open(dir, CHUNK, size, STORE_SPARSE_CREATE, &s));
	uint64_t bytes;
	T_CHECK(count_chunks(&bytes) == 0, "a new store has chunk files");
	T_CHECK(store_size(s) == (int64_t)size, "size %lld, want %llu", (long long)store_size(s),
		(unsigned long long)size);
	uint8_t *buf = malloc(4 * CHUNK);
	memset(buf, 0xAA, 3 * CHUNK);
	T_OK(store_read(s, buf, 3 * CHUNK, 5 * CHUNK + 17));
	t_check_zero("read of chunks never written", buf, 3 * CHUNK, 5 * CHUNK + 17);
	T_CHECK(count_chunks(&bytes) == 0, "a read created chunk files");
	struct store_extent x;
	T_OK(store_extent(s, 7 * CHUNK + 4096, 3 * CHUNK, 0, &x));
	T_CHECK(x.fd == -1 && x.off == 4096 && x.len == CHUNK - 4096 && x.align == 0,
		"read extent of a hole: fd %d off %llu len %zu", x.fd, (unsigned long long)x.off, x.len);
	T_CHECK(count_chunks(&bytes) == 0, "a read extent created chunk files");
	nchecks += 6;

	t_step("writes create only the chunks they touch");
	t_fill_pat(buf, 4096, 3 * CHUNK, 1);
	T_OK(store_write(s, buf, 4096, 3 * CHUNK));                /* chunk 3 */
	t_fill_pat(buf, 2 * 4096, 10 * CHUNK - 4096, 2);
	T_OK(store_write(s, buf, 2 * 4096, 10 * CHUNK - 4096));    /* chunks 9 and 10 */
	t_fill_pat(buf, 2 * CHUNK + 100, 50 * CHUNK - 50, 3);
	T_OK(store_write(s, buf, 2 * CHUNK + 100, 50 * CHUNK - 50)); /* chunks 49..52 */
	int n = count_chunks(&bytes);
	T_CHECK(n == 7, "%d chunk files after writing chunks 3, 9, 10, 49..52, want 7", n);
	T_CHECK(bytes <= 4 * (uint64_t)CHUNK, "chunk files take %llu bytes of disk, want at most %d",
		(unsigned long long)bytes, 4 * CHUNK);
	nchecks += 2;

	t_step("read back across chunk boundaries");
	memset(buf, 0, 4 * CHUNK);
	T_OK(store_read(s, buf, 3 * CHUNK, 3 * CHUNK - 1000));
	t_check_zero("before chunk 3's page", buf, 1000, 3 * CHUNK - 1000);
	t_check_pat("chunk 3's page", buf + 1000, 4096, 3 * CHUNK, 1);
	t_check_zero("after chunk 3's page", buf + 1000 + 4096, 3 * CHUNK - 1000 - 4096, 3 * CHUNK + 4096);
	T_OK(store_read(s, buf, 2 * 4096, 10 * CHUNK - 4096));
	t_check_pat("pages across chunks 9/10", buf, 2 * 4096, 10 * CHUNK - 4096, 2);
	T_OK(store_read(s, buf, 2 * CHUNK + 100, 50 * CHUNK - 50));
	t_check_pat("2 chunks + 100 across 49..52", buf, 2 * CHUNK + 100, 50 * CHUNK - 50, 3);
	nchecks += 3;

	t_step("write extents: the chunk's descriptor, growing the size");
	T_OK(store_extent(s, 3 * CHUNK + 8192, 2 * CHUNK, 1, &x));
	T_CHECK(x.fd >= 0 && x.off == 8192 && x.len == CHUNK - 8192 && x.align == 0, "write extent in chunk 3");
	t_fill_pat(buf, 4096, 3 * CHUNK + 8192, 4);
	T_CHECK(pwrite(x.fd, buf, 4096, (off_t)x.off) == 4096, "pwrite through the extent");
	T_OK(store_extent(s, 200 * CHUNK, 4096, 1, &x));
	T_CHECK(x.fd >= 0 && x.off == 0 && x.len == 4096, "write extent of a new chunk 200");
	T_CHECK(store_size(s) == 200 * (int64_t)CHUNK + 4096, "size after a write extent past the end: %lld",
		(long long)store_size(s));
	t_fill_pat(buf, 4096, 200 * CHUNK, 5);
	T_CHECK(pwrite(x.fd, buf, 4096, 0) == 4096, "pwrite to chunk 200");
	T_OK(store_read(s, buf, 4096, 3 * CHUNK + 8192));
	t_check_pat("read of what went through the extent", buf, 4096, 3 * CHUNK + 8192, 4);
	T_OK(store_extent(s, 3 * CHUNK, 4096, 0, &x));
	T_CHECK(x.fd >= 0 && x.len == 4096, "read extent of a written chunk");
	T_OK(store_sync(s));
	nchecks += 5;

	t_step("writes past the size grow it; close persists it");
	t_fill_pat(buf, 4096, 300 * CHUNK + 5, 6);
	T_OK(store_write(s, buf, 4096, 300 * CHUNK + 5));
	const int64_t final = 300 * (int64_t)CHUNK + 5 + 4096;
	T_CHECK(store_size(s) == final, "size after a write past the end %lld, want %lld",
		(long long)store_size(s), (long long)final);
	store_close(s);

	t_step("reopen read-only: same bytes, same size, no writes");
	open_err("another chunk size", dir, 2 * CHUNK, 0, STORE_SPARSE_RDONLY, EINVAL);
	open_err("read-only, larger size", dir, 0, (uint64_t)final + 1, STORE_SPARSE_RDONLY, EINVAL);
	T_OK(store_sparse_open(dir, 0, 0, STORE_SPARSE_RDONLY, &s));
	T_CHECK(store_size(s) == final, "reopened size %lld, want %lld", (long long)store_size(s), (long long)final);
	T_OK(store_read(s, buf, 2 * CHUNK + 100, 50 * CHUNK - 50));
	t_check_pat("reopened: 2 chunks + 100", buf, 2 * CHUNK + 100, 50 * CHUNK - 50, 3);
	T_OK(store_read(s, buf, 4096, 200 * CHUNK));
	t_check_pat("reopened: chunk 200", buf, 4096, 200 * CHUNK, 5);
	T_OK(store_read(s, buf, 4096, 300 * CHUNK + 5));
	t_check_pat("reopened: the last write", buf, 4096, 300 * CHUNK + 5, 6);
	T_OK(store_read(s, buf, 4096, 3 * CHUNK));
	t_check_pat("reopened: chunk 3", buf, 4096, 3 * CHUNK, 1);
	T_CHECK(store_write(s, buf, 4096, 0) == -EROFS, "a write to a read-only store");
	T_CHECK(store_extent(s, 0, 4096, 1, &x) == -EROFS, "a write extent of a read-only store");
	T_OK(store_extent(s, 0, 4096, 0, &x));
	T_CHECK(x.fd == -1, "read extent of a hole, read-only");
	n = count_chunks(&bytes);
	T_CHECK(n == 9, "%d chunk files, want 9", n);
	store_close(s);
	nchecks += 6;

	t_step("reopen read-write with a larger size grows it");
	T_OK(store_sparse_open(dir, CHUNK, (uint64_t)final + CHUNK, 0, &s));
	T_CHECK(store_size(s) == final + CHUNK, "grown size %lld", (long long)store_size(s));
	T_OK(store_sync(s));
	store_close(s);
	T_OK(store_sparse_open(dir, 0, 0, STORE_SPARSE_RDONLY, &s));
	T_CHECK(store_size(s) == final + CHUNK, "grown size after reopen %lld", (long long)store_size(s));
	store_close(s);
	nchecks += 2;

	t_step("corrupt metadata files are refused with EINVAL");
	static const char *const bad[] = {
		"",
		"garbage\n",
		"umapd-sparse 2\nchunk_size 65536\nsize 1\n",
		"umapd-sparse 1\nchunk_size 1000\nsize 1\n",
		"umapd-sparse 1\nchunk_size 0\nsize 1\n",
		"umapd-sparse 1\nchunk_size 65536\n",
		"umapd-sparse 1\nchunk_size 65536\nsize -1\n",
		"umapd-sparse 1\nchunk_size 65536\nsize 99999999999999999999999\n",
		"umapd-sparse 1\nchunk_size 65536\nsize 1\nextra\n",
		"umapd-sparse 1\r\nchunk_size 65536\nsize 1\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put_meta(bad[i]);
		char what[64];
		snprintf(what, sizeof(what), "bad metadata #%zu", i);
		open_err(what, dir, 0, 0, 0, EINVAL);
		open_err(what, dir, 0, 0, STORE_SPARSE_CREATE, EINVAL);
	}
	char mp[1024];
	snprintf(mp, sizeof(mp), "%s/umapd-sparse.meta", dir);
	unlink(mp);
	open_err("no metadata file, no CREATE", dir, 0, 0, 0, ENOENT);
	open_err("no metadata file, read-only", dir, 0, 0, STORE_SPARSE_RDONLY, ENOENT);

	t_step("permissions");
	if (geteuid() != 0) {
		T_CHECK(chmod(dir, 0500) == 0, "chmod");
		open_err("a read-only directory, for writing", dir, CHUNK, 0, STORE_SPARSE_CREATE, EACCES);
		T_CHECK(chmod(dir, 0700) == 0, "chmod");
	}

	free(buf);
	t_pass("%d checks: chunks created only by writes (%d files), zeros for holes, cross-chunk bytes, extents, "
	       "size persisted, read-only reopen, bad metadata and directories refused", nchecks, n);
}
