/*
 * umapd - the daemon's entry point: configuration (daemon/common/dconf),
 * socket activation, the watchdog and readiness (daemon/common/sd_proto),
 * then the server loop (server.c).
 */
#include <stdio.h>
#include <string.h>

#include "dconf.h"
#include "sd_proto.h"
#include "srv.h"
#include "util/log.h"

/*
 * Keys the configuration accepts (they are shared with the library's
 * settings) but this daemon does not act on: one thread serves every
 * client with synchronous reads, and eviction follows the budget itself.
 * Say so once at start rather than let a changed value look as if it did
 * something (docs/daemon.md).
 */
static void warn_unused_keys(const struct dconf *dc)
{
	struct dconf def;

	dconf_defaults(&def);
	if (dc->fillers != def.fillers)
		ulog_warn("fillers = %u has no effect: one thread serves every client", dc->fillers);
	if (dc->evictors != def.evictors)
		ulog_warn("evictors = %u has no effect: one thread serves every client", dc->evictors);
	if (dc->page_size != def.page_size)
		ulog_warn("page_size has no effect: each client chooses its regions' page size");
	if (dc->io != def.io)
		ulog_warn("io has no effect: the daemon reads and writes with pread/pwrite");
	if (dc->high_water != def.high_water || dc->low_water != def.low_water)
		ulog_warn("high_water/low_water have no effect: the daemon evicts when a fill needs room");
}

int main(int argc, char **argv)
{
	struct dconf dc;
	struct srv_config cfg;
	char why[512];
	int fds[4], n, ret;

	dconf_defaults(&dc);
	ret = dconf_load(&dc, argc, argv, why, sizeof(why));
	if (ret == 1)
		return 0;
	if (ret < 0) {
		fprintf(stderr, "umapd: %s\n", why);
		return 2;
	}
	ulog_set_level((enum ulog_level)dc.log_level);
	/* Under systemd stderr is the journal: "<3>" ... lets it file each line by priority. */
	ulog_set_syslog_prefix(dconf_want_syslog_prefix(&dc));
	warn_unused_keys(&dc);
	memset(&cfg, 0, sizeof(cfg));
	cfg.dc = &dc;
	snprintf(cfg.socket_path, sizeof(cfg.socket_path), "%s", dc.socket_path);
	cfg.budget = dc.budget;
	cfg.client_limit = dc.client_limit;
	cfg.uid_limit = dc.uid_limit;
	cfg.max_clients = dc.max_clients;
	cfg.read_ahead = dc.read_ahead;
	cfg.request_timeout_ms = dc.request_timeout_ms;
	cfg.listen_fd = -1;
	n = sdp_listen_fds(fds, 4);
	if (n < 0) {
		ulog_error("socket activation: %s", ulog_errname(-n));
		return 1;
	}
	if (n > 1)
		ulog_warn("socket activation passed %d sockets; using the first", n);
	if (n >= 1)
		cfg.listen_fd = fds[0];
	cfg.watchdog_usec = sdp_watchdog_usec();
	cfg.notify = sdp_notify;
	return srv_run(&cfg);
}
