// placement=split (MoEShard): every rank holds a block of every expert.
// RUN: moe-opt %s --moe-shard-experts="ranks=2 placement=split" --split-input-file 2>/dev/null | FileCheck %s
// RUN: moe-opt %s --moe-shard-experts="ranks=3 placement=split" --split-input-file 2>&1 | FileCheck %s --check-prefix=THREE
// RUN: moe-opt %s --moe-shard-experts="ranks=2 placement=split" "--moe-cost-report=tokens=16" --split-input-file -o /dev/null 2>/dev/null | FileCheck %s --check-prefix=COST

// Mixtral on 2 ranks: every slot is copied once per rank (copy 1 names
// expert e as slot 8 + e), so the dispatch sends every row to both ranks;
// rank 1 computes rows [64, 128) and [192, 256) of every expert's gate/up
// (its half of the FFN width), gathers the other half, computes rows
// [32, 64) of the down projection (its half of the hidden width) and sends
// each row's block back; copy 0's slots combine the joined blocks.
// CHECK-LABEL: func.func private @mixtral__rank1
// CHECK: moe.topk
// CHECK: %[[C0:.+]] = linalg.generic
// CHECK: arith.addi %{{.+}}, %c0_i32
// CHECK: %[[C1:.+]] = linalg.generic
// CHECK: arith.addi %{{.+}}, %c8_i32
// CHECK: %[[IDS:.+]] = tensor.concat dim(1) %[[C0]], %[[C1]] : (tensor<?x2xi32>, tensor<?x2xi32>) -> tensor<?x4xi32>
// CHECK: %[[ROWS:.+]], %[[OFF:.+]], %[[SR:.+]], %[[SW:.+]] = moe.dispatch %[[IDS]], %{{.+}} experts = 16
// CHECK: %[[XS:.+]] = moe.permute
// CHECK: %[[RECV:.+]], %[[LOFF:.+]], %[[COUNTS:.+]] = moe.all_to_all_dispatch %[[XS]], %[[OFF]] bounds = [0, 8, 16] rank = 1 : (tensor<?x64xf32>, tensor<17xi32>) -> (tensor<?x64xf32>, tensor<9xi32>, tensor<2x8xi32>)
// CHECK: %[[GATE:.+]] = tensor.extract_slice %{{.+}}[0, 64, 0] [8, 64, 64] [1, 1, 1]
// CHECK: %[[UP:.+]] = tensor.extract_slice %{{.+}}[0, 192, 0] [8, 64, 64] [1, 1, 1]
// CHECK: %[[W1:.+]] = tensor.concat dim(1) %[[GATE]], %[[UP]] : (tensor<8x64x64xf32>, tensor<8x64x64xf32>) -> tensor<8x128x64xf32>
// CHECK: %[[H:.+]] = moe.grouped_matmul %[[RECV]], %[[W1]], %[[LOFF]] : (tensor<?x64xf32>, tensor<8x128x64xf32>, tensor<9xi32>) -> tensor<?x128xf32>
// CHECK: %[[A:.+]] = moe.activation swiglu %[[H]] : tensor<?x128xf32> -> tensor<?x64xf32>
// CHECK: %[[ALL:.+]] = moe.all_gather_columns %[[A]] ranks = 2 rank = 1 : (tensor<?x64xf32>) -> tensor<?x128xf32>
// CHECK: %[[W2:.+]] = tensor.extract_slice %{{.+}}[0, 32, 0] [8, 32, 128] [1, 1, 1]
// CHECK: %[[O:.+]] = moe.grouped_matmul %[[ALL]], %[[W2]], %[[LOFF]] : (tensor<?x128xf32>, tensor<8x32x128xf32>, tensor<9xi32>) -> tensor<?x32xf32>
// CHECK: %[[BACK:.+]] = moe.all_to_all_return %[[O]], %[[COUNTS]], %[[OFF]] rows = %{{.+}} bounds = [0, 8, 16] rank = 1
// CHECK: %[[B:.+]] = tensor.extract %[[OFF]][%c8]
// CHECK: tensor.extract_slice %[[BACK]]
// CHECK: tensor.extract_slice %[[BACK]]
// CHECK: %[[JOINED:.+]] = tensor.concat dim(1)
// CHECK: %[[SR0:.+]] = tensor.extract_slice %[[SR]][0, 0] [%{{.+}}, 2] [1, 1]
// CHECK: %[[SW0:.+]] = tensor.extract_slice %[[SW]][0, 0] [%{{.+}}, 2] [1, 1]
// CHECK: moe.combine %[[JOINED]], %[[SR0]], %[[SW0]] : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>

