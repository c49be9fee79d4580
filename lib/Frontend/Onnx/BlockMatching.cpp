//===- BlockMatching.cpp - what the ONNX MoE block matchers share ---------===//

#include "BlockMatching.h"

#include "llvm/ADT/StringExtras.h"

#include <cmath>
#include <map>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace mlir::moe::onnx_import::blocks {

/// A ConstantOfShape attribute that leaves the fill 0 (absent: 0.0).
bool isZeroConstant(const ConstantLookup &constants, llvm::StringRef value) {
  std::optional<std::vector<float>> v = constants.floats ? constants.floats(value) : std::nullopt;
  return v && !v->empty() && llvm::all_of(*v, [](float f) { return f == 0.0f; });
}

bool einsumIs(llvm::StringRef equation, llvm::StringRef pattern) {
  std::string e;
  llvm::copy_if(equation, std::back_inserter(e), [](char c) { return c != ' '; });
  if (e.size() != pattern.size())
    return false;
  std::map<char, char> to, from;
  for (size_t i = 0; i < e.size(); ++i) {
    char p = pattern[i], c = e[i];
    if (!llvm::isAlpha(p) || !llvm::isAlpha(c)) {
      if (p != c)
        return false;
      continue;
    }
    if (to.emplace(p, c).first->second != c || from.emplace(c, p).first->second != p)
      return false;
  }
  return true;
}

bool isZeroValue(const onnx::AttributeProto &a) {
  if (a.name() != "value")
    return true;
  const onnx::TensorProto &t = a.t();
  auto zero = [](const auto &field) { return llvm::all_of(field, [](auto v) { return v == 0; }); };
  return t.raw_data().find_first_not_of('\0') == std::string::npos && zero(t.float_data()) &&
         zero(t.int32_data()) && zero(t.int64_data()) && zero(t.double_data());
}

bool isWholeShape(const onnx::NodeProto &shape) {
  return shape.op_type() == "Shape" && llvm::all_of(shape.attribute(), [](const onnx::AttributeProto &a) {
           return a.name() == "start" && a.i() == 0;
         });
}

const onnx::NodeProto *zeroFill(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value) {
  const onnx::NodeProto *fill = g.producer(value);
  bool zeros = fill && ((fill->op_type() == "ConstantOfShape" && llvm::all_of(fill->attribute(), isZeroValue)) ||
                        (fill->op_type() == "Expand" && isZeroConstant(constants, inputOf(*fill, 0))));
  return zeros ? fill : nullptr;
}

bool isZerosLike(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef zeros, llvm::StringRef like,
                 llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  if (isZeroConstant(constants, zeros))
    return true;
  const onnx::NodeProto *fill = zeroFill(g, constants, zeros);
  const onnx::NodeProto *shape = fill ? g.producer(inputOf(*fill, fill->op_type() == "Expand" ? 1 : 0)) : nullptr;
  if (!shape || !isWholeShape(*shape) || inputOf(*shape, 0) != like)
    return false;
  nodes.append({fill, shape});
  return true;
}

std::string anyOverSlots(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef mask, bool keepdims,
                         bool bareMax, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  auto castTo = [](const onnx::NodeProto *n, std::initializer_list<int64_t> types) {
    return n && n->op_type() == "Cast" && llvm::is_contained(types, intAttr(*n, "to", 0));
  };
  for (int u : g.users(mask)) {
    const onnx::NodeProto *toInt = &g.graph.node(u);
    if (!castTo(toInt, {onnx::TensorProto::INT32, onnx::TensorProto::INT64}))
      continue;
    const onnx::NodeProto *reduce = g.onlyUser(outputOf(*toInt, 0), "ReduceMax");
    if (!reduce)
      reduce = g.onlyUser(outputOf(*toInt, 0), "ReduceSum");
    if (!reduce || !hasAxis(*reduce, constants, -1) || intAttr(*reduce, "keepdims", 1) != (keepdims ? 1 : 0))
      continue;
    std::string reduced = outputOf(*reduce, 0);
    const onnx::NodeProto *any = nullptr;
    if (reduce->op_type() == "ReduceMax") {
      any = g.onlyUser(reduced, "Cast");
      if (!castTo(any, {onnx::TensorProto::BOOL}))
        any = nullptr;
      if (!any && bareMax && g.onlyUser(reduced, "NonZero")) {
        nodes.append({toInt, reduce});
        return reduced;
      }
    } else {
      any = g.onlyUser(reduced, "Greater");
      std::optional<llvm::SmallVector<int64_t>> zero = any ? constants(inputOf(*any, 1)) : std::nullopt;
      if (any && (inputOf(*any, 0) != reduced || !zero || zero->size() != 1 || (*zero)[0] != 0))
        any = nullptr;
    }
    if (!any)
      continue;
    nodes.append({toInt, reduce, any});
    return outputOf(*any, 0);
  }
  return "";
}

std::optional<float> scalarFloat(const ConstantLookup &constants, llvm::StringRef value) {
  std::optional<std::vector<float>> v = constants.floats && !value.empty() ? constants.floats(value) : std::nullopt;
  return v && v->size() == 1 ? std::optional<float>((*v)[0]) : std::nullopt;
}

static bool isFloatCast(const onnx::NodeProto &n) {
  if (n.op_type() != "Cast")
    return false;
  int64_t to = intAttr(n, "to", 0);
  return to == onnx::TensorProto::FLOAT || to == onnx::TensorProto::FLOAT16 || to == onnx::TensorProto::BFLOAT16;
}

std::string throughFloatCastUser(const GraphIndex &g, llvm::StringRef value,
                                 llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *cast = g.onlyUser(value, "Cast");
  if (!cast || !isFloatCast(*cast))
    return value.str();
  nodes.push_back(cast);
  return outputOf(*cast, 0);
}

const onnx::NodeProto *sumReading(const GraphIndex &g, llvm::StringRef value, bool onlyUser, std::string &result,
                                   llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  auto user = [&](llvm::StringRef v, llvm::StringRef type) {
    return onlyUser ? g.onlyUser(v, type) : g.userOfType(v, type);
  };
  if (const onnx::NodeProto *sum = user(value, "ReduceSum")) {
    nodes.push_back(sum);
    result = outputOf(*sum, 0);
    return sum;
  }
  const onnx::NodeProto *widen = user(value, "Cast");
  if (!widen || intAttr(*widen, "to", 0) != onnx::TensorProto::FLOAT)
    return nullptr;
  const onnx::NodeProto *sum = g.onlyUser(outputOf(*widen, 0), "ReduceSum");
  const onnx::NodeProto *narrow = sum ? g.onlyUser(outputOf(*sum, 0), "Cast") : nullptr;
  int64_t to = narrow ? intAttr(*narrow, "to", 0) : 0;
  if (to != onnx::TensorProto::FLOAT16 && to != onnx::TensorProto::BFLOAT16)
    return nullptr;
  nodes.append({widen, sum, narrow});
  result = outputOf(*narrow, 0);
  return sum;
}

std::string throughFloatCastProducer(const GraphIndex &g, llvm::StringRef value,
                                     llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *cast = g.producer(value);
  if (!cast || !isFloatCast(*cast))
    return value.str();
  nodes.push_back(cast);
  return inputOf(*cast, 0);
}

int64_t intAttr(const onnx::NodeProto &node, llvm::StringRef name, int64_t fallback) {
  for (const onnx::AttributeProto &a : node.attribute())
    if (a.name() == name)
      return a.i();
  return fallback;
}

llvm::SmallVector<int64_t> intsAttr(const onnx::NodeProto &node, llvm::StringRef name) {
  for (const onnx::AttributeProto &a : node.attribute())
    if (a.name() == name)
      return llvm::SmallVector<int64_t>(a.ints().begin(), a.ints().end());
  return {};
}

/// A single-axis op (Squeeze/Unsqueeze/ReduceSum) on axis `axis`, given as
/// a constant input or attribute.
std::optional<llvm::SmallVector<int64_t>> axesOf(const onnx::NodeProto &node, const ConstantLookup &constants) {
  if (node.input_size() > 1)
    return constants(inputOf(node, 1));
  for (const onnx::AttributeProto &a : node.attribute())
    if (a.name() == "axes")
      return llvm::SmallVector<int64_t>(a.ints().begin(), a.ints().end());
  return std::nullopt;
}

bool hasAxis(const onnx::NodeProto &node, const ConstantLookup &constants, int64_t axis) {
  std::optional<llvm::SmallVector<int64_t>> axes = axesOf(node, constants);
  if (!axes || axes->size() != 1)
    return false;
  // Compared by meaning where the rank is known (TorchScript writes
  // Unsqueeze(w, 2) where the dynamo exporter writes Unsqueeze(w, -1)).
  int64_t rank = constants.rank ? constants.rank(inputOf(node, 0)) : -1;
  if (rank >= 0 && node.op_type() == "Unsqueeze")
    rank += 1;
  auto fromFront = [&](int64_t a) { return rank >= 0 && a < 0 ? a + rank : a; };
  return fromFront((*axes)[0]) == fromFront(axis);
}

float floatAttr(const onnx::NodeProto &node, llvm::StringRef name, float fallback) {
  for (const onnx::AttributeProto &a : node.attribute())
    if (a.name() == name)
      return a.f();
  return fallback;
}

std::string stringAttr(const onnx::NodeProto &node, llvm::StringRef name, llvm::StringRef fallback) {
  for (const onnx::AttributeProto &a : node.attribute())
    if (a.name() == name)
      return a.s();
  return fallback.str();
}

/// The constant weight of the linear map computing `value` from the block's
/// x (from anything when `ofX` is null): MatMul(x, W), or Gemm(x, W)
/// without scaling or transA (transB = 1: W as rows), and without C unless
/// `bias` is given (then Gemm's C with beta = 1 goes there). Empty if
/// neither.
static LinearWeight linearOf(const GraphIndex &g, llvm::StringRef value, const MoeBlock *ofX,
                             llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string *bias) {
  const onnx::NodeProto *mm = g.producer(value);
  bool withC = bias && mm && mm->op_type() == "Gemm" && mm->input_size() == 3 && !inputOf(*mm, 2).empty();
  if (!mm || (mm->input_size() != 2 && !withC) || (ofX && !ofX->isX(inputOf(*mm, 0))) ||
      !g.isConstant(inputOf(*mm, 1)))
    return {};
  bool rows = false;
  if (mm->op_type() == "Gemm") {
    if (intAttr(*mm, "transA", 0) != 0 || floatAttr(*mm, "alpha", 1.0f) != 1.0f ||
        (withC && floatAttr(*mm, "beta", 1.0f) != 1.0f))
      return {};
    rows = intAttr(*mm, "transB", 0) != 0;
  } else if (mm->op_type() != "MatMul") {
    return {};
  }
  nodes.push_back(mm);
  if (withC)
    *bias = inputOf(*mm, 2);
  return {inputOf(*mm, 1), rows};
}

LinearWeight linearOf(const GraphIndex &g, llvm::StringRef value, const MoeBlock *ofX,
                      llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  return linearOf(g, value, ofX, nodes, /*bias=*/nullptr);
}

