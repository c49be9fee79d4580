//===- MoeToLinalgPass.cpp - the convert-moe-to-linalg pass ---------------===//

#include "LoweringUtils.h"

#include "dialects/moe/MoeDialect.h"
#include "dialects/moe/MoeOps.h"
#include "moe/Conversion/MoeToLinalg.h"
#include "moe/Conversion/Passes.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "mlir/Transforms/DialectConversion.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTMOETOLINALG
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
/// A fusion group runs its body: on the CPU there is no kernel boundary to keep.
struct InlineFusedRouting : OpRewritePattern<FusedRoutingOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(FusedRoutingOp op, PatternRewriter &rewriter) const override {
    Block &body = op.getBody().front();
    auto yield = cast<YieldOp>(body.getTerminator());
    SmallVector<Value> results = yield.getValues();
    rewriter.inlineBlockBefore(&body, op, op.getInputs());
    rewriter.replaceOp(op, results);
    rewriter.eraseOp(yield);
    return success();
  }
};

/// A raise nobody checked: the program's own ops define the value.
struct ResolveUncheckedRaising : OpRewritePattern<RaisingCheckOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RaisingCheckOp op, PatternRewriter &rewriter) const override {
    rewriter.replaceOp(op, op.getOriginal());
    return success();
  }
};

struct ConvertMoeToLinalgPass
    : mlir::moe::impl::ConvertMoeToLinalgBase<ConvertMoeToLinalgPass> {
  using ConvertMoeToLinalgBase::ConvertMoeToLinalgBase;

  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    // Layers first: their decomposition is what they mean. Fusion groups
    // are inlined: on the CPU their body is the computation.
    RewritePatternSet decompose(ctx);
    populateMoeDecomposePatterns(decompose);
    decompose.add<InlineFusedRouting, ResolveUncheckedRaising>(ctx);
    GreedyRewriteConfig config;
    config.enableFolding(false);
    if (failed(applyPatternsGreedily(getOperation(), std::move(decompose), config)))
      return signalPassFailure();

    RewritePatternSet patterns(ctx);
    ContractionForm form = parallelContractions                   ? ContractionForm::Parallel
                           : vectorBits >= 512 && bf16DotProducts ? ContractionForm::VectorTiles512Bf16Dot
                           : vectorBits >= 512                    ? ContractionForm::VectorTiles512
                                                                  : ContractionForm::VectorTiles256;
    populateMoeRoutingToLinalgPatterns(patterns, form);
    populateMoeDispatchToLinalgPatterns(patterns);
    populateMoeExpertsToLinalgPatterns(patterns, form);
    populateMoeDequantizeToLinalgPatterns(patterns);
    populateMoeExpertParallelToCallsPatterns(patterns, deviceExchanges);
    ConversionTarget target(*ctx);
    target.addIllegalDialect<MoeDialect>();
    // Quantised weights only grouped matmuls read stay for the CPU's
    // grouped matmul to dequantise expert by expert; erased once it has.
    target.addDynamicallyLegalOp<DequantizeOp>([&](DequantizeOp op) {
      return form != ContractionForm::Parallel && lowering::isDequantizedPerExpert(op);
    });
    target.addLegalDialect<arith::ArithDialect, linalg::LinalgDialect, math::MathDialect,
                           scf::SCFDialect, tensor::TensorDialect>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    if (failed(applyPartialConversion(getOperation(), target, std::move(patterns))))
      return signalPassFailure();
    getOperation()->walk([](DequantizeOp op) {
      if (op->use_empty())
        op->erase();
    });
  }
};
} // namespace
