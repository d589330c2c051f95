/*
 * evict_copy - write-back under a forced UMAPD_EVICT_COPY (registered twice:
 * kernel.evict_copy_bounce and kernel.evict_copy_direct, the mode comes from
 * the environment ctest sets).
 *
 * A region of at least 4x the budget over a file with a known pattern.
 * Writer threads write checksummed 64-byte records into slots of the region
 * (slot s belongs to writer s % NWRITERS, so every slot has one last value,
 * kept in a shadow copy) while the evictor runs all the time (the region is
 * 4x the budget) and two more threads loop umapd_evict and umapd_flush over
 * random ranges: pages that are written are being moved out, written back
 * and refilled.
 *
 * So that the path where the mode matters runs too, the last NPIN pages are
 * dirtied and registered as io_uring fixed buffers (io_uring_register_buffers
 * pins them for write): UFFDIO_MOVE refuses them (EBUSY) and write-back
 * writes them straight from the region (direct) or from a CPU copy (bounce)
 * and keeps them dirty.  While they are registered the main thread writes
 * into them with the CPU and with io_uring READ_FIXED (a DMA umapd cannot
 * see).  Checks:
 *   - umapd_stats().evict_mode is the forced mode, pinned_pages > 0 while the
 *     buffers are registered, and after a full umapd_flush the pinned pages
 *     are still dirty;
 *   - every byte of the region equals the shadow (first difference names the
 *     slot, its record and whether its checksum holds);
 *   - a READ_FIXED after that flush, then unregistering and umapd_flush: the
 *     file (pread) equals the shadow; again after umapd_unmap.
 */
#include "umapd_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#ifdef UMAPD_HAVE_LIBURING
#include <liburing.h>
#endif

#define NWRITERS 3
#define REC 64 /* record size: a page holds ps / REC slots */
#define NPIN 4 /* pages pinned as io_uring fixed buffers, at the end of the region */
#define SEED_FILE 21
#define SEED_SRC 22 /* the file READ_FIXED reads from */

struct rec {
	uint64_t slot;
	uint32_t writer, seq;
	uint8_t payload[40];
	uint64_t sum; /* t_hash64 of the fields above */
};
_Static_assert(sizeof(struct rec) == REC, "record size");

static size_t ps, npages, nslots, wpages; /* wpages: pages the writers use */
static uint8_t *base, *shadow;
static atomic_bool stop;
static atomic_ullong n_records, n_evicts, n_flushes, n_pin_ops;
static int want_mode;
static const char *mode_name;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void progress(void)
{
	char line[256];
	snprintf(line, sizeof(line),
		 "  progress: %llu records, %llu umapd_evict, %llu umapd_flush, %llu pinned-page writes\n",
		 (unsigned long long)atomic_load(&n_records), (unsigned long long)atomic_load(&n_evicts),
		 (unsigned long long)atomic_load(&n_flushes), (unsigned long long)atomic_load(&n_pin_ops));
	if (write(2, line, strlen(line)) < 0) {
		/* nothing to do */
	}
}

static void make_rec(struct rec *r, uint64_t slot, uint32_t writer, uint32_t seq)
{
	r->slot = slot;
	r->writer = writer;
	r->seq = seq;
	for (size_t i = 0; i < sizeof(r->payload); i++)
		r->payload[i] = t_pat(slot * 131 + seq * 7 + i, writer + 1);
	r->sum = t_hash64(r, offsetof(struct rec, sum), 0x5eed);
}

/* Fail naming the first byte of got (a region or file image of the first
 * len bytes) that differs from the shadow, and the record around it. */
