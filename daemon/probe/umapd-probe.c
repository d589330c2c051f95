/*
 * umapd-probe - what the running kernel offers umapd, and whether writing a
 * write-protected page out (umapd's eviction) completes on it.
 *
 * Prints umapd_kernel_probe()'s findings as a table, or as JSON with
 * --json, and the eviction mode umapd will use here (UMAPD_EVICT_COPY) and
 * why.  Exit status 0 whatever the kernel does; 1 when the probe itself
 * could not run; 2 on a bad command line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <umapd.h>

struct path_desc {
	const char *key;   /* JSON key */
	const char *label; /* table label */
};

static const struct path_desc paths[UMAPD_IO_PATHS] = {
	[UMAPD_IO_PWRITE] = { "pwrite", "pwrite" },
	[UMAPD_IO_PWRITE_DIRECT] = { "pwrite_direct", "pwrite O_DIRECT" },
	[UMAPD_IO_URING] = { "io_uring", "io_uring write" },
	[UMAPD_IO_URING_DIRECT] = { "io_uring_direct", "io_uring write O_DIRECT" },
	[UMAPD_IO_AIO_DIRECT] = { "libaio_direct", "libaio io_submit O_DIRECT" },
};

struct feature_desc {
	const char *key;
	const char *label;
	size_t offset;
};

#define FEAT(k, l, f) { k, l, offsetof(struct umapd_kernel_info, f) }
static const struct feature_desc features[] = {
	FEAT("wp", "WP (PAGEFAULT_FLAG_WP)", feat_wp),
	FEAT("wp_unpopulated", "WP_UNPOPULATED", feat_wp_unpopulated),
	FEAT("event_fork", "EVENT_FORK", feat_event_fork),
	FEAT("event_remap", "EVENT_REMAP", feat_event_remap),
	FEAT("event_remove", "EVENT_REMOVE", feat_event_remove),
	FEAT("event_unmap", "EVENT_UNMAP", feat_event_unmap),
	FEAT("poison", "POISON", feat_poison),
	FEAT("move", "MOVE", feat_move),
	FEAT("wp_hugetlbfs_shmem", "WP_HUGETLBFS_SHMEM", feat_wp_hugetlbfs_shmem),
	FEAT("minor_shmem", "MINOR_SHMEM", feat_minor_shmem),
	FEAT("exact_address", "EXACT_ADDRESS", feat_exact_address),
};
#define NFEATURES (sizeof(features) / sizeof(features[0]))

static int feature(const struct umapd_kernel_info *ki, size_t i)
{
	return *(const int *)((const char *)ki + features[i].offset);
}

static const char *errname(int e)
{
	const char *n = strerrorname_np(e);

	return n ? n : "E?";
}

/* --- the eviction decision, as the library takes it ----------------------- */

struct evict {
	const char *setting; /* UMAPD_EVICT_COPY as given, "auto" when unset */
	int valid;
	int mode;            /* UMAPD_EVICT_DIRECT / _BOUNCE, 0 when invalid */
	char reason[512];
};

static void evict_decide(const struct umapd_kernel_info *ki, struct evict *ev)
{
	const char *v = getenv("UMAPD_EVICT_COPY");
	const struct umapd_io_probe *io = &ki->io[UMAPD_IO_PWRITE];

	ev->setting = v && *v ? v : "auto";
	ev->valid = 1;
	ev->mode = 0;
	if (strcasecmp(ev->setting, "direct") == 0) {
		ev->mode = UMAPD_EVICT_DIRECT;
		snprintf(ev->reason, sizeof(ev->reason), "forced by UMAPD_EVICT_COPY=%s%s", ev->setting,
			 io->result == UMAPD_PROBE_SAFE ? "" : " although the pwrite check did not pass");
	} else if (strcasecmp(ev->setting, "bounce") == 0) {
		ev->mode = UMAPD_EVICT_BOUNCE;
		snprintf(ev->reason, sizeof(ev->reason), "forced by UMAPD_EVICT_COPY=%s", ev->setting);
	} else if (strcasecmp(ev->setting, "auto") == 0) {
		ev->mode = ki->evict_auto;
		if (ev->mode == UMAPD_EVICT_DIRECT)
			snprintf(ev->reason, sizeof(ev->reason),
				 "UMAPD_EVICT_COPY=auto: writing a write-protected page with pwrite (what the "
				 "file store does) completes on this kernel");
		else if (io->result == UMAPD_PROBE_HANGS)
			snprintf(ev->reason, sizeof(ev->reason),
				 "UMAPD_EVICT_COPY=auto: pwrite of a write-protected page hangs on this "
				 "kernel; writing from a bounce copy cannot");
		else
			snprintf(ev->reason, sizeof(ev->reason),
				 "UMAPD_EVICT_COPY=auto: the pwrite check did not pass (%s%s%s), so umapd "
				 "does not trust the direct write",
				 io->result == UMAPD_PROBE_ERROR ? "error" : "unavailable",
				 io->error ? " " : "", io->error ? errname(io->error) : "");
	} else {
		ev->valid = 0;
		snprintf(ev->reason, sizeof(ev->reason),
			 "UMAPD_EVICT_COPY=\"%s\" is invalid: expected auto, direct or bounce "
			 "(umapd would not start)", ev->setting);
	}
}

