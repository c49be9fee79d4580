// RUN: moe-opt %s --moe-cpu-pipeline | FileCheck %s
// RUN: moe-opt %s --moe-cpu-pipeline | FileCheck %s --check-prefix=THREADS
// RUN: moe-opt %s --moe-cpu-pipeline=openmp=false | FileCheck %s --check-prefix=SERIAL
// The whole CPU pipeline leaves only the LLVM dialect (and OpenMP regions
// around the loops the lowering marked independent), with a C interface.
// THREADS: omp.parallel
// THREADS: omp.wsloop
// SERIAL-NOT: omp.

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
