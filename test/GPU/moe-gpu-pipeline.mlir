// The whole GPU pipeline on a Mixtral-shaped layer: every kernel becomes a
// cubin for the chosen chip (through ptxas), the host function allocates
// device memory and launches on one stream, results are out-parameters.
// RUN: moe-opt %S/Inputs/mixtral-small.mlir --moe-gpu-pipeline=chip=sm_90 | FileCheck %s --check-prefixes=CHECK,SM90
// RUN: moe-opt %S/Inputs/mixtral-small.mlir --moe-gpu-pipeline=chip=sm_80 | FileCheck %s --check-prefixes=CHECK,SM80
// PTX instead of cubins (the driver JIT-compiles it); no kernel spills.
// RUN: moe-opt %S/Inputs/mixtral-small.mlir --moe-gpu-pipeline=format=isa \
// RUN:   | %moe_python %moe_src_root/scripts/ptxas-report.py --arch sm_90 --no-spills | FileCheck %s --check-prefix=SPILLS
// The full-size Mixtral-8x7B layer (bf16, dynamic tokens) after moe-optimize:
// all its kernels, the tensor-core GEMMs included, compile without spills
// for both chips.
// RUN: moe-opt %moe_src_root/examples/mixtral_layer.mlir --moe-optimize --moe-gpu-pipeline=format=isa \
// RUN:   | %moe_python %moe_src_root/scripts/ptxas-report.py --arch sm_90 --no-spills | FileCheck %s --check-prefix=SPILLS
// RUN: moe-opt %moe_src_root/examples/mixtral_layer.mlir --moe-optimize --moe-gpu-pipeline="format=isa chip=sm_80 features=+ptx70" \
// RUN:   | %moe_python %moe_src_root/scripts/ptxas-report.py --arch sm_80 --no-spills | FileCheck %s --check-prefix=SPILLS
// Its grouped GEMMs run on tensor cores: ldmatrix fragments, bf16 mma.sync.
// RUN: moe-opt %moe_src_root/examples/mixtral_layer.mlir --moe-optimize --moe-gpu-pipeline=format=isa \
// RUN:   | FileCheck %s --check-prefix=TENSORCORES
// The tensor-core kernels' shared tiles are 16-byte aligned, filled by
// 16-byte cp.async (zero-fill operand), waited for, read by ldmatrix.
// TENSORCORES: .shared .align 16 .b8 __wg_mixtral_moe_kernel{{(_[0-9]+)?}}_0[10240];
// TENSORCORES: cp.async.cg.shared.global
// TENSORCORES: cp.async.commit_group;
// TENSORCORES: cp.async.wait_group
// TENSORCORES: ldmatrix.sync.aligned.m8n8.x4.shared.b16
// TENSORCORES: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// sm_90a with wgmma: the grouped GEMMs are Hopper kernels (TMA boxes into
// an mbarrier pipeline, wgmma m64n128k16), compiled to a cubin, and no
// kernel spills.
// RUN: moe-opt %moe_src_root/examples/mixtral_layer.mlir --moe-optimize --moe-gpu-pipeline="chip=sm_90a wgmma" \
// RUN:   | FileCheck %s --check-prefix=HOPPERBIN
// RUN: moe-opt %moe_src_root/examples/mixtral_layer.mlir --moe-optimize --moe-gpu-pipeline="format=isa chip=sm_90a wgmma" \
// RUN:   | FileCheck %s --check-prefix=HOPPER
// RUN: moe-opt %moe_src_root/examples/mixtral_layer.mlir --moe-optimize --moe-gpu-pipeline="format=isa chip=sm_90a wgmma" \
// RUN:   | %moe_python %moe_src_root/scripts/ptxas-report.py --arch sm_90a --no-spills | FileCheck %s --check-prefix=SPILLS
// HOPPERBIN: llvm.call @moeTensorMapCreateBF16
// HOPPERBIN: gpu.launch_func {{.*}} dynamic_shared_memory_size
// HOPPERBIN: gpu.binary @mixtral_moe_kernel{{.*}}chip = "sm_90a"{{.*}}bin = "
// HOPPER: mbarrier.init.shared.b64
// HOPPER: mbarrier.arrive.expect_tx.shared.b64
// HOPPER: cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes
// HOPPER: cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes
// HOPPER: mbarrier.try_wait.parity.shared.b64
// HOPPER: wgmma.fence.sync.aligned
// HOPPER: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
// HOPPER: wgmma.commit_group.sync.aligned
// HOPPER: wgmma.wait_group.sync.aligned
// wgmma is an sm_90a instruction: asking for it on sm_90 is a located error.
// RUN: not moe-opt %moe_src_root/examples/mixtral_layer.mlir --moe-gpu-pipeline="chip=sm_90 wgmma" 2>&1 \
// RUN:   | FileCheck %s --check-prefix=NOTSM90A
// NOTSM90A: mixtral_layer.mlir:{{[0-9]+}}:{{[0-9]+}}: error: 'nvvm.wgmma.fence.aligned' op is not supported on sm_90
// A bad chip is a located error, not a crash.
// RUN: not moe-opt %S/Inputs/mixtral-small.mlir --moe-gpu-pipeline=chip=sm_12345 2>&1 | FileCheck %s --check-prefix=BADCHIP

// CHECK-LABEL: llvm.func @small(
// CHECK: llvm.call @mgpuStreamCreate()
// CHECK: llvm.call @mgpuMemAlloc
// CHECK: gpu.launch_func <%{{.*}} : !llvm.ptr> @small_kernel::@small_kernel
// CHECK: llvm.call @mgpuMemFree
// CHECK: llvm.call @mgpuStreamSynchronize
// CHECK: llvm.call @mgpuStreamDestroy
// CHECK-LABEL: llvm.func @_mlir_ciface_small(
// SM90: gpu.binary @small_kernel [#gpu.object<#nvvm.target<O = 3, chip = "sm_90", features = "+ptx80">, {{.*}}bin = "
// SM80: gpu.binary @small_kernel [#gpu.object<#nvvm.target<O = 3, chip = "sm_80", features = "+ptx80">, {{.*}}bin = "
// CHECK-NOT: memref.

// SPILLS: kernels for sm_{{[89]}}0{{a?}}, 0 bytes spilled

// BADCHIP: error:
