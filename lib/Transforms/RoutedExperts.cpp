//===- RoutedExperts.cpp - the expert half of a decomposed MoE layer ------===//

#include "moe/Transforms/RoutedExperts.h"
#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"

using namespace mlir;
using namespace mlir::moe;
namespace tb = mlir::moe::tensor_builders;
namespace scalar = mlir::moe::scalar;

/// Rows of the dispatch plan: E * C when padded to capacity, else T * S.
static int64_t planRows(CapacityAttr cap, int64_t tokens, int64_t slots, int64_t k, int64_t experts) {
  if (!cap || !cap.getPad())
    return ShapedType::isDynamic(tokens) ? ShapedType::kDynamic : tokens * slots;
  int64_t c = cap.perExpert(tokens, k, experts);
  return ShapedType::isDynamic(c) ? c : experts * c;
}

/// A bias is one more column of the weights, met by a column of ones in the
/// left operand: exact (the f32 accumulation adds bias · 1), and no new op.
static std::pair<Value, Value> withBias(OpBuilder &b, Location loc, Value lhs, Value weights, Value bias) {
  if (!bias)
    return {lhs, weights};
  auto lhsType = cast<RankedTensorType>(lhs.getType());
  Type element = lhsType.getElementType();
  auto onesType = RankedTensorType::get({lhsType.getDimSize(0), 1}, element);
  SmallVector<Value> dynamic;
  if (lhsType.isDynamicDim(0))
    dynamic.push_back(tb::dimSize(b, loc, lhs, 0));
  Value one = scalar::floatConst(b, loc, element, 1.0);
  Value ones = linalg::FillOp::create(b, loc, one, tb::empty(b, loc, onesType, dynamic)).getResult(0);
  auto biasType = cast<RankedTensorType>(bias.getType());
  Value column = tb::reshape(b, loc, bias, {biasType.getDimSize(0), biasType.getDimSize(1), 1});
  return {tensor::ConcatOp::create(b, loc, /*dim=*/1, ValueRange{lhs, ones}),
          tensor::ConcatOp::create(b, loc, /*dim=*/2, ValueRange{weights, column})};
}

/// Expert ids renumbered by the placement (`positions`, for ids below
/// their count); empty slots (-1) keep theirs.
static Value renumberExperts(OpBuilder &b, Location loc, Value indices, ArrayRef<int64_t> positions) {
  auto type = cast<RankedTensorType>(indices.getType());
  Type i32 = type.getElementType();
  SmallVector<int32_t> table(positions.begin(), positions.end());
  auto tableType = RankedTensorType::get({int64_t(table.size())}, i32);
  Value lookup = arith::ConstantOp::create(b, loc, DenseElementsAttr::get(tableType, ArrayRef<int32_t>(table)));
  MLIRContext *ctx = b.getContext();
  AffineMap id = AffineMap::getMultiDimIdentityMap(type.getRank(), ctx);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{type}, ValueRange{indices}, ValueRange{tb::emptyLike(b, loc, indices, i32)},
      ArrayRef<AffineMap>{id, id}, SmallVector<utils::IteratorType>(type.getRank(), utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        Value zero = arith::ConstantIntOp::create(nb, nl, i32, 0);
        Value count = arith::ConstantIntOp::create(nb, nl, i32, int64_t(table.size()));
        Value placed = arith::AndIOp::create(
            nb, nl, arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, a[0], zero),
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, a[0], count));
        Value safe = arith::SelectOp::create(nb, nl, placed, a[0], zero);
        Value index = arith::IndexCastOp::create(nb, nl, nb.getIndexType(), safe);
        Value position = tensor::ExtractOp::create(nb, nl, lookup, ValueRange{index});
        linalg::YieldOp::create(nb, nl, ValueRange{arith::SelectOp::create(nb, nl, placed, position, a[0])});
      });
  return generic.getResult(0);
}

/// The bytes of expert stack `data` ([E, ...], `expertBytes` each) that
/// `experts` lists, in its order.
static std::vector<char> gatherExpertBytes(ArrayRef<char> data, int64_t expertBytes, ArrayRef<int64_t> experts) {
  std::vector<char> bytes;
  bytes.reserve(size_t(expertBytes) * experts.size());
  for (int64_t e : experts) {
    ArrayRef<char> slice = data.slice(size_t(e * expertBytes), size_t(expertBytes));
    bytes.insert(bytes.end(), slice.begin(), slice.end());
  }
  return bytes;
}

