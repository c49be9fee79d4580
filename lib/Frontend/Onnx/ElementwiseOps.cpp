//===- ElementwiseOps.cpp - default-domain elementwise ONNX ops -----------===//
//
// Each becomes one linalg.generic over the operands broadcast with numpy's
// rules; float math runs in f32 (f16/bf16 rounded back), the scalar
// formulas from lib/Utils/ScalarMath.
//
//===----------------------------------------------------------------------===//

#include "OnnxImporter.h"
#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe::onnx_import;
using mlir::moe::scalar::constF32;

namespace {


/// A binary op with numpy broadcasting; `floatOp`/`intOp` build the scalar.
template <typename FloatOp, typename IntOp>
ConvertFn binary() {
  return [](NodeContext &ctx) -> Results {
    if (failed(ctx.expectInputs(2, false)))
      return failure();
    Type element = ctx.inputType(0).getElementType();
    if (ctx.inputType(1).getElementType() != element)
      return ctx.error() << "operand types differ: " << ctx.input(0).getType() << " and "
                         << ctx.input(1).getType(),
             failure();
    return mapBroadcast(ctx, ValueRange{ctx.input(0), ctx.input(1)}, element,
                        [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
                          if (isa<FloatType>(element))
                            return FloatOp::create(b, loc, a[0], a[1]);
                          return IntOp::create(b, loc, a[0], a[1]);
                        });
  };
}

/// A float unary op computed in f32 (f16/bf16 rounded back); `fn` may read
/// the node's attributes.
using UnaryFn = std::function<Value(OpBuilder &, Location, Value, const NodeContext &)>;
ConvertFn unaryWithAttrs(UnaryFn fn) {
  return [fn](NodeContext &ctx) -> Results {
    if (failed(ctx.expectInputs(1, true)))
      return failure();
    Type element = ctx.inputType(0).getElementType();
    return single(tb::elementwise(ctx.b, ctx.loc, ValueRange{ctx.input(0)}, element,
                                  [&](OpBuilder &b, Location loc, ValueRange a) {
                                    Value x = tb::castScalar(b, loc, a[0], b.getF32Type());
                                    return tb::castScalar(b, loc, fn(b, loc, x, ctx), element);
                                  }));
  };
}

ConvertFn unary(std::function<Value(OpBuilder &, Location, Value)> fn) {
  return unaryWithAttrs([fn](OpBuilder &b, Location l, Value x, const NodeContext &) { return fn(b, l, x); });
}

/// Sign: -1, 0 or 1 in the input's type, floats and integers (NaN stays
/// NaN, as numpy's and PyTorch's sign).
Results convertSign(NodeContext &ctx) {
  if (failed(ctx.expectInputs(1, false)))
    return failure();
  Type element = ctx.inputType(0).getElementType();
  if (!isa<FloatType, IntegerType>(element) || element.isInteger(1))
    return ctx.error() << "input must be a float or integer tensor", failure();
  return mapBroadcast(ctx, ValueRange{ctx.input(0)}, element, [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
    if (auto f = dyn_cast<FloatType>(element)) {
      Value zero = arith::ConstantOp::create(b, loc, f, b.getFloatAttr(f, 0.0));
      Value one = arith::ConstantOp::create(b, loc, f, b.getFloatAttr(f, 1.0));
      Value minusOne = arith::ConstantOp::create(b, loc, f, b.getFloatAttr(f, -1.0));
      Value above = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, a[0], zero);
      Value below = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, a[0], zero);
      // Zeros (either sign) and NaN pass through.
      return arith::SelectOp::create(b, loc, above, one, arith::SelectOp::create(b, loc, below, minusOne, a[0]));
    }
    Value zero = scalar::intConst(b, loc, element, 0);
    Value above = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, a[0], zero);
    Value below = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, a[0], zero);
    return arith::SubIOp::create(b, loc, arith::ExtUIOp::create(b, loc, element, above),
                                 arith::ExtUIOp::create(b, loc, element, below));
  });
}

