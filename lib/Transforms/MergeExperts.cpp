//===- MergeExperts.cpp - Merging Experts into One (MEO) ------------------===//
//
// A moe.layer with grouped routing becomes: its routing (per group), dense
// gates, the experts merged by those gates once per group, and one grouped
// matmul per group of tokens. See the pass description in Passes.td for
// exactness and the cost-model guard.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/LayerRouting.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEMERGEEXPERTS
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Offsets [G + 1] of the row ranges of the token groups: min(g · S, T).
Value groupOffsets(OpBuilder &b, Location loc, Value x, int64_t groups, int64_t groupSize) {
  Value tokens = tensor::DimOp::create(b, loc, x, 0);
  SmallVector<Value> dynamic;
  if (ShapedType::isDynamic(groups)) {
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    Value size = arith::ConstantIndexOp::create(b, loc, groupSize);
    Value g = arith::DivUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, tokens, arith::SubIOp::create(b, loc, size, one)), size);
    dynamic.push_back(arith::AddIOp::create(b, loc, g, one));
  }
  auto type = tensorOf({ShapedType::isDynamic(groups) ? groups : groups + 1}, b.getI32Type());
  return tensor::GenerateOp::create(b, loc, type, dynamic, [&](OpBuilder &nb, Location nl, ValueRange at) {
    Value start = arith::MulIOp::create(nb, nl, at[0], arith::ConstantIndexOp::create(nb, nl, groupSize));
    Value clamped = arith::MinUIOp::create(nb, nl, start, tokens);
    tensor::YieldOp::create(nb, nl, arith::IndexCastOp::create(nb, nl, nb.getI32Type(), clamped).getResult());
  });
}

struct MergeLayerExperts : OpRewritePattern<LayerOp> {
  MergeLayerExperts(MLIRContext *ctx, bool approximate)
      : OpRewritePattern(ctx), approximate(approximate) {}

  LogicalResult matchAndRewrite(LayerOp op, PatternRewriter &rewriter) const override {
    RoutingAttr routing = op.getRouting();
    int64_t groupSize = routing.getGroupSize();
    if (groupSize <= 1)
      return rewriter.notifyMatchFailure(op, "tokens do not share their routing (group_size 1)");
    if (op.getNumExperts() != op.getNumFfnExperts() || op.getCapacityAttr() ||
        routing.getInputScale().convertToDouble() != 1.0)
      return rewriter.notifyMatchFailure(op, "zero-computation experts, capacity or input scale");
    if (op.getFfnUpBias())
      return rewriter.notifyMatchFailure(op, "expert biases (a merged expert would weight them too)");
    bool linear = op.getActivation() == Activation::linear;
    if (!linear && !approximate)
      return rewriter.notifyMatchFailure(op, "non-linear experts: merging changes the function");

    auto xType = cast<RankedTensorType>(op.getX().getType());
    auto upType = cast<RankedTensorType>(op.getFfnUp().getType());
    auto downType = cast<RankedTensorType>(op.getFfnDown().getType());
    int64_t tokens = xType.getDimSize(0), hidden = xType.getDimSize(1);
    int64_t experts = upType.getDimSize(0), u = upType.getDimSize(1), f = downType.getDimSize(2);
    double t = ShapedType::isDynamic(tokens) ? double(groupSize) : double(tokens);
    double groups = std::ceil(t / groupSize), k = routing.getK(), h = hidden;
    double perExpert = u * h + h * f;
    double unmerged = 2 * t * k * perExpert;
    double merged = linear ? 2 * experts * h * f * h + 2 * groups * experts * h * h + 2 * t * h * h
                           : 2 * groups * experts * perExpert + 2 * t * perExpert;
    if (merged >= unmerged)
      return rewriter.notifyMatchFailure(op, "the cost model says merging does not save work");

    Location loc = op.getLoc();
    Value x = op.getX();
    LayerRouting route = buildLayerRouting(rewriter, op);
    int64_t groupRows = cast<RankedTensorType>(route.weights.getType()).getDimSize(0);
    Type f32 = rewriter.getF32Type();
    Value gates = DenseGatesOp::create(rewriter, loc, tensorOf({groupRows, experts}, f32),
                                       route.weights, route.indices, experts);
    Value offsets = groupOffsets(rewriter, loc, x, groupRows, groupSize);
    Value y;
    if (linear) {
      Value maps = ComposeExpertsOp::create(rewriter, loc, tensorOf({experts, hidden, hidden}, f32),
                                            op.getFfnDown(), op.getFfnUp());
      Value merged = MergeExpertsOp::create(rewriter, loc, tensorOf({groupRows, hidden, hidden}, f32),
                                            maps, gates);
      y = GroupedMatmulOp::create(rewriter, loc, xType, x, merged, offsets, /*shared=*/Value());
    } else {
      Value up = MergeExpertsOp::create(
          rewriter, loc, tensorOf({groupRows, u, hidden}, upType.getElementType()), op.getFfnUp(), gates);
      Value down = MergeExpertsOp::create(
          rewriter, loc, tensorOf({groupRows, hidden, f}, downType.getElementType()), op.getFfnDown(), gates);
      Value hiddenRows = GroupedMatmulOp::create(
          rewriter, loc, tensorOf({tokens, u}, xType.getElementType()), x, up, offsets, Value());
      Value act = ActivationOp::create(rewriter, loc, tensorOf({tokens, f}, xType.getElementType()),
                                       op.getActivation(), hiddenRows);
      y = GroupedMatmulOp::create(rewriter, loc, xType, act, down, offsets, Value());
    }
    if (op.getSharedUp())
      y = arith::AddFOp::create(rewriter, loc, y,
                                DenseFfnOp::create(rewriter, loc, xType, op.getActivation(), x,
                                                   op.getSharedUp(), op.getSharedDown(),
                                                   op.getSharedGate()));
    Value logits = ExpandGroupsOp::create(rewriter, loc, op.getLogits().getType(), route.logits, x,
                                          groupSize);
    rewriter.replaceOp(op, {y, logits});
    return success();
  }

private:
  bool approximate;
};

struct MoeMergeExpertsPass : mlir::moe::impl::MoeMergeExpertsBase<MoeMergeExpertsPass> {
  using MoeMergeExpertsBase::MoeMergeExpertsBase;
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<MergeLayerExperts>(&getContext(), approximate);
    GreedyRewriteConfig config;
    config.enableFolding(false);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns), config)))
      signalPassFailure();
  }
};
} // namespace
