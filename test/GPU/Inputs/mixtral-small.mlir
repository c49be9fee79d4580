// A Mixtral-shaped layer at small static sizes: 16 tokens, hidden 64, 8 SwiGLU experts, top-2.
func.func @small(%x: tensor<16x64xf32>, %router: tensor<8x64xf32>,
                 %w_gate_up: tensor<8x256x64xf32>, %w_down: tensor<8x64x128xf32>) -> tensor<16x64xf32> {
  %y, %logits = moe.layer %x, %router ffn(%w_gate_up, %w_down) {
      experts = [#moe.group<ffn, 8>],
      activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>}
    : (tensor<16x64xf32>, tensor<8x64xf32>, tensor<8x256x64xf32>, tensor<8x64x128xf32>) -> (tensor<16x64xf32>, tensor<16x8xf32>)
  return %y : tensor<16x64xf32>
}
