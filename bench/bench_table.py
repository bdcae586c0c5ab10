#!/usr/bin/env python3
"""Writes the result table of bench/run_gpu_bench.sh from the JSON it left in
OUT_DIR (optrun-<model>.json, hf-<model>.jsonl, commands.txt,
nvidia-smi.txt) to OUT_DIR/<date>-<device>-bench.md, and prints it.

usage: bench_table.py OUT_DIR
"""
import datetime
import json
import os
import re
import sys

MODELS = [
    ("main", "main reference model (../shared/models/main, trained weights)"),
    ("llama-3.2-1b", "Llama-3.2-1B shape (random weights)"),
    ("llama-2-7b", "Llama-2-7B shape (random weights)"),
]


def unread(ours):
    """What of the weights a decode step does not read (an untied embedding
    table), as a clause; empty for older results."""
    skip = ours.get("unread_embedding_bytes", 0)
    return f" ({skip / 1e9:.3f} GB of them an embedding table a decode step reads a row of)" if skip else ""


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_hf(path):
    meta, runs = None, {}
    try:
        with open(path) as f:
            for line in f:
                try:
                    item = json.loads(line)
                except ValueError:
                    continue  # a warning printed to stdout
                if "meta" in item:
                    meta = item["meta"]
                elif "mode" in item:
                    runs[(item["mode"], item["batch"])] = item
    except OSError:
        pass
    return meta, runs


def rate(value):
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def hf_rate(runs, mode, batch):
    run = runs.get((mode, batch))
    if run is None:
        return None, "not run"
    if "error" in run:
        return None, run["error"]
    return run["decode_tokens_per_second"], ""


def main():
    out = sys.argv[1]
    lines = []
    device = ""
    smi = os.path.join(out, "nvidia-smi.txt")
    if os.path.exists(smi):
        device = open(smi).read().strip()
    date = datetime.datetime.now(datetime.timezone.utc)
    lines += [f"# optrun bench against transformers, {device.split(',')[0]}", "",
              f"- Date: {date.strftime('%Y-%m-%d %H:%M UTC')}",
              f"- Device: {device}"]
    hf_meta = None
    notes = []
    for name, title in MODELS:
        ours = load_json(os.path.join(out, f"optrun-{name}.json"))
        meta, runs = load_hf(os.path.join(out, f"hf-{name}.jsonl"))
        hf_meta = hf_meta or meta
        tried = [os.path.exists(os.path.join(out, f))
                 for f in (f"optrun-{name}.err", f"hf-{name}.err")]
        if ours is None and not runs and not any(tried):
            continue  # not part of this run
        if not runs and tried[1]:
            why = open(os.path.join(out, f"hf-{name}.err")).read().strip()
            notes.append(f"{name}: transformers gave no result: "
                         f"{(why.splitlines() or ['(no output)'])[-1][:300]}")
        lines += ["", f"## {title}", ""]
        if ours is None:
            err = os.path.join(out, f"optrun-{name}.err")
            why = open(err).read().strip().splitlines()[-1:] if os.path.exists(err) else []
            lines.append(f"optrun bench gave no result: {why[0] if why else 'not run'}")
            lines.append("")
        else:
            lines.append(
                f"Ceilings measured by optrun: copy "
                f"{ours['copy_bytes_per_second'] / 1e9:,.0f} GB/s (read + write), "
                f"bf16 GEMM {ours['matmul_flops_per_second'] / 1e12:,.1f} TFLOP/s; "
                f"{ours['weight_bytes'] / 1e9:.3f} GB of weights"
                f"{unread(ours)}, "
                f"{ours['kv_bytes_per_token'] / 1024:.0f} KiB of KV per token. "
                f"Decode: prompt {ours['prompt_tokens']}, {ours['decode_tokens']} "
                f"new tokens, median of {ours['repeat']} after {ours['warmup']} "
                f"warm-up.")
            lines.append("")
        lines += ["| batch | optrun tokens/s | roofline tokens/s | of roofline "
                  "| HF eager | HF static + compile | optrun / HF compile |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        batches = [d["batch"] for d in ours["decode"]] if ours else sorted(
            {b for (_, b) in runs})
        for batch in batches:
            d = next((d for d in ours["decode"] if d["batch"] == batch), {}) \
                if ours else {}
            mine = d.get("tokens_per_second")
            roof = d.get("roofline_tokens_per_second")
            eager, eager_err = hf_rate(runs, "eager", batch)
            comp, comp_err = hf_rate(runs, "static-compile", batch)
            for label, err in (("eager", eager_err), ("static + compile", comp_err)):
                if err and err != "not run":
                    notes.append(f"{name} batch {batch} HF {label}: {err}")
            ratio = f"{mine / comp:.2f}x" if mine and comp else "-"
            share = f"{100 * mine / roof:.1f}%" if mine and roof else "-"
            cell = rate(mine) if mine else d.get("skipped", "-")
            lines.append(f"| {batch} | {cell} | {rate(roof)} | {share} | "
                         f"{rate(eager) if eager else '-'} | "
                         f"{rate(comp) if comp else '-'} | {ratio} |")
        if ours and ours["prefill"]:
            lines += ["", "| prefill tokens (one sequence) | optrun tokens/s "
                      "| roofline tokens/s | of GEMM peak |",
                      "|---:|---:|---:|---:|"]
            for p in ours["prefill"]:
                mine, roof = p.get("tokens_per_second"), p["roofline_tokens_per_second"]
                share = f"{100 * mine / roof:.1f}%" if mine and roof else "-"
                cell = rate(mine) if mine else p.get("skipped", "-")
                lines.append(f"| {p['tokens']} | {cell} | {rate(roof)} | {share} |")
    lines += ["", "Rooflines: decode = (the weight bytes a step reads (all, but of "
              "an untied embedding table only the batch's rows) + the KV cache "
              "of every sequence at its mean context) / measured copy "
              "bandwidth; prefill "
              "= (2 x linear parameters x tokens + 4 x layers x heads x head_dim "
              "x tokens^2 / 2) / measured bf16 GEMM peak (embedding and lm_head "
              "left out: the plan computes logits for the last row only). HF "
              "decode tokens/s = batch x (new - 1) / (time of generate(new) - "
              "time of generate(1))."]
    if hf_meta:
        lines.append(f"Transformers {hf_meta['transformers']}, torch "
                     f"{hf_meta['torch']}, compile via {hf_meta['compile']}, "
                     f"random bf16 weights.")
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    commands = os.path.join(out, "commands.txt")
    if os.path.exists(commands):
        lines += ["", "Commands (on the GPU machine, from the repository root, "
                  "`bash bench/run_gpu_bench.sh carry`):", "", "```"]
        lines += open(commands).read().strip().splitlines() + ["```"]
    text = "\n".join(lines) + "\n"
    slug = re.sub(r"[^a-z0-9]+", "-", device.split(",")[0].lower()).strip("-") or "gpu"
    with open(os.path.join(out, f"{date.strftime('%Y-%m-%d')}-{slug}-bench.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