Value mlir::moe::constantFromBytes(OpBuilder &b, Location loc, Value weights, RankedTensorType resultType,
                                   StringRef keySuffix,
                                   function_ref<std::vector<char>(ArrayRef<char> data, int64_t elementBytes)> select) {
  auto constant = weights.getDefiningOp<arith::ConstantOp>();
  if (!constant)
    return Value();
  unsigned bits = resultType.getElementType().getIntOrFloatBitWidth();
  if (bits % 8 != 0)
    return Value();
  int64_t elementBytes = int64_t(bits / 8);
  if (auto dense = dyn_cast<DenseElementsAttr>(constant.getValue()); dense && !dense.isSplat())
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::getFromRawBuffer(resultType, select(dense.getRawData(), elementBytes)));
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(constant.getValue())) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return Value();
    std::vector<char> bytes = select(blob->getData(), elementBytes);
    auto attr = DenseResourceElementsAttr::get(resultType, (resource.getRawHandle().getKey() + keySuffix).str(),
                                               HeapAsmResourceBlob::allocateAndCopyWithAlign(bytes, alignof(uint64_t)));
    return arith::ConstantOp::create(b, loc, cast<TypedAttr>(attr));
  }
  return Value();
}

/// A constant weight stack's experts as a new constant of their own: each
/// rank's code then holds its experts' bytes only, and no copy is made when
/// the program runs. Null when `weights` is not such a constant.
static Value selectConstantExperts(OpBuilder &b, Location loc, Value weights, ArrayRef<int64_t> experts) {
  auto type = cast<RankedTensorType>(weights.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape[0] = int64_t(experts.size());
  auto resultType = RankedTensorType::get(shape, type.getElementType());
  if (auto constant = weights.getDefiningOp<arith::ConstantOp>())
    if (auto dense = dyn_cast<DenseElementsAttr>(constant.getValue()); dense && dense.isSplat())
      return arith::ConstantOp::create(b, loc, dense.resizeSplat(resultType));
  return constantFromBytes(b, loc, weights, resultType, "_experts", [&](ArrayRef<char> data, int64_t elementBytes) {
    return gatherExpertBytes(data, type.getNumElements() / type.getDimSize(0) * elementBytes, experts);
  });
}

/// The experts of `weights` ([E, ...]) that `experts` lists, in its order:
/// a constant of their own when the weights are constant, else one slice
/// per run of consecutive ids (a view of the stack when the run is all of
/// them).
static Value selectExperts(OpBuilder &b, Location loc, Value weights, ArrayRef<int64_t> experts) {
  if (Value folded = selectConstantExperts(b, loc, weights, experts))
    return folded;
  auto type = cast<RankedTensorType>(weights.getType());
  SmallVector<Value> runs;
  for (size_t i = 0; i < experts.size();) {
    size_t j = i + 1;
    while (j < experts.size() && experts[j] == experts[j - 1] + 1)
      ++j;
    SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0)), sizes, strides(type.getRank(), b.getIndexAttr(1));
    for (int64_t size : type.getShape())
      sizes.push_back(b.getIndexAttr(size));
    offsets[0] = b.getIndexAttr(experts[i]);
    sizes[0] = b.getIndexAttr(int64_t(j - i));
    runs.push_back(tensor::ExtractSliceOp::create(b, loc, weights, offsets, sizes, strides));
    i = j;
  }
  if (runs.size() == 1)
    return runs.front();
  return tensor::ConcatOp::create(b, loc, /*dim=*/0, runs);
}

