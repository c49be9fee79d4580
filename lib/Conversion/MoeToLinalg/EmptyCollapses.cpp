//===- EmptyCollapses.cpp - collapses of tensors with no elements ---------===//
//
// tensor.collapse_shape of a source with a static 0 in a group that also
// has dynamic sizes bufferizes to a memref.collapse_shape whose verifier
// rejects it (the group's collapsed size is typed static 0, while a group
// with dynamic sizes must collapse to a dynamic one). The source has no
// elements, so the collapse is a tensor.empty of the result's sizes.
//
//===----------------------------------------------------------------------===//

#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEEMPTYCOLLAPSES
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {
struct MoeEmptyCollapsesPass : public mlir::moe::impl::MoeEmptyCollapsesBase<MoeEmptyCollapsesPass> {
  void runOnOperation() override {
    SmallVector<tensor::CollapseShapeOp> collapses;
    getOperation()->walk([&](tensor::CollapseShapeOp op) { collapses.push_back(op); });
    for (tensor::CollapseShapeOp collapse : collapses) {
      RankedTensorType source = collapse.getSrcType(), result = collapse.getResultType();
      SmallVector<ReassociationIndices> groups = collapse.getReassociationIndices();
      auto holdsZero = [&](const ReassociationIndices &group) {
        return llvm::any_of(group, [&](int64_t d) { return source.getDimSize(d) == 0; });
      };
      auto dynamicWithZero = [&](const ReassociationIndices &group) {
        return holdsZero(group) && llvm::any_of(group, [&](int64_t d) { return source.isDynamicDim(d); });
      };
      if (llvm::none_of(groups, dynamicWithZero))
        continue;
      // The result's sizes: 0 where the group holds a 0, else the product
      // of the group's sizes (read where dynamic).
      OpBuilder b(collapse);
      Location loc = collapse.getLoc();
      SmallVector<int64_t> shape;
      SmallVector<Value> dynamicSizes;
      for (const ReassociationIndices &group : groups) {
        if (holdsZero(group)) {
          shape.push_back(0);
          continue;
        }
        int64_t known = 1;
        Value size;
        for (int64_t d : group) {
          if (!source.isDynamicDim(d)) {
            known *= source.getDimSize(d);
            continue;
          }
          Value dim = tensor::DimOp::create(b, loc, collapse.getSrc(), d);
          size = size ? arith::MulIOp::create(b, loc, size, dim).getResult() : dim;
        }
        if (!size) {
          shape.push_back(known);
          continue;
        }
        if (known != 1)
          size = arith::MulIOp::create(b, loc, size, arith::ConstantIndexOp::create(b, loc, known));
        shape.push_back(ShapedType::kDynamic);
        dynamicSizes.push_back(size);
      }
      Value empty = tensor::EmptyOp::create(b, loc, shape, result.getElementType(), dynamicSizes);
      if (empty.getType() != result)
        empty = tensor::CastOp::create(b, loc, result, empty);
      collapse.getResult().replaceAllUsesWith(empty);
      collapse->erase();
    }
  }
};
} // namespace
