/*
 * fuzz_inject - the fault-injection spec parser (inject_parse in
 * lib/store/store_inject.c): UMAPD_FAULT_INJECT, umapd_store_inject() and
 * umapd_store_inject_set() all hand it user text.  Properties, besides
 * not crashing:
 *  - a refused spec gives -EINVAL and a reason, and the reason fits any
 *    buffer it is given (checked with a guard byte at sizes 1..16 and 200);
 *  - an accepted spec is at most INJECT_SPEC_MAX characters, its
 *    probabilities are at most 10^9 parts per 10^9, its errnos 1..4095,
 *    and parsing it again gives the same result (the parser is pure).
 */
#include <store/store.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fault_ok(const struct inject_fault *f)
{
	if (f->ppb > 1000000000u || f->err < 0 || f->err > 4095)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *spec = malloc(size + 1);
	if (!spec)
		return 0;
	memcpy(spec, data, size);
	spec[size] = '\0';

	struct inject_cfg c, c2;
	char why[201];
	memset(&c, 0x5a, sizeof(c));
	why[0] = '\0';
	why[200] = 0x7f;
	int ret = inject_parse(spec, &c, why, 200);
	if (why[200] != 0x7f)
		abort();
	if (ret < 0) {
		if (ret != -EINVAL || why[0] == '\0' || strlen(why) >= 200)
			abort();
		for (size_t len = 1; len <= 16; len++) {
			char small[17];
			memset(small, 0x7f, sizeof(small));
			if (inject_parse(spec, &c2, small, len) != ret || small[len - 1] != '\0' ||
			    (len < 16 && small[len] != 0x7f))
				abort();
		}
	} else {
		if (ret != 0 || strlen(spec) > INJECT_SPEC_MAX)
			abort();
		fault_ok(&c.read);
		fault_ok(&c.write);
		fault_ok(&c.sync);
		if (c.latency_us > 10000000u)
			abort();
		memset(&c2, 0x5a, sizeof(c2));
		if (inject_parse(spec, &c2, NULL, 0) != 0 || memcmp(&c, &c2, sizeof(c)) != 0)
			abort();
	}
	free(spec);
	return 0;
}
