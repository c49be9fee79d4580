//===- RaiseExpertMixtures.cpp - gate-weighted sums of expert FFNs -------===//
//
// JAX code that computes every expert for every token and weights the
// results by a routing gate writes the same meaning in many spellings: a
// Python loop over experts with `jnp.where(idx == e, ...)` masks, experts
// under `jax.vmap`, `jnp.stack` of per-expert outputs, fused gate/up weights
// cut by `jnp.split`, gates built by one-hot sums, `.at[rows, idx].set` or a
// top-k-masked softmax, combines as an einsum over experts, a sum over an
// expert axis or an add chain. All are read here as one canonical form:
//
//   y[t] = sum_e G[t, e] * FFN_e(x[t]),  FFN_e(x) = act(x @ W1[e] [, x @ W3[e]]) @ W2[e]
//
// by matching each part by meaning: a projection is any contraction of x
// with a weight over the hidden size, its dimensions tracked by role (token,
// expert, hidden, feature) through transposes and slices; the per-expert
// weights are slices of a stack or separate tensors; the gate is any of the
// forms above over a top-k routing. The result is one moe.layer, which
// computes only the selected experts.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

#include "mlir/Analysis/SliceAnalysis.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

// token2: the second token dim of x [B, S, H].
enum class Role { token, token2, slot, expert, hidden, feature };
using Roles = SmallVector<Role, 3>;

/// A projection's bias as seen by one expert or by all: `base`'s dimension
/// `outDim` holds the output features and, for a stack, `eDim` the experts
/// (its other dimensions have size 1); `expert` >= 0 when this is that one
/// expert's row. `[begin, end)` is the part of the output used (end -1:
/// all of it).
struct BiasView {
  Value base;
  int64_t eDim = -1, outDim = -1;
  int64_t expert = -1;
  int64_t begin = 0, end = -1;

  bool sameStackAs(const BiasView &o) const { return base == o.base && eDim == o.eDim && outDim == o.outDim; }
};

/// One projection's weight as seen by one expert or by all: `base`'s
/// dimensions `inDim` (contracted with the hidden or feature size) and
/// `outDim`, and `eDim` where base is a stack; `expert` >= 0 when this view
/// is that one expert of the stack. `[outBegin, outEnd)` is the part of the
/// output dimension used (one half of a fused gate/up weight).
struct WeightView {
  Value base;
  int64_t eDim = -1, inDim = -1, outDim = -1;
  int64_t expert = -1;
  int64_t outBegin = 0, outEnd = -1;
  // Gathered per (token, slot) by these top-k ids (w[idx], decode style).
  Value gatherIds;
  // The x an up projection reads: the router's input, or the narrower
  // float it was widened from (a bf16 layer with an f32 router).
  Value input;
  // The bias added to the projection (x @ W + b), if any.
  BiasView bias;

  bool sameWeightAs(const WeightView &o) const {
    return base == o.base && eDim == o.eDim && inDim == o.inDim && outDim == o.outDim && outBegin == o.outBegin &&
           outEnd == o.outEnd && gatherIds == o.gatherIds && bias.sameStackAs(o.bias) && bias.expert == o.bias.expert;
  }
};

/// The experts' FFN computing a value: its dims' roles, the activation and
/// the three projections (w3 unset for ungated activations).
struct ExpertFfn {
  Roles roles;
  Activation activation = Activation::swiglu;
  WeightView w1, w3, w2;
  bool gated = false;
  /// The same activation on the same weights (stacks and their slices).
  bool sameFfnAs(const ExpertFfn &o) const {
    return activation == o.activation && gated == o.gated && w1.sameWeightAs(o.w1) && w2.sameWeightAs(o.w2) &&
           (!gated || w3.sameWeightAs(o.w3));
  }
};

/// `v` without reshapes, broadcasts and slices that only add or drop unit
/// dims (v[:, 0] of a [T, 1] tensor).
Value withoutUnitDims(Value v) {
  auto nonUnit = [](RankedTensorType t) {
    return llvm::to_vector(llvm::make_filter_range(t.getShape(), [](int64_t d) { return d != 1; }));
  };
  while (true) {
    Operation *op = v.getDefiningOp();
    if (!op || !isa<shlo::ReshapeOp, shlo::BroadcastInDimOp, shlo::SliceOp>(op))
      return v;
    auto from = cast<RankedTensorType>(op->getOperand(0).getType());
    auto to = cast<RankedTensorType>(v.getType());
    // Same elements in the same order: a full slice, a reshape or an
    // in-order broadcast that only moves unit dims ([T, 1] -> [T]).
    if (from.getNumElements() != to.getNumElements() || nonUnit(from) != nonUnit(to))
      return v;
    if (auto b = dyn_cast<shlo::BroadcastInDimOp>(op); b && !llvm::is_sorted(b.getBroadcastDimensions()))
      return v;
    v = op->getOperand(0);
  }
}

/// `v` is arange(T) along dim 0 as index code writes the rows of a
/// per-token gather or scatter (`jnp.arange(T)[:, None]`): an iota along
/// dim 0 through index wrapping, unit-dim reshapes, conversions and
/// broadcasts over later dims.
bool isTokenRows(Value v) {
  for (Value next = v;; v = next) {
    next = withoutConverts(unwrapIndex(withoutUnitDims(v)));
    if (auto spread = next.getDefiningOp<shlo::BroadcastInDimOp>();
        spread && !spread.getBroadcastDimensions().empty() && spread.getBroadcastDimensions()[0] == 0)
      next = spread.getOperand();
    if (next == v)
      break;
  }
  auto rows = v.getDefiningOp<shlo::IotaOp>();
  return rows && rows.getIotaDimension() == 0;
}

/// Where the rows of `selected` [T, K, H] come from when every token reads
/// K of its own rows of a stack of per-expert outputs:
/// selected[t, s, :] = of[t, ids[t, s], :] (any placement of the token and
/// expert dims in `of`), as `jnp.take_along_axis(of, ids[..., None], 1)`
/// (a gather batched over the tokens) or `of[jnp.arange(T)[:, None], ids]`
/// (a gather at (row, id) pairs) write it. Returns ids (unwrapped, [T, K])
/// and sets `of` and its token and expert dims; null otherwise.
Value selectedExpertRows(Value selected, Value &of, int64_t &tokenDim, int64_t &expertDim) {
  // take_along_axis's NaN fill for out-of-range ids: canonicalizeSelections
  // dropped it where the ids are a top-k's; seen through here only for the
  // remark on other ids.
  if (auto fill = selected.getDefiningOp<shlo::SelectOp>()) {
    std::optional<double> nan = splatValue(fill.getOnFalse());
    if (nan && std::isnan(*nan))
      selected = fill.getOnTrue();
  }
  auto gather = selected.getDefiningOp<shlo::GatherOp>();
  if (!gather)
    return nullptr;
  shlo::GatherDimensionNumbersAttr d = gather.getDimensionNumbers();
  auto operandType = cast<RankedTensorType>(gather.getOperand().getType());
  auto indexType = cast<RankedTensorType>(gather.getStartIndices().getType());
  if (operandType.getRank() != 3 || indexType.getRank() != 3 || d.getIndexVectorDim() != 2 ||
      d.getOffsetDims() != ArrayRef<int64_t>{2} || cast<RankedTensorType>(selected.getType()).getRank() != 3)
    return nullptr;
  Value ids;
  int64_t t = -1, e = -1;
  if (indexType.getShape()[2] == 1 && d.getOperandBatchingDims().size() == 1 &&
      d.getStartIndicesBatchingDims() == ArrayRef<int64_t>{0} && d.getStartIndexMap().size() == 1 &&
      d.getCollapsedSliceDims() == d.getStartIndexMap()) {
    t = d.getOperandBatchingDims()[0];
    e = d.getStartIndexMap()[0];
    ids = gather.getStartIndices();
  } else if (indexType.getShape()[2] == 2 && d.getOperandBatchingDims().empty() && d.getStartIndexMap().size() == 2 &&
             d.getCollapsedSliceDims().size() == 2 &&
             llvm::is_contained(d.getCollapsedSliceDims(), d.getStartIndexMap()[0]) &&
             llvm::is_contained(d.getCollapsedSliceDims(), d.getStartIndexMap()[1])) {
    auto pair = gather.getStartIndices().getDefiningOp<shlo::ConcatenateOp>();
    if (!pair || pair.getDimension() != 2 || pair.getInputs().size() != 2)
      return nullptr;
    for (int i : {0, 1})
      if (isTokenRows(pair.getInputs()[i])) {
        t = d.getStartIndexMap()[i];
        e = d.getStartIndexMap()[1 - i];
        ids = pair.getInputs()[1 - i];
      }
  }
  if (!ids || t == e)
    return nullptr;
  int64_t h = 3 - t - e;
  ArrayRef<int64_t> sizes = gather.getSliceSizes();
  if (sizes[t] != 1 || sizes[e] != 1 || sizes[h] != operandType.getShape()[h])
    return nullptr;
  of = gather.getOperand();
  tokenDim = t;
  expertDim = e;
  return withoutUnitDims(withoutConverts(unwrapIndex(withoutUnitDims(ids))));
}

/// x's dims: [token, hidden] or [token, token2, hidden] (and the leading
/// dims of a value of x's rank, such as the gate [tokens..., E]).
Roles tokenRoles(Value x) {
  if (cast<RankedTensorType>(x.getType()).getRank() == 3)
    return {Role::token, Role::token2, Role::hidden};
  return {Role::token, Role::hidden};
}

/// dot_general's result roles: the batch dims (a's roles), then the lhs's
/// free dims, then the rhs's; `a` contracts `aContract`, the weight's free
/// dims have roles `wFree`.
Roles dotResultRoles(bool aIsLhs, const Roles &aRoles, ArrayRef<int64_t> aContract, ArrayRef<int64_t> aBatch,
                     const Roles &wFree) {
  Roles roles, aFree;
  for (int64_t ab : aBatch)
    roles.push_back(aRoles[ab]);
  for (int64_t dim = 0; dim < static_cast<int64_t>(aRoles.size()); ++dim)
    if (dim != aContract[0] && !llvm::is_contained(aBatch, dim))
      aFree.push_back(aRoles[dim]);
  roles.append(aIsLhs ? aFree : wFree);
  roles.append(aIsLhs ? wFree : aFree);
  return roles;
}

struct Matcher {
  Value x;
  int64_t experts;
  NoMatch &fail;
  // The masks [tokens..., E] of x the projections read (GShard's dense
  // dispatch without a capacity: each expert sees x zeroed where it is not
  // routed); the caller checks they keep every row the gate weights. Read
  // only where `masksAllowed`.
  bool masksAllowed = false;
  SmallVector<Value, 2> inputMasks;
  // Per-token masks [T] (or [T, 1]) zeroing whole rows of x, read where
  // `masksAllowed` (a loop over experts feeding each expert its rows); the
  // caller checks they keep the rows its gate column weights.
  SmallVector<Value, 2> rowMasks;

  /// x with whole rows zeroed, `where(mask[:, None], x, 0)` or `x *
  /// mask[:, None]`: returns x and records the mask.
  Value maskedRows(Value v) {
    Value in, mask;
    if (auto select = v.getDefiningOp<shlo::SelectOp>(); select && isSplat(select.getOnFalse(), 0)) {
      in = select.getOnTrue();
      mask = select.getPred();
    } else if (auto mul = v.getDefiningOp<shlo::MulOp>()) {
      for (auto [a, b] : {std::pair{mul.getLhs(), mul.getRhs()}, std::pair{mul.getRhs(), mul.getLhs()}})
        if (!in && isX(a)) {
          in = a;
          mask = b;
        }
    }
    if (!in || !isX(in) || tokenRoles(x).size() != 2)
      return Value();
    SmallVector<int64_t> dims;
    Value m = broadcastChainSource(mask, dims);
    if (m == mask || dims.empty() || dims[0] != 0)
      return Value();
    rowMasks.push_back(withoutUnitDims(withoutConverts(m)));
    return in;
  }

  /// x spread over the experts and masked, `einsum('te,th->eth', mask, x)`
  /// (a dot_general batched over the tokens, through transposes): its roles
  /// and the x it reads; records the mask.
  Value maskedX(Value v, Roles &roles) {
    SmallVector<int64_t> perm;
    int64_t sliceDim, begin, end;
    Value core = throughLayout(v, perm, sliceDim, begin, end);
    auto dot = core && sliceDim < 0 ? core.getDefiningOp<shlo::DotGeneralOp>() : nullptr;
    if (!dot || !dot.getDotDimensionNumbers().getLhsContractingDimensions().empty())
      return Value();
    shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
    for (bool xIsLhs : {true, false}) {
      Value in = xIsLhs ? dot.getLhs() : dot.getRhs(), mask = xIsLhs ? dot.getRhs() : dot.getLhs();
      if (!isX(in))
        continue;
      Roles tokens = tokenRoles(x);
      tokens.pop_back();
      auto tokenDims = llvm::to_vector(llvm::seq<int64_t>(0, tokens.size()));
      auto maskType = cast<RankedTensorType>(mask.getType());
      if (d.getLhsBatchingDimensions() != ArrayRef<int64_t>(tokenDims) ||
          d.getRhsBatchingDimensions() != ArrayRef<int64_t>(tokenDims) ||
          maskType.getRank() != static_cast<int64_t>(tokens.size()) + 1 || maskType.getShape().back() != experts)
        return Value();
      Roles coreRoles = tokens;
      coreRoles.append(xIsLhs ? Roles{Role::hidden, Role::expert} : Roles{Role::expert, Role::hidden});
      roles.clear();
      for (int64_t q : perm)
        roles.push_back(coreRoles[q]);
      inputMasks.push_back(mask);
      return in;
    }
    return Value();
  }

