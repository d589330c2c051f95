/*
 * map_store_inject - write failures through the fault-injection store:
 * with write_error=EIO, umapd_flush and umapd_unmap return -1/EIO, the
 * region keeps every byte (resident, dirty, readable and writable) and the
 * file is untouched; once the injection is cleared a flush succeeds and the
 * file holds the right bytes.  With enospc_after, flush fails with ENOSPC
 * until the budget is raised (umapd_store_inject_set), then progress
 * resumes.  latency_us slows faults down and they still complete.  Then
 * UMAPD_FAULT_INJECT wraps every region mapped with umapd_map (in a child).
 */
#include "umapd_test.h"

#include <umapd_store.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 256
#define DIRTY 64

static int nchecks;

static void counters(struct umapd_store *s, struct umapd_inject_counters *n)
{
	memset(n, 0, sizeof(*n));
	T_OK(umapd_store_inject_counters(s, n));
}

/* Run in a child (t_reexec) with UMAPD_FAULT_INJECT=write_error=EIO. */
static int env_mode(void)
{
	t_init("map_store_inject_env", 60);
	t_umapd_start();
	const size_t ps = t_sys_page(), len = 16 * ps;
	char v[300];
	T_CHECK(umapd_config_get("UMAPD_FAULT_INJECT", v, sizeof(v)) > 0 && strcmp(v, "write_error=EIO") == 0,
		"UMAPD_FAULT_INJECT reads back as \"%s\"", v);
	int fd = t_tmpfile(NULL);
	t_write_file_pat(fd, 0, len, 1);
	uint8_t *p = t_map(len, PROT_READ | PROT_WRITE, 0, fd, 0, 0, 0);
	t_check_pat("reads pass", p, len, 0, 1);
	t_fill_pat(p, len, 0, 2);
	T_ERR(umapd_flush(p, len), EIO);
	T_ERR(umapd_unmap(p), EIO);
	t_check_pat("the region after failed writes", p, len, 0, 2);
	t_check_file_pat("the file after failed writes", fd, 0, len, 1);
	T_ERR(umapd_config_set("UMAPD_FAULT_INJECT", "write_error=EWHAT"), EINVAL);
	T_OK(umapd_config_set("UMAPD_FAULT_INJECT", ""));
	int fd2 = t_tmpfile(NULL);
	uint8_t *q = t_map(len, PROT_READ | PROT_WRITE, UMAPD_GROWABLE, fd2, 0, 0, 0);
	t_fill_pat(q, len, 0, 3);
	T_OK(umapd_flush(q, len));
	t_check_file_pat("a region mapped after clearing UMAPD_FAULT_INJECT", fd2, 0, len, 3);
	t_unmap(q);
	/* The first region's pages cannot be written back; at exit umapd logs
	 * that they are lost, which is what this process asked for. */
	t_pass("UMAPD_FAULT_INJECT: umapd_map regions fail writes with EIO, keep their bytes; bad spec refused; "
	       "cleared for later regions");
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "env") == 0)
		return env_mode();
	t_init("map_store_inject", 90);
	t_umapd_start();
	const size_t ps = t_sys_page(), len = NPAGES * ps;
	t_set_bufsize(64u << 20);

	char path[256];
	int fd = t_tmpfile(path);
	t_write_file_pat(fd, 0, len, 1);
	struct umapd_store *f = NULL, *s = NULL;
	T_OK(umapd_store_file(fd, 0, &f));
	T_ERR(umapd_store_inject(f, "bogus=1", &s), EINVAL);
	T_OK(umapd_store_inject(f, "", &s));
	T_ERR(umapd_store_inject(f, "", &s), EINVAL); /* f is s's now */
	T_ERR(umapd_store_inject_set(f, ""), EINVAL);  /* not an injection store */
	uint8_t *p = umapd_map_store(NULL, len, PROT_READ | PROT_WRITE, 0, s, 0, NULL);
	T_CHECK(p != NULL, "umapd_map_store(inject over file): %s", t_errname(errno));
	nchecks += 4;

	t_step("write_error=EIO: flush and unmap fail, data stays");
	t_fill_pat(p, DIRTY * ps, 0, 2);
	T_OK(umapd_store_inject_set(s, "write_error=EIO"));
	T_ERR(umapd_flush(p, len), EIO);
	struct umapd_stats st;
	t_region_stats(p, &st);
	T_CHECK(st.dirty_bytes == DIRTY * ps, "dirty bytes after a failed flush %llu, want %zu",
		(unsigned long long)st.dirty_bytes, DIRTY * ps);
	T_CHECK(st.io_errors > 0, "io_errors not counted");
	t_check_pat("region after the failed flush", p, DIRTY * ps, 0, 2);
	t_check_file_pat("file after the failed flush", fd, 0, len, 1);
	T_ERR(umapd_unmap(p), EIO);
	t_check_pat("region after the failed unmap", p, DIRTY * ps, 0, 2);
	t_fill_pat(p + DIRTY * ps, ps, DIRTY * ps, 2); /* still writable */
	T_ERR(umapd_evict(p, len), EIO);
	t_check_pat("region after the failed evict", p, (DIRTY + 1) * ps, 0, 2);
	struct umapd_inject_counters n;
	counters(s, &n);
	T_CHECK(n.write_errors >= 3, "write_errors %llu", (unsigned long long)n.write_errors);
	nchecks += 6;

	t_step("injection cleared: flush succeeds, file right");
	T_OK(umapd_store_inject_set(s, ""));
	T_OK(umapd_flush(p, len));
	t_check_file_pat("file after the flush", fd, 0, (DIRTY + 1) * ps, 2);
	t_check_file_pat("file after the flush (untouched part)", fd, (DIRTY + 1) * ps, len - (DIRTY + 1) * ps, 1);
	t_region_stats(p, &st);
	T_CHECK(st.dirty_bytes == 0, "dirty after a good flush %llu", (unsigned long long)st.dirty_bytes);
	nchecks += 2;

	t_step("enospc_after: flush fails with ENOSPC until the budget is raised");
	counters(s, &n);
	char spec[80];
	snprintf(spec, sizeof(spec), "enospc_after=%llu", (unsigned long long)(n.bytes_written + 4 * ps));
	T_OK(umapd_store_inject_set(s, spec));
	t_fill_pat(p, DIRTY * ps, 0, 3);
	T_ERR(umapd_flush(p, len), ENOSPC);
	t_region_stats(p, &st);
	T_CHECK(st.dirty_bytes > 0, "nothing left dirty after ENOSPC");
	t_check_pat("region after ENOSPC", p, DIRTY * ps, 0, 3);
	snprintf(spec, sizeof(spec), "enospc_after=%llu", (unsigned long long)(n.bytes_written + 2 * len));
	T_OK(umapd_store_inject_set(s, spec));
	T_OK(umapd_flush(p, len));
	t_check_file_pat("file once space was freed", fd, 0, DIRTY * ps, 3);
	counters(s, &n);
	T_CHECK(n.enospc_errors > 0, "enospc_errors not counted");
	nchecks += 4;

	t_step("latency: faults served through a slow store");
	T_OK(umapd_evict(p, len));
	T_OK(umapd_store_inject_set(s, "latency_us=2000"));
	uint64_t t0 = t_now_ns();
	t_check_pat("pages read through a slow store", p, DIRTY * ps, 0, 3);
	uint64_t dt = t_now_ns() - t0;
	T_OK(umapd_store_inject_set(s, ""));
	counters(s, &n);
	T_CHECK(n.delays > 0 && dt >= 2000000, "latency_us: %llu delays, %llu ns", (unsigned long long)n.delays,
		(unsigned long long)dt);
	t_unmap(p);
	t_check_file_pat("file after unmap", fd, 0, DIRTY * ps, 3);
	nchecks += 2;

	t_step("UMAPD_FAULT_INJECT, in a child");
	const char *env[] = { "UMAPD_FAULT_INJECT=write_error=EIO", "UMAPD_LOG_LEVEL=error", NULL };
	char *err = NULL;
	int status = t_reexec("env", env, 60, &err);
	T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the UMAPD_FAULT_INJECT child: %s\n%s",
		t_wait_str(status), err ? err : "");
	free(err);
	nchecks++;
	close(fd);
	t_pass("%d checks: injected EIO keeps data (flush, unmap, evict fail; file untouched) and a later flush "
	       "writes it; ENOSPC until the budget is raised; latency; UMAPD_FAULT_INJECT", nchecks);
}
