//===- ScalarBodies.cpp - stablehlo elementwise ops on scalars ------------===//
//
// The one place that knows what each elementwise op computes: tensor
// elementwise ops become linalg.generic bodies built here, and reducer,
// comparator and scatter bodies (ops on 0-d tensors) are run on scalars
// through the same function.
//
//===----------------------------------------------------------------------===//

#include "Lowerings.h"
#include "dialects/stablehlo/StablehloDialect.h"
#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;
namespace shlo = mlir::moe::stablehlo;

using scalar::floatConst;
using scalar::intConst;

/// Floats compared in TOTALORDER become signed integers that order the
/// same way: negative floats have their magnitude bits flipped.
static Value totalOrderKey(OpBuilder &b, Location loc, Value v) {
  unsigned width = v.getType().getIntOrFloatBitWidth();
  Type intType = b.getIntegerType(width);
  Value bits = arith::BitcastOp::create(b, loc, intType, v);
  Value sign = arith::ShRSIOp::create(b, loc, bits, intConst(b, loc, intType, width - 1));
  Value magnitudeMask = intConst(b, loc, intType, (int64_t(1) << (width - 1)) - 1);
  return arith::XOrIOp::create(b, loc, bits, arith::AndIOp::create(b, loc, sign, magnitudeMask));
}

/// A StableHLO shift: amounts of the bit width or more (read unsigned)
/// shift everything out, which arith leaves undefined.
static Value shiftScalar(OpBuilder &b, Location loc, Operation *op, Value x, Value amount) {
  Type type = x.getType();
  unsigned width = type.getIntOrFloatBitWidth();
  Value widthValue = intConst(b, loc, type, width);
  Value out = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, amount, widthValue);
  if (isa<shlo::ShiftRightArithmeticOp>(op)) {
    Value clamped = arith::SelectOp::create(b, loc, out, intConst(b, loc, type, width - 1), amount);
    return arith::ShRSIOp::create(b, loc, x, clamped);
  }
  Value shifted = isa<shlo::ShiftLeftOp>(op) ? Value(arith::ShLIOp::create(b, loc, x, amount))
                                            : Value(arith::ShRUIOp::create(b, loc, x, amount));
  return arith::SelectOp::create(b, loc, out, intConst(b, loc, type, 0), shifted);
}

/// erf^-1(x) by Giles' single-precision approximation (as XLA computes
/// it), in f32; +-inf at +-1.
static Value erfInvScalar(OpBuilder &b, Location loc, Value x) {
  Type type = x.getType();
  Type f32 = b.getF32Type();
  Value v = type == f32 ? x : tensor_builders::castScalar(b, loc, x, f32);
  auto c = [&](double value) { return floatConst(b, loc, f32, value); };
  auto fma = [&](Value p, Value w, double add) {
    return arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, p, w), c(add)).getResult();
  };
  Value oneMinus = arith::SubFOp::create(b, loc, c(1.0), v);
  Value onePlus = arith::AddFOp::create(b, loc, c(1.0), v);
  Value w = arith::NegFOp::create(b, loc, math::LogOp::create(b, loc, arith::MulFOp::create(b, loc, oneMinus, onePlus)));
  Value small = arith::SubFOp::create(b, loc, w, c(2.5));
  Value p = c(2.81022636e-08);
  for (double k : {3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503, -0.00417768164,
                   0.246640727, 1.50140941})
    p = fma(p, small, k);
  Value large = arith::SubFOp::create(b, loc, math::SqrtOp::create(b, loc, w), c(3.0));
  Value q = c(-0.000200214257);
  for (double k : {0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047,
                   1.00167406, 2.83297682})
    q = fma(q, large, k);
  Value useSmall = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, w, c(5.0));
  Value result = arith::MulFOp::create(b, loc, arith::SelectOp::create(b, loc, useSmall, p, q), v);
  // At |x| = 1 the polynomial is finite; erf^-1 is infinite there.
  Value atOne = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, math::AbsFOp::create(b, loc, v), c(1.0));
  Value inf = math::CopySignOp::create(b, loc, c(std::numeric_limits<double>::infinity()), v);
  result = arith::SelectOp::create(b, loc, atOne, inf, result);
  return type == f32 ? result : tensor_builders::castScalar(b, loc, result, type);
}

