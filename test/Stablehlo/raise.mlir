// moe-raise-stablehlo: JAX's CPU expansion of lax.ragged_dot becomes
// chlo.ragged_dot again (masked dots that differ from it stay); a dense
// expert mixture becomes moe.layer (experts with biases stay, with a remark).
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo 2>&1 >/dev/null | FileCheck %s --check-prefix=REMARK

// CHECK-LABEL: func @ragged_dot_expansion
// CHECK: %[[R:.*]] = "chlo.ragged_dot"(%arg0, %arg1, %arg2)
// CHECK-NOT: stablehlo.dot_general
// CHECK: return %[[R]]
func.func @ragged_dot_expansion(%x: tensor<8x4xf32>, %w: tensor<2x4x6xf32>, %s: tensor<2xi32>) -> tensor<8x6xf32> {
  %0 = stablehlo.broadcast_in_dim %x, dims = [1, 2] : (tensor<8x4xf32>) -> tensor<2x8x4xf32>
  %1 = stablehlo.iota dim = 1 : tensor<2x8x4xi32>
  %c = stablehlo.constant dense<0> : tensor<i32>
  %2 = "stablehlo.reduce_window"(%s, %c) <{padding = dense<[[1, 0]]> : tensor<1x2xi64>, window_dimensions = array<i64: 2>}> ({
  ^bb0(%a: tensor<i32>, %b: tensor<i32>):
    %sum = stablehlo.add %a, %b : tensor<i32>
    stablehlo.return %sum : tensor<i32>
  }) : (tensor<2xi32>, tensor<i32>) -> tensor<2xi32>
  %3 = stablehlo.broadcast_in_dim %c, dims = [] : (tensor<i32>) -> tensor<2xi32>
  %4 = stablehlo.slice %3 [0:1] : (tensor<2xi32>) -> tensor<1xi32>
  %5 = stablehlo.slice %2 [0:1] : (tensor<2xi32>) -> tensor<1xi32>
  %6 = stablehlo.concatenate %4, %5, dim = 0 : (tensor<1xi32>, tensor<1xi32>) -> tensor<2xi32>
  %7 = stablehlo.broadcast_in_dim %2, dims = [0] : (tensor<2xi32>) -> tensor<2x8x4xi32>
  %8 = stablehlo.broadcast_in_dim %6, dims = [0] : (tensor<2xi32>) -> tensor<2x8x4xi32>
  %9 = stablehlo.compare LE, %8, %1, SIGNED : (tensor<2x8x4xi32>, tensor<2x8x4xi32>) -> tensor<2x8x4xi1>
  %10 = stablehlo.compare LT, %1, %7, SIGNED : (tensor<2x8x4xi32>, tensor<2x8x4xi32>) -> tensor<2x8x4xi1>
  %11 = stablehlo.and %9, %10 : tensor<2x8x4xi1>
  %cst = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %12 = stablehlo.broadcast_in_dim %cst, dims = [] : (tensor<f32>) -> tensor<2x8x4xf32>
  %13 = stablehlo.select %11, %0, %12 : tensor<2x8x4xi1>, tensor<2x8x4xf32>
  %14 = stablehlo.dot_general %13, %w, contracting_dims = [2, 0] x [1, 0] : (tensor<2x8x4xf32>, tensor<2x4x6xf32>) -> tensor<8x6xf32>
  return %14 : tensor<8x6xf32>
}
// -----

