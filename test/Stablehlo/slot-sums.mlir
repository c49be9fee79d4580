// moe-raise-stablehlo turns a sum over a top-k's slots written one term per
// slot into one sum over a slot dimension of the terms' expression lifted
// to [T, K, ...]: the form the gate matchers read. Sums over columns that
// are not a top-k's, terms that are not one expression, and three or more
// terms out of column order stay as they are.
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo | FileCheck %s

// w0 * (i0 == 3) + w1 * (i1 == 3): one expert's gate from both slots.
// CHECK-LABEL: func @expert_weight_from_two_slots
// CHECK: %[[V:.*]], %[[I:.*]] = chlo.top_k(%arg0, k = 2)
// CHECK: %[[E:.*]] = stablehlo.broadcast_in_dim %{{.*}}, dims = [] : (tensor<i32>) -> tensor<8x2xi32>
// CHECK: %[[EQ:.*]] = stablehlo.compare EQ, %[[I]], %[[E]]
// CHECK: %[[F:.*]] = stablehlo.convert %[[EQ]] : (tensor<8x2xi1>) -> tensor<8x2xf32>
// CHECK: %[[P:.*]] = stablehlo.multiply %[[V]], %[[F]] : tensor<8x2xf32>
// CHECK: %[[S:.*]] = stablehlo.reduce(%[[P]] init: %{{.*}}) applies stablehlo.add across dimensions = [1] : (tensor<8x2xf32>, tensor<f32>) -> tensor<8xf32>
// CHECK: return %[[S]]
func.func @expert_weight_from_two_slots(%s: tensor<8x4xf32>) -> tensor<8xf32> {
  %v, %i = chlo.top_k(%s, k = 2) : tensor<8x4xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %three = stablehlo.constant dense<3> : tensor<i32>
  %e = stablehlo.broadcast_in_dim %three, dims = [] : (tensor<i32>) -> tensor<8xi32>
  %v0s = stablehlo.slice %v [0:8, 0:1] : (tensor<8x2xf32>) -> tensor<8x1xf32>
  %v0 = stablehlo.reshape %v0s : (tensor<8x1xf32>) -> tensor<8xf32>
  %i0s = stablehlo.slice %i [0:8, 0:1] : (tensor<8x2xi32>) -> tensor<8x1xi32>
  %i0 = stablehlo.reshape %i0s : (tensor<8x1xi32>) -> tensor<8xi32>
  %v1s = stablehlo.slice %v [0:8, 1:2] : (tensor<8x2xf32>) -> tensor<8x1xf32>
  %v1 = stablehlo.reshape %v1s : (tensor<8x1xf32>) -> tensor<8xf32>
  %i1s = stablehlo.slice %i [0:8, 1:2] : (tensor<8x2xi32>) -> tensor<8x1xi32>
  %i1 = stablehlo.reshape %i1s : (tensor<8x1xi32>) -> tensor<8xi32>
  %eq0 = stablehlo.compare EQ, %i0, %e, SIGNED : (tensor<8xi32>, tensor<8xi32>) -> tensor<8xi1>
  %f0 = stablehlo.convert %eq0 : (tensor<8xi1>) -> tensor<8xf32>
  %t0 = stablehlo.multiply %v0, %f0 : tensor<8xf32>
  %eq1 = stablehlo.compare EQ, %i1, %e, SIGNED : (tensor<8xi32>, tensor<8xi32>) -> tensor<8xi1>
  %f1 = stablehlo.convert %eq1 : (tensor<8xi1>) -> tensor<8xf32>
  %t1 = stablehlo.multiply %v1, %f1 : tensor<8xf32>
  %sum = stablehlo.add %t1, %t0 : tensor<8xf32>
  return %sum : tensor<8xf32>
}

// -----

