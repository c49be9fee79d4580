// moe-raise-stablehlo rewrites gathers of whole slices into the form plain
// indexing gives (w[ids]): index components of dims the gather takes whole
// are dropped (gather clamps them to 0), and a reshape dropping the unit
// dims of indexed, unit-size slice dims becomes a gather collapsing them.
// Gathers that index a dim partly keep their indices.
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo | FileCheck %s

// jax.vmap's w[e] over [T, k] ids: every dim indexed, zeros for the dims
// taken whole, a unit expert dim reshaped away.
// CHECK-LABEL: func @vmapped_stack_rows
// CHECK: %[[G:.*]] = "stablehlo.gather"(%arg0, %arg1) <{dimension_numbers = #stablehlo.gather<offset_dims = [2, 3], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 2>, indices_are_sorted = false, slice_sizes = array<i64: 1, 32, 40>}> : (tensor<4x32x40xf32>, tensor<12x2x1xi32>) -> tensor<12x2x32x40xf32>
// CHECK-NEXT: return %[[G]]
func.func @vmapped_stack_rows(%w: tensor<4x32x40xf32>, %ids: tensor<12x2x1xi32>) -> tensor<12x2x32x40xf32> {
  %zero = stablehlo.constant dense<0> : tensor<12x2x1xi32>
  %start = stablehlo.concatenate %ids, %zero, %zero, dim = 2 : (tensor<12x2x1xi32>, tensor<12x2x1xi32>, tensor<12x2x1xi32>) -> tensor<12x2x3xi32>
  %g = "stablehlo.gather"(%w, %start) <{dimension_numbers = #stablehlo.gather<offset_dims = [2, 3, 4], start_index_map = [0, 1, 2], index_vector_dim = 2>, indices_are_sorted = false, slice_sizes = array<i64: 1, 32, 40>}> : (tensor<4x32x40xf32>, tensor<12x2x3xi32>) -> tensor<12x2x1x32x40xf32>
  %r = stablehlo.reshape %g : (tensor<12x2x1x32x40xf32>) -> tensor<12x2x32x40xf32>
  return %r : tensor<12x2x32x40xf32>
}

// -----

// Start indices not built piece by piece: the kept component is sliced out.
// Any start of a whole dim selects the same slice.
// CHECK-LABEL: func @whole_dim_component_sliced
// CHECK: %[[S:.*]] = stablehlo.slice %arg1 [0:6, 1:2] : (tensor<6x2xi32>) -> tensor<6x1xi32>
// CHECK: "stablehlo.gather"(%arg0, %[[S]]) <{dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, 16>}> : (tensor<8x16xf32>, tensor<6x1xi32>) -> tensor<6x16xf32>
func.func @whole_dim_component_sliced(%w: tensor<8x16xf32>, %start: tensor<6x2xi32>) -> tensor<6x16xf32> {
  %g = "stablehlo.gather"(%w, %start) <{dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [1, 0], index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, 16>}> : (tensor<8x16xf32>, tensor<6x2xi32>) -> tensor<6x16xf32>
  return %g : tensor<6x16xf32>
}

// -----

// A window of 4 of 16 columns is indexed for real: the gather stays, and the
// reshape of a unit batch dim (not an indexed slice dim) stays too.
// CHECK-LABEL: func @partial_window_stays
// CHECK: "stablehlo.gather"(%arg0, %arg1) <{dimension_numbers = #stablehlo.gather<offset_dims = [2, 3], start_index_map = [0, 1], index_vector_dim = 2>, indices_are_sorted = false, slice_sizes = array<i64: 2, 4>}> : (tensor<8x16xf32>, tensor<1x6x2xi32>) -> tensor<1x6x2x4xf32>
// CHECK: stablehlo.reshape
func.func @partial_window_stays(%w: tensor<8x16xf32>, %start: tensor<1x6x2xi32>) -> tensor<6x2x4xf32> {
  %g = "stablehlo.gather"(%w, %start) <{dimension_numbers = #stablehlo.gather<offset_dims = [2, 3], start_index_map = [0, 1], index_vector_dim = 2>, indices_are_sorted = false, slice_sizes = array<i64: 2, 4>}> : (tensor<8x16xf32>, tensor<1x6x2xi32>) -> tensor<1x6x2x4xf32>
  %r = stablehlo.reshape %g : (tensor<1x6x2x4xf32>) -> tensor<6x2x4xf32>
  return %r : tensor<6x2x4xf32>
}
