/*
 * umapd-demo - page a file much larger than a memory budget through umapd,
 * touch it the ways applications do, and prove that no byte was lost.
 *
 * With no arguments it creates a 1 GiB file in a fresh temporary directory
 * (under $TMPDIR, or /var/tmp), fills it with a pattern in which every
 * 8-byte word is a hash of its own offset, and maps it with umapd under a
 * 128 MiB budget.  Then:
 *
 *   1. sequential scan  - every word read once and checked against the pattern
 *   2. random reads     - words at random offsets, each checked
 *   3. random writes    - words at random offsets overwritten; each write is
 *                         recorded so that the expected content is known
 *   4. umapd_flush      - then every word of the file checked with pread()
 *   5. read back        - every word written, read back through the mapping
 *   6. random writes    - a second, smaller round, also recorded
 *   7. umapd_unmap      - then every word of the file checked again
 *   8. map again        - and every word checked through a fresh mapping
 *
 * and prints what umapd did (faults, fills, evictions, write-backs, ...)
 * phase by phase.  Any difference stops the run with exit status 1 and the
 * first differing offset.
 *
 * With --file PATH an existing file is left as it is and checked read-only
 * (the file itself is the reference) unless --overwrite is given; a file
 * named with --file is never deleted.
 *
 * Exit status: 0 all verified, 1 data differed, 2 usage or setup error (or a
 * umapd call failed), 3 the watchdog fired (the run made no progress in
 * --timeout seconds; it prints where it stood).
 */
#define _GNU_SOURCE
#include <umapd.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KIB (1024ull)
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

#define CHUNK (4 * MIB) /* pread/pwrite unit for filling and checking the file */

enum { EXIT_DIFF = 1, EXIT_SETUP = 2, EXIT_WATCHDOG = 3 };

/* ---- options -------------------------------------------------------------------------- */

static struct {
	const char *file;   /* --file, or NULL: a temporary file */
	uint64_t size;      /* --size */
	bool size_set;
	uint64_t budget;    /* --budget */
	size_t page_size;   /* --page-size, 0: the library default */
	long read_ahead;    /* --read-ahead, 0: the library default, -1: none */
	unsigned threads;   /* --threads */
	uint64_t ops;       /* --ops: random reads, and random writes; 0: pages / 2 */
	uint64_t seed;      /* --seed */
	bool overwrite;     /* --overwrite */
	bool keep;          /* --keep */
	unsigned timeout;   /* --timeout seconds, 0: none */
} opt = {
	.size = 1 * GIB,
	.budget = 128 * MIB,
	.threads = 2,
	.seed = 0x756d617064ull, /* "umapd" */
	.timeout = 300,
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: umapd-demo [options]\n"
		"\n"
		"Page a file larger than a memory budget through umapd, read and write it\n"
		"sequentially and at random, and verify every byte through the mapping, in\n"
		"the file after umapd_flush() and in the file after umapd_unmap().\n"
		"\n"
		"  -f, --file PATH        use PATH instead of a temporary file.  PATH is never\n"
		"                         deleted.  If it exists it is checked read-only against\n"
		"                         its own contents, unless --overwrite is given; if not,\n"
		"                         it is created with the test pattern.\n"
		"  -s, --size SIZE        size of the generated file (default 1G)\n"
		"  -b, --budget SIZE      umapd memory budget, UMAPD_BUFSIZE (default 128M)\n"
		"  -p, --page-size SIZE   region page size (default: UMAPD_PAGESIZE, 4K)\n"
		"  -r, --read-ahead N     max read-ahead window in pages, -1 for none\n"
		"                         (default: UMAPD_READ_AHEAD)\n"
		"  -t, --threads N        application threads, 1..64 (default 2)\n"
		"  -n, --ops N            random reads, and as many random writes\n"
		"                         (default: half the number of 4 KiB pages)\n"
		"  -S, --seed N           seed of the pattern and of the random offsets\n"
		"  -o, --overwrite        replace the contents of an existing --file\n"
		"  -k, --keep             keep the temporary directory and file\n"
		"  -T, --timeout SEC      watchdog: give up after SEC seconds, 0 for never\n"
		"                         (default 300)\n"
		"  -h, --help             this text\n"
		"\n"
		"SIZE is bytes with an optional K, M, G or T suffix (powers of 1024).\n"
		"Other umapd settings come from the environment (UMAPD_FILLERS, ...).\n"
		"Exit status: 0 verified, 1 data differed, 2 setup error, 3 watchdog.\n");
}

