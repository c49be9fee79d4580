// moe-raise-stablehlo reads decode-style dispatch over flat (token, slot)
// rows on [T, k, ...]: x[tok] with tok = repeat(arange(T), k) is x
// broadcast over the slots, w[idx.reshape(-1)] the gather at idx, the
// batched dot over the rows one over (T, k), and segment_sum back to the
// tokens (or a reshape to [T, k, H]) a sum over the slots. Flat rows paired
// with other tokens, or flat code that gathers nothing, stay as written.
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo | FileCheck %s

// CHECK-LABEL: func @segment_sum_of_pairs
// CHECK-NOT: stablehlo.scatter
// CHECK: %[[W:.*]] = "stablehlo.gather"(%arg1, %{{.*}}) <{dimension_numbers = #stablehlo.gather<offset_dims = [2, 3], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 2>, indices_are_sorted = false, slice_sizes = array<i64: 1, 8, 6>}> : (tensor<3x8x6xf32>, tensor<4x2x1xi32>) -> tensor<4x2x8x6xf32>
// CHECK: %[[H:.*]] = stablehlo.dot_general %arg0, %[[W]], batching_dims = [0] x [0], contracting_dims = [1] x [2]{{.*}} -> tensor<4x2x6xf32>
// CHECK: %[[S:.*]] = stablehlo.broadcast_in_dim %arg3, dims = [0, 1] : (tensor<4x2xf32>) -> tensor<4x2x6xf32>
// CHECK: %[[P:.*]] = stablehlo.multiply %[[H]], %[[S]] : tensor<4x2x6xf32>
// CHECK: %[[Y:.*]] = stablehlo.reduce(%[[P]] init: %{{.*}}) applies stablehlo.add across dimensions = [1] : (tensor<4x2x6xf32>, tensor<f32>) -> tensor<4x6xf32>
// CHECK: return %[[Y]]
func.func @segment_sum_of_pairs(%x: tensor<4x8xf32>, %w: tensor<3x8x6xf32>, %idx: tensor<4x2xi32>, %vals: tensor<4x2xf32>) -> tensor<4x6xf32> {
  %iota = stablehlo.iota dim = 0 : tensor<4xi32>
  %rep = stablehlo.broadcast_in_dim %iota, dims = [0] : (tensor<4xi32>) -> tensor<4x2xi32>
  %tok = stablehlo.reshape %rep : (tensor<4x2xi32>) -> tensor<8xi32>
  %e = stablehlo.reshape %idx : (tensor<4x2xi32>) -> tensor<8xi32>
  %tokc = stablehlo.broadcast_in_dim %tok, dims = [0] : (tensor<8xi32>) -> tensor<8x1xi32>
  %ec = stablehlo.broadcast_in_dim %e, dims = [0] : (tensor<8xi32>) -> tensor<8x1xi32>
  %xs = "stablehlo.gather"(%x, %tokc) <{dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, 8>}> : (tensor<4x8xf32>, tensor<8x1xi32>) -> tensor<8x8xf32>
  %ws = "stablehlo.gather"(%w, %ec) <{dimension_numbers = #stablehlo.gather<offset_dims = [1, 2], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, 8, 6>}> : (tensor<3x8x6xf32>, tensor<8x1xi32>) -> tensor<8x8x6xf32>
  %h = stablehlo.dot_general %xs, %ws, batching_dims = [0] x [0], contracting_dims = [1] x [1] : (tensor<8x8xf32>, tensor<8x8x6xf32>) -> tensor<8x6xf32>
  %v = stablehlo.reshape %vals : (tensor<4x2xf32>) -> tensor<8x1xf32>
  %vb = stablehlo.broadcast_in_dim %v, dims = [0, 1] : (tensor<8x1xf32>) -> tensor<8x6xf32>
  %p = stablehlo.multiply %h, %vb : tensor<8x6xf32>
  %zero = stablehlo.constant dense<0.0> : tensor<4x6xf32>
  %y = "stablehlo.scatter"(%zero, %tokc, %p) <{scatter_dimension_numbers = #stablehlo.scatter<update_window_dims = [1], inserted_window_dims = [0], scatter_dims_to_operand_dims = [0], index_vector_dim = 1>}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>):
    %s = stablehlo.add %a, %b : tensor<f32>
    stablehlo.return %s : tensor<f32>
  }) : (tensor<4x6xf32>, tensor<8x1xi32>, tensor<8x6xf32>) -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}

// -----

