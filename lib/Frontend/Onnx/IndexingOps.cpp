//===- IndexingOps.cpp - ONNX ops that select, combine and shape tensors --===//
//
// Gather, Slice, Concat, Split, Expand, Shape, Range, Where, TopK, OneHot,
// ScatterND and ScatterElements. Sizes and positions must be known when
// importing (constant inputs), except the dynamic dimensions the data
// carries through.
//
//===----------------------------------------------------------------------===//

#include "OnnxImporter.h"
#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "dialects/moe/MoeDialect.h"
#include "dialects/moe/MoeOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/BuiltinOps.h"

#include <functional>
#include <limits>
#include <numeric>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// A linalg.generic over `init`'s shape (the result) whose element at each
/// point is data[at(point, args)]: `inputs` are read through `inputMaps`
/// into `args`, `point` holds the result's linalg.index values.
Value gatherGeneric(OpBuilder &b, Location loc, Value data, Value init, ValueRange inputs,
                    ArrayRef<AffineMap> inputMaps,
                    function_ref<SmallVector<Value>(OpBuilder &, Location, ArrayRef<Value>, ValueRange)> at) {
  auto resultType = cast<RankedTensorType>(init.getType());
  int64_t rank = resultType.getRank();
  SmallVector<AffineMap> maps(inputMaps);
  maps.push_back(b.getMultiDimIdentityMap(rank));
  return linalg::GenericOp::create(
             b, loc, TypeRange{resultType}, inputs, ValueRange{init}, maps,
             SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
             [&](OpBuilder &nb, Location nl, ValueRange args) {
               SmallVector<Value> point;
               for (int64_t d = 0; d < rank; ++d)
                 point.push_back(linalg::IndexOp::create(nb, nl, d));
               SmallVector<Value> indices = at(nb, nl, point, args);
               linalg::YieldOp::create(nb, nl, ValueRange{tensor::ExtractOp::create(nb, nl, data, indices)});
             })
      .getResult(0);
}

/// The axis of Gather or GatherElements after checking their data and
/// integer indices (of the data's rank when `sameRank`); an error at the
/// node otherwise.
FailureOr<int64_t> gatherAxis(NodeContext &ctx, bool sameRank) {
  if (!ctx.input(0) || !ctx.input(1))
    return ctx.error() << "data and indices are required", failure();
  RankedTensorType dataType = ctx.inputType(0), indexType = ctx.inputType(1);
  if (!isa<IntegerType>(indexType.getElementType()) || (sameRank && indexType.getRank() != dataType.getRank()))
    return ctx.error() << "indices must be integers" << (sameRank ? " of the data's rank" : "") << ", got "
                       << indexType,
           failure();
  return ctx.normalizeAxis(ctx.intAttr("axis", 0), dataType.getRank());
}

/// data.shape[:axis] + indices.shape + data.shape[axis+1:]; negative
/// indices count from the end, out-of-range ones are clamped (ONNX leaves
/// them undefined; a clamp never reads outside the tensor).
Results convertGather(NodeContext &ctx) {
  FailureOr<int64_t> axis = gatherAxis(ctx, /*sameRank=*/false);
  if (failed(axis))
    return failure();
  Value data = ctx.input(0), indices = ctx.input(1);
  RankedTensorType dataType = ctx.inputType(0), indexType = ctx.inputType(1);
  if (failed(checkConstantIndices(ctx, 1, {dataType.getDimSize(*axis)}, /*lastAxis=*/false)))
    return failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  int64_t ir = indexType.getRank();
  SmallVector<int64_t> shape(dataType.getShape().take_front(*axis));
  llvm::append_range(shape, indexType.getShape());
  llvm::append_range(shape, dataType.getShape().drop_front(*axis + 1));
  SmallVector<Value> dynamic;
  for (auto [d, size] : llvm::enumerate(shape)) {
    if (!ShapedType::isDynamic(size))
      continue;
    int64_t di = static_cast<int64_t>(d);
    if (di < *axis)
      dynamic.push_back(tb::dimSize(b, loc, data, di));
    else if (di < *axis + ir)
      dynamic.push_back(tb::dimSize(b, loc, indices, di - *axis));
    else
      dynamic.push_back(tb::dimSize(b, loc, data, di - ir + 1));
  }
  auto resultType = RankedTensorType::get(shape, dataType.getElementType());
  Value init = tb::empty(b, loc, resultType, dynamic);
  MLIRContext *mctx = b.getContext();
  int64_t rank = shape.size();
  SmallVector<AffineExpr> indexExprs;
  for (int64_t d = 0; d < ir; ++d)
    indexExprs.push_back(getAffineDimExpr(*axis + d, mctx));
  Value axisSize = tb::dimSize(b, loc, data, *axis);
  return SmallVector<Value>{gatherGeneric(
      b, loc, data, init, indices, AffineMap::get(rank, 0, indexExprs, mctx),
      [&](OpBuilder &nb, Location nl, ArrayRef<Value> point, ValueRange args) {
        SmallVector<Value> at(point.take_front(*axis));
        at.push_back(clampIndex(nb, nl, args[0], axisSize));
        llvm::append_range(at, point.drop_front(*axis + ir));
        return at;
      })};
}

