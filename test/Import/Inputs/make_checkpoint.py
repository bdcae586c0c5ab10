#!/usr/bin/env python3
"""Writes a tiny Hugging Face checkpoint (config.json, safetensors, tokenizer)
for the importer's tests: a valid one per architecture, and malformed ones.

usage: make_checkpoint.py OUT_DIR VARIANT

Only the standard library: the tests must run on a bare machine.
"""
import json
import os
import struct
import sys

DTYPE_SIZE = {"BF16": 2, "F16": 2, "F32": 4}


def base_config(arch="LlamaForCausalLM"):
    return {
        "architectures": [arch],
        "vocab_size": 32,
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 4,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 0,
        "eos_token_id": 1,
    }


def tensors_for(cfg):
    """Name -> shape, as Hugging Face lays out a Llama-family checkpoint."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    d = cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    arch = cfg["architectures"][0]
    qkv_bias = arch == "Qwen2ForCausalLM" or cfg.get("attention_bias", False)
    out = {"model.embed_tokens.weight": [v, h], "model.norm.weight": [h]}
    if not cfg.get("tie_word_embeddings", False):
        out["lm_head.weight"] = [v, h]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out[p + "input_layernorm.weight"] = [h]
        out[p + "post_attention_layernorm.weight"] = [h]
        for name, rows in (("q", q), ("k", kv), ("v", kv)):
            out[p + f"self_attn.{name}_proj.weight"] = [rows, h]
            if qkv_bias:
                out[p + f"self_attn.{name}_proj.bias"] = [rows]
        out[p + "self_attn.o_proj.weight"] = [h, q]
        out[p + "mlp.gate_proj.weight"] = [i, h]
        out[p + "mlp.up_proj.weight"] = [i, h]
        out[p + "mlp.down_proj.weight"] = [h, i]
    return out


def safetensors_bytes(tensors, dtype="BF16", dtypes=None, patch=None):
    """tensors: name -> shape. patch(header) may corrupt the header dict."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        dt = (dtypes or {}).get(name, dtype)
        n = DTYPE_SIZE[dt]
        for s in shape:
            n *= s
        header[name] = {"dtype": dt, "shape": shape,
                        "data_offsets": [offset, offset + n]}
        offset += n
    if patch:
        patch(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    data = bytes((i * 37 + 11) & 0x7F for i in range(offset))
    return struct.pack("<Q", len(text)) + text + data


def tokenizer(vocab_size):
    vocab = {"<s>": 0, "</s>": 1}
    for i in range(2, vocab_size):
        vocab[chr(ord("a") + (i - 2) % 26) * (1 + (i - 2) // 26)] = i
    return {"version": "1.0", "added_tokens": [
        {"id": 0, "content": "<s>", "special": True},
        {"id": 1, "content": "</s>", "special": True}],
        "model": {"type": "BPE", "vocab": vocab, "merges": []}}


def write(out, cfg, blob=None, tok=None):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    if blob is not None:
        with open(os.path.join(out, "model.safetensors"), "wb") as f:
            f.write(blob)
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tok or tokenizer(cfg["vocab_size"]), f)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": {"content": "</s>"}}, f)


def write_sharded(out, cfg, missing_shard=False):
    tensors = tensors_for(cfg)
    names = list(tensors)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    write(out, cfg)
    weight_map = {}
    for k, shard in enumerate(shards):
        fname = f"model-0000{k + 1}-of-00002.safetensors"
        for n in shard:
            weight_map[n] = fname
        if missing_shard and k == 1:
            continue
        with open(os.path.join(out, fname), "wb") as f:
            f.write(safetensors_bytes({n: tensors[n] for n in shard}))
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


def main():
    out, variant = sys.argv[1], sys.argv[2]
    cfg = base_config()
    tensors = tensors_for(cfg)
    if variant == "llama":
        write(out, cfg, safetensors_bytes(tensors))
    elif variant == "llama3-rope":
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 32.0,
                               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192}
        write(out, cfg, safetensors_bytes(tensors))
    elif variant == "tied":
        cfg["tie_word_embeddings"] = True
        write(out, cfg, safetensors_bytes(tensors_for(cfg)))
    elif variant == "mistral":
        cfg = base_config("MistralForCausalLM")
        cfg["sliding_window"] = 16
        write(out, cfg, safetensors_bytes(tensors_for(cfg)))
    elif variant == "qwen2":
        cfg = base_config("Qwen2ForCausalLM")
        cfg["num_key_value_heads"] = 2  # MHA, and biases on q/k/v
        write(out, cfg, safetensors_bytes(tensors_for(cfg)))
    elif variant == "sharded":
        write_sharded(out, cfg)
    elif variant == "missing-shard":
        write_sharded(out, cfg, missing_shard=True)
    elif variant == "truncated":
        write(out, cfg, safetensors_bytes(tensors)[:-100])
    elif variant == "header-past-end":
        blob = safetensors_bytes(tensors)
        write(out, cfg, struct.pack("<Q", len(blob) * 4) + blob[8:])
    elif variant == "overlap":
        def patch(h):
            h["model.norm.weight"]["data_offsets"] = list(
                h["model.embed_tokens.weight"]["data_offsets"][:1]) + [16]
        write(out, cfg, safetensors_bytes(tensors, patch=patch))
    elif variant == "out-of-range":
        def patch(h):
            h["lm_head.weight"]["data_offsets"][1] += 1 << 20
        write(out, cfg, safetensors_bytes(tensors, patch=patch))
    elif variant == "shape-mismatch":
        tensors["model.layers.1.self_attn.k_proj.weight"] = [8, 8]
        write(out, cfg, safetensors_bytes(tensors))
    elif variant == "dtype-mismatch":
        write(out, cfg, safetensors_bytes(
            tensors, dtypes={"model.layers.0.mlp.up_proj.weight": "F32"}))
    elif variant == "missing-tensor":
        del tensors["model.layers.1.mlp.down_proj.weight"]
        write(out, cfg, safetensors_bytes(tensors))
    elif variant == "unknown-arch":
        cfg["architectures"] = ["GPT2LMHeadModel"]
        write(out, cfg, safetensors_bytes(tensors))
    elif variant == "unknown-rope":
        cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
        write(out, cfg, safetensors_bytes(tensors))
    elif variant == "bad-tokenizer":
        tok = tokenizer(cfg["vocab_size"])
        tok["model"]["vocab"]["zz"] = 999
        write(out, cfg, safetensors_bytes(tensors), tok)
    else:
        sys.exit(f"unknown variant {variant}")


if __name__ == "__main__":
    main()
