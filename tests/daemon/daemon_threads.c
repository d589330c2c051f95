/*
 * daemon.threads - one client process, several threads faulting at once on
 * one daemon region through a budget a sixteenth of it: each thread writes
 * and reads back its own pages (page % threads == its index), flushes its
 * part now and then (requests from several threads share the connection),
 * and a region of a second file is mapped and unmapped meanwhile.  The
 * file is then exact.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dtest.h"
#include "umapd_test.h"

#define NT 4
#define PG 4096

static uint8_t *base;
static size_t len;
static int other_fd;

static void *worker(void *arg)
{
	int k = (int)(intptr_t)arg;
	uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1);
	size_t npages = len / PG, ops = t_scaled(3000, 200);

	for (size_t i = 0; i < ops; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		size_t p = (size_t)(s % npages);

		p = p - p % NT + (size_t)k;
		if (p >= npages)
			continue;
		if (s & 1)
			t_fill_pat(base + p * PG, PG, p * PG, 10 + (uint32_t)k);
		else if (base[p * PG] != t_pat(p * PG, 1) && base[p * PG] != t_pat(p * PG, 10 + (uint32_t)k))
			t_fail("thread %d page %zu: %#x", k, p, base[p * PG]);
		if (i % 500 == 499 && umapd_flush(base, len) != 0)
			t_fail("thread %d: umapd_flush: %s", k, t_errname(errno));
		if (k == 0 && i % 700 == 0) {
			void *o = umapd_map(NULL, 1 << 20, PROT_READ, 0, other_fd, 0, NULL);

			if (!o)
				t_fail("map of the second file: %s", t_errname(errno));
			t_check_pat("second file", o, 1 << 20, 0, 3);
			if (umapd_unmap(o) != 0)
				t_fail("unmap of the second file: %s", t_errname(errno));
		}
	}
	return NULL;
}

int main(void)
{
	struct dt_daemon d;
	char path[256], other[256], budget[32];
	pthread_t th[NT];
	int fd;

	t_init("daemon.threads", 90);
	len = t_scaled(16 << 20, 2 << 20);
	snprintf(budget, sizeof(budget), "%zu", len / 16);
	dt_daemon_start(&d, budget, NULL);
	dt_tmpfile(path, len, 1);
	dt_tmpfile(other, 1 << 20, 3);
	fd = open(path, O_RDWR);
	other_fd = open(other, O_RDONLY);
	if (umapd_connect(d.sock) != 0)
		t_fail("umapd_connect: %s", t_errname(errno));
	base = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	t_step("%d threads", NT);
	for (int k = 0; k < NT; k++)
		pthread_create(&th[k], NULL, worker, (void *)(intptr_t)k);
	for (int k = 0; k < NT; k++)
		pthread_join(th[k], NULL);
	t_step("unmap and verify");
	t_unmap(base);
	{
		uint8_t *exp = malloc(len), *got = malloc(len);

		t_fill_pat(exp, len, 0, 1);
		for (int k = 0; k < NT; k++) {
			uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1);
			size_t npages = len / PG, ops = t_scaled(3000, 200);

			for (size_t i = 0; i < ops; i++) {
				s ^= s << 13, s ^= s >> 7, s ^= s << 17;
				size_t p = (size_t)(s % npages);

				p = p - p % NT + (size_t)k;
				if (p < npages && (s & 1))
					t_fill_pat(exp + p * PG, PG, p * PG, 10 + (uint32_t)k);
			}
		}
		t_pread_all(fd, got, len, 0);
		t_check_bytes("file after the threads", got, exp, len, 0);
		free(exp);
		free(got);
	}
	dt_daemon_cleanup(&d);
	t_pass("%d threads of one client through a %s-byte budget, with flushes and another region mapped and "
	       "unmapped meanwhile: file exact",
	       NT, budget);
}
