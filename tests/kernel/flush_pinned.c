/*
 * flush_pinned - a flush that meets a page in another thread's eviction
 * must write it again if the eviction keeps it dirty, even when that
 * eviction ends while the flush is busy writing other pages.
 *
 * An eviction that finds a page pinned (a DMA in flight) writes it straight
 * from the region and keeps it dirty: the DMA may still change it.  A flush
 * called meanwhile skips the busy page and writes the rest; it used to look
 * at the skipped page again only if it had to wait for it.  When the
 * eviction finished while the flush was writing its own pages, the flush
 * found nothing busy, never waited, and returned with the page dirty and
 * the file holding the eviction's stale copy (kernel.gup's budget state,
 * about once in a thousand O_DIRECT reads into the region).
 *
 * Here the order is forced.  Page P is pinned for good by registering it
 * as an io_uring fixed buffer; page C is dirty too.  A thread calls
 * umapd_evict(P): the move finds P pinned, P is written from the region,
 * and the write-back test hook (eng_test_wb_hook) holds the eviction there.
 * The main thread then changes P through the pin (io_uring READ_FIXED: no
 * fault, as a DMA) and calls umapd_flush over P and C.  The flush skips P
 * (busy) and writes C; in C's hook it lets the eviction finish and waits
 * until umapd_evict has returned.  When umapd_flush returns, the file must
 * hold P's new bytes.
 */
#include "umapd_test.h"

#include "engine/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifdef UMAPD_HAVE_LIBURING
#include <liburing.h>

#define NPAGES 4
#define SEED_FILE 31
#define SEED_CPU 32
#define SEED_DMA 33

static size_t ps;
static uint8_t *base;
static uintptr_t page_p, page_c;

/* 0: start; 1: the eviction of P has written it and waits in the hook;
 * 2: the flush has written C and lets the eviction go on; 3: umapd_evict
 * has returned.  Under ph.lock. */
static struct t_phases ph = T_PHASES_INIT;
static int evict_rc, evict_err;

static void wb_hook(uintptr_t addr, size_t len, bool evict)
{
	pthread_mutex_lock(&ph.lock);
	if (ph.at == 0 && evict && addr <= page_p && page_p < addr + len) {
		/* The eviction of P: written, still EVICTING. */
		t_phase_set(&ph, 1);
		if (!t_phase_wait(&ph, 2))
			fprintf(stderr, "  the eviction's hook timed out waiting for the flush\n");
	} else if (ph.at == 1 && !evict && addr <= page_c && page_c < addr + len) {
		/* The flush has written C, having skipped the busy P: now the
		 * eviction finishes, before the flush looks at the range again. */
		t_phase_set(&ph, 2);
		if (!t_phase_wait(&ph, 3))
			fprintf(stderr, "  the flush's hook timed out waiting for umapd_evict to return\n");
	}
	pthread_mutex_unlock(&ph.lock);
}

static void *evictor(void *arg)
{
	(void)arg;
	int rc = umapd_evict((void *)page_p, ps);
	int e = errno;

	pthread_mutex_lock(&ph.lock);
	evict_rc = rc;
	evict_err = e;
	t_phase_set(&ph, 3);
	pthread_mutex_unlock(&ph.lock);
	return NULL;
}

