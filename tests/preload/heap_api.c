/*
 * umapd_malloc and friends for a linked program: a heap several times the
 * budget keeps its contents through eviction, realloc keeps the prefix,
 * calloc gives zeros, freed memory is reusable, bad pointers get EINVAL.
 */
#include <stdlib.h>
#include <string.h>

#include "umapd_test.h"

int main(void)
{
	size_t budget = t_scaled((size_t)8 << 20, (size_t)1 << 20), n = 4 * budget;
	struct umapd_stats s;
	unsigned char *a, *b, *z;
	int local;

	t_init("heap_api", 120);
	t_set_bufsize(budget);
	t_step("umapd_malloc");
	a = umapd_malloc(n);
	if (!a) {
		if (errno == EPERM || errno == ENOSYS)
			t_skip("userfaultfd not available here (umapd_malloc: %s)", t_errname(errno));
		t_fail("umapd_malloc(%zu): %s", n, t_errname(errno));
	}
	t_fill_pat(a, n, 0, 11);
	t_check_pat("umapd_malloc contents after eviction", a, n, 0, 11);

	t_step("umapd_realloc");
	a = umapd_realloc(a, 2 * n);
	T_CHECK(a, "umapd_realloc grow: %s", t_errname(errno));
	t_check_pat("prefix after realloc", a, n, 0, 11);
	t_fill_pat(a + n, n, n, 11);
	t_check_pat("whole after realloc", a, 2 * n, 0, 11);

	t_step("umapd_calloc");
	z = umapd_calloc(n / 64, 64);
	T_CHECK(z, "umapd_calloc: %s", t_errname(errno));
	t_check_zero("umapd_calloc", z, n, 0);

	t_step("free and reuse");
	umapd_free(a);
	b = umapd_malloc(n);
	T_CHECK(b, "umapd_malloc after free: %s", t_errname(errno));
	memset(b, 0x5a, n);
	for (size_t i = 0; i < n; i += 4096)
		T_CHECK(b[i] == 0x5a, "reused block at %zu", i);
	umapd_free(b);
	umapd_free(z);
	umapd_free(NULL);

	t_step("errors");
	T_ERR_NULL(umapd_realloc(&local, 10), EINVAL);
	T_ERR_NULL(umapd_calloc(SIZE_MAX / 2, 4), ENOMEM);
	umapd_free(&local); /* logged and ignored */

	t_stats(&s);
	T_CHECK(s.evictions > 0 && s.dirty_evictions > 0, "no eviction: evictions %llu", (unsigned long long)s.evictions);
	T_CHECK(s.resident_bytes <= budget + budget / 10, "resident %llu above budget %zu",
		(unsigned long long)s.resident_bytes, budget);
	t_pass("%zu MiB through a %zu MiB budget: %llu faults, %llu evictions (%llu dirty)", 2 * n >> 20,
	       budget >> 20, (unsigned long long)s.faults, (unsigned long long)s.evictions,
	       (unsigned long long)s.dirty_evictions);
}
