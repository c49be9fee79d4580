//===- ConvolutionOp.cpp - ONNX Conv as one sum of products ---------------===//
//
// Conv over N-D inputs X [N, C, D1..Dn] with weights W [M, C / group,
// k1..kn] (bias B [M]): X zero-padded once, then each output point
// y[n, m, o] = sum over c, k of X[n, g(m) * C/group + c, o * s + k * d] *
// W[m, c, k], g(m) = m floordiv (M / group), as one linalg.generic
// accumulating in f32. Models carry it outside their MoE blocks (LFM2's
// short causal convolutions, audio front ends).
//
//===----------------------------------------------------------------------===//

#include "OnnxImporter.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;
namespace tb = mlir::moe::tensor_builders;

namespace {

Results convertConv(NodeContext &ctx) {
  if (failed(ctx.expectInputs(2, true)))
    return failure();
  Value x = ctx.input(0), w = ctx.input(1);
  RankedTensorType xType = ctx.inputType(0), wType = ctx.inputType(1);
  Type element = xType.getElementType();
  int64_t rank = xType.getRank(), spatial = rank - 2;
  if (!isa<FloatType>(element) || wType.getElementType() != element)
    return ctx.error() << "X and W must be float tensors of one type, not " << xType << " and " << wType, failure();
  if (rank < 3 || wType.getRank() != rank || !wType.hasStaticShape())
    return ctx.error() << "X must be [N, C, D1, ...] and W [M, C / group, k1, ...] with static sizes, not " << xType
                       << " and " << wType,
           failure();
  int64_t group = ctx.intAttr("group", 1), channels = xType.getDimSize(1), maps = wType.getDimSize(0),
          perGroup = wType.getDimSize(1);
  if (group < 1 || ShapedType::isDynamic(channels) || channels != perGroup * group || maps % group != 0)
    return ctx.error() << "group = " << group << " does not split " << channels << " input channels into groups of "
                       << perGroup << " and " << maps << " output channels evenly",
           failure();
  auto listAttr = [&](llvm::StringRef name, int64_t fill, size_t size) -> FailureOr<SmallVector<int64_t>> {
    std::optional<SmallVector<int64_t>> v = ctx.intsAttr(name);
    if (!v)
      return SmallVector<int64_t>(size, fill);
    if (v->size() != size)
      return ctx.error() << name << " has " << v->size() << " values, not " << size, failure();
    return *v;
  };
  FailureOr<SmallVector<int64_t>> strides = listAttr("strides", 1, spatial),
                                  dilations = listAttr("dilations", 1, spatial),
                                  pads = listAttr("pads", 0, 2 * spatial);
  if (failed(strides) || failed(dilations) || failed(pads))
    return failure();
  if (std::optional<SmallVector<int64_t>> kernel = ctx.intsAttr("kernel_shape");
      kernel && ArrayRef<int64_t>(*kernel) != wType.getShape().drop_front(2))
    return ctx.error() << "kernel_shape does not match W " << wType, failure();
  if (llvm::any_of(*strides, [](int64_t s) { return s < 1; }) ||
      llvm::any_of(*dilations, [](int64_t d) { return d < 1; }) ||
      llvm::any_of(*pads, [](int64_t p) { return p < 0; }))
    return ctx.error() << "strides and dilations must be positive and pads not negative", failure();
  std::string autoPad = ctx.stringAttr("auto_pad", "NOTSET");
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  for (int64_t i = 0; i < spatial; ++i) {
    int64_t in = xType.getDimSize(2 + i), span = (wType.getDimSize(2 + i) - 1) * (*dilations)[i] + 1;
    if (autoPad == "VALID") {
      (*pads)[i] = (*pads)[spatial + i] = 0;
    } else if (autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER") {
      if (ShapedType::isDynamic(in))
        return ctx.error() << "auto_pad = " << autoPad << " needs static spatial sizes, not " << xType, failure();
      int64_t out = (in + (*strides)[i] - 1) / (*strides)[i];
      int64_t total = std::max<int64_t>((out - 1) * (*strides)[i] + span - in, 0);
      int64_t small = total / 2, large = total - small;
      (*pads)[i] = autoPad == "SAME_UPPER" ? small : large;
      (*pads)[spatial + i] = autoPad == "SAME_UPPER" ? large : small;
    } else if (autoPad != "NOTSET") {
      return ctx.error() << "auto_pad = '" << autoPad << "' is not NOTSET, VALID, SAME_UPPER or SAME_LOWER", failure();
    }
  }
  // X zero-padded once.
  Value padded = x;
  if (llvm::any_of(*pads, [](int64_t p) { return p != 0; })) {
    SmallVector<int64_t> low(rank, 0), high(rank, 0), shape(xType.getShape());
    for (int64_t i = 0; i < spatial; ++i) {
      low[2 + i] = (*pads)[i];
      high[2 + i] = (*pads)[spatial + i];
      if (!ShapedType::isDynamic(shape[2 + i]))
        shape[2 + i] += low[2 + i] + high[2 + i];
    }
    Value zero = arith::ConstantOp::create(b, loc, element, b.getFloatAttr(element, 0.0));
    SmallVector<OpFoldResult> lowSizes, highSizes;
    for (int64_t d = 0; d < rank; ++d) {
      lowSizes.push_back(b.getIndexAttr(low[d]));
      highSizes.push_back(b.getIndexAttr(high[d]));
    }
    padded = tensor::PadOp::create(b, loc, RankedTensorType::get(shape, element), x, lowSizes, highSizes, zero)
                 .getResult();
  }
  // Output sizes: (padded - span) / stride + 1 along each spatial dim.
  SmallVector<int64_t> outShape = {xType.getDimSize(0), maps};
  SmallVector<Value> dynamic;
  if (xType.isDynamicDim(0))
    dynamic.push_back(tb::dimSize(b, loc, x, 0));
  for (int64_t i = 0; i < spatial; ++i) {
    int64_t span = (wType.getDimSize(2 + i) - 1) * (*dilations)[i] + 1;
    int64_t in = cast<RankedTensorType>(padded.getType()).getDimSize(2 + i);
    if (!ShapedType::isDynamic(in)) {
      if (in < span)
        return ctx.error() << "the kernel (span " << span << ") is larger than the padded input (" << in
                           << ") along spatial dim " << i,
               failure();
      outShape.push_back((in - span) / (*strides)[i] + 1);
      continue;
    }
    // A run-time size: max(padded - span, -stride) / stride + 1 (0 when the
    // kernel does not fit).
    Value size = tb::dimSize(b, loc, padded, 2 + i);
    Value left = arith::MaxSIOp::create(b, loc, arith::SubIOp::create(b, loc, size, arith::ConstantIndexOp::create(b, loc, span)),
                                        arith::ConstantIndexOp::create(b, loc, -(*strides)[i]));
    Value count = arith::AddIOp::create(
        b, loc, arith::DivSIOp::create(b, loc, left, arith::ConstantIndexOp::create(b, loc, (*strides)[i])),
        arith::ConstantIndexOp::create(b, loc, 1));
    outShape.push_back(ShapedType::kDynamic);
    dynamic.push_back(count);
  }
  // Loops: n, m, o_1..o_s (parallel), c, k_1..k_s (reduction).
  MLIRContext *context = b.getContext();
  int64_t loops = 2 + 2 * spatial + 1;
  auto dim = [&](int64_t i) { return getAffineDimExpr(i, context); };
  AffineExpr n = dim(0), m = dim(1), c = dim(2 + spatial);
  SmallVector<AffineExpr> xIdx = {n, m.floorDiv(maps / group) * perGroup + c}, wIdx = {m, c}, yIdx = {n, m};
  for (int64_t i = 0; i < spatial; ++i) {
    AffineExpr o = dim(2 + i), k = dim(3 + spatial + i);
    xIdx.push_back(o * (*strides)[i] + k * (*dilations)[i]);
    wIdx.push_back(k);
    yIdx.push_back(o);
  }
  SmallVector<utils::IteratorType> iterators(2 + spatial, utils::IteratorType::parallel);
  iterators.append(1 + spatial, utils::IteratorType::reduction);
  SmallVector<AffineMap> affineMaps = {AffineMap::get(loops, 0, xIdx, context),
                                       AffineMap::get(loops, 0, wIdx, context),
                                       AffineMap::get(loops, 0, yIdx, context)};
  auto yType = RankedTensorType::get(outShape, element);
  Value y = tb::sumOfProducts(b, loc, ValueRange{padded, w}, affineMaps, yType, dynamic, iterators);
  if (Value bias = ctx.input(2)) {
    RankedTensorType biasType = ctx.inputType(2);
    if (biasType.getRank() != 1 || biasType.getDimSize(0) != maps || biasType.getElementType() != element)
      return ctx.error() << "B must be [" << maps << "] of " << element << ", not " << biasType, failure();
    SmallVector<int64_t> column(rank, 1);
    column[1] = maps;
    FailureOr<Value> sum = tb::elementwise(b, loc, {y, tb::reshape(b, loc, bias, column)}, element,
                                           [](OpBuilder &nb, Location nl, ValueRange v) -> Value {
                                             Value f32 = arith::AddFOp::create(
                                                 nb, nl, tb::castScalar(nb, nl, v[0], nb.getF32Type()),
                                                 tb::castScalar(nb, nl, v[1], nb.getF32Type()));
                                             return tb::castScalar(nb, nl, f32, v[0].getType());
                                           });
    if (failed(sum))
      return failure();
    y = *sum;
  }
  return SmallVector<Value>{y};
}

} // namespace

void mlir::moe::onnx_import::addConvolutionConverter(std::vector<OpConverter> &converters) {
  converters.push_back({"", "Conv", convertConv});
}
