//===- TensorBuilders.h - tensor-level building blocks -*- C++ -*-===//
//
// The few shapes of computation the importers (ONNX, StableHLO) need, as linalg.generic and
// tensor ops on ranked tensors: numpy-broadcast elementwise maps, batched
// matmuls accumulated in f32, reductions over one axis, casts, transposes
// and reshapes. Dynamic sizes are read with tensor.dim from the operands.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_UTILS_TENSORBUILDERS_H
#define MOE_UTILS_TENSORBUILDERS_H

#include "mlir/IR/Builders.h"
#include "mlir/Dialect/Utils/StructuredOpsUtils.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/BuiltinTypes.h"

namespace mlir::moe::tensor_builders {

/// Body of an elementwise map: the operands' scalars -> the result scalar.
using ScalarFn = function_ref<Value(OpBuilder &, Location, ValueRange)>;

/// The numpy broadcast of `shapes`, or failure when two static sizes
/// differ and neither is 1. A dynamic size against a static one > 1 takes
/// the static one; two dynamic sizes give a dynamic one.
FailureOr<SmallVector<int64_t>> broadcastShape(ArrayRef<ArrayRef<int64_t>> shapes);

/// Called with a run-time size `got` of dimension `dim` of an operand
/// that must be 1 or the broadcast size `want` (a host check, say).
using BroadcastCheck = function_ref<void(OpBuilder &, Location, int64_t dim, Value got, Value want)>;

/// `fn` applied elementwise to `inputs` broadcast together (numpy rules);
/// the result has element type `resultElement`. Dynamic sizes not provably
/// equal (SizeEquality.h) are broadcast at run time: a size of 1 is read
/// at index 0, and sizes that do not broadcast give an empty result there
/// (never an out-of-bounds read), each passed to `check` when given.
FailureOr<Value> elementwise(OpBuilder &b, Location loc, ValueRange inputs, Type resultElement, ScalarFn fn,
                             BroadcastCheck check = nullptr);

/// [..., M, K] x [..., K, N] -> [..., M, N] (batch dimensions broadcast),
/// accumulated in f32 for floats and rounded to the operands' type. Ks not
/// provably equal (SizeEquality.h) are both cut to the smaller, and `check`,
/// when given, gets the rhs's K (`got`) against the lhs's (`want`; any K
/// passes when the result is empty).
FailureOr<Value> matmul(OpBuilder &b, Location loc, Value lhs, Value rhs, BroadcastCheck check = nullptr);

/// A tensor of `resultType` (its dynamic sizes `dynamicSizes`) holding, at
/// each parallel point of `iterators`, the sum over the reduction ones of
/// the product of `inputs` read through `maps` (one per input, then the
/// result's): matmul, einsum. Accumulated in f32 for floats, then rounded.
Value sumOfProducts(OpBuilder &b, Location loc, ValueRange inputs, ArrayRef<AffineMap> maps,
                    RankedTensorType resultType, ValueRange dynamicSizes,
                    ArrayRef<utils::IteratorType> iterators);

enum class Reduction { Sum, Max, Min, Prod, Mean };

/// Reduces `x` over `axis`, keeping it as a dimension of size 1 (f32
/// accumulation for floats).
Value reduceAxis(OpBuilder &b, Location loc, Value x, int64_t axis, Reduction kind);

/// Converts a scalar between element types (float widths, int <-> float,
/// int widths, i1).
Value castScalar(OpBuilder &b, Location loc, Value v, Type to);

/// Every element of `x` converted to `element`.
Value castTensor(OpBuilder &b, Location loc, Value x, Type element);

/// `x` with its dimensions permuted: result dim i is input dim perm[i].
Value transpose(OpBuilder &b, Location loc, Value x, ArrayRef<int64_t> perm);

/// `x` reshaped to `shape` (static sizes; at most one dynamic size, which
/// is inferred from the element count).
Value reshape(OpBuilder &b, Location loc, Value x, ArrayRef<int64_t> shape);

/// `x` reshaped to `sizes` (constants or index values; same element count).
Value reshapeToSizes(OpBuilder &b, Location loc, Value x, ArrayRef<OpFoldResult> sizes);

/// `x` reshaped to the shape of `like` (same element count), dynamic
/// sizes read from `like`.
Value reshapeLike(OpBuilder &b, Location loc, Value x, Value like);

/// Every size of `x`: attributes where static, tensor.dim where dynamic.
SmallVector<OpFoldResult> sizesOf(OpBuilder &b, Location loc, Value x);

/// The size of dimension `dim` of `x` as an index value (constant if static).
Value dimSize(OpBuilder &b, Location loc, Value x, int64_t dim);

/// tensor.empty of `type`, its dynamic sizes given in order.
Value empty(OpBuilder &b, Location loc, RankedTensorType type, ValueRange dynamicSizes);
/// An empty tensor of `element`s shaped like `like` (its dynamic sizes read).
Value emptyLike(OpBuilder &b, Location loc, Value like, Type element);

} // namespace mlir::moe::tensor_builders

#endif // MOE_UTILS_TENSORBUILDERS_H
