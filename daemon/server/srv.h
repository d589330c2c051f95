/*
 * daemon/server - the umapd daemon: one budget and one shared page cache
 * for the clients of a node (docs/daemon-protocol.md, DESIGN.md section 7).
 *
 * Everything runs on one thread (the epoll loop in server.c): accepting
 * and reading clients, reading every client's userfaultfd, filling,
 * write-back and eviction.  A fault round trip stays on one CPU, and no
 * structure here needs a lock.
 */
#ifndef UMAPD_SRV_H
#define UMAPD_SRV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct dconf;

struct srv_config {
	const struct dconf *dc; /* access lists and socket ownership; may be NULL */
	char socket_path[108];
	int listen_fd;         /* a descriptor handed over by systemd, or -1 */
	uint64_t budget;       /* bytes resident across all clients */
	uint64_t client_limit; /* bytes per client; 0: the budget */
	uint64_t uid_limit;    /* bytes per uid; 0: no limit */
	unsigned max_clients;
	uint64_t read_ahead;
	uint64_t request_timeout_ms; /* a client that starts a frame must finish it in this; 0: no limit */    /* pages filled (or mapped) ahead of a scan; 0 or 1: none */
	uint64_t watchdog_usec; /* WATCHDOG_USEC, 0: none */
	/* Hooks into the service manager (sd_notify); may be NULL. */
	int (*notify)(const char *fmt, ...);
};

/* Run the daemon until SIGTERM/SIGINT; returns an exit status. */
int srv_run(const struct srv_config *cfg);

#endif /* UMAPD_SRV_H */