static const char *mode_name(int mode)
{
	return mode == UMAPD_EVICT_DIRECT ? "direct" : mode == UMAPD_EVICT_BOUNCE ? "bounce" : "none";
}

/* --- table ---------------------------------------------------------------- */

static void yes_no(const char *label, int yes, int err)
{
	if (yes || !err)
		printf("  %-30s %s\n", label, yes ? "yes" : "no");
	else
		printf("  %-30s no (%s: %s)\n", label, errname(err), strerror(err));
}

static void sysctl_line(const char *label, int v)
{
	if (v < 0)
		printf("  %-30s (not present)\n", label);
	else
		printf("  %-30s %d\n", label, v);
}

static void print_table(const struct umapd_kernel_info *ki, const struct evict *ev)
{
	printf("kernel %s\n\n", ki->release);
	printf("userfaultfd\n");
	yes_no("/dev/userfaultfd", ki->dev_userfaultfd, ki->dev_userfaultfd_error);
	yes_no("userfaultfd(2)", ki->syscall_userfaultfd, ki->syscall_userfaultfd_error);
	yes_no("UFFD_USER_MODE_ONLY", ki->user_mode_only, ki->user_mode_only_error);
	sysctl_line("vm.unprivileged_userfaultfd", ki->unprivileged_userfaultfd);
	sysctl_line("kernel.io_uring_disabled", ki->io_uring_disabled);
	if (ki->uffd_error)
		printf("\nfeatures: unknown, no userfaultfd (%s: %s)\n", errname(ki->uffd_error),
		       strerror(ki->uffd_error));
	else
		printf("\nfeatures (UFFDIO_API %#llx)\n", (unsigned long long)ki->uffd_features);
	for (size_t i = 0; !ki->uffd_error && i < NFEATURES; i++)
		yes_no(features[i].label, feature(ki, i), 0);

	printf("\nwriting out a write-protected page (file in %s, %s; %d ms per check%s)\n",
	       ki->tmp_dir, ki->fs_type, ki->timeout_ms,
	       ki->io_user_mode_only ? "; user-mode-only userfaultfd" : "");
	for (int p = 0; p < UMAPD_IO_PATHS; p++) {
		const struct umapd_io_probe *io = &ki->io[p];
		char what[256];

		switch (io->result) {
		case UMAPD_PROBE_SAFE:
			snprintf(what, sizeof(what), "safe (%.1f us%s)", (double)io->elapsed_ns / 1e3,
				 io->wp_seen == 1 ? ", page was write-protected" : "");
			break;
		case UMAPD_PROBE_HANGS:
			snprintf(what, sizeof(what), "HANGS (would deadlock eviction; killed after %d ms)",
				 ki->timeout_ms);
			break;
		case UMAPD_PROBE_ERROR:
			snprintf(what, sizeof(what), "ERROR (%s: %s)", errname(io->error),
				 io->error == EBADMSG ? "the file does not hold the page's bytes"
				 : io->error == ECHILD ? "the check's process died" : strerror(io->error));
			break;
		case UMAPD_PROBE_UNAVAILABLE: {
			int uring = p == UMAPD_IO_URING || p == UMAPD_IO_URING_DIRECT;
			const char *why = strerror(io->error);

			if (ki->uffd_error)
				why = "no userfaultfd";
			else if (io->error == EOPNOTSUPP)
				why = "no write-protect faults";
			else if (p != UMAPD_IO_PWRITE && p != UMAPD_IO_URING && io->error == EINVAL)
				why = "no O_DIRECT on this file system";
			else if (uring && io->error == EPERM && ki->io_uring_disabled > 0)
				why = "kernel.io_uring_disabled";
			else if (uring && io->error == EPERM)
				why = "refused: seccomp or a security module";
			snprintf(what, sizeof(what), "unavailable (%s: %s)", errname(io->error), why);
			break;
		}
		default:
			snprintf(what, sizeof(what), "not probed");
		}
		printf("  %-30s %s\n", paths[p].label, what);
	}
	if (ev->valid)
		printf("\neviction: %s — %s\n  (%s)\n", mode_name(ev->mode),
		       ev->mode == UMAPD_EVICT_DIRECT
			       ? "dirty pages are written straight from their write-protected mapping"
			       : "dirty pages are copied to a bounce buffer, then written",
		       ev->reason);
	else
		printf("\neviction: %s\n", ev->reason);
}

/* --- JSON ----------------------------------------------------------------- */

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_err(int e)
{
	if (e)
		json_str(errname(e));
	else
		fputs("null", stdout);
}

static void json_int_or_null(int v)
{
	if (v < 0)
		fputs("null", stdout);
	else
		printf("%d", v);
}

static const char *bool_str(int v)
{
	return v ? "true" : "false";
}

