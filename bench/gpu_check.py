#!/usr/bin/env python3
"""GPU numerical check: every kind of MoE layer, GPU artifact against CPU artifact.

Two halves, because the GPU machine has no LLVM/MLIR:

  python3 bench/gpu_check.py prepare [--out DIR] [--chip sm_90]
      (here) writes each layer's MLIR, compiles a CPU and a GPU artifact with
      moe-compile (bf16 layers also an sm_90a one with the Hopper wgmma
      kernels, --wgmma), runs the CPU artifact on seeded random inputs, saves the
      inputs and outputs, checks the CPU outputs against the float64 numpy
      reference (python/moe_reference), and copies moe-exec and
      libmoe_runtime.so into DIR (a few MB: carry it to the GPU machine).

  python3 DIR/gpu_check.py run [--dir DIR]
      (on the GPU machine; numpy only) runs every GPU artifact with moe-exec
      on the saved inputs against the CPU outputs and writes DIR/results.md
      (the sm_90a artifacts only on an sm_90 GPU: H100/H200).
      Exit status 1 if any layer is outside its tolerance.

Tolerances (normwise relative, max|gpu - cpu| / max|cpu|): f32 1e-5 (the GPU
kernels sum in a different order); bf16 8e-3 (two bf16 ulps: a different f32
sum may round to the neighbouring bf16 value).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOLERANCE = {"f32": 1e-5, "bf16": 8e-3}

# name: (config, tokens, hidden, ffn, dtype); every routing and expert kind.
def cases():
    mixtral = dict(experts=[("ffn", 8)], activation="swiglu",
                   routing=dict(scoring="softmax", k=2, order="select_then_score"))
    return {
        "mixtral_f32": (mixtral, 64, 128, 64, "f32"),
        "mixtral_bf16": (mixtral, 64, 128, 64, "bf16"),
        # Several row and column tiles, more K steps than pipeline stages.
        "mixtral_bf16_large": (mixtral, 200, 512, 384, "bf16"),
        "deepseek_v3": (dict(experts=[("ffn", 256)], activation="swiglu",
                             routing=dict(scoring="sigmoid", k=8, normalize="all", scale=2.5,
                                          num_groups=8, topk_groups=4), bias=True, shared=32),
                        32, 128, 32, "f32"),
        "qwen2_shared_gated": (dict(experts=[("ffn", 60)], activation="swiglu",
                                    routing=dict(scoring="softmax", k=4), shared=128, shared_gate=True),
                               32, 128, 32, "bf16"),
        "olmoe": (dict(experts=[("ffn", 64)], activation="swiglu", routing=dict(scoring="softmax", k=8)),
                  32, 128, 64, "f32"),
        "moe_plus_plus": (dict(experts=[("ffn", 16), ("constant", 2), ("copy", 1), ("zero", 1)],
                               activation="swiglu",
                               routing=dict(scoring="softmax", k=2, normalize="computing", input_scale=2.0),
                               hidden=160, residual=True), 32, 128, 64, "f32"),
        "switch_capacity": (dict(experts=[("ffn", 8)], activation="relu", routing=dict(scoring="softmax", k=1),
                                 capacity=dict(factor=1.25, pad=True)), 64, 64, 128, "f32"),
        "capacity_drop_probs": (dict(experts=[("ffn", 4)], activation="geglu", routing=dict(scoring="softmax", k=2),
                                     capacity=dict(factor=1.0, drop="probs", pad=True)), 48, 64, 32, "f32"),
        "expert_choice": (dict(experts=[("ffn", 8)], activation="swiglu",
                               routing=dict(scoring="softmax", select="expert_choice", capacity=6)),
                          32, 64, 32, "f32"),
        "threshold": (dict(experts=[("ffn", 8)], activation="swiglu",
                           routing=dict(scoring="relu", select="threshold", k=8)), 32, 64, 32, "f32"),
        "gumbel": (dict(experts=[("ffn", 8)], activation="swiglu",
                        routing=dict(scoring="gumbel_softmax", k=2, tau=0.5, samples=4, seed=7)),
                   32, 64, 32, "f32"),
    }


def prepare(args):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import numpy as np
    from moe_reference import layer
    from moe_reference.numerics import from_storage

    build = os.environ.get("MOE_BUILD_DIR", os.path.join(ROOT, "build"))
    compile_ = os.path.join(build, "bin", "moe-compile")
    exec_ = os.path.join(build, "bin", "moe-exec")
    os.makedirs(args.out, exist_ok=True)
    shutil.copy(exec_, args.out)
    shutil.copy(os.path.join(build, "lib", "libmoe_runtime.so"), args.out)
    shutil.copy(os.path.abspath(__file__), args.out)
    manifest = []
    for name, (cfg, tokens, hidden, ffn, dtype) in cases().items():
        case_dir = os.path.join(args.out, name)
        os.makedirs(case_dir, exist_ok=True)
        src = os.path.join(case_dir, "layer.mlir")
        with open(src, "w") as f:
            f.write(layer.mlir_text(cfg, tokens, hidden, ffn, dtype, dynamic_tokens=False))
        variants = {"cpu": ["--target=cpu"], "gpu": ["--target=gpu", f"--chip={args.chip}"]}
        if dtype == "bf16":
            variants["gpu_wgmma"] = ["--target=gpu", "--chip=sm_90a", "--wgmma"]
        for variant, flags in variants.items():
            subprocess.run([compile_, src, *flags, "-o", os.path.join(case_dir, f"lib{variant}.so")],
                           check=True, capture_output=True)
        run = subprocess.run([exec_, os.path.join(case_dir, "libcpu.so"), "--seed", "11", "--save-inputs",
                              "--output-dir", case_dir], capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"{name}: the CPU artifact failed:\n{run.stderr}")
        # The CPU path itself against the float64 reference, on the same inputs.
        specs = layer.operands(cfg, tokens, hidden, ffn, dtype)
        inputs = {spec[0]: from_storage(np.load(os.path.join(case_dir, f"input_{i}.npy")), spec[2])
                  for i, spec in enumerate(specs)}
        ref_y, _ = layer.reference(cfg, inputs, dtype)
        y = from_storage(np.load(os.path.join(case_dir, "output_0.npy")), dtype)
        err = float(np.abs(y - ref_y).max() / np.abs(ref_y).max())
        print(f"{name}: CPU artifact vs float64 reference: rel err {err:.2e} (tol {TOLERANCE[dtype]:.0e})")
        if err > TOLERANCE[dtype]:
            sys.exit(f"{name}: the CPU reference itself is off")
        # The GPU machine runs only the GPU artifacts: the CPU one and the
        # libomp it carries (1.2 MB per layer) stay here.
        for leftover in ("libcpu.so", "libcpu.h", "libomp.so.5"):
            os.remove(os.path.join(case_dir, leftover))
        manifest.append(dict(name=name, dtype=dtype, inputs=len(specs), outputs=2, cpu_vs_numpy=err,
                             gpu=[v for v in variants if v != "cpu"]))
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    size = sum(os.path.getsize(os.path.join(d, x)) for d, _, xs in os.walk(args.out) for x in xs)
    print(f"prepared {len(manifest)} layers in {args.out} ({size / 2**20:.1f} MiB)")


def run(args):
    with open(os.path.join(args.dir, "manifest.json")) as f:
        manifest = json.load(f)
    exec_ = os.path.join(args.dir, "moe-exec")
    rows, failed = [], 0
    for case in manifest:
        d = os.path.join(args.dir, case["name"])
        for variant in case.get("gpu", ["gpu"]):
            cmd = [exec_, os.path.join(d, f"lib{variant}.so"), "--tolerance", str(TOLERANCE[case["dtype"]])]
            cmd += sum((["--input", os.path.join(d, f"input_{i}.npy")] for i in range(case["inputs"])), [])
            cmd += sum((["--reference", os.path.join(d, f"output_{i}.npy")] for i in range(case["outputs"])), [])
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            except subprocess.TimeoutExpired as err:
                proc = subprocess.CompletedProcess(cmd, 124, "", "timed out after 120 s")
            errs = [line.split("max rel err ")[1].split()[0] for line in proc.stdout.splitlines()
                    if "max rel err" in line]
            ok = proc.returncode == 0
            failed += not ok
            label = case["name"] + (" (sm_90a wgmma)" if variant == "gpu_wgmma" else "")
            rows.append(f"| {label} | {case['dtype']} | {' / '.join(errs) or '-'} | "
                        f"{TOLERANCE[case['dtype']]:.0e} | {'ok' if ok else 'FAIL'} |")
            print(rows[-1] if ok else rows[-1] + "\n" + proc.stdout + proc.stderr)
    with open(os.path.join(args.dir, "results.md"), "w") as f:
        f.write("| layer | dtype | rel err y / logits (GPU vs CPU) | tol | |\n|---|---|---|---|---|\n")
        f.write("\n".join(rows) + "\n")
    print(f"{len(rows) - failed} of {len(rows)} artifacts match")
    sys.exit(1 if failed else 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "gpu-check"))
    p.add_argument("--chip", default="sm_90")
    r = sub.add_parser("run")
    r.add_argument("--dir", default=HERE)
    args = parser.parse_args()
    prepare(args) if args.mode == "prepare" else run(args)


if __name__ == "__main__":
    main()
