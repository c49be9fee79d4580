//===- DenseMixtureBlocks.cpp - every expert on every token, gate-weighted -===//
//
// MoE modules written by hand (not transformers') often compute every
// expert on every token and weight the results by the routing gate, which
// is zero off each token's top-k:
//
//   w, ids = routing (matchRouting)
//   c_e    = ReduceSum(w * Cast(Equal(ids, e)), -1, keepdims)     (or Where(Equal(ids, e), w, 0))
//   y      = sum_e c_e * FFN_e(x)                                  (an Add chain, any order)
//
// or with the gate scattered densely and the outputs stacked:
//
//   G = ScatterElements(zeros [T, E], ids, w, axis 1)
//   y = ReduceSum(Unsqueeze(G, -1) * Concat_e(Unsqueeze(FFN_e(x), 1), axis 1), 1)
//       (or stacked last, ReduceSum(Unsqueeze(G, 1) * Concat_e(Unsqueeze(FFN_e(x), 2), axis 2), 2),
//       or Squeeze(MatMul(Unsqueeze(G, 1), Concat_e(...)), 1): torch.bmm with G as a row)
//
// or with every output stacked and each token's k picked by its ids:
//
//   S = Concat_e(Unsqueeze(FFN_e(x), 1), axis 1)
//   y = ReduceSum(GatherElements(S, Expand(Unsqueeze(ids, -1), [T, k, H]), axis 1)
//                 * Unsqueeze(w, -1), 1)
//
// or with the gate over every expert's outputs from batched matmuls on
// stacked weights (torch.bmm of x.expand(E, T, H)):
//
//   y = Einsum("te,eth->th", G, MatMul(act(MatMul(xs, Wg)) * MatMul(xs, Wu), Wd))
//
// with FFN_e(x) an FFN on the expert's own constant weights
// (matchOwnExpertFfn: gated or plain, with or without biases). Both are one moe.layer, which computes only the selected experts.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"

#include "llvm/ADT/StringSet.h"

#include <map>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace mlir::moe::onnx_import::blocks {

