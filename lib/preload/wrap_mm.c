/*
 * The exported mmap family.  Each wrapper passes the call straight on
 * unless file mode is on, the calling thread is the program's own (not the
 * engine's, not ours inside a umapd call) and the range or file is one we
 * page; files.c does the rest.
 */
#include <errno.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload/preload.h"

#define EXPORT __attribute__((visibility("default")))

static bool files_active(void)
{
	return !pre_bypass() && atomic_load_explicit(&pre.ready, memory_order_acquire) == 2 &&
	       pre.files_on && !pre.child;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	pre_resolve();
	if (!pre_real.mmap) /* only while dlsym runs */
		return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
	if (fd < 0 || (flags & MAP_ANONYMOUS) || !files_active())
		return pre_real.mmap(addr, len, prot, flags, fd, off);
	return pre_files_mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
	__attribute__((alias("mmap")));

EXPORT int munmap(void *addr, size_t len)
{
	int ret;

	pre_resolve();
	if (!pre_real.munmap)
		return (int)syscall(SYS_munmap, addr, len);
	if (!files_active() || pre_files_munmap(addr, len, &ret))
		return pre_real.munmap(addr, len);
	return ret;
}

EXPORT int msync(void *addr, size_t len, int flags)
{
	int ret;

	pre_resolve();
	if (!pre_real.msync)
		return (int)syscall(SYS_msync, addr, len, flags);
	if (!files_active() || pre_files_msync(addr, len, flags, &ret))
		return pre_real.msync(addr, len, flags);
	return ret;
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	int ret;

	pre_resolve();
	if (!pre_real.madvise)
		return (int)syscall(SYS_madvise, addr, len, advice);
	if (!files_active() || pre_files_madvise(addr, len, advice, &ret))
		return pre_real.madvise(addr, len, advice);
	return ret;
}

EXPORT int mprotect(void *addr, size_t len, int prot)
{
	int ret;

	pre_resolve();
	if (!pre_real.mprotect)
		return (int)syscall(SYS_mprotect, addr, len, prot);
	if (!files_active() || pre_files_mprotect(addr, len, prot, &ret))
		return pre_real.mprotect(addr, len, prot);
	return ret;
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL, *ret;
	va_list ap;

	if (flags & MREMAP_FIXED) {
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	pre_resolve();
	if (!pre_real.mremap)
		return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
	if (!files_active() || pre_files_mremap(old, old_len, new_len, flags, &ret))
		return pre_real.mremap(old, old_len, new_len, flags, new_addr);
	return ret;
}
