/*
 * lib/io private: the back-end interface under io.c.  Not used outside
 * lib/io.
 */
#ifndef UMAPD_IO_IMPL_H
#define UMAPD_IO_IMPL_H

#include "io/io.h"

struct io_backend {
	enum io_kind kind;
	int (*open)(struct io_ctx *c, unsigned depth);
	void (*close)(struct io_ctx *c);
	/* Prepare the transfer of len bytes of r from r->done on.  -EBUSY: no
	 * room now (submit and reap first); other negative errno: the request
	 * fails with it. */
	int (*prep)(struct io_ctx *c, struct io_req *r, size_t len);
	int (*submit)(struct io_ctx *c);
	/* Report raw results through io_piece_done(); wait: block for one. */
	int (*complete)(struct io_ctx *c, bool wait);
	int (*event_fd)(struct io_ctx *c);
	int (*register_buffer)(struct io_ctx *c, void *base, size_t len);
};

struct io_ctx {
	const struct io_backend *be;
	void *be_state;
	unsigned depth;
	unsigned inflight;            /* queued + in the kernel + finished, not reaped */
	unsigned in_kernel;           /* prepared and not completed */
	struct io_req *queue_head, *queue_tail; /* to prepare (new, or a rest to resubmit) */
	struct io_req *done_head, *done_tail;   /* finished, for io_reap */
	struct io_inject inj;
	unsigned nflushes;            /* for inj.break_after */
	bool dead;                    /* broke with requests the kernel still holds: close it */
	uint64_t rng;
	char *fixed_base;
	size_t fixed_len;
};

/* Back ends call this once per completed piece with its raw result
 * (bytes transferred, or a negative errno). */
void io_piece_done(struct io_ctx *c, struct io_req *r, long res);

extern const struct io_backend io_backend_uring, io_backend_aio, io_backend_psync;

#endif
