// moe-raise-stablehlo reads a stack of same-shaped terms summed over the
// stacking dim, jnp.stack(terms).sum(0), as the terms' Add chain. A stack
// reduced by another op, or summed over another dim, stays as it is.
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo | FileCheck %s

// CHECK-LABEL: func @stacked_sum
// CHECK-NOT: stablehlo.concatenate
// CHECK: %[[S:.*]] = stablehlo.add %arg0, %arg1 : tensor<4x8xf32>
// CHECK: %[[T:.*]] = stablehlo.add %[[S]], %arg2 : tensor<4x8xf32>
// CHECK: return %[[T]]
func.func @stacked_sum(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>, %c: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %a1 = stablehlo.broadcast_in_dim %a, dims = [1, 2] : (tensor<4x8xf32>) -> tensor<1x4x8xf32>
  %b1 = stablehlo.reshape %b : (tensor<4x8xf32>) -> tensor<1x4x8xf32>
  %c1 = stablehlo.broadcast_in_dim %c, dims = [1, 2] : (tensor<4x8xf32>) -> tensor<1x4x8xf32>
  %s = stablehlo.concatenate %a1, %b1, %c1, dim = 0 : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<3x4x8xf32>
  %zero = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %r = stablehlo.reduce(%s init: %zero) applies stablehlo.add across dimensions = [0] : (tensor<3x4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  return %r : tensor<4x8xf32>
}

// -----

// The maximum over the stack is not a sum.
// CHECK-LABEL: func @stacked_max
// CHECK: stablehlo.concatenate
// CHECK: stablehlo.reduce
func.func @stacked_max(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %a1 = stablehlo.broadcast_in_dim %a, dims = [1, 2] : (tensor<4x8xf32>) -> tensor<1x4x8xf32>
  %b1 = stablehlo.broadcast_in_dim %b, dims = [1, 2] : (tensor<4x8xf32>) -> tensor<1x4x8xf32>
  %s = stablehlo.concatenate %a1, %b1, dim = 0 : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<2x4x8xf32>
  %init = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %r = stablehlo.reduce(%s init: %init) applies stablehlo.maximum across dimensions = [0] : (tensor<2x4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  return %r : tensor<4x8xf32>
}

// -----

// Summed over the rows, not over the stack: stays.
// CHECK-LABEL: func @summed_over_rows
// CHECK: stablehlo.concatenate
// CHECK: stablehlo.reduce
func.func @summed_over_rows(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>) -> tensor<2x8xf32> {
  %a1 = stablehlo.broadcast_in_dim %a, dims = [1, 2] : (tensor<4x8xf32>) -> tensor<1x4x8xf32>
  %b1 = stablehlo.broadcast_in_dim %b, dims = [1, 2] : (tensor<4x8xf32>) -> tensor<1x4x8xf32>
  %s = stablehlo.concatenate %a1, %b1, dim = 0 : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<2x4x8xf32>
  %zero = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %r = stablehlo.reduce(%s init: %zero) applies stablehlo.add across dimensions = [1] : (tensor<2x4x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  return %r : tensor<2x8xf32>
}
