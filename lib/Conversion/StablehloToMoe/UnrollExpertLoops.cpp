//===- UnrollExpertLoops.cpp - lax.fori_loop / lax.scan over the experts ---===//
//
// Code that loops over the experts with `lax.fori_loop` or `lax.scan`
// (to keep one expert's activations live at a time) computes the same
// gate-weighted sum as a Python loop, but as a `stablehlo.while` whose body
// indexes the stacks and the gate by the loop counter. Such a loop is
// unrolled here, so that the mixture matchers read it like the Python loop:
// the body copied once per expert, each copy's counter a constant, and the
// integer index arithmetic on it (JAX's negative-index wrap, `w[e]` as a
// dynamic_slice, `jnp.arange(E)[e]`) folded so that `w[e]` is a static slice
// and `idx == e` compares with a constant.
//
// Only loops over the experts or the slots are unrolled: a counted loop
// (`i < N`, `i + 1` from a constant) whose trip count is the expert count
// (or the k) of a top-k selection computed outside it, which either reads
// the selection inside, or maps over
// stacks of N (`lax.map(ffn, (w1, w3, w2))`: each step slices the stacks at
// its counter; its outputs, written into a stack by dynamic_update_slice,
// become a jnp.stack of the unrolled steps' outputs). A scan over layers
// routes inside its body and stays a loop (the layer in it is raised once).
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

#include "mlir/Analysis/SliceAnalysis.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// Integer constants small enough to fold (index arithmetic, not data).
constexpr int64_t kMaxFoldedElements = 4096;

