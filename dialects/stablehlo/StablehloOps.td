//===- StablehloOps.td - the StableHLO op subset ----------------*- tablegen -*-===//
//
// Each op keeps StableHLO's pretty syntax where StableHLO has one (custom
// directives in AssemblyDirectives.cpp) and only the generic form where
// StableHLO prints generic (gather, scatter, sort, reduce_window).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_STABLEHLO_OPS_TD
#define MOE_STABLEHLO_OPS_TD

include "dialects/stablehlo/StablehloBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/IR/RegionKindInterface.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

def Stablehlo_Tensor : RankedTensorOf<[AnyType]>;

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

class Stablehlo_UnaryOp<string mnemonic, string what, list<Trait> traits = []>
    : Stablehlo_Op<mnemonic, !listconcat([Pure, SameOperandsAndResultShape], traits)> {
  let summary = what # ", elementwise";
  let description = [{
    Applies the operation to every element of `operand`; the result has the
    operand's shape (StableHLO spec, section "}] # mnemonic # [{").

    ```mlir
    %1 = stablehlo.}] # mnemonic # [{ %0 : tensor<8x4xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$operand);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = [{
    $operand attr-dict `:` custom<SameOperandsAndResultType>(type($operand), type($result))
  }];
  let hasVerifier = 1;
}

def Stablehlo_AbsOp : Stablehlo_UnaryOp<"abs", "absolute value">;
def Stablehlo_CbrtOp : Stablehlo_UnaryOp<"cbrt", "cube root">;
def Stablehlo_CeilOp : Stablehlo_UnaryOp<"ceil", "rounding up">;
def Stablehlo_CosineOp : Stablehlo_UnaryOp<"cosine", "cosine">;
def Stablehlo_ExpOp : Stablehlo_UnaryOp<"exponential", "e^x">;
def Stablehlo_Expm1Op : Stablehlo_UnaryOp<"exponential_minus_one", "e^x - 1">;
def Stablehlo_FloorOp : Stablehlo_UnaryOp<"floor", "rounding down">;
def Stablehlo_LogOp : Stablehlo_UnaryOp<"log", "natural logarithm">;
def Stablehlo_Log1pOp : Stablehlo_UnaryOp<"log_plus_one", "log(1 + x)">;
def Stablehlo_LogisticOp : Stablehlo_UnaryOp<"logistic", "the sigmoid 1 / (1 + e^-x)">;
def Stablehlo_NegOp : Stablehlo_UnaryOp<"negate", "negation">;
def Stablehlo_NotOp : Stablehlo_UnaryOp<"not", "logical (i1) or bitwise not">;
def Stablehlo_RoundNearestAfzOp : Stablehlo_UnaryOp<"round_nearest_afz", "rounding, halves away from zero">;
def Stablehlo_RoundNearestEvenOp : Stablehlo_UnaryOp<"round_nearest_even", "rounding, halves to even">;
def Stablehlo_RsqrtOp : Stablehlo_UnaryOp<"rsqrt", "1 / sqrt(x)">;
def Stablehlo_SignOp : Stablehlo_UnaryOp<"sign", "the sign (-1, 0 or 1)">;
def Stablehlo_SineOp : Stablehlo_UnaryOp<"sine", "sine">;
def Stablehlo_SqrtOp : Stablehlo_UnaryOp<"sqrt", "square root">;
def Stablehlo_TanOp : Stablehlo_UnaryOp<"tan", "tangent">;
def Stablehlo_TanhOp : Stablehlo_UnaryOp<"tanh", "hyperbolic tangent">;
def Stablehlo_ConvertOp : Stablehlo_UnaryOp<"convert", "element type conversion">;
def Stablehlo_IsFiniteOp : Stablehlo_UnaryOp<"is_finite", "whether a float is finite (i1 result)">;
def Stablehlo_PopcntOp : Stablehlo_UnaryOp<"popcnt", "the number of set bits of an integer">;
def Stablehlo_CountLeadingZerosOp : Stablehlo_UnaryOp<"count_leading_zeros", "the number of leading zero bits of an integer">;

class Stablehlo_BinaryOp<string mnemonic, string what>
    : Stablehlo_Op<mnemonic, [Pure, SameOperandsAndResultShape]> {
  let summary = what # ", elementwise";
  let description = [{
    Combines `lhs` and `rhs` element by element; both operands and the result
    have one shape (StableHLO has no implicit broadcasting:
    `broadcast_in_dim` makes shapes equal first).

    ```mlir
    %2 = stablehlo.}] # mnemonic # [{ %0, %1 : tensor<8x4xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$lhs, Stablehlo_Tensor:$rhs);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` custom<SameOperandsAndResultType>(type($lhs), type($rhs), type($result))
  }];
  let hasVerifier = 1;
}

