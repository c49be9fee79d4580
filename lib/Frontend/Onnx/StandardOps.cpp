//===- StandardOps.cpp - default-domain ONNX ops to tensor-level MLIR -----===//
//
// Each converter checks what the op's spec allows and we do not (attributes,
// dynamic shape inputs) and says so at the node, never guessing.
//
//===----------------------------------------------------------------------===//

#include "OnnxImporter.h"
#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

#include <array>
#include <cmath>

using namespace mlir;
using namespace mlir::moe::onnx_import;
using mlir::moe::scalar::constF32;

namespace {

// --- contractions ---------------------------------------------------------

Results convertMatMul(NodeContext &ctx) {
  if (failed(ctx.expectInputs(2, false)))
    return failure();
  if (ctx.inputType(0).getElementType() != ctx.inputType(1).getElementType())
    return ctx.error() << "operand types differ", failure();
  FailureOr<Value> r = tb::matmul(ctx.b, ctx.loc, ctx.input(0), ctx.input(1), checkContractionAtRunTime);
  if (failed(r))
    return ctx.error() << "cannot multiply " << ctx.input(0).getType() << " by " << ctx.input(1).getType()
                       << " (both operands need rank >= 2 and matching inner sizes)",
           failure();
  return SmallVector<Value>{*r};
}

/// Y = alpha * A' B' + beta * C, A' = A or Aᵀ, B' = B or Bᵀ (2-D).
Results convertGemm(NodeContext &ctx) {
  if (failed(ctx.expectInputs(2, true)))
    return failure();
  Value a = ctx.input(0), bm = ctx.input(1);
  if (ctx.inputType(0).getRank() != 2 || ctx.inputType(1).getRank() != 2)
    return ctx.error() << "A and B must be 2-D", failure();
  if (ctx.intAttr("transA", 0))
    a = tb::transpose(ctx.b, ctx.loc, a, {1, 0});
  if (ctx.intAttr("transB", 0))
    bm = tb::transpose(ctx.b, ctx.loc, bm, {1, 0});
  FailureOr<Value> y = tb::matmul(ctx.b, ctx.loc, a, bm, checkContractionAtRunTime);
  if (failed(y))
    return ctx.error() << "A and B do not multiply", failure();
  float alpha = ctx.floatAttr("alpha", 1.0f), beta = ctx.floatAttr("beta", 1.0f);
  Type element = ctx.inputType(0).getElementType();
  SmallVector<Value> operands = {*y};
  if (ctx.input(2) && beta != 0.0f)
    operands.push_back(ctx.input(2));
  if (alpha == 1.0f && operands.size() == 1)
    return SmallVector<Value>{*y};
  FailureOr<Value> r =
      tb::elementwise(ctx.b, ctx.loc, operands, element, [&](OpBuilder &b, Location loc, ValueRange s) {
        Value v = arith::MulFOp::create(b, loc, tb::castScalar(b, loc, s[0], b.getF32Type()), constF32(b, loc, alpha));
        if (s.size() > 1)
          v = arith::AddFOp::create(
              b, loc, v,
              arith::MulFOp::create(b, loc, tb::castScalar(b, loc, s[1], b.getF32Type()), constF32(b, loc, beta)));
        return tb::castScalar(b, loc, v, element);
      },
      checkBroadcastAtRunTime);
  if (failed(r))
    return ctx.error() << "C " << ctx.input(2).getType() << " does not broadcast to the product", failure();
  return SmallVector<Value>{*r};
}

/// One operand's subscripts in an Einsum equation: letters, and where an
/// ellipsis ("...") stands among them (-1: none).
struct EinsumTerm {
  std::string letters;
  int ellipsisAt = -1;
};

/// Parses "ij,...jk" style terms; false for characters Einsum does not allow.
bool parseEinsumTerm(StringRef text, EinsumTerm &term) {
  for (size_t i = 0; i < text.size();) {
    if (text.substr(i).starts_with("...")) {
      if (term.ellipsisAt >= 0)
        return false;
      term.ellipsisAt = term.letters.size();
      i += 3;
    } else if (llvm::isAlpha(text[i])) {
      term.letters += text[i++];
    } else {
      return false;
    }
  }
  return true;
}

/// Einsum(equation, inputs...): numpy's einsum as one linalg.generic. Loop
/// dimensions: the ellipsis' (broadcast, right-aligned), then each letter;
/// letters absent from the output are summed. The implicit output ("ij,jk")
/// is the ellipsis then the letters that appear once, in alphabetical order.
Results convertEinsum(NodeContext &ctx) {
  std::string equation;
  for (char c : ctx.stringAttr("equation", ""))
    if (c != ' ')
      equation += c;
  auto bad = [&](const Twine &why) { return ctx.error() << "equation '" << equation << "': " << why, failure(); };
  if (ctx.inputs.empty())
    return ctx.error() << "needs at least one input", failure();
  StringRef eq(equation);
  auto [lhs, rhs] = eq.split("->");
  bool explicitOutput = eq.contains("->");
  SmallVector<StringRef> termTexts;
  lhs.split(termTexts, ',');
  if (termTexts.size() != ctx.inputs.size())
    return bad(Twine(termTexts.size()) + " operand terms for " + Twine(ctx.inputs.size()) + " inputs");
  Type element = ctx.inputType(0).getElementType();
  SmallVector<EinsumTerm> terms(termTexts.size());
  int64_t ellipsisRank = 0;
  for (auto [i, text] : llvm::enumerate(termTexts)) {
    if (!parseEinsumTerm(text, terms[i]))
      return bad("term '" + text + "' has characters other than letters and one '...'");
    if (!ctx.input(i) || ctx.inputType(i).getElementType() != element)
      return bad("every input must be present and of one element type");
    int64_t rank = ctx.inputType(i).getRank(), letters = terms[i].letters.size();
    if (terms[i].ellipsisAt < 0 ? rank != letters : rank < letters)
      return bad("term '" + text + "' does not fit input " + Twine(i) + " of rank " + Twine(rank));
    ellipsisRank = std::max(ellipsisRank, terms[i].ellipsisAt < 0 ? 0 : rank - letters);
  }
  // Letters in order of first appearance become loop dimensions after the ellipsis'.
  std::string order;
  std::array<int, 128> count{}; // occurrences of each (ASCII) letter
  for (const EinsumTerm &t : terms)
    for (char c : t.letters)
      if (count[c]++ == 0)
        order += c;
  EinsumTerm out;
  if (explicitOutput) {
    if (!parseEinsumTerm(rhs, out))
      return bad("output '" + rhs + "' has characters other than letters and one '...'");
    if (ellipsisRank > 0 && out.ellipsisAt < 0)
      return bad("the inputs have '...' dimensions the output does not keep (not supported)");
    for (auto [j, c] : llvm::enumerate(out.letters)) {
      if (count[c] == 0)
        return bad("output letter '" + Twine(c) + "' is in no input");
      if (out.letters.find(c) != j)
        return bad("output letter '" + Twine(c) + "' repeats");
    }
  } else {
    out.ellipsisAt = 0;
    for (char c : order)
      if (count[c] == 1)
        out.letters += c;
    llvm::sort(out.letters);
  }
  auto dimOfLetter = [&](char c) { return ellipsisRank + int64_t(order.find(c)); };
  int64_t numDims = ellipsisRank + order.size();
  // Each loop dimension's size: static where any input fixes it (size-1
  // ellipsis dimensions broadcast), else read from the first input that has it.
  SmallVector<int64_t> loopSize(numDims, 1);
  SmallVector<std::pair<int, int64_t>> dynamicSource(numDims, {-1, 0});
  SmallVector<SmallVector<int64_t>> inputDims(terms.size()); // loop dim of each input dim
  for (auto [i, t] : llvm::enumerate(terms)) {
    ArrayRef<int64_t> shape = ctx.inputType(i).getShape();
    int64_t ownEllipsis = shape.size() - t.letters.size();
    for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
      int64_t at = t.ellipsisAt < 0 ? d : d < t.ellipsisAt ? d : d < t.ellipsisAt + ownEllipsis ? -1 : d - ownEllipsis;
      int64_t loop = at >= 0 ? dimOfLetter(t.letters[at]) : ellipsisRank - ownEllipsis + (d - t.ellipsisAt);
      inputDims[i].push_back(loop);
      bool isEllipsis = at < 0;
      if (ShapedType::isDynamic(shape[d])) {
        if (dynamicSource[loop].first < 0)
          dynamicSource[loop] = {int(i), d};
        continue;
      }
      if (shape[d] == loopSize[loop] || (isEllipsis && shape[d] == 1))
        continue;
      if (loopSize[loop] != 1 && !(isEllipsis && loopSize[loop] == 1))
        return bad("dimension " + Twine(d) + " of input " + Twine(i) + " has size " + Twine(shape[d]) +
                   " where another input has " + Twine(loopSize[loop]));
      loopSize[loop] = shape[d];
    }
  }
  for (int64_t loop = 0; loop < numDims; ++loop)
    if (loopSize[loop] == 1 && dynamicSource[loop].first >= 0)
      loopSize[loop] = ShapedType::kDynamic;
  MLIRContext *mctx = ctx.b.getContext();
  SmallVector<AffineMap> maps;
  for (auto [i, dims] : llvm::enumerate(inputDims)) {
    ArrayRef<int64_t> shape = ctx.inputType(i).getShape();
    SmallVector<AffineExpr> exprs;
    for (auto [d, loop] : llvm::enumerate(dims))
      exprs.push_back(shape[d] == 1 && loopSize[loop] != 1 ? getAffineConstantExpr(0, mctx)
                                                            : getAffineDimExpr(loop, mctx));
    maps.push_back(AffineMap::get(numDims, 0, exprs, mctx));
  }
  SmallVector<int64_t> outLoops;
  for (int64_t j = 0; j <= int64_t(out.letters.size()); ++j) {
    if (j == out.ellipsisAt)
      for (int64_t e = 0; e < ellipsisRank; ++e)
        outLoops.push_back(e);
    if (j < int64_t(out.letters.size()))
      outLoops.push_back(dimOfLetter(out.letters[j]));
  }
  SmallVector<AffineExpr> outExprs;
  SmallVector<int64_t> outShape;
  SmallVector<Value> dynamicSizes;
  SmallVector<utils::IteratorType> iterators(numDims, utils::IteratorType::reduction);
  for (int64_t loop : outLoops) {
    outExprs.push_back(getAffineDimExpr(loop, mctx));
    outShape.push_back(loopSize[loop]);
    iterators[loop] = utils::IteratorType::parallel;
    if (ShapedType::isDynamic(loopSize[loop])) {
      auto [input, dim] = dynamicSource[loop];
      dynamicSizes.push_back(tb::dimSize(ctx.b, ctx.loc, ctx.input(input), dim));
    }
  }
  maps.push_back(AffineMap::get(numDims, 0, outExprs, mctx));
  return SmallVector<Value>{tb::sumOfProducts(ctx.b, ctx.loc, ctx.inputs, maps,
                                              RankedTensorType::get(outShape, element), dynamicSizes, iterators)};
}

