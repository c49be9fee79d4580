//===- ScalarMath.cpp - scalar formulas every lowering shares -------------===//

#include "moe/Utils/ScalarMath.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

#include <limits>

using namespace mlir;

namespace mlir::moe::scalar {

Value floatConst(OpBuilder &b, Location loc, Type type, double value) {
  return arith::ConstantOp::create(b, loc, type, b.getFloatAttr(type, value));
}

Value intConst(OpBuilder &b, Location loc, Type type, int64_t value) {
  if (type.isIndex())
    return arith::ConstantIndexOp::create(b, loc, value);
  return arith::ConstantOp::create(b, loc, type, b.getIntegerAttr(type, value));
}

Value constF32(OpBuilder &b, Location loc, double value) {
  return floatConst(b, loc, b.getF32Type(), value);
}

Value constI32(OpBuilder &b, Location loc, int64_t value) {
  return intConst(b, loc, b.getI32Type(), value);
}

Value constIndex(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantIndexOp::create(b, loc, value);
}

/// The divisor that makes a / d and a % d safe (1 where d is 0, or where
/// a / d overflows), and whether d is 0.
static std::pair<Value, Value> safeDivisor(OpBuilder &b, Location loc, Value a, Value d) {
  Type t = a.getType();
  unsigned width = t.isIndex() ? 64 : t.getIntOrFloatBitWidth();
  Value min = t.isIndex() ? constIndex(b, loc, std::numeric_limits<int64_t>::min())
                          : arith::ConstantOp::create(b, loc, t, b.getIntegerAttr(t, APInt::getSignedMinValue(width)));
  Value isZero = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, d, intConst(b, loc, t, 0));
  Value overflow = arith::AndIOp::create(
      b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, a, min),
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, d, intConst(b, loc, t, -1)));
  Value safe = arith::SelectOp::create(b, loc, arith::OrIOp::create(b, loc, isZero, overflow), intConst(b, loc, t, 1), d);
  return {safe, isZero};
}

Value divSigned(OpBuilder &b, Location loc, Value a, Value d, int64_t byZero) {
  auto [safe, isZero] = safeDivisor(b, loc, a, d);
  Value q = arith::DivSIOp::create(b, loc, a, safe); // INT_MIN / 1 = INT_MIN
  return arith::SelectOp::create(b, loc, isZero, intConst(b, loc, a.getType(), byZero), q);
}

Value remSigned(OpBuilder &b, Location loc, Value a, Value d) {
  auto [safe, isZero] = safeDivisor(b, loc, a, d);
  Value r = arith::RemSIOp::create(b, loc, a, safe); // INT_MIN % 1 = 0
  return arith::SelectOp::create(b, loc, isZero, a, r);
}

SmallVector<Value> unflattenIndex(OpBuilder &b, Location loc, Value flat, ArrayRef<Value> sizes) {
  SmallVector<Value> idx(sizes.size());
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    idx[d] = arith::RemUIOp::create(b, loc, flat, sizes[d]);
    flat = arith::DivUIOp::create(b, loc, flat, sizes[d]);
  }
  return idx;
}

Value isNonZero(OpBuilder &b, Location loc, Value x) {
  Type type = x.getType();
  if (isa<FloatType>(type))
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, x, floatConst(b, loc, type, 0.0));
  return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, x, intConst(b, loc, type, 0));
}

Value toF32(OpBuilder &b, Location loc, Value scalar) {
  if (scalar.getType().isF32())
    return scalar;
  return arith::ExtFOp::create(b, loc, b.getF32Type(), scalar);
}

Value fromF32(OpBuilder &b, Location loc, Value scalar, Type type) {
  if (type.isF32())
    return scalar;
  return arith::TruncFOp::create(b, loc, type, scalar);
}

Value sigmoid(OpBuilder &b, Location loc, Value x) {
  Value one = floatConst(b, loc, x.getType(), 1.0);
  Value negExp = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, x));
  return arith::DivFOp::create(b, loc, one, arith::AddFOp::create(b, loc, one, negExp));
}

Value silu(OpBuilder &b, Location loc, Value x) {
  Value one = floatConst(b, loc, x.getType(), 1.0);
  Value negExp = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, x));
  return arith::DivFOp::create(b, loc, x, arith::AddFOp::create(b, loc, one, negExp));
}

/// 0.5 · x · (1 + inner): the shape both GELU forms share.
static Value geluFrom(OpBuilder &b, Location loc, Value x, Value inner) {
  Type t = x.getType();
  Value half = arith::MulFOp::create(b, loc, x, floatConst(b, loc, t, 0.5));
  return arith::MulFOp::create(b, loc, half, arith::AddFOp::create(b, loc, floatConst(b, loc, t, 1.0), inner));
}

Value geluErf(OpBuilder &b, Location loc, Value x) {
  Value scaled = arith::MulFOp::create(b, loc, x, floatConst(b, loc, x.getType(), 0.70710678118654752440));
  return geluFrom(b, loc, x, math::ErfOp::create(b, loc, scaled));
}

Value geluTanh(OpBuilder &b, Location loc, Value x) {
  Type t = x.getType();
  Value cube = arith::MulFOp::create(b, loc, arith::MulFOp::create(b, loc, x, x), x);
  Value inner = arith::AddFOp::create(b, loc, x, arith::MulFOp::create(b, loc, cube, floatConst(b, loc, t, 0.044715)));
  Value scaled = arith::MulFOp::create(b, loc, inner, floatConst(b, loc, t, 0.79788456080286535588));
  return geluFrom(b, loc, x, math::TanhOp::create(b, loc, scaled));
}

Value hardSigmoid(OpBuilder &b, Location loc, Value x, double alpha, double beta) {
  Type t = x.getType();
  Value v = arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, x, floatConst(b, loc, t, alpha)),
                                  floatConst(b, loc, t, beta));
  return arith::MaximumFOp::create(b, loc, floatConst(b, loc, t, 0.0),
                                   arith::MinimumFOp::create(b, loc, floatConst(b, loc, t, 1.0), v));
}

} // namespace mlir::moe::scalar
