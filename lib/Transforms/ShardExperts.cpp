//===- ShardExperts.cpp - the expert-parallel form of a program -----------===//
//
// moe-shard-experts: one private copy of each public function per rank, in
// which every moe.layer is decomposed with its experts placed over the
// ranks (buildDecomposedLayer with an ExpertPlacement), and the public
// function itself becomes a dispatch on moe.ep_rank. The exactness argument
// is in the pass description (include/moe/Transforms/Passes.td).
//
//===----------------------------------------------------------------------===//

#include "moe/Transforms/Passes.h"
#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/DecomposeLayer.h"
#include "moe/Transforms/ExpertPlacement.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/Support/FormatVariadic.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOESHARDEXPERTS
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// The layers of `function`, in the order they appear.
SmallVector<LayerOp> layersOf(func::FuncOp function) {
  SmallVector<LayerOp> layers;
  function.walk([&](LayerOp layer) { layers.push_back(layer); });
  return layers;
}

/// A value of `type` for the rank that is none of the compiled ones (the
/// runtime has already failed the call): zero, with 0 rows where dynamic.
Value emptyResult(OpBuilder &b, Location loc, Type type) {
  if (auto tensor = dyn_cast<RankedTensorType>(type)) {
    SmallVector<int64_t> shape(tensor.getShape());
    for (int64_t &d : shape)
      if (ShapedType::isDynamic(d))
        d = 0;
    Value zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(tensor.getElementType()));
    Value filled = linalg::FillOp::create(
                       b, loc, zero,
                       tensor::EmptyOp::create(b, loc, shape, tensor.getElementType()).getResult())
                       .getResult(0);
    return tensor::CastOp::create(b, loc, tensor, filled);
  }
  return arith::ConstantOp::create(b, loc, b.getZeroAttr(type));
}

/// Replaces `function`'s body with a call of `perRank[moe.ep_rank]`.
void dispatchOnRank(func::FuncOp function, ArrayRef<func::FuncOp> perRank) {
  Location loc = function.getLoc();
  function.eraseBody();
  Block *entry = function.addEntryBlock();
  OpBuilder b = OpBuilder::atBlockBegin(entry);
  TypeRange results = function.getResultTypes();
  Value rank = EpRankOp::create(b, loc, b.getIndexType(), int64_t(perRank.size()));
  // if rank == 0 {...} else if rank == 1 {...} ... else {empty}
  std::function<SmallVector<Value>(OpBuilder &, size_t)> branch = [&](OpBuilder &nb, size_t r) {
    if (r == perRank.size()) {
      SmallVector<Value> empty;
      for (Type type : results)
        empty.push_back(emptyResult(nb, loc, type));
      return empty;
    }
    Value isRank = arith::CmpIOp::create(nb, loc, arith::CmpIPredicate::eq, rank,
                                         arith::ConstantIndexOp::create(nb, loc, int64_t(r)));
    auto select = scf::IfOp::create(
        nb, loc, isRank,
        [&](OpBuilder &tb, Location tl) {
          auto call = func::CallOp::create(tb, tl, perRank[r], entry->getArguments());
          scf::YieldOp::create(tb, tl, call.getResults());
        },
        [&](OpBuilder &eb, Location el) { scf::YieldOp::create(eb, el, branch(eb, r + 1)); });
    return SmallVector<Value>(select.getResults());
  };
  func::ReturnOp::create(b, loc, branch(b, 0));
}

