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
// or with the outputs stacked expert first and each slot's row picked at
// the token's own position (outs[idx[:, j], arange(T)], slotPickMixture):
//
//   S = Concat_e(Unsqueeze(FFN_e(x), 0), axis 0)                      [E, T, H]
//   y = sum_j Unsqueeze(w[:, j], -1) * S[ids[:, j], t]   or   ReduceSum(S[ids, t] * Unsqueeze(w, -1), 1)
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

/// "te,teh->th" with any letters: per row t, the gate's weights over e
/// times the stacked outputs, summed over e; with `expertFirst`,
/// "te,eth->th" (outputs [E, T, H] of a batched matmul).
bool isGateCombineEquation(llvm::StringRef equation, bool expertFirst = false) {
  return einsumIs(equation, expertFirst ? "te,eth->th" : "te,teh->th");
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

/// A 0/1 dispatch mask [T, E] that is 1 wherever the scattered gate G can
/// be nonzero, so x dispatched by it reaches every expert of a token's
/// picks unscaled (and the others see zero rows, weighted by G = 0):
///   Cast(ReduceSum(OneHot(ids, E, [0, 1]), 1))   (one_hot(idx, E).sum(1): a TopK's ids in a row are distinct)
///   Cast(Not(Equal(G, 0)))                       (G != 0)
///   Cast(Greater(G, 0))                          (G > 0, for top-k weights that are never negative)
bool isDispatchMask(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef mask,
                    const onnx::NodeProto &scatter, int64_t experts, bool nonNegativeWeights,
                    llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  llvm::SmallVector<const onnx::NodeProto *> found;
  const onnx::NodeProto *n = g.producer(mask);
  while (n && n->op_type() == "Cast") {
    found.push_back(n);
    n = g.producer(inputOf(*n, 0));
  }
  if (!n)
    return false;
  std::string gate = outputOf(scatter, 0), ids = inputOf(scatter, 1);
  auto isZero = [&](llvm::StringRef v) { return isZeroConstant(constants, v); };
  bool ok = false;
  if (n->op_type() == "ReduceSum" && hasAxis(*n, constants, 1) && intAttr(*n, "keepdims", 1) == 0) {
    const onnx::NodeProto *oneHot = g.producer(inputOf(*n, 0));
    std::optional<llvm::SmallVector<int64_t>> depth = oneHot && oneHot->op_type() == "OneHot"
                                                          ? constants(inputOf(*oneHot, 1))
                                                          : std::nullopt;
    std::optional<std::vector<float>> values = depth ? constants.floats(inputOf(*oneHot, 2)) : std::nullopt;
    std::optional<llvm::SmallVector<int64_t>> intValues = depth && !values ? constants(inputOf(*oneHot, 2)) : std::nullopt;
    bool offOn = (values && *values == std::vector<float>{0.0f, 1.0f}) ||
                 (intValues && *intValues == llvm::SmallVector<int64_t>{0, 1});
    ok = depth && depth->size() == 1 && (*depth)[0] == experts && offOn && inputOf(*oneHot, 0) == ids &&
         intAttr(*oneHot, "axis", -1) == -1;
    if (ok)
      found.append({n, oneHot});
  } else if (n->op_type() == "Greater" && nonNegativeWeights && inputOf(*n, 0) == gate && isZero(inputOf(*n, 1))) {
    ok = true;
    found.push_back(n);
  } else if (n->op_type() == "Not") {
    const onnx::NodeProto *eq = g.producer(inputOf(*n, 0));
    ok = eq && eq->op_type() == "Equal" &&
         ((inputOf(*eq, 0) == gate && isZero(inputOf(*eq, 1))) || (inputOf(*eq, 1) == gate && isZero(inputOf(*eq, 0))));
    if (ok)
      found.append({n, eq});
  }
  if (ok)
    nodes.append(found.begin(), found.end());
  return ok;
}

/// Every expert on every token by batched matmuls over the experts
/// (torch.bmm of x.expand(E, T, H) with stacked weights):
///   xs = Expand(Unsqueeze(x, 0), [E, ., .])
///        (or Einsum("te,th->eth", M, x) with M a dispatch mask of the
///        scattered gate, GShard's dispatch without a capacity)
///   o  = MatMul(act(MatMul(xs, Wg)) * MatMul(xs, Wu), Wd)          [E, T, H]
/// Sets the block's stacks and activation.
bool batchedExperts(const GraphIndex &g, const ConstantLookup &constants, MoeBlock &block, llvm::StringRef outputs,
                    const onnx::NodeProto &scatter, int64_t experts, int64_t hidden,
                    llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  auto fail = [&](const char *reason) {
    why = reason;
    return false;
  };
  const onnx::NodeProto *down = g.producer(outputs);
  if (!down || down->op_type() != "MatMul")
    return fail("the experts' outputs [E, T, H] are not a batched down projection");
  // xs: x once per expert.
  const onnx::NodeProto *spread = nullptr;
  // Softmax or sigmoid probabilities, renormalised or scaled by a positive
  // factor.
  bool nonNegativeWeights = !block.deepSeek || block.deepSeek->scale > 0;
  for (int u : g.users(block.x)) {
    const onnx::NodeProto &unsq = g.graph.node(u);
    const onnx::NodeProto *expand =
        unsq.op_type() == "Unsqueeze" && hasAxis(unsq, constants, 0) ? g.onlyUser(outputOf(unsq, 0), "Expand") : nullptr;
    std::optional<llvm::SmallVector<int64_t>> shape = expand ? constants(inputOf(*expand, 1)) : std::nullopt;
    if (shape && shape->size() == 3 && (*shape)[0] == experts && ((*shape)[2] == 1 || (*shape)[2] == hidden)) {
      nodes.push_back(&unsq);
      spread = expand;
    }
    if (unsq.op_type() == "Einsum" && unsq.input_size() == 2 && inputOf(unsq, 1) == block.x &&
        einsumIs(stringAttr(unsq, "equation", ""), "te,th->eth") &&
        isDispatchMask(g, constants, inputOf(unsq, 0), scatter, experts, nonNegativeWeights, nodes))
      spread = &unsq;
  }
  if (!spread)
    return fail("x is neither expanded over the experts nor dispatched to them by a 0/1 mask covering the gate "
                "for batched matmuls");
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
  // einsum('te,eth->th', gate, batched experts' outputs [E, T, H]); the
  // gate may also be read by a dispatch mask (G > 0, G != 0).
  const onnx::NodeProto *combine = nullptr;
  bool otherUsers = false;
  for (int u : g.users(outputOf(scatter, 0))) {
    const onnx::NodeProto &n = g.graph.node(u);
    if (!combine && n.op_type() == "Einsum" && n.input_size() == 2 && inputOf(n, 0) == outputOf(scatter, 0) &&
        isGateCombineEquation(stringAttr(n, "equation", ""), /*expertFirst=*/true))
      combine = &n;
    else if (n.op_type() != "Greater" && n.op_type() != "Equal")
      otherUsers = true;
  }
  if (otherUsers)
    combine = nullptr;
  if (const onnx::NodeProto *einsum = combine) {
    found.push_back(einsum);
    if (!batchedExperts(g, constants, block, inputOf(*einsum, 1), scatter, experts, hidden, found, why))
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

/// x's token count: Squeeze(Shape(x, start 0, end 1)) (dynamo) or
/// Gather(Shape(x), 0) (TorchScript), maybe Cast.
bool isTokenCount(const GraphIndex &g, const ConstantLookup &constants, llvm::function_ref<bool(llvm::StringRef)> isX,
                  llvm::StringRef value) {
  const onnx::NodeProto *n = g.producer(value);
  if (n && n->op_type() == "Cast")
    n = g.producer(inputOf(*n, 0));
  if (!n)
    return false;
  const onnx::NodeProto *shape = g.producer(inputOf(*n, 0));
  if (!shape || shape->op_type() != "Shape" || !isX(inputOf(*shape, 0)) || intAttr(*shape, "start", 0) != 0)
    return false;
  if (n->op_type() == "Squeeze")
    return intAttr(*shape, "end", -1) == 1;
  std::optional<llvm::SmallVector<int64_t>> dim = n->op_type() == "Gather" ? constants(inputOf(*n, 1)) : std::nullopt;
  return dim && dim->size() == 1 && (*dim)[0] == 0 && isWholeShape(*shape);
}

/// The token numbers 0, 1, ..., T - 1: Range(0, T, 1) with T x's token
/// count, or such a constant (a static export).
bool isTokenNumbers(const GraphIndex &g, const ConstantLookup &constants, llvm::function_ref<bool(llvm::StringRef)> isX,
                    llvm::StringRef value) {
  if (std::optional<llvm::SmallVector<int64_t>> v = constants(value)) {
    for (size_t i = 0; i < v->size(); ++i)
      if ((*v)[i] != static_cast<int64_t>(i))
        return false;
    return !v->empty();
  }
  const onnx::NodeProto *range = g.producer(value);
  if (!range || range->op_type() != "Range")
    return false;
  std::optional<llvm::SmallVector<int64_t>> start = constants(inputOf(*range, 0)), step = constants(inputOf(*range, 2));
  return start && start->size() == 1 && (*start)[0] == 0 && step && step->size() == 1 && (*step)[0] == 1 &&
         isTokenCount(g, constants, isX, inputOf(*range, 1));
}

/// A pick of an expert-first stack S [E, T, H] at each token's own row,
/// P[t, ...] = S[a[t, ...], t, :]; sets `stack` and `a`:
///   GatherND(S, Concat(Unsqueeze(a, -1), Unsqueeze(n, -1), axis -1)) with n
///     the token numbers (1-D a), or Expand(Unsqueeze(numbers, 1), .)
///     (2-D a: outs[idx, arange(T)[:, None]]) (dynamo);
///   Gather(Flatten(S, 2), Add(numbers, Mul(a, Shape(S)[1])), axis 0)
///     (TorchScript; the numbers a column for a 2-D a): row a·T + t of
///     the flattened stack, reshaped back by throughRowReshapes.
/// The Concat and Gather check at run time that a covers the T tokens.
bool stackPick(const GraphIndex &g, const ConstantLookup &constants, llvm::function_ref<bool(llvm::StringRef)> isX,
               const onnx::NodeProto &pick, std::string &stack, std::string &a,
               llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  auto unsqueezedLast = [&](llvm::StringRef v) -> const onnx::NodeProto * {
    const onnx::NodeProto *u = g.producer(v);
    return u && u->op_type() == "Unsqueeze" && hasAxis(*u, constants, -1) ? u : nullptr;
  };
  if (pick.op_type() == "GatherND" && pick.input_size() == 2 && intAttr(pick, "batch_dims", 0) == 0) {
    const onnx::NodeProto *concat = g.producer(inputOf(pick, 1));
    int64_t indexRank = constants.rank ? constants.rank(inputOf(pick, 1)) : -1;
    int64_t axis = concat ? intAttr(*concat, "axis", 0) : 0;
    if (!concat || concat->op_type() != "Concat" || concat->input_size() != 2 ||
        (axis != -1 && (indexRank < 0 || axis != indexRank - 1)))
      return false;
    const onnx::NodeProto *ua = unsqueezedLast(inputOf(*concat, 0)), *un = unsqueezedLast(inputOf(*concat, 1));
    if (!ua || !un)
      return false;
    std::string numbers = inputOf(*un, 0);
    int64_t aRank = constants.rank ? constants.rank(inputOf(*ua, 0)) : -1;
    if (aRank == 2) {
      // The numbers as a column broadcast over a's slots.
      const onnx::NodeProto *expand = g.producer(numbers);
      const onnx::NodeProto *column = expand && expand->op_type() == "Expand" ? g.producer(inputOf(*expand, 0)) : nullptr;
      if (!column || column->op_type() != "Unsqueeze" || !hasAxis(*column, constants, 1))
        return false;
      nodes.append({expand, column});
      numbers = inputOf(*column, 0);
    } else if (aRank != 1) {
      return false;
    }
    if (!isTokenNumbers(g, constants, isX, numbers) || (constants.rank && constants.rank(inputOf(pick, 0)) != 3))
      return false;
    nodes.append({&pick, concat, ua, un});
    stack = inputOf(pick, 0);
    a = inputOf(*ua, 0);
    return true;
  }
  if (pick.op_type() != "Gather" || intAttr(pick, "axis", 0) != 0)
    return false;
  const onnx::NodeProto *flat = g.producer(inputOf(pick, 0));
  const onnx::NodeProto *add = g.producer(inputOf(pick, 1));
  if (!flat || flat->op_type() != "Flatten" || intAttr(*flat, "axis", 1) != 2 || !add || add->op_type() != "Add" ||
      (constants.rank && constants.rank(inputOf(*flat, 0)) != 3))
    return false;
  stack = inputOf(*flat, 0);
  // Shape(S)[1], the stack's token count.
  llvm::SmallVector<const onnx::NodeProto *> sizeNodes;
  auto isStackTokens = [&](llvm::StringRef v) { return isSizeOf(g, constants, v, stack, 1, sizeNodes); };
  for (int side = 0; side < 2; ++side) {
    const onnx::NodeProto *mul = g.producer(inputOf(*add, 1 - side));
    if (!mul || mul->op_type() != "Mul")
      continue;
    for (int m = 0; m < 2; ++m) {
      if (!isStackTokens(inputOf(*mul, 1 - m)))
        continue;
      a = inputOf(*mul, m);
      // The numbers along a's first axis: 1-D for a 1-D a, a column
      // Unsqueeze(numbers, 1) for a 2-D one.
      int64_t aRank = constants.rank ? constants.rank(a) : -1;
      std::string numbers = inputOf(*add, side);
      const onnx::NodeProto *column = aRank == 2 ? g.producer(numbers) : nullptr;
      if (column && column->op_type() == "Unsqueeze" && hasAxis(*column, constants, 1)) {
        nodes.push_back(column);
        numbers = inputOf(*column, 0);
      } else if (aRank != 1) {
        return false;
      }
      if (!isTokenNumbers(g, constants, isX, numbers))
        return false;
      nodes.append({&pick, flat, add, mul});
      return true;
    }
  }
  return false;
}

/// `value`, a Gather of the flattened stack at `index`, after TorchScript's
/// Reshapes of it to [-1, H] and back to [Shape(index), H] (H = Shape(S)[2]):
/// the last Reshape's output when the chain ends in the Gather's own shape,
/// else "".
std::string throughRowReshapes(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value,
                               llvm::StringRef index, llvm::StringRef stack,
                               llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  llvm::SmallVector<const onnx::NodeProto *> sizeNodes;
  auto isHidden = [&](llvm::StringRef v) { return isSizeOf(g, constants, v, stack, 2, sizeNodes); };
  std::string out = value.str();
  // A 1-D index: the Gather is [T, H] already, as is [-1, H] of it.
  bool ownShape = constants.rank && constants.rank(index) == 1;
  llvm::SmallVector<const onnx::NodeProto *> chain;
  while (const onnx::NodeProto *reshape = g.onlyUser(out, "Reshape")) {
    const onnx::NodeProto *target = g.producer(inputOf(*reshape, 1));
    if (!target || target->op_type() != "Concat" || target->input_size() != 2 || !isHidden(inputOf(*target, 1)))
      break;
    std::optional<llvm::SmallVector<int64_t>> first = constants(inputOf(*target, 0));
    const onnx::NodeProto *indexShape = first ? nullptr : g.producer(inputOf(*target, 0));
    bool flat = first && first->size() == 1 && (*first)[0] == -1;
    bool back = indexShape && indexShape->op_type() == "Shape" && isWholeShape(*indexShape) &&
                inputOf(*indexShape, 0) == index;
    if (!flat && !back)
      break;
    chain.append({reshape, target});
    out = outputOf(*reshape, 0);
    ownShape = back || (ownShape && flat);
  }
  if (!ownShape)
    return "";
  nodes.append(chain.begin(), chain.end());
  return out;
}

/// The slot-pick form: every expert's output stacked expert first, S =
/// Concat_e(Unsqueeze(FFN_e(x), 0), axis 0) [E, T, H], each token's k
/// rows picked from it (stackPick) and weighted by their top-k weights:
///   y = sum_j Unsqueeze(w[:, j], -1) * S[ids[:, j], t]          (an Add chain, one term per slot)
///   y = ReduceSum(S[ids[t, j], t] * Unsqueeze(w, -1), 1)        (every slot at once)
/// Fills the experts' FFNs and returns the sum, or "" (`why` empty when
/// the ids are not picked from a stack at all).
std::string slotPickMixture(const GraphIndex &g, const ConstantLookup &constants,
                            llvm::function_ref<bool(llvm::StringRef)> isX, llvm::StringRef ids, llvm::StringRef w,
                            int64_t k, int64_t experts, std::map<int64_t, OwnExpertFfn> &ffns,
                            llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  // Column j of a 2-D value v: Gather(v, j, axis 1) with a scalar j.
  auto columnOf = [&](llvm::StringRef value, std::string &source) -> std::optional<int64_t> {
    const onnx::NodeProto *n = g.producer(value);
    std::optional<llvm::SmallVector<int64_t>> j = n && n->op_type() == "Gather" && intAttr(*n, "axis", 0) == 1
                                                      ? constants(inputOf(*n, 1))
                                                      : std::nullopt;
    if (!j || j->size() != 1 || !constants.rank || constants.rank(inputOf(*n, 1)) != 0)
      return std::nullopt;
    source = inputOf(*n, 0);
    int64_t slot = (*j)[0] < 0 ? (*j)[0] + k : (*j)[0];
    return slot >= 0 && slot < k ? std::optional<int64_t>(slot) : std::nullopt;
  };
  // The picks reading the ids: all of them at once, or one column each.
  struct Pick {
    const onnx::NodeProto *node;
    std::string stack, value;
    std::optional<int64_t> slot;
    llvm::SmallVector<const onnx::NodeProto *> nodes;
  };
  llvm::SmallVector<Pick> picks;
  for (const onnx::NodeProto &n : g.graph.node()) {
    if (n.op_type() != "GatherND" && n.op_type() != "Gather")
      continue;
    Pick p{&n, "", "", std::nullopt, {}};
    std::string a, source;
    if (!stackPick(g, constants, isX, n, p.stack, a, p.nodes))
      continue;
    if (a != ids) {
      p.slot = columnOf(a, source);
      if (!p.slot || source != ids)
        continue;
      p.nodes.push_back(g.producer(a));
    }
    p.value = n.op_type() == "Gather" ? throughRowReshapes(g, constants, outputOf(n, 0), inputOf(n, 1), p.stack, p.nodes)
                                       : outputOf(n, 0);
    if (!p.value.empty())
      picks.push_back(std::move(p));
  }
  if (picks.empty())
    return "";
  auto fail = [&](const std::string &reason) {
    why = reason;
    return std::string();
  };
  std::string stack = picks.front().stack;
  if (llvm::any_of(picks, [&](const Pick &p) { return p.stack != stack; }))
    return fail("the slots' rows are picked from different stacks of outputs");
  llvm::SmallVector<const onnx::NodeProto *> found;
  std::string sum;
  if (picks.size() == 1 && !picks.front().slot) {
    // (picked * w.unsqueeze(-1)).sum(1)
    const Pick &p = picks.front();
    const onnx::NodeProto *mul = g.onlyUser(p.value, "Mul");
    std::string weights = mul ? (inputOf(*mul, 0) == p.value ? inputOf(*mul, 1) : inputOf(*mul, 0)) : "";
    const onnx::NodeProto *wUnsq = mul ? g.producer(weights) : nullptr;
    llvm::SmallVector<const onnx::NodeProto *> summed;
    const onnx::NodeProto *reduce = mul ? sumReading(g, outputOf(*mul, 0), /*onlyUser=*/true, sum, summed) : nullptr;
    if (!wUnsq || wUnsq->op_type() != "Unsqueeze" || inputOf(*wUnsq, 0) != w ||
        !(hasAxis(*wUnsq, constants, -1) || hasAxis(*wUnsq, constants, 2)) || !reduce ||
        !hasAxis(*reduce, constants, 1) || intAttr(*reduce, "keepdims", 1) != 0)
      return fail("the picked outputs are not weighted by the top-k weights and summed over the slots");
    found.append(p.nodes.begin(), p.nodes.end());
    found.append({mul, wUnsq});
    found.append(summed.begin(), summed.end());
  } else {
    // One term per slot, Unsqueeze(w[:, j], -1) * S[ids[:, j], t], added.
    std::map<int64_t, std::string> terms;
    for (const Pick &p : picks) {
      if (!p.slot || terms.count(*p.slot))
        return fail("the ids' columns are not each picked once from the stacked outputs");
      const onnx::NodeProto *mul = g.onlyUser(p.value, "Mul");
      std::string weight = mul ? (inputOf(*mul, 0) == p.value ? inputOf(*mul, 1) : inputOf(*mul, 0)) : "";
      const onnx::NodeProto *unsq = mul ? g.producer(weight) : nullptr;
      std::string source;
      std::optional<int64_t> slot = unsq && unsq->op_type() == "Unsqueeze" && hasAxis(*unsq, constants, -1)
                                        ? columnOf(inputOf(*unsq, 0), source)
                                        : std::nullopt;
      if (!slot || source != w)
        return fail("slot " + std::to_string(*p.slot) + "'s picked rows are not weighted by a column of the top-k "
                    "weights");
      if (*slot != *p.slot)
        return fail("slot " + std::to_string(*p.slot) + "'s picked rows are weighted by slot " +
                    std::to_string(*slot) + "'s weight");
      found.append(p.nodes.begin(), p.nodes.end());
      found.append({mul, unsq, g.producer(inputOf(*unsq, 0))});
      terms[*p.slot] = outputOf(*mul, 0);
    }
    if (static_cast<int64_t>(terms.size()) != k)
      return fail("the stacked outputs are picked for " + std::to_string(terms.size()) + " of the " +
                  std::to_string(k) + " slots");
    llvm::StringSet<> want;
    for (auto &[j, term] : terms)
      want.insert(term);
    std::string root = terms.begin()->second;
    while (true) {
      llvm::SmallVector<std::string> leaves;
      llvm::SmallVector<const onnx::NodeProto *> adds;
      addLeaves(g, root, leaves, adds);
      if (leaves.size() == terms.size() && llvm::all_of(leaves, [&](const std::string &l) { return want.contains(l); })) {
        found.append(adds.begin(), adds.end());
        break;
      }
      const onnx::NodeProto *add = g.onlyUser(root, "Add");
      if (!add || leaves.size() >= terms.size())
        return fail("the slots' weighted rows are not summed on their own (other terms in their Add chain)");
      root = outputOf(*add, 0);
    }
    sum = root;
  }
  if (!stackedExperts(g, constants, isX, stack, experts, ffns, found, why, /*axis=*/0))
    return "";
  nodes.append(found.begin(), found.end());
  return sum;
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
  // weighting the stacked outputs; the ids may also build a one-hot
  // dispatch mask (isDispatchMask).
  const onnx::NodeProto *scatter = g.userOfType(ids, "ScatterElements");
  if (scatter && llvm::any_of(g.users(ids), [&](int u) {
        const onnx::NodeProto &n = g.graph.node(u);
        return &n != scatter && n.op_type() != "OneHot";
      }))
    scatter = nullptr;
  if (scatter) {
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
  // Every expert's output stacked expert first, each slot's row picked at
  // (ids, t) and weighted by its top-k weight.
  {
    std::string sum = slotPickMixture(g, constants, isX, ids, w, block.k, experts, ffns, nodes, why);
    if (!sum.empty())
      return finishDense(g, std::move(block), ffns, sum, nodes, topk, why);
    if (!why.empty())
      return std::nullopt;
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
