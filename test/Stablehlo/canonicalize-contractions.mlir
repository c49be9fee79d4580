// moe-raise-stablehlo rewrites contractions into the form the expert
// matchers read, each exactly: a batch dim that only a broadcast of one
// operand makes becomes a free dim of the other operand (then a transpose
// restores the result's order); a transposed operand without free dims is
// read through its transpose; a strided slice of a projection's output
// features slices the weight instead; a unit dim added to an operand, left
// free and dropped from the result, is not added. Contiguous slices (jnp.split), real
// batch dims and transposes of operands with free dims stay.
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo | FileCheck %s

// torch.bmm(x.expand(E, T, H), w): x [T, H] broadcast over the experts.
// CHECK-LABEL: func @broadcast_batch
// CHECK: %[[D:.*]] = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [1]{{.*}} : (tensor<12x32xf32>, tensor<4x32x40xf32>) -> tensor<12x4x40xf32>
// CHECK-NEXT: %[[T:.*]] = stablehlo.transpose %[[D]], dims = [1, 0, 2] : (tensor<12x4x40xf32>) -> tensor<4x12x40xf32>
// CHECK-NEXT: return %[[T]]
func.func @broadcast_batch(%x: tensor<12x32xf32>, %w: tensor<4x32x40xf32>) -> tensor<4x12x40xf32> {
  %xs = stablehlo.broadcast_in_dim %x, dims = [1, 2] : (tensor<12x32xf32>) -> tensor<4x12x32xf32>
  %y = stablehlo.dot_general %xs, %w, batching_dims = [0] x [0], contracting_dims = [2] x [1] : (tensor<4x12x32xf32>, tensor<4x32x40xf32>) -> tensor<4x12x40xf32>
  return %y : tensor<4x12x40xf32>
}

// -----

// The broadcast operand on the right, its dims permuted by the broadcast.
// CHECK-LABEL: func @broadcast_batch_rhs
// CHECK: %[[D:.*]] = stablehlo.dot_general %arg0, %arg1, contracting_dims = [2] x [0]{{.*}} : (tensor<3x8x16xf32>, tensor<16x8xf32>) -> tensor<3x8x8xf32>
// CHECK: return %[[D]]
func.func @broadcast_batch_rhs(%h: tensor<3x8x16xf32>, %x: tensor<16x8xf32>) -> tensor<3x8x8xf32> {
  %xs = stablehlo.broadcast_in_dim %x, dims = [1, 2] : (tensor<16x8xf32>) -> tensor<3x16x8xf32>
  %y = stablehlo.dot_general %h, %xs, batching_dims = [0] x [0], contracting_dims = [2] x [1] : (tensor<3x8x16xf32>, tensor<3x16x8xf32>) -> tensor<3x8x8xf32>
  return %y : tensor<3x8x8xf32>
}

// -----

// A broadcast that stretches a size-1 dim, and real batch operands, stay.
// CHECK-LABEL: func @stretched_broadcast_stays
// CHECK: stablehlo.broadcast_in_dim
// CHECK: stablehlo.dot_general %{{.*}}, %arg1, batching_dims = [0] x [0]
func.func @stretched_broadcast_stays(%x: tensor<1x12x32xf32>, %w: tensor<4x32x40xf32>) -> tensor<4x12x40xf32> {
  %xs = stablehlo.broadcast_in_dim %x, dims = [0, 1, 2] : (tensor<1x12x32xf32>) -> tensor<4x12x32xf32>
  %y = stablehlo.dot_general %xs, %w, batching_dims = [0] x [0], contracting_dims = [2] x [1] : (tensor<4x12x32xf32>, tensor<4x32x40xf32>) -> tensor<4x12x40xf32>
  return %y : tensor<4x12x40xf32>
}

// -----

// einsum("et,eth->th", gate.T, outs): the gate read through its transpose.
// CHECK-LABEL: func @freeless_transpose
// CHECK-NOT: stablehlo.transpose
// CHECK: stablehlo.dot_general %arg0, %arg1, batching_dims = [0] x [1], contracting_dims = [1] x [0]{{.*}} : (tensor<12x4xf32>, tensor<4x12x32xf32>) -> tensor<12x32xf32>
func.func @freeless_transpose(%gate: tensor<12x4xf32>, %outs: tensor<4x12x32xf32>) -> tensor<12x32xf32> {
  %t = stablehlo.transpose %gate, dims = [1, 0] : (tensor<12x4xf32>) -> tensor<4x12xf32>
  %y = stablehlo.dot_general %t, %outs, batching_dims = [1] x [1], contracting_dims = [0] x [0] : (tensor<4x12xf32>, tensor<4x12x32xf32>) -> tensor<12x32xf32>
  return %y : tensor<12x32xf32>
}

// -----

// x @ wr.T: the transposed operand has a free dim (the experts), so the
// transpose stays for the router matcher.
// CHECK-LABEL: func @transpose_with_free_dim_stays
// CHECK: %[[T:.*]] = stablehlo.transpose %arg1
// CHECK: stablehlo.dot_general %arg0, %[[T]]
func.func @transpose_with_free_dim_stays(%x: tensor<12x32xf32>, %wr: tensor<4x32xf32>) -> tensor<12x4xf32> {
  %t = stablehlo.transpose %wr, dims = [1, 0] : (tensor<4x32xf32>) -> tensor<32x4xf32>
  %y = stablehlo.dot_general %x, %t, contracting_dims = [1] x [0] : (tensor<12x32xf32>, tensor<32x4xf32>) -> tensor<12x4xf32>
  return %y : tensor<12x4xf32>
}

// -----

