//===- FlatSlotLoopBlocks.cpp - the per-expert loop over flat slot rows ---===//
//
// The PyTorch reference MoE of vLLM's and SGLang's kernel tests (torch_moe,
// torch_naive_moe): x repeated once per slot, the ids flattened, each
// expert's FFN assigned to the slot rows that picked it, then every token's
// slots weighted and summed. After RowMaskCanonicalization:
//
//   a   = Reshape(Tile(x as [T, 1, H], [1, k, 1]), [-1, H])   (or Expand, Flatten)
//   f   = Reshape(ids, [-1])
//   p_e = Squeeze(Transpose(NonZero(Equal(f, e))), 1);  c_e = Unsqueeze(p_e, -1)
//   out = ScatterND(out, c_e, FFN_e(GatherND(a, c_e)))         from zeros, once per expert
//   y   = ReduceSum(Reshape(out, [T, k, H]) * Reshape(w, [T, k, 1]), 1)
//      or ReduceSum(Reshape(out * Reshape(w, [-1, 1]), [T, k, H]), 1)
//
// Slot (t, j) is row t * k + j of every flat tensor and row n of a is
// x[n / k], so y[t] = sum_j w[t, j] FFN_{ids[t, j]}(x[t]): the layer. Every
// size the reading rests on (the unit axis of x's view, the k repeats, the
// [T, k, H] views) is checked; a size the graph computes from x must be
// x's own.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"

#include <map>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace mlir::moe::onnx_import::blocks {
namespace {

/// An element of a shape vector: a known integer, or x's token count T.
constexpr int64_t kTokens = std::numeric_limits<int64_t>::min();

class FlatSlotMatcher {
public:
  FlatSlotMatcher(const GraphIndex &g, const ConstantLookup &constants, int topk)
      : g(g), constants(constants), topk(topk) {}

  std::optional<MoeBlock> match(std::string &why);

private:
  std::optional<MoeBlock> fail(std::string &why, const std::string &reason) {
    why = reason;
    return std::nullopt;
  }

  /// `value` is T, the size of x's axis 0: Gather(Shape(x), 0) or Shape(x)
  /// cut to [0, 1), through Unsqueeze/Squeeze/Reshape.
  bool isTokenCount(llvm::StringRef value) {
    llvm::SmallVector<const onnx::NodeProto *> chain;
    const onnx::NodeProto *n = g.producer(value);
    for (int depth = 0; n && depth < 3 && llvm::is_contained({"Unsqueeze", "Squeeze", "Reshape"}, n->op_type());
         ++depth) {
      chain.push_back(n);
      n = g.producer(inputOf(*n, 0));
    }
    bool gathered = false;
    if (n && n->op_type() == "Gather" && intAttr(*n, "axis", 0) == 0) {
      std::optional<llvm::SmallVector<int64_t>> index = constants(inputOf(*n, 1));
      const onnx::NodeProto *shape = g.producer(inputOf(*n, 0));
      if (!index || index->size() != 1 || (*index)[0] != 0 || !shape || !isWholeShape(*shape) ||
          !block.isX(inputOf(*shape, 0)))
        return false;
      chain.append({n, shape});
      gathered = true;
    }
    // Shape(x, start = 0, end = 1).
    if (!gathered) {
      if (!n || n->op_type() != "Shape" || !block.isX(inputOf(*n, 0)) || intAttr(*n, "start", 0) != 0 ||
          intAttr(*n, "end", 0) != 1)
        return false;
      chain.push_back(n);
    }
    found.append(chain.begin(), chain.end());
    return true;
  }

  /// The elements of a shape vector: known integers or kTokens, from a
  /// constant or a Concat of constants and token counts.
  std::optional<llvm::SmallVector<int64_t>> shapeElements(llvm::StringRef value) {
    if (std::optional<llvm::SmallVector<int64_t>> known = constants(value))
      return known;
    const onnx::NodeProto *concat = g.producer(value);
    if (!concat || concat->op_type() != "Concat")
      return std::nullopt;
    llvm::SmallVector<int64_t> elements;
    for (const std::string &part : concat->input()) {
      if (std::optional<llvm::SmallVector<int64_t>> known = constants(part))
        elements.append(known->begin(), known->end());
      else if (isTokenCount(part))
        elements.push_back(kTokens);
      else
        return std::nullopt;
    }
    found.push_back(concat);
    return elements;
  }

  /// Shape elements [a, b, c] that view T * b rows as [T, b, c]: b as
  /// given with a = T or -1, or b = -1 with a = T.
  static bool viewsTokensBy(const std::optional<llvm::SmallVector<int64_t>> &e, int64_t middle, int64_t width) {
    if (!e || e->size() != 3 || (*e)[2] != width)
      return false;
    return ((*e)[1] == middle && ((*e)[0] == -1 || (*e)[0] == kTokens)) || ((*e)[1] == -1 && (*e)[0] == kTokens);
  }

