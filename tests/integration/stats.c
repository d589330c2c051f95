/*
 * stats - after a known access pattern the counters move as documented:
 * read misses, write misses, first writes to clean pages (wp), fills and
 * bytes read (exact with read-ahead off, >= with it on), evictions and dirty
 * evictions, resident and dirty bytes; latency p50 > 0 and p50 <= p99 <=
 * max; process totals cover live and unmapped regions.
 */
#include "umapd_test.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 64

#define U(x) ((unsigned long long)(x))
#define EQ(what, got, want)                                                                        \
	T_CHECK((got) == (want), "%s: %s = %llu, want %llu", what, #got, U(got), U(want))
#define GE(what, got, want)                                                                        \
	T_CHECK((got) >= (want), "%s: %s = %llu, want >= %llu", what, #got, U(got), U(want))

/*
 * Region statistics right after the accesses, checked to be settled: every
 * access above has completed, so a counter that still moves afterwards was
 * counted late (after the faulting thread resumed), which the checks must
 * not paper over.  One exception, `ra`: a thread that faults on a page a
 * read-ahead is installing is woken by that install (UFFDIO_COPY wakes the
 * range), and may run on before a filler has read its fault message; the
 * fault is counted when the message is read, a moment later (seen under
 * ASan with aio: faults 10, then 11).  There only faults and read_faults
 * may still move, and their settled values are the ones returned.
 */
static void rstats_ra(const char *what, void *p, struct umapd_stats *s, bool ra)
{
	struct umapd_stats later;
	t_region_stats(p, s);
	usleep(30000);
	t_region_stats(p, &later);
	const uint64_t *a = (const uint64_t *)s, *b = (const uint64_t *)&later;
	static const char *const names[] = { "faults", "read_faults", "write_faults", "wp_faults", "fills",
					     "evictions", "dirty_evictions", "flushed_pages", "bytes_read",
					     "bytes_written", "resident_bytes", "dirty_bytes", "readahead_pages",
					     "io_errors", "fault_wait_budget", "meta_bytes" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (a[i] != b[i] && !(ra && (i == 0 || i == 1)))
			t_fail("%s: %s was %llu right after the accesses had completed and %llu 30 ms later: "
			       "the counter is updated after the faulting thread resumes", what, names[i],
			       U(a[i]), U(b[i]));
	if (ra) {
		s->faults = later.faults;
		s->read_faults = later.read_faults;
	}
}

static void rstats(const char *what, void *p, struct umapd_stats *s)
{
	rstats_ra(what, p, s, false);
}

static void check_latency(const char *what, const struct umapd_stats *s)
{
	T_CHECK(s->latency_p50_ns > 0, "%s: latency_p50_ns is 0 after %llu faults", what, U(s->faults));
	T_CHECK(s->latency_p50_ns <= s->latency_p99_ns && s->latency_p99_ns <= s->latency_max_ns * 5 / 4 + 1,
		"%s: latency p50 %llu, p99 %llu, max %llu not ordered", what, U(s->latency_p50_ns),
		U(s->latency_p99_ns), U(s->latency_max_ns));
	T_CHECK(s->latency_p99_ns < 10ull * 1000 * 1000 * 1000, "%s: latency p99 %llu ns is absurd", what,
		U(s->latency_p99_ns));
}

static void check_sum(const char *what, const struct umapd_stats *s)
{
	T_CHECK(s->faults == s->read_faults + s->write_faults + s->wp_faults,
		"%s: faults %llu != read %llu + write %llu + wp %llu", what, U(s->faults), U(s->read_faults),
		U(s->write_faults), U(s->wp_faults));
}

int main(void)
{
	t_init("stats", 60);
	t_umapd_start();
	const size_t ps = t_sys_page(), len = NPAGES * ps;
	t_set_bufsize(256u << 20);
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, len, 1);
	struct umapd_stats s, g0, g;
	t_stats(&g0);
	EQ("process", g0.budget_bytes, (uint64_t)(256u << 20));

	/* 1. reads, no read-ahead: one read fault and one fill per page */
	t_step("read 16 pages of a read-only region, read-ahead off");
	volatile uint8_t *r = t_map(len, PROT_READ, 0, fd, 0, 0, -1);
	rstats("region stats", (void *)r, &s);
	EQ("fresh region", s.faults, 0);
	EQ("fresh region", s.resident_bytes, 0);
	unsigned sum = 0;
	for (int i = 0; i < 16; i++)
		sum += r[(size_t)i * 2 * ps + 7]; /* every other page */
	rstats("region stats", (void *)r, &s);
	EQ("16 reads", s.read_faults, 16);
	EQ("16 reads", s.write_faults, 0);
	EQ("16 reads", s.wp_faults, 0);
	EQ("16 reads", s.fills, 16);
	EQ("16 reads", s.readahead_pages, 0);
	EQ("16 reads", s.bytes_read, 16 * ps);
	EQ("16 reads", s.resident_bytes, 16 * ps);
	EQ("16 reads", s.dirty_bytes, 0);
	check_sum("16 reads", &s);
	check_latency("16 reads", &s);
	t_step("read the same pages again: no faults");
	for (int i = 0; i < 16; i++)
		sum += r[(size_t)i * 2 * ps + 100];
	rstats("region stats", (void *)r, &s);
	EQ("re-reads", s.faults, 16);
	EQ("re-reads", s.fills, 16);

	/* 2. writes */
	t_step("write misses and first writes to clean pages");
	volatile uint8_t *w = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	for (int i = 0; i < 8; i++) /* pages 0..7: write to absent pages */
		w[(size_t)i * ps + 1] = (uint8_t)i;
	rstats("region stats", (void *)w, &s);
	EQ("8 write misses", s.write_faults, 8);
	EQ("8 write misses", s.read_faults, 0);
	EQ("8 write misses", s.wp_faults, 0);
	EQ("8 write misses", s.fills, 8);
	EQ("8 write misses", s.dirty_bytes, 8 * ps);
	for (int i = 8; i < 16; i++) /* pages 8..15: read, then write */
		sum += w[(size_t)i * ps];
	rstats("region stats", (void *)w, &s);
	EQ("8 read misses", s.read_faults, 8);
	EQ("8 read misses", s.dirty_bytes, 8 * ps);
	for (int i = 8; i < 16; i++)
		w[(size_t)i * ps + 2] = (uint8_t)i;
	rstats("region stats", (void *)w, &s);
	EQ("8 first writes", s.wp_faults, 8);
	EQ("8 first writes", s.write_faults, 8);
	EQ("8 first writes", s.read_faults, 8);
	EQ("8 first writes", s.faults, 24);
	EQ("8 first writes", s.fills, 16);
	EQ("8 first writes", s.bytes_read, 16 * ps);
	EQ("8 first writes", s.resident_bytes, 16 * ps);
	EQ("8 first writes", s.dirty_bytes, 16 * ps);
	EQ("8 first writes", s.evictions, 0);
	check_sum("writes", &s);
	check_latency("writes", &s);
	t_step("second writes to dirty pages: no faults");
	for (int i = 0; i < 16; i++)
		w[(size_t)i * ps + 3] = (uint8_t)i;
	rstats("region stats", (void *)w, &s);
	EQ("second writes", s.faults, 24);

	/* 3. eviction */
	t_step("evict the written region");
	T_OK(umapd_evict((void *)w, len));
	rstats("region stats", (void *)w, &s);
	EQ("evict", s.evictions, 16);
	EQ("evict", s.dirty_evictions, 16);
	GE("evict", s.bytes_written, 16 * ps);
	EQ("evict", s.resident_bytes, 0);
	EQ("evict", s.dirty_bytes, 0);
	T_CHECK(w[1] == 0 && w[8 * ps + 2] == 8 && w[15 * ps + 3] == 15, "evicted data did not come back");
	rstats("region stats", (void *)w, &s);
	EQ("refault after evict", s.read_faults, 8 + 3);
	EQ("refault after evict", s.fills, 16 + 3);

	/* 4. read-ahead on: fills >= faults, read-ahead counted */
	t_step("sequential reads with read-ahead 8");
	volatile uint8_t *q = t_map(len, PROT_READ, 0, fd, 0, 0, 8);
	T_OK(umapd_advise((void *)q, len, UMAPD_ADV_SEQUENTIAL));
	for (size_t i = 0; i < len; i += ps)
		sum += q[i];
	rstats_ra("region stats", (void *)q, &s, true);
	EQ("sequential", s.fills, NPAGES);
	GE("sequential", s.read_faults, 1);
	T_CHECK(s.read_faults < NPAGES, "sequential: read-ahead 8 with ADV_SEQUENTIAL still took %llu faults "
		"for %d pages", U(s.read_faults), NPAGES);
	GE("sequential", s.readahead_pages, 1);
	/* each fill brings the faulting page plus its read-ahead; a fault on a
	 * page already being read ahead adds a fault and no fill */
	T_CHECK(s.fills >= s.readahead_pages && s.fills <= s.read_faults + s.readahead_pages,
		"sequential: fills %llu, read_faults %llu, readahead_pages %llu inconsistent", U(s.fills),
		U(s.read_faults), U(s.readahead_pages));
	GE("sequential", s.bytes_read, NPAGES * ps);
	check_latency("sequential", &s);

	/* 5. process totals */
	t_step("process totals");
	t_stats(&g);
	EQ("process", g.regions, g0.regions + 3);
	GE("process", g.faults, g0.faults + 16 + 24 + 3 + 1);
	GE("process", g.fills, g0.fills + 16 + 19 + NPAGES);
	GE("process", g.evictions, g0.evictions + 16);
	GE("process", g.resident_bytes, (16 + 3 + NPAGES) * ps);
	EQ("process", g.budget_bytes, (uint64_t)umapd_get_bufsize());
	check_sum("process", &g);
	check_latency("process", &g);
	t_unmap((void *)r);
	t_unmap((void *)w);
	t_unmap((void *)q);
	struct umapd_stats g2;
	t_stats(&g2);
	EQ("after unmaps", g2.regions, g0.regions);
	GE("after unmaps", g2.faults, g.faults);
	GE("after unmaps", g2.fills, g.fills);
	GE("after unmaps", g2.evictions, g.evictions);
	GE("after unmaps", g2.bytes_read, g.bytes_read);
	close(fd);
	t_pass("read/write/wp faults, fills, bytes, evictions, resident/dirty exact; read-ahead fills >= faults; "
	       "p50 %llu ns <= p99 %llu ns; process totals survive unmap (%u)", U(g.latency_p50_ns),
	       U(g.latency_p99_ns), sum & 1);
}
