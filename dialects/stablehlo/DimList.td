//===- DimList.td - dimension-list attribute parameters ---------*- tablegen -*-===//

#ifndef MOE_STABLEHLO_DIMLIST_TD
#define MOE_STABLEHLO_DIMLIST_TD

include "mlir/IR/AttrTypeBase.td"

// A dimension list written `[0, 1]` (StableHLO's syntax), omitted when empty.
def Moe_DimListParameter : OptionalArrayRefParameter<"int64_t"> {
  let parser = "::mlir::moe::stablehlo::parseDimList($_parser)";
  let printer = "::mlir::moe::stablehlo::printDimList($_printer, $_self)";
}

#endif // MOE_STABLEHLO_DIMLIST_TD
