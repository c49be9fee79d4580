//===- SlotCells.cpp - expert outputs written into (token, slot) cells ----===//
//
// A PyTorch MoE loop may write each expert's outputs into the cells of a
// [T, k, H] buffer and weight the slots afterwards:
//
//   cells = zeros(T, k, H)
//   for e, expert in enumerate(experts):
//       tok, slot = torch.where(idx == e)
//       cells[tok, slot] = expert(x[tok])
//   y = (cells * w.unsqueeze(-1)).sum(1)
//
// exported as a chain of ScatterND (indices Concat(tok, slot)) and
// ReduceSum(Mul(cells, Unsqueeze(w, -1)), 1). Each expert writes other cells
// (idx[t, j] names one expert; the experts' numbers are distinct), so this
// is the index_add_ loop the expert-loop matcher reads:
//
//   y = zeros(T, H)
//   for e: y = ScatterND(y, tok, w[tok, slot] * expert(x[tok]), add)
//
// The sums of a token's slots are then done in the experts' order rather
// than the slots' (the same terms; for k = 2 the same result); a layer
// raised from it sums in slot order again, as the cells form does.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"
#include "GraphCanonicalization.h"
#include "GraphEditor.h"

#include "llvm/ADT/DenseSet.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// Column `column` of Transpose(NonZero(mask), [1, 0]).
struct NonZeroColumn {
  const onnx::NodeProto *nonZero = nullptr;
  int64_t column = -1;
};

/// One write of an expert's rows into the cells: ScatterND(cells,
/// Concat(token, slot) columns, rows); `token` and `slot` are the [n]
/// columns of torch.where(idx == e).
struct CellWrite {
  const onnx::NodeProto *scatter = nullptr;
  std::string indices, rows, token, slot;
};

class SlotCellRewriter : public GraphEditor {
public:
  using GraphEditor::GraphEditor;

  int64_t run() {
    for (const onnx::NodeProto &n : graph.node())
      if (isStandardNode(n) && n.op_type() == "ReduceSum")
        rewriteFrom(n);
    return commit();
  }

private:
  void rewriteFrom(const onnx::NodeProto &sum) {
    // ReduceSum(Mul(cells, Unsqueeze(w, -1)), [1], keepdims 0).
    std::optional<llvm::SmallVector<int64_t>> axes = axesOf(sum);
    const onnx::NodeProto *mul = sum.input_size() > 0 ? producerOf(sum.input(0), "Mul") : nullptr;
    if (!axes || axes->size() != 1 || ((*axes)[0] != 1 && (*axes)[0] != -2) ||
        blocks::intAttr(sum, "keepdims", 1) != 0 || !mul || !onlyRead(sum.input(0)) || mul->input_size() != 2)
      return;
    for (int side = 0; side < 2; ++side) {
      const onnx::NodeProto *unsqueeze = producerOf(mul->input(1 - side), "Unsqueeze");
      std::optional<llvm::SmallVector<int64_t>> unsqueezed = unsqueeze ? axesOf(*unsqueeze) : std::nullopt;
      if (unsqueezed && unsqueezed->size() == 1 && ((*unsqueezed)[0] == -1 || (*unsqueezed)[0] == 2))
        if (rewrite(sum, *mul, mul->input(side), unsqueeze->input(0)))
          return;
    }
  }

