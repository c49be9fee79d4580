// RUN: moe-opt %s --moe-shard-experts="ranks=2" --split-input-file 2>/dev/null | FileCheck %s
// RUN: moe-opt %s --moe-shard-experts="ranks=2 placement=round-robin" --split-input-file 2>/dev/null | FileCheck %s --check-prefix=RR
// RUN: moe-opt %s --moe-shard-experts="ranks=2 placement=balanced expert-loads=8,1,1,1,1,1,1,8" --split-input-file 2>&1 >/dev/null | FileCheck %s --check-prefix=BAL
// RUN: moe-opt %s --moe-shard-experts="ranks=3" --split-input-file 2>&1 >/dev/null | FileCheck %s --check-prefix=THREE
// RUN: moe-opt %s --moe-shard-experts="ranks=2" "--moe-cost-report=tokens=16" --split-input-file -o /dev/null 2>/dev/null | FileCheck %s --check-prefix=COST
// RUN: moe-opt %s --moe-shard-experts="ranks=3 placement=balanced expert-loads=30,1,1,1,1,1,1,10 replicas=2" --split-input-file 2>&1 | FileCheck %s --check-prefix=REP

// Mixtral on 2 ranks: the entry dispatches on the rank; each rank's copy
// routes its own tokens, exchanges rows, runs its 4 experts (a view of the
// stack) and combines what comes back.
// CHECK-LABEL: func.func @mixtral
// CHECK: %[[RANK:.+]] = moe.ep_rank ranks = 2 : index
// CHECK: scf.if
// CHECK: call @mixtral__rank0(
// CHECK: call @mixtral__rank1(
// CHECK: tensor.empty() : tensor<0x64xf32>
// CHECK-LABEL: func.func private @mixtral__rank0
// CHECK-NOT: moe.layer
// CHECK: moe.topk
// CHECK: %[[ROWS:.+]], %[[OFF:.+]], %[[SR:.+]], %[[SW:.+]] = moe.dispatch
// CHECK: %[[XS:.+]] = moe.permute
// CHECK: %[[RECV:.+]], %[[LOFF:.+]], %[[COUNTS:.+]] = moe.all_to_all_dispatch %[[XS]], %[[OFF]] bounds = [0, 4, 8] rank = 0
// CHECK: tensor.extract_slice %{{.+}}[0, 0, 0] [4, 256, 64] [1, 1, 1]
// CHECK: moe.grouped_matmul %[[RECV]], %{{.+}}, %[[LOFF]]
// CHECK: %[[O:.+]] = moe.grouped_matmul {{.*}} -> tensor<?x64xf32>
// CHECK: %[[BACK:.+]] = moe.all_to_all_return %[[O]], %[[COUNTS]], %[[OFF]] rows = %{{.+}} bounds = [0, 4, 8] rank = 0
// CHECK: moe.combine %[[BACK]], %[[SR]], %[[SW]]
// CHECK-LABEL: func.func private @mixtral__rank1
// CHECK: moe.all_to_all_dispatch {{.*}} bounds = [0, 4, 8] rank = 1
// CHECK: tensor.extract_slice %{{.+}}[4, 0, 0] [4, 256, 64] [1, 1, 1]

// The cost model sees the exchange: 16 tokens x top-2 = 32 rows, 4 per
// expert; 16 go to the other rank's 4 experts (16 x 64 x 4 bytes = 4096
// bytes each way), and this rank's GEMMs run on 2 x 16 = 32 received rows:
// 2 x 32 x 256 x 64 = 1048576 FLOP for the gate/up GEMM.
// COST-LABEL: moe-cost-report @mixtral__rank0
// COST: sent to ranks
// COST: moe.all_to_all_dispatch {{.*}} 16384 4096
// COST-NEXT: moe.grouped_matmul {{.*}} 1048576
// COST: moe.all_to_all_return {{.*}} 16384 4096
// COST: total {{.*}} 8192

// Two replicas of the hottest expert (0: 30 of 46 loads) on the three ranks:
// 10 slots; each rank routes expert 0 to its own copy (slot 0, 2, 6).
// REP-LABEL: remark: expert placement (balanced, 3 ranks, measured loads): 2 replicas; rank 0 experts [0,7] 43.5% of rows; rank 1 experts [0,1,3,5] 28.3% of rows; rank 2 experts [0,2,4,6] 28.3% of rows
// REP-SAME: expected share sent off-rank with tokens spread evenly: 23.2%
// REP-LABEL: func.func private @mixtral__rank0
// REP: arith.constant dense<[0, 3, 7, 4, 8, 5, 9, 1]> : tensor<8xi32>
// REP: moe.dispatch {{.*}} experts = 10
// REP: moe.all_to_all_dispatch {{.*}} bounds = [0, 2, 6, 10] rank = 0
// REP-LABEL: func.func private @mixtral__rank1
// REP: arith.constant dense<[2, 3, 7, 4, 8, 5, 9, 1]> : tensor<8xi32>
// REP-LABEL: func.func private @mixtral__rank2
// REP: arith.constant dense<[6, 3, 7, 4, 8, 5, 9, 1]> : tensor<8xi32>

