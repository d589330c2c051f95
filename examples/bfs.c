/*
 * bfs - breadth-first search over a graph file larger than the budget.
 *
 *   bfs [--size 1M] [--ops 8] [--budget 4M] [--threads 2] [--page-size 64K]
 *       [--file PATH] [--seed N] [--mmap]
 *
 * --size is the number of vertices and --ops the out-degree.  The program
 * writes a directed graph in CSR form, deterministically from the seed:
 *
 *   header    8 x uint64: magic, vertices n, edges m, 0...
 *   offsets   (n + 1) x uint64: the edges of v are edges[offsets[v] .. offsets[v+1])
 *   edges     m x uint32: target vertices
 *
 * Each vertex has an edge to the next (so everything is reachable from
 * vertex 0) and degree - 1 edges to pseudo-random vertices.  The file is
 * mapped read-only with umapd; a level-synchronous BFS from vertex 0 splits
 * each frontier across the threads, which claim vertices with a
 * compare-and-swap on their level.  The levels live in ordinary memory; the
 * graph is what is paged, and its accesses (offsets and edge lists of
 * scattered vertices) are the irregular pattern of graph analytics.
 *
 * The result is checked against the file read with pread, Graph500 style:
 * the root has level 0, every edge u->v has level[v] <= level[u] + 1, and
 * every other vertex has an in-edge from level[v] - 1; together these hold
 * only if every level is the exact BFS distance.
 * Exit status: 0 the levels are exact, 1 they are not, 2 a setup error.
 */
#define _GNU_SOURCE
#include <umapd.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#include "example_util.h"

#define MAGIC 0x3152534363706d75ull /* "umapcCSR1" */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint32_t target(uint64_t seed, uint64_t v, uint64_t j, uint64_t n)
{
	return j == 0 ? (uint32_t)((v + 1) % n) : (uint32_t)(mix(seed * 0x100000001ull + v * 64 + j) % n);
}

/* Write the graph with buffered sequential writes. */
static int make_graph(int fd, uint64_t n, uint64_t deg, uint64_t seed)
{
	uint64_t hdr[8] = { MAGIC, n, n * deg };
	enum { CH = 1 << 16 };
	uint64_t obuf[CH];
	uint32_t ebuf[CH];
	off_t off = sizeof(hdr);

	if (pwrite(fd, hdr, sizeof(hdr), 0) != sizeof(hdr))
		return -1;
	for (uint64_t v = 0; v <= n; v += CH) {
		size_t m = n + 1 - v < CH ? (size_t)(n + 1 - v) : CH;

		for (size_t i = 0; i < m; i++)
			obuf[i] = (v + i) * deg;
		if (pwrite(fd, obuf, m * 8, off) != (ssize_t)(m * 8))
			return -1;
		off += (off_t)(m * 8);
	}
	for (uint64_t e = 0; e < n * deg; e += CH) {
		size_t m = n * deg - e < CH ? (size_t)(n * deg - e) : CH;

		for (size_t i = 0; i < m; i++)
			ebuf[i] = target(seed, (e + i) / deg, (e + i) % deg, n);
		if (pwrite(fd, ebuf, m * 4, off) != (ssize_t)(m * 4))
			return -1;
		off += (off_t)(m * 4);
	}
	if (fsync(fd) != 0)
		return -1;
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	return 0;
}

/* The BFS: shared state for one level at a time. */
static const uint64_t *offsets;
static const uint32_t *edges;
static _Atomic int32_t *level;
static uint32_t *frontier, *next;
static uint64_t nfront;
static atomic_uint_fast64_t nnext;
static int32_t cur;
static unsigned nthreads;
static pthread_barrier_t bar;
static atomic_int finished;

static void *worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;

	for (;;) {
		pthread_barrier_wait(&bar); /* the main thread has set up the level */
		if (atomic_load(&finished))
			return NULL;
		uint64_t lo = nfront * id / nthreads, hi = nfront * (id + 1) / nthreads;
		for (uint64_t i = lo; i < hi; i++) {
			uint32_t u = frontier[i];

			for (uint64_t e = offsets[u]; e < offsets[u + 1]; e++) {
				uint32_t v = edges[e];
				int32_t unseen = -1;

				if (atomic_load_explicit(&level[v], memory_order_relaxed) == -1 &&
				    atomic_compare_exchange_strong(&level[v], &unseen, cur + 1))
					next[atomic_fetch_add(&nnext, 1)] = v;
			}
		}
		pthread_barrier_wait(&bar); /* level done */
	}
}

