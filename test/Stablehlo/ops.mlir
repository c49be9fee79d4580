// The StableHLO/CHLO subset parses in JAX's pretty syntax, prints it back,
// and reparses; the generic form gives the same ops.
// RUN: moe-opt %s | FileCheck %s
// RUN: moe-opt %s | moe-opt | FileCheck %s
// RUN: moe-opt %s --mlir-print-op-generic | moe-opt | FileCheck %s

// CHECK-LABEL: func @elementwise
func.func @elementwise(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>, %i: tensor<4x8xi32>) -> tensor<4x8xf32> {
  // CHECK: stablehlo.add %{{.*}}, %{{.*}} : tensor<4x8xf32>
  %0 = stablehlo.add %a, %b : tensor<4x8xf32>
  // CHECK: stablehlo.exponential %{{.*}} : tensor<4x8xf32>
  %1 = stablehlo.exponential %0 : tensor<4x8xf32>
  // CHECK: stablehlo.convert %{{.*}} : (tensor<4x8xi32>) -> tensor<4x8xf32>
  %2 = stablehlo.convert %i : (tensor<4x8xi32>) -> tensor<4x8xf32>
  // CHECK: stablehlo.compare GT, %{{.*}}, %{{.*}}, TOTALORDER : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xi1>
  %3 = stablehlo.compare GT, %1, %2, TOTALORDER : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xi1>
  // CHECK: stablehlo.compare LT, %{{.*}}, %{{.*}} : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xi1>
  %4 = stablehlo.compare LT, %1, %2 : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xi1>
  // CHECK: stablehlo.select %{{.*}}, %{{.*}}, %{{.*}} : tensor<4x8xi1>, tensor<4x8xf32>
  %5 = stablehlo.select %3, %1, %2 : tensor<4x8xi1>, tensor<4x8xf32>
  %lo = stablehlo.constant dense<-1.0> : tensor<f32>
  // CHECK: stablehlo.clamp %{{.*}}, %{{.*}}, %{{.*}} : (tensor<f32>, tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %6 = stablehlo.clamp %lo, %5, %lo : (tensor<f32>, tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  // CHECK: chlo.erfc %{{.*}} : tensor<4x8xf32> -> tensor<4x8xf32>
  %7 = chlo.erfc %6 : tensor<4x8xf32> -> tensor<4x8xf32>
  // CHECK: stablehlo.get_dimension_size %{{.*}}, dim = 1 : (tensor<4x8xf32>) -> tensor<i32>
  %size = stablehlo.get_dimension_size %7, dim = 1 : (tensor<4x8xf32>) -> tensor<i32>
  // CHECK: chlo.square %{{.*}} : tensor<4x8xf32> -> tensor<4x8xf32>
  %8 = chlo.square %7 : tensor<4x8xf32> -> tensor<4x8xf32>
  return %8 : tensor<4x8xf32>
}

