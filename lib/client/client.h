/*
 * lib/client - libumapd in client mode: file-backed regions served by the
 * umapd daemon (docs/daemon-protocol.md).
 *
 * The api functions (lib/api.c) ask here first: a region mapped through the
 * daemon is a MAP_SHARED mapping of the daemon's memfd for the file,
 * registered with this process's own userfaultfd, which the daemon reads.
 * If the daemon goes away, a thread of ours ("umapd-client") takes the
 * faults over in-process for the rest of the process's life.
 *
 * Functions return 0 / a pointer, or a negative errno; -ENOENT from
 * cl_unmap and 0 from cl_range mean "not a daemon region: carry on".
 */
#ifndef UMAPD_CLIENT_H
#define UMAPD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct umapd_region_opts;

/* Connect (path NULL: $UMAPD_SOCKET, else the default).  0 or -errno. */
int cl_connect(const char *path);

/* Whether umapd_map of a file should go to the daemon: connected, or
 * UMAPD_SOCKET is set (connecting lazily now).  1 yes, 0 no: after a
 * failed lazy connect (logged once) and after the daemon went away.
 * -EINVAL (logged) when the connect would use an invalid
 * UMAPD_USER_MODE_ONLY: the user's error, not a reason to page in-process. */
int cl_wanted(void);

/* Map through the daemon; NULL with *err. */
void *cl_map(void *addr, size_t length, int prot, int flags, int fd, off_t offset,
	     const struct umapd_region_opts *opts, int *err);

/* Unmap a daemon region: 0, -ENOENT (not one), or the write-back error. */
int cl_unmap(void *addr);

/* Flush (evict: and drop) the daemon regions in a range: the number of
 * regions it touched (0: none), or the first error. */
int cl_range(void *addr, size_t length, bool evict);

/* Whether addr is in a daemon region. */
bool cl_owns(const void *addr);

/* The page size of the daemon region containing addr, or 0. */
size_t cl_page_size(const void *addr);

#endif /* UMAPD_CLIENT_H */
