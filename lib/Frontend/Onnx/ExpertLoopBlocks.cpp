//===- ExpertLoopBlocks.cpp - the per-expert loop form of an MoE block ----===//
//
// transformers' eager MixtralSparseMoeBlock as tracing unrolls it: per
// expert a mask (OneHot/Transpose or Equal), NonZero rows, the expert's
// FFN on the gathered tokens, and ScatterND add into the output. gpt-oss's
// eager experts take the same loop with biased GEMMs and its clamped SwiGLU,
// routed by a softmax over the top-k of the biased logits. A loop over the
// slots, then the experts (`m = ids[:, j] == e; y[m] += w[m, j] * ...`)
// runs every expert once per slot: its k·E accumulations are read the same
// way, keyed e·k + j.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"

#include "llvm/ADT/StringSet.h"

#include <limits>
#include <map>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace mlir::moe::onnx_import::blocks {

/// One expert's rows in the per-expert loop form: the (token, slot) lists
/// NonZero gives for its mask.
struct ExpertRows {
  std::string token, slot;
  /// The value the loop indexes the expert with (a constant, or the i-th
  /// hit expert); stacked expert weights are gathered at it.
  std::string index;
  /// In the row-mask form (`y[rows] += ...` with rows = any(ids == e, -1)),
  /// ids == e; `slot` is then empty: a token's slot weight is its row sum
  /// of w * (ids == e), the one slot that picked e.
  std::string hits = "";
  /// In the slot-column form (`m = ids[:, j] == e; y[m] += ...`), the slot
  /// j: the rows are the tokens whose slot j picked e, and `slot` is empty.
  int64_t column = -1;
};

/// The token list of the rows the [T] bool `mask` selects,
/// Squeeze(Transpose(NonZero(mask)), 1) (RowMaskCanonicalization.cpp writes
/// every spelling so), each node read only there. The token list, or "".
static std::string maskTokens(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef mask,
                              llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *nz = mask.empty() ? nullptr : g.onlyUser(mask, "NonZero");
  const onnx::NodeProto *tr = nz ? g.onlyUser(outputOf(*nz, 0), "Transpose") : nullptr;
  // nonzero(as_tuple=True)[0]: the Transpose's only column [n, 1] sliced
  // out first (dynamo), or split off as the Split's one part (TorchScript).
  const onnx::NodeProto *slice = tr ? g.onlyUser(outputOf(*tr, 0), "Slice") : nullptr;
  std::optional<std::pair<int64_t, int64_t>> cut =
      slice ? lastAxisSlice(constants, slice, outputOf(*tr, 0), 1) : std::nullopt;
  if (cut && *cut != std::make_pair<int64_t, int64_t>(0, 1))
    return "";
  if (const onnx::NodeProto *split = tr && !cut ? g.onlyUser(outputOf(*tr, 0), "Split") : nullptr) {
    std::optional<llvm::SmallVector<int64_t>> parts =
        split->input_size() > 1 && !inputOf(*split, 1).empty() ? constants(inputOf(*split, 1)) : std::nullopt;
    int64_t axis = intAttr(*split, "axis", 0);
    bool whole = split->output_size() == 1 && (axis == 1 || axis == -1) &&
                 (split->input_size() < 2 || inputOf(*split, 1).empty() ||
                  (parts && *parts == llvm::SmallVector<int64_t>{1}));
    if (!whole)
      return "";
    slice = split;
    cut = std::make_pair<int64_t, int64_t>(0, 1);
  }
  const onnx::NodeProto *sq = tr ? g.onlyUser(outputOf(cut ? *slice : *tr, 0), "Squeeze") : nullptr;
  if (!sq || intsAttr(*tr, "perm") != llvm::SmallVector<int64_t>{1, 0} ||
      !(hasAxis(*sq, constants, 1) || hasAxis(*sq, constants, -1)))
    return "";
  nodes.append({nz, tr, sq});
  if (cut)
    nodes.push_back(slice);
  return outputOf(*sq, 0);
}

/// The token list of the rows any(hits, -1) selects (anyOverSlots), for
/// the [T, k] bool `hits` (maskTokens). The token list, or "".
static std::string rowMaskTokens(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef hits,
                                 llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  llvm::SmallVector<const onnx::NodeProto *> found;
  std::string any = anyOverSlots(g, constants, hits, /*keepdims=*/false, /*bareMax=*/true, found);
  std::string tokens = maskTokens(g, constants, any, found);
  if (!tokens.empty())
    nodes.append(found.begin(), found.end());
  return tokens;
}

/// In the row-mask form, the slot weight of each row as a column [n, 1]:
/// the per-token sum over the slots of w masked to expert e (w * Cast(hits)
/// or Where(hits, w, zeros like w); for a 16-bit w maybe in f32 between
/// Casts: one nonzero term, exact) read at the rows (GatherND at
/// Unsqueeze(token, -1) or Gather at token), its slot axis kept by the sum
/// or added by an Unsqueeze(-1) before or after the read. True when
/// `column` is that.
static bool rowMaskWeightColumn(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef column,
                                llvm::StringRef w, const ExpertRows &rows,
                                llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  llvm::SmallVector<const onnx::NodeProto *> found;
  int64_t addedAxes = 0;
  // Unsqueeze(-1) and float Casts on the way up from `value`.
  auto through = [&](const onnx::NodeProto *n) {
    while (n && ((n->op_type() == "Unsqueeze" && hasAxis(*n, constants, -1)) || n->op_type() == "Cast")) {
      addedAxes += n->op_type() == "Unsqueeze";
      found.push_back(n);
      n = g.producer(inputOf(*n, 0));
    }
    return n;
  };
  const onnx::NodeProto *read = through(g.producer(column));
  if (!read)
    return false;
  const onnx::NodeProto *at = read->input_size() == 2 ? g.producer(inputOf(*read, 1)) : nullptr;
  bool readND = read->op_type() == "GatherND" && intAttr(*read, "batch_dims", 0) == 0 && at &&
                at->op_type() == "Unsqueeze" && inputOf(*at, 0) == rows.token && hasAxis(*at, constants, -1);
  bool readRows = read->op_type() == "Gather" && intAttr(*read, "axis", 0) == 0 && inputOf(*read, 1) == rows.token;
  if (!readND && !readRows)
    return false;
  found.push_back(read);
  const onnx::NodeProto *sum = through(g.producer(inputOf(*read, 0)));
  if (!sum || sum->op_type() != "ReduceSum" || !hasAxis(*sum, constants, -1))
    return false;
  found.push_back(sum);
  // One slot axis in the column: kept by the sum or added once.
  const onnx::NodeProto *masked = through(g.producer(inputOf(*sum, 0)));
  if (!masked || addedAxes + intAttr(*sum, "keepdims", 1) != 1)
    return false;
  found.push_back(masked);
  if (masked->op_type() == "Mul") {
    for (int side = 0; side < 2; ++side) {
      const onnx::NodeProto *cast = g.producer(inputOf(*masked, 1 - side));
      if (inputOf(*masked, side) == w && cast && cast->op_type() == "Cast" && inputOf(*cast, 0) == rows.hits) {
        found.push_back(cast);
        nodes.append(found.begin(), found.end());
        return true;
      }
    }
    return false;
  }
  if (masked->op_type() != "Where" || masked->input_size() != 3 || inputOf(*masked, 0) != rows.hits ||
      inputOf(*masked, 1) != w)
    return false;
  if (!isZerosLike(g, constants, inputOf(*masked, 2), w, found))
    return false;
  nodes.append(found.begin(), found.end());
  return true;
}

/// The two columns of Transpose(NonZero(m), [1, 0]) [n, 2] taken as
/// Squeeze(Slice(t, [i], [i + 1], axes [1]), 1), as torch.unbind exports
/// through dynamo; (first, second), or nullopt.
static std::optional<std::pair<std::string, std::string>>
slicedColumns(const GraphIndex &g, const ConstantLookup &constants, const onnx::NodeProto &transpose,
              llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  llvm::SmallVector<int64_t> perm = intsAttr(transpose, "perm");
  std::string columns[2];
  llvm::SmallVector<const onnx::NodeProto *> found;
  for (int u : g.users(outputOf(transpose, 0))) {
    const onnx::NodeProto &slice = g.graph.node(u);
    if (slice.op_type() != "Slice" || slice.input_size() < 4 ||
        (slice.input_size() > 4 && !inputOf(slice, 4).empty() &&
         constants(inputOf(slice, 4)) != llvm::SmallVector<int64_t>{1}))
      return std::nullopt;
    std::optional<llvm::SmallVector<int64_t>> starts = constants(inputOf(slice, 1)), ends = constants(inputOf(slice, 2)),
                                              axes = constants(inputOf(slice, 3));
    const onnx::NodeProto *squeeze = g.onlyUser(outputOf(slice, 0), "Squeeze");
    if (!starts || !ends || !axes || starts->size() != 1 || ends->size() != 1 || axes->size() != 1 ||
        ((*axes)[0] != 1 && (*axes)[0] != -1) || (*starts)[0] < 0 || (*starts)[0] > 1 ||
        (*ends)[0] != (*starts)[0] + 1 || !squeeze || !hasAxis(*squeeze, constants, 1) ||
        !columns[(*starts)[0]].empty())
      return std::nullopt;
    columns[(*starts)[0]] = outputOf(*squeeze, 0);
    found.append({&slice, squeeze});
  }
  if (perm != llvm::SmallVector<int64_t>{1, 0} || columns[0].empty() || columns[1].empty())
    return std::nullopt;
  nodes.append(found.begin(), found.end());
  return std::make_pair(columns[0], columns[1]);
}

