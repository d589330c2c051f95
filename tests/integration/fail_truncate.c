/*
 * fail_truncate - a file truncated under its mapping (issue 5, read
 * errors): pages that lay inside the file at map time and now lie wholly
 * past its end must raise SIGBUS when next read, as they do on a shared
 * mmap of the file, not read zeros; the page that holds the new end reads
 * the file's bytes and then zeros (the kernel's rule for the last page);
 * pages still inside the file read their bytes.  Each I/O engine is tried
 * (region opts.io_engine), since each reads the store its own way.
 *
 * Registered as known-issue: the file store reads a short file as zeros
 * (read_full in lib/store/store_file.c; the asynchronous engines likewise
 * zero-fill a short read), so today the truncated pages read zeros.
 */
#include "umapd_test.h"
#include "sigcatch.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 16
#define SEED 21

int main(void)
{
	t_init("fail_truncate", 60);
	sc_install();
	t_umapd_start();
	const size_t ps = t_sys_page(), len = NPAGES * ps, cut = 8 * ps + ps / 2;
	static const char *const names[] = { "", "io_uring", "aio", "psync" };
	char report[256] = "";

	for (int eng = 1; eng <= 3; eng++) {
		t_step("%s: map, truncate, touch", names[eng]);
		int fd = t_tmpfile(NULL);
		t_write_file_pat(fd, 0, len, SEED);
		struct umapd_region_opts o;
		memset(&o, 0, sizeof(o));
		o.read_ahead = -1;
		o.io_engine = eng;
		uint8_t *p = umapd_map(NULL, len, PROT_READ, 0, fd, 0, &o);
		T_CHECK(p != NULL, "%s: umapd_map: %s", names[eng], t_errname(errno));
		t_check_pat("page 0 before the truncate", p, ps, 0, SEED);
		t_ftruncate(fd, (off_t)cut);

		uint8_t b = 0xEE;
		t_check_pat("page 1, still inside the file", p + ps, ps, ps, SEED);
		int sig = sc_read(p + 8 * ps, &b);
		T_CHECK(sig == 0, "%s: the page holding the new end raised signal %d", names[eng], sig);
		t_check_pat("the page holding the new end, before it", p + 8 * ps, ps / 2, 8 * ps, SEED);
		t_check_zero("the page holding the new end, past it", p + cut, 9 * ps - cut, cut);
		for (size_t i = 9; i < NPAGES; i++) {
			sig = sc_read(p + i * ps + 5, &b);
			if (sig == 0) {
				int zero = 1;
				for (size_t k = 0; k < ps; k++)
					zero &= p[i * ps + k] == 0;
				t_fail("%s: page %zu, inside the file at map time and past its end now, read %s "
				       "instead of raising SIGBUS", names[eng], i,
				       zero ? "zeros" : "data");
			}
			T_CHECK(sig == SIGBUS, "%s: page %zu raised signal %d, want SIGBUS", names[eng], i, sig);
		}
		T_CHECK(umapd_unmap(p) == 0, "%s: umapd_unmap: %s", names[eng], t_errname(errno));
		close(fd);
		snprintf(report + strlen(report), sizeof(report) - strlen(report), "%s%s", eng > 1 ? ", " : "",
			 names[eng]);
	}
	t_pass("truncated under the mapping (%s): pages past the new end SIGBUS, the last page reads its bytes "
	       "then zeros, pages inside read their bytes", report);
}
