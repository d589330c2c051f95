/*
 * probe_engine - the kernel probe must not disturb the process's own
 * userfaultfd.
 *
 * The engine runs (its threads started, a region registered, some pages
 * dirty, some clean, some never touched) when the process calls
 * umapd_kernel_probe() for the first time, so the probe forks while all of
 * that is live.  Afterwards every byte of the region must read as before,
 * pages never touched must still come from the file, umapd_evict and
 * umapd_flush must write the dirty pages back, the file must hold them, and
 * the probe must have left no child process and no descriptor behind.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "umapd_test.h"

#define SEED_FILE 11
#define SEED_DIRTY 12

/* The open descriptors, as "fd -> target" lines.  Event polls, eventfds and
 * io_uring instances are left out: the engine's fault threads make theirs as
 * they start, which may be while the probe runs; the probe makes its own
 * only in its children. */
static void list_fds(char *out, size_t len)
{
	size_t n = 0;
	out[0] = '\0';
	for (int fd = 0; fd < 1024 && n < len; fd++) {
		char link[64], target[256];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t l = readlink(link, target, sizeof(target) - 1);
		if (l < 0)
			continue;
		target[l] = '\0';
		if (strcmp(target, "anon_inode:[eventpoll]") == 0 || strcmp(target, "anon_inode:[eventfd]") == 0 ||
		    strcmp(target, "anon_inode:[io_uring]") == 0)
			continue;
		n += (size_t)snprintf(out + n, len - n, "  %d -> %s\n", fd, target);
	}
}

int main(void)
{
	t_init("probe_engine", 60);
	size_t ps = t_sys_page(), npages = 256, len = npages * ps;

	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, len, SEED_FILE);
	t_umapd_start();
	unsigned char *p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);

	/* Pages 0..63 dirty, 64..127 read (clean), 128.. never touched. */
	t_step("dirty pages 0..63, read pages 64..127");
	for (size_t i = 0; i < 64; i++)
		t_fill_pat(p + i * ps, ps, i * ps, SEED_DIRTY);
	t_check_pat("clean pages before the probe", p + 64 * ps, 64 * ps, 64 * ps, SEED_FILE);

	t_step("first umapd_kernel_probe with the engine running");
	static char fds_before[16384], fds_after[16384];
	list_fds(fds_before, sizeof(fds_before));
	struct umapd_kernel_info ki;
	T_OK(umapd_kernel_probe(&ki));
	list_fds(fds_after, sizeof(fds_after));
	T_CHECK(strcmp(fds_before, fds_after) == 0, "the probe changed the open descriptors: before\n%safter\n%s",
		fds_before, fds_after);
	errno = 0;
	T_CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "the probe left a child behind");
	if (ki.uffd_error == 0 && ki.feat_wp)
		T_CHECK(ki.io[UMAPD_IO_PWRITE].result == UMAPD_PROBE_SAFE, "pwrite check: result %d error %s",
			ki.io[UMAPD_IO_PWRITE].result, t_errname(ki.io[UMAPD_IO_PWRITE].error));

	t_step("region after the probe");
	t_check_pat("dirty pages after the probe", p, 64 * ps, 0, SEED_DIRTY);
	t_check_pat("clean pages after the probe", p + 64 * ps, 64 * ps, 64 * ps, SEED_FILE);
	t_check_pat("untouched pages after the probe", p + 128 * ps, 128 * ps, 128 * ps, SEED_FILE);

	t_step("evict and flush after the probe");
	T_OK(umapd_evict(p, 32 * ps));
	t_check_file_pat("file after evicting dirty pages 0..31", fd, 0, 32 * ps, SEED_DIRTY);
	t_check_pat("evicted pages read back", p, 32 * ps, 0, SEED_DIRTY);
	T_OK(umapd_flush(p, len));
	t_check_file_pat("file after flush", fd, 0, 64 * ps, SEED_DIRTY);
	t_check_file_pat("file beyond the dirty pages", fd, 64 * ps, len - 64 * ps, SEED_FILE);
	t_unmap(p);
	t_pass("probe forked with the engine live (%zu-page region, 64 dirty): region, evict, flush and file intact; "
	       "no child or descriptor left", npages);
}