/// The two columns of Transpose(NonZero(m), [1, 0]) [n, 2] taken as
/// Gather(t, i, axis 1) with a scalar i (torch's `m.nonzero()[:, i]`);
/// (first, second), or nullopt.
static std::optional<std::pair<std::string, std::string>>
gatheredColumns(const GraphIndex &g, const ConstantLookup &constants, const onnx::NodeProto &transpose,
                llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  std::string columns[2];
  llvm::SmallVector<const onnx::NodeProto *> found;
  for (int u : g.users(outputOf(transpose, 0))) {
    const onnx::NodeProto &gather = g.graph.node(u);
    int64_t axis = intAttr(gather, "axis", 0);
    std::optional<llvm::SmallVector<int64_t>> index = constants(gather.input_size() > 1 ? inputOf(gather, 1) : "");
    std::optional<llvm::SmallVector<int64_t>> indexShape =
        gather.input_size() > 1 ? constants.shape(inputOf(gather, 1)) : std::nullopt;
    if (gather.op_type() != "Gather" || inputOf(gather, 0) != outputOf(transpose, 0) || (axis != 1 && axis != -1) ||
        !index || index->size() != 1 || !indexShape || !indexShape->empty() || (*index)[0] < 0 ||
        (*index)[0] > 1 || !columns[(*index)[0]].empty())
      return std::nullopt;
    columns[(*index)[0]] = outputOf(gather, 0);
    found.push_back(&gather);
  }
  if (intsAttr(transpose, "perm") != llvm::SmallVector<int64_t>{1, 0} || columns[0].empty() || columns[1].empty())
    return std::nullopt;
  nodes.append(found.begin(), found.end());
  return std::make_pair(columns[0], columns[1]);
}

/// NonZero(mask) split into its two rows: Gather(nz, 0) and Gather(nz, 1)
/// (axis 0), or, as TorchScript writes torch.where, the columns of
/// Transpose(nz, [1, 0]) split along axis 1 and squeezed, or its columns
/// gathered (`nonzero()[:, i]`). (first, second), or nullopt.
std::optional<std::pair<std::string, std::string>>
nonZeroRows(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef mask,
            llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *nz = g.onlyUser(mask, "NonZero");
  if (!nz)
    return std::nullopt;
  std::string rows[2];
  if (const onnx::NodeProto *transpose = g.onlyUser(outputOf(*nz, 0), "Transpose")) {
    // The dynamo exporter's unbind: Slice [i, i+1) of axis 1, Squeeze(1).
    if (std::optional<std::pair<std::string, std::string>> sliced =
            slicedColumns(g, constants, *transpose, nodes)) {
      nodes.append({nz, transpose});
      return sliced;
    }
    if (std::optional<std::pair<std::string, std::string>> gathered =
            gatheredColumns(g, constants, *transpose, nodes)) {
      nodes.append({nz, transpose});
      return gathered;
    }
    const onnx::NodeProto *split = g.onlyUser(outputOf(*transpose, 0), "Split");
    llvm::SmallVector<int64_t> perm = intsAttr(*transpose, "perm");
    std::optional<llvm::SmallVector<int64_t>> sizes;
    if (split && split->input_size() > 1)
      sizes = constants(inputOf(*split, 1));
    else if (split)
      for (const onnx::AttributeProto &a : split->attribute())
        if (a.name() == "split")
          sizes = llvm::SmallVector<int64_t>(a.ints().begin(), a.ints().end());
    int64_t axis = split ? intAttr(*split, "axis", 0) : 0;
    if (perm != llvm::SmallVector<int64_t>{1, 0} || !split || split->output_size() != 2 || (axis != 1 && axis != -1) ||
        (sizes && *sizes != llvm::SmallVector<int64_t>{1, 1}))
      return std::nullopt;
    for (int i = 0; i < 2; ++i) {
      const onnx::NodeProto *squeeze = g.onlyUser(outputOf(*split, i), "Squeeze");
      if (!squeeze || !hasAxis(*squeeze, constants, 1))
        return std::nullopt;
      rows[i] = outputOf(*squeeze, 0);
      nodes.push_back(squeeze);
    }
    nodes.append({nz, transpose, split});
    return std::make_pair(rows[0], rows[1]);
  }
  for (int u : g.users(outputOf(*nz, 0))) {
    const onnx::NodeProto &gather = g.graph.node(u);
    std::optional<llvm::SmallVector<int64_t>> row = constants(gather.input_size() > 1 ? inputOf(gather, 1) : "");
    if (gather.op_type() != "Gather" || inputOf(gather, 0) != outputOf(*nz, 0) || intAttr(gather, "axis", 0) != 0 ||
        !row || row->size() != 1 || ((*row)[0] != 0 && (*row)[0] != 1) || !rows[(*row)[0]].empty())
      return std::nullopt;
    rows[(*row)[0]] = outputOf(gather, 0);
    nodes.push_back(&gather);
  }
  if (rows[0].empty() || rows[1].empty())
    return std::nullopt;
  nodes.push_back(nz);
  return std::make_pair(rows[0], rows[1]);
}

bool isSizeOf(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value, llvm::StringRef of,
                     int64_t axis, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *n = g.producer(value);
  const onnx::NodeProto *unsq = n && n->op_type() == "Unsqueeze" && hasAxis(*n, constants, 0) ? n : nullptr;
  if (unsq)
    n = g.producer(inputOf(*unsq, 0));
  const onnx::NodeProto *shape = n && n->op_type() == "Gather" && intAttr(*n, "axis", 0) == 0
                                     ? g.producer(inputOf(*n, 0))
                                     : nullptr;
  std::optional<llvm::SmallVector<int64_t>> index = n ? constants(inputOf(*n, 1)) : std::nullopt;
  int64_t rank = constants.rank ? constants.rank(of) : -1;
  if (!shape || shape->op_type() != "Shape" || inputOf(*shape, 0) != of || shape->attribute_size() != 0 || !index ||
      index->size() != 1 || ((*index)[0] != axis && !(rank >= 0 && (*index)[0] + rank == axis)))
    return false;
  nodes.append({n, shape});
  if (unsq)
    nodes.push_back(unsq);
  return true;
}

/// The rows of x at `token`: Gather(x, token) along axis 0,
/// GatherND(x, Unsqueeze(token, -1)), or, as
/// TorchScript writes x[None, token].reshape(-1, H), a rank-2 Reshape of
/// Gather(Unsqueeze(x, 0), token) along axis 1. The rows' value, or "".
std::string gatheredRows(const GraphIndex &g, const ConstantLookup &constants, const MoeBlock &block,
                         llvm::StringRef token, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  // GatherND(x, Unsqueeze(token, -1)) (the dynamo exporter's x[token]).
  for (int u : g.users(token)) {
    const onnx::NodeProto &column = g.graph.node(u);
    if (column.op_type() != "Unsqueeze" || !hasAxis(column, constants, -1))
      continue;
    for (int v : g.users(outputOf(column, 0))) {
      const onnx::NodeProto &nd = g.graph.node(v);
      if (nd.op_type() == "GatherND" && intAttr(nd, "batch_dims", 0) == 0 && block.isX(inputOf(nd, 0)) &&
          inputOf(nd, 1) == outputOf(column, 0)) {
        nodes.push_back(&nd);
        return outputOf(nd, 0);
      }
    }
  }
  // Gather(x, token) along axis 0; other Gathers of the token (acc[tok]
  // of `acc[tok] += ...`) may be there too.
  for (int u : g.users(token)) {
    const onnx::NodeProto &rows = g.graph.node(u);
    if (rows.op_type() == "Gather" && inputOf(rows, 1) == token && block.isX(inputOf(rows, 0)) &&
        intAttr(rows, "axis", 0) == 0) {
      nodes.push_back(&rows);
      return outputOf(rows, 0);
    }
  }
  const onnx::NodeProto *gather = g.userOfType(token, "Gather");
  if (!gather || inputOf(*gather, 1) != token)
    return "";
  const onnx::NodeProto *unsq = g.producer(inputOf(*gather, 0));
  const onnx::NodeProto *flat = g.onlyUser(outputOf(*gather, 0), "Reshape");
  if (!unsq || unsq->op_type() != "Unsqueeze" || !block.isX(inputOf(*unsq, 0)) || !hasAxis(*unsq, constants, 0) ||
      intAttr(*gather, "axis", 0) != 1 || !flat || !constants.rank || constants.rank(outputOf(*flat, 0)) != 2)
    return "";
  nodes.append({unsq, gather, flat});
  return outputOf(*flat, 0);
}

/// In the slot-column form, the weight of slot j of each row as a column
/// w[token, j][:, None]: column j of w (Gather(w, j, axis 1)) read at the
/// tokens (Gather along axis 0, or GatherND at Unsqueeze(token, -1)) and
/// given its unit axis before or after the read, or w's rows read first and
/// column j taken from them; for a top-1, w's rows read. True when `column`
/// is that.
static bool slotColumnWeight(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef column,
                             llvm::StringRef w, int64_t k, const ExpertRows &rows,
                             llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  llvm::SmallVector<const onnx::NodeProto *> found;
  // Unsqueeze(v, -1), or Unsqueeze(v, 1) of a 1-D v: a read of one slot
  // column of the 2-D w, or one value per token.
  auto unitAxis = [&](llvm::StringRef value) -> const onnx::NodeProto * {
    const onnx::NodeProto *u = g.producer(value);
    bool lastAxis = u && u->op_type() == "Unsqueeze" &&
                    (hasAxis(*u, constants, -1) ||
                     (hasAxis(*u, constants, 1) && constants.rank && constants.rank(w) == 2));
    return lastAxis ? u : nullptr;
  };
  // The value `read` reads at the tokens' rows, or "".
  auto rowsRead = [&](llvm::StringRef read) -> std::string {
    const onnx::NodeProto *n = g.producer(read);
    if (!n)
      return "";
    if (n->op_type() == "Gather" && intAttr(*n, "axis", 0) == 0 && inputOf(*n, 1) == rows.token) {
      found.push_back(n);
      return inputOf(*n, 0);
    }
    const onnx::NodeProto *at = n->op_type() == "GatherND" && intAttr(*n, "batch_dims", 0) == 0
                                    ? g.producer(inputOf(*n, 1))
                                    : nullptr;
    if (!at || at->op_type() != "Unsqueeze" || inputOf(*at, 0) != rows.token || !hasAxis(*at, constants, -1))
      return "";
    found.append({n, at});
    return inputOf(*n, 0);
  };
  // Gather(from, j, axis 1) with a scalar j: from, or "".
  auto slotOf = [&](llvm::StringRef value) -> std::string {
    const onnx::NodeProto *n = g.producer(value);
    std::optional<llvm::SmallVector<int64_t>> j =
        n && n->op_type() == "Gather" && intAttr(*n, "axis", 0) == 1 ? constants(inputOf(*n, 1)) : std::nullopt;
    if (!j || j->size() != 1 || !constants.rank || constants.rank(inputOf(*n, 1)) != 0 || (*j)[0] != rows.column)
      return "";
    found.push_back(n);
    return inputOf(*n, 0);
  };
  std::string value = std::string(column);
  const onnx::NodeProto *after = unitAxis(value);
  // A top-1's w [T, 1] read at the rows is its one column already.
  if (k == 1 && rowsRead(value) == w) {
    nodes.append(found.begin(), found.end());
    return true;
  }
  found.clear();
  if (after) {
    // [n] read, then its unit axis: w[token][:, j] or w[:, j][token].
    found.push_back(after);
    std::string read = inputOf(*after, 0);
    std::string from = slotOf(read);
    bool matched = !from.empty() ? rowsRead(from) == w : slotOf(rowsRead(read)) == w;
    if (!matched)
      return false;
  } else {
    // Column j given its unit axis, then read: Unsqueeze(w[:, j])[token].
    const onnx::NodeProto *before = unitAxis(rowsRead(value));
    if (!before || slotOf(inputOf(*before, 0)) != w)
      return false;
    found.push_back(before);
  }
  nodes.append(found.begin(), found.end());
  return true;
}

