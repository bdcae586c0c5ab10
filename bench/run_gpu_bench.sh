#!/usr/bin/env bash
# Decode/prefill throughput on an NVIDIA GPU, ours against Hugging Face
# transformers on the same shapes, in one device call (run from the repository
# root with the folder scripts/gpu-carry.sh prepared):
#   bash bench/run_gpu_bench.sh [carry]
# Runs `optrun bench` on the main reference model (sm_90a) and on the
# Llama-3.2-1B shape (random weights), then bench/hf_baseline.py on the same
# two shapes (eager; static cache + torch.compile), and writes
# $OUT/<date>-<device>-bench.md (the table, with date, device and commands)
# plus the raw JSON next to it. BENCH_7B=1 adds the Llama-2-7B shape at
# batch 1 (decode) and a 4096-token prefill. Each part has a time limit
# (seconds, in the environment) so that one slow compile cannot take the
# whole call (BENCH_TOTAL, default 560 s, bounds them all); a transformers
# part cut off keeps the rows it finished. BENCH_HF_1B_BATCHES narrows the
# transformers batches of the 1B shape (its torch.compile at batch 8 and up
# takes minutes).
set -uo pipefail
carry=${1:-carry}
out=${OUT:-/tmp/gpu-bench}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$carry/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=$carry/bin
batches=${BENCH_BATCHES:-1,8,32,128}
ours_limit=${BENCH_OURS_LIMIT:-120}
hf_limit=${BENCH_HF_LIMIT:-200}
# The whole script must end inside the device call's 10 minutes, with the
# table written: no part may run past this many seconds from the start.
total=${BENCH_TOTAL:-560}
budget() { # the part's own limit, cut to what is left of the total
  local left=$((total - SECONDS))
  [ "$left" -lt "$1" ] && echo $((left > 1 ? left : 1)) || echo "$1"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  | tee "$out/nvidia-smi.txt"
commands=$out/commands.txt
: > "$commands"

ours() { # name artifact extra-args...
  local name=$1 artifact=$2
  shift 2
  local cmd="optrun bench $artifact $* --format json"
  echo "$cmd" >> "$commands"
  echo "== $cmd"
  timeout "$(budget "$ours_limit")" "$bin/optrun" bench "$artifact" "$@" --format json \
    > "$out/optrun-$name.json" 2> "$out/optrun-$name.err"
  echo "exit $? $(tail -1 "$out/optrun-$name.err")"
}
hf() { # name config extra-args...
  local name=$1 config=$2
  shift 2
  local cmd="python3 bench/hf_baseline.py $config $*"
  echo "$cmd" >> "$commands"
  echo "== $cmd"
  timeout "$(budget "$hf_limit")" python3 bench/hf_baseline.py "$config" "$@" \
    > "$out/hf-$name.jsonl" 2> "$out/hf-$name.err"
  echo "exit $? $(grep -v Warning "$out/hf-$name.err" | tail -1)"
}

# The main model has 2048 positions: its longest prefill is 2048.
ours main "$carry/main.sm_90a.optpkg" --batch "$batches" --prefill 512,2048
ours llama-3.2-1b "$carry/llama-3.2-1b.sm_90a.optpkg" --batch "$batches"
if [ "${BENCH_7B:-0}" = 1 ]; then
  ours llama-2-7b "$carry/llama-2-7b.sm_90a.optpkg" --batch 1 --prefill 4096
fi
hf main "$carry/configs/main.json" --batch "$batches"
hf llama-3.2-1b bench/configs/llama-3.2-1b.json --batch "${BENCH_HF_1B_BATCHES:-$batches}"
if [ "${BENCH_7B:-0}" = 1 ]; then
  hf llama-2-7b bench/configs/llama-2-7b.json --batch 1
fi

python3 bench/bench_table.py "$out" | tee "$out/table.md"
