# Identical layers compiled once (moe-share-layers) and the code around them
# (moe-share-blocks): a 4-layer program whose layers 0, 1 and 3 have one
# configuration and layer 2 another (different weights in every layer,
# residual adds between them). With sharing, the program must (1) call the
# shared routed experts three times, the shared expert four times, and keep
# layer 2's routed experts inline, and make each shared-expert call with the
# residual adds after it one block called four times, (2) give bit-identical
# results to the program compiled with every layer separately
# (--share-layers=false), on the CPU and in GPU emulation, (3) match the
# float64 reference within 1e-5 (normwise relative, f32 accumulation over 4
# layers), and (4) compile to no more GPU kernels than its two distinct layers
# alone.
# RUN: %moe_python %s

import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from moe_reference import layer
from moe_reference.harness import execution_modes, moe_run_path

DEEPSEEK = dict(experts=[("ffn", 16)], activation="swiglu",
                routing=dict(scoring="sigmoid", k=4, normalize="all", num_groups=4, topk_groups=2),
                bias=True, shared=24)
# The same layer selecting 2 experts: a different computation.
OTHER = dict(DEEPSEEK, routing=dict(DEEPSEEK["routing"], k=2))
STACK = [DEEPSEEK, DEEPSEEK, OTHER, DEEPSEEK]
TOKENS, HIDDEN, FFN = 13, 48, 20
TOLERANCE = 1e-5


def program(dynamic_tokens, stack=STACK):
    """@main(x, weights of layer 0, ..., weights of layer L-1) -> x + y0 + ..."""
    args, body, x = [], [], "%x"
    for i, cfg in enumerate(stack):
        names = {name: f"%l{i}_{name}" for name, _, _ in layer.operands(cfg, TOKENS, HIDDEN, FFN, "f32")}
        names["x"] = x
        decls, op, y_ty, _ = layer.op_text(cfg, TOKENS, HIDDEN, FFN, "f32", dynamic_tokens, names,
                                           results=(f"%y{i}", f"%z{i}"))
        args += decls if i == 0 else decls[1:]
        body.append(op)
        body.append(f"  %h{i} = arith.addf {x}, %y{i} : {y_ty}\n")
        x = f"%h{i}"
    return f"func.func @main({', '.join(args)}) -> {y_ty} {{\n{''.join(body)}  return {x} : {y_ty}\n}}\n"


def reference(weights):
    x = weights[0]["x"]
    for cfg, w in zip(STACK, weights):
        y, _ = layer.reference(cfg, dict(w, x=x), "f32")
        x = x + y
    return x


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def main():
    opt = os.environ.get("MOE_OPT") or sys.exit("set MOE_OPT to the moe-opt binary")
    rng = np.random.default_rng(5)
    weights = [layer.random_operands(cfg, TOKENS, HIDDEN, FFN, "f32", rng) for cfg in STACK]
    expected = reference(weights)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        inputs = []
        for i, (cfg, w) in enumerate(zip(STACK, weights)):
            for name, _, _ in layer.operands(cfg, TOKENS, HIDDEN, FFN, "f32"):
                if name == "x" and i > 0:
                    continue
                path = os.path.join(tmp, f"l{i}_{name}.npy")
                np.save(path, w[name].astype(np.float32))
                inputs += ["--input", path]
        for dynamic in (True, False):
            shape = "dynamic" if dynamic else "static"
            src = os.path.join(tmp, f"{shape}.mlir")
            with open(src, "w") as f:
                f.write(program(dynamic))
            shared = run([opt, src, "--moe-optimize", "--moe-share-layers"])
            calls = len(re.findall(r"call @main_layer(_\d+)?\(", shared))
            functions = len(re.findall(r"func\.func private @main_layer.*moe\.shared_layer", shared))
            dispatches = shared.count("moe.dispatch")
            # The routed experts of layers 0, 1, 3 (3 calls) and the shared
            # expert (it is not folded: its width differs) of all 4 layers.
            good = calls == 7 and functions == 2 and dispatches == 2
            ok &= good
            print(f"{'ok  ' if good else 'FAIL'} {shape}: {calls} calls of {functions} shared functions, "
                  f"{dispatches} dispatches (expected 7, 2, 2: layer 2's routing stays inline)")
            # moe-share-blocks: each layer's shared-expert call (the most
            # called) with the two residual adds after it is one block.
            blocks = run([opt, src, "--moe-optimize", "--moe-share-layers", "--moe-share-blocks"])
            block_calls = len(re.findall(r"call @main_block\(", blocks))
            good = block_calls == 4 and "func.func private @main_block_1" not in blocks
            ok &= good
            print(f"{'ok  ' if good else 'FAIL'} {shape}: {block_calls} calls of one shared block (expected 4)")
            for mode, flags in execution_modes():
                results = {}
                for share in ("true", "false"):
                    out = os.path.join(tmp, f"{shape}-{mode}-{share}")
                    run([moe_run_path(), src, "--output-dir", out, f"--share-layers={share}", *flags, *inputs])
                    results[share] = np.load(os.path.join(out, "result_0.npy"))
                same = np.array_equal(results["true"], results["false"])
                err = np.abs(results["true"] - expected).max() / np.abs(expected).max()
                good = same and err <= TOLERANCE
                ok &= good
                print(f"{'ok  ' if good else 'FAIL'} {shape} [{mode}]: shared == separate bit for bit: {same}; "
                      f"rel err {err:.2e} vs float64 (tol {TOLERANCE:.0e})")
        # One set of kernels per distinct layer: the 4-layer program has no
        # more kernels than a program holding each of its two distinct layers
        # once (the residual adds' kernels are one kernel too; where the
        # layers meet, loop fusion may merge a few more), and fewer than with
        # every layer compiled separately.
        src = os.path.join(tmp, "static.mlir")
        distinct = os.path.join(tmp, "distinct.mlir")
        with open(distinct, "w") as f:
            f.write(program(False, [DEEPSEEK, OTHER]))
        kernels = {share: run([opt, src, "--moe-optimize", f"--moe-gpu-pipeline=share-layers={share}"])
                   .count("gpu.binary @") for share in ("true", "false")}
        kernels["distinct"] = run([opt, distinct, "--moe-optimize", "--moe-gpu-pipeline"]).count("gpu.binary @")
        good = 0 < kernels["true"] <= kernels["distinct"] < kernels["false"]
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} GPU kernels: {kernels['true']} shared, {kernels['distinct']} for the two "
              f"distinct layers alone, {kernels['false']} with every layer separate")
    sys.exit(0 if ok else 1)


main()
