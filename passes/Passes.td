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

#endif // OPTMLIR_PASSES
