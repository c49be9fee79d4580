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
TOLERANCE = {"f32": 1e-5, "f16": 2e-3, "bf16": 8e-3}


def moe_run_path():
    path = os.environ.get("MOE_RUN")
    if not path:
        sys.exit("set MOE_RUN to the moe-run binary")
    return path


def apply_passes(text, passes, expect):
    """The layer after `moe-opt <passes>`; `expect` must appear in it, so that
    a test of a pass fails when the pass stops firing."""
    opt = os.environ.get("MOE_OPT") or sys.exit("set MOE_OPT to the moe-opt binary")
    proc = subprocess.run([opt, *passes], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"moe-opt {' '.join(passes)} failed:\n{proc.stderr}")
    if expect and expect not in proc.stdout:
        raise RuntimeError(f"moe-opt {' '.join(passes)} did not produce '{expect}'")
    return proc.stdout


def gpu_chips():
    """The chips every test program is also compiled for (MOE_GPU_CHIPS,
    comma-separated; empty skips)."""
    return [c for c in os.environ.get("MOE_GPU_CHIPS", "sm_80,sm_90").split(",") if c]


def compile_for_gpu(name, text):
    """Compiles `text` with moe-gpu-pipeline for every chip of gpu_chips():
    each must produce cubins (gpu.binary objects for that chip). True if all do."""
    opt = os.environ.get("MOE_OPT") or sys.exit("set MOE_OPT to the moe-opt binary")
    ok = True
    for chip in gpu_chips():
        proc = subprocess.run([opt, f"--moe-gpu-pipeline=chip={chip}"], input=text,
                              capture_output=True, text=True)
        kernels = proc.stdout.count("gpu.binary @")
        cubins = proc.stdout.count(f'chip = "{chip}"')
        if proc.returncode != 0 or kernels == 0 or cubins != kernels or "bin = \"" not in proc.stdout:
            print(f"FAIL {name}: moe-gpu-pipeline chip={chip} exited {proc.returncode}, "
                  f"{kernels} kernels, {cubins} for {chip}")
            errors = [line for line in proc.stderr.splitlines() if "error" in line]
            print("\n".join(errors[:5]) or proc.stderr[-2000:])
            ok = False
        else:
            print(f"ok   {name}: {kernels} GPU kernels compiled to {chip} cubins")
    return ok


# Set by main(..., wgmma_emulation=True): also run the emulated sm_90a GEMMs.
_WGMMA_EMULATION = False
# Set by main(..., cpu_vector_bits=[...]): also run the CPU kernels sized for
# these vector widths (moe-run --vector-bits), not only this machine's.
_CPU_VECTOR_BITS = []


def execution_modes():
    """How every program runs: the CPU pipeline, and (unless
    MOE_GPU_EMULATION=0) the GPU program with its kernels' threads run one
    after another on the CPU (moe-run --gpu-emulation), which checks the GPU
    mapping numerically without a GPU; for the tensor-core tests also with
    the sm_90a (wgmma) GEMM kernels emulated."""
    modes = [("cpu", [])]
    modes += [(f"cpu-{bits}-bit-tiles", ["--vector-bits", str(bits)]) for bits in _CPU_VECTOR_BITS]
    if os.environ.get("MOE_GPU_EMULATION", "1") != "0":
        modes.append(("gpu-emulation", ["--gpu-emulation"]))
        if _WGMMA_EMULATION:
            modes.append(("gpu-emulation-wgmma", ["--gpu-emulation", "--emulate-wgmma"]))
    return modes