static Value compareScalars(OpBuilder &b, Location loc, shlo::CompareOp op, Value lhs, Value rhs) {
  using Dir = shlo::ComparisonDirection;
  Dir dir = op.getComparisonDirection();
  Type element = lhs.getType();
  shlo::ComparisonType kind = op.getCompareType().value_or(
      isa<FloatType>(element) ? shlo::ComparisonType::FLOAT
                              : (element.isInteger(1) ? shlo::ComparisonType::UNSIGNED : shlo::ComparisonType::SIGNED));
  if (isa<FloatType>(element) && kind == shlo::ComparisonType::TOTALORDER) {
    lhs = totalOrderKey(b, loc, lhs);
    rhs = totalOrderKey(b, loc, rhs);
    kind = shlo::ComparisonType::SIGNED;
    element = lhs.getType();
  }
  if (isa<FloatType>(element)) {
    arith::CmpFPredicate pred = arith::CmpFPredicate::OEQ;
    switch (dir) {
    case Dir::EQ: pred = arith::CmpFPredicate::OEQ; break;
    case Dir::NE: pred = arith::CmpFPredicate::UNE; break;
    case Dir::GE: pred = arith::CmpFPredicate::OGE; break;
    case Dir::GT: pred = arith::CmpFPredicate::OGT; break;
    case Dir::LE: pred = arith::CmpFPredicate::OLE; break;
    case Dir::LT: pred = arith::CmpFPredicate::OLT; break;
    }
    return arith::CmpFOp::create(b, loc, pred, lhs, rhs);
  }
  bool isSigned = kind != shlo::ComparisonType::UNSIGNED;
  arith::CmpIPredicate pred = arith::CmpIPredicate::eq;
  switch (dir) {
  case Dir::EQ: pred = arith::CmpIPredicate::eq; break;
  case Dir::NE: pred = arith::CmpIPredicate::ne; break;
  case Dir::GE: pred = isSigned ? arith::CmpIPredicate::sge : arith::CmpIPredicate::uge; break;
  case Dir::GT: pred = isSigned ? arith::CmpIPredicate::sgt : arith::CmpIPredicate::ugt; break;
  case Dir::LE: pred = isSigned ? arith::CmpIPredicate::sle : arith::CmpIPredicate::ule; break;
  case Dir::LT: pred = isSigned ? arith::CmpIPredicate::slt : arith::CmpIPredicate::ult; break;
  }
  return arith::CmpIOp::create(b, loc, pred, lhs, rhs);
}

/// StableHLO's maximum/minimum propagate NaN (arith.maximumf does); on i1
/// they are or/and.
static Value maxScalar(OpBuilder &b, Location loc, Value x, Value y) {
  Type t = x.getType();
  if (isa<FloatType>(t))
    return arith::MaximumFOp::create(b, loc, x, y);
  if (t.isInteger(1))
    return arith::OrIOp::create(b, loc, x, y);
  return arith::MaxSIOp::create(b, loc, x, y);
}

static Value minScalar(OpBuilder &b, Location loc, Value x, Value y) {
  Type t = x.getType();
  if (isa<FloatType>(t))
    return arith::MinimumFOp::create(b, loc, x, y);
  if (t.isInteger(1))
    return arith::AndIOp::create(b, loc, x, y);
  return arith::MinSIOp::create(b, loc, x, y);
}

