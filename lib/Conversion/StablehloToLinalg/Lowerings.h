//===- Lowerings.h - stablehlo/chlo ops to linalg, tensor, arith, math -*- C++ -*-===//
//
// One function per family of ops. Each builds the replacement of `op`
// before it (static shapes only; the pass checks them first) and returns
// its results, or emits an error naming what is not supported.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_CONVERSION_STABLEHLOTOLINALG_LOWERINGS_H
#define MOE_CONVERSION_STABLEHLOTOLINALG_LOWERINGS_H

#include "mlir/IR/AffineMap.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Operation.h"

namespace mlir::moe::stablehlo_lowering {

using Results = FailureOr<SmallVector<Value>>;

/// The scalar form of an elementwise op (`operands` are its scalars), or
/// null (no error emitted) when `op` is not elementwise.
Value emitScalarOp(OpBuilder &b, Location loc, Operation *op, ValueRange operands);

/// The scalar values a reducer/comparator/scatter body returns for the
/// scalar arguments `args`; emits an error for ops it cannot run.
FailureOr<SmallVector<Value>> emitScalarBody(OpBuilder &b, Location loc, Region &body, ValueRange args);

/// A linalg.generic with one parallel loop per dimension of `resultType`
/// reading `inputs` through `maps` into a fresh result; `body` gets the
/// inputs' scalars and returns the result's.
Value buildParallelGeneric(OpBuilder &b, Location loc, RankedTensorType resultType, ValueRange inputs,
                           ArrayRef<AffineMap> maps,
                           function_ref<Value(OpBuilder &, Location, ValueRange)> body);

/// The scalar element of a 0-d tensor.
Value extractScalar(OpBuilder &b, Location loc, Value tensor0d);

/// Elementwise ops, compare, select, clamp, convert.
Results lowerElementwise(OpBuilder &b, Operation *op);
/// constant, iota, broadcast_in_dim, reshape, transpose, slice,
/// dynamic_slice, dynamic_update_slice, concatenate, pad, reverse.
Results lowerShapeOp(OpBuilder &b, Operation *op);
/// dot_general, chlo.ragged_dot, reduce, reduce_window.
Results lowerContraction(OpBuilder &b, Operation *op);
/// gather, scatter, sort, chlo.top_k.
Results lowerIndexing(OpBuilder &b, Operation *op);

} // namespace mlir::moe::stablehlo_lowering

#endif // MOE_CONVERSION_STABLEHLOTOLINALG_LOWERINGS_H
