/*
 * The generic half of lib/io: request queues, short transfers, retries,
 * fault injection and the choice of a back end.
 */
#include "io/io_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_RETRIES 1000 /* EINTR/EAGAIN in a row before a request fails */

static const char *const kind_names[] = { "auto", "io_uring", "aio", "psync" };

const char *io_kind_name(enum io_kind k)
{
	return (unsigned)k < 4 ? kind_names[k] : "?";
}

static const struct io_backend *backend_of(enum io_kind k)
{
	switch (k) {
	case IO_URING: return &io_backend_uring;
	case IO_AIO: return &io_backend_aio;
	case IO_PSYNC: return &io_backend_psync;
	default: return NULL;
	}
}

int io_open(enum io_kind kind, unsigned depth, struct io_ctx **out)
{
	const struct io_backend *be = backend_of(kind);
	struct io_ctx *c;
	int ret;

	if (!be || depth == 0 || depth > 4096)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->be = be;
	c->depth = depth;
	ret = be->open(c, depth);
	if (ret < 0) {
		free(c);
		return ret;
	}
	*out = c;
	return 0;
}

void io_close(struct io_ctx *c)
{
	if (!c)
		return;
	c->be->close(c);
	free(c);
}

enum io_kind io_kind_of(const struct io_ctx *c)
{
	return c->be->kind;
}

void io_set_inject(struct io_ctx *c, const struct io_inject *inj)
{
	c->inj = *inj;
	c->rng = inj->seed ? inj->seed : 0x9E3779B97F4A7C15ull;
}

int io_register_buffer(struct io_ctx *c, void *base, size_t len)
{
	int ret = c->be->register_buffer ? c->be->register_buffer(c, base, len) : 0;

	if (ret == 0 && c->be->register_buffer) {
		c->fixed_base = base;
		c->fixed_len = len;
	}
	return ret;
}

unsigned io_inflight(const struct io_ctx *c)
{
	return c->inflight;
}

unsigned io_depth(const struct io_ctx *c)
{
	return c->depth;
}

int io_event_fd(const struct io_ctx *c)
{
	return c->be->event_fd((struct io_ctx *)c);
}

/* xorshift64: the injection's dice. */
static unsigned roll(struct io_ctx *c)
{
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	return (unsigned)(c->rng % 100);
}

static void push(struct io_req **head, struct io_req **tail, struct io_req *r)
{
	r->next = NULL;
	if (*tail)
		(*tail)->next = r;
	else
		*head = r;
	*tail = r;
}

static void finish(struct io_ctx *c, struct io_req *r, int res)
{
	r->res = res;
	push(&c->done_head, &c->done_tail, r);
}

void io_piece_done(struct io_ctx *c, struct io_req *r, long res)
{
	c->in_kernel--;
	if (c->inj.eintr_pct && roll(c) < c->inj.eintr_pct)
		res = -EINTR; /* as if interrupted: the transfer is simply made again */
	else if (c->inj.eagain_pct && roll(c) < c->inj.eagain_pct)
		res = -EAGAIN;
	if (res == -EINTR || res == -EAGAIN) {
		if (++r->retries > MAX_RETRIES) {
			finish(c, r, (int)res);
			return;
		}
		push(&c->queue_head, &c->queue_tail, r);
		return;
	}
	if (res < 0) {
		/* O_DIRECT: the rest of a read cut short by the end of the file
		 * starts unaligned and is refused; the end of the file it is. */
		if (res == -EINVAL && !r->write && r->done > 0 && r->align)
			res = 0;
		else {
			finish(c, r, (int)res);
			return;
		}
	}
	if (res == 0) {
		/* A read at the end of the file: the rest reads as zeros.  A write
		 * that makes no progress must not spin. */
		finish(c, r, r->write ? -EIO : 0);
		return;
	}
	r->done += (size_t)res;
	if (r->done >= r->len) {
		finish(c, r, 0);
		return;
	}
	r->retries++;
	push(&c->queue_head, &c->queue_tail, r);
}

/* Prepare what is queued; stops when the back end has no room. */
static int prep_queued(struct io_ctx *c)
{
	while (c->queue_head) {
		struct io_req *r = c->queue_head;
		size_t len = r->len - r->done;
		int ret;

		if (c->inj.short_pct && roll(c) < c->inj.short_pct) {
			/* Ask for less, in units the descriptor accepts: the back
			 * end then reports a short transfer. */
			size_t unit = r->align ? r->align : 1;

			if (len > unit)
				len = unit * (1 + (c->rng >> 8) % ((len - 1) / unit));
		}
		ret = c->be->prep(c, r, len);
		if (ret == -EBUSY)
			return 0;
		c->queue_head = r->next;
		if (!c->queue_head)
			c->queue_tail = NULL;
		if (ret < 0) {
			finish(c, r, ret);
			continue;
		}
		c->in_kernel++;
	}
	return 0;
}

