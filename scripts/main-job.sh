#!/usr/bin/env bash
# The main job: builds OptMLIR, compiles the example checkpoint (or the one
# given as the first argument) for the best target present, and generates
# text with it. The CPU is the only target so far; the GPU backend (issue 4)
# will be chosen here when an NVIDIA GPU is present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${OPTMLIR_BUILD_DIR:-$root/build}
model=${1:-$root/examples/draft}
prompt=${OPTMLIR_PROMPT:-"The Python standard library provides"}
out=$build/main-job
mkdir -p "$out"

"$root/scripts/build.sh"

target=cpu
echo "== compiling $model for --target=$target"
"$build/bin/optc" compile "$model" --target=$target -o "$out/model.optpkg"
"$build/bin/optrun" inspect "$out/model.optpkg" | sed -n '/^plan:/,/^kernels:/p' | head -12

echo "== generating"
echo "prompt: $prompt"
"$build/bin/optrun" generate "$out/model.optpkg" --prompt "$prompt" --max-tokens 64
echo
