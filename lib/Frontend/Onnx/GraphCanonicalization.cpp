//===- GraphCanonicalization.cpp - one spelling per meaning ---------------===//
//
// See GraphCanonicalization.h. The inference is deliberately partial: a
// value whose type or rank an op's rule cannot tell stays unknown, and an
// unknown fact never enables a rewrite.
//
//===----------------------------------------------------------------------===//

#include "GraphCanonicalization.h"

#include <numeric>
#include "GraphEditor.h"

#include <cstring>

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"

#include <algorithm>
#include <limits>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

const onnx::AttributeProto *findAttr(const onnx::NodeProto &node, llvm::StringRef name) {
  for (const onnx::AttributeProto &a : node.attribute())
    if (a.name() == name)
      return &a;
  return nullptr;
}

int64_t intAttrOr(const onnx::NodeProto &node, llvm::StringRef name, int64_t fallback) {
  const onnx::AttributeProto *a = findAttr(node, name);
  return a ? a->i() : fallback;
}

bool isOneOf(llvm::StringRef op, std::initializer_list<llvm::StringRef> names) {
  return llvm::is_contained(names, op);
}

/// Ops whose output has the shape and element type of input 0.
bool keepsShapeAndType(llvm::StringRef op) {
  return isOneOf(op, {"Identity", "Sigmoid", "Tanh", "Relu", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal", "Erf",
                      "Softmax", "LogSoftmax", "Sin", "Cos", "Gelu", "Softplus", "Elu", "LeakyRelu", "HardSigmoid",
                      "HardSwish", "Clip", "Floor", "Ceil", "Round", "Sign", "Trilu", "CumSum", "Dropout",
                      "LayerNormalization", "RMSNormalization", "SimplifiedLayerNormalization", "ScatterElements",
                      "ScatterND", "Transpose", "Not", "Selu", "Mish", "Swish"});
}


bool comparison(llvm::StringRef op) {
  return isOneOf(op, {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Not",
                      "IsNaN", "IsInf"});
}

bool reduction(llvm::StringRef op) { return op.starts_with("Reduce"); }

ValueFacts ofTensor(const onnx::TensorProto &t) {
  ValueFacts f{t.data_type(), t.dims_size(), t.dims_size() == 1 ? t.dims(0) : -1, {}, {}};
  for (int64_t d : t.dims())
    f.dims.push_back(d >= 0 ? d : -1);
  return f;
}

bool isIntegerType(int32_t t) {
  return t == onnx::TensorProto::INT64 || t == onnx::TensorProto::INT32 || t == onnx::TensorProto::INT16 ||
         t == onnx::TensorProto::INT8 || t == onnx::TensorProto::UINT8 || t == onnx::TensorProto::UINT16 ||
         t == onnx::TensorProto::UINT32 || t == onnx::TensorProto::UINT64;
}

/// The one element of an int64 or int32 tensor attribute (typed field or
/// little-endian raw data), if it holds one.
std::optional<int64_t> scalarInt(const onnx::TensorProto &t) {
  int64_t count = 1;
  for (int64_t d : t.dims())
    count *= d;
  // One element of type Int, in a typed field or raw bytes.
  auto one = [&](auto typed, int fieldSize, auto field) -> std::optional<int64_t> {
    using Int = decltype(typed);
    if (fieldSize == 1)
      return field;
    if (t.raw_data().size() != sizeof(Int))
      return std::nullopt;
    Int v;
    std::memcpy(&v, t.raw_data().data(), sizeof(Int));
    return v;
  };
  if (count != 1)
    return std::nullopt;
  if (t.data_type() == onnx::TensorProto::INT64)
    return one(int64_t(), t.int64_data_size(), t.int64_data_size() == 1 ? t.int64_data(0) : 0);
  if (t.data_type() == onnx::TensorProto::INT32)
    return one(int32_t(), t.int32_data_size(), t.int32_data_size() == 1 ? t.int32_data(0) : 0);
  return std::nullopt;
}

/// Values of at most this many elements are followed element by element.
constexpr size_t kMaxKnownValues = 64;

/// The numpy broadcast of known sizes (-1 unknown): an unknown size stays
/// unknown unless another operand fixes it above 1.
llvm::SmallVector<int64_t> broadcastDims(llvm::ArrayRef<llvm::SmallVector<int64_t>> all, int64_t rank) {
  llvm::SmallVector<int64_t> out(rank, 1);
  llvm::SmallVector<bool> unknown(rank, false);
  for (const llvm::SmallVector<int64_t> &d : all)
    for (int64_t i = 0; i < static_cast<int64_t>(d.size()); ++i) {
      int64_t at = rank - static_cast<int64_t>(d.size()) + i;
      if (d[i] < 0)
        unknown[at] = true;
      else if (d[i] != 1)
        out[at] = d[i];
    }
  for (int64_t i = 0; i < rank; ++i)
    if (unknown[i] && out[i] == 1)
      out[i] = -1;
  return out;
}

class FactInference {
public:
  FactInference(const onnx::GraphProto &graph, const CanonicalizationContext &ctx) : graph(graph), ctx(ctx) {}