static int parse_size(const char *s, uint64_t *out)
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
	if (mul > 1 && (*end == 'i' || *end == 'I') && (end[1] == 'b' || end[1] == 'B'))
		end += 2;
	else if (mul > 1 && (*end == 'b' || *end == 'B'))
		end++;
	if (*end || (mul > 1 && v > UINT64_MAX / mul))
		return -1;
	*out = v * mul;
	return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 0);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "size", required_argument, NULL, 's' },
		{ "budget", required_argument, NULL, 'b' },
		{ "page-size", required_argument, NULL, 'p' },
		{ "read-ahead", required_argument, NULL, 'r' },
		{ "threads", required_argument, NULL, 't' },
		{ "ops", required_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 'S' },
		{ "overwrite", no_argument, NULL, 'o' },
		{ "keep", no_argument, NULL, 'k' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	long l;
	uint64_t u;

	while ((c = getopt_long(argc, argv, "f:s:b:p:r:t:n:S:okT:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			opt.file = optarg;
			break;
		case 's':
			if (parse_size(optarg, &opt.size) || opt.size == 0 || opt.size % 8) {
				fprintf(stderr, "umapd-demo: --size '%s': want a non-zero size, a multiple of 8 bytes\n", optarg);
				exit(EXIT_SETUP);
			}
			opt.size_set = true;
			break;
		case 'b':
			if (parse_size(optarg, &opt.budget) || opt.budget == 0) {
				fprintf(stderr, "umapd-demo: --budget '%s': want a non-zero size such as 128M\n", optarg);
				exit(EXIT_SETUP);
			}
			break;
		case 'p':
			if (parse_size(optarg, &u) || u == 0 || u > SIZE_MAX) {
				fprintf(stderr, "umapd-demo: --page-size '%s': want a size such as 64K\n", optarg);
				exit(EXIT_SETUP);
			}
			opt.page_size = (size_t)u;
			break;
		case 'r':
			if (parse_long(optarg, -1, LONG_MAX, &opt.read_ahead)) {
				fprintf(stderr, "umapd-demo: --read-ahead '%s': want a number of pages, or -1\n", optarg);
				exit(EXIT_SETUP);
			}
			break;
		case 't':
			if (parse_long(optarg, 1, 64, &l)) {
				fprintf(stderr, "umapd-demo: --threads '%s': want 1..64\n", optarg);
				exit(EXIT_SETUP);
			}
			opt.threads = (unsigned)l;
			break;
		case 'n':
			if (parse_size(optarg, &opt.ops)) {
				fprintf(stderr, "umapd-demo: --ops '%s': want a count\n", optarg);
				exit(EXIT_SETUP);
			}
			break;
		case 'S':
			if (parse_size(optarg, &opt.seed)) {
				fprintf(stderr, "umapd-demo: --seed '%s': want a number\n", optarg);
				exit(EXIT_SETUP);
			}
			break;
		case 'o':
			opt.overwrite = true;
			break;
		case 'k':
			opt.keep = true;
			break;
		case 'T':
			if (parse_long(optarg, 0, 86400, &l)) {
				fprintf(stderr, "umapd-demo: --timeout '%s': want seconds, 0..86400\n", optarg);
				exit(EXIT_SETUP);
			}
			opt.timeout = (unsigned)l;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(EXIT_SETUP);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "umapd-demo: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		exit(EXIT_SETUP);
	}
}

/* ---- the pattern ---------------------------------------------------------------------- */

/* splitmix64's finaliser: a cheap bijective hash of a 64-bit value. */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* The initial content of the 8-byte word at byte offset off. */
static inline uint64_t pattern(uint64_t off)
{
	return mix64(off ^ opt.seed);
}

/* What random write number seq of thread tid stores at off: never the pattern. */
static inline uint64_t written_value(uint64_t off, unsigned tid, uint64_t seq)
{
	uint64_t v = mix64(off + ((uint64_t)tid << 48) + seq * 0x9e3779b97f4a7c15ull + 1);
	return v == pattern(off) ? ~v : v;
}

/* xorshift64*: per-thread random offsets. */
static inline uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

/* ---- time and formatting -------------------------------------------------------------- */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Format a byte count with a binary unit: "128 MiB", "1.00 GiB". */
static const char *fmt_bytes(char *buf, size_t len, uint64_t b)
{
	static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0 || v == (double)(uint64_t)v)
		snprintf(buf, len, "%.0f %s", v, unit[u]);
	else
		snprintf(buf, len, "%.2f %s", v, unit[u]);
	return buf;
}

static const char *fmt_ns(char *buf, size_t len, uint64_t ns)
{
	if (ns < 10000)
		snprintf(buf, len, "%" PRIu64 " ns", ns);
	else if (ns < 10000000)
		snprintf(buf, len, "%.1f us", (double)ns / 1e3);
	else
		snprintf(buf, len, "%.1f ms", (double)ns / 1e6);
	return buf;
}

/* ---- shared state --------------------------------------------------------------------- */

static char *map;           /* the umapd region */
static int fd = -1;
static bool read_only;      /* an existing file checked against itself */
static char tmpdir[PATH_MAX];
static char tmpfile_path[PATH_MAX + 16];

/* Where the run stands, for the watchdog. */
static _Atomic(const char *) phase = "start";
static atomic_uint_fast64_t progress;        /* words or operations done in this phase */
static atomic_uint_fast64_t progress_total;
static atomic_uint_fast64_t peak_resident;   /* sampled by the watchdog thread */
static atomic_bool done;

/* The first difference found (lowest offset wins). */
static pthread_mutex_t diff_lock = PTHREAD_MUTEX_INITIALIZER;
static bool diff_found;
static uint64_t diff_off, diff_got, diff_want;
static const char *diff_where;

static void report_diff(const char *where, uint64_t off, uint64_t got, uint64_t want)
{
	pthread_mutex_lock(&diff_lock);
	if (!diff_found || off < diff_off) {
		diff_found = true;
		diff_off = off;
		diff_got = got;
		diff_want = want;
		diff_where = where;
	}
	pthread_mutex_unlock(&diff_lock);
}

static bool have_diff(void)
{
	pthread_mutex_lock(&diff_lock);
	bool d = diff_found;
	pthread_mutex_unlock(&diff_lock);
	return d;
}

static void cleanup(void)
{
	if (fd >= 0)
		close(fd);
	fd = -1;
	if (tmpdir[0] && !opt.keep) {
		if (tmpfile_path[0])
			unlink(tmpfile_path);
		rmdir(tmpdir);
	} else if (tmpdir[0]) {
		printf("kept %s\n", tmpfile_path);
	}
	tmpdir[0] = 0;
}

static void die(const char *what)
{
	fprintf(stderr, "umapd-demo: %s: %s\n", what, strerror(errno));
	cleanup();
	exit(EXIT_SETUP);
}

/* ---- the record of random writes ------------------------------------------------------ */

struct write_rec {
	uint64_t off;
	uint64_t seq; /* order of the writes to off: only one thread writes any given word */
	uint64_t val;
};

static struct write_rec *writes;     /* after the write phase: sorted, last write per word */
static size_t nwrites;

static int cmp_write(const void *a, const void *b)
{
	const struct write_rec *x = a, *y = b;
	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Index of the first recorded write at or after off. */
static size_t first_write_at(uint64_t off)
{
	size_t lo = 0, hi = nwrites;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (writes[mid].off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Check the words of buf, which holds the file's bytes [off, off + len). */
static bool check_words(const char *where, const char *buf, uint64_t off, size_t len, size_t *w)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t o = off + i, got, want;
		memcpy(&got, buf + i, 8);
		if (*w < nwrites && writes[*w].off == o)
			want = writes[(*w)++].val;
		else
			want = pattern(o);
		if (got != want) {
			report_diff(where, o, got, want);
			return false;
		}
	}
	return true;
}

/* ---- the application threads ---------------------------------------------------------- */

enum job { JOB_SCAN, JOB_READS, JOB_WRITES, JOB_READBACK };

struct worker {
	pthread_t thread;
	unsigned tid;
	enum job job;
	const char *where;       /* phase name for a difference report */
	uint64_t begin, end;     /* JOB_SCAN: byte range of this thread */
	uint64_t nops;           /* JOB_READS, JOB_WRITES: operations of this thread */
	struct write_rec *log;   /* JOB_WRITES: this thread's writes */
	uint64_t seq_base;       /* JOB_WRITES: sequence number of its first write */
	size_t wbegin, wend;     /* JOB_READBACK: slice of writes[] to check */
	uint64_t sink;
	char *buf;               /* read-only mode: pread buffer */
};

/* Read [begin, end) through the mapping, word by word, and check it. */
static void scan(struct worker *w)
{
	const uint64_t step = 256 * KIB;
	size_t wi = first_write_at(w->begin);

	for (uint64_t off = w->begin; off < w->end; off += step) {
		uint64_t len = w->end - off < step ? w->end - off : step;
		if (read_only) {
			/* The reference is the file itself. */
			ssize_t n = pread(fd, w->buf, len, (off_t)off);
			if (n != (ssize_t)len) {
				report_diff("pread of the reference failed", off, 0, 0);
				return;
			}
			if (memcmp(w->buf, map + off, len)) {
				for (uint64_t i = 0; i < len; i++) {
					if (w->buf[i] != map[off + i]) {
						report_diff(w->where, off + i, (uint8_t)map[off + i],
							    (uint8_t)w->buf[i]);
						return;
					}
				}
			}
		} else if (!check_words(w->where, map + off, off, len, &wi)) {
			return;
		}
		atomic_fetch_add_explicit(&progress, len / 8, memory_order_relaxed);
	}
}

static void random_reads(struct worker *w)
{
	uint64_t s = mix64(opt.seed + 1000 + w->tid) | 1;
	uint64_t nwords = opt.size / 8;

	for (uint64_t i = 0; i < w->nops; i++) {
		uint64_t off = rnd(&s) % nwords * 8, got, want;
		memcpy(&got, map + off, 8);
		if (read_only) {
			if (pread(fd, &want, 8, (off_t)off) != 8) {
				report_diff("pread of the reference failed", off, 0, 0);
				return;
			}
		} else {
			want = pattern(off);
		}
		if (got != want) {
			report_diff(w->where, off, got, want);
			return;
		}
		w->sink += got;
		if ((i & 1023) == 1023)
			atomic_fetch_add_explicit(&progress, 1024, memory_order_relaxed);
	}
}

/*
 * Thread tid writes only words whose index is tid modulo the thread count,
 * so every word has one writer and its final value is that writer's last.
 * Threads still share pages, which is the case a pager must get right.
 */
static void random_writes(struct worker *w)
{
	uint64_t s = mix64(opt.seed + 2000 + w->tid + (w->seq_base << 8)) | 1;
	uint64_t nwords = opt.size / 8;
	uint64_t per = nwords / opt.threads; /* words owned by each thread */

	for (uint64_t i = 0; i < w->nops; i++) {
		uint64_t word = (rnd(&s) % per) * opt.threads + w->tid;
		uint64_t off = word * 8;
		uint64_t v = written_value(off, w->tid, w->seq_base + i);
		memcpy(map + off, &v, 8);
		w->log[i] = (struct write_rec){ .off = off, .seq = w->seq_base + i, .val = v };
		if ((i & 1023) == 1023)
			atomic_fetch_add_explicit(&progress, 1024, memory_order_relaxed);
	}
}

/* Read every recorded write back through the mapping. */
static void read_back(struct worker *w)
{
	for (size_t i = w->wbegin; i < w->wend; i++) {
		uint64_t got;
		memcpy(&got, map + writes[i].off, 8);
		if (got != writes[i].val) {
			report_diff(w->where, writes[i].off, got, writes[i].val);
			return;
		}
		if ((i & 1023) == 1023)
			atomic_fetch_add_explicit(&progress, 1024, memory_order_relaxed);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];
	snprintf(name, sizeof name, "demo-app/%u", w->tid);
	pthread_setname_np(pthread_self(), name);
	switch (w->job) {
	case JOB_SCAN: scan(w); break;
	case JOB_READS: random_reads(w); break;
	case JOB_WRITES: random_writes(w); break;
	case JOB_READBACK: read_back(w); break;
	}
	return NULL;
}

static struct worker *workers;

/* nops operations in all, shared out among the threads. */
static void run_workers(enum job job, const char *where, uint64_t nops)
{
	for (unsigned t = 0; t < opt.threads; t++)
		workers[t].nops = nops / opt.threads + (t < nops % opt.threads);
	uint64_t nwords = opt.size / 8;
	for (unsigned t = 0; t < opt.threads; t++) {
		struct worker *w = &workers[t];
		w->tid = t;
		w->job = job;
		w->where = where;
		/* Contiguous, word-aligned shares of the file for the scans. */
		w->begin = nwords * t / opt.threads * 8;
		w->end = t + 1 == opt.threads ? opt.size : nwords * (t + 1) / opt.threads * 8;
		w->wbegin = nwrites * t / opt.threads;
		w->wend = nwrites * (t + 1) / opt.threads;
		errno = pthread_create(&w->thread, NULL, worker_main, w);
		if (errno)
			die("pthread_create");
	}
	for (unsigned t = 0; t < opt.threads; t++)
		pthread_join(workers[t].thread, NULL);
}

/*
 * Run a round of nops recorded random writes and fold them into writes[]:
 * sorted by offset, one entry per word holding its last value.
 */
static void write_round(uint64_t nops, uint64_t seq_base)
{
	struct write_rec *all = realloc(writes, (nwrites + nops + 1) * sizeof *all);
	if (!all)
		die("realloc");
	writes = all;
	struct write_rec *log = all + nwrites;
	for (unsigned t = 0, at = 0; t < opt.threads; t++) {
		workers[t].log = log + at;
		workers[t].seq_base = seq_base;
		at += nops / opt.threads + (t < nops % opt.threads);
	}
	size_t n_old = nwrites;
	nwrites = 0; /* the scans in the workers must not use a half-built writes[] */
	run_workers(JOB_WRITES, "random writes", nops);
	size_t n = n_old + nops;
	qsort(all, n, sizeof *all, cmp_write);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k && all[k - 1].off == all[i].off)
			all[k - 1] = all[i];
		else
			all[k++] = all[i];
	}
	nwrites = k;
}

