/*
 * store_file - lib/store file store: descriptor checks (EBADF, EACCES,
 * ENODEV, O_APPEND), reads past the end are zeros, writes land byte-exact,
 * size follows the file, and the store keeps its own descriptor.
 */
#include "umapd_test.h"
#include "store/store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int nchecks;

static void open_err(const char *what, int fd, int writable, int want)
{
	struct store *s = NULL;
	int rc = store_file_open(fd, writable, 0, &s);
	if (rc != -want)
		t_fail("store_file_open(%s, writable %d) = %d, want -%s", what, writable, rc, t_errname(want));
	nchecks++;
}

int main(void)
{
	t_init("store_file", 30);
	char path[256];
	int fd = t_tmpfile(path);
	const size_t len = 3 * 4096 + 7;
	t_write_file_pat(fd, 0, len, 9);

	t_step("descriptor checks");
	open_err("fd -1", -1, 0, EBADF);
	int closed = dup(fd);
	close(closed);
	open_err("closed fd", closed, 0, EBADF);
	int wo = t_reopen(path, O_WRONLY);
	open_err("O_WRONLY", wo, 0, EACCES);
	open_err("O_WRONLY", wo, 1, EACCES);
	int ro = t_reopen(path, O_RDONLY);
	open_err("O_RDONLY", ro, 1, EACCES);
	int ap = t_reopen(path, O_RDWR | O_APPEND);
	open_err("O_RDWR|O_APPEND", ap, 1, EACCES);
	int dfd = open("/tmp", O_RDONLY | O_DIRECTORY);
	open_err("directory", dfd, 0, ENODEV);
	int p[2];
	T_CHECK(pipe(p) == 0, "pipe");
	open_err("pipe", p[0], 0, ENODEV);
	int sv[2];
	T_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	open_err("socket", sv[0], 0, ENODEV);
	int nul = open("/dev/null", O_RDWR);
	open_err("/dev/null", nul, 1, ENODEV);

	t_step("read-only store reads");
	struct store *r = NULL;
	T_OK(store_file_open(ro, 0, 0, &r));
	close(ro); /* the store keeps its own descriptor */
	uint8_t *buf = malloc(4 * 4096);
	T_CHECK(store_size(r) == (int64_t)len, "store_size = %lld, want %zu", (long long)store_size(r), len);
	memset(buf, 0xAA, 4 * 4096);
	T_OK(store_read(r, buf, 4 * 4096, 0));
	t_check_pat("read of a page-rounded file", buf, len, 0, 9);
	t_check_zero("bytes past the end of the file", buf + len, 4 * 4096 - len, len);
	memset(buf, 0xAA, 4096);
	T_OK(store_read(r, buf, 4096, 1 << 20));
	t_check_zero("page far past the end", buf, 4096, 1 << 20);

	t_step("read-write store writes");
	struct store *w = NULL;
	T_OK(store_file_open(fd, 1, 0, &w));
	t_fill_pat(buf, 4096, 4096, 10);
	T_OK(store_write(w, buf, 4096, 4096));
	t_check_file_pat("page written through the store", fd, 4096, 4096, 10);
	t_check_file_pat("page before it untouched", fd, 0, 4096, 9);
	t_check_file_pat("tail untouched", fd, 8192, len - 8192, 9);
	t_fill_pat(buf, 4096, 8 * 4096, 11);
	T_OK(store_write(w, buf, 4096, 8 * 4096));
	T_CHECK(store_size(w) == 9 * 4096, "store_size after a write past the end = %lld, want %d",
		(long long)store_size(w), 9 * 4096);
	T_CHECK(store_size(r) == 9 * 4096, "the other store sees size %lld", (long long)store_size(r));
	T_OK(store_sync(w));
	memset(buf, 0, 4096);
	T_OK(store_read(r, buf, 4096, 8 * 4096));
	t_check_pat("read back through the other store", buf, 4096, 8 * 4096, 11);
	store_close(w);
	store_close(r);
	t_check_file_pat("caller's descriptor still works after store_close", fd, 0, 4096, 9);
	nchecks += 10;
	free(buf);
	t_pass("%d checks: descriptor errors, zeros past EOF, byte-exact writes, size, own descriptor", nchecks);
}
