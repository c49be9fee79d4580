// Four MoE layers with dynamic tokens and residual adds; layers 0, 1 and 3
// are equal (moe-share-layers shares them), layer 2 selects one expert.
func.func @main(%x: tensor<?x32xf32>, %wr0: tensor<4x32xf32>, %u0: tensor<4x128x32xf32>, %d0: tensor<4x32x64xf32>,
                %wr1: tensor<4x32xf32>, %u1: tensor<4x128x32xf32>, %d1: tensor<4x32x64xf32>,
                %wr2: tensor<4x32xf32>, %u2: tensor<4x128x32xf32>, %d2: tensor<4x32x64xf32>,
                %wr3: tensor<4x32xf32>, %u3: tensor<4x128x32xf32>, %d3: tensor<4x32x64xf32>) -> tensor<?x32xf32> {
  %y0, %l0 = moe.layer %x, %wr0 ffn(%u0, %d0) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<?x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<?x32xf32>, tensor<?x4xf32>)
  %r0 = arith.addf %x, %y0 : tensor<?x32xf32>
  %y1, %l1 = moe.layer %r0, %wr1 ffn(%u1, %d1) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<?x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<?x32xf32>, tensor<?x4xf32>)
  %r1 = arith.addf %r0, %y1 : tensor<?x32xf32>
  %y2, %l2 = moe.layer %r1, %wr2 ffn(%u2, %d2) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 1>} : (tensor<?x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<?x32xf32>, tensor<?x4xf32>)
  %r2 = arith.addf %r1, %y2 : tensor<?x32xf32>
  %y3, %l3 = moe.layer %r2, %wr3 ffn(%u3, %d3) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<?x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<?x32xf32>, tensor<?x4xf32>)
  %r3 = arith.addf %r2, %y3 : tensor<?x32xf32>
  return %r3 : tensor<?x32xf32>
}
