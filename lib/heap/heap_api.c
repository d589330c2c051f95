/*
 * umapd_malloc() and friends: the umapd heap for programs linked with
 * libumapd.  Argument checks and errno at the boundary; heap.c does the work.
 */
#include <errno.h>
#include <stdint.h>

#include "heap/heap.h"
#include "umapd.h"
#include "util/log.h"

#define API __attribute__((visibility("default")))

API void *umapd_malloc(size_t size)
{
	return heap_alloc(size, 0, false);
}

API void *umapd_calloc(size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size) {
		errno = ENOMEM;
		return NULL;
	}
	return heap_alloc(n * size, 0, true);
}

API void *umapd_realloc(void *p, size_t size)
{
	if (!p)
		return heap_alloc(size, 0, false);
	if (!heap_owns(p)) {
		errno = EINVAL;
		return NULL;
	}
	if (size == 0) {
		heap_free(p);
		return NULL;
	}
	return heap_realloc(p, size);
}

API void umapd_free(void *p)
{
	if (!p)
		return;
	if (!heap_owns(p)) {
		/* Not ours: freeing it elsewhere could corrupt another heap. */
		ulog_error("umapd_free(%p): not a pointer from umapd_malloc; ignored", p);
		return;
	}
	heap_free(p);
}
