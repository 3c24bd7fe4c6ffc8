"""OBD-style second order (LeCun et al., 1990): 1/2 * F * w^2 summed over a unit's elements.

F is the diagonal empirical Fisher, the mean over calibration batches of the squared gradient of
``loss_fn`` (a diagonal approximation of the Hessian at a minimum). Batch gradients stand in for
per-sample ones, so smaller calibration batches give a closer Fisher.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from secateurs.graph.groups import Group
from secateurs.scoring._common import param_members, per_index, require_stats, to_units
from secateurs.scoring.registry import ScoringContext, register_criterion


@dataclass
class Hessian:
    name: str = "hessian"
    needs_data: bool = True
    needs_grads: bool = True
    grad_stats: tuple[str, ...] = ("sq",)

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        stats = require_stats(ctx, self.name, grads="sq")
        total = np.zeros(group.n_units)
        for m, t in param_members(group, ctx):
            f = stats.fisher(m.fqn)
            if f is not None:
                total += to_units(group, m, per_index(0.5 * f * t.detach().to(torch.float64).square(), m.dim))
        return total


@register_criterion("hessian")
def hessian() -> Hessian:
    return Hessian()