  /// A target shaping T * k rows (of width `width`) as [T, k, width].
  bool isSlotView(llvm::StringRef target, int64_t width) {
    return viewsTokensBy(shapeElements(target), block.k, width);
  }

  /// x viewed as [T, 1, H]: Unsqueeze(x, 1) or Reshape(x, [T or -1, 1, H])
  /// or Reshape(x, [T, -1, H]).
  bool isUnitColumnView(llvm::StringRef value) {
    const onnx::NodeProto *n = g.producer(value);
    if (!n || !block.isX(inputOf(*n, 0)))
      return false;
    bool view = (n->op_type() == "Unsqueeze" && hasAxis(*n, constants, 1)) ||
                (n->op_type() == "Reshape" && viewsTokensBy(shapeElements(inputOf(*n, 1)), 1, hidden));
    if (view)
      found.push_back(n);
    return view;
  }

  /// a = x repeated k times, row n = x[n / k]: [T, 1, H] broadcast or
  /// tiled along axis 1 to k (Expand, Tile; an Expand to ones is the
  /// identity), flattened to [T * k, H].
  bool isRepeatedX(llvm::StringRef a) {
    const onnx::NodeProto *flat = g.producer(a);
    if (!flat)
      return false;
    if (flat->op_type() == "Reshape") {
      std::optional<llvm::SmallVector<int64_t>> e = shapeElements(inputOf(*flat, 1));
      if (!e || e->size() != 2 || (*e)[1] != hidden || (*e)[0] != -1)
        return false;
    } else if (flat->op_type() != "Flatten" || intAttr(*flat, "axis", 1) != 2) {
      return false;
    }
    found.push_back(flat);
    int64_t repeats = 1;
    std::string v = inputOf(*flat, 0);
    for (int depth = 0; depth < 4; ++depth) {
      const onnx::NodeProto *n = g.producer(v);
      if (!n)
        return false;
      if (n->op_type() == "Tile") {
        std::optional<llvm::SmallVector<int64_t>> r = constants(inputOf(*n, 1));
        if (!r || r->size() != 3 || (*r)[0] != 1 || (*r)[2] != 1 || (*r)[1] < 1)
          return false;
        repeats *= (*r)[1];
      } else if (n->op_type() == "Expand") {
        std::optional<llvm::SmallVector<int64_t>> e = shapeElements(inputOf(*n, 1));
        if (!e || e->size() != 3 || ((*e)[0] != 1 && (*e)[0] != kTokens) || ((*e)[2] != 1 && (*e)[2] != hidden) ||
            (*e)[1] < 1 || ((*e)[1] != 1 && repeats != 1))
          return false;
        repeats = std::max(repeats, (*e)[1]);
      } else {
        break;
      }
      found.push_back(n);
      v = inputOf(*n, 0);
    }
    return repeats == block.k && isUnitColumnView(v);
  }

  /// `value` is the routing weights w [T, k] through Reshapes (row-major
  /// order kept) and float Casts; the last Reshape's target, or "".
  std::string weightsView(llvm::StringRef value, llvm::StringRef w) {
    std::string target;
    llvm::SmallVector<const onnx::NodeProto *> chain;
    std::string v = value.str();
    for (int depth = 0; depth < 4 && v != w; ++depth) {
      const onnx::NodeProto *n = g.producer(v);
      if (!n || (n->op_type() != "Reshape" && n->op_type() != "Cast"))
        return "";
      if (n->op_type() == "Reshape" && target.empty())
        target = inputOf(*n, 1);
      chain.push_back(n);
      v = inputOf(*n, 0);
    }
    if (v != w || target.empty())
      return "";
    found.append(chain.begin(), chain.end());
    return target;
  }

  /// The expert's FFN on its rows: stacked weights gathered at its id
  /// (`index`, the value the ids are compared with), or its own constants;
  /// the FFN's output, or "" (with `why` where the experts differ in form).
  std::string expertOn(llvm::StringRef rows, int64_t e, llvm::StringRef index, std::string &why) {
    if (std::optional<StackedExpert> stacked = own.empty() ? stackedExpert(g, constants, rows, index, found)
                                                           : std::nullopt) {
      if (!block.gateUp.empty() && (block.gateUp != stacked->gateUp || block.down != stacked->down ||
                                    block.activation != stacked->activation || block.ungated != stacked->ungated)) {
        why = "its stacked weights or activation differ from the other experts'";
        return "";
      }
      block.gateUp = stacked->gateUp;
      block.down = stacked->down;
      block.activation = stacked->activation;
      block.ungated = stacked->ungated;
      return stacked->output;
    }
    std::string o;
    if (!block.gateUp.empty()) {
      why = "its weights are not the stacked ones the other experts use";
      return "";
    }
    if (std::optional<OwnExpertFfn> ffn = ownExpertOnRows(g, constants, rows, o, found, {"ScatterND", "Expand"})) {
      own[e] = *ffn;
      return o;
    }
    why = "its rows do not feed an FFN (gated SwiGLU/GeGLU, or ReLU/GELU/SiLU) on its own constant weights or on "
          "stacked weights gathered at its id";
    return "";
  }