// CHECK-LABEL: func @shapes
func.func @shapes(%x: tensor<4x8xf32>, %i: tensor<i32>) -> tensor<2x9xf32> {
  // CHECK: stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %zero = stablehlo.constant dense<0.0> : tensor<f32>
  // CHECK: stablehlo.iota dim = 1 : tensor<4x8xi32>
  %iota = stablehlo.iota dim = 1 : tensor<4x8xi32>
  // CHECK: stablehlo.broadcast_in_dim %{{.*}}, dims = [] : (tensor<f32>) -> tensor<4x8xf32>
  %b = stablehlo.broadcast_in_dim %zero, dims = [] : (tensor<f32>) -> tensor<4x8xf32>
  // CHECK: stablehlo.transpose %{{.*}}, dims = [1, 0] : (tensor<4x8xf32>) -> tensor<8x4xf32>
  %t = stablehlo.transpose %x, dims = [1, 0] : (tensor<4x8xf32>) -> tensor<8x4xf32>
  // CHECK: stablehlo.reshape %{{.*}} : (tensor<8x4xf32>) -> tensor<32xf32>
  %r = stablehlo.reshape %t : (tensor<8x4xf32>) -> tensor<32xf32>
  // CHECK: stablehlo.slice %{{.*}} [0:4, 1:7:3] : (tensor<4x8xf32>) -> tensor<4x2xf32>
  %s = stablehlo.slice %x [0:4, 1:7:3] : (tensor<4x8xf32>) -> tensor<4x2xf32>
  // CHECK: stablehlo.dynamic_slice %{{.*}}, %{{.*}}, %{{.*}}, sizes = [1, 8] : (tensor<4x8xf32>, tensor<i32>, tensor<i32>) -> tensor<1x8xf32>
  %d = stablehlo.dynamic_slice %x, %i, %i, sizes = [1, 8] : (tensor<4x8xf32>, tensor<i32>, tensor<i32>) -> tensor<1x8xf32>
  // CHECK: stablehlo.dynamic_update_slice %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : (tensor<4x8xf32>, tensor<1x8xf32>, tensor<i32>, tensor<i32>) -> tensor<4x8xf32>
  %u = stablehlo.dynamic_update_slice %x, %d, %i, %i : (tensor<4x8xf32>, tensor<1x8xf32>, tensor<i32>, tensor<i32>) -> tensor<4x8xf32>
  // CHECK: stablehlo.concatenate %{{.*}}, %{{.*}}, dim = 0 : (tensor<1x8xf32>, tensor<1x8xf32>) -> tensor<2x8xf32>
  %c = stablehlo.concatenate %d, %d, dim = 0 : (tensor<1x8xf32>, tensor<1x8xf32>) -> tensor<2x8xf32>
  // CHECK: stablehlo.reverse %{{.*}}, dims = [1] : tensor<2x8xf32>
  %v = stablehlo.reverse %c, dims = [1] : tensor<2x8xf32>
  // CHECK: stablehlo.pad %{{.*}}, %{{.*}}, low = [0, 1], high = [0, 0], interior = [0, 0] : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x9xf32>
  %p = stablehlo.pad %v, %zero, low = [0, 1], high = [0, 0], interior = [0, 0] : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x9xf32>
  return %p : tensor<2x9xf32>
}

// CHECK-LABEL: func @contractions
func.func @contractions(%x: tensor<2x4x8xf32>, %w: tensor<2x8x6xf32>) -> (tensor<2x4x6xf32>, tensor<2x4xf32>, tensor<2x4xf32>) {
  // CHECK: stablehlo.dot_general %{{.*}}, %{{.*}}, batching_dims = [0] x [0], contracting_dims = [2] x [1], precision = [DEFAULT, HIGHEST] : (tensor<2x4x8xf32>, tensor<2x8x6xf32>) -> tensor<2x4x6xf32>
  %0 = stablehlo.dot_general %x, %w, batching_dims = [0] x [0], contracting_dims = [2] x [1], precision = [DEFAULT, HIGHEST] : (tensor<2x4x8xf32>, tensor<2x8x6xf32>) -> tensor<2x4x6xf32>
  %init = stablehlo.constant dense<0.0> : tensor<f32>
  // CHECK: stablehlo.reduce(%{{.*}} init: %{{.*}}) applies stablehlo.add across dimensions = [2] : (tensor<2x4x8xf32>, tensor<f32>) -> tensor<2x4xf32>
  %1 = stablehlo.reduce(%x init: %init) applies stablehlo.add across dimensions = [2] : (tensor<2x4x8xf32>, tensor<f32>) -> tensor<2x4xf32>
  // CHECK: stablehlo.reduce(%{{.*}} init: %{{.*}}) across dimensions = [2]
  // CHECK-NEXT: reducer(%[[A:.*]]: tensor<f32>, %[[B:.*]]: tensor<f32>)
  // CHECK: stablehlo.multiply
  %2 = stablehlo.reduce(%x init: %init) across dimensions = [2] : (tensor<2x4x8xf32>, tensor<f32>) -> tensor<2x4xf32>
   reducer(%a: tensor<f32>, %b: tensor<f32>) {
    %s = stablehlo.multiply %a, %b : tensor<f32>
    %t = stablehlo.add %s, %a : tensor<f32>
    stablehlo.return %t : tensor<f32>
  }
  return %0, %1, %2 : tensor<2x4x6xf32>, tensor<2x4xf32>, tensor<2x4xf32>
}