  /// x, or the bf16/f16 value the router widened to x: mixed-precision
  /// code routes in f32 on x.astype(f32) and runs the experts on x.
  bool isX(Value v) const { return v == x || (v && v == narrowX()); }
  Value narrowX() const {
    auto widened = x.getDefiningOp<shlo::ConvertOp>();
    if (!widened)
      return Value();
    auto from = dyn_cast<FloatType>(cast<RankedTensorType>(widened.getOperand().getType()).getElementType());
    auto to = dyn_cast<FloatType>(cast<RankedTensorType>(x.getType()).getElementType());
    return from && to && from.getWidth() < to.getWidth() ? widened.getOperand() : Value();
  }

  /// A contraction below its layout, possibly with a bias added between:
  /// `layout(dot + broadcast(bias))` or `layout(dot)`.
  struct BiasedCore {
    Value core;
    // The add's dims to the dot's (identity without an add), and a slice
    // between them.
    SmallVector<int64_t> innerPerm;
    int64_t innerSlice = -1, innerBegin = 0, innerEnd = 0;
    // The bias and the add's dim each of its dims lands on.
    Value biasSource;
    SmallVector<int64_t> biasDims;
  };

  /// `outer` (below its own layout) as a BiasedCore.
  static BiasedCore biasedCore(Value outer) {
    BiasedCore c;
    c.core = outer;
    if (outer)
      c.innerPerm = llvm::to_vector(llvm::seq<int64_t>(0, cast<RankedTensorType>(outer.getType()).getRank()));
    auto add = outer ? outer.getDefiningOp<shlo::AddOp>() : nullptr;
    if (!add)
      return c;
    for (auto [a, b] : {std::pair{add.getLhs(), add.getRhs()}, std::pair{add.getRhs(), add.getLhs()}}) {
      SmallVector<int64_t> dims, perm;
      Value source = broadcastChainSource(b, dims);
      int64_t slice, begin, end;
      Value inner = throughLayout(a, perm, slice, begin, end);
      if (source == b || !inner || !inner.getDefiningOp<shlo::DotGeneralOp>())
        continue;
      c.core = inner;
      c.innerPerm = perm;
      c.innerSlice = slice;
      c.innerBegin = begin;
      c.innerEnd = end;
      c.biasSource = source;
      c.biasDims = dims;
      break;
    }
    return c;
  }

  /// The bias `source` (broadcast to the add's dims `dims`) adds to a
  /// projection whose add has dims of `roles`: one value per output feature
  /// (`outRole`), per expert or for one expert (`b[e]` of a stack, a unit
  /// slice reshaped away), constant over the tokens.
  FailureOr<BiasView> biasOf(Value source, ArrayRef<int64_t> dims, const Roles &roles, Role outRole) {
    auto type = cast<RankedTensorType>(source.getType());
    BiasView view{source};
    bool perFeature = true;
    for (auto [d, size] : llvm::enumerate(type.getShape())) {
      Role role = roles[dims[d]];
      if (role == outRole && view.outDim < 0)
        view.outDim = d;
      else if (role == Role::expert && view.eDim < 0 && size == experts)
        view.eDim = d;
      else if (size != 1)
        perFeature = false;
    }
    if (!perFeature || view.outDim < 0) {
      fail.why = "an expert projection adds something other than a bias per output feature";
      return failure();
    }
    if (view.eDim >= 0)
      return view;
    // b[e]: one row of a [E, Out] stack.
    Value row = source;
    while (auto reshape = row.getDefiningOp<shlo::ReshapeOp>())
      row = reshape.getOperand();
    auto slice = row.getDefiningOp<shlo::SliceOp>();
    auto stack = slice ? cast<RankedTensorType>(slice.getOperand().getType()) : RankedTensorType();
    if (stack && stack.getRank() == 2 && llvm::all_of(slice.getStrides(), [](int64_t s) { return s == 1; })) {
      for (int64_t d = 0; d < 2; ++d) {
        bool one = slice.getLimitIndices()[d] - slice.getStartIndices()[d] == 1 && stack.getDimSize(d) == experts;
        bool full = slice.getStartIndices()[1 - d] == 0 && slice.getLimitIndices()[1 - d] == stack.getDimSize(1 - d);
        if (one && full)
          return BiasView{slice.getOperand(), d, 1 - d, slice.getStartIndices()[d]};
      }
    }
    return view;
  }

  /// `w[e]` of a rank-3 stack (a unit slice reshaped away), or a separate
  /// rank-2 weight; `inDim2d` is the dimension of the rank-2 value that is
  /// contracted.
  WeightView perExpertWeight(Value w, int64_t inDim2d) const {
    if (auto t = w.getDefiningOp<shlo::TransposeOp>()) // w[e].T
      return perExpertWeight(t.getOperand(), 1 - inDim2d);
    WeightView view{w, -1, inDim2d, 1 - inDim2d};
    auto reshape = w.getDefiningOp<shlo::ReshapeOp>();
    auto slice = reshape ? reshape.getOperand().getDefiningOp<shlo::SliceOp>() : nullptr;
    if (!slice)
      return view;
    auto stack = cast<RankedTensorType>(slice.getOperand().getType());
    if (stack.getRank() != 3 || stack.getDimSize(0) != experts)
      return view;
    SmallVector<int64_t> kept;
    for (int64_t d = 0; d < 3; ++d) {
      int64_t size = slice.getLimitIndices()[d] - slice.getStartIndices()[d];
      if (slice.getStrides()[d] != 1)
        return view;
      if (d == 0 && size != 1)
        return view;
      if (d > 0 && size != stack.getDimSize(d))
        return view;
      if (d > 0)
        kept.push_back(d);
    }
    return WeightView{slice.getOperand(), 0, kept[inDim2d], kept[1 - inDim2d], slice.getStartIndices()[0]};
  }

  /// x's token dims: [T] or [B, S], then the slot's role.
  Roles gatherLeadRoles() const {
    Roles lead = tokenRoles(x);
    lead.back() = Role::slot;
    return lead;
  }

  /// w[idx] of a rank-3 stack for top-k ids [T, k] (one matrix per (token,
  /// slot): [T, k, the stack's other two dims]) or for one slot's ids [T]
  /// (w[idx[:, s]]: [T, the other two dims]); [B, S] tokens where x has
  /// them.
  std::optional<WeightView> gatheredWeight(Value w) const {
    auto gather = w.getDefiningOp<shlo::GatherOp>();
    if (!gather)
      return std::nullopt;
    auto stack = cast<RankedTensorType>(gather.getOperand().getType());
    auto indices = cast<RankedTensorType>(gather.getStartIndices().getType());
    shlo::GatherDimensionNumbersAttr d = gather.getDimensionNumbers();
    int64_t vectorDim = d.getIndexVectorDim();
    bool explicitVector = vectorDim < indices.getRank();
    int64_t lead = indices.getRank() - (explicitVector ? 1 : 0);
    int64_t tokenDims = static_cast<int64_t>(tokenRoles(x).size()) - 1;
    if (stack.getRank() != 3 || (lead != tokenDims && lead != tokenDims + 1) || vectorDim != lead ||
        (explicitVector && indices.getDimSize(vectorDim) != 1) || d.getCollapsedSliceDims().size() != 1 ||
        d.getStartIndexMap() != d.getCollapsedSliceDims() || d.getOffsetDims() != ArrayRef<int64_t>{lead, lead + 1} ||
        !d.getOperandBatchingDims().empty())
      return std::nullopt;
    int64_t eDim = d.getCollapsedSliceDims()[0];
    for (int64_t dim = 0; dim < 3; ++dim)
      if (gather.getSliceSizes()[dim] != (dim == eDim ? 1 : stack.getDimSize(dim)))
        return std::nullopt;
    if (stack.getDimSize(eDim) != experts)
      return std::nullopt;
    WeightView view{gather.getOperand(), eDim};
    view.gatherIds = withoutUnitDims(unwrapIndex(withoutUnitDims(gather.getStartIndices())));
    return view;
  }

  /// A contraction of `a` with weights gathered per token (and slot):
  /// batched over a's token (and slot) dims, contracting `contracted`.
  LogicalResult contractWithGathered(shlo::DotGeneralOp dot, bool aIsLhs, const Roles &aRoles, Role contracted,
                                     Role outRole, WeightView view, WeightView &out, Roles &roles) {
    shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
    ArrayRef<int64_t> aContract = aIsLhs ? d.getLhsContractingDimensions() : d.getRhsContractingDimensions();
    ArrayRef<int64_t> wContract = aIsLhs ? d.getRhsContractingDimensions() : d.getLhsContractingDimensions();
    ArrayRef<int64_t> aBatch = aIsLhs ? d.getLhsBatchingDimensions() : d.getRhsBatchingDimensions();
    ArrayRef<int64_t> wBatch = aIsLhs ? d.getRhsBatchingDimensions() : d.getLhsBatchingDimensions();
    // [T (or B, S), (k,) the stack's other two dims]
    int64_t rank = cast<RankedTensorType>((aIsLhs ? dot.getRhs() : dot.getLhs()).getType()).getRank();
    int64_t lead = rank - 2;
    Roles leadRoles = gatherLeadRoles();
    int64_t tokenDims = static_cast<int64_t>(leadRoles.size()) - 1;
    if (aContract.size() != 1 || aRoles[aContract[0]] != contracted || wContract.size() != 1 ||
        wContract[0] < lead) {
      fail.why = "a gathered expert projection does not contract the right size";
      return failure();
    }
    for (auto [ab, wb] : llvm::zip(aBatch, wBatch))
      if (wb >= lead || aRoles[ab] != leadRoles[wb]) {
        fail.why = "a gathered expert projection is not batched over its tokens and slots";
        return failure();
      }
    if (llvm::any_of(llvm::seq<int64_t>(0, tokenDims), [&](int64_t t) { return !llvm::is_contained(wBatch, t); }) ||
        llvm::is_contained(aRoles, Role::expert)) {
      fail.why = "a gathered expert projection is not batched over its tokens";
      return failure();
    }
    // The stack's dims other than the experts', in order, follow [T, (k)].
    SmallVector<int64_t> rest;
    for (int64_t dim = 0; dim < 3; ++dim)
      if (dim != view.eDim)
        rest.push_back(dim);
    view.inDim = rest[wContract[0] - lead];
    view.outDim = rest[1 - (wContract[0] - lead)];
    view.outEnd = cast<RankedTensorType>(view.base.getType()).getDimSize(view.outDim);
    out = view;
    Roles wFree;
    for (int64_t dim = 0; dim < rank; ++dim)
      if (dim != wContract[0] && !llvm::is_contained(wBatch, dim))
        wFree.push_back(dim < lead ? leadRoles[dim] : outRole);
    roles = dotResultRoles(aIsLhs, aRoles, aContract, aBatch, wFree);
    return success();
  }

  /// A contraction of `lhsRoles`-tagged `a` with the weight `w` over the
  /// dims (aDim, wDim), batched over the expert dim when both have one:
  /// fills `view` and the result's roles. `outRole` is the role of the
  /// weight's output dim.
  LogicalResult contractWithWeight(shlo::DotGeneralOp dot, bool aIsLhs, const Roles &aRoles, Role contracted,
                                   Role outRole, WeightView &view, Roles &roles) {
    shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
    ArrayRef<int64_t> aContract = aIsLhs ? d.getLhsContractingDimensions() : d.getRhsContractingDimensions();
    ArrayRef<int64_t> wContract = aIsLhs ? d.getRhsContractingDimensions() : d.getLhsContractingDimensions();
    ArrayRef<int64_t> aBatch = aIsLhs ? d.getLhsBatchingDimensions() : d.getRhsBatchingDimensions();
    ArrayRef<int64_t> wBatch = aIsLhs ? d.getRhsBatchingDimensions() : d.getLhsBatchingDimensions();
    Value w = aIsLhs ? dot.getRhs() : dot.getLhs();
    auto wType = cast<RankedTensorType>(w.getType());
    // Gathered per token: [T, k, In, Out], or [T, In, Out] batched with a's
    // tokens (a [T, In, Out] that is not is a stack of experts); [B, S]
    // tokens where x has them.
    bool tokenBatched = llvm::is_contained(wBatch, 0) && !aBatch.empty() &&
                        aRoles[aBatch[llvm::find(wBatch, 0) - wBatch.begin()]] == Role::token;
    int64_t tokenDims = static_cast<int64_t>(tokenRoles(x).size()) - 1;
    if (std::optional<WeightView> gathered =
            wType.getRank() == tokenDims + 3 || (wType.getRank() == tokenDims + 2 && tokenBatched)
                ? gatheredWeight(w)
                : std::nullopt)
      return contractWithGathered(dot, aIsLhs, aRoles, contracted, outRole, *gathered, view, roles);
    if (aContract.size() != 1 || aRoles[aContract[0]] != contracted) {
      fail.why = "an expert projection does not contract the " +
                 std::string(contracted == Role::hidden ? "hidden" : "feature") + " size";
      return failure();
    }
    bool aHasExpert = llvm::is_contained(aRoles, Role::expert);
    if (aBatch.size() > 1 || (aBatch.size() == 1 && aRoles[aBatch[0]] != Role::expert)) {
      fail.why = "an expert projection is batched over something other than the experts";
      return failure();
    }
    if (wType.getRank() == 2) {
      if (aHasExpert) {
        fail.why = "a per-expert weight is applied to all experts' rows";
        return failure();
      }
      view = perExpertWeight(w, wContract[0]);
    } else if (wType.getRank() == 3) {
      view = WeightView{w, -1, wContract[0], -1};
      if (aBatch.size() == 1) {
        view.eDim = wBatch[0];
      } else {
        if (aHasExpert) {
          fail.why = "an expert projection is not batched over the experts";
          return failure();
        }
        for (int64_t dim = 0; dim < 3; ++dim)
          if (dim != view.inDim && wType.getDimSize(dim) == experts) {
            if (view.eDim >= 0) {
              fail.why = "an expert weight has two dimensions of the expert count";
              return failure();
            }
            view.eDim = dim;
          }
      }
      if (view.eDim < 0 || view.eDim == view.inDim || wType.getDimSize(view.eDim) != experts) {
        fail.why = "an expert weight has no dimension of the expert count";
        return failure();
      }
      view.outDim = 3 - view.eDim - view.inDim;
    } else {
      fail.why = "an expert weight is not a matrix or a stack of matrices";
      return failure();
    }
    view.outEnd = cast<RankedTensorType>(view.base.getType()).getDimSize(view.outDim);
    // The weight's own free dims: its output dim is the view's outDim only
    // for a full stack.
    Roles wFree;
    for (int64_t dim = 0; dim < wType.getRank(); ++dim)
      if (dim != wContract[0] && !llvm::is_contained(wBatch, dim))
        wFree.push_back(wType.getRank() == 2 || dim == view.outDim ? outRole : Role::expert);
    roles = dotResultRoles(aIsLhs, aRoles, aContract, aBatch, wFree);
    return success();
  }

