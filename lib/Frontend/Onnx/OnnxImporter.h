//===- OnnxImporter.h - the ONNX importer's shared pieces -------*- C++ -*-===//
//
// The importer walks the graph in order and hands each node to the
// converter registered for its (domain, op type). A converter gets the
// node's operands as MLIR values, its attributes and the compile-time
// values of constant operands, and returns the node's results.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_FRONTEND_ONNX_ONNXIMPORTER_H
#define MOE_FRONTEND_ONNX_ONNXIMPORTER_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/StringRef.h"

#include <onnx/onnx_pb.h>

#include <functional>
#include <optional>
#include <vector>

namespace mlir::moe::tensor_builders {}
namespace mlir::moe::scalar {}

namespace mlir::moe::onnx_import {

/// The shared builders (lib/Utils) every converter uses.
namespace tb = mlir::moe::tensor_builders;
namespace scalar = mlir::moe::scalar;

/// A constant tensor of the graph (initializer or Constant node): its type
/// and its bytes in MLIR's dense layout (little-endian, bool as one byte).
struct ConstantTensor {
  RankedTensorType type;
  llvm::ArrayRef<char> bytes;
  /// Owns `bytes` when they were decoded from typed protobuf fields.
  std::shared_ptr<std::vector<char>> owned;

  /// The values as int64 (integer element types), for shapes and axes.
  std::optional<llvm::SmallVector<int64_t>> asInts() const;
  /// The values as float (f32, f16, bf16, f64).
  std::optional<std::vector<float>> asFloats() const;
};

/// A 0-D or 1-D integer value known element by element at import time:
/// constants, or index values computed from tensor sizes (ShapeVectors.cpp).
struct ShapeVector {
  llvm::SmallVector<OpFoldResult> elements;
};

/// Everything a converter sees of one node.
struct NodeContext {
  const onnx::NodeProto &node;
  OpBuilder &b;
  Location loc;
  /// One per input of the node; null for an absent optional input ("").
  llvm::SmallVector<Value> inputs;
  /// The opset version of the node's domain in the model.
  int64_t opset;
  /// The compile-time value of input i, or null.
  std::function<const ConstantTensor *(unsigned)> constantInput;
  /// Input i as a ShapeVector (a small integer constant, or a shape computed
  /// from tensor sizes), or null.
  std::function<const ShapeVector *(unsigned)> shapeInput;

