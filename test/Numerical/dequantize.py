# moe.dequantize (packed 2/4/8-bit expert weights, scales per row or per
# block, with and without zero points) against a float64 numpy reference:
# on its own (one elementwise generic), and read by moe.grouped_matmul,
# which on the CPU dequantises only the experts with rows (one group here is
# empty): in the contraction kernel's loads when every vector of 16 (512-bit
# tiles) or 8 (256-bit tiles, run too) values lies in one block, else into
# one expert's float copy (blocks of 8 with 512-bit tiles). 4- and 2-bit
# values whose kernel steps (values per byte x lanes) lie in one block are
# taken a field of their bytes at a time, rows of tokens deinterleaved to
# match; the "long" shape (K = 128) takes that path with 512-bit tiles too,
# with tiles of exactly the 2, 3 or 1 rows left after 4-row tiles. With
# interleaved_rows the stored rows alternate gate and up (ORT's swiglu_fusion
# = 1) and the reference regroups them. Random bytes, scales and tokens.
# f32 results rel err <= 1e-5; bf16 results (weights rounded to bf16 as the
# op does) <= 8e-3.
# RUN: %moe_python %s

import numpy as np

from moe_reference.harness import main
from moe_reference.numerics import round_to

rng = np.random.default_rng(11)
E, N = 4, 24
# K and the rows of each expert; expert 1 has no rows.
SHAPES = {"small": (32, np.array([0, 13, 13, 29, 40])),
          # Rows left after 4-row tiles: 2, 3 and 1; K = 128 holds whole
          # 64-value steps of 2-bit fields.
          "long": (128, np.array([0, 6, 6, 13, 14]))}


def dequantize(packed, scales, zero_points, bits, block, K):
    """w[e, n, k] = (q - z) * s, values low bits first in each byte."""
    pack = 8 // bits
    q = np.stack([(packed.astype(np.int64) >> (bits * j)) & ((1 << bits) - 1) for j in range(pack)], axis=-1)
    q = q.reshape(E, N, K)
    per = block or K
    z = np.full(scales.shape, 1 << (bits - 1)) if zero_points is None else zero_points.astype(np.int64)
    s = scales.reshape(E, N, -1)
    z = z.reshape(E, N, -1)
    return (q - np.repeat(z, per, axis=2)) * np.repeat(s, per, axis=2)


def mlir_literal(array):
    """An i8 dense literal of bytes (as signed values)."""
    return "[" + ", ".join(mlir_literal(a) for a in array) + "]" if array.ndim else str(int(array))


def regrouped(a):
    """Rows g0 u0 g1 u1 ... of each expert as [g0 g1 ...; u0 u1 ...]."""
    return np.concatenate([a[:, 0::2], a[:, 1::2]], axis=1)


def case(name, bits, block, zero_points, dtype, interleaved=False, shape="small"):
    K, OFFSETS = SHAPES[shape]
    ROWS = int(OFFSETS[-1])
    pack = 8 // bits
    packed = rng.integers(0, 256, (E, N, K // pack)).astype(np.uint8)
    scale_shape = (E, N, K // block) if block else (E, N)
    scales = round_to(rng.uniform(0.01, 0.1, scale_shape), dtype)
    zp = rng.integers(0, 1 << bits, scale_shape).astype(np.uint8) if zero_points else None
    x = round_to(rng.standard_normal((ROWS, K)), dtype)
    w = dequantize(packed, scales, zp, bits, block, K)
    w = round_to(regrouped(w) if interleaved else w, dtype)
    y = np.zeros((ROWS, N))
    for e in range(E):
        y[OFFSETS[e]:OFFSETS[e + 1]] = x[OFFSETS[e]:OFFSETS[e + 1]] @ w[e].T
    t = dtype
    s_type = f"tensor<{'x'.join(map(str, scale_shape))}x{t}>"
    q_type = f"tensor<{E}x{N}x{K // pack}xi8>"
    w_type = f"tensor<{E}x{N}x{K}x{t}>"
    consts = f"  %q = arith.constant dense<{mlir_literal(packed.view(np.int8))}> : {q_type}\n"
    zp_use, zp_type = "", ""
    if zero_points:
        z_type = s_type.replace(t, "i8")
        consts += f"  %z = arith.constant dense<{mlir_literal(zp.view(np.int8))}> : {z_type}\n"
        zp_use, zp_type = " zero_points(%z)", f", {z_type}"
    attrs = f"{{bits = {bits}, block_size = {block}{', interleaved_rows' if interleaved else ''}}}"
    dq = f"  %w = moe.dequantize %q, %s{zp_use} {attrs} : ({q_type}, {s_type}{zp_type}) -> {w_type}\n"
    alone = f"func.func @main(%s: {s_type}) -> {w_type} {{\n{consts}{dq}  return %w : {w_type}\n}}\n"
    in_gemm = (f"func.func @main(%s: {s_type}, %x: tensor<{ROWS}x{K}x{t}>, %off: tensor<{E + 1}xi32>)"
               f" -> tensor<{ROWS}x{N}x{t}> {{\n{consts}{dq}"
               f"  %y = moe.grouped_matmul %x, %w, %off : (tensor<{ROWS}x{K}x{t}>, {w_type}, tensor<{E + 1}xi32>)"
               f" -> tensor<{ROWS}x{N}x{t}>\n  return %y : tensor<{ROWS}x{N}x{t}>\n}}\n")
    # The packed bytes as an argument (i8, saved as uint8) rather than a constant.
    packed_arg = (f"func.func @main(%q: {q_type}, %s: {s_type}, %x: tensor<{ROWS}x{K}x{t}>, %off: tensor<{E + 1}xi32>)"
                  f" -> tensor<{ROWS}x{N}x{t}> {{\n"
                  + in_gemm.split("{\n", 1)[1].replace(consts.splitlines()[0] + "\n", ""))
    tol = 1e-5 if dtype == "f32" else 8e-3
    return [
        (f"{name}_packed_argument", dict(mlir=packed_arg, inputs=[(packed, "u8"), (scales, dtype), (x, dtype),
                                                                  (OFFSETS, "i32")],
                                         expected=[(y, dtype)], tol=tol)),
        (f"{name}_alone", dict(mlir=alone, inputs=[(scales, dtype)], expected=[(w, dtype)], tol=tol)),
        (f"{name}_in_grouped_matmul", dict(mlir=in_gemm, inputs=[(scales, dtype), (x, dtype), (OFFSETS, "i32")],
                                           expected=[(y, dtype)], tol=tol)),
    ]


CASES = (case("int8_per_row", 8, 0, False, "f32") + case("int4_block8_zero_points", 4, 8, True, "f32")
         + case("int4_block16_zero_points", 4, 16, True, "f32") + case("int8_block32_bf16", 8, 32, False, "bf16")
         + case("int2_per_row_zero_points_bf16", 2, 0, True, "bf16") + case("int4_per_row_bf16", 4, 0, False, "bf16")
         + case("int4_per_row_interleaved", 4, 0, False, "f32", interleaved=True)
         + case("int4_block8_zero_points_interleaved", 4, 8, True, "f32", interleaved=True)
         + case("int8_block16_interleaved_bf16", 8, 16, False, "bf16", interleaved=True)
         + case("int2_per_row_zero_points_long", 2, 0, True, "f32", shape="long")
         + case("int4_block32_zero_points_long", 4, 32, True, "f32", shape="long")
         + case("int4_per_row_long_interleaved", 4, 0, False, "f32", interleaved=True, shape="long")
         + case("int4_per_row_long_bf16", 4, 0, False, "bf16", shape="long"))
main(CASES, cpu_vector_bits=[256])
