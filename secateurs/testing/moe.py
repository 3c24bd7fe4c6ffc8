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
