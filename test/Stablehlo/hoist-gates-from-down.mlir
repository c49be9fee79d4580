// moe-raise-stablehlo rewrites a routing gate applied to the experts'
// activations before a down projection over (expert, ffn) at once, as a
// three-operand einsum writes it, into the down projection per expert and
// then the gate-weighted sum over the experts, the form the matchers read.
// A weight that is not read from a top-k (no routing gate) keeps its order.
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo 2>/dev/null | FileCheck %s

// einsum('te,tef,efh->th'): the gate and h batched (dot_general, nothing
// contracted), then contracted with w2 over (e, f).
// CHECK-LABEL: func @gate_batched_with_h
// CHECK: %[[O:.*]] = stablehlo.dot_general %arg2, %arg3, batching_dims = [1] x [0], contracting_dims = [2] x [1] : (tensor<4x3x5xf32>, tensor<3x5x6xf32>) -> tensor<3x4x6xf32>
// CHECK: %[[Y:.*]] = stablehlo.dot_general %{{.*}}, %[[O]], batching_dims = [0] x [1], contracting_dims = [1] x [0] : (tensor<4x3xf32>, tensor<3x4x6xf32>) -> tensor<4x6xf32>
// CHECK: return %[[Y]]
func.func @gate_batched_with_h(%logits: tensor<4x3xf32>, %unused: tensor<4x3xf32>, %h: tensor<4x3x5xf32>,
                               %w2: tensor<3x5x6xf32>) -> tensor<4x6xf32> {
  %v, %i = chlo.top_k(%logits, k = 3) : tensor<4x3xf32> -> (tensor<4x3xf32>, tensor<4x3xi32>)
  %p = stablehlo.dot_general %v, %h, batching_dims = [0, 1] x [0, 1] : (tensor<4x3xf32>, tensor<4x3x5xf32>) -> tensor<4x3x5xf32>
  %y = stablehlo.dot_general %p, %w2, contracting_dims = [1, 2] x [0, 1] : (tensor<4x3x5xf32>, tensor<3x5x6xf32>) -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}

// -----

// The gate broadcast along the FFN dim and multiplied, on [B, S] tokens.
// CHECK-LABEL: func @gate_broadcast_times_h
// CHECK: %[[O:.*]] = stablehlo.dot_general %arg1, %arg2, batching_dims = [2] x [0], contracting_dims = [3] x [1] : (tensor<2x4x3x5xf32>, tensor<3x5x6xf32>) -> tensor<3x2x4x6xf32>
// CHECK: %[[Y:.*]] = stablehlo.dot_general %{{.*}}, %[[O]], batching_dims = [0, 1] x [1, 2], contracting_dims = [2] x [0] : (tensor<2x4x3xf32>, tensor<3x2x4x6xf32>) -> tensor<2x4x6xf32>
// CHECK: return %[[Y]]
func.func @gate_broadcast_times_h(%logits: tensor<2x4x3xf32>, %h: tensor<2x4x3x5xf32>, %w2: tensor<3x5x6xf32>)
    -> tensor<2x4x6xf32> {
  %v, %i = chlo.top_k(%logits, k = 3) : tensor<2x4x3xf32> -> (tensor<2x4x3xf32>, tensor<2x4x3xi32>)
  %g = stablehlo.broadcast_in_dim %v, dims = [0, 1, 2] : (tensor<2x4x3xf32>) -> tensor<2x4x3x5xf32>
  %p = stablehlo.multiply %g, %h : tensor<2x4x3x5xf32>
  %y = stablehlo.dot_general %p, %w2, contracting_dims = [2, 3] x [0, 1] : (tensor<2x4x3x5xf32>, tensor<3x5x6xf32>) -> tensor<2x4x6xf32>
  return %y : tensor<2x4x6xf32>
}

// -----

// A weight that no top-k produced: the contraction keeps its order.
// CHECK-LABEL: func @plain_weight_stays
// CHECK: %[[P:.*]] = stablehlo.dot_general %arg0, %arg1, batching_dims = [0, 1] x [0, 1]
// CHECK: stablehlo.dot_general %[[P]], %arg2, contracting_dims = [1, 2] x [0, 1]
func.func @plain_weight_stays(%w: tensor<4x3xf32>, %h: tensor<4x3x5xf32>, %w2: tensor<3x5x6xf32>) -> tensor<4x6xf32> {
  %p = stablehlo.dot_general %w, %h, batching_dims = [0, 1] x [0, 1] : (tensor<4x3xf32>, tensor<4x3x5xf32>) -> tensor<4x3x5xf32>
  %y = stablehlo.dot_general %p, %w2, contracting_dims = [1, 2] x [0, 1] : (tensor<4x3x5xf32>, tensor<3x5x6xf32>) -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}
