//===- AssemblyDirectives.cpp - StableHLO's pretty-syntax pieces ----------===//

#include "dialects/stablehlo/AssemblyDirectives.h"
#include "dialects/stablehlo/StablehloDialect.h"

using namespace mlir;
using namespace mlir::moe::stablehlo;

FailureOr<SmallVector<int64_t>> mlir::moe::stablehlo::parseDimList(AsmParser &parser) {
  SmallVector<int64_t> dims;
  if (parser.parseCommaSeparatedList(AsmParser::Delimiter::Square, [&]() -> ParseResult {
        int64_t d;
        if (parser.parseInteger(d))
          return failure();
        dims.push_back(d);
        return success();
      }))
    return failure();
  return dims;
}

void mlir::moe::stablehlo::printDimList(AsmPrinter &printer, ArrayRef<int64_t> dims) {
  printer << "[";
  llvm::interleaveComma(dims, printer);
  printer << "]";
}

ParseResult mlir::moe::stablehlo::parseSameOperandsAndResultTypeImpl(OpAsmParser &parser,
                                                                     ArrayRef<Type *> operands,
                                                                     Type &result) {
  llvm::SMLoc loc = parser.getCurrentLocation();
  if (succeeded(parser.parseOptionalLParen())) {
    SmallVector<Type> inputs;
    if (failed(parser.parseOptionalRParen())) {
      if (parser.parseTypeList(inputs) || parser.parseRParen())
        return failure();
    }
    if (parser.parseArrow() || parser.parseType(result))
      return failure();
    if (inputs.size() != operands.size())
      return parser.emitError(loc) << "expected " << operands.size() << " operand types, got "
                                   << inputs.size();
    for (auto [slot, type] : llvm::zip(operands, inputs))
      *slot = type;
    return success();
  }
  Type type;
  if (parser.parseType(type))
    return failure();
  for (Type *slot : operands)
    *slot = type;
  result = type;
  return success();
}

void mlir::moe::stablehlo::printSameOperandsAndResultTypeImpl(OpAsmPrinter &printer, Operation *op) {
  Type result = op->getResult(0).getType();
  if (llvm::all_of(op->getOperandTypes(), [&](Type t) { return t == result; })) {
    printer << result;
    return;
  }
  printer.printFunctionalType(op->getOperandTypes(), op->getResultTypes());
}

ParseResult mlir::moe::stablehlo::parseSelectOpType(OpAsmParser &parser, Type &pred, Type &onTrue,
                                                    Type &onFalse, Type &result) {
  if (succeeded(parser.parseOptionalLParen())) {
    if (parser.parseType(pred) || parser.parseComma() || parser.parseType(onTrue) || parser.parseComma() ||
        parser.parseType(onFalse) || parser.parseRParen() || parser.parseArrow() || parser.parseType(result))
      return failure();
    return success();
  }
  if (parser.parseType(pred) || parser.parseComma() || parser.parseType(result))
    return failure();
  onTrue = onFalse = result;
  return success();
}

void mlir::moe::stablehlo::printSelectOpType(OpAsmPrinter &printer, Operation *op, Type pred, Type onTrue,
                                             Type onFalse, Type result) {
  if (onTrue == result && onFalse == result) {
    printer << pred << ", " << result;
    return;
  }
  printer.printFunctionalType(op->getOperandTypes(), op->getResultTypes());
}

ParseResult mlir::moe::stablehlo::parseSliceRanges(OpAsmParser &parser, DenseI64ArrayAttr &start,
                                                   DenseI64ArrayAttr &limit, DenseI64ArrayAttr &strides) {
  SmallVector<int64_t> starts, limits, steps;
  auto parseRange = [&]() -> ParseResult {
    int64_t s, l, step = 1;
    if (parser.parseInteger(s) || parser.parseColon() || parser.parseInteger(l))
      return failure();
    if (succeeded(parser.parseOptionalColon()) && parser.parseInteger(step))
      return failure();
    starts.push_back(s);
    limits.push_back(l);
    steps.push_back(step);
    return success();
  };
  if (parser.parseCommaSeparatedList(OpAsmParser::Delimiter::Square, parseRange))
    return failure();
  MLIRContext *context = parser.getContext();
  start = DenseI64ArrayAttr::get(context, starts);
  limit = DenseI64ArrayAttr::get(context, limits);
  strides = DenseI64ArrayAttr::get(context, steps);
  return success();
}

void mlir::moe::stablehlo::printSliceRanges(OpAsmPrinter &printer, Operation *, DenseI64ArrayAttr start,
                                            DenseI64ArrayAttr limit, DenseI64ArrayAttr strides) {
  printer << "[";
  for (int64_t i = 0; i < static_cast<int64_t>(start.size()); ++i) {
    if (i)
      printer << ", ";
    printer << start[i] << ":" << limit[i];
    if (i < static_cast<int64_t>(strides.size()) && strides[i] != 1)
      printer << ":" << strides[i];
  }
  printer << "]";
}

