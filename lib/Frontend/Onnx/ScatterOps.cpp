//===- ScatterOps.cpp - ScatterND and ScatterElements ---------------------===//
//
// A scatter copies its data, then applies the updates in order in one
// sequential loop (duplicates reduce deterministically: none, add, mul, max,
// min); negative indices count from the end, out-of-range ones are clamped
// (an error in ONNX; never a write outside the data). The updates' shape
// is checked against the indices and data: at import where the sizes are
// static, by the run otherwise.
//
//===----------------------------------------------------------------------===//

#include "OnnxImporter.h"
#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// `old (reduction) update` for ScatterND/ScatterElements.
FailureOr<std::function<Value(OpBuilder &, Location, Value, Value)>> scatterReduction(NodeContext &ctx) {
  std::string reduction = ctx.stringAttr("reduction", "none");
  bool isFloat = isa<FloatType>(ctx.inputType(0).getElementType());
  if (reduction == "none")
    return std::function<Value(OpBuilder &, Location, Value, Value)>(
        [](OpBuilder &, Location, Value, Value update) { return update; });
  if (reduction == "add")
    return std::function<Value(OpBuilder &, Location, Value, Value)>(
        [isFloat](OpBuilder &b, Location l, Value old, Value update) -> Value {
          return isFloat ? arith::AddFOp::create(b, l, old, update).getResult()
                         : arith::AddIOp::create(b, l, old, update).getResult();
        });
  if (reduction == "mul")
    return std::function<Value(OpBuilder &, Location, Value, Value)>(
        [isFloat](OpBuilder &b, Location l, Value old, Value update) -> Value {
          return isFloat ? arith::MulFOp::create(b, l, old, update).getResult()
                         : arith::MulIOp::create(b, l, old, update).getResult();
        });
  return ctx.error() << "reduction '" << reduction << "' is not supported (none, add, mul are)", failure();
}


/// A sequential loop over [0, count) carrying `init` (scatters apply their
/// updates in order, so duplicates reduce deterministically).
Value scatterLoop(OpBuilder &b, Location l, Value count, Value init,
                  function_ref<Value(OpBuilder &, Location, Value, Value)> body) {
  Value lower = scalar::constIndex(b, l, 0), step = scalar::constIndex(b, l, 1);
  auto loop = scf::ForOp::create(b, l, lower, count, step, ValueRange{init});
  OpBuilder::InsertionGuard guard(b);
  Block *block = loop.getBody();
  if (!block->empty() && block->back().hasTrait<OpTrait::IsTerminator>())
    block->back().erase();
  b.setInsertionPointToEnd(block);
  Value next = body(b, l, loop.getInductionVar(), loop.getRegionIterArgs()[0]);
  scf::YieldOp::create(b, l, ValueRange{next});
  return loop.getResult(0);
}

Value product(OpBuilder &b, Location l, ArrayRef<Value> sizes) {
  Value p = scalar::constIndex(b, l, 1);
  for (Value s : sizes)
    p = arith::MulIOp::create(b, l, p, s);
  return p;
}


/// The operands every scatter takes, and its reduction.
struct ScatterArgs {
  Value data, indices, updates;
  std::function<Value(OpBuilder &, Location, Value, Value)> reduce;
  RankedTensorType dataType, indexType;
};

FailureOr<ScatterArgs> scatterArgs(NodeContext &ctx) {
  ScatterArgs args{ctx.input(0), ctx.input(1), ctx.input(2), {}, {}, {}};
  if (!args.data || !args.indices || !args.updates)
    return ctx.error() << "data, indices and updates are required", failure();
  args.dataType = ctx.inputType(0);
  args.indexType = ctx.inputType(1);
  auto reduce = scatterReduction(ctx);
  if (failed(reduce))
    return failure();
  args.reduce = *reduce;
  return args;
}

/// A scatter converter: `body` gets the node's checked operands.
ConvertFn scatter(Results (*body)(NodeContext &, const ScatterArgs &)) {
  return [body](NodeContext &ctx) -> Results {
    FailureOr<ScatterArgs> args = scatterArgs(ctx);
    if (failed(args))
      return failure();
    return body(ctx, *args);
  };
}

