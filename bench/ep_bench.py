"""Expert parallelism on this machine: one MoE layer compiled with
--ranks=N (N = 1..4) and run under mpirun, each rank on its own tokens.

Per rank count it reports, from the runtime's MOE_EP_STATS:
  - the bytes the exchanges moved to other ranks, against the minimum
    (every routed token row that leaves its rank, there and back, at the
    model's element width: f32 results travel back as f32, bf16 results
    as f32 too, since the combine rounds once); with --placement=split
    (every rank a block of every expert) the minimum of that scheme: each
    routed row to every other rank, every rank's block of the activations
    of all rows to every other rank, each row's result blocks back;
  - the time of the exchanges per layer call (counts, dispatch, return,
    and split's column gather; each after a barrier, whose wait for the slowest rank is reported
    apart), against a plain MPI_Alltoallv of the same bytes
    (bench/ep_alltoallv_peer.c) timed in the same run;
  - the layer time (the slowest rank's median), and the single-process
    artifact on all N x T tokens for scale.
Each rank gets cores / N OpenMP threads (at least 1). On a 2-core machine
with N up to 4 processes this measures overheads (the ranks share the
cores), not speedup.

usage: python3 bench/ep_bench.py [--tokens-per-rank 256] [--hidden 1024] [--ffn 1024]
                                 [--experts 8] [--k 2] [--repeat 10] [--placement contiguous]
writes docs/expert-parallel.png (docs/expert-parallel-PLACEMENT.png for another placement) and prints
the table of docs/expert-parallel.md.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
from moe_reference import layer  # noqa: E402
import docs_plot  # noqa: E402

BIN = os.environ.get("MOE_COMPILER_BIN", os.path.join(HERE, "..", "build", "bin"))
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "--tag-output"]


def run(cmd, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def medians_ms(output):
    """The median of every rank's moe-exec timing line."""
    return [float(m) for m in re.findall(r"median ([0-9.]+) ms", output)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens-per-rank", type=int, default=256)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--placement", default="contiguous")
    p.add_argument("--max-ranks", type=int, default=4)
    args = p.parse_args()
    cfg = dict(experts=[("ffn", args.experts)], activation="swiglu",
               routing=dict(scoring="softmax", k=args.k, order="select_then_score"))
    T, H, F = args.tokens_per_rank, args.hidden, args.ffn
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        peer = os.path.join(tmp, "ep_alltoallv_peer")
        run(["mpicc", "-O2", "-o", peer, os.path.join(HERE, "ep_alltoallv_peer.c")])
        src = os.path.join(tmp, "layer.mlir")
        with open(src, "w") as f:
            f.write(layer.mlir_text(cfg, T, H, F, "f32", dynamic_tokens=True))
        names = [n for n, _, _ in layer.operands(cfg, T, H, F, "f32")]
        weights = layer.random_operands(cfg, T, H, F, "f32", rng)
        for n in names[1:]:
            np.save(os.path.join(tmp, f"{n}.npy"), weights[n].astype(np.float32))
        weight_inputs = sum((["--input", os.path.join(tmp, f"{n}.npy")] for n in names[1:]), [])
        x_all = rng.standard_normal((args.max_ranks * T, H)).astype(np.float32)
        single = os.path.join(tmp, "single", "liblayer.so")
        run([f"{BIN}/moe-compile", src, "-o", single])
        for ranks in range(1, args.max_ranks + 1):
            for r in range(ranks):
                np.save(os.path.join(tmp, f"x.{ranks}.{r}.npy"), x_all[r * T:(r + 1) * T])
            np.save(os.path.join(tmp, f"x.all{ranks}.npy"), x_all[:ranks * T])
            out = run([f"{BIN}/moe-exec", single, "--input", os.path.join(tmp, f"x.all{ranks}.npy"),
                       *weight_inputs, "--warmup", "2", "--repeat", str(args.repeat)])
            single_ms = medians_ms(out)[0]
            art = os.path.join(tmp, f"ep{ranks}", "liblayer.so")
            run([f"{BIN}/moe-compile", src, "-o", art, f"--ranks={ranks}", f"--placement={args.placement}"])
            stats_prefix = os.path.join(tmp, f"stats{ranks}")
            threads = max(1, (os.cpu_count() or 1) // ranks)
            out = run([*MPIRUN, "-x", f"OMP_NUM_THREADS={threads}", "-np", str(ranks), f"{BIN}/moe-exec", art,
                       "--input", os.path.join(tmp, f"x.{ranks}.%r.npy"), *weight_inputs,
                       "--warmup", "2", "--repeat", str(args.repeat)], env={"MOE_EP_STATS": stats_prefix})
            layer_ms = max(medians_ms(out))
            stats = [json.load(open(f)) for f in sorted(glob.glob(stats_prefix + ".rank*.json"))]
            calls = stats[0]["dispatches"]
            exchange_ms = max((s["count_seconds"] + s["dispatch_seconds"] + s["return_seconds"] +
                               s.get("gather_seconds", 0)) / calls for s in stats) * 1e3
            wait_ms = max(s["wait_seconds"] / calls for s in stats) * 1e3
            moved = sum(s["bytes_remote"] for s in stats) / calls
            if args.placement == "split":
                # Every routed row to every other rank, the activation blocks of
                # all rows to every other rank, the result blocks back.
                routed = T * args.k * 4
                ffn_block, hidden_block = -(-F // ranks), -(-H // ranks)
                minimum = ranks * (ranks - 1) * (routed * H + ranks * routed * ffn_block + routed * hidden_block)
            else:
                # Rows that leave their rank, there and back, 4 bytes an element.
                minimum = sum(sum(b for d, b in enumerate(s["last_dispatch_bytes"]) if d != s["rank"])
                              for s in stats) * 2
            peer_ms, fresh_ms = 0.0, 0.0
            keys = ["last_dispatch_bytes", "last_return_bytes"]
            if stats[0].get("last_gather_bytes"):
                keys.append("last_gather_bytes")
            for key in keys:
                matrix = os.path.join(tmp, f"matrix{ranks}{key}.txt")
                with open(matrix, "w") as f:
                    for s in stats:
                        f.write(" ".join(str(b) for b in s[key]) + "\n")
                for mode in ("reused", "fresh"):
                    out = run([*MPIRUN, "-np", str(ranks), peer, matrix, str(max(args.repeat, 20)), mode])
                    ms = float(out.strip().split()[-1].split(":")[-1]) * 1e3
                    if mode == "fresh":
                        fresh_ms += ms
                    else:
                        peer_ms += ms
            rows.append(dict(ranks=ranks, tokens=ranks * T, layer_ms=layer_ms, single_ms=single_ms,
                             exchange_ms=exchange_ms, wait_ms=wait_ms, peer_ms=peer_ms, fresh_ms=fresh_ms, moved_mb=moved / 1e6,
                             minimum_mb=minimum / 1e6))
            print(f"ranks {ranks}: layer {layer_ms:.2f} ms (one process on {ranks * T} tokens {single_ms:.2f} ms), "
                  f"exchanges {exchange_ms:.2f} ms (+{wait_ms:.2f} ms waiting) vs MPI_Alltoallv {peer_ms:.2f} ms "
                  f"({fresh_ms:.2f} ms into fresh memory), "
                  f"moved {moved / 1e6:.3f} MB (minimum {minimum / 1e6:.3f} MB)", flush=True)

    print(f"\nlayer: {args.experts} experts, top-{args.k}, hidden {H}, ffn {F}, f32, {T} tokens per rank, "
          f"placement {args.placement}\n")
    print("| ranks | tokens (all ranks) | layer, slowest rank | one process, same tokens | exchanges per call "
          "| waiting for the slowest rank | plain MPI_Alltoallv, same bytes | the same into fresh memory "
          "| bytes moved off-rank | minimum |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ranks']} | {r['tokens']} | {r['layer_ms']:.2f} ms | {r['single_ms']:.2f} ms | "
              f"{r['exchange_ms']:.2f} ms | {r['wait_ms']:.2f} ms | {r['peer_ms']:.2f} ms | {r['fresh_ms']:.2f} ms | "
              f"{r['moved_mb']:.3f} MB | "
              f"{r['minimum_mb']:.3f} MB |")
    plt = docs_plot.pyplot()
    if plt:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        xs = np.arange(len(rows))
        w = 0.16
        ax.bar(xs - 2 * w, [r["layer_ms"] for r in rows], w, label="layer (slowest rank)")
        ax.bar(xs - w, [r["single_ms"] for r in rows], w, label="one process, all tokens")
        ax.bar(xs, [r["exchange_ms"] for r in rows], w, label="our exchanges")
        ax.bar(xs + w, [r["peer_ms"] for r in rows], w, label="plain MPI_Alltoallv, same bytes")
        ax.bar(xs + 2 * w, [r["fresh_ms"] for r in rows], w, label="the same into fresh memory")
        ax.set_xticks(xs, [f"{r['ranks']} rank{'s' if r['ranks'] > 1 else ''}\n{r['tokens']} tokens" for r in rows])
        ax.set_ylabel("ms per layer call")
        ax.set_title(f"Expert parallelism on 2 cores (overheads, not speedup): E={args.experts}, k={args.k}, "
                     f"H={H}, F={F}, placement {args.placement}", fontsize=9)
        ax.legend(fontsize=7)
        docs_plot.save(fig, "expert-parallel.png" if args.placement == "contiguous"
                       else f"expert-parallel-{args.placement}.png")


if __name__ == "__main__":
    main()
