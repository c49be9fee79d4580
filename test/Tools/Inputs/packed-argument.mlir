// 4-bit packed expert weights as an argument (i8 bytes), one scale per row:
// the grouped matmul dequantises them in its kernel's loads.
func.func @packed(%q: tensor<4x24x32xi8>, %s: tensor<4x24xf32>, %x: tensor<?x64xf32>, %off: tensor<5xi32>)
    -> tensor<?x24xf32> {
  %w = moe.dequantize %q, %s {bits = 4, block_size = 0} : (tensor<4x24x32xi8>, tensor<4x24xf32>) -> tensor<4x24x64xf32>
  %y = moe.grouped_matmul %x, %w, %off : (tensor<?x64xf32>, tensor<4x24x64xf32>, tensor<5xi32>) -> tensor<?x24xf32>
  return %y : tensor<?x24xf32>
}
