#!/usr/bin/env bash
# Python's mmap module on a file 4x the budget, MAP_SHARED: read it all,
# write through the map, msync part and all of it, MADV_DONTNEED (data must
# survive: it is the file's), grow it with resize (ftruncate + mremap),
# close.  The same script runs on a copy without the preload library; the
# outputs and the files must be identical.
NAME=python_mmap
source "$(dirname "$0")/lib.sh" "$@"
[[ -n "$PY" ]] || t_skip "python3 is not installed (Debian package python3)"

budget=$(mib 16)
size=$((4 * budget << 20))
head -c "$size" /dev/urandom >"$WORK/ref.dat" || t_fail "cannot write $size bytes in $WORK"
cp "$WORK/ref.dat" "$WORK/paged.dat"
cat >"$WORK/t.py" <<'PYEOF'
import hashlib, mmap, os, sys

def digest(m, n):
    h = hashlib.sha256()
    for i in range(0, n, 1 << 20):
        h.update(m[i:min(n, i + (1 << 20))])
    return h.hexdigest()

f = open(sys.argv[1], "r+b")
n = os.fstat(f.fileno()).st_size
m = mmap.mmap(f.fileno(), n)
print("read", digest(m, n))
for i in range(0, n, 4096):
    m[i] = (m[i] + 1) & 255
m[n // 3:n // 3 + 100000] = bytes(range(256)) * 390 + bytes(160)
m.flush(0, 1 << 20)
m.flush()
print("written", digest(m, n))
m.madvise(mmap.MADV_DONTNEED)
print("after dontneed", digest(m, n))
m.resize(n + (n // 4))
m[n:] = bytes([7]) * (n // 4)
m.flush()
print("grown", digest(m, len(m)))
m.close()
f.seek(0)
h = hashlib.sha256()
for chunk in iter(lambda: f.read(1 << 20), b""):
    h.update(chunk)
print("file", h.hexdigest())
PYEOF

$PY "$WORK/t.py" "$WORK/ref.dat" >"$WORK/ref.out" || t_fail "python3 without the preload library failed"
UMAPD_PRELOAD_FILES="$WORK/paged.*" paged "$budget" $PY "$WORK/t.py" "$WORK/paged.dat" >"$WORK/paged.out" ||
	t_fail "python3 under the preload library failed: $(tail -n 3 "$WORK/stderr")"
diff -u "$WORK/ref.out" "$WORK/paged.out" >"$WORK/diff" || t_fail "output differs: $(head -n 12 "$WORK/diff")"
cmp "$WORK/ref.dat" "$WORK/paged.dat" || t_fail "the files differ"
check_stats "python mmap" "$budget"
t_pass "$((size >> 20)) MiB file, outputs and files identical; $STATS_LINE"
