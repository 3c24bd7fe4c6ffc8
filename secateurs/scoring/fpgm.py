"""FPGM: a unit near the geometric median of its layer's units is redundant (He et al., 2019).

Score = sum of Euclidean distances from the unit's weight slice to every other unit's slice,
summed over the weight members of the group (the sum of distances is what the geometric median minimises).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from secateurs.graph.groups import Group
from secateurs.scoring._common import param_members
from secateurs.scoring.registry import ScoringContext, register_criterion


@dataclass
class FPGM:
    name: str = "fpgm"
    needs_data: bool = False

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        members = param_members(group, ctx)
        weights = [(m, t) for m, t in members if t.ndim >= 2] or members
        total = np.zeros(group.n_units)
        for m, t in weights:
            w = t.detach().to(torch.float64).movedim(m.dim, 0)
            idx = torch.as_tensor(group.unit_index[m.cls])
            units = w[idx.reshape(-1)].reshape(group.n_units, -1)
            total += torch.cdist(units, units).sum(1).cpu().numpy()
        return total


@register_criterion("fpgm")
def fpgm() -> FPGM:
    return FPGM()
