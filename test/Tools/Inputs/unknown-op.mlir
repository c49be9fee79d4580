func.func @unknown(%z: tensor<4x8xf32>) {
  %s = moe.frobnicate %z : tensor<4x8xf32>
  return
}
