// moe-raise-stablehlo first rewrites the other spellings of a top-k
// selection into chlo.top_k: jnp.argmax (and jnp.max) of router scores, an
// argsort of the negated scores cut to k, take_along_axis of the scores by
// the top-k indices. Spellings that would select differently stay.
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo | FileCheck %s

// CHECK-LABEL: func @argmax_and_max_of_router_probs
// CHECK: %[[V:.*]], %[[I:.*]] = chlo.top_k(%{{.*}}, k = 1) : tensor<8x4xf32> -> (tensor<8x1xf32>, tensor<8x1xi32>)
// CHECK-DAG: %[[IDX:.*]] = stablehlo.reshape %[[I]] : (tensor<8x1xi32>) -> tensor<8xi32>
// CHECK-DAG: %[[MAX:.*]] = stablehlo.reshape %[[V]] : (tensor<8x1xf32>) -> tensor<8xf32>
// CHECK: return %[[IDX]], %[[MAX]]
func.func @argmax_and_max_of_router_probs(%x: tensor<8x16xf32>, %wr: tensor<16x4xf32>) -> (tensor<8xi32>, tensor<8xf32>) {
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
  %ninf = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %zero = stablehlo.constant dense<0> : tensor<i32>
  %max = stablehlo.reduce(%z init: %ninf) applies stablehlo.maximum across dimensions = [1] : (tensor<8x4xf32>, tensor<f32>) -> tensor<8xf32>
  %iota = stablehlo.iota dim = 1 : tensor<8x4xi32>
  %r:2 = stablehlo.reduce(%z init: %ninf), (%iota init: %zero) across dimensions = [1] : (tensor<8x4xf32>, tensor<8x4xi32>, tensor<f32>, tensor<i32>) -> (tensor<8xf32>, tensor<8xi32>)
   reducer(%a: tensor<f32>, %b: tensor<f32>) (%ai: tensor<i32>, %bi: tensor<i32>) {
    %gt = stablehlo.compare GT, %a, %b, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %nan = stablehlo.compare NE, %a, %a, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %wins = stablehlo.or %gt, %nan : tensor<i1>
    %eq = stablehlo.compare EQ, %a, %b, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %lt = stablehlo.compare LT, %ai, %bi, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    %tie = stablehlo.and %eq, %lt : tensor<i1>
    %pick = stablehlo.or %wins, %tie : tensor<i1>
    %v = stablehlo.select %wins, %a, %b : tensor<i1>, tensor<f32>
    %i = stablehlo.select %pick, %ai, %bi : tensor<i1>, tensor<i32>
    stablehlo.return %v, %i : tensor<f32>, tensor<i32>
  }
  return %r#1, %max : tensor<8xi32>, tensor<8xf32>
}

// -----

// An argmax of values no router produced keeps its reduce (its NaN rule is
// not top_k's).
// CHECK-LABEL: func @argmax_of_data_stays
// CHECK-NOT: chlo.top_k
// CHECK: stablehlo.reduce
func.func @argmax_of_data_stays(%z: tensor<8x4xf32>) -> tensor<8xi32> {
  %ninf = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %zero = stablehlo.constant dense<0> : tensor<i32>
  %iota = stablehlo.iota dim = 1 : tensor<8x4xi32>
  %r:2 = stablehlo.reduce(%z init: %ninf), (%iota init: %zero) across dimensions = [1] : (tensor<8x4xf32>, tensor<8x4xi32>, tensor<f32>, tensor<i32>) -> (tensor<8xf32>, tensor<8xi32>)
   reducer(%a: tensor<f32>, %b: tensor<f32>) (%ai: tensor<i32>, %bi: tensor<i32>) {
    %gt = stablehlo.compare GT, %a, %b, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %nan = stablehlo.compare NE, %a, %a, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %wins = stablehlo.or %gt, %nan : tensor<i1>
    %eq = stablehlo.compare EQ, %a, %b, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %lt = stablehlo.compare LT, %ai, %bi, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    %tie = stablehlo.and %eq, %lt : tensor<i1>
    %pick = stablehlo.or %wins, %tie : tensor<i1>
    %v = stablehlo.select %wins, %a, %b : tensor<i1>, tensor<f32>
    %i = stablehlo.select %pick, %ai, %bi : tensor<i1>, tensor<i32>
    stablehlo.return %v, %i : tensor<f32>, tensor<i32>
  }
  return %r#1 : tensor<8xi32>
}

