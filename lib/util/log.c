#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static _Atomic int log_level = ULOG_WARN;
static _Atomic int log_syslog_prefix;

void ulog_set_syslog_prefix(int on)
{
	atomic_store_explicit(&log_syslog_prefix, on != 0, memory_order_relaxed);
}

void ulog_set_level(enum ulog_level level)
{
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

enum ulog_level ulog_get_level(void)
{
	return (enum ulog_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

void ulog(enum ulog_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	static const char *const prio[] = { "<3>", "<4>", "<6>", "<7>" }; /* LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */
	char line[1024];
	va_list ap;
	int n;

	if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
		return;
	n = snprintf(line, sizeof(line), "%sumapd: %s: ",
		     atomic_load_explicit(&log_syslog_prefix, memory_order_relaxed) ? prio[level] : "", names[level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One fputs per line so lines from several threads do not interleave. */
	strncat(line, "\n", sizeof(line) - strlen(line) - 1);
	fputs(line, stderr);
}

const char *ulog_errname(int err)
{
	switch (err) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case EINVAL: return "EINVAL";
	case ENFILE: return "ENFILE";
	case EMFILE: return "EMFILE";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case ESPIPE: return "ESPIPE";
	case EROFS: return "EROFS";
	case ERANGE: return "ERANGE";
	case ENOSYS: return "ENOSYS";
	case EOVERFLOW: return "EOVERFLOW";
	case EDQUOT: return "EDQUOT";
	case ENXIO: return "ENXIO";
	case EBADMSG: return "EBADMSG";
	case ENODATA: return "ENODATA";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	default: return "E?";
	}
}
