//===- RepeatedArgMax.cpp - a top-k picked one ArgMax at a time -----------===//
//
// GShard, fairseq and DeepSpeed pick a token's second expert with a second
// ArgMax over its scores with the first pick removed, and read each pick's
// score back through its one-hot (PyTorch, as either exporter writes it):
//
//   i1 = ArgMax(g);  m1 = OneHot(i1) or Equal(Unsqueeze(i1, -1), arange(E))
//   i2 = ArgMax(Where(m1, -inf, logits))      (or ArgMax(g * (1 - m1)))
//   g1 = ReduceSum(g * Cast(m1), -1)
//
// Once the first ArgMax is TopK(g, 1) (SelectionCanonicalization.cpp), the
// j-th ArgMax over the scores with picks 0..j-1 removed is column j of
// TopK(g, j + 1), and a pick's score read through its one-hot is that
// column of the TopK's values. The readers of the narrower TopK read the
// first j columns of the wider one.
//
// Removing picks keeps the other scores' order, and ArgMax's first maximum
// and TopK's lower-index-first ties agree. The removed scores may be the
// logits of a softmax or sigmoid the TopK ranks: those keep the logits'
// order except where two logits round to one probability, where the TopK
// names the lower index and the ArgMax the larger logit (the raising check
// compares both). A removal by multiplication zeroes the pick, so it is
// taken only over softmax or sigmoid scores, which are never negative.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"
#include "GraphCanonicalization.h"
#include "GraphEditor.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallBitVector.h"

#include <limits>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

class RepeatedArgMaxRewriter : public GraphEditor {
public:
  using GraphEditor::GraphEditor;

  /// Widens at most one TopK per ArgMax it can read (one ArgMax per TopK).
  int64_t widen();
  /// Reads picked scores as the TopK's value columns.
  int64_t readPickedScores();

private:
  /// The pick a one-hot mask marks: Equal(kept column, arange(E)) or
  /// OneHot(squeezed column, E, [0, 1]), through Casts. Indices only.
  std::optional<TopKColumn> maskPick(llvm::StringRef mask) const;
  /// The value a softmax or sigmoid over the last axis is of; `v` otherwise.
  std::string orderSource(llvm::StringRef v) const;
  bool neverNegative(llvm::StringRef v) const { return orderSource(v) != v; }
};

std::optional<TopKColumn> RepeatedArgMaxRewriter::maskPick(llvm::StringRef mask) const {
  std::string v = mask.str();
  while (const onnx::NodeProto *cast = producerOf(v, "Cast"))
    v = cast->input(0);
  std::optional<TopKColumn> pick;
  if (const onnx::NodeProto *eq = producerOf(v, "Equal"); eq && eq->input_size() == 2) {
    for (int side = 0; side < 2 && !pick; ++side) {
      std::optional<llvm::SmallVector<int64_t>> range = ints(eq->input(1 - side));
      bool arange = range && !range->empty();
      for (int64_t i = 0; arange && i < static_cast<int64_t>(range->size()); ++i)
        arange = (*range)[i] == i;
      std::optional<TopKColumn> c = arange ? columnOf(eq->input(side)) : std::nullopt;
      if (c && !c->squeezed)
        pick = c;
    }
  } else if (const onnx::NodeProto *oneHot = producerOf(v, "OneHot");
             oneHot && oneHot->input_size() == 3 && blocks::intAttr(*oneHot, "axis", -1) == -1) {
    std::optional<llvm::SmallVector<int64_t>> values = ints(oneHot->input(2));
    std::optional<TopKColumn> c = columnOf(oneHot->input(0));
    if (values && *values == llvm::SmallVector<int64_t>{0, 1} && c && c->squeezed)
      pick = c;
  }
  if (!pick || pick->of.output != 1 || pick->of.source != pick->of.topk->output(1))
    return std::nullopt;
  return pick;
}

std::string RepeatedArgMaxRewriter::orderSource(llvm::StringRef v) const {
  const ValueFacts *f = factsOf(v);
  if (!f || f->rank < 1)
    return v.str();
  if (const onnx::NodeProto *sigmoid = producerOf(v, "Sigmoid"))
    return sigmoid->input(0);
  const onnx::NodeProto *softmax = producerOf(v, "Softmax");
  // Softmax's axis -1 (opset 13) or 1 of a 2-D input (before).
  if (softmax && normalizedAxes({blocks::intAttr(*softmax, "axis", ctx.opset >= 13 ? -1 : 1)}, f->rank) ==
                     llvm::SmallVector<int64_t>{f->rank - 1} &&
      (ctx.opset >= 13 || f->rank == 2))
    return softmax->input(0);
  return v.str();
}

