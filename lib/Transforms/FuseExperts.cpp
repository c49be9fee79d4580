//===- FuseExperts.cpp - activation and combine into the grouped GEMMs ----===//

#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEEXPERTS
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// The grouped matmul that produces `v`, if `v` is its only use.
GroupedMatmulOp soleGemm(Value v) {
  auto gemm = v.getDefiningOp<GroupedMatmulOp>();
  return gemm && gemm->hasOneUse() ? gemm : GroupedMatmulOp();
}

struct FuseActivation : OpRewritePattern<ActivationOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ActivationOp act, PatternRewriter &rewriter) const override {
    GroupedMatmulOp gemm = soleGemm(act.getInput());
    if (!gemm)
      return rewriter.notifyMatchFailure(act, "input is not a grouped matmul used only here");
    rewriter.replaceOpWithNewOp<GroupedMatmulActOp>(act, act.getType(), act.getKind(),
                                                    gemm.getLhs(), gemm.getWeights(),
                                                    gemm.getOffsets(), gemm.getShared());
    rewriter.eraseOp(gemm);
    return success();
  }
};

struct FuseCombine : OpRewritePattern<CombineOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(CombineOp combine, PatternRewriter &rewriter) const override {
    GroupedMatmulOp gemm = soleGemm(combine.getRows());
    if (!gemm)
      return rewriter.notifyMatchFailure(combine, "rows are not a grouped matmul used only here");
    rewriter.replaceOpWithNewOp<GroupedMatmulCombineOp>(
        combine, combine.getType(), gemm.getLhs(), gemm.getWeights(), gemm.getOffsets(),
        combine.getSlotRow(), combine.getSlotWeight(), gemm.getShared());
    rewriter.eraseOp(gemm);
    return success();
  }
};

struct MoeFuseExpertsPass : mlir::moe::impl::MoeFuseExpertsBase<MoeFuseExpertsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseActivation, FuseCombine>(&getContext());
    GreedyRewriteConfig config;
    config.enableFolding(false);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns), config)))
      signalPassFailure();
  }
};
} // namespace
