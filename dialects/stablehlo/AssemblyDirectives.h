//===- AssemblyDirectives.h - StableHLO's pretty-syntax pieces --*- C++ -*-===//
//
// The custom<...> directives of the StableHLO op formats. Each parses the
// syntax StableHLO's own printer writes, so JAX text reads unchanged.
//
//===----------------------------------------------------------------------===//

#ifndef DIALECTS_STABLEHLO_ASSEMBLYDIRECTIVES_H
#define DIALECTS_STABLEHLO_ASSEMBLYDIRECTIVES_H

#include "mlir/IR/OpImplementation.h"

namespace mlir::moe::stablehlo {
class DotDimensionNumbersAttr;

/// `[0, 1]`: a dimension list of a dimension-number attribute.
FailureOr<SmallVector<int64_t>> parseDimList(AsmParser &parser);
void printDimList(AsmPrinter &printer, ArrayRef<int64_t> dims);

/// `: T` (every operand and the result of type T) or the functional form
/// `: (T0, T1) -> R`; the printer picks the short form when it applies.
ParseResult parseSameOperandsAndResultTypeImpl(OpAsmParser &parser, ArrayRef<Type *> operands,
                                               Type &result);
void printSameOperandsAndResultTypeImpl(OpAsmPrinter &printer, Operation *op);

template <typename... Ts>
ParseResult parseSameOperandsAndResultType(OpAsmParser &parser, Ts &...types) {
  SmallVector<Type *> all{&types...};
  Type *result = all.pop_back_val();
  return parseSameOperandsAndResultTypeImpl(parser, all, *result);
}
template <typename... Ts>
void printSameOperandsAndResultType(OpAsmPrinter &printer, Operation *op, Ts...) {
  printSameOperandsAndResultTypeImpl(printer, op);
}

/// `: predType, resultType` or `: (pred, on_true, on_false) -> result`.
ParseResult parseSelectOpType(OpAsmParser &parser, Type &pred, Type &onTrue, Type &onFalse, Type &result);
void printSelectOpType(OpAsmPrinter &printer, Operation *op, Type pred, Type onTrue, Type onFalse, Type result);

/// `[start:limit(:stride), ...]`.
ParseResult parseSliceRanges(OpAsmParser &parser, DenseI64ArrayAttr &start, DenseI64ArrayAttr &limit,
                             DenseI64ArrayAttr &strides);
void printSliceRanges(OpAsmPrinter &printer, Operation *op, DenseI64ArrayAttr start, DenseI64ArrayAttr limit,
                      DenseI64ArrayAttr strides);

/// Operands each followed by a comma, stopping before a keyword
/// (`%a, %b, dim = 0`).
ParseResult parseVariadicOperandWithAttribute(OpAsmParser &parser,
                                              SmallVectorImpl<OpAsmParser::UnresolvedOperand> &operands);
void printVariadicOperandWithAttribute(OpAsmPrinter &printer, Operation *op, OperandRange operands);

/// `batching_dims = [0] x [0], contracting_dims = [2] x [1]`.
ParseResult parseDotDimensionNumbers(OpAsmParser &parser, DotDimensionNumbersAttr &dims);
void printDotDimensionNumbers(OpAsmPrinter &printer, Operation *op, DotDimensionNumbersAttr dims);

/// Optional `, precision = [DEFAULT, HIGHEST]`.
ParseResult parsePrecisionConfig(OpAsmParser &parser, ArrayAttr &config);
void printPrecisionConfig(OpAsmPrinter &printer, Operation *op, ArrayAttr config);

/// `@target.name` (a symbol-like name kept as a string).
ParseResult parseCustomCallTarget(OpAsmParser &parser, StringAttr &target);
void printCustomCallTarget(OpAsmPrinter &printer, Operation *op, StringAttr target);

} // namespace mlir::moe::stablehlo

#endif // DIALECTS_STABLEHLO_ASSEMBLYDIRECTIVES_H
