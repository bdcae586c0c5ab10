//===- PlanAbi.h - how a plan's commands name their operands ----*- C++ -*-===//
//
// The contract between the compiler, which writes an artifact's plan, and the
// executors, which run it. Header-only and MLIR-free: both sides include it.
//
// Every operand of a KernelCall or Gemm command is a strided array written as
//   [base] [Int rank] [rank sizes] [rank strides]
// where base is a Buffer (offset in bytes), Weight, or KVCache (index =
// layer, offset 0 = keys, 1 = values) argument, and each size or stride (in
// elements) is an Int or a RuntimeScalar. A KernelCall passes one memref
// descriptor per operand to the kernel's C interface, in order. A Gemm is
// C[M, N] = A[M, K] * B[N, K]^T with operands A, B, C, optionally followed
// by a fourth, bias[N] (rank 1, unit stride, the type of C), added to every
// row: C = A * B^T + bias. GPU plans put a linear's bias there (cuBLASLt's
// bias epilogue) and such a Gemm has no GEMV variants; CPU plans add biases
// with a kernel and never write one. The fourth operand needs no schema
// bump: a runtime that predates it refuses the command ("a gemm takes three
// 2-D operands"), and plans without it read as before.
//
// GPU plans (PTX/cubin kernels) add launches: a KernelCall starts with
//   [Int gridXPerRow][Int gridXFixed][Int gridY][Int blockX][Int sharedBytes]
//   [Int rowsPerBlock][RuntimeScalar rows]
// (grid x = gridXPerRow * ceil(rows / rowsPerBlock) + gridXFixed; schema 2
// added rowsPerBlock), then its array operands, whose
// base pointers are passed, then its i32 scalars (Int or RuntimeScalar). A
// Gemm may end with GEMV variants for few rows, 7 Ints each:
//   [maxTokens][entry][gridXPerRow][gridXFixed][gridY][blockX][sharedBytes]
// launched as gemv(A, B, C, M) when M <= maxTokens.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_EXEC_PLANABI_H
#define OPTMLIR_RUNTIME_EXEC_PLANABI_H

#include <array>
#include <cstdint>
#include <string_view>

namespace optrt {
namespace planabi {

/// Runtime scalars, by index into Plan::runtime_scalars; the executor sets
/// them for every step.
enum RuntimeScalar : int64_t {
  NumTokens = 0,      // packed tokens of the step
  NumLogitRows = 1,   // rows whose logits are computed
  NumSeqs = 2,        // sequences in the step
  NumSeqsPlusOne = 3, // entries of query_start
  MaxBlocksPerSeq = 4, // columns of block_table
  NumBlocks = 5,      // blocks of the KV cache
  NumRuntimeScalars = 6,
};

inline constexpr std::array<std::string_view, NumRuntimeScalars>
    kRuntimeScalarNames = {"num_tokens",         "num_logit_rows", "num_seqs",
                           "num_seqs_plus_one", "max_blocks_per_seq",
                           "num_blocks"};

/// Buffers the executor fills before a step and reads after it, by name.
inline constexpr std::string_view kInputIds = "input_ids";       // i32 [T]
inline constexpr std::string_view kPositions = "positions";      // i32 [T]
inline constexpr std::string_view kSlotMapping = "slot_mapping"; // i32 [T]
inline constexpr std::string_view kQueryStart = "query_start";   // i32 [S+1]
inline constexpr std::string_view kContextLen = "context_len";   // i32 [S]
inline constexpr std::string_view kBlockTable = "block_table";   // i32 [S, M]
inline constexpr std::string_view kLogitRows = "logit_rows";     // i32 [R]
inline constexpr std::string_view kLogits = "logits";            // f32 [R, V]
/// GPU plans: each logit row's argmax (ModelExecutor::stepGreedy).
inline constexpr std::string_view kGreedyTokens = "greedy_tokens"; // i32 [R]

/// Offsets of a KVCache argument.
enum KVCachePart : uint64_t { Keys = 0, Values = 1 };

} // namespace planabi
} // namespace optrt

#endif // OPTMLIR_RUNTIME_EXEC_PLANABI_H
