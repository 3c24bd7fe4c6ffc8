"""Residual MLP stacks for layer-dropping tests: blocks ``x + fc2(relu(fc1(x)))`` in a ModuleList or Sequential.

``ResidualStack.near_identity_(i, scale)`` shrinks block ``i``'s residual branch so that the right answer
of a layer criterion is known by construction; ``zero_branch_(i)`` makes block ``i`` exactly the identity
(the oracle a dropped block is verified against).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.relu(self.fc1(x)))


class ResidualStack(nn.Module):
    """stem -> ``depth`` residual MLP blocks -> head; ``sequential=True`` keeps the blocks in an nn.Sequential."""

    def __init__(self, d_in: int = 8, dim: int = 16, hidden: int = 32, depth: int = 4, d_out: int = 4,
                 sequential: bool = False):
        super().__init__()
        self.stem = nn.Linear(d_in, dim)
        blocks = [ResidualMLP(dim, hidden) for _ in range(depth)]
        self.blocks: nn.ModuleList | nn.Sequential = nn.Sequential(*blocks) if sequential else nn.ModuleList(blocks)
        self.head = nn.Linear(dim, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)

    def _fc2(self, index: int) -> nn.Linear:
        block = self.blocks[index]
        assert isinstance(block, ResidualMLP)
        return block.fc2

    @torch.no_grad()
    def near_identity_(self, index: int, scale: float = 1e-3) -> None:
        fc2 = self._fc2(index)
        fc2.weight.mul_(scale)
        fc2.bias.mul_(scale)

    @torch.no_grad()
    def zero_branch_(self, index: int) -> None:
        fc2 = self._fc2(index)
        fc2.weight.zero_()
        fc2.bias.zero_()
