//===- Decompose.cpp - moe.layer to decomposed moe ops --------------------===//
//
// The only bridge from the layer level to the decomposed level. The op
// sequence each routing configuration becomes is specified in
// docs/design.md ("Decomposition"); this file follows it step by step.
//
//===----------------------------------------------------------------------===//

#include "moe/Transforms/Passes.h"
#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/DecomposeLayer.h"
#include "moe/Transforms/LayerRouting.h"
#include "moe/Transforms/RoutedExperts.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDECOMPOSE
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Multiplies `x` elementwise by a scalar, keeping its type.
Value scaleTensor(OpBuilder &b, Location loc, Value x, double factor) {
  auto type = cast<RankedTensorType>(x.getType());
  Value scalar = arith::ConstantOp::create(b, loc, b.getFloatAttr(type.getElementType(), factor));
  SmallVector<Value> dynamicSizes;
  for (unsigned d = 0; d < type.getRank(); ++d)
    if (type.isDynamicDim(d))
      dynamicSizes.push_back(tensor::DimOp::create(b, loc, x, d));
  Value splat = tensor::SplatOp::create(b, loc, type, scalar, dynamicSizes);
  return arith::MulFOp::create(b, loc, x, splat);
}

/// `x` (f32) rounded to `type` and widened back: the logits or scores a
/// program computes in 16 bits, which its selection reads.
Value roundThrough(OpBuilder &b, Location loc, Value x, Type type) {
  auto f32Type = cast<RankedTensorType>(x.getType());
  Value narrow = arith::TruncFOp::create(b, loc, f32Type.clone(type), x);
  return arith::ExtFOp::create(b, loc, f32Type, narrow);
}

/// Expert indices of the zero and null experts: left out of `computing`
/// renormalization.
SmallVector<int64_t> nonComputingExperts(ArrayAttr experts) {
  SmallVector<int64_t> ids;
  for (auto [id, kind] : llvm::enumerate(expandExpertSet(experts)))
    if (kind == ExpertKind::zero || kind == ExpertKind::null)
      ids.push_back(id);
  return ids;
}

} // namespace

Value mlir::moe::createScore(OpBuilder &rewriter, Location loc, RoutingAttr routing, Value logits) {
  bool gumbel = routing.getScoring() == ScoringFunc::gumbel_softmax;
  return ScoreOp::create(rewriter, loc, logits.getType(), routing.getScoring(), logits,
                         gumbel ? rewriter.getF64FloatAttr(routing.getTau().convertToDouble()) : FloatAttr(),
                         gumbel ? rewriter.getI64IntegerAttr(routing.getSamples()) : IntegerAttr(),
                         gumbel ? rewriter.getI64IntegerAttr(routing.getSeed()) : IntegerAttr());
}

LayerRouting mlir::moe::buildLayerRouting(OpBuilder &rewriter, LayerOp op) {
  Location loc = op.getLoc();
  RoutingAttr routing = op.getRouting();
  CapacityAttr cap = op.getCapacityAttr();
  Type f32 = rewriter.getF32Type(), i32 = rewriter.getI32Type();
  Value x = op.getX();
  auto xType = cast<RankedTensorType>(x.getType());
  int64_t tokens = xType.getDimSize(0), hidden = xType.getDimSize(1);
  int64_t experts = op.getNumExperts(), k = routing.getK();

  // With group_size S > 1 (MEO's sequence-level gating) the routing runs
  // once per group of S tokens, on their mean, and is expanded afterwards.
  int64_t groupSize = routing.getGroupSize();
  bool groupRouting = groupSize > 1;
  int64_t routeRows = !groupRouting || ShapedType::isDynamic(tokens)
                          ? tokens
                          : (tokens + groupSize - 1) / groupSize;
  Value routerInput = x;
  if (groupRouting)
    routerInput = GroupMeanOp::create(rewriter, loc, tensorOf({routeRows, hidden}, xType.getElementType()),
                                      x, groupSize);

  // Router logits, with the gating residual of the previous layer.
  Value logits = RouterOp::create(rewriter, loc, tensorOf({routeRows, experts}, f32), routerInput,
                                  op.getRouterWeight(), op.getRouterHidden(), op.getRouterBias());
  if (Type rounded = routing.getLogitsType())
    logits = roundThrough(rewriter, loc, logits, rounded);
  if (op.getPrevLogits())
    logits = GatingResidualOp::create(rewriter, loc, logits.getType(), logits,
                                      op.getPrevLogits(), op.getResidualWeight());

  // Selection. Fill-in rectification also selects the (k+1)-th choice.
  int64_t picks = k + ((cap && cap.fillsIn()) ? 1 : 0);
  SmallVector<int64_t> skip;
  if (routing.getNormalize() == NormalizeMode::computing)
    skip = nonComputingExperts(op.getExperts());
  int64_t denominatorSlots = (cap && cap.fillsIn()) ? k : 0;
  Value weights, indices;
  auto selectTopK = [&](Value scores) {
    auto topk = TopKOp::create(rewriter, loc, tensorOf({routeRows, picks}, f32),
                               tensorOf({routeRows, picks}, i32), scores, op.getSelectionBias(),
                               picks, routing.getNumGroups(), routing.getTopkGroups(),
                               routing.getGroupScore());
    weights = topk.getWeights();
    indices = topk.getIndices();
  };

  if (routing.getOrder() == ScoreOrder::select_then_score) {
    // Top-k on the logits, softmax over the picks (Mixtral).
    selectTopK(logits);
    weights = RenormalizeOp::create(rewriter, loc, weights.getType(), RenormMode::softmax,
                                    weights, indices, skip, routing.getScale(),
                                    denominatorSlots, APFloat(0.0));
  } else {
    Value scores = createScore(rewriter, loc, routing, logits);
    if (Type rounded = routing.getScoresType())
      scores = roundThrough(rewriter, loc, scores, rounded);
    switch (routing.getSelect()) {
    case SelectMode::top_k:
      selectTopK(scores);
      break;
    case SelectMode::threshold: {
      auto sel = ThresholdOp::create(rewriter, loc, tensorOf({routeRows, k}, f32),
                                     tensorOf({routeRows, k}, i32), scores, k,
                                     routing.getThreshold());
      weights = sel.getWeights();
      indices = sel.getIndices();
      break;
    }
    case SelectMode::expert_choice:
    case SelectMode::bidirectional: {
      bool bidirectional = routing.getSelect() == SelectMode::bidirectional;
      int64_t slots = bidirectional ? k : experts;
      auto sel = ExpertChoiceOp::create(
          rewriter, loc, tensorOf({routeRows, slots}, f32), tensorOf({routeRows, slots}, i32),
          scores, routing.getCapacity(),
          bidirectional ? rewriter.getI64IntegerAttr(k) : IntegerAttr());
      weights = sel.getWeights();
      indices = sel.getIndices();
      break;
    }
    }
    if (routing.getNormalize() != NormalizeMode::none)
      weights = RenormalizeOp::create(rewriter, loc, weights.getType(), RenormMode::sum,
                                      weights, indices, skip, routing.getScale(),
                                      denominatorSlots, routing.getNormEpsilon());
    else if (routing.getScale().convertToDouble() != 1.0)
      weights = scaleTensor(rewriter, loc, weights, routing.getScale().convertToDouble());
  }

  return {weights, indices, logits};
}

