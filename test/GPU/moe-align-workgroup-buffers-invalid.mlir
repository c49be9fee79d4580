// RUN: not moe-opt %s --pass-pipeline="builtin.module(gpu.module(moe-align-workgroup-buffers{alignment=12}))" 2>&1 | FileCheck %s

// Negative: the alignment must be a power of two.
// CHECK: error: moe-align-workgroup-buffers: alignment must be a power of two, got 12
gpu.module @kernels {
  gpu.func @tiles() workgroup(%a : memref<64x40xbf16, #gpu.address_space<workgroup>>) kernel {
    gpu.return
  }
}
