"""Toy models whose exported programs (``.pt2``) carry sizes as literal op arguments, one op family each.

``PROGRAM_TOYS`` maps each op whose literals ``secateurs.graph.literals`` rewrites to a model, its example
input and a ratio that changes that op's literal when the model is pruned as a program. Tests iterate it
(and check that every registered literal finder has an entry), so a new finder comes with its toy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from secateurs.testing.moe import TinyMoE
from secateurs.testing.toys import GroupedQueryAttention, LatentKeyAttention


class FixedHeads(nn.Module):
    """Attention that splits heads with constant counts, as exported programs record them: ``unflatten`` for q,
    ``view`` for k, ``reshape`` for v and the output; pruning heads rewrites all four."""

    def __init__(self, dim: int = 16, heads: int = 4):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, d = self.heads, self.head_dim
        q = self.q(x).unflatten(-1, (h, d)).transpose(1, 2)
        k = self.k(x).view(b, n, h, d).transpose(1, 2)
        v = self.v(x).reshape(b, n, h, d).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.o(y.transpose(1, 2).reshape(b, n, h * d))


class NormedResidual(nn.Module):
    """A residual stream with LayerNorm: pruning the hidden size rewrites ``normalized_shape``."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.inp, self.fc1, self.fc2, self.out = nn.Linear(8, dim), nn.Linear(dim, 32), nn.Linear(32, dim), nn.Linear(dim, 4)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        h = h + self.fc2(F.relu(self.fc1(self.norm(h))))
        return self.out(self.norm(h))


