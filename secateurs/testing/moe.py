"""A tiny mixture-of-experts layer with known routing, for the ``experts`` unit kind and the ``routing`` criterion.

``TinyMoE``: a router (a [E, H] parameter applied with ``F.linear``), softmax, top-k, and E stacked two-layer
experts computed densely (every expert on every token, combined with the top-k gates through ``one_hot``), plus a
residual. It exports with ``torch.export`` and has the structure of a transformers MoE block: router rows, the
expert dim of stacked weights and the top-k indices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyMoE(nn.Module):
    def __init__(self, hidden: int = 8, inner: int = 12, experts: int = 4, top_k: int = 2):
        super().__init__()
        self.top_k = top_k
        self.router = nn.Parameter(torch.randn(experts, hidden) * 0.5)
        self.up = nn.Parameter(torch.randn(experts, inner, hidden) * 0.3)
        self.down = nn.Parameter(torch.randn(experts, hidden, inner) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(F.linear(x, self.router), dim=-1)
        weights, index = torch.topk(probs, self.top_k, dim=-1)
        gates = (F.one_hot(index, probs.shape[-1]).to(x.dtype) * weights.unsqueeze(-1)).sum(-2)  # [.., E]
        inner = torch.relu(torch.einsum("...h,eih->...ei", x, self.up))
        out = torch.einsum("...ei,ehi->...eh", inner, self.down)
        return x + torch.einsum("...e,...eh->...h", gates, out)


def biased_tokens(n: int = 64, hidden: int = 8, seed: int = 0) -> torch.Tensor:
    """Tokens drawn so that a router whose rows are ``router`` prefers some experts (for tests)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, hidden, generator=g)


class _Stacked(nn.Module):
    """E stacked two-layer experts (``up`` [E, I, H], ``down`` [E, H, I]) and a router ``[rows, H]``."""

    def __init__(self, hidden: int, inner: int, experts: int, rows: int):
        super().__init__()
        self.router = nn.Parameter(torch.randn(rows, hidden) * 0.5)
        self.up = nn.Parameter(torch.randn(experts, inner, hidden) * 0.3)
        self.down = nn.Parameter(torch.randn(experts, hidden, inner) * 0.3)


class DenseScoredMoE(_Stacked):
    """Llama-4's routing: the top-k scores are scattered into a dense ``[tokens, experts]`` matrix of ``-inf``,
    squashed by a sigmoid, and every expert runs (``bmm``) on all tokens repeated once per expert and scaled by
    its score, so expert ids never index anything: the expert dim is found by factoring the flattened rows."""

    def __init__(self, hidden: int = 8, inner: int = 12, experts: int = 4, top_k: int = 1):
        super().__init__(hidden, inner, experts, experts)
        self.top_k = top_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = F.linear(x, self.router)
        top, ids = torch.topk(logits, self.top_k, dim=1)
        scores = torch.sigmoid(torch.full_like(logits, float("-inf")).scatter(1, ids, top))
        routed = x.repeat(scores.shape[1], 1) * scores.transpose(0, 1).reshape(-1, 1)
        routed = routed.view(self.up.shape[0], -1, x.shape[-1])
        inner = torch.relu(torch.bmm(routed, self.up.transpose(1, 2)))
        out = torch.bmm(inner, self.down.transpose(1, 2))
        return x + out.sum(0)


class MaxPickMoE(_Stacked):
    """PhiMoE's sparsemixer: two experts per token picked by ``max``, the second after writing ``-inf`` over the
    first (``scatter``), the picks concatenated; each token's experts gathered by id from the stacked weights."""

    def __init__(self, hidden: int = 8, inner: int = 12, experts: int = 4):
        super().__init__(hidden, inner, experts, experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = F.linear(x, self.router)
        first_w, first = logits.max(dim=-1, keepdim=True)
        second_w, second = logits.scatter(-1, first, float("-inf")).max(dim=-1, keepdim=True)
        ids = torch.cat([first, second], dim=-1)  # [T, 2]
        gates = torch.softmax(torch.cat([first_w, second_w], dim=-1), dim=-1)
        inner = torch.relu(torch.einsum("th,tkih->tki", x, self.up[ids]))
        out = torch.einsum("tki,tkhi->tkh", inner, self.down[ids])
        return x + (gates.unsqueeze(-1) * out).sum(1)


class SharedGateMoE(nn.Module):
    """Inkling's router: one weight gives the routed experts' logits and, in its last row, a shared expert's gate;
    forward() splits them with a bound counted from the end (``logits[..., :-1]``)."""

    def __init__(self, hidden: int = 8, inner: int = 12, experts: int = 4, top_k: int = 2):
        super().__init__()
        self.top_k = top_k
        self.moe = TinyMoE(hidden, inner, experts, top_k)
        self.moe.router = nn.Parameter(torch.randn(experts + 1, hidden) * 0.5)
        self.shared = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = F.linear(x, self.moe.router)
        probs = torch.softmax(logits[..., :-1], dim=-1)
        weights, index = torch.topk(probs, self.top_k, dim=-1)
        gates = (F.one_hot(index, probs.shape[-1]).to(x.dtype) * weights.unsqueeze(-1)).sum(-2)
        inner = torch.relu(torch.einsum("...h,eih->...ei", x, self.moe.up))
        out = torch.einsum("...ei,ehi->...eh", inner, self.moe.down)
        shared = torch.sigmoid(logits[..., -1:]) * self.shared(x)
        return x + torch.einsum("...e,...eh->...h", gates, out) + shared


class ZeroExpertMoE(_Stacked):
    """LongCat-Flash's zero experts: the router has ``zeros`` rows past the ``num_routed`` real experts; a token
    that picks one keeps its input (times the gate), and its id is sent to expert 0 with weight 0. forward() reads
    the count from ``self.num_routed``, which pruning must rewrite."""

    def __init__(self, hidden: int = 8, inner: int = 12, experts: int = 4, zeros: int = 2, top_k: int = 2):
        super().__init__(hidden, inner, experts, experts + zeros)
        self.num_routed = experts
        self.top_k = top_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(F.linear(x, self.router), dim=-1)
        weights, ids = torch.topk(probs, self.top_k, dim=-1)
        zero = ids >= self.num_routed
        identity = x * weights.masked_fill(~zero, 0.0).sum(-1, keepdim=True)
        ids = torch.where(zero, torch.zeros_like(ids), ids)
        weights = weights.masked_fill(zero, 0.0)
        gates = (F.one_hot(ids, self.up.shape[0]).to(x.dtype) * weights.unsqueeze(-1)).sum(-2)
        inner = torch.relu(torch.einsum("...h,eih->...ei", x, self.up))
        out = torch.einsum("...ei,ehi->...eh", inner, self.down)
        return x + identity + torch.einsum("...e,...eh->...h", gates, out)