// -----

// argmin (LT) of router logits is no top-k.
// CHECK-LABEL: func @argmin_stays
// CHECK-NOT: chlo.top_k
// CHECK: stablehlo.reduce
func.func @argmin_stays(%x: tensor<8x16xf32>, %wr: tensor<16x4xf32>) -> tensor<8xi32> {
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
  %inf = stablehlo.constant dense<0x7F800000> : tensor<f32>
  %zero = stablehlo.constant dense<0> : tensor<i32>
  %iota = stablehlo.iota dim = 1 : tensor<8x4xi32>
  %r:2 = stablehlo.reduce(%z init: %inf), (%iota init: %zero) across dimensions = [1] : (tensor<8x4xf32>, tensor<8x4xi32>, tensor<f32>, tensor<i32>) -> (tensor<8xf32>, tensor<8xi32>)
   reducer(%a: tensor<f32>, %b: tensor<f32>) (%ai: tensor<i32>, %bi: tensor<i32>) {
    %lt = stablehlo.compare LT, %a, %b, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %nan = stablehlo.compare NE, %a, %a, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %wins = stablehlo.or %lt, %nan : tensor<i1>
    %eq = stablehlo.compare EQ, %a, %b, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %ilt = stablehlo.compare LT, %ai, %bi, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    %tie = stablehlo.and %eq, %ilt : tensor<i1>
    %pick = stablehlo.or %wins, %tie : tensor<i1>
    %v = stablehlo.select %wins, %a, %b : tensor<i1>, tensor<f32>
    %i = stablehlo.select %pick, %ai, %bi : tensor<i1>, tensor<i32>
    stablehlo.return %v, %i : tensor<f32>, tensor<i32>
  }
  return %r#1 : tensor<8xi32>
}

// -----

// jnp.argsort(-probs)[:, :k] and take_along_axis(probs, idx): top_k's
// indices and values (the take_along_axis NaN fill goes: the indices are in
// range).
// CHECK-LABEL: func @argsort_negated_and_take_along
// CHECK: %[[V:.*]], %[[I:.*]] = chlo.top_k(%arg0, k = 2) : tensor<8x6xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
// CHECK-NOT: stablehlo.sort
// CHECK-NOT: stablehlo.gather
// CHECK: return %[[I]], %[[V]]
func.func @argsort_negated_and_take_along(%p: tensor<8x6xf32>) -> (tensor<8x2xi32>, tensor<8x2xf32>) {
  %neg = stablehlo.negate %p : tensor<8x6xf32>
  %iota = stablehlo.iota dim = 1 : tensor<8x6xi32>
  %s:2 = "stablehlo.sort"(%neg, %iota) <{dimension = 1 : i64, is_stable = true}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>, %ai: tensor<i32>, %bi: tensor<i32>):
    %z = stablehlo.constant dense<0.000000e+00> : tensor<f32>
    %nanc = stablehlo.constant dense<0x7FC00000> : tensor<f32>
    %az = stablehlo.compare EQ, %a, %z, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %a0 = stablehlo.select %az, %z, %a : tensor<i1>, tensor<f32>
    %an = stablehlo.compare NE, %a, %a, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %a1 = stablehlo.select %an, %nanc, %a0 : tensor<i1>, tensor<f32>
    %bz = stablehlo.compare EQ, %b, %z, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %b0 = stablehlo.select %bz, %z, %b : tensor<i1>, tensor<f32>
    %bn = stablehlo.compare NE, %b, %b, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %b1 = stablehlo.select %bn, %nanc, %b0 : tensor<i1>, tensor<f32>
    %lt = stablehlo.compare LT, %a1, %b1, TOTALORDER : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<8x6xf32>, tensor<8x6xi32>) -> (tensor<8x6xf32>, tensor<8x6xi32>)
  %idx = stablehlo.slice %s#1 [0:8, 0:2] : (tensor<8x6xi32>) -> tensor<8x2xi32>
  %c0 = stablehlo.constant dense<0> : tensor<8x2xi32>
  %c6 = stablehlo.constant dense<6> : tensor<8x2xi32>
  %neg_i = stablehlo.compare LT, %idx, %c0, SIGNED : (tensor<8x2xi32>, tensor<8x2xi32>) -> tensor<8x2xi1>
  %shifted = stablehlo.add %idx, %c6 : tensor<8x2xi32>
  %wrapped = stablehlo.select %neg_i, %shifted, %idx : tensor<8x2xi1>, tensor<8x2xi32>
  %at = stablehlo.reshape %wrapped : (tensor<8x2xi32>) -> tensor<8x2x1xi32>
  %g = "stablehlo.gather"(%p, %at) <{dimension_numbers = #stablehlo.gather<collapsed_slice_dims = [1], operand_batching_dims = [0], start_indices_batching_dims = [0], start_index_map = [1], index_vector_dim = 2>, indices_are_sorted = false, slice_sizes = array<i64: 1, 1>}> : (tensor<8x6xf32>, tensor<8x2x1xi32>) -> tensor<8x2xf32>
  %z3 = stablehlo.constant dense<0> : tensor<8x2x1xi32>
  %last = stablehlo.constant dense<5> : tensor<8x2x1xi32>
  %ge = stablehlo.compare GE, %at, %z3, SIGNED : (tensor<8x2x1xi32>, tensor<8x2x1xi32>) -> tensor<8x2x1xi1>
  %le = stablehlo.compare LE, %at, %last, SIGNED : (tensor<8x2x1xi32>, tensor<8x2x1xi32>) -> tensor<8x2x1xi1>
  %in = stablehlo.and %ge, %le : tensor<8x2x1xi1>
  %t = stablehlo.constant dense<true> : tensor<i1>
  %ok = stablehlo.reduce(%in init: %t) applies stablehlo.and across dimensions = [2] : (tensor<8x2x1xi1>, tensor<i1>) -> tensor<8x2xi1>
  %nan = stablehlo.constant dense<0x7FC00000> : tensor<8x2xf32>
  %vals = stablehlo.select %ok, %g, %nan : tensor<8x2xi1>, tensor<8x2xf32>
  return %idx, %vals : tensor<8x2xi32>, tensor<8x2xf32>
}

