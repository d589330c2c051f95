/*
 * readback - what is written through a mapping is what the file holds
 * afterwards, byte for byte, and what a fresh mapping reads back.
 *
 * Cases: empty, 1-byte and odd-sized files; mappings longer than the file
 * (the tail reads zeros and is never written back: the file keeps its size);
 * non-zero offsets; page sizes 4K, 16K, 64K, 2M; files larger than the
 * budget (so pages are evicted and refaulted); and UMAPD_GROWABLE regions,
 * where writes past the end extend the file.
 */
#include "umapd_test.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

struct rb_case {
	const char *name;
	size_t file_size;
	size_t offset;    /* multiple of page */
	size_t map_len;   /* 0: file_size - offset */
	size_t page;      /* region page size; 0: default */
	size_t budget;    /* 0: leave large */
	int scale;        /* sizes scale with UMAPD_TEST_SCALE */
};

static const struct rb_case cases[] = {
	{ "empty file, 4096-byte map", 0, 0, 4096, 0, 0, 0 },
	{ "1-byte file, 1-byte map", 1, 0, 1, 0, 0, 0 },
	{ "1-byte file, 4096-byte map", 1, 0, 4096, 0, 0, 0 },
	{ "12345-byte file", 12345, 0, 0, 0, 0, 0 },
	{ "3*4096+7-byte file", 3 * 4096 + 7, 0, 0, 0, 0, 0 },
	{ "map past EOF", 10000, 0, 64 * KiB, 0, 0, 0 },
	{ "odd map inside the file at offset 8K", 100000, 8192, 12345, 0, 0, 0 },
	{ "offset 12 pages, 9 pages + 100", 40 * 4096, 12 * 4096, 9 * 4096 + 100, 0, 0, 0 },
	{ "16K pages at offset 16K", MiB + 123, 16 * KiB, 0, 16 * KiB, 0, 0 },
	{ "16K pages, odd file, map past EOF", 50001, 0, 128 * KiB, 16 * KiB, 0, 0 },
	{ "64K pages at offset 64K", 2 * MiB + 5, 64 * KiB, 0, 64 * KiB, 0, 0 },
	{ "2M pages at offset 2M, 2x over budget", 10 * MiB + 77, 2 * MiB, 8 * MiB + 77, 2 * MiB, 4 * MiB, 0 },
	{ "4K pages, 16x over budget", 16 * MiB, 0, 0, 4096, 1 * MiB, 1 },
	{ "16K pages, 16x over budget, offset 32K", 8 * MiB + 999, 32 * KiB, 0, 16 * KiB, 512 * KiB, 1 },
	{ "64K pages, 8x over budget", 8 * MiB + 4095, 0, 0, 64 * KiB, 1 * MiB, 1 },
};

static uint32_t seed_base = 100;
static _Atomic size_t pages_done; /* pages written in the current step (for the watchdog) */

static void progress(void)
{
	char buf[96];
	snprintf(buf, sizeof(buf), "  pages written so far in this step: %zu\n", (size_t)pages_done);
	if (write(2, buf, strlen(buf)) < 0) {
	}
}

/* Expected byte of the file at fo: the old pattern before/after the written
 * window, the new one inside it; zeros (and nothing stored) past EOF. */
static void check_mapping(const char *what, const uint8_t *p, size_t len, size_t off, size_t fsize,
			  uint32_t seed)
{
	size_t in = fsize > off ? fsize - off : 0;
	if (in > len)
		in = len;
	t_check_pat(what, p, in, off, seed);
	t_check_zero(what, p + in, len - in, off + in);
}

