#!/usr/bin/env python3
"""The expert-parallel GPU artifact (NCCL exchanges) on a real GPU, one rank.

  python3 bench/ep_gpu_check.py prepare [--out bench/out/ep-gpu]   # here: compile, reference outputs
  python3 bench/ep_gpu_check.py run --dir bench/out/ep-gpu         # on the GPU machine

`prepare` writes, per layer kind, the `moe-compile --target=gpu --ranks=1`
artifact (every routed row goes through ncclSend/ncclRecv to the rank
itself), the plain GPU artifact, seeded inputs and the CPU artifact's
outputs, and copies moe-exec, the runtimes and the OpenMPI libraries and
components the expert-parallel runtime links (the GPU machine has NCCL, from
PyTorch's wheels, but no OpenMPI). `run` starts each artifact as an MPI
singleton (no mpirun: one rank), finds libnccl.so.2 among the Python
packages, and checks both GPU artifacts against the CPU outputs; it also
says whether the one-rank exchange changed any bit of the plain GPU result.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

HIDDEN, FFN, TOKENS = 64, 96, 37
TOLERANCE = {"f32": 1e-5, "bf16": 8e-3}
MIXTRAL = dict(experts=[("ffn", 8)], activation="swiglu",
               routing=dict(scoring="softmax", k=2, order="select_then_score"))
# (name, layer config, dtype, placement)
CASES = [
    ("mixtral", MIXTRAL, "f32", "contiguous"),
    ("mixtral-bf16", MIXTRAL, "bf16", "contiguous"),
    ("capacity-probs", dict(MIXTRAL, capacity=dict(factor=0.75, drop="probs")), "f32", "round-robin"),
    ("deepseek", dict(experts=[("ffn", 16)], activation="swiglu",
                      routing=dict(scoring="sigmoid", k=4, normalize="all", num_groups=4, topk_groups=2,
                                   scale=2.5),
                      bias=True, shared=40), "f32", "round-robin"),
]
# Libraries every Linux machine has; the rest of the runtime's dependencies travel.
SYSTEM_LIBS = ("libc.so", "libm.so", "libstdc++.so", "libgcc_s.so", "ld-linux", "linux-vdso", "libz.so")


def run_checked(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def copy_mpi(build, out):
    """The OpenMPI shared libraries the EP runtime links and OpenMPI's component folder."""
    lib_dir = os.path.join(out, "mpi", "lib")
    os.makedirs(lib_dir, exist_ok=True)
    for line in run_checked(["ldd", os.path.join(build, "lib", "libmoe_ep_runtime.so")]).splitlines():
        parts = line.split()
        if "=>" not in parts or parts[0].startswith(SYSTEM_LIBS) or parts[0].startswith("libmoe_"):
            continue
        shutil.copy(os.path.realpath(parts[2]), os.path.join(lib_dir, parts[0]))
    components = run_checked(["ompi_info", "--parsable", "--path", "pkglibdir"]).strip().split(":")[-1]
    shutil.copytree(components, os.path.join(out, "mpi", "components"), dirs_exist_ok=True)


def prepare(args):
    from moe_reference import layer
    from moe_reference.numerics import to_storage
    build = os.path.abspath(args.build)
    bin_dir = os.path.join(build, "bin")
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    for f in ("bin/moe-exec", "lib/libmoe_runtime.so", "lib/libmoe_ep_runtime.so"):
        shutil.copy(os.path.join(build, f), args.out)
    shutil.copy(os.path.abspath(__file__), args.out)
    copy_mpi(build, args.out)
    rng = np.random.default_rng(7)
    manifest = []
    for name, cfg, dtype, placement in CASES:
        d = os.path.join(args.out, name)
        os.makedirs(d)
        operands = layer.random_operands(cfg, TOKENS, HIDDEN, FFN, dtype, rng)
        src = os.path.join(d, "layer.mlir")
        with open(src, "w") as f:
            f.write(layer.mlir_text(cfg, TOKENS, HIDDEN, FFN, dtype))
        specs = layer.operands(cfg, TOKENS, HIDDEN, FFN, dtype)
        for i, (n, _, element) in enumerate(specs):
            np.save(os.path.join(d, f"input_{i}.npy"), to_storage(operands[n], element))
        compile_ = os.path.join(bin_dir, "moe-compile")
        run_checked([compile_, src, "--target=cpu", "-o", os.path.join(d, "libcpu.so")])
        run_checked([compile_, src, "--target=gpu", "-o", os.path.join(d, "libgpu.so")])
        run_checked([compile_, src, "--target=gpu", "--ranks=1", f"--placement={placement}",
                     "-o", os.path.join(d, "libep.so")])
        inputs = sum((["--input", os.path.join(d, f"input_{i}.npy")] for i in range(len(specs))), [])
        run_checked([os.path.join(bin_dir, "moe-exec"), os.path.join(d, "libcpu.so"), *inputs,
                     "--output-dir", os.path.join(d, "cpu")])
        outputs = len(glob.glob(os.path.join(d, "cpu", "output_*.npy")))
        for leftover in ("libcpu.so", "libcpu.h", "libomp.so.5", "libgpu.h", "libep.h"):
            if os.path.exists(os.path.join(d, leftover)):
                os.remove(os.path.join(d, leftover))
        manifest.append(dict(name=name, dtype=dtype, placement=placement, inputs=len(specs), outputs=outputs))
        print(f"{name}: {dtype}, {TOKENS} tokens, {placement}: artifacts and CPU reference written")
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(args.out) for f in fs)
    print(f"prepared {len(manifest)} layers in {os.path.abspath(args.out)} ({size / 2**20:.1f} MiB)")


