// RUN: moe-opt %s --moe-deduplicate-kernels --split-input-file | FileCheck %s

// Two outlined kernels with the same body (at different places of the
// program) become one; the one that scales by 3 stays on its own.
// CHECK-LABEL: func.func @three_launches
// CHECK: gpu.launch_func @add_kernel::@k
// CHECK: gpu.launch_func @add_kernel::@k
// CHECK: gpu.launch_func @scale_kernel::@k
// CHECK: gpu.module @add_kernel
// CHECK-NOT: gpu.module @add_kernel_0
// CHECK: gpu.module @scale_kernel
module attributes {gpu.container_module} {
  func.func @three_launches(%a: memref<16xf32>, %b: memref<16xf32>) {
    %c1 = arith.constant 1 : index
    %c16 = arith.constant 16 : index
    gpu.launch_func @add_kernel::@k blocks in (%c1, %c1, %c1) threads in (%c16, %c1, %c1) args(%a : memref<16xf32>, %b : memref<16xf32>)
    gpu.launch_func @add_kernel_0::@k blocks in (%c1, %c1, %c1) threads in (%c16, %c1, %c1) args(%b : memref<16xf32>, %a : memref<16xf32>)
    gpu.launch_func @scale_kernel::@k blocks in (%c1, %c1, %c1) threads in (%c16, %c1, %c1) args(%a : memref<16xf32>, %b : memref<16xf32>)
    return
  }
  gpu.module @add_kernel {
    gpu.func @k(%x: memref<16xf32>, %y: memref<16xf32>) kernel {
      %i = gpu.thread_id x
      %v = memref.load %x[%i] : memref<16xf32>
      %w = arith.addf %v, %v : f32
      memref.store %w, %y[%i] : memref<16xf32>
      gpu.return
    }
  }
  gpu.module @add_kernel_0 {
    gpu.func @k(%x: memref<16xf32>, %y: memref<16xf32>) kernel {
      %i = gpu.thread_id x
      %v = memref.load %x[%i] : memref<16xf32>
      %w = arith.addf %v, %v : f32
      memref.store %w, %y[%i] : memref<16xf32>
      gpu.return
    }
  }
  gpu.module @scale_kernel {
    gpu.func @k(%x: memref<16xf32>, %y: memref<16xf32>) kernel {
      %i = gpu.thread_id x
      %v = memref.load %x[%i] : memref<16xf32>
      %c3 = arith.constant 3.0 : f32
      %w = arith.mulf %v, %c3 : f32
      memref.store %w, %y[%i] : memref<16xf32>
      gpu.return
    }
  }
}

// -----

// Negative: kernels for different targets are different kernels.
// CHECK-LABEL: func.func @two_targets
// CHECK: gpu.launch_func @k80::@k
// CHECK: gpu.launch_func @k90::@k
// CHECK: gpu.module @k80
// CHECK: gpu.module @k90
module attributes {gpu.container_module} {
  func.func @two_targets(%a: memref<16xf32>) {
    %c1 = arith.constant 1 : index
    gpu.launch_func @k80::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%a : memref<16xf32>)
    gpu.launch_func @k90::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%a : memref<16xf32>)
    return
  }
  gpu.module @k80 [#nvvm.target<chip = "sm_80">] {
    gpu.func @k(%x: memref<16xf32>) kernel {
      gpu.return
    }
  }
  gpu.module @k90 [#nvvm.target<chip = "sm_90">] {
    gpu.func @k(%x: memref<16xf32>) kernel {
      gpu.return
    }
  }
}

// -----

// The same kernel outlined from two functions has two names: still one.
// CHECK-LABEL: func.func @two_names
// CHECK: gpu.launch_func @caller_kernel::@caller_kernel
// CHECK: gpu.launch_func @caller_kernel::@caller_kernel
// CHECK: gpu.module @caller_kernel
// CHECK-NEXT: gpu.func @caller_kernel
// CHECK-NOT: gpu.module
module attributes {gpu.container_module} {
  func.func @two_names(%a: memref<16xf32>) {
    %c1 = arith.constant 1 : index
    gpu.launch_func @caller_kernel::@caller_kernel blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%a : memref<16xf32>)
    gpu.launch_func @layer_kernel::@layer_kernel blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%a : memref<16xf32>)
    return
  }
  gpu.module @caller_kernel {
    gpu.func @caller_kernel(%x: memref<16xf32>) kernel {
      gpu.return
    }
  }
  gpu.module @layer_kernel {
    gpu.func @layer_kernel(%x: memref<16xf32>) kernel {
      gpu.return
    }
  }
}
