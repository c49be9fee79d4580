//===- SlotSums.cpp - sums over top-k slots written slot by slot ----------===//
//
// Code that handles a token's experts one at a time (GShard's repeated
// argmax, unrolled slot loops) sums the slots' contributions term by term:
//
//   combine = (g1 / d)[:, None] * one_hot(i1, E) + (g2 / d)[:, None] * one_hot(i2, E)
//   gate_e  = g1 * (i1 == e) + g2 * (i2 == e)
//   d       = g1 + g2 + eps
//
// with i_j, g_j column j of [..., K] tensors of a top-k's slots (its
// indices, values, or weights computed from them). When the K terms are one
// expression f of columns 0 .. K-1 (each term reading one column), the sum
// is reduce_sum(f lifted to [..., K, ...], slot dim): the form of a gate
// written over all slots at once, which the layer matchers read. f's
// elementwise ops, broadcasts and reshapes are lifted by inserting the slot
// dim after the columns' leading dims; values the terms share are
// broadcast along it. The sum adds the same numbers in the same order: two
// terms in either order, more only as ((t0 + t1) + t2) + ... in column order.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/SmallBitVector.h"

#include "mlir/IR/Iterators.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// Column j of a [..., K] tensor: slice [..., j:j+1], maybe reshaped to [...].
struct Column {
  Value matrix;
  int64_t j = 0;
  bool keepsUnitDim = true;
};

std::optional<Column> columnOf(Value v) {
  bool unit = true;
  if (auto reshape = v.getDefiningOp<shlo::ReshapeOp>()) {
    auto slice = reshape.getOperand().getDefiningOp<shlo::SliceOp>();
    if (!slice || cast<RankedTensorType>(v.getType()).getShape() != slice.getType().getShape().drop_back())
      return std::nullopt;
    v = slice;
    unit = false;
  }
  auto slice = v.getDefiningOp<shlo::SliceOp>();
  if (!slice)
    return std::nullopt;
  auto type = cast<RankedTensorType>(slice.getOperand().getType());
  int64_t rank = type.getRank();
  if (rank < 2 || type.getShape().back() < 2 || !type.hasStaticShape())
    return std::nullopt;
  ArrayRef<int64_t> starts = slice.getStartIndices(), limits = slice.getLimitIndices(), strides = slice.getStrides();
  for (int64_t d = 0; d + 1 < rank; ++d)
    if (starts[d] != 0 || limits[d] != type.getDimSize(d) || strides[d] != 1)
      return std::nullopt;
  if (limits.back() != starts.back() + 1)
    return std::nullopt;
  return Column{slice.getOperand(), starts.back(), unit};
}

/// The ops a slot expression is made of.
bool isLiftable(Operation *op) {
  return op->getNumResults() == 1 && op->getNumRegions() == 0 &&
         isa<shlo::AddOp, shlo::SubtractOp, shlo::MulOp, shlo::DivOp, shlo::MaxOp, shlo::MinOp, shlo::NegOp,
             shlo::AbsOp, shlo::ExpOp, shlo::ConvertOp, shlo::CompareOp, shlo::SelectOp, shlo::AndOp, shlo::OrOp,
             shlo::NotOp, shlo::BroadcastInDimOp, shlo::ReshapeOp>(op);
}

/// A [..., K] tensor whose last dim is a top-k's slots: its values or
/// indices, or elementwise ops of them (normalised weights).
bool isSlotMatrix(Value v, int depth = 0) {
  if (v.getDefiningOp<chlo::TopKOp>())
    return true;
  Operation *op = v.getDefiningOp();
  return op && depth < 8 && isLiftable(op) && !isa<shlo::BroadcastInDimOp, shlo::ReshapeOp>(op) &&
         llvm::any_of(op->getOperands(), [&](Value operand) { return isSlotMatrix(operand, depth + 1); });
}

class SlotSum {
public:
  /// Do `terms` read columns 0..K-1 of the same tensors through one
  /// expression, one column per term?
  bool match(ArrayRef<Value> terms) {
    if (terms.size() < 2)
      return false;
    llvm::SmallBitVector seen;
    int64_t first = -1;
    for (size_t t = 1; t < terms.size(); ++t) {
      int64_t column0 = -1, columnT = -1;
      memo.clear();
      if (compare(terms[0], terms[t], column0, columnT) != Kind::Slotted || column0 < 0 || columnT < 0 ||
          (first >= 0 && column0 != first))
        return false;
      first = column0;
      if (seen.empty()) {
        seen.resize(slots);
        seen.set(first);
      }
      if (columnT >= slots || seen.test(columnT))
        return false;
      seen.set(columnT);
      ordered &= first == 0 && columnT == static_cast<int64_t>(t);
    }
    return static_cast<int64_t>(terms.size()) == slots && seen.all();
  }

