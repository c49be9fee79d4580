func.func @shape_mismatch(%x: tensor<4x64xf32>, %wr: tensor<8x64xf32>, %up: tensor<8x8x32xf32>,
                          %down: tensor<8x64x4xf32>) -> tensor<4x64xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x64xf32>, tensor<8x64xf32>, tensor<8x8x32xf32>, tensor<8x64x4xf32>)
    -> (tensor<4x64xf32>, tensor<4x8xf32>)
  return %y : tensor<4x64xf32>
}
