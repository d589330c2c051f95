/*
 * latency - lib/engine/latency: percentiles of a known distribution are
 * within the histogram's 25% resolution, p50 <= p99 <= max, merging adds,
 * and concurrent recording loses no sample.
 */
#include "umapd_test.h"
#include "engine/latency.h"

#include <pthread.h>
#include <stdlib.h>

#define NTHREADS 4

static struct lat_hist shared_h;
static size_t per_thread;

static void *recorder(void *arg)
{
	uint64_t base = (uint64_t)(uintptr_t)arg;
	for (size_t i = 0; i < per_thread; i++)
		lat_record(&shared_h, base + i % 5000);
	return NULL;
}

static void near(const char *what, uint64_t got, uint64_t want)
{
	/* bucket resolution is 25%; allow that on either side */
	if (got * 4 < want * 3 || got * 4 > want * 5)
		t_fail("%s = %llu ns, want %llu ns within 25%%", what, (unsigned long long)got,
		       (unsigned long long)want);
}

int main(void)
{
	t_init("latency", 30);
	static struct lat_hist h;
	uint64_t b[LAT_BUCKETS];

	t_step("empty histogram");
	memset(b, 0, sizeof(b));
	lat_merge(b, &h);
	T_CHECK(lat_percentile(b, 50) == 0 && lat_percentile(b, 99) == 0, "empty histogram gives non-zero percentiles");

	t_step("uniform 1..100000 ns");
	for (uint64_t v = 1; v <= 100000; v++)
		lat_record(&h, v);
	memset(b, 0, sizeof(b));
	lat_merge(b, &h);
	uint64_t p50 = lat_percentile(b, 50), p99 = lat_percentile(b, 99), p0 = lat_percentile(b, 0);
	near("p50 of 1..100000", p50, 50000);
	near("p99 of 1..100000", p99, 99000);
	T_CHECK(p0 <= 2, "p0 of 1..100000 = %llu", (unsigned long long)p0);
	T_CHECK(p50 <= p99, "p50 %llu > p99 %llu", (unsigned long long)p50, (unsigned long long)p99);
	uint64_t mx = atomic_load(&h.max_ns);
	T_CHECK(mx == 100000, "max = %llu, want 100000", (unsigned long long)mx);
	uint64_t total = 0;
	for (int i = 0; i < LAT_BUCKETS; i++)
		total += b[i];
	T_CHECK(total == 100000, "histogram holds %llu samples, want 100000", (unsigned long long)total);

	t_step("skewed: 98%% at 3 us, 2%% at 1 ms");
	static struct lat_hist s;
	for (int i = 0; i < 9800; i++)
		lat_record(&s, 3000);
	for (int i = 0; i < 200; i++)
		lat_record(&s, 1000000);
	memset(b, 0, sizeof(b));
	lat_merge(b, &s);
	near("p50 of skewed", lat_percentile(b, 50), 3000);
	near("p99 of skewed", lat_percentile(b, 99), 1000000);

	t_step("huge values land in the last bucket");
	static struct lat_hist g;
	lat_record(&g, UINT64_MAX / 2);
	lat_record(&g, 0);
	memset(b, 0, sizeof(b));
	lat_merge(b, &g);
	T_CHECK(b[LAT_BUCKETS - 1] == 1 && b[0] == 1, "0 and 2^63 not in the first and last buckets");
	T_CHECK(atomic_load(&g.max_ns) == UINT64_MAX / 2, "max of a huge value");

	t_step("merge adds");
	memset(b, 0, sizeof(b));
	lat_merge(b, &h);
	lat_merge(b, &s);
	total = 0;
	for (int i = 0; i < LAT_BUCKETS; i++)
		total += b[i];
	T_CHECK(total == 110000, "merged histogram holds %llu samples, want 110000", (unsigned long long)total);

	t_step("concurrent recording");
	per_thread = t_scaled(200000, 1000);
	pthread_t th[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&th[i], NULL, recorder, (void *)(uintptr_t)(1000 * (i + 1)));
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	memset(b, 0, sizeof(b));
	lat_merge(b, &shared_h);
	total = 0;
	for (int i = 0; i < LAT_BUCKETS; i++)
		total += b[i];
	T_CHECK(total == per_thread * NTHREADS, "%d threads recorded %zu samples each, histogram holds %llu",
		NTHREADS, per_thread, (unsigned long long)total);
	T_CHECK(atomic_load(&shared_h.max_ns) == 1000 * NTHREADS + 4999, "concurrent max = %llu, want %d",
		(unsigned long long)atomic_load(&shared_h.max_ns), 1000 * NTHREADS + 4999);

	uint64_t t0 = lat_now_ns(), t1 = lat_now_ns();
	T_CHECK(t0 > 0 && t1 >= t0, "lat_now_ns is not monotonic");
	t_pass("percentiles within 25%%, p50 <= p99, max exact, merge adds, %zu concurrent samples all counted",
	       per_thread * NTHREADS);
}