ParseResult mlir::moe::stablehlo::parseVariadicOperandWithAttribute(
    OpAsmParser &parser, SmallVectorImpl<OpAsmParser::UnresolvedOperand> &operands) {
  while (true) {
    OpAsmParser::UnresolvedOperand operand;
    OptionalParseResult parsed = parser.parseOptionalOperand(operand);
    if (!parsed.has_value())
      return success();
    if (failed(*parsed) || parser.parseComma())
      return failure();
    operands.push_back(operand);
  }
}

void mlir::moe::stablehlo::printVariadicOperandWithAttribute(OpAsmPrinter &printer, Operation *,
                                                             OperandRange operands) {
  for (Value operand : operands)
    printer << operand << ", ";
}

/// `[a, b] x [c, d]`.
static ParseResult parseDimsPair(OpAsmParser &parser, SmallVectorImpl<int64_t> &lhs,
                                 SmallVectorImpl<int64_t> &rhs) {
  FailureOr<SmallVector<int64_t>> l = parseDimList(parser);
  if (failed(l) || parser.parseKeyword("x"))
    return failure();
  FailureOr<SmallVector<int64_t>> r = parseDimList(parser);
  if (failed(r))
    return failure();
  lhs.assign(l->begin(), l->end());
  rhs.assign(r->begin(), r->end());
  return success();
}

ParseResult mlir::moe::stablehlo::parseDotDimensionNumbers(OpAsmParser &parser, DotDimensionNumbersAttr &dims) {
  SmallVector<int64_t> lhsBatch, rhsBatch, lhsContract, rhsContract;
  bool any = false;
  if (succeeded(parser.parseOptionalKeyword("batching_dims"))) {
    if (parser.parseEqual() || parseDimsPair(parser, lhsBatch, rhsBatch))
      return failure();
    any = true;
  }
  if (any ? succeeded(parser.parseOptionalComma()) : true) {
    if (succeeded(parser.parseOptionalKeyword("contracting_dims"))) {
      if (parser.parseEqual() || parseDimsPair(parser, lhsContract, rhsContract))
        return failure();
    } else if (any) {
      return parser.emitError(parser.getCurrentLocation(), "expected 'contracting_dims'");
    }
  }
  dims = DotDimensionNumbersAttr::get(parser.getContext(), lhsBatch, rhsBatch, lhsContract, rhsContract);
  return success();
}

void mlir::moe::stablehlo::printDotDimensionNumbers(OpAsmPrinter &printer, Operation *,
                                                    DotDimensionNumbersAttr dims) {
  auto printPair = [&](ArrayRef<int64_t> lhs, ArrayRef<int64_t> rhs) {
    printer << "[";
    llvm::interleaveComma(lhs, printer);
    printer << "] x [";
    llvm::interleaveComma(rhs, printer);
    printer << "]";
  };
  if (!dims.getLhsBatchingDimensions().empty()) {
    printer << "batching_dims = ";
    printPair(dims.getLhsBatchingDimensions(), dims.getRhsBatchingDimensions());
    printer << ", ";
  }
  printer << "contracting_dims = ";
  printPair(dims.getLhsContractingDimensions(), dims.getRhsContractingDimensions());
}

ParseResult mlir::moe::stablehlo::parsePrecisionConfig(OpAsmParser &parser, ArrayAttr &config) {
  if (failed(parser.parseOptionalComma()))
    return success();
  llvm::SMLoc loc = parser.getCurrentLocation();
  StringRef keyword;
  if (parser.parseKeyword(&keyword))
    return failure();
  if (keyword != "precision")
    return parser.emitError(loc) << "'" << keyword
                                 << "' is not supported on dot_general (only 'precision' is)";
  SmallVector<Attribute> values;
  if (parser.parseEqual() ||
      parser.parseCommaSeparatedList(OpAsmParser::Delimiter::Square, [&]() -> ParseResult {
        llvm::SMLoc at = parser.getCurrentLocation();
        StringRef name;
        if (parser.parseKeyword(&name))
          return failure();
        std::optional<Precision> precision = symbolizePrecision(name);
        if (!precision)
          return parser.emitError(at) << "unknown precision '" << name << "'";
        values.push_back(PrecisionAttr::get(parser.getContext(), *precision));
        return success();
      }))
    return failure();
  config = ArrayAttr::get(parser.getContext(), values);
  return success();
}

void mlir::moe::stablehlo::printPrecisionConfig(OpAsmPrinter &printer, Operation *, ArrayAttr config) {
  if (!config || config.empty())
    return;
  printer << ", precision = [";
  llvm::interleaveComma(config, printer, [&](Attribute a) {
    printer << stringifyPrecision(cast<PrecisionAttr>(a).getValue());
  });
  printer << "]";
}

ParseResult mlir::moe::stablehlo::parseCustomCallTarget(OpAsmParser &parser, StringAttr &target) {
  return parser.parseSymbolName(target);
}

void mlir::moe::stablehlo::printCustomCallTarget(OpAsmPrinter &printer, Operation *, StringAttr target) {
  printer.printSymbolName(target.getValue());
}
