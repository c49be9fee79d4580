//===- UnflattenSlotPairs.cpp - flat (token, slot) rows read as [T, k] ----===//
//
// Decode-style JAX code often flattens the top-k's (token, slot) pairs into
// one axis of N = T * k rows before dispatch:
//
//   tok = jnp.repeat(jnp.arange(T), k)  (or jnp.arange(T * k) // k);  e = idx.reshape(-1)
//   o   = ffn(x[tok], w1[e], w3[e], w2[e]) * vals.reshape(-1, 1)   [N, H]
//   y   = jax.ops.segment_sum(o, tok, T)   (or o.reshape(T, k, H).sum(1))
//
// Row n of every such value is pair (n / k, n % k), so each value has a
// twin [T, k, ...] with the same elements (a reshape apart), and the ops
// between them compute the twins as well: elementwise ops, broadcasts that
// keep the rows, row gathers at the pairs' indices (w[e] gathers at idx
// itself; x[tok] is x broadcast over the slots), batched dot_generals over
// the rows. The sums back to tokens, a segment_sum (scatter-add into zeros
// at each pair's token) or a reshape to [T, k, H], then read the twins: a
// sum over the slot dim, or the twin itself. The matchers then see the
// per-slot form `einsum("td,tkdf->tkf", x, w1[idx])` they read. Exact: the
// same products, summed per token over its k slots (in slot order, where
// the scatter's order was the pairs').
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

#include "mlir/IR/Matchers.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

class PairUnflattener {
public:
  explicit PairUnflattener(Operation *at) : b(at) {}

  /// The [T, k, ...] twin of `v` [T * k, ...], built before `b`'s insertion
  /// point's op; null when some op on the way has no twin.
  Value twin(Value v, int depth = 0);

  /// Whether `t` is the pairs' tokens [T, k] (t[i, j] = i), maybe with a
  /// trailing unit dim and JAX's negative-index wrap.
  bool isPairTokens(Value t) const;

  /// Erases the ops built for a failed rewrite.
  void discard() {
    for (Operation *op : llvm::reverse(built))
      if (op->use_empty())
        op->erase();
    built.clear();
  }

  int64_t tokens = -1, slots = -1;
  /// A row gather was read through (the flat dispatch these rewrites are
  /// for; other flattened code is left as written).
  bool gathered = false;
  OpBuilder b;

private:
  template <typename Op, typename... Args>
  Op make(Location loc, Args &&...args) {
    Op op = Op::create(b, loc, std::forward<Args>(args)...);
    built.push_back(op);
    return op;
  }
  /// The twin type of `t` [T * k, r...]: [T, k, r...].
  RankedTensorType twinType(Type t) const {
    auto type = cast<RankedTensorType>(t);
    SmallVector<int64_t> shape = {tokens, slots};
    shape.append(type.getShape().begin() + 1, type.getShape().end());
    return RankedTensorType::get(shape, type.getElementType());
  }
  bool isPairRows(Type t) const {
    auto type = dyn_cast<RankedTensorType>(t);
    return type && type.hasStaticShape() && type.getRank() >= 1 && tokens > 0 &&
           type.getDimSize(0) == tokens * slots;
  }
  Value twinOfReshape(shlo::ReshapeOp reshape);
  Value twinOfBroadcast(shlo::BroadcastInDimOp spread, int depth);
  Value twinOfGather(shlo::GatherOp gather, int depth);
  Value twinOfDot(shlo::DotGeneralOp dot, int depth);
  Value twinOfElementwise(Operation *op, int depth);
  Value alwaysInRangeFill(Operation *op, int depth);
  Value twinOfTokenQuotient(Value v);

  DenseMap<Value, Value> twins;
  SmallVector<Operation *> built;
};

