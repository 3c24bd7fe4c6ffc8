"""Activation criteria: how strongly (``activation``: mean |a|) or how often (``apoz``: 1 - APoZ,
Hu et al., 2016) a unit's channels are active on calibration data.

A unit's activation is read where a consumer layer receives it (Linear/Conv input channels, i.e. after
any nonlinearity between layers); a group with no consumer layer falls back to its producers' outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secateurs.graph.groups import Group
from secateurs.scoring._common import fallback, member_stats, require_stats, to_units
from secateurs.scoring.registry import ScoringContext, register_criterion


@dataclass
class Activation:
    name: str = "activation"
    needs_data: bool = True
    apoz: bool = False

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        require_stats(ctx, self.name)
        for side in ("in", "out"):
            per_member = []
            seen: set[str] = set()
            for m in group.members:
                found = member_stats(ctx, m, side)
                path = m.fqn.rpartition(".")[0]
                if found is None or path in seen:
                    continue
                seen.add(path)
                s = found[1]
                value = 1.0 - s.zero_fraction if self.apoz else s.mean_abs
                per_member.append(to_units(group, m, value.cpu().numpy()))
            if per_member:
                return np.mean(per_member, axis=0)
        return fallback(group, ctx, self.name, "has no layer with recorded activations")


@register_criterion("activation")
def activation() -> Activation:
    return Activation()


@register_criterion("apoz")
def apoz() -> Activation:
    return Activation(name="apoz", apoz=True)
