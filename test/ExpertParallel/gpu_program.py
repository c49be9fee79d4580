# The expert-parallel GPU program is exact: compiled by the GPU pipeline
# (its kernels emulated on the CPU, moe-run --gpu-emulation) for N ranks and
# run under `mpirun -np N`, every rank gets the one-process GPU program's
# outputs for its tokens, bit for bit. The exchanges sit between the
# program's kernels as host calls, after the stream is synchronised; the
# emulation runs them on MPI where the GPU artifact calls NCCL with the same
# plan (test/ExpertParallel/gpu-artifact.test checks that artifact).
# Cases (the reference is the unsharded program, in bf16 the 1-rank one):
# Mixtral on 3 ranks (contiguous), bf16 on 2 ranks, a capacity that
# drops the lightest rows across ranks (round-robin), and DeepSeek-style
# grouped routing with a shared expert on 4 ranks, one of which has no
# tokens. (--placement=split is CPU-only: its GPU program would size a
# buffer from device memory on the host.)
# RUN: %moe_python %s

import os
import subprocess
import sys
import tempfile

import numpy as np

from moe_reference import layer

BIN = os.environ.get("MOE_COMPILER_BIN", "build/bin")
HIDDEN, FFN = 32, 24
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]

MIXTRAL = dict(experts=[("ffn", 8)], activation="swiglu",
               routing=dict(scoring="softmax", k=2, order="select_then_score"))
HEAVIEST = dict(MIXTRAL, capacity=dict(factor=0.75, drop="probs"))
DEEPSEEK = dict(experts=[("ffn", 16)], activation="swiglu",
                routing=dict(scoring="sigmoid", k=4, normalize="all", num_groups=4, topk_groups=2, scale=2.5),
                bias=True, shared=20)

# (name, config, dtype, tokens of each rank, placement)
CASES = [
    ("mixtral", MIXTRAL, "f32", [5, 9, 6], "contiguous"),
    ("mixtral-bf16", MIXTRAL, "bf16", [8, 7], "contiguous"),
    ("capacity-probs", HEAVIEST, "f32", [9, 7], "round-robin"),
    ("deepseek", DEEPSEEK, "f32", [6, 0, 4, 9], "round-robin"),
]


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MOE_EP_TIMEOUT_S="60"))
    if proc.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def storage(a, dtype):
    if dtype == "bf16":
        return (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return a.astype(np.float32)


def check(tmp, name, cfg, dtype, split, placement, rng):
    work = os.path.join(tmp, name)
    os.makedirs(work)
    total = sum(split)
    a = layer.random_operands(cfg, total, HIDDEN, FFN, dtype, rng)
    src = os.path.join(work, "layer.mlir")
    with open(src, "w") as f:
        f.write(layer.mlir_text(cfg, total, HIDDEN, FFN, dtype))
    names = [n for n, _, _ in layer.operands(cfg, total, HIDDEN, FFN, dtype)]
    for n in names:
        np.save(os.path.join(work, f"{n}.npy"), storage(a[n], dtype))
    starts = np.cumsum([0] + split)
    for r in range(len(split)):
        np.save(os.path.join(work, f"x.{r}.npy"), storage(a["x"][starts[r]:starts[r + 1]], dtype))
    weights = sum((["--input", os.path.join(work, f"{n}.npy")] for n in names[1:]), [])
    single = [f"{BIN}/moe-run", src, "--gpu-emulation", "--input", os.path.join(work, "x.npy"), *weights,
              "--output-dir", os.path.join(work, "single")]
    # In bf16 the unsharded program (moe-run runs no moe-optimize) rounds
    # the down GEMM's rows to bf16 before the combine; the sharded one
    # rounds once in the combine, as moe-optimize's fused form does. The
    # reference is then the same program on one rank.
    run([*MPIRUN, "-np", "1", *single, "--ranks=1"] if dtype == "bf16" else single)
    ranks = len(split)
    run([*MPIRUN, "-np", str(ranks), f"{BIN}/moe-run", src, "--gpu-emulation", f"--ranks={ranks}",
         f"--placement={placement}", "--input", os.path.join(work, "x.%r.npy"), *weights,
         "--output-dir", os.path.join(work, "ep.%r")])
    same = True
    for i in range(2):
        want = np.load(os.path.join(work, "single", f"result_{i}.npy"))
        got = np.concatenate([np.load(os.path.join(work, f"ep.{r}", f"result_{i}.npy")) for r in range(ranks)])
        if got.shape != want.shape or got.tobytes() != want.tobytes():
            same = False
            print(f"  result {i}: {got.shape} vs {want.shape}, max diff "
                  f"{np.abs(got.astype(np.float64) - want.astype(np.float64)).max() if got.shape == want.shape else '-'}")
    print(f"{'ok  ' if same else 'FAIL'} {name}: {ranks} ranks ({placement}), {split} tokens, GPU program "
          f"bit-identical to one process")
    return same


def main():
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        failed = [c[0] for c in CASES if not check(tmp, *c, rng)]
    if failed:
        sys.exit(f"FAIL: {failed}")
    print("all expert-parallel GPU programs bit-identical")


if __name__ == "__main__":
    main()
