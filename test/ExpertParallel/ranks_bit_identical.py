# Expert parallelism is exact: for every layer configuration below, the
# artifact compiled with --ranks=N and run under `mpirun -np N` (each rank
# on its own block of tokens) gives each rank the single-process artifact's
# outputs for those tokens, bit for bit (y and the router logits), for
# N = 1..4 and the four placements (split: every rank a block of every
# expert, MoEShard; hidden 32 and FFN 24 leave padded blocks on 3 ranks).
# Configurations: Mixtral (f32 and bf16),
# DeepSeek-V3 grouped routing with a selection bias and a shared expert,
# MoE++ zero-computation experts (zero, copy, constant) with a gating
# residual, 6 experts on 4 ranks, every token routed to the same two
# experts (ranks that receive nothing), a rank with no tokens at all, and
# experts with biases and a router bias,
# replicated hot experts (balanced placement with replicas, also 3 experts
# on 4 ranks, which needs them), and capacities that drop (by position, by
# weight and by slot position, from a factor of all ranks' tokens and a
# fixed C): the
# single-process run drops rows too, or the case would prove nothing.
# A JAX program whose layers run in a lax.scan loop (stablehlo.while) too:
# every iteration exchanges its rows.
# The JIT (moe-run --ranks=3 under mpirun, no moe-optimize) matches the
# single-process moe-run bit for bit too, and so does a layer whose weights
# are constants of the program (dense and dense_resource), which every
# rank's code holds only its experts of.
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
DEEPSEEK = dict(experts=[("ffn", 16)], activation="swiglu",
                routing=dict(scoring="sigmoid", k=4, normalize="all", num_groups=4, topk_groups=2, scale=2.5),
                bias=True, shared=20)
MOEPP = dict(experts=[("ffn", 6), ("zero", 1), ("copy", 1), ("constant", 2)], activation="gelu",
             routing=dict(scoring="softmax", k=2), residual=True)
SIX = dict(experts=[("ffn", 6)], activation="relu", routing=dict(scoring="softmax", k=2))
THREE = dict(experts=[("ffn", 3)], activation="swiglu", routing=dict(scoring="softmax", k=1))
# Switch-style capacity, dropping by position: global over all ranks' tokens.
DROPS = dict(MIXTRAL, capacity=dict(factor=0.75, drop="position"))
FIXED = dict(SIX, capacity=dict(tokens=3, drop="position", pad=True))
HEAVIEST = dict(MIXTRAL, capacity=dict(factor=0.75, drop="probs"))
# GShard's (k, t) order: every token's first choice before any second one.
SLOTS = dict(MIXTRAL, capacity=dict(factor=0.75, drop="slot_position", pad=True))
# Linear layers with biases: each rank holds its experts' biases.
BIASED = dict(SIX, activation="gelu", expert_bias=True, router_bias=True)

