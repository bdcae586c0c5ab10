#!/usr/bin/env python3
"""Throughput of Hugging Face transformers' batched generate on a serving
workload: the baseline for bench/load_client.py (bench/run_serve_bench.sh).

usage: hf_serve_baseline.py CONFIG_JSON WORKLOAD_JSON [--batch 32]
                            [--compile] [--json OUT]

WORKLOAD_JSON is what `load_client.py --dump-workload` writes: each
request's prompt and output tokens, in arrival order. transformers has no
continuous batching, so requests go in arrival order in static batches of
--batch: prompts padded on the left to the batch's longest, and the whole
batch generating the batch's longest output (min_new_tokens = max_new_tokens:
nobody stops early, as the server's requests run with ignore_eos); a request's
useful tokens are its own output length. This is load_client.py's rate "inf"
(every request present at the start) served the way generate() can.

The model is LlamaForCausalLM built from CONFIG_JSON with random bf16 weights
on cuda (no download; the speed does not depend on the values), and the
prompts are random token ids of the stated lengths. --compile uses the
static cache with torch.compile. One untimed warm-up batch runs first.
Prints one JSON object: requests/s and useful output tokens/s over the whole
workload, and the time.
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("workload")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    if not torch.cuda.is_available():
        sys.exit("hf_serve_baseline.py: error: no CUDA device")
    with open(args.config) as f:
        config = LlamaConfig.from_dict(json.load(f))
    with open(args.workload) as f:
        requests = json.load(f)["requests"]
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    model.eval()
    pad = 0
    vocab = config.vocab_size

    def run_batch(batch):
        longest = max(r["prompt_tokens"] for r in batch)
        new_tokens = max(r["output_tokens"] for r in batch)
        ids = torch.full((len(batch), longest), pad, dtype=torch.long, device="cuda")
        mask = torch.zeros((len(batch), longest), dtype=torch.long, device="cuda")
        for row, r in enumerate(batch):
            n = r["prompt_tokens"]
            ids[row, longest - n:] = torch.randint(1, vocab, (n,), device="cuda")
            mask[row, longest - n:] = 1
        options = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       pad_token_id=pad)
        if args.compile:
            options["cache_implementation"] = "static"
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=mask, **options)

    if args.compile:
        model.forward = torch.compile(model.forward, mode="reduce-overhead")
    run_batch(requests[:min(args.batch, len(requests))])  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    for first in range(0, len(requests), args.batch):
        run_batch(requests[first:first + args.batch])
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    useful = sum(r["output_tokens"] for r in requests)
    result = {"engine": "transformers %s generate, static batches of %d%s" % (
                  transformers.__version__, args.batch, ", static cache + torch.compile" if args.compile else ""),
              "device": torch.cuda.get_device_name(),
              "requests": len(requests), "seconds": seconds,
              "requests_per_second": len(requests) / seconds,
              "output_tokens_per_second": useful / seconds,
              "mean_prompt_tokens": sum(r["prompt_tokens"] for r in requests) / len(requests),
              "mean_output_tokens": useful / len(requests)}
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
