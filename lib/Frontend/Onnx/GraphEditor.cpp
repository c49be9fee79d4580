//===- GraphEditor.cpp - reading and rewriting an ONNX graph --------------===//
//
// See GraphEditor.h.
//
//===----------------------------------------------------------------------===//

#include "GraphEditor.h"
#include "BlockMatching.h"

#include "llvm/ADT/STLExtras.h"

#include <algorithm>
#include <cmath>
#include <cstring>

using namespace mlir;
using namespace mlir::moe::onnx_import;

std::optional<double> mlir::moe::onnx_import::scalarOf(const onnx::TensorProto &t) {
  int64_t count = 1;
  for (int64_t d : t.dims())
    count *= d;
  if (count != 1)
    return std::nullopt;
  const std::string &raw = t.raw_data();
  auto fromHalf = [](uint16_t h, bool brain) -> double {
    if (brain) {
      uint32_t bits = uint32_t(h) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (exponent == 31)
      return mantissa ? NAN : sign * INFINITY;
    if (exponent == 0)
      return sign * std::ldexp(double(mantissa), -24);
    return sign * std::ldexp(double(mantissa | 0x400), exponent - 25);
  };
  switch (t.data_type()) {
  case onnx::TensorProto::FLOAT: {
    float f;
    if (raw.size() == 4)
      std::memcpy(&f, raw.data(), 4);
    else if (t.float_data_size() == 1)
      f = t.float_data(0);
    else
      return std::nullopt;
    return f;
  }
  case onnx::TensorProto::FLOAT16:
  case onnx::TensorProto::BFLOAT16: {
    uint16_t h;
    if (raw.size() == 2)
      std::memcpy(&h, raw.data(), 2);
    else if (t.int32_data_size() == 1)
      h = uint16_t(t.int32_data(0));
    else
      return std::nullopt;
    return fromHalf(h, t.data_type() == onnx::TensorProto::BFLOAT16);
  }
  case onnx::TensorProto::BOOL:
  case onnx::TensorProto::INT32:
  case onnx::TensorProto::INT64: {
    if (t.data_type() == onnx::TensorProto::INT64 && raw.size() == 8) {
      int64_t v;
      std::memcpy(&v, raw.data(), 8);
      return double(v);
    }
    if (t.data_type() == onnx::TensorProto::INT32 && raw.size() == 4) {
      int32_t v;
      std::memcpy(&v, raw.data(), 4);
      return double(v);
    }
    if (t.data_type() == onnx::TensorProto::BOOL && raw.size() == 1)
      return double(raw[0] != 0);
    if (t.int64_data_size() == 1)
      return double(t.int64_data(0));
    if (t.int32_data_size() == 1)
      return double(t.int32_data(0));
    return std::nullopt;
  }
  default:
    return std::nullopt;
  }
}

/// `axes` made non-negative for rank `rank`, sorted; nullopt when one is
/// out of range or repeated.
std::optional<llvm::SmallVector<int64_t>> mlir::moe::onnx_import::normalizedAxes(llvm::ArrayRef<int64_t> axes, int64_t rank) {
  llvm::SmallVector<int64_t> out;
  for (int64_t a : axes) {
    if (a < -rank || a >= rank)
      return std::nullopt;
    out.push_back(a < 0 ? a + rank : a);
  }
  llvm::sort(out);
  if (std::adjacent_find(out.begin(), out.end()) != out.end())
    return std::nullopt;
  return out;
}

GraphEditor::GraphEditor(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                         const llvm::StringMap<ValueFacts> &facts, llvm::StringMap<llvm::SmallVector<int64_t>> &made)
    : graph(graph), ctx(ctx), facts(facts), made(made) {
  for (const onnx::TensorProto &init : graph.initializer()) {
    taken.insert(init.name());
    initializers[init.name()] = &init;
  }
  for (const onnx::ValueInfoProto &v : graph.input())
    taken.insert(v.name());
  for (const onnx::ValueInfoProto &v : graph.output()) {
    taken.insert(v.name());
    graphOutputs.insert(v.name());
  }
  for (const onnx::NodeProto &node : graph.node()) {
    for (const std::string &v : node.output())
      if (!v.empty()) {
        taken.insert(v);
        producers[v] = &node;
      }
    for (const std::string &v : node.input()) {
      taken.insert(v);
      ++readers[v];
    }
  }
}

std::optional<llvm::SmallVector<int64_t>> GraphEditor::axesOf(const onnx::NodeProto &node) const {
  if (llvm::SmallVector<int64_t> a = blocks::intsAttr(node, "axes"); !a.empty())
    return a;
  if (node.input_size() > 1 && !node.input(1).empty())
    return ints(node.input(1));
  return std::nullopt;
}

std::string GraphEditor::fresh(llvm::StringRef base) {
  std::string name = base.str();
  for (int i = 0; !taken.insert(name).second; ++i)
    name = base.str() + "_" + std::to_string(i);
  return name;
}

std::string GraphEditor::constant(llvm::ArrayRef<int64_t> values, llvm::StringRef base) {
  std::string name = fresh(base);
  onnx::TensorProto *t = graph.add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::INT64);
  t->add_dims(static_cast<int64_t>(values.size()));
  for (int64_t v : values)
    t->add_int64_data(v);
  made[name] = llvm::SmallVector<int64_t>(values);
  return name;
}

