"""plan_family(): several sizes from one scoring pass, nested so that every smaller model is a sub-network
of every larger one (in the spirit of once-for-all subnetworks).

Every plan is made by ``make_plan`` with the same scores (a criterion wrapper scores each group once, and
calibration statistics are collected once), so each meets its target as ``plan`` does. With one fixed
ranking, removal counts grow with the strength and each group removes its lowest-ranked units first, so
the plans are nested by construction; ``plan_family`` still checks it and repairs the rare exception
(a measurement correction of one target) by taking the union, re-checking that target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from secateurs.calibration.data import LossFn
from secateurs.config import PruneConfig
from secateurs.errors import InvalidArgumentError, InvalidTypeError, PlanError
from secateurs.graph.analysis import Analysis, analyze
from secateurs.graph.capture import ExampleInputs
from secateurs.graph.groups import Group
from secateurs.planning.build import build_plan
from secateurs.planning.defaults import resolve as resolve_defaults
from secateurs.planning.make import make_plan
from secateurs.planning.targets import measure_kept, within
from secateurs.plans import Plan
from secateurs.scoring.registry import Criterion, ScoringContext, criterion_name, get_criterion
from secateurs.targets import LatencyTarget

_METRICS = ("macs", "params", "ratio")


class _ScoredOnce:
    """A criterion that asks the wrapped one once per group and replays the scores (and notes) afterwards."""

    def __init__(self, inner: Criterion):
        self.inner = inner
        self.name = criterion_name(inner)
        self.needs_data = bool(getattr(inner, "needs_data", False))
        self.cache: dict[int, tuple[np.ndarray, list[str]]] = {}
        self.stats: Any = None  # calibration statistics the first plan collected, reused by the others

    def __getattr__(self, attr: str) -> Any:  # needs_grads, grad_stats, normalize of the wrapped criterion
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        if ctx.stats is not None:
            self.stats = ctx.stats
        if group.id not in self.cache:
            before = len(ctx.notes)
            values = np.asarray(self.inner.scores(group, ctx), dtype=np.float64)
            self.cache[group.id] = (values, list(ctx.notes[before:]))
        else:
            ctx.notes.extend(self.cache[group.id][1])
        return self.cache[group.id][0]


def _targets(macs: Any, params: Any, ratio: Any) -> tuple[str, list[Any]]:
    given = [(name, v) for name, v in zip(_METRICS, (macs, params, ratio), strict=True) if v is not None]
    if len(given) != 1:
        raise InvalidArgumentError("plan_family needs exactly one list: macs=[0.75, 0.5, 0.25], params=[...] or ratio=[...]")
    name, values = given[0]
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise InvalidTypeError(f"{name}= must be a non-empty list of values for plan_family, got {values!r}")
    if len({repr(v) for v in values}) != len(values):
        raise InvalidArgumentError(f"{name}= values must be distinct, got {list(values)!r}")
    return name, list(values)


def _strength(metric: str, value: Any) -> float:
    """Larger = prunes more (macs/params are fractions kept, ratios fractions removed)."""
    if metric == "ratio":
        return float(value) if isinstance(value, (int, float)) else float(max(dict(value).values()))
    return -float(value)


def plan_family(
    model: nn.Module,
    example_inputs: ExampleInputs,
    config: PruneConfig | None = None,
    *,
    macs: Sequence[float] | None = None,
    params: Sequence[float] | None = None,
    ratio: Sequence[float] | None = None,
    calibration: Any = None,
    loss_fn: LossFn | None = None,
    analysis: Analysis | None = None,
    **options: Any,
) -> list[Plan]:
    """One plan per value of ``macs`` (or ``params``, fractions kept) or ``ratio`` (fractions removed), in the
    order given, from one scoring pass. Each smaller plan removes, in every group, a superset of the units
    a larger one removes. ``config`` and the other keywords are those of ``sc.plan`` (its target is replaced by
    each value); ``scope`` defaults to ``"global"`` here."""
    metric, values = _targets(macs, params, ratio)
    if "latency" in options or isinstance(getattr(config, "target", None), LatencyTarget):
        raise InvalidArgumentError("plan_family does not take latency targets yet: use macs=[...] and time the plans")
    if config is None and "scope" not in options and "uniform" not in options:
        options["scope"] = "global"
    base, defaults = resolve_defaults(PruneConfig.build(config, **options), model, calibration)
    analysis = analysis or analyze(model, example_inputs)
    criterion = _ScoredOnce(get_criterion(base.importance))
    order = sorted(range(len(values)), key=lambda i: _strength(metric, values[i]))
    plans: dict[int, Plan] = {}
    previous: Plan | None = None
    for i in order:
        stats = criterion.stats if criterion.stats is not None else calibration  # collected once, by the first plan
        cfg = PruneConfig.build(base, target=None, importance=criterion, **{metric: values[i]})
        plan = make_plan(model, analysis, cfg, calibration=stats, loss_fn=loss_fn, example_inputs=example_inputs)
        plan.config = dataclasses.replace(cfg, importance=base.importance)
        if previous is not None:
            plan = _nested(model, analysis, previous, plan, metric, values[i], example_inputs)
        plan.settings["family"] = {"metric": metric, "values": values, "index": i}
        if defaults is not None:
            plan.settings["defaults"] = defaults
        plans[i] = previous = plan
    return [plans[i] for i in range(len(values))]


def _nested(model: nn.Module, analysis: Analysis, larger: Plan, plan: Plan, metric: str, value: Any,
            example_inputs: ExampleInputs) -> Plan:
    """``plan`` made a superset of ``larger`` group by group (re-checked against its target when changed)."""
    before = {g.id: set(g.removed) for g in larger.groups}
    if all(before.get(g.id, set()) <= set(g.removed) for g in plan.groups):
        return plan
    removed = {g.id: np.array(sorted(before.get(g.id, set()) | set(g.removed)), dtype=np.int64) for g in plan.groups}
    repaired = build_plan(analysis, removed, dict(plan.settings), plan.config)
    if metric != "ratio":
        achieved = measure_kept(model, repaired, example_inputs, analysis)
        repaired.settings["achieved"] = achieved
        if not within(achieved, {metric: float(value)}):
            raise PlanError(f"plan_family: the plan for {metric}={value} is not nested in the larger one, and the "
                            f"nested version keeps {metric}={achieved[metric]:.3f}, outside ±5%; space the values "
                            "further apart or use scope='global'")
    return repaired