/// Integer Div defined everywhere (lib/Utils/ScalarMath: x / 0 = -1,
/// INT_MIN / -1 = INT_MIN), never a trap in the generated code.
struct SignedDivision {
  static Value create(OpBuilder &b, Location loc, Value a, Value d) { return scalar::divSigned(b, loc, a, d); }
};

/// x >= 0 ? x : negative(x).
Value whereNegative(OpBuilder &b, Location l, Value x, Value negative) {
  Value positive = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OGE, x, constF32(b, l, 0.0));
  return arith::SelectOp::create(b, l, positive, x, negative);
}

/// Gelu (opset 20): exact with erf, or the tanh approximation.
Value gelu(OpBuilder &b, Location l, Value x, const NodeContext &ctx) {
  if (ctx.stringAttr("approximate", "none") == "tanh")
    return scalar::geluTanh(b, l, x);
  return scalar::geluErf(b, l, x);
}

Results convertCast(NodeContext &ctx) {
  if (failed(ctx.expectInputs(1, false)))
    return failure();
  Type to = elementTypeOf(ctx.b.getContext(), static_cast<int32_t>(ctx.intAttr("to", 0)));
  if (!to)
    return ctx.error() << "unsupported target type " << ctx.intAttr("to", 0), failure();
  return SmallVector<Value>{tb::castTensor(ctx.b, ctx.loc, ctx.input(0), to)};
}

/// A comparison with numpy broadcasting: an i1 tensor.
ConvertFn compare(arith::CmpFPredicate fp, arith::CmpIPredicate ip) {
  return [fp, ip](NodeContext &ctx) -> Results {
    if (failed(ctx.expectInputs(2, false)))
      return failure();
    Type element = ctx.inputType(0).getElementType();
    if (ctx.inputType(1).getElementType() != element)
      return ctx.error() << "operand types differ", failure();
    return mapBroadcast(ctx, ValueRange{ctx.input(0), ctx.input(1)}, ctx.b.getI1Type(),
                        [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
                          if (isa<FloatType>(element))
                            return arith::CmpFOp::create(b, loc, fp, a[0], a[1]);
                          return arith::CmpIOp::create(b, loc, ip, a[0], a[1]);
                        });
  };
}

/// Mod with numpy broadcasting: integers as Python's % (the result takes
/// the divisor's sign) or, with fmod = 1, as C's fmod (the dividend's);
/// floats as fmod only (the spec requires fmod = 1), x - trunc(x / y) * y.
/// Integer division by 0 gives x (never a trap).
Results convertMod(NodeContext &ctx) {
  if (failed(ctx.expectInputs(2, false)))
    return failure();
  Type element = ctx.inputType(0).getElementType();
  if (ctx.inputType(1).getElementType() != element)
    return ctx.error() << "operand types differ", failure();
  bool fmod = ctx.intAttr("fmod", 0) != 0;
  if (isa<FloatType>(element) && !fmod)
    return ctx.error() << "fmod must be 1 for float inputs", failure();
  return mapBroadcast(ctx, ValueRange{ctx.input(0), ctx.input(1)}, element,
                      [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
                        if (isa<FloatType>(element)) {
                          Value x = tb::castScalar(b, loc, a[0], b.getF32Type()),
                                y = tb::castScalar(b, loc, a[1], b.getF32Type());
                          Value q = math::TruncOp::create(b, loc, arith::DivFOp::create(b, loc, x, y));
                          Value r = arith::SubFOp::create(b, loc, x, arith::MulFOp::create(b, loc, q, y));
                          return tb::castScalar(b, loc, r, element);
                        }
                        Value r = scalar::remSigned(b, loc, a[0], a[1]);
                        if (fmod)
                          return r;
                        // A non-zero remainder whose sign differs from the divisor's moves by one divisor.
                        Value zero = scalar::intConst(b, loc, element, 0);
                        Value nonZero = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, r, zero);
                        Value rNeg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, r, zero);
                        Value dNeg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, a[1], zero);
                        Value differs = arith::AndIOp::create(b, loc, nonZero,
                                                              arith::XOrIOp::create(b, loc, rNeg, dNeg));
                        return arith::SelectOp::create(b, loc, differs, arith::AddIOp::create(b, loc, r, a[1]), r);
                      });
}

