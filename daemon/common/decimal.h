/*
 * daemon/common/decimal.h - the one strict decimal parser of the daemon's
 * inputs (configuration values, systemd's LISTEN_ and WATCHDOG_ variables).
 */
#ifndef UMAPD_DAEMON_DECIMAL_H
#define UMAPD_DAEMON_DECIMAL_H

#include <errno.h>
#include <stdint.h>

/*
 * Digits only (no sign, blanks, "0x" or empty string) and at most max:
 * 0 and *out, -EINVAL for anything else, -ERANGE above max.
 */
static inline int dc_parse_dec(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		unsigned d = (unsigned)(*s - '0');
		if (v > (max - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

#endif
