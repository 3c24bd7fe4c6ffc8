"""Weight-magnitude criteria: L1 and L2 norm of every parameter slice a unit removes (buffers excluded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secateurs.graph.analysis import unit_member_norms
from secateurs.graph.groups import Group
from secateurs.importance.registry import ScoringContext, register_criterion


@dataclass
class Magnitude:
    p: float
    name: str
    needs_data: bool = False

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        return unit_member_norms(group, ctx.params, self.p) ** (1.0 / self.p)


@register_criterion("l1")
def l1() -> Magnitude:
    return Magnitude(1.0, "l1")


@register_criterion("l2")
def l2() -> Magnitude:
    return Magnitude(2.0, "l2")
