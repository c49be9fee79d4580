//===- GraphCanonicalization.cpp - one spelling per meaning ---------------===//
//
// See GraphCanonicalization.h. The inference is deliberately partial: a
// value whose type or rank an op's rule cannot tell stays unknown, and an
// unknown fact never enables a rewrite.
//
//===----------------------------------------------------------------------===//

#include "GraphCanonicalization.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"

#include <algorithm>

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

/// Elementwise ops that broadcast their inputs (numpy rules).
bool broadcasts(llvm::StringRef op) {
  return isOneOf(op, {"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Equal", "Less", "Greater", "LessOrEqual",
                      "GreaterOrEqual", "And", "Or", "Xor", "Where", "Max", "Min", "Sum", "Mean", "PRelu"});
}

bool comparison(llvm::StringRef op) {
  return isOneOf(op, {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Not",
                      "IsNaN", "IsInf"});
}

bool reduction(llvm::StringRef op) { return op.starts_with("Reduce"); }

ValueFacts ofTensor(const onnx::TensorProto &t) {
  return {t.data_type(), t.dims_size(), t.dims_size() == 1 ? t.dims(0) : -1};
}

class FactInference {
public:
  FactInference(const onnx::GraphProto &graph, const CanonicalizationContext &ctx) : graph(graph), ctx(ctx) {}

  llvm::StringMap<ValueFacts> run() {
    for (const onnx::ValueInfoProto &input : graph.input()) {
      const onnx::TypeProto::Tensor &t = input.type().tensor_type();
      facts[input.name()] = {t.elem_type(), t.has_shape() ? t.shape().dim_size() : -1,
                             t.has_shape() && t.shape().dim_size() == 1 && t.shape().dim(0).has_dim_value()
                                 ? t.shape().dim(0).dim_value()
                                 : -1};
    }
    for (const onnx::TensorProto &init : graph.initializer())
      facts[init.name()] = ofTensor(init);
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
    } else if (broadcasts(op)) {
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
      r = {in0.dataType, rank, rank == 1 && in0.rank == 0 ? 1 : rank == 1 && in0.rank == 2 ? -1 : -1};
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
    set(node, 0, r);
  }

  const onnx::GraphProto &graph;
  const CanonicalizationContext &ctx;
  llvm::StringMap<ValueFacts> facts;
};

void setIntAttr(onnx::NodeProto &node, llvm::StringRef name, int64_t value) {
  for (onnx::AttributeProto &a : *node.mutable_attribute())
    if (a.name() == name) {
      a.set_i(value);
      return;
    }
  onnx::AttributeProto *a = node.add_attribute();
  a->set_name(name.str());
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

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
      setIntAttr(node, "axis", -1);
      return 1;
    }
    return 0;
  }
  if (op == "TopK" || op == "ArgMax" || op == "ArgMin") {
    int64_t axis = intAttrOr(node, "axis", op == "TopK" ? -1 : 0);
    if (axis < 0 || axis >= in.rank)
      return 0;
    setIntAttr(node, "axis", axis - in.rank);
    return 1;
  }
  return 0;
}

} // namespace

llvm::StringMap<ValueFacts> mlir::moe::onnx_import::inferValueFacts(const onnx::GraphProto &graph,
                                                                    const CanonicalizationContext &ctx) {
  return FactInference(graph, ctx).run();
}

int64_t mlir::moe::onnx_import::canonicalizeGraph(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                                  llvm::StringMap<ValueFacts> &facts) {
  facts = inferValueFacts(graph, ctx);
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
  int64_t changes = 0;
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  for (onnx::NodeProto &node : *graph.mutable_node()) {
    for (std::string &in : *node.mutable_input())
      if (!in.empty())
        in = source(in);
    bool standard = node.domain().empty() || node.domain() == "ai.onnx";
    llvm::StringRef op = node.op_type();
    bool removable = standard && node.input_size() >= 1 && node.output_size() == 1 && !node.input(0).empty() &&
                     !graphOutputs.contains(node.output(0));
    if (removable && op == "Identity") {
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
    *kept.Add() = std::move(node);
  }
  graph.mutable_node()->Swap(&kept);
  return changes;
}