/// reshape(src [T, k, r...] -> [T * k, r'...]) with r and r' the same
/// count of elements: src reshaped to [T, k, r'...]. The first such
/// reshape fixes T and k.
Value PairUnflattener::twinOfReshape(shlo::ReshapeOp reshape) {
  auto src = cast<RankedTensorType>(reshape.getOperand().getType());
  auto dst = cast<RankedTensorType>(reshape.getType());
  if (!src.hasStaticShape() || !dst.hasStaticShape() || src.getRank() < 2 || dst.getRank() < 1 ||
      src.getDimSize(0) * src.getDimSize(1) != dst.getDimSize(0))
    return nullptr;
  if (tokens < 0) {
    tokens = src.getDimSize(0);
    slots = src.getDimSize(1);
  }
  if (src.getDimSize(0) != tokens || src.getDimSize(1) != slots)
    return nullptr;
  RankedTensorType type = twinType(dst);
  if (type == src)
    return reshape.getOperand();
  return make<shlo::ReshapeOp>(reshape.getLoc(), type, reshape.getOperand());
}

/// broadcast_in_dim keeping the rows in dim 0 (or a scalar, or a source
/// of one row): the same broadcast of the twin over [T, k, ...].
Value PairUnflattener::twinOfBroadcast(shlo::BroadcastInDimOp spread, int depth) {
  auto srcType = cast<RankedTensorType>(spread.getOperand().getType());
  ArrayRef<int64_t> dims = spread.getBroadcastDimensions();
  RankedTensorType type = twinType(spread.getType());
  SmallVector<int64_t> shifted;
  for (int64_t d : dims)
    shifted.push_back(d == 0 ? 0 : d + 1);
  // A scalar, or rows of one element broadcast over all pairs.
  bool rowless = srcType.getRank() == 0 || dims.empty() || dims[0] != 0 || srcType.getDimSize(0) == 1;
  if (rowless) {
    if (srcType.getRank() > 0 && (dims.empty() || dims[0] == 0) && srcType.getDimSize(0) != 1)
      return nullptr;
    return make<shlo::BroadcastInDimOp>(spread.getLoc(), type, spread.getOperand(), b.getDenseI64ArrayAttr(shifted));
  }
  if (!isPairRows(srcType))
    return nullptr;
  Value src = twin(spread.getOperand(), depth + 1);
  if (!src)
    return nullptr;
  SmallVector<int64_t> twinDims = {0, 1};
  for (int64_t d : dims.drop_front())
    twinDims.push_back(d + 1);
  // A twin that is a reshape appending unit dims to [T, k] broadcasts from
  // [T, k] itself (the per-slot weights `vals[..., None]` as written).
  if (auto reshape = src.getDefiningOp<shlo::ReshapeOp>()) {
    auto inner = cast<RankedTensorType>(reshape.getOperand().getType());
    auto outer = cast<RankedTensorType>(src.getType());
    bool appendsUnits = inner.getRank() >= 2 && inner.getRank() < outer.getRank() &&
                        inner.getShape() == outer.getShape().take_front(inner.getRank()) &&
                        llvm::all_of(outer.getShape().drop_front(inner.getRank()), [](int64_t d) { return d == 1; });
    if (appendsUnits) {
      src = reshape.getOperand();
      twinDims.resize(inner.getRank());
    }
  }
  return make<shlo::BroadcastInDimOp>(spread.getLoc(), type, src, b.getDenseI64ArrayAttr(twinDims));
}