Value mlir::moe::planRowPriorities(OpBuilder &b, Location loc, DispatchOp plan, DropPolicy drop,
                                   int64_t slotsPerCopy) {
  if (drop != DropPolicy::probs && drop != DropPolicy::slot_position)
    return nullptr;
  Value rowToken = plan.getRowToken(), slotRow = plan.getSlotRow(), slotWeight = plan.getSlotWeight();
  int64_t slots = cast<RankedTensorType>(slotRow.getType()).getDimSize(1);
  Value init = tb::emptyLike(b, loc, rowToken, b.getF32Type());
  MLIRContext *ctx = b.getContext();
  AffineMap id = AffineMap::getMultiDimIdentityMap(1, ctx);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{init.getType()}, ValueRange{rowToken}, ValueRange{init},
      ArrayRef<AffineMap>{id, id}, SmallVector<utils::IteratorType>{utils::IteratorType::parallel},
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        Value row = arith::IndexCastOp::create(nb, nl, nb.getI32Type(), linalg::IndexOp::create(nb, nl, 0));
        Value zeroI = arith::ConstantIntOp::create(nb, nl, nb.getI32Type(), 0);
        Value isRow = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, a[0], zeroI);
        Value token = arith::IndexCastOp::create(nb, nl, nb.getIndexType(),
                                                 arith::SelectOp::create(nb, nl, isRow, a[0], zeroI));
        // The row is one slot of its token: the slot whose row it is.
        Value w = arith::ConstantOp::create(nb, nl, nb.getF32FloatAttr(0.0f));
        for (int64_t k = 0; k < slots; ++k) {
          Value kIndex = arith::ConstantIndexOp::create(nb, nl, k);
          Value slot = tensor::ExtractOp::create(nb, nl, slotRow, ValueRange{token, kIndex});
          Value weight =
              drop == DropPolicy::probs
                  ? tensor::ExtractOp::create(nb, nl, slotWeight, ValueRange{token, kIndex}).getResult()
                  : arith::ConstantOp::create(nb, nl, nb.getF32FloatAttr(-float(k % slotsPerCopy))).getResult();
          Value match = arith::AndIOp::create(
              nb, nl, isRow, arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, slot, row));
          w = arith::SelectOp::create(nb, nl, match, weight, w);
        }
        linalg::YieldOp::create(nb, nl, ValueRange{w});
      });
  return generic.getResult(0);
}

/// The FFN of an expert-parallel layer: this rank's experts on the rows
/// the exchange brings, their results sent back, then the combine.
static Value buildExpertParallelFfn(OpBuilder &b, Location loc, const RoutedExperts &r, DispatchOp plan,
                                    Value grouped) {
  const ExpertPlacement &placement = *r.placement;
  auto groupedType = cast<RankedTensorType>(grouped.getType());
  Type element = groupedType.getElementType();
  int64_t hidden = groupedType.getDimSize(1);
  ArrayRef<int64_t> mine = placement.expertsOf(r.rank);
  int64_t local = int64_t(mine.size()), ranks = placement.ranks();
  Type i32 = b.getI32Type();
  // A capacity is enforced where all of an expert's rows meet: its rank.
  IntegerAttr k, experts;
  Value rowWeights;
  if (r.capacity) {
    k = b.getI64IntegerAttr(r.k);
    experts = b.getI64IntegerAttr(r.numExperts);
    rowWeights = planRowPriorities(b, loc, plan, r.capacity.getDrop(), r.k);
  }
  auto received = AllToAllDispatchOp::create(
      b, loc, RankedTensorType::get({ShapedType::kDynamic, hidden}, element),
      RankedTensorType::get({local + 1}, i32), RankedTensorType::get({ranks, local}, i32), grouped,
      plan.getExpertOffsets(), rowWeights, placement.bounds, r.rank, r.capacity, k, experts);
  auto receivedOf = [&](int64_t columns) { return RankedTensorType::get({ShapedType::kDynamic, columns}, element); };
  auto mineOf = [&](Value v) { return v ? selectExperts(b, loc, v, mine) : Value(); };
  int64_t upRows = cast<RankedTensorType>(r.up.getType()).getDimSize(1);
  int64_t ffn = cast<RankedTensorType>(r.down.getType()).getDimSize(2);
  auto [upLhs, up] = withBias(b, loc, received.getReceived(), mineOf(r.up), mineOf(r.upBias));
  Value h = GroupedMatmulOp::create(b, loc, receivedOf(upRows), upLhs, up, received.getLocalOffsets(),
                                    /*shared=*/Value());
  Value act = r.activate ? r.activate(b, loc, h, receivedOf(ffn))
                         : ActivationOp::create(b, loc, receivedOf(ffn), r.activation, h).getResult();
  // The down GEMM's results travel unrounded (f32) and are rounded once by
  // the combine, as the single-process program's fused GEMM + combine does.
  Type f32 = b.getF32Type();
  auto [downLhs, down] = withBias(b, loc, act, mineOf(r.down), mineOf(r.downBias));
  Value results = GroupedMatmulOp::create(b, loc, RankedTensorType::get({ShapedType::kDynamic, hidden}, f32),
                                          downLhs, down, received.getLocalOffsets(), /*shared=*/Value());
  Value planRows = tb::dimSize(b, loc, grouped, 0);
  Value back = AllToAllReturnOp::create(b, loc, RankedTensorType::get(groupedType.getShape(), f32), results,
                                        received.getCounts(), plan.getExpertOffsets(), planRows, placement.bounds,
                                        r.rank);
  return CombineOp::create(b, loc, r.tokens.getType(), back, plan.getSlotRow(), plan.getSlotWeight());
}

