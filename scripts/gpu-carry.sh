#!/usr/bin/env bash
# Prepares ./carry (git-ignored) for scripts/gpu-check.sh on the GPU machine:
# the runtime binaries built here, the libraries they need that the GPU
# machine may lack, the main model compiled for sm_90a, and the references.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${OPTMLIR_BUILD_DIR:-$root/build}
shared=${OPTMLIR_SHARED_MODELS_DIR:-$root/../shared/models}
carry=$root/carry
rm -rf "$carry" && mkdir -p "$carry/bin" "$carry/lib" "$carry/shared/ref"
cp "$build/bin/optrun" "$build/bin/CpuExecutorTest" "$build/bin/CudaRuntimeTest" \
  "$build/bin/CudaExecutorTest" "$carry/bin/"
# CudaExecutorTest's tiny models (CPU reference and sm_90a).
for tiny in qwen2_tiny llama_tiny; do
  cp "$build"/test/unit/runtime/exec/$tiny.optpkg \
    "$build"/test/unit/runtime/exec/$tiny.sm_90a.optpkg "$carry/"
done
cp -L /lib/x86_64-linux-gnu/libpcre2-8.so.0 "$carry/lib/"
# optrun serve's HTTP library and its compression libraries (OpenSSL and
# zlib are on any machine with CUDA).
for lib in libcpp-httplib.so.0.11 libbrotlidec.so.1 libbrotlienc.so.1 libbrotlicommon.so.1; do
  cp -L "/lib/x86_64-linux-gnu/$lib" "$carry/lib/"
done
"$build/bin/optc" compile "$shared/main" --target=sm_90a -o "$carry/main.sm_90a.optpkg"
# For bench/run_gpu_bench.sh: the benchmark shapes with random weights (no
# weight data: a few hundred KiB each) and the main model's config for the
# transformers baseline.
for shape in llama-3.2-1b llama-2-7b; do
  "$build/bin/optc" compile --config "$root/bench/configs/$shape.json" --random-weights \
    --target=sm_90a -o "$carry/$shape.sm_90a.optpkg"
done
mkdir -p "$carry/configs"
cp "$shared/main/config.json" "$carry/configs/main.json"
cp "$shared/ref/reference_logits.safetensors" "$carry/shared/ref/"
cp "$shared/eval/dev.jsonl" "$carry/"
du -sh "$carry"
