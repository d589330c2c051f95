/*
 * daemon/common/dconf - the umapd daemon's configuration: defaults, the
 * configuration file (/etc/umapd/umapd.conf) and the command line.
 *
 * Every key of the file is also an option: "budget = 2G" in the file is
 * "--budget 2G" or "--budget=2G" on the command line.  In keys and options
 * '-' and '_' are the same ("client-limit" is "client_limit").
 *
 * Precedence, lowest first: built-in defaults; UMAPD_SOCKET from the
 * environment (socket_path only); the configuration file; the command line.
 *
 * File syntax: one "key = value" per line; blank lines and lines whose first
 * non-blank character is '#' are ignored; the value is the rest of the line
 * with surrounding blanks removed (it may contain '#', '=' and blanks).  A
 * key may appear once per file and once on the command line.
 *
 * Accepted forms:
 *   size     decimal bytes with an optional K, M, G or T suffix (binary, in
 *            either case, optionally followed by "B" or "iB"): 4096, 64K,
 *            2GiB.  No sign, blanks, fractions or hex.
 *   percent  "N%" with N in 1..100, where a key allows it
 *   integer  decimal, in the key's range
 *   mode     octal file mode 0..0777 ("0660", "660")
 *   user/group lists: names or numeric ids separated by commas and/or blanks
 *
 * See docs/daemon.md and systemd/umapd.conf for every key.
 */
#ifndef UMAPD_DCONF_H
#define UMAPD_DCONF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DCONF_DEFAULT_FILE "/etc/umapd/umapd.conf"
#define DCONF_DEFAULT_SOCKET "/run/umapd/umapd.sock"
#define DCONF_MAX_IDS 64

/* How log lines start (log_prefix). */
enum dconf_log_prefix {
	DCONF_LOG_PREFIX_AUTO = 0, /* syslog priority prefixes when stderr is the journal (JOURNAL_STREAM) */
	DCONF_LOG_PREFIX_SYSLOG,   /* always "<3>" ... "<7>" */
	DCONF_LOG_PREFIX_PLAIN,    /* never */
};

/* I/O engine for the daemon's store reads and writes (io). */
enum dconf_io {
	DCONF_IO_AUTO = 0,
	DCONF_IO_URING,
	DCONF_IO_AIO,
	DCONF_IO_PSYNC,
};

struct dconf {
	/* --- the socket --- */
	char socket_path[108];  /* socket: where to listen when not socket-activated */
	unsigned socket_mode;   /* socket_mode: permissions of a socket umapd binds itself (0666) */
	int socket_gid;         /* socket_group: group of that socket; -1: the daemon's own (default) */

	/* --- access --- */
	unsigned max_clients;   /* max_clients: connections at once, 1..65536 (1024) */
	unsigned n_allow_uids;  /* allow_users: who may connect; 0 entries: anyone who can open the socket */
	uid_t allow_uids[DCONF_MAX_IDS];
	unsigned n_allow_gids;  /* allow_groups: members (primary group) of these may connect too */
	gid_t allow_gids[DCONF_MAX_IDS];
	unsigned n_admin_uids;  /* admin_users: may run set-budget, flush, evict, disconnect on */
	uid_t admin_uids[DCONF_MAX_IDS]; /* others' clients (root always may) */

	/* --- memory --- */
	uint64_t budget;        /* budget: bytes resident for all clients together (25% of RAM) */
	uint64_t client_limit;  /* client_limit: bytes one client may hold; 0: no limit but fair share */
	uint64_t uid_limit;     /* uid_limit: bytes all clients of one uid may hold; 0: no limit */
	unsigned high_water;    /* high_water: percent of budget where eviction starts (95) */
	unsigned low_water;     /* low_water: percent where it stops (85) */

	/* --- paging --- */
	uint64_t page_size;     /* page_size: default region page size, power of two (system page) */
	uint64_t read_ahead;    /* read_ahead: default max read-ahead window in pages, 0..4096
				 * (the library's UMAPD_READ_AHEAD default, CFG_READ_AHEAD_DEFAULT: 2048) */
	unsigned fillers;       /* fillers: fault-service threads, 1..256 (4) */
	unsigned evictors;      /* evictors: eviction threads, 1..64 (1) */
	int io;                 /* io: enum dconf_io (auto) */

	/* --- protocol --- */
	unsigned request_timeout_ms; /* request_timeout: ms a client may take to finish a
				      * message it started, 1..3600000 (5000) */

	/* --- logging --- */
	int log_level;          /* log_level: enum ulog_level (info) */
	int log_prefix;         /* log_prefix: enum dconf_log_prefix (auto) */

	/* --- where the values came from (not keys) --- */
	char config_file[4096]; /* the file read, "" if none */
};

/* The defaults (socket_path from UMAPD_SOCKET when set and usable). */
void dconf_defaults(struct dconf *c);

/*
 * Fill *c: defaults, then the configuration file (--config FILE, or
 * /etc/umapd/umapd.conf when it exists and no --config was given), then the
 * other options on the command line.  --help (-h) prints the options to
 * stdout, --version (-V) the version; both return 1 without reading any file.
 *
 * Returns 0, 1 (help or version printed: exit 0), or -1 with a one-line
 * reason in why ("/etc/umapd/umapd.conf:12: budget: ..." or
 * "--budget: ...") on an unreadable file, a syntax error, an unknown or
 * repeated key, an invalid value, or inconsistent values.  *c is then
 * unspecified.
 */
int dconf_load(struct dconf *c, int argc, char **argv, char *why, size_t whylen);

/*
 * Set one key ('-' and '_' alike) from its string form.  Returns 0, or
 * -ENOENT (unknown key) / -EINVAL (bad value) with a reason in why naming
 * the key and the accepted form; *c is unchanged then.  Cross-key checks
 * (low_water < high_water) are made by dconf_check(), since keys arrive in
 * any order.
 */
int dconf_set(struct dconf *c, const char *key, const char *value, char *why, size_t whylen);

/*
 * Apply configuration-file text (len bytes, need not be NUL-terminated):
 * what dconf_load() does with the file's contents.  name is used in
 * messages ("name:line: key: ...").  Returns 0 or -1 with a reason.
 */
int dconf_parse_text(struct dconf *c, const char *text, size_t len, const char *name, char *why, size_t whylen);

/* Format a key's value so that dconf_set() accepts it back.  Returns the
 * length, -ENOENT (unknown key) or -ERANGE (buf too small). */
int dconf_get(const struct dconf *c, const char *key, char *buf, size_t buflen);

/* Check the values against each other.  0 or -EINVAL with a reason. */
int dconf_check(const struct dconf *c, char *why, size_t whylen);

/* The keys, in documentation order, NULL-terminated. */
extern const char *const dconf_keys[];

/*
 * Whether log lines should carry syslog priority prefixes: the log_prefix
 * setting, with "auto" meaning "stderr is connected to the journal"
 * (JOURNAL_STREAM names stderr's device and inode, systemd.exec(5)).
 */
int dconf_want_syslog_prefix(const struct dconf *c);

/* Parse a size as described above into *out.  0 or -EINVAL. */
int dconf_parse_size(const char *s, uint64_t *out);

#endif
