#!/bin/bash
# Builds what a GPU machine needs to check and time flash_attention
# (FLASH_ATTENTION.md) into one folder: the PTX, cubin and manifest from
# attention-ptxgen, the MLIR-free attention-check, sdpa_bench.py and
# run_flash.sh. Run from the repository root.
# usage: test/gpu/make_flash_payload.sh [BUILD_DIR] [PAYLOAD_DIR]
set -euo pipefail
BUILD=${1:-build}
PAYLOAD=${2:-carry/flash-harness}
cmake --build "$BUILD" --target attention-ptxgen attention-check
rm -rf "$PAYLOAD"
mkdir -p "$PAYLOAD"
"$BUILD/bin/attention-ptxgen" "$PAYLOAD" > "$PAYLOAD/ptxgen.log"
cp "$BUILD/bin/attention-check" test/gpu/sdpa_bench.py test/gpu/run_flash.sh \
  "$PAYLOAD/"
du -sh "$PAYLOAD"
