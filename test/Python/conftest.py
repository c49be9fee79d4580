"""Shared fixtures of the moe_compiler tests: lit runs pytest here with
PYTHONPATH at python/ and MOE_COMPILER_BIN at the build's tools."""

import numpy as np
import pytest

from moe_reference import layer as layer_ref

# Mixtral-like: 8 SwiGLU experts, softmax top-2 renormalised.
CFG = {"experts": [("ffn", 8)], "activation": "swiglu", "routing": {"scoring": "softmax", "k": 2, "normalize": "all"}}
HIDDEN, FFN = 64, 32


@pytest.fixture(scope="session")
def layer_mlir():
    return layer_ref.mlir_text(CFG, 16, HIDDEN, FFN, "f32", dynamic_tokens=True)


@pytest.fixture(scope="session")
def layer_artifact(layer_mlir):
    import moe_compiler as mc
    return mc.compile(layer_mlir, cache_dir="")


def layer_operands(tokens, seed=0):
    """float32 operands (x first, then the weights) and the float64 reference y."""
    a = layer_ref.random_operands(CFG, tokens, HIDDEN, FFN, "f32", np.random.default_rng(seed))
    y, _ = layer_ref.reference(CFG, a, "f32")
    return [np.ascontiguousarray(v, dtype=np.float32) for v in a.values()], y
