//===- FuseLinears.h - merge linears that share an input --------*- C++ -*-===//

#ifndef OPTMLIR_PASSES_FUSELINEARS_H
#define OPTMLIR_PASSES_FUSELINEARS_H

#include "dialects/Tfm/IR/TfmOps.h"

namespace mlir::tfm {

/// Replaces `linears` (same input, same block, weights and biases read with
/// tfm.get_weight) by one linear over a weight declared as the concatenation
/// of theirs, followed by a tfm.split. `fusedRole` names the fused weight:
/// `...q_proj.weight`, `...k_proj.weight`, `...v_proj.weight` with role
/// "qkv" become `...qkv_proj.weight`. Returns failure, changing nothing, when
/// the linears cannot be fused.
LogicalResult fuseLinears(ModuleOp module, ArrayRef<LinearOp> linears,
                          StringRef fusedRole);

} // namespace mlir::tfm

#endif // OPTMLIR_PASSES_FUSELINEARS_H
