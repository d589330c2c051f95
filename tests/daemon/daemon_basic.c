/*
 * daemon.basic - one client of the daemon: a file four times the budget
 * read through a region (every byte checked), written, flushed and
 * unmapped; the file holds what was written, the daemon stayed within its
 * budget, and a read-only region of the same file sees the writes.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dtest.h"
#include "umapd_test.h"

int main(void)
{
	struct dt_daemon d;
	struct proto_status st;
	char path[256];
	size_t len = t_scaled(16 << 20, 1 << 20), half = len / 2;
	uint8_t *p, *q;
	int fd, fdr;

	t_init("daemon.basic", 60);
	char budget[32];

	/* A quarter of the file, whatever the scale. */
	snprintf(budget, sizeof(budget), "%zu", len / 4);
	t_step("start the daemon");
	dt_daemon_start(&d, budget, NULL);
	dt_tmpfile(path, len, 1);
	fd = open(path, O_RDWR);
	fdr = open(path, O_RDONLY);
	T_CHECK(fd >= 0 && fdr >= 0, "open %s", path);

	t_step("connect");
	if (umapd_connect(d.sock) != 0) {
		if (errno == ENOTSUP || errno == EPERM)
			t_skip("userfaultfd lacks shmem minor faults or write protection here: %s", t_errname(errno));
		t_fail("umapd_connect: %s", t_errname(errno));
	}
	T_OK(umapd_connect(d.sock)); /* idempotent */
	p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	t_step("read %zu bytes through a budget of %s bytes", len, budget);
	t_check_pat("first read", p, len, 0, 1);
	dt_status(&d, &st);
	T_CHECK(st.resident <= st.budget, "resident %llu over the budget %llu", (unsigned long long)st.resident,
		(unsigned long long)st.budget);
	T_CHECK(st.total.fills >= len / 4096, "only %llu fills for %zu bytes", (unsigned long long)st.total.fills, len);
	T_CHECK(st.total.evictions > 0, "no evictions with a file 4x the budget");

	t_step("page size, prefetch and advice on a daemon region");
	T_CHECK(umapd_region_page_size(p + 12345) == 4096, "umapd_region_page_size: %zu", umapd_region_page_size(p + 12345));
	T_OK(umapd_prefetch(p, len));
	T_OK(umapd_advise(p, len, UMAPD_ADV_SEQUENTIAL));
	t_step("write the first half");
	t_fill_pat(p, half, 0, 2);
	t_step("read-only region of the same file sees the writes");
	q = t_map(len, PROT_READ, 0, fdr, 0, 0, 0);
	t_check_pat("read-only region, written half", q, half, 0, 2);
	t_check_pat("read-only region, other half", q + half, len - half, half, 1);
	t_step("flush");
	T_OK(umapd_flush(p, len));
	t_check_file_pat("file after flush", fd, 0, half, 2);
	t_check_file_pat("file after flush, other half", fd, (off_t)half, len - half, 1);
	dt_status(&d, &st);
	T_CHECK(st.dirty == 0, "%llu bytes still dirty after the flush", (unsigned long long)st.dirty);
	T_CHECK(st.resident <= st.budget, "resident %llu over the budget %llu", (unsigned long long)st.resident,
		(unsigned long long)st.budget);

	t_step("write again, evict, read back");
	memset(p + 4096, 0xab, 4096);
	T_OK(umapd_evict(p, len));
	T_CHECK(p[4096] == 0xab && p[8191] == 0xab, "evicted write lost: %#x", p[4096]);
	t_step("unmap both");
	T_OK(umapd_unmap(q));
	T_OK(umapd_unmap(p));
	{
		uint8_t b[4096];

		t_pread_all(fd, b, sizeof(b), 4096);
		for (size_t i = 0; i < sizeof(b); i++)
			T_CHECK(b[i] == 0xab, "file offset %zu: %#x after unmap", 4096 + i, b[i]);
	}
	T_ERR(umapd_unmap(p), EINVAL);
	{
		/* Our own account at the daemon is empty again (not just the node's). */
		int s = dt_admin_open(&d);
		struct proto_msg m;
		struct proto_rx rx;

		proto_rx_init(&rx);
		T_CHECK(dt_request(s, PT_CLIENTS, NULL, 0, &m, &rx) == 0, "CLIENTS");
		for (uint32_t i = 0; i < m.count; i++) {
			struct proto_client_info ci;

			memcpy(&ci, (const char *)m.list + i * sizeof(ci), sizeof(ci));
			T_CHECK(ci.resident == 0, "client %u (pid %u) still charged %llu bytes after unmapping everything",
				ci.id, ci.pid, (unsigned long long)ci.resident);
		}
		proto_rx_free(&rx);
		close(s);
	}
	dt_status(&d, &st);
	T_CHECK(st.regions == 0 && st.resident == 0, "after unmapping all: %llu regions, %llu bytes resident",
		(unsigned long long)st.regions, (unsigned long long)st.resident);
	dt_daemon_cleanup(&d);
	t_pass("%zu bytes through a %s-byte daemon budget: read, written, shared with a read-only region, flushed, "
	       "evicted, unmapped; file exact", len, budget);
}
