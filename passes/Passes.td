//===- Passes.td - tfm graph passes ------------------------*- tablegen -*-===//

#ifndef OPTMLIR_PASSES
#define OPTMLIR_PASSES

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// Decomposition and fusion of ops
//===----------------------------------------------------------------------===//

def TfmDecompose : Pass<"tfm-decompose"> {
  let summary = "Rewrites high-level tfm ops into tfm primitives";
  let description = [{
    `tfm.attention` becomes transposes, key/value head repetition (GQA),
    matmuls, a scale, a causal mask and a softmax; `tfm.linear` becomes a
    transpose of the weight, a matmul and a bias add; `tfm.swiglu` becomes
    silu and mul. `--tfm-fuse-attention` followed by `--canonicalize` gives
    the original graph back.
  }];
  let options = [
    ListOption<"ops", "ops", "std::string",
               "Which ops to decompose (attention, linear, swiglu); all when "
               "empty">
  ];
}

def TfmFuseAttention : Pass<"tfm-fuse-attention"> {
  let summary = "Recognises decomposed attention and rebuilds tfm.attention";
  let description = [{
    Matches softmax(mask(scale * Q K^T)) V over head-major transposed
    operands, with optional key/value head repetition (GQA/MQA), an optional
    causal mask (with or without a sliding window) and the scale, and
    replaces it with one `tfm.attention`.
  }];
}

def TfmFuseGateUp : Pass<"tfm-fuse-gate-up", "::mlir::ModuleOp"> {
  let summary = "Merges the gate and up projections of SwiGLU into one linear";
  let description = [{
    Where both operands of a `tfm.swiglu` are linears of the same input with
    declared weights, they become one linear over a new weight that
    concatenates the two (lazily, in the weight store) and a `tfm.split`.
  }];
}

def TfmFuseQKV : Pass<"tfm-fuse-qkv", "::mlir::ModuleOp"> {
  let summary = "Merges the query, key and value projections into one linear";
  let description = [{
    Where query, key and value of a `tfm.attention` come (through reshapes
    and rotary embedding) from linears of the same input with declared
    weights, they become one linear over a new weight (and bias) that
    concatenates the three lazily in the weight store, and a `tfm.split`.
  }];
}

//===----------------------------------------------------------------------===//
// The KV cache
//===----------------------------------------------------------------------===//

def TfmKvLayout : Pass<"tfm-kv-layout", "::mlir::ModuleOp"> {
  let summary = "Chooses the paged KV cache's block size and element type";
  let description = [{
    Gives every `tfm.attention` of the module the same `kv_cache`: a
    `!tfm.kv_cache` with the model's layer count (the number of attention
    ops), the key's kv heads and head dim, `block-size` tokens per block and
    the element type `element-type` names: `native` (the model's activation
    type, which each target stores as its own: f32 on the CPU, bf16 on GPUs)
    or `fp8e4m3` (one byte per element, `f8E4M3FN`: rounded to nearest even
    and saturated at 448 without a scale, as vLLM's fp8 cache with scale 1;
    keys and values of Llama models stay far inside that range). The layout
    order is fixed (block, token, head, dim). The code generator writes and
    reads the cache in this form and the artifact records it. Attention ops
    whose key shapes differ are refused.
  }];
  let options = [
    Option<"blockSize", "block-size", "int64_t", "16",
           "Tokens per cache block (a power of two up to 1024)">,
    Option<"elementType", "element-type", "std::string", "\"native\"",
           "native or fp8e4m3">
  ];
}

#endif // OPTMLIR_PASSES