// --- normalisations and reductions ---------------------------------------

/// CumSum(x, axis): running sums along `axis` (`exclusive`, `reverse`).
/// One generic per output element summing the inputs it covers, in order:
/// quadratic in the axis length, which is fine for the sequence-length
/// masks exporters build with it.
Results convertCumSum(NodeContext &ctx) {
  if (failed(ctx.expectInputs(2, false)))
    return failure();
  FailureOr<SmallVector<int64_t>> axisValue = [&]() -> FailureOr<SmallVector<int64_t>> {
    const ConstantTensor *c = ctx.constantInput(1);
    std::optional<SmallVector<int64_t>> v = c ? c->asInts() : std::nullopt;
    if (!v || v->size() != 1)
      return ctx.error() << "axis (input 1) must be a constant scalar", failure();
    return *v;
  }();
  if (failed(axisValue))
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  FailureOr<int64_t> axis = ctx.normalizeAxis((*axisValue)[0], rank);
  if (failed(axis))
    return failure();
  bool exclusive = ctx.intAttr("exclusive", 0) != 0, reverse = ctx.intAttr("reverse", 0) != 0;
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = type.getElementType();
  bool isFloat = isa<FloatType>(element);
  // Dimensions: the result's, then j (the summed position along the axis).
  MLIRContext *mctx = b.getContext();
  SmallVector<AffineExpr> inputExprs, outputExprs;
  for (int64_t d = 0; d < rank; ++d) {
    outputExprs.push_back(getAffineDimExpr(d, mctx));
    inputExprs.push_back(getAffineDimExpr(d == *axis ? rank : d, mctx));
  }
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  Value zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(element));
  Value init = linalg::FillOp::create(b, loc, zero, tb::emptyLike(b, loc, ctx.input(0), element)).getResult(0);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{type}, ValueRange{ctx.input(0)}, ValueRange{init},
      ArrayRef<AffineMap>{AffineMap::get(rank + 1, 0, inputExprs, mctx), AffineMap::get(rank + 1, 0, outputExprs, mctx)},
      iterators, [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value i = linalg::IndexOp::create(nb, nl, *axis), j = linalg::IndexOp::create(nb, nl, rank);
        using P = arith::CmpIPredicate;
        P covers = reverse ? (exclusive ? P::ugt : P::uge) : (exclusive ? P::ult : P::ule);
        Value in = arith::CmpIOp::create(nb, nl, covers, j, i);
        Value term = arith::SelectOp::create(nb, nl, in, args[0], zero);
        Value sum = isFloat ? arith::AddFOp::create(nb, nl, args[1], term).getResult()
                            : arith::AddIOp::create(nb, nl, args[1], term).getResult();
        linalg::YieldOp::create(nb, nl, sum);
      });
  return SmallVector<Value>{generic.getResult(0)};
}