def find_nccl():
    """The folder holding libnccl.so.2: the dynamic loader's paths, then the Python packages (PyTorch's wheel)."""
    listed = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    if "libnccl.so.2 " in listed:
        print("libnccl.so.2 from the dynamic loader")
        return None
    import site
    roots = site.getsitepackages() + [site.getusersitepackages()] + sys.path
    for root in roots:
        hits = glob.glob(os.path.join(root, "nvidia", "**", "libnccl.so.2"), recursive=True)
        if hits:
            return os.path.dirname(hits[0])
    print("libnccl.so.2 was found neither by the dynamic loader nor among the Python packages: "
          "the expert-parallel artifacts will say so")
    return None


def run(args):
    d = os.path.abspath(args.dir)
    with open(os.path.join(d, "manifest.json")) as f:
        manifest = json.load(f)
    nccl = find_nccl()
    env = dict(os.environ, OMPI_MCA_ess_singleton_isolated="1", MOE_EP_TIMEOUT_S="60",
               OMPI_MCA_mca_base_component_path=os.path.join(d, "mpi", "components"))
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (os.path.join(d, "mpi", "lib"), nccl,
                                                  os.environ.get("LD_LIBRARY_PATH")) if p)
    if nccl:
        print(f"libnccl.so.2 from {nccl}")
    failed = []
    rows = []
    for case in manifest:
        cd = os.path.join(d, case["name"])
        inputs = sum((["--input", os.path.join(cd, f"input_{i}.npy")] for i in range(case["inputs"])), [])
        errors = {}
        for variant in ("gpu", "ep"):
            refs = sum((["--reference", os.path.join(cd, "cpu", f"output_{i}.npy")]
                        for i in range(case["outputs"])), [])
            cmd = [os.path.join(d, "moe-exec"), os.path.join(cd, f"lib{variant}.so"), *inputs, *refs,
                   "--tolerance", str(TOLERANCE[case["dtype"]]), "--output-dir", os.path.join(cd, variant)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
            text = proc.stdout + proc.stderr
            errs = [line.split("max rel err")[1].split()[0] for line in text.splitlines() if "max rel err" in line]
            errors[variant] = "/".join(errs) if errs else "-"
            if proc.returncode != 0:
                failed.append(f"{case['name']} {variant}")
                print(f"{case['name']} {variant} exited {proc.returncode}:\n{text[-3000:]}")
        same = all(
            os.path.exists(os.path.join(cd, v, f"output_{i}.npy")) for v in ("gpu", "ep")
            for i in range(case["outputs"])) and all(
            np.load(os.path.join(cd, "gpu", f"output_{i}.npy")).tobytes()
            == np.load(os.path.join(cd, "ep", f"output_{i}.npy")).tobytes() for i in range(case["outputs"]))
        rows.append((case["name"], case["dtype"], case["placement"], errors["gpu"], errors["ep"],
                     "yes" if same else "no"))
    print("\n| layer | dtype | placement | GPU vs CPU (rel err) | EP GPU, 1 rank over NCCL, vs CPU | EP == GPU bitwise |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if failed:
        sys.exit(f"FAILED: {', '.join(failed)}")
    print(f"all {len(rows)} expert-parallel GPU artifacts match the CPU")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="compile the artifacts and reference outputs here")
    pp.add_argument("--build", default=os.environ.get("MOE_BUILD_DIR", os.path.join(HERE, "..", "build")))
    pp.add_argument("--out", default=os.path.join(HERE, "out", "ep-gpu"))
    pr = sub.add_parser("run", help="run them on the GPU machine")
    pr.add_argument("--dir", default=os.path.join(HERE, "out", "ep-gpu"))
    args = p.parse_args()
    prepare(args) if args.cmd == "prepare" else run(args)


if __name__ == "__main__":
    main()
