//===- ScalarMath.h - scalar formulas every lowering shares ------*- C++ -*-===//
//
// Constants, f32 conversions and the activation formulas (sigmoid, SiLU,
// GELU in its erf and tanh forms, hard sigmoid) as arith/math ops on one
// scalar, for linalg bodies. The moe lowerings, the StableHLO lowering and
// the ONNX importer all build them here, so a numerical fix lands once.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_UTILS_SCALARMATH_H
#define MOE_UTILS_SCALARMATH_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/Value.h"

namespace mlir::moe::scalar {

/// A float constant of `type` (any float width).
Value floatConst(OpBuilder &b, Location loc, Type type, double value);
/// An integer constant of `type` (any width, or index).
Value intConst(OpBuilder &b, Location loc, Type type, int64_t value);
Value constF32(OpBuilder &b, Location loc, double value);
Value constI32(OpBuilder &b, Location loc, int64_t value);
Value constIndex(OpBuilder &b, Location loc, int64_t value);

/// a / d on signed integers (any width, or index), defined for every input
/// as XLA defines it: a / 0 = `byZero` (XLA: -1), INT_MIN / -1 = INT_MIN.
/// Never traps.
Value divSigned(OpBuilder &b, Location loc, Value a, Value d, int64_t byZero = -1);
/// a % d (the sign of a) on signed integers: a % 0 = a, INT_MIN % -1 = 0.
/// Never traps.
Value remSigned(OpBuilder &b, Location loc, Value a, Value d);

/// The multi-index of row-major position `flat` (index) in a tensor of
/// `sizes` (index values).
llvm::SmallVector<Value> unflattenIndex(OpBuilder &b, Location loc, Value flat, ArrayRef<Value> sizes);

/// x != 0 for an integer or float scalar (NaN is nonzero), as i1.
Value isNonZero(OpBuilder &b, Location loc, Value x);

/// Extends a float scalar to f32 (no-op for f32).
Value toF32(OpBuilder &b, Location loc, Value scalar);
/// Rounds an f32 scalar to `type` (no-op for f32).
Value fromF32(OpBuilder &b, Location loc, Value scalar, Type type);

/// 1 / (1 + e^-x), in x's float type.
Value sigmoid(OpBuilder &b, Location loc, Value x);
/// x / (1 + e^-x) (SiLU, the gate of SwiGLU), in x's float type.
Value silu(OpBuilder &b, Location loc, Value x);
/// 0.5 · x · (1 + erf(x / sqrt 2)) (exact GELU), in x's float type.
Value geluErf(OpBuilder &b, Location loc, Value x);
/// 0.5 · x · (1 + tanh(sqrt(2/pi) · (x + 0.044715 · x³))), in x's float type.
Value geluTanh(OpBuilder &b, Location loc, Value x);
/// max(0, min(1, alpha · x + beta)), in x's float type.
Value hardSigmoid(OpBuilder &b, Location loc, Value x, double alpha, double beta);

} // namespace mlir::moe::scalar

#endif // MOE_UTILS_SCALARMATH_H
