/*
 * daemon/proto - the umapd wire protocol, shared by the server, the client
 * side of libumapd and umapctl (docs/daemon-protocol.md).
 *
 * A frame is a fixed 24-byte header followed by `len` bytes of payload, in
 * host byte order (both ends are on the same machine, over a UNIX stream
 * socket).  Descriptors travel with SCM_RIGHTS on the sendmsg() that
 * carries the frame's header; a reader reads exactly one frame's bytes per
 * recvmsg() step, so descriptors can never be attributed to the wrong frame.
 *
 * Every decoder here is strict: exact payload sizes, reserved fields zero,
 * known types, flags and versions only, the right number of descriptors,
 * and the session order (HELLO first, once; admin messages only on an admin
 * session).  Functions return 0 or a negative errno; nothing here logs.
 */
#ifndef UMAPD_PROTO_H
#define UMAPD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC 0x50414d55u /* "UMAP" as bytes on a little-endian machine */
#define PROTO_VERSION 1         /* the newest version this build speaks */
#define PROTO_VERSION_MIN 1     /* the oldest it still accepts */
#define PROTO_HDR_SIZE 24
#define PROTO_MAX_PAYLOAD 65536 /* larger frames are refused and the connection dropped */
#define PROTO_MAX_FDS 2         /* MAP carries two; any frame with more is refused */
#define PROTO_DEFAULT_SOCKET "/run/umapd/umapd.sock"

struct proto_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t flags; /* reserved: 0 */
	uint32_t len;   /* payload bytes after the header */
	uint64_t seq;   /* chosen by the requester, echoed in the reply */
};

enum proto_type {
	/* client session */
	PT_HELLO = 1,
	PT_MAP = 2,
	PT_UNMAP = 3,
	PT_FLUSH = 4,
	PT_STATS = 5,
	/* admin session (umapctl) */
	PT_STATUS = 16,
	PT_CLIENTS = 17,
	PT_REGIONS = 18,
	PT_SET_BUDGET = 19,
	PT_ADMIN_FLUSH = 20,
	PT_EVICT = 21,
	PT_DISCONNECT = 22,
	/* replies: the request's type with PT_REPLY set, or PT_ERROR */
	PT_ERROR = 0x7fff,
	PT_REPLY = 0x8000,
};

enum proto_role { PROTO_ROLE_CLIENT = 1, PROTO_ROLE_ADMIN = 2 };

struct proto_hello {
	uint16_t min_version, max_version;
	uint32_t role; /* enum proto_role */
	uint64_t reserved;
};

struct proto_hello_reply {
	uint16_t version; /* the version both ends now speak */
	uint16_t reserved0;
	uint32_t client_id;
	uint64_t budget;
	uint64_t features; /* PROTO_FEAT_* */
};
#define PROTO_FEAT_SHARED_CACHE 1ull /* one memfd per (device, inode, page size) */

#define PROTO_MAP_WRITABLE 1u
struct proto_map { /* descriptors: [0] backing file, [1] userfaultfd */
	uint64_t addr;      /* where the client maps the memfd (page aligned) */
	uint64_t len;       /* a multiple of page_size */
	uint64_t offset;    /* file offset, a multiple of page_size; also the memfd offset */
	uint64_t page_size; /* power of two, 4 KiB .. 1 GiB */
	uint32_t flags;     /* PROTO_MAP_* */
	uint32_t reserved;
};
struct proto_map_reply { /* descriptor: the memfd (read-only for a read-only region) */
	uint64_t region_id;
	uint64_t memfd_size;
};

struct proto_region_ref {
	uint64_t region_id;
};

struct proto_flush { /* client FLUSH: write back (evict: and drop) part of a region */
	uint64_t region_id;
	uint64_t offset; /* from the region's start */
	uint64_t len;
	uint32_t evict;  /* 0 or 1 */
	uint32_t reserved;
};

struct proto_stats {
	uint64_t faults, missing_faults, minor_faults, wp_faults;
	uint64_t fills, evictions, dirty_evictions, flushed_pages;
	uint64_t bytes_read, bytes_written, io_errors, resident_bytes;
	uint64_t dirty_bytes, regions, budget_bytes, limit_bytes;
};

struct proto_status {
	uint64_t pid, uptime_ms, budget, client_limit, uid_limit;
	uint64_t resident, dirty, clients, regions, files;
	uint64_t max_clients, page_size_default;
	struct proto_stats total;
};

