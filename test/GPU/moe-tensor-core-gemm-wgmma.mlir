// RUN: moe-opt %s --split-input-file --convert-moe-to-linalg=parallel-contractions \
// RUN:   --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" \
// RUN:   --moe-tensor-core-gemm=wgmma | FileCheck %s
// With emulate: the Hopper kernel for moe-gpu-launch-to-loops (one thread,
// the TMA boxes as copies into the same 4-stage ring on the same schedule,
// scalar products, the D fragment layout and the epilogue for each of the
// 128 thread ids).
// RUN: moe-opt %s --split-input-file --convert-moe-to-linalg=parallel-contractions \
// RUN:   --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" \
// RUN:   --moe-tensor-core-gemm="wgmma emulate" | FileCheck %s --check-prefix=EMU

// The Hopper kernel for a bf16 grouped matmul (K = 72, a multiple of 8): the
// host creates TMA descriptors for the lhs and the expert weights (calls
// left on the host by moe-map-to-gpu), then launches one warpgroup per
// 64 x 128 tile with 99360 bytes of dynamic shared memory (4 stages of
// 24 KiB, 4 mbarriers, 1 KiB to align the swizzled tiles). Thread 0 inits
// the mbarriers and issues the prologue loads; each K step refills the
// stage three steps ahead, waits on its stage's mbarrier with the step's
// phase parity, and issues four m64n128k16 wgmma (A row-major, B K-major,
// f32 accumulators in a struct of 64), waits for them and syncs. The
// accumulators go through shared memory to the epilogue, which stores the
// rows of the tile's row group (rounded to bf16).
// CHECK-LABEL: func.func private @moeTensorMapCreateBF16(memref<*xbf16>, i64, i64) -> !llvm.ptr
// CHECK-LABEL: func.func @bf16
// CHECK-NOT: moe.grouped_gemm
// CHECK: %[[MAPA:.*]] = call @moeTensorMapCreateBF16(%{{.*}}, %c64_i64{{[_0-9]*}}, %c64_i64{{[_0-9]*}}) {moe.host_call}
// CHECK: %[[MAPW:.*]] = call @moeTensorMapCreateBF16(%{{.*}}, %c64_i64{{[_0-9]*}}, %c64_i64{{[_0-9]*}}) {moe.host_call}
// CHECK: gpu.launch {{.*}} threads({{.*}}) in ({{.*}} = %c128{{.*}}) dynamic_shared_memory_size %c99360_i32
// CHECK: gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<64x132xf32, #gpu.address_space<workgroup>>
// CHECK: nvvm.mbarrier.init
// CHECK: nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// CHECK: gpu.barrier
// CHECK: scf.if {{.*}} -> (index)
// CHECK: llvm.mlir.zero : !llvm.struct<(f32, f32
// CHECK: nvvm.mbarrier.arrive.expect_tx %{{.*}}, %c24576_i32
// CHECK: nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.*}}, %[[MAPA]], %{{.*}}, box[%{{.*}}, %{{.*}}]
// CHECK: nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.*}}, %[[MAPW]], %{{.*}}, box[%{{.*}}, %{{.*}}, %{{.*}}]
// CHECK: nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.*}}, %[[MAPW]], %{{.*}}, box[%{{.*}}, %{{.*}}, %{{.*}}]
// CHECK: scf.for
// CHECK: nvvm.mbarrier.try_wait.parity
// CHECK: nvvm.wgmma.fence.aligned
// CHECK-COUNT-4: nvvm.wgmma.mma_async {{.*}}<m = 64, n = 128, k = 16>, D[<f32>, <one>], A[<bf16>, <one>, <row>], B[<bf16>, <one>, <col>]
// CHECK: nvvm.wgmma.commit.group.sync.aligned
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: gpu.barrier
// CHECK: llvm.extractvalue
// CHECK: memref.store %{{.*}} : memref<64x132xf32, #gpu.address_space<workgroup>>
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: nvvm.fence.proxy
// CHECK: gpu.terminator
// CHECK-NOT: nvvm.mma.sync
// EMU-LABEL: func.func @bf16
// EMU-NOT: moeTensorMapCreate
// EMU: memref.alloc() : memref<4x64x64xbf16>
// EMU: memref.alloc() : memref<4x128x64xbf16>
// EMU: memref.alloc() : memref<64x128xf32>
// EMU: memref.alloc() : memref<64x132xf32>
// EMU: gpu.launch {{.*}} threads({{.*}}) in ({{.*}} = %c1{{.*}}, {{.*}} = %c1{{.*}}, {{.*}} = %c1{{.*}}) {
// EMU-NOT: memref.alloca
// EMU-NOT: nvvm.
// EMU: gpu.terminator
func.func @bf16(%x: tensor<?x72xbf16>, %w: tensor<4x80x72xbf16>, %off: tensor<5xi32>) -> tensor<?x80xbf16> {
  %y = moe.grouped_matmul %x, %w, %off : (tensor<?x72xbf16>, tensor<4x80x72xbf16>, tensor<5xi32>) -> tensor<?x80xbf16>
  return %y : tensor<?x80xbf16>
}

