// moe-raise-stablehlo: JAX's CPU expansion of lax.ragged_dot becomes
// chlo.ragged_dot again; masked dots that differ from it stay.
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo | FileCheck %s

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
