#!/usr/bin/env python3
"""Compiles the PTX of every kernel of a moe-gpu-pipeline output with
`ptxas -v` and prints, per kernel, its registers and spill bytes.

    moe-opt layer.mlir --moe-gpu-pipeline=format=isa | scripts/ptxas-report.py --arch sm_90

--no-spills makes any spill an error (exit 1). --save-ptx DIR keeps the PTX.
ptxas comes from $CUDA_HOME/bin, /usr/local/cuda/bin or PATH.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile


def unescape(text):
    # MLIR string attributes escape bytes as \XX (hex), and \\ and \".
    return re.sub(r'\\([0-9A-Fa-f]{2}|\\|")',
                  lambda m: m.group(1) if m.group(1) in ('\\', '"') else chr(int(m.group(1), 16)), text)


def find_ptxas():
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_ROOT"), "/usr/local/cuda"):
        if root and os.path.exists(os.path.join(root, "bin", "ptxas")):
            return os.path.join(root, "bin", "ptxas")
    return shutil.which("ptxas") or sys.exit("ptxas-report: ptxas not found (set CUDA_HOME)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--no-spills", action="store_true")
    parser.add_argument("--save-ptx", metavar="DIR")
    args = parser.parse_args()

    binaries = re.findall(r'gpu\.binary @(\w+)\s*\[(.*?)\]\s*$', sys.stdin.read(), re.M | re.S)
    modules = []
    for name, objects in binaries:
        ptx = re.search(r'assembly = "((?:[^"\\]|\\.)*)"', objects)
        if ptx:
            modules.append((name, unescape(ptx.group(1))))
    if not modules:
        sys.exit("ptxas-report: no gpu.binary with PTX in the input (use moe-gpu-pipeline=format=isa)")

    ptxas = find_ptxas()
    spilled = 0
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.save_ptx or tmp
        os.makedirs(out_dir, exist_ok=True)
        for name, ptx in modules:
            path = os.path.join(out_dir, name + ".ptx")
            with open(path, "w") as f:
                f.write(ptx)
            proc = subprocess.run([ptxas, f"-arch={args.arch}", "-v", path, "-o", os.devnull],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"ptxas-report: ptxas failed on {name}:\n{proc.stderr}")
            regs = re.search(r"Used (\d+) registers", proc.stderr)
            spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", proc.stderr)
            stores, loads = (int(spill.group(1)), int(spill.group(2))) if spill else (0, 0)
            spilled += stores + loads
            print(f"{name}: {regs.group(1) if regs else '?'} registers, "
                  f"{stores} bytes spill stores, {loads} bytes spill loads")
    print(f"{len(modules)} kernels for {args.arch}, {spilled} bytes spilled")
    if args.no_spills and spilled:
        sys.exit(1)


if __name__ == "__main__":
    main()