int64_t RepeatedArgMaxRewriter::widen() {
  llvm::DenseSet<const onnx::NodeProto *> widened;
  for (const onnx::NodeProto &argmax : graph.node()) {
    const ValueFacts *in = argmax.input_size() == 1 ? factsOf(argmax.input(0)) : nullptr;
    if (!isStandardNode(argmax) || argmax.op_type() != "ArgMax" || argmax.output_size() != 1 || !in ||
        !isFloatType(in->dataType) || in->rank < 1 || static_cast<int64_t>(in->dims.size()) != in->rank ||
        blocks::intAttr(argmax, "select_last_index", 0) != 0 ||
        normalizedAxes({blocks::intAttr(argmax, "axis", 0)}, in->rank) != llvm::SmallVector<int64_t>{in->rank - 1})
      continue;
    // The removals: Where(mask, -inf, rest) or Mul(rest, 1 - mask), nested.
    std::string base = argmax.input(0);
    llvm::SmallVector<TopKColumn> picks;
    bool byMultiplication = false;
    while (true) {
      if (const onnx::NodeProto *where = producerOf(base, "Where"); where && where->input_size() == 3) {
        std::optional<double> fill = fillValue(where->input(1));
        std::optional<TopKColumn> pick = maskPick(where->input(0));
        if (fill && *fill <= -double(std::numeric_limits<float>::max()) && pick) {
          picks.push_back(*pick);
          base = where->input(2);
          continue;
        }
      }
      if (const onnx::NodeProto *mul = producerOf(base, "Mul"); mul && mul->input_size() == 2) {
        std::optional<TopKColumn> pick;
        int side = 0;
        for (; side < 2 && !pick; ++side) {
          const onnx::NodeProto *sub = producerOf(mul->input(side), "Sub");
          if (sub && sub->input_size() == 2 && fillValue(sub->input(0)) == std::optional<double>(1.0))
            pick = maskPick(sub->input(1));
        }
        if (pick) {
          picks.push_back(*pick);
          base = mul->input(2 - side);
          byMultiplication = true;
          continue;
        }
      }
      break;
    }
    if (picks.empty())
      continue;
    const onnx::NodeProto *topk = picks.front().of.topk;
    std::optional<TopKColumns> all = columnsOf(topk->output(1));
    int64_t k = all ? all->width : 0;
    llvm::SmallBitVector removed(std::max<int64_t>(k, 1));
    bool ok = k >= 1 && !widened.contains(topk);
    for (const TopKColumn &p : picks) {
      ok = ok && p.of.topk == topk && p.column() < k && !removed.test(p.column());
      if (ok)
        removed.set(p.column());
    }
    const std::string &scores = topk->input(0);
    const ValueFacts *scoreFacts = factsOf(scores);
    if (!ok || !removed.all() || orderSource(base) != orderSource(scores) ||
        (byMultiplication && !neverNegative(base)) || !scoreFacts || scoreFacts->dims != in->dims ||
        in->dims.back() <= k)
      continue;
    widened.insert(topk);
    std::string name = topk->name().empty() ? topk->output(1) : topk->name();
    std::string values = fresh(topk->output(1) + "/wide_values"), indices = fresh(topk->output(1) + "/wide_indices");
    onnx::NodeProto wide = *topk;
    wide.set_name(name + "/widened");
    wide.set_input(1, constant({k + 1}, "moe_topk_k"));
    wide.set_output(0, values);
    wide.set_output(1, indices);
    std::vector<onnx::NodeProto> nodes = {wide};
    for (int i = 0; i < 2; ++i)
      if (!topk->output(i).empty())
        nodes.push_back(lastAxisSlice(i ? indices : values, 0, k, topk->output(i), name + "/first_columns"));
    replace(*topk, std::move(nodes));
    bool keep = blocks::intAttr(argmax, "keepdims", 1) != 0;
    std::string column = keep ? argmax.output(0) : fresh(argmax.output(0) + "/column");
    std::vector<onnx::NodeProto> pick = {lastAxisSlice(indices, k, k + 1, column, argmax.name() + "/as_column")};
    if (!keep)
      pick.push_back(squeeze(column, {-1}, argmax.output(0), argmax.name() + "/squeeze"));
    replace(argmax, std::move(pick));
  }
  return static_cast<int64_t>(widened.size());
}

