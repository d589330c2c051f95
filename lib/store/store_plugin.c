/*
 * Public stores (include/umapd_store.h) and internal ones (store.h), each
 * seen as the other, so that the engine only ever sees a struct store and
 * users only ever see a struct umapd_store.
 *
 *   plugin:  a struct store over a user's struct umapd_store (what a region
 *            holds for umapd_map_store), forwarding every op.
 *   builtin: a struct umapd_store over one of our struct stores (what
 *            umapd_store_file() and friends hand out), forwarding every op.
 *
 * A built-in store handed to umapd_map_store goes through both (two
 * indirect calls per I/O, nothing next to the I/O itself), which keeps the
 * user's pointer valid and usable (umapd_store_inject_set) until unmap.
 * The two extent structures have the same fields and are copied field by
 * field.
 */
#include "store/store.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "umapd_store.h"

/* --- builtin: public face of an internal store --- */

struct store_builtin {
	struct umapd_store pub;
	struct store *s;         /* owned */
	bool rdonly;             /* made with UMAPD_STORE_RDONLY */
	atomic_bool taken;       /* backs a region or is wrapped: not to be taken twice */
};

static const struct umapd_store_ops builtin_ops;

static struct store *inner_of(struct umapd_store *p)
{
	return ((struct store_builtin *)p)->s;
}

static int b_read(struct umapd_store *p, void *buf, size_t len, uint64_t off)
{
	return store_read(inner_of(p), buf, len, off);
}

static int b_write(struct umapd_store *p, const void *buf, size_t len, uint64_t off)
{
	return store_write(inner_of(p), buf, len, off);
}

static int b_sync(struct umapd_store *p)
{
	return store_sync(inner_of(p));
}

static int64_t b_size(struct umapd_store *p)
{
	return store_size(inner_of(p));
}

static void b_close(struct umapd_store *p)
{
	store_close(inner_of(p));
	free(p);
}

static int b_extent(struct umapd_store *p, uint64_t off, size_t len, int write, struct umapd_store_extent *x)
{
	struct store_extent e;
	int ret = store_extent(inner_of(p), off, len, write, &e);

	if (ret == 0) {
		x->fd = e.fd;
		x->off = e.off;
		x->len = e.len;
		x->align = e.align;
	}
	return ret;
}

static const struct umapd_store_ops builtin_ops = {
	.abi = UMAPD_STORE_ABI,
	.name = "builtin",
	.read = b_read,
	.write = b_write,
	.sync = b_sync,
	.size = b_size,
	.close = b_close,
	.extent = b_extent,
};

int store_plugin_expose(struct store *s, bool rdonly, struct umapd_store **out)
{
	struct store_builtin *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->pub.ops = &builtin_ops;
	b->s = s;
	b->rdonly = rdonly;
	atomic_init(&b->taken, false);
	*out = &b->pub;
	return 0;
}

struct store *store_plugin_builtin(struct umapd_store *p)
{
	return p && p->ops == &builtin_ops ? inner_of(p) : NULL;
}

bool store_plugin_rdonly(struct umapd_store *p)
{
	return p && p->ops == &builtin_ops && ((struct store_builtin *)p)->rdonly;
}

/* --- plugin: internal face of a public store --- */

struct store_plugin {
	struct store base;
	struct umapd_store *pub; /* owned once store_plugin_wrap's caller keeps us */
};

static struct umapd_store *pub_of(struct store *s)
{
	return ((struct store_plugin *)s)->pub;
}

static int p_read(struct store *s, void *buf, size_t len, uint64_t off)
{
	struct umapd_store *p = pub_of(s);

	return p->ops->read(p, buf, len, off);
}

static int p_write(struct store *s, const void *buf, size_t len, uint64_t off)
{
	struct umapd_store *p = pub_of(s);

	return p->ops->write(p, buf, len, off);
}

static int p_sync(struct store *s)
{
	struct umapd_store *p = pub_of(s);

	return p->ops->sync(p);
}

static int64_t p_size(struct store *s)
{
	struct umapd_store *p = pub_of(s);

	return p->ops->size(p);
}

static void p_close(struct store *s)
{
	struct umapd_store *p = pub_of(s);

	p->ops->close(p);
	free(s);
}

static int p_extent(struct store *s, uint64_t off, size_t len, int write, struct store_extent *x)
{
	struct umapd_store *p = pub_of(s);
	struct umapd_store_extent e;
	int ret;

	if (!p->ops->extent)
		return -EOPNOTSUPP;
	ret = p->ops->extent(p, off, len, write, &e);
	if (ret > 0)
		ret = -EIO; /* not a valid answer: do not guess */
	if (ret == 0 && (e.len == 0 || e.len > len || (e.fd < 0 && write)))
		ret = -EIO; /* a store's bug must not become the engine's */
	if (ret == 0) {
		x->fd = e.fd;
		x->off = e.off;
		x->len = e.len;
		x->align = e.align;
	}
	return ret;
}

static const struct store_ops plugin_ops = {
	.name = "plugin",
	.read = p_read,
	.write = p_write,
	.sync = p_sync,
	.size = p_size,
	.close = p_close,
	.extent = p_extent,
};

int store_plugin_wrap(struct umapd_store *pub, bool writable, struct store **out)
{
	const struct umapd_store_ops *o;
	struct store_plugin *w;
	bool no = false;

	if (!pub)
		return -EFAULT;
	o = pub->ops;
	if (!o || o->abi != UMAPD_STORE_ABI || !o->read || !o->write || !o->sync || !o->size || !o->close)
		return -EINVAL;
	if (o == &builtin_ops) {
		struct store_builtin *b = (struct store_builtin *)pub;

		if (writable && b->rdonly)
			return -EACCES;
		if (!atomic_compare_exchange_strong(&b->taken, &no, true))
			return -EINVAL;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		if (o == &builtin_ops)
			atomic_store(&((struct store_builtin *)pub)->taken, false);
		return -ENOMEM;
	}
	w->base.ops = &plugin_ops;
	w->pub = pub;
	*out = &w->base;
	return 0;
}

void store_plugin_unwrap(struct store *s)
{
	struct umapd_store *p = pub_of(s);

	if (p->ops == &builtin_ops)
		atomic_store(&((struct store_builtin *)p)->taken, false);
	free(s);
}
