//===- ShapeVectors.cpp - shapes computed in the graph, known at import ---===//
//
// Exported models compute Reshape targets from tensor sizes (Shape ->
// Gather -> Unsqueeze -> Concat -> Reshape, with Mul/Div for merged or split
// dimensions) so that they work for any batch or sequence length. The
// importer follows these small integer computations itself: each 0-D/1-D
// integer value it can describe element by element (a constant, or an index
// value such as tensor.dim) gets a ShapeVector, and Reshape and Expand read
// their target from it instead of requiring a constant.
//
//===----------------------------------------------------------------------===//

#include "OnnxImporter.h"
#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

OpFoldResult mlir::moe::onnx_import::combineSizes(OpBuilder &b, Location loc, StringRef op, OpFoldResult x,
                                                  OpFoldResult y) {
  std::optional<int64_t> cx = getConstantIntValue(x), cy = getConstantIntValue(y);
  if (cx && cy) {
    int64_t r = op == "Add"     ? *cx + *cy
                : op == "Sub"   ? *cx - *cy
                : op == "Mul"   ? *cx * *cy
                : op == "Equal" ? int64_t(*cx == *cy)
                : op == "Max"   ? std::max(*cx, *cy)
                : op == "Min"   ? std::min(*cx, *cy)
                : *cy           ? *cx / *cy
                                : 0;
    return b.getIndexAttr(r);
  }
  Value vx = getValueOrCreateConstantIndexOp(b, loc, x), vy = getValueOrCreateConstantIndexOp(b, loc, y);
  if (op == "Equal")
    return arith::IndexCastUIOp::create(b, loc, b.getIndexType(),
                                        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, vx, vy))
        .getResult();
  if (op == "Max")
    return arith::MaxSIOp::create(b, loc, vx, vy).getResult();
  if (op == "Min")
    return arith::MinSIOp::create(b, loc, vx, vy).getResult();
  if (op == "Add")
    return arith::AddIOp::create(b, loc, vx, vy).getResult();
  if (op == "Sub")
    return arith::SubIOp::create(b, loc, vx, vy).getResult();
  if (op == "Mul")
    return arith::MulIOp::create(b, loc, vx, vy).getResult();
  // A size divided by 0 (a -1 inferred from an empty tensor) is 0, as the
  // folded form above gives.
  return scalar::divSigned(b, loc, vx, vy, /*byZero=*/0);
}

Value mlir::moe::onnx_import::emptyOfShape(OpBuilder &b, Location loc, const ShapeVector &shape, Type element) {
  SmallVector<int64_t> dims;
  SmallVector<Value> dynamic;
  for (OpFoldResult size : shape.elements) {
    std::optional<int64_t> c = getConstantIntValue(size);
    dims.push_back(c.value_or(ShapedType::kDynamic));
    if (!c)
      dynamic.push_back(cast<Value>(size));
  }
  return tb::empty(b, loc, RankedTensorType::get(dims, element), dynamic);
}

std::pair<int64_t, int64_t> mlir::moe::onnx_import::shapeNodeRange(const NodeContext &ctx, int64_t rank) {
  int64_t start = ctx.intAttr("start", 0), end = ctx.intAttr("end", rank);
  start = std::clamp<int64_t>(start < 0 ? start + rank : start, 0, rank);
  end = std::clamp<int64_t>(end < 0 ? end + rank : end, 0, rank);
  return {start, std::max(start, end)};
}

