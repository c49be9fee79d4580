// Tensors within the 2^48-byte limit (128 TiB each) that no machine holds.
func.func @argument(%a: tensor<8388608x4194304xf32>) -> tensor<8388608x4194304xf32> {
  %0 = math.exp %a : tensor<8388608x4194304xf32>
  return %0 : tensor<8388608x4194304xf32>
}

func.func @allocation(%a: tensor<4xf32>) -> tensor<8388608x4194304xf32> {
  %e = tensor.empty() : tensor<8388608x4194304xf32>
  %c = arith.constant 1.0 : f32
  %0 = linalg.fill ins(%c : f32) outs(%e : tensor<8388608x4194304xf32>) -> tensor<8388608x4194304xf32>
  return %0 : tensor<8388608x4194304xf32>
}
