"""FLAP fluctuation (An et al., 2024): Var(X_j) * ||W_:,j||^2 for input channel j of a consumer layer.

A channel whose input barely fluctuates around its mean carries little information (its mean can be
folded into a bias). Groups without a consumer input dim use their producers' output variance and rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from secateurs.graph.groups import Group
from secateurs.scoring._common import (
    fallback,
    member_stats,
    param_members,
    per_index,
    require_stats,
    to_units,
)
from secateurs.scoring.registry import ScoringContext, register_criterion


@dataclass
class Fluctuation:
    name: str = "fluctuation"
    needs_data: bool = True

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        require_stats(ctx, self.name)
        weights = [(m, t) for m, t in param_members(group, ctx) if t.ndim >= 2]
        for side in ("in", "out"):
            total, found = np.zeros(group.n_units), False
            for m, t in weights:
                hit = member_stats(ctx, m, side)
                if hit is None:
                    continue
                col_sq = per_index(t.detach().to(torch.float64).square(), m.dim)
                total += to_units(group, m, hit[1].var.cpu().numpy() * col_sq)
                found = True
            if found:
                return total
        return fallback(group, ctx, self.name, "has no Linear/Conv weight with recorded activations")


@register_criterion("fluctuation")
def fluctuation() -> Fluctuation:
    return Fluctuation()