// The pairs viewed back as [T, k, H]: the view is the twin itself.
// CHECK-LABEL: func @view_of_pairs
// CHECK-NOT: stablehlo.reshape
// CHECK: %[[W:.*]] = "stablehlo.gather"(%arg1, %{{.*}}){{.*}} -> tensor<4x2x8x6xf32>
// CHECK: %[[H:.*]] = stablehlo.dot_general %arg0, %[[W]]{{.*}} -> tensor<4x2x6xf32>
// CHECK: return %[[H]]
func.func @view_of_pairs(%x: tensor<4x8xf32>, %w: tensor<3x8x6xf32>, %idx: tensor<4x2xi32>) -> tensor<4x2x6xf32> {
  %iota = stablehlo.iota dim = 0 : tensor<4xi32>
  %rep = stablehlo.broadcast_in_dim %iota, dims = [0] : (tensor<4xi32>) -> tensor<4x2xi32>
  %tok = stablehlo.reshape %rep : (tensor<4x2xi32>) -> tensor<8xi32>
  %e = stablehlo.reshape %idx : (tensor<4x2xi32>) -> tensor<8xi32>
  %tokc = stablehlo.broadcast_in_dim %tok, dims = [0] : (tensor<8xi32>) -> tensor<8x1xi32>
  %ec = stablehlo.broadcast_in_dim %e, dims = [0] : (tensor<8xi32>) -> tensor<8x1xi32>
  %xs = "stablehlo.gather"(%x, %tokc) <{dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, 8>}> : (tensor<4x8xf32>, tensor<8x1xi32>) -> tensor<8x8xf32>
  %ws = "stablehlo.gather"(%w, %ec) <{dimension_numbers = #stablehlo.gather<offset_dims = [1, 2], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, 8, 6>}> : (tensor<3x8x6xf32>, tensor<8x1xi32>) -> tensor<8x8x6xf32>
  %h = stablehlo.dot_general %xs, %ws, batching_dims = [0] x [0], contracting_dims = [1] x [1] : (tensor<8x8xf32>, tensor<8x8x6xf32>) -> tensor<8x6xf32>
  %r = stablehlo.reshape %h : (tensor<8x6xf32>) -> tensor<4x2x6xf32>
  return %r : tensor<4x2x6xf32>
}

// -----

// tile(arange(T), k): row n is token n % T, not the slot's; the
// segment_sum stays.
// CHECK-LABEL: func @tiled_tokens_stay
// CHECK: stablehlo.scatter
func.func @tiled_tokens_stay(%x: tensor<4x8xf32>, %w: tensor<3x8x6xf32>, %idx: tensor<4x2xi32>) -> tensor<4x6xf32> {
  %iota = stablehlo.iota dim = 0 : tensor<4xi32>
  %rep = stablehlo.broadcast_in_dim %iota, dims = [1] : (tensor<4xi32>) -> tensor<2x4xi32>
  %tok = stablehlo.reshape %rep : (tensor<2x4xi32>) -> tensor<8xi32>
  %e = stablehlo.reshape %idx : (tensor<4x2xi32>) -> tensor<8xi32>
  %tokc = stablehlo.broadcast_in_dim %tok, dims = [0] : (tensor<8xi32>) -> tensor<8x1xi32>
  %ec = stablehlo.broadcast_in_dim %e, dims = [0] : (tensor<8xi32>) -> tensor<8x1xi32>
  %xs = "stablehlo.gather"(%x, %tokc) <{dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, 8>}> : (tensor<4x8xf32>, tensor<8x1xi32>) -> tensor<8x8xf32>
  %ws = "stablehlo.gather"(%w, %ec) <{dimension_numbers = #stablehlo.gather<offset_dims = [1, 2], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, 8, 6>}> : (tensor<3x8x6xf32>, tensor<8x1xi32>) -> tensor<8x8x6xf32>
  %h = stablehlo.dot_general %xs, %ws, batching_dims = [0] x [0], contracting_dims = [1] x [1] : (tensor<8x8xf32>, tensor<8x8x6xf32>) -> tensor<8x6xf32>
  %zero = stablehlo.constant dense<0.0> : tensor<4x6xf32>
  %y = "stablehlo.scatter"(%zero, %tokc, %h) <{scatter_dimension_numbers = #stablehlo.scatter<update_window_dims = [1], inserted_window_dims = [0], scatter_dims_to_operand_dims = [0], index_vector_dim = 1>}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>):
    %s = stablehlo.add %a, %b : tensor<f32>
    stablehlo.return %s : tensor<f32>
  }) : (tensor<4x6xf32>, tensor<8x1xi32>, tensor<8x6xf32>) -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}

// -----

// Flat rows with no gather by them (an elementwise op between two views):
// left as written.
// CHECK-LABEL: func @no_gather_stays
// CHECK: stablehlo.reshape %arg0 : (tensor<4x2x6xf32>) -> tensor<8x6xf32>
// CHECK: stablehlo.reshape %{{.*}} : (tensor<8x6xf32>) -> tensor<4x2x6xf32>
func.func @no_gather_stays(%a: tensor<4x2x6xf32>) -> tensor<4x2x6xf32> {
  %f = stablehlo.reshape %a : (tensor<4x2x6xf32>) -> tensor<8x6xf32>
  %n = stablehlo.negate %f : tensor<8x6xf32>
  %r = stablehlo.reshape %n : (tensor<8x6xf32>) -> tensor<4x2x6xf32>
  return %r : tensor<4x2x6xf32>
}
