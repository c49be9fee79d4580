//===- DequantizeToLinalg.cpp - moe.dequantize to linalg ------------------===//
//
// Packed integer expert weights become floats: on their own as one
// elementwise generic over [E, N, K], or, for the CPU's grouped matmul, one
// expert [N, K] at a time inside its loop over experts (dequantizeExpert),
// so the float weights of the whole layer never exist.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"

#include "dialects/moe/MoeOps.h"
#include "moe/Conversion/MoeToLinalg.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

Value lowering::storedRow(OpBuilder &b, Location loc, DequantizeOp op, Value n) {
  if (!op.getInterleavedRows())
    return n;
  return interleavedRow(b, loc, n, tensor::DimOp::create(b, loc, op.getPacked(), 1));
}

std::pair<Value, Value> lowering::dequantizeParams(OpBuilder &b, Location loc, DequantizeOp op, Value e, Value stored,
                                                   Value k) {
  SmallVector<Value> at = {e, stored};
  if (int64_t blockSize = op.getBlockSize(); blockSize > 0)
    at.push_back(arith::DivUIOp::create(b, loc, k, constIndex(b, loc, blockSize)));
  Type i32 = b.getI32Type();
  Value zero = op.getZeroPoints()
                   ? arith::ExtUIOp::create(b, loc, i32, tensor::ExtractOp::create(b, loc, op.getZeroPoints(), at))
                         .getResult()
                   : arith::ConstantOp::create(b, loc, i32, b.getI32IntegerAttr(1 << (op.getBits() - 1))).getResult();
  return {zero, toF32(b, loc, tensor::ExtractOp::create(b, loc, op.getScales(), at))};
}

Value lowering::dequantizedElement(OpBuilder &b, Location loc, DequantizeOp op, Value e, Value n, Value k) {
  int64_t bits = op.getBits(), pack = op.getValuesPerByte();
  Type i32 = b.getI32Type();
  auto i32Const = [&](int64_t v) { return arith::ConstantOp::create(b, loc, i32, b.getI32IntegerAttr(v)); };
  Value stored = storedRow(b, loc, op, n);
  // Value k of a row: `bits` bits, (k % pack) * bits up from the low end of
  // byte k / pack.
  Value byte = tensor::ExtractOp::create(
      b, loc, op.getPacked(), ValueRange{e, stored, arith::DivUIOp::create(b, loc, k, constIndex(b, loc, pack))});
  Value shift = indexToI32(
      b, loc, arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, k, constIndex(b, loc, pack)),
                                    constIndex(b, loc, bits)));
  Value q = arith::AndIOp::create(b, loc, arith::ShRUIOp::create(b, loc, arith::ExtUIOp::create(b, loc, i32, byte), shift),
                                  i32Const((1 << bits) - 1));
  auto [zero, scale] = dequantizeParams(b, loc, op, e, stored, k);
  Value centred = arith::SIToFPOp::create(b, loc, b.getF32Type(), arith::SubIOp::create(b, loc, q, zero));
  return arith::MulFOp::create(b, loc, centred, scale);
}

SmallVector<Value> lowering::dequantizedDims(OpBuilder &b, Location loc, DequantizeOp op) {
  SmallVector<Value> dims = dimsOf(b, loc, op.getPacked());
  dims[2] = arith::MulIOp::create(b, loc, dims[2], constIndex(b, loc, op.getValuesPerByte()));
  return dims;
}

namespace {
/// The float weights of a moe.dequantize as one elementwise generic: all of
/// them [E, N, K], or only expert `e`'s [N, K].
Value dequantizedTensor(OpBuilder &b, Location loc, DequantizeOp op, Value e) {
  auto type = cast<RankedTensorType>(op.getType());
  int64_t skip = e ? 1 : 0;
  auto resultType = RankedTensorType::get(type.getShape().drop_front(skip), type.getElementType());
  SmallVector<Value> dims = dequantizedDims(b, loc, op), dynamic;
  for (int64_t d = 0; d < resultType.getRank(); ++d)
    if (resultType.isDynamicDim(d))
      dynamic.push_back(dims[d + skip]);
  Value init = tensor::EmptyOp::create(b, loc, resultType, dynamic);
  int64_t rank = resultType.getRank();
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{resultType}, ValueRange{}, ValueRange{init},
      ArrayRef<AffineMap>{b.getMultiDimIdentityMap(rank)},
      SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location nl, ValueRange) {
        SmallVector<Value> at;
        if (e)
          at.push_back(e);
        for (int64_t d = 0; d < rank; ++d)
          at.push_back(linalg::IndexOp::create(nb, nl, d));
        Value w = dequantizedElement(nb, nl, op, at[0], at[1], at[2]);
        linalg::YieldOp::create(nb, nl, fromF32(nb, nl, w, resultType.getElementType()));
      });
  return generic.getResult(0);
}
} // namespace

Value lowering::dequantizeExpert(OpBuilder &b, Location loc, DequantizeOp op, Value e) {
  return dequantizedTensor(b, loc, op, e);
}

bool lowering::isDequantizedPerExpert(DequantizeOp op) {
  return !op->use_empty() && llvm::all_of(op->getUses(), [](OpOperand &use) {
    Operation *user = use.getOwner();
    // Operand 1 of every grouped matmul form is its weights.
    return isa<GroupedMatmulOp, GroupedMatmulActOp, GroupedMatmulCombineOp>(user) && use.getOperandNumber() == 1;
  });
}

namespace {
SmallVector<Value> lowerDequantize(PatternRewriter &b, DequantizeOp op, ContractionForm) {
  return llvm::to_vector(ValueRange(dequantizedTensor(b, op.getLoc(), op, Value())));
}
using LowerDequantize = FunctionLowering<DequantizeOp, lowerDequantize>;
} // namespace

void mlir::moe::populateMoeDequantizeToLinalgPatterns(RewritePatternSet &patterns) {
  patterns.add<LowerDequantize>(patterns.getContext());
}