  /// A value through transposes and a slice of one dimension: the op
  /// below them, with `perm` mapping the value's dims to that op's, and the
  /// slice's dim (in that op's dims) and bounds.
  static Value throughLayout(Value v, SmallVectorImpl<int64_t> &perm, int64_t &sliceDim, int64_t &begin,
                             int64_t &end) {
    int64_t rank = cast<RankedTensorType>(v.getType()).getRank();
    perm.assign(llvm::to_vector(llvm::seq<int64_t>(0, rank)));
    sliceDim = -1;
    while (true) {
      if (auto t = v.getDefiningOp<shlo::TransposeOp>()) {
        for (int64_t &p : perm)
          p = t.getPermutation()[p];
        if (sliceDim >= 0)
          sliceDim = t.getPermutation()[sliceDim];
        v = t.getOperand();
        continue;
      }
      auto s = v.getDefiningOp<shlo::SliceOp>();
      if (!s || sliceDim >= 0)
        return v;
      auto type = cast<RankedTensorType>(s.getOperand().getType());
      for (int64_t d = 0; d < type.getRank(); ++d) {
        bool full = s.getStartIndices()[d] == 0 && s.getLimitIndices()[d] == type.getDimSize(d);
        if (s.getStrides()[d] != 1 || (!full && sliceDim >= 0))
          return nullptr;
        if (!full) {
          sliceDim = d;
          begin = s.getStartIndices()[d];
          end = s.getLimitIndices()[d];
        }
      }
      v = s.getOperand();
    }
  }

  /// x @ W over the hidden size (every expert's, or one expert's), through
  /// transposes and a slice of the output features.
  LogicalResult projection(Value p, WeightView &view, Roles &roles) {
    SmallVector<int64_t> perm;
    int64_t sliceDim, begin = 0, end = 0;
    BiasedCore biased = biasedCore(throughLayout(p, perm, sliceDim, begin, end));
    Value core = biased.core;
    auto dot = core ? core.getDefiningOp<shlo::DotGeneralOp>() : nullptr;
    if (!dot) {
      fail.why = core && core.getDefiningOp<shlo::AddOp>()
                     ? "an expert projection adds something other than a bias per output feature"
                     : "an expert projection is not a contraction of x with a weight";
      return failure();
    }
    Roles coreRoles, inputRoles = tokenRoles(x);
    bool xIsLhs = isX(dot.getLhs());
    Value input = xIsLhs ? dot.getLhs() : isX(dot.getRhs()) ? dot.getRhs() : Value();
    for (bool lhs : {true, false})
      if (!input && masksAllowed)
        if ((input = maskedX(lhs ? dot.getLhs() : dot.getRhs(), inputRoles)) ||
            (input = maskedRows(lhs ? dot.getLhs() : dot.getRhs())))
          xIsLhs = lhs;
    if (!input) {
      fail.why = "an expert projection does not read the router's input x";
      return failure();
    }
    if (failed(contractWithWeight(dot, xIsLhs, inputRoles, Role::hidden, Role::feature, view, coreRoles)))
      return failure();
    view.input = input;
    Roles addRoles;
    if (failed(addBias(biased, coreRoles, Role::feature, view, addRoles)))
      return failure();
    if (sliceDim >= 0) {
      if (addRoles[sliceDim] != Role::feature) {
        fail.why = "an expert projection is sliced along something other than its features";
        return failure();
      }
      view.outBegin += begin;
      view.outEnd = view.outBegin + (end - begin);
      if (view.bias.base) {
        view.bias.begin += begin;
        view.bias.end = view.bias.begin + (end - begin);
      }
    }
    roles.clear();
    for (int64_t q : perm)
      roles.push_back(addRoles[q]);
    return success();
  }

  /// The roles at the add of `biased` (`addRoles`), from the dot's; records
  /// its bias (if any) on the projection `view`, whose output has `outRole`.
  LogicalResult addBias(const BiasedCore &biased, const Roles &coreRoles, Role outRole, WeightView &view,
                        Roles &addRoles) {
    addRoles.clear();
    for (int64_t q : biased.innerPerm)
      addRoles.push_back(coreRoles[q]);
    if (biased.innerSlice >= 0) {
      if (coreRoles[biased.innerSlice] != outRole) {
        fail.why = "an expert projection is sliced along something other than its outputs";
        return failure();
      }
      view.outBegin += biased.innerBegin;
      view.outEnd = view.outBegin + (biased.innerEnd - biased.innerBegin);
    }
    if (!biased.biasSource)
      return success();
    if (view.gatherIds) {
      fail.why = "gathered expert weights (w[idx]) add a bias, which is not read";
      return failure();
    }
    FailureOr<BiasView> bias = biasOf(biased.biasSource, biased.biasDims, addRoles, outRole);
    if (failed(bias))
      return failure();
    view.bias = *bias;
    return success();
  }

  /// The expert activation over projections of x.
  LogicalResult activation(Value h, ExpertFfn &ffn) {
    struct Unary {
      Value (*input)(Value);
      Activation kind;
    };
    if (auto mul = h.getDefiningOp<shlo::MulOp>()) {
      for (auto [a, b] : {std::pair{mul.getLhs(), mul.getRhs()}, std::pair{mul.getRhs(), mul.getLhs()}}) {
        for (Unary gate : {Unary{siluInput, Activation::swiglu}, Unary{geluErfInput, Activation::geglu},
                           Unary{geluTanhInput, Activation::geglu_tanh}}) {
          Value g = gate.input(a);
          Roles upRoles;
          if (!g || failed(projection(g, ffn.w1, ffn.roles)) || failed(projection(b, ffn.w3, upRoles)))
            continue;
          if (upRoles != ffn.roles) {
            fail.why = "the gate and up projections of the experts are laid out differently";
            return failure();
          }
          ffn.activation = gate.kind;
          ffn.gated = true;
          return success();
        }
      }
    }
    for (Unary act : {Unary{siluInput, Activation::silu}, Unary{reluInput, Activation::relu},
                      Unary{relu2Input, Activation::relu2}, Unary{geluErfInput, Activation::gelu},
                      Unary{geluTanhInput, Activation::gelu_tanh}}) {
      if (Value pre = act.input(h)) {
        ffn.activation = act.kind;
        return projection(pre, ffn.w1, ffn.roles);
      }
    }
    if (fail.why.empty())
      fail.why = "the expert activation is not silu, relu, relu², gelu or a gated silu/gelu of projections of x";
    return failure();
  }

  /// FFN outputs of every expert ([T, E, H] in any order) or of one ([T, H]):
  /// act(...) @ W2 through transposes.
  LogicalResult expertOutputs(Value o, ExpertFfn &ffn) {
    SmallVector<int64_t> perm;
    int64_t sliceDim, begin, end;
    BiasedCore biased = biasedCore(throughLayout(o, perm, sliceDim, begin, end));
    Value core = biased.core;
    if (core && core.getDefiningOp<shlo::AddOp>()) {
      fail.why = "the expert outputs add something other than a bias per hidden feature";
      return failure();
    }
    auto dot = core ? core.getDefiningOp<shlo::DotGeneralOp>() : nullptr;
    if (!dot || sliceDim >= 0 || biased.innerSlice >= 0) {
      fail.why = "the expert outputs are not a down projection of the activations";
      return failure();
    }
    NoMatch lhsFail;
    Roles coreRoles, addRoles;
    for (bool hIsLhs : {true, false}) {
      fail.why.clear();
      if (succeeded(activation(hIsLhs ? dot.getLhs() : dot.getRhs(), ffn)) &&
          succeeded(contractWithWeight(dot, hIsLhs, ffn.roles, Role::feature, Role::hidden, ffn.w2, coreRoles)) &&
          succeeded(addBias(biased, coreRoles, Role::hidden, ffn.w2, addRoles))) {
        ffn.roles.clear();
        for (int64_t q : perm)
          ffn.roles.push_back(addRoles[q]);
        return success();
      }
      if (hIsLhs)
        lhsFail = fail;
    }
    // Report the side that got further: the one whose activation was
    // recognised.
    if (!lhsFail.why.empty() && llvm::StringRef(fail.why).starts_with("the expert activation is not"))
      fail = lhsFail;
    return failure();
  }
};

} // namespace

FailureOr<chlo::TopKOp> mlir::moe::stablehlo_raise::topKRouting(Value vals, RecognisedLayer &layer,
                                                               NoMatch &fail) {
  NoMatch softmaxFail, groupedFail;
  RecognisedLayer attempt;
  FailureOr<chlo::TopKOp> topk = matchSoftmaxTopK(vals, Value(), attempt, softmaxFail);
  if (succeeded(topk)) {
    layer = attempt;
    return topk;
  }
  // softmax(top_k(x @ wr).values) or sigmoid(top_k(x @ wr).values),
  // possibly renormalised.
  Value selected = vals;
  bool renormalised = false;
  NoMatch ignored;
  if (failed(softmaxInput(selected, ignored))) // a softmax's own division is no renormalisation
    if (Value numerator = renormalisedInput(selected)) {
      renormalised = true;
      selected = numerator;
    }
  bool sigmoid = false;
  Value top;
  if (FailureOr<Value> z = softmaxInput(selected, ignored); succeeded(z)) {
    top = *z;
  } else if (Value s = sigmoidInput(selected)) {
    top = s;
    sigmoid = true;
  }
  // top_k(sigmoid(x @ wr)).values (sigmoid keeps the order: the same
  // experts and weights as sigmoid of the top-k logits).
  if (Value scores = withoutUnitDims(selected); !top)
    if (auto scored = scores.getDefiningOp<chlo::TopKOp>(); scored && scores == scored.getValues())
      if (Value z = sigmoidInput(withoutConverts(scored.getOperand()))) {
        NoMatch routerFail;
        if (succeeded(routerLogits(withoutConverts(z), Value(), layer, routerFail))) {
          layer.k = scored.getK();
          layer.sigmoid = true;
          layer.normalize = renormalised;
          layer.scoresType = sixteenBitScores(scored);
          return scored;
        }
      }
  // (softmax of the top-k logits widened to f32 is the same selection)
  top = top ? withoutConverts(withoutUnitDims(top)) : top;
  auto selection = top ? top.getDefiningOp<chlo::TopKOp>() : nullptr;
  if (selection && top == selection.getValues()) {
    NoMatch routerFail;
    if (succeeded(routerLogits(selection.getOperand(), Value(), layer, routerFail))) {
      layer.k = selection.getK();
      layer.sigmoid = sigmoid;
      // softmax over the selected logits is the softmax top-k renormalised.
      layer.normalize = !sigmoid || renormalised;
      return selection;
    }
  }
  attempt = RecognisedLayer();
  topk = matchGroupedSigmoidTopK(vals, Value(), attempt, groupedFail);
  if (succeeded(topk)) {
    layer = attempt;
    return topk;
  }
  fail.why = "the gate weights are no known routing: " + softmaxFail.why + " (softmax, then top-k); " +
             groupedFail.why + " (sigmoid group routing)";
  return failure();
}

