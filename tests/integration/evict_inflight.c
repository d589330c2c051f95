/*
 * evict_inflight - umapd_evict waits for a fill in flight and drops it.
 *
 * The preload library keeps a file's pwrite() and its mapping coherent by
 * calling umapd_evict on the written range: a page read from the store
 * before the write must not be installed after the evict returned.  Here
 * the store answers each read after 300 ms (UMAPD_FAULT_INJECT latency),
 * a thread faults on page 0, and while that fill is in
 * flight the test writes new bytes to the file and calls umapd_evict.
 * When umapd_evict returns, the page must have been dropped (one eviction
 * counted), and every later read sees the new bytes.
 */
#include "umapd_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static uint8_t *region;
static _Atomic int first_byte = -1;

static void *toucher(void *arg)
{
	(void)arg;
	atomic_store(&first_byte, region[0]); /* faults; the fill takes 300 ms */
	return NULL;
}

int main(void)
{
	size_t ps = t_sys_page();
	int fd = t_tmpfile(NULL);
	pthread_t t;
	struct umapd_stats s;
	uint8_t *fresh = malloc(ps);

	t_init("evict_inflight", 60);
	t_write_file_pat(fd, 0, 4 * ps, 1);
	T_OK(umapd_config_set("UMAPD_FAULT_INJECT", "latency_us=300000"));
	region = t_map(4 * ps, PROT_READ, 0, fd, 0, 0, -1);
	t_step("fault on page 0 from a thread (slow store)");
	T_CHECK(pthread_create(&t, NULL, toucher, NULL) == 0, "pthread_create");
	usleep(100 * 1000);
	t_step("write new bytes to the file, then umapd_evict page 0");
	t_fill_pat(fresh, ps, 0, 2);
	t_pwrite_all(fd, fresh, ps, 0);
	T_OK(umapd_evict(region, ps));
	T_OK(umapd_region_stats(region, &s));
	T_CHECK(s.evictions >= 1, "umapd_evict returned with the fill in flight not dropped (evictions %llu)",
		(unsigned long long)s.evictions);
	pthread_join(t, NULL);
	t_step("read page 0 again");
	t_check_pat("page 0 after the write and umapd_evict", region, ps, 0, 2);
	t_unmap(region);
	free(fresh);
	t_pass("umapd_evict waited for the fill in flight and dropped it; the next read saw the file's new bytes");
}
