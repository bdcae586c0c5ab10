//===- Decompose.cpp - high-level tfm ops into primitives -----------------===//

#include "passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"
#include "llvm/ADT/StringSet.h"

namespace mlir::tfm {
#define GEN_PASS_DEF_TFMDECOMPOSE
#include "passes/Passes.h.inc"
} // namespace mlir::tfm

using namespace mlir;
using namespace mlir::tfm;

namespace {
RankedTensorType withShape(Value value, ArrayRef<int64_t> shape) {
  return cast<RankedTensorType>(value.getType()).clone(shape);
}

Value transpose(PatternRewriter &rewriter, Location loc, Value input,
                ArrayRef<int64_t> permutation) {
  ArrayRef<int64_t> shape = cast<RankedTensorType>(input.getType()).getShape();
  SmallVector<int64_t> resultShape;
  for (int64_t p : permutation)
    resultShape.push_back(shape[p]);
  return TransposeOp::create(rewriter, loc, withShape(input, resultShape),
                             input, permutation);
}

/// Repeats each head of a [tokens, kv_heads, D] tensor `times` times.
Value repeatHeads(PatternRewriter &rewriter, Location loc, Value input,
                  int64_t times) {
  if (times == 1)
    return input;
  SmallVector<int64_t> shape(
      cast<RankedTensorType>(input.getType()).getShape());
  shape[1] *= times;
  return RepeatOp::create(rewriter, loc, withShape(input, shape), input,
                          /*dim=*/1, times);
}

/// attention(q, k, v) over [S, H, D] operands, head-major:
///   P = softmax(mask(scale * q^T k)), out = (P v^T)^T.
struct DecomposeAttention : OpRewritePattern<AttentionOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(AttentionOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto queryType = cast<RankedTensorType>(op.getQuery().getType());
    auto keyType = cast<RankedTensorType>(op.getKey().getType());
    int64_t tokens = queryType.getDimSize(0);
    int64_t heads = queryType.getDimSize(1);
    int64_t times = heads / keyType.getDimSize(1);

    Value query = transpose(rewriter, loc, op.getQuery(), {1, 0, 2});
    Value key = transpose(
        rewriter, loc, repeatHeads(rewriter, loc, op.getKey(), times),
        {1, 2, 0});
    Value value = transpose(
        rewriter, loc, repeatHeads(rewriter, loc, op.getValue(), times),
        {1, 0, 2});

    Value scores = MatmulOp::create(
        rewriter, loc, withShape(op.getQuery(), {heads, tokens, tokens}),
        query, key);
    scores = ScaleOp::create(rewriter, loc, scores, op.getScaleAttr());
    if (op.getCausal())
      scores = CausalMaskOp::create(rewriter, loc, scores,
                                    op.getSlidingWindowAttr());
    Value probs = SoftmaxOp::create(rewriter, loc, scores, /*dim=*/2);
    Value output = MatmulOp::create(rewriter, loc,
                                    cast<RankedTensorType>(query.getType()),
                                    probs, value);
    rewriter.replaceOp(op, transpose(rewriter, loc, output, {1, 0, 2}));
    return success();
  }
};

/// linear(x, w, b) -> matmul(x, transpose(w)) + b.
struct DecomposeLinear : OpRewritePattern<LinearOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(LinearOp op,
                                PatternRewriter &rewriter) const override {
    if (op.getInput().getType().getRank() != 2)
      return rewriter.notifyMatchFailure(op, "matmul needs a 2-D input");
    Location loc = op.getLoc();
    Value weight = transpose(rewriter, loc, op.getWeight(), {1, 0});
    Value result =
        MatmulOp::create(rewriter, loc, op.getType(), op.getInput(), weight);
    if (op.getBias())
      result = AddOp::create(rewriter, loc, op.getType(), result, op.getBias());
    rewriter.replaceOp(op, result);
    return success();
  }
};

/// swiglu(g, u) -> silu(g) * u.
struct DecomposeSwiGLU : OpRewritePattern<SwiGLUOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(SwiGLUOp op,
                                PatternRewriter &rewriter) const override {
    Value gate = SiLUOp::create(rewriter, op.getLoc(), op.getGate());
    rewriter.replaceOpWithNewOp<MulOp>(op, op.getType(), gate, op.getUp());
    return success();
  }
};

struct TfmDecomposePass
    : mlir::tfm::impl::TfmDecomposeBase<TfmDecomposePass> {
  using TfmDecomposeBase::TfmDecomposeBase;

  LogicalResult initialize(MLIRContext *context) override {
    llvm::StringSet<> selected;
    for (const std::string &name : ops)
      selected.insert(name);
    for (StringRef name : selected.keys())
      if (!llvm::is_contained({"attention", "linear", "swiglu"}, name))
        return emitError(UnknownLoc::get(context))
               << "tfm-decompose: unknown op '" << name
               << "' (expected attention, linear or swiglu)";
    auto wanted = [&](StringRef name) {
      return selected.empty() || selected.contains(name);
    };
    RewritePatternSet set(context);
    if (wanted("attention"))
      set.add<DecomposeAttention>(context);
    if (wanted("linear"))
      set.add<DecomposeLinear>(context);
    if (wanted("swiglu"))
      set.add<DecomposeSwiGLU>(context);
    patterns = std::move(set);
    return success();
  }

  void runOnOperation() override {
    walkAndApplyPatterns(getOperation(), patterns);
  }

  FrozenRewritePatternSet patterns;
};
} // namespace
