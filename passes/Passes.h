//===- Passes.h - tfm graph passes ------------------------------*- C++ -*-===//

#ifndef OPTMLIR_PASSES_PASSES_H
#define OPTMLIR_PASSES_PASSES_H

#include "dialects/Tfm/IR/TfmOps.h"

#include "mlir/Pass/Pass.h"

namespace optmlir {
class WeightStore;
} // namespace optmlir

namespace mlir::tfm {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// tfm-quantize with the weight store that holds the model's data and
/// receives what the pass computes (optc); the registered pass (optmlir-opt)
/// opens the checkpoint the module names instead.
std::unique_ptr<Pass> createTfmQuantizePass(const TfmQuantizeOptions &options,
                                            optmlir::WeightStore *store);

} // namespace mlir::tfm

#endif // OPTMLIR_PASSES_PASSES_H
