#!/usr/bin/env bash
# deps.sh - install the Debian 12 packages umapd needs to build, test and
# run its demo.  Runs apt-get as root directly, through sudo otherwise.
# If every package is already installed it does nothing (so it also works
# offline); UMAPD_FORCE_DEPS=1 runs apt-get anyway, UMAPD_SKIP_DEPS=1 skips.
set -euo pipefail

# python3, sqlite3 and lmdb-utils: the programs tests/preload runs under the
# preload library (coreutils sort is always there).
# clang (with libclang-rt-14-dev's libFuzzer): the fuzz harnesses of tests/fuzz
# (.ci/run stage fuzz); gcc builds everything else.
PKGS=(build-essential cmake pkg-config liburing-dev libaio-dev libjemalloc-dev fio util-linux
	python3 sqlite3 lmdb-utils clang libclang-rt-14-dev)

if [[ "${UMAPD_SKIP_DEPS:-0}" == 1 ]]; then
	echo "deps: skipped (UMAPD_SKIP_DEPS=1)"
	exit 0
fi

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [[ ${#missing[@]} -eq 0 && "${UMAPD_FORCE_DEPS:-0}" != 1 ]]; then
	echo "deps: all present (${PKGS[*]})"
	exit 0
fi

if [[ $EUID -eq 0 ]]; then
	as_root=()
elif command -v sudo >/dev/null 2>&1; then
	as_root=(sudo)
else
	echo "deps: missing ${missing[*]}; run this as root or install sudo" >&2
	exit 1
fi

echo "deps: installing ${PKGS[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PKGS[@]}"
