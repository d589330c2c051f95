/*
 * example_util.h - what the examples share and a reader can skip: the
 * command line, the data file, sizes in human form, and a watchdog.
 *
 * Every example takes the same options (each uses the ones it needs):
 *   --size SIZE       data size (bytes, K/M/G suffix)
 *   --budget SIZE     memory budget for the paged data
 *   --threads N       worker threads
 *   --page-size SIZE  umapd page size of the region
 *   --ops N           operations (lookups, passes, ...), example-specific
 *   --file PATH       use (and keep) this data file instead of a temporary one
 *   --seed N          seed of the generated data
 *   --mmap            the kernel's mmap instead of umapd, for comparison
 *   --timeout SEC     give up with exit status 3 if still running after SEC
 */
#ifndef EXAMPLE_UTIL_H
#define EXAMPLE_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ex_opts {
	uint64_t size, budget, page_size, ops, seed;
	unsigned threads;
	const char *file;
	int use_mmap;
	unsigned timeout;
};

static const char *ex_phase = "start"; /* what the watchdog reports */

static void ex_alarm(int sig)
{
	static const char msg[] = "example: watchdog: still running, giving up in phase: ";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0 || write(2, ex_phase, strlen(ex_phase)) < 0 ||
	    write(2, "\n", 1) < 0) {
		/* nothing more to say */
	}
	_exit(3);
}

static inline int ex_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return -1;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end)
		return -1;
	*out = v;
	return 0;
}

/* "64 MiB", "4 KiB", ... (one static buffer per call site is enough here) */
static inline const char *ex_size_buf(char *buf, size_t len, uint64_t b)
{
	if (b >= (1ull << 30) && b % (1ull << 30) == 0)
		snprintf(buf, len, "%llu GiB", (unsigned long long)(b >> 30));
	else if (b >= (1ull << 20) && b % (1ull << 20) == 0)
		snprintf(buf, len, "%llu MiB", (unsigned long long)(b >> 20));
	else if (b >= 1024 && b % 1024 == 0)
		snprintf(buf, len, "%llu KiB", (unsigned long long)(b >> 10));
	else
		snprintf(buf, len, "%llu B", (unsigned long long)b);
	return buf;
}
#define ex_size(b) ex_size_buf((char[32]){ 0 }, 32, (b))

static inline int ex_parse(int argc, char **argv, struct ex_opts *o, const char *name)
{
	static const struct option lo[] = {
		{ "size", required_argument, NULL, 's' },
		{ "budget", required_argument, NULL, 'b' },
		{ "threads", required_argument, NULL, 't' },
		{ "page-size", required_argument, NULL, 'p' },
		{ "ops", required_argument, NULL, 'n' },
		{ "file", required_argument, NULL, 'f' },
		{ "seed", required_argument, NULL, 'S' },
		{ "mmap", no_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	uint64_t v;

	while ((c = getopt_long(argc, argv, "s:b:t:p:n:f:S:mT:h", lo, NULL)) != -1) {
		switch (c) {
		case 's': if (ex_parse_size(optarg, &o->size) || !o->size) goto bad; break;
		case 'b': if (ex_parse_size(optarg, &o->budget) || !o->budget) goto bad; break;
		case 'p': if (ex_parse_size(optarg, &o->page_size) || !o->page_size) goto bad; break;
		case 'n': if (ex_parse_size(optarg, &o->ops) || !o->ops) goto bad; break;
		case 'S': if (ex_parse_size(optarg, &o->seed)) goto bad; break;
		case 't':
			if (ex_parse_size(optarg, &v) || v < 1 || v > 1024)
				goto bad;
			o->threads = (unsigned)v;
			break;
		case 'T':
			if (ex_parse_size(optarg, &v) || v > 86400)
				goto bad;
			o->timeout = (unsigned)v;
			break;
		case 'f': o->file = optarg; break;
		case 'm': o->use_mmap = 1; break;
		case 'h':
			printf("usage: %s [--size S] [--budget S] [--threads N] [--page-size S] [--ops N]\n"
			       "       [--file PATH] [--seed N] [--mmap] [--timeout SEC]\n", name);
			exit(0);
		default:
			goto bad;
		}
	}
	if (optind == argc) {
		if (o->timeout) {
			signal(SIGALRM, ex_alarm);
			alarm(o->timeout);
		}
		return 0;
	}
bad:
	fprintf(stderr, "%s: bad option or value (see --help)\n", name);
	return -1;
}

/* The data file: --file as given, else a new temporary file in $TMPDIR or /var/tmp. */
static inline int ex_open_file(const struct ex_opts *o, char *path, size_t len)
{
	int fd;

	if (o->file) {
		snprintf(path, len, "%s", o->file);
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	} else {
		const char *dir = getenv("TMPDIR");

		snprintf(path, len, "%s/umapd-example.XXXXXX", dir && *dir ? dir : "/var/tmp");
		fd = mkostemp(path, O_CLOEXEC);
	}
	if (fd < 0)
		fprintf(stderr, "cannot create %s: %s\n", path, strerror(errno));
	return fd;
}

static inline void ex_close_file(const struct ex_opts *o, int fd, const char *path)
{
	close(fd);
	if (!o->file)
		unlink(path);
}

static inline int ex_die(const struct ex_opts *o, const char *path, const char *what)
{
	fprintf(stderr, "%s failed: %s\n", what, strerror(errno));
	if (!o->file)
		unlink(path);
	return 2;
}

#endif /* EXAMPLE_UTIL_H */
