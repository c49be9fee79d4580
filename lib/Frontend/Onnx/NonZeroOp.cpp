//===- NonZeroOp.cpp - NonZero, a result sized by the data ----------------===//
//
// NonZero's result [rank, n] has as many columns as the input has nonzero
// elements: one sequential pass counts them, a second writes each one's
// coordinates in row-major order. Exporters emit it for torch.where and
// per-expert loops the block matchers did not recognise; those then run
// as plain ops, slowly but correctly.
//
//===----------------------------------------------------------------------===//

#include "OnnxImporter.h"
#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// A loop over [0, count) carrying `inits`; `body` returns the next values.
SmallVector<Value> sequentialLoop(OpBuilder &b, Location l, Value count, ValueRange inits,
                                  function_ref<SmallVector<Value>(OpBuilder &, Location, Value, ValueRange)> body) {
  auto loop = scf::ForOp::create(b, l, scalar::constIndex(b, l, 0), count, scalar::constIndex(b, l, 1), inits);
  OpBuilder::InsertionGuard guard(b);
  Block *block = loop.getBody();
  if (!block->empty() && block->back().hasTrait<OpTrait::IsTerminator>())
    block->back().erase();
  b.setInsertionPointToEnd(block);
  SmallVector<Value> next = body(b, l, loop.getInductionVar(), loop.getRegionIterArgs());
  scf::YieldOp::create(b, l, next);
  return SmallVector<Value>(loop.getResults());
}

Results convertNonZero(NodeContext &ctx) {
  Value data = ctx.input(0);
  if (!data)
    return ctx.error() << "input is required", failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  RankedTensorType type = ctx.inputType(0);
  if (!type.getElementType().isIntOrFloat())
    return ctx.error() << "elements of type " << type.getElementType() << " are not supported", failure();
  int64_t rank = type.getRank();
  SmallVector<Value> sizes;
  Value total = scalar::constIndex(b, loc, 1);
  for (int64_t d = 0; d < rank; ++d) {
    sizes.push_back(tb::dimSize(b, loc, data, d));
    total = arith::MulIOp::create(b, loc, total, sizes.back());
  }
  auto elementAt = [&](OpBuilder &lb, Location l, Value flat) {
    SmallVector<Value> at = scalar::unflattenIndex(lb, l, flat, sizes);
    return std::make_pair(at, scalar::isNonZero(lb, l, tensor::ExtractOp::create(lb, l, data, at)));
  };
  Value one = scalar::constIndex(b, loc, 1), zero = scalar::constIndex(b, loc, 0);
  Value count = sequentialLoop(b, loc, total, ValueRange{zero}, [&](OpBuilder &lb, Location l, Value i, ValueRange acc) {
                  Value nonZero = elementAt(lb, l, i).second;
                  Value step = arith::SelectOp::create(lb, l, nonZero, one, zero);
                  return SmallVector<Value>{arith::AddIOp::create(lb, l, acc[0], step)};
                })[0];
  // Written without branches (one buffer, updated in place on CPU and GPU
  // alike): a zero element's coordinates go to a spare last column, cut
  // off at the end.
  Type i64 = b.getI64Type();
  Value columns = arith::AddIOp::create(b, loc, count, one);
  Value result = tb::empty(b, loc, RankedTensorType::get({rank, ShapedType::kDynamic}, i64), ValueRange{columns});
  Value written = sequentialLoop(
      b, loc, total, ValueRange{result, zero}, [&](OpBuilder &lb, Location l, Value i, ValueRange acc) {
        auto [at, nonZero] = elementAt(lb, l, i);
        Value column = arith::SelectOp::create(lb, l, nonZero, acc[1], count);
        Value next = acc[0];
        for (int64_t d = 0; d < rank; ++d)
          next = tensor::InsertOp::create(lb, l, arith::IndexCastOp::create(lb, l, i64, at[d]), next,
                                          ValueRange{scalar::constIndex(lb, l, d), column});
        Value step = arith::SelectOp::create(lb, l, nonZero, one, zero);
        return SmallVector<Value>{next, arith::AddIOp::create(lb, l, acc[1], step)};
      })[0];
  SmallVector<OpFoldResult> offsets(2, b.getIndexAttr(0)), kept{b.getIndexAttr(rank), count},
      strides(2, b.getIndexAttr(1));
  Value filled = tensor::ExtractSliceOp::create(b, loc, RankedTensorType::get({rank, ShapedType::kDynamic}, i64), written,
                                                offsets, kept, strides);
  return SmallVector<Value>{filled};
}

} // namespace

void mlir::moe::onnx_import::addNonZeroConverter(std::vector<OpConverter> &converters) {
  converters.push_back({"", "NonZero", convertNonZero});
}
