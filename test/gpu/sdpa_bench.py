#!/usr/bin/env python3
"""Times torch SDPA on the shapes attention-check times, and prints both.

python3 sdpa_bench.py [--ours check.json] [--json sdpa.json]

Causal bf16 prefill, head dim 128, 32 query heads, 8 and 32 kv heads, as
8 x 4096 and 2 x 16384 tokens; FLOPs counted as 4 * T^2 * D * Hq / 2 per
sequence (what attention-check counts). SDPA's flash backend is the bar
(issue 5); cuDNN's is printed when torch has it, for context. The table of
our kernels (from attention-check --json) against SDPA comes last.
"""

import argparse
import json
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [("causal 8x4k", 8, 4096), ("causal 2x16k", 2, 16384)]
HEADS, DIM = 32, 128


def time_ms(fn, warmup=3, iters=15):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def sdpa(backend, q, k, v):
    """Runs SDPA with one backend; GQA natively when the backend takes it,
    else with K and V repeated to the query heads."""
    group = q.shape[1] // k.shape[1]
    with sdpa_kernel(backend):
        try:
            F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           enable_gqa=group > 1)
            return (lambda: F.scaled_dot_product_attention(
                q, k, v, is_causal=True, enable_gqa=group > 1)), "native"
        except RuntimeError:
            pass
    kr = k.repeat_interleave(group, dim=1)
    vr = v.repeat_interleave(group, dim=1)

    def run():
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, kr, vr, is_causal=True)

    run()
    return run, "repeated kv"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ours", help="attention-check --json output")
    parser.add_argument("--json", help="write the SDPA numbers here")
    args = parser.parse_args()

    device = torch.cuda.get_device_name()
    print(f"torch {torch.__version__} on {device}")
    rows = []
    for label, batch, tokens in SHAPES:
        for kv_heads in (8, 32):
            gen = torch.Generator(device="cuda").manual_seed(0)
            q = torch.randn(batch, HEADS, tokens, DIM, device="cuda",
                            dtype=torch.bfloat16, generator=gen)
            k = torch.randn(batch, kv_heads, tokens, DIM, device="cuda",
                            dtype=torch.bfloat16, generator=gen)
            v = torch.randn_like(k)
            flops = 4.0 * tokens * tokens * DIM * HEADS / 2 * batch
            for name, backend in (("flash", SDPBackend.FLASH_ATTENTION),
                                  ("cudnn", SDPBackend.CUDNN_ATTENTION)):
                try:
                    fn, how = sdpa(backend, q, k, v)
                    ms = time_ms(fn)
                    tflops = flops / (ms * 1e-3) / 1e12
                    print(f"sdpa {name:5s} {label:13s} kv {kv_heads:2d}: "
                          f"{ms:8.3f} ms {tflops:6.1f} TFLOP/s ({how})")
                    rows.append({"backend": name, "case": label,
                                 "hkv": kv_heads, "ms": ms,
                                 "tflops": tflops, "gqa": how})
                except RuntimeError as e:
                    print(f"sdpa {name} {label} kv {kv_heads}: "
                          f"unavailable ({str(e).splitlines()[0][:80]})")
            del q, k, v
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "torch": torch.__version__,
                       "results": rows}, f, indent=1)

    if not args.ours:
        return
    with open(args.ours) as f:
        ours = [r for r in json.load(f)["results"] if r["bench"]]
    print("\n== flash_attention vs SDPA (bf16 causal, d128, 32 heads, "
          "TFLOP/s) ==")
    print(f"{'shape':13s} {'kv':>3s} {'variant':16s} {'ours':>7s} "
          f"{'sdpa-flash':>10s} {'ratio':>6s} {'sdpa-cudnn':>10s} {'ok':>3s}")
    for r in ours:
        ref = {x["backend"]: x["tflops"] for x in rows
               if x["case"] == r["case"] and x["hkv"] == r["hkv"]}
        flash, cudnn = ref.get("flash"), ref.get("cudnn")
        ratio = f"{r['tflops'] / flash:6.2f}" if flash else "     -"
        print(f"{r['case']:13s} {r['hkv']:3d} {r['variant']:16s} "
              f"{r['tflops']:7.1f} {flash or 0:10.1f} {ratio} "
              f"{cudnn or 0:10.1f} {'yes' if r['pass'] else 'NO':>3s}")


if __name__ == "__main__":
    main()
