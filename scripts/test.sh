#!/usr/bin/env bash
# Builds everything and runs every test: unit tests and the lit suite through
# CTest, then the fuzzers for a short while.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${OPTMLIR_BUILD_DIR:-$root/build}

"$root/scripts/build.sh"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
"$root/scripts/run-fuzzers.sh" "${OPTMLIR_FUZZ_SECONDS:-20}" "$build/fuzz"