// Interleaved gate/up (h[..., ::2], h[..., 1::2]): each a projection with
// every other column of the weight.
// CHECK-LABEL: func @interleaved_columns
// CHECK-DAG: %[[G:.*]] = stablehlo.slice %arg1 [0:4, 0:32, 0:80:2] : (tensor<4x32x80xf32>) -> tensor<4x32x40xf32>
// CHECK-DAG: %[[U:.*]] = stablehlo.slice %arg1 [0:4, 0:32, 1:80:2] : (tensor<4x32x80xf32>) -> tensor<4x32x40xf32>
// CHECK-DAG: stablehlo.dot_general %arg0, %[[G]], contracting_dims = [1] x [1]{{.*}} -> tensor<12x4x40xf32>
// CHECK-DAG: stablehlo.dot_general %arg0, %[[U]], contracting_dims = [1] x [1]{{.*}} -> tensor<12x4x40xf32>
// CHECK-NOT: tensor<12x4x80xf32>
func.func @interleaved_columns(%x: tensor<12x32xf32>, %w: tensor<4x32x80xf32>) -> tensor<12x4x40xf32> {
  %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [1] : (tensor<12x32xf32>, tensor<4x32x80xf32>) -> tensor<12x4x80xf32>
  %g = stablehlo.slice %h [0:12, 0:4, 0:80:2] : (tensor<12x4x80xf32>) -> tensor<12x4x40xf32>
  %u = stablehlo.slice %h [0:12, 0:4, 1:80:2] : (tensor<12x4x80xf32>) -> tensor<12x4x40xf32>
  %y = stablehlo.multiply %g, %u : tensor<12x4x40xf32>
  return %y : tensor<12x4x40xf32>
}

// -----

// jnp.split's contiguous halves, and a strided slice of the tokens (an lhs
// dim), keep their slices of the product.
// CHECK-LABEL: func @contiguous_and_token_slices_stay
// CHECK: %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// CHECK: stablehlo.slice %[[H]] [0:12, 0:4, 0:40]
// CHECK: stablehlo.slice %[[H]] [0:12:2, 0:4, 40:80]
func.func @contiguous_and_token_slices_stay(%x: tensor<12x32xf32>, %w: tensor<4x32x80xf32>) -> (tensor<12x4x40xf32>, tensor<6x4x40xf32>) {
  %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [1] : (tensor<12x32xf32>, tensor<4x32x80xf32>) -> tensor<12x4x80xf32>
  %g = stablehlo.slice %h [0:12, 0:4, 0:40] : (tensor<12x4x80xf32>) -> tensor<12x4x40xf32>
  %u = stablehlo.slice %h [0:12:2, 0:4, 40:80] : (tensor<12x4x80xf32>) -> tensor<6x4x40xf32>
  return %g, %u : tensor<12x4x40xf32>, tensor<6x4x40xf32>
}

// -----

// jnp.matmul(gate[:, None, :], outs)[:, 0]: the gate's added unit dim is
// left free and dropped again, so the dot reads the gate itself.
// CHECK-LABEL: func @unit_row_dropped
// CHECK: %[[D:.*]] = stablehlo.dot_general %arg0, %arg1, batching_dims = [0] x [0], contracting_dims = [1] x [1]{{.*}} : (tensor<16x8xf32>, tensor<16x8x32xf32>) -> tensor<16x32xf32>
// CHECK-NEXT: return %[[D]]
func.func @unit_row_dropped(%g: tensor<16x8xf32>, %outs: tensor<16x8x32xf32>) -> tensor<16x32xf32> {
  %row = stablehlo.broadcast_in_dim %g, dims = [0, 2] : (tensor<16x8xf32>) -> tensor<16x1x8xf32>
  %y = stablehlo.dot_general %row, %outs, batching_dims = [0] x [0], contracting_dims = [2] x [1] : (tensor<16x1x8xf32>, tensor<16x8x32xf32>) -> tensor<16x1x32xf32>
  %r = stablehlo.reshape %y : (tensor<16x1x32xf32>) -> tensor<16x32xf32>
  return %r : tensor<16x32xf32>
}

// -----

// The unit dim kept in the result (no reshape), or a size-1 dim that the
// broadcast stretches: both stay.
// CHECK-LABEL: func @unit_row_kept_or_stretched
// CHECK: stablehlo.broadcast_in_dim %arg0, dims = [0, 2]
// CHECK: stablehlo.dot_general {{.*}} : (tensor<16x1x8xf32>, tensor<16x8x32xf32>) -> tensor<16x1x32xf32>
// CHECK: stablehlo.broadcast_in_dim %arg2, dims = [0, 2]
// CHECK: stablehlo.dot_general {{.*}} : (tensor<16x2x8xf32>, tensor<16x8x32xf32>) -> tensor<16x2x32xf32>
func.func @unit_row_kept_or_stretched(%g: tensor<16x8xf32>, %outs: tensor<16x8x32xf32>, %h: tensor<16x1xf32>) -> (tensor<16x1x32xf32>, tensor<16x2x32xf32>) {
  %row = stablehlo.broadcast_in_dim %g, dims = [0, 2] : (tensor<16x8xf32>) -> tensor<16x1x8xf32>
  %y = stablehlo.dot_general %row, %outs, batching_dims = [0] x [0], contracting_dims = [2] x [1] : (tensor<16x1x8xf32>, tensor<16x8x32xf32>) -> tensor<16x1x32xf32>
  %hs = stablehlo.broadcast_in_dim %h, dims = [0, 2] : (tensor<16x1xf32>) -> tensor<16x2x8xf32>
  %z = stablehlo.dot_general %hs, %outs, batching_dims = [0] x [0], contracting_dims = [2] x [1] : (tensor<16x2x8xf32>, tensor<16x8x32xf32>) -> tensor<16x2x32xf32>
  return %y, %z : tensor<16x1x32xf32>, tensor<16x2x32xf32>
}
