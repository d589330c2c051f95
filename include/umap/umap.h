/*
 * umap/umap.h - the path LLNL UMap installs its header under, so that
 * programs that write #include <umap/umap.h> build unchanged.  The
 * interface itself is in ../umap.h.
 */
#include "../umap.h"
