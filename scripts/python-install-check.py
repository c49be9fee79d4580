#!/usr/bin/env python3
"""Checks the installed moe_compiler package (after `pip install .`), outside
the checkout: it imports from site-packages, finds its own moe-compile,
compiles a Mixtral-like layer and matches numpy float64 within 1e-5.
scripts/test.sh runs it."""

import os
import sys

import numpy as np

import moe_compiler as mc

here = os.path.dirname(os.path.abspath(__file__))
assert "site-packages" in mc.__file__ or "dist-packages" in mc.__file__, mc.__file__
assert mc._tools.tool("moe-compile").startswith(os.path.dirname(mc.__file__)), mc._tools.tool("moe-compile")
sys.path.append(os.path.join(here, "..", "python"))  # the numpy reference only
from moe_reference import layer  # noqa: E402

cfg = {"experts": [("ffn", 8)], "activation": "swiglu", "routing": {"scoring": "softmax", "k": 2, "normalize": "all"}}
art = mc.compile(layer.mlir_text(cfg, 16, 64, 32, "f32"), cache_dir="")
a = layer.random_operands(cfg, 16, 64, 32, "f32", np.random.default_rng(0))
want, _ = layer.reference(cfg, a, "f32")
got, _ = art(*[np.ascontiguousarray(v, np.float32) for v in a.values()])
error = float(np.abs(got - want).max())
assert error < 1e-5, error
print(f"[python-install-check] {mc.__file__}: {art.report.summary().splitlines()[1].strip()}; max |error| {error:.1e}")
