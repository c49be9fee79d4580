//===- ExpertOps.cpp - verifiers of the dispatch and expert ops -----------===//
//
// moe.dispatch, permute, combine, and the expert computation: the grouped
// matmuls, dequantize, activation, zero_compute, dense_ffn, dense_gates,
// compose_experts, merge_experts. Each constraint's label names its
// negative test in test/Dialect/Moe/.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoeOps.h"
#include "dialects/moe/OpVerification.h"

#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/STLExtras.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::verification;

// Dispatch and combine
//===----------------------------------------------------------------------===//

LogicalResult DispatchOp::verify() {
  ShapeChecker check(*this);
  if (failed(verifySlots(check, getWeights(), getIndices())))
    return failure();
  int64_t tokens = dimOf(getIndices(), 0), slots = dimOf(getIndices(), 1);
  // dispatch_c1: between 1 and kMaxExperts experts (read signed: the
  // attribute may hold any i64).
  int64_t experts = getNumExpertsAttr().getInt();
  if (failed(verifyExpertCount(*this, experts)))
    return failure();
  CapacityAttr cap = getCapacityAttr();
  bool fillIn = cap && cap.fillsIn();
  bool intra = cap && cap.rectifiesIntraDevice();
  // dispatch_c2: fill-in reads a (k+1)-th column; intra-device needs logits
  // and a placement that divides the experts.
  if (fillIn && !ShapedType::isDynamic(slots) && slots < 2)
    return emitOpError("fill_in rectification needs a (k+1)-th selection column");
  if (intra && !getLogits())
    return emitOpError("intra_device rectification needs the router logits");
  if (intra && experts % cap.getExpertsPerDevice() != 0)
    return emitOpError() << "experts_per_device (" << cap.getExpertsPerDevice()
                         << ") must divide the number of experts (" << experts << ")";
  if (Value logits = getLogits())
    if (failed(check.rank("logits", logits.getType(), 2)) ||
        failed(check.dim("logits", logits.getType(), 0, tokens, "the number of tokens")) ||
        failed(check.dim("logits", logits.getType(), 1, experts, "the number of experts")))
      return failure();
  // dispatch_c4: a shared slot: dropless, one weight per token, one more
  // expert and one more slot column.
  int64_t plannedExperts = experts, plannedSlots = slots;
  if (Value shared = getSharedWeight()) {
    if (cap)
      return emitOpError("a shared slot needs dropless dispatch (no capacity)");
    if (failed(check.rank("shared weight", shared.getType(), 2)) ||
        failed(check.dim("shared weight", shared.getType(), 0, tokens, "the number of tokens")) ||
        failed(check.dim("shared weight", shared.getType(), 1, 1, "1")))
      return failure();
    plannedExperts = experts + 1;
    plannedSlots = ShapedType::isDynamic(slots) ? slots : slots + 1;
  }

  // dispatch_c3: result shapes. R = E * C when padded to capacity, else T * K.
  int64_t rows = ShapedType::isDynamic(tokens) || ShapedType::isDynamic(plannedSlots)
                     ? ShapedType::kDynamic
                     : tokens * plannedSlots;
  if (cap && cap.getPad()) {
    int64_t k = ShapedType::isDynamic(slots) ? slots : slots - (fillIn ? 1 : 0);
    int64_t c = cap.perExpert(tokens, k, experts);
    rows = ShapedType::isDynamic(c) ? c : experts * c;
  }
  if (failed(check.rank("result row_token", getRowToken().getType(), 1)) ||
      failed(check.dim("result row_token", getRowToken().getType(), 0, rows,
                       cap && cap.getPad() ? "experts x capacity" : "tokens x slots")) ||
      failed(check.rank("result expert_offsets", getExpertOffsets().getType(), 1)) ||
      failed(check.dim("result expert_offsets", getExpertOffsets().getType(), 0, plannedExperts + 1,
                       "the number of planned experts + 1")))
    return failure();
  for (auto [name, v] : {std::pair<StringRef, Value>{"result slot_row", getSlotRow()},
                         {"result slot_weight", getSlotWeight()}})
    if (failed(check.rank(name, v.getType(), 2)) ||
        failed(check.dim(name, v.getType(), 0, tokens, "the number of tokens")) ||
        failed(check.dim(name, v.getType(), 1, plannedSlots, "the number of planned slots")))
      return failure();
  return success();
}