struct proto_client_info {
	uint32_t id, pid, uid, role;
	uint64_t regions, resident, limit;
	uint64_t faults, fills, evictions, bytes_written;
};
struct proto_region_info {
	uint64_t id;
	uint32_t client_id, flags;
	uint64_t addr, len, offset, page_size;
	uint64_t dev, ino;
	uint64_t file_resident, file_dirty;
};
struct proto_list { /* followed by count entries */
	uint32_t count, reserved;
};
#define PROTO_LIST_MAX(entry) ((PROTO_MAX_PAYLOAD - sizeof(struct proto_list)) / sizeof(entry))

struct proto_budget {
	uint64_t bytes;
};
struct proto_target { /* ADMIN_FLUSH, EVICT, DISCONNECT */
	uint32_t client_id; /* 0: every client (not for DISCONNECT) */
	uint32_t reserved;
};

struct proto_error {
	int32_t err; /* a positive errno */
	uint32_t reserved;
	char msg[96]; /* NUL-terminated */
};

/* A decoded message; which member is valid follows hdr.type. */
struct proto_msg {
	struct proto_hdr hdr;
	int fds[PROTO_MAX_FDS];
	int nfds;
	union {
		struct proto_hello hello;
		struct proto_hello_reply hello_reply;
		struct proto_map map;
		struct proto_map_reply map_reply;
		struct proto_region_ref ref;
		struct proto_flush flush;
		struct proto_stats stats;
		struct proto_status status;
		struct proto_budget budget;
		struct proto_target target;
		struct proto_error error;
	} u;
	const void *list; /* CLIENTS/REGIONS replies: the entries, inside the frame */
	uint32_t count;
};

/* Check a header: magic (-EPROTO), length (-EMSGSIZE), version (-EPROTONOSUPPORT;
 * version 0 is accepted only as "any" on a HELLO), flags (-EINVAL). */
int proto_check_hdr(const struct proto_hdr *h);

/*
 * Decode a whole frame (header already checked) with the nfds descriptors
 * that came with it.  On success out holds the message and owns the
 * descriptors.  On failure the descriptors are NOT closed: the caller closes
 * them (proto_close_fds) whatever the result, unless it took them.
 * Errors: -EBADMSG (wrong size, reserved field set, wrong descriptor count),
 * -EINVAL (a field out of range), -ENOMSG (unknown type).
 */
int proto_decode(const struct proto_hdr *h, const void *payload, const int *fds, int nfds,
		 struct proto_msg *out);

/* Session order, for the server: which requests are acceptable now. */
struct proto_session {
	bool hello_done;
	uint16_t version;
	uint32_t role;
};
/* -EPROTO: out of order (anything before HELLO, a second HELLO);
 * -EPERM: a message the session's role may not send. */
int proto_session_check(const struct proto_session *s, uint16_t type);

/* Receiving, one frame at a time. */
struct proto_rx {
	unsigned char hdr[PROTO_HDR_SIZE];
	size_t hgot;
	unsigned char *payload; /* PROTO_MAX_PAYLOAD bytes, allocated on first use */
	size_t pgot;
	int fds[PROTO_MAX_FDS];
	int nfds;
	bool fd_overflow; /* more descriptors arrived than a frame may carry */
};
void proto_rx_init(struct proto_rx *rx);
/* Free the buffer and close descriptors still held. */
void proto_rx_free(struct proto_rx *rx);
/*
 * Read from sock towards one frame.  Returns 1 when a frame is complete
 * (header at rx->hdr, payload at rx->payload, descriptors in rx->fds),
 * 0 when the socket would block, -EPIPE at end of stream between frames,
 * -ECONNRESET at end of stream inside a frame (truncated), -EPROTO /
 * -EMSGSIZE / -EPROTONOSUPPORT / -EINVAL for a bad header (from
 * proto_check_hdr, checked before any payload is read), -EBADMSG when
 * descriptors overflowed, or the errno of recvmsg.  After 1, call
 * proto_rx_reset() (which closes descriptors the caller did not take).
 */
int proto_rx_step(int sock, struct proto_rx *rx);
void proto_rx_reset(struct proto_rx *rx);
/* Blocking: step until a frame is complete or an error. */
int proto_rx_frame(int sock, struct proto_rx *rx);

/*
 * Send one frame, with descriptors on its first byte.  nonblock: give up
 * with -EAGAIN if the whole frame cannot be written now (a peer that does
 * not read its replies is then disconnected by the server).
 */
int proto_send(int sock, uint16_t type, uint16_t version, uint64_t seq, const void *payload,
	       uint32_t len, const int *fds, int nfds, bool nonblock);
/* An error reply with err (positive errno) and a message. */
int proto_send_error(int sock, uint16_t version, uint64_t seq, int err, const char *msg, bool nonblock);

void proto_close_fds(int *fds, int nfds);
const char *proto_type_name(uint16_t type);

#endif /* UMAPD_PROTO_H */
