#!/bin/bash
# Runs the flash-attention harness on a GPU machine (README.md): checks and
# times every kernel of the manifest, then torch SDPA on the same shapes.
# usage: run_flash.sh [PAYLOAD_DIR] [attention-check options...]
# PAYLOAD_DIR holds attention-check, manifest.txt, flash_sm_90a.{cubin,ptx}
# and sdpa_bench.py (default: this script's folder). Logs go to $OUT (the
# device tool's output folder) or /tmp/flash-out.
set -o pipefail
P=${1:-$(dirname "$0")}
shift
O=${OUT:-/tmp/flash-out}
mkdir -p "$O"
export PYTHONUNBUFFERED=1
date -u
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu,memory.used --format=csv
# Full log to a file; only failures, their details and the tables here.
"$P/attention-check" --dir "$P" --json "$O/check.json" "$@" > "$O/check.log" 2>&1
rc=$?
grep -v "^PASS" "$O/check.log"
python3 "$P/sdpa_bench.py" --ours "$O/check.json" --json "$O/sdpa.json" 2>&1 | tee "$O/sdpa.log"
# The SASS of the timed kernels, to read what ptxas made of them.
CUOBJDUMP=$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)
if [ -x "$CUOBJDUMP" ]; then
  for name in $(grep "role=bench" "$P/manifest.txt" | grep "hkv=8 " | sed 's/.*name=\([^ ]*\).*/\1/'); do
    "$CUOBJDUMP" -sass -fun "$name" "$P/flash_sm_90a.cubin"
  done > "$O/sass.txt" 2>&1
  "$CUOBJDUMP" -res-usage "$P/flash_sm_90a.cubin" > "$O/res_usage.txt" 2>&1
fi
ls -la "$O"
exit $rc