/* ---- the watchdog --------------------------------------------------------------------- */

static void *watchdog_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "demo-watchdog");
	double deadline = opt.timeout ? now() + opt.timeout : 0;
	while (!atomic_load(&done)) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		struct umapd_stats st;
		if (umapd_stats(&st) == 0) {
			uint64_t p = atomic_load(&peak_resident);
			while (st.resident_bytes > p &&
			       !atomic_compare_exchange_weak(&peak_resident, &p, st.resident_bytes))
				;
		}
		if (deadline && now() > deadline && !atomic_load(&done)) {
			fprintf(stderr,
				"umapd-demo: watchdog: no result after %u s; phase '%s' at %" PRIu64
				" of %" PRIu64 "; umapd: %" PRIu64 " faults, %" PRIu64 " fills, %" PRIu64
				" evictions, %" PRIu64 " bytes resident\n",
				opt.timeout, atomic_load(&phase), (uint64_t)atomic_load(&progress),
				(uint64_t)atomic_load(&progress_total), st.faults, st.fills,
				st.evictions, st.resident_bytes);
			if (tmpdir[0] && !opt.keep) {
				unlink(tmpfile_path);
				rmdir(tmpdir);
			}
			_exit(EXIT_WATCHDOG);
		}
	}
	return NULL;
}

