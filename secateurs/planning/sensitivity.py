"""sensitivity(): prune each group (or each module pattern) alone at several ratios and evaluate a metric.

One scoring pass ranks the units of every group; each (target, ratio) pair then builds a plan that
removes only that target's lowest-ranked units, applies it to a copy of the model and calls
``metric_fn(copy)``. The model itself is never changed. (The module is not named ``sensitivity`` so
that it does not shadow the lazy verb ``secateurs.sensitivity``.)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from secateurs.calibration.data import LossFn
from secateurs.config import PruneConfig
from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.graph.analysis import Analysis, analyze
from secateurs.graph.capture import ExampleInputs, eval_mode, normalize_inputs
from secateurs.graph.groups import Group
from secateurs.planning.build import build_plan
from secateurs.planning.sensitivity_result import SensitivityResult, SensitivityRow
from secateurs.scoring.registry import Criterion, criterion_name, get_criterion
from secateurs.scoring.score import score
from secateurs.selection.cost import CostModel
from secateurs.selection.overlap import prefer_finest
from secateurs.selection.overrides import GROUP_KEY
from secateurs.selection.select import DEFAULT_KINDS, IgnoreSpec, Limits, group_is_ignored, select_lowest
from secateurs.surgery.apply import apply_plan

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FIDELITY = "cosine similarity of the outputs with the unpruned model's on example_inputs (output fidelity, not accuracy)"
MetricFn = Callable[[nn.Module], float]


@dataclass
class _Target:
    key: str  # overrides key: "group:NAME" or the module pattern
    name: str
    kind: str
    groups: list[Group]
    layers: str = ""  # modules producing the pruned units, for people reading the table


def _producers(analysis: Analysis, groups: list[Group], most: int = 3) -> str:
    """Modules whose weight rows are the units (conv/linear outputs), else every module of the groups."""
    out: list[str] = []
    for g in groups:
        for m in g.members:
            path, _, attr = m.fqn.rpartition(".")
            if attr == "weight" and m.dim == 0 and len(analysis.shapes.get(m.fqn, ())) >= 2 and path not in out:
                out.append(path)
    if not out:
        out = sorted({p for g in groups for p in g.modules()})
    return ", ".join(out[:most]) + (f" (+{len(out) - most})" if len(out) > most else "")


def _flat_outputs(out: Any) -> torch.Tensor:
    parts: list[torch.Tensor] = []

    def walk(v: Any) -> None:
        if isinstance(v, torch.Tensor):
            if v.is_floating_point():
                parts.append(v.detach().reshape(-1).to(torch.float64))
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    walk(out)
    if not parts:
        raise InvalidArgumentError("the model returns no floating-point tensor: pass metric_fn=lambda model: <float>")
    return torch.cat(parts)


def output_fidelity(model: nn.Module, example_inputs: ExampleInputs) -> MetricFn:
    """A metric for use without data: cosine similarity (1.0 = identical direction) of a pruned copy's
    outputs with ``model``'s on ``example_inputs``; the reference outputs are computed once, here."""
    args, kwargs = normalize_inputs(example_inputs)

    def outputs(m: nn.Module) -> torch.Tensor:
        with eval_mode(m), torch.inference_mode():
            return _flat_outputs(m(*args, **kwargs))

    reference = outputs(model)

    def fidelity(pruned: nn.Module) -> float:
        out = outputs(pruned)
        if out.shape != reference.shape:
            return 0.0
        return float(torch.nn.functional.cosine_similarity(out, reference, dim=0))

    return fidelity


def _check_ratios(ratios: Iterable[float]) -> list[float]:
    if isinstance(ratios, (str, bytes)) or not isinstance(ratios, Iterable):
        raise InvalidTypeError(f"ratios must be a list of fractions removed, got {ratios!r}")
    out = sorted({float(r) for r in ratios if isinstance(r, (int, float)) and not isinstance(r, bool)})
    if not out or len(out) != len(list(ratios)) or not all(0.0 < r < 1.0 for r in out):
        raise InvalidArgumentError(f"ratios must be distinct numbers in (0, 1) (fractions removed), got {ratios!r}")
    return out


