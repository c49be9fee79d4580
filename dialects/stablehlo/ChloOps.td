//===- ChloOps.td - the CHLO ops JAX emits for MoE programs -----*- tablegen -*-===//
//
// CHLO ("client HLO") holds the higher-level ops JAX lowers to before XLA
// expands them: top_k, ragged_dot (the grouped GEMM of dropless MoE) and
// a few special functions.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_CHLO_OPS_TD
#define MOE_CHLO_OPS_TD

include "mlir/IR/OpBase.td"
include "dialects/stablehlo/DimList.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

def Chlo_Dialect : Dialect {
  let name = "chlo";
  let cppNamespace = "::mlir::moe::chlo";
  let summary = "the CHLO ops JAX emits for MoE programs (top_k, ragged_dot, erf)";
  let description = [{
    A subset of StableHLO's client-HLO dialect, defined by this project with
    CHLO's textual syntax (see the `stablehlo` dialect).
  }];
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
  }];
}

class Chlo_Op<string mnemonic, list<Trait> traits = []> : Op<Chlo_Dialect, mnemonic, traits>;

def Chlo_Precision : I32EnumAttr<"Precision", "dot precision", [
    I32EnumAttrCase<"DEFAULT", 0>, I32EnumAttrCase<"HIGH", 1>, I32EnumAttrCase<"HIGHEST", 2>]> {
  let cppNamespace = "::mlir::moe::chlo";
  let genSpecializedAttr = 0;
}
def Chlo_PrecisionAttr : EnumAttr<Chlo_Dialect, Chlo_Precision, "precision">;

def Chlo_RaggedDotDimensionNumbers : AttrDef<Chlo_Dialect, "RaggedDotDimensionNumbers"> {
  let mnemonic = "ragged_dot";
  let summary = "batch, contracting, ragged and group dimensions of a ragged_dot";
  let parameters = (ins
    Moe_DimListParameter:$lhs_batching_dimensions,
    Moe_DimListParameter:$rhs_batching_dimensions,
    Moe_DimListParameter:$lhs_contracting_dimensions,
    Moe_DimListParameter:$rhs_contracting_dimensions,
    Moe_DimListParameter:$lhs_ragged_dimensions,
    Moe_DimListParameter:$rhs_group_dimensions);
  let assemblyFormat = "`<` struct(params) `>`";
}

class Chlo_UnaryOp<string mnemonic, string what>
    : Chlo_Op<mnemonic, [Pure, SameOperandsAndResultType]> {
  let summary = what # ", elementwise";
  let description = [{
    ```mlir
    %1 = chlo.}] # mnemonic # [{ %0 : tensor<4x8xf32> -> tensor<4x8xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$operand);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$operand attr-dict `:` type($operand) `->` type($result)";
  let hasVerifier = 1;
}

def Chlo_ErfOp : Chlo_UnaryOp<"erf", "the error function">;
def Chlo_ErfcOp : Chlo_UnaryOp<"erfc", "the complementary error function 1 - erf(x)">;
def Chlo_ErfInvOp : Chlo_UnaryOp<"erf_inv", "the inverse error function">;
// JAX's lax.square (RMSNorm, router z-loss); moe-normalize-stablehlo makes
// it a stablehlo.multiply so the matchers see one spelling.
def Chlo_SquareOp : Chlo_UnaryOp<"square", "the square x * x">;

def Chlo_TopKOp : Chlo_Op<"top_k", [Pure]> {
  let summary = "the k largest values of the last dimension and their indices";
  let description = [{
    Values in descending order; equal values keep the lower index first
    (a stable sort), indices are i32.

    ```mlir
    %values, %indices = chlo.top_k(%p, k = 2) : tensor<8x4xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$operand, I64Attr:$k);
  let results = (outs AnyRankedTensor:$values, AnyRankedTensor:$indices);
  let assemblyFormat = [{
    `(` $operand `,` `k` `=` $k `)` attr-dict `:` type($operand) `->` `(` type($values) `,` type($indices) `)`
  }];
  let hasVerifier = 1;
}

def Chlo_RaggedDotOp : Chlo_Op<"ragged_dot", [Pure]> {
  let summary = "a grouped matmul over row groups of given sizes (the MoE grouped GEMM)";
  let description = [{
    The supported mode is StableHLO's first (ragged non-contracting
    dimension): `lhs [m, k]`, `rhs [g, k, n]`, `group_sizes [g]`; rows
    `[sum(group_sizes[:i]), sum(group_sizes[:i+1]))` use `rhs[i]`, rows past
    the last group are 0. Generic form only, as CHLO prints it.

    ```mlir
    %r = "chlo.ragged_dot"(%x, %w, %sizes) {ragged_dot_dimension_numbers = #chlo.ragged_dot<
        lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [1],
        lhs_ragged_dimensions = [0], rhs_group_dimensions = [0]>}
      : (tensor<16x16xf32>, tensor<4x16x32xf32>, tensor<4xi32>) -> tensor<16x32xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$lhs, AnyRankedTensor:$rhs, AnyRankedTensor:$group_sizes,
                       Chlo_RaggedDotDimensionNumbers:$ragged_dot_dimension_numbers,
                       OptionalAttr<TypedArrayAttrBase<Chlo_PrecisionAttr, "precision config">>:$precision_config);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
}

#endif // MOE_CHLO_OPS_TD