// A dense gate from per-slot one-hots, the weights divided by a per-row sum
// the terms share (broadcast along the slots).
// CHECK-LABEL: func @dense_gate_from_slot_one_hots
// CHECK: %[[V:.*]], %[[I:.*]] = chlo.top_k(%arg0, k = 2)
// CHECK: %[[D:.*]] = stablehlo.broadcast_in_dim %arg1, dims = [0] : (tensor<8xf32>) -> tensor<8x2xf32>
// CHECK: %[[W:.*]] = stablehlo.divide %[[V]], %[[D]] : tensor<8x2xf32>
// CHECK: stablehlo.broadcast_in_dim %[[W]], dims = [0, 1] : (tensor<8x2xf32>) -> tensor<8x2x4xf32>
// CHECK: stablehlo.broadcast_in_dim %[[I]], dims = [0, 1] : (tensor<8x2xi32>) -> tensor<8x2x4xi32>
// CHECK: stablehlo.broadcast_in_dim %{{.*}}, dims = [0, 2] : (tensor<8x4xi32>) -> tensor<8x2x4xi32>
// CHECK: %[[G:.*]] = stablehlo.reduce(%{{.*}} init: %{{.*}}) applies stablehlo.add across dimensions = [1] : (tensor<8x2x4xf32>, tensor<f32>) -> tensor<8x4xf32>
// CHECK: return %[[G]]
func.func @dense_gate_from_slot_one_hots(%s: tensor<8x4xf32>, %d: tensor<8xf32>) -> tensor<8x4xf32> {
  %v, %i = chlo.top_k(%s, k = 2) : tensor<8x4xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %iota = stablehlo.iota dim = 1 : tensor<8x4xi32>
  %v0s = stablehlo.slice %v [0:8, 0:1] : (tensor<8x2xf32>) -> tensor<8x1xf32>
  %v0 = stablehlo.reshape %v0s : (tensor<8x1xf32>) -> tensor<8xf32>
  %i0s = stablehlo.slice %i [0:8, 0:1] : (tensor<8x2xi32>) -> tensor<8x1xi32>
  %i0 = stablehlo.reshape %i0s : (tensor<8x1xi32>) -> tensor<8xi32>
  %v1s = stablehlo.slice %v [0:8, 1:2] : (tensor<8x2xf32>) -> tensor<8x1xf32>
  %v1 = stablehlo.reshape %v1s : (tensor<8x1xf32>) -> tensor<8xf32>
  %i1s = stablehlo.slice %i [0:8, 1:2] : (tensor<8x2xi32>) -> tensor<8x1xi32>
  %i1 = stablehlo.reshape %i1s : (tensor<8x1xi32>) -> tensor<8xi32>
  %w0 = stablehlo.divide %v0, %d : tensor<8xf32>
  %w0b = stablehlo.broadcast_in_dim %w0, dims = [0] : (tensor<8xf32>) -> tensor<8x4xf32>
  %i0b = stablehlo.broadcast_in_dim %i0, dims = [0] : (tensor<8xi32>) -> tensor<8x4xi32>
  %h0 = stablehlo.compare EQ, %i0b, %iota, SIGNED : (tensor<8x4xi32>, tensor<8x4xi32>) -> tensor<8x4xi1>
  %m0 = stablehlo.convert %h0 : (tensor<8x4xi1>) -> tensor<8x4xf32>
  %t0 = stablehlo.multiply %w0b, %m0 : tensor<8x4xf32>
  %w1 = stablehlo.divide %v1, %d : tensor<8xf32>
  %w1b = stablehlo.broadcast_in_dim %w1, dims = [0] : (tensor<8xf32>) -> tensor<8x4xf32>
  %i1b = stablehlo.broadcast_in_dim %i1, dims = [0] : (tensor<8xi32>) -> tensor<8x4xi32>
  %h1 = stablehlo.compare EQ, %i1b, %iota, SIGNED : (tensor<8x4xi32>, tensor<8x4xi32>) -> tensor<8x4xi1>
  %m1 = stablehlo.convert %h1 : (tensor<8x4xi1>) -> tensor<8x4xf32>
  %t1 = stablehlo.multiply %w1b, %m1 : tensor<8x4xf32>
  %gate = stablehlo.add %t0, %t1 : tensor<8x4xf32>
  return %gate : tensor<8x4xf32>
}

// -----

// Columns of a tensor that is no top-k's: the sum stays.
// CHECK-LABEL: func @columns_of_data_stay
// CHECK-NOT: stablehlo.reduce
// CHECK: stablehlo.add
func.func @columns_of_data_stay(%a: tensor<8x2xf32>) -> tensor<8xf32> {
  %c0s = stablehlo.slice %a [0:8, 0:1] : (tensor<8x2xf32>) -> tensor<8x1xf32>
  %c0 = stablehlo.reshape %c0s : (tensor<8x1xf32>) -> tensor<8xf32>
  %c1s = stablehlo.slice %a [0:8, 1:2] : (tensor<8x2xf32>) -> tensor<8x1xf32>
  %c1 = stablehlo.reshape %c1s : (tensor<8x1xf32>) -> tensor<8xf32>
  %sum = stablehlo.add %c0, %c1 : tensor<8xf32>
  return %sum : tensor<8xf32>
}

// -----

// Three slots added out of column order would round differently: the sum
// stays; so do terms that are not one expression (the second is squared).
// CHECK-LABEL: func @three_slots_out_of_order_stay
// CHECK-NOT: stablehlo.reduce
// CHECK: return
func.func @three_slots_out_of_order_stay(%s: tensor<8x4xf32>) -> (tensor<8xf32>, tensor<8xf32>) {
  %v, %i = chlo.top_k(%s, k = 3) : tensor<8x4xf32> -> (tensor<8x3xf32>, tensor<8x3xi32>)
  %a = stablehlo.slice %v [0:8, 0:1] : (tensor<8x3xf32>) -> tensor<8x1xf32>
  %b = stablehlo.slice %v [0:8, 1:2] : (tensor<8x3xf32>) -> tensor<8x1xf32>
  %c = stablehlo.slice %v [0:8, 2:3] : (tensor<8x3xf32>) -> tensor<8x1xf32>
  %a1 = stablehlo.reshape %a : (tensor<8x1xf32>) -> tensor<8xf32>
  %b1 = stablehlo.reshape %b : (tensor<8x1xf32>) -> tensor<8xf32>
  %c1 = stablehlo.reshape %c : (tensor<8x1xf32>) -> tensor<8xf32>
  %ac = stablehlo.add %a1, %c1 : tensor<8xf32>
  %acb = stablehlo.add %ac, %b1 : tensor<8xf32>
  %b2 = stablehlo.multiply %b1, %b1 : tensor<8xf32>
  %ab = stablehlo.add %a1, %b2 : tensor<8xf32>
  %abc = stablehlo.add %ab, %c1 : tensor<8xf32>
  return %acb, %abc : tensor<8xf32>, tensor<8xf32>
}