/* ---- phases and their statistics ------------------------------------------------------ */

#define MAX_PHASES 16

static struct phase_rec {
	const char *name;
	double secs;
	uint64_t bytes; /* bytes the application touched, for a rate */
	uint64_t ops;   /* or operations */
	struct umapd_stats before, after;
} phases[MAX_PHASES];
static int nphases;
static struct phase_rec *ph_scan, *ph_reads, *ph_writes, *ph_flush, *ph_unmap, *ph_remap;

static void get_stats(struct umapd_stats *st)
{
	if (umapd_stats(st))
		die("umapd_stats");
}

static struct phase_rec *phase_begin(const char *name, uint64_t total)
{
	struct phase_rec *p = &phases[nphases++];
	p->name = name;
	atomic_store(&phase, name);
	atomic_store(&progress, 0);
	atomic_store(&progress_total, total);
	get_stats(&p->before);
	p->secs = now();
	return p;
}

static void phase_end(struct phase_rec *p)
{
	p->secs = now() - p->secs;
	get_stats(&p->after);
}

/* Check the whole file with pread, against the pattern and the recorded writes. */
static void verify_file(const char *where)
{
	char *buf = malloc(CHUNK);
	size_t wi = 0;
	if (!buf)
		die("malloc");
	for (uint64_t off = 0; off < opt.size; off += CHUNK) {
		size_t len = opt.size - off < CHUNK ? opt.size - off : CHUNK;
		ssize_t n = pread(fd, buf, len, (off_t)off);
		if (n < 0)
			die("pread");
		if ((size_t)n != len) {
			fprintf(stderr, "umapd-demo: %s: the file is %" PRIu64 " bytes short\n", where,
				opt.size - off - (uint64_t)n);
			report_diff(where, off + (uint64_t)n, 0, 0);
			break;
		}
		if (!check_words(where, buf, off, len, &wi))
			break;
		atomic_fetch_add_explicit(&progress, len / 8, memory_order_relaxed);
	}
	free(buf);
}

