//===- SplitExperts.cpp - every expert split over the ranks (MoEShard) ----===//
//
// The FFN experts of a layer under placement=split: every rank holds a
// block of every expert, so that few large experts spread their weights and
// their work evenly over the ranks whatever the routing. Exact, unlike
// MoEShard's partial sums of the down projection: no dot product is split.
//
//   1. Each token row goes to every rank: the routing's slots are copied
//      once per rank (copy d names expert e as slot d*E + e, and rank d owns
//      slots [d*E, (d+1)*E)), so moe.all_to_all_dispatch brings every rank
//      all ranks' rows, grouped by expert, then source rank.
//   2. Rank d computes its block d of the FFN width F for every row (the
//      gate and up rows of that block): a dot product over H per element.
//   3. moe.all_gather_columns joins the blocks: every rank holds the whole
//      activation of every row.
//   4. Rank d computes its block d of the hidden width H (rows d of the
//      down projection) for every row: a dot product over all of F.
//   5. moe.all_to_all_return sends each row's block back to the row's
//      rank, into copy d of its plan; the copies side by side are the
//      rows' whole results, which the combine sums in slot order.
//
// Every element is computed by the same kernel over the same operands as
// in one process (a row's results do not depend on the other rows or
// columns of its GEMM), so the outputs are bit-identical. Blocks are
// ceil(F / N) and ceil(H / N) wide; the last rank's is padded with zero
// weights, whose columns are dropped before anything reads them.
//
//===----------------------------------------------------------------------===//

#include "moe/Transforms/RoutedExperts.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"

using namespace mlir;
using namespace mlir::moe;
namespace tb = mlir::moe::tensor_builders;

namespace {

/// Rows [start, start + size) of dimension 1 of an expert stack, followed
/// by `padded - size` zero rows.
struct RowRun {
  int64_t start, size, padded;
};

/// The block of `extent` columns that `rank` computes (rows `offset` on
/// of a stack), padded to the placement's block width.
RowRun blockOf(const ExpertPlacement &placement, int64_t extent, int64_t rank, int64_t offset = 0) {
  auto [start, end] = placement.splitBlock(extent, rank);
  return {offset + start, end - start, placement.splitWidth(extent)};
}

/// The runs of a constant stack ([E, A, B]) as a constant of their own:
/// each rank's code holds its blocks only. Null when `weights` is not such
/// a constant.
Value constantRuns(OpBuilder &b, Location loc, Value weights, ArrayRef<RowRun> runs, RankedTensorType resultType) {
  auto type = cast<RankedTensorType>(weights.getType());
  return constantFromBytes(b, loc, weights, resultType, "_block", [&](ArrayRef<char> data, int64_t elementBytes) {
    int64_t rowBytes = type.getDimSize(2) * elementBytes, expertRows = type.getDimSize(1);
    std::vector<char> bytes;
    bytes.reserve(size_t(resultType.getNumElements() * elementBytes));
    for (int64_t e = 0; e < type.getDimSize(0); ++e)
      for (const RowRun &run : runs) {
        ArrayRef<char> rows = data.slice(size_t((e * expertRows + run.start) * rowBytes), size_t(run.size * rowBytes));
        bytes.insert(bytes.end(), rows.begin(), rows.end());
        bytes.insert(bytes.end(), size_t((run.padded - run.size) * rowBytes), char(0));
      }
    return bytes;
  });
}

/// The runs of `weights` ([E, A, B]) side by side along dimension 1.
/// Adjacent unpadded runs are one (one rank's gate and up rows are the
/// whole stack: a view, no copy).
Value expertRuns(OpBuilder &b, Location loc, Value weights, ArrayRef<RowRun> given) {
  SmallVector<RowRun> runs;
  for (const RowRun &run : given) {
    if (!runs.empty() && runs.back().size == runs.back().padded && runs.back().start + runs.back().size == run.start) {
      runs.back().size += run.size;
      runs.back().padded += run.padded;
      continue;
    }
    runs.push_back(run);
  }
  auto type = cast<RankedTensorType>(weights.getType());
  int64_t rows = 0;
  for (const RowRun &run : runs)
    rows += run.padded;
  auto resultType = RankedTensorType::get({type.getDimSize(0), rows, type.getDimSize(2)}, type.getElementType());
  if (Value folded = constantRuns(b, loc, weights, runs, resultType))
    return folded;
  SmallVector<Value> parts;
  for (const RowRun &run : runs) {
    if (run.size > 0)
      parts.push_back(tensor::ExtractSliceOp::create(
          b, loc, weights, ArrayRef<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(run.start), b.getIndexAttr(0)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(type.getDimSize(0)), b.getIndexAttr(run.size),
                                 b.getIndexAttr(type.getDimSize(2))},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1), b.getIndexAttr(1)}));
    if (run.padded > run.size) {
      auto zerosType =
          RankedTensorType::get({type.getDimSize(0), run.padded - run.size, type.getDimSize(2)}, type.getElementType());
      Value zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(type.getElementType()));
      parts.push_back(linalg::FillOp::create(b, loc, zero, tb::empty(b, loc, zerosType, {})).getResult(0));
    }
  }
  return parts.size() == 1 ? parts.front() : tensor::ConcatOp::create(b, loc, /*dim=*/1, parts).getResult();
}

