/*
 * store_plugin - a complete user-written umapd store in one file.
 *
 * The store keeps the region's data in a file and a 64-bit checksum of
 * every page it wrote, in memory.  A read of a page whose bytes no longer
 * match their checksum (the file was changed behind umapd's back, or the
 * disk returned garbage) fails with EIO instead of handing the application
 * wrong data.
 *
 * The program maps a region larger than its memory budget on that store
 * with umapd_map_store(), writes every page, evicts them all (so every
 * page goes through the store's write), reads every byte back through the
 * mapping (so every page comes back through the store's read and its
 * checksum), then corrupts one byte of the file and shows that the store
 * refuses the page.
 *
 *   store_plugin [--size BYTES[K|M|G]] [--budget BYTES[K|M|G]] [--timeout SECONDS]
 *
 * Defaults: 256M through a 32M budget.  The file is made in $TMPDIR (or
 * /var/tmp) and removed at once.  Exit status 0: every byte verified and the
 * corruption caught; 1: a difference; 2: setup or a umapd call failed.
 */
#define _GNU_SOURCE
#include <umapd.h>
#include <umapd_store.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the store ----------------------------------------------------------------------- */

struct sum_store {
	struct umapd_store base;   /* first: umapd hands &base back to every op */
	int fd;
	size_t page;               /* checksum granularity: the region's page size */
	uint64_t npages;
	_Atomic uint64_t *sums;    /* per page: 0 = never written here, else its checksum */
};

static uint64_t checksum(const unsigned char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h | 1; /* never 0, which means "no checksum" */
}

/* Ops return 0 or a negative errno, and may run on several threads at once:
 * each page's checksum is its own atomic, and pread/pwrite need no lock. */
static int sum_read(struct umapd_store *s, void *buf, size_t len, uint64_t off)
{
	struct sum_store *st = (struct sum_store *)s;
	unsigned char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(st->fd, p + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) { /* past the end of the file: zeros */
			memset(p + done, 0, len - done);
			break;
		}
		done += (size_t)n;
	}
	/* Check every whole page of the range that we wrote. */
	for (uint64_t at = off; at + st->page <= off + len; at += st->page) {
		uint64_t i = at / st->page;
		uint64_t want = i < st->npages ? atomic_load_explicit(&st->sums[i], memory_order_acquire) : 0;

		if (at % st->page == 0 && want && checksum(p + (at - off), st->page) != want)
			return -EIO;
	}
	return 0;
}

