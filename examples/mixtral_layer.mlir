// One Mixtral-8x7B MoE layer: hidden 4096, FFN 14336, 8 SwiGLU experts,
// softmax over the top-2 router logits. Tokens are a dynamic dimension.
// Decompose it with:  build/bin/moe-opt --moe-decompose examples/mixtral_layer.mlir
func.func @mixtral_moe(%x: tensor<?x4096xbf16>, %router: tensor<8x4096xbf16>,
                       %w_gate_up: tensor<8x28672x4096xbf16>,
                       %w_down: tensor<8x4096x14336xbf16>) -> tensor<?x4096xbf16> {
  %y, %logits = moe.layer %x, %router ffn(%w_gate_up, %w_down) {
      experts = [#moe.group<ffn, 8>],
      activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>}
    : (tensor<?x4096xbf16>, tensor<8x4096xbf16>, tensor<8x28672x4096xbf16>,
       tensor<8x4096x14336xbf16>) -> (tensor<?x4096xbf16>, tensor<?x8xf32>)
  return %y : tensor<?x4096xbf16>
}