// Round-robin renumbers the experts (rank 0 owns 0, 2, 4, 6) and gathers
// the rank's weights from four slices.
// RR-LABEL: func.func private @mixtral__rank0
// RR: arith.constant dense<[0, 4, 1, 5, 2, 6, 3, 7]> : tensor<8xi32>
// RR: linalg.generic
// RR: moe.dispatch
// RR: moe.all_to_all_dispatch {{.*}} bounds = [0, 4, 8] rank = 0
// RR: tensor.extract_slice %{{.+}}[6, 0, 0] [1, 256, 64]
// RR: tensor.concat dim(0)

// Balanced: the two heavy experts on different ranks, 9 of 18 loads each.
// BAL-LABEL: remark: expert placement (balanced, 2 ranks, measured loads): rank 0 experts [0,1,3,5] 50.0% of rows; rank 1 experts [2,4,6,7] 50.0% of rows
// THREE-LABEL: remark: expert placement (contiguous, 3 ranks): rank 0 experts [0,1,2] 37.5% of rows; rank 1 experts [3,4,5] 37.5% of rows; rank 2 experts [6,7] 25.0% of rows; each routed row sent to another rank moves 256 bytes there and 256 back (expected share sent off-rank with tokens spread evenly: 66.7%)
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

// MoE++: only the 8 FFN experts are placed (bounds end at 8); the zero,
// copy and constant experts are computed on the token's own rank from the
// layer's own expert ids; the shared expert runs locally.
// CHECK-LABEL: func.func private @moepp__rank1
// CHECK: %[[I:.+]] = moe.topk
// CHECK: moe.dispatch {{.*}} experts = 11
// CHECK: moe.all_to_all_dispatch {{.*}} bounds = [0, 4, 8] rank = 1 : (tensor<16x32xbf16>, tensor<12xi32>)
// CHECK: moe.all_to_all_return {{.*}} -> tensor<16x32xf32>
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

// Constant weights: each rank's experts become a constant of their own
// (experts 0, 2, 4, 6 on rank 0 under round-robin), never a copy at run time.
// RR-LABEL: func.func private @constant_weights__rank0
// RR: moe.all_to_all_dispatch
// RR-NEXT: arith.constant dense<{{\[}}{{\[}}[0.000000e+00]], {{\[}}[2.000000e+00]], {{\[}}[4.000000e+00]], {{\[}}[6.000000e+00]]]> : tensor<4x1x1xf32>
// RR-NEXT: moe.grouped_matmul
// RR-NEXT: moe.activation
// RR-NEXT: arith.constant dense<{{\[}}{{\[}}[1.000000e+01]], {{\[}}[1.200000e+01]], {{\[}}[1.400000e+01]], {{\[}}[1.600000e+01]]]> : tensor<4x1x1xf32>
// RR-NEXT: moe.grouped_matmul
// RR-LABEL: func.func private @constant_weights__rank1
// RR: moe.all_to_all_dispatch
// RR-NEXT: arith.constant dense<{{\[}}{{\[}}[1.000000e+00]], {{\[}}[3.000000e+00]], {{\[}}[5.000000e+00]], {{\[}}[7.000000e+00]]]> : tensor<4x1x1xf32>
func.func @constant_weights(%x: tensor<?x1xf32>, %wr: tensor<8x1xf32>) -> tensor<?x1xf32> {
  %up = arith.constant dense<[[[0.0]], [[1.0]], [[2.0]], [[3.0]], [[4.0]], [[5.0]], [[6.0]], [[7.0]]]> : tensor<8x1x1xf32>
  %down = arith.constant dense<[[[10.0]], [[11.0]], [[12.0]], [[13.0]], [[14.0]], [[15.0]], [[16.0]], [[17.0]]]> : tensor<8x1x1xf32>
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<relu>,
      routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<?x1xf32>, tensor<8x1xf32>, tensor<8x1x1xf32>, tensor<8x1x1xf32>) -> (tensor<?x1xf32>, tensor<?x8xf32>)
  return %y : tensor<?x1xf32>
}


// -----

// A rank's copy whose name the module already uses gets a suffix.
// CHECK-LABEL: func.func @clash
// CHECK: call @clash__rank0_0(
// CHECK: call @clash__rank1(
// CHECK: func.func private @clash__rank0_0(
// CHECK: func.func private @clash__rank1(
// CHECK: func.func private @clash__rank0(%{{.+}}: tensor<?x64xf32>) -> tensor<?x64xf32>
func.func @clash(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %up: tensor<8x256x64xf32>,
                 %down: tensor<8x64x128xf32>) -> tensor<?x64xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>}
    : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x256x64xf32>, tensor<8x64x128xf32>)
    -> (tensor<?x64xf32>, tensor<?x8xf32>)
  return %y : tensor<?x64xf32>
}
func.func private @clash__rank0(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  return %x : tensor<?x64xf32>
}
