//===- StablehloOps.cpp - stablehlo op syntax and verifiers ---------------===//

#include "dialects/stablehlo/AssemblyDirectives.h"
#include "dialects/stablehlo/StablehloDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallSet.h"

using namespace mlir;
using namespace mlir::moe::stablehlo;

#define GET_OP_CLASSES
#include "dialects/stablehlo/StablehloOps.cpp.inc"

static RankedTensorType tensorType(Value v) { return cast<RankedTensorType>(v.getType()); }
static Type elementType(Value v) { return tensorType(v).getElementType(); }
static bool sameSize(int64_t a, int64_t b) { return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b; }

/// Every entry of `dims` names a distinct dimension below `rank`.
static LogicalResult checkDims(Operation *op, StringRef what, ArrayRef<int64_t> dims, int64_t rank) {
  llvm::SmallSet<int64_t, 8> seen;
  for (int64_t d : dims) {
    if (d < 0 || d >= rank)
      return op->emitOpError() << what << " " << d << " is out of range for rank " << rank;
    if (!seen.insert(d).second)
      return op->emitOpError() << what << " " << d << " appears twice";
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

static LogicalResult verifySameElementTypes(Operation *op) {
  Type element = elementType(op->getResult(0));
  for (Value operand : op->getOperands())
    if (elementType(operand) != element)
      return op->emitOpError("operands and result must have one element type, got ")
             << elementType(operand) << " and " << element;
  return success();
}

#define SAME_ELEMENT_TYPE_VERIFIER(Op) \
  LogicalResult Op::verify() { return verifySameElementTypes(*this); }
SAME_ELEMENT_TYPE_VERIFIER(AbsOp)
SAME_ELEMENT_TYPE_VERIFIER(CbrtOp)
SAME_ELEMENT_TYPE_VERIFIER(CeilOp)
SAME_ELEMENT_TYPE_VERIFIER(CosineOp)
SAME_ELEMENT_TYPE_VERIFIER(ExpOp)
SAME_ELEMENT_TYPE_VERIFIER(Expm1Op)
SAME_ELEMENT_TYPE_VERIFIER(FloorOp)
SAME_ELEMENT_TYPE_VERIFIER(LogOp)
SAME_ELEMENT_TYPE_VERIFIER(Log1pOp)
SAME_ELEMENT_TYPE_VERIFIER(LogisticOp)
SAME_ELEMENT_TYPE_VERIFIER(NegOp)
SAME_ELEMENT_TYPE_VERIFIER(NotOp)
SAME_ELEMENT_TYPE_VERIFIER(RoundNearestAfzOp)
SAME_ELEMENT_TYPE_VERIFIER(RoundNearestEvenOp)
SAME_ELEMENT_TYPE_VERIFIER(RsqrtOp)
SAME_ELEMENT_TYPE_VERIFIER(SignOp)
SAME_ELEMENT_TYPE_VERIFIER(SineOp)
SAME_ELEMENT_TYPE_VERIFIER(SqrtOp)
SAME_ELEMENT_TYPE_VERIFIER(TanOp)
SAME_ELEMENT_TYPE_VERIFIER(TanhOp)
SAME_ELEMENT_TYPE_VERIFIER(AddOp)
SAME_ELEMENT_TYPE_VERIFIER(AndOp)
SAME_ELEMENT_TYPE_VERIFIER(Atan2Op)
SAME_ELEMENT_TYPE_VERIFIER(DivOp)
SAME_ELEMENT_TYPE_VERIFIER(MaxOp)
SAME_ELEMENT_TYPE_VERIFIER(MinOp)
SAME_ELEMENT_TYPE_VERIFIER(MulOp)
SAME_ELEMENT_TYPE_VERIFIER(OrOp)
SAME_ELEMENT_TYPE_VERIFIER(PowOp)
SAME_ELEMENT_TYPE_VERIFIER(RemOp)
SAME_ELEMENT_TYPE_VERIFIER(SubtractOp)
SAME_ELEMENT_TYPE_VERIFIER(XorOp)
#undef SAME_ELEMENT_TYPE_VERIFIER

/// Bit operations: one integer element type throughout.
static LogicalResult verifyIntegerElementwise(Operation *op) {
  if (failed(verifySameElementTypes(op)))
    return failure();
  if (!isa<IntegerType>(elementType(op->getResult(0))))
    return op->emitOpError("operates on integers, got ") << elementType(op->getResult(0));
  return success();
}

LogicalResult PopcntOp::verify() { return verifyIntegerElementwise(*this); }
LogicalResult CountLeadingZerosOp::verify() { return verifyIntegerElementwise(*this); }
LogicalResult ShiftLeftOp::verify() { return verifyIntegerElementwise(*this); }
LogicalResult ShiftRightArithmeticOp::verify() { return verifyIntegerElementwise(*this); }
LogicalResult ShiftRightLogicalOp::verify() { return verifyIntegerElementwise(*this); }

LogicalResult ConvertOp::verify() { return success(); }

LogicalResult IsFiniteOp::verify() {
  if (!isa<FloatType>(elementType(getOperand())) || !elementType(getResult()).isInteger(1))
    return emitOpError("maps a float tensor to an i1 tensor");
  return success();
}

LogicalResult ClampOp::verify() {
  for (Value bound : {getMin(), getMax()})
    if (tensorType(bound).getRank() != 0 && tensorType(bound).getShape() != tensorType(getOperand()).getShape())
      return emitOpError("bounds must be 0-d or have the operand's shape");
  if (getResult().getType() != getOperand().getType())
    return emitOpError("result must have the operand's type");
  return verifySameElementTypes(*this);
}

LogicalResult CompareOp::verify() {
  if (elementType(getLhs()) != elementType(getRhs()))
    return emitOpError("compares operands of one element type, got ")
           << elementType(getLhs()) << " and " << elementType(getRhs());
  if (!elementType(getResult()).isInteger(1))
    return emitOpError("result must be i1");
  return success();
}

LogicalResult SelectOp::verify() {
  auto pred = tensorType(getPred());
  if (!pred.getElementType().isInteger(1))
    return emitOpError("pred must be i1");
  if (getOnTrue().getType() != getResult().getType() || getOnFalse().getType() != getResult().getType())
    return emitOpError("on_true, on_false and the result must have one type");
  if (pred.getRank() != 0 && pred.getShape() != tensorType(getResult()).getShape())
    return emitOpError("pred must be 0-d or have the result's shape");
  return success();
}

//===----------------------------------------------------------------------===//
// Values and shapes
//===----------------------------------------------------------------------===//

ParseResult ConstantOp::parse(OpAsmParser &parser, OperationState &result) {
  Attribute value;
  if (parser.parseOptionalAttrDict(result.attributes) || parser.parseAttribute(value))
    return failure();
  auto elements = dyn_cast<ElementsAttr>(value);
  if (!elements)
    return parser.emitError(parser.getCurrentLocation(), "expected a tensor constant such as dense<...>");
  result.addAttribute(getValueAttrName(result.name), elements);
  result.addTypes(elements.getType());
  return success();
}

void ConstantOp::print(OpAsmPrinter &printer) {
  printer.printOptionalAttrDict((*this)->getAttrs(), {getValueAttrName()});
  printer << " ";
  printer.printAttribute(getValue());
}

OpFoldResult ConstantOp::fold(FoldAdaptor) { return getValue(); }

LogicalResult ConstantOp::verify() {
  if (getValue().getType() != getOutput().getType())
    return emitOpError("value type ") << getValue().getType() << " differs from the result type "
                                      << getOutput().getType();
  return success();
}

LogicalResult IotaOp::verify() {
  int64_t rank = tensorType(getOutput()).getRank();
  if (static_cast<int64_t>(getIotaDimension()) >= rank)
    return emitOpError("dim ") << getIotaDimension() << " is out of range for rank " << rank;
  return success();
}

LogicalResult GetDimensionSizeOp::verify() {
  int64_t rank = tensorType(getOperand()).getRank();
  if (static_cast<int64_t>(getDimension()) >= rank)
    return emitOpError("dim ") << getDimension() << " is out of range for rank " << rank;
  return success();
}

LogicalResult BroadcastInDimOp::verify() {
  auto operand = tensorType(getOperand());
  auto result = tensorType(getResult());
  ArrayRef<int64_t> dims = getBroadcastDimensions();
  if (static_cast<int64_t>(dims.size()) != operand.getRank())
    return emitOpError("needs one dimension per operand dimension: ")
           << dims.size() << " for rank " << operand.getRank();
  if (failed(checkDims(*this, "broadcast dimension", dims, result.getRank())))
    return failure();
  for (auto [i, d] : llvm::enumerate(dims)) {
    int64_t size = operand.getDimSize(i);
    if (size != 1 && !sameSize(size, result.getDimSize(d)))
      return emitOpError("operand dimension ") << i << " (size " << size << ") cannot broadcast to result dimension "
                                               << d << " (size " << result.getDimSize(d) << ")";
  }
  return verifySameElementTypes(*this);
}

LogicalResult ReshapeOp::verify() {
  auto operand = tensorType(getOperand());
  auto result = tensorType(getResult());
  if (operand.hasStaticShape() && result.hasStaticShape() &&
      operand.getNumElements() != result.getNumElements())
    return emitOpError("cannot reshape ") << operand.getNumElements() << " elements into "
                                          << result.getNumElements();
  return verifySameElementTypes(*this);
}

LogicalResult TransposeOp::verify() {
  auto operand = tensorType(getOperand());
  auto result = tensorType(getResult());
  ArrayRef<int64_t> perm = getPermutation();
  llvm::SmallSet<int64_t, 8> seen;
  if (static_cast<int64_t>(perm.size()) != operand.getRank() ||
      llvm::any_of(perm, [&](int64_t p) { return p < 0 || p >= operand.getRank() || !seen.insert(p).second; }))
    return emitOpError("dims must be a permutation of the operand's ") << operand.getRank() << " dimensions";
  for (auto [i, p] : llvm::enumerate(perm))
    if (!sameSize(result.getDimSize(i), operand.getDimSize(p)))
      return emitOpError("result dimension ") << i << " must have operand dimension " << p << "'s size";
  return verifySameElementTypes(*this);
}

LogicalResult SliceOp::verify() {
  auto operand = tensorType(getOperand());
  auto result = tensorType(getResult());
  int64_t rank = operand.getRank();
  if (static_cast<int64_t>(getStartIndices().size()) != rank ||
      static_cast<int64_t>(getLimitIndices().size()) != rank || static_cast<int64_t>(getStrides().size()) != rank)
    return emitOpError("needs a range for each of the ") << rank << " dimensions";
  for (int64_t d = 0; d < rank; ++d) {
    int64_t start = getStartIndices()[d], limit = getLimitIndices()[d], stride = getStrides()[d];
    int64_t size = operand.getDimSize(d);
    if (start < 0 || limit < start || stride < 1 || (!ShapedType::isDynamic(size) && limit > size))
      return emitOpError("range ") << start << ":" << limit << ":" << stride << " is invalid for dimension " << d
                                   << " of size " << size;
    if (!sameSize(result.getDimSize(d), (limit - start + stride - 1) / stride))
      return emitOpError("result dimension ") << d << " must have size " << (limit - start + stride - 1) / stride;
  }
  return verifySameElementTypes(*this);
}

/// Start indices are one 0-d integer tensor per dimension.
static LogicalResult checkStartIndices(Operation *op, ValueRange indices, int64_t rank) {
  if (static_cast<int64_t>(indices.size()) != rank)
    return op->emitOpError("needs ") << rank << " start indices, got " << indices.size();
  for (Value index : indices)
    if (tensorType(index).getRank() != 0 || !isa<IntegerType>(elementType(index)))
      return op->emitOpError("start indices must be 0-d integer tensors");
  return success();
}

LogicalResult DynamicSliceOp::verify() {
  auto operand = tensorType(getOperand());
  if (failed(checkStartIndices(*this, getStartIndices(), operand.getRank())))
    return failure();
  ArrayRef<int64_t> sizes = getSliceSizes();
  if (static_cast<int64_t>(sizes.size()) != operand.getRank())
    return emitOpError("needs a slice size for each of the ") << operand.getRank() << " dimensions";
  for (auto [d, size] : llvm::enumerate(sizes))
    if (size < 0 || (!operand.isDynamicDim(d) && size > operand.getDimSize(d)))
      return emitOpError("slice size ") << size << " does not fit dimension " << d;
  if (tensorType(getResult()).getShape() != sizes)
    return emitOpError("result shape must be the slice sizes");
  if (elementType(getResult()) != operand.getElementType())
    return emitOpError("result must have the operand's element type");
  return success();
}

LogicalResult DynamicUpdateSliceOp::verify() {
  auto operand = tensorType(getOperand());
  auto update = tensorType(getUpdate());
  if (failed(checkStartIndices(*this, getStartIndices(), operand.getRank())))
    return failure();
  if (update.getRank() != operand.getRank())
    return emitOpError("update must have the operand's rank");
  for (int64_t d = 0; d < operand.getRank(); ++d)
    if (!operand.isDynamicDim(d) && !update.isDynamicDim(d) && update.getDimSize(d) > operand.getDimSize(d))
      return emitOpError("update dimension ") << d << " is larger than the operand's";
  if (getResult().getType() != getOperand().getType())
    return emitOpError("result must have the operand's type");
  if (update.getElementType() != operand.getElementType())
    return emitOpError("update must have the operand's element type");
  return success();
}

LogicalResult ConcatenateOp::verify() {
  if (getInputs().empty())
    return emitOpError("needs at least one input");
  auto result = tensorType(getResult());
  int64_t dim = getDimension();
  if (dim < 0 || dim >= result.getRank())
    return emitOpError("dim ") << dim << " is out of range for rank " << result.getRank();
  int64_t total = 0;
  for (Value input : getInputs()) {
    auto type = tensorType(input);
    if (type.getRank() != result.getRank())
      return emitOpError("inputs must have the result's rank");
    for (int64_t d = 0; d < type.getRank(); ++d)
      if (d != dim && !sameSize(type.getDimSize(d), result.getDimSize(d)))
        return emitOpError("inputs differ from the result in dimension ") << d;
    total = (ShapedType::isDynamic(total) || type.isDynamicDim(dim)) ? ShapedType::kDynamic
                                                                      : total + type.getDimSize(dim);
  }
  if (!sameSize(total, result.getDimSize(dim)))
    return emitOpError("result dimension ") << dim << " must be " << total;
  return verifySameElementTypes(*this);
}

LogicalResult PadOp::verify() {
  auto operand = tensorType(getOperand());
  auto result = tensorType(getResult());
  int64_t rank = operand.getRank();
  if (tensorType(getPaddingValue()).getRank() != 0)
    return emitOpError("padding value must be 0-d");
  if (static_cast<int64_t>(getEdgePaddingLow().size()) != rank ||
      static_cast<int64_t>(getEdgePaddingHigh().size()) != rank ||
      static_cast<int64_t>(getInteriorPadding().size()) != rank)
    return emitOpError("needs low, high and interior padding for each of the ") << rank << " dimensions";
  for (int64_t d = 0; d < rank; ++d) {
    int64_t interior = getInteriorPadding()[d];
    if (interior < 0)
      return emitOpError("interior padding must be >= 0");
    if (operand.isDynamicDim(d))
      continue;
    int64_t size = operand.getDimSize(d);
    int64_t expected = getEdgePaddingLow()[d] + getEdgePaddingHigh()[d] + size + std::max<int64_t>(size - 1, 0) * interior;
    if (!sameSize(result.getDimSize(d), expected))
      return emitOpError("result dimension ") << d << " must have size " << expected;
  }
  return verifySameElementTypes(*this);
}

LogicalResult ReverseOp::verify() {
  return checkDims(*this, "reversed dimension", getDimensions(), tensorType(getOperand()).getRank());
}

//===----------------------------------------------------------------------===//
// Contractions and reductions
//===----------------------------------------------------------------------===//

LogicalResult DotGeneralOp::verify() {
  auto lhs = tensorType(getLhs());
  auto rhs = tensorType(getRhs());
  auto result = tensorType(getResult());
  DotDimensionNumbersAttr dims = getDotDimensionNumbers();
  ArrayRef<int64_t> lb = dims.getLhsBatchingDimensions(), rb = dims.getRhsBatchingDimensions();
  ArrayRef<int64_t> lc = dims.getLhsContractingDimensions(), rc = dims.getRhsContractingDimensions();
  if (lb.size() != rb.size())
    return emitOpError("lhs and rhs need as many batching dimensions: ") << lb.size() << " vs " << rb.size();
  if (lc.size() != rc.size())
    return emitOpError("lhs and rhs need as many contracting dimensions: ") << lc.size() << " vs " << rc.size();
  SmallVector<int64_t> lhsUsed(lb), rhsUsed(rb);
  lhsUsed.append(lc.begin(), lc.end());
  rhsUsed.append(rc.begin(), rc.end());
  if (failed(checkDims(*this, "lhs dimension", lhsUsed, lhs.getRank())) ||
      failed(checkDims(*this, "rhs dimension", rhsUsed, rhs.getRank())))
    return failure();
  for (auto [l, r] : llvm::zip(lhsUsed, rhsUsed))
    if (!sameSize(lhs.getDimSize(l), rhs.getDimSize(r)))
      return emitOpError("lhs dimension ") << l << " (size " << lhs.getDimSize(l) << ") and rhs dimension " << r
                                           << " (size " << rhs.getDimSize(r) << ") must match";
  SmallVector<int64_t> expected;
  for (int64_t l : lb)
    expected.push_back(lhs.getDimSize(l));
  for (int64_t d = 0; d < lhs.getRank(); ++d)
    if (!llvm::is_contained(lhsUsed, d))
      expected.push_back(lhs.getDimSize(d));
  for (int64_t d = 0; d < rhs.getRank(); ++d)
    if (!llvm::is_contained(rhsUsed, d))
      expected.push_back(rhs.getDimSize(d));
  if (result.getRank() != static_cast<int64_t>(expected.size()) ||
      !llvm::all_of(llvm::zip(result.getShape(), expected), [](auto p) {
        return sameSize(std::get<0>(p), std::get<1>(p));
      }))
    return emitOpError("result must be batch x lhs free x rhs free dimensions, ")
           << RankedTensorType::get(expected, result.getElementType());
  if (lhs.getElementType() != rhs.getElementType())
    return emitOpError("lhs and rhs must have one element type");
  return success();
}

/// A reducer/comparator/scatter body takes `numArgs` 0-d tensors.
static LogicalResult checkBody(Operation *op, Region &body, unsigned numArgs) {
  if (!body.hasOneBlock())
    return op->emitOpError("body must have one block");
  if (body.front().getNumArguments() != numArgs)
    return op->emitOpError("body must take ") << numArgs << " arguments";
  for (BlockArgument arg : body.front().getArguments()) {
    auto type = dyn_cast<RankedTensorType>(arg.getType());
    if (!type || type.getRank() != 0)
      return op->emitOpError("body arguments must be 0-d tensors");
  }
  if (body.front().empty() || !isa<ReturnOp>(body.front().back()))
    return op->emitOpError("body must end in stablehlo.return");
  return success();
}

LogicalResult ReduceOp::verify() {
  size_t n = getInputs().size();
  if (n == 0 || getInitValues().size() != n || getNumResults() != n)
    return emitOpError("needs as many inputs, init values and results (at least one)");
  auto first = tensorType(getInputs()[0]);
  if (failed(checkDims(*this, "reduced dimension", getDimensions(), first.getRank())))
    return failure();
  SmallVector<int64_t> kept;
  for (int64_t d = 0; d < first.getRank(); ++d)
    if (!llvm::is_contained(getDimensions(), d))
      kept.push_back(first.getDimSize(d));
  for (size_t i = 0; i < n; ++i) {
    if (tensorType(getInputs()[i]).getShape() != first.getShape())
      return emitOpError("inputs must have one shape");
    if (tensorType(getInitValues()[i]).getRank() != 0)
      return emitOpError("init values must be 0-d");
    if (tensorType(getResult(i)).getShape() != ArrayRef<int64_t>(kept))
      return emitOpError("result ") << i << " must have the input's shape without the reduced dimensions";
  }
  return checkBody(*this, getBody(), 2 * n);
}

/// `stablehlo.reduce(%x init: %c) applies stablehlo.add across dimensions = [1]`
/// or `stablehlo.reduce(%x init: %c), ... across dimensions = [1] : ... reducer(%a: t, %b: t) ... {body}`.
ParseResult ReduceOp::parse(OpAsmParser &parser, OperationState &result) {
  SmallVector<OpAsmParser::UnresolvedOperand> inputs, inits;
  do {
    OpAsmParser::UnresolvedOperand input, init;
    if (parser.parseLParen() || parser.parseOperand(input) || parser.parseKeyword("init") || parser.parseColon() ||
        parser.parseOperand(init) || parser.parseRParen())
      return failure();
    inputs.push_back(input);
    inits.push_back(init);
  } while (succeeded(parser.parseOptionalComma()));

  std::optional<OperationName> applied;
  llvm::SMLoc appliesLoc = parser.getCurrentLocation();
  if (succeeded(parser.parseOptionalKeyword("applies"))) {
    FailureOr<OperationName> name = parser.parseCustomOperationName();
    if (failed(name))
      return failure();
    applied = *name;
  }
  if (parser.parseKeyword("across") || parser.parseKeyword("dimensions") || parser.parseEqual())
    return failure();
  FailureOr<SmallVector<int64_t>> dims = parseDimList(parser);
  if (failed(dims))
    return failure();
  result.addAttribute(getDimensionsAttrName(result.name), DenseI64ArrayAttr::get(parser.getContext(), *dims));
  if (parser.parseOptionalAttrDict(result.attributes))
    return failure();
  FunctionType type;
  llvm::SMLoc typeLoc = parser.getCurrentLocation();
  if (parser.parseColonType(type))
    return failure();
  size_t n = inputs.size();
  if (type.getNumInputs() != 2 * n || type.getNumResults() != n)
    return parser.emitError(typeLoc) << "expected " << 2 * n << " operand types and " << n << " result types";
  if (parser.resolveOperands(inputs, type.getInputs().take_front(n), typeLoc, result.operands) ||
      parser.resolveOperands(inits, type.getInputs().drop_front(n), typeLoc, result.operands))
    return failure();
  result.addTypes(type.getResults());

  Region *body = result.addRegion();
  if (applied) {
    if (n != 1)
      return parser.emitError(appliesLoc, "'applies' needs a single input; use the 'reducer' form");
    Type scalar = RankedTensorType::get({}, cast<ShapedType>(type.getInput(0)).getElementType());
    Block *block = new Block();
    body->push_back(block);
    Location loc = result.location;
    Value a = block->addArgument(scalar, loc), b = block->addArgument(scalar, loc);
    OpBuilder builder(parser.getContext());
    builder.setInsertionPointToEnd(block);
    OperationState combine(loc, *applied);
    combine.addOperands({a, b});
    combine.addTypes(scalar);
    Operation *op = builder.create(combine);
    ReturnOp::create(builder, loc, op->getResults());
    return success();
  }

  // `reducer(%a0: t, %b0: t) (%a1: t, %b1: t)`: block arguments are all
  // accumulators first, then all elements.
  if (parser.parseKeyword("reducer"))
    return failure();
  SmallVector<OpAsmParser::Argument> accumulators, elements;
  for (size_t i = 0; i < n; ++i) {
    SmallVector<OpAsmParser::Argument> pair;
    llvm::SMLoc pairLoc = parser.getCurrentLocation();
    if (parser.parseArgumentList(pair, OpAsmParser::Delimiter::Paren, /*allowType=*/true))
      return failure();
    if (pair.size() != 2)
      return parser.emitError(pairLoc, "each reducer pair needs two arguments");
    accumulators.push_back(pair[0]);
    elements.push_back(pair[1]);
  }
  accumulators.append(elements.begin(), elements.end());
  return parser.parseRegion(*body, accumulators);
}

/// The binary op of a body that applies it to (arg0, arg1) and returns it.
static Operation *compactReducer(Region &body) {
  Block &block = body.front();
  if (block.getNumArguments() != 2 || !llvm::hasNItems(block, 2))
    return nullptr;
  Operation &op = block.front();
  auto ret = dyn_cast<ReturnOp>(block.getTerminator());
  if (op.getNumOperands() != 2 || op.getNumResults() != 1 || op.getOperand(0) != block.getArgument(0) ||
      op.getOperand(1) != block.getArgument(1) || !op.getAttrs().empty() || op.getNumRegions() != 0 || !ret ||
      ret.getNumOperands() != 1 || ret.getOperand(0) != op.getResult(0) ||
      op.getDialect() != body.getParentOp()->getDialect())
    return nullptr;
  return &op;
}

void ReduceOp::print(OpAsmPrinter &printer) {
  size_t n = getInputs().size();
  printer << "(";
  for (size_t i = 0; i < n; ++i) {
    if (i)
      printer << "), (";
    printer << getInputs()[i] << " init: " << getInitValues()[i];
  }
  printer << ")";
  Operation *applied = compactReducer(getBody());
  if (applied)
    printer << " applies " << applied->getName();
  printer << " across dimensions = [";
  llvm::interleaveComma(getDimensions(), printer);
  printer << "]";
  printer.printOptionalAttrDict((*this)->getAttrs(), {getDimensionsAttrName()});
  printer << " : ";
  printer.printFunctionalType(*this);
  if (applied)
    return;
  Block &block = getBody().front();
  printer.printNewline();
  printer << " reducer";
  for (size_t i = 0; i < n; ++i) {
    printer << "(";
    printer.printRegionArgument(block.getArgument(i));
    printer << ", ";
    printer.printRegionArgument(block.getArgument(n + i));
    printer << ") ";
  }
  printer.printRegion(getBody(), /*printEntryBlockArgs=*/false);
}

LogicalResult ReduceWindowOp::verify() {
  size_t n = getInputs().size();
  if (n == 0 || getInitValues().size() != n || getNumResults() != n)
    return emitOpError("needs as many inputs, init values and results (at least one)");
  int64_t rank = tensorType(getInputs()[0]).getRank();
  auto checkLength = [&](std::optional<ArrayRef<int64_t>> values, StringRef what) -> LogicalResult {
    if (values && static_cast<int64_t>(values->size()) != rank)
      return emitOpError() << what << " needs " << rank << " entries";
    return success();
  };
  if (failed(checkLength(getWindowDimensions(), "window_dimensions")) ||
      failed(checkLength(getWindowStrides(), "window_strides")) ||
      failed(checkLength(getBaseDilations(), "base_dilations")) ||
      failed(checkLength(getWindowDilations(), "window_dilations")))
    return failure();
  if (auto padding = getPadding()) {
    auto type = cast<ShapedType>(padding->getType());
    if (type.getRank() != 2 || type.getDimSize(0) != rank || type.getDimSize(1) != 2)
      return emitOpError("padding must be [") << rank << ", 2]";
  }
  return checkBody(*this, getBody(), 2 * n);
}

LogicalResult GatherOp::verify() {
  GatherDimensionNumbersAttr dims = getDimensionNumbers();
  auto operand = tensorType(getOperand());
  auto indices = tensorType(getStartIndices());
  if (static_cast<int64_t>(getSliceSizes().size()) != operand.getRank())
    return emitOpError("needs a slice size for each of the ") << operand.getRank() << " operand dimensions";
  if (dims.getIndexVectorDim() < 0 || dims.getIndexVectorDim() > indices.getRank())
    return emitOpError("index_vector_dim ") << dims.getIndexVectorDim() << " is out of range";
  int64_t vectorSize =
      dims.getIndexVectorDim() == indices.getRank() ? 1 : indices.getDimSize(dims.getIndexVectorDim());
  if (!sameSize(vectorSize, dims.getStartIndexMap().size()))
    return emitOpError("start_index_map has ") << dims.getStartIndexMap().size() << " entries for index vectors of "
                                               << vectorSize;
  if (failed(checkDims(*this, "start_index_map entry", dims.getStartIndexMap(), operand.getRank())) ||
      failed(checkDims(*this, "collapsed dimension", dims.getCollapsedSliceDims(), operand.getRank())))
    return failure();
  for (int64_t d : dims.getCollapsedSliceDims())
    if (getSliceSizes()[d] > 1)
      return emitOpError("collapsed dimension ") << d << " must have slice size 0 or 1";
  int64_t expectedRank = static_cast<int64_t>(dims.getOffsetDims().size()) + indices.getRank() -
                         (dims.getIndexVectorDim() < indices.getRank() ? 1 : 0);
  if (tensorType(getResult()).getRank() != expectedRank)
    return emitOpError("result must have rank ") << expectedRank;
  if (elementType(getResult()) != operand.getElementType())
    return emitOpError("result must have the operand's element type");
  return success();
}

LogicalResult ScatterOp::verify() {
  size_t n = getInputs().size();
  if (n == 0 || getUpdates().size() != n || getNumResults() != n)
    return emitOpError("needs as many inputs, updates and results (at least one)");
  ScatterDimensionNumbersAttr dims = getScatterDimensionNumbers();
  auto operand = tensorType(getInputs()[0]);
  auto indices = tensorType(getScatterIndices());
  if (dims.getIndexVectorDim() < 0 || dims.getIndexVectorDim() > indices.getRank())
    return emitOpError("index_vector_dim ") << dims.getIndexVectorDim() << " is out of range";
  int64_t windowRank = static_cast<int64_t>(dims.getUpdateWindowDims().size() + dims.getInsertedWindowDims().size() +
                                            dims.getInputBatchingDims().size());
  if (windowRank != operand.getRank())
    return emitOpError("update window, inserted and batching dimensions must cover the operand's ")
           << operand.getRank() << " dimensions";
  if (failed(checkDims(*this, "scatter_dims_to_operand_dims entry", dims.getScatterDimsToOperandDims(),
                       operand.getRank())))
    return failure();
  for (size_t i = 0; i < n; ++i)
    if (getResult(i).getType() != getInputs()[i].getType())
      return emitOpError("result ") << i << " must have input " << i << "'s type";
  return checkBody(*this, getUpdateComputation(), 2 * n);
}

LogicalResult SortOp::verify() {
  if (getInputs().empty() || getNumResults() != getInputs().size())
    return emitOpError("needs as many inputs as results (at least one)");
  auto first = tensorType(getInputs()[0]);
  auto dimension = static_cast<int64_t>(getDimension()); // -1: the last
  int64_t dim = dimension < 0 ? dimension + first.getRank() : dimension;
  if (dim < 0 || dim >= first.getRank())
    return emitOpError("dimension ") << dimension << " is out of range for rank " << first.getRank();
  for (auto [input, output] : llvm::zip(getInputs(), getResults())) {
    if (tensorType(input).getShape() != first.getShape())
      return emitOpError("inputs must have one shape");
    if (input.getType() != output.getType())
      return emitOpError("each result must have its input's type");
  }
  return checkBody(*this, getComparator(), 2 * getInputs().size());
}

LogicalResult CompositeOp::verify() {
  auto callee = SymbolTable::lookupNearestSymbolFrom(*this, getDecompositionAttr());
  if (!callee)
    return emitOpError("decomposition ") << getDecompositionAttr() << " is not a function of this module";
  return success();
}

//===----------------------------------------------------------------------===//
// case, if, optimization_barrier
//===----------------------------------------------------------------------===//

/// Every branch takes no arguments and returns `types` with stablehlo.return.
static LogicalResult verifyBranches(Operation *op, MutableArrayRef<Region> branches, TypeRange types) {
  for (auto [i, region] : llvm::enumerate(branches)) {
    Block &block = region.front();
    if (block.getNumArguments() != 0)
      return op->emitOpError() << "branch " << i << " must take no arguments";
    auto ret = dyn_cast<ReturnOp>(block.getTerminator());
    if (!ret)
      return op->emitOpError() << "branch " << i << " must end in stablehlo.return";
    if (TypeRange(ret.getResults().getTypes()) != types)
      return op->emitOpError() << "branch " << i << " must return the op's result types";
  }
  return success();
}

/// A 0-d tensor of the given integer width.
static bool isScalarOf(Value v, unsigned width) {
  auto type = dyn_cast<RankedTensorType>(v.getType());
  return type && type.getRank() == 0 && type.getElementType().isSignlessInteger(width);
}

LogicalResult CaseOp::verify() {
  if (!isScalarOf(getIndex(), 32))
    return emitOpError("index must be a tensor<i32>");
  if (getBranches().empty())
    return emitOpError("needs at least one branch");
  return verifyBranches(*this, getBranches(), getResultTypes());
}

LogicalResult IfOp::verify() {
  if (!isScalarOf(getPred(), 1))
    return emitOpError("pred must be a tensor<i1>");
  return verifyBranches(*this, getOperation()->getRegions(), getResultTypes());
}

LogicalResult OptimizationBarrierOp::verify() {
  if (TypeRange(getResultTypes()) != getOperand().getTypes())
    return emitOpError("results must have the operands' types");
  return success();
}

/// `stablehlo.optimization_barrier %a, %b : type_a, type_b`.
ParseResult OptimizationBarrierOp::parse(OpAsmParser &parser, OperationState &result) {
  SmallVector<OpAsmParser::UnresolvedOperand> operands;
  SmallVector<Type> types;
  if (parser.parseOperandList(operands) || parser.parseOptionalAttrDict(result.attributes))
    return failure();
  if (!operands.empty() && (parser.parseColon() || parser.parseTypeList(types)))
    return failure();
  if (parser.resolveOperands(operands, types, parser.getCurrentLocation(), result.operands))
    return failure();
  result.addTypes(types);
  return success();
}

void OptimizationBarrierOp::print(OpAsmPrinter &p) {
  if (!getOperand().empty())
    p << " " << getOperand();
  p.printOptionalAttrDict((*this)->getAttrs());
  if (!getOperand().empty())
    p << " : " << getOperand().getTypes();
}

//===----------------------------------------------------------------------===//
// while
//===----------------------------------------------------------------------===//

LogicalResult WhileOp::verify() {
  TypeRange types = getOperand().getTypes();
  if (TypeRange(getResultTypes()) != types)
    return emitOpError("results must have the operands' types");
  for (auto [name, region] : {std::pair<StringRef, Region *>{"cond", &getCond()}, {"do", &getBody()}}) {
    Block &block = region->front();
    if (TypeRange(block.getArgumentTypes()) != types)
      return emitOpError() << name << " must take the loop values (" << types.size() << " of the operands' types)";
    auto ret = dyn_cast<ReturnOp>(block.getTerminator());
    if (!ret)
      return emitOpError() << name << " must end in stablehlo.return";
    if (region == &getCond()) {
      auto flag = ret.getResults().size() == 1 ? dyn_cast<RankedTensorType>(ret.getResults()[0].getType())
                                               : RankedTensorType();
      if (!flag || flag.getRank() != 0 || !flag.getElementType().isInteger(1))
        return emitOpError("cond must return one tensor<i1>");
    } else if (TypeRange(ret.getResults().getTypes()) != types) {
      return emitOpError("do must return the next loop values (the operands' types)");
    }
  }
  return success();
}

/// `stablehlo.while(%a = %x, ...) : types cond {...} do {...}`: both regions
/// take the loop values under the names the header gives them.
ParseResult WhileOp::parse(OpAsmParser &parser, OperationState &result) {
  SmallVector<OpAsmParser::Argument> args;
  SmallVector<OpAsmParser::UnresolvedOperand> operands;
  if (parser.parseLParen())
    return failure();
  if (failed(parser.parseOptionalRParen())) {
    do {
      OpAsmParser::Argument arg;
      OpAsmParser::UnresolvedOperand operand;
      if (parser.parseArgument(arg) || parser.parseEqual() || parser.parseOperand(operand))
        return failure();
      args.push_back(arg);
      operands.push_back(operand);
    } while (succeeded(parser.parseOptionalComma()));
    if (parser.parseRParen())
      return failure();
  }
  SmallVector<Type> types;
  if (!operands.empty() && (parser.parseColon() || parser.parseTypeList(types)))
    return failure();
  if (types.size() != operands.size())
    return parser.emitError(parser.getCurrentLocation())
           << "stablehlo.while: " << operands.size() << " loop values but " << types.size() << " types";
  for (auto [arg, type] : llvm::zip(args, types))
    arg.type = type;
  if (parser.resolveOperands(operands, types, parser.getCurrentLocation(), result.operands))
    return failure();
  result.addTypes(types);
  Region *cond = result.addRegion(), *body = result.addRegion();
  if (parser.parseKeyword("cond") || parser.parseRegion(*cond, args) || parser.parseKeyword("do") ||
      parser.parseRegion(*body, args) || parser.parseOptionalAttrDictWithKeyword(result.attributes))
    return failure();
  return success();
}

void WhileOp::print(OpAsmPrinter &p) {
  p << '(';
  llvm::interleaveComma(llvm::zip(getBody().getArguments(), getOperand()), p, [&](auto pair) {
    p.printOperand(std::get<0>(pair));
    p << " = ";
    p.printOperand(std::get<1>(pair));
  });
  p << ')';
  if (!getOperand().empty())
    p << " : " << getOperand().getTypes();
  p.shadowRegionArgs(getCond(), getBody().getArguments());
  p << " cond ";
  p.printRegion(getCond(), /*printEntryBlockArgs=*/false);
  p << " do ";
  p.printRegion(getBody(), /*printEntryBlockArgs=*/false);
  p.printOptionalAttrDictWithKeyword((*this)->getAttrs());
}
