/*
 * dconf - daemon/common/dconf: defaults, the configuration file, the
 * command line and their precedence, UMAPD_SOCKET, sizes, every refusal
 * with its exact one-line message, --help/--version, get/set round trips;
 * and lib/util/log's syslog priority prefixes (what journald reads).
 */
#include "umapd_test.h"
#include "dconf.h"
#include "engine/config.h"
#include "util/log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int nchecks;
static char dir[] = "/tmp/umapd-dconf-XXXXXX";
static char conf[300];

static void write_conf(const char *text, size_t len)
{
	int fd = open(conf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	T_CHECK(fd >= 0, "open %s: %s", conf, strerror(errno));
	T_CHECK(write(fd, text, len) == (ssize_t)len, "write %s: %s", conf, strerror(errno));
	close(fd);
}

/* dconf_load over a NULL-terminated argument list (argv[0] included). */
static int load(struct dconf *c, char *why, size_t whylen, const char *const *args)
{
	char *argv[32];
	int argc = 0;
	while (args[argc]) {
		argv[argc] = (char *)args[argc];
		argc++;
	}
	argv[argc] = NULL;
	why[0] = '\0';
	return dconf_load(c, argc, argv, why, whylen);
}

#define ARGS(...) ((const char *const[]){ "umapd", __VA_ARGS__, NULL })

static void load_ok(struct dconf *c, const char *const *args)
{
	char why[512];
	int rc = load(c, why, sizeof(why), args);
	T_CHECK(rc == 0, "dconf_load(%s %s ...) = %d: %s", args[1] ? args[1] : "", args[1] && args[2] ? args[2] : "", rc,
		why);
	nchecks++;
}

/* Loading must fail with exactly this message (%s in want: the conf path). */
static void load_bad(const char *const *args, const char *want_fmt)
{
	struct dconf c;
	char why[512], want[700];
	snprintf(want, sizeof(want), want_fmt, conf);
	int rc = load(&c, why, sizeof(why), args);
	T_CHECK(rc == -1, "dconf_load(%s %s ...) = %d, want -1 with \"%s\"", args[1] ? args[1] : "",
		args[1] && args[2] ? args[2] : "", rc, want);
	T_CHECK(strcmp(why, want) == 0, "message \"%s\", want \"%s\"", why, want);
	T_CHECK(!strchr(why, '\n'), "message has more than one line: \"%s\"", why);
	nchecks++;
}

/* A file with this text must be refused with this message. */
static void file_bad(const char *text, const char *want_fmt)
{
	t_step("file refused: %.40s", text);
	write_conf(text, strlen(text));
	load_bad(ARGS("--config", conf), want_fmt);
}

static void size_ok(const char *s, uint64_t want)
{
	uint64_t v = 0;
	int rc = dconf_parse_size(s, &v);
	T_CHECK(rc == 0 && v == want, "dconf_parse_size(\"%s\") = %d, %llu; want 0, %llu", s, rc, (unsigned long long)v,
		(unsigned long long)want);
	nchecks++;
}

static void size_bad(const char *s)
{
	uint64_t v = 777;
	int rc = dconf_parse_size(s, &v);
	T_CHECK(rc == -EINVAL && v == 777, "dconf_parse_size(\"%s\") = %d (%llu), want -EINVAL and untouched", s, rc,
		(unsigned long long)v);
	nchecks++;
}

static void sizes(void)
{
	t_step("sizes");
	size_ok("0", 0);
	size_ok("4096", 4096);
	size_ok("64K", 64 << 10);
	size_ok("64k", 64 << 10);
	size_ok("3M", 3 << 20);
	size_ok("2G", 2ull << 30);
	size_ok("2GiB", 2ull << 30);
	size_ok("2GB", 2ull << 30);
	size_ok("1T", 1ull << 40);
	size_ok("16777215T", 16777215ull << 40);
	size_ok("18446744073709551615", UINT64_MAX);
	const char *bad[] = { "", "K", "-1", "+1", " 1", "1 ", "1.5G", "0x10", "1X", "1Gx", "1GiBx", "1Gb", "1iB",
			      "1B", "16777216T", "18446744073709551616", "99999999999999999999999", "1%", "1KK" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		size_bad(bad[i]);
}

static void defaults(void)
{
	struct dconf c;
	struct eng_config lib; /* the library's defaults: read_ahead must be the same */
	t_step("defaults");
	unsetenv("UMAPD_SOCKET");
	dconf_defaults(&c);
	cfg_defaults(&lib);
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t mem = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)pg;
	T_CHECK(strcmp(c.socket_path, "/run/umapd/umapd.sock") == 0, "default socket %s", c.socket_path);
	T_CHECK(c.budget > 0 && c.budget % (uint64_t)pg == 0 && c.budget <= mem / 4 && c.budget + (uint64_t)pg > mem / 4,
		"default budget %llu is not a quarter of %llu bytes, page-aligned", (unsigned long long)c.budget,
		(unsigned long long)mem);
	T_CHECK(c.page_size == (uint64_t)pg, "default page_size %llu", (unsigned long long)c.page_size);
	T_CHECK(c.read_ahead == (uint64_t)lib.read_ahead && lib.read_ahead == 2048,
		"default read_ahead %llu, the library's (UMAPD_READ_AHEAD) %ld: want both 2048 pages",
		(unsigned long long)c.read_ahead, lib.read_ahead);
	T_CHECK(c.fillers == 4 && c.evictors == 1 && c.max_clients == 1024 &&
			c.high_water == 95 && c.low_water == 85 && c.socket_mode == 0666 && c.socket_gid == -1 &&
			c.log_level == ULOG_INFO && c.client_limit == 0 && c.uid_limit == 0 && c.n_allow_uids == 0 &&
			c.request_timeout_ms == 5000 && c.io == DCONF_IO_AUTO,
		"a default differs from the documented one");
	char why[256];
	T_CHECK(dconf_check(&c, why, sizeof(why)) == 0, "the defaults fail their own check: %s", why);
	nchecks += 5;
}

static void precedence(void)
{
	struct dconf c;
	t_step("file, then command line");
	const char *text = "# umapd test configuration\n"
			   "\n"
			   "budget = 1G\r\n"
			   "   fillers\t=  8   \n"
			   "client-limit=256M\n"
			   "socket = /tmp/umapd test/#not a comment.sock\n"
			   "allow_users = root, 0 ,65534\n"
			   "   # indented comment\n"
			   "log_level = DEBUG\n"
			   "page_size = 64K"; /* no final newline */
	write_conf(text, strlen(text));
	load_ok(&c, ARGS("--config", conf, "--budget", "2G", "--read-ahead=16", "--evictors", "2"));
	T_CHECK(c.budget == 2ull << 30, "budget %llu: the option must win over the file", (unsigned long long)c.budget);
	T_CHECK(c.fillers == 8 && c.client_limit == 256 << 20 && c.read_ahead == 16 && c.evictors == 2 &&
			c.page_size == 64 << 10 && c.log_level == ULOG_DEBUG,
		"fillers %u client_limit %llu read_ahead %llu evictors %u page_size %llu log_level %d", c.fillers,
		(unsigned long long)c.client_limit, (unsigned long long)c.read_ahead, c.evictors,
		(unsigned long long)c.page_size, c.log_level);
	T_CHECK(strcmp(c.socket_path, "/tmp/umapd test/#not a comment.sock") == 0, "socket \"%s\"", c.socket_path);
	T_CHECK(c.n_allow_uids == 2 && c.allow_uids[0] == 0 && c.allow_uids[1] == 65534,
		"allow_users: %u entries (%u, %u)", c.n_allow_uids, c.allow_uids[0], c.allow_uids[1]);
	T_CHECK(strcmp(c.config_file, conf) == 0, "config_file \"%s\"", c.config_file);

	t_step("--config=FILE and -c FILE");
	load_ok(&c, ARGS("--config=/dev/null", "--fillers=3"));
	T_CHECK(c.fillers == 3 && c.budget != 2ull << 30, "--config=/dev/null: fillers %u", c.fillers);
	load_ok(&c, ARGS("-c", conf));
	T_CHECK(c.fillers == 8, "-c: fillers %u", c.fillers);
	load_ok(&c, ARGS("-c", conf, "--"));
	nchecks += 5;

	t_step("UMAPD_SOCKET");
	setenv("UMAPD_SOCKET", "/tmp/from-env.sock", 1);
	load_ok(&c, ARGS("--config", "/dev/null"));
	T_CHECK(strcmp(c.socket_path, "/tmp/from-env.sock") == 0, "UMAPD_SOCKET ignored: %s", c.socket_path);
	load_ok(&c, ARGS("--config", "/dev/null", "--socket", "/tmp/opt.sock"));
	T_CHECK(strcmp(c.socket_path, "/tmp/opt.sock") == 0, "UMAPD_SOCKET beat --socket: %s", c.socket_path);
	load_ok(&c, ARGS("--config", conf));
	T_CHECK(strcmp(c.socket_path, "/tmp/umapd test/#not a comment.sock") == 0, "UMAPD_SOCKET beat the file: %s",
		c.socket_path);
	dconf_defaults(&c);
	T_CHECK(strcmp(c.socket_path, "/tmp/from-env.sock") == 0, "dconf_defaults ignores UMAPD_SOCKET: %s", c.socket_path);
	setenv("UMAPD_SOCKET", "relative.sock", 1);
	load_bad(ARGS("--config", "/dev/null"),
		 "UMAPD_SOCKET (environment): expected an absolute path shorter than 108 bytes");
	load_ok(&c, ARGS("--config", "/dev/null", "--socket", "/tmp/opt.sock")); /* irrelevant when overridden */
	unsetenv("UMAPD_SOCKET");
	nchecks += 4;
}

static void file_errors(void)
{
	file_bad("budget 2G\n", "%s:1: expected 'key = value', got 'budget 2G'");
	file_bad("\n\n= 5\n", "%s:3: expected 'key = value', got '= 5'");
	file_bad("fillers = 2\nbogus = 1\n", "%s:2: unknown key 'bogus'");
	file_bad("budget = 1G\nfillers = 2\nbudget = 2G\n", "%s:3: budget: given twice in this file");
	file_bad("client_limit = 1G\nclient-limit = 1G\n", "%s:2: client_limit: given twice in this file");
	file_bad("budget = 2Gx\n",
		 "%s:1: budget: expected a size (bytes, or with a K/M/G/T suffix) or N%% of memory, got '2Gx'");
	file_bad("budget = 99999999999999999999\n",
		 "%s:1: budget: expected a size (bytes, or with a K/M/G/T suffix) or N%% of memory, got "
		 "'99999999999999999999'");
	file_bad("budget = 0\n", "%s:1: budget: must be at least one page (4096 bytes), got '0'");
	file_bad("budget = 0%\n", "%s:1: budget: a percentage must be 1%%..100%% of memory, got '0%%'");
	file_bad("budget = 101%\n", "%s:1: budget: a percentage must be 1%%..100%% of memory, got '101%%'");
	file_bad("budget =\n",
		 "%s:1: budget: expected a size (bytes, or with a K/M/G/T suffix) or N%% of memory, got ''");
	file_bad("fillers = 0\n", "%s:1: fillers: expected an integer 1..256, got '0'");
	file_bad("fillers = 257\n", "%s:1: fillers: expected an integer 1..256, got '257'");
	file_bad("evictors = 4 4\n", "%s:1: evictors: expected an integer 1..64, got '4 4'");
	file_bad("max_clients = -1\n", "%s:1: max_clients: expected an integer 1..65536, got '-1'");
	file_bad("read_ahead = 4097\n", "%s:1: read_ahead: expected an integer 0..4096, got '4097'");
	file_bad("page_size = 12K\n", "%s:1: page_size: expected a power of two from 4K to 1G, got '12K'");
	file_bad("page_size = 2G\n", "%s:1: page_size: expected a power of two from 4K to 1G, got '2G'");
	file_bad("page_size = 2K\n", "%s:1: page_size: expected a power of two from 4K to 1G, got '2K'");
	file_bad("client_limit = 1.5G\n",
		 "%s:1: client_limit: expected a size (bytes, or with a K/M/G/T suffix), got '1.5G'");
	file_bad("socket = run/umapd.sock\n",
		 "%s:1: socket: expected an absolute path shorter than 108 bytes, got 'run/umapd.sock'");
	file_bad("socket = /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
		 "%s:1: socket: expected an absolute path shorter than 108 bytes, got "
		 "'/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'");
	file_bad("socket_mode = 0888\n", "%s:1: socket_mode: expected an octal mode 0..0777, got '0888'");
	file_bad("socket_mode = 1777\n", "%s:1: socket_mode: expected an octal mode 0..0777, got '1777'");
	file_bad("log_level = loud\n", "%s:1: log_level: expected error, warn, info, debug or 0..3, got 'loud'");
	file_bad("log_prefix = yes\n", "%s:1: log_prefix: expected auto, syslog or plain, got 'yes'");
	file_bad("io = uring\n", "%s:1: io: expected auto, io_uring, aio or psync, got 'uring'");
	file_bad("allow_users = root, umapd-no-such-user-xq\n", "%s:1: allow_users: no user named 'umapd-no-such-user-xq'");
	file_bad("allow_users = 4294967295\n", "%s:1: allow_users: '4294967295' is not a user id (0..4294967294)");
	file_bad("allow_groups = bad/name\n", "%s:1: allow_groups: 'bad/name' is not a group name or id");
	file_bad("request_timeout_ms = 0\n", "%s:1: request_timeout_ms: expected an integer 1..3600000, got '0'");
	file_bad("high_water = 80\nlow_water = 80\n", "low_water (80) must be below high_water (80)");
	file_bad("budget = 64K\npage_size = 1M\n", "budget (65536) is smaller than page_size (1048576)");
	file_bad("page_size = 64K\nclient_limit = 4K\n",
		 "client_limit (4096) is smaller than page_size (65536)");

	t_step("file refused: binary and oversized input");
	write_conf("fillers = 2\nbud\0get = 1\n", 24);
	load_bad(ARGS("--config", conf), "%s:2: NUL byte in line");
	static char big[8000];
	memset(big, ' ', sizeof(big));
	memcpy(big, "fillers = 2\n", 12);
	big[sizeof(big) - 1] = '\n';
	write_conf(big, sizeof(big));
	load_bad(ARGS("--config", conf), "%s:2: line longer than 4096 bytes");
	char *huge = calloc(1, (1 << 20) + 2);
	T_CHECK(huge != NULL, "calloc");
	memset(huge, '\n', (1 << 20) + 1);
	write_conf(huge, (1 << 20) + 1);
	free(huge);
	load_bad(ARGS("--config", conf), "%s: larger than 1048576 bytes");

	t_step("file refused: cannot be read");
	load_bad(ARGS("--config", "/nonexistent/umapd.conf"), "/nonexistent/umapd.conf: cannot open: No such file or directory");
	load_bad(ARGS("--config", "/"), "/: is a directory");
}

static void cli_errors(void)
{
	t_step("command line refused");
	load_bad(ARGS("--config", "/dev/null", "--bogus", "1"), "unknown option '--bogus'");
	load_bad(ARGS("--config", "/dev/null", "-x"), "unknown option '-x'");
	load_bad(ARGS("--config", "/dev/null", "stray"), "unexpected argument 'stray'");
	load_bad(ARGS("--config", "/dev/null", "--", "stray"), "unexpected argument 'stray'");
	load_bad(ARGS("--config", "/dev/null", "--budget"), "--budget: needs a value");
	load_bad(ARGS("--config", "/dev/null", "--fillers", "2", "--fillers=3"), "--fillers: given twice");
	load_bad(ARGS("--config", "/dev/null", "--client-limit", "1G", "--client_limit", "1G"),
		 "--client_limit: given twice");
	load_bad(ARGS("--config", "/dev/null", "--fillers=2x"), "--fillers: expected an integer 1..256, got '2x'");
	load_bad(ARGS("--config", "/dev/null", "--low-water", "-1"), "--low-water: expected an integer 0..99, got '-1'");
	load_bad(ARGS("--config", "/dev/null", "--config", "/dev/null"), "--config: given twice");
	load_bad(ARGS("--config="), "--config: empty file name");
	load_bad(ARGS("--config"), "--config: needs a value");
	load_bad(ARGS("-c"), "-c: needs a value");
	load_bad(ARGS("--config", "/dev/null", "--low-water", "95"),
		 "low_water (95) must be below high_water (95)");
	/* A value that looks like an option is still the value. */
	load_bad(ARGS("--config", "/dev/null", "--socket", "--budget"),
		 "--socket: expected an absolute path shorter than 108 bytes, got '--budget'");
	/* Control bytes are not echoed raw. */
	load_bad(ARGS("--config", "/dev/null", "--io", "a\nb\033c"),
		 "--io: expected auto, io_uring, aio or psync, got 'a?b?c'");
}

/* Run dconf_load with stdout redirected to a file; return what it printed. */
static int load_capture(const char *const *args, char *out, size_t outlen)
{
	char path[400], why[512];
	struct dconf c;
	snprintf(path, sizeof(path), "%s/stdout", dir);
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	T_CHECK(saved >= 0 && fd >= 0, "redirect stdout: %s", strerror(errno));
	dup2(fd, STDOUT_FILENO);
	int rc = load(&c, why, sizeof(why), args);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	ssize_t n = pread(fd, out, outlen - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return rc;
}

static void help_version(void)
{
	static char out[16384];
	char opt[64];

	t_step("--help and --version");
	/* Neither reads the file: a broken --config does not matter. */
	int rc = load_capture(ARGS("--config", "/nonexistent", "--help"), out, sizeof(out));
	T_CHECK(rc == 1, "--help returned %d, want 1", rc);
	for (int i = 0; dconf_keys[i]; i++) {
		snprintf(opt, sizeof(opt), "--%s ", dconf_keys[i]);
		for (char *p = opt + 2; *p; p++)
			if (*p == '_')
				*p = '-';
		T_CHECK(strstr(out, opt), "--help does not mention %s", opt);
	}
	rc = load_capture(ARGS("-h"), out, sizeof(out));
	T_CHECK(rc == 1 && strncmp(out, "Usage: umapd ", 13) == 0, "-h: %d \"%.40s\"", rc, out);
	rc = load_capture(ARGS("--budget", "bad", "--version"), out, sizeof(out));
	T_CHECK(rc == 1 && strncmp(out, "umapd ", 6) == 0 && strchr("0123456789", out[6]), "--version: %d \"%s\"", rc,
		out);
	rc = load_capture(ARGS("-V"), out, sizeof(out));
	T_CHECK(rc == 1 && strncmp(out, "umapd ", 6) == 0, "-V: %d \"%s\"", rc, out);
	/* "--socket --help": --help is the socket's value, not a request for help. */
	rc = load_capture(ARGS("--config", "/dev/null", "--socket", "--help"), out, sizeof(out));
	T_CHECK(rc == -1 && out[0] == '\0', "--socket --help: %d, printed \"%.40s\"", rc, out);
	nchecks += 5;
}

static void set_get(void)
{
	struct dconf c, before;
	char why[512], buf[2048];

	t_step("dconf_set / dconf_get round trips");
	dconf_defaults(&c);
	T_CHECK(dconf_set(&c, "budget", "50%", why, sizeof(why)) == 0, "budget=50%%: %s", why);
	uint64_t mem = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	T_CHECK(c.budget <= mem / 2 && c.budget + (uint64_t)sysconf(_SC_PAGESIZE) * 2 > mem / 2,
		"budget=50%% is %llu of %llu", (unsigned long long)c.budget, (unsigned long long)mem);
	T_CHECK(dconf_set(&c, "allow_groups", "root 0,0", why, sizeof(why)) == 0 && c.n_allow_gids == 1,
		"allow_groups duplicates: %s (%u)", why, c.n_allow_gids);
	T_CHECK(dconf_set(&c, "socket_group", "0", why, sizeof(why)) == 0 && c.socket_gid == 0, "socket_group 0");
	T_CHECK(dconf_set(&c, "admin_users", "0", why, sizeof(why)) == 0 && c.n_admin_uids == 1, "admin_users 0");
	T_CHECK(dconf_set(&c, "log-level", "warning", why, sizeof(why)) == 0 && c.log_level == ULOG_WARN, "warning");
	T_CHECK(dconf_set(&c, "io", "IO_URING", why, sizeof(why)) == 0 && c.io == DCONF_IO_URING, "IO_URING");
	T_CHECK(dconf_set(&c, "socket_mode", "660", why, sizeof(why)) == 0 && c.socket_mode == 0660, "mode 660");

	before = c;
	int rc = dconf_set(&c, "fillers", "nine", why, sizeof(why));
	T_CHECK(rc == -EINVAL && memcmp(&c, &before, sizeof(c)) == 0, "a refused value changed the configuration");
	rc = dconf_set(&c, "allow_users", "0, 1, nobody-such-xq", why, sizeof(why));
	T_CHECK(rc == -EINVAL && memcmp(&c, &before, sizeof(c)) == 0, "a refused list changed the configuration");
	rc = dconf_set(&c, "nope", "1", why, sizeof(why));
	T_CHECK(rc == -ENOENT && strcmp(why, "unknown key 'nope'") == 0, "unknown key: %d \"%s\"", rc, why);
	T_CHECK(dconf_get(&c, "nope", buf, sizeof(buf)) == -ENOENT, "dconf_get of an unknown key");
	T_CHECK(dconf_get(&c, "socket", buf, 4) == -ERANGE, "dconf_get into a short buffer");

	/* Every key reads back as a string that sets the same value again. */
	for (int i = 0; dconf_keys[i]; i++) {
		int n = dconf_get(&c, dconf_keys[i], buf, sizeof(buf));
		T_CHECK(n >= 0 && (size_t)n == strlen(buf), "dconf_get(%s) = %d", dconf_keys[i], n);
		struct dconf again;
		dconf_defaults(&again);
		T_CHECK(dconf_set(&again, dconf_keys[i], buf, why, sizeof(why)) == 0, "%s = \"%s\" read back is refused: %s",
			dconf_keys[i], buf, why);
		char buf2[2048];
		dconf_get(&again, dconf_keys[i], buf2, sizeof(buf2));
		T_CHECK(strcmp(buf, buf2) == 0, "%s: \"%s\" then \"%s\"", dconf_keys[i], buf, buf2);
		nchecks++;
	}
	nchecks += 12;
}

/* Capture what ulog writes to stderr. */
static void log_line(int prefix, enum ulog_level lvl, const char *want)
{
	char path[400], got[256];
	snprintf(path, sizeof(path), "%s/stderr", dir);
	int saved = dup(STDERR_FILENO), fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	T_CHECK(saved >= 0 && fd >= 0, "redirect stderr: %s", strerror(errno));
	dup2(fd, STDERR_FILENO);
	ulog_set_syslog_prefix(prefix);
	ulog(lvl, "region %d: %s", 7, "EIO");
	ulog_set_syslog_prefix(0);
	dup2(saved, STDERR_FILENO);
	close(saved);
	ssize_t n = pread(fd, got, sizeof(got) - 1, 0);
	got[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	T_CHECK(strcmp(got, want) == 0, "log line \"%s\", want \"%s\"", got, want);
	nchecks++;
}

static void logging(void)
{
	t_step("syslog priority prefixes");
	enum ulog_level old = ulog_get_level();
	ulog_set_level(ULOG_DEBUG);
	log_line(1, ULOG_ERROR, "<3>umapd: error: region 7: EIO\n");
	log_line(1, ULOG_WARN, "<4>umapd: warning: region 7: EIO\n");
	log_line(1, ULOG_INFO, "<6>umapd: info: region 7: EIO\n");
	log_line(1, ULOG_DEBUG, "<7>umapd: debug: region 7: EIO\n");
	log_line(0, ULOG_ERROR, "umapd: error: region 7: EIO\n");
	ulog_set_level(old);

	t_step("log_prefix auto follows JOURNAL_STREAM");
	struct dconf c;
	struct stat st;
	char js[64];
	dconf_defaults(&c);
	T_CHECK(fstat(STDERR_FILENO, &st) == 0, "fstat stderr");
	unsetenv("JOURNAL_STREAM");
	T_CHECK(dconf_want_syslog_prefix(&c) == 0, "auto without JOURNAL_STREAM wants prefixes");
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	T_CHECK(dconf_want_syslog_prefix(&c) == 1, "auto with JOURNAL_STREAM=%s (stderr) wants none", js);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino + 1);
	setenv("JOURNAL_STREAM", js, 1);
	T_CHECK(dconf_want_syslog_prefix(&c) == 0, "auto with another stream (%s) wants prefixes", js);
	setenv("JOURNAL_STREAM", "garbage", 1);
	T_CHECK(dconf_want_syslog_prefix(&c) == 0, "auto with JOURNAL_STREAM=garbage wants prefixes");
	c.log_prefix = DCONF_LOG_PREFIX_SYSLOG;
	T_CHECK(dconf_want_syslog_prefix(&c) == 1, "syslog: no prefixes");
	c.log_prefix = DCONF_LOG_PREFIX_PLAIN;
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	T_CHECK(dconf_want_syslog_prefix(&c) == 0, "plain: prefixes");
	unsetenv("JOURNAL_STREAM");
	nchecks += 6;
}

/*
 * systemd/umapd.conf, the installed sample: it loads as it is; with every
 * "#key = value" line uncommented it still loads and gives exactly the
 * defaults (so the values it documents are the real ones); and it mentions
 * every key.
 */
static int sample(const char *path)
{
	char why[512], a[2048], b[2048];
	struct dconf c, def;

	t_init("sample_conf", 60);
	unsetenv("UMAPD_SOCKET");
	t_step("the sample as installed");
	load_ok(&c, ARGS("--config", path));

	t_step("the sample uncommented");
	FILE *f = fopen(path, "r");
	T_CHECK(f != NULL, "open %s: %s", path, strerror(errno));
	static char text[1 << 16];
	size_t len = 0;
	char line[4096];
	unsigned mentioned = 0;
	while (fgets(line, sizeof(line), f)) {
		const char *l = line;
		size_t klen = 0;
		if (line[0] == '#') {
			klen = strspn(line + 1, "abcdefghijklmnopqrstuvwxyz_");
			if (klen && strncmp(line + 1 + klen, " =", 2) == 0) {
				l = line + 1; /* "#key = value": a documented setting */
				for (int i = 0; dconf_keys[i]; i++)
					if (strlen(dconf_keys[i]) == klen && strncmp(dconf_keys[i], l, klen) == 0)
						mentioned |= 1u << i;
			}
		}
		size_t n = strlen(l);
		T_CHECK(len + n < sizeof(text), "%s is too long for this test", path);
		memcpy(text + len, l, n);
		len += n;
	}
	fclose(f);
	for (int i = 0; dconf_keys[i]; i++)
		T_CHECK(mentioned & (1u << i), "%s does not document '%s' as '#%s = <default>'", path, dconf_keys[i],
			dconf_keys[i]);
	dconf_defaults(&def);
	dconf_defaults(&c);
	T_CHECK(dconf_parse_text(&c, text, len, "uncommented sample", why, sizeof(why)) == 0, "%s", why);
	for (int i = 0; dconf_keys[i]; i++) {
		dconf_get(&c, dconf_keys[i], a, sizeof(a));
		dconf_get(&def, dconf_keys[i], b, sizeof(b));
		T_CHECK(strcmp(a, b) == 0, "the sample documents %s as \"%s\", the default is \"%s\"", dconf_keys[i], a,
			b);
		nchecks++;
	}
	int nkeys = 0;
	while (dconf_keys[nkeys])
		nkeys++;
	t_pass("all %d keys documented in %s with their real defaults (%d checks)", nkeys, path, nchecks);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "sample") == 0)
		return sample(argv[2]);
	t_init("dconf", 60);
	T_CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	snprintf(conf, sizeof(conf), "%s/umapd.conf", dir);
	unsetenv("UMAPD_SOCKET");
	if (sysconf(_SC_PAGESIZE) != 4096)
		t_skip("the expected messages assume 4 KiB pages");

	sizes();
	defaults();
	precedence();
	file_errors();
	cli_errors();
	help_version();
	set_get();
	logging();
	unlink(conf);
	rmdir(dir);
	t_pass("%d checks: sizes, defaults, file < command line, UMAPD_SOCKET, every refusal with its message, "
	       "--help/--version, get/set round trips, syslog prefixes",
	       nchecks);
}
