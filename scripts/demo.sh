#!/usr/bin/env bash
# demo.sh - install the build dependencies, build umapd (Release) and run
# the demo: it creates a 1 GiB file, pages it through a 128 MiB budget and
# prints what happened.  Arguments are passed to umapd-demo.
#   UMAPD_BUILD_DIR   build directory (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."

build=${UMAPD_BUILD_DIR:-build}

./scripts/deps.sh
cmake -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"
./scripts/uffd-check.sh || true
exec "./$build/examples/umapd-demo" "$@"
