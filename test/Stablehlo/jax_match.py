# Every committed JAX program (test/Stablehlo/programs, written by
# python/moe_reference/jax_programs.py: Mixtral dropless top-2 with
# ragged_dot in its CPU expansion and as the exported composite, GShard and
# Switch einsum dispatch with capacity (one in generic form), DeepSeek-V3
# sigmoid + group-limited top-k + shared expert, MoE++ zero/copy/constant
# experts, a transformer block with an MoE FFN, a bf16 layer, three layers
# scanned with jax.lax.scan (a stablehlo.while; as text and exported), and one
# program reaching the remaining ops: pad, reverse, dynamic slices, clamp,
# remainder, sign, power, atan2, argmax's two-input reduce, cumsum's
# reduce_window, rounding, is_finite, and float sorts (argsort/sort with
# NaN, -0.0, -inf and ties through JAX's TOTALORDER comparator)) is compiled
# and run by moe-run, on the CPU and as the emulated GPU program, and as an
# ahead-of-time CPU artifact (moe-compile + moe-exec), and
# compared with JAX (CPU) on the same random inputs; the GPU pipeline must
# also give sm_90 cubins. Tolerances (normwise relative): f32 2e-5, bf16 2e-2
# (JAX rounds bf16 intermediates where we may keep f32), integer and i1
# results exactly.
# RUN: %moe_python %s %S/programs %t

import os
import subprocess
import sys

import numpy as np

from moe_reference import jax_programs

TOLERANCE = {"float32": 2e-5, "bfloat16": 2e-2}


class ToolFailure(Exception):
    pass


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolFailure(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


def check_program(name, programs_dir, out_dir, tools):
    """Runs one program every way; returns how many results differ from JAX."""
    moe_run, moe_opt, moe_compile, moe_exec = tools
    failures = 0
    path = os.path.join(programs_dir, name + ".mlir")
    args, _, expected = jax_programs.saved_case(name, out_dir)  # inputs stable across runs
    imported = os.path.join(out_dir, name + ".imported.mlir")
    run([moe_opt, "--moe-import-stablehlo", path, "-o", imported])
    gpu = run([moe_opt, "--moe-gpu-pipeline=chip=sm_90", imported])
    if "gpu.binary @" not in gpu:
        raise ToolFailure("moe-gpu-pipeline produced no cubin")
    # The ahead-of-time CPU artifact (moe-compile, run by moe-exec) checks
    # itself against JAX's outputs.
    library = os.path.join(out_dir, f"lib{name}.so")
    run([moe_compile, path, "--target=cpu", "-o", library])
    references = []
    for i, ref in enumerate(expected):
        npy = os.path.join(out_dir, f"{name}.expected{i}.npy")
        jax_programs.save_npy(npy, ref)
        references += ["--reference", npy]
    tol = max(TOLERANCE.get(ref.dtype.name, 0.0) for ref in expected)
    print(run([moe_exec, library, *args, *references, "--tolerance", str(tol)]).strip().splitlines()[-1])
    for mode, flags in (("cpu", []), ("gpu-emulation", ["--gpu-emulation"])):
        result_dir = os.path.join(out_dir, f"{name}.{mode}")
        run([moe_run, path, *args, *flags, "--output-dir", result_dir])
        for i, ref in enumerate(expected):
            ours = np.load(os.path.join(result_dir, f"result_{i}.npy"))
            dtype = ref.dtype.name
            if dtype == "bfloat16":
                ours = (ours.astype(np.uint32) << 16).view(np.float32)
            ref = ref.astype(np.float64)
            tol = TOLERANCE.get(dtype, 0.0)  # integer and i1 results exactly
            if ours.shape != ref.shape:
                print(f"FAIL {name} [{mode}] result {i}: shape {ours.shape}, JAX gives {ref.shape}")
                failures += 1
                continue
            err = np.abs(ours.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1.0)
            ok = err <= tol
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name} [{mode}] result {i}: {dtype}{list(ref.shape)} "
                  f"rel err {err:.2e} (tol {tol:g})")
    return failures


def main(programs_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    moe_run, moe_opt = os.environ["MOE_RUN"], os.environ["MOE_OPT"]
    tools = os.path.dirname(moe_run)
    moe_compile, moe_exec = os.path.join(tools, "moe-compile"), os.path.join(tools, "moe-exec")
    failures = 0
    for name in jax_programs.PROGRAMS:
        try:
            failures += check_program(name, programs_dir, out_dir, (moe_run, moe_opt, moe_compile, moe_exec))
        except ToolFailure as e:  # this program only: the others still run
            print(f"FAIL {name}: {e}")
            failures += 1
    if failures:
        sys.exit(f"{failures} comparison(s) failed (the FAIL lines above)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
