// "sparse" is no expert kind.
func.func @unknown_kind(%x: tensor<4x16xf32>, %wr: tensor<8x16xf32>, %up: tensor<8x8x16xf32>,
                        %down: tensor<8x16x4xf32>) -> tensor<4x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<sparse, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x16xf32>, tensor<8x16xf32>, tensor<8x8x16xf32>, tensor<8x16x4xf32>)
    -> (tensor<4x16xf32>, tensor<4x8xf32>)
  return %y : tensor<4x16xf32>
}
