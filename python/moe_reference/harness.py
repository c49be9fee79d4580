"""Runs moe.layer configurations through moe-run and compares with the reference.

Error metric: max |ours - reference| / max |reference| over each result
(a normwise relative error), against a stated tolerance per case.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

from . import layer
from .numerics import F32, from_storage, to_storage

# f32: the compiled code accumulates in f32; the reference is float64.
TOLERANCE = {"f32": 1e-5, "f16": 2e-3, "bf16": 2e-2}


def moe_run_path():
    path = os.environ.get("MOE_RUN")
    if not path:
        sys.exit("set MOE_RUN to the moe-run binary")
    return path


def run_layer(name, cfg, tokens, hidden, ffn, dtype=F32, seed=0, tol=None, dynamic_tokens=True):
    """Compiles and runs one layer, checks y and the logits; returns True if both pass."""
    tol = TOLERANCE[dtype] if tol is None else tol
    rng = np.random.default_rng(seed)
    args = layer.random_operands(cfg, tokens, hidden, ffn, dtype, rng)
    specs = layer.operands(cfg, tokens, hidden, ffn, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "layer.mlir")
        with open(src, "w") as f:
            f.write(layer.mlir_text(cfg, tokens, hidden, ffn, dtype, dynamic_tokens))
        cmd = [moe_run_path(), src, "--output-dir", tmp]
        for arg_name, _, elt in specs:
            path = os.path.join(tmp, arg_name + ".npy")
            np.save(path, to_storage(args[arg_name], elt))
            cmd += ["--input", path]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"FAIL {name}: moe-run exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
            return False
        y = from_storage(np.load(os.path.join(tmp, "result_0.npy")), dtype)
        z = from_storage(np.load(os.path.join(tmp, "result_1.npy")), F32)
    ref_y, ref_z = layer.reference(cfg, args, dtype)
    ok = True
    for what, ours, ref, t in (("y", y, ref_y, tol), ("logits", z, ref_z, max(tol, 1e-5))):
        if ours.shape != ref.shape:
            print(f"FAIL {name}: {what} shape {ours.shape}, reference {ref.shape}")
            ok = False
            continue
        if not np.all(np.isfinite(ref)) or np.abs(ref).max() == 0:
            print(f"FAIL {name}: reference {what} is degenerate (all zero or not finite)")
            ok = False
            continue
        err = np.abs(ours - ref).max() / np.abs(ref).max()
        status = "ok  " if err <= t else "FAIL"
        ok &= err <= t
        print(f"{status} {name}: {what} {list(ours.shape)} rel err {err:.2e} (tol {t:.0e})")
    return ok


def main(cases):
    """Runs (name, kwargs) cases; exits non-zero if any fails."""
    results = [run_layer(name, **kw) for name, kw in cases]
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if all(results) else 1)