/// softmax (or its log) along `axis` (opset >= 13; earlier opsets flatten
/// from `axis`, the same result when `axis` is the last dimension), in f32:
/// exp(x - max) / sum, or (x - max) - log(sum).
static Results convertSoftmaxLike(NodeContext &ctx, bool logarithm) {
  if (failed(ctx.expectInputs(1, true)))
    return failure();
  int64_t rank = ctx.inputType(0).getRank();
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.intAttr("axis", ctx.opset >= 13 ? -1 : 1), rank);
  if (failed(axis))
    return failure();
  if (ctx.opset < 13 && *axis != rank - 1)
    return ctx.error() << "opset " << ctx.opset << " " << ctx.node.op_type() << " flattens from axis " << *axis
                       << "; only the last axis is supported before opset 13",
           failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = ctx.inputType(0).getElementType();
  Value x = tb::castTensor(b, loc, ctx.input(0), b.getF32Type());
  Value max = tb::reduceAxis(b, loc, x, *axis, tb::Reduction::Max);
  Value e = *tb::elementwise(b, loc, ValueRange{x, max}, b.getF32Type(), [](OpBuilder &nb, Location nl, ValueRange s) {
    return math::ExpOp::create(nb, nl, arith::SubFOp::create(nb, nl, s[0], s[1])).getResult();
  });
  Value sum = tb::reduceAxis(b, loc, e, *axis, tb::Reduction::Sum);
  if (logarithm)
    return SmallVector<Value>{
        *tb::elementwise(b, loc, ValueRange{x, max, sum}, element, [&](OpBuilder &nb, Location nl, ValueRange s) {
          Value shifted = arith::SubFOp::create(nb, nl, s[0], s[1]);
          return tb::castScalar(nb, nl, arith::SubFOp::create(nb, nl, shifted, math::LogOp::create(nb, nl, s[2])),
                                element);
        })};
  Value p = *tb::elementwise(b, loc, ValueRange{e, sum}, element, [&](OpBuilder &nb, Location nl, ValueRange s) {
    return tb::castScalar(nb, nl, arith::DivFOp::create(nb, nl, s[0], s[1]), element);
  });
  return SmallVector<Value>{p};
}

