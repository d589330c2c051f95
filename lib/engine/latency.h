/*
 * lib/engine/latency - a small lock-free log-linear histogram of
 * fault-service times, one per region plus one for retired regions.
 *
 * Bucket i covers values whose floor(log2) is i/4, split in 4 linear
 * steps, so percentiles are within 25% of the truth; 128 buckets reach
 * past 2^31 ns (2 s), the last one collecting everything slower.
 */
#ifndef UMAPD_LATENCY_H
#define UMAPD_LATENCY_H

#include <stdatomic.h>
#include <stdint.h>

#define LAT_BUCKETS 128

struct lat_hist {
	_Atomic uint32_t b[LAT_BUCKETS];
	_Atomic uint64_t max_ns;
};

void lat_record(struct lat_hist *h, uint64_t ns);

/* Add src into dst (dst is a plain snapshot being summed). */
void lat_merge(uint64_t dst[LAT_BUCKETS], const struct lat_hist *src);

/* The value below which `pct` percent of the samples lie (0 if none). */
uint64_t lat_percentile(const uint64_t b[LAT_BUCKETS], double pct);

uint64_t lat_now_ns(void);

#endif