static void check_image(const char *what, const uint8_t *got, size_t len)
{
	const volatile uint8_t *g = got;
	for (size_t i = 0; i < len; i++) {
		if (g[i] == shadow[i])
			continue;
		size_t page = i / ps, slot = i / REC;
		if (page >= wpages)
			t_fail("%s: pinned page %zu (region page %zu), first difference at offset %zu: "
			       "expected 0x%02x, got 0x%02x",
			       what, page - wpages, page, i, shadow[i], g[i]);
		struct rec e, r;
		memcpy(&e, shadow + slot * REC, REC);
		for (size_t k = 0; k < REC; k++)
			((uint8_t *)&r)[k] = g[slot * REC + k];
		bool e_rec = e.sum == t_hash64(&e, offsetof(struct rec, sum), 0x5eed);
		bool r_ok = r.sum == t_hash64(&r, offsetof(struct rec, sum), 0x5eed);
		char ebuf[96], rbuf[128];
		if (e_rec)
			snprintf(ebuf, sizeof(ebuf), "writer %u seq %u", e.writer, e.seq);
		else
			snprintf(ebuf, sizeof(ebuf), "the file's original bytes");
		if (r_ok)
			snprintf(rbuf, sizeof(rbuf), "a valid record of slot %llu, writer %u seq %u",
				 (unsigned long long)r.slot, r.writer, r.seq);
		else {
			uint8_t orig[REC];
			t_fill_pat(orig, REC, slot * REC, SEED_FILE);
			snprintf(rbuf, sizeof(rbuf), "%s",
				 memcmp(&r, orig, REC) == 0 ? "the file's original bytes (a lost record)"
							    : "bytes that are no valid record (torn or foreign)");
		}
		t_fail("%s: page %zu slot %zu, first difference at offset %zu: expected 0x%02x, got 0x%02x; "
		       "want %s, found %s",
		       what, page, slot, i, shadow[i], g[i], ebuf, rbuf);
	}
}

static void check_file(const char *what, int fd)
{
	uint8_t *img = malloc(npages * ps);
	T_CHECK(img != NULL, "out of memory");
	t_pread_all(fd, img, npages * ps, 0);
	check_image(what, img, npages * ps);
	free(img);
}

/* ---- the writers ---- */

static void *writer_main(void *arg)
{
	uint32_t w = (uint32_t)(uintptr_t)arg;
	uint64_t s = 0x9E3779B97F4A7C15ull * (w + 1);
	uint32_t seq = 0;
	char name[16];
	snprintf(name, sizeof(name), "writer/%u", w);
	pthread_setname_np(pthread_self(), name);
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		/* A burst in one stretch of pages, then elsewhere, so pages are
		 * written again soon after they went out. */
		size_t first = rnd(&s) % wpages, span = 1 + rnd(&s) % 8;
		for (int k = 0; k < 64; k++) {
			size_t page = first + rnd(&s) % span;
			if (page >= wpages)
				page -= wpages;
			size_t per = ps / REC, j = rnd(&s) % per;
			size_t slot = page * per + j;
			slot -= slot % NWRITERS;
			slot += w;
			if (slot >= page * per + per)
				slot -= NWRITERS;
			struct rec r;
			make_rec(&r, slot, w, ++seq);
			memcpy(base + slot * REC, &r, REC);
			memcpy(shadow + slot * REC, &r, REC);
		}
		atomic_fetch_add_explicit(&n_records, 64, memory_order_relaxed);
	}
	return NULL;
}

static void *evict_main(void *arg)
{
	bool flush = arg != NULL;
	uint64_t s = flush ? 77 : 99;
	pthread_setname_np(pthread_self(), flush ? "flush-loop" : "evict-loop");
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		size_t first = rnd(&s) % npages, n = 1 + rnd(&s) % 32;
		if (first + n > npages)
			n = npages - first;
		errno = 0;
		int rc = flush ? umapd_flush(base + first * ps, n * ps) : umapd_evict(base + first * ps, n * ps);
		if (rc != 0)
			t_fail("%s(pages %zu..%zu) while writers run: %d errno %s", flush ? "umapd_flush" : "umapd_evict",
			       first, first + n - 1, rc, t_errname(errno));
		atomic_fetch_add_explicit(flush ? &n_flushes : &n_evicts, 1, memory_order_relaxed);
	}
	return NULL;
}

#ifdef UMAPD_HAVE_LIBURING
static struct io_uring ring;
static int src_fd;

/* io_uring READ_FIXED of len bytes from src_fd at soff into pinned page i at
 * byte o; the shadow follows. */
static void read_fixed(unsigned i, size_t o, size_t len, off_t soff)
{
	uint8_t *dst = base + (wpages + i) * ps + o;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	T_CHECK(sqe != NULL, "io_uring_get_sqe: queue full");
	io_uring_prep_read_fixed(sqe, src_fd, dst, (unsigned)len, (uint64_t)soff, (int)i);
	int rc = io_uring_submit(&ring);
	T_CHECK(rc == 1, "io_uring_submit (READ_FIXED into pinned page %u): %s", i, t_errname(rc < 0 ? -rc : EIO));
	struct io_uring_cqe *cqe;
	do
		rc = io_uring_wait_cqe(&ring, &cqe);
	while (rc == -EINTR);
	T_CHECK(rc == 0, "io_uring_wait_cqe: %s", t_errname(-rc));
	int res = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	T_CHECK(res == (int)len, "READ_FIXED of %zu bytes into pinned page %u at %zu: res %d (%s)", len, i, o, res,
		res < 0 ? t_errname(-res) : "short");
	t_fill_pat(shadow + (wpages + i) * ps + o, len, (uint64_t)soff, SEED_SRC);
	atomic_fetch_add_explicit(&n_pin_ops, 1, memory_order_relaxed);
}

