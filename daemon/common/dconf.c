/*
 * daemon/common/dconf - see dconf.h.
 *
 * One table describes every key: its name, its type, where it lives in
 * struct dconf, its range and its help line.  dconf_set, dconf_get, the
 * --help text and the duplicate check all walk the same table, so a key
 * cannot exist in one and be missing from another.
 */
#include "dconf.h"
#include "decimal.h"

#include "engine/config.h"
#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef UMAPD_VERSION
#define UMAPD_VERSION "unknown"
#endif

/* The largest configuration file read: far more than any real one. */
#define DCONF_MAX_FILE (1u << 20)
#define DCONF_MAX_LINE 4096

enum ktype {
	K_SOCKET,     /* absolute path that fits sockaddr_un */
	K_MODE,       /* octal 0..0777 */
	K_GROUP,      /* one group name or gid, "" for none */
	K_UINT,       /* unsigned in [min, max] */
	K_U64,        /* uint64_t in [min, max] */
	K_SIZE,       /* size, 0 allowed */
	K_BUDGET,     /* size or N% of physical memory, at least one system page */
	K_PAGESIZE,   /* power-of-two size, system page .. 1G */
	K_UIDS,       /* user list */
	K_GIDS,       /* group list */
	K_LOGLEVEL,
	K_LOGPREFIX,
	K_IO,
};

struct key {
	const char *name;
	enum ktype type;
	size_t off;        /* field offset */
	size_t cnt_off;    /* count field for lists */
	uint64_t min, max; /* K_UINT / K_U64 */
	const char *help;  /* "FORM  what (default)" */
};

#define F(f) offsetof(struct dconf, f)
static const struct key keys[] = {
	{ "socket", K_SOCKET, F(socket_path), 0, 0, 0,
	  "PATH       where to listen unless systemd passes a socket (/run/umapd/umapd.sock, or $UMAPD_SOCKET)" },
	{ "socket_mode", K_MODE, F(socket_mode), 0, 0, 0,
	  "MODE       octal permissions of a socket umapd creates itself (0666)" },
	{ "socket_group", K_GROUP, F(socket_gid), 0, 0, 0,
	  "GROUP      group of that socket (the daemon's own)" },
	{ "max_clients", K_UINT, F(max_clients), 0, 1, 65536,
	  "N          connections served at once, 1..65536 (1024)" },
	{ "allow_users", K_UIDS, F(allow_uids), F(n_allow_uids), 0, 0,
	  "LIST       users (names or uids) allowed to connect (anyone who can open the socket)" },
	{ "allow_groups", K_GIDS, F(allow_gids), F(n_allow_gids), 0, 0,
	  "LIST       groups whose members (primary group) may connect too (none)" },
	{ "admin_users", K_UIDS, F(admin_uids), F(n_admin_uids), 0, 0,
	  "LIST       users who may change the budget or act on others' clients (root only)" },
	{ "budget", K_BUDGET, F(budget), 0, 0, 0,
	  "SIZE|N%    resident bytes for all clients together (25% of RAM)" },
	{ "client_limit", K_SIZE, F(client_limit), 0, 0, 0,
	  "SIZE       bytes one client may hold; 0: its fair share of the budget (0)" },
	{ "uid_limit", K_SIZE, F(uid_limit), 0, 0, 0,
	  "SIZE       bytes all clients of one user may hold; 0: no limit of its own (0)" },
	{ "high_water", K_UINT, F(high_water), 0, 1, 100,
	  "N          percent of the budget where eviction starts, above low_water (95)" },
	{ "low_water", K_UINT, F(low_water), 0, 0, 99,
	  "N          percent of the budget where eviction stops (85)" },
	{ "page_size", K_PAGESIZE, F(page_size), 0, 0, 0,
	  "SIZE       default region page size: a power of two, system page..1G (system page)" },
	{ "read_ahead", K_U64, F(read_ahead), 0, 0, CFG_READ_AHEAD_MAX,
	  "N          default read-ahead window in pages, 0.." CFG_STR(CFG_READ_AHEAD_MAX) " ("
		  CFG_STR(CFG_READ_AHEAD_DEFAULT) ")" },
	{ "fillers", K_UINT, F(fillers), 0, 1, 256,
	  "N          fault-service threads, 1..256 (4)" },
	{ "evictors", K_UINT, F(evictors), 0, 1, 64,
	  "N          eviction threads, 1..64 (1)" },
	{ "io", K_IO, F(io), 0, 0, 0,
	  "ENGINE     auto, io_uring, aio or psync (auto)" },
	{ "request_timeout_ms", K_UINT, F(request_timeout_ms), 0, 1, 3600000,
	  "MS         time a client has to finish a message it started, 1..3600000 (5000)" },
	{ "log_level", K_LOGLEVEL, F(log_level), 0, 0, 0,
	  "LEVEL      error, warn, info or debug (info)" },
	{ "log_prefix", K_LOGPREFIX, F(log_prefix), 0, 0, 0,
	  "WHEN       syslog priority prefixes on log lines: auto (when stderr is the journal), syslog, plain (auto)" },
};
#undef F
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

