// RUN: moe-opt %s --split-input-file "--moe-cost-report=tokens=16" -o /dev/null | FileCheck %s
// RUN: moe-opt %s --split-input-file "--moe-cost-report=tokens=1" -o /dev/null | FileCheck %s --check-prefix=DECODE
// RUN: not moe-opt %s --split-input-file --moe-cost-report -o /dev/null 2>&1 | FileCheck %s --check-prefix=DYNAMIC

// Mixtral-8x7B, 16 tokens, top-2 of 8 (hand-computed):
//   router      2 * 16 * 8 * 4096              =      1048576
//   gate/up     2 * (16 * 2) * 28672 * 4096    =   7516192768
//   down        2 * (16 * 2) * 4096 * 14336    =   3758096384
//   total                                      =  11275337728
// With one token (decode) only 2 experts' weights are read: 2/8 of them.
// CHECK-LABEL: moe-cost-report @mixtral_moe (its moe.layer ops decomposed)
// CHECK: moe.router {{.*}} 1048576
// CHECK: moe.grouped_matmul {{.*}} 7516192768
// CHECK: moe.grouped_matmul {{.*}} 3758096384
// CHECK: total 11275337728
// CHECK: dispatch line {{[0-9]+}}: 32.0 filled slots over 8 experts (selected from 8), 4.00 rows per expert
// DECODE-LABEL: moe-cost-report @mixtral_moe
// DECODE: moe.grouped_matmul line {{[0-9]+}} 469762048 0 469762048
// DECODE: moe.grouped_matmul line {{[0-9]+}} 234881024 0 234881024
// DYNAMIC: error: moe-cost-report: dynamic token count; run with tokens=N
func.func @mixtral_moe(%x: tensor<?x4096xbf16>, %router: tensor<8x4096xbf16>, %w_gate_up: tensor<8x28672x4096xbf16>,
                       %w_down: tensor<8x4096x14336xbf16>) -> tensor<?x4096xbf16> {
  %y, %logits = moe.layer %x, %router ffn(%w_gate_up, %w_down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>}
    : (tensor<?x4096xbf16>, tensor<8x4096xbf16>, tensor<8x28672x4096xbf16>, tensor<8x4096x14336xbf16>)
    -> (tensor<?x4096xbf16>, tensor<?x8xf32>)
  return %y : tensor<?x4096xbf16>
}

// -----

// Shared expert and capacity, static 64 tokens: C = ceil(64 * 1 / 4 * 1.5) = 24
// padded rows per expert, so each expert's GEMM computes 24 rows.
//   router      2 * 64 * 4 * 32            =   16384
//   gate/up     2 * (4 * 24) * 32 * 32     =  196608
//   down        2 * (4 * 24) * 32 * 16     =   98304
//   shared      2 * 64 * (64 * 32 + 32 * 32) = 393216
// CHECK-LABEL: moe-cost-report @switch_with_shared
// CHECK: moe.router {{.*}} 16384
// CHECK: moe.grouped_matmul line {{[0-9]+}} 196608
// CHECK: moe.grouped_matmul line {{[0-9]+}} 98304
// CHECK: moe.dense_ffn line {{[0-9]+}} 393216
// CHECK: total 704512
// CHECK: dispatch line {{[0-9]+}}: 64.0 filled slots over 4 experts (selected from 4), 24.00 rows per expert
func.func @switch_with_shared(%x: tensor<64x32xf32>, %wr: tensor<4x32xf32>, %up: tensor<4x32x32xf32>,
                              %down: tensor<4x32x16xf32>, %su: tensor<64x32xf32>, %sd: tensor<32x32xf32>) -> tensor<64x32xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) shared(%su, %sd) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 1>, capacity = #moe.capacity<factor = 1.5, pad = true>}
    : (tensor<64x32xf32>, tensor<4x32xf32>, tensor<4x32x32xf32>, tensor<4x32x16xf32>, tensor<64x32xf32>, tensor<32x32xf32>)
    -> (tensor<64x32xf32>, tensor<64x4xf32>)
  return %y : tensor<64x32xf32>
}

// -----

// Mixtral-8x7B with 4-bit weights, scales per block of 32 (bf16): 0.5 +
// 2 / 32 = 0.5625 stored bytes per weight. At decode the two experts read:
//   gate/up  2 * 28672 * 4096 * 0.5625 = 132120576 (bf16: 469762048)
//   down     2 * 4096 * 14336 * 0.5625 =  66060288
// DECODE-LABEL: moe-cost-report @mixtral_int4
// DECODE: moe.grouped_matmul line {{[0-9]+}} 469762048 0 132120576
// DECODE: moe.grouped_matmul line {{[0-9]+}} 234881024 0 66060288
func.func @mixtral_int4(%x: tensor<?x4096xbf16>, %router: tensor<8x4096xbf16>, %q13: tensor<8x28672x2048xi8>,
                        %s13: tensor<8x28672x128xbf16>, %q2: tensor<8x4096x7168xi8>, %s2: tensor<8x4096x448xbf16>)
    -> tensor<?x4096xbf16> {
  %w13 = moe.dequantize %q13, %s13 {bits = 4, block_size = 32}
      : (tensor<8x28672x2048xi8>, tensor<8x28672x128xbf16>) -> tensor<8x28672x4096xbf16>
  %w2 = moe.dequantize %q2, %s2 {bits = 4, block_size = 32}
      : (tensor<8x4096x7168xi8>, tensor<8x4096x448xbf16>) -> tensor<8x4096x14336xbf16>
  %y, %logits = moe.layer %x, %router ffn(%w13, %w2) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>}
    : (tensor<?x4096xbf16>, tensor<8x4096xbf16>, tensor<8x28672x4096xbf16>, tensor<8x4096x14336xbf16>)
    -> (tensor<?x4096xbf16>, tensor<?x8xf32>)
  return %y : tensor<?x4096xbf16>
}

// -----

// Negative: a function without moe ops is not reported.
// CHECK-NOT: moe-cost-report @plain
func.func @plain(%a: tensor<4xf32>) -> tensor<4xf32> {
  return %a : tensor<4xf32>
}

// -----

// After MEO: compose 2 * 4 * 16 * 64 * 16 = 131072, merge 2 * 4 * 4 * 256 = 8192,
// one GEMM per token 2 * 512 * 16 * 16 = 262144 (against 2 * 2097152 unmerged).
// CHECK-LABEL: moe-cost-report @after_meo
// CHECK: moe.compose_experts line {{[0-9]+}} 131072
// CHECK: moe.merge_experts line {{[0-9]+}} 8192
// CHECK: moe.grouped_matmul line {{[0-9]+}} 262144
func.func @after_meo(%x: tensor<512x16xf32>, %gates: tensor<4x4xf32>, %up: tensor<4x64x16xf32>,
                     %down: tensor<4x16x64xf32>, %off: tensor<5xi32>) -> tensor<512x16xf32> {
  %p = moe.compose_experts %down, %up : (tensor<4x16x64xf32>, tensor<4x64x16xf32>) -> tensor<4x16x16xf32>
  %m = moe.merge_experts %p, %gates : (tensor<4x16x16xf32>, tensor<4x4xf32>) -> tensor<4x16x16xf32>
  %y = moe.grouped_matmul %x, %m, %off : (tensor<512x16xf32>, tensor<4x16x16xf32>, tensor<5xi32>) -> tensor<512x16xf32>
  return %y : tensor<512x16xf32>
}
