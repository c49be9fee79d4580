//===- CostReport.cpp - FLOPs, bytes and tokens per expert of moe ops -----===//
//
// A static cost model of the decomposed moe ops under the routing assumption
// stated in the pass description (Passes.td). Contraction FLOPs are exact for
// a given token count, which is what the tests check by hand.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/CostReport.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"
#include <cmath>

namespace mlir::moe {
#define GEN_PASS_DEF_MOECOSTREPORT
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

using Cost = OpCost;

/// What a dispatch plan is expected to hold, for the ops that read it.
struct PlanEstimate {
  double filledSlots = 0;      // slots naming a dispatched expert
  double rowsPerExpert = 0;    // rows each expert's GEMM computes
  double selectionExperts = 1; // experts the selection ranges over
  double usedFraction = 1;     // probability that an expert computes any row
  double sharedRows = 0;       // rows of a shared slot (one per token)
  int64_t experts = 0;
};

class CostModel {
public:
  explicit CostModel(int64_t tokens) : assumedTokens(tokens) {}

  /// Size of dimension `d` of `v`; a dynamic one is the token count, or a
  /// multiple of it for the rows of a plan (tokens x slots).
  FailureOr<double> size(Value v, unsigned d, Operation *op) {
    auto type = cast<RankedTensorType>(v.getType());
    if (!type.isDynamicDim(d))
      return double(type.getDimSize(d));
    if (assumedTokens <= 0) {
      op->emitError("moe-cost-report: dynamic token count; run with tokens=N");
      return failure();
    }
    return double(assumedTokens);
  }

  static double elementBytes(Value v) {
    return getElementTypeOrSelf(v.getType()).getIntOrFloatBitWidth() / 8.0;
  }
  static double staticElements(Value v) {
    return double(cast<RankedTensorType>(v.getType()).getNumElements());
  }
  static double staticBytes(Value v) { return staticElements(v) * elementBytes(v); }
  /// Bytes stored per weight: for quantised weights (moe.dequantize) the
  /// packed bytes, scales and zero points spread over the weights.
  static double weightElementBytes(Value w) {
    auto quantized = w.getDefiningOp<DequantizeOp>();
    if (!quantized)
      return elementBytes(w);
    double stored = staticBytes(quantized.getPacked()) + staticBytes(quantized.getScales()) +
                    (quantized.getZeroPoints() ? staticBytes(quantized.getZeroPoints()) : 0.0);
    return stored / staticElements(quantized.getResult());
  }

  /// Probability that an expert receives a token when each of `tokens`
  /// picks `perToken` distinct experts out of `experts` uniformly.
  static double usedFraction(double tokens, double perToken, double experts) {
    return experts <= 0 ? 0 : 1.0 - std::pow(1.0 - std::min(1.0, perToken / experts), tokens);
  }

  FailureOr<Cost> costOf(Operation *op);
  /// A grouped matmul of `lhs` by `weights` over the rows of the plan of `offsets`.
  FailureOr<Cost> groupedCost(Operation *op, Value lhs, Value weights, Value offsets, Value shared);
  const PlanEstimate *planOf(Value offsets) {
    auto it = plans.find(offsets);
    return it == plans.end() ? nullptr : &it->second;
  }

  /// Rows this rank sends to other ranks for `op`'s plan, and the rows it
  /// receives, with every rank holding as many tokens as this one.
  FailureOr<std::pair<double, double>> exchangedRows(Operation *op, Value offsets, ArrayRef<int64_t> bounds,
                                                     int64_t rank);
  FailureOr<Cost> exchangeCost(AllToAllDispatchOp op);

private:
  FailureOr<Cost> dispatchCost(DispatchOp op);
  /// Filled slots of a selection and the experts it ranges over.
  FailureOr<std::pair<double, double>> selectionOf(Value indices, Operation *user);