Results convertSoftmax(NodeContext &ctx) { return convertSoftmaxLike(ctx, /*logarithm=*/false); }
Results convertLogSoftmax(NodeContext &ctx) { return convertSoftmaxLike(ctx, /*logarithm=*/true); }

/// The reduction axes: the `axes` attribute (older opsets) or input 1.
FailureOr<SmallVector<int64_t>> reductionAxes(NodeContext &ctx, int64_t inputSince) {
  int64_t rank = ctx.inputType(0).getRank();
  SmallVector<int64_t> axes;
  if (ctx.opset >= inputSince) {
    if (ctx.input(1)) {
      const ConstantTensor *c = ctx.constantInput(1);
      std::optional<SmallVector<int64_t>> values = c ? c->asInts() : std::nullopt;
      if (!values)
        return ctx.error() << "the axes input must be a constant", failure();
      axes = *values;
    }
  } else if (auto attr = ctx.intsAttr("axes")) {
    axes = *attr;
  }
  if (axes.empty()) {
    if (ctx.intAttr("noop_with_empty_axes", 0))
      return axes;
    for (int64_t d = 0; d < rank; ++d)
      axes.push_back(d);
  }
  for (int64_t &a : axes) {
    FailureOr<int64_t> n = ctx.normalizeAxis(a, rank);
    if (failed(n))
      return failure();
    a = *n;
  }
  llvm::sort(axes);
  return axes;
}

/// `x` reduced over `axes` (kept as size-1 dimensions) without them,
/// unless keepdims.
Value withoutReducedAxes(NodeContext &ctx, Value x, ArrayRef<int64_t> axes) {
  if (ctx.intAttr("keepdims", 1) || axes.empty())
    return x;
  // The kept sizes as they are (several may be dynamic).
  SmallVector<OpFoldResult> sizes;
  for (auto [d, size] : llvm::enumerate(tb::sizesOf(ctx.b, ctx.loc, x)))
    if (!llvm::is_contained(axes, static_cast<int64_t>(d)))
      sizes.push_back(size);
  return tb::reshapeToSizes(ctx.b, ctx.loc, x, sizes);
}

ConvertFn reduce(tb::Reduction kind, int64_t axesInputSince) {
  return [kind, axesInputSince](NodeContext &ctx) -> Results {
    if (failed(ctx.expectInputs(1, false)))
      return failure();
    FailureOr<SmallVector<int64_t>> axes = reductionAxes(ctx, axesInputSince);
    if (failed(axes))
      return failure();
    Value x = ctx.input(0);
    for (int64_t axis : *axes)
      x = tb::reduceAxis(ctx.b, ctx.loc, x, axis, kind);
    return SmallVector<Value>{withoutReducedAxes(ctx, x, *axes)};
  };
}

/// The ONNX reductions that are a sum of a function of the elements, then
/// maybe a function of the sum (L1, L2, SumSquare, LogSum), and
/// LogSumExp, computed as max + log(sum(exp(x - max))) so that large
/// elements do not overflow. Float elements only; computed in f32 and
/// rounded once to the element type.
enum class MappedReduction { L1, L2, SumSquare, LogSum, LogSumExp };

