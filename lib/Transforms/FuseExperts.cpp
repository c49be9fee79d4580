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

/// Replaces `op` by the fused op `Fuse` builds from it and the grouped
/// matmul `Input(op)` comes from, when `op` is that matmul's only user.
template <typename OpTy, Value (*Input)(OpTy), Value (*Fuse)(PatternRewriter &, OpTy, GroupedMatmulOp)>
struct FuseIntoGemm : OpRewritePattern<OpTy> {
  using OpRewritePattern<OpTy>::OpRewritePattern;
  LogicalResult matchAndRewrite(OpTy op, PatternRewriter &rewriter) const override {
    GroupedMatmulOp gemm = soleGemm(Input(op));
    if (!gemm)
      return rewriter.notifyMatchFailure(op, "its input is not a grouped matmul used only here");
    rewriter.replaceOp(op, Fuse(rewriter, op, gemm));
    rewriter.eraseOp(gemm);
    return success();
  }
};

/// act(x W) as one moe.grouped_matmul_act.
Value activationInput(ActivationOp act) { return act.getInput(); }
Value fuseActivation(PatternRewriter &rewriter, ActivationOp act, GroupedMatmulOp gemm) {
  return GroupedMatmulActOp::create(rewriter, act.getLoc(), act.getType(), act.getKind(), gemm.getLhs(),
                                    gemm.getWeights(), gemm.getOffsets(), gemm.getShared());
}

/// combine(x W) as one moe.grouped_matmul_combine.
Value combineRows(CombineOp combine) { return combine.getRows(); }
Value fuseCombine(PatternRewriter &rewriter, CombineOp combine, GroupedMatmulOp gemm) {
  return GroupedMatmulCombineOp::create(rewriter, combine.getLoc(), combine.getType(), gemm.getLhs(),
                                        gemm.getWeights(), gemm.getOffsets(), combine.getSlotRow(),
                                        combine.getSlotWeight(), gemm.getShared());
}

using FuseActivation = FuseIntoGemm<ActivationOp, activationInput, fuseActivation>;
using FuseCombine = FuseIntoGemm<CombineOp, combineRows, fuseCombine>;

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
