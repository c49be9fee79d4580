// Results that share a buffer: one value returned twice, and an argument
// returned as it is next to a computed value.
func.func @twice(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %c = arith.constant dense<2.0> : tensor<4xf32>
  %y = arith.mulf %x, %c : tensor<4xf32>
  return %y, %y : tensor<4xf32>, tensor<4xf32>
}
func.func @argument(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %c = arith.constant dense<3.0> : tensor<4xf32>
  %y = arith.mulf %x, %c : tensor<4xf32>
  return %x, %y : tensor<4xf32>, tensor<4xf32>
}
