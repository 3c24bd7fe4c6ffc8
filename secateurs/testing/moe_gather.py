"""Toy models whose tensor sizes depend on the input values (unbacked symbols in ``torch.export``).

``GatheredMoE``: top-k routing, then each expert (an ``nn.Linear`` pair) runs only on the tokens routed to it,
gathered with ``torch.where`` (a data-dependent count of rows), and its outputs are added back with
``index_add`` -- the eager form of most mixture-of-experts layers. ``DataSizedSlice``: a hidden width sliced to a
length counted from the data, so the width must never be pruned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GatheredMoE(nn.Module):
    def __init__(self, hidden: int = 8, inner: int = 16, experts: int = 4, top_k: int = 2):
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(hidden, experts, bias=False)
        self.up = nn.ModuleList(nn.Linear(hidden, inner) for _ in range(experts))
        self.down = nn.ModuleList(nn.Linear(inner, hidden) for _ in range(experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        weights, index = torch.topk(torch.softmax(self.router(tokens), dim=-1), self.top_k, dim=-1)
        out = torch.zeros_like(tokens)
        for e, (up, down) in enumerate(zip(self.up, self.down, strict=True)):
            rows, slot = torch.where(index == e)  # how many tokens expert e gets depends on the data
            h = down(F.gelu(up(tokens[rows]))) * weights[rows, slot, None]
            out = out.index_add(0, rows, h)
        return x + out.reshape(x.shape)


class DataSizedSlice(nn.Module):
    """``fc2(fc1(x)[:, :n])`` with ``n`` the number of positive values of the first input column."""

    def __init__(self, hidden: int = 8, width: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(hidden, width)
        self.fc2 = nn.Linear(width, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = (x[:, 0] > 0).sum().item() + 2  # an unbacked symbol: the slice's length depends on the data
        torch._check(n <= self.fc1.out_features)
        h = torch.relu(self.fc1(x))[:, :n]
        return F.linear(h, self.fc2.weight[:, :n], self.fc2.bias)


class _StackedExperts(nn.Module):
    """A linear router and stacked two-layer experts (``up`` [E, I, H], ``down`` [E, H, I])."""

    def __init__(self, hidden: int = 8, inner: int = 16, experts: int = 4, top_k: int = 2):
        super().__init__()
        self.top_k, self.num_experts = top_k, experts
        self.router = nn.Linear(hidden, experts, bias=False)
        self.up = nn.Parameter(torch.randn(experts, inner, hidden) * 0.3)
        self.down = nn.Parameter(torch.randn(experts, hidden, inner) * 0.3)


class HitLoopMoE(_StackedExperts):
    """Stacked expert weights and a loop over the experts the tokens hit (GPT-OSS's eager form, OpenAI's privacy
    filter): ``one_hot`` of the top-k ids, the experts with any token (``nonzero``), and per hit expert its tokens
    (``torch.where``) and its weights picked by the id (``self.up[e]``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        weights, ids = torch.topk(torch.softmax(self.router(tokens), dim=-1), self.top_k, dim=-1)
        mask = F.one_hot(ids, num_classes=self.num_experts).permute(2, 1, 0)  # [experts, top_k, tokens]
        out = torch.zeros_like(tokens)
        for hit in torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero():
            e = hit[0]
            if e == self.num_experts:  # GPT-OSS's sentinel for a masked token: an id compared with the count
                continue
            slot, rows = torch.where(mask[e])
            h = F.linear(torch.relu(F.linear(tokens[rows], self.up[e])), self.down[e]) * weights[rows, slot, None]
            out = out.index_add(0, rows, h)
        return x + out.reshape(x.shape)


class SplitLoopMoE(_StackedExperts):
    """JetMoE's parallel experts: tokens sorted by expert, split by each expert's count (``tolist()``), and a Python
    loop over ``range(num_experts)`` multiplying piece ``i`` with ``self.up[i]``: only the loop's constant picks the
    weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        weights, ids = torch.topk(torch.softmax(self.router(tokens), dim=-1), self.top_k, dim=-1)
        counts = torch.zeros(tokens.shape[0], self.num_experts).scatter(1, ids, 1).long().sum(0).tolist()
        order = ids.flatten().sort(0)[1]
        rows = order.div(self.top_k, rounding_mode="trunc")
        pieces = tokens[rows].split(counts, dim=0)
        h = torch.cat([F.linear(torch.relu(F.linear(pieces[i], self.up[i])), self.down[i])
                       for i in range(self.num_experts)], dim=0)
        out = torch.zeros_like(tokens).index_add(0, rows, h * weights.flatten()[order, None])
        return x + out.reshape(x.shape)
