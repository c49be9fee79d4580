# Ids and rows outside their range have a defined meaning, never a read or
# write outside a buffer (docs/design.md 5.3): an expert id outside [0, E)
# is an empty slot like -1 (never placed, rectified or filled in), a
# permute token outside [0, T) gives a zero row, a combine row outside
# [0, R) adds nothing. Each op runs on such values (CPU and emulated GPU)
# against the numpy reference, exactly for ids and within 1e-6 for values.
# RUN: %moe_python %s

import numpy as np

from moe_reference import ops
from moe_reference.harness import main

rng = np.random.default_rng(5)
x = rng.standard_normal((4, 3)).astype(np.float32)
row_token = np.array([0, 3, -1, 4, 1 << 24, -7, 2], np.int32)
rows = rng.standard_normal((5, 3)).astype(np.float32)
slot_row = np.array([[0, 5], [-1, 2], [1 << 24, 4], [-9, 1]], np.int32)
slot_weight = rng.random((4, 2)).astype(np.float32)
ids = np.array([[0, 4], [-3, 1], [9, 2], [3, -1]], np.int32)  # E = 4: 4 and 9 are out of range
weights = rng.random((4, 2)).astype(np.float32)
fill_ids = np.array([[0, 1, 4], [0, 7, 2], [0, 1, 9], [1, -5, 3]], np.int32)  # third column: fill-in
fill_weights = rng.random((4, 3)).astype(np.float32)

PERMUTE = """
func.func @main(%x: tensor<4x3xf32>, %r: tensor<7xi32>) -> tensor<7x3xf32> {
  %y = moe.permute %x, %r : (tensor<4x3xf32>, tensor<7xi32>) -> tensor<7x3xf32>
  return %y : tensor<7x3xf32>
}"""

COMBINE = """
func.func @main(%rows: tensor<5x3xf32>, %sr: tensor<4x2xi32>, %sw: tensor<4x2xf32>) -> tensor<4x3xf32> {
  %y = moe.combine %rows, %sr, %sw : (tensor<5x3xf32>, tensor<4x2xi32>, tensor<4x2xf32>) -> tensor<4x3xf32>
  return %y : tensor<4x3xf32>
}"""

DISPATCH = """
func.func @main(%i: tensor<4x2xi32>, %w: tensor<4x2xf32>) -> (tensor<8xi32>, tensor<5xi32>, tensor<4x2xi32>, tensor<4x2xf32>) {
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 4
    : (tensor<4x2xi32>, tensor<4x2xf32>) -> (tensor<8xi32>, tensor<5xi32>, tensor<4x2xi32>, tensor<4x2xf32>)
  return %r, %o, %sr, %sw : tensor<8xi32>, tensor<5xi32>, tensor<4x2xi32>, tensor<4x2xf32>
}"""

FILL_IN = """
func.func @main(%i: tensor<4x3xi32>, %w: tensor<4x3xf32>) -> (tensor<8xi32>, tensor<5xi32>, tensor<4x3xi32>, tensor<4x3xf32>) {
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 4 {capacity = #moe.capacity<tokens = 2, drop = position, pad = true, rectify = fill_in>}
    : (tensor<4x3xi32>, tensor<4x3xf32>) -> (tensor<8xi32>, tensor<5xi32>, tensor<4x3xi32>, tensor<4x3xf32>)
  return %r, %o, %sr, %sw : tensor<8xi32>, tensor<5xi32>, tensor<4x3xi32>, tensor<4x3xf32>
}"""


def dispatch_expected(idx, w, cap=None):
    r, o, sr, sw = ops.dispatch(idx, w, 4, cap=cap)
    return [(r, "i32"), (o, "i32"), (sr, "i32"), (sw, "f32")]


main([
    ("permute_token_out_of_range", dict(mlir=PERMUTE, inputs=[(x, "f32"), (row_token, "i32")],
                                        expected=[(ops.permute(x, row_token), "f32")], tol=1e-6)),
    ("combine_row_out_of_range", dict(mlir=COMBINE, inputs=[(rows, "f32"), (slot_row, "i32"), (slot_weight, "f32")],
                                      expected=[(ops.combine(rows, slot_row, slot_weight), "f32")], tol=1e-6)),
    ("dispatch_id_out_of_range", dict(mlir=DISPATCH, inputs=[(ids, "i32"), (weights, "f32")],
                                      expected=dispatch_expected(ids, weights), tol=1e-6)),
    ("dispatch_fill_in_id_out_of_range", dict(
        mlir=FILL_IN, inputs=[(fill_ids, "i32"), (fill_weights, "f32")],
        expected=dispatch_expected(fill_ids, fill_weights,
                                   dict(tokens=2, drop="position", pad=True, rectify="fill_in")), tol=1e-6)),
])