ConvertFn mappedReduce(MappedReduction kind) {
  return [kind](NodeContext &ctx) -> Results {
    if (failed(ctx.expectInputs(1, false)))
      return failure();
    Type element = ctx.inputType(0).getElementType();
    if (!isa<FloatType>(element))
      return ctx.error() << ctx.node.op_type() << " of " << element << " elements: only float elements are supported",
             failure();
    FailureOr<SmallVector<int64_t>> axes = reductionAxes(ctx, 18);
    if (failed(axes))
      return failure();
    OpBuilder &b = ctx.b;
    Location loc = ctx.loc;
    Type f32 = b.getF32Type();
    Value x = tb::castTensor(b, loc, ctx.input(0), f32);
    auto map = [&](ValueRange in, function_ref<Value(OpBuilder &, Location, ValueRange)> fn) {
      return *tb::elementwise(b, loc, in, f32, fn);
    };
    // The largest element of each reduced slice, 0 where it is infinite
    // (all -inf: log(0) = -inf; a +inf: exp(inf) = inf), for LogSumExp.
    Value shift;
    if (kind == MappedReduction::LogSumExp) {
      shift = x;
      for (int64_t axis : *axes)
        shift = tb::reduceAxis(b, loc, shift, axis, tb::Reduction::Max);
      shift = map(ValueRange{shift}, [](OpBuilder &nb, Location nl, ValueRange s) -> Value {
        Value finite = math::IsFiniteOp::create(nb, nl, s[0]);
        return arith::SelectOp::create(nb, nl, finite, s[0],
                                       arith::ConstantOp::create(nb, nl, nb.getF32FloatAttr(0.0f)));
      });
      x = map(ValueRange{x, shift}, [](OpBuilder &nb, Location nl, ValueRange s) -> Value {
        return math::ExpOp::create(nb, nl, arith::SubFOp::create(nb, nl, s[0], s[1]));
      });
    } else if (kind == MappedReduction::L1) {
      x = map(ValueRange{x}, [](OpBuilder &nb, Location nl, ValueRange s) -> Value {
        return math::AbsFOp::create(nb, nl, s[0]);
      });
    } else if (kind == MappedReduction::L2 || kind == MappedReduction::SumSquare) {
      x = map(ValueRange{x}, [](OpBuilder &nb, Location nl, ValueRange s) -> Value {
        return arith::MulFOp::create(nb, nl, s[0], s[0]);
      });
    }
    for (int64_t axis : *axes)
      x = tb::reduceAxis(b, loc, x, axis, tb::Reduction::Sum);
    if (kind == MappedReduction::L2)
      x = map(ValueRange{x}, [](OpBuilder &nb, Location nl, ValueRange s) -> Value {
        return math::SqrtOp::create(nb, nl, s[0]);
      });
    else if (kind == MappedReduction::LogSum)
      x = map(ValueRange{x}, [](OpBuilder &nb, Location nl, ValueRange s) -> Value {
        return math::LogOp::create(nb, nl, s[0]);
      });
    else if (kind == MappedReduction::LogSumExp)
      x = map(ValueRange{x, shift}, [](OpBuilder &nb, Location nl, ValueRange s) -> Value {
        return arith::AddFOp::create(nb, nl, math::LogOp::create(nb, nl, s[0]), s[1]);
      });
    x = tb::castTensor(b, loc, x, element);
    return SmallVector<Value>{withoutReducedAxes(ctx, x, *axes)};
  };
}

// --- shapes ---------------------------------------------------------------

Results convertTranspose(NodeContext &ctx) {
  if (failed(ctx.expectInputs(1, false)))
    return failure();
  int64_t rank = ctx.inputType(0).getRank();
  SmallVector<int64_t> perm;
  if (auto attr = ctx.intsAttr("perm"))
    perm = *attr;
  else
    for (int64_t d = rank - 1; d >= 0; --d)
      perm.push_back(d);
  SmallVector<int64_t> sorted(perm);
  llvm::sort(sorted);
  if (static_cast<int64_t>(perm.size()) != rank || sorted != llvm::to_vector(llvm::seq<int64_t>(0, rank)))
    return ctx.error() << "perm is not a permutation of the " << rank << " dimensions", failure();
  return SmallVector<Value>{tb::transpose(ctx.b, ctx.loc, ctx.input(0), perm)};
}

/// Reshape to a target known at import time: a constant, or sizes computed
/// from tensor sizes (ShapeVectors.cpp). 0 copies the input size (unless
/// allowzero), -1 is inferred from the element count.
Results convertReshape(NodeContext &ctx) {
  if (failed(ctx.expectInputs(2, false)))
    return failure();
  const ShapeVector *target = ctx.shapeInput(1);
  if (!target)
    return ctx.error() << "the shape input must be a constant or computed from tensor sizes (Shape, "
                          "Gather, Concat, Unsqueeze, Slice, Add/Sub/Mul/Div)",
           failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Value x = ctx.input(0);
  RankedTensorType type = ctx.inputType(0);
  bool allowZero = ctx.intAttr("allowzero", 0) != 0;
  auto inputSize = [&](int64_t d) -> OpFoldResult {
    return type.isDynamicDim(d) ? OpFoldResult(tb::dimSize(b, loc, x, d)) : OpFoldResult(b.getIndexAttr(type.getDimSize(d)));
  };
  SmallVector<OpFoldResult> sizes;
  int64_t inferred = -1;
  for (auto [i, element] : llvm::enumerate(target->elements)) {
    std::optional<int64_t> c = getConstantIntValue(element);
    if (c && *c == 0 && !allowZero) {
      if (static_cast<int64_t>(i) >= type.getRank())
        return ctx.error() << "shape entry " << i << " copies a dimension the input does not have", failure();
      sizes.push_back(inputSize(i));
    } else if (c && *c == -1) {
      if (inferred >= 0)
        return ctx.error() << "shape has more than one -1", failure();
      inferred = i;
      sizes.push_back(b.getIndexAttr(1));
    } else if (c && *c < 0) {
      return ctx.error() << "shape entry " << *c << " is invalid", failure();
    } else {
      sizes.push_back(element);
    }
  }
  OpFoldResult total = b.getIndexAttr(1), known = b.getIndexAttr(1);
  for (int64_t d = 0; d < type.getRank(); ++d)
    total = combineSizes(b, loc, "Mul", total, inputSize(d));
  for (auto [i, size] : llvm::enumerate(sizes))
    if (static_cast<int64_t>(i) != inferred)
      known = combineSizes(b, loc, "Mul", known, size);
  std::optional<int64_t> totalC = getConstantIntValue(total), knownC = getConstantIntValue(known);
  if (inferred >= 0) {
    if (knownC && totalC && (*knownC == 0 || *totalC % *knownC != 0))
      return ctx.error() << "cannot reshape " << type << " to the requested shape", failure();
    sizes[inferred] = combineSizes(b, loc, "Div", total, known);
  } else if (knownC && totalC && *knownC != *totalC) {
    return ctx.error() << "cannot reshape " << type << " (" << *totalC << " elements) to " << *knownC << " elements",
           failure();
  }
  return SmallVector<Value>{tb::reshapeToSizes(b, loc, x, sizes)};
}