const char *const dconf_keys[NKEYS + 1] = {
	"socket", "socket_mode", "socket_group", "max_clients", "allow_users", "allow_groups",
	"admin_users", "budget", "client_limit", "uid_limit", "high_water", "low_water",
	"page_size", "read_ahead", "fillers", "evictors", "io", "request_timeout_ms",
	"log_level", "log_prefix", NULL,
};
_Static_assert(NKEYS <= 64, "the duplicate check keeps one bit per key");

static void say(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/*
 * A value quoted in a message: at most 40 characters, non-printable bytes
 * as '?', so a binary or huge value cannot break the one-line message.
 */
static const char *quote(const char *v, char *buf, size_t len)
{
	size_t i = 0;

	for (; v[i] && i + 4 < len && i < 40; i++)
		buf[i] = isprint((unsigned char)v[i]) ? v[i] : '?';
	if (v[i] && i + 4 <= len) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

/* Key lookup with '-' and '_' alike; NULL if unknown. */
static const struct key *find_key(const char *name, size_t len)
{
	for (size_t k = 0; k < NKEYS; k++) {
		const char *n = keys[k].name;
		size_t i = 0;
		for (; i < len && n[i]; i++) {
			char a = name[i] == '-' ? '_' : name[i];
			if (a != n[i])
				break;
		}
		if (i == len && n[i] == '\0')
			return &keys[k];
	}
	return NULL;
}

static uint64_t sys_page(void)
{
	long p = sysconf(_SC_PAGESIZE);
	return p > 0 ? (uint64_t)p : 4096;
}

static uint64_t phys_mem(void)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	return pages > 0 ? (uint64_t)pages * sys_page() : 0;
}

int dconf_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned shift = 0;
	const char *p = s;

	if (!s || *p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	switch (*p) {
	case '\0': break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: return -EINVAL;
	}
	if (shift) {
		p++;
		if (strcmp(p, "") != 0 && strcmp(p, "B") != 0 && strcmp(p, "iB") != 0)
			return -EINVAL;
		if (v > (UINT64_MAX >> shift))
			return -EINVAL;
		v <<= shift;
	}
	*out = v;
	return 0;
}

/* A user or group name as useradd(8) allows, so odd bytes never reach NSS. */
static bool name_ok(const char *s, size_t len)
{
	if (len == 0 || len > 32 || s[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!isalnum(ch) && ch != '_' && ch != '-' && ch != '.' && !(ch == '$' && i == len - 1))
			return false;
	}
	return true;
}

/* One id: decimal (not the reserved (uid_t)-1) or a name looked up with NSS. */
static int parse_id(const char *tok, size_t len, bool group, uint32_t *out, char *why, size_t whylen,
		    const char *key)
{
	char name[40], q[48];
	uint64_t v;

	if (len >= sizeof(name)) {
		memcpy(name, tok, sizeof(name) - 1);
		name[sizeof(name) - 1] = '\0';
		say(why, whylen, "%s: '%s' is not a %s name or id", key, quote(name, q, sizeof(q)),
		    group ? "group" : "user");
		return -EINVAL;
	}
	memcpy(name, tok, len);
	name[len] = '\0';
	if (name[0] >= '0' && name[0] <= '9') {
		if (dc_parse_dec(name, UINT32_MAX - 1, &v) != 0) {
			say(why, whylen, "%s: '%s' is not a %s id (0..4294967294)", key,
			    quote(name, q, sizeof(q)), group ? "group" : "user");
			return -EINVAL;
		}
		*out = (uint32_t)v;
		return 0;
	}
	if (!name_ok(name, len)) {
		say(why, whylen, "%s: '%s' is not a %s name or id", key, quote(name, q, sizeof(q)),
		    group ? "group" : "user");
		return -EINVAL;
	}
	/* A group with many members may not fit a small buffer: grow on ERANGE. */
	size_t blen = 16384;
	int e = ERANGE;
	bool found = false;
	while (e == ERANGE && blen <= (1u << 24)) {
		char *buf = malloc(blen);
		if (!buf) {
			e = ENOMEM;
			break;
		}
		if (group) {
			struct group gr, *res = NULL;
			e = getgrnam_r(name, &gr, buf, blen, &res);
			if (e == 0 && res) {
				*out = (uint32_t)res->gr_gid;
				found = true;
			}
		} else {
			struct passwd pw, *res = NULL;
			e = getpwnam_r(name, &pw, buf, blen, &res);
			if (e == 0 && res) {
				*out = (uint32_t)res->pw_uid;
				found = true;
			}
		}
		free(buf);
		blen *= 4;
	}
	if (found)
		return 0;
	if (e)
		say(why, whylen, "%s: cannot look up %s '%s': %s", key, group ? "group" : "user", name, strerror(e));
	else
		say(why, whylen, "%s: no %s named '%s'", key, group ? "group" : "user", name);
	return -EINVAL;
}

static int parse_list(const char *v, bool group, uint32_t *ids, unsigned *n, char *why, size_t whylen,
		      const char *key)
{
	unsigned cnt = 0;

	while (*v) {
		while (*v == ',' || *v == ' ' || *v == '\t')
			v++;
		if (!*v)
			break;
		size_t len = strcspn(v, ", \t");
		uint32_t id;
		if (parse_id(v, len, group, &id, why, whylen, key) != 0)
			return -EINVAL;
		bool dup = false;
		for (unsigned i = 0; i < cnt; i++)
			dup |= ids[i] == id;
		if (!dup) {
			if (cnt == DCONF_MAX_IDS) {
				say(why, whylen, "%s: more than %d entries", key, DCONF_MAX_IDS);
				return -EINVAL;
			}
			ids[cnt++] = id;
		}
		v += len;
	}
	*n = cnt;
	return 0;
}

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static const char *const prefix_names[] = { "auto", "syslog", "plain" };
static const char *const io_names[] = { "auto", "io_uring", "aio", "psync" };

static int pick(const char *v, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (strcasecmp(v, names[i]) == 0)
			return i;
	return -1;
}

static int set_key(struct dconf *c, const struct key *k, const char *v, char *why, size_t whylen)
{
	char *field = (char *)c + k->off, q[48];
	uint64_t x;
	int i;

	switch (k->type) {
	case K_SOCKET: {
		size_t l = strlen(v);
		if (v[0] != '/' || l >= sizeof(c->socket_path)) {
			say(why, whylen, "%s: expected an absolute path shorter than %zu bytes, got '%s'", k->name,
			    sizeof(c->socket_path), quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		for (size_t j = 0; j < l; j++) {
			if (!isprint((unsigned char)v[j])) {
				say(why, whylen, "%s: control character in path '%s'", k->name, quote(v, q, sizeof(q)));
				return -EINVAL;
			}
		}
		memcpy(c->socket_path, v, l + 1);
		return 0;
	}
	case K_MODE: {
		unsigned m = 0;
		const char *p = v;
		for (; *p >= '0' && *p <= '7' && m <= 0777; p++)
			m = m * 8 + (unsigned)(*p - '0');
		if (!*v || *p || m > 0777) {
			say(why, whylen, "%s: expected an octal mode 0..0777, got '%s'", k->name, quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		c->socket_mode = m;
		return 0;
	}
	case K_GROUP: {
		uint32_t g;
		if (!*v) {
			c->socket_gid = -1;
			return 0;
		}
		if (parse_id(v, strlen(v), true, &g, why, whylen, k->name) != 0)
			return -EINVAL;
		if (g > INT_MAX) {
			say(why, whylen, "%s: group id %u is out of range", k->name, g);
			return -EINVAL;
		}
		c->socket_gid = (int)g;
		return 0;
	}
	case K_UINT:
	case K_U64:
		if (dc_parse_dec(v, UINT64_MAX, &x) != 0 || x < k->min || x > k->max) {
			say(why, whylen, "%s: expected an integer %llu..%llu, got '%s'", k->name,
			    (unsigned long long)k->min, (unsigned long long)k->max, quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		if (k->type == K_UINT)
			*(unsigned *)field = (unsigned)x;
		else
			*(uint64_t *)field = x;
		return 0;
	case K_SIZE:
		if (dconf_parse_size(v, &x) != 0) {
			say(why, whylen, "%s: expected a size (bytes, or with a K/M/G/T suffix), got '%s'", k->name,
			    quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		*(uint64_t *)field = x;
		return 0;
	case K_BUDGET: {
		size_t l = strlen(v);
		if (l >= 2 && v[l - 1] == '%') {
			char num[8];
			uint64_t pct;
			if (l - 1 >= sizeof(num)) {
				pct = 0; /* too many digits to be 1..100 */
			} else {
				memcpy(num, v, l - 1);
				num[l - 1] = '\0';
				if (dc_parse_dec(num, 1000, &pct) != 0)
					pct = 0;
			}
			if (pct < 1 || pct > 100) {
				say(why, whylen, "%s: a percentage must be 1%%..100%% of memory, got '%s'", k->name,
				    quote(v, q, sizeof(q)));
				return -EINVAL;
			}
			uint64_t mem = phys_mem();
			x = mem / 100 * pct + mem % 100 * pct / 100; /* floor(mem * pct / 100) without overflow */
			x -= x % sys_page();
		} else if (dconf_parse_size(v, &x) != 0) {
			say(why, whylen, "%s: expected a size (bytes, or with a K/M/G/T suffix) or N%% of memory, got '%s'",
			    k->name, quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		if (x < sys_page()) {
			say(why, whylen, "%s: must be at least one page (%llu bytes), got '%s'", k->name,
			    (unsigned long long)sys_page(), quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		c->budget = x;
		return 0;
	}
	case K_PAGESIZE:
		if (dconf_parse_size(v, &x) != 0 || x < sys_page() || x > (1ull << 30) || (x & (x - 1)) != 0) {
			say(why, whylen, "%s: expected a power of two from %lluK to 1G, got '%s'", k->name,
			    (unsigned long long)(sys_page() >> 10), quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		c->page_size = x;
		return 0;
	case K_UIDS:
	case K_GIDS: {
		uint32_t ids[DCONF_MAX_IDS];
		unsigned n = 0;
		if (parse_list(v, k->type == K_GIDS, ids, &n, why, whylen, k->name) != 0)
			return -EINVAL;
		memcpy(field, ids, n * sizeof(uint32_t));
		*(unsigned *)((char *)c + k->cnt_off) = n;
		return 0;
	}
	case K_LOGLEVEL:
		i = pick(v, level_names, 4);
		if (i < 0 && strcasecmp(v, "warning") == 0)
			i = ULOG_WARN;
		if (i < 0 && v[0] >= '0' && v[0] <= '3' && v[1] == '\0')
			i = v[0] - '0';
		if (i < 0) {
			say(why, whylen, "%s: expected error, warn, info, debug or 0..3, got '%s'", k->name,
			    quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		c->log_level = i;
		return 0;
	case K_LOGPREFIX:
		i = pick(v, prefix_names, 3);
		if (i < 0) {
			say(why, whylen, "%s: expected auto, syslog or plain, got '%s'", k->name, quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		c->log_prefix = i;
		return 0;
	case K_IO:
		i = pick(v, io_names, 4);
		if (i < 0) {
			say(why, whylen, "%s: expected auto, io_uring, aio or psync, got '%s'", k->name,
			    quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		c->io = i;
		return 0;
	}
	return -EINVAL;
}

int dconf_set(struct dconf *c, const char *key, const char *value, char *why, size_t whylen)
{
	char q[48];

	if (!c || !key || !value) {
		say(why, whylen, "dconf_set: missing argument");
		return -EINVAL;
	}
	const struct key *k = find_key(key, strlen(key));
	if (!k) {
		say(why, whylen, "unknown key '%s'", quote(key, q, sizeof(q)));
		return -ENOENT;
	}
	/* Parse into a copy so that a refused value leaves *c as it was. */
	struct dconf tmp = *c;
	int ret = set_key(&tmp, k, value, why, whylen);
	if (ret == 0)
		*c = tmp;
	return ret;
}

static int put(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int put(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len)
		return -ERANGE;
	return n;
}

int dconf_get(const struct dconf *c, const char *key, char *buf, size_t buflen)
{
	const struct key *k = key ? find_key(key, strlen(key)) : NULL;
	const char *field;

	if (!k)
		return -ENOENT;
	if (!buf || !buflen)
		return -ERANGE;
	field = (const char *)c + k->off;
	switch (k->type) {
	case K_SOCKET: return put(buf, buflen, "%s", c->socket_path);
	case K_MODE: return put(buf, buflen, "%04o", c->socket_mode);
	case K_GROUP:
		return c->socket_gid < 0 ? put(buf, buflen, "%s", "") : put(buf, buflen, "%d", c->socket_gid);
	case K_UINT: return put(buf, buflen, "%u", *(const unsigned *)field);
	case K_U64:
	case K_SIZE:
	case K_BUDGET:
	case K_PAGESIZE: return put(buf, buflen, "%llu", (unsigned long long)*(const uint64_t *)field);
	case K_UIDS:
	case K_GIDS: {
		unsigned n = *(const unsigned *)((const char *)c + k->cnt_off);
		const uint32_t *ids = (const uint32_t *)field;
		size_t at = 0;
		buf[0] = '\0';
		for (unsigned i = 0; i < n && i < DCONF_MAX_IDS; i++) {
			int w = put(buf + at, buflen - at, i ? ",%u" : "%u", ids[i]);
			if (w < 0)
				return w;
			at += (size_t)w;
		}
		return (int)at;
	}
	case K_LOGLEVEL:
		return c->log_level >= 0 && c->log_level <= 3 ? put(buf, buflen, "%s", level_names[c->log_level])
							       : -ERANGE;
	case K_LOGPREFIX:
		return c->log_prefix >= 0 && c->log_prefix <= 2 ? put(buf, buflen, "%s", prefix_names[c->log_prefix])
								: -ERANGE;
	case K_IO: return c->io >= 0 && c->io <= 3 ? put(buf, buflen, "%s", io_names[c->io]) : -ERANGE;
	}
	return -ENOENT;
}

void dconf_defaults(struct dconf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->socket_path, sizeof(c->socket_path), "%s", DCONF_DEFAULT_SOCKET);
	const char *env = getenv("UMAPD_SOCKET");
	/* An unusable UMAPD_SOCKET is reported by dconf_load; here it is ignored. */
	if (env && env[0] == '/' && strlen(env) < sizeof(c->socket_path))
		snprintf(c->socket_path, sizeof(c->socket_path), "%s", env);
	c->socket_mode = 0666;
	c->socket_gid = -1;
	c->max_clients = 1024;
	/* A quarter of RAM: the node's other work keeps the rest; the daemon's
	 * budget is a ceiling for paged data, not a reservation. */
	c->budget = phys_mem() / 4;
	c->budget -= c->budget % sys_page();
	if (c->budget < 64 * sys_page())
		c->budget = 64 * sys_page();
	c->high_water = 95;
	c->low_water = 85;
	c->page_size = sys_page();
	c->read_ahead = CFG_READ_AHEAD_DEFAULT; /* the library's: one constant */
	c->fillers = 4;
	c->evictors = 1;
	c->io = DCONF_IO_AUTO;
	c->request_timeout_ms = 5000;
	c->log_level = ULOG_INFO;
	c->log_prefix = DCONF_LOG_PREFIX_AUTO;
}

int dconf_check(const struct dconf *c, char *why, size_t whylen)
{
	if (c->low_water >= c->high_water) {
		say(why, whylen, "low_water (%u) must be below high_water (%u)", c->low_water, c->high_water);
		return -EINVAL;
	}
	/* A region page larger than the budget can never be resident. */
	if (c->budget < c->page_size) {
		say(why, whylen, "budget (%llu) is smaller than page_size (%llu)", (unsigned long long)c->budget,
		    (unsigned long long)c->page_size);
		return -EINVAL;
	}
	if (c->client_limit && c->client_limit < c->page_size) {
		say(why, whylen, "client_limit (%llu) is smaller than page_size (%llu)",
		    (unsigned long long)c->client_limit, (unsigned long long)c->page_size);
		return -EINVAL;
	}
	if (c->uid_limit && c->uid_limit < c->page_size) {
		say(why, whylen, "uid_limit (%llu) is smaller than page_size (%llu)", (unsigned long long)c->uid_limit,
		    (unsigned long long)c->page_size);
		return -EINVAL;
	}
	return 0;
}

static bool blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

static int parse_text(struct dconf *c, const char *text, size_t len, const char *name, char *why, size_t whylen,
		      uint64_t *seenp)
{
	uint64_t seen = 0;
	unsigned lineno = 0;
	char line[DCONF_MAX_LINE + 1], sub[512], q[48];
	size_t pos = 0;

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t l = nl ? (size_t)(nl - (text + pos)) : len - pos;
		lineno++;
		if (l > DCONF_MAX_LINE) {
			say(why, whylen, "%s:%u: line longer than %d bytes", name, lineno, DCONF_MAX_LINE);
			return -1;
		}
		memcpy(line, text + pos, l);
		line[l] = '\0';
		pos += l + (nl ? 1 : 0);
		if (memchr(line, '\0', l)) {
			say(why, whylen, "%s:%u: NUL byte in line", name, lineno);
			return -1;
		}

		char *s = line, *e = line + l;
		while (blank(*s))
			s++;
		while (e > s && blank(e[-1]))
			*--e = '\0';
		if (*s == '\0' || *s == '#')
			continue;
		size_t klen = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
		char *v = s + klen;
		while (blank(*v))
			v++;
		if (klen == 0 || *v != '=') {
			say(why, whylen, "%s:%u: expected 'key = value', got '%s'", name, lineno, quote(s, q, sizeof(q)));
			return -1;
		}
		s[klen] = '\0';
		v++;
		while (blank(*v))
			v++;
		const struct key *k = find_key(s, klen);
		if (!k) {
			say(why, whylen, "%s:%u: unknown key '%s'", name, lineno, quote(s, q, sizeof(q)));
			return -1;
		}
		uint64_t bit = 1ull << (k - keys);
		if (seen & bit) {
			say(why, whylen, "%s:%u: %s: given twice in this file", name, lineno, k->name);
			return -1;
		}
		seen |= bit;
		if (dconf_set(c, k->name, v, sub, sizeof(sub)) != 0) {
			say(why, whylen, "%s:%u: %s", name, lineno, sub);
			return -1;
		}
		*seenp = seen;
	}
	return 0;
}

int dconf_parse_text(struct dconf *c, const char *text, size_t len, const char *name, char *why, size_t whylen)
{
	uint64_t seen = 0;
	return parse_text(c, text, len, name, why, whylen, &seen);
}

/* Read the file into memory (bounded) and apply it. */
static int load_file(struct dconf *c, const char *path, bool must_exist, char *why, size_t whylen, uint64_t *seen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (!must_exist && errno == ENOENT)
			return 0;
		say(why, whylen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		say(why, whylen, "%s: is a directory", path);
		return -1;
	}
	char *buf = malloc(DCONF_MAX_FILE + 1);
	size_t len = 0;
	if (!buf) {
		close(fd);
		say(why, whylen, "%s: out of memory", path);
		return -1;
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, DCONF_MAX_FILE + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			say(why, whylen, "%s: cannot read: %s", path, strerror(errno));
			free(buf);
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > DCONF_MAX_FILE) {
			say(why, whylen, "%s: larger than %u bytes", path, DCONF_MAX_FILE);
			free(buf);
			close(fd);
			return -1;
		}
	}
	close(fd);
	snprintf(c->config_file, sizeof(c->config_file), "%s", path);
	int ret = parse_text(c, buf, len, path, why, whylen, seen);
	free(buf);
	return ret;
}

static void usage(const char *prog)
{
	printf("Usage: %s [--config FILE] [--KEY VALUE | --KEY=VALUE]...\n"
	       "The umapd paging daemon: serves userfaultfd page faults for the processes\n"
	       "that connect to it, within one memory budget for the node.\n\n"
	       "  -c, --config FILE           configuration file (%s if it exists)\n"
	       "  -h, --help                  this text\n"
	       "  -V, --version               the version\n\n"
	       "Every configuration key is also an option ('-' and '_' alike):\n",
	       prog, DCONF_DEFAULT_FILE);
	for (size_t k = 0; k < NKEYS; k++) {
		char opt[40];
		snprintf(opt, sizeof(opt), "--%s", keys[k].name);
		for (char *p = opt + 2; *p; p++)
			if (*p == '_')
				*p = '-';
		printf("  %-22s %s\n", opt, keys[k].help);
	}
	printf("\nSizes: bytes or K/M/G/T (binary).  Environment: UMAPD_SOCKET sets the default socket.\n"
	       "Under systemd: socket activation (LISTEN_FDS), sd_notify (NOTIFY_SOCKET), WatchdogSec.\n"
	       "See docs/daemon.md.\n");
}

/* Is argv[i] an option that takes the next argument as its value? */
static bool takes_value(const char *a)
{
	if (strcmp(a, "-c") == 0)
		return true;
	return a[0] == '-' && a[1] == '-' && a[2] && !strchr(a, '=') && strcmp(a, "--help") != 0 &&
	       strcmp(a, "--version") != 0;
}

int dconf_load(struct dconf *c, int argc, char **argv, char *why, size_t whylen)
{
	const char *config = NULL, *prog = argc > 0 && argv[0] ? argv[0] : "umapd";
	char sub[512], q[48];
	const char *slash = strrchr(prog, '/');

	if (slash)
		prog = slash + 1;
	dconf_defaults(c);

	/* First pass: --help, --version and --config, before any file is read. */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(prog);
			return 1;
		}
		if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			printf("%s %s\n", prog, UMAPD_VERSION);
			return 1;
		}
		if (strcmp(a, "--") == 0)
			break;
		const char *val = NULL;
		if (strncmp(a, "--config=", 9) == 0)
			val = a + 9;
		else if ((strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) && i + 1 < argc)
			val = argv[i + 1];
		if (val) {
			if (config) {
				say(why, whylen, "--config: given twice");
				return -1;
			}
			if (!*val) {
				say(why, whylen, "--config: empty file name");
				return -1;
			}
			config = val;
		}
		if (takes_value(a))
			i++;
	}

	uint64_t file_seen = 0, seen = 0;
	if (load_file(c, config ? config : DCONF_DEFAULT_FILE, config != NULL, why, whylen, &file_seen) != 0)
		return -1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val;
		char kbuf[64];
		if (strcmp(a, "--") == 0) {
			if (i + 1 < argc) {
				say(why, whylen, "unexpected argument '%s'", quote(argv[i + 1], q, sizeof(q)));
				return -1;
			}
			break;
		}
		if (a[0] != '-' || a[1] != '-' || !a[2]) {
			if (strcmp(a, "-c") == 0) {
				if (++i == argc) {
					say(why, whylen, "-c: needs a value");
					return -1;
				}
				continue;
			}
			say(why, whylen, a[0] == '-' ? "unknown option '%s'" : "unexpected argument '%s'",
			    quote(a, q, sizeof(q)));
			return -1;
		}
		const char *eq = strchr(a, '=');
		size_t klen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		if (klen >= sizeof(kbuf)) {
			say(why, whylen, "unknown option '%s'", quote(a, q, sizeof(q)));
			return -1;
		}
		memcpy(kbuf, a + 2, klen);
		kbuf[klen] = '\0';
		if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			say(why, whylen, "--%s: needs a value", kbuf);
			return -1;
		}
		if (strcmp(kbuf, "config") == 0)
			continue; /* read above */
		const struct key *k = find_key(kbuf, klen);
		if (!k) {
			say(why, whylen, "unknown option '--%s'", quote(kbuf, q, sizeof(q)));
			return -1;
		}
		uint64_t bit = 1ull << (k - keys);
		if (seen & bit) {
			say(why, whylen, "--%s: given twice", kbuf);
			return -1;
		}
		seen |= bit;
		if (dconf_set(c, k->name, val, sub, sizeof(sub)) != 0) {
			/* sub starts with the key's name; name the option as it was typed. */
			size_t kn = strlen(k->name);
			say(why, whylen, "--%s%s", kbuf, strncmp(sub, k->name, kn) == 0 ? sub + kn : sub);
			return -1;
		}
	}
	/* UMAPD_SOCKET replaces the default only: an explicit socket, in the
	 * file or on the command line, wins over it. */
	const char *env = getenv("UMAPD_SOCKET");
	uint64_t sock_bit = 1ull << (find_key("socket", 6) - keys);
	if (env && !((file_seen | seen) & sock_bit) && dconf_set(c, "socket", env, sub, sizeof(sub)) != 0) {
		say(why, whylen, "UMAPD_SOCKET (environment): expected an absolute path shorter than %zu bytes",
		    sizeof(c->socket_path));
		return -1;
	}
	if (dconf_check(c, sub, sizeof(sub)) != 0) {
		say(why, whylen, "%s", sub);
		return -1;
	}
	return 0;
}

int dconf_want_syslog_prefix(const struct dconf *c)
{
	if (c->log_prefix == DCONF_LOG_PREFIX_SYSLOG)
		return 1;
	if (c->log_prefix == DCONF_LOG_PREFIX_PLAIN)
		return 0;
	/* systemd.exec(5): JOURNAL_STREAM="DEV:INO" of the stream stdout/stderr
	 * are connected to; compare with stderr so a redirected stderr (e.g.
	 * `umapd 2>file` from a unit's shell) gets plain lines. */
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char tail;
	if (!js || sscanf(js, "%llu:%llu%c", &dev, &ino, &tail) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) != 0)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}
