//===- GpuKernels.h - Generators of the NVIDIA GPU kernels ------*- C++ -*-===//
//
// Each generator builds one `gpu.func` kernel into the gpu.module
// `optmlir_kernels` of a ModuleOp (created on first use; the ModuleOp gets
// `gpu.container_module`), from the static sizes of a model, and returns its
// name and launch rule. The module is compiled to PTX (and cubin) by
// optmlir/Target/NvptxCodegen.h; the runtime loads it with cuModuleLoadData
// and launches each entry with cuLaunchKernel. The kernels have the
// semantics of the CPU kernels of the same name (HostKernels.h), with the
// same argument order, plus trailing scalars.
//
// ABI (what cuLaunchKernel's `kernelParams` must point at, in order):
//  - Tensor arguments are plain device pointers (`.param .u64`, an 8-byte
//    CUdeviceptr), global address space, to dense row-major arrays unless a
//    row stride is passed. Activations, weights and the KV cache are bf16;
//    index arrays (ids, positions, slots, query_start, context_len, block
//    table, rows) are i32. Every pointer must be 16-byte aligned, and every
//    row stride a multiple of 8 elements, whenever the kernel uses 16-byte
//    vectors (the inner size is a multiple of 8: all Llama shapes); see
//    GpuKernel::vectorWidth.
//  - Then the scalars, each a 4-byte i32 (`.param .u32`): first the row
//    count (T tokens, or R gathered rows), then the others listed per kernel.
//  - Math is f32 (loads extend bf16 to f32, stores round to nearest even).
//  - The block size is fixed at generation time (`blockX`; the PTX carries
//    it as `.reqntid`, so a launch with another block size fails) and no
//    kernel uses dynamic shared memory.
//  - Blocks whose row index is >= the row-count argument return at once,
//    so the runtime may launch a grid sized for a larger bucket than the
//    step (CUDA graph replay) and pass the true count.
//  - Names encode the parameters (as on the CPU), so kernels of several
//    shapes share a module and building one twice returns the same kernel.
//  - Index arguments are validated by the runtime; kernels never clamp.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_CONVERSION_GPUKERNELS_H
#define OPTMLIR_CONVERSION_GPUKERNELS_H

#include "optmlir/Conversion/HostKernels.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"

#include <cstdint>
#include <string>
#include <vector>

namespace optmlir {
namespace gpukernels {

/// The gpu.module every generator writes into.
constexpr const char *kGpuModuleName = "optmlir_kernels";

/// How a kernel is launched for a step with `rows` rows (T tokens; R rows
/// for gather_rows): grid = (gridXPerRow * ceil(rows / rowsPerBlock) +
/// gridXFixed, gridY, 1),
/// block = (blockX, 1, 1), dynamic shared memory dynamicSharedBytes.
struct LaunchRule {
  int64_t gridXPerRow = 1;
  int64_t gridXFixed = 0;
  int64_t gridY = 1;
  int64_t blockX = 0;
  int64_t dynamicSharedBytes = 0;
  /// Rows (tokens) one block covers along x: tiled kernels (flash
  /// attention) take several.
  int64_t rowsPerBlock = 1;