/// An Einsum of two operands with one subscript list, summing its last
/// letter ("se,se->s").
static bool isRowDot(const onnx::NodeProto &einsum) {
  std::string eq;
  for (char c : blocks::stringAttr(einsum, "equation", ""))
    if (c != ' ')
      eq.push_back(c);
  size_t comma = eq.find(','), arrow = eq.find("->");
  if (comma == std::string::npos || arrow == std::string::npos || arrow < comma)
    return false;
  std::string a = eq.substr(0, comma), b = eq.substr(comma + 1, arrow - comma - 1), out = eq.substr(arrow + 2);
  return a == b && !a.empty() && a.find('.') == std::string::npos && out == a.substr(0, a.size() - 1);
}

int64_t RepeatedArgMaxRewriter::readPickedScores() {
  int64_t rewrites = 0;
  for (const onnx::NodeProto &read : graph.node()) {
    if (!isStandardNode(read) || read.output_size() != 1)
      continue;
    // The scores and the pick they are read at: sum(s * mask, -1) or
    // einsum('se,se->s', s, mask) (pick squeezed, or kept with keepdims),
    // or GatherElements(s, kept column, axis -1).
    llvm::SmallVector<std::pair<std::string, std::string>, 2> candidates;
    bool keep = false, gathered = false;
    if (read.op_type() == "ReduceSum" && read.input_size() >= 1) {
      const ValueFacts *in = factsOf(read.input(0));
      std::optional<llvm::SmallVector<int64_t>> axes = axesOf(read);
      const onnx::NodeProto *mul = in && axes ? producerOf(read.input(0), "Mul") : nullptr;
      if (!mul || mul->input_size() != 2 ||
          normalizedAxes(*axes, in->rank) != llvm::SmallVector<int64_t>{in->rank - 1})
        continue;
      candidates = {{mul->input(0), mul->input(1)}, {mul->input(1), mul->input(0)}};
      keep = blocks::intAttr(read, "keepdims", 1) != 0;
    } else if (read.op_type() == "Einsum" && read.input_size() == 2 && isRowDot(read)) {
      candidates = {{read.input(0), read.input(1)}, {read.input(1), read.input(0)}};
    } else if (read.op_type() == "GatherElements" && read.input_size() == 2) {
      const ValueFacts *in = factsOf(read.input(0));
      if (!in || normalizedAxes({blocks::intAttr(read, "axis", 0)}, in->rank) !=
                     llvm::SmallVector<int64_t>{in->rank - 1})
        continue;
      candidates = {{read.input(0), read.input(1)}};
      keep = gathered = true;
    } else {
      continue;
    }
    for (auto [scores, at] : candidates) {
      std::optional<TopKColumn> pick = gathered ? columnOf(at) : maskPick(at);
      const ValueFacts *scoreFacts = factsOf(scores), *atFacts = factsOf(at);
      if (!pick || pick->of.output != 1 || pick->of.source != pick->of.topk->output(1) ||
          (gathered && pick->squeezed) || pick->of.topk->input(0) != scores || !scoreFacts || !atFacts ||
          scoreFacts->rank != atFacts->rank)
        continue;
      auto *topk = const_cast<onnx::NodeProto *>(pick->of.topk);
      if (topk->output(0).empty())
        topk->set_output(0, fresh(topk->output(1) + "/values"));
      std::string column = keep ? read.output(0) : fresh(read.output(0) + "/column");
      std::vector<onnx::NodeProto> nodes = {
          lastAxisSlice(topk->output(0), pick->column(), pick->column() + 1, column, read.name() + "/as_column")};
      if (!keep)
        nodes.push_back(squeeze(column, {-1}, read.output(0), read.name() + "/squeeze"));
      replace(read, std::move(nodes));
      ++rewrites;
      break;
    }
  }
  return rewrites;
}

} // namespace

int64_t mlir::moe::onnx_import::canonicalizeRepeatedArgMax(onnx::GraphProto &graph,
                                                           const CanonicalizationContext &ctx,
                                                           llvm::StringMap<ValueFacts> &facts,
                                                           llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  if (ctx.opset < 13)
    return 0;
  int64_t total = 0;
  // One more column per round: a third ArgMax reads the second's TopK.
  while (true) {
    RepeatedArgMaxRewriter rewriter(graph, ctx, facts, made);
    int64_t widened = rewriter.widen();
    rewriter.commit();
    if (widened == 0)
      break;
    total += widened;
    facts = inferValueFactsWith(graph, ctx, made);
  }
  if (total == 0)
    return 0;
  RepeatedArgMaxRewriter reader(graph, ctx, facts, made);
  total += reader.readPickedScores();
  reader.commit();
  facts = inferValueFactsWith(graph, ctx, made);
  return total;
}