/// Whether `bias` is a constant of `outputs` values along the last dim ([N],
/// [1, N], ...).
static bool isOutputBias(const ConstantLookup &constants, llvm::StringRef bias, int64_t outputs) {
  std::optional<llvm::SmallVector<int64_t>> shape = constants.shape ? constants.shape(bias) : std::nullopt;
  if (!shape || shape->empty() || shape->back() != outputs)
    return false;
  return llvm::all_of(llvm::ArrayRef<int64_t>(*shape).drop_back(), [](int64_t d) { return d == 1; });
}

std::string unscaledLogits(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef logits,
                           double &scale, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  scale = 1;
  const onnx::NodeProto *scaled = g.producer(logits);
  if (!scaled || (scaled->op_type() != "Div" && scaled->op_type() != "Mul") || g.users(logits).size() != 1)
    return logits.str();
  bool divides = scaled->op_type() == "Div";
  int scaleInput = divides || !scalarFloat(constants, inputOf(*scaled, 0)) ? 1 : 0;
  std::optional<float> c = scalarFloat(constants, inputOf(*scaled, scaleInput));
  if (!c || !std::isfinite(*c) || *c == 0)
    return logits.str();
  scale = divides ? 1.0 / double(*c) : double(*c);
  nodes.push_back(scaled);
  return throughFloatCastProducer(g, inputOf(*scaled, 1 - scaleInput), nodes);
}

LinearWeight biasedLinearOf(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value,
                            llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &bias) {
  bias.clear();
  auto outputsOf = [&](const LinearWeight &w) -> int64_t {
    std::optional<llvm::SmallVector<int64_t>> shape = constants.shape ? constants.shape(w.name) : std::nullopt;
    return shape && shape->size() == 2 ? (*shape)[w.rows ? 0 : 1] : -1;
  };
  const onnx::NodeProto *node = g.producer(value);
  if (node && node->op_type() == "Add") {
    for (int side = 0; side < 2; ++side) {
      llvm::SmallVector<const onnx::NodeProto *> found;
      LinearWeight w = linearOf(g, inputOf(*node, side), nullptr, found);
      if (w.empty() || g.users(inputOf(*node, side)).size() != 1 ||
          !isOutputBias(constants, inputOf(*node, 1 - side), outputsOf(w)))
        continue;
      nodes.append(found.begin(), found.end());
      nodes.push_back(node);
      bias = inputOf(*node, 1 - side);
      return w;
    }
  }
  // Gemm's C.
  llvm::SmallVector<const onnx::NodeProto *> found;
  LinearWeight w = linearOf(g, value, nullptr, found, &bias);
  if (!bias.empty() && !isOutputBias(constants, bias, outputsOf(w))) {
    bias.clear();
    return {};
  }
  nodes.append(found.begin(), found.end());
  return w;
}

/// The block's output plus a shared expert:
///   Add(y, Mul(Sigmoid(x Wg), (silu(x Wgate) * (x Wup)) Wdown))  (Qwen2-MoE)
///   Add(y, (silu(x Wgate) * (x Wup)) Wdown)                      (DeepSeek-V3)
/// where y may first be viewed back to the shape of the tensor x is a view
/// of (`y.view(*orig_shape) + shared(hidden_states)`); the shared expert
/// then reads that tensor. Extends `block` and `nodes` when it matches and
/// the routed experts are SwiGLU too; leaves them otherwise (the shared
/// expert then stays plain ops, still correct).
void matchSharedExpert(const GraphIndex &g, MoeBlock &block, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  // The layer's shared expert has the routed experts' activation: a
  // SwiGLU one joins SwiGLU experts only.
  if (block.ungated || block.activation != GateActivation::silu)
    return;
  llvm::SmallVector<const onnx::NodeProto *> found;
  std::string routed = block.output, tokens;
  if (const onnx::NodeProto *view = g.onlyUser(block.output, "Reshape")) {
    const onnx::NodeProto *xView = g.producer(block.x);
    if (!xView || xView->op_type() != "Reshape" || g.graphOutputs.contains(block.output))
      return;
    tokens = inputOf(*xView, 0);
    found.push_back(view);
    routed = outputOf(*view, 0);
  }
  const onnx::NodeProto *add = g.onlyUser(routed, "Add");
  if (!add || g.graphOutputs.contains(routed))
    return;
  found.push_back(add);
  std::string other = inputOf(*add, 0) == routed ? inputOf(*add, 1) : inputOf(*add, 0);
  if (other == routed || g.users(other).size() != 1)
    return;
  // The projections read x, or the tensor x is a view of when y is viewed.
  auto ofTokens = [&](llvm::StringRef value, llvm::SmallVector<const onnx::NodeProto *> &into) -> LinearWeight {
    llvm::SmallVector<const onnx::NodeProto *> linear;
    LinearWeight w = linearOf(g, value, nullptr, linear);
    if (w.empty() || !(block.isX(inputOf(*linear.back(), 0)) || (!tokens.empty() && inputOf(*linear.back(), 0) == tokens)))
      return {};
    into.append(linear.begin(), linear.end());
    return w;
  };
  // Gated: one factor of a Mul is the sigmoid gate, the other the expert's
  // output. Ungated: `other` is the expert's output.
  LinearWeight gate, down;
  const onnx::NodeProto *weighted = g.producer(other);
  if (weighted && weighted->op_type() == "Mul") {
    for (int side = 0; side < 2 && gate.empty(); ++side) {
      const onnx::NodeProto *sigmoid = g.producer(inputOf(*weighted, side));
      if (!sigmoid || sigmoid->op_type() != "Sigmoid" || g.users(inputOf(*weighted, 1 - side)).size() != 1)
        continue;
      llvm::SmallVector<const onnx::NodeProto *> gateNodes = {weighted, sigmoid};
      LinearWeight w = ofTokens(inputOf(*sigmoid, 0), gateNodes);
      LinearWeight out = linearOf(g, inputOf(*weighted, 1 - side), nullptr, gateNodes);
      if (w.empty() || out.empty())
        continue;
      gate = w;
      down = out;
      found.append(gateNodes.begin(), gateNodes.end());
    }
  } else {
    down = linearOf(g, other, nullptr, found);
  }
  if (down.empty())
    return;
  // (silu(x Wgate) * (x Wup)): Mul(Mul(g, Sigmoid(g)), u).
  const onnx::NodeProto *act = g.producer(inputOf(*found.back(), 0));
  if (!act || act->op_type() != "Mul" || g.users(outputOf(*act, 0)).size() != 1)
    return;
  found.push_back(act);
  for (int side = 0; side < 2; ++side) {
    const onnx::NodeProto *silu = g.producer(inputOf(*act, side));
    if (!silu || silu->op_type() != "Mul")
      continue;
    const onnx::NodeProto *sig = nullptr;
    std::string pre;
    for (int j = 0; j < 2 && !sig; ++j) {
      const onnx::NodeProto *s = g.producer(inputOf(*silu, j));
      if (s && s->op_type() == "Sigmoid" && inputOf(*s, 0) == inputOf(*silu, 1 - j)) {
        sig = s;
        pre = inputOf(*silu, 1 - j);
      }
    }
    if (!sig || g.users(pre).size() != 2)
      continue;
    llvm::SmallVector<const onnx::NodeProto *> expertNodes = {silu, sig};
    LinearWeight gateProj = ofTokens(pre, expertNodes);
    LinearWeight upProj = ofTokens(inputOf(*act, 1 - side), expertNodes);
    if (gateProj.empty() || upProj.empty())
      continue;
    found.append(expertNodes.begin(), expertNodes.end());
    nodes.append(found.begin(), found.end());
    block.sharedGateProj = gateProj;
    block.sharedUpProj = upProj;
    block.sharedDownProj = down;
    block.sharedGate = gate;
    if (!tokens.empty()) {
      block.routedOutput = block.output;
      block.outputView = g.indexOf(found.front());
      block.sharedTokens = tokens;
    }
    block.output = outputOf(*add, 0);
    block.last = g.indexOf(add);
    return;
  }
}