  llvm::StringMap<ValueFacts> run() {
    for (const onnx::ValueInfoProto &input : graph.input()) {
      const onnx::TypeProto::Tensor &t = input.type().tensor_type();
      ValueFacts f{t.elem_type(), t.has_shape() ? t.shape().dim_size() : -1, -1, {}, {}};
      if (t.has_shape())
        for (const onnx::TensorShapeProto::Dimension &d : t.shape().dim())
          f.dims.push_back(d.has_dim_value() && d.dim_value() >= 0 ? d.dim_value() : -1);
      f.length = f.rank == 1 ? f.dims[0] : -1;
      facts[input.name()] = f;
    }
    for (const onnx::TensorProto &init : graph.initializer()) {
      ValueFacts f = ofTensor(init);
      knownInts(init.name(), f);
      facts[init.name()] = f;
    }
    for (const onnx::NodeProto &node : graph.node())
      infer(node);
    return std::move(facts);
  }

private:
  ValueFacts of(const onnx::NodeProto &node, int i) const {
    if (i >= node.input_size() || node.input(i).empty())
      return {};
    auto it = facts.find(node.input(i));
    return it == facts.end() ? ValueFacts{} : it->second;
  }

  /// The axes of a single-input-axes op, from its attribute or constant input.
  std::optional<llvm::SmallVector<int64_t>> axes(const onnx::NodeProto &node) const {
    if (const onnx::AttributeProto *a = findAttr(node, "axes"))
      return llvm::SmallVector<int64_t>(a->ints().begin(), a->ints().end());
    if (node.input_size() > 1 && !node.input(1).empty())
      return ctx.ints(node.input(1));
    return std::nullopt;
  }

  void set(const onnx::NodeProto &node, int i, ValueFacts f) {
    if (i < node.output_size() && !node.output(i).empty())
      facts[node.output(i)] = f;
  }

  void infer(const onnx::NodeProto &node) {
    if (!node.domain().empty() && node.domain() != "ai.onnx")
      return;
    llvm::StringRef op = node.op_type();
    ValueFacts in0 = of(node, 0), r;
    if (node.output_size() == 0)
      return;
    if (op == "Constant") {
      for (const onnx::AttributeProto &a : node.attribute()) {
        if (a.name() == "value")
          r = ofTensor(a.t());
        else if (a.name() == "value_int" || a.name() == "value_float")
          r = {a.name() == "value_int" ? int32_t(onnx::TensorProto::INT64) : int32_t(onnx::TensorProto::FLOAT), 0, -1};
        else if (a.name() == "value_ints" || a.name() == "value_floats")
          r = {a.name() == "value_ints" ? int32_t(onnx::TensorProto::INT64) : int32_t(onnx::TensorProto::FLOAT), 1,
               a.name() == "value_ints" ? a.ints_size() : a.floats_size()};
      }
      knownInts(node.output(0), r);
      set(node, 0, r);
      return;
    }
    if (op == "Cast") {
      r = in0;
      r.dataType = static_cast<int32_t>(intAttrOr(node, "to", 0));
    } else if (keepsShapeAndType(op) || op == "Expand" || op == "Slice" || op == "Concat" || op == "Split" ||
               op == "TopK" || op == "Tile" || op == "Pad") {
      r = in0;
      r.length = -1;
      if (op == "Identity" || op == "Neg" || op == "Abs" || op == "Cast")
        r.length = in0.length;
      if (op == "Concat" && in0.rank == 1) {
        int64_t total = 0;
        for (int i = 0; i < node.input_size() && total >= 0; ++i)
          total = of(node, i).rank == 1 && of(node, i).length >= 0 ? total + of(node, i).length : -1;
        r.length = total;
      }
      if (op == "Expand") {
        ValueFacts shape = of(node, 1);
        r.rank = in0.rank >= 0 && shape.length >= 0 ? std::max(in0.rank, shape.length) : -1;
      }
      if (comparison(op))
        r.dataType = onnx::TensorProto::BOOL;
      // Other outputs: TopK's indices, Split's parts (Dropout's mask and
      // LayerNormalization's statistics stay unknown).
      for (int i = 1; i < node.output_size() && (op == "TopK" || op == "Split"); ++i)
        set(node, i, op == "TopK" ? ValueFacts{onnx::TensorProto::INT64, in0.rank, -1} : r);
    } else if (isBroadcastingOp(op)) {
      int64_t rank = 0, length = 1;
      int first = op == "Where" ? 1 : 0;
      for (int i = 0; i < node.input_size(); ++i) {
        ValueFacts f = of(node, i);
        rank = f.rank < 0 || rank < 0 ? -1 : std::max(rank, f.rank);
        length = f.length < 0 || length < 0 ? -1 : f.length == 1 ? length : length == 1 || length == f.length ? f.length : -1;
      }
      r = {of(node, first).dataType, rank, rank == 1 ? length : -1};
      if (comparison(op))
        r.dataType = onnx::TensorProto::BOOL;
    } else if (comparison(op)) {
      r = {onnx::TensorProto::BOOL, in0.rank, -1};
    } else if (op == "MatMul") {
      ValueFacts b = of(node, 1);
      int64_t rank = in0.rank < 0 || b.rank < 0 ? -1
                     : in0.rank == 1 && b.rank == 1 ? 0
                     : in0.rank == 1               ? b.rank - 1
                     : b.rank == 1                 ? in0.rank - 1
                                                   : std::max(in0.rank, b.rank);
      r = {in0.dataType, rank, -1};
    } else if (op == "Gemm" || op == "Flatten") {
      r = {in0.dataType, 2, -1};
    } else if (op == "Shape") {
      int64_t start = intAttrOr(node, "start", 0), end = intAttrOr(node, "end", in0.rank);
      int64_t length = -1;
      if (in0.rank >= 0) {
        start = std::clamp<int64_t>(start < 0 ? start + in0.rank : start, 0, in0.rank);
        end = std::clamp<int64_t>(end < 0 ? end + in0.rank : end, 0, in0.rank);
        length = std::max<int64_t>(0, end - start);
      }
      r = {onnx::TensorProto::INT64, 1, length};
    } else if (op == "Size") {
      r = {onnx::TensorProto::INT64, 0, -1};
    } else if (op == "NonZero") {
      r = {onnx::TensorProto::INT64, 2, -1};
    } else if (op == "ArgMax" || op == "ArgMin") {
      r = {onnx::TensorProto::INT64, in0.rank < 0 ? -1 : intAttrOr(node, "keepdims", 1) ? in0.rank : in0.rank - 1, -1};
    } else if (op == "Unsqueeze" || op == "Squeeze") {
      std::optional<llvm::SmallVector<int64_t>> a = axes(node);
      int64_t rank = in0.rank < 0 || !a ? -1 : op == "Unsqueeze" ? in0.rank + int64_t(a->size()) : in0.rank - int64_t(a->size());
      r = {in0.dataType, rank, rank == 1 && in0.rank == 0 ? 1 : -1};
      if (rank == 1 && in0.rank == 1)
        r.length = in0.length;
    } else if (op == "Reshape") {
      ValueFacts shape = of(node, 1);
      r = {in0.dataType, shape.length, -1};
    } else if (op == "Gather") {
      ValueFacts idx = of(node, 1);
      int64_t rank = in0.rank < 0 || idx.rank < 0 ? -1 : in0.rank + idx.rank - 1;
      r = {in0.dataType, rank, rank == 1 && in0.rank == 1 ? idx.length : -1};
    } else if (op == "GatherElements") {
      r = {in0.dataType, of(node, 1).rank, -1};
    } else if (op == "GatherND") {
      // The index's last size is how many leading axes of the data it
      // picks; the rest of each picked slice stays.
      ValueFacts idx = of(node, 1);
      int64_t depth = idx.rank >= 1 && static_cast<int64_t>(idx.dims.size()) == idx.rank ? idx.dims.back() : -1;
      int64_t rank = in0.rank < 0 || idx.rank < 0 || depth < 0
                         ? -1
                         : in0.rank + idx.rank - depth - 1 - intAttrOr(node, "batch_dims", 0);
      r = {in0.dataType, rank, -1};
    } else if (op == "OneHot") {
      ValueFacts idx = of(node, 0);
      r = {of(node, 2).dataType, idx.rank < 0 ? -1 : idx.rank + 1, -1};
    } else if (op == "ConstantOfShape") {
      const onnx::AttributeProto *value = findAttr(node, "value");
      r = {value ? value->t().data_type() : int32_t(onnx::TensorProto::FLOAT), in0.length, -1};
    } else if (op == "Range") {
      r = {in0.dataType, 1, -1};
    } else if (reduction(op)) {
      std::optional<llvm::SmallVector<int64_t>> a = axes(node);
      bool keep = intAttrOr(node, "keepdims", 1) != 0;
      int64_t rank = in0.rank < 0 ? -1 : keep ? in0.rank : a ? in0.rank - int64_t(a->size()) : -1;
      r = {in0.dataType, rank, -1};
    } else {
      return;
    }
    refine(node, r);
    // Known values give a 1-D value's length (Reshape(v, [-1]) of them).
    if (r.rank == 1 && !r.values.empty())
      r.dims = {static_cast<int64_t>(r.values.size())};
    if (r.rank == 1 && r.dims.size() == 1 && r.dims[0] >= 0)
      r.length = r.dims[0];
    set(node, 0, r);
    // TopK's indices are the size of its values.
    if (op == "TopK" && node.output_size() > 1 && !node.output(1).empty())
      facts[node.output(1)].dims = r.dims;
  }

