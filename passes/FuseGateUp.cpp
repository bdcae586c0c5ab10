//===- FuseGateUp.cpp - one linear for the SwiGLU gate and up projections -===//

#include "passes/FuseLinears.h"
#include "passes/Passes.h"

namespace mlir::tfm {
#define GEN_PASS_DEF_TFMFUSEGATEUP
#include "passes/Passes.h.inc"
} // namespace mlir::tfm

using namespace mlir;
using namespace mlir::tfm;

namespace {
struct TfmFuseGateUpPass
    : mlir::tfm::impl::TfmFuseGateUpBase<TfmFuseGateUpPass> {
  void runOnOperation() override {
    SmallVector<SwiGLUOp> swiglus;
    getOperation().walk([&](SwiGLUOp op) { swiglus.push_back(op); });
    for (SwiGLUOp swiglu : swiglus) {
      auto gate = swiglu.getGate().getDefiningOp<LinearOp>();
      auto up = swiglu.getUp().getDefiningOp<LinearOp>();
      if (!gate || !up || !gate->hasOneUse() || !up->hasOneUse())
        continue;
      (void)fuseLinears(getOperation(), {gate, up}, "gate_up");
    }
  }
};
} // namespace
