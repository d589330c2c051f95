#!/usr/bin/env bash
# Writable MAP_PRIVATE mappings under the preload library: tests/preload/
# private_map.c in one MODE, on a file FILE_MIB in size under a budget of
# BUDGET_MIB (fractions allowed: 0.25 is 256 KiB).  The same program runs
# on a copy of the file without the library; the outputs must be identical,
# each run checks against its model that it read what it wrote and that the
# file never changed through the map, and afterwards both files must be
# identical to each other.  From UMAPD_STATS_FILE: paging happened (faults,
# evictions, the resident peak within the budget), and for the modes that
# write more than the budget, dirty pages went to the private swap file
# (dirty_evictions and preload_private_swap_bytes above zero).  The swap
# file must not outlive the program: UMAPD_HEAP_DIR is a directory of the
# test's own, which must be empty at the end.
#   private_map.sh PRELOAD PROGRAM MODE FILE_MIB BUDGET_MIB
NAME=private_${3:-?}
source "$(dirname "$0")/lib.sh" "$1"
PROG=${2:?program}
MODE=${3:?mode}
file_mib=$(mib "$4")
budget_kib=$(awk -v b="$5" 'BEGIN { v = int(b * 1024); if (v < 64) v = 64; print v }')
[[ -x "$PROG" ]] || t_fail "no test program at $PROG"
# baddir: the random mode with UMAPD_HEAP_DIR naming no directory, a
# configuration error: one line, and the mapping stays the kernel's.
heap_dir_of() { echo "$WORK/swap"; }
# heap: the random mode in heap mode too, with a threshold so low that
# the library's own bookkeeping would land in the umapd heap if it asked
# for it there (the engine's threads read it: they would fault on memory
# they serve themselves and hang).
EXTRA_ENV=()
if [[ $MODE == heap ]]; then
	MODE=random
	EXTRA_ENV=(UMAPD_PRELOAD_HEAP=1 UMAPD_HEAP_THRESHOLD=1K)
fi
if [[ $MODE == baddir ]]; then
	MODE=random
	heap_dir_of() { echo "$WORK/no/such/dir"; }
	BADDIR=1
fi

head -c $((file_mib << 20)) /dev/urandom >"$WORK/ref.dat" || t_fail "cannot write $file_mib MiB in $WORK"
cp "$WORK/ref.dat" "$WORK/paged.dat"
cp "$WORK/ref.dat" "$WORK/orig.dat"
mkdir -p "$WORK/swap"

"$PROG" "$WORK/ref.dat" "$MODE" >"$WORK/ref.out" || t_fail "without the preload library: $(tail -n 2 "$WORK/ref.out")"
# paged takes MiB; the budget here may be a fraction of one.
rm -f "$WORK/stats"
timeout -k 5 150 env LD_PRELOAD="$PRELOAD" UMAPD_BUFSIZE="${budget_kib}K" UMAPD_STATS_FILE="$WORK/stats" \
	UMAPD_PRELOAD_FILES="$WORK/paged.*" UMAPD_PRELOAD_MIN=64K UMAPD_HEAP_DIR="$(heap_dir_of)" \
	"${EXTRA_ENV[@]}" "$PROG" "$WORK/paged.dat" "$MODE" >"$WORK/paged.out" 2>"$WORK/stderr"
rc=$?
if grep -q "userfaultfd is not usable\|cannot start\|not permitted" "$WORK/stderr"; then
	t_skip "userfaultfd is not usable here: $(head -n 1 "$WORK/stderr")"
fi
((rc == 0)) || t_fail "under the preload library (exit $rc): $(tail -n 2 "$WORK/paged.out") $(tail -n 3 "$WORK/stderr")"
diff -u "$WORK/ref.out" "$WORK/paged.out" >"$WORK/diff" || t_fail "output differs: $(head -n 12 "$WORK/diff")"
cmp "$WORK/ref.dat" "$WORK/paged.dat" || t_fail "the files differ after the two runs"
if [[ $MODE != pwrite && $MODE != truncate ]]; then
	cmp "$WORK/orig.dat" "$WORK/paged.dat" || t_fail "the file changed under the preload library"
fi
[[ -z "$(ls -A "$WORK/swap")" ]] || t_fail "files left in UMAPD_HEAP_DIR: $(ls -A "$WORK/swap")"
if [[ -n "${BADDIR:-}" ]]; then
	lines=$(wc -l <"$WORK/stderr")
	((lines == 1)) && grep -q "UMAPD_HEAP_DIR" "$WORK/stderr" ||
		t_fail "a bad UMAPD_HEAP_DIR: expected one line naming it, got $lines: $(head -c 300 "$WORK/stderr")"
	[[ ! -e "$WORK/stats" ]] || t_fail "a bad UMAPD_HEAP_DIR: something was paged: $(tr '\n' ' ' <"$WORK/stats")"
	t_pass "bad UMAPD_HEAP_DIR: one line ($(cut -c1-100 "$WORK/stderr")...), unpaged, outputs and files identical"
fi

# lib.sh's check_stats takes whole MiB; the same checks in KiB.
[[ -s "$WORK/stats" ]] || t_fail "no statistics written (stderr: $(head -c 300 "$WORK/stderr"))"
if [[ $MODE == exit ]]; then
	# Under a budget larger than the file nothing is evicted; at exit the
	# private pages must be dropped, not written to a swap file that is
	# about to vanish (the engine's exit handler writes back every region).
	(($(stat_of faults) > 0 && $(stat_of preload_private_swap_bytes) == 0 && $(stat_of dirty_bytes) == 0)) ||
		t_fail "exit: private pages written back at exit (stats: $(tr '\n' ' ' <"$WORK/stats"))"
else
	(($(stat_of faults) > 0 && $(stat_of evictions) > 0)) ||
		t_fail "no faults or no evictions (stats: $(tr '\n' ' ' <"$WORK/stats"))"
fi
peak=$(stat_of resident_peak_bytes)
budget=$((budget_kib << 10))
((peak <= budget + budget / 20 + 65536)) || t_fail "resident peak $peak above the budget $budget"
((peak > 0)) || t_fail "no resident peak recorded"
mappings=$(stat_of preload_private_mappings)
swapped=$(stat_of preload_private_swap_bytes)
dirty=$(stat_of dirty_evictions)
((mappings > 0)) || t_fail "no private mapping was paged (stats: $(tr '\n' ' ' <"$WORK/stats"))"
if [[ $MODE == random || $MODE == dontneed || $MODE == mremap || $MODE == threads ]]; then
	((dirty > 0 && swapped > 0)) ||
		t_fail "no dirty page went to the private swap file (stats: $(tr '\n' ' ' <"$WORK/stats"))"
fi
t_pass "$(head -n 1 "$WORK/paged.out" | cut -c1-60)...; $file_mib MiB file, budget $budget_kib KiB: outputs and files identical$([[ $MODE == pwrite || $MODE == truncate ]] || echo ", file untouched"); $(stat_of faults) faults, $(stat_of evictions) evictions ($dirty dirty), $((swapped >> 10)) KiB to private swap, resident peak $((peak >> 10)) KiB"