/// The gated activation act(gate) * up: SwiGLU, Mul(Mul(g, Sigmoid(g)), u),
/// or GeGLU, Mul(Gelu(g), u) with the exact (erf) Gelu; either operand
/// order. Returns the product node and sets `kind`; adds the nodes.
const onnx::NodeProto *matchGatedActivation(const GraphIndex &g, llvm::StringRef gate, llvm::StringRef up,
                                            GateActivation &kind,
                                            llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  auto other = [](const onnx::NodeProto &n, llvm::StringRef value) {
    return inputOf(n, 0) == value ? inputOf(n, 1) : inputOf(n, 0);
  };
  const onnx::NodeProto *activated = nullptr;
  llvm::SmallVector<const onnx::NodeProto *> found;
  if (const onnx::NodeProto *gelu = g.onlyUser(gate, "Gelu")) {
    bool exact = llvm::none_of(gelu->attribute(), [](const onnx::AttributeProto &a) {
      return a.name() == "approximate" && a.s() != "none";
    });
    if (!exact)
      return nullptr;
    activated = gelu;
    found = {gelu};
    kind = GateActivation::gelu;
  } else {
    const onnx::NodeProto *sigmoid = g.userOfType(gate, "Sigmoid");
    const onnx::NodeProto *mul = g.userOfType(gate, "Mul");
    if (!sigmoid || !mul || g.users(gate).size() != 2 || other(*mul, gate) != outputOf(*sigmoid, 0))
      return nullptr;
    activated = mul;
    found = {sigmoid, mul};
    kind = GateActivation::silu;
  }
  const onnx::NodeProto *product = g.onlyUser(outputOf(*activated, 0), "Mul");
  if (!product || other(*product, outputOf(*activated, 0)) != up || g.users(up).size() != 1)
    return nullptr;
  found.push_back(product);
  nodes.append(found.begin(), found.end());
  return product;
}

/// Adds to `block` the nodes whose results only it reads (the Shape of the
/// ids, Concat of sizes: nothing else needs them once it is replaced), then
/// checks that nothing but its output leaves it.
std::optional<MoeBlock> finishBlock(const GraphIndex &g, MoeBlock block,
                                    llvm::ArrayRef<const onnx::NodeProto *> nodes, int topk, std::string &why) {
  auto fail = [&](const std::string &reason) -> std::optional<MoeBlock> {
    why = reason;
    return std::nullopt;
  };
  for (const onnx::NodeProto *n : nodes)
    block.nodes.insert(g.indexOf(n));
  // The layer's operands stay outside, even where only the block reads them.
  llvm::StringSet<> operands = {block.x,
                                block.gateUp,
                                block.down,
                                block.routerWeight.name,
                                block.sharedGateProj.name,
                                block.sharedUpProj.name,
                                block.sharedDownProj.name,
                                block.sharedGate.name};
  if (block.gptOss)
    for (const std::string *name : {&block.gptOss->logits, &block.gptOss->upBias, &block.gptOss->downBias})
      operands.insert(*name);
  if (block.deepSeek)
    operands.insert(block.deepSeek->selectionBias);
  if (!block.sparseMixerLogits.empty())
    operands.insert(block.sparseMixerLogits);
  if (block.outputView >= 0) {
    operands.insert(block.sharedTokens);
    for (const std::string &in : g.graph.node(block.outputView).input())
      if (in != block.routedOutput)
        operands.insert(in);
  }
  for (const std::vector<std::string> *names : {&block.expertGate, &block.expertUp, &block.expertDown})
    for (const std::string &name : *names)
      operands.insert(name);
  for (bool grew = true; grew;) {
    grew = false;
    for (int i = 0; i < g.graph.node_size(); ++i) {
      const onnx::NodeProto &n = g.graph.node(i);
      if (block.nodes.contains(i) || n.output_size() == 0)
        continue;
      bool servesBlock = llvm::all_of(n.output(), [&](const std::string &out) {
        return !g.graphOutputs.contains(out) && !operands.contains(out) && !g.users(out).empty() &&
               llvm::all_of(g.users(out), [&](int u) { return block.nodes.contains(u); });
      });
      if (servesBlock) {
        block.nodes.insert(i);
        grew = true;
      }
    }
  }
  // Values of the block read outside it (the router's scores returned as a
  // second output, as transformers' blocks do): the nodes computing them,
  // and what they read inside the block, stay as plain ops next to the
  // layer, which computes the block's output from its operands alone.
  llvm::SmallVector<int> kept;
  for (int i : block.nodes)
    for (const std::string &out : g.graph.node(i).output())
      if (out != block.output &&
          (g.graphOutputs.contains(out) ||
           llvm::any_of(g.users(out), [&](int u) { return !block.nodes.contains(u); })))
        kept.push_back(i);
  llvm::DenseSet<int> keptSet;
  while (!kept.empty()) {
    int i = kept.pop_back_val();
    if (!block.nodes.contains(i) || !keptSet.insert(i).second)
      continue;
    if (i == block.last)
      return fail("the block's last node '" + g.describe(i) + "' has another output read outside it");
    for (const std::string &in : g.graph.node(i).input())
      if (const onnx::NodeProto *p = in.empty() ? nullptr : g.producer(in))
        kept.push_back(g.indexOf(p));
  }
  for (int i : keptSet)
    block.nodes.erase(i);
  for (int i : block.nodes)
    if (i > block.last)
      return fail("a node of the block comes after its result");
  block.anchor = topk;
  return block;
}

