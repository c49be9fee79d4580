//===- OneHotCanonicalization.cpp - F.one_hot as OneHot --------------------===//
//
// TorchScript exports F.one_hot(i, E) as OneHot(i, E, [0, 1]); the dynamo
// exporter as Equal(Unsqueeze(i, -1), arange(E)), cast to int64 (and maybe
// on to a float type). The block matchers read OneHot; the cast compare is
// the same values:
//
//   Cast(Equal(Unsqueeze(i, -1), arange(E)), T) = OneHot(i, E, [0, 1] : T)
//
// for integer ids i (an id outside [0, E) gives a zero row either way).
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"
#include "GraphCanonicalization.h"
#include "GraphEditor.h"

#include <cstring>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

bool isIntegerType(int32_t t) { return t == onnx::TensorProto::INT64 || t == onnx::TensorProto::INT32; }

/// [0, 1] as a 1-D initializer of `dataType` (integer or float); "" for
/// other types.
std::string offOn(onnx::GraphProto &graph, GraphEditor &editor, int32_t dataType) {
  std::string raw;
  auto put = [&](const void *bytes, size_t n) { raw.append(static_cast<const char *>(bytes), n); };
  switch (dataType) {
  case onnx::TensorProto::INT64: {
    int64_t v[2] = {0, 1};
    put(v, sizeof(v));
    break;
  }
  case onnx::TensorProto::INT32: {
    int32_t v[2] = {0, 1};
    put(v, sizeof(v));
    break;
  }
  case onnx::TensorProto::FLOAT: {
    float v[2] = {0.0f, 1.0f};
    put(v, sizeof(v));
    break;
  }
  case onnx::TensorProto::FLOAT16: {
    uint16_t v[2] = {0, 0x3c00};
    put(v, sizeof(v));
    break;
  }
  case onnx::TensorProto::BFLOAT16: {
    uint16_t v[2] = {0, 0x3f80};
    put(v, sizeof(v));
    break;
  }
  default:
    return "";
  }
  std::string name = editor.fresh("moe_one_hot_values");
  onnx::TensorProto *t = graph.add_initializer();
  t->set_name(name);
  t->set_data_type(dataType);
  t->add_dims(2);
  t->set_raw_data(raw);
  return name;
}

class OneHotRewriter : public GraphEditor {
public:
  using GraphEditor::GraphEditor;

  int64_t run() {
    for (const onnx::NodeProto &cast : graph.node()) {
      if (!isStandardNode(cast) || cast.op_type() != "Cast" || cast.input_size() != 1 || cast.output_size() != 1)
        continue;
      int32_t to = static_cast<int32_t>(blocks::intAttr(cast, "to", 0));
      const onnx::NodeProto *equal = producerOf(cast.input(0), "Equal");
      if (!equal || equal->input_size() != 2 || (!isIntegerType(to) && !isFloatType(to)))
        continue;
      for (int side = 0; side < 2; ++side) {
        const onnx::NodeProto *unsq = producerOf(equal->input(side), "Unsqueeze");
        const ValueFacts *ids = unsq ? factsOf(unsq->input(0)) : nullptr;
        std::optional<llvm::SmallVector<int64_t>> axes = unsq ? axesOf(*unsq) : std::nullopt;
        std::optional<llvm::SmallVector<int64_t>> range = ints(equal->input(1 - side));
        const ValueFacts *rangeFacts = factsOf(equal->input(1 - side));
        bool arange = range && !range->empty() && rangeFacts && rangeFacts->rank == 1;
        for (int64_t i = 0; arange && i < static_cast<int64_t>(range->size()); ++i)
          arange = (*range)[i] == i;
        if (!arange || !ids || !isIntegerType(ids->dataType) || ids->rank < 0 || !axes ||
            normalizedAxes(*axes, ids->rank + 1) != llvm::SmallVector<int64_t>{ids->rank})
          continue;
        std::string values = offOn(graph, *this, to);
        if (values.empty())
          break;
        if (to == onnx::TensorProto::INT64)
          made[values] = {0, 1};
        onnx::NodeProto oneHot =
            node("OneHot",
                 {unsq->input(0), constant({static_cast<int64_t>(range->size())}, "moe_one_hot_depth"), values},
                 cast.output(0), (cast.name().empty() ? cast.output(0) : cast.name()) + "/one_hot");
        setIntAttribute(oneHot, "axis", -1);
        replace(cast, {oneHot});
        break;
      }
    }
    return commit();
  }
};

} // namespace

int64_t mlir::moe::onnx_import::canonicalizeOneHots(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                                    llvm::StringMap<ValueFacts> &facts,
                                                    llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  return runRewriter<OneHotRewriter>(graph, ctx, facts, made, /*minOpset=*/11);
}