static void run_case(const struct rb_case *c, int idx)
{
	const size_t sys = t_sys_page();
	size_t fsize = c->file_size, off = c->offset, len = c->map_len, budget = c->budget;
	if (c->scale) {
		size_t f = t_scaled(fsize, 4 * MiB);
		double k = (double)f / (double)fsize;
		fsize = f;
		budget = (size_t)((double)budget * k);
		size_t pg = c->page ? c->page : sys;
		if (budget < 2 * pg)
			budget = 2 * pg;
		budget = budget / pg * pg;
	}
	if (len == 0)
		len = fsize - off;
	uint32_t a = seed_base + 2 * (uint32_t)idx, b = a + 1;
	char what[256];

	t_step("[%s] create file of %zu bytes", c->name, fsize);
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, fsize, a);
	t_set_bufsize(budget ? budget : 256 * MiB);
	struct umapd_stats s0, s1;
	t_stats(&s0);

	t_step("[%s] map %zu bytes at offset %zu, page %zu, budget %zu", c->name, len, off, c->page, budget);
	uint8_t *p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, (off_t)off, c->page, 0);
	if (c->page)
		T_CHECK(umapd_region_page_size(p) == c->page, "[%s] region page size %zu, want %zu", c->name,
			umapd_region_page_size(p), c->page);

	t_step("[%s] read the file through the mapping", c->name);
	snprintf(what, sizeof(what), "[%s] first read through the mapping", c->name);
	check_mapping(what, p, len, off, fsize, a);

	t_step("[%s] write a new pattern through the mapping", c->name);
	/* Pages in a scattered order (stride), then every byte of each. */
	size_t pg = c->page ? c->page : sys, npages = (len + pg - 1) / pg;
	pages_done = 0;
	size_t stride = npages > 7 ? 7 : 1;
	while (npages > 1 && stride > 1 && npages % stride == 0)
		stride++;
	for (size_t k = 0, i = 0; k < npages; k++, i = (i + stride) % npages) {
		size_t from = i * pg, n = len - from < pg ? len - from : pg;
		uint8_t *q = p + from;
		for (size_t j = 0; j < n; j++)
			q[j] = t_pat(off + from + j, b);
		pages_done = k + 1;
	}
	/* The writes above covered the tail past EOF too (if the mapping has
	 * one): it reads back here but must never reach the file. */
	t_step("[%s] read the new pattern back through the mapping", c->name);
	snprintf(what, sizeof(what), "[%s] read-back through the same mapping", c->name);
	t_check_pat(what, p, len, off, b);

	t_step("[%s] unmap", c->name);
	t_unmap(p);

	t_step("[%s] pread the file", c->name);
	off_t now = t_file_size(fd);
	T_CHECK(now == (off_t)fsize, "[%s] file size %lld after unmap, want %zu (a non-growable region "
		"never extends the file)", c->name, (long long)now, fsize);
	size_t end = off + len < fsize ? off + len : fsize;
	snprintf(what, sizeof(what), "[%s] file before the mapped window", c->name);
	t_check_file_pat(what, fd, 0, off < fsize ? off : fsize, a);
	if (end > off) {
		snprintf(what, sizeof(what), "[%s] file inside the mapped window", c->name);
		t_check_file_pat(what, fd, (off_t)off, end - off, b);
	}
	if (fsize > end && end >= off) {
		snprintf(what, sizeof(what), "[%s] file after the mapped window", c->name);
		t_check_file_pat(what, fd, (off_t)end, fsize - end, a);
	}

	t_step("[%s] read back through a fresh read-only mapping", c->name);
	p = t_map(len, PROT_READ, 0, fd, (off_t)off, c->page, 0);
	snprintf(what, sizeof(what), "[%s] fresh mapping after unmap", c->name);
	check_mapping(what, p, len, off, fsize, b);
	t_unmap(p);

	t_stats(&s1);
	if (budget && len > 2 * budget)
		T_CHECK(s1.evictions > s0.evictions, "[%s] %zu bytes through a %zu-byte budget: no eviction counted",
			c->name, len, budget);
	close(fd);
}

/* UMAPD_GROWABLE: writes past the end extend the file. */
static void run_growable(size_t page, size_t fsize, size_t map_len, size_t write_from, size_t write_to)
{
	uint32_t a = 900, b = 901;
	char what[256];
	t_step("[growable page %zu] file %zu, write [%zu, %zu)", page, fsize, write_from, write_to);
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, fsize, a);
	t_set_bufsize(256 * MiB);
	uint8_t *p = t_map(map_len, PROT_READ | PROT_WRITE, UMAPD_GROWABLE, fd, 0, page, 0);
	snprintf(what, sizeof(what), "[growable page %zu] first read", page);
	check_mapping(what, p, map_len, 0, fsize, a);
	for (size_t i = write_from; i < write_to; i++)
		p[i] = t_pat(i, b);
	t_unmap(p);

	off_t now = t_file_size(fd);
	T_CHECK(now >= (off_t)write_to && now <= (off_t)map_len,
		"[growable page %zu] file size %lld after writing up to %zu (map length %zu)", page,
		(long long)now, write_to, map_len);
	uint8_t *buf = malloc((size_t)now);
	T_CHECK(buf != NULL, "malloc");
	t_pread_all(fd, buf, (size_t)now, 0);
	for (size_t i = 0; i < (size_t)now; i++) {
		uint8_t exp = (i >= write_from && i < write_to) ? t_pat(i, b) : i < fsize ? t_pat(i, a) : 0;
		if (buf[i] != exp)
			t_fail("[growable page %zu] file after unmap: first difference at offset %zu: "
			       "expected 0x%02x, got 0x%02x", page, i, exp, buf[i]);
	}
	free(buf);

	t_step("[growable page %zu] fresh mapping", page);
	p = t_map(map_len, PROT_READ, 0, fd, 0, page, 0);
	for (size_t i = 0; i < map_len; i++) {
		uint8_t exp = (i >= write_from && i < write_to) ? t_pat(i, b) : i < fsize ? t_pat(i, a) : 0;
		if (p[i] != exp)
			t_fail("[growable page %zu] fresh mapping: first difference at offset %zu: "
			       "expected 0x%02x, got 0x%02x", page, i, exp, p[i]);
	}
	t_unmap(p);
	close(fd);
}

int main(void)
{
	t_init("readback", 120);
	t_watchdog_hook(progress);
	t_umapd_start();
	size_t n = sizeof(cases) / sizeof(cases[0]);
	for (size_t i = 0; i < n; i++)
		run_case(&cases[i], (int)i);
	run_growable(0, 5000, 256 * KiB, 0, 100000);
	run_growable(16 * KiB, 5000, 256 * KiB, 200000, 200001);
	run_growable(0, 0, 64 * KiB, 4096, 8192 + 17);
	t_pass("%zu read-back cases (0 B..%zu MiB files, pages 4K..2M, offsets, over budget) and 3 growable "
	       "cases byte-exact in the file and through fresh mappings", n, t_scaled(16 * MiB, 4 * MiB) / MiB);
}
