/*
 * umapd_store.h - stores: where a region's data lives, and how to write
 * your own.
 *
 * umapd_map() pages a file.  umapd_map_store() pages any store: one of the
 * built-in ones below (a file, a sparse directory of chunk files, memory,
 * a fault-injecting wrapper), or one you write yourself by filling in a
 * struct umapd_store_ops -- a remote object store, a compressed or
 * encrypted file, a checksummed one.  docs/stores.md shows a complete
 * store in one file (examples/store_plugin.c).
 *
 * Writing a store
 *   Embed struct umapd_store as the first member of your own struct, point
 *   its ops at a static struct umapd_store_ops, and pass its address to
 *   umapd_map_store().  Your callbacks get that address back and cast it to
 *   your struct.
 *
 *   Callbacks return 0 or a negative errno (-EIO, -ENOSPC, ...), kernel
 *   style -- not -1/errno.  umapd calls them from its own service threads,
 *   several at a time (reads and writes of different pages run in
 *   parallel), so they must be thread-safe.  They must not call umapd
 *   functions, and must not touch any umapd region's memory other than the
 *   buffer they are given.  A read or write that blocks holds up the pages
 *   it serves (and the threads that fault on them), nothing else.
 *
 *   A write's buffer may be a page of the region itself, present and
 *   write-protected while the call runs: read it, do not write to it, do
 *   not keep the pointer after returning.
 *
 *   A failed write is never lost: the page stays resident and dirty, and
 *   umapd_flush()/umapd_unmap() return your errno (see umapd.h).
 *
 * Ownership: umapd_map_store() takes the store on success and closes it
 * (ops->close) when the region is unmapped; the pointer stays valid until
 * then, so you may keep using functions such as umapd_store_inject_set()
 * on it meanwhile.  If umapd_map_store() fails, the store is still yours.
 * One store backs at most one region at a time.
 */
#ifndef UMAPD_PUBLIC_STORE_H
#define UMAPD_PUBLIC_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <umapd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* struct umapd_store_ops.abi: the layout of struct umapd_store_ops below. */
#define UMAPD_STORE_ABI 1

struct umapd_store;

/*
 * Where a byte range lives, for umapd's asynchronous I/O engines (io_uring,
 * libaio), which then read and write the descriptor themselves instead of
 * calling read/write.
 */
struct umapd_store_extent {
	int fd;          /* descriptor to read or write; on a read, -1 means a hole (zeros) */
	uint64_t off;    /* offset in fd */
	size_t len;      /* bytes from the asked offset that lie contiguously there: > 0, <= len asked */
	unsigned align;  /* 0, or the O_DIRECT alignment that buffer, offset and length need */
};

struct umapd_store_ops {
	unsigned abi;      /* UMAPD_STORE_ABI */
	const char *name;  /* for messages, e.g. "s3" */

	/* Fill all of buf with the bytes at [off, off + len).  Bytes past the
	 * end of the data read as zeros.  Required. */
	int (*read)(struct umapd_store *s, void *buf, size_t len, uint64_t off);
	/* Store all of buf at [off, off + len), or fail.  umapd writes past
	 * size() only for a UMAPD_GROWABLE region; size() then grows.
	 * Required (a read-only store may return -EROFS). */
	int (*write)(struct umapd_store *s, const void *buf, size_t len, uint64_t off);
	/* Make the writes so far durable.  Called after umapd_flush() and at
	 * unmap.  Required (may just return 0). */
	int (*sync)(struct umapd_store *s);
	/* Bytes of data now (>= 0), or a negative errno.  Read once when the
	 * region is mapped: bytes of the region past it read as zeros and,
	 * unless the region is UMAPD_GROWABLE, are not written.  Required. */
	int64_t (*size)(struct umapd_store *s);
	/* Release everything; s is not used again.  Required. */
	void (*close)(struct umapd_store *s);
	/* Optional (NULL: umapd always calls read/write).  Describe
	 * [off, off + len) in *x; write != 0: the range is about to be
	 * written, so create what backs it.  Return -EOPNOTSUPP to have this
	 * range go through read/write instead; another negative errno fails
	 * the I/O.  A descriptor given here must stay open and valid until
	 * close(): the I/O may complete after the call returned. */
	int (*extent)(struct umapd_store *s, uint64_t off, size_t len, int write, struct umapd_store_extent *x);
};

/* Embed as the first member of your store. */
struct umapd_store {
	const struct umapd_store_ops *ops;
};

/*
 * Map [offset, offset + length) of store, as umapd_map() maps a file: the
 * same addr, length, prot, flags and opts (opts->direct does not apply: a
 * store does its own I/O; open a file store with UMAPD_STORE_DIRECT
 * instead).  offset: a multiple of the region's page size.
 * On success the region owns the store (see Ownership above).
 * Returns the region's address, or NULL with errno:
 *   EFAULT  store is NULL
 *   EINVAL  store->ops NULL, ops->abi not UMAPD_STORE_ABI, a required op
 *           missing, a built-in store that already backs a region or is
 *           wrapped by an injection store; and every EINVAL of umapd_map()
 *   EACCES  PROT_WRITE on a built-in store opened UMAPD_STORE_RDONLY
 *   EOVERFLOW, EPERM, ENOMEM, ENOTSUP, EEXIST: as umapd_map()
 *   any negative errno that ops->size returned
 */
void *umapd_map_store(void *addr, size_t length, int prot, int flags, struct umapd_store *store,
		      uint64_t offset, const struct umapd_region_opts *opts);