static Value signScalar(OpBuilder &b, Location loc, Value x) {
  Type t = x.getType();
  if (isa<FloatType>(t)) {
    // ±0 and NaN stay as they are.
    Value zero = floatConst(b, loc, t, 0.0);
    Value positive = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x, zero);
    Value negative = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x, zero);
    Value s = arith::SelectOp::create(b, loc, negative, floatConst(b, loc, t, -1.0), x);
    return arith::SelectOp::create(b, loc, positive, floatConst(b, loc, t, 1.0), s);
  }
  Value zero = intConst(b, loc, t, 0);
  Value positive = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, x, zero);
  Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, x, zero);
  Value s = arith::SelectOp::create(b, loc, negative, intConst(b, loc, t, -1), zero);
  return arith::SelectOp::create(b, loc, positive, intConst(b, loc, t, 1), s);
}

/// 16-bit floats are computed in f32 and rounded once: math functions
/// have no bf16 forms on the CPU (LLVM would call compiler-rt's
/// __truncsfbf2), and XLA computes them in f32 too.
static bool isNarrowFloat(Type t) {
  auto f = dyn_cast<FloatType>(t);
  return f && f.getWidth() < 32;
}

Value stablehlo_lowering::emitScalarOp(OpBuilder &b, Location loc, Operation *op, ValueRange v) {
  Type resultElement = cast<ShapedType>(op->getResult(0).getType()).getElementType();
  if (isNarrowFloat(resultElement) && !isa<shlo::ConvertOp, shlo::SelectOp>(op) &&
      llvm::all_of(v, [&](Value x) { return x.getType() == resultElement; })) {
    SmallVector<Value> wide;
    for (Value x : v)
      wide.push_back(arith::ExtFOp::create(b, loc, b.getF32Type(), x));
    Value r = emitScalarOp(b, loc, op, wide);
    return r ? arith::TruncFOp::create(b, loc, resultElement, r).getResult() : Value();
  }
  auto isFloat = [&]() { return isa<FloatType>(v[0].getType()); };
  auto isBool = [&]() { return v[0].getType().isInteger(1); };
  return llvm::TypeSwitch<Operation *, Value>(op)
      .Case([&](shlo::AddOp) -> Value {
        if (isFloat())
          return arith::AddFOp::create(b, loc, v[0], v[1]);
        if (isBool())
          return arith::OrIOp::create(b, loc, v[0], v[1]);
        return arith::AddIOp::create(b, loc, v[0], v[1]);
      })
      .Case([&](shlo::SubtractOp) -> Value {
        if (isFloat())
          return arith::SubFOp::create(b, loc, v[0], v[1]);
        return arith::SubIOp::create(b, loc, v[0], v[1]);
      })
      .Case([&](shlo::MulOp) -> Value {
        if (isFloat())
          return arith::MulFOp::create(b, loc, v[0], v[1]);
        if (isBool())
          return arith::AndIOp::create(b, loc, v[0], v[1]);
        return arith::MulIOp::create(b, loc, v[0], v[1]);
      })
      .Case([&](shlo::DivOp) -> Value {
        if (isFloat())
          return arith::DivFOp::create(b, loc, v[0], v[1]);
        return scalar::divSigned(b, loc, v[0], v[1]);
      })
      .Case([&](shlo::RemOp) -> Value {
        // x - trunc(x / y) * y: NVVM has no frem. Exact while |x / y| is
        // well below 2^24 (f32); fmod is exact beyond that.
        if (isFloat()) {
          Value quotient = math::TruncOp::create(b, loc, arith::DivFOp::create(b, loc, v[0], v[1]));
          return arith::SubFOp::create(b, loc, v[0], arith::MulFOp::create(b, loc, quotient, v[1]));
        }
        return scalar::remSigned(b, loc, v[0], v[1]);
      })
      .Case([&](shlo::MaxOp) { return maxScalar(b, loc, v[0], v[1]); })
      .Case([&](shlo::MinOp) { return minScalar(b, loc, v[0], v[1]); })
      .Case([&](shlo::PowOp) -> Value {
        if (isFloat())
          return math::PowFOp::create(b, loc, v[0], v[1]);
        return math::IPowIOp::create(b, loc, v[0], v[1]);
      })
      .Case([&](shlo::AndOp) -> Value { return arith::AndIOp::create(b, loc, v[0], v[1]); })
      .Case([&](shlo::OrOp) -> Value { return arith::OrIOp::create(b, loc, v[0], v[1]); })
      .Case([&](shlo::XorOp) -> Value { return arith::XOrIOp::create(b, loc, v[0], v[1]); })
      .Case([&](shlo::Atan2Op) -> Value { return math::Atan2Op::create(b, loc, v[0], v[1]); })
      .Case<shlo::ShiftLeftOp, shlo::ShiftRightArithmeticOp, shlo::ShiftRightLogicalOp>(
          [&](Operation *shift) { return shiftScalar(b, loc, shift, v[0], v[1]); })
      .Case([&](shlo::PopcntOp) -> Value { return math::CtPopOp::create(b, loc, v[0]); })
      .Case([&](shlo::CountLeadingZerosOp) -> Value { return math::CountLeadingZerosOp::create(b, loc, v[0]); })
      .Case([&](shlo::AbsOp) -> Value {
        if (isFloat())
          return math::AbsFOp::create(b, loc, v[0]);
        return math::AbsIOp::create(b, loc, v[0]);
      })
      .Case([&](shlo::CbrtOp) -> Value { return math::CbrtOp::create(b, loc, v[0]); })
      .Case([&](shlo::CeilOp) -> Value { return math::CeilOp::create(b, loc, v[0]); })
      .Case([&](shlo::FloorOp) -> Value { return math::FloorOp::create(b, loc, v[0]); })
      .Case([&](shlo::CosineOp) -> Value { return math::CosOp::create(b, loc, v[0]); })
      .Case([&](shlo::SineOp) -> Value { return math::SinOp::create(b, loc, v[0]); })
      .Case([&](shlo::TanOp) -> Value { return math::TanOp::create(b, loc, v[0]); })
      .Case([&](shlo::TanhOp) -> Value { return math::TanhOp::create(b, loc, v[0]); })
      .Case([&](shlo::ExpOp) -> Value { return math::ExpOp::create(b, loc, v[0]); })
      .Case([&](shlo::Expm1Op) -> Value { return math::ExpM1Op::create(b, loc, v[0]); })
      .Case([&](shlo::LogOp) -> Value { return math::LogOp::create(b, loc, v[0]); })
      .Case([&](shlo::Log1pOp) -> Value { return math::Log1pOp::create(b, loc, v[0]); })
      .Case([&](shlo::LogisticOp) -> Value { return scalar::sigmoid(b, loc, v[0]); })
      .Case([&](shlo::NegOp) -> Value {
        if (isFloat())
          return arith::NegFOp::create(b, loc, v[0]);
        return arith::SubIOp::create(b, loc, intConst(b, loc, v[0].getType(), 0), v[0]);
      })
      .Case([&](shlo::NotOp) -> Value {
        return arith::XOrIOp::create(b, loc, v[0], intConst(b, loc, v[0].getType(), -1));
      })
      .Case([&](shlo::RoundNearestAfzOp) -> Value { return math::RoundOp::create(b, loc, v[0]); })
      .Case([&](shlo::RoundNearestEvenOp) -> Value { return math::RoundEvenOp::create(b, loc, v[0]); })
      .Case([&](shlo::RsqrtOp) -> Value { return math::RsqrtOp::create(b, loc, v[0]); })
      .Case([&](shlo::SqrtOp) -> Value { return math::SqrtOp::create(b, loc, v[0]); })
      .Case([&](shlo::SignOp) { return signScalar(b, loc, v[0]); })
      .Case([&](shlo::ConvertOp op) {
        return tensor_builders::castScalar(b, loc, v[0], cast<ShapedType>(op.getType()).getElementType());
      })
      .Case([&](shlo::IsFiniteOp) -> Value {
        Type t = v[0].getType();
        Value inf = floatConst(b, loc, t, std::numeric_limits<double>::infinity());
        return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::ONE, math::AbsFOp::create(b, loc, v[0]), inf);
      })
      .Case([&](shlo::CompareOp op) { return compareScalars(b, loc, op, v[0], v[1]); })
      .Case([&](shlo::SelectOp) -> Value { return arith::SelectOp::create(b, loc, v[0], v[1], v[2]); })
      .Case([&](shlo::ClampOp) { return minScalar(b, loc, maxScalar(b, loc, v[1], v[0]), v[2]); })
      .Case([&](chlo::ErfOp) -> Value { return math::ErfOp::create(b, loc, v[0]); })
      .Case([&](chlo::SquareOp) -> Value { return arith::MulFOp::create(b, loc, v[0], v[0]); })
      .Case([&](chlo::ErfInvOp) { return erfInvScalar(b, loc, v[0]); })
      .Case([&](chlo::ErfcOp) -> Value {
        Value one = floatConst(b, loc, v[0].getType(), 1.0);
        return arith::SubFOp::create(b, loc, one, math::ErfOp::create(b, loc, v[0]));
      })
      .Default([](Operation *) { return Value(); });
}