/// Slice with constant axes and steps; starts and ends constant or computed
/// from tensor sizes (exporters slice to a sequence length). Negative steps
/// (torch.flip) need static sizes and constant bounds.
Results convertSlice(NodeContext &ctx) {
  Value data = ctx.input(0);
  if (!data)
    return ctx.error() << "data is required", failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  auto bounds = [&](unsigned i, StringRef what) -> FailureOr<SmallVector<OpFoldResult>> {
    if (const ShapeVector *v = ctx.input(i) ? ctx.shapeInput(i) : nullptr)
      return v->elements;
    return ctx.error() << what << " (input " << i
                       << ") must be a constant integer tensor or computed from tensor sizes",
           failure();
  };
  FailureOr<SmallVector<OpFoldResult>> starts = bounds(1, "starts");
  FailureOr<SmallVector<OpFoldResult>> ends = bounds(2, "ends");
  if (failed(starts) || failed(ends))
    return failure();
  SmallVector<int64_t> axes, steps(starts->size(), 1);
  if (ctx.input(3)) {
    FailureOr<SmallVector<int64_t>> a = ctx.constantInts(3, "axes");
    if (failed(a))
      return failure();
    axes = *a;
  } else {
    axes = llvm::to_vector(llvm::seq<int64_t>(0, starts->size()));
  }
  if (ctx.input(4)) {
    FailureOr<SmallVector<int64_t>> s = ctx.constantInts(4, "steps");
    if (failed(s))
      return failure();
    steps = *s;
  }
  if (ends->size() != starts->size() || axes.size() != starts->size() || steps.size() != starts->size())
    return ctx.error() << "starts, ends, axes and steps must have the same length", failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0)), sizes = tb::sizesOf(b, loc, data),
                            strides(rank, b.getIndexAttr(1));
  SmallVector<int64_t> shape(type.getShape());
  SmallVector<int64_t> reversed; // axes read backwards (negative steps)
  for (size_t i = 0; i < axes.size(); ++i) {
    FailureOr<int64_t> axis = ctx.normalizeAxis(axes[i], rank);
    if (failed(axis))
      return failure();
    int64_t dim = shape[*axis];
    std::optional<int64_t> start = getConstantIntValue((*starts)[i]), end = getConstantIntValue((*ends)[i]);
    if (steps[i] == 0)
      return ctx.error() << "step 0 on axis " << *axis, failure();
    if (steps[i] < 0) {
      // start, start + step, ... while > end; start clamped to [0, dim - 1]
      // and end to [-1, dim - 1] (the spec's rule for negative steps): the
      // same elements as a positive-step slice from the last one, reversed.
      if (ShapedType::isDynamic(dim) || !start || !end)
        return ctx.error() << "step " << steps[i] << " on axis " << *axis
                           << ": negative steps need a static size and constant bounds",
               failure();
      int64_t from = std::clamp<int64_t>(*start < 0 ? *start + dim : *start, 0, dim - 1);
      int64_t to = std::clamp<int64_t>(*end < 0 ? *end + dim : *end, -1, dim - 1);
      int64_t stride = -steps[i], count = dim > 0 && from > to ? (from - to + stride - 1) / stride : 0;
      offsets[*axis] = b.getIndexAttr(count ? from - (count - 1) * stride : 0);
      sizes[*axis] = b.getIndexAttr(count);
      strides[*axis] = b.getIndexAttr(stride);
      shape[*axis] = count;
      reversed.push_back(*axis);
      continue;
    }
    strides[*axis] = b.getIndexAttr(steps[i]);
    if (ShapedType::isDynamic(dim) || !start || !end) {
      // Bounds resolved at run time as below: negative ones count from the
      // end, both clamped to [0, dim].
      Value size = tb::dimSize(b, loc, data, *axis);
      auto bound = [&](OpFoldResult v) -> Value {
        Value c = getValueOrCreateConstantIndexOp(b, loc, v);
        Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, c, scalar::constIndex(b, loc, 0));
        Value resolved = arith::SelectOp::create(b, loc, negative, arith::AddIOp::create(b, loc, c, size), c);
        resolved = arith::MaxSIOp::create(b, loc, resolved, scalar::constIndex(b, loc, 0));
        return arith::MinSIOp::create(b, loc, resolved, size);
      };
      Value first = bound((*starts)[i]), last = bound((*ends)[i]);
      Value span = arith::MaxSIOp::create(b, loc, arith::SubIOp::create(b, loc, last, first), scalar::constIndex(b, loc, 0));
      Value count = arith::DivUIOp::create(
          b, loc, arith::AddIOp::create(b, loc, span, scalar::constIndex(b, loc, steps[i] - 1)), scalar::constIndex(b, loc, steps[i]));
      offsets[*axis] = getAsOpFoldResult(first);
      sizes[*axis] = getAsOpFoldResult(count);
      std::optional<int64_t> staticCount = getConstantIntValue(sizes[*axis]);
      shape[*axis] = staticCount ? *staticCount : ShapedType::kDynamic;
      continue;
    }
    int64_t from = *start < 0 ? *start + dim : *start, to = *end < 0 ? *end + dim : *end;
    from = std::clamp<int64_t>(from, 0, dim);
    to = std::clamp<int64_t>(to, 0, dim);
    int64_t count = to > from ? (to - from + steps[i] - 1) / steps[i] : 0;
    // An empty slice starts at 0: tensor.extract_slice refuses an offset
    // at the end even for no elements (x[4:] of 4 elements).
    offsets[*axis] = b.getIndexAttr(count ? from : 0);
    sizes[*axis] = b.getIndexAttr(count);
    shape[*axis] = count;
  }
  auto resultType = RankedTensorType::get(shape, type.getElementType());
  Value slice = tensor::ExtractSliceOp::create(b, loc, resultType, data, offsets, sizes, strides);
  if (reversed.empty())
    return SmallVector<Value>{slice};
  return SmallVector<Value>{gatherGeneric(
      b, loc, slice, tb::emptyLike(b, loc, slice, type.getElementType()), ValueRange{}, {},
      [&](OpBuilder &nb, Location nl, ArrayRef<Value> point, ValueRange) {
        SmallVector<Value> at(point);
        for (int64_t axis : reversed)
          at[axis] = arith::SubIOp::create(nb, nl, scalar::constIndex(nb, nl, shape[axis] - 1), point[axis]);
        return at;
      })};
}

/// GatherElements: out[i] = data[i with i[axis] = indices[i]], the result
/// shaped like indices; negative indices wrap, out-of-range ones are
/// clamped as in Gather.
Results convertGatherElements(NodeContext &ctx) {
  FailureOr<int64_t> axis = gatherAxis(ctx, /*sameRank=*/true);
  if (failed(axis))
    return failure();
  Value data = ctx.input(0), indices = ctx.input(1);
  RankedTensorType dataType = ctx.inputType(0);
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  int64_t rank = dataType.getRank();
  // Off the axis, each result element reads the data at its own position.
  SmallVector<Value> indexSizes;
  for (int64_t d = 0; d < rank; ++d)
    indexSizes.push_back(tb::dimSize(b, loc, indices, d));
  for (int64_t d = 0; d < rank; ++d)
    if (d != *axis &&
        failed(checkOperandSize(ctx, OperandSizeRule::gatherElementsIndices, 1, d, data, d, indexSizes)))
      return failure();
  if (failed(checkConstantIndices(ctx, 1, {dataType.getDimSize(*axis)}, /*lastAxis=*/false)))
    return failure();
  Value axisSize = tb::dimSize(b, loc, data, *axis);
  return SmallVector<Value>{gatherGeneric(
      b, loc, data, tb::emptyLike(b, loc, indices, dataType.getElementType()), indices,
      b.getMultiDimIdentityMap(rank), [&](OpBuilder &nb, Location nl, ArrayRef<Value> point, ValueRange args) {
        SmallVector<Value> at(point);
        at[*axis] = clampIndex(nb, nl, args[0], axisSize);
        return at;
      })};
}

Results convertConcat(NodeContext &ctx) {
  if (ctx.inputs.empty() || llvm::any_of(ctx.inputs, [](Value v) { return !v; }))
    return ctx.error() << "every input is required", failure();
  int64_t rank = ctx.inputType(0).getRank();
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.intAttr("axis", 0), rank);
  if (failed(axis))
    return failure();
  for (unsigned i = 1; i < ctx.inputs.size(); ++i)
    if (ctx.inputType(i).getRank() != rank || ctx.inputType(i).getElementType() != ctx.inputType(0).getElementType())
      return ctx.error() << "input " << i << " " << ctx.inputType(i) << " does not match " << ctx.inputType(0),
             failure();
  // Inputs with no elements along the axis add nothing (and an insertion
  // at the end offset would not verify once the sizes are static).
  SmallVector<Value> parts;
  for (auto [i, input] : llvm::enumerate(ctx.inputs))
    if (ctx.inputType(i).getDimSize(*axis) != 0)
      parts.push_back(input);
  if (parts.empty())
    return SmallVector<Value>{ctx.inputs[0]};
  if (parts.size() == 1)
    return SmallVector<Value>{parts[0]};
  return SmallVector<Value>{tensor::ConcatOp::create(ctx.b, ctx.loc, *axis, parts)};
}

/// Split by sizes read from the data (per-expert row counts, as JetMoE's
/// `x.split(expert_sizes)` exports): each part starts where the previous one
/// ended. Sizes are clamped to what is left of the axis, so bad counts give
/// short parts, never a slice past the end.
Results splitAtRunTime(NodeContext &ctx, Value data, int64_t axis) {
  RankedTensorType type = ctx.inputType(0), sizesType = ctx.inputType(1);
  int64_t parts = ctx.node.output_size();
  if (!isa<IntegerType>(sizesType.getElementType()) || sizesType.getRank() != 1 ||
      sizesType.getDimSize(0) != parts)
    return ctx.error() << "split (input 1) must be a 1-D integer tensor of " << parts << " sizes (one per output), not "
                       << sizesType,
           failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Value length = tb::dimSize(b, loc, data, axis);
  Value zero = arith::ConstantIndexOp::create(b, loc, 0), offset = zero;
  SmallVector<Value> results;
  for (int64_t i = 0; i < parts; ++i) {
    Value at = arith::ConstantIndexOp::create(b, loc, i);
    Value raw = arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                           tensor::ExtractOp::create(b, loc, ctx.input(1), ValueRange{at}));
    Value left = arith::SubIOp::create(b, loc, length, offset);
    Value size = arith::MinSIOp::create(b, loc, arith::MaxSIOp::create(b, loc, raw, zero), left);
    SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0)), sizes = tb::sizesOf(b, loc, data),
        strides(type.getRank(), b.getIndexAttr(1));
    SmallVector<int64_t> shape(type.getShape());
    offsets[axis] = offset;
    sizes[axis] = size;
    shape[axis] = ShapedType::kDynamic;
    results.push_back(tensor::ExtractSliceOp::create(b, loc, RankedTensorType::get(shape, type.getElementType()), data,
                                                     offsets, sizes, strides));
    offset = arith::AddIOp::create(b, loc, offset, size);
  }
  return results;
}