  /// The values of a small integer constant, from the importer.
  void knownInts(llvm::StringRef name, ValueFacts &f) const {
    if (f.rank > 1 || !isIntegerType(f.dataType))
      return;
    if (std::optional<llvm::SmallVector<int64_t>> v = ctx.ints(name); v && v->size() <= kMaxKnownValues)
      f.values.assign(v->begin(), v->end());
  }

  /// Input i's (partly) known values, or null.
  const llvm::SmallVector<std::optional<int64_t>> *valuesOf(const onnx::NodeProto &node, int i) const {
    if (i >= node.input_size() || node.input(i).empty())
      return nullptr;
    auto it = facts.find(node.input(i));
    return it == facts.end() || it->second.values.empty() ? nullptr : &it->second.values;
  }

  /// Sizes (dims) and small integer values of output 0 of `node`.
  void refine(const onnx::NodeProto &node, ValueFacts &r) const {
    // Nothing carried over from an input: each rule below sets its own.
    r.dims.clear();
    r.values.clear();
    llvm::StringRef op = node.op_type();
    auto known = [](const llvm::SmallVector<int64_t> &d, int64_t rank) { return rank >= 0 && int64_t(d.size()) == rank; };
    // Where the rank is known but not the sizes, every size is unknown (-1):
    // the sizes that are known elsewhere still come through.
    auto withDims = [&](ValueFacts f) {
      if (f.rank >= 0 && !known(f.dims, f.rank))
        f.dims.assign(f.rank, -1);
      return f;
    };
    ValueFacts in0 = withDims(of(node, 0));
    bool in0Dims = known(in0.dims, in0.rank);
    // Dims.
    if ((keepsShapeAndType(op) && op != "Transpose") || op == "Cast") {
      if (in0Dims)
        r.dims = in0.dims;
    } else if (op == "Concat" && r.rank >= 2) {
      // The joined axis adds up (unknown if any part is); the others are
      // whichever part knows them.
      int64_t axis = intAttrOr(node, "axis", 0);
      axis = axis < 0 ? axis + r.rank : axis;
      llvm::SmallVector<int64_t> dims(r.rank, -1);
      int64_t total = 0;
      bool ok = axis >= 0 && axis < r.rank;
      for (int i = 0; ok && i < node.input_size(); ++i) {
        ValueFacts part = withDims(of(node, i));
        ok = part.rank == r.rank;
        for (int64_t d = 0; ok && d < r.rank; ++d) {
          if (d == axis)
            total = total < 0 || part.dims[d] < 0 ? -1 : total + part.dims[d];
          else if (dims[d] < 0)
            dims[d] = part.dims[d];
        }
      }
      if (ok) {
        dims[axis] = total;
        r.dims = dims;
      }
    } else if (op == "Transpose" && in0Dims) {
      const onnx::AttributeProto *perm = findAttr(node, "perm");
      llvm::SmallVector<int64_t> order;
      if (perm)
        order.assign(perm->ints().begin(), perm->ints().end());
      else
        for (int64_t i = in0.rank - 1; i >= 0; --i)
          order.push_back(i);
      if (static_cast<int64_t>(order.size()) == in0.rank &&
          llvm::all_of(order, [&](int64_t p) { return p >= 0 && p < in0.rank; }))
        for (int64_t p : order)
          r.dims.push_back(in0.dims[p]);
    } else if (isBroadcastingOp(op) && r.rank >= 0) {
      llvm::SmallVector<llvm::SmallVector<int64_t>> all;
      for (int i = 0; i < node.input_size(); ++i) {
        ValueFacts f = withDims(of(node, i));
        if (!known(f.dims, f.rank)) {
          all.clear();
          break;
        }
        all.push_back(f.dims);
      }
      if (!all.empty())
        r.dims = broadcastDims(all, r.rank);
    } else if (op == "MatMul" && r.rank >= 2) {
      ValueFacts b = withDims(of(node, 1));
      if (in0Dims && known(b.dims, b.rank) && in0.rank >= 2 && b.rank >= 2) {
        llvm::SmallVector<llvm::SmallVector<int64_t>> batch = {
            llvm::SmallVector<int64_t>(in0.dims.begin(), in0.dims.end() - 2),
            llvm::SmallVector<int64_t>(b.dims.begin(), b.dims.end() - 2)};
        r.dims = broadcastDims(batch, r.rank - 2);
        r.dims.append({in0.dims[in0.rank - 2], b.dims[b.rank - 1]});
      }
    } else if (op == "Gemm" && r.rank == 2) {
      // [M, N] of A [M, K] (or its transpose) times B [K, N] (or its).
      ValueFacts b = withDims(of(node, 1));
      if (in0Dims && in0.rank == 2 && known(b.dims, b.rank) && b.rank == 2)
        r.dims = {in0.dims[intAttrOr(node, "transA", 0) ? 1 : 0], b.dims[intAttrOr(node, "transB", 0) ? 0 : 1]};
    } else if (op == "Gather") {
      ValueFacts idx = withDims(of(node, 1));
      int64_t axis = intAttrOr(node, "axis", 0);
      if (in0Dims && known(idx.dims, idx.rank) && axis >= -in0.rank && axis < in0.rank) {
        axis = axis < 0 ? axis + in0.rank : axis;
        r.dims.assign(in0.dims.begin(), in0.dims.begin() + axis);
        r.dims.append(idx.dims.begin(), idx.dims.end());
        r.dims.append(in0.dims.begin() + axis + 1, in0.dims.end());
      }
    } else if ((op == "Unsqueeze" || op == "Squeeze") && in0Dims && r.rank >= 0) {
      std::optional<llvm::SmallVector<int64_t>> a = axes(node);
      int64_t outRank = r.rank, axisRank = op == "Unsqueeze" ? outRank : in0.rank;
      llvm::SmallVector<bool> marked(axisRank, false);
      bool ok = a.has_value();
      for (int64_t x : a.value_or(llvm::SmallVector<int64_t>{})) {
        if (x < -axisRank || x >= axisRank) {
          ok = false;
          break;
        }
        marked[x < 0 ? x + axisRank : x] = true;
      }
      // (Repeated axes leave fewer marks than axes: the sizes then do not
      // add up and are dropped below, never read past the input's.)
      for (int64_t i = 0, j = 0; ok && i < axisRank; ++i) {
        if (op == "Unsqueeze" && !marked[i] && j >= in0.rank)
          ok = false;
        else if (op == "Unsqueeze")
          r.dims.push_back(marked[i] ? 1 : in0.dims[j++]);
        else if (!marked[i])
          r.dims.push_back(in0.dims[i]);
      }
      if (!ok || static_cast<int64_t>(r.dims.size()) != outRank)
        r.dims.clear();
    } else if (op == "Shape") {
      r.dims = {r.length};
    } else if (op == "Reshape" && r.rank >= 0) {
      const llvm::SmallVector<std::optional<int64_t>> *target = valuesOf(node, 1);
      if (target && static_cast<int64_t>(target->size()) == r.rank) {
        int64_t total = 1, knownProduct = 1, inferred = -1;
        bool totalKnown = in0Dims;
        for (int64_t d : in0.dims)
          totalKnown = totalKnown && d >= 0 && !__builtin_mul_overflow(total, std::max<int64_t>(d, 1), &total);
        for (auto [i, t] : llvm::enumerate(*target)) {
          int64_t d = !t ? -1 : *t == 0 && intAttrOr(node, "allowzero", 0) == 0 && in0Dims && int64_t(i) < in0.rank
                                    ? in0.dims[i]
                                    : *t;
          if (t && *t == -1)
            inferred = i;
          r.dims.push_back(d < 0 ? -1 : d);
          if (d >= 0 && __builtin_mul_overflow(knownProduct, d, &knownProduct))
            totalKnown = false;
        }
        if (inferred >= 0 && totalKnown && knownProduct > 0 &&
            llvm::count_if(r.dims, [](int64_t d) { return d < 0; }) == 1)
          r.dims[inferred] = total / knownProduct;
      }
    } else if (op == "TopK" && in0Dims) {
      const llvm::SmallVector<std::optional<int64_t>> *k = valuesOf(node, 1);
      int64_t axis = intAttrOr(node, "axis", -1);
      r.dims = in0.dims;
      if (axis >= -in0.rank && axis < in0.rank)
        r.dims[axis < 0 ? axis + in0.rank : axis] = k && k->size() == 1 ? (*k)[0].value_or(-1) : -1;
    } else if (op == "ConstantOfShape") {
      if (const llvm::SmallVector<std::optional<int64_t>> *shape = valuesOf(node, 0))
        for (const std::optional<int64_t> &d : *shape)
          r.dims.push_back(d.value_or(-1));
    }
    if (!known(r.dims, r.rank))
      r.dims.clear();

    // Values of small integer (and bool) results.
    if (!(isIntegerType(r.dataType) || r.dataType == onnx::TensorProto::BOOL) || r.rank > 1)
      return;
    // ConstantOfShape([n]) of an integer fill: n copies (TorchScript's
    // expand shapes build their -1 test from one).
    if (op == "ConstantOfShape" && r.rank == 1) {
      const llvm::SmallVector<std::optional<int64_t>> *shape = valuesOf(node, 0);
      const onnx::AttributeProto *value = findAttr(node, "value");
      std::optional<int64_t> fill = value ? scalarInt(value->t()) : std::optional<int64_t>(0);
      if (shape && shape->size() == 1 && (*shape)[0] && *(*shape)[0] >= 0 &&
          *(*shape)[0] <= int64_t(kMaxKnownValues) && fill)
        r.values.assign(*(*shape)[0], *fill);
      return;
    }
    // Size: the element count where every size is known (of a Shape: the
    // rank).
    if (op == "Size") {
      if (in0.rank == 1 && in0.length >= 0)
        r.values = {in0.length};
      else if (in0Dims && llvm::all_of(in0.dims, [](int64_t d) { return d >= 0; }))
        r.values = {std::accumulate(in0.dims.begin(), in0.dims.end(), int64_t(1), std::multiplies<int64_t>())};
      return;
    }
    if (op == "Shape" && in0Dims) {
      int64_t start = intAttrOr(node, "start", 0), end = intAttrOr(node, "end", in0.rank);
      start = std::clamp<int64_t>(start < 0 ? start + in0.rank : start, 0, in0.rank);
      end = std::clamp<int64_t>(end < 0 ? end + in0.rank : end, 0, in0.rank);
      for (int64_t d = start; d < end; ++d)
        r.values.push_back(in0.dims[d] >= 0 ? std::optional<int64_t>(in0.dims[d]) : std::nullopt);
      return;
    }
    const llvm::SmallVector<std::optional<int64_t>> *v0 = valuesOf(node, 0);
    if ((op == "Identity" || op == "Cast" || op == "Unsqueeze" || op == "Squeeze" || op == "Reshape") && v0 &&
        isIntegerType(in0.dataType)) {
      r.values = *v0;
      return;
    }
    if (op == "Gather" && v0 && intAttrOr(node, "axis", 0) == 0 && in0.rank <= 1) {
      const llvm::SmallVector<std::optional<int64_t>> *idx = valuesOf(node, 1);
      if (!idx)
        return;
      int64_t n = v0->size();
      for (const std::optional<int64_t> &i : *idx) {
        if (!i || *i < -n || *i >= n) {
          r.values.clear();
          return;
        }
        r.values.push_back((*v0)[*i < 0 ? *i + n : *i]);
      }
      return;
    }
    if (op == "Concat" && r.rank == 1) {
      for (int i = 0; i < node.input_size(); ++i) {
        const llvm::SmallVector<std::optional<int64_t>> *v = valuesOf(node, i);
        if (!v || r.values.size() + v->size() > kMaxKnownValues) {
          r.values.clear();
          return;
        }
        r.values.append(v->begin(), v->end());
      }
      return;
    }
    if (op == "Neg" && v0) {
      for (const std::optional<int64_t> &x : *v0)
        r.values.push_back(x && *x != std::numeric_limits<int64_t>::min() ? std::optional<int64_t>(-*x)
                                                                           : std::nullopt);
      return;
    }
    // Equal and Where element by element (numpy broadcasting of 1-D values).
    if ((op == "Equal" || op == "Where") && v0) {
      const llvm::SmallVector<std::optional<int64_t>> *v1 = valuesOf(node, 1);
      const llvm::SmallVector<std::optional<int64_t>> *v2 = op == "Where" ? valuesOf(node, 2) : v0;
      if (!v1 || !v2)
        return;
      size_t n = std::max({v0->size(), v1->size(), v2->size()});
      auto at = [&](const llvm::SmallVector<std::optional<int64_t>> &v, size_t i) -> std::optional<int64_t> {
        return v.size() == 1 ? v[0] : i < v.size() ? v[i] : std::nullopt;
      };
      for (const auto *v : {v0, v1, v2})
        if (v->size() != 1 && v->size() != n)
          return;
      for (size_t i = 0; i < n; ++i) {
        std::optional<int64_t> a = at(*v0, i), b = at(*v1, i), c = at(*v2, i);
        if (op == "Equal")
          r.values.push_back(a && b ? std::optional<int64_t>(*a == *b) : std::nullopt);
        else
          r.values.push_back(!a ? std::nullopt : *a ? b : c);
      }
      return;
    }
    if (isOneOf(op, {"Add", "Sub", "Mul", "Div", "Max", "Min"}) && node.input_size() == 2) {
      const llvm::SmallVector<std::optional<int64_t>> *v1 = valuesOf(node, 1);
      if (!v0 || !v1 || (v0->size() != v1->size() && v0->size() != 1 && v1->size() != 1))
        return;
      size_t n = std::max(v0->size(), v1->size());
      for (size_t i = 0; i < n; ++i) {
        std::optional<int64_t> a = (*v0)[v0->size() == 1 ? 0 : i], b = (*v1)[v1->size() == 1 ? 0 : i];
        // Unknown where the arithmetic would overflow (or divide by 0).
        std::optional<int64_t> c;
        int64_t v = 0;
        bool overflow = a && b &&
                        (op == "Add"   ? __builtin_add_overflow(*a, *b, &v)
                         : op == "Sub" ? __builtin_sub_overflow(*a, *b, &v)
                         : op == "Mul" ? __builtin_mul_overflow(*a, *b, &v)
                         : op == "Div" ? *b == 0 || (*a == std::numeric_limits<int64_t>::min() && *b == -1)
                                       : false);
        if (a && b && !overflow)
          c = op == "Div" ? *a / *b : op == "Max" ? std::max(*a, *b) : op == "Min" ? std::min(*a, *b) : v;
        r.values.push_back(c);
      }
    }
  }