FailureOr<SmallVector<Value>> stablehlo_lowering::emitScalarBody(OpBuilder &b, Location loc, Region &body,
                                                                ValueRange args) {
  Block &block = body.front();
  if (block.getNumArguments() != args.size())
    return body.getParentOp()->emitError("the body takes ") << block.getNumArguments() << " arguments, "
                                                           << args.size() << " are given", failure();
  IRMapping scalars;
  for (auto [arg, value] : llvm::zip(block.getArguments(), args))
    scalars.map(arg, value);
  // A value the body uses: one it computed, or a splat constant from outside
  // (CSE shares a function's constants with the bodies they dominate).
  auto scalarOf = [&](Operation *user, Value v) -> FailureOr<Value> {
    if (Value mapped = scalars.lookupOrNull(v))
      return mapped;
    DenseElementsAttr dense;
    if (!matchPattern(v, m_Constant(&dense)) || !dense.isSplat())
      return user->emitError("a reducer, comparator or scatter body may use only its arguments, values it "
                             "computes and splat constants"),
             failure();
    Value scalar = arith::ConstantOp::create(b, loc, cast<TypedAttr>(dense.getSplatValue<Attribute>()));
    scalars.map(v, scalar);
    return scalar;
  };
  for (Operation &op : block.without_terminator()) {
    if (op.getNumResults() != 1)
      return op.emitError("'") << op.getName() << "' with " << op.getNumResults()
                               << " results is not supported inside a reducer, comparator or scatter body",
             failure();
    Value result;
    if (isa<shlo::ConstantOp>(op)) {
      FailureOr<Value> constant = scalarOf(&op, op.getResult(0));
      if (failed(constant))
        return failure();
      result = *constant;
    } else if (isa<shlo::BroadcastInDimOp, shlo::ReshapeOp>(op) &&
               cast<ShapedType>(op.getResult(0).getType()).getRank() == 0) {
      FailureOr<Value> operand = scalarOf(&op, op.getOperand(0)); // 0-d to 0-d: the same scalar
      if (failed(operand))
        return failure();
      result = *operand;
    } else {
      SmallVector<Value> operands;
      for (Value operand : op.getOperands()) {
        FailureOr<Value> scalar = scalarOf(&op, operand);
        if (failed(scalar))
          return failure();
        operands.push_back(*scalar);
      }
      result = emitScalarOp(b, loc, &op, operands);
      if (!result)
        return op.emitError("'") << op.getName() << "' is not supported inside a reducer, comparator or scatter body",
               failure();
    }
    scalars.map(op.getResult(0), result);
  }
  SmallVector<Value> results;
  for (Value v : block.getTerminator()->getOperands()) {
    FailureOr<Value> scalar = scalarOf(block.getTerminator(), v);
    if (failed(scalar))
      return failure();
    results.push_back(*scalar);
  }
  return results;
}
