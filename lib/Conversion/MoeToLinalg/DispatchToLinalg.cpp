//===- DispatchToLinalg.cpp - dispatch plan, permute, combine -------------===//
//
// moe.dispatch is a sequential algorithm over the slots in (token, slot)
// order (docs/design.md 5.3); it becomes scf loops that decide, for every
// slot, its final expert and its position among that expert's rows, and then
// turn positions into rows. moe.permute and moe.combine are linalg.generic
// gathers; combine reduces over the slots in order, so it is deterministic.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"
#include "dialects/moe/MoeOps.h"
#include "moe/Conversion/MoeToLinalg.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

namespace {

using BodyFn = function_ref<SmallVector<Value>(OpBuilder &, Location, Value, ValueRange)>;

/// A loop over [lb, ub) threading `state`; `independent` marks it for the
/// GPU mapping (its iterations write disjoint elements of the state).
SmallVector<Value> forRange(OpBuilder &b, Location loc, Value lb, Value ub, ValueRange state,
                            BodyFn body, bool independent = false) {
  auto loop = scf::ForOp::create(b, loc, lb, ub, constIndex(b, loc, 1), state,
                                 [&](OpBuilder &nb, Location nl, Value i, ValueRange iter) {
                                   scf::YieldOp::create(nb, nl, body(nb, nl, i, iter));
                                 });
  if (independent)
    markParallel(loop);
  return llvm::to_vector_of<Value>(loop.getResults());
}

/// `then` when `cond` holds, else the state unchanged.
SmallVector<Value> ifThen(OpBuilder &b, Location loc, Value cond, ValueRange state,
                          function_ref<SmallVector<Value>(OpBuilder &, Location)> then) {
  auto op = scf::IfOp::create(
      b, loc, cond,
      [&](OpBuilder &tb, Location tl) { scf::YieldOp::create(tb, tl, then(tb, tl)); },
      [&](OpBuilder &eb, Location el) { scf::YieldOp::create(eb, el, state); });
  return llvm::to_vector_of<Value>(op.getResults());
}

Value get(OpBuilder &b, Location loc, Value tensor, ValueRange at) {
  return tensor::ExtractOp::create(b, loc, tensor, at);
}
Value put(OpBuilder &b, Location loc, Value v, Value tensor, ValueRange at) {
  return tensor::InsertOp::create(b, loc, v, tensor, at);
}
Value cmpi(OpBuilder &b, Location loc, arith::CmpIPredicate p, Value x, Value y) {
  return arith::CmpIOp::create(b, loc, p, x, y);
}
Value addIndex(OpBuilder &b, Location loc, Value x, int64_t y) {
  return arith::AddIOp::create(b, loc, x, constIndex(b, loc, y));
}

/// Scan steps per dispatch chunk: small enough for (T·k / chunk)·E-way
/// parallelism at prefill sizes, large enough that a decode batch is one
/// chunk.
constexpr int64_t kDispatchChunk = 256;

/// Items [0, n) bucketed by group and ranked within it.
struct GroupRanks {
  Value bucket;  // [n] i32: item ids, group by group, each group's in item order
  Value offsets; // [groups + 1] i32: group g's items are bucket[offsets[g], offsets[g + 1])
  Value rank;    // [n] i32: how many items of its group rank before the item; -1 if no group
};

using ItemFn = function_ref<Value(OpBuilder &, Location, Value)>;

/// Ranks every item among the items of its group by `ranksBefore` (higher
/// value, or equal value and lower item id). `groupOf` gives an item's group
/// (i32; outside [0, groups) means none), `valueOf` its f32 value. A
/// counting sort buckets the items by group, keeping item order, then each
/// group's bucket is merge sorted on its own: O(n log n) work, groups in
/// parallel, where comparing every pair of items would be O(n^2).
GroupRanks rankWithinGroups(OpBuilder &b, Location loc, Value n, int64_t groups, ItemFn groupOf,
                            ItemFn valueOf) {
  using P = arith::CmpIPredicate;
  Value zero = constIndex(b, loc, 0), one = constIndex(b, loc, 1);
  Value i32One = constI32(b, loc, 1), i32None = constI32(b, loc, -1);
  auto groupIndex = [&](OpBuilder &nb, Location nl, Value item) -> std::pair<Value, Value> {
    Value g = groupOf(nb, nl, item);
    Value valid = arith::AndIOp::create(nb, nl, cmpi(nb, nl, P::sge, g, constI32(nb, nl, 0)),
                                        cmpi(nb, nl, P::slt, g, constI32(nb, nl, groups)));
    return {valid, i32ToIndex(nb, nl, arith::SelectOp::create(nb, nl, valid, g, constI32(nb, nl, 0)))};
  };
  auto itemsType = RankedTensorType::get({ShapedType::kDynamic}, b.getI32Type());
  auto offsetsType = RankedTensorType::get({groups + 1}, b.getI32Type());

  // Group g's count at g + 1, so that an inclusive scan gives the offsets.
  Value offsets = zeros(b, loc, offsetsType, {});
  offsets = forRange(b, loc, zero, n, ValueRange{offsets},
      [&](OpBuilder &b1, Location l1, Value i, ValueRange s1) {
        auto [valid, g] = groupIndex(b1, l1, i);
        return ifThen(b1, l1, valid, s1, [&](OpBuilder &b2, Location l2) -> SmallVector<Value> {
          Value at = addIndex(b2, l2, g, 1);
          return {put(b2, l2, arith::AddIOp::create(b2, l2, get(b2, l2, s1[0], {at}), i32One), s1[0], {at})};
        });
      })[0];
  offsets = forRange(b, loc, zero, constIndex(b, loc, groups), ValueRange{offsets},
      [&](OpBuilder &b1, Location l1, Value g, ValueRange s1) -> SmallVector<Value> {
        Value at = addIndex(b1, l1, g, 1);
        Value sum = arith::AddIOp::create(b1, l1, get(b1, l1, s1[0], {g}), get(b1, l1, s1[0], {at}));
        return {put(b1, l1, sum, s1[0], {at})};
      })[0];

  // The counting sort: items in order, each to its group's next free place.
  Value bucket = filled(b, loc, itemsType, {n}, i32None);
  bucket = forRange(b, loc, zero, n, ValueRange{bucket, offsets},
      [&](OpBuilder &b1, Location l1, Value i, ValueRange s1) {
        auto [valid, g] = groupIndex(b1, l1, i);
        return ifThen(b1, l1, valid, s1, [&](OpBuilder &b2, Location l2) -> SmallVector<Value> {
          Value place = get(b2, l2, s1[1], {g});
          return {put(b2, l2, indexToI32(b2, l2, i), s1[0], {i32ToIndex(b2, l2, place)}),
                  put(b2, l2, arith::AddIOp::create(b2, l2, place, i32One), s1[1], {g})};
        });
      })[0];

  // One merge pass over [lo, hi): runs of `width` merged pairwise, src -> dst.
  auto mergePass = [&](OpBuilder &b1, Location l1, Value src, Value dst, Value lo, Value hi,
                       Value width) -> Value {
    Value span = arith::MulIOp::create(b1, l1, width, constIndex(b1, l1, 2));
    Value len = arith::SubIOp::create(b1, l1, hi, lo);
    Value pairs = arith::CeilDivUIOp::create(b1, l1, len, span);
    return forRange(b1, l1, zero, pairs, ValueRange{dst},
        [&](OpBuilder &b2, Location l2, Value r, ValueRange s2) -> SmallVector<Value> {
          Value start = arith::AddIOp::create(b2, l2, lo, arith::MulIOp::create(b2, l2, r, span));
          Value mid = arith::MinUIOp::create(b2, l2, arith::AddIOp::create(b2, l2, start, width), hi);
          Value end = arith::MinUIOp::create(b2, l2, arith::AddIOp::create(b2, l2, start, span), hi);
          Value last = arith::SubIOp::create(b2, l2, end, one);
          SmallVector<Value> merged = forRange(b2, l2, start, end, ValueRange{s2[0], start, mid},
              [&](OpBuilder &b3, Location l3, Value out, ValueRange s3) -> SmallVector<Value> {
                Value left = get(b3, l3, src, {arith::MinUIOp::create(b3, l3, s3[1], last)});
                Value right = get(b3, l3, src, {arith::MinUIOp::create(b3, l3, s3[2], last)});
                Value leftDone = cmpi(b3, l3, P::uge, s3[1], mid);
                Value rightLeft = cmpi(b3, l3, P::ult, s3[2], end);
                Value rightBefore = ranksBefore(b3, l3, valueOf(b3, l3, i32ToIndex(b3, l3, right)), right,
                                                valueOf(b3, l3, i32ToIndex(b3, l3, left)), left);
                Value takeRight = arith::AndIOp::create(
                    b3, l3, rightLeft, arith::OrIOp::create(b3, l3, leftDone, rightBefore));
                Value item = arith::SelectOp::create(b3, l3, takeRight, right, left);
                Value step = arith::IndexCastUIOp::create(b3, l3, b3.getIndexType(), takeRight);
                return {put(b3, l3, item, s3[0], {out}),
                        arith::AddIOp::create(b3, l3, s3[1], arith::SubIOp::create(b3, l3, one, step)),
                        arith::AddIOp::create(b3, l3, s3[2], step)};
              });
          return {merged[0]};
        })[0];
  };

  // Pairs of passes (widths 4^p and 2·4^p) bring each sorted group back to
  // `sorted`; a group of m items needs ceil(log2 m) passes, 32 at most.
  Value sorted = bucket;
  Value scratch = filled(b, loc, itemsType, {n}, i32None);
  sorted = forRange(b, loc, zero, constIndex(b, loc, groups), ValueRange{sorted, scratch},
      [&](OpBuilder &b1, Location l1, Value g, ValueRange s1) {
        Value lo = i32ToIndex(b1, l1, get(b1, l1, offsets, {g}));
        Value hi = i32ToIndex(b1, l1, get(b1, l1, offsets, {addIndex(b1, l1, g, 1)}));
        Value len = arith::SubIOp::create(b1, l1, hi, lo);
        return forRange(b1, l1, zero, constIndex(b1, l1, 16), s1,
            [&](OpBuilder &b2, Location l2, Value p, ValueRange s2) {
              Value width = arith::ShLIOp::create(b2, l2, one, arith::AddIOp::create(b2, l2, p, p));
              return ifThen(b2, l2, cmpi(b2, l2, P::ult, width, len), s2,
                  [&](OpBuilder &b3, Location l3) -> SmallVector<Value> {
                    Value there = mergePass(b3, l3, s2[0], s2[1], lo, hi, width);
                    Value twice = arith::AddIOp::create(b3, l3, width, width);
                    return {mergePass(b3, l3, there, s2[0], lo, hi, twice), there};
                  });
            });
      }, /*independent=*/true)[0];

  Value rank = filled(b, loc, itemsType, {n}, i32None);
  rank = forRange(b, loc, zero, constIndex(b, loc, groups), ValueRange{rank},
      [&](OpBuilder &b1, Location l1, Value g, ValueRange s1) {
        Value lo = i32ToIndex(b1, l1, get(b1, l1, offsets, {g}));
        Value hi = i32ToIndex(b1, l1, get(b1, l1, offsets, {addIndex(b1, l1, g, 1)}));
        return forRange(b1, l1, lo, hi, s1, [&](OpBuilder &b2, Location l2, Value at, ValueRange s2) {
          Value item = i32ToIndex(b2, l2, get(b2, l2, sorted, {at}));
          Value r = indexToI32(b2, l2, arith::SubIOp::create(b2, l2, at, lo));
          return SmallVector<Value>{put(b2, l2, r, s2[0], {item})};
        });
      }, /*independent=*/true)[0];
  return {bucket, offsets, rank};
}

struct LowerDispatch : OpRewritePattern<DispatchOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(DispatchOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    Value indices = op.getIndices(), weights = op.getWeights(), logits = op.getLogits();
    CapacityAttr cap = op.getCapacityAttr();
    // A shared slot is one more expert (E) and one more column (K).
    Value shared = op.getSharedWeight();
    int64_t routedSlots = cast<RankedTensorType>(indices.getType()).getDimSize(1);
    int64_t experts = op.getNumExperts() + (shared ? 1 : 0);
    int64_t slots = routedSlots + (shared ? 1 : 0);
    bool fillIn = cap && cap.fillsIn();
    bool intra = cap && cap.rectifiesIntraDevice();
    int64_t primary = routedSlots - (fillIn ? 1 : 0);
    using P = arith::CmpIPredicate;

    Value zero = constIndex(b, loc, 0);
    Value tokens = dimsOf(b, loc, indices)[0];
    Value numExperts = constIndex(b, loc, experts);
    Value numPrimary = constIndex(b, loc, primary);
    Value capacity = cap ? capacityOf(b, loc, cap, tokens, primary, experts) : Value();
    Value i32Zero = constI32(b, loc, 0), i32One = constI32(b, loc, 1), i32None = constI32(b, loc, -1);
    // An id outside [0, E) of the routed experts is an empty slot, as -1 is:
    // it is never placed, rectified or filled in, nor used as an index.
    Value i32Routed = constI32(b, loc, op.getNumExperts());
    auto isRouted = [&](OpBuilder &nb, Location nl, Value e) -> Value {
      return arith::AndIOp::create(nb, nl, cmpi(nb, nl, P::sge, e, i32Zero), cmpi(nb, nl, P::slt, e, i32Routed));
    };
    Value trueV = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
    Value falseV = arith::ConstantOp::create(b, loc, b.getBoolAttr(false));

    auto slotType = cast<RankedTensorType>(op.getSlotRow().getType());
    SmallVector<Value> slotDims = {tokens, constIndex(b, loc, slots)};
    auto countsType = RankedTensorType::get({experts}, b.getI32Type());
    // State: final expert and position of every slot, rows used per expert.
    Value finalExpert = filled(b, loc, slotType, slotDims, i32None);
    Value position = filled(b, loc, slotType, slotDims, i32None);
    Value counts = zeros(b, loc, countsType, {numExperts});
    auto rectType = RankedTensorType::get({slotType.getDimSize(0)}, b.getI1Type());
    Value rectified = filled(b, loc, rectType, {tokens}, falseV);

    // Assigns slot (t, j) to expert e at its next free position.
    auto assign = [&](OpBuilder &nb, Location nl, Value t, Value j, Value e, Value base,
                      ValueRange st) -> SmallVector<Value> {
      Value eIdx = i32ToIndex(nb, nl, e);
      Value n = get(nb, nl, st[2], {eIdx});
      Value pos = base ? base : n;
      return {put(nb, nl, e, st[0], {t, j}), put(nb, nl, pos, st[1], {t, j}),
              put(nb, nl, arith::AddIOp::create(nb, nl, n, i32One), st[2], {eIdx}), st[3]};
    };

    // 1. Primary selections, in (t, k) order, up to the capacity.
    SmallVector<Value> state = {finalExpert, position, counts, rectified};
    Value numRouted = constIndex(b, loc, op.getNumExperts());
    // slot_position (GShard) visits slot-major: every token's first choice,
    // then every second choice.
    bool slotMajor = cap && cap.getDrop() == DropPolicy::slot_position;
    // The slot visited at scan step s.
    auto slotAt = [&](OpBuilder &nb, Location nl, Value s) -> std::pair<Value, Value> {
      Value major = slotMajor ? tokens : numPrimary;
      Value q = arith::DivUIOp::create(nb, nl, s, major), r = arith::RemUIOp::create(nb, nl, s, major);
      return slotMajor ? std::pair{r, q} : std::pair{q, r};
    };
    Value steps = arith::MulIOp::create(b, loc, tokens, numPrimary);
    if (!cap || cap.getDrop() != DropPolicy::probs) {
      // Chunks of kDispatchChunk scan steps x experts are independent:
      // count each expert's slots per chunk, scan the counts over the
      // chunks per expert, then number each chunk's slots from its base.
      // The same ranks as the sequential pass, with (T·k / chunk)·E-way
      // parallelism on the GPU.
      Value chunk = constIndex(b, loc, kDispatchChunk);
      Value numChunks = arith::DivUIOp::create(b, loc, addIndex(b, loc, steps, kDispatchChunk - 1), chunk);
      auto chunkRange = [&](OpBuilder &nb, Location nl, Value c) -> std::pair<Value, Value> {
        Value lo = arith::MulIOp::create(nb, nl, c, chunk);
        return {lo, arith::MinUIOp::create(nb, nl, arith::AddIOp::create(nb, nl, lo, chunk), steps)};
      };
      auto isExpert = [&](OpBuilder &nb, Location nl, Value s, Value e) {
        auto [t, j] = slotAt(nb, nl, s);
        return cmpi(nb, nl, P::eq, get(nb, nl, indices, {t, j}), e);
      };
      auto perChunkType = RankedTensorType::get({ShapedType::kDynamic, experts}, b.getI32Type());
      Value perChunk = zeros(b, loc, perChunkType, {numChunks, numExperts});
      // 1a. Slots of each expert in each chunk.
      perChunk = forRange(b, loc, zero, numChunks, ValueRange{perChunk},
          [&](OpBuilder &b0, Location l0, Value c, ValueRange s0) {
            return forRange(b0, l0, zero, numRouted, s0,
                [&](OpBuilder &b1, Location l1, Value eIdx, ValueRange s1) -> SmallVector<Value> {
                  Value e = indexToI32(b1, l1, eIdx);
                  auto [lo, hi] = chunkRange(b1, l1, c);
                  Value n = forRange(b1, l1, lo, hi, ValueRange{i32Zero},
                      [&](OpBuilder &b2, Location l2, Value st, ValueRange s2) -> SmallVector<Value> {
                        Value one = arith::ExtUIOp::create(b2, l2, b2.getI32Type(), isExpert(b2, l2, st, e));
                        return {arith::AddIOp::create(b2, l2, s2[0], one)};
                      })[0];
                  return {put(b1, l1, n, s1[0], {c, eIdx})};
                }, /*independent=*/true);
          }, /*independent=*/true)[0];
      // 1b. Per expert: each chunk's base (the expert's slots before it)
      // and the expert's rows (at most the capacity).
      SmallVector<Value> scanned = forRange(b, loc, zero, numRouted, ValueRange{perChunk, state[2]},
          [&](OpBuilder &b0, Location l0, Value eIdx, ValueRange s0) -> SmallVector<Value> {
            SmallVector<Value> run = forRange(b0, l0, zero, numChunks, ValueRange{s0[0], i32Zero},
                [&](OpBuilder &b1, Location l1, Value c, ValueRange s1) -> SmallVector<Value> {
                  Value n = get(b1, l1, s1[0], {c, eIdx});
                  return {put(b1, l1, s1[1], s1[0], {c, eIdx}), arith::AddIOp::create(b1, l1, s1[1], n)};
                });
            Value total = run[1];
            if (cap)
              total = arith::MinSIOp::create(b0, l0, total, indexToI32(b0, l0, capacity));
            return {run[0], put(b0, l0, total, s0[1], {eIdx})};
          }, /*independent=*/true);
      Value bases = scanned[0];
      state[2] = scanned[1];
      // 1c. Each chunk's slots of each expert numbered from the base;
      // ranks past the capacity are dropped.
      SmallVector<Value> placed = forRange(b, loc, zero, numChunks, ValueRange{state[0], state[1]},
          [&](OpBuilder &b0, Location l0, Value c, ValueRange s0) {
            return forRange(b0, l0, zero, numRouted, s0,
                [&](OpBuilder &b1, Location l1, Value eIdx, ValueRange s1) -> SmallVector<Value> {
                  Value e = indexToI32(b1, l1, eIdx);
                  auto [lo, hi] = chunkRange(b1, l1, c);
                  SmallVector<Value> init = llvm::to_vector(s1);
                  init.push_back(get(b1, l1, bases, {c, eIdx}));
                  SmallVector<Value> out = forRange(b1, l1, lo, hi, init,
                      [&](OpBuilder &b2, Location l2, Value st, ValueRange s2) {
                        return ifThen(b2, l2, isExpert(b2, l2, st, e), s2,
                            [&](OpBuilder &b3, Location l3) -> SmallVector<Value> {
                              auto [t, j] = slotAt(b3, l3, st);
                              Value rank = s2[2];
                              Value next = arith::AddIOp::create(b3, l3, rank, i32One);
                              Value keep = cap ? cmpi(b3, l3, P::slt, rank, indexToI32(b3, l3, capacity))
                                               : trueV;
                              SmallVector<Value> kept = ifThen(b3, l3, keep, s2.take_front(2),
                                  [&](OpBuilder &b4, Location l4) -> SmallVector<Value> {
                                    return {put(b4, l4, e, s2[0], {t, j}), put(b4, l4, rank, s2[1], {t, j})};
                                  });
                              return {kept[0], kept[1], next};
                            });
                      });
                  out.pop_back();
                  return out;
                }, /*independent=*/true);
          }, /*independent=*/true);
      state[0] = placed[0];
      state[1] = placed[1];
    } else {
      // drop = probs: each expert keeps its slots ranked below the capacity,
      // numbered in (t, k) order (experts are independent: each writes only
      // its slots and count).
      GroupRanks ranked = rankWithinGroups(b, loc, steps, op.getNumExperts(),
          [&](OpBuilder &nb, Location nl, Value s) {
            auto [t, j] = slotAt(nb, nl, s);
            Value e = get(nb, nl, indices, {t, j});
            return arith::SelectOp::create(nb, nl, isRouted(nb, nl, e), e, i32None).getResult();
          },
          [&](OpBuilder &nb, Location nl, Value s) {
            auto [t, j] = slotAt(nb, nl, s);
            return get(nb, nl, weights, {t, j});
          });
      Value limit = indexToI32(b, loc, capacity);
      state = forRange(
          b, loc, zero, numRouted, state,
          [&](OpBuilder &b0, Location l0, Value eIdx, ValueRange s0) -> SmallVector<Value> {
            Value e = indexToI32(b0, l0, eIdx);
            Value lo = i32ToIndex(b0, l0, get(b0, l0, ranked.offsets, {eIdx}));
            Value hi = i32ToIndex(b0, l0, get(b0, l0, ranked.offsets, {addIndex(b0, l0, eIdx, 1)}));
            SmallVector<Value> init = llvm::to_vector(s0);
            init.push_back(i32Zero); // rows of e so far
            SmallVector<Value> scanned = forRange(
                b0, l0, lo, hi, init, [&](OpBuilder &b1, Location l1, Value at, ValueRange s1) {
                  Value s = i32ToIndex(b1, l1, get(b1, l1, ranked.bucket, {at}));
                  Value keep = cmpi(b1, l1, P::slt, get(b1, l1, ranked.rank, {s}), limit);
                  return ifThen(b1, l1, keep, s1, [&](OpBuilder &b2, Location l2) -> SmallVector<Value> {
                    auto [t, j] = slotAt(b2, l2, s);
                    return {put(b2, l2, e, s1[0], {t, j}), put(b2, l2, s1[4], s1[1], {t, j}), s1[2],
                            s1[3], arith::AddIOp::create(b2, l2, s1[4], i32One)};
                  });
                });
            Value count = scanned.pop_back_val();
            scanned[2] = put(b0, l0, count, scanned[2], {eIdx});
            return scanned;
          },
          /*independent=*/true);
    }

    // The shared slot: every token, on expert E, after its routed slots.
    if (shared) {
      Value column = constIndex(b, loc, routedSlots);
      Value expertE = constI32(b, loc, experts - 1);
      state = forRange(b, loc, zero, tokens, state, [&](OpBuilder &nb, Location nl, Value t, ValueRange st) {
        return assign(nb, nl, t, column, expertE, Value(), st);
      });
    }

    // 2. Intra-device rectification of dropped primary slots.
    if (intra) {
      int64_t perDevice = cap.getExpertsPerDevice();
      int64_t devices = experts / perDevice;
      state = forRange(b, loc, zero, tokens, state, [&](OpBuilder &b1, Location l1, Value t, ValueRange s1) {
        // Token t lives on device floor(t * D / T).
        Value device = arith::DivUIOp::create(
            b1, l1, arith::MulIOp::create(b1, l1, t, constIndex(b1, l1, devices)), tokens);
        Value first = arith::MulIOp::create(b1, l1, device, constIndex(b1, l1, perDevice));
        Value best = bestLocalExpert(b1, l1, logits, t, first, perDevice);
        return forRange(b1, l1, zero, numPrimary, s1, [&](OpBuilder &b2, Location l2, Value j, ValueRange s2) {
          Value e = get(b2, l2, indices, {t, j});
          Value dropped = arith::AndIOp::create(
              b2, l2, isRouted(b2, l2, e),
              cmpi(b2, l2, P::slt, get(b2, l2, s2[0], {t, j}), i32Zero));
          Value h = indexToI32(b2, l2, best);
          Value free = cmpi(b2, l2, P::slt, get(b2, l2, s2[2], {best}), indexToI32(b2, l2, capacity));
          Value move = arith::AndIOp::create(b2, l2, dropped, free);
          return ifThen(b2, l2, move, s2, [&](OpBuilder &b3, Location l3) {
            SmallVector<Value> next = assign(b3, l3, t, j, h, Value(), s2);
            next[3] = put(b3, l3, trueV, s2[3], {t});
            return next;
          });
        });
      });
    }

    // 3. Fill-in: free rows take the (k+1)-th choices, best weight first.
    if (fillIn) {
      Value before = state[2];
      Value last = constIndex(b, loc, routedSlots - 1);
      // Each candidate's rank among its expert's candidates.
      Value fillRank = rankWithinGroups(b, loc, tokens, op.getNumExperts(),
          [&](OpBuilder &nb, Location nl, Value t) { return get(nb, nl, indices, {t, last}); },
          [&](OpBuilder &nb, Location nl, Value t) { return get(nb, nl, weights, {t, last}); }).rank;
      state = forRange(b, loc, zero, tokens, state, [&](OpBuilder &b1, Location l1, Value t, ValueRange s1) {
        Value e = get(b1, l1, indices, {t, last});
        Value valid = isRouted(b1, l1, e);
        return ifThen(b1, l1, valid, s1, [&](OpBuilder &b2, Location l2) -> SmallVector<Value> {
          Value eIdx = i32ToIndex(b2, l2, e);
          Value used = get(b2, l2, before, {eIdx});
          Value rank = get(b2, l2, fillRank, {t});
          Value freeRows = arith::SubIOp::create(b2, l2, indexToI32(b2, l2, capacity), used);
          Value take = cmpi(b2, l2, P::slt, rank, freeRows);
          return ifThen(b2, l2, take, s1, [&](OpBuilder &b3, Location l3) {
            return assign(b3, l3, t, last, e, arith::AddIOp::create(b3, l3, used, rank), s1);
          });
        });
      });
    }

    // 4. Offsets, then rows from positions.
    bool pad = cap && cap.getPad();
    auto offsetsType = cast<RankedTensorType>(op.getExpertOffsets().getType());
    Value offsets = zeros(b, loc, offsetsType, {constIndex(b, loc, experts + 1)});
    offsets = forRange(b, loc, zero, numExperts, ValueRange{offsets},
                       [&](OpBuilder &nb, Location nl, Value e, ValueRange st) -> SmallVector<Value> {
                         Value next;
                         if (pad)
                           next = indexToI32(nb, nl, arith::MulIOp::create(nb, nl, addIndex(nb, nl, e, 1), capacity));
                         else
                           next = arith::AddIOp::create(nb, nl, get(nb, nl, st[0], {e}),
                                                        get(nb, nl, state[2], {e}));
                         return {put(nb, nl, next, st[0], {addIndex(nb, nl, e, 1)})};
                       })[0];

    auto rowsType = cast<RankedTensorType>(op.getRowToken().getType());
    Value rows = rowsType.isDynamicDim(0)
                     ? (pad ? arith::MulIOp::create(b, loc, numExperts, capacity).getResult()
                            : arith::MulIOp::create(b, loc, tokens, constIndex(b, loc, slots)).getResult())
                     : constIndex(b, loc, rowsType.getDimSize(0));
    Value rowToken = filled(b, loc, rowsType, {rows}, i32None);
    Value slotRow = filled(b, loc, slotType, slotDims, i32None);
    Value slotWeight = zeros(b, loc, cast<RankedTensorType>(op.getSlotWeight().getType()), slotDims);
    // A routed slot's weight, or the shared slot's.
    auto slotWeightAt = [&](OpBuilder &nb, Location nl, Value t, Value j) -> Value {
      if (!shared)
        return get(nb, nl, weights, {t, j});
      Value routed = cmpi(nb, nl, P::slt, j, constIndex(nb, nl, routedSlots));
      Value safe = arith::SelectOp::create(nb, nl, routed, j, constIndex(nb, nl, 0));
      return arith::SelectOp::create(nb, nl, routed, get(nb, nl, weights, {t, safe}),
                                     get(nb, nl, shared, {t, constIndex(nb, nl, 0)}));
    };
    SmallVector<Value> plan = {rowToken, slotRow, slotWeight};
    // Tokens are independent: each writes its slots and its own rows.
    plan = forRange(b, loc, zero, tokens, plan, [&](OpBuilder &b1, Location l1, Value t, ValueRange s1) {
      return forRange(b1, l1, zero, constIndex(b1, l1, slots), s1,
                      [&](OpBuilder &b2, Location l2, Value j, ValueRange s2) {
                        Value e = get(b2, l2, state[0], {t, j});
                        Value placed = cmpi(b2, l2, P::sge, e, i32Zero);
                        return ifThen(b2, l2, placed, s2, [&](OpBuilder &b3, Location l3) -> SmallVector<Value> {
                          Value row = arith::AddIOp::create(
                              b3, l3, get(b3, l3, offsets, {i32ToIndex(b3, l3, e)}),
                              get(b3, l3, state[1], {t, j}));
                          Value rowIdx = i32ToIndex(b3, l3, row);
                          return {put(b3, l3, indexToI32(b3, l3, t), s2[0], {rowIdx}),
                                  put(b3, l3, row, s2[1], {t, j}),
                                  put(b3, l3, slotWeightAt(b3, l3, t, j), s2[2], {t, j})};
                        });
                      });
    }, /*independent=*/true);

    // 5. Rectified tokens take the Rectify-Router weights exp(a) / Σ exp(a).
    if (intra)
      plan[2] = rectifiedWeights(b, loc, logits, state[0], state[3], plan[2], tokens, numPrimary);

    b.replaceOp(op, {plan[0], offsets, plan[1], plan[2]});
    return success();
  }

private:
  /// C = tokens, or ceil(T · k / E · factor) in double arithmetic.
  static Value capacityOf(OpBuilder &b, Location loc, CapacityAttr cap, Value tokens, int64_t k,
                          int64_t experts) {
    if (cap.getTokens() > 0)
      return constIndex(b, loc, cap.getTokens());
    auto f64 = [&](double v) { return arith::ConstantOp::create(b, loc, b.getF64FloatAttr(v)); };
    Value t = arith::SIToFPOp::create(b, loc, b.getF64Type(),
                                      arith::IndexCastOp::create(b, loc, b.getI64Type(), tokens));
    Value c = arith::MulFOp::create(b, loc, t, f64(static_cast<double>(k)));
    c = arith::DivFOp::create(b, loc, c, f64(static_cast<double>(experts)));
    c = arith::MulFOp::create(b, loc, c, f64(cap.getFactor().convertToDouble()));
    c = math::CeilOp::create(b, loc, c);
    return arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                      arith::FPToSIOp::create(b, loc, b.getI64Type(), c));
  }

  /// argmax of logits[t, first .. first + count), ties to the lowest index.
  static Value bestLocalExpert(OpBuilder &b, Location loc, Value logits, Value t, Value first,
                               int64_t count) {
    Value none = constIndex(b, loc, -1);
    SmallVector<Value> best = forRange(
        b, loc, first, addIndex(b, loc, first, count),
        ValueRange{constF32(b, loc, 0.0), none},
        [&](OpBuilder &nb, Location nl, Value e, ValueRange st) -> SmallVector<Value> {
          Value v = get(nb, nl, logits, {t, e});
          Value take = arith::OrIOp::create(
              nb, nl, cmpi(nb, nl, arith::CmpIPredicate::slt, st[1], constIndex(nb, nl, 0)),
              ranksBefore(nb, nl, v, e, st[0], st[1]));
          return {arith::SelectOp::create(nb, nl, take, v, st[0]),
                  arith::SelectOp::create(nb, nl, take, e, st[1])};
        });
    return best[1];
  }

  static Value rectifiedWeights(OpBuilder &b, Location loc, Value logits, Value finalExpert,
                                Value rectified, Value slotWeight, Value tokens, Value numPrimary) {
    Value zero = constIndex(b, loc, 0);
    double inf = std::numeric_limits<double>::infinity();
    return forRange(b, loc, zero, tokens, ValueRange{slotWeight},
                    [&](OpBuilder &b1, Location l1, Value t, ValueRange s1) {
      return ifThen(b1, l1, get(b1, l1, rectified, {t}), s1, [&](OpBuilder &b2, Location l2) {
        // Logit of each placed primary slot's final expert.
        auto logitAt = [&](OpBuilder &nb, Location nl, Value j) {
          Value e = get(nb, nl, finalExpert, {t, j});
          Value placed = cmpi(nb, nl, arith::CmpIPredicate::sge, e, constI32(nb, nl, 0));
          Value safe = arith::SelectOp::create(nb, nl, placed, i32ToIndex(nb, nl, e), constIndex(nb, nl, 0));
          return std::make_pair(placed, get(nb, nl, logits, {t, safe}));
        };
        Value mx = forRange(b2, l2, zero, numPrimary, ValueRange{constF32(b2, l2, -inf)},
                            [&](OpBuilder &nb, Location nl, Value j, ValueRange m) {
                              auto [placed, a] = logitAt(nb, nl, j);
                              Value bigger = arith::MaximumFOp::create(nb, nl, m[0], a);
                              return SmallVector<Value>{arith::SelectOp::create(nb, nl, placed, bigger, m[0])};
                            })[0];
        Value sum = forRange(b2, l2, zero, numPrimary, ValueRange{constF32(b2, l2, 0.0)},
                             [&](OpBuilder &nb, Location nl, Value j, ValueRange s) {
                               auto [placed, a] = logitAt(nb, nl, j);
                               Value ex = math::ExpOp::create(nb, nl, arith::SubFOp::create(nb, nl, a, mx));
                               Value added = arith::AddFOp::create(nb, nl, s[0], ex);
                               return SmallVector<Value>{arith::SelectOp::create(nb, nl, placed, added, s[0])};
                             })[0];
        return forRange(b2, l2, zero, numPrimary, s1, [&](OpBuilder &nb, Location nl, Value j, ValueRange w) {
          auto [placed, a] = logitAt(nb, nl, j);
          Value ex = math::ExpOp::create(nb, nl, arith::SubFOp::create(nb, nl, a, mx));
          Value value = arith::SelectOp::create(nb, nl, placed, arith::DivFOp::create(nb, nl, ex, sum),
                                                constF32(nb, nl, 0.0));
          return SmallVector<Value>{put(nb, nl, value, w[0], {t, j})};
        });
      });
    })[0];
  }
};

