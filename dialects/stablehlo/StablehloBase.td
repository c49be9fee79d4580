//===- StablehloBase.td - the StableHLO subset: dialect, enums, attributes -*- tablegen -*-===//
//
// No StableHLO library is packaged for this project's machines, so the
// project defines the part of StableHLO that JAX transformer and MoE
// programs use, with the real textual syntax (pretty and generic) so that
// `jax.jit(f).lower(...).as_text()` parses as is. Semantics follow the
// StableHLO specification; docs/stablehlo.md lists the subset.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_STABLEHLO_BASE_TD
#define MOE_STABLEHLO_BASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "dialects/stablehlo/DimList.td"

def Stablehlo_Dialect : Dialect {
  let name = "stablehlo";
  let cppNamespace = "::mlir::moe::stablehlo";
  let summary = "the StableHLO ops that JAX transformer and MoE programs use";
  let description = [{
    A subset of [StableHLO](https://openxla.org/stablehlo/spec) defined by
    this project so that JAX's StableHLO text can be read without the
    StableHLO library. Ops, attributes and their pretty and generic syntax
    are StableHLO's; `moe-lower-stablehlo` lowers them to linalg, tensor,
    arith and math, and `moe-raise-stablehlo` recognises MoE layers in them.
  }];
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
  }];
}

class Stablehlo_Op<string mnemonic, list<Trait> traits = []>
    : Op<Stablehlo_Dialect, mnemonic, traits>;

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Stablehlo_ComparisonDirection : I32EnumAttr<"ComparisonDirection", "comparison direction", [
    I32EnumAttrCase<"EQ", 0>, I32EnumAttrCase<"NE", 1>, I32EnumAttrCase<"GE", 2>,
    I32EnumAttrCase<"GT", 3>, I32EnumAttrCase<"LE", 4>, I32EnumAttrCase<"LT", 5>]> {
  let cppNamespace = "::mlir::moe::stablehlo";
  let genSpecializedAttr = 0;
}
def Stablehlo_ComparisonDirectionAttr
    : EnumAttr<Stablehlo_Dialect, Stablehlo_ComparisonDirection, "comparison_direction">;

def Stablehlo_ComparisonType : I32EnumAttr<"ComparisonType", "comparison type", [
    I32EnumAttrCase<"NOTYPE", 0>, I32EnumAttrCase<"FLOAT", 1>, I32EnumAttrCase<"TOTALORDER", 2>,
    I32EnumAttrCase<"SIGNED", 3>, I32EnumAttrCase<"UNSIGNED", 4>]> {
  let cppNamespace = "::mlir::moe::stablehlo";
  let genSpecializedAttr = 0;
}
def Stablehlo_ComparisonTypeAttr
    : EnumAttr<Stablehlo_Dialect, Stablehlo_ComparisonType, "comparison_type">;

def Stablehlo_Precision : I32EnumAttr<"Precision", "dot precision", [
    I32EnumAttrCase<"DEFAULT", 0>, I32EnumAttrCase<"HIGH", 1>, I32EnumAttrCase<"HIGHEST", 2>]> {
  let cppNamespace = "::mlir::moe::stablehlo";
  let genSpecializedAttr = 0;
}
def Stablehlo_PrecisionAttr : EnumAttr<Stablehlo_Dialect, Stablehlo_Precision, "precision">;
def Stablehlo_PrecisionConfigAttr : TypedArrayAttrBase<Stablehlo_PrecisionAttr, "precision config">;

//===----------------------------------------------------------------------===//
// Dimension-number attributes
//===----------------------------------------------------------------------===//

class Stablehlo_Attr<string name, string attrMnemonic> : AttrDef<Stablehlo_Dialect, name> {
  let mnemonic = attrMnemonic;
  let assemblyFormat = "`<` struct(params) `>`";
}

def Stablehlo_DotDimensionNumbers : Stablehlo_Attr<"DotDimensionNumbers", "dot"> {
  let summary = "which dimensions of a dot_general are batch and contracting dimensions";
  let parameters = (ins
    Moe_DimListParameter:$lhs_batching_dimensions,
    Moe_DimListParameter:$rhs_batching_dimensions,
    Moe_DimListParameter:$lhs_contracting_dimensions,
    Moe_DimListParameter:$rhs_contracting_dimensions);
}

def Stablehlo_GatherDimensionNumbers : Stablehlo_Attr<"GatherDimensionNumbers", "gather"> {
  let summary = "how a gather maps start indices and slices onto its operand and result";
  let parameters = (ins
    Moe_DimListParameter:$offset_dims,
    Moe_DimListParameter:$collapsed_slice_dims,
    Moe_DimListParameter:$operand_batching_dims,
    Moe_DimListParameter:$start_indices_batching_dims,
    Moe_DimListParameter:$start_index_map,
    DefaultValuedParameter<"int64_t", "0">:$index_vector_dim);
}

def Stablehlo_ScatterDimensionNumbers : Stablehlo_Attr<"ScatterDimensionNumbers", "scatter"> {
  let summary = "how a scatter maps indices and update windows onto its operand";
  let parameters = (ins
    Moe_DimListParameter:$update_window_dims,
    Moe_DimListParameter:$inserted_window_dims,
    Moe_DimListParameter:$input_batching_dims,
    Moe_DimListParameter:$scatter_indices_batching_dims,
    Moe_DimListParameter:$scatter_dims_to_operand_dims,
    DefaultValuedParameter<"int64_t", "0">:$index_vector_dim);
}

#endif // MOE_STABLEHLO_BASE_TD