RoutedExpertsResult mlir::moe::buildRoutedExperts(OpBuilder &b, Location loc, const RoutedExperts &r) {
  if (r.placement && r.placement->split)
    return buildSplitExperts(b, loc, r);
  auto tokensType = cast<RankedTensorType>(r.tokens.getType());
  int64_t tokens = tokensType.getDimSize(0), hidden = tokensType.getDimSize(1);
  Type element = tokensType.getElementType();
  auto indicesType = cast<RankedTensorType>(r.indices.getType());
  int64_t slots = indicesType.getDimSize(1);
  // Expert parallelism plans dropless on each rank: a capacity is applied
  // where an expert's rows from every rank meet (moe.all_to_all_dispatch).
  CapacityAttr localCapacity = r.placement ? CapacityAttr() : r.capacity;
  int64_t rows = planRows(localCapacity, tokens, slots, r.k, r.numExperts);
  auto rowsOf = [&](int64_t columns) { return RankedTensorType::get({rows, columns}, element); };

  // Expert parallelism routes to slots (expert copies) numbered so that
  // each rank's are consecutive: the plan's row groups are then one block
  // per rank. Zero-computation experts move past the slots.
  Value indices = r.indices;
  int64_t planned = r.numExperts;
  if (r.placement && !r.placement->isIdentity()) {
    const ExpertPlacement &placement = *r.placement;
    int64_t extraSlots = placement.slots() - placement.experts;
    SmallVector<int64_t> table = placement.slotsFor(r.rank);
    for (int64_t e = placement.experts; e < r.numExperts; ++e)
      table.push_back(e + extraSlots);
    indices = renumberExperts(b, loc, indices, table);
    planned += extraSlots;
  }
  auto plan = DispatchOp::create(
      b, loc, RankedTensorType::get({rows}, b.getI32Type()),
      RankedTensorType::get({planned + 1}, b.getI32Type()), indicesType, r.weights.getType(),
      indices, r.weights, r.rectifyLogits, /*shared_weight=*/Value(), planned, localCapacity);
  Value grouped = PermuteOp::create(b, loc, rowsOf(hidden), r.tokens, plan.getRowToken());
  if (r.placement)
    return {buildExpertParallelFfn(b, loc, r, plan, grouped), plan.getSlotWeight()};

  int64_t upRows = cast<RankedTensorType>(r.up.getType()).getDimSize(1);
  int64_t ffn = cast<RankedTensorType>(r.down.getType()).getDimSize(2);
  auto [upLhs, upWeights] = withBias(b, loc, grouped, r.up, r.upBias);
  Value h = GroupedMatmulOp::create(b, loc, rowsOf(upRows), upLhs, upWeights, plan.getExpertOffsets(),
                                    /*shared=*/Value());
  Value act = r.activate ? r.activate(b, loc, h, rowsOf(ffn))
                         : ActivationOp::create(b, loc, rowsOf(ffn), r.activation, h).getResult();
  auto [downLhs, downWeights] = withBias(b, loc, act, r.down, r.downBias);
  Value down = GroupedMatmulOp::create(b, loc, rowsOf(hidden), downLhs, downWeights, plan.getExpertOffsets(),
                                       /*shared=*/Value());
  Value y = CombineOp::create(b, loc, tokensType, down, plan.getSlotRow(), plan.getSlotWeight());
  return {y, plan.getSlotWeight()};
}