class Depthwise(nn.Module):
    """Conv -> depthwise conv (``groups`` = channels) -> conv: pruning channels rewrites ``groups``."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.a = nn.Conv2d(3, channels, 3, padding=1)
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.b = nn.Conv2d(channels, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(F.relu(self.dw(F.relu(self.a(x)))))


class GroupNormed(nn.Module):
    """Conv -> GroupNorm(4 groups) -> conv: removing whole groups rewrites ``num_groups`` (and stays exact)."""

    def __init__(self, channels: int = 8, groups: int = 4):
        super().__init__()
        self.a, self.norm, self.b = nn.Conv2d(3, channels, 3, padding=1), nn.GroupNorm(groups, channels), nn.Conv2d(channels, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(F.relu(self.norm(self.a(x))))


class GatedChunk(nn.Module):
    """A GLU: one Linear ``chunk``-ed in two; uneven pruning of the halves turns the chunk into ``split_with_sizes``."""

    def __init__(self, dim: int = 16, hidden: int = 12, op: str = "chunk"):
        super().__init__()
        self.op = op
        self.up, self.down = nn.Linear(dim, 2 * hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        half = h.shape[-1] // 2
        if self.op == "chunk":
            a, b = h.chunk(2, dim=-1)
        elif self.op == "split":
            a, b = h.split(half, dim=-1)
        else:
            a, b = h.split([half, half], dim=-1)
        return self.down(a * torch.sigmoid(b))


class RotateHalf(nn.Module):
    """RoPE's ``rotate_half`` on per-head q/k with an explicit softmax scale: pruning head_dim rewrites slice bounds."""

    def __init__(self, dim: int = 16, heads: int = 2):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.angle = nn.Parameter(torch.linspace(0.1, 1.0, dim // heads), requires_grad=False)

    @staticmethod
    def rotate(t: torch.Tensor) -> torch.Tensor:
        half = t.shape[-1] // 2
        return torch.cat((-t[..., half:], t[..., :half]), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        q = q * torch.cos(self.angle) + self.rotate(q) * torch.sin(self.angle)
        k = k * torch.cos(self.angle) + self.rotate(k) * torch.sin(self.angle)
        y = F.scaled_dot_product_attention(q, k, v, scale=self.head_dim ** -0.5)
        return x + self.o(y.transpose(1, 2).reshape(b, n, -1))


class RepeatKV(GroupedQueryAttention):
    """GQA whose key/value heads are repeated with an explicit ``output_size`` (a literal head count)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, -1, self.head_dim).transpose(1, 2)

        k, v = split(self.k(x)), split(self.v(x))
        heads = k.shape[1] * self.rep
        k = k.repeat_interleave(self.rep, dim=1, output_size=heads)
        v = v.repeat_interleave(self.rep, dim=1, output_size=heads)
        y = F.scaled_dot_product_attention(split(self.q(x)), k, v)
        return x + self.o(y.transpose(1, 2).reshape(b, n, -1))


class ExpandKV(GroupedQueryAttention):
    """GQA written as Hugging Face's ``repeat_kv``: ``expand`` then ``reshape`` with literal head counts."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, -1, self.head_dim).transpose(1, 2)

        def repeat(t: torch.Tensor) -> torch.Tensor:
            _, kv, s, d = t.shape
            return t[:, :, None].expand(b, kv, self.rep, s, d).reshape(b, kv * self.rep, s, d)

        y = F.scaled_dot_product_attention(split(self.q(x)), repeat(split(self.k(x))), repeat(split(self.v(x))))
        return x + self.o(y.transpose(1, 2).reshape(b, n, -1))


class ScatteredGates(TinyMoE):
    """Top-2 gates written into ``torch.zeros(tokens, num_experts)`` (a size the program holds as a constant) and
    four dense experts: removing experts rewrites the zeros' size."""

    def __init__(self) -> None:
        super().__init__(hidden=16, inner=8, experts=4, top_k=2)
        self.num_experts = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, ids = torch.topk(torch.softmax(F.linear(x, self.router), dim=-1), 2, dim=-1)
        gates = torch.zeros(x.shape[0], self.num_experts).scatter(1, ids, weights)
        inner = torch.relu(torch.einsum("th,eih->tei", x, self.up))
        return x + torch.einsum("te,teh->th", gates, torch.einsum("tei,ehi->teh", inner, self.down))


@dataclass(frozen=True)
class ProgramToy:
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    ratio: dict[str, float]
    decompose: bool = False  # lower to core ATen first (``run_decompositions``), as edge/mobile flows do

    def example(self, seed: int = 0) -> torch.Tensor:
        return torch.randn(self.shape, generator=torch.Generator().manual_seed(seed))


#: literal-finder op -> a toy whose pruned program rewrites that op's literal (ops sharing a finder function
#: with a listed op, e.g. conv3d with conv2d, are covered through it; tests check that)
PROGRAM_TOYS: dict[str, ProgramToy] = {
    "aten.view": ProgramToy(FixedHeads, (2, 5, 16), {"heads": 0.5}),
    "aten.reshape": ProgramToy(FixedHeads, (2, 5, 16), {"heads": 0.5}),
    "aten.expand": ProgramToy(ExpandKV, (2, 5, 16), {"heads": 0.5}),
    "aten.unflatten": ProgramToy(FixedHeads, (2, 5, 16), {"heads": 0.5}),
    "aten.layer_norm": ProgramToy(NormedResidual, (3, 8), {"hidden": 0.25}),
    "aten.conv2d": ProgramToy(Depthwise, (1, 3, 8, 8), {"channels": 0.5}),
    "aten.convolution": ProgramToy(Depthwise, (1, 3, 8, 8), {"channels": 0.5}, decompose=True),
    "aten.group_norm": ProgramToy(GroupNormed, (1, 3, 8, 8), {"channels": 0.5}),
    "aten.chunk": ProgramToy(lambda: GatedChunk(op="chunk"), (3, 16), {"channels": 0.4}),
    "aten.split": ProgramToy(lambda: GatedChunk(op="split"), (3, 16), {"channels": 0.4}),
    "aten.split_with_sizes": ProgramToy(lambda: GatedChunk(op="split_with_sizes"), (3, 16), {"channels": 0.4}),
    "aten.slice": ProgramToy(RotateHalf, (2, 5, 16), {"head_dim": 0.5}),
    "aten.repeat_interleave": ProgramToy(RepeatKV, (2, 5, 16), {"heads": 0.5}),
    "aten.new_empty": ProgramToy(LatentKeyAttention, (2, 5, 16), {"heads": 0.5}),
    "aten.zeros": ProgramToy(ScatteredGates, (6, 16), {"experts": 0.5}),
    "aten.one_hot": ProgramToy(lambda: TinyMoE(hidden=16), (6, 16), {"experts": 0.5}),
}


def export_toy(model: nn.Module, example: Any, path: str | Path, decompose: bool = False) -> Path:
    """Export ``model`` on ``example`` and save the program to ``path`` (how users make ``.pt2`` files)."""
    program = torch.export.export(model.eval(), (example,), strict=False)
    if decompose:
        program = program.run_decompositions()
    torch.export.save(program, str(path))
    return Path(path)