  int64_t assumedTokens;
  llvm::DenseMap<Value, PlanEstimate> plans;
};

FailureOr<std::pair<double, double>> CostModel::selectionOf(Value indices, Operation *user) {
  auto tokens = size(indices, 0, user);
  auto slots = size(indices, 1, user);
  if (failed(tokens) || failed(slots))
    return failure();
  double filled = *tokens * *slots, experts = *slots;
  Operation *def = indices.getDefiningOp();
  // Ids relabelled one by one (an expert placement's numbering) range over
  // the experts of the selection they relabel.
  if (auto relabel = dyn_cast_or_null<linalg::GenericOp>(def);
      relabel && relabel.getNumDpsInputs() == 1 && relabel.getInputs()[0].getType() == indices.getType())
    return selectionOf(relabel.getInputs()[0], user);
  // Copies of a selection side by side (placement=split, one per rank):
  // their slots and their experts add up.
  if (auto copies = dyn_cast_or_null<tensor::ConcatOp>(def); copies && copies.getDim() == 1) {
    double allFilled = 0, allExperts = 0;
    for (Value copy : copies.getInputs()) {
      auto inner = selectionOf(copy, user);
      if (failed(inner))
        return failure();
      allFilled += inner->first;
      allExperts += inner->second;
    }
    return std::make_pair(allFilled, allExperts);
  }
  if (auto restrict = dyn_cast_or_null<RestrictSlotsOp>(def)) {
    auto inner = selectionOf(restrict.getIndices(), user);
    if (failed(inner))
      return failure();
    double kept = std::min(1.0, double(restrict.getNumExperts()) / inner->second);
    return std::make_pair(inner->first * kept, inner->second);
  }
  // A fused routing group: its selection is inside.
  if (auto fused = dyn_cast_or_null<FusedRoutingOp>(def))
    for (Operation &inner : fused.getBody().front())
      if (isa<TopKOp, ThresholdOp, ExpertChoiceOp>(inner))
        def = &inner;
  if (def && isa<TopKOp, ThresholdOp, ExpertChoiceOp>(def)) {
    Value scores = def->getOperand(0);
    auto e = size(scores, 1, user);
    if (failed(e))
      return failure();
    experts = *e;
    if (auto choice = dyn_cast<ExpertChoiceOp>(def); choice && !choice.getTokenK())
      filled = std::min(filled, double(choice.getCapacity()) * experts);
  }
  return std::make_pair(filled, experts);
}

FailureOr<Cost> CostModel::dispatchCost(DispatchOp op) {
  auto selection = selectionOf(op.getIndices(), op);
  auto tokens = size(op.getIndices(), 0, op);
  auto slots = size(op.getIndices(), 1, op);
  if (failed(selection) || failed(tokens) || failed(slots))
    return failure();
  PlanEstimate plan;
  plan.experts = op.getNumExperts();
  plan.selectionExperts = selection->second;
  plan.filledSlots = selection->first;
  double perExpert = selection->first / std::max(1.0, double(plan.experts));
  plan.usedFraction = usedFraction(*tokens, *slots, plan.selectionExperts);
  if (CapacityAttr cap = op.getCapacityAttr()) {
    // k is the primary selections: fill-in adds a candidate column.
    double c = double(cap.perExpert(int64_t(*tokens), int64_t(*slots) - (cap.fillsIn() ? 1 : 0),
                                    plan.experts));
    double kept = std::min(perExpert, c);
    plan.filledSlots = kept * plan.experts;
    perExpert = cap.getPad() ? c : kept;
    if (cap.getPad())
      plan.usedFraction = 1; // padded rows are computed for every expert
  }
  plan.rowsPerExpert = perExpert;
  if (op.getSharedWeight())
    plan.sharedRows = *tokens;
  plans[op.getExpertOffsets()] = plan;
  Cost cost;
  cost.otherFlops = *tokens * *slots; // one placement per slot
  cost.activationBytes = staticBytes(op.getExpertOffsets()) + *tokens * *slots * 16;
  return cost;
}

FailureOr<std::pair<double, double>> CostModel::exchangedRows(Operation *op, Value offsets,
                                                               ArrayRef<int64_t> bounds, int64_t rank) {
  const PlanEstimate *plan = planOf(offsets);
  if (!plan) {
    op->emitError("moe-cost-report: the exchange's offsets do not come from a moe.dispatch");
    return failure();
  }
  double ranks = double(bounds.size()) - 1, placed = double(bounds.back());
  double local = double(bounds[rank + 1] - bounds[rank]);
  double perExpert = plan->filledSlots / std::max(1.0, plan->selectionExperts);
  return std::make_pair(perExpert * (placed - local), perExpert * local * ranks);
}

FailureOr<Cost> CostModel::exchangeCost(AllToAllDispatchOp op) {
  auto rows = exchangedRows(op, op.getOffsets(), op.getBounds(), op.getRank());
  if (failed(rows))
    return failure();
  const PlanEstimate *plan = planOf(op.getOffsets());
  ArrayRef<int64_t> bounds = op.getBounds();
  double ranks = double(bounds.size()) - 1;
  // The received rows form the plan of this rank's grouped GEMMs.
  PlanEstimate received = *plan;
  received.experts = bounds[op.getRank() + 1] - bounds[op.getRank()];
  received.rowsPerExpert = plan->filledSlots / std::max(1.0, plan->selectionExperts) * ranks;
  received.filledSlots = received.rowsPerExpert * double(received.experts);
  received.sharedRows = 0;
  plans[op.getLocalOffsets()] = received;
  double h = cast<RankedTensorType>(op.getRows().getType()).getDimSize(1), bytes = elementBytes(op.getRows());
  Cost c;
  c.networkBytes = rows->first * h * bytes;
  c.activationBytes = (plan->filledSlots + rows->second) * h * bytes;
  return c;
}

FailureOr<Cost> CostModel::groupedCost(Operation *op, Value lhs, Value weights, Value offsets,
                                       Value shared) {
  auto w = cast<RankedTensorType>(weights.getType());
  double n = w.getDimSize(1), k = w.getDimSize(2);
  double experts = w.getDimSize(0), rows, used = 1;
  double sharedRows = 0;
  if (const PlanEstimate *plan = planOf(offsets)) {
    experts = std::min<double>(experts, plan->experts);
    rows = experts * plan->rowsPerExpert;
    used = plan->usedFraction;
    sharedRows = shared ? plan->sharedRows : 0;
  } else {
    // Offsets not from a dispatch (token groups, MEO): every row is computed
    // once and every weight slice is read.
    auto r = size(lhs, 0, op);
    if (failed(r))
      return failure();
    rows = *r;
  }
  // A folded shared expert: one more row per token, its weights always read.
  rows += sharedRows;
  Cost c;
  c.gemmFlops = 2 * rows * n * k;
  c.weightBytes = experts * used * n * k * weightElementBytes(weights) + (shared ? staticBytes(shared) : 0);
  c.activationBytes = rows * (n + k) * elementBytes(lhs);
  return c;
}

FailureOr<Cost> CostModel::costOf(Operation *op) {
  auto t = [&](Value v, unsigned d) { return size(v, d, op); };
  return llvm::TypeSwitch<Operation *, FailureOr<Cost>>(op)
      .Case([&](RouterOp r) -> FailureOr<Cost> {
        auto tk = t(r.getX(), 0);
        if (failed(tk))
          return failure();
        Cost c;
        double e = staticElements(r.getWeight()) / double(cast<RankedTensorType>(r.getWeight().getType()).getDimSize(1));
        double in = double(cast<RankedTensorType>(r.getWeight().getType()).getDimSize(1));
        c.gemmFlops = 2 * *tk * e * in;
        c.weightBytes = staticBytes(r.getWeight());
        if (Value h = r.getHidden()) {
          auto ht = cast<RankedTensorType>(h.getType());
          c.gemmFlops += 2 * *tk * ht.getDimSize(0) * ht.getDimSize(1);
          c.otherFlops += *tk * ht.getDimSize(0); // tanh
          c.weightBytes += staticBytes(h);
        }
        if (Value bias = r.getBias()) {
          c.otherFlops += *tk * e;
          c.weightBytes += staticBytes(bias);
        }
        auto xt = cast<RankedTensorType>(r.getX().getType());
        c.activationBytes = *tk * (xt.getDimSize(1) * elementBytes(r.getX()) + e * 4);
        return c;
      })
      .Case([&](GatingResidualOp g) -> FailureOr<Cost> {
        auto tk = t(g.getLogits(), 0);
        if (failed(tk))
          return failure();
        double e = cast<RankedTensorType>(g.getWeight().getType()).getDimSize(0);
        Cost c;
        c.gemmFlops = 2 * *tk * e * e;
        c.otherFlops = *tk * e;
        c.weightBytes = staticBytes(g.getWeight());
        c.activationBytes = 3 * *tk * e * 4;
        return c;
      })
      .Case([&](ScoreOp s) -> FailureOr<Cost> {
        auto tk = t(s.getLogits(), 0);
        auto e = t(s.getLogits(), 1);
        if (failed(tk) || failed(e))
          return failure();
        double perElement = 1;
        switch (s.getFunc()) {
        case ScoringFunc::softmax: perElement = 5; break;
        case ScoringFunc::sigmoid: perElement = 4; break;
        case ScoringFunc::relu: perElement = 1; break;
        case ScoringFunc::gumbel_softmax: perElement = 12.0 * s.getSamples().value_or(1); break;
        }
        Cost c;
        c.otherFlops = perElement * *tk * *e;
        c.activationBytes = 2 * *tk * *e * 4;
        return c;
      })
      .Case<TopKOp, ThresholdOp>([&](Operation *sel) -> FailureOr<Cost> {
        Value scores = sel->getOperand(0), idx = sel->getResult(1);
        auto tk = t(scores, 0);
        auto e = t(scores, 1);
        auto k = t(idx, 1);
        if (failed(tk) || failed(e) || failed(k))
          return failure();
        Cost c;
        c.otherFlops = *tk * *e * *k; // one scan over the experts per pick
        c.activationBytes = *tk * (*e * 4 + *k * 8);
        return c;
      })
      .Case([&](ExpertChoiceOp ec) -> FailureOr<Cost> {
        auto tk = t(ec.getScores(), 0);
        auto e = t(ec.getScores(), 1);
        if (failed(tk) || failed(e))
          return failure();
        Cost c;
        c.otherFlops = *e * *tk * ec.getCapacity();
        c.activationBytes = *tk * *e * 12;
        return c;
      })
      .Case([&](RenormalizeOp r) -> FailureOr<Cost> {
        auto tk = t(r.getWeights(), 0);
        auto k = t(r.getWeights(), 1);
        if (failed(tk) || failed(k))
          return failure();
        Cost c;
        c.otherFlops = 3 * *tk * *k;
        c.activationBytes = 3 * *tk * *k * 4;
        return c;
      })
      .Case([&](RestrictSlotsOp r) -> FailureOr<Cost> {
        auto tk = t(r.getIndices(), 0);
        auto k = t(r.getIndices(), 1);
        if (failed(tk) || failed(k))
          return failure();
        Cost c;
        c.otherFlops = *tk * *k;
        c.activationBytes = 2 * *tk * *k * 4;
        return c;
      })
      .Case([&](DispatchOp d) { return dispatchCost(d); })
      .Case([&](AllToAllDispatchOp d) { return exchangeCost(d); })
      .Case([&](AllToAllReturnOp r) -> FailureOr<Cost> {
        auto rows = exchangedRows(r, r.getOffsets(), r.getBounds(), r.getRank());
        if (failed(rows))
          return failure();
        double h = cast<RankedTensorType>(r.getType()).getDimSize(1), bytes = elementBytes(r.getResult());
        Cost c;
        c.networkBytes = rows->first * h * bytes;
        c.activationBytes = (rows->second + planOf(r.getOffsets())->filledSlots) * h * bytes;
        return c;
      })
      .Case([&](AllGatherColumnsOp g) -> FailureOr<Cost> {
        // Its rows are those of the grouped GEMM (and activation) before it.
        Value rows = g.getInput();
        if (auto act = rows.getDefiningOp<ActivationOp>())
          rows = act.getInput();
        Operation *gemm = rows.getDefiningOp();
        const PlanEstimate *plan =
            isa_and_nonnull<GroupedMatmulOp, GroupedMatmulActOp>(gemm) ? planOf(gemm->getOperand(2)) : nullptr;
        if (!plan) {
          g.emitError("moe-cost-report: the gathered rows do not come from a grouped matmul of a planned exchange");
          return failure();
        }
        double width = cast<RankedTensorType>(g.getInput().getType()).getDimSize(1);
        double block = plan->filledSlots * width * elementBytes(g.getInput());
        double ranks = double(g.getRanks());
        Cost c;
        c.networkBytes = block * (ranks - 1);
        c.activationBytes = block * (ranks + 1);
        return c;
      })
      .Case([&](PermuteOp p) -> FailureOr<Cost> {
        // Moves the filled rows; padding rows are zero-filled, not read.
        double h = cast<RankedTensorType>(p.getX().getType()).getDimSize(1);
        double rows = 0;
        for (Operation *user : p.getResult().getUsers()) {
          // The plan's offsets: operand 2 of a grouped GEMM, 1 of an exchange.
          Value offsets = isa<GroupedMatmulOp, GroupedMatmulActOp>(user) ? user->getOperand(2)
                          : isa<AllToAllDispatchOp>(user)                ? user->getOperand(1)
                                                                         : Value();
          if (const PlanEstimate *plan = offsets ? planOf(offsets) : nullptr)
            rows = std::max(rows, plan->filledSlots + plan->sharedRows);
        }
        Cost c;
        c.activationBytes = 2 * rows * h * elementBytes(p.getX());
        return c;
      })
      .Case([&](GroupedMatmulOp g) { return groupedCost(g, g.getLhs(), g.getWeights(), g.getOffsets(), g.getShared()); })
      .Case([&](GroupedMatmulActOp g) -> FailureOr<Cost> {
        FailureOr<Cost> c = groupedCost(g, g.getLhs(), g.getWeights(), g.getOffsets(), g.getShared());
        if (failed(c))
          return failure();
        // The activation on the f32 accumulators; its output replaces the
        // GEMM's in memory.
        auto w = cast<RankedTensorType>(g.getWeights().getType());
        double rows = c->gemmFlops / (2 * w.getDimSize(1) * w.getDimSize(2));
        double f = cast<RankedTensorType>(g.getType()).getDimSize(1);
        c->otherFlops = rows * (f * 2 == w.getDimSize(1) ? 5 * f : 4 * f);
        c->activationBytes = rows * (w.getDimSize(2) + f) * elementBytes(g.getLhs());
        return c;
      })
      .Case([&](GroupedMatmulCombineOp g) -> FailureOr<Cost> {
        FailureOr<Cost> c = groupedCost(g, g.getLhs(), g.getWeights(), g.getOffsets(), g.getShared());
        auto tk = t(g.getSlotRow(), 0);
        auto k = t(g.getSlotRow(), 1);
        if (failed(c) || failed(tk) || failed(k))
          return failure();
        // Rows go straight into their tokens' outputs: only the inputs and
        // the token-order result touch memory.
        auto w = cast<RankedTensorType>(g.getWeights().getType());
        double rows = c->gemmFlops / (2 * w.getDimSize(1) * w.getDimSize(2));
        double h = w.getDimSize(1);
        c->otherFlops = 2 * *tk * *k * h;
        c->activationBytes = (rows * w.getDimSize(2) + *tk * h) * elementBytes(g.getLhs());
        return c;
      })
      .Case([&](ActivationOp a) -> FailureOr<Cost> {
        // Its rows are those of the GEMM that feeds it.
        double rows = 0;
        if (auto gemm = a.getInput().getDefiningOp<GroupedMatmulOp>())
          if (const PlanEstimate *plan = planOf(gemm.getOffsets()))
            rows = std::min<double>(cast<RankedTensorType>(gemm.getWeights().getType()).getDimSize(0),
                                    plan->experts) *
                   plan->rowsPerExpert;
        if (rows == 0) {
          auto r = t(a.getInput(), 0);
          if (failed(r))
            return failure();
          rows = *r;
        }
        double u = cast<RankedTensorType>(a.getInput().getType()).getDimSize(1);
        double f = cast<RankedTensorType>(a.getType()).getDimSize(1);
        Cost c;
        c.otherFlops = rows * (u == f ? 4 * u : 5 * f);
        c.activationBytes = rows * (u + f) * elementBytes(a.getInput());
        return c;
      })
      .Case([&](CombineOp cb) -> FailureOr<Cost> {
        auto tk = t(cb.getSlotRow(), 0);
        auto k = t(cb.getSlotRow(), 1);
        if (failed(tk) || failed(k))
          return failure();
        double h = cast<RankedTensorType>(cb.getRows().getType()).getDimSize(1);
        Cost c;
        c.otherFlops = 2 * *tk * *k * h;
        c.activationBytes = (*tk * *k + *tk) * h * elementBytes(cb.getRows());
        return c;
      })
      .Case([&](ZeroComputeOp z) -> FailureOr<Cost> {
        auto tk = t(z.getX(), 0);
        auto k = t(z.getIndices(), 1);
        if (failed(tk) || failed(k))
          return failure();
        double h = cast<RankedTensorType>(z.getX().getType()).getDimSize(1);
        Cost c;
        c.otherFlops = 3 * *tk * *k * h;
        c.activationBytes = 2 * *tk * h * elementBytes(z.getX());
        if (Value v = z.getConstantVectors()) {
          double constants = cast<RankedTensorType>(v.getType()).getDimSize(0);
          c.gemmFlops = 2 * *tk * 2 * constants * h;
          c.weightBytes = staticBytes(v) + staticBytes(z.getConstantMix());
        }
        return c;
      })
      .Case([&](DenseFfnOp f) -> FailureOr<Cost> {
        auto tk = t(f.getX(), 0);
        if (failed(tk))
          return failure();
        auto up = cast<RankedTensorType>(f.getUp().getType());
        auto down = cast<RankedTensorType>(f.getDown().getType());
        Cost c;
        c.gemmFlops = 2 * *tk * (double(up.getNumElements()) + double(down.getNumElements()));
        c.weightBytes = staticBytes(f.getUp()) + staticBytes(f.getDown());
        if (Value g = f.getGate()) {
          c.gemmFlops += 2 * *tk * staticElements(g);
          c.weightBytes += staticBytes(g);
        }
        c.otherFlops = *tk * up.getDimSize(0) * 2;
        double h = cast<RankedTensorType>(f.getX().getType()).getDimSize(1);
        c.activationBytes = 2 * *tk * h * elementBytes(f.getX());
        return c;
      })
      .Case([&](ComposeExpertsOp p) -> FailureOr<Cost> {
        auto d = cast<RankedTensorType>(p.getDown().getType());
        auto u = cast<RankedTensorType>(p.getUp().getType());
        Cost c;
        c.gemmFlops = 2.0 * d.getDimSize(0) * d.getDimSize(1) * d.getDimSize(2) * u.getDimSize(2);
        c.weightBytes = staticBytes(p.getDown()) + staticBytes(p.getUp());
        c.activationBytes = staticBytes(p.getResult());
        return c;
      })
      .Case([&](GroupMeanOp g) -> FailureOr<Cost> {
        auto tk = t(g.getX(), 0);
        if (failed(tk))
          return failure();
        double h = cast<RankedTensorType>(g.getX().getType()).getDimSize(1);
        Cost c;
        c.otherFlops = *tk * h;
        c.activationBytes = *tk * h * elementBytes(g.getX());
        return c;
      })
      .Case([&](MergeExpertsOp m) -> FailureOr<Cost> {
        auto groups = t(m.getGates(), 0);
        if (failed(groups))
          return failure();
        double e = cast<RankedTensorType>(m.getWeights().getType()).getDimSize(0);
        double perExpert = staticElements(m.getWeights()) / e;
        Cost c;
        c.gemmFlops = 2 * *groups * e * perExpert;
        c.weightBytes = staticBytes(m.getWeights());
        c.activationBytes = *groups * perExpert * elementBytes(m.getWeights());
        return c;
      })
      .Default([](Operation *) { return Cost(); });
}


struct MoeCostReportPass : mlir::moe::impl::MoeCostReportBase<MoeCostReportPass> {
  using MoeCostReportBase::MoeCostReportBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    for (auto func : llvm::make_early_inc_range(module.getOps<func::FuncOp>())) {
      FailureOr<CostTable> table = computeCostTable(func, tokens);
      if (failed(table))
        return signalPassFailure();
      if (!table->rows.empty())
        print(func.getName(), *table);
    }
  }

