// RUN: moe-opt %s --split-input-file --moe-fill-init-reads | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-fill-init-reads --linalg-fuse-elementwise-ops | FileCheck %s --check-prefix=FUSED

#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>

// A parallel generic adding into a zero fill reads the zero instead.
// CHECK-LABEL: func @reads_fill
// CHECK-SAME: (%[[A:.*]]: tensor<4x8xf32>
// CHECK: %[[C0:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: %[[E:.*]] = tensor.empty() : tensor<4x8xf32>
// CHECK: linalg.generic {{.*}} ins(%[[A]] : tensor<4x8xf32>) outs(%[[E]] : tensor<4x8xf32>)
// CHECK: ^bb0(%[[IN:.*]]: f32, %{{.*}}: f32):
// CHECK: arith.addf %[[IN]], %[[C0]] : f32
// The fused consumer (a reduction over a loop the producer does not have)
// adds the producer's value once per element, not the init per iteration.
// FUSED-LABEL: func @reads_fill
// FUSED: linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
// FUSED-NOT: linalg.fill ins(%{{.*}}) outs(%{{.*}} : tensor<4x8xf32>)
func.func @reads_fill(%a: tensor<4x8xf32>, %g: tensor<8xf32>) -> tensor<4xf32> {
  %c0 = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x8xf32>
  %z = linalg.fill ins(%c0 : f32) outs(%e : tensor<4x8xf32>) -> tensor<4x8xf32>
  %n = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%a : tensor<4x8xf32>) outs(%z : tensor<4x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.addf %out, %in : f32
    linalg.yield %s : f32
  } -> tensor<4x8xf32>
  %e1 = tensor.empty() : tensor<4xf32>
  %z1 = linalg.fill ins(%c0 : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %r = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
      ins(%n : tensor<4x8xf32>) outs(%z1 : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.addf %out, %in : f32
    linalg.yield %s : f32
  } -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

// A reduction reads its init by design: left alone.
// CHECK-LABEL: func @reduction_kept
// CHECK: %[[Z:.*]] = linalg.fill
// CHECK: linalg.generic {{.*}} outs(%[[Z]] : tensor<4xf32>)
// CHECK: arith.addf %{{.*}}, %{{.*}} : f32
#id2 = affine_map<(d0, d1) -> (d0, d1)>
#row2 = affine_map<(d0, d1) -> (d0)>
func.func @reduction_kept(%a: tensor<4x8xf32>) -> tensor<4xf32> {
  %c0 = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4xf32>
  %z = linalg.fill ins(%c0 : f32) outs(%e : tensor<4xf32>) -> tensor<4xf32>
  %r = linalg.generic {indexing_maps = [#id2, #row2], iterator_types = ["parallel", "reduction"]}
      ins(%a : tensor<4x8xf32>) outs(%z : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.addf %out, %in : f32
    linalg.yield %s : f32
  } -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

// An init that is not a fill (an accumulator passed in) is left alone.
// CHECK-LABEL: func @argument_init_kept
// CHECK-SAME: %[[ACC:[[:alnum:]_]+]]: tensor<4x8xf32>)
// CHECK: linalg.generic {{.*}} outs(%[[ACC]] : tensor<4x8xf32>)
#id3 = affine_map<(d0, d1) -> (d0, d1)>
func.func @argument_init_kept(%a: tensor<4x8xf32>, %acc: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %n = linalg.generic {indexing_maps = [#id3, #id3], iterator_types = ["parallel", "parallel"]}
      ins(%a : tensor<4x8xf32>) outs(%acc : tensor<4x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.addf %out, %in : f32
    linalg.yield %s : f32
  } -> tensor<4x8xf32>
  return %n : tensor<4x8xf32>
}