/* A CPU write of a few bytes into pinned page i. */
static void cpu_write(unsigned i, uint64_t *s)
{
	size_t o = rnd(s) % (ps - 256), len = 1 + rnd(s) % 256;
	uint32_t seed = 1000 + (uint32_t)(rnd(s) % 1000);
	uint8_t *p = base + (wpages + i) * ps + o;
	t_fill_pat(p, len, o, seed);
	t_fill_pat(shadow + (wpages + i) * ps + o, len, o, seed);
	atomic_fetch_add_explicit(&n_pin_ops, 1, memory_order_relaxed);
}
#endif

int main(void)
{
	t_init("evict_copy", 120);
	t_watchdog_hook(progress);
	const char *m = getenv("UMAPD_EVICT_COPY");
	if (m && strcmp(m, "bounce") == 0)
		want_mode = UMAPD_EVICT_BOUNCE, mode_name = "bounce";
	else if (m && strcmp(m, "direct") == 0)
		want_mode = UMAPD_EVICT_DIRECT, mode_name = "direct";
	else
		t_fail("run with UMAPD_EVICT_COPY=bounce or =direct (ctest sets it), not \"%s\"", m ? m : "(unset)");
	static char tname[64];
	snprintf(tname, sizeof(tname), "evict_copy_%s", mode_name);
	t_init(tname, 120);
#ifndef UMAPD_HAVE_LIBURING
	t_skip("built without liburing: no io_uring fixed buffers to pin pages with");
#else
	ps = t_sys_page();
	size_t budget_pages = t_scaled(1024, 64);
	wpages = 4 * budget_pages;
	npages = wpages + NPIN;
	nslots = npages * (ps / REC);
	double secs = 4.0 * t_scale();
	if (secs < 1.0)
		secs = 1.0;

	int rc = io_uring_queue_init(8, &ring, 0);
	if (rc < 0)
		t_skip("io_uring not available: io_uring_queue_init: %s", t_errname(-rc));

	t_step("files");
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, npages * ps, SEED_FILE);
	src_fd = t_tmpfile(NULL);
	t_write_file_pat(src_fd, 0, 64 * ps, SEED_SRC);
	shadow = malloc(npages * ps);
	T_CHECK(shadow != NULL, "out of memory");
	t_fill_pat(shadow, npages * ps, 0, SEED_FILE);

	t_umapd_start();
	t_set_bufsize(budget_pages * ps);
	base = t_map(npages * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	struct umapd_stats st;
	t_stats(&st);
	T_CHECK(st.evict_mode == (uint64_t)want_mode,
		"umapd_stats().evict_mode is %llu with UMAPD_EVICT_COPY=%s, want %d",
		(unsigned long long)st.evict_mode, mode_name, want_mode);

	t_step("dirty the %d pages to pin and register them as io_uring fixed buffers", NPIN);
	uint64_t s = 4242;
	struct iovec iov[NPIN];
	for (unsigned i = 0; i < NPIN; i++) {
		t_fill_pat(base + (wpages + i) * ps, ps, (wpages + i) * ps, 30 + i);
		t_fill_pat(shadow + (wpages + i) * ps, ps, (wpages + i) * ps, 30 + i);
		iov[i].iov_base = base + (wpages + i) * ps;
		iov[i].iov_len = ps;
	}
	rc = io_uring_register_buffers(&ring, iov, NPIN);
	if (rc == -ENOMEM || rc == -EPERM)
		t_skip("io_uring_register_buffers: %s (RLIMIT_MEMLOCK?)", t_errname(-rc));
	T_CHECK(rc == 0, "io_uring_register_buffers(%d region pages): %s", NPIN, t_errname(-rc));

	t_step("writers, umapd_evict and umapd_flush loops for %.1f s (mode %s)", secs, mode_name);
	pthread_t wt[NWRITERS], et, ft;
	for (unsigned w = 0; w < NWRITERS; w++)
		T_CHECK(pthread_create(&wt[w], NULL, writer_main, (void *)(uintptr_t)w) == 0, "pthread_create");
	T_CHECK(pthread_create(&et, NULL, evict_main, NULL) == 0, "pthread_create");
	T_CHECK(pthread_create(&ft, NULL, evict_main, (void *)1) == 0, "pthread_create");
	uint64_t end = t_now_ns() + (uint64_t)(secs * 1e9);
	while (t_now_ns() < end) {
		unsigned i = (unsigned)(rnd(&s) % NPIN);
		if (rnd(&s) % 2) {
			size_t o = rnd(&s) % (ps / 2), len = 64 + rnd(&s) % (ps / 2 - 64);
			read_fixed(i, o & ~(size_t)7, len, (off_t)(rnd(&s) % (63 * ps)));
		} else {
			cpu_write(i, &s);
		}
		usleep(2000);
	}
	atomic_store(&stop, true);
	for (unsigned w = 0; w < NWRITERS; w++)
		pthread_join(wt[w], NULL);
	pthread_join(et, NULL);
	pthread_join(ft, NULL);

	t_step("the region after the writers stopped");
	check_image("region after the writers stopped", base, npages * ps);

	t_step("umapd_flush of the whole region with the pinned pages registered");
	T_OK(umapd_flush(base, npages * ps));
	T_OK(umapd_evict(base + wpages * ps, NPIN * ps));
	struct umapd_stats rs;
	t_region_stats(base, &rs);
	t_stats(&st);
	T_CHECK(st.pinned_pages > 0 && rs.pinned_pages > 0,
		"pinned_pages is %llu (region %llu) while %d dirty region pages are io_uring fixed buffers, want > 0",
		(unsigned long long)st.pinned_pages, (unsigned long long)rs.pinned_pages, NPIN);
	T_CHECK(rs.dirty_bytes >= NPIN * ps,
		"region dirty_bytes %llu after umapd_flush and umapd_evict with %d pinned pages: pinned pages must "
		"stay dirty (want >= %zu)",
		(unsigned long long)rs.dirty_bytes, NPIN, NPIN * ps);
	T_CHECK(rs.resident_bytes >= NPIN * ps, "region resident_bytes %llu: the pinned pages were dropped",
		(unsigned long long)rs.resident_bytes);
	check_image("region after umapd_flush with pinned pages", base, npages * ps);

	t_step("READ_FIXED and CPU writes into the pinned pages after their write-back");
	for (unsigned i = 0; i < NPIN; i++) {
		read_fixed(i, 512, ps / 2, (off_t)(i * ps + 100));
		cpu_write(i, &s);
	}
	check_image("region after the last writes to the pinned pages", base, npages * ps);

	t_step("io_uring_unregister_buffers, umapd_flush, file");
	rc = io_uring_unregister_buffers(&ring);
	T_CHECK(rc == 0, "io_uring_unregister_buffers: %s", t_errname(-rc));
	T_OK(umapd_flush(base, npages * ps));
	check_file("file after unregistering and umapd_flush", fd);
	check_image("region after unregistering and umapd_flush", base, npages * ps);

	t_step("umapd_unmap, file");
	uint64_t pinned = st.pinned_pages;
	t_unmap(base);
	check_file("file after umapd_unmap", fd);
	t_stats(&st);
	T_CHECK(st.evict_mode == (uint64_t)want_mode, "evict_mode changed to %llu", (unsigned long long)st.evict_mode);
	T_CHECK(st.io_errors == 0, "io_errors %llu", (unsigned long long)st.io_errors);
	io_uring_queue_exit(&ring);
	close(src_fd);
	close(fd);
	free(shadow);
	t_pass("UMAPD_EVICT_COPY=%s: evict_mode %d; %llu records by %d writers in %zu pages (budget %zu) with %llu "
	       "umapd_evict and %llu umapd_flush, %llu CPU/READ_FIXED writes into %d pinned pages "
	       "(pinned_pages %llu); %llu evictions (%llu dirty): region and file byte-exact",
	       mode_name, want_mode, (unsigned long long)atomic_load(&n_records), NWRITERS, npages, budget_pages,
	       (unsigned long long)atomic_load(&n_evicts), (unsigned long long)atomic_load(&n_flushes),
	       (unsigned long long)atomic_load(&n_pin_ops), NPIN, (unsigned long long)pinned,
	       (unsigned long long)st.evictions, (unsigned long long)st.dirty_evictions);
#endif
}