/// The slot weight of each row as a column, w[token, slot][:, None]:
/// Unsqueeze(GatherND(w, Concat(token, slot as columns)), -1), or, as
/// TorchScript writes routing_weights[top_x, idx, None], Reshapes of
/// Gather(Flatten(Unsqueeze(w, -1), 2), slot + token * k) to [n, 1]. True
/// when `column` is that.
static bool slotWeightColumn(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef column,
                             llvm::StringRef w, int64_t k, const ExpertRows &rows,
                             llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  if (!rows.hits.empty())
    return rowMaskWeightColumn(g, constants, column, w, rows, nodes);
  if (rows.column >= 0)
    return slotColumnWeight(g, constants, column, w, k, rows, nodes);
  auto unsqueezedFrom = [&](llvm::StringRef value, llvm::StringRef from) -> const onnx::NodeProto * {
    const onnx::NodeProto *u = g.producer(value);
    return u && u->op_type() == "Unsqueeze" && inputOf(*u, 0) == from && hasAxis(*u, constants, -1) ? u : nullptr;
  };
  const onnx::NodeProto *weightCol = g.producer(column);
  if (!weightCol)
    return false;
  // w[token, slot, None] as the dynamo exporter writes it:
  // GatherND(Unsqueeze(w, -1), Concat(Unsqueeze(token, -1), Unsqueeze(slot, -1), -1)).
  // Concat(Unsqueeze(token, -1), Unsqueeze(slot, -1), -1): the (token,
  // slot) index pairs GatherND reads w at.
  auto tokenSlotPairs = [&](llvm::StringRef value, llvm::SmallVector<const onnx::NodeProto *> &found) {
    const onnx::NodeProto *pairs = g.producer(value);
    int64_t concatAxis = pairs ? intAttr(*pairs, "axis", 0) : 0;
    const onnx::NodeProto *tokCol = pairs && pairs->op_type() == "Concat" && pairs->input_size() == 2 &&
                                            (concatAxis == -1 || concatAxis == 1)
                                        ? unsqueezedFrom(inputOf(*pairs, 0), rows.token)
                                        : nullptr;
    const onnx::NodeProto *slotCol = tokCol ? unsqueezedFrom(inputOf(*pairs, 1), rows.slot) : nullptr;
    if (slotCol)
      found.append({pairs, tokCol, slotCol});
    return slotCol != nullptr;
  };
  llvm::SmallVector<const onnx::NodeProto *> found = {weightCol};
  if (weightCol->op_type() == "GatherND" && intAttr(*weightCol, "batch_dims", 0) == 0) {
    const onnx::NodeProto *unsqW = unsqueezedFrom(inputOf(*weightCol, 0), w);
    if (!unsqW || !tokenSlotPairs(inputOf(*weightCol, 1), found))
      return false;
    found.push_back(unsqW);
    nodes.append(found.begin(), found.end());
    return true;
  }
  // w[token, slot] then a trailing Unsqueeze(-1) (`.unsqueeze(-1)`).
  const onnx::NodeProto *trailing = nullptr;
  if (weightCol->op_type() == "Unsqueeze") {
    const onnx::NodeProto *picked =
        hasAxis(*weightCol, constants, -1) ? g.producer(inputOf(*weightCol, 0)) : nullptr;
    if (picked && picked->op_type() == "Reshape") {
      trailing = weightCol;
    } else {
      if (!picked || picked->op_type() != "GatherND" || inputOf(*picked, 0) != w ||
          intAttr(*picked, "batch_dims", 0) != 0 || !tokenSlotPairs(inputOf(*picked, 1), found))
        return false;
      found.push_back(picked);
      nodes.append(found.begin(), found.end());
      return true;
    }
  }
  // Reshapes down to the Gather; the outermost one ends in a size-1 axis,
  // or, below a trailing Unsqueeze, in the rows' one axis.
  llvm::SmallVector<const onnx::NodeProto *> reshapes;
  const onnx::NodeProto *n = trailing ? g.producer(inputOf(*trailing, 0)) : weightCol;
  while (n && n->op_type() == "Reshape") {
    reshapes.push_back(n);
    n = g.producer(inputOf(*n, 0));
  }
  const onnx::NodeProto *gather = n && n->op_type() == "Gather" && intAttr(*n, "axis", 0) == 0 ? n : nullptr;
  const onnx::NodeProto *flatten = gather ? g.producer(inputOf(*gather, 0)) : nullptr;
  // Flatten(Unsqueeze(w, -1), 2), or Flatten(w, 2) of the 2-D w: the same
  // [T * k, 1] in the same order.
  bool flattens = flatten && flatten->op_type() == "Flatten" && intAttr(*flatten, "axis", 1) == 2;
  const onnx::NodeProto *unsqW = flattens ? unsqueezedFrom(inputOf(*flatten, 0), w) : nullptr;
  bool flatW = flattens && !unsqW && inputOf(*flatten, 0) == w && constants.rank && constants.rank(w) == 2;
  // The values the slot + token * k index runs over: w's, unsqueezed or not.
  std::string flattened = unsqW ? outputOf(*unsqW, 0) : std::string(w);
  const onnx::NodeProto *outer = reshapes.empty() ? nullptr : reshapes.front();
  const onnx::NodeProto *target = outer ? g.producer(inputOf(*outer, 1)) : nullptr;
  if ((!unsqW && !flatW) || !target || target->op_type() != "Concat" || !constants.rank ||
      constants.rank(column) != 2 || target->input_size() < (trailing ? 1 : 2))
    return false;
  llvm::SmallVector<const onnx::NodeProto *> sizeNodes;
  if (trailing) {
    // [n] below the Unsqueeze: the rows' one axis.
    if (constants.rank(outputOf(*outer, 0)) != 1)
      return false;
  } else {
    std::string unit = inputOf(*target, target->input_size() - 1);
    std::optional<llvm::SmallVector<int64_t>> unitValue = constants(unit);
    if (!(unitValue && *unitValue == llvm::SmallVector<int64_t>{1}) &&
        !isSizeOf(g, constants, unit, flattened, 2, sizeNodes))
      return false;
  }
  // slot + token * k, k the slot axis's size.
  const onnx::NodeProto *add = g.producer(inputOf(*gather, 1));
  if (!add || add->op_type() != "Add")
    return false;
  for (int side = 0; side < 2; ++side) {
    const onnx::NodeProto *mul = g.producer(inputOf(*add, 1 - side));
    if (inputOf(*add, side) != rows.slot || !mul || mul->op_type() != "Mul")
      continue;
    for (int m = 0; m < 2; ++m) {
      if (inputOf(*mul, m) != rows.token)
        continue;
      llvm::StringRef slots = inputOf(*mul, 1 - m);
      std::optional<llvm::SmallVector<int64_t>> value = constants(slots);
      bool isK = (value && *value == llvm::SmallVector<int64_t>{k}) ||
                 isSizeOf(g, constants, slots, flattened, 1, sizeNodes) || isSizeOf(g, constants, slots, w, 1, sizeNodes);
      if (!isK)
        continue;
      nodes.append(reshapes.begin(), reshapes.end());
      nodes.append(sizeNodes.begin(), sizeNodes.end());
      nodes.append({gather, flatten, add, mul});
      if (unsqW)
        nodes.push_back(unsqW);
      if (trailing)
        nodes.push_back(trailing);
      return true;
    }
  }
  return false;
}

/// Transpose(Gather(W, index, axis 0), [1, 0]) with W a constant [E, a, b]:
/// W's name, or "".
static std::string gatheredTransposed(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value,
                                      llvm::StringRef index, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *transpose = g.producer(value);
  const onnx::NodeProto *gather = transpose && transpose->op_type() == "Transpose" ? g.producer(inputOf(*transpose, 0))
                                                                                   : nullptr;
  llvm::SmallVector<int64_t> perm = transpose ? intsAttr(*transpose, "perm") : llvm::SmallVector<int64_t>();
  std::optional<llvm::SmallVector<int64_t>> shape = gather ? constants.shape(inputOf(*gather, 0)) : std::nullopt;
  // The index itself, or a constant of the same value (the expert id
  // written twice).
  bool sameIndex = gather && (inputOf(*gather, 1) == index ||
                               (constants(index) && constants(inputOf(*gather, 1)) == constants(index) &&
                                constants.shape(inputOf(*gather, 1)) == constants.shape(index)));
  if (!gather || gather->op_type() != "Gather" || intAttr(*gather, "axis", 0) != 0 || !sameIndex ||
      !g.isConstant(inputOf(*gather, 0)) || !shape || shape->size() != 3 ||
      (!perm.empty() && perm != llvm::SmallVector<int64_t>{1, 0}))
    return "";
  nodes.append({transpose, gather});
  return inputOf(*gather, 0);
}

