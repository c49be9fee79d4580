//===- StackedSums.cpp - jnp.stack(terms).sum(0) as the terms' sum --------===//
//
// A list of same-shaped terms stacked and summed, jnp.stack([...]).sum(0)
// (each expert's gate-weighted output, say), is
//
//   reduce(add, concatenate(broadcast_in_dim(v_i) : [1, ...], dim d), dims = [d])
//
// which is v_0 + v_1 + ..., the Add chain sum(list) gives and the mixture
// matchers read (the same terms, added in list order). A 16-bit stack
// summed in f32 (a convert between) is not rewritten.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// `operand` of the concatenate is `v` given a unit dim `dim` by a reshape
/// or broadcast_in_dim, `v` of `type`: v, or null.
Value unstacked(Value operand, int64_t dim, RankedTensorType type) {
  Operation *op = operand.getDefiningOp();
  Value v;
  if (auto reshape = dyn_cast_or_null<shlo::ReshapeOp>(op)) {
    // [.., 1 at dim, ..] from the same sizes: the unit dim inserted.
    SmallVector<int64_t> sizes(cast<RankedTensorType>(operand.getType()).getShape());
    sizes.erase(sizes.begin() + dim);
    if (ArrayRef<int64_t>(sizes) != type.getShape())
      return Value();
    v = reshape.getOperand();
  } else if (auto bcast = dyn_cast_or_null<shlo::BroadcastInDimOp>(op)) {
    // Every dim but `dim`, in order.
    SmallVector<int64_t> want;
    for (int64_t d = 0; d <= type.getRank(); ++d)
      if (d != dim)
        want.push_back(d);
    if (bcast.getBroadcastDimensions() != ArrayRef<int64_t>(want))
      return Value();
    v = bcast.getOperand();
  }
  return v && v.getType() == type ? v : Value();
}

void rewrite(shlo::ReduceOp reduce) {
  if (reduce.getInputs().size() != 1 || reduce.getDimensions().size() != 1 || !isAddBody(reduce.getBody()) ||
      !isSplat(reduce.getInitValues()[0], 0))
    return;
  auto concat = reduce.getInputs()[0].getDefiningOp<shlo::ConcatenateOp>();
  auto type = dyn_cast<RankedTensorType>(reduce.getResult(0).getType());
  int64_t dim = reduce.getDimensions()[0];
  if (!concat || !type || static_cast<int64_t>(concat.getDimension()) != dim || concat.getInputs().size() < 2)
    return;
  SmallVector<Value> terms;
  for (Value operand : concat.getInputs()) {
    auto operandType = dyn_cast<RankedTensorType>(operand.getType());
    Value v = operandType && operandType.getDimSize(dim) == 1 ? unstacked(operand, dim, type) : Value();
    if (!v)
      return;
    terms.push_back(v);
  }
  OpBuilder b(reduce);
  Value sum = terms.front();
  for (Value term : ArrayRef<Value>(terms).drop_front())
    sum = shlo::AddOp::create(b, reduce.getLoc(), type, sum, term);
  reduce.getResult(0).replaceAllUsesWith(sum);
  reduce->erase();
  if (concat->use_empty())
    concat->erase();
}

} // namespace

void mlir::moe::stablehlo_raise::unstackSums(Operation *root) {
  SmallVector<shlo::ReduceOp> reduces;
  root->walk([&](shlo::ReduceOp reduce) { reduces.push_back(reduce); });
  for (shlo::ReduceOp reduce : reduces)
    rewrite(reduce);
}
