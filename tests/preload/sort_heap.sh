#!/usr/bin/env bash
# coreutils sort with a large -S buffer in heap mode: its buffer (several
# times the budget) lives in the umapd heap, backed by a swap file.  The
# output must equal sort's without the preload library.
NAME=sort_heap
source "$(dirname "$0")/lib.sh" "$@"
need sort coreutils
[[ -n "$PY" ]] || t_skip "python3 is not installed (Debian package python3)"

budget=$(mib 2)
bytes=$((3 * budget << 20))
$PY - "$WORK/in.txt" "$bytes" <<'PYEOF' || t_fail "cannot write the input"
import random, sys
r = random.Random(7)
n, limit = 0, int(sys.argv[2])
with open(sys.argv[1], "w") as f:
    while n < limit:
        line = "%016x %s\n" % (r.getrandbits(64), "x" * r.randrange(20))
        f.write(line)
        n += len(line)
PYEOF
LC_ALL=C sort -S 256M "$WORK/in.txt" >"$WORK/ref.out" || t_fail "sort without the preload library failed"
LC_ALL=C UMAPD_PRELOAD_HEAP=1 UMAPD_HEAP_DIR="$WORK" paged "$budget" sort -S 256M "$WORK/in.txt" >"$WORK/paged.out" ||
	t_fail "sort under the preload library failed: $(tail -n 3 "$WORK/stderr")"
cmp "$WORK/ref.out" "$WORK/paged.out" || t_fail "sorted output differs"
[[ "$(stat_of preload_heap)" == 1 ]] || t_fail "heap mode did not start: $(head -n 2 "$WORK/stderr")"
check_stats "sort" "$budget"
t_pass "$((bytes >> 20)) MiB of lines, output identical; $STATS_LINE"
