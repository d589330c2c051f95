/*
 * discard - umapd_discard drops data without writing it back.
 *
 *   a. dirty pages discarded read the file's data again, count as evictions,
 *      and are never written (bytes_written stays 0); the others flush as
 *      usual
 *   b. a range that starts or ends inside a page drops only the pages wholly
 *      inside it
 *   c. a write-back in flight (a store that takes 300 ms per write) is waited
 *      for: when umapd_discard returns, the write has reached the file, so a
 *      hole punched next cannot be undone by it
 *   d. bad arguments: EINVAL, ENOMEM
 */
#include "umapd_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define NP 64

static uint8_t *flush_addr;
static size_t flush_len;

static void *flusher(void *arg)
{
	(void)arg;
	if (umapd_flush(flush_addr, flush_len) != 0)
		t_fail("c: umapd_flush in the flushing thread: %s", t_errname(errno));
	return NULL;
}

int main(void)
{
	size_t ps = t_sys_page(), len = NP * ps;
	struct umapd_stats s0, s1;
	uint8_t *page = malloc(ps);

	t_init("discard", 60);
	t_umapd_start();

	t_step("a. discard dirty pages 8..23");
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, len, 1);
	uint8_t *p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, -1);
	t_fill_pat(p, len, 0, 2);
	T_OK(umapd_region_stats(p, &s0));
	T_OK(umapd_discard(p + 8 * ps, 16 * ps));
	T_OK(umapd_region_stats(p, &s1));
	T_CHECK(s1.evictions - s0.evictions == 16, "a: %llu evictions, want 16",
		(unsigned long long)(s1.evictions - s0.evictions));
	T_CHECK(s1.dirty_bytes == s0.dirty_bytes - 16 * ps, "a: dirty bytes %llu, want %llu",
		(unsigned long long)s1.dirty_bytes, (unsigned long long)(s0.dirty_bytes - 16 * ps));
	T_CHECK(s1.bytes_written == 0, "a: %llu bytes written by a discard", (unsigned long long)s1.bytes_written);
	t_check_pat("a: discarded pages read the file again", p + 8 * ps, 16 * ps, 8 * ps, 1);
	t_check_pat("a: pages before kept", p, 8 * ps, 0, 2);
	t_check_pat("a: pages after kept", p + 24 * ps, len - 24 * ps, 24 * ps, 2);

	t_step("b. a range starting and ending inside pages");
	T_OK(umapd_discard(p + 30 * ps + 1, 2 * ps));
	t_check_pat("b: page 30 (partly in the range) kept", p + 30 * ps, ps, 30 * ps, 2);
	t_check_pat("b: page 31 (wholly in it) dropped", p + 31 * ps, ps, 31 * ps, 1);
	t_check_pat("b: page 32 (partly in the range) kept", p + 32 * ps, ps, 32 * ps, 2);
	T_OK(umapd_flush(p, len));
	t_check_file_pat("a/b: file, pages 0-7", fd, 0, 8 * ps, 2);
	t_check_file_pat("a/b: file, pages 8-23", fd, 8 * ps, 16 * ps, 1);
	t_check_file_pat("a/b: file, pages 24-30", fd, 24 * ps, 7 * ps, 2);
	t_check_file_pat("a/b: file, page 31", fd, 31 * ps, ps, 1);
	t_check_file_pat("a/b: file, pages 32-63", fd, 32 * ps, 32 * ps, 2);
	t_unmap(p);

	t_step("c. a write-back in flight is waited for");
	T_OK(umapd_config_set("UMAPD_FAULT_INJECT", "latency_us=300000"));
	int fd2 = t_tmpfile(NULL);
	t_write_file_pat(fd2, 0, 4 * ps, 3);
	uint8_t *q = t_map(4 * ps, PROT_READ | PROT_WRITE, 0, fd2, 0, 0, -1);
	T_OK(umapd_config_set("UMAPD_FAULT_INJECT", ""));
	t_fill_pat(q, ps, 0, 4);                  /* page 0 dirty (its fill took 300 ms) */
	flush_addr = q;
	flush_len = ps;
	pthread_t t;
	T_CHECK(pthread_create(&t, NULL, flusher, NULL) == 0, "pthread_create");
	usleep(100 * 1000);                        /* the flush's write is sleeping in the store */
	T_OK(umapd_discard(q, ps));
	t_pread_all(fd2, page, ps, 0);
	t_check_pat("c: the file when umapd_discard returned", page, ps, 0, 4);
	pthread_join(t, NULL);
	t_unmap(q);

	t_step("d. bad arguments");
	T_ERR(umapd_discard(NULL, ps), EINVAL);
	T_ERR(umapd_discard(page, 0), EINVAL);
	T_ERR(umapd_discard((void *)(UINTPTR_MAX - 10), 100), EINVAL);
	T_ERR(umapd_discard(page, ps), ENOMEM);
	free(page);
	t_pass("discarded pages dropped unwritten and read the store again, partial pages kept, an in-flight "
	       "write-back waited for, bad arguments refused");
}