/// IsNaN / IsInf: a float test per element, bool result.
ConvertFn floatTest(std::function<Value(OpBuilder &, Location, Value, const NodeContext &)> test) {
  return [test](NodeContext &ctx) -> Results {
    if (failed(ctx.expectInputs(1, true)))
      return failure();
    return single(tb::elementwise(ctx.b, ctx.loc, ValueRange{ctx.input(0)}, ctx.b.getI1Type(),
                                  [&](OpBuilder &b, Location loc, ValueRange a) {
                                    return test(b, loc, tb::castScalar(b, loc, a[0], b.getF32Type()), ctx);
                                  }));
  };
}

Value isInf(OpBuilder &b, Location l, Value x, const NodeContext &ctx) {
  auto equals = [&](double v) -> Value {
    return arith::CmpFOp::create(b, l, arith::CmpFPredicate::OEQ, x, constF32(b, l, v));
  };
  bool positive = ctx.intAttr("detect_positive", 1) != 0, negative = ctx.intAttr("detect_negative", 1) != 0;
  Value none = arith::ConstantOp::create(b, l, b.getBoolAttr(false));
  Value pos = positive ? equals(INFINITY) : none, neg = negative ? equals(-INFINITY) : none;
  return arith::OrIOp::create(b, l, pos, neg);
}

/// Not, And, Or, Xor on bool tensors (numpy broadcasting for the binary ones).
template <typename Op>
ConvertFn logical(unsigned arity) {
  return [arity](NodeContext &ctx) -> Results {
    if (failed(ctx.expectInputs(arity, false)))
      return failure();
    for (unsigned i = 0; i < arity; ++i)
      if (!ctx.inputType(i).getElementType().isInteger(1))
        return ctx.error() << "input " << i << " must be a bool tensor, got " << ctx.input(i).getType(), failure();
    SmallVector<Value> operands(ctx.inputs.begin(), ctx.inputs.begin() + arity);
    return mapBroadcast(ctx, operands, ctx.b.getI1Type(), [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
      if (arity == 1) // Not: x xor true.
        return Op::create(b, loc, a[0], arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
      return Op::create(b, loc, a[0], a[1]);
    });
  };
}

/// Clip(x, min?, max?): min and max are scalars (opset 11+), either may be
/// absent; NaN stays NaN.
Results convertClip(NodeContext &ctx) {
  if (failed(ctx.expectInputs(1, false)))
    return failure();
  if (ctx.attr("min") || ctx.attr("max"))
    return ctx.error() << "Clip's min/max attributes (opset < 11) are not supported; use the inputs", failure();
  Type element = ctx.inputType(0).getElementType();
  SmallVector<Value> operands = {ctx.input(0)};
  Value lo = ctx.input(1), hi = ctx.input(2);
  for (Value bound : {lo, hi}) {
    if (!bound)
      continue;
    auto type = cast<RankedTensorType>(bound.getType());
    if (type.getNumElements() != 1 || type.getElementType() != element)
      return ctx.error() << "Clip's bounds must be scalars of the input's element type " << element << ", got "
                         << type,
             failure();
    operands.push_back(tb::reshape(ctx.b, ctx.loc, bound, {}));
  }
  bool isFloat = isa<FloatType>(element);
  return mapBroadcast(ctx, operands, element, [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
    Value v = a[0];
    // Operands: x, then the bounds present, in order.
    if (lo)
      v = isFloat ? arith::MaximumFOp::create(b, loc, v, a[1]).getResult()
                  : arith::MaxSIOp::create(b, loc, v, a[1]).getResult();
    if (hi)
      v = isFloat ? arith::MinimumFOp::create(b, loc, v, a.back()).getResult()
                  : arith::MinSIOp::create(b, loc, v, a.back()).getResult();
    return v;
  });
}

/// Max/Min of any number of operands (numpy broadcasting).
template <typename FloatOp, typename IntOp>
ConvertFn variadic() {
  return [](NodeContext &ctx) -> Results {
    if (ctx.inputs.empty() || llvm::any_of(ctx.inputs, [](Value v) { return !v; }))
      return ctx.error() << "every input is required", failure();
    Type element = ctx.inputType(0).getElementType();
    return mapBroadcast(ctx, ctx.inputs, element, [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
      Value acc = a[0];
      for (Value v : a.drop_front())
        acc = isa<FloatType>(element) ? FloatOp::create(b, loc, acc, v).getResult()
                                      : IntOp::create(b, loc, acc, v).getResult();
      return acc;
    });
  };
}

Results convertPow(NodeContext &ctx) {
  if (failed(ctx.expectInputs(2, true)))
    return failure();
  Type element = ctx.inputType(0).getElementType();
  return mapBroadcast(ctx, ValueRange{ctx.input(0), ctx.input(1)}, element,
                      [&](OpBuilder &b, Location loc, ValueRange a) {
                        Value x = tb::castScalar(b, loc, a[0], b.getF32Type());
                        Value y = tb::castScalar(b, loc, a[1], b.getF32Type());
                        return tb::castScalar(b, loc, math::PowFOp::create(b, loc, x, y), element);
                      });
}

} // namespace

