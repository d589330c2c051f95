/*
 * api_args - every bad argument of every public function returns -1/NULL
 * with the errno umapd.h documents for it, and leaves the library usable.
 */
#include "umapd_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static int nchecks;

static struct umapd_region_opts opts0(void)
{
	struct umapd_region_opts o;
	memset(&o, 0, sizeof(o));
	return o;
}

#define MAP_ERR(want, len, prot, flags, fd, off, optp)                                        \
	do {                                                                                  \
		t_step("umapd_map(len %zu, prot %d, flags %d, fd %d, off %lld) -> %s",         \
		       (size_t)(len), (int)(prot), (int)(flags), (int)(fd), (long long)(off),  \
		       t_errname(want));                                                      \
		T_ERR_NULL(umapd_map(NULL, (len), (prot), (flags), (fd), (off), (optp)), want);\
		nchecks++;                                                                    \
	} while (0)

static void check_map(void)
{
	const size_t ps = t_sys_page();
	const int RW = PROT_READ | PROT_WRITE;
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, 64 * 1024, 1);
	struct umapd_region_opts o = opts0();

	/* length, prot, flags */
	MAP_ERR(EINVAL, 0, RW, 0, fd, 0, NULL);
	MAP_ERR(EINVAL, 0, PROT_READ, 0, fd, 0, &o);
	MAP_ERR(EINVAL, ps, 0, 0, fd, 0, NULL);            /* PROT_NONE */
	MAP_ERR(EINVAL, ps, PROT_EXEC, 0, fd, 0, NULL);
	MAP_ERR(EINVAL, ps, PROT_READ | PROT_EXEC, 0, fd, 0, NULL);
	MAP_ERR(EINVAL, ps, PROT_READ | 0x100, 0, fd, 0, NULL);
	MAP_ERR(EINVAL, ps, RW, 0x4, fd, 0, NULL);
	MAP_ERR(EINVAL, ps, RW, 0x100, fd, 0, NULL);
	MAP_ERR(EINVAL, ps, RW, -1, fd, 0, NULL);
	MAP_ERR(EINVAL, ps, RW, UMAPD_GROWABLE | 0x80, fd, 0, NULL);

	/* offset alignment (default page size, then a 16K-page region) */
	MAP_ERR(EINVAL, ps, RW, 0, fd, 1, NULL);
	MAP_ERR(EINVAL, ps, RW, 0, fd, (off_t)ps / 2, NULL);
	MAP_ERR(EINVAL, ps, RW, 0, fd, (off_t)ps - 1, NULL);
	MAP_ERR(EINVAL, ps, RW, 0, fd, (off_t)ps + 512, NULL);
	MAP_ERR(EINVAL, ps, RW, 0, fd, -(off_t)ps, NULL);
	o = opts0();
	o.page_size = 4 * ps;
	MAP_ERR(EINVAL, 4 * ps, RW, 0, fd, (off_t)ps, &o);
	MAP_ERR(EINVAL, 4 * ps, RW, 0, fd, 2 * (off_t)ps, &o);
	MAP_ERR(EINVAL, 4 * ps, RW, 0, fd, 6 * (off_t)ps, &o);

	/* opts: page size, read_ahead, reserved */
	size_t bad_ps[] = { 3 * ps, ps / 2, ps + 1, 1, 6 * ps, ps * 3 / 2, ps - 1 };
	for (size_t i = 0; i < sizeof(bad_ps) / sizeof(bad_ps[0]); i++) {
		o = opts0();
		o.page_size = bad_ps[i];
		t_step("opts.page_size %zu", bad_ps[i]);
		MAP_ERR(EINVAL, 4 * ps, RW, 0, fd, 0, &o);
	}
	long bad_ra[] = { -2, -100, 4097, 1L << 40 };
	for (size_t i = 0; i < sizeof(bad_ra) / sizeof(bad_ra[0]); i++) {
		o = opts0();
		o.read_ahead = bad_ra[i];
		MAP_ERR(EINVAL, 4 * ps, RW, 0, fd, 0, &o);
	}
	for (size_t i = 0; i < sizeof(o.reserved) / sizeof(o.reserved[0]); i++) {
		o = opts0();
		o.reserved[i] = i == 3 ? 0x8000000000000000ull : 1;
		MAP_ERR(EINVAL, 4 * ps, RW, 0, fd, 0, &o);
	}
	int bad_io[] = { -1, 4, 1000 };
	for (size_t i = 0; i < sizeof(bad_io) / sizeof(bad_io[0]); i++) {
		o = opts0();
		o.io_engine = bad_io[i];
		t_step("opts.io_engine %d", bad_io[i]);
		MAP_ERR(EINVAL, 4 * ps, RW, 0, fd, 0, &o);
	}
	int bad_direct[] = { -1, 2 };
	for (size_t i = 0; i < sizeof(bad_direct) / sizeof(bad_direct[0]); i++) {
		o = opts0();
		o.direct = bad_direct[i];
		t_step("opts.direct %d", bad_direct[i]);
		MAP_ERR(EINVAL, 4 * ps, RW, 0, fd, 0, &o);
	}

	/* UMAPD_FIXED with an unaligned address */
	char *spot = mmap(NULL, 4 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_CHECK(spot != MAP_FAILED, "mmap spot: %s", strerror(errno));
	void *unaligned[] = { spot + 1, spot + ps / 2, spot + ps - 1 };
	for (size_t i = 0; i < 3; i++) {
		t_step("UMAPD_FIXED at %p", unaligned[i]);
		T_ERR_NULL(umapd_map(unaligned[i], ps, RW, UMAPD_FIXED, fd, 0, NULL), EINVAL);
		nchecks++;
	}

	/* descriptors */
	MAP_ERR(EBADF, ps, PROT_READ, 0, -1, 0, NULL);
	MAP_ERR(EBADF, ps, PROT_READ, 0, -100, 0, NULL);
	MAP_ERR(EBADF, ps, PROT_READ, 0, 1 << 20, 0, NULL);
	int closed = dup(fd);
	close(closed);
	MAP_ERR(EBADF, ps, PROT_READ, 0, closed, 0, NULL);

	char path[256];
	int tfd = t_tmpfile(path);
	t_write_file_pat(tfd, 0, 4 * ps, 2);
	int wo = t_reopen(path, O_WRONLY);
	MAP_ERR(EACCES, ps, PROT_READ, 0, wo, 0, NULL);
	MAP_ERR(EACCES, ps, RW, 0, wo, 0, NULL);
	int ro = t_reopen(path, O_RDONLY);
	MAP_ERR(EACCES, ps, RW, 0, ro, 0, NULL);
	MAP_ERR(EACCES, ps, RW, UMAPD_GROWABLE, ro, 0, NULL);

	int dfd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	T_CHECK(dfd >= 0, "open /tmp: %s", strerror(errno));
	MAP_ERR(ENODEV, ps, PROT_READ, 0, dfd, 0, NULL);
	int pfd[2];
	T_CHECK(pipe(pfd) == 0, "pipe: %s", strerror(errno));
	MAP_ERR(ENODEV, ps, PROT_READ, 0, pfd[0], 0, NULL);
	int sv[2];
	T_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
	MAP_ERR(ENODEV, ps, PROT_READ, 0, sv[0], 0, NULL);
	MAP_ERR(ENODEV, ps, RW, 0, sv[0], 0, NULL);
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	T_CHECK(nul >= 0, "open /dev/null: %s", strerror(errno));
	MAP_ERR(ENODEV, ps, RW, 0, nul, 0, NULL);

	/* overflow and address space */
	off_t hi = (off_t)((INT64_MAX / (int64_t)ps) * (int64_t)ps);
	MAP_ERR(EOVERFLOW, 2 * ps, PROT_READ, 0, fd, hi, NULL);
	MAP_ERR(EOVERFLOW, 16 * ps, PROT_READ, 0, fd, hi - 8 * (off_t)ps, NULL);
	MAP_ERR(ENOMEM, (size_t)1 << 62, PROT_READ, 0, fd, 0, NULL);

	/* the good cases next to the bad ones work */
	t_step("valid maps next to the bad ones");
	void *a = t_map(ps, PROT_READ, 0, ro, 0, 0, 0);
	t_check_pat("O_RDONLY PROT_READ map", a, ps, 0, 2);
	t_unmap(a);
	o = opts0();
	o.page_size = 4 * ps;
	o.read_ahead = -1;
	a = umapd_map(NULL, 4 * ps, RW, 0, fd, 4 * (off_t)ps, &o);
	T_CHECK(a != NULL, "16K-page map at offset 16K failed: %s", t_errname(errno));
	t_check_pat("16K-page map at offset 16K", a, 4 * ps, 4 * ps, 1);
	T_CHECK(umapd_region_page_size((char *)a + 100) == 4 * ps,
		"umapd_region_page_size = %zu, want %zu", umapd_region_page_size((char *)a + 100), 4 * ps);
	t_unmap(a);
	o = opts0();
	o.read_ahead = 4096;
	a = umapd_map(spot, ps, RW, UMAPD_FIXED | UMAPD_GROWABLE, fd, 0, &o);
	T_CHECK(a == spot, "UMAPD_FIXED map at %p returned %p (%s)", (void *)spot, a, t_errname(errno));
	t_check_pat("UMAPD_FIXED map", a, ps, 0, 1);
	t_unmap(a);
	o = opts0();
	o.read_ahead = -1;
	a = t_map(ps, PROT_READ, 0, fd, 0, 0, -1);
	t_unmap(a);
	close(wo);
	close(ro);
	close(dfd);
	close(pfd[0]);
	close(pfd[1]);
	close(sv[0]);
	close(sv[1]);
	close(nul);
	close(tfd);
	close(fd);
}

