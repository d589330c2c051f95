/*
 * driver.c - runs a libFuzzer harness (LLVMFuzzerTestOneInput) without
 * libFuzzer, so every harness also builds with gcc and runs as an ordinary
 * ctest: first every file of the seed corpus, then -runs=N inputs made by
 * mutating corpus entries (bit flips, bytes from the parsers' alphabet,
 * insertions, deletions, duplicated and spliced runs).  A harness reports
 * a bug by crashing (abort); the driver then dies with it and the test
 * fails, after printing the input's number and bytes.
 *
 *   test_fuzz_<name> [-runs=N] [-seed=N] [-max_len=N] corpus-dir-or-file...
 */
#include "umapd_test.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
	uint8_t *data;
	size_t size;
};

static struct input *corpus;
static size_t ncorpus, cap;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void add(uint8_t *data, size_t size)
{
	if (ncorpus == cap) {
		cap = cap ? 2 * cap : 64;
		corpus = realloc(corpus, cap * sizeof(*corpus));
		if (!corpus)
			t_fail("out of memory");
	}
	corpus[ncorpus++] = (struct input){ data, size };
}

static void load_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		t_fail("cannot open %s", path);
	uint8_t *buf = malloc(1 << 16);
	size_t n = buf ? fread(buf, 1, 1 << 16, f) : 0;
	fclose(f);
	add(buf, n);
}

static void load(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		t_fail("cannot stat %s", path);
	if (!S_ISDIR(st.st_mode)) {
		load_file(path);
		return;
	}
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char p[4096];
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		load_file(p);
	}
	if (d)
		closedir(d);
}

/* Bytes the parsers care about, besides random ones. */
static const char alphabet[] = ",=:%.-+ \t\n0123456789KMGTBiEIOxX_abcdefghijklmnopqrstuvwxyz*?[]!^\\/";

static size_t mutate(uint8_t *buf, size_t size, size_t max)
{
	int n = 1 + (int)(rnd() % 6);
	for (int i = 0; i < n; i++) {
		size_t pos = size ? (size_t)(rnd() % size) : 0;
		switch (rnd() % 8) {
		case 0: /* flip a bit */
			if (size)
				buf[pos] ^= (uint8_t)(1u << (rnd() % 8));
			break;
		case 1: /* a random byte */
			if (size)
				buf[pos] = (uint8_t)rnd();
			break;
		case 2: /* a byte from the alphabet */
			if (size)
				buf[pos] = (uint8_t)alphabet[rnd() % (sizeof(alphabet) - 1)];
			break;
		case 3: /* insert one */
			if (size < max) {
				memmove(buf + pos + 1, buf + pos, size - pos);
				buf[pos] = (uint8_t)alphabet[rnd() % (sizeof(alphabet) - 1)];
				size++;
			}
			break;
		case 4: /* delete a run */
			if (size) {
				size_t len = 1 + (size_t)(rnd() % 8);
				if (len > size - pos)
					len = size - pos;
				memmove(buf + pos, buf + pos + len, size - pos - len);
				size -= len;
			}
			break;
		case 5: { /* duplicate a run */
			size_t len = size ? 1 + (size_t)(rnd() % 16) : 0;
			if (len > size - pos)
				len = size - pos;
			if (size + len <= max) {
				memmove(buf + pos + len, buf + pos, size - pos);
				size += len;
			}
			break;
		}
		case 6: { /* splice in another corpus entry */
			const struct input *o = &corpus[rnd() % ncorpus];
			size_t len = o->size < max - pos ? o->size : max - pos;
			if (pos <= size && len) {
				memcpy(buf + pos, o->data, len);
				if (pos + len > size)
					size = pos + len;
			}
			break;
		}
		default: /* truncate */
			size = pos;
			break;
		}
	}
	return size;
}

static const uint8_t *cur;
static size_t cur_size;
static uint64_t cur_no;

static void show_input(void)
{
	fprintf(stderr, "  input %llu (%zu bytes): \"", (unsigned long long)cur_no, cur_size);
	for (size_t i = 0; cur && i < cur_size && i < 512; i++)
		fprintf(stderr, (cur[i] >= 32 && cur[i] < 127 && cur[i] != '"') ? "%c" : "\\x%02x", cur[i]);
	fprintf(stderr, "\"\n");
}

static void run(const uint8_t *data, size_t size)
{
	cur = data;
	cur_size = size;
	cur_no++;
	LLVMFuzzerTestOneInput(data, size);
}

static void on_abort(int sig)
{
	show_input();
	signal(sig, SIG_DFL);
	raise(sig);
}

int main(int argc, char **argv)
{
	unsigned long long runs = 20000, seed = 1;
	size_t max = 512;
	const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	t_init(name, 600);
	t_watchdog_hook(show_input);
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "-runs=", 6) == 0)
			runs = strtoull(argv[i] + 6, NULL, 10);
		else if (strncmp(argv[i], "-seed=", 6) == 0)
			seed = strtoull(argv[i] + 6, NULL, 10);
		else if (strncmp(argv[i], "-max_len=", 9) == 0)
			max = strtoull(argv[i] + 9, NULL, 10);
		else if (argv[i][0] != '-')
			load(argv[i]);
	}
	if (getenv("UMAPD_FUZZ_RUNS"))
		runs = strtoull(getenv("UMAPD_FUZZ_RUNS"), NULL, 10);
	rng ^= seed * 0xBF58476D1CE4E5B9ull;
	signal(SIGABRT, on_abort);
	signal(SIGSEGV, on_abort);
	signal(SIGBUS, on_abort);
	if (ncorpus == 0)
		add(calloc(1, 1), 0);
	size_t seeds = ncorpus;
	for (size_t i = 0; i < seeds; i++)
		run(corpus[i].data, corpus[i].size);
	uint8_t *buf = malloc(max + 1);
	T_CHECK(buf != NULL, "malloc");
	for (unsigned long long r = 0; r < runs; r++) {
		const struct input *base = &corpus[rnd() % ncorpus];
		size_t size = base->size < max ? base->size : max;
		memcpy(buf, base->data, size);
		size = mutate(buf, size, max);
		run(buf, size);
		/* Keep some mutants as bases, so changes accumulate. */
		if (rnd() % 64 == 0 && ncorpus < 4096) {
			uint8_t *keep = malloc(size ? size : 1);
			T_CHECK(keep != NULL, "malloc");
			memcpy(keep, buf, size);
			add(keep, size);
		}
	}
	free(buf);
	t_pass("%zu seed inputs and %llu mutated ones, no crash and no broken property", seeds, runs);
}
