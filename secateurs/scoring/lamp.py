"""LAMP (Lee et al., 2021) on structures: a unit's squared L2 norm divided by the sum over units at least as large.

Scores lie in (0, 1] with the largest unit of every group at 1, so they compare across groups without
further normalisation (global ranking uses ``normalize='none'`` for LAMP by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secateurs.graph.analysis import unit_member_norms
from secateurs.graph.groups import Group
from secateurs.scoring.registry import ScoringContext, register_criterion


def lamp_scores(base: np.ndarray) -> np.ndarray:
    order = np.lexsort((np.arange(len(base)), base))
    sorted_base = base[order]
    suffix = np.cumsum(sorted_base[::-1])[::-1]
    out = np.empty_like(base, dtype=np.float64)
    out[order] = np.divide(sorted_base, suffix, out=np.zeros_like(sorted_base, dtype=np.float64), where=suffix > 0)
    return out


@dataclass
class LAMP:
    name: str = "lamp"
    needs_data: bool = False
    normalize: str = "none"

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        return lamp_scores(unit_member_norms(group, ctx.params, 2.0))


@register_criterion("lamp")
def lamp() -> LAMP:
    return LAMP()
