#!/usr/bin/env python3
"""GPU time of one MoE layer: our compiled artifact against PyTorch, on one machine.

Two halves, because the GPU machine has no LLVM/MLIR:

  python3 bench/gpu_layer_bench.py prepare [--out DIR] [--chip sm_90]
      (here) compiles two bf16 GPU artifacts per model shape (dynamic token
      count, moe-optimize on) with moe-compile: the mma.sync kernels for
      --chip and the Hopper ones (sm_90a, --wgmma); and copies moe-exec,
      libmoe_runtime.so and this script into DIR (well under 64 MiB).

  python3 DIR/gpu_layer_bench.py run [--dir DIR] [--tokens 1,16,128,1024,8192]
      (on the GPU machine, with PyTorch) times, for every model and token count:
        ours     moe-exec on the artifact (CUDA events, median of --repeat)
        wgmma    the same for the sm_90a artifact (H100/H200 only)
        eager    the HF-transformers loop: router, softmax/top-k, then per
                 expert index_select -> two matmuls -> index_add_
        grouped  torch._grouped_mm over expert-sorted tokens, where it exists
      and, in the same run, the hardware limits it compares against: the
      device-to-device copy bandwidth and the bf16 GEMM rate (8192^3 matmul).
      Writes DIR/results.json, DIR/results.md and DIR/time_vs_tokens.png.

Expert weights are filled on the device (moe-exec --fill, torch.full): their
values do not change the work; x and the router are random with logits of
unit variance on both sides, so the routing (and the load per expert) is
realistic. `plot RESULTS.json -o FILE.png` redraws the plot of a fetched run.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name: (hidden, ffn, experts, k, config)
MODELS = {
    "mixtral-8x7b": (4096, 14336, 8, 2, dict(experts=[("ffn", 8)], activation="swiglu",
                                             routing=dict(scoring="softmax", k=2, order="select_then_score"))),
    "deepseek-v3": (7168, 2048, 256, 8, dict(experts=[("ffn", 256)], activation="swiglu",
                                             routing=dict(scoring="sigmoid", k=8, normalize="all", scale=2.5,
                                                          num_groups=8, topk_groups=4),
                                             bias=True, shared=2048)),
    "qwen3-30b-a3b": (2048, 768, 128, 8, dict(experts=[("ffn", 128)], activation="swiglu",
                                              routing=dict(scoring="softmax", k=8, normalize="all"))),
    "olmoe-1b-7b": (2048, 1024, 64, 8, dict(experts=[("ffn", 64)], activation="swiglu",
                                            routing=dict(scoring="softmax", k=8))),
}


def prepare(args):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    from moe_reference import layer
    build = os.environ.get("MOE_BUILD_DIR", os.path.join(ROOT, "build"))
    os.makedirs(args.out, exist_ok=True)
    for tool in ("bin/moe-exec", "lib/libmoe_runtime.so"):
        shutil.copy(os.path.join(build, tool), args.out)
    shutil.copy(os.path.abspath(__file__), args.out)
    for name, (hidden, ffn, _, _, cfg) in MODELS.items():
        src = os.path.join(args.out, f"{name}.mlir")
        with open(src, "w") as f:
            f.write(layer.mlir_text(cfg, 1, hidden, ffn, "bf16", dynamic_tokens=True))
        for suffix, flags in (("", [f"--chip={args.chip}"]), ("_wgmma", ["--chip=sm_90a", "--wgmma"])):
            subprocess.run([os.path.join(build, "bin", "moe-compile"), src, "--target=gpu", *flags,
                            "-o", os.path.join(args.out, f"lib{name}{suffix}.so")], check=True)
    size = sum(os.path.getsize(os.path.join(args.out, x)) for x in os.listdir(args.out))
    print(f"prepared {2 * len(MODELS)} artifacts in {args.out} ({size / 2**20:.1f} MiB)")


def layer_work(hidden, ffn, experts, k, cfg, tokens):
    """FLOPs and the bytes a perfect kernel must move (bf16)."""
    shared = cfg.get("shared") or 0
    flops = 2 * tokens * hidden * experts + 2 * tokens * k * 3 * hidden * ffn + 2 * tokens * 3 * hidden * shared
    touched = min(experts, tokens * k)
    weight_bytes = 2 * (touched * 3 * hidden * ffn + 3 * hidden * shared + experts * hidden)
    return flops, weight_bytes + 2 * 2 * tokens * hidden


def run(args):
    import time
    import torch
    start = time.monotonic()
    left = lambda: args.deadline_s - (time.monotonic() - start)
    too_slow = set()  # (model, variant) that timed out: larger token counts are skipped

    def timed(fn, repeat):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeat):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return sorted(times)[len(times) // 2]

    dev = torch.device("cuda")
    big = torch.empty(1 << 29, dtype=torch.bfloat16, device=dev)
    copy_ms = timed(lambda: big.clone(), 20)
    copy_gbs = 2 * big.numel() * 2 / copy_ms / 1e6
    m = torch.randn(8192, 8192, dtype=torch.bfloat16, device=dev)
    gemm_ms = timed(lambda: m @ m, 20)
    gemm_tflops = 2 * 8192 ** 3 / gemm_ms / 1e9
    big = m = None  # free the memory before the layers
    print(f"{torch.cuda.get_device_name()}: copy {copy_gbs:.0f} GB/s, bf16 GEMM {gemm_tflops:.0f} TFLOP/s")

    results = dict(device=torch.cuda.get_device_name(), copy_gbs=copy_gbs, gemm_tflops=gemm_tflops, rows=[])
    for name, (hidden, ffn, experts, k, cfg) in MODELS.items():
        shared = cfg.get("shared") or 0
        w_gate_up = torch.full((experts, 2 * ffn, hidden), 0.01, dtype=torch.bfloat16, device=dev)
        w_down = torch.full((experts, hidden, ffn), 0.01, dtype=torch.bfloat16, device=dev)
        router = torch.randn(experts, hidden, dtype=torch.bfloat16, device=dev) * hidden ** -0.5
        for tokens in args.tokens:
            if left() < 10:
                print(f"deadline: {name} from {tokens} tokens on not measured")
                break
            x = torch.randn(tokens, hidden, dtype=torch.bfloat16, device=dev)

            def route():
                logits = (x @ router.t()).float()
                weights, idx = torch.topk(logits, k, dim=-1)
                return torch.softmax(weights, dim=-1).to(x.dtype), idx

            def eager():
                weights, idx = route()
                out = torch.zeros_like(x)
                for e in range(experts):
                    rows, slot = torch.where(idx == e)
                    if rows.numel() == 0:
                        continue
                    h = x[rows] @ w_gate_up[e].t()
                    g, u = h.chunk(2, dim=-1)
                    y = (torch.nn.functional.silu(g) * u) @ w_down[e].t()
                    out.index_add_(0, rows, y * weights[rows, slot, None])
                return out

            def grouped():
                weights, idx = route()
                order = torch.argsort(idx.flatten(), stable=True)
                counts = torch.bincount(idx.flatten(), minlength=experts)
                offs = torch.cumsum(counts, 0).to(torch.int32)
                xs = x[order // k]
                h = torch._grouped_mm(xs, w_gate_up.transpose(1, 2), offs=offs)
                g, u = h.chunk(2, dim=-1)
                y = torch._grouped_mm((torch.nn.functional.silu(g) * u).contiguous(), w_down.transpose(1, 2), offs=offs)
                out = torch.zeros_like(x)
                out.index_add_(0, order // k, y * weights.flatten()[order, None])
                return out

            row = dict(model=name, tokens=tokens)
            row["eager_ms"] = timed(eager, args.repeat)
            try:
                row["grouped_ms"] = timed(grouped, args.repeat)
            except (AttributeError, RuntimeError) as err:
                row["grouped_ms"] = None
                row["grouped_error"] = str(err).splitlines()[0]
            # Ours: inputs 0 (x) and 1 (router) random, every weight after them filled.
            fills = sum((["--fill", f"{i}=0.01"] for i in range(2, 4 + (1 if cfg.get("bias") else 0)
                                                                   + (2 if shared else 0))), [])
            # x and the router uniform in [-a, a): logits of unit variance, as
            # PyTorch's (randn x, randn * H^-0.5 router) have; moe-exec's default
            # a = 1 gives a standard deviation of sqrt(H)/3, which saturates a
            # sigmoid router into ties (every token then picks the same experts).
            scale = (3 / hidden ** 0.5) ** 0.5
            for what, suffix in (("ours", ""), ("wgmma", "_wgmma")):
                if (name, what) in too_slow:
                    row[f"{what}_error"] = ["skipped: timed out at fewer tokens"]
                    continue
                try:
                    proc = subprocess.run([os.path.join(args.dir, "moe-exec"),
                                           os.path.join(args.dir, f"lib{name}{suffix}.so"), "--tokens", str(tokens),
                                           "--warmup", "3", "--repeat", str(args.repeat), "--random-scale", f"{scale:.4f}", *fills],
                                          capture_output=True, text=True, timeout=max(5, min(120, left())))
                except subprocess.TimeoutExpired:
                    too_slow.add((name, what))
                    row[f"{what}_error"] = ["timed out"]
                    continue
                found = re.search(r"median ([0-9.]+) ms", proc.stdout)
                row[f"{what}_ms"] = float(found.group(1)) if found else None
                if not found:
                    row[f"{what}_error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            flops, nbytes = layer_work(hidden, ffn, experts, k, cfg, tokens)
            for what in ("ours", "wgmma", "eager", "grouped"):
                ms = row.get(f"{what}_ms")
                if ms:
                    row[f"{what}_tflops"] = flops / ms / 1e9
                    row[f"{what}_gbs"] = nbytes / ms / 1e6
            print(row, flush=True)
            results["rows"].append(row)
            with open(os.path.join(args.dir, "results.json"), "w") as f:
                json.dump(results, f, indent=1)
        w_gate_up = w_down = None
        torch.cuda.empty_cache()

    with open(os.path.join(args.dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    lines = [f"Device: {results['device']}; measured copy {copy_gbs:.0f} GB/s, bf16 GEMM {gemm_tflops:.0f} TFLOP/s.",
             "", "| model | tokens | ours ms | wgmma ms | eager ms | grouped_mm ms | best / eager | best / grouped "
             "| best TFLOP/s (% GEMM) | best GB/s (% copy) |", "|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, f="{:.3f}": f.format(v) if v else "-"
    for r in results["rows"]:
        o, w, e, g = r.get("ours_ms"), r.get("wgmma_ms"), r.get("eager_ms"), r.get("grouped_ms")
        # Ratios and hardware fractions for our faster artifact.
        best = "wgmma" if w and (not o or w < o) else "ours"
        b = r.get(f"{best}_ms")
        lines.append(f"| {r['model']} | {r['tokens']} | {fmt(o)} | {fmt(w)} | {fmt(e)} | {fmt(g)} | "
                     f"{fmt(b and e and b / e, '{:.2f}x')} | {fmt(b and g and b / g, '{:.2f}x')} | "
                     f"{fmt(r.get(f'{best}_tflops'), '{:.1f}')} "
                     f"({fmt(r.get(f'{best}_tflops', 0) / gemm_tflops * 100, '{:.1f}')}%) | "
                     f"{fmt(r.get(f'{best}_gbs'), '{:.0f}')} ({fmt(r.get(f'{best}_gbs', 0) / copy_gbs * 100, '{:.1f}')}%) |")
    with open(os.path.join(args.dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(results, os.path.join(args.dir, "time_vs_tokens.png"))
    print("\n".join(lines))


def plot(results, path):
    """Time per layer against tokens, one panel per model, every variant measured."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot (results.json has the data)")
        return
    names = list(dict.fromkeys(r["model"] for r in results["rows"]))
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = [r for r in results["rows"] if r["model"] == name]
        for what in ("ours", "wgmma", "eager", "grouped"):
            pts = [(r["tokens"], r[f"{what}_ms"]) for r in rows if r.get(f"{what}_ms")]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=what)
        ax.set(title=name, xscale="log", yscale="log", xlabel="tokens", ylabel="ms per layer")
        ax.legend()
    fig.suptitle(f"{results['device']}: one bf16 MoE layer (CUDA events, median)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "gpu-bench"))
    p.add_argument("--chip", default="sm_90")
    r = sub.add_parser("run")
    r.add_argument("--dir", default=HERE)
    r.add_argument("--tokens", default="1,16,128,1024,8192", type=lambda s: [int(t) for t in s.split(",")])
    r.add_argument("--repeat", type=int, default=20)
    r.add_argument("--deadline-s", type=float, default=1800,
                   help="stop starting new measurements after this many seconds (a lease is short)")
    g = sub.add_parser("plot", help="draw the plot of a results.json (e.g. one fetched from the GPU machine)")
    g.add_argument("results")
    g.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    if args.mode == "plot":
        with open(args.results) as f:
            plot(json.load(f), args.output)
    else:
        prepare(args) if args.mode == "prepare" else run(args)


if __name__ == "__main__":
    main()
