//===- GraphCanonicalization.h - one spelling per meaning -------*- C++ -*-===//
//
// Exporters write the same computation in several spellings: TorchScript
// casts every tensor to the dtype it already has, turns masks into bool
// before NonZero, and names axes from the front (Softmax axis 1 of a
// [T, E] tensor) where the dynamo exporter writes -1. The MoE block
// matchers read one spelling; canonicalizeGraph rewrites the graph into it
// before they run, from element types and ranks it infers itself (exported
// graphs rarely carry value_info).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_FRONTEND_ONNX_GRAPHCANONICALIZATION_H
#define MOE_FRONTEND_ONNX_GRAPHCANONICALIZATION_H

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"

#include <onnx/onnx_pb.h>

#include <functional>
#include <optional>

namespace mlir::moe::onnx_import {

/// What is known of one value before import: its element type (an ONNX
/// TensorProto data type, 0 when unknown), its rank (-1 when unknown), and
/// for a 1-D value its length (-1 when unknown).
struct ValueFacts {
  int32_t dataType = 0;
  int64_t rank = -1;
  int64_t length = -1;
  /// Sizes, one per dimension when the rank is known (-1: unknown).
  llvm::SmallVector<int64_t> dims;
  /// The elements of a small 0-D/1-D integer value, where known (sizes
  /// computed from static dimensions: Shape, Gather, Concat, arithmetic).
  llvm::SmallVector<std::optional<int64_t>> values;
  /// All elements, when every one is known.
  std::optional<llvm::SmallVector<int64_t>> knownValues() const;
};

/// What the canonicalisation needs from the importer.
struct CanonicalizationContext {
  /// The model's default-domain opset (Softmax's default axis depends on it).
  int64_t opset;
  /// The integer values of a constant, if the value is one.
  std::function<std::optional<llvm::SmallVector<int64_t>>(llvm::StringRef)> ints;
  /// The value every element of a constant holds, if they all hold one
  /// (external data included); may be empty.
  std::function<std::optional<double>(llvm::StringRef)> uniform = {};
};

/// Elementwise ops that broadcast their inputs (numpy rules).
bool isBroadcastingOp(llvm::StringRef op);

/// Elementwise ops of one tensor input (Clip's bounds are scalars).
inline bool isUnaryElementwiseOp(llvm::StringRef op) {
  return llvm::is_contained({"Cast", "Neg", "Not", "Sigmoid", "Exp", "Log", "Abs", "Sqrt", "Reciprocal", "Relu",
                             "Tanh", "Softplus", "Clip"},
                            op);
}

/// Infers element types, ranks and 1-D lengths of every value of `graph`
/// (nodes in topological order, as ONNX requires) from its inputs,
/// initializers and Constant nodes.
llvm::StringMap<ValueFacts> inferValueFacts(const onnx::GraphProto &graph, const CanonicalizationContext &ctx);

/// Rewrites `graph` in place: Identity and Casts to the type a value
/// already has are removed (their readers read the source), a Cast to bool
/// read only by NonZero is removed (NonZero tests against zero either way),
/// and the axis of Softmax, LogSoftmax, TopK, ArgMax and ArgMin is written
/// from the back (-1 for the last), that of Gather, GatherElements,
/// ScatterElements, Concat and Split from the front, where the rank is
/// known; then
/// canonicalizeSelections. Values the graph outputs are kept; new int64
/// constants are added to its initializers. `facts` receives what inferValueFacts found
/// (still true of every value left). Returns the number of nodes removed
/// or rewritten.
int64_t canonicalizeGraph(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                          llvm::StringMap<ValueFacts> &facts);

/// Rewrites ArgMax over the last axis of router scores as TopK(scores, 1),
/// with a ReduceMax of the same scores as its values, each squeezed back to
/// ArgMax's rank; moves those squeezes below elementwise ops with scalar
/// operands and cancels them against Unsqueezes of the same axis
/// (SelectionCanonicalization.cpp); reads GatherElements of a TopK's input
/// at its own indices as its values. The int64 constants it needs are added
/// to the graph's initializers and listed in `made`. `facts` describe the
/// graph before; returns the number of ArgMax nodes rewritten.
int64_t canonicalizeSelections(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                               const llvm::StringMap<ValueFacts> &facts,
                               llvm::StringMap<llvm::SmallVector<int64_t>> &made);

/// Rewrites the readers of a boolean row mask's NonZero as the token list
/// and its column (GatherND and ScatterND indices), and the element-wise
/// ScatterND of `y[mask] = y[mask] + d` as a row scatter
/// (RowMaskCanonicalization.cpp). `facts` are updated; returns the number
/// of nodes rewritten.
int64_t canonicalizeRowMasks(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                             llvm::StringMap<ValueFacts> &facts, llvm::StringMap<llvm::SmallVector<int64_t>> &made);

/// Rewrites the flattening to [rows, n] of a value computed row by row
/// from one [..., H] value through a TopK (a router on [B, S, H] whose
/// top-k is flattened afterwards) as the same ops on the flattened rows
/// (FlattenedRows.cpp). `facts` are updated; returns the number of
/// flattenings rewritten.
int64_t canonicalizeFlattenedRows(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                  llvm::StringMap<ValueFacts> &facts,
                                  llvm::StringMap<llvm::SmallVector<int64_t>> &made);

/// Rewrites expert outputs written into the (token, slot) cells of a
/// zero [T, k, H] buffer by torch.where(idx == e) indices and summed over
/// the slots with the gate weights afterwards as the index_add_ loop of
/// the weighted rows (SlotCells.cpp). `facts` are updated; returns the
/// number of nodes rewritten.
int64_t canonicalizeSlotCells(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                              llvm::StringMap<ValueFacts> &facts, llvm::StringMap<llvm::SmallVector<int64_t>> &made);

/// Replaces an If whose condition is known before import (from static
/// ranks and sizes: TorchScript's scatter_reduce_ guards its 0-D case so)
/// by the branch it takes, inlined (StaticIfs.cpp). `facts` are updated;
/// returns the number of Ifs replaced.
int64_t canonicalizeStaticIfs(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                              llvm::StringMap<ValueFacts> &facts, llvm::StringMap<llvm::SmallVector<int64_t>> &made);

/// Rewrites TorchScript's element-by-element index_put of rows,
/// ScatterND(out, pairs (tok[i], j) for every column j, rows reshaped to
/// themselves), as the row scatter ScatterND(out, Unsqueeze(tok, -1),
/// rows) (ElementIndexPuts.cpp). `facts` are updated; returns the number of
/// scatters rewritten.
int64_t canonicalizeElementIndexPuts(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                     llvm::StringMap<ValueFacts> &facts,
                                     llvm::StringMap<llvm::SmallVector<int64_t>> &made);

/// Rewrites weighted sums over an axis spelled as contractions
/// (einsum('tk,tkh->th'), a batched matmul of the weights as a row) and
/// torch.stack(list).sum(0) as ReduceSum(Unsqueeze(w, -1) * P, 1) and an
/// Add chain, the forms the block matchers read (WeightedSums.cpp).
/// `facts` are updated; returns the number of sums rewritten.
int64_t canonicalizeWeightedSums(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                 llvm::StringMap<ValueFacts> &facts, llvm::StringMap<llvm::SmallVector<int64_t>> &made);

/// Rewrites ReduceL1 and Abs of values known to be non-negative (routing
/// probabilities: DBRX's L1-normalised top-k weights) as ReduceSum and the
/// value itself (NonNegativeNorms.cpp). `facts` are updated; returns the
/// number of nodes rewritten.
int64_t canonicalizeNonNegativeNorms(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                     llvm::StringMap<ValueFacts> &facts,
                                     llvm::StringMap<llvm::SmallVector<int64_t>> &made);

/// Rewrites Cast(Equal(Unsqueeze(i, -1), arange(E)), T), the dynamo
/// exporter's F.one_hot, as OneHot(i, E, [0, 1] : T)
/// (OneHotCanonicalization.cpp). `facts` are updated; returns the number of
/// rewrites.
int64_t canonicalizeOneHots(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                            llvm::StringMap<ValueFacts> &facts, llvm::StringMap<llvm::SmallVector<int64_t>> &made);

/// Rewrites an ArgMax over router scores with picks 0..k-1 of a TopK(k)
/// removed (Where(mask, -inf, .), or a product with 1 - mask) as column k of
/// the TopK widened to k + 1, and a pick's score read through its one-hot
/// (ReduceSum(s * mask, -1)) as a column of the TopK's values
/// (RepeatedArgMax.cpp). Needs opset 13. `facts` are updated; returns the
/// number of rewrites.
int64_t canonicalizeRepeatedArgMax(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                   llvm::StringMap<ValueFacts> &facts,
                                   llvm::StringMap<llvm::SmallVector<int64_t>> &made);

/// Rewrites a sum of K terms that are one expression over columns 0..K-1
/// of a TopK's outputs as one ReduceSum over a slot axis of that expression
/// computed on the columns together (SlotSums.cpp). Needs opset 13.
/// `facts` are updated; returns the number of sums rewritten.
int64_t canonicalizeSlotSums(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                             llvm::StringMap<ValueFacts> &facts, llvm::StringMap<llvm::SmallVector<int64_t>> &made);

} // namespace mlir::moe::onnx_import

#endif // MOE_FRONTEND_ONNX_GRAPHCANONICALIZATION_H
