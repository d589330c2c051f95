/*
 * fill_partial - a fill whose UFFDIO_COPY stops part way keeps what it
 * installed.
 *
 * UFFDIO_COPY of several pages can install some and then fail (-ENOMEM in
 * a memory cgroup at its limit: the kernel reports the partial copy, and
 * the retry of the rest fails).  The pages installed before the failure
 * are in the page tables; the engine used to give the whole rest of the
 * fill up, forgetting them.  A page forgotten while present is never
 * evicted, and one installed writable (read-ahead of a stream that writes
 * what it reads) takes writes without a fault: they never reached the file.
 *
 * Here the copy hook (eng_test_copy_hook) cuts one multi-page copy per lap
 * after two pages and fails the rest with ENOMEM.  Each lap is a
 * sequential read-modify-write pass (a byte of every page read, checked,
 * incremented), whose read-ahead is installed writable after the first
 * windows.  Then umapd_evict of the whole region must leave no page present
 * (mincore), and after unmap the file must hold every increment.
 */
#include "umapd_test.h"

#include "engine/engine.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NP 512
#define LAPS 6
#define SEED 17

static size_t ps;
static atomic_int fire_at = -1;  /* multi-page copy number to cut short, -1: none */
static atomic_int copies, fired;

static int copy_hook(uintptr_t dst, size_t *len)
{
	static _Thread_local uintptr_t cut_at;

	if (cut_at && dst == cut_at) {
		cut_at = 0;
		return -ENOMEM; /* the retry of what is left, as in a full cgroup */
	}
	if (*len < 4 * ps)
		return 0;
	if (atomic_fetch_add(&copies, 1) == atomic_load(&fire_at)) {
		*len = 2 * ps;
		cut_at = dst + *len;
		atomic_fetch_add(&fired, 1);
	}
	return 0;
}

static size_t byte_of(size_t p)
{
	return (p * 53 + 7) % ps;
}

int main(void)
{
	int fd = t_tmpfile(NULL);
	uint8_t counts[NP] = { 0 };
	unsigned char vec[NP];

	t_init("fill_partial", 60);
	ps = t_sys_page();
	t_write_file_pat(fd, 0, NP * ps, SEED);
	/* Set before the engine's threads exist; fire_at switches it on. */
	eng_test_copy_hook = copy_hook;
	t_umapd_start();
	uint8_t *m = t_map(NP * ps, PROT_READ | PROT_WRITE, 0, fd, 0, ps, 64);

	for (int lap = 0; lap < LAPS; lap++) {
		t_step("lap %d: a sequential read-modify-write pass, one copy cut short", lap);
		atomic_store(&copies, 0);
		atomic_store(&fire_at, 2 + lap);
		for (size_t p = 0; p < NP; p++) {
			volatile uint8_t *b = m + p * ps + byte_of(p);
			uint8_t want = (uint8_t)(t_pat(p * ps + byte_of(p), SEED) + counts[p]), got = *b;

			T_CHECK(got == want, "lap %d: page %zu reads %#x, expected %#x", lap, p, got, want);
			*b = (uint8_t)(got + 1);
			counts[p]++;
		}
		atomic_store(&fire_at, -1);

		t_step("lap %d: evict all, then no page may be present", lap);
		T_OK(umapd_evict(m, NP * ps));
		T_OK(mincore(m, NP * ps, vec));
		for (size_t p = 0; p < NP; p++)
			T_CHECK(!(vec[p] & 1), "lap %d: page %zu is still present after umapd_evict of the whole region: "
				"installed by a copy cut short, then forgotten", lap, p);
	}
	T_CHECK(atomic_load(&fired) > 0, "the copy hook never cut a copy short: the test tested nothing");
	t_unmap(m);

	t_step("the file after unmap");
	uint8_t *buf = malloc(ps), *want = malloc(ps);

	T_CHECK(buf && want, "out of memory");
	for (size_t p = 0; p < NP; p++) {
		t_pread_all(fd, buf, ps, (off_t)(p * ps));
		t_fill_pat(want, ps, p * ps, SEED);
		want[byte_of(p)] = (uint8_t)(want[byte_of(p)] + counts[p]);
		t_check_bytes("file after unmap", buf, want, ps, p * ps);
	}
	free(buf);
	free(want);
	close(fd);
	t_pass("%d copies cut short by ENOMEM: what they installed stayed tracked, every write reached the file",
	       atomic_load(&fired));
}
