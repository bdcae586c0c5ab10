#!/bin/bash
# Builds what a GPU machine needs to check and time flash_attention
# (FLASH_ATTENTION.md) into one folder: the PTX, cubin and manifest from
# attention-ptxgen, the MLIR-free attention-check, sdpa_bench.py and
# run_flash.sh. Run from the repository root.
# usage: test/gpu/make_flash_payload.sh [BUILD_DIR] [PAYLOAD_DIR] [ptxgen options]
# (--split-only: the split decode kernel alone, a payload of 1 MiB instead of
# 16, without the PTX, which attention-check needs only with --ptx)
set -euo pipefail
BUILD=${1:-build}
PAYLOAD=${2:-carry/flash-harness}
shift $(($# < 2 ? $# : 2))
cmake --build "$BUILD" --target attention-ptxgen attention-check
rm -rf "$PAYLOAD"
mkdir -p "$PAYLOAD"
"$BUILD/bin/attention-ptxgen" "$PAYLOAD" "$@" > "$PAYLOAD/ptxgen.log"
if [[ " $* " == *" --split-only "* ]]; then rm "$PAYLOAD"/*.ptx; fi
cp "$BUILD/bin/attention-check" test/gpu/sdpa_bench.py test/gpu/run_flash.sh \
  "$PAYLOAD/"
du -sh "$PAYLOAD"
