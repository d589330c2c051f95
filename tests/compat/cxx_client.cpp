// compat.cxx - a C++ program written for LLNL UMap: it includes
// <umap/umap.h> (UMap's install path), uses only UMap's C interface and is
// linked with libumapd (plus the tests' C helpers for the watchdog and the
// temporary file).  It writes a file through a region, flushes, unmaps and
// checks every word with pread.
#include <umap/umap.h>

#include <cerrno>
#include <cstdint>
#include <vector>

extern "C" {
#include "umapd_test.h"
}

int main()
{
	t_init("compat.cxx", 50);
	t_step("umap a file read-write from C++");
	int fd = t_tmpfile(nullptr);
	const std::size_t ps = umapcfg_get_umap_page_size();
	const std::size_t n = 64 * ps / sizeof(std::uint64_t), bytes = n * sizeof(std::uint64_t);
	t_ftruncate(fd, static_cast<off_t>(bytes));
	void *p = umap(nullptr, bytes, PROT_READ | PROT_WRITE, UMAP_PRIVATE, fd, 0);
	if (p == UMAP_FAILED) {
		if (errno == EPERM || errno == ENOSYS)
			t_skip("userfaultfd not available here (%s)", t_errname(errno));
		t_fail("umap: %s", t_errname(errno));
	}

	t_step("write every word, umap_flush, umap_prefetch, uunmap");
	auto *keys = static_cast<std::uint64_t *>(p);
	for (std::size_t i = 0; i < n; i++)
		keys[i] = i * 0x9E3779B97F4A7C15ull;
	T_OK(umap_flush());
	umap_prefetch_item item = { keys };
	umap_prefetch(1, &item);
	T_OK(uunmap(p, bytes));

	t_step("read the file back with pread");
	std::vector<std::uint64_t> back(n);
	t_pread_all(fd, back.data(), bytes, 0);
	for (std::size_t i = 0; i < n; i++)
		T_CHECK(back[i] == i * 0x9E3779B97F4A7C15ull, "word %zu is %llx", i,
			static_cast<unsigned long long>(back[i]));
	t_pass("C++ through <umap/umap.h>, %zu words written, flushed, unmapped, read back exact; "
	       "page %zu, %llu fillers", n, ps,
	       static_cast<unsigned long long>(umapcfg_get_num_fillers()));
}
