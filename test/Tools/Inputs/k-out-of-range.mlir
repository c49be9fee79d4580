// Top-9 of 8 experts.
func.func @k_out_of_range(%x: tensor<4x16xf32>, %wr: tensor<8x16xf32>, %up: tensor<8x8x16xf32>,
                          %down: tensor<8x16x4xf32>) -> tensor<4x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 9>}
    : (tensor<4x16xf32>, tensor<8x16xf32>, tensor<8x8x16xf32>, tensor<8x16x4xf32>)
    -> (tensor<4x16xf32>, tensor<4x8xf32>)
  return %y : tensor<4x16xf32>
}
