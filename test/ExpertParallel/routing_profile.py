# moe-run --routing-profile counts, per layer, the tokens routed to each FFN
# expert: on a two-layer program (8 then 6 experts, so the profile is the
# concatenation of the two layers' counts) they equal the counts of the
# top-2 of each layer's logits computed by numpy; the profile then drives
# --placement=balanced, whose remark reports each rank's share of it.
# Bad uses are clear errors.
# RUN: %moe_python %s

import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from moe_reference import layer

BIN = os.environ.get("MOE_COMPILER_BIN", "build/bin")
A = dict(experts=[("ffn", 8)], activation="swiglu", routing=dict(scoring="softmax", k=2, order="select_then_score"))
B = dict(experts=[("ffn", 6), ("zero", 1)], activation="relu", routing=dict(scoring="softmax", k=2))
TOKENS, HIDDEN, FFN = 40, 16, 8


def run(cmd, expect_ok=True):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if (proc.returncode == 0) != expect_ok:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.stdout + proc.stderr


def program():
    args_a, op_a, y_ty, za_ty = layer.op_text(A, TOKENS, HIDDEN, FFN, "f32", True,
                                              {n: f"%a_{n}" for n, _, _ in layer.operands(A, TOKENS, HIDDEN, FFN, "f32")},
                                              results=("%ya", "%za"))
    names_b = {n: f"%b_{n}" for n, _, _ in layer.operands(B, TOKENS, HIDDEN, FFN, "f32")}
    names_b["x"] = "%ya"
    args_b, op_b, _, zb_ty = layer.op_text(B, TOKENS, HIDDEN, FFN, "f32", True, names_b, results=("%yb", "%zb"))
    return (f"func.func @two({', '.join(args_a + args_b[1:])}) -> ({y_ty}, {za_ty}, {zb_ty}) {{\n{op_a}{op_b}"
            f"  return %yb, %za, %zb : {y_ty}, {za_ty}, {zb_ty}\n}}\n")


def top2_counts(logits, experts):
    picks = np.argsort(-logits, axis=1, kind="stable")[:, :2]
    return np.bincount(picks.ravel(), minlength=logits.shape[1])[:experts]


def main():
    rng = np.random.default_rng(2)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "two.mlir")
        with open(src, "w") as f:
            f.write(program())
        inputs = []
        for tag, cfg in (("a", A), ("b", B)):
            a = layer.random_operands(cfg, TOKENS, HIDDEN, FFN, "f32", rng)
            for n, _, _ in layer.operands(cfg, TOKENS, HIDDEN, FFN, "f32"):
                if tag == "b" and n == "x":
                    continue
                path = os.path.join(tmp, f"{tag}_{n}.npy")
                np.save(path, a[n].astype(np.float32))
                inputs += ["--input", path]
        profile = os.path.join(tmp, "loads.npy")
        out = os.path.join(tmp, "out")
        run([f"{BIN}/moe-run", src, *inputs, "--output-dir", out, "--routing-profile", profile])
        got = np.load(profile)
        za, zb = np.load(os.path.join(out, "result_1.npy")), np.load(os.path.join(out, "result_2.npy"))
        want = np.concatenate([top2_counts(za, 8), top2_counts(zb, 6)])
        ok = got.dtype == np.int64 and got.shape == (14,) and np.array_equal(got, want)
        print(f"{'ok  ' if ok else 'FAIL'} profile {got.tolist()} = numpy's top-2 counts {want.tolist()}")
        # Three result files, not five: the routing is not a result of the program.
        ok &= sorted(os.listdir(out)) == ["result_0.npy", "result_1.npy", "result_2.npy"]

        remarks = run([f"{BIN}/moe-compile", src, "--ranks=2", "--placement=balanced",
                       f"--expert-profile={profile}", "-o", os.path.join(tmp, "ep", "libtwo.so")])
        shares = [float(x) for x in re.findall(r"([0-9.]+)% of rows", remarks)]
        expected = []
        for loads in (want[:8], want[8:]):
            # Largest first, each to an empty rank while there is one, else
            # to the least loaded (ties: the lower rank).
            rank_load, rank_count = [0, 0], [0, 0]
            for e in sorted(range(len(loads)), key=lambda e: -loads[e]):
                empty = [d for d in range(2) if rank_count[d] == 0]
                d = empty[0] if empty else min(range(2), key=lambda d: (rank_load[d], d))
                rank_load[d] += loads[e]
                rank_count[d] += 1
            expected += [round(100.0 * float(rl) / float(loads.sum()), 1) for rl in rank_load]
        good = shares == expected
        print(f"{'ok  ' if good else 'FAIL'} balanced placement shares {shares} (expected {expected})")
        ok &= good

        err = run([f"{BIN}/moe-run", src, *inputs, "--routing-profile", profile, "--ranks=2"], expect_ok=False)
        good = "measures one process's routing" in err
        print(f"{'ok  ' if good else 'FAIL'} --routing-profile with --ranks refused")
        ok &= good
        dense = os.path.join(tmp, "dense.mlir")
        with open(dense, "w") as f:
            f.write("func.func @f(%x: tensor<4x4xf32>) -> tensor<4x4xf32> {\n  return %x : tensor<4x4xf32>\n}\n")
        err = run([f"{BIN}/moe-run", dense, "--routing-profile", profile], expect_ok=False)
        good = "has no moe.layer" in err
        print(f"{'ok  ' if good else 'FAIL'} a program without layers refused")
        ok &= good
        bad = os.path.join(tmp, "bad.npy")
        np.save(bad, np.array([[1.0, -2.0]]))
        err = run([f"{BIN}/moe-compile", src, "--ranks=2", "--placement=balanced", f"--expert-profile={bad}",
                   "-o", os.path.join(tmp, "x", "lib.so")], expect_ok=False)
        good = "load 1 is -2" in err
        print(f"{'ok  ' if good else 'FAIL'} a negative load refused")
        ok &= good
    if not ok:
        sys.exit("FAIL")


if __name__ == "__main__":
    main()
