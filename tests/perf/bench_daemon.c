/*
 * bench_daemon - N processes each scan the same file once, through a node
 * budget, three ways:
 *
 *   daemon  one umapd daemon (--budget BUDGET), every process its client:
 *           one shared copy of the file, one budget
 *   lib     every process pages by itself with libumapd, UMAPD_BUFSIZE =
 *           BUDGET / N (the same memory for the node in total)
 *   mmap    kernel mmap(MAP_SHARED) of the file, all processes in one v1
 *           memory cgroup limited to BUDGET (/sys/fs/cgroup/memory)
 *
 * Each run starts with the file dropped from the page cache
 * (posix_fadvise DONTNEED on this file only).  Printed: wall time until
 * the last process is done, aggregate scan rate, and each mode's time
 * relative to mmap in the cgroup (> 1: slower).  Every process checks a
 * sum of the data it scanned against the file's.
 *
 *   bench_daemon [--size 1G] [--procs 8] [--budget 256M] [--modes daemon,lib,mmap]
 *                [--dir /var/tmp]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <umapd.h>

extern char **environ;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 10);

	switch (*end) {
	case 'k': case 'K': return v << 10;
	case 'm': case 'M': return v << 20;
	case 'g': case 'G': return v << 30;
	default: return v;
	}
}

/* One u64 per 512 bytes: touches every page, costs little CPU. */
static uint64_t scan(const volatile uint64_t *p, size_t len)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < len / 8; i += 64)
		sum += p[i] * (i | 1);
	return sum;
}

static uint64_t expected_sum(size_t len)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < len / 8; i += 64)
		sum += (uint64_t)i * 0x9E3779B97F4A7C15ull * (i | 1);
	return sum;
}

/* Child: map the file the way the mode says, scan it, check the sum. */
static int child(const char *mode, const char *path, const char *cg)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint64_t sum;
	void *p;

	if (fd < 0 || fstat(fd, &st) < 0)
		return 10;
	if (!strcmp(mode, "mmap")) {
		char procs[300];
		FILE *f;

		snprintf(procs, sizeof(procs), "%s/cgroup.procs", cg);
		f = fopen(procs, "w");
		if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0)
			return 11;
		p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			return 12;
		madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
	} else {
		if (!strcmp(mode, "daemon") && umapd_connect(NULL) != 0) {
			fprintf(stderr, "bench_daemon: umapd_connect: %s\n", strerror(errno));
			return 13;
		}
		p = umapd_map(NULL, (size_t)st.st_size, PROT_READ, 0, fd, 0, NULL);
		if (!p) {
			fprintf(stderr, "bench_daemon: umapd_map: %s\n", strerror(errno));
			return 14;
		}
	}
	sum = scan(p, (size_t)st.st_size);
	if (sum != expected_sum((size_t)st.st_size)) {
		fprintf(stderr, "bench_daemon: %s: wrong data (sum %llx)\n", mode, (unsigned long long)sum);
		return 15;
	}
	return 0;
}

static pid_t spawn(char *const argv[], char *const env[])
{
	pid_t parent = getpid(), pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		execve(argv[0], argv, env);
		_exit(127);
	}
	return pid;
}

static char **env_with(const char *a, const char *b)
{
	size_t n = 0, k = 0;
	char **e;

	while (environ[n])
		n++;
	e = calloc(n + 3, sizeof(*e));
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "UMAPD_", 6))
			e[k++] = environ[i];
	if (a)
		e[k++] = (char *)a;
	if (b)
		e[k++] = (char *)b;
	return e;
}

