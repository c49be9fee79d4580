//===- RowMaskCanonicalization.cpp - boolean row masks as token lists -----===//
//
// `y[rows] += f(x[rows])` with a boolean mask `rows` [T] exports as
// NonZero(rows) read in several spellings: Transpose(NonZero(rows)) [n, 1]
// used directly as GatherND indices (TorchScript), or squeezed to the token
// list [n] and unsqueezed back (dynamo, through a one-input Max and an
// Expand to its own shape). The write is a ScatterND of every element of
// the selected rows,
//
//   ScatterND(y, Transpose(NonZero(Expand(Unsqueeze(rows, -1), Shape(y)))),
//             Reshape(y[rows] + d, [-1]))
//
// (the flat updates maybe cut to their length by a Slice, or expanded to
// [n, H] first). The block matchers read one spelling: the token list
// t = Squeeze(Transpose(NonZero(rows)), 1), its column Unsqueeze(t, -1) as
// the indices, and the write as the row scatter ScatterND(y, column,
// y[rows] + d): NonZero lists the selected rows' elements in row-major
// order, which is the order of the flattened [n, H] rows. Rows assigned,
// out[rows] = f(x[rows]) (into zeros or into earlier assignments), become
// ScatterND(out, column, R) the same way.
//
// A row scatter into zeros scaled by a per-token column c [T, 1] (the
// expert's gate: y += c * out) is the scatter of the scaled rows:
//
//   Mul(c, ScatterND(zeros, column, R)) -> ScatterND(zeros, column, c[column] * R)
//
// (the other rows are c * 0 = 0 for finite c), index_put into zeros as
// the block matchers read it. A chain of row assignments into the zeros
// (every expert writing into one buffer, Switch-style, then scaled by the
// top-1 weight) is scaled link by link the same way: each row ends as c
// times the last rows written to it either way.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"
#include "GraphCanonicalization.h"
#include "GraphEditor.h"

#include "llvm/ADT/MapVector.h"

#include <map>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

class RowMaskRewriter : public GraphEditor {
public:
  using GraphEditor::GraphEditor;

  int64_t run() {
    // Per mask, the nodes reading it through a column, each with its new
    // inputs, in graph order.
    llvm::MapVector<std::string, llvm::SmallVector<std::pair<const onnx::NodeProto *, onnx::NodeProto>>,
                    std::map<std::string, unsigned>>
        edits;
    for (const onnx::NodeProto &n : graph.node()) {
      if (!isStandardNode(n) || n.input_size() < 2)
        continue;
      if (n.op_type() == "ScatterND")
        if (std::optional<std::pair<std::string, std::string>> write = maskedRowWrite(n)) {
          onnx::NodeProto scatter = n;
          scatter.set_input(2, write->second);
          edits[write->first].push_back({&n, std::move(scatter)});
          continue;
        }
      if (n.op_type() != "GatherND" && n.op_type() != "ScatterND")
        continue;
      if (blocks::intAttr(n, "batch_dims", 0) != 0)
        continue;
      std::optional<std::string> mask = columnMask(n.input(1));
      // A column that is already the canonical one stays.
      if (!mask || isCanonicalColumn(n.input(1), *mask))
        continue;
      edits[*mask].push_back({&n, n});
    }
    for (auto &[mask, readers] : edits) {
      // The token list and its column, made where the first reader is.
      const std::string &base = mask;
      std::string nz = fresh(base + "/rows_nonzero"), tr = fresh(base + "/rows_transposed"),
                  tokens = fresh(base + "/row_tokens"), column = fresh(base + "/row_column");
      std::vector<onnx::NodeProto> made = {node("NonZero", {mask}, nz, nz)};
      onnx::NodeProto transpose = node("Transpose", {nz}, tr, tr);
      onnx::AttributeProto *perm = transpose.add_attribute();
      perm->set_name("perm");
      perm->set_type(onnx::AttributeProto::INTS);
      perm->add_ints(1);
      perm->add_ints(0);
      made.push_back(std::move(transpose));
      made.push_back(squeeze(tr, {1}, tokens, tokens));
      made.push_back(squeeze(tokens, {-1}, column, column, /*unsqueeze=*/true));
      for (auto &[at, rewritten] : readers) {
        rewritten.set_input(1, column);
        std::vector<onnx::NodeProto> nodes;
        if (!made.empty())
          nodes.swap(made);
        nodes.push_back(std::move(rewritten));
        replace(*at, std::move(nodes));
      }
    }
    return commit();
  }

private:
  /// Shape(v) of all of v's axes.
  const onnx::NodeProto *wholeShape(llvm::StringRef shape) const {
    const onnx::NodeProto *n = producerOf(shape, "Shape");
    return n && blocks::isWholeShape(*n) ? n : nullptr;
  }