/// Split into constant sizes (the `split` input or attribute, or equal
/// parts), or sizes read from the data (splitAtRunTime).
Results convertSplit(NodeContext &ctx) {
  Value data = ctx.input(0);
  if (!data)
    return ctx.error() << "input is required", failure();
  RankedTensorType type = ctx.inputType(0);
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.intAttr("axis", 0), type.getRank());
  if (failed(axis))
    return failure();
  int64_t dim = type.getDimSize(*axis);
  SmallVector<int64_t> parts;
  if (ctx.opset >= 13 && ctx.input(1) && !ctx.constantInput(1) && !ctx.shapeInput(1))
    return splitAtRunTime(ctx, data, *axis);
  if (ctx.opset >= 13 && ctx.input(1)) {
    FailureOr<SmallVector<int64_t>> s = ctx.constantInts(1, "split");
    if (failed(s))
      return failure();
    parts = *s;
  } else if (auto attr = ctx.intsAttr("split"); attr && ctx.opset < 13) {
    parts = *attr;
  } else {
    int64_t n = ctx.intAttr("num_outputs", ctx.node.output_size());
    if (ShapedType::isDynamic(dim) || n <= 0)
      return ctx.error() << "cannot split dynamic axis " << *axis << " into equal parts", failure();
    int64_t each = (dim + n - 1) / n;
    for (int64_t i = 0; i < n; ++i)
      parts.push_back(std::min(each, dim - i * each));
  }
  int64_t total = 0;
  for (int64_t p : parts)
    total += p;
  // Constant sizes of a size known only at run time hold for one size: a
  // trace of a loop over data (TorchScript unrolls `for e in nonzero(..)`
  // as many times as the example input had elements). Refused rather than
  // sliced past the end for other inputs.
  if (ShapedType::isDynamic(dim))
    return ctx.error() << "splits axis " << *axis << ", whose size is known only at run time, into constant sizes "
                       << "summing to " << total << ": the graph holds only for inputs where that axis has "
                       << total << " elements (a traced loop over data-dependent values?)",
           failure();
  if (total != dim)
    return ctx.error() << "split sizes sum to " << total << ", axis " << *axis << " has " << dim, failure();
  SmallVector<Value> results;
  int64_t offset = 0;
  for (int64_t p : parts) {
    SmallVector<OpFoldResult> offsets(type.getRank(), ctx.b.getIndexAttr(0)),
        sizes = tb::sizesOf(ctx.b, ctx.loc, data), strides(type.getRank(), ctx.b.getIndexAttr(1));
    SmallVector<int64_t> shape(type.getShape());
    offsets[*axis] = ctx.b.getIndexAttr(offset);
    sizes[*axis] = ctx.b.getIndexAttr(p);
    shape[*axis] = p;
    results.push_back(tensor::ExtractSliceOp::create(ctx.b, ctx.loc, RankedTensorType::get(shape, type.getElementType()),
                                                     data, offsets, sizes, strides));
    offset += p;
  }
  return results;
}

/// Broadcast to a constant shape (numpy rules against the input's shape).
Results convertExpand(NodeContext &ctx) {
  Value data = ctx.input(0);
  if (!data)
    return ctx.error() << "input is required", failure();
  const ShapeVector *target = ctx.shapeInput(1);
  ShapeVector runTime;
  if (!target) {
    // Sizes read from the data (a count of selected rows, torch's
    // x[mask] += ...): each output size is the input's where the shape
    // says 1 (or the input's size is static and not 1), else the shape's.
    auto shapeType = ctx.input(1) ? dyn_cast<RankedTensorType>(ctx.input(1).getType()) : RankedTensorType();
    if (!shapeType || shapeType.getRank() != 1 || shapeType.isDynamicDim(0) ||
        !shapeType.getElementType().isInteger(64) || shapeType.getDimSize(0) > kMaxShapeVectorLength)
      return ctx.error() << "the shape input must be a 1-D int64 tensor of static length, got "
                         << (ctx.input(1) ? ctx.input(1).getType() : Type()),
             failure();
    RankedTensorType type = ctx.inputType(0);
    int64_t rank = shapeType.getDimSize(0), offset = rank - type.getRank();
    if (offset < 0)
      return ctx.error() << "the shape has " << rank << " sizes for an input of rank " << type.getRank(), failure();
    OpBuilder &b = ctx.b;
    Location loc = ctx.loc;
    for (int64_t d = 0; d < rank; ++d) {
      int64_t in = d >= offset ? type.getDimSize(d - offset) : 1;
      if (!ShapedType::isDynamic(in) && in != 1) {
        runTime.elements.push_back(b.getIndexAttr(in));
        continue;
      }
      Value s = tensor::ExtractOp::create(b, loc, ctx.input(1), ValueRange{scalar::constIndex(b, loc, d)});
      s = arith::IndexCastOp::create(b, loc, b.getIndexType(), s);
      // A negative size (invalid data) gives an empty dim, not an allocation
      // of a wrapped-around size.
      s = arith::MaxSIOp::create(b, loc, s, scalar::constIndex(b, loc, 0));
      if (ShapedType::isDynamic(in)) {
        Value one = scalar::constIndex(b, loc, 1);
        Value keep = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, s, one);
        s = arith::SelectOp::create(b, loc, keep, tb::dimSize(b, loc, ctx.input(0), d - offset), s);
      }
      runTime.elements.push_back(s);
    }
    target = &runTime;
  }
  Type element = ctx.inputType(0).getElementType();
  Value shaped = emptyOfShape(ctx.b, ctx.loc, *target, element);
  FailureOr<Value> r = tb::elementwise(ctx.b, ctx.loc, ValueRange{data, shaped}, element,
                                       [](OpBuilder &, Location, ValueRange a) { return a[0]; },
                                       checkBroadcastAtRunTime);
  if (failed(r))
    return ctx.error() << ctx.inputType(0) << " does not broadcast to the requested shape", failure();
  return SmallVector<Value>{*r};
}

/// Tile: `input` repeated `repeats[d]` times along every dim d, out[i] =
/// in[i mod size] per dim (torch's repeat, and repeat_interleave's index
/// rows). The repeats must be constants of the model, at least 0.
Results convertTile(NodeContext &ctx) {
  Value data = ctx.input(0);
  if (!data)
    return ctx.error() << "input is required", failure();
  FailureOr<SmallVector<int64_t>> repeats = ctx.constantInts(1, "repeats");
  if (failed(repeats))
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  if (int64_t(repeats->size()) != rank)
    return ctx.error() << "repeats has " << repeats->size() << " values for an input of rank " << rank, failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  SmallVector<int64_t> shape;
  SmallVector<Value> dynamicSizes, sizes;
  for (int64_t d = 0; d < rank; ++d) {
    int64_t r = (*repeats)[d];
    if (r < 0)
      return ctx.error() << "repeats must be at least 0, got " << r << " for dim " << d, failure();
    int64_t size = type.getDimSize(d);
    if (!ShapedType::isDynamic(size) && r > 0 && size > (int64_t(1) << 40) / r)
      return ctx.error() << "tiling dim " << d << " of size " << size << " " << r << " times is too large", failure();
    Value sizeValue = tb::dimSize(b, loc, data, d);
    sizes.push_back(sizeValue);
    shape.push_back(ShapedType::isDynamic(size) ? ShapedType::kDynamic : size * r);
    if (ShapedType::isDynamic(size))
      dynamicSizes.push_back(arith::MulIOp::create(b, loc, sizeValue, scalar::constIndex(b, loc, r)));
  }
  auto resultType = RankedTensorType::get(shape, type.getElementType());
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{resultType}, ValueRange{}, ValueRange{tb::empty(b, loc, resultType, dynamicSizes)},
      ArrayRef<AffineMap>{b.getMultiDimIdentityMap(rank)},
      SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location nl, ValueRange) {
        SmallVector<Value> at;
        for (int64_t d = 0; d < rank; ++d)
          at.push_back(arith::RemUIOp::create(nb, nl, linalg::IndexOp::create(nb, nl, d), sizes[d]));
        linalg::YieldOp::create(nb, nl, ValueRange{tensor::ExtractOp::create(nb, nl, data, at).getResult()});
      });
  return SmallVector<Value>{generic.getResult(0)};
}

