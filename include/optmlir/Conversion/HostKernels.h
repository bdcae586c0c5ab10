//===- HostKernels.h - Generators of the CPU kernels ------------*- C++ -*-===//
//
// Each generator builds one `func.func` over memrefs (scf, arith, math,
// memref and vector ops; `llvm.emit_c_interface` set) into a module, from the
// static sizes of a model, and returns its symbol name. The module is then
// compiled by optmlir/Target/HostCodegen.h, and the runtime calls
// `_mlir_ciface_NAME` with one MemRefDescriptor pointer per memref argument
// (runtime/host/MemRef.h), in the order written below.
//
// Conventions shared by all kernels:
//  - Everything is f32, computed in f32 (the CPU target keeps f32 weights).
//  - T, the number of packed tokens of a step, is dynamic (`?` below); model
//    sizes are static and baked in, and so are constants such as eps, the
//    RoPE frequencies, the attention scale and the sliding window.
//  - `[T, N]` arguments have the identity (contiguous row-major) layout: the
//    descriptor's offset must be 0 and its strides those of a dense array.
//    Arguments written `[T, N, D] (strided)` have the layout
//    `strided<[?, D, 1], offset: ?>`: any row stride and offset, so that q,
//    k and v may be views into the output of the fused QKV projection.
//  - Names encode the parameters, so building the same kernel twice returns
//    the existing function, and kernels of several shapes share a module.
//  - Index arguments (ids, positions, slots, block tables) are validated by
//    the runtime before the call; kernels assume them in range and never
//    clamp (a clamp would hide the runtime's bug as wrong numbers).
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_CONVERSION_HOSTKERNELS_H
#define OPTMLIR_CONVERSION_HOSTKERNELS_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"

#include <cstdint>
#include <string>
#include <vector>