/* Fill the file with the pattern, with large pwrites. */
static void fill_file(void)
{
	uint64_t *buf = malloc(CHUNK);
	if (!buf)
		die("malloc");
	if (ftruncate(fd, (off_t)opt.size))
		die("ftruncate");
	for (uint64_t off = 0; off < opt.size; off += CHUNK) {
		size_t len = opt.size - off < CHUNK ? opt.size - off : CHUNK;
		for (size_t i = 0; i < len / 8; i++)
			buf[i] = pattern(off + i * 8);
		if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
			die("pwrite");
	}
	free(buf);
}

static void fail_on_diff(void)
{
	if (!have_diff())
		return;
	char where[64];
	uint64_t page = opt.page_size ? opt.page_size : 4096;
	snprintf(where, sizeof where, "page %" PRIu64 " + %" PRIu64, diff_off / page, diff_off % page);
	fprintf(stderr,
		"umapd-demo: FAILED in %s: first difference at offset %" PRIu64 " (0x%" PRIx64
		", %s): read 0x%016" PRIx64 ", expected 0x%016" PRIx64 "\n",
		diff_where, diff_off, diff_off, where, diff_got, diff_want);
	if (map) {
		/* Where is the data: still in memory but not in the file, or lost? */
		uint64_t in_map, in_file;
		uint64_t off = diff_off & ~(uint64_t)7;
		memcpy(&in_map, map + off, 8);
		fprintf(stderr, "umapd-demo: through the mapping the word at %" PRIu64 " reads 0x%016" PRIx64 "\n",
			off, in_map);
		if (!read_only) {
			int rc = umapd_unmap(map);
			map = NULL;
			if (rc)
				fprintf(stderr, "umapd-demo: umapd_unmap: %s\n", strerror(errno));
			else if (pread(fd, &in_file, 8, (off_t)off) == 8)
				fprintf(stderr, "umapd-demo: after umapd_unmap the file holds 0x%016" PRIx64 "\n",
					in_file);
		}
	}
	if (tmpdir[0] && !opt.keep)
		fprintf(stderr, "umapd-demo: (run with --keep to keep the file)\n");
	cleanup();
	exit(EXIT_DIFF);
}