// -----

// A NaN mask of another condition than the indices' range stays.
// CHECK-LABEL: func @other_nan_mask_stays
// CHECK: %[[V:.*]], %{{.*}} = chlo.top_k(%arg0, k = 2)
// CHECK: stablehlo.select %arg1, %[[V]], %{{.*}}
func.func @other_nan_mask_stays(%p: tensor<8x6xf32>, %keep: tensor<8x2xi1>) -> tensor<8x2xf32> {
  %values, %indices = chlo.top_k(%p, k = 2) : tensor<8x6xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %at = stablehlo.reshape %indices : (tensor<8x2xi32>) -> tensor<8x2x1xi32>
  %g = "stablehlo.gather"(%p, %at) <{dimension_numbers = #stablehlo.gather<collapsed_slice_dims = [1], operand_batching_dims = [0], start_indices_batching_dims = [0], start_index_map = [1], index_vector_dim = 2>, indices_are_sorted = false, slice_sizes = array<i64: 1, 1>}> : (tensor<8x6xf32>, tensor<8x2x1xi32>) -> tensor<8x2xf32>
  %nan = stablehlo.constant dense<0x7FC00000> : tensor<8x2xf32>
  %vals = stablehlo.select %keep, %g, %nan : tensor<8x2xi1>, tensor<8x2xf32>
  return %vals : tensor<8x2xf32>
}

// -----

// An ascending argsort of the scores themselves (a bottom-k) stays; so does
// a sort by another key (|x|).
// CHECK-LABEL: func @sorts_that_select_differently_stay
// CHECK-NOT: chlo.top_k
// CHECK-COUNT-2: stablehlo.sort
func.func @sorts_that_select_differently_stay(%p: tensor<8x6xf32>) -> (tensor<8x2xi32>, tensor<8x2xi32>) {
  %iota = stablehlo.iota dim = 1 : tensor<8x6xi32>
  %s:2 = "stablehlo.sort"(%p, %iota) <{dimension = 1 : i64, is_stable = true}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>, %ai: tensor<i32>, %bi: tensor<i32>):
    %lt = stablehlo.compare LT, %a, %b, TOTALORDER : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<8x6xf32>, tensor<8x6xi32>) -> (tensor<8x6xf32>, tensor<8x6xi32>)
  %idx = stablehlo.slice %s#1 [0:8, 0:2] : (tensor<8x6xi32>) -> tensor<8x2xi32>
  %t:2 = "stablehlo.sort"(%p, %iota) <{dimension = 1 : i64, is_stable = true}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>, %ai: tensor<i32>, %bi: tensor<i32>):
    %aa = stablehlo.abs %a : tensor<f32>
    %ab = stablehlo.abs %b : tensor<f32>
    %gt = stablehlo.compare GT, %aa, %ab, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %gt : tensor<i1>
  }) : (tensor<8x6xf32>, tensor<8x6xi32>) -> (tensor<8x6xf32>, tensor<8x6xi32>)
  %idx2 = stablehlo.slice %t#1 [0:8, 0:2] : (tensor<8x6xi32>) -> tensor<8x2xi32>
  return %idx, %idx2 : tensor<8x2xi32>, tensor<8x2xi32>
}

