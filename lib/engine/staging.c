/*
 * Staging areas: parking space for pages moved out of a region with
 * UFFDIO_MOVE during write-back (see wb_pin_check in evict.c).  An area is
 * private anonymous memory registered with our userfaultfd (UFFDIO_MOVE
 * only moves into a registered range, with the same protection and
 * registration as the source), never touched by any CPU, and kept on a
 * free list for the next write-back.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "engine/engine.h"
#include "util/log.h"

static pthread_mutex_t stage_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stage *stage_free; /* under stage_lock */
static struct stage *stage_all;  /* under stage_lock */

_Atomic bool eng_test_stage_fail;

int stage_get(struct stage **out)
{
	struct stage *s;
	void *mem;
	int ret;

	/* Tests only: no area to be had, as when registering one fails. */
	if (atomic_load_explicit(&eng_test_stage_fail, memory_order_relaxed))
		return -ENOMEM;
	pthread_mutex_lock(&stage_lock);
	s = stage_free;
	if (s)
		stage_free = s->next;
	pthread_mutex_unlock(&stage_lock);
	if (s) {
		*out = s;
		return 0;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	mem = mmap(NULL, STAGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED) {
		free(s);
		return -ENOMEM;
	}
	madvise(mem, STAGE_BYTES, MADV_DONTFORK);
	madvise(mem, STAGE_BYTES, MADV_NOHUGEPAGE);
	/* EAGAIN: an event is pending (mm changing); a filler reads it soon. */
	for (int tries = 0;; tries++) {
		ret = uffd_register(&eng.uffd, (uintptr_t)mem, STAGE_BYTES, eng.uffd.can_wp);
		if (ret != -EAGAIN || tries >= 1000)
			break;
		sched_yield();
	}
	if (ret < 0) {
		ulog_warn("cannot register a staging area: %s", ulog_errname(-ret));
		munmap(mem, STAGE_BYTES);
		free(s);
		return ret;
	}
	s->base = (uintptr_t)mem;
	pthread_mutex_lock(&stage_lock);
	s->all_next = stage_all;
	stage_all = s;
	pthread_mutex_unlock(&stage_lock);
	*out = s;
	return 0;
}

bool stage_contains(uintptr_t addr)
{
	bool in = false;

	pthread_mutex_lock(&stage_lock);
	for (struct stage *s = stage_all; s && !in; s = s->all_next)
		in = addr >= s->base && addr - s->base < STAGE_BYTES;
	pthread_mutex_unlock(&stage_lock);
	return in;
}

size_t stage_filled(uintptr_t at, uintptr_t from, size_t len)
{
	unsigned char in[STAGE_BYTES / 4096], out[STAGE_BYTES / 4096];
	size_t n = len / eng.sys_psize, k = 0;

	if (n > sizeof(in) || mincore((void *)at, len, in) < 0 || mincore((void *)from, len, out) < 0)
		return 0;
	while (k < n && (in[k] & 1) && !(out[k] & 1))
		k++;
	return k * eng.sys_psize;
}

void stage_clear(struct stage *s, size_t used)
{
	if (used && madvise((void *)s->base, used, MADV_DONTNEED) < 0)
		ulog_warn("clearing a staging area: %s", ulog_errname(errno));
}

void stage_put(struct stage *s)
{
	pthread_mutex_lock(&stage_lock);
	s->next = stage_free;
	stage_free = s;
	pthread_mutex_unlock(&stage_lock);
}
