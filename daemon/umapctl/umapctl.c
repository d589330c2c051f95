/*
 * umapctl - ask a running umapd daemon how it stands and tell it what to
 * do, over its socket and versioned protocol (an admin session:
 * docs/daemon-protocol.md).  Exit status: 0 done, 1 the daemon refused or
 * could not be reached, 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dconf.h"
#include "proto/proto.h"

static int sock = -1;
static uint64_t seq;
static struct proto_rx rx;

static void usage(FILE *o)
{
	fprintf(o, "Usage: umapctl [--socket PATH] [--json] COMMAND [ARG]\n"
		   "Commands:\n"
		   "  status              the daemon: budget, resident and dirty bytes, clients, regions\n"
		   "  clients             connected clients and what each holds\n"
		   "  regions             mapped regions, with their file's resident and dirty bytes\n"
		   "  stats               the daemon's counters since it started\n"
		   "  set-budget SIZE     change the node budget now (e.g. 512M, 2G)\n"
		   "  flush [CLIENT]      write back dirty pages (of the files CLIENT maps; all by default)\n"
		   "  evict [CLIENT]      write back and drop resident pages (likewise)\n"
		   "  disconnect CLIENT   close a client's session (its process takes its faults over)\n"
		   "The socket is --socket, else $UMAPD_SOCKET, else " PROTO_DEFAULT_SOCKET ".\n");
}

/* One request; 0 or the daemon's errno (message printed). */
static int request(uint16_t type, const void *p, uint32_t len, struct proto_msg *m)
{
	struct proto_hdr h;
	int ret;

	proto_rx_reset(&rx);
	ret = proto_send(sock, type, PROTO_VERSION, ++seq, p, len, NULL, 0, false);
	if (ret == 0)
		ret = proto_rx_frame(sock, &rx);
	if (ret != 1) {
		fprintf(stderr, "umapctl: %s: the daemon closed the connection or failed (%s)\n", proto_type_name(type),
			strerror(ret == -EPIPE ? ECONNRESET : -ret));
		return ECONNRESET;
	}
	memcpy(&h, rx.hdr, sizeof(h));
	ret = proto_decode(&h, rx.payload, rx.fds, rx.nfds, m);
	if (ret < 0 || h.seq != seq || (h.type != PT_ERROR && h.type != (type | PT_REPLY))) {
		fprintf(stderr, "umapctl: %s: malformed reply from the daemon\n", proto_type_name(type));
		return EPROTO;
	}
	if (h.type == PT_ERROR) {
		fprintf(stderr, "umapctl: %s refused: %s (%s)\n", proto_type_name(type), m->u.error.msg,
			strerror(m->u.error.err));
		return m->u.error.err;
	}
	return 0;
}

static int connect_admin(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct proto_hello he = { PROTO_VERSION_MIN, PROTO_VERSION, PROTO_ROLE_ADMIN, 0 };
	struct proto_msg m;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "umapctl: socket path too long: %s\n", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "umapctl: cannot connect to %s: %s (is umapd running?)\n", path, strerror(errno));
		return -1;
	}
	proto_rx_init(&rx);
	return request(PT_HELLO, &he, sizeof(he), &m) ? -1 : 0;
}

static const char *human(uint64_t b, char *buf, size_t n)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
	return buf;
}

#define STAT_FIELDS(X)                                                                           \
	X(faults) X(missing_faults) X(minor_faults) X(wp_faults) X(fills) X(evictions)            \
	X(dirty_evictions) X(flushed_pages) X(bytes_read) X(bytes_written) X(io_errors)        \
	X(resident_bytes) X(dirty_bytes) X(regions) X(budget_bytes)