  const onnx::GraphProto &graph;
  const CanonicalizationContext &ctx;
  llvm::StringMap<ValueFacts> facts;
};

/// Writes the node's axis from the back where its input's rank `in` is
/// known; returns 1 if it changed anything. (Unsqueeze, Squeeze and the
/// reductions keep theirs: the matchers compare their axes by meaning,
/// hasAxis with the rank.)
int64_t canonicalAxes(onnx::NodeProto &node, const ValueFacts &in, const CanonicalizationContext &ctx) {
  llvm::StringRef op = node.op_type();
  if (in.rank < 0)
    return 0;
  if (op == "Softmax" || op == "LogSoftmax") {
    // Before opset 13 the axis splits the input into 2-D: only the last
    // axis means the same in every opset.
    const onnx::AttributeProto *a = findAttr(node, "axis");
    int64_t axis = a ? a->i() : ctx.opset < 13 ? 1 : -1;
    if (axis == in.rank - 1 && (axis != -1 || !a)) {
      setIntAttribute(node, "axis", -1);
      return 1;
    }
    return 0;
  }
  if (op == "TopK" || op == "ArgMax" || op == "ArgMin") {
    int64_t axis = intAttrOr(node, "axis", op == "TopK" ? -1 : 0);
    if (axis < 0 || axis >= in.rank)
      return 0;
    setIntAttribute(node, "axis", axis - in.rank);
    return 1;
  }
  // Indexing and joining axes are written from the front, as TorchScript
  // writes them (dynamo keeps a user's dim=-1).
  if (op == "Gather" || op == "GatherElements" || op == "ScatterElements" || op == "Concat" || op == "Split") {
    const onnx::AttributeProto *a = findAttr(node, "axis");
    if (!a || a->i() >= 0 || a->i() < -in.rank)
      return 0;
    setIntAttribute(node, "axis", a->i() + in.rank);
    return 1;
  }
  return 0;
}

