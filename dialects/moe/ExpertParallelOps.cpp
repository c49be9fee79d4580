//===- ExpertParallelOps.cpp - verifiers of the expert-parallel ops -------===//
//
// moe.ep_rank, moe.all_to_all_dispatch, moe.all_to_all_return and
// moe.all_gather_columns: the
// placement `bounds` and `rank` they carry, and the shapes that tie the
// exchange's two halves together. Each constraint's label names its
// negative test in test/Dialect/Moe/invalid-expert-parallel.mlir.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoeOps.h"
#include "dialects/moe/OpVerification.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::verification;

/// The largest rank count a program is compiled for: MPI's own limits are
/// far above it, and a larger placement is a typo, not a cluster.
static constexpr int64_t kMaxRanks = 1 << 16;

LogicalResult EpRankOp::verify() {
  // ep_rank_c1: at least one rank.
  int64_t ranks = getRanksAttr().getInt();
  if (ranks < 1 || ranks > kMaxRanks)
    return emitOpError() << "ranks must be between 1 and " << kMaxRanks << ", got " << ranks;
  return success();
}

/// The checks both exchange ops make of `bounds`, `rank` and the plan's
/// `offsets`; sets the number of experts the placement covers and this
/// rank's share of them.
static LogicalResult verifyPlacement(Operation *op, ArrayRef<int64_t> bounds, int64_t rank, Value offsets,
                                     int64_t &placedExperts, int64_t &localExperts) {
  // all_to_all_c1: bounds of at least one rank, from 0, never decreasing.
  if (bounds.size() < 2 || int64_t(bounds.size()) > kMaxRanks + 1)
    return op->emitOpError() << "bounds must hold ranks + 1 entries for 1 to " << kMaxRanks
                             << " ranks, got " << bounds.size();
  if (bounds.front() != 0)
    return op->emitOpError() << "bounds must start at expert 0, got " << bounds.front();
  for (size_t d = 0; d + 1 < bounds.size(); ++d)
    if (bounds[d + 1] < bounds[d])
      return op->emitOpError() << "bounds must not decrease: rank " << d << " would own experts ["
                               << bounds[d] << ", " << bounds[d + 1] << ")";
  // all_to_all_c2: this rank is one of them.
  int64_t ranks = int64_t(bounds.size()) - 1;
  if (rank < 0 || rank >= ranks)
    return op->emitOpError() << "rank " << rank << " is not one of the " << ranks << " ranks of bounds";
  placedExperts = bounds.back();
  localExperts = bounds[rank + 1] - bounds[rank];
  // all_to_all_c3: the plan describes every placed expert.
  if (failed(ShapeChecker(op).rank("offsets", offsets.getType(), 1)))
    return failure();
  int64_t planned = dimOf(offsets, 0);
  if (!ShapedType::isDynamic(planned) && planned - 1 < placedExperts)
    return op->emitOpError() << "offsets describe " << planned - 1 << " experts, fewer than the "
                             << placedExperts << " the bounds place";
  return success();
}

LogicalResult AllToAllDispatchOp::verify() {
  ShapeChecker check(*this);
  int64_t placed = 0, local = 0;
  if (failed(verifyPlacement(*this, getBounds(), getRank(), getOffsets(), placed, local)))
    return failure();
  int64_t ranks = int64_t(getBounds().size()) - 1;
  if (failed(check.rank("rows", getRows().getType(), 2)) ||
      failed(check.rank("received", getReceived().getType(), 2)) ||
      failed(check.rank("local offsets", getLocalOffsets().getType(), 1)) ||
      failed(check.rank("counts", getCounts().getType(), 2)))
    return failure();
  // all_to_all_c4: results shaped by the placement.
  if (failed(check.dim("received", getReceived().getType(), 1, dimOf(getRows(), 1), "the row width")) ||
      failed(check.sameElementType("received", getReceived().getType(), "rows", getRows().getType())) ||
      failed(check.dim("local offsets", getLocalOffsets().getType(), 0, local + 1,
                       "this rank's experts + 1")) ||
      failed(check.dim("counts", getCounts().getType(), 0, ranks, "the number of ranks")) ||
      failed(check.dim("counts", getCounts().getType(), 1, local, "this rank's experts")))
    return failure();
  // all_to_all_c6: a global capacity drops by position, or by weight with
  // one weight per row; it knows k and the layer's experts, and rectifies
  // nothing.
  if (CapacityAttr cap = getCapacityAttr()) {
    bool prioritised = cap.getDrop() != DropPolicy::position;
    if (cap.getRectify() != Rectify::none)
      return emitOpError("a global capacity keeps C rows of each expert, with no rectify");
    if (prioritised != bool(getRowWeights()))
      return emitOpError(prioritised ? "drop = probs and slot_position need the rows' priorities"
                                     : "row priorities go with drop = probs or slot_position");
    if (!getK() || *getK() < 1 || !getExperts() || *getExperts() < placed)
      return emitOpError() << "a capacity needs k >= 1 and experts >= the " << placed << " placed";
  } else if (getK() || getExperts() || getRowWeights()) {
    return emitOpError("k, experts and row priorities go with a capacity");
  }
  if (Value w = getRowWeights())
    if (failed(check.rank("row weights", w.getType(), 1)) ||
        failed(check.dim("row weights", w.getType(), 0, dimOf(getRows(), 0), "the number of rows")))
      return failure();
  return success();
}

LogicalResult AllToAllReturnOp::verify() {
  ShapeChecker check(*this);
  int64_t placed = 0, local = 0;
  if (failed(verifyPlacement(*this, getBounds(), getRank(), getOffsets(), placed, local)))
    return failure();
  int64_t ranks = int64_t(getBounds().size()) - 1;
  if (failed(check.rank("rows", getRows().getType(), 2)) ||
      failed(check.rank("counts", getCounts().getType(), 2)) ||
      failed(check.rank("result", getResult().getType(), 2)))
    return failure();
  // all_to_all_c5: counts from the matching dispatch; the result has the
  // rows' width and element type.
  if (failed(check.dim("counts", getCounts().getType(), 0, ranks, "the number of ranks")) ||
      failed(check.dim("counts", getCounts().getType(), 1, local, "this rank's experts")) ||
      failed(check.dim("result", getResult().getType(), 1, dimOf(getRows(), 1), "the row width")) ||
      failed(check.sameElementType("result", getResult().getType(), "rows", getRows().getType())))
    return failure();
  return success();
}

LogicalResult AllGatherColumnsOp::verify() {
  ShapeChecker check(*this);
  // all_gather_c1: this rank is one of at least one.
  int64_t ranks = getRanks(), rank = getRank();
  if (ranks < 1 || ranks > kMaxRanks)
    return emitOpError() << "ranks must be between 1 and " << kMaxRanks << ", got " << ranks;
  if (rank < 0 || rank >= ranks)
    return emitOpError() << "rank " << rank << " is not one of the " << ranks << " ranks";
  // all_gather_c2: the same rows, every rank's block of columns side by side.
  if (failed(check.rank("input", getInput().getType(), 2)) ||
      failed(check.rank("result", getResult().getType(), 2)) ||
      failed(check.sameElementType("result", getResult().getType(), "input", getInput().getType())) ||
      failed(check.dim("result", getResult().getType(), 0, dimOf(getInput(), 0), "the input's rows")))
    return failure();
  int64_t width = dimOf(getInput(), 1);
  if (failed(check.dim("result", getResult().getType(), 1,
                       ShapedType::isDynamic(width) ? width : ranks * width, "ranks x the input's columns")))
    return failure();
  return success();
}