  const onnx::AttributeProto *attr(llvm::StringRef name) const;
  int64_t intAttr(llvm::StringRef name, int64_t fallback) const;
  float floatAttr(llvm::StringRef name, float fallback) const;
  std::string stringAttr(llvm::StringRef name, llvm::StringRef fallback) const;
  std::optional<llvm::SmallVector<int64_t>> intsAttr(llvm::StringRef name) const;
  /// Input i, or null when absent.
  Value input(unsigned i) const { return i < inputs.size() ? inputs[i] : Value(); }
  RankedTensorType inputType(unsigned i) const { return cast<RankedTensorType>(inputs[i].getType()); }
  /// An error at the node: "node 'name' (Op): ...".
  InFlightDiagnostic error() const;
  /// Inputs [0, n) present (and float tensors when `floats`), or an error.
  LogicalResult expectInputs(unsigned n, bool floats) const;
  /// A possibly negative axis of a rank-`rank` tensor, normalised, or an
  /// error when it is out of range.
  FailureOr<int64_t> normalizeAxis(int64_t axis, int64_t rank) const;
  /// The integer values of constant input `i` (`what` names it), or an error.
  FailureOr<llvm::SmallVector<int64_t>> constantInts(unsigned i, llvm::StringRef what) const;
};

/// What a converter returns: the node's results, or failure after an error.
using Results = FailureOr<llvm::SmallVector<Value>>;

/// One result, or the failure of building it.
inline Results single(FailureOr<Value> v) {
  if (failed(v))
    return failure();
  return llvm::SmallVector<Value>{*v};
}

using ConvertFn = std::function<FailureOr<llvm::SmallVector<Value>>(NodeContext &)>;

struct OpConverter {
  llvm::StringRef domain; // "" is the default ONNX domain
  llvm::StringRef opType;
  ConvertFn convert;
};

/// `fn` over the node's `operands` broadcast together (numpy rules), or an
/// error at the node naming their types (ElementwiseOps.cpp).
FailureOr<llvm::SmallVector<Value>> mapBroadcast(NodeContext &ctx, ValueRange operands, Type element,
                                                 function_ref<Value(OpBuilder &, Location, ValueRange)> fn);

/// The default domain's elementwise ops: arithmetic, activations,
/// comparisons, logic, Clip, Pow, Max/Min (ElementwiseOps.cpp).
void addElementwiseConverters(std::vector<OpConverter> &converters);
/// The rest of the default domain: contractions, normalisations,
/// reductions, shapes, Reshape, Flatten, Cast, Identity, ConstantOfShape
/// (StandardOps.cpp).
void addStandardConverters(std::vector<OpConverter> &converters);
/// Gather, Slice, Concat, Split, Expand, Shape, Range, Where, TopK, OneHot,
/// GatherND, GatherElements, Trilu (IndexingOps.cpp).
void addIndexingConverters(std::vector<OpConverter> &converters);
/// ScatterND, ScatterElements (ScatterOps.cpp).
void addScatterConverters(std::vector<OpConverter> &converters);
/// NonZero, sized by the data (NonZeroOp.cpp).
void addNonZeroConverter(std::vector<OpConverter> &converters);
/// Conv (ConvolutionOp.cpp).
void addConvolutionConverter(std::vector<OpConverter> &converters);

/// Index `i` (any integer type) as an index into a dimension of `size`,
/// counted from the end when negative (IndexingOps.cpp).
Value wrapIndex(OpBuilder &b, Location loc, Value i, Value size);

/// Index `i` wrapped if negative, then clamped to [0, size): an
/// out-of-range index from the data (an error in ONNX) never reads or
/// writes outside the tensor (IndexingOps.cpp).
Value clampIndex(OpBuilder &b, Location loc, Value i, Value size);

/// How a checked operand size relates to the size it must match; the
/// runtime's messages (moeRuntimeCheckOperandSize) are indexed by it.
enum class OperandSizeRule : int64_t {
  scatterNDUpdates,       // ScatterND: updates = indices.shape[:-1] + data.shape[q:]
  scatterElementsUpdates, // ScatterElements: updates = indices
  gatherElementsIndices,  // GatherElements: indices <= data off the axis
  scatterElementsIndices, // ScatterElements: indices <= data off the axis
};

/// Size `dim` of the node's input `input` against size `wantDim` of
/// `want`: equal, or at most it for the *Indices rules. Both static: an
/// import error at the node when the rule fails; else a host call of the
/// runtime's check, which fails the run naming both (IndexingOps.cpp).
/// `sizes` (the sizes whose product is the number of elements the op
/// reads through the checked operand): when one is 0 nothing is read, and
/// any size passes.
LogicalResult checkOperandSize(NodeContext &ctx, OperandSizeRule rule, unsigned input, int64_t dim, Value want,
                               int64_t wantDim, llvm::ArrayRef<Value> sizes);

/// Constant indices (input `input`) within [-size, size) of the axis they
/// index: `sizes[0]` for every element, or, with `lastAxis`, `sizes[j]`
/// for the elements at position j of the last axis (GatherND's and
/// ScatterND's tuples); a dynamic size is not checked. An import error
/// naming the first index out of range.
LogicalResult checkConstantIndices(NodeContext &ctx, unsigned input, llvm::ArrayRef<int64_t> sizes, bool lastAxis);

/// A host call of the runtime's check that a top-k's `k` does not exceed
/// the run-time `length` of its axis (moeRuntimeCheckTopK): the run's call
/// fails, naming both, when it does (IndexingOps.cpp).
void checkTopKAtRunTime(OpBuilder &b, Location loc, int64_t k, Value length);
/// A host call of the runtime's check that dimension `dim` of a viewed MoE
/// result has the size of the same dimension of the shared expert's input
/// (moeRuntimeCheckSharedExpertView; IndexingOps.cpp).
void checkSameSizeAtRunTime(OpBuilder &b, Location loc, int64_t dim, Value got, Value want);
/// A host call of the runtime's check that run-time size `got` of
/// dimension `dim` of a broadcast operand is 1 or the broadcast size
/// `want` (moeRuntimeCheckBroadcast; IndexingOps.cpp).
void checkBroadcastAtRunTime(OpBuilder &b, Location loc, int64_t dim, Value got, Value want);
/// A host call of the runtime's check that B's contracted size `got`
/// (its dimension `dim`) equals A's, `want` (moeRuntimeCheckContraction;
/// IndexingOps.cpp).
void checkContractionAtRunTime(OpBuilder &b, Location loc, int64_t dim, Value got, Value want);
/// com.microsoft MoE (MoeOps.cpp).
void addMoeConverters(std::vector<OpConverter> &converters);

/// The ShapeVector of the node's (single) output when its inputs have them
/// and the op is one shape computations use (Shape, Gather, Concat, Slice,
/// Unsqueeze, Squeeze, Reshape, Cast, Identity, Add/Sub/Mul/Div).
std::optional<ShapeVector> propagateShapeVector(NodeContext &ctx);

/// The [start, end) dimensions a Shape node reports for a rank-`rank`
/// input (its `start`/`end` attributes, clamped).
std::pair<int64_t, int64_t> shapeNodeRange(const NodeContext &ctx, int64_t rank);

/// An empty tensor of `element`s shaped by `shape` (dynamic where its
/// elements are values).
Value emptyOfShape(OpBuilder &b, Location loc, const ShapeVector &shape, Type element);

/// The fill value of a ConstantOfShape node (its `value` attribute, f32 0
/// when absent).
FailureOr<TypedAttr> constantOfShapeFill(NodeContext &ctx);

/// Vectors longer than this are not followed as shapes (a ConstantOfShape
/// of a claimed huge length stays a tensor).
constexpr int64_t kMaxShapeVectorLength = 64;

/// `x op y` on index sizes (Add, Sub, Mul, Div), folded when constant.
OpFoldResult combineSizes(OpBuilder &b, Location loc, llvm::StringRef op, OpFoldResult x, OpFoldResult y);

/// The MLIR element type of an ONNX TensorProto data type, or null.
Type elementTypeOf(MLIRContext *context, int32_t dataType);

} // namespace mlir::moe::onnx_import

#endif // MOE_FRONTEND_ONNX_ONNXIMPORTER_H