/// Row-major strides of `shape`.
SmallVector<int64_t> stridesOf(ArrayRef<int64_t> shape) {
  SmallVector<int64_t> strides(shape.size(), 1);
  for (int64_t d = static_cast<int64_t>(shape.size()) - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * shape[d + 1];
  return strides;
}

/// The values of a small integer iota (`jnp.arange(E)` scanned over).
DenseIntElementsAttr iotaValues(shlo::IotaOp iota) {
  auto type = cast<RankedTensorType>(iota.getType());
  if (!type.hasStaticShape() || !isa<IntegerType>(type.getElementType()) ||
      type.getNumElements() > kMaxFoldedElements)
    return nullptr;
  SmallVector<int64_t> strides = stridesOf(type.getShape());
  auto dim = static_cast<int64_t>(iota.getIotaDimension());
  SmallVector<APInt> out;
  for (int64_t i = 0; i < type.getNumElements(); ++i)
    out.push_back(APInt(type.getElementType().getIntOrFloatBitWidth(),
                        static_cast<uint64_t>((i / strides[dim]) % type.getDimSize(dim)), true));
  return DenseIntElementsAttr::get(type, out);
}

/// A small integer constant (or iota) `v` is.
DenseIntElementsAttr intConstant(Value v) {
  if (auto iota = v.getDefiningOp<shlo::IotaOp>())
    return iotaValues(iota);
  auto constant = v.getDefiningOp<shlo::ConstantOp>();
  auto dense = constant ? dyn_cast<DenseIntElementsAttr>(constant.getValue()) : nullptr;
  return dense && dense.getNumElements() <= kMaxFoldedElements ? dense : nullptr;
}

std::optional<int64_t> scalarInt(Value v) {
  DenseIntElementsAttr c = intConstant(v);
  if (!c || c.getNumElements() != 1)
    return std::nullopt;
  return (*c.getValues<APInt>().begin()).getSExtValue();
}

/// The value of an integer op on constant operands, or null.
DenseIntElementsAttr foldIntegerOp(Operation *op) {
  auto type = dyn_cast<RankedTensorType>(op->getResult(0).getType());
  if (!type || !type.hasStaticShape() || !isa<IntegerType>(type.getElementType()) ||
      type.getNumElements() > kMaxFoldedElements)
    return nullptr;
  unsigned width = type.getElementType().getIntOrFloatBitWidth();
  SmallVector<SmallVector<APInt>> in;
  for (Value operand : op->getOperands()) {
    DenseIntElementsAttr c = intConstant(operand);
    if (!c)
      return nullptr;
    in.emplace_back(c.getValues<APInt>());
  }
  auto elementwise = [&](auto fn) -> DenseIntElementsAttr {
    SmallVector<APInt> out;
    for (int64_t i = 0; i < type.getNumElements(); ++i) {
      SmallVector<APInt> args;
      for (auto &values : in)
        args.push_back(values.size() == 1 ? values[0] : values[i]);
      out.push_back(fn(args));
    }
    return DenseIntElementsAttr::get(type, out);
  };
  bool sameCount = llvm::all_of(in, [&](auto &v) { return static_cast<int64_t>(v.size()) == type.getNumElements(); });
  if (isa<shlo::AddOp>(op) && sameCount)
    return elementwise([](ArrayRef<APInt> a) { return a[0] + a[1]; });
  if (isa<shlo::SubtractOp>(op) && sameCount)
    return elementwise([](ArrayRef<APInt> a) { return a[0] - a[1]; });
  if (isa<shlo::MulOp>(op) && sameCount)
    return elementwise([](ArrayRef<APInt> a) { return a[0] * a[1]; });
  if (isa<shlo::SelectOp>(op) && sameCount)
    return elementwise([](ArrayRef<APInt> a) { return a[0].getBoolValue() ? a[1] : a[2]; });
  if (auto compare = dyn_cast<shlo::CompareOp>(op); compare && sameCount) {
    bool isUnsigned = compare.getCompareType() && *compare.getCompareType() == shlo::ComparisonType::UNSIGNED;
    shlo::ComparisonDirection d = compare.getComparisonDirection();
    return elementwise([&](ArrayRef<APInt> a) {
      bool r = false;
      switch (d) {
      case shlo::ComparisonDirection::EQ: r = a[0] == a[1]; break;
      case shlo::ComparisonDirection::NE: r = a[0] != a[1]; break;
      case shlo::ComparisonDirection::LT: r = isUnsigned ? a[0].ult(a[1]) : a[0].slt(a[1]); break;
      case shlo::ComparisonDirection::LE: r = isUnsigned ? a[0].ule(a[1]) : a[0].sle(a[1]); break;
      case shlo::ComparisonDirection::GT: r = isUnsigned ? a[0].ugt(a[1]) : a[0].sgt(a[1]); break;
      case shlo::ComparisonDirection::GE: r = isUnsigned ? a[0].uge(a[1]) : a[0].sge(a[1]); break;
      }
      return APInt(1, r ? 1 : 0);
    });
  }
  if (isa<shlo::ConvertOp>(op) && sameCount)
    return elementwise([&](ArrayRef<APInt> a) { return a[0].getBitWidth() == 1 ? a[0].zext(width) : a[0].sextOrTrunc(width); });
  if (isa<shlo::ReshapeOp>(op) && sameCount)
    return elementwise([](ArrayRef<APInt> a) { return a[0]; });
  if (auto b = dyn_cast<shlo::BroadcastInDimOp>(op)) {
    auto from = cast<RankedTensorType>(b.getOperand().getType());
    SmallVector<int64_t> fromStrides = stridesOf(from.getShape()), toStrides = stridesOf(type.getShape());
    SmallVector<APInt> out;
    for (int64_t i = 0; i < type.getNumElements(); ++i) {
      int64_t at = 0;
      for (auto [fromDim, toDim] : llvm::enumerate(b.getBroadcastDimensions())) {
        int64_t index = (i / toStrides[toDim]) % type.getDimSize(toDim);
        at += (from.getDimSize(fromDim) == 1 ? 0 : index) * fromStrides[fromDim];
      }
      out.push_back(in[0][at]);
    }
    return DenseIntElementsAttr::get(type, out);
  }
  if (auto s = dyn_cast<shlo::SliceOp>(op)) {
    auto from = cast<RankedTensorType>(s.getOperand().getType());
    SmallVector<int64_t> fromStrides = stridesOf(from.getShape()), toStrides = stridesOf(type.getShape());
    SmallVector<APInt> out;
    for (int64_t i = 0; i < type.getNumElements(); ++i) {
      int64_t at = 0;
      for (int64_t d = 0; d < type.getRank(); ++d)
        at += (s.getStartIndices()[d] + ((i / toStrides[d]) % type.getDimSize(d)) * s.getStrides()[d]) * fromStrides[d];
      out.push_back(in[0][at]);
    }
    return DenseIntElementsAttr::get(type, out);
  }
  return nullptr;
}

/// dynamic_slice at constant starts -> slice (starts clamped into range, as
/// the op does).
Value staticSlice(shlo::DynamicSliceOp op) {
  auto type = cast<RankedTensorType>(op.getOperand().getType());
  if (!type.hasStaticShape())
    return nullptr;
  SmallVector<int64_t> starts, limits, strides(type.getRank(), 1);
  for (auto [d, start] : llvm::enumerate(op.getStartIndices())) {
    std::optional<int64_t> s = scalarInt(start);
    if (!s)
      return nullptr;
    int64_t size = op.getSliceSizes()[d];
    int64_t clamped = std::clamp<int64_t>(*s, 0, type.getDimSize(d) - size);
    starts.push_back(clamped);
    limits.push_back(clamped + size);
  }
  OpBuilder b(op);
  return shlo::SliceOp::create(b, op.getLoc(), op.getType(), op.getOperand(), b.getDenseI64ArrayAttr(starts),
                               b.getDenseI64ArrayAttr(limits), b.getDenseI64ArrayAttr(strides));
}

/// Folds the integer index arithmetic of `ops` (in order), and their
/// dynamic slices at constant starts; `replaced` maps each folded result to
/// its replacement.
void foldIndexArithmetic(ArrayRef<Operation *> ops, IRMapping &replaced) {
  for (Operation *op : ops) {
    if (op->getNumResults() != 1)
      continue;
    Value folded;
    if (auto ds = dyn_cast<shlo::DynamicSliceOp>(op)) {
      folded = staticSlice(ds);
      // A slice of constant indices is a constant itself.
      if (DenseIntElementsAttr value = folded ? foldIntegerOp(folded.getDefiningOp()) : nullptr) {
        OpBuilder b(op);
        folded = shlo::ConstantOp::create(b, op->getLoc(), value.getType(), value);
      }
    } else if (isa<shlo::AddOp, shlo::SubtractOp, shlo::MulOp, shlo::SelectOp, shlo::CompareOp, shlo::ConvertOp,
                   shlo::ReshapeOp, shlo::BroadcastInDimOp, shlo::SliceOp>(op)) {
      if (DenseIntElementsAttr value = foldIntegerOp(op)) {
        OpBuilder b(op);
        folded = shlo::ConstantOp::create(b, op->getLoc(), value.getType(), value);
      }
    }
    if (folded) {
      op->getResult(0).replaceAllUsesWith(folded);
      replaced.map(op->getResult(0), folded);
    }
  }
}

/// A counted loop: (counter position, first value, trip count), for cond
/// `counter < N` and a body that steps the counter by 1 from a constant.
struct CountedLoop {
  unsigned counter;
  int64_t first, trips;
};

std::optional<CountedLoop> countedLoop(shlo::WhileOp loop) {
  Block &cond = loop.getCond().front();
  auto ret = cast<shlo::ReturnOp>(cond.getTerminator());
  auto lt = ret.getResults().size() == 1 ? ret.getResults()[0].getDefiningOp<shlo::CompareOp>() : nullptr;
  auto counter = lt ? dyn_cast<BlockArgument>(lt.getLhs()) : nullptr;
  std::optional<int64_t> bound = lt ? scalarInt(lt.getRhs()) : std::nullopt;
  if (!lt || lt.getComparisonDirection() != shlo::ComparisonDirection::LT || !counter ||
      counter.getOwner() != &cond || !bound)
    return std::nullopt;
  unsigned position = counter.getArgNumber();
  std::optional<int64_t> first = scalarInt(loop->getOperand(position));
  Block &body = loop.getBody().front();
  auto next = cast<shlo::ReturnOp>(body.getTerminator()).getResults()[position].getDefiningOp<shlo::AddOp>();
  if (!first || !next || next.getLhs() != body.getArgument(position) || scalarInt(next.getRhs()) != 1)
    return std::nullopt;
  return CountedLoop{position, *first, std::max<int64_t>(0, *bound - *first)};
}

/// Whether `loop` selects experts itself (a scan over layers does).
bool routesInside(shlo::WhileOp loop) {
  return loop->walk([](chlo::TopKOp) { return WalkResult::interrupt(); }).wasInterrupted();
}

/// The top-k over [tokens, N] computed outside `loop` and read inside it
/// (through its operands or captured), or null; with `slots`, a top-k
/// picking N per token instead (a loop over the slots).
chlo::TopKOp routingReadIn(shlo::WhileOp loop, int64_t experts, bool slots = false) {
  if (routesInside(loop))
    return nullptr;
  SetVector<Value> read;
  for (Value v : loop->getOperands())
    read.insert(v);
  loop->walk([&](Operation *op) {
    for (Value v : op->getOperands())
      if (!loop->isAncestor(v.getParentRegion()->getParentOp()))
        read.insert(v);
  });
  // What the loop reads, and everything computing it (one slice for all;
  // a slice leaves out its own root, so the readers' producers are added).
  SetVector<Operation *> slice, producers;
  BackwardSliceOptions options;
  options.omitUsesFromAbove = false;
  for (Value v : read) {
    (void)getBackwardSlice(v, &slice, options);
    if (Operation *def = v.getDefiningOp())
      producers.insert(def);
  }
  slice.insert(producers.begin(), producers.end());
  for (Operation *op : slice)
    if (auto topk = dyn_cast<chlo::TopKOp>(op)) {
      auto type = cast<RankedTensorType>((slots ? topk.getValues() : topk.getOperand()).getType());
      if (type.getRank() == 2 && type.getDimSize(1) == experts)
        return topk;
    }
  return nullptr;
}

/// The loop maps over stacks of `trips` (a body slice of a [trips, ...] value
/// at an index computed from the counter) while a top-k over `trips`
/// experts is computed before it, outside it.
bool mapsOverExperts(shlo::WhileOp loop, const CountedLoop &counted) {
  if (routesInside(loop))
    return false;
  Block &body = loop.getBody().front();
  Value counter = body.getArgument(counted.counter);
  bool slicesStacks = false;
  body.walk([&](shlo::DynamicSliceOp slice) {
    auto type = cast<RankedTensorType>(slice.getOperand().getType());
    if (type.getRank() < 1 || type.getDimSize(0) != counted.trips || slice.getSliceSizes()[0] != 1)
      return;
    SetVector<Operation *> from;
    BackwardSliceOptions options;
    options.filter = [&](Operation *op) { return loop->isAncestor(op); };
    Value start = slice.getStartIndices()[0];
    (void)getBackwardSlice(start, &from, options);
    slicesStacks |= start == counter || llvm::any_of(from, [&](Operation *op) {
      return llvm::is_contained(op->getOperands(), counter);
    });
  });
  if (!slicesStacks)
    return false;
  auto function = loop->getParentOfType<FunctionOpInterface>();
  bool routed = false;
  function->walk([&](chlo::TopKOp topk) {
    auto type = cast<RankedTensorType>(topk.getOperand().getType());
    routed |= type.getRank() == 2 && type.getDimSize(1) == counted.trips && topk->getBlock() == loop->getBlock() &&
              topk->isBeforeInBlock(loop);
  });
  return routed;
}

/// `v` written whole, one row of dim 0 at a time, by a chain of
/// dynamic_update_slice at constant starts (the outputs of an unrolled
/// lax.map): the rows concatenated instead, or null.
Value stackOfRowUpdates(OpBuilder &b, Value v) {
  auto type = cast<RankedTensorType>(v.getType());
  if (type.getRank() < 1 || !type.hasStaticShape())
    return nullptr;
  SmallVector<Value> rows(type.getDimSize(0));
  Value at = v;
  while (auto update = at.getDefiningOp<shlo::DynamicUpdateSliceOp>()) {
    auto piece = cast<RankedTensorType>(update.getUpdate().getType());
    std::optional<int64_t> row = scalarInt(update.getStartIndices()[0]);
    if (!row || *row < 0 || *row >= type.getDimSize(0) || piece.getDimSize(0) != 1)
      return nullptr;
    for (int64_t d = 1; d < type.getRank(); ++d)
      if (piece.getDimSize(d) != type.getDimSize(d) || scalarInt(update.getStartIndices()[d]) != 0)
        return nullptr;
    // The last write of a row is the one the chain's end holds.
    if (!rows[*row])
      rows[*row] = update.getUpdate();
    at = update.getOperand();
  }
  if (at == v || llvm::any_of(rows, [](Value r) { return !r; }))
    return nullptr;
  b.setInsertionPointAfterValue(v);
  return shlo::ConcatenateOp::create(b, v.getLoc(), type, rows, b.getI64IntegerAttr(0));
}

void unroll(shlo::WhileOp loop, int64_t trips) {
  OpBuilder b(loop);
  Block &body = loop.getBody().front();
  SmallVector<Value> values(loop->getOperands());
  SmallVector<Operation *> cloned;
  for (int64_t t = 0; t < trips; ++t) {
    IRMapping map;
    map.map(body.getArguments(), values);
    for (Operation &op : body.without_terminator()) {
      Operation *copy = b.clone(op, map);
      cloned.push_back(copy);
    }
    // Fold as we go: the next copy starts from constant counters.
    IRMapping folded;
    foldIndexArithmetic(cloned, folded);
    cloned.clear();
    auto ret = cast<shlo::ReturnOp>(body.getTerminator());
    for (auto [i, v] : llvm::enumerate(ret.getResults()))
      values[i] = folded.lookupOrDefault(map.lookupOrDefault(v));
  }
  SmallVector<Value> chains;
  for (Value &v : values)
    if (Value stacked = stackOfRowUpdates(b, v)) {
      chains.push_back(v);
      v = stacked;
    }
  loop->replaceAllUsesWith(values);
  loop->erase();
  // The update chains the stacks replace.
  for (Value end : chains)
    for (auto update = end.getDefiningOp<shlo::DynamicUpdateSliceOp>(); update && update->use_empty();) {
      auto next = update.getOperand().getDefiningOp<shlo::DynamicUpdateSliceOp>();
      update->erase();
      update = next;
    }
}

} // namespace

unsigned mlir::moe::stablehlo_raise::unrollExpertLoops(Operation *root) {
  constexpr int64_t kMaxExperts = 1024;
  SmallVector<shlo::WhileOp> loops;
  root->walk([&](shlo::WhileOp loop) {
    if (!loop->getParentOfType<shlo::WhileOp>())
      loops.push_back(loop);
  });
  unsigned unrolled = 0;
  for (shlo::WhileOp loop : loops) {
    std::optional<CountedLoop> counted = countedLoop(loop);
    if (!counted || counted->trips < 1 || counted->trips > kMaxExperts ||
        (!routingReadIn(loop, counted->trips) && !routingReadIn(loop, counted->trips, /*slots=*/true) &&
         !mapsOverExperts(loop, *counted)))
      continue;
    unroll(loop, counted->trips);
    ++unrolled;
  }
  return unrolled;
}
