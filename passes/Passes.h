//===- Passes.h - tfm graph passes ------------------------------*- C++ -*-===//

#ifndef OPTMLIR_PASSES_PASSES_H
#define OPTMLIR_PASSES_PASSES_H

#include "dialects/Tfm/IR/TfmOps.h"

#include "mlir/Pass/Pass.h"

namespace mlir::tfm {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

} // namespace mlir::tfm

#endif // OPTMLIR_PASSES_PASSES_H