SmallVector<Value> lowerRestrictSlots(PatternRewriter &b, RestrictSlotsOp op, ContractionForm) {
  Location loc = op.getLoc();
  auto type = cast<RankedTensorType>(op.getType());
  Value init = zeros(b, loc, type, dimsOf(b, loc, op.getIndices()));
  AffineMap id = b.getMultiDimIdentityMap(2);
  Value limit = constI32(b, loc, op.getNumExperts());
  auto result = linalg::GenericOp::create(
      b, loc, TypeRange{type}, ValueRange{op.getIndices()}, ValueRange{init},
      ArrayRef<AffineMap>{id, id}, SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        Value inside = cmpi(nb, nl, arith::CmpIPredicate::slt, a[0], limit);
        linalg::YieldOp::create(
            nb, nl, ValueRange{arith::SelectOp::create(nb, nl, inside, a[0], constI32(nb, nl, -1))});
      });
  return llvm::to_vector(ValueRange(result.getResult(0)));
}
using LowerRestrictSlots = FunctionLowering<RestrictSlotsOp, lowerRestrictSlots>;

SmallVector<Value> lowerPermute(PatternRewriter &b, PermuteOp op, ContractionForm) {
  Location loc = op.getLoc();
  Value x = op.getX(), rowToken = op.getRowToken();
  auto type = cast<RankedTensorType>(op.getType());
  SmallVector<Value> dims = {dimsOf(b, loc, rowToken)[0], dimsOf(b, loc, x)[1]};
  Value numTokens = dimsOf(b, loc, x)[0];
  Value init = zeros(b, loc, type, dims);
  MLIRContext *ctx = b.getContext();
  AffineExpr r, h;
  bindDims(ctx, r, h);
  auto result = linalg::GenericOp::create(
      b, loc, TypeRange{type}, ValueRange{rowToken}, ValueRange{init},
      ArrayRef<AffineMap>{AffineMap::get(2, 0, {r}, ctx), AffineMap::get(2, 0, {r, h}, ctx)},
      SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        // A token outside [0, T) gives a zero row, never a read outside x.
        Value valid = arith::AndIOp::create(nb, nl, cmpi(nb, nl, arith::CmpIPredicate::sge, a[0], constI32(nb, nl, 0)),
                                            cmpi(nb, nl, arith::CmpIPredicate::slt, a[0], indexToI32(nb, nl, numTokens)));
        Value safe = arith::SelectOp::create(nb, nl, valid, i32ToIndex(nb, nl, a[0]),
                                             constIndex(nb, nl, 0));
        Value v = get(nb, nl, x, {safe, linalg::IndexOp::create(nb, nl, 1)});
        Value zero = arith::ConstantOp::create(nb, nl, nb.getZeroAttr(type.getElementType()));
        linalg::YieldOp::create(nb, nl, ValueRange{arith::SelectOp::create(nb, nl, valid, v, zero)});
      });
  return llvm::to_vector(ValueRange(result.getResult(0)));
}
using LowerPermute = FunctionLowering<PermuteOp, lowerPermute>;

SmallVector<Value> lowerCombine(PatternRewriter &b, CombineOp op, ContractionForm) {
  auto type = cast<RankedTensorType>(op.getType());
  Value acc = combineSlots(b, op.getLoc(), op.getRows(), op.getSlotRow(), op.getSlotWeight(),
                           type.getShape());
  return llvm::to_vector(ValueRange(castElements(b, op.getLoc(), acc, type.getElementType())));
}
using LowerCombine = FunctionLowering<CombineOp, lowerCombine>;

} // namespace

void mlir::moe::populateMoeDispatchToLinalgPatterns(RewritePatternSet &patterns) {
  patterns.add<LowerDispatch, LowerRestrictSlots, LowerPermute, LowerCombine>(patterns.getContext());
}
