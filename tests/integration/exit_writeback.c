/*
 * exit_writeback - dirty pages at process exit (docs/failure-semantics.md).
 *
 * This process never starts umapd; each case runs in a re-executed child
 * (a fresh process: TSan refuses threads after a multi-threaded fork) that
 * maps the file and writes a new pattern over all of it (a length that is
 * not a multiple of the page size, so the tail page counts too), with a
 * budget far above the region so nothing is written back before the end:
 *   A. the child calls exit(0) without umapd_unmap: the file then holds the
 *      new pattern (write-back at exit);
 *   B. the child calls _exit(0): no write-back, the file still holds its old
 *      contents, byte for byte;
 *   C. the child forks a grandchild that calls exit(0): the grandchild did
 *      not start the engine and must write nothing (the child checks the
 *      file is unchanged after it), then the child's own exit(0) writes
 *      back.
 */
#include "umapd_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEED_OLD 61
#define SEED_NEW 62

static size_t len;
static int fd;

static uint8_t *child_map_and_write(uint32_t seed)
{
	t_umapd_start();
	t_set_bufsize(64u << 20);
	uint8_t *p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	t_fill_pat(p, len, 0, seed);
	struct umapd_stats st;
	t_stats(&st);
	if (st.dirty_bytes == 0 || st.bytes_written != 0) {
		fprintf(stderr, "child: after writing, dirty_bytes %llu and bytes_written %llu\n",
			(unsigned long long)st.dirty_bytes, (unsigned long long)st.bytes_written);
		_exit(3);
	}
	return p;
}

static void case_exit(void)
{
	child_map_and_write(SEED_NEW);
	exit(0);
}

static void case__exit(void)
{
	child_map_and_write(SEED_NEW);
	_exit(0);
}

static int grandchild(void *arg)
{
	(void)arg;
	exit(0); /* destructors run: umapd's exit write-back must not act here */
}

static void case_grandchild(void)
{
	uint8_t *p = child_map_and_write(SEED_NEW);
	char *err = NULL;
	int st = t_fork_run(grandchild, NULL, 20, &err);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "grandchild ended with %s; its stderr: %s\n", t_wait_str(st), err ? err : "");
		_exit(4);
	}
	/* The file must still be old: the grandchild wrote nothing, and this
	 * process has not written back yet. */
	uint8_t *buf = malloc(len);
	if (!buf)
		_exit(5);
	t_pread_all(fd, buf, len, 0);
	for (size_t i = 0; i < len; i++)
		if (buf[i] != t_pat(i, SEED_OLD)) {
			fprintf(stderr,
				"after the grandchild's exit(0) the file changed: first difference at offset %zu: "
				"expected 0x%02x (old), got 0x%02x%s; grandchild's stderr: %s\n",
				i, t_pat(i, SEED_OLD), buf[i], buf[i] == t_pat(i, SEED_NEW) ? " (the new pattern)" : "",
				err ? err : "");
			_exit(6);
		}
	free(buf);
	free(err);
	t_check_pat("the child's region after the grandchild exited", p, len, 0, SEED_NEW);
	exit(0);
}

static void run(const char *what, const char *arg, uint32_t want_seed, const char *path)
{
	t_step("%s", what);
	t_write_file_pat(fd, 0, len, SEED_OLD);
	char env[400];
	snprintf(env, sizeof(env), "UMAPD_TEST_EXIT_FILE=%s", path);
	const char *const extra[] = { env, NULL };
	char *err = NULL;
	int st = t_reexec(arg, extra, 30, &err);
	if (WIFEXITED(st) && WEXITSTATUS(st) == T_SKIP)
		t_skip("the child skipped: %s", err ? err : "");
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: the child ended with %s; its stderr:\n%s", what,
		t_wait_str(st), err ? err : "");
	T_CHECK(t_file_size(fd) == (off_t)len, "%s: file size %lld, want %zu", what, (long long)t_file_size(fd), len);
	char msg[256];
	snprintf(msg, sizeof(msg), "%s: the file (want the %s pattern)", what, want_seed == SEED_NEW ? "new" : "old");
	t_check_file_pat(msg, fd, 0, len, want_seed);
	free(err);
}

int main(int argc, char **argv)
{
	len = 37 * t_sys_page() + 1000;
	if (argc > 1) {
		t_init("exit_writeback(child)", 30);
		const char *path = getenv("UMAPD_TEST_EXIT_FILE");
		T_CHECK(path != NULL, "no UMAPD_TEST_EXIT_FILE");
		fd = t_reopen(path, O_RDWR);
		if (strcmp(argv[1], "A") == 0)
			case_exit();
		else if (strcmp(argv[1], "B") == 0)
			case__exit();
		else if (strcmp(argv[1], "C") == 0)
			case_grandchild();
		t_fail("unknown case %s", argv[1]);
	}
	t_init("exit_writeback", 60);
	char path[256];
	fd = t_tmpfile(path);
	run("A: child writes, exit(0) without umapd_unmap", "A", SEED_NEW, path);
	run("B: child writes, _exit(0)", "B", SEED_OLD, path);
	run("C: child writes, a grandchild calls exit(0), then the child exit(0)", "C", SEED_NEW, path);
	close(fd);
	t_pass("%zu bytes: exit(0) writes back, _exit(0) leaves the old bytes, a grandchild's exit(0) writes "
	       "nothing and the child's exit(0) then writes back",
	       len);
}