/// `indices` ([T, S]) once per rank side by side: copy d names FFN expert
/// e as slot d * experts + e; other ids (zero-computation experts, empty
/// slots) become empty slots, since they are never sent.
Value slotsPerRank(OpBuilder &b, Location loc, Value indices, int64_t ranks, int64_t experts) {
  auto type = cast<RankedTensorType>(indices.getType());
  Type i32 = type.getElementType();
  MLIRContext *ctx = b.getContext();
  AffineMap id = AffineMap::getMultiDimIdentityMap(2, ctx);
  SmallVector<Value> copies;
  for (int64_t d = 0; d < ranks; ++d) {
    auto generic = linalg::GenericOp::create(
        b, loc, TypeRange{type}, ValueRange{indices}, ValueRange{tb::emptyLike(b, loc, indices, i32)},
        ArrayRef<AffineMap>{id, id}, SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
        [&](OpBuilder &nb, Location nl, ValueRange a) {
          Value zero = arith::ConstantIntOp::create(nb, nl, i32, 0);
          Value count = arith::ConstantIntOp::create(nb, nl, i32, experts);
          Value ffn = arith::AndIOp::create(nb, nl, arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, a[0], zero),
                                            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, a[0], count));
          Value slot = arith::AddIOp::create(nb, nl, a[0], arith::ConstantIntOp::create(nb, nl, i32, d * experts));
          Value empty = arith::ConstantIntOp::create(nb, nl, i32, -1);
          linalg::YieldOp::create(nb, nl, ValueRange{arith::SelectOp::create(nb, nl, ffn, slot, empty)});
        });
    copies.push_back(generic.getResult(0));
  }
  return copies.size() == 1 ? copies.front() : tensor::ConcatOp::create(b, loc, /*dim=*/1, copies).getResult();
}

/// `n` copies of `v` side by side along dimension 1.
Value sideBySide(OpBuilder &b, Location loc, Value v, int64_t n) {
  if (n == 1)
    return v;
  return tensor::ConcatOp::create(b, loc, /*dim=*/1, SmallVector<Value>(n, v));
}

/// Columns [0, width) of a 2-D tensor (all of them: `v` itself).
Value leadingColumns(OpBuilder &b, Location loc, Value v, int64_t width) {
  auto type = cast<RankedTensorType>(v.getType());
  if (type.getDimSize(1) == width)
    return v;
  OpFoldResult rows = type.isDynamicDim(0) ? OpFoldResult(tb::dimSize(b, loc, v, 0)) : b.getIndexAttr(type.getDimSize(0));
  return tensor::ExtractSliceOp::create(b, loc, v, ArrayRef<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(0)},
                                        ArrayRef<OpFoldResult>{rows, b.getIndexAttr(width)},
                                        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
}

} // namespace

