/*
 * io_fallback - UMAPD_IO=auto when io_uring is refused.
 *
 * Containers and hardened hosts refuse io_uring (seccomp, or
 * kernel.io_uring_disabled).  Each case runs in a child that installs a
 * seccomp filter first, then pages a file twice the budget through umapd
 * (reads, writes, evictions, flush, unmap) and checks every byte in the
 * mapping and in the file:
 *   uring_refused   io_uring_setup fails with EPERM: auto picks aio
 *   both_refused    io_uring_setup and io_setup fail: auto picks psync
 *   asked_uring     UMAPD_IO=io_uring while it is refused: psync, still correct
 * The engine the process ended up with is read from stats.io_engine.
 */
#include "umapd_test.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct fb_case {
	const char *name;
	bool block_aio;
	const char *io;       /* UMAPD_IO, or NULL for the default (auto) */
	uint64_t want;        /* UMAPD_IOENG_* expected */
};

/* Make io_uring_setup (and io_setup if asked) fail with EPERM. */
static int refuse(bool aio_too)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, aio_too ? __NR_io_setup : 0xFFFFFFFFu, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
}

static int run_case(void *arg)
{
	const struct fb_case *c = arg;
	size_t ps = t_sys_page(), np = t_scaled(2048, 256), len = np * ps;
	char budget[32];

	if (refuse(c->block_aio) < 0)
		t_fail("%s: cannot install the seccomp filter: %s", c->name, strerror(errno));
	if (syscall(__NR_io_uring_setup, 4, NULL) != -1 || errno != EPERM)
		t_fail("%s: the filter does not refuse io_uring_setup", c->name);
	if (c->io)
		setenv("UMAPD_IO", c->io, 1);
	else
		unsetenv("UMAPD_IO");
	snprintf(budget, sizeof(budget), "%zu", len / 2);
	setenv("UMAPD_BUFSIZE", budget, 1);

	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, len, 41);
	uint8_t *p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	t_step("%s: read everything (twice the budget)", c->name);
	t_check_pat("first read", p, len, 0, 41);
	t_step("%s: rewrite every other page", c->name);
	for (size_t i = 0; i < np; i += 2)
		t_fill_pat(p + i * ps, ps, i * ps, 42);
	for (size_t i = 0; i < np; i++)
		t_check_pat("read back", p + i * ps, ps, i * ps, i % 2 ? 41 : 42);
	struct umapd_stats s;
	t_stats(&s);
	if (s.io_engine != c->want)
		t_fail("%s: stats.io_engine = %llu, want %llu", c->name, (unsigned long long)s.io_engine,
		       (unsigned long long)c->want);
	if (s.evictions == 0)
		t_fail("%s: no evictions: the case did not page", c->name);
	t_unmap(p);
	for (size_t i = 0; i < np; i++)
		t_check_file_pat("file after unmap", fd, (off_t)(i * ps), ps, i % 2 ? 41 : 42);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct fb_case cases[] = {
		{ "uring_refused", false, NULL, UMAPD_IOENG_AIO },
		{ "both_refused", true, NULL, UMAPD_IOENG_PSYNC },
		{ "asked_uring", false, "io_uring", UMAPD_IOENG_PSYNC },
	};
	size_t ncases = sizeof(cases) / sizeof(cases[0]);

	t_init("io_fallback", 120);
	if (argc > 1) {
		/* One case, in a fresh process (re-executed, not forked: a
		 * forked child of a threaded process may not start threads
		 * under TSan). */
		for (size_t i = 0; i < ncases; i++)
			if (strcmp(argv[1], cases[i].name) == 0) {
				run_case((void *)&cases[i]);
				t_pass("case %s", cases[i].name);
			}
		t_fail("no case %s", argv[1]);
	}
	for (size_t i = 0; i < ncases; i++) {
		char *err = NULL;
		int st;

		t_step("case %s", cases[i].name);
		st = t_reexec(cases[i].name, NULL, 60, &err);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			t_fail("case %s: %s; %s", cases[i].name, t_wait_str(st), err ? err : "");
		free(err);
	}
	t_pass("io_uring refused by seccomp: auto falls back to aio, then psync; an explicit io_uring falls back to "
	       "psync; every byte right in the mapping and the file");
}