/// One expert's FFN on stacked weights, as transformers 5 writes it:
///   h = MatMul(rows, Transpose(Gather(W13, index)))        W13 [E, 2I, H]
///   g, u = Slice(h, [0, I)), Slice(h, [I, 2I)) on the last axis (chunk)
///   o = MatMul(act(g) * u, Transpose(Gather(W2, index)))   W2 [E, H, I]
std::optional<StackedExpert> stackedExpert(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef rows,
                                           llvm::StringRef index, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  llvm::SmallVector<const onnx::NodeProto *> found;
  const onnx::NodeProto *upMM = g.onlyUser(rows, "MatMul");
  if (!upMM || inputOf(*upMM, 0) != rows)
    return std::nullopt;
  StackedExpert expert;
  expert.gateUp = gatheredTransposed(g, constants, inputOf(*upMM, 1), index, found);
  std::optional<llvm::SmallVector<int64_t>> w13 = constants.shape(expert.gateUp);
  if (expert.gateUp.empty() || !w13)
    return std::nullopt;
  std::string h = outputOf(*upMM, 0);
  // The down MatMul of act(h) and its stacked weights [E, H, ffn].
  auto downOf = [&](const onnx::NodeProto *downMM, int64_t ffn) -> std::optional<StackedExpert> {
    expert.down = gatheredTransposed(g, constants, inputOf(*downMM, 1), index, found);
    std::optional<llvm::SmallVector<int64_t>> w2 = constants.shape(expert.down);
    if (expert.down.empty() || !w2 || (*w2)[0] != (*w13)[0] || (*w2)[1] != (*w13)[2] || (*w2)[2] != ffn)
      return std::nullopt;
    found.append({upMM, downMM});
    nodes.append(found.begin(), found.end());
    expert.output = outputOf(*downMM, 0);
    return expert;
  };
  // Non-gated (Nemotron-H): a plain activation of h feeds the down MatMul.
  llvm::SmallVector<int> near(g.users(h).begin(), g.users(h).end());
  for (size_t i = 0; i < near.size() && i < 8; ++i) {
    const onnx::NodeProto &n = g.graph.node(near[i]);
    if (n.op_type() == "MatMul") {
      std::string pre;
      llvm::SmallVector<const onnx::NodeProto *> actNodes;
      std::optional<PlainActivation> kind = plainActivation(g, constants, inputOf(n, 0), pre, actNodes);
      if (!kind || pre != h)
        continue;
      expert.ungated = *kind;
      found.append(actNodes.begin(), actNodes.end());
      return downOf(&n, (*w13)[1]);
    }
    for (const std::string &out : n.output())
      llvm::append_range(near, g.users(out));
  }
  if ((*w13)[1] % 2 != 0)
    return std::nullopt;
  int64_t ffn = (*w13)[1] / 2;
  // The two halves of h along its last axis: [0, I) and [I, 2I).
  std::string halves[2];
  for (int u : g.users(h)) {
    const onnx::NodeProto &slice = g.graph.node(u);
    if (slice.op_type() == "Shape") // what the chunk's bounds are computed from
      continue;
    std::optional<std::pair<int64_t, int64_t>> range = lastAxisSlice(constants, &slice, h, 2 * ffn);
    if (!range)
      return std::nullopt;
    using Range = std::pair<int64_t, int64_t>;
    int64_t half = *range == Range(0, ffn) ? 0 : *range == Range(ffn, 2 * ffn) ? 1 : -1;
    if (half < 0 || !halves[half].empty())
      return std::nullopt;
    halves[half] = outputOf(slice, 0);
    found.push_back(&slice);
  }
  if (halves[0].empty() || halves[1].empty())
    return std::nullopt;
  const onnx::NodeProto *act = matchGatedActivation(g, halves[0], halves[1], expert.activation, found);
  const onnx::NodeProto *downMM = act ? g.onlyUser(outputOf(*act, 0), "MatMul") : nullptr;
  if (!downMM || inputOf(*downMM, 0) != outputOf(*act, 0))
    return std::nullopt;
  return downOf(downMM, ffn);
}

/// Gather(W, index, axis 0) of a constant W of rank `rank`: W's name, or "".
static std::string gatheredAt(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value,
                              llvm::StringRef index, size_t rank, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *gather = g.producer(value);
  std::optional<llvm::SmallVector<int64_t>> shape =
      gather && gather->op_type() == "Gather" && intAttr(*gather, "axis", 0) == 0 && inputOf(*gather, 1) == index &&
              g.isConstant(inputOf(*gather, 0))
          ? constants.shape(inputOf(*gather, 0))
          : std::nullopt;
  if (!shape || shape->size() != rank)
    return "";
  nodes.push_back(gather);
  return inputOf(*gather, 0);
}

/// One gpt-oss expert (transformers' GptOssExperts, eager) on its rows:
///   h = MatMul(rows, Gather(W13, index)) + Gather(b13, index)   W13 [E, H, 2I]
///   a = the clamped SwiGLU of h's alternate columns (matchGptOssActivation)
///   o = MatMul(a, Gather(W2, index)) + Gather(b2, index)        W2 [E, I, H]
/// Sets the weights and biases in `oss` and block.gateUp/down; returns o.
static std::optional<std::string> gptOssExpert(const GraphIndex &g, const ConstantLookup &constants, MoeBlock &block,
                                               llvm::StringRef rows, llvm::StringRef index, MoeBlock::GptOss &oss,
                                               llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  llvm::SmallVector<const onnx::NodeProto *> found;
  // MatMul(lhs, W[index]) + b[index]: the weight's and bias's names and the sum.
  auto linear = [&](llvm::StringRef lhs, std::string &w, std::string &b) -> std::string {
    const onnx::NodeProto *mm = g.onlyUser(lhs, "MatMul");
    const onnx::NodeProto *add = mm && inputOf(*mm, 0) == lhs ? g.onlyUser(outputOf(*mm, 0), "Add") : nullptr;
    if (!add)
      return "";
    w = gatheredAt(g, constants, inputOf(*mm, 1), index, 3, found);
    llvm::StringRef bias = inputOf(*add, 0) == outputOf(*mm, 0) ? inputOf(*add, 1) : inputOf(*add, 0);
    b = gatheredAt(g, constants, bias, index, 2, found);
    if (w.empty() || b.empty())
      return "";
    found.append({mm, add});
    return outputOf(*add, 0);
  };
  std::string w13, b13, w2, b2;
  std::string h = linear(rows, w13, b13);
  if (h.empty()) {
    why = "its rows do not feed a GEMM with bias on the gathered gate/up stack";
    return std::nullopt;
  }
  MoeBlock::GptOss expert;
  const onnx::NodeProto *product = matchGptOssActivation(g, constants, h, expert, found, why);
  if (!product)
    return std::nullopt;
  std::string o = linear(outputOf(*product, 0), w2, b2);
  if (o.empty()) {
    why = "the activation does not feed the down GEMM with its bias";
    return std::nullopt;
  }
  bool first = block.gateUp.empty();
  if (!first && (block.gateUp != w13 || block.down != w2 || oss.upBias != b13 || oss.downBias != b2 ||
                 oss.alpha != expert.alpha || oss.beta != expert.beta || oss.limit != expert.limit)) {
    why = "its stacked weights, biases or activation differ from the other experts'";
    return std::nullopt;
  }
  block.gateUp = w13;
  block.down = w2;
  oss.upBias = b13;
  oss.downBias = b2;
  oss.alpha = expert.alpha;
  oss.beta = expert.beta;
  oss.limit = expert.limit;
  nodes.append(found.begin(), found.end());
  return o;
}

/// gpt-oss's routing: w = Softmax(TopK(logits).values) over the picks (a
/// Cast after it allowed), the logits any linear map of x with a constant
/// weight (the router's bias kept: the layer takes the logits as computed).
/// Sets x, k and oss.logits; returns w and the expert count.
static std::optional<std::pair<std::string, int64_t>>
picksSoftmaxRouting(const GraphIndex &g, const ConstantLookup &constants, int topk, MoeBlock &block,
                    MoeBlock::GptOss &oss, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto &t = g.graph.node(topk);
  const onnx::NodeProto *softmax = t.output_size() == 2 ? g.onlyUser(outputOf(t, 0), "Softmax") : nullptr;
  std::optional<llvm::SmallVector<int64_t>> k = constants(inputOf(t, 1));
  int64_t softmaxAxis = softmax ? intAttr(*softmax, "axis", -1) : 0;
  if (!softmax || !k || k->size() != 1 || intAttr(t, "largest", 1) != 1 || intAttr(t, "axis", -1) != -1 ||
      (softmaxAxis != -1 && softmaxAxis != 1))
    return std::nullopt;
  // logits = Gemm(x, W[, b]) (transB: W as rows), MatMul(x, W) [+ b].
  std::string logits = inputOf(t, 0);
  const onnx::NodeProto *linear = g.producer(logits);
  if (linear && linear->op_type() == "Add")
    for (int side = 0; side < 2; ++side)
      if (const onnx::NodeProto *mm = g.producer(inputOf(*linear, side)); mm && mm->op_type() == "MatMul")
        linear = mm;
  std::optional<llvm::SmallVector<int64_t>> w =
      linear && (linear->op_type() == "Gemm" || linear->op_type() == "MatMul") && g.isConstant(inputOf(*linear, 1))
          ? constants.shape(inputOf(*linear, 1))
          : std::nullopt;
  if (!w || w->size() != 2 || intAttr(*linear, "transA", 0) != 0)
    return std::nullopt;
  int64_t experts = (*w)[linear->op_type() == "Gemm" && intAttr(*linear, "transB", 0) ? 0 : 1];
  block.x = inputOf(*linear, 0);
  block.k = (*k)[0];
  oss.logits = logits;
  nodes.append({&t, softmax});
  return std::make_pair(throughFloatCastUser(g, outputOf(*softmax, 0), nodes), experts);
}

/// The expert's own FFN on its rows: the first value downstream of the rows
/// (within 64 values) that only one of `readers` reads (its scale: Mul, or
/// a Cast to it) and that is an FFN of the rows (matchOwnExpertFfn). Sets
/// `output`.
std::optional<OwnExpertFfn> ownExpertOnRows(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef rows,
                                            std::string &output, llvm::SmallVector<const onnx::NodeProto *> &nodes,
                                            llvm::ArrayRef<llvm::StringRef> readers) {
  auto isRows = [&](llvm::StringRef v) { return v == rows; };
  llvm::SmallVector<std::string> frontier = {rows.str()};
  llvm::StringSet<> seen;
  for (size_t i = 0; i < frontier.size() && i < 64; ++i)
    for (int u : g.users(frontier[i]))
      for (const std::string &out : g.graph.node(u).output()) {
        if (!seen.insert(out).second)
          continue;
        frontier.push_back(out);
        if (llvm::none_of(readers, [&](llvm::StringRef op) { return g.onlyUser(out, op); }))
          continue;
        llvm::SmallVector<const onnx::NodeProto *> found;
        if (std::optional<OwnExpertFfn> ffn = matchOwnExpertFfn(g, constants, out, isRows, found)) {
          nodes.append(found.begin(), found.end());
          output = out;
          return ffn;
        }
      }
  return std::nullopt;
}

