#!/usr/bin/env python3
"""Exports MoE layers written by hand in PyTorch (not transformers' blocks)
to ONNX, the way a user's torch.onnx.export of their own module produces
them, with PyTorch's outputs next to each file.

  python3 scripts/export-torch-moe-modules.py [--out test/Onnx/Inputs/torch]

Each module is exported by both exporters (dynamo, the default, and
TorchScript, dynamo=False, opset 17) with a dynamic token count, and two of
them also with static sizes (an export without dynamic axes writes zeros
and shapes as constants). <name>.reference.npz holds x_i and PyTorch's y_i
at two token counts. Needs torch (not in python/requirements.txt: the
files it writes are committed). Written with torch 2.15.
"""

import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HIDDEN, FFN, EXPERTS, TOP_K = 32, 48, 4, 2


class SwiGLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Linear(HIDDEN, FFN, bias=False)
        self.w3 = nn.Linear(HIDDEN, FFN, bias=False)
        self.w2 = nn.Linear(FFN, HIDDEN, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class FusedSwiGLU(nn.Module):
    """A SwiGLU expert with gate and up fused in one Linear, split by chunk
    (`up_first`: the up half first; `bias`: Linears with biases)."""

    def __init__(self, up_first=False, bias=False):
        super().__init__()
        self.up_first = up_first
        self.w13 = nn.Linear(HIDDEN, 2 * FFN, bias=bias)
        self.w2 = nn.Linear(FFN, HIDDEN, bias=bias)

    def forward(self, x):
        g, u = self.w13(x).chunk(2, dim=-1)
        if self.up_first:
            g, u = u, g
        return self.w2(F.silu(g) * u)


def mlp(activation, bias):
    """A plain FFN expert, as tutorials write one."""
    return nn.Sequential(nn.Linear(HIDDEN, FFN, bias=bias), activation, nn.Linear(FFN, HIDDEN, bias=bias))


class SquaredReLU(nn.Module):
    """relu(x)^2 as transformers' "relu2" (torch.square) or as `** 2`."""

    def __init__(self, power=False):
        super().__init__()
        self.power = power

    def forward(self, x):
        return F.relu(x) ** 2 if self.power else torch.square(F.relu(x))


class Experts(nn.Module):
    def __init__(self, expert=SwiGLU, router_bias=False):
        super().__init__()
        self.gate = nn.Linear(HIDDEN, EXPERTS, bias=router_bias)
        self.experts = nn.ModuleList([expert() for _ in range(EXPERTS)])


class WhereLoop(Experts):
    """Top-k of the logits, softmax over the picks; per expert its (token,
    slot) pairs by torch.where, its rows scaled and index_add_-ed."""

    def route(self, x):
        w, idx = torch.topk(self.gate(x), TOP_K, dim=-1)
        return F.softmax(w, dim=-1), idx

    def forward(self, x):
        w, idx = self.route(x)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(idx == e)
            out.index_add_(0, tok, w[tok, slot, None] * expert(x[tok]))
        return out


class ScatterReduceLoop(Experts):
    """The softmax top-k renormalised; per expert its (token, slot) pairs
    by torch.where, its weighted rows added at their tokens by
    scatter_reduce_(0, tok[:, None].expand(-1, H), rows, "sum")
    (TorchScript guards it with an If on the output's rank)."""

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), -1), TOP_K, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(idx == e)
            rows = w[tok, slot, None] * expert(x[tok])
            out.scatter_reduce_(0, tok[:, None].expand(-1, x.shape[-1]), rows, reduce="sum")
        return out


class MaskLoop(Experts):
    """Softmax then top-k; every expert on every token, weighted by its
    column sum(w * (idx == e))."""

    def forward(self, x):
        w, idx = self.gate(x).softmax(-1).topk(TOP_K, -1)
        out = 0
        for e, expert in enumerate(self.experts):
            out = out + (w * (idx == e)).sum(-1, keepdim=True) * expert(x)
        return out


class ZerosLoop(Experts):
    """Top-k of the logits, softmax over the picks; the sum started from
    torch.zeros_like(x) (ConstantOfShape when the size is dynamic)."""

    def forward(self, x):
        vals, idx = torch.topk(self.gate(x), TOP_K)
        w = vals.softmax(-1)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            out = out + (w * (idx == e)).sum(-1, keepdim=True) * expert(x)
        return out


class SigmoidLoop(Experts):
    """Sigmoid scores (Llama-4 style): top-k of sigmoid(logits), not
    renormalised; every expert on every token, weighted by its column."""

    def forward(self, x):
        w, idx = torch.sigmoid(self.gate(x)).topk(TOP_K, -1)
        out = 0
        for e, expert in enumerate(self.experts):
            out = out + (w * (idx == e)).sum(-1, keepdim=True) * expert(x)
        return out


class SigmoidOfPicks(Experts):
    """The sigmoid of the top-k logits (the same weights), renormalised."""

    def forward(self, x):
        vals, idx = self.gate(x).topk(TOP_K, -1)
        w = torch.sigmoid(vals)
        w = w / w.sum(-1, keepdim=True)
        out = 0
        for e, expert in enumerate(self.experts):
            out = out + (w * (idx == e)).sum(-1, keepdim=True) * expert(x)
        return out


class DenseScatter(Experts):
    """Softmax, top-k renormalised, scattered into a dense gate that weights
    the experts' stacked outputs."""

    def forward(self, x):
        probs = F.softmax(self.gate(x), dim=-1)
        w, idx = torch.topk(probs, TOP_K, dim=-1)
        gates = torch.zeros_like(probs).scatter(1, idx, w / w.sum(-1, keepdim=True))
        outs = torch.stack([expert(x) for expert in self.experts], dim=1)
        return (gates.unsqueeze(-1) * outs).sum(1)


class BmmCombine(Experts):
    """DenseScatter with the combine a batched matmul of the gate as a row:
    torch.bmm(gates.unsqueeze(1), outs).squeeze(1)."""

    def forward(self, x):
        w, idx = torch.topk(self.gate(x), TOP_K, dim=-1)
        gates = torch.zeros(x.shape[0], EXPERTS, dtype=x.dtype).scatter(1, idx, w.softmax(-1))
        outs = torch.stack([expert(x) for expert in self.experts], dim=1)
        return torch.bmm(gates.unsqueeze(1), outs).squeeze(1)


class ThresholdGate(Experts):
    """Every expert on every token, weighted by a dense gate that keeps the
    scores reaching their k-th largest (kth = topk(...).values[:, -1:]):
    `where` torch.where(p >= kth, p, 0) renormalised; `masked_fill`
    p.masked_fill(p < kth, 0) with kth the amin of the top-k values;
    `mul` p * (p >= kth); `masked_softmax` softmax of the logits with
    those below kth filled with -inf. `strict` compares with > (the k-th
    itself dropped: not a top-k, a near miss)."""

    def __init__(self, spelling="where", strict=False, **kwargs):
        super().__init__(**kwargs)
        self.spelling, self.strict = spelling, strict

    def forward(self, x):
        logits = self.gate(x)
        if self.spelling == "masked_softmax":
            kth = logits.topk(TOP_K, -1).values[:, -1:]
            gate = logits.masked_fill(logits < kth, float("-inf")).softmax(-1)
        else:
            p = F.softmax(logits, -1)
            top = p.topk(TOP_K, -1).values
            kth = top.amin(-1, keepdim=True) if self.spelling == "masked_fill" else top[:, -1:]
            if self.spelling == "where":
                gate = torch.where(p > kth if self.strict else p >= kth, p, torch.zeros_like(p))
                gate = gate / gate.sum(-1, keepdim=True)
            elif self.spelling == "masked_fill":
                gate = p.masked_fill(p < kth, 0.0)
            else:
                gate = p * (p >= kth).to(p.dtype)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            column = gate[:, e, None] if self.spelling == "masked_softmax" else gate[:, e:e + 1]
            out = out + column * expert(x)
        return out