  bool rewrite(const onnx::NodeProto &sum, const onnx::NodeProto &mul, const std::string &cells,
               const std::string &weights) {
    // The chain of writes back to the zero-filled [T, k, H] buffer.
    llvm::SmallVector<CellWrite> writes;
    std::string at = cells;
    while (const onnx::NodeProto *scatter = producerOf(at, "ScatterND")) {
      if (blocks::stringAttr(*scatter, "reduction", "none") != "none" || scatter->input_size() != 3 ||
          replaced(*scatter))
        return false;
      writes.push_back({scatter, scatter->input(1), scatter->input(2)});
      at = scatter->input(0);
    }
    std::reverse(writes.begin(), writes.end());
    const ValueFacts *base = factsOf(at), *w = factsOf(weights);
    if (writes.empty() || fillValue(at) != 0.0 || !base || base->rank != 3 || !w || w->rank != 2)
      return false;
    for (CellWrite &write : writes)
      write.rows = unreshapedRows(write.rows, base->dims[2]);
    // Every write covers the cells one expert's number has in one [T, k]
    // index tensor; the numbers are distinct.
    std::string selection;
    llvm::DenseSet<int64_t> experts;
    for (CellWrite &write : writes) {
      std::optional<std::pair<std::string, int64_t>> hits = expertCells(write);
      if (!hits || (!selection.empty() && hits->first != selection) || !experts.insert(hits->second).second)
        return false;
      selection = hits->first;
    }
    const ValueFacts *idx = factsOf(selection);
    if (!idx || idx->rank != 2 || !dimsAgree(*idx, *w))
      return false;
    // The weights must exist where the first write is: they are read there.
    if (!definedBefore(weights, *writes.front().scatter))
      return false;

    // The sum starts from zeros shaped like the layer's input, whose rows
    // the first expert reads by its token column.
    std::string input = rowsSource(writes.front().token);
    const ValueFacts *inputFacts = input.empty() ? nullptr : factsOf(input);
    if (!inputFacts || inputFacts->rank != 2 || !definedBefore(input, *writes.front().scatter))
      return false;
    std::string shape = fresh(sum.output(0) + "/slot_cells_shape"), acc = fresh(sum.output(0) + "/slot_cells_zeros");
    std::vector<onnx::NodeProto> first = {node("Shape", {input}, shape, shape),
                                          zerosOfShape(shape, inputFacts->dataType, acc)};
    for (auto [i, write] : llvm::enumerate(writes)) {
      std::string base = sum.output(0) + "/slot_cells_" + std::to_string(i);
      std::string token = fresh(base + "_token"), slot = fresh(base + "_slot"), cell = fresh(base + "_cell"),
                  picked = fresh(base + "_weight"), column = fresh(base + "_weight_column"),
                  scaled = fresh(base + "_rows"), next = fresh(base + "_sum");
      // The write stays: the cells may be read elsewhere (TorchScript reads
      // their shape); unread, it goes with the Mul.
      std::vector<onnx::NodeProto> nodes = {*write.scatter};
      if (i == 0)
        nodes.insert(nodes.end(), first.begin(), first.end());
      // w[tok, slot] from the columns themselves (TorchScript's indices
      // pass through Expands the matchers do not read).
      nodes.push_back(squeeze(write.token, {-1}, token, token, /*unsqueeze=*/true));
      nodes.push_back(squeeze(write.slot, {-1}, slot, slot, /*unsqueeze=*/true));
      onnx::NodeProto pair = node("Concat", {token, slot}, cell, cell);
      setIntAttribute(pair, "axis", -1);
      nodes.push_back(pair);
      nodes.push_back(node("GatherND", {weights, cell}, picked, picked));
      nodes.push_back(squeeze(picked, {-1}, column, column, /*unsqueeze=*/true));
      nodes.push_back(node("Mul", {column, write.rows}, scaled, scaled));
      onnx::NodeProto add = node("ScatterND", {acc, token, scaled}, next, next);
      onnx::AttributeProto *reduction = add.add_attribute();
      reduction->set_name("reduction");
      reduction->set_type(onnx::AttributeProto::STRING);
      reduction->set_s("add");
      nodes.push_back(add);
      replace(*write.scatter, std::move(nodes));
      acc = next;
    }
    replace(mul, {});
    replace(sum, {node("Identity", {acc}, sum.output(0), sum.name() + "/slot_cells")});
    return true;
  }

