/*
 * umap_consumer.c - an LLNL UMap program built against an installed umapd:
 * <umap/umap.h> and the umapd::umap target.  It checks the UMap interface
 * links and keeps its contract without starting the engine.
 */
#include <errno.h>
#include <stdio.h>

#include <umap/umap.h>

int main(void)
{
	unsigned long long ps = (unsigned long long)umapcfg_get_umap_page_size();

	errno = 0;
	if (umap(NULL, 4096, PROT_READ, 0, 0, 0) != UMAP_FAILED || errno != EINVAL) {
		fprintf(stderr, "FAIL umap consumer: umap without UMAP_PRIVATE: errno %d\n", errno);
		return 1;
	}
	if (ps == 0 || umapcfg_get_max_pages_in_buffer() == 0) {
		fprintf(stderr, "FAIL umap consumer: page size %llu\n", ps);
		return 1;
	}
	printf("ok find_package/umapd::umap: <umap/umap.h>, page size %llu, %llu pages in buffer\n",
	       ps, (unsigned long long)umapcfg_get_max_pages_in_buffer());
	return 0;
}
