/*
 * The public store constructors (include/umapd_store.h): argument checks,
 * and the internal negative errno turned into -1 plus errno.
 * umapd_map_store itself is in api.c, next to umapd_map.
 */
#include <errno.h>
#include <stddef.h>

#include "store/store.h"
#include "umapd_store.h"
#include "util/log.h"

#define API __attribute__((visibility("default")))

static int fail(int neg)
{
	errno = -neg;
	return -1;
}

/* Hand an internal store out as a public one, or close it.  ret: what
 * opening s returned (s is only valid if it is 0). */
static int expose(int ret, struct store *s, bool rdonly, struct umapd_store **out)
{
	if (ret == 0) {
		ret = store_plugin_expose(s, rdonly, out);
		if (ret < 0)
			store_close(s);
	}
	return ret < 0 ? fail(ret) : 0;
}

API int umapd_store_file(int fd, int flags, struct umapd_store **out)
{
	struct store *s = NULL;
	int ret;

	if (!out)
		return fail(-EFAULT);
	if (flags & ~(UMAPD_STORE_RDONLY | UMAPD_STORE_DIRECT))
		return fail(-EINVAL);
	ret = store_file_open(fd, !(flags & UMAPD_STORE_RDONLY), !!(flags & UMAPD_STORE_DIRECT), &s);
	return expose(ret, s, flags & UMAPD_STORE_RDONLY, out);
}

API int umapd_store_sparse(const char *dir, size_t chunk_size, uint64_t size, int flags,
			   struct umapd_store **out)
{
	struct store *s = NULL;
	int sf = 0, ret;

	if (!dir || !out)
		return fail(-EFAULT);
	if (flags & ~(UMAPD_STORE_CREATE | UMAPD_STORE_RDONLY))
		return fail(-EINVAL);
	if (flags & UMAPD_STORE_CREATE)
		sf |= STORE_SPARSE_CREATE;
	if (flags & UMAPD_STORE_RDONLY)
		sf |= STORE_SPARSE_RDONLY;
	ret = store_sparse_open(dir, chunk_size, size, sf, &s);
	return expose(ret, s, flags & UMAPD_STORE_RDONLY, out);
}

API int umapd_store_memory(uint64_t size, uint64_t limit, struct umapd_store **out)
{
	struct store *s = NULL;
	int ret;

	if (!out)
		return fail(-EFAULT);
	ret = store_memory_open(size, limit, &s);
	return expose(ret, s, false, out);
}

/* Parse spec only to say why it is refused (the store parses it again). */
static int spec_check(const char *fn, const char *spec)
{
	struct inject_cfg c;
	char why[256];

	if (inject_parse(spec, &c, why, sizeof(why)) < 0) {
		ulog_error("%s: fault-injection spec \"%.300s\" is invalid: %s", fn, spec, why);
		return -EINVAL;
	}
	return 0;
}

API int umapd_store_inject(struct umapd_store *inner, const char *spec, struct umapd_store **out)
{
	struct store *w = NULL, *inj = NULL;
	int ret;

	if (!inner || !spec || !out)
		return fail(-EFAULT);
	ret = spec_check("umapd_store_inject", spec);
	if (ret == 0)
		ret = store_plugin_wrap(inner, false, &w);
	if (ret == 0) {
		ret = store_inject_open(w, spec, &inj);
		if (ret < 0)
			store_plugin_unwrap(w);
	}
	if (ret == 0) {
		ret = store_plugin_expose(inj, store_plugin_rdonly(inner), out);
		if (ret < 0)
			store_plugin_unwrap(store_inject_detach(inj)); /* inner is the caller's again */
	}
	return ret < 0 ? fail(ret) : 0;
}

API int umapd_store_inject_set(struct umapd_store *store, const char *spec)
{
	struct store *s;
	int ret;

	if (!store || !spec)
		return fail(-EFAULT);
	s = store_plugin_builtin(store);
	if (!store_is_inject(s))
		return fail(-EINVAL);
	ret = spec_check("umapd_store_inject_set", spec);
	if (ret == 0)
		ret = store_inject_set(s, spec);
	return ret < 0 ? fail(ret) : 0;
}

API int umapd_store_inject_counters(struct umapd_store *store, struct umapd_inject_counters *out)
{
	struct inject_counters n;
	struct store *s;

	if (!store || !out)
		return fail(-EFAULT);
	s = store_plugin_builtin(store);
	if (!store_is_inject(s))
		return fail(-EINVAL);
	store_inject_counters(s, &n);
	*out = (struct umapd_inject_counters){
		.reads = n.reads,
		.writes = n.writes,
		.syncs = n.syncs,
		.read_errors = n.read_errors,
		.write_errors = n.write_errors,
		.sync_errors = n.sync_errors,
		.enospc_errors = n.enospc_errors,
		.bytes_written = n.bytes_written,
		.delays = n.delays,
	};
	return 0;
}

API void umapd_store_close(struct umapd_store *store)
{
	if (store && store->ops && store->ops->close)
		store->ops->close(store);
}