namespace {

/// The top-k of `v` in `v >= top_k(v).values[..., k-1:k]` (the k-th largest
/// broadcast over the row), or null. Ties with the k-th keep more than k.
chlo::TopKOp thresholdTopK(Value mask) {
  auto ge = withoutConverts(mask).getDefiningOp<shlo::CompareOp>();
  if (!ge || ge.getComparisonDirection() != shlo::ComparisonDirection::GE)
    return nullptr;
  SmallVector<int64_t> dims;
  // The column may lose and regain its unit dim on the way (jnp.sort(v)[:, -k]
  // then [:, None]).
  Value column = broadcastChainSource(ge.getRhs(), dims);
  // Each row's value broadcast over that row (its token dim stays dim 0).
  auto slice = !dims.empty() && dims.front() == 0 ? withoutUnitDims(column).getDefiningOp<shlo::SliceOp>() : nullptr;
  auto topk = slice ? slice.getOperand().getDefiningOp<chlo::TopKOp>() : nullptr;
  if (!topk || slice.getOperand() != topk.getValues() || topk.getOperand() != ge.getLhs())
    return nullptr;
  int64_t last = cast<RankedTensorType>(ge.getLhs().getType()).getRank() - 1;
  auto k = static_cast<int64_t>(topk.getK());
  return slice.getStartIndices()[last] == k - 1 && slice.getLimitIndices()[last] == k ? topk : nullptr;
}

/// The top-k of `scatter` = zeros[T, E].at[arange(T)[:, None], idx].set(u)
/// with idx its indices (or full(-inf) instead of zeros, with `negInfFill`);
/// or null (and why, when `fail` is given).
chlo::TopKOp scatteredAtTopK(shlo::ScatterOp scatter, NoMatch *fail, bool negInfFill = false) {
  auto why = [&](const char *reason) -> chlo::TopKOp {
    if (fail)
      fail->why = reason;
    return nullptr;
  };
  shlo::ScatterDimensionNumbersAttr sd = scatter.getScatterDimensionNumbers();
  Block &body = scatter.getUpdateComputation().front();
  bool setsUpdate = body.getNumArguments() == 2 && llvm::hasSingleElement(body) &&
                    body.getTerminator()->getOperand(0) == body.getArgument(1);
  auto indices = scatter.getInputs().size() == 1 ? scatter.getScatterIndices().getDefiningOp<shlo::ConcatenateOp>()
                                                 : nullptr;
  auto indexType = cast<RankedTensorType>(scatter.getScatterIndices().getType());
  std::optional<double> fill = splatValue(scatter.getInputs()[0]);
  bool filled = fill && (negInfFill ? std::isinf(*fill) && *fill < 0 : *fill == 0);
  if (!setsUpdate || !filled || !indices || indices.getInputs().size() != 2 ||
      sd.getInsertedWindowDims() != ArrayRef<int64_t>{0, 1} ||
      sd.getScatterDimsToOperandDims() != ArrayRef<int64_t>{0, 1} || !sd.getUpdateWindowDims().empty() ||
      sd.getIndexVectorDim() != indexType.getRank() - 1 ||
      static_cast<int64_t>(indices.getDimension()) != indexType.getRank() - 1)
    return why("the gate is scattered in some other way than zeros.at[rows, idx].set(weights)");
  // The rows: arange(T) (wrapped, reshaped, broadcast over the slots).
  Value ids = withoutUnitDims(unwrapIndex(withoutUnitDims(indices.getInputs()[1])));
  auto topk = ids.getDefiningOp<chlo::TopKOp>();
  if (!isTokenRows(indices.getInputs()[0]) || !topk || ids != topk.getIndices())
    return why("the scattered gate is not written at (token, top-k index)");
  return topk;
}

/// The top-k whose experts `mask` [T, E] marks: one_hot(ids) of top-1 ids
/// [T] (argmax), the sum (or jnp.any) over slots of one_hot(ids) [T, K, E],
/// ones scattered at the top-k's (token, index) pairs, or the scores
/// reaching their k-th largest; or null.
chlo::TopKOp topKMembership(Value mask) {
  mask = withoutConverts(mask);
  if (chlo::TopKOp topk = thresholdTopK(mask))
    return topk;
  // zeros.at[rows, idx].set(1): the top-k's members (DeepSeek's mask
  // built by scatter).
  if (auto scatter = mask.getDefiningOp<shlo::ScatterOp>())
    return isSplat(scatter.getUpdates()[0], 1) ? scatteredAtTopK(scatter, nullptr) : nullptr;
  Value ids;
  if (auto sum = mask.getDefiningOp<shlo::ReduceOp>()) {
    int64_t rank = cast<RankedTensorType>(sum.getInputs()[0].getType()).getRank();
    Block &body = sum.getBody().front();
    bool anyBody = llvm::hasNItems(body, 2) && isa<shlo::OrOp>(body.front()) && isSplat(sum.getInitValues()[0], 0);
    if (sum.getInputs().size() == 1 && rank == 3 && sum.getDimensions() == ArrayRef<int64_t>{1} &&
        (isAddBody(sum.getBody()) || anyBody))
      ids = oneHotIds(withoutConverts(sum.getInputs()[0]));
  } else if (cast<RankedTensorType>(mask.getType()).getRank() == 2) {
    ids = oneHotIds(mask);
    // one_hot of [T] ids: top-1 indices with their unit slot dim dropped.
    if (ids && cast<RankedTensorType>(ids.getType()).getRank() != 1)
      ids = nullptr;
  }
  Value top = ids ? withoutUnitDims(ids) : Value();
  auto topk = top ? top.getDefiningOp<chlo::TopKOp>() : nullptr;
  if (!topk || top != topk.getIndices() || (ids != top && topk.getK() != 1))
    return nullptr;
  return topk;
}

/// probs [T, E] (softmax or sigmoid of the router logits) kept at the
/// experts `topk` selected from the probs or from the logits (the same
/// experts: both functions are increasing): top-k routing, renormalised
/// when the kept scores are divided by their sum.
LogicalResult maskedScoresRouting(Value probs, chlo::TopKOp topk, bool renormalised, RecognisedLayer &layer,
                                  NoMatch &fail) {
  probs = withoutConverts(probs);
  NoMatch ignored;
  Value logits;
  bool sigmoid = false;
  if (FailureOr<Value> z = softmaxInput(probs, ignored); succeeded(z)) {
    logits = *z;
  } else if (Value z = sigmoidInput(probs)) {
    logits = z;
    sigmoid = true;
  }
  Value selected = withoutConverts(topk.getOperand());
  if (!logits || (selected != probs && selected != withoutConverts(logits))) {
    fail.why = "the gate keeps scores at the top-k experts, but not the softmax or sigmoid of the logits selected";
    return failure();
  }
  if (failed(routerLogits(withoutConverts(logits), Value(), layer, fail)))
    return failure();
  layer.k = topk.getK();
  layer.sigmoid = sigmoid;
  layer.normalize = renormalised;
  // Selected among the (16-bit) scores themselves, not the logits.
  if (selected == probs)
    layer.scoresType = sixteenBitScores(topk);
  return success();
}

/// The routing gate [T, E], zero off each token's top-k: a sum of one-hot
/// rows times the weights, `zeros.at[rows, idx].set(weights)`, or a softmax
/// of the logits masked to their top-k.
LogicalResult routingGate(Value gate, RecognisedLayer &layer, NoMatch &fail) {
  if (auto convert = gate.getDefiningOp<shlo::ConvertOp>())
    gate = convert.getOperand();
  Value vals, idx;
  NoMatch oneHotFail;
  // einsum("tke,tk->te", one_hot(idx, E), vals): the same sum over slots
  // as a contraction.
  if (auto dot = gate.getDefiningOp<shlo::DotGeneralOp>()) {
    shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
    int64_t rank = cast<RankedTensorType>(gate.getType()).getRank();
    SmallVector<int64_t> tokens = llvm::to_vector(llvm::seq<int64_t>(0, rank - 1));
    for (bool oneHotIsLhs : {true, false}) {
      Value ids = oneHotIds(oneHotIsLhs ? dot.getLhs() : dot.getRhs());
      ArrayRef<int64_t> hc = oneHotIsLhs ? d.getLhsContractingDimensions() : d.getRhsContractingDimensions();
      ArrayRef<int64_t> vc = oneHotIsLhs ? d.getRhsContractingDimensions() : d.getLhsContractingDimensions();
      // one_hot [tokens..., K, E] and vals [tokens..., K]: batch the tokens,
      // contract K; vals has no other dim, so the result is [tokens..., E]
      // in either operand order.
      if (ids && d.getLhsBatchingDimensions() == ArrayRef(tokens) && d.getRhsBatchingDimensions() == ArrayRef(tokens) &&
          hc == ArrayRef<int64_t>{rank - 1} && vc == ArrayRef<int64_t>{rank - 1} &&
          cast<RankedTensorType>((oneHotIsLhs ? dot.getRhs() : dot.getLhs()).getType()).getRank() == rank) {
        vals = oneHotIsLhs ? dot.getRhs() : dot.getLhs();
        idx = ids;
      }
    }
  }
  if (idx || succeeded(denseTopKGate(gate, vals, idx, oneHotFail))) {
    FailureOr<chlo::TopKOp> topk = topKRouting(vals, layer, fail);
    if (failed(topk))
      return failure();
    if (idx != topk->getIndices()) {
      fail.why = "the gate's expert ids are not the top-k indices of its weights";
      return failure();
    }
    return success();
  }
  // The scores kept at each token's top-k experts, possibly renormalised:
  // mask(top-k ids) * probs (Switch's one_hot(argmax(logits)) *
  // softmax(logits)), where(probs >= k-th largest, probs, 0).
  {
    Value kept = gate;
    bool renormalised = false;
    if (Value numerator = renormalisedInput(gate)) {
      kept = withoutConverts(numerator);
      renormalised = true;
    }
    if (auto select = kept.getDefiningOp<shlo::SelectOp>(); select && isSplat(select.getOnFalse(), 0))
      if (chlo::TopKOp topk = topKMembership(select.getPred()))
        return maskedScoresRouting(select.getOnTrue(), topk, renormalised, layer, fail);
    if (auto mul = kept.getDefiningOp<shlo::MulOp>())
      for (auto [mask, scores] : {std::pair{mul.getLhs(), mul.getRhs()}, std::pair{mul.getRhs(), mul.getLhs()}})
        if (chlo::TopKOp topk = topKMembership(mask)) {
          // Switch's top-1: one_hot(ids) times the token's one weight
          // ([T, 1] broadcast over the experts).
          SmallVector<int64_t> dims;
          Value weight = broadcastChainSource(scores, dims);
          auto weightType = cast<RankedTensorType>(weight.getType());
          int64_t gateRank = cast<RankedTensorType>(scores.getType()).getRank();
          bool perToken = weightType.getRank() == gateRank - 1 ||
                          (weightType.getRank() == gateRank && weightType.getShape().back() == 1);
          if (topk.getK() == 1 && !renormalised && weight != scores && perToken) {
            NoMatch weightFail;
            RecognisedLayer attempt;
            FailureOr<chlo::TopKOp> routed = topKRouting(withoutConverts(withoutUnitDims(weight)), attempt, weightFail);
            if (succeeded(routed) && *routed == topk) {
              layer = attempt;
              return success();
            }
          }
          return maskedScoresRouting(scores, topk, renormalised, layer, fail);
        }
  }
  // zeros[T, E].at[arange(T)[:, None], idx].set(vals)
  if (auto scatter = gate.getDefiningOp<shlo::ScatterOp>()) {
    chlo::TopKOp topk = scatteredAtTopK(scatter, &fail);
    if (!topk)
      return failure();
    Value weights = withoutUnitDims(scatter.getUpdates()[0]);
    FailureOr<chlo::TopKOp> routed = topKRouting(weights, layer, fail);
    if (failed(routed))
      return failure();
    if (*routed != topk) {
      fail.why = "the gate's expert ids are not the top-k indices of its weights";
      return failure();
    }
    return success();
  }
  // softmax(where(logits >= top_k(logits).values[:, k-1:k], logits, -inf)),
  // or a large negative fill (-1e9, finfo.min): exp(fill - max) is 0 in f32
  // whenever the largest logit exceeds fill + 104, as any real one does.
  NoMatch ignored;
  FailureOr<Value> masked = softmaxInput(gate, ignored);
  // softmax(logits + full(-inf).at[rows, idx].set(0)): the same, added.
  if (auto add = succeeded(masked) ? masked->getDefiningOp<shlo::AddOp>() : nullptr)
    for (auto [logits, mask] : {std::pair{add.getLhs(), add.getRhs()}, std::pair{add.getRhs(), add.getLhs()}}) {
      auto scatter = mask.getDefiningOp<shlo::ScatterOp>();
      chlo::TopKOp topk = scatter && scatter.getUpdates().size() == 1 && isSplat(scatter.getUpdates()[0], 0)
                              ? scatteredAtTopK(scatter, nullptr, /*negInfFill=*/true)
                              : nullptr;
      NoMatch routerFail;
      if (topk && topk.getOperand() == logits && succeeded(routerLogits(logits, Value(), layer, routerFail))) {
        layer.k = topk.getK();
        layer.normalize = true;
        return success();
      }
    }
  auto select = succeeded(masked) ? masked->getDefiningOp<shlo::SelectOp>() : nullptr;
  auto ge = select ? select.getPred().getDefiningOp<shlo::CompareOp>() : nullptr;
  std::optional<double> fill = select ? splatValue(select.getOnFalse()) : std::nullopt;
  if (ge && ge.getComparisonDirection() == shlo::ComparisonDirection::GE && fill && *fill <= -1e4 &&
      ge.getLhs() == select.getOnTrue()) {
    if (chlo::TopKOp topk = thresholdTopK(ge)) {
      NoMatch routerFail;
      if (succeeded(routerLogits(topk.getOperand(), Value(), layer, routerFail))) {
        layer.k = topk.getK();
        layer.normalize = true;
        return success();
      }
    }
    fail.why = "the masked softmax gate does not keep the router logits' top-k";
    return failure();
  }
  fail.why = "the gate is none of: a sum of one-hot rows times weights, zeros.at[rows, idx].set(weights), "
             "a softmax of the top-k-masked logits, the scores masked to their top-k";
  return failure();
}

/// `v` = of[..., c:c+1], a slice of one column of the last dim: returns c
/// and sets `of`.
std::optional<int64_t> lastDimColumn(Value v, Value &of) {
  auto column = v.getDefiningOp<shlo::SliceOp>();
  if (!column)
    return std::nullopt;
  auto type = cast<RankedTensorType>(column.getOperand().getType());
  int64_t last = type.getRank() - 1;
  for (int64_t d = 0; d < last; ++d)
    if (column.getStartIndices()[d] != 0 || column.getLimitIndices()[d] != type.getDimSize(d))
      return std::nullopt;
  if (column.getLimitIndices()[last] != column.getStartIndices()[last] + 1 || column.getStrides()[last] != 1)
    return std::nullopt;
  of = column.getOperand();
  return column.getStartIndices()[last];
}

/// Slot s of top-k values or indices [T, k]: column s, or the whole value
/// when k = 1 (JAX elides the slice `vals[:, :1]`); returns s and sets `of`.
std::optional<int64_t> slotColumn(Value v, Value &of) {
  if (std::optional<int64_t> s = lastDimColumn(v, of))
    return s;
  auto type = dyn_cast<RankedTensorType>(v.getType());
  if (!type || type.getRank() != 2 || type.getDimSize(1) != 1)
    return std::nullopt;
  of = v;
  return 0;
}

/// The slots routed to one expert e: `idx == e` (as a mask or converted to
/// numbers) or column e of one_hot(idx); returns e and sets `ids`.
std::optional<int64_t> expertMask(Value mask, Value &ids) {
  mask = withoutConverts(mask);
  if (auto eq = mask.getDefiningOp<shlo::CompareOp>();
      eq && eq.getComparisonDirection() == shlo::ComparisonDirection::EQ) {
    for (auto [a, b] : {std::pair{eq.getLhs(), eq.getRhs()}, std::pair{eq.getRhs(), eq.getLhs()}})
      if (std::optional<double> e = splatValue(b)) {
        ids = a;
        return static_cast<int64_t>(*e);
      }
    return std::nullopt;
  }
  // one_hot(idx, E)[..., e]: a slice of one column of the last dim.
  while (auto reshape = mask.getDefiningOp<shlo::ReshapeOp>())
    mask = reshape.getOperand();
  Value of;
  std::optional<int64_t> column = lastDimColumn(mask, of);
  Value oneHot = column ? oneHotIds(of) : Value();
  if (!oneHot)
    return std::nullopt;
  ids = oneHot;
  return column;
}

/// Column e of the routing gate as a Python loop over experts writes it:
/// sum_k where(idx == e, vals, 0) (or the product with the mask), or
/// column e of a dense gate.
FailureOr<std::pair<int64_t, Value>> gateColumn(Value column, RecognisedLayer &layer, NoMatch &fail,
                                                std::optional<int64_t> *slot = nullptr) {
  // G[:, e] of a dense routing gate [T, E] (a masked softmax, a scatter of
  // the top-k weights); the gate itself identifies the selection.
  Value dense;
  if (std::optional<int64_t> e = lastDimColumn(withoutConverts(column), dense);
      e && cast<RankedTensorType>(dense.getType()).getRank() == 2) {
    RecognisedLayer attempt;
    NoMatch gateFail;
    if (succeeded(routingGate(dense, attempt, gateFail))) {
      layer = attempt;
      return std::pair<int64_t, Value>{*e, dense};
    }
  }
  auto sum = withoutConverts(column).getDefiningOp<shlo::ReduceOp>();
  bool summed = sum && sum.getInputs().size() == 1 && reducesLastDim(sum) && isAddBody(sum.getBody());
  // Top-1 ids and weights [T] (argmax) need no sum over slots. 16-bit sums
  // are taken in f32.
  Value masked = withoutConverts(summed ? sum.getInputs()[0] : column), vals, ids;
  std::optional<int64_t> e;
  if (auto select = masked.getDefiningOp<shlo::SelectOp>(); select && isSplat(select.getOnFalse(), 0)) {
    if ((e = expertMask(select.getPred(), ids)))
      vals = select.getOnTrue();
  } else if (auto mul = masked.getDefiningOp<shlo::MulOp>()) {
    // The mask may be a column already ((idx == e)[:, None] of top-1 ids).
    for (auto [a, b] : {std::pair{mul.getLhs(), mul.getRhs()}, std::pair{mul.getRhs(), mul.getLhs()}})
      if (!e && (e = expertMask(summed ? a : withoutUnitDims(withoutConverts(withoutUnitDims(a))), ids)))
        vals = b;
  }
  if (!e) {
    fail.why = summed ? "an expert's weight is not selected by comparing the top-k indices with its number"
                      : "an expert's weight is not a sum over slots of where(idx == e, weights, 0)";
    return failure();
  }
  if (!summed) {
    vals = withoutUnitDims(vals);
    ids = withoutUnitDims(ids);
    // One slot's part of the column, where(idx[:, j] == e, vals[:, j], 0)
    // (a loop over the slots, then the experts): its slot, for the caller
    // to add the slots' parts up.
    Value valsOf, idsOf;
    std::optional<int64_t> valsSlot = lastDimColumn(withoutConverts(vals), valsOf),
                           idsSlot = lastDimColumn(withoutConverts(ids), idsOf);
    if (slot && valsSlot && valsSlot == idsSlot) {
      *slot = valsSlot;
      vals = valsOf;
      ids = idsOf;
    }
  }
  // Weights cast to a 16-bit x's type (vals.astype(x.dtype)): the layer
  // combines with the f32 weights, which differ by that rounding only.
  vals = withoutConverts(vals);
  FailureOr<chlo::TopKOp> topk = topKRouting(vals, layer, fail);
  if (failed(topk))
    return failure();
  if (!summed && topk->getK() != 1 && !(slot && *slot)) {
    fail.why = "an expert's weight is where(idx == e, weights, 0) of a top-k with k > 1, not summed over the slots";
    return failure();
  }
  if (ids != topk->getIndices()) {
    fail.why = "an expert's weight is selected by other ids than the top-k indices";
    return failure();
  }
  return std::pair<int64_t, Value>{static_cast<int64_t>(*e), topk->getIndices()};
}

Value slice(OpBuilder &b, Location loc, Value v, ArrayRef<int64_t> starts, ArrayRef<int64_t> limits) {
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<int64_t> shape, strides(type.getRank(), 1);
  for (auto [lo, hi] : llvm::zip(starts, limits))
    shape.push_back(hi - lo);
  return shlo::SliceOp::create(b, loc, RankedTensorType::get(shape, type.getElementType()), v,
                               b.getDenseI64ArrayAttr(starts), b.getDenseI64ArrayAttr(limits),
                               b.getDenseI64ArrayAttr(strides));
}

/// The projection weight of every expert as one [E, In, Out] stack.
Value stackedWeight(OpBuilder &b, Location loc, ArrayRef<WeightView> views) {
  auto sliced = [&](Value v, int64_t outDim, int64_t begin, int64_t end) -> Value {
    auto type = cast<RankedTensorType>(v.getType());
    if (begin == 0 && end == type.getDimSize(outDim))
      return v;
    SmallVector<int64_t> starts(type.getRank(), 0), limits(type.getShape());
    starts[outDim] = begin;
    limits[outDim] = end;
    return slice(b, loc, v, starts, limits);
  };
  auto transposed = [&](Value v, ArrayRef<int64_t> perm) { return transposeOf(b, loc, v, perm); };
  const WeightView &first = views.front();
  bool oneStack = first.eDim >= 0 && llvm::all_of(llvm::enumerate(views), [&](auto item) {
                    const WeightView &v = item.value();
                    return v.sameWeightAs(first) && (views.size() == 1 || v.expert == static_cast<int64_t>(item.index()));
                  });
  if (oneStack)
    return sliced(transposed(first.base, {first.eDim, first.inDim, first.outDim}), 2, first.outBegin, first.outEnd);
  SmallVector<Value> rows;
  for (const WeightView &v : views) {
    Value matrix = v.base;
    auto type = cast<RankedTensorType>(matrix.getType());
    if (v.eDim >= 0) { // one expert of a stack
      SmallVector<int64_t> starts(3, 0), limits(type.getShape());
      starts[v.eDim] = v.expert;
      limits[v.eDim] = v.expert + 1;
      matrix = transposed(slice(b, loc, matrix, starts, limits), {v.eDim, v.inDim, v.outDim});
    } else {
      matrix = transposed(matrix, {v.inDim, v.outDim});
      auto mt = cast<RankedTensorType>(matrix.getType());
      matrix = shlo::ReshapeOp::create(
          b, loc, RankedTensorType::get({1, mt.getDimSize(0), mt.getDimSize(1)}, mt.getElementType()), matrix);
    }
    rows.push_back(sliced(matrix, 2, v.outBegin, v.outEnd));
  }
  auto rowType = cast<RankedTensorType>(rows.front().getType());
  return shlo::ConcatenateOp::create(
      b, loc,
      RankedTensorType::get({static_cast<int64_t>(rows.size()), rowType.getDimSize(1), rowType.getDimSize(2)},
                            rowType.getElementType()),
      rows, b.getI64IntegerAttr(0));
}

/// The bias of every expert's projection as one [E, Out] stack, or null when
/// no expert's projection has one. `experts` views: one per expert, or one
/// for all (then the bias is a stack, or one vector every expert adds).
FailureOr<Value> stackedBias(OpBuilder &b, Location loc, ArrayRef<WeightView> views, int64_t experts, NoMatch &fail) {
  auto hasBias = [](const WeightView &v) { return static_cast<bool>(v.bias.base); };
  if (llvm::none_of(views, hasBias))
    return Value();
  if (!llvm::all_of(views, hasBias)) {
    fail.why = "only some experts' projections add a bias";
    return failure();
  }
  const WeightView &first = views.front();
  // Rows [n, Out] of a bias, cut to the part of the output the view uses.
  auto rowsOf = [&](const WeightView &v) -> Value {
    // The bias as [E', Out] (E' = 1 without an expert dim): its other dims
    // have size 1, so a reshape keeps its order.
    const BiasView &bias = v.bias;
    auto type = cast<RankedTensorType>(bias.base.getType());
    int64_t out = type.getDimSize(bias.outDim), stacked = bias.eDim < 0 ? 1 : type.getDimSize(bias.eDim);
    bool expertsFirst = bias.eDim < bias.outDim;
    SmallVector<int64_t> shape = expertsFirst ? SmallVector<int64_t>{stacked, out} : SmallVector<int64_t>{out, stacked};
    Value m = bias.base;
    if (type.getShape() != ArrayRef<int64_t>(shape))
      m = shlo::ReshapeOp::create(b, loc, RankedTensorType::get(shape, type.getElementType()), m);
    if (!expertsFirst)
      m = transposeOf(b, loc, m, {1, 0});
    if (bias.expert >= 0)
      m = slice(b, loc, m, {bias.expert, 0}, {bias.expert + 1, out});
    auto rows = cast<RankedTensorType>(m.getType());
    int64_t end = v.bias.end < 0 ? rows.getDimSize(1) : v.bias.end;
    if (v.bias.begin == 0 && end == rows.getDimSize(1))
      return m;
    return slice(b, loc, m, {0, v.bias.begin}, {rows.getDimSize(0), end});
  };
  if (views.size() == 1) {
    if (first.bias.expert >= 0) {
      fail.why = "every expert's projection adds one expert's bias";
      return failure();
    }
    Value rows = rowsOf(first);
    auto type = cast<RankedTensorType>(rows.getType());
    if (type.getDimSize(0) == experts)
      return rows;
    // One bias every expert adds.
    return shlo::BroadcastInDimOp::create(b, loc, RankedTensorType::get({experts, type.getDimSize(1)}, type.getElementType()),
                                          rows, b.getDenseI64ArrayAttr({0, 1}))
        .getResult();
  }
  SmallVector<Value> rows;
  for (auto [e, v] : llvm::enumerate(views)) {
    if (v.bias.eDim >= 0 && v.bias.expert != static_cast<int64_t>(e)) {
      fail.why = "expert " + std::to_string(e) + "'s projection adds another expert's bias";
      return failure();
    }
    rows.push_back(rowsOf(v));
  }
  auto rowType = cast<RankedTensorType>(rows.front().getType());
  return shlo::ConcatenateOp::create(
             b, loc, RankedTensorType::get({static_cast<int64_t>(rows.size()), rowType.getDimSize(1)}, rowType.getElementType()),
             rows, b.getI64IntegerAttr(0))
      .getResult();
}

/// A candidate's pieces once matched: the routing (in `layer`) and the
/// experts' FFNs, one for all experts or one per expert in expert order.
struct Mixture {
  RecognisedLayer layer;
  SmallVector<ExpertFfn, 4> ffns;
};

/// Checks that the per-expert FFNs agree on their activation and returns
/// the layer with its weights stacked.
LogicalResult finish(Operation *at, Mixture &m, NoMatch &fail) {
  const ExpertFfn &first = m.ffns.front();
  for (const ExpertFfn &f : m.ffns)
    if (f.activation != first.activation || f.gated != first.gated) {
      fail.why = "the experts have different activations";
      return failure();
    }
  // Every up projection reads one x; a narrower one than the router's
  // (mixed precision) becomes the layer's x, the router widening it.
  for (const ExpertFfn &f : m.ffns)
    for (const WeightView *v : {&f.w1, &f.w3})
      if (v->base && v->input != first.w1.input) {
        fail.why = "the expert projections read x in different precisions";
        return failure();
      }
  if (first.w1.input)
    m.layer.x = first.w1.input;
  auto weights = [&](WeightView ExpertFfn::*member) {
    SmallVector<WeightView, 8> views;
    for (const ExpertFfn &f : m.ffns)
      views.push_back(f.*member);
    return views;
  };
  // Shapes first, so that no op is built for a candidate that fails.
  auto xType = cast<RankedTensorType>(m.layer.x.getType());
  int64_t hidden = xType.getDimSize(xType.getRank() - 1), features = first.w1.outEnd - first.w1.outBegin;
  auto fits = [&](const WeightView &v, int64_t in, int64_t out) {
    auto type = cast<RankedTensorType>(v.base.getType());
    return type.getDimSize(v.inDim) == in && v.outEnd - v.outBegin == out &&
           type.getElementType() == xType.getElementType();
  };
  // A bias has the weights' element type and one value per output.
  auto biasFits = [&](const WeightView &v, int64_t out) {
    if (!v.bias.base)
      return true;
    auto type = cast<RankedTensorType>(v.bias.base.getType());
    int64_t size = type.getDimSize(v.bias.outDim), end = v.bias.end < 0 ? size : v.bias.end;
    return type.getElementType() == xType.getElementType() && end <= size && end - v.bias.begin == out;
  };
  for (const ExpertFfn &f : m.ffns) {
    if (!fits(f.w1, hidden, features) || (f.gated && !fits(f.w3, hidden, features)) ||
        !fits(f.w2, features, hidden)) {
      fail.why = "the experts' weights differ in shape or element type";
      return failure();
    }
    if (!biasFits(f.w1, features) || (f.gated && !biasFits(f.w3, features)) || !biasFits(f.w2, hidden)) {
      fail.why = "the experts' biases differ in shape or element type from their weights";
      return failure();
    }
  }
  int64_t experts = routerExperts(m.layer) - static_cast<int64_t>(m.layer.extraExperts.size());
  OpBuilder b(at);
  Location loc = at->getLoc();
  for (auto [member, bias] : {std::pair{&ExpertFfn::w1, &m.layer.b1}, std::pair{&ExpertFfn::w3, &m.layer.b3},
                              std::pair{&ExpertFfn::w2, &m.layer.b2}}) {
    if (member == &ExpertFfn::w3 && !first.gated)
      continue;
    FailureOr<Value> stacked = stackedBias(b, loc, weights(member), experts, fail);
    if (failed(stacked))
      return failure();
    *bias = *stacked;
  }
  m.layer.activation = first.activation;
  m.layer.w1 = stackedWeight(b, loc, weights(&ExpertFfn::w1));
  m.layer.w3 = first.gated ? stackedWeight(b, loc, weights(&ExpertFfn::w3)) : Value();
  m.layer.w2 = stackedWeight(b, loc, weights(&ExpertFfn::w2));
  // x [B, S, H]: the layer takes its rows [B * S, H] (replaceWithLayer
  // shapes the result back).
  if (xType.getRank() == 3 && xType.hasStaticShape())
    m.layer.x = shlo::ReshapeOp::create(
        b, loc, RankedTensorType::get({xType.getDimSize(0) * xType.getDimSize(1), hidden}, xType.getElementType()),
        m.layer.x);
  return checkLayerShapes(m.layer, fail);
}

/// Every mask the experts' input reads is 1 wherever `gate` is not 0: `gate
/// > 0` or `gate != 0` (as a float, or its bool), or a factor of the gate,
/// so the rows it zeroes are rows the gate gives no weight.
LogicalResult masksKeepGatedRows(ArrayRef<Value> masks, Value gate, NoMatch &fail) {
  // A gate that is a 0/1 top-k mask times the scores (GShard's combine =
  // probs * dispatch mask), maybe renormalised, is 0 wherever the mask is.
  Value product = withoutConverts(gate);
  if (Value numerator = renormalisedInput(product))
    product = withoutConverts(numerator);
  auto mul = product.getDefiningOp<shlo::MulOp>();
  for (Value mask : masks) {
    if (mul && (mul.getLhs() == mask || mul.getRhs() == mask) && topKMembership(mask))
      continue;
    // The 0/1 mask as a float, from a bool.
    Value m = mask;
    auto toFloat = m.getDefiningOp<shlo::ConvertOp>();
    m = toFloat && cast<RankedTensorType>(toFloat.getOperand().getType()).getElementType().isInteger(1)
            ? toFloat.getOperand()
            : Value();
    bool nonZero = false;
    if (auto toBool = m ? m.getDefiningOp<shlo::ConvertOp>() : nullptr) // float -> i1: (g != 0)
      nonZero = toBool.getOperand() == gate;
    else if (auto compare = m ? m.getDefiningOp<shlo::CompareOp>() : nullptr)
      nonZero = compare.getLhs() == gate && isSplat(compare.getRhs(), 0) &&
                (compare.getComparisonDirection() == shlo::ComparisonDirection::GT ||
                 compare.getComparisonDirection() == shlo::ComparisonDirection::NE);
    if (!nonZero) {
      fail.why = "the experts read x masked by something other than where the gate is non-zero";
      return failure();
    }
  }
  return success();
}

/// y = einsum over experts of the gate and the experts' outputs, as a
/// dot_general (batch tokens, contract experts) or a reduce over the
/// expert dim of their product.
FailureOr<Mixture> matchGateContraction(Operation *op, NoMatch &fail) {
  // The gate [tokens..., E] (rank 2 or 3) and where its dims land in the
  // experts' outputs.
  Value gate, outputs;
  int64_t outputsExpertDim = -1, outputsTokenDim = -1;
  SmallVector<int64_t> outputsTokenDims;
  if (auto dot = dyn_cast<shlo::DotGeneralOp>(op)) {
    shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
    for (bool gateIsLhs : {true, false}) {
      Value g = gateIsLhs ? dot.getLhs() : dot.getRhs();
      ArrayRef<int64_t> gc = gateIsLhs ? d.getLhsContractingDimensions() : d.getRhsContractingDimensions();
      ArrayRef<int64_t> gb = gateIsLhs ? d.getLhsBatchingDimensions() : d.getRhsBatchingDimensions();
      ArrayRef<int64_t> oc = gateIsLhs ? d.getRhsContractingDimensions() : d.getLhsContractingDimensions();
      ArrayRef<int64_t> ob = gateIsLhs ? d.getRhsBatchingDimensions() : d.getLhsBatchingDimensions();
      Value o = gateIsLhs ? dot.getRhs() : dot.getLhs();
      int64_t rank = cast<RankedTensorType>(g.getType()).getRank();
      if (!gate && (rank == 2 || rank == 3) && gc == ArrayRef<int64_t>{rank - 1} &&
          gb == ArrayRef(llvm::to_vector(llvm::seq<int64_t>(0, rank - 1))) &&
          cast<RankedTensorType>(o.getType()).getRank() == rank + 1) {
        gate = g;
        outputs = o;
        outputsExpertDim = oc[0];
        outputsTokenDims.assign(ob.begin(), ob.end());
      }
    }
  } else if (auto sum = dyn_cast<shlo::ReduceOp>(op)) {
    auto mul = sum.getInputs().size() == 1 && sum.getDimensions().size() == 1 && isAddBody(sum.getBody())
                   ? sum.getInputs()[0].getDefiningOp<shlo::MulOp>()
                   : nullptr;
    for (auto [a, bc] : mul ? SmallVector<std::pair<Value, Value>>{{mul.getLhs(), mul.getRhs()},
                                                                   {mul.getRhs(), mul.getLhs()}}
                            : SmallVector<std::pair<Value, Value>>{}) {
      SmallVector<int64_t> dims;
      Value source = broadcastChainSource(bc, dims);
      int64_t rank = cast<RankedTensorType>(source.getType()).getRank();
      // A transposed gate (gate.T[:, :, None]): its own dims land where
      // the transpose's do.
      if (auto t = source.getDefiningOp<shlo::TransposeOp>(); t && source != bc && static_cast<int64_t>(dims.size()) == rank) {
        SmallVector<int64_t> own(rank);
        for (int64_t d = 0; d < rank; ++d)
          own[t.getPermutation()[d]] = dims[d];
        source = t.getOperand();
        dims = own;
      }
      if (source != bc && (rank == 2 || rank == 3) && static_cast<int64_t>(dims.size()) == rank &&
          dims[rank - 1] == sum.getDimensions()[0]) {
        gate = source;
        outputs = a;
        outputsTokenDims.assign(dims.begin(), dims.end() - 1);
        outputsExpertDim = dims[rank - 1];
      }
    }
  }
  if (!gate) {
    fail.why = "not a gate-weighted sum over experts";
    return failure();
  }
  // Every expert computed, then each token's K routed outputs picked from
  // them and weighted by the top-k weights: the same sum as the dense
  // gate's over all experts (the unselected ones weigh 0).
  Value selectedBy;
  if (outputsTokenDims == ArrayRef<int64_t>{0} && outputsExpertDim == 1) {
    Value of;
    int64_t t, e;
    if (Value ids = selectedExpertRows(outputs, of, t, e)) {
      outputs = of;
      outputsTokenDims = {t};
      outputsExpertDim = e;
      selectedBy = ids;
    }
  }
  outputsTokenDim = outputsTokenDims.front();
  // The experts' outputs hold the gate's token dims where x has them, the
  // experts where the gate has them, and the hidden size.
  auto laidOutAsGate = [&](const Roles &roles, Role expertRole) {
    Roles tokens = tokenRoles(gate);
    if (roles.size() != tokens.size() + 1 || roles[outputsExpertDim] != expertRole)
      return false;
    for (auto [i, dim] : llvm::enumerate(outputsTokenDims))
      if (roles[dim] != tokens[i])
        return false;
    return llvm::count(roles, Role::hidden) == 1;
  };
  Mixture m;
  bool routedOutputs = readsTopK(outputs);
  if (selectedBy) {
    FailureOr<chlo::TopKOp> topk = topKRouting(gate, m.layer, fail);
    if (failed(topk))
      return failure();
    if (selectedBy != topk->getIndices()) {
      fail.why = "the experts' outputs are picked by other ids than the top-k indices of their weights";
      return failure();
    }
  } else if (routedOutputs) {
    // Only the routed experts' outputs, weights gathered per (token, slot)
    // (decode style): the gate is the top-k weights themselves. Or every
    // expert on x masked to its tokens by the gate (below). Anything else
    // reading the routing on both sides (a one-hot gate's own sum over
    // slots) is no mixture.
    NoMatch quiet;
    FailureOr<chlo::TopKOp> topk = topKRouting(gate, m.layer, quiet);
    ExpertFfn ffn;
    if (succeeded(topk) && succeeded(Matcher{m.layer.x, routerExperts(m.layer), quiet}.expertOutputs(outputs, ffn)) &&
        laidOutAsGate(ffn.roles, Role::slot)) {
      for (const WeightView *v : {&ffn.w1, &ffn.w3, &ffn.w2})
        if (v->base && v->gatherIds != topk->getIndices()) {
          fail.why = "the experts' weights are gathered by other ids than the top-k indices";
          return failure();
        }
      m.ffns.push_back(ffn);
      return m;
    }
    m = Mixture();
  }
  auto noMixture = [&]() -> FailureOr<Mixture> {
    fail.why = "not a gate-weighted sum over experts";
    return failure();
  };
  if (!selectedBy && failed(routingGate(gate, m.layer, fail)))
    return routedOutputs ? noMixture() : FailureOr<Mixture>(failure());
  Matcher matcher{m.layer.x, routerExperts(m.layer), fail};
  // jnp.stack of per-expert outputs along the expert dim.
  if (auto stack = outputs.getDefiningOp<shlo::ConcatenateOp>();
      !routedOutputs && stack && static_cast<int64_t>(stack.getDimension()) == outputsExpertDim) {
    if (static_cast<int64_t>(stack.getInputs().size()) != matcher.experts) {
      fail.why = "the stacked expert outputs are not one per routed expert";
      return failure();
    }
    for (auto [e, part] : llvm::enumerate(stack.getInputs())) {
      ExpertFfn ffn;
      if (failed(matcher.expertOutputs(withoutUnitDims(part), ffn)))
        return failure();
      if (ffn.roles != Roles{Role::token, Role::hidden} || outputsTokenDims.size() != 1 || outputsTokenDim > 1 ||
          llvm::any_of(std::array{&ffn.w1, &ffn.w3, &ffn.w2},
                       [&](WeightView *v) { return v->base && v->expert >= 0 && v->expert != int64_t(e); })) {
        fail.why = "a stacked expert output is not expert " + std::to_string(e) + "'s FFN of x";
        return failure();
      }
      m.ffns.push_back(ffn);
    }
    return m;
  }
  ExpertFfn ffn;
  matcher.masksAllowed = true;
  if (failed(matcher.expertOutputs(outputs, ffn)) || (routedOutputs && matcher.inputMasks.empty()))
    return routedOutputs ? noMixture() : FailureOr<Mixture>(failure());
  if (!laidOutAsGate(ffn.roles, Role::expert)) {
    fail.why = "the gate is not contracted with the experts' outputs over (token, expert)";
    return failure();
  }
  if (selectedBy && !matcher.inputMasks.empty()) {
    fail.why = "the experts whose outputs are picked per token read masked inputs";
    return failure();
  }
  if (failed(masksKeepGatedRows(matcher.inputMasks, gate, fail)))
    return failure();
  m.ffns.push_back(ffn);
  return m;
}

/// The FFNs of a sum with one term per expert (found in any order) as the
/// mixture's experts, in expert order, each on its own expert's weights.
LogicalResult takeOnePerExpert(MutableArrayRef<std::pair<int64_t, ExpertFfn>> byExpert, Mixture &m, NoMatch &fail) {
  int64_t experts = routerExperts(m.layer);
  llvm::sort(byExpert, [](auto &a, auto &b) { return a.first < b.first; });
  for (auto [e, item] : llvm::enumerate(byExpert)) {
    if (item.first != static_cast<int64_t>(e)) {
      fail.why = "the sum does not have one term per expert";
      return failure();
    }
    for (const WeightView *v : {&item.second.w1, &item.second.w3, &item.second.w2})
      if (v->base && v->expert >= 0 && v->expert != item.first) {
        fail.why = "expert " + std::to_string(item.first) + "'s term uses another expert's weights";
        return failure();
      }
    m.ffns.push_back(item.second);
  }
  if (static_cast<int64_t>(m.ffns.size()) != experts) {
    fail.why = "the sum has " + std::to_string(m.ffns.size()) + " expert terms for " + std::to_string(experts) +
               " routed experts";
    return failure();
  }
  return success();
}

/// The terms of a loop over the slots and then the experts, one per (slot,
/// expert), folded to one per expert: each expert's terms must weigh every
/// slot once, with the same weights and activation.
LogicalResult mergeSlotParts(SmallVectorImpl<std::pair<int64_t, ExpertFfn>> &byExpert,
                             std::map<int64_t, SmallVector<int64_t>> &slotsOf, int64_t k, NoMatch &fail) {
  SmallVector<std::pair<int64_t, ExpertFfn>, 4> merged;
  for (auto &[e, slots] : slotsOf) {
    llvm::sort(slots);
    if (slots != llvm::to_vector(llvm::seq<int64_t>(0, k))) {
      fail.why = "expert " + std::to_string(e) + "'s terms do not weigh each of the " + std::to_string(k) +
                 " slots once";
      return failure();
    }
    const ExpertFfn *first = nullptr;
    for (const auto &[te, ffn] : byExpert) {
      if (te != e)
        continue;
      if (first && !(ffn.sameFfnAs(*first) && ffn.roles == first->roles && ffn.w1.expert == first->w1.expert &&
                     ffn.w2.expert == first->w2.expert && ffn.w3.expert == first->w3.expert)) {
        fail.why = "expert " + std::to_string(e) + "'s slots use different weights or activations";
        return failure();
      }
      if (!first)
        first = &ffn;
    }
    merged.push_back({e, *first});
  }
  byExpert.assign(merged.begin(), merged.end());
  return success();
}

/// `mask` [T] keeps every row expert e's gate column may weigh:
/// jnp.any(ids == e, -1) of the top-k ids, or the column itself not 0.
bool keepsRoutedRows(Value mask, Value ids, int64_t e, Value column) {
  mask = withoutConverts(mask);
  if (auto any = mask.getDefiningOp<shlo::ReduceOp>()) {
    Block &body = any.getBody().front();
    bool orBody = llvm::hasNItems(body, 2) && isa<shlo::OrOp>(body.front()) && isSplat(any.getInitValues()[0], 0);
    Value routedIds;
    std::optional<int64_t> routed = any.getInputs().size() == 1 && orBody && reducesLastDim(any)
                                        ? expertMask(any.getInputs()[0], routedIds)
                                        : std::nullopt;
    return routed && *routed == e && routedIds == ids;
  }
  if (auto compare = mask.getDefiningOp<shlo::CompareOp>())
    return withoutUnitDims(compare.getLhs()) == withoutUnitDims(column) && isSplat(compare.getRhs(), 0) &&
           (compare.getComparisonDirection() == shlo::ComparisonDirection::GT ||
            compare.getComparisonDirection() == shlo::ComparisonDirection::NE);
  return false;
}

/// y = sum_e G[:, e] * FFN_e(x), written as a Python loop over experts, or
/// over the slots and then the experts: G[:, e] as the sum of its slots'
/// parts where(idx[:, j] == e, vals[:, j], 0), each with the expert's FFN.
FailureOr<Mixture> matchExpertLoop(ArrayRef<Value> terms, NoMatch &fail) {
  Mixture m;
  SmallVector<std::pair<int64_t, ExpertFfn>, 4> byExpert;
  std::map<int64_t, SmallVector<int64_t>> slotsOf; // expert -> the slots its terms weigh
  Value ids;
  for (Value term : terms) {
    auto mul = term.getDefiningOp<shlo::MulOp>();
    if (!mul) {
      fail.why = "a term of the sum over experts is not an expert's weight times its output";
      return failure();
    }
    FailureOr<std::pair<int64_t, Value>> column = failure();
    Value output, columnValue;
    NoMatch columnFail;
    for (auto [a, bc] : {std::pair{mul.getLhs(), mul.getRhs()}, std::pair{mul.getRhs(), mul.getLhs()}}) {
      SmallVector<int64_t> dims;
      Value source = broadcastChainSource(bc, dims);
      if (source == bc || dims.empty() || dims[0] != 0)
        continue;
      RecognisedLayer routing;
      std::optional<int64_t> slot;
      column = gateColumn(withoutUnitDims(source), routing, columnFail, &slot);
      bool partsSoFar = !slotsOf.empty();
      if (succeeded(column) && !byExpert.empty() && slot.has_value() != partsSoFar) {
        fail.why = "the sum mixes whole gate columns with one slot's parts of them";
        return failure();
      }
      if (succeeded(column) && slot)
        slotsOf[column->first].push_back(*slot);
      if (succeeded(column)) {
        columnValue = source;
        if (m.layer.routerWeight && (routing.routerWeight != m.layer.routerWeight || routing.routerBias != m.layer.routerBias || routing.routerScale != m.layer.routerScale || routing.x != m.layer.x ||
                                     routing.routerExpertsFirst != m.layer.routerExpertsFirst)) {
          fail.why = "the experts' weights come from different routers";
          return failure();
        }
        m.layer = routing;
        output = a;
        break;
      }
    }
    if (failed(column)) {
      fail = columnFail;
      return failure();
    }
    if (ids && column->second != ids) {
      fail.why = "the experts' weights come from different top-k selections";
      return failure();
    }
    ids = column->second;
    Matcher matcher{m.layer.x, routerExperts(m.layer), fail};
    matcher.masksAllowed = true;
    ExpertFfn ffn;
    if (failed(matcher.expertOutputs(output, ffn)))
      return failure();
    // Each expert fed only its rows (x zeroed elsewhere) computes the same
    // on the rows its column weighs.
    if (!matcher.inputMasks.empty() ||
        llvm::any_of(matcher.rowMasks,
                     [&](Value mask) { return !keepsRoutedRows(mask, ids, column->first, columnValue); })) {
      fail.why = "expert " + std::to_string(column->first) +
                 " reads x masked by something other than the rows routed to it";
      return failure();
    }
    if (ffn.roles != tokenRoles(m.layer.x)) {
      fail.why = "an expert's output is not laid out as x";
      return failure();
    }
    byExpert.push_back({column->first, ffn});
  }
  if (!slotsOf.empty() && failed(mergeSlotParts(byExpert, slotsOf, m.layer.k, fail)))
    return failure();
  if (failed(takeOnePerExpert(byExpert, m, fail)))
    return failure();
  return m;
}

/// y = sum_s G[:, s] * FFN(x; W[idx[:, s]]): a loop over the k slots, each
/// slot's expert weights gathered per token by its column of the top-k
/// indices (decode code that indexes the stacks slot by slot).
FailureOr<Mixture> matchSlotLoop(ArrayRef<Value> terms, NoMatch &fail) {
  Mixture m;
  chlo::TopKOp topk;
  SmallVector<int64_t> slots;
  for (Value term : terms) {
    auto mul = term.getDefiningOp<shlo::MulOp>();
    if (!mul) {
      fail.why = "a term of the sum over slots is not a slot's weight times its expert's output";
      return failure();
    }
    std::optional<int64_t> slot;
    Value output;
    for (auto [a, bc] : {std::pair{mul.getLhs(), mul.getRhs()}, std::pair{mul.getRhs(), mul.getLhs()}}) {
      SmallVector<int64_t> dims;
      Value source = broadcastChainSource(bc, dims), vals;
      if (source == bc || dims.empty() || dims[0] != 0 || !(slot = slotColumn(withoutUnitDims(source), vals)))
        continue;
      RecognisedLayer routing;
      FailureOr<chlo::TopKOp> selected = topKRouting(withoutConverts(vals), routing, fail);
      if (failed(selected))
        return failure();
      if (topk && *selected != topk) {
        fail.why = "the slots' weights come from different top-k selections";
        return failure();
      }
      topk = *selected;
      m.layer = routing;
      output = a;
      break;
    }
    if (!output) {
      fail.why = "a term of the sum over slots is not weighted by one column of the top-k weights";
      return failure();
    }
    ExpertFfn ffn;
    if (failed(Matcher{m.layer.x, routerExperts(m.layer), fail}.expertOutputs(output, ffn)))
      return failure();
    if (ffn.roles != tokenRoles(m.layer.x)) {
      fail.why = "a slot's expert output is not laid out as x";
      return failure();
    }
    for (WeightView *v : {&ffn.w1, &ffn.w3, &ffn.w2}) {
      Value ids;
      if (v->base && (slotColumn(v->gatherIds, ids) != slot || ids != topk.getIndices())) {
        fail.why = "slot " + std::to_string(*slot) + "'s expert weights are not gathered by its top-k indices";
        return failure();
      }
      if (v->base)
        v->gatherIds = topk.getIndices(); // as one gather of all slots
    }
    if (!m.ffns.empty()) {
      const ExpertFfn &first = m.ffns.front();
      if (!ffn.sameFfnAs(first)) {
        fail.why = "the slots' experts use different weights or activations";
        return failure();
      }
    } else {
      m.ffns.push_back(ffn);
    }
    slots.push_back(*slot);
  }
  llvm::sort(slots);
  if (slots != llvm::to_vector(llvm::seq<int64_t>(0, m.layer.k))) {
    fail.why = "the sum does not have one term per slot of the top-" + std::to_string(m.layer.k);
    return failure();
  }
  return m;
}

/// x [T, H] repeated once per slot: reshape(broadcast_in_dim(x, [0, 2]) :
/// [T, K, H]) : [T * K, H] (jnp.repeat(x, K, 0), torch's repeat_interleave);
/// returns x, or null.
Value repeatedRowsSource(Value rows, int64_t k) {
  auto reshape = rows.getDefiningOp<shlo::ReshapeOp>();
  auto spread = reshape ? reshape.getOperand().getDefiningOp<shlo::BroadcastInDimOp>() : nullptr;
  if (!spread || spread.getBroadcastDimensions() != ArrayRef<int64_t>{0, 2})
    return nullptr;
  auto type = cast<RankedTensorType>(spread.getType());
  return type.getRank() == 3 && type.getDimSize(1) == k ? spread.getOperand() : Value();
}

/// DeepSeek-MoE's training-path loop as JAX ports write it: one row per
/// (token, slot), x repeated k times; each expert's output kept on the rows
/// routed to it, out = sum_e where(ids == e, FFN_e(rows), 0) with ids the
/// flattened top-k indices; y = sum over slots of out [T, K, H] times the
/// top-k weights.
FailureOr<Mixture> matchSlotRows(Operation *op, NoMatch &fail) {
  auto sum = dyn_cast<shlo::ReduceOp>(op);
  auto product = sum && sum.getInputs().size() == 1 ? sum.getInputs()[0].getDefiningOp<shlo::MulOp>() : nullptr;
  if (!product || cast<RankedTensorType>(product.getType()).getRank() != 3 ||
      sum.getDimensions() != ArrayRef<int64_t>{1} || !isAddBody(sum.getBody()))
    return failure();
  for (auto [o, w] : {std::pair{product.getLhs(), product.getRhs()}, std::pair{product.getRhs(), product.getLhs()}}) {
    SmallVector<int64_t> dims;
    Value vals = broadcastChainSource(w, dims);
    auto slotRows = o.getDefiningOp<shlo::ReshapeOp>();
    if (dims != ArrayRef<int64_t>{0, 1} || !slotRows)
      continue;
    Mixture m;
    FailureOr<chlo::TopKOp> topk = topKRouting(vals, m.layer, fail);
    if (failed(topk))
      return failure();
    int64_t k = topk->getK();
    SmallVector<Value> terms;
    addTerms(slotRows.getOperand(), terms);
    Value rows;
    SmallVector<std::pair<int64_t, ExpertFfn>, 4> byExpert;
    for (Value term : terms) {
      // where(ids == e, FFN_e(rows), 0), or the mask times the output.
      Value mask, output;
      if (auto select = term.getDefiningOp<shlo::SelectOp>(); select && isSplat(select.getOnFalse(), 0)) {
        mask = select.getPred();
        output = select.getOnTrue();
      } else if (auto mul = term.getDefiningOp<shlo::MulOp>()) {
        mask = mul.getLhs();
        output = mul.getRhs();
      }
      SmallVector<int64_t> maskDims;
      Value ids;
      std::optional<int64_t> e = mask ? expertMask(broadcastChainSource(withoutConverts(mask), maskDims), ids)
                                      : std::nullopt;
      auto flat = ids ? withoutConverts(ids).getDefiningOp<shlo::ReshapeOp>() : nullptr;
      if (!e || !flat || withoutConverts(flat.getOperand()) != topk->getIndices()) {
        fail.why = "a slot row's expert output is not kept by comparing the flattened top-k indices with its number";
        return failure();
      }
      ExpertFfn ffn;
      // The rows the experts read: x repeated per slot.
      if (!rows) {
        SetVector<Operation *> slice;
        (void)getBackwardSlice(output, &slice);
        for (Operation *s : slice)
          if (auto r = dyn_cast<shlo::ReshapeOp>(s); r && repeatedRowsSource(r, k) == m.layer.x)
            rows = r;
      }
      if (!rows) {
        fail.why = "the slot rows the experts read are not x repeated once per slot";
        return failure();
      }
      if (failed(Matcher{rows, routerExperts(m.layer), fail}.expertOutputs(output, ffn)))
        return failure();
      if (ffn.roles != Roles{Role::token, Role::hidden}) {
        fail.why = "an expert's output on the slot rows is not laid out as the rows";
        return failure();
      }
      // The layer reads x itself: each slot row is x's row.
      for (WeightView *v : {&ffn.w1, &ffn.w3})
        if (v->base)
          v->input = m.layer.x;
      byExpert.push_back({*e, ffn});
    }
    if (failed(takeOnePerExpert(byExpert, m, fail)))
      return failure();
    return m;
  }
  return failure();
}

/// `vals[:, s:s+1] * out` with `out` a contraction: a term of a loop over
/// the slots (the whole sum for top-1).
bool isSlotTerm(shlo::MulOp mul) {
  for (auto [a, bc] : {std::pair{mul.getLhs(), mul.getRhs()}, std::pair{mul.getRhs(), mul.getLhs()}}) {
    SmallVector<int64_t> dims;
    Value source = broadcastChainSource(bc, dims), of;
    if (source != bc && slotColumn(withoutUnitDims(source), of) && a.getDefiningOp<shlo::DotGeneralOp>())
      return true;
  }
  return false;
}

/// A term `where(mask, w * out, 0)` of a loop over experts (top-1 code
/// keeping each expert's output on its rows), rewritten as
/// `where(mask, w, 0) * out` for the loop matcher; `undo` restores it.
struct MaskedTerm {
  shlo::SelectOp original;
  Value rewritten;
  SmallVector<Operation *> built; // in creation order
  void undo() {
    rewritten.replaceAllUsesWith(original.getResult());
    for (Operation *op : llvm::reverse(built))
      if (op->use_empty())
        op->erase();
  }
};

/// Rewrites the masked terms (see MaskedTerm) under `root`: mask [T] (or
/// [T, 1]) and w [T] broadcast over out [T, H], the mask reading a top-k.
/// Equal wherever `out` is finite; the raised layer computes only the
/// selected experts, so it equals the original either way.
SmallVector<MaskedTerm> rewriteMaskedTerms(Operation *root) {
  SmallVector<shlo::SelectOp> selects;
  root->walk([&](shlo::SelectOp select) {
    if (isSplat(select.getOnFalse(), 0) && select.getOnTrue().getDefiningOp<shlo::MulOp>() &&
        cast<RankedTensorType>(select.getType()).getRank() == 2 && readsTopK(select.getPred()))
      selects.push_back(select);
  });
  SmallVector<MaskedTerm> rewritten;
  for (shlo::SelectOp select : selects) {
    OpBuilder b(select);
    Location loc = select.getLoc();
    SmallVector<Operation *> built;
    int64_t tokens = cast<RankedTensorType>(select.getType()).getDimSize(0);
    // A per-token value: [T], or [T, 1] (reshaped to [T] once both sides are).
    auto isPerToken = [&](Value v) {
      auto type = cast<RankedTensorType>(v.getType());
      return type.getDimSize(0) == tokens && (type.getRank() == 1 || (type.getRank() == 2 && type.getDimSize(1) == 1));
    };
    auto asTokens = [&](Value v) -> Value {
      auto type = cast<RankedTensorType>(v.getType());
      if (type.getRank() == 1)
        return v;
      auto reshape = shlo::ReshapeOp::create(b, loc, RankedTensorType::get({tokens}, type.getElementType()), v);
      built.push_back(reshape);
      return reshape.getResult();
    };
    SmallVector<int64_t> maskDims;
    Value maskSource = broadcastChainSource(select.getPred(), maskDims);
    if (maskDims.empty() || maskDims[0] != 0 || !isPerToken(maskSource))
      continue;
    auto mul = select.getOnTrue().getDefiningOp<shlo::MulOp>();
    for (auto [out, bc] : {std::pair{mul.getLhs(), mul.getRhs()}, std::pair{mul.getRhs(), mul.getLhs()}}) {
      SmallVector<int64_t> dims;
      Value source = broadcastChainSource(bc, dims);
      if (source == bc || dims.empty() || dims[0] != 0 || !isPerToken(source) || readsTopK(out))
        continue;
      Value w = asTokens(source), mask = asTokens(maskSource);
      auto wType = cast<RankedTensorType>(w.getType());
      Value zero =
          shlo::ConstantOp::create(b, loc, wType, DenseElementsAttr::get(wType, b.getZeroAttr(wType.getElementType())));
      Value column = shlo::SelectOp::create(b, loc, wType, mask, w, zero);
      Value spread = shlo::BroadcastInDimOp::create(b, loc, select.getType(), column, b.getDenseI64ArrayAttr({0}));
      Value term = shlo::MulOp::create(b, loc, select.getType(), spread, out);
      for (Value v : {zero, column, spread, term})
        built.push_back(v.getDefiningOp());
      select.getResult().replaceAllUsesWith(term);
      rewritten.push_back({select, term, built});
      break;
    }
  }
  return rewritten;
}

/// Erases the ops raised layers left dead; returns the ops in a raised
/// layer's originals (kept for the raising check).
DenseSet<Operation *> liveUnraisedOps(Operation *root) {
  root->walk([](Block *block) {
    for (Operation &op : llvm::make_early_inc_range(llvm::reverse(*block)))
      if (isOpTriviallyDead(&op))
        op.erase();
  });
  DenseSet<Operation *> taken;
  root->walk([&](RaisingCheckOp check) {
    SetVector<Operation *> slice;
    (void)getBackwardSlice(check.getOriginal(), &slice);
    taken.insert(slice.begin(), slice.end());
  });
  return taken;
}

} // namespace