LogicalResult PermuteOp::verify() {
  ShapeChecker check(*this);
  // permute_c1: x [T, H], row_token [R], result [R, H] of x's element type.
  if (failed(check.rank("x", getX().getType(), 2)) ||
      failed(check.rank("row_token", getRowToken().getType(), 1)) ||
      failed(check.rank("result", getResult().getType(), 2)) ||
      failed(check.dim("result", getResult().getType(), 0, dimOf(getRowToken(), 0),
                       "the number of rows")) ||
      failed(check.dim("result", getResult().getType(), 1, dimOf(getX(), 1), "the hidden size")) ||
      failed(check.sameElementType("result", getResult().getType(), "x", getX().getType())))
    return failure();
  return success();
}

LogicalResult CombineOp::verify() {
  ShapeChecker check(*this);
  // combine_c1: rows [R, H], slots [T, K], result [T, H] of rows' element
  // type, or of any float type from f32 rows (sums of unrounded GEMM rows).
  if (failed(check.rank("rows", getRows().getType(), 2)) ||
      failed(check.rank("slot_row", getSlotRow().getType(), 2)) ||
      failed(check.sameShape("slot_weight", getSlotWeight().getType(), "slot_row",
                             getSlotRow().getType())) ||
      failed(check.rank("result", getResult().getType(), 2)) ||
      failed(check.dim("result", getResult().getType(), 0, dimOf(getSlotRow(), 0),
                       "the number of tokens")) ||
      failed(check.dim("result", getResult().getType(), 1, dimOf(getRows(), 1),
                       "the hidden size")))
    return failure();
  if (getElementTypeOrSelf(getRows().getType()).isF32())
    return success();
  return check.sameElementType("result", getResult().getType(), "rows", getRows().getType());
}

//===----------------------------------------------------------------------===//
// Expert computation
//===----------------------------------------------------------------------===//

/// The operands of a grouped matmul: lhs [R, K], weights [E, N, K] and
/// offsets with at least E + 1 entries.
static LogicalResult verifyGroupedOperands(Operation *op, ShapeChecker &check, Value lhs,
                                           Value weights, Value offsets, Value shared) {
  if (failed(check.rank("lhs", lhs.getType(), 2)) ||
      failed(check.rank("weights", weights.getType(), 3)) ||
      failed(check.rank("offsets", offsets.getType(), 1)) ||
      failed(check.dim("weights", weights.getType(), 2, dimOf(lhs, 1), "the lhs reduction size")))
    return failure();
  int64_t groups = dimOf(offsets, 0), experts = dimOf(weights, 0);
  // grouped_matmul_c3: a shared expert [N, K] is expert E_w.
  if (shared) {
    if (failed(check.rank("shared", shared.getType(), 2)) ||
        failed(check.dim("shared", shared.getType(), 0, dimOf(weights, 1), "the weights' output size")) ||
        failed(check.dim("shared", shared.getType(), 1, dimOf(weights, 2), "the lhs reduction size")))
      return failure();
    if (!ShapedType::isDynamic(experts))
      ++experts;
  }
  if (!ShapedType::isDynamic(groups) && !ShapedType::isDynamic(experts) && groups < experts + 1)
    return op->emitOpError() << "offsets (" << groups << " entries) must describe at least the "
                             << experts << " experts of the weights (" << experts + 1
                             << " entries)";
  return success();
}

LogicalResult GroupedMatmulOp::verify() {
  ShapeChecker check(*this);
  Type result = getResult().getType();
  // grouped_matmul_c1: lhs [R, K], weights [E, N, K], offsets [>= E + 1], result [R, N].
  if (failed(verifyGroupedOperands(*this, check, getLhs(), getWeights(), getOffsets(), getShared())) ||
      failed(check.rank("result", result, 2)) ||
      failed(check.dim("result", result, 0, dimOf(getLhs(), 0), "the number of rows")) ||
      failed(check.dim("result", result, 1, dimOf(getWeights(), 1), "the weights' output size")))
    return failure();
  // grouped_matmul_c2: the result keeps the activations' element type, or
  // is f32: the accumulators unrounded.
  if (getElementTypeOrSelf(result).isF32())
    return success();
  return check.sameElementType("result", result, "lhs", getLhs().getType());
}

LogicalResult GroupedMatmulActOp::verify() {
  ShapeChecker check(*this);
  Type result = getResult().getType();
  // grouped_matmul_act_c1: as grouped_matmul, and the activation's width rule.
  if (failed(verifyGroupedOperands(*this, check, getLhs(), getWeights(), getOffsets(), getShared())) ||
      failed(check.rank("result", result, 2)) ||
      failed(check.dim("result", result, 0, dimOf(getLhs(), 0), "the number of rows")) ||
      failed(check.sameElementType("result", result, "lhs", getLhs().getType())))
    return failure();
  int64_t width = dimOf(getWeights(), 1);
  if (!isGated(getKind()))
    return check.dim("result", result, 1, width, "the weights' output size");
  if (!ShapedType::isDynamic(width) && width % 2 != 0)
    return emitOpError() << stringifyActivation(getKind())
                         << " needs an even weights' output size ([gate; up]), got " << width;
  return check.dim("result", result, 1, ShapedType::isDynamic(width) ? width : width / 2,
                   "half the weights' output size");
}

