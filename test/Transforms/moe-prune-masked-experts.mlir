// RUN: moe-opt %s "--moe-prune-masked-experts=copy-weights=true" --split-input-file | FileCheck %s
// RUN: moe-opt %s --moe-prune-masked-experts --split-input-file | FileCheck %s --check-prefix=NOCOPY

// Experts 2 and 5 are masked (-inf bias): the layer keeps 6 experts; the
// router rows and FFN weights of the kept ones are sliced in two runs.
// CHECK-LABEL: func @masked
// CHECK-SAME: (%[[X:[^:]+]]: tensor<8x16xf32>, %[[WR:[^:]+]]: tensor<8x16xf32>, %[[UP:[^:]+]]: tensor<8x32x16xf32>, %[[DOWN:[^:]+]]: tensor<8x16x16xf32>)
// CHECK-DAG: %[[B:.+]] = arith.constant dense<{{.*}}> : tensor<6xf32>
// CHECK-DAG: tensor.extract_slice %[[WR]][0, 0] [2, 16] [1, 1]
// CHECK-DAG: tensor.extract_slice %[[WR]][3, 0] [2, 16] [1, 1]
// CHECK-DAG: tensor.extract_slice %[[WR]][6, 0] [2, 16] [1, 1]
// CHECK: tensor.concat dim(0)
// CHECK: moe.layer %[[X]], %{{.+}} selection_bias(%[[B]]) ffn(%{{.+}}, %{{.+}}) {{.*}}experts = [#moe.group<ffn, 6>]
// CHECK-SAME: -> (tensor<8x16xf32>, tensor<8x6xf32>)
// Without copy-weights, non-contiguous kept experts are left alone.
// NOCOPY-LABEL: func @masked
// NOCOPY: experts = [#moe.group<ffn, 8>]
func.func @masked(%x: tensor<8x16xf32>, %wr: tensor<8x16xf32>, %up: tensor<8x32x16xf32>, %down: tensor<8x16x16xf32>) -> tensor<8x16xf32> {
  %b = arith.constant dense<[0.0, 0.1, 0xFF800000, 0.0, -0.2, 0xFF800000, 0.0, 0.3]> : tensor<8xf32>
  %y, %z = moe.layer %x, %wr selection_bias(%b) ffn(%up, %down) {experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = sigmoid, k = 2, normalize = all>}
    : (tensor<8x16xf32>, tensor<8x16xf32>, tensor<8xf32>, tensor<8x32x16xf32>, tensor<8x16x16xf32>) -> (tensor<8x16xf32>, tensor<8x8xf32>)
  return %y : tensor<8x16xf32>
}

// -----

// Negative: plain softmax scores without renormalization depend on every
// expert's logit, masked ones included.
// CHECK-LABEL: func @softmax_unnormalized
// CHECK: experts = [#moe.group<ffn, 8>]
func.func @softmax_unnormalized(%x: tensor<8x16xf32>, %wr: tensor<8x16xf32>, %up: tensor<8x32x16xf32>, %down: tensor<8x16x16xf32>) -> tensor<8x16xf32> {
  %b = arith.constant dense<[0.0, 0.1, 0xFF800000, 0.0, -0.2, 0xFF800000, 0.0, 0.3]> : tensor<8xf32>
  %y, %z = moe.layer %x, %wr selection_bias(%b) ffn(%up, %down) {experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<8x16xf32>, tensor<8x16xf32>, tensor<8xf32>, tensor<8x32x16xf32>, tensor<8x16x16xf32>) -> (tensor<8x16xf32>, tensor<8x8xf32>)
  return %y : tensor<8x16xf32>
}

// -----

// Negative: the logits (one column per expert) are read.
// CHECK-LABEL: func @logits_used
// CHECK: experts = [#moe.group<ffn, 8>]
func.func @logits_used(%x: tensor<8x16xf32>, %wr: tensor<8x16xf32>, %up: tensor<8x32x16xf32>, %down: tensor<8x16x16xf32>) -> tensor<8x8xf32> {
  %b = arith.constant dense<[0.0, 0.1, 0xFF800000, 0.0, -0.2, 0xFF800000, 0.0, 0.3]> : tensor<8xf32>
  %y, %z = moe.layer %x, %wr selection_bias(%b) ffn(%up, %down) {experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = sigmoid, k = 2, normalize = all>}
    : (tensor<8x16xf32>, tensor<8x16xf32>, tensor<8xf32>, tensor<8x32x16xf32>, tensor<8x16x16xf32>) -> (tensor<8x16xf32>, tensor<8x8xf32>)
  return %z : tensor<8x8xf32>
}

