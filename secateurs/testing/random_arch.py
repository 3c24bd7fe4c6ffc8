"""Random small architectures for property-based tests of the whole prune pipeline.

``random_model(seed)`` builds a CNN or a transformer-style model from a list of block specs drawn
with ``random.Random(seed)``: residual adds, cat, split/chunk, grouped and depthwise convolutions,
flatten into a linear layer, reshape into heads + scaled_dot_product_attention, batch/layer/group
norm and elementwise ops, and the harder cases of ``random_blocks``: channel shuffles before grouped
convs, channel reductions after ops that do not keep zeros, uneven splits, tied weights, sizes read
from attributes, integer/bool outputs. The same seed always gives the same architecture and weights.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from secateurs.testing.random_blocks import (
    EXTRA_OUTPUTS,
    ChannelReduceBlock,
    GroupGateMLP,
    ShuffleBlock,
    TiedConvBlock,
    UnevenSplitBlock,
    extra_output,
)

T = torch.Tensor

_ACTS: dict[str, Callable[[T], T]] = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
         "hardswish": F.hardswish, "id": lambda t: t}


def _act(rng: random.Random) -> str:
    return rng.choice(sorted(_ACTS))


class ConvBlock(nn.Module):
    """conv (plain, grouped or depthwise) -> optional norm -> activation; optional residual add."""

    def __init__(self, rng: random.Random, c: int):
        super().__init__()
        kind = rng.choice(["plain", "plain", "grouped", "depthwise"])
        groups = 1
        if kind == "grouped":
            groups = rng.choice([g for g in (2, 4) if c % g == 0] or [1])
        if kind == "depthwise":
            groups = c
        self.residual = rng.random() < 0.5
        c_out = c if self.residual or kind == "depthwise" else rng.choice([4, 6, 8, 12])
        if groups > 1 and c_out % groups:
            c_out = c
        k = rng.choice([1, 3])
        self.conv = nn.Conv2d(c, c_out, k, padding=k // 2, groups=groups, bias=rng.random() < 0.5)
        norm = rng.choice(["bn", "bn", "gn", "none"])
        if norm == "gn":
            g = rng.choice([g for g in (1, 2) if c_out % g == 0])
            self.norm: nn.Module = nn.GroupNorm(g, c_out)
        elif norm == "bn":
            self.norm = nn.BatchNorm2d(c_out)
            with torch.no_grad():
                self.norm.register_buffer("running_mean", torch.randn(c_out) * 0.1)
                self.norm.register_buffer("running_var", torch.rand(c_out) + 0.5)
        else:
            self.norm = nn.Identity()
        self.act = _act(rng)
        self.c_out = c_out

    def forward(self, x: T) -> T:
        y = _ACTS[self.act](self.norm(self.conv(x)))
        return x + y if self.residual else y


class CatBlock(nn.Module):
    """Two convolution branches concatenated along channels."""

    def __init__(self, rng: random.Random, c: int):
        super().__init__()
        a, b = rng.choice([2, 4, 6]), rng.choice([2, 4, 6])
        self.left = nn.Conv2d(c, a, 1)
        self.right = nn.Conv2d(c, b, 3, padding=1)
        self.act = _act(rng)
        self.c_out = a + b

    def forward(self, x: T) -> T:
        return _ACTS[self.act](torch.cat([self.left(x), self.right(x)], dim=1))


class GateBlock(nn.Module):
    """conv to 2m channels, split into halves (chunk or split), combined elementwise (a GLU)."""

    def __init__(self, rng: random.Random, c: int):
        super().__init__()
        m = rng.choice([2, 4, 6])
        self.conv = nn.Conv2d(c, 2 * m, 1)
        self.how = rng.choice(["chunk", "split", "slice"])
        self.combine = rng.choice(["gate", "add", "mul"])
        self.c_out = m

    def forward(self, x: T) -> T:
        y = self.conv(x)
        half = y.shape[1] // 2
        if self.how == "chunk":
            a, b = y.chunk(2, dim=1)
        elif self.how == "split":
            a, b = y.split(half, dim=1)
        else:
            a, b = y[:, :half], y[:, half:]
        if self.combine == "gate":
            return a * torch.sigmoid(b)
        return a + b if self.combine == "add" else a * b


class SEBlock(nn.Module):
    """Squeeze-and-excitation: channel weights from a spatial mean through a bottleneck."""

    def __init__(self, rng: random.Random, c: int):
        super().__init__()
        r = rng.choice([2, 4])
        self.down = nn.Conv2d(c, r, 1)
        self.up = nn.Conv2d(r, c, 1)
        self.c_out = c

    def forward(self, x: T) -> T:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.up(F.relu(self.down(s))))


class PoolBlock(nn.Module):
    def __init__(self, rng: random.Random, c: int):
        super().__init__()
        self.kind = rng.choice(["max", "avg"])
        self.c_out = c

    def forward(self, x: T) -> T:
        return F.max_pool2d(x, 2) if self.kind == "max" else F.avg_pool2d(x, 2)


_CNN_BLOCKS: dict[str, Callable[[random.Random, int], nn.Module]] = {
    "conv": ConvBlock, "cat": CatBlock, "gate": GateBlock, "pool": PoolBlock, "se": SEBlock, "shuffle": ShuffleBlock,
    "reduce": ChannelReduceBlock, "uneven": UnevenSplitBlock, "tied": TiedConvBlock,
}


class RandomCNN(nn.Module):
    def __init__(self, rng: random.Random):
        super().__init__()
        c = rng.choice([4, 6, 8])
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        blocks: list[nn.Module] = []
        size = 8
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice(["conv", "conv", "cat", "gate", "pool", "se", "shuffle", "reduce", "uneven", "tied"])
            if kind == "pool" and size <= 2:
                kind = "conv"
            block = _CNN_BLOCKS[kind](rng, c)
            if kind == "pool":
                size //= 2
            blocks.append(block)
            c = block.c_out  # type: ignore[assignment]
        self.blocks = nn.Sequential(*blocks)
        self.flatten_head = rng.random() < 0.5
        self.head = nn.Linear(c * size * size if self.flatten_head else c, 5)
        self.extra = extra_output(rng)

    def forward(self, x: T) -> T | tuple[T, T]:
        h = self.blocks(self.stem(x))
        y = self.head(torch.flatten(h, 1) if self.flatten_head else h.mean((2, 3)))
        return y if self.extra is None else (y, EXTRA_OUTPUTS[self.extra](h, y))


class Attention(nn.Module):
    """Pre-norm multi-head attention: reshape into heads, SDPA, reshape back, residual add.

    Variants: fused qkv or separate projections, grouped-query (fewer k/v heads, ``enable_gqa``),
    and the number of heads written as a constant in forward (as much hand-written attention does),
    which pruning whole heads cannot update: such plans must be refused, not silently wrong.
    """

    def __init__(self, rng: random.Random, d: int):
        super().__init__()
        self.heads = rng.choice([1, 2, 4])
        self.head_dim = rng.choice([2, 4])
        self.fused = rng.random() < 0.5
        self.kv_heads = self.heads if self.fused else rng.choice([k for k in (1, 2, 4) if self.heads % k == 0])
        self.const_heads = rng.random() < 0.25
        inner, kv_inner = self.heads * self.head_dim, self.kv_heads * self.head_dim
        self.norm = nn.LayerNorm(d) if rng.random() < 0.5 else nn.RMSNorm(d)
        if self.fused:
            self.qkv = nn.Linear(d, 3 * inner)
        else:
            self.q, self.k, self.v = nn.Linear(d, inner), nn.Linear(d, kv_inner), nn.Linear(d, kv_inner)
        self.proj = nn.Linear(inner, d)

    def forward(self, x: T) -> T:
        b, n, _ = x.shape
        h = self.norm(x)
        heads = self.heads if self.const_heads else -1
        if self.fused:
            q, k, v = self.qkv(h).reshape(b, n, 3, heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            kv = self.kv_heads if self.const_heads else -1
            q = self.q(h).view(b, n, heads, self.head_dim).transpose(1, 2)
            k, v = (p(h).view(b, n, kv, self.head_dim).transpose(1, 2) for p in (self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, enable_gqa=self.kv_heads != self.heads)
        return x + self.proj(y.transpose(1, 2).reshape(b, n, -1))


class MLP(nn.Module):
    """Pre-norm MLP, plain or gated (chunk into halves), with a residual add."""

    def __init__(self, rng: random.Random, d: int):
        super().__init__()
        hidden = rng.choice([4, 8, 12])
        self.gated = rng.random() < 0.5
        self.norm = nn.LayerNorm(d) if rng.random() < 0.5 else nn.Identity()
        self.up = nn.Linear(d, 2 * hidden if self.gated else hidden)
        self.down = nn.Linear(hidden, d)
        self.act = _act(rng)
        self.renorm = rng.random() < 0.2  # divide by a sum over the hidden width (a hand-written softmax)

    def forward(self, x: T) -> T:
        h = self.up(self.norm(x))
        if self.gated:
            a, g = h.chunk(2, dim=-1)
            h = a * F.silu(g)
        h = _ACTS[self.act](h)
        if self.renorm:
            h = h.exp() / h.exp().sum(-1, keepdim=True)
        return x + self.down(h)


class RandomTransformer(nn.Module):
    def __init__(self, rng: random.Random):
        super().__init__()
        d = rng.choice([4, 8, 12])
        self.embed = nn.Linear(6, d)
        self.blocks = nn.Sequential(*[rng.choice([Attention, Attention, MLP, MLP, GroupGateMLP])(rng, d)
                                      for _ in range(rng.randint(1, 3))])
        self.pool = rng.choice(["mean", "first", "sum"])
        self.head = nn.Linear(d, 3)
        self.extra = extra_output(rng)

    def forward(self, x: T) -> T | tuple[T, T]:
        h = self.blocks(self.embed(x))
        pooled = h.mean(1) if self.pool == "mean" else (h[:, 0] if self.pool == "first" else h.sum(1))
        y = self.head(pooled)
        return y if self.extra is None else (y, EXTRA_OUTPUTS[self.extra](h.transpose(1, 2), y))


@dataclass
class RandomCase:
    seed: int
    model: nn.Module
    inputs: T

    def fresh_inputs(self, seed: int, batch: int | None = None) -> T:
        """New random inputs shaped like ``inputs`` (with ``batch`` samples when given)."""
        g = torch.Generator().manual_seed(seed)
        shape = self.inputs.shape if batch is None else (batch, *self.inputs.shape[1:])
        return torch.randn(shape, generator=g)


def random_model(seed: int) -> RandomCase:
    """A random CNN (input 2 x 3 x 8 x 8) or transformer (input 2 x 5 x 6), in eval mode, from ``seed``."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    if rng.random() < 0.55:
        model: nn.Module = RandomCNN(rng)
        x = torch.randn(2, 3, 8, 8)
    else:
        model = RandomTransformer(rng)
        x = torch.randn(2, 5, 6)
    return RandomCase(seed, model.eval(), x)