onnx::NodeProto GraphEditor::node(llvm::StringRef op, llvm::ArrayRef<std::string> inputs, const std::string &out,
                                  llvm::StringRef name) {
  onnx::NodeProto n;
  n.set_op_type(op.str());
  n.set_name(name.str());
  for (const std::string &in : inputs)
    n.add_input(in);
  n.add_output(out);
  return n;
}

void GraphEditor::addAxes(onnx::NodeProto &n, llvm::ArrayRef<int64_t> axes, llvm::StringRef base) {
  if (ctx.opset >= 13) {
    n.add_input(constant(axes, base));
    return;
  }
  onnx::AttributeProto *a = n.add_attribute();
  a->set_name("axes");
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : axes)
    a->add_ints(x);
}

void mlir::moe::onnx_import::setIntAttribute(onnx::NodeProto &n, llvm::StringRef name, int64_t value) {
  for (onnx::AttributeProto &a : *n.mutable_attribute())
    if (a.name() == name) {
      a.set_type(onnx::AttributeProto::INT);
      a.set_i(value);
      return;
    }
  onnx::AttributeProto *a = n.add_attribute();
  a->set_name(name.str());
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

onnx::NodeProto GraphEditor::squeeze(const std::string &in, llvm::ArrayRef<int64_t> axes, const std::string &out,
                                     llvm::StringRef name, bool unsqueeze) {
  onnx::NodeProto n = node(unsqueeze ? "Unsqueeze" : "Squeeze", {in}, out, name);
  addAxes(n, axes, unsqueeze ? "moe_unsqueeze_axes" : "moe_squeeze_axes");
  return n;
}

onnx::NodeProto GraphEditor::lastAxisSlice(const std::string &in, int64_t begin, int64_t end, const std::string &out,
                                           llvm::StringRef name) {
  return node("Slice",
              {in, constant({begin}, "moe_slice_begin"), constant({end}, "moe_slice_end"),
               constant({-1}, "moe_last_axis")},
              out, name);
}

onnx::NodeProto GraphEditor::reduceSum(const std::string &in, llvm::ArrayRef<int64_t> axes, bool keepdims,
                                       const std::string &out, llvm::StringRef name) {
  onnx::NodeProto n = node("ReduceSum", {in}, out, name);
  addAxes(n, axes, "moe_sum_axes");
  setIntAttribute(n, "keepdims", keepdims ? 1 : 0);
  return n;
}

std::optional<double> GraphEditor::fillValue(llvm::StringRef v) const {
  const onnx::NodeProto *p = producers.lookup(v);
  if (p && isStandardNode(*p) && p->op_type() == "Expand" && p->input_size() == 2)
    return fillValue(p->input(0));
  if (p && isStandardNode(*p) && p->op_type() == "ConstantOfShape") {
    for (const onnx::AttributeProto &a : p->attribute())
      if (a.name() == "value")
        return scalarOf(a.t());
    return 0.0;
  }
  if (p && isStandardNode(*p) && p->op_type() == "Constant") {
    for (const onnx::AttributeProto &a : p->attribute())
      if (a.name() == "value")
        if (std::optional<double> one = scalarOf(a.t()))
          return one;
    // A tensor of one value (the zeros a static export writes out).
    return ctx.uniform ? ctx.uniform(v) : std::nullopt;
  }
  if (p)
    return std::nullopt;
  if (ctx.uniform)
    if (std::optional<double> u = ctx.uniform(v))
      return u;
  const onnx::TensorProto *init = initializers.lookup(v);
  return init ? scalarOf(*init) : std::nullopt;
}
/// `v` and the values a fill is computed from (Expand, ConstantOfShape,
/// Shape): dead with the fill, unless read elsewhere (the removal checks).
void GraphEditor::fillValues(llvm::StringRef v, llvm::SmallVectorImpl<std::string> &out) const {
  out.push_back(v.str());
  const onnx::NodeProto *p = producers.lookup(v);
  if (p && isStandardNode(*p) && llvm::is_contained({"Expand", "ConstantOfShape", "Shape"}, p->op_type()))
    for (const std::string &in : p->input())
      if (producers.lookup(in) && !in.empty())
        fillValues(in, out);
}
int64_t mlir::moe::onnx_import::removeOrphans(onnx::GraphProto &graph, llvm::StringSet<> candidates) {
  llvm::StringSet<> outputs;
  for (const onnx::ValueInfoProto &v : graph.output())
    outputs.insert(v.name());
  int64_t removed = 0;
  for (bool changed = true; changed;) {
    changed = false;
    llvm::StringMap<int> readers;
    for (const onnx::NodeProto &node : graph.node())
      for (const std::string &in : node.input())
        ++readers[in];
    google::protobuf::RepeatedPtrField<onnx::NodeProto> live;
    for (onnx::NodeProto &node : *graph.mutable_node()) {
      bool dead = node.output_size() > 0 && llvm::all_of(node.output(), [&](const std::string &out) {
        return out.empty() || (candidates.contains(out) && !readers.count(out) && !outputs.contains(out));
      });
      if (!dead) {
        *live.Add() = std::move(node);
        continue;
      }
      changed = true;
      ++removed;
      for (const std::string &in : node.input())
        if (!in.empty())
          candidates.insert(in);
    }
    graph.mutable_node()->Swap(&live);
  }
  return removed;
}

std::optional<TopKColumns> GraphEditor::columnsOf(llvm::StringRef v, int depth) const {
  const onnx::NodeProto *p = producers.lookup(v);
  const ValueFacts *f = factsOf(v);
  if (!p || !isStandardNode(*p) || !f || f->rank < 1)
    return std::nullopt;
  llvm::StringRef op = p->op_type();
  if (op == "TopK" && p->output_size() == 2 && p->input_size() == 2) {
    std::optional<llvm::SmallVector<int64_t>> k = ints(p->input(1));
    if (!k || k->size() != 1 || (*k)[0] < 1 || blocks::intAttr(*p, "largest", 1) != 1 ||
        normalizedAxes({blocks::intAttr(*p, "axis", -1)}, f->rank) != llvm::SmallVector<int64_t>{f->rank - 1})
      return std::nullopt;
    return TopKColumns{p, p->output(0) == v ? 0 : 1, v.str(), 0, (*k)[0]};
  }
  // Elementwise over whole columns (or a softmax across them): still one
  // column per slot.
  bool elementwise = isBroadcastingOp(op) || isUnaryElementwiseOp(op) ||
                     (op == "Softmax" && ctx.opset >= 13 && blocks::intAttr(*p, "axis", -1) == -1);
  if (elementwise && depth > 0 && f->dims.size() == static_cast<size_t>(f->rank) && f->dims.back() >= 1) {
    for (const std::string &in : p->input()) {
      std::optional<TopKColumns> of = in.empty() ? std::nullopt : columnsOf(in, depth - 1);
      const ValueFacts *inFacts = of ? factsOf(in) : nullptr;
      if (of && of->begin == 0 && of->width == f->dims.back() && inFacts && inFacts->rank == f->rank)
        return TopKColumns{of->topk, -1, v.str(), 0, of->width};
    }
    return std::nullopt;
  }
  if (op != "Slice" || p->input_size() < 4)
    return std::nullopt;
  std::optional<TopKColumns> of = columnsOf(p->input(0), depth);
  std::optional<llvm::SmallVector<int64_t>> starts = ints(p->input(1)), ends = ints(p->input(2)),
                                            axes = ints(p->input(3));
  std::optional<llvm::SmallVector<int64_t>> steps =
      p->input_size() > 4 && !p->input(4).empty() ? ints(p->input(4)) : llvm::SmallVector<int64_t>{1};
  if (!of || !starts || !ends || !axes || !steps || starts->size() != 1 || ends->size() != 1 ||
      normalizedAxes(*axes, f->rank) != llvm::SmallVector<int64_t>{f->rank - 1} ||
      *steps != llvm::SmallVector<int64_t>{1})
    return std::nullopt;
  // ONNX's rule: a negative bound counts from the end, then both clamp.
  auto bound = [&](int64_t b) { return std::clamp(b < 0 ? b + of->width : b, int64_t{0}, of->width); };
  int64_t begin = bound((*starts)[0]), end = bound((*ends)[0]);
  if (end <= begin)
    return std::nullopt;
  return TopKColumns{of->topk, of->output, of->source, of->begin + begin, end - begin};
}

std::optional<TopKColumn> GraphEditor::columnOf(llvm::StringRef v) const {
  const onnx::NodeProto *p = producers.lookup(v);
  const ValueFacts *f = factsOf(v);
  if (!p || !isStandardNode(*p) || !f || f->rank < 0)
    return std::nullopt;
  auto lastAxisOnly = [&](const onnx::NodeProto &n, int64_t rank) {
    std::optional<llvm::SmallVector<int64_t>> a = axesOf(n);
    return a && normalizedAxes(*a, rank) == llvm::SmallVector<int64_t>{rank - 1};
  };
  if (p->op_type() == "Unsqueeze" && lastAxisOnly(*p, f->rank)) {
    std::optional<TopKColumn> c = columnOf(p->input(0));
    if (!c || !c->squeezed)
      return std::nullopt;
    return TopKColumn{c->of, false};
  }
  if (p->op_type() == "Squeeze" && lastAxisOnly(*p, f->rank + 1)) {
    std::optional<TopKColumn> c = columnOf(p->input(0));
    if (!c || c->squeezed)
      return std::nullopt;
    return TopKColumn{c->of, true};
  }
  if (p->op_type() == "Gather" && p->input_size() == 2) {
    const ValueFacts *index = factsOf(p->input(1));
    std::optional<llvm::SmallVector<int64_t>> j = ints(p->input(1));
    std::optional<TopKColumns> of = columnsOf(p->input(0));
    if (!index || index->rank != 0 || !j || j->size() != 1 || !of || (*j)[0] < 0 || (*j)[0] >= of->width ||
        normalizedAxes({blocks::intAttr(*p, "axis", 0)}, f->rank + 1) != llvm::SmallVector<int64_t>{f->rank})
      return std::nullopt;
    return TopKColumn{TopKColumns{of->topk, of->output, of->source, of->begin + (*j)[0], 1}, true};
  }
  std::optional<TopKColumns> of = columnsOf(v);
  if (!of || of->width != 1)
    return std::nullopt;
  return TopKColumn{*of, false};
}

llvm::StringMap<ValueFacts>
mlir::moe::onnx_import::inferValueFactsWith(const onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                            const llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  CanonicalizationContext withMade{ctx.opset,
                                   [&](llvm::StringRef name) {
                                     auto it = made.find(name);
                                     return it == made.end() ? ctx.ints(name) : std::optional(it->second);
                                   },
                                   ctx.uniform};
  return inferValueFacts(graph, withMade);
}

bool GraphEditor::sameConstant(llvm::StringRef a, llvm::StringRef b) const {
  auto tensor = [&](llvm::StringRef v) -> const onnx::TensorProto * {
    if (const onnx::NodeProto *p = producerOf(v, "Constant")) {
      for (const onnx::AttributeProto &attr : p->attribute())
        if (attr.name() == "value" && attr.has_t())
          return &attr.t();
      return nullptr;
    }
    return producers.lookup(v) ? nullptr : initializers.lookup(v);
  };
  const onnx::TensorProto *x = tensor(a), *y = tensor(b);
  if (!x || !y || x->data_location() != onnx::TensorProto::DEFAULT || y->data_location() != onnx::TensorProto::DEFAULT)
    return false;
  onnx::TensorProto xs = *x, ys = *y;
  xs.clear_name();
  ys.clear_name();
  return xs.SerializeAsString() == ys.SerializeAsString();
}

int64_t GraphEditor::commit() {
  if (replacements.empty())
    return 0;
  int64_t count = static_cast<int64_t>(replacements.size());
  google::protobuf::RepeatedPtrField<onnx::NodeProto> out;
  for (onnx::NodeProto &node : *graph.mutable_node()) {
    auto it = replacements.find(&node);
    if (it == replacements.end()) {
      *out.Add() = std::move(node);
      continue;
    }
    for (onnx::NodeProto &n : it->second)
      *out.Add() = std::move(n);
  }
  graph.mutable_node()->Swap(&out);
  replacements.clear();
  removeOrphans(graph, std::move(orphans));
  orphans.clear();
  return count;
}
