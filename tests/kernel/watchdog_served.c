/*
 * watchdog_served - the pager watchdog must not call a fault stuck once it
 * was served, however long its page stays busy afterwards.
 *
 * The watchdog keeps the address of each fault that had to wait, and twice
 * a second drops those whose page is no longer busy.  It used to count any
 * busy page as a fault still waiting: a fault served in a moment, whose page
 * then went straight into a long write-back with nobody waiting on it (an
 * unmap's flush of a large region), was reported "outstanding for 10 s"
 * (bench_io once showed 782 such stuck faults with no thread blocked).
 *
 * Here, with UMAPD_FAULT_TIMEOUT=300 (ctest environment):
 *   - page X is dirty; umapd_flush(X) runs in a thread and the write-back
 *     test hook holds it once X is written (X is busy, its slot empty);
 *   - a thread writes X: its fault waits on the busy page and is noted;
 *     then the hook lets the flush finish and the write completes;
 *   - at once, a second umapd_flush(X) is held in the hook for 1.2 s,
 *     nobody waiting on X, while the watchdog runs two or three times;
 *   - the region's stuck_faults must stay 0, and the file must hold the
 *     thread's write.
 * A fault that really waits is still reported: kernel.watchdog.
 */
#include "umapd_test.h"

#include "engine/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NPAGES 4
#define SEED_FILE 61
#define SEED_FIRST 62
#define SEED_SECOND 63
#define HOLD_MS 1200

static size_t ps;
static uint8_t *base;
static uintptr_t page_x;

/* 0: idle; 1: the first flush is in its hook; 2: it may go on; 3: the
 * second flush holds X (the hook sleeps HOLD_MS).  Under ph.lock. */
static struct t_phases ph = T_PHASES_INIT;
static atomic_int hooks_held;

static void wb_hook(uintptr_t addr, size_t len, bool evict)
{
	(void)evict;
	if (!(addr <= page_x && page_x < addr + len))
		return;
	pthread_mutex_lock(&ph.lock);
	if (ph.at == 0) {
		t_phase_set(&ph, 1);
		if (!t_phase_wait(&ph, 2))
			fprintf(stderr, "  the first flush's hook timed out\n");
		atomic_fetch_add(&hooks_held, 1);
	} else if (ph.at == 3) {
		pthread_mutex_unlock(&ph.lock);
		usleep(HOLD_MS * 1000);
		atomic_fetch_add(&hooks_held, 1);
		return;
	}
	pthread_mutex_unlock(&ph.lock);
}

static int flush_rc, flush_err;

static void *flusher(void *arg)
{
	(void)arg;
	flush_rc = umapd_flush((void *)page_x, ps);
	flush_err = errno;
	return NULL;
}

static atomic_int written;

static void *writer(void *arg)
{
	(void)arg;
	t_fill_pat((void *)page_x, ps, page_x - (uintptr_t)base, SEED_SECOND);
	atomic_store(&written, 1);
	return NULL;
}

/* Whether a fault on X has been noted as waiting (the watchdog's table). */
static bool x_noted(void)
{
	bool in = false;

	pthread_mutex_lock(&eng.lock);
	for (size_t i = 0; i < eng.nwaiters; i++)
		in |= eng.waiters[i].addr == page_x;
	pthread_mutex_unlock(&eng.lock);
	return in;
}

int main(void)
{
	struct umapd_stats s;
	pthread_t fl, wr;
	int fd;

	t_init("watchdog_served", 60);
	ps = t_sys_page();
	t_umapd_start();
	T_CHECK(atomic_load(&eng.fault_timeout_ms) == 300,
		"UMAPD_FAULT_TIMEOUT=300 not in effect (fault timeout %u ms)", atomic_load(&eng.fault_timeout_ms));
	fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, NPAGES * ps, SEED_FILE);
	base = t_map(NPAGES * ps, PROT_READ | PROT_WRITE, 0, fd, 0, ps, -1);
	page_x = (uintptr_t)base + ps;
	eng_test_wb_hook = wb_hook;

	t_step("dirty X; umapd_flush(X) in a thread, held in the write-back hook");
	t_fill_pat((void *)page_x, ps, ps, SEED_FIRST);
	T_CHECK(pthread_create(&fl, NULL, flusher, NULL) == 0, "pthread_create");
	pthread_mutex_lock(&ph.lock);
	bool held = t_phase_wait(&ph, 1);
	pthread_mutex_unlock(&ph.lock);
	if (!held)
		t_fail("the flush of X never reached the write-back hook");

	t_step("a thread writes X while it is busy: its fault waits");
	T_CHECK(pthread_create(&wr, NULL, writer, NULL) == 0, "pthread_create");
	for (int i = 0; i < 1000 && !x_noted(); i++)
		usleep(1000);
	T_CHECK(x_noted(), "the write to the busy page X was never noted as a waiting fault");
	T_CHECK(!atomic_load(&written), "the write to X completed while X was being written back");

	t_step("let the flush finish; the write completes");
	pthread_mutex_lock(&ph.lock);
	t_phase_set(&ph, 2);
	pthread_mutex_unlock(&ph.lock);
	pthread_join(fl, NULL);
	T_CHECK(flush_rc == 0, "the first umapd_flush: %s", t_errname(flush_err));
	pthread_join(wr, NULL);
	T_CHECK(atomic_load(&written), "the writer did not finish");

	t_step("a second umapd_flush(X), held %d ms with nobody waiting on X", HOLD_MS);
	pthread_mutex_lock(&ph.lock);
	t_phase_set(&ph, 3);
	pthread_mutex_unlock(&ph.lock);
	T_OK(umapd_flush((void *)page_x, ps));
	T_CHECK(atomic_load(&hooks_held) == 2, "the second flush did not reach the hook (%d holds)",
		atomic_load(&hooks_held));
	eng_test_wb_hook = NULL;
	T_OK(umapd_region_stats(base, &s));
	T_CHECK(s.stuck_faults == 0,
		"the watchdog reported %llu stuck fault(s), but the only fault that waited was served long "
		"before; X was merely busy in a write-back",
		(unsigned long long)s.stuck_faults);

	t_step("the file holds the thread's write");
	uint8_t *buf = malloc(ps);
	T_CHECK(buf != NULL, "out of memory");
	t_pread_all(fd, buf, ps, (off_t)ps);
	t_check_pat("the file at X after the second flush", buf, ps, ps, SEED_SECOND);
	free(buf);
	t_unmap(base);
	close(fd);
	t_pass("a fault served at once was not reported stuck while its page stayed busy %d ms in a write-back",
	       HOLD_MS);
}
