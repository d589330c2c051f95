#!/usr/bin/env bash
# run-bench.sh - run the benchmarks that docs/performance.md reports, with a
# header describing the machine, and keep the output in a log.
#   usage: tests/perf/run-bench.sh [BUILD_DIR] [LOG]
#   (default build dir: build-perf, else build; default log: perf-<date>.log)
# Needs root (memory cgroup v1, page cache control) and a quiet machine.
#   UMAPD_BENCH_THREADS  thread counts for bench_random (default "1 2 4")
#   UMAPD_BENCH_ARGS     extra bench_random arguments
set -euo pipefail
cd "$(dirname "$0")/../.."

build=${1:-}
if [[ -z $build ]]; then
	if [[ -x build-perf/tests/perf/bench_random ]]; then build=build-perf; else build=build; fi
fi
log=${2:-perf-$(date -u +%Y%m%dT%H%M%SZ).log}
bin=$build/tests/perf
for b in uffd_roundtrip bench_random; do
	[[ -x $bin/$b ]] || { echo "run-bench: $bin/$b not built" >&2; exit 2; }
done
read -r -a extra <<<"${UMAPD_BENCH_ARGS:-}"

run() {
	echo "\$ $*"
	"$@"
	echo
}

{
	echo "# umapd benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown) $(git diff --quiet 2>/dev/null || echo '(dirty tree)')"
	echo "kernel:  $(uname -srm)"
	echo "cpu:     $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
		"($(lscpu | sed -n 's/^Hypervisor vendor:[[:space:]]*//p' | grep . || echo no hypervisor) guest)"
	echo "memory:  $(free -g | awk '/^Mem:/ {print $2 " GiB"}'), swap $(free -g | awk '/^Swap:/ {print $2 " GiB"}')"
	echo "storage: $(df -hT "${TMPDIR:-/var/tmp}" | awk 'NR==2 {print $2 " on " $1}')"
	echo "build:   $(grep -E '^CMAKE_BUILD_TYPE:' "$build/CMakeCache.txt" | cut -d= -f2)," \
		"libumapd built $(date -u -r "$(readlink -f "$build/lib/libumapd.so")" '+%Y-%m-%d %H:%M:%S UTC')" \
		"(HEAD then: $(git log -1 --format=%h --before="$(date -r "$(readlink -f "$build/lib/libumapd.so")" +%s)" 2>/dev/null || echo '?'))"
	echo
	run "$bin/uffd_roundtrip" --placement same,split --reps 3
	for t in ${UMAPD_BENCH_THREADS:-1 2 4}; do
		run "$bin/bench_random" --threads "$t" "${extra[@]}"
	done
} 2>&1 | tee "$log"
echo "run-bench: output kept in $log"
