//===- ChloOps.cpp - the chlo dialect: registration and verifiers ---------===//

#include "dialects/stablehlo/StablehloDialect.h"
#include "dialects/stablehlo/AssemblyDirectives.h"
#include "dialects/stablehlo/InlineEverything.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe::chlo;

#include "dialects/stablehlo/ChloDialect.cpp.inc"
#include "dialects/stablehlo/ChloEnums.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/stablehlo/ChloAttrs.cpp.inc"
#define GET_OP_CLASSES
#include "dialects/stablehlo/ChloOps.cpp.inc"

void ChloDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/stablehlo/ChloOps.cpp.inc"
      >();
  registerAttributes();
  addInterfaces<stablehlo::InlineEverything>();
}

void ChloDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/stablehlo/ChloAttrs.cpp.inc"
      >();
}

static LogicalResult verifyFloatUnary(Operation *op) {
  if (!isa<FloatType>(cast<RankedTensorType>(op->getOperand(0).getType()).getElementType()))
    return op->emitOpError("needs a float operand");
  return success();
}

LogicalResult ErfOp::verify() { return verifyFloatUnary(*this); }
LogicalResult ErfcOp::verify() { return verifyFloatUnary(*this); }
LogicalResult ErfInvOp::verify() { return verifyFloatUnary(*this); }
LogicalResult SquareOp::verify() { return verifyFloatUnary(*this); }

LogicalResult TopKOp::verify() {
  auto input = cast<RankedTensorType>(getOperand().getType());
  if (input.getRank() < 1)
    return emitOpError("needs an operand of rank >= 1");
  int64_t last = input.getShape().back();
  int64_t k = getK();
  if (k < 0 || (!ShapedType::isDynamic(last) && k > last))
    return emitOpError("k = ") << k << " is out of range for a last dimension of " << last;
  SmallVector<int64_t> expected(input.getShape());
  expected.back() = k;
  auto values = cast<RankedTensorType>(getValues().getType());
  auto indices = cast<RankedTensorType>(getIndices().getType());
  if (values.getShape() != ArrayRef<int64_t>(expected) || indices.getShape() != ArrayRef<int64_t>(expected))
    return emitOpError("results must have the operand's shape with the last dimension k");
  if (values.getElementType() != input.getElementType())
    return emitOpError("values must have the operand's element type");
  if (!indices.getElementType().isInteger(32))
    return emitOpError("indices must be i32");
  return success();
}

LogicalResult RaggedDotOp::verify() {
  RaggedDotDimensionNumbersAttr dims = getRaggedDotDimensionNumbers();
  auto lhs = cast<RankedTensorType>(getLhs().getType());
  auto rhs = cast<RankedTensorType>(getRhs().getType());
  auto sizes = cast<RankedTensorType>(getGroupSizes().getType());
  auto result = cast<RankedTensorType>(getResult().getType());
  // Only StableHLO's mode 1 ([m, k] x [g, k, n] -> [m, n]) appears in MoE
  // programs; anything else is refused here rather than miscompiled later.
  if (!dims.getLhsBatchingDimensions().empty() || !dims.getRhsBatchingDimensions().empty() ||
      lhs.getRank() != 2 || rhs.getRank() != 3 ||
      dims.getLhsRaggedDimensions() != ArrayRef<int64_t>{0} || dims.getRhsGroupDimensions() != ArrayRef<int64_t>{0} ||
      dims.getLhsContractingDimensions() != ArrayRef<int64_t>{1} ||
      dims.getRhsContractingDimensions() != ArrayRef<int64_t>{1})
    return emitOpError("supports the grouped-matmul mode only: lhs [m, k] ragged in dim 0, rhs [g, k, n] "
                       "grouped in dim 0, contracting lhs dim 1 with rhs dim 1");
  if (sizes.getRank() != 1 || !isa<IntegerType>(sizes.getElementType()))
    return emitOpError("group_sizes must be a 1-D integer tensor");
  auto sameSize = [](int64_t a, int64_t b) { return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b; };
  if (!sameSize(sizes.getDimSize(0), rhs.getDimSize(0)))
    return emitOpError("has ") << sizes.getDimSize(0) << " group sizes for " << rhs.getDimSize(0) << " groups";
  if (!sameSize(lhs.getDimSize(1), rhs.getDimSize(1)))
    return emitOpError("contracting sizes differ: ") << lhs.getDimSize(1) << " vs " << rhs.getDimSize(1);
  if (result.getRank() != 2 || !sameSize(result.getDimSize(0), lhs.getDimSize(0)) ||
      !sameSize(result.getDimSize(1), rhs.getDimSize(2)))
    return emitOpError("result must be [m, n] = [") << lhs.getDimSize(0) << ", " << rhs.getDimSize(2) << "]";
  return success();
}