def Stablehlo_AddOp : Stablehlo_BinaryOp<"add", "addition (or for i1)">;
def Stablehlo_AndOp : Stablehlo_BinaryOp<"and", "logical or bitwise and">;
def Stablehlo_Atan2Op : Stablehlo_BinaryOp<"atan2", "atan2(lhs, rhs)">;
def Stablehlo_DivOp : Stablehlo_BinaryOp<"divide", "division (integers round toward zero)">;
def Stablehlo_MaxOp : Stablehlo_BinaryOp<"maximum", "maximum (NaN-propagating for floats)">;
def Stablehlo_MinOp : Stablehlo_BinaryOp<"minimum", "minimum (NaN-propagating for floats)">;
def Stablehlo_MulOp : Stablehlo_BinaryOp<"multiply", "product (and for i1)">;
def Stablehlo_OrOp : Stablehlo_BinaryOp<"or", "logical or bitwise or">;
def Stablehlo_PowOp : Stablehlo_BinaryOp<"power", "lhs to the power rhs">;
def Stablehlo_RemOp : Stablehlo_BinaryOp<"remainder", "remainder with the sign of the dividend">;
def Stablehlo_SubtractOp : Stablehlo_BinaryOp<"subtract", "difference">;
def Stablehlo_XorOp : Stablehlo_BinaryOp<"xor", "logical or bitwise exclusive or">;
// Shifts by lhs's bit width or more give 0 (left, logical right) or the
// sign (arithmetic right), as the StableHLO spec says.
def Stablehlo_ShiftLeftOp : Stablehlo_BinaryOp<"shift_left", "integer shift left">;
def Stablehlo_ShiftRightArithmeticOp : Stablehlo_BinaryOp<"shift_right_arithmetic", "integer shift right, sign-filling">;
def Stablehlo_ShiftRightLogicalOp : Stablehlo_BinaryOp<"shift_right_logical", "integer shift right, zero-filling">;

