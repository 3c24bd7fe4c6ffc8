"""Hard-concrete masks (Louizos et al., 2018), as Sheared-LLaMA learns them, one set per kind of structure.

A mask of ``n`` units holds ``log_alpha`` (learned). Training samples ``z = clamp(s * (zeta - gamma) + gamma, 0, 1)``
with ``s = sigmoid((log u - log(1 - u) + log_alpha) / beta)``, ``u ~ U(0, 1)``, so a unit is exactly 0 or 1 with
positive probability and gradients flow through ``log_alpha``. ``keep_probability`` is ``P(z != 0)``, whose sum is
the expected number of units kept (the L0 norm) that the Lagrangian drives to the target. ``final`` keeps exactly
``k`` units: the ``k`` largest ``log_alpha`` (ties: lower index), each with its deterministic value
``clamp(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)``, floored at ``MIN_KEPT`` so a kept unit is never 0,
or with ``hard`` the value 1 (``top_k``: the 0/1 choice alone; what ``sc.shear``'s annealing phase trains on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1
MIN_KEPT = 1e-3


def init_log_alpha(keep: float) -> float:
    """``log_alpha`` whose deterministic value keeps about ``keep`` of a unit (0.9 starts close to the full model)."""
    return math.log(keep) - math.log(1.0 - keep)


class HardConcrete(nn.Module):
    """``shape``: (n,) for one set (layers, hidden dims) or (layers, n) for one set per layer."""

    def __init__(self, shape: tuple[int, ...], keep: float = 0.9):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full(shape, init_log_alpha(keep)))

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = 1e-6
        u = torch.rand(self.log_alpha.shape, generator=generator, dtype=torch.float32).clamp(eps, 1 - eps)
        u = u.to(self.log_alpha.device)
        s = torch.sigmoid((u.log() - (1 - u).log() + self.log_alpha) / BETA)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def deterministic(self) -> torch.Tensor:
        return (torch.sigmoid(self.log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def keep_probability(self) -> torch.Tensor:
        return torch.sigmoid(self.log_alpha - BETA * math.log(-GAMMA / ZETA))

    def top_k(self, k: int) -> torch.Tensor:
        """1 for the ``k`` largest ``log_alpha`` along the last dim (ties: lower index), else 0."""
        with torch.no_grad():
            la = self.log_alpha.detach()
            rows = la.reshape(-1, la.shape[-1])
            out = torch.zeros_like(rows)
            for r in range(rows.shape[0]):
                row = [-float(v) for v in rows[r]]
                out[r, sorted(range(len(row)), key=row.__getitem__)[:k]] = 1.0  # stable sort: ties keep lower index
            return out.reshape(la.shape)

    def final(self, k: int, hard: bool = False) -> torch.Tensor:
        """Exactly ``k`` nonzero units along the last dim (per row for a per-layer mask): their deterministic values
        (floored at ``MIN_KEPT``), or 1 with ``hard``."""
        keep = self.top_k(k)
        if hard:
            return keep
        with torch.no_grad():
            return keep * self.deterministic().detach().clamp(min=MIN_KEPT)


@dataclass(frozen=True)
class Structure:
    """One kind of structure a target constrains: its mask, full and target counts (per layer where per-layer)."""

    name: str  # "layers" | "hidden" | "ffn" | "kv_heads" | "query_heads"
    full: int
    target: int
    per_layer: bool

    def mask_shape(self, n_layers: int) -> tuple[int, ...]:
        return (n_layers, self.full) if self.per_layer else (self.full,)