int io_enqueue(struct io_ctx *c, struct io_req *r)
{
	if (c->inflight >= c->depth)
		return -EBUSY;
	r->done = 0;
	r->res = -EINPROGRESS;
	r->retries = 0;
	c->inflight++;
	push(&c->queue_head, &c->queue_tail, r);
	return prep_queued(c);
}

int io_flush(struct io_ctx *c)
{
	if (c->inj.break_after && ++c->nflushes >= c->inj.break_after)
		return -EIO;
	prep_queued(c);
	return c->be->submit(c);
}

int io_reap(struct io_ctx *c, struct io_req **out, unsigned max, bool wait)
{
	unsigned n = 0, tries = 0;

	for (;;) {
		while (n < max && c->done_head) {
			struct io_req *r = c->done_head;

			c->done_head = r->next;
			if (!c->done_head)
				c->done_tail = NULL;
			c->inflight--;
			out[n++] = r;
		}
		if (n > 0 || c->inflight == 0 || (!wait && tries++ > 0 && !c->queue_head)) {
			/* Nothing is left behind unsubmitted: a retry queued by the
			 * last completion goes to the kernel now, so that the
			 * context's event fd reports it. */
			int ret = c->queue_head ? io_flush(c) : 0;

			return ret < 0 ? ret : (int)n;
		}
		/* Resubmissions first, then collect what the kernel finished. */
		int ret = io_flush(c);

		if (ret < 0)
			return ret;
		ret = c->be->complete(c, wait && !c->done_head && !c->queue_head);
		if (ret < 0)
			return ret;
	}
}

bool io_needs_poll(const struct io_ctx *c)
{
	return c->inflight > 0 && c->be->event_fd((struct io_ctx *)c) < 0;
}

/*
 * A context broke inside io_run: bring it back to empty before the caller
 * may reuse it (wr_run keeps its contexts).  Requests never handed to the
 * kernel are taken off the queue, unfinished; those in the kernel (for
 * io_uring, also prepared in the submission ring but not yet submitted)
 * are submitted and waited for, up to QUIESCE_NS, since a request left
 * there would complete later into the caller's io_req, long reused, and a
 * write landing late could overwrite newer data written meanwhile.  What
 * finishes keeps its result; a piece to resubmit stays unfinished.  If the
 * kernel's requests cannot be collected (the ring itself fails), the
 * context is marked dead: io_dead() tells the caller to close it.
 */
#define QUIESCE_NS 10000000000ull

static void io_quiesce(struct io_ctx *c)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		/* Queued requests keep res -EINPROGRESS: io_run fails them. */
		while (c->queue_head) {
			c->queue_head = c->queue_head->next;
			c->inflight--;
		}
		c->queue_tail = NULL;
		while (c->done_head) {
			c->done_head = c->done_head->next;
			c->inflight--;
		}
		c->done_tail = NULL;
		if (c->in_kernel == 0)
			return;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000ull + (uint64_t)t.tv_nsec - (uint64_t)t0.tv_nsec >
			    QUIESCE_NS ||
		    c->be->submit(c) < 0 || c->be->complete(c, true) < 0) {
			c->dead = true;
			return;
		}
	}
}

bool io_dead(const struct io_ctx *c)
{
	return c->dead;
}

int io_run(struct io_ctx *c, struct io_req *reqs, size_t n)
{
	struct io_req *got[64];
	size_t next = 0;

	while (next < n || c->inflight > 0) {
		while (next < n && io_enqueue(c, &reqs[next]) == 0)
			next++;
		int ret = io_flush(c);

		if (ret == 0)
			ret = io_reap(c, got, 64, true);
		if (ret < 0) {
			/* The context broke: fail everything not finished, the
			 * requests queued or in flight as well as those never
			 * queued.  (Calling an unfinished write done let a dirty
			 * page be dropped before its data was in the store:
			 * unit.io_engines, "broken context".) */
			io_quiesce(c);
			for (size_t i = 0; i < n; i++)
				if (i >= next || reqs[i].res == -EINPROGRESS)
					reqs[i].res = ret;
			return ret;
		}
	}
	return 0;
}

enum io_kind io_choose(enum io_kind want, char *why, size_t whylen)
{
	static const enum io_kind order[] = { IO_URING, IO_AIO, IO_PSYNC };
	struct io_ctx *c;
	int ret;

	if (why && whylen)
		why[0] = '\0';
	if (want != IO_AUTO) {
		ret = io_open(want, 4, &c);
		if (ret == 0) {
			io_close(c);
			return want;
		}
		if (why)
			snprintf(why, whylen, "%s refused (%s); using psync", io_kind_name(want), strerror(-ret));
		return IO_PSYNC;
	}
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		ret = io_open(order[i], 4, &c);
		if (ret == 0) {
			io_close(c);
			return order[i];
		}
		if (why && i == 0)
			snprintf(why, whylen, "io_uring refused (%s)", strerror(-ret));
	}
	return IO_PSYNC;
}