/// The shape as an i64 tensor (a constant when every size is static, so
/// that a Reshape reading it sees a constant).
Results convertShape(NodeContext &ctx) {
  Value data = ctx.input(0);
  if (!data)
    return ctx.error() << "input is required", failure();
  RankedTensorType type = ctx.inputType(0);
  auto [start, end] = shapeNodeRange(ctx, type.getRank());
  auto resultType = RankedTensorType::get({end - start}, ctx.b.getI64Type());
  SmallVector<int64_t> sizes(type.getShape().slice(start, end - start));
  if (llvm::none_of(sizes, ShapedType::isDynamic))
    return SmallVector<Value>{
        arith::ConstantOp::create(ctx.b, ctx.loc, DenseIntElementsAttr::get(resultType, ArrayRef<int64_t>(sizes)))};
  SmallVector<Value> values;
  for (int64_t d = start; d < end; ++d)
    values.push_back(arith::IndexCastOp::create(ctx.b, ctx.loc, ctx.b.getI64Type(), tb::dimSize(ctx.b, ctx.loc, data, d)));
  return SmallVector<Value>{tensor::FromElementsOp::create(ctx.b, ctx.loc, resultType, values)};
}

/// The element count as an i64 scalar (a constant when every size is
/// static).
Results convertSize(NodeContext &ctx) {
  Value data = ctx.input(0);
  if (!data)
    return ctx.error() << "input is required", failure();
  RankedTensorType type = ctx.inputType(0);
  auto resultType = RankedTensorType::get({}, ctx.b.getI64Type());
  if (type.hasStaticShape())
    return SmallVector<Value>{
        arith::ConstantOp::create(ctx.b, ctx.loc, DenseIntElementsAttr::get(resultType, type.getNumElements()))};
  Value count = scalar::constIndex(ctx.b, ctx.loc, 1);
  for (int64_t d = 0; d < type.getRank(); ++d)
    count = arith::MulIOp::create(ctx.b, ctx.loc, count, tb::dimSize(ctx.b, ctx.loc, data, d));
  Value i64 = arith::IndexCastOp::create(ctx.b, ctx.loc, ctx.b.getI64Type(), count);
  return SmallVector<Value>{tensor::FromElementsOp::create(ctx.b, ctx.loc, resultType, ValueRange{i64})};
}

/// An integer Range whose operands are sizes known at import (a limit read
/// from a tensor's size): [start, limit) by delta, of dynamic length.
Results convertSizedRange(NodeContext &ctx) {
  const ShapeVector *v0 = ctx.shapeInput(0), *v1 = ctx.shapeInput(1), *v2 = ctx.shapeInput(2);
  if (!v0 || !v1 || !v2 || v0->elements.size() != 1 || v1->elements.size() != 1 || v2->elements.size() != 1 ||
      !isa<IntegerType>(ctx.inputType(0).getElementType()))
    return ctx.error() << "start, limit and delta must be constants or integer sizes of tensors", failure();
  std::optional<int64_t> delta = getConstantIntValue(v2->elements[0]);
  if (!delta || *delta <= 0)
    return ctx.error() << "a Range with a computed limit needs a constant positive delta", failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Value start = getValueOrCreateConstantIndexOp(b, loc, v0->elements[0]);
  Value limit = getValueOrCreateConstantIndexOp(b, loc, v1->elements[0]);
  // ceil((limit - start) / delta), at least 0.
  Value span = arith::MaxSIOp::create(b, loc, arith::SubIOp::create(b, loc, limit, start), scalar::constIndex(b, loc, 0));
  Value count = arith::DivUIOp::create(b, loc, arith::AddIOp::create(b, loc, span, scalar::constIndex(b, loc, *delta - 1)),
                                       scalar::constIndex(b, loc, *delta));
  Type element = ctx.inputType(0).getElementType();
  auto type = RankedTensorType::get({ShapedType::kDynamic}, element);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{type}, ValueRange{}, ValueRange{tb::empty(b, loc, type, ValueRange{count})},
      ArrayRef<AffineMap>{b.getMultiDimIdentityMap(1)}, ArrayRef<utils::IteratorType>{utils::IteratorType::parallel},
      [&](OpBuilder &nb, Location nl, ValueRange) {
        Value i = arith::MulIOp::create(nb, nl, linalg::IndexOp::create(nb, nl, 0), scalar::constIndex(nb, nl, *delta));
        Value v = arith::IndexCastOp::create(nb, nl, element, arith::AddIOp::create(nb, nl, start, i));
        linalg::YieldOp::create(nb, nl, ValueRange{v});
      });
  return SmallVector<Value>{generic.getResult(0)};
}

/// Range with constant scalar inputs: a constant tensor (with a limit read
/// from a tensor's size: a computed one).
Results convertRange(NodeContext &ctx) {
  const ConstantTensor *c0 = ctx.constantInput(0), *c1 = ctx.constantInput(1), *c2 = ctx.constantInput(2);
  if (!c0 || !c1 || !c2)
    return convertSizedRange(ctx);
  Type element = c0->type.getElementType();
  if (auto s = c0->asInts()) {
    int64_t start = (*s)[0], limit = (*c1->asInts())[0], delta = (*c2->asInts())[0];
    if (delta == 0)
      return ctx.error() << "delta is 0", failure();
    SmallVector<APInt> values;
    for (int64_t v = start; delta > 0 ? v < limit : v > limit; v += delta)
      values.push_back(APInt(element.getIntOrFloatBitWidth(), v, /*isSigned=*/true));
    auto type = RankedTensorType::get({static_cast<int64_t>(values.size())}, element);
    return SmallVector<Value>{arith::ConstantOp::create(ctx.b, ctx.loc, DenseIntElementsAttr::get(type, values))};
  }
  std::optional<std::vector<float>> f0 = c0->asFloats(), f1 = c1->asFloats(), f2 = c2->asFloats();
  if (!f0 || !f1 || !f2 || (*f2)[0] == 0.0f)
    return ctx.error() << "unsupported Range operands", failure();
  SmallVector<float> values;
  int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil(((*f1)[0] - (*f0)[0]) / (*f2)[0])));
  for (int64_t i = 0; i < n; ++i)
    values.push_back((*f0)[0] + i * (*f2)[0]);
  auto type = RankedTensorType::get({n}, ctx.b.getF32Type());
  Value r = arith::ConstantOp::create(ctx.b, ctx.loc, DenseFPElementsAttr::get(type, ArrayRef<float>(values)));
  return SmallVector<Value>{tb::castTensor(ctx.b, ctx.loc, r, element)};
}

