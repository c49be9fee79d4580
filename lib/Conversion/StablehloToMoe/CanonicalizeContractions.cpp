//===- CanonicalizeContractions.cpp - expert projections in one form ------===//
//
// The expert matchers read a projection as a dot_general of the tokens with
// a weight. Code writes two other forms of the same products, which this
// file rewrites into that one, each exactly (the same products summed in
// the same order):
//
//  * PyTorch-style batched matmuls broadcast the tokens over the experts
//    (`torch.bmm(x.expand(E, T, H), w)`, `jnp.matmul(jnp.broadcast_to(x,
//    (E, T, H)), w)`): a batch dim that exists only by broadcasting one
//    operand becomes a free dim of the other operand, and a transpose puts
//    the result's dims back in their order;
//  * a transposed operand with no free dims (the gate of
//    `einsum("et,eth->th", gate.T, outs)`) is read through the transpose;
//  * a strided slice of a projection's output features (gpt-oss's
//    interleaved gate/up, `h[..., ::2]` and `h[..., 1::2]`) is the
//    projection with the same slice of the weight's output dim;
//  * a unit dim added to an operand, left free by the dot and dropped from
//    its result by a reshape (`jnp.matmul(gate[:, None, :], outs)[:, 0]`)
//    is not added.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// A result dim of a dot_general named by where it comes from: batch pair
/// `i`, or dim `i` of the lhs or rhs operand as the original op sees it.
struct DimTag {
  enum Kind { batch, lhs, rhs } kind;
  int64_t index;
  bool operator==(const DimTag &o) const { return kind == o.kind && index == o.index; }
};

SmallVector<int64_t> freeDims(int64_t rank, ArrayRef<int64_t> batch, ArrayRef<int64_t> contracting) {
  SmallVector<int64_t> dims;
  for (int64_t d = 0; d < rank; ++d)
    if (!llvm::is_contained(batch, d) && !llvm::is_contained(contracting, d))
      dims.push_back(d);
  return dims;
}