namespace {

/// The gate column of one expert, ReduceSum(w * Cast(Equal(ids, e)), [-1],
/// keepdims) or with Where(Equal(ids, e), w, 0), for a 16-bit w maybe
/// summed in f32 between Casts; with one slot (k = 1) the sum may be left
/// out. Returns e.
std::optional<int64_t> gateColumn(const GraphIndex &g, const ConstantLookup &constants, const onnx::NodeProto &equal,
                                  llvm::StringRef ids, llvm::StringRef w, int64_t k, std::string &column,
                                  llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  std::string e = inputOf(equal, 0) == ids ? inputOf(equal, 1) : inputOf(equal, 0);
  std::optional<llvm::SmallVector<int64_t>> expert = constants(e);
  if (!expert || expert->size() != 1)
    return std::nullopt;
  llvm::SmallVector<const onnx::NodeProto *> found = {&equal};
  std::string mask = outputOf(equal, 0);
  const onnx::NodeProto *masked = nullptr;
  // w * Cast(mask): the mask may also be cast for other uses (the expert's
  // row mask, rowMask).
  for (int u : g.users(mask)) {
    const onnx::NodeProto &cast = g.graph.node(u);
    const onnx::NodeProto *mul = cast.op_type() == "Cast" ? g.onlyUser(outputOf(cast, 0), "Mul") : nullptr;
    std::string other = mul ? (inputOf(*mul, 0) == outputOf(cast, 0) ? inputOf(*mul, 1) : inputOf(*mul, 0)) : "";
    if (mul && other == w) {
      found.append({&cast, mul});
      masked = mul;
      break;
    }
  }
  const onnx::NodeProto *where = masked ? nullptr : g.onlyUser(mask, "Where");
  if (where && where->input_size() == 3 && inputOf(*where, 0) == mask && inputOf(*where, 1) == w) {
    // The zeros: a zero constant (a scalar, or zeros_like(w) exported with
    // static sizes), ConstantOfShape(Shape(w)) (TorchScript's zeros_like) or
    // Expand(0, Shape(w)) (dynamo's).
    llvm::SmallVector<const onnx::NodeProto *> zeros;
    if (isZerosLike(g, constants, inputOf(*where, 2), w, zeros)) {
      found.push_back(where);
      found.append(zeros.begin(), zeros.end());
      masked = where;
    }
  }
  // A 16-bit w summed in f32 and cast back (PyTorch's sum) is exact: the
  // slots hold distinct experts, so at most one term is nonzero.
  llvm::SmallVector<const onnx::NodeProto *> summed;
  const onnx::NodeProto *sum = masked ? sumReading(g, outputOf(*masked, 0), /*onlyUser=*/true, column, summed) : nullptr;
  if (masked && !sum && k == 1) {
    nodes.append(found.begin(), found.end());
    column = outputOf(*masked, 0);
    return (*expert)[0];
  }
  std::optional<llvm::SmallVector<int64_t>> axes = sum ? axesOf(*sum, constants) : std::nullopt;
  if (!sum || !axes || axes->size() != 1 || ((*axes)[0] != -1 && (*axes)[0] != 1) || intAttr(*sum, "keepdims", 1) != 1)
    return std::nullopt;
  nodes.append(found.begin(), found.end());
  nodes.append(summed.begin(), summed.end());
  return (*expert)[0];
}

/// The rows expert e is routed to as a float column, any(ids == e, -1,
/// keepdims) from `equal`'s mask: Cast(Cast(ReduceMax(Cast(mask, int)),
/// bool)) (dynamo) or Cast(Greater(ReduceSum(Cast(mask, int)), 0))
/// (TorchScript). Its value, or "" (the nodes join `nodes`).
std::string rowMask(const GraphIndex &g, const ConstantLookup &constants, const onnx::NodeProto &equal,
                    llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  llvm::SmallVector<const onnx::NodeProto *> chain;
  std::string any = anyOverSlots(g, constants, outputOf(equal, 0), /*keepdims=*/true, /*bareMax=*/false, chain);
  const onnx::NodeProto *toFloat = any.empty() ? nullptr : g.onlyUser(any, "Cast");
  int64_t to = toFloat ? intAttr(*toFloat, "to", 0) : 0;
  if (to != onnx::TensorProto::FLOAT && to != onnx::TensorProto::FLOAT16 && to != onnx::TensorProto::BFLOAT16)
    return "";
  nodes.append(chain.begin(), chain.end());
  nodes.push_back(toFloat);
  return outputOf(*toFloat, 0);
}

/// The leaves of the Add tree whose root is `root` (Adds read only inside
/// the tree); the Adds themselves go to `adds`.
void addLeaves(const GraphIndex &g, llvm::StringRef root, llvm::SmallVectorImpl<std::string> &leaves,
               llvm::SmallVectorImpl<const onnx::NodeProto *> &adds) {
  const onnx::NodeProto *add = g.producer(root);
  if (!add || add->op_type() != "Add" || (!adds.empty() && g.users(root).size() != 1)) {
    leaves.push_back(root.str());
    return;
  }
  adds.push_back(add);
  addLeaves(g, inputOf(*add, 0), leaves, adds);
  addLeaves(g, inputOf(*add, 1), leaves, adds);
}

/// An all-zero tensor: a zero constant, ConstantOfShape with a zero fill,
/// or Expand of a zero constant (zeros_like through the exporters).
bool isZeros(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value,
             llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  if (isZeroConstant(constants, value))
    return true;
  const onnx::NodeProto *n = g.producer(value);
  if (n && n->op_type() == "ConstantOfShape" && llvm::all_of(n->attribute(), isZeroValue)) {
    nodes.push_back(n);
    return true;
  }
  if (n && n->op_type() == "Expand" && isZeroConstant(constants, inputOf(*n, 0))) {
    nodes.push_back(n);
    return true;
  }
  return false;
}

/// "te,teh->th" with any letters (spaces allowed): per row t, the gate's
/// weights over e times the stacked outputs, summed over e; with
/// `expertFirst`, "te,eth->th" (outputs [E, T, H] of a batched matmul).
bool isGateCombineEquation(std::string equation, bool expertFirst = false) {
  llvm::erase_if(equation, [](char c) { return c == ' '; });
  if (equation.size() != 10 || equation[2] != ',' || equation.substr(6, 2) != "->")
    return false;
  char t = equation[0], e = equation[1], h = equation[5];
  char first = expertFirst ? e : t, second = expertFirst ? t : e;
  return t != e && h != t && h != e && equation[3] == first && equation[4] == second && equation[8] == t &&
         equation[9] == h;
}

/// The experts' outputs stacked on axis `axis` (1: [T, E, H], 2: [T, H,
/// E]), Concat_e(Unsqueeze(FFN_e(x), axis)), one per expert in expert
/// order: fills `ffns`.
bool stackedExperts(const GraphIndex &g, const ConstantLookup &constants, llvm::function_ref<bool(llvm::StringRef)> isX,
                    llvm::StringRef stack, int64_t experts, std::map<int64_t, OwnExpertFfn> &ffns,
                    llvm::SmallVector<const onnx::NodeProto *> &found, std::string &why, int64_t axis = 1) {
  const onnx::NodeProto *concat = g.producer(stack);
  if (!concat || concat->op_type() != "Concat" || intAttr(*concat, "axis", 0) != axis ||
      concat->input_size() != experts) {
    why = "the experts' outputs are not stacked one per expert on axis " + std::to_string(axis);
    return false;
  }
  found.push_back(concat);
  for (int64_t e = 0; e < experts; ++e) {
    const onnx::NodeProto *one = g.producer(inputOf(*concat, e));
    std::optional<OwnExpertFfn> ffn = one && one->op_type() == "Unsqueeze" && hasAxis(*one, constants, axis)
                                          ? matchOwnExpertFfn(g, constants, inputOf(*one, 0), isX, found)
                                          : std::nullopt;
    if (!ffn) {
      why = "expert " + std::to_string(e) + "'s stacked output is not a gated FFN of x on its own constant weights";
      return false;
    }
    found.push_back(one);
    ffns[e] = *ffn;
  }
  return true;
}

/// A stack of expert matrices as a batched MatMul reads it: a constant
/// [E, in, out], or Transpose(C, [0, 2, 1]) of a constant [E, out, in]
/// (rows: nn.Linear's layout). Sets `stack`, `rows`; `in`/`out` checked.
bool batchedStack(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef operand, int64_t experts,
                  int64_t in, int64_t out, std::string &stack, bool &rows,
                  llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  auto shaped = [&](llvm::StringRef name, int64_t a, int64_t b) {
    std::optional<llvm::SmallVector<int64_t>> shape = constants.shape(name);
    return shape && shape->size() == 3 && (*shape)[0] == experts && (*shape)[1] == a && (*shape)[2] == b;
  };
  if (shaped(operand, in, out)) {
    stack = operand.str();
    rows = false;
    return true;
  }
  const onnx::NodeProto *t = g.producer(operand);
  if (t && t->op_type() == "Transpose" && intsAttr(*t, "perm") == llvm::SmallVector<int64_t>{0, 2, 1} &&
      shaped(inputOf(*t, 0), out, in)) {
    nodes.push_back(t);
    stack = inputOf(*t, 0);
    rows = true;
    return true;
  }
  return false;
}

/// Every expert on every token by batched matmuls over the experts
/// (torch.bmm of x.expand(E, T, H) with stacked weights):
///   xs = Expand(Unsqueeze(x, 0), [E, ., .])
///   o  = MatMul(act(MatMul(xs, Wg)) * MatMul(xs, Wu), Wd)          [E, T, H]
/// Sets the block's stacks and activation.
bool batchedExperts(const GraphIndex &g, const ConstantLookup &constants, MoeBlock &block, llvm::StringRef outputs,
                    int64_t experts, int64_t hidden, llvm::SmallVector<const onnx::NodeProto *> &nodes,
                    std::string &why) {
  auto fail = [&](const char *reason) {
    why = reason;
    return false;
  };
  const onnx::NodeProto *down = g.producer(outputs);
  if (!down || down->op_type() != "MatMul")
    return fail("the experts' outputs [E, T, H] are not a batched down projection");
  // xs: x once per expert.
  const onnx::NodeProto *spread = nullptr;
  for (int u : g.users(block.x)) {
    const onnx::NodeProto &unsq = g.graph.node(u);
    const onnx::NodeProto *expand =
        unsq.op_type() == "Unsqueeze" && hasAxis(unsq, constants, 0) ? g.onlyUser(outputOf(unsq, 0), "Expand") : nullptr;
    std::optional<llvm::SmallVector<int64_t>> shape = expand ? constants(inputOf(*expand, 1)) : std::nullopt;
    if (shape && shape->size() == 3 && (*shape)[0] == experts && ((*shape)[2] == 1 || (*shape)[2] == hidden)) {
      nodes.push_back(&unsq);
      spread = expand;
    }
  }
  if (!spread)
    return fail("x is not expanded over the experts for batched matmuls");
  llvm::SmallVector<const onnx::NodeProto *> projections;
  for (int u : g.users(outputOf(*spread, 0)))
    if (g.graph.node(u).op_type() == "MatMul" && inputOf(g.graph.node(u), 0) == outputOf(*spread, 0))
      projections.push_back(&g.graph.node(u));
  if (projections.size() != 2)
    return fail("x expanded over the experts feeds other than a gate and an up projection");
  llvm::SmallVector<const onnx::NodeProto *> found = {spread, down};
  GateActivation kind = GateActivation::silu;
  const onnx::NodeProto *gate = nullptr, *up = nullptr, *product = nullptr;
  for (int side = 0; side < 2 && !product; ++side) {
    llvm::SmallVector<const onnx::NodeProto *> act;
    product = matchGatedActivation(g, outputOf(*projections[side], 0), outputOf(*projections[1 - side], 0), kind, act);
    if (product) {
      gate = projections[side];
      up = projections[1 - side];
      found.append(act.begin(), act.end());
    }
  }
  if (!product || outputOf(*product, 0) != inputOf(*down, 0))
    return fail("the batched experts' activation is not SwiGLU or GeGLU (act(gate) * up) feeding the down projection");
  std::string gateStack, upStack, downStack;
  bool gateRows = false, upRows = false, downRows = false;
  // The FFN width from the gate stack, either layout.
  std::optional<llvm::SmallVector<int64_t>> gateShape = constants.shape(inputOf(*gate, 1));
  const onnx::NodeProto *gateT = g.producer(inputOf(*gate, 1));
  if (!gateShape && gateT && gateT->op_type() == "Transpose")
    gateShape = constants.shape(inputOf(*gateT, 0));
  if (!gateShape || gateShape->size() != 3)
    return fail("the batched experts' gate weights are not a constant stack [E, ., .]");
  int64_t ffn = (*gateShape)[1] == hidden ? (*gateShape)[2] : (*gateShape)[1];
  if (!batchedStack(g, constants, inputOf(*gate, 1), experts, hidden, ffn, gateStack, gateRows, found) ||
      !batchedStack(g, constants, inputOf(*up, 1), experts, hidden, ffn, upStack, upRows, found) ||
      !batchedStack(g, constants, inputOf(*down, 1), experts, ffn, hidden, downStack, downRows, found))
    return fail("the batched experts' weights are not constant stacks [E, in, out] (or their [0, 2, 1] transposes)");
  if (gateRows != upRows || gateRows != downRows)
    return fail("the gate, up and down stacks are laid out differently");
  found.push_back(gate);
  found.push_back(up);
  nodes.append(found.begin(), found.end());
  block.gateStack = gateStack;
  block.upStack = upStack;
  block.downStack = downStack;
  block.expertRows = gateRows;
  block.activation = kind;
  return true;
}

/// The MatMul of Unsqueeze(gate, 1) [T, 1, E] by the stacked outputs,
/// squeezed on axis 1 (torch.bmm of the gate as a row); or null.
const onnx::NodeProto *gateRowTimesStack(const GraphIndex &g, const ConstantLookup &constants,
                                         const onnx::NodeProto &scatter) {
  const onnx::NodeProto *unsq = g.onlyUser(outputOf(scatter, 0), "Unsqueeze");
  const onnx::NodeProto *bmm =
      unsq && hasAxis(*unsq, constants, 1) ? g.onlyUser(outputOf(*unsq, 0), "MatMul") : nullptr;
  const onnx::NodeProto *squeeze = bmm && inputOf(*bmm, 0) == outputOf(*unsq, 0)
                                       ? g.onlyUser(outputOf(*bmm, 0), "Squeeze")
                                       : nullptr;
  return squeeze && hasAxis(*squeeze, constants, 1) ? bmm : nullptr;
}

/// The stacked form (see the top of the file) from the gate's
/// ScatterElements: fills the experts' FFNs in expert order and returns the
/// sum over the experts, or "".
std::string stackedMixture(const GraphIndex &g, const ConstantLookup &constants,
                           llvm::function_ref<bool(llvm::StringRef)> isX, const onnx::NodeProto &scatter,
                           int64_t experts, std::map<int64_t, OwnExpertFfn> &ffns, MoeBlock &block, int64_t hidden,
                           bool &batched, llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  // (gate.unsqueeze(-1) * stacked).sum(1), or einsum('te,teh->th', gate, stacked).
  llvm::SmallVector<const onnx::NodeProto *> found;
  std::string stack, sumOut;
  int64_t expertAxis = 1;
  // einsum('te,eth->th', gate, batched experts' outputs [E, T, H]).
  if (const onnx::NodeProto *einsum = g.onlyUser(outputOf(scatter, 0), "Einsum");
      einsum && einsum->input_size() == 2 && inputOf(*einsum, 0) == outputOf(scatter, 0) &&
      isGateCombineEquation(stringAttr(*einsum, "equation", ""), /*expertFirst=*/true)) {
    found.push_back(einsum);
    if (!batchedExperts(g, constants, block, inputOf(*einsum, 1), experts, hidden, found, why))
      return "";
    batched = true;
    nodes.append(found.begin(), found.end());
    return outputOf(*einsum, 0);
  }
  if (const onnx::NodeProto *einsum = g.onlyUser(outputOf(scatter, 0), "Einsum");
      einsum && einsum->input_size() == 2 && inputOf(*einsum, 0) == outputOf(scatter, 0) &&
      isGateCombineEquation(stringAttr(*einsum, "equation", ""))) {
    found.push_back(einsum);
    stack = inputOf(*einsum, 1);
    sumOut = outputOf(*einsum, 0);
  } else if (const onnx::NodeProto *bmm = gateRowTimesStack(g, constants, scatter)) {
    // torch.bmm(gate.unsqueeze(1), stacked).squeeze(1): [T, 1, E] x [T, E, H].
    const onnx::NodeProto *squeeze = g.onlyUser(outputOf(*bmm, 0), "Squeeze");
    found = {g.producer(inputOf(*bmm, 0)), bmm, squeeze};
    stack = inputOf(*bmm, 1);
    sumOut = outputOf(*squeeze, 0);
  } else {
    // The gate [T, E] against outputs stacked [T, E, H] (Unsqueeze(G, -1),
    // summed over 1) or [T, H, E] (Unsqueeze(G, 1), summed over 2).
    const onnx::NodeProto *unsq = g.onlyUser(outputOf(scatter, 0), "Unsqueeze");
    if (unsq && hasAxis(*unsq, constants, 1))
      expertAxis = 2;
    const onnx::NodeProto *mul =
        unsq && (expertAxis == 2 || hasAxis(*unsq, constants, -1) || hasAxis(*unsq, constants, 2))
            ? g.onlyUser(outputOf(*unsq, 0), "Mul")
            : nullptr;
    // 16-bit: maybe summed in f32 between Casts (PyTorch's sum), which the
    // layer's f32 combine rounded once matches up to the products' rounding.
    llvm::SmallVector<const onnx::NodeProto *> summed;
    const onnx::NodeProto *sum = mul ? sumReading(g, outputOf(*mul, 0), /*onlyUser=*/true, sumOut, summed) : nullptr;
    if (!sum || !hasAxis(*sum, constants, expertAxis) || intAttr(*sum, "keepdims", 1) != 0) {
      why = "the scattered gate is not summed with the experts' outputs over the expert axis";
      return "";
    }
    found = {unsq, mul};
    found.append(summed.begin(), summed.end());
    stack = inputOf(*mul, 0) == outputOf(*unsq, 0) ? inputOf(*mul, 1) : inputOf(*mul, 0);
  }
  if (!stackedExperts(g, constants, isX, stack, experts, ffns, found, why, expertAxis))
    return "";
  nodes.append(found.begin(), found.end());
  return sumOut;
}

/// The picked form (see the top of the file) from the ids' Unsqueeze:
/// fills the experts' FFNs and returns the sum over the slots, or "".
std::string pickedMixture(const GraphIndex &g, const ConstantLookup &constants,
                          llvm::function_ref<bool(llvm::StringRef)> isX, const onnx::NodeProto &unsq, llvm::StringRef w,
                          int64_t experts, int64_t hidden, std::map<int64_t, OwnExpertFfn> &ffns,
                          llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  // GatherElements(stack, Expand(Unsqueeze(ids, -1), [T, k, H]), axis 1).
  const onnx::NodeProto *expand = g.onlyUser(outputOf(unsq, 0), "Expand");
  const onnx::NodeProto *pick = expand ? g.onlyUser(outputOf(*expand, 0), "GatherElements") : nullptr;
  std::optional<llvm::SmallVector<int64_t>> shape = expand ? constants(inputOf(*expand, 1)) : std::nullopt;
  if (!pick || inputOf(*pick, 1) != outputOf(*expand, 0) || intAttr(*pick, "axis", 0) != 1 || !shape ||
      shape->size() != 3 || shape->back() != hidden) {
    why = "the ids are not expanded over the hidden size to pick the stacked outputs along the expert axis";
    return "";
  }
  // (picked * w.unsqueeze(-1)).sum(1)
  const onnx::NodeProto *mul = g.onlyUser(outputOf(*pick, 0), "Mul");
  std::string weights = mul ? (inputOf(*mul, 0) == outputOf(*pick, 0) ? inputOf(*mul, 1) : inputOf(*mul, 0)) : "";
  const onnx::NodeProto *wUnsq = mul ? g.producer(weights) : nullptr;
  std::string sumOut;
  llvm::SmallVector<const onnx::NodeProto *> summed;
  const onnx::NodeProto *sum = mul ? sumReading(g, outputOf(*mul, 0), /*onlyUser=*/true, sumOut, summed) : nullptr;
  if (!wUnsq || wUnsq->op_type() != "Unsqueeze" || inputOf(*wUnsq, 0) != w ||
      !(hasAxis(*wUnsq, constants, -1) || hasAxis(*wUnsq, constants, 2)) || !sum || !hasAxis(*sum, constants, 1) ||
      intAttr(*sum, "keepdims", 1) != 0) {
    why = "the picked outputs are not weighted by the top-k weights and summed over the slots";
    return "";
  }
  llvm::SmallVector<const onnx::NodeProto *> found = {&unsq, expand, pick, mul, wUnsq};
  found.append(summed.begin(), summed.end());
  if (!stackedExperts(g, constants, isX, inputOf(*pick, 0), experts, ffns, found, why))
    return "";
  nodes.append(found.begin(), found.end());
  return sumOut;
}

/// The block with the experts' own weights, in expert order, as output
/// `output`.
std::optional<MoeBlock> finishDense(const GraphIndex &g, MoeBlock block, const std::map<int64_t, OwnExpertFfn> &ffns,
                                    llvm::StringRef output, llvm::ArrayRef<const onnx::NodeProto *> nodes, int topk,
                                    std::string &why) {
  if (!setOwnExperts(block, ffns, why))
    return std::nullopt;
  if (!block.expertDownBias.empty() && block.deepSeek) {
    why = "experts with biases under DeepSeek-V3's routing (only softmax top-k routing takes biased experts)";
    return std::nullopt;
  }
  block.output = output.str();
  block.last = g.indexOf(g.producer(output));
  return finishBlock(g, std::move(block), nodes, topk, why);
}

} // namespace