static int sum_write(struct umapd_store *s, const void *buf, size_t len, uint64_t off)
{
	struct sum_store *st = (struct sum_store *)s;
	const unsigned char *p = buf; /* may be the region's own page: only read it */
	size_t done = 0;

	for (uint64_t at = off; at < off + len; at += st->page) {
		uint64_t i = at / st->page;
		int whole = at % st->page == 0 && at + st->page <= off + len;

		if (i < st->npages) /* a partial page cannot be checked: forget its sum */
			atomic_store_explicit(&st->sums[i], whole ? checksum(p + (at - off), st->page) : 0,
					      memory_order_release);
	}
	while (done < len) {
		ssize_t n = pwrite(st->fd, p + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

static int sum_sync(struct umapd_store *s)
{
	return fdatasync(((struct sum_store *)s)->fd) < 0 ? -errno : 0;
}

static int64_t sum_size(struct umapd_store *s)
{
	struct stat sb;

	return fstat(((struct sum_store *)s)->fd, &sb) < 0 ? -errno : (int64_t)sb.st_size;
}

static void sum_close(struct umapd_store *s)
{
	struct sum_store *st = (struct sum_store *)s;

	close(st->fd);
	free(st->sums);
	free(st);
}

static const struct umapd_store_ops sum_ops = {
	.abi = UMAPD_STORE_ABI,
	.name = "checksummed-file",
	.read = sum_read,
	.write = sum_write,
	.sync = sum_sync,
	.size = sum_size,
	.close = sum_close,
	/* no .extent: umapd calls read and write, where the checksums are */
};

/* A store over fd (which it takes), for data of `size` bytes in pages of `page`. */
static struct sum_store *sum_store_open(int fd, uint64_t size, size_t page)
{
	struct sum_store *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->base.ops = &sum_ops;
	st->fd = fd;
	st->page = page;
	st->npages = (size + page - 1) / page;
	st->sums = calloc(st->npages, sizeof(*st->sums));
	if (!st->sums) {
		free(st);
		return NULL;
	}
	return st;
}

/* ---- the program ---------------------------------------------------------------------- */

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 10);

	switch (*end) {
	case 'k': case 'K': v <<= 10; break;
	case 'm': case 'M': v <<= 20; break;
	case 'g': case 'G': v <<= 30; break;
	case '\0': break;
	default: return 0;
	}
	return v;
}

static unsigned char pattern(uint64_t off)
{
	uint64_t x = off * 0x9E3779B97F4A7C15ull;

	return (unsigned char)((x ^ (x >> 29)) >> 24);
}

int main(int argc, char **argv)
{
	uint64_t size = 256ull << 20, budget = 32ull << 20;
	unsigned timeout = 120;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--size"))
			size = parse_size(argv[i + 1]);
		else if (!strcmp(argv[i], "--budget"))
			budget = parse_size(argv[i + 1]);
		else if (!strcmp(argv[i], "--timeout"))
			timeout = (unsigned)atoi(argv[i + 1]);
	}
	if (argc % 2 == 0 || size == 0 || budget == 0) {
		fprintf(stderr, "usage: %s [--size BYTES[K|M|G]] [--budget BYTES[K|M|G]] [--timeout SECONDS]\n",
			argv[0]);
		return 2;
	}
	alarm(timeout); /* a hang ends the run (SIGALRM) instead of blocking forever */

	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size = (size + page - 1) / page * page;
	const char *dir = getenv("TMPDIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/umapd-store-plugin-XXXXXX", dir && *dir ? dir : "/var/tmp");
	int fd = mkstemp(path);
	if (fd < 0 || unlink(path) < 0 || ftruncate(fd, (off_t)size) < 0) {
		perror(path);
		return 2;
	}
	if (umapd_set_bufsize(budget) < 0) {
		perror("umapd_set_bufsize");
		return 2;
	}

	struct sum_store *st = sum_store_open(fd, size, page);
	if (!st) {
		perror("sum_store_open");
		return 2;
	}
	unsigned char *p = umapd_map_store(NULL, size, PROT_READ | PROT_WRITE, 0, &st->base, 0, NULL);
	if (!p) {
		perror("umapd_map_store"); /* the store is still ours */
		umapd_store_close(&st->base);
		return 2;
	}
	/* From here the region owns the store; it closes it at unmap. */

	for (uint64_t i = 0; i < size; i++)
		p[i] = pattern(i);
	if (umapd_evict(p, size) < 0) {
		perror("umapd_evict");
		return 2;
	}
	for (uint64_t i = 0; i < size; i++)
		if (p[i] != pattern(i)) {
			fprintf(stderr, "byte %llu: 0x%02x, want 0x%02x\n", (unsigned long long)i, p[i], pattern(i));
			return 1;
		}
	struct umapd_stats s;
	umapd_region_stats(p, &s);
	printf("%llu MiB through a %llu MiB budget: %llu faults, %llu evictions (%llu dirty), "
	       "%llu MiB read and %llu MiB written through the store, every byte verified\n",
	       (unsigned long long)(size >> 20), (unsigned long long)(budget >> 20), (unsigned long long)s.faults,
	       (unsigned long long)s.evictions, (unsigned long long)s.dirty_evictions,
	       (unsigned long long)(s.bytes_read >> 20), (unsigned long long)(s.bytes_written >> 20));
	if (s.evictions == 0 || s.bytes_read == 0) {
		fprintf(stderr, "nothing went through the store: is the budget below the size?\n");
		return 1;
	}

	/* Flip a byte of page 3 in the file behind umapd's back: the store's
	 * read of that page now fails (a fault on it would raise SIGBUS, as a
	 * failing mmap'd file does, rather than show the bad bytes). */
	if (umapd_flush(p, size) < 0) {
		perror("umapd_flush");
		return 2;
	}
	unsigned char b, *buf = malloc(page);
	if (!buf || pread(fd, &b, 1, (off_t)(3 * page + 5)) != 1)
		return 2;
	b ^= 0xff;
	if (pwrite(fd, &b, 1, (off_t)(3 * page + 5)) != 1)
		return 2;
	int rc = st->base.ops->read(&st->base, buf, page, 3 * page);
	printf("page 3 after corrupting one byte of the file: read returns %d (%s)\n", rc,
	       rc == -EIO ? "EIO, caught" : "not caught!");
	b ^= 0xff;
	if (pwrite(fd, &b, 1, (off_t)(3 * page + 5)) != 1)
		return 2;
	free(buf);
	if (rc != -EIO)
		return 1;

	if (umapd_unmap(p) < 0) {
		perror("umapd_unmap");
		return 2;
	}
	printf("store_plugin: OK\n");
	return 0;
}