Results convertWhere(NodeContext &ctx) {
  if (!ctx.input(0) || !ctx.input(1) || !ctx.input(2))
    return ctx.error() << "condition, X and Y are required", failure();
  Type element = ctx.inputType(1).getElementType();
  if (!ctx.inputType(0).getElementType().isInteger(1) || ctx.inputType(2).getElementType() != element)
    return ctx.error() << "needs a bool condition and X, Y of one type", failure();
  return mapBroadcast(ctx, ctx.inputs, element, [](OpBuilder &b, Location l, ValueRange a) {
    return arith::SelectOp::create(b, l, a[0], a[1], a[2]).getResult();
  });
}

/// The k first of each row of `rows` [T, n] in TopK's order (largest or
/// smallest first, ties to the lower index), for any element type: each
/// element's rank is the number of elements ordered before it (O(n^2) per
/// row), and output slot p reads the element whose rank is p. Returns
/// (values [T, k], indices [T, k] as i64); k = kDynamic sorts whole rows of
/// a run-time length n.
std::pair<Value, Value> rankedTopK(OpBuilder &b, Location loc, Value rows, int64_t k, bool largest) {
  auto type = cast<RankedTensorType>(rows.getType());
  Type element = type.getElementType(), i64 = b.getI64Type();
  MLIRContext *ctx = b.getContext();
  AffineExpr t = getAffineDimExpr(0, ctx), i = getAffineDimExpr(1, ctx), j = getAffineDimExpr(2, ctx);
  auto map = [&](ArrayRef<AffineExpr> exprs) { return AffineMap::get(3, 0, exprs, ctx); };
  SmallVector<Value> dyn, slotDyn;
  for (int64_t d = 0; d < 2; ++d)
    if (type.isDynamicDim(d))
      dyn.push_back(tb::dimSize(b, loc, rows, d));
  if (type.isDynamicDim(0))
    slotDyn.push_back(dyn.front());
  if (ShapedType::isDynamic(k))
    slotDyn.push_back(dyn.back());
  auto rankType = RankedTensorType::get(type.getShape(), i64);
  Value zeros = linalg::FillOp::create(b, loc, scalar::intConst(b, loc, i64, 0), tb::empty(b, loc, rankType, dyn))
                    .getResult(0);
  // rank[t, i] = #{j : v[t, j] before v[t, i]}.
  Value rank = linalg::GenericOp::create(
                   b, loc, TypeRange{rankType}, ValueRange{rows, rows}, ValueRange{zeros},
                   SmallVector<AffineMap>{map({t, i}), map({t, j}), map({t, i})},
                   {utils::IteratorType::parallel, utils::IteratorType::parallel, utils::IteratorType::reduction},
                   [&](OpBuilder &nb, Location nl, ValueRange args) {
                     Value vi = args[0], vj = args[1];
                     Value ii = linalg::IndexOp::create(nb, nl, 1), jj = linalg::IndexOp::create(nb, nl, 2);
                     Value beats, equal;
                     if (isa<FloatType>(element)) {
                       beats = arith::CmpFOp::create(nb, nl, largest ? arith::CmpFPredicate::OGT
                                                                      : arith::CmpFPredicate::OLT, vj, vi);
                       equal = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, vj, vi);
                     } else {
                       beats = arith::CmpIOp::create(nb, nl, largest ? arith::CmpIPredicate::sgt
                                                                      : arith::CmpIPredicate::slt, vj, vi);
                       equal = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, vj, vi);
                     }
                     Value earlier = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult, jj, ii);
                     Value before = arith::OrIOp::create(nb, nl, beats, arith::AndIOp::create(nb, nl, equal, earlier));
                     Value one = arith::ExtUIOp::create(nb, nl, i64, before);
                     linalg::YieldOp::create(nb, nl, ValueRange{arith::AddIOp::create(nb, nl, args[2], one)});
                   })
                   .getResult(0);
  // index[t, p] = the i whose rank is p (ranks are a permutation).
  auto slotsType = RankedTensorType::get({type.getDimSize(0), k}, i64);
  Value slotZeros =
      linalg::FillOp::create(b, loc, scalar::intConst(b, loc, i64, 0), tb::empty(b, loc, slotsType, slotDyn))
          .getResult(0);
  AffineExpr p = getAffineDimExpr(1, ctx), e = getAffineDimExpr(2, ctx);
  Value indices = linalg::GenericOp::create(
                      b, loc, TypeRange{slotsType}, ValueRange{rank}, ValueRange{slotZeros},
                      SmallVector<AffineMap>{map({t, e}), map({t, p})},
                      {utils::IteratorType::parallel, utils::IteratorType::parallel,
                       utils::IteratorType::reduction},
                      [&](OpBuilder &nb, Location nl, ValueRange args) {
                        Value slot = arith::IndexCastOp::create(nb, nl, i64, linalg::IndexOp::create(nb, nl, 1));
                        Value at = arith::IndexCastOp::create(nb, nl, i64, linalg::IndexOp::create(nb, nl, 2));
                        Value hit = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, args[0], slot);
                        Value add = arith::SelectOp::create(nb, nl, hit, at, scalar::intConst(nb, nl, i64, 0));
                        linalg::YieldOp::create(nb, nl, ValueRange{arith::AddIOp::create(nb, nl, args[1], add)});
                      })
                      .getResult(0);
  Value values = gatherGeneric(
      b, loc, rows, tb::empty(b, loc, RankedTensorType::get(slotsType.getShape(), element), slotDyn), ValueRange{indices},
      {b.getMultiDimIdentityMap(2)}, [&](OpBuilder &nb, Location nl, ArrayRef<Value> point, ValueRange args) {
        return SmallVector<Value>{point[0], arith::IndexCastOp::create(nb, nl, nb.getIndexType(), args[0])};
      });
  return {values, indices};
}

} // namespace

/// A host call of the runtime's check `name` on i64 `args` (index values
/// converted), declared in the module on first use.
static void callRuntimeCheck(OpBuilder &b, Location loc, llvm::StringRef name, ArrayRef<Value> args) {
  auto module = b.getInsertionBlock()->getParentOp()->getParentOfType<ModuleOp>();
  SmallVector<Value> operands;
  for (Value arg : args)
    operands.push_back(arg.getType().isIndex() ? arith::IndexCastOp::create(b, loc, b.getI64Type(), arg).getResult()
                                               : arg);
  auto fn = module.lookupSymbol<func::FuncOp>(name);
  if (!fn) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToEnd(module.getBody());
    SmallVector<Type> types(operands.size(), b.getI64Type());
    fn = func::FuncOp::create(b, loc, name, b.getFunctionType(types, {}));
    fn.setPrivate();
  }
  auto call = func::CallOp::create(b, loc, fn, operands);
  call->setAttr(moe::kHostCallAttrName, b.getUnitAttr()); // a GPU program calls it from the host
}

Value mlir::moe::onnx_import::clampIndex(OpBuilder &b, Location l, Value i, Value size) {
  Value wrapped = arith::MaxSIOp::create(b, l, wrapIndex(b, l, i, size), scalar::constIndex(b, l, 0));
  return arith::MinSIOp::create(b, l, wrapped, arith::SubIOp::create(b, l, size, scalar::constIndex(b, l, 1)));
}