// The lower bound is strict: a row at a group's start would be dropped, so
// this is not a ragged_dot.
// CHECK-LABEL: func @strict_lower_bound_stays
// CHECK-NOT: chlo.ragged_dot
// CHECK: stablehlo.dot_general
func.func @strict_lower_bound_stays(%x: tensor<8x4xf32>, %w: tensor<2x4x6xf32>, %s: tensor<2xi32>) -> tensor<8x6xf32> {
  %0 = stablehlo.broadcast_in_dim %x, dims = [1, 2] : (tensor<8x4xf32>) -> tensor<2x8x4xf32>
  %1 = stablehlo.iota dim = 1 : tensor<2x8x4xi32>
  %c = stablehlo.constant dense<0> : tensor<i32>
  %2 = "stablehlo.reduce_window"(%s, %c) <{padding = dense<[[1, 0]]> : tensor<1x2xi64>, window_dimensions = array<i64: 2>}> ({
  ^bb0(%a: tensor<i32>, %b: tensor<i32>):
    %sum = stablehlo.add %a, %b : tensor<i32>
    stablehlo.return %sum : tensor<i32>
  }) : (tensor<2xi32>, tensor<i32>) -> tensor<2xi32>
  %3 = stablehlo.broadcast_in_dim %c, dims = [] : (tensor<i32>) -> tensor<2xi32>
  %4 = stablehlo.slice %3 [0:1] : (tensor<2xi32>) -> tensor<1xi32>
  %5 = stablehlo.slice %2 [0:1] : (tensor<2xi32>) -> tensor<1xi32>
  %6 = stablehlo.concatenate %4, %5, dim = 0 : (tensor<1xi32>, tensor<1xi32>) -> tensor<2xi32>
  %7 = stablehlo.broadcast_in_dim %2, dims = [0] : (tensor<2xi32>) -> tensor<2x8x4xi32>
  %8 = stablehlo.broadcast_in_dim %6, dims = [0] : (tensor<2xi32>) -> tensor<2x8x4xi32>
  %9 = stablehlo.compare LT, %8, %1, SIGNED : (tensor<2x8x4xi32>, tensor<2x8x4xi32>) -> tensor<2x8x4xi1>
  %10 = stablehlo.compare LT, %1, %7, SIGNED : (tensor<2x8x4xi32>, tensor<2x8x4xi32>) -> tensor<2x8x4xi1>
  %11 = stablehlo.and %9, %10 : tensor<2x8x4xi1>
  %cst = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %12 = stablehlo.broadcast_in_dim %cst, dims = [] : (tensor<f32>) -> tensor<2x8x4xf32>
  %13 = stablehlo.select %11, %0, %12 : tensor<2x8x4xi1>, tensor<2x8x4xf32>
  %14 = stablehlo.dot_general %13, %w, contracting_dims = [2, 0] x [1, 0] : (tensor<2x8x4xf32>, tensor<2x4x6xf32>) -> tensor<8x6xf32>
  return %14 : tensor<8x6xf32>
}
// -----

// The exclusive bound is shifted by two: not the cumulative sizes.
// CHECK-LABEL: func @shifted_bounds_stay
// CHECK-NOT: chlo.ragged_dot
// CHECK: stablehlo.dot_general
func.func @shifted_bounds_stay(%x: tensor<8x4xf32>, %w: tensor<2x4x6xf32>, %s: tensor<2xi32>) -> tensor<8x6xf32> {
  %0 = stablehlo.broadcast_in_dim %x, dims = [1, 2] : (tensor<8x4xf32>) -> tensor<2x8x4xf32>
  %1 = stablehlo.iota dim = 1 : tensor<2x8x4xi32>
  %c = stablehlo.constant dense<0> : tensor<i32>
  %2 = "stablehlo.reduce_window"(%s, %c) <{padding = dense<[[1, 0]]> : tensor<1x2xi64>, window_dimensions = array<i64: 2>}> ({
  ^bb0(%a: tensor<i32>, %b: tensor<i32>):
    %sum = stablehlo.add %a, %b : tensor<i32>
    stablehlo.return %sum : tensor<i32>
  }) : (tensor<2xi32>, tensor<i32>) -> tensor<2xi32>
  %3 = stablehlo.broadcast_in_dim %c, dims = [] : (tensor<i32>) -> tensor<2xi32>
  %4 = stablehlo.slice %3 [0:1] : (tensor<2xi32>) -> tensor<1xi32>
  %5 = stablehlo.slice %2 [1:2] : (tensor<2xi32>) -> tensor<1xi32>
  %6 = stablehlo.concatenate %4, %5, dim = 0 : (tensor<1xi32>, tensor<1xi32>) -> tensor<2xi32>
  %7 = stablehlo.broadcast_in_dim %2, dims = [0] : (tensor<2xi32>) -> tensor<2x8x4xi32>
  %8 = stablehlo.broadcast_in_dim %6, dims = [0] : (tensor<2xi32>) -> tensor<2x8x4xi32>
  %9 = stablehlo.compare LE, %8, %1, SIGNED : (tensor<2x8x4xi32>, tensor<2x8x4xi32>) -> tensor<2x8x4xi1>
  %10 = stablehlo.compare LT, %1, %7, SIGNED : (tensor<2x8x4xi32>, tensor<2x8x4xi32>) -> tensor<2x8x4xi1>
  %11 = stablehlo.and %9, %10 : tensor<2x8x4xi1>
  %cst = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %12 = stablehlo.broadcast_in_dim %cst, dims = [] : (tensor<f32>) -> tensor<2x8x4xf32>
  %13 = stablehlo.select %11, %0, %12 : tensor<2x8x4xi1>, tensor<2x8x4xf32>
  %14 = stablehlo.dot_general %13, %w, contracting_dims = [2, 0] x [1, 0] : (tensor<2x8x4xf32>, tensor<2x4x6xf32>) -> tensor<8x6xf32>
  return %14 : tensor<8x6xf32>
}


