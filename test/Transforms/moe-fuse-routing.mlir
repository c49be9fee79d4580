// RUN: moe-opt %s --moe-fuse-routing --split-input-file | FileCheck %s

// Mixtral: router, top-k on the logits, softmax over the picks.
// CHECK-LABEL: func @mixtral_routing
// CHECK-SAME: (%[[X:[^:]+]]: tensor<?x64xf32>, %[[WR:[^:]+]]: tensor<8x64xf32>)
// CHECK: %[[W:.+]], %[[I:.+]], %[[Z:.+]] = moe.fused_routing(%[[X]], %[[WR]])
// CHECK: moe.router
// CHECK: moe.topk
// CHECK: moe.renormalize softmax
// CHECK: moe.yield
// CHECK: moe.dispatch %[[I]], %[[W]] experts = 8
// CHECK: return %{{.+}}, %[[Z]]
func.func @mixtral_routing(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>) -> (tensor<?xi32>, tensor<?x8xf32>) {
  %z = moe.router %x, %wr : (tensor<?x64xf32>, tensor<8x64xf32>) -> tensor<?x8xf32>
  %w, %i = moe.topk %z k = 2 : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %g = moe.renormalize softmax %w, %i : (tensor<?x2xf32>, tensor<?x2xi32>) -> tensor<?x2xf32>
  %rows, %off, %sr, %sw = moe.dispatch %i, %g experts = 8
    : (tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?xi32>, tensor<9xi32>, tensor<?x2xi32>, tensor<?x2xf32>)
  return %rows, %z : tensor<?xi32>, tensor<?x8xf32>
}

// -----

// MoE++: two-layer router and gating residual, softmax scores, renormalized.
// CHECK-LABEL: func @residual_routing
// CHECK: moe.fused_routing
// CHECK: moe.router {{.*}} hidden
// CHECK: moe.gating_residual
// CHECK: moe.score softmax
// CHECK: moe.topk
// CHECK: moe.renormalize sum
func.func @residual_routing(%x: tensor<8x16xf32>, %w2: tensor<8x64xf32>, %w1: tensor<64x16xf32>, %prev: tensor<8x8xf32>,
                            %g: tensor<8x8xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>) {
  %z0 = moe.router %x, %w2 hidden(%w1) : (tensor<8x16xf32>, tensor<8x64xf32>, tensor<64x16xf32>) -> tensor<8x8xf32>
  %z = moe.gating_residual %z0, %prev, %g : (tensor<8x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>) -> tensor<8x8xf32>
  %s = moe.score softmax %z : tensor<8x8xf32> -> tensor<8x8xf32>
  %w, %i = moe.topk %s k = 2 : (tensor<8x8xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %n = moe.renormalize sum %w, %i {skip = array<i64: 7>} : (tensor<8x2xf32>, tensor<8x2xi32>) -> tensor<8x2xf32>
  return %n, %i : tensor<8x2xf32>, tensor<8x2xi32>
}

// -----

// ReMoE: ReLU scores and threshold selection, no renormalization.
// CHECK-LABEL: func @threshold_routing
// CHECK: moe.fused_routing
// CHECK: moe.score relu
// CHECK: moe.threshold
// CHECK-NOT: moe.renormalize
func.func @threshold_routing(%x: tensor<8x16xf32>, %wr: tensor<4x16xf32>) -> (tensor<8x4xf32>, tensor<8x4xi32>) {
  %z = moe.router %x, %wr : (tensor<8x16xf32>, tensor<4x16xf32>) -> tensor<8x4xf32>
  %r = moe.score relu %z : tensor<8x4xf32> -> tensor<8x4xf32>
  %w, %i = moe.threshold %r max_k = 4 : (tensor<8x4xf32>) -> (tensor<8x4xf32>, tensor<8x4xi32>)
  return %w, %i : tensor<8x4xf32>, tensor<8x4xi32>
}

// -----

// Negative: the scores are needed outside the chain, so they must stay in memory.
// CHECK-LABEL: func @scores_escape
// CHECK-NOT: moe.fused_routing
// CHECK: moe.score softmax
func.func @scores_escape(%x: tensor<8x16xf32>, %wr: tensor<4x16xf32>) -> (tensor<8x4xf32>, tensor<8x2xi32>) {
  %z = moe.router %x, %wr : (tensor<8x16xf32>, tensor<4x16xf32>) -> tensor<8x4xf32>
  %s = moe.score softmax %z : tensor<8x4xf32> -> tensor<8x4xf32>
  %w, %i = moe.topk %s k = 2 : (tensor<8x4xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>)
  return %s, %i : tensor<8x4xf32>, tensor<8x2xi32>
}

// -----

// Negative: a selection whose scores do not come from a router.
// CHECK-LABEL: func @no_router
// CHECK-NOT: moe.fused_routing
func.func @no_router(%s: tensor<8x4xf32>) -> tensor<8x2xi32> {
  %w, %i = moe.topk %s k = 2 : (tensor<8x4xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>)
  return %i : tensor<8x2xi32>
}
