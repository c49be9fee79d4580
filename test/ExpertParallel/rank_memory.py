# Each rank loads only its share of the expert weights: moe-exec maps its
# .npy inputs instead of reading them, so a rank's memory holds the pages
# its code touches. A layer with 192 MiB of expert weights (8 experts,
# hidden 1024, FFN 2048, f32), a few tokens per rank: on 1 rank the process
# touches all of them; on 4 ranks each rank's peak resident memory (the
# runtime's MOE_EP_STATS max_rss_kb) must be well below that: by at least
# half the weights for whole experts placed (contiguous: 2 experts a rank,
# a quarter of the weights), by a quarter for every expert split (a quarter
# of each expert in 2 MiB blocks, which the page cache maps in folios of up
# to 2 MiB, so they can count twice; and its gate/up quarter copied once
# per call). Reading the files instead of mapping them saves nothing. The
# outputs are checked against the one-rank run too.
# RUN: %moe_python %s

import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from moe_reference import layer

BIN = os.environ.get("MOE_COMPILER_BIN", "build/bin")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
CFG = dict(experts=[("ffn", 8)], activation="swiglu", routing=dict(scoring="softmax", k=2, order="select_then_score"))
TOKENS, HIDDEN, FFN = 4, 1024, 2048


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    if proc.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def peak_rss_mib(work, ranks, placement, weights):
    art = os.path.join(work, f"{placement}{ranks}", "liblayer.so")
    run([f"{BIN}/moe-compile", os.path.join(work, "layer.mlir"), "-o", art, f"--ranks={ranks}",
         f"--placement={placement}"])
    stats = os.path.join(work, f"stats-{placement}{ranks}")
    out = os.path.join(work, f"out-{placement}{ranks}.%r")
    run([*MPIRUN, "-np", str(ranks), f"{BIN}/moe-exec", art, "--input", os.path.join(work, f"x.{ranks}.%r.npy"),
         *weights, "--output-dir", out], env=dict(os.environ, MOE_EP_STATS=stats, OMP_NUM_THREADS="1"))
    rss = [json.load(open(f))["max_rss_kb"] / 1024 for f in sorted(glob.glob(stats + ".rank*.json"))]
    y = np.concatenate([np.load(os.path.join(out.replace("%r", str(r)), "output_0.npy")) for r in range(ranks)])
    return rss, y


def main():
    rng = np.random.default_rng(5)
    a = layer.random_operands(CFG, 4 * TOKENS, HIDDEN, FFN, "f32", rng)
    failures = []
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "layer.mlir"), "w") as f:
            f.write(layer.mlir_text(CFG, TOKENS, HIDDEN, FFN, "f32", dynamic_tokens=True))
        names = [n for n, _, _ in layer.operands(CFG, TOKENS, HIDDEN, FFN, "f32")]
        weights, weight_mib = [], 0.0
        for n in names[1:]:
            path = os.path.join(work, f"{n}.npy")
            np.save(path, a[n].astype(np.float32))
            weights += ["--input", path]
            if n != "router_weight":
                weight_mib += a[n].size * 4 / 2**20
        np.save(os.path.join(work, "x.1.0.npy"), a["x"].astype(np.float32))
        for r in range(4):
            np.save(os.path.join(work, f"x.4.{r}.npy"), a["x"][r * TOKENS:(r + 1) * TOKENS].astype(np.float32))
        (one,), want = peak_rss_mib(work, 1, "contiguous", weights)
        print(f"     1 rank: peak {one:.0f} MiB with {weight_mib:.0f} MiB of expert weights")
        for placement, share in (("contiguous", 0.5), ("split", 0.25)):
            rss, y = peak_rss_mib(work, 4, placement, weights)
            saved = one - max(rss)
            ok = saved >= share * weight_mib and y.tobytes() == want.tobytes()
            print(f"{'ok  ' if ok else 'FAIL'} 4 ranks, {placement}: peaks {', '.join(f'{m:.0f}' for m in rss)} MiB "
                  f"({saved:.0f} MiB below one rank's); outputs {'equal' if y.tobytes() == want.tobytes() else 'differ'}")
            if not ok:
                failures.append(placement)
    if failures:
        sys.exit(f"FAIL: ranks hold more than their share of the weights: {failures}")
    print("every rank holds its share of the weights")


if __name__ == "__main__":
    main()
