#!/usr/bin/env bash
# run-io-bench.sh - run bench_io (umapd against fio and the kernel's mmap on
# the same file, each held to the same memory budget) with a header that
# describes the machine and the build, `vmstat 1` alongside, and keep the
# output in a log.
#
#   usage: tests/perf/run-io-bench.sh [--build DIR] [--log FILE] [bench_io options...]
#     --build DIR  build directory (default: build-bench, configured and built
#                  as Release if it does not exist yet)
#     --log FILE   log file (default: io-bench-<date>.log; vmstat goes to
#                  FILE with .vmstat instead of .log)
#   everything else goes to bench_io, e.g.
#     tests/perf/run-io-bench.sh --only randread --engine aio
#     tests/perf/run-io-bench.sh --budget 512M --seconds 10 --dir /work
#
# Needs root (memory cgroup v1, drop_caches).  Installs fio from Debian if it
# is missing.  bench_io --help lists its options.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build-bench
log=
args=()
while [[ $# -gt 0 ]]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--log) log=$2; shift 2 ;;
	*) args+=("$1"); shift ;;
	esac
done
log=${log:-io-bench-$(date -u +%Y%m%dT%H%M%SZ).log}
vmlog=${log%.log}.vmstat

if [[ $EUID -ne 0 ]]; then
	echo "run-io-bench: needs root (memory cgroups, drop_caches)" >&2
	exit 2
fi
if ! command -v fio >/dev/null 2>&1; then
	echo "run-io-bench: installing fio"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends fio ||
		{ apt-get update && apt-get install -y --no-install-recommends fio; }
fi
if [[ ! -x $build/tests/perf/bench_io ]]; then
	cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
	cmake --build "$build" -j"$(nproc)" --target bench_io
fi
bin=$build/tests/perf/bench_io

# Where the data file goes: --dir, else $TMPDIR, else /var/tmp.
dir=${TMPDIR:-/var/tmp}
for ((i = 0; i < ${#args[@]}; i++)); do
	[[ ${args[i]} == --dir ]] && dir=${args[i + 1]:-$dir}
	[[ ${args[i]} == --dir=* ]] && dir=${args[i]#--dir=}
done
fstype=$(df --output=fstype "$dir" | tail -1 | tr -d ' ')
if [[ $fstype == tmpfs ]]; then
	echo "run-io-bench: $dir is on tmpfs; pass --dir on a real disk" >&2
	exit 2
fi

lib=$(readlink -f "$build/lib/libumapd.so" 2>/dev/null || true)
vmpid=
stop_vmstat() { [[ -n $vmpid ]] && kill "$vmpid" 2>/dev/null; vmpid=; }
trap stop_vmstat EXIT

{
	echo "# bench_io, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
		"$(git diff --quiet HEAD -- lib include 2>/dev/null && echo '(lib/ and include/ as committed)' ||
			echo '(UNCOMMITTED changes in lib/ or include/: the figures are not those of the commit)')"
	[[ -n $lib ]] && echo "library: $lib, built $(date -u -r "$lib" '+%Y-%m-%d %H:%M:%S UTC')" \
		"($(grep -E '^CMAKE_BUILD_TYPE:' "$build/CMakeCache.txt" | cut -d= -f2))"
	echo "kernel:  $(uname -srm); kernel.io_uring_disabled=$(sysctl -n kernel.io_uring_disabled 2>/dev/null || echo '?')"
	echo "cpu:     $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "memory:  $(free -g | awk '/^Mem:/ {print $2 " GiB"}'), swap $(free -g | awk '/^Swap:/ {print $2 " GiB"}')"
	echo "storage: $dir on $(df --output=source "$dir" | tail -1) ($fstype)," \
		"scheduler $(cat /sys/block/"$(basename "$(df --output=source "$dir" | tail -1)")"/queue/scheduler 2>/dev/null || echo '?')"
	echo "fio:     $(fio --version)"
	echo "load:    $(cut -d' ' -f1-3 /proc/loadavg)"
	env | grep -E '^UMAPD_' | sed 's/^/env:     /' || true
	echo "vmstat:  every second in $vmlog"
	echo "\$ $bin ${args[*]}"
	echo
} | tee "$log"

vmstat -t 1 >"$vmlog" 2>&1 &
vmpid=$!

rc=0
"$bin" "${args[@]}" 2>&1 | tee -a "$log" || rc=${PIPESTATUS[0]}
stop_vmstat

results=$(grep '^RESULT' "$log" | sed 's/^/  /' || true)
{
	echo
	echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "bench_io exit status $rc"
	echo "$results"
} | tee -a "$log"
echo "run-io-bench: output kept in $log (vmstat in $vmlog)"
exit "$rc"