  const GraphIndex &g;
  const ConstantLookup &constants;
  int topk;
  MoeBlock block;
  int64_t hidden = -1;
  llvm::SmallVector<const onnx::NodeProto *> found;
  std::map<int64_t, OwnExpertFfn> own;
};

std::optional<MoeBlock> FlatSlotMatcher::match(std::string &why) {
  const onnx::NodeProto &t = g.graph.node(topk);
  // The flat ids: Reshape(ids, [-1]), read only by per-expert Equals.
  const onnx::NodeProto *flatIds = g.onlyUser(outputOf(t, 1), "Reshape");
  if (!flatIds || constants(inputOf(*flatIds, 1)) != llvm::SmallVector<int64_t>{-1})
    return std::nullopt;
  for (int u : g.users(outputOf(*flatIds, 0)))
    if (g.graph.node(u).op_type() != "Equal")
      return std::nullopt;
  std::optional<std::string> routed = matchRouting(g, constants, topk, block, found, why);
  if (!routed)
    return std::nullopt;
  std::optional<llvm::SmallVector<int64_t>> router = constants.shape(block.routerWeight.name);
  if (!router || router->size() != 2)
    return fail(why, "the flat slot loop's router is not one constant weight");
  int64_t experts = (*router)[block.routerWeight.rows ? 0 : 1];
  hidden = (*router)[block.routerWeight.rows ? 1 : 0];
  found.push_back(flatIds);

  // Per expert: its slot rows' column, the rows of a, its FFN, the write.
  struct Step {
    std::string in, out;
  };
  std::map<int64_t, Step> steps;
  std::string repeated;
  for (int u : g.users(outputOf(*flatIds, 0))) {
    const onnx::NodeProto &eq = g.graph.node(u);
    std::string other = inputOf(eq, 0) == outputOf(*flatIds, 0) ? inputOf(eq, 1) : inputOf(eq, 0);
    std::optional<llvm::SmallVector<int64_t>> id = constants(other);
    if (!id || id->size() != 1 || (*id)[0] < 0 || (*id)[0] >= experts || steps.count((*id)[0]))
      return fail(why, "the flat ids are compared with something other than each expert id once");
    int64_t e = (*id)[0];
    std::string expert = "expert " + std::to_string(e) + ": ";
    // (The mask may also be counted, for the Expand of the assigned rows.)
    const onnx::NodeProto *nz = g.userOfType(outputOf(eq, 0), "NonZero");
    const onnx::NodeProto *tr = nz ? g.onlyUser(outputOf(*nz, 0), "Transpose") : nullptr;
    const onnx::NodeProto *sq = tr ? g.onlyUser(outputOf(*tr, 0), "Squeeze") : nullptr;
    const onnx::NodeProto *column = sq ? g.onlyUser(outputOf(*sq, 0), "Unsqueeze") : nullptr;
    if (!column || intsAttr(*tr, "perm") != llvm::SmallVector<int64_t>{1, 0} || !hasAxis(*sq, constants, 1) ||
        !hasAxis(*column, constants, -1))
      return fail(why, expert + "its slot mask is not read as a list of slot rows");
    found.append({&eq, nz, tr, sq, column});
    std::string c = outputOf(*column, 0);
    const onnx::NodeProto *read = g.userOfType(c, "GatherND");
    const onnx::NodeProto *write = g.userOfType(c, "ScatterND");
    if (!read || !write || g.users(c).size() != 2 || intAttr(*read, "batch_dims", 0) != 0 ||
        inputOf(*read, 1) != c || inputOf(*write, 1) != c || stringAttr(*write, "reduction", "none") != "none")
      return fail(why, expert + "its slot rows are not read from one tensor and assigned in another");
    if (repeated.empty()) {
      if (!isRepeatedX(inputOf(*read, 0)))
        return fail(why, "the slot rows are not x repeated k times (row t * k + j = x[t])");
      repeated = inputOf(*read, 0);
    } else if (inputOf(*read, 0) != repeated) {
      return fail(why, expert + "its rows are read from another tensor than the other experts'");
    }
    std::string expertWhy;
    std::string o = expertOn(outputOf(*read, 0), e, other, expertWhy);
    if (o.empty())
      return fail(why, expert + expertWhy);
    // The rows assigned, maybe broadcast to their own [n, H] first.
    std::string written = o;
    if (const onnx::NodeProto *expand = g.onlyUser(o, "Expand")) {
      found.push_back(expand);
      written = outputOf(*expand, 0);
    }
    if (inputOf(*write, 2) != written || g.users(written).size() != 1)
      return fail(why, expert + "its FFN's rows are not what is assigned to its slot rows");
    found.append({read, write});
    steps[e] = Step{inputOf(*write, 0), outputOf(*write, 0)};
  }
  if (static_cast<int64_t>(steps.size()) != experts)
    return fail(why, "the flat slot loop covers " + std::to_string(steps.size()) + " of the router's " +
                         std::to_string(experts) + " experts");
  // The writes chained once each from zeros.
  llvm::StringMap<int64_t> reading;
  for (auto &[e, step] : steps)
    reading[step.in] = e;
  std::string acc;
  for (auto &[e, step] : steps)
    if (!llvm::any_of(steps, [&](auto &s) { return s.second.out == step.in; })) {
      if (!acc.empty())
        return fail(why, "the experts' slot rows are not assigned in one chain");
      acc = step.in;
    }
  const onnx::NodeProto *zeros = acc.empty() ? nullptr : zeroFill(g, constants, acc);
  if ((!zeros && !isZeroConstant(constants, acc)) || reading.size() != steps.size())
    return fail(why, "the experts' slot rows are not assigned into zeros in one chain");
  if (zeros)
    found.push_back(zeros);
  for (size_t i = 0; i < steps.size(); ++i) {
    auto next = reading.find(acc);
    if (next == reading.end())
      return fail(why, "the experts' slot rows are not assigned in one chain");
    acc = steps.at(next->second).out;
  }
  // Weighted and summed over each token's k slots.
  std::string w = *routed, summed;
  // The weights w viewed per slot: [T, k, 1] against [T, k, H] rows, or
  // [-1, 1] against the flat rows.
  auto weightedBy = [&](const onnx::NodeProto &mul, llvm::StringRef value, bool flatRows) {
    std::string other = inputOf(mul, 0) == value ? inputOf(mul, 1) : inputOf(mul, 0);
    std::string target = weightsView(other, w);
    if (target.empty())
      return false;
    return flatRows ? constants(target) == llvm::SmallVector<int64_t>{-1, 1} : isSlotView(target, 1);
  };
  llvm::SmallVector<const onnx::NodeProto *> sumNodes;
  const onnx::NodeProto *view = g.onlyUser(acc, "Reshape");
  const onnx::NodeProto *mul = view ? g.onlyUser(outputOf(*view, 0), "Mul") : g.onlyUser(acc, "Mul");
  // The weighted [T, k, H] rows the sum reads: the product, or its view.
  const onnx::NodeProto *weighted = mul;
  if (view && mul && isSlotView(inputOf(*view, 1), hidden) && weightedBy(*mul, outputOf(*view, 0), false)) {
    found.append({view, mul});
  } else if (!view && mul && weightedBy(*mul, acc, true)) {
    weighted = g.onlyUser(outputOf(*mul, 0), "Reshape");
    if (!weighted || !isSlotView(inputOf(*weighted, 1), hidden))
      return fail(why, "the weighted slot rows are not viewed as [T, k, H]");
    found.append({mul, weighted});
  } else {
    return fail(why, "the slot rows are not weighted by the routing weights viewed per slot");
  }
  const onnx::NodeProto *sum = sumReading(g, outputOf(*weighted, 0), /*onlyUser=*/true, summed, sumNodes);
  // A 16-bit sum widened to f32 and left there (the layer's result is
  // widened the same way).
  const onnx::NodeProto *widen = sum ? nullptr : g.onlyUser(outputOf(*weighted, 0), "Cast");
  if (widen && intAttr(*widen, "to", 0) == onnx::TensorProto::FLOAT &&
      (sum = g.onlyUser(outputOf(*widen, 0), "ReduceSum"))) {
    sumNodes.append({widen, sum});
    summed = outputOf(*sum, 0);
    block.widenedOutput = true;
  }
  if (!sum || !hasAxis(*sum, constants, 1) || intAttr(*sum, "keepdims", 1) != 0)
    return fail(why, "the weighted slots are not summed per token");
  found.append(sumNodes.begin(), sumNodes.end());
  if (!own.empty() && !setOwnExperts(block, own, why))
    return std::nullopt;
  block.output = throughFloatCastUser(g, summed, found);
  block.last = g.indexOf(g.producer(block.output));
  matchSharedExpert(g, block, found);
  return finishBlock(g, std::move(block), found, topk, why);
}

} // namespace

std::optional<MoeBlock> matchFlatSlotLoopBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                               std::string &why) {
  return FlatSlotMatcher(g, constants, topk).match(why);
}

} // namespace mlir::moe::onnx_import::blocks
