/*
 * lib/probe - what the running kernel does with umapd's write-out of a
 * write-protected page, and the eviction mode that follows from it.
 *
 * umapd_kernel_probe() (include/umapd.h) is the public face; this header is
 * the interface the engine and the tests use.  Everything here runs in the
 * calling thread and forks: never call it from a service thread (DESIGN.md
 * invariant 1).  The engine calls probe_evict_mode() once at start-up,
 * before it opens its userfaultfd and starts its threads.
 */
#ifndef UMAPD_PROBE_H
#define UMAPD_PROBE_H

#include <stdbool.h>

#include "umapd.h"

/* Results of probe_evict_mode(): how the evictors write a dirty page back. */
#define PROBE_EVICT_DIRECT UMAPD_EVICT_DIRECT /* straight from the protected page */
#define PROBE_EVICT_BOUNCE UMAPD_EVICT_BOUNCE /* from a bounce-buffer copy */

/* Timeout of each write-out check in the cached probe. */
#define PROBE_TIMEOUT_MS 5000

/*
 * The setting UMAPD_EVICT_COPY: auto (the default; also unset or empty),
 * direct or bounce, case-insensitive.  Returns 0 (auto), PROBE_EVICT_DIRECT
 * or PROBE_EVICT_BOUNCE, or -EINVAL; then, if why is not NULL, it receives
 * a sentence naming the variable and the accepted forms.
 */
int probe_evict_copy_parse(const char *value, char *why, size_t whylen);

/*
 * The eviction mode to use: UMAPD_EVICT_COPY from the environment; for
 * auto, PROBE_EVICT_DIRECT when the buffered pwrite path (what the file
 * store does) is SAFE on this kernel, else PROBE_EVICT_BOUNCE (also when
 * the probe itself could not run).  Logs one line when the value is
 * invalid (and returns -EINVAL), and one warning, once per process, when
 * auto has to fall back to bounce.  The first call runs the probe (cached).
 */
int probe_evict_mode(void);

/*
 * As probe_evict_mode(), for a store that writes through another path
 * (enum umapd_io_path), e.g. UMAPD_IO_PWRITE_DIRECT when the store's
 * descriptor has O_DIRECT.  An UNAVAILABLE path counts as unsafe.
 */
int probe_evict_mode_for(int io_path);

/* Options of one uncached probe run (tests). */
struct probe_opts {
	int timeout_ms;        /* per check; 0: PROBE_TIMEOUT_MS */
	unsigned hang_mask;    /* self-test: bit (1 << path) makes that check store to
				* the protected page with the CPU before its write,
				* which blocks for good: exercises the HANGS path */
	const char *tmp_dir;   /* tried first; then $TMPDIR, /var/tmp, /tmp */
};

/*
 * Run the whole probe now, uncached, into *out.  Returns 0, or -EAGAIN /
 * -ENOMEM when no child process or pipe could be made.
 */
int probe_run(struct umapd_kernel_info *out, const struct probe_opts *o);

/* Cached probe behind umapd_kernel_probe(): 0 or a negative errno. */
int probe_cached(struct umapd_kernel_info *out);

/* Short names: "pwrite", "pwrite+O_DIRECT", ...; "safe", "hangs", ... */
const char *probe_path_name(int io_path);
const char *probe_result_name(int result);

#endif
