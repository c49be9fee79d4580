#!/usr/bin/env python3
"""A Hugging Face MoE block in PyTorch (eager, on the CPU) against the same
block compiled by moe_compiler.huggingface.replace_moe_blocks, in one run
on the same weights and inputs (and a hand-written eager loop over experts,
transformers 4's Mixtral code, the fair PyTorch baseline: the transformers 5
block as built standalone gathers every slot's expert weights):

  Mixtral-style block: hidden 1024, 8 SwiGLU experts of width 2048, top-2
  (about 1/7 of Mixtral-8x7B's width), f32, tokens 1, 16, 128.

Both sides use this machine's cores (torch's intra-op threads, the
artifact's OpenMP threads). Reports the median per call of 30 calls (5 at
the largest size) and the ratio; the PyTorch side is transformers'
default experts implementation and, for reference, its "batched_mm" one.

  PYTHONPATH=python MOE_COMPILER_BIN=build/bin python3 bench/hf_block_bench.py
"""

import statistics
import time

import torch
import transformers

import docs_plot
import moe_compiler.huggingface as hf

HIDDEN, FFN, EXPERTS, TOP_K = 1024, 2048, 8, 2


class Holder(torch.nn.Module):
    def __init__(self, block):
        super().__init__()
        self.mlp = block


def median_ms(fn, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def loop_over_experts(block, x):
    """The classic eager MoE (transformers 4's Mixtral): route, then for
    each expert its tokens' rows, SwiGLU FFN, weighted scatter-add."""
    flat = x.reshape(-1, x.shape[-1])
    probs = torch.softmax(flat @ block.gate.weight.T, dim=-1)
    top, idx = torch.topk(probs, TOP_K, dim=-1)
    top = top / top.sum(-1, keepdim=True)
    gate_up, down = block.experts.gate_up_proj, block.experts.down_proj
    out = torch.zeros_like(flat)
    for e in range(EXPERTS):
        rows, slot = torch.where(idx == e)
        if rows.numel() == 0:
            continue
        g, u = (flat[rows] @ gate_up[e].T).chunk(2, dim=-1)
        out.index_add_(0, rows, (torch.nn.functional.silu(g) * u) @ down[e].T * top[rows, slot, None])
    return out.reshape(x.shape)


def main():
    config = transformers.MixtralConfig(hidden_size=HIDDEN, intermediate_size=FFN, num_local_experts=EXPERTS,
                                        num_experts_per_tok=TOP_K, num_hidden_layers=1, num_attention_heads=8,
                                        num_key_value_heads=8, vocab_size=128)
    torch.manual_seed(0)
    block = transformers.models.mixtral.modeling_mixtral.MixtralSparseMoeBlock(config).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.03)
    holder = Holder(block)
    start = time.perf_counter()
    (name, compiled), = hf.replace_moe_blocks(holder, cache_dir="")
    print(f"compiled {type(block).__name__} in {time.perf_counter() - start:.1f} s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    rows = []
    print(f"{'tokens':>6} {'torch HF block ms':>18} {'torch expert loop ms':>21} {'compiled ms':>12} "
          f"{'vs loop':>8}  max |diff|")
    for tokens in (1, 16, 128):
        x = torch.randn(1, tokens, HIDDEN)
        calls = 30 if tokens < 128 else 5
        with torch.no_grad():
            want = block(x)
            got = compiled(x)
            assert (loop_over_experts(block, x) - want).abs().max().item() < 1e-4
            eager = median_ms(lambda: block(x), calls)
            loop = median_ms(lambda: loop_over_experts(block, x), calls)
            ours = median_ms(lambda: compiled(x), calls)
        diff = (got - want).abs().max().item()
        flops = tokens * TOP_K * 3 * 2 * HIDDEN * FFN
        rows.append((tokens, eager, loop, ours))
        print(f"{tokens:>6} {eager:>18.2f} {loop:>21.2f} {ours:>12.2f} {loop / ours:>7.2f}x  {diff:.1e}   "
              f"(compiled: {flops / ours / 1e6:.1f} GFLOP/s)")
    plot(rows)


def plot(rows):
    plt = docs_plot.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 3.4))
    labels = ["transformers block (eager)", "loop over experts (eager)", "moe_compiler"]
    width = 0.27
    for j, label in enumerate(labels):
        ax.bar([i + (j - 1) * width for i in range(len(rows))], [r[j + 1] for r in rows], width, label=label)
    ax.set_xticks(range(len(rows)), [f"{r[0]} tokens" for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("ms per call (log)")
    ax.set_title(f"Mixtral-style block (hidden {HIDDEN}, {EXPERTS} experts of {FFN}, top-{TOP_K}), f32, CPU")
    ax.legend(fontsize=8)
    docs_plot.save(fig, "hf-block.png")


if __name__ == "__main__":
    main()
