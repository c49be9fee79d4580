#!/usr/bin/env python3
"""CPU time of one compiled MoE layer against two baselines measured in the same run.

  ours      moe-run: moe.layer -> moe-cpu-pipeline -> JIT (median of --repeat runs)
  numpy     the same layer in vectorized numpy: per-expert gather + BLAS matmul
  ort       onnxruntime on the layer as an ONNX graph in the form exporters emit
            (router MatMul -> TopK -> Softmax, then per expert Equal/NonZero/Gather ->
            MatMul -> SiLU*up -> MatMul -> ScatterND(add))

All three run f32 Mixtral-style layers (softmax over the top-2 logits, SwiGLU)
on the same random inputs, and the outputs are checked against each other
before anything is timed. Usage:
    python3 bench/cpu_layer_bench.py [--repeat 10] [--sizes small,medium,large]
Prints a markdown table (docs/perf-cpu.md records one).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
from moe_reference import layer as moe_layer  # noqa: E402

SIZES = {
    # name: (tokens, hidden, ffn, experts, k)
    "small": (16, 512, 1024, 8, 2),
    "medium": (128, 1024, 2048, 8, 2),
    "large": (512, 2048, 4096, 8, 2),
}
CFG = dict(experts=None, activation="swiglu", routing=dict(scoring="softmax", k=2, order="select_then_score"))


def numpy_layer(x, wr, up, down, k):
    logits = x @ wr.T
    idx = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(logits, idx, axis=1)
    g = np.exp(top - top.max(axis=1, keepdims=True))
    g /= g.sum(axis=1, keepdims=True)
    y = np.zeros_like(x)
    f = down.shape[2]
    for e in range(up.shape[0]):
        tok, slot = np.nonzero(idx == e)
        if tok.size == 0:
            continue
        h = x[tok] @ up[e].T
        a = h[:, :f] / (1 + np.exp(-h[:, :f])) * h[:, f:]
        np.add.at(y, tok, (a @ down[e].T) * g[tok, slot][:, None])
    return y


def onnx_layer(hidden, ffn, experts, k, wr, up, down):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], [numpy_helper.from_array(wr.T.copy(), "wr_t")]
    c = lambda name, arr: inits.append(numpy_helper.from_array(np.asarray(arr), name)) or name  # noqa: E731
    c("k", np.array([k], dtype=np.int64))
    c("zero_axis", np.array([0], dtype=np.int64))
    c("one_axis", np.array([1], dtype=np.int64))
    c("split", np.array([ffn, ffn], dtype=np.int64))
    nodes += [
        helper.make_node("MatMul", ["x", "wr_t"], ["logits"]),
        helper.make_node("TopK", ["logits", "k"], ["top", "idx"], axis=-1),
        helper.make_node("Softmax", ["top"], ["gates"], axis=-1),
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("ConstantOfShape", ["x_shape"], ["y0"],
                         value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])),
    ]
    y = "y0"
    for e in range(experts):
        p = f"e{e}_"
        c(p + "id", np.array(e, dtype=np.int64))
        c(p + "up_t", up[e].T.copy())
        c(p + "down_t", down[e].T.copy())
        nodes += [
            helper.make_node("Equal", ["idx", p + "id"], [p + "mask"]),
            helper.make_node("NonZero", [p + "mask"], [p + "pos"]),
            helper.make_node("Transpose", [p + "pos"], [p + "pos_t"], perm=[1, 0]),
            helper.make_node("Gather", [p + "pos", "zero_axis"], [p + "tok2"], axis=0),
            helper.make_node("Squeeze", [p + "tok2", "zero_axis"], [p + "tok"]),
            helper.make_node("GatherND", ["gates", p + "pos_t"], [p + "g"]),
            helper.make_node("Gather", ["x", p + "tok"], [p + "xe"], axis=0),
            helper.make_node("MatMul", [p + "xe", p + "up_t"], [p + "h"]),
            helper.make_node("Split", [p + "h", "split"], [p + "gate", p + "upv"], axis=1),
            helper.make_node("Sigmoid", [p + "gate"], [p + "sig"]),
            helper.make_node("Mul", [p + "gate", p + "sig"], [p + "silu"]),
            helper.make_node("Mul", [p + "silu", p + "upv"], [p + "a"]),
            helper.make_node("MatMul", [p + "a", p + "down_t"], [p + "o"]),
            helper.make_node("Unsqueeze", [p + "g", "one_axis"], [p + "g2"]),
            helper.make_node("Mul", [p + "o", p + "g2"], [p + "og"]),
            helper.make_node("Unsqueeze", [p + "tok", "one_axis"], [p + "tok_idx"]),
            helper.make_node("ScatterND", [y, p + "tok_idx", p + "og"], [p + "y"], reduction="add"),
        ]
        y = p + "y"
    nodes.append(helper.make_node("Identity", [y], ["y"]))
    graph = helper.make_graph(
        nodes, "moe_layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


def median_ms(fn, repeat, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def run_size(name, repeat, moe_run):
    import onnxruntime as ort

    tokens, hidden, ffn, experts, k = SIZES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((tokens, hidden)).astype(np.float32)
    wr = (rng.standard_normal((experts, hidden)) / np.sqrt(hidden)).astype(np.float32)
    up = (rng.standard_normal((experts, 2 * ffn, hidden)) / np.sqrt(hidden)).astype(np.float32)
    down = (rng.standard_normal((experts, hidden, ffn)) / np.sqrt(ffn)).astype(np.float32)
    cfg = dict(CFG, experts=[("ffn", experts)])

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "layer.mlir")
        with open(src, "w") as f:
            f.write(moe_layer.mlir_text(cfg, tokens, hidden, ffn, "f32"))
        cmd = [moe_run, src, "--output-dir", tmp, "--repeat", str(repeat), "--warmup", "2"]
        for arg, a in (("x", x), ("wr", wr), ("up", up), ("down", down)):
            np.save(os.path.join(tmp, arg + ".npy"), a)
            cmd += ["--input", os.path.join(tmp, arg + ".npy")]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        ours_ms = float(re.search(r"\[moe-run\] run ([0-9.]+) ms", out).group(1))
        compile_ms = float(re.search(r"\[moe-run\] compile ([0-9.]+) ms", out).group(1))
        ours_y = np.load(os.path.join(tmp, "result_0.npy"))

    numpy_y = numpy_layer(x, wr, up, down, k)
    numpy_ms = median_ms(lambda: numpy_layer(x, wr, up, down, k), repeat)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count()
    sess = ort.InferenceSession(onnx_layer(hidden, ffn, experts, k, wr, up, down).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    ort_y = sess.run(None, {"x": x})[0]
    ort_ms = median_ms(lambda: sess.run(None, {"x": x}), repeat)

    scale = np.abs(numpy_y).max()
    for what, y in (("ours", ours_y), ("onnxruntime", ort_y)):
        err = np.abs(y - numpy_y).max() / scale
        if err > 1e-4:
            sys.exit(f"{name}: {what} differs from numpy by {err:.2e}; not timing a wrong answer")
    # Useful FLOPs: router + k selected experts per token (2 matmuls, gate/up 2F wide).
    flops = 2 * tokens * hidden * experts + tokens * k * (2 * hidden * 2 * ffn + 2 * ffn * hidden)
    return dict(name=name, shape=f"T={tokens} H={hidden} F={ffn} E={experts} k={k}", ours=ours_ms,
                compile=compile_ms, numpy=numpy_ms, ort=ort_ms, gflops=flops / 1e9)


def measured_sgemm_gflops():
    """The machine's f32 matmul rate, measured with numpy's BLAS on all cores:
    the practical hardware limit the table reports a fraction of."""
    a = np.random.default_rng(1).standard_normal((2048, 2048)).astype(np.float32)
    ms = median_ms(lambda: a @ a, 5)
    return 2 * 2048**3 / (ms * 1e6)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--sizes", default="small,medium,large")
    parser.add_argument("--moe-run", default=os.path.join(ROOT, "build", "bin", "moe-run"))
    args = parser.parse_args()
    rows = []
    for name in args.sizes.split(","):
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        rows.append(run_size(name, args.repeat, args.moe_run))
    peak = measured_sgemm_gflops()
    print(f"CPU: {os.cpu_count()} cores; f32; median of {args.repeat} runs after 2 warm-up runs; "
          f"measured f32 GEMM (numpy BLAS, 2048^3): {peak:.1f} GFLOP/s\n")
    print("| size | shape | ours ms | numpy ms | onnxruntime ms | ours / numpy | ours / ort | ours GFLOP/s "
          "| of GEMM rate | compile ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['shape']} | {r['ours']:.2f} | {r['numpy']:.2f} | {r['ort']:.2f} | "
              f"{r['ours'] / r['numpy']:.2f} | {r['ours'] / r['ort']:.2f} | {r['gflops'] / r['ours'] * 1e3:.2f} | "
              f"{r['gflops'] / r['ours'] * 1e3 / peak:.1%} | {r['compile']:.0f} |")


if __name__ == "__main__":
    main()
