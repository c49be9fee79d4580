//===- EliminateZeroExperts.cpp - zero-computation experts out of dispatch ===//
//
// MoE++ zero/copy/constant and AdaMoE null experts: their slots never reach
// dispatch or the grouped GEMMs. See the pass description in Passes.td for
// why this is exact and when it does not apply.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEELIMINATEZEROEXPERTS
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Number of leading FFN experts, when every expert after them is a
/// zero-computation one.
std::optional<int64_t> leadingFfnExperts(ArrayRef<ExpertKind> kinds) {
  int64_t ffn = 0;
  while (ffn < static_cast<int64_t>(kinds.size()) && kinds[ffn] == ExpertKind::ffn)
    ++ffn;
  if (llvm::any_of(kinds.drop_front(ffn), [](ExpertKind k) { return k == ExpertKind::ffn; }))
    return std::nullopt;
  return ffn;
}

struct DispatchFfnExpertsOnly : OpRewritePattern<ZeroComputeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(ZeroComputeOp zc, PatternRewriter &rewriter) const override {
    auto dispatch = zc.getWeights().getDefiningOp<DispatchOp>();
    if (!dispatch || zc.getWeights() != dispatch.getSlotWeight() ||
        dispatch.getIndices() != zc.getIndices())
      return rewriter.notifyMatchFailure(zc, "weights do not come from the dispatch of its slots");
    if (dispatch.getCapacityAttr())
      return rewriter.notifyMatchFailure(zc, "capacity counts every expert; not exact");
    SmallVector<ExpertKind> kinds = expandExpertSet(zc.getExperts());
    std::optional<int64_t> ffn = leadingFfnExperts(kinds);
    int64_t total = static_cast<int64_t>(kinds.size());
    if (!ffn || *ffn == 0 || *ffn == total || dispatch.getNumExpertsAttr().getInt() != total)
      return rewriter.notifyMatchFailure(zc, "no zero-computation experts after the FFN experts");
    // The offsets shrink to the FFN experts: only grouped GEMMs over at most
    // those experts may read them.
    for (OpOperand &use : dispatch.getExpertOffsets().getUses()) {
      Operation *user = use.getOwner();
      bool gemm = isa<GroupedMatmulOp, GroupedMatmulActOp, GroupedMatmulCombineOp>(user) &&
                  use.getOperandNumber() == 2;
      int64_t experts =
          gemm ? cast<RankedTensorType>(user->getOperand(1).getType()).getDimSize(0) : 0;
      if (!gemm || ShapedType::isDynamic(experts) || experts > *ffn)
        return rewriter.notifyMatchFailure(zc, "expert offsets are read by more than the FFN GEMMs");
    }

    Location loc = dispatch.getLoc();
    rewriter.setInsertionPoint(dispatch);
    Value ffnSlots = RestrictSlotsOp::create(rewriter, loc, dispatch.getIndices().getType(),
                                             dispatch.getIndices(), rewriter.getI64IntegerAttr(*ffn));
    auto offsetsType = RankedTensorType::get({*ffn + 1}, rewriter.getI32Type());
    auto ffnDispatch = DispatchOp::create(
        rewriter, loc, dispatch.getRowToken().getType(), offsetsType, dispatch.getSlotRow().getType(),
        dispatch.getSlotWeight().getType(), ffnSlots, dispatch.getWeights(), dispatch.getLogits(),
        dispatch.getSharedWeight(), *ffn, CapacityAttr());

    // The zero-computation experts read the routing weights directly.
    rewriter.setInsertionPoint(zc);
    Value weights = dispatch.getWeights();
    bool contributes = llvm::any_of(kinds, [](ExpertKind k) {
      return k == ExpertKind::copy || k == ExpertKind::constant;
    });
    if (contributes) {
      rewriter.modifyOpInPlace(zc, [&] { zc.getWeightsMutable().assign(weights); });
    } else {
      // Zero and null experts only: y + 0 is y.
      for (Operation *user : llvm::make_early_inc_range(zc->getUsers()))
        if (auto add = dyn_cast<arith::AddFOp>(user); add && add.getRhs() == zc.getResult())
          rewriter.replaceOp(add, add.getLhs());
      if (zc->use_empty())
        rewriter.eraseOp(zc);
      else
        rewriter.modifyOpInPlace(zc, [&] { zc.getWeightsMutable().assign(weights); });
    }
    rewriter.replaceOp(dispatch, ffnDispatch.getResults());
    return success();
  }
};

struct MoeEliminateZeroExpertsPass
    : mlir::moe::impl::MoeEliminateZeroExpertsBase<MoeEliminateZeroExpertsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<DispatchFfnExpertsOnly>(&getContext());
    GreedyRewriteConfig config;
    config.enableFolding(false);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns), config)))
      signalPassFailure();
  }
};
} // namespace
