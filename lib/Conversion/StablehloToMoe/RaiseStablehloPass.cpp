//===- RaiseStablehloPass.cpp - the moe-raise-stablehlo pass --------------===//

#include "Raising.h"
#include "dialects/moe/MoeDialect.h"
#include "dialects/stablehlo/StablehloDialect.h"
#include "moe/Conversion/Passes.h"

#include "mlir/IR/Diagnostics.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOERAISESTABLEHLO
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {
struct MoeRaiseStablehloPass : public mlir::moe::impl::MoeRaiseStablehloBase<MoeRaiseStablehloPass> {
  using MoeRaiseStablehloBase::MoeRaiseStablehloBase;
  void runOnOperation() override {
    // Layers are matched on ragged_dots, so the expansions go first.
    moe::stablehlo_raise::RaiseOptions options{keepOriginals, wrongForTesting};
    DenseSet<Location> remarked; // near misses explained by the matchers
    ScopedDiagnosticHandler handler(&getContext(), [&](Diagnostic &d) {
      if (d.getSeverity() == DiagnosticSeverity::Remark)
        remarked.insert(d.getLocation());
      return failure(); // still reported
    });
    moe::stablehlo_raise::unrollExpertLoops(getOperation());
    moe::stablehlo_raise::canonicalizeGathers(getOperation());
    moe::stablehlo_raise::unflattenSlotPairs(getOperation());
    moe::stablehlo_raise::canonicalizeContractions(getOperation());
    moe::stablehlo_raise::unstackSums(getOperation());
    moe::stablehlo_raise::canonicalizeSelections(getOperation());
    moe::stablehlo_raise::dropAbsOfNonNegative(getOperation());
    moe::stablehlo_raise::canonicalizeRepeatedArgmax(getOperation());
    moe::stablehlo_raise::rewriteSlotCellSelects(getOperation());
    moe::stablehlo_raise::liftSlotSums(getOperation());
    moe::stablehlo_raise::hoistGatesFromDownProjections(getOperation());
    moe::stablehlo_raise::raiseRaggedDots(getOperation());
    moe::stablehlo_raise::raiseDroplessLayers(getOperation(), options);
    moe::stablehlo_raise::raiseDenseMixtures(getOperation(), options);
    moe::stablehlo_raise::raiseGShardLayers(getOperation(), options);
    moe::stablehlo_raise::raiseExpertChoiceLayers(getOperation(), options);
    moe::stablehlo_raise::raiseMoeppLayers(getOperation(), options);
    // Last: the general form, after the specific ones took their layers.
    moe::stablehlo_raise::raiseExpertMixtures(getOperation(), options);
    moe::stablehlo_raise::remarkUnraisedRouting(getOperation(), remarked);
  }
};
} // namespace
