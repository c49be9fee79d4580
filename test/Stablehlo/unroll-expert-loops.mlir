// moe-raise-stablehlo unrolls a counted loop over the experts (lax.fori_loop,
// lax.scan) whose trip count is the expert count (or the k: a loop over the
// slots) of a top-k computed outside it and read inside, folding the index arithmetic on the counter: w[e] and
// gate[:, e] become static slices. Other loops stay loops.
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo 2>/dev/null | FileCheck %s

// CHECK-LABEL: func @loop_over_experts_unrolled
// CHECK-NOT: stablehlo.while
// CHECK-NOT: stablehlo.dynamic_slice
// CHECK: stablehlo.slice %{{.*}} [0:8, 0:1]
// CHECK: stablehlo.slice %{{.*}} [0:8, 1:2]
// CHECK: stablehlo.slice %{{.*}} [0:8, 2:3]
// CHECK: stablehlo.slice %{{.*}} [0:8, 3:4]
// CHECK-NOT: stablehlo.slice
func.func @loop_over_experts_unrolled(%x: tensor<8x16xf32>, %wr: tensor<16x4xf32>) -> tensor<8x1xf32> {
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
  %v, %i = chlo.top_k(%z, k = 2) : tensor<8x4xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %gate = stablehlo.convert %z : tensor<8x4xf32>
  %c0 = stablehlo.constant dense<0> : tensor<i32>
  %init = stablehlo.constant dense<0.0> : tensor<8x1xf32>
  %r:3 = stablehlo.while(%e = %c0, %acc = %init, %ids = %i) : tensor<i32>, tensor<8x1xf32>, tensor<8x2xi32>
  cond {
    %n = stablehlo.constant dense<4> : tensor<i32>
    %lt = stablehlo.compare LT, %e, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  } do {
    %zero = stablehlo.constant dense<0> : tensor<i32>
    %four = stablehlo.constant dense<4> : tensor<i32>
    %neg = stablehlo.compare LT, %e, %zero, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    %wrapped = stablehlo.add %e, %four : tensor<i32>
    %col = stablehlo.select %neg, %wrapped, %e : tensor<i1>, tensor<i32>
    %g = stablehlo.dynamic_slice %gate, %zero, %col, sizes = [8, 1] : (tensor<8x4xf32>, tensor<i32>, tensor<i32>) -> tensor<8x1xf32>
    %next = stablehlo.add %acc, %g : tensor<8x1xf32>
    %one = stablehlo.constant dense<1> : tensor<i32>
    %e1 = stablehlo.add %e, %one : tensor<i32>
    stablehlo.return %e1, %next, %ids : tensor<i32>, tensor<8x1xf32>, tensor<8x2xi32>
  }
  return %r#1 : tensor<8x1xf32>
}

// -----

// 3 trips over 4 experts picked 2 at a time: neither a loop over the
// experts nor over the slots.
// CHECK-LABEL: func @other_trip_count_stays
// CHECK: stablehlo.while
// CHECK: stablehlo.dynamic_slice
func.func @other_trip_count_stays(%x: tensor<8x16xf32>, %wr: tensor<16x4xf32>) -> tensor<8x1xf32> {
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
  %v, %i = chlo.top_k(%z, k = 2) : tensor<8x4xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %c0 = stablehlo.constant dense<0> : tensor<i32>
  %init = stablehlo.constant dense<0.0> : tensor<8x1xf32>
  %r:2 = stablehlo.while(%e = %c0, %acc = %init) : tensor<i32>, tensor<8x1xf32>
  cond {
    %n = stablehlo.constant dense<3> : tensor<i32>
    %lt = stablehlo.compare LT, %e, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  } do {
    %zero = stablehlo.constant dense<0> : tensor<i32>
    %g = stablehlo.dynamic_slice %v, %zero, %e, sizes = [8, 1] : (tensor<8x2xf32>, tensor<i32>, tensor<i32>) -> tensor<8x1xf32>
    %next = stablehlo.add %acc, %g : tensor<8x1xf32>
    %one = stablehlo.constant dense<1> : tensor<i32>
    %e1 = stablehlo.add %e, %one : tensor<i32>
    stablehlo.return %e1, %next : tensor<i32>, tensor<8x1xf32>
  }
  return %r#1 : tensor<8x1xf32>
}

// -----

// 2 trips, the top-k's k: a loop over the slots, unrolled as well (its
// copies' slot columns then summed as one reduction over the slots).
// CHECK-LABEL: func @loop_over_slots_unrolled
// CHECK-NOT: stablehlo.while
// CHECK: chlo.top_k
// CHECK: stablehlo.reduce({{.*}}) applies stablehlo.add across dimensions = [1]
// CHECK-NOT: stablehlo.dynamic_slice
func.func @loop_over_slots_unrolled(%x: tensor<8x16xf32>, %wr: tensor<16x4xf32>) -> tensor<8x1xf32> {
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
  %v, %i = chlo.top_k(%z, k = 2) : tensor<8x4xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %c0 = stablehlo.constant dense<0> : tensor<i32>
  %init = stablehlo.constant dense<0.0> : tensor<8x1xf32>
  %r:2 = stablehlo.while(%e = %c0, %acc = %init) : tensor<i32>, tensor<8x1xf32>
  cond {
    %n = stablehlo.constant dense<2> : tensor<i32>
    %lt = stablehlo.compare LT, %e, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  } do {
    %zero = stablehlo.constant dense<0> : tensor<i32>
    %g = stablehlo.dynamic_slice %v, %zero, %e, sizes = [8, 1] : (tensor<8x2xf32>, tensor<i32>, tensor<i32>) -> tensor<8x1xf32>
    %next = stablehlo.add %acc, %g : tensor<8x1xf32>
    %one = stablehlo.constant dense<1> : tensor<i32>
    %e1 = stablehlo.add %e, %one : tensor<i32>
    stablehlo.return %e1, %next : tensor<i32>, tensor<8x1xf32>
  }
  return %r#1 : tensor<8x1xf32>
}

// -----

// A scan over layers routes inside its body: it stays a loop.
// CHECK-LABEL: func @routing_inside_stays
// CHECK: stablehlo.while
// CHECK: chlo.top_k
func.func @routing_inside_stays(%x: tensor<8x4xf32>, %s0: tensor<8x2xf32>) -> tensor<8x2xf32> {
  %c0 = stablehlo.constant dense<0> : tensor<i32>
  %r:3 = stablehlo.while(%e = %c0, %h = %x, %s = %s0) : tensor<i32>, tensor<8x4xf32>, tensor<8x2xf32>
  cond {
    %n = stablehlo.constant dense<4> : tensor<i32>
    %lt = stablehlo.compare LT, %e, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  } do {
    %v, %i = chlo.top_k(%h, k = 2) : tensor<8x4xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
    %next = stablehlo.add %s, %v : tensor<8x2xf32>
    %one = stablehlo.constant dense<1> : tensor<i32>
    %e1 = stablehlo.add %e, %one : tensor<i32>
    stablehlo.return %e1, %h, %next : tensor<i32>, tensor<8x4xf32>, tensor<8x2xf32>
  }
  return %r#2 : tensor<8x2xf32>
}
