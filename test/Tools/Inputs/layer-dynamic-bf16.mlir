// A Qwen2-MoE-style layer in bf16 with a dynamic token count: 8 SwiGLU
// experts, softmax top-2, a sigmoid-gated shared expert.
func.func @qwen2_moe(%x: tensor<?x64xbf16>, %router: tensor<8x64xbf16>,
                     %w_gate_up: tensor<8x64x64xbf16>, %w_down: tensor<8x64x32xbf16>,
                     %s_gate_up: tensor<96x64xbf16>, %s_down: tensor<64x48xbf16>,
                     %s_gate: tensor<1x64xbf16>) -> tensor<?x64xbf16> {
  %y, %logits = moe.layer %x, %router ffn(%w_gate_up, %w_down)
      shared(%s_gate_up, %s_down) shared_gate(%s_gate) {
      experts = [#moe.group<ffn, 8>],
      activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x64x64xbf16>, tensor<8x64x32xbf16>,
       tensor<96x64xbf16>, tensor<64x48xbf16>, tensor<1x64xbf16>) -> (tensor<?x64xbf16>, tensor<?x8xf32>)
  return %y : tensor<?x64xbf16>
}
