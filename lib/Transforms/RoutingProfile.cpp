//===- RoutingProfile.cpp - the experts each layer's tokens pick ----------===//

#include "moe/Transforms/RoutingProfile.h"
#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/LayerRouting.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mlir::moe;

FailureOr<SmallVector<int64_t>> mlir::moe::appendRoutingResults(func::FuncOp function) {
  if (!function.getBody().hasOneBlock()) {
    function.emitError("--routing-profile: @") << function.getName() << " has more than one block";
    return failure();
  }
  SmallVector<LayerOp> layers;
  function.walk([&](LayerOp layer) { layers.push_back(layer); });
  for (LayerOp layer : layers)
    if (layer->getParentOp() != function.getOperation()) {
      layer.emitError("--routing-profile: this layer is inside a region (a loop body); its routing cannot be "
                      "returned from @")
          << function.getName();
      return failure();
    }
  SmallVector<int64_t> experts;
  SmallVector<Value> ids;
  for (LayerOp layer : layers) {
    OpBuilder b(layer);
    // The routing again, beside the layer's own: CSE merges the two.
    ids.push_back(buildLayerRouting(b, layer).indices);
    experts.push_back(layer.getNumFfnExperts());
  }
  auto ret = cast<func::ReturnOp>(function.getBody().back().getTerminator());
  SmallVector<Value> results(ret.getOperands());
  results.append(ids.begin(), ids.end());
  ret->setOperands(results);
  for (Value v : ids)
    if (failed(function.insertResult(function.getNumResults(), v.getType(), DictionaryAttr())))
      return failure();
  return experts;
}
