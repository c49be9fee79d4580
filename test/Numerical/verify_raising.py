# --verify-raising: every recognised MoE layer is run against the ops it was
# recognised in, on random inputs, before it is trusted. Here, for JAX
# programs of each raised family (dropless, dense mixture, GShard capacity,
# DeepSeek grouped routing, MoE++, bf16, a layer inside a lax.scan loop,
# expert mixtures as a loop over experts, under vmap, sigmoid top-1) and
# ONNX blocks (a per-expert loop, a batched block, a written-out block):
#  - with the check on, every layer is kept ("N kept, 0 refused") and the
#    results match JAX / onnxruntime;
#  - with a deliberately wrong matcher (--wrong-raising-for-testing flips
#    each layer's renormalisation) and no check, the results are wrong: the
#    wrong raise is not a harmless one;
#  - with the wrong matcher and the check, every layer is refused with a
#    remark, and the results match JAX / onnxruntime again (the plain ops ran).
# Tolerances (normwise relative): f32 2e-5, bf16 2e-2, as jax_match.py;
# "wrong" means above 10x the tolerance.
# RUN: %moe_python %s %t

import os
import re
import subprocess
import sys

import numpy as np
import onnxruntime as ort

from moe_reference import jax_programs, onnx_models

JAX_PROGRAMS = ["mixtral_dropless", "dense_mixture", "gshard_capacity", "deepseek_grouped", "moepp", "bf16_ffn",
                "scanned_layers", "idiom_loop_where", "idiom_vmap_experts_k4", "idiom_sigmoid_top1_shared"]
ONNX_MODELS = ["per_expert_mixtral", "decomposed_mixtral", "per_expert_olmoe_equal"]
PROGRAMS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Stablehlo", "programs")
TOLERANCE = {"float32": 2e-5, "bfloat16": 2e-2, "float16": 2e-3}


def moe_run(path, args, out_dir, flags):
    cmd = [os.environ["MOE_RUN"], path, *args, "--output-dir", out_dir, *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MOE_VERIFY_RAISING": ""})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout, proc.stderr


def error(out_dir, expected):
    worst = 0.0
    for i, ref in enumerate(expected):
        ours = np.load(os.path.join(out_dir, f"result_{i}.npy"))
        if ref.dtype.name == "bfloat16":
            ours = (ours.astype(np.uint32) << 16).view(np.float32)
        ref = ref.astype(np.float64)
        worst = max(worst, np.abs(ours.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1.0))
    return worst


def check(name, path, args, expected, tol, out_dir):
    """The three runs of one model; returns the failures."""
    failures = 0
    summary = re.compile(r"raising check: (\d+) kept, (\d+) refused, (\d+) not checked")
    runs = {"checked": ["--verify-raising"],
            "wrong, unchecked": ["--wrong-raising-for-testing", "--verify-raising=false"],
            "wrong, checked": ["--wrong-raising-for-testing", "--verify-raising"]}
    for mode, flags in runs.items():
        result_dir = os.path.join(out_dir, f"{name}.{mode.replace(', ', '-')}")
        stdout, stderr = moe_run(path, args, result_dir, flags)
        err = error(result_dir, expected)
        counts = summary.search(stdout)
        kept, refused, unchecked = map(int, counts.groups()) if counts else (0, 0, 0)
        if mode == "checked":
            ok = kept >= 1 and refused == 0 and unchecked == 0 and err <= tol
        elif mode == "wrong, unchecked":
            ok = counts is None and err > 10 * tol
        else:
            ok = (kept == 0 and refused >= 1 and unchecked == 0 and re.search(r"raised MoE layer( at '[^']*')? refused", stderr)
                  and err <= tol)
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name} [{mode}]: kept {kept}, refused {refused}, not checked "
              f"{unchecked}; rel err {err:.2e} (tol {tol:g})")
        if not ok:
            print(stdout + stderr)
    return failures


def jax_case(name, out_dir):
    args, _, expected = jax_programs.saved_case(name, out_dir)
    path = os.path.join(PROGRAMS_DIR, name + ".mlir")
    tol = max(TOLERANCE.get(ref.dtype.name, 0.0) for ref in expected)
    return check(name, path, args, expected, tol, out_dir)


def onnx_case(name, out_dir):
    path, feeds = onnx_models.build(name, out_dir)
    expected = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    args = []
    for key, value in feeds.items():
        npy = os.path.join(out_dir, f"{name}.{key}.npy")
        np.save(npy, value)
        args += ["--input", f"{key}={npy}"]
    tol = max(TOLERANCE.get(ref.dtype.name, 0.0) for ref in expected)
    return check(name, path, args, expected, tol, out_dir)


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    failures = sum(jax_case(name, out_dir) for name in JAX_PROGRAMS)
    failures += sum(onnx_case(name, out_dir) for name in ONNX_MODELS)
    if failures:
        sys.exit(f"{failures} run(s) failed (the FAIL lines above)")


if __name__ == "__main__":
    main(sys.argv[1])
