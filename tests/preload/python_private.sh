#!/usr/bin/env bash
# Python's mmap module with a writable private mapping (MAP_PRIVATE,
# PROT_READ|PROT_WRITE: what ACCESS_COPY is too) of a file 4x the budget:
# read it all, write through the map (every page, then a slice), flush
# (msync: must not write the file), MADV_DONTNEED on part of it (that part
# reads the file again), read it all again, close.  The same script runs on
# a copy without the preload library; the outputs must be identical and
# neither file may have changed.
NAME=python_private
source "$(dirname "$0")/lib.sh" "$@"
[[ -n "$PY" ]] || t_skip "python3 is not installed (Debian package python3)"

budget=$(mib 8)
size=$((4 * budget << 20))
head -c "$size" /dev/urandom >"$WORK/orig.dat" || t_fail "cannot write $size bytes in $WORK"
cp "$WORK/orig.dat" "$WORK/ref.dat"
cp "$WORK/orig.dat" "$WORK/paged.dat"
mkdir -p "$WORK/swap"
cat >"$WORK/t.py" <<'PYEOF'
import hashlib, mmap, os, sys

def digest(m, n):
    h = hashlib.sha256()
    for i in range(0, n, 1 << 20):
        h.update(m[i:min(n, i + (1 << 20))])
    return h.hexdigest()

f = open(sys.argv[1], "r+b")
n = os.fstat(f.fileno()).st_size
m = mmap.mmap(f.fileno(), n, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
print("read", digest(m, n))
for i in range(0, n, 4096):
    m[i] = (m[i] + 1) & 255
m[n // 3:n // 3 + 100000] = bytes(range(256)) * 390 + bytes(160)
print("written", digest(m, n))
m.flush()
print("flushed", digest(m, n))
page = mmap.PAGESIZE
m.madvise(mmap.MADV_DONTNEED, (n // 4) // page * page, (n // 4) // page * page)
print("after dontneed", digest(m, n))
for i in range(0, n, 8192):
    m[i] = 42
print("written again", digest(m, n))
m.close()
f.seek(0)
h = hashlib.sha256()
for chunk in iter(lambda: f.read(1 << 20), b""):
    h.update(chunk)
print("file", h.hexdigest())
PYEOF

$PY "$WORK/t.py" "$WORK/ref.dat" >"$WORK/ref.out" || t_fail "python3 without the preload library failed"
UMAPD_PRELOAD_FILES="$WORK/paged.*" UMAPD_HEAP_DIR="$WORK/swap" paged "$budget" $PY "$WORK/t.py" "$WORK/paged.dat" \
	>"$WORK/paged.out" || t_fail "python3 under the preload library failed: $(tail -n 3 "$WORK/stderr")"
diff -u "$WORK/ref.out" "$WORK/paged.out" >"$WORK/diff" || t_fail "output differs: $(head -n 12 "$WORK/diff")"
cmp "$WORK/orig.dat" "$WORK/ref.dat" || t_fail "the kernel's private mapping changed the file (test bug)"
cmp "$WORK/orig.dat" "$WORK/paged.dat" || t_fail "the file changed under the preload library"
[[ -z "$(ls -A "$WORK/swap")" ]] || t_fail "files left in UMAPD_HEAP_DIR: $(ls -A "$WORK/swap")"
check_stats "python private mmap" "$budget"
swapped=$(stat_of preload_private_swap_bytes)
(($(stat_of preload_private_mappings) > 0 && $(stat_of dirty_evictions) > 0 && swapped > 0)) ||
	t_fail "the private mapping was not paged to a private swap file (stats: $(tr '\n' ' ' <"$WORK/stats"))"
t_pass "$((size >> 20)) MiB file, outputs identical, file untouched; $STATS_LINE; $((swapped >> 10)) KiB to private swap"
