// RUN: moe-opt %s --moe-cpu-pipeline | FileCheck %s
// The whole CPU pipeline leaves only the LLVM dialect, with a C interface.

// CHECK-NOT: moe.
// CHECK-NOT: linalg.
// CHECK-NOT: tensor.
// CHECK: llvm.func @erff
// CHECK: llvm.func @geglu_layer(
// CHECK: llvm.func @_mlir_ciface_geglu_layer(
// CHECK-NOT: _mlir_ciface_erff
func.func @geglu_layer(%x: tensor<?x16xbf16>, %wr: tensor<4x16xbf16>, %up: tensor<4x16x16xbf16>, %down: tensor<4x16x8xbf16>) -> tensor<?x16xbf16> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<geglu>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>}
    : (tensor<?x16xbf16>, tensor<4x16xbf16>, tensor<4x16x16xbf16>, tensor<4x16x8xbf16>) -> (tensor<?x16xbf16>, tensor<?x4xf32>)
  return %y : tensor<?x16xbf16>
}
