"""score(): one importance score per unit of every group, the stage between grouping and selection.

``statistics_for`` gathers what a criterion reads from calibration data (activations, gradients, input
moments) and checks the request first; ``score_groups`` asks the criterion group by group and checks the
answers. Planning, plan families and sensitivity scans all score through these two functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from secateurs.calibration.collect import collect
from secateurs.calibration.data import LossFn
from secateurs.calibration.stats import Statistics
from secateurs.errors import InvalidArgumentError, PlanError
from secateurs.graph.groups import Group
from secateurs.graph.program_limits import refuse_for_program
from secateurs.progress import bar
from secateurs.scoring.registry import Criterion, ScoringContext, criterion_name, get_criterion


@dataclass
class Scores:
    """Per group id, one score per unit (higher = more important); ``notes`` are fallbacks the criterion took."""

    criterion: str
    by_group: dict[int, np.ndarray]
    notes: list[str] = field(default_factory=list)
    stats: Statistics | None = None

    def of(self, group: Group) -> np.ndarray:
        return self.by_group[group.id]


def statistics_for(criterion: Criterion, model: torch.nn.Module, calibration: Any, loss_fn: LossFn | None,
                   groups: Sequence[Group] = ()) -> Statistics | None:
    """The calibration statistics ``criterion`` reads (None for weight-only criteria); ``calibration`` may already
    be ``Statistics`` (checked to hold what the criterion needs)."""
    name = criterion_name(criterion)
    if not getattr(criterion, "needs_data", False):
        if calibration is not None:
            warnings.warn(f"calibration data is not used by importance {name!r}", stacklevel=4)
        return None
    grads = bool(getattr(criterion, "needs_grads", False))
    wants = getattr(criterion, "moment_paths", None)  # criteria reading input Gram matrices of some layers
    if callable(wants):
        refuse_for_program(model, moments_criterion=name)
    if calibration is None:
        extra = " and loss_fn=lambda output, batch: <scalar loss>" if grads else ""
        raise InvalidArgumentError(
            f"importance {name!r} needs calibration data: pass calibration=<iterable of batches shaped like "
            f"example_inputs> (a DataLoader, or a list such as [x1, x2]){extra}"
        )
    grad_stats = tuple(getattr(criterion, "grad_stats", ("sum", "sq"))) if grads else ()
    moments = wants(model, list(groups)) if callable(wants) else []
    wants_routers = getattr(criterion, "routers", None)  # criteria reading mixture-of-experts router statistics
    routers = wants_routers(list(groups)) if callable(wants_routers) else {}
    if isinstance(calibration, Statistics):
        missing = [k for k in grad_stats if not calibration.has(k)]
        if missing:
            raise InvalidArgumentError(
                f"importance {name!r} needs gradient statistics {missing}, but the Statistics given were collected "
                f"without them; collect(model, batches, loss_fn=..., grads=True, grad_stats={grad_stats!r})")
        if any(r not in calibration.routing for r in routers):
            raise InvalidArgumentError(
                f"importance {name!r} needs router statistics of {len(routers)} mixture-of-experts routers, but the "
                "Statistics given were collected without them; pass the calibration batches instead")
        if any(p not in calibration.moments for p in moments):
            raise InvalidArgumentError(
                f"importance {name!r} needs input moments of {len(moments)} layers, but the Statistics given were "
                "collected without them; pass the calibration batches instead")
        return calibration
    if grads and loss_fn is None:
        raise InvalidArgumentError(
            f"importance {name!r} needs gradients: pass loss_fn=lambda output, batch: <scalar loss tensor> "
            "(e.g. F.cross_entropy(output, labels)); it is called on every calibration batch"
        )
    if loss_fn is not None and not callable(loss_fn):
        raise InvalidArgumentError(f"loss_fn must be callable as loss_fn(output, batch), got {type(loss_fn).__name__}")
    needed = {m.fqn.rpartition(".")[0] for g in groups for m in g.members} if groups else None
    return collect(model, calibration, loss_fn=loss_fn, grads=grads, grad_stats=grad_stats or ("sum", "sq"),
                   moments=moments, needed=needed, routers=routers)


def score_groups(criterion: Criterion, groups: Sequence[Group], ctx: ScoringContext) -> dict[int, np.ndarray]:
    """``criterion``'s scores for each group, checked: one finite float per unit."""
    out: dict[int, np.ndarray] = {}
    for g in bar(groups, "scoring", len(groups)):
        scores = np.asarray(criterion.scores(g, ctx), dtype=np.float64)
        if scores.shape != (g.n_units,):
            raise PlanError(f"criterion returned {scores.shape} scores for group {g.name} of {g.n_units} units")
        if not np.isfinite(scores).all():
            raise PlanError(f"criterion {criterion_name(criterion)!r} returned non-finite scores for group {g.name}")
        out[g.id] = scores
    return out


def check_weights(criterion: Criterion, tensors: dict[str, torch.Tensor]) -> None:
    """Weight-reading criteria need weights: a meta-device model plans with ``importance='random'`` only."""
    name = criterion_name(criterion)
    if name != "random" and any(t.is_meta for t in tensors.values()):
        raise InvalidArgumentError(
            f"importance {name!r} reads weights, but the model is on the meta "
            "device; load the weights first or use importance='random' to plan the shapes only"
        )


def score(model: torch.nn.Module, groups: Sequence[Group], importance: Any = "l2", *, calibration: Any = None,
          loss_fn: LossFn | None = None, seed: int = 0) -> Scores:
    """Score ``groups`` (from ``sc.analyze(model, x).groups``) with ``importance``: a name, a ``CriterionSpec``
    or a criterion object. Data criteria read ``calibration`` batches (and ``loss_fn`` for gradients)."""
    criterion = get_criterion(importance)
    tensors = dict(model.state_dict(keep_vars=True))
    check_weights(criterion, tensors)
    stats = statistics_for(criterion, model, calibration, loss_fn, groups) if groups else None
    ctx = ScoringContext(model, tensors, seed, stats=stats)
    by_group = score_groups(criterion, groups, ctx)
    return Scores(criterion_name(criterion), by_group, sorted(set(ctx.notes)), stats)
