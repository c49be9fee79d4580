// A tensor.empty used in a nested region gets its own copy there; uses in
// its own region keep it.
// RUN: moe-opt %s -split-input-file -moe-localize-empty-tensors | FileCheck %s

#id = affine_map<(d0) -> (d0)>

// CHECK-LABEL: func @branch_use
// CHECK: %[[E:.*]] = tensor.empty() : tensor<4xf32>
// CHECK: scf.if
// CHECK: %[[LOCAL:.*]] = tensor.empty() : tensor<4xf32>
// CHECK: linalg.generic {{.*}} outs(%[[LOCAL]] : tensor<4xf32>)
// CHECK: } else {
// CHECK: %[[LOCAL2:.*]] = tensor.empty() : tensor<4xf32>
// CHECK: linalg.generic {{.*}} outs(%[[LOCAL2]] : tensor<4xf32>)
// CHECK: }
// CHECK: linalg.generic {{.*}} outs(%[[E]] : tensor<4xf32>)
func.func @branch_use(%p: i1, %a: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %e = tensor.empty() : tensor<4xf32>
  %r = scf.if %p -> (tensor<4xf32>) {
    %x = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%a : tensor<4xf32>) outs(%e : tensor<4xf32>) {
    ^bb0(%in: f32, %out: f32):
      %d = arith.addf %in, %in : f32
      linalg.yield %d : f32
    } -> tensor<4xf32>
    scf.yield %x : tensor<4xf32>
  } else {
    %y = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%a : tensor<4xf32>) outs(%e : tensor<4xf32>) {
    ^bb0(%in: f32, %out: f32):
      %d = arith.mulf %in, %in : f32
      linalg.yield %d : f32
    } -> tensor<4xf32>
    scf.yield %y : tensor<4xf32>
  }
  %z = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%a : tensor<4xf32>) outs(%e : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %d = arith.negf %in : f32
    linalg.yield %d : f32
  } -> tensor<4xf32>
  return %r, %z : tensor<4xf32>, tensor<4xf32>
}

// -----

#id = affine_map<(d0) -> (d0)>

// Uses in the empty's own block are left alone: no copy.
// CHECK-LABEL: func @same_region
// CHECK-COUNT-1: tensor.empty
// CHECK-NOT: tensor.empty
func.func @same_region(%a: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %e = tensor.empty() : tensor<4xf32>
  %x = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%a : tensor<4xf32>) outs(%e : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  } -> tensor<4xf32>
  %y = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%x : tensor<4xf32>) outs(%e : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %d = arith.negf %in : f32
    linalg.yield %d : f32
  } -> tensor<4xf32>
  return %x, %y : tensor<4xf32>, tensor<4xf32>
}