/// dot_general(broadcast(src), other) batched over dims that only the
/// broadcast makes: those dims become free dims of `other`. Returns whether
/// it rewrote `dot`.
bool unbroadcastBatchOperand(shlo::DotGeneralOp dot) {
  shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
  for (bool onLhs : {true, false}) {
    Value side = onLhs ? dot.getLhs() : dot.getRhs();
    auto spread = side.getDefiningOp<shlo::BroadcastInDimOp>();
    if (!spread)
      continue;
    auto srcType = cast<RankedTensorType>(spread.getOperand().getType());
    auto sideType = cast<RankedTensorType>(side.getType());
    ArrayRef<int64_t> kept = spread.getBroadcastDimensions();
    if (!srcType.hasStaticShape() || !sideType.hasStaticShape())
      continue;
    // Every source dim keeps its size (no size-1 dims stretched).
    bool plain = true;
    for (auto [s, r] : llvm::enumerate(kept))
      plain &= srcType.getShape()[s] == sideType.getShape()[r];
    ArrayRef<int64_t> sideBatch = onLhs ? d.getLhsBatchingDimensions() : d.getRhsBatchingDimensions();
    SmallVector<int64_t> made;
    for (int64_t r = 0; r < sideType.getRank(); ++r)
      if (!llvm::is_contained(kept, r))
        made.push_back(r);
    if (!plain || made.empty() || !llvm::all_of(made, [&](int64_t r) { return llvm::is_contained(sideBatch, r); }))
      continue;
    // The source's dim for each of the side's dims it keeps.
    auto srcDim = [&](int64_t r) { return static_cast<int64_t>(llvm::find(kept, r) - kept.begin()); };
    SmallVector<int64_t> keptPairs, lhsBatch, rhsBatch, lhsContract, rhsContract;
    for (auto [i, r] : llvm::enumerate(sideBatch))
      if (llvm::is_contained(kept, r))
        keptPairs.push_back(i);
    for (int64_t i : keptPairs) {
      lhsBatch.push_back(onLhs ? srcDim(d.getLhsBatchingDimensions()[i]) : d.getLhsBatchingDimensions()[i]);
      rhsBatch.push_back(onLhs ? d.getRhsBatchingDimensions()[i] : srcDim(d.getRhsBatchingDimensions()[i]));
    }
    for (int64_t c : d.getLhsContractingDimensions())
      lhsContract.push_back(onLhs ? srcDim(c) : c);
    for (int64_t c : d.getRhsContractingDimensions())
      rhsContract.push_back(onLhs ? c : srcDim(c));
    // Tags of the original result's dims, then of the new one's.
    auto lhsRank = cast<RankedTensorType>(dot.getLhs().getType()).getRank();
    auto rhsRank = cast<RankedTensorType>(dot.getRhs().getType()).getRank();
    SmallVector<DimTag> before, after;
    for (int64_t i = 0, e = d.getLhsBatchingDimensions().size(); i < e; ++i)
      before.push_back({DimTag::batch, i});
    for (int64_t r : freeDims(lhsRank, d.getLhsBatchingDimensions(), d.getLhsContractingDimensions()))
      before.push_back({DimTag::lhs, r});
    for (int64_t r : freeDims(rhsRank, d.getRhsBatchingDimensions(), d.getRhsContractingDimensions()))
      before.push_back({DimTag::rhs, r});
    for (int64_t i : keptPairs)
      after.push_back({DimTag::batch, i});
    // A free dim of the new op: a source dim of the broadcast side, or a
    // dim of the other side, which is a removed batch pair's or its own.
    auto tagOf = [&](bool lhsOperand, int64_t dim) -> DimTag {
      if (lhsOperand == onLhs)
        return {onLhs ? DimTag::lhs : DimTag::rhs, kept[dim]};
      ArrayRef<int64_t> otherBatch = lhsOperand ? d.getLhsBatchingDimensions() : d.getRhsBatchingDimensions();
      if (auto *it = llvm::find(otherBatch, dim); it != otherBatch.end())
        return {DimTag::batch, it - otherBatch.begin()};
      return {lhsOperand ? DimTag::lhs : DimTag::rhs, dim};
    };
    Value newLhs = onLhs ? spread.getOperand() : dot.getLhs();
    Value newRhs = onLhs ? dot.getRhs() : spread.getOperand();
    int64_t newLhsRank = cast<RankedTensorType>(newLhs.getType()).getRank();
    int64_t newRhsRank = cast<RankedTensorType>(newRhs.getType()).getRank();
    for (int64_t r : freeDims(newLhsRank, lhsBatch, lhsContract))
      after.push_back(tagOf(true, r));
    for (int64_t r : freeDims(newRhsRank, rhsBatch, rhsContract))
      after.push_back(tagOf(false, r));
    auto resultType = cast<RankedTensorType>(dot.getType());
    SmallVector<int64_t> perm, newShape(after.size());
    for (const DimTag &t : before)
      perm.push_back(llvm::find(after, t) - after.begin());
    for (auto [i, p] : llvm::enumerate(perm))
      newShape[p] = resultType.getShape()[i];
    OpBuilder b(dot);
    auto dims = shlo::DotDimensionNumbersAttr::get(dot.getContext(), lhsBatch, rhsBatch, lhsContract, rhsContract);
    Value product = shlo::DotGeneralOp::create(b, dot.getLoc(), RankedTensorType::get(newShape, resultType.getElementType()),
                                               newLhs, newRhs, dims, dot.getPrecisionConfigAttr());
    dot.replaceAllUsesWith(transposeOf(b, dot.getLoc(), product, perm));
    dot.erase();
    return true;
  }
  return false;
}

/// dot_general of transpose(a) where every dim of the transpose is batched
/// or contracted: the same dot of `a` with the dim numbers permuted (the
/// result's dims do not move: an operand without free dims adds none).
void foldFreelessTranspose(shlo::DotGeneralOp dot) {
  shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
  for (bool onLhs : {true, false}) {
    auto t = (onLhs ? dot.getLhs() : dot.getRhs()).getDefiningOp<shlo::TransposeOp>();
    ArrayRef<int64_t> batch = onLhs ? d.getLhsBatchingDimensions() : d.getRhsBatchingDimensions();
    ArrayRef<int64_t> contract = onLhs ? d.getLhsContractingDimensions() : d.getRhsContractingDimensions();
    if (!t || batch.size() + contract.size() != t.getPermutation().size())
      continue;
    auto through = [&](ArrayRef<int64_t> dims) {
      return llvm::map_to_vector(dims, [&](int64_t r) { return t.getPermutation()[r]; });
    };
    SmallVector<int64_t> newBatch = through(batch), newContract = through(contract);
    auto dims = shlo::DotDimensionNumbersAttr::get(
        dot.getContext(), onLhs ? newBatch : SmallVector<int64_t>(d.getLhsBatchingDimensions()),
        onLhs ? SmallVector<int64_t>(d.getRhsBatchingDimensions()) : newBatch,
        onLhs ? newContract : SmallVector<int64_t>(d.getLhsContractingDimensions()),
        onLhs ? SmallVector<int64_t>(d.getRhsContractingDimensions()) : newContract);
    dot.setDotDimensionNumbersAttr(dims);
    dot->setOperand(onLhs ? 0 : 1, t.getOperand());
    if (t->use_empty())
      t.erase();
    return;
  }
}

