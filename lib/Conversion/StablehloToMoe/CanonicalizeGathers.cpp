//===- CanonicalizeGathers.cpp - one spelling for "w[ids]" gathers -------===//
//
// JAX writes the same row gather of an expert stack, `w[e]` for run-time
// ids, in several ways: plain indexing gives one index per gathered row and
// collapses the expert dim; the same indexing under `jax.vmap` indexes every
// dim (zeros for the dims it keeps whole) and keeps a unit expert dim that a
// reshape drops. The matchers read the first; this file rewrites the others
// into it, keeping each gather's meaning exactly:
//
//  * an index component for a dim the gather takes whole selects nothing
//    (gather clamps each start so the slice fits: it is always 0), so it is
//    dropped from the start indices;
//  * a reshape that only drops unit dims of a gather's result, as many as
//    the gather has indexed unit-size slice dims kept as offsets, is the
//    gather with those dims collapsed.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

SmallVector<int64_t> nonUnitShape(ArrayRef<int64_t> shape) {
  return llvm::to_vector(llvm::make_filter_range(shape, [](int64_t d) { return d != 1; }));
}

/// Drops the index components of dims the gather takes whole; returns the
/// new gather, or null when there is none to drop.
shlo::GatherOp dropWholeDimIndices(shlo::GatherOp gather) {
  shlo::GatherDimensionNumbersAttr d = gather.getDimensionNumbers();
  auto operandType = cast<RankedTensorType>(gather.getOperand().getType());
  auto indicesType = cast<RankedTensorType>(gather.getStartIndices().getType());
  int64_t vectorDim = d.getIndexVectorDim();
  if (vectorDim >= indicesType.getRank() || !indicesType.hasStaticShape() || !operandType.hasStaticShape())
    return nullptr;
  ArrayRef<int64_t> map = d.getStartIndexMap();
  SmallVector<int64_t> kept, keptMap;
  for (auto [component, dim] : llvm::enumerate(map)) {
    bool whole = gather.getSliceSizes()[dim] == operandType.getDimSize(dim) &&
                 !llvm::is_contained(d.getCollapsedSliceDims(), dim) &&
                 !llvm::is_contained(d.getOperandBatchingDims(), dim);
    if (!whole) {
      kept.push_back(static_cast<int64_t>(component));
      keptMap.push_back(dim);
    }
  }
  if (kept.size() == map.size() || kept.empty())
    return nullptr;
  OpBuilder b(gather);
  Location loc = gather.getLoc();
  // Indices built by concatenating one component at a time (jax.vmap's
  // indexing) give their own pieces; others are sliced.
  auto concat = gather.getStartIndices().getDefiningOp<shlo::ConcatenateOp>();
  bool oneEach = concat && static_cast<int64_t>(concat.getDimension()) == vectorDim &&
                 concat.getInputs().size() == map.size();
  SmallVector<Value> pieces;
  for (int64_t component : kept) {
    if (oneEach) {
      pieces.push_back(concat.getInputs()[component]);
      continue;
    }
    SmallVector<int64_t> starts(indicesType.getRank(), 0), limits(indicesType.getShape()),
        strides(indicesType.getRank(), 1), shape(indicesType.getShape());
    starts[vectorDim] = component;
    limits[vectorDim] = component + 1;
    shape[vectorDim] = 1;
    pieces.push_back(shlo::SliceOp::create(b, loc, RankedTensorType::get(shape, indicesType.getElementType()),
                                           gather.getStartIndices(), b.getDenseI64ArrayAttr(starts),
                                           b.getDenseI64ArrayAttr(limits), b.getDenseI64ArrayAttr(strides)));
  }
  Value indices = pieces.front();
  if (pieces.size() > 1) {
    SmallVector<int64_t> shape(indicesType.getShape());
    shape[vectorDim] = static_cast<int64_t>(pieces.size());
    indices = shlo::ConcatenateOp::create(b, loc, RankedTensorType::get(shape, indicesType.getElementType()), pieces,
                                          static_cast<uint64_t>(vectorDim));
  }
  auto dims = shlo::GatherDimensionNumbersAttr::get(b.getContext(), d.getOffsetDims(), d.getCollapsedSliceDims(),
                                                    d.getOperandBatchingDims(), d.getStartIndicesBatchingDims(),
                                                    keptMap, vectorDim);
  auto rewritten = shlo::GatherOp::create(b, loc, gather.getType(), gather.getOperand(), indices, dims,
                                          gather.getSliceSizesAttr(), gather.getIndicesAreSortedAttr());
  gather.getResult().replaceAllUsesWith(rewritten.getResult());
  gather->erase();
  return rewritten;
}

