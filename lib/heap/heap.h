/*
 * lib/heap - the umapd heap: a jemalloc arena whose memory is one umapd
 * region backed by an unlinked, growable swap file.  umapd_malloc() and
 * friends (heap_api.c) and the preload library's heap mode use it.
 *
 * The region is reserved once, UMAPD_HEAP_SIZE bytes of address space
 * (default 256G), and handed out to jemalloc from the bottom up; jemalloc
 * keeps and reuses what it frees.  Freed memory is dead: its pages are
 * dropped without being written back, and its blocks in the swap file are
 * punched out, so it is not read again either (heap.c says how far that
 * holds).
 */
#ifndef UMAPD_HEAP_H
#define UMAPD_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Start the heap once (UMAPD_HEAP_DIR, UMAPD_HEAP_SIZE); later calls return
 * the first call's result.  0 or a negative errno, logged once. */
int heap_start(void);

/* From the heap; NULL with errno ENOMEM (or the start error). align 0 or
 * a power of two. */
void *heap_alloc(size_t size, size_t align, bool zero);
/* p must be a heap pointer (heap_owns). */
void heap_free(void *p);
void *heap_realloc(void *p, size_t size);
size_t heap_usable(const void *p);

/* Is p inside the heap's reservation?  Lock-free. */
bool heap_owns(const void *p);

/* Bytes handed to jemalloc so far (for statistics). */
uint64_t heap_reserved_bytes(void);

#endif