// -----

// jnp.sort(logits)[:, -2:-1]: the 2nd largest router logit of each row, as
// the last value of a top-2 (what a `logits >= kth` mask reads).
// CHECK-LABEL: func @sorted_column_of_router_logits
// CHECK: %[[V:.*]], %{{.*}} = chlo.top_k(%[[Z:.*]], k = 2) : tensor<8x6xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
// CHECK: %[[KTH:.*]] = stablehlo.slice %[[V]] [0:8, 1:2] : (tensor<8x2xf32>) -> tensor<8x1xf32>
// CHECK-NOT: stablehlo.sort
// CHECK: return %[[KTH]]
func.func @sorted_column_of_router_logits(%x: tensor<8x16xf32>, %wr: tensor<16x6xf32>) -> tensor<8x1xf32> {
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x6xf32>) -> tensor<8x6xf32>
  %s = "stablehlo.sort"(%z) <{dimension = 1 : i64, is_stable = true}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>):
    %lt = stablehlo.compare LT, %a, %b, TOTALORDER : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<8x6xf32>) -> tensor<8x6xf32>
  %kth = stablehlo.slice %s [0:8, 4:5] : (tensor<8x6xf32>) -> tensor<8x1xf32>
  return %kth : tensor<8x1xf32>
}

// -----

// A sort of data no router produced, or read as more than one column, stays.
// CHECK-LABEL: func @sorted_data_or_range_stays
// CHECK-COUNT-2: stablehlo.sort
// CHECK-NOT: chlo.top_k
func.func @sorted_data_or_range_stays(%p: tensor<8x6xf32>, %x: tensor<8x16xf32>, %wr: tensor<16x6xf32>) -> (tensor<8x1xf32>, tensor<8x2xf32>) {
  %s = "stablehlo.sort"(%p) <{dimension = 1 : i64, is_stable = true}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>):
    %lt = stablehlo.compare LT, %a, %b, TOTALORDER : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<8x6xf32>) -> tensor<8x6xf32>
  %kth = stablehlo.slice %s [0:8, 4:5] : (tensor<8x6xf32>) -> tensor<8x1xf32>
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x6xf32>) -> tensor<8x6xf32>
  %t = "stablehlo.sort"(%z) <{dimension = 1 : i64, is_stable = true}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>):
    %lt = stablehlo.compare LT, %a, %b, TOTALORDER : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<8x6xf32>) -> tensor<8x6xf32>
  %top2 = stablehlo.slice %t [0:8, 4:6] : (tensor<8x6xf32>) -> tensor<8x2xf32>
  return %kth, %top2 : tensor<8x1xf32>, tensor<8x2xf32>
}

// -----