static void print_report(double fill_secs)
{
	char a[32], b[32], c[32];
	struct umapd_stats st;
	uint64_t sys_page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t page = opt.page_size ? opt.page_size : sys_page;

	get_stats(&st);

	printf("\n%-18s %8s %12s %10s %10s %10s %10s %10s %10s %10s\n", "phase", "seconds", "rate",
	       "faults", "fills", "readahead", "evictions", "dirty-ev", "MiB read", "MiB wrtn");
	for (int i = 0; i < nphases; i++) {
		struct phase_rec *p = &phases[i];
		struct umapd_stats *x = &p->before, *y = &p->after;
		char rate[32];
		if (p->bytes)
			snprintf(rate, sizeof rate, "%.0f MiB/s", (double)p->bytes / MIB / p->secs);
		else if (p->ops && (double)p->ops / p->secs >= 1e6)
			snprintf(rate, sizeof rate, "%.2f Mop/s", (double)p->ops / p->secs / 1e6);
		else if (p->ops)
			snprintf(rate, sizeof rate, "%.0f kop/s", (double)p->ops / p->secs / 1e3);
		else
			snprintf(rate, sizeof rate, "-");
		printf("%-18s %8.2f %12s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64
		       " %10" PRIu64 " %10.1f %10.1f\n",
		       p->name, p->secs, rate, y->faults - x->faults, y->fills - x->fills,
		       y->readahead_pages - x->readahead_pages, y->evictions - x->evictions,
		       y->dirty_evictions - x->dirty_evictions,
		       (double)(y->bytes_read - x->bytes_read) / MIB,
		       (double)(y->bytes_written - x->bytes_written) / MIB);
	}

	printf("\numapd statistics for the whole run\n");
	printf("  %-28s %14" PRIu64 "   (%" PRIu64 " read, %" PRIu64 " write, %" PRIu64
	       " first write to a clean page)\n",
	       "faults served", st.faults, st.read_faults, st.write_faults, st.wp_faults);
	printf("  %-28s %14" PRIu64 "   (%s)\n", "pages filled", st.fills,
	       fmt_bytes(a, sizeof a, st.fills * page));
	printf("  %-28s %14" PRIu64 "\n", "  of which read ahead", st.readahead_pages);
	printf("  %-28s %14" PRIu64 "\n", "pages evicted", st.evictions);
	printf("  %-28s %14" PRIu64 "\n", "  of which written back", st.dirty_evictions);
	printf("  %-28s %14" PRIu64 "\n", "pages flushed (kept)", st.flushed_pages);
	printf("  %-28s %14s\n", "bytes read from the file", fmt_bytes(a, sizeof a, st.bytes_read));
	printf("  %-28s %14s\n", "bytes written to the file", fmt_bytes(a, sizeof a, st.bytes_written));
	printf("  %-28s %14s\n", "resident now", fmt_bytes(a, sizeof a, st.resident_bytes));
	printf("  %-28s %14s   (sampled every 50 ms)\n", "resident, peak seen",
	       fmt_bytes(a, sizeof a, (uint64_t)atomic_load(&peak_resident)));
	printf("  %-28s %14s\n", "budget", fmt_bytes(a, sizeof a, st.budget_bytes));
	printf("  %-28s %14" PRIu64 "\n", "faults that waited for room", st.fault_wait_budget);
	printf("  %-28s %14" PRIu64 "\n", "I/O errors", st.io_errors);
	printf("  %-28s %14s   p99 %s, max %s\n", "fault latency p50", fmt_ns(a, sizeof a, st.latency_p50_ns),
	       fmt_ns(b, sizeof b, st.latency_p99_ns), fmt_ns(c, sizeof c, st.latency_max_ns));
	printf("  %-28s %14s\n", "page bookkeeping", fmt_bytes(a, sizeof a, st.meta_bytes));

	/* The story. */
	struct phase_rec *sp = ph_scan;
	uint64_t scan_faults = sp->after.faults - sp->before.faults;
	uint64_t scan_fills = sp->after.fills - sp->before.fills;
	uint64_t pages = (opt.size + page - 1) / page;
	printf("\nWhat happened:\n");
	printf("  The %s file is %.1fx the %s budget, so at most %.0f%% of it could be in memory at once.\n",
	       fmt_bytes(a, sizeof a, opt.size), (double)opt.size / (double)opt.budget,
	       fmt_bytes(b, sizeof b, opt.budget),
	       opt.size > opt.budget ? 100.0 * (double)opt.budget / (double)opt.size : 100.0);
	if (fill_secs > 0)
		printf("  Writing the pattern with pwrite() took %.2f s.\n", fill_secs);
	printf("  The sequential scan read %" PRIu64 " pages of %s in %.2f s with %" PRIu64
	       " faults: read-ahead brought in %.0f%% of the %" PRIu64 " pages filled before they were touched.\n",
	       pages, fmt_bytes(a, sizeof a, page), sp->secs, scan_faults,
	       scan_fills ? 100.0 * (double)(sp->after.readahead_pages - sp->before.readahead_pages) /
				    (double)scan_fills
			  : 0.0,
	       scan_fills);
	struct phase_rec *r = ph_reads;
	uint64_t f = r->after.faults - r->before.faults;
	printf("  %" PRIu64 " random reads caused %" PRIu64 " faults (%.0f%% missed; with no locality "
	       "about %.0f%% would).\n",
	       r->ops, f, r->ops ? 100.0 * (double)f / (double)r->ops : 0.0,
	       opt.size > opt.budget ? 100.0 * (1.0 - (double)opt.budget / (double)opt.size) : 0.0);
	if (!read_only) {
		struct phase_rec *w = ph_writes;
		uint64_t flushed = (ph_flush->after.bytes_written - ph_flush->before.bytes_written) / page;
		uint64_t at_unmap = (ph_unmap->after.bytes_written - ph_unmap->before.bytes_written) / page;
		printf("  %" PRIu64 " random writes, then %" PRIu64 " more, rewrote %zu words. Dirty pages were "
		       "written back in three ways: %" PRIu64 " by eviction during the run, %" PRIu64
		       " by umapd_flush and %" PRIu64 " by umapd_unmap.\n",
		       w->ops, ph_unmap[-1].ops, nwrites, st.dirty_evictions, flushed, at_unmap);
		printf("  Every byte was verified three times - in the file after umapd_flush, in the file after"
		       " umapd_unmap, and through a fresh mapping (%.2f s) - and every word written was read"
		       " back through the mapping: all %" PRIu64 " words matched.\n",
		       ph_remap->secs, opt.size / 8);
	} else {
		printf("  Every byte was compared with the file itself through pread(): all matched.\n");
	}
	if ((uint64_t)atomic_load(&peak_resident) > st.budget_bytes)
		printf("  Note: resident memory was seen above the budget (%s > %s).\n",
		       fmt_bytes(a, sizeof a, (uint64_t)atomic_load(&peak_resident)),
		       fmt_bytes(b, sizeof b, st.budget_bytes));
	else
		printf("  Resident memory never exceeded the budget in the samples taken (peak %s of %s).\n",
		       fmt_bytes(a, sizeof a, (uint64_t)atomic_load(&peak_resident)),
		       fmt_bytes(b, sizeof b, st.budget_bytes));
}

