//===- HostPlan.h - a tfm module compiled for the host ----------*- C++ -*-===//
//
// Turns the forward function of a tfm module into the artifact's execution
// plan for the CPU target: dense matrix products become Gemm commands (BLAS
// in the runtime), everything else calls kernels generated through MLIR
// (optmlir/Conversion/HostKernels.h) and compiled to one shared object; the
// activations get statically planned buffers sized for the step's token
// budget, and attention runs over the paged KV cache. The CPU target
// computes in f32: weights are stored as f32.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_TARGET_HOSTPLAN_H
#define OPTMLIR_TARGET_HOSTPLAN_H

#include "optmlir/Target/HostCodegen.h"
#include "runtime/artifact/ArtifactTypes.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace optmlir {

struct HostPlanOptions {
  /// Most packed tokens per step: sizes every activation buffer.
  int64_t maxTokensPerStep = 2048;
  /// Tokens per KV-cache block.
  int64_t blockSize = 16;
  HostCodegenOptions codegen;
};

/// A weight of the plan: the artifact stores it as f32 [shape], made from
/// the checkpoint tensors `parts` concatenated along dim 0 (one part for a
/// plain weight).
struct PlannedWeight {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<std::string> parts;
};

struct HostPlan {
  /// Everything but the weights' data: model info, KV layout, plan, kernels.
  optrt::artifact::ArtifactSpec spec;
  /// In the order of the plan's weight indices.
  std::vector<PlannedWeight> weights;
};

/// Plans `module` (an imported tfm module, after any graph passes) for the
/// host. On failure returns failure and sets `error` to one line naming the
/// op that cannot be planned.
mlir::FailureOr<HostPlan> planForHost(mlir::ModuleOp module,
                                      const HostPlanOptions &options,
                                      std::string &error);

} // namespace optmlir

#endif // OPTMLIR_TARGET_HOSTPLAN_H
