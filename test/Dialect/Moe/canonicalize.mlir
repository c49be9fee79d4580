// RUN: moe-opt %s --canonicalize --split-input-file | FileCheck %s

// Softmax over a single slot is exactly 1 (times the scale).
// CHECK-LABEL: func @renormalize_softmax_one_slot
// CHECK: %[[C:.+]] = arith.constant 2.500000e+00 : f32
// CHECK: %[[D:.+]] = tensor.dim
// CHECK: %[[S:.+]] = tensor.splat %[[C]][%[[D]]] : tensor<?x1xf32>
// CHECK-NOT: moe.renormalize
// CHECK: return %[[S]]
func.func @renormalize_softmax_one_slot(%z: tensor<?x8xf32>) -> tensor<?x1xf32> {
  %w, %i = moe.topk %z k = 1 : (tensor<?x8xf32>) -> (tensor<?x1xf32>, tensor<?x1xi32>)
  %g = moe.renormalize softmax %w, %i {scale = 2.5 : f64} : (tensor<?x1xf32>, tensor<?x1xi32>) -> tensor<?x1xf32>
  return %g : tensor<?x1xf32>
}

// -----

// w / w for the top-1 softmax probability (at least 1/E, never 0) is exactly 1.
// CHECK-LABEL: func @renormalize_sum_top1_softmax
// CHECK: %[[C:.+]] = arith.constant dense<1.000000e+00> : tensor<4x1xf32>
// CHECK: return %[[C]]
func.func @renormalize_sum_top1_softmax(%z: tensor<4x8xf32>) -> tensor<4x1xf32> {
  %p = moe.score softmax %z : tensor<4x8xf32> -> tensor<4x8xf32>
  %w, %i = moe.topk %p k = 1 : (tensor<4x8xf32>) -> (tensor<4x1xf32>, tensor<4x1xi32>)
  %g = moe.renormalize sum %w, %i : (tensor<4x1xf32>, tensor<4x1xi32>) -> tensor<4x1xf32>
  return %g : tensor<4x1xf32>
}

// -----

// Negative: a sigmoid weight can be 0, and 0 / 0 renormalizes to 0, not 1.
// CHECK-LABEL: func @renormalize_sum_top1_sigmoid
// CHECK: moe.renormalize sum
func.func @renormalize_sum_top1_sigmoid(%z: tensor<4x8xf32>) -> tensor<4x1xf32> {
  %s = moe.score sigmoid %z : tensor<4x8xf32> -> tensor<4x8xf32>
  %w, %i = moe.topk %s k = 1 : (tensor<4x8xf32>) -> (tensor<4x1xf32>, tensor<4x1xi32>)
  %g = moe.renormalize sum %w, %i : (tensor<4x1xf32>, tensor<4x1xi32>) -> tensor<4x1xf32>
  return %g : tensor<4x1xf32>
}

// -----

// Negative: a skipped expert gets weight 0, so the result is not a constant.
// CHECK-LABEL: func @renormalize_one_slot_with_skip
// CHECK: moe.renormalize softmax
func.func @renormalize_one_slot_with_skip(%z: tensor<4x8xf32>) -> tensor<4x1xf32> {
  %w, %i = moe.topk %z k = 1 : (tensor<4x8xf32>) -> (tensor<4x1xf32>, tensor<4x1xi32>)
  %g = moe.renormalize softmax %w, %i {skip = array<i64: 7>} : (tensor<4x1xf32>, tensor<4x1xi32>) -> tensor<4x1xf32>
  return %g : tensor<4x1xf32>
}

// -----

// Negative: threshold selection can leave the slot empty (index -1).
// CHECK-LABEL: func @renormalize_one_slot_maybe_empty
// CHECK: moe.renormalize softmax
func.func @renormalize_one_slot_maybe_empty(%z: tensor<4x8xf32>) -> tensor<4x1xf32> {
  %w, %i = moe.threshold %z max_k = 1 : (tensor<4x8xf32>) -> (tensor<4x1xf32>, tensor<4x1xi32>)
  %g = moe.renormalize softmax %w, %i : (tensor<4x1xf32>, tensor<4x1xi32>) -> tensor<4x1xf32>
  return %g : tensor<4x1xf32>
}

// -----

// Negative: two slots per token are renormalized for real.
// CHECK-LABEL: func @renormalize_two_slots
// CHECK: moe.renormalize softmax
func.func @renormalize_two_slots(%z: tensor<4x8xf32>) -> tensor<4x2xf32> {
  %w, %i = moe.topk %z k = 2 : (tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
  %g = moe.renormalize softmax %w, %i : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x2xf32>
  return %g : tensor<4x2xf32>
}

// -----

// The linear activation is the identity.
// CHECK-LABEL: func @activation_linear
// CHECK-SAME: (%[[H:.+]]: tensor<8x4xf32>)
// CHECK-NEXT: return %[[H]]
func.func @activation_linear(%h: tensor<8x4xf32>) -> tensor<8x4xf32> {
  %a = moe.activation linear %h : tensor<8x4xf32> -> tensor<8x4xf32>
  return %a : tensor<8x4xf32>
}

// -----

// Negative: other activations stay.
// CHECK-LABEL: func @activation_relu
// CHECK: moe.activation relu
func.func @activation_relu(%h: tensor<8x4xf32>) -> tensor<8x4xf32> {
  %a = moe.activation relu %h : tensor<8x4xf32> -> tensor<8x4xf32>
  return %a : tensor<8x4xf32>
}

// -----

// CHECK-LABEL: func @activation_relu2
// CHECK: moe.activation relu2
func.func @activation_relu2(%h: tensor<8x4xf32>) -> tensor<8x4xf32> {
  %a = moe.activation relu2 %h : tensor<8x4xf32> -> tensor<8x4xf32>
  return %a : tensor<8x4xf32>
}