/* ---- main ----------------------------------------------------------------------------- */

static char *map_file(int prot)
{
	struct umapd_region_opts ro;
	memset(&ro, 0, sizeof ro); /* zero: the library's defaults, reserved[] must stay zero */
	ro.page_size = opt.page_size;
	ro.read_ahead = opt.read_ahead;
	char *m = umapd_map(NULL, opt.size, prot, 0, fd, 0, &ro);
	if (!m)
		die("umapd_map");
	return m;
}

static void open_file(void)
{
	if (!opt.file) {
		const char *base = getenv("TMPDIR");
		if (!base || !*base)
			base = "/var/tmp";
		snprintf(tmpdir, sizeof tmpdir, "%s/umapd-demo.XXXXXX", base);
		if (!mkdtemp(tmpdir)) {
			int e = errno;
			tmpdir[0] = 0;
			errno = e;
			die("mkdtemp");
		}
		snprintf(tmpfile_path, sizeof tmpfile_path, "%s/data", tmpdir);
		fd = open(tmpfile_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			die(tmpfile_path);
		return;
	}

	fd = open(opt.file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd >= 0)
		return; /* a new file: it gets the pattern */
	if (errno != EEXIST)
		die(opt.file);
	if (opt.overwrite) {
		fd = open(opt.file, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			die(opt.file);
		return;
	}
	if (opt.size_set) {
		fprintf(stderr,
			"umapd-demo: %s exists: pass --overwrite to replace its contents with the test "
			"pattern, or leave out --size to check it read-only as it is\n",
			opt.file);
		exit(EXIT_SETUP);
	}
	read_only = true;
	fd = open(opt.file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(opt.file);
	struct stat sb;
	if (fstat(fd, &sb))
		die("fstat");
	if (!S_ISREG(sb.st_mode) || sb.st_size < 8) {
		fprintf(stderr, "umapd-demo: %s: want a regular file of at least 8 bytes\n", opt.file);
		exit(EXIT_SETUP);
	}
	opt.size = (uint64_t)sb.st_size;
}

int main(int argc, char **argv)
{
	char a[32], b[32];
	double fill_secs = 0;

	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);

	open_file();
	if (opt.ops == 0) {
		opt.ops = opt.size / 4096 / 2;
		if (opt.ops < 1000)
			opt.ops = 1000;
	}
	if (opt.size / 8 < opt.threads)
		opt.threads = 1;
	workers = calloc(opt.threads, sizeof *workers);
	if (!workers)
		die("calloc");

	/* The budget must be set before the first umapd_map(). */
	if (umapd_set_bufsize(opt.budget))
		die("umapd_set_bufsize");
	if (umapd_init())
		die("umapd_init (see the log line above)");

	pthread_t watchdog;
	errno = pthread_create(&watchdog, NULL, watchdog_main, NULL);
	if (errno)
		die("pthread_create");

	if (!read_only) {
		atomic_store(&phase, "writing the pattern");
		double t = now();
		fill_file();
		fill_secs = now() - t;
	}

	map = map_file(read_only ? PROT_READ : PROT_READ | PROT_WRITE);
	size_t page = umapd_region_page_size(map);
	if (!page)
		die("umapd_region_page_size");
	opt.page_size = page;

	printf("umapd-demo: %s %s file %s\n", read_only ? "checking the existing" : "paging a",
	       fmt_bytes(a, sizeof a, opt.size), opt.file ? opt.file : tmpfile_path);
	printf("  budget %s (%.1fx smaller than the file), page size %s, %u application thread%s, "
	       "%" PRIu64 " random reads%s\n",
	       fmt_bytes(b, sizeof b, opt.budget), (double)opt.size / (double)opt.budget,
	       fmt_bytes(a, sizeof a, page), opt.threads, opt.threads == 1 ? "" : "s", opt.ops,
	       read_only ? "" : " and as many random writes");

	if (read_only) {
		for (unsigned t = 0; t < opt.threads; t++) {
			workers[t].buf = malloc(256 * KIB);
			if (!workers[t].buf)
				die("malloc");
		}
	}

	/* 1. sequential scan */
	struct phase_rec *p = ph_scan = phase_begin("sequential scan", opt.size / 8);
	run_workers(JOB_SCAN, "the sequential scan", 0);
	phase_end(p);
	p->bytes = opt.size;
	fail_on_diff();

	/* 2. random reads */
	p = ph_reads = phase_begin("random reads", opt.ops);
	run_workers(JOB_READS, "the random reads", opt.ops);
	phase_end(p);
	p->ops = opt.ops;
	fail_on_diff();

	if (!read_only) {
		/* 3. random writes, recorded */
		p = ph_writes = phase_begin("random writes", opt.ops);
		write_round(opt.ops, 0);
		phase_end(p);
		p->ops = opt.ops;

		/* 4. flush: the dirty pages still resident are written back; then every word in the file */
		p = ph_flush = phase_begin("flush", 0);
		if (umapd_flush(map, opt.size))
			die("umapd_flush");
		phase_end(p);
		p = phase_begin("pread file", opt.size / 8);
		verify_file("the file after umapd_flush");
		phase_end(p);
		p->bytes = opt.size;
		fail_on_diff();

		/* 5. every word written, read back through the mapping */
		p = phase_begin("read back writes", nwrites);
		run_workers(JOB_READBACK, "reading the writes back", 0);
		phase_end(p);
		p->ops = nwrites;
		fail_on_diff();

		/* 6. a second round of writes, left dirty for umapd_unmap to write back */
		uint64_t n2 = opt.ops / 4 ? opt.ops / 4 : 1;
		p = phase_begin("random writes 2", n2);
		write_round(n2, opt.ops);
		phase_end(p);
		p->ops = n2;
	}

	/* 7. unmap, then every word in the file again */
	p = ph_unmap = phase_begin("unmap", 0);
	if (umapd_unmap(map))
		die("umapd_unmap");
	map = NULL;
	phase_end(p);
	if (!read_only) {
		p = phase_begin("pread file again", opt.size / 8);
		verify_file("the file after umapd_unmap");
		phase_end(p);
		p->bytes = opt.size;
		fail_on_diff();

		/* 8. a fresh mapping must read what the first one wrote */
		p = ph_remap = phase_begin("map again, verify", opt.size / 8);
		map = map_file(PROT_READ);
		run_workers(JOB_SCAN, "a second mapping of the file", 0);
		if (umapd_unmap(map))
			die("umapd_unmap");
		map = NULL;
		phase_end(p);
		p->bytes = opt.size;
		fail_on_diff();
	}

	atomic_store(&done, true);
	pthread_join(watchdog, NULL);

	print_report(fill_secs);
	printf("\numapd-demo: OK - %s verified (%s), budget %s\n", fmt_bytes(a, sizeof a, opt.size),
	       read_only ? "read-only against the file" : "mapping, after flush, after unmap",
	       fmt_bytes(b, sizeof b, opt.budget));

	for (unsigned t = 0; t < opt.threads; t++)
		free(workers[t].buf);
	free(workers);
	free(writes);
	cleanup();
	return 0;
}