/// A gather whose indices hold one start per row (the rows in dim 0 of the
/// indices and of the result): the gather at the twin indices, its offset
/// dims one further; x[tok] at the pairs' tokens is x broadcast over the
/// slots.
Value PairUnflattener::twinOfGather(shlo::GatherOp gather, int depth) {
  shlo::GatherDimensionNumbersAttr d = gather.getDimensionNumbers();
  auto indicesType = cast<RankedTensorType>(gather.getStartIndices().getType());
  if (!isPairRows(indicesType) || llvm::is_contained(d.getOffsetDims(), 0) || !d.getOperandBatchingDims().empty() ||
      !d.getStartIndicesBatchingDims().empty() || d.getIndexVectorDim() == 0)
    return nullptr;
  Value indices = twin(gather.getStartIndices(), depth + 1);
  if (!indices)
    return nullptr;
  RankedTensorType type = twinType(gather.getType());
  auto operandType = cast<RankedTensorType>(gather.getOperand().getType());
  // x[tok] (rows of a [T, ...] operand at each pair's token).
  if (isPairTokens(indices) && operandType.hasStaticShape() && operandType.getDimSize(0) == tokens &&
      d.getCollapsedSliceDims() == ArrayRef<int64_t>{0} && d.getStartIndexMap() == ArrayRef<int64_t>{0} &&
      gather.getSliceSizes().drop_front() == operandType.getShape().drop_front() &&
      llvm::equal(d.getOffsetDims(), llvm::seq<int64_t>(1, operandType.getRank()))) {
    SmallVector<int64_t> dims = {0};
    for (int64_t i = 2; i <= operandType.getRank(); ++i)
      dims.push_back(i);
    gathered = true;
    return make<shlo::BroadcastInDimOp>(gather.getLoc(), type, gather.getOperand(), b.getDenseI64ArrayAttr(dims));
  }
  gathered = true;
  SmallVector<int64_t> offsets;
  for (int64_t o : d.getOffsetDims())
    offsets.push_back(o + 1);
  auto dims = shlo::GatherDimensionNumbersAttr::get(b.getContext(), offsets, d.getCollapsedSliceDims(), {}, {},
                                                    d.getStartIndexMap(), d.getIndexVectorDim() + 1);
  return make<shlo::GatherOp>(gather.getLoc(), type, gather.getOperand(), indices, dims, gather.getSliceSizesAttr(),
                              gather.getIndicesAreSortedAttr());
}

/// A dot_general batched over the rows on both sides (their first batch
/// dims): batched over (T, k) instead.
Value PairUnflattener::twinOfDot(shlo::DotGeneralOp dot, int depth) {
  shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
  if (d.getLhsBatchingDimensions().empty() || d.getLhsBatchingDimensions()[0] != 0 ||
      d.getRhsBatchingDimensions()[0] != 0 || !isPairRows(dot.getLhs().getType()) ||
      !isPairRows(dot.getRhs().getType()))
    return nullptr;
  Value lhs = twin(dot.getLhs(), depth + 1), rhs = twin(dot.getRhs(), depth + 1);
  if (!lhs || !rhs)
    return nullptr;
  auto shift = [](ArrayRef<int64_t> dims, bool pair) {
    SmallVector<int64_t> out;
    if (pair)
      out = {0, 1};
    for (int64_t x : pair ? dims.drop_front() : dims)
      out.push_back(x + 1);
    return out;
  };
  auto dims = shlo::DotDimensionNumbersAttr::get(
      b.getContext(), shift(d.getLhsBatchingDimensions(), true), shift(d.getRhsBatchingDimensions(), true),
      shift(d.getLhsContractingDimensions(), false), shift(d.getRhsContractingDimensions(), false));
  return make<shlo::DotGeneralOp>(dot.getLoc(), twinType(dot.getType()), lhs, rhs, dims, dot.getPrecisionConfigAttr());
}

/// An elementwise op (same shape operands and result): the op on the twins.
Value PairUnflattener::twinOfElementwise(Operation *op, int depth) {
  SmallVector<Value> operands;
  for (Value in : op->getOperands()) {
    if (!isPairRows(in.getType()))
      return nullptr;
    Value t = twin(in, depth + 1);
    if (!t)
      return nullptr;
    operands.push_back(t);
  }
  OperationState state(op->getLoc(), op->getName());
  state.addOperands(operands);
  state.addTypes(twinType(op->getResult(0).getType()));
  state.addAttributes(op->getAttrs());
  Operation *made = b.create(state);
  built.push_back(made);
  return made->getResult(0);
}

/// arange(T * k) // k (jnp's floor division): each pair's token, iota(T)
/// broadcast over the slots.
Value PairUnflattener::twinOfTokenQuotient(Value v) {
  auto type = cast<RankedTensorType>(v.getType());
  if (tokens < 0 || type.getRank() != 1 || !isa<IntegerType>(type.getElementType()))
    return nullptr;
  NoMatch quiet;
  FailureOr<Value> dividend = floorDivided(v, slots, quiet);
  auto iota = succeeded(dividend) ? dividend->getDefiningOp<shlo::IotaOp>() : nullptr;
  if (!iota || !isPairRows(iota.getType()))
    return nullptr;
  Value t = make<shlo::IotaOp>(iota.getLoc(), RankedTensorType::get({tokens}, type.getElementType()),
                               b.getI64IntegerAttr(0));
  return make<shlo::BroadcastInDimOp>(iota.getLoc(), twinType(type), t, b.getDenseI64ArrayAttr({0}));
}

