/*
 * lib/umap - the LLNL UMap interface (include/umap.h) over the native API.
 *
 * Nothing here reaches into the engine: every call goes through umapd.h, so
 * the compat layer behaves exactly as a native program would.
 *
 *   env.c   UMAP_* environment variables -> umapd settings, once per process
 *   umap.c  the public functions and the list of regions mapped with umap()
 */
#ifndef UMAPD_COMPAT_H
#define UMAPD_COMPAT_H

#include <stdint.h>

/*
 * Apply the UMAP_* environment (once; later calls return the first result).
 * 0, or -EINVAL when a UMAP_* value is malformed (logged once).
 */
int compat_env_init(void);

/* UMAP_MAX_FAULT_EVENTS as given, or its default (256). */
uint64_t compat_max_fault_events(void);

#endif /* UMAPD_COMPAT_H */