namespace optmlir {
namespace hostkernels {

/// embed(ids: i32 [T], table: [V, H], out: [T, H])
///   out[t, :] = table[ids[t], :]. The runtime checks 0 <= ids[t] < V before
///   the call (tfm.embed: out-of-range ids are an error it reports).
mlir::FailureOr<std::string> buildEmbed(mlir::ModuleOp module,
                                        int64_t vocabSize, int64_t hidden);

/// gather_rows(x: [T, H], rows: i32 [R], out: [R, H])
///   out[r, :] = x[rows[r], :]: the rows whose logits a step computes. The
///   runtime checks 0 <= rows[r] < T beforehand.
mlir::FailureOr<std::string> buildGatherRows(mlir::ModuleOp module,
                                             int64_t hidden);

/// rms_norm(x: [T, H], weight: [H], out: [T, H])
///   out = (x * rsqrt(mean(x^2) + eps)) * weight per row, as HF's
///   LlamaRMSNorm. `out` may be `x` (in place).
mlir::FailureOr<std::string> buildRmsNorm(mlir::ModuleOp module, int64_t hidden,
                                          double eps);

/// add_rms_norm(x: [T, H], residual: [T, H] (in/out), weight: [H],
///              out: [T, H])
///   residual += x; out = rms_norm(residual): the residual-stream update
///   fused with the norm that follows it (one pass over the row less). `out`
///   may be `x`, not `residual`.
mlir::FailureOr<std::string> buildAddRmsNorm(mlir::ModuleOp module,
                                             int64_t hidden, double eps);

/// RoPE frequency scaling, with Hugging Face's meaning (see
/// #tfm.rope_scaling).
struct RopeScaling {
  enum class Kind { None, Linear, Llama3 };
  Kind kind = Kind::None;
  double factor = 1.0;
  double lowFreqFactor = 1.0;
  double highFreqFactor = 4.0;
  int64_t originalMaxPositionEmbeddings = 0;
};

/// The D/2 inverse frequencies theta^(-2i/D), rescaled as HF's
/// `_compute_default/linear/llama3_rope_parameters` do, computed in double.
/// The rope kernel uses them rounded to f32 (HF keeps inv_freq in f32).
std::vector<double> computeRopeInvFreq(int64_t headDim, double theta,
                                       const RopeScaling &scaling);

struct RopeParams {
  int64_t numHeads = 0;   // Hq
  int64_t numKvHeads = 0; // Hkv
  int64_t headDim = 0;    // D, even
  double theta = 10000.0;
  RopeScaling scaling;
};

/// A number as a piece of a kernel name: [0-9a-zA-Z] only ("1e-05" ->
/// "1em05", "0.125" -> "0p125"), so that names are C identifiers and PTX
/// entry names. `digits` keeps every bit of an f32 (9) or f64 (17).
std::string numberForName(double value, int digits);

/// The name of the rope kernel for `params` (host and GPU generators name
/// it alike); fails with an error on `module` for invalid parameters.
mlir::FailureOr<std::string> ropeKernelName(mlir::ModuleOp module,
                                            const RopeParams &params);


/// rope(q: [T, Hq, D] (strided, in/out), k: [T, Hkv, D] (strided, in/out),
///      positions: i32 [T])
///   Rotate-half RoPE in place: for i < D/2, with
///   a = f32(positions[t]) * f32(inv_freq[i]) (the f32 product HF forms),
///   (x[i], x[i + D/2]) <- (x[i] cos a - x[i + D/2] sin a,
///                          x[i + D/2] cos a + x[i] sin a).
///   cos/sin are of `a` reduced modulo 2*pi in double, so large positions
///   lose no accuracy.
mlir::FailureOr<std::string> buildRope(mlir::ModuleOp module,
                                       const RopeParams &params);

/// swiglu(gate_up: [T, 2I], out: [T, I])
///   out[t, i] = silu(gate_up[t, i]) * gate_up[t, I + i]: gate first, then
///   up, as the fused gate_up projection's split gives.
mlir::FailureOr<std::string> buildSwiGLU(mlir::ModuleOp module,
                                         int64_t intermediate);

/// swiglu_split(gate: [T, I], up: [T, I], out: [T, I])
///   out = silu(gate) * up. `out` may be `gate` or `up`.
mlir::FailureOr<std::string> buildSwiGLUSplit(mlir::ModuleOp module,
                                              int64_t intermediate);

/// add(a: [T, H] (in/out), b: [T, H])
///   a += b (the residual add).
mlir::FailureOr<std::string> buildAdd(mlir::ModuleOp module, int64_t hidden);

/// add_bias(x: [T, N] (in/out), bias: [N])
///   x[t, :] += bias: the bias of a linear layer after its matrix product.
mlir::FailureOr<std::string> buildAddBias(mlir::ModuleOp module,
                                          int64_t features);

/// How the KV cache stores its elements.
enum class KvElementType {
  /// The target's activation type: f32 on the host, bf16 on GPUs.
  Native,
  /// fp8 e4m3 (OCP "fn": max 448, no infinities) in one byte, without a
  /// scale: values are rounded to nearest even and saturate at +-448
  /// (vLLM's fp8 cache with a scale of 1). Host target only so far.
  F8E4M3,
  /// int8 codes with one f32 scale per token and kv head, stored after the
  /// row's head_dim codes (runtime/core/QuantizedWeights.h,
  /// encodeInt8KvRow). Host target only so far.
  Int8,
};

/// Shape of one layer's paged KV cache: key and value caches are each
/// [numBlocks, blockSize, numKvHeads, headDim] of `elementType` (f32 or
/// i8 bytes of fp8 e4m3 on the host), numBlocks dynamic.
struct KvCacheShape {
  int64_t numKvHeads = 0;
  int64_t headDim = 0;
  int64_t blockSize = 16;
  KvElementType elementType = KvElementType::Native;
};

/// What every generator of a kernel over the paged cache (host or GPU)
/// requires of a cache shape: positive sizes. Errors go to `module`,
/// starting with `who` ("host kernel", "gpu kernel").
mlir::LogicalResult checkKvCacheShape(mlir::ModuleOp module,
                                      const KvCacheShape &cache,
                                      llvm::StringRef who);

/// kv_write(k: [T, Hkv, D] (strided), v: [T, Hkv, D] (strided),
///          key_cache: [?, B, Hkv, D] (in/out), value_cache: [?, B, Hkv, D]
///          (in/out), slot_mapping: i32 [T])
///   For slot = slot_mapping[t] >= 0: key_cache[slot / B, slot % B] = k[t],
///   value_cache[...] = v[t]. A negative slot skips the token (padding, as
///   in vLLM). The runtime computes the slots (block * B + offset) and
///   guarantees slot < numBlocks * B.
mlir::FailureOr<std::string> buildKvWrite(mlir::ModuleOp module,
                                          const KvCacheShape &cache);

struct PagedAttentionParams {
  int64_t numHeads = 0; // Hq, a multiple of cache.numKvHeads (GQA)
  KvCacheShape cache;
  double scale = 0.0;        // usually 1/sqrt(D)
  int64_t slidingWindow = 0; // W > 0: keys j > pos - W only; 0: none
};

/// What every attention generator over the paged cache requires of its
/// parameters: checkKvCacheShape, a positive head count that is a multiple
/// of the kv head count, a window that is not negative.
mlir::LogicalResult checkPagedAttention(mlir::ModuleOp module,
                                        const PagedAttentionParams &params,
                                        llvm::StringRef who);

/// paged_attention(q: [T, Hq, D] (strided), key_cache: [?, B, Hkv, D],
///                 value_cache: [?, B, Hkv, D], query_start: i32 [S + 1],
///                 context_len: i32 [S], block_table: i32 [S, M],
///                 out: [T, Hq, D])
///   A ragged batch of S sequences (S = context_len's size): the queries of
///   sequence s are the packed tokens query_start[s] <= t < query_start[s+1]
///   (n_s of them), its context after this step (its cache, which already
///   holds this step's keys and values: call kv_write first) has
///   context_len[s] tokens, and its token j lives in block
///   block_table[s, j / B] at offset j % B. Query t is at position
///   pos = context_len[s] - n_s + (t - query_start[s]) and attends causally
///   to keys j <= pos (and j > pos - W with a sliding window); query head h
///   reads kv head h / (Hq / Hkv). Softmax of scale * q.k in f32 with the
///   online (flash) formulation, one cache block of scores at a time: only
///   the slots of keys in range are read. Tokens outside every
///   [query_start[s], query_start[s+1]) are not written.
///   The runtime guarantees: query_start nondecreasing within [0, T],
///   n_s <= context_len[s], and valid block ids for every j < context_len[s].
mlir::FailureOr<std::string>
buildPagedAttention(mlir::ModuleOp module, const PagedAttentionParams &params);

} // namespace hostkernels
} // namespace optmlir

#endif // OPTMLIR_CONVERSION_HOSTKERNELS_H
