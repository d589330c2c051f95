#!/usr/bin/env bash
# An LMDB database 4x the budget, loaded with mdb_load and dumped with
# mdb_dump (lmdb-utils).  LMDB maps the whole (1 GiB) map read-only and
# writes with pwrite, so the load exercises the growth of the paged part
# and the read/write coherence; the dump reads it all through the map.
NAME=lmdb
source "$(dirname "$0")/lib.sh" "$@"
need mdb_load lmdb-utils
need mdb_dump lmdb-utils
[[ -n "$PY" ]] || t_skip "python3 is not installed (Debian package python3)"

budget=$(mib 4)
records=$((budget * 5000))
$PY - "$WORK/in.dump" "$records" <<'PYEOF' || t_fail "cannot write the input"
import hashlib, sys
with open(sys.argv[1], "w") as f:
    f.write("VERSION=3\nformat=bytevalue\ntype=btree\nmapsize=1073741824\nHEADER=END\n")
    for i in range(int(sys.argv[2])):
        k = ("key%09d" % ((i * 7919) % 1000003)).encode()
        v = (hashlib.sha256(k).hexdigest() * 12)[:300 + (i % 400)].encode()
        f.write(" " + k.hex() + "\n " + v.hex() + "\n")
    f.write("DATA=END\n")
PYEOF
mkdir "$WORK/ref" "$WORK/paged"
mdb_load -f "$WORK/in.dump" "$WORK/ref" || t_fail "mdb_load without the preload library failed"
mdb_dump "$WORK/ref" >"$WORK/ref.out" || t_fail "mdb_dump without the preload library failed"

export UMAPD_PRELOAD_FILES="$WORK/paged/*.mdb"
paged "$budget" mdb_load -f "$WORK/in.dump" "$WORK/paged" ||
	t_fail "mdb_load under the preload library failed: $(tail -n 3 "$WORK/stderr")"
check_stats "mdb_load" "$budget"
load_line=$STATS_LINE
mdb_dump "$WORK/paged" >"$WORK/check.out" || t_fail "mdb_dump of the paged load failed"
diff -q "$WORK/ref.out" "$WORK/check.out" >/dev/null || t_fail "the database loaded under the preload library dumps differently"
paged "$budget" mdb_dump "$WORK/paged" >"$WORK/paged.out" ||
	t_fail "mdb_dump under the preload library failed: $(tail -n 3 "$WORK/stderr")"
diff -u "$WORK/ref.out" "$WORK/paged.out" | head -n 12 >"$WORK/diff"
[[ -s "$WORK/diff" ]] && t_fail "mdb_dump output differs: $(cat "$WORK/diff")"
check_stats "mdb_dump" "$budget"
t_pass "$records records, $(($(stat -c %s "$WORK/ref/data.mdb") >> 20)) MiB database, dumps identical; $load_line; $STATS_LINE"
