// A collapse of a tensor with no elements (a static 0 sharing a group with
// dynamic sizes) becomes a tensor.empty of the result's sizes; other
// collapses stay.
// RUN: moe-opt %s -split-input-file -moe-empty-collapses | FileCheck %s

// CHECK-LABEL: func @zero_with_dynamic
// CHECK-NOT: tensor.collapse_shape
// CHECK: %[[E:.*]] = tensor.empty() : tensor<0xi64>
// CHECK: %[[C:.*]] = tensor.cast %[[E]] : tensor<0xi64> to tensor<?xi64>
// CHECK: return %[[C]]
func.func @zero_with_dynamic(%t: tensor<?x?x0xi64>) -> tensor<?xi64> {
  %c = tensor.collapse_shape %t [[0, 1, 2]] : tensor<?x?x0xi64> into tensor<?xi64>
  return %c : tensor<?xi64>
}

// -----

// The other groups keep their sizes: read where dynamic, times the static
// ones.
// CHECK-LABEL: func @other_groups_sized
// CHECK: %[[C0:.*]] = arith.constant 0 : index
// CHECK: %[[D:.*]] = tensor.dim %{{.*}}, %[[C0]] : tensor<?x3x?x0xf32>
// CHECK: %[[C3:.*]] = arith.constant 3 : index
// CHECK: %[[N:.*]] = arith.muli %[[D]], %[[C3]] : index
// CHECK: %[[E:.*]] = tensor.empty(%[[N]]) : tensor<?x0xf32>
// CHECK: %[[C:.*]] = tensor.cast %[[E]] : tensor<?x0xf32> to tensor<?x?xf32>
// CHECK: return %[[C]]
func.func @other_groups_sized(%t: tensor<?x3x?x0xf32>) -> tensor<?x?xf32> {
  %c = tensor.collapse_shape %t [[0, 1], [2, 3]] : tensor<?x3x?x0xf32> into tensor<?x?xf32>
  return %c : tensor<?x?xf32>
}

// -----

// No zero size, or a zero in a group of static sizes only: kept.
// CHECK-LABEL: func @kept
// CHECK: tensor.collapse_shape %{{.*}} {{\[}}[0, 1]] : tensor<?x4xf32> into tensor<?xf32>
// CHECK: tensor.collapse_shape %{{.*}} {{\[}}[0], [1, 2]] : tensor<?x2x0xf32> into tensor<?x0xf32>
func.func @kept(%a: tensor<?x4xf32>, %b: tensor<?x2x0xf32>) -> (tensor<?xf32>, tensor<?x0xf32>) {
  %c = tensor.collapse_shape %a [[0, 1]] : tensor<?x4xf32> into tensor<?xf32>
  %d = tensor.collapse_shape %b [[0], [1, 2]] : tensor<?x2x0xf32> into tensor<?x0xf32>
  return %c, %d : tensor<?xf32>, tensor<?x0xf32>
}
