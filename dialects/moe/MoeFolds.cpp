//===- MoeFolds.cpp - moe folders and canonicalization patterns -----------===//
//
// Folders never create ops; canonicalization patterns may. Each rewrite here
// is exact (bit-for-bit) under the semantics of docs/design.md, and no
// pipeline relies on one of them for correctness.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::moe;

//===----------------------------------------------------------------------===//
// ActivationOp
//===----------------------------------------------------------------------===//

// `linear` is the identity.
OpFoldResult ActivationOp::fold(FoldAdaptor) {
  if (getKind() == Activation::linear && getInput().getType() == getResult().getType())
    return getInput();
  return {};
}

//===----------------------------------------------------------------------===//
// RenormalizeOp
//===----------------------------------------------------------------------===//

namespace {
/// True when every slot of `indices` names an expert (no -1), as `moe.topk`
/// guarantees.
bool slotsAlwaysFilled(Value indices) { return indices.getDefiningOp<TopKOp>() != nullptr; }

/// True when the single weight per token is the largest softmax probability
/// of its row: at least 1/E > 0, so w / w == 1 exactly.
bool isTop1OfSoftmax(Value weights) {
  auto topk = weights.getDefiningOp<TopKOp>();
  if (!topk || topk.getK() != 1 || topk.getBias() || topk.getNumGroups() != 1)
    return false;
  auto score = topk.getScores().getDefiningOp<ScoreOp>();
  return score && score.getFunc() == ScoringFunc::softmax;
}

/// One selected slot per token renormalizes to exactly `scale`:
/// softmax over one slot is 1, and so is w / w for the top-1 softmax weight.
struct FoldSingleSlotRenormalize : OpRewritePattern<RenormalizeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(RenormalizeOp op, PatternRewriter &rewriter) const override {
    auto type = cast<RankedTensorType>(op.getResult().getType());
    if (type.getDimSize(1) != 1)
      return rewriter.notifyMatchFailure(op, "more than one slot per token");
    if (!op.getSkip().empty() || !slotsAlwaysFilled(op.getIndices()))
      return rewriter.notifyMatchFailure(op, "a slot may be empty or skipped");
    if (op.getMode() == RenormMode::sum && !isTop1OfSoftmax(op.getWeights()))
      return rewriter.notifyMatchFailure(op, "sum of one weight that may be zero");
    if (!op.getEpsilon().isZero())
      return rewriter.notifyMatchFailure(op, "w / (w + epsilon) is not 1");

    Location loc = op.getLoc();
    Value scale = arith::ConstantOp::create(
        rewriter, loc, rewriter.getF32FloatAttr(op.getScale().convertToDouble()));
    SmallVector<Value> dynamicSizes;
    if (type.isDynamicDim(0))
      dynamicSizes.push_back(tensor::DimOp::create(rewriter, loc, op.getWeights(), 0));
    rewriter.replaceOpWithNewOp<tensor::SplatOp>(op, type, scale, dynamicSizes);
    return success();
  }
};
} // namespace

void RenormalizeOp::getCanonicalizationPatterns(RewritePatternSet &results, MLIRContext *context) {
  results.add<FoldSingleSlotRenormalize>(context);
}