// Three ranks: blocks of ceil(128 / 3) = 43 of the FFN width and
// ceil(64 / 3) = 22 of the hidden width; the last rank's are padded with
// zero weights, whose columns are dropped before anything reads them.
// THREE-LABEL: remark: expert placement (split, 3 ranks): every rank computes all 8 experts, rank d its d-th block of the FFN width 128 and of the hidden width 64: rank 0 [0,43) and [0,22); rank 1 [43,86) and [22,44); rank 2 [86,128) and [44,64); each routed row sends 256 bytes to each other rank, its activations (512 bytes) are gathered by every rank, and 88 bytes of results come back from each other rank
// THREE-LABEL: func.func private @mixtral__rank2
// THREE: moe.dispatch {{.*}} experts = 24
// THREE: moe.all_to_all_dispatch {{.*}} bounds = [0, 8, 16, 24] rank = 2
// THREE: tensor.extract_slice %{{.+}}[0, 86, 0] [8, 42, 64]
// THREE: linalg.fill {{.*}} -> tensor<8x1x64xf32>
// THREE: tensor.extract_slice %{{.+}}[0, 214, 0] [8, 42, 64]
// THREE: linalg.fill {{.*}} -> tensor<8x1x64xf32>
// THREE: moe.activation swiglu {{.*}} -> tensor<?x43xf32>
// THREE: %[[G:.+]] = moe.all_gather_columns {{.*}} ranks = 3 rank = 2 : (tensor<?x43xf32>) -> tensor<?x129xf32>
// THREE: tensor.extract_slice %[[G]][0, 0] [%{{.+}}, 128] [1, 1] : tensor<?x129xf32> to tensor<?x128xf32>
// THREE: tensor.extract_slice %{{.+}}[0, 44, 0] [8, 20, 128]
// THREE: linalg.fill {{.*}} -> tensor<8x2x128xf32>
// THREE: moe.grouped_matmul {{.*}} -> tensor<?x22xf32>
// THREE: tensor.concat dim(1) {{.*}} -> tensor<?x66xf32>
// THREE: tensor.extract_slice {{.*}} to tensor<?x64xf32>
// THREE: moe.combine

// The cost model: 16 tokens x top-2 x 2 copies = 64 slots over 16 slots
// of experts; 32 rows go to the other rank (32 x 64 x 4 = 8192 bytes); the
// gate/up GEMM runs on both ranks' 64 rows with half the width
// (2 x 64 x 128 x 64), the gather sends 64 rows of 64 activations (16384
// bytes), the down GEMM is 2 x 64 x 32 x 128, and 32 rows of 32 results go
// back (4096 bytes).
// COST-LABEL: moe-cost-report @mixtral__rank0
// COST: sent to ranks
// COST: moe.all_to_all_dispatch {{.*}} 8192
// COST-NEXT: moe.grouped_matmul {{.*}} 1048576
// COST: moe.all_gather_columns {{.*}} 16384
// COST-NEXT: moe.grouped_matmul {{.*}} 524288
// COST-NEXT: moe.all_to_all_return {{.*}} 4096
// COST: total {{.*}} 28672
func.func @mixtral(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %up: tensor<8x256x64xf32>,
                   %down: tensor<8x64x128xf32>) -> (tensor<?x64xf32>, tensor<?x8xf32>) {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>}
    : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x256x64xf32>, tensor<8x64x128xf32>)
    -> (tensor<?x64xf32>, tensor<?x8xf32>)
  return %y, %z : tensor<?x64xf32>, tensor<?x8xf32>
}