static void print_json(const struct umapd_kernel_info *ki, const struct evict *ev)
{
	printf("{\n  \"kernel\": ");
	json_str(ki->release);
	printf(",\n  \"userfaultfd\": {\n    \"available\": %s, \"error\": ", bool_str(!ki->uffd_error));
	json_err(ki->uffd_error);
	printf(",\n    \"dev_userfaultfd\": %s, \"dev_userfaultfd_error\": ", bool_str(ki->dev_userfaultfd));
	json_err(ki->dev_userfaultfd_error);
	printf(",\n    \"syscall\": %s, \"syscall_error\": ", bool_str(ki->syscall_userfaultfd));
	json_err(ki->syscall_userfaultfd_error);
	printf(",\n    \"user_mode_only\": %s, \"user_mode_only_error\": ", bool_str(ki->user_mode_only));
	json_err(ki->user_mode_only_error);
	printf(",\n    \"api_features\": \"%#llx\"\n  },\n", (unsigned long long)ki->uffd_features);
	printf("  \"features\": {");
	for (size_t i = 0; i < NFEATURES; i++)
		printf("%s\n    \"%s\": %s", i ? "," : "", features[i].key, bool_str(feature(ki, i)));
	printf("\n  },\n  \"sysctl\": {\n    \"vm.unprivileged_userfaultfd\": ");
	json_int_or_null(ki->unprivileged_userfaultfd);
	printf(",\n    \"kernel.io_uring_disabled\": ");
	json_int_or_null(ki->io_uring_disabled);
	printf("\n  },\n  \"write_out\": {\n    \"tmp_dir\": ");
	json_str(ki->tmp_dir);
	printf(", \"fs_type\": ");
	json_str(ki->fs_type);
	printf(", \"direct_io_error\": ");
	json_err(ki->direct_io_error);
	printf(",\n    \"timeout_ms\": %d, \"user_mode_only\": %s,\n    \"paths\": {", ki->timeout_ms,
	       bool_str(ki->io_user_mode_only));
	for (int p = 0; p < UMAPD_IO_PATHS; p++) {
		const struct umapd_io_probe *io = &ki->io[p];
		const char *r = io->result == UMAPD_PROBE_SAFE	      ? "safe"
				: io->result == UMAPD_PROBE_HANGS     ? "hangs"
				: io->result == UMAPD_PROBE_ERROR     ? "error"
				: io->result == UMAPD_PROBE_UNAVAILABLE ? "unavailable"
									: "not_probed";

		printf("%s\n      \"%s\": {\"result\": \"%s\", \"errno\": ", p ? "," : "", paths[p].key, r);
		json_err(io->error);
		printf(", \"elapsed_us\": %.1f, \"wp_seen\": %s}", (double)io->elapsed_ns / 1e3,
		       io->wp_seen < 0 ? "null" : bool_str(io->wp_seen));
	}
	printf("\n    }\n  },\n  \"eviction\": {\n    \"setting\": ");
	json_str(ev->setting);
	printf(", \"valid\": %s, \"mode\": ", bool_str(ev->valid));
	if (ev->valid)
		json_str(mode_name(ev->mode));
	else
		fputs("null", stdout);
	printf(",\n    \"auto_mode\": ");
	json_str(mode_name(ki->evict_auto));
	printf(",\n    \"reason\": ");
	json_str(ev->reason);
	printf("\n  }\n}\n");
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: umapd-probe [--json] [--help]\n"
		"\n"
		"Reports what the running kernel offers umapd: userfaultfd features and\n"
		"settings, and whether writing out a present, write-protected page that is\n"
		"registered with userfaultfd completes, for pwrite, pwrite O_DIRECT, io_uring\n"
		"(buffered and O_DIRECT) and libaio (O_DIRECT).  Each check runs in a child\n"
		"process that is killed after a timeout; a check that does not finish is\n"
		"reported as HANGS: eviction writing straight from the page would deadlock.\n"
		"Then the eviction mode umapd will use here, and why.\n"
		"\n"
		"  --json    machine-readable output\n"
		"  --help    this text\n"
		"\n"
		"Environment: TMPDIR (where the check file goes; else /var/tmp, /tmp),\n"
		"UMAPD_EVICT_COPY=auto|direct|bounce (the eviction setting to explain).\n"
		"Exit status: 0 (whatever the kernel does), 1 if the probe could not run,\n"
		"2 on a bad command line.\n");
}

int main(int argc, char **argv)
{
	struct umapd_kernel_info ki;
	struct evict ev;
	int json = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = 1;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "umapd-probe: unknown argument \"%s\"\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (umapd_kernel_probe(&ki) != 0) {
		int e = errno;

		fprintf(stderr, "umapd-probe: the probe could not run: %s (%s)\n", errname(e), strerror(e));
		return 1;
	}
	evict_decide(&ki, &ev);
	if (json)
		print_json(&ki, &ev);
	else
		print_table(&ki, &ev);
	return fflush(stdout) == 0 ? 0 : 1;
}
