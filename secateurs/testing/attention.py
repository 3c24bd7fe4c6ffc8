"""Hand-written attention as people write it, keeping sizes in Python attributes: no handler knows these classes,
so their heads prune only through discovered attribute bindings (``docs/binding.md``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Fused qkv projection reshaped by ``self.num_heads`` / ``self.head_dim``, SDPA or a manual softmax scaled by
    ``self.scale`` (computed once from the unpruned head width), output projection."""

    def __init__(self, dim: int = 32, num_heads: int = 4, fused: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused = fused
        self.qkv = nn.Linear(dim, 3 * num_heads * self.head_dim)
        self.proj = nn.Linear(num_heads * self.head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            y = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim))


class SplitAttention(nn.Module):
    """Separate key width and value width (LeViT-style): one projection viewed per head and split unevenly by
    the attribute tuple ``self.split_sizes``; the output is reshaped by ``self.inner``."""

    def __init__(self, dim: int = 32, num_heads: int = 4, key_dim: int = 4, value_dim: int = 8):
        super().__init__()
        self.num_heads = num_heads
        self.split_sizes = (key_dim, key_dim, value_dim)
        self.inner = num_heads * value_dim
        self.scale = key_dim**-0.5
        self.qkv = nn.Linear(dim, num_heads * (2 * key_dim + value_dim))
        self.proj = nn.Linear(self.inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = self.qkv(x).view(B, N, self.num_heads, -1).split(list(self.split_sizes), dim=3)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        y = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(B, N, self.inner))


class InputWidthAttention(nn.Module):
    """CaiT/PVT-style: the head width is ``C // self.num_heads`` with ``C`` the input width, and the output is
    reshaped to ``C``. Its heads cannot be pruned by rewriting attributes (the sizes come from the input tensor),
    so planning leaves them out."""

    def __init__(self, dim: int = 32, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(*qkv.unbind(0))
        return self.proj(y.transpose(1, 2).reshape(B, N, C))


class HeadAveragedAttention(SelfAttention):
    """Divides its output by ``self.num_heads`` in forward(): rewriting ``num_heads`` would change that factor, so
    the pruned model would not be the masked original; planning leaves the heads out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) / self.num_heads


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, attn: nn.Module, dim: int):
        super().__init__()
        self.attn, self.mlp = attn, Mlp(dim, 2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class TinyTransformer(nn.Module):
    """Residual blocks of hand-written attention and an MLP, no normalisation (so pruning is exact): ``kind`` is
    ``"sdpa"``, ``"softmax"`` (manual, scaled by the stored ``self.scale``), ``"split"`` (:class:`SplitAttention`),
    ``"input_width"`` (:class:`InputWidthAttention`) or ``"averaged"`` (:class:`HeadAveragedAttention`)."""

    def __init__(self, dim: int = 32, num_heads: int = 4, depth: int = 2, kind: str = "sdpa"):
        super().__init__()

        def attn() -> nn.Module:
            if kind == "split":
                return SplitAttention(dim, num_heads)
            if kind == "input_width":
                return InputWidthAttention(dim, num_heads)
            if kind == "averaged":
                return HeadAveragedAttention(dim, num_heads)
            return SelfAttention(dim, num_heads, fused=kind != "softmax")

        self.blocks = nn.Sequential(*(Block(attn(), dim) for _ in range(depth)))
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean(dim=1))
