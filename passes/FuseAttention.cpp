//===- FuseAttention.cpp - rebuild tfm.attention from primitives ----------===//
//
// Matches, from the output back:
//   transpose(matmul(softmax(mask?(scale?(matmul(transpose(q, [1,0,2]),
//                                               transpose(rep?(k), [1,2,0]))))),
//                    transpose(rep?(v), [1,0,2])), [1,0,2])
// where rep repeats key/value heads for grouped-query attention.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::tfm {
#define GEN_PASS_DEF_TFMFUSEATTENTION
#include "passes/Passes.h.inc"
} // namespace mlir::tfm

using namespace mlir;
using namespace mlir::tfm;

namespace {
/// Returns the input of `value` if it is a tfm.transpose by `permutation`.
Value transposedFrom(Value value, ArrayRef<int64_t> permutation) {
  auto op = value.getDefiningOp<TransposeOp>();
  if (!op || op.getPermutation() != permutation)
    return {};
  return op.getInput();
}

/// Looks through a repetition of heads (dim 1); `times` is 1 without one.
Value unrepeatHeads(Value value, int64_t &times) {
  times = 1;
  auto op = value.getDefiningOp<RepeatOp>();
  if (!op || op.getDim() != 1)
    return value;
  times = op.getTimes();
  return op.getInput();
}

struct FuseAttentionPattern : OpRewritePattern<TransposeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(TransposeOp root,
                                PatternRewriter &rewriter) const override {
    static constexpr int64_t kHeadMajor[] = {1, 0, 2};
    static constexpr int64_t kKeyTransposed[] = {1, 2, 0};
    if (root.getPermutation() != ArrayRef<int64_t>(kHeadMajor))
      return failure();
    auto output = root.getInput().getDefiningOp<MatmulOp>();
    if (!output)
      return rewriter.notifyMatchFailure(root, "not a product with values");
    auto softmax = output.getLhs().getDefiningOp<SoftmaxOp>();
    if (!softmax || softmax.getDim() != 2)
      return rewriter.notifyMatchFailure(root, "no softmax over keys");

    Value scores = softmax.getInput();
    auto mask = scores.getDefiningOp<CausalMaskOp>();
    if (mask)
      scores = mask.getInput();
    double scale = 1.0;
    if (auto scaleOp = scores.getDefiningOp<ScaleOp>()) {
      scale = scaleOp.getFactor().convertToDouble();
      scores = scaleOp.getInput();
    }
    auto product = scores.getDefiningOp<MatmulOp>();
    if (!product)
      return rewriter.notifyMatchFailure(root, "no query-key product");

    int64_t keyTimes, valueTimes;
    Value query = transposedFrom(product.getLhs(), kHeadMajor);
    Value key = transposedFrom(product.getRhs(), kKeyTransposed);
    Value value = transposedFrom(output.getRhs(), kHeadMajor);
    if (!query || !key || !value)
      return rewriter.notifyMatchFailure(root, "operands not head-major");
    key = unrepeatHeads(key, keyTimes);
    value = unrepeatHeads(value, valueTimes);
    if (keyTimes != valueTimes || query.getType() != root.getType())
      return rewriter.notifyMatchFailure(root, "inconsistent head groups");

    // The rebuilt op must verify; if this is not attention after all, keep
    // the primitives.
    auto keyType = cast<RankedTensorType>(key.getType());
    auto queryType = cast<RankedTensorType>(query.getType());
    if (keyType != value.getType() || keyType.getRank() != 3 ||
        keyType.getDimSize(1) * keyTimes != queryType.getDimSize(1) ||
        keyType.getDimSize(2) != queryType.getDimSize(2) || !(scale > 0))
      return rewriter.notifyMatchFailure(root, "shapes are not attention's");

    rewriter.replaceOpWithNewOp<AttentionOp>(
        root, root.getType(), query, key, value,
        rewriter.getF64FloatAttr(scale),
        /*causal=*/mask ? rewriter.getUnitAttr() : UnitAttr(),
        mask ? mask.getSlidingWindowAttr() : IntegerAttr(),
        /*kv_cache=*/TypeAttr());
    return success();
  }
};

struct TfmFuseAttentionPass
    : mlir::tfm::impl::TfmFuseAttentionBase<TfmFuseAttentionPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseAttentionPattern>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};
} // namespace