# (name, config, dtype, tokens of each rank for 4 ranks, placements, skew)
CASES = [
    ("mixtral", MIXTRAL, "f32", [9, 7, 12, 5], ("contiguous", "round-robin", "balanced", "split"), False),
    ("mixtral-bf16", MIXTRAL, "bf16", [8, 8, 8, 8], ("contiguous", "split"), False),
    ("deepseek", DEEPSEEK, "f32", [6, 11, 4, 9], ("contiguous", "round-robin", "split"), False),
    ("moe++", MOEPP, "f32", [7, 7, 6, 10], ("round-robin", "split"), False),
    ("six-experts", SIX, "f32", [5, 9, 3, 8], ("contiguous", "balanced"), False),
    ("one-hot-routing", MIXTRAL, "f32", [6, 6, 6, 6], ("contiguous", "split"), True),
    ("rank-without-tokens", MIXTRAL, "f32", [8, 0, 11, 4], ("round-robin", "split"), False),
    ("replicas", MIXTRAL, "f32", [9, 6, 8, 7], ("balanced+replicas=3",), True),
    ("three-experts", THREE, "f32", [5, 6, 7, 4], ("balanced+replicas=2", "split"), False),
    ("capacity-factor", DROPS, "f32", [9, 7, 12, 5], ("contiguous", "round-robin"), False),
    ("capacity-tokens", FIXED, "f32", [6, 3, 5, 4], ("round-robin", "split"), False),
    ("capacity-probs", HEAVIEST, "f32", [9, 7, 12, 5], ("contiguous", "round-robin", "split"), False),
    ("capacity-slot-position", SLOTS, "f32", [9, 7, 12, 5], ("contiguous", "round-robin", "split"), False),
    ("expert-biases", BIASED, "f32", [7, 5, 9, 6], ("contiguous", "balanced+replicas=2"), False),
]


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    if proc.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def storage(a, dtype):
    if dtype == "bf16":
        return (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return a.astype(np.float32)


def jit_case(tmp, rng):
    """moe-run --ranks=3 (round-robin) against moe-run on all tokens."""
    split = [5, 9, 6]
    a = layer.random_operands(MIXTRAL, sum(split), HIDDEN, FFN, "f32", rng)
    work = os.path.join(tmp, "jit")
    os.makedirs(work)
    src = os.path.join(work, "layer.mlir")
    with open(src, "w") as f:
        f.write(layer.mlir_text(MIXTRAL, sum(split), HIDDEN, FFN, "f32"))
    names = [n for n, _, _ in layer.operands(MIXTRAL, sum(split), HIDDEN, FFN, "f32")]
    for n in names:
        np.save(os.path.join(work, f"{n}.npy"), a[n].astype(np.float32))
    starts = np.cumsum([0] + split)
    for r in range(3):
        np.save(os.path.join(work, f"x.{r}.npy"), a["x"][starts[r]:starts[r + 1]].astype(np.float32))
    weights = sum((["--input", os.path.join(work, f"{n}.npy")] for n in names[1:]), [])
    run([f"{BIN}/moe-run", src, "--input", os.path.join(work, "x.npy"), *weights,
         "--output-dir", os.path.join(work, "single")])
    run([*MPIRUN, "-np", "3", f"{BIN}/moe-run", src, "--ranks=3", "--placement=round-robin",
         "--input", os.path.join(work, "x.%r.npy"), *weights, "--output-dir", os.path.join(work, "ep.%r")])
    want = np.load(os.path.join(work, "single", "result_0.npy"))
    got = np.concatenate([np.load(os.path.join(work, f"ep.{r}", "result_0.npy")) for r in range(3)])
    same = got.tobytes() == want.tobytes()
    print(f"{'ok  ' if same else 'FAIL'} moe-run --ranks=3 under mpirun: bit-identical to moe-run")
    return [] if same else ["moe-run --ranks=3"]


def constant_weights_case(tmp, rng):
    """Weights as constants (router dense, expert stacks dense_resource),
    round-robin and split over 3 ranks, against the single-process artifact."""
    split = [7, 4, 9]
    total = sum(split)
    a = layer.random_operands(MIXTRAL, total, HIDDEN, FFN, "f32", rng)
    work = os.path.join(tmp, "constants")
    os.makedirs(work)
    ops = layer.operands(MIXTRAL, total, HIDDEN, FFN, "f32")
    names = {n: f"%{n}" for n, _, _ in ops}
    args, op, y_ty, z_ty = layer.op_text(MIXTRAL, total, HIDDEN, FFN, "f32", True, names)
    lines, blobs = [], []
    for n, shape, _ in ops[1:]:
        ty = f"tensor<{'x'.join(map(str, shape))}xf32>"
        data = a[n].astype("<f4").tobytes().hex().upper()
        if n == "router_weight":
            lines.append(f"  %{n} = arith.constant dense<\"0x{data}\"> : {ty}\n")
        else:
            lines.append(f"  %{n} = arith.constant dense_resource<{n}_blob> : {ty}\n")
            blobs.append(f"      {n}_blob: \"0x04000000{data}\"")
    text = (f"func.func @layer({args[0]}) -> ({y_ty}, {z_ty}) {{\n{''.join(lines)}{op}"
            f"  return %y, %z : {y_ty}, {z_ty}\n}}\n"
            "{-#\n  dialect_resources: {\n    builtin: {\n" + ",\n".join(blobs) + "\n    }\n  }\n#-}\n")
    src = os.path.join(work, "layer.mlir")
    with open(src, "w") as f:
        f.write(text)
    np.save(os.path.join(work, "x.npy"), a["x"].astype(np.float32))
    starts = np.cumsum([0] + split)
    for r in range(3):
        np.save(os.path.join(work, f"x.{r}.npy"), a["x"][starts[r]:starts[r + 1]].astype(np.float32))
    run([f"{BIN}/moe-compile", src, "-o", os.path.join(work, "single", "liblayer.so")])
    run([f"{BIN}/moe-exec", os.path.join(work, "single", "liblayer.so"), "--input", os.path.join(work, "x.npy"),
         "--output-dir", os.path.join(work, "single", "out")])
    want = np.load(os.path.join(work, "single", "out", "output_0.npy"))
    failed = []
    for placement in ("round-robin", "split"):
        art = os.path.join(work, placement, "liblayer.so")
        run([f"{BIN}/moe-compile", src, "-o", art, "--ranks=3", f"--placement={placement}"])
        run([*MPIRUN, "-np", "3", f"{BIN}/moe-exec", art, "--input", os.path.join(work, "x.%r.npy"),
             "--output-dir", os.path.join(work, f"{placement}.%r")])
        got = np.concatenate([np.load(os.path.join(work, f"{placement}.{r}", "output_0.npy")) for r in range(3)])
        same = got.tobytes() == want.tobytes()
        print(f"{'ok  ' if same else 'FAIL'} constant weights, {placement} over 3 ranks: bit-identical")
        failed += [] if same else [f"constant weights ({placement})"]
    return failed


def scanned_layers_case(tmp, rng):
    """The JAX scan over 3 stacked layers (static 16 tokens per call) on 2
    ranks: each rank's result is the single-process result of its tokens."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Stablehlo", "programs", "scanned_layers.mlir")
    work = os.path.join(tmp, "scanned")
    os.makedirs(work)
    shapes = [(3, 32, 8), (3, 8, 32, 48), (3, 8, 32, 48), (3, 8, 48, 32)]
    weights = []
    for i, shape in enumerate(shapes):
        path = os.path.join(work, f"w{i}.npy")
        np.save(path, (0.2 * rng.standard_normal(shape)).astype(np.float32))
        weights += ["--input", path]
    for r in range(2):
        np.save(os.path.join(work, f"x.{r}.npy"), rng.standard_normal((16, 32)).astype(np.float32))
    run([f"{BIN}/moe-compile", src, "-o", os.path.join(work, "single", "lib.so")])
    run([f"{BIN}/moe-compile", src, "-o", os.path.join(work, "ep", "lib.so"), "--ranks=2"])
    for r in range(2):
        run([f"{BIN}/moe-exec", os.path.join(work, "single", "lib.so"), "--input", os.path.join(work, f"x.{r}.npy"),
             *weights, "--output-dir", os.path.join(work, f"single.{r}")])
    run([*MPIRUN, "-np", "2", f"{BIN}/moe-exec", os.path.join(work, "ep", "lib.so"),
         "--input", os.path.join(work, "x.%r.npy"), *weights, "--output-dir", os.path.join(work, "ep.%r")])
    same = all(np.load(os.path.join(work, f"single.{r}", "output_0.npy")).tobytes() ==
               np.load(os.path.join(work, f"ep.{r}", "output_0.npy")).tobytes() for r in range(2))
    print(f"{'ok  ' if same else 'FAIL'} scanned layers (stablehlo.while) on 2 ranks: bit-identical")
    return [] if same else ["scanned layers"]


def main():
    rng = np.random.default_rng(11)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg, dtype, split, placements, skew in CASES:
            total = sum(split)
            a = layer.random_operands(cfg, total, HIDDEN, FFN, dtype, rng)
            if skew:
                # Every token's top-2 are experts 3 and 5: positive tokens and
                # router rows of ones there, near zero elsewhere.
                a["x"] = np.abs(a["x"])
                wr = a["router_weight"] * 0.01
                wr[3], wr[5] = 1.0, 0.5
                a["router_weight"] = wr
            work = os.path.join(tmp, name)
            os.makedirs(work)
            src = os.path.join(work, "layer.mlir")
            with open(src, "w") as f:
                f.write(layer.mlir_text(cfg, total, HIDDEN, FFN, dtype, dynamic_tokens=True))
            token_operands = {"x", "prev_logits"}
            types = {n: elt for n, _, elt in layer.operands(cfg, total, HIDDEN, FFN, dtype)}
            names = list(types)
            for n in names:
                if n not in token_operands:
                    np.save(os.path.join(work, f"{n}.npy"), storage(a[n], types[n]))
            # Single process, all tokens.
            single = os.path.join(work, "single")
            run([f"{BIN}/moe-compile", src, "-o", os.path.join(single, "liblayer.so")])
            inputs = []
            for n in names:
                path = os.path.join(work, f"{n}.all.npy" if n in token_operands else f"{n}.npy")
                if n in token_operands:
                    np.save(path, storage(a[n], types[n]))
                inputs += ["--input", path]
            run([f"{BIN}/moe-exec", os.path.join(single, "liblayer.so"), *inputs,
                 "--output-dir", os.path.join(single, "out")])
            expected = [np.load(os.path.join(single, "out", f"output_{i}.npy")) for i in range(2)]
            if cfg.get("capacity"):
                k, e = cfg["routing"]["k"], layer.num_experts(cfg)
                cap = cfg["capacity"]
                c = cap.get("tokens") or int(np.ceil(total * k / e * cap["factor"]))
                picks = np.argsort(-expected[1], axis=1, kind="stable")[:, :k]
                most = np.bincount(picks.ravel(), minlength=e).max()
                if most <= c:
                    failures.append(f"{name}: no expert exceeds C = {c}")
                print(f"     {name}: C = {c}, the busiest expert has {most} slots: rows are dropped")
            # Per-expert loads for the balanced placement: skewed on purpose.
            loads = np.arange(1, dict(cfg["experts"])["ffn"] + 1, dtype=np.float64) ** 2
            if skew:  # the profile of the skewed routing: experts 3 and 5 hot, replicated
                loads = np.ones_like(loads)
                loads[3], loads[5] = 100.0, 50.0
            np.save(os.path.join(work, "loads.npy"), loads)
            for ranks in (1, 2, 3, 4):
                sizes = split[:ranks - 1] + [sum(split[ranks - 1:])]
                starts = np.cumsum([0] + sizes)
                rank_inputs = []
                for n in names:
                    if n in token_operands:
                        for r in range(ranks):
                            part = a[n][starts[r]:starts[r + 1]]
                            np.save(os.path.join(work, f"{n}.{ranks}.{r}.npy"), storage(part, types[n]))
                        rank_inputs += ["--input", os.path.join(work, f"{n}.{ranks}.%r.npy")]
                    else:
                        rank_inputs += ["--input", os.path.join(work, f"{n}.npy")]
                for spec in placements:
                    placement, _, replicas = spec.partition("+replicas=")
                    # At most one copy of an expert per rank.
                    replicas = min(int(replicas or 0), dict(cfg["experts"])["ffn"] * (ranks - 1))
                    tag = f"{name} ranks={ranks} placement={placement} replicas={replicas}"
                    art = os.path.join(work, f"ep{ranks}-{spec}", "liblayer.so")
                    flags = [f"--ranks={ranks}", f"--placement={placement}", f"--replicas={replicas}"]
                    if placement == "balanced":
                        flags.append(f"--expert-profile={os.path.join(work, 'loads.npy')}")
                    run([f"{BIN}/moe-compile", src, "-o", art, *flags])
                    outdir = os.path.join(work, f"out{ranks}-{spec}.%r")
                    run([*MPIRUN, "-np", str(ranks), f"{BIN}/moe-exec", art, *rank_inputs, "--output-dir", outdir],
                        env=dict(os.environ, MOE_EP_TIMEOUT_S="60"))
                    same = True
                    for r in range(ranks):
                        for i in range(2):
                            got = np.load(os.path.join(outdir.replace("%r", str(r)), f"output_{i}.npy"))
                            want = expected[i][starts[r]:starts[r + 1]]
                            if got.shape != want.shape or got.tobytes() != want.tobytes():
                                same = False
                                diff = (np.abs(got.astype(np.float64) - want.astype(np.float64)).max()
                                        if got.shape == want.shape else f"shape {got.shape} vs {want.shape}")
                                print(f"  rank {r} output {i}: differs ({diff})")
                    print(f"{'ok  ' if same else 'FAIL'} {tag}: {sizes} tokens, bit-identical to one process")
                    if not same:
                        failures.append(tag)
        failures += jit_case(tmp, rng)
        failures += constant_weights_case(tmp, rng)
        failures += scanned_layers_case(tmp, rng)
    if failures:
        sys.exit(f"FAIL: {len(failures)} cases differ: {failures}")
    print("all expert-parallel runs bit-identical")


if __name__ == "__main__":
    main()