  /// `write.indices` = Concat(Unsqueeze(tok, -1), Unsqueeze(slot, -1), -1)
  /// with (tok, slot) = torch.where(Equal(idx, e)) (TorchScript broadcasts
  /// each with an Expand to their common shape, whose target is computed
  /// from the two columns alone: both have NonZero's length): (idx, e),
  /// and the columns in `write`.
  std::optional<std::pair<std::string, int64_t>> expertCells(CellWrite &write) const {
    const onnx::NodeProto *concat = producerOf(write.indices, "Concat");
    int64_t axis = concat ? blocks::intAttr(*concat, "axis", 0) : 0;
    if (!concat || concat->input_size() != 2 || (axis != -1 && axis != 1))
      return std::nullopt;
    std::string columns[2];
    const onnx::NodeProto *expands[2] = {nullptr, nullptr};
    const onnx::NodeProto *nonZero = nullptr;
    for (int i = 0; i < 2; ++i) {
      const onnx::NodeProto *unsqueeze = producerOf(concat->input(i), "Unsqueeze");
      std::optional<llvm::SmallVector<int64_t>> axes = unsqueeze ? axesOf(*unsqueeze) : std::nullopt;
      if (!axes || axes->size() != 1 || ((*axes)[0] != -1 && (*axes)[0] != 1))
        return std::nullopt;
      columns[i] = unsqueeze->input(0);
      if ((expands[i] = producerOf(columns[i], "Expand")))
        columns[i] = expands[i]->input(0);
      std::optional<NonZeroColumn> column = nonZeroColumn(columns[i]);
      if (!column || column->column != i || (nonZero && column->nonZero != nonZero))
        return std::nullopt;
      nonZero = column->nonZero;
    }
    for (const onnx::NodeProto *expand : expands)
      if (expand && !readsOnly(expand->input(1), {columns[0], columns[1]}, 0))
        return std::nullopt;
    const onnx::NodeProto *equal = producerOf(nonZero->input(0), "Equal");
    if (!equal || equal->input_size() != 2)
      return std::nullopt;
    for (int side = 0; side < 2; ++side) {
      std::optional<llvm::SmallVector<int64_t>> expert = ints(equal->input(1 - side));
      if (expert && expert->size() == 1) {
        write.token = columns[0];
        write.slot = columns[1];
        return std::make_pair(equal->input(side), (*expert)[0]);
      }
    }
    return std::nullopt;
  }

  /// `v` = Squeeze(column c of Transpose(NonZero(m), [1, 0]), 1), the
  /// column taken by Slice [c, c + 1) or Split along axis 1, or by a
  /// Gather of scalar c along axis 1.
  std::optional<NonZeroColumn> nonZeroColumn(const std::string &v) const {
    const onnx::NodeProto *p = producers.lookup(v);
    if (!p || !isStandardNode(*p))
      return std::nullopt;
    std::string transposed;
    int64_t column = -1;
    if (p->op_type() == "Gather" && blocks::intAttr(*p, "axis", 0) == 1) {
      std::optional<llvm::SmallVector<int64_t>> index = ints(p->input(1));
      const ValueFacts *shape = factsOf(p->input(1));
      if (!index || index->size() != 1 || !shape || shape->rank != 0)
        return std::nullopt;
      column = (*index)[0];
      transposed = p->input(0);
    } else if (p->op_type() == "Squeeze") {
      std::optional<llvm::SmallVector<int64_t>> axes = axesOf(*p);
      if (!axes || *axes != llvm::SmallVector<int64_t>{1})
        return std::nullopt;
      const onnx::NodeProto *taken = producers.lookup(p->input(0));
      if (!taken || !isStandardNode(*taken))
        return std::nullopt;
      if (taken->op_type() == "Slice" && taken->input_size() >= 4) {
        std::optional<llvm::SmallVector<int64_t>> starts = ints(taken->input(1)), ends = ints(taken->input(2)),
                                                  axes = ints(taken->input(3));
        bool unitSteps = taken->input_size() < 5 || taken->input(4).empty() ||
                         ints(taken->input(4)) == llvm::SmallVector<int64_t>{1};
        if (!starts || !ends || !axes || starts->size() != 1 || ends->size() != 1 ||
            *axes != llvm::SmallVector<int64_t>{1} || (*ends)[0] != (*starts)[0] + 1 || !unitSteps)
          return std::nullopt;
        column = (*starts)[0];
      } else if (taken->op_type() == "Split" && blocks::intAttr(*taken, "axis", 0) == 1 &&
                 taken->output_size() == 2) {
        column = taken->output(0) == p->input(0) ? 0 : 1;
      } else {
        return std::nullopt;
      }
      transposed = taken->input(0);
    } else {
      return std::nullopt;
    }
    const onnx::NodeProto *transpose = producerOf(transposed, "Transpose");
    if (!transpose || blocks::intsAttr(*transpose, "perm") != llvm::SmallVector<int64_t>{1, 0} || column < 0 ||
        column > 1)
      return std::nullopt;
    const onnx::NodeProto *nonZero = producerOf(transpose->input(0), "NonZero");
    if (!nonZero)
      return std::nullopt;
    return NonZeroColumn{nonZero, column};
  }

