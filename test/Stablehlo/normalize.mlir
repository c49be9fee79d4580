// moe-normalize-stablehlo: JAX's four spellings of top-k become chlo.top_k;
// a grouped-matmul ragged_dot composite becomes chlo.ragged_dot; other
// composites become calls of their decompositions; chlo.square becomes a
// stablehlo.multiply of the value by itself.
// RUN: moe-opt %s -split-input-file -moe-normalize-stablehlo -verify-diagnostics | FileCheck %s

// CHECK-LABEL: func @topk_composite
func.func @topk_composite(%x: tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>) {
  // CHECK: chlo.top_k(%{{.*}}, k = 2) : tensor<4x8xf32> -> (tensor<4x2xf32>, tensor<4x2xi32>)
  // CHECK-NOT: stablehlo.composite
  %0:2 = stablehlo.composite "chlo.top_k" %x {composite_attributes = {k = 2 : i64, largest = true}, decomposition = @topk_impl, version = 1 : i32} : (tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
  return %0#0, %0#1 : tensor<4x2xf32>, tensor<4x2xi32>
}
func.func private @topk_impl(%x: tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>) {
  %v, %i = chlo.top_k(%x, k = 2) : tensor<4x8xf32> -> (tensor<4x2xf32>, tensor<4x2xi32>)
  return %v, %i : tensor<4x2xf32>, tensor<4x2xi32>
}

// -----

// CHECK-LABEL: func @topk_custom_call
func.func @topk_custom_call(%x: tensor<4x8xf32>) -> (tensor<4x3xf32>, tensor<4x3xi32>) {
  // CHECK: chlo.top_k(%{{.*}}, k = 3)
  // CHECK-NOT: custom_call
  %v, %i = stablehlo.custom_call @mhlo.topk(%x) {mhlo.attributes = {k = 3 : i64, largest = true}, mhlo.version = 1 : i64} : (tensor<4x8xf32>) -> (tensor<4x3xf32>, tensor<4x3xi32>)
  return %v, %i : tensor<4x3xf32>, tensor<4x3xi32>
}

// -----

// The expansion chlo.top_k.impl holds: iota, a stable descending sort of
// (values, iota) along the last dim, slices of both to the first k.
// CHECK-LABEL: func @topk_sort_slice
func.func @topk_sort_slice(%x: tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>) {
  // CHECK: %[[V:.*]], %[[I:.*]] = chlo.top_k(%{{.*}}, k = 2)
  // CHECK-NOT: stablehlo.sort
  // CHECK: return %[[V]], %[[I]]
  %0 = stablehlo.iota dim = 1 : tensor<4x8xi32>
  %1:2 = "stablehlo.sort"(%x, %0) <{dimension = 1 : i64, is_stable = true}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>, %c: tensor<i32>, %d: tensor<i32>):
    %gt = stablehlo.compare GT, %a, %b, TOTALORDER : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %gt : tensor<i1>
  }) : (tensor<4x8xf32>, tensor<4x8xi32>) -> (tensor<4x8xf32>, tensor<4x8xi32>)
  %2 = stablehlo.slice %1#0 [0:4, 0:2] : (tensor<4x8xf32>) -> tensor<4x2xf32>
  %3 = stablehlo.slice %1#1 [0:4, 0:2] : (tensor<4x8xi32>) -> tensor<4x2xi32>
  return %2, %3 : tensor<4x2xf32>, tensor<4x2xi32>
}

// -----

// An ascending sort is not a top-k: it stays.
// CHECK-LABEL: func @ascending_sort_stays
func.func @ascending_sort_stays(%x: tensor<4x8xf32>) -> tensor<4x2xf32> {
  // CHECK: stablehlo.sort
  // CHECK-NOT: chlo.top_k
  %0 = stablehlo.iota dim = 1 : tensor<4x8xi32>
  %1:2 = "stablehlo.sort"(%x, %0) <{dimension = 1 : i64, is_stable = true}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>, %c: tensor<i32>, %d: tensor<i32>):
    %lt = stablehlo.compare LT, %a, %b, TOTALORDER : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<4x8xf32>, tensor<4x8xi32>) -> (tensor<4x8xf32>, tensor<4x8xi32>)
  %2 = stablehlo.slice %1#0 [0:4, 0:2] : (tensor<4x8xf32>) -> tensor<4x2xf32>
  return %2 : tensor<4x2xf32>
}

// -----