LogicalResult mlir::moe::onnx_import::checkOperandSize(NodeContext &ctx, OperandSizeRule rule, unsigned input,
                                                       int64_t dim, Value want, int64_t wantDim,
                                                       llvm::ArrayRef<Value> sizes) {
  int64_t got = ctx.inputType(input).getDimSize(dim);
  int64_t expected = cast<RankedTensorType>(want.getType()).getDimSize(wantDim);
  bool atMost = rule == OperandSizeRule::gatherElementsIndices || rule == OperandSizeRule::scatterElementsIndices;
  // Nothing read (an empty batch): any size passes.
  if (llvm::any_of(sizes, [](Value s) { return getConstantIntValue(s) == 0; }))
    return success();
  if (!ShapedType::isDynamic(got) && !ShapedType::isDynamic(expected)) {
    if (atMost ? got <= expected : got == expected)
      return success();
    const char *name = rule == OperandSizeRule::scatterNDUpdates || rule == OperandSizeRule::scatterElementsUpdates
                           ? "updates"
                           : "indices";
    InFlightDiagnostic diag = ctx.error() << name << " dimension " << dim << " has " << got << " elements, ";
    switch (rule) {
    case OperandSizeRule::scatterNDUpdates:
      diag << "but the indices and data give " << expected << " (updates must be indices.shape[:-1] + "
           << "data.shape[q:])";
      break;
    case OperandSizeRule::scatterElementsUpdates:
      diag << "but the indices have " << expected << " (updates must have the indices' shape)";
      break;
    default:
      diag << "more than the data's " << expected << " (off the axis, indices may not exceed the data)";
    }
    return failure();
  }
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Value gotSize = tb::dimSize(b, loc, ctx.input(input), dim), wantSize = tb::dimSize(b, loc, want, wantDim);
  Value reads = scalar::constIndex(b, loc, 1);
  for (Value s : sizes)
    reads = arith::MulIOp::create(b, loc, reads, s);
  Value nothingRead =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, reads, scalar::constIndex(b, loc, 0));
  wantSize = arith::SelectOp::create(b, loc, nothingRead, gotSize, wantSize);
  callRuntimeCheck(b, loc, "moeRuntimeCheckOperandSize",
                   {arith::ConstantIntOp::create(b, loc, b.getI64Type(), static_cast<int64_t>(rule)),
                    arith::ConstantIntOp::create(b, loc, b.getI64Type(), dim), gotSize, wantSize});
  return success();
}

LogicalResult mlir::moe::onnx_import::checkConstantIndices(NodeContext &ctx, unsigned input,
                                                           llvm::ArrayRef<int64_t> sizes, bool lastAxis) {
  const ConstantTensor *constant = ctx.constantInput ? ctx.constantInput(input) : nullptr;
  std::optional<llvm::SmallVector<int64_t>> values = constant ? constant->asInts() : std::nullopt;
  if (!values || sizes.empty())
    return success();
  for (auto [i, index] : llvm::enumerate(*values)) {
    int64_t size = sizes[lastAxis ? i % sizes.size() : 0];
    if (ShapedType::isDynamic(size) || (index >= -size && index < size))
      continue;
    return ctx.error() << "index " << index << " (element " << i << " of the constant indices) is outside [" << -size
                       << ", " << size << ") of the axis it indexes",
           failure();
  }
  return success();
}

void mlir::moe::onnx_import::checkTopKAtRunTime(OpBuilder &b, Location loc, int64_t k, Value length) {
  callRuntimeCheck(b, loc, "moeRuntimeCheckTopK", {arith::ConstantIntOp::create(b, loc, b.getI64Type(), k), length});
}

void mlir::moe::onnx_import::checkBroadcastAtRunTime(OpBuilder &b, Location loc, int64_t dim, Value got,
                                                      Value want) {
  callRuntimeCheck(b, loc, "moeRuntimeCheckBroadcast", {arith::ConstantIntOp::create(b, loc, b.getI64Type(), dim), got, want});
}

void mlir::moe::onnx_import::checkContractionAtRunTime(OpBuilder &b, Location loc, int64_t dim, Value got,
                                                        Value want) {
  callRuntimeCheck(b, loc, "moeRuntimeCheckContraction",
                   {arith::ConstantIntOp::create(b, loc, b.getI64Type(), dim), got, want});
}

void mlir::moe::onnx_import::checkSameSizeAtRunTime(OpBuilder &b, Location loc, int64_t dim, Value got, Value want) {
  callRuntimeCheck(b, loc, "moeRuntimeCheckSharedExpertView",
                   {arith::ConstantIntOp::create(b, loc, b.getI64Type(), dim), got, want});
}

namespace {

/// TopK along the last axis, sorted (ties: lower index first): values in
/// the input's type, indices as i64. Float inputs, largest first, take
/// moe.topk (its contract); other element types and smallest-first take the
/// ranked form (rankedTopK). With sorted = 0 the order is unspecified:
/// sorted is one.
Results convertTopK(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x || !isa<FloatType, IntegerType>(ctx.inputType(0).getElementType()) ||
      ctx.inputType(0).getElementType().isInteger(1))
    return ctx.error() << "X must be a float or integer tensor", failure();
  RankedTensorType type = ctx.inputType(0);
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.intAttr("axis", -1), type.getRank());
  if (failed(axis))
    return failure();
  // K read from X's own run-time size along the axis: a full sort
  // (torch.sort and argsort of a run-time length export so).
  bool fullSort = false;
  if (const ShapeVector *sizes = ctx.shapeInput(1); sizes && sizes->elements.size() == 1)
    if (auto size = dyn_cast<Value>(sizes->elements[0]))
      if (auto dim = size.getDefiningOp<tensor::DimOp>())
        fullSort = dim.getSource() == x && getConstantIntValue(dim.getIndex()) == std::optional<int64_t>(*axis);
  FailureOr<SmallVector<int64_t>> k =
      fullSort ? FailureOr<SmallVector<int64_t>>(SmallVector<int64_t>{ShapedType::kDynamic}) : ctx.constantInts(1, "K");
  if (failed(k))
    return failure();
  if (*axis != type.getRank() - 1)
    return ctx.error() << "only TopK along the last axis is supported", failure();
  int64_t n = type.getShape().back();
  if (!fullSort && ((*k)[0] < 1 || (!ShapedType::isDynamic(n) && (*k)[0] > n)))
    return ctx.error() << "K = " << (*k)[0] << " is out of range for " << type, failure();
  // A constant K over an axis whose size only the run knows (an expert's
  // top-C tokens): the run checks K against it, and its call fails if larger.
  if (!fullSort && ShapedType::isDynamic(n))
    checkTopKAtRunTime(ctx.b, ctx.loc, (*k)[0], tb::dimSize(ctx.b, ctx.loc, x, type.getRank() - 1));

  if (fullSort && !ShapedType::isDynamic(n))
    (*k)[0] = n;
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  OpFoldResult length = tb::sizesOf(b, loc, x).back();
  ArrayRef<int64_t> lead = type.getShape().drop_back();
  int64_t leading = llvm::any_of(lead, ShapedType::isDynamic)
                        ? ShapedType::kDynamic
                        : std::accumulate(lead.begin(), lead.end(), int64_t(1), std::multiplies<int64_t>());
  // [leading, n] rows, static where the leading sizes are (with n known
  // only at run time they are: checked above); the leading axes collapsed
  // into one whatever their sizes.
  SmallVector<ReassociationIndices> rowAxes(1);
  for (int64_t d = 0; d + 1 < type.getRank(); ++d)
    rowAxes[0].push_back(d);
  rowAxes.push_back({type.getRank() - 1});
  Value rows = type.getRank() == 2               ? x
               : !ShapedType::isDynamic(leading) ? tb::reshapeToSizes(b, loc, x, {b.getIndexAttr(leading), length})
                                                 : tensor::CollapseShapeOp::create(b, loc, x, rowAxes).getResult();
  int64_t t = cast<RankedTensorType>(rows.getType()).getDimSize(0);
  bool largest = ctx.intAttr("largest", 1) != 0;
  Value values, indices;
  if (isa<FloatType>(type.getElementType()) && largest && !ShapedType::isDynamic((*k)[0])) {
    rows = tb::castTensor(b, loc, rows, b.getF32Type());
    auto topk = mlir::moe::TopKOp::create(b, loc, RankedTensorType::get({t, (*k)[0]}, b.getF32Type()),
                                          RankedTensorType::get({t, (*k)[0]}, b.getI32Type()), rows, Value(),
                                          b.getI64IntegerAttr((*k)[0]));
    values = tb::castTensor(b, loc, topk.getWeights(), type.getElementType());
    indices = tb::castTensor(b, loc, topk.getIndices(), b.getI64Type());
  } else {
    std::tie(values, indices) = rankedTopK(b, loc, rows, (*k)[0], largest);
  }
  OpFoldResult slots = ShapedType::isDynamic((*k)[0]) ? length : OpFoldResult(b.getIndexAttr((*k)[0]));
  if (type.getRank() == 1) {
    values = tb::reshapeToSizes(b, loc, values, {slots});
    indices = tb::reshapeToSizes(b, loc, indices, {slots});
  } else if (type.getRank() != 2) {
    SmallVector<int64_t> shape(type.getShape());
    shape.back() = (*k)[0];
    // Leading sizes from X, the last one K.
    SmallVector<OpFoldResult> sizes;
    for (int64_t d = 0; d + 1 < type.getRank(); ++d)
      sizes.push_back(ShapedType::isDynamic(shape[d]) ? OpFoldResult(tb::dimSize(b, loc, x, d))
                                                      : OpFoldResult(b.getIndexAttr(shape[d])));
    sizes.push_back(slots);
    bool severalDynamic = llvm::count_if(shape, ShapedType::isDynamic) > 1;
    auto expand = [&](Value v) -> Value {
      // (upstream's expand-strided-metadata fails on an expand_shape group
      // of several dynamic sizes: reshapeToSizes gathers instead)
      if (severalDynamic)
        return tb::reshapeToSizes(b, loc, v, sizes);
      auto vt = cast<RankedTensorType>(v.getType());
      SmallVector<ReassociationIndices> groups(1);
      for (int64_t d = 0; d + 1 < type.getRank(); ++d)
        groups[0].push_back(d);
      groups.push_back({type.getRank() - 1});
      return tensor::ExpandShapeOp::create(b, loc, RankedTensorType::get(shape, vt.getElementType()), v, groups,
                                           sizes)
          .getResult();
    };
    values = expand(values);
    indices = expand(indices);
  }
  return SmallVector<Value>{values, indices};
}