  void print(StringRef name, const CostTable &table) {
    llvm::raw_ostream &os = llvm::outs();
    os << "moe-cost-report @" << name << (table.decomposed ? " (its moe.layer ops decomposed)" : "")
       << "; uniform routing over each selection's experts"
       << (tokens > 0 ? ("; dynamic token count taken as " + std::to_string(tokens)) : std::string())
       << "\n";
    // Expert-parallel programs: one more column, the bytes sent to other ranks.
    bool network = table.total.networkBytes > 0;
    os << llvm::format("  %-28s %-9s %16s %14s %14s %16s", "op", "where", "GEMM FLOP", "other FLOP",
                       "weight bytes", "activation bytes");
    if (network)
      os << llvm::format(" %14s", "sent to ranks");
    os << "\n";
    auto line = [&](StringRef op, StringRef where, const OpCost &c) {
      os << llvm::format("  %-28s %-9s %16.0f %14.0f %14.0f %16.0f", op.str().c_str(), where.str().c_str(),
                         c.gemmFlops, c.otherFlops, c.weightBytes, c.activationBytes);
      if (network)
        os << llvm::format(" %14.0f", c.networkBytes);
      os << "\n";
    };
    for (const CostRow &row : table.rows)
      line(row.op, row.line ? "line " + std::to_string(row.line) : "", row.cost);
    line("total", "", table.total);
    for (const DispatchEstimate &d : table.dispatches)
      os << llvm::format("  dispatch %s: %.1f filled slots over %lld experts (selected from %.0f), "
                         "%.2f rows per expert\n",
                         d.line ? ("line " + std::to_string(d.line)).c_str() : "", d.filledSlots,
                         (long long)d.experts, d.selectionExperts, d.rowsPerExpert);
  }
};
} // namespace

