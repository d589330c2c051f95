/*
 * tests/daemon/dtest.h - running a umapd daemon and its clients in tests.
 *
 * Clients are this test binary re-executed with a role argument
 * (dt_spawn), not forked: a forked child of a threaded process may not
 * start threads under TSan, and the client side starts one.
 */
#ifndef UMAPD_DTEST_H
#define UMAPD_DTEST_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/proto.h"

struct dt_daemon {
	pid_t pid;
	char dir[128];
	char sock[160];
	char log[160];
	char budget[32];
	char extra[4][64];
};

/* Start umapd on a fresh socket with the budget ("64M"); waits until it
 * accepts connections.  extra: further "--key=value" options, NULL-ended. */
void dt_daemon_start(struct dt_daemon *d, const char *budget, const char *const *extra);
/* Start it again on the same socket (after a kill). */
void dt_daemon_restart(struct dt_daemon *d);
/* Send sig and reap it; returns the wait status. */
int dt_daemon_stop(struct dt_daemon *d, int sig);
/* Fail unless the daemon is still running. */
void dt_daemon_alive(struct dt_daemon *d, const char *when);
/* SIGTERM, check a clean exit, remove its directory. */
void dt_daemon_cleanup(struct dt_daemon *d);
/* Print the daemon's log (on failure). */
void dt_daemon_dump_log(const struct dt_daemon *d);

/* An admin session (raw protocol). */
int dt_admin_open(const struct dt_daemon *d);
/* One request; the reply's frame stays in rx until the next call.  Returns
 * 0 or the negative errno of an error reply. */
int dt_request(int s, uint16_t type, const void *p, uint32_t len, struct proto_msg *out, struct proto_rx *rx);
void dt_status(const struct dt_daemon *d, struct proto_status *st);
/* CLIENTS: how many client sessions (admin ones aside) the daemon has; the
 * resident bytes of the first max, in connection order, go to resident. */
int dt_clients(const struct dt_daemon *d, uint64_t *resident, int max);

/* Re-execute this binary as "self role arg..." with UMAPD_SOCKET set;
 * returns the pid. */
pid_t dt_spawn(const struct dt_daemon *d, const char *const *args);
/* Wait for a spawned child; fail the test unless it exits 0 (or, with
 * allow_signal, dies of that signal). Returns the status. */
int dt_wait(pid_t pid, const char *what, int allow_signal);

/* Path of the file a test shares with its children: made by the parent. */
void dt_tmpfile(char *path, size_t len, int fill_seed);

#endif