/*
 * Close a store that no region owns (one that umapd_map_store() did not
 * take, or that you never mapped).  NULL is ignored.
 */
void umapd_store_close(struct umapd_store *store);

/* Flags of the built-in stores' constructors. */
#define UMAPD_STORE_CREATE 0x1 /* sparse: create the directory and its metadata if missing */
#define UMAPD_STORE_RDONLY 0x2 /* the store is only read: regions on it cannot be PROT_WRITE */
#define UMAPD_STORE_DIRECT 0x4 /* file: read and write with O_DIRECT (bypass the page cache) */

/*
 * The file store: the store umapd_map() uses.  umapd keeps its own
 * duplicate of fd; close yours whenever you like.  flags: UMAPD_STORE_RDONLY
 * (fd needs read access only), UMAPD_STORE_DIRECT (O_DIRECT; unaligned
 * lengths, offsets and buffers still work, through a bounce buffer).
 * Errors: EFAULT (out NULL), EINVAL (unknown flag; the file system refuses
 * O_DIRECT), EBADF, EACCES (fd not open for reading, or not O_RDWR without
 * UMAPD_STORE_RDONLY, or O_APPEND), ENODEV (not a regular file or block
 * device), ENOMEM.
 */
int umapd_store_file(int fd, int flags, struct umapd_store **out);

/*
 * The sparse store: a directory of chunk files of chunk_size bytes, each
 * created by the first write into it and never by a read, so a region can
 * be larger than one file may be and what was never written takes no disk.
 * A metadata file in the directory records the format version, chunk size
 * and logical size (docs/stores.md).
 * chunk_size: a multiple of 4096 up to 1 TiB; 0: the recorded one, or
 * 64 MiB for a new store.  size: the logical size of a new store; for an
 * existing one, a larger value grows it and 0 keeps it.
 * flags: UMAPD_STORE_CREATE (make the directory -- its last component --
 * and metadata if missing), UMAPD_STORE_RDONLY.
 * Errors: EFAULT (dir or out NULL), EINVAL (bad flags or chunk size,
 * CREATE with RDONLY, a metadata file that is corrupt or of another
 * version or chunk size -- the log says which; a larger size with RDONLY),
 * ENOENT (no such directory or no metadata, without CREATE), ENOTDIR,
 * EACCES, EROFS, ENOMEM.
 */
int umapd_store_sparse(const char *dir, size_t chunk_size, uint64_t size, int flags,
		       struct umapd_store **out);

/*
 * The memory store: data in anonymous memory, zeros until written, of
 * logical size `size`, growing with writes up to `limit` bytes (0: no
 * limit); a write past the limit fails with ENOSPC.  Its data lives as long
 * as the store.  Errors: EFAULT (out NULL), EINVAL (size > limit, limit >
 * INT64_MAX), ENOMEM.
 */
int umapd_store_memory(uint64_t size, uint64_t limit, struct umapd_store **out);

/*
 * The fault-injection store: wraps inner (any store, built-in or yours)
 * and fails or delays its operations as spec says.  On success it owns
 * inner (closing it closes inner); on failure inner stays yours.
 * spec: comma-separated key=value, no spaces, at most 255 characters:
 *   read_error=ERR[:P]   a read fails with errno ERR with probability P
 *   write_error=ERR[:P]  a write likewise;   sync_error=ERR[:P]  a sync likewise
 *   enospc_after=SIZE    a write fails with ENOSPC once it would take the
 *                        bytes written through this store past SIZE (K/M/G/T)
 *   fail_reads_after=N   every read after the first N (counted from when
 *                        the spec took effect) fails, with read_error's ERR or EIO
 *   fail_writes_after=N  the same for writes
 *   latency_us=N         every read, write and sync sleeps N us first (<= 10 s)
 *   seed=N               seed of the random choices (default 1)
 * ERR: an errno name (EIO, ENOSPC, EDQUOT, EROFS, ...) or number 1..4095;
 * P: 0..1 or a percentage ("1%"), default 1.  "" injects nothing.  The
 * store has no extents: all its I/O goes through read and write.
 * Errors: EFAULT (inner, spec or out NULL), EINVAL (bad spec; the reason is
 * logged), ENOMEM.
 */
int umapd_store_inject(struct umapd_store *inner, const char *spec, struct umapd_store **out);

/*
 * Replace the spec of an injection store, also while a region uses it.
 * The counts behind fail_*_after start again; the bytes written count
 * toward enospc_after are kept, so raising it lets writes succeed again.
 * Errors: EFAULT (NULL), EINVAL (not an injection store, or bad spec).
 */
int umapd_store_inject_set(struct umapd_store *store, const char *spec);

/* What an injection store saw and did since it was opened. */
struct umapd_inject_counters {
	uint64_t reads, writes, syncs;          /* operations asked for */
	uint64_t read_errors, write_errors, sync_errors; /* errors injected by *_error and fail_*_after */
	uint64_t enospc_errors;                 /* writes refused by enospc_after */
	uint64_t bytes_written;                 /* bytes the inner store took */
	uint64_t delays;                        /* operations slowed by latency_us */
	uint64_t reserved[7];
};

/* Errors: EFAULT (NULL), EINVAL (not an injection store). */
int umapd_store_inject_counters(struct umapd_store *store, struct umapd_inject_counters *out);

#ifdef __cplusplus
}
#endif

#endif /* UMAPD_PUBLIC_STORE_H */