// take_along_axis(softmax(z), top_k(z).indices) with z = x @ wr: softmax
// keeps each row's order, so this is top_k of the probabilities; the
// indices' other users read that top_k too.
// CHECK-LABEL: func @take_along_softmax_by_top_k_of_logits
// CHECK: %[[P:.*]] = stablehlo.divide
// CHECK: %[[V:.*]], %[[I:.*]] = chlo.top_k(%[[P]], k = 2) : tensor<8x6xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
// CHECK-NOT: stablehlo.gather
// CHECK: return %[[I]], %[[V]]
func.func @take_along_softmax_by_top_k_of_logits(%x: tensor<8x16xf32>, %wr: tensor<16x6xf32>)
    -> (tensor<8x2xi32>, tensor<8x2xf32>) {
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x6xf32>) -> tensor<8x6xf32>
  %ninf = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %m = stablehlo.reduce(%z init: %ninf) applies stablehlo.maximum across dimensions = [1] : (tensor<8x6xf32>, tensor<f32>) -> tensor<8xf32>
  %mb = stablehlo.broadcast_in_dim %m, dims = [0] : (tensor<8xf32>) -> tensor<8x6xf32>
  %d = stablehlo.subtract %z, %mb : tensor<8x6xf32>
  %e = stablehlo.exponential %d : tensor<8x6xf32>
  %zero = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %s = stablehlo.reduce(%e init: %zero) applies stablehlo.add across dimensions = [1] : (tensor<8x6xf32>, tensor<f32>) -> tensor<8xf32>
  %sb = stablehlo.broadcast_in_dim %s, dims = [0] : (tensor<8xf32>) -> tensor<8x6xf32>
  %p = stablehlo.divide %e, %sb : tensor<8x6xf32>
  %v, %i = chlo.top_k(%z, k = 2) : tensor<8x6xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %at = stablehlo.reshape %i : (tensor<8x2xi32>) -> tensor<8x2x1xi32>
  %g = "stablehlo.gather"(%p, %at) <{dimension_numbers = #stablehlo.gather<collapsed_slice_dims = [1], operand_batching_dims = [0], start_indices_batching_dims = [0], start_index_map = [1], index_vector_dim = 2>, indices_are_sorted = false, slice_sizes = array<i64: 1, 1>}> : (tensor<8x6xf32>, tensor<8x2x1xi32>) -> tensor<8x2xf32>
  return %i, %g : tensor<8x2xi32>, tensor<8x2xf32>
}

// -----

// The same gather by the top-k of other logits (not the ones the scores
// are the softmax of) selects differently: it stays.
// CHECK-LABEL: func @take_along_by_top_k_of_other_logits_stays
// CHECK: chlo.top_k(%arg2, k = 2)
// CHECK: stablehlo.gather
func.func @take_along_by_top_k_of_other_logits_stays(%x: tensor<8x16xf32>, %wr: tensor<16x6xf32>, %other: tensor<8x6xf32>)
    -> (tensor<8x2xi32>, tensor<8x2xf32>) {
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x6xf32>) -> tensor<8x6xf32>
  %ninf = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %m = stablehlo.reduce(%z init: %ninf) applies stablehlo.maximum across dimensions = [1] : (tensor<8x6xf32>, tensor<f32>) -> tensor<8xf32>
  %mb = stablehlo.broadcast_in_dim %m, dims = [0] : (tensor<8xf32>) -> tensor<8x6xf32>
  %d = stablehlo.subtract %z, %mb : tensor<8x6xf32>
  %e = stablehlo.exponential %d : tensor<8x6xf32>
  %zero = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %s = stablehlo.reduce(%e init: %zero) applies stablehlo.add across dimensions = [1] : (tensor<8x6xf32>, tensor<f32>) -> tensor<8xf32>
  %sb = stablehlo.broadcast_in_dim %s, dims = [0] : (tensor<8xf32>) -> tensor<8x6xf32>
  %p = stablehlo.divide %e, %sb : tensor<8x6xf32>
  %v, %i = chlo.top_k(%other, k = 2) : tensor<8x6xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %at = stablehlo.reshape %i : (tensor<8x2xi32>) -> tensor<8x2x1xi32>
  %g = "stablehlo.gather"(%p, %at) <{dimension_numbers = #stablehlo.gather<collapsed_slice_dims = [1], operand_batching_dims = [0], start_indices_batching_dims = [0], start_index_map = [1], index_vector_dim = 2>, indices_are_sorted = false, slice_sizes = array<i64: 1, 1>}> : (tensor<8x6xf32>, tensor<8x2x1xi32>) -> tensor<8x2xf32>
  return %i, %g : tensor<8x2xi32>, tensor<8x2xf32>
}
