#!/usr/bin/env python3
"""Compile time, peak memory and library size of deep MoE models.

Each model chains L identical-shaped MoE layers (different weights, passed as
arguments, residual adds between them) and is compiled by moe-compile for the
CPU and for the GPU (sm_90, ptxas): with identical layers shared (the default,
moe-share-layers) into an empty cache, again with that cache warm, and, up to
--separate-max layers, one by one without a cache (--share-layers=false
--no-cache: every layer's kernels built again, as before sharing):

  deepseek_v3  hidden 7168, 256 experts of width 2048, top-8, sigmoid + bias,
               8 groups / top-4, one shared expert, bf16 (moe input)
  mixtral      hidden 4096, 8 experts of width 14336, top-2, bf16 (moe input)
  mixtral_onnx the Mixtral shape as an ONNX model of com.microsoft.MoE nodes
               (f32), every weight a graph input

Usage:
    python3 bench/compile_bench.py [--layers 1,8,32,61] [--targets cpu,gpu]
        [--models deepseek_v3,mixtral,mixtral_onnx] [--separate-max 8] [--plot docs/compile-time.png]
Prints a markdown table (docs/compile.md records one).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
from moe_reference import layer as moe_layer  # noqa: E402

TOKENS = 64
MODELS = {
    "deepseek_v3": dict(cfg=dict(experts=[("ffn", 256)], activation="swiglu",
                                 routing=dict(scoring="sigmoid", k=8, normalize="all", num_groups=8,
                                              topk_groups=4, scale=2.5),
                                 bias=True, shared=2048),
                        hidden=7168, ffn=2048, dtype="bf16"),
    "mixtral": dict(cfg=dict(experts=[("ffn", 8)], activation="swiglu",
                             routing=dict(scoring="softmax", k=2, order="select_then_score")),
                    hidden=4096, ffn=14336, dtype="bf16"),
    "mixtral_onnx": dict(onnx=True, hidden=4096, ffn=14336, experts=8, k=2),
}


def tool(name):
    path = os.path.join(ROOT, "build", "bin", name)
    if not os.path.exists(path):
        sys.exit(f"{path} not found: build the project first (scripts/build.sh)")
    return path


def moe_program(model, layers):
    """@main(x, layer 0's weights, ..., layer L-1's) -> x + y_0 + ... (residual)."""
    cfg, hidden, ffn, dtype = model["cfg"], model["hidden"], model["ffn"], model["dtype"]
    args, body, x = [], [], "%x"
    for i in range(layers):
        names = {name: f"%l{i}_{name}" for name, _, _ in moe_layer.operands(cfg, TOKENS, hidden, ffn, dtype)}
        names["x"] = x
        decls, op, y_ty, _ = moe_layer.op_text(cfg, TOKENS, hidden, ffn, dtype, False, names,
                                               results=(f"%y{i}", f"%z{i}"))
        args += decls if i == 0 else decls[1:]
        body += [op, f"  %h{i} = arith.addf {x}, %y{i} : {y_ty}\n"]
        x = f"%h{i}"
    return f"func.func @main({', '.join(args)}) -> {y_ty} {{\n{''.join(body)}  return {x} : {y_ty}\n}}\n"


def onnx_program(model, layers, path):
    import onnx
    from onnx import TensorProto, helper
    hidden, ffn, experts = model["hidden"], model["ffn"], model["experts"]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [TOKENS, hidden])]
    nodes, x = [], "x"
    for i in range(layers):
        for name, shape in ((f"router{i}", [hidden, experts]), (f"fc1_{i}", [experts, 2 * ffn, hidden]),
                            (f"fc2_{i}", [experts, hidden, ffn])):
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        nodes.append(helper.make_node("MatMul", [x, f"router{i}"], [f"logits{i}"]))
        nodes.append(helper.make_node("MoE", [x, f"logits{i}", f"fc1_{i}", "", f"fc2_{i}"], [f"y{i}"],
                                      domain="com.microsoft", k=model["k"], activation_type="swiglu",
                                      swiglu_fusion=1, normalize_routing_weights=1))
        nodes.append(helper.make_node("Add", [x, f"y{i}"], [f"h{i}"]))
        x = f"h{i}"
    graph = helper.make_graph(nodes, "deep_moe", inputs,
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [TOKENS, hidden])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                helper.make_opsetid("com.microsoft", 1)], ir_version=10)
    onnx.save(m, path)


def compile_once(src, target, share, cache, out_dir):
    """(seconds, peak MiB, library MiB, phase times) of one moe-compile;
    `cache`: a cache directory, or None for none."""
    lib = os.path.join(out_dir, "libm.so")
    cache_flags = [f"--cache-dir={cache}"] if cache else ["--no-cache"]
    cmd = ["/usr/bin/time", "-f", "peak_kib %M", tool("moe-compile"), src, f"--target={target}",
           f"--share-layers={'true' if share else 'false'}", *cache_flags, "-o", lib]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"moe-compile failed on {src}:\n{proc.stdout}{proc.stderr[-3000:]}")
    peak = int(re.search(r"peak_kib (\d+)", proc.stderr).group(1)) / 1024
    phases = dict((m.group(1), float(m.group(2)) / 1000) for m in
                  re.finditer(r"\[moe-compile\] (parsed|lowered|wrote)\b.* in ([\d.]+) ms", proc.stdout))
    return seconds, peak, os.path.getsize(lib) / 2**20, phases


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", default="1,8,32,61")
    parser.add_argument("--targets", default="cpu,gpu")
    parser.add_argument("--models", default="deepseek_v3,mixtral,mixtral_onnx")
    parser.add_argument("--separate-max", type=int, default=8,
                        help="compile layers one by one (--share-layers=false) up to this depth")
    parser.add_argument("--plot", help="write a plot of compile time against depth here (.png)")
    args = parser.parse_args()
    layer_counts = [int(n) for n in args.layers.split(",")]
    targets = args.targets.split(",")
    if "gpu" in targets and not shutil.which("ptxas") and not os.path.exists("/usr/local/cuda/bin/ptxas"):
        sys.exit("the GPU target needs ptxas (CUDA toolkit)")
    rows = []
    print("| model | layers | target | compile | time (s) | parse / lower / emit (s) | peak MiB | library MiB |")
    print("|---|---:|---|---|---:|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model = MODELS[name]
            for layers in layer_counts:
                src = os.path.join(tmp, f"{name}_{layers}" + (".onnx" if model.get("onnx") else ".mlir"))
                if model.get("onnx"):
                    onnx_program(model, layers, src)
                else:
                    with open(src, "w") as f:
                        f.write(moe_program(model, layers))
                for target in targets:
                    # A fresh cache per configuration: cold, then warm.
                    cache = os.path.join(tmp, f"cache-{name}-{layers}-{target}")
                    modes = [("shared, cold cache", True, cache), ("shared, warm cache", True, cache)]
                    if layers <= args.separate_max:
                        modes.append(("one by one, no cache", False, None))
                    for mode, share, cache_dir in modes:
                        seconds, peak, size, phases = compile_once(src, target, share, cache_dir, tmp)
                        rows.append((name, layers, target, mode, seconds, peak, size))
                        phase_text = " / ".join(f"{phases.get(p, 0):.2f}" for p in ("parsed", "lowered", "wrote"))
                        print(f"| {name} | {layers} | {target} | {mode} | "
                              f"{seconds:.2f} | {phase_text} | {peak:.0f} | {size:.2f} |", flush=True)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(10, 5))
        colors = plt.get_cmap("tab10").colors
        series = [(name, target) for name in args.models.split(",") for target in targets]
        for index, (name, target) in enumerate(series):
            for mode, style in (("shared, cold cache", "-o"), ("shared, warm cache", ":s"),
                                ("one by one, no cache", "--x")):
                pts = [(r[1], r[4]) for r in rows if r[0] == name and r[2] == target and r[3] == mode]
                if pts:
                    ax.plot(*zip(*pts), style, color=colors[index % len(colors)],
                            label=f"{name} {target}: {mode}")
        ax.set_xlabel("MoE layers in the model")
        ax.set_ylabel("moe-compile time (s)")
        ax.set_title("Compile time against depth (2-core machine)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
