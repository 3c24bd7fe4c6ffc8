"""plan(): score every eligible group, select the units to remove, and record a Plan."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from secateurs.calibration.collect import collect
from secateurs.calibration.data import LossFn
from secateurs.calibration.stats import Statistics
from secateurs.errors import InvalidArgumentError, PlanError, TargetUnreachableError
from secateurs.graph.analysis import Analysis
from secateurs.graph.groups import Group
from secateurs.planning.build import build_plan
from secateurs.plans import Plan
from secateurs.scoring.registry import Criterion, ScoringContext, criterion_name, get_criterion
from secateurs.selection.cost import CostModel
from secateurs.selection.latency import LatencyTarget, as_latency_target, search_latency
from secateurs.selection.normalize import check_normalize
from secateurs.selection.overlap import prefer_finest
from secateurs.selection.overrides import override_for, parse_overrides
from secateurs.selection.ranking import (
    TOLERANCE,
    Counts,
    GlobalPool,
    global_counts,
    local_counts,
    solve_targets,
)
from secateurs.selection.select import (
    DEFAULT_KINDS,
    IgnoreSpec,
    Limits,
    group_is_ignored,
    ratio_for,
    ratio_key,
    resolve_ratio,
    select_lowest,
)

SCOPES = ("local", "global")


@dataclass
class _Request:
    """Validated arguments of make_plan."""

    ratios: dict[str, float]
    targets: dict[str, float]
    scope: str
    normalize: str
    limits: Limits
    overrides: dict[str, float]
    ignore: IgnoreSpec


def _check_args(model: torch.nn.Module, criterion: Criterion, ratio: Any, scope: str, normalize: str | None,
                macs: float | None, params: float | None, overrides: Any, max_ratio: float | None,
                round_to: int, min_keep: int, ignore: Any) -> _Request:
    if not isinstance(round_to, int) or round_to < 1:
        raise InvalidArgumentError(f"round_to must be a positive integer, got {round_to!r}")
    if not isinstance(min_keep, int) or min_keep < 1:
        raise InvalidArgumentError(f"min_keep must be a positive integer, got {min_keep!r}")
    if scope not in SCOPES:
        raise InvalidArgumentError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if max_ratio is not None and (isinstance(max_ratio, bool) or not isinstance(max_ratio, (int, float))
                                  or not 0.0 < float(max_ratio) < 1.0):
        raise InvalidArgumentError(f"max_ratio must be a number in (0, 1) (the most of a group removed), got {max_ratio!r}")
    targets: dict[str, float] = {}
    for name, value in (("macs", macs), ("params", params)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
            raise InvalidArgumentError(f"{name} must be the fraction of {name} KEPT, in (0, 1], got {value!r}")
        targets[name] = float(value)
    if targets and ratio is not None:
        raise InvalidArgumentError("pass either ratio= or a budget (macs=/params=), not both: a budget sets the ratios")
    how = check_normalize(normalize if normalize is not None else str(getattr(criterion, "normalize", "mean")))
    spec = IgnoreSpec.parse(ignore)
    for pattern in spec.unmatched(model):
        warnings.warn(f"ignore pattern {pattern!r} matches no module of {type(model).__name__}", stacklevel=4)
    ratios = resolve_ratio(0.5 if ratio is None else ratio)
    if targets:
        ratios = dict.fromkeys(DEFAULT_KINDS, 0.0)
    limits = Limits(round_to, min_keep, None if max_ratio is None else float(max_ratio))
    return _Request(ratios, targets, scope, how, limits, parse_overrides(overrides, model), spec)


def _statistics(criterion: Criterion, model: torch.nn.Module, calibration: Any, loss_fn: LossFn | None,
                groups: list[Group] | None = None) -> Statistics | None:
    name = criterion_name(criterion)
    if not getattr(criterion, "needs_data", False):
        if calibration is not None:
            warnings.warn(f"calibration data is not used by importance {name!r}", stacklevel=4)
        return None
    grads = bool(getattr(criterion, "needs_grads", False))
    if callable(getattr(criterion, "moment_paths", None)):
        from secateurs.graph.program_limits import refuse_for_program

        refuse_for_program(model, moments_criterion=name)
    if calibration is None:
        extra = " and loss_fn=lambda output, batch: <scalar loss>" if grads else ""
        raise InvalidArgumentError(
            f"importance {name!r} needs calibration data: pass calibration=<iterable of batches shaped like "
            f"example_inputs> (a DataLoader, or a list such as [x1, x2]){extra}"
        )
    grad_stats = tuple(getattr(criterion, "grad_stats", ("sum", "sq"))) if grads else ()
    wants = getattr(criterion, "moment_paths", None)  # criteria reading input Gram matrices of some layers
    moments = wants(model, groups or []) if callable(wants) else []
    if isinstance(calibration, Statistics):
        missing = [k for k in grad_stats if not calibration.has(k)]
        if missing:
            raise InvalidArgumentError(
                f"importance {name!r} needs gradient statistics {missing}, but the Statistics given were collected "
                f"without them; collect(model, batches, loss_fn=..., grads=True, grad_stats={grad_stats!r})")
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
    return collect(model, calibration, loss_fn=loss_fn, grads=grads, grad_stats=grad_stats or ("sum", "sq"),
                   moments=moments)


def _score(criterion: Criterion, groups: list[Group], ctx: ScoringContext) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    for g in groups:
        scores = np.asarray(criterion.scores(g, ctx), dtype=np.float64)
        if scores.shape != (g.n_units,):
            raise PlanError(f"criterion returned {scores.shape} scores for group {g.name} of {g.n_units} units")
        if not np.isfinite(scores).all():
            raise PlanError(f"criterion {criterion_name(criterion)!r} returned non-finite scores for group {g.name}")
        out[g.id] = scores
    return out


def make_plan(
    model: torch.nn.Module,
    analysis: Analysis,
    *,
    ratio: float | Mapping[str, float] | None = None,
    importance: str | Criterion = "l2",
    ignore: Iterable[str | type] | str | type | None = None,
    round_to: int = 1,
    min_keep: int = 1,
    seed: int = 0,
    scope: str = "local",
    normalize: str | None = None,
    macs: float | None = None,
    params: float | None = None,
    overrides: Mapping[str, float] | None = None,
    max_ratio: float | None = None,
    calibration: Any = None,
    loss_fn: LossFn | None = None,
    example_inputs: Any = None,
    latency: float | LatencyTarget | None = None,
) -> Plan:
    criterion = get_criterion(importance)
    req = _check_args(model, criterion, ratio, scope, normalize, macs, params, overrides, max_ratio, round_to,
                      min_keep, ignore)
    lat = _latency_request(req, latency, ratio)
    tensors = dict(model.state_dict(keep_vars=True))
    name = criterion_name(criterion)
    if name != "random" and any(t.is_meta for t in tensors.values()):
        raise InvalidArgumentError(
            f"importance {name!r} reads weights, but the model is on the meta "
            "device; load the weights first or use importance='random' to plan the shapes only"
        )
    candidates = [g for g in analysis.groups if not group_is_ignored(g, req.ignore, model)]
    fixed_ratio = {g.id: r for g in candidates if (r := override_for(g, req.overrides)) is not None}
    if req.targets:
        free = prefer_finest([g for g in candidates if g.kind in DEFAULT_KINDS and g.id not in fixed_ratio])
    else:
        free = prefer_finest([g for g in candidates if ratio_for(g, req.ratios) > 0 and g.id not in fixed_ratio])
    fixed = [g for g in candidates if fixed_ratio.get(g.id, 0.0) > 0]
    stats = _statistics(criterion, model, calibration, loss_fn, free + fixed) if free or fixed else None
    ctx = ScoringContext(model, tensors, seed, stats=stats)
    scores = _score(criterion, free + fixed, ctx)
    fixed_counts = {g.id: req.limits.rounded(g, math.floor(fixed_ratio[g.id] * g.n_units + 1e-9), capped=False)
                    for g in fixed}
    settings: dict[str, Any] = {
        "ratio": None if req.targets else req.ratios, "importance": name, "scope": req.scope,
        "normalize": req.normalize if req.scope == "global" else None,
        "ignore": list(req.ignore.names) + [t.__qualname__ for t in req.ignore.types], "round_to": round_to,
        "min_keep": min_keep, "max_ratio": req.limits.max_ratio, "overrides": req.overrides, "seed": seed,
        "targets": req.targets or None,
        "calibration": {"batches": stats.n_batches, "gradients": stats.has_grads} if stats is not None else None,
        "loss_fn": getattr(loss_fn, "__name__", type(loss_fn).__name__) if loss_fn is not None else None,
    }

    def finish(counts: Counts) -> Plan:
        counts = {**counts, **fixed_counts}
        removed = {gid: select_lowest(scores[gid], n) for gid, n in counts.items() if n > 0}
        return build_plan(analysis, removed, {**settings, "notes": sorted(set(ctx.notes))})

    if not req.targets:
        if req.scope == "global":
            counts = global_counts(free, scores, req.normalize, req.limits, req.ratios,
                                   key=lambda g: ratio_key(g, req.ratios))
        else:
            counts = local_counts(free, lambda g: ratio_for(g, req.ratios), req.limits)
        return finish(counts)
    if lat is not None:
        return _plan_for_latency(model, analysis, req, free, scores, fixed_counts, finish, example_inputs, lat)
    return _plan_for_targets(model, analysis, req, free, scores, fixed_counts, finish, example_inputs)


def _plan_for_targets(model: torch.nn.Module, analysis: Analysis, req: _Request, free: list[Group],
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
        achieved = measure_kept(model, plan, example_inputs)
        plan.settings["achieved"] = achieved
        if _within(achieved, req.targets):
            return plan
        tried.append(achieved)
        effective = {m: min(1.0, effective[m] * t / max(achieved[m], 1e-12)) for m, t in req.targets.items()}
    near = ", ".join(sorted({f"{m}={a[m]:.3f}" for a in tried for m in req.targets}))
    raise TargetUnreachableError(
        f"targets {req.targets} cannot be met within ±{TOLERANCE:.0%}: the nearest plans keep {near}. The units "
        "are too coarse here (whole heads, round_to, small groups); ask for one of those values, or lower round_to"
    )


def _strength_counts(req: _Request, free: list[Group], scores: dict[int, np.ndarray]) -> Callable[[float], Counts]:
    """Removal counts as a function of one strength x in [0, 1]: the fraction of the global pool removed
    (scope='global'), or a uniform ratio (scope='local')."""
    if req.scope == "global":
        pool = GlobalPool(free, scores, req.normalize, req.limits)
        return lambda x: pool.counts(int(round(x * pool.size)))
    return lambda x: local_counts(free, lambda g: x, req.limits)


def _latency_request(req: _Request, latency: Any, ratio: Any) -> LatencyTarget | None:
    """Validate ``latency=`` and record it as a target (it sets the ratios, like macs=/params=)."""
    lat = as_latency_target(latency)
    if lat is None:
        return None
    if req.targets or ratio is not None:
        raise InvalidArgumentError("latency= sets the ratios itself: pass it without ratio=, macs= or params=")
    req.targets = {"latency": lat.fraction}
    req.ratios = dict.fromkeys(DEFAULT_KINDS, 0.0)
    return lat


def _plan_for_latency(model: torch.nn.Module, analysis: Analysis, req: _Request, free: list[Group],
                      scores: dict[int, np.ndarray], fixed_counts: Counts, finish: Callable[[Counts], Plan],
                      example_inputs: Any, lat: LatencyTarget) -> Plan:
    """Start at the strength keeping ``lat.fraction`` of the MACs, then bisect on measured latency."""
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
    plan = search_latency(model, example_inputs, lat, counts_at, finish, start)
    plan.settings["estimated"] = kept(counts_at(plan.settings["strength"]))
    plan.settings["achieved"].update(measure_kept(model, plan, example_inputs))
    return plan


def _within(achieved: dict[str, float], targets: dict[str, float]) -> bool:
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


def measure_kept(model: torch.nn.Module, plan: Plan, example_inputs: Any) -> dict[str, float]:
    """Fractions of MACs and parameters a plan keeps, counted with ``count`` on a pruned meta-device copy."""
    from secateurs.graph.counting import count
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
    macs0, params0 = count(pruned, inputs)
    apply_plan(pruned, plan)
    macs1, params1 = count(pruned, inputs)
    return {"macs": macs1 / max(macs0, 1), "params": params1 / max(params0, 1)}