/// Flatten: [d0 * .. * d(axis-1), d(axis) * .. * d(rank-1)] (a negative
/// axis counts from the end).
Results convertFlatten(NodeContext &ctx) {
  if (failed(ctx.expectInputs(1, false)))
    return failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Value x = ctx.input(0);
  int64_t rank = ctx.inputType(0).getRank();
  int64_t axis = ctx.intAttr("axis", 1);
  if (axis < -rank || axis > rank)
    return ctx.error() << "axis " << axis << " is out of range for rank " << rank, failure();
  if (axis < 0)
    axis += rank;
  SmallVector<OpFoldResult> dims = tb::sizesOf(b, loc, x);
  OpFoldResult outer = b.getIndexAttr(1), inner = b.getIndexAttr(1);
  for (int64_t d = 0; d < rank; ++d)
    (d < axis ? outer : inner) = combineSizes(b, loc, "Mul", d < axis ? outer : inner, dims[d]);
  return SmallVector<Value>{tb::reshapeToSizes(b, loc, x, {outer, inner})};
}

/// Unsqueeze/Squeeze: axes from the attribute (opset < 13) or input 1.
FailureOr<SmallVector<int64_t>> shapeAxes(NodeContext &ctx) {
  if (ctx.opset >= 13) {
    if (!ctx.input(1))
      return SmallVector<int64_t>{};
    const ConstantTensor *c = ctx.constantInput(1);
    std::optional<SmallVector<int64_t>> axes = c ? c->asInts() : std::nullopt;
    if (!axes)
      return ctx.error() << "the axes input must be a constant", failure();
    return *axes;
  }
  return ctx.intsAttr("axes").value_or(SmallVector<int64_t>{});
}

/// The node's axes (shapeAxes), normalised against a rank: the result's
/// for Unsqueeze (input rank + number of axes), the input's for Squeeze.
FailureOr<SmallVector<int64_t>> normalizedShapeAxes(NodeContext &ctx, bool unsqueeze) {
  if (failed(ctx.expectInputs(1, false)))
    return failure();
  FailureOr<SmallVector<int64_t>> axes = shapeAxes(ctx);
  if (failed(axes))
    return failure();
  int64_t rank = ctx.inputType(0).getRank() + (unsqueeze ? axes->size() : 0);
  SmallVector<int64_t> normalized;
  for (int64_t a : *axes) {
    FailureOr<int64_t> n = ctx.normalizeAxis(a, rank);
    if (failed(n))
      return failure();
    if (llvm::is_contained(normalized, *n))
      return ctx.error() << "axis " << a << " is given twice", failure();
    normalized.push_back(*n);
  }
  return normalized;
}

Results convertUnsqueeze(NodeContext &ctx) {
  FailureOr<SmallVector<int64_t>> axes = normalizedShapeAxes(ctx, /*unsqueeze=*/true);
  if (failed(axes))
    return failure();
  // The input's sizes (several may be dynamic) with 1s inserted.
  SmallVector<OpFoldResult> in = tb::sizesOf(ctx.b, ctx.loc, ctx.input(0));
  int64_t rank = in.size() + axes->size();
  const SmallVector<int64_t> &normalized = *axes;
  SmallVector<OpFoldResult> sizes;
  for (int64_t d = 0, j = 0; d < rank; ++d)
    sizes.push_back(llvm::is_contained(normalized, d) ? ctx.b.getIndexAttr(1) : in[j++]);
  return SmallVector<Value>{tb::reshapeToSizes(ctx.b, ctx.loc, ctx.input(0), sizes)};
}

