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
    keys and values of Llama models stay far inside that range) or `int8`
    (`i8`: int8 codes with one f32 scale per token and kv head, stored after
    the row's codes: a row is written once and never rescaled, and an outlier
    token costs only its own precision; head_dim + 4 bytes a row). The layout
    order is fixed (block, token, head, dim). The code generator writes and
    reads the cache in this form and the artifact records it. Attention ops
    whose key shapes differ are refused.
  }];
  let options = [
    Option<"blockSize", "block-size", "int64_t", "16",
           "Tokens per cache block (a power of two up to 1024)">,
    Option<"elementType", "element-type", "std::string", "\"native\"",
           "native, fp8e4m3 or int8">
  ];
}

//===----------------------------------------------------------------------===//
// Quantization
//===----------------------------------------------------------------------===//

def TfmQuantize : Pass<"tfm-quantize", "::mlir::ModuleOp"> {
  let summary = "Stores the linears' weights quantized (int4, int8, fp8)";
  let description = [{
    Replaces every `tfm.linear` whose weight is declared (and whose name
    `exclude` does not match) by a `tfm.quantized_linear` over new weights
    derived from it (`derived_from`), whose data the weight store computes
    now (docs/quantization.md):
    - `w4a16`: int4 codes in groups of `group-size` input features, f16
      scales, zero points unless `symmetric`; `method` `rtn` (round to
      nearest), `awq` (activation-aware per-channel scales, folded into the
      rms_norm or up projection that makes the input) or `gptq` (error
      compensation through the inputs' Hessian, `act-order` optional);
    - `w8a16`: int8 codes, one f32 scale a row (round to nearest);
    - `w8a8`: the same weights, and the input rows quantized to int8 with
      one scale a token; with `smooth`, SmoothQuant's factors first move the
      inputs' outlier channels into the weights (`smooth-alpha`, or chosen
      on the calibration sample when negative);
    - `fp8`: e4m3 codes with one scale a row (`fp8-weight-scale` `channel`)
      or for the matrix (`tensor`), the input rows in e4m3 with one scale a
      step (`fp8-activation-scale` `dynamic`) or the calibrated one
      (`static`).
    `awq`, `gptq`, `w8a8` and static fp8 read the calibration statistics
    `stats` (from `optc calibrate` on the same model; another model's are
    refused). Without weight data (a model compiled from a config with
    random weights) the rewrite is the same and no data is computed.
  }];
  let options = [
    Option<"scheme", "scheme", "std::string", "\"w4a16\"",
           "w4a16, w8a16, w8a8 or fp8">,
    Option<"method", "method", "std::string", "\"rtn\"",
           "w4a16: rtn, awq or gptq">,
    Option<"groupSize", "group-size", "int64_t", "128",
           "w4a16: input features a scale covers">,
    Option<"symmetric", "symmetric", "bool", "false",
           "w4a16: no zero points (z = 8)">,
    Option<"actOrder", "act-order", "bool", "false",
           "gptq: quantize columns in order of decreasing Hessian diagonal">,
    Option<"smooth", "smooth", "bool", "true",
           "w8a8: SmoothQuant's factors before quantizing">,
    Option<"smoothAlpha", "smooth-alpha", "double", "-1.0",
           "w8a8: migration strength in [0, 1]; negative: chosen per layer "
           "on the calibration sample">,
    Option<"fp8WeightScale", "fp8-weight-scale", "std::string", "\"channel\"",
           "fp8: channel or tensor">,
    Option<"fp8ActivationScale", "fp8-activation-scale", "std::string",
           "\"dynamic\"", "fp8: dynamic or static">,
    Option<"exclude", "exclude", "std::string",
           "\"^lm_head\\\\.|embed_tokens\"",
           "Weights whose name matches this regex stay unquantized">,
    Option<"stats", "stats", "std::string", "\"\"",
           "Calibration statistics (optc calibrate)">
  ];
}

#endif // OPTMLIR_PASSES