static void print_stats(const struct proto_stats *s, bool json)
{
	bool first = true;

	if (json) {
		printf("{");
#define J(f)                                                                      \
	printf("%s\"%s\": %llu", first ? "" : ", ", #f, (unsigned long long)s->f); \
	first = false;
		STAT_FIELDS(J)
#undef J
		printf("}\n");
		return;
	}
#define T(f) printf("%-18s %llu\n", #f, (unsigned long long)s->f);
	STAT_FIELDS(T)
#undef T
}

static int cmd_status(bool json, bool stats_only)
{
	struct proto_msg m;
	int ret = request(PT_STATUS, NULL, 0, &m);
	const struct proto_status *s = &m.u.status;
	char a[32], b[32], c[32];

	if (ret)
		return 1;
	if (stats_only) {
		print_stats(&s->total, json);
		return 0;
	}
	if (json) {
		printf("{\"pid\": %llu, \"uptime_ms\": %llu, \"budget\": %llu, \"client_limit\": %llu, "
		       "\"uid_limit\": %llu, \"resident\": %llu, \"dirty\": %llu, \"clients\": %llu, \"regions\": %llu, "
		       "\"files\": %llu, \"max_clients\": %llu, \"stats\": ",
		       (unsigned long long)s->pid, (unsigned long long)s->uptime_ms, (unsigned long long)s->budget,
		       (unsigned long long)s->client_limit, (unsigned long long)s->uid_limit,
		       (unsigned long long)s->resident, (unsigned long long)s->dirty, (unsigned long long)s->clients,
		       (unsigned long long)s->regions, (unsigned long long)s->files, (unsigned long long)s->max_clients);
		fflush(stdout);
		print_stats(&s->total, true);
		printf("}\n");
		return 0;
	}
	printf("umapd pid %llu, up %.1f s\n", (unsigned long long)s->pid, (double)s->uptime_ms / 1000);
	printf("budget      %s (per client %s%s%s)\n", human(s->budget, a, sizeof(a)), human(s->client_limit, b, sizeof(b)),
	       s->uid_limit ? ", per uid " : "", s->uid_limit ? human(s->uid_limit, c, sizeof(c)) : "");
	printf("resident    %s (%.0f%% of the budget)\n", human(s->resident, a, sizeof(a)),
	       s->budget ? 100.0 * (double)s->resident / (double)s->budget : 0.0);
	printf("dirty       %s\n", human(s->dirty, a, sizeof(a)));
	printf("clients     %llu (at most %llu), regions %llu, files %llu\n", (unsigned long long)s->clients,
	       (unsigned long long)s->max_clients, (unsigned long long)s->regions, (unsigned long long)s->files);
	printf("faults      %llu (%llu missing, %llu minor, %llu write-protect), fills %llu, evictions %llu\n",
	       (unsigned long long)s->total.faults, (unsigned long long)s->total.missing_faults,
	       (unsigned long long)s->total.minor_faults, (unsigned long long)s->total.wp_faults,
	       (unsigned long long)s->total.fills, (unsigned long long)s->total.evictions);
	printf("I/O         %s read, %s written, %llu errors\n", human(s->total.bytes_read, a, sizeof(a)),
	       human(s->total.bytes_written, b, sizeof(b)), (unsigned long long)s->total.io_errors);
	return 0;
}

static int cmd_clients(bool json)
{
	struct proto_msg m;
	char a[32];

	if (request(PT_CLIENTS, NULL, 0, &m))
		return 1;
	if (json)
		printf("[");
	else
		printf("%6s %8s %6s %-6s %7s %12s %10s %10s %10s %12s\n", "ID", "PID", "UID", "ROLE", "REGIONS",
		       "RESIDENT", "FAULTS", "FILLS", "EVICTIONS", "WRITTEN");
	for (uint32_t i = 0; i < m.count; i++) {
		struct proto_client_info c;

		memcpy(&c, (const char *)m.list + i * sizeof(c), sizeof(c));
		if (json)
			printf("%s{\"id\": %u, \"pid\": %u, \"uid\": %u, \"role\": \"%s\", \"regions\": %llu, "
			       "\"resident\": %llu, \"limit\": %llu, \"faults\": %llu, \"fills\": %llu, "
			       "\"evictions\": %llu, \"bytes_written\": %llu}",
			       i ? ", " : "", c.id, c.pid, c.uid, c.role == PROTO_ROLE_ADMIN ? "admin" : "client",
			       (unsigned long long)c.regions, (unsigned long long)c.resident, (unsigned long long)c.limit,
			       (unsigned long long)c.faults, (unsigned long long)c.fills, (unsigned long long)c.evictions,
			       (unsigned long long)c.bytes_written);
		else
			printf("%6u %8u %6u %-6s %7llu %12s %10llu %10llu %10llu %12llu\n", c.id, c.pid, c.uid,
			       c.role == PROTO_ROLE_ADMIN ? "admin" : c.role ? "client" : "-", (unsigned long long)c.regions,
			       human(c.resident, a, sizeof(a)), (unsigned long long)c.faults, (unsigned long long)c.fills,
			       (unsigned long long)c.evictions, (unsigned long long)c.bytes_written);
	}
	if (json)
		printf("]\n");
	return 0;
}

static int cmd_regions(bool json)
{
	struct proto_msg m;
	char a[32], b[32];

	if (request(PT_REGIONS, NULL, 0, &m))
		return 1;
	if (json)
		printf("[");
	else
		printf("%6s %6s %18s %12s %12s %8s %2s %20s %12s %12s\n", "ID", "CLIENT", "ADDRESS", "LENGTH", "OFFSET",
		       "PAGE", "RW", "DEV:INODE", "F-RESIDENT", "F-DIRTY");
	for (uint32_t i = 0; i < m.count; i++) {
		struct proto_region_info r;
		char di[48];

		memcpy(&r, (const char *)m.list + i * sizeof(r), sizeof(r));
		snprintf(di, sizeof(di), "%llx:%llu", (unsigned long long)r.dev, (unsigned long long)r.ino);
		if (json)
			printf("%s{\"id\": %llu, \"client\": %u, \"address\": %llu, \"length\": %llu, \"offset\": %llu, "
			       "\"page_size\": %llu, \"writable\": %s, \"dev\": %llu, \"inode\": %llu, "
			       "\"file_resident\": %llu, \"file_dirty\": %llu}",
			       i ? ", " : "", (unsigned long long)r.id, r.client_id, (unsigned long long)r.addr,
			       (unsigned long long)r.len, (unsigned long long)r.offset, (unsigned long long)r.page_size,
			       (r.flags & PROTO_MAP_WRITABLE) ? "true" : "false", (unsigned long long)r.dev,
			       (unsigned long long)r.ino, (unsigned long long)r.file_resident,
			       (unsigned long long)r.file_dirty);
		else
			printf("%6llu %6u %#18llx %12llu %12llu %8llu %2s %20s %12s %12s\n", (unsigned long long)r.id,
			       r.client_id, (unsigned long long)r.addr, (unsigned long long)r.len,
			       (unsigned long long)r.offset, (unsigned long long)r.page_size,
			       (r.flags & PROTO_MAP_WRITABLE) ? "rw" : "r", di, human(r.file_resident, a, sizeof(a)),
			       human(r.file_dirty, b, sizeof(b)));
	}
	if (json)
		printf("]\n");
	return 0;
}

static int parse_id(const char *s, uint32_t *id)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || end == s || v == 0 || v > UINT32_MAX || *s == '-' || *s == '+') {
		fprintf(stderr, "umapctl: not a client id: %s (see umapctl clients)\n", s);
		return -1;
	}
	*id = (uint32_t)v;
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = getenv("UMAPD_SOCKET"), *cmd = NULL, *arg = NULL;
	bool json = false;
	struct proto_msg m;
	int i, ret;

	if (!path || !*path)
		path = PROTO_DEFAULT_SOCKET;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
			path = argv[++i];
		} else if (strncmp(argv[i], "--socket=", 9) == 0) {
			path = argv[i] + 9;
		} else if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "umapctl: unknown option %s\n", argv[i]);
			usage(stderr);
			return 2;
		} else if (!cmd) {
			cmd = argv[i];
		} else if (!arg) {
			arg = argv[i];
		} else {
			fprintf(stderr, "umapctl: too many arguments\n");
			return 2;
		}
	}
	if (!cmd) {
		usage(stderr);
		return 2;
	}
	bool needs_arg = !strcmp(cmd, "set-budget") || !strcmp(cmd, "disconnect");
	bool takes_arg = needs_arg || !strcmp(cmd, "flush") || !strcmp(cmd, "evict");

	if ((needs_arg && !arg) || (!takes_arg && arg)) {
		fprintf(stderr, "umapctl: %s %s an argument\n", cmd, needs_arg ? "needs" : "takes no");
		return 2;
	}
	if (strcmp(cmd, "status") && strcmp(cmd, "clients") && strcmp(cmd, "regions") && strcmp(cmd, "stats") &&
	    !takes_arg) {
		fprintf(stderr, "umapctl: unknown command %s\n", cmd);
		usage(stderr);
		return 2;
	}
	struct proto_budget b;
	struct proto_target t = { 0, 0 };

	if (!strcmp(cmd, "set-budget") && (dconf_parse_size(arg, &b.bytes) < 0 || b.bytes < 4096)) {
		fprintf(stderr, "umapctl: set-budget: not a size of at least 4K: %s\n", arg);
		return 2;
	}
	if (arg && strcmp(cmd, "set-budget") && parse_id(arg, &t.client_id) < 0)
		return 2;
	if (connect_admin(path) < 0)
		return 1;
	if (!strcmp(cmd, "status") || !strcmp(cmd, "stats"))
		ret = cmd_status(json, !strcmp(cmd, "stats"));
	else if (!strcmp(cmd, "clients"))
		ret = cmd_clients(json);
	else if (!strcmp(cmd, "regions"))
		ret = cmd_regions(json);
	else if (!strcmp(cmd, "set-budget"))
		ret = request(PT_SET_BUDGET, &b, sizeof(b), &m) ? 1 : 0;
	else if (!strcmp(cmd, "flush"))
		ret = request(PT_ADMIN_FLUSH, &t, sizeof(t), &m) ? 1 : 0;
	else if (!strcmp(cmd, "evict"))
		ret = request(PT_EVICT, &t, sizeof(t), &m) ? 1 : 0;
	else
		ret = request(PT_DISCONNECT, &t, sizeof(t), &m) ? 1 : 0;
	if (ret == 0 && takes_arg && json)
		printf("{\"ok\": true}\n");
	proto_rx_free(&rx);
	close(sock);
	return ret;
}
