//===- ReadOnlyArguments.cpp - callers' inputs are never overwritten ------===//

#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinTypes.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEREADONLYARGUMENTS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {
struct MoeReadOnlyArgumentsPass
    : mlir::moe::impl::MoeReadOnlyArgumentsBase<MoeReadOnlyArgumentsPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (func.isExternal() || !func.isPublic())
      return;
    BoolAttr readOnly = BoolAttr::get(&getContext(), false);
    for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i)
      if (isa<TensorType>(func.getArgument(i).getType()))
        func.setArgAttr(i, "bufferization.writable", readOnly);
  }
};
} // namespace