def _targets(analysis: Analysis, model: nn.Module, groups: Sequence[str] | str | None,
             ignore: Any) -> list[_Target]:
    spec = IgnoreSpec.parse(ignore)
    eligible = prefer_finest([g for g in analysis.groups
                              if g.kind in DEFAULT_KINDS and not group_is_ignored(g, spec, model)])
    if groups is None:
        return [_Target(GROUP_KEY + g.name, g.name, g.kind, [g], _producers(analysis, [g])) for g in eligible]
    patterns = [groups] if isinstance(groups, str) else list(groups)
    out = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise InvalidTypeError(f"groups must be module names or glob patterns, got {pattern!r}")
        members = [g for g in eligible if any(IgnoreSpec.matches_name(pattern, m) for m in g.modules())]
        if not members:
            raise InvalidArgumentError(f"groups pattern {pattern!r} matches no prunable group of {type(model).__name__}; "
                                       "sc.analyze(model, x).summary() lists the groups and their modules")
        kinds = sorted({g.kind for g in members})
        out.append(_Target(pattern, pattern, "+".join(kinds), members, _producers(analysis, members)))
    return out


def sensitivity(
    model: nn.Module,
    example_inputs: ExampleInputs,
    metric_fn: MetricFn | None = None,
    *,
    ratios: Iterable[float] = DEFAULT_RATIOS,
    importance: str | Criterion = "l2",
    groups: Sequence[str] | str | None = None,
    calibration: Any = None,
    loss_fn: LossFn | None = None,
    higher_is_better: bool = True,
    ignore: Any = None,
    round_to: int = 1,
    min_keep: int = 1,
    seed: int = 0,
    progress: bool = True,
    analysis: Analysis | None = None,
) -> SensitivityResult:
    """Prune each prunable group alone (``groups=None``), or each set of groups touching a module pattern
    (``groups=["layer1.*", "layer2.*"]``), at every ratio, and evaluate ``metric_fn(pruned_copy) -> float``.

    Without ``metric_fn`` the metric is output fidelity (cosine similarity with the unpruned outputs on
    ``example_inputs``), which says how much a group changes the function, not how much accuracy it costs.
    ``higher_is_better=False`` for losses. ``result.overrides(max_drop=0.01)`` gives per-group ratios for
    ``sc.plan(..., overrides=...)``.
    """
    ratio_list = _check_ratios(ratios)
    if metric_fn is not None and not callable(metric_fn):
        raise InvalidTypeError(f"metric_fn must be callable as metric_fn(model) -> float, got {type(metric_fn).__name__}")
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise InvalidArgumentError("sensitivity evaluates pruned copies, so the model needs weights: it is on the "
                                   "meta device; load the weights first")
    analysis = analysis or analyze(model, example_inputs)
    metric, description = (metric_fn, getattr(metric_fn, "__name__", type(metric_fn).__name__)) if metric_fn \
        else (output_fidelity(model, example_inputs), FIDELITY)
    targets = _targets(analysis, model, groups, ignore)
    all_groups = list({g.id: g for t in targets for g in t.groups}.values())
    scores = score(model, all_groups, importance, calibration=calibration, loss_fn=loss_fn, seed=seed).by_group
    limits = Limits(round_to, min_keep)
    cost = CostModel(analysis, model)
    baseline = float(metric(model))
    config = PruneConfig(importance=importance, seed=seed, round_to=round_to, min_keep=min_keep)
    settings = {"importance": criterion_name(get_criterion(importance))}
    rows: list[SensitivityRow] = []
    for target in _progress(targets, progress):
        for r in ratio_list:
            counts = {g.id: limits.rounded(g, math.floor(r * g.n_units + 1e-9), capped=False) for g in target.groups}
            row = _evaluate(model, analysis, target, r, counts, scores, metric, baseline, cost, settings, config)
            row.drop = (baseline - row.metric) if higher_is_better else (row.metric - baseline)
            rows.append(row)
    return SensitivityResult(baseline, ratio_list, rows, description, higher_is_better, settings["importance"])


def _evaluate(model: nn.Module, analysis: Analysis, target: _Target, ratio: float, counts: dict[int, int],
              scores: dict[int, np.ndarray], metric: MetricFn, baseline: float, cost: CostModel,
              settings: dict[str, Any], config: PruneConfig) -> SensitivityRow:
    removed = {gid: select_lowest(scores[gid], n) for gid, n in counts.items() if n > 0}
    n_removed = sum(len(v) for v in removed.values())
    kept = cost.kept(counts, target.groups)
    value = baseline
    if n_removed:
        pruned = copy.deepcopy(model)
        apply_plan(pruned, build_plan(analysis, removed, dict(settings), config))
        value = float(metric(pruned))
        del pruned
    units = sum(g.n_units for g in target.groups)
    return SensitivityRow(target.key, target.name, target.kind, units, ratio, n_removed, value,
                          kept["macs"], kept["params"], layers=target.layers)


def _progress(items: list[_Target], enabled: bool) -> Iterable[_Target]:
    from tqdm.auto import tqdm

    # disable=None hides the bar when stderr is not a terminal
    return tqdm(items, desc="sensitivity", unit="group", leave=False, disable=None if enabled else True)