static double run(const char *mode, const char *self, const char *path, int procs, uint64_t budget,
		  const char *dir)
{
	char cg[256] = "", sock[100], env1[300], env2[64], bopt[64], sopt[300];
	pid_t daemon = 0, pids[256];
	char **env = NULL;
	uint64_t t0;
	int fd = open(path, O_RDONLY), bad = 0;

	/* Cold start: this file out of the page cache. */
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	if (!strcmp(mode, "daemon")) {
		snprintf(sock, sizeof(sock), "%s/bench_daemon.%d.sock", dir, (int)getpid());
		snprintf(bopt, sizeof(bopt), "--budget=%llu", (unsigned long long)budget);
		snprintf(sopt, sizeof(sopt), "--socket=%s", sock);
		char *dargv[] = { UMAPD_DAEMON_PATH, "--config=/dev/null", sopt, bopt, "--log-level=warn", NULL };

		daemon = spawn(dargv, environ);
		for (int i = 0; i < 500; i++) {
			struct sockaddr_un sa = { .sun_family = AF_UNIX };
			int s = socket(AF_UNIX, SOCK_STREAM, 0);

			memcpy(sa.sun_path, sock, sizeof(sock));
			if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
				close(s);
				break;
			}
			close(s);
			usleep(10000);
		}
		snprintf(env1, sizeof(env1), "UMAPD_SOCKET=%s", sock);
		env = env_with(env1, NULL);
	} else if (!strcmp(mode, "lib")) {
		snprintf(env1, sizeof(env1), "UMAPD_BUFSIZE=%llu", (unsigned long long)(budget / (uint64_t)procs));
		snprintf(env2, sizeof(env2), "UMAPD_LOG_LEVEL=error");
		env = env_with(env1, env2);
	} else {
		FILE *f;

		snprintf(cg, sizeof(cg), "/sys/fs/cgroup/memory/umapd-bench-%d", (int)getpid());
		if (mkdir(cg, 0755) < 0) {
			fprintf(stderr, "bench_daemon: mmap: cannot make the cgroup %s: %s (skipped)\n", cg, strerror(errno));
			return -1;
		}
		snprintf(env1, sizeof(env1), "%s/memory.limit_in_bytes", cg);
		f = fopen(env1, "w");
		if (!f || fprintf(f, "%llu\n", (unsigned long long)budget) < 0 || fclose(f) != 0) {
			fprintf(stderr, "bench_daemon: cannot set %s\n", env1);
			rmdir(cg);
			return -1;
		}
		env = env_with(NULL, NULL);
	}
	t0 = now_ns();
	for (int i = 0; i < procs; i++) {
		char *cargv[] = { (char *)self, "child", (char *)mode, (char *)path, cg, NULL };

		pids[i] = spawn(cargv, env);
	}
	for (int i = 0; i < procs; i++) {
		int st;

		waitpid(pids[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "bench_daemon: %s: process %d failed (status %#x)\n", mode, i, st);
			bad = 1;
		}
	}
	double secs = (double)(now_ns() - t0) / 1e9;

	if (daemon) {
		struct rusage ru;

		kill(daemon, SIGTERM);
		if (wait4(daemon, NULL, 0, &ru) == daemon)
			printf("  (daemon CPU: %.2f s user, %.2f s system)\n",
			       (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
			       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
		unlink(sock);
	}
	if (cg[0]) {
		char peak[300], v[64] = "";
		FILE *f;

		snprintf(peak, sizeof(peak), "%s/memory.max_usage_in_bytes", cg);
		f = fopen(peak, "r");
		if (f && fgets(v, sizeof(v), f))
			printf("  (mmap cgroup peak usage %llu MiB)\n", strtoull(v, NULL, 10) >> 20);
		if (f)
			fclose(f);
		rmdir(cg);
	}
	free(env);
	return bad ? -1 : secs;
}

int main(int argc, char **argv)
{
	uint64_t size = 1ull << 30, budget = 256ull << 20;
	int procs = 8;
	const char *modes = "daemon,lib,mmap", *dir = "/var/tmp";
	char path[512];
	double t[3] = { -1, -1, -1 };
	const char *names[3] = { "daemon", "lib", "mmap" };

	if (argc == 5 && !strcmp(argv[1], "child"))
		return child(argv[2], argv[3], argv[4]);
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--size"))
			size = parse_size(argv[i + 1]);
		else if (!strcmp(argv[i], "--procs"))
			procs = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--budget"))
			budget = parse_size(argv[i + 1]);
		else if (!strcmp(argv[i], "--modes"))
			modes = argv[i + 1];
		else if (!strcmp(argv[i], "--dir"))
			dir = argv[i + 1];
	}
	if (procs < 1 || procs > 256 || size < (1 << 20)) {
		fprintf(stderr, "usage: bench_daemon [--size S] [--procs N] [--budget B] [--modes daemon,lib,mmap] [--dir D]\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/bench_daemon.%d.dat", dir, (int)getpid());
	{
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		uint64_t *buf = malloc(1 << 20);

		if (fd < 0 || !buf) {
			perror(path);
			return 1;
		}
		for (uint64_t off = 0; off < size; off += 1 << 20) {
			for (size_t i = 0; i < (1 << 20) / 8; i++)
				buf[i] = (off / 8 + i) * 0x9E3779B97F4A7C15ull;
			if (pwrite(fd, buf, 1 << 20, (off_t)off) != 1 << 20) {
				perror("pwrite");
				unlink(path);
				return 1;
			}
		}
		free(buf);
		close(fd);
	}
	printf("bench_daemon: %d processes each scan a %llu MiB file; node budget %llu MiB\n", procs,
	       (unsigned long long)(size >> 20), (unsigned long long)(budget >> 20));
	for (int m = 0; m < 3; m++) {
		if (!strstr(modes, names[m]))
			continue;
		t[m] = run(names[m], "/proc/self/exe", path, procs, budget, dir);
		if (t[m] > 0)
			printf("  %-6s %8.2f s  %8.0f MiB/s aggregate\n", names[m], t[m],
			       (double)procs * (double)(size >> 20) / t[m]);
		else
			printf("  %-6s failed or skipped\n", names[m]);
	}
	if (t[2] > 0) {
		for (int m = 0; m < 2; m++)
			if (t[m] > 0)
				printf("  %s / mmap-in-cgroup time: %.2fx\n", names[m], t[m] / t[2]);
	}
	if (t[0] > 0 && t[1] > 0)
		printf("  daemon / lib time: %.2fx\n", t[0] / t[1]);
	unlink(path);
	return (t[0] < 0 && strstr(modes, "daemon")) || (t[1] < 0 && strstr(modes, "lib")) ? 1 : 0;
}
