// RUN: moe-opt %s --moe-map-to-gpu --split-input-file --verify-diagnostics

func.func @dynamic_scratch(%out: memref<?xf32>, %n: index, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %n step %c1 {
    // expected-error @+1 {{of dynamic size inside a GPU kernel is not supported}}
    %s = memref.alloc(%n) : memref<?xf32>
    memref.store %v, %s[%i] : memref<?xf32>
  }
  return
}

// -----

func.func @returns_device_value(%in: memref<8xf32>) -> f32 {
  %c0 = arith.constant 0 : index
  %x = memref.load %in[%c0] : memref<8xf32>
  // expected-error @+1 {{returns a value computed on the GPU}}
  return %x : f32
}

// -----

func.func @strided_copy(%src: memref<4x8xf32>, %dst: memref<4x4xf32>) {
  %sub = memref.subview %src[0, 0] [4, 4] [1, 1] : memref<4x8xf32> to memref<4x4xf32, strided<[8, 1]>>
  // expected-error @+1 {{between strided buffers cannot be a GPU memcpy}}
  memref.copy %sub, %dst : memref<4x4xf32, strided<[8, 1]>> to memref<4x4xf32>
  return
}