std::optional<MoeBlock> matchDenseMixtureBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                               std::string &why) {
  const onnx::NodeProto &t = g.graph.node(topk);
  MoeBlock block;
  llvm::SmallVector<const onnx::NodeProto *> nodes;
  std::optional<std::string> routed = matchRouting(g, constants, topk, block, nodes, why);
  std::optional<llvm::SmallVector<int64_t>> routerShape =
      routed ? constants.shape(block.routerWeight.name) : std::nullopt;
  if (!routed || !routerShape || routerShape->size() != 2)
    return std::nullopt;
  int64_t experts = (*routerShape)[block.routerWeight.rows ? 0 : 1];
  int64_t hidden = (*routerShape)[block.routerWeight.rows ? 1 : 0];
  std::string w = *routed, ids = outputOf(t, 1);
  auto isX = [&](llvm::StringRef v) { return block.isX(v); };
  auto fail = [&](const std::string &reason) -> std::optional<MoeBlock> {
    why = reason;
    return std::nullopt;
  };
  std::map<int64_t, OwnExpertFfn> ffns;
  // The gate scattered densely, G = ScatterElements(zeros, ids, w, axis 1),
  // weighting the stacked outputs.
  if (const onnx::NodeProto *scatter = g.onlyUser(ids, "ScatterElements")) {
    if (inputOf(*scatter, 1) != ids || inputOf(*scatter, 2) != w || intAttr(*scatter, "axis", 0) != 1 ||
        llvm::any_of(scatter->attribute(),
                     [](const onnx::AttributeProto &a) { return a.name() == "reduction" && a.s() != "none"; }) ||
        !isZeros(g, constants, inputOf(*scatter, 0), nodes))
      return fail("the gate is not the top-k weights scattered into zeros at their ids");
    nodes.push_back(scatter);
    bool batched = false;
    std::string sum = stackedMixture(g, constants, isX, *scatter, experts, ffns, block, hidden, batched, nodes, why);
    if (sum.empty())
      return std::nullopt;
    if (batched) {
      block.output = sum;
      block.last = g.indexOf(g.producer(sum));
      return finishBlock(g, std::move(block), nodes, topk, why);
    }
    return finishDense(g, std::move(block), ffns, sum, nodes, topk, why);
  }
  // Every expert's output stacked, each token's k picked by its ids and
  // weighted by w: the same sum as the scattered gate's.
  if (const onnx::NodeProto *unsq = g.onlyUser(ids, "Unsqueeze");
      unsq && (hasAxis(*unsq, constants, -1) || hasAxis(*unsq, constants, 2))) {
    std::string sum = pickedMixture(g, constants, isX, *unsq, w, experts, hidden, ffns, nodes, why);
    if (sum.empty())
      return std::nullopt;
    return finishDense(g, std::move(block), ffns, sum, nodes, topk, why);
  }
  // Each expert's column and its weighted FFN output c_e * FFN_e(x).
  std::map<int64_t, std::string> terms;
  for (int u : g.users(ids)) {
    const onnx::NodeProto &equal = g.graph.node(u);
    std::string column;
    std::optional<int64_t> e =
        equal.op_type() == "Equal" ? gateColumn(g, constants, equal, ids, w, block.k, column, nodes) : std::nullopt;
    if (!e)
      return std::nullopt; // the ids are read some other way: not this form
    if (*e < 0 || *e >= experts || terms.count(*e))
      return fail("expert " + std::to_string(*e) + "'s gate column is not one of the router's experts, once");
    const onnx::NodeProto *scale = g.onlyUser(column, "Mul");
    // A column read at some rows (w[rows] of a loop over row lists) is the
    // loop form's, not this one.
    if (!scale && llvm::any_of(g.users(column), [&](int u) {
          return g.graph.node(u).op_type() == "Gather" || g.graph.node(u).op_type() == "GatherND";
        }))
      return std::nullopt;
    if (!scale)
      return fail("expert " + std::to_string(*e) + "'s gate column does not scale its output");
    std::string output = inputOf(*scale, 0) == column ? inputOf(*scale, 1) : inputOf(*scale, 0);
    // The expert may read x with the rows not routed to it zeroed, x *
    // any(ids == e): those rows' gate is 0, so the sum is the same.
    llvm::SmallVector<const onnx::NodeProto *> maskNodes;
    std::string rows = rowMask(g, constants, equal, maskNodes);
    const onnx::NodeProto *maskedX = nullptr;
    auto readsX = [&](llvm::StringRef v) {
      if (isX(v))
        return true;
      const onnx::NodeProto *mul = rows.empty() ? nullptr : g.producer(v);
      if (!mul || mul->op_type() != "Mul" || (maskedX && mul != maskedX))
        return false;
      bool ok = (isX(inputOf(*mul, 0)) && inputOf(*mul, 1) == rows) ||
                (isX(inputOf(*mul, 1)) && inputOf(*mul, 0) == rows);
      if (ok)
        maskedX = mul;
      return ok;
    };
    std::optional<OwnExpertFfn> ffn = matchOwnExpertFfn(g, constants, output, readsX, nodes);
    if (ffn && maskedX) {
      nodes.append(maskNodes.begin(), maskNodes.end());
      nodes.push_back(maskedX);
    }
    if (!ffn)
      return fail("expert " + std::to_string(*e) +
                  "'s output is not a gated FFN of x (or of x times its own rows, any(ids == e)) on its own "
                  "constant weights");
    nodes.push_back(scale);
    terms[*e] = outputOf(*scale, 0);
    ffns[*e] = *ffn;
  }
  if (static_cast<int64_t>(terms.size()) != experts)
    return fail("the gate columns cover " + std::to_string(terms.size()) + " of the router's " +
                std::to_string(experts) + " experts");
  // The smallest Add tree above expert 0's term whose leaves are exactly
  // the terms (a zero start allowed; a residual added after stays out).
  llvm::StringSet<> want;
  for (auto &[e, term] : terms)
    want.insert(term);
  auto isZero = [&](const std::string &leaf) {
    llvm::SmallVector<const onnx::NodeProto *> fill;
    return isZeros(g, constants, leaf, fill);
  };
  std::string root = terms.begin()->second;
  llvm::SmallVector<const onnx::NodeProto *> adds;
  while (true) {
    llvm::SmallVector<std::string> leaves;
    adds.clear();
    addLeaves(g, root, leaves, adds);
    llvm::erase_if(leaves, isZero);
    if (leaves.size() == terms.size() && llvm::all_of(leaves, [&](const std::string &l) { return want.contains(l); }))
      break;
    const onnx::NodeProto *add = g.onlyUser(root, "Add");
    if (!add || leaves.size() >= terms.size())
      return fail("the experts' weighted outputs are not summed on their own (other terms in their Add chain)");
    root = outputOf(*add, 0);
  }
  nodes.append(adds.begin(), adds.end());
  return finishDense(g, std::move(block), ffns, root, nodes, topk, why);
}

} // namespace mlir::moe::onnx_import::blocks
