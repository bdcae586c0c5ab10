#!/usr/bin/env bash
# The main job: builds OptMLIR, imports the example checkpoint (or the one
# given as the first argument) into the tfm dialect, runs the graph passes
# on it and prints a summary of the result.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${OPTMLIR_BUILD_DIR:-$root/build}
model=${1:-$root/examples/draft}
out=$build/main-job
mkdir -p "$out"

"$root/scripts/build.sh"

"$build/bin/optc" import "$model" -o "$out/model.mlir"
"$build/bin/optmlir-opt" "$out/model.mlir" --tfm-fuse-qkv --tfm-fuse-gate-up \
  --canonicalize --cse -o "$out/model.fused.mlir"

echo "imported $model (ops per module below)"
echo "  tfm module:          $out/model.mlir"
echo "  after fusion passes: $out/model.fused.mlir"
for f in "$out/model.mlir" "$out/model.fused.mlir"; do
  printf '  %-22s' "$(basename "$f"):"
  grep -oE '(= |^ +)tfm\.[a-z_]+' "$f" | grep -oE 'tfm\.[a-z_]+' | sort | uniq -c | sort -rn |
    awk '{printf "%s %s, ", $1, $2}' | sed 's/, $//'
  echo
done