std::optional<ShapeVector> mlir::moe::onnx_import::propagateShapeVector(NodeContext &ctx) {
  StringRef op = ctx.node.op_type();
  if (!ctx.node.domain().empty() && ctx.node.domain() != "ai.onnx")
    return std::nullopt;
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  auto in = [&](unsigned i) { return ctx.shapeInput(i); };

  if (op == "Shape") {
    RankedTensorType type = ctx.inputType(0);
    auto [start, end] = shapeNodeRange(ctx, type.getRank());
    ShapeVector v;
    for (int64_t d = start; d < end; ++d)
      v.elements.push_back(type.isDynamicDim(d) ? OpFoldResult(tb::dimSize(b, loc, ctx.input(0), d))
                                                : OpFoldResult(b.getIndexAttr(type.getDimSize(d))));
    return v;
  }
  if (op == "Size") {
    // The product of the sizes, one element.
    RankedTensorType type = ctx.inputType(0);
    OpFoldResult count = b.getIndexAttr(1);
    for (int64_t d = 0; d < type.getRank(); ++d)
      count = combineSizes(b, loc, "Mul", count,
                           type.isDynamicDim(d) ? OpFoldResult(tb::dimSize(b, loc, ctx.input(0), d))
                                                : OpFoldResult(b.getIndexAttr(type.getDimSize(d))));
    return ShapeVector{{count}};
  }
  if (op == "Identity" || op == "Cast" || op == "Unsqueeze" || op == "Squeeze") {
    // 0-D <-> 1-D reshapes and casts keep the elements.
    const ShapeVector *v = in(0);
    if (!v || ((op == "Unsqueeze" || op == "Squeeze") && v->elements.size() > 1))
      return std::nullopt;
    return *v;
  }
  if (op == "Reshape") {
    // To 0-D or 1-D ([-1] or [n]): the same elements.
    const ShapeVector *v = in(0);
    const ConstantTensor *target = ctx.constantInput(1);
    std::optional<SmallVector<int64_t>> t = target ? target->asInts() : std::nullopt;
    int64_t n = v ? static_cast<int64_t>(v->elements.size()) : 0;
    if (!v || !t || t->size() > 1 || (t->empty() && n != 1) || (t->size() == 1 && (*t)[0] != -1 && (*t)[0] != n))
      return std::nullopt;
    return *v;
  }
  if (op == "Gather") {
    const ShapeVector *v = in(0);
    const ConstantTensor *indices = ctx.constantInput(1);
    std::optional<SmallVector<int64_t>> ids = indices ? indices->asInts() : std::nullopt;
    if (!v || !ids || ctx.intAttr("axis", 0) != 0)
      return std::nullopt;
    ShapeVector r;
    int64_t n = v->elements.size();
    for (int64_t i : *ids) {
      if (i < -n || i >= n)
        return std::nullopt;
      r.elements.push_back(v->elements[i < 0 ? i + n : i]);
    }
    return r;
  }
  if (op == "Concat") {
    ShapeVector r;
    for (unsigned i = 0; i < ctx.inputs.size(); ++i) {
      const ShapeVector *v = in(i);
      if (!v)
        return std::nullopt;
      llvm::append_range(r.elements, v->elements);
    }
    return r;
  }
  if (op == "Slice") {
    const ShapeVector *v = in(0);
    const ConstantTensor *s = ctx.constantInput(1), *e = ctx.constantInput(2);
    if (!v || !s || !e || (ctx.input(4) && ctx.constantInput(4) && (*ctx.constantInput(4)->asInts())[0] != 1))
      return std::nullopt;
    int64_t n = v->elements.size();
    int64_t start = (*s->asInts())[0], end = (*e->asInts())[0];
    start = std::clamp<int64_t>(start < 0 ? start + n : start, 0, n);
    end = std::clamp<int64_t>(end < 0 ? end + n : end, 0, n);
    ShapeVector r;
    for (int64_t i = start; i < end; ++i)
      r.elements.push_back(v->elements[i]);
    return r;
  }
  if (op == "ConstantOfShape") {
    // A 1-D vector of n copies of an integer value (TorchScript builds the
    // "-1 means keep" masks of Expand targets this way).
    const ShapeVector *shape = in(0);
    if (!shape || shape->elements.size() != 1 || !ctx.attr("value"))
      return std::nullopt;
    std::optional<int64_t> n = getConstantIntValue(shape->elements[0]);
    FailureOr<TypedAttr> fill = constantOfShapeFill(ctx);
    auto integer = succeeded(fill) ? dyn_cast<IntegerAttr>(*fill) : IntegerAttr();
    if (!n || !integer || *n < 0 || *n > kMaxShapeVectorLength)
      return std::nullopt;
    return ShapeVector{SmallVector<OpFoldResult>(*n, b.getIndexAttr(integer.getInt()))};
  }
  if (op == "Neg") {
    const ShapeVector *x = in(0);
    if (!x)
      return std::nullopt;
    ShapeVector r;
    for (OpFoldResult e : x->elements)
      r.elements.push_back(combineSizes(b, loc, "Sub", b.getIndexAttr(0), e));
    return r;
  }
  if (op == "Where") {
    // Element by element: a select, or the chosen side when the condition
    // is known (conditions are 0/1 ShapeVectors, e.g. from Equal).
    const ShapeVector *c = in(0), *x = in(1), *y = in(2);
    if (!c || !x || !y)
      return std::nullopt;
    size_t n = std::max({c->elements.size(), x->elements.size(), y->elements.size()});
    auto at = [&](const ShapeVector *v, size_t i) -> std::optional<OpFoldResult> {
      if (v->elements.size() == n)
        return v->elements[i];
      if (v->elements.size() == 1)
        return v->elements[0];
      return std::nullopt;
    };
    ShapeVector r;
    for (size_t i = 0; i < n; ++i) {
      std::optional<OpFoldResult> ci = at(c, i), xi = at(x, i), yi = at(y, i);
      if (!ci || !xi || !yi)
        return std::nullopt;
      if (std::optional<int64_t> known = getConstantIntValue(*ci)) {
        r.elements.push_back(*known ? *xi : *yi);
        continue;
      }
      Value cond = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, cast<Value>(*ci), scalar::constIndex(b, loc, 0));
      r.elements.push_back(arith::SelectOp::create(b, loc, cond, getValueOrCreateConstantIndexOp(b, loc, *xi),
                                                   getValueOrCreateConstantIndexOp(b, loc, *yi))
                               .getResult());
    }
    return r;
  }
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Equal" || op == "Max" || op == "Min") {
    const ShapeVector *x = in(0), *y = in(1);
    if (!x || !y || ctx.inputs.size() != 2)
      return std::nullopt;
    size_t n = std::max(x->elements.size(), y->elements.size());
    if ((x->elements.size() != n && x->elements.size() != 1) || (y->elements.size() != n && y->elements.size() != 1))
      return std::nullopt;
    ShapeVector r;
    for (size_t i = 0; i < n; ++i)
      r.elements.push_back(combineSizes(b, loc, op, x->elements[x->elements.size() == 1 ? 0 : i],
                                   y->elements[y->elements.size() == 1 ? 0 : i]));
    return r;
  }
  return std::nullopt;
}