struct MoeShardExpertsPass : mlir::moe::impl::MoeShardExpertsBase<MoeShardExpertsPass> {
  using MoeShardExpertsBase::MoeShardExpertsBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::optional<PlacementPolicy> policy = parsePlacementPolicy(placement);
    if (!policy) {
      module.emitError() << "moe-shard-experts: unknown placement '" << placement
                         << "' (contiguous, round-robin, balanced or split)";
      return signalPassFailure();
    }
    if (ranks < 1) {
      module.emitError() << "moe-shard-experts: ranks must be at least 1, got " << int64_t(ranks);
      return signalPassFailure();
    }
    SmallVector<func::FuncOp> functions;
    int64_t totalExperts = 0, totalLayers = 0;
    for (auto function : module.getOps<func::FuncOp>()) {
      if (!function.isPublic() || function.isExternal())
        continue;
      SmallVector<LayerOp> layers = layersOf(function);
      if (layers.empty())
        continue;
      functions.push_back(function);
      for (LayerOp layer : layers)
        totalExperts += layer.getNumFfnExperts();
      totalLayers += int64_t(layers.size());
    }
    if (functions.empty()) {
      module.emitError("moe-shard-experts: the program has no moe.layer; expert parallelism needs "
                       "a recognised MoE layer (see the importer's remarks for why a block was not raised)");
      return signalPassFailure();
    }
    // Loads: one row of E for every layer, or one row per layer.
    bool perLayerLoads = int64_t(expertLoads.size()) == totalExperts && totalLayers > 1;
    int64_t loadOffset = 0;