unsigned mlir::moe::stablehlo_raise::raiseExpertMixtures(Operation *root, const RaiseOptions &options) {
  // Ops the layers raised before left dead, and ops in a raised layer's
  // originals (kept for the raising check), are not candidates again.
  DenseSet<Operation *> taken = liveUnraisedOps(root);
  SmallVector<MaskedTerm> maskedTerms = rewriteMaskedTerms(root);

  SmallVector<Operation *> candidates;
  root->walk([&](Operation *op) {
    if (op->getNumResults() != 1 || op->use_empty() || taken.contains(op))
      return;
    auto type = dyn_cast<RankedTensorType>(op->getResult(0).getType());
    if (!type || type.getRank() < 2 || type.getRank() > 3) // [T, H] or [B, S, H]
      return;
    if (isa<shlo::DotGeneralOp, shlo::ReduceOp>(op)) {
      candidates.push_back(op);
    } else if (isa<shlo::AddOp>(op) || (isa<shlo::MulOp>(op) && isSlotTerm(cast<shlo::MulOp>(op)))) {
      // Only the root of an add chain (or a lone top-1 slot term).
      bool inner = llvm::any_of(op->getUsers(), [](Operation *user) { return isa<shlo::AddOp>(user); });
      if (!inner)
        candidates.push_back(op);
    }
  });
  unsigned raised = 0;
  auto remark = [&](Operation *op, const NoMatch &fail) {
    emitRemark(op->getLoc()) << "expert mixture not raised to moe.layer: "
                             << (fail.why.empty() ? "its terms are not one gate-weighted expert each" : fail.why)
                             << "; it stays as plain ops";
  };
  for (Operation *op : candidates) {
    if (op->use_empty())
      continue;
    NoMatch fail;
    Value root = op->getResult(0);
    if (isa<shlo::AddOp, shlo::MulOp>(op)) {
      // The terms weighted by a gate column; the rest (a residual, a shared
      // expert) is added to the layer's output.
      // Terms weighted by an expert's gate column read the routing on one
      // side; terms of a loop over slots on both (the slot's weights and
      // its gathered experts).
      SmallVector<Value> terms, expertTerms, slotTerms, others;
      addTerms(root, terms);
      for (Value t : terms) {
        auto mul = t.getDefiningOp<shlo::MulOp>();
        bool lhs = mul && readsTopK(mul.getLhs()), rhs = mul && readsTopK(mul.getRhs());
        (lhs != rhs ? expertTerms : lhs && rhs ? slotTerms : others).push_back(t);
      }
      FailureOr<Mixture> mixture = failure();
      if (expertTerms.size() >= 2) {
        others.append(slotTerms);
        mixture = matchExpertLoop(expertTerms, fail);
      } else if (!slotTerms.empty()) {
        SmallVector<Value> weighted(expertTerms);
        weighted.append(slotTerms);
        SmallVector<Value> rest(others);
        others.append(expertTerms);
        expertTerms = slotTerms;
        mixture = matchSlotLoop(expertTerms, fail);
        // Experts fed only their rows of x read the routing on both sides
        // too: a loop over experts after all.
        NoMatch loopFail;
        if (failed(mixture) && weighted.size() >= 2) {
          if (FailureOr<Mixture> loop = matchExpertLoop(weighted, loopFail); succeeded(loop)) {
            mixture = loop;
            expertTerms = weighted;
            others = rest;
          } else if (llvm::none_of(slotTerms, [](Value t) {
                       auto mul = t.getDefiningOp<shlo::MulOp>();
                       return mul && isSlotTerm(mul);
                     })) {
            fail = loopFail; // no term looks like a slot's: say why the loop failed
          }
        }
      } else {
        continue;
      }
      if (failed(mixture) || failed(finish(op, *mixture, fail))) {
        remark(op, fail);
        continue;
      }
      OpBuilder b(op);
      Location loc = op->getLoc();
      Value experts = expertTerms.front();
      for (Value t : ArrayRef(expertTerms).drop_front())
        experts = shlo::AddOp::create(b, loc, root.getType(), experts, t);
      Value total = experts;
      for (Value t : others)
        if (mixture->layer.s2 || !matchSharedExpert(t, mixture->layer)) // a shared expert joins the layer
          total = shlo::AddOp::create(b, loc, root.getType(), total, t);
      if (total != root)
        root.replaceAllUsesWith(total);
      replaceWithLayer(experts.getDefiningOp(), experts, mixture->layer, options);
      ++raised;
      continue;
    }
    FailureOr<Mixture> mixture = matchGateContraction(op, fail);
    if (failed(mixture)) {
      NoMatch slotFail;
      if (FailureOr<Mixture> slots = matchSlotRows(op, slotFail); succeeded(slots))
        mixture = slots;
      else if (!slotFail.why.empty())
        fail = slotFail;
    }
    if (succeeded(mixture) && succeeded(finish(op, *mixture, fail))) {
      // routed + shared: the layer takes the shared expert and replaces the sum.
      Operation *replaced = op;
      if (op->hasOneUse())
        if (auto sum = dyn_cast<shlo::AddOp>(*op->getUsers().begin())) {
          Value other = sum.getLhs() == root ? sum.getRhs() : sum.getLhs();
          if (matchSharedExpert(other, mixture->layer))
            replaced = sum;
        }
      replaceWithLayer(replaced, replaced->getResult(0), mixture->layer, options);
      ++raised;
      continue;
    }
    if (succeeded(mixture) || (fail.why != "not a gate-weighted sum over experts" && readsTopK(root)))
      remark(op, fail);
  }
  // Masked terms no layer took go back to what the program wrote.
  for (MaskedTerm &t : maskedTerms)
    if (!t.rewritten.use_empty())
      t.undo();
  return raised;
}

