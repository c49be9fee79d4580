//===- LocalizeEmptyTensors.cpp - a region's own tensor.empty -------------===//
//
// CSE hoists identical tensor.empty ops out of scf regions (the branches of
// a stablehlo.case, a loop body) into one dominating op. One-shot
// bufferization then gives every use the same buffer, and its alias
// analysis misses the conflict when a branch's result lives in that buffer
// while a later op writes it: the branch's result is overwritten. Giving
// each region its own tensor.empty (as bufferization recommends: an empty
// tensor per use) keeps the buffers apart.
//
//===----------------------------------------------------------------------===//

#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOELOCALIZEEMPTYTENSORS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {
struct MoeLocalizeEmptyTensorsPass
    : public mlir::moe::impl::MoeLocalizeEmptyTensorsBase<MoeLocalizeEmptyTensorsPass> {
  void runOnOperation() override {
    SmallVector<tensor::EmptyOp> empties;
    getOperation()->walk([&](tensor::EmptyOp op) { empties.push_back(op); });
    for (tensor::EmptyOp empty : empties) {
      for (OpOperand &use : llvm::make_early_inc_range(empty->getUses())) {
        Operation *user = use.getOwner();
        if (user->getParentRegion() == empty->getParentRegion())
          continue;
        OpBuilder b(user);
        use.set(b.clone(*empty)->getResult(0));
      }
    }
  }
};
} // namespace
