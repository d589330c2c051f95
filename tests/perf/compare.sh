#!/usr/bin/env bash
# compare.sh - umapd (native), umapd through umap.h and the kernel's mmap on
# the same three workloads, each run held to the same memory by a memory
# cgroup (v1), in one invocation; writes a Markdown table and PNG plots.
#
#   tests/perf/compare.sh [--build DIR] [--size 256M] [--budget 128M]
#       [--slack 64M] [--threads "1 2"] [--pages "4K 64K 2M"]
#       [--workloads "sort random seq"] [--ops 40000] [--random-size S]
#       [--seq-size S] [--out docs] [--no-plots]
#
# Workloads (the examples in examples/, which check their own results):
#   sort    umapd-sort / umap-sort / umapd-sort --mmap: sort --size bytes of
#           64-bit keys in place, write them back (unmap / msync), time it all
#   random  kv-lookup: --ops binary-search lookups over a --random-size table
#   seq     stream: STREAM's four kernels, 2 passes over 3 arrays of --seq-size/3
#           (--random-size and --seq-size default to --size)
#
# Memory: each run is a fresh child in /sys/fs/cgroup/memory/umapd-compare-*.
# The kernel's mmap gets a limit of exactly --budget (that is its budget: the
# page cache of the mapping is all it has).  umapd gets UMAPD_BUFSIZE =
# --budget for the mapped data and a limit of --budget + --slack, the slack
# holding the process and the page cache its buffered reads and write-backs
# pass through.  --slack 0 puts umapd under the very same limit (then the
# budget must leave room for those: pass a smaller --budget, or accept OOM).
#
# With UMAP_ROOT naming an LLNL UMap installation (include/umap/umap.h,
# lib/libumap.so), examples/umap-sort.c is also built against it and run as
# the "llnl-umap" column of the sort.
#
# Needs root, the memory cgroup v1, and gnuplot for the plots (installed with
# apt-get when missing).  Results: <out>/compare.md, <out>/compare-*.png, and
# the table between the compare markers in <out>/performance.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build="$src/build-compat"
size=256M budget=128M slack=64M threads="1 2" pages="4K 64K 2M"
workloads="sort random seq" ops=40000 out="$src/docs" plots=1 rsize="" ssize=""

while [[ $# -gt 0 ]]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--budget) budget=$2; shift 2 ;;
	--slack) slack=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--pages) pages=$2; shift 2 ;;
	--workloads) workloads=$2; shift 2 ;;
	--ops) ops=$2; shift 2 ;;
	--random-size) rsize=$2; shift 2 ;;
	--seq-size) ssize=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--no-plots) plots=0; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

bytes() { # 64M -> 67108864
	local v=${1%[KkMmGg]} s=${1: -1}
	case $s in K|k) echo $((v << 10)) ;; M|m) echo $((v << 20)) ;; G|g) echo $((v << 30)) ;; *) echo "$1" ;; esac
}
budget_b=$(bytes "$budget") slack_b=$(bytes "$slack")
rsize=${rsize:-$size} ssize=${ssize:-$size}
cgroot=/sys/fs/cgroup/memory
[[ $EUID -eq 0 ]] || { echo "compare.sh: needs root (memory cgroups)" >&2; exit 2; }
[[ -w $cgroot ]] || { echo "compare.sh: no memory cgroup v1 at $cgroot" >&2; exit 2; }
ex="$build/examples" perf="$build/tests/perf"
for b in "$ex/umapd-sort" "$ex/umap-sort" "$ex/kv-lookup" "$ex/stream" \
	"$perf/compare_kv_umap" "$perf/compare_stream_umap"; do
	[[ -x $b ]] || { echo "compare.sh: $b not built (cmake --build $build)" >&2; exit 2; }
