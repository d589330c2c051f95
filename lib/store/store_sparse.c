/*
 * The sparse store: a directory of fixed-size chunk files, each created by
 * the first write into it (never by a read), so a region can be larger than
 * one file may be and chunks never written cost no disk.
 *
 * The directory holds:
 *   umapd-sparse.meta       "umapd-sparse 1\nchunk_size N\nsize N\n": the
 *                           format version, the chunk size and the logical
 *                           size, replaced atomically (write, fsync, rename)
 *   chunk-<16 hex digits>   chunk number i: bytes [i*chunk_size, (i+1)*chunk_size)
 *                           of the data, as long as its highest byte written
 * A missing chunk, and a chunk's bytes past its end, read as zeros.
 *
 * Chunk descriptors are kept open until close (up to SPARSE_OPEN_MAX), so
 * that an asynchronous engine may use them after extent() returned; past
 * that cap a read or write opens and closes the chunk itself and extent()
 * says -EOPNOTSUPP.  The logical size grows with writes past it and is
 * written to the metadata file by sync and close.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

#define SPARSE_META "umapd-sparse.meta"
#define SPARSE_META_TMP "umapd-sparse.meta.tmp"
#define SPARSE_VERSION 1
#define SPARSE_OPEN_MAX 256
#define SPARSE_SLOTS 512 /* open-addressed table, at most half full */
#define SPARSE_CHUNK_DEFAULT ((uint64_t)64 << 20)
#define SPARSE_CHUNK_MAX ((uint64_t)1 << 40)

struct sparse_slot {
	uint64_t chunk;
	int fd;                /* -1: slot empty */
	bool dirty;            /* written since the last sync */
};

struct store_sparse {
	struct store base;
	/* Set at open, then read-only. */
	int dirfd;
	bool rdonly;
	uint64_t chunk_size;
	char *path;                 /* for messages */

	/* lock protects everything below.  No I/O on chunk data is done
	 * under it; opening and creating chunk files is. */
	pthread_mutex_t lock;
	uint64_t size;              /* logical size */
	bool meta_dirty;            /* size changed since the metadata was written */
	bool dir_dirty;             /* chunk files created since the last sync */
	struct sparse_slot slots[SPARSE_SLOTS];
	unsigned nopen;
	uint64_t *spill;            /* chunks written, not kept open, not synced */
	size_t nspill, cap_spill;

	pthread_mutex_t sync_lock;  /* one sync at a time: a second must not return
				     * while the first still flushes what both cover */
};

static void chunk_name(char *buf, size_t len, uint64_t chunk)
{
	snprintf(buf, len, "chunk-%016" PRIx64, chunk);
}

static struct sparse_slot *slot_find(struct store_sparse *sp, uint64_t chunk)
{
	unsigned h = (unsigned)((chunk * 0x9E3779B97F4A7C15ull) >> 55) & (SPARSE_SLOTS - 1);

	for (unsigned i = 0; i < SPARSE_SLOTS; i++) {
		struct sparse_slot *s = &sp->slots[(h + i) & (SPARSE_SLOTS - 1)];

		if (s->fd < 0 || s->chunk == chunk)
			return s;
	}
	return NULL; /* cannot happen: the table is at most half full */
}

/*
 * Under sp->lock: the descriptor of a chunk, opened (created if create)
 * and kept if there is room, else opened for this one call (*temp: the
 * caller closes it).  -ENOENT: the chunk does not exist (and !create).
 * create also records the chunk as written, for sync.
 */
