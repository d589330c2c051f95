/*
 * What our symbols hide, and how to live before we know it.
 *
 * The dynamic linker binds the program's malloc, mmap, write, ... to us
 * from the first call, before any constructor has run; dlsym itself may
 * call calloc (for its error buffer), which is us again.  So resolution is
 * lazy and reentrant: the thread that resolves marks itself, and its
 * nested allocations come from a small static pool that is never freed
 * (free() recognises its pointers and ignores them).  Other threads wait
 * the few microseconds it takes.
 */
#include <dlfcn.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "preload/preload.h"

struct pre_real pre_real;
__thread struct pre_thread pre_self __attribute__((tls_model("initial-exec")));

/* 0 not resolved, 1 resolving, 2 resolved. */
static _Atomic int resolved;

#define RESOLVE(name) (*(void **)&pre_real.name = dlsym(RTLD_NEXT, #name))

void pre_resolve(void)
{
	int expect = 0;

	if (atomic_load_explicit(&resolved, memory_order_acquire) == 2)
		return;
	if (pre_self.resolving)
		return; /* nested, from inside dlsym: callers fall back */
	if (!atomic_compare_exchange_strong_explicit(&resolved, &expect, 1, memory_order_acq_rel,
						     memory_order_acquire)) {
		while (atomic_load_explicit(&resolved, memory_order_acquire) != 2)
			sched_yield();
		return;
	}
	pre_self.resolving = true;
	/* Allocator first: dlsym's own allocations then find it. */
	RESOLVE(malloc);
	RESOLVE(calloc);
	RESOLVE(realloc);
	RESOLVE(free);
	RESOLVE(posix_memalign);
	RESOLVE(aligned_alloc);
	RESOLVE(memalign);
	RESOLVE(valloc);
	RESOLVE(pvalloc);
	RESOLVE(malloc_usable_size);
	RESOLVE(mmap);
	RESOLVE(munmap);
	RESOLVE(msync);
	RESOLVE(mremap);
	RESOLVE(madvise);
	RESOLVE(mprotect);
	RESOLVE(write);
	RESOLVE(pwrite);
	RESOLVE(writev);
	RESOLVE(pwritev);
	RESOLVE(pwritev2);
	RESOLVE(read);
	RESOLVE(pread);
	RESOLVE(readv);
	RESOLVE(preadv);
	RESOLVE(preadv2);
	RESOLVE(ftruncate);
	RESOLVE(fallocate);
	RESOLVE(pthread_create);
	pre_self.resolving = false;
	atomic_store_explicit(&resolved, 2, memory_order_release);
}

/* --- the start-up pool ---------------------------------------------------------- */

#define BOOT_BYTES ((size_t)256 << 10)
#define BOOT_HDR 16 /* the size, kept just before each block */

static _Alignas(64) unsigned char boot_pool[BOOT_BYTES];
static _Atomic size_t boot_used;

void *pre_boot_alloc(size_t size, size_t align)
{
	size_t at, start, end;

	if (align < BOOT_HDR)
		align = BOOT_HDR;
	if (align > 4096 || size > BOOT_BYTES)
		return NULL;
	at = atomic_load_explicit(&boot_used, memory_order_relaxed);
	do {
		start = (at + BOOT_HDR + align - 1) & ~(align - 1);
		end = start + ((size + BOOT_HDR - 1) & ~(size_t)(BOOT_HDR - 1));
		if (end > BOOT_BYTES)
			return NULL;
	} while (!atomic_compare_exchange_weak_explicit(&boot_used, &at, end, memory_order_relaxed,
						       memory_order_relaxed));
	*(size_t *)(boot_pool + start - BOOT_HDR) = size;
	return boot_pool + start; /* static storage: already zero */
}

bool pre_boot_owns(const void *p)
{
	return (const unsigned char *)p >= boot_pool && (const unsigned char *)p < boot_pool + BOOT_BYTES;
}

size_t pre_boot_size(const void *p)
{
	return *(const size_t *)((const unsigned char *)p - BOOT_HDR);
}

/* --- log --------------------------------------------------------------------------- */

void pre_log(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n = snprintf(line, sizeof(line), "umapd-preload[%d]: ", (int)getpid());

	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* The raw system call: our write() wrapper may want the files lock. */
	pre_enter();
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nowhere else to say it */
	}
	pre_leave();
}