done
if [[ $plots == 1 ]] && ! command -v gnuplot >/dev/null; then
	echo "compare.sh: installing gnuplot (Debian: gnuplot-nox)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gnuplot-nox >/dev/null ||
		{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gnuplot-nox >/dev/null; }
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/umapd-compare.XXXXXX")
cg=""
cleanup() {
	rmdir "$cgroot"/umapd-compare-$$-* 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

llnl=""
if [[ -n ${UMAP_ROOT:-} ]]; then
	echo "compare.sh: building examples/umap-sort.c against LLNL UMap in $UMAP_ROOT"
	cc -O2 -std=gnu11 -pthread -I"$UMAP_ROOT/include/umap" -I"$UMAP_ROOT/include" \
		-I"$src/examples" "$src/examples/umap-sort.c" -o "$work/llnl-umap-sort" \
		-L"$UMAP_ROOT/lib" -L"$UMAP_ROOT/lib64" -lumap -Wl,-rpath,"$UMAP_ROOT/lib:$UMAP_ROOT/lib64"
	llnl="$work/llnl-umap-sort"
fi

results="$work/results.tsv" # workload page threads system seconds metric
: >"$results"
n=0
# run_in_cgroup LIMIT CMD... : prints the RESULT line of CMD, run in a fresh cgroup
run_in_cgroup() {
	local limit=$1; shift
	# Called in $(...): a subshell, so name the group by its own pid.
	n=$BASHPID
	cg="$cgroot/umapd-compare-$$-$n"
	mkdir "$cg"
	echo "$limit" >"$cg/memory.limit_in_bytes"
	local outf="$work/out.$n" rc=0
	TMPDIR="$work" bash -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' _ "$cg" "$@" >"$outf" 2>&1 || rc=$?
	local peak; peak=$(cat "$cg/memory.max_usage_in_bytes")
	rmdir "$cg" 2>/dev/null || true
	cg=""
	if [[ $rc -ne 0 ]] || ! grep -q '^RESULT .* ok=1' "$outf"; then
		echo "compare.sh: FAILED (exit $rc): $*" >&2
		sed 's/^/    /' "$outf" >&2
		echo "FAIL"
		return
	fi
	echo "$(grep '^RESULT' "$outf") peak=$peak"
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

record() { # workload page threads system line
	local w=$1 p=$2 t=$3 s=$4 line=$5 secs metric
	if [[ $line == FAIL ]]; then
		printf '%s\t%s\t%s\t%s\tFAIL\tFAIL\n' "$w" "$p" "$t" "$s" >>"$results"
		return
	fi
	secs=$(field seconds "$line")
	case $w in
	sort) metric=$secs ;;
	random) metric=$(field ops_per_sec "$line") ;;
	seq) metric=$(field mb_per_sec "$line") ;;
	esac
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$p" "$t" "$s" "$secs" "$metric" >>"$results"
	printf '  %-6s page %-4s threads %s %-9s %8ss  %s  (peak %s MiB)\n' "$w" "$p" "$t" "$s" "$secs" \
		"$metric" "$(( $(field peak "$line") >> 20 ))"
}

umapd_limit=$((budget_b + slack_b))
size_b=$(bytes "$size")
echo "compare.sh: size $size, budget $budget (umapd cgroup $((umapd_limit >> 20)) MiB, mmap cgroup $((budget_b >> 20)) MiB), threads [$threads], pages [$pages], workloads [$workloads]"
echo "compare.sh: commit $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo '?'), $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
for w in $workloads; do
	for t in $threads; do
		case $w in
		sort) args=(--size "$size" --budget "$budget" --threads "$t") ;;
		random) args=(--size "$rsize" --budget "$budget" --threads "$t" --ops "$ops") ;;
		seq) args=(--size "$ssize" --budget "$budget" --threads "$t" --ops 2) ;;
		esac
		# The kernel's mmap has no page size of ours: one run per thread count.
		case $w in
		sort) line=$(run_in_cgroup "$budget_b" "$ex/umapd-sort" "${args[@]}" --mmap) ;;
		random) line=$(run_in_cgroup "$budget_b" "$ex/kv-lookup" "${args[@]}" --mmap) ;;
		seq) line=$(run_in_cgroup "$budget_b" "$ex/stream" "${args[@]}" --mmap) ;;
		esac
		for p in $pages; do record "$w" "$p" "$t" mmap "$line"; done
		for p in $pages; do
			pb=$(bytes "$p") ra=()
			[[ $w == random ]] && ra=(UMAP_READ_AHEAD=0)
			case $w in
			sort)
				record "$w" "$p" "$t" umapd "$(run_in_cgroup "$umapd_limit" "$ex/umapd-sort" "${args[@]}" --page-size "$p")"
				record "$w" "$p" "$t" umap.h "$(run_in_cgroup "$umapd_limit" env UMAP_PAGESIZE="$pb" "$ex/umap-sort" "${args[@]}" --page-size "$p")"
				if [[ -n $llnl ]]; then
					record "$w" "$p" "$t" llnl-umap "$(run_in_cgroup "$umapd_limit" env UMAP_PAGESIZE="$pb" "$llnl" "${args[@]}" --page-size "$p")"
				fi ;;
			random)
				record "$w" "$p" "$t" umapd "$(run_in_cgroup "$umapd_limit" "$ex/kv-lookup" "${args[@]}" --page-size "$p")"
				record "$w" "$p" "$t" umap.h "$(run_in_cgroup "$umapd_limit" env UMAP_PAGESIZE="$pb" "${ra[@]}" "$perf/compare_kv_umap" "${args[@]}" --page-size "$p")" ;;
			seq)
				record "$w" "$p" "$t" umapd "$(run_in_cgroup "$umapd_limit" "$ex/stream" "${args[@]}" --page-size "$p")"
				record "$w" "$p" "$t" umap.h "$(run_in_cgroup "$umapd_limit" env UMAP_PAGESIZE="$pb" "$perf/compare_stream_umap" "${args[@]}" --page-size "$p")" ;;
			esac
		done
	done
