#!/usr/bin/env bash
# Serving throughput and latency on an NVIDIA GPU, in one device call (run
# from the repository root with the folder scripts/gpu-carry.sh prepared):
#   bash bench/run_serve_bench.sh [carry]
# 1. `optrun serve` on the main model for sm_90a, and bench/load_client.py
#    over a sweep of Poisson arrival rates (prompts uniform 64-512 tokens,
#    outputs uniform 32-256);
# 2. the shared-prefix workload (a 1024-token system prompt before each
#    64-token prompt), with prefix caching and then without (the server
#    restarted with --no-prefix-caching);
# 3. transformers' batched generate on the same requests as the sweep
#    (bench/hf_serve_baseline.py: static batches, random weights of the same
#    shape), the baseline;
# and writes $OUT/<date>-<device>-serve.md with the tables, the date, the
# device and the commands, beside the raw JSON. Knobs (environment):
# SERVE_ARTIFACT, SERVE_CONFIG (the model and its config.json for the
# baseline), SERVE_RATES, SERVE_REQUESTS, SERVE_PROMPT_LEN, SERVE_OUTPUT_LEN,
# SERVE_HF_BATCH, and SERVE_TOTAL (seconds, default 560: every part is cut to
# what is left, so that the report is written inside the 10-minute call).
set -uo pipefail
carry=${1:-carry}
out=${OUT:-/tmp/serve-bench}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$carry/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=$carry/bin
artifact=${SERVE_ARTIFACT:-$carry/main.sm_90a.optpkg}
config=${SERVE_CONFIG:-$carry/configs/main.json}
rates=${SERVE_RATES:-1,4,16,64,inf}
requests=${SERVE_REQUESTS:-200}
prompt_len=${SERVE_PROMPT_LEN:-uniform:64:512}
output_len=${SERVE_OUTPUT_LEN:-uniform:32:256}
hf_batch=${SERVE_HF_BATCH:-32}
total=${SERVE_TOTAL:-560}
budget() { # what is left of the total, at most $1 seconds
  local left=$((total - SECONDS))
  [ "$left" -lt "$1" ] && echo $((left > 1 ? left : 1)) || echo "$1"
}
commands=$out/commands.txt
: > "$commands"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  > "$out/nvidia-smi.txt" 2> /dev/null || echo "no GPU (no nvidia-smi)" > "$out/nvidia-smi.txt"
cat "$out/nvidia-smi.txt"

pid=
port=
start_server() { # extra optrun serve args...
  local cmd="optrun serve $artifact --port 0 $*"
  echo "$cmd" >> "$commands"
  echo "== $cmd"
  "$bin/optrun" serve "$artifact" --port 0 "$@" > "$out/server.out" 2>> "$out/server.err" &
  pid=$!
  for _ in $(seq 1 240); do
    port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$out/server.out" | grep -o '[0-9]*$')
    [ -n "$port" ] && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.5
  done
  if [ -z "$port" ]; then
    echo "the server did not start:"; tail -5 "$out/server.err"
    return 1
  fi
  head -1 "$out/server.out"
}
stop_server() {
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2> /dev/null
  wait "$pid"
  echo "server exit $?"
  pid=
}
trap stop_server EXIT

client() { # name args...
  local name=$1
  shift
  local cmd="python3 bench/load_client.py $* --json $name.json"
  echo "$cmd" >> "$commands"
  echo "== $cmd"
  timeout "$(budget 300)" python3 bench/load_client.py --url "http://127.0.0.1:$port" "$@" \
    --json "$out/$name.json" | tee "$out/$name.md"
}

prefix=(--rates inf --num-requests 100 --prompt-len fixed:64 --output-len fixed:64
        --shared-prefix-tokens 1024)
if start_server; then
  client sweep --rates "$rates" --num-requests "$requests" --prompt-len "$prompt_len" \
    --output-len "$output_len" --dump-workload "$out/workload.json"
  client prefix-cache-on "${prefix[@]}"
  stop_server
fi
if start_server --no-prefix-caching; then
  client prefix-cache-off "${prefix[@]}"
  stop_server
fi

if [ -f "$out/workload.json" ]; then
  cmd="python3 bench/hf_serve_baseline.py $config workload.json --batch $hf_batch"
  echo "$cmd" >> "$commands"
  echo "== $cmd"
  timeout "$(budget 240)" python3 bench/hf_serve_baseline.py "$config" "$out/workload.json" \
    --batch "$hf_batch" --json "$out/hf.json" 2> "$out/hf.err"
  echo "exit $? $(grep -v Warning "$out/hf.err" | tail -1)"
fi

device=$(head -1 "$out/nvidia-smi.txt" | cut -d, -f1 | tr 'A-Z ' 'a-z-')
report=$out/$(date -u +%Y-%m-%d-%H%M)-$device-serve.md
{
  echo "# optrun serve on $(head -1 "$out/nvidia-smi.txt" | cut -d, -f1), $(date -u +%Y-%m-%d)"
  echo
  echo "Device: $(cat "$out/nvidia-smi.txt"). Artifact: \`$artifact\`."
  echo
  echo "## Arrival-rate sweep ($requests requests a rate; prompts $prompt_len, outputs $output_len tokens)"
  echo
  sed -n '/^| rate/,$p' "$out/sweep.md" 2> /dev/null
  echo
  echo "transformers batched generate on the same requests (all present at once, as rate inf):"
  echo
  if [ -f "$out/hf.json" ]; then
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('%(engine)s: %(requests_per_second).2f req/s, %(output_tokens_per_second).1f useful output tok/s (%(seconds).1f s)' % r)" "$out/hf.json"
  else
    echo "(no result: see hf.err)"
  fi
  echo
  echo "## Shared prefix (1024-token system prompt, 64-token prompts, 64 outputs, 100 requests at once)"
  echo
  echo "prefix caching on:"
  echo
  sed -n '/^| rate/,$p' "$out/prefix-cache-on.md" 2> /dev/null
  echo
  echo "prefix caching off (--no-prefix-caching):"
  echo
  sed -n '/^| rate/,$p' "$out/prefix-cache-off.md" 2> /dev/null
  echo
  echo "## Commands"
  echo
  sed 's/^/    /' "$commands"
} > "$report"
cat "$report"