  bool isRowMask(llvm::StringRef m) const {
    const ValueFacts *f = factsOf(m);
    return f && f->rank == 1;
  }

  /// Transpose(NonZero(m), [1, 0]) of a 1-D m: m, else nullopt.
  std::optional<std::string> transposedNonZero(llvm::StringRef v) const {
    const onnx::NodeProto *tr = producerOf(v, "Transpose");
    const onnx::NodeProto *nz = tr ? producerOf(tr->input(0), "NonZero") : nullptr;
    if (!nz || blocks::intsAttr(*tr, "perm") != llvm::SmallVector<int64_t>{1, 0} || !isRowMask(nz->input(0)))
      return std::nullopt;
    return nz->input(0);
  }

  /// The mask whose token list `v` is: Squeeze(Transpose(NonZero(m)), 1),
  /// maybe through a one-input Max or Min and Expands to a shape of the
  /// same list (identities).
  std::optional<std::string> tokenListMask(llvm::StringRef v, int depth = 4) const {
    if (depth == 0)
      return std::nullopt;
    if (const onnx::NodeProto *sq = producerOf(v, "Squeeze")) {
      std::optional<llvm::SmallVector<int64_t>> axes = axesOf(*sq);
      if (!axes || normalizedAxes(*axes, 2) != llvm::SmallVector<int64_t>{1})
        return std::nullopt;
      return transposedNonZero(sq->input(0));
    }
    for (const char *op : {"Max", "Min"})
      if (const onnx::NodeProto *one = producerOf(v, op); one && one->input_size() == 1)
        return tokenListMask(one->input(0), depth - 1);
    if (const onnx::NodeProto *expand = producerOf(v, "Expand")) {
      const onnx::NodeProto *shape = wholeShape(expand->input(1));
      std::optional<std::string> of = tokenListMask(expand->input(0), depth - 1);
      if (!shape || !of || tokenListMask(shape->input(0), depth - 1) != of)
        return std::nullopt;
      return of;
    }
    return std::nullopt;
  }

  /// The mask `v` is the token column [n, 1] of: Transpose(NonZero(m)) or
  /// Unsqueeze(token list, -1).
  std::optional<std::string> columnMask(llvm::StringRef v) const {
    if (std::optional<std::string> m = transposedNonZero(v))
      return m;
    const onnx::NodeProto *unsq = producerOf(v, "Unsqueeze");
    std::optional<llvm::SmallVector<int64_t>> axes = unsq ? axesOf(*unsq) : std::nullopt;
    if (!axes || normalizedAxes(*axes, 2) != llvm::SmallVector<int64_t>{1})
      return std::nullopt;
    return tokenListMask(unsq->input(0));
  }

  /// Unsqueeze(Squeeze(Transpose(NonZero(m)), 1), -1): what run() makes.
  bool isCanonicalColumn(llvm::StringRef v, llvm::StringRef m) const {
    const onnx::NodeProto *unsq = producerOf(v, "Unsqueeze");
    const onnx::NodeProto *sq = unsq ? producerOf(unsq->input(0), "Squeeze") : nullptr;
    return sq && transposedNonZero(sq->input(0)) == m.str();
  }

  /// `rows` may be [n, H] rows of the [T, H] `data`: rank 2 and width H
  /// where the facts know them.
  bool sameWidth(llvm::StringRef rows, llvm::StringRef data) const {
    const ValueFacts *r = factsOf(rows), *d = factsOf(data);
    if (!r || r->rank < 0)
      return true;
    if (r->rank != 2)
      return false;
    int64_t width = r->dims.size() == 2 ? r->dims[1] : -1, dataWidth = d && d->dims.size() == 2 ? d->dims[1] : -1;
    return width < 0 || dataWidth < 0 || width == dataWidth;
  }

