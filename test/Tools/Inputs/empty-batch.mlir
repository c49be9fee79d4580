// Layers run on an empty batch (0 tokens): capacity C = 0, grouped routing,
// grouped top-k with a shared expert.
func.func @capacity(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x16x16xf32>, %down: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2>, capacity = #moe.capacity<factor = 1.25, drop = probs, pad = true>}
    : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x16x16xf32>, tensor<4x16x8xf32>) -> (tensor<?x16xf32>, tensor<?x4xf32>)
  return %y : tensor<?x16xf32>
}
func.func @grouped(%x: tensor<?x16xf32>, %wr: tensor<8x16xf32>, %b: tensor<8xf32>, %up: tensor<8x16x16xf32>, %down: tensor<8x16x8xf32>,
                   %su: tensor<16x16xf32>, %sd: tensor<16x8xf32>) -> tensor<?x16xf32> {
  %y, %z = moe.layer %x, %wr selection_bias(%b) ffn(%up, %down) shared(%su, %sd) {experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = sigmoid, k = 2, normalize = all, num_groups = 4, topk_groups = 2>}
    : (tensor<?x16xf32>, tensor<8x16xf32>, tensor<8xf32>, tensor<8x16x16xf32>, tensor<8x16x8xf32>, tensor<16x16xf32>, tensor<16x8xf32>) -> (tensor<?x16xf32>, tensor<?x8xf32>)
  return %y : tensor<?x16xf32>
}
func.func @group_routing(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x16x16xf32>, %down: tensor<4x16x16xf32>) -> tensor<?x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<linear>,
      routing = #moe.routing<scoring = softmax, k = 2, group_size = 8>}
    : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x16x16xf32>, tensor<4x16x16xf32>) -> (tensor<?x16xf32>, tensor<?x4xf32>)
  return %y : tensor<?x16xf32>
}