Results convertSqueeze(NodeContext &ctx) {
  FailureOr<SmallVector<int64_t>> axes = normalizedShapeAxes(ctx, /*unsqueeze=*/false);
  if (failed(axes))
    return failure();
  ArrayRef<int64_t> in = ctx.inputType(0).getShape();
  const SmallVector<int64_t> &normalized = *axes;
  for (int64_t n : normalized)
    if (!ShapedType::isDynamic(in[n]) && in[n] != 1)
      return ctx.error() << "cannot squeeze dimension " << n << " of size " << in[n], failure();
  // The kept sizes as they are (several may be dynamic).
  SmallVector<OpFoldResult> sizes, inSizes = tb::sizesOf(ctx.b, ctx.loc, ctx.input(0));
  for (auto [d, size] : llvm::enumerate(in)) {
    bool drop = normalized.empty() ? size == 1 : llvm::is_contained(normalized, static_cast<int64_t>(d));
    if (!drop)
      sizes.push_back(inSizes[d]);
  }
  return SmallVector<Value>{tb::reshapeToSizes(ctx.b, ctx.loc, ctx.input(0), sizes)};
}

/// (X - mean) / sqrt(var + epsilon) * Scale + B over the axes [axis, rank),
/// in f32.
Results convertLayerNorm(NodeContext &ctx) {
  if (failed(ctx.expectInputs(2, true)))
    return failure();
  for (int i = 1; i < ctx.node.output_size(); ++i)
    if (!ctx.node.output(i).empty())
      return ctx.error() << "the Mean and InvStdDev outputs are not supported", failure();
  int64_t rank = ctx.inputType(0).getRank();
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.intAttr("axis", -1), rank);
  if (failed(axis))
    return failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = ctx.inputType(0).getElementType();
  float epsilon = ctx.floatAttr("epsilon", 1e-5f);
  Value x = tb::castTensor(b, loc, ctx.input(0), b.getF32Type());
  auto reduceAll = [&](Value v) {
    for (int64_t d = *axis; d < rank; ++d)
      v = tb::reduceAxis(b, loc, v, d, tb::Reduction::Mean);
    return v;
  };
  Value mean = reduceAll(x);
  Value centered = *tb::elementwise(b, loc, ValueRange{x, mean}, b.getF32Type(), [](OpBuilder &nb, Location nl, ValueRange a) {
    return arith::SubFOp::create(nb, nl, a[0], a[1]).getResult();
  });
  Value var = reduceAll(*tb::elementwise(b, loc, ValueRange{centered}, b.getF32Type(), [](OpBuilder &nb, Location nl, ValueRange a) {
    return arith::MulFOp::create(nb, nl, a[0], a[0]).getResult();
  }));
  SmallVector<Value> operands = {centered, var, ctx.input(1)};
  if (ctx.input(2))
    operands.push_back(ctx.input(2));
  FailureOr<Value> r = tb::elementwise(b, loc, operands, element, [&](OpBuilder &nb, Location nl, ValueRange a) {
    Value denom = math::SqrtOp::create(nb, nl, arith::AddFOp::create(nb, nl, a[1], constF32(nb, nl, epsilon)));
    Value v = arith::MulFOp::create(nb, nl, arith::DivFOp::create(nb, nl, a[0], denom),
                                    tb::castScalar(nb, nl, a[2], nb.getF32Type()));
    if (a.size() > 3)
      v = arith::AddFOp::create(nb, nl, v, tb::castScalar(nb, nl, a[3], nb.getF32Type()));
    return tb::castScalar(nb, nl, v, element);
  }, checkBroadcastAtRunTime);
  if (failed(r))
    return ctx.error() << "Scale and B must broadcast to X's normalised dimensions", failure();
  return SmallVector<Value>{*r};
}

/// x / sqrt(mean(x², axes [axis, rank)) + epsilon) * scale, in f32.
Value rmsNorm(NodeContext &ctx, Value x, Value scale, int64_t axis) {
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type element = cast<RankedTensorType>(x.getType()).getElementType();
  int64_t rank = cast<RankedTensorType>(x.getType()).getRank();
  float epsilon = ctx.floatAttr("epsilon", 1e-5f);
  Value xf = tb::castTensor(b, loc, x, b.getF32Type());
  Value squares = *tb::elementwise(b, loc, ValueRange{xf}, b.getF32Type(), [](OpBuilder &nb, Location nl, ValueRange a) {
    return arith::MulFOp::create(nb, nl, a[0], a[0]).getResult();
  });
  for (int64_t d = axis; d < rank; ++d)
    squares = tb::reduceAxis(b, loc, squares, d, tb::Reduction::Mean);
  return *tb::elementwise(b, loc, ValueRange{xf, squares, scale}, element, [&](OpBuilder &nb, Location nl, ValueRange a) {
    Value denom = math::SqrtOp::create(nb, nl, arith::AddFOp::create(nb, nl, a[1], constF32(nb, nl, epsilon)));
    Value v = arith::MulFOp::create(nb, nl, arith::DivFOp::create(nb, nl, a[0], denom),
                                    tb::castScalar(nb, nl, a[2], nb.getF32Type()));
    return tb::castScalar(nb, nl, v, element);
  });
}

/// Only output 0 of a normalisation (and the given extra ones) is supported.
LogicalResult onlyOutputs(NodeContext &ctx, ArrayRef<int> supported) {
  for (int i = 1; i < ctx.node.output_size(); ++i)
    if (!ctx.node.output(i).empty() && !llvm::is_contained(supported, i))
      return ctx.error() << "output " << i << " ('" << ctx.node.output(i) << "') is not supported";
  return success();
}