  /// ScatterND(y, elements of the rows m selects, flat(y[m] + d) or, into
  /// zeros, flat(R)): (m, the rows y[m] + d or R), else nullopt.
  std::optional<std::pair<std::string, std::string>> maskedRowWrite(const onnx::NodeProto &scatter) const {
    const ValueFacts *data = factsOf(scatter.input(0));
    if (!data || data->rank != 2 || blocks::stringAttr(scatter, "reduction", "none") != "none" ||
        scatter.input_size() != 3)
      return std::nullopt;
    // Every element of the selected rows: Expand(Unsqueeze(m, -1), Shape(y)).
    const onnx::NodeProto *tr = producerOf(scatter.input(1), "Transpose");
    const onnx::NodeProto *nz = tr ? producerOf(tr->input(0), "NonZero") : nullptr;
    const onnx::NodeProto *expand = nz ? producerOf(nz->input(0), "Expand") : nullptr;
    const onnx::NodeProto *unsq = expand ? producerOf(expand->input(0), "Unsqueeze") : nullptr;
    const onnx::NodeProto *shape = expand ? wholeShape(expand->input(1)) : nullptr;
    std::optional<llvm::SmallVector<int64_t>> axes = unsq ? axesOf(*unsq) : std::nullopt;
    if (!unsq || !shape || shape->input(0) != scatter.input(0) || !axes ||
        normalizedAxes(*axes, 2) != llvm::SmallVector<int64_t>{1} ||
        blocks::intsAttr(*tr, "perm") != llvm::SmallVector<int64_t>{1, 0} || !isRowMask(unsq->input(0)))
      return std::nullopt;
    std::string mask = unsq->input(0);
    // The flat updates: Reshape(rows, [-1]), maybe cut from 0 by a Slice,
    // the rows maybe expanded first.
    std::string flat = scatter.input(2);
    if (const onnx::NodeProto *slice = producerOf(flat, "Slice")) {
      std::optional<llvm::SmallVector<int64_t>> starts = ints(slice->input(1));
      bool stepOne = slice->input_size() < 5 || slice->input(4).empty() ||
                     ints(slice->input(4)) == llvm::SmallVector<int64_t>{1};
      if (!starts || *starts != llvm::SmallVector<int64_t>{0} || !stepOne)
        return std::nullopt;
      flat = slice->input(0);
    }
    const onnx::NodeProto *reshape = producerOf(flat, "Reshape");
    if (!reshape || ints(reshape->input(1)) != llvm::SmallVector<int64_t>{-1})
      return std::nullopt;
    std::string written = reshape->input(0), rows = written;
    if (const onnx::NodeProto *broadcast = producerOf(rows, "Expand"))
      rows = broadcast->input(0);
    // y[m] + d is [n, H] wherever the graph is valid: a broadcast of the
    // [n, H] rows read, expanded or cut to n·H elements.
    const onnx::NodeProto *sum = producerOf(rows, "Add");
    for (int side = 0; sum && side < 2; ++side) {
      const onnx::NodeProto *read = producerOf(sum->input(side), "GatherND");
      if (read && read->input(0) == scatter.input(0) && blocks::intAttr(*read, "batch_dims", 0) == 0 &&
          columnMask(read->input(1)) == mask)
        return std::make_pair(mask, rows);
    }
    // Assigned (into zeros or any y), any rows [n, H]: the flat elements
    // of [n, H] rows in row-major order are the selected rows' elements in
    // NonZero's order (the row scatter checks both sizes, at import or by
    // the run: rows of another shape are an error, never a read outside
    // them).
    if (sameWidth(written, scatter.input(0)))
      return std::make_pair(mask, written);
    return std::nullopt;
  }
};

/// Mul(c, ScatterND(zeros, column, R)) -> ScatterND(zeros, column,
/// GatherND(c, column) * R) for a column c [T, 1], through a chain of such
/// writes (see the file comment).
class ScaledRowScatterRewriter : public GraphEditor {
public:
  using GraphEditor::GraphEditor;

