#!/usr/bin/env python3
"""Decode throughput of Hugging Face transformers on a Llama-family shape, the
baseline that `optrun bench` is compared with (bench/run_gpu_bench.sh).

usage: hf_baseline.py CONFIG_JSON [--batch 1,8,32,128] [--prompt-tokens 128]
                      [--new-tokens 256] [--repeat 3] [--modes eager,static-compile]
                      [--json OUT]

The model is LlamaForCausalLM built from CONFIG_JSON with random weights
(bf16, cuda): no download, and decode speed does not depend on the values.
Modes:
  eager           the default dynamic cache, no compilation;
  static-compile  cache_implementation="static" with torch.compile (through
                  generate's own compile step where this transformers version
                  has one, else model.forward compiled with reduce-overhead).
Decode tokens/s = batch x (new_tokens - 1) / (time of generate(new_tokens) -
time of generate(1)): the prompt's prefill and the first token are taken out,
so the figure is comparable with optrun bench's decode steps. Each is the
median of --repeat timed runs after one untimed warm-up (which compiles).
"""
import argparse
import json
import statistics
import sys
import time


def parse_sizes(text):
    return [int(x) for x in text.split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--batch", default="1,8,32,128")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--modes", default="eager,static-compile")
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if not torch.cuda.is_available():
        sys.exit("hf_baseline.py: error: no CUDA device")
    # One compiled graph per batch size: keep them all rather than falling
    # back to eager after the default recompile limit.
    for name in ("cache_size_limit", "recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 256)

    with open(args.config) as f:
        config = LlamaConfig.from_dict(json.load(f))
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model = model.to(device="cuda", dtype=torch.bfloat16).eval()
    vocab = config.vocab_size
    # generate's own compile step (transformers >= 4.48) uses the compiled
    # forward for decoding with a static cache.
    auto_compile = hasattr(GenerationConfig(), "compile_config")

    meta = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "config": args.config,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "repeat": args.repeat,
        "compile": ("generate's compile_config" if auto_compile
                    else "torch.compile(model.forward, reduce-overhead)"),
    }
    # One JSON line per result as it comes: a run cut off by a time limit
    # keeps what it measured.
    print(json.dumps({"meta": meta}), flush=True)
    results = dict(meta, runs=[])

    def generate(ids, new_tokens, static):
        kwargs = dict(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
        if static:
            kwargs["cache_implementation"] = "static"
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**kwargs)
        torch.cuda.synchronize()
        assert out.shape[1] == ids.shape[1] + new_tokens, out.shape
        return time.perf_counter() - start

    for mode in args.modes.split(","):
        static = mode == "static-compile"
        if mode not in ("eager", "static-compile"):
            sys.exit(f"hf_baseline.py: error: unknown mode {mode!r}")
        if static and not auto_compile:
            model.forward = torch.compile(model.forward, mode="reduce-overhead",
                                          fullgraph=True)
        for batch in parse_sizes(args.batch):
            run = {"mode": mode, "batch": batch}
            try:
                ids = torch.randint(0, vocab, (batch, args.prompt_tokens),
                                    device="cuda")
                started = time.perf_counter()
                generate(ids, args.new_tokens, static)  # warm-up, compiles
                generate(ids, 1, static)
                run["warmup_s"] = time.perf_counter() - started
                full = [generate(ids, args.new_tokens, static)
                        for _ in range(args.repeat)]
                first = [generate(ids, 1, static) for _ in range(args.repeat)]
                decode_s = statistics.median(full) - statistics.median(first)
                run["generate_s"] = statistics.median(full)
                run["prefill_and_first_s"] = statistics.median(first)
                run["decode_tokens_per_second"] = (
                    batch * (args.new_tokens - 1) / decode_s if decode_s > 0
                    else 0.0)
            except Exception as e:  # keep the other figures (e.g. out of memory)
                run["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                torch.cuda.empty_cache()
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
        if static and not auto_compile:
            model.forward = model.forward._orig_mod \
                if hasattr(model.forward, "_orig_mod") else model.forward
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
