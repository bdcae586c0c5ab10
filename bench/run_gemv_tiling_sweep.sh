#!/usr/bin/env bash
# Batch-1 decode of the same shapes compiled with several GEMV tilings
# (optc --gemv-tiling=WARPS/SPLITK), in one device call, with each variant's
# per-kernel profile (OPTMLIR_CUDA_PROFILE=1): what chooses the planner's
# default tiling. Run from the repository root with the folder that
# scripts/gpu-carry.sh prepared plus the variants (carry/tiling/NAME.TILE.optpkg,
# TILE as W-S), made by
#   for t in 4/4 8/8 ...; do optc compile --config bench/configs/NAME.json \
#     --random-weights --target=sm_90a --gemv-tiling=$t \
#     -o carry/tiling/NAME.${t/\//-}.optpkg; done
# Writes $OUT/tiling.md (the table) and $OUT/tiling-raw.tar.gz (the raw JSON
# and profiles: the device tool brings back few files).
set -uo pipefail
carry=${1:-carry}
out=${OUT:-/tmp/gemv-tiling}/tiling
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$carry/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
optrun=$carry/bin/optrun
for artifact in "$carry"/tiling/*.optpkg; do
  name=$(basename "$artifact" .optpkg)
  timeout 120 "$optrun" bench "$artifact" --batch 1 --prefill 16 --format json \
    > "$out/$name.json" 2> "$out/$name.err" || echo "$name: exit $? $(tail -1 "$out/$name.err")"
  # SWEEP_PROFILE=0 skips the profiles (half the time).
  [ "${SWEEP_PROFILE:-1}" = 0 ] || OPTMLIR_CUDA_PROFILE=1 timeout 120 "$optrun" bench \
    "$artifact" --batch 1 --decode-tokens 64 --repeat 1 --prefill 16 \
    > /dev/null 2> "$out/$name.profile.txt"
done
python3 - "$out" <<'PY' | tee "$out/../tiling.md"
import glob, json, os, re, sys
out = sys.argv[1]
print("| artifact | tiling | tokens/s | of roofline | GEMV us per call (T = 1, profiled) |")
print("|---|---|---:|---:|---|")
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(path)[:-5]
    try:
        d = json.load(open(path))["decode"][0]
    except Exception:
        continue
    gemvs = []
    prof = os.path.join(out, name + ".profile.txt")
    if os.path.exists(prof):
        for line in open(prof):
            m = re.search(r"([\d.]+) us/call\s+(gemv_n(\d+)_k(\d+)_t1_\S*|gemm 128256x\d+|gemm 32000x\d+|paged_attention\S*|rope\S*|argmax\S*)", line)
            if m:
                kernel = m.group(2)
                label = (f"n{m.group(3)}_k{m.group(4)}" if kernel.startswith("gemv")
                         else kernel.split("_")[0])
                gemvs.append(f"{label}: {m.group(1)}")
    model, tile = name.rsplit(".", 1)
    print(f"| {model} | {tile} | {d['tokens_per_second']:,.0f} | "
          f"{100 * d['tokens_per_second'] / d['roofline_tokens_per_second']:.1f}% | "
          f"{'; '.join(gemvs)} |")
PY
tar -C "$out" -czf "$out/../tiling-raw.tar.gz" . && rm -rf "$out"