/* umapd.h: "prot: PROT_READ, optionally | PROT_WRITE"; write without read
 * is not in that set.  Checked last so that the other checks run first. */
static void check_write_only(void)
{
	const size_t ps = t_sys_page();
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, ps, 1);
	MAP_ERR(EINVAL, ps, PROT_WRITE, 0, fd, 0, NULL);
	MAP_ERR(EINVAL, ps, PROT_WRITE, UMAPD_GROWABLE, fd, 0, NULL);
	close(fd);
}

static void check_ranges(void)
{
	const size_t ps = t_sys_page();
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, 8 * ps, 3);
	char *r = t_map(4 * ps, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	char stackbuf[64];
	char *heap = malloc(4 * ps);
	char *anon = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_CHECK(heap != NULL && anon != MAP_FAILED, "allocation failed");

	/* unmap */
	t_step("umapd_unmap bad addresses");
	T_ERR(umapd_unmap(NULL), EINVAL);
	T_ERR(umapd_unmap(stackbuf), EINVAL);
	T_ERR(umapd_unmap(heap), EINVAL);
	T_ERR(umapd_unmap(anon), EINVAL);
	T_ERR(umapd_unmap(r + ps), EINVAL);
	T_ERR(umapd_unmap(r + 1), EINVAL);
	nchecks += 6;

	/* flush / evict / prefetch / advise */
	int (*fn[3])(void *, size_t) = { umapd_flush, umapd_evict, umapd_prefetch };
	const char *fname[3] = { "umapd_flush", "umapd_evict", "umapd_prefetch" };
	for (int i = 0; i < 3; i++) {
		t_step("%s bad ranges", fname[i]);
		T_ERR(fn[i](NULL, ps), EINVAL);
		T_ERR(fn[i](NULL, 0), EINVAL);
		T_ERR(fn[i](r, SIZE_MAX), EINVAL);
		T_ERR(fn[i](r + ps, SIZE_MAX - ps / 2), EINVAL);
		T_ERR(fn[i](stackbuf, sizeof(stackbuf)), ENOMEM);
		T_ERR(fn[i](heap, 4 * ps), ENOMEM);
		T_ERR(fn[i](anon, ps), ENOMEM);
		t_step("%s good ranges", fname[i]);
		T_OK(fn[i](r, 4 * ps));
		T_OK(fn[i](r + 1, 1));
		nchecks += 9;
	}
	t_step("umapd_advise bad arguments");
	int bad_adv[] = { -1, 5, 6, 100, 0x10000 };
	for (size_t i = 0; i < sizeof(bad_adv) / sizeof(bad_adv[0]); i++) {
		errno = 0;
		int rc = umapd_advise(r, 4 * ps, bad_adv[i]);
		if (rc != -1 || errno != EINVAL)
			t_fail("umapd_advise(region, advice %d): expected -1 EINVAL, got %d %s", bad_adv[i], rc,
			       t_errname(errno));
		nchecks++;
	}
	for (int adv = 0; adv <= 4; adv++) {
		t_step("umapd_advise advice %d", adv);
		T_ERR(umapd_advise(NULL, ps, adv), EINVAL);
		T_ERR(umapd_advise(r, SIZE_MAX, adv), EINVAL);
		T_ERR(umapd_advise(heap, 4 * ps, adv), ENOMEM);
		T_ERR(umapd_advise(anon, ps, adv), ENOMEM);
		T_OK(umapd_advise(r, 4 * ps, adv));
		nchecks += 5;
	}

	/* statistics */
	t_step("statistics bad arguments");
	struct umapd_stats s;
	T_ERR(umapd_stats(NULL), EFAULT);
	T_ERR(umapd_region_stats(r, NULL), EFAULT);
	T_ERR(umapd_region_stats(stackbuf, &s), EINVAL);
	T_ERR(umapd_region_stats(heap, &s), EINVAL);
	T_ERR(umapd_region_stats(NULL, &s), EINVAL);
	T_OK(umapd_region_stats(r + 3 * ps, &s));
	nchecks += 6;
	errno = 0;
	size_t got = umapd_region_page_size(stackbuf);
	T_CHECK(got == 0 && errno == EINVAL, "umapd_region_page_size(stack): got %zu errno %s", got,
		t_errname(errno));
	errno = 0;
	got = umapd_region_page_size(NULL);
	T_CHECK(got == 0 && errno == EINVAL, "umapd_region_page_size(NULL): got %zu errno %s", got,
		t_errname(errno));
	got = umapd_region_page_size(r + 4 * ps - 1);
	T_CHECK(got == ps, "umapd_region_page_size(last byte): got %zu, want %zu", got, ps);
	nchecks += 3;

	/* budget */
	t_step("umapd_set_bufsize bad values");
	size_t before = umapd_get_bufsize();
	T_ERR(umapd_set_bufsize(0), EINVAL);
	T_ERR(umapd_set_bufsize(1), EINVAL);
	T_ERR(umapd_set_bufsize(ps - 1), EINVAL);
	T_CHECK(umapd_get_bufsize() == before, "a rejected umapd_set_bufsize changed the budget: %zu -> %zu",
		before, umapd_get_bufsize());
	nchecks += 4;

	/* unmap twice */
	t_step("double unmap");
	t_unmap(r);
	T_ERR(umapd_unmap(r), EINVAL);
	T_ERR(umapd_flush(r, ps), ENOMEM);
	T_ERR(umapd_region_stats(r, &s), EINVAL);
	nchecks += 3;

	munmap(anon, ps);
	free(heap);
	close(fd);
}

int main(void)
{
	t_init("api_args", 60);
	t_umapd_start();
	T_OK(umapd_init()); /* idempotent */
	check_map();
	check_ranges();
	check_write_only();
	struct umapd_stats s;
	t_stats(&s);
	T_CHECK(s.regions == 0, "process stats: %llu regions still mapped, want 0",
		(unsigned long long)s.regions);
	t_pass("%d bad-argument and boundary checks gave the documented errno", nchecks);
}
