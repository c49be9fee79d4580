// moe-raise-stablehlo reads a top-k picked one argmax at a time (GShard's
// second expert) as one chlo.top_k: the argmax of the scores with the
// first pick removed is the second column of a top-2, and a pick's score
// read through its one-hot is a column of its values. Removals that do not
// remove (zeroing logits, which can be negative) stay argmaxes.
// RUN: moe-opt %s -split-input-file -moe-raise-stablehlo | FileCheck %s

// CHECK-LABEL: func @second_argmax_of_zeroed_scores
// CHECK: %[[V:.*]], %[[I:.*]] = chlo.top_k(%{{.*}}, k = 2) : tensor<8x4xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
// CHECK-DAG: %[[I0:.*]] = stablehlo.slice %[[I]] [0:8, 0:1]
// CHECK-DAG: %[[I1:.*]] = stablehlo.slice %[[I]] [0:8, 1:2]
// CHECK-DAG: %[[V0:.*]] = stablehlo.slice %[[V]] [0:8, 0:1]
// CHECK-DAG: %[[V1:.*]] = stablehlo.slice %[[V]] [0:8, 1:2]
// CHECK-NOT: stablehlo.reduce
// CHECK-NOT: stablehlo.dot_general %{{.*}}, %{{.*}}, batching_dims
// CHECK: return
func.func @second_argmax_of_zeroed_scores(%x: tensor<8x16xf32>, %wr: tensor<16x4xf32>) -> (tensor<8xi32>, tensor<8xi32>, tensor<8xf32>, tensor<8xf32>) {
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
  %s = stablehlo.logistic %z : tensor<8x4xf32>
  %ninf = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %zero = stablehlo.constant dense<0> : tensor<i32>
  %one = stablehlo.constant dense<1.0> : tensor<8x4xf32>
  %iota = stablehlo.iota dim = 1 : tensor<8x4xi32>
  %a1:2 = stablehlo.reduce(%s init: %ninf), (%iota init: %zero) across dimensions = [1] : (tensor<8x4xf32>, tensor<8x4xi32>, tensor<f32>, tensor<i32>) -> (tensor<8xf32>, tensor<8xi32>)
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
  %m1_b = stablehlo.broadcast_in_dim %a1#1, dims = [0] : (tensor<8xi32>) -> tensor<8x4xi32>
  %m1_eq = stablehlo.compare EQ, %m1_b, %iota, SIGNED : (tensor<8x4xi32>, tensor<8x4xi32>) -> tensor<8x4xi1>
  %m1 = stablehlo.convert %m1_eq : (tensor<8x4xi1>) -> tensor<8x4xf32>
  %keep = stablehlo.subtract %one, %m1 : tensor<8x4xf32>
  %rest = stablehlo.multiply %s, %keep : tensor<8x4xf32>
  %a2:2 = stablehlo.reduce(%rest init: %ninf), (%iota init: %zero) across dimensions = [1] : (tensor<8x4xf32>, tensor<8x4xi32>, tensor<f32>, tensor<i32>) -> (tensor<8xf32>, tensor<8xi32>)
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
  %m2_b = stablehlo.broadcast_in_dim %a2#1, dims = [0] : (tensor<8xi32>) -> tensor<8x4xi32>
  %m2_eq = stablehlo.compare EQ, %m2_b, %iota, SIGNED : (tensor<8x4xi32>, tensor<8x4xi32>) -> tensor<8x4xi1>
  %m2 = stablehlo.convert %m2_eq : (tensor<8x4xi1>) -> tensor<8x4xf32>
  %g1 = stablehlo.dot_general %s, %m1, batching_dims = [0] x [0], contracting_dims = [1] x [1] : (tensor<8x4xf32>, tensor<8x4xf32>) -> tensor<8xf32>
  %g2 = stablehlo.dot_general %rest, %m2, batching_dims = [0] x [0], contracting_dims = [1] x [1] : (tensor<8x4xf32>, tensor<8x4xf32>) -> tensor<8xf32>
  return %a1#1, %a2#1, %g1, %g2 : tensor<8xi32>, tensor<8xi32>, tensor<8xf32>, tensor<8xf32>
}

// -----

// CHECK-LABEL: func @second_argmax_of_masked_logits
// CHECK: chlo.top_k(%{{.*}}, k = 2)
// CHECK-NOT: stablehlo.reduce
// CHECK: return
func.func @second_argmax_of_masked_logits(%x: tensor<8x16xf32>, %wr: tensor<16x4xf32>) -> (tensor<8xi32>, tensor<8xi32>) {
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
  %s = stablehlo.logistic %z : tensor<8x4xf32>
  %ninf = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %zero = stablehlo.constant dense<0> : tensor<i32>
  %one = stablehlo.constant dense<1.0> : tensor<8x4xf32>
  %iota = stablehlo.iota dim = 1 : tensor<8x4xi32>
  %a1:2 = stablehlo.reduce(%s init: %ninf), (%iota init: %zero) across dimensions = [1] : (tensor<8x4xf32>, tensor<8x4xi32>, tensor<f32>, tensor<i32>) -> (tensor<8xf32>, tensor<8xi32>)
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
  %m1_b = stablehlo.broadcast_in_dim %a1#1, dims = [0] : (tensor<8xi32>) -> tensor<8x4xi32>
  %m1_eq = stablehlo.compare EQ, %m1_b, %iota, SIGNED : (tensor<8x4xi32>, tensor<8x4xi32>) -> tensor<8x4xi1>
  %m1 = stablehlo.convert %m1_eq : (tensor<8x4xi1>) -> tensor<8x4xf32>
  %zf = stablehlo.constant dense<0.0> : tensor<8x4xf32>
  %set = stablehlo.compare GT, %m1, %zf, FLOAT : (tensor<8x4xf32>, tensor<8x4xf32>) -> tensor<8x4xi1>
  %ninfs = stablehlo.broadcast_in_dim %ninf, dims = [] : (tensor<f32>) -> tensor<8x4xf32>
  %masked = stablehlo.select %set, %ninfs, %z : tensor<8x4xi1>, tensor<8x4xf32>
  %a2:2 = stablehlo.reduce(%masked init: %ninf), (%iota init: %zero) across dimensions = [1] : (tensor<8x4xf32>, tensor<8x4xi32>, tensor<f32>, tensor<i32>) -> (tensor<8xf32>, tensor<8xi32>)
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
  return %a1#1, %a2#1 : tensor<8xi32>, tensor<8xi32>
}

