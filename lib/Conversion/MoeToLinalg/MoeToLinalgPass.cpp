//===- MoeToLinalgPass.cpp - the convert-moe-to-linalg pass ---------------===//

#include "dialects/moe/MoeDialect.h"
#include "dialects/moe/MoeOps.h"
#include "moe/Conversion/MoeToLinalg.h"
#include "moe/Conversion/Passes.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Transforms/DialectConversion.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTMOETOLINALG
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
struct ConvertMoeToLinalgPass
    : mlir::moe::impl::ConvertMoeToLinalgBase<ConvertMoeToLinalgPass> {
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    // Layers first: their decomposition is what they mean.
    RewritePatternSet decompose(ctx);
    populateMoeDecomposePatterns(decompose);
    GreedyRewriteConfig config;
    config.enableFolding(false);
    if (failed(applyPatternsGreedily(getOperation(), std::move(decompose), config)))
      return signalPassFailure();

    RewritePatternSet patterns(ctx);
    populateMoeRoutingToLinalgPatterns(patterns);
    populateMoeDispatchToLinalgPatterns(patterns);
    populateMoeExpertsToLinalgPatterns(patterns);
    ConversionTarget target(*ctx);
    target.addIllegalDialect<MoeDialect>();
    target.addLegalDialect<arith::ArithDialect, linalg::LinalgDialect, math::MathDialect,
                           scf::SCFDialect, tensor::TensorDialect>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    if (failed(applyPartialConversion(getOperation(), target, std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
