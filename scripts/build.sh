#!/usr/bin/env bash
# Configures and builds OptMLIR into ./build (or $OPTMLIR_BUILD_DIR).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${OPTMLIR_BUILD_DIR:-$root/build}
jobs=${OPTMLIR_JOBS:-$(nproc)}

"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" -j "$jobs"
