"""``routing``: whole mixture-of-experts experts ranked by the gate mass their router sends them on calibration data.

For an ``experts`` group, an expert's score is the mean over calibration tokens of the softmax probability the
router gives it when it is among the token's top-k (``calibration.routing``): experts that are rarely chosen, or
chosen with little weight, go first. Other groups (heads, FFN widths) have no router: they are scored by L2 weight
magnitude, with a note in the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secateurs.graph.groups import Group
from secateurs.scoring._common import fallback, require_stats
from secateurs.scoring.registry import ScoringContext, register_criterion


@dataclass
class Routing:
    name: str = "routing"
    needs_data: bool = True
    statistic: str = "mass"  # "mass" (routed gate mass), "picks" (top-k frequency) or "prob" (mean probability)

    def routers(self, groups: list[Group]) -> dict[str, int]:
        """Router weight FQN -> top-k of every experts group (what calibration records)."""
        return {str(g.meta["router"]): int(g.meta.get("top_k", 1)) for g in groups
                if g.kind == "experts" and "router" in g.meta}

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        stats = require_stats(ctx, self.name)
        router = group.meta.get("router") if group.kind == "experts" else None
        found = stats.routing.get(str(router)) if router is not None else None
        if found is None or float(found.tokens) == 0:
            why = "is not a group of experts" if router is None else "saw no routed token"
            return fallback(group, ctx, self.name, why)
        values = getattr(found, self.statistic) / found.tokens
        return values.cpu().numpy()[group.unit_index[group.members[0].cls]].sum(axis=1)


@register_criterion("routing")
def routing() -> Routing:
    return Routing()
