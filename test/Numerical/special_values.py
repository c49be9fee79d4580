# Routing on logits holding NaN, +inf and -inf (design.md 2.1): softmax treats
# NaN as -inf, +inf entries share the mass, an all -inf row is uniform; NaN
# ranks last; sigmoid and relu map NaN to 0. Results must match the reference
# exactly in which experts are chosen and within 1e-6 in the weights.
# RUN: %moe_python %s

import numpy as np

from moe_reference import ops
from moe_reference.harness import main

INF, NAN = np.inf, np.nan
LOGITS = np.array([
    [0.5, NAN, 2.0, -1.0, 0.0, 1.0],       # NaN among numbers
    [INF, 0.0, INF, 1.0, -INF, 2.0],        # two +inf share the mass
    [-INF, -INF, -INF, -INF, -INF, -INF],   # all -inf: uniform
    [NAN, NAN, NAN, NAN, NAN, NAN],         # all NaN: as all -inf
    [1.0, 1.0, 1.0, 0.5, 1.0, 0.2],         # ties: lowest index first
    [-INF, 3.0, NAN, 3.0, INF, -2.0],       # everything at once
])


def routing_program(score):
    return f"""
func.func @main(%z: tensor<6x6xf32>) -> (tensor<6x6xf32>, tensor<6x3xf32>, tensor<6x3xi32>, tensor<6x3xf32>) {{
  %s = moe.score {score} %z : tensor<6x6xf32> -> tensor<6x6xf32>
  %w, %i = moe.topk %s k = 3 : (tensor<6x6xf32>) -> (tensor<6x3xf32>, tensor<6x3xi32>)
  %n = moe.renormalize sum %w, %i : (tensor<6x3xf32>, tensor<6x3xi32>) -> tensor<6x3xf32>
  return %s, %w, %i, %n : tensor<6x6xf32>, tensor<6x3xf32>, tensor<6x3xi32>, tensor<6x3xf32>
}}
"""


def expected(score):
    s = ops.score(score, LOGITS)
    w, i = ops.topk(s, 3)
    return [(s, "f32"), (w, "f32"), (i, "i32"), (ops.renormalize("sum", w, i), "f32")]


TOPK_ON_LOGITS = """
func.func @main(%z: tensor<6x6xf32>) -> (tensor<6x3xi32>, tensor<6x3xf32>) {
  %w, %i = moe.topk %z k = 3 : (tensor<6x6xf32>) -> (tensor<6x3xf32>, tensor<6x3xi32>)
  %g = moe.renormalize softmax %w, %i : (tensor<6x3xf32>, tensor<6x3xi32>) -> tensor<6x3xf32>
  return %i, %g : tensor<6x3xi32>, tensor<6x3xf32>
}
"""
w, i = ops.topk(LOGITS, 3)

THRESHOLD = """
func.func @main(%z: tensor<6x6xf32>) -> (tensor<6x4xf32>, tensor<6x4xi32>) {
  %w, %i = moe.threshold %z max_k = 4 : (tensor<6x6xf32>) -> (tensor<6x4xf32>, tensor<6x4xi32>)
  return %w, %i : tensor<6x4xf32>, tensor<6x4xi32>
}
"""

main([
    (f"{score}_special", dict(mlir=routing_program(score), inputs=[(LOGITS, "f32")], expected=expected(score),
                              tol=1e-6))
    for score in ("softmax", "sigmoid", "relu")
] + [
    ("select_then_softmax_special", dict(mlir=TOPK_ON_LOGITS, inputs=[(LOGITS, "f32")],
                                         expected=[(i, "i32"), (ops.renormalize("softmax", w, i), "f32")],
                                         tol=1e-6)),
    ("threshold_special", dict(mlir=THRESHOLD, inputs=[(LOGITS, "f32")],
                               expected=[(a, t) for a, t in zip(ops.threshold(LOGITS, 4), ("f32", "i32"))],
                               tol=1e-6)),
])
