"""Budgets: plans that keep a fraction of MACs or parameters (cost model, then counted) or of measured latency."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from secateurs.errors import InvalidArgumentError, TargetUnreachableError
from secateurs.graph.analysis import Analysis
from secateurs.graph.groups import Group
from secateurs.planning.request import Request
from secateurs.plans import Plan
from secateurs.selection.cost import CostModel
from secateurs.selection.latency import search_latency
from secateurs.selection.ranking import TOLERANCE, Counts, GlobalPool, local_counts, solve_targets


def plan_for_targets(model: torch.nn.Module, analysis: Analysis, req: Request, free: list[Group],
                      scores: dict[int, np.ndarray], fixed_counts: Counts, finish: Callable[[Counts], Plan],
                      example_inputs: Any) -> Plan:
    """Bisect a global threshold (or a uniform ratio for scope='local') until the cost model meets the
    targets, then measure the pruned copy with ``count`` and correct the targets if the model was off."""
    cost = CostModel(analysis, model)
    groups = free + [g for g in analysis.groups if g.id in fixed_counts]
    counts_at = _strength_counts(req, free, scores)

    def kept(counts: Counts) -> dict[str, float]:
        return cost.kept({**counts, **fixed_counts}, groups)

    effective = dict(req.targets)
    tried: list[dict[str, float]] = []
    for _ in range(4):
        x, counts = solve_targets(counts_at, kept, effective)
        plan = finish(counts)
        plan.settings["strength"] = x
        plan.settings["estimated"] = kept(counts)
        if example_inputs is None:
            return plan
        achieved = measure_kept(model, plan, example_inputs, analysis)
        plan.settings["achieved"] = achieved
        if within(achieved, req.targets):
            return plan
        tried.append(achieved)
        effective = {m: min(1.0, effective[m] * t / max(achieved[m], 1e-12)) for m, t in req.targets.items()}
    near = ", ".join(sorted({f"{m}={a[m]:.3f}" for a in tried for m in req.targets}))
    raise TargetUnreachableError(
        f"targets {req.targets} cannot be met within ±{TOLERANCE:.0%}: the nearest plans keep {near}. The units "
        "are too coarse here (whole heads, round_to, small groups); ask for one of those values, or lower round_to"
    )


def _strength_counts(req: Request, free: list[Group], scores: dict[int, np.ndarray]) -> Callable[[float], Counts]:
    """Removal counts as a function of one strength x in [0, 1]: the fraction of the global pool removed
    (scope='global'), or a uniform ratio (scope='local')."""
    if req.scope == "global":
        pool = GlobalPool(free, scores, req.normalize, req.limits)
        return lambda x: pool.counts(int(round(x * pool.size)))
    return lambda x: local_counts(free, lambda g: x, req.limits)


def plan_for_latency(model: torch.nn.Module, analysis: Analysis, req: Request, free: list[Group],
                      scores: dict[int, np.ndarray], fixed_counts: Counts, finish: Callable[[Counts], Plan],
                      example_inputs: Any) -> Plan:
    """Start at the strength keeping the latency fraction of the MACs, then bisect on measured latency."""
    lat = req.latency
    if lat is None:
        raise InvalidArgumentError("plan_for_latency needs a latency target")
    if example_inputs is None:
        raise InvalidArgumentError("latency= needs example_inputs: candidates are timed on them")
    cost = CostModel(analysis, model)
    groups = free + [g for g in analysis.groups if g.id in fixed_counts]
    counts_at = _strength_counts(req, free, scores)

    def kept(counts: Counts) -> dict[str, float]:
        return cost.kept({**counts, **fixed_counts}, groups)

    try:
        start, _ = solve_targets(counts_at, kept, {"macs": lat.fraction})
    except TargetUnreachableError:
        start = 1.0
    if lat.method == "table":
        from secateurs.selection.latency_plan import search_table
        from secateurs.surgery.apply import apply_plan

        def pruned_copy(plan: Plan) -> torch.nn.Module:
            m = meta_copy(model)
            apply_plan(m, plan)
            return m

        plan = search_table(model, example_inputs, lat, counts_at, finish, pruned_copy)
    else:
        plan = search_latency(model, example_inputs, lat, counts_at, finish, start)
    plan.settings["estimated"] = kept(counts_at(plan.settings["strength"]))
    plan.settings["achieved"].update(measure_kept(model, plan, example_inputs, analysis))
    return plan


def within(achieved: dict[str, float], targets: dict[str, float]) -> bool:
    """Every metric at most its target (+tolerance), and at least one of them within tolerance of its target."""
    off = {m: achieved[m] / t - 1.0 for m, t in targets.items()}
    return all(o <= TOLERANCE for o in off.values()) and any(abs(o) <= TOLERANCE for o in off.values())


def meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose parameters and buffers live on the meta device (no weight memory)."""
    memo: dict[int, Any] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = torch.nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, torch.nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def measure_kept(model: torch.nn.Module, plan: Plan, example_inputs: Any,
                 analysis: Analysis | None = None) -> dict[str, float]:
    """Fractions of MACs and parameters a plan keeps, counted with ``count`` on a pruned meta-device copy (the
    unpruned MACs come from ``analysis``'s capture when given, so only the pruned copy is captured)."""
    from secateurs.graph.counting import count, graph_macs, param_count
    from secateurs.surgery.apply import apply_plan

    def to_meta(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.to("meta")
        if isinstance(x, (list, tuple)):
            return type(x)(to_meta(v) for v in x)
        if isinstance(x, Mapping):
            return {k: to_meta(v) for k, v in x.items()}
        return x

    inputs = to_meta(example_inputs)
    pruned = meta_copy(model)
    if analysis is not None:
        macs0, params0 = graph_macs(analysis.coupled.captured), param_count(model)
    else:
        macs0, params0 = count(pruned, inputs)
    apply_plan(pruned, plan)
    macs1, params1 = count(pruned, inputs)
    return {"macs": macs1 / max(macs0, 1), "params": params1 / max(params0, 1)}
