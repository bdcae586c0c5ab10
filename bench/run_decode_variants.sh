#!/usr/bin/env bash
# Batch-1 decode of several artifacts side by side in one device call, and
# what each group of commands costs inside a step (CUDA graphs and early
# launches leave no per-command timing: OPTMLIR_CUDA_SKIP leaves the named
# commands out, METHOD.md's "leave one stage out"; the results of such runs
# are wrong and only their time counts).
#   bash bench/run_decode_variants.sh [carry]
# Runs `optrun bench --batch 1` on every carry/variants/*.optpkg (prompt 128,
# 256 new tokens, median of 3), then, on the artifacts whose name contains
# $DECODE_SKIP_ON (default "new"), once more for each entry of $DECODE_SKIPS
# (entries separated by ';', each an OPTMLIR_CUDA_SKIP value: comma-separated
# pieces of command names). Writes $OUT/variants.md and the raw JSON packed
# in $OUT/variants-raw.tar.gz.
set -uo pipefail
carry=${1:-carry}
out=${OUT:-/tmp/decode-variants}/variants
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$carry/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
optrun=$carry/bin/optrun
skip_on=${DECODE_SKIP_ON:-new}
IFS=';' read -r -a skips <<< "${DECODE_SKIPS:-}"
run() { # label artifact [skip]
  OPTMLIR_CUDA_SKIP=${3:-} timeout 150 "$optrun" bench "$2" --batch 1 --prefill 16 \
    --format json > "$out/$1.json" 2> "$out/$1.err" ||
    echo "$1: exit $? $(tail -1 "$out/$1.err")"
}
for artifact in "$carry"/variants/*.optpkg; do
  name=$(basename "$artifact" .optpkg)
  run "$name" "$artifact"
  [[ $name == *"$skip_on"* ]] || continue
  for skip in "${skips[@]}"; do
    [ -n "$skip" ] && run "$name~skip~${skip//,/+}" "$artifact" "$skip"
  done
done
python3 - "$out" <<'PY' | tee "$out/../variants.md"
import glob, json, os, sys
out = sys.argv[1]
rows = {}
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(path)[:-5]
    try:
        d = json.load(open(path))
        rows[name] = (d, d["decode"][0])
    except Exception:
        continue
print("| artifact | commands left out | tokens/s | ms per step | of roofline | "
      "step time saved by leaving them out |")
print("|---|---|---:|---:|---:|---:|")
for name, (d, dec) in rows.items():
    base, _, skip = name.partition("~skip~")
    ms = dec["ms_per_step"]
    saved = "-"
    if skip and base in rows:
        saved = f"{1000 * (rows[base][1]['ms_per_step'] - ms):.1f} us"
    print(f"| {base} | {skip.replace('+', ', ') or '-'} | "
          f"{dec['tokens_per_second']:,.0f} | {ms:.4f} | "
          f"{100 * dec['tokens_per_second'] / dec['roofline_tokens_per_second']:.1f}% | "
          f"{saved} |")
first = next(iter(rows.values()), None)
if first:
    print(f"\nDevice: {first[0]['device']}; copy "
          f"{first[0]['copy_bytes_per_second'] / 1e9:,.0f} GB/s (read + write).")
PY
tar -C "$out" -czf "$out/../variants-raw.tar.gz" . && rm -rf "$out"