/* The Graph500-style check described at the top, reading the file with pread. */
static int check(int fd, uint64_t n, uint64_t deg)
{
	uint8_t *has_parent = calloc(n, 1);
	uint32_t ebuf[4096];
	off_t eoff = (off_t)(64 + (n + 1) * 8);
	int bad = 0;

	if (!has_parent)
		return -1;
	if (atomic_load(&level[0]) != 0)
		bad = fprintf(stderr, "bfs: root has level %d\n", (int)atomic_load(&level[0]));
	for (uint64_t e = 0; e < n * deg && !bad; e += 4096) {
		size_t m = n * deg - e < 4096 ? (size_t)(n * deg - e) : 4096;

		if (pread(fd, ebuf, m * 4, eoff + (off_t)(e * 4)) != (ssize_t)(m * 4)) {
			free(has_parent);
			return -1;
		}
		for (size_t i = 0; i < m && !bad; i++) {
			uint64_t u = (e + i) / deg, v = ebuf[i];
			int32_t lu = atomic_load(&level[u]), lv = atomic_load(&level[v]);

			if (lu < 0 || lv < 0 || lv > lu + 1)
				bad = fprintf(stderr, "bfs: edge %llu->%llu has levels %d -> %d\n",
					      (unsigned long long)u, (unsigned long long)v, lu, lv);
			else if (lv == lu + 1)
				has_parent[v] = 1;
		}
	}
	for (uint64_t v = 1; v < n && !bad; v++)
		if (!has_parent[v])
			bad = fprintf(stderr, "bfs: vertex %llu (level %d) has no parent one level up\n",
				      (unsigned long long)v, (int)atomic_load(&level[v]));
	free(has_parent);
	return bad ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct ex_opts o = { .size = 1 << 20, .ops = 8, .budget = 4 << 20, .threads = 2,
			     .page_size = 64 << 10, .seed = 1 };
	char path[4096];

	if (ex_parse(argc, argv, &o, "bfs") != 0)
		return 2;
	uint64_t n = o.size, deg = o.ops;
	if (n < 2 || n > UINT32_MAX || deg > 64) {
		fprintf(stderr, "bfs: --size (vertices) must be 2..2^32-1 and --ops (degree) 1..64\n");
		return 2;
	}
	nthreads = o.threads;
	int fd = ex_open_file(&o, path, sizeof(path));
	if (fd < 0)
		return 2;
	ex_phase = "writing the graph";
	if (make_graph(fd, n, deg, o.seed) != 0)
		return ex_die(&o, path, "writing the graph");

	ex_phase = "mapping";
	size_t len = 64 + (n + 1) * 8 + n * deg * 4;
	char *base;
	if (o.use_mmap) {
		base = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		if (base == MAP_FAILED)
			return ex_die(&o, path, "mmap");
	} else {
		struct umapd_region_opts ro = { .page_size = o.page_size };

		if (umapd_set_bufsize(o.budget) != 0)
			return ex_die(&o, path, "umapd_set_bufsize");
		base = umapd_map(NULL, len, PROT_READ, 0, fd, 0, &ro);
		if (!base)
			return ex_die(&o, path, "umapd_map");
	}
	const uint64_t *hdr = (const uint64_t *)base;
	if (hdr[0] != MAGIC || hdr[1] != n || hdr[2] != n * deg) {
		fprintf(stderr, "bfs: the mapped header is wrong\n");
		return 1;
	}
	offsets = hdr + 8;
	edges = (const uint32_t *)(offsets + n + 1);
	level = malloc(n * sizeof(*level));
	frontier = malloc(n * sizeof(*frontier));
	next = malloc(n * sizeof(*next));
	if (!level || !frontier || !next)
		return ex_die(&o, path, "malloc");
	for (uint64_t v = 0; v < n; v++)
		atomic_init(&level[v], -1);

	ex_phase = "bfs";
	struct timespec t0, t1;
	pthread_t t[1024];
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_barrier_init(&bar, NULL, nthreads + 1);
	for (unsigned i = 0; i < nthreads; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) != 0)
			return ex_die(&o, path, "pthread_create");
	atomic_store(&level[0], 0);
	frontier[0] = 0;
	nfront = 1;
	uint64_t reached = 1;
	for (cur = 0; nfront > 0; cur++) {
		atomic_store(&nnext, 0);
		pthread_barrier_wait(&bar); /* go */
		pthread_barrier_wait(&bar); /* level done */
		uint32_t *tmp = frontier;
		frontier = next;
		next = tmp;
		nfront = atomic_load(&nnext);
		reached += nfront;
	}
	atomic_store(&finished, 1);
	pthread_barrier_wait(&bar);
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;

	ex_phase = "unmapping";
	if (o.use_mmap ? munmap(base, len) : umapd_unmap(base))
		return ex_die(&o, path, "unmap");
	ex_phase = "checking";
	int bad = check(fd, n, deg) != 0;
	printf("bfs: %llu vertices, %llu edges (%s file), budget %s, page %s, %u threads, %s: "
	       "%d levels, %llu reached in %.3f s (%.1f M edges/s); check %s\n",
	       (unsigned long long)n, (unsigned long long)(n * deg), ex_size(len),
	       ex_size(o.budget), ex_size(o.page_size), nthreads,
	       o.use_mmap ? "kernel mmap" : "umapd", (int)cur, (unsigned long long)reached, secs,
	       (double)(n * deg) / secs / 1e6, bad ? "FAILED" : "ok: levels are exact BFS distances");
	ex_close_file(&o, fd, path);
	return bad ? 1 : 0;
}