/// reshape(gather) dropping the unit offset dims of the gather's indexed,
/// unit-size slice dims -> one gather collapsing them.
LogicalResult collapseIndexedUnitDims(shlo::ReshapeOp reshape) {
  auto gather = reshape.getOperand().getDefiningOp<shlo::GatherOp>();
  if (!gather)
    return failure();
  shlo::GatherDimensionNumbersAttr d = gather.getDimensionNumbers();
  auto resultType = cast<RankedTensorType>(gather.getType());
  auto reshaped = cast<RankedTensorType>(reshape.getType());
  if (!resultType.hasStaticShape() || !reshaped.hasStaticShape())
    return failure();
  // The operand dims behind the offset dims, in order.
  SmallVector<int64_t> offsetOperandDims;
  for (int64_t dim = 0; dim < static_cast<int64_t>(gather.getSliceSizes().size()); ++dim)
    if (!llvm::is_contained(d.getCollapsedSliceDims(), dim) && !llvm::is_contained(d.getOperandBatchingDims(), dim))
      offsetOperandDims.push_back(dim);
  if (offsetOperandDims.size() != d.getOffsetDims().size())
    return failure();
  SmallVector<int64_t> collapse, removedResultDims;
  for (auto [resultDim, operandDim] : llvm::zip(d.getOffsetDims(), offsetOperandDims))
    if (gather.getSliceSizes()[operandDim] == 1 && llvm::is_contained(d.getStartIndexMap(), operandDim)) {
      collapse.push_back(operandDim);
      removedResultDims.push_back(resultDim);
    }
  if (collapse.empty())
    return failure();
  // The reshape only drops unit dims, exactly as many as collapse.
  if (nonUnitShape(resultType.getShape()) != nonUnitShape(reshaped.getShape()) ||
      resultType.getRank() - reshaped.getRank() != static_cast<int64_t>(collapse.size()))
    return failure();
  SmallVector<int64_t> collapsed(d.getCollapsedSliceDims()), offsets;
  collapsed.append(collapse);
  llvm::sort(collapsed);
  for (int64_t o : d.getOffsetDims())
    if (!llvm::is_contained(removedResultDims, o))
      offsets.push_back(o - llvm::count_if(removedResultDims, [&](int64_t r) { return r < o; }));
  OpBuilder b(reshape);
  auto dims = shlo::GatherDimensionNumbersAttr::get(b.getContext(), offsets, collapsed, d.getOperandBatchingDims(),
                                                    d.getStartIndicesBatchingDims(), d.getStartIndexMap(),
                                                    d.getIndexVectorDim());
  auto rewritten = shlo::GatherOp::create(b, gather.getLoc(), reshaped, gather.getOperand(), gather.getStartIndices(),
                                          dims, gather.getSliceSizesAttr(), gather.getIndicesAreSortedAttr());
  reshape.getResult().replaceAllUsesWith(rewritten.getResult());
  reshape->erase();
  if (gather->use_empty())
    gather->erase();
  return success();
}

} // namespace

void mlir::moe::stablehlo_raise::canonicalizeGathers(Operation *root) {
  SmallVector<shlo::GatherOp> gathers;
  root->walk([&](shlo::GatherOp gather) { gathers.push_back(gather); });
  for (shlo::GatherOp gather : gathers) {
    if (shlo::GatherOp rewritten = dropWholeDimIndices(gather))
      gather = rewritten;
    for (Operation *user : llvm::make_early_inc_range(gather->getUsers()))
      if (auto reshape = dyn_cast<shlo::ReshapeOp>(user))
        if (succeeded(collapseIndexedUnitDims(reshape)))
          break; // the gather may be gone
  }
}
