//===- LowerShapes.cpp - stablehlo value and shape ops to tensor/linalg ---===//

#include "Lowerings.h"
#include "dialects/stablehlo/StablehloDialect.h"
#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/TypeSwitch.h"

#include <limits>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_lowering;
namespace shlo = mlir::moe::stablehlo;

static RankedTensorType typeOf(Value v) { return cast<RankedTensorType>(v.getType()); }


/// A run-time start index (0-d integer tensor) clamped into
/// [0, dimSize - sliceSize], as dynamic_slice and dynamic_update_slice do.
static Value clampedStart(OpBuilder &b, Location loc, Value index0d, int64_t dimSize, int64_t sliceSize) {
  Value raw = extractScalar(b, loc, index0d);
  Value index = arith::IndexCastOp::create(b, loc, b.getIndexType(), raw);
  Value low = scalar::constIndex(b, loc, 0), high = scalar::constIndex(b, loc, dimSize - sliceSize);
  return arith::MinSIOp::create(b, loc, arith::MaxSIOp::create(b, loc, index, low), high);
}

static Results lowerIota(OpBuilder &b, shlo::IotaOp op) {
  auto type = typeOf(op.getOutput());
  Location loc = op.getLoc();
  int64_t dim = op.getIotaDimension();
  Value result = buildParallelGeneric(b, loc, type, {}, {}, [&](OpBuilder &nb, Location nl, ValueRange) -> Value {
    Value i = linalg::IndexOp::create(nb, nl, dim);
    Type element = type.getElementType();
    if (isa<FloatType>(element))
      return arith::UIToFPOp::create(nb, nl, element,
                                     arith::IndexCastOp::create(nb, nl, nb.getI64Type(), i));
    return arith::IndexCastOp::create(nb, nl, element, i);
  });
  return SmallVector<Value>{result};
}

static Results lowerBroadcastInDim(OpBuilder &b, shlo::BroadcastInDimOp op) {
  auto operand = typeOf(op.getOperand());
  auto result = typeOf(op.getResult());
  SmallVector<AffineExpr> exprs;
  for (auto [i, d] : llvm::enumerate(op.getBroadcastDimensions())) {
    bool expands = operand.getDimSize(i) == 1 && result.getDimSize(d) != 1;
    exprs.push_back(expands ? b.getAffineConstantExpr(0) : b.getAffineDimExpr(d));
  }
  AffineMap map = AffineMap::get(result.getRank(), 0, exprs, b.getContext());
  Value v = buildParallelGeneric(b, op.getLoc(), result, op.getOperand(), map,
                                 [](OpBuilder &, Location, ValueRange args) { return args[0]; });
  return SmallVector<Value>{v};
}

static Results lowerReverse(OpBuilder &b, shlo::ReverseOp op) {
  auto type = typeOf(op.getResult());
  SmallVector<AffineExpr> exprs;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    AffineExpr e = b.getAffineDimExpr(d);
    exprs.push_back(llvm::is_contained(op.getDimensions(), d) ? type.getDimSize(d) - 1 - e : e);
  }
  AffineMap map = AffineMap::get(type.getRank(), 0, exprs, b.getContext());
  Value v = buildParallelGeneric(b, op.getLoc(), type, op.getOperand(), map,
                                 [](OpBuilder &, Location, ValueRange args) { return args[0]; });
  return SmallVector<Value>{v};
}

static Results lowerConcatenate(OpBuilder &b, shlo::ConcatenateOp op) {
  Location loc = op.getLoc();
  auto type = typeOf(op.getResult());
  Value result = tensor::EmptyOp::create(b, loc, type.getShape(), type.getElementType());
  int64_t offset = 0;
  int64_t dim = op.getDimension();
  for (Value input : op.getInputs()) {
    auto inputType = typeOf(input);
    SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0)), sizes, strides(type.getRank(), b.getIndexAttr(1));
    for (int64_t s : inputType.getShape())
      sizes.push_back(b.getIndexAttr(s));
    offsets[dim] = b.getIndexAttr(offset);
    result = tensor::InsertSliceOp::create(b, loc, input, result, offsets, sizes, strides);
    offset += inputType.getDimSize(dim);
  }
  return SmallVector<Value>{result};
}

static Results lowerSlice(OpBuilder &b, shlo::SliceOp op) {
  auto type = typeOf(op.getResult());
  SmallVector<OpFoldResult> offsets, sizes, strides;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    offsets.push_back(b.getIndexAttr(op.getStartIndices()[d]));
    sizes.push_back(b.getIndexAttr(type.getDimSize(d)));
    strides.push_back(b.getIndexAttr(op.getStrides()[d]));
  }
  Value v = tensor::ExtractSliceOp::create(b, op.getLoc(), type, op.getOperand(), offsets, sizes, strides);
  return SmallVector<Value>{v};
}

