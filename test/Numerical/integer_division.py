# Integer division and remainder are defined for every input, never a trap
# in the generated code (docs/design.md, "Integer division"): x / 0 = -1,
# x % 0 = x, INT_MIN / -1 = INT_MIN, INT_MIN % -1 = 0, as XLA computes them.
# A JAX program of lax.div and lax.rem on i32 (stablehlo.divide/remainder)
# runs on the CPU and as the emulated GPU program and must equal JAX's
# results exactly on random numerators and divisors with zeros and the
# overflowing pair mixed in; an ONNX Div on int32 follows the same rule
# (numpy reference of the rule, itself checked against JAX here).
# RUN: %moe_python %s

import os
import subprocess
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import onnx
from onnx import TensorProto, helper

from moe_reference.harness import main

MIN = np.iinfo(np.int32).min


def operands(n=64, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(-1000, 1000, n).astype(np.int32)
    d = rng.integers(-9, 10, n).astype(np.int32)  # about one in 19 is 0
    a[:4], d[:4] = [MIN, MIN, 7, -7], [-1, 0, 0, 0]
    return a, d


def xla_rule_div(a, d):
    a64, d64 = a.astype(np.int64), d.astype(np.int64)
    q = np.where(d64 == 0, -1, np.trunc(a64 / np.where(d64 == 0, 1, d64))).astype(np.int64)
    return np.where((a64 == MIN) & (d64 == -1), MIN, q).astype(np.int32)


def stablehlo_case():
    a, d = operands()
    program = jax.jit(lambda x, y: (jax.lax.div(x, y), jax.lax.rem(x, y))).lower(a, d).as_text()
    text = subprocess.run([os.environ["MOE_OPT"], "--moe-import-stablehlo"], input=program, capture_output=True,
                          text=True, check=True).stdout
    div, rem = (np.asarray(r) for r in jax.jit(lambda x, y: (jax.lax.div(x, y), jax.lax.rem(x, y)))(a, d))
    assert np.array_equal(div, xla_rule_div(a, d)), "the numpy rule differs from JAX"
    return ("stablehlo_div_rem_i32", dict(mlir=text, inputs=[(a, "i32"), (d, "i32")],
                                          expected=[(div, "i32"), (rem, "i32")]))


def onnx_case():
    a, d = operands(seed=1)
    graph = helper.make_graph(
        [helper.make_node("Div", ["a", "d"], ["q"])], "int_div",
        [helper.make_tensor_value_info("a", TensorProto.INT32, [64]),
         helper.make_tensor_value_info("d", TensorProto.INT32, [64])],
        [helper.make_tensor_value_info("q", TensorProto.INT32, [64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "div.onnx")
        onnx.save(model, path)
        text = subprocess.run([os.environ["MOE_TRANSLATE"], "--import-onnx", path], capture_output=True,
                              text=True, check=True).stdout
    return ("onnx_div_i32", dict(mlir=text.replace("@main_graph", "@main"), inputs=[(a, "i32"), (d, "i32")],
                                 expected=[(xla_rule_div(a, d), "i32")]))


main([stablehlo_case(), onnx_case()])
