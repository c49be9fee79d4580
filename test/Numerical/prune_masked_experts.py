# moe-prune-masked-experts preserves results: a layer whose constant selection
# bias masks experts 2, 5 and 6 (-inf) runs through moe-run before and after
# the pass; both must match the float64 reference (f32, rel err <= 1e-5), and
# the pass must have removed the experts. Softmax scores are pruned only under
# a pure mask (the same bias on every kept expert); with a varied bias the
# pass must leave the layer alone. (The mask is not one contiguous run, so the
# pass runs with copy-weights=true.)
# RUN: %moe_python %s

import os
import subprocess
import sys

import numpy as np

from moe_reference import layer as L
from moe_reference.harness import main
from moe_reference.numerics import F32, round_to

T, H, F, E = 32, 16, 8, 8
VARIED = np.array([0.0, 0.05, -np.inf, -0.1, 0.02, -np.inf, -np.inf, 0.1])
MASK = np.where(np.isinf(VARIED), -np.inf, 0.0)


def program(scoring, normalize, bias_values):
    bias = ", ".join("0xFF800000" if np.isinf(b) else repr(float(b)) for b in bias_values)
    return f"""
func.func @main(%x: tensor<{T}x{H}xf32>, %wr: tensor<{E}x{H}xf32>, %up: tensor<{E}x{2 * F}x{H}xf32>,
                %down: tensor<{E}x{H}x{F}xf32>) -> tensor<{T}x{H}xf32> {{
  %b = arith.constant dense<[{bias}]> : tensor<{E}xf32>
  %y, %z = moe.layer %x, %wr selection_bias(%b) ffn(%up, %down) {{experts = [#moe.group<ffn, {E}>],
      activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = {scoring}, k = 2, normalize = {normalize}>}}
    : (tensor<{T}x{H}xf32>, tensor<{E}x{H}xf32>, tensor<{E}xf32>, tensor<{E}x{2 * F}x{H}xf32>, tensor<{E}x{H}x{F}xf32>)
    -> (tensor<{T}x{H}xf32>, tensor<{T}x{E}xf32>)
  return %y : tensor<{T}x{H}xf32>
}}
"""


def pruned(text, expect_pruned):
    out = subprocess.run([os.environ["MOE_OPT"], "--moe-prune-masked-experts=copy-weights=true"], input=text,
                         capture_output=True, text=True, check=True).stdout
    if ("#moe.group<ffn, 5>" in out) != expect_pruned:
        sys.exit(f"FAIL: moe-prune-masked-experts {'did not remove' if expect_pruned else 'removed'} "
                 "the masked experts")
    return out


rng = np.random.default_rng(5)
cases = []
for scoring, normalize, bias, prunes in (("sigmoid", "all", VARIED, True), ("relu", "none", VARIED, True),
                                         ("softmax", "all", MASK, True), ("softmax", "all", VARIED, False)):
    cfg = dict(experts=[("ffn", E)], activation="swiglu",
               routing=dict(scoring=scoring, k=2, normalize=normalize), bias=True)
    args = L.random_operands(cfg, T, H, F, F32, rng)
    args["selection_bias"] = round_to(bias, F32)
    ref_y, _ = L.reference(cfg, args, F32)
    inputs = [(args[n], "f32") for n in ("x", "router_weight", "ffn_up", "ffn_down")]
    text = program(scoring, normalize, bias)
    name = f"{scoring}_{normalize}_{'mask' if bias is MASK else 'varied_bias'}"
    for label, mlir in (("before", text), ("after", pruned(text, prunes))):
        cases.append((f"{name}_{label}",
                      dict(mlir=mlir, inputs=inputs, expected=[(ref_y, "f32")], tol=1e-5)))
main(cases)
