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