// -----

// MoE++ with a capacity-free routing: the zero, copy and constant experts'
// slots are empty in every copy (never sent) and are computed on the
// token's rank from the routing's weights; the shared expert runs locally.
// A plain (ungated) activation takes one block of the up rows.
// CHECK-LABEL: func.func private @moepp__rank0
// CHECK: %[[W:.+]] = moe.topk
// CHECK: moe.dispatch {{.*}} experts = 16
// CHECK: tensor.extract_slice %{{.+}}[0, 0, 0] [8, 16, 32] [1, 1, 1]
// CHECK: moe.activation gelu {{.*}} -> tensor<?x16xbf16>
// CHECK: moe.all_gather_columns {{.*}} : (tensor<?x16xbf16>) -> tensor<?x32xbf16>
// CHECK: moe.combine {{.*}} -> tensor<8x32xbf16>
// CHECK: moe.zero_compute
// CHECK: moe.dense_ffn
func.func @moepp(%x: tensor<8x32xbf16>, %wr: tensor<11x32xbf16>, %up: tensor<8x32x32xbf16>, %down: tensor<8x32x32xbf16>,
                 %cv: tensor<1x32xbf16>, %cm: tensor<1x2x32xbf16>, %su: tensor<32x32xbf16>, %sd: tensor<32x32xbf16>)
    -> tensor<8x32xbf16> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) constant(%cv, %cm) shared(%su, %sd) {
      experts = [#moe.group<ffn, 8>, #moe.group<zero, 1>, #moe.group<copy, 1>, #moe.group<constant, 1>],
      activation = #moe.activation<gelu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<8x32xbf16>, tensor<11x32xbf16>, tensor<8x32x32xbf16>, tensor<8x32x32xbf16>, tensor<1x32xbf16>,
       tensor<1x2x32xbf16>, tensor<32x32xbf16>, tensor<32x32xbf16>)
    -> (tensor<8x32xbf16>, tensor<8x11xf32>)
  return %y : tensor<8x32xbf16>
}

// -----

// Constant weights: each rank's blocks become constants of their own (rank
// 1: rows 1 and 3 of the gate/up stack, row 1 of the down stack).
// Three ranks for two experts: no rank is left without work.
// THREE-LABEL: func.func private @constant_weights__rank2
// THREE: moe.all_gather_columns {{.*}} ranks = 3 rank = 2
// CHECK-LABEL: func.func private @constant_weights__rank1
// CHECK: moe.all_to_all_dispatch
// CHECK-NEXT: arith.constant dense<{{\[}}{{\[}}[2.000000e+00, 3.000000e+00], [6.000000e+00, 7.000000e+00]], {{\[}}[1.000000e+01, 1.100000e+01], [1.400000e+01, 1.500000e+01]]]> : tensor<2x2x2xf32>
// CHECK: moe.all_gather_columns
// CHECK-NEXT: arith.constant dense<{{\[}}{{\[}}[2.200000e+01, 2.300000e+01]], {{\[}}[2.600000e+01, 2.700000e+01]]]> : tensor<2x1x2xf32>
func.func @constant_weights(%x: tensor<?x2xf32>, %wr: tensor<2x2xf32>) -> tensor<?x2xf32> {
  %up = arith.constant dense<[[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]],
                              [[8.0, 9.0], [10.0, 11.0], [12.0, 13.0], [14.0, 15.0]]]> : tensor<2x4x2xf32>
  %down = arith.constant dense<[[[20.0, 21.0], [22.0, 23.0]], [[24.0, 25.0], [26.0, 27.0]]]> : tensor<2x2x2xf32>
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 2>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 1>}
    : (tensor<?x2xf32>, tensor<2x2xf32>, tensor<2x4x2xf32>, tensor<2x2x2xf32>) -> (tensor<?x2xf32>, tensor<?x2xf32>)
  return %y : tensor<?x2xf32>
}
