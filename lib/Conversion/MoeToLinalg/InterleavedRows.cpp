//===- InterleavedRows.cpp - gate/up rows read where they are stored ------===//
//
// ONNX Runtime's MoE stores a SwiGLU expert's fc1 rows interleaved, gate and
// up alternating (swiglu_fusion = 1), while the moe ops take the gate rows,
// then the up rows. An importer regroups them with a reshape, a transpose
// and a reshape; for weights that are arguments that is a copy of every
// expert's fc1 on every call, routed or not. The CPU kernels instead read
// row n of the regrouped weights from row interleavedRow(n) of the stored
// ones.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

Value lowering::interleavedRow(OpBuilder &b, Location loc, Value n, Value rows) {
  Value half = arith::DivUIOp::create(b, loc, rows, constIndex(b, loc, 2));
  Value pair = arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, n, half), constIndex(b, loc, 2));
  return arith::AddIOp::create(b, loc, pair, arith::DivUIOp::create(b, loc, n, half));
}

namespace {

/// The value `v` reshapes (through any chain of tensor.expand_shape and
/// tensor.collapse_shape, which keep the row-major order of the elements).
Value beforeReshapes(Value v) {
  while (true) {
    if (auto expand = v.getDefiningOp<tensor::ExpandShapeOp>())
      v = expand.getSrc();
    else if (auto collapse = v.getDefiningOp<tensor::CollapseShapeOp>())
      v = collapse.getSrc();
    else
      return v;
  }
}

} // namespace

Value lowering::interleavedRowsSource(Value stacked) {
  // [E, 2F, K] reshaped to [E, F, 2, K], transposed to [E, 2, F, K] and
  // reshaped back to [E, 2F, K] (with or without a flat step between).
  auto type = cast<RankedTensorType>(stacked.getType());
  auto transpose = beforeReshapes(stacked).getDefiningOp<linalg::TransposeOp>();
  if (type.getRank() != 3 || !type.hasStaticShape() || type.getDimSize(1) % 2 != 0 || !transpose ||
      !transpose.hasPureTensorSemantics() || transpose.getPermutation() != ArrayRef<int64_t>{0, 2, 1, 3})
    return {};
  int64_t e = type.getDimSize(0), half = type.getDimSize(1) / 2, k = type.getDimSize(2);
  auto pairs = cast<RankedTensorType>(transpose.getInput().getType());
  if (pairs.getShape() != ArrayRef<int64_t>{e, half, 2, k})
    return {};
  Value source = beforeReshapes(transpose.getInput());
  return source.getType() == type ? source : Value();
}
