"""rotate_half (RoPE): slice halves of head_dim, negate one, cat back: head_dim units are (j, j + d/2) pairs."""

from __future__ import annotations

import torch
from torch import nn

import secateurs as sc


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class RopeAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 2, head_dim: int = 8):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.q = nn.Linear(dim, heads * head_dim)
        self.k = nn.Linear(dim, heads * head_dim)
        self.v = nn.Linear(dim, heads * head_dim)
        self.o = nn.Linear(heads * head_dim, dim)
        self.inv_freq = nn.Parameter(torch.rand(head_dim // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        pos = torch.arange(s, dtype=x.dtype)
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        q, k, v = (p(x).view(b, s, self.heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        y = nn.functional.scaled_dot_product_attention(q, k, v, scale=self.head_dim**-0.5)
        return self.o(y.transpose(1, 2).reshape(b, s, -1))


def test_rotate_half_pairs_head_dims():
    model = RopeAttention().eval()
    x = torch.randn(2, 5, 32)
    analysis = sc.analyze(model, x)
    qk = [g for g in analysis.groups if g.kind == "head_dim" and any(m.fqn == "q.weight" for m in g.members)]
    assert len(qk) == 1
    g = qk[0]
    assert g.n_units == 4  # head_dim 8 -> 4 rotation pairs
    q = next(m for m in g.members if m.fqn == "q.weight")
    assert sorted(g.member_indices(q, [0]).tolist()) == [0, 4, 8, 12]  # pair (0, 4) in both heads
    inv = next(m for m in g.members if m.fqn == "inv_freq")
    assert g.member_indices(inv, [0]).tolist() == [0]
    report = sc.prune(model, x, ratio={"head_dim": 0.5})
    assert report.verification is not None and report.verification.mode == "exact"
    assert model.q.out_features == 8 and model.inv_freq.shape == (2,)