int main(void)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	struct umapd_stats s;
	pthread_t th;
	int fd, sfd, rc;

	t_init("flush_pinned", 60);
	ps = t_sys_page();
	t_umapd_start();
	if (!(eng.uffd.features & UFFD_FEATURE_MOVE))
		t_skip("no UFFDIO_MOVE on this kernel: write-back cannot see pinned pages at all");
	fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, NPAGES * ps, SEED_FILE);
	base = t_map(NPAGES * ps, PROT_READ | PROT_WRITE, 0, fd, 0, ps, -1);
	page_p = (uintptr_t)base;
	page_c = (uintptr_t)base + 2 * ps;

	t_step("dirty P and C; pin P as an io_uring fixed buffer");
	t_fill_pat((void *)page_p, ps, 0, SEED_CPU);
	t_fill_pat((void *)page_c, ps, 2 * ps, SEED_CPU);
	rc = io_uring_queue_init(4, &ring, 0);
	if (rc < 0)
		t_skip("io_uring_queue_init: %s", t_errname(-rc));
	struct iovec iov = { (void *)page_p, ps };
	rc = io_uring_register_buffers(&ring, &iov, 1);
	if (rc < 0)
		t_skip("io_uring_register_buffers on region memory: %s", t_errname(-rc));
	sfd = t_tmpfile(NULL);
	t_write_file_pat(sfd, 0, ps, SEED_DMA);

	t_step("umapd_evict(P) in a thread, held in the write-back hook once P is written");
	eng_test_wb_hook = wb_hook;
	T_CHECK(pthread_create(&th, NULL, evictor, NULL) == 0, "pthread_create");
	pthread_mutex_lock(&ph.lock);
	bool held = t_phase_wait(&ph, 1);
	pthread_mutex_unlock(&ph.lock);
	if (!held)
		t_fail("the eviction of the pinned page never reached the write-back hook");

	t_step("change P through the pin (io_uring READ_FIXED, no fault)");
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	T_CHECK(sqe != NULL, "io_uring_get_sqe");
	io_uring_prep_read_fixed(sqe, sfd, (void *)page_p, (unsigned)ps, 0, 0);
	T_CHECK(io_uring_submit(&ring) == 1, "io_uring_submit");
	do
		rc = io_uring_wait_cqe(&ring, &cqe);
	while (rc == -EINTR);
	T_CHECK(rc == 0, "io_uring_wait_cqe: %s", t_errname(-rc));
	T_CHECK(cqe->res == (int)ps, "READ_FIXED into P returned %d", cqe->res);
	io_uring_cqe_seen(&ring, cqe);
	t_check_pat("P after READ_FIXED", (void *)page_p, ps, 0, SEED_DMA);

	t_step("umapd_flush over P and C while the eviction of P is in flight");
	T_OK(umapd_flush(base, NPAGES * ps));
	pthread_join(th, NULL);
	eng_test_wb_hook = NULL;
	T_CHECK(ph.at == 3, "the flush did not run as scripted (phase %d): it did not meet P busy", ph.at);
	T_CHECK(evict_rc == 0, "umapd_evict of the pinned page: %s", t_errname(evict_err));
	T_OK(umapd_region_stats(base, &s));
	T_CHECK(s.pinned_pages >= 1, "the eviction did not find P pinned (pinned_pages %llu)",
		(unsigned long long)s.pinned_pages);

	t_step("the file holds P's new bytes and C's");
	uint8_t *buf = malloc(ps);
	T_CHECK(buf != NULL, "out of memory");
	t_pread_all(fd, buf, ps, 0);
	t_check_pat("the file at P after umapd_flush (the eviction kept P dirty; the flush must write it)", buf,
		    ps, 0, SEED_DMA);
	t_pread_all(fd, buf, ps, (off_t)(2 * ps));
	t_check_pat("the file at C after umapd_flush", buf, ps, 2 * ps, SEED_CPU);

	io_uring_unregister_buffers(&ring);
	io_uring_queue_exit(&ring);
	t_unmap(base);
	t_pread_all(fd, buf, ps, 0);
	t_check_pat("the file at P after umapd_unmap", buf, ps, 0, SEED_DMA);
	free(buf);
	close(sfd);
	close(fd);
	t_pass("a flush that met a page in another thread's eviction wrote it again after the eviction kept it "
	       "dirty (pinned), though it never had to wait for it");
}
#else
int main(void)
{
	t_init("flush_pinned", 60);
	t_skip("built without liburing: no way to pin region memory for good");
}
#endif
