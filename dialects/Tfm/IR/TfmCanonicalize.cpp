//===- TfmCanonicalize.cpp - canonicalization patterns for tfm ------------===//
//
// The canonical form of a tfm graph uses the high-level ops wherever their
// pattern appears: a matmul by a transposed 2-D matrix is a linear layer, a
// bias added to a bias-free linear is that linear's bias, silu(g) * u is a
// SwiGLU. This is what brings a decomposed graph back (tfm-decompose undoes
// it); attention has its own pass, tfm-fuse-attention.
//
//===----------------------------------------------------------------------===//

#include "dialects/Tfm/IR/TfmOps.h"

#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::tfm;

namespace {
/// matmul(x, transpose(w, [1, 0])) -> linear(x, w) for 2-D x and w.
struct MatmulOfTransposedToLinear : OpRewritePattern<MatmulOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(MatmulOp op,
                                PatternRewriter &rewriter) const override {
    auto transpose = op.getRhs().getDefiningOp<TransposeOp>();
    if (!transpose || op.getLhs().getType().getRank() != 2 ||
        transpose.getPermutation() != ArrayRef<int64_t>{1, 0})
      return rewriter.notifyMatchFailure(op, "rhs is not a transposed matrix");
    rewriter.replaceOpWithNewOp<LinearOp>(op, op.getType(), op.getLhs(),
                                          transpose.getInput(), Value());
    return success();
  }
};

/// add(linear(x, w), b) -> linear(x, w, b) for a 1-D b and a bias-free linear
/// used only here.
struct AddBiasToLinear : OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(AddOp op,
                                PatternRewriter &rewriter) const override {
    auto linear = op.getLhs().getDefiningOp<LinearOp>();
    if (!linear || linear.getBias() || !linear->hasOneUse() ||
        op.getRhs().getType().getRank() != 1)
      return rewriter.notifyMatchFailure(op, "not a bias on a linear");
    rewriter.replaceOpWithNewOp<LinearOp>(op, op.getType(), linear.getInput(),
                                          linear.getWeight(), op.getRhs());
    return success();
  }
};

/// mul(silu(g), u) or mul(u, silu(g)) -> swiglu(g, u).
struct MulOfSiLUToSwiGLU : OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(MulOp op,
                                PatternRewriter &rewriter) const override {
    if (op.getLhs().getType() != op.getRhs().getType())
      return rewriter.notifyMatchFailure(op, "broadcasting product");
    Value up = op.getRhs();
    auto silu = op.getLhs().getDefiningOp<SiLUOp>();
    if (!silu) {
      silu = op.getRhs().getDefiningOp<SiLUOp>();
      up = op.getLhs();
    }
    if (!silu)
      return rewriter.notifyMatchFailure(op, "no silu operand");
    rewriter.replaceOpWithNewOp<SwiGLUOp>(op, op.getType(), silu.getInput(),
                                          up);
    return success();
  }
};
} // namespace

void MatmulOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                           MLIRContext *context) {
  results.add<MatmulOfTransposedToLinear>(context);
}

void AddOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                        MLIRContext *context) {
  results.add<AddBiasToLinear>(context);
}

void MulOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                        MLIRContext *context) {
  results.add<MulOfSiLUToSwiGLU>(context);
}