static int chunk_get(struct store_sparse *sp, uint64_t chunk, bool create, int *fd, bool *temp)
{
	struct sparse_slot *s = slot_find(sp, chunk);
	char name[40];
	int f;

	*temp = false;
	if (s && s->fd >= 0) {
		if (create)
			s->dirty = true;
		*fd = s->fd;
		return 0;
	}
	chunk_name(name, sizeof(name), chunk);
	f = openat(sp->dirfd, name, (sp->rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (f < 0 && errno == ENOENT && create) {
		f = openat(sp->dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
		if (f >= 0)
			sp->dir_dirty = true;
	}
	if (f < 0)
		return -errno;
	if (s && sp->nopen < SPARSE_OPEN_MAX) {
		s->chunk = chunk;
		s->fd = f;
		s->dirty = create;
		sp->nopen++;
	} else {
		*temp = true;
		if (create && !(sp->nspill && sp->spill[sp->nspill - 1] == chunk)) {
			if (sp->nspill == sp->cap_spill) {
				size_t n = sp->cap_spill ? sp->cap_spill * 2 : 64;
				uint64_t *v = realloc(sp->spill, n * sizeof(*v));

				if (!v) {
					close(f);
					return -ENOMEM;
				}
				sp->spill = v;
				sp->cap_spill = n;
			}
			sp->spill[sp->nspill++] = chunk;
		}
	}
	*fd = f;
	return 0;
}

static int pread_full(int fd, char *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) { /* past the chunk's end: zeros */
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int pwrite_full(int fd, const char *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int sparse_read(struct store *s, void *buf, size_t len, uint64_t off)
{
	struct store_sparse *sp = (struct store_sparse *)s;
	char *p = buf;

	while (len > 0) {
		uint64_t chunk = off / sp->chunk_size, in = off % sp->chunk_size;
		size_t n = sp->chunk_size - in < len ? (size_t)(sp->chunk_size - in) : len;
		bool temp;
		int fd, ret;

		pthread_mutex_lock(&sp->lock);
		ret = chunk_get(sp, chunk, false, &fd, &temp);
		pthread_mutex_unlock(&sp->lock);
		if (ret == -ENOENT) {
			memset(p, 0, n); /* a chunk never written */
		} else if (ret < 0) {
			return ret;
		} else {
			ret = pread_full(fd, p, n, in);
			if (temp)
				close(fd);
			if (ret < 0)
				return ret;
		}
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

static int sparse_write(struct store *s, const void *buf, size_t len, uint64_t off)
{
	struct store_sparse *sp = (struct store_sparse *)s;
	const char *p = buf;
	uint64_t end = off + len;

	if (sp->rdonly)
		return -EROFS;
	if (end < off || end > (uint64_t)INT64_MAX)
		return -EFBIG;
	while (len > 0) {
		uint64_t chunk = off / sp->chunk_size, in = off % sp->chunk_size;
		size_t n = sp->chunk_size - in < len ? (size_t)(sp->chunk_size - in) : len;
		bool temp;
		int fd, ret;

		pthread_mutex_lock(&sp->lock);
		ret = chunk_get(sp, chunk, true, &fd, &temp);
		pthread_mutex_unlock(&sp->lock);
		if (ret < 0)
			return ret;
		ret = pwrite_full(fd, p, n, in);
		if (temp)
			close(fd);
		if (ret < 0)
			return ret;
		p += n;
		len -= n;
		off += n;
	}
	pthread_mutex_lock(&sp->lock);
	if (end > sp->size) {
		sp->size = end;
		sp->meta_dirty = true;
	}
	pthread_mutex_unlock(&sp->lock);
	return 0;
}

/* The range lies in one chunk's kept descriptor, or is a hole (reads). */
static int sparse_extent(struct store *s, uint64_t off, size_t len, int write, struct store_extent *x)
{
	struct store_sparse *sp = (struct store_sparse *)s;
	uint64_t chunk = off / sp->chunk_size, in = off % sp->chunk_size;
	size_t n = sp->chunk_size - in < len ? (size_t)(sp->chunk_size - in) : len;
	bool temp = false;
	int fd = -1, ret;

	if (len == 0)
		return -EINVAL;
	if (write && sp->rdonly)
		return -EROFS;
	if (write && (off + n < off || off + n > (uint64_t)INT64_MAX))
		return -EFBIG;
	pthread_mutex_lock(&sp->lock);
	ret = chunk_get(sp, chunk, write, &fd, &temp);
	if (ret == 0 && temp) {
		/* No room to keep it open for an I/O that outlives this call. */
		close(fd);
		ret = -EOPNOTSUPP;
	}
	if (ret == 0 && write && off + n > sp->size) {
		/* The write is about to happen; size follows as for write(). */
		sp->size = off + n;
		sp->meta_dirty = true;
	}
	pthread_mutex_unlock(&sp->lock);
	if (ret == -ENOENT && !write) {
		fd = -1; /* hole: zeros */
		ret = 0;
	}
	if (ret < 0)
		return ret;
	x->fd = fd;
	x->off = in;
	x->len = n;
	x->align = 0;
	return 0;
}

static int64_t sparse_size(struct store *s)
{
	struct store_sparse *sp = (struct store_sparse *)s;
	uint64_t size;

	pthread_mutex_lock(&sp->lock);
	size = sp->size;
	pthread_mutex_unlock(&sp->lock);
	return (int64_t)size;
}

/* Write the metadata file atomically: a new file, synced, renamed over. */
static int meta_write(int dirfd, uint64_t chunk_size, uint64_t size)
{
	char text[128];
	int n = snprintf(text, sizeof(text), "umapd-sparse %d\nchunk_size %" PRIu64 "\nsize %" PRIu64 "\n",
			 SPARSE_VERSION, chunk_size, size);
	int fd, ret;

	fd = openat(dirfd, SPARSE_META_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0)
		return -errno;
	ret = pwrite_full(fd, text, (size_t)n, 0);
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (ret == 0 && renameat(dirfd, SPARSE_META_TMP, dirfd, SPARSE_META) < 0)
		ret = -errno;
	if (ret == 0 && fsync(dirfd) < 0)
		ret = -errno;
	if (ret < 0)
		unlinkat(dirfd, SPARSE_META_TMP, 0);
	return ret;
}

static int sparse_sync(struct store *s)
{
	struct store_sparse *sp = (struct store_sparse *)s;
	int fds[SPARSE_OPEN_MAX];
	unsigned nfds = 0;
	uint64_t *spill, size;
	size_t nspill;
	bool meta, dir;
	int ret = 0;

	if (sp->rdonly)
		return 0;
	pthread_mutex_lock(&sp->sync_lock);
	pthread_mutex_lock(&sp->lock);
	for (unsigned i = 0; i < SPARSE_SLOTS; i++)
		if (sp->slots[i].fd >= 0 && sp->slots[i].dirty) {
			sp->slots[i].dirty = false;
			fds[nfds++] = sp->slots[i].fd;
		}
	spill = sp->spill;
	nspill = sp->nspill;
	sp->spill = NULL;
	sp->nspill = sp->cap_spill = 0;
	meta = sp->meta_dirty;
	dir = sp->dir_dirty;
	size = sp->size;
	sp->meta_dirty = sp->dir_dirty = false;
	pthread_mutex_unlock(&sp->lock);

	/* Kept descriptors stay open until close, so they are safe to use here. */
	for (unsigned i = 0; i < nfds; i++)
		if (fdatasync(fds[i]) < 0 && ret == 0)
			ret = -errno;
	for (size_t i = 0; i < nspill; i++) {
		char name[40];
		int fd;

		chunk_name(name, sizeof(name), spill[i]);
		fd = openat(sp->dirfd, name, O_RDWR | O_CLOEXEC);
		if (fd < 0 || fdatasync(fd) < 0) {
			if (ret == 0)
				ret = -errno;
		}
		if (fd >= 0)
			close(fd);
	}
	free(spill);
	if (meta) {
		int m = meta_write(sp->dirfd, sp->chunk_size, size);

		if (m < 0 && ret == 0)
			ret = m;
	} else if (dir && fsync(sp->dirfd) < 0 && ret == 0) {
		ret = -errno;
	}
	if (ret < 0) {
		/* Keep the state that needs syncing, so a later sync tries again:
		 * everything is marked again (fsync of a clean file is cheap). */
		pthread_mutex_lock(&sp->lock);
		for (unsigned i = 0; i < SPARSE_SLOTS; i++)
			for (unsigned j = 0; j < nfds; j++)
				if (sp->slots[i].fd == fds[j])
					sp->slots[i].dirty = true;
		sp->meta_dirty |= meta;
		sp->dir_dirty |= dir;
		pthread_mutex_unlock(&sp->lock);
		ulog_error("sparse store %s: sync failed: %s", sp->path, ulog_errname(-ret));
	}
	pthread_mutex_unlock(&sp->sync_lock);
	return ret;
}

static void sparse_free(struct store_sparse *sp)
{
	for (unsigned i = 0; i < SPARSE_SLOTS; i++)
		if (sp->slots[i].fd >= 0)
			close(sp->slots[i].fd);
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	pthread_mutex_destroy(&sp->lock);
	pthread_mutex_destroy(&sp->sync_lock);
	free(sp->spill);
	free(sp->path);
	free(sp);
}

static void sparse_close(struct store *s)
{
	struct store_sparse *sp = (struct store_sparse *)s;

	/* The size must survive: record it if it changed (data is synced by
	 * the engine's flush before a region goes; close has no error path). */
	if (!sp->rdonly && sp->meta_dirty && meta_write(sp->dirfd, sp->chunk_size, sp->size) < 0)
		ulog_error("sparse store %s: cannot record its size %" PRIu64 " in " SPARSE_META,
			   sp->path, sp->size);
	sparse_free(sp);
}

static const struct store_ops sparse_ops = {
	.name = "sparse",
	.read = sparse_read,
	.write = sparse_write,
	.sync = sparse_sync,
	.size = sparse_size,
	.close = sparse_close,
	.extent = sparse_extent,
};

/* "key N\n" at *p: a decimal without sign or leading junk. */
static bool meta_field(const char **p, const char *key, uint64_t *v)
{
	size_t k = strlen(key);
	const char *s = *p;
	uint64_t x = 0;

	if (strncmp(s, key, k) != 0 || s[k] != ' ')
		return false;
	s += k + 1;
	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (x > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	if (*s != '\n')
		return false;
	*v = x;
	*p = s + 1;
	return true;
}

/* Read and check the metadata file: -ENOENT if absent, -EINVAL (logged) if bad. */
static int meta_read(int dirfd, const char *path, uint64_t *chunk_size, uint64_t *size)
{
	char text[256];
	const char *p = text;
	uint64_t ver = 0;
	ssize_t n;
	int fd;

	fd = openat(dirfd, SPARSE_META, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ELOOP ? -EINVAL : -errno;
	n = pread(fd, text, sizeof(text) - 1, 0);
	close(fd);
	if (n < 0)
		return -errno;
	text[n] = '\0';
	if ((size_t)n == sizeof(text) - 1 || strlen(text) != (size_t)n || !meta_field(&p, "umapd-sparse", &ver)) {
		ulog_error("sparse store %s: " SPARSE_META " is not a umapd sparse-store metadata file", path);
		return -EINVAL;
	}
	if (ver != SPARSE_VERSION) {
		ulog_error("sparse store %s: format version %" PRIu64 ", this library reads version %d",
			   path, ver, SPARSE_VERSION);
		return -EINVAL;
	}
	if (!meta_field(&p, "chunk_size", chunk_size) || !meta_field(&p, "size", size) || *p != '\0' ||
	    *chunk_size == 0 || *chunk_size % 4096 || *chunk_size > SPARSE_CHUNK_MAX ||
	    *size > (uint64_t)INT64_MAX) {
		ulog_error("sparse store %s: " SPARSE_META " is corrupt (want \"umapd-sparse 1\", "
			   "\"chunk_size N\" with N a multiple of 4096, \"size N\", one per line)", path);
		return -EINVAL;
	}
	return 0;
}

int store_sparse_open(const char *dir, uint64_t chunk_size, uint64_t size, int flags, struct store **out)
{
	bool create = flags & STORE_SPARSE_CREATE, rdonly = flags & STORE_SPARSE_RDONLY;
	uint64_t have_chunk = 0, have_size = 0;
	struct store_sparse *sp;
	int ret;

	if (!dir || !out)
		return -EFAULT;
	if ((flags & ~(STORE_SPARSE_CREATE | STORE_SPARSE_RDONLY)) || (create && rdonly) || dir[0] == '\0')
		return -EINVAL;
	if (chunk_size % 4096 || chunk_size > SPARSE_CHUNK_MAX || size > (uint64_t)INT64_MAX)
		return -EINVAL;
	sp = calloc(1, sizeof(*sp));
	if (!sp)
		return -ENOMEM;
	for (unsigned i = 0; i < SPARSE_SLOTS; i++)
		sp->slots[i].fd = -1;
	pthread_mutex_init(&sp->lock, NULL);
	pthread_mutex_init(&sp->sync_lock, NULL);
	sp->base.ops = &sparse_ops;
	sp->rdonly = rdonly;
	sp->path = strdup(dir);
	sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dirfd < 0 && errno == ENOENT && create) {
		if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
			ret = -errno;
			goto fail;
		}
		sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (sp->dirfd < 0 || !sp->path) {
		ret = sp->path ? -errno : -ENOMEM;
		goto fail;
	}
	if (!rdonly && faccessat(sp->dirfd, ".", W_OK, AT_EACCESS) < 0) {
		ret = -errno; /* EACCES, EROFS: chunk files could not be created */
		goto fail;
	}
	ret = meta_read(sp->dirfd, dir, &have_chunk, &have_size);
	if (ret == -ENOENT && create) {
		sp->chunk_size = chunk_size ? chunk_size : SPARSE_CHUNK_DEFAULT;
		sp->size = size;
		ret = meta_write(sp->dirfd, sp->chunk_size, sp->size);
		if (ret < 0)
			goto fail;
	} else if (ret < 0) {
		goto fail;
	} else {
		if (chunk_size && chunk_size != have_chunk) {
			ulog_error("sparse store %s has chunk size %" PRIu64 ", not the %" PRIu64 " asked for",
				   dir, have_chunk, chunk_size);
			ret = -EINVAL;
			goto fail;
		}
		sp->chunk_size = have_chunk;
		sp->size = have_size;
		if (size > have_size) {
			if (rdonly) {
				ret = -EINVAL;
				goto fail;
			}
			sp->size = size; /* grow, recorded at sync or close */
			sp->meta_dirty = true;
		}
	}
	*out = &sp->base;
	return 0;

fail:
	sparse_free(sp);
	return ret;
}
