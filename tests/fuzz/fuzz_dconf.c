/*
 * fuzz_dconf - the umapd daemon's configuration parser (daemon/common/dconf):
 * the configuration file and the command line.
 *
 * Input: configuration-file text, or, when it starts with the byte 0x01,
 * command-line arguments separated by '\n' (after "--config /dev/null", so
 * no host file is read).  Properties, besides not crashing:
 *  - a refused input explains itself in one non-empty line, and a refused
 *    file names the file ("fuzz.conf:<line>: ...");
 *  - after an accepted input every key reads back (dconf_get) as a string
 *    that dconf_set accepts again with the same result, so what the daemon
 *    reports can be fed back to it;
 *  - dconf_set never changes the configuration when it refuses a value;
 *  - dconf_parse_size never accepts what it then cannot represent: an
 *    accepted size printed in decimal parses back to the same number.
 */
#include "dconf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_why(const char *why, const char *must_start)
{
	if (why[0] == '\0' || strchr(why, '\n')) {
		fprintf(stderr, "refusal without a one-line reason: \"%s\"\n", why);
		abort();
	}
	if (must_start && strncmp(why, must_start, strlen(must_start)) != 0) {
		fprintf(stderr, "refusal does not name the file: \"%s\"\n", why);
		abort();
	}
}

static void round_trip(const struct dconf *c)
{
	char got[2048], got2[2048], why[512];

	for (int i = 0; dconf_keys[i]; i++) {
		int n = dconf_get(c, dconf_keys[i], got, sizeof(got));
		if (n < 0 || (size_t)n != strlen(got))
			abort();
		struct dconf again;
		dconf_defaults(&again);
		why[0] = '\0';
		if (dconf_set(&again, dconf_keys[i], got, why, sizeof(why)) != 0) {
			fprintf(stderr, "%s reads back as \"%s\", which is refused: %s\n", dconf_keys[i], got, why);
			abort();
		}
		if (dconf_get(&again, dconf_keys[i], got2, sizeof(got2)) != n || strcmp(got, got2) != 0) {
			fprintf(stderr, "%s: \"%s\" then \"%s\"\n", dconf_keys[i], got, got2);
			abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dconf c;
	char why[512];

	if (size > 0 && data[0] == 0x01) {
		/* Command line. */
		char *buf = malloc(size);
		char *argv[40];
		int argc = 0;
		if (!buf)
			return 0;
		memcpy(buf, data + 1, size - 1);
		buf[size - 1] = '\0';
		argv[argc++] = (char *)"umapd";
		argv[argc++] = (char *)"--config";
		argv[argc++] = (char *)"/dev/null";
		for (char *p = buf; p && argc < 39;) {
			char *nl = strchr(p, '\n');
			if (nl)
				*nl = '\0';
			/* --help / --version print the usage: valid, but noise here. */
			if (strcmp(p, "-h") && strcmp(p, "--help") && strcmp(p, "-V") && strcmp(p, "--version"))
				argv[argc++] = p;
			p = nl ? nl + 1 : NULL;
		}
		argv[argc] = NULL;
		why[0] = '\0';
		int rc = dconf_load(&c, argc, argv, why, sizeof(why));
		if (rc < 0)
			check_why(why, NULL);
		else if (rc == 0)
			round_trip(&c);
		else
			abort(); /* help and version were filtered out */
		free(buf);
		return 0;
	}

	dconf_defaults(&c);
	why[0] = '\0';
	if (dconf_parse_text(&c, (const char *)data, size, "fuzz.conf", why, sizeof(why)) != 0) {
		check_why(why, "fuzz.conf:");
	} else {
		round_trip(&c);
		if (dconf_check(&c, why, sizeof(why)) != 0)
			check_why(why, NULL);
	}

	/* Every line's value as a size, and single-key dconf_set atomicity. */
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	char *nl = strchr(s, '\n');
	if (nl)
		*nl = '\0';
	uint64_t x = 0, y = 0;
	if (dconf_parse_size(s, &x) == 0) {
		char dec[32];
		snprintf(dec, sizeof(dec), "%" PRIu64, x);
		if (dconf_parse_size(dec, &y) != 0 || x != y)
			abort();
	}
	struct dconf before;
	dconf_defaults(&c);
	before = c;
	size_t nkeys = 0;
	while (dconf_keys[nkeys])
		nkeys++;
	const char *key = dconf_keys[size % nkeys];
	if (dconf_set(&c, key, s, why, sizeof(why)) != 0) {
		check_why(why, NULL);
		if (memcmp(&c, &before, sizeof(c)) != 0)
			abort();
	}
	free(s);
	return 0;
}