RoutedExpertsResult mlir::moe::buildSplitExperts(OpBuilder &b, Location loc, const RoutedExperts &r) {
  const ExpertPlacement &placement = *r.placement;
  int64_t ranks = placement.ranks(), experts = placement.experts, rank = r.rank;
  auto tokensType = cast<RankedTensorType>(r.tokens.getType());
  int64_t tokens = tokensType.getDimSize(0), hidden = tokensType.getDimSize(1);
  Type element = tokensType.getElementType(), i32 = b.getI32Type(), f32 = b.getF32Type();
  int64_t slots = cast<RankedTensorType>(r.indices.getType()).getDimSize(1);

  // 1. Every slot once per rank; the plan is dropless (a capacity is
  // applied where an expert's rows of all ranks meet, as with placed experts).
  int64_t copies = ranks * slots;
  int64_t rows = ShapedType::isDynamic(tokens) ? ShapedType::kDynamic : tokens * copies;
  Value indices = slotsPerRank(b, loc, r.indices, ranks, experts);
  Value weights = sideBySide(b, loc, r.weights, ranks);
  auto plan = DispatchOp::create(b, loc, RankedTensorType::get({rows}, i32),
                                 RankedTensorType::get({ranks * experts + 1}, i32), indices.getType(),
                                 weights.getType(), indices, weights, /*logits=*/Value(), /*shared_weight=*/Value(),
                                 ranks * experts, /*capacity=*/CapacityAttr());
  Value grouped = PermuteOp::create(b, loc, RankedTensorType::get({rows, hidden}, element), r.tokens,
                                    plan.getRowToken());
  // Each token is k slots in every copy: k * ranks rows of ranks * E slots
  // give one process's C.
  IntegerAttr k, planned;
  Value rowWeights;
  if (r.capacity) {
    k = b.getI64IntegerAttr(r.k * ranks);
    planned = b.getI64IntegerAttr(r.numExperts * ranks);
    rowWeights = planRowPriorities(b, loc, plan, r.capacity.getDrop(), r.k);
  }
  auto received = AllToAllDispatchOp::create(
      b, loc, RankedTensorType::get({ShapedType::kDynamic, hidden}, element), RankedTensorType::get({experts + 1}, i32),
      RankedTensorType::get({ranks, experts}, i32), grouped, plan.getExpertOffsets(), rowWeights, placement.bounds,
      rank, r.capacity, k, planned);
  auto receivedOf = [&](int64_t columns, Type type) {
    return RankedTensorType::get({ShapedType::kDynamic, columns}, type);
  };

  // 2. This rank's block of the FFN width: its gate and up rows.
  int64_t ffn = cast<RankedTensorType>(r.down.getType()).getDimSize(2);
  int64_t upRows = cast<RankedTensorType>(r.up.getType()).getDimSize(1);
  SmallVector<RowRun> upRuns{blockOf(placement, ffn, rank)};
  if (upRows == 2 * ffn && isGated(r.activation))
    upRuns.push_back(blockOf(placement, ffn, rank, /*offset=*/ffn));
  int64_t ffnBlock = upRuns.front().padded;
  Value up = expertRuns(b, loc, r.up, upRuns);
  Value h = GroupedMatmulOp::create(b, loc, receivedOf(ffnBlock * int64_t(upRuns.size()), element),
                                    received.getReceived(), up, received.getLocalOffsets(), /*shared=*/Value());
  Value act = ActivationOp::create(b, loc, receivedOf(ffnBlock, element), r.activation, h);

  // 3. The whole width, for the rows of every rank.
  Value joined = AllGatherColumnsOp::create(b, loc, receivedOf(ranks * ffnBlock, element), act, ranks, rank);
  joined = leadingColumns(b, loc, joined, ffn);

  // 4. This rank's block of the hidden width, unrounded (rounded once by
  // the combine, as the single-process GEMM + combine does).
  RowRun hiddenRun = blockOf(placement, hidden, rank);
  Value down = expertRuns(b, loc, r.down, {hiddenRun});
  Value results = GroupedMatmulOp::create(b, loc, receivedOf(hiddenRun.padded, f32), joined, down,
                                          received.getLocalOffsets(), /*shared=*/Value());

  // 5. Back to the rows' ranks: copy d of the plan gets block d.
  Value planRows = tb::dimSize(b, loc, grouped, 0);
  Value back = AllToAllReturnOp::create(b, loc, RankedTensorType::get({rows, hiddenRun.padded}, f32), results,
                                        received.getCounts(), plan.getExpertOffsets(), planRows, placement.bounds,
                                        rank);
  // Copy d's rows are [d * B, (d + 1) * B), B = the rows of copy 0.
  Value blockRows = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      tensor::ExtractOp::create(b, loc, plan.getExpertOffsets(), ValueRange{arith::ConstantIndexOp::create(b, loc, experts)}));
  SmallVector<Value> blocks;
  for (int64_t d = 0; d < ranks; ++d) {
    Value start = arith::MulIOp::create(b, loc, blockRows, arith::ConstantIndexOp::create(b, loc, d));
    blocks.push_back(tensor::ExtractSliceOp::create(
        b, loc, RankedTensorType::get({ShapedType::kDynamic, hiddenRun.padded}, f32), back,
        ArrayRef<OpFoldResult>{start, b.getIndexAttr(0)}, ArrayRef<OpFoldResult>{blockRows, b.getIndexAttr(hiddenRun.padded)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)}));
  }
  Value whole = blocks.size() == 1 ? blocks.front() : tensor::ConcatOp::create(b, loc, /*dim=*/1, blocks).getResult();
  whole = leadingColumns(b, loc, whole, hidden);

  // The slots of copy 0 point at those rows.
  auto firstCopy = [&](Value v) {
    auto type = cast<RankedTensorType>(v.getType());
    OpFoldResult t = ShapedType::isDynamic(tokens) ? OpFoldResult(tb::dimSize(b, loc, v, 0)) : b.getIndexAttr(tokens);
    return tensor::ExtractSliceOp::create(b, loc, RankedTensorType::get({tokens, slots}, type.getElementType()), v,
                                          ArrayRef<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(0)},
                                          ArrayRef<OpFoldResult>{t, b.getIndexAttr(slots)},
                                          ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)})
        .getResult();
  };
  Value slotRow = firstCopy(plan.getSlotRow());
  Value slotWeight = firstCopy(plan.getSlotWeight());
  Value y = CombineOp::create(b, loc, tokensType, whole, slotRow, slotWeight);
  // Zero-computation experts weigh their slots by the routing (no capacity
  // goes with them here).
  return {y, r.weights};
}
