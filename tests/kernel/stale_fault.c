/*
 * stale_fault - a fault message left over from an unmapped region must not
 * poison the region mapped next at the same address.
 *
 * A fault whose address no live region claims is deferred once (it may be
 * a region moved by an mremap whose event is not read yet); the second time
 * the engine poisons the page, so that a thread touching registered memory
 * nobody serves gets SIGBUS rather than zeros.  A duplicate fault message
 * of an unmapped region is such a fault too.  If the retry came while a new
 * region at the same address was registered with userfaultfd but not yet
 * in the region table, the poison landed on the new region's page and its
 * first access raised SIGBUS (seen once in stress.concurrent@aio).
 *
 * The test makes that retry happen in exactly that window: region A is
 * mapped and unmapped; region B is mapped at A's address with UMAPD_FIXED,
 * and a test hook, called by umapd_map() between the registration and the
 * table insert, queues a fault on B's first page as already deferred once
 * (fault_retry_later, tries 1), wakes the fault threads (eng_kick_fillers)
 * and gives them 200 ms to retry
 * it.  Every page of B must then read the file's bytes, without a signal.
 */
#include "umapd_test.h"
#include "../integration/sigcatch.h"

#include "engine/engine.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NPAGES 16
#define SEED 61

static int hook_calls;

static void map_hook(uintptr_t base, size_t len)
{
	(void)len;
	hook_calls++;
	fault_retry_later(base, 0, 1);
	eng_kick_fillers();
	/* Deferred faults are retried every 10 ms by an idle fault thread. */
	struct timespec ts = { 0, 200 * 1000 * 1000 };
	nanosleep(&ts, NULL);
}

int main(void)
{
	char path[256];
	size_t ps = t_sys_page(), len = NPAGES * ps;
	struct umapd_region_opts o = { .page_size = ps, .read_ahead = -1 };
	int fd;

	t_init("stale_fault", 60);
	sc_install();
	t_umapd_start();
	fd = t_tmpfile(path);
	t_write_file_pat(fd, 0, len, SEED);

	t_step("region A mapped, read, unmapped");
	uint8_t *a = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, ps, -1);
	t_check_pat("region A", a, len, 0, SEED);
	t_unmap(a);

	t_step("region B at A's address, a stale fault retried between registration and insert");
	eng_test_map_hook = map_hook;
	uint8_t *b = umapd_map(a, len, PROT_READ | PROT_WRITE, UMAPD_FIXED, fd, 0, &o);
	eng_test_map_hook = NULL;
	if (!b)
		t_fail("umapd_map at %p with UMAPD_FIXED: %s", (void *)a, t_errname(errno));
	T_CHECK(b == a, "UMAPD_FIXED mapped at %p, not %p", (void *)b, (void *)a);
	T_CHECK(hook_calls == 1, "the map hook ran %d times", hook_calls);

	t_step("every page of B reads the file");
	for (size_t i = 0; i < NPAGES; i++) {
		uint8_t v;
		int sig = sc_read(b + i * ps, &v);

		if (sig)
			t_fail("page %zu of the new region raised signal %d (%s): the stale fault poisoned it", i, sig,
			       sig == SIGBUS ? "SIGBUS" : "SIGSEGV");
	}
	t_check_pat("region B", b, len, 0, SEED);
	t_unmap(b);
	close(fd);
	t_remove_tmpfiles();
	t_pass("a stale fault retried while the next region was being mapped did not poison it");
}