/// ScatterND(acc, Unsqueeze(token, -1), rows, add), or, as TorchScript
/// writes index_add_, Add(acc, ScatterElements(zeros shaped like acc,
/// Expand(Unsqueeze(token, -1), Shape(e)), e, axis 0)) with
/// e = Expand(rows, Shape(acc[:1, :])) (the same rows: acc[:1] broadcasts
/// to them), or acc[token] += rows as written by hand (index_put without
/// accumulate): ScatterND(acc, column, Add(GatherND(acc, column), rows)),
/// or scatter_add_(0, token[:, None].expand(-1, H), rows):
/// ScatterElements(acc, Expand(column), rows, axis 0, add) (TorchScript
/// slices the rows to the indices' shape: themselves), or TorchScript's
/// index_put_(accumulate=True): Add(acc, ScatterND(zeros shaped like acc,
/// column, rows reshaped to themselves)).
/// The tokens of one expert are distinct, so the scatter writes each row
/// once, the same sum every way.
/// The producer of the shape a zero ConstantOfShape `value` fills, or null
/// when `value` is no such fill.
static const onnx::NodeProto *zeroFillShape(const GraphIndex &g, llvm::StringRef value) {
  const onnx::NodeProto *zeros = g.producer(value);
  return zeros && zeros->op_type() == "ConstantOfShape" && llvm::all_of(zeros->attribute(), isZeroValue)
             ? g.producer(inputOf(*zeros, 0))
             : nullptr;
}

std::optional<Accumulation> accumulation(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef rows,
                                         llvm::StringRef token, llvm::SmallVector<const onnx::NodeProto *> &nodes,
                                         llvm::StringRef x) {
  // token [n] as a column [n, 1] (Unsqueeze at -1, or at 1: the same).
  auto unsqueezedToken = [&](llvm::StringRef value) -> const onnx::NodeProto * {
    const onnx::NodeProto *u = g.producer(value);
    return u && u->op_type() == "Unsqueeze" && inputOf(*u, 0) == token &&
                   (hasAxis(*u, constants, -1) || hasAxis(*u, constants, 1))
               ? u
               : nullptr;
  };
  // Zeros shaped like acc: ConstantOfShape(Shape(acc)), or, in an export
  // with static sizes, a zero constant (the Add checks it is acc's shape).
  auto zerosLike = [&](llvm::StringRef value, llvm::StringRef acc,
                       llvm::SmallVector<const onnx::NodeProto *> &found) {
    if (isZeroConstant(constants, value))
      return true;
    const onnx::NodeProto *shape = zeroFillShape(g, value);
    if (!shape || shape->op_type() != "Shape" || inputOf(*shape, 0) != acc)
      return false;
    found.append({g.producer(value), shape});
    return true;
  };
  // The rows themselves, or a view ONNX's shape rules make them: a Slice
  // from 0 to the indices' shape (ScatterElements' updates have the
  // indices' shape, Expand(column) the rows'), a Reshape feeding ScatterND's
  // updates ([n] + acc.shape[1:]: the rows' own shape).
  auto rowsView = [&](llvm::StringRef opType) -> const onnx::NodeProto * {
    for (const char *view : {"Slice", "Reshape"}) {
      const onnx::NodeProto *v = g.onlyUser(rows, view);
      if (!v || inputOf(*v, 0) != rows)
        continue;
      if (std::string(view) == "Slice") {
        std::optional<llvm::SmallVector<int64_t>> starts = constants(inputOf(*v, 1));
        if (!starts || llvm::any_of(*starts, [](int64_t x) { return x != 0; }) ||
            (v->input_size() > 4 && !inputOf(*v, 4).empty()))
          continue;
      }
      if (g.onlyUser(outputOf(*v, 0), opType))
        return v;
    }
    return nullptr;
  };
  const onnx::NodeProto *view = nullptr;
  const onnx::NodeProto *scatterAdd = g.onlyUser(rows, "ScatterElements");
  if (!scatterAdd && (view = rowsView("ScatterElements")))
    scatterAdd = g.onlyUser(outputOf(*view, 0), "ScatterElements");
  if (scatterAdd) {
    std::string updates = view ? outputOf(*view, 0) : std::string(rows);
    const onnx::NodeProto *expandToken = g.producer(inputOf(*scatterAdd, 1));
    const onnx::NodeProto *column = expandToken && expandToken->op_type() == "Expand"
                                        ? unsqueezedToken(inputOf(*expandToken, 0))
                                        : nullptr;
    if (!column || inputOf(*scatterAdd, 2) != updates || intAttr(*scatterAdd, "axis", 0) != 0 ||
        stringAttr(*scatterAdd, "reduction", "none") != "add")
      return std::nullopt;
    nodes.append({scatterAdd, expandToken, column});
    if (view)
      nodes.push_back(view);
    return Accumulation{inputOf(*scatterAdd, 0), outputOf(*scatterAdd, 0)};
  }
  const onnx::NodeProto *scatterND = g.onlyUser(rows, "ScatterND");
  if (!scatterND && (view = rowsView("ScatterND")) && view->op_type() == "Reshape")
    scatterND = g.onlyUser(outputOf(*view, 0), "ScatterND");
  // Rows assigned and the result added (TorchScript's index_put_); an
  // assignment read otherwise is the last form below.
  if (scatterND && (view || stringAttr(*scatterND, "reduction", "none") == "none") &&
      (view || g.onlyUser(outputOf(*scatterND, 0), "Add"))) {
    // Add(acc, ScatterND(zeros like acc (or x, which acc is shaped like),
    // column, rows)).
    const onnx::NodeProto *where = unsqueezedToken(inputOf(*scatterND, 1));
    const onnx::NodeProto *add = g.onlyUser(outputOf(*scatterND, 0), "Add");
    if (!where || !add || inputOf(*scatterND, 2) != (view ? outputOf(*view, 0) : rows.str()) ||
        stringAttr(*scatterND, "reduction", "none") != "none")
      return std::nullopt;
    std::string acc = inputOf(*add, 0) == outputOf(*scatterND, 0) ? inputOf(*add, 1) : inputOf(*add, 0);
    llvm::SmallVector<const onnx::NodeProto *> zeros;
    if (!zerosLike(inputOf(*scatterND, 0), acc, zeros) &&
        (x.empty() || !isZerosLike(g, constants, inputOf(*scatterND, 0), x, zeros)))
      return std::nullopt;
    if (view)
      nodes.push_back(view);
    nodes.append({scatterND, where, add});
    nodes.append(zeros.begin(), zeros.end());
    return Accumulation{acc, outputOf(*add, 0)};
  }
  if (const onnx::NodeProto *scatter = scatterND) {
    const onnx::NodeProto *where = unsqueezedToken(inputOf(*scatter, 1));
    bool adds = llvm::any_of(scatter->attribute(), [](const onnx::AttributeProto &a) {
      return a.name() == "reduction" && a.s() == "add";
    });
    if (!where || inputOf(*scatter, 2) != rows ||
        (!adds && stringAttr(*scatter, "reduction", "none") != "none"))
      return std::nullopt;
    nodes.append({scatter, where});
    return Accumulation{inputOf(*scatter, 0), outputOf(*scatter, 0), /*assigns=*/!adds};
  }
  if (const onnx::NodeProto *sum = g.onlyUser(rows, "Add")) {
    // The rows read: GatherND(acc, column) (dynamo), or Gather(acc, token)
    // on axis 0 (TorchScript).
    std::string old = inputOf(*sum, 0) == rows ? inputOf(*sum, 1) : inputOf(*sum, 0);
    const onnx::NodeProto *read = g.producer(old);
    bool readND = read && read->op_type() == "GatherND" && intAttr(*read, "batch_dims", 0) == 0 &&
                  unsqueezedToken(inputOf(*read, 1));
    bool readRows = read && read->op_type() == "Gather" && intAttr(*read, "axis", 0) == 0 && inputOf(*read, 1) == token;
    // TorchScript reshapes the sum to [len(token)] + acc.shape[1:] (itself).
    std::string written = outputOf(*sum, 0);
    const onnx::NodeProto *reshape = g.onlyUser(written, "Reshape");
    const onnx::NodeProto *target = reshape ? g.producer(inputOf(*reshape, 1)) : nullptr;
    const onnx::NodeProto *tokens = target && target->op_type() == "Concat" && target->input_size() == 2
                                        ? g.producer(inputOf(*target, 0))
                                        : nullptr;
    const onnx::NodeProto *rest = tokens ? g.producer(inputOf(*target, 1)) : nullptr;
    const onnx::NodeProto *accShape = rest && rest->op_type() == "Slice" ? g.producer(inputOf(*rest, 0)) : nullptr;
    std::optional<llvm::SmallVector<int64_t>> restStart = rest ? constants(inputOf(*rest, 1)) : std::nullopt;
    bool sameShape = tokens && tokens->op_type() == "Shape" && inputOf(*tokens, 0) == token && accShape &&
                     accShape->op_type() == "Shape" && read && inputOf(*accShape, 0) == inputOf(*read, 0) &&
                     restStart && *restStart == llvm::SmallVector<int64_t>{1} &&
                     constants(inputOf(*rest, 2)).value_or(llvm::SmallVector<int64_t>{0})[0] >=
                         std::numeric_limits<int32_t>::max();
    if (reshape && sameShape)
      written = outputOf(*reshape, 0);
    const onnx::NodeProto *write = g.onlyUser(written, "ScatterND");
    const onnx::NodeProto *where = write ? unsqueezedToken(inputOf(*write, 1)) : nullptr;
    if ((!readND && !readRows) || !where || !write || g.users(old).size() != 1 ||
        inputOf(*write, 0) != inputOf(*read, 0) || (readND && inputOf(*write, 1) != inputOf(*read, 1)) ||
        inputOf(*write, 2) != written || stringAttr(*write, "reduction", "none") != "none")
      return std::nullopt;
    nodes.append({read, sum, write, where});
    if (written != outputOf(*sum, 0))
      nodes.append({reshape, target, tokens, rest, accShape});
    return Accumulation{inputOf(*write, 0), outputOf(*write, 0)};
  }
  const onnx::NodeProto *expandRows = g.onlyUser(rows, "Expand");
  if (!expandRows || inputOf(*expandRows, 0) != rows)
    return std::nullopt;
  const onnx::NodeProto *scatter = g.userOfType(outputOf(*expandRows, 0), "ScatterElements");
  const onnx::NodeProto *rowsShape = g.userOfType(outputOf(*expandRows, 0), "Shape");
  const onnx::NodeProto *add = scatter ? g.onlyUser(outputOf(*scatter, 0), "Add") : nullptr;
  if (!scatter || !rowsShape || !add || inputOf(*scatter, 2) != outputOf(*expandRows, 0) ||
      intAttr(*scatter, "axis", 0) != 0 ||
      llvm::any_of(scatter->attribute(),
                   [](const onnx::AttributeProto &a) { return a.name() == "reduction" && a.s() != "none"; }))
    return std::nullopt;
  std::string acc = inputOf(*add, 0) == outputOf(*scatter, 0) ? inputOf(*add, 1) : inputOf(*add, 0);
  // Zeros shaped like acc: ConstantOfShape(Shape(acc)), or, in an export
  // with static sizes, a zero constant (the Add checks it is acc's shape).
  const onnx::NodeProto *zeros = g.producer(inputOf(*scatter, 0));
  const onnx::NodeProto *zerosShape = zeroFillShape(g, inputOf(*scatter, 0));
  bool staticZeros = isZeroConstant(constants, inputOf(*scatter, 0));
  // The token of each element.
  const onnx::NodeProto *expandToken = g.producer(inputOf(*scatter, 1));
  const onnx::NodeProto *column = expandToken && expandToken->op_type() == "Expand"
                                      ? unsqueezedToken(inputOf(*expandToken, 0))
                                      : nullptr;
  // acc[:1, :]: the rows broadcast to themselves; with static sizes a
  // constant [1, c] does the same (c is 1 or the width, else the graph fails).
  std::optional<llvm::SmallVector<int64_t>> staticTarget = constants(inputOf(*expandRows, 1));
  bool staticExpand = staticTarget && staticTarget->size() == 2 && (*staticTarget)[0] == 1;
  const onnx::NodeProto *sliceShape = staticExpand ? nullptr : g.producer(inputOf(*expandRows, 1));
  const onnx::NodeProto *slice = sliceShape && sliceShape->op_type() == "Shape" ? g.producer(inputOf(*sliceShape, 0)) : nullptr;
  bool zerosLikeAcc = staticZeros || (zerosShape && zerosShape->op_type() == "Shape" && inputOf(*zerosShape, 0) == acc);
  bool accRow = staticExpand || (slice && slice->op_type() == "Slice" && inputOf(*slice, 0) == acc &&
                                 slice->input_size() >= 4 && (slice->input_size() == 4 || inputOf(*slice, 4).empty()));
  if (!zerosLikeAcc || !column || inputOf(*expandToken, 1) != outputOf(*rowsShape, 0) || !accRow)
    return std::nullopt;
  if (!staticExpand) {
    std::optional<llvm::SmallVector<int64_t>> starts = constants(inputOf(*slice, 1)),
                                              ends = constants(inputOf(*slice, 2)), axes = constants(inputOf(*slice, 3));
    if (!starts || !ends || !axes || starts->size() != 2 || ends->size() != 2 ||
        *axes != llvm::SmallVector<int64_t>{0, 1} || (*starts)[0] != 0 || (*starts)[1] != 0 || (*ends)[0] != 1 ||
        (*ends)[1] < std::numeric_limits<int32_t>::max())
      return std::nullopt;
    nodes.append({sliceShape, slice});
  }
  if (!staticZeros)
    nodes.append({zeros, zerosShape});
  nodes.append({expandRows, scatter, rowsShape, add, expandToken, column});
  return Accumulation{acc, outputOf(*add, 0)};
}

