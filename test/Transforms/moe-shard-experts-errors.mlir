// What moe-shard-experts refuses, each with a clear error.
// RUN: moe-opt %s --moe-shard-experts="ranks=4" --split-input-file -verify-diagnostics
// RUN: not moe-opt %s --moe-shard-experts="ranks=2 placement=diagonal" 2>&1 | FileCheck %s --check-prefix=POLICY
// RUN: not moe-opt %s --moe-shard-experts="ranks=2 placement=balanced" --split-input-file 2>&1 | FileCheck %s --check-prefix=LOADS
// RUN: not moe-opt %s --moe-shard-experts="ranks=2 expert-loads=1,2" --split-input-file 2>&1 | FileCheck %s --check-prefix=COUNT
// RUN: not moe-opt %s --moe-shard-experts="ranks=0" 2>&1 | FileCheck %s --check-prefix=ZERO
// RUN: not moe-opt %s --moe-shard-experts="ranks=2 replicas=1" --split-input-file 2>&1 | FileCheck %s --check-prefix=REPPOLICY
// RUN: not moe-opt %s --moe-shard-experts="ranks=2 placement=balanced expert-loads=1,2,3 replicas=4" --split-input-file 2>&1 | FileCheck %s --check-prefix=REPMANY
// RUN: not moe-opt %s --moe-shard-experts="ranks=2 placement=split replicas=1" --split-input-file 2>&1 | FileCheck %s --check-prefix=REPSPLIT

// POLICY-LABEL: error: moe-shard-experts: unknown placement 'diagonal' (contiguous, round-robin, balanced or split)
// LOADS-LABEL: error: moe-shard-experts: placement=balanced needs one load per expert (3), got 0
// COUNT-LABEL: error: moe-shard-experts: expert-loads has 2 values; this layer has 3 FFN experts and the program 3 over 1 layers
// ZERO-LABEL: error: moe-shard-experts: ranks must be at least 1, got 0
// REPPOLICY-LABEL: error: moe-shard-experts: replicated experts are placed by placement=balanced (on a routing profile)
// REPSPLIT-LABEL: error: moe-shard-experts: placement=split puts every expert on every rank already: no replicas
// REPMANY-LABEL: error: moe-shard-experts: 4 replicas of 3 experts on 2 ranks: at most one copy of an expert per rank, so at most 3 replicas

// A global capacity is kept by each expert's owner: Rectify-Router's
// rectification moves dropped slots on the token's rank, which never sees
// the drops.
func.func @capacity(%x: tensor<16x64xf32>, %wr: tensor<8x64xf32>, %up: tensor<8x256x64xf32>,
                    %down: tensor<8x64x128xf32>) -> tensor<16x64xf32> {
  // expected-error @+1 {{moe-shard-experts: a layer with a capacity is sharded with no Rectify-Router rectification}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2>,
      capacity = #moe.capacity<factor = 1.0, drop = slot_position, pad = true, rectify = intra_device, experts_per_device = 2>}
    : (tensor<16x64xf32>, tensor<8x64xf32>, tensor<8x256x64xf32>, tensor<8x64x128xf32>)
    -> (tensor<16x64xf32>, tensor<16x8xf32>)
  return %y : tensor<16x64xf32>
}

// -----

// More ranks than FFN experts (zero-computation experts are not placed).
func.func @too_many_ranks(%x: tensor<16x64xf32>, %wr: tensor<4x64xf32>, %up: tensor<3x256x64xf32>,
                          %down: tensor<3x64x128xf32>) -> tensor<16x64xf32> {
  // expected-error @+1 {{moe-shard-experts: 4 ranks for 3 FFN experts: a rank would own no expert; use at most 3 ranks, or replicate hot experts (placement=balanced with replicas), or split every expert over the ranks (placement=split)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 3>, #moe.group<zero, 1>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<16x64xf32>, tensor<4x64xf32>, tensor<3x256x64xf32>, tensor<3x64x128xf32>)
    -> (tensor<16x64xf32>, tensor<16x4xf32>)
  return %y : tensor<16x64xf32>
}

// -----

// Nothing to shard.
// expected-error @below {{moe-shard-experts: the program has no moe.layer}}
module {
  func.func @dense(%x: tensor<16x64xf32>) -> tensor<16x64xf32> {
    return %x : tensor<16x64xf32>
  }
}