/// A TopK of all n elements of its (last) axis whose results are only cut
/// to their first k by Slices (torch.sort(x, descending=True) then
/// [..., :k]): the Slices' common `ends` (a constant [k]), which can be
/// the TopK's K instead (sorted, ties to the lower index, either way).
/// Fills `slices` with them.
std::optional<std::string> sortCutToK(const onnx::NodeProto &topk, const ValueFacts &in,
                                      const llvm::StringMap<ValueFacts> &facts, const CanonicalizationContext &ctx,
                                      const llvm::StringMap<llvm::SmallVector<const onnx::NodeProto *>> &readers,
                                      const llvm::StringSet<> &graphOutputs,
                                      llvm::SmallVectorImpl<const onnx::NodeProto *> &slices) {
  if (topk.input_size() < 2 || intAttrOr(topk, "largest", 1) != 1 || in.rank < 1 ||
      static_cast<int64_t>(in.dims.size()) != in.rank || in.dims.back() < 1)
    return std::nullopt;
  int64_t axis = intAttrOr(topk, "axis", -1), n = in.dims.back();
  // K = n may be a constant or computed from the sizes (Shape(x)[-1]).
  std::optional<llvm::SmallVector<int64_t>> k = ctx.ints(topk.input(1));
  if (auto it = facts.find(topk.input(1)); !k && it != facts.end())
    k = it->second.knownValues();
  if ((axis != -1 && axis != in.rank - 1) || !k || k->size() != 1 || (*k)[0] != n)
    return std::nullopt;
  std::optional<std::string> ends;
  std::optional<int64_t> cut;
  for (const std::string &out : topk.output()) {
    if (out.empty())
      continue;
    if (graphOutputs.contains(out))
      return std::nullopt;
    for (const onnx::NodeProto *slice : readers.lookup(out)) {
      auto ints = [&](int i) -> std::optional<llvm::SmallVector<int64_t>> {
        return i < slice->input_size() && !slice->input(i).empty() ? ctx.ints(slice->input(i)) : std::nullopt;
      };
      auto absentOr = [&](int i, std::initializer_list<int64_t> allowed) {
        if (i >= slice->input_size() || slice->input(i).empty())
          return true;
        std::optional<llvm::SmallVector<int64_t>> v = ints(i);
        return v && v->size() == 1 && llvm::is_contained(allowed, (*v)[0]);
      };
      std::optional<llvm::SmallVector<int64_t>> starts = ints(1), end = ints(2);
      if (slice->op_type() != "Slice" || slice->input(0) != out || slice->output_size() != 1 ||
          graphOutputs.contains(slice->output(0)) || !starts || starts->size() != 1 || (*starts)[0] != 0 || !end ||
          end->size() != 1 || (*end)[0] < 1 || (*end)[0] >= n || (cut && *cut != (*end)[0]) ||
          !absentOr(3, {-1, in.rank - 1}) || !absentOr(4, {1}))
        return std::nullopt;
      cut = (*end)[0];
      ends = slice->input(2);
      slices.push_back(slice);
    }
  }
  return ends;
}

