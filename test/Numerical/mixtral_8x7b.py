# A full-size Mixtral-8x7B MoE layer: hidden 4096, FFN 14336, 8 SwiGLU experts,
# softmax over the top-2 logits, bf16 weights (2.8 GB), 4 tokens.
# The weights are streamed to disk in chunks and the float64 reference reads
# them back memory-mapped, one expert at a time, rounding each op's result to
# bf16 where the compiled program stores it. bf16, rel err <= 8e-3.
# RUN: %moe_python %s

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from moe_reference import ops
from moe_reference.harness import moe_run_path
from moe_reference.numerics import BF16, F32, activation, bf16_bits_to_f64, round_to

T, H, F, E, K = 4, 4096, 14336, 8, 2
TOL = 8e-3
rng = np.random.default_rng(8)


def save_bf16(path, shape, scale):
    """Uniform [-scale, scale) values as bf16 bit patterns, written in chunks."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=shape)
    flat = out.reshape(-1, shape[-1])
    for start in range(0, flat.shape[0], 4096):
        rows = flat[start:start + 4096]
        vals = (rng.random(rows.shape, dtype=np.float32) * 2 - 1) * np.float32(scale)
        rows[...] = (vals.view(np.uint32) >> 16).astype(np.uint16)  # truncation: exact bf16 values
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def expert_rows(w_bits, e, vec):
    """w[e] @ vec in float64, converting 4096 rows of bf16 at a time."""
    w = w_bits[e]
    return np.concatenate([bf16_bits_to_f64(w[r:r + 4096]) @ vec for r in range(0, w.shape[0], 4096)])


MLIR = f"""
func.func @main(%x: tensor<?x{H}xbf16>, %wr: tensor<{E}x{H}xbf16>, %up: tensor<{E}x{2 * F}x{H}xbf16>,
                %down: tensor<{E}x{H}x{F}xbf16>) -> (tensor<?x{H}xbf16>, tensor<?x{E}xf32>) {{
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {{
      experts = [#moe.group<ffn, {E}>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = {K}, order = select_then_score>}}
    : (tensor<?x{H}xbf16>, tensor<{E}x{H}xbf16>, tensor<{E}x{2 * F}x{H}xbf16>, tensor<{E}x{H}x{F}xbf16>)
    -> (tensor<?x{H}xbf16>, tensor<?x{E}xf32>)
  return %y, %z : tensor<?x{H}xbf16>, tensor<?x{E}xf32>
}}
"""

with tempfile.TemporaryDirectory() as tmp:
    start = time.time()
    x = save_bf16(os.path.join(tmp, "x.npy"), (T, H), 1.0)
    wr = save_bf16(os.path.join(tmp, "wr.npy"), (E, H), 1.0 / 64)
    up = save_bf16(os.path.join(tmp, "up.npy"), (E, 2 * F, H), 1.0 / 64)
    down = save_bf16(os.path.join(tmp, "down.npy"), (E, H, F), 1.0 / 120)
    print(f"wrote {sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)) / 2**30:.2f} GiB "
          f"of inputs in {time.time() - start:.1f} s")
    with open(os.path.join(tmp, "layer.mlir"), "w") as f:
        f.write(MLIR)
    cmd = [moe_run_path(), os.path.join(tmp, "layer.mlir"), "--entry", "main", "--output-dir", tmp]
    for name in ("x", "wr", "up", "down"):
        cmd += ["--input", os.path.join(tmp, name + ".npy")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    print(proc.stdout + proc.stderr, end="")
    if proc.returncode != 0:
        sys.exit("FAIL mixtral_8x7b: moe-run failed")
    y = bf16_bits_to_f64(np.load(os.path.join(tmp, "result_0.npy")))
    z = np.load(os.path.join(tmp, "result_1.npy")).astype(np.float64)

    # Reference: routing, then each selected expert on its token.
    xf = bf16_bits_to_f64(x)
    ref_z = round_to(xf @ bf16_bits_to_f64(wr).T, F32)
    w, idx = ops.topk(ref_z, K)
    g = round_to(ops.renormalize("softmax", w, idx), F32)
    ref_y = np.zeros((T, H))
    for t in range(T):
        for j in range(K):
            e = idx[t, j]
            h = round_to(expert_rows(up, e, xf[t]), BF16)
            a = round_to(activation("swiglu", h[None, :])[0], BF16)
            o = round_to(expert_rows(down, e, a), BF16)
            ref_y[t] += g[t, j] * o
    ref_y = round_to(ref_y, BF16)

ok = True
for what, ours, ref, tol in (("y", y, ref_y, TOL), ("logits", z, ref_z, 1e-5)):
    err = np.abs(ours - ref).max() / np.abs(ref).max()
    ok &= err <= tol
    print(f"{'ok  ' if err <= tol else 'FAIL'} mixtral_8x7b: {what} {list(ours.shape)} rel err {err:.2e} (tol {tol:.0e})")
print(f"experts chosen: {idx.tolist()}; total {time.time() - start:.1f} s")
sys.exit(0 if ok else 1)
