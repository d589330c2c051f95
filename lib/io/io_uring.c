/* The io_uring back end (liburing). */
#include "io/io_impl.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>

struct uring_state {
	struct io_uring ring;
	int efd;        /* registered eventfd, made on first io_event_fd() */
	bool fixed;     /* buffer 0 registered */
};

static int uring_open(struct io_ctx *c, unsigned depth)
{
	struct uring_state *u = calloc(1, sizeof(*u));
	int ret;

	if (!u)
		return -ENOMEM;
	/* CQ twice the SQ (the default): completions never overflow while at
	 * most depth requests are in flight. */
	ret = io_uring_queue_init(depth, &u->ring, 0);
	if (ret < 0) {
		free(u);
		return ret;
	}
	u->efd = -1;
	c->be_state = u;
	return 0;
}

static void uring_close(struct io_ctx *c)
{
	struct uring_state *u = c->be_state;

	io_uring_queue_exit(&u->ring);
	if (u->efd >= 0)
		close(u->efd);
	free(u);
}

static int uring_prep(struct io_ctx *c, struct io_req *r, size_t len)
{
	struct uring_state *u = c->be_state;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	char *buf = r->buf + r->done;
	uint64_t off = r->off + r->done;

	if (!sqe)
		return -EBUSY;
	if (u->fixed && buf >= c->fixed_base && buf + len <= c->fixed_base + c->fixed_len) {
		if (r->write)
			io_uring_prep_write_fixed(sqe, r->fd, buf, (unsigned)len, off, 0);
		else
			io_uring_prep_read_fixed(sqe, r->fd, buf, (unsigned)len, off, 0);
	} else if (r->write) {
		io_uring_prep_write(sqe, r->fd, buf, (unsigned)len, off);
	} else {
		io_uring_prep_read(sqe, r->fd, buf, (unsigned)len, off);
	}
	io_uring_sqe_set_data(sqe, r);
	return 0;
}

static int uring_submit(struct io_ctx *c)
{
	struct uring_state *u = c->be_state;

	for (;;) {
		int ret = io_uring_submit(&u->ring);

		if (ret >= 0)
			return 0;
		if (ret == -EINTR)
			continue;
		/* EAGAIN/EBUSY: the kernel has no room now; what is left in
		 * the SQ goes at the next submit, after completions. */
		if (ret == -EAGAIN || ret == -EBUSY)
			return 0;
		return ret;
	}
}

static int uring_complete(struct io_ctx *c, bool wait)
{
	struct uring_state *u = c->be_state;
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	uint64_t v;

	if (u->efd >= 0 && read(u->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -errno;
	if (wait && c->in_kernel > 0 && io_uring_peek_cqe(&u->ring, &cqe) != 0) {
		int ret;

		/* Submits what the SQ still holds (a submit the kernel had no
		 * room for) and waits for one. */
		do
			ret = io_uring_submit_and_wait(&u->ring, 1);
		while (ret == -EINTR);
		if (ret < 0 && ret != -EAGAIN && ret != -EBUSY)
			return ret;
	}
	io_uring_for_each_cqe(&u->ring, head, cqe) {
		io_piece_done(c, io_uring_cqe_get_data(cqe), cqe->res);
		n++;
	}
	io_uring_cq_advance(&u->ring, n);
	return 0;
}

static int uring_event_fd(struct io_ctx *c)
{
	struct uring_state *u = c->be_state;

	if (u->efd < 0) {
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

		if (efd < 0)
			return -1;
		if (io_uring_register_eventfd(&u->ring, efd) < 0) {
			close(efd);
			return -1;
		}
		u->efd = efd;
	}
	return u->efd;
}

static int uring_register_buffer(struct io_ctx *c, void *base, size_t len)
{
	struct uring_state *u = c->be_state;
	struct iovec iov = { .iov_base = base, .iov_len = len };
	int ret = io_uring_register_buffers(&u->ring, &iov, 1);

	if (ret == 0)
		u->fixed = true;
	return ret;
}

const struct io_backend io_backend_uring = {
	.kind = IO_URING,
	.open = uring_open,
	.close = uring_close,
	.prep = uring_prep,
	.submit = uring_submit,
	.complete = uring_complete,
	.event_fd = uring_event_fd,
	.register_buffer = uring_register_buffer,
};
