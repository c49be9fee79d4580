//===- ElementIndexPuts.cpp - row assignments written element by element -===//
//
// TorchScript exports `out[tok, :] = rows` (index_put with a token list and
// a full slice) element by element: the indices pair every token with every
// column,
//
//   col = Reshape(tok, [-1, 1])                         [n, 1]
//   r   = Range(0, Shape(out)[1], 1)                    [H] (static: 0..H-1)
//   s   = Shape(Add(col, r))                            [n, H] (maybe through
//         Where(Shape == -1, 1, Shape), which never picks the 1)
//   idx = Concat(Unsqueeze(Expand(col, s), -1), Unsqueeze(Expand(r, s), -1), -1)
//   ScatterND(out, idx, Reshape(rows, Concat(s, Shape(out)[2:])))
//
// Index (i, j) is (tok[i], j) and update (i, j) is rows[i, j], so this is
// the row scatter the block matchers read,
//
//   ScatterND(out, Unsqueeze(tok, -1), rows)
//
// (the same reduction): the Reshape keeps rows' element order and, for the
// graph to run, rows' shape [n, H].
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"
#include "GraphCanonicalization.h"
#include "GraphEditor.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

class ElementIndexPutRewriter : public GraphEditor {
public:
  using GraphEditor::GraphEditor;

  int64_t run() {
    for (const onnx::NodeProto &n : graph.node()) {
      if (!isStandardNode(n) || n.op_type() != "ScatterND" || n.input_size() != 3 || n.output_size() != 1 ||
          rankOf(n.input(0)) != 2)
        continue;
      std::optional<RowWrite> write = rowWrite(n);
      if (!write)
        continue;
      std::string column = fresh(n.output(0) + "/token_column");
      onnx::NodeProto scatter = n;
      scatter.set_input(1, column);
      scatter.set_input(2, write->rows);
      scatter.set_name(fresh(n.name() + "/rows"));
      replace(n, {squeeze(write->tokens, {-1}, column, column, /*unsqueeze=*/true), scatter});
    }
    return commit();
  }

private:
  struct RowWrite {
    std::string tokens, rows;
  };

  int64_t rankOf(const std::string &v) const {
    const ValueFacts *f = factsOf(v);
    return f ? f->rank : -1;
  }

  /// The one axis of a Squeeze/Unsqueeze of a value of rank `rank`, from
  /// the back (-1 for the last).
  std::optional<int64_t> singleAxis(const onnx::NodeProto &n, int64_t rank) const {
    std::optional<llvm::SmallVector<int64_t>> axes = axesOf(n);
    if (!axes || axes->size() != 1)
      return std::nullopt;
    int64_t a = (*axes)[0];
    return a < 0 ? a : a - rank;
  }

  /// `col` as the token list t (1-D) made a column [n, 1].
  std::optional<std::string> tokensOfColumn(const std::string &col) const {
    if (const onnx::NodeProto *r = producerOf(col, "Reshape")) {
      std::optional<llvm::SmallVector<int64_t>> shape = ints(r->input(1));
      if (shape && *shape == llvm::SmallVector<int64_t>{-1, 1} && rankOf(r->input(0)) == 1)
        return r->input(0);
    }
    if (const onnx::NodeProto *u = producerOf(col, "Unsqueeze"))
      if (rankOf(u->input(0)) == 1 && singleAxis(*u, 2) == -1)
        return u->input(0);
    return std::nullopt;
  }

  /// `v` = Range(0, Shape(data)[1], 1), the limit maybe cast, or (static
  /// sizes) the constant 0..H-1 for data's static H.
  bool isColumnRange(const std::string &v, const std::string &data) const {
    const ValueFacts *facts = factsOf(data);
    std::optional<llvm::SmallVector<int64_t>> values = ints(v);
    if (values && facts && facts->dims.size() == 2 && facts->dims[1] >= 0) {
      if (int64_t(values->size()) != facts->dims[1])
        return false;
      for (auto [i, x] : llvm::enumerate(*values))
        if (x != int64_t(i))
          return false;
      return true;
    }
    const onnx::NodeProto *range = producerOf(v, "Range");
    if (!range || range->input_size() != 3 || ints(range->input(0)) != llvm::SmallVector<int64_t>{0} ||
        ints(range->input(2)) != llvm::SmallVector<int64_t>{1})
      return false;
    std::string limit = range->input(1);
    if (const onnx::NodeProto *cast = producerOf(limit, "Cast"))
      limit = cast->input(0);
    const onnx::NodeProto *pick = producerOf(limit, "Gather");
    const onnx::NodeProto *shape = pick ? producerOf(pick->input(0), "Shape") : nullptr;
    return shape && shape->input(0) == data && shape->attribute_size() == 0 &&
           blocks::intAttr(*pick, "axis", 0) == 0 && ints(pick->input(1)) == llvm::SmallVector<int64_t>{1};
  }

