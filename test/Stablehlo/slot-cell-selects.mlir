// moe-raise-stablehlo reads the experts' outputs selected into the (token,
// slot) cells their top-k ids name, one select per expert over zeros, and
// weighted by the top-k weights over the slots, as each output times its
// gate column sum_j where(idx[:, j] == e, w[:, j], 0). A chain missing an
// expert, or naming one twice, stays as it is.
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo | FileCheck %s

// CHECK-LABEL: func @every_expert_writes
// CHECK-NOT: stablehlo.select {{.*}} tensor<4x2x8xi1>
// CHECK: %[[W:.*]], %[[I:.*]] = chlo.top_k(%arg0, k = 2)
// CHECK: %[[M0:.*]] = stablehlo.select %{{.*}}, %[[W]], %{{.*}} : tensor<4x2xi1>, tensor<4x2xf32>
// CHECK: %[[G0:.*]] = stablehlo.reduce(%[[M0]] init: %{{.*}}) applies stablehlo.add across dimensions = [1]
// CHECK: %[[C0:.*]] = stablehlo.broadcast_in_dim %[[G0]], dims = [0] : (tensor<4xf32>) -> tensor<4x8xf32>
// CHECK: %[[T0:.*]] = stablehlo.multiply %[[C0]], %arg1
// CHECK: stablehlo.multiply %{{.*}}, %arg2
// CHECK: stablehlo.add %[[T0]]
// CHECK: stablehlo.multiply %{{.*}}, %arg3
// CHECK: %[[Y:.*]] = stablehlo.add
// CHECK-NOT: stablehlo.dot_general
// CHECK: return %[[Y]]
func.func @every_expert_writes(%s: tensor<4x3xf32>, %o0: tensor<4x8xf32>, %o1: tensor<4x8xf32>, %o2: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %w, %i = chlo.top_k(%s, k = 2) : tensor<4x3xf32> -> (tensor<4x2xf32>, tensor<4x2xi32>)
  %zero = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %cells = stablehlo.broadcast_in_dim %zero, dims = [] : (tensor<f32>) -> tensor<4x2x8xf32>
  %e0 = stablehlo.constant dense<0> : tensor<4x2xi32>
  %e1 = stablehlo.constant dense<1> : tensor<4x2xi32>
  %e2 = stablehlo.constant dense<2> : tensor<4x2xi32>
  %t0 = stablehlo.compare EQ, %i, %e0, SIGNED : (tensor<4x2xi32>, tensor<4x2xi32>) -> tensor<4x2xi1>
  %p0 = stablehlo.broadcast_in_dim %t0, dims = [0, 1] : (tensor<4x2xi1>) -> tensor<4x2x8xi1>
  %v0 = stablehlo.broadcast_in_dim %o0, dims = [0, 2] : (tensor<4x8xf32>) -> tensor<4x2x8xf32>
  %c0 = stablehlo.select %p0, %v0, %cells : tensor<4x2x8xi1>, tensor<4x2x8xf32>
  %t1 = stablehlo.compare EQ, %i, %e1, SIGNED : (tensor<4x2xi32>, tensor<4x2xi32>) -> tensor<4x2xi1>
  %p1 = stablehlo.broadcast_in_dim %t1, dims = [0, 1] : (tensor<4x2xi1>) -> tensor<4x2x8xi1>
  %v1 = stablehlo.broadcast_in_dim %o1, dims = [0, 2] : (tensor<4x8xf32>) -> tensor<4x2x8xf32>
  %c1 = stablehlo.select %p1, %v1, %c0 : tensor<4x2x8xi1>, tensor<4x2x8xf32>
  %t2 = stablehlo.compare EQ, %i, %e2, SIGNED : (tensor<4x2xi32>, tensor<4x2xi32>) -> tensor<4x2xi1>
  %p2 = stablehlo.broadcast_in_dim %t2, dims = [0, 1] : (tensor<4x2xi1>) -> tensor<4x2x8xi1>
  %v2 = stablehlo.broadcast_in_dim %o2, dims = [0, 2] : (tensor<4x8xf32>) -> tensor<4x2x8xf32>
  %c2 = stablehlo.select %p2, %v2, %c1 : tensor<4x2x8xi1>, tensor<4x2x8xf32>
  %y = stablehlo.dot_general %c2, %w, batching_dims = [0] x [0], contracting_dims = [1] x [1] : (tensor<4x2x8xf32>, tensor<4x2xf32>) -> tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}

// -----

