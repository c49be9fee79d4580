//===- ResultsToOutParams.cpp - caller-allocated results where possible ---===//

#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/BuiltinTypes.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOERESULTSTOOUTPARAMS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {
struct MoeResultsToOutParamsPass
    : mlir::moe::impl::MoeResultsToOutParamsBase<MoeResultsToOutParamsPass> {
  void runOnOperation() override {
    bufferization::BufferResultsToOutParamsOpts options;
    options.hoistStaticAllocs = true;
    options.modifyPublicFunctions = true;
    // The caller cannot size a buffer whose shape only the callee knows.
    options.filterFn = [](func::FuncOp *function) {
      return function->isPublic() || llvm::all_of(function->getResultTypes(), [](Type t) {
               auto shaped = dyn_cast<ShapedType>(t);
               return !shaped || shaped.hasStaticShape();
             });
    };
    if (failed(bufferization::promoteBufferResultsToOutParams(getOperation(), options)))
      signalPassFailure();
  }
};
} // namespace
