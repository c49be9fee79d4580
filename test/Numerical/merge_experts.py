# moe.merge_experts + moe.grouped_matmul over one row range per sequence
# computes MEO's merged expert. For linear experts with gates shared by a
# sequence it equals the mixture sum_e g_e (W_e x) exactly (up to rounding):
# both are checked against float64 references, f32, rel err <= 1e-5.
# RUN: %moe_python %s

import numpy as np

from moe_reference import ops
from moe_reference.harness import main

rng = np.random.default_rng(3)
SEQS, SEQ_LEN, E, H, N = 4, 8, 6, 32, 24
w = rng.standard_normal((E, N, H)) / np.sqrt(H)
logits = rng.standard_normal((SEQS, E))
gates = np.stack([np.where(np.isin(np.arange(E), np.argsort(-row)[:2]), np.exp(row), 0.0) for row in logits])
gates /= gates.sum(axis=1, keepdims=True)  # top-2 softmax gates per sequence
x = rng.standard_normal((SEQS * SEQ_LEN, H))
offsets = np.arange(SEQS + 1, dtype=np.int64) * SEQ_LEN

MLIR = f"""
func.func @main(%w: tensor<{E}x{N}x{H}xf32>, %g: tensor<{SEQS}x{E}xf32>, %x: tensor<{SEQS * SEQ_LEN}x{H}xf32>,
                %off: tensor<{SEQS + 1}xi32>) -> (tensor<{SEQS}x{N}x{H}xf32>, tensor<{SEQS * SEQ_LEN}x{N}xf32>) {{
  %m = moe.merge_experts %w, %g : (tensor<{E}x{N}x{H}xf32>, tensor<{SEQS}x{E}xf32>) -> tensor<{SEQS}x{N}x{H}xf32>
  %y = moe.grouped_matmul %x, %m, %off
    : (tensor<{SEQS * SEQ_LEN}x{H}xf32>, tensor<{SEQS}x{N}x{H}xf32>, tensor<{SEQS + 1}xi32>) -> tensor<{SEQS * SEQ_LEN}x{N}xf32>
  return %m, %y : tensor<{SEQS}x{N}x{H}xf32>, tensor<{SEQS * SEQ_LEN}x{N}xf32>
}}
"""

merged = ops.merge_experts(w, gates)
# The mixture of linear experts, computed without merging.
mixture = np.concatenate([
    sum(gates[s, e] * (x[s * SEQ_LEN:(s + 1) * SEQ_LEN] @ w[e].T) for e in range(E)) for s in range(SEQS)
])
inputs = [(w, "f32"), (gates, "f32"), (x, "f32"), (offsets, "i32")]
main([
    ("merge_then_matmul", dict(mlir=MLIR, inputs=inputs,
                               expected=[(merged, "f32"), (ops.grouped_matmul(x, merged, offsets), "f32")])),
    ("meo_equals_mixture", dict(mlir=MLIR, inputs=inputs, expected=[(merged, "f32"), (mixture, "f32")])),
])
