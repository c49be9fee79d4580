//===- LowerStablehloPass.cpp - the moe-lower-stablehlo pass --------------===//

#include "Lowerings.h"
#include "dialects/moe/MoeDialect.h"
#include "dialects/stablehlo/StablehloDialect.h"
#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOELOWERSTABLEHLO
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_lowering;
namespace shlo = mlir::moe::stablehlo;

namespace {

bool isStablehloOp(Operation *op) {
  return isa_and_nonnull<shlo::StablehloDialect, chlo::ChloDialect>(op->getDialect());
}

/// Shapes must be static: the lowering computes sizes, offsets and loop
/// bounds from them.
LogicalResult checkStaticShapes(Operation *op) {
  auto check = [&](Value v, StringRef what, unsigned i) -> LogicalResult {
    auto type = dyn_cast<RankedTensorType>(v.getType());
    if (type && !type.hasStaticShape())
      return op->emitError() << "'" << op->getName() << "' " << what << " " << i << " has the dynamic shape " << type
                             << "; only static shapes are supported (export with concrete shapes, e.g. without "
                                "jax.export shape polymorphism)";
    return success();
  };
  for (auto [i, v] : llvm::enumerate(op->getOperands()))
    if (failed(check(v, "operand", i)))
      return failure();
  for (auto [i, v] : llvm::enumerate(op->getResults()))
    if (failed(check(v, "result", i)))
      return failure();
  return success();
}

Results lowerOp(OpBuilder &b, Operation *op) {
  if (isa<shlo::ConstantOp, shlo::IotaOp, shlo::GetDimensionSizeOp, shlo::BroadcastInDimOp, shlo::ReshapeOp, shlo::TransposeOp, shlo::SliceOp,
          shlo::DynamicSliceOp, shlo::DynamicUpdateSliceOp, shlo::ConcatenateOp, shlo::PadOp, shlo::ReverseOp>(op))
    return lowerShapeOp(b, op);
  if (isa<shlo::DotGeneralOp, chlo::RaggedDotOp, shlo::ReduceOp, shlo::ReduceWindowOp>(op))
    return lowerContraction(b, op);
  if (isa<shlo::GatherOp, shlo::ScatterOp, shlo::SortOp, chlo::TopKOp>(op))
    return lowerIndexing(b, op);
  if (auto call = dyn_cast<shlo::CustomCallOp>(op))
    return op->emitError() << "custom_call @" << call.getCallTargetName()
                           << " is not supported (the known targets, such as mhlo.topk, are rewritten by "
                              "moe-normalize-stablehlo)",
           failure();
  if (isa<shlo::CompositeOp>(op))
    return op->emitError("composites must be inlined first (moe-normalize-stablehlo, then inline)"), failure();
  Results r = lowerElementwise(b, op);
  if (failed(r))
    op->emitError() << "'" << op->getName() << "' has no lowering";
  return r;
}

struct MoeLowerStablehloPass : public mlir::moe::impl::MoeLowerStablehloBase<MoeLowerStablehloPass> {
  void runOnOperation() override {
    // Top-level stablehlo ops in program order; ops inside their bodies are
    // read by the lowering of the op that owns them.
    SmallVector<Operation *> ops;
    getOperation()->walk<WalkOrder::PreOrder>([&](Operation *op) {
      if (!isStablehloOp(op))
        return WalkResult::advance();
      ops.push_back(op);
      return WalkResult::skip();
    });
    bool failedAny = false;
    for (Operation *op : ops)
      if (failed(checkStaticShapes(op)))
        failedAny = true;
    if (failedAny)
      return signalPassFailure();
    for (Operation *op : ops) {
      OpBuilder b(op);
      Results results = lowerOp(b, op);
      if (failed(results))
        return signalPassFailure();
      op->replaceAllUsesWith(*results);
      op->erase();
    }
  }
};

} // namespace
