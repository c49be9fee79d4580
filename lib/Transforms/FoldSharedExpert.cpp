//===- FoldSharedExpert.cpp - the shared expert as routed expert E --------===//

#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFOLDSHAREDEXPERT
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

int64_t dimOf(Value v, unsigned d) { return cast<RankedTensorType>(v.getType()).getDimSize(d); }

/// y + dense_ffn(x) where y is the fused routed computation of x.
struct FoldSharedExpert : OpRewritePattern<arith::AddFOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(arith::AddFOp add, PatternRewriter &rewriter) const override {
    auto shared = add.getRhs().getDefiningOp<DenseFfnOp>();
    auto down = add.getLhs().getDefiningOp<GroupedMatmulCombineOp>();
    auto up = down ? down.getLhs().getDefiningOp<GroupedMatmulActOp>() : GroupedMatmulActOp();
    auto permute = up ? up.getLhs().getDefiningOp<PermuteOp>() : PermuteOp();
    auto dispatch = permute ? permute.getRowToken().getDefiningOp<DispatchOp>() : DispatchOp();
    if (!shared || !dispatch || !shared->hasOneUse() || !down->hasOneUse() || !up->hasOneUse() ||
        !permute->hasOneUse())
      return rewriter.notifyMatchFailure(add, "not the fused routed computation plus a dense FFN");
    if (down.getShared() || up.getShared() || dispatch.getSharedWeight() || dispatch.getCapacityAttr())
      return rewriter.notifyMatchFailure(add, "capacity, or a shared expert already folded");
    if (permute.getX() != shared.getX() || up.getKind() != shared.getKind())
      return rewriter.notifyMatchFailure(add, "different input or activation");
    Value offsets = dispatch.getExpertOffsets();
    if (up.getOffsets() != offsets || down.getOffsets() != offsets ||
        down.getSlotRow() != dispatch.getSlotRow() || down.getSlotWeight() != dispatch.getSlotWeight())
      return rewriter.notifyMatchFailure(add, "the GEMMs do not read this dispatch's plan");
    for (Value v : dispatch.getResults())
      if (!llvm::all_of(v.getUsers(), [&](Operation *u) { return u == permute || u == up || u == down; }))
        return rewriter.notifyMatchFailure(add, "the plan has other users");
    // Shapes: the shared expert must look like one routed expert.
    Value upW = up.getWeights(), downW = down.getWeights();
    int64_t experts = dimOf(upW, 0);
    if (experts != dispatch.getNumExpertsAttr().getInt() || dimOf(shared.getUp(), 0) != dimOf(upW, 1) ||
        dimOf(shared.getUp(), 1) != dimOf(upW, 2) || dimOf(shared.getDown(), 0) != dimOf(downW, 1) ||
        dimOf(shared.getDown(), 1) != dimOf(downW, 2) || ShapedType::isDynamic(experts))
      return rewriter.notifyMatchFailure(add, "the shared expert's shapes differ from the routed ones");

    Location loc = add.getLoc();
    Value x = shared.getX();
    Type f32 = rewriter.getF32Type(), i32 = rewriter.getI32Type();
    int64_t tokens = dimOf(x, 0), slots = dimOf(dispatch.getIndices(), 1) + 1;
    auto columnType = RankedTensorType::get({tokens, 1}, f32);
    // The shared slot's weight: 1, or sigmoid(gate · x) per token.
    Value weight;
    if (Value gate = shared.getGate()) {
      Value logit = RouterOp::create(rewriter, loc, columnType, x, gate, Value(), Value());
      weight = ScoreOp::create(rewriter, loc, columnType, ScoringFunc::sigmoid, logit, FloatAttr(),
                               IntegerAttr(), IntegerAttr());
    } else {
      Value one = arith::ConstantOp::create(rewriter, loc, rewriter.getF32FloatAttr(1.0));
      SmallVector<Value> dynamic;
      if (ShapedType::isDynamic(tokens))
        dynamic.push_back(tensor::DimOp::create(rewriter, loc, x, 0));
      weight = tensor::SplatOp::create(rewriter, loc, columnType, one, dynamic);
    }
    int64_t rows = ShapedType::isDynamic(tokens) ? ShapedType::kDynamic : tokens * slots;
    auto plan = DispatchOp::create(
        rewriter, loc, RankedTensorType::get({rows}, i32), RankedTensorType::get({experts + 2}, i32),
        RankedTensorType::get({tokens, slots}, i32), RankedTensorType::get({tokens, slots}, f32),
        dispatch.getIndices(), dispatch.getWeights(), dispatch.getLogits(), weight, experts,
        CapacityAttr());
    auto xType = cast<RankedTensorType>(x.getType());
    Value grouped = PermuteOp::create(rewriter, loc,
                                      RankedTensorType::get({rows, xType.getDimSize(1)}, xType.getElementType()),
                                      x, plan.getRowToken());
    auto actType = cast<RankedTensorType>(up.getType());
    Value act = GroupedMatmulActOp::create(
        rewriter, loc, RankedTensorType::get({rows, actType.getDimSize(1)}, actType.getElementType()),
        up.getKind(), grouped, upW, plan.getExpertOffsets(), shared.getUp());
    Value y = GroupedMatmulCombineOp::create(rewriter, loc, add.getType(), act, downW,
                                             plan.getExpertOffsets(), plan.getSlotRow(),
                                             plan.getSlotWeight(), shared.getDown());
    rewriter.replaceOp(add, y);
    for (Operation *dead : {down.getOperation(), up.getOperation(), permute.getOperation(),
                            dispatch.getOperation(), shared.getOperation()})
      rewriter.eraseOp(dead);
    return success();
  }
};

struct MoeFoldSharedExpertPass : mlir::moe::impl::MoeFoldSharedExpertBase<MoeFoldSharedExpertPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FoldSharedExpert>(&getContext());
    GreedyRewriteConfig config;
    config.enableFolding(false);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns), config)))
      signalPassFailure();
  }
};
} // namespace