// -----

// A dense top-1 mixture (every expert computed, relu experts, a one-hot
// gate, combined by an einsum over the experts) becomes one moe.layer.
// CHECK-LABEL: func @dense_relu_mixture
// CHECK: %[[Y:.*]], %{{.*}} = moe.layer %arg0, %{{.*}} ffn(%{{.*}}, %{{.*}}) {activation = #moe.activation<relu>, experts = [#moe.group<ffn, 3>], routing = #moe.routing<scoring = softmax>}
// CHECK: return %[[Y]]
func.func @dense_relu_mixture(%arg0: tensor<4x8xf32>, %arg1: tensor<8x3xf32>, %arg2: tensor<3x8x6xf32>, %arg3: tensor<3x6x8xf32>) -> (tensor<4x8xf32>) {
  %0 = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %1 = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %2 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0], precision = [DEFAULT, DEFAULT] : (tensor<4x8xf32>, tensor<8x3xf32>) -> tensor<4x3xf32>
  %3 = stablehlo.reduce(%2 init: %1) applies stablehlo.maximum across dimensions = [1] : (tensor<4x3xf32>, tensor<f32>) -> tensor<4xf32>
  %4 = stablehlo.broadcast_in_dim %1, dims = [] : (tensor<f32>) -> tensor<4xf32>
  %5 = stablehlo.maximum %4, %3 : tensor<4xf32>
  %6 = stablehlo.broadcast_in_dim %5, dims = [0] : (tensor<4xf32>) -> tensor<4x1xf32>
  %7 = stablehlo.broadcast_in_dim %6, dims = [0, 1] : (tensor<4x1xf32>) -> tensor<4x3xf32>
  %8 = stablehlo.subtract %2, %7 : tensor<4x3xf32>
  %9 = stablehlo.exponential %8 : tensor<4x3xf32>
  %10 = stablehlo.reduce(%9 init: %0) applies stablehlo.add across dimensions = [1] : (tensor<4x3xf32>, tensor<f32>) -> tensor<4xf32>
  %11 = stablehlo.broadcast_in_dim %10, dims = [0] : (tensor<4xf32>) -> tensor<4x1xf32>
  %12 = stablehlo.broadcast_in_dim %11, dims = [0, 1] : (tensor<4x1xf32>) -> tensor<4x3xf32>
  %13 = stablehlo.divide %9, %12 : tensor<4x3xf32>
  %values, %indices = chlo.top_k(%13, k = 1) : tensor<4x3xf32> -> (tensor<4x1xf32>, tensor<4x1xi32>)
  %14 = stablehlo.broadcast_in_dim %indices, dims = [0, 1] : (tensor<4x1xi32>) -> tensor<4x1x1xi32>
  %15 = stablehlo.iota dim = 2 : tensor<1x1x3xi32>
  %16 = stablehlo.broadcast_in_dim %14, dims = [0, 1, 2] : (tensor<4x1x1xi32>) -> tensor<4x1x3xi32>
  %17 = stablehlo.broadcast_in_dim %15, dims = [0, 1, 2] : (tensor<1x1x3xi32>) -> tensor<4x1x3xi32>
  %18 = stablehlo.compare  EQ, %16, %17,  SIGNED : (tensor<4x1x3xi32>, tensor<4x1x3xi32>) -> tensor<4x1x3xi1>
  %19 = stablehlo.convert %18 : (tensor<4x1x3xi1>) -> tensor<4x1x3xf32>
  %20 = stablehlo.broadcast_in_dim %values, dims = [0, 1] : (tensor<4x1xf32>) -> tensor<4x1x1xf32>
  %21 = stablehlo.broadcast_in_dim %20, dims = [0, 1, 2] : (tensor<4x1x1xf32>) -> tensor<4x1x3xf32>
  %22 = stablehlo.multiply %19, %21 : tensor<4x1x3xf32>
  %23 = stablehlo.reduce(%22 init: %0) applies stablehlo.add across dimensions = [1] : (tensor<4x1x3xf32>, tensor<f32>) -> tensor<4x3xf32>
  %24 = stablehlo.dot_general %arg0, %arg2, contracting_dims = [1] x [1], precision = [DEFAULT, DEFAULT] : (tensor<4x8xf32>, tensor<3x8x6xf32>) -> tensor<4x3x6xf32>
  %25 = stablehlo.broadcast_in_dim %0, dims = [] : (tensor<f32>) -> tensor<4x3x6xf32>
  %26 = stablehlo.maximum %24, %25 : tensor<4x3x6xf32>
  %27 = stablehlo.dot_general %arg3, %26, batching_dims = [0] x [1], contracting_dims = [1] x [2], precision = [DEFAULT, DEFAULT] : (tensor<3x6x8xf32>, tensor<4x3x6xf32>) -> tensor<3x8x4xf32>
  %28 = stablehlo.transpose %27, dims = [2, 0, 1] : (tensor<3x8x4xf32>) -> tensor<4x3x8xf32>
  %29 = stablehlo.dot_general %23, %28, batching_dims = [0] x [0], contracting_dims = [1] x [1], precision = [DEFAULT, DEFAULT] : (tensor<4x3xf32>, tensor<4x3x8xf32>) -> tensor<4x8xf32>
  return %29 : tensor<4x8xf32>
}

