"""First-order Taylor: |g·w| summed over the elements a unit removes (the default, ``reduce="element"``).

Zeroing every parameter a unit removes moves the weights by -w, so the first-order change of the loss is
-sum(g * w) over the unit's elements in every member; ``Taylor(reduce="unit")`` scores its magnitude (the
whole-unit estimate of Molchanov et al. 2019, with g the mean gradient of ``loss_fn`` over the calibration
batches). The default sums each element's own term |g * w| instead: no cancellation between elements of
mixed sign, an upper bound of the whole-unit estimate, and the form that ranked better in both real-data
benchmarks here (digits CNN and all-MiniLM-L6-v2, docs/benchmarks.md; it is also what Torch-Pruning does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from secateurs.errors import InvalidArgumentError
from secateurs.graph.groups import Group
from secateurs.scoring._common import param_members, per_index, require_stats, to_units
from secateurs.scoring.registry import ScoringContext, register_criterion


@dataclass
class Taylor:
    name: str = "taylor"
    needs_data: bool = True
    needs_grads: bool = True
    grad_stats: tuple[str, ...] = ("sum",)
    reduce: str = "element"  # "element": sum(|g*w|) (default); "unit": |sum(g*w)| over the unit

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
