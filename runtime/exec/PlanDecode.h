//===- PlanDecode.h - reading a plan's commands, for executors --*- C++ -*-===//
//
// What every executor does the same way: decode a command's arguments
// (PlanAbi.h) once at load, and fill a step's input arrays from a StepBatch.
// Addresses are integers so that host and device memory look alike.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_EXEC_PLANDECODE_H
#define OPTMLIR_RUNTIME_EXEC_PLANDECODE_H

#include "runtime/artifact/Artifact.h"
#include "runtime/exec/ModelExecutor.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace optrt {

/// A size, stride or scalar: static, or a runtime scalar's index.
struct Extent {
  bool isScalar = false;
  int64_t value = 0;
  int64_t resolve(const int64_t *scalars) const {
    return isScalar ? scalars[value] : value;
  }
};

/// A strided array operand, its base address with the offset applied.
struct Operand {
  uint64_t address = 0;
  std::vector<Extent> sizes, strides;
  /// The artifact weight it points into, or -1.
  int64_t weight = -1;
};

/// A GPU kernel launch (PlanAbi.h): grid x = perRow * ceil(rows /
/// rowsPerBlock) + fixed.
struct Launch {
  int64_t gridXPerRow = 0, gridXFixed = 0, gridY = 1, blockX = 0,
          sharedBytes = 0, rowsPerBlock = 1;
  Extent rows;
  int64_t gridX(int64_t rowCount) const {
    return gridXPerRow * ((rowCount + rowsPerBlock - 1) / rowsPerBlock) +
           gridXFixed;
  }
};

/// A generated kernel that computes a Gemm for at most maxTokens rows.
struct GemvVariant {
  int64_t maxTokens = 0;
  uint32_t entry = 0;
  Launch launch;
};

struct DecodedCommand {
  fb::CommandKind kind;
  std::string name;
  uint32_t entry = 0;
  Launch launch; // GPU kernel calls only
  /// A gemm's are A, B, C and an optional bias (PlanAbi.h).
  std::vector<Operand> operands;
  std::vector<Extent> scalars; // GPU kernel calls only, after the operands
  std::vector<GemvVariant> gemvVariants; // GPU gemms only, smallest first
  /// Quantized gemms: how the rows of A are quantized first
  /// (ActivationQuant), and the static fp8 scale.
  int32_t activationQuant = 0;
  double activationScale = 0;
  /// The command runs in steps of minTokens..maxTokens tokens (0: no bound).
  int64_t minTokens = 0, maxTokens = 0;
  bool runsAt(int64_t numTokens) const {
    return numTokens >= minTokens && (maxTokens == 0 || numTokens <= maxTokens);
  }
};

/// The address of an array argument's base (Buffer, Weight or KVCache, with
/// its index and offset), or 0 when it names nothing.
using BaseAddress =
    std::function<uint64_t(const fb::Arg &base, std::string &error)>;

/// Decodes every command of `plan`. `withLaunch`: kernel calls start with a
/// launch and end with scalars (GPU plans).
bool decodePlan(const fb::Plan &plan, bool withLaunch,
                const BaseAddress &baseAddress,
                std::vector<DecodedCommand> &commands, std::string &error);

/// Host pointers to the step's input arrays (PlanAbi.h), each sized for the
/// plan's limits.
struct StepInputs {
  int32_t *inputIds, *positions, *slotMapping, *queryStart, *contextLen,
      *blockTable, *logitRows;
};

/// Fills `inputs` from a validated `batch` and sets the runtime scalars;
/// the block table has `maxBlocksPerSeq` columns.
void fillStepInputs(const StepBatch &batch, const ExecutorLimits &limits,
                    int64_t maxBlocksPerSeq, const StepInputs &inputs,
                    int64_t *scalars);

} // namespace optrt

#endif // OPTMLIR_RUNTIME_EXEC_PLANDECODE_H