/// Offsets (clamped run-time starts), sizes and unit strides of a window
/// of `sizes` in a tensor of `shape`.
static void clampedWindow(OpBuilder &b, Location loc, ValueRange starts, ArrayRef<int64_t> shape,
                          ArrayRef<int64_t> sizes, SmallVectorImpl<OpFoldResult> &offsets,
                          SmallVectorImpl<OpFoldResult> &sizeAttrs, SmallVectorImpl<OpFoldResult> &strides) {
  for (size_t d = 0; d < shape.size(); ++d) {
    offsets.push_back(clampedStart(b, loc, starts[d], shape[d], sizes[d]));
    sizeAttrs.push_back(b.getIndexAttr(sizes[d]));
    strides.push_back(b.getIndexAttr(1));
  }
}

static Results lowerDynamicSlice(OpBuilder &b, shlo::DynamicSliceOp op) {
  auto type = typeOf(op.getResult());
  SmallVector<OpFoldResult> offsets, sizes, strides;
  clampedWindow(b, op.getLoc(), op.getStartIndices(), typeOf(op.getOperand()).getShape(), type.getShape(), offsets,
                sizes, strides);
  Value v = tensor::ExtractSliceOp::create(b, op.getLoc(), type, op.getOperand(), offsets, sizes, strides);
  return SmallVector<Value>{v};
}

static Results lowerDynamicUpdateSlice(OpBuilder &b, shlo::DynamicUpdateSliceOp op) {
  SmallVector<OpFoldResult> offsets, sizes, strides;
  clampedWindow(b, op.getLoc(), op.getStartIndices(), typeOf(op.getOperand()).getShape(),
                typeOf(op.getUpdate()).getShape(), offsets, sizes, strides);
  Value v = tensor::InsertSliceOp::create(b, op.getLoc(), op.getUpdate(), op.getOperand(), offsets, sizes, strides);
  return SmallVector<Value>{v};
}

static Results lowerPad(OpBuilder &b, shlo::PadOp op) {
  Location loc = op.getLoc();
  auto operand = typeOf(op.getOperand());
  auto type = typeOf(op.getResult());
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (op.getEdgePaddingLow()[d] < 0 || op.getEdgePaddingHigh()[d] < 0)
      return op.emitError("negative padding (cropping) is not supported; slice first"), failure();
  // Fill with the padding value, then write the operand with a stride of
  // interior + 1 starting at the low padding.
  Value value = extractScalar(b, loc, op.getPaddingValue());
  Value empty = tensor::EmptyOp::create(b, loc, type.getShape(), type.getElementType());
  Value filled = linalg::FillOp::create(b, loc, value, empty).getResult(0);
  SmallVector<OpFoldResult> offsets, sizes, strides;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    offsets.push_back(b.getIndexAttr(op.getEdgePaddingLow()[d]));
    sizes.push_back(b.getIndexAttr(operand.getDimSize(d)));
    strides.push_back(b.getIndexAttr(op.getInteriorPadding()[d] + 1));
  }
  Value v = tensor::InsertSliceOp::create(b, loc, op.getOperand(), filled, offsets, sizes, strides);
  return SmallVector<Value>{v};
}

Results stablehlo_lowering::lowerShapeOp(OpBuilder &b, Operation *op) {
  return llvm::TypeSwitch<Operation *, Results>(op)
      .Case([&](shlo::ConstantOp c) -> Results {
        Value v = arith::ConstantOp::create(b, c.getLoc(), cast<TypedAttr>(c.getValue()));
        return SmallVector<Value>{v};
      })
      .Case([&](shlo::IotaOp o) { return lowerIota(b, o); })
      .Case([&](shlo::GetDimensionSizeOp o) -> Results {
        // Static here: checkStaticShapes refused a dynamic operand.
        int64_t size = typeOf(o.getOperand()).getDimSize(o.getDimension());
        if (size > std::numeric_limits<int32_t>::max())
          return o.emitError() << "dimension " << o.getDimension() << " has " << size
                               << " elements, more than its i32 result holds";
        auto type = typeOf(o.getResult());
        Value v = arith::ConstantOp::create(b, o.getLoc(), DenseElementsAttr::get(type, b.getI32IntegerAttr(int32_t(size))));
        return SmallVector<Value>{v};
      })
      .Case([&](shlo::BroadcastInDimOp o) { return lowerBroadcastInDim(b, o); })
      .Case([&](shlo::ReshapeOp o) -> Results {
        Value v = tensor_builders::reshape(b, o.getLoc(), o.getOperand(), typeOf(o.getResult()).getShape());
        return SmallVector<Value>{v};
      })
      .Case([&](shlo::TransposeOp o) -> Results {
        Value v = tensor_builders::transpose(b, o.getLoc(), o.getOperand(), o.getPermutation());
        return SmallVector<Value>{v};
      })
      .Case([&](shlo::SliceOp o) { return lowerSlice(b, o); })
      .Case([&](shlo::DynamicSliceOp o) { return lowerDynamicSlice(b, o); })
      .Case([&](shlo::DynamicUpdateSliceOp o) { return lowerDynamicUpdateSlice(b, o); })
      .Case([&](shlo::ConcatenateOp o) { return lowerConcatenate(b, o); })
      .Case([&](shlo::PadOp o) { return lowerPad(b, o); })
      .Case([&](shlo::ReverseOp o) { return lowerReverse(b, o); })
      .Default([](Operation *) -> Results { return failure(); });
}