// -----

// Experts whose up projection adds one bias [F] shared by all: every expert's
// row of the layer's up bias is that bias, the down bias zeros.
// CHECK-LABEL: func @shared_bias_experts
// CHECK: %[[UB:.+]] = stablehlo.broadcast_in_dim %{{.+}}, dims = [0, 1] : (tensor<1x6xf32>) -> tensor<3x6xf32>
// CHECK: %[[DB:.+]] = stablehlo.constant dense<0.000000e+00> : tensor<3x8xf32>
// CHECK: moe.layer %arg0, %{{.+}} ffn(%{{.+}}, %{{.+}}) ffn_bias(%[[UB]], %[[DB]]) {activation = #moe.activation<relu>
func.func @shared_bias_experts(%arg0: tensor<4x8xf32>, %arg1: tensor<8x3xf32>, %arg2: tensor<3x8x6xf32>, %arg3: tensor<6xf32>, %arg4: tensor<3x6x8xf32>) -> (tensor<4x8xf32>) {
  %0 = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %1 = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %2 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0], precision = [DEFAULT, DEFAULT] : (tensor<4x8xf32>, tensor<8x3xf32>) -> tensor<4x3xf32>
  %3 = stablehlo.reduce(%2 init: %1) applies stablehlo.maximum across dimensions = [1] : (tensor<4x3xf32>, tensor<f32>) -> tensor<4xf32>
  %4 = stablehlo.broadcast_in_dim %1, dims = [] : (tensor<f32>) -> tensor<4xf32>
  %5 = stablehlo.maximum %4, %3 : tensor<4xf32>
  %6 = stablehlo.broadcast_in_dim %5, dims = [0] : (tensor<4xf32>) -> tensor<4x1xf32>
  %7 = stablehlo.broadcast_in_dim %6, dims = [0, 1] : (tensor<4x1xf32>) -> tensor<4x3xf32>
  %8 = stablehlo.subtract %2, %7 : tensor<4x3xf32>
  %9 = stablehlo.exponential %8 : tensor<4x3xf32>
  %10 = stablehlo.reduce(%9 init: %0) applies stablehlo.add across dimensions = [1] : (tensor<4x3xf32>, tensor<f32>) -> tensor<4xf32>
  %11 = stablehlo.broadcast_in_dim %10, dims = [0] : (tensor<4xf32>) -> tensor<4x1xf32>
  %12 = stablehlo.broadcast_in_dim %11, dims = [0, 1] : (tensor<4x1xf32>) -> tensor<4x3xf32>
  %13 = stablehlo.divide %9, %12 : tensor<4x3xf32>
  %values, %indices = chlo.top_k(%13, k = 1) : tensor<4x3xf32> -> (tensor<4x1xf32>, tensor<4x1xi32>)
  %14 = stablehlo.broadcast_in_dim %indices, dims = [0, 1] : (tensor<4x1xi32>) -> tensor<4x1x1xi32>
  %15 = stablehlo.iota dim = 2 : tensor<1x1x3xi32>
  %16 = stablehlo.broadcast_in_dim %14, dims = [0, 1, 2] : (tensor<4x1x1xi32>) -> tensor<4x1x3xi32>
  %17 = stablehlo.broadcast_in_dim %15, dims = [0, 1, 2] : (tensor<1x1x3xi32>) -> tensor<4x1x3xi32>
  %18 = stablehlo.compare  EQ, %16, %17,  SIGNED : (tensor<4x1x3xi32>, tensor<4x1x3xi32>) -> tensor<4x1x3xi1>
  %19 = stablehlo.convert %18 : (tensor<4x1x3xi1>) -> tensor<4x1x3xf32>
  %20 = stablehlo.broadcast_in_dim %values, dims = [0, 1] : (tensor<4x1xf32>) -> tensor<4x1x1xf32>
  %21 = stablehlo.broadcast_in_dim %20, dims = [0, 1, 2] : (tensor<4x1x1xf32>) -> tensor<4x1x3xf32>
  %22 = stablehlo.multiply %19, %21 : tensor<4x1x3xf32>
  %23 = stablehlo.reduce(%22 init: %0) applies stablehlo.add across dimensions = [1] : (tensor<4x1x3xf32>, tensor<f32>) -> tensor<4x3xf32>
  %24 = stablehlo.dot_general %arg0, %arg2, contracting_dims = [1] x [1], precision = [DEFAULT, DEFAULT] : (tensor<4x8xf32>, tensor<3x8x6xf32>) -> tensor<4x3x6xf32>
  %25 = stablehlo.broadcast_in_dim %arg3, dims = [2] : (tensor<6xf32>) -> tensor<1x1x6xf32>
  %26 = stablehlo.broadcast_in_dim %25, dims = [0, 1, 2] : (tensor<1x1x6xf32>) -> tensor<4x3x6xf32>
  %27 = stablehlo.add %24, %26 : tensor<4x3x6xf32>
  %28 = stablehlo.broadcast_in_dim %0, dims = [] : (tensor<f32>) -> tensor<4x3x6xf32>
  %29 = stablehlo.maximum %27, %28 : tensor<4x3x6xf32>
  %30 = stablehlo.dot_general %arg4, %29, batching_dims = [0] x [1], contracting_dims = [1] x [2], precision = [DEFAULT, DEFAULT] : (tensor<3x6x8xf32>, tensor<4x3x6xf32>) -> tensor<3x8x4xf32>
  %31 = stablehlo.transpose %30, dims = [2, 0, 1] : (tensor<3x8x4xf32>) -> tensor<4x3x8xf32>
  %32 = stablehlo.dot_general %23, %31, batching_dims = [0] x [0], contracting_dims = [1] x [1], precision = [DEFAULT, DEFAULT] : (tensor<4x3xf32>, tensor<4x3x8xf32>) -> tensor<4x8xf32>
  return %32 : tensor<4x8xf32>
}

