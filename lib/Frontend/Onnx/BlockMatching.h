//===- BlockMatching.h - what the ONNX MoE block matchers share -*- C++ -*-===//
//
// The graph index and the pieces every form of a written-out MoE block is
// matched with (routing, gated activation, shared expert, per-slot
// operands, closing a block), and the three block matchers: batched
// (BatchedBlocks.cpp, with gpt-oss's), per-expert loop (ExpertLoopBlocks.cpp).
// MoeBlocks.cpp runs them at every TopK.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_FRONTEND_ONNX_BLOCKMATCHING_H
#define MOE_FRONTEND_ONNX_BLOCKMATCHING_H

#include "MoeBlocks.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringMap.h"

#include <map>
#include <optional>
#include <string>

namespace mlir::moe::onnx_import::blocks {

/// Input or output `i` of `node`, or "" when it has none. The matchers read
/// operands by position on graphs nothing has checked yet: a node missing
/// one (found by fuzzing) is then simply not part of a block.
inline const std::string &inputOf(const onnx::NodeProto &node, int i) {
  static const std::string none;
  return i >= 0 && i < node.input_size() ? node.input(i) : none;
}
inline const std::string &outputOf(const onnx::NodeProto &node, int i) {
  static const std::string none;
  return i >= 0 && i < node.output_size() ? node.output(i) : none;
}

/// Producers and consumers of the graph's values.
class GraphIndex {
public:
  GraphIndex(const onnx::GraphProto &graph, const std::function<bool(llvm::StringRef)> &isConstant)
      : graph(graph), isConstant(isConstant) {
    for (int i = 0; i < graph.node_size(); ++i) {
      indices[&graph.node(i)] = i;
      // "" is an absent optional operand (or one inputOf reads past the end):
      // no node produces or reads it.
      for (const std::string &out : graph.node(i).output())
        if (!out.empty())
          producers[out] = i;
      for (const std::string &in : graph.node(i).input())
        if (!in.empty())
          consumers[in].push_back(i);
    }
    for (const onnx::ValueInfoProto &out : graph.output())
      graphOutputs.insert(out.name());
  }

  const onnx::NodeProto *producer(llvm::StringRef value) const {
    auto it = producers.find(value);
    return it == producers.end() ? nullptr : &graph.node(it->second);
  }
  llvm::ArrayRef<int> users(llvm::StringRef value) const {
    auto it = consumers.find(value);
    return it == consumers.end() ? llvm::ArrayRef<int>() : llvm::ArrayRef<int>(it->second);
  }
  /// The only node using `value` if it has that op type.
  const onnx::NodeProto *onlyUser(llvm::StringRef value, llvm::StringRef opType) const {
    llvm::ArrayRef<int> u = users(value);
    if (u.size() != 1 || graph.node(u[0]).op_type() != opType)
      return nullptr;
    return &graph.node(u[0]);
  }
  /// The user of `value` with op type `opType` (there must be exactly one).
  const onnx::NodeProto *userOfType(llvm::StringRef value, llvm::StringRef opType) const {
    const onnx::NodeProto *found = nullptr;
    for (int i : users(value))
      if (graph.node(i).op_type() == opType) {
        if (found)
          return nullptr;
        found = &graph.node(i);
      }
    return found;
  }
  /// Protobuf keeps nodes apart in memory: the index is looked up.
  int indexOf(const onnx::NodeProto *node) const { return indices.lookup(node); }
  /// The node's name, or its op type and index when it has none.
  std::string describe(int i) const {
    const onnx::NodeProto &n = graph.node(i);
    return n.name().empty() ? n.op_type() + " #" + std::to_string(i) : n.name();
  }

