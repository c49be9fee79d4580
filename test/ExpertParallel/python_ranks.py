# The Python package's expert-parallel artifacts: compile(..., ranks=2,
# placement="round-robin") in this process, then `mpirun -np 2 python3` on
# this script in worker mode, each rank loading the artifact and calling it
# on its own tokens (NumPy arrays in, out): the ranks' results are the
# single-process artifact's results for their tokens, bit for bit.
# RUN: %moe_python %s

import os
import subprocess
import sys
import tempfile

import numpy as np

import moe_compiler
from moe_reference import layer

CFG = dict(experts=[("ffn", 8)], activation="swiglu", routing=dict(scoring="softmax", k=2, order="select_then_score"))
SPLIT = [9, 14]
HIDDEN, FFN = 32, 16


def worker(work):
    rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
    artifact = moe_compiler.load(os.path.join(work, "ep", "liblayer.so"))
    weights = [np.load(os.path.join(work, f"w{i}.npy")) for i in range(3)]
    y, logits = artifact(np.load(os.path.join(work, f"x.{rank}.npy")), *weights)
    np.save(os.path.join(work, f"y.{rank}.npy"), y)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        return worker(sys.argv[2])
    rng = np.random.default_rng(4)
    a = layer.random_operands(CFG, sum(SPLIT), HIDDEN, FFN, "f32", rng)
    text = layer.mlir_text(CFG, sum(SPLIT), HIDDEN, FFN, "f32")
    with tempfile.TemporaryDirectory() as work:
        names = [n for n, _, _ in layer.operands(CFG, sum(SPLIT), HIDDEN, FFN, "f32")]
        weights = [a[n].astype(np.float32) for n in names[1:]]
        for i, w in enumerate(weights):
            np.save(os.path.join(work, f"w{i}.npy"), w)
        x = a["x"].astype(np.float32)
        np.save(os.path.join(work, "x.0.npy"), x[:SPLIT[0]])
        np.save(os.path.join(work, "x.1.npy"), x[SPLIT[0]:])
        single = moe_compiler.compile(text, cache_dir="")
        moe_compiler.compile(text, ranks=2, placement="round-robin", cache_dir="",
                             output=os.path.join(work, "ep", "liblayer.so"))
        want, _ = single(x, *weights)
        proc = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", sys.executable,
                               os.path.abspath(__file__), "--worker", work],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            sys.exit(f"FAIL: mpirun exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
        got = np.concatenate([np.load(os.path.join(work, f"y.{r}.npy")) for r in range(2)])
        same = got.tobytes() == want.tobytes()
        print(f"{'ok  ' if same else 'FAIL'} moe_compiler artifact with ranks=2 under mpirun: bit-identical")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