  /// `rows` without a Reshape of [n, H] values (TorchScript's index_put
  /// value, shaped like the cells it writes): a ScatterND into [T, k, H]
  /// cells by [n', 2] indices takes [n', H] rows, so n' = n and the values
  /// are the same.
  std::string unreshapedRows(const std::string &rows, int64_t hidden) const {
    const onnx::NodeProto *reshape = producerOf(rows, "Reshape");
    const ValueFacts *in = reshape ? factsOf(reshape->input(0)) : nullptr;
    if (in && in->rank == 2 && hidden >= 0 && in->dims[1] == hidden)
      return reshape->input(0);
    return rows;
  }

  /// The [T, H] value whose rows an expert reads by its tokens: Gather(x,
  /// tok, axis 0) or GatherND(x, Unsqueeze(tok, -1)); empty if none.
  std::string rowsSource(const std::string &tok) const {
    for (const onnx::NodeProto &n : graph.node()) {
      if (!isStandardNode(n) || n.input_size() < 2)
        continue;
      if (n.op_type() == "Gather" && n.input(1) == tok && blocks::intAttr(n, "axis", 0) == 0)
        return n.input(0);
      const onnx::NodeProto *unsqueeze = n.op_type() == "GatherND" ? producerOf(n.input(1), "Unsqueeze") : nullptr;
      std::optional<llvm::SmallVector<int64_t>> axes = unsqueeze ? axesOf(*unsqueeze) : std::nullopt;
      if (axes && unsqueeze->input(0) == tok && axes->size() == 1 && ((*axes)[0] == -1 || (*axes)[0] == 1) &&
          blocks::intAttr(n, "batch_dims", 0) == 0)
        return n.input(0);
    }
    return "";
  }

  /// ConstantOfShape(`shape`) of zeros of element type `type` -> `out`.
  static onnx::NodeProto zerosOfShape(const std::string &shape, int32_t type, const std::string &out) {
    onnx::NodeProto fill = node("ConstantOfShape", {shape}, out, out);
    onnx::AttributeProto *value = fill.add_attribute();
    value->set_name("value");
    value->set_type(onnx::AttributeProto::TENSOR);
    onnx::TensorProto *zero = value->mutable_t();
    zero->set_data_type(type);
    zero->add_dims(1);
    int64_t bytes = type == onnx::TensorProto::DOUBLE ? 8
                    : (type == onnx::TensorProto::FLOAT16 || type == onnx::TensorProto::BFLOAT16) ? 2
                                                                                                   : 4;
    zero->set_raw_data(std::string(bytes, '\0'));
    return fill;
  }

  /// The shape expression `v` reads no data but the shapes of `allowed`
  /// (and constants).
  bool readsOnly(const std::string &v, llvm::ArrayRef<std::string> allowed, int depth) const {
    if (llvm::is_contained(allowed, v) || ints(v))
      return true;
    const onnx::NodeProto *p = producers.lookup(v);
    if (!p || !isStandardNode(*p) || depth > 12)
      return false;
    for (const std::string &in : p->input())
      if (!in.empty() && !readsOnly(in, allowed, depth + 1))
        return false;
    return true;
  }

  static bool dimsAgree(const ValueFacts &a, const ValueFacts &b) {
    for (auto [x, y] : llvm::zip(a.dims, b.dims))
      if (x >= 0 && y >= 0 && x != y)
        return false;
    return a.rank == b.rank;
  }

  bool definedBefore(const std::string &v, const onnx::NodeProto &at) const {
    const onnx::NodeProto *p = producers.lookup(v);
    if (!p)
      return true; // a graph input or initializer
    for (const onnx::NodeProto &n : graph.node()) {
      if (&n == p)
        return true;
      if (&n == &at)
        return false;
    }
    return false;
  }
};

} // namespace

int64_t mlir::moe::onnx_import::canonicalizeSlotCells(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                                      llvm::StringMap<ValueFacts> &facts,
                                                      llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  return runRewriter<SlotCellRewriter>(graph, ctx, facts, made, /*minOpset=*/11);
}
