/*
 * daemon/common/sd_proto - the systemd service protocols, spoken directly
 * (no libsystemd): socket activation (sd_listen_fds(3)), readiness and
 * status notification (sd_notify(3)), and the watchdog (sd_watchdog_enabled(3)).
 *
 * Each works the same whether or not the process runs under systemd: with
 * no LISTEN_FDS / NOTIFY_SOCKET / WATCHDOG_USEC in the environment the
 * functions report "nothing to do" (0) and the daemon runs in the foreground
 * exactly as it would from a shell.
 *
 * Thread safety: sdp_listen_fds() changes the environment (unsetenv), so call
 * it once at start-up, before any thread exists.  sdp_notify() and
 * sdp_watchdog_usec() only read the environment and may be called from any
 * thread as long as nobody modifies it concurrently.
 */
#ifndef UMAPD_SD_PROTO_H
#define UMAPD_SD_PROTO_H

#include <stdint.h>

/* The first descriptor passed by socket activation (SD_LISTEN_FDS_START). */
#define SDP_LISTEN_FDS_START 3

/*
 * Socket activation.  If LISTEN_PID names this process, LISTEN_FDS
 * descriptors starting at 3 were passed to it: they get FD_CLOEXEC (so
 * clients' helpers and anything the daemon might exec do not inherit them)
 * and are stored in fds[0..count-1].  LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES are removed from the environment in every case, so children
 * never see them.
 *
 * Returns the number of descriptors (0 when none were passed or they were
 * meant for another process), or a negative errno:
 *   -EINVAL  LISTEN_PID or LISTEN_FDS is not a plain decimal number in range
 *   -EBADF   a descriptor the variables announce is not open
 *   -E2BIG   more descriptors than max (all of them still got FD_CLOEXEC)
 */
int sdp_listen_fds(int *fds, int max);

/*
 * Send one notification datagram (printf format; several "KEY=value" lines
 * separated by '\n', e.g. "READY=1\nSTATUS=serving") to $NOTIFY_SOCKET, a
 * filesystem path or, with a leading '@', an abstract socket name.
 *
 * Returns 0 if NOTIFY_SOCKET is unset (not supervised), 1 if the datagram
 * was sent, or a negative errno:
 *   -EAFNOSUPPORT  NOTIFY_SOCKET is neither "/..." nor "@..."
 *   -EINVAL        the address is empty or too long for sockaddr_un, or fmt is NULL
 *   -EAGAIN        the receiver did not take the datagram within 5 seconds
 *   -ENOMEM, or what socket()/sendmsg() report (-ECONNREFUSED, -ENOENT, ...)
 */
int sdp_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Like sdp_notify(), passing nfds descriptors with the datagram
 * (SCM_RIGHTS), for "FDSTORE=1\nFDNAME=..." (systemd's file-descriptor
 * store, FileDescriptorStoreMax= in the unit).  At most 253 descriptors;
 * -EINVAL beyond that or when a descriptor is negative.
 */
int sdp_notify_fds(const int *fds, unsigned nfds, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * The watchdog interval systemd expects WATCHDOG=1 pings within (WatchdogSec=
 * in the unit), in microseconds: WATCHDOG_USEC if it is a positive decimal
 * number and WATCHDOG_PID is unset or names this process; else 0 (no
 * watchdog).  Ping at half this interval, as sd_watchdog_enabled(3) advises.
 */
uint64_t sdp_watchdog_usec(void);

#endif
