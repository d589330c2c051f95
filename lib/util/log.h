/*
 * lib/util/log - one-line diagnostics on stderr, filtered by level.
 *
 * Every module may log; the level is a process-wide setting
 * (UMAPD_LOG_LEVEL).  Lines look like "umapd: error: ...".
 */
#ifndef UMAPD_LOG_H
#define UMAPD_LOG_H

enum ulog_level { ULOG_ERROR = 0, ULOG_WARN = 1, ULOG_INFO = 2, ULOG_DEBUG = 3 };

void ulog_set_level(enum ulog_level level);
/*
 * With on != 0, every line starts with its syslog priority in angle
 * brackets ("<3>" error, "<4>" warning, "<6>" info, "<7>" debug), the
 * sd-daemon(3) convention by which journald files a service's stderr lines
 * under the right priority.  Off by default: only the daemon turns it on,
 * library users see the same lines as before.
 */
void ulog_set_syslog_prefix(int on);
enum ulog_level ulog_get_level(void);
void ulog(enum ulog_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ulog_error(...) ulog(ULOG_ERROR, __VA_ARGS__)
#define ulog_warn(...) ulog(ULOG_WARN, __VA_ARGS__)
#define ulog_info(...) ulog(ULOG_INFO, __VA_ARGS__)
#define ulog_debug(...) ulog(ULOG_DEBUG, __VA_ARGS__)

/* The errno name ("EIO") for a positive errno value, or "E?" if unknown. */
const char *ulog_errname(int err);

#endif
