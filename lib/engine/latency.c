#include "engine/latency.h"

#include <time.h>

static unsigned bucket_of(uint64_t ns)
{
	unsigned g, sub, i;

	if (ns < 4)
		return (unsigned)ns;
	g = 63u - (unsigned)__builtin_clzll(ns);
	sub = (unsigned)(ns >> (g - 2)) & 3u;
	i = g * 4 + sub;
	return i < LAT_BUCKETS ? i : LAT_BUCKETS - 1;
}

/* The middle of bucket i, the value reported for its samples. */
static uint64_t bucket_value(unsigned i)
{
	unsigned g = i / 4, sub = i % 4;
	uint64_t lo, width;

	if (i < 4 || g < 2)
		return i;
	lo = (uint64_t)(4 + sub) << (g - 2);
	width = (uint64_t)1 << (g - 2);
	return lo + width / 2;
}

void lat_record(struct lat_hist *h, uint64_t ns)
{
	uint64_t m = atomic_load_explicit(&h->max_ns, memory_order_relaxed);

	atomic_fetch_add_explicit(&h->b[bucket_of(ns)], 1, memory_order_relaxed);
	while (ns > m && !atomic_compare_exchange_weak_explicit(&h->max_ns, &m, ns, memory_order_relaxed,
								 memory_order_relaxed))
		;
}

void lat_merge(uint64_t dst[LAT_BUCKETS], const struct lat_hist *src)
{
	for (unsigned i = 0; i < LAT_BUCKETS; i++)
		dst[i] += atomic_load_explicit(&src->b[i], memory_order_relaxed);
}

uint64_t lat_percentile(const uint64_t b[LAT_BUCKETS], double pct)
{
	uint64_t total = 0, seen = 0, want;

	for (unsigned i = 0; i < LAT_BUCKETS; i++)
		total += b[i];
	if (total == 0)
		return 0;
	want = (uint64_t)((double)total * pct / 100.0);
	if (want >= total)
		want = total - 1;
	for (unsigned i = 0; i < LAT_BUCKETS; i++) {
		seen += b[i];
		if (seen > want)
			return bucket_value(i);
	}
	return bucket_value(LAT_BUCKETS - 1);
}

uint64_t lat_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
