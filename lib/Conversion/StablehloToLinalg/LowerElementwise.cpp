//===- LowerElementwise.cpp - elementwise stablehlo ops to linalg.generic -===//

#include "Lowerings.h"
#include "dialects/stablehlo/StablehloDialect.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_lowering;

Value stablehlo_lowering::buildParallelGeneric(OpBuilder &b, Location loc, RankedTensorType resultType,
                                               ValueRange inputs, ArrayRef<AffineMap> maps,
                                               function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
  Value init = tensor::EmptyOp::create(b, loc, resultType.getShape(), resultType.getElementType());
  SmallVector<AffineMap> allMaps(maps);
  allMaps.push_back(b.getMultiDimIdentityMap(resultType.getRank()));
  SmallVector<utils::IteratorType> iterators(resultType.getRank(), utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, resultType, inputs, ValueRange{init}, allMaps, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(nb, nl, body(nb, nl, args.drop_back()));
      });
  return generic.getResult(0);
}

Value stablehlo_lowering::extractScalar(OpBuilder &b, Location loc, Value tensor0d) {
  return tensor::ExtractOp::create(b, loc, tensor0d, ValueRange{});
}

Results stablehlo_lowering::lowerElementwise(OpBuilder &b, Operation *op) {
  if (op->getNumResults() != 1)
    return failure();
  auto resultType = cast<RankedTensorType>(op->getResult(0).getType());
  // Operands have the result's shape, except 0-d select predicates and
  // clamp bounds, which every element reads.
  SmallVector<AffineMap> maps;
  for (Value operand : op->getOperands()) {
    if (cast<RankedTensorType>(operand.getType()).getRank() == 0 && resultType.getRank() != 0)
      maps.push_back(AffineMap::get(resultType.getRank(), 0, {}, b.getContext()));
    else
      maps.push_back(b.getMultiDimIdentityMap(resultType.getRank()));
  }
  // Probe that the op is elementwise before building anything.
  bool elementwise = isa<stablehlo::StablehloDialect, chlo::ChloDialect>(op->getDialect()) &&
                     (op->hasTrait<OpTrait::SameOperandsAndResultShape>() ||
                      isa<stablehlo::SelectOp, stablehlo::ClampOp, chlo::ErfOp, chlo::ErfcOp, chlo::ErfInvOp, chlo::SquareOp>(op));
  if (!elementwise)
    return failure();
  bool failedBody = false;
  Value result = buildParallelGeneric(b, op->getLoc(), resultType, op->getOperands(), maps,
                                      [&](OpBuilder &nb, Location nl, ValueRange scalars) -> Value {
                                        Value v = emitScalarOp(nb, nl, op, scalars);
                                        if (!v) {
                                          failedBody = true;
                                          return scalars.front();
                                        }
                                        return v;
                                      });
  if (failedBody) {
    result.getDefiningOp()->erase();
    return failure();
  }
  return SmallVector<Value>{result};
}