// A sort whose full result is used is not a top-k either.
// CHECK-LABEL: func @full_sort_stays
func.func @full_sort_stays(%x: tensor<4x8xf32>) -> tensor<4x8xi32> {
  // CHECK: stablehlo.sort
  %0 = stablehlo.iota dim = 1 : tensor<4x8xi32>
  %1:2 = "stablehlo.sort"(%x, %0) <{dimension = 1 : i64, is_stable = true}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>, %c: tensor<i32>, %d: tensor<i32>):
    %gt = stablehlo.compare GT, %a, %b, TOTALORDER : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %gt : tensor<i1>
  }) : (tensor<4x8xf32>, tensor<4x8xi32>) -> (tensor<4x8xf32>, tensor<4x8xi32>)
  return %1#1 : tensor<4x8xi32>
}

// -----

// CHECK-LABEL: func @ragged_dot_composite
func.func @ragged_dot_composite(%x: tensor<8x4xf32>, %w: tensor<2x4x6xf32>, %s: tensor<2xi32>) -> tensor<8x6xf32> {
  // CHECK: "chlo.ragged_dot"(%{{.*}}, %{{.*}}, %{{.*}}) <{ragged_dot_dimension_numbers = #chlo.ragged_dot<lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [1], lhs_ragged_dimensions = [0], rhs_group_dimensions = [0]>}>
  %0 = stablehlo.composite "chlo.ragged_dot" %x, %w, %s {composite_attributes = {precision_config = ["DEFAULT", "DEFAULT"], ragged_dot_dimension_numbers = [dense<> : tensor<0xi64>, dense<> : tensor<0xi64>, dense<1> : tensor<1xi64>, dense<1> : tensor<1xi64>, dense<0> : tensor<1xi64>, dense<0> : tensor<1xi64>]}, decomposition = @ragged_impl, version = 1 : i32} : (tensor<8x4xf32>, tensor<2x4x6xf32>, tensor<2xi32>) -> tensor<8x6xf32>
  return %0 : tensor<8x6xf32>
}
func.func private @ragged_impl(%x: tensor<8x4xf32>, %w: tensor<2x4x6xf32>, %s: tensor<2xi32>) -> tensor<8x6xf32> {
  %0 = "chlo.ragged_dot"(%x, %w, %s) {ragged_dot_dimension_numbers = #chlo.ragged_dot<lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [1], lhs_ragged_dimensions = [0], rhs_group_dimensions = [0]>} : (tensor<8x4xf32>, tensor<2x4x6xf32>, tensor<2xi32>) -> tensor<8x6xf32>
  return %0 : tensor<8x6xf32>
}

// -----

// CHECK-LABEL: func @other_composite_called
func.func @other_composite_called(%x: tensor<4xf32>) -> tensor<4xf32> {
  // CHECK: call @my_gelu(%{{.*}}) : (tensor<4xf32>) -> tensor<4xf32>
  %0 = stablehlo.composite "my.gelu" %x {decomposition = @my_gelu} : (tensor<4xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}
func.func private @my_gelu(%x: tensor<4xf32>) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}

// -----

// CHECK-LABEL: func @square_multiplied
func.func @square_multiplied(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  // CHECK: %[[P:.*]] = stablehlo.multiply %arg0, %arg0 : tensor<4x8xf32>
  // CHECK-NOT: chlo.square
  // CHECK: return %[[P]]
  %0 = chlo.square %x : tensor<4x8xf32> -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @bottom_k(%x: tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>) {
  // expected-error @+1 {{top_k with largest = false is not supported}}
  %v, %i = stablehlo.custom_call @mhlo.topk(%x) {mhlo.attributes = {k = 2 : i64, largest = false}} : (tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
  return %v, %i : tensor<4x2xf32>, tensor<4x2xi32>
}

// -----

// lax.approx_max_k on CPU/GPU: the exact top-k meets any recall target. The
// comparator function goes with the call.
// CHECK-LABEL: func @approx_max_k
// CHECK-NOT: func.func @top_k_gt_f32_comparator
// CHECK: %{{.*}}, %[[I:.*]] = chlo.top_k(%arg0, k = 2) : tensor<4x8xf32> -> (tensor<4x2xf32>, tensor<4x2xi32>)
// CHECK-NOT: custom_call
func.func @top_k_gt_f32_comparator(%a: tensor<f32>, %b: tensor<f32>, %c: tensor<i32>, %d: tensor<i32>) -> tensor<i1> {
  %0 = stablehlo.compare GT, %a, %b : (tensor<f32>, tensor<f32>) -> tensor<i1>
  stablehlo.return %0 : tensor<i1>
}
func.func @approx_max_k(%x: tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>) {
  %iota = stablehlo.iota dim = 1 : tensor<4x8xi32>
  %init = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %m = stablehlo.constant dense<-1> : tensor<i32>
  %v, %i = stablehlo.custom_call @ApproxTopK(%x, %iota, %init, %m) {called_computations = [@top_k_gt_f32_comparator], mhlo.backend_config = {aggregate_to_topk = true, is_fallback = true, recall_target = 0.95 : f32, reduction_dim = 1 : i64, reduction_input_size_override = -1 : i64, top_k = 2 : i64}} : (tensor<4x8xf32>, tensor<4x8xi32>, tensor<f32>, tensor<i32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
  return %v, %i : tensor<4x2xf32>, tensor<4x2xi32>
}

// -----

// lax.approx_min_k: the top-k of the negated values, negated back.
// CHECK-LABEL: func @approx_min_k
// CHECK: %[[N:.*]] = stablehlo.negate %arg0
// CHECK: %[[V:.*]], %{{.*}} = chlo.top_k(%[[N]], k = 3)
// CHECK: stablehlo.negate %[[V]]
func.func @top_k_lt_f32_comparator(%a: tensor<f32>, %b: tensor<f32>, %c: tensor<i32>, %d: tensor<i32>) -> tensor<i1> {
  %0 = stablehlo.compare LT, %a, %b : (tensor<f32>, tensor<f32>) -> tensor<i1>
  stablehlo.return %0 : tensor<i1>
}
func.func @approx_min_k(%x: tensor<4x8xf32>) -> (tensor<4x3xf32>, tensor<4x3xi32>) {
  %iota = stablehlo.iota dim = 1 : tensor<4x8xi32>
  %init = stablehlo.constant dense<0x7F800000> : tensor<f32>
  %m = stablehlo.constant dense<-1> : tensor<i32>
  %v, %i = stablehlo.custom_call @ApproxTopK(%x, %iota, %init, %m) {called_computations = [@top_k_lt_f32_comparator], mhlo.backend_config = {aggregate_to_topk = true, recall_target = 0.95 : f32, reduction_dim = 1 : i64, top_k = 3 : i64}} : (tensor<4x8xf32>, tensor<4x8xi32>, tensor<f32>, tensor<i32>) -> (tensor<4x3xf32>, tensor<4x3xi32>)
  return %v, %i : tensor<4x3xf32>, tensor<4x3xi32>
}

// -----

func.func @cmp(%a: tensor<f32>, %b: tensor<f32>, %c: tensor<i32>, %d: tensor<i32>) -> tensor<i1> {
  %0 = stablehlo.compare GT, %a, %b : (tensor<f32>, tensor<f32>) -> tensor<i1>
  stablehlo.return %0 : tensor<i1>
}
func.func @approx_not_aggregated(%x: tensor<4x8xf32>) -> (tensor<4x4xf32>, tensor<4x4xi32>) {
  %iota = stablehlo.iota dim = 1 : tensor<4x8xi32>
  %init = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %m = stablehlo.constant dense<-1> : tensor<i32>
  // expected-error @+1 {{custom_call @ApproxTopK in a form other than lax.approx_max_k/approx_min_k (aggregated, one comparator) is not supported}}
  %v, %i = stablehlo.custom_call @ApproxTopK(%x, %iota, %init, %m) {called_computations = [@cmp], mhlo.backend_config = {aggregate_to_topk = false, reduction_dim = 1 : i64, top_k = 2 : i64}} : (tensor<4x8xf32>, tensor<4x8xi32>, tensor<f32>, tensor<i32>) -> (tensor<4x4xf32>, tensor<4x4xi32>)
  return %v, %i : tensor<4x4xf32>, tensor<4x4xi32>
}

// -----

// jax.checkpoint's barrier computes nothing.
// CHECK-LABEL: func @optimization_barrier
// CHECK-NOT: optimization_barrier
// CHECK: return %arg1, %arg0
func.func @optimization_barrier(%a: tensor<4xf32>, %b: tensor<i32>) -> (tensor<i32>, tensor<4xf32>) {
  %r:2 = stablehlo.optimization_barrier %a, %b : tensor<4xf32>, tensor<i32>
  return %r#1, %r#0 : tensor<i32>, tensor<4xf32>
}