  /// Every column read is of a top-k's slots (not any tensor's columns).
  bool readsTopKSlots() const {
    return llvm::all_of(matrices, [](Value m) { return isSlotMatrix(m); });
  }
  /// Term t reads column t.
  bool inColumnOrder() const { return ordered; }

  /// reduce_sum over the slot dim of term 0's expression lifted.
  Value build(OpBuilder &b, Location loc, Value term) {
    return sumOverDim(b, loc, lift(b, loc, term), static_cast<int64_t>(leading.size()));
  }

private:
  enum class Kind { Shared, Slotted, Mismatch };

  bool startsWithLeading(Type t) const {
    ArrayRef<int64_t> shape = cast<RankedTensorType>(t).getShape();
    return shape.size() >= leading.size() && shape.take_front(leading.size()) == ArrayRef<int64_t>(leading);
  }

  /// Compares `a` (in term 0) with `b` (in another term): the same value
  /// (shared), or the same expression over columns, term 0 reading column
  /// `columnA` everywhere and the other term `columnB`.
  Kind compare(Value a, Value b, int64_t &columnA, int64_t &columnB) {
    if (a == b)
      return Kind::Shared;
    if (auto it = memo.find({a, b}); it != memo.end())
      return it->second;
    Kind kind = compareUncached(a, b, columnA, columnB);
    memo[{a, b}] = kind;
    if (kind == Kind::Slotted)
      slotted.insert(a);
    return kind;
  }

  Kind compareUncached(Value a, Value b, int64_t &columnA, int64_t &columnB) {
    std::optional<Column> ca = columnOf(a), cb = columnOf(b);
    if (ca || cb) {
      if (!ca || !cb || ca->matrix != cb->matrix || ca->keepsUnitDim != cb->keepsUnitDim)
        return Kind::Mismatch;
      ArrayRef<int64_t> shape = cast<RankedTensorType>(ca->matrix.getType()).getShape();
      if (slots == 0) {
        leading.assign(shape.begin(), shape.end() - 1);
        slots = shape.back();
      } else if (shape.back() != slots || shape.drop_back() != ArrayRef<int64_t>(leading)) {
        return Kind::Mismatch;
      }
      if ((columnA >= 0 && columnA != ca->j) || (columnB >= 0 && columnB != cb->j))
        return Kind::Mismatch;
      columnA = ca->j;
      columnB = cb->j;
      matrices.insert(ca->matrix);
      return Kind::Slotted;
    }
    Operation *opA = a.getDefiningOp(), *opB = b.getDefiningOp();
    if (!opA || !opB || opA->getName() != opB->getName() || !isLiftable(opA) || a.getType() != b.getType() ||
        opA->getNumOperands() != opB->getNumOperands() || opA->getAttrDictionary() != opB->getAttrDictionary())
      return Kind::Mismatch;
    bool any = false;
    for (unsigned i = 0; i < opA->getNumOperands(); ++i) {
      Kind k = compare(opA->getOperand(i), opB->getOperand(i), columnA, columnB);
      if (k == Kind::Mismatch)
        return k;
      any |= k == Kind::Slotted;
    }
    // Equal ops of equal operands compute the same value.
    if (!any)
      return Kind::Shared;
    if (!startsWithLeading(a.getType()))
      return Kind::Mismatch;
    if (auto broadcast = dyn_cast<shlo::BroadcastInDimOp>(opA))
      for (size_t d = 0; d < leading.size(); ++d)
        if (broadcast.getBroadcastDimensions()[d] != static_cast<int64_t>(d))
          return Kind::Mismatch;
    return Kind::Slotted;
  }

  RankedTensorType liftedType(Type t) const {
    auto type = cast<RankedTensorType>(t);
    SmallVector<int64_t> shape(type.getShape());
    shape.insert(shape.begin() + leading.size(), slots);
    return type.clone(shape);
  }

