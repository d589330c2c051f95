/*
 * fill_wake - a read miss installed writable and dirty must not let its
 * thread run before the page is DIRTY.
 *
 * Once a region's reads are followed by writes (lib/engine/rmw.c), a read
 * miss is installed writable.  UFFDIO_COPY used to wake the faulting
 * thread at once, while the page was still FILLING in the engine's table;
 * the thread could then write the page and call umapd_flush, which passes
 * over FILLING pages, and the flush returned before that write reached the
 * file (kernel.gup's clean state caught it once in a few dozen runs).
 *
 * Here the window is held open: the fill test hook (eng_test_fill_hook)
 * sleeps 20 ms after the install of a page installed dirty, before the
 * page leaves FILLING.  After a random read-modify-write warm-up puts the
 * region in that mode, each of 32 pages evicted beforehand is read (a
 * miss), changed, flushed, and read back from the file with pread.
 */
#include "umapd_test.h"

#include "engine/engine.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NP 1024
#define SEED 5

static atomic_bool armed;
static atomic_uint held;

static void fill_hook(uintptr_t addr, bool keep_dirty)
{
	(void)addr;
	if (!keep_dirty || !atomic_load(&armed))
		return;
	atomic_fetch_add(&held, 1);
	struct timespec ts = { .tv_nsec = 20 * 1000 * 1000 };
	nanosleep(&ts, NULL);
}

int main(void)
{
	size_t ps = t_sys_page();
	int fd = t_tmpfile(NULL);
	uint8_t *counts = calloc(NP, 1);
	uint64_t x = 99;

	t_init("fill_wake", 60);
	T_CHECK(counts != NULL, "out of memory");
	t_write_file_pat(fd, 0, NP * ps, SEED);
	/* Set before the engine's threads exist (their creation orders it);
	 * `armed` switches it on and off. */
	eng_test_fill_hook = fill_hook;
	t_umapd_start();
	uint8_t *m = t_map(NP * ps, PROT_READ | PROT_WRITE, 0, fd, 0, ps, -1);

	t_step("random read-modify-write until read misses are installed dirty");
	struct umapd_stats s = { 0 };
	for (int round = 0; s.rmw_installs == 0; round++) {
		T_CHECK(round < 50, "no read miss installed dirty after %d rounds of random read-modify-write",
			round);
		T_OK(umapd_evict(m, NP * ps));
		for (int k = 0; k < NP / 4; k++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			size_t p = (size_t)(x >> 33) % NP;
			volatile uint8_t *b = m + p * ps + 8;

			*b = (uint8_t)(*b + 1);
			counts[p]++;
		}
		T_OK(umapd_region_stats(m, &s));
	}

	t_step("read a missing page, write it, flush, pread");
	T_OK(umapd_evict(m, NP * ps));
	atomic_store(&armed, true);
	for (size_t p = 0; p < 32; p++) {
		volatile uint8_t *b = m + p * ps + 8;
		uint8_t want = (uint8_t)(t_pat(p * ps + 8, SEED) + counts[p]), got = *b, infile;

		T_CHECK(got == want, "page %zu: read %#x, expected %#x", p, got, want);
		*b = (uint8_t)(got + 0x55);
		counts[p] = (uint8_t)(counts[p] + 0x55);
		T_OK(umapd_flush(m + p * ps, ps));
		t_pread_all(fd, &infile, 1, (off_t)(p * ps + 8));
		T_CHECK(infile == (uint8_t)(got + 0x55),
			"page %zu: the file holds %#x after umapd_flush, the page %#x (the write was made "
			"while the page was still being installed)", p, infile, (uint8_t)(got + 0x55));
	}
	atomic_store(&armed, false);
	T_CHECK(atomic_load(&held) > 0, "no read miss was installed dirty while the hook was armed");
	unsigned nheld = atomic_load(&held);
	t_unmap(m);
	free(counts);
	t_pass("32 read misses, %u installed dirty, each write in the file after umapd_flush", nheld);
}
