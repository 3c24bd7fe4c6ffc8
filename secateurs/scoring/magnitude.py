"""Weight-magnitude criteria: L1 and L2 norm of every parameter slice a unit removes (buffers excluded).

``reduce`` says how the members of a group combine: ``"group"`` (default) takes the norm of all the unit's
weights together; ``"sum"``, ``"mean"`` and ``"max"`` reduce the per-member norms (``"max"``: a unit is as
important as its most important slice, e.g. a channel that one consumer relies on heavily).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secateurs.errors import InvalidArgumentError
from secateurs.graph.analysis import unit_member_norms, unit_norms_by_member
from secateurs.graph.groups import Group
from secateurs.scoring.registry import ScoringContext, register_criterion


@dataclass
class Magnitude:
    p: float
    name: str
    needs_data: bool = False
    reduce: str = "group"

    def __post_init__(self) -> None:
        if self.reduce not in REDUCTIONS:
            raise InvalidArgumentError(f"magnitude reduce must be one of {', '.join(REDUCTIONS)}, got {self.reduce!r}")

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        if self.reduce == "group":
            return unit_member_norms(group, ctx.params, self.p) ** (1.0 / self.p)
        per_member = unit_norms_by_member(group, ctx.params, self.p)
        if not per_member:
            return np.zeros(group.n_units)
        norms = np.stack(per_member) ** (1.0 / self.p)
        return np.asarray(getattr(np, self.reduce)(norms, axis=0))


REDUCTIONS = ("group", "sum", "mean", "max")


def magnitude(p: float = 2.0, reduce: str = "group") -> Magnitude:
    """An Lp magnitude criterion with a member reduction, e.g. ``importance=magnitude(2, reduce="max")``."""
    return Magnitude(float(p), f"l{p:g}" if reduce == "group" else f"l{p:g}-{reduce}", reduce=reduce)


@register_criterion("l1")
def l1() -> Magnitude:
    return Magnitude(1.0, "l1")


@register_criterion("l2")
def l2() -> Magnitude:
    return Magnitude(2.0, "l2")