// Expert 2 writes no cells: its picks keep zeros, not its output.
// CHECK-LABEL: func @expert_missing
// CHECK: stablehlo.select {{.*}} : tensor<4x2x8xi1>, tensor<4x2x8xf32>
// CHECK: stablehlo.dot_general
func.func @expert_missing(%s: tensor<4x3xf32>, %o0: tensor<4x8xf32>, %o1: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %w, %i = chlo.top_k(%s, k = 2) : tensor<4x3xf32> -> (tensor<4x2xf32>, tensor<4x2xi32>)
  %zero = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %cells = stablehlo.broadcast_in_dim %zero, dims = [] : (tensor<f32>) -> tensor<4x2x8xf32>
  %e0 = stablehlo.constant dense<0> : tensor<4x2xi32>
  %e1 = stablehlo.constant dense<1> : tensor<4x2xi32>
  %t0 = stablehlo.compare EQ, %i, %e0, SIGNED : (tensor<4x2xi32>, tensor<4x2xi32>) -> tensor<4x2xi1>
  %p0 = stablehlo.broadcast_in_dim %t0, dims = [0, 1] : (tensor<4x2xi1>) -> tensor<4x2x8xi1>
  %v0 = stablehlo.broadcast_in_dim %o0, dims = [0, 2] : (tensor<4x8xf32>) -> tensor<4x2x8xf32>
  %c0 = stablehlo.select %p0, %v0, %cells : tensor<4x2x8xi1>, tensor<4x2x8xf32>
  %t1 = stablehlo.compare EQ, %i, %e1, SIGNED : (tensor<4x2xi32>, tensor<4x2xi32>) -> tensor<4x2xi1>
  %p1 = stablehlo.broadcast_in_dim %t1, dims = [0, 1] : (tensor<4x2xi1>) -> tensor<4x2x8xi1>
  %v1 = stablehlo.broadcast_in_dim %o1, dims = [0, 2] : (tensor<4x8xf32>) -> tensor<4x2x8xf32>
  %c1 = stablehlo.select %p1, %v1, %c0 : tensor<4x2x8xi1>, tensor<4x2x8xf32>
  %y = stablehlo.dot_general %c1, %w, batching_dims = [0] x [0], contracting_dims = [1] x [1] : (tensor<4x2x8xf32>, tensor<4x2xf32>) -> tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}

// -----

// Expert 1 named twice (expert 2 never): the later write wins, not a sum.
// CHECK-LABEL: func @expert_twice
// CHECK: stablehlo.dot_general
func.func @expert_twice(%s: tensor<4x3xf32>, %o0: tensor<4x8xf32>, %o1: tensor<4x8xf32>, %o2: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %w, %i = chlo.top_k(%s, k = 2) : tensor<4x3xf32> -> (tensor<4x2xf32>, tensor<4x2xi32>)
  %zero = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %cells = stablehlo.broadcast_in_dim %zero, dims = [] : (tensor<f32>) -> tensor<4x2x8xf32>
  %e0 = stablehlo.constant dense<0> : tensor<4x2xi32>
  %e1 = stablehlo.constant dense<1> : tensor<4x2xi32>
  %t0 = stablehlo.compare EQ, %i, %e0, SIGNED : (tensor<4x2xi32>, tensor<4x2xi32>) -> tensor<4x2xi1>
  %p0 = stablehlo.broadcast_in_dim %t0, dims = [0, 1] : (tensor<4x2xi1>) -> tensor<4x2x8xi1>
  %v0 = stablehlo.broadcast_in_dim %o0, dims = [0, 2] : (tensor<4x8xf32>) -> tensor<4x2x8xf32>
  %c0 = stablehlo.select %p0, %v0, %cells : tensor<4x2x8xi1>, tensor<4x2x8xf32>
  %t1 = stablehlo.compare EQ, %i, %e1, SIGNED : (tensor<4x2xi32>, tensor<4x2xi32>) -> tensor<4x2xi1>
  %p1 = stablehlo.broadcast_in_dim %t1, dims = [0, 1] : (tensor<4x2xi1>) -> tensor<4x2x8xi1>
  %v1 = stablehlo.broadcast_in_dim %o1, dims = [0, 2] : (tensor<4x8xf32>) -> tensor<4x2x8xf32>
  %c1 = stablehlo.select %p1, %v1, %c0 : tensor<4x2x8xi1>, tensor<4x2x8xf32>
  %v2 = stablehlo.broadcast_in_dim %o2, dims = [0, 2] : (tensor<4x8xf32>) -> tensor<4x2x8xf32>
  %c2 = stablehlo.select %p1, %v2, %c1 : tensor<4x2x8xi1>, tensor<4x2x8xf32>
  %y = stablehlo.dot_general %c2, %w, batching_dims = [0] x [0], contracting_dims = [1] x [1] : (tensor<4x2x8xf32>, tensor<4x2xf32>) -> tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}
