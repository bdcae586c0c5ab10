//===- ModelPlan.h - a tfm module compiled for a target ---------*- C++ -*-===//
//
// Turns the forward function of a tfm module into the artifact's execution
// plan: dense matrix products become Gemm commands (BLAS on the host,
// cuBLASLt on NVIDIA GPUs), everything else calls kernels generated through
// MLIR for the target (optmlir/Conversion/HostKernels.h or GpuKernels.h); the
// activations get statically planned buffers sized for the step's token
// budget, and attention runs over the paged KV cache. The host computes in
// f32 with f32 weights; GPUs store bf16 and compute in f32.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_TARGET_MODELPLAN_H
#define OPTMLIR_TARGET_MODELPLAN_H

#include "optmlir/Target/HostCodegen.h"
#include "runtime/artifact/ArtifactTypes.h"

#include "mlir/IR/BuiltinOps.h"

#include <optional>
#include <string>
#include <vector>

namespace optmlir {

enum class PlanTarget { Host, Nvptx };

struct ModelPlanOptions {
  PlanTarget target = PlanTarget::Host;
  /// Most packed tokens per step: sizes every activation buffer.
  int64_t maxTokensPerStep = 2048;
  // The KV cache's block size and element type come from the attention
  // ops' kv_cache (--tfm-kv-layout); without one, 16 tokens of the
  // activation type.
  /// Host code generation.
  HostCodegenOptions codegen;
  /// NVIDIA GPU chip, e.g. "sm_90a" or "sm_80".
  std::string chip = "sm_90a";
  /// The decode GEMVs' tiling (gpukernels::GemvParams): warps per block,
  /// how many of them share a row, rows per warp at least, 16-byte loads
  /// in flight per lane. 0 (all four): the planner's rule, the fastest
  /// measured (ModelPlan.cpp); optc --gemv-tiling sets them to measure
  /// others.
  int64_t gemvWarps = 0;
  int64_t gemvSplitK = 0;
  int64_t gemvMinRowsPerWarp = 0;
  int64_t gemvLoadsInFlight = 0;
};

/// A weight of the plan: the artifact stores it in the plan's weight dtype
/// with this shape, made from the checkpoint tensors `parts` concatenated
/// along dim 0 (one part for a plain weight).
struct PlannedWeight {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<std::string> parts;
  /// The arrays of a quantized weight (codes, scales, zero points) keep
  /// their own type instead of the plan's; their data come from the weight
  /// store (tfm-quantize computed them).
  std::optional<optrt::artifact::DType> storedType;
};

struct ModelPlan {
  /// Everything but the weights' data: model info, KV layout, plan, kernels.
  optrt::artifact::ArtifactSpec spec;
  /// In the order of the plan's weight indices.
  std::vector<PlannedWeight> weights;
  /// The element type of weights and activations (F32 host, BF16 GPU).
  optrt::artifact::DType weightType = optrt::artifact::DType::F32;
};

/// Plans `module` (an imported tfm module, after any graph passes). On
/// failure returns failure and sets `error` to one line naming the op that
/// cannot be planned.
mlir::FailureOr<ModelPlan> planModel(mlir::ModuleOp module,
                                     const ModelPlanOptions &options,
                                     std::string &error);

} // namespace optmlir

#endif // OPTMLIR_TARGET_MODELPLAN_H
