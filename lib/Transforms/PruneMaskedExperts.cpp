//===- PruneMaskedExperts.cpp - experts that can never be selected --------===//

#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPRUNEMASKEDEXPERTS
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Rows `kept` of `v` along dimension 0, as slices of its contiguous runs.
Value keepRows(PatternRewriter &rewriter, Location loc, Value v, ArrayRef<int64_t> kept) {
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<Value> pieces;
  for (size_t i = 0; i < kept.size();) {
    size_t j = i + 1;
    while (j < kept.size() && kept[j] == kept[j - 1] + 1)
      ++j;
    SmallVector<int64_t> shape(type.getShape());
    shape[0] = int64_t(j - i);
    SmallVector<OpFoldResult> offsets(type.getRank(), rewriter.getIndexAttr(0));
    offsets[0] = rewriter.getIndexAttr(kept[i]);
    SmallVector<OpFoldResult> sizes, strides(type.getRank(), rewriter.getIndexAttr(1));
    for (int64_t d : shape)
      sizes.push_back(rewriter.getIndexAttr(d));
    pieces.push_back(tensor::ExtractSliceOp::create(
        rewriter, loc, RankedTensorType::get(shape, type.getElementType()), v, offsets, sizes, strides));
    i = j;
  }
  if (pieces.size() == 1)
    return pieces.front();
  return tensor::ConcatOp::create(rewriter, loc, /*dim=*/0, pieces);
}

struct PruneMaskedExperts : OpRewritePattern<LayerOp> {
  PruneMaskedExperts(MLIRContext *ctx, bool copyWeights)
      : OpRewritePattern(ctx), copyWeights(copyWeights) {}

  LogicalResult matchAndRewrite(LayerOp op, PatternRewriter &rewriter) const override {
    DenseElementsAttr bias;
    if (!op.getSelectionBias() || !matchPattern(op.getSelectionBias(), m_Constant(&bias)))
      return rewriter.notifyMatchFailure(op, "no constant selection bias");
    RoutingAttr r = op.getRouting();
    SmallVector<APFloat> allBias(bias.getValues<APFloat>());
    auto masked = [](const APFloat &v) { return v.isInfinity() && v.isNegative(); };
    // Without the masked experts, softmax probabilities all grow by one
    // factor: the ranking of p + b survives only if b is the same for every
    // kept expert (a pure mask), and the weights only once renormalized.
    std::optional<APFloat> keptValue;
    bool uniformBias = true;
    for (const APFloat &v : allBias)
      if (!masked(v)) {
        uniformBias &= !keptValue || keptValue->bitwiseIsEqual(v);
        keptValue = v;
      }
    bool scoresIndependent =
        r.getScoring() == ScoringFunc::sigmoid || r.getScoring() == ScoringFunc::relu ||
        (r.getScoring() == ScoringFunc::softmax && r.getNormalize() != NormalizeMode::none &&
         uniformBias);
    if (op.getNumExperts() != op.getNumFfnExperts() || op.getCapacityAttr() || op.getPrevLogits() ||
        r.getNumGroups() != 1 || r.getSelect() != SelectMode::top_k ||
        r.getOrder() != ScoreOrder::score_then_select || !scoresIndependent ||
        !op.getLogits().use_empty())
      return rewriter.notifyMatchFailure(op, "removing experts could change the result");
    SmallVector<int64_t> kept;
    for (auto [e, value] : llvm::enumerate(allBias))
      if (!masked(value))
        kept.push_back(int64_t(e));
    int64_t experts = op.getNumExperts();
    if (int64_t(kept.size()) == experts || int64_t(kept.size()) < r.getK())
      return rewriter.notifyMatchFailure(op, "no masked expert, or fewer than k left");
    bool contiguous = kept.back() - kept.front() + 1 == int64_t(kept.size());
    if (!contiguous && !copyWeights)
      return rewriter.notifyMatchFailure(op, "kept experts are not contiguous: would copy weights");

    Location loc = op.getLoc();
    auto keep = [&](Value v) { return v ? keepRows(rewriter, loc, v, kept) : Value(); };
    int64_t left = int64_t(kept.size());
    // The kept entries of the constant bias, as a constant.
    SmallVector<APFloat> keptBias;
    for (int64_t e : kept)
      keptBias.push_back(allBias[e]);
    auto biasType = RankedTensorType::get({left}, bias.getElementType());
    Value newBias = arith::ConstantOp::create(rewriter, loc, DenseElementsAttr::get(biasType, keptBias));
    auto logitsType = cast<RankedTensorType>(op.getLogits().getType());
    auto layer = LayerOp::create(
        rewriter, loc, op.getY().getType(),
        RankedTensorType::get({logitsType.getDimSize(0), left}, logitsType.getElementType()),
        op.getX(), keep(op.getRouterWeight()), op.getRouterHidden(), keep(op.getRouterBias()), newBias,
        Value(), Value(), keep(op.getFfnUp()), keep(op.getFfnDown()), keep(op.getFfnUpBias()), keep(op.getFfnDownBias()),
        Value(), Value(), op.getSharedUp(),
        op.getSharedDown(), op.getSharedGate(),
        rewriter.getArrayAttr({ExpertGroupAttr::get(getContext(), ExpertKind::ffn, left)}),
        op.getActivationAttr(), r, CapacityAttr());
    rewriter.replaceAllUsesWith(op.getY(), layer.getY());
    rewriter.eraseOp(op);
    return success();
  }

private:
  bool copyWeights;
};

struct MoePruneMaskedExpertsPass
    : mlir::moe::impl::MoePruneMaskedExpertsBase<MoePruneMaskedExpertsPass> {
  using MoePruneMaskedExpertsBase::MoePruneMaskedExpertsBase;
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<PruneMaskedExperts>(&getContext(), copyWeights);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
