// RUN: moe-opt %s --moe-shard-experts="ranks=2" --split-input-file | FileCheck %s
// RUN: not moe-opt %s --moe-shard-experts="ranks=2 placement=balanced expert-loads=1,1,1,1,1,1,1,9 replicas=1" --split-input-file 2>&1 | FileCheck %s --check-prefix=REPLICAS

// A Switch-style capacity stays global: the local plan is dropless and each
// expert's owner keeps its first C rows (C from all ranks' tokens).
// CHECK-LABEL: func.func private @switch__rank0
// CHECK: moe.dispatch {{.*}} experts = 8 : (tensor<?x1xi32>, tensor<?x1xf32>) -> (tensor<?xi32>, tensor<9xi32>
// CHECK: moe.all_to_all_dispatch {{.*}} bounds = [0, 4, 8] rank = 0 {capacity = #moe.capacity<factor = 1.25, drop = position>, experts = 8 : i64, k = 1 : i64}
func.func @switch(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %up: tensor<8x128x64xf32>,
                  %down: tensor<8x64x128xf32>) -> tensor<?x64xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<relu>,
      routing = #moe.routing<scoring = softmax, k = 1>,
      capacity = #moe.capacity<factor = 1.25, drop = position>}
    : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x128x64xf32>, tensor<8x64x128xf32>)
    -> (tensor<?x64xf32>, tensor<?x8xf32>)
  return %y : tensor<?x64xf32>
}

// -----

// By weight: each row's gate weight travels with it; the owner keeps the
// C heaviest.
// CHECK-LABEL: func.func private @switch_probs__rank1
// CHECK: %[[ROWS:.+]], %[[OFF:.+]], %[[SR:.+]], %[[SW:.+]] = moe.dispatch
// CHECK: %[[W:.+]] = linalg.generic {{.*}} ins(%[[ROWS]] : tensor<?xi32>)
// CHECK: tensor.extract %[[SR]]
// CHECK: tensor.extract %[[SW]]
// CHECK: moe.all_to_all_dispatch %{{.+}}, %[[OFF]] weights(%[[W]]) bounds = [0, 4, 8] rank = 1 {capacity = #moe.capacity<factor = 1.25>, experts = 8 : i64, k = 1 : i64}
func.func @switch_probs(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %up: tensor<8x128x64xf32>,
                        %down: tensor<8x64x128xf32>) -> tensor<?x64xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<relu>,
      routing = #moe.routing<scoring = softmax, k = 1>,
      capacity = #moe.capacity<factor = 1.25, drop = probs>}
    : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x128x64xf32>, tensor<8x64x128xf32>)
    -> (tensor<?x64xf32>, tensor<?x8xf32>)
  return %y : tensor<?x64xf32>
}

// Replicas would split an expert's rows (and its capacity) over copies.
// REPLICAS: error: moe-shard-experts: a layer with a capacity is sharded with no replicas (the capacity is per expert, not per copy)