FailureOr<SmallVector<Value>> mlir::moe::onnx_import::mapBroadcast(NodeContext &ctx, ValueRange operands,
                                                                   Type element, tb::ScalarFn fn) {
  FailureOr<Value> r = tb::elementwise(ctx.b, ctx.loc, operands, element, fn, checkBroadcastAtRunTime);
  if (failed(r)) {
    InFlightDiagnostic diag = ctx.error() << "operands";
    for (Value v : operands)
      diag << " " << v.getType();
    return diag << " do not broadcast", failure();
  }
  return SmallVector<Value>{*r};
}

void mlir::moe::onnx_import::addElementwiseConverters(std::vector<OpConverter> &converters) {
  auto add = [&](StringRef op, ConvertFn fn) { converters.push_back({"", op, std::move(fn)}); };
  add("Add", binary<arith::AddFOp, arith::AddIOp>());
  add("Sub", binary<arith::SubFOp, arith::SubIOp>());
  add("Mul", binary<arith::MulFOp, arith::MulIOp>());
  add("Div", binary<arith::DivFOp, SignedDivision>());
  add("Mod", convertMod);
  add("Relu", unary([](OpBuilder &b, Location l, Value x) -> Value {
        return arith::MaximumFOp::create(b, l, x, constF32(b, l, 0.0));
      }));
  add("Sigmoid", unary(scalar::sigmoid));
  add("Tanh", unary([](OpBuilder &b, Location l, Value x) -> Value { return math::TanhOp::create(b, l, x); }));
  add("Exp", unary([](OpBuilder &b, Location l, Value x) -> Value { return math::ExpOp::create(b, l, x); }));
  add("Log", unary([](OpBuilder &b, Location l, Value x) -> Value { return math::LogOp::create(b, l, x); }));
  add("Sqrt", unary([](OpBuilder &b, Location l, Value x) -> Value { return math::SqrtOp::create(b, l, x); }));
  add("Erf", unary([](OpBuilder &b, Location l, Value x) -> Value { return math::ErfOp::create(b, l, x); }));
  add("Neg", unary([](OpBuilder &b, Location l, Value x) -> Value { return arith::NegFOp::create(b, l, x); }));
  add("Abs", unary([](OpBuilder &b, Location l, Value x) -> Value { return math::AbsFOp::create(b, l, x); }));
  add("Sign", convertSign);
  add("Floor", unary([](OpBuilder &b, Location l, Value x) -> Value { return math::FloorOp::create(b, l, x); }));
  add("Ceil", unary([](OpBuilder &b, Location l, Value x) -> Value { return math::CeilOp::create(b, l, x); }));
  // ONNX Round: halves to even.
  add("Round", unary([](OpBuilder &b, Location l, Value x) -> Value { return math::RoundEvenOp::create(b, l, x); }));
  add("Reciprocal", unary([](OpBuilder &b, Location l, Value x) -> Value {
        return arith::DivFOp::create(b, l, constF32(b, l, 1.0), x);
      }));
  add("Pow", convertPow);
  add("Max", variadic<arith::MaximumFOp, arith::MaxSIOp>());
  add("Min", variadic<arith::MinimumFOp, arith::MinSIOp>());
  add("Equal", compare(arith::CmpFPredicate::OEQ, arith::CmpIPredicate::eq));
  add("Less", compare(arith::CmpFPredicate::OLT, arith::CmpIPredicate::slt));
  add("LessOrEqual", compare(arith::CmpFPredicate::OLE, arith::CmpIPredicate::sle));
  add("Greater", compare(arith::CmpFPredicate::OGT, arith::CmpIPredicate::sgt));
  add("GreaterOrEqual", compare(arith::CmpFPredicate::OGE, arith::CmpIPredicate::sge));
  add("IsNaN", floatTest([](OpBuilder &b, Location l, Value x, const NodeContext &) -> Value {
        return arith::CmpFOp::create(b, l, arith::CmpFPredicate::UNO, x, x);
      }));
  add("IsInf", floatTest(isInf));
  add("Not", logical<arith::XOrIOp>(1));
  add("And", logical<arith::AndIOp>(2));
  add("Or", logical<arith::OrIOp>(2));
  add("Xor", logical<arith::XOrIOp>(2));
  add("Clip", convertClip);
  add("Gelu", unaryWithAttrs(gelu));
  add("LeakyRelu", unaryWithAttrs([](OpBuilder &b, Location l, Value x, const NodeContext &c) -> Value {
        return whereNegative(b, l, x, arith::MulFOp::create(b, l, x, constF32(b, l, c.floatAttr("alpha", 0.01f))));
      }));
  add("Elu", unaryWithAttrs([](OpBuilder &b, Location l, Value x, const NodeContext &c) -> Value {
        Value em1 = arith::SubFOp::create(b, l, math::ExpOp::create(b, l, x), constF32(b, l, 1.0));
        return whereNegative(b, l, x, arith::MulFOp::create(b, l, em1, constF32(b, l, c.floatAttr("alpha", 1.0f))));
      }));
  add("HardSigmoid", unaryWithAttrs([](OpBuilder &b, Location l, Value x, const NodeContext &c) -> Value {
        return scalar::hardSigmoid(b, l, x, c.floatAttr("alpha", 0.2f), c.floatAttr("beta", 0.5f));
      }));
  add("HardSwish", unary([](OpBuilder &b, Location l, Value x) -> Value {
        return arith::MulFOp::create(b, l, x, scalar::hardSigmoid(b, l, x, 1.0 / 6.0, 0.5));
      }));
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large x.
  add("Softplus", unary([](OpBuilder &b, Location l, Value x) -> Value {
        Value e = math::ExpOp::create(b, l, arith::NegFOp::create(b, l, math::AbsFOp::create(b, l, x)));
        return arith::AddFOp::create(b, l, arith::MaximumFOp::create(b, l, x, constF32(b, l, 0.0)),
                                     math::Log1pOp::create(b, l, e));
      }));
  add("Sin", unary([](OpBuilder &b, Location l, Value x) -> Value { return math::SinOp::create(b, l, x); }));
  add("Cos", unary([](OpBuilder &b, Location l, Value x) -> Value { return math::CosOp::create(b, l, x); }));
  add("Cast", convertCast);
}
