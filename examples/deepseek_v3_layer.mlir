// A DeepSeek-V3-style MoE layer with the hidden size reduced to 256 so it runs
// in a second on a laptop CPU: 256 routed experts (FFN 64), sigmoid scores
// with a selection bias, 8 groups of which 4 are kept, top-8 renormalized and
// scaled by 2.5, one shared expert.
//   build/bin/moe-run examples/deepseek_v3_layer.mlir --seed 1 --dynamic-size 32 --random-scale 0.1
func.func @deepseek_v3_moe(%x: tensor<?x256xf32>, %router: tensor<256x256xf32>, %bias: tensor<256xf32>,
                           %w_gate_up: tensor<256x128x256xf32>, %w_down: tensor<256x256x64xf32>,
                           %shared_gate_up: tensor<128x256xf32>, %shared_down: tensor<256x64xf32>)
    -> tensor<?x256xf32> {
  %y, %logits = moe.layer %x, %router selection_bias(%bias) ffn(%w_gate_up, %w_down)
      shared(%shared_gate_up, %shared_down) {
      experts = [#moe.group<ffn, 256>],
      activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = sigmoid, k = 8, normalize = all, scale = 2.5,
                             num_groups = 8, topk_groups = 4>}
    : (tensor<?x256xf32>, tensor<256x256xf32>, tensor<256xf32>, tensor<256x128x256xf32>,
       tensor<256x256x64xf32>, tensor<128x256xf32>, tensor<256x64xf32>)
    -> (tensor<?x256xf32>, tensor<?x256xf32>)
  return %y : tensor<?x256xf32>
}