/// The zeros the accumulation starts from are shaped like x [T, H]:
/// ConstantOfShape(Shape(x)), or, as transformers writes
/// zeros((batch * seq, hidden)), the sizes of the [B, S, H] tensor x is
/// reshaped from.
static bool zerosLikeX(const GraphIndex &g, const ConstantLookup &constants, const MoeBlock &block,
                       llvm::StringRef value, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  // An export with static sizes: a zero constant [T, H] (the layer's result
  // replacing the sum is checked against its shape at import).
  if (isZeroConstant(constants, value)) {
    std::optional<llvm::SmallVector<int64_t>> shape = constants.shape(value);
    return shape && shape->size() == 2;
  }
  // Shape(x) whole (a `start = 0` attribute allowed).
  auto isShapeOfX = [&](const onnx::NodeProto *shape) {
    return shape && isWholeShape(*shape) && block.isX(inputOf(*shape, 0));
  };
  // torch.zeros_like(x) through dynamo: Expand(0, Shape(x)).
  if (const onnx::NodeProto *expand = g.producer(value);
      expand && expand->op_type() == "Expand" && isZeroConstant(constants, inputOf(*expand, 0))) {
    const onnx::NodeProto *shape = g.producer(inputOf(*expand, 1));
    std::optional<llvm::SmallVector<int64_t>> zero = constants.shape(inputOf(*expand, 0));
    if (isShapeOfX(shape) && zero && llvm::all_of(*zero, [](int64_t d) { return d == 1; })) {
      nodes.append({expand, shape});
      return true;
    }
    return false;
  }
  const onnx::NodeProto *zeros = g.producer(value);
  const onnx::NodeProto *shape = zeroFillShape(g, value);
  if (!shape)
    return false;
  if (isShapeOfX(shape)) {
    nodes.append({zeros, shape});
    return true;
  }
  // x.new_zeros(x.shape) spelled size by size: Concat of x's token count
  // (Shape(x, 0, 1), or Gather(Shape(x), 0) unsqueezed) and its hidden size
  // (the same, or the constant the router's weight says).
  if (shape->op_type() == "Concat" && shape->input_size() == 2 && intAttr(*shape, "axis", 0) == 0) {
    std::optional<llvm::SmallVector<int64_t>> router = constants.shape(block.routerWeight.name);
    int64_t hidden = router && router->size() == 2 ? (*router)[block.routerWeight.rows ? 1 : 0] : -1;
    llvm::SmallVector<const onnx::NodeProto *> sizes;
    auto isDim = [&](llvm::StringRef v, int64_t d) {
      const onnx::NodeProto *slice = g.producer(v);
      if (slice && slice->op_type() == "Shape" && block.isX(inputOf(*slice, 0)) &&
          intAttr(*slice, "start", 0) == d && intAttr(*slice, "end", -1) == d + 1) {
        sizes.push_back(slice);
        return true;
      }
      std::optional<llvm::SmallVector<int64_t>> c = constants(v);
      if (c)
        return d == 1 && c->size() == 1 && (*c)[0] == hidden;
      return isSizeOf(g, constants, v, block.x, d, sizes);
    };
    if (isDim(inputOf(*shape, 0), 0) && isDim(inputOf(*shape, 1), 1)) {
      nodes.append({zeros, shape});
      nodes.append(sizes.begin(), sizes.end());
      return true;
    }
  }
  const onnx::NodeProto *view = g.producer(block.x);
  std::string source = view && view->op_type() == "Reshape" ? inputOf(*view, 0) : "";
  if (source.empty() || !constants.rank || constants.rank(source) != 3 || shape->op_type() != "Concat" ||
      shape->input_size() != 2)
    return false;
  llvm::SmallVector<const onnx::NodeProto *> sizes;
  const onnx::NodeProto *rows = g.producer(inputOf(*shape, 0));
  const onnx::NodeProto *product = rows && rows->op_type() == "Unsqueeze" && hasAxis(*rows, constants, 0)
                                       ? g.producer(inputOf(*rows, 0))
                                       : nullptr;
  if (!product || product->op_type() != "Mul" || !isSizeOf(g, constants, inputOf(*shape, 1), source, 2, sizes))
    return false;
  bool tokens = (isSizeOf(g, constants, inputOf(*product, 0), source, 0, sizes) &&
                 isSizeOf(g, constants, inputOf(*product, 1), source, 1, sizes)) ||
                (isSizeOf(g, constants, inputOf(*product, 0), source, 1, sizes) &&
                 isSizeOf(g, constants, inputOf(*product, 1), source, 0, sizes));
  if (!tokens)
    return false;
  nodes.append({zeros, shape, rows, product});
  return true;
}

/// ReduceSum(mask, [-1, -2]) without keepdims: each expert's count of
/// (slot, token) pairs, what transformers' loop over hit experts tests.
static bool isHitCount(const GraphIndex &g, const ConstantLookup &constants, const onnx::NodeProto &sum,
                       llvm::StringRef mask) {
  std::optional<llvm::SmallVector<int64_t>> axes = axesOf(sum, constants);
  if (!axes || axes->size() != 2 || inputOf(sum, 0) != mask || intAttr(sum, "keepdims", 1) != 0)
    return false;
  llvm::SmallVector<int64_t> sorted;
  for (int64_t a : *axes)
    sorted.push_back(a < 0 ? a + 3 : a);
  llvm::sort(sorted);
  return sorted == llvm::SmallVector<int64_t>{1, 2};
}

