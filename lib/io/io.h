/*
 * lib/io - asynchronous reads and writes for the engine's threads.
 *
 * One context per thread (a fault thread, an evictor, or an application
 * thread inside umapd_flush), never shared: no locks.  A context keeps up
 * to `depth` requests in flight and has one of three back ends:
 *
 *   io_uring  (liburing) the default: batched submission, many in flight
 *   aio       (libaio) for O_DIRECT stores where io_uring is refused
 *             (kernel.io_uring_disabled, seccomp, container policy); on a
 *             buffered descriptor the kernel runs it synchronously
 *   psync     pread/pwrite at submission: always works, one at a time
 *
 * The generic part (io.c) owns the requests' life: it cuts nothing, but it
 * resubmits the rest of a short read or write and retries EINTR and EAGAIN
 * (bounded), so a caller sees each request finish once, whole or failed.
 * A read that meets the end of the file finishes with done < len and
 * res == 0: the caller zero-fills the rest.
 *
 * Application memory is never registered as an io_uring fixed buffer (a
 * fixed buffer is pinned for write, and pinning a write-protected page of
 * a region would fault and hang: seed 001).  Only engine-owned buffers
 * may be registered (io_register_buffer).
 */
#ifndef UMAPD_IO_H
#define UMAPD_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum io_kind {
	IO_AUTO = 0,   /* values match UMAPD_IOENG_* of umapd.h */
	IO_URING = 1,
	IO_AIO = 2,
	IO_PSYNC = 3,
};

struct io_req {
	/* Set by the caller. */
	int fd;
	bool write;
	char *buf;
	size_t len;
	uint64_t off;
	unsigned align;       /* O_DIRECT alignment of the descriptor, or 0 */
	void *owner;          /* the caller's, untouched */
	/* Set by the context. */
	size_t done;          /* bytes transferred */
	int res;              /* when finished: 0, or a negative errno; -EINPROGRESS before */
	unsigned retries;     /* EINTR/EAGAIN/short resubmissions so far */
	struct io_req *next;  /* the context's lists */
};

struct io_ctx;

/*
 * Fault injection for tests (UMAPD_IO_INJECT, see engine.c): percentages
 * of submissions cut short, and of completions turned into EINTR or
 * EAGAIN before they reach the caller.  All zero: off.
 */
struct io_inject {
	unsigned short_pct, eintr_pct, eagain_pct;
	unsigned break_after;   /* the context breaks: its flushes from this one on fail with EIO (0:
				 * never); set by unit tests, not read from UMAPD_IO_INJECT */
	uint64_t seed;
};

/*
 * Open a context of the given kind (not IO_AUTO) with room for depth
 * requests in flight.  Errors: -ENOSYS/-EPERM (the kernel refuses this
 * back end), -EAGAIN (aio: fs.aio-max-nr reached), -ENOMEM, -EINVAL.
 */
int io_open(enum io_kind kind, unsigned depth, struct io_ctx **out);
void io_close(struct io_ctx *c);
enum io_kind io_kind_of(const struct io_ctx *c);
const char *io_kind_name(enum io_kind k);
void io_set_inject(struct io_ctx *c, const struct io_inject *inj);

/* Register an engine-owned buffer for fixed-buffer I/O (io_uring only; a
 * no-op elsewhere).  Requests whose buf lies inside it use it. */
int io_register_buffer(struct io_ctx *c, void *base, size_t len);

/*
 * Queue a request (its done, res, retries are reset).  Queued requests go
 * to the kernel at io_flush(), or at once when the queue is full.  If the
 * context is full (io_inflight() == depth) returns -EBUSY: reap first.
 * psync runs the request here, before returning.
 */
int io_enqueue(struct io_ctx *c, struct io_req *r);
/* Hand queued requests to the kernel.  0 or a negative errno. */
int io_flush(struct io_ctx *c);
/*
 * Finished requests, up to max, into out.  wait: block until at least one
 * finishes if any is in flight.  Returns how many, or a negative errno
 * (the context itself failed).
 */
int io_reap(struct io_ctx *c, struct io_req **out, unsigned max, bool wait);
/* Requests queued or in flight and not yet reaped. */
unsigned io_inflight(const struct io_ctx *c);
unsigned io_depth(const struct io_ctx *c);
/* A descriptor that polls readable when completions may be waiting, for
 * epoll; -1 if the back end completes at submission (psync). */
int io_event_fd(const struct io_ctx *c);

/* Requests are outstanding and no event fd will report them (psync): the
 * caller must reap again before it sleeps. */
bool io_needs_poll(const struct io_ctx *c);

/* Queue, submit and wait for n requests (any number: it reaps as it goes).
 * Returns 0, each request's res saying how it went; or, if the context
 * broke, its error, with every request not finished failed with it. */
int io_run(struct io_ctx *c, struct io_req *reqs, size_t n);
/* The context broke in io_run and still has requests in the kernel that
 * could not be collected: close it and open another (io_run otherwise
 * leaves a broken context empty, and it may be used again). */
bool io_dead(const struct io_ctx *c);

/*
 * Choose a back end: `want` if not IO_AUTO, else io_uring, then aio (only
 * useful with O_DIRECT), then psync, each tried by opening a context.
 * *why gets a short reason for a fallback.  Returns the kind chosen.
 */
enum io_kind io_choose(enum io_kind want, char *why, size_t whylen);

#endif