/// Reshape(Gather(W, flat, axis 0), S) with flat the index tensor `ids`
/// flattened (Reshapes to 1-D) and S = ids' shape then W's trailing sizes
/// (torch.index_select(W, 0, ids.view(-1)).view(T, k, a, b)): Gather(W,
/// ids) itself. S's first size is whatever its element count makes it,
/// which the known sizes fix to ids' first. Returns {W, ids}, or nullopt.
std::optional<std::pair<std::string, std::string>>
unflattenedGather(const onnx::NodeProto &reshape, const llvm::StringMap<ValueFacts> &facts,
                  const llvm::StringMap<const onnx::NodeProto *> &producers) {
  auto factsOf = [&](llvm::StringRef v) -> const ValueFacts * {
    auto it = facts.find(v);
    return it == facts.end() ? nullptr : &it->second;
  };
  auto standard = [](const onnx::NodeProto *n, llvm::StringRef op) {
    return n && isStandardNode(*n) && n->op_type() == op;
  };
  if (reshape.input_size() != 2)
    return std::nullopt;
  const onnx::NodeProto *gather = producers.lookup(reshape.input(0));
  if (!standard(gather, "Gather") || gather->input_size() != 2 || intAttrOr(*gather, "axis", 0) != 0)
    return std::nullopt;
  std::string ids = gather->input(1);
  const onnx::NodeProto *flat = producers.lookup(ids);
  if (!standard(flat, "Reshape"))
    return std::nullopt;
  while (standard(flat, "Reshape") && factsOf(flat->output(0)) && factsOf(flat->output(0))->rank == 1) {
    ids = flat->input(0);
    flat = producers.lookup(ids);
  }
  const ValueFacts *w = factsOf(gather->input(0)), *i = factsOf(ids), *target = factsOf(reshape.input(1));
  if (!w || !i || !target || w->rank < 1 || i->rank < 2 || static_cast<int64_t>(w->dims.size()) != w->rank ||
      static_cast<int64_t>(i->dims.size()) != i->rank ||
      static_cast<int64_t>(target->values.size()) != i->rank + w->rank - 1)
    return std::nullopt;
  llvm::SmallVector<int64_t> trailing(i->dims.begin() + 1, i->dims.end());
  trailing.append(w->dims.begin() + 1, w->dims.end());
  for (auto [j, size] : llvm::enumerate(trailing))
    if (size < 1 || target->values[j + 1] != std::optional<int64_t>(size))
      return std::nullopt;
  return std::make_pair(gather->input(0), ids);
}

} // namespace

