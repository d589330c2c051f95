# tests/preload/lib.sh - shared by the tests that run unmodified Debian
# programs under libumapd-preload.so.  Sourced with the test's name set:
#   NAME=... ; source lib.sh "$@"     ($1: path of libumapd-preload.so)
# Sizes scale with UMAPD_TEST_SCALE (mib N: N MiB scaled, at least 1).
# Conventions of tests/common/umapd_test.h: one PASS line, the first
# difference on failure, exit 77 to skip.
set -uo pipefail

PRELOAD=${1:?usage: $0 path/to/libumapd-preload.so}
SCALE=${UMAPD_TEST_SCALE:-1}

t_fail() { echo "FAIL $NAME: $*"; exit 1; }
t_skip() { echo "SKIP $NAME: $*"; exit 77; }
t_pass() { echo "PASS $NAME: $*"; exit 0; }

# need PROGRAM PACKAGE: skip if a program is not installed.
need() {
	command -v "$1" >/dev/null 2>&1 ||
		t_skip "$1 is not installed (Debian package $2; scripts/deps.sh installs it)"
}

if [[ -n "${UMAPD_TEST_SANITIZED:-}" ]]; then
	t_skip "sanitizer build: an instrumented preload library cannot be preloaded into uninstrumented programs (the default build runs this test)"
fi
[[ -f "$PRELOAD" ]] || t_fail "no preload library at $PRELOAD"

mib() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s); if (v < 1) v = 1; print v }'; }

# Debian's own python3, not one a version manager put first in PATH.
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3 || true)

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/umapd-preload-$NAME.XXXXXX") || t_fail "mktemp"
[[ -n "${UMAPD_TEST_KEEP:-}" ]] || trap 'rm -rf "$WORK"' EXIT

# paged BUDGET_MIB CMD...: run CMD under the preload library with that
# budget; its statistics go to $WORK/stats, its stderr to $WORK/stderr.
# The rest of the environment (UMAPD_PRELOAD_FILES, ...) comes from the
# caller.  Stops the test if userfaultfd is not usable here.
paged() {
	local budget=$1 rc
	shift
	rm -f "$WORK/stats"
	timeout -k 5 150 env LD_PRELOAD="$PRELOAD" UMAPD_BUFSIZE="${budget}M" \
		UMAPD_STATS_FILE="$WORK/stats" "$@" 2>"$WORK/stderr"
	rc=$?
	if grep -q "userfaultfd is not usable\|cannot start\|not permitted" "$WORK/stderr"; then
		t_skip "userfaultfd is not usable here: $(head -n 1 "$WORK/stderr")"
	fi
	return $rc
}

stat_of() { sed -n "s/^$1=//p" "$WORK/stats"; }

# check_stats WHAT BUDGET_MIB: paging happened (faults and evictions) and
# resident memory stayed within the budget (plus one region page of slack).
check_stats() {
	local what=$1 budget=$(($2 << 20)) faults evictions peak
	[[ -s "$WORK/stats" ]] || t_fail "$what: no statistics written (stderr: $(head -c 300 "$WORK/stderr"))"
	faults=$(stat_of faults)
	evictions=$(stat_of evictions)
	peak=$(stat_of resident_peak_bytes)
	((faults > 0)) || t_fail "$what: no faults served by umapd (stats: $(tr '\n' ' ' <"$WORK/stats"))"
	((evictions > 0)) || t_fail "$what: no evictions (stats: $(tr '\n' ' ' <"$WORK/stats"))"
	((peak <= budget + budget / 20 + 65536)) || t_fail "$what: resident peak $peak above the budget $budget"
	STATS_LINE="$what: $faults faults, $evictions evictions, resident peak $((peak >> 10)) KiB of $((budget >> 10)) KiB"
}
