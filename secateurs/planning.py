"""plan(): score every eligible group, select the units to remove, and record a Plan."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from secateurs._version import __version__
from secateurs.algorithms.select import (
    IgnoreSpec,
    group_is_ignored,
    n_to_remove,
    resolve_ratio,
    select_lowest,
)
from secateurs.errors import InvalidArgumentError, PlanError
from secateurs.graph.analysis import Analysis
from secateurs.graph.groups import Group
from secateurs.importance.registry import Criterion, ScoringContext, get_criterion
from secateurs.plans import GroupRecord, Plan


def eligible_groups(analysis: Analysis, model: torch.nn.Module, ratios: dict[str, float], ignore: IgnoreSpec) -> list[Group]:
    return [g for g in analysis.groups if ratios.get(g.kind, 0.0) > 0 and not group_is_ignored(g, ignore, model)]


def build_plan(analysis: Analysis, removed: dict[int, np.ndarray], settings: dict[str, Any]) -> Plan:
    """Turn per-group removed units into kept indices for every parameter and buffer they touch."""
    st = analysis.structure
    removed_by_class: dict[int, set[int]] = {}
    for g in analysis.groups:
        units = removed.get(g.id)
        if units is None or len(units) == 0:
            continue
        for c, idx in g.unit_index.items():
            removed_by_class.setdefault(c, set()).update(idx[units].ravel().tolist())
    keep: dict[str, dict[int, list[int]]] = {}
    for c, gone in removed_by_class.items():
        size = int(st.class_size[c])
        if len(gone) >= size:
            raise PlanError(f"plan would remove every unit of a dimension of size {size}; lower the ratio")
        kept = sorted(set(range(size)) - gone)
        for fqn, dim in st.class_params.get(c, []):
            keep.setdefault(fqn, {})[dim] = kept
    hints: dict[str, dict[str, Any]] = {}
    for path, name, spaces in st.coupled.rel.hints:
        classes = [int(st.space_class[s]) for s in spaces]
        new = [int(st.class_size[c]) - len(removed_by_class.get(c, ())) for c in classes]
        old = [int(st.class_size[c]) for c in classes]
        if new != old:
            hints.setdefault(path, {})[name] = new[0] if len(new) == 1 else new
    records = [
        GroupRecord(g.id, g.kind, g.name, [(m.fqn, m.dim) for m in g.members], g.n_units, g.unit_size,
                    [int(u) for u in removed.get(g.id, np.zeros(0, dtype=np.int64))], g.exact,
                    g.inexact_reasons[0] if g.inexact_reasons else "")
        for g in analysis.groups
    ]
    shapes = {k: list(v) for k, v in analysis.shapes.items()}
    return Plan(analysis.fingerprint, shapes, keep, hints, records, settings, __version__)


def make_plan(
    model: torch.nn.Module,
    analysis: Analysis,
    *,
    ratio: float | Mapping[str, float] = 0.5,
    importance: str | Criterion = "l2",
    ignore: Iterable[str | type] | str | type | None = None,
    round_to: int = 1,
    min_keep: int = 1,
    seed: int = 0,
) -> Plan:
    ratios = resolve_ratio(ratio)
    if not isinstance(round_to, int) or round_to < 1:
        raise InvalidArgumentError(f"round_to must be a positive integer, got {round_to!r}")
    if not isinstance(min_keep, int) or min_keep < 1:
        raise InvalidArgumentError(f"min_keep must be a positive integer, got {min_keep!r}")
    criterion = get_criterion(importance)
    spec = IgnoreSpec.parse(ignore)
    for pattern in spec.unmatched(model):
        warnings.warn(f"ignore pattern {pattern!r} matches no module of {type(model).__name__}", stacklevel=3)
    tensors = dict(model.state_dict(keep_vars=True))
    reads_weights = not getattr(criterion, "needs_data", False) and getattr(criterion, "name", "") != "random"
    if reads_weights and any(t.is_meta for t in tensors.values()):
        raise InvalidArgumentError(
            f"importance {getattr(criterion, 'name', criterion)!r} reads weights, but the model is on the meta "
            "device; load the weights first or use importance='random' to plan the shapes only"
        )
    ctx = ScoringContext(model, tensors, seed)
    removed: dict[int, np.ndarray] = {}
    for g in eligible_groups(analysis, model, ratios, spec):
        n = n_to_remove(g.n_units, ratios[g.kind], round_to, g.unit_size, min_keep)
        if n <= 0:
            continue
        scores = np.asarray(criterion.scores(g, ctx), dtype=np.float64)
        if scores.shape != (g.n_units,):
            raise PlanError(f"criterion returned {scores.shape} scores for group {g.name} of {g.n_units} units")
        removed[g.id] = select_lowest(scores, n)
    settings = {"ratio": ratios, "importance": getattr(criterion, "name", type(criterion).__name__),
                "ignore": list(spec.names) + [t.__qualname__ for t in spec.types], "round_to": round_to,
                "min_keep": min_keep, "seed": seed}
    return build_plan(analysis, removed, settings)