done

# ---- the table -------------------------------------------------------------------------
systems="umapd umap.h mmap"
[[ -n $llnl ]] && systems="umapd umap.h llnl-umap mmap"
get() { awk -F'\t' -v w="$1" -v p="$2" -v t="$3" -v s="$4" '$1==w && $2==p && $3==t && $4==s {print $6}' "$results"; }
table="$work/table.md"
{
	echo "| workload | page | threads |$(for s in $systems; do printf ' %s |' "$s"; done) umapd vs mmap |"
	echo "|---|---|---|$(for s in $systems; do printf -- '---|'; done)---|"
	for w in $workloads; do
		unit="s (lower is better)"
		[[ $w == random ]] && unit="lookups/s"
		[[ $w == seq ]] && unit="MB/s"
		for p in $pages; do
			for t in $threads; do
				row="| $w ($unit) | $p | $t |"
				for s in $systems; do row+=" $(get "$w" "$p" "$t" "$s") |"; done
				u=$(get "$w" "$p" "$t" umapd) m=$(get "$w" "$p" "$t" mmap)
				if [[ $u =~ ^[0-9.]+$ && $m =~ ^[0-9.]+$ ]]; then
					# A speed-up: mmap time / umapd time, or umapd rate / mmap rate.
					if [[ $w == sort ]]; then r=$(awk -v a="$m" -v b="$u" 'BEGIN{printf "%.2fx", a/b}')
					else r=$(awk -v a="$u" -v b="$m" 'BEGIN{printf "%.2fx", a/b}'); fi
				else
					r="-"
				fi
				echo "$row **$r** |"
			done
		done
	done
} >"$table"
cat "$table"

mkdir -p "$out"
{
	echo "# umapd against umap.h and the kernel's mmap"
	echo
	echo "Written by \`tests/perf/compare.sh\`; see docs/performance.md for how to read it."
	echo
	echo "\`\`\`sh"
	echo "tests/perf/compare.sh --build $build --size $size --random-size $rsize --seq-size $ssize --budget $budget --slack $slack --threads \"$threads\" --pages \"$pages\" --workloads \"$workloads\" --ops $ops"
	echo "\`\`\`"
	echo
	echo "Commit \`$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo '?')\`, $(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r), $(nproc) CPUs, load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
	echo "Memory cgroup limits: mmap $((budget_b >> 20)) MiB; umapd (budget $((budget_b >> 20)) MiB) $((umapd_limit >> 20)) MiB."
	echo
	cat "$table"
	for w in $workloads; do echo; echo "![$w](compare-$w.png)"; done
} >"$out/compare.md"

# The table into performance.md, between the markers (added at the end once).
perfmd="$out/performance.md"
if [[ -f $perfmd ]] && grep -q '<!-- compare:begin -->' "$perfmd"; then
	awk -v f="$out/compare.md" '
		/<!-- compare:begin -->/ { print; while ((getline l < f) > 0) if (l !~ /^# /) print l; skip = 1; next }
		/<!-- compare:end -->/ { skip = 0 }
		!skip' "$perfmd" >"$work/perf.md" && cat "$work/perf.md" >"$perfmd"
fi

# ---- plots -----------------------------------------------------------------------------
if [[ $plots == 1 ]] && command -v gnuplot >/dev/null; then
	for w in $workloads; do
		ylabel="seconds (lower is better)"
		[[ $w == random ]] && ylabel="lookups per second"
		[[ $w == seq ]] && ylabel="MB/s"
		dat="$work/$w.dat"
		: >"$dat"
		plot=""
		i=0
		for s in $systems; do
			for p in $pages; do
				[[ $s == mmap && $p != "${pages%% *}" ]] && continue # mmap has no page size
				label="$s $p"
				[[ $s == mmap ]] && label="mmap"
				echo "# $label" >>"$dat"
				for t in $threads; do
					v=$(get "$w" "$p" "$t" "$s")
					[[ $v =~ ^[0-9.]+$ ]] && echo "$t $v" >>"$dat"
				done
				printf '\n\n' >>"$dat"
				plot+="${plot:+, }'$dat' index $i with linespoints title '$label'"
				i=$((i + 1))
			done
		done
		gnuplot <<-EOF
			set terminal png size 800,500
			set output '$out/compare-$w.png'
			set title '$w, budget $budget'
			set xlabel 'threads'
			set ylabel '$ylabel'
			set xtics 1
			set key outside right
			set grid
			plot $plot
		EOF
	done
	echo "compare.sh: wrote $out/compare.md and $out/compare-{$(echo "$workloads" | tr ' ' ',')}.png"
else
	echo "compare.sh: wrote $out/compare.md (no plots)"
fi
