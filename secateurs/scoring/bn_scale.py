"""BatchNorm scale (network slimming): |gamma| of the BatchNorm layers a unit removes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from secateurs.graph.groups import Group
from secateurs.scoring._common import fallback, param_members, per_index, to_units
from secateurs.scoring.registry import ScoringContext, register_criterion


@dataclass
class BNScale:
    name: str = "bn_scale"
    needs_data: bool = False

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        total, found = np.zeros(group.n_units), False
        for m, t in param_members(group, ctx):
            module, attr = ctx.module(m.fqn)
            if attr == "weight" and isinstance(module, nn.modules.batchnorm._BatchNorm):
                total += to_units(group, m, per_index(t.abs(), m.dim))
                found = True
        return total if found else fallback(group, ctx, self.name, "has no BatchNorm layer")


@register_criterion("bn_scale")
def bn_scale() -> BNScale:
    return BNScale()
