// Reads t[i] with i from the input: out of bounds for i outside [0, 4).
func.func @read_at_index(%t: tensor<4xf32>, %i: tensor<1xi64>) -> tensor<1xf32> {
  %c0 = arith.constant 0 : index
  %v = tensor.extract %i[%c0] : tensor<1xi64>
  %j = arith.index_cast %v : i64 to index
  %x = tensor.extract %t[%j] : tensor<4xf32>
  %r = tensor.from_elements %x : tensor<1xf32>
  return %r : tensor<1xf32>
}