/// The expert `index` stands for in transformers' loop over the experts
/// the input hit, as tracing unrolls it:
///
///   hit = NonZero(Greater(ReduceSum(mask, [-1, -2]), 0))
///   index = Squeeze(Split(Transpose(hit, [1, 0]), 1, .., 1)[i], 0)  ([1])
///           or Gather(that, 0)                                      (scalar)
///
/// Returns i, and whether the index is a scalar (else the mask it picks
/// is [1, k, T]).
/// The trace repeats the body once per expert the example input hit, so
/// index i is expert i only when that was every expert: then the loop is
/// the whole layer (the graph itself fails on inputs hitting fewer, its
/// Split sizes no longer matching). With fewer, the graph lacks the other
/// experts' weights: `why` says so.
static std::optional<std::pair<int64_t, bool>>
hitExpert(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef index, llvm::StringRef mask,
          int64_t experts, llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  why = "the one-hot expert mask is read at an index other than a constant or the experts the input hit";
  // transformers 5 takes the element as a scalar (expert_idx[0]).
  const onnx::NodeProto *element = g.producer(index);
  std::optional<llvm::SmallVector<int64_t>> first = element && element->op_type() == "Gather" &&
                                                            intAttr(*element, "axis", 0) == 0
                                                        ? constants(inputOf(*element, 1))
                                                        : std::nullopt;
  bool scalar = first && first->size() == 1 && (*first)[0] == 0 && constants.rank &&
                constants.rank(inputOf(*element, 1)) == 0;
  const onnx::NodeProto *squeeze = g.producer(scalar ? inputOf(*element, 0) : index);
  const onnx::NodeProto *split = squeeze && squeeze->op_type() == "Squeeze" &&
                                         (hasAxis(*squeeze, constants, 0) || hasAxis(*squeeze, constants, 1))
                                     ? g.producer(inputOf(*squeeze, 0))
                                     : nullptr;
  const onnx::NodeProto *transpose = split && split->op_type() == "Split" && intAttr(*split, "axis", 0) == 0
                                         ? g.producer(inputOf(*split, 0))
                                         : nullptr;
  const onnx::NodeProto *nz = transpose && transpose->op_type() == "Transpose" ? g.producer(inputOf(*transpose, 0)) : nullptr;
  const onnx::NodeProto *greater = nz && nz->op_type() == "NonZero" ? g.producer(inputOf(*nz, 0)) : nullptr;
  const onnx::NodeProto *sum = greater && greater->op_type() == "Greater" ? g.producer(inputOf(*greater, 0)) : nullptr;
  std::optional<llvm::SmallVector<int64_t>> zero = greater ? constants(inputOf(*greater, 1)) : std::nullopt;
  if (!sum || sum->op_type() != "ReduceSum" || !isHitCount(g, constants, *sum, mask) || !zero || zero->size() != 1 ||
      (*zero)[0] != 0)
    return std::nullopt;
  int64_t i = 0;
  while (i < split->output_size() && outputOf(*split, i) != inputOf(*squeeze, 0))
    ++i;
  if (split->output_size() != experts) {
    why = "the loop over the experts the exporting input hit covers " + std::to_string(split->output_size()) +
          " of the router's " + std::to_string(experts) +
          " experts (tracing kept only those): export with an input that hits every expert";
    return std::nullopt;
  }
  why.clear();
  nodes.append({squeeze, split, transpose, nz, greater, sum});
  if (scalar)
    nodes.push_back(element);
  return std::make_pair(i, scalar);
}

/// The per-expert masks of the loop form, by expert id: OneHot(ids) ->
/// Transpose([2, 1, 0]) -> Gather(e) (NonZero rows: slot, token) or
/// Equal(ids, e) (token, slot). Empty when neither form is there.
std::map<int64_t, ExpertRows> expertMasks(const GraphIndex &g, const ConstantLookup &constants,
                                          llvm::StringRef ids, int64_t experts,
                                          llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  std::map<int64_t, ExpertRows> masks;
  auto add = [&](int64_t e, std::optional<std::pair<std::string, std::string>> rows, bool tokenFirst,
                 llvm::StringRef index) {
    if (!rows || e < 0 || e >= experts || masks.count(e)) {
      why = "expert " + std::to_string(e) + "'s mask is not NonZero's (token, slot) lists of one expert";
      return false;
    }
    masks[e] = tokenFirst ? ExpertRows{rows->first, rows->second, index.str()}
                          : ExpertRows{rows->second, rows->first, index.str()};
    return true;
  };
  for (int u : g.users(ids)) {
    const onnx::NodeProto &n = g.graph.node(u);
    if (n.op_type() == "OneHot" && inputOf(n, 0) == ids) {
      std::optional<llvm::SmallVector<int64_t>> depth = constants(inputOf(n, 1)), values = constants(inputOf(n, 2));
      const onnx::NodeProto *perm = g.onlyUser(outputOf(n, 0), "Transpose");
      llvm::SmallVector<int64_t> order = perm ? intsAttr(*perm, "perm") : llvm::SmallVector<int64_t>();
      // transformers 5 adds a class for "no expert" (E), which top-k ids
      // over E experts never take: its row of the mask is all zeros.
      if (!depth || depth->size() != 1 || ((*depth)[0] != experts && (*depth)[0] != experts + 1) || !values ||
          values->size() != 2 ||
          (*values)[0] != 0 || (*values)[1] == 0 || intAttr(n, "axis", -1) != -1 || !perm ||
          order != llvm::SmallVector<int64_t>{2, 1, 0}) {
        why = "the one-hot expert mask is not one_hot(ids, E).permute(2, 1, 0)";
        return {};
      }
      nodes.append({&n, perm});
      std::string permuted = outputOf(*perm, 0);
      for (int v : g.users(permuted)) {
        const onnx::NodeProto &pick = g.graph.node(v);
        // The loop over the experts the input hit reads the mask's sums.
        if (pick.op_type() == "ReduceSum" && isHitCount(g, constants, pick, permuted)) {
          nodes.push_back(&pick);
          continue;
        }
        std::optional<llvm::SmallVector<int64_t>> e = constants(pick.input_size() > 1 ? inputOf(pick, 1) : "");
        std::string mask = outputOf(pick, 0);
        if (pick.op_type() == "Gather" && intAttr(pick, "axis", 0) == 0 && !e) {
          std::optional<std::pair<int64_t, bool>> hit =
              hitExpert(g, constants, inputOf(pick, 1), permuted, experts, nodes, why);
          if (!hit)
            return {};
          // A [1] index leaves the mask [1, k, T]: squeezed.
          const onnx::NodeProto *squeeze = hit->second ? nullptr : g.onlyUser(mask, "Squeeze");
          if (!hit->second && (!squeeze || !hasAxis(*squeeze, constants, 0))) {
            why = "the hit expert's mask is not squeezed to [k, T]";
            return {};
          }
          nodes.push_back(&pick);
          if (squeeze)
            nodes.push_back(squeeze);
          if (!add(hit->first, nonZeroRows(g, constants, squeeze ? outputOf(*squeeze, 0) : mask, nodes),
                   /*tokenFirst=*/false,
                   inputOf(pick, 1)))
            return {};
          continue;
        }
        if (pick.op_type() != "Gather" || intAttr(pick, "axis", 0) != 0 || !e || e->size() != 1) {
          why = "the one-hot expert mask is read other than one expert at a time";
          return {};
        }
        nodes.push_back(&pick);
        if (!add((*e)[0], nonZeroRows(g, constants, mask, nodes), /*tokenFirst=*/false, inputOf(pick, 1)))
          return {};
      }
    } else if (n.op_type() == "Equal") {
      std::string other = inputOf(n, 0) == ids ? inputOf(n, 1) : inputOf(n, 0);
      std::optional<llvm::SmallVector<int64_t>> e = constants(other);
      if (!e || e->size() != 1)
        continue;
      nodes.push_back(&n);
      llvm::SmallVector<const onnx::NodeProto *> rowNodes;
      std::string tokens = rowMaskTokens(g, constants, outputOf(n, 0), rowNodes);
      if (!tokens.empty() && (*e)[0] >= 0 && (*e)[0] < experts && !masks.count((*e)[0])) {
        nodes.append(rowNodes.begin(), rowNodes.end());
        masks[(*e)[0]] = ExpertRows{tokens, "", other, outputOf(n, 0)};
        continue;
      }
      if (!add((*e)[0], nonZeroRows(g, constants, outputOf(n, 0), nodes), /*tokenFirst=*/true, other))
        return {};
    }
  }
  return masks;
}

/// Whether two runs of an expert's FFN use the same weights the same way.
static bool sameExpertFfn(const OwnExpertFfn &a, const OwnExpertFfn &b) {
  return a.gate == b.gate && a.up == b.up && a.down == b.down && a.gateBias == b.gateBias && a.upBias == b.upBias &&
         a.downBias == b.downBias && a.rows == b.rows && a.gated == b.gated && a.ungated == b.ungated;
}

/// The slot-column form's rows, keyed e·k + j: for each slot j, column j
/// of the ids (Gather(ids, j, axis 1), a scalar j) compared with each expert
/// e, its tokens Squeeze(Transpose(NonZero(ids[:, j] == e)), 1)
/// (RowMaskCanonicalization.cpp writes every spelling so). A column read
/// any other way is not this form and adds nothing (other forms may read
/// it; the caller's count says what is missing).
static std::map<int64_t, ExpertRows> slotColumnMasks(const GraphIndex &g, const ConstantLookup &constants,
                                                     llvm::StringRef ids, int64_t experts, int64_t k,
                                                     llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  std::map<int64_t, ExpertRows> masks;
  for (int u : g.users(ids)) {
    const onnx::NodeProto &pick = g.graph.node(u);
    // A top-1's ids squeezed to [T] are its one column (argmax,
    // torch.max): the import moves the Squeeze below the comparison,
    // Squeeze(Equal(ids, e), -1).
    if (k == 1 && pick.op_type() == "Equal") {
      std::string other = inputOf(pick, 0) == ids ? inputOf(pick, 1) : inputOf(pick, 0);
      std::optional<llvm::SmallVector<int64_t>> e = constants(other);
      const onnx::NodeProto *squeeze = g.onlyUser(outputOf(pick, 0), "Squeeze");
      llvm::SmallVector<const onnx::NodeProto *> found = {&pick, squeeze};
      std::string tokens = e && e->size() == 1 && (*e)[0] >= 0 && (*e)[0] < experts && squeeze &&
                                   (hasAxis(*squeeze, constants, -1) || hasAxis(*squeeze, constants, 1))
                               ? maskTokens(g, constants, outputOf(*squeeze, 0), found)
                               : "";
      if (!tokens.empty() && !masks.count((*e)[0])) {
        masks[(*e)[0]] = ExpertRows{tokens, "", other, "", 0};
        nodes.append(found.begin(), found.end());
      }
      continue;
    }
    std::optional<llvm::SmallVector<int64_t>> j = pick.op_type() == "Gather" && inputOf(pick, 0) == ids &&
                                                          intAttr(pick, "axis", 0) == 1
                                                      ? constants(inputOf(pick, 1))
                                                      : std::nullopt;
    if (!j || j->size() != 1 || !constants.rank || constants.rank(inputOf(pick, 1)) != 0)
      continue;
    int64_t slot = (*j)[0] < 0 ? (*j)[0] + k : (*j)[0];
    std::string ofSlot = outputOf(pick, 0);
    std::map<int64_t, ExpertRows> column;
    llvm::SmallVector<const onnx::NodeProto *> found = {&pick};
    bool read = slot >= 0 && slot < k;
    for (int v : g.users(ofSlot)) {
      const onnx::NodeProto &eq = g.graph.node(v);
      std::string other = eq.op_type() == "Equal" ? (inputOf(eq, 0) == ofSlot ? inputOf(eq, 1) : inputOf(eq, 0))
                                                  : std::string();
      std::optional<llvm::SmallVector<int64_t>> e = constants(other);
      bool oneExpert = e && e->size() == 1 && (*e)[0] >= 0 && (*e)[0] < experts;
      int64_t key = oneExpert ? (*e)[0] * k + slot : -1;
      found.push_back(&eq);
      std::string tokens = oneExpert ? maskTokens(g, constants, outputOf(eq, 0), found) : "";
      read = read && !tokens.empty() && !masks.count(key) && !column.count(key);
      if (!read)
        break;
      column[key] = ExpertRows{tokens, "", other, "", slot};
    }
    if (!read)
      continue;
    masks.insert(column.begin(), column.end());
    nodes.append(found.begin(), found.end());
  }
  return masks;
}

