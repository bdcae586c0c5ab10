#!/usr/bin/env bash
# Builds everything and runs every test: unit tests and the lit suite through
# CTest, then the fuzzers for a short while.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${OPTMLIR_BUILD_DIR:-$root/build}

"$root/scripts/build.sh"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"

# The MLIR-free half (support, Hugging Face reading, runtime) once more on its
# own, with AddressSanitizer and UndefinedBehaviorSanitizer: this also proves
# that it builds without LLVM.
sanitized=${build}-sanitized
cmake -S "$root" -B "$sanitized" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DOPTMLIR_BUILD_COMPILER=OFF -DOPTMLIR_SANITIZE=ON >/dev/null
cmake --build "$sanitized" -j "$(nproc)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir "$sanitized" --output-on-failure -j "$(nproc)"
"$root/scripts/run-fuzzers.sh" "${OPTMLIR_FUZZ_SECONDS:-20}" "$build/fuzz"