LogicalResult GroupedMatmulCombineOp::verify() {
  ShapeChecker check(*this);
  Type result = getResult().getType();
  // grouped_matmul_combine_c1: as grouped_matmul; slots [T, K]; result [T, N].
  if (failed(verifyGroupedOperands(*this, check, getLhs(), getWeights(), getOffsets(), getShared())) ||
      failed(check.rank("slot_row", getSlotRow().getType(), 2)) ||
      failed(check.sameShape("slot_weight", getSlotWeight().getType(), "slot_row",
                             getSlotRow().getType())) ||
      failed(check.rank("result", result, 2)) ||
      failed(check.dim("result", result, 0, dimOf(getSlotRow(), 0), "the number of tokens")) ||
      failed(check.dim("result", result, 1, dimOf(getWeights(), 1), "the weights' output size")))
    return failure();
  return check.sameElementType("result", result, "lhs", getLhs().getType());
}

LogicalResult DequantizeOp::verify() {
  ShapeChecker check(*this);
  int64_t bits = getBitsAttr().getInt(), blockSize = getBlockSizeAttr().getInt();
  // dequantize_c1: 2, 4 or 8 bits; block_size >= 0.
  if (bits != 2 && bits != 4 && bits != 8)
    return emitOpError() << "bits must be 2, 4 or 8, got " << bits;
  if (blockSize < 0)
    return emitOpError() << "block_size must be 0 (one scale per row) or positive, got " << blockSize;
  // dequantize_c2: packed [E, N, K / (8 / bits)], result [E, N, K].
  Type packed = getPacked().getType(), result = getResult().getType();
  if (failed(check.rank("packed", packed, 3)) || failed(check.rank("result", result, 3)) ||
      failed(check.dim("result", result, 0, dimOf(getPacked(), 0), "the packed experts")) ||
      failed(check.dim("result", result, 1, dimOf(getPacked(), 1), "the packed rows")))
    return failure();
  // dequantize_c5: interleaved rows pair up.
  if (int64_t rows = dimOf(getPacked(), 1); getInterleavedRows() && !ShapedType::isDynamic(rows) && rows % 2 != 0)
    return emitOpError() << "interleaved_rows needs an even row count, got " << rows;
  int64_t bytes = dimOf(getPacked(), 2), k = dimOf(getResult(), 2);
  if (!ShapedType::isDynamic(bytes) && !ShapedType::isDynamic(k) && k != bytes * getValuesPerByte())
    return emitOpError() << "result row length (" << k << ") must be the packed row's " << bytes << " bytes times "
                         << getValuesPerByte() << " values per byte (" << bits << " bits)";
  // dequantize_c3: scales [E, N] per row or [E, N, K / block_size] per block.
  Type scales = getScales().getType();
  if (failed(check.rank("scales", scales, blockSize == 0 ? 2 : 3)) ||
      failed(check.dim("scales", scales, 0, dimOf(getResult(), 0), "the experts")) ||
      failed(check.dim("scales", scales, 1, dimOf(getResult(), 1), "the rows")))
    return failure();
  if (blockSize > 0) {
    if (!ShapedType::isDynamic(k) && k % blockSize != 0)
      return emitOpError() << "block_size " << blockSize << " must divide the row length " << k;
    if (failed(check.dim("scales", scales, 2, ShapedType::isDynamic(k) ? k : k / blockSize,
                         "the blocks per row")))
      return failure();
  }
  // dequantize_c4: one zero point per scale.
  if (Value zeroPoints = getZeroPoints())
    return check.sameShape("zero_points", zeroPoints.getType(), "scales", scales);
  return success();
}

LogicalResult ActivationOp::verify() {
  ShapeChecker check(*this);
  Type in = getInput().getType(), out = getResult().getType();
  if (failed(check.rank("input", in, 2)) || failed(check.rank("result", out, 2)) ||
      failed(check.sameElementType("result", out, "input", in)) ||
      failed(check.dim("result", out, 0, dimOf(getInput(), 0), "the number of rows")))
    return failure();
  int64_t width = dimOf(getInput(), 1);
  if (!isGated(getKind()))
    return check.dim("result", out, 1, width, "the input width");
  // activation_c1: a gated activation halves an even width.
  if (!ShapedType::isDynamic(width) && width % 2 != 0)
    return emitOpError() << stringifyActivation(getKind())
                         << " needs an even input width ([gate; up]), got " << width;
  return check.dim("result", out, 1, ShapedType::isDynamic(width) ? width : width / 2,
                   "half the input width");
}

