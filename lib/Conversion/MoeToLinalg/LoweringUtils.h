//===- LoweringUtils.h - helpers shared by the moe CPU lowerings -*- C++ -*-===//
//
// Small builders the per-family lowerings share: f32 conversion, zero-filled
// tensors, matmuls with transposed weights, the NaN-safe row softmax of
// docs/design.md section 2.1, the ranking order every selection uses, and an
// iterative top-k scan.
//
//===----------------------------------------------------------------------===//

#ifndef LIB_CONVERSION_MOETOLINALG_LOWERINGUTILS_H
#define LIB_CONVERSION_MOETOLINALG_LOWERINGUTILS_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Value.h"
#include "moe/Conversion/MoeToLinalg.h"
#include "moe/Utils/ScalarMath.h"

#include "mlir/IR/PatternMatch.h"
#include "dialects/moe/MoeOps.h"
#include "llvm/ADT/STLFunctionalExtras.h"


namespace mlir::moe::lowering {

/// A lowering pattern whose op contains a contraction: it carries the form.
template <typename OpTy> struct ContractionPattern : OpRewritePattern<OpTy> {
  ContractionPattern(MLIRContext *ctx, ContractionForm form)
      : OpRewritePattern<OpTy>(ctx), form(form) {}
  ContractionForm form;
};

//===--- Scalars ---------------------------------------------------------===//

using scalar::constF32;
using scalar::constI32;
using scalar::constIndex;
using scalar::fromF32;
using scalar::toF32;
Value indexToI32(OpBuilder &b, Location loc, Value index);
Value i32ToIndex(OpBuilder &b, Location loc, Value i32);
/// NaN becomes -inf: the ranking and softmax rules of design.md 2.1.
Value nanToNegInf(OpBuilder &b, Location loc, Value f32);
/// True when `a` ranks before `b`: larger value first, NaN after every
/// number, ties by the lower index.
Value ranksBefore(OpBuilder &b, Location loc, Value aValue, Value aIndex, Value bValue,
                  Value bIndex);

//===--- Tensors ---------------------------------------------------------===//

/// Every dimension of `tensor` as an index value.
SmallVector<Value> dimsOf(OpBuilder &b, Location loc, Value tensor);
/// A tensor of `shape` (index values, static sizes taken from `type`) filled
/// with zero of its element type.
Value zeros(OpBuilder &b, Location loc, RankedTensorType type, ValueRange dims);
/// A tensor of `type` filled with `scalar`.
Value filled(OpBuilder &b, Location loc, RankedTensorType type, ValueRange dims, Value scalar);
/// Elementwise conversion of an f32 tensor to `elementType`.
Value castElements(OpBuilder &b, Location loc, Value tensor, Type elementType);
/// out[m, n] = Σ_k a[m, k] · w[n, k], accumulated in f32 (an nn.Linear).
Value linearF32(OpBuilder &b, Location loc, Value a, Value w, ContractionForm form);
/// The weights of a CPU contraction: a [N, K] tensor, or expert `expert` of a
/// moe.dequantize, dequantised in the kernel's loads.
struct WeightSource {
  Value tensor;
  DequantizeOp quantized;
  Value expert;
  /// `tensor`'s rows alternate gate and up (g0 u0 g1 u1 ...): weight row n is
  /// its row interleavedRow(n).
  bool interleavedRows = false;
};
/// The row of a [gate; up] weight stored g0 u0 g1 u1 ... (ONNX Runtime's
/// swiglu_fusion = 1) that holds row `n` of `rows`: 2 (n mod rows/2) +
/// n div rows/2.
Value interleavedRow(OpBuilder &b, Location loc, Value n, Value rows);
/// `t` when `stacked` is the regrouping of t's interleaved gate/up rows
/// ([E, 2F, K] expanded to [E, F, 2, K], transposed to [E, 2, F, K],
/// collapsed back), so a kernel can read t's rows in place
/// (WeightSource::interleavedRows) rather than from a copy; else null.
Value interleavedRowsSource(Value stacked);
/// linearF32 for the CPU forms: a cache-tiled vector kernel
/// (VectorContraction.cpp).
Value tiledLinearF32(OpBuilder &b, Location loc, Value a, WeightSource w, ContractionForm form);
/// `out` (f32, a row per row of `a`) with rows [lo, hi) = rowsOf(g) set to
/// those rows of a times weightOf(g)ᵀ, for each group g < `groups`; other
/// rows unchanged. The weights' shape is read from `stackedWeights`
/// ([groups, N, K] or [N, K]) or `quantized`. One parallel loop over
/// (column panel, group) pairs, results written in place.
Value tiledGroupedLinearF32(OpBuilder &b, Location loc, Value a, Value out, Value groups, Value stackedWeights,
                            DequantizeOp quantized,
                            function_ref<std::pair<Value, Value>(OpBuilder &, Location, Value)> rowsOf,
                            function_ref<WeightSource(OpBuilder &, Location, Value)> weightOf,
                            ContractionForm form);
/// True when the CPU kernel of `form` can dequantise `op`'s weights in its
/// loads (a static K of whole vectors, blocks of whole vectors).
bool canDequantizeInKernel(DequantizeOp op, ContractionForm form);
/// Marks an scf.for whose iterations write disjoint elements, so the GPU
/// pipeline may run them in parallel (moe.parallel, dialects/moe/MoeBase.td).
void markParallel(Operation *loop);
/// `value` as `type`: elements converted (f32 <-> bf16/f16) and sizes
/// cast between static and dynamic.
Value castToType(OpBuilder &b, Location loc, Value value, Type type);
/// out[t, h] = Σ_k term(a[t, k], b[t, k], acc) over the slots k of token t, in
/// slot order, accumulated in an f32 [T, H] tensor (`shape` gives its static
/// sizes, `dims` all of them). `term` returns the new accumulator; without
/// `bTensor` it gets a null value for b[t, k].
Value reduceOverSlots(OpBuilder &b, Location loc, ArrayRef<int64_t> shape, ValueRange dims,
                      Value a, Value bTensor,
                      function_ref<Value(OpBuilder &, Location, Value, Value, Value)> term);
/// y[t] = Σ_k slot_weight[t, k] · rows[slot_row[t, k]] over the filled slots,
/// in slot order, as an f32 [T, H] tensor (`shape` its static sizes); without
/// `slotWeight`, the rows' plain sum (their weights already applied).
Value combineSlots(OpBuilder &b, Location loc, Value rows, Value slotRow, Value slotWeight,
                   ArrayRef<int64_t> shape);
/// The combine weight of each of the `rows` rows (f32 [R], `staticRows` its
/// static size): slot_weight[t, k] at row slot_row[t, k]; rows no slot fills
/// are left undefined (no combine reads them). A loop over tokens marked
/// parallel (each writes its own rows).
Value slotWeightsByRow(OpBuilder &b, Location loc, Value slotRow, Value slotWeight, Value rows,
                       int64_t staticRows);
/// One softmax entry under the NaN/inf rules of design.md 2.1, given the
/// entry `v` (NaN already read as -inf), the maximum `mx` of its set, the sum
/// Σ exp(x - mx) over the set, the number of +inf entries and the set's size.
Value softmaxEntry(OpBuilder &b, Location loc, Value v, Value mx, Value expSum, Value infCount,
                   Value size);
/// Row-wise softmax of an f32 [T, N] tensor with the NaN/inf rules.
Value rowSoftmax(OpBuilder &b, Location loc, Value logits);
/// Applies `fn` to every element of `input` (computed on f32 values), giving
/// an f32 tensor of the same shape.
Value mapF32(OpBuilder &b, Location loc, Value input,
             function_ref<Value(OpBuilder &, Location, Value)> fn);
/// The activation `name` on an f32 scalar (gelu is the erf form).
Value applyActivation(OpBuilder &b, Location loc, StringRef name, Value x);

//===--- Quantised weights (DequantizeToLinalg.cpp) ------------------------===//

/// The row of `packed`, `scales` and `zero_points` that holds result row `n`
/// of a moe.dequantize (n itself unless its rows are interleaved).
Value storedRow(OpBuilder &b, Location loc, DequantizeOp op, Value n);
/// The zero point (i32) and scale (f32) of the weights in stored row
/// `stored` (storedRow), column k of a moe.dequantize: per row, or per block
/// of k.
std::pair<Value, Value> dequantizeParams(OpBuilder &b, Location loc, DequantizeOp op, Value e, Value stored, Value k);
/// Weight [e, n, k] of a moe.dequantize as an f32 scalar, read from its
/// packed bytes, scales and zero points.
Value dequantizedElement(OpBuilder &b, Location loc, DequantizeOp op, Value e, Value n, Value k);
/// The sizes [E, N, K] of a moe.dequantize's result, read from its operands
/// (no use of the result it may replace).
SmallVector<Value> dequantizedDims(OpBuilder &b, Location loc, DequantizeOp op);
/// Expert e's weights [N, K] of a moe.dequantize, in its element type.
Value dequantizeExpert(OpBuilder &b, Location loc, DequantizeOp op, Value e);
/// True when every use of `op` is the weights of a grouped matmul: the
/// tiled CPU lowering then dequantises one expert at a time instead.
bool isDequantizedPerExpert(DequantizeOp op);

//===--- Iterative top-k scan ---------------------------------------------===//

/// Picks up to `k` candidates in `[0, numCandidates)` in ranking order: the
/// j-th pick is the first-ranked eligible candidate ranked after pick j-1.
/// `write(b, loc, j, found, index, value, state)` records pick j (found is
/// false when no eligible candidate is left) and returns the new state.
SmallVector<Value> topKScan(
    OpBuilder &b, Location loc, Value k, Value numCandidates,
    function_ref<Value(OpBuilder &, Location, Value)> valueOf,
    function_ref<Value(OpBuilder &, Location, Value)> eligible, ValueRange state,
    function_ref<SmallVector<Value>(OpBuilder &, Location, Value, Value, Value, Value, ValueRange)>
        write);

//===--- Patterns ---------------------------------------------------------===//

/// A lowering written as one function: `Build(b, op, form)` builds the op's
/// value, which replaces the op converted to its result type (element type
/// and static sizes).
template <typename OpTy, Value (*Build)(PatternRewriter &, OpTy, ContractionForm)>
struct CastLowering : OpRewritePattern<OpTy> {
  CastLowering(MLIRContext *ctx, ContractionForm form = ContractionForm::VectorTiles512)
      : OpRewritePattern<OpTy>(ctx), form(form) {}
  LogicalResult matchAndRewrite(OpTy op, PatternRewriter &b) const override {
    b.replaceOp(op, castToType(b, op.getLoc(), Build(b, op, form), op.getType()));
    return success();
  }
  ContractionForm form;
};

/// A lowering written as one function: `Build(b, op, form)` builds the op's
/// results, which replace it.
template <typename OpTy, SmallVector<Value> (*Build)(PatternRewriter &, OpTy, ContractionForm)>
struct FunctionLowering : OpRewritePattern<OpTy> {
  FunctionLowering(MLIRContext *ctx, ContractionForm form = ContractionForm::VectorTiles512)
      : OpRewritePattern<OpTy>(ctx), form(form) {}
  LogicalResult matchAndRewrite(OpTy op, PatternRewriter &b) const override {
    b.replaceOp(op, Build(b, op, form));
    return success();
  }
  ContractionForm form;
};

} // namespace mlir::moe::lowering

#endif // LIB_CONVERSION_MOETOLINALG_LOWERINGUTILS_H