/// ScatterND(data, indices [..., q], updates): updates in order.
Results convertScatterND(NodeContext &ctx, const ScatterArgs &args) {
  Value data = args.data, indices = args.indices, updates = args.updates;
  RankedTensorType dataType = args.dataType, indexType = args.indexType;
  int64_t q = indexType.getShape().back();
  if (ShapedType::isDynamic(q) || q > dataType.getRank())
    return ctx.error() << "the last dimension of indices must be a static size <= the data's rank", failure();
  // updates = indices.shape[:-1] + data.shape[q:]: the loops below read
  // every such element of it.
  int64_t pointRank = indexType.getRank() - 1;
  auto updatesType = cast<RankedTensorType>(updates.getType());
  if (updatesType.getRank() != pointRank + dataType.getRank() - q)
    return ctx.error() << "updates " << updatesType << " must have rank " << pointRank + dataType.getRank() - q
                       << " (indices.shape[:-1] + data.shape[q:])",
           failure();
  // The elements read: indices.shape[:-1] times data.shape[q:].
  SmallVector<Value> readSizes;
  for (int64_t d = 0; d < pointRank; ++d)
    readSizes.push_back(tb::dimSize(ctx.b, ctx.loc, indices, d));
  for (int64_t d = q; d < dataType.getRank(); ++d)
    readSizes.push_back(tb::dimSize(ctx.b, ctx.loc, data, d));
  for (int64_t d = 0; d < updatesType.getRank(); ++d)
    if (failed(checkOperandSize(ctx, OperandSizeRule::scatterNDUpdates, 2, d, d < pointRank ? indices : data,
                                d < pointRank ? d : q + d - pointRank, readSizes)))
      return failure();
  if (failed(checkConstantIndices(ctx, 1, dataType.getShape().take_front(q), /*lastAxis=*/true)))
    return failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  SmallVector<Value> dataSizes, pointSizes, sliceSizes;
  for (int64_t d = 0; d < dataType.getRank(); ++d)
    dataSizes.push_back(tb::dimSize(b, loc, data, d));
  for (int64_t d = 0; d + 1 < indexType.getRank(); ++d)
    pointSizes.push_back(tb::dimSize(b, loc, indices, d));
  sliceSizes.assign(dataSizes.begin() + q, dataSizes.end());
  Value points = product(b, loc, pointSizes), slice = product(b, loc, sliceSizes);
  Value result = scatterLoop(b, loc, points, data, [&](OpBuilder &b1, Location l1, Value p, Value acc) {
    SmallVector<Value> at = scalar::unflattenIndex(b1, l1, p, pointSizes);
    SmallVector<Value> target;
    for (int64_t j = 0; j < q; ++j) {
      SmallVector<Value> idx(at);
      idx.push_back(scalar::constIndex(b1, l1, j));
      target.push_back(clampIndex(b1, l1, tensor::ExtractOp::create(b1, l1, indices, idx), dataSizes[j]));
    }
    return scatterLoop(b1, l1, slice, acc, [&](OpBuilder &b2, Location l2, Value s, Value acc2) {
      SmallVector<Value> within = scalar::unflattenIndex(b2, l2, s, sliceSizes);
      SmallVector<Value> dataIdx(target), updateIdx(at);
      llvm::append_range(dataIdx, within);
      llvm::append_range(updateIdx, within);
      Value update = tensor::ExtractOp::create(b2, l2, updates, updateIdx);
      Value old = tensor::ExtractOp::create(b2, l2, acc2, dataIdx);
      return tensor::InsertOp::create(b2, l2, args.reduce(b2, l2, old, update), acc2, dataIdx).getResult();
    });
  });
  return SmallVector<Value>{result};
}

/// ScatterElements(data, indices, updates, axis): updates in order.
Results convertScatterElements(NodeContext &ctx, const ScatterArgs &args) {
  Value data = args.data, indices = args.indices, updates = args.updates;
  RankedTensorType dataType = args.dataType, indexType = args.indexType;
  FailureOr<int64_t> axis = ctx.normalizeAxis(ctx.intAttr("axis", 0), dataType.getRank());
  if (failed(axis) || indexType.getRank() != dataType.getRank())
    return ctx.error() << "indices must have the data's rank", failure();
  // updates shaped like the indices; off the axis, each update lands at
  // its own position in the data.
  if (cast<RankedTensorType>(updates.getType()).getRank() != indexType.getRank())
    return ctx.error() << "updates " << updates.getType() << " must have the shape of the indices " << indexType,
           failure();
  SmallVector<Value> indexSizes;
  for (int64_t d = 0; d < indexType.getRank(); ++d)
    indexSizes.push_back(tb::dimSize(ctx.b, ctx.loc, indices, d));
  for (int64_t d = 0; d < indexType.getRank(); ++d) {
    if (failed(checkOperandSize(ctx, OperandSizeRule::scatterElementsUpdates, 2, d, indices, d, indexSizes)))
      return failure();
    if (d != *axis &&
        failed(checkOperandSize(ctx, OperandSizeRule::scatterElementsIndices, 1, d, data, d, indexSizes)))
      return failure();
  }
  if (failed(checkConstantIndices(ctx, 1, {dataType.getDimSize(*axis)}, /*lastAxis=*/false)))
    return failure();
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  SmallVector<Value> sizes;
  for (int64_t d = 0; d < indexType.getRank(); ++d)
    sizes.push_back(tb::dimSize(b, loc, indices, d));
  Value axisSize = tb::dimSize(b, loc, data, *axis);
  Value result = scatterLoop(b, loc, product(b, loc, sizes), data, [&](OpBuilder &b1, Location l1, Value p, Value acc) {
    SmallVector<Value> at = scalar::unflattenIndex(b1, l1, p, sizes);
    SmallVector<Value> target(at);
    target[*axis] = clampIndex(b1, l1, tensor::ExtractOp::create(b1, l1, indices, at), axisSize);
    Value old = tensor::ExtractOp::create(b1, l1, acc, target);
    Value update = tensor::ExtractOp::create(b1, l1, updates, at);
    return tensor::InsertOp::create(b1, l1, args.reduce(b1, l1, old, update), acc, target).getResult();
  });
  return SmallVector<Value>{result};
}

} // namespace

void mlir::moe::onnx_import::addScatterConverters(std::vector<OpConverter> &converters) {
  converters.push_back({"", "ScatterND", scatter(convertScatterND)});
  converters.push_back({"", "ScatterElements", scatter(convertScatterElements)});
}