// -----

// Negative: a bias that is not a constant.
// CHECK-LABEL: func @runtime_bias
// CHECK: experts = [#moe.group<ffn, 8>]
func.func @runtime_bias(%x: tensor<8x16xf32>, %wr: tensor<8x16xf32>, %b: tensor<8xf32>, %up: tensor<8x32x16xf32>, %down: tensor<8x16x16xf32>) -> tensor<8x16xf32> {
  %y, %z = moe.layer %x, %wr selection_bias(%b) ffn(%up, %down) {experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = sigmoid, k = 2, normalize = all>}
    : (tensor<8x16xf32>, tensor<8x16xf32>, tensor<8xf32>, tensor<8x32x16xf32>, tensor<8x16x16xf32>) -> (tensor<8x16xf32>, tensor<8x8xf32>)
  return %y : tensor<8x16xf32>
}

// -----

// Negative: softmax renormalized, but the kept experts' biases differ, so the
// ranking of p + b could change once the probabilities are rescaled.
// CHECK-LABEL: func @softmax_varied_bias
// CHECK: experts = [#moe.group<ffn, 8>]
func.func @softmax_varied_bias(%x: tensor<8x16xf32>, %wr: tensor<8x16xf32>, %up: tensor<8x32x16xf32>, %down: tensor<8x16x16xf32>) -> tensor<8x16xf32> {
  %b = arith.constant dense<[0.0, 0.1, 0xFF800000, 0.0, -0.2, 0xFF800000, 0.0, 0.3]> : tensor<8xf32>
  %y, %z = moe.layer %x, %wr selection_bias(%b) ffn(%up, %down) {experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, normalize = all>}
    : (tensor<8x16xf32>, tensor<8x16xf32>, tensor<8xf32>, tensor<8x32x16xf32>, tensor<8x16x16xf32>) -> (tensor<8x16xf32>, tensor<8x8xf32>)
  return %y : tensor<8x16xf32>
}

// -----

// Softmax renormalized under a pure mask (0 or -inf) is pruned.
// CHECK-LABEL: func @softmax_pure_mask
// CHECK: experts = [#moe.group<ffn, 6>]
func.func @softmax_pure_mask(%x: tensor<8x16xf32>, %wr: tensor<8x16xf32>, %up: tensor<8x32x16xf32>, %down: tensor<8x16x16xf32>) -> tensor<8x16xf32> {
  %b = arith.constant dense<[0.0, 0.0, 0xFF800000, 0.0, 0.0, 0xFF800000, 0.0, 0.0]> : tensor<8xf32>
  %y, %z = moe.layer %x, %wr selection_bias(%b) ffn(%up, %down) {experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, normalize = all>}
    : (tensor<8x16xf32>, tensor<8x16xf32>, tensor<8xf32>, tensor<8x32x16xf32>, tensor<8x16x16xf32>) -> (tensor<8x16xf32>, tensor<8x8xf32>)
  return %y : tensor<8x16xf32>
}

// -----

// Masked experts at the ends: the kept ones are one run, sliced as views, so
// no copy-weights is needed.
// CHECK-LABEL: func @masked_ends
// CHECK-NOT: tensor.concat
// CHECK: experts = [#moe.group<ffn, 5>]
// NOCOPY-LABEL: func @masked_ends
// NOCOPY: tensor.extract_slice %{{.+}}[1, 0, 0] [5, 32, 16] [1, 1, 1]
// NOCOPY: experts = [#moe.group<ffn, 5>]
func.func @masked_ends(%x: tensor<8x16xf32>, %wr: tensor<8x16xf32>, %up: tensor<8x32x16xf32>, %down: tensor<8x16x16xf32>) -> tensor<8x16xf32> {
  %b = arith.constant dense<[0xFF800000, 0.1, 0.0, 0.0, -0.2, 0.2, 0xFF800000, 0xFF800000]> : tensor<8xf32>
  %y, %z = moe.layer %x, %wr selection_bias(%b) ffn(%up, %down) {experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = sigmoid, k = 2, normalize = all>}
    : (tensor<8x16xf32>, tensor<8x16xf32>, tensor<8xf32>, tensor<8x32x16xf32>, tensor<8x16x16xf32>) -> (tensor<8x16xf32>, tensor<8x8xf32>)
  return %y : tensor<8x16xf32>
}