/// The per-expert loop form at TopK node `topk`, its routing read as
/// gpt-oss's (the block computed as ONNX Runtime's MoE) when `asGptOss` or
/// when no other routing matches; `biasedRouter` says whether the other
/// routing matched with a router bias.
static std::optional<MoeBlock> matchPerExpertBlockAs(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                                     bool asGptOss, std::string &why, bool &biasedRouter) {
  const onnx::NodeProto &t = g.graph.node(topk);
  MoeBlock block;
  llvm::SmallVector<const onnx::NodeProto *> nodes;
  std::optional<std::string> routed = asGptOss ? std::nullopt : matchRouting(g, constants, topk, block, nodes, why);
  biasedRouter = routed && !block.routerBias.empty();
  std::optional<llvm::SmallVector<int64_t>> routerShape = routed ? constants.shape(block.routerWeight.name)
                                                                 : std::nullopt;
  int64_t experts = routerShape && routerShape->size() == 2 ? (*routerShape)[block.routerWeight.rows ? 0 : 1] : 0;
  // gpt-oss: top-k of the (biased) logits, then the softmax over the picks.
  std::optional<MoeBlock::GptOss> oss;
  if (!experts) {
    block = MoeBlock();
    nodes.clear();
    MoeBlock::GptOss picks;
    std::optional<std::pair<std::string, int64_t>> gptOssRouting =
        picksSoftmaxRouting(g, constants, topk, block, picks, nodes);
    if (!gptOssRouting)
      return std::nullopt;
    routed = gptOssRouting->first;
    experts = gptOssRouting->second;
    oss = picks;
    why.clear();
  }
  // A top-1's experts compared with its squeezed ids (slot 0's column).
  std::map<int64_t, ExpertRows> masks;
  if (block.k == 1)
    masks = slotColumnMasks(g, constants, outputOf(t, 1), experts, block.k, nodes);
  if (masks.empty())
    masks = expertMasks(g, constants, outputOf(t, 1), experts, nodes, why);
  // Otherwise a loop over the slots, then the experts: every expert once per
  // slot, keyed e·k + j.
  int64_t perExpert = 1;
  if (masks.empty() && why.empty() && block.k > 0) {
    masks = slotColumnMasks(g, constants, outputOf(t, 1), experts, block.k, nodes);
    perExpert = block.k;
  }
  if (masks.empty())
    return std::nullopt;
  auto fail = [&](const std::string &reason) -> std::optional<MoeBlock> {
    why = reason;
    return std::nullopt;
  };
  if (static_cast<int64_t>(masks.size()) != experts * perExpert)
    return fail("the per-expert loop covers " + std::to_string(masks.size() / perExpert) + " of the router's " +
                std::to_string(experts) + " experts" + (perExpert > 1 ? " in every slot" : ""));
  std::string w = *routed;
  auto other = [](const onnx::NodeProto &n, llvm::StringRef value) {
    return inputOf(n, 0) == value ? inputOf(n, 1) : inputOf(n, 0);
  };
  std::map<int64_t, Accumulation> steps;
  std::map<int64_t, OwnExpertFfn> own; // experts on their own constants
  std::optional<StackedExpert> first;  // the first expert on stacked weights
  for (auto &[key, rows] : masks) {
    int64_t e = key / perExpert;
    std::string expert = "expert " + std::to_string(e) + ": ";
    // rows = x[token]; silu(rows W1) * (rows W3); then W2.
    std::string xRows = gatheredRows(g, constants, block, rows.token, nodes);
    if (xRows.empty())
      return fail(expert + "its tokens' rows of x are not gathered");
    // The expert's FFN on its rows: o, from stacked weights gathered at
    // the expert's index (transformers 5) or its own constants.
    std::string o;
    if (oss) {
      if (!own.empty())
        return fail(expert + "its weights are not the stacked ones the other experts use");
      std::string expertWhy;
      std::optional<std::string> out = gptOssExpert(g, constants, block, xRows, rows.index, *oss, nodes, expertWhy);
      if (!out)
        return fail(expert + expertWhy);
      o = *out;
    } else if (std::optional<StackedExpert> stacked =
                   own.empty() ? stackedExpert(g, constants, xRows, rows.index, nodes) : std::nullopt) {
      if (first && !first->sameForm(*stacked))
        return fail(expert + "its stacked weights or activation differ from the other experts'");
      first = stacked;
      block.gateUp = stacked->gateUp;
      block.down = stacked->down;
      block.activation = stacked->activation;
      block.ungated = stacked->ungated;
      o = stacked->output;
    } else {
      if (!block.gateUp.empty())
        return fail(expert + "its weights are not the stacked ones the other experts use");
      std::optional<OwnExpertFfn> ffn = ownExpertOnRows(g, constants, xRows, o, nodes);
      if (!ffn)
        return fail(expert + "its rows do not feed an FFN (gated SwiGLU/GeGLU, or ReLU/GELU/SiLU) on its own "
                             "constant weights");
      // The slot-column form runs each expert once per slot: on the same FFN.
      if (auto seen = own.find(e); seen != own.end() && !sameExpertFfn(seen->second, *ffn))
        return fail(expert + "its FFN differs from one slot to another");
      own[e] = *ffn;
    }
    // Scaled by the slot weight w[token, slot] and added at the token (a
    // 16-bit model scales in f32: Casts around the product).
    o = throughFloatCastUser(g, o, nodes);
    const onnx::NodeProto *scale = g.onlyUser(o, "Mul");
    if (!scale || !slotWeightColumn(g, constants, other(*scale, o), w, block.k, rows, nodes))
      return fail(expert + "its rows are not scaled by their slot weights w[token, slot]");
    nodes.push_back(scale);
    std::optional<Accumulation> step =
        accumulation(g, constants, throughFloatCastUser(g, outputOf(*scale, 0), nodes), rows.token, nodes, block.x);
    if (!step)
      return fail(expert + "its weighted rows are not added at their tokens (ScatterND add or index_add_)");
    steps[key] = *step;
  }
  // Rows assigned into one buffer add up only where no two steps write a
  // row: the tokens of one slot column compared with distinct experts.
  if (llvm::any_of(steps, [](auto &step) { return step.second.assigns; }) &&
      llvm::any_of(masks, [&](auto &m) { return m.second.column < 0 || m.second.column != masks.begin()->second.column; }))
    return fail("the experts' rows are assigned into one buffer, but their tokens may overlap (only the tokens of "
                "one slot column, a top-1's, are disjoint)");
  std::optional<std::string> chained = accumulationChain(g, constants, block, steps, nodes, why);
  if (!chained)
    return std::nullopt;
  std::string acc = *chained;
  if (!own.empty() && !setOwnExperts(block, own, why))
    return std::nullopt;
  if (!block.expertDownBias.empty() && block.deepSeek)
    return fail("experts with biases under DeepSeek-V3's routing (only softmax top-k routing takes biased experts)");
  block.output = acc;
  block.last = g.indexOf(g.producer(acc));
  block.gptOss = oss;
  if (!oss)
    matchSharedExpert(g, block, nodes);
  return finishBlock(g, std::move(block), nodes, topk, why);
}

std::optional<std::string> accumulationChain(const GraphIndex &g, const ConstantLookup &constants,
                                             const MoeBlock &block, const std::map<int64_t, Accumulation> &steps,
                                             llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  auto fail = [&](const std::string &reason) -> std::optional<std::string> {
    why = reason;
    return std::nullopt;
  };
  llvm::StringMap<int64_t> stepReading;
  for (auto &[e, step] : steps)
    if (!stepReading.try_emplace(step.in, e).second)
      return fail("two experts' accumulations read the same value");
  std::optional<int64_t> first;
  for (auto &[e, step] : steps)
    if (!llvm::any_of(steps, [&](auto &other) { return other.second.out == step.in; })) {
      if (first)
        return fail("the experts' accumulations do not form one chain");
      first = e;
    }
  if (!first || !zerosLikeX(g, constants, block, steps.at(*first).in, nodes))
    return fail("the experts' rows are not added into zeros shaped like x");
  std::string acc = steps.at(*first).out;
  for (size_t visited = 1; visited < steps.size(); ++visited) {
    auto next = stepReading.find(acc);
    if (next == stepReading.end())
      return fail("the experts' accumulations do not form one chain");
    acc = steps.at(next->second).out;
  }
  return acc;
}

std::optional<MoeBlock> matchPerExpertBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                            std::string &why) {
  std::string plainWhy, gptOssWhy;
  bool biasedRouter = false, ignored = false;
  if (std::optional<MoeBlock> block =
          matchPerExpertBlockAs(g, constants, topk, /*asGptOss=*/false, plainWhy, biasedRouter))
    return block;
  // A router with a bias reads as a routing of its own too; its experts may
  // still be gpt-oss's (clamped SwiGLU on alternate columns).
  if (std::optional<MoeBlock> block =
          matchPerExpertBlockAs(g, constants, topk, /*asGptOss=*/true, gptOssWhy, ignored)) {
    why.clear();
    return block;
  }
  // The gpt-oss reading's reason where the router has a bias (gpt-oss's
  // has), the plain one otherwise.
  why = biasedRouter && !gptOssWhy.empty() ? gptOssWhy : plainWhy;
  return std::nullopt;
}

} // namespace mlir::moe::onnx_import::blocks