std::optional<SlotOperands> matchSlotOperands(const GraphIndex &g, const ConstantLookup &constants,
                                              llvm::StringRef w, llvm::StringRef expertIds,
                                              llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  const onnx::NodeProto *flatW = g.onlyUser(w, "Reshape");
  const onnx::NodeProto *unsqW = flatW ? g.onlyUser(outputOf(*flatW, 0), "Unsqueeze") : nullptr;
  if (!flatW || !unsqW || !hasAxis(*unsqW, constants, -1)) {
    why = "the gate weights do not feed a per-slot scale";
    return std::nullopt;
  }
  const onnx::NodeProto *flatIds = g.userOfType(expertIds, "Reshape");
  if (!flatIds) {
    why = "the expert ids are not flattened per slot";
    return std::nullopt;
  }
  nodes.append({flatW, unsqW, flatIds});
  SlotOperands slots{unsqW, g.onlyUser(outputOf(*flatIds, 0), "Clip"), outputOf(*flatIds, 0)};
  if (slots.clip) {
    nodes.push_back(slots.clip);
    slots.ids = outputOf(*slots.clip, 0);
  }
  return slots;
}

/// True unless `clip` (on the expert ids) narrows them below [0, E), E the
/// experts of `weights`: then it is not the no-op transformers writes.
bool clipKeepsExperts(const ConstantLookup &constants, const onnx::NodeProto *clip, llvm::StringRef weights) {
  if (!clip)
    return true;
  std::optional<llvm::SmallVector<int64_t>> shape = constants.shape(weights);
  std::optional<llvm::SmallVector<int64_t>> lo = clip->input_size() > 1 ? constants(inputOf(*clip, 1)) : std::nullopt;
  std::optional<llvm::SmallVector<int64_t>> hi = clip->input_size() > 2 ? constants(inputOf(*clip, 2)) : std::nullopt;
  return shape && !shape->empty() && lo && lo->size() == 1 && (*lo)[0] <= 0 && hi && hi->size() == 1 &&
         (*hi)[0] >= (*shape)[0] - 1;
}

} // namespace mlir::moe::onnx_import::blocks
