#!/usr/bin/env bash
# The main job: builds OptMLIR, compiles the example checkpoint (or the one
# given as the first argument) for the best target present (an NVIDIA GPU of
# compute capability 9.0 or 8.x, else the CPU), and generates text with it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${OPTMLIR_BUILD_DIR:-$root/build}
model=${1:-$root/examples/draft}
prompt=${OPTMLIR_PROMPT:-"The Python standard library provides"}
out=$build/main-job
mkdir -p "$out"

"$root/scripts/build.sh"

target=cpu
if command -v nvidia-smi >/dev/null 2>&1; then
  case "$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1)" in
    9.0) target=sm_90a ;;
    8.*) target=sm_80 ;;
  esac
fi
echo "== compiling $model for --target=$target"
"$build/bin/optc" compile "$model" --target=$target -o "$out/model.optpkg"
"$build/bin/optrun" inspect "$out/model.optpkg" | sed -n '/^plan:/,/^kernels:/p' | head -12

echo "== generating"
echo "prompt: $prompt"
"$build/bin/optrun" generate "$out/model.optpkg" --prompt "$prompt" --max-tokens 64
echo
