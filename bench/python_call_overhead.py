#!/usr/bin/env python3
"""Per-call overhead of the moe_compiler Python layer: one compiled
Mixtral-like layer (8 SwiGLU experts, top-2, hidden 256) called on 1 token
(decode: the call's fixed cost dominates) and on 256 tokens,

  * from C: dlopen + moe_artifact_run in a loop (a harness this script
    compiles with cc), the floor;
  * Artifact.__call__ on NumPy arrays and on torch tensors (signature
    checks, DLPack views, output allocation);
  * a BoundArtifact (weights bound once) on NumPy arrays.

Each way is timed in 3 rounds taken in turn (C, NumPy, bound, torch, C, ...),
the median of 2000 calls (200 at 256 tokens) per round, and reported as the
best round: this 2-core machine's noise (±15-30% between runs) would
otherwise decide the comparison. Writes the table to stdout and
docs/python-overhead.png.

  PYTHONPATH=python MOE_COMPILER_BIN=build/bin python3 bench/python_call_overhead.py
"""

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import docs_plot
import moe_compiler as mc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from moe_reference import layer  # noqa: E402

CFG = {"experts": [("ffn", 8)], "activation": "swiglu", "routing": {"scoring": "softmax", "k": 2, "normalize": "all"}}
H, F = 256, 128
ROUNDS = 3

C_HARNESS = r"""
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
int main(int argc, char **argv) {
  void *lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 1; }
  int (*run)(void *const *, int64_t) = (int (*)(void *const *, int64_t))dlsym(lib, "moe_artifact_run");
  int64_t tokens = atoll(argv[2]), calls = atoll(argv[3]), h = atoll(argv[4]), f = atoll(argv[5]);
  int64_t sizes[6] = {tokens * h, 8 * h, 8 * 2 * f * h, 8 * h * f, tokens * h, tokens * 8};
  void *buffers[6];
  FILE *in = fopen(argv[6], "rb"); /* the inputs Python uses, one after another */
  for (int i = 0; i < 6; ++i) { buffers[i] = aligned_alloc(64, (sizes[i] * 4 + 4 + 63) / 64 * 64); if (i < 4 && fread(buffers[i], 4, sizes[i], in) != (size_t)sizes[i]) return 3; }
  fclose(in);
  double *t = malloc(calls * sizeof(double));
  for (int64_t i = 0; i < calls; ++i) { double s = now(); if (run(buffers, tokens)) return 2; t[i] = now() - s; }
  qsort(t, calls, sizeof(double), cmp);
  printf("%.3f\n", t[calls / 2]);
  return 0;
}
"""


def median_us(fn, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
    return float(np.median(times))


def main():
    art = mc.compile(layer.mlir_text(CFG, 16, H, 2 * F // 2, "f32"), cache_dir="")
    work = tempfile.mkdtemp()
    harness = os.path.join(work, "harness")
    with open(harness + ".c", "w") as f:
        f.write(C_HARNESS)
    subprocess.run(["cc", "-O2", "-o", harness, harness + ".c", "-ldl"], check=True)
    rows = []
    for tokens, calls in ((1, 2000), (256, 200)):
        a = layer.random_operands(CFG, tokens, H, F, "f32", np.random.default_rng(0))
        ops = [np.ascontiguousarray(v, np.float32) for v in a.values()]
        data = os.path.join(work, f"inputs{tokens}.bin")
        with open(data, "wb") as f:
            for o in ops:
                f.write(o.tobytes())
        ways = {"C": lambda: float(subprocess.run([harness, art.path, str(tokens), str(calls), str(H), str(F), data],
                                                  check=True, capture_output=True, text=True).stdout),
                "numpy": lambda: median_us(lambda: art(*ops), calls)}
        bound = art.bind(*ops[1:])
        ways["bound numpy"] = lambda: median_us(lambda: bound(ops[0]), calls)
        try:
            import torch
            tensors = [torch.from_numpy(o) for o in ops]
            ways["torch"] = lambda: median_us(lambda: art(*tensors), calls)
        except ImportError:
            pass
        rounds = {k: [] for k in ways}
        for _ in range(ROUNDS):
            for k, way in ways.items():
                rounds[k].append(way())
        row = {"tokens": tokens, **{k: min(v) for k, v in rounds.items()}}
        rows.append(row)
    kinds = [k for k in rows[0] if k != "tokens"]
    print(f"{'tokens':>6} " + " ".join(f"{k + ' us':>16}" for k in kinds) + "   overhead vs C (numpy, torch)")
    for r in rows:
        extra = ", ".join(f"{r[k] - r['C']:+.1f} us" for k in ("numpy", "torch") if k in r)
        print(f"{r['tokens']:>6} " + " ".join(f"{r[k]:>16.1f}" for k in kinds) + f"   {extra}")
    plt = docs_plot.pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, len(rows), figsize=(9, 3.2))
    for ax, r in zip(axes, rows):
        ax.bar(kinds, [r[k] for k in kinds], color=["#555"] + ["#3b7dd8"] * (len(kinds) - 1))
        ax.set_title(f"{r['tokens']} token{'s' if r['tokens'] > 1 else ''} (median per call)")
        ax.set_ylabel("microseconds")
    fig.suptitle(f"moe_compiler call overhead: Mixtral-like layer, 8 experts, hidden {H}, this machine's CPU")
    docs_plot.save(fig, "python-overhead.png")


if __name__ == "__main__":
    main()