LogicalResult ZeroComputeOp::verify() {
  ShapeChecker check(*this);
  Type x = getX().getType();
  if (failed(check.rank("x", x, 2)) || failed(verifySlots(check, getWeights(), getIndices())) ||
      failed(check.dim("indices", getIndices().getType(), 0, dimOf(getX(), 0),
                       "the number of tokens")) ||
      failed(check.sameShape("result", getResult().getType(), "x", x)) ||
      failed(check.sameElementType("result", getResult().getType(), "x", x)) ||
      failed(verifyExpertCount(*this, countExperts(getExperts()))))
    return failure();
  // zero_compute_c1: constant operands iff the set has constant experts.
  return verifyConstantExperts(*this, check, getExperts(), getConstantVectors(),
                               getConstantMix(), dimOf(getX(), 1));
}

LogicalResult DenseFfnOp::verify() {
  ShapeChecker check(*this);
  Type x = getX().getType();
  // dense_ffn_c1: x [T, H]; up [U, H], down [H, F]; result like x.
  if (failed(check.rank("x", x, 2)) ||
      failed(verifyFfnWeights(*this, check, getKind(), getUp(), getDown(), dimOf(getX(), 1),
                              /*lead=*/0, "up weight", "down weight")) ||
      failed(check.sameShape("result", getResult().getType(), "x", x)) ||
      failed(check.sameElementType("result", getResult().getType(), "x", x)))
    return failure();
  // dense_ffn_c2: the gate is one row [1, H].
  if (Value gate = getGate())
    if (failed(check.rank("gate", gate.getType(), 2)) ||
        failed(check.dim("gate", gate.getType(), 0, 1, "1")) ||
        failed(check.dim("gate", gate.getType(), 1, dimOf(getX(), 1), "the hidden size")))
      return failure();
  return success();
}

LogicalResult DenseGatesOp::verify() {
  ShapeChecker check(*this);
  // dense_gates_c1: slots [G, K] -> [G, E], E >= 1.
  if (failed(verifyExpertCount(*this, getNumExpertsAttr().getInt())))
    return failure();
  if (failed(verifySlots(check, getWeights(), getIndices())) ||
      failed(check.rank("result", getResult().getType(), 2)) ||
      failed(check.dim("result", getResult().getType(), 0, dimOf(getWeights(), 0), "the number of rows")) ||
      failed(check.dim("result", getResult().getType(), 1, getNumExperts(), "the number of experts")))
    return failure();
  return success();
}

LogicalResult ComposeExpertsOp::verify() {
  ShapeChecker check(*this);
  Type down = getDown().getType(), up = getUp().getType(), out = getResult().getType();
  // compose_experts_c1: down [E, H, F], up [E, F, H'], result [E, H, H'].
  if (failed(check.rank("down", down, 3)) || failed(check.rank("up", up, 3)) ||
      failed(check.dim("up", up, 0, dimOf(getDown(), 0), "the number of experts")) ||
      failed(check.dim("up", up, 1, dimOf(getDown(), 2), "the down weight's FFN width")) ||
      failed(check.rank("result", out, 3)) ||
      failed(check.dim("result", out, 0, dimOf(getDown(), 0), "the number of experts")) ||
      failed(check.dim("result", out, 1, dimOf(getDown(), 1), "the down weight's output size")) ||
      failed(check.dim("result", out, 2, dimOf(getUp(), 2), "the up weight's input size")))
    return failure();
  return success();
}

LogicalResult MergeExpertsOp::verify() {
  ShapeChecker check(*this);
  auto w = cast<RankedTensorType>(getWeights().getType());
  auto out = cast<RankedTensorType>(getResult().getType());
  // merge_experts_c1: weights [E, ...], gates [G, E], result [G, ...].
  if (w.getRank() < 2)
    return emitOpError() << "weights must have rank >= 2 (experts first), got " << w;
  if (failed(check.rank("gates", getGates().getType(), 2)) ||
      failed(check.dim("gates", getGates().getType(), 1, w.getDimSize(0),
                       "the number of experts")) ||
      failed(check.rank("result", out, w.getRank())) ||
      failed(check.dim("result", out, 0, dimOf(getGates(), 0), "the number of groups")) ||
      failed(check.sameElementType("result", out, "weights", w)))
    return failure();
  for (unsigned d = 1; d < w.getRank(); ++d)
    if (failed(check.dim("result", out, d, w.getDimSize(d), "the weights' dimension")))
      return failure();
  return success();
}
