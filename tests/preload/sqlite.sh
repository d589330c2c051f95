#!/usr/bin/env bash
# sqlite3 with PRAGMA mmap_size covering a database 4x the budget:
# integrity_check, queries, an update, then growth in several transactions
# (SQLite extends its map with mremap).  Output and the database file must
# equal a run without the preload library on a copy.
NAME=sqlite
source "$(dirname "$0")/lib.sh" "$@"
need sqlite3 sqlite3

budget=$(mib 8)
rows=$((budget * 17000)) # about 4x the budget
cat >"$WORK/gen.sql" <<SQLEOF
PRAGMA page_size=4096;
CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT, w INTEGER);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < $rows)
INSERT INTO t SELECT x, printf('%0150d', (x*2654435761) % 1000000007), (x*7919) % 100003 FROM c;
CREATE INDEX tw ON t(w);
SQLEOF
cat >"$WORK/q.sql" <<SQLEOF
PRAGMA mmap_size=4294967296;
PRAGMA integrity_check;
SELECT count(*), sum(w), sum(length(v)) FROM t;
SELECT k, substr(v, 140) FROM t WHERE w BETWEEN 500 AND 503 ORDER BY k;
UPDATE t SET w = w + 1 WHERE k % 97 = 0;
SELECT sum(w) FROM t;
BEGIN; INSERT INTO t(v, w) SELECT v, w + 1 FROM t WHERE k % 5 = 0; COMMIT;
BEGIN; INSERT INTO t(v, w) SELECT v, w + 2 FROM t WHERE k % 7 = 0; COMMIT;
SELECT count(*), sum(w) FROM t;
SELECT max(k), min(w) FROM t WHERE w > 50000;
PRAGMA integrity_check;
SQLEOF

sqlite3 "$WORK/ref.db" <"$WORK/gen.sql" || t_fail "cannot create the database"
cp "$WORK/ref.db" "$WORK/paged.db"
sqlite3 "$WORK/ref.db" <"$WORK/q.sql" >"$WORK/ref.out" || t_fail "sqlite3 without the preload library failed"
UMAPD_PRELOAD_FILES="$WORK/paged.db" paged "$budget" sqlite3 "$WORK/paged.db" <"$WORK/q.sql" >"$WORK/paged.out" ||
	t_fail "sqlite3 under the preload library failed: $(tail -n 3 "$WORK/stderr")"
diff -u "$WORK/ref.out" "$WORK/paged.out" >"$WORK/diff" || t_fail "output differs: $(head -n 12 "$WORK/diff")"
grep -qx ok "$WORK/paged.out" || t_fail "integrity_check did not say ok"
cmp "$WORK/ref.db" "$WORK/paged.db" || t_fail "the database files differ"
check_stats "sqlite3" "$budget"
t_pass "$(($(stat -c %s "$WORK/ref.db") >> 20)) MiB database, output and file identical; $STATS_LINE"
