"""Random scores (seeded): the baseline every criterion must beat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secateurs.graph.groups import Group
from secateurs.scoring.registry import ScoringContext, register_criterion


@dataclass
class RandomScores:
    name: str = "random"
    needs_data: bool = False

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        rng = np.random.default_rng([ctx.seed, group.id])
        return rng.random(group.n_units)


@register_criterion("random")
def random_() -> RandomScores:
    return RandomScores()