/// ArgMax / ArgMin along `axis` (keepdims, select_last_index) in one pass
/// keeping each row's best value and its index. A NaN wins over numbers, the
/// first NaN over later ones, as in numpy and PyTorch.
Results convertArgExtreme(NodeContext &ctx, bool largest) {
  if (failed(ctx.expectInputs(1, false)))
    return failure();
  Value x = ctx.input(0);
  RankedTensorType type = ctx.inputType(0);
  Type element = type.getElementType();
  if (!isa<FloatType, IntegerType>(element) || element.isInteger(1) || type.getRank() == 0)
    return ctx.error() << "data must be a float or integer tensor of rank 1 or more, not " << type, failure();
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.intAttr("axis", 0), type.getRank());
  if (failed(axis))
    return failure();
  if (type.getDimSize(*axis) == 0)
    return ctx.error() << "the reduced axis " << *axis << " is empty", failure();
  bool lastIndex = ctx.intAttr("select_last_index", 0) != 0;
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  int64_t rank = type.getRank();
  SmallVector<int64_t> shape(type.getShape());
  shape[*axis] = 1;
  SmallVector<Value> dynamic;
  for (int64_t d = 0; d < rank; ++d)
    if (ShapedType::isDynamic(shape[d]))
      dynamic.push_back(tb::dimSize(b, loc, x, d));
  auto valueType = RankedTensorType::get(shape, element);
  auto indexType = RankedTensorType::get(shape, b.getI64Type());
  TypedAttr start;
  if (auto f = dyn_cast<FloatType>(element))
    start = b.getFloatAttr(f, largest ? -std::numeric_limits<double>::infinity()
                                      : std::numeric_limits<double>::infinity());
  else
    start = b.getIntegerAttr(element, largest ? APInt::getSignedMinValue(element.getIntOrFloatBitWidth())
                                              : APInt::getSignedMaxValue(element.getIntOrFloatBitWidth()));
  auto fill = [&](RankedTensorType t, TypedAttr v) {
    Value c = arith::ConstantOp::create(b, loc, v);
    return linalg::FillOp::create(b, loc, c, tb::empty(b, loc, t, dynamic)).getResult(0);
  };
  Value bestValues = fill(valueType, start), bestIndices = fill(indexType, b.getI64IntegerAttr(0));
  MLIRContext *mc = b.getContext();
  SmallVector<AffineExpr> outExprs;
  SmallVector<utils::IteratorType> iters;
  for (int64_t d = 0; d < rank; ++d) {
    outExprs.push_back(d == *axis ? getAffineConstantExpr(0, mc) : getAffineDimExpr(d, mc));
    iters.push_back(d == *axis ? utils::IteratorType::reduction : utils::IteratorType::parallel);
  }
  AffineMap out = AffineMap::get(rank, 0, outExprs, mc);
  int64_t reduced = *axis;
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{valueType, indexType}, ValueRange{x}, ValueRange{bestValues, bestIndices},
      ArrayRef<AffineMap>{b.getMultiDimIdentityMap(rank), out, out}, iters,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value v = args[0], best = args[1];
        Value i = arith::IndexCastOp::create(nb, nl, nb.getI64Type(), linalg::IndexOp::create(nb, nl, reduced));
        Value better;
        if (isa<FloatType>(element)) {
          using P = arith::CmpFPredicate;
          P order = largest ? (lastIndex ? P::OGE : P::OGT) : (lastIndex ? P::OLE : P::OLT);
          Value ordered = arith::CmpFOp::create(nb, nl, order, v, best);
          Value vNaN = arith::CmpFOp::create(nb, nl, P::UNO, v, v);
          Value bestNumber = arith::CmpFOp::create(nb, nl, P::ORD, best, best);
          // A number beats a number by the order; a NaN beats a number, and
          // a later NaN an earlier one only with select_last_index.
          Value byOrder = arith::AndIOp::create(nb, nl, ordered, bestNumber);
          Value byNaN = arith::AndIOp::create(nb, nl, vNaN, lastIndex ? Value(vNaN) : bestNumber);
          better = arith::OrIOp::create(nb, nl, byOrder, byNaN);
        } else {
          using P = arith::CmpIPredicate;
          P order = largest ? (lastIndex ? P::sge : P::sgt) : (lastIndex ? P::sle : P::slt);
          better = arith::CmpIOp::create(nb, nl, order, v, best);
        }
        linalg::YieldOp::create(nb, nl,
                                ValueRange{arith::SelectOp::create(nb, nl, better, v, best),
                                           arith::SelectOp::create(nb, nl, better, i, args[2])});
      });
  Value indices = generic.getResult(1);
  if (!ctx.intAttr("keepdims", 1)) {
    SmallVector<OpFoldResult> sizes;
    for (auto [d, size] : llvm::enumerate(tb::sizesOf(b, loc, indices)))
      if (static_cast<int64_t>(d) != reduced)
        sizes.push_back(size);
    indices = tb::reshapeToSizes(b, loc, indices, sizes);
  }
  return SmallVector<Value>{indices};
}

