/*
 * fuzz_cfg - the settings parser (cfg_set in lib/engine/config.c), which
 * serves the UMAPD_* environment variables and umapd_config_set().
 *
 * Input: "NAME\nvalue".  Without a newline, the first byte picks a setting
 * and the rest is the value.  Properties, besides not crashing:
 *  - a refused value leaves the configuration exactly as it was and
 *    explains itself (a non-empty reason naming the variable);
 *  - an accepted value reads back (cfg_get) as a string that cfg_set
 *    accepts again with the same result (what umapd_config_get prints can
 *    be fed back);
 *  - cfg_parse_size never accepts what it then cannot represent.
 */
#include <engine/config.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {
	"UMAPD_BUFSIZE",       "UMAPD_PAGESIZE",   "UMAPD_HIGH_WATER",  "UMAPD_LOW_WATER",
	"UMAPD_FILLERS",       "UMAPD_EVICTORS",   "UMAPD_READ_AHEAD",  "UMAPD_LOG_LEVEL",
	"UMAPD_EVICT_COPY",    "UMAPD_FAULT_TIMEOUT", "UMAPD_IO",       "UMAPD_DIRECT_IO",
	"UMAPD_FAULT_INJECT",  "UMAPD_NOT_A_SETTING",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size + 1), name[128], *value;
	if (!in)
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';
	char *nl = memchr(in, '\n', size);
	if (nl) {
		*nl = '\0';
		snprintf(name, sizeof(name), "%s", in);
		value = nl + 1;
	} else {
		snprintf(name, sizeof(name), "%s", size ? names[data[0] % (sizeof(names) / sizeof(names[0]))] : names[0]);
		value = size ? in + 1 : in;
	}

	struct eng_config c, before;
	char why[256];
	memset(&c, 0, sizeof(c));
	cfg_defaults(&c);
	before = c;
	why[0] = '\0';
	int ret = cfg_set(&c, name, value, why, sizeof(why));
	if (ret < 0) {
		if (ret != -EINVAL || memcmp(&c, &before, sizeof(c)) != 0 || why[0] == '\0')
			abort();
	} else {
		if (ret != 0 || !cfg_known(name))
			abort();
		char got[300];
		int n = cfg_get(&c, name, got, sizeof(got));
		if (n < 0 || (size_t)n != strlen(got))
			abort();
		struct eng_config again = before;
		if (cfg_set(&again, name, got, why, sizeof(why)) != 0) {
			fprintf(stderr, "%s=\"%s\" accepted, but what it reads back (\"%s\") is refused: %s\n", name,
				value, got, why);
			abort();
		}
		char got2[300];
		if (cfg_get(&again, name, got2, sizeof(got2)) != n || strcmp(got, got2) != 0) {
			fprintf(stderr, "%s: \"%s\" reads back as \"%s\", then as \"%s\"\n", name, value, got, got2);
			abort();
		}
	}
	uint64_t x = 0;
	if (cfg_parse_size(value, false, &x) == 0 && cfg_parse_size(value, true, &x) != 0)
		abort(); /* a plain size is a size with percentages allowed too */
	free(in);
	return 0;
}