def run_layer(name, cfg, tokens, hidden, ffn, dtype=F32, seed=0, tol=None, dynamic_tokens=True,
              passes=None, expect=None, fused=False, reference=None):
    """Compiles and runs one layer (after `moe-opt <passes>` when given),
    checks y and the logits against the reference (rounding as fused GEMMs do
    when `fused`; `reference(cfg, args, dtype)` replaces it, for rewrites that
    change the function on purpose); True if both pass."""
    tol = TOLERANCE[dtype] if tol is None else tol
    rng = np.random.default_rng(seed)
    args = layer.random_operands(cfg, tokens, hidden, ffn, dtype, rng)
    specs = layer.operands(cfg, tokens, hidden, ffn, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "layer.mlir")
        text = layer.mlir_text(cfg, tokens, hidden, ffn, dtype, dynamic_tokens)
        if passes:
            try:
                text = apply_passes(text, passes, expect)
            except RuntimeError as err:
                print(f"FAIL {name}: {err}")
                return False
        if not compile_for_gpu(name, text):
            return False
        with open(src, "w") as f:
            f.write(text)
        inputs = []
        for arg_name, _, elt in specs:
            path = os.path.join(tmp, arg_name + ".npy")
            np.save(path, to_storage(args[arg_name], elt))
            inputs += ["--input", path]
        runs = {}
        for mode, flags in execution_modes():
            out_dir = os.path.join(tmp, mode)
            os.makedirs(out_dir)
            proc = subprocess.run([moe_run_path(), src, "--output-dir", out_dir, *flags, *inputs],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"FAIL {name}: moe-run {' '.join(flags)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
                return False
            runs[mode] = (from_storage(np.load(os.path.join(out_dir, "result_0.npy")), dtype),
                          from_storage(np.load(os.path.join(out_dir, "result_1.npy")), F32))
    if reference is not None:
        ref_y, ref_z = reference(cfg, args, dtype)
        true_y, _ = layer.reference(cfg, args, dtype)
        diff = np.abs(runs["cpu"][0] - true_y).max() / np.abs(true_y).max()
        print(f"info {name}: differs from the layer's own function by {diff:.2e} (normwise relative)")
    else:
        ref_y, ref_z = layer.reference(cfg, args, dtype, fused=fused)
    ok = True
    for mode, (y, z) in runs.items():
        label = name if mode == "cpu" else f"{name} [{mode}]"
        for what, ours, ref, t in (("y", y, ref_y, tol), ("logits", z, ref_z, max(tol, 1e-5))):
            if ours.shape != ref.shape:
                print(f"FAIL {label}: {what} shape {ours.shape}, reference {ref.shape}")
                ok = False
                continue
            if not np.all(np.isfinite(ref)) or np.abs(ref).max() == 0:
                print(f"FAIL {label}: reference {what} is degenerate (all zero or not finite)")
                ok = False
                continue
            err = np.abs(ours - ref).max() / np.abs(ref).max()
            status = "ok  " if err <= t else "FAIL"
            ok &= err <= t
            print(f"{status} {label}: {what} {list(ours.shape)} rel err {err:.2e} (tol {t:.0e})")
    return ok


def run_function(name, mlir, inputs, expected, tol=1e-5):
    """Runs @main of `mlir` on `inputs` [(array, dtype)] and compares every
    result with `expected` [(array, dtype)]: exactly for integer results,
    within `tol` (normwise relative) for floats; NaN must match NaN."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "f.mlir")
        if not compile_for_gpu(name, mlir):
            return False
        with open(src, "w") as f:
            f.write(mlir)
        flags_in = []
        for i, (array, dtype) in enumerate(inputs):
            path = os.path.join(tmp, f"in{i}.npy")
            integer = {"i32": np.int32, "u8": np.uint8}  # u8: packed bytes, an i8 argument
            np.save(path, array.astype(integer[dtype]) if dtype in integer else to_storage(array, dtype))
            flags_in += ["--input", path]
        runs = {}
        for mode, flags in execution_modes():
            out_dir = os.path.join(tmp, mode)
            os.makedirs(out_dir)
            proc = subprocess.run([moe_run_path(), src, "--entry", "main", "--output-dir", out_dir, *flags,
                                   *flags_in], capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"FAIL {name}: moe-run {' '.join(flags)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
                return False
            runs[mode] = [np.load(os.path.join(out_dir, f"result_{i}.npy")) for i in range(len(expected))]
    ok = True
    for mode, outs in runs.items():
        label = name if mode == "cpu" else f"{name} [{mode}]"
        for i, ((ref, dtype), ours) in enumerate(zip(expected, outs)):
            if dtype == "i32":
                good = ours.shape == ref.shape and np.array_equal(ours, ref)
                detail = "exact" if good else f"differs:\n ours {ours.tolist()}\n ref  {ref.tolist()}"
            else:
                ours = from_storage(ours, dtype)
                # NaN must meet NaN and an infinity the same infinity; finite
                # values are compared normwise.
                same_special = (np.array_equal(np.isnan(ours), np.isnan(ref))
                                and np.array_equal(ours[np.isinf(ref)], ref[np.isinf(ref)]))
                finite = np.isfinite(ref)
                scale = max(np.abs(ref[finite]).max(), 1e-30) if finite.any() else 1.0
                err = np.abs(ours[finite] - ref[finite]).max() / scale if finite.any() else 0.0
                good = ours.shape == ref.shape and same_special and err <= tol
                detail = f"rel err {err:.2e} (tol {tol:.0e})" + ("" if same_special else ", NaN/inf differ")
            print(f"{'ok  ' if good else 'FAIL'} {label}: result {i} {detail}")
            ok &= good
    return ok


def main(cases, wgmma_emulation=False, cpu_vector_bits=()):
    """Runs (name, kwargs) cases; exits non-zero if any fails."""
    global _WGMMA_EMULATION, _CPU_VECTOR_BITS
    _WGMMA_EMULATION = wgmma_emulation
    _CPU_VECTOR_BITS = list(cpu_vector_bits)
    results = [run_layer(name, **kw) if "cfg" in kw else run_function(name, **kw) for name, kw in cases]
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if all(results) else 1)