class MixedPrecisionRouter(Experts):
    """16-bit experts routed in f32: the router reads x.float() and the
    gate's weight widened, the renormalised weights are cast back."""

    def forward(self, x):
        logits = F.linear(x.float(), self.gate.weight.float())
        w, idx = torch.topk(F.softmax(logits, -1), TOP_K, -1)
        w = (w / w.sum(-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(idx == e)
            out.index_add_(0, tok, expert(x[tok]) * w[tok, slot, None])
        return out


class StackedBiasedLoop(nn.Module):
    """GELU experts as stacked parameters in x @ W layout, w1 [E, H, F] and
    w2 [E, F, H], with stacked biases b1 [E, F] and b2 [E, H] (`x[tok] @
    w1[e] + b1[e]`), the pairs from nonzero(as_tuple=True), a router bias;
    `down_bias=False` leaves the second projection unbiased."""

    def __init__(self, down_bias=True):
        super().__init__()
        self.router = nn.Linear(HIDDEN, EXPERTS)
        self.w1 = nn.Parameter(torch.randn(EXPERTS, HIDDEN, FFN) * 0.2)
        self.b1 = nn.Parameter(torch.randn(EXPERTS, FFN) * 0.1)
        self.w2 = nn.Parameter(torch.randn(EXPERTS, FFN, HIDDEN) * 0.2)
        self.b2 = nn.Parameter(torch.randn(EXPERTS, HIDDEN) * 0.1) if down_bias else None

    def forward(self, x):
        w, idx = torch.topk(self.router(x).softmax(-1), TOP_K)
        out = torch.zeros_like(x)
        for e in range(EXPERTS):
            tok, slot = torch.nonzero(idx == e, as_tuple=True)
            h = F.gelu(x[tok] @ self.w1[e] + self.b1[e]) @ self.w2[e]
            if self.b2 is not None:
                h = h + self.b2[e]
            out.index_add_(0, tok, h * w[tok, slot][:, None])
        return out


class PlainRoutedSwiGLUShared(Experts):
    """Plain SiLU FFN experts (Linear, SiLU, Linear) routed top-k then
    softmax (in f32, cast back), rows added by `y[tok] += ...`, plus an
    always-on SwiGLU shared expert: the layer's shared expert has the routed
    experts' activation, so this one stays plain ops beside the layer."""

    def __init__(self):
        super().__init__(expert=lambda: mlp(nn.SiLU(), False))
        self.shared = SwiGLU()

    def forward(self, x):
        w, idx = torch.topk(self.gate(x), TOP_K, dim=-1)
        w = F.softmax(w, dim=-1, dtype=torch.float).to(x.dtype)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(idx == e)
            out[tok] += w[tok, slot, None] * expert(x[tok])
        return out + self.shared(x)


class IndexSelectRowsLoop(Experts):
    """Sigmoid top-k renormalised with an epsilon; per expert its (token,
    slot) pairs from nonzero(as_tuple=True), rows by torch.index_select (its
    index flattened by a Reshape to [-1]) and y = y.index_add(...) (not in
    place)."""

    def forward(self, x):
        w, idx = torch.sigmoid(self.gate(x)).topk(TOP_K, -1)
        w = w / (w.sum(-1, keepdim=True) + 1e-6)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            out = out.index_add(0, tok, expert(torch.index_select(x, 0, tok)) * w[tok, slot].unsqueeze(1))
        return out


class BatchRouterFlatTopk(Experts):
    """The router on [batch, seq, hidden] (x3 given, or x[None]), its top-k
    renormalised there and only the weights and ids flattened to
    [batch * seq, k] for a loop over the flattened tokens; the sum viewed
    back. `transposed` flattens the picks seq-major while the tokens stay
    batch-major: picks paired with the wrong tokens (a near miss)."""

    def __init__(self, expert=SwiGLU, given_3d=True, scoring="softmax", transposed=False):
        super().__init__(expert)
        self.given_3d, self.scoring, self.transposed = given_3d, scoring, transposed

    def forward(self, x):
        x3 = x if self.given_3d else x[None]
        logits = self.gate(x3)
        if self.scoring == "softmax":
            w, idx = logits.softmax(-1).topk(TOP_K, -1)
            w = w / w.sum(-1, keepdim=True)
        else:
            w, idx = torch.sigmoid(logits).topk(TOP_K, dim=-1)
        if self.transposed:
            w, idx = w.transpose(0, 1), idx.transpose(0, 1)
        flat_x, flat_w, flat_i = x3.reshape(-1, HIDDEN), w.reshape(-1, TOP_K), idx.reshape(-1, TOP_K)
        out = torch.zeros_like(flat_x)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(flat_i == e)
            out.index_add_(0, tok, expert(flat_x[tok]) * flat_w[tok, slot].unsqueeze(-1))
        return out.view_as(x3) if self.given_3d else out


class SlotColumnExperts(Experts):
    """A loop over the slots, then the experts, each expert's rows a boolean
    mask of one slot's column: `m = idx[:, j] == e; y[m] += w[m, j, None] *
    expert(x[m])`; slot j's rows that picked e go through expert e + j·shift."""

    def slot_columns(self, x, w, idx, shift=0):
        out = torch.zeros_like(x)
        for j in range(TOP_K):
            for e in range(EXPERTS):
                m = idx[:, j] == e
                out[m] += w[m, j, None] * self.experts[(e + j * shift) % EXPERTS](x[m])
        return out


class SlotColumnLoop(SlotColumnExperts):
    """A loop over the slots and then the experts, each expert's rows a
    boolean mask of one slot's column (`m = idx[:, j] == e; y[m] += ...`),
    the weights gathered from the softmax at the top-k of the logits (the
    TopK then selects from the softmax: softmax top-k, not renormalised)."""

    def forward(self, x):
        logits = self.gate(x)
        idx = logits.topk(TOP_K, -1).indices
        w = torch.gather(F.softmax(logits, -1), 1, idx)
        return self.slot_columns(x, w, idx)


class SlotColumnLoopRenormalized(SlotColumnExperts):
    """Mixtral's routing (softmax, top-k, renormalised), then a loop over the
    slots and the experts, each expert's rows a boolean mask of one slot's
    column (`m = idx[:, j] == e; y[m] += w[m, j, None] * expert(x[m])`):
    every expert runs once per slot, on the rows whose slot j picked it."""

    def forward(self, x):
        probs = F.softmax(self.gate(x), dim=-1)
        w, idx = torch.topk(probs, TOP_K, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        return self.slot_columns(x, w, idx)


class GatheredOtherScoresNearMiss(SlotColumnExperts):
    """The top-k of the logits, the weights gathered from the softmax of
    other scores (the logits plus a per-expert offset, which changes the
    order): not softmax top-k of either, so plain ops with a remark."""

    def __init__(self):
        super().__init__()
        self.register_buffer("offset", torch.randn(EXPERTS) * 2.0)

    def forward(self, x):
        logits = self.gate(x)
        idx = logits.topk(TOP_K, -1).indices
        w = torch.gather(F.softmax(logits + self.offset, -1), 1, idx)
        return self.slot_columns(x, w, idx)


class SlotColumnSwappedNearMiss(SlotColumnExperts):
    """The slot-column loop, but slot 1's rows that picked e go through
    expert e + 1: not an MoE layer (each expert must run on every slot's
    rows that picked it), so plain ops with a remark naming the expert."""

    def forward(self, x):
        probs = F.softmax(self.gate(x), dim=-1)
        w, idx = torch.topk(probs, TOP_K, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        return self.slot_columns(x, w, idx, shift=1)


class DenseScatterEinsum(Experts):
    """DenseScatter with the combine written torch.einsum('te,teh->th')."""

    def forward(self, x):
        probs = F.softmax(self.gate(x), dim=-1)
        w, idx = torch.topk(probs, TOP_K, dim=-1)
        gates = torch.zeros_like(probs).scatter(1, idx, w / w.sum(-1, keepdim=True))
        outs = torch.stack([expert(x) for expert in self.experts], dim=1)
        return torch.einsum('te,teh->th', gates, outs)


class StackedExperts(nn.Module):
    """A router and the experts' SwiGLU weights as stacked parameters: w1, w3
    [E, F, H] and w2 [E, H, F]."""

    def __init__(self):
        super().__init__()
        self.gate = nn.Linear(HIDDEN, EXPERTS, bias=False)
        self.w1 = nn.Parameter(torch.randn(EXPERTS, FFN, HIDDEN) * 0.2)
        self.w3 = nn.Parameter(torch.randn(EXPERTS, FFN, HIDDEN) * 0.2)
        self.w2 = nn.Parameter(torch.randn(EXPERTS, HIDDEN, FFN) * 0.2)


class GatheredEinsum(StackedExperts):
    """gpt-fast's MOEFeedForward: stacked parameters, the routed experts'
    weights gathered per token, w1[idx] [T, k, F, H], and einsums; with
    `weighted_sum` the slots combined by (o * w[..., None]).sum(1); with
    `index_select` the weights gathered by torch.index_select of the
    flattened ids, viewed back as [T, k, F, H]."""

    def __init__(self, weighted_sum=False, index_select=False):
        super().__init__()
        self.weighted_sum = weighted_sum
        self.index_select = index_select

    def gathered(self, stack, idx):
        if not self.index_select:
            return stack[idx]
        return torch.index_select(stack, 0, idx.reshape(-1)).view(idx.shape[0], TOP_K, *stack.shape[1:])

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        h = F.silu(torch.einsum("ti,taoi->tao", x, self.gathered(self.w1, idx))) * torch.einsum(
            "ti,taoi->tao", x, self.gathered(self.w3, idx))
        o = torch.einsum("tao,taio->tai", h, self.gathered(self.w2, idx))
        if self.weighted_sum:
            return (o * w[..., None]).sum(1)
        return torch.einsum("tai,ta->ti", o, w)


class SkipLoopNearMiss(Experts):
    """MaskLoop leaving out the last expert: not a whole layer (a remark;
    plain ops, still computed as written)."""

    def forward(self, x):
        w, idx = self.gate(x).softmax(-1).topk(TOP_K, -1)
        out = 0
        for e, expert in enumerate(self.experts[:-1]):
            out = out + (w * (idx == e)).sum(-1, keepdim=True) * expert(x)
        return out


class FlippedWeightsNearMiss(GatheredEinsum):
    """GatheredEinsum weighting each slot by the other slot's weight."""

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        h = F.silu(torch.einsum("ti,taoi->tao", x, self.w1[idx])) * torch.einsum("ti,taoi->tao", x, self.w3[idx])
        o = torch.einsum("tao,taio->tai", h, self.w2[idx])
        return torch.einsum("tai,ta->ti", o, w.flip(-1))


def weighted_slot_sum(picked, w, how="mul"):
    """sum_j w[t, j] picked[t, j, :] as users write it: a product summed,
    torch.einsum, or a batched matmul of the weights as a row."""
    if how == "einsum":
        return torch.einsum("tk,tkh->th", w, picked)
    if how == "bmm":
        return torch.bmm(w.unsqueeze(1), picked).squeeze(1)
    return (picked * w[..., None]).sum(1)


class StackGather(Experts):
    """Every expert on every token, the outputs stacked [T, E, H] and each
    token's k picked by gather(1, ids expanded over H), weighted by the
    renormalised top-k weights and summed over the slots (`combine`: as a
    product summed, an einsum or a bmm, weighted_slot_sum)."""

    def __init__(self, combine="mul"):
        super().__init__()
        self.combine = combine

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        outs = torch.stack([expert(x) for expert in self.experts], 1)
        picked = outs.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))
        return weighted_slot_sum(picked, w, self.combine)


class BoolIndexLoop(Experts):
    """Per expert, the rows routed to it selected by a boolean mask and
    updated in place, y[rows] += w_e[rows] * expert(x[rows]) (NonZero and
    a run-time Expand shape in the exports). `counted`: the rows as
    (idx == e).sum(-1) > 0 and the update spelled y[rows] = y[rows] + ...;
    `wrong_gate`: each expert's rows weighted by the next expert's column
    (a near miss)."""

    def __init__(self, expert=SwiGLU, counted=False, wrong_gate=False):
        super().__init__(expert)
        self.counted, self.wrong_gate = counted, wrong_gate

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            hit = idx == e
            rows = hit.sum(-1) > 0 if self.counted else hit.any(-1)
            gate_hit = idx == (e + 1) % EXPERTS if self.wrong_gate else hit
            gate = (w * gate_hit).sum(-1, keepdim=True)[rows]
            if self.counted:
                y[rows] = y[rows] + gate * expert(x[rows])
            else:
                y[rows] += gate * expert(x[rows])
        return y


class Top2ArgmaxGating(Experts):
    """GShard / DeepSpeed top2gating without capacity: the first expert by
    argmax, the second by argmax of the logits with the first masked to
    -inf, gates renormalised over the two (clamped at eps); every expert
    on every token, combined by einsum."""

    def forward(self, x):
        logits = self.gate(x)
        gates = F.softmax(logits, dim=-1)
        first = F.one_hot(torch.argmax(gates, dim=-1), EXPERTS).to(x.dtype)
        second = F.one_hot(torch.argmax(logits.masked_fill(first.bool(), float("-inf")), dim=-1), EXPERTS).to(x.dtype)
        g1, g2 = (gates * first).sum(-1), (gates * second).sum(-1)
        d = torch.clamp(g1 + g2, min=torch.finfo(x.dtype).eps)
        combine = (g1 / d)[:, None] * first + (g2 / d)[:, None] * second
        outs = torch.stack([expert(x) for expert in self.experts], 1)
        return torch.einsum("te,teh->th", combine, outs)


class BmmExperts(GatheredEinsum):
    """GatheredEinsum's stacked parameters in nn.Linear's layout [E, out,
    in]; every expert on every token by torch.bmm of x.expand(E, T, H) with
    each stack's transpose; the gate scattered densely and combined by
    einsum('te,eth->th')."""

    def forward(self, x):
        w, idx = torch.topk(self.gate(x), TOP_K, dim=-1)
        gate = torch.zeros(x.shape[0], EXPERTS, dtype=x.dtype).scatter(1, idx, F.softmax(w, dim=-1))
        xs = x.unsqueeze(0).expand(EXPERTS, -1, -1)
        h = F.silu(torch.bmm(xs, self.w1.transpose(1, 2))) * torch.bmm(xs, self.w3.transpose(1, 2))
        return torch.einsum("te,eth->th", gate, torch.bmm(h, self.w2.transpose(1, 2)))


class GShardDispatch(BmmExperts):
    """GShard's einsums without a capacity in PyTorch (fairseq's and
    DeepSpeed's MOELayer with every token kept): x dispatched to every expert
    by a 0/1 mask, einsum('te,th->eth', mask, x), BmmExperts' batched
    experts, combined by einsum('te,eth->th', gate, out). The mask is
    one_hot(idx, E) summed over the slots, or `positive`: gate > 0 (the
    softmax weights are positive, so the same set). `scaled`: x dispatched
    by the gate itself, each expert seeing scaled rows (a near miss)."""

    def __init__(self, mask="one_hot"):
        super().__init__()
        self.mask = mask

    def forward(self, x):
        w, idx = torch.topk(self.gate(x), TOP_K, dim=-1)
        gate = torch.zeros(x.shape[0], EXPERTS, dtype=x.dtype).scatter(1, idx, F.softmax(w, dim=-1))
        if self.mask == "one_hot":
            mask = F.one_hot(idx, EXPERTS).sum(1).to(x.dtype)
        elif self.mask == "positive":
            mask = (gate > 0).to(x.dtype)
        else:
            mask = gate
        xs = torch.einsum("te,th->eth", mask, x)
        h = F.silu(torch.bmm(xs, self.w1.transpose(1, 2))) * torch.bmm(xs, self.w3.transpose(1, 2))
        return torch.einsum("te,eth->th", gate, torch.bmm(h, self.w2.transpose(1, 2)))


class SortCut(Experts):
    """The routing by a full descending torch.sort of the probabilities cut
    to its first k ([:, :k]: TopK of every expert, then Slices); every expert
    weighted by its gate column."""

    def forward(self, x):
        v, idx = torch.sort(F.softmax(self.gate(x), dim=-1), dim=-1, descending=True)
        v, idx = v[:, :TOP_K], idx[:, :TOP_K]
        out = 0
        for e, expert in enumerate(self.experts):
            out = out + (v * (idx == e)).sum(-1, keepdim=True) * expert(x)
        return out


class SwitchMaxLoop(Experts):
    """Switch Transformer top-1: each token's expert and weight by
    probs.max(-1) (ArgMax and ReduceMax in the exports); every expert on
    every token, masked by (idx == e) and scaled by the max probability."""

    def forward(self, x):
        p, idx = F.softmax(self.gate(x), dim=-1).max(dim=-1)
        out = 0
        for e, expert in enumerate(self.experts):
            out = out + (idx == e).to(x.dtype)[:, None] * p[:, None] * expert(x)
        return out


class SwitchArgmaxKeepdim(Experts):
    """Top-1 by torch.argmax(probs, -1, keepdim=True), its weight by amax
    (keepdims): each expert's column torch.where(idx == e, p, 0)."""

    def forward(self, x):
        probs = F.softmax(self.gate(x), dim=-1)
        idx, p = torch.argmax(probs, dim=-1, keepdim=True), probs.amax(dim=-1, keepdim=True)
        out = 0
        for e, expert in enumerate(self.experts):
            out = out + torch.where(idx == e, p, 0.0) * expert(x)
        return out


class BoolIndexWhereGateLoop(Experts):
    """The boolean-mask loop with renormalised weights and each expert's
    gate as torch.where(idx == e, w, 0).sum(-1), read at the rows as
    g[rows, None]."""

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            rows = (idx == e).any(dim=-1)
            g = torch.where(idx == e, w, torch.zeros_like(w)).sum(-1)
            y[rows] += g[rows, None] * expert(x[rows])
        return y


class NonzeroRowsIndexAddLoop(Experts):
    """The rows of a boolean mask as a token list, any(idx == e).nonzero()
    squeezed, the gate read there and unsqueezed, the rows index_add_-ed."""

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            hit = idx == e
            tok = hit.any(-1).nonzero().squeeze(-1)
            g = (w * hit).sum(-1)[tok].unsqueeze(-1)
            y.index_add_(0, tok, g * expert(x[tok]))
        return y


class IndexPlusEqLoop(Experts):
    """The loop tutorials write: per expert its (token, slot) pairs by
    torch.where, out[tok] += w[tok, slot, None] * expert(x[tok]) (an
    index_put of the read rows plus the expert's, not index_add_)."""

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(idx == e)
            out[tok] += w[tok, slot, None] * expert(x[tok])
        return out


class MaskedInputLoop(Experts):
    """Every expert on x with the rows not routed to it zeroed, x *
    any(idx == e, -1, keepdim=True), weighted by its gate column; with
    `wrong_rows` expert e reads expert e + 1's rows (a near miss)."""

    def __init__(self, wrong_rows=False):
        super().__init__()
        self.wrong_rows = wrong_rows

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            rows = (idx == (e + 1) % EXPERTS if self.wrong_rows else idx == e).any(-1, keepdim=True)
            out = out + (w * (idx == e)).sum(-1, keepdim=True) * expert(x * rows)
        return out


class GatherPicksLoop(WhereLoop):
    """Top-k ids of the logits, the weights a softmax of the logits gathered
    back at them (logits.gather(-1, idx): the top-k values); the where-loop
    with index_add_."""

    def route(self, x):
        logits = self.gate(x)
        idx = torch.topk(logits, TOP_K, dim=-1).indices
        return F.softmax(logits.gather(-1, idx), dim=-1), idx


class OneHotGate(Experts):
    """The dense gate built from one-hot rows, (one_hot(idx, E) * w[..., None])
    .sum(1) (OneHot in TorchScript, Equal with an arange in dynamo), over the
    experts' stacked outputs by einsum."""

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        gate = (F.one_hot(idx, EXPERTS).to(x.dtype) * w[..., None]).sum(1)
        outs = torch.stack([expert(x) for expert in self.experts], 1)
        return torch.einsum("te,teh->th", gate, outs)


class BiasedSigmoidEpsilonLoop(WhereLoop):
    """LFM2-MoE's routing: sigmoid scores, experts picked by the top-k of the
    scores plus a bias, the picked scores divided by their sum + 1e-6."""

    def __init__(self):
        super().__init__()
        self.register_buffer("expert_bias", torch.randn(EXPERTS) * 0.1)

    def route(self, x):
        s = torch.sigmoid(self.gate(x))
        _, idx = torch.topk(s + self.expert_bias, TOP_K, dim=-1)
        w = s.gather(1, idx)
        return w / (w.sum(dim=-1, keepdim=True) + 1e-6), idx


class SoftmaxEpsilonLoop(WhereLoop):
    """Softmax top-k, the picks divided by their sum + 1e-6."""

    def route(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        return w / (w.sum(dim=-1, keepdim=True) + 1e-6), idx


class SoftmaxClampLoop(WhereLoop):
    """Softmax top-k, the picks divided by their sum clamped from below
    (DeepSpeed, fairseq: clamp(min=finfo.eps)); with `floor` = 0.9 the clamp
    binds (a near miss)."""

    def __init__(self, floor=None):
        super().__init__()
        self.floor = floor

    def route(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        floor = torch.finfo(x.dtype).eps if self.floor is None else self.floor
        return w / w.sum(dim=-1, keepdim=True).clamp(min=floor), idx


class ScatterAddLoop(WhereLoop):
    """Each expert's weighted rows added with scatter_add_ at its tokens'
    index column expanded to the width."""

    def forward(self, x):
        w, idx = self.route(x)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(idx == e)
            rows = w[tok, slot, None] * expert(x[tok])
            out.scatter_add_(0, tok[:, None].expand(-1, x.shape[1]), rows)
        return out


class IndexPutLoop(WhereLoop):
    """index_put_((tok,), rows, accumulate=True) per expert."""

    def forward(self, x):
        w, idx = self.route(x)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(idx == e)
            out.index_put_((tok,), w[tok, slot, None] * expert(x[tok]), accumulate=True)
        return out


class NonzeroColumnsLoop(WhereLoop):
    """(idx == e).nonzero() [n, 2], its columns the tokens and slots."""

    def forward(self, x):
        w, idx = self.route(x)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            hits = (idx == e).nonzero()
            tok, slot = hits[:, 0], hits[:, 1]
            out.index_add_(0, tok, w[tok, slot].unsqueeze(-1) * expert(x[tok]))
        return out


class WhereGateLoop(Experts):
    """Every expert on every token, weighted by
    torch.where(idx == e, w, zeros_like(w)).sum(-1, keepdim=True)."""

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        out = 0
        for e, expert in enumerate(self.experts):
            out = out + torch.where(idx == e, w, torch.zeros_like(w)).sum(-1, keepdim=True) * expert(x)
        return out


class ExpertChoiceLoop(Experts):
    """Expert-choice routing: each expert's top-C tokens of the softmax
    scores (C = 8: at most the 9 tokens of the second reference input), its
    rows scaled by their scores
    and index_add_-ed."""

    def __init__(self, expert=SwiGLU, scoring=F.softmax, wrong_scale=False):
        super().__init__(expert)
        self.scoring, self.wrong_scale = scoring, wrong_scale

    def forward(self, x):
        s = self.scoring(self.gate(x), dim=-1) if self.scoring is F.softmax else self.scoring(self.gate(x))
        g, tok = torch.topk(s.t(), 8, dim=-1)
        if self.wrong_scale:
            g = 1.0 - g
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            out.index_add_(0, tok[e], g[e, :, None] * expert(x[tok[e]]))
        return out


class MaskedSoftmaxLoop(Experts):
    """The softmax over the logits with every expert but the top-k masked to
    -inf (full(-inf).scatter(1, idx, 0) added); each expert weighted by its
    column of that gate."""

    def forward(self, x):
        logits = self.gate(x)
        _, idx = torch.topk(logits, TOP_K, dim=-1)
        mask = torch.full_like(logits, float("-inf")).scatter(1, idx, 0.0)
        gate = F.softmax(logits + mask, dim=-1)
        out = 0
        for e, expert in enumerate(self.experts):
            out = out + gate[:, e:e + 1] * expert(x)
        return out


class MaskedFillSoftmax(Experts):
    """The masked softmax as masked_fill(~keep, -inf), keep scattered from the
    top-k ids; the gate over the experts' stacked outputs by einsum."""

    def forward(self, x):
        logits = self.gate(x)
        _, idx = torch.topk(logits, TOP_K, dim=-1)
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(1, idx, True)
        gate = F.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)
        outs = torch.stack([expert(x) for expert in self.experts], 1)
        return torch.einsum("te,teh->th", gate, outs)


class ScatterGateColumns(Experts):
    """The softmax of the top-k logits scattered into a dense gate, each
    expert weighted by its column."""

    def forward(self, x):
        logits = self.gate(x)
        top, idx = torch.topk(logits, TOP_K, dim=-1)
        gate = torch.zeros_like(logits).scatter(1, idx, F.softmax(top, dim=-1))
        out = 0
        for e, expert in enumerate(self.experts):
            out = out + gate[:, e:e + 1] * expert(x)
        return out


class GShardTop2Loop(Experts):
    """GShard's / DeepSpeed's top2gating without capacity: the second expert
    by argmax of the gates with the first zeroed (gates * (1 - mask1)), each
    pick's gate read back through its mask, renormalised by the clamped sum;
    each expert weighted by its column of the combined gate. `on_logits`
    zeroes the first pick in the raw logits instead, which can be negative,
    so the second argmax may name the first expert again: a near miss."""

    def __init__(self, on_logits=False):
        super().__init__()
        self.on_logits = on_logits

    def forward(self, x):
        logits = self.gate(x)
        gates = F.softmax(logits, dim=1)
        mask1 = F.one_hot(torch.argmax(gates, dim=1), num_classes=EXPERTS).type_as(gates)
        second = (logits if self.on_logits else gates) * (1 - mask1)
        mask2 = F.one_hot(torch.argmax(second, dim=1), num_classes=EXPERTS).type_as(gates)
        gates1_s = torch.einsum("se,se->s", gates, mask1)
        gates2_s = torch.einsum("se,se->s", gates, mask2)
        denom_s = torch.clamp(gates1_s + gates2_s, min=torch.finfo(gates.dtype).eps)
        combine = (gates1_s / denom_s).unsqueeze(1) * mask1 + (gates2_s / denom_s).unsqueeze(1) * mask2
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            out += combine[:, e].unsqueeze(1) * expert(x)
        return out


class SigmoidTop3Argmax(Experts):
    """Three experts picked one argmax at a time over sigmoid scores, each
    pick masked to -inf before the next (fairseq's masked_fill), the picked
    scores unnormalised; the dense gate summed one term per pick."""

    def forward(self, x):
        scores = torch.sigmoid(self.gate(x))
        picks, masked = [], scores
        for _ in range(3):
            i = masked.argmax(dim=-1)
            picks.append(i)
            masked = masked.masked_fill(F.one_hot(i, EXPERTS).bool(), float("-inf"))
        gate = 0
        for i in picks:
            gate = gate + scores.gather(1, i[:, None]) * F.one_hot(i, EXPERTS).to(x.dtype)
        outs = torch.stack([expert(x) for expert in self.experts], 1)
        return torch.einsum("te,teh->th", gate, outs)


class TopkSlotTerms(Experts):
    """torch.topk, the weights renormalised, the dense gate written one term
    per slot (w[:, j:j+1] * one_hot(idx[:, j])) and each expert weighted by
    its column. `crossed` pairs each slot's weight with the other slot's
    expert: not a top-k gate (a near miss)."""

    def __init__(self, crossed=False):
        super().__init__()
        self.crossed = crossed

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        a, b = (1, 0) if self.crossed else (0, 1)
        gate = w[:, 0:1] * F.one_hot(idx[:, a], EXPERTS).to(x.dtype) + w[:, 1:2] * F.one_hot(idx[:, b], EXPERTS).to(
            x.dtype)
        out = 0
        for e, expert in enumerate(self.experts):
            out = out + gate[:, e:e + 1] * expert(x)
        return out


class BatchAxisLoop(Experts):
    """Routing and experts on [batch, seq, hidden] without flattening the
    tokens (x[None]): the masks, weights and sums keep the batch axis."""

    def forward(self, x):
        xb = x[None]
        w, idx = torch.topk(F.softmax(self.gate(xb), dim=-1), TOP_K, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        y = torch.zeros_like(xb)
        for e, expert in enumerate(self.experts):
            y = y + (w * (idx == e)).sum(dim=-1, keepdim=True) * expert(xb)
        return y[0]


class ScatterLastAxisShared(Experts):
    """The gate scattered in place along dim -1 (scatter_), each expert
    weighted by gate[:, e, None], the routed sum by Python's sum(), plus a
    shared expert."""

    def __init__(self):
        super().__init__()
        self.shared = SwiGLU()

    def forward(self, x):
        logits = self.gate(x)
        w, idx = torch.topk(logits.softmax(-1), TOP_K)
        gate = torch.zeros_like(logits).scatter_(-1, idx, w)
        y = sum(gate[:, e, None] * expert(x) for e, expert in enumerate(self.experts))
        return y + self.shared(x)


class OneHotPermuteLoop(Experts):
    """DBRX-style: the top-k of float32 probabilities renormalised in place
    (top_w /= ...), the experts' masks one_hot(ids).permute(2, 1, 0) read
    by torch.where, rows by x[tok], index_add_ (dynamo writes the one-hot
    as an Equal with an arange)."""

    def forward(self, x):
        probs = F.softmax(self.gate(x), dim=1, dtype=torch.float)
        top_w, top_e = torch.topk(probs, TOP_K, dim=-1)
        top_w /= top_w.sum(dim=-1, keepdim=True)
        mask = F.one_hot(top_e, num_classes=EXPERTS).permute(2, 1, 0)
        out = torch.zeros_like(x)
        for e in range(EXPERTS):
            slot, tok = torch.where(mask[e])
            out.index_add_(0, tok, self.experts[e](x[tok]) * top_w[tok, slot, None])
        return out


class TopkMaskStackLast(Experts):
    """The probabilities kept at the top-k by a 0/1 mask scattered from the
    ids (probs * zeros_like(probs).scatter(-1, idx, 1.0)), renormalised over
    all experts; the experts' outputs stacked on the last axis [T, H, E]
    and weighted by gate[:, None, :]."""

    def forward(self, x):
        probs = F.softmax(self.gate(x), dim=-1)
        idx = probs.topk(TOP_K, dim=-1).indices
        gate = probs * torch.zeros_like(probs).scatter(-1, idx, 1.0)
        gate = gate / gate.sum(dim=-1, keepdim=True)
        outs = torch.stack([expert(x) for expert in self.experts], dim=-1)
        return (outs * gate[:, None, :]).sum(-1)


class UnsortedTopkLoop(Experts):
    """torch.topk(..., sorted=False): the same picks in an unspecified
    order (TopK sorted = 0); a torch.where loop with index_add_."""

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1, sorted=False)
        w = w / w.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(idx == e)
            out.index_add_(0, tok, expert(x[tok]) * w[tok, slot, None])
        return out


class NonzeroColumnsSoftmaxPicks(Experts):
    """The softmax over the top-k logits along dim 1, each expert's (token,
    slot) pairs as the columns of mask.nonzero() ([:, 0], [:, 1]), the
    weights w[tok, slot].unsqueeze(1)."""

    def forward(self, x):
        v, idx = self.gate(x).topk(TOP_K, dim=1)
        w = torch.softmax(v, dim=1)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            pairs = (idx == e).nonzero()
            tok, slot = pairs[:, 0], pairs[:, 1]
            out.index_add_(0, tok, expert(x[tok]) * w[tok, slot].unsqueeze(1))
        return out


class ViewThenSharedLoop(WhereLoop):
    """DeepSeek-V3's block: the tokens of [batch, seq, hidden] flattened for
    the routed experts, their sum viewed back (y.view(*orig_shape)) and a
    shared expert of the unflattened hidden states added, ungated or (as
    Qwen2-MoE gates it) scaled by sigmoid(hidden Wg). `view` gives another
    shape to view the sum as (the shared expert's output is broadcast)."""

    def __init__(self, gated=False, view=None):
        super().__init__()
        self.shared = SwiGLU()
        self.shared_gate = nn.Linear(HIDDEN, 1, bias=False) if gated else None
        self.view = view

    def forward(self, x):
        hidden = x[None]
        orig_shape = hidden.shape
        flat = hidden.view(-1, hidden.shape[-1])
        y = super().forward(flat)
        y = y.view(*orig_shape) if self.view is None else y.view(self.view(hidden))
        shared = self.shared(hidden)
        if self.shared_gate is not None:
            shared = torch.sigmoid(self.shared_gate(hidden)) * shared
        return (y + shared).sum(0)


class TemperatureLoop(WhereLoop):
    """Softmax over the logits divided by a temperature (`scale`: times a
    constant instead), in f32, top-k renormalised; the where loop's
    combine. `per_token`: divided by each token's logit norm instead, not
    a constant (a near miss)."""

    def __init__(self, tau=0.7, scale=False, per_token=False):
        super().__init__(router_bias=True)
        self.tau, self.scale, self.per_token = tau, scale, per_token

    def route(self, x):
        logits = self.gate(x)
        if self.per_token:
            logits = logits / logits.norm(dim=-1, keepdim=True)
        else:
            logits = logits * self.tau if self.scale else logits / self.tau
        w, idx = torch.topk(F.softmax(logits, dim=-1, dtype=torch.float), TOP_K, dim=-1)
        return (w / w.sum(-1, keepdim=True)).to(x.dtype), idx


class LogSoftmaxTopk(Experts):
    """Top-k of the log-softmax, the picks exponentiated (the softmax
    probabilities); every expert on every token weighted by its column."""

    def forward(self, x):
        logp, idx = F.log_softmax(self.gate(x), dim=-1).topk(TOP_K, -1)
        w = logp.exp()
        out = 0
        for e, expert in enumerate(self.experts):
            out = out + (w * (idx == e)).sum(-1, keepdim=True) * expert(x)
        return out


class AssignZerosLoop(Experts):
    """Per expert, its rows' outputs assigned into zeros, out[rows] =
    expert(x[rows]), then the whole [T, H] output weighted by the expert's
    gate column and summed: the other rows add 0. `wrong_gate`: weighted by
    the next expert's column (a near miss)."""

    def __init__(self, wrong_gate=False):
        super().__init__()
        self.wrong_gate = wrong_gate

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            hit = idx == e
            out = torch.zeros_like(x)
            out[hit.any(-1)] = expert(x[hit.any(-1)])
            gate_hit = idx == (e + 1) % EXPERTS if self.wrong_gate else hit
            y = y + (w * gate_hit).sum(-1, keepdim=True) * out
        return y


class RepeatedRowsLoop(Experts):
    """vLLM's and SGLang's PyTorch reference MoE (torch_moe): x repeated once
    per slot, the ids flattened, each expert's output assigned to the slot
    rows that picked it, then every token's slots weighted and summed.
    `spelling` repeats x by repeat (vLLM), repeat_interleave or expand;
    `flat_weights` weights the flat rows before the [T, k, H] view;
    `tiled` repeats x along the tokens instead (x.repeat(k, 1): row n is
    x[n % T], not the token of slot n; a near miss)."""

    def __init__(self, expert=SwiGLU, router_bias=False, spelling="repeat", flat_weights=False, tiled=False):
        super().__init__(expert, router_bias)
        self.spelling, self.flat_weights, self.tiled = spelling, flat_weights, tiled

    def forward(self, x):
        t = x.shape[0]
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1, dtype=torch.float), TOP_K, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        if self.tiled:
            a = x.repeat(TOP_K, 1)
        elif self.spelling == "repeat":
            a = x.view(t, -1, HIDDEN).repeat(1, TOP_K, 1).reshape(-1, HIDDEN)
        elif self.spelling == "repeat_interleave":
            a = x.repeat_interleave(TOP_K, dim=0)
        else:
            a = x[:, None].expand(-1, TOP_K, -1).reshape(-1, HIDDEN)
        out = torch.zeros(t * TOP_K, HIDDEN, dtype=x.dtype)
        flat = idx.view(-1)
        for e, expert in enumerate(self.experts):
            mask = flat == e
            out[mask] = expert(a[mask])
        if self.flat_weights:
            return (out * w.view(-1, 1).to(out.dtype)).view(t, TOP_K, HIDDEN).sum(1)
        return (out.view(t, -1, HIDDEN) * w.view(t, -1, 1).to(out.dtype)).sum(dim=1)


class StackedRepeatedRowsLoop(nn.Module):
    """vLLM's torch_moe exactly: RepeatedRowsLoop on stacked parameters, w1
    [E, 2I, H] with gate and up fused (SiluAndMul on the halves) and w2
    [E, H, I], indexed per expert (`w1[e].transpose(0, 1)`), the weights and
    ids flattened before the loop (vLLM skips experts with no rows by
    `if mask.sum():`, which torch.export cannot trace: left out)."""

    def __init__(self):
        super().__init__()
        self.gate = nn.Linear(HIDDEN, EXPERTS, bias=False)
        self.w1 = nn.Parameter(torch.randn(EXPERTS, 2 * FFN, HIDDEN) * 0.2)
        self.w2 = nn.Parameter(torch.randn(EXPERTS, HIDDEN, FFN) * 0.2)

    def forward(self, x):
        b, d = x.shape
        a = x.view(b, -1, d).repeat(1, TOP_K, 1).reshape(-1, d)
        out = torch.zeros(b * TOP_K, self.w2.shape[1], dtype=x.dtype)
        score = torch.softmax(self.gate(x), dim=-1, dtype=torch.float32)
        topk_weight, topk_ids = torch.topk(score, TOP_K)
        topk_weight = topk_weight.view(-1)
        topk_ids = topk_ids.view(-1)
        for i in range(self.w1.shape[0]):
            mask = topk_ids == i
            h = a[mask] @ self.w1[i].transpose(0, 1)
            out[mask] = (F.silu(h[..., :FFN]) * h[..., FFN:]) @ self.w2[i].transpose(0, 1)
        return (out.view(b, -1, self.w2.shape[1]) * topk_weight.view(b, -1, 1).to(out.dtype)).sum(dim=1)


class CellsLoop(WhereLoop):
    """Each expert writes its outputs into the (token, slot) cells of a
    [T, k, H] buffer; the slots are weighted and summed afterwards. With
    `repeated`, experts 2i and 2i+1 both write the cells of expert 2i (the
    second overwrites the first: not an MoE sum). `combine`:
    weighted_slot_sum's spelling."""

    def __init__(self, expert=SwiGLU, repeated=False, combine="mul"):
        super().__init__(expert)
        self.repeated, self.combine = repeated, combine

    def forward(self, x):
        w, idx = self.route(x)
        cells = x.new_zeros(x.shape[0], TOP_K, x.shape[1])
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(idx == (e - e % 2 if self.repeated else e))
            cells[tok, slot] = expert(x[tok])
        return weighted_slot_sum(cells, w, self.combine)


class StackSlotPicks(Experts):
    """Every expert on every token, the outputs stacked [E, T, H] (stack on
    dim 0) and each slot's rows picked by advanced indexing with the token
    numbers, outs[idx[:, j], arange(T)], weighted by the slot's weight and
    added slot by slot. `together`: every slot at once, outs[idx,
    arange(T)[:, None]] [T, k, H], weighted and summed over the slots.
    `crossed`: slot j's rows weighted by the other slot's weight (a near
    miss)."""

    def __init__(self, together=False, crossed=False):
        super().__init__()
        self.together, self.crossed = together, crossed

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        outs = torch.stack([expert(x) for expert in self.experts])
        rows = torch.arange(x.shape[0], device=x.device)
        if self.together:
            return (outs[idx, rows[:, None]] * w[..., None]).sum(1)
        y = None
        for j in range(TOP_K):
            term = w[:, (TOP_K - 1 - j) if self.crossed else j, None] * outs[idx[:, j], rows]
            y = term if y is None else y + term
        return y


class StackedColumnsSum(Experts):
    """The scattered gate's columns weighting each expert's output, the
    terms stacked and summed, torch.stack([...]).sum(0), not added."""

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        gate = torch.zeros(x.shape[0], EXPERTS, dtype=x.dtype).scatter(1, idx, w)
        return torch.stack([gate[:, e:e + 1] * expert(x) for e, expert in enumerate(self.experts)]).sum(0)


class Top1IndexAdd(Experts):
    """Top-1 with the ids squeezed to [T]: probs.argmax(-1) and the weight
    probs.gather(1, idx[:, None]), or (`max`) probs.max(-1) (values and ids,
    the weight w[tok, None]); per expert its tokens (idx == e).nonzero()
    and their weighted rows index_add_-ed."""

    def __init__(self, how="argmax"):
        super().__init__()
        self.how = how

    def forward(self, x):
        probs = F.softmax(self.gate(x), dim=-1)
        if self.how == "argmax":
            idx = probs.argmax(-1)
            w = probs.gather(1, idx[:, None])
        else:
            w, idx = probs.max(dim=-1)
            w = w[:, None]
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok = (idx == e).nonzero().squeeze(-1)
            out.index_add_(0, tok, w[tok] * expert(x[tok]))
        return out


class SwitchAssignLoop(Experts):
    """labml's Switch Transformer layer without capacity: top-1 by
    torch.max, each expert's outputs assigned into one shared zero buffer
    at its tokens (nonzero(as_tuple=True)[0]), the buffer scaled by the
    top-1 probability afterwards. `overlap`: top-2 (token, slot) pairs
    assigned the same way, where a token's second expert overwrites its
    first (not a sum: a near miss)."""

    def __init__(self, overlap=False):
        super().__init__()
        self.overlap = overlap

    def forward(self, x):
        probs = F.softmax(self.gate(x), dim=-1)
        final = x.new_zeros(x.shape)
        if self.overlap:
            w, idx = torch.topk(probs, TOP_K, dim=-1)
            for e, expert in enumerate(self.experts):
                tok, slot = torch.where(idx == e)
                final[tok, :] = w[tok, slot, None] * expert(x[tok, :])
            return final
        p, routes = torch.max(probs, dim=-1)
        for e, expert in enumerate(self.experts):
            tok = torch.eq(routes, e).nonzero(as_tuple=True)[0]
            final[tok, :] = expert(x[tok, :])
        return final * p.view(-1, 1)


class L1NormLoop(WhereLoop):
    """DBRX's renormalisation: the softmax top-k divided by its L1 norm,
    torch.norm(w, p=1) (ReduceL1), F.normalize(w, p=1) (the norm clamped
    at 1e-12 and expanded) or w.abs().sum() (ReduceSum of Abs): the sum,
    as the weights are probabilities. `on_logits` takes the top-k of the
    logits instead, which may be negative (a near miss); the where loop's
    combine."""

    def __init__(self, how="norm", on_logits=False):
        super().__init__()
        self.how, self.on_logits = how, on_logits

    def route(self, x):
        logits = self.gate(x)
        p = logits if self.on_logits else F.softmax(logits, dim=-1, dtype=torch.float32)
        w, idx = torch.topk(p, TOP_K, dim=-1)
        if self.how == "norm":
            return w / torch.norm(w, p=1, dim=-1, keepdim=True), idx
        if self.how == "normalize":
            return F.normalize(w, p=1, dim=-1), idx
        return w / w.abs().sum(-1, keepdim=True), idx


class NemotronHLoop(Experts):
    """Nemotron-H's MoE block as transformers 5 writes it: sigmoid scores
    with a selection bias, top-k renormalised (+1e-20) and scaled, non-gated
    squared-ReLU experts on stacked [E, I, H] / [E, H, I] parameters applied
    by F.linear in a loop over one_hot(ids).permute(2, 1, 0)."""

    def __init__(self):
        super().__init__()
        self.up = nn.Parameter(torch.randn(EXPERTS, FFN, HIDDEN) * 0.2)
        self.down = nn.Parameter(torch.randn(EXPERTS, HIDDEN, FFN) * 0.2)
        self.register_buffer("bias", torch.randn(EXPERTS) * 0.1)

    def forward(self, x):
        scores = torch.sigmoid(F.linear(x.float(), self.gate.weight.float()))
        idx = torch.topk(scores + self.bias, TOP_K, dim=-1, sorted=False)[1]
        w = scores.gather(1, idx)
        w = w / (w.sum(-1, keepdim=True) + 1e-20) * 2.5
        out = torch.zeros_like(x)
        mask = F.one_hot(idx, num_classes=EXPERTS).permute(2, 1, 0)
        for e in range(EXPERTS):
            slot, tok = torch.where(mask[e])
            h = torch.square(F.relu(F.linear(x[tok], self.up[e])))
            out.index_add_(0, tok, F.linear(h, self.down[e]) * w[tok, slot, None])
        return out


class StackedLinearLoop(StackedExperts):
    """The where-loop on stacked parameters, each expert's matrices indexed
    in the loop and applied by F.linear."""

    def forward(self, x):
        w, idx = torch.topk(F.softmax(self.gate(x), dim=-1), TOP_K, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e in range(EXPERTS):
            tok, slot = torch.where(idx == e)
            rows = x[tok]
            h = F.silu(F.linear(rows, self.w1[e])) * F.linear(rows, self.w3[e])
            out.index_add_(0, tok, w[tok, slot, None] * F.linear(h, self.w2[e]))
        return out


MODULES = {"where_loop": WhereLoop, "mask_loop": MaskLoop, "dense_scatter": DenseScatter,
           "gathered_einsum": GatheredEinsum, "skip_loop_near_miss": SkipLoopNearMiss,
           "flipped_weights_near_miss": FlippedWeightsNearMiss,
           # Plain FFN experts: Linear (with bias), GELU / ReLU / SiLU, Linear.
           "where_loop_gelu_bias": lambda: WhereLoop(lambda: mlp(nn.GELU(), True)),
           "mask_loop_relu_bias": lambda: MaskLoop(lambda: mlp(nn.ReLU(), True)),
           "dense_scatter_silu": lambda: DenseScatter(lambda: mlp(nn.SiLU(), False)),
           "zeros_loop": ZerosLoop, "dense_scatter_einsum": DenseScatterEinsum,
           "sigmoid_loop": SigmoidLoop, "sigmoid_of_picks": SigmoidOfPicks,
           # nn.Linear's defaults everywhere: the router has a bias too.
           "where_loop_router_bias": lambda: WhereLoop(router_bias=True),
           "mask_loop_all_biases": lambda: MaskLoop(lambda: mlp(nn.GELU(), True), router_bias=True),
           # Half precision: 16-bit logits; the dynamo exports sum 16-bit tensors in f32 between
           # Casts (the columns w * (idx == e), the renormalisation); GELU's √2 rounded to f16.
           "mask_loop_f16": MaskLoop, "gathered_einsum_f16": GatheredEinsum,
           "where_loop_gelu_bias_f16": lambda: WhereLoop(lambda: mlp(nn.GELU(), True)),
           "stack_gather": StackGather, "bool_index_loop": BoolIndexLoop,
           "bool_index_counted_loop": lambda: BoolIndexLoop(lambda: mlp(nn.GELU(), True), counted=True),
           "bool_index_wrong_gate_near_miss": lambda: BoolIndexLoop(wrong_gate=True),
           "bool_index_loop_f16": BoolIndexLoop,
           "bool_index_where_gate_loop": BoolIndexWhereGateLoop, "nonzero_rows_index_add_loop": NonzeroRowsIndexAddLoop, "top2_argmax_gating": Top2ArgmaxGating,
           "bmm_experts": BmmExperts, "sort_cut": SortCut, "switch_max_loop": SwitchMaxLoop,
           "switch_argmax_keepdim": SwitchArgmaxKeepdim, "index_plus_eq_loop": IndexPlusEqLoop,
           "masked_input_loop": MaskedInputLoop,
           "masked_input_wrong_rows_near_miss": lambda: MaskedInputLoop(wrong_rows=True),
           "gather_picks_loop": GatherPicksLoop, "one_hot_gate": OneHotGate,
           "biased_sigmoid_epsilon_loop": BiasedSigmoidEpsilonLoop, "softmax_epsilon_loop": SoftmaxEpsilonLoop,
           "softmax_clamp_loop": SoftmaxClampLoop, "softmax_clamp_near_miss": lambda: SoftmaxClampLoop(0.9),
           "scatter_add_loop": ScatterAddLoop, "index_put_loop": IndexPutLoop,
           "nonzero_columns_loop": NonzeroColumnsLoop, "where_gate_loop": WhereGateLoop,
           "expert_choice_loop": ExpertChoiceLoop,
           "expert_choice_sigmoid_gelu_loop": lambda: ExpertChoiceLoop(lambda: mlp(nn.GELU(), False), torch.sigmoid),
           "expert_choice_wrong_scale_near_miss": lambda: ExpertChoiceLoop(wrong_scale=True),
           "masked_softmax_loop": MaskedSoftmaxLoop, "masked_fill_softmax": MaskedFillSoftmax,
           "scatter_gate_columns": ScatterGateColumns, "gshard_top2_loop": GShardTop2Loop,
           "gshard_top2_logits_near_miss": lambda: GShardTop2Loop(on_logits=True),
           "sigmoid_top3_argmax": SigmoidTop3Argmax, "topk_slot_terms": TopkSlotTerms,
           "topk_slot_terms_crossed_near_miss": lambda: TopkSlotTerms(crossed=True),
           "batch_axis_loop": BatchAxisLoop, "scatter_last_axis_shared": ScatterLastAxisShared,
           "gathered_weighted_sum": lambda: GatheredEinsum(weighted_sum=True),
           "one_hot_permute_loop": OneHotPermuteLoop, "topk_mask_stack_last": TopkMaskStackLast,
           "unsorted_topk_loop": UnsortedTopkLoop, "nonzero_columns_softmax_picks": NonzeroColumnsSoftmaxPicks,
           "view_then_shared_loop": ViewThenSharedLoop,
           "view_then_gated_shared_loop": lambda: ViewThenSharedLoop(gated=True),
           # The sum viewed as [tokens, 1, hidden]: plus the shared expert's [1, tokens, hidden], a
           # [tokens, tokens, hidden] sum the layer's rows cannot be (refused at run time, not a wrong result).
           "view_mismatch_shared_refused": lambda: ViewThenSharedLoop(
               view=lambda h: (h.shape[1], 1, h.shape[2])),
           "temperature_loop": TemperatureLoop, "temperature_scale_loop_f16": lambda: TemperatureLoop(1.6, scale=True),
           "temperature_per_token_near_miss": lambda: TemperatureLoop(per_token=True),
           "log_softmax_topk": LogSoftmaxTopk, "assign_zeros_loop": AssignZerosLoop,
           # Expert choice on sigmoid scores of the logits at temperature 2.
           "expert_choice_temperature_loop": lambda: ExpertChoiceLoop(scoring=lambda z: torch.sigmoid(z / 2.0)),
           "assign_zeros_wrong_gate_near_miss": lambda: AssignZerosLoop(wrong_gate=True),
           "repeated_rows_loop": RepeatedRowsLoop,
           "repeated_rows_interleave_flat_weights": lambda: RepeatedRowsLoop(spelling="repeat_interleave",
                                                                             flat_weights=True),
           "repeated_rows_expand_gelu_bias": lambda: RepeatedRowsLoop(lambda: mlp(nn.GELU(), True), router_bias=True,
                                                                      spelling="expand"),
           "repeated_rows_loop_f16": RepeatedRowsLoop,
           "repeated_rows_tiled_near_miss": lambda: RepeatedRowsLoop(tiled=True),
           "repeated_rows_stacked_loop": StackedRepeatedRowsLoop,
           "where_loop_fused_gate_up": lambda: WhereLoop(FusedSwiGLU),
           "mask_loop_fused_up_gate": lambda: MaskLoop(lambda: FusedSwiGLU(up_first=True)),
           "log_softmax_topk_f16": LogSoftmaxTopk,
           "where_loop_fused_gate_up_bias": lambda: WhereLoop(lambda: FusedSwiGLU(bias=True)),
           "stacked_linear_loop": StackedLinearLoop,
           "threshold_where_gate": ThresholdGate,
           "threshold_masked_fill_gate": lambda: ThresholdGate("masked_fill", router_bias=True),
           "threshold_mul_gate_f16": lambda: ThresholdGate("mul"),
           "threshold_masked_softmax": lambda: ThresholdGate("masked_softmax"),
           "threshold_strict_near_miss": lambda: ThresholdGate(strict=True),
           "bmm_combine": BmmCombine,
           "index_select_einsum": lambda: GatheredEinsum(index_select=True),
           "mixed_precision_router_f16": MixedPrecisionRouter,
           "stacked_biased_loop": StackedBiasedLoop,
           "stacked_up_bias_only_loop": lambda: StackedBiasedLoop(down_bias=False),
           "plain_routed_swiglu_shared": PlainRoutedSwiGLUShared,
           "index_select_rows_loop": IndexSelectRowsLoop,
           "slot_column_loop_gathered_softmax": SlotColumnLoop,
           "slot_column_loop": SlotColumnLoopRenormalized,
           "slot_column_swapped_near_miss": SlotColumnSwappedNearMiss,
           "gathered_other_scores_near_miss": GatheredOtherScoresNearMiss,
           "batch_router_flat_topk": BatchRouterFlatTopk,
           "batch_router_flat_topk_sigmoid_gelu": lambda: BatchRouterFlatTopk(lambda: mlp(nn.GELU(), True),
                                                                                 scoring="sigmoid"),
           "unsqueezed_router_flat_topk": lambda: BatchRouterFlatTopk(given_3d=False),
           "batch_router_transposed_picks_near_miss": lambda: BatchRouterFlatTopk(transposed=True),
           # Squared ReLU experts: torch.square, `** 2` with biases, Nemotron-H's block.
           "where_loop_relu2": lambda: WhereLoop(lambda: mlp(SquaredReLU(), False)),
           "mask_loop_relu2_pow_bias": lambda: MaskLoop(lambda: mlp(SquaredReLU(power=True), True)),
           "nemotron_h_loop": NemotronHLoop,
           "l1_norm_loop": L1NormLoop, "l1_normalize_loop": lambda: L1NormLoop("normalize"),
           "abs_sum_loop": lambda: L1NormLoop("abs"),
           "l1_norm_logits_near_miss": lambda: L1NormLoop(on_logits=True),
           "cells_loop": CellsLoop, "cells_repeated_expert_near_miss": lambda: CellsLoop(repeated=True),
           "cells_linear_experts_unread": lambda: CellsLoop(lambda: nn.Linear(HIDDEN, HIDDEN)),
           "stack_slot_picks": StackSlotPicks, "stack_slot_picks_together": lambda: StackSlotPicks(together=True),
           "stack_slot_picks_crossed_near_miss": lambda: StackSlotPicks(crossed=True),
           "gshard_dispatch": GShardDispatch, "gshard_dispatch_positive": lambda: GShardDispatch("positive"),
           "gshard_dispatch_scaled_near_miss": lambda: GShardDispatch("scaled"),
           "stack_gather_einsum": lambda: StackGather("einsum"), "stack_gather_bmm": lambda: StackGather("bmm"),
           "cells_einsum": lambda: CellsLoop(combine="einsum"), "stacked_columns_sum": StackedColumnsSum,
           "argmax_index_add": Top1IndexAdd, "max_top1_index_add": lambda: Top1IndexAdd("max"),
           "switch_assign_loop": SwitchAssignLoop, "assign_overlap_near_miss": lambda: SwitchAssignLoop(overlap=True),
           "scatter_reduce_loop": ScatterReduceLoop}
# Modules given x as [batch, seq, hidden] (dynamic batch and sequence):
# traced on [2, 32], checked on [2, 32] and [3, 5].
BATCH_SEQ_INPUT = {"batch_router_flat_topk", "batch_router_flat_topk_sigmoid_gelu",
                   "batch_router_transposed_picks_near_miss"}
# Exported and run in this precision (default float32).
DTYPES = {"mask_loop_f16": torch.float16, "gathered_einsum_f16": torch.float16, "bool_index_loop_f16": torch.float16,
          "where_loop_gelu_bias_f16": torch.float16, "temperature_scale_loop_f16": torch.float16,
          "repeated_rows_loop_f16": torch.float16, "log_softmax_topk_f16": torch.float16,
          "threshold_mul_gate_f16": torch.float16, "mixed_precision_router_f16": torch.float16}
STATIC = {("where_loop", "torchscript"), ("dense_scatter", "dynamo"), ("scatter_last_axis_shared", "dynamo"),
          ("batch_axis_loop", "dynamo"), ("switch_assign_loop", "torchscript")}
# Near misses: one export is enough.
DYNAMO_ONLY = {"skip_loop_near_miss", "bool_index_wrong_gate_near_miss", "flipped_weights_near_miss", "masked_input_wrong_rows_near_miss",
               "expert_choice_wrong_scale_near_miss", "softmax_clamp_near_miss", "gshard_top2_logits_near_miss",
               "topk_slot_terms_crossed_near_miss", "view_mismatch_shared_refused", "temperature_per_token_near_miss",
               "assign_zeros_wrong_gate_near_miss", "repeated_rows_tiled_near_miss", "threshold_strict_near_miss",
               "slot_column_swapped_near_miss", "gathered_other_scores_near_miss", "batch_router_transposed_picks_near_miss", "l1_norm_logits_near_miss",
               "cells_repeated_expert_near_miss", "cells_linear_experts_unread", "stack_slot_picks_crossed_near_miss",
               "gshard_dispatch_scaled_near_miss",
               # TorchScript's exporter fails on a bool scatter (an internal assert in torch 2.15).
               "masked_fill_softmax"}
# Forms only one exporter writes.
TORCHSCRIPT_ONLY = {"zeros_loop", "dense_scatter_einsum", "sigmoid_of_picks"}


def export(module, x, path, exporter, dynamic):
    # The token axes: tokens, or batch and sequence.
    names = ("tokens",) if x.dim() == 2 else ("batch", "seq")
    if exporter == "dynamo":
        shapes = ({i: torch.export.Dim(n, min=2, max=4096) for i, n in enumerate(names)},) if dynamic else None
        torch.onnx.export(module, (x,), path, dynamo=True, input_names=["x"], output_names=["y"],
                          dynamic_shapes=shapes)
    else:
        axes = {"x": dict(enumerate(names)), "y": dict(enumerate(names))} if dynamic else None
        torch.onnx.export(module, (x,), path, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes=axes)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "test", "Onnx", "Inputs",
                                                      "torch"))
    parser.add_argument("names", nargs="*", help="only these modules (default: all)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for seed, (name, cls) in enumerate(MODULES.items()):
        torch.manual_seed(seed)
        dtype = DTYPES.get(name, torch.float32)
        module = cls().eval().to(dtype)
        batched = name in BATCH_SEQ_INPUT
        example = torch.randn(*((2, 32) if batched else (64,)), HIDDEN).to(dtype)
        if args.names and name not in args.names:
            continue
        exporters = ("dynamo",) if name in DYNAMO_ONLY else ("torchscript",) if name in TORCHSCRIPT_ONLY else (
            "dynamo", "torchscript")
        for exporter in exporters:
            for dynamic in (True, False):
                if not dynamic and (name, exporter) not in STATIC:
                    continue
                file = f"{name}_{exporter}{'' if dynamic else '_static'}"
                path = os.path.join(args.out, file + ".onnx")
                export(module, example, path, exporter, dynamic)
                # Inputs the export was not traced on (any size when dynamic).
                sizes = (64, 9) if dynamic else (64, 64)
                if batched:
                    sizes = ((2, 32), (3, 5)) if dynamic else ((2, 32), (2, 32))
                reference = {}
                with torch.no_grad():
                    for i, tokens in enumerate(sizes):
                        shape = tokens if batched else (tokens,)
                        x = torch.randn(*shape, HIDDEN, generator=torch.Generator().manual_seed(100 + i)).to(dtype)
                        reference[f"x_{i}"] = x.numpy()
                        reference[f"y_{i}"] = module(x).numpy()
                np.savez(os.path.join(args.out, file + ".reference.npz"), **reference)
                print(f"wrote {path} ({os.path.getsize(path)} B)")


if __name__ == "__main__":
    main()
