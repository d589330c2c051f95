/*
 * lib/engine/config - the global settings and their string syntax.
 *
 * One parser serves the environment (read at start-up) and
 * umapd_config_set(), so the accepted forms are the same everywhere.
 */
#ifndef UMAPD_CONFIG_H
#define UMAPD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct eng_config {
	uint64_t bufsize;     /* budget in bytes */
	uint64_t page_size;   /* default region page size */
	unsigned high_water;  /* percent of budget */
	unsigned low_water;   /* percent of budget */
	unsigned fillers;     /* fault-service threads */
	unsigned evictors;    /* eviction threads */
	long read_ahead;      /* default max window in pages */
	int log_level;        /* enum ulog_level */
	int evict_copy;       /* 0 auto, UMAPD_EVICT_DIRECT, UMAPD_EVICT_BOUNCE */
	unsigned fault_timeout_ms; /* pager watchdog; 0: off */
	int io_engine;        /* 0 auto, else UMAPD_IOENG_* */
	int direct_io;        /* default of umapd_region_opts.direct */
	char fault_inject[256]; /* UMAPD_FAULT_INJECT: inject spec (lib/store) for new regions; "": none */
};

/*
 * UMAPD_READ_AHEAD: its default and its largest value, in pages.  The
 * default is 8 MiB of 4 KiB pages (readahead.c caps a window at 8 MiB
 * whatever the page size).  The daemon's read_ahead option
 * (daemon/common/dconf.c) takes both from here, so the two cannot drift
 * apart.  Plain numbers: they are also turned into strings for help texts.
 */
#define CFG_READ_AHEAD_DEFAULT 2048
#define CFG_READ_AHEAD_MAX 4096
#define CFG_STR_(x) #x
#define CFG_STR(x) CFG_STR_(x) /* CFG_STR(CFG_READ_AHEAD_MAX) is "4096" */

/* The defaults documented in umapd.h. */
void cfg_defaults(struct eng_config *c);

/*
 * Parse a size: decimal bytes with an optional K/M/G/T suffix (binary,
 * optionally followed by "B" or "iB"), or, if allow_percent, "N%" of the
 * machine's physical memory.  Returns 0 or -EINVAL.
 */
int cfg_parse_size(const char *s, bool allow_percent, uint64_t *out);

/*
 * Set the setting `name` (an environment-variable name such as
 * "UMAPD_BUFSIZE") from `value`.  On -EINVAL, `why` (if not NULL) receives
 * a sentence naming the variable and the accepted form.  Cross-field
 * checks (high > low water) are made here too.
 */
int cfg_set(struct eng_config *c, const char *name, const char *value, char *why, size_t whylen);

/* Format a setting's value.  Returns the length, -EINVAL or -ERANGE. */
int cfg_get(const struct eng_config *c, const char *name, char *buf, size_t buflen);

/* True if name is one of the settings. */
bool cfg_known(const char *name);

/*
 * Apply every UMAPD_* setting found in the environment.  The first invalid
 * one is logged (naming the variable and the accepted form) and -EINVAL
 * returned.
 */
int cfg_from_env(struct eng_config *c);

/*
 * Read a 0/1 switch that exists in the environment only, not as a setting
 * (UMAPD_USER_MODE_ONLY, UMAPD_EVENT_REMOVE: they choose how a userfaultfd
 * is opened).  Unset is 0.  Returns 0 or 1; anything but "0" or "1" is
 * logged, naming the variable and the accepted form, and gives -EINVAL.
 * The engine and the daemon client both read them here, so a value one
 * refuses the other cannot take silently.
 */
int cfg_env_switch(const char *name);

#endif
