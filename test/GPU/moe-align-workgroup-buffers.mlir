// RUN: moe-opt %s --split-input-file --verify-diagnostics \
// RUN:   --pass-pipeline="builtin.module(gpu.module(moe-align-workgroup-buffers))" | FileCheck %s
// RUN: moe-opt %s --split-input-file --verify-diagnostics \
// RUN:   --pass-pipeline="builtin.module(gpu.module(moe-align-workgroup-buffers{alignment=128}))" \
// RUN:   | FileCheck %s --check-prefix=WIDE

// Every workgroup buffer without an alignment gets 16 bytes (or the
// option's); one that has an alignment keeps it.
// CHECK-LABEL: gpu.func @tiles
// CHECK-SAME: workgroup(%{{.*}} : memref<64x40xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %{{.*}} : memref<2x64x40xbf16, #gpu.address_space<workgroup>> {llvm.align = 64 : i64})
// WIDE-LABEL: gpu.func @tiles
// WIDE-SAME: {llvm.align = 128 : i64}, %{{.*}} : memref<2x64x40xbf16, #gpu.address_space<workgroup>> {llvm.align = 64 : i64})
gpu.module @kernels {
  gpu.func @tiles() workgroup(%a : memref<64x40xbf16, #gpu.address_space<workgroup>>,
                              %b : memref<2x64x40xbf16, #gpu.address_space<workgroup>> {llvm.align = 64 : i64}) kernel {
    gpu.return
  }
}

// -----

// A kernel without shared memory is left as it is.
// CHECK-LABEL: gpu.func @no_shared
// CHECK-NOT: llvm.align
// WIDE-LABEL: gpu.func @no_shared
gpu.module @kernels {
  gpu.func @no_shared(%x : memref<4xf32>) kernel {
    gpu.return
  }
}
