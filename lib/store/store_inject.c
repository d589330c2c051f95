/*
 * The fault-injection store: wraps another store and makes its operations
 * fail, or take longer, as a spec string says, so that the engine's error
 * paths (a failed write keeps its page dirty, flush reports the error, the
 * region resumes once space is freed) can be tested on purpose.
 *
 * Spec: comma-separated key=value, no spaces, at most INJECT_SPEC_MAX
 * characters, each key at most once; "" injects nothing.
 *   read_error=ERR[:P]     a read fails with errno ERR with probability P
 *   write_error=ERR[:P]    the same for writes
 *   sync_error=ERR[:P]     the same for sync
 *   enospc_after=SIZE      a write fails with ENOSPC if the bytes written
 *                          through this store since it was opened would
 *                          pass SIZE (K/M/G/T suffixes, binary)
 *   fail_reads_after=N     after N reads since this spec took effect, every
 *                          read fails (with read_error's ERR, else EIO)
 *   fail_writes_after=N    the same for writes (write_error's ERR, else EIO)
 *   latency_us=N           every read, write and sync first sleeps N
 *                          microseconds (at most 10 s)
 *   seed=N                 seed of the random choices (default 1)
 * ERR is an errno name (EIO, ENOSPC, EDQUOT, ...) or number 1..4095; P is
 * a probability 0..1 ("0.01") or a percentage ("1%"), default 1 (always).
 *
 * extent() always answers -EOPNOTSUPP: every I/O then goes through read and
 * write, where the faults are injected.
 */
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PPB 1000000000u /* probabilities are in parts per 10^9 */
#define LATENCY_MAX_US 10000000u

static const struct {
	const char *name;
	int err;
} errnames[] = {
	{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT }, { "EROFS", EROFS },
	{ "EAGAIN", EAGAIN }, { "EINTR", EINTR }, { "ENOMEM", ENOMEM }, { "EFBIG", EFBIG },
	{ "ETIMEDOUT", ETIMEDOUT }, { "EBADF", EBADF }, { "EINVAL", EINVAL }, { "EACCES", EACCES },
	{ "EPERM", EPERM }, { "ENXIO", ENXIO }, { "ENODEV", ENODEV }, { "EOPNOTSUPP", EOPNOTSUPP },
	{ "ECONNRESET", ECONNRESET }, { "EREMOTEIO", EREMOTEIO }, { "ENOLINK", ENOLINK },
	{ "ESTALE", ESTALE }, { "EBUSY", EBUSY }, { "EBADMSG", EBADMSG }, { "EFAULT", EFAULT },
};

/* --- the parser: a pure function of its input --- */

static void say(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* A whole decimal number in s (no sign, no junk). */
static bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (*s != '\0')
		return false;
	*out = v;
	return true;
}

static bool parse_size(const char *s, uint64_t *out)
{
	char num[32];
	size_t n = strlen(s);
	uint64_t v, mult = 1;

	if (n == 0 || n >= sizeof(num))
		return false;
	memcpy(num, s, n + 1);
	switch (num[n - 1]) {
	case 'k': case 'K': mult = (uint64_t)1 << 10; break;
	case 'm': case 'M': mult = (uint64_t)1 << 20; break;
	case 'g': case 'G': mult = (uint64_t)1 << 30; break;
	case 't': case 'T': mult = (uint64_t)1 << 40; break;
	}
	if (mult > 1)
		num[n - 1] = '\0';
	if (!parse_u64(num, &v) || v > UINT64_MAX / mult)
		return false;
	*out = v * mult;
	return true;
}

/* "0", "1", "0.25", ".5", "5%", "0.5%" -> parts per 10^9. */
static bool parse_prob(const char *s, uint32_t *ppb)
{
	uint64_t whole = 0, frac = 0, scale = PPB;
	bool digits = false, percent = false;
	size_t n = strlen(s);

	if (n > 0 && s[n - 1] == '%') {
		percent = true;
		n--;
	}
	size_t i = 0;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		whole = whole * 10 + (uint64_t)(s[i] - '0');
		digits = true;
		if (whole > 100)
			return false;
	}
	if (i < n && s[i] == '.') {
		for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
			digits = true;
			if (scale > 1) { /* digits past 10^-9 do not count */
				scale /= 10;
				frac += (uint64_t)(s[i] - '0') * scale;
			}
		}
	}
	if (!digits || i != n)
		return false;
	uint64_t v = whole * PPB + frac; /* the value times 10^9 */
	if (percent)
		v /= 100;
	if (v > PPB)
		return false;
	*ppb = (uint32_t)v;
	return true;
}

static bool parse_errno(const char *s, int *err)
{
	uint64_t v;

	for (size_t i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
		if (strcmp(s, errnames[i].name) == 0) {
			*err = errnames[i].err;
			return true;
		}
	if (parse_u64(s, &v) && v >= 1 && v <= 4095) {
		*err = (int)v;
		return true;
	}
	return false;
}

/* "ERR" or "ERR:P" */
static bool parse_fault(const char *v, struct inject_fault *f, char *why, size_t whylen, const char *key)
{
	char name[INJECT_SPEC_MAX + 1];
	const char *colon = strchr(v, ':');
	size_t n = colon ? (size_t)(colon - v) : strlen(v);

	memcpy(name, v, n);
	name[n] = '\0';
	if (!parse_errno(name, &f->err)) {
		say(why, whylen, "%s: \"%s\" is not an errno name (EIO, ENOSPC, EDQUOT, ...) or a number 1..4095",
		    key, name);
		return false;
	}
	f->ppb = PPB;
	if (colon && !parse_prob(colon + 1, &f->ppb)) {
		say(why, whylen, "%s: \"%s\" is not a probability (0..1 such as 0.01, or a percentage such as 1%%)",
		    key, colon + 1);
		return false;
	}
	return true;
}

static const char *const keys[] = {
	"read_error", "write_error", "sync_error", "enospc_after",
	"fail_reads_after", "fail_writes_after", "latency_us", "seed",
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

void inject_defaults(struct inject_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->enospc_after = UINT64_MAX;
	c->fail_reads_after = UINT64_MAX;
	c->fail_writes_after = UINT64_MAX;
	c->seed = 1;
}

int inject_parse(const char *spec, struct inject_cfg *out, char *why, size_t whylen)
{
	char entry[INJECT_SPEC_MAX + 1];
	struct inject_cfg c;
	bool seen[NKEYS] = { false };
	size_t len;
	const char *p;

	if (why && whylen)
		why[0] = '\0';
	if (!spec || !out) {
		say(why, whylen, "no spec given");
		return -EINVAL;
	}
	len = strnlen(spec, INJECT_SPEC_MAX + 1);
	if (len > INJECT_SPEC_MAX) {
		say(why, whylen, "the spec is longer than %d characters", INJECT_SPEC_MAX);
		return -EINVAL;
	}
	inject_defaults(&c);
	for (p = spec; len > 0 && p <= spec + len;) {
		const char *comma = memchr(p, ',', (size_t)(spec + len - p));
		size_t n = comma ? (size_t)(comma - p) : (size_t)(spec + len - p);
		char *eq, *val;
		size_t k;

		memcpy(entry, p, n);
		entry[n] = '\0';
		p += n + 1;
		if (n == 0) {
			say(why, whylen, "an empty entry (two commas, or one at an end)");
			return -EINVAL;
		}
		eq = strchr(entry, '=');
		if (!eq) {
			say(why, whylen, "\"%s\" is not key=value", entry);
			return -EINVAL;
		}
		*eq = '\0';
		val = eq + 1;
		for (k = 0; k < NKEYS && strcmp(entry, keys[k]) != 0; k++)
			;
		if (k == NKEYS) {
			say(why, whylen, "unknown key \"%s\" (keys: read_error, write_error, sync_error, "
			    "enospc_after, fail_reads_after, fail_writes_after, latency_us, seed)", entry);
			return -EINVAL;
		}
		if (seen[k]) {
			say(why, whylen, "%s is given twice", entry);
			return -EINVAL;
		}
		seen[k] = true;
		bool ok = true;
		uint64_t v = 0;

		switch (k) {
		case 0:
			if (!parse_fault(val, &c.read, why, whylen, entry))
				return -EINVAL;
			break;
		case 1:
			if (!parse_fault(val, &c.write, why, whylen, entry))
				return -EINVAL;
			break;
		case 2:
			if (!parse_fault(val, &c.sync, why, whylen, entry))
				return -EINVAL;
			break;
		case 3:
			ok = parse_size(val, &c.enospc_after);
			break;
		case 4:
			ok = parse_u64(val, &c.fail_reads_after);
			break;
		case 5:
			ok = parse_u64(val, &c.fail_writes_after);
			break;
		case 6:
			ok = parse_u64(val, &v) && v <= LATENCY_MAX_US;
			c.latency_us = (uint32_t)v;
			break;
		case 7:
			ok = parse_u64(val, &c.seed);
			break;
		}
		if (!ok) {
			say(why, whylen, "%s: \"%s\" is not valid (sizes: a number with an optional K/M/G/T "
			    "suffix; counts and seed: a number; latency_us: 0..10000000)", entry, val);
			return -EINVAL;
		}
		if (!comma)
			break;
	}
	*out = c;
	return 0;
}

/* --- the store --- */

struct store_inject {
	struct store base;
	struct store *inner;     /* owned */
	/* lock protects everything below; held only to decide an operation's
	 * fate, never across the sleep or the inner store's I/O. */
	pthread_mutex_t lock;
	struct inject_cfg cfg;
	uint64_t rng;
	uint64_t reads_since_set, writes_since_set;
	uint64_t reserved_bytes; /* bytes of writes in flight or done: the ENOSPC budget's use */
	struct inject_counters n;
};

static const struct store_ops inject_ops;

/* xorshift64*: reproducible from the seed, good enough to pick failures. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* Under lock: does a fault with this probability hit now? */
static bool hits(struct store_inject *in, const struct inject_fault *f)
{
	if (f->err == 0 || f->ppb == 0)
		return false;
	if (f->ppb >= PPB)
		return true;
	return (rng_next(&in->rng) >> 32) % PPB < f->ppb;
}

static void delay(uint32_t us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000 };

	while (us && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int inject_read(struct store *s, void *buf, size_t len, uint64_t off)
{
	struct store_inject *in = (struct store_inject *)s;
	uint32_t us;
	int err = 0, ret;

	pthread_mutex_lock(&in->lock);
	in->n.reads++;
	if (in->reads_since_set++ >= in->cfg.fail_reads_after)
		err = in->cfg.read.err ? in->cfg.read.err : EIO;
	else if (hits(in, &in->cfg.read))
		err = in->cfg.read.err;
	if (err)
		in->n.read_errors++;
	us = in->cfg.latency_us;
	if (us)
		in->n.delays++;
	pthread_mutex_unlock(&in->lock);
	delay(us);
	if (err)
		return -err;
	ret = store_read(in->inner, buf, len, off);
	return ret;
}

static int inject_write(struct store *s, const void *buf, size_t len, uint64_t off)
{
	struct store_inject *in = (struct store_inject *)s;
	uint32_t us;
	int err = 0, ret;

	pthread_mutex_lock(&in->lock);
	in->n.writes++;
	if (in->writes_since_set++ >= in->cfg.fail_writes_after) {
		err = in->cfg.write.err ? in->cfg.write.err : EIO;
		in->n.write_errors++;
	} else if (hits(in, &in->cfg.write)) {
		err = in->cfg.write.err;
		in->n.write_errors++;
	} else if (in->cfg.enospc_after != UINT64_MAX &&
		   (len > in->cfg.enospc_after || in->reserved_bytes > in->cfg.enospc_after - len)) {
		err = ENOSPC;
		in->n.enospc_errors++;
	} else {
		in->reserved_bytes += len;
	}
	us = in->cfg.latency_us;
	if (us)
		in->n.delays++;
	pthread_mutex_unlock(&in->lock);
	delay(us);
	if (err)
		return -err;
	ret = store_write(in->inner, buf, len, off);
	pthread_mutex_lock(&in->lock);
	if (ret < 0)
		in->reserved_bytes -= len; /* the inner store did not take them */
	else
		in->n.bytes_written += len;
	pthread_mutex_unlock(&in->lock);
	return ret;
}

static int inject_sync(struct store *s)
{
	struct store_inject *in = (struct store_inject *)s;
	uint32_t us;
	int err = 0;

	pthread_mutex_lock(&in->lock);
	in->n.syncs++;
	if (hits(in, &in->cfg.sync)) {
		err = in->cfg.sync.err;
		in->n.sync_errors++;
	}
	us = in->cfg.latency_us;
	if (us)
		in->n.delays++;
	pthread_mutex_unlock(&in->lock);
	delay(us);
	return err ? -err : store_sync(in->inner);
}

static int64_t inject_size(struct store *s)
{
	return store_size(((struct store_inject *)s)->inner);
}

/* Asynchronous engines would bypass read/write and so the faults. */
static int inject_extent(struct store *s, uint64_t off, size_t len, int write, struct store_extent *x)
{
	(void)s;
	(void)off;
	(void)len;
	(void)write;
	(void)x;
	return -EOPNOTSUPP;
}

static void inject_free(struct store_inject *in)
{
	pthread_mutex_destroy(&in->lock);
	free(in);
}

static void inject_close(struct store *s)
{
	struct store_inject *in = (struct store_inject *)s;

	store_close(in->inner);
	inject_free(in);
}

static const struct store_ops inject_ops = {
	.name = "inject",
	.read = inject_read,
	.write = inject_write,
	.sync = inject_sync,
	.size = inject_size,
	.close = inject_close,
	.extent = inject_extent,
};

static void inject_apply(struct store_inject *in, const struct inject_cfg *c)
{
	in->cfg = *c;
	in->rng = c->seed ? c->seed : 0x9E3779B97F4A7C15ull; /* xorshift needs a non-zero state */
	in->reads_since_set = 0;
	in->writes_since_set = 0;
}

int store_inject_open(struct store *inner, const char *spec, struct store **out)
{
	struct store_inject *in;
	struct inject_cfg c;
	int ret;

	if (!inner || !out)
		return -EFAULT;
	ret = inject_parse(spec, &c, NULL, 0);
	if (ret < 0)
		return ret;
	in = calloc(1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	in->base.ops = &inject_ops;
	in->inner = inner;
	pthread_mutex_init(&in->lock, NULL);
	inject_apply(in, &c);
	*out = &in->base;
	return 0;
}

bool store_is_inject(const struct store *s)
{
	return s && s->ops == &inject_ops;
}

int store_inject_set(struct store *s, const char *spec)
{
	struct store_inject *in = (struct store_inject *)s;
	struct inject_cfg c;
	int ret;

	if (!store_is_inject(s))
		return -EINVAL;
	ret = inject_parse(spec, &c, NULL, 0);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&in->lock);
	inject_apply(in, &c);
	pthread_mutex_unlock(&in->lock);
	return 0;
}

int store_inject_counters(struct store *s, struct inject_counters *out)
{
	struct store_inject *in = (struct store_inject *)s;

	if (!store_is_inject(s))
		return -EINVAL;
	pthread_mutex_lock(&in->lock);
	*out = in->n;
	pthread_mutex_unlock(&in->lock);
	return 0;
}

struct store *store_inject_detach(struct store *s)
{
	struct store_inject *in = (struct store_inject *)s;
	struct store *inner;

	if (!store_is_inject(s))
		return NULL;
	inner = in->inner;
	inject_free(in);
	return inner;
}