  /// The Add whose broadcast shape `s` is: Shape(add), or
  /// Where(Equal(Shape(add), m), _, Shape(add)) with m a fill of negative
  /// values (a size is never negative, so the Where yields the Shape).
  const onnx::NodeProto *broadcastOf(const std::string &s) const {
    std::string shape = s;
    if (const onnx::NodeProto *where = producerOf(s, "Where")) {
      const onnx::NodeProto *equal = producerOf(where->input(0), "Equal");
      if (!equal)
        return nullptr;
      std::string other = equal->input(0) == where->input(2) ? equal->input(1) : equal->input(0);
      if (equal->input(0) != where->input(2) && equal->input(1) != where->input(2))
        return nullptr;
      const onnx::NodeProto *mul = producerOf(other, "Mul");
      std::optional<double> a = mul ? fillValue(mul->input(0)) : std::nullopt;
      std::optional<double> b = mul ? fillValue(mul->input(1)) : std::nullopt;
      std::optional<double> m = mul ? std::optional<double>() : fillValue(other);
      if (!(a && b && *a * *b < 0) && !(m && *m < 0))
        return nullptr;
      shape = where->input(2);
    }
    const onnx::NodeProto *of = producerOf(shape, "Shape");
    return of && of->attribute_size() == 0 ? producerOf(of->input(0), "Add") : nullptr;
  }

  /// Unsqueeze(Expand(v, s), -1) of an index tensor of rank 2: v and the
  /// Add s is the shape of.
  std::optional<std::pair<std::string, const onnx::NodeProto *>> expandedPart(const std::string &v) const {
    const onnx::NodeProto *u = producerOf(v, "Unsqueeze");
    const onnx::NodeProto *e = u ? producerOf(u->input(0), "Expand") : nullptr;
    if (!e || singleAxis(*u, 3) != -1)
      return std::nullopt;
    const onnx::NodeProto *add = broadcastOf(e->input(1));
    if (!add)
      return std::nullopt;
    return std::make_pair(e->input(0), add);
  }

  std::optional<RowWrite> rowWrite(const onnx::NodeProto &scatter) const {
    const std::string &data = scatter.input(0);
    const onnx::NodeProto *concat = producerOf(scatter.input(1), "Concat");
    if (!concat || concat->input_size() != 2)
      return std::nullopt;
    int64_t axis = blocks::intAttr(*concat, "axis", 0);
    if (axis != -1 && axis != 2)
      return std::nullopt;
    auto first = expandedPart(concat->input(0)), second = expandedPart(concat->input(1));
    if (!first || !second || first->second != second->second)
      return std::nullopt;
    const onnx::NodeProto *add = first->second;
    std::optional<std::string> tokens = tokensOfColumn(first->first);
    // The Add is of the column and the range (either order).
    llvm::SmallVector<std::string, 2> added = {add->input(0), add->input(1)};
    // (Static sizes: the Add and the Expand may read two equal constants.)
    std::string added1 = added[0] == first->first ? added[1] : added[0];
    if (!tokens || !isColumnRange(second->first, data) || !llvm::is_contained(added, first->first) ||
        (added1 != second->first && !(ints(added1) && ints(added1) == ints(second->first))))
      return std::nullopt;
    // Updates: Reshape(rows, Concat(Shape(add) or its Where, Shape(data)[2:])).
    const onnx::NodeProto *reshape = producerOf(scatter.input(2), "Reshape");
    const onnx::NodeProto *target = reshape ? producerOf(reshape->input(1), "Concat") : nullptr;
    if (!target || target->input_size() != 2 || broadcastOf(target->input(0)) != add ||
        rankOf(reshape->input(0)) != 2 || blocks::intAttr(*reshape, "allowzero", 0) != 0)
      return std::nullopt;
    // Shape(data)[2:] is empty for data of rank 2 (a constant [] when static).
    std::optional<llvm::SmallVector<int64_t>> restValues = ints(target->input(1));
    if (restValues && restValues->empty())
      return RowWrite{*tokens, reshape->input(0)};
    const onnx::NodeProto *rest = producerOf(target->input(1), "Slice");
    const onnx::NodeProto *dataShape = rest ? producerOf(rest->input(0), "Shape") : nullptr;
    if (!dataShape || dataShape->input(0) != data || rest->input_size() < 3 ||
        ints(rest->input(1)) != llvm::SmallVector<int64_t>{2} ||
        (rest->input_size() > 3 && !rest->input(3).empty() && ints(rest->input(3)) != llvm::SmallVector<int64_t>{0}) ||
        (rest->input_size() > 4 && !rest->input(4).empty() && ints(rest->input(4)) != llvm::SmallVector<int64_t>{1}))
      return std::nullopt;
    std::optional<llvm::SmallVector<int64_t>> end = ints(rest->input(2));
    if (!end || end->size() != 1 || (*end)[0] < 2)
      return std::nullopt;
    return RowWrite{*tokens, reshape->input(0)};
  }
};

} // namespace

int64_t mlir::moe::onnx_import::canonicalizeElementIndexPuts(onnx::GraphProto &graph,
                                                             const CanonicalizationContext &ctx,
                                                             llvm::StringMap<ValueFacts> &facts,
                                                             llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  return runRewriter<ElementIndexPutRewriter>(graph, ctx, facts, made, /*minOpset=*/11);
}
