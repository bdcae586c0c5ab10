//===- TfmOps.td - tfm operations --------------------------*- tablegen -*-===//
//
// High-level ops first, then the primitives a decomposed graph is made of.
// Unless an op says otherwise, arithmetic is done in f32 and rounded to the
// result element type once, the way Hugging Face transformers computes in
// bf16/f16.
//
//===----------------------------------------------------------------------===//

#ifndef TFM_OPS
#define TFM_OPS

include "dialects/Tfm/IR/TfmBase.td"
include "dialects/Tfm/IR/TfmAttrs.td"
include "dialects/Tfm/IR/TfmTypes.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/IR/BuiltinAttributes.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

def Tfm_FloatTensor : RankedTensorOf<[AnyFloat]>;
def Tfm_IndexTensor : RankedTensorOf<[I32, I64]>;

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

def Tfm_WeightOp : Tfm_Op<"weight", [
    Symbol, HasParent<"::mlir::ModuleOp">,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "Declares a weight tensor held by the weight store";
  let description = [{
    A weight is a symbol naming a tensor in the weight store; the IR holds its
    type, never its data. Without `concat` or `derived_from`, the symbol name is
    the name of the tensor in the imported checkpoint. With `concat`, the
    weight is the concatenation of other weights along dimension `dim`,
    computed lazily by the weight store when the artifact is written (fused
    projections). With `derived_from`, a pass computed the weight from the one it
    names (quantized values, scales and zero points, or a norm weight that
    absorbed smoothing factors) and left the data in the weight store.

    ```mlir
    tfm.weight @model.layers.0.self_attn.q_proj.weight : tensor<384x384xbf16>
    tfm.weight @model.layers.0.self_attn.qkv_proj.weight : tensor<640x384xbf16>
        = concat [@model.layers.0.self_attn.q_proj.weight,
                  @model.layers.0.self_attn.k_proj.weight,
                  @model.layers.0.self_attn.v_proj.weight] dim 0
    tfm.weight @model.layers.0.self_attn.qkv_proj.weight.q4 : tensor<640x384xi4>
        derived_from @model.layers.0.self_attn.qkv_proj.weight
    ```
  }];
  let arguments = (ins
    SymbolNameAttr:$sym_name,
    TypeAttrOf<AnyStaticShapeTensor>:$type,
    OptionalAttr<FlatSymbolRefArrayAttr>:$concat,
    OptionalAttr<I64Attr>:$dim,
    OptionalAttr<FlatSymbolRefAttr>:$derived
  );
  let assemblyFormat = [{
    $sym_name `:` $type (`=` `concat` $concat^ `dim` $dim)?
    (`derived_from` $derived^)? attr-dict
  }];
  let extraClassDeclaration = [{
    ::mlir::RankedTensorType getTensorType() {
      return ::llvm::cast<::mlir::RankedTensorType>(getType());
    }
  }];
  let hasVerifier = 1;
}

