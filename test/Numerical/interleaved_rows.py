# Expert weights whose gate and up rows are stored interleaved (ONNX
# Runtime's swiglu_fusion = 1: g0 u0 g1 u1 ...), regrouped by a reshape, a
# transpose and a reshape in the program (as the ONNX import writes it for
# weights that are inputs) and read by moe.grouped_matmul. The CPU kernel
# reads each expert's rows from the stored weights in place
# (lib/Conversion/MoeToLinalg/InterleavedRows.cpp); the GPU emulation
# transposes. Random weights and tokens against float64 numpy; the shapes
# leave partial register tiles (rows per expert 0, 1, 2, 3, 7; k not a
# multiple of the vector) and run with the 256-bit tiles too. f32 rel err
# <= 1e-5; bf16 (inputs rounded to bf16, f32 accumulation, bf16 result)
# <= 8e-3.
# RUN: %moe_python %s

import numpy as np

from moe_reference.harness import main
from moe_reference.numerics import round_to

rng = np.random.default_rng(5)
E = 5
OFFSETS = np.array([0, 1, 1, 3, 6, 13])


def case(name, half, k, dtype):
    rows = 2 * half
    stored = round_to(rng.standard_normal((E, rows, k)) / np.sqrt(k), dtype)
    x = round_to(rng.standard_normal((int(OFFSETS[-1]), k)), dtype)
    regrouped = np.concatenate([stored[:, 0::2], stored[:, 1::2]], axis=1)
    y = np.zeros((x.shape[0], rows))
    for e in range(E):
        y[OFFSETS[e]:OFFSETS[e + 1]] = x[OFFSETS[e]:OFFSETS[e + 1]].astype(np.float64) @ regrouped[e].T
    t = dtype
    w_type = f"tensor<{E}x{rows}x{k}x{t}>"
    mlir = f"""func.func @main(%w: {w_type}, %x: tensor<?x{k}x{t}>, %off: tensor<{E + 1}xi32>) -> tensor<?x{rows}x{t}> {{
  %pairs = tensor.expand_shape %w [[0], [1, 2], [3]] output_shape [{E}, {half}, 2, {k}]
      : {w_type} into tensor<{E}x{half}x2x{k}x{t}>
  %init = tensor.empty() : tensor<{E}x2x{half}x{k}x{t}>
  %tr = linalg.transpose ins(%pairs : tensor<{E}x{half}x2x{k}x{t}>) outs(%init : tensor<{E}x2x{half}x{k}x{t}>)
      permutation = [0, 2, 1, 3]
  %g = tensor.collapse_shape %tr [[0], [1, 2], [3]] : tensor<{E}x2x{half}x{k}x{t}> into {w_type}
  %y = moe.grouped_matmul %x, %g, %off : (tensor<?x{k}x{t}>, {w_type}, tensor<{E + 1}xi32>) -> tensor<?x{rows}x{t}>
  return %y : tensor<?x{rows}x{t}>
}}
"""
    tol = 1e-5 if dtype == "f32" else 8e-3
    return (name, dict(mlir=mlir, inputs=[(stored, dtype), (x, dtype), (OFFSETS, "i32")], expected=[(y, dtype)],
                       tol=tol))


CASES = [case("f32_partial_tiles", 11, 37, "f32"), case("f32_long_rows", 24, 160, "f32"),
         case("bf16_partial_tiles", 9, 70, "bf16")]
main(CASES, cpu_vector_bits=[256])