/// RMSNormalization (opset 23) and com.microsoft.SimplifiedLayerNormalization.
Results convertRmsNorm(NodeContext &ctx) {
  if (failed(ctx.expectInputs(2, true)) || failed(onlyOutputs(ctx, {})))
    return failure();
  int64_t rank = ctx.inputType(0).getRank();
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.intAttr("axis", -1), rank);
  if (failed(axis) || failed(tb::broadcastShape({ctx.inputType(0).getShape(), ctx.inputType(1).getShape()})))
    return ctx.error() << "scale " << ctx.inputType(1) << " does not broadcast to " << ctx.inputType(0), failure();
  return SmallVector<Value>{rmsNorm(ctx, ctx.input(0), ctx.input(1), *axis)};
}

/// com.microsoft.SkipSimplifiedLayerNormalization: s = input + skip [+ bias];
/// outputs RMSNorm(s) * gamma and (output 3) s.
Results convertSkipRmsNorm(NodeContext &ctx) {
  if (failed(ctx.expectInputs(3, true)) || failed(onlyOutputs(ctx, {3})))
    return failure();
  SmallVector<Value> terms = {ctx.input(0), ctx.input(1)};
  if (ctx.input(3))
    terms.push_back(ctx.input(3));
  Type element = ctx.inputType(0).getElementType();
  FailureOr<SmallVector<Value>> sum =
      mapBroadcast(ctx, terms, element, [&](OpBuilder &b, Location l, ValueRange a) -> Value {
        Value acc = tb::castScalar(b, l, a[0], b.getF32Type());
        for (Value v : a.drop_front())
          acc = arith::AddFOp::create(b, l, acc, tb::castScalar(b, l, v, b.getF32Type()));
        return tb::castScalar(b, l, acc, element);
      });
  if (failed(sum))
    return failure();
  Value s = (*sum)[0];
  Value y = rmsNorm(ctx, s, ctx.input(2), cast<RankedTensorType>(s.getType()).getRank() - 1);
  return SmallVector<Value>{y, Value(), Value(), s};
}

/// A tensor of the (constant or computed) shape in input 0, filled with the
/// one-element `value` attribute (f32 0 by default).
Results convertConstantOfShape(NodeContext &ctx) {
  const ShapeVector *shape = ctx.shapeInput(0);
  if (!shape)
    return ctx.error() << "the shape input must be a constant or computed from tensor sizes", failure();
  OpBuilder &b = ctx.b;
  FailureOr<TypedAttr> fill = constantOfShapeFill(ctx);
  if (failed(fill))
    return failure();
  Value init = emptyOfShape(b, ctx.loc, *shape, fill->getType());
  Value value = arith::ConstantOp::create(b, ctx.loc, *fill);
  return SmallVector<Value>{linalg::FillOp::create(b, ctx.loc, value, init).getResult(0)};
}

Results convertIdentity(NodeContext &ctx) {
  if (failed(ctx.expectInputs(1, false)))
    return failure();
  return SmallVector<Value>{ctx.input(0)};
}

} // namespace

void mlir::moe::onnx_import::addStandardConverters(std::vector<OpConverter> &converters) {
  auto add = [&](StringRef op, ConvertFn fn) { converters.push_back({"", op, std::move(fn)}); };
  add("LayerNormalization", convertLayerNorm);
  add("RMSNormalization", convertRmsNorm);
  // ONNX Runtime registers it in the default domain; some tools write com.microsoft.
  add("SimplifiedLayerNormalization", convertRmsNorm);
  converters.push_back({"com.microsoft", "SimplifiedLayerNormalization", convertRmsNorm});
  converters.push_back({"com.microsoft", "SkipSimplifiedLayerNormalization", convertSkipRmsNorm});
  add("Identity", convertIdentity);
  add("ConstantOfShape", convertConstantOfShape);
  add("MatMul", convertMatMul);
  add("Gemm", convertGemm);
  add("Einsum", convertEinsum);
  add("Softmax", convertSoftmax);
  add("LogSoftmax", convertLogSoftmax);
  add("CumSum", convertCumSum);
  add("ReduceSum", reduce(tb::Reduction::Sum, 13));
  add("ReduceMean", reduce(tb::Reduction::Mean, 18));
  add("ReduceMax", reduce(tb::Reduction::Max, 18));
  add("ReduceMin", reduce(tb::Reduction::Min, 18));
  add("ReduceProd", reduce(tb::Reduction::Prod, 18));
  add("ReduceL1", mappedReduce(MappedReduction::L1));
  add("ReduceL2", mappedReduce(MappedReduction::L2));
  add("ReduceSumSquare", mappedReduce(MappedReduction::SumSquare));
  add("ReduceLogSum", mappedReduce(MappedReduction::LogSum));
  add("ReduceLogSumExp", mappedReduce(MappedReduction::LogSumExp));
  add("Transpose", convertTranspose);
  add("Reshape", convertReshape);
  add("Flatten", convertFlatten);
  add("Unsqueeze", convertUnsqueeze);
  add("Squeeze", convertSqueeze);
}
