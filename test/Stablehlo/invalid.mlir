// Every stablehlo/chlo verifier rejects malformed ops with a located error.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

func.func @binary_element_types(%a: tensor<4xf32>, %b: tensor<4xf16>) -> tensor<4xf32> {
  // expected-error @+1 {{operands and result must have one element type, got 'f16' and 'f32'}}
  %0 = stablehlo.add %a, %b : (tensor<4xf32>, tensor<4xf16>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @binary_shapes(%a: tensor<4xf32>, %b: tensor<5xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{requires the same shape for all operands and results}}
  %0 = stablehlo.add %a, %b : (tensor<4xf32>, tensor<5xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @is_finite_result(%a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{maps a float tensor to an i1 tensor}}
  %0 = stablehlo.is_finite %a : (tensor<4xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @clamp_bounds(%a: tensor<4xf32>, %b: tensor<2xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{bounds must be 0-d or have the operand's shape}}
  %0 = stablehlo.clamp %b, %a, %b : (tensor<2xf32>, tensor<4xf32>, tensor<2xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @compare_types(%a: tensor<4xf32>, %b: tensor<4xi32>) -> tensor<4xi1> {
  // expected-error @+1 {{compares operands of one element type}}
  %0 = stablehlo.compare LT, %a, %b : (tensor<4xf32>, tensor<4xi32>) -> tensor<4xi1>
  return %0 : tensor<4xi1>
}

// -----

func.func @compare_result(%a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{result must be i1}}
  %0 = stablehlo.compare LT, %a, %a : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @select_pred(%p: tensor<2xi1>, %a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{pred must be 0-d or have the result's shape}}
  %0 = stablehlo.select %p, %a, %a : tensor<2xi1>, tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @constant_type() -> tensor<2xf32> {
  // expected-error @+1 {{value type 'tensor<2xf32>' differs from the result type 'tensor<3xf32>'}}
  %0 = "stablehlo.constant"() <{value = dense<1.0> : tensor<2xf32>}> : () -> tensor<3xf32>
  return %0 : tensor<3xf32>
}

// -----

func.func @iota_dim() -> tensor<4xi32> {
  // expected-error @+1 {{dim 1 is out of range for rank 1}}
  %0 = stablehlo.iota dim = 1 : tensor<4xi32>
  return %0 : tensor<4xi32>
}

// -----

func.func @broadcast_sizes(%a: tensor<3xf32>) -> tensor<4x5xf32> {
  // expected-error @+1 {{operand dimension 0 (size 3) cannot broadcast to result dimension 1 (size 5)}}
  %0 = stablehlo.broadcast_in_dim %a, dims = [1] : (tensor<3xf32>) -> tensor<4x5xf32>
  return %0 : tensor<4x5xf32>
}

// -----

func.func @broadcast_dims(%a: tensor<3xf32>) -> tensor<4x3xf32> {
  // expected-error @+1 {{broadcast dimension 2 is out of range for rank 2}}
  %0 = stablehlo.broadcast_in_dim %a, dims = [2] : (tensor<3xf32>) -> tensor<4x3xf32>
  return %0 : tensor<4x3xf32>
}

// -----

func.func @reshape_count(%a: tensor<3x4xf32>) -> tensor<13xf32> {
  // expected-error @+1 {{cannot reshape 12 elements into 13}}
  %0 = stablehlo.reshape %a : (tensor<3x4xf32>) -> tensor<13xf32>
  return %0 : tensor<13xf32>
}

// -----

func.func @transpose_perm(%a: tensor<3x4xf32>) -> tensor<4x3xf32> {
  // expected-error @+1 {{dims must be a permutation of the operand's 2 dimensions}}
  %0 = stablehlo.transpose %a, dims = [1, 1] : (tensor<3x4xf32>) -> tensor<4x3xf32>
  return %0 : tensor<4x3xf32>
}

// -----

func.func @slice_range(%a: tensor<4xf32>) -> tensor<2xf32> {
  // expected-error @+1 {{range 3:5:1 is invalid for dimension 0 of size 4}}
  %0 = stablehlo.slice %a [3:5] : (tensor<4xf32>) -> tensor<2xf32>
  return %0 : tensor<2xf32>
}

// -----

func.func @dynamic_slice_indices(%a: tensor<4x8xf32>, %i: tensor<i32>) -> tensor<1x8xf32> {
  // expected-error @+1 {{needs 2 start indices, got 1}}
  %0 = stablehlo.dynamic_slice %a, %i, sizes = [1, 8] : (tensor<4x8xf32>, tensor<i32>) -> tensor<1x8xf32>
  return %0 : tensor<1x8xf32>
}

// -----

func.func @dynamic_slice_size(%a: tensor<4x8xf32>, %i: tensor<i32>) -> tensor<5x8xf32> {
  // expected-error @+1 {{slice size 5 does not fit dimension 0}}
  %0 = stablehlo.dynamic_slice %a, %i, %i, sizes = [5, 8] : (tensor<4x8xf32>, tensor<i32>, tensor<i32>) -> tensor<5x8xf32>
  return %0 : tensor<5x8xf32>
}

// -----

func.func @dynamic_update_slice_size(%a: tensor<4x8xf32>, %u: tensor<5x8xf32>, %i: tensor<i32>) -> tensor<4x8xf32> {
  // expected-error @+1 {{update dimension 0 is larger than the operand's}}
  %0 = stablehlo.dynamic_update_slice %a, %u, %i, %i : (tensor<4x8xf32>, tensor<5x8xf32>, tensor<i32>, tensor<i32>) -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @concatenate_sizes(%a: tensor<1x8xf32>, %b: tensor<2x8xf32>) -> tensor<4x8xf32> {
  // expected-error @+1 {{result dimension 0 must be 3}}
  %0 = stablehlo.concatenate %a, %b, dim = 0 : (tensor<1x8xf32>, tensor<2x8xf32>) -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @pad_result(%a: tensor<4xf32>, %v: tensor<f32>) -> tensor<6xf32> {
  // expected-error @+1 {{result dimension 0 must have size 7}}
  %0 = stablehlo.pad %a, %v, low = [1], high = [2], interior = [0] : (tensor<4xf32>, tensor<f32>) -> tensor<6xf32>
  return %0 : tensor<6xf32>
}

// -----

func.func @reverse_dims(%a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{reversed dimension 1 is out of range for rank 1}}
  %0 = stablehlo.reverse %a, dims = [1] : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @dot_general_sizes(%a: tensor<4x8xf32>, %b: tensor<7x6xf32>) -> tensor<4x6xf32> {
  // expected-error @+1 {{lhs dimension 1 (size 8) and rhs dimension 0 (size 7) must match}}
  %0 = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0] : (tensor<4x8xf32>, tensor<7x6xf32>) -> tensor<4x6xf32>
  return %0 : tensor<4x6xf32>
}

// -----

func.func @dot_general_result(%a: tensor<4x8xf32>, %b: tensor<8x6xf32>) -> tensor<6x4xf32> {
  // expected-error @+1 {{result must be batch x lhs free x rhs free dimensions, 'tensor<4x6xf32>'}}
  %0 = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0] : (tensor<4x8xf32>, tensor<8x6xf32>) -> tensor<6x4xf32>
  return %0 : tensor<6x4xf32>
}

// -----

func.func @reduce_result(%a: tensor<4x8xf32>, %z: tensor<f32>) -> tensor<8xf32> {
  // expected-error @+1 {{result 0 must have the input's shape without the reduced dimensions}}
  %0 = stablehlo.reduce(%a init: %z) applies stablehlo.add across dimensions = [1] : (tensor<4x8xf32>, tensor<f32>) -> tensor<8xf32>
  return %0 : tensor<8xf32>
}

// -----

func.func @reduce_body(%a: tensor<4x8xf32>, %z: tensor<f32>) -> tensor<4xf32> {
  // expected-error @+1 {{body must take 2 arguments}}
  %0 = "stablehlo.reduce"(%a, %z) <{dimensions = array<i64: 1>}> ({
  ^bb0(%x: tensor<f32>):
    stablehlo.return %x : tensor<f32>
  }) : (tensor<4x8xf32>, tensor<f32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @reduce_window_dims(%a: tensor<4xf32>, %z: tensor<f32>) -> tensor<4xf32> {
  // expected-error @+1 {{window_dimensions needs 1 entries}}
  %0 = "stablehlo.reduce_window"(%a, %z) <{window_dimensions = array<i64: 4, 1>}> ({
  ^bb0(%x: tensor<f32>, %y: tensor<f32>):
    %s = stablehlo.add %x, %y : tensor<f32>
    stablehlo.return %s : tensor<f32>
  }) : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @gather_map(%a: tensor<8x16xf32>, %i: tensor<4x2xi32>) -> tensor<4x16xf32> {
  // expected-error @+1 {{start_index_map has 1 entries for index vectors of 2}}
  %0 = "stablehlo.gather"(%a, %i) <{dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, slice_sizes = array<i64: 1, 16>}> : (tensor<8x16xf32>, tensor<4x2xi32>) -> tensor<4x16xf32>
  return %0 : tensor<4x16xf32>
}

// -----

func.func @scatter_window(%a: tensor<8x16xf32>, %i: tensor<4x1xi32>, %u: tensor<4x16xf32>) -> tensor<8x16xf32> {
  // expected-error @+1 {{update window, inserted and batching dimensions must cover the operand's 2 dimensions}}
  %0 = "stablehlo.scatter"(%a, %i, %u) <{scatter_dimension_numbers = #stablehlo.scatter<update_window_dims = [1], scatter_dims_to_operand_dims = [0], index_vector_dim = 1>}> ({
  ^bb0(%x: tensor<f32>, %y: tensor<f32>):
    stablehlo.return %y : tensor<f32>
  }) : (tensor<8x16xf32>, tensor<4x1xi32>, tensor<4x16xf32>) -> tensor<8x16xf32>
  return %0 : tensor<8x16xf32>
}

// -----

func.func @sort_dimension(%a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{dimension 1 is out of range for rank 1}}
  %0 = "stablehlo.sort"(%a) <{dimension = 1 : i64}> ({
  ^bb0(%x: tensor<f32>, %y: tensor<f32>):
    %lt = stablehlo.compare LT, %x, %y : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<4xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @composite_missing(%a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{decomposition @nowhere is not a function of this module}}
  %0 = stablehlo.composite "my.op" %a {decomposition = @nowhere} : (tensor<4xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @top_k_range(%a: tensor<4x8xf32>) -> (tensor<4x9xf32>, tensor<4x9xi32>) {
  // expected-error @+1 {{k = 9 is out of range for a last dimension of 8}}
  %v, %i = chlo.top_k(%a, k = 9) : tensor<4x8xf32> -> (tensor<4x9xf32>, tensor<4x9xi32>)
  return %v, %i : tensor<4x9xf32>, tensor<4x9xi32>
}

// -----

func.func @top_k_indices(%a: tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi64>) {
  // expected-error @+1 {{indices must be i32}}
  %v, %i = chlo.top_k(%a, k = 2) : tensor<4x8xf32> -> (tensor<4x2xf32>, tensor<4x2xi64>)
  return %v, %i : tensor<4x2xf32>, tensor<4x2xi64>
}

// -----

func.func @ragged_dot_groups(%x: tensor<16x8xf32>, %w: tensor<4x8x6xf32>, %s: tensor<3xi32>) -> tensor<16x6xf32> {
  // expected-error @+1 {{has 3 group sizes for 4 groups}}
  %0 = "chlo.ragged_dot"(%x, %w, %s) {ragged_dot_dimension_numbers = #chlo.ragged_dot<lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [1], lhs_ragged_dimensions = [0], rhs_group_dimensions = [0]>} : (tensor<16x8xf32>, tensor<4x8x6xf32>, tensor<3xi32>) -> tensor<16x6xf32>
  return %0 : tensor<16x6xf32>
}

// -----

func.func @ragged_dot_mode(%x: tensor<16x8xf32>, %w: tensor<4x8x6xf32>, %s: tensor<4xi32>) -> tensor<16x6xf32> {
  // expected-error @+1 {{supports the grouped-matmul mode only}}
  %0 = "chlo.ragged_dot"(%x, %w, %s) {ragged_dot_dimension_numbers = #chlo.ragged_dot<lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [1], lhs_ragged_dimensions = [1], rhs_group_dimensions = [0]>} : (tensor<16x8xf32>, tensor<4x8x6xf32>, tensor<4xi32>) -> tensor<16x6xf32>
  return %0 : tensor<16x6xf32>
}

// -----

func.func @erf_float(%a: tensor<4xi32>) -> tensor<4xi32> {
  // expected-error @+1 {{needs a float operand}}
  %0 = chlo.erf %a : tensor<4xi32> -> tensor<4xi32>
  return %0 : tensor<4xi32>
}

// -----

func.func @square_float(%a: tensor<4xi32>) -> tensor<4xi32> {
  // expected-error @+1 {{needs a float operand}}
  %0 = chlo.square %a : tensor<4xi32> -> tensor<4xi32>
  return %0 : tensor<4xi32>
}

// -----

func.func @unknown_precision(%a: tensor<4x8xf32>, %b: tensor<8x6xf32>) -> tensor<4x6xf32> {
  // expected-error @+1 {{unknown precision 'FASTEST'}}
  %0 = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0], precision = [FASTEST, DEFAULT] : (tensor<4x8xf32>, tensor<8x6xf32>) -> tensor<4x6xf32>
  return %0 : tensor<4x6xf32>
}

// -----

// Bodies without a terminator or with two blocks (found by fuzzing: the
// verifier read the missing terminator).
func.func @reduce_empty_body(%a: tensor<4x8xf32>, %init: tensor<f32>) -> tensor<4xf32> {
  // expected-error @+1 {{body must end in stablehlo.return}}
  %0 = "stablehlo.reduce"(%a, %init) <{dimensions = array<i64: 1>}> ({
  ^bb0(%x: tensor<f32>, %y: tensor<f32>):
  }) : (tensor<4x8xf32>, tensor<f32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @sort_two_blocks(%a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{region with 1 blocks}}
  %0 = "stablehlo.sort"(%a) <{dimension = 0 : i64, is_stable = true}> ({
  ^bb0(%x: tensor<f32>, %y: tensor<f32>):
    %lt = stablehlo.compare LT, %x, %y, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  ^bb1:
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<4xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @dimension_size_out_of_range(%a: tensor<4x8xf32>) -> tensor<i32> {
  // expected-error @+1 {{'stablehlo.get_dimension_size' op dim 2 is out of range for rank 2}}
  %0 = stablehlo.get_dimension_size %a, dim = 2 : (tensor<4x8xf32>) -> tensor<i32>
  return %0 : tensor<i32>
}

// -----

func.func @while_cond_not_i1(%x: tensor<i32>) -> tensor<i32> {
  // expected-error @+1 {{'stablehlo.while' op cond must return one tensor<i1>}}
  %r = stablehlo.while(%i = %x) : tensor<i32>
  cond {
    stablehlo.return %i : tensor<i32>
  } do {
    stablehlo.return %i : tensor<i32>
  }
  return %r : tensor<i32>
}

// -----

func.func @while_body_types(%x: tensor<i32>, %y: tensor<4xf32>) -> tensor<i32> {
  // expected-error @+1 {{'stablehlo.while' op do must return the next loop values (the operands' types)}}
  %r:2 = stablehlo.while(%i = %x, %h = %y) : tensor<i32>, tensor<4xf32>
  cond {
    %t = stablehlo.compare LT, %i, %i, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %t : tensor<i1>
  } do {
    stablehlo.return %i : tensor<i32>
  }
  return %r#0 : tensor<i32>
}

// -----

func.func @while_arg_types(%x: tensor<i32>) -> tensor<i32> {
  // expected-error @+1 {{'stablehlo.while' op cond must take the loop values (1 of the operands' types)}}
  %r = "stablehlo.while"(%x) ({
  ^bb0(%i: tensor<i64>):
    %t = stablehlo.constant dense<true> : tensor<i1>
    stablehlo.return %t : tensor<i1>
  }, {
  ^bb0(%i: tensor<i32>):
    stablehlo.return %i : tensor<i32>
  }) : (tensor<i32>) -> tensor<i32>
  return %r : tensor<i32>
}

// -----

func.func @case_index_not_i32(%i: tensor<i64>, %a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'stablehlo.case' op index must be a tensor<i32>}}
  %r = "stablehlo.case"(%i) ({
    stablehlo.return %a : tensor<4xf32>
  }) : (tensor<i64>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @case_no_branch(%i: tensor<i32>) {
  // expected-error @+1 {{'stablehlo.case' op needs at least one branch}}
  "stablehlo.case"(%i) : (tensor<i32>) -> ()
  return
}

// -----

func.func @case_branch_types(%i: tensor<i32>, %a: tensor<4xf32>, %b: tensor<4xf16>) -> tensor<4xf32> {
  // expected-error @+1 {{'stablehlo.case' op branch 1 must return the op's result types}}
  %r = "stablehlo.case"(%i) ({
    stablehlo.return %a : tensor<4xf32>
  }, {
    stablehlo.return %b : tensor<4xf16>
  }) : (tensor<i32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @case_branch_arguments(%i: tensor<i32>, %a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'stablehlo.case' op branch 0 must take no arguments}}
  %r = "stablehlo.case"(%i) ({
  ^bb0(%x: tensor<4xf32>):
    stablehlo.return %x : tensor<4xf32>
  }) : (tensor<i32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @if_pred_not_i1(%p: tensor<i32>, %a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'stablehlo.if' op pred must be a tensor<i1>}}
  %r = "stablehlo.if"(%p) ({
    stablehlo.return %a : tensor<4xf32>
  }, {
    stablehlo.return %a : tensor<4xf32>
  }) : (tensor<i32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @optimization_barrier_types(%a: tensor<4xf32>) -> tensor<4xf16> {
  // expected-error @+1 {{'stablehlo.optimization_barrier' op results must have the operands' types}}
  %r = "stablehlo.optimization_barrier"(%a) : (tensor<4xf32>) -> tensor<4xf16>
  return %r : tensor<4xf16>
}

// -----

func.func @shift_of_floats(%a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'stablehlo.shift_left' op operates on integers, got 'f32'}}
  %r = stablehlo.shift_left %a, %a : tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @popcnt_of_floats(%a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'stablehlo.popcnt' op operates on integers, got 'f32'}}
  %r = stablehlo.popcnt %a : tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @erf_inv_of_integers(%a: tensor<4xi32>) -> tensor<4xi32> {
  // expected-error @+1 {{'chlo.erf_inv' op needs a float operand}}
  %r = chlo.erf_inv %a : tensor<4xi32> -> tensor<4xi32>
  return %r : tensor<4xi32>
}
