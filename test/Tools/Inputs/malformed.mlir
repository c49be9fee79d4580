// A function signature that never closes.
func.func @broken(%x: tensor<4x8xf32>,
                  %w: tensor<4x8xf32>
  return
}