// CHECK-LABEL: func @indexing
func.func @indexing(%x: tensor<8x16xf32>, %idx: tensor<4x1xi32>, %keys: tensor<16xi32>) -> (tensor<4x16xf32>, tensor<8x16xf32>, tensor<16xi32>) {
  // CHECK: "stablehlo.gather"(%{{.*}}, %{{.*}}) <{dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>,
  // CHECK-SAME: slice_sizes = array<i64: 1, 16>}>
  %g = "stablehlo.gather"(%x, %idx) <{dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, 16>}> : (tensor<8x16xf32>, tensor<4x1xi32>) -> tensor<4x16xf32>
  // CHECK: "stablehlo.scatter"
  // CHECK-SAME: #stablehlo.scatter<update_window_dims = [1], inserted_window_dims = [0], scatter_dims_to_operand_dims = [0], index_vector_dim = 1>
  %s = "stablehlo.scatter"(%x, %idx, %g) <{indices_are_sorted = false, scatter_dimension_numbers = #stablehlo.scatter<update_window_dims = [1], inserted_window_dims = [0], scatter_dims_to_operand_dims = [0], index_vector_dim = 1>, unique_indices = false}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>):
    %sum = stablehlo.add %a, %b : tensor<f32>
    stablehlo.return %sum : tensor<f32>
  }) : (tensor<8x16xf32>, tensor<4x1xi32>, tensor<4x16xf32>) -> tensor<8x16xf32>
  // The older attribute-dictionary spelling of inherent attributes parses too.
  // CHECK: "stablehlo.sort"(%{{.*}}) <{dimension = 0 : i64, is_stable = true}>
  %sorted = "stablehlo.sort"(%keys) ({
  ^bb0(%a: tensor<i32>, %b: tensor<i32>):
    %lt = stablehlo.compare LT, %a, %b, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) {dimension = 0 : i64, is_stable = true} : (tensor<16xi32>) -> tensor<16xi32>
  return %g, %s, %sorted : tensor<4x16xf32>, tensor<8x16xf32>, tensor<16xi32>
}

