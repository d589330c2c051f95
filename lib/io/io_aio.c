/*
 * The Linux AIO back end (libaio).  Asynchronous only on O_DIRECT
 * descriptors; on buffered ones io_submit() does the I/O before it
 * returns, which is still correct.
 */
#include "io/io_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libaio.h>

struct aio_state {
	io_context_t ctx;
	int efd;
	unsigned depth;
	struct iocb *cbs;        /* depth control blocks */
	struct iocb **free_cbs;  /* stack of unused ones */
	unsigned nfree;
	struct iocb **pending;   /* prepared, not yet accepted by io_submit */
	unsigned npending;
	struct io_event *events;
};

static void aio_free(struct aio_state *a)
{
	if (a->efd >= 0)
		close(a->efd);
	free(a->cbs);
	free(a->free_cbs);
	free(a->pending);
	free(a->events);
	free(a);
}

static int aio_open(struct io_ctx *c, unsigned depth)
{
	struct aio_state *a = calloc(1, sizeof(*a));
	int ret;

	if (!a)
		return -ENOMEM;
	a->depth = depth;
	a->cbs = calloc(depth, sizeof(*a->cbs));
	a->free_cbs = calloc(depth, sizeof(*a->free_cbs));
	a->pending = calloc(depth, sizeof(*a->pending));
	a->events = calloc(depth, sizeof(*a->events));
	a->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!a->cbs || !a->free_cbs || !a->pending || !a->events || a->efd < 0) {
		ret = a->efd < 0 ? -errno : -ENOMEM;
		goto fail;
	}
	ret = io_setup((int)depth, &a->ctx);
	if (ret < 0)
		goto fail;
	for (unsigned i = 0; i < depth; i++)
		a->free_cbs[a->nfree++] = &a->cbs[i];
	c->be_state = a;
	return 0;
fail:
	aio_free(a);
	return ret;
}

static void aio_close(struct io_ctx *c)
{
	struct aio_state *a = c->be_state;

	io_destroy(a->ctx);
	aio_free(a);
}

static int aio_prep(struct io_ctx *c, struct io_req *r, size_t len)
{
	struct aio_state *a = c->be_state;
	struct iocb *cb;

	if (a->nfree == 0)
		return -EBUSY;
	cb = a->free_cbs[--a->nfree];
	if (r->write)
		io_prep_pwrite(cb, r->fd, r->buf + r->done, len, (long long)(r->off + r->done));
	else
		io_prep_pread(cb, r->fd, r->buf + r->done, len, (long long)(r->off + r->done));
	io_set_eventfd(cb, a->efd);
	cb->data = r;
	a->pending[a->npending++] = cb;
	return 0;
}

static int aio_submit(struct io_ctx *c)
{
	struct aio_state *a = c->be_state;

	while (a->npending > 0) {
		int ret = io_submit(a->ctx, (long)a->npending, a->pending);

		if (ret == -EINTR)
			continue;
		if (ret == -EAGAIN)
			return 0; /* no room in the kernel now: after completions */
		if (ret < 0) {
			/* The first one is refused (EBADF, EINVAL: an unaligned
			 * O_DIRECT transfer, ...): fail it and go on. */
			struct iocb *cb = a->pending[0];

			for (unsigned i = 1; i < a->npending; i++)
				a->pending[i - 1] = a->pending[i];
			a->npending--;
			a->free_cbs[a->nfree++] = cb;
			io_piece_done(c, cb->data, ret);
			continue;
		}
		for (unsigned i = (unsigned)ret; i < a->npending; i++)
			a->pending[i - (unsigned)ret] = a->pending[i];
		a->npending -= (unsigned)ret;
	}
	return 0;
}

static int aio_complete(struct io_ctx *c, bool wait)
{
	struct aio_state *a = c->be_state;
	uint64_t v;
	int n;

	if (read(a->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -errno;
	if (c->in_kernel == a->npending)
		return 0; /* nothing in the kernel to wait for */
	do
		n = io_getevents(a->ctx, wait ? 1 : 0, (long)a->depth, a->events, NULL);
	while (n == -EINTR);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		struct iocb *cb = a->events[i].obj;

		a->free_cbs[a->nfree++] = cb;
		io_piece_done(c, cb->data, (long)a->events[i].res);
	}
	return 0;
}

static int aio_event_fd(struct io_ctx *c)
{
	return ((struct aio_state *)c->be_state)->efd;
}

const struct io_backend io_backend_aio = {
	.kind = IO_AIO,
	.open = aio_open,
	.close = aio_close,
	.prep = aio_prep,
	.submit = aio_submit,
	.complete = aio_complete,
	.event_fd = aio_event_fd,
};