  int64_t gridX(int64_t rows) const {
    return gridXPerRow * ((rows + rowsPerBlock - 1) / rowsPerBlock) +
           gridXFixed;
  }
};

/// One kernel parameter, in launch order.
struct KernelArg {
  enum class Kind { Pointer, I32 };
  std::string name;
  Kind kind;
};

/// What a generator returns: the entry name in the PTX, its launch rule and
/// its parameters (documentation the runtime can check its wiring against).
struct GpuKernel {
  std::string name;
  LaunchRule launch;
  std::vector<KernelArg> args;
  /// Elements per vector access of the bf16 rows (8 = 16-byte accesses).
  int64_t vectorWidth = 1;
};

/// embed(ids: i32 [T], table: [V, H], out: [T, H], T)
///   grid T, one block per token.
mlir::FailureOr<GpuKernel> buildEmbed(mlir::ModuleOp module, int64_t vocabSize,
                                      int64_t hidden);

/// gather_rows(x: [?, H], rows: i32 [R], out: [R, H], R)
///   grid R, one block per gathered row.
mlir::FailureOr<GpuKernel> buildGatherRows(mlir::ModuleOp module,
                                           int64_t hidden);

/// argmax_rows(logits: [R, V], out: i32 [R], R)
///   out[r] = the id of row r's largest logit, the lowest id among equal
///   ones (NaN never wins; 0 when nothing exceeds -inf), as the host
///   sampler's greedy choice. grid R.
mlir::FailureOr<GpuKernel> buildArgmaxRows(mlir::ModuleOp module,
                                           int64_t vocabSize);

/// rms_norm(x: [T, H], weight: [H], out: [T, H], T)
///   grid T; `out` may be `x`.
mlir::FailureOr<GpuKernel> buildRmsNorm(mlir::ModuleOp module, int64_t hidden,
                                        double eps);

/// add_rms_norm(x: [T, H], residual: [T, H] (in/out), weight: [H],
///              out: [T, H], T)
///   residual += x (rounded to bf16, as stored); out = rms_norm(residual).
///   grid T; `out` may be `x`.
mlir::FailureOr<GpuKernel> buildAddRmsNorm(mlir::ModuleOp module,
                                           int64_t hidden, double eps);

/// add(a: [T, H] (in/out), b: [T, H], T): a += b. grid T.
mlir::FailureOr<GpuKernel> buildAdd(mlir::ModuleOp module, int64_t hidden);

/// add_bias(x: [T, N] (in/out), bias: [N], T): x[t, :] += bias. grid T.
mlir::FailureOr<GpuKernel> buildAddBias(mlir::ModuleOp module,
                                        int64_t features);

/// swiglu_split(gate: [T, I], up: [T, I], out: [T, I], T)
///   out = silu(gate) * up; `out` may be `gate` or `up`. grid T.
mlir::FailureOr<GpuKernel> buildSwiGLUSplit(mlir::ModuleOp module,
                                            int64_t intermediate);

/// swiglu(gate_up: [T, 2I], out: [T, I], T)
///   out = silu(gate) * up, gate first. grid T.
mlir::FailureOr<GpuKernel> buildSwiGLU(mlir::ModuleOp module,
                                       int64_t intermediate);

/// rope(q: [T, Hq, D] (in/out), k: [T, Hkv, D] (in/out), positions: i32 [T],
///      T, q_row_stride, k_row_stride)
///   As hostkernels::buildRope (same inv_freq table, computed by
///   hostkernels::computeRopeInvFreq); the row strides are in elements (q
///   and k may be views into the fused QKV output). grid T.
mlir::FailureOr<GpuKernel> buildRope(mlir::ModuleOp module,
                                     const hostkernels::RopeParams &params);

/// rope_kv_write(q: [T, Hq, D] (in/out), k: [T, Hkv, D], v: [T, Hkv, D],
///               positions: i32 [T], key_cache: [?, B, Hkv, D],
///               value_cache: [?, B, Hkv, D], slot_mapping: i32 [T],
///               T, q_row_stride, k_row_stride, v_row_stride)
///   rope then kv_write in one launch: q rotated in place, the rotated keys
///   and the values stored to the cache rows of their slots (k itself is
///   left as it was). grid T.
mlir::FailureOr<GpuKernel>
buildRopeKvWrite(mlir::ModuleOp module, const hostkernels::RopeParams &params,
                 const hostkernels::KvCacheShape &cache);

/// kv_write(k: [T, Hkv, D], v: [T, Hkv, D], key_cache: [?, B, Hkv, D],
///          value_cache: [?, B, Hkv, D], slot_mapping: i32 [T],
///          T, k_row_stride, v_row_stride)
///   As hostkernels::buildKvWrite, caches bf16; negative slots skip. grid T.
mlir::FailureOr<GpuKernel> buildKvWrite(mlir::ModuleOp module,
                                        const hostkernels::KvCacheShape &cache);

/// paged_attention(q: [T, Hq, D], key_cache: [?, B, Hkv, D],
///                 value_cache: [?, B, Hkv, D], query_start: i32 [S + 1],
///                 context_len: i32 [S], block_table: i32 [S, M],
///                 out: [T, Hq, D] (dense), workspace: f32 scratch,
///                 T, S, q_row_stride, M)
///   As hostkernels::buildPagedAttention, split along the context
///   (flash-decoding): grid (T, headGroups * maxSplits), where a block
///   serves one token, the query heads of one kv head that fit its registers
///   (a head group: every key and value it loads serves all of them) and one
///   of `splits` slices of the context, splits = clamp(targetBlocks / (T *
///   headGroups), 1, maxSplits) so that small batches still fill the GPU.
///   Its 4 warps take keys in slots of D / 8 lanes (16-byte loads), an
///   online softmax per slot, merged across slots and warps at the end. With
///   one split it writes `out`; with more, each block writes its softmax
///   state to `workspace` (pagedAttentionWorkspaceBytes; it starts with one
///   i32 counter per (token, head group), which must be zero before the
///   first launch and is left zero) and counts itself done; the last split
///   to finish combines the states and writes `out`. Steps of 64 tokens or
///   more use one split. `longQueryRows` > 0 (at least 64) leaves the tokens
///   of sequences with that many queries or more untouched, for
///   flash_attention. Step inputs are read before the kernel waits for its
///   predecessor (programmatic dependent launch).
mlir::FailureOr<GpuKernel>
buildPagedAttention(mlir::ModuleOp module,
                    const hostkernels::PagedAttentionParams &params,
                    int64_t longQueryRows = 0);

/// Bytes of the workspace paged_attention needs, for any T.
int64_t
pagedAttentionWorkspaceBytes(const hostkernels::PagedAttentionParams &params);

struct GemvParams {
  int64_t n = 0;         // output features N
  int64_t k = 0;         // input features K
  int64_t maxTokens = 8; // the kernel serves 1 <= T <= maxTokens, <= 8
  int64_t warpsPerBlock = 4;
  /// Warps of a block that share its rows, each summing a slice of K
  /// (split-K within the block, combined through shared memory): a divisor
  /// of warpsPerBlock, or 0 for all of them (the fastest measured).
  int64_t splitK = 0;
  /// Output features a warp computes at least (R is max(this, min(T, 4))
  /// weight rows, halved for swiglu): more rows share each x load and put
  /// more bytes in flight per block.
  int64_t minRowsPerWarp = 1;
  /// 16-byte weight loads each lane issues per iteration (the first
  /// iteration's go out before the kernel waits for its predecessor).
  int64_t loadsInFlight = 4;
  /// x is the residual stream and the product is rms_norm(x) * weight^T:
  /// each block first sums x^2 over the whole row (x is small and stays in
  /// L1 for the main loop), then normalizes each x vector it loads, rounded
  /// to bf16 as rms_norm stores it, so no kernel writes the normalized rows
  /// and a decode step's numerics are a larger step's. Adds the operand
  /// norm_weight: [K] after x.
  bool rmsNormInput = false;
  double eps = 0;
  enum class Epilogue {
    None,
    /// y = residual + x * weight^T (residual: [T, N] before y; it may be y).
    Residual,
    /// weight is [2N, K], gate rows then up rows (a fused gate/up
    /// projection): y = silu(x * gate^T) * (x * up^T), y: [T, N].
    SwiGLU,
    /// weight is a fused q/k/v projection (rope.numHeads query heads, then
    /// rope.numKvHeads key heads, then as many value heads, each
    /// rope.headDim rows): the epilogue rotates q and k as rope does, stores
    /// q into y and the keys and values into the paged cache at each
    /// token's slot (rope_kv_write's work, which decode steps then skip).
    /// Adds the operands positions, key_cache, value_cache and
    /// slot_mapping after y. Needs gemvRowsPerBlock() even and a divisor
    /// of the head dim: a block then holds both rows of each rotated pair.
    RopeKvWrite,
  };
  Epilogue epilogue = Epilogue::None;
  /// Epilogue::RopeKvWrite only.
  hostkernels::RopeParams rope;
  hostkernels::KvCacheShape cache;
};

/// The output features one block of buildGemv(params) computes.
int64_t gemvRowsPerBlock(const GemvParams &params);

/// gemv(x: [T, K], weight: [N, K], y: [T, N], T)
///   y = x * weight^T for a few tokens (decode): each warp computes
///   R = min(maxTokens, 4) consecutive output features over its slice of
///   K, with 16-byte loads of the weight rows, f32 accumulation, a warp
///   shuffle reduction, then a sum of the splitK slices in shared memory.
///   grid ceil(N / (R * warpsPerBlock / splitK)) (independent of T),
///   block 32 * warpsPerBlock. Build variants for maxTokens 1, 2, 4, 8 and
///   launch the smallest that covers T: a variant computes maxTokens rows
///   whatever T is (those past T on token T - 1, not stored).
///   rmsNormInput and the epilogues fuse the decode step's norms, residual
///   adds, swiglu and rope into the products (GemvParams): the operands are
///   then (x, [norm_weight], weight, [residual], y, [positions, key_cache,
///   value_cache, slot_mapping], T).
mlir::FailureOr<GpuKernel> buildGemv(mlir::ModuleOp module,
                                     const GemvParams &params);

/// How flash_attention tiles its work (FlashAttention.cpp). The defaults are
/// what buildFlashAttention uses: on an H100 (2026-11-23, bf16 causal, d 128,
/// 32 heads) they ran at 333-336 TFLOP/s at 8 x 4k tokens and 350-354 at
/// 2 x 16k, the fastest tiling measured; 16 rows per warp (Q in registers)
/// ran at 270-285. The other choices exist to be measured
/// (test/gpu/FLASH_ATTENTION.md).
struct FlashAttentionTiling {
  /// Warps per block, 4 or 8; the block's query tile is warps * warpRows
  /// rows, and all its warps share each K and V tile.
  int64_t warps = 4;
  /// Query rows per warp: 16 (one m16 tile) or 32 (two, which share every
  /// K and V fragment read from shared memory: half the shared-memory
  /// traffic per mma, twice the accumulator registers; ptxas spills a few
  /// words at 255 registers, and it is still the fastest).
  int64_t warpRows = 32;
  /// Keys per step of the main loop: 32 or 64.
  int64_t keyTile = 64;
  /// Q fragments stay in registers for the whole key loop (true), or are
  /// read again from shared memory at every key tile (fewer registers).
  bool qInRegisters = false;
  /// Blocks per SM the register allocation must allow (nvvm.minctasm),
  /// 0 for ptxas's own choice.
  int64_t minBlocksPerSM = 0;
  /// Hopper warpgroup MMA (wgmma.mma_async, sm_90a only: such a module does
  /// not assemble for sm_80): each group of 4 warps multiplies its 64 rows
  /// by K and V tiles read once from shared memory, instead of every warp
  /// loading its own mma.sync fragments. Needs warpRows 16; Q comes from
  /// registers (qInRegisters) or from shared memory through a descriptor.
  /// Correct on an H100, but measured slower than the mma.sync default
  /// (135-150 TFLOP/s with one warpgroup per block, 235-283 with two).
  bool wgmma = false;
  /// Two shared-memory stages of K and V: the copy of the next tile is
  /// started right after the barrier that ends the current one, so it has
  /// a whole tile of work to land (one barrier per tile instead of two).
  /// Measured slower with the default tiling (more shared memory, more
  /// spills): 289-317 TFLOP/s.
  bool doubleBuffer = false;
};

/// flash_attention(q: [T, Hq, D], key_cache: [?, B, Hkv, D],
///                 value_cache: [?, B, Hkv, D], query_start: i32 [S + 1],
///                 context_len: i32 [S], block_table: i32 [S, M],
///                 out: [T, Hq, D] (dense), T, S, q_row_stride, M)
///   paged_attention's parameters, ABI and semantics (HostKernels.h) for
///   prefill: only the sequences with n_s >= minQueryRows query rows are
///   computed, and rows of the other sequences are not written (the decode
///   kernel does those). Tensor cores (mma.sync m16n8k16, bf16 -> f32), Q
///   tiles of warps * warpRows rows inside one sequence, keys gathered
///   through the block table into shared memory with cp.async, online
///   softmax in registers. D must be a multiple of 16, at most 256;
///   scale > 0. The default tiling assembles for sm_80 and sm_90a.
///   Launch: rowsPerBlock = warps * warpRows (default 128), gridXPerRow =
///   1 + ceil(rowsPerBlock / minQueryRows) (a bound on the tile count;
///   default 3), gridY = Hq, blockX = 32 * warps (default 128), and
///   dynamicSharedBytes of dynamic shared memory (default 69,632 for d 128:
///   above 48 KiB, so the launch must raise the kernel's limit, as
///   optrt::cuda::launchKernel does). Blocks past the last tile return.
mlir::FailureOr<GpuKernel>
buildFlashAttention(mlir::ModuleOp module,
                    const hostkernels::PagedAttentionParams &params,
                    int64_t minQueryRows = 64);
/// Whether flash_attention tiles these parameters (a head dim that is a
/// multiple of 16 up to 256, a positive finite scale, a bf16 cache); plans
/// use the split kernel alone otherwise.
bool flashAttentionTiles(const hostkernels::PagedAttentionParams &params);
mlir::FailureOr<GpuKernel>
buildFlashAttention(mlir::ModuleOp module,
                    const hostkernels::PagedAttentionParams &params,
                    int64_t minQueryRows, const FlashAttentionTiling &tiling);

} // namespace gpukernels
} // namespace optmlir

#endif // OPTMLIR_CONVERSION_GPUKERNELS_H
