"""First-order Taylor (Molchanov et al., 2019): the loss change predicted for removing a whole unit.

Zeroing every parameter a unit removes moves the weights by -w, so the first-order change of the loss
is -sum(g * w) over the unit's elements in every member; the score is its magnitude, with g the mean
gradient of ``loss_fn`` over the calibration batches.

``Taylor(reduce="element")`` sums ``|g * w|`` over the elements instead (each element's own first-order
term, no cancellation between them; the reduction Torch-Pruning's TaylorImportance uses). It bounds the
whole-unit estimate from above and ranks differently when a unit's terms have mixed signs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from secateurs.errors import InvalidArgumentError
from secateurs.graph.groups import Group
from secateurs.importance._common import param_members, per_index, require_stats, to_units
from secateurs.importance.registry import ScoringContext, register_criterion


@dataclass
class Taylor:
    name: str = "taylor"
    needs_data: bool = True
    needs_grads: bool = True
    grad_stats: tuple[str, ...] = ("sum",)
    reduce: str = "unit"  # "unit": |sum(g*w)| over the unit; "element": sum(|g*w|)

    def __post_init__(self) -> None:
        if self.reduce not in ("unit", "element"):
            raise InvalidArgumentError(f"Taylor reduce must be 'unit' or 'element', got {self.reduce!r}")

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        stats = require_stats(ctx, self.name, grads="sum")
        total = np.zeros(group.n_units)
        for m, t in param_members(group, ctx):
            g = stats.mean_grad(m.fqn)
            if g is not None:
                term = g * t.detach().to(torch.float64)
                total += to_units(group, m, per_index(term.abs() if self.reduce == "element" else term, m.dim))
        return np.abs(total)


@register_criterion("taylor")
def taylor() -> Taylor:
    return Taylor()