def Tfm_GetWeightOp : Tfm_Op<"get_weight", [
    Pure, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "Reads a weight declared by tfm.weight";
  let description = [{
    ```mlir
    %w = tfm.get_weight @model.norm.weight : tensor<384xbf16>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$name);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// High-level ops
//===----------------------------------------------------------------------===//

def Tfm_EmbedOp : Tfm_Op<"embed", [Pure]> {
  let summary = "Looks up token embeddings";
  let description = [{
    `result[t, :] = table[ids[t], :]`. Ids outside `[0, vocab)` are an error
    the runtime reports before it runs the graph.
  }];
  let arguments = (ins Tfm_IndexTensor:$ids, Tfm_FloatTensor:$table);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $ids `,` $table attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_RMSNormOp : Tfm_Op<"rms_norm", [Pure]> {
  let summary = "Root-mean-square normalisation over the last dimension";
  let description = [{
    `y = round(x * rsqrt(mean(x^2) + eps)) * weight`: the statistics and the
    scaling are computed in f32, rounded to the element type of `input`, then
    multiplied by `weight` (as Llama's reference implementation does).
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_FloatTensor:$weight,
                       F64Attr:$eps);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight `eps` $eps attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_LinearOp : Tfm_Op<"linear", [Pure]> {
  let summary = "y = x W^T (+ bias), W in [out_features, in_features]";
  let description = [{
    The weight keeps the checkpoint's `[out_features, in_features]` layout.
    `bias`, when present, has `out_features` elements.

    ```mlir
    %y = tfm.linear %x, %w bias %b
        : (tensor<?x384xbf16>, tensor<384x384xbf16>, tensor<384xbf16>)
        -> tensor<?x384xbf16>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_FloatTensor:$weight,
                       Optional<Tfm_FloatTensor>:$bias);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_QuantizedLinearOp : Tfm_Op<"quantized_linear", [Pure]> {
  let summary = "y = x W^T with W stored quantized (tfm-quantize)";
  let description = [{
    `values`, `scales` and `zeros` are the stored arrays of W
    `[out_features, in_features]` (runtime/core/QuantizedWeights.h,
    docs/quantization.md):
    - `values` i4 (codes 0 to 15): `scales` f16 `[N, K / G]` for groups of G
      input features, `zeros` ui8 of the same shape for asymmetric groups
      (without them the zero point is 8); `w = s (q - z)`;
    - `values` i8: `scales` f32 `[N, 1]`; `w = s q`;
    - `values` f8E4M3FN: `scales` f32 `[N, 1]` or `[1, 1]`; `w = s q`.
    `activations` says how the input rows are quantized first: not at all
    (weight-only), to int8 with one scale a token (W8A8, i8 values), or to
    fp8 e4m3 with one scale for the step (`fp8_dynamic`) or the fixed
    `activation_scale` from calibration (`fp8_static`), fp8 values.

    ```mlir
    %y = tfm.quantized_linear %x, %q scales %s zeros %z
        : (tensor<?x384xbf16>, tensor<640x384xi4>, tensor<640x3xf16>,
           tensor<640x3xui8>) -> tensor<?x640xbf16>
    %y = tfm.quantized_linear %x, %q scales %s activations int8_per_token
        : (tensor<?x384xbf16>, tensor<640x384xi8>, tensor<640x1xf32>)
        -> tensor<?x640xbf16>
    ```
  }];
  let arguments = (ins
    Tfm_FloatTensor:$input,
    RankedTensorOf<[I<4>, I8, F8E4M3FN]>:$values,
    RankedTensorOf<[F16, F32]>:$scales,
    Optional<RankedTensorOf<[UI8]>>:$zeros,
    DefaultValuedAttr<Tfm_ActivationQuantAttr,
                      "::mlir::tfm::ActivationQuant::None">:$activations,
    OptionalAttr<F64Attr>:$activation_scale
  );
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $values `scales` $scales (`zeros` $zeros^)?
    (`activations` $activations^)? (`activation_scale` $activation_scale^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_RopeOp : Tfm_Op<"rope", [Pure]> {
  let summary = "Rotary position embedding (rotate-half form)";
  let description = [{
    Rotates pairs `(x[i], x[i + D/2])` of each head of `input`
    (`[tokens, heads, D]`) by `positions[t] * inv_freq[i]`, with
    `inv_freq[i] = theta^(-2i/D)`, optionally rescaled by `scaling`. The angle
    tables are computed in f32 and rounded to the element type of `input`
    before the rotation, as Hugging Face transformers does.
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_IndexTensor:$positions,
                       F64Attr:$theta,
                       OptionalAttr<Tfm_RopeScalingAttr>:$scaling);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $positions `theta` $theta (`scaling` $scaling^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_AttentionOp : Tfm_Op<"attention", [Pure]> {
  let summary = "Scaled dot-product attention with grouped key/value heads";
  let description = [{
    `query` is `[tokens, heads, D]`, `key` and `value` are
    `[tokens, kv_heads, D]` with `heads` a multiple of `kv_heads` (query head
    `h` reads key/value head `h / (heads / kv_heads)`: GQA, MQA when
    `kv_heads = 1`). Scores are `scale * q . k`; with `causal`, token `i`
    attends to tokens `j <= i`, and with `sliding_window = W` also only to
    `j > i - W`. The softmax is computed in f32.

    `kv_cache`, when present (set by `--tfm-kv-layout`), is the paged cache
    the keys and values go through when the model runs step by step: its
    block size and element type (the target's activation type; `f8E4M3FN`:
    fp8 e4m3 rounded to nearest even and saturated at 448; or `i8`: int8
    codes with one f32 scale per token and kv head after each row's codes);
    the code generator writes and reads the cache in that form.

    ```mlir
    %o = tfm.attention %q, %k, %v scale 1.250000e-01 causal
        kv_cache !tfm.kv_cache<layers = 6, kv_heads = 2, head_dim = 64,
                               block_size = 16, element_type = f8E4M3FN>
        : (tensor<?x6x64xbf16>, tensor<?x2x64xbf16>, tensor<?x2x64xbf16>)
        -> tensor<?x6x64xbf16>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$query, Tfm_FloatTensor:$key,
                       Tfm_FloatTensor:$value, F64Attr:$scale,
                       UnitAttr:$causal,
                       OptionalAttr<I64Attr>:$sliding_window,
                       OptionalAttr<TypeAttrOf<Tfm_KVCacheType>>:$kv_cache);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value `scale` $scale (`causal` $causal^)?
    (`sliding_window` $sliding_window^)? (`kv_cache` $kv_cache^)? attr-dict
    `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_SwiGLUOp : Tfm_Op<"swiglu", [Pure, SameOperandsAndResultType]> {
  let summary = "silu(gate) * up";
  let arguments = (ins Tfm_FloatTensor:$gate, Tfm_FloatTensor:$up);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$gate `,` $up attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Primitives
//===----------------------------------------------------------------------===//

def Tfm_MatmulOp : Tfm_Op<"matmul", [Pure]> {
  let summary = "Batched matrix product [..., M, K] x [..., K, N]";
  let description = [{
    Both operands have the same rank (at least 2) and equal leading (batch)
    dimensions. Accumulation is in f32.
  }];
  let arguments = (ins Tfm_FloatTensor:$lhs, Tfm_FloatTensor:$rhs);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

class Tfm_BroadcastBinaryOp<string mnemonic, string what>
    : Tfm_Op<mnemonic, [Pure]> {
  let summary = "Elementwise " # what # " with trailing broadcast of rhs";
  let description = [{
    The shape of `rhs` is the shape of `lhs` or a suffix of it; `rhs` is
    repeated over the leading dimensions of `lhs` (a bias over token rows).
  }];
  let arguments = (ins Tfm_FloatTensor:$lhs, Tfm_FloatTensor:$rhs);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_AddOp : Tfm_BroadcastBinaryOp<"add", "sum"> {
  let hasCanonicalizer = 1;
}
def Tfm_MulOp : Tfm_BroadcastBinaryOp<"mul", "product"> {
  let hasCanonicalizer = 1;
}

def Tfm_SiLUOp : Tfm_Op<"silu", [Pure, SameOperandsAndResultType]> {
  let summary = "x * sigmoid(x)";
  let arguments = (ins Tfm_FloatTensor:$input);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def Tfm_ScaleOp : Tfm_Op<"scale", [Pure, SameOperandsAndResultType]> {
  let summary = "Multiplies every element by a constant";
  let arguments = (ins Tfm_FloatTensor:$input, F64Attr:$factor);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$input `by` $factor attr-dict `:` type($result)";
  let hasFolder = 1;
}

def Tfm_CastOp : Tfm_Op<"cast", [Pure, SameOperandsAndResultShape]> {
  let summary = "Converts the element type (round to nearest even)";
  let arguments = (ins Tfm_FloatTensor:$input);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input attr-dict `:` type($input) `to` type($result)
  }];
  let hasFolder = 1;
}

def Tfm_SoftmaxOp : Tfm_Op<"softmax", [Pure, SameOperandsAndResultType]> {
  let summary = "Softmax along one dimension, computed in f32";
  let arguments = (ins Tfm_FloatTensor:$input, I64Attr:$dim);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$input `dim` $dim attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Tfm_CausalMaskOp : Tfm_Op<"causal_mask",
                              [Pure, SameOperandsAndResultType]> {
  let summary = "Sets future (and out-of-window) scores to -infinity";
  let description = [{
    Over the last two dimensions `[queries, keys]` of the scores, with query
    `i` at key position `i + keys - queries`: entries with key `j` after that
    position become -inf, and with `sliding_window = W` also entries with
    `j <= position - W`.
  }];
  let arguments = (ins Tfm_FloatTensor:$input,
                       OptionalAttr<I64Attr>:$sliding_window);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input (`sliding_window` $sliding_window^)? attr-dict `:` type($result)
  }];
  let hasVerifier = 1;
}

def Tfm_TransposeOp : Tfm_Op<"transpose", [Pure]> {
  let summary = "Permutes dimensions: result dim i is input dim perm[i]";
  let arguments = (ins AnyRankedTensor:$input,
                       DenseI64ArrayAttr:$permutation);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $input $permutation attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Tfm_ReshapeOp : Tfm_Op<"reshape", [Pure]> {
  let summary = "Reinterprets the shape in row-major order";
  let description = [{
    Either both shapes are static with equal element counts, or the leading
    dimension is kept (it may be dynamic: the token dimension) and the static
    trailing dimensions have equal products.
  }];
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Tfm_RepeatOp : Tfm_Op<"repeat", [Pure]> {
  let summary = "Repeats every slice along a dimension `times` times in place";
  let description = [{
    `result[..., i, ...] = input[..., i / times, ...]` along `dim`: each
    key/value head repeated for the query heads of its group.
  }];
  let arguments = (ins Tfm_FloatTensor:$input, I64Attr:$dim, I64Attr:$times);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input `dim` $dim `times` $times attr-dict `:` type($input) `->`
    type($result)
  }];
  let hasVerifier = 1;
}

def Tfm_SplitOp : Tfm_Op<"split", [Pure]> {
  let summary = "Splits a tensor into consecutive pieces along a dimension";
  let description = [{
    The sizes of the pieces are those of the results along `dim`; they add up
    to the input's size there. All other dimensions are equal.
  }];
  let arguments = (ins AnyRankedTensor:$input, I64Attr:$dim);
  let results = (outs Variadic<AnyRankedTensor>:$results);
  let assemblyFormat = [{
    $input `dim` $dim attr-dict `:` type($input) `->` type($results)
  }];
  let hasVerifier = 1;
}

#endif // TFM_OPS
