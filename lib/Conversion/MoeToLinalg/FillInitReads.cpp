//===- FillInitReads.cpp - parallel generics read no filled init ----------===//
//
// Upstream's linalg-fuse-elementwise-ops fuses an all-parallel producer
// into a consumer with more loops even when the producer's payload reads
// its init (`out + x` on a zero fill): the fused op then adds the init on
// every iteration of the consumer's extra loops. Such a producer reads a
// constant; writing that constant into its body instead makes the fusion
// exact.
//
//===----------------------------------------------------------------------===//

#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFILLINITREADS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {
/// An all-parallel generic whose payload reads an init that is a
/// linalg.fill: the payload reads the fill's value, the init is the
/// fill's (unread) destination.
struct ReadFillValue : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(linalg::GenericOp op, PatternRewriter &rewriter) const override {
    if (op.getNumReductionLoops() != 0 || !op.hasPureTensorSemantics())
      return failure();
    bool changed = false;
    for (OpOperand &init : op.getDpsInitsMutable()) {
      auto fill = init.get().getDefiningOp<linalg::FillOp>();
      BlockArgument arg = op.getMatchingBlockArgument(&init);
      if (!fill || arg.use_empty() || fill.getInputs().size() != 1 ||
          fill.getInputs()[0].getType() != arg.getType())
        continue;
      rewriter.modifyOpInPlace(op, [&] {
        arg.replaceAllUsesWith(fill.getInputs()[0]);
        init.set(fill.getOutputs()[0]);
      });
      changed = true;
    }
    return success(changed);
  }
};

struct MoeFillInitReadsPass : mlir::moe::impl::MoeFillInitReadsBase<MoeFillInitReadsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<ReadFillValue>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