DecomposedLayer mlir::moe::buildDecomposedLayer(OpBuilder &rewriter, LayerOp op,
                                                const ExpertPlacement *placement, int64_t rank) {
  Location loc = op.getLoc();
  RoutingAttr routing = op.getRouting();
  CapacityAttr cap = op.getCapacityAttr();
  Value x = op.getX();
  auto xType = cast<RankedTensorType>(x.getType());
  int64_t tokens = xType.getDimSize(0);
  int64_t experts = op.getNumExperts(), k = routing.getK();

  LayerRouting route = buildLayerRouting(rewriter, op);
  Value weights = route.weights, indices = route.indices, logits = route.logits;
  int64_t groupSize = routing.getGroupSize();
  bool groupRouting = groupSize > 1;

  // Every token takes its group's selection and weights.
  if (groupRouting) {
    auto expand = [&](Value v) {
      auto type = cast<RankedTensorType>(v.getType());
      return ExpandGroupsOp::create(rewriter, loc, tensorOf({tokens, type.getDimSize(1)}, type.getElementType()),
                                    v, x, groupSize)
          .getResult();
    };
    weights = expand(weights);
    indices = expand(indices);
    logits = expand(logits);
  }

  // Expert input: MoE++ multiplies it by k; the router saw the unscaled x.
  Value expertInput = x;
  if (routing.getInputScale().convertToDouble() != 1.0)
    expertInput = scaleTensor(rewriter, loc, x, routing.getInputScale().convertToDouble());

  // Dispatch plan and the FFN group, on tensors grouped by expert.
  RoutedExperts routed;
  routed.tokens = expertInput;
  routed.weights = weights;
  routed.indices = indices;
  routed.rectifyLogits = (cap && cap.rectifiesIntraDevice()) ? logits : Value();
  routed.up = op.getFfnUp();
  routed.down = op.getFfnDown();
  routed.upBias = op.getFfnUpBias();
  routed.downBias = op.getFfnDownBias();
  routed.numExperts = experts;
  routed.k = k;
  routed.capacity = cap;
  routed.activation = op.getActivation();
  routed.placement = placement;
  routed.rank = rank;
  RoutedExpertsResult ffn = buildRoutedExperts(rewriter, loc, routed);
  Value y = ffn.y;

  // Zero-computation experts add their elementwise contribution (0 for
  // zero and null experts); the op also carries the expert set that
  // zero-computation elimination needs. They read the layer's own expert
  // ids: on every rank they are computed where the token is.
  bool hasZeroComputation = op.getNumExperts() > op.getNumFfnExperts();
  if (hasZeroComputation) {
    Value zc = ZeroComputeOp::create(rewriter, loc, xType, expertInput, indices,
                                     ffn.slotWeight, op.getConstantVectors(),
                                     op.getConstantMix(), op.getExperts());
    y = arith::AddFOp::create(rewriter, loc, y, zc);
  }

  // The shared expert sees every token, unscaled.
  if (op.getSharedUp()) {
    Value shared = DenseFfnOp::create(rewriter, loc, xType, op.getActivation(), x,
                                      op.getSharedUp(), op.getSharedDown(), op.getSharedGate());
    y = arith::AddFOp::create(rewriter, loc, y, shared);
  }
  return {y, logits};
}

namespace {

struct DecomposeLayer : OpRewritePattern<LayerOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(LayerOp op, PatternRewriter &rewriter) const override {
    DecomposedLayer layer = buildDecomposedLayer(rewriter, op);
    rewriter.replaceOp(op, {layer.y, layer.logits});
    return success();
  }
};

struct MoeDecomposePass : mlir::moe::impl::MoeDecomposeBase<MoeDecomposePass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateMoeDecomposePatterns(patterns);
    // Only moe.layer ops are rewritten; folding stays with --canonicalize.
    GreedyRewriteConfig config;
    config.enableFolding(false);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns), config)))
      signalPassFailure();
  }
};
} // namespace

void mlir::moe::populateMoeDecomposePatterns(RewritePatternSet &patterns) {
  patterns.add<DecomposeLayer>(patterns.getContext());
}