  const onnx::GraphProto &graph;
  std::function<bool(llvm::StringRef)> isConstant;
  llvm::StringSet<> graphOutputs;

private:
  llvm::StringMap<int> producers;
  llvm::StringMap<llvm::SmallVector<int>> consumers;
  llvm::DenseMap<const onnx::NodeProto *, int> indices;
};

/// 16-bit models route and accumulate in f32 (transformers' softmax with
/// dtype=float, the weighted sum of the expert rows): a Cast between float
/// types is seen through. `value` through the float Cast that is its only
/// user (the Cast joins `nodes`), or `value`.
std::string throughFloatCastUser(const GraphIndex &g, llvm::StringRef value,
                                 llvm::SmallVector<const onnx::NodeProto *> &nodes);
/// The ReduceSum reading `value` (its only user with `onlyUser`, else one
/// of them), or PyTorch's sum of a 16-bit tensor: a Cast to f32, the
/// ReduceSum, a Cast back to f16/bf16. `result` is the sum's value (after
/// the Cast back); the nodes join `nodes`. Null when neither is there.
const onnx::NodeProto *sumReading(const GraphIndex &g, llvm::StringRef value, bool onlyUser, std::string &result,
                                   llvm::SmallVector<const onnx::NodeProto *> &nodes);
/// The input of the float Cast producing `value` (the Cast joins `nodes`),
/// or `value`.
std::string throughFloatCastProducer(const GraphIndex &g, llvm::StringRef value,
                                     llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// The integer attribute `name` of `node`, or `fallback` when it has none.
int64_t intAttr(const onnx::NodeProto &node, llvm::StringRef name, int64_t fallback);
/// The ints attribute `name` of `node` (a Transpose's perm), empty when absent.
llvm::SmallVector<int64_t> intsAttr(const onnx::NodeProto &node, llvm::StringRef name);

/// The axes of Squeeze/Unsqueeze/Reduce*: a constant input or the
/// attribute (older opsets).
std::optional<llvm::SmallVector<int64_t>> axesOf(const onnx::NodeProto &node, const ConstantLookup &constants);

/// A single-axis op (Squeeze/Unsqueeze/ReduceSum) on axis `axis`, given as
/// a constant input or attribute (compared by meaning where the rank is
/// known).
bool hasAxis(const onnx::NodeProto &node, const ConstantLookup &constants, int64_t axis);

/// The float attribute `name` of `node`, or `fallback` when it has none.
float floatAttr(const onnx::NodeProto &node, llvm::StringRef name, float fallback);

/// The string attribute `name` of `node`, or `fallback` when it has none.
std::string stringAttr(const onnx::NodeProto &node, llvm::StringRef name, llvm::StringRef fallback);

/// A ConstantOfShape attribute that leaves the fill 0 (absent: 0.0).
bool isZeroValue(const onnx::AttributeProto &a);

/// The value of a one-element float constant, if `value` is one.
std::optional<float> scalarFloat(const ConstantLookup &constants, llvm::StringRef value);

/// `equation` (an Einsum's, spaces allowed) is `pattern` with its letters
/// renamed one to one: einsumIs("bk, bkh -> bh", "tk,tkh->th").
bool einsumIs(llvm::StringRef equation, llvm::StringRef pattern);

/// A float constant of zeros only (static-size exports write zeros so).
bool isZeroConstant(const ConstantLookup &constants, llvm::StringRef value);

/// `value` is a zero fill: ConstantOfShape with a zero value or Expand of a
/// zero constant (of any shape). The fill node, or null.
const onnx::NodeProto *zeroFill(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value);

/// A Shape node of all its input's axes (a `start = 0` attribute allowed,
/// as the dynamo exporter writes it).
bool isWholeShape(const onnx::NodeProto &shape);

/// `zeros` is zeros shaped like `like`: a zero constant (a scalar, or a
/// static-size export's zeros_like), ConstantOfShape(Shape(like)) (TorchScript's
/// zeros_like) or Expand(0, Shape(like)) (dynamo's). The fill and Shape nodes
/// join `nodes`.
bool isZerosLike(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef zeros, llvm::StringRef like,
                 llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// any(mask, -1) of a [T, k] bool mask as the exporters write it:
/// Cast(ReduceMax(Cast(mask, int), -1), bool) (dynamo; `bareMax` also takes
/// the ReduceMax alone, whose Cast to bool canonicalizeGraph drops where only
/// NonZero reads it) or Greater(ReduceSum(Cast(mask, int), -1), 0)
/// (TorchScript), the reduction keeping its axis when `keepdims`. Its value,
/// or "" (the nodes join `nodes`).
std::string anyOverSlots(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef mask, bool keepdims,
                         bool bareMax, llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// The constant weight of the linear map computing `value` from the block's
/// x (from anything when `ofX` is null): MatMul(x, W), or Gemm(x, W)
/// without bias, scaling or transA (transB = 1: W as rows). Empty if neither.
LinearWeight linearOf(const GraphIndex &g, llvm::StringRef value, const MoeBlock *ofX,
                      llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// linearOf, or that map plus a constant bias of one value per output
/// (Add(x W, b), Gemm(x, W, b) with beta = 1: torch's Linear with a bias),
/// whose name goes to `bias` (left empty without one). The linear node comes
/// first in `nodes`.
LinearWeight biasedLinearOf(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value,
                            llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &bias);

/// The logits before a temperature: `logits` = Div(v, c), Mul(v, c) or
/// Mul(c, v) of a finite non-zero scalar constant c and read only there
/// (maybe through a float Cast before it): v, with `scale` 1 / c or c
/// and the nodes in `nodes`; otherwise `logits` itself, `scale` 1.
std::string unscaledLogits(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef logits,
                           double &scale, llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// The block's output plus a SwiGLU shared expert, sigmoid-gated (Qwen2-MoE)
/// or not (DeepSeek-V3), possibly after viewing the output back to the
/// shape of the tensor x is a view of (BlockMatching.cpp has the forms).
/// Extends `block` and `nodes` when it matches; leaves them otherwise (the
/// shared expert then stays plain ops, still correct).
void matchSharedExpert(const GraphIndex &g, MoeBlock &block, llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// The ungated activation computing `value` from h (ExpertFfnMatching.cpp):
/// Relu, squared Relu, Gelu (exact or tanh, or GELU's erf form written
/// out) or SiLU of h. Sets h and adds the nodes.
std::optional<PlainActivation> plainActivation(const GraphIndex &g, const ConstantLookup &constants,
                                               llvm::StringRef value, std::string &h,
                                               llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// The gated activation act(gate) * up: SwiGLU, Mul(Mul(g, Sigmoid(g)), u),
/// or GeGLU, Mul(Gelu(g), u) with the exact (erf) Gelu; either operand
/// order. Returns the product node and sets `kind`; adds the nodes.
const onnx::NodeProto *matchGatedActivation(const GraphIndex &g, llvm::StringRef gate, llvm::StringRef up,
                                            GateActivation &kind,
                                            llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// The routing every block form starts with, at TopK node `topk`:
/// TopK(Softmax(MatMul(x, Wr))) with Wr constant, the weights optionally
/// divided by their sum, or Softmax(TopK(MatMul(x, Wr)).values) (the picks'
/// softmax: the same weights renormalised). Fills the block's x, router, k and normalize and
/// `nodes`; returns the (renormalised) weights' value. On failure `why`
/// holds the reason, or is empty when this is not MoE routing at all.
std::optional<std::string> matchRouting(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                        MoeBlock &block, llvm::SmallVector<const onnx::NodeProto *> &nodes,
                                        std::string &why);

/// Adds to `block` the nodes whose results only it reads (the Shape of the
/// ids, Concat of sizes: nothing else needs them once it is replaced), then
/// checks that nothing but its output leaves it.
std::optional<MoeBlock> finishBlock(const GraphIndex &g, MoeBlock block,
                                    llvm::ArrayRef<const onnx::NodeProto *> nodes, int topk, std::string &why);

/// The per-slot operands of the batched forms: the gate weights `w` [T, k]
/// flattened and unsqueezed to scale each slot's row, and the expert ids
/// flattened (`ids`), after transformers' Clip into [0, E) if there is one.
struct SlotOperands {
  const onnx::NodeProto *scale = nullptr, *clip = nullptr;
  std::string ids;
};

/// The slot operands of weights `w` and ids `expertIds`; on failure `why`
/// says which link is missing.
std::optional<SlotOperands> matchSlotOperands(const GraphIndex &g, const ConstantLookup &constants,
                                              llvm::StringRef w, llvm::StringRef expertIds,
                                              llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why);

/// True unless `clip` (on the expert ids) narrows them below [0, E), E the
/// experts of `weights`: then it is not the no-op transformers writes.
bool clipKeepsExperts(const ConstantLookup &constants, const onnx::NodeProto *clip, llvm::StringRef weights);

/// Matches expert-choice routing anchored at TopK node `topk`, the top
/// tokens of each expert in a loop over the experts (ExpertChoiceBlocks.cpp).
/// `why` is empty when `topk` is no expert-choice selection.
std::optional<MoeBlock> matchExpertChoiceBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                               std::string &why);

/// Matches the per-expert loop form anchored at TopK node `topk` (see
/// MoeBlocks.cpp). `why` is empty when there are no per-expert masks.
std::optional<MoeBlock> matchPerExpertBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                            std::string &why);

/// Phi-3.5-MoE's SparseMixer top-2 routing (SparseMixerRouting.cpp): the
/// logits it reads, the weights [T, 2] and ids [T, 2] it joins, and its
/// jitter epsilon.
struct SparseMixerRouting {
  std::string logits, weights, ids;
  float eps = 0.01f;
};
/// The SparseMixer routing whose first pick is TopK node `topk` (K = 1);
/// its nodes (not the logits') join `nodes`.
std::optional<SparseMixerRouting> matchSparseMixerRouting(const GraphIndex &g, const ConstantLookup &constants,
                                                          int topk, llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// Matches the batched block anchored at TopK node `topk`. On failure
/// returns the reason in `why` (empty when the anchor itself does not
/// match: not MoE).
std::optional<MoeBlock> matchBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                   std::string &why);

/// A Slice of `h` [n, 2I] along its last axis with unit steps: [start, end)
/// (end clamped to `width`), or nullopt (ExpertFfnMatching.cpp).
std::optional<std::pair<int64_t, int64_t>> lastAxisSlice(const ConstantLookup &constants, const onnx::NodeProto *slice,
                                                         llvm::StringRef h, int64_t width);

/// One expert's FFN on its own constant weights, matched back from its
/// `output` to the rows `isInput` accepts (ExpertFfnMatching.cpp): gated
/// (SwiGLU, GeGLU) or plain (ReLU, GELU, SiLU), each projection MatMul [+
/// Add(bias)] or Gemm [with C], all in one layout (x @ W, or rows). A
/// weight may be one expert's matrix of a constant stack (`w[e]`, `w[e].T`)
/// and gate and up one fused matrix whose result is sliced in halves
/// (WeightView).
struct OwnExpertFfn {
  std::string gate, up, down;              // up empty when ungated
  std::string gateBias, upBias, downBias;  // "" without
  bool rows = false;
  GateActivation gated = GateActivation::silu;
  std::optional<PlainActivation> ungated;
  /// The weights above that are views of constants.
  std::vector<WeightView> views;
};
std::optional<OwnExpertFfn> matchOwnExpertFfn(const GraphIndex &g, const ConstantLookup &constants,
                                              llvm::StringRef output, llvm::function_ref<bool(llvm::StringRef)> isInput,
                                              llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// The experts `ffns` (every expert, in order) as the block's own weights;
/// false, with `why`, when they differ in form.
bool setOwnExperts(MoeBlock &block, const std::map<int64_t, OwnExpertFfn> &ffns, std::string &why);

/// `value` is the size of axis `axis` of `of`: Gather(Shape(of), axis),
/// optionally unsqueezed to 1-D (ExpertLoopBlocks.cpp).
bool isSizeOf(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value, llvm::StringRef of,
              int64_t axis, llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// Rows of the block's x gathered at `token` (x[token]: Gather along axis 0,
/// GatherND of its column, TorchScript's x[None, token] reshaped); their
/// value, or "" (ExpertLoopBlocks.cpp).
std::string gatheredRows(const GraphIndex &g, const ConstantLookup &constants, const MoeBlock &block,
                         llvm::StringRef token, llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// An expert's FFN on its own constant weights downstream of `rows`, its
/// result read only by one node of a type in `readers` (its scale, by
/// default); sets `output` to its result.
std::optional<OwnExpertFfn> ownExpertOnRows(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef rows,
                                            std::string &output, llvm::SmallVector<const onnx::NodeProto *> &nodes,
                                            llvm::ArrayRef<llvm::StringRef> readers = {"Mul", "Cast"});

/// One expert's FFN on stacked weights gathered at its `index`
/// (ExpertLoopBlocks.cpp): the weights, the activation (gated, or plain
/// when `ungated`: transformers' has_gate = False) and the FFN's output.
struct StackedExpert {
  std::string gateUp, down, output;
  GateActivation activation = GateActivation::silu;
  std::optional<PlainActivation> ungated;
  bool sameForm(const StackedExpert &o) const {
    return gateUp == o.gateUp && down == o.down && activation == o.activation && ungated == o.ungated;
  }
};
std::optional<StackedExpert> stackedExpert(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef rows,
                                           llvm::StringRef index, llvm::SmallVector<const onnx::NodeProto *> &nodes);

/// One expert's step of the output's accumulation: `out` = `in` plus its
/// weighted rows added at their tokens.
struct Accumulation {
  std::string in, out;
  /// The rows are assigned (ScatterND without a reduction), not added: a
  /// sum only where no other step writes the same rows.
  bool assigns = false;
};

/// The step adding `rows` at `token` (index_add_, scatter_add_,
/// index_put_ and `acc[token] +=` as the exporters write them), or nullopt.
/// Rows scattered into zeros may start from zeros shaped like `x` (the
/// layer's input, which the sum is shaped like) as well as like acc.
std::optional<Accumulation> accumulation(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef rows,
                                         llvm::StringRef token, llvm::SmallVector<const onnx::NodeProto *> &nodes,
                                         llvm::StringRef x = {});

/// The experts' steps chained once each from zeros shaped like x: the
/// last step's output, or nullopt with `why`.
std::optional<std::string> accumulationChain(const GraphIndex &g, const ConstantLookup &constants,
                                             const MoeBlock &block, const std::map<int64_t, Accumulation> &steps,
                                             llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why);

/// Matches vLLM's and SGLang's reference loop (FlatSlotLoopBlocks.cpp): x
/// repeated per slot, each expert's FFN assigned to the flat slot rows that
/// picked it, the slots weighted and summed per token. `why` is empty when
/// the ids are not flattened for it.
std::optional<MoeBlock> matchFlatSlotLoopBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                               std::string &why);

/// Matches a mixture computing every expert on every token, weighted by
/// per-expert gate columns (DenseMixtureBlocks.cpp) anchored at TopK node
/// `topk`. `why` is empty when the ids are not read that way.
std::optional<MoeBlock> matchDenseMixtureBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                               std::string &why);

/// Matches the decode-style block whose routed experts' weights are
/// gathered per (token, slot) and contracted by einsums
/// (GatheredStackBlocks.cpp) anchored at TopK node `topk`. `why` is empty
/// when the ids gather no weights for einsums of x.
std::optional<MoeBlock> matchGatheredStackBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                                std::string &why);

/// gpt-oss's clamped SwiGLU on h = the gate/up GEMM's result (with bias):
///   g, u = Slice(h, 0::2), Slice(h, 1::2) along the last axis
///   a = (Clip(u, -L, L) + β) · (g' · Sigmoid(g' · α)), g' = Clip(g, max = L)
/// (the clamps both or neither). Fills α, β, L; returns the product node a,
/// or null with the reason in `why`.
const onnx::NodeProto *matchGptOssActivation(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef h,
                                             MoeBlock::GptOss &oss, llvm::SmallVector<const onnx::NodeProto *> &nodes,
                                             std::string &why);

/// Matches gpt-oss's block (transformers' GptOssExperts, batched_mm)
/// anchored at TopK node `topk`:
///
///   w, e = TopK(logits, k); w = Softmax(w)                (picks, then softmax)
///   rows = Reshape(Expand(Unsqueeze(x, 1), ..), [-1, H])
///   h = Squeeze(MatMul(Unsqueeze(rows, 1), W13[ids]), 1) + b13[ids]
///   g, u = Slice(h, 0::2), Slice(h, 1::2) along the last axis
///   a = (Clip(u, -L, L) + β) · (g' · Sigmoid(g' · α)), g' = Clip(g, max = L)
///   o = Squeeze(MatMul(Unsqueeze(a, 1), W2[ids]), 1) + b2[ids]
///   y = ReduceSum(Reshape(o · Unsqueeze(Reshape(w, [-1]), -1), [-1, k, H]), 1)
///
/// with W[ids] as in matchBlock and an Unsqueeze/Squeeze pair allowed after
/// each bias. The logits stay outside (any computation of them).
std::optional<MoeBlock> matchGptOssBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                         std::string &why);

} // namespace mlir::moe::onnx_import::blocks

#endif // MOE_FRONTEND_ONNX_BLOCKMATCHING_H