/// select(in range, gather, NaN), JAX's fill mode (jnp.take), around a
/// gather whose indices are always in range (top-k ids, or the pairs'
/// tokens into a [T, ...] operand): the gather's twin.
Value PairUnflattener::alwaysInRangeFill(Operation *op, int depth) {
  auto select = dyn_cast<shlo::SelectOp>(op);
  auto gather = select ? select.getOnTrue().getDefiningOp<shlo::GatherOp>() : nullptr;
  if (!gather || !isNaNSplat(select.getOnFalse()) ||
      gather.getDimensionNumbers().getStartIndexMap().size() != 1)
    return nullptr;
  int64_t dim = gather.getDimensionNumbers().getStartIndexMap()[0];
  int64_t size = cast<RankedTensorType>(gather.getOperand().getType()).getDimSize(dim);
  if (ShapedType::isDynamic(size) || !isInRangeTest(select.getPred(), gather.getStartIndices(), size))
    return nullptr;
  // Top-k ids index [0, E): in range where the operand has E rows or more.
  if (chlo::TopKOp topk = topKOfIndices(gather.getStartIndices())) {
    if (cast<RankedTensorType>(topk.getOperand().getType()).getShape().back() > size)
      return nullptr;
  } else {
    Value indices = isPairRows(gather.getStartIndices().getType()) ? twin(gather.getStartIndices(), depth + 1)
                                                                    : nullptr;
    if (!indices || !isPairTokens(indices) || size < tokens)
      return nullptr;
  }
  return twin(gather.getResult(), depth + 1);
}

Value PairUnflattener::twin(Value v, int depth) {
  if (depth > 48)
    return nullptr;
  if (Value known = twins.lookup(v))
    return known;
  Operation *def = v.getDefiningOp();
  if (!def || def->getNumResults() != 1)
    return nullptr;
  Value result;
  if (Value t = twinOfTokenQuotient(v))
    result = t;
  else if (Value gathered = alwaysInRangeFill(def, depth))
    result = gathered;
  else if (auto reshape = dyn_cast<shlo::ReshapeOp>(def))
    result = twinOfReshape(reshape);
  else if (auto spread = dyn_cast<shlo::BroadcastInDimOp>(def))
    result = tokens > 0 ? twinOfBroadcast(spread, depth) : nullptr;
  else if (auto gather = dyn_cast<shlo::GatherOp>(def))
    result = twinOfGather(gather, depth);
  else if (auto dot = dyn_cast<shlo::DotGeneralOp>(def))
    result = twinOfDot(dot, depth);
  else if ((def->hasTrait<OpTrait::SameOperandsAndResultShape>() || isa<shlo::SelectOp>(def)) &&
           def->getNumOperands() >= 1 && def->getNumRegions() == 0)
    result = twinOfElementwise(def, depth);
  // A rows value whose twin cannot be known before T and k are.
  if (result && !isPairRows(v.getType()))
    return nullptr;
  if (result)
    twins[v] = result;
  return result;
}

bool PairUnflattener::isPairTokens(Value t) const {
  auto type = cast<RankedTensorType>(t.getType());
  // A trailing unit dim (an index vector of one component).
  if (auto reshape = t.getDefiningOp<shlo::ReshapeOp>();
      reshape && type.getRank() == 3 && type.getDimSize(2) == 1)
    t = reshape.getOperand();
  else if (auto spread = t.getDefiningOp<shlo::BroadcastInDimOp>();
           spread && type.getRank() == 3 && type.getDimSize(2) == 1 &&
           spread.getBroadcastDimensions() == ArrayRef<int64_t>{0, 1})
    t = spread.getOperand();
  t = unwrapIndex(t);
  auto spread = t.getDefiningOp<shlo::BroadcastInDimOp>();
  auto iota = spread ? spread.getOperand().getDefiningOp<shlo::IotaOp>() : nullptr;
  auto iotaType = iota ? cast<RankedTensorType>(iota.getType()) : nullptr;
  auto spreadType = spread ? cast<RankedTensorType>(spread.getType()) : nullptr;
  return iota && iotaType.getRank() == 1 && iotaType.getDimSize(0) == tokens &&
         spread.getBroadcastDimensions() == ArrayRef<int64_t>{0} && spreadType.getRank() == 2 &&
         spreadType.getDimSize(0) == tokens && spreadType.getDimSize(1) == slots;
}

