//===- FuseQKV.cpp - one linear for the query, key and value projections --===//

#include "passes/FuseLinears.h"
#include "passes/Passes.h"

namespace mlir::tfm {
#define GEN_PASS_DEF_TFMFUSEQKV
#include "passes/Passes.h.inc"
} // namespace mlir::tfm

using namespace mlir;
using namespace mlir::tfm;

namespace {
/// The linear that produces an attention operand, looking through the
/// per-head reshape and the rotary embedding between them.
LinearOp projectionOf(Value operand) {
  while (Operation *op = operand.getDefiningOp()) {
    if (auto linear = dyn_cast<LinearOp>(op))
      return linear;
    if (auto rope = dyn_cast<RopeOp>(op))
      operand = rope.getInput();
    else if (auto reshape = dyn_cast<ReshapeOp>(op))
      operand = reshape.getInput();
    else
      return {};
  }
  return {};
}

struct TfmFuseQKVPass : mlir::tfm::impl::TfmFuseQKVBase<TfmFuseQKVPass> {
  void runOnOperation() override {
    SmallVector<AttentionOp> attentions;
    getOperation().walk([&](AttentionOp op) { attentions.push_back(op); });
    for (AttentionOp attention : attentions) {
      LinearOp query = projectionOf(attention.getQuery());
      LinearOp key = projectionOf(attention.getKey());
      LinearOp value = projectionOf(attention.getValue());
      if (!query || !key || !value)
        continue;
      // A projection with other users (or one linear feeding two operands)
      // stays as it is; fuseLinears refuses what else does not fit.
      if (!query->hasOneUse() || !key->hasOneUse() || !value->hasOneUse())
        continue;
      (void)fuseLinears(getOperation(), {query, key, value}, "qkv");
    }
  }
};
} // namespace