std::optional<llvm::SmallVector<int64_t>> ValueFacts::knownValues() const {
  if (values.empty() || llvm::any_of(values, [](const std::optional<int64_t> &v) { return !v; }))
    return std::nullopt;
  llvm::SmallVector<int64_t> all;
  for (const std::optional<int64_t> &v : values)
    all.push_back(*v);
  return all;
}

llvm::StringMap<ValueFacts> mlir::moe::onnx_import::inferValueFacts(const onnx::GraphProto &graph,
                                                                    const CanonicalizationContext &ctx) {
  return FactInference(graph, ctx).run();
}

int64_t mlir::moe::onnx_import::canonicalizeGraph(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                                  llvm::StringMap<ValueFacts> &facts) {
  facts = inferValueFacts(graph, ctx);
  llvm::StringMap<llvm::SmallVector<int64_t>> made;
  // First: the Identity nodes they leave are removed below.
  int64_t changes = canonicalizeStaticIfs(graph, ctx, facts, made);
  changes += canonicalizeFlattenedRows(graph, ctx, facts, made);
  changes += canonicalizeWeightedSums(graph, ctx, facts, made);
  changes += canonicalizeNonNegativeNorms(graph, ctx, facts, made);
  changes += canonicalizeSlotCells(graph, ctx, facts, made);
  changes += canonicalizeElementIndexPuts(graph, ctx, facts, made);
  auto factsOf = [&](llvm::StringRef name) {
    auto it = facts.find(name);
    return it == facts.end() ? ValueFacts{} : it->second;
  };
  llvm::StringSet<> graphOutputs;
  for (const onnx::ValueInfoProto &out : graph.output())
    graphOutputs.insert(out.name());
  llvm::StringMap<llvm::SmallVector<const onnx::NodeProto *>> readers;
  for (const onnx::NodeProto &node : graph.node())
    for (const std::string &in : node.input())
      if (!in.empty())
        readers[in].push_back(&node);

  // A removed node's output is read as its input from then on.
  llvm::StringMap<std::string> renamed;
  auto source = [&](const std::string &name) -> const std::string & {
    auto it = renamed.find(name);
    return it == renamed.end() ? name : it->second;
  };
  // Unnamed nodes keep the names their position in the file gives them
  // (OpType#index) for messages, though removals shift the positions.
  for (auto [i, node] : llvm::enumerate(*graph.mutable_node()))
    if (node.name().empty())
      node.set_name(node.op_type() + "#" + std::to_string(i));
  // Found before the loop below moves the producers away.
  llvm::StringMap<const onnx::NodeProto *> producers;
  for (const onnx::NodeProto &node : graph.node())
    for (const std::string &out : node.output())
      producers[out] = &node;
  llvm::DenseMap<const onnx::NodeProto *, std::pair<std::string, std::string>> unflattened;
  llvm::StringSet<> orphans;
  for (const onnx::NodeProto &node : graph.node())
    if (isStandardNode(node) && node.op_type() == "Reshape")
      if (std::optional<std::pair<std::string, std::string>> g = unflattenedGather(node, facts, producers)) {
        unflattened[&node] = *g;
        orphans.insert(node.input(0));
      }
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  llvm::DenseSet<const onnx::NodeProto *> dropped;
  for (onnx::NodeProto &node : *graph.mutable_node()) {
    if (dropped.contains(&node))
      continue;
    for (std::string &in : *node.mutable_input())
      if (!in.empty())
        in = source(in);
    bool standard = node.domain().empty() || node.domain() == "ai.onnx";
    if (auto it = unflattened.find(&node); it != unflattened.end()) {
      node.set_op_type("Gather");
      node.clear_input();
      node.add_input(source(it->second.first));
      node.add_input(source(it->second.second));
      node.clear_attribute();
      setIntAttribute(node, "axis", 0);
      ++changes;
    }
    llvm::StringRef op = node.op_type();
    // A full sort cut to k by Slices is TopK(k): the Slices go, their
    // readers read the TopK.
    llvm::SmallVector<const onnx::NodeProto *> slices;
    if (standard && op == "TopK")
      if (std::optional<std::string> k =
              sortCutToK(node, factsOf(node.input(0)), facts, ctx, readers, graphOutputs, slices);
          k && !slices.empty()) {
        node.set_input(1, *k);
        std::optional<llvm::SmallVector<int64_t>> cut = ctx.ints(*k);
        for (const onnx::NodeProto *slice : slices) {
          renamed[slice->output(0)] = slice->input(0);
          dropped.insert(slice);
        }
        for (const std::string &out : node.output())
          if (auto it = facts.find(out); it != facts.end() && !it->second.dims.empty() && cut)
            it->second.dims.back() = (*cut)[0];
        ++changes;
      }
    bool removable = standard && node.input_size() >= 1 && node.output_size() == 1 && !node.input(0).empty() &&
                     !graphOutputs.contains(node.output(0));
    if (removable && op == "Identity") {
      renamed[node.output(0)] = node.input(0);
      ++changes;
      continue;
    }
    // Reshape(v, [-1]) of a 1-D v (torch.index_select flattens its index).
    if (removable && op == "Reshape" && node.input_size() == 2 && factsOf(node.input(0)).rank == 1 &&
        ctx.ints(node.input(1)) == std::optional<llvm::SmallVector<int64_t>>(llvm::SmallVector<int64_t>{-1})) {
      renamed[node.output(0)] = node.input(0);
      ++changes;
      continue;
    }
    if (removable && op == "Cast") {
      int32_t from = factsOf(node.input(0)).dataType, to = static_cast<int32_t>(intAttrOr(node, "to", 0));
      llvm::ArrayRef<const onnx::NodeProto *> users = readers.lookup(node.output(0));
      bool sameType = from != 0 && from == to;
      // NonZero(Cast(x, bool)) == NonZero(x) for any numeric x (NaN is
      // nonzero both ways).
      bool onlyTested = to == onnx::TensorProto::BOOL && from != 0 && from != onnx::TensorProto::STRING &&
                        !users.empty() &&
                        llvm::all_of(users, [](const onnx::NodeProto *u) { return u->op_type() == "NonZero"; });
      if (sameType || onlyTested) {
        renamed[node.output(0)] = node.input(0);
        ++changes;
        continue;
      }
    }
    if (standard)
      changes += canonicalAxes(node, factsOf(node.input_size() ? node.input(0) : std::string()), ctx);
    // An unsorted TopK may list its picks in any order; the import sorts
    // every TopK, so it is the sorted one (the block matchers read those).
    if (standard && op == "TopK" && findAttr(node, "sorted") && intAttrOr(node, "sorted", 1) == 0) {
      setIntAttribute(node, "sorted", 1);
      ++changes;
    }
    *kept.Add() = std::move(node);
  }
  graph.mutable_node()->Swap(&kept);
  if (!orphans.empty())
    removeOrphans(graph, std::move(orphans));
  changes += canonicalizeRowMasks(graph, ctx, facts, made);
  changes += canonicalizeOneHots(graph, ctx, facts, made);
  // A gate one pass scatters has its columns read as the scattered gate's
  // by the next.
  for (int pass = 0; pass < 3; ++pass) {
    int64_t selections = canonicalizeSelections(graph, ctx, facts, made);
    if (selections == 0)
      break;
    facts = inferValueFactsWith(graph, ctx, made);
    changes += selections;
  }
  // A top-k picked one ArgMax at a time and sums over its slots written
  // one term per slot; the gates they leave are read by the selection
  // rewrites once more.
  int64_t picked = canonicalizeRepeatedArgMax(graph, ctx, facts, made);
  int64_t sums = canonicalizeSlotSums(graph, ctx, facts, made);
  // A gate they leave may be scattered, and then its columns read as the
  // scattered gate's: a pass each.
  for (int pass = 0; picked + sums > 0 && pass < 2 && canonicalizeSelections(graph, ctx, facts, made) > 0; ++pass)
    facts = inferValueFactsWith(graph, ctx, made);
  return changes + picked + sums;
}

bool mlir::moe::onnx_import::isBroadcastingOp(llvm::StringRef op) {
  return llvm::is_contained({"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Equal", "Less", "Greater", "LessOrEqual",
                             "GreaterOrEqual", "And", "Or", "Xor", "Where", "Max", "Min", "Sum", "Mean", "PRelu"},
                            op);
}
