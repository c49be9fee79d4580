// RUN: moe-opt %s --moe-read-only-arguments --split-input-file | FileCheck %s

// Tensor arguments of a public function become read-only; others stay.
// CHECK-LABEL: func.func @public_layer
// CHECK-SAME: %{{.*}}: tensor<4xf32> {bufferization.writable = false}
// CHECK-SAME: %{{.*}}: index,
// CHECK-SAME: %{{.*}}: tensor<?x4xbf16> {bufferization.writable = false}
func.func @public_layer(%x: tensor<4xf32>, %n: index, %w: tensor<?x4xbf16>) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}

// -----

// Negative: private functions and declarations are left alone.
// CHECK-LABEL: func.func private @helper
// CHECK-NOT: bufferization.writable
// CHECK: func.func private @external
// CHECK-NOT: bufferization.writable
func.func private @helper(%x: tensor<4xf32>) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}
func.func private @external(%x: tensor<4xf32>) -> tensor<4xf32>
