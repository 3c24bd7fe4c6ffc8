"""Very small models whose prunable groups are known by construction, for criterion and selection tests.

Each takes a fraction of a second to analyze; tests set weights by hand so the right answer is known.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """in -> Linear -> ReLU -> Linear -> out: one group, the ``hidden`` units (fc1 rows, fc1 bias, fc2 columns)."""

    def __init__(self, d_in: int = 6, hidden: int = 8, d_out: int = 3):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class DeepMLP(nn.Module):
    """Two hidden layers, two independent groups (``fc1``/``fc2`` and ``fc2``/``fc3``), for global ranking."""

    def __init__(self, d_in: int = 8, hidden: int = 16, d_out: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class ConvBN(nn.Module):
    """conv -> BN -> ReLU -> conv -> BN -> ReLU -> pool -> linear: two channel groups with BatchNorm."""

    def __init__(self, c_in: int = 3, width: int = 8, n_out: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


class MultiHeadAttention(nn.Module):
    """Separate q/k/v/o projections split into heads: a ``heads`` group whose units are whole heads."""

    def __init__(self, dim: int = 16, heads: int = 4):
        super().__init__()
        self.head_dim = dim // heads  # forward infers the head count, so pruned heads need no attribute update
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, -1, self.head_dim).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return x + self.o(y.transpose(1, 2).reshape(b, n, -1))


class GroupedQueryAttention(nn.Module):
    """Grouped-query attention (``heads`` query heads share ``kv_heads`` key/value heads via repeat_interleave):
    a ``heads`` group whose units are whole KV groups with their query heads."""

    def __init__(self, dim: int = 16, heads: int = 8, kv_heads: int = 4, head_dim: int = 4):
        super().__init__()
        self.head_dim, self.rep = head_dim, heads // kv_heads
        self.q = nn.Linear(dim, heads * head_dim)
        self.k = nn.Linear(dim, kv_heads * head_dim)
        self.v = nn.Linear(dim, kv_heads * head_dim)
        self.o = nn.Linear(heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, -1, self.head_dim).transpose(1, 2)

        k = split(self.k(x)).repeat_interleave(self.rep, dim=1)
        v = split(self.v(x)).repeat_interleave(self.rep, dim=1)
        y = F.scaled_dot_product_attention(split(self.q(x)), k, v)
        return x + self.o(y.transpose(1, 2).reshape(b, n, -1))


class AttentionMLPBlock(nn.Module):
    """A single-head attention written with matmuls (no head reshape) and an MLP, both residual.

    Only ``fc1``/``fc2``'s width is an intermediate width (``ffn``); the q/k/v/o channels meet in products of
    activations and are plain ``channels``.
    """

    def __init__(self, dim: int = 16, hidden: int = 32):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.scale = dim ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2) * self.scale, dim=-1)
        x = x + self.o(scores @ self.v(x))
        return x + self.fc2(F.gelu(self.fc1(x)))


class LatentKeyAttention(nn.Module):
    """Attention whose keys are assembled in a ``new_empty`` tensor from a per-head part and a part shared by
    every head (DeepSeek's multi-head latent attention): heads are still units."""

    def __init__(self, dim: int = 16, heads: int = 4, nope: int = 4, rope: int = 4):
        super().__init__()
        self.heads, self.nope, self.rope = heads, nope, rope
        self.q = nn.Linear(dim, heads * (nope + rope))
        self.kv = nn.Linear(dim, heads * (nope + nope))
        self.k_shared = nn.Linear(dim, rope)
        self.o = nn.Linear(heads * nope, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.q.out_features // (self.nope + self.rope)  # sizes from the weights: no attribute to refresh
        q = self.q(x).view(b, t, h, -1).transpose(1, 2)
        k_pass, v = self.kv(x).view(b, t, h, -1).transpose(1, 2).split([self.nope, self.nope], dim=-1)
        k_rot = self.k_shared(x).view(b, 1, t, self.rope).expand(-1, h, -1, -1)
        k = k_pass.new_empty(b, h, t, self.nope + self.rope)
        k[..., : self.nope] = k_pass
        k[..., self.nope:] = k_rot
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.o(out.transpose(1, 2).reshape(b, t, -1))