def Stablehlo_ClampOp : Stablehlo_Op<"clamp", [Pure]> {
  let summary = "min(max(operand, min), max), elementwise";
  let description = [{
    `min` and `max` are scalars (0-d) or have the operand's shape.

    ```mlir
    %r = stablehlo.clamp %lo, %x, %hi : (tensor<f32>, tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$min, Stablehlo_Tensor:$operand, Stablehlo_Tensor:$max);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = [{
    $min `,` $operand `,` $max attr-dict `:`
      custom<SameOperandsAndResultType>(type($min), type($operand), type($max), type($result))
  }];
  let hasVerifier = 1;
}

def Stablehlo_CompareOp : Stablehlo_Op<"compare", [Pure, SameOperandsAndResultShape]> {
  let summary = "elementwise comparison giving i1";
  let description = [{
    Compares `lhs` with `rhs` by `comparison_direction`. `compare_type`
    (FLOAT, TOTALORDER, SIGNED, UNSIGNED) says how; when absent it follows
    the element type (floats FLOAT, signed integers SIGNED, i1 UNSIGNED).
    TOTALORDER orders -NaN < -Inf < ... < -0 < +0 < ... < +Inf < +NaN.

    ```mlir
    %m = stablehlo.compare LT, %a, %b, SIGNED : (tensor<16xi32>, tensor<16xi32>) -> tensor<16xi1>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$lhs, Stablehlo_Tensor:$rhs,
                       Stablehlo_ComparisonDirectionAttr:$comparison_direction,
                       OptionalAttr<Stablehlo_ComparisonTypeAttr>:$compare_type);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = [{
    $comparison_direction `,` $lhs `,` $rhs (`,` $compare_type^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Stablehlo_SelectOp : Stablehlo_Op<"select", [Pure]> {
  let summary = "pick on_true where pred holds, on_false elsewhere";
  let description = [{
    `pred` is i1, either 0-d (one choice for the whole tensor) or of the
    result's shape.

    ```mlir
    %r = stablehlo.select %p, %a, %b : tensor<16xi1>, tensor<16xi32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$pred, Stablehlo_Tensor:$on_true, Stablehlo_Tensor:$on_false);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = [{
    $pred `,` $on_true `,` $on_false attr-dict `:`
      custom<SelectOpType>(type($pred), type($on_true), type($on_false), type($result))
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Values and shapes
//===----------------------------------------------------------------------===//

def Stablehlo_ConstantOp : Stablehlo_Op<"constant", [Pure, ConstantLike]> {
  let summary = "a constant tensor";
  let description = [{
    ```mlir
    %cst = stablehlo.constant dense<0xFF800000> : tensor<f32>
    ```
  }];
  let arguments = (ins ElementsAttr:$value);
  let results = (outs Stablehlo_Tensor:$output);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Stablehlo_IotaOp : Stablehlo_Op<"iota", [Pure]> {
  let summary = "0, 1, 2, ... along one dimension";
  let description = [{
    `output[i_0, ..., i_n] = i_{iota_dimension}`.

    ```mlir
    %0 = stablehlo.iota dim = 1 : tensor<4x16xi32>
    ```
  }];
  let arguments = (ins I64Attr:$iota_dimension);
  let results = (outs Stablehlo_Tensor:$output);
  let assemblyFormat = "`dim` `=` $iota_dimension attr-dict `:` type($output)";
  let hasVerifier = 1;
}

def Stablehlo_GetDimensionSizeOp : Stablehlo_Op<"get_dimension_size", [Pure]> {
  let summary = "the size of one dimension of a tensor, as an i32 scalar";
  let description = [{
    What `jax.export` shape polymorphism writes to read a symbolic size. A
    static size becomes a constant; a dynamic one is refused by the lowering
    with the dynamic-shape error (only static shapes are compiled).

    ```mlir
    %0 = stablehlo.get_dimension_size %arg0, dim = 0 : (tensor<16x8xf32>) -> tensor<i32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$operand, I64Attr:$dimension);
  let results = (outs 0DTensorOf<[I32]>:$result);
  let assemblyFormat = "$operand `,` `dim` `=` $dimension attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Stablehlo_BroadcastInDimOp : Stablehlo_Op<"broadcast_in_dim", [Pure]> {
  let summary = "broadcast to a larger shape, operand dim i becoming result dim dims[i]";
  let description = [{
    Each operand dimension `i` maps to result dimension
    `broadcast_dimensions[i]` and has the same size or size 1 (repeated).

    ```mlir
    %1 = stablehlo.broadcast_in_dim %0, dims = [0] : (tensor<8xf32>) -> tensor<8x4xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$operand, DenseI64ArrayAttr:$broadcast_dimensions);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = [{
    $operand `,` `dims` `=` $broadcast_dimensions attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Stablehlo_ReshapeOp : Stablehlo_Op<"reshape", [Pure]> {
  let summary = "the same elements in row-major order, another shape";
  let description = [{
    ```mlir
    %1 = stablehlo.reshape %0 : (tensor<8x2xi32>) -> tensor<16xi32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$operand);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = "$operand attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Stablehlo_TransposeOp : Stablehlo_Op<"transpose", [Pure]> {
  let summary = "dimension permutation: result dim i is operand dim permutation[i]";
  let description = [{
    ```mlir
    %1 = stablehlo.transpose %0, dims = [1, 0] : (tensor<4x8xf32>) -> tensor<8x4xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$operand, DenseI64ArrayAttr:$permutation);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = [{
    $operand `,` `dims` `=` $permutation attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Stablehlo_SliceOp : Stablehlo_Op<"slice", [Pure]> {
  let summary = "a static strided slice";
  let description = [{
    Dimension `d` keeps `start_indices[d] + j * strides[d]` below
    `limit_indices[d]`. The pretty form writes `[start:limit(:stride)]` per
    dimension.

    ```mlir
    %1 = stablehlo.slice %0 [0:4, 0:2] : (tensor<4x8xf32>) -> tensor<4x2xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$operand, DenseI64ArrayAttr:$start_indices,
                       DenseI64ArrayAttr:$limit_indices, DenseI64ArrayAttr:$strides);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = [{
    $operand custom<SliceRanges>($start_indices, $limit_indices, $strides) attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Stablehlo_DynamicSliceOp : Stablehlo_Op<"dynamic_slice", [Pure]> {
  let summary = "a slice of static sizes at run-time start indices (clamped into range)";
  let description = [{
    Each start index is a 0-d integer tensor, clamped to
    `[0, dim - slice_size]` as StableHLO specifies.

    ```mlir
    %1 = stablehlo.dynamic_slice %0, %i, %j, sizes = [1, 8] : (tensor<4x8xf32>, tensor<i32>, tensor<i32>) -> tensor<1x8xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$operand, Variadic<Stablehlo_Tensor>:$start_indices,
                       DenseI64ArrayAttr:$slice_sizes);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = [{
    $operand `,` custom<VariadicOperandWithAttribute>($start_indices) `sizes` `=` $slice_sizes attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Stablehlo_DynamicUpdateSliceOp : Stablehlo_Op<"dynamic_update_slice", [Pure]> {
  let summary = "operand with update written at run-time start indices (clamped into range)";
  let description = [{
    ```mlir
    %1 = stablehlo.dynamic_update_slice %0, %u, %i, %j : (tensor<4x8xf32>, tensor<1x8xf32>, tensor<i32>, tensor<i32>) -> tensor<4x8xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$operand, Stablehlo_Tensor:$update,
                       Variadic<Stablehlo_Tensor>:$start_indices);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Stablehlo_ConcatenateOp : Stablehlo_Op<"concatenate", [Pure]> {
  let summary = "tensors joined along one dimension";
  let description = [{
    ```mlir
    %2 = stablehlo.concatenate %0, %1, dim = 0 : (tensor<1xi32>, tensor<3xi32>) -> tensor<4xi32>
    ```
  }];
  let arguments = (ins Variadic<Stablehlo_Tensor>:$inputs, I64Attr:$dimension);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = [{
    custom<VariadicOperandWithAttribute>($inputs) `dim` `=` $dimension attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Stablehlo_PadOp : Stablehlo_Op<"pad", [Pure]> {
  let summary = "edge (and interior) padding with a scalar value";
  let description = [{
    Negative edge padding removes elements. Interior padding inserts
    `interior[d]` values between neighbouring elements.

    ```mlir
    %1 = stablehlo.pad %0, %zero, low = [0, 1], high = [2, 0], interior = [0, 0] : (tensor<4x8xf32>, tensor<f32>) -> tensor<6x9xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$operand, Stablehlo_Tensor:$padding_value,
                       DenseI64ArrayAttr:$edge_padding_low, DenseI64ArrayAttr:$edge_padding_high,
                       DenseI64ArrayAttr:$interior_padding);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = [{
    $operand `,` $padding_value `,` `low` `=` $edge_padding_low `,` `high` `=` $edge_padding_high `,`
      `interior` `=` $interior_padding attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Stablehlo_ReverseOp : Stablehlo_Op<"reverse", [Pure, SameOperandsAndResultType]> {
  let summary = "the operand with the listed dimensions reversed";
  let description = [{
    ```mlir
    %1 = stablehlo.reverse %0, dims = [1] : tensor<4x8xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$operand, DenseI64ArrayAttr:$dimensions);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = "$operand `,` `dims` `=` $dimensions attr-dict `:` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Contractions and reductions
//===----------------------------------------------------------------------===//

def Stablehlo_DotGeneralOp : Stablehlo_Op<"dot_general", [Pure]> {
  let summary = "a general tensor contraction (batched matmul, einsum)";
  let description = [{
    Result dimensions are the batch dimensions (in `lhs_batching_dimensions`
    order), then lhs's free dimensions, then rhs's, in order. Contracting
    dimensions pair up `lhs_contracting_dimensions[i]` with
    `rhs_contracting_dimensions[i]`. `precision_config` is accepted and not
    used: products accumulate in f32 for floats of 32 bits or fewer.

    ```mlir
    %0 = stablehlo.dot_general %x, %w, batching_dims = [0] x [0], contracting_dims = [2] x [1],
        precision = [DEFAULT, DEFAULT] : (tensor<4x8x16xf32>, tensor<4x16x32xf32>) -> tensor<4x8x32xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$lhs, Stablehlo_Tensor:$rhs,
                       Stablehlo_DotDimensionNumbers:$dot_dimension_numbers,
                       OptionalAttr<Stablehlo_PrecisionConfigAttr>:$precision_config);
  let results = (outs Stablehlo_Tensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs `,` custom<DotDimensionNumbers>($dot_dimension_numbers) ``
      custom<PrecisionConfig>($precision_config) attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Stablehlo_ReduceOp : Stablehlo_Op<"reduce", [Pure, SameVariadicOperandSize]> {
  let summary = "reduction of N tensors over some dimensions with a reducer body";
  let description = [{
    The body takes `2N` 0-d tensors (N accumulators, then N elements) and
    returns N. The compact form names a single binary op; the long form
    lists the body's arguments in pairs after `reducer`.

    ```mlir
    %1 = stablehlo.reduce(%0 init: %cst) applies stablehlo.add across dimensions = [1]
        : (tensor<8x4xf32>, tensor<f32>) -> tensor<8xf32>
    ```
  }];
  let arguments = (ins Variadic<Stablehlo_Tensor>:$inputs, Variadic<Stablehlo_Tensor>:$init_values,
                       DenseI64ArrayAttr:$dimensions);
  let results = (outs Variadic<Stablehlo_Tensor>);
  let regions = (region SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
}

def Stablehlo_ReduceWindowOp : Stablehlo_Op<"reduce_window", [Pure, SameVariadicOperandSize]> {
  let summary = "reduction over sliding windows (cumulative sums, pooling)";
  let description = [{
    Result element `i` reduces the operand over the window starting at
    `i * window_strides - padding_low` (padded positions hold the init
    value). Generic form only, as StableHLO prints it.

    ```mlir
    %1 = "stablehlo.reduce_window"(%x, %zero) <{padding = dense<[[3, 0]]> : tensor<1x2xi64>,
        window_dimensions = array<i64: 4>}> ({
    ^bb0(%a: tensor<i32>, %b: tensor<i32>):
      %s = stablehlo.add %a, %b : tensor<i32>
      stablehlo.return %s : tensor<i32>
    }) : (tensor<4xi32>, tensor<i32>) -> tensor<4xi32>
    ```
  }];
  let arguments = (ins Variadic<Stablehlo_Tensor>:$inputs, Variadic<Stablehlo_Tensor>:$init_values,
                       DenseI64ArrayAttr:$window_dimensions,
                       OptionalAttr<DenseI64ArrayAttr>:$window_strides,
                       OptionalAttr<DenseI64ArrayAttr>:$base_dilations,
                       OptionalAttr<DenseI64ArrayAttr>:$window_dilations,
                       OptionalAttr<I64ElementsAttr>:$padding);
  let results = (outs Variadic<Stablehlo_Tensor>);
  let regions = (region SizedRegion<1>:$body);
  let hasVerifier = 1;
}

def Stablehlo_GatherOp : Stablehlo_Op<"gather", [Pure]> {
  let summary = "slices of the operand at run-time start indices (XLA gather)";
  let description = [{
    Generic form only, as StableHLO prints it. Start indices are clamped
    into range as the spec says.

    ```mlir
    %r = "stablehlo.gather"(%x, %idx) <{dimension_numbers = #stablehlo.gather<offset_dims = [1],
        collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>,
        indices_are_sorted = false, slice_sizes = array<i64: 1, 16>}>
      : (tensor<8x16xf32>, tensor<16x1xi32>) -> tensor<16x16xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$operand, Stablehlo_Tensor:$start_indices,
                       Stablehlo_GatherDimensionNumbers:$dimension_numbers,
                       DenseI64ArrayAttr:$slice_sizes,
                       DefaultValuedOptionalAttr<BoolAttr, "false">:$indices_are_sorted);
  let results = (outs Stablehlo_Tensor:$result);
  let hasVerifier = 1;
}

def Stablehlo_ScatterOp : Stablehlo_Op<"scatter", [Pure, SameVariadicOperandSize]> {
  let summary = "update windows combined into the operand at run-time indices (XLA scatter)";
  let description = [{
    The body combines the current value with the update (`add` for
    `.at[].add`, returning the update for `.at[].set`). Indices out of
    range skip their update, as the spec says. Updates are applied in
    index order, so the result is deterministic. Generic form only.

    ```mlir
    %r = "stablehlo.scatter"(%zeros, %idx, %upd) <{scatter_dimension_numbers =
        #stablehlo.scatter<update_window_dims = [1], inserted_window_dims = [0],
        scatter_dims_to_operand_dims = [0], index_vector_dim = 1>}> ({
    ^bb0(%a: tensor<f32>, %b: tensor<f32>):
      %s = stablehlo.add %a, %b : tensor<f32>
      stablehlo.return %s : tensor<f32>
    }) : (tensor<8x16xf32>, tensor<16x1xi32>, tensor<16x16xf32>) -> tensor<8x16xf32>
    ```
  }];
  let arguments = (ins Variadic<Stablehlo_Tensor>:$inputs, Stablehlo_Tensor:$scatter_indices,
                       Variadic<Stablehlo_Tensor>:$updates,
                       Stablehlo_ScatterDimensionNumbers:$scatter_dimension_numbers,
                       DefaultValuedOptionalAttr<BoolAttr, "false">:$indices_are_sorted,
                       DefaultValuedOptionalAttr<BoolAttr, "false">:$unique_indices);
  let results = (outs Variadic<Stablehlo_Tensor>);
  let regions = (region SizedRegion<1>:$update_computation);
  let hasVerifier = 1;
}

def Stablehlo_SortOp : Stablehlo_Op<"sort", [Pure]> {
  let summary = "sort of N tensors along one dimension by a comparator";
  let description = [{
    The comparator takes `2N` 0-d tensors (element i of each input, then
    element j) and returns whether i goes before j. `is_stable` keeps equal
    elements in order; the lowering is always stable. Generic form only.

    ```mlir
    %s:2 = "stablehlo.sort"(%keys, %iota) <{dimension = 0 : i64, is_stable = true}> ({
    ^bb0(%a: tensor<i32>, %b: tensor<i32>, %c: tensor<i32>, %d: tensor<i32>):
      %lt = stablehlo.compare LT, %a, %b, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
      stablehlo.return %lt : tensor<i1>
    }) : (tensor<16xi32>, tensor<16xi32>) -> (tensor<16xi32>, tensor<16xi32>)
    ```
  }];
  let arguments = (ins Variadic<Stablehlo_Tensor>:$inputs,
                       DefaultValuedAttr<I64Attr, "-1">:$dimension,
                       DefaultValuedAttr<BoolAttr, "false">:$is_stable);
  let results = (outs Variadic<Stablehlo_Tensor>);
  let regions = (region SizedRegion<1>:$comparator);
  let hasVerifier = 1;
}

def Stablehlo_WhileOp : Stablehlo_Op<"while", [RecursiveMemoryEffects]> {
  let summary = "a loop over values: cond decides, do computes the next values";
  let description = [{
    `jax.lax.scan` and `fori_loop` (a Flax `nn.scan` or MaxText
    `scan_layers` stack of layers) lower to it. Both regions take the loop
    values; `cond` returns a `tensor<i1>`, `do` returns the next values
    (their types are the operands'); the results are the values when `cond`
    is false. The lowering is an `scf.while`.

    ```mlir
    %r:2 = stablehlo.while(%i = %c0, %h = %x) : tensor<i32>, tensor<16x32xf32>
    cond {
      %lt = stablehlo.compare LT, %i, %c3, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
      stablehlo.return %lt : tensor<i1>
    } do {
      %next = stablehlo.add %i, %c1 : tensor<i32>
      stablehlo.return %next, %h : tensor<i32>, tensor<16x32xf32>
    }
    ```
  }];
  let arguments = (ins Variadic<Stablehlo_Tensor>:$operand);
  let results = (outs Variadic<Stablehlo_Tensor>);
  let regions = (region SizedRegion<1>:$cond, SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
}

def Stablehlo_CaseOp : Stablehlo_Op<"case", [RecursiveMemoryEffects]> {
  let summary = "runs one of its branches, chosen by an index";
  let description = [{
    `jax.lax.cond` and `jax.lax.switch` lower to it. `index` is a
    `tensor<i32>`; branch `index` runs, and an index outside
    `[0, branches)` runs the last branch (StableHLO spec). Every branch takes
    no arguments (it reads values from above) and returns the results with
    `stablehlo.return`. JAX prints it in the generic form. The lowering is
    an `scf.index_switch`.

    ```mlir
    %r = "stablehlo.case"(%i) ({
      stablehlo.return %a : tensor<8xf32>
    }, {
      stablehlo.return %b : tensor<8xf32>
    }) : (tensor<i32>) -> tensor<8xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$index);
  let results = (outs Variadic<Stablehlo_Tensor>);
  let regions = (region VariadicRegion<SizedRegion<1>>:$branches);
  let hasVerifier = 1;
}

def Stablehlo_IfOp : Stablehlo_Op<"if", [RecursiveMemoryEffects]> {
  let summary = "runs one of two branches, chosen by a predicate";
  let description = [{
    The two-way form of `stablehlo.case`: `pred` is a `tensor<i1>`; the true
    branch runs when it is set. Lowered to `scf.if`.

    ```mlir
    %r = "stablehlo.if"(%p) ({
      stablehlo.return %a : tensor<8xf32>
    }, {
      stablehlo.return %b : tensor<8xf32>
    }) : (tensor<i1>) -> tensor<8xf32>
    ```
  }];
  let arguments = (ins Stablehlo_Tensor:$pred);
  let results = (outs Variadic<Stablehlo_Tensor>);
  let regions = (region SizedRegion<1>:$true_branch, SizedRegion<1>:$false_branch);
  let hasVerifier = 1;
}

def Stablehlo_OptimizationBarrierOp : Stablehlo_Op<"optimization_barrier", [Pure]> {
  let summary = "its operands, unchanged (a scheduling hint for XLA)";
  let description = [{
    `jax.checkpoint` (rematerialisation, as MaxText's scanned layers use it)
    emits it around values XLA must not reorder across. It computes nothing:
    moe-normalize-stablehlo replaces its results by its operands.

    ```mlir
    %r:2 = stablehlo.optimization_barrier %a, %b : tensor<8xf32>, tensor<i32>
    ```
  }];
  let arguments = (ins Variadic<Stablehlo_Tensor>:$operand);
  let results = (outs Variadic<Stablehlo_Tensor>:$result);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
}

def Stablehlo_ReturnOp : Stablehlo_Op<"return", [Pure, Terminator, ReturnLike]> {
  let summary = "the results of a reducer, comparator or scatter body";
  let description = [{
    ```mlir
    stablehlo.return %s : tensor<f32>
    ```
  }];
  let arguments = (ins Variadic<AnyType>:$results);
  let assemblyFormat = "$results attr-dict (`:` type($results)^)?";
  let builders = [OpBuilder<(ins), [{ build($_builder, $_state, ::mlir::ValueRange()); }]>];
}

//===----------------------------------------------------------------------===//
// Calls into named computations
//===----------------------------------------------------------------------===//

def Stablehlo_CompositeOp : Stablehlo_Op<"composite"> {
  let summary = "a named high-level op with its decomposition function";
  let description = [{
    Means `func.call @decomposition(inputs)`; the name and
    `composite_attributes` say what it computes (`chlo.top_k` with `k`,
    `chlo.ragged_dot`), which lets `moe-raise-stablehlo` recognise it.

    ```mlir
    %0:2 = stablehlo.composite "chlo.top_k" %x {composite_attributes = {k = 2 : i64},
        decomposition = @chlo.top_k.impl, version = 1 : i32}
      : (tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
    ```
  }];
  let arguments = (ins Variadic<AnyType>:$inputs, StrAttr:$name,
                       DefaultValuedOptionalAttr<DictionaryAttr, "{}">:$composite_attributes,
                       FlatSymbolRefAttr:$decomposition,
                       DefaultValuedOptionalAttr<I32Attr, "0">:$version);
  let results = (outs Variadic<AnyType>);
  let assemblyFormat = "$name $inputs attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Stablehlo_CustomCallOp : Stablehlo_Op<"custom_call"> {
  let summary = "a call to a named external computation";
  let description = [{
    Only calls with a known meaning compile: `mhlo.topk` (with
    `mhlo.attributes = {k, largest}`), which `moe-raise-stablehlo` turns
    into a top-k. Any other target is reported by name.

    ```mlir
    %v, %i = stablehlo.custom_call @mhlo.topk(%x) {mhlo.attributes = {k = 2 : i64, largest = true},
        mhlo.version = 1 : i64} : (tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
    ```
  }];
  let arguments = (ins Variadic<AnyType>:$inputs, StrAttr:$call_target_name);
  let results = (outs Variadic<AnyType>);
  let assemblyFormat = [{
    custom<CustomCallTarget>($call_target_name) `(` $inputs `)` attr-dict `:` functional-type(operands, results)
  }];
}

#endif // MOE_STABLEHLO_OPS_TD