void mlir::moe::stablehlo_raise::remarkUnraisedRouting(Operation *root, const DenseSet<Location> &remarked) {
  DenseSet<Operation *> taken = liveUnraisedOps(root), explained;
  root->walk([&](Operation *op) {
    if (!remarked.contains(op->getLoc()))
      return;
    SetVector<Operation *> slice;
    (void)getBackwardSlice(op, &slice);
    for (Operation *s : slice)
      if (isa<chlo::TopKOp>(s))
        explained.insert(s);
  });
  root->walk([&](chlo::TopKOp topk) {
    auto type = cast<RankedTensorType>(topk.getOperand().getType());
    int64_t experts = type.getDimSize(type.getRank() - 1);
    bool raised = topk->hasAttr(kRaisedSelection);
    topk->removeAttr(kRaisedSelection);
    if (raised || topk->use_empty() || taken.contains(topk) || explained.contains(topk) || type.getRank() < 2 ||
        type.getRank() > 3 ||
        ShapedType::isDynamic(experts) || experts > 1024 || static_cast<int64_t>(topk.getK()) >= experts)
      return;
    // Routing picks something by its indices (a one-hot or `== e` mask, a
    // gather of expert weights, a dispatch sort or scatter); indices only
    // returned or converted are no routing.
    SetVector<Operation *> readers;
    (void)getForwardSlice(topk.getIndices(), &readers);
    if (llvm::none_of(readers, [](Operation *op) {
          return isa<shlo::CompareOp, shlo::GatherOp, shlo::ScatterOp, shlo::SortOp>(op);
        }))
      return;
    InFlightDiagnostic remark = emitRemark(topk.getLoc());
    remark << "top-" << topk.getK() << " selection over [";
    llvm::interleaveComma(type.getShape(), remark);
    remark << "] scores not raised to moe.layer: ";
    if (llvm::any_of(readers, [](Operation *op) { return isa<shlo::WhileOp>(op); }))
      remark << "it is read inside a loop that is no counted loop over the experts or the slots (lax.fori_loop or "
                "lax.scan over range(E) or range(k) from a constant is unrolled; a Python loop, jax.vmap or an einsum "
                "over the experts is recognised)";
    else
      remark << "no recognised layer form reads it (expert mixtures, dropless sort + ragged_dot, GShard/Switch "
                "dispatch, MoE++; docs/stablehlo.md lists them)";
    remark << "; it stays as plain ops";
  });
  // An argsort of [T, E] scores left a sort (not read as a top-k) whose
  // indices pick experts: say which argsorts are.
  root->walk([&](shlo::SortOp sort) {
    if (sort.getInputs().size() != 2 || sort->use_empty() || taken.contains(sort) || remarked.contains(sort.getLoc()))
      return;
    auto type = cast<RankedTensorType>(sort.getInputs()[0].getType());
    auto iota = sort.getInputs()[1].getDefiningOp<shlo::IotaOp>();
    int64_t experts = type.getRank() == 2 ? type.getDimSize(1) : 0;
    if (!iota || iota.getIotaDimension() != 1 || sort.getDimension() != 1 || ShapedType::isDynamic(experts) ||
        experts < 2 || experts > 1024 || !isa<FloatType>(type.getElementType()) || sort.getResult(1).use_empty())
      return;
    SetVector<Operation *> readers;
    (void)getForwardSlice(sort.getResult(1), &readers);
    if (llvm::none_of(readers, [](Operation *op) { return isa<shlo::CompareOp, shlo::GatherOp, shlo::ScatterOp>(op); }))
      return;
    emitRemark(sort.getLoc()) << "argsort over [" << type.getDimSize(0) << ", " << experts
                              << "] scores not raised to moe.layer: only a descending argsort cut to its first k "
                                 "(jnp.argsort(-scores)[:, :k]) reads as lax.top_k; an ascending one cut to its last k "
                                 "puts the higher index first among equal scores; it stays as plain ops";
  });
}
