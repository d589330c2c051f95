#!/usr/bin/env bash
# test.sh - install the build dependencies, build umapd and run the test
# suite (everything but the perf and soak families).  Extra arguments go
# to ctest, e.g. ./scripts/test.sh -L unit
#   UMAPD_BUILD_DIR   build directory            (default: build)
#   UMAPD_BUILD_TYPE  CMAKE_BUILD_TYPE           (default: Release)
#   UMAPD_CMAKE_ARGS  extra cmake configure args (e.g. -DUMAPD_SANITIZE=thread)
#   UMAPD_CTEST_PREFIX  command to run ctest under (e.g. "setarch -R")
set -euo pipefail
cd "$(dirname "$0")/.."

build=${UMAPD_BUILD_DIR:-build}
type=${UMAPD_BUILD_TYPE:-Release}
read -r -a extra <<<"${UMAPD_CMAKE_ARGS:-}"
read -r -a prefix <<<"${UMAPD_CTEST_PREFIX:-}"

./scripts/deps.sh
cmake -B "$build" -DCMAKE_BUILD_TYPE="$type" -DUMAPD_BUILD_TESTS=ON "${extra[@]}"
cmake --build "$build" -j "$(nproc)"
./scripts/uffd-check.sh || echo "test.sh: tests that need userfaultfd will fail or skip" >&2
# Every test sets its own TIMEOUT; --timeout is the fallback for any that
# does not.  perf and soak are never part of this run.
exec "${prefix[@]}" ctest --test-dir "$build" --output-on-failure --timeout 600 -LE '^(perf|soak|known-issue)$' "$@"