static int64_t lineOf(Operation *op) {
  if (auto file = dyn_cast<FileLineColLoc>(op->getLoc()))
    return file.getLine();
  return 0;
}

FailureOr<CostTable> mlir::moe::computeCostTable(func::FuncOp func, int64_t tokens) {
  CostTable table;
  bool hasMoe = false;
  func.walk([&](Operation *op) { hasMoe |= isa<MoeDialect>(op->getDialect()); });
  if (!hasMoe)
    return table;
  // Layers are costed as their decomposition, on a copy next to `func`.
  func::FuncOp subject = func;
  if (!func.getBody().getOps<LayerOp>().empty() || [&] {
        bool nested = false;
        func.walk([&](LayerOp) { nested = true; });
        return nested;
      }()) {
    OpBuilder b(func);
    subject = cast<func::FuncOp>(b.clone(*func));
    RewritePatternSet patterns(func.getContext());
    populateMoeDecomposePatterns(patterns);
    if (failed(applyPatternsGreedily(subject, std::move(patterns)))) {
      subject.erase();
      return failure();
    }
    table.decomposed = true;
  }
  CostModel model(tokens);
  SmallVector<DispatchOp> dispatches;
  bool ok = true;
  subject.walk([&](Operation *op) {
    if (!ok || !isa<MoeDialect>(op->getDialect()))
      return;
    FailureOr<Cost> c = model.costOf(op);
    if (failed(c)) {
      ok = false;
      return;
    }
    if (auto d = dyn_cast<DispatchOp>(op))
      dispatches.push_back(d);
    const OpCost &cost = *c;
    table.total.gemmFlops += cost.gemmFlops;
    table.total.otherFlops += cost.otherFlops;
    table.total.weightBytes += cost.weightBytes;
    table.total.activationBytes += cost.activationBytes;
    table.total.networkBytes += cost.networkBytes;
    table.rows.push_back({op->getName().getStringRef().str(), lineOf(op), cost});
  });
  for (DispatchOp d : dispatches) {
    const PlanEstimate *plan = model.planOf(d.getExpertOffsets());
    table.dispatches.push_back(
        {lineOf(d), plan->filledSlots, plan->experts, plan->selectionExperts, plan->rowsPerExpert});
  }
  if (table.decomposed)
    subject.erase();
  if (!ok)
    return failure();
  return table;
}