// -----

// f16 with a shared expert: a third (2-D) descriptor, chosen for the last
// row group; the wgmma takes f16 operands.
// CHECK-LABEL: func.func private @moeTensorMapCreateF16(memref<*xf16>, i64, i64) -> !llvm.ptr
// CHECK-LABEL: func.func @f16_shared
// CHECK-COUNT-3: call @moeTensorMapCreateF16
// CHECK: gpu.launch
// CHECK: scf.if
// CHECK: nvvm.cp.async.bulk.tensor.shared.cluster.global {{.*}} box[%{{.*}}, %{{.*}}] :
// CHECK: } else {
// CHECK: nvvm.cp.async.bulk.tensor.shared.cluster.global {{.*}} box[%{{.*}}, %{{.*}}, %{{.*}}] :
// CHECK: nvvm.wgmma.mma_async {{.*}}A[<f16>, <one>, <row>], B[<f16>, <one>, <col>]
func.func @f16_shared(%x: tensor<20x48xf16>, %w: tensor<3x32x48xf16>, %off: tensor<5xi32>,
                      %s: tensor<32x48xf16>) -> tensor<20x32xf16> {
  %y = moe.grouped_matmul %x, %w, %off shared(%s)
      : (tensor<20x48xf16>, tensor<3x32x48xf16>, tensor<5xi32>, tensor<32x48xf16>) -> tensor<20x32xf16>
  return %y : tensor<20x32xf16>
}

// -----

// The GLU moves into the epilogue: a block covers 64 output columns (grid x
// = ceil(40 / 64)); its weight tile is 64 gate rows and the 64 up rows F
// further (the second box at column base + 40); the epilogue applies the
// activation to the gate product at column c and the up product at c + 64.
// CHECK-LABEL: func.func @swiglu_epilogue
// CHECK-NOT: memref<?x80xf32>
// CHECK: gpu.launch
// CHECK: nvvm.cp.async.bulk.tensor.shared.cluster.global
// CHECK: nvvm.wgmma.mma_async
// CHECK: math.exp
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: memref.store %{{.*}} : memref<?x40xbf16>
func.func @swiglu_epilogue(%x: tensor<?x72xbf16>, %w: tensor<4x80x72xbf16>, %off: tensor<5xi32>) -> tensor<?x40xbf16> {
  %y = moe.grouped_matmul_act swiglu %x, %w, %off
      : (tensor<?x72xbf16>, tensor<4x80x72xbf16>, tensor<5xi32>) -> tensor<?x40xbf16>
  return %y : tensor<?x40xbf16>
}

// -----

// K = 36: a row is 72 bytes, not a multiple of 16, so TMA cannot load it;
// the mma.sync kernel is built instead.
// CHECK-LABEL: func.func @odd_depth
// CHECK-NOT: moeTensorMapCreate
// CHECK: gpu.launch {{.*}} workgroup(
// CHECK: nvvm.mma.sync
// CHECK-NOT: nvvm.wgmma
func.func @odd_depth(%x: tensor<?x36xbf16>, %w: tensor<4x80x36xbf16>, %off: tensor<5xi32>) -> tensor<?x80xbf16> {
  %y = moe.grouped_matmul %x, %w, %off : (tensor<?x36xbf16>, tensor<4x80x36xbf16>, tensor<5xi32>) -> tensor<?x80xbf16>
  return %y : tensor<?x80xbf16>
}