  int64_t run() {
    for (const onnx::NodeProto &mul : graph.node()) {
      if (!isStandardNode(mul) || mul.op_type() != "Mul" || mul.input_size() != 2)
        continue;
      for (int side = 0; side < 2; ++side) {
        // The chain of row writes into the zeros, first write first; each
        // link read only by the next.
        llvm::SmallVector<const onnx::NodeProto *> chain;
        std::string link = mul.input(side);
        while (const onnx::NodeProto *scatter = producerOf(link, "ScatterND")) {
          if (!onlyRead(link) || !writesRows(*scatter))
            break;
          chain.insert(chain.begin(), scatter);
          link = scatter->input(0);
        }
        std::string scale = mul.input(1 - side);
        if (chain.empty() || fillValue(link) != 0.0 || !isScaleColumn(scale, link) ||
            (chain.size() > 1 && isFlattenedSlots(scale)))
          continue;
        std::vector<onnx::NodeProto> nodes;
        std::string written = link;
        for (auto [i, scatter] : llvm::enumerate(chain)) {
          std::string column = scatter->input(1), rows = scatter->input(2);
          // Rows expanded to [n, H]: the product broadcasts them the same
          // way when they are H wide already (a width above 1 that the
          // Expand accepts is H; width 1 would stay 1 in the product).
          if (const onnx::NodeProto *expand = producerOf(rows, "Expand")) {
            const ValueFacts *in = factsOf(expand->input(0)), *z = factsOf(link);
            int64_t width = in && in->rank >= 1 && in->rank <= 2 && int64_t(in->dims.size()) == in->rank
                                ? in->dims.back()
                                : -1;
            int64_t zWidth = z->dims.size() == 2 ? z->dims[1] : -1;
            if (width > 1 || (width == 1 && zWidth == 1))
              rows = expand->input(0);
          }
          std::string gathered = fresh(mul.output(0) + "/rows_scale"),
                      scaled = fresh(mul.output(0) + "/rows_scaled");
          std::string out = i + 1 == chain.size() ? mul.output(0) : fresh(mul.output(0) + "/rows_written");
          nodes.push_back(node("GatherND", {scale, column}, gathered, gathered));
          nodes.push_back(node("Mul", {gathered, rows}, scaled, scaled));
          nodes.push_back(node("ScatterND", {written, column, scaled}, out, fresh(mul.output(0) + "/rows_scatter")));
          written = out;
        }
        replace(mul, std::move(nodes));
        break;
      }
    }
    return commit();
  }

private:
  /// `scatter` assigns rows at a column [n, 1] of a [T, H] value.
  bool writesRows(const onnx::NodeProto &scatter) const {
    const ValueFacts *z = factsOf(scatter.input(0)), *column = factsOf(scatter.input(1));
    return scatter.input_size() == 3 && blocks::stringAttr(scatter, "reduction", "none") == "none" && z &&
           z->rank == 2 && column && column->rank == 2 && column->dims.size() == 2 && column->dims[1] == 1;
  }
  /// `scale` is w.view(-1, 1) of a [T, k] w: the weights of flattened slot
  /// rows, which the flat slot loop's matcher reads as that product
  /// (FlatSlotLoopBlocks.cpp).
  bool isFlattenedSlots(llvm::StringRef scale) const {
    const onnx::NodeProto *view = producerOf(scale, "Reshape");
    const ValueFacts *from = view ? factsOf(view->input(0)) : nullptr;
    return from && from->rank >= 2;
  }
  /// `scale` is a float [a, b] broadcast to the [T, H] `zeros` (a is T or
  /// 1, b is H or 1: where a is 1, GatherND clamps every token to that one
  /// row, which is the broadcast).
  bool isScaleColumn(llvm::StringRef scale, llvm::StringRef zeros) const {
    const ValueFacts *z = factsOf(zeros), *c = factsOf(scale);
    return z && z->rank == 2 && c && c->rank == 2 && isFloatType(c->dataType);
  }
};

} // namespace

int64_t mlir::moe::onnx_import::canonicalizeRowMasks(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                                     llvm::StringMap<ValueFacts> &facts,
                                                     llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  int64_t rewrites = runRewriter<RowMaskRewriter>(graph, ctx, facts, made, /*minOpset=*/11);
  return rewrites + runRewriter<ScaledRowScatterRewriter>(graph, ctx, facts, made, /*minOpset=*/11);
}