// -----

// An addend per token and feature is no bias: a remark, the ops stay.
// REMARK: remark: expert mixture not raised to moe.layer: an expert projection adds something other than a bias per output feature; it stays as plain ops
// CHECK-LABEL: func @per_token_addend_stays
// CHECK-NOT: moe.layer
// CHECK: return
func.func @per_token_addend_stays(%arg0: tensor<4x8xf32>, %arg1: tensor<8x3xf32>, %arg2: tensor<3x8x6xf32>, %arg3: tensor<4x6xf32>, %arg4: tensor<3x6x8xf32>) -> (tensor<4x8xf32>) {
  %0 = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %1 = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %2 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0], precision = [DEFAULT, DEFAULT] : (tensor<4x8xf32>, tensor<8x3xf32>) -> tensor<4x3xf32>
  %3 = stablehlo.reduce(%2 init: %1) applies stablehlo.maximum across dimensions = [1] : (tensor<4x3xf32>, tensor<f32>) -> tensor<4xf32>
  %4 = stablehlo.broadcast_in_dim %1, dims = [] : (tensor<f32>) -> tensor<4xf32>
  %5 = stablehlo.maximum %4, %3 : tensor<4xf32>
  %6 = stablehlo.broadcast_in_dim %5, dims = [0] : (tensor<4xf32>) -> tensor<4x1xf32>
  %7 = stablehlo.broadcast_in_dim %6, dims = [0, 1] : (tensor<4x1xf32>) -> tensor<4x3xf32>
  %8 = stablehlo.subtract %2, %7 : tensor<4x3xf32>
  %9 = stablehlo.exponential %8 : tensor<4x3xf32>
  %10 = stablehlo.reduce(%9 init: %0) applies stablehlo.add across dimensions = [1] : (tensor<4x3xf32>, tensor<f32>) -> tensor<4xf32>
  %11 = stablehlo.broadcast_in_dim %10, dims = [0] : (tensor<4xf32>) -> tensor<4x1xf32>
  %12 = stablehlo.broadcast_in_dim %11, dims = [0, 1] : (tensor<4x1xf32>) -> tensor<4x3xf32>
  %13 = stablehlo.divide %9, %12 : tensor<4x3xf32>
  %values, %indices = chlo.top_k(%13, k = 1) : tensor<4x3xf32> -> (tensor<4x1xf32>, tensor<4x1xi32>)
  %14 = stablehlo.broadcast_in_dim %indices, dims = [0, 1] : (tensor<4x1xi32>) -> tensor<4x1x1xi32>
  %15 = stablehlo.iota dim = 2 : tensor<1x1x3xi32>
  %16 = stablehlo.broadcast_in_dim %14, dims = [0, 1, 2] : (tensor<4x1x1xi32>) -> tensor<4x1x3xi32>
  %17 = stablehlo.broadcast_in_dim %15, dims = [0, 1, 2] : (tensor<1x1x3xi32>) -> tensor<4x1x3xi32>
  %18 = stablehlo.compare  EQ, %16, %17,  SIGNED : (tensor<4x1x3xi32>, tensor<4x1x3xi32>) -> tensor<4x1x3xi1>
  %19 = stablehlo.convert %18 : (tensor<4x1x3xi1>) -> tensor<4x1x3xf32>
  %20 = stablehlo.broadcast_in_dim %values, dims = [0, 1] : (tensor<4x1xf32>) -> tensor<4x1x1xf32>
  %21 = stablehlo.broadcast_in_dim %20, dims = [0, 1, 2] : (tensor<4x1x1xf32>) -> tensor<4x1x3xf32>
  %22 = stablehlo.multiply %19, %21 : tensor<4x1x3xf32>
  %23 = stablehlo.reduce(%22 init: %0) applies stablehlo.add across dimensions = [1] : (tensor<4x1x3xf32>, tensor<f32>) -> tensor<4x3xf32>
  %24 = stablehlo.dot_general %arg0, %arg2, contracting_dims = [1] x [1], precision = [DEFAULT, DEFAULT] : (tensor<4x8xf32>, tensor<3x8x6xf32>) -> tensor<4x3x6xf32>
  %25 = stablehlo.broadcast_in_dim %arg3, dims = [0, 2] : (tensor<4x6xf32>) -> tensor<4x1x6xf32>
  %26 = stablehlo.broadcast_in_dim %25, dims = [0, 1, 2] : (tensor<4x1x6xf32>) -> tensor<4x3x6xf32>
  %27 = stablehlo.add %24, %26 : tensor<4x3x6xf32>
  %28 = stablehlo.broadcast_in_dim %0, dims = [] : (tensor<f32>) -> tensor<4x3x6xf32>
  %29 = stablehlo.maximum %27, %28 : tensor<4x3x6xf32>
  %30 = stablehlo.dot_general %arg4, %29, batching_dims = [0] x [1], contracting_dims = [1] x [2], precision = [DEFAULT, DEFAULT] : (tensor<3x6x8xf32>, tensor<4x3x6xf32>) -> tensor<3x8x4xf32>
  %31 = stablehlo.transpose %30, dims = [2, 0, 1] : (tensor<3x8x4xf32>) -> tensor<4x3x8xf32>
  %32 = stablehlo.dot_general %23, %31, batching_dims = [0] x [0], contracting_dims = [1] x [1], precision = [DEFAULT, DEFAULT] : (tensor<4x3xf32>, tensor<4x3x8xf32>) -> tensor<4x8xf32>
  return %32 : tensor<4x8xf32>
}
