// Experts with biases under expert parallelism: each rank takes its experts'
// rows of the bias stacks with their weights; placement=split refuses them.
// RUN: moe-opt %s --moe-shard-experts="ranks=2" 2>&1 | FileCheck %s
// RUN: not moe-opt %s --moe-shard-experts="ranks=2 placement=split" 2>&1 | FileCheck %s --check-prefix=SPLIT

// CHECK-LABEL: func.func private @biased__rank1
// CHECK-DAG: %[[UB:.+]] = tensor.extract_slice %arg4[2, 0] [2, 8] [1, 1] : tensor<4x8xf32> to tensor<2x8xf32>
// CHECK-DAG: %[[UP:.+]] = tensor.extract_slice %arg2[2, 0, 0] [2, 8, 16] [1, 1, 1]
// CHECK: %[[UBF:.+]] = tensor.collapse_shape %[[UB]]
// CHECK: %[[UBC:.+]] = tensor.expand_shape %[[UBF]]
// CHECK: %[[UPB:.+]] = tensor.concat dim(2) %[[UP]], %[[UBC]] : (tensor<2x8x16xf32>, tensor<2x8x1xf32>) -> tensor<2x8x17xf32>
// CHECK: moe.grouped_matmul %{{.+}}, %[[UPB]], %{{.+}} : (tensor<?x17xf32>, tensor<2x8x17xf32>, tensor<3xi32>) -> tensor<?x8xf32>
// CHECK: tensor.extract_slice %arg5[2, 0] [2, 16] [1, 1] : tensor<4x16xf32> to tensor<2x16xf32>
// CHECK: moe.grouped_matmul %{{.+}} : (tensor<?x9xf32>, tensor<2x16x9xf32>, tensor<3xi32>) -> tensor<?x16xf32>
// SPLIT-LABEL: error: moe-shard-experts: placement=split does not split expert biases; place whole experts (contiguous, round-robin or balanced)
func.func @biased(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x8x16xf32>, %down: tensor<4x16x8xf32>,
                  %bu: tensor<4x8xf32>, %bd: tensor<4x16xf32>) -> tensor<?x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) ffn_bias(%bu, %bd) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<gelu>,
      routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>, tensor<4x8xf32>, tensor<4x16xf32>)
    -> (tensor<?x16xf32>, tensor<?x4xf32>)
  return %y : tensor<?x16xf32>
}