// CHECK-LABEL: func @moe_ops
func.func @moe_ops(%p: tensor<8x4xf32>, %x: tensor<16x8xf32>, %w: tensor<4x8x6xf32>, %sizes: tensor<4xi32>) -> (tensor<8x2xf32>, tensor<16x6xf32>) {
  // CHECK: %{{.*}}, %{{.*}} = chlo.top_k(%{{.*}}, k = 2) : tensor<8x4xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %values, %indices = chlo.top_k(%p, k = 2) : tensor<8x4xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
  // CHECK: "chlo.ragged_dot"(
  // CHECK-SAME: ragged_dot_dimension_numbers = #chlo.ragged_dot<lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [1], lhs_ragged_dimensions = [0], rhs_group_dimensions = [0]>}>
  %r = "chlo.ragged_dot"(%x, %w, %sizes) {ragged_dot_dimension_numbers = #chlo.ragged_dot<lhs_batching_dimensions = [], rhs_batching_dimensions = [], lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [1], lhs_ragged_dimensions = [0], rhs_group_dimensions = [0]>, precision_config = [#chlo<precision DEFAULT>, #chlo<precision DEFAULT>]} : (tensor<16x8xf32>, tensor<4x8x6xf32>, tensor<4xi32>) -> tensor<16x6xf32>
  // CHECK: stablehlo.custom_call @mhlo.topk(%{{.*}}) {mhlo.attributes = {k = 2 : i64, largest = true}} : (tensor<8x4xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %cv, %ci = stablehlo.custom_call @mhlo.topk(%p) {mhlo.attributes = {k = 2 : i64, largest = true}} : (tensor<8x4xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>)
  return %values, %r : tensor<8x2xf32>, tensor<16x6xf32>
}

// CHECK-LABEL: func @while_loop
func.func @while_loop(%x: tensor<4xf32>) -> tensor<4xf32> {
  %c0 = stablehlo.constant dense<0> : tensor<i32>
  %c1 = stablehlo.constant dense<1> : tensor<i32>
  %c3 = stablehlo.constant dense<3> : tensor<i32>
  // CHECK: %{{.*}}:2 = stablehlo.while(%[[I:.*]] = %{{.*}}, %[[H:.*]] = %{{.*}}) : tensor<i32>, tensor<4xf32> cond {
  // CHECK: stablehlo.compare LT, %[[I]]
  // CHECK: } do {
  // CHECK: stablehlo.add %[[H]], %[[H]]
  %r:2 = stablehlo.while(%i = %c0, %h = %x) : tensor<i32>, tensor<4xf32>
  cond {
    %lt = stablehlo.compare LT, %i, %c3, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  } do {
    %next = stablehlo.add %i, %c1 : tensor<i32>
    %d = stablehlo.add %h, %h : tensor<4xf32>
    stablehlo.return %next, %d : tensor<i32>, tensor<4xf32>
  }
  return %r#1 : tensor<4xf32>
}

// CHECK-LABEL: func @branches_and_bits
func.func @branches_and_bits(%i: tensor<i32>, %p: tensor<i1>, %a: tensor<4xf32>, %n: tensor<4xi32>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xi32>) {
  // CHECK: "stablehlo.case"(%{{.*}}) ({
  // CHECK: stablehlo.return %{{.*}} : tensor<4xf32>
  // CHECK: }, {
  %c = "stablehlo.case"(%i) ({
    stablehlo.return %a : tensor<4xf32>
  }, {
    %d = stablehlo.add %a, %a : tensor<4xf32>
    stablehlo.return %d : tensor<4xf32>
  }) : (tensor<i32>) -> tensor<4xf32>
  // CHECK: "stablehlo.if"(%{{.*}}) ({
  %f = "stablehlo.if"(%p) ({
    stablehlo.return %a : tensor<4xf32>
  }, {
    stablehlo.return %c : tensor<4xf32>
  }) : (tensor<i1>) -> tensor<4xf32>
  // CHECK: %{{.*}}:2 = stablehlo.optimization_barrier %{{.*}}, %{{.*}} : tensor<4xf32>, tensor<4xi32>
  %b:2 = stablehlo.optimization_barrier %f, %n : tensor<4xf32>, tensor<4xi32>
  // CHECK: chlo.erf_inv %{{.*}} : tensor<4xf32> -> tensor<4xf32>
  %e = chlo.erf_inv %b#0 : tensor<4xf32> -> tensor<4xf32>
  // CHECK: stablehlo.shift_left
  // CHECK: stablehlo.shift_right_arithmetic
  // CHECK: stablehlo.shift_right_logical
  // CHECK: stablehlo.popcnt
  // CHECK: stablehlo.count_leading_zeros
  %s0 = stablehlo.shift_left %b#1, %n : tensor<4xi32>
  %s1 = stablehlo.shift_right_arithmetic %s0, %n : tensor<4xi32>
  %s2 = stablehlo.shift_right_logical %s1, %n : tensor<4xi32>
  %s3 = stablehlo.popcnt %s2 : tensor<4xi32>
  %s4 = stablehlo.count_leading_zeros %s3 : tensor<4xi32>
  return %e, %c, %s4 : tensor<4xf32>, tensor<4xf32>, tensor<4xi32>
}