/// slice(dot_general(x, w)) with a stride only along output features that
/// come from one free dim of `w`: the dot of x with that slice of w.
void sliceWeightInstead(shlo::SliceOp slice) {
  auto dot = slice.getOperand().getDefiningOp<shlo::DotGeneralOp>();
  if (!dot)
    return;
  auto type = cast<RankedTensorType>(dot.getType());
  shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
  int64_t sliced = -1;
  for (int64_t r = 0; r < type.getRank(); ++r) {
    bool whole = slice.getStartIndices()[r] == 0 && slice.getLimitIndices()[r] == type.getShape()[r] &&
                 slice.getStrides()[r] == 1;
    if (!whole) {
      if (sliced >= 0 || slice.getStrides()[r] == 1)
        return; // contiguous cuts are jnp.split's, which the matchers read
      sliced = r;
    }
  }
  if (sliced < 0)
    return;
  // The result's dims: batch, lhs free, rhs free.
  auto lhsRank = cast<RankedTensorType>(dot.getLhs().getType()).getRank();
  auto rhsRank = cast<RankedTensorType>(dot.getRhs().getType()).getRank();
  SmallVector<int64_t> lhsFree = freeDims(lhsRank, d.getLhsBatchingDimensions(), d.getLhsContractingDimensions());
  SmallVector<int64_t> rhsFree = freeDims(rhsRank, d.getRhsBatchingDimensions(), d.getRhsContractingDimensions());
  int64_t firstRhsFree = d.getLhsBatchingDimensions().size() + lhsFree.size();
  if (sliced < firstRhsFree)
    return;
  int64_t wDim = rhsFree[sliced - firstRhsFree];
  auto wType = cast<RankedTensorType>(dot.getRhs().getType());
  SmallVector<int64_t> starts(rhsRank, 0), limits(wType.getShape()), strides(rhsRank, 1);
  starts[wDim] = slice.getStartIndices()[sliced];
  limits[wDim] = slice.getLimitIndices()[sliced];
  strides[wDim] = slice.getStrides()[sliced];
  SmallVector<int64_t> shape(wType.getShape());
  shape[wDim] = cast<RankedTensorType>(slice.getType()).getShape()[sliced];
  OpBuilder b(slice);
  Value w = shlo::SliceOp::create(b, slice.getLoc(), RankedTensorType::get(shape, wType.getElementType()), dot.getRhs(),
                                  b.getDenseI64ArrayAttr(starts), b.getDenseI64ArrayAttr(limits),
                                  b.getDenseI64ArrayAttr(strides));
  Value product = shlo::DotGeneralOp::create(b, dot.getLoc(), slice.getType(), dot.getLhs(), w,
                                             d, dot.getPrecisionConfigAttr());
  slice.replaceAllUsesWith(product);
  slice.erase();
  if (dot.use_empty())
    dot.erase();
}