    for (func::FuncOp function : functions) {
      SmallVector<LayerOp> layers = layersOf(function);
      SmallVector<ExpertPlacement> placements;
      for (LayerOp layer : layers) {
        int64_t experts = layer.getNumFfnExperts();
        // A global capacity is enforced by each expert's owner, which sees
        // the expert's rows of every rank in global token order (and their
        // weights for probs, their slots for slot_position).
        if (CapacityAttr cap = layer.getCapacityAttr()) {
          const char *why = cap.getRectify() != Rectify::none  ? "no Rectify-Router rectification"
                            : layer.getNumExperts() != experts   ? "no zero-computation experts (their slots count "
                                                                   "against the capacity on the token's rank)"
                            : replicas > 0                       ? "no replicas (the capacity is per expert, not "
                                                                   "per copy)"
                                                                 : nullptr;
          if (why) {
            layer.emitError() << "moe-shard-experts: a layer with a capacity is sharded with " << why;
            return signalPassFailure();
          }
        }
        if (layer.getFfnUpBias() && *policy == PlacementPolicy::split) {
          layer.emitError("moe-shard-experts: placement=split does not split expert biases; place whole "
                          "experts (contiguous, round-robin or balanced)");
          return signalPassFailure();
        }
        ArrayRef<double> loads;
        if (perLayerLoads) {
          loads = ArrayRef<double>(expertLoads).slice(loadOffset, experts);
          loadOffset += experts;
        } else if (!expertLoads.empty()) {
          if (int64_t(expertLoads.size()) != experts) {
            layer.emitError() << "moe-shard-experts: expert-loads has " << expertLoads.size()
                              << " values; this layer has " << experts << " FFN experts and the program "
                              << totalExperts << " over " << totalLayers << " layers";
            return signalPassFailure();
          }
          loads = expertLoads;
        }
        std::string error;
        std::optional<ExpertPlacement> placed = placeExperts(experts, ranks, *policy, loads, replicas, error);
        if (!placed) {
          layer.emitError() << "moe-shard-experts: " << error;
          return signalPassFailure();
        }
        if (placed->split)
          reportSplit(layer, *placed);
        else
          reportPlacement(layer, *placed, loads, *policy);
        placements.push_back(std::move(*placed));
      }

      SmallVector<func::FuncOp> perRank;
      SymbolTable symbols(module);
      Operation *last = function;
      for (int64_t r = 0; r < ranks; ++r) {
        auto copy = cast<func::FuncOp>(function->clone());
        copy.setSymName((function.getSymName() + "__rank" + Twine(r)).str());
        copy.setPrivate();
        // A name the module already uses gets a suffix.
        symbols.insert(copy, std::next(Block::iterator(last)));
        last = copy;
        for (auto [layer, placed] : llvm::zip_equal(layersOf(copy), placements)) {
          OpBuilder b(layer);
          DecomposedLayer parts = buildDecomposedLayer(b, layer, &placed, r);
          layer.getY().replaceAllUsesWith(parts.y);
          layer.getLogits().replaceAllUsesWith(parts.logits);
          layer.erase();
        }
        perRank.push_back(copy);
      }
      dispatchOnRank(function, perRank);
    }
  }

  /// A remark on `layer` under placement=split: each rank's blocks and what
  /// a routed row costs to move.
  void reportSplit(LayerOp layer, const ExpertPlacement &placed) {
    auto xType = cast<RankedTensorType>(layer.getX().getType());
    int64_t hidden = xType.getDimSize(1), bytes = int64_t(xType.getElementTypeBitWidth() / 8);
    int64_t ffn = cast<RankedTensorType>(layer.getFfnDown().getType()).getDimSize(2);
    int64_t n = placed.ranks();
    auto block = [&](int64_t extent, int64_t d) {
      auto [start, end] = placed.splitBlock(extent, d);
      return llvm::formatv("[{0},{1})", start, end).str();
    };
    InFlightDiagnostic remark = layer.emitRemark();
    remark << "expert placement (split, " << n << " ranks): every rank computes all " << placed.experts
           << " experts, rank d its d-th block of the FFN width " << ffn << " and of the hidden width " << hidden
           << ":";
    for (int64_t d = 0; d < n; ++d)
      remark << (d ? ";" : "") << " rank " << d << " " << block(ffn, d) << " and " << block(hidden, d);
    remark << "; each routed row sends " << hidden * bytes << " bytes to each other rank, its activations ("
           << ffn * bytes << " bytes) are gathered by every rank, and " << placed.splitWidth(hidden) * 4
           << " bytes of results come back from each other rank";
  }

  /// A remark on `layer`: who owns which experts, each rank's expected share
  /// of the routed rows, and what a token row costs to move.
  void reportPlacement(LayerOp layer, const ExpertPlacement &placed, ArrayRef<double> loads,
                       PlacementPolicy policy) {
    int64_t experts = layer.getNumFfnExperts();
    double total = 0;
    for (int64_t e = 0; e < experts; ++e)
      total += loads.empty() ? 1.0 : loads[e];
    auto xType = cast<RankedTensorType>(layer.getX().getType());
    int64_t rowBytes = xType.getDimSize(1) * int64_t(xType.getElementTypeBitWidth() / 8);
    InFlightDiagnostic remark = layer.emitRemark();
    remark << "expert placement (" << placementPolicyName(policy) << ", " << int64_t(ranks) << " ranks";
    if (!loads.empty())
      remark << ", measured loads";
    remark << "):";
    if (placed.slots() > experts)
      remark << " " << placed.slots() - experts << " replicas;";
    // A replicated expert's rows are split among its copies.
    SmallVector<int64_t> copies(experts, 0);
    for (int64_t e : placed.order)
      ++copies[e];
    for (int64_t r = 0; r < placed.ranks(); ++r) {
      double share = 0;
      remark << (r ? ";" : "") << " rank " << r << " experts [";
      for (auto [i, e] : llvm::enumerate(placed.expertsOf(r))) {
        remark << (i ? "," : "") << e;
        share += (loads.empty() ? 1.0 : loads[e]) / double(copies[e]);
      }
      remark << "] " << llvm::formatv("{0:F1}", total > 0 ? 100.0 * share / total : 0.0) << "% of rows";
    }
    // Rows that leave their rank: those whose expert's chosen copy is elsewhere.
    double offRank = 0;
    for (int64_t r = 0; r < placed.ranks(); ++r) {
      SmallVector<int64_t> slots = placed.slotsFor(r);
      for (int64_t e = 0; e < experts; ++e)
        if (slots[e] < placed.bounds[r] || slots[e] >= placed.bounds[r + 1])
          offRank += (loads.empty() ? 1.0 : loads[e]) / double(placed.ranks());
    }
    remark << "; each routed row sent to another rank moves " << rowBytes << " bytes there and "
           << rowBytes << " back (expected share sent off-rank with tokens spread evenly: "
           << llvm::formatv("{0:F1}", total > 0 ? 100.0 * offRank / total : 0.0) << "%)";
  }
};

} // namespace
