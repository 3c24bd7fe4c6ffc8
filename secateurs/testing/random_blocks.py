"""Blocks for ``random_arch`` that probe where pruning is easy to get wrong.

Channel shuffles before grouped convolutions, reductions over the channels after ops that do not keep zeros
(``sigmoid``, ``exp``, ``cos``, ``+ 1``), uneven splits, tied weights, sizes held in attributes that forward()
reads (``self.groups`` in a view), and integer/bool outputs (argmax, masks, counts). Each is either prunable and
then equal to the masked original, or must be refused; none may be silently wrong.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

T = torch.Tensor

#: elementwise maps before a channel reduction; the first three keep zeros, the others do not
REDUCE_MAPS: dict[str, Callable[[T], T]] = {
    "relu": F.relu, "tanh": torch.tanh, "square": torch.square,
    "sigmoid": torch.sigmoid, "exp": lambda t: torch.exp(t.clamp(max=4)), "cos": torch.cos, "plus_one": lambda t: t + 1,
}


class ShuffleBlock(nn.Module):
    """ShuffleNet's channel shuffle with ``g`` groups, then a grouped (``g`` or a divisor) or plain 3x3 conv."""

    def __init__(self, rng: random.Random, c: int):
        super().__init__()
        options = [g for g in (2, 3, 4) if c % g == 0 and c // g > 1]
        self.g = rng.choice(options) if options else 1
        conv_groups = rng.choice([self.g, self.g, 1] + ([2] if self.g == 4 else []))
        self.conv = nn.Conv2d(c, c, 3, padding=1, groups=conv_groups, bias=rng.random() < 0.5)
        self.c_out = c

    def forward(self, x: T) -> T:
        n, c, h, w = x.shape
        y = x.view(n, self.g, c // self.g, h, w).transpose(1, 2).reshape(n, c, h, w)
        return F.relu(self.conv(y))


class ChannelReduceBlock(nn.Module):
    """``x * f(x).sum(1)`` or ``x * norm(f(x))`` over the channels, scaled by the width at construction."""

    def __init__(self, rng: random.Random, c: int):
        super().__init__()
        self.map = rng.choice(sorted(REDUCE_MAPS))
        self.how = rng.choice(["sum", "norm"])
        self.conv = nn.Conv2d(c, c, 1)
        self.scale = 1.0 / c
        self.c_out = c

    def forward(self, x: T) -> T:
        y = self.conv(x)
        f = REDUCE_MAPS[self.map](y)
        r = f.sum(1, keepdim=True) if self.how == "sum" else torch.linalg.vector_norm(f, dim=1, keepdim=True)
        return y * (r * self.scale)


class UnevenSplitBlock(nn.Module):
    """conv to ``a + b`` channels (a != b), split unevenly, one piece through an activation, concatenated back."""

    def __init__(self, rng: random.Random, c: int):
        super().__init__()
        self.a, self.b = rng.choice([(2, 4), (4, 2), (3, 5), (2, 6)])
        self.conv = nn.Conv2d(c, self.a + self.b, 1)
        self.c_out = self.a + self.b

    def forward(self, x: T) -> T:
        p, q = self.conv(x).split([self.a, self.b], dim=1)
        return torch.cat([torch.tanh(p), q], 1)


class TiedConvBlock(nn.Module):
    """Two 1x1 convs sharing one weight (separate biases) on two paths, summed."""

    def __init__(self, rng: random.Random, c: int):
        super().__init__()
        width = rng.choice([4, 6, 8])
        self.first = nn.Conv2d(c, width, 1)
        self.second = nn.Conv2d(c, width, 1)
        self.second.weight = self.first.weight
        self.c_out = width

    def forward(self, x: T) -> T:
        return F.relu(self.first(x)) + self.second(torch.tanh(x))


class GroupGateMLP(nn.Module):
    """An MLP whose hidden units are viewed as ``self.groups`` groups (a size read from an attribute), each scaled by
    a learned gate. Pruning whole groups changes the count forward() keeps: such plans must be refused."""

    def __init__(self, rng: random.Random, d: int):
        super().__init__()
        self.groups = rng.choice([2, 4])
        self.hidden = self.groups * rng.choice([2, 3])
        self.up, self.down = nn.Linear(d, self.hidden), nn.Linear(self.hidden, d)
        self.gate = nn.Parameter(torch.rand(self.groups) + 0.5)
        self.split_by_attribute = rng.random() < 0.5  # view(.., groups, -1) or view(.., -1, hidden // groups)

    def forward(self, x: T) -> T:
        b, n, _ = x.shape
        h = F.gelu(self.up(x))
        if self.split_by_attribute:
            g = h.view(b, n, self.groups, -1)
        else:
            g = h.view(b, n, -1, self.hidden // self.groups)
        return x + self.down((g * self.gate[:, None]).flatten(2))


#: extra outputs beside the logits: integer and bool results of the features (``h``) or logits (``y``)
EXTRA_OUTPUTS: dict[str, Callable[[T, T], T]] = {
    "argmax": lambda h, y: y.argmax(-1),
    "positive": lambda h, y: y > 0,
    "count_active": lambda h, y: (F.relu(h) > 0).flatten(1).sum(1),  # zeros stay inactive: exact
    "count_nonnegative": lambda h, y: (h >= 0).flatten(1).sum(1),  # removed units count: frozen
    "width": lambda h, y: torch.full((h.shape[0],), h.shape[1]),  # a size: changes when pruned, refused
}


def extra_output(rng: random.Random) -> str | None:
    return rng.choice([None, None, *sorted(EXTRA_OUTPUTS)]) if rng.random() < 0.5 else None