  /// A value every term shares, broadcast along the slot dim.
  Value alongSlots(OpBuilder &b, Location loc, Value v) {
    RankedTensorType type = liftedType(v.getType());
    if (auto broadcast = v.getDefiningOp<shlo::BroadcastInDimOp>();
        broadcast && cast<RankedTensorType>(broadcast.getOperand().getType()).getRank() == 0)
      return shlo::BroadcastInDimOp::create(b, loc, type, broadcast.getOperand(), b.getDenseI64ArrayAttr({}));
    if (auto constant = v.getDefiningOp<shlo::ConstantOp>())
      if (auto dense = dyn_cast<DenseElementsAttr>(constant.getValue()); dense && dense.isSplat())
        return shlo::ConstantOp::create(b, loc, type, dense.resizeSplat(type));
    SmallVector<int64_t> dims;
    int64_t rank = cast<RankedTensorType>(v.getType()).getRank(), lead = static_cast<int64_t>(leading.size());
    for (int64_t d = 0; d < rank; ++d)
      dims.push_back(d < lead ? d : d + 1);
    return shlo::BroadcastInDimOp::create(b, loc, type, v, b.getDenseI64ArrayAttr(dims));
  }

  Value lift(OpBuilder &b, Location loc, Value v) {
    if (Value done = lifted.lookup(v))
      return done;
    Value result;
    if (!slotted.contains(v)) {
      result = alongSlots(b, loc, v);
    } else if (std::optional<Column> c = columnOf(v)) {
      result = c->keepsUnitDim ? shlo::ReshapeOp::create(b, loc, liftedType(v.getType()), c->matrix).getResult()
                               : c->matrix;
    } else {
      Operation *op = v.getDefiningOp();
      SmallVector<Value> operands;
      for (Value operand : op->getOperands())
        operands.push_back(lift(b, loc, operand));
      if (auto broadcast = dyn_cast<shlo::BroadcastInDimOp>(op)) {
        int64_t lead = static_cast<int64_t>(leading.size());
        SmallVector<int64_t> dims;
        for (auto [i, d] : llvm::enumerate(broadcast.getBroadcastDimensions()))
          dims.push_back(static_cast<int64_t>(i) < lead ? d : d + 1);
        dims.insert(dims.begin() + lead, lead);
        result = shlo::BroadcastInDimOp::create(b, loc, liftedType(v.getType()), operands[0],
                                                b.getDenseI64ArrayAttr(dims));
      } else {
        Operation *clone = b.clone(*op);
        clone->setOperands(operands);
        clone->getResult(0).setType(liftedType(v.getType()));
        result = clone->getResult(0);
      }
    }
    lifted[v] = result;
    return result;
  }

  SmallVector<int64_t> leading;
  int64_t slots = 0;
  bool ordered = true;
  llvm::SmallSetVector<Value, 4> matrices;
  llvm::DenseMap<std::pair<Value, Value>, Kind> memo;
  llvm::DenseSet<Value> slotted;
  llvm::DenseMap<Value, Value> lifted;
};

/// Adds whose terms are, in order, t0, t1, ...: ((t0 + t1) + t2) + ...
bool isLeftDeepChain(shlo::AddOp root) {
  auto add = root;
  while (add) {
    if (add.getRhs().getDefiningOp<shlo::AddOp>())
      return false;
    add = add.getLhs().getDefiningOp<shlo::AddOp>();
  }
  return true;
}

LogicalResult liftSlotSum(shlo::AddOp root) {
  SmallVector<Value> terms;
  addTerms(root.getResult(), terms);
  SlotSum sum;
  if (!sum.match(terms) || !sum.readsTopKSlots() || (terms.size() > 2 && !(sum.inColumnOrder() && isLeftDeepChain(root))))
    return failure();
  OpBuilder b(root);
  root.getResult().replaceAllUsesWith(sum.build(b, root.getLoc(), terms.front()));
  return success();
}

} // namespace

void mlir::moe::stablehlo_raise::liftSlotSums(Operation *root) {
  // Inner adds first: `g1 + g2 + eps` lifts g1 + g2.
  SmallVector<shlo::AddOp> adds;
  root->walk([&](shlo::AddOp add) { adds.push_back(add); });
  SmallVector<Operation *> replaced;
  for (shlo::AddOp add : adds)
    if (succeeded(liftSlotSum(add)))
      replaced.push_back(add);
  // The term-by-term sums are dead now, with the expressions only they read.
  llvm::DenseSet<Operation *> old;
  SmallVector<Operation *> stack(replaced.begin(), replaced.end());
  while (!stack.empty()) {
    Operation *op = stack.pop_back_val();
    if (!old.insert(op).second)
      continue;
    for (Value operand : op->getOperands())
      if (Operation *p = operand.getDefiningOp(); p && isLiftable(p))
        stack.push_back(p);
  }
  root->walk<WalkOrder::PostOrder, ReverseIterator>([&](Operation *op) {
    if (old.contains(op) && isOpTriviallyDead(op))
      op->erase();
  });
}