// -----

// Zeroing a pick in the logits (which can be negative) does not remove it.
// CHECK-LABEL: func @zeroed_logits_stay
// CHECK: chlo.top_k(%{{.*}}, k = 1)
// CHECK: stablehlo.reduce
// CHECK: return
func.func @zeroed_logits_stay(%x: tensor<8x16xf32>, %wr: tensor<16x4xf32>) -> (tensor<8xi32>, tensor<8xi32>) {
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
  %s = stablehlo.logistic %z : tensor<8x4xf32>
  %ninf = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %zero = stablehlo.constant dense<0> : tensor<i32>
  %one = stablehlo.constant dense<1.0> : tensor<8x4xf32>
  %iota = stablehlo.iota dim = 1 : tensor<8x4xi32>
  %a1:2 = stablehlo.reduce(%z init: %ninf), (%iota init: %zero) across dimensions = [1] : (tensor<8x4xf32>, tensor<8x4xi32>, tensor<f32>, tensor<i32>) -> (tensor<8xf32>, tensor<8xi32>)
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
  %m1_b = stablehlo.broadcast_in_dim %a1#1, dims = [0] : (tensor<8xi32>) -> tensor<8x4xi32>
  %m1_eq = stablehlo.compare EQ, %m1_b, %iota, SIGNED : (tensor<8x4xi32>, tensor<8x4xi32>) -> tensor<8x4xi1>
  %m1 = stablehlo.convert %m1_eq : (tensor<8x4xi1>) -> tensor<8x4xf32>
  %keep = stablehlo.subtract %one, %m1 : tensor<8x4xf32>
  %rest = stablehlo.multiply %z, %keep : tensor<8x4xf32>
  %a2:2 = stablehlo.reduce(%rest init: %ninf), (%iota init: %zero) across dimensions = [1] : (tensor<8x4xf32>, tensor<8x4xi32>, tensor<f32>, tensor<i32>) -> (tensor<8xf32>, tensor<8xi32>)
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
  return %a1#1, %a2#1 : tensor<8xi32>, tensor<8xi32>
}

// -----

// The removed pick is not the first pick of these scores: no top-2.
// CHECK-LABEL: func @other_scores_pick_stays
// CHECK-COUNT-2: chlo.top_k(%{{.*}}, k = 1)
// CHECK: stablehlo.reduce
// CHECK: return
func.func @other_scores_pick_stays(%x: tensor<8x16xf32>, %wr: tensor<16x4xf32>, %wr2: tensor<16x4xf32>) -> (tensor<8xi32>, tensor<8xi32>) {
  %z = stablehlo.dot_general %x, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
  %s = stablehlo.logistic %z : tensor<8x4xf32>
  %ninf = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %zero = stablehlo.constant dense<0> : tensor<i32>
  %one = stablehlo.constant dense<1.0> : tensor<8x4xf32>
  %iota = stablehlo.iota dim = 1 : tensor<8x4xi32>
  %z2 = stablehlo.dot_general %x, %wr2, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
  %s2 = stablehlo.logistic %z2 : tensor<8x4xf32>
  %a0:2 = stablehlo.reduce(%s2 init: %ninf), (%iota init: %zero) across dimensions = [1] : (tensor<8x4xf32>, tensor<8x4xi32>, tensor<f32>, tensor<i32>) -> (tensor<8xf32>, tensor<8xi32>)
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
  %a1:2 = stablehlo.reduce(%s init: %ninf), (%iota init: %zero) across dimensions = [1] : (tensor<8x4xf32>, tensor<8x4xi32>, tensor<f32>, tensor<i32>) -> (tensor<8xf32>, tensor<8xi32>)
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
  %m0_b = stablehlo.broadcast_in_dim %a0#1, dims = [0] : (tensor<8xi32>) -> tensor<8x4xi32>
  %m0_eq = stablehlo.compare EQ, %m0_b, %iota, SIGNED : (tensor<8x4xi32>, tensor<8x4xi32>) -> tensor<8x4xi1>
  %m0 = stablehlo.convert %m0_eq : (tensor<8x4xi1>) -> tensor<8x4xf32>
  %keep = stablehlo.subtract %one, %m0 : tensor<8x4xf32>
  %rest = stablehlo.multiply %s, %keep : tensor<8x4xf32>
  %a2:2 = stablehlo.reduce(%rest init: %ninf), (%iota init: %zero) across dimensions = [1] : (tensor<8x4xf32>, tensor<8x4xi32>, tensor<f32>, tensor<i32>) -> (tensor<8xf32>, tensor<8xi32>)
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
  return %a1#1, %a2#1 : tensor<8xi32>, tensor<8xi32>
}
