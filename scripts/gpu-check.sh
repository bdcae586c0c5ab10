#!/usr/bin/env bash
# Checks the GPU backend on an NVIDIA GPU (run through the device tool from the
# repository root, with the carried folder prepared by scripts/gpu-carry.sh):
# the CUDA runtime tests, the main model's numerics against the bf16
# references of transformers, generation, and perplexity. Prints a summary.
set -uo pipefail
carry=${1:-carry}
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$carry/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=$carry/bin
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

echo "== CUDA runtime tests"
"$bin/CudaRuntimeTest" --gtest_brief=1 2>&1 | tail -4

echo "== CUDA executor tests (Qwen2-shaped biases vs the CPU executor, --gpu-memory-utilization)"
OPTMLIR_TEST_ARTIFACT_DIR=$PWD/$carry "$bin/CudaExecutorTest" --gtest_brief=1 2>&1 | tail -6

echo "== executor numerics (main model, sm_90a, bf16 references)"
OPTMLIR_GPU_ARTIFACT_DIR=$PWD/$carry OPTMLIR_SHARED_MODELS_DIR=$PWD/$carry/shared \
  OPTMLIR_SOURCE_DIR=$PWD "$bin/CpuExecutorTest" --gtest_output=json:$out/executor.json \
  2>&1 | grep -E "OK|FAILED|PASSED|Expected|Which|error|prompt" | head -40
python3 - "$out/executor.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for suite in d["testsuites"]:
    for t in suite["testsuite"]:
        props = {k: v for k, v in t.items() if k.startswith(("prompt", "identical", "worst"))}
        print(t["name"], "FAILED" if t.get("failures") else "ok", props)
PY

echo "== generate"
"$bin/optrun" generate $carry/main.sm_90a.optpkg --prompt "The Python standard library provides" --max-tokens 64

echo "== perplexity (reference bf16: 28.3162)"
/usr/bin/time -f "%e s" "$bin/optrun" perplexity $carry/main.sm_90a.optpkg $carry/dev.jsonl --window 512 2>$out/ppl.err | tail -3
tail -1 $out/ppl.err
