# An expert-parallel artifact fails clearly instead of hanging or computing
# something else: (1) run with another number of processes than it was
# compiled for (and without mpirun), every rank says so and exits non-zero;
# (2) a rank that dies before the exchange makes the job end non-zero
# within the timeout; (3) a rank that leaves early (its peer calls the
# layer once more) makes the waiting rank abort with the runtime's message
# after MOE_EP_TIMEOUT_S, not hang.
# RUN: %moe_python %s

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from moe_reference import layer

BIN = os.environ.get("MOE_COMPILER_BIN", "build/bin")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
CFG = dict(experts=[("ffn", 4)], activation="swiglu", routing=dict(scoring="softmax", k=2))
TOKENS, HIDDEN, FFN = 8, 16, 8
failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail and not ok else ''}")
    if not ok:
        failures.append(name)


def run(cmd, timeout=120, env=None):
    """(exit status, output, seconds); on the timeout the status is None and
    the output what the job wrote before it was killed (where it hung)."""
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, **(env or {})))
    except subprocess.TimeoutExpired as e:
        text = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        return None, f"(killed after {timeout} s)\n" + text(e.stdout) + text(e.stderr), time.monotonic() - start
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def main():
    rng = np.random.default_rng(3)
    a = layer.random_operands(CFG, TOKENS, HIDDEN, FFN, "f32", rng)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "layer.mlir")
        with open(src, "w") as f:
            f.write(layer.mlir_text(CFG, TOKENS, HIDDEN, FFN, "f32"))
        inputs = []
        for name, _, _ in layer.operands(CFG, TOKENS, HIDDEN, FFN, "f32"):
            np.save(os.path.join(tmp, f"{name}.npy"), a[name].astype(np.float32))
            inputs += ["--input", os.path.join(tmp, f"{name}.npy")]
        art = os.path.join(tmp, "ep2", "liblayer.so")
        rc, out, _ = run([f"{BIN}/moe-compile", src, "-o", art, "--ranks=2"])
        if rc != 0:
            sys.exit(f"FAIL: moe-compile --ranks=2\n{out}")

        rc, out, _ = run([*MPIRUN, "-np", "3", f"{BIN}/moe-exec", art, *inputs])
        check("3 processes for a 2-rank artifact", rc not in (0, None) and out.count(
            "this expert-parallel program was compiled for 2 ranks but runs in 3 process(es)") >= 1, out[-2000:])

        rc, out, _ = run([f"{BIN}/moe-exec", art, *inputs],
                         env={"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"})
        check("without mpirun", rc not in (0, None) and "compiled for 2 ranks but runs in 1 process(es)" in out, out[-2000:])

        # Rank 1's input is missing: it exits before the exchange.
        x0 = os.path.join(tmp, "x.0.npy")
        np.save(x0, a["x"].astype(np.float32))
        per_rank = [os.path.join(tmp, "x.%r.npy")] + inputs[3::2]
        args = sum((["--input", p] for p in per_rank), [])
        rc, out, seconds = run([*MPIRUN, "-np", "2", f"{BIN}/moe-exec", art, *args], timeout=120,
                               env={"MOE_EP_TIMEOUT_S": "20"})
        check("a rank that dies", rc not in (0, None) and seconds < 60 and "x.1.npy" in out,
              f"rc={rc} after {seconds:.0f} s\n{out[-2000:]}")

        # Rank 0 runs the layer three times, rank 1 once and leaves.
        rc, out, seconds = run([*MPIRUN, "-x", "MOE_EP_TIMEOUT_S=5",
                                "-np", "1", f"{BIN}/moe-exec", art, *inputs, "--warmup", "1", "--repeat", "2", ":",
                                "-np", "1", f"{BIN}/moe-exec", art, *inputs, "--warmup", "0", "--repeat", "1"],
                               timeout=120)
        check("a rank that leaves early", rc not in (0, None) and seconds < 60 and
              "no answer from the other ranks after 5 s" in out, f"rc={rc} after {seconds:.0f} s\n{out[-2000:]}")
    if failures:
        sys.exit(f"FAIL: {failures}")


if __name__ == "__main__":
    main()