/// OneHot(indices, depth, values = [off, on], axis): depth inserted at
/// `axis`; negative indices count from the end, out-of-range ones give an
/// all-off row (as the spec says).
Results convertOneHot(NodeContext &ctx) {
  Value indices = ctx.input(0), values = ctx.input(2);
  FailureOr<SmallVector<int64_t>> depth = ctx.constantInts(1, "depth");
  if (!indices || !values || failed(depth))
    return failure();
  RankedTensorType indexType = ctx.inputType(0);
  int64_t rank = indexType.getRank() + 1;
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.intAttr("axis", -1), rank);
  if (failed(axis))
    return failure();
  if (ctx.inputType(2).getNumElements() != 2)
    return ctx.error() << "values must hold [off, on]", failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  int64_t d = (*depth)[0];
  SmallVector<int64_t> shape(indexType.getShape());
  shape.insert(shape.begin() + *axis, d);
  SmallVector<Value> dynamic;
  for (int64_t i = 0; i < indexType.getRank(); ++i)
    if (indexType.isDynamicDim(i))
      dynamic.push_back(tb::dimSize(b, loc, indices, i));
  Type element = ctx.inputType(2).getElementType();
  auto resultType = RankedTensorType::get(shape, element);
  MLIRContext *mctx = b.getContext();
  SmallVector<AffineExpr> indexExprs;
  for (int64_t i = 0; i < rank; ++i)
    if (i != *axis)
      indexExprs.push_back(getAffineDimExpr(i, mctx));
  Value flatValues = tb::reshape(b, loc, values, {2});
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{resultType}, ValueRange{indices}, ValueRange{tb::empty(b, loc, resultType, dynamic)},
      ArrayRef<AffineMap>{AffineMap::get(rank, 0, indexExprs, mctx), b.getMultiDimIdentityMap(rank)},
      SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value i = arith::IndexCastOp::create(nb, nl, nb.getIndexType(), args[0]);
        Value negative = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, i, scalar::constIndex(nb, nl, 0));
        i = arith::SelectOp::create(nb, nl, negative, arith::AddIOp::create(nb, nl, i, scalar::constIndex(nb, nl, d)), i);
        Value hot = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, i, linalg::IndexOp::create(nb, nl, *axis));
        Value pick = arith::SelectOp::create(nb, nl, hot, scalar::constIndex(nb, nl, 1), scalar::constIndex(nb, nl, 0));
        linalg::YieldOp::create(nb, nl, ValueRange{tensor::ExtractOp::create(nb, nl, flatValues, pick)});
      });
  return SmallVector<Value>{generic.getResult(0)};
}

/// GatherND(data, indices) with batch_dims = 0: out[p, s] = data[indices[p,
/// :q], s], the result indices.shape[:-1] + data.shape[q:]; negative
/// indices count from the end, out-of-range ones are clamped (as Gather).
Results convertGatherND(NodeContext &ctx) {
  Value data = ctx.input(0), indices = ctx.input(1);
  if (!data || !indices)
    return ctx.error() << "data and indices are required", failure();
  if (ctx.intAttr("batch_dims", 0) != 0)
    return ctx.error() << "batch_dims = " << ctx.intAttr("batch_dims", 0) << " is not supported (only 0)",
           failure();
  RankedTensorType dataType = ctx.inputType(0), indexType = ctx.inputType(1);
  int64_t q = indexType.getRank() > 0 ? indexType.getShape().back() : ShapedType::kDynamic;
  if (!isa<IntegerType>(indexType.getElementType()) || ShapedType::isDynamic(q) || q < 1 ||
      q > dataType.getRank())
    return ctx.error() << "indices must be integers whose last dimension is a static size in [1, "
                       << dataType.getRank() << "], got " << indexType,
           failure();
  if (failed(checkConstantIndices(ctx, 1, dataType.getShape().take_front(q), /*lastAxis=*/true)))
    return failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  int64_t points = indexType.getRank() - 1;
  SmallVector<int64_t> shape(indexType.getShape().drop_back());
  llvm::append_range(shape, dataType.getShape().drop_front(q));
  SmallVector<Value> dynamic;
  for (auto [d, size] : llvm::enumerate(shape)) {
    int64_t di = static_cast<int64_t>(d);
    if (ShapedType::isDynamic(size))
      dynamic.push_back(di < points ? tb::dimSize(b, loc, indices, di) : tb::dimSize(b, loc, data, di - points + q));
  }
  SmallVector<Value> dataSizes;
  for (int64_t d = 0; d < q; ++d)
    dataSizes.push_back(tb::dimSize(b, loc, data, d));
  auto resultType = RankedTensorType::get(shape, dataType.getElementType());
  return SmallVector<Value>{gatherGeneric(
      b, loc, data, tb::empty(b, loc, resultType, dynamic), ValueRange{}, {},
      [&](OpBuilder &nb, Location nl, ArrayRef<Value> point, ValueRange) {
        SmallVector<Value> at;
        for (int64_t j = 0; j < q; ++j) {
          SmallVector<Value> idx(point.take_front(points));
          idx.push_back(scalar::constIndex(nb, nl, j));
          at.push_back(clampIndex(nb, nl, tensor::ExtractOp::create(nb, nl, indices, idx), dataSizes[j]));
        }
        llvm::append_range(at, point.drop_front(points));
        return at;
      })};
}

/// Trilu(input, k = 0, upper = 1): the last two dimensions' upper (j - i >=
/// k) or lower (j - i <= k) triangle kept, the rest 0 (causal masks).
Results convertTrilu(NodeContext &ctx) {
  Value input = ctx.input(0);
  if (!input)
    return ctx.error() << "input is required", failure();
  RankedTensorType type = ctx.inputType(0);
  if (type.getRank() < 2)
    return ctx.error() << "input must have rank >= 2, got " << type, failure();
  int64_t k = 0;
  if (ctx.input(1)) {
    const ConstantTensor *constant = ctx.constantInput(1);
    std::optional<SmallVector<int64_t>> given = constant ? constant->asInts() : std::nullopt;
    if (!given || given->size() != 1)
      return ctx.error() << "k must be a constant scalar", failure();
    k = (*given)[0];
  }
  bool upper = ctx.intAttr("upper", 1) != 0;
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  int64_t rank = type.getRank();
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{type}, ValueRange{input}, ValueRange{tb::emptyLike(b, loc, input, type.getElementType())},
      ArrayRef<AffineMap>{b.getMultiDimIdentityMap(rank), b.getMultiDimIdentityMap(rank)},
      SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value i = linalg::IndexOp::create(nb, nl, rank - 2), j = linalg::IndexOp::create(nb, nl, rank - 1);
        Value diagonal = arith::SubIOp::create(nb, nl, j, i);
        Value keep = arith::CmpIOp::create(nb, nl, upper ? arith::CmpIPredicate::sge : arith::CmpIPredicate::sle,
                                           diagonal, scalar::constIndex(nb, nl, k));
        Value zero = arith::ConstantOp::create(nb, nl, nb.getZeroAttr(args[0].getType()));
        linalg::YieldOp::create(nb, nl, ValueRange{arith::SelectOp::create(nb, nl, keep, args[0], zero).getResult()});
      });
  return SmallVector<Value>{generic.getResult(0)};
}

} // namespace

Value mlir::moe::onnx_import::wrapIndex(OpBuilder &b, Location l, Value i, Value size) {
  i = arith::IndexCastOp::create(b, l, b.getIndexType(), i);
  Value negative = arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, i, scalar::constIndex(b, l, 0));
  return arith::SelectOp::create(b, l, negative, arith::AddIOp::create(b, l, i, size), i);
}

void mlir::moe::onnx_import::addIndexingConverters(std::vector<OpConverter> &converters) {
  auto add = [&](StringRef op, ConvertFn fn) { converters.push_back({"", op, std::move(fn)}); };
  add("Gather", convertGather);
  add("GatherElements", convertGatherElements);
  add("Slice", convertSlice);
  add("Concat", convertConcat);
  add("Split", convertSplit);
  add("Expand", convertExpand);
  add("Tile", convertTile);
  add("Shape", convertShape);
  add("Size", convertSize);
  add("Range", convertRange);
  add("Where", convertWhere);
  add("TopK", convertTopK);
  add("ArgMax", [](NodeContext &ctx) { return convertArgExtreme(ctx, /*largest=*/true); });
  add("ArgMin", [](NodeContext &ctx) { return convertArgExtreme(ctx, /*largest=*/false); });
  add("OneHot", convertOneHot);
  add("GatherND", convertGatherND);
  add("Trilu", convertTrilu);
}