/// segment_sum(rows, tok, T): scatter-add of rows [N, ...] into zeros
/// [T, ...] at each pair's token -> the sum over the twin's slots.
bool unflattenSegmentSum(shlo::ScatterOp scatter) {
  if (scatter.getInputs().size() != 1 || !isAddBody(scatter.getUpdateComputation()) ||
      !isSplat(scatter.getInputs()[0], 0))
    return false;
  shlo::ScatterDimensionNumbersAttr d = scatter.getScatterDimensionNumbers();
  auto updatesType = cast<RankedTensorType>(scatter.getUpdates()[0].getType());
  auto resultType = cast<RankedTensorType>(scatter.getResult(0).getType());
  if (d.getInsertedWindowDims() != ArrayRef<int64_t>{0} || d.getScatterDimsToOperandDims() != ArrayRef<int64_t>{0} ||
      d.getIndexVectorDim() != 1 || !d.getInputBatchingDims().empty() ||
      !llvm::equal(d.getUpdateWindowDims(), llvm::seq<int64_t>(1, updatesType.getRank())) ||
      updatesType.getShape().drop_front() != resultType.getShape().drop_front() || !resultType.hasStaticShape())
    return false;
  int64_t tokens = resultType.getDimSize(0), pairsCount = updatesType.getDimSize(0);
  if (tokens < 1 || pairsCount % tokens != 0 || pairsCount == tokens)
    return false;
  PairUnflattener pairs(scatter);
  pairs.tokens = tokens;
  pairs.slots = pairsCount / tokens;
  Value rows = pairs.twin(scatter.getUpdates()[0]);
  Value indices = rows ? pairs.twin(scatter.getScatterIndices()) : nullptr;
  if (!rows || !indices || !pairs.isPairTokens(indices) || !pairs.gathered) {
    pairs.discard();
    return false;
  }
  scatter.getResult(0).replaceAllUsesWith(sumOverDim(pairs.b, scatter.getLoc(), rows, /*dim=*/1));
  return true;
}

/// reshape(rows [T * k, ...] -> [T, k, ...]) -> the twin itself.
bool unflattenSlotView(shlo::ReshapeOp reshape) {
  auto type = cast<RankedTensorType>(reshape.getType());
  auto src = cast<RankedTensorType>(reshape.getOperand().getType());
  if (!type.hasStaticShape() || type.getRank() < 3 || src.getRank() != type.getRank() - 1 ||
      src.getDimSize(0) != type.getDimSize(0) * type.getDimSize(1) ||
      src.getShape().drop_front() != type.getShape().drop_front(2) || reshape.getOperand().getDefiningOp<shlo::ReshapeOp>())
    return false;
  PairUnflattener pairs(reshape);
  pairs.tokens = type.getDimSize(0);
  pairs.slots = type.getDimSize(1);
  Value rows = pairs.twin(reshape.getOperand());
  if (!rows || rows.getType() != type || !pairs.gathered) {
    pairs.discard();
    return false;
  }
  reshape.getResult().replaceAllUsesWith(rows);
  return true;
}

} // namespace

void mlir::moe::stablehlo_raise::unflattenSlotPairs(Operation *root) {
  SmallVector<Operation *> sinks;
  root->walk([&](Operation *op) {
    if (isa<shlo::ScatterOp, shlo::ReshapeOp>(op))
      sinks.push_back(op);
  });
  for (Operation *op : sinks) {
    if (auto scatter = dyn_cast<shlo::ScatterOp>(op))
      unflattenSegmentSum(scatter);
    else if (auto reshape = dyn_cast<shlo::ReshapeOp>(op))
      unflattenSlotView(reshape);
  }
}
