/*
 * perf_util.h - small helpers shared by the tests/perf benchmarks: time,
 * sizes, a log-linear latency histogram, CPU pinning, and the pattern file.
 * Header-only (static functions) so each benchmark stays one translation unit.
 */
#ifndef UMAPD_PERF_UTIL_H
#define UMAPD_PERF_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define KIB ((uint64_t)1024)
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Bytes with an optional K/M/G/T suffix (powers of 1024). */
static inline int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return -1;
	uint64_t mul = 1;
	switch (*end) {
	case 'k': case 'K': mul = KIB; end++; break;
	case 'm': case 'M': mul = MIB; end++; break;
	case 'g': case 'G': mul = GIB; end++; break;
	case 't': case 'T': mul = 1024 * GIB; end++; break;
	default: break;
	}
	if (*end || (mul > 1 && v > UINT64_MAX / mul))
		return -1;
	*out = v * mul;
	return 0;
}

static inline const char *fmt_mib(char *buf, size_t len, uint64_t b)
{
	if (b % MIB == 0)
		snprintf(buf, len, "%" PRIu64 " MiB", b / MIB);
	else
		snprintf(buf, len, "%.1f MiB", (double)b / MIB);
	return buf;
}

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static inline uint64_t rnd(uint64_t *s) /* xorshift64* */
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

/*
 * Latency histogram: values below 64 ns exact, above that 16 buckets per
 * power of two (about 6% resolution), up to 2^40 ns.
 */
#define HIST_SUB 16
#define HIST_BUCKETS (64 + (40 - 6) * HIST_SUB)

struct hist {
	uint64_t n[HIST_BUCKETS];
	uint64_t count, sum, min, max;
};

static inline int hist_bucket(uint64_t v)
{
	if (v < 64)
		return (int)v;
	int e = 63 - __builtin_clzll(v); /* 6.. */
	if (e >= 40)
		return HIST_BUCKETS - 1;
	int sub = (int)((v >> (e - 4)) & (HIST_SUB - 1));
	return 64 + (e - 6) * HIST_SUB + sub;
}

static inline uint64_t hist_value(int b) /* middle of bucket b */
{
	if (b < 64)
		return (uint64_t)b;
	int e = (b - 64) / HIST_SUB + 6, sub = (b - 64) % HIST_SUB;
	uint64_t lo = (1ull << e) + ((uint64_t)sub << (e - 4));
	return lo + (1ull << (e - 4)) / 2;
}

static inline void hist_add(struct hist *h, uint64_t v)
{
	h->n[hist_bucket(v)]++;
	if (h->count == 0 || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->count++;
	h->sum += v;
}

static inline void hist_merge(struct hist *to, const struct hist *from)
{
	for (int i = 0; i < HIST_BUCKETS; i++)
		to->n[i] += from->n[i];
	if (from->count && (to->count == 0 || from->min < to->min))
		to->min = from->min;
	if (from->max > to->max)
		to->max = from->max;
	to->count += from->count;
	to->sum += from->sum;
}

static inline uint64_t hist_pct(const struct hist *h, double pct)
{
	if (!h->count)
		return 0;
	uint64_t want = (uint64_t)((double)h->count * pct / 100.0);
	if (want >= h->count)
		want = h->count - 1;
	uint64_t seen = 0;
	for (int i = 0; i < HIST_BUCKETS; i++) {
		seen += h->n[i];
		if (seen > want)
			return hist_value(i);
	}
	return h->max;
}

static inline const char *fmt_ns(char *buf, size_t len, uint64_t ns)
{
	if (ns < 10000)
		snprintf(buf, len, "%" PRIu64 " ns", ns);
	else if (ns < 10000000)
		snprintf(buf, len, "%.1f us", (double)ns / 1e3);
	else
		snprintf(buf, len, "%.1f ms", (double)ns / 1e6);
	return buf;
}

/* Pin thread tid (0: the caller) to one CPU, or to all CPUs with cpu < 0. */
static inline int pin_tid(pid_t tid, int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	if (cpu < 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		for (long i = 0; i < n && i < CPU_SETSIZE; i++)
			CPU_SET((int)i, &set);
	} else {
		CPU_SET(cpu, &set);
	}
	return sched_setaffinity(tid, sizeof set, &set);
}

/*
 * Pin every thread of this process whose name starts with prefix (the
 * library names its threads "umapd-...") to cpu.  Returns how many.
 */
static inline int pin_threads_named(const char *prefix, int cpu)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return -1;
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char path[300], comm[64] = "";
		snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(comm, sizeof comm, f))
			comm[0] = 0;
		fclose(f);
		if (strncmp(comm, prefix, strlen(prefix)) == 0 &&
		    pin_tid((pid_t)atoi(de->d_name), cpu) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* Create a temporary directory under $TMPDIR or /var/tmp. */
static inline int make_tmpdir(char *buf, size_t len, const char *tag)
{
	const char *base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/var/tmp";
	snprintf(buf, len, "%s/%s.XXXXXX", base, tag);
	return mkdtemp(buf) ? 0 : -1;
}

/*
 * Write a file of size bytes in which the 8-byte word at offset o is
 * o ^ salt (cheap to produce and to check), then fsync it.
 */
static inline int write_pattern_file(int fd, uint64_t size, uint64_t salt)
{
	const size_t chunk = 4 * MIB;
	uint64_t *buf = malloc(chunk);
	if (!buf)
		return -1;
	if (ftruncate(fd, (off_t)size)) {
		free(buf);
		return -1;
	}
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t len = size - off < chunk ? size - off : chunk;
		for (size_t i = 0; i < len / 8; i++)
			buf[i] = (off + i * 8) ^ salt;
		if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
			free(buf);
			return -1;
		}
	}
	free(buf);
	return fsync(fd);
}

#endif /* UMAPD_PERF_UTIL_H */