/// reshape(dot_general(a', b)) where a' is `a` with a unit dim added that
/// the dot leaves free and the reshape drops again (`jnp.matmul(gate[:,
/// None, :], outs)[:, 0]`, torch.bmm of a row): the dot of `a` itself.
void dropUnitFreeDim(shlo::ReshapeOp reshape) {
  auto dot = reshape.getOperand().getDefiningOp<shlo::DotGeneralOp>();
  if (!dot || !dot->hasOneUse())
    return;
  shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
  for (bool onLhs : {true, false}) {
    Value wide = onLhs ? dot.getLhs() : dot.getRhs();
    auto b = wide.getDefiningOp<shlo::BroadcastInDimOp>();
    auto wideType = cast<RankedTensorType>(wide.getType());
    if (!b || cast<RankedTensorType>(b.getOperand().getType()).getRank() != wideType.getRank() - 1 ||
        !llvm::is_sorted(b.getBroadcastDimensions()))
      continue;
    // The added dim: the one the broadcast does not map an operand dim to.
    int64_t unit = 0;
    for (int64_t dim : b.getBroadcastDimensions())
      unit += dim == unit;
    ArrayRef<int64_t> batch = onLhs ? d.getLhsBatchingDimensions() : d.getRhsBatchingDimensions();
    ArrayRef<int64_t> contract = onLhs ? d.getLhsContractingDimensions() : d.getRhsContractingDimensions();
    if (wideType.getDimSize(unit) != 1 || llvm::is_contained(batch, unit) || llvm::is_contained(contract, unit))
      continue;
    // Its operand's sizes must be the broadcast's own (no size-1 dim grows).
    auto narrowType = cast<RankedTensorType>(b.getOperand().getType());
    bool same = true;
    for (auto [i, dim] : llvm::enumerate(b.getBroadcastDimensions()))
      same &= narrowType.getDimSize(i) == wideType.getDimSize(dim);
    if (!same)
      continue;
    auto shift = [&](ArrayRef<int64_t> dims) {
      return llvm::map_to_vector(dims, [&](int64_t x) { return x > unit ? x - 1 : x; });
    };
    auto dims = shlo::DotDimensionNumbersAttr::get(
        dot.getContext(), onLhs ? shift(batch) : SmallVector<int64_t>(d.getLhsBatchingDimensions()),
        onLhs ? SmallVector<int64_t>(d.getRhsBatchingDimensions()) : shift(batch),
        onLhs ? shift(contract) : SmallVector<int64_t>(d.getLhsContractingDimensions()),
        onLhs ? SmallVector<int64_t>(d.getRhsContractingDimensions()) : shift(contract));
    // The result without that free dim must be what the reshape gives.
    int64_t lhsRank = cast<RankedTensorType>(dot.getLhs().getType()).getRank();
    SmallVector<int64_t> lhsFree = freeDims(lhsRank, d.getLhsBatchingDimensions(), d.getLhsContractingDimensions());
    SmallVector<int64_t> rhsFree =
        freeDims(cast<RankedTensorType>(dot.getRhs().getType()).getRank(), d.getRhsBatchingDimensions(),
                 d.getRhsContractingDimensions());
    int64_t at = d.getLhsBatchingDimensions().size() +
                 (onLhs ? llvm::find(lhsFree, unit) - lhsFree.begin()
                        : lhsFree.size() + (llvm::find(rhsFree, unit) - rhsFree.begin()));
    SmallVector<int64_t> shape(cast<RankedTensorType>(dot.getType()).getShape());
    shape.erase(shape.begin() + at);
    if (ArrayRef<int64_t>(shape) != cast<RankedTensorType>(reshape.getType()).getShape())
      continue;
    OpBuilder builder(reshape);
    Value product = shlo::DotGeneralOp::create(builder, dot.getLoc(), reshape.getType(),
                                               onLhs ? b.getOperand() : dot.getLhs(),
                                               onLhs ? dot.getRhs() : b.getOperand(), dims,
                                               dot.getPrecisionConfigAttr());
    reshape.replaceAllUsesWith(product);
    reshape.erase();
    dot.erase();
    if (b->use_empty())
      b.erase();
    return;
  }
}

} // namespace

void mlir::moe::stablehlo_raise::canonicalizeContractions(Operation *root) {
  SmallVector<shlo::DotGeneralOp> dots;
  root->walk([&](shlo::DotGeneralOp dot) { dots.push_back(dot); });
  for (shlo::DotGeneralOp dot : dots)
    if (!unbroadcastBatchOperand(dot))
      foldFreelessTranspose(dot);
  SmallVector<shlo::SliceOp> slices;
  root->walk([&](shlo::SliceOp slice) { slices.push_back(slice); });
  for (shlo::SliceOp slice : slices)
    sliceWeightInstead(slice);
  SmallVector<shlo::ReshapeOp> reshapes;
  root->walk([&](shlo::ReshapeOp reshape) { reshapes.push_back(reshape); });
  for (shlo::ReshapeOp reshape : reshapes)
    dropUnitFreeDim(reshape);
}
