/*
 * The pread/pwrite back end: each piece runs when it is prepared, and its
 * result waits in a list for the next completion pass.
 */
#include "io/io_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

struct psync_done {
	struct io_req *r;
	long res;
};

/* Results of pieces that ran, in order, until reported. */
struct psync_ring {
	struct psync_done *slots;
	unsigned cap, head, n;
};

static int psync_open(struct io_ctx *c, unsigned depth)
{
	struct psync_ring *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->slots = calloc(depth, sizeof(*q->slots));
	if (!q->slots) {
		free(q);
		return -ENOMEM;
	}
	q->cap = depth;
	c->be_state = q;
	return 0;
}

static void psync_close(struct io_ctx *c)
{
	struct psync_ring *q = c->be_state;

	free(q->slots);
	free(q);
}

static int psync_prep(struct io_ctx *c, struct io_req *r, size_t len)
{
	struct psync_ring *q = c->be_state;
	ssize_t n;

	if (q->n == q->cap)
		return -EBUSY;
	if (r->write)
		n = pwrite(r->fd, r->buf + r->done, len, (off_t)(r->off + r->done));
	else
		n = pread(r->fd, r->buf + r->done, len, (off_t)(r->off + r->done));
	q->slots[(q->head + q->n++) % q->cap] = (struct psync_done){ .r = r, .res = n < 0 ? -errno : n };
	return 0;
}

static int psync_submit(struct io_ctx *c)
{
	(void)c;
	return 0;
}

static int psync_complete(struct io_ctx *c, bool wait)
{
	struct psync_ring *q = c->be_state;
	unsigned n = q->n;

	(void)wait; /* everything ran already */
	/* Only what is there now: a rest queued again runs at the next prep. */
	for (unsigned i = 0; i < n; i++) {
		struct psync_done d = q->slots[q->head];

		q->head = (q->head + 1) % q->cap;
		q->n--;
		io_piece_done(c, d.r, d.res);
	}
	return 0;
}

static int psync_event_fd(struct io_ctx *c)
{
	(void)c;
	return -1;
}

const struct io_backend io_backend_psync = {
	.kind = IO_PSYNC,
	.open = psync_open,
	.close = psync_close,
	.prep = psync_prep,
	.submit = psync_submit,
	.complete = psync_complete,
	.event_fd = psync_event_fd,
};
